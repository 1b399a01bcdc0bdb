/*
 * test_oauth_flow.c - refreshing connections' OAuth tokens against the real
 * Redis and PostgreSQL and the sandbox's token endpoints: 50 concurrent
 * refreshers of one expired connection make exactly one token request and
 * all see the new token; a rotated refresh token is stored and used next;
 * a refresher killed between the pending write and the PostgreSQL update
 * leaves tokens that the next refresh applies without presenting the old
 * refresh token; invalid_grant expires the connection with a clear
 * last_error; 5xx and timeouts change nothing; Salesforce's JWT bearer
 * flow; callsyncctl connections refresh and its exit codes.
 */
#include "it_support.h"
#include "log.h"
#include "oauth_flow.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define CTL CS_BIN_DIR "/callsyncctl"
#define REDIS_DB 9
#define KEYS "t1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SF_USER "integration@acme.example"
#define SF_CLIENT "3MVG9sfConsumerKey"

static struct tpg db;
static redisContext *rc;
static struct cs_keyring *kr;
static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];
static char key_pub[64], key_priv_path[64];
static char *key_priv;
static char *clients, *base_urls;
static char org[40], agent[40];

/* ---- Sandbox ------------------------------------------------------------- */

static void start_sandbox(void)
{
    const char *argv[] = {
        SANDBOX, "--port", "0", "--seed", "11",
        "--oauth-client", "google=g-client.apps.googleusercontent.com:GOCSPX-s",
        "--oauth-client", "hubspot=hs-client:hs-secret",
        "--oauth-client", "salesforce=" SF_CLIENT ":sf-secret",
        "--oauth-client", "calendly=cal-client:cal-secret",
        "--oauth-client", "gohighlevel=ghl-client:ghl-secret",
        "--oauth-client", "zoho=1000.ZOHO:zoho-secret",
        "--oauth-client", "microsoft=00001111-aaaa:ms-secret",
        "--salesforce-jwt-key", key_pub, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_oauth_sb_%d.log", (int)getpid());
    unlink(sb_log);
    int p[2];
    cr_assert(pipe2(p, O_CLOEXEC) == 0);
    fflush(stdout);
    int saved = dup(1);
    cr_assert(dup2(p[1], 1) == 1);
    sb_pid = it_spawn_ex((char *const *)argv, NULL, sb_log, true);
    dup2(saved, 1);
    close(saved);
    close(p[1]);
    char line[256] = {0};
    size_t have = 0;
    int64_t deadline = cs_mono_ms() + 5000;
    while (!memchr(line, '\n', have) && have < sizeof(line) - 1) {
        struct pollfd pf = {p[0], POLLIN, 0};
        int left = (int)(deadline - cs_mono_ms());
        cr_assert(left > 0 && poll(&pf, 1, left) == 1,
                  "sandbox printed nothing");
        ssize_t r = read(p[0], line + have, sizeof(line) - 1 - have);
        cr_assert(r > 0, "sandbox closed stdout");
        have += (size_t)r;
    }
    close(p[0]);
    cr_assert(sscanf(line, "listening on http://127.0.0.1:%d", &sb_port) == 1,
              "unexpected first line: %s", line);
}

static json_t *sb_json(const struct it_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    cr_assert(j, "not JSON: %.*s", (int)r->body_len, r->body);
    return j;
}

static void sb_grant(const char *provider, const char *conn, const char *rt,
                     const char *subject)
{
    json_t *j = json_pack("{s:s,s:s,s:s?,s:s?}", "provider", provider,
                          "connection", conn, "refresh_token", rt, "subject",
                          subject);
    char *body = json_dumps(j, JSON_COMPACT);
    struct it_resp r = it_post(sb_port, "/_sandbox/oauth/grants", NULL, body,
                               strlen(body));
    cr_assert_eq(r.status, 201, "grant: %.*s", (int)r.body_len, r.body);
    free(body);
    json_decref(j);
}

/* The sandbox's view of a connection's grant. */
struct sbg {
    long long requests, stale, refused;
    char access[160], refresh[160];
};

static struct sbg sb_state(const char *conn)
{
    char path[160];
    snprintf(path, sizeof(path), "/_sandbox/oauth/grants?connection=%s",
             conn);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = sb_json(&r);
    struct sbg g = {0};
    g.requests = json_integer_value(json_object_get(j, "token_requests"));
    g.stale = json_integer_value(json_object_get(j, "stale_token_requests"));
    g.refused = json_integer_value(json_object_get(j, "refused"));
    const char *a = json_string_value(json_object_get(j, "access_token"));
    const char *rt = json_string_value(json_object_get(j, "refresh_token"));
    snprintf(g.access, sizeof(g.access), "%s", a ? a : "");
    snprintf(g.refresh, sizeof(g.refresh), "%s", rt ? rt : "");
    json_decref(j);
    return g;
}

static void sb_faults(const char *rules)
{
    struct it_resp r =
        it_post(sb_port, "/_sandbox/faults", NULL, rules, strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
}

/* ---- Set-up -------------------------------------------------------------- */

static void write_keys(void)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    cr_assert_not_null(k);
    snprintf(key_pub, sizeof(key_pub), "/tmp/cs_oauth_pub_%d.pem",
             (int)getpid());
    FILE *f = fopen(key_pub, "wb");
    cr_assert(f && PEM_write_PUBKEY(f, k));
    fclose(f);
    BIO *b = BIO_new(BIO_s_mem());
    cr_assert(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL));
    char *data;
    long n = BIO_get_mem_data(b, &data);
    key_priv = xstrndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    snprintf(key_priv_path, sizeof(key_priv_path), "/tmp/cs_oauth_key_%d.pem",
             (int)getpid());
    f = fopen(key_priv_path, "wb");
    cr_assert(f);
    fputs(key_priv, f);
    fclose(f);
}

static void setup(void)
{
    log_init("test_oauth_flow", "error");
    tpg_setup(&db, "oauth", true);
    rc = it_redis(REDIS_DB);
    freeReplyObject(redisCommand(rc, "FLUSHDB"));
    struct cs_err err;
    kr = cs_keyring_new(KEYS, &err);
    cr_assert(kr, "%s", err.msg);
    write_keys();
    start_sandbox();
    clients = xstrdup("google=g-client.apps.googleusercontent.com:GOCSPX-s,"
                      "hubspot=hs-client:hs-secret,"
                      "salesforce=" SF_CLIENT ":sf-secret,"
                      "calendly=cal-client:cal-secret,"
                      "gohighlevel=ghl-client:ghl-secret,"
                      "zoho=1000.ZOHO:zoho-secret,"
                      "microsoft=00001111-aaaa:ms-secret");
    const char *names[] = {"google",      "hubspot", "salesforce", "calendly",
                           "gohighlevel", "zoho",    "microsoft"};
    base_urls = xstrdup("");
    for (size_t i = 0; i < 7; i++) {
        char *next = xasprintf("%s%s%s=http://127.0.0.1:%d/oauth/%s",
                               base_urls, i ? "," : "", names[i], sb_port,
                               names[i]);
        free(base_urls);
        base_urls = next;
    }
    char *o = it_sql(&db, "INSERT INTO organizations (name) VALUES "
                          "('Summit Roofing') RETURNING id",
                     0, NULL);
    snprintf(org, sizeof(org), "%s", o);
    free(o);
    const char *p[] = {org};
    char *a = it_sql(&db, "INSERT INTO agents (organization_id, name) VALUES "
                          "($1, 'Front desk') RETURNING id",
                     1, p);
    snprintf(agent, sizeof(agent), "%s", a);
    free(a);
}

static void teardown(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0);
    sb_pid = -1;
    it_expect_clean_log(sb_log);
    if (rc)
        redisFree(rc);
    rc = NULL;
    cs_keyring_free(kr);
    kr = NULL;
    unlink(key_pub);
    unlink(key_priv_path);
    free(key_priv);
    free(clients);
    free(base_urls);
    key_priv = clients = base_urls = NULL;
    tpg_teardown(&db);
}

TestSuite(oauth, .init = setup, .fini = teardown, .timeout = 120);

/* ---- Connections --------------------------------------------------------- */

static char *seal(const char *s)
{
    return s ? cs_seal(kr, s, strlen(s)) : NULL;
}

/* A connection with tokens expiring expires_in_s from now. */
static char *add_conn(const char *type, const char *auth, const char *access,
                      const char *refresh, int expires_in_s,
                      const char *config)
{
    char *a = seal(access), *r = seal(refresh);
    char exp[24];
    snprintf(exp, sizeof(exp), "%d", expires_in_s);
    const char *p[] = {agent, type, auth, a, r, exp, config ? config : "{}"};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      " integration_type, auth_type, access_token, "
                      " refresh_token, token_expires_at, config) VALUES ($1, "
                      " $2, $3, $4, $5, now() + make_interval(secs => $6::double precision), "
                      " $7::jsonb) RETURNING id",
                      7, p);
    free(a);
    free(r);
    cr_assert(id);
    return id;
}

struct stored {
    char access[200], refresh[200], status[16], last_error[400];
    char instance_url[200];
    int64_t expires_ms;
};

static void open_into(const char *sealed, char *out, size_t cap)
{
    out[0] = '\0';
    if (!sealed)
        return;
    struct cs_err err;
    size_t n;
    char *plain = cs_open(kr, sealed, &n, &err);
    cr_assert(plain, "%s", err.msg);
    snprintf(out, cap, "%s", plain);
    free(plain);
}

static struct stored stored(const char *id)
{
    const char *p[] = {id};
    PGresult *r = tpg_query(
        &db,
        "SELECT access_token, refresh_token, connection_status, last_error, "
        " (extract(epoch FROM token_expires_at) * 1000)::bigint, instance_url "
        "FROM integration_connections WHERE id = $1",
        1, p);
    cr_assert_eq(PQntuples(r), 1);
    struct stored s;
    memset(&s, 0, sizeof(s));
    open_into(PQgetisnull(r, 0, 0) ? NULL : PQgetvalue(r, 0, 0), s.access,
              sizeof(s.access));
    open_into(PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1), s.refresh,
              sizeof(s.refresh));
    snprintf(s.status, sizeof(s.status), "%s", PQgetvalue(r, 0, 2));
    snprintf(s.last_error, sizeof(s.last_error), "%s", PQgetvalue(r, 0, 3));
    s.expires_ms = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
    snprintf(s.instance_url, sizeof(s.instance_url), "%s",
             PQgetvalue(r, 0, 5));
    PQclear(r);
    return s;
}

static void expire_now(const char *id)
{
    const char *p[] = {id};
    PQclear(tpg_query(&db,
                      "UPDATE integration_connections SET token_expires_at "
                      "= now() - interval '1 second' WHERE id = $1",
                      1, p));
}

static long long redis_exists(const char *prefix, const char *id)
{
    return it_redis_int(rc, "EXISTS %s{%s}", prefix, id);
}

/* ---- Refreshing ---------------------------------------------------------- */

static struct oflow_env env(void)
{
    struct oflow_env e = {0};
    e.kr = kr;
    e.clients = clients;
    e.base_urls = base_urls;
    e.jwt_key_pem = key_priv;
    e.timeout_ms = 5000;
    return e;
}

static struct oflow_opts opts(void)
{
    struct oflow_opts o = {.force = false,
                           .min_valid_ms = 60000,
                           .stale_expires_ms = -1};
    return o;
}

/* One refresh with its own connections, as a separate process would. */
static enum oflow_status run(const struct oflow_env *e, const char *id,
                             const struct oflow_opts *o,
                             struct oflow_result *res)
{
    struct cs_err err;
    PGconn *pg = pgc_connect(db.url, &err);
    char *url = it_redis_url(REDIS_DB);
    redisContext *r = oflow_redis_connect(url, 5000, &err);
    free(url);
    enum oflow_status st;
    if (!pg || !r) {
        memset(res, 0, sizeof(*res));
        res->status = st = OFLOW_TRANSIENT;
        snprintf(res->message, sizeof(res->message), "connect: %s", err.msg);
    } else {
        st = oflow_run_blocking(e, pg, r, id, o, res);
    }
    if (pg)
        PQfinish(pg);
    if (r)
        redisFree(r);
    return st;
}

static struct oflow_result refresh(const char *id)
{
    struct oflow_env e = env();
    struct oflow_opts o = opts();
    struct oflow_result res;
    run(&e, id, &o, &res);
    return res;
}

Test(oauth, refresh_stores_new_tokens)
{
    char *id = add_conn("hubspot", "oauth", "old-access", "hs-rt-1", -10,
                        NULL);
    sb_grant("hubspot", id, "hs-rt-1", NULL);
    int64_t before = cs_now_ms();
    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    cr_expect_eq(res.token_requests, 1);
    cr_expect_str_eq(res.provider, "hubspot");
    cr_expect_str_eq(res.agent_id, agent);
    cr_expect_not(res.rotated, "HubSpot returns the same refresh token");
    struct sbg g = sb_state(id);
    struct stored s = stored(id);
    cr_expect_eq(g.requests, 1);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.refresh, "hs-rt-1");
    cr_expect_str_eq(s.status, "connected");
    cr_expect_geq(s.expires_ms, before + 1800 * 1000LL - 1000);
    cr_expect_leq(s.expires_ms, cs_now_ms() + 1800 * 1000LL + 1000);
    cr_expect_eq(s.expires_ms, res.expires_at_ms);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 0);

    /* Still valid: nothing is sent. */
    res = refresh(id);
    cr_expect_eq(res.status, OFLOW_FRESH, "%s", res.message);
    cr_expect_eq(res.token_requests, 0);
    cr_expect_eq(sb_state(id).requests, 1);
    free(id);
}

/* ---- Fifty at once ------------------------------------------------------- */

#define N_REFRESHERS 50

struct worker_arg {
    const char *id;
    struct oflow_result res;
    char access_after[200];
};

static void *refresher(void *p)
{
    struct worker_arg *w = p;
    struct oflow_env e = env();
    struct oflow_opts o = opts();
    run(&e, w->id, &o, &w->res);
    /* What this refresher would use next: the stored token. */
    struct cs_err err;
    PGconn *pg = pgc_connect(db.url, &err);
    if (pg) {
        const char *prm[] = {w->id};
        PGresult *r = pgc_query(pg,
                                "SELECT access_token FROM "
                                "integration_connections WHERE id = $1",
                                1, prm, &err);
        if (r && PQntuples(r) == 1) {
            size_t n;
            char *plain = cs_open(kr, PQgetvalue(r, 0, 0), &n, &err);
            if (plain)
                snprintf(w->access_after, sizeof(w->access_after), "%s",
                         plain);
            free(plain);
        }
        PQclear(r);
        PQfinish(pg);
    }
    return NULL;
}

Test(oauth, fifty_concurrent_refreshers_make_one_token_request)
{
    char *id = add_conn("calendly", "oauth", "cal-old-access", "cal-rt-1", -5,
                        NULL);
    sb_grant("calendly", id, "cal-rt-1", NULL);
    /* A slow endpoint: everyone arrives while the first one waits. */
    sb_faults("[{\"provider\":\"oauth\",\"latency_ms\":400}]");
    static struct worker_arg args[N_REFRESHERS];
    pthread_t th[N_REFRESHERS];
    for (int i = 0; i < N_REFRESHERS; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].id = id;
        cr_assert_eq(pthread_create(&th[i], NULL, refresher, &args[i]), 0);
    }
    for (int i = 0; i < N_REFRESHERS; i++)
        pthread_join(th[i], NULL);

    struct sbg g = sb_state(id);
    cr_expect_eq(g.requests, 1, "token requests: %lld", g.requests);
    cr_expect_eq(g.stale, 0);
    int refreshed = 0, fresh = 0, waited = 0, sent = 0;
    for (int i = 0; i < N_REFRESHERS; i++) {
        const struct oflow_result *r = &args[i].res;
        refreshed += r->status == OFLOW_REFRESHED;
        fresh += r->status == OFLOW_FRESH;
        waited += r->waited;
        sent += r->token_requests;
        cr_expect(r->status == OFLOW_REFRESHED || r->status == OFLOW_FRESH,
                  "refresher %d: %s (%s)", i, oflow_status_name(r->status),
                  r->message);
        cr_expect_str_eq(args[i].access_after, g.access,
                         "refresher %d ends with another token", i);
    }
    cr_expect_eq(refreshed, 1);
    cr_expect_eq(fresh, N_REFRESHERS - 1);
    cr_expect_eq(sent, 1);
    cr_expect_gt(waited, 0, "nobody waited: the test did not overlap");
    struct stored s = stored(id);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.refresh, g.refresh);
    cr_expect_str_neq(s.refresh, "cal-rt-1");
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 0);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);
    free(id);
}

/* ---- Rotation ------------------------------------------------------------ */

Test(oauth, rotated_refresh_token_is_stored_and_used_next)
{
    char *id = add_conn("gohighlevel", "oauth", "ghl-old", "ghl-rt-1", -1,
                        "{\"oauth\":{\"user_type\":\"Location\"}}");
    sb_grant("gohighlevel", id, "ghl-rt-1", NULL);
    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    cr_expect(res.rotated);
    struct sbg g1 = sb_state(id);
    struct stored s1 = stored(id);
    cr_expect_str_eq(s1.refresh, g1.refresh);
    cr_expect_str_neq(s1.refresh, "ghl-rt-1");
    cr_expect_str_eq(s1.access, g1.access);

    expire_now(id);
    res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    struct sbg g2 = sb_state(id);
    struct stored s2 = stored(id);
    cr_expect_eq(g2.requests, 2);
    cr_expect_eq(g2.stale, 0, "an old refresh token was presented");
    cr_expect_eq(g2.refused, 0);
    cr_expect_str_eq(s2.refresh, g2.refresh);
    cr_expect_str_neq(s2.refresh, s1.refresh);
    cr_expect_str_eq(s2.access, g2.access);
    free(id);
}

/* ---- Crash between the token answer and PostgreSQL ----------------------- */

static void die_now(void *arg)
{
    CS_UNUSED(arg);
    _exit(42);
}

Test(oauth, killed_refresher_leaves_tokens_the_next_one_applies)
{
    char *id = add_conn("calendly", "oauth", "cal-old", "cal-rt-old", -5,
                        NULL);
    sb_grant("calendly", id, "cal-rt-old", NULL);
    struct stored before = stored(id);

    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct oflow_env e = env();
        e.after_pending = die_now;
        e.timeout_ms = 2000; /* the dead refresher's lock lasts 3 s */
        e.lock_ttl_ms = e.timeout_ms + 1000;
        struct oflow_opts o = opts();
        struct oflow_result res;
        run(&e, id, &o, &res);
        _exit(1); /* the hook did not run */
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 42,
              "the child did not stop between the two writes (status %d)",
              st);

    /* The endpoint rotated; PostgreSQL still has the old, now invalid,
     * refresh token; the new one waits in Redis, sealed. */
    struct sbg g = sb_state(id);
    cr_expect_eq(g.requests, 1);
    cr_expect_str_neq(g.refresh, "cal-rt-old");
    struct stored mid = stored(id);
    cr_expect_str_eq(mid.refresh, "cal-rt-old");
    cr_expect_str_eq(mid.access, before.access);
    redisReply *r = redisCommand(rc, "GET %s{%s}", OFLOW_PENDING_PREFIX, id);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "no pending record");
    cr_expect(!strstr(r->str, g.refresh) && !strstr(r->str, g.access),
              "the pending record holds a plaintext token");
    cr_expect(strstr(r->str, "\"access_token\":\"v1:"), "%s", r->str);
    freeReplyObject(r);

    /* The next refresher (a worker) waits out the dead one's lock, applies
     * the pending tokens and has nothing to ask the provider. */
    struct oflow_env e = env();
    e.lock_ttl_ms = e.timeout_ms + 1000;
    struct oflow_opts o = opts();
    struct oflow_result res;
    run(&e, id, &o, &res);
    cr_assert_eq(res.status, OFLOW_FRESH, "%s: %s",
                 oflow_status_name(res.status), res.message);
    cr_expect(res.applied_pending);
    cr_expect_eq(res.token_requests, 0);
    struct stored after = stored(id);
    cr_expect_str_eq(after.access, g.access);
    cr_expect_str_eq(after.refresh, g.refresh);
    cr_expect_str_eq(after.status, "connected");
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);
    g = sb_state(id);
    cr_expect_eq(g.requests, 1);
    cr_expect_eq(g.stale, 0, "the old refresh token was presented");

    /* And the refresh after that uses the rotated token. */
    o.force = true;
    run(&e, id, &o, &res);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    g = sb_state(id);
    cr_expect_eq(g.requests, 2);
    cr_expect_eq(g.stale, 0);
    cr_expect_eq(g.refused, 0);
    cr_expect_str_eq(stored(id).refresh, g.refresh);
    free(id);
}

/* The scheduler's sweep of leftover records (pending_only): the tokens a
 * dead refresher left are applied even though the row still looks valid
 * (a 401 refresh of a token that was not yet due), and nothing is ever
 * asked of the token endpoint; a record for a removed connection is
 * dropped. */
Test(oauth, pending_only_applies_leftover_tokens_and_never_asks)
{
    char *id = add_conn("gohighlevel", "oauth", "ghl-live", "ghl-rt-a", 3600,
                        NULL);
    sb_grant("gohighlevel", id, "ghl-rt-a", NULL);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct oflow_env e = env();
        e.after_pending = die_now;
        e.timeout_ms = 2000;
        e.lock_ttl_ms = e.timeout_ms + 1000;
        struct oflow_opts o = opts();
        o.force = true;
        struct oflow_result res;
        run(&e, id, &o, &res);
        _exit(1);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 42, "status %d", st);
    struct sbg g = sb_state(id);
    cr_assert_eq(g.requests, 1);
    cr_expect_str_eq(stored(id).refresh, "ghl-rt-a");

    /* An ordinary refresh would find the row valid for an hour and stop
     * before looking at the record. */
    struct oflow_env e = env();
    e.lock_ttl_ms = e.timeout_ms + 1000;
    struct oflow_opts o = opts();
    struct oflow_result res;
    run(&e, id, &o, &res);
    cr_expect_eq(res.status, OFLOW_FRESH, "%s", res.message);
    cr_expect_not(res.applied_pending);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 1);

    o.pending_only = true;
    o.stale_expires_ms = -1;
    run(&e, id, &o, &res);
    cr_assert_eq(res.status, OFLOW_FRESH, "%s: %s",
                 oflow_status_name(res.status), res.message);
    cr_expect(res.applied_pending, "%s", res.message);
    cr_expect(res.waited, "the dead refresher's lock was waited out");
    cr_expect_eq(res.token_requests, 0);
    cr_expect_str_eq(res.agent_id, agent);
    cr_expect_str_eq(res.provider, "gohighlevel");
    struct stored s = stored(id);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.refresh, g.refresh);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 0);

    /* Nothing left: another sweep changes nothing and asks nothing. */
    run(&e, id, &o, &res);
    cr_expect_eq(res.status, OFLOW_FRESH);
    cr_expect_not(res.applied_pending);
    cr_expect_eq(sb_state(id).requests, 1);
    cr_expect_eq(sb_state(id).stale, 0);
    cr_expect_str_eq(stored(id).access, g.access);

    /* A record of a connection that no longer exists is dropped. */
    const char *p[] = {id};
    PQclear(tpg_query(&db, "DELETE FROM integration_connections "
                           "WHERE id = $1", 1, p));
    char *a = seal("orphan-access");
    char *doc = xasprintf("{\"v\":1,\"access_token\":\"%s\","
                          "\"expires_at_ms\":%lld,\"base_access\":\"x\","
                          "\"at_ms\":1}",
                          a, (long long)(cs_now_ms() + 3600000));
    freeReplyObject(redisCommand(rc, "SET %s{%s} %s", OFLOW_PENDING_PREFIX,
                                 id, doc));
    run(&e, id, &o, &res);
    cr_expect_eq(res.status, OFLOW_FRESH, "%s", res.message);
    cr_expect_not(res.applied_pending);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);
    cr_expect_eq(res.token_requests, 0);
    free(doc);
    free(a);
    free(id);
}

Test(oauth, stale_pending_record_is_discarded)
{
    char *id = add_conn("hubspot", "oauth", "hs-access", "hs-rt-9", -5, NULL);
    sb_grant("hubspot", id, "hs-rt-9", NULL);
    /* A record written against tokens the row no longer holds (the user
     * reconnected meanwhile). */
    char *a = seal("ancient-access"), *b = seal("ancient-base");
    json_t *j = json_pack("{s:i,s:s,s:n,s:I,s:n,s:s,s:s,s:I}", "v", 1,
                          "access_token", a, "refresh_token",
                          "expires_at_ms", (json_int_t)(cs_now_ms() + 3600000),
                          "instance_url", "base_access", b, "base_refresh", b,
                          "at_ms", (json_int_t)cs_now_ms());
    char *doc = json_dumps(j, JSON_COMPACT);
    freeReplyObject(redisCommand(rc, "SET %s{%s} %s", OFLOW_PENDING_PREFIX,
                                 id, doc));
    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    cr_expect_not(res.applied_pending);
    struct stored s = stored(id);
    cr_expect_str_eq(s.access, sb_state(id).access);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);
    free(doc);
    json_decref(j);
    free(a);
    free(b);
    free(id);
}

/* ---- Refusals and failures ----------------------------------------------- */

Test(oauth, invalid_grant_expires_the_connection)
{
    char *id = add_conn("hubspot", "oauth", "hs-access", "hs-rt-revoked", -5,
                        NULL);
    sb_grant("hubspot", id, "hs-rt-revoked", NULL);
    struct it_resp r = it_post(sb_port, "/_sandbox/oauth/revoke", NULL,
                               "{\"connection\":\"x\"}", 18);
    cr_assert_eq(r.status, 200);
    char *body = xasprintf("{\"connection\":\"%s\"}", id);
    r = it_post(sb_port, "/_sandbox/oauth/revoke", NULL, body, strlen(body));
    free(body);
    cr_assert_eq(r.status, 200);

    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_PERMANENT, "%s", res.message);
    cr_expect_str_eq(res.error, "BAD_REFRESH_TOKEN");
    cr_expect_eq(res.http_status, 400);
    struct stored s = stored(id);
    cr_expect_str_eq(s.status, "expired");
    cr_expect_str_eq(s.last_error,
                     "reconnect HubSpot: the refresh token was revoked or "
                     "has expired (BAD_REFRESH_TOKEN: missing or unknown "
                     "refresh token)");
    cr_expect_str_eq(s.access, "hs-access", "tokens are kept as they were");
    cr_expect_str_eq(s.refresh, "hs-rt-revoked");
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 0);

    /* An expired connection is not retried on every call. */
    res = refresh(id);
    cr_expect_eq(res.status, OFLOW_PERMANENT);
    cr_expect_eq(res.token_requests, 0);
    cr_expect_eq(sb_state(id).requests, 1);
    free(id);
}

Test(oauth, bad_client_secret_expires_with_operator_message)
{
    char *id = add_conn("outlook", "oauth", "ms-a", "ms-rt-1", -5, NULL);
    sb_grant("microsoft", id, "ms-rt-1", NULL);
    struct oflow_env e = env();
    e.clients = "microsoft=00001111-aaaa:wrong-secret";
    struct oflow_opts o = opts();
    struct oflow_result res;
    run(&e, id, &o, &res);
    cr_assert_eq(res.status, OFLOW_PERMANENT, "%s", res.message);
    cr_expect_str_eq(res.error, "invalid_client");
    struct stored s = stored(id);
    cr_expect_str_eq(s.status, "expired");
    cr_expect(strstr(s.last_error, "check the Microsoft app's client id and "
                                   "secret"),
              "%s", s.last_error);
    cr_expect(!strstr(s.last_error, "wrong-secret"), "secret in last_error");
    free(id);
}

Test(oauth, transient_5xx_changes_nothing)
{
    char *id = add_conn("outlook", "oauth", "ms-access", "ms-rt-1", -5,
                        "{\"oauth\":{\"tenant\":\"contoso.onmicrosoft.com\"}}");
    sb_grant("microsoft", id, "ms-rt-1", NULL);
    struct stored before = stored(id);
    sb_faults("[{\"provider\":\"oauth\",\"status\":503,\"retry_after_s\":9,"
              "\"count\":1}]");
    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_TRANSIENT, "%s", res.message);
    cr_expect_eq(res.http_status, 503);
    cr_expect_eq(res.retry_after_ms, 9000);
    cr_expect_str_eq(res.error, "http_503");
    struct stored s = stored(id);
    cr_expect_str_eq(s.status, "connected");
    cr_expect_str_eq(s.last_error, "");
    cr_expect_str_eq(s.access, before.access);
    cr_expect_str_eq(s.refresh, before.refresh);
    cr_expect_eq(s.expires_ms, before.expires_ms);
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 0);
    cr_expect_eq(redis_exists(OFLOW_PENDING_PREFIX, id), 0);

    /* The next try goes through (Microsoft rotates). */
    res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    cr_expect(res.rotated);
    cr_expect_str_eq(stored(id).refresh, sb_state(id).refresh);
    free(id);
}

Test(oauth, slow_token_endpoint_times_out)
{
    char *id = add_conn("google_calendar", "oauth", "g-access", "1//g-rt", -5,
                        NULL);
    sb_grant("google", id, "1//g-rt", NULL);
    sb_faults("[{\"provider\":\"oauth\",\"latency_ms\":3000,\"count\":1}]");
    struct oflow_env e = env();
    e.timeout_ms = 500;
    struct oflow_opts o = opts();
    struct oflow_result res;
    int64_t t0 = cs_mono_ms();
    run(&e, id, &o, &res);
    cr_assert_eq(res.status, OFLOW_TRANSIENT, "%s", res.message);
    cr_expect_str_eq(res.error, "network");
    cr_expect_lt(cs_mono_ms() - t0, 2500);
    struct stored s = stored(id);
    cr_expect_str_eq(s.status, "connected");
    cr_expect_str_eq(s.access, "g-access");
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 0);
    free(id);
}

/* ---- A worker's 401 ------------------------------------------------------ */

Test(oauth, a_rejected_token_is_refreshed_once)
{
    /* Valid by the clock, but the provider answered 401 to it. */
    char *id = add_conn("zoho", "oauth", "zoho-access", "1000.zoho-rt", 3000,
                        "{\"oauth\":{\"dc\":\"eu\"}}");
    sb_grant("zoho", id, "1000.zoho-rt", NULL);
    struct stored s0 = stored(id);
    struct oflow_env e = env();
    struct oflow_opts o = opts();
    o.stale_expires_ms = s0.expires_ms;
    struct oflow_result res;
    run(&e, id, &o, &res);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    struct stored s1 = stored(id);
    cr_expect_str_eq(s1.access, sb_state(id).access);
    cr_expect_str_eq(s1.refresh, "1000.zoho-rt", "Zoho does not rotate");
    char want[96];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/zoho", sb_port);
    cr_expect_str_eq(s1.instance_url, want, "api_domain is stored");
    /* A second worker with the same old expiry finds it already done. */
    run(&e, id, &o, &res);
    cr_expect_eq(res.status, OFLOW_FRESH, "%s", res.message);
    cr_expect_eq(sb_state(id).requests, 1);
    free(id);
}

/* ---- Salesforce JWT bearer ----------------------------------------------- */

Test(oauth, salesforce_jwt_bearer)
{
    char *id = add_conn("salesforce", "jwt", NULL, NULL, -5,
                        "{\"oauth\":{\"username\":\"" SF_USER "\"}}");
    sb_grant("salesforce", id, NULL, SF_USER);
    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    struct stored s = stored(id);
    struct sbg g = sb_state(id);
    cr_expect_str_eq(s.access, g.access);
    cr_expect_str_eq(s.refresh, "");
    char want[96];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/salesforce", sb_port);
    cr_expect_str_eq(s.instance_url, want);
    cr_expect_gt(s.expires_ms, cs_now_ms() + 7000 * 1000LL);

    /* A user the app is not approved for. */
    char *other = add_conn("salesforce", "jwt", NULL, NULL, -5,
                           "{\"oauth\":{\"username\":\"nobody@acme.example\"}}");
    res = refresh(other);
    cr_assert_eq(res.status, OFLOW_PERMANENT, "%s", res.message);
    s = stored(other);
    cr_expect_str_eq(s.status, "expired");
    cr_expect(strstr(s.last_error, "fix the Salesforce JWT bearer set-up"),
              "%s", s.last_error);
    cr_expect(strstr(s.last_error, "user hasn't approved this consumer"),
              "%s", s.last_error);
    free(other);
    free(id);
}

Test(oauth, salesforce_refresh_token_flow)
{
    char *id = add_conn("salesforce", "oauth", "00D!old", "5Aep861-rt", -5,
                        NULL);
    sb_grant("salesforce", id, "5Aep861-rt", NULL);
    struct oflow_result res = refresh(id);
    cr_assert_eq(res.status, OFLOW_REFRESHED, "%s", res.message);
    struct stored s = stored(id);
    cr_expect_str_eq(s.access, sb_state(id).access);
    cr_expect_str_eq(s.refresh, "5Aep861-rt");
    cr_expect(strstr(s.instance_url, "/salesforce"), "%s", s.instance_url);
    free(id);
}

/* ---- What cannot be refreshed -------------------------------------------- */

Test(oauth, connections_that_cannot_be_refreshed)
{
    struct oflow_result res = refresh("00000000-0000-4000-8000-000000000000");
    cr_expect_eq(res.status, OFLOW_INVALID);
    cr_expect_eq(res.code, CS_ENOENT);
    res = refresh("not-a-uuid");
    cr_expect_eq(res.status, OFLOW_INVALID);
    cr_expect_eq(res.code, CS_ENOENT);

    char *zap = add_conn("zapier", "webhook", NULL, NULL, 0, NULL);
    res = refresh(zap);
    cr_expect_eq(res.status, OFLOW_INVALID);
    cr_expect_eq(res.code, CS_EINVAL);
    cr_expect_str_eq(res.error, "not_oauth");

    char *noclient = add_conn("calendly", "oauth", "a", "r", -5, NULL);
    struct oflow_env e = env();
    e.clients = "hubspot=x:y";
    struct oflow_opts o = opts();
    run(&e, noclient, &o, &res);
    cr_expect_eq(res.status, OFLOW_INVALID);
    cr_expect_str_eq(res.error, "no_client");
    cr_expect(strstr(res.message, "CALLSYNC_OAUTH_CLIENTS=calendly="), "%s",
              res.message);
    cr_expect_str_eq(stored(noclient).status, "connected", "row unchanged");
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, noclient), 0);

    /* No refresh token stored: only a new connection helps. */
    char *nort = add_conn("hubspot", "oauth", "a", NULL, -5, NULL);
    res = refresh(nort);
    cr_expect_eq(res.status, OFLOW_PERMANENT);
    cr_expect_str_eq(stored(nort).last_error,
                     "reconnect HubSpot: no refresh token is stored");

    const char *p[] = {noclient};
    PQclear(tpg_query(&db,
                      "UPDATE integration_connections SET is_active = false, "
                      "connection_status = 'disconnected' WHERE id = $1",
                      1, p));
    res = refresh(noclient);
    cr_expect_eq(res.status, OFLOW_INVALID);
    cr_expect_str_eq(res.error, "disconnected");
    free(zap);
    free(noclient);
    free(nort);
}

/* ---- callsyncctl --------------------------------------------------------- */

/* Run callsyncctl with the test's settings; returns the exit code and the
 * first stdout line(s) in out. */
static char ctl_log[64];

static int ctl(char *out, size_t cap, const char *args)
{
    snprintf(ctl_log, sizeof(ctl_log), "/tmp/cs_oauth_ctl_%d.log",
             (int)getpid());
    char *url = it_redis_url(REDIS_DB);
    char *cmd = xasprintf(
        "env CALLSYNC_DATABASE_URL='%s' CALLSYNC_REDIS_URL='%s' "
        "CALLSYNC_ENCRYPTION_KEYS='%s' CALLSYNC_OAUTH_CLIENTS='%s' "
        "CALLSYNC_OAUTH_BASE_URLS='%s' CALLSYNC_OAUTH_TIMEOUT_MS=3000 "
        "CALLSYNC_LOG_LEVEL=error %s %s 2>>%s",
        db.url, url, KEYS, clients, base_urls, CTL, args, ctl_log);
    free(url);
    FILE *f = popen(cmd, "r");
    free(cmd);
    cr_assert(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(oauth, callsyncctl_connections_refresh)
{
    char *id = add_conn("calendly", "oauth", "cal-a", "cal-rt-ctl", -5, NULL);
    sb_grant("calendly", id, "cal-rt-ctl", NULL);
    char out[4096];
    char *args = xasprintf("connections refresh %s --json", id);
    cr_assert_eq(ctl(out, sizeof(out), args), 0, "%s", out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "not JSON: %s", out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "result")),
                     "refreshed");
    cr_expect_str_eq(json_string_value(json_object_get(j, "provider")),
                     "calendly");
    cr_expect(json_is_true(json_object_get(j, "rotated")));
    cr_expect(json_string_value(json_object_get(j, "expires_at")));
    json_decref(j);
    cr_expect_str_eq(stored(id).refresh, sb_state(id).refresh);

    cr_assert_eq(ctl(out, sizeof(out), args), 0, "%s", out);
    j = json_loads(out, 0, NULL);
    cr_expect_str_eq(json_string_value(json_object_get(j, "result")), "fresh");
    json_decref(j);
    free(args);

    /* --force refreshes a valid token; plain output. */
    args = xasprintf("connections refresh %s --force", id);
    cr_expect_eq(ctl(out, sizeof(out), args), 0, "%s", out);
    cr_expect(strncmp(out, "refreshed ", 10) == 0, "%s", out);
    free(args);
    cr_expect_eq(sb_state(id).requests, 2);

    cr_expect_eq(ctl(out, sizeof(out),
                     "connections refresh 00000000-0000-4000-8000-"
                     "000000000000"),
                 3);
    cr_expect_eq(ctl(out, sizeof(out), "connections refresh nope"), 2);
    cr_expect_eq(ctl(out, sizeof(out), "connections refresh"), 2);
    char *zap = add_conn("zapier", "webhook", NULL, NULL, 0, NULL);
    args = xasprintf("connections refresh %s", zap);
    cr_expect_eq(ctl(out, sizeof(out), args), 2);
    free(args);

    /* Revoked: exit 1, and the JSON says expired. */
    char *body = xasprintf("{\"connection\":\"%s\"}", id);
    it_post(sb_port, "/_sandbox/oauth/revoke", NULL, body, strlen(body));
    free(body);
    args = xasprintf("connections refresh %s --force --json", id);
    cr_expect_eq(ctl(out, sizeof(out), args), 1, "%s", out);
    j = json_loads(out, 0, NULL);
    cr_assert(j, "not JSON: %s", out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "result")),
                     "expired");
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")),
                     "invalid_grant");
    json_decref(j);
    free(args);
    cr_expect_str_eq(stored(id).status, "expired");
    it_expect_clean_log(ctl_log);
    free(zap);
    free(id);
}

/* ---- The sandbox's token endpoints --------------------------------------- */

static struct it_resp form_post(const char *path, const char *body,
                                const char *extra)
{
    char *req = xasprintf("POST %s HTTP/1.1\r\nHost: t\r\n"
                          "Content-Type: application/x-www-form-urlencoded\r\n"
                          "Content-Length: %zu\r\n%s\r\n%s",
                          path, strlen(body), extra ? extra : "", body);
    struct it_resp r;
    cr_assert(it_raw(sb_port, req, strlen(req), &r), "no answer");
    free(req);
    return r;
}

Test(oauth, sandbox_speaks_each_providers_shapes)
{
    sb_grant("calendly", "c1", "cal-rt", NULL);
    /* HTTP Basic client authentication works too. */
    char *basic = cs_base64_encode((const unsigned char *)"cal-client:"
                                                          "cal-secret",
                                   21);
    char *hdr = xasprintf("Authorization: Basic %s\r\n", basic);
    struct it_resp r = form_post("/oauth/calendly/oauth/token",
                                 "grant_type=refresh_token&refresh_token="
                                 "cal-rt",
                                 hdr);
    cr_expect_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    free(hdr);
    free(basic);
    /* The old token no longer works: Calendly's invalid_grant. */
    r = form_post("/oauth/calendly/oauth/token",
                  "grant_type=refresh_token&refresh_token=cal-rt&client_id="
                  "cal-client&client_secret=cal-secret",
                  NULL);
    cr_expect_eq(r.status, 400);
    json_t *j = sb_json(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")),
                     "invalid_grant");
    json_decref(j);
    struct sbg g = sb_state("c1");
    cr_expect_eq(g.requests, 2);
    cr_expect_eq(g.stale, 1);
    cr_expect_eq(g.refused, 1);

    /* Wrong client secret. */
    r = form_post("/oauth/google/token",
                  "grant_type=refresh_token&refresh_token=x&client_id="
                  "g-client.apps.googleusercontent.com&client_secret=nope",
                  NULL);
    cr_expect_eq(r.status, 401);
    /* Zoho's refusals come with HTTP 200. */
    r = form_post("/oauth/zoho/oauth/v2/token",
                  "grant_type=refresh_token&refresh_token=unknown&client_id="
                  "1000.ZOHO&client_secret=zoho-secret",
                  NULL);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"invalid_code\""), "%.*s", (int)r.body_len,
              r.body);
    /* Microsoft's error shape. */
    r = form_post("/oauth/microsoft/common/oauth2/v2.0/token",
                  "grant_type=refresh_token&refresh_token=unknown&client_id="
                  "00001111-aaaa&client_secret=ms-secret",
                  NULL);
    cr_expect_eq(r.status, 400);
    j = sb_json(&r);
    cr_expect(json_is_array(json_object_get(j, "error_codes")));
    cr_expect(strncmp(json_string_value(json_object_get(j,
                                                        "error_description")),
                      "AADSTS70000:", 12) == 0);
    json_decref(j);
    /* Wrong paths and methods. */
    r = form_post("/oauth/hubspot/oauth/v2/token", "grant_type=x", NULL);
    cr_expect_eq(r.status, 404);
    r = it_get(sb_port, "/oauth/google/token");
    cr_expect_eq(r.status, 405);
    /* Not a form. */
    r = it_post(sb_port, "/oauth/hubspot/oauth/v3/token", NULL, "{}", 2);
    cr_expect_eq(r.status, 400);
    /* Unsupported grant. */
    r = form_post("/oauth/salesforce/services/oauth2/token",
                  "grant_type=password&client_id=" SF_CLIENT
                  "&client_secret=sf-secret",
                  NULL);
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "unsupported_grant_type"));
    /* A forged assertion. */
    r = form_post("/oauth/salesforce/services/oauth2/token",
                  "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-"
                  "bearer&assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA",
                  NULL);
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "invalid assertion"), "%.*s", (int)r.body_len,
              r.body);
}

/* ---- Driving the state machine step by step ------------------------------- */

/* One step of f with blocking I/O, except that a sleep only records when
 * to wake: what an event loop does between its callbacks. */
static void step_once(struct oflow *f, PGconn *pg, redisContext *r,
                      int64_t *wake_at)
{
    switch (oflow_step(f)) {
    case OFLOW_STEP_REDIS: {
        int argc;
        const char **argv;
        const size_t *len;
        oflow_redis_argv(f, &argc, &argv, &len);
        redisReply *rep = redisCommandArgv(r, argc, argv, len);
        oflow_redis_done(f, rep);
        freeReplyObject(rep);
        break;
    }
    case OFLOW_STEP_SQL: {
        const char *sql;
        int n;
        const char *const *params;
        oflow_sql(f, &sql, &n, &params);
        PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            oflow_sql_done(f, res, NULL);
        else
            oflow_sql_done(f, NULL, PQresultErrorMessage(res));
        PQclear(res);
        break;
    }
    case OFLOW_STEP_HTTP: {
        /* The request as an HTTP client would send it. */
        const struct oauth_request *rq = oflow_http(f);
        cr_assert_str_eq(rq->method, "POST");
        char *path = strstr(rq->url, "/oauth/");
        cr_assert(path, "%s", rq->url);
        struct it_resp resp = form_post(path, rq->body, NULL);
        struct oauth_response o = {resp.status, resp.body, resp.body_len,
                                   NULL, NULL};
        oflow_http_done(f, &o);
        break;
    }
    case OFLOW_STEP_SLEEP:
        if (*wake_at == 0)
            *wake_at = cs_mono_ms() + oflow_sleep_ms(f);
        if (cs_mono_ms() >= *wake_at) {
            *wake_at = 0;
            oflow_wake(f);
        }
        break;
    case OFLOW_STEP_DONE:
        break;
    }
}

/* HubSpot's API in the sandbox accepts the access tokens its token
 * endpoint issued, counts the calls made with them, and refuses them
 * once expired or revoked, in HubSpot's words. */
static int hs_call(const char *token, struct it_resp *out)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /hubspot/crm/v3/objects/contacts/1 HTTP/1.1\r\n"
                     "Host: t\r\nAuthorization: Bearer %s\r\n\r\n",
                     token);
    cr_assert(it_raw(sb_port, req, (size_t)n, out));
    return out->status;
}

Test(oauth, sandbox_hubspot_accepts_issued_tokens_until_they_expire)
{
    const char *conn = "9b1c43f5-31c1-4d0e-9d39-1a43a3f1c001";
    const char *grant = "{\"provider\":\"hubspot\",\"connection\":"
                        "\"9b1c43f5-31c1-4d0e-9d39-1a43a3f1c001\","
                        "\"refresh_token\":\"hs-rt-api\",\"access_token\":"
                        "\"hs-at-seed\",\"expires_in\":1}";
    struct it_resp r = it_post(sb_port, "/_sandbox/oauth/grants", NULL, grant,
                               strlen(grant));
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    /* 404: authorised, no such contact. */
    cr_expect_eq(hs_call("hs-at-seed", &r), 404, "%.*s", (int)r.body_len,
                 r.body);
    struct sbg g = sb_state(conn);
    cr_expect_str_eq(g.access, "hs-at-seed");
    usleep(1100 * 1000);
    cr_expect_eq(hs_call("hs-at-seed", &r), 401);
    cr_expect(memmem(r.body, r.body_len, "EXPIRED_AUTHENTICATION", 22),
              "%.*s", (int)r.body_len, r.body);
    cr_expect(memmem(r.body, r.body_len, "expired 0 minute(s) ago", 23),
              "%.*s", (int)r.body_len, r.body);

    /* A refreshed token works and is counted as the latest. */
    char *url = xasprintf("POST /oauth/hubspot/oauth/v3/token HTTP/1.1\r\n"
                          "Host: t\r\nContent-Type: application/x-www-form-"
                          "urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                          strlen("grant_type=refresh_token&client_id=hs-client&"
                                 "client_secret=hs-secret&refresh_token=hs-rt-"
                                 "api"),
                          "grant_type=refresh_token&client_id=hs-client&"
                          "client_secret=hs-secret&refresh_token=hs-rt-api");
    cr_assert(it_raw(sb_port, url, strlen(url), &r));
    free(url);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    g = sb_state(conn);
    cr_assert_str_neq(g.access, "hs-at-seed");
    cr_expect_eq(hs_call(g.access, &r), 404);
    cr_expect_eq(hs_call(g.access, &r), 404);
    r = it_get(sb_port, "/_sandbox/oauth/grants?connection="
                        "9b1c43f5-31c1-4d0e-9d39-1a43a3f1c001");
    json_t *j = sb_json(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "api_requests")), 3);
    cr_expect_eq(
        json_integer_value(json_object_get(j, "api_requests_latest")), 2);
    json_decref(j);

    /* Revoked: the unexpired token is refused too. */
    const char *rv = "{\"connection\":\"9b1c43f5-31c1-4d0e-9d39-"
                     "1a43a3f1c001\"}";
    r = it_post(sb_port, "/_sandbox/oauth/revoke", NULL, rv, strlen(rv));
    cr_assert_eq(r.status, 200);
    cr_expect_eq(hs_call(g.access, &r), 401);
    cr_expect(memmem(r.body, r.body_len, "INVALID_AUTHENTICATION", 22),
              "%.*s", (int)r.body_len, r.body);

    /* expires_in needs an access token. */
    const char *bad = "{\"provider\":\"hubspot\",\"connection\":\"c\","
                      "\"refresh_token\":\"x\",\"expires_in\":5}";
    r = it_post(sb_port, "/_sandbox/oauth/grants", NULL, bad, strlen(bad));
    cr_expect_eq(r.status, 400);
}

Test(oauth, two_refreshes_interleaved_in_one_thread)
{
    char *id = add_conn("gohighlevel", "oauth", "ghl-a", "ghl-rt-i", -5, NULL);
    sb_grant("gohighlevel", id, "ghl-rt-i", NULL);
    struct oflow_env e = env();
    struct oflow_opts o = opts();
    struct cs_err err;
    PGconn *pg = pgc_connect(db.url, &err);
    cr_assert(pg, "%s", err.msg);
    char *url = it_redis_url(REDIS_DB);
    redisContext *r = oflow_redis_connect(url, 2000, &err);
    free(url);
    cr_assert(r, "%s", err.msg);

    struct oflow *a = oflow_new(&e, id, &o);
    struct oflow *b = oflow_new(&e, id, &o);
    int64_t wa = 0, wb = 0;
    /* A runs until its token request is about to go out ... */
    while (oflow_step(a) != OFLOW_STEP_HTTP)
        step_once(a, pg, r, &wa);
    cr_expect_eq(redis_exists(OFLOW_LOCK_PREFIX, id), 1);
    /* ... B meanwhile finds the lock taken and waits ... */
    while (oflow_step(b) != OFLOW_STEP_SLEEP)
        step_once(b, pg, r, &wb);
    for (int i = 0; i < 3; i++)
        step_once(b, pg, r, &wb);
    cr_expect_neq(oflow_step(b), OFLOW_STEP_DONE);
    /* ... then both go on, a step each in turn. */
    int64_t deadline = cs_mono_ms() + 10000;
    while ((oflow_step(a) != OFLOW_STEP_DONE ||
            oflow_step(b) != OFLOW_STEP_DONE) &&
           cs_mono_ms() < deadline) {
        step_once(a, pg, r, &wa);
        step_once(b, pg, r, &wb);
    }
    const struct oflow_result *ra = oflow_result(a), *rb = oflow_result(b);
    cr_expect_eq(ra->status, OFLOW_REFRESHED, "%s", ra->message);
    cr_expect_eq(rb->status, OFLOW_FRESH, "%s", rb->message);
    cr_expect(rb->waited);
    cr_expect_eq(rb->token_requests, 0);
    cr_expect_eq(sb_state(id).requests, 1);
    cr_expect_str_eq(stored(id).refresh, sb_state(id).refresh);
    oflow_free(a);
    oflow_free(b);
    redisFree(r);
    PQfinish(pg);
    free(id);
}
