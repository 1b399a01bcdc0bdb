/*
 * test_scheduler.c - callsync-scheduler against a private Redis and a
 * fresh PostgreSQL database, with the real ingest, worker and provider
 * sandbox where a job has to run: the lease (one leader, take-over after
 * kill -9 and after SIGTERM, fencing tokens), promotion of due retries,
 * re-queueing of a dead consumer's entries, replay of parked jobs,
 * retention of dead letters and sync logs, and the worker's /metrics.
 */
#include "it_support.h"

#include <jansson.h>
#include <sys/stat.h>

#define RETELL_KEY "key_sched_test_41b2"
#define HUBSPOT_TOKEN "pat-na1-test-0000"
#define LEASE_KEY "cs:lease:scheduler"
#define MAX_SCHED 3

static struct tpg db;
static struct cs_keyring *kr;
static char keys[80];
static char dir[128];
static pid_t redis_pid, sandbox_pid, ingest_pid, worker_pid;
static pid_t sched_pid[MAX_SCHED];
static int sched_port[MAX_SCHED];
static int redis_port, sandbox_port, ingest_port, worker_port;
static redisContext *rc;
static char *org, *agent, *c_hub;
static int worker_seq;

/* ---- Processes --------------------------------------------------------- */

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

static void free_env(char **env)
{
    for (int i = 0; env[i]; i++)
        free(env[i]);
}

static const char *log_level(void)
{
    return getenv("CS_KEEP_TEST_DIR") ? "debug" : "info";
}

static void start_redis(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_port);
    char *argv[] = {(char *)"/usr/bin/redis-server", (char *)"--port", port,
                    (char *)"--bind", (char *)"127.0.0.1", (char *)"--dir",
                    dir, (char *)"--appendonly", (char *)"yes",
                    (char *)"--save", (char *)"", NULL};
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

static void start_sandbox(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", sandbox_port);
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-sandbox", (char *)"--port",
                    port, (char *)"--hubspot-token", (char *)HUBSPOT_TOKEN,
                    (char *)"--hubspot-rate", (char *)"1000000", NULL};
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
    free_env(env);
    it_wait_ready(ingest_port, 15000);
}

static void start_worker(void)
{
    worker_port = it_free_port();
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_PROVIDER_BASE_URLS",
               "hubspot=http://127.0.0.1:%d/hubspot", sandbox_port),
        env_kv("CALLSYNC_RETRY_POLICY",
               "base=50ms,cap=500ms,attempts=10,max_age=1h"),
        env_kv("CALLSYNC_WORKER_VISIBILITY_MS", "1500"),
        env_kv("CALLSYNC_WORKER_GRACE_MS", "3000"),
        env_kv("CALLSYNC_WORKER_CONSUMER", "w%d-%d", (int)getpid(),
               worker_seq++),
        env_kv("CALLSYNC_WORKER_METRICS_ADDR", "127.0.0.1:%d", worker_port),
        env_kv("CALLSYNC_LOG_LEVEL", "%s", log_level()),
        NULL,
    };
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-worker", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/worker.log", dir);
    worker_pid = it_spawn(argv, env, log);
    free_env(env);
    it_wait_ready(worker_port, 15000);
}

/* Scheduler i with the test's timings; extra is NULL-terminated. */
static void start_scheduler(int i, char *const *extra)
{
    sched_port[i] = it_free_port();
    char *env[32] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_SCHEDULER_METRICS_ADDR", "127.0.0.1:%d",
               sched_port[i]),
        env_kv("CALLSYNC_SCHEDULER_LEASE_MS", "2000"),
        env_kv("CALLSYNC_SCHEDULER_TICK_MS", "100"),
        env_kv("CALLSYNC_SCHEDULER_REPLAY_INTERVAL_MS", "300"),
        env_kv("CALLSYNC_SCHEDULER_RETENTION_INTERVAL_MS", "300"),
        env_kv("CALLSYNC_WORKER_VISIBILITY_MS", "1500"),
        env_kv("CALLSYNC_LOG_LEVEL", "%s", log_level()),
    };
    int n = 9;
    for (int k = 0; extra && extra[k]; k++)
        env[n++] = xstrdup(extra[k]);
    env[n] = NULL;
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-scheduler", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/scheduler%d.log", dir, i);
    sched_pid[i] = it_spawn(argv, env, log);
    free_env(env);
    /* /healthz answers once the loop runs. */
    int64_t end = cs_mono_ms() + 10000;
    while (cs_mono_ms() < end) {
        int fd = it_connect(sched_port[i]);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    cr_assert_fail("scheduler %d did not start", i);
}

static char *add_conn(const char *type, const char *api_key,
                      const char *config)
{
    char *sealed = api_key ? cs_seal(kr, api_key, strlen(api_key)) : NULL;
    const char *p[] = {agent, org, type, sealed, config};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      "organization_id, integration_type, auth_type, api_key, "
                      "config) VALUES ($1, $2, $3, 'api_key', $4, $5::jsonb) "
                      "RETURNING id::text",
                      5, p);
    free(sealed);
    return id;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/cs_sched_test_%d", (int)getpid());
    mkdir(dir, 0755);
    tpg_setup(&db, "sched", true);
    unsigned char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(i * 7 + 3);
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
    c_hub = add_conn("hubspot", HUBSPOT_TOKEN, "{\"rate_limit\":\"5000/1s\"}");
    redis_port = it_free_port();
    sandbox_port = it_free_port();
    ingest_port = it_free_port();
    start_redis();
}

static void teardown(void)
{
    for (int i = 0; i < MAX_SCHED; i++) {
        if (sched_pid[i] > 0)
            cr_expect_eq(it_stop(sched_pid[i], SIGTERM, 10000), 0,
                         "scheduler %d must exit 0 on SIGTERM", i);
        sched_pid[i] = 0;
    }
    if (worker_pid > 0)
        cr_expect_eq(it_stop(worker_pid, SIGTERM, 15000), 0,
                     "worker must exit 0 on SIGTERM");
    worker_pid = 0;
    if (ingest_pid > 0)
        it_stop(ingest_pid, SIGTERM, 15000);
    ingest_pid = 0;
    if (sandbox_pid > 0)
        it_stop(sandbox_pid, SIGTERM, 5000);
    sandbox_pid = 0;
    it_stop(redis_pid, SIGTERM, 5000);
    if (!getenv("CS_KEEP_TEST_DIR")) {
        char path[256];
        for (int i = 0; i < MAX_SCHED; i++) {
            snprintf(path, sizeof(path), "%s/scheduler%d.log", dir, i);
            it_expect_clean_log(path);
        }
        snprintf(path, sizeof(path), "%s/worker.log", dir);
        it_expect_clean_log(path);
        snprintf(path, sizeof(path), "%s/ingest.log", dir);
        it_expect_clean_log(path);
    }
    if (rc)
        redisFree(rc);
    rc = NULL;
    tpg_teardown(&db);
    cs_keyring_free(kr);
    free(org);
    free(agent);
    free(c_hub);
    char *cmd = getenv("CS_KEEP_TEST_DIR") ? xstrdup("true")
                                           : xasprintf("rm -rf %s", dir);
    (void)!system(cmd);
    free(cmd);
}

/* ---- Helpers ----------------------------------------------------------- */

/* The value of one sample on a /metrics page ("name{labels}" exactly as
 * written, or a bare name); -1 when absent. */
static double metric(int port, const char *sample)
{
    struct it_resp r = it_get(port, "/metrics");
    cr_assert_eq(r.status, 200);
    size_t n = strlen(sample);
    const char *p = r.body;
    while (p && *p) {
        if (strncmp(p, sample, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static double smetric(int i, const char *sample)
{
    return metric(sched_port[i], sample);
}

static bool is_leader(int i)
{
    return smetric(i, "callsync_scheduler_leader") == 1;
}

/* The pid named by the lease's token ("host-pid-hex"), or 0. */
static pid_t lease_holder(void)
{
    redisReply *r = redisCommand(rc, "GET %s", LEASE_KEY);
    cr_assert(r);
    pid_t pid = 0;
    if (r->type == REDIS_REPLY_STRING) {
        char *last = strrchr(r->str, '-');
        if (last) {
            *last = '\0';
            char *prev = strrchr(r->str, '-');
            if (prev)
                pid = (pid_t)strtol(prev + 1, NULL, 10);
        }
    }
    freeReplyObject(r);
    return pid;
}

static long long fence_counter(void)
{
    redisReply *r = redisCommand(rc, "GET {cs:lease:scheduler}:fence");
    cr_assert(r);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return v;
}

/* Index of the scheduler that leads, waiting up to ms; -1 if none. */
static int wait_leader(int n, int ms)
{
    int64_t end = cs_mono_ms() + ms;
    while (cs_mono_ms() < end) {
        for (int i = 0; i < n; i++)
            if (sched_pid[i] > 0 && is_leader(i))
                return i;
        usleep(20000);
    }
    return -1;
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

static long long rint_(const char *fmt, const char *arg)
{
    return it_redis_int(rc, fmt, arg);
}

/* Post calls [from, from + n) as signed Retell webhooks. */
static void post_calls(int from, int n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retell/call_analyzed.json",
             CS_SOURCE_DIR);
    json_t *doc = json_load_file(path, 0, NULL);
    cr_assert(doc);
    json_t *call = json_object_get(doc, "call");
    for (int i = from; i < from + n; i++) {
        char id[64], phone[20], email[64];
        snprintf(id, sizeof(id), "call_s_%06d", i);
        snprintf(phone, sizeof(phone), "+1415%07d", 5550000 + i);
        snprintf(email, sizeof(email), "caller%06d@example.com", i);
        json_object_set_new(call, "call_id", json_string(id));
        json_object_set_new(call, "from_number", json_string(phone));
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

static int records(const char *provider, const char *type)
{
    char path[160];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=%s&type=%s&count=1", provider, type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

static void set_faults(const char *json)
{
    struct it_resp r = it_post(sandbox_port, "/_sandbox/faults", NULL, json,
                               strlen(json));
    cr_assert_eq(r.status, 200, "faults: %.*s", (int)r.body_len, r.body);
}

/* A job document as ingest writes it, enough for the Redis scripts. */
static char *job_doc(const char *job_id, const char *provider,
                     const char *conn)
{
    return xasprintf("{\"job_id\":\"%s\",\"provider\":\"%s\","
                     "\"connection_id\":\"%s\",\"kind\":\"call_sync\","
                     "\"attempt\":1}",
                     job_id, provider, conn);
}

/* Stream entry ids of key, in order; returns how many (at most max). */
static size_t stream_ids(const char *key, char ids[][48], size_t max)
{
    redisReply *r = redisCommand(rc, "XRANGE %s - +", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < max; i++)
        snprintf(ids[n++], 48, "%s", r->element[i]->element[0]->str);
    freeReplyObject(r);
    return n;
}

/* The value of field in stream entry idx of key (xmalloc'd) or NULL. */
static char *stream_field(const char *key, size_t idx, const char *field)
{
    redisReply *r = redisCommand(rc, "XRANGE %s - +", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    char *v = NULL;
    if (idx < r->elements) {
        redisReply *f = r->element[idx]->element[1];
        for (size_t i = 0; i + 1 < f->elements; i += 2)
            if (strcmp(f->element[i]->str, field) == 0)
                v = xstrdup(f->element[i + 1]->str);
    }
    freeReplyObject(r);
    return v;
}

static char *hget(const char *key, const char *field)
{
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    cr_assert(r);
    char *v = r->type == REDIS_REPLY_STRING ? xstrdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static bool log_has(int i, const char *needle)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/scheduler%d.log", dir, i);
    char *s = it_read_file(path, NULL);
    bool found = strstr(s, needle) != NULL;
    free(s);
    return found;
}

TestSuite(scheduler, .init = setup, .fini = teardown, .timeout = 180);

/* ---- Lease ------------------------------------------------------------- */

Test(scheduler, two_schedulers_exactly_one_leader)
{
    start_scheduler(0, NULL);
    start_scheduler(1, NULL);
    int l = wait_leader(2, 5000);
    cr_assert_geq(l, 0, "nobody leads");
    /* For three lease periods, exactly one leads at every look. */
    int64_t end = cs_mono_ms() + 6000;
    int looks = 0;
    while (cs_mono_ms() < end) {
        int leaders = is_leader(0) + is_leader(1);
        cr_assert_eq(leaders, 1, "%d leaders", leaders);
        cr_assert_eq(is_leader(l), 1, "the lease changed hands");
        looks++;
        usleep(50000);
    }
    cr_expect_gt(looks, 20);
    cr_expect_eq(lease_holder(), sched_pid[l]);
    cr_expect_eq(fence_counter(), 1, "renewals must not draw new tokens");
    cr_expect_eq(smetric(l, "callsync_scheduler_lease_fencing_token"), 1);
    cr_expect_eq(smetric(1 - l, "callsync_scheduler_lease_fencing_token"), 0);
    cr_expect_eq(smetric(l, "callsync_scheduler_lease_changes_total{event="
                            "\"acquired\"}"),
                 1);
    /* /readyz: both ready, one says it leads. */
    struct it_resp r = it_get(sched_port[l], "/readyz");
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"leader\":true"), "%s", r.body);
    r = it_get(sched_port[1 - l], "/readyz");
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"leader\":false"), "%s", r.body);
    /* Ticks run on the leader only. */
    cr_expect_gt(smetric(l, "callsync_scheduler_tick_duration_seconds_count"),
                 5);
    cr_expect_eq(smetric(1 - l,
                         "callsync_scheduler_tick_duration_seconds_count"),
                 0);
}

Test(scheduler, kill_9_leader_standby_takes_over_with_higher_fence)
{
    start_scheduler(0, NULL);
    start_scheduler(1, NULL);
    int l = wait_leader(2, 5000);
    cr_assert_geq(l, 0);
    usleep(1000000); /* a few renewals */
    double fence = smetric(l, "callsync_scheduler_lease_fencing_token");
    kill(sched_pid[l], SIGKILL);
    waitpid(sched_pid[l], NULL, 0);
    sched_pid[l] = 0;
    int64_t t0 = cs_mono_ms();
    int s = 1 - l;
    int64_t end = t0 + 10000;
    while (!is_leader(s) && cs_mono_ms() < end)
        usleep(10000);
    int64_t took = cs_mono_ms() - t0;
    cr_assert(is_leader(s), "the stand-by never took over");
    /* Lease 2000 ms, stand-by tries every 100 ms: within the lease time
     * plus one try (and a little for the test's own polling). */
    cr_expect_leq(took, 2000 + 100 + 250, "take-over took %lld ms",
                  (long long)took);
    double fence2 = smetric(s, "callsync_scheduler_lease_fencing_token");
    cr_expect_gt(fence2, fence, "fencing token %g after %g", fence2, fence);
    cr_expect_eq(fence_counter(), (long long)fence2);
    cr_expect_eq(lease_holder(), sched_pid[s]);
}

Test(scheduler, sigterm_releases_the_lease_at_once)
{
    char *slow[] = {(char *)"CALLSYNC_SCHEDULER_LEASE_MS=10000", NULL};
    start_scheduler(0, slow);
    start_scheduler(1, slow);
    int l = wait_leader(2, 5000);
    cr_assert_geq(l, 0);
    int64_t t0 = cs_mono_ms();
    cr_expect_eq(it_stop(sched_pid[l], SIGTERM, 5000), 0,
                 "SIGTERM must end the scheduler with 0");
    sched_pid[l] = 0;
    int s = 1 - l;
    int64_t end = t0 + 15000;
    while (!is_leader(s) && cs_mono_ms() < end)
        usleep(10000);
    int64_t took = cs_mono_ms() - t0;
    cr_assert(is_leader(s));
    cr_expect_lt(took, 1500, "took %lld ms with a 10 s lease",
                 (long long)took);
    cr_expect_eq(lease_holder(), sched_pid[s]);
    cr_expect_eq(fence_counter(), 2);
    char path[256];
    snprintf(path, sizeof(path), "%s/scheduler%d.log", dir, l);
    char *log = it_read_file(path, NULL);
    cr_expect(strstr(log, "\"lease_released\""), "%s", log);
    free(log);
}

/* ---- Promote ----------------------------------------------------------- */

static bool delayed_only_future(void)
{
    return it_redis_int(rc, "ZCARD cs:{0}:delayed") == 50;
}

Test(scheduler, due_retries_promoted_exactly_once_with_two_schedulers)
{
    /* 1500 due jobs and 50 not yet due; small batches so that promotion
     * spans many ticks while the leader is stopped half-way. */
    int64_t now = cs_now_ms();
    for (int i = 0; i < 1550; i++) {
        char id[40];
        snprintf(id, sizeof(id), "%032x", i);
        char *doc = job_doc(id, "hubspot", c_hub);
        long long due = i < 1500 ? now - 1000 + i % 7 : now + 3600000;
        redisReply *r = redisCommand(rc, "ZADD cs:{0}:delayed %lld %s", due,
                                     doc);
        freeReplyObject(r);
        r = redisCommand(rc, "HSET cs:{0}:job:%s state retrying deliveries 4",
                         id);
        freeReplyObject(r);
        free(doc);
    }
    char *batch[] = {(char *)"CALLSYNC_SCHEDULER_BATCH=5", NULL};
    start_scheduler(0, batch);
    start_scheduler(1, batch);
    int l = wait_leader(2, 5000);
    cr_assert_geq(l, 0);
    int64_t end = cs_mono_ms() + 10000;
    while (it_redis_int(rc, "XLEN cs:{0}:q:hubspot") < 200 &&
           cs_mono_ms() < end)
        usleep(5000);
    long long at_stop = it_redis_int(rc, "XLEN cs:{0}:q:hubspot");
    cr_assert(at_stop < 1500, "all promoted before the leader stopped");
    cr_expect_eq(it_stop(sched_pid[l], SIGTERM, 5000), 0);
    sched_pid[l] = 0;
    wait_until(delayed_only_future, 30000, "every due job promoted");
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:q:hubspot"), 1500);
    /* Each job exactly once, and its hash queued with a fresh count. */
    redisReply *r = redisCommand(rc, "XRANGE cs:{0}:q:hubspot - +");
    cr_assert(r && r->elements == 1500);
    static bool seen[1500];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < r->elements; i++) {
        const char *job_id = r->element[i]->element[1]->element[1]->str;
        int n = (int)strtol(job_id, NULL, 16);
        cr_assert(n >= 0 && n < 1500, "%s promoted", job_id);
        cr_assert(!seen[n], "%s promoted twice", job_id);
        seen[n] = true;
    }
    freeReplyObject(r);
    char *st = hget("cs:{0}:job:00000000000000000000000000000007", "state");
    char *dl = hget("cs:{0}:job:00000000000000000000000000000007",
                    "deliveries");
    cr_expect_str_eq(st, "queued");
    cr_expect_str_eq(dl, "0", "a clean retry must not count as poison");
    free(st);
    free(dl);
    /* The two counted 1500 between them: the stopped one says how many
     * it promoted in its last log line. */
    char path[256];
    snprintf(path, sizeof(path), "%s/scheduler%d.log", dir, l);
    char *log = it_read_file(path, NULL);
    const char *stopped = strstr(log, "\"scheduler_stopped\"");
    cr_assert(stopped, "%s", log);
    const char *pr = strstr(stopped, "\"promoted\":");
    cr_assert(pr);
    double by_first = strtod(pr + 11, NULL);
    free(log);
    double by_second = smetric(1 - l, "callsync_scheduler_promoted_total");
    cr_expect_gt(by_first, 0);
    cr_expect_gt(by_second, 0);
    cr_expect_eq(by_first + by_second, 1500, "%g + %g", by_first, by_second);
}

/* ---- Reclaim ----------------------------------------------------------- */

struct pending_entry {
    char id[48];
    char job_id[48];
};

/* Read one entry of the hubspot stream as consumer, counting a delivery in
 * the job hash as a worker does. */
static struct pending_entry read_as(const char *consumer)
{
    struct pending_entry p = {{0}, {0}};
    redisReply *r = redisCommand(rc,
                                 "XREADGROUP GROUP workers %s COUNT 1 "
                                 "STREAMS cs:{0}:q:hubspot >",
                                 consumer);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1,
              "nothing to read");
    redisReply *e = r->element[0]->element[1]->element[0];
    snprintf(p.id, sizeof(p.id), "%s", e->element[0]->str);
    for (size_t i = 0; i + 1 < e->element[1]->elements; i += 2)
        if (strcmp(e->element[1]->element[i]->str, "job_id") == 0)
            snprintf(p.job_id, sizeof(p.job_id), "%s",
                     e->element[1]->element[i + 1]->str);
    freeReplyObject(r);
    r = redisCommand(rc, "HINCRBY cs:{0}:job:%s deliveries 1", p.job_id);
    freeReplyObject(r);
    return p;
}

static long long pending_count(void)
{
    redisReply *r = redisCommand(rc, "XPENDING cs:{0}:q:hubspot workers");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

static bool two_notes_and_drained(void)
{
    return records("hubspot", "notes") >= 2 &&
           it_redis_int(rc, "XLEN cs:{0}:q:hubspot") == 0;
}

Test(scheduler, dead_consumers_entry_requeued_once_and_a_worker_completes_it)
{
    start_sandbox();
    start_ingest();
    post_calls(0, 2);
    cr_assert_eq(it_redis_int(rc, "XLEN cs:{0}:q:hubspot"), 2);
    redisReply *x = redisCommand(rc, "XGROUP CREATE cs:{0}:q:hubspot workers "
                                     "0 MKSTREAM");
    freeReplyObject(x);
    /* One worker took a job and died; another took one and is alive,
     * heartbeating it as workers do (XCLAIM JUSTID). */
    struct pending_entry dead = read_as("dead-worker");
    struct pending_entry live = read_as("live-worker");
    char *forget[] = {(char *)"CALLSYNC_SCHEDULER_FORGET_CONSUMERS_MS=2500",
                      NULL};
    start_scheduler(0, forget);
    cr_assert_geq(wait_leader(1, 5000), 0);
    int64_t end = cs_mono_ms() + 6000;
    while (cs_mono_ms() < end) {
        redisReply *h = redisCommand(rc,
                                     "XCLAIM cs:{0}:q:hubspot workers "
                                     "live-worker 0 %s JUSTID",
                                     live.id);
        freeReplyObject(h);
        usleep(300000);
    }
    /* 6 s is four visibility timeouts: the dead one's entry was re-queued
     * once, the live one's was left alone. */
    char ids[4][48];
    size_t n = stream_ids("cs:{0}:q:hubspot", ids, 4);
    cr_assert_eq(n, 2, "entries: %zu", n);
    cr_expect_str_eq(ids[0], live.id);
    cr_expect_str_neq(ids[1], dead.id, "the dead one's entry must be new");
    char *job_id = stream_field("cs:{0}:q:hubspot", 1, "job_id");
    cr_expect_str_eq(job_id, dead.job_id);
    free(job_id);
    cr_expect_eq(pending_count(), 1, "only the live one's entry is pending");
    cr_expect_eq(smetric(0, "callsync_scheduler_reclaimed_total"), 1);
    cr_expect(log_has(0, "\"jobs_requeued\""));
    /* The live one stops heartbeating: its entry goes too, once. */
    end = cs_mono_ms() + 10000;
    while (pending_count() > 0 && cs_mono_ms() < end)
        usleep(50000);
    cr_expect_eq(pending_count(), 0);
    usleep(1000000);
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:q:hubspot"), 2);
    cr_expect_eq(smetric(0, "callsync_scheduler_reclaimed_total"), 2);
    /* Both consumers, idle and with nothing pending, left the group. */
    end = cs_mono_ms() + 5000;
    while (smetric(0, "callsync_scheduler_consumers_removed_total") < 2 &&
           cs_mono_ms() < end)
        usleep(50000);
    cr_expect_eq(smetric(0, "callsync_scheduler_consumers_removed_total"), 2);
    redisReply *ci = redisCommand(rc, "XINFO CONSUMERS cs:{0}:q:hubspot "
                                      "workers");
    cr_expect(ci && ci->type == REDIS_REPLY_ARRAY && ci->elements == 0);
    freeReplyObject(ci);
    /* Any worker now runs both, and the job hash counted every delivery. */
    start_worker();
    wait_until(two_notes_and_drained, 30000, "both jobs done");
    cr_expect_eq(records("hubspot", "notes"), 2);
    cr_expect_eq(records("hubspot", "contacts"), 2);
    char key[96];
    snprintf(key, sizeof(key), "cs:{0}:job:%s", dead.job_id);
    char *st = hget(key, "state");
    char *dl = hget(key, "deliveries");
    cr_expect_str_eq(st, "done");
    cr_expect_str_eq(dl, "2");
    free(st);
    free(dl);
}

/* ---- Replay ------------------------------------------------------------ */

static char parked_key[160];

static bool three_parked(void)
{
    return it_redis_int(rc, "LLEN %s", parked_key) == 3;
}

static bool three_notes(void)
{
    return records("hubspot", "notes") == 3 &&
           it_redis_int(rc, "XLEN cs:{0}:q:hubspot") == 0;
}

static char *conn_status(const char *id)
{
    const char *p[] = {id};
    return it_sql(&db,
                  "SELECT connection_status FROM integration_connections "
                  "WHERE id = $1",
                  1, p);
}

Test(scheduler, parked_jobs_replayed_after_the_connection_is_connected)
{
    snprintf(parked_key, sizeof(parked_key), "cs:{0}:parked:%s", c_hub);
    start_sandbox();
    start_ingest();
    start_worker();
    start_scheduler(0, NULL);
    cr_assert_geq(wait_leader(1, 5000), 0);
    /* HubSpot refuses the token once: the job parks and the connection
     * is expired; the next two park because it is expired. */
    set_faults("[{\"provider\":\"hubspot\",\"status\":401,\"count\":1}]");
    post_calls(0, 1);
    int64_t end = cs_mono_ms() + 15000;
    while (it_redis_int(rc, "LLEN %s", parked_key) < 1 && cs_mono_ms() < end)
        usleep(50000);
    char *st = conn_status(c_hub);
    cr_assert_str_eq(st, "expired");
    free(st);
    post_calls(1, 2);
    wait_until(three_parked, 15000, "three parked jobs");
    cr_expect_eq(it_redis_int(rc, "SISMEMBER cs:{0}:parked_conns %s", c_hub),
                 1, "the park script indexes the connection");
    /* Not before the connection is connected again. */
    usleep(2000000);
    cr_expect_eq(it_redis_int(rc, "LLEN %s", parked_key), 3);
    cr_expect_eq(records("hubspot", "notes"), 0);
    cr_expect_eq(smetric(0, "callsync_scheduler_parked_replayed_total{reason="
                            "\"connected\"}"),
                 0);
    /* The user reconnects (callsyncctl also announces the change). */
    const char *p[] = {c_hub};
    PGresult *res = tpg_query(&db,
                              "UPDATE integration_connections SET "
                              "connection_status = 'connected' WHERE id = $1",
                              1, p);
    PQclear(res);
    redisReply *x = redisCommand(rc, "PUBLISH cs:cache:connections %s", agent);
    freeReplyObject(x);
    wait_until(three_notes, 20000, "three notes after the replay");
    cr_expect_eq(records("hubspot", "contacts"), 3);
    cr_expect_eq(it_redis_int(rc, "EXISTS %s", parked_key), 0);
    cr_expect_eq(it_redis_int(rc, "SCARD cs:{0}:parked_conns"), 0);
    cr_expect_eq(smetric(0, "callsync_scheduler_parked_replayed_total{reason="
                            "\"connected\"}"),
                 3);
    cr_expect(log_has(0, "\"parked_replayed\""));
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:dead"), 0);
}

Test(scheduler, parked_replay_decides_by_connection_state_in_batches)
{
    char *c_err = add_conn("zapier", NULL, "{}");
    char *c_gone = add_conn("zapier", NULL, "{}");
    char *c_off = add_conn("zapier", NULL, "{}");
    const char *p1[] = {c_err};
    PGresult *res = tpg_query(&db,
                              "UPDATE integration_connections SET "
                              "connection_status = 'error' WHERE id = $1",
                              1, p1);
    PQclear(res);
    const char *p2[] = {c_off};
    res = tpg_query(&db,
                    "UPDATE integration_connections SET is_active = false, "
                    "connection_status = 'disconnected' WHERE id = $1",
                    1, p2);
    PQclear(res);
    const char *p3[] = {c_gone};
    res = tpg_query(&db, "DELETE FROM integration_connections WHERE id = $1",
                    1, p3);
    PQclear(res);
    /* hub: connected, 5 jobs and one broken entry; err: 'error' status;
     * gone: deleted row; off: removed; bad: not a uuid. */
    struct {
        const char *conn;
        int jobs;
    } lists[] = {{c_hub, 5}, {c_err, 2}, {c_gone, 1}, {c_off, 2},
                 {"not-a-uuid", 1}};
    for (size_t k = 0; k < CS_ARRAY_LEN(lists); k++) {
        for (int i = 0; i < lists[k].jobs; i++) {
            char id[40];
            snprintf(id, sizeof(id), "%02zx%030d", k, i);
            char *doc = job_doc(id, k == 0 ? "hubspot" : "zapier",
                                lists[k].conn);
            redisReply *r = redisCommand(rc, "RPUSH cs:{0}:parked:%s %s",
                                         lists[k].conn, doc);
            freeReplyObject(r);
            r = redisCommand(rc, "HSET cs:{0}:job:%s state parked "
                                 "deliveries 3",
                             id);
            freeReplyObject(r);
            free(doc);
        }
        redisReply *r = redisCommand(rc, "SADD cs:{0}:parked_conns %s",
                                     lists[k].conn);
        freeReplyObject(r);
    }
    redisReply *r = redisCommand(rc, "RPUSH cs:{0}:parked:%s %s", c_hub,
                                 "{not json");
    freeReplyObject(r);
    char *batch[] = {(char *)"CALLSYNC_SCHEDULER_REPLAY_BATCH=2", NULL};
    start_scheduler(0, batch);
    cr_assert_geq(wait_leader(1, 5000), 0);
    int64_t end = cs_mono_ms() + 15000;
    while (it_redis_int(rc, "XLEN cs:{0}:q:hubspot") < 5 &&
           cs_mono_ms() < end)
        usleep(50000);
    usleep(1000000);
    /* Connected: all five in their order, then the broken one dead. */
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:q:hubspot"), 5);
    for (size_t i = 0; i < 5; i++) {
        char *job_id = stream_field("cs:{0}:q:hubspot", i, "job_id");
        char want[40];
        snprintf(want, sizeof(want), "00%030zu", i);
        cr_expect_str_eq(job_id, want, "order kept");
        free(job_id);
    }
    char *st = hget("cs:{0}:job:00000000000000000000000000000003", "state");
    char *dl = hget("cs:{0}:job:00000000000000000000000000000003",
                    "deliveries");
    cr_expect_str_eq(st, "queued");
    cr_expect_str_eq(dl, "0");
    free(st);
    free(dl);
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:dead"), 1);
    char *reason = stream_field("cs:{0}:dead", 0, "reason");
    cr_expect_str_eq(reason, "malformed_job");
    free(reason);
    /* Removed connections: replayed, for the worker to dead-letter with
     * the reason; 'error' and the bad id stay parked. */
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:q:zapier"), 3);
    cr_expect_eq(rint_("LLEN cs:{0}:parked:%s", c_err), 2);
    cr_expect_eq(rint_("LLEN cs:{0}:parked:%s", "not-a-uuid"), 1);
    cr_expect_eq(rint_("EXISTS cs:{0}:parked:%s", c_hub), 0);
    cr_expect_eq(rint_("EXISTS cs:{0}:parked:%s", c_off), 0);
    cr_expect_eq(rint_("SISMEMBER cs:{0}:parked_conns %s", c_hub), 0);
    cr_expect_eq(rint_("SISMEMBER cs:{0}:parked_conns %s", c_err), 1);
    cr_expect_eq(smetric(0, "callsync_scheduler_parked_replayed_total{reason="
                            "\"connected\"}"),
                 5);
    cr_expect_eq(smetric(0, "callsync_scheduler_parked_replayed_total{reason="
                            "\"connection_removed\"}"),
                 3);
    cr_expect_eq(smetric(0, "callsync_scheduler_parked_malformed_total"), 1);
    cr_expect(log_has(0, "\"parked_connection_id_invalid\""));
    free(c_err);
    free(c_gone);
    free(c_off);
}

/* ---- Retention --------------------------------------------------------- */

static bool retention_done(void)
{
    return smetric(0, "callsync_scheduler_trimmed_total{kind=\"sync_logs\"}") ==
               5 &&
           it_redis_int(rc, "XLEN cs:{0}:dead") == 2;
}

Test(scheduler, retention_trims_exactly_the_old_and_counts_them)
{
    /* Dead letters: 5 two hours old, 3 fresh; keep 1 h and at most 2. */
    long long now = cs_now_ms();
    for (int i = 0; i < 8; i++) {
        long long ms = i < 5 ? now - 7200000 + i : now - 10 + i;
        redisReply *r = redisCommand(rc,
                                     "XADD cs:{0}:dead %lld-0 job_id j%d "
                                     "reason test",
                                     ms, i);
        cr_assert(r && r->type == REDIS_REPLY_STRING);
        freeReplyObject(r);
    }
    /* Sync logs: 5 of 100 days ago, 2 of today. */
    const char *p[] = {c_hub};
    PGresult *res = tpg_query(
        &db,
        "INSERT INTO integration_sync_logs (integration_connection_id, "
        "operation_type, status, created_at) SELECT $1::uuid, 'contact', "
        "'success', now() - interval '100 days' - g * interval '1 minute' "
        "FROM generate_series(1, 5) g UNION ALL SELECT $1::uuid, 'note', "
        "'success', now() FROM generate_series(1, 2)",
        1, p);
    PQclear(res);
    char *env[] = {(char *)"CALLSYNC_DEAD_RETENTION=1h",
                   (char *)"CALLSYNC_DEAD_MAX=2",
                   (char *)"CALLSYNC_SYNC_LOG_RETENTION=90d",
                   (char *)"CALLSYNC_SCHEDULER_RETENTION_BATCH=2", NULL};
    start_scheduler(0, env);
    cr_assert_geq(wait_leader(1, 5000), 0);
    wait_until(retention_done, 15000, "retention");
    usleep(800000); /* a few more rounds change nothing */
    char ids[8][48];
    size_t n = stream_ids("cs:{0}:dead", ids, 8);
    cr_assert_eq(n, 2);
    char want[2][48];
    snprintf(want[0], 48, "%lld-0", now - 10 + 6);
    snprintf(want[1], 48, "%lld-0", now - 10 + 7);
    cr_expect_str_eq(ids[0], want[0]);
    cr_expect_str_eq(ids[1], want[1]);
    cr_expect_eq(smetric(0, "callsync_scheduler_trimmed_total{kind="
                            "\"dead_letters_age\"}"),
                 5);
    cr_expect_eq(smetric(0, "callsync_scheduler_trimmed_total{kind="
                            "\"dead_letters_count\"}"),
                 1);
    cr_expect_eq(smetric(0, "callsync_scheduler_trimmed_total{kind="
                            "\"sync_logs\"}"),
                 5);
    char *left = it_sql(&db,
                        "SELECT count(*) FROM integration_sync_logs WHERE "
                        "created_at > now() - interval '1 day'",
                        0, NULL);
    char *all = it_sql(&db, "SELECT count(*) FROM integration_sync_logs", 0,
                       NULL);
    cr_expect_str_eq(left, "2");
    cr_expect_str_eq(all, "2");
    free(left);
    free(all);
    cr_expect(log_has(0, "\"dead_letters_trimmed\""));
    cr_expect(log_has(0, "\"sync_logs_trimmed\""));
}

/* ---- Worker metrics ---------------------------------------------------- */

static bool five_ended(void)
{
    return records("hubspot", "notes") == 4 &&
           it_redis_int(rc, "XLEN cs:{0}:dead") == 1 &&
           it_redis_int(rc, "XLEN cs:{0}:q:hubspot") == 0;
}

Test(scheduler, worker_metrics_show_the_counters_after_jobs_ran)
{
    start_sandbox();
    start_ingest();
    set_faults("[{\"provider\":\"hubspot\",\"path_prefix\":"
               "\"/crm/v3/objects/notes\",\"status\":400,\"count\":1}]");
    start_worker();
    struct it_resp r = it_get(worker_port, "/readyz");
    cr_expect_eq(r.status, 200, "%s", r.body);
    post_calls(0, 5);
    wait_until(five_ended, 30000, "four notes and one dead letter");
    usleep(300000);
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_total{provider="
                                     "\"hubspot\",outcome=\"done\"}"),
                 4);
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_total{provider="
                                     "\"hubspot\",outcome=\"dead\"}"),
                 1);
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_total{provider="
                                     "\"hubspot\",outcome=\"parked\"}"),
                 0);
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_in_flight"), 0);
    /* Contact search, contact, note: at least two requests a job. */
    double count = metric(worker_port,
                          "callsync_worker_provider_request_duration_seconds"
                          "_count{provider=\"hubspot\"}");
    cr_expect_geq(count, 10, "requests observed: %g", count);
    double inf = metric(worker_port,
                        "callsync_worker_provider_request_duration_seconds_"
                        "bucket{provider=\"hubspot\",le=\"+Inf\"}");
    cr_expect_eq(inf, count);
    cr_expect_geq(metric(worker_port,
                         "callsync_worker_provider_request_duration_seconds"
                         "_sum{provider=\"hubspot\"}"),
                  0);
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_reclaimed_total{"
                                     "provider=\"hubspot\"}"),
                 0);
    r = it_get(worker_port, "/nope");
    cr_expect_eq(r.status, 404);
    r = it_get(worker_port, "/healthz");
    cr_expect_eq(r.status, 200);
}

static bool one_done_after_wait(void)
{
    return records("hubspot", "notes") == 1 &&
           it_redis_int(rc, "XLEN cs:{0}:q:hubspot") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

Test(scheduler, worker_metrics_count_waits_retries_and_promotions)
{
    start_sandbox();
    start_ingest();
    set_faults("[{\"provider\":\"hubspot\",\"status\":503,\"count\":1}]");
    /* The connection allows one request per second: a job's several
     * requests wait for it. */
    const char *p[] = {c_hub};
    PGresult *res = tpg_query(&db,
                              "UPDATE integration_connections SET config = "
                              "'{\"rate_limit\":\"1/1s\"}' WHERE id = $1",
                              1, p);
    PQclear(res);
    start_worker();
    post_calls(0, 1);
    wait_until(one_done_after_wait, 30000, "the job through its rate limit");
    double waits = metric(worker_port, "callsync_worker_rate_limited_waits_"
                                       "total{provider=\"hubspot\"}");
    double secs = metric(worker_port, "callsync_worker_rate_limited_wait_"
                                      "seconds_total{provider=\"hubspot\"}");
    cr_expect_geq(waits, 1, "waits: %g", waits);
    cr_expect_gt(secs, 0.1, "wait seconds: %g", secs);
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_total{provider="
                                     "\"hubspot\",outcome=\"done\"}"),
                 1);
    /* The 503 sent it to the delayed set once; this worker promoted it. */
    cr_expect_eq(metric(worker_port, "callsync_worker_jobs_total{provider="
                                     "\"hubspot\",outcome=\"retried\"}"),
                 1);
    cr_expect_geq(metric(worker_port, "callsync_worker_delayed_promoted_total"),
                  1);
}

/* ---- Shards ------------------------------------------------------------ */

static bool every_shard_worked(void)
{
    return it_redis_int(rc, "XLEN cs:{0}:q:hubspot") == 1 &&
           it_redis_int(rc, "XLEN cs:{2}:q:zapier") == 1 &&
           it_redis_int(rc, "XLEN cs:{1}:dead") == 0;
}

Test(scheduler, every_configured_shard_is_served)
{
    int64_t now = cs_now_ms();
    char *a = job_doc("a0000000000000000000000000000000", "hubspot", c_hub);
    char *b = job_doc("b0000000000000000000000000000000", "zapier", c_hub);
    redisReply *r = redisCommand(rc, "ZADD cs:{0}:delayed %lld %s",
                                 (long long)now - 5, a);
    freeReplyObject(r);
    r = redisCommand(rc, "ZADD cs:{2}:delayed %lld %s", (long long)now - 5,
                     b);
    freeReplyObject(r);
    r = redisCommand(rc, "XADD cs:{1}:dead %lld-0 job_id old reason test",
                     (long long)now - 7200000);
    freeReplyObject(r);
    free(a);
    free(b);
    char *env[] = {(char *)"CALLSYNC_SHARDS=3",
                   (char *)"CALLSYNC_DEAD_RETENTION=1h", NULL};
    start_scheduler(0, env);
    cr_assert_geq(wait_leader(1, 5000), 0);
    wait_until(every_shard_worked, 10000, "work in shards 0, 1 and 2");
    cr_expect_eq(smetric(0, "callsync_scheduler_promoted_total"), 2);
    cr_expect_eq(smetric(0, "callsync_scheduler_trimmed_total{kind="
                            "\"dead_letters_age\"}"),
                 1);
    char *st = hget("cs:{2}:job:b0000000000000000000000000000000", "state");
    cr_expect_str_eq(st, "queued");
    free(st);
}

Test(scheduler, bad_configuration_exits_2_naming_the_key)
{
    struct {
        const char *env, *needle;
    } cases[] = {
        {"CALLSYNC_DEAD_RETENTION=30 days", "CALLSYNC_DEAD_RETENTION"},
        {"CALLSYNC_SYNC_LOG_RETENTION=-1d", "CALLSYNC_SYNC_LOG_RETENTION"},
        {"CALLSYNC_SCHEDULER_LEASE_MS=10", "CALLSYNC_SCHEDULER_LEASE_MS"},
        {"CALLSYNC_SCHEDULER_METRICS_ADDR=nonsense",
         "CALLSYNC_SCHEDULER_METRICS_ADDR"},
        {"CALLSYNC_REDIS_URL=http://x", "CALLSYNC_REDIS_URL"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/bad%zu.log", dir, i);
        char *env[] = {(char *)cases[i].env, NULL};
        char *argv[] = {(char *)CS_BIN_DIR "/callsync-scheduler", NULL};
        pid_t pid = it_spawn(argv, env, path);
        int st = 0;
        waitpid(pid, &st, 0);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: status %d",
                  cases[i].env, st);
        char *log = it_read_file(path, NULL);
        cr_expect(strstr(log, cases[i].needle), "%s: %s", cases[i].env, log);
        free(log);
        it_expect_clean_log(path);
    }
    cr_expect_eq(it_redis_int(rc, "EXISTS %s", LEASE_KEY), 0,
                 "a refused start must not take the lease");
}

/* ---- Redis outage ------------------------------------------------------ */

static bool promoted_after_restart(void)
{
    return it_redis_int(rc, "XLEN cs:{0}:q:hubspot") == 1;
}

Test(scheduler, redis_restart_steps_down_then_leads_again)
{
    start_scheduler(0, NULL);
    cr_assert_geq(wait_leader(1, 5000), 0);
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redisFree(rc);
    rc = NULL;
    /* Without Redis the lease cannot be renewed: within the lease time
     * the scheduler stops acting and says it is not ready. */
    int64_t t0 = cs_mono_ms();
    while (is_leader(0) && cs_mono_ms() - t0 < 5000)
        usleep(20000);
    int64_t took = cs_mono_ms() - t0;
    cr_expect(!is_leader(0), "still leading without Redis");
    cr_expect_leq(took, 2000, "stepped down after %lld ms", (long long)took);
    struct it_resp r = it_get(sched_port[0], "/readyz");
    cr_expect_eq(r.status, 503, "%s", r.body);
    cr_expect(strstr(r.body, "\"redis\":false"), "%s", r.body);
    /* The loss is counted at the lease timer's next turn. */
    int64_t end = cs_mono_ms() + 1000;
    while (smetric(0, "callsync_scheduler_lease_changes_total{event="
                      "\"lost\"}") < 1 &&
           cs_mono_ms() < end)
        usleep(20000);
    cr_expect_eq(smetric(0, "callsync_scheduler_lease_changes_total{event="
                            "\"lost\"}"),
                 1);
    start_redis();
    cr_assert_geq(wait_leader(1, 10000), 0, "no leader after the restart");
    char *doc = job_doc("c0000000000000000000000000000000", "hubspot", c_hub);
    redisReply *x = redisCommand(rc, "ZADD cs:{0}:delayed %lld %s",
                                 (long long)cs_now_ms() - 1, doc);
    freeReplyObject(x);
    free(doc);
    wait_until(promoted_after_restart, 5000, "a promotion after the restart");
    r = it_get(sched_port[0], "/readyz");
    cr_expect_eq(r.status, 200, "%s", r.body);
}
