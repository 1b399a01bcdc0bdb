/*
 * test_worker.c - the worker end to end: webhooks into the real ingest,
 * jobs through a private Redis (AOF, appendfsync always) into the real
 * worker, requests answered by the provider sandbox. Each test asserts
 * exact counts at the sandbox: every call reaches every connection once,
 * whatever fails in between (kill -9 of the worker, Redis restarted,
 * 429 storms, 5xx, permanent errors, SIGTERM under load).
 */
#include "it_support.h"

#include <jansson.h>
#include <sys/stat.h>

#define RETELL_KEY "key_worker_test_7c1d"
#define HUBSPOT_TOKEN "pat-na1-test-0000"

static struct tpg db;
static struct cs_keyring *kr;
static char keys[80];
static char dir[128];
static pid_t redis_pid, sandbox_pid, ingest_pid, worker_pid;
static int redis_port, sandbox_port, ingest_port;
static redisContext *rc;
static char *org, *agent, *c_hub, *c_zap;
static int worker_seq;

/* ---- Processes --------------------------------------------------------- */

static void start_redis(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_port);
    char *argv[] = {(char *)"/usr/bin/redis-server", (char *)"--port", port,
                    (char *)"--bind", (char *)"127.0.0.1", (char *)"--dir",
                    dir, (char *)"--appendonly", (char *)"yes",
                    (char *)"--appendfsync", (char *)"always", (char *)"--save",
                    (char *)"", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    redis_pid = it_spawn(argv, NULL, log);
    for (int i = 0; i < 200; i++) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (ok) {
                if (rc)
                    redisFree(rc);
                rc = c;
                return;
            }
        }
        if (c)
            redisFree(c);
        usleep(20000);
    }
    cr_assert_fail("redis did not start");
}

static void start_sandbox(int latency_ms)
{
    char port[16], lat[16];
    snprintf(port, sizeof(port), "%d", sandbox_port);
    snprintf(lat, sizeof(lat), "%d", latency_ms);
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-sandbox", (char *)"--port",
                    port, (char *)"--latency-ms", lat, (char *)"--hubspot-token",
                    (char *)HUBSPOT_TOKEN, (char *)"--hubspot-rate",
                    (char *)"1000000", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/sandbox.log", dir);
    sandbox_pid = it_spawn(argv, NULL, log);
    for (int i = 0; i < 200; i++) {
        int fd = it_connect(sandbox_port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    cr_assert_fail("sandbox did not start");
}

static char *env_kv(const char *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *env_kv(const char *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    if (vasprintf(&v, fmt, ap) < 0)
        abort();
    va_end(ap);
    char *s = xasprintf("%s=%s", k, v);
    free(v);
    return s;
}

static void start_ingest(void)
{
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_INGEST_PORT", "%d", ingest_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_RETELL_API_KEYS", "%s", RETELL_KEY),
        env_kv("CALLSYNC_INGEST_THREADS", "1"),
        env_kv("CALLSYNC_LOG_LEVEL", "warn"),
        NULL,
    };
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-ingest", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/ingest.log", dir);
    ingest_pid = it_spawn(argv, env, log);
    for (int i = 0; env[i]; i++)
        free(env[i]);
    it_wait_ready(ingest_port, 15000);
}

static void start_worker(int inflight)
{
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_PROVIDER_BASE_URLS",
               "hubspot=http://127.0.0.1:%d/hubspot", sandbox_port),
        env_kv("CALLSYNC_RETRY_POLICY",
               "base=50ms,cap=500ms,attempts=10,max_age=1h"),
        env_kv("CALLSYNC_WORKER_VISIBILITY_MS", "1500"),
        env_kv("CALLSYNC_WORKER_INFLIGHT", "%d", inflight),
        env_kv("CALLSYNC_WORKER_GRACE_MS", "3000"),
        env_kv("CALLSYNC_WORKER_CONSUMER", "w%d-%d", (int)getpid(),
               worker_seq++),
        env_kv("CALLSYNC_LOG_LEVEL", "%s",
               getenv("CS_KEEP_TEST_DIR") ? "info" : "warn"),
        NULL,
    };
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-worker", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/worker.log", dir);
    worker_pid = it_spawn(argv, env, log);
    for (int i = 0; env[i]; i++)
        free(env[i]);
}

static char *add_conn(const char *type, const char *api_key,
                      const char *webhook_url, const char *config)
{
    char *sealed = api_key ? cs_seal(kr, api_key, strlen(api_key)) : NULL;
    const char *p[] = {agent, org, type, sealed, webhook_url, config};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      "organization_id, integration_type, auth_type, api_key, "
                      "webhook_url, config) VALUES ($1, $2, $3, 'api_key', $4, "
                      "$5, $6::jsonb) RETURNING id::text",
                      6, p);
    free(sealed);
    return id;
}

/* Connections: HubSpot always; Zapier only where with_zapier. */
static void setup_with(bool with_zapier, int latency_ms)
{
    snprintf(dir, sizeof(dir), "/tmp/cs_worker_test_%d", (int)getpid());
    mkdir(dir, 0755);
    tpg_setup(&db, "worker", true);
    unsigned char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(i * 11 + 5);
    char *b64 = cs_base64_encode(raw, sizeof(raw));
    snprintf(keys, sizeof(keys), "t1:%s", b64);
    free(b64);
    struct cs_err err = {0};
    kr = cs_keyring_new(keys, &err);
    cr_assert(kr);
    org = it_sql(&db, "INSERT INTO organizations (name) VALUES ('Acme') "
                      "RETURNING id::text",
                 0, NULL);
    const char *ap[] = {org};
    agent = it_sql(&db,
                   "INSERT INTO agents (organization_id, name, "
                   "retell_agent_id) VALUES ($1, 'desk', 'agent_d8a1c0ffee') "
                   "RETURNING id::text",
                   1, ap);
    redis_port = it_free_port();
    sandbox_port = it_free_port();
    ingest_port = it_free_port();
    start_redis();
    start_sandbox(latency_ms);
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
    if (worker_pid > 0)
        cr_expect_eq(it_stop(worker_pid, SIGTERM, 15000), 0,
                     "worker must exit 0 on SIGTERM");
    it_stop(ingest_pid, SIGTERM, 15000);
    it_stop(sandbox_pid, SIGTERM, 5000);
    it_stop(redis_pid, SIGTERM, 5000);
    char path[256];
    if (!getenv("CS_KEEP_TEST_DIR")) {
        snprintf(path, sizeof(path), "%s/worker.log", dir);
        it_expect_clean_log(path);
        snprintf(path, sizeof(path), "%s/ingest.log", dir);
        it_expect_clean_log(path);
    }
    if (rc)
        redisFree(rc);
    rc = NULL;
    worker_pid = 0;
    tpg_teardown(&db);
    cs_keyring_free(kr);
    free(org);
    free(agent);
    free(c_hub);
    free(c_zap);
    c_zap = NULL;
    char *cmd = getenv("CS_KEEP_TEST_DIR") ? xstrdup("true")
                                           : xasprintf("rm -rf %s", dir);
    (void)!system(cmd);
    free(cmd);
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

/* Post calls [from, from + n) as signed Retell webhooks, each a distinct
 * caller. */
static void post_calls(int from, int n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retell/call_analyzed.json",
             CS_SOURCE_DIR);
    json_t *doc = json_load_file(path, 0, NULL);
    cr_assert(doc);
    json_t *call = json_object_get(doc, "call");
    for (int i = from; i < from + n; i++) {
        char id[64], phone[20];
        snprintf(id, sizeof(id), "call_w_%06d", i);
        snprintf(phone, sizeof(phone), "+1415%07d", 5550000 + i);
        json_object_set_new(call, "call_id", json_string(id));
        json_object_set_new(call, "from_number", json_string(phone));
        char email[64];
        snprintf(email, sizeof(email), "caller%06d@example.com", i);
        json_object_set_new(
            json_object_get(json_object_get(call, "call_analysis"),
                            "custom_analysis_data"),
            "customer_email", json_string(email));
        char *body = json_dumps(doc, JSON_COMPACT);
        size_t len = strlen(body);
        char ts[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
        unsigned char mac[CS_SHA256_LEN];
        cs_hmac_sha256(RETELL_KEY, strlen(RETELL_KEY), body, len, ts,
                       strlen(ts), NULL, 0, mac);
        char hex[65];
        cs_hex_encode(mac, sizeof(mac), hex);
        char *h = xasprintf("X-Retell-Signature: v=%s,d=%s\r\n", ts, hex);
        struct it_resp r = it_post(ingest_port, "/webhooks/retell", h, body,
                                   len);
        cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
        free(h);
        free(body);
    }
    json_decref(doc);
}

/* How many records the sandbox holds for provider/type, and with prop,
 * how many distinct values of properties.<prop> they have. */
static int sandbox_count(const char *provider, const char *type,
                         const char *prop, int *distinct_out)
{
    char path[160];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=%s&type=%s&count=1%s%s", provider,
             type, prop ? "&distinct=" : "", prop ? prop : "");
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200, "%s: %.*s", path, (int)r.body_len, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j, "records answer is not JSON");
    int n = (int)json_integer_value(json_object_get(j, "count"));
    if (distinct_out)
        *distinct_out = (int)json_integer_value(json_object_get(j,
                                                                "distinct"));
    json_decref(j);
    return n;
}

static int records(const char *provider, const char *type)
{
    return sandbox_count(provider, type, NULL, NULL);
}

/* Distinct phones of contacts: a duplicate contact shows as fewer. */
static int distinct(const char *provider, const char *type, const char *prop)
{
    int d = 0;
    sandbox_count(provider, type, prop, &d);
    return d;
}

static long long rint_(const char *fmt, const char *arg)
{
    return it_redis_int(rc, fmt, arg);
}

/* Every job finished: streams empty, nothing delayed or pending. */
static bool drained(void)
{
    const char *qs[] = {"hubspot", "zapier"};
    for (size_t i = 0; i < 2; i++) {
        char key[64];
        snprintf(key, sizeof(key), "cs:{0}:q:%s", qs[i]);
        if (rint_("XLEN %s", key) > 0)
            return false;
    }
    return it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static void wait_until(bool (*cond)(void), int timeout_ms, const char *what)
{
    int64_t end = cs_mono_ms() + timeout_ms;
    while (cs_mono_ms() < end) {
        if (cond())
            return;
        usleep(50000);
    }
    cr_assert_fail("timed out waiting for %s", what);
}

static int want_notes;
static bool notes_reached(void)
{
    return records("hubspot", "notes") >= want_notes && drained();
}

static void set_faults(const char *json)
{
    struct it_resp r = it_post(sandbox_port, "/_sandbox/faults", NULL, json,
                               strlen(json));
    cr_assert_eq(r.status, 200, "faults: %.*s", (int)r.body_len, r.body);
}

static long long dead_count(void)
{
    return it_redis_int(rc, "XLEN cs:{0}:dead");
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
