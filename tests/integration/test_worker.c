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
