/*
 * test_worker.c - the worker end to end: webhooks into the real ingest,
 * jobs through a private Redis (AOF, appendfsync always) into the real
 * worker, requests answered by the provider sandbox (the harness is
 * tests/e2e_support.h). Each test asserts exact counts at the sandbox:
 * every call reaches every connection once, whatever fails in between
 * (kill -9 of the worker, Redis restarted, 429 storms, 5xx, permanent
 * errors, SIGTERM under load).
 */
#include "e2e_support.h"

static char *c_hub, *c_zap;

/* Connections: HubSpot always; Zapier only where with_zapier. */
static void setup_with(bool with_zapier, int latency_ms)
{
    e2e_setup("worker", latency_ms);
    c_hub = add_conn("hubspot", HUBSPOT_TOKEN, NULL,
                     "{\"rate_limit\":\"5000/1s\"}");
    if (with_zapier) {
        char *url = xasprintf("http://127.0.0.1:%d/zapier/hooks/catch/1/abc/",
                              sandbox_port);
        c_zap = add_conn("zapier", NULL, url, "{\"rate_limit\":\"5000/1s\"}");
        free(url);
    }
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_hub);
    free(c_zap);
    c_hub = NULL;
    c_zap = NULL;
}

static void setup_hubspot(void)
{
    setup_with(false, 0);
}

static void setup_both(void)
{
    setup_with(true, 0);
}

static void setup_slow(void)
{
    setup_with(false, 150);
}

/* ---- Helpers ----------------------------------------------------------- */

static int want_notes;
static bool notes_reached(void)
{
    return records("hubspot", "notes") >= want_notes && drained();
}

/* ---- Tests ------------------------------------------------------------- */

TestSuite(worker, .fini = teardown, .timeout = 240);

Test(worker, every_call_reaches_every_connection_once, .init = setup_both)
{
    start_worker(512);
    post_calls(0, 50);
    want_notes = 50;
    wait_until(notes_reached, 60000, "50 notes");
    cr_expect_eq(records("hubspot", "contacts"), 50);
    cr_expect_eq(distinct("hubspot", "contacts", "phone"), 50);
    cr_expect_eq(records("hubspot", "notes"), 50);
    cr_expect_eq(records("zapier", "hooks"), 50);
    cr_expect_eq(dead_count(), 0);
    /* Every job hash ends done, with its last step checkpointed and no
     * in-flight mark left (the finish script writes both). */
    redisReply *hashes = redisCommand(rc, "KEYS cs:{0}:job:*");
    cr_assert(hashes && hashes->type == REDIS_REPLY_ARRAY);
    cr_expect_eq(hashes->elements, 100);
    for (size_t i = 0; i < hashes->elements; i++) {
        redisReply *h = redisCommand(rc, "HGETALL %s",
                                     hashes->element[i]->str);
        cr_assert(h && h->type == REDIS_REPLY_ARRAY);
        const char *state = NULL;
        bool last = false, marked = false;
        for (size_t k = 0; k + 1 < h->elements; k += 2) {
            const char *f = h->element[k]->str;
            if (strcmp(f, "state") == 0)
                state = h->element[k + 1]->str;
            last |= strcmp(f, "step:hook") == 0 ||
                    strcmp(f, "step:note") == 0;
            marked |= strncmp(f, "inflight:", 9) == 0;
        }
        cr_expect_str_eq(state, "done", "%s", hashes->element[i]->str);
        cr_expect(last, "%s: last step not checkpointed",
                  hashes->element[i]->str);
        cr_expect(!marked, "%s: in-flight mark left", hashes->element[i]->str);
        freeReplyObject(h);
    }
    freeReplyObject(hashes);
    /* Every step attempt is in the sync log. */
    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success'",
                     0, NULL);
    cr_expect_str_eq(n, "150");
    free(n);
    char *last = it_sql(&db,
                        "SELECT count(*) FROM integration_connections WHERE "
                        "last_sync_at IS NOT NULL",
                        0, NULL);
    cr_expect_str_eq(last, "2");
    free(last);
}

Test(worker, kill_9_with_1000_jobs_in_flight_then_restart, .init = setup_slow)
{
    start_worker(1000);
    post_calls(0, 1000);
    /* Let it get well into the work, then kill it without warning. */
    int64_t end = cs_mono_ms() + 60000;
    while (records("hubspot", "notes") < 100 && cs_mono_ms() < end)
        usleep(20000);
    kill(worker_pid, SIGKILL);
    waitpid(worker_pid, NULL, 0);
    int notes_at_kill = records("hubspot", "notes");
    cr_assert(notes_at_kill < 1000, "the kill came too late to test much");
    start_worker(1000);
    want_notes = 1000;
    wait_until(notes_reached, 180000, "1000 notes after the restart");
    cr_expect_eq(records("hubspot", "contacts"), 1000);
    cr_expect_eq(distinct("hubspot", "contacts", "phone"), 1000);
    cr_expect_eq(records("hubspot", "notes"), 1000,
                 "a retried job wrote a second note");
    cr_expect_eq(dead_count(), 0);
}

Test(worker, redis_restarted_mid_run_loses_nothing, .init = setup_hubspot)
{
    start_worker(256);
    post_calls(0, 300);
    int64_t end = cs_mono_ms() + 60000;
    while (records("hubspot", "notes") < 50 && cs_mono_ms() < end)
        usleep(10000);
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    usleep(300000);
    start_redis(); /* same port and folder: the AOF brings the jobs back */
    want_notes = 300;
    wait_until(notes_reached, 120000, "300 notes after the Redis restart");
    cr_expect_eq(records("hubspot", "contacts"), 300);
    cr_expect_eq(records("hubspot", "notes"), 300);
    cr_expect_eq(dead_count(), 0);
}

Test(worker, storm_of_429_then_everything_completes, .init = setup_hubspot)
{
    set_faults("[{\"provider\":\"hubspot\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":3,\"count\":60}]");
    start_worker(256);
    post_calls(0, 100);
    want_notes = 100;
    wait_until(notes_reached, 120000, "100 notes through a 429 storm");
    cr_expect_eq(records("hubspot", "contacts"), 100);
    cr_expect_eq(records("hubspot", "notes"), 100, "notes: %d",
                 records("hubspot", "notes"));
    if (getenv("CS_DEBUG_KEEP")) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "curl -s 'http://127.0.0.1:%d/_sandbox/records?provider=hubspot&type=notes' > /tmp/notes.json; curl -s 'http://127.0.0.1:%d/_sandbox/requests?provider=hubspot' > /tmp/reqs.json", sandbox_port, sandbox_port);
        (void)!system(cmd);
    }
    cr_expect_eq(dead_count(), 0);
}

Test(worker, server_errors_for_a_while_then_recovery, .init = setup_hubspot)
{
    set_faults("[{\"provider\":\"hubspot\",\"status\":503,\"count\":80}]");
    start_worker(256);
    post_calls(0, 60);
    want_notes = 60;
    wait_until(notes_reached, 120000, "60 notes after 503s");
    cr_expect_eq(records("hubspot", "contacts"), 60);
    cr_expect_eq(records("hubspot", "notes"), 60);
    cr_expect_eq(dead_count(), 0);
}

static bool one_dead(void)
{
    return dead_count() == 1;
}

Test(worker, permanent_error_goes_to_dead_letters_with_reason,
     .init = setup_hubspot)
{
    set_faults("[{\"provider\":\"hubspot\",\"path_prefix\":"
               "\"/crm/v3/objects/notes\",\"status\":400,\"count\":1}]");
    start_worker(64);
    post_calls(0, 5);
    wait_until(one_dead, 30000, "one dead letter");
    want_notes = 4;
    wait_until(notes_reached, 30000, "the other 4 notes");
    redisReply *x = redisCommand(rc, "XRANGE cs:{0}:dead - +");
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
    redisReply *f = x->element[0]->element[1];
    const char *reason = NULL, *status = NULL, *errors = NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (strcmp(f->element[i]->str, "reason") == 0)
            reason = f->element[i + 1]->str;
        if (strcmp(f->element[i]->str, "http_status") == 0)
            status = f->element[i + 1]->str;
        if (strcmp(f->element[i]->str, "errors") == 0)
            errors = f->element[i + 1]->str;
    }
    cr_expect_str_eq(status, "400");
    cr_expect(reason && *reason);
    json_t *e = json_loads(errors ? errors : "null", 0, NULL);
    cr_expect_eq(json_array_size(e), 1, "every attempt's error is kept");
    json_decref(e);
    freeReplyObject(x);
    /* Its contact was written; its note was not; nothing was retried. */
    cr_expect_eq(records("hubspot", "contacts"), 5);
    cr_expect_eq(records("hubspot", "notes"), 4);
}

Test(worker, sigterm_under_load_loses_nothing, .init = setup_slow)
{
    start_worker(200);
    post_calls(0, 400);
    int64_t end = cs_mono_ms() + 60000;
    while (records("hubspot", "notes") < 40 && cs_mono_ms() < end)
        usleep(10000);
    cr_expect_eq(it_stop(worker_pid, SIGTERM, 15000), 0,
                 "SIGTERM must end the worker with 0");
    start_worker(200);
    want_notes = 400;
    wait_until(notes_reached, 120000, "400 notes after a SIGTERM");
    cr_expect_eq(records("hubspot", "contacts"), 400);
    cr_expect_eq(records("hubspot", "notes"), 400);
}

/* A worker stopped while its sync-log insert is held up (the table is
 * locked by another session) still writes every row before it exits:
 * one success row per step, none lost. */
Test(worker, sigterm_while_sync_logs_are_slow_keeps_them,
     .init = setup_hubspot)
{
    start_worker(64);
    post_calls(0, 30);
    want_notes = 10;
    wait_until(notes_reached, 60000, "10 notes");
    PGconn *lock = PQconnectdb(db.url);
    cr_assert(PQstatus(lock) == CONNECTION_OK);
    PQclear(PQexec(lock, "BEGIN"));
    PGresult *lr = PQexec(lock, "LOCK TABLE integration_sync_logs IN "
                                "EXCLUSIVE MODE");
    cr_assert(PQresultStatus(lr) == PGRES_COMMAND_OK);
    PQclear(lr);
    want_notes = 30;
    wait_until(notes_reached, 60000, "30 notes");
    usleep(600000); /* a flush is now waiting on the lock */
    kill(worker_pid, SIGTERM);
    usleep(1000000);
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);
    cr_expect_eq(it_stop(worker_pid, SIGTERM, 15000), 0);
    worker_pid = 0;
    char *n = it_sql(&db,
                     "SELECT count(*)::text FROM integration_sync_logs "
                     "WHERE status = 'success' AND operation_type IN "
                     "('contact', 'note')",
                     0, NULL);
    cr_expect_str_eq(n, "60", "sync-log rows written before exit");
    free(n);
    char *org_ok = it_sql(&db,
                          "SELECT (count(*) FILTER (WHERE l.organization_id "
                          "= c.organization_id))::text FROM "
                          "integration_sync_logs l JOIN "
                          "integration_connections c ON c.id = "
                          "l.integration_connection_id",
                          0, NULL);
    cr_expect_str_eq(org_ok, "60", "every row carries its organisation");
    free(org_ok);
}

static bool one_parked(void)
{
    return it_redis_int(rc, "DBSIZE") > 0 &&
           records("hubspot", "contacts") >= 0 && ({
               char key[160];
               snprintf(key, sizeof(key), "cs:{0}:parked:%s", c_hub);
               it_redis_int(rc, "LLEN %s", key) == 1;
           });
}

Test(worker, unauthorized_parks_the_job_and_expires_the_connection,
     .init = setup_hubspot)
{
    set_faults("[{\"provider\":\"hubspot\",\"status\":401,\"count\":1}]");
    start_worker(16);
    post_calls(0, 1);
    wait_until(one_parked, 30000, "a parked job");
    usleep(300000);
    const char *p[] = {c_hub};
    char *st = it_sql(&db,
                      "SELECT connection_status FROM integration_connections "
                      "WHERE id = $1",
                      1, p);
    cr_expect_str_eq(st, "expired");
    free(st);
    cr_expect_eq(dead_count(), 0);
}

/* The fields of the only dead letter, as an object. */
static json_t *the_dead_letter(void)
{
    redisReply *x = redisCommand(rc, "XRANGE cs:{0}:dead - +");
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == 1,
              "one dead letter");
    redisReply *f = x->element[0]->element[1];
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        json_object_set_new(o, f->element[i]->str,
                            json_string(f->element[i + 1]->str));
    freeReplyObject(x);
    return o;
}

/* CALLSYNC_RETRY_POLICY_HUBSPOT=attempts=2 on top of a fleet policy of 10
 * attempts: a note that always fails with 503 dead-letters after exactly
 * two attempts, as attempts_exhausted. */
Test(worker, per_provider_retry_policy_applies, .init = setup_hubspot)
{
    set_faults("[{\"provider\":\"hubspot\",\"path_prefix\":"
               "\"/crm/v3/objects/notes\",\"method\":\"POST\","
               "\"status\":503}]");
    worker_env_extra[0] = "CALLSYNC_RETRY_POLICY_HUBSPOT=attempts=2";
    start_worker(16);
    post_calls(0, 1);
    wait_until(one_dead, 30000, "a dead letter");
    json_t *d = the_dead_letter();
    cr_expect_str_eq(json_string_value(json_object_get(d, "reason")),
                     "attempts_exhausted");
    cr_expect_str_eq(json_string_value(json_object_get(d, "http_status")),
                     "503");
    json_t *errors = json_loads(
        json_string_value(json_object_get(d, "errors")), 0, NULL);
    cr_expect_eq(json_array_size(errors), 2, "two attempts, not ten");
    json_decref(errors);
    json_decref(d);
    cr_expect_eq(records("hubspot", "notes"), 0);
}

/* A CRM asks for an outbound call (seed 002): ingest enqueues one retell
 * job, the worker places exactly one call through Retell's
 * create-phone-call with the agent's number, the fleet's key and the job
 * id in the call's metadata; the CRM's retry of the same request places
 * no second call. */
Test(worker, outbound_call_request_places_one_retell_call,
     .init = setup_hubspot)
{
    const char *ap[] = {agent};
    free(it_sql(&db, "UPDATE agents SET outbound_from_number = "
                     "'+14155550100' WHERE id = $1::uuid RETURNING id::text",
                1, ap));
    const char *secret = "whsec_outbound_worker_test";
    char *sealed = cs_seal(kr, secret, strlen(secret));
    const char *wp[] = {agent, org, sealed};
    free(it_sql(&db,
                "INSERT INTO integration_webhooks (agent_id, organization_id, "
                "webhook_type, webhook_secret) VALUES ($1, $2, "
                "'outbound_call', $3) RETURNING id::text",
                3, wp));
    free(sealed);
    start_worker(16);

    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/outbound/request.json",
             CS_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    char body[4096];
    size_t len = fread(body, 1, sizeof(body), f);
    fclose(f);
    char *url = xasprintf("/api/agents/%s/outbound/call", agent);
    const char *h = "X-Webhook-Secret: whsec_outbound_worker_test\r\n"
                    "Idempotency-Key: crm-run-4471\r\n";
    struct it_resp r = it_post(ingest_port, url, h, body, len);
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    r = it_post(ingest_port, url, h, body, len);
    cr_expect_eq(r.status, 200, "the CRM's retry: %.*s", (int)r.body_len,
                 r.body);
    free(url);

    for (int i = 0; i < 300 && records("retell", "calls") < 1; i++)
        usleep(50000);
    wait_until(drained, 30000, "the outbound job done");
    cr_expect_eq(records("retell", "calls"), 1);
    cr_expect_eq(dead_count(), 0);
    r = it_get(sandbox_port, "/_sandbox/records?provider=retell");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *call = json_array_get(json_object_get(j, "records"), 0);
    cr_assert(call, "%.*s", (int)r.body_len, r.body);
    cr_expect_str_eq(json_string_value(json_object_get(call, "from_number")),
                     "+14155550100");
    cr_expect_str_eq(json_string_value(json_object_get(call, "to_number")),
                     "+12125550199");
    cr_expect_str_eq(json_string_value(json_object_get(call, "agent_id")),
                     "agent_d8a1c0ffee");
    json_t *md = json_object_get(call, "metadata");
    const char *jid = json_string_value(json_object_get(md,
                                                        "callsync_job_id"));
    cr_expect(jid && strlen(jid) == 32, "the job id travels with the call");
    json_decref(j);
}
