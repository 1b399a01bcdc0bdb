/*
 * test_oauth_fleet.c - OAuth token refresh across the fleet: real ingest,
 * two workers and one or two schedulers on a private Redis, HubSpot and
 * the token endpoints played by the sandbox (tests/e2e_support.h). The
 * sandbox's HubSpot accepts only the static test token and the access
 * tokens its /oauth/hubspot endpoint issued, so an OAuth connection
 * whose stored token was never issued gets 401 until it is refreshed.
 *
 *   - 50 jobs of one connection hit 401 at once on two workers while the
 *     scheduler refreshes the same token: one token request in all, every
 *     job done once, no duplicate contact or note
 *   - a token the scheduler renewed ahead of expiry is what the next job
 *     uses: no 401 at all
 *   - the leader killed between the token answer and PostgreSQL: the
 *     stand-by leads, the tokens are applied from the write-ahead record
 *     and the endpoint is never asked again (a rotating provider would
 *     refuse the old refresh token)
 *   - invalid_grant: the connection expires with a last_error, its jobs
 *     are parked and none is dead; after a reconnect the scheduler's
 *     replay finishes them
 *   - the token endpoint failing (503): jobs wait without using an
 *     attempt, and the backoff keeps the requests to one per failure
 *   - stopping with a refresh in flight: a worker hands its job back
 *     within its grace period; a scheduler waits for the token answer
 *     and stores it
 */
#include "e2e_support.h"
#include "oauth_flow.h"

#define MAX_SCHED 2
#define HS_CLIENT "hs-fleet-client"
#define HS_SECRET "hs-fleet-secret"
#define GHL_CLIENT "ghl-fleet-client"
#define GHL_SECRET "ghl-fleet-secret"

static pid_t sched_pid[MAX_SCHED];
static int sched_port[MAX_SCHED];
static pid_t worker_b_pid;
static int worker_port[2];
static char *conn_id;
static char oauth_clients[200], oauth_bases[300];
static int worker_oauth_timeout_ms = 3000;

/* ---- Processes --------------------------------------------------------- */

static void setup(void)
{
    e2e_setup("oafleet", 0);
    snprintf(oauth_clients, sizeof(oauth_clients),
             "CALLSYNC_OAUTH_CLIENTS=hubspot=" HS_CLIENT ":" HS_SECRET
             ",gohighlevel=" GHL_CLIENT ":" GHL_SECRET);
    snprintf(oauth_bases, sizeof(oauth_bases),
             "CALLSYNC_OAUTH_BASE_URLS=hubspot=http://127.0.0.1:%d/oauth/"
             "hubspot,gohighlevel=http://127.0.0.1:%d/oauth/gohighlevel",
             sandbox_port, sandbox_port);
}

static void teardown(void)
{
    for (int i = 0; i < MAX_SCHED; i++) {
        if (sched_pid[i] > 0)
            cr_expect_eq(it_stop(sched_pid[i], SIGTERM, 15000), 0,
                         "scheduler %d must exit 0 on SIGTERM", i);
        sched_pid[i] = 0;
    }
    if (worker_b_pid > 0)
        cr_expect_eq(it_stop(worker_b_pid, SIGTERM, 15000), 0,
                     "worker B must exit 0 on SIGTERM");
    worker_b_pid = 0;
    if (!getenv("CS_KEEP_TEST_DIR")) {
        char path[256];
        for (int i = 0; i < MAX_SCHED; i++) {
            snprintf(path, sizeof(path), "%s/scheduler%d.log", dir, i);
            it_expect_clean_log(path);
        }
    }
    e2e_teardown();
    worker_oauth_timeout_ms = 3000;
    free(conn_id);
    conn_id = NULL;
}

/* A worker with the OAuth settings and its own /metrics port. */
static void start_oauth_worker(int i, int inflight)
{
    char metrics[64], timeout[64];
    worker_port[i] = it_free_port();
    snprintf(timeout, sizeof(timeout), "CALLSYNC_OAUTH_TIMEOUT_MS=%d",
             worker_oauth_timeout_ms);
    snprintf(metrics, sizeof(metrics),
             "CALLSYNC_WORKER_METRICS_ADDR=127.0.0.1:%d", worker_port[i]);
    worker_env_extra[0] = oauth_clients;
    worker_env_extra[1] = oauth_bases;
    worker_env_extra[2] = metrics;
    worker_env_extra[3] = timeout;
    pid_t before = worker_pid;
    start_worker(inflight);
    memset(worker_env_extra, 0, sizeof(worker_env_extra));
    it_wait_ready(worker_port[i], 15000);
    if (i == 1) {
        /* e2e_teardown stops worker_pid; this file stops the other. */
        worker_b_pid = worker_pid;
        worker_pid = before;
    }
}

static void start_scheduler(int i, int refresh_interval_ms)
{
    sched_port[i] = it_free_port();
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_SCHEDULER_METRICS_ADDR", "127.0.0.1:%d",
               sched_port[i]),
        env_kv("CALLSYNC_SCHEDULER_LEASE_MS", "2000"),
        env_kv("CALLSYNC_SCHEDULER_TICK_MS", "100"),
        env_kv("CALLSYNC_SCHEDULER_REPLAY_INTERVAL_MS", "300"),
        env_kv("CALLSYNC_SCHEDULER_REFRESH_INTERVAL_MS", "%d",
               refresh_interval_ms),
        env_kv("CALLSYNC_WORKER_VISIBILITY_MS", "1500"),
        env_kv("CALLSYNC_OAUTH_TIMEOUT_MS", "2000"),
        env_kv("CALLSYNC_OAUTH_REFRESH_MARGIN_S", "300"),
        xstrdup(oauth_clients),
        xstrdup(oauth_bases),
        env_kv("CALLSYNC_LOG_LEVEL", "%s",
               getenv("CS_KEEP_TEST_DIR") ? "debug" : "info"),
        NULL,
    };
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-scheduler", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/scheduler%d.log", dir, i);
    sched_pid[i] = it_spawn(argv, env, log);
    for (int k = 0; env[k]; k++)
        free(env[k]);
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

/* ---- Connections and the sandbox's grants ------------------------------ */

/* An OAuth connection of the agent whose token expires in expires_in_s. */
static char *add_oauth_conn(const char *type, const char *access,
                            const char *refresh, int expires_in_s,
                            const char *config)
{
    char *a = cs_seal(kr, access, strlen(access));
    char *r = cs_seal(kr, refresh, strlen(refresh));
    char exp[24];
    snprintf(exp, sizeof(exp), "%d", expires_in_s);
    const char *p[] = {agent, org, type, a, r, exp, config};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      "organization_id, integration_type, auth_type, "
                      "access_token, refresh_token, token_expires_at, config) "
                      "VALUES ($1, $2, $3, 'oauth', $4, $5, now() + "
                      "make_interval(secs => $6::double precision), "
                      "$7::jsonb) RETURNING id::text",
                      7, p);
    free(a);
    free(r);
    cr_assert(id);
    return id;
}

static void grant(const char *provider, const char *id, const char *refresh,
                  const char *access, int expires_in_s)
{
    json_t *j = json_pack("{s:s,s:s,s:s}", "provider", provider,
                          "connection", id, "refresh_token", refresh);
    if (access) {
        json_object_set_new(j, "access_token", json_string(access));
        json_object_set_new(j, "expires_in", json_integer(expires_in_s));
    }
    char *body = json_dumps(j, JSON_COMPACT);
    struct it_resp r = it_post(sandbox_port, "/_sandbox/oauth/grants", NULL,
                               body, strlen(body));
    cr_assert_eq(r.status, 201, "grant: %.*s", (int)r.body_len, r.body);
    free(body);
    json_decref(j);
}

struct sbg {
    long long requests, stale, refused, api, api_latest;
    char access[160], refresh[160];
};

static struct sbg sb_state(const char *id)
{
    char path[160];
    snprintf(path, sizeof(path), "/_sandbox/oauth/grants?connection=%s", id);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    struct sbg g;
    memset(&g, 0, sizeof(g));
    g.requests = json_integer_value(json_object_get(j, "token_requests"));
    g.stale = json_integer_value(json_object_get(j, "stale_token_requests"));
    g.refused = json_integer_value(json_object_get(j, "refused"));
    g.api = json_integer_value(json_object_get(j, "api_requests"));
    g.api_latest =
        json_integer_value(json_object_get(j, "api_requests_latest"));
    const char *a = json_string_value(json_object_get(j, "access_token"));
    const char *rt = json_string_value(json_object_get(j, "refresh_token"));
    snprintf(g.access, sizeof(g.access), "%s", a ? a : "");
    snprintf(g.refresh, sizeof(g.refresh), "%s", rt ? rt : "");
    json_decref(j);
    return g;
}

struct row {
    char access[200], refresh[200], status[16], last_error[400];
};

static void open_into(const PGresult *r, int col, char *out, size_t cap)
{
    out[0] = '\0';
    if (PQgetisnull(r, 0, col))
        return;
    struct cs_err err;
    size_t n;
    char *plain = cs_open(kr, PQgetvalue(r, 0, col), &n, &err);
    cr_assert(plain, "%s", err.msg);
    snprintf(out, cap, "%s", plain);
    free(plain);
}

static struct row stored(const char *id)
{
    const char *p[] = {id};
    PGresult *r = tpg_query(&db,
                            "SELECT access_token, refresh_token, "
                            "connection_status, coalesce(last_error, '') "
                            "FROM integration_connections WHERE id = $1",
                            1, p);
    cr_assert_eq(PQntuples(r), 1);
    struct row s;
    memset(&s, 0, sizeof(s));
    open_into(r, 0, s.access, sizeof(s.access));
    open_into(r, 1, s.refresh, sizeof(s.refresh));
    snprintf(s.status, sizeof(s.status), "%s", PQgetvalue(r, 0, 2));
    snprintf(s.last_error, sizeof(s.last_error), "%s", PQgetvalue(r, 0, 3));
    PQclear(r);
    return s;
}

/* A provider's answers with this status (-1: any) since since_ms. */
static int answers(const char *provider, int status, int64_t since_ms)
{
    char path[96];
    snprintf(path, sizeof(path),
             "/_sandbox/requests?provider=%s&since_ms=%lld", provider,
             (long long)since_ms);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j, "requests answer is not JSON");
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "requests"), i, e)
    {
        if (status < 0 ||
            json_integer_value(json_object_get(e, "status")) == status)
            n++;
    }
    json_decref(j);
    return n;
}

static int hubspot_answers(int status, int64_t since_ms)
{
    return answers("hubspot", status, since_ms);
}

/* ---- Metrics ----------------------------------------------------------- */

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

static double wmetric(const char *sample)
{
    return metric(worker_port[0], sample) + metric(worker_port[1], sample);
}

static int leader_index(void)
{
    for (int i = 0; i < MAX_SCHED; i++)
        if (sched_pid[i] > 0 &&
            metric(sched_port[i], "callsync_scheduler_leader") == 1)
            return i;
    return -1;
}

static int wait_leader(int ms)
{
    int64_t end = cs_mono_ms() + ms;
    while (cs_mono_ms() < end) {
        int i = leader_index();
        if (i >= 0)
            return i;
        usleep(20000);
    }
    return -1;
}

/* ---- Conditions -------------------------------------------------------- */

static int want;

static bool all_noted(void)
{
    return records("hubspot", "notes") >= want && drained();
}

static bool refreshed_in_db(void)
{
    struct sbg g = sb_state(conn_id);
    return g.requests >= 1 && strcmp(stored(conn_id).access, g.access) == 0;
}

static long long parked_count(void)
{
    char key[128];
    snprintf(key, sizeof(key), "cs:{0}:parked:%s", conn_id);
    return rint_("LLEN %s", key);
}

static bool all_parked(void)
{
    return parked_count() == want;
}

static bool pending_written(void)
{
    char key[128];
    snprintf(key, sizeof(key), "%s{%s}", OFLOW_PENDING_PREFIX, conn_id);
    return rint_("EXISTS %s", key) == 1;
}

static bool pending_applied(void)
{
    char key[128];
    snprintf(key, sizeof(key), "%s{%s}", OFLOW_PENDING_PREFIX, conn_id);
    if (rint_("EXISTS %s", key) != 0)
        return false;
    return strcmp(stored(conn_id).access, sb_state(conn_id).access) == 0;
}

/* Every job hash of the shard says done. */
static void expect_jobs_done(int n)
{
    redisReply *hashes = redisCommand(rc, "KEYS cs:{0}:job:*");
    cr_assert(hashes && hashes->type == REDIS_REPLY_ARRAY);
    cr_expect_eq(hashes->elements, (size_t)n);
    for (size_t i = 0; i < hashes->elements; i++) {
        redisReply *s =
            redisCommand(rc, "HGET %s state", hashes->element[i]->str);
        cr_expect(s && s->type == REDIS_REPLY_STRING &&
                      strcmp(s->str, "done") == 0,
                  "%s: %s", hashes->element[i]->str,
                  s && s->str ? s->str : "(no state)");
        freeReplyObject(s);
    }
    freeReplyObject(hashes);
}

TestSuite(oauth_fleet, .init = setup, .fini = teardown, .timeout = 180);

/* ---- (a) Fifty 401s, one token request --------------------------------- */

Test(oauth_fleet, fifty_401s_on_two_workers_and_the_scheduler_one_request)
{
    /* The stored token was never issued (HubSpot refuses it) and expires
     * within the margin (the scheduler refreshes it too). */
    conn_id = add_oauth_conn("hubspot", "hs-at-never-issued", "hs-rt-1", 60,
                             "{\"rate_limit\":\"5000/1s\"}");
    grant("hubspot", conn_id, "hs-rt-1", NULL, 0);
    /* A slow token endpoint: whoever asks first holds the connection's
     * lock long enough for every other refresher to pile up behind it. */
    set_faults("[{\"provider\":\"oauth\",\"latency_ms\":1500}]");
    start_ingest();
    int64_t t0 = cs_now_ms();
    post_calls(0, 50);
    start_scheduler(0, 200);
    start_oauth_worker(0, 32);
    start_oauth_worker(1, 32);
    want = 50;
    wait_until(all_noted, 60000, "50 notes");

    struct sbg g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1, "token requests: %lld", g.requests);
    cr_expect_eq(answers("oauth", -1, t0), 1);
    cr_expect_eq(g.stale, 0);
    cr_expect_eq(g.refused, 0);
    struct row s = stored(conn_id);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.status, "connected");

    int n401 = hubspot_answers(401, t0);
    cr_expect_geq(n401, 2, "the jobs did meet the old token: %d", n401);
    cr_expect_leq(n401, 50, "a job met 401 twice: %d", n401);
    /* Each job got at most one 401 and every later call used the new
     * token. */
    cr_expect_eq(g.api, g.api_latest);

    cr_expect_eq(records("hubspot", "contacts"), 50);
    cr_expect_eq(distinct("hubspot", "contacts", "phone"), 50);
    cr_expect_eq(records("hubspot", "notes"), 50);
    cr_expect_eq(dead_count(), 0);
    expect_jobs_done(50);
    cr_expect_eq(wmetric("callsync_worker_jobs_total{provider=\"hubspot\","
                         "outcome=\"done\"}"),
                 50);
    cr_expect_eq(wmetric("callsync_worker_jobs_total{provider=\"hubspot\","
                         "outcome=\"parked\"}"),
                 0);
    /* One refresh stored tokens, fleet-wide; every other caller found
     * them fresh, and each worker ran one refresh at most at a time. */
    double refreshed =
        wmetric("callsync_worker_oauth_refreshes_total{outcome="
                "\"refreshed\"}") +
        metric(sched_port[0],
               "callsync_scheduler_oauth_refreshes_total{outcome="
               "\"refreshed\"}");
    cr_expect_eq(refreshed, 1);
    double tokens =
        wmetric("callsync_worker_oauth_token_requests_total") +
        metric(sched_port[0], "callsync_scheduler_oauth_token_requests_total");
    cr_expect_eq(tokens, 1);
    cr_expect_eq(wmetric("callsync_worker_oauth_refreshes_total{outcome="
                         "\"transient\"}"),
                 0);
    cr_log_info("401s: %d, worker refresh flows: %.0f (waiters %.0f)", n401,
                wmetric("callsync_worker_oauth_refreshes_total{outcome="
                        "\"fresh\"}") +
                    wmetric("callsync_worker_oauth_refreshes_total{outcome="
                            "\"refreshed\"}"),
                wmetric("callsync_worker_oauth_refresh_waiters_total"));
}

/* ---- (b) Renewed ahead, used next --------------------------------------- */

Test(oauth_fleet, token_renewed_ahead_is_used_by_the_next_job)
{
    /* A valid token, issued two minutes before it expires: inside the
     * five-minute margin. */
    conn_id = add_oauth_conn("hubspot", "hs-at-expiring", "hs-rt-b", 120,
                             "{\"rate_limit\":\"5000/1s\"}");
    grant("hubspot", conn_id, "hs-rt-b", "hs-at-expiring", 120);
    start_ingest();
    start_scheduler(0, 200);
    wait_until(refreshed_in_db, 20000, "the token renewed ahead");
    struct sbg g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1);
    cr_expect_str_neq(g.access, "hs-at-expiring");
    cr_expect_eq(metric(sched_port[0], "callsync_scheduler_oauth_refreshes_"
                                       "total{outcome=\"refreshed\"}"),
                 1);
    cr_expect_geq(metric(sched_port[0], "callsync_scheduler_oauth_due_total"),
                  1);

    int64_t t0 = cs_now_ms();
    start_oauth_worker(0, 16);
    post_calls(0, 3);
    want = 3;
    wait_until(all_noted, 30000, "3 notes");
    cr_expect_eq(hubspot_answers(401, t0), 0, "a job met a 401");
    g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1, "another token request: %lld", g.requests);
    cr_expect_gt(g.api, 0);
    cr_expect_eq(g.api, g.api_latest, "the old token was used");
    cr_expect_eq(hubspot_answers(-1, t0), g.api,
                 "every HubSpot call was made with the renewed token");
    cr_expect_eq(metric(worker_port[0], "callsync_worker_oauth_refreshes_"
                                        "total{outcome=\"refreshed\"}"),
                 0);
    cr_expect_eq(dead_count(), 0);
    /* Within the margin no more: the next rounds leave it alone. */
    usleep(600 * 1000);
    cr_expect_eq(sb_state(conn_id).requests, 1);
}

/* ---- (c) Leader killed while refreshing ---------------------------------- */

Test(oauth_fleet, leader_killed_after_the_token_answer_standby_applies_it)
{
    /* GoHighLevel rotates refresh tokens and refuses the old one at once:
     * a second refresh would show as a stale token request. */
    conn_id = add_oauth_conn("gohighlevel", "ghl-at-old", "ghl-rt-old", 60,
                             "{}");
    grant("gohighlevel", conn_id, "ghl-rt-old", NULL, 0);
    /* Hold the row: the leader's UPDATE of the new tokens blocks, after
     * the write-ahead record is in Redis. */
    tpg_exec(&db, "BEGIN");
    const char *p[] = {conn_id};
    PQclear(tpg_query(&db,
                      "SELECT 1 FROM integration_connections WHERE id = $1 "
                      "FOR UPDATE",
                      1, p));
    start_scheduler(0, 200);
    start_scheduler(1, 200);
    int leader = wait_leader(10000);
    cr_assert_geq(leader, 0, "no leader");
    long long fence = (long long)metric(
        sched_port[leader], "callsync_scheduler_lease_fencing_token");
    wait_until(pending_written, 20000, "the write-ahead record");
    cr_assert_eq(sb_state(conn_id).requests, 1);
    kill(sched_pid[leader], SIGKILL);
    waitpid(sched_pid[leader], NULL, 0);
    sched_pid[leader] = 0;
    tpg_exec(&db, "COMMIT");

    int standby = 1 - leader;
    int64_t end = cs_mono_ms() + 10000;
    while (cs_mono_ms() < end &&
           metric(sched_port[standby], "callsync_scheduler_leader") != 1)
        usleep(50000);
    cr_assert_eq(metric(sched_port[standby], "callsync_scheduler_leader"), 1,
                 "the stand-by did not take over");
    cr_expect_gt(metric(sched_port[standby],
                        "callsync_scheduler_lease_fencing_token"),
                 (double)fence);
    /* The dead leader's refresh lock runs out (2 s timeout + 10 s), then
     * the record is applied or, if the dead leader's UPDATE went through
     * after all, dropped. */
    wait_until(pending_applied, 40000, "the tokens applied");
    struct sbg g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1, "token requests: %lld", g.requests);
    cr_expect_eq(g.stale, 0, "the old refresh token was presented again");
    cr_expect_eq(g.refused, 0);
    struct row s = stored(conn_id);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.refresh, g.refresh);
    cr_expect_str_eq(s.status, "connected");
    cr_expect_eq(metric(sched_port[standby],
                        "callsync_scheduler_oauth_token_requests_total"),
                 0);
    /* And later rounds have nothing to do: the new token is valid for a
     * day. */
    usleep(800 * 1000);
    cr_expect_eq(sb_state(conn_id).requests, 1);
    char lock[128];
    snprintf(lock, sizeof(lock), "%s{%s}", OFLOW_LOCK_PREFIX, conn_id);
    cr_expect_eq(rint_("EXISTS %s", lock), 0);
}

/* ---- (d) Refused, parked, reconnected, finished ------------------------- */

static bool expired_in_db(void)
{
    return strcmp(stored(conn_id).status, "expired") == 0;
}

Test(oauth_fleet, invalid_grant_parks_jobs_until_reconnect_then_replays)
{
    conn_id = add_oauth_conn("hubspot", "hs-at-revoked", "hs-rt-revoked",
                             3600, "{\"rate_limit\":\"5000/1s\"}");
    grant("hubspot", conn_id, "hs-rt-revoked", NULL, 0);
    char *body = xasprintf("{\"connection\":\"%s\"}", conn_id);
    struct it_resp r = it_post(sandbox_port, "/_sandbox/oauth/revoke", NULL,
                               body, strlen(body));
    free(body);
    cr_assert_eq(r.status, 200);
    start_ingest();
    start_scheduler(0, 200);
    start_oauth_worker(0, 16);
    start_oauth_worker(1, 16);
    post_calls(0, 10);
    want = 10;
    wait_until(all_parked, 30000, "10 parked jobs");
    cr_expect(expired_in_db());
    struct row s = stored(conn_id);
    cr_expect_str_eq(s.status, "expired");
    cr_expect(strstr(s.last_error, "reconnect HubSpot"), "last_error: %s",
              s.last_error);
    cr_expect_eq(dead_count(), 0);
    cr_expect_eq(records("hubspot", "notes"), 0);
    struct sbg g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1, "one refusal is enough: %lld", g.requests);
    cr_expect_eq(g.refused, 1);
    cr_expect_eq(wmetric("callsync_worker_oauth_refreshes_total{outcome="
                         "\"transient\"}"),
                 0);
    /* Parked, not retried: nothing comes back while it stays expired. */
    usleep(800 * 1000);
    cr_expect_eq(parked_count(), 10);
    cr_expect_eq(sb_state(conn_id).requests, 1);

    /* The user connects again: new tokens, status connected, and the
     * change announced as callsyncctl does. */
    grant("hubspot", conn_id, "hs-rt-new", "hs-at-new", 1800);
    char *a = cs_seal(kr, "hs-at-new", 9);
    char *rt = cs_seal(kr, "hs-rt-new", 9);
    const char *p[] = {conn_id, a, rt};
    PQclear(tpg_query(&db,
                      "UPDATE integration_connections SET access_token = $2, "
                      "refresh_token = $3, token_expires_at = now() + "
                      "interval '30 minutes', connection_status = "
                      "'connected', last_error = NULL WHERE id = $1",
                      3, p));
    free(a);
    free(rt);
    freeReplyObject(redisCommand(rc, "PUBLISH cs:cache:connections %s",
                                 agent));
    wait_until(all_noted, 30000, "the parked jobs finished");
    cr_expect_eq(parked_count(), 0);
    cr_expect_eq(records("hubspot", "contacts"), 10);
    cr_expect_eq(distinct("hubspot", "contacts", "phone"), 10);
    cr_expect_eq(records("hubspot", "notes"), 10);
    cr_expect_eq(dead_count(), 0);
    expect_jobs_done(10);
    g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1, "no refresh was needed after reconnecting");
    cr_expect_eq(g.api, g.api_latest);
    cr_expect_gt(g.api, 0);
    cr_expect_geq(metric(sched_port[0], "callsync_scheduler_parked_replayed_"
                                        "total{reason=\"connected\"}"),
                  10);
}

/* ---- (e) The token endpoint down for a while --------------------------- */

static long long hget_ll(const char *key, const char *field)
{
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    cr_assert(r);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                : -1;
    freeReplyObject(r);
    return v;
}

Test(oauth_fleet, token_endpoint_failures_defer_jobs_without_attempts)
{
    conn_id = add_oauth_conn("hubspot", "hs-at-never-issued-e", "hs-rt-e",
                             3600, "{\"rate_limit\":\"5000/1s\"}");
    grant("hubspot", conn_id, "hs-rt-e", NULL, 0);
    /* The first two token requests fail with 503. */
    set_faults("[{\"provider\":\"oauth\",\"status\":503,\"count\":2}]");
    start_ingest();
    start_oauth_worker(0, 16);
    worker_port[1] = it_free_port(); /* no second worker: metric() -1 */
    post_calls(0, 5);
    want = 5;
    wait_until(all_noted, 30000, "5 notes");
    /* Two failures, then one success: the backoff kept every other job
     * from asking again. */
    cr_expect_eq(answers("oauth", 503, 0), 2);
    cr_expect_eq(answers("oauth", -1, 0), 3);
    cr_expect_eq(metric(worker_port[0],
                        "callsync_worker_oauth_token_requests_total"),
                 3);
    cr_expect_eq(stored(conn_id).status[0], 'c');
    cr_expect_eq(metric(worker_port[0], "callsync_worker_oauth_refreshes_"
                                        "total{outcome=\"transient\"}"),
                 2);
    cr_expect_eq(metric(worker_port[0], "callsync_worker_oauth_refreshes_"
                                        "total{outcome=\"refreshed\"}"),
                 1);
    cr_expect_eq(metric(worker_port[0], "callsync_worker_jobs_total{"
                                        "provider=\"hubspot\",outcome="
                                        "\"retried\"}"),
                 0, "an attempt was counted");
    cr_expect_geq(metric(worker_port[0], "callsync_worker_jobs_total{"
                                         "provider=\"hubspot\",outcome="
                                         "\"deferred\"}"),
                  5);
    cr_expect_eq(records("hubspot", "contacts"), 5);
    cr_expect_eq(records("hubspot", "notes"), 5);
    cr_expect_eq(dead_count(), 0);
    expect_jobs_done(5);
    /* The job documents still say attempt 0. */
    redisReply *hashes = redisCommand(rc, "KEYS cs:{0}:job:*");
    cr_assert(hashes && hashes->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < hashes->elements; i++)
        cr_expect_eq(hget_ll(hashes->element[i]->str, "attempt"), 0, "%s",
                     hashes->element[i]->str);
    freeReplyObject(hashes);
}

/* ---- (f) Stopping with refreshes in flight ------------------------------ */

static bool one_401(void)
{
    return hubspot_answers(401, 0) >= 1;
}

/* A worker stopped while its token request hangs exits 0 within its grace
 * period (3 s, shorter than the request's 10 s timeout); the job is handed
 * back and the next worker finishes it once the abandoned refresh's lock
 * (20 s) has run out. */
Test(oauth_fleet, worker_stopped_during_a_token_request_hands_the_job_back)
{
    worker_oauth_timeout_ms = 10000;
    conn_id = add_oauth_conn("hubspot", "hs-at-never-issued-f", "hs-rt-f",
                             3600, "{\"rate_limit\":\"5000/1s\"}");
    grant("hubspot", conn_id, "hs-rt-f", NULL, 0);
    set_faults("[{\"provider\":\"oauth\",\"hang\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    start_ingest();
    start_oauth_worker(0, 16);
    post_calls(0, 1);
    wait_until(one_401, 15000, "the 401");
    usleep(300 * 1000);
    int64_t t = cs_mono_ms();
    cr_expect_eq(it_stop(worker_pid, SIGTERM, 15000), 0,
                 "the worker must exit 0 on SIGTERM");
    worker_pid = 0;
    cr_expect_lt(cs_mono_ms() - t, 6000, "the grace period is 3 s");
    cr_expect_eq(records("hubspot", "notes"), 0);
    set_faults("[]");
    start_oauth_worker(0, 16);
    want = 1;
    int64_t end = cs_mono_ms() + 60000;
    while (!all_noted() && cs_mono_ms() < end)
        usleep(50000);
    if (!all_noted()) {
        /* Say where the job is before failing. */
        redisReply *k = redisCommand(rc, "KEYS cs:{0}:job:*");
        char *state = NULL;
        if (k && k->type == REDIS_REPLY_ARRAY && k->elements == 1) {
            redisReply *h = redisCommand(rc, "HGET %s state",
                                         k->element[0]->str);
            if (h && h->type == REDIS_REPLY_STRING)
                state = xstrdup(h->str);
            freeReplyObject(h);
        }
        freeReplyObject(k);
        struct sbg g = sb_state(conn_id);
        cr_assert_fail("the note did not come: job %s, parked %lld, delayed "
                       "%lld, queued %lld, connection %s, token requests "
                       "%lld, HubSpot 401s %d",
                       state ? state : "?", parked_count(),
                       rint_("ZCARD %s", "cs:{0}:delayed"),
                       rint_("XLEN %s", "cs:{0}:q:hubspot"),
                       stored(conn_id).status, g.requests,
                       hubspot_answers(401, 0));
    }
    struct sbg g = sb_state(conn_id);
    cr_expect_eq(g.requests, 1);
    cr_expect_eq(records("hubspot", "contacts"), 1);
    cr_expect_eq(dead_count(), 0);
    expect_jobs_done(1);
}

static bool token_asked(void)
{
    return sb_state(conn_id).requests >= 1;
}

/* A scheduler stopped while its token request is out waits for the
 * answer and stores it before it exits. */
Test(oauth_fleet, scheduler_stopped_during_a_refresh_stores_it_first)
{
    conn_id = add_oauth_conn("gohighlevel", "ghl-at-g", "ghl-rt-g", 60, "{}");
    grant("gohighlevel", conn_id, "ghl-rt-g", NULL, 0);
    set_faults("[{\"provider\":\"oauth\",\"latency_ms\":1200}]");
    start_scheduler(0, 200);
    wait_until(token_asked, 15000, "the token request");
    int64_t t = cs_mono_ms();
    cr_expect_eq(it_stop(sched_pid[0], SIGTERM, 15000), 0);
    sched_pid[0] = 0;
    cr_expect_geq(cs_mono_ms() - t, 500, "it did not wait for the answer");
    struct sbg g = sb_state(conn_id);
    struct row s = stored(conn_id);
    cr_expect_eq(g.requests, 1);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.refresh, g.refresh, "the rotated token was lost");
    char key[128];
    snprintf(key, sizeof(key), "%s{%s}", OFLOW_PENDING_PREFIX, conn_id);
    cr_expect_eq(rint_("EXISTS %s", key), 0);
}
