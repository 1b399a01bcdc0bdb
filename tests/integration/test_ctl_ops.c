/*
 * test_ctl_ops.c - callsyncctl's operator commands against a private Redis
 * and a fresh PostgreSQL: queues, dead list / show / replay / purge,
 * trace and connections show.
 *
 * Dead letters are made by the worker's own dead script (worker/scripts.c,
 * included below) from jobs enqueued and delivered the way ingest and the
 * worker do it, so their format is exactly the worker's. The last test
 * runs the real ingest, worker and provider sandbox: a permanent 400
 * dead-letters jobs, and a replay finishes them without a second write.
 */
#include "it_support.h"
#include "norm.h"

#include "../../worker/scripts.c"

#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>

#define CTL CS_BIN_DIR "/callsyncctl"
#define HUBSPOT_TOKEN "pat-na1-test-0000"
#define RETELL_KEY "key_ctl_ops_test_9b2e"
#define API_SECRET "hs-private-app-secret-771"

static struct tpg db;
static struct cs_keyring *kr;
static char keys[80];
static char dir[128];
static char errpath[192];
static char stderr_text[16384];
static pid_t redis_pid, sandbox_pid, ingest_pid, worker_pid;
static int redis_port, sandbox_port, ingest_port;
static redisContext *rc;
static char *org, *agent, *agent2, *c_hub, *c_zap, *c_hub2;
static int seq;

/* ---- Processes --------------------------------------------------------- */

static void start_redis(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_port);
    char *argv[] = {(char *)"/usr/bin/redis-server", (char *)"--port", port,
                    (char *)"--bind", (char *)"127.0.0.1", (char *)"--dir",
                    dir, (char *)"--appendonly", (char *)"no", (char *)"--save",
                    (char *)"", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    redis_pid = it_spawn(argv, NULL, log);
    for (int i = 0; i < 200; i++) {
        struct timeval tv = {5, 0};
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

static char *add_conn(const char *agent_id, const char *type,
                      const char *api_key, const char *webhook_url)
{
    char *sealed = api_key ? cs_seal(kr, api_key, strlen(api_key)) : NULL;
    char *secret = cs_seal(kr, API_SECRET, strlen(API_SECRET));
    const char *p[] = {agent_id, type, sealed, webhook_url, secret};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      "integration_type, auth_type, api_key, webhook_url, "
                      "api_secret, config, token_expires_at) VALUES ($1, $2, "
                      "'api_key', $3, $4, $5, '{\"rate_limit\":\"5000/1s\"}', "
                      "'2030-01-01T00:00:00Z') RETURNING id::text",
                      5, p);
    free(sealed);
    free(secret);
    return id;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/cs_ctl_ops_%d_%d", (int)getpid(), seq++);
    mkdir(dir, 0755);
    snprintf(errpath, sizeof(errpath), "%s/stderr", dir);
    tpg_setup(&db, "ctlops", true);
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
    agent2 = it_sql(&db,
                    "INSERT INTO agents (organization_id, name) VALUES ($1, "
                    "'night') RETURNING id::text",
                    1, ap);
    redis_port = it_free_port();
    start_redis();
    c_hub = add_conn(agent, "hubspot", HUBSPOT_TOKEN, NULL);
    c_zap = add_conn(agent, "zapier", NULL,
                     "https://hooks.zapier.com/hooks/catch/1/abc/");
    c_hub2 = add_conn(agent2, "hubspot", HUBSPOT_TOKEN, NULL);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
    setenv("CALLSYNC_REDIS_URL", url, 1);
    setenv("CALLSYNC_DATABASE_URL", db.url, 1);
    setenv("CALLSYNC_ENCRYPTION_KEYS", keys, 1);
    setenv("CALLSYNC_SHARDS", "1", 1);
    setenv("CALLSYNC_LOG_LEVEL", "warn", 1);
    unsetenv("CALLSYNC_CONFIG_FILE");
}

static void teardown(void)
{
    if (worker_pid > 0)
        cr_expect_eq(it_stop(worker_pid, SIGTERM, 15000), 0,
                     "worker must exit 0 on SIGTERM");
    if (ingest_pid > 0)
        it_stop(ingest_pid, SIGTERM, 15000);
    if (sandbox_pid > 0)
        it_stop(sandbox_pid, SIGTERM, 5000);
    it_stop(redis_pid, SIGTERM, 5000);
    char path[256];
    snprintf(path, sizeof(path), "%s/worker.log", dir);
    it_expect_clean_log(path);
    snprintf(path, sizeof(path), "%s/ingest.log", dir);
    it_expect_clean_log(path);
    worker_pid = ingest_pid = sandbox_pid = 0;
    if (rc)
        redisFree(rc);
    rc = NULL;
    tpg_teardown(&db);
    cs_keyring_free(kr);
    free(org);
    free(agent);
    free(agent2);
    free(c_hub);
    free(c_zap);
    free(c_hub2);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    (void)!system(cmd);
    free(cmd);
}

/*
 * Run callsyncctl with args (shell syntax, stdin from /dev/null), return
 * its exit code and its stdout in out (caller frees); stderr lands in
 * stderr_text.
 */
static int ctl(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int ctl(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char args[4096];
    int alen = vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    cr_assert(alen >= 0 && (size_t)alen < sizeof(args));
    char *cmd = xasprintf("'%s' %s </dev/null 2>'%s'", CTL, args, errpath);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run '%s'", cmd);
    free(cmd);
    size_t cap = 1 << 16, n = 0;
    char *text = xmalloc(cap);
    size_t got;
    while ((got = fread(text + n, 1, cap - 1 - n, p)) > 0) {
        n += got;
        if (cap - 1 - n == 0) {
            cap *= 2;
            text = xrealloc(text, cap);
        }
    }
    text[n] = '\0';
    int st = pclose(p);
    FILE *e = fopen(errpath, "r");
    size_t en = e ? fread(stderr_text, 1, sizeof(stderr_text) - 1, e) : 0;
    stderr_text[en] = '\0';
    if (e)
        fclose(e);
    if (out)
        *out = text;
    else
        free(text);
    cr_assert(WIFEXITED(st), "callsyncctl did not exit normally");
    return WEXITSTATUS(st);
}

/* Run with --json and parse stdout; asserts the exit code. */
static json_t *ctl_json(int want_rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static json_t *ctl_json(int want_rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char args[4096];
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    char *out;
    int r = ctl(&out, "%s --json", args);
    cr_assert_eq(r, want_rc, "callsyncctl %s: exit %d, stderr: %s", args, r,
                 stderr_text);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert(j, "callsyncctl %s: not JSON (%s): %s", args, je.text, out);
    free(out);
    return j;
}

/* ---- Redis helpers --------------------------------------------------------- */

static redisReply *cmd(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert(r, "redis: %s", rc->errstr);
    cr_assert(r->type != REDIS_REPLY_ERROR || strstr(r->str, "BUSYGROUP"),
              "redis: %s", r->str);
    return r;
}

static long long rnum(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static long long rnum(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "redis integer reply");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static char *hget(unsigned shard, const char *job_id, const char *field)
{
    redisReply *r = cmd("HGET cs:{%u}:job:%s %s", shard, job_id, field);
    char *v = r->type == REDIS_REPLY_STRING ? xstrdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

/* job_id -> times it appears in a stream. */
static json_t *stream_jobs(const char *key)
{
    json_t *seen = json_object();
    redisReply *r = cmd("XRANGE %s - +", key);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *f = r->element[i]->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2)
            if (strcmp(f->element[k]->str, "job_id") == 0) {
                const char *id = f->element[k + 1]->str;
                json_int_t n = json_integer_value(json_object_get(seen, id));
                json_object_set_new(seen, id, json_integer(n + 1));
            }
    }
    freeReplyObject(r);
    return seen;
}

/* What a dead letter is made of. */
struct dead_spec {
    unsigned shard;
    const char *provider;
    const char *conn;
    const char *agent;
    const char *call;
    const char *reason;        /* the dead letter's reason */
    const char *err_code;      /* code of each attempt's error (reason) */
    int http;
    const char *message;
    int attempts;              /* errors recorded (>= 1) */
    json_t *extra;             /* more job fields (stolen), or NULL */
};

/* The job document as ingest writes it. */
static json_t *job_doc(const struct dead_spec *s, const char *job_id)
{
    char now[32];
    cs_rfc3339_ms(cs_now_ms(), now);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:{s:s,"
                     "s:s,s:s}}",
                     "job_id", job_id, "provider", s->provider,
                     "connection_id", s->conn, "kind", "call_sync",
                     "agent_id", s->agent, "org_id", org, "attempt", 0,
                     "first_enqueued_at", now, "source", "retell",
                     "event_type", "call_analyzed", "event_id", s->call,
                     "call", "call_id", s->call, "source", "retell",
                     "summary", "Caller asked for a roof inspection.");
}

/*
 * Enqueue a job (ingest's HSETNX + XADD), deliver it to a consumer
 * (XREADGROUP), checkpoint its first step and mark its second in flight
 * (as the worker does), then end it with the worker's dead script.
 * Returns the job id (xmalloc'd). The stream must have no other
 * undelivered entry.
 */
static char *make_dead(const struct dead_spec *s)
{
    char job_id[33];
    cs_job_id(s->call, s->conn, job_id);
    char stream[96], hash[96], dead[32];
    snprintf(stream, sizeof(stream), "cs:{%u}:q:%s", s->shard, s->provider);
    snprintf(hash, sizeof(hash), "cs:{%u}:job:%s", s->shard, job_id);
    snprintf(dead, sizeof(dead), "cs:{%u}:dead", s->shard);
    json_t *job = job_doc(s, job_id);
    char *doc = json_dumps(job, JSON_COMPACT);
    freeReplyObject(cmd("XGROUP CREATE %s workers 0 MKSTREAM", stream));
    freeReplyObject(cmd("HSETNX %s state queued", hash));
    freeReplyObject(cmd("XADD %s * job_id %s job %s", stream, job_id, doc));
    free(doc);
    redisReply *r = cmd("XREADGROUP GROUP workers t1 COUNT 1 STREAMS %s >",
                        stream);
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    char *msg_id = xstrdup(r->element[0]->element[1]->element[0]->element[0]
                               ->str);
    freeReplyObject(r);
    freeReplyObject(cmd("HINCRBY %s deliveries 1", hash));
    freeReplyObject(
        cmd("HSET %s step:contact {\"contact_id\":\"c-%s\"} inflight:note 0",
            hash, s->call));
    /* The errors as job_with_error() records them. */
    char now[32];
    cs_rfc3339_ms(cs_now_ms(), now);
    json_t *errors = json_array();
    for (int a = 0; a < s->attempts; a++)
        json_array_append_new(
            errors, json_pack("{s:i,s:s,s:s,s:i,s:s,s:s}", "attempt", a,
                              "step", "note", "code",
                              s->err_code ? s->err_code : s->reason,
                              "http_status", s->http, "message", s->message,
                              "at", now));
    json_object_set(job, "errors", errors);
    json_object_set(job, "last_error",
                    json_array_get(errors, json_array_size(errors) - 1));
    json_object_set_new(job, "attempt", json_integer(s->attempts - 1));
    if (s->extra) {
        json_object_update(job, s->extra);
        json_decref(s->extra);
    }
    doc = json_dumps(job, JSON_COMPACT);
    char *errs = json_dumps(errors, JSON_COMPACT);
    char http[8];
    snprintf(http, sizeof(http), "%d", s->http);
    const char *argv[] = {"EVAL",   wrk_dead_lua, "3",        stream,
                          hash,     dead,         msg_id,     job_id,
                          doc,      s->reason,    s->message, errs,
                          now,      s->provider,  s->conn,    http};
    r = redisCommandArgv(rc, 16, argv, NULL);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "dead script failed");
    freeReplyObject(r);
    free(doc);
    free(errs);
    free(msg_id);
    json_decref(errors);
    json_decref(job);
    return xstrdup(job_id);
}

static char *dead_basic(const char *provider, const char *conn,
                        const char *agent_id, const char *call,
                        const char *reason, int http, const char *message)
{
    struct dead_spec s = {0, provider, conn,    agent_id, call, reason,
                          NULL, http,   message, 1,        NULL};
    return make_dead(&s);
}

/* The entry ids of a dead stream, oldest first. */
static json_t *dead_ids(unsigned shard)
{
    json_t *ids = json_array();
    redisReply *r = cmd("XRANGE cs:{%u}:dead - +", shard);
    for (size_t i = 0; i < r->elements; i++)
        json_array_append_new(ids, json_string(r->element[i]->element[0]->str));
    freeReplyObject(r);
    return ids;
}

/* The job ids of a --json dead list, in order, joined by commas. */
static char *list_jobs(const char *args)
{
    json_t *j = ctl_json(0, "dead list %s", args);
    cr_assert(json_is_array(j));
    char *s = xstrdup("");
    size_t i;
    json_t *e;
    json_array_foreach(j, i, e) {
        char *n = xasprintf("%s%s%s", s, i ? "," : "",
                            json_string_value(json_object_get(e, "job_id")));
        free(s);
        s = n;
    }
    json_decref(j);
    return s;
}

/* fmt with its "@" replaced by arg (xmalloc'd). */
static char *subst(const char *fmt, const char *arg)
{
    const char *at = strchr(fmt, '@');
    if (!at)
        return xstrdup(fmt);
    return xasprintf("%.*s%s%s", (int)(at - fmt), fmt, arg, at + 1);
}

static char *join3(const char *a, const char *b, const char *c)
{
    return xasprintf("%s%s%s%s%s", a, b ? "," : "", b ? b : "", c ? "," : "",
                     c ? c : "");
}

/* ---- Tests --------------------------------------------------------------- */

TestSuite(ctl_ops, .init = setup, .fini = teardown, .timeout = 240);

Test(ctl_ops, help_and_usage_errors)
{
    const char *cmds[] = {"queues", "dead list", "dead show", "dead replay",
                          "dead purge", "trace", "connections show"};
    for (size_t i = 0; i < CS_ARRAY_LEN(cmds); i++) {
        char *out;
        cr_expect_eq(ctl(&out, "%s --help", cmds[i]), 0, "%s --help",
                     cmds[i]);
        cr_expect(strstr(out, "exit codes:"), "%s --help documents its exit "
                  "codes", cmds[i]);
        free(out);
    }
    cr_expect_eq(ctl(NULL, "dead replay"), 2, "no selection");
    cr_expect(strstr(stderr_text, "needs an ID, filters or --all"));
    cr_expect_eq(ctl(NULL, "dead replay 1-0 --all"), 2, "ID and --all");
    cr_expect_eq(ctl(NULL, "dead replay --all --rate 0"), 2);
    cr_expect_eq(ctl(NULL, "dead replay --all --rate fast"), 2);
    cr_expect_eq(ctl(NULL, "dead purge --provider hubspot --all --yes"), 2);
    cr_expect_eq(ctl(NULL, "dead list --status 4x"), 2);
    cr_expect_eq(ctl(NULL, "dead list --status 99"), 2);
    cr_expect_eq(ctl(NULL, "dead list --since yesterday"), 2);
    cr_expect_eq(ctl(NULL, "dead list --connection nope"), 2);
    cr_expect_eq(ctl(NULL, "dead list --shard 1"), 2, "only shard 0 exists");
    cr_expect_eq(ctl(NULL, "dead list --limit -1"), 2);
    cr_expect_eq(ctl(NULL, "dead list --bogus"), 2);
    cr_expect_eq(ctl(NULL, "dead show"), 2);
    cr_expect_eq(ctl(NULL, "dead show 'a b'"), 2);
    cr_expect_eq(ctl(NULL, "trace"), 2);
    cr_expect_eq(ctl(NULL, "queues --shard 5"), 2);
    cr_expect_eq(ctl(NULL, "connections show not-a-uuid"), 2);
    /* Nothing there: list is fine and empty, the others say so. */
    json_t *j = ctl_json(0, "dead list");
    cr_expect_eq(json_array_size(j), 0);
    json_decref(j);
    cr_expect_eq(ctl(NULL, "dead show 1700000000000-0"), 3);
    cr_expect_eq(ctl(NULL, "dead replay --all"), 3);
    cr_expect_eq(ctl(NULL, "dead purge --all --yes"), 3);
    cr_expect_eq(ctl(NULL, "trace call_nobody_made"), 3);
    cr_expect_eq(ctl(NULL, "connections show "
                           "00000000-0000-0000-0000-000000000000"),
                 3);
    /* Redis unreachable: exit 1. */
    setenv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:1/0", 1);
    cr_expect_eq(ctl(NULL, "queues"), 1);
    cr_expect_eq(ctl(NULL, "dead list"), 1);
    cr_expect(strstr(stderr_text, "error: Redis"), "%s", stderr_text);
}

Test(ctl_ops, queues_counts_are_exact)
{
    setenv("CALLSYNC_SHARDS", "2", 1);
    /* Shard 0: 2 hubspot and 1 zapier dead letters first (their streams
     * are then empty), then 5 hubspot jobs of which 2 are delivered, and
     * 1 zapier job waiting. */
    char *d1 = dead_basic("hubspot", c_hub, agent, "call_q1", "VALIDATION_ERROR",
                          400, "bad");
    char *d2 = dead_basic("hubspot", c_hub, agent, "call_q2", "poison", 0,
                          "delivered 11 times");
    char *d3 = dead_basic("zapier", c_zap, agent, "call_q3", "NOT_FOUND", 404,
                          "hook gone");
    int64_t before = cs_now_ms();
    for (int i = 0; i < 5; i++)
        freeReplyObject(cmd("XADD cs:{0}:q:hubspot * job_id h%d job {}", i));
    freeReplyObject(cmd("XADD cs:{0}:q:zapier * job_id z0 job {}"));
    redisReply *r = cmd("XREADGROUP GROUP workers w1 COUNT 2 STREAMS "
                        "cs:{0}:q:hubspot >");
    freeReplyObject(r);
    /* Delayed: 3 hubspot, 1 zapier. Parked: 2 hubspot (one connection). */
    for (int i = 0; i < 3; i++)
        freeReplyObject(cmd("ZADD cs:{0}:delayed %d "
                            "{\"job_id\":\"dh%d\",\"provider\":\"hubspot\"}",
                            1000 + i, i));
    freeReplyObject(cmd("ZADD cs:{0}:delayed 5 "
                        "{\"job_id\":\"dz\",\"provider\":\"zapier\"}"));
    for (int i = 0; i < 2; i++)
        freeReplyObject(cmd("RPUSH cs:{0}:parked:%s "
                            "{\"job_id\":\"p%d\",\"provider\":\"hubspot\"}",
                            c_hub, i));
    /* Shard 1: one hubspot job waiting, nobody has read it. */
    freeReplyObject(cmd("XADD cs:{1}:q:hubspot * job_id s1 job {}"));

    json_t *j = ctl_json(0, "queues");
    cr_expect_eq(json_integer_value(json_object_get(j, "shards")), 2);
    json_t *q = json_object_get(j, "queues");
    cr_assert_eq(json_array_size(q), 3, "rows: shard 0 hubspot and zapier, "
                 "shard 1 hubspot");
    struct {
        int shard;
        const char *prov;
        int waiting, inflight, delayed, parked, dead, lag;
    } want[] = {
        {0, "hubspot", 3, 2, 3, 2, 2, 3},
        {0, "zapier", 1, 0, 1, 0, 1, 1},
        {1, "hubspot", 1, 0, 0, 0, 0, -1},
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *row = json_array_get(q, i);
        cr_expect_eq(json_integer_value(json_object_get(row, "shard")),
                     want[i].shard);
        cr_expect_str_eq(json_string_value(json_object_get(row, "provider")),
                         want[i].prov);
#define EXPECT_N(k, v)                                                       \
    cr_expect_eq(json_integer_value(json_object_get(row, k)), v,             \
                 "row %zu %s: %lld, want %d", i, k,                          \
                 (long long)json_integer_value(json_object_get(row, k)), v)
        EXPECT_N("waiting", want[i].waiting);
        EXPECT_N("in_flight", want[i].inflight);
        EXPECT_N("delayed", want[i].delayed);
        EXPECT_N("parked", want[i].parked);
        EXPECT_N("dead", want[i].dead);
        if (want[i].lag >= 0)
            EXPECT_N("lag", want[i].lag);
        else
            cr_expect(json_is_null(json_object_get(row, "lag")),
                      "no group yet on shard 1: lag unknown");
        int64_t age = json_integer_value(json_object_get(row,
                                                         "oldest_age_ms"));
        cr_expect(age >= 0 && age <= cs_now_ms() - before + 1000,
                  "oldest age %lld", (long long)age);
    }
    json_t *t = json_object_get(j, "total");
    cr_expect_eq(json_integer_value(json_object_get(t, "waiting")), 5);
    cr_expect_eq(json_integer_value(json_object_get(t, "in_flight")), 2);
    cr_expect_eq(json_integer_value(json_object_get(t, "delayed")), 4);
    cr_expect_eq(json_integer_value(json_object_get(t, "parked")), 2);
    cr_expect_eq(json_integer_value(json_object_get(t, "dead")), 3);
    json_decref(j);

    j = ctl_json(0, "queues --shard 0 --provider zapier");
    cr_expect_eq(json_array_size(json_object_get(j, "queues")), 1);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(j, "total"), "delayed")),
                 1);
    json_decref(j);

    char *out;
    cr_expect_eq(ctl(&out, "queues"), 0);
    cr_expect(strstr(out, "SHARD") && strstr(out, "IN FLIGHT") &&
              strstr(out, "total"), "%s", out);
    free(out);
    free(d1);
    free(d2);
    free(d3);
}

Test(ctl_ops, dead_list_filters)
{
    struct dead_spec specs[] = {
        {0, "hubspot", c_hub, agent, "call_f1", "VALIDATION_ERROR", NULL, 400,
         "Property values were not valid: email", 1, NULL},
        {0, "hubspot", c_hub2, agent2, "call_f2", "attempts_exhausted",
         "SERVER_ERROR", 503, "Service Unavailable", 3, NULL},
        {0, "zapier", c_zap, agent, "call_f3", "NOT_FOUND", NULL, 404,
         "The hook was deleted", 1, NULL},
    };
    char *ids[6];
    for (int i = 0; i < 3; i++)
        ids[i] = make_dead(&specs[i]);
    usleep(30000);
    char mid[32];
    cs_rfc3339_ms(cs_now_ms(), mid);
    usleep(30000);
    ids[3] = dead_basic("hubspot", c_hub, agent, "call_f4", "mapping_error",
                        0, "call.customer.phone: missing");
    ids[4] = dead_basic("hubspot", c_hub, agent, "call_f5", "CONFLICT", 409,
                        "Contact already exists. Existing ID: 501");
    ids[5] = dead_basic("zapier", c_zap, agent, "call_f6", "poison", 0,
                        "delivered 11 times without finishing");

    char *all = list_jobs("");
    char *want = xasprintf("%s,%s,%s,%s,%s,%s", ids[0], ids[1], ids[2],
                           ids[3], ids[4], ids[5]);
    cr_expect_str_eq(all, want, "oldest first");
    free(all);
    free(want);

    struct {
        const char *args;
        int a, b, c; /* expected indexes, -1 for none */
    } cases[] = {
        {"--provider zapier", 2, 5, -1},
        {"--connection @", 0, 3, 4}, /* c_hub */
        {"--agent @", 1, -1, -1},    /* agent2 */
        {"--code validation_error", 0, -1, -1},
        {"--code SERVER_ERROR", 1, -1, -1}, /* an attempt's code */
        {"--code attempts_exhausted", 1, -1, -1},
        {"--status 404", 2, -1, -1},
        {"--status 4xx", 0, 2, 4},
        {"--status 5xx", 1, -1, -1},
        {"--since @", 3, 4, 5}, /* mid */
        {"--until @", 0, 1, 2},
        {"--grep 'existing id'", 4, -1, -1},
        {"--grep UNAVAILABLE", 1, -1, -1},
        {"--provider hubspot --since @ --status 4xx", 4, -1, -1},
        {"--since 1h", 0, 1, 2}, /* and the rest: checked below */
        {"--limit 2", 0, 1, -1},
        {"--provider salesforce", -1, -1, -1},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        const char *arg = i == 1 ? c_hub : i == 2 ? agent2 : mid;
        char *args = subst(cases[i].args, arg);
        char *got = list_jobs(args);
        char *exp = join3(cases[i].a >= 0 ? ids[cases[i].a] : "",
                          cases[i].b >= 0 ? ids[cases[i].b] : NULL,
                          cases[i].c >= 0 ? ids[cases[i].c] : NULL);
        if (strcmp(cases[i].args, "--since 1h") == 0) {
            free(exp);
            exp = xasprintf("%s,%s,%s,%s,%s,%s", ids[0], ids[1], ids[2],
                            ids[3], ids[4], ids[5]);
        }
        cr_expect_str_eq(got, exp, "dead list %s", args);
        free(got);
        free(exp);
        free(args);
    }
    cr_expect_eq(ctl(NULL, "dead list --since 2h --until 1h"), 0);

    /* The JSON fields and the table. */
    json_t *j = ctl_json(0, "dead list --code attempts_exhausted");
    json_t *e = json_array_get(j, 0);
    cr_expect_str_eq(json_string_value(json_object_get(e, "provider")),
                     "hubspot");
    cr_expect_str_eq(json_string_value(json_object_get(e, "connection_id")),
                     c_hub2);
    cr_expect_str_eq(json_string_value(json_object_get(e, "agent_id")),
                     agent2);
    cr_expect_str_eq(json_string_value(json_object_get(e, "call_id")),
                     "call_f2");
    cr_expect_eq(json_integer_value(json_object_get(e, "http_status")), 503);
    cr_expect_eq(json_integer_value(json_object_get(e, "attempts")), 3);
    cr_expect_eq(json_integer_value(json_object_get(e, "shard")), 0);
    json_decref(j);
    char *out;
    cr_expect_eq(ctl(&out, "dead list --provider zapier"), 0);
    cr_expect(strstr(out, "The hook was deleted") && strstr(out, ids[5]) &&
              strstr(out, "(2 dead letters)"), "%s", out);
    free(out);
    for (int i = 0; i < 6; i++)
        free(ids[i]);
}

Test(ctl_ops, dead_show_redacts_secrets)
{
    /* The secrets that must never be printed: the connection's token and
     * API secret (sealed in PostgreSQL), and any token-shaped value. */
    json_t *extra = json_pack(
        "{s:{s:s,s:s,s:{s:{s:s},s:s}},s:{s:i,s:{s:s,s:s,s:s}}}", "last_request",
        "method", "POST", "url",
        "https://api.hubapi.com/crm/v3/objects/notes?hapikey=legacy-key-123",
        "body", "properties", "hs_note_body", "Roof inspection",
        "api_key", "body-key-456", "last_response", "status", 400, "body",
        "status", "error", "message",
        "Property values were not valid (" API_SECRET ")", "token",
        "sk_live_51Habcdefgh");
    cr_assert(extra);
    struct dead_spec s = {0, "hubspot", c_hub, agent, "call_s1",
                          "VALIDATION_ERROR", NULL, 400,
                          "Authorization Bearer " HUBSPOT_TOKEN " refused",
                          2, extra};
    char *job = make_dead(&s);
    json_t *ids = dead_ids(0);
    const char *id = json_string_value(json_array_get(ids, 0));
    const char *secrets[] = {HUBSPOT_TOKEN, API_SECRET, "legacy-key-123",
                             "body-key-456", "sk_live_51Habcdefgh"};
    for (int mode = 0; mode < 3; mode++) {
        char *out;
        int r = mode == 0   ? ctl(&out, "dead show %s", id)
                : mode == 1 ? ctl(&out, "dead show %s --json", id)
                            : ctl(&out, "dead show %s", job);
        cr_assert_eq(r, 0, "exit %d: %s", r, stderr_text);
        for (size_t k = 0; k < CS_ARRAY_LEN(secrets); k++)
            cr_expect(!strstr(out, secrets[k]), "'%s' printed:\n%s",
                      secrets[k], out);
        cr_expect(strstr(out, "[redacted]"), "%s", out);
        cr_expect(strstr(out, "Roof inspection"), "the body is shown");
        cr_expect(strstr(out, "crm/v3/objects/notes"), "the URL is shown");
        if (mode == 1) {
            json_t *j = json_loads(out, 0, NULL);
            cr_assert(j, "%s", out);
            cr_expect_str_eq(json_string_value(json_object_get(j, "job_id")),
                             job);
            cr_expect_eq(json_array_size(json_object_get(j, "errors")), 2);
            json_t *st = json_object_get(j, "job_state");
            cr_expect_str_eq(json_string_value(json_object_get(st, "state")),
                             "dead");
            cr_expect_str_eq(
                json_string_value(json_object_get(
                    json_object_get(json_object_get(st, "steps_done"),
                                    "contact"),
                    "contact_id")),
                "c-call_s1");
            cr_expect_str_eq(json_string_value(json_object_get(
                                 json_object_get(st, "in_flight"), "note")),
                             "0");
            cr_expect_eq(json_integer_value(json_object_get(
                             json_object_get(j, "last_response"), "status")),
                         400);
            json_decref(j);
        } else {
            cr_expect(strstr(out, "errors (2)") && strstr(out, "last request")
                      && strstr(out, "dead replay"), "%s", out);
        }
        free(out);
    }
    /* Without the keys only the pattern rules apply: the token (shaped
     * pat-...) still goes; the API secret in free text would not. */
    unsetenv("CALLSYNC_ENCRYPTION_KEYS");
    char *out;
    cr_expect_eq(ctl(&out, "dead show %s", id), 0);
    cr_expect(!strstr(out, HUBSPOT_TOKEN) && !strstr(out, "legacy-key-123"));
    free(out);
    cr_expect_eq(ctl(NULL, "dead show 1-0"), 3);
    json_decref(ids);
    free(job);
}

Test(ctl_ops, replay_moves_exactly_the_matched_jobs_once)
{
    char *jobs[20];
    for (int i = 0; i < 20; i++) {
        char call[32];
        snprintf(call, sizeof(call), "call_r%02d", i);
        jobs[i] = i < 15 ? dead_basic("hubspot", c_hub, agent, call,
                                      "VALIDATION_ERROR", 400, "bad email")
                         : dead_basic("zapier", c_zap, agent, call,
                                      "NOT_FOUND", 404, "hook gone");
    }
    /* Dry run: lists 15, changes nothing. */
    json_t *j = ctl_json(0, "dead replay --provider hubspot --dry-run");
    cr_expect_eq(json_integer_value(json_object_get(j, "matched")), 15);
    cr_expect_eq(json_array_size(json_object_get(j, "entries")), 15);
    cr_expect(json_real_value(json_object_get(j, "rate")) == 10.0,
              "default rate: HubSpot's 100/10s");
    json_decref(j);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 20);
    cr_expect_eq(rnum("XLEN cs:{0}:q:hubspot"), 0);
    char *st = hget(0, jobs[0], "state");
    cr_expect_str_eq(st, "dead");
    free(st);

    j = ctl_json(0, "dead replay --provider hubspot --rate 1000");
    cr_expect_eq(json_integer_value(json_object_get(j, "replayed")), 15);
    cr_expect_eq(json_integer_value(json_object_get(j, "skipped_gone")), 0);
    json_decref(j);
    cr_expect(strstr(stderr_text, "replay: 15/15 done"), "%s", stderr_text);
    json_t *seen = stream_jobs("cs:{0}:q:hubspot");
    cr_expect_eq(json_object_size(seen), 15);
    for (int i = 0; i < 15; i++) {
        cr_expect_eq(json_integer_value(json_object_get(seen, jobs[i])), 1,
                     "job %d enqueued once", i);
        char *state = hget(0, jobs[i], "state");
        char *att = hget(0, jobs[i], "attempt");
        char *del = hget(0, jobs[i], "deliveries");
        char *reps = hget(0, jobs[i], "replays");
        char *step = hget(0, jobs[i], "step:contact");
        char *mark = hget(0, jobs[i], "inflight:note");
        char *ra = hget(0, jobs[i], "replayed_at");
        char *reason = hget(0, jobs[i], "dead_reason");
        cr_expect_str_eq(state, "queued");
        cr_expect_str_eq(att, "0");
        cr_expect_str_eq(del, "0");
        cr_expect_str_eq(reps, "1");
        cr_expect(step && strstr(step, "contact_id"), "checkpoint kept");
        cr_expect(mark != NULL, "in-flight mark kept");
        int64_t ms;
        cr_expect(ra && cs_parse_rfc3339(ra, &ms), "replayed_at set");
        cr_expect_null(reason);
        free(state);
        free(att);
        free(del);
        free(reps);
        free(step);
        free(mark);
        free(ra);
        free(reason);
    }
    json_decref(seen);
    /* The enqueued document: attempt 0, replayed_at, errors kept. */
    redisReply *r = cmd("XRANGE cs:{0}:q:hubspot - + COUNT 1");
    const redisReply *f = r->element[0]->element[1];
    const char *doc = NULL;
    for (size_t k = 0; k + 1 < f->elements; k += 2)
        if (strcmp(f->element[k]->str, "job") == 0)
            doc = f->element[k + 1]->str;
    json_t *jd = json_loads(doc, 0, NULL);
    cr_assert(jd);
    cr_expect_eq(json_integer_value(json_object_get(jd, "attempt")), 0);
    cr_expect(json_string_value(json_object_get(jd, "replayed_at")));
    cr_expect_eq(json_integer_value(json_object_get(jd, "replays")), 1);
    cr_expect_eq(json_array_size(json_object_get(jd, "errors")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(jd, "call"), "call_id")),
                     "call_r00");
    json_decref(jd);
    freeReplyObject(r);
    /* The zapier letters were not touched. */
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 5);
    cr_expect_eq(rnum("EXISTS cs:{0}:q:zapier"), 1);
    cr_expect_eq(rnum("XLEN cs:{0}:q:zapier"), 0);

    /* Again: nothing matches, nothing moves. */
    cr_expect_eq(ctl(NULL, "dead replay --provider hubspot"), 3);
    cr_expect_eq(rnum("XLEN cs:{0}:q:hubspot"), 15);

    /* One by id; a job that is no longer dead is skipped, left alone. */
    json_t *ids = dead_ids(0);
    const char *one = json_string_value(json_array_get(ids, 0));
    char *out;
    cr_expect_eq(ctl(&out, "dead replay %s --rate 100", one), 0);
    cr_expect(strstr(out, "replayed 1 of 1 job"), "%s", out);
    free(out);
    cr_expect_eq(rnum("XLEN cs:{0}:q:zapier"), 1);
    const char *two = json_string_value(json_array_get(ids, 1));
    freeReplyObject(cmd("HSET cs:{0}:job:%s state done", jobs[16]));
    j = ctl_json(0, "dead replay %s", two);
    cr_expect_eq(json_integer_value(json_object_get(j, "replayed")), 0);
    cr_expect_eq(json_integer_value(json_object_get(j, "skipped_not_dead")),
                 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "skipped"), 0),
                         "state")),
                     "done");
    json_decref(j);
    cr_expect_eq(rnum("XLEN cs:{0}:q:zapier"), 1);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 4, "the skipped letter stays");
    json_decref(ids);
    for (int i = 0; i < 20; i++)
        free(jobs[i]);
}

Test(ctl_ops, replay_groups_letters_of_one_job)
{
    /* The same job dead-lettered twice (two letters): replayed once, both
     * letters gone. */
    char *a = dead_basic("hubspot", c_hub, agent, "call_twice", "poison", 0,
                         "delivered 11 times");
    char *b = dead_basic("hubspot", c_hub, agent, "call_twice",
                         "VALIDATION_ERROR", 400, "bad");
    cr_expect_str_eq(a, b);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 2);
    json_t *j = ctl_json(0, "dead replay --all --rate 100");
    cr_expect_eq(json_integer_value(json_object_get(j, "matched")), 2);
    cr_expect_eq(json_integer_value(json_object_get(j, "jobs")), 1);
    cr_expect_eq(json_integer_value(json_object_get(j, "replayed")), 1);
    json_decref(j);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 0);
    cr_expect_eq(rnum("XLEN cs:{0}:q:hubspot"), 1);
    free(a);
    free(b);
}

/* Make n dead letters fast: pipelined, in the worker's format. */
static void make_dead_bulk(int n, const char *prefix)
{
    char stream[] = "cs:{0}:q:hubspot";
    freeReplyObject(cmd("XGROUP CREATE %s workers 0 MKSTREAM", stream));
    char now[32];
    cs_rfc3339_ms(cs_now_ms(), now);
    char **ids = xcalloc((size_t)n, sizeof(char *));
    char **docs = xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        char call[64], job_id[33];
        snprintf(call, sizeof(call), "%s_%06d", prefix, i);
        cs_job_id(call, c_hub, job_id);
        ids[i] = xstrdup(job_id);
        struct dead_spec s = {0, "hubspot", c_hub, agent, call,
                              "VALIDATION_ERROR", NULL, 400, "bad", 1, NULL};
        json_t *job = job_doc(&s, job_id);
        docs[i] = json_dumps(job, JSON_COMPACT);
        json_decref(job);
        redisAppendCommand(rc, "HSETNX cs:{0}:job:%s state queued", job_id);
        redisAppendCommand(rc, "XADD %s * job_id %s job %s", stream, job_id,
                           docs[i]);
    }
    for (int i = 0; i < 2 * n; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(rc, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    redisReply *rd = cmd("XREADGROUP GROUP workers t1 COUNT %d STREAMS %s >",
                         n, stream);
    const redisReply *entries = rd->element[0]->element[1];
    cr_assert_eq((int)entries->elements, n);
    const char *errs = "[{\"attempt\":0,\"step\":\"note\",\"code\":"
                       "\"VALIDATION_ERROR\",\"http_status\":400,"
                       "\"message\":\"bad\",\"at\":\"2026-01-01T00:00:00Z\"}]";
    for (int i = 0; i < n; i++) {
        char hash[64];
        snprintf(hash, sizeof(hash), "cs:{0}:job:%s", ids[i]);
        const char *argv[] = {"EVAL", wrk_dead_lua, "3", stream, hash,
                              "cs:{0}:dead", entries->element[i]->element[0]->str,
                              ids[i], docs[i], "VALIDATION_ERROR", "bad",
                              errs, now, "hubspot", c_hub, "400"};
        redisAppendCommandArgv(rc, 16, argv, NULL);
    }
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(rc, (void **)&r), REDIS_OK);
        cr_assert(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
        free(ids[i]);
        free(docs[i]);
    }
    freeReplyObject(rd);
    free(ids);
    free(docs);
    cr_assert_eq(rnum("XLEN cs:{0}:dead"), n);
}

static void expect_each_once(int n)
{
    json_t *seen = stream_jobs("cs:{0}:q:hubspot");
    cr_expect_eq((int)json_object_size(seen), n, "distinct jobs enqueued");
    const char *k;
    json_t *v;
    int twice = 0;
    json_object_foreach(seen, k, v)
        if (json_integer_value(v) != 1)
            twice++;
    cr_expect_eq(twice, 0, "jobs enqueued more than once");
    cr_expect_eq(rnum("XLEN cs:{0}:q:hubspot"), n);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 0);
    json_decref(seen);
}

Test(ctl_ops, replay_interrupted_then_run_again)
{
    make_dead_bulk(300, "call_int");
    char out[200];
    snprintf(out, sizeof(out), "%s/replay1.out", dir);
    char *argv[] = {(char *)CTL, (char *)"dead", (char *)"replay",
                    (char *)"--all", (char *)"--rate", (char *)"100", NULL};
    pid_t pid = it_spawn(argv, NULL, out);
    usleep(1200000);
    kill(pid, SIGINT);
    int st;
    waitpid(pid, &st, 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 130,
              "an interrupted replay exits 130");
    long long first = rnum("XLEN cs:{0}:q:hubspot");
    cr_expect(first >= 60 && first <= 200, "%lld replayed in ~1.2 s at 100/s",
              first);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 300 - first);
    char *text = it_read_file(out, NULL);
    cr_expect(strstr(text, "interrupted:") && strstr(text, "run the same "
              "command again"), "%s", text);
    free(text);
    json_t *j = ctl_json(0, "dead replay --all --rate 5000");
    cr_expect_eq(json_integer_value(json_object_get(j, "replayed")),
                 300 - first);
    json_decref(j);
    expect_each_once(300);
}

Test(ctl_ops, two_replays_at_once_enqueue_each_job_once)
{
    make_dead_bulk(2000, "call_dup");
    char *argv[] = {(char *)CTL,      (char *)"dead",   (char *)"replay",
                    (char *)"--all",  (char *)"--rate", (char *)"4000",
                    (char *)"--json", NULL};
    char log1[200], log2[200];
    snprintf(log1, sizeof(log1), "%s/a.err", dir);
    snprintf(log2, sizeof(log2), "%s/b.err", dir);
    pid_t a = it_spawn(argv, NULL, log1);
    pid_t b = it_spawn(argv, NULL, log2);
    int sa, sb;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    cr_expect(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    cr_expect(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    expect_each_once(2000);
    /* Together they replayed each job once; what one did, the other
     * skipped as gone. */
    long long replayed = 0, gone = 0;
    const char *logs[] = {log1, log2};
    for (int i = 0; i < 2; i++) {
        char *text = it_read_file(logs[i], NULL);
        const char *o = strstr(text, "\n{");
        json_t *j = json_loads(o ? o + 1 : "", 0, NULL);
        cr_assert(j, "no JSON summary in %s", text);
        replayed += json_integer_value(json_object_get(j, "replayed"));
        gone += json_integer_value(json_object_get(j, "skipped_gone"));
        json_decref(j);
        free(text);
    }
    cr_expect_eq(replayed, 2000);
    cr_expect_eq(gone, 2000);
}

Test(ctl_ops, replay_of_10000_is_paced, .timeout = 120)
{
    make_dead_bulk(10000, "call_pace");
    int64_t t0 = cs_mono_ms();
    json_t *j = ctl_json(0, "dead replay --all --rate 2000");
    int64_t took = cs_mono_ms() - t0;
    cr_expect_eq(json_integer_value(json_object_get(j, "replayed")), 10000);
    cr_expect(took >= 4950, "10,000 at 2,000/s took %lld ms: not paced",
              (long long)took);
    cr_expect(took < 15000, "10,000 at 2,000/s took %lld ms",
              (long long)took);
    fprintf(stderr, "replay of 10,000 dead letters at --rate 2000: %lld ms\n",
            (long long)took);
    json_decref(j);
    expect_each_once(10000);
}

Test(ctl_ops, purge_removes_only_the_matches)
{
    char *jobs[6];
    for (int i = 0; i < 6; i++) {
        char call[32];
        snprintf(call, sizeof(call), "call_p%d", i);
        jobs[i] = i < 4 ? dead_basic("hubspot", c_hub, agent, call,
                                     "VALIDATION_ERROR", 400, "bad")
                        : dead_basic("zapier", c_zap, agent, call, "NOT_FOUND",
                                     404, "gone");
    }
    /* No terminal, no --yes: refused before anything happens. */
    cr_expect_eq(ctl(NULL, "dead purge --provider hubspot"), 2);
    cr_expect(strstr(stderr_text, "--yes"), "%s", stderr_text);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 6);
    json_t *j = ctl_json(0, "dead purge --provider hubspot --dry-run");
    cr_expect_eq(json_integer_value(json_object_get(j, "matched")), 4);
    json_decref(j);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 6);

    setenv("CALLSYNC_JOB_RETENTION_S", "3600", 1);
    j = ctl_json(0, "dead purge --provider hubspot --yes");
    cr_expect_eq(json_integer_value(json_object_get(j, "purged")), 4);
    json_decref(j);
    unsetenv("CALLSYNC_JOB_RETENTION_S");
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 2);
    char *left = list_jobs("");
    char *want = xasprintf("%s,%s", jobs[4], jobs[5]);
    cr_expect_str_eq(left, want);
    free(left);
    free(want);
    char *st = hget(0, jobs[0], "state");
    cr_expect_str_eq(st, "purged");
    free(st);
    long long ttl = rnum("TTL cs:{0}:job:%s", jobs[0]);
    cr_expect(ttl > 3500 && ttl <= 3600, "purged hash expires: ttl %lld", ttl);
    cr_expect_eq(rnum("TTL cs:{0}:job:%s", jobs[4]), -1, "others untouched");
    cr_expect_eq(ctl(NULL, "dead purge --provider hubspot --yes"), 3);
    for (int i = 0; i < 6; i++)
        free(jobs[i]);
}

/* Run callsyncctl with a pseudo-terminal as stdin, typing answer. */
static int ctl_on_tty(const char *answer, const char *arg1, const char *arg2)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0);
    int sfd = open(ptsname(m), O_RDWR | O_NOCTTY);
    cr_assert(sfd >= 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sfd, 0);
    posix_spawn_file_actions_addopen(&fa, 1, errpath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {(char *)CTL, (char *)"dead", (char *)"purge",
                    (char *)arg1, (char *)arg2, NULL};
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, CTL, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(sfd);
    usleep(300000);
    cr_assert(write(m, answer, strlen(answer)) == (ssize_t)strlen(answer));
    int st;
    waitpid(pid, &st, 0);
    close(m);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(ctl_ops, purge_asks_on_a_terminal)
{
    char *a = dead_basic("hubspot", c_hub, agent, "call_t1", "VALIDATION_ERROR",
                         400, "bad");
    char *b = dead_basic("hubspot", c_hub, agent, "call_t2", "VALIDATION_ERROR",
                         400, "bad");
    cr_expect_eq(ctl_on_tty("no\n", "--provider", "hubspot"), 1);
    char *text = it_read_file(errpath, NULL);
    cr_expect(strstr(text, "purge 2 dead letters for good?"), "%s", text);
    free(text);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 2);
    cr_expect_eq(ctl_on_tty("yes\n", "--provider", "hubspot"), 0);
    cr_expect_eq(rnum("XLEN cs:{0}:dead"), 0);
    free(a);
    free(b);
}

/* ---- End to end with the real worker -------------------------------------- */

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

static void start_stack(void)
{
    sandbox_port = it_free_port();
    ingest_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sandbox_port);
    char *sargv[] = {(char *)CS_BIN_DIR "/callsync-sandbox", (char *)"--port",
                     port, (char *)"--hubspot-token", (char *)HUBSPOT_TOKEN,
                     (char *)"--hubspot-rate", (char *)"1000000", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/sandbox.log", dir);
    sandbox_pid = it_spawn(sargv, NULL, log);
    bool up = false;
    for (int i = 0; i < 200 && !up; i++) {
        int fd = it_connect(sandbox_port);
        if (fd >= 0) {
            close(fd);
            up = true;
        } else {
            usleep(20000);
        }
    }
    cr_assert(up, "sandbox did not start");
    char *ienv[] = {
        env_kv("CALLSYNC_INGEST_PORT", "%d", ingest_port),
        env_kv("CALLSYNC_RETELL_API_KEYS", "%s", RETELL_KEY),
        env_kv("CALLSYNC_INGEST_THREADS", "1"),
        NULL,
    };
    char *iargv[] = {(char *)CS_BIN_DIR "/callsync-ingest", NULL};
    snprintf(log, sizeof(log), "%s/ingest.log", dir);
    ingest_pid = it_spawn(iargv, ienv, log);
    for (int i = 0; ienv[i]; i++)
        free(ienv[i]);
    it_wait_ready(ingest_port, 15000);
}

static void start_worker(void)
{
    char *env[] = {
        env_kv("CALLSYNC_PROVIDER_BASE_URLS",
               "hubspot=http://127.0.0.1:%d/hubspot", sandbox_port),
        /* A short max age: the replay comes after it has passed. */
        env_kv("CALLSYNC_RETRY_POLICY",
               "base=50ms,cap=200ms,attempts=10,max_age=2s"),
        env_kv("CALLSYNC_WORKER_VISIBILITY_MS", "1500"),
        env_kv("CALLSYNC_WORKER_CONSUMER", "w%d", (int)getpid()),
        env_kv("CALLSYNC_WORKER_PROVIDERS", "hubspot"),
        NULL,
    };
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-worker", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/worker.log", dir);
    worker_pid = it_spawn(argv, env, log);
    for (int i = 0; env[i]; i++)
        free(env[i]);
}

static void post_calls(int n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retell/call_analyzed.json",
             CS_SOURCE_DIR);
    json_t *doc = json_load_file(path, 0, NULL);
    cr_assert(doc);
    json_t *call = json_object_get(doc, "call");
    for (int i = 0; i < n; i++) {
        char id[64], phone[20], email[64];
        snprintf(id, sizeof(id), "call_e2e_%03d", i);
        snprintf(phone, sizeof(phone), "+1415%07d", 5550000 + i);
        snprintf(email, sizeof(email), "caller%03d@example.com", i);
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

static int records(const char *type)
{
    char path[160];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=hubspot&type=%s&count=1", type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
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

static bool wait_for(long long (*get)(void), long long want, int timeout_ms)
{
    int64_t end = cs_mono_ms() + timeout_ms;
    while (cs_mono_ms() < end) {
        if (get() == want)
            return true;
        usleep(50000);
    }
    return get() == want;
}

static long long n_dead(void)
{
    return rnum("XLEN cs:{0}:dead");
}

static long long n_notes(void)
{
    return records("notes");
}

static long long n_done(void)
{
    long long n = 0;
    for (int i = 0; i < 5; i++) {
        char call[32], job[33];
        snprintf(call, sizeof(call), "call_e2e_%03d", i);
        cs_job_id(call, c_hub, job);
        char *st = hget(cs_shard_of(agent, 1), job, "state");
        n += st && strcmp(st, "done") == 0;
        free(st);
    }
    return n;
}

Test(ctl_ops, worker_dead_letters_replayed_to_completion, .timeout = 180)
{
    /* Only the HubSpot connection of the agent stays active. */
    tpg_exec(&db, "UPDATE integration_connections SET is_active = false "
                  "WHERE integration_type = 'zapier'");
    start_stack();
    set_faults("[{\"provider\":\"hubspot\",\"path_prefix\":"
               "\"/crm/v3/objects/notes\",\"status\":400}]");
    start_worker();
    post_calls(5);
    cr_assert(wait_for(n_dead, 5, 30000), "5 dead letters, got %lld",
              n_dead());
    cr_expect_eq(records("contacts"), 5);
    cr_expect_eq(records("notes"), 0);

    /* What the worker recorded, shown redacted. */
    json_t *list = ctl_json(0, "dead list --status 400");
    cr_assert_eq(json_array_size(list), 5);
    const char *id = json_string_value(json_object_get(json_array_get(list, 0),
                                                       "id"));
    json_t *show = ctl_json(0, "dead show %s", id);
    json_t *rq = json_object_get(show, "last_request");
    cr_expect_str_eq(json_string_value(json_object_get(rq, "method")), "POST");
    cr_expect(strstr(json_string_value(json_object_get(rq, "url")),
                     "/crm/v3/objects/notes"));
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(show, "last_response"), "status")),
                 400);
    char *s = json_dumps(show, 0);
    cr_expect(!strstr(s, HUBSPOT_TOKEN), "the token is never shown");
    free(s);
    cr_expect(json_object_get(json_object_get(json_object_get(show,
                                                              "job_state"),
                                              "steps_done"),
                              "contact"),
              "the contact step is checkpointed");
    json_decref(show);
    json_decref(list);

    /* A trace of one call: its job, dead, and the failed note. */
    json_t *tr = ctl_json(0, "trace call_e2e_000");
    json_t *jobs = json_object_get(tr, "jobs");
    cr_assert_eq(json_array_size(jobs), 1, "one job (the zapier "
                 "connection had none)");
    json_t *job0 = json_array_get(jobs, 0);
    cr_expect_str_eq(json_string_value(json_object_get(job0, "state")),
                     "dead");
    cr_expect_eq(json_array_size(json_object_get(job0, "dead_letters")), 1);
    json_decref(tr);

    /* Let the jobs grow older than max_age (2 s), fix the provider, and
     * make the first try of every note a 503: a replayed job that aged
     * from its first enqueue would now die at once as exhausted. */
    usleep(2500000);
    set_faults("[{\"provider\":\"hubspot\",\"path_prefix\":"
               "\"/crm/v3/objects/notes\",\"status\":503,\"count\":5}]");
    json_t *j = ctl_json(0, "dead replay --all --rate 50");
    cr_expect_eq(json_integer_value(json_object_get(j, "replayed")), 5);
    json_decref(j);
    cr_assert(wait_for(n_done, 5, 30000), "all 5 jobs done, %lld",
              n_done());
    cr_expect(wait_for(n_notes, 5, 5000));
    cr_expect_eq(records("notes"), 5, "one note per call");
    cr_expect_eq(records("contacts"), 5, "no second contact");
    cr_expect_eq(n_dead(), 0, "none died again");
    cr_expect_eq(ctl(NULL, "dead replay --all"), 3);

    /* The trace now shows the job done and every step attempt. */
    usleep(1500000); /* sync logs are written in batches */
    tr = ctl_json(0, "trace call_e2e_000 --agent %s", agent);
    job0 = json_array_get(json_object_get(tr, "jobs"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(job0, "state")),
                     "done");
    cr_expect_str_eq(json_string_value(json_object_get(job0, "replays")),
                     "1");
    json_t *logs = json_object_get(tr, "sync_logs");
    int failed_400 = 0, failed_503 = 0, ok_notes = 0;
    size_t i;
    json_t *row;
    json_array_foreach(logs, i, row) {
        const char *step = json_string_value(json_object_get(row, "step"));
        const char *st = json_string_value(json_object_get(row, "status"));
        json_int_t http = json_integer_value(json_object_get(row,
                                                             "http_status"));
        if (strcmp(step, "note") == 0 && strcmp(st, "failed") == 0)
            failed_400 += http == 400, failed_503 += http == 503;
        if (strcmp(step, "note") == 0 && strcmp(st, "success") == 0)
            ok_notes++;
    }
    cr_expect(failed_400 >= 1, "the permanent error is in the log");
    cr_expect_eq(failed_503, 1);
    cr_expect_eq(ok_notes, 1);
    const char *cp[] = {"call_e2e_000"};
    char *nrows = it_sql(&db, "SELECT count(*) FROM integration_sync_logs "
                              "WHERE call_id = $1", 1, cp);
    cr_expect_eq((size_t)atoi(nrows), json_array_size(logs),
                 "every sync log row of the call");
    free(nrows);
    json_decref(tr);
    char *out;
    cr_expect_eq(ctl(&out, "trace call_e2e_000"), 0);
    cr_expect(strstr(out, "state       done") &&
              strstr(out, "sync log (integration_sync_logs)"), "%s", out);
    free(out);

    /* The connection: stats from the sync log, nothing dead or parked. */
    json_t *c = ctl_json(0, "connections show %s", c_hub);
    cr_expect_str_eq(json_string_value(json_object_get(c, "status")),
                     "connected");
    const char *pc[] = {c_hub};
    char *failed = it_sql(&db, "SELECT count(*) FROM integration_sync_logs "
                               "WHERE integration_connection_id = $1 AND "
                               "status = 'failed'", 1, pc);
    char *total = it_sql(&db, "SELECT count(*) FROM integration_sync_logs "
                              "WHERE integration_connection_id = $1", 1, pc);
    cr_expect_eq(json_integer_value(json_object_get(c, "failed_syncs")),
                 atoi(failed));
    cr_expect_eq(json_integer_value(json_object_get(c, "total_syncs")),
                 atoi(total));
    cr_expect_eq(json_integer_value(json_object_get(c, "successful_syncs")),
                 10, "5 contacts and 5 notes");
    cr_expect_eq(json_integer_value(json_object_get(c, "syncs_7d")),
                 atoi(total));
    free(failed);
    free(total);
    cr_expect_eq(json_integer_value(json_object_get(c, "jobs_dead")), 0);
    cr_expect_eq(json_integer_value(json_object_get(c, "jobs_parked")), 0);
    cr_expect(json_string_value(json_object_get(c, "last_sync_at")));
    cr_expect(json_is_true(json_object_get(c, "has_api_key")));
    s = json_dumps(c, 0);
    cr_expect(!strstr(s, "v1:") && !strstr(s, HUBSPOT_TOKEN),
              "no secret, sealed or not");
    free(s);
    json_decref(c);
}
