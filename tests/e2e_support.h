/*
 * e2e_support.h - the end-to-end harness of the worker tests: webhooks
 * into the real ingest, jobs through a private Redis (AOF, appendfsync
 * always) into the real worker, requests answered by the provider
 * sandbox. Header-only, with the harness's state in static variables:
 * include it from exactly one test file.
 *
 *   e2e_setup("worker", latency_ms);   database, keyring, org and agent,
 *                                      Redis and the sandbox
 *   add_conn(...) / ctl_add_conn(...)  connections (SQL, or callsyncctl)
 *   start_ingest(); start_worker(n);
 *   post_calls(from, n) / post_fixture_calls(fixture, from, n)
 *   records("hubspot", "notes"), wait_until(cond, ms, what), ...
 *   e2e_teardown();                    stops everything, checks the logs
 *                                      for sanitizer reports
 */
#ifndef CS_TESTS_E2E_SUPPORT_H
#define CS_TESTS_E2E_SUPPORT_H

#include "it_support.h"

#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>

#define RETELL_KEY "key_worker_test_7c1d"
#define HUBSPOT_TOKEN "pat-na1-test-0000"
#define GHL_TOKEN "pit-ghl-test-5e1a"
#define STRIPE_KEY "sk_test_e2e0000000000000000000001"
#define TWILIO_SID "AC0123456789abcdef0123456789abcdef"
#define TWILIO_TOKEN "twilio-e2e-token"
#define SENDGRID_KEY "SG.e2e-key.0123456789"
#define PD_TOKEN "pd-e2e-token-3c9f"
#define ZOHO_TOKEN "1000.zoho-e2e-token-8b2d"
#define SF_TOKEN "00D5g000004E2E0!AQ4AQE2eTestToken"
#define MONDAY_TOKEN "eyJhbGciOiJIUzI1NiJ9.mon-e2e"
#define HCP_KEY "hcp-e2e-key-7f3b"
#define SEGMENT_KEY "wk_e2e_segment_91c2"

static struct tpg db;
static struct cs_keyring *kr;
static char keys[80];
static char dir[128];
static pid_t redis_pid, sandbox_pid, ingest_pid, worker_pid;
static int redis_port, sandbox_port, ingest_port;
static redisContext *rc;
static char *org, *agent;
static int worker_seq;
static int worker_request_timeout_ms; /* 0: the worker's default */
/* Up to four more "NAME=value" settings for the next start_worker. */
static const char *worker_env_extra[4];
/* Up to two more for the next start_ingest. */
static const char *ingest_env_extra[2];
/* Up to eight more sandbox arguments ("--calendly-token", "T", ...) for
 * the next e2e_setup. */
static const char *sandbox_args_extra[8];

/* ---- Processes --------------------------------------------------------- */

static inline void start_redis(void)
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

static inline void start_sandbox(int latency_ms)
{
    char port[16], lat[16];
    snprintf(port, sizeof(port), "%d", sandbox_port);
    snprintf(lat, sizeof(lat), "%d", latency_ms);
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-sandbox", (char *)"--port",
                    port, (char *)"--latency-ms", lat, (char *)"--hubspot-token",
                    (char *)HUBSPOT_TOKEN, (char *)"--hubspot-rate",
                    (char *)"1000000", (char *)"--gohighlevel-token",
                    (char *)GHL_TOKEN, (char *)"--gohighlevel-rate",
                    (char *)"1000000", (char *)"--stripe-key",
                    (char *)STRIPE_KEY, (char *)"--twilio-auth",
                    (char *)TWILIO_SID ":" TWILIO_TOKEN,
                    (char *)"--sendgrid-key", (char *)SENDGRID_KEY,
                    (char *)"--pipedrive-token", (char *)PD_TOKEN,
                    (char *)"--pipedrive-rate", (char *)"1000000",
                    (char *)"--zoho-token", (char *)ZOHO_TOKEN,
                    (char *)"--zoho-credits", (char *)"100000000",
                    (char *)"--salesforce-token", (char *)SF_TOKEN,
                    (char *)"--monday-token", (char *)MONDAY_TOKEN,
                    (char *)"--housecall-pro-token", (char *)HCP_KEY,
                    (char *)"--segment-write-key", (char *)SEGMENT_KEY, NULL,
                    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t n = 0;
    while (argv[n])
        n++;
    for (size_t i = 0; i < CS_ARRAY_LEN(sandbox_args_extra); i++)
        if (sandbox_args_extra[i])
            argv[n++] = (char *)sandbox_args_extra[i];
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

static inline char *env_kv(const char *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline char *env_kv(const char *k, const char *fmt, ...)
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

static inline void start_ingest(void)
{
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_INGEST_PORT", "%d", ingest_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_RETELL_API_KEYS", "%s", RETELL_KEY),
        env_kv("CALLSYNC_INGEST_THREADS", "1"),
        env_kv("CALLSYNC_LOG_LEVEL", "warn"),
        NULL, NULL, NULL,
    };
    size_t n = 0;
    while (env[n])
        n++;
    for (size_t i = 0; i < CS_ARRAY_LEN(ingest_env_extra); i++)
        if (ingest_env_extra[i])
            env[n++] = xstrdup(ingest_env_extra[i]);
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-ingest", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/ingest.log", dir);
    ingest_pid = it_spawn(argv, env, log);
    for (int i = 0; env[i]; i++)
        free(env[i]);
    it_wait_ready(ingest_port, 15000);
}

/* The worker, every provider pointed at the sandbox; fast retries. */
static inline void start_worker(int inflight)
{
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_PROVIDER_BASE_URLS",
               "hubspot=http://127.0.0.1:%d/hubspot,"
               "gohighlevel=http://127.0.0.1:%d/gohighlevel,"
               "retell=http://127.0.0.1:%d/retell,"
               "google_calendar=http://127.0.0.1:%d/google_calendar,"
               "cal_com=http://127.0.0.1:%d/cal_com,"
               "calendly=http://127.0.0.1:%d/calendly,"
               "outlook=http://127.0.0.1:%d/outlook,"
               "stripe=http://127.0.0.1:%d/stripe,"
               "twilio=http://127.0.0.1:%d/twilio,"
               "sendgrid=http://127.0.0.1:%d/sendgrid,"
               "pipedrive=http://127.0.0.1:%d/pipedrive,"
               "zoho=http://127.0.0.1:%d/zoho,"
               "salesforce=http://127.0.0.1:%d/salesforce,"
               "monday=http://127.0.0.1:%d/monday,"
               "housecall_pro=http://127.0.0.1:%d/housecall_pro,"
               "segment=http://127.0.0.1:%d/segment",
               sandbox_port, sandbox_port, sandbox_port, sandbox_port,
               sandbox_port, sandbox_port, sandbox_port, sandbox_port,
               sandbox_port,
               sandbox_port, sandbox_port, sandbox_port, sandbox_port,
               sandbox_port, sandbox_port, sandbox_port),
        env_kv("CALLSYNC_RETELL_API_KEYS", "%s", RETELL_KEY),
        env_kv("CALLSYNC_RETRY_POLICY",
               "base=50ms,cap=500ms,attempts=10,max_age=1h"),
        env_kv("CALLSYNC_WORKER_VISIBILITY_MS", "1500"),
        env_kv("CALLSYNC_WORKER_INFLIGHT", "%d", inflight),
        env_kv("CALLSYNC_WORKER_GRACE_MS", "3000"),
        env_kv("CALLSYNC_WORKER_CONSUMER", "w%d-%d", (int)getpid(),
               worker_seq++),
        env_kv("CALLSYNC_LOG_LEVEL", "%s",
               getenv("CS_KEEP_TEST_DIR") ? "info" : "warn"),
        env_kv("CALLSYNC_WORKER_REQUEST_TIMEOUT_MS", "%d",
               worker_request_timeout_ms > 0 ? worker_request_timeout_ms
                                             : 30000),
        NULL, NULL, NULL, NULL, NULL,
    };
    size_t n = 0;
    while (env[n])
        n++;
    for (size_t i = 0; i < CS_ARRAY_LEN(worker_env_extra); i++)
        if (worker_env_extra[i])
            env[n++] = xstrdup(worker_env_extra[i]);
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-worker", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/worker.log", dir);
    worker_pid = it_spawn(argv, env, log);
    for (int i = 0; env[i]; i++)
        free(env[i]);
}

/* A connection of the agent, inserted directly (api_key auth). */
static inline char *add_conn(const char *type, const char *api_key,
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

/*
 * A connection of the agent made the operator's way: `callsyncctl
 * connections add --agent <agent> <args>`, with the secret (when given)
 * in CS_E2E_SECRET for --api-key-env CS_E2E_SECRET or the like. Returns
 * the new connection's id.
 */
static inline char *ctl_add_conn(const char *args, const char *secret)
{
    char errpath[200];
    snprintf(errpath, sizeof(errpath), "%s/ctl.err", dir);
    char *cmd = xasprintf(
        "CALLSYNC_DATABASE_URL='%s' CALLSYNC_REDIS_URL="
        "'redis://127.0.0.1:%d/0' CALLSYNC_ENCRYPTION_KEYS='%s' "
        "CS_E2E_SECRET='%s' '%s' connections add --agent %s %s 2>'%s'",
        db.url, redis_port, keys, secret ? secret : "",
        CS_BIN_DIR "/callsyncctl", agent, args, errpath);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run callsyncctl");
    free(cmd);
    char out[256] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    char err[1024] = "";
    FILE *e = fopen(errpath, "r");
    if (e) {
        size_t en = fread(err, 1, sizeof(err) - 1, e);
        err[en] = '\0';
        fclose(e);
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "callsyncctl connections add failed: %s", err);
    cr_assert(n == 37 && out[36] == '\n', "callsyncctl printed '%s'", out);
    out[36] = '\0';
    return xstrdup(out);
}

/* Run callsyncctl with args against the harness's database, Redis and
 * sandbox (CALLSYNC_PROVIDER_BASE_URLS as the worker has it); returns its
 * exit status (-1 if it did not exit) and, with out, what it printed on
 * stdout and stderr (to free). */
static inline int ctl_run_out(const char *args, char **out)
{
    char path[200];
    snprintf(path, sizeof(path), "%s/ctl.out", dir);
    char *cmd = xasprintf(
        "CALLSYNC_DATABASE_URL='%s' CALLSYNC_REDIS_URL="
        "'redis://127.0.0.1:%d/0' CALLSYNC_ENCRYPTION_KEYS='%s' "
        "CALLSYNC_PROVIDER_BASE_URLS='hubspot=http://127.0.0.1:%d/hubspot,"
        "gohighlevel=http://127.0.0.1:%d/gohighlevel,"
        "google_calendar=http://127.0.0.1:%d/google_calendar,"
        "cal_com=http://127.0.0.1:%d/cal_com,"
        "calendly=http://127.0.0.1:%d/calendly,"
        "outlook=http://127.0.0.1:%d/outlook,"
        "stripe=http://127.0.0.1:%d/stripe,"
        "twilio=http://127.0.0.1:%d/twilio,"
        "sendgrid=http://127.0.0.1:%d/sendgrid,"
        "pipedrive=http://127.0.0.1:%d/pipedrive,"
        "zoho=http://127.0.0.1:%d/zoho,"
        "salesforce=http://127.0.0.1:%d/salesforce,"
        "monday=http://127.0.0.1:%d/monday,"
        "housecall_pro=http://127.0.0.1:%d/housecall_pro' "
        "'%s' %s >'%s' 2>&1",
        db.url, redis_port, keys, sandbox_port, sandbox_port, sandbox_port,
        sandbox_port, sandbox_port, sandbox_port, sandbox_port, sandbox_port,
        sandbox_port, sandbox_port, sandbox_port, sandbox_port, sandbox_port,
        sandbox_port, CS_BIN_DIR "/callsyncctl", args, path);
    int st = system(cmd);
    free(cmd);
    if (out) {
        FILE *f = fopen(path, "rb");
        struct buf b;
        buf_init(&b, 1 << 20);
        char chunk[4096];
        size_t n;
        while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            cr_assert(buf_add(&b, chunk, n) == 0);
        if (f)
            fclose(f);
        cr_assert(buf_add(&b, "", 1) == 0);
        *out = buf_take(&b, &n);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int ctl_run(const char *args)
{
    return ctl_run_out(args, NULL);
}

/* ---- Setup and teardown ------------------------------------------------ */

/* A fresh database (tag names it), keyring, organisation and agent, free
 * ports, Redis and the sandbox. Connections and processes come after. */
static inline void e2e_setup(const char *tag, int latency_ms)
{
    snprintf(dir, sizeof(dir), "/tmp/cs_%s_test_%d", tag, (int)getpid());
    mkdir(dir, 0755);
    tpg_setup(&db, tag, true);
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
}

static inline void e2e_teardown(void)
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
    memset(worker_env_extra, 0, sizeof(worker_env_extra));
    memset(ingest_env_extra, 0, sizeof(ingest_env_extra));
    memset(sandbox_args_extra, 0, sizeof(sandbox_args_extra));
    tpg_teardown(&db);
    cs_keyring_free(kr);
    free(org);
    free(agent);
    char *cmd = getenv("CS_KEEP_TEST_DIR") ? xstrdup("true")
                                           : xasprintf("rm -rf %s", dir);
    (void)!system(cmd);
    free(cmd);
}

/* ---- Calls ------------------------------------------------------------- */

/* Post calls [from, from + n) of a Retell fixture (tests/fixtures/retell/
 * <fixture>) as signed webhooks, each a distinct caller. */
static inline void post_fixture_calls(const char *fixture, int from,
                                      int n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retell/%s",
             CS_SOURCE_DIR, fixture);
    json_t *doc = json_load_file(path, 0, NULL);
    cr_assert(doc, "cannot read %s", path);
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

static inline void post_calls(int from, int n)
{
    post_fixture_calls("call_analyzed.json", from, n);
}

/* ---- The sandbox and Redis --------------------------------------------- */

/* How many records the sandbox holds for provider/type, and with prop,
 * how many distinct values of it they have. */
static inline int sandbox_count(const char *provider, const char *type,
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

static inline int records(const char *provider, const char *type)
{
    return sandbox_count(provider, type, NULL, NULL);
}

/* Distinct values of prop: a duplicate shows as fewer. */
static inline int distinct(const char *provider, const char *type,
                           const char *prop)
{
    int d = 0;
    sandbox_count(provider, type, prop, &d);
    return d;
}

static inline long long rint_(const char *fmt, const char *arg)
{
    return it_redis_int(rc, fmt, arg);
}

/* Every job finished: streams empty, nothing delayed or pending. */
static inline bool drained(void)
{
    const char *qs[] = {"hubspot", "zapier", "gohighlevel"};
    for (size_t i = 0; i < CS_ARRAY_LEN(qs); i++) {
        char key[64];
        snprintf(key, sizeof(key), "cs:{0}:q:%s", qs[i]);
        if (rint_("XLEN %s", key) > 0)
            return false;
    }
    return it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static inline void wait_until(bool (*cond)(void), int timeout_ms,
                              const char *what)
{
    int64_t end = cs_mono_ms() + timeout_ms;
    while (cs_mono_ms() < end) {
        if (cond())
            return;
        usleep(50000);
    }
    cr_assert_fail("timed out waiting for %s", what);
}

static inline void set_faults(const char *json)
{
    struct it_resp r = it_post(sandbox_port, "/_sandbox/faults", NULL, json,
                               strlen(json));
    cr_assert_eq(r.status, 200, "faults: %.*s", (int)r.body_len, r.body);
}

static inline long long dead_count(void)
{
    return it_redis_int(rc, "XLEN cs:{0}:dead");
}

#endif
