/*
 * test_oauth_connect.c - connecting an agent with OAuth through
 * callsync-connect: callsyncctl connections authorize-url prints the
 * signed link, callsync-connect redirects to the provider's authorize
 * endpoint (the sandbox's, which redirects back with a code as a user's
 * consent would), and the callback exchanges the code and stores the
 * sealed tokens. Real Redis, PostgreSQL, sandbox and built binaries.
 *
 *   - HubSpot: connected row whose token the worker uses for a job; the
 *     callback replayed is 409 and adds nothing
 *   - Google: PKCE S256, offline access with consent, a refresh token
 *   - Salesforce: PKCE, instance_url stored, the return URL gets
 *     ?connected=<id>
 *   - forged or expired states and links: 400 (403 for an expired link),
 *     nothing written
 *   - access_denied: the error page, nothing written, the state used up
 *   - reconnect: the same connection id, connected, last_error cleared
 *   - a wrong PKCE verifier: the sandbox refuses the code, 502, nothing
 *     written
 */
#include "e2e_support.h"
#include "oauth_link.h"

#define STATE_KEY "connect-test-state-key-0123456789abcdef"

static int connect_port;
static pid_t connect_pid;
static char clients[300], bases[600];

static void setup(void)
{
    e2e_setup("oaconn", 0);
    connect_port = it_free_port();
    snprintf(clients, sizeof(clients),
             "CALLSYNC_OAUTH_CLIENTS=hubspot=hs-client:hs-secret,"
             "google=g-client:g-secret,salesforce=sf-client:sf-secret");
    snprintf(bases, sizeof(bases),
             "CALLSYNC_OAUTH_BASE_URLS=hubspot=http://127.0.0.1:%d/oauth/"
             "hubspot,google=http://127.0.0.1:%d/oauth/google,"
             "salesforce=http://127.0.0.1:%d/oauth/salesforce",
             sandbox_port, sandbox_port, sandbox_port);
    char *env[] = {
        env_kv("CALLSYNC_DATABASE_URL", "%s", db.url),
        env_kv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:%d/0", redis_port),
        env_kv("CALLSYNC_ENCRYPTION_KEYS", "%s", keys),
        env_kv("CALLSYNC_CONNECT_ADDR", "127.0.0.1:%d", connect_port),
        env_kv("CALLSYNC_CONNECT_PUBLIC_URL", "http://127.0.0.1:%d",
               connect_port),
        env_kv("CALLSYNC_CONNECT_STATE_KEY", "%s", STATE_KEY),
        env_kv("CALLSYNC_OAUTH_TIMEOUT_MS", "3000"),
        xstrdup(clients),
        xstrdup(bases),
        env_kv("CALLSYNC_LOG_LEVEL", "info"),
        NULL,
    };
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-connect", NULL};
    char log[200];
    snprintf(log, sizeof(log), "%s/connect.log", dir);
    connect_pid = it_spawn(argv, env, log);
    for (int k = 0; env[k]; k++)
        free(env[k]);
    it_wait_ready(connect_port, 15000);
}

static void teardown(void)
{
    if (connect_pid > 0)
        cr_expect_eq(it_stop(connect_pid, SIGTERM, 10000), 0,
                     "callsync-connect must exit 0 on SIGTERM");
    connect_pid = 0;
    if (!getenv("CS_KEEP_TEST_DIR")) {
        char path[256];
        snprintf(path, sizeof(path), "%s/connect.log", dir);
        it_expect_clean_log(path);
    }
    e2e_teardown();
}

TestSuite(oauth_connect, .init = setup, .fini = teardown, .timeout = 120);

/* ---- Helpers ------------------------------------------------------------- */

/* `callsyncctl connections authorize-url --agent <agent> <args>`. */
static char *ctl_link(const char *args)
{
    char *cmd = xasprintf(
        "CALLSYNC_DATABASE_URL='%s' CALLSYNC_REDIS_URL="
        "'redis://127.0.0.1:%d/0' CALLSYNC_CONNECT_STATE_KEY='%s' "
        "CALLSYNC_CONNECT_PUBLIC_URL='http://127.0.0.1:%d' '%s' connections "
        "authorize-url --agent %s %s",
        db.url, redis_port, STATE_KEY, connect_port,
        CS_BIN_DIR "/callsyncctl", agent, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    free(cmd);
    char out[2048] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "authorize-url failed");
    cr_assert(n > 1 && out[n - 1] == '\n');
    out[n - 1] = '\0';
    return xstrdup(out);
}

/* GET an absolute http://127.0.0.1:PORT/... URL. */
static struct it_resp get_url(const char *url)
{
    int port = 0;
    int off = 0;
    cr_assert(sscanf(url, "http://127.0.0.1:%d%n", &port, &off) == 1,
              "unexpected URL %s", url);
    /* it_get's request buffer is too short for authorize URLs. */
    char *req = xasprintf("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                          url + off, port);
    struct it_resp r;
    cr_assert(it_raw(port, req, strlen(req), &r), "no answer to GET %s", url);
    free(req);
    return r;
}

/* The Location header of an answer (xmalloc'd). */
static char *location(const struct it_resp *r)
{
    const char *h = strcasestr(r->headers, "\r\nLocation: ");
    cr_assert(h, "no Location in %s", r->headers);
    h += 12;
    return xstrndup(h, strcspn(h, "\r\n"));
}

static long long conn_rows(void)
{
    char *n = it_sql(&db, "SELECT count(*)::text FROM "
                          "integration_connections", 0, NULL);
    long long v = atoll(n);
    free(n);
    return v;
}

/* The query parameter of a URL (decoded), xmalloc'd or NULL. */
static char *url_param(const char *url, const char *name)
{
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);
    while (q && *q) {
        q++;
        if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
            const char *v = q + nl + 1;
            size_t n = strcspn(v, "&");
            char *out = xmalloc(n + 1);
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                unsigned int c;
                if (v[i] == '%' && i + 2 < n + 1 &&
                    sscanf(v + i + 1, "%2x", &c) == 1) {
                    out[k++] = (char)c;
                    i += 2;
                } else {
                    out[k++] = v[i] == '+' ? ' ' : v[i];
                }
            }
            out[k] = '\0';
            return out;
        }
        q = strchr(q, '&');
    }
    return NULL;
}

/* Link -> callsync-connect -> sandbox authorize. Returns the callback URL
 * the sandbox redirected to; *authz gets the provider authorize URL. */
static char *start_flow(const char *args, char **authz)
{
    char *link = ctl_link(args);
    struct it_resp r = get_url(link);
    cr_assert_eq(r.status, 302, "authorize: %d %.*s", r.status,
                 (int)r.body_len, r.body);
    char *az = location(&r);
    struct it_resp s = get_url(az);
    cr_assert_eq(s.status, 302, "sandbox authorize: %d %.*s", s.status,
                 (int)s.body_len, s.body);
    char *cb = location(&s);
    free(link);
    if (authz)
        *authz = az;
    else
        free(az);
    return cb;
}

/* Finish a flow asking for JSON; returns the answer. */
static struct it_resp finish_json(const char *cb, json_t **j)
{
    char *u = xasprintf("%s&format=json", cb);
    struct it_resp r = get_url(u);
    free(u);
    *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(*j, "not JSON: %.*s", (int)r.body_len, r.body);
    return r;
}

struct row {
    char type[32], auth[16], status[16], last_error[200], instance[200];
    char access[200], refresh[200];
};

static void open_col(const PGresult *r, int col, char *out, size_t cap)
{
    out[0] = '\0';
    if (PQgetisnull(r, 0, col))
        return;
    struct cs_err err = {0};
    size_t n = 0;
    char *plain = cs_open(kr, PQgetvalue(r, 0, col), &n, &err);
    cr_assert(plain, "%s", err.msg);
    snprintf(out, cap, "%s", plain);
    free(plain);
}

static struct row row_of(const char *id)
{
    const char *p[] = {id};
    PGresult *r = tpg_query(&db,
                            "SELECT integration_type, auth_type, "
                            "connection_status, coalesce(last_error, ''), "
                            "coalesce(instance_url, ''), access_token, "
                            "refresh_token FROM integration_connections "
                            "WHERE id = $1",
                            1, p);
    cr_assert_eq(PQntuples(r), 1);
    struct row w;
    memset(&w, 0, sizeof(w));
    snprintf(w.type, sizeof(w.type), "%s", PQgetvalue(r, 0, 0));
    snprintf(w.auth, sizeof(w.auth), "%s", PQgetvalue(r, 0, 1));
    snprintf(w.status, sizeof(w.status), "%s", PQgetvalue(r, 0, 2));
    snprintf(w.last_error, sizeof(w.last_error), "%s", PQgetvalue(r, 0, 3));
    snprintf(w.instance, sizeof(w.instance), "%s", PQgetvalue(r, 0, 4));
    open_col(r, 5, w.access, sizeof(w.access));
    open_col(r, 6, w.refresh, sizeof(w.refresh));
    PQclear(r);
    return w;
}

/* The sandbox grant made by a code: its access and refresh tokens. */
static void grant_of(const char *code, char *access, char *refresh,
                     long long *api)
{
    char path[300];
    snprintf(path, sizeof(path),
             "/_sandbox/oauth/grants?connection=authorized-%s", code);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    snprintf(access, 200, "%s",
             json_string_value(json_object_get(j, "access_token")));
    snprintf(refresh, 200, "%s",
             json_string_value(json_object_get(j, "refresh_token")));
    if (api)
        *api = json_integer_value(json_object_get(j, "api_requests"));
    json_decref(j);
}

static double metric(const char *sample)
{
    struct it_resp r = it_get(connect_port, "/metrics");
    cr_assert_eq(r.status, 200);
    size_t n = strlen(sample);
    for (const char *p = r.body; p && *p;) {
        if (strncmp(p, sample, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return 0;
}

static bool one_contact(void)
{
    return records("hubspot", "contacts") >= 1;
}

/* ---- Tests --------------------------------------------------------------- */

Test(oauth_connect, hubspot_connects_and_the_worker_uses_the_token)
{
    char *authz = NULL;
    char *cb = start_flow("--type hubspot", &authz);
    cr_expect(strstr(authz, "/oauth/hubspot/oauth/authorize?"), "%s", authz);
    cr_expect(strstr(authz, "client_id=hs-client"));
    cr_expect(strstr(authz, "state="));
    cr_expect(strstr(authz, "scope=oauth%20crm.objects.contacts.read"));
    cr_expect(!strstr(authz, "code_challenge"), "HubSpot takes no PKCE");
    char *code = url_param(cb, "code");
    cr_assert(code);

    json_t *j;
    struct it_resp r = finish_json(cb, &j);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    const char *id = json_string_value(json_object_get(j, "connection_id"));
    cr_assert(id);
    struct row w = row_of(id);
    cr_expect_str_eq(w.type, "hubspot");
    cr_expect_str_eq(w.auth, "oauth");
    cr_expect_str_eq(w.status, "connected");
    char at[200], rt[200];
    grant_of(code, at, rt, NULL);
    cr_expect_str_eq(w.access, at);
    cr_expect_str_eq(w.refresh, rt);
    cr_expect_eq(conn_rows(), 1);

    /* The same callback again: the state is used up. */
    char *again = xasprintf("%s&format=json", cb);
    struct it_resp r2 = get_url(again);
    cr_expect_eq(r2.status, 409, "%.*s", (int)r2.body_len, r2.body);
    cr_expect_eq(conn_rows(), 1);
    cr_expect_eq(metric("callsync_connect_requests_total{step=\"callback\","
                        "outcome=\"replayed\"}"),
                 1);
    cr_expect_eq(metric("callsync_connect_requests_total{step=\"callback\","
                        "outcome=\"connected\"}"),
                 1);

    /* A job of the agent syncs to HubSpot with the new token. */
    worker_env_extra[0] = clients;
    worker_env_extra[1] = bases;
    start_ingest();
    start_worker(4);
    post_calls(0, 1);
    wait_until(one_contact, 30000, "one HubSpot contact");
    long long api = 0;
    grant_of(code, at, rt, &api);
    cr_expect_geq(api, 1, "the job used the connected token");
    free(again);
    json_decref(j);
    free(code);
    free(cb);
    free(authz);
}

Test(oauth_connect, google_uses_pkce_and_offline_consent)
{
    char *authz = NULL;
    char *cb = start_flow("--type google_calendar", &authz);
    cr_expect(strstr(authz, "/oauth/google/o/oauth2/v2/auth?"), "%s", authz);
    cr_expect(strstr(authz, "code_challenge_method=S256"));
    cr_expect(strstr(authz, "code_challenge="));
    cr_expect(strstr(authz, "access_type=offline"));
    cr_expect(strstr(authz, "prompt=consent"));
    char *redirect = url_param(authz, "redirect_uri");
    char want[128];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/oauth/google/callback",
             connect_port);
    cr_expect_str_eq(redirect, want);
    json_t *j;
    struct it_resp r = finish_json(cb, &j);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    const char *id = json_string_value(json_object_get(j, "connection_id"));
    struct row w = row_of(id);
    cr_expect_str_eq(w.type, "google_calendar");
    cr_expect_str_eq(w.status, "connected");
    cr_expect(w.refresh[0], "Google gave a refresh token (offline)");
    char *code = url_param(cb, "code");
    char at[200], rt[200];
    grant_of(code, at, rt, NULL);
    cr_expect_str_eq(w.access, at);
    cr_expect_str_eq(w.refresh, rt);
    json_decref(j);
    free(code);
    free(redirect);
    free(cb);
    free(authz);
}

Test(oauth_connect, salesforce_stores_instance_url_and_returns_to_the_app)
{
    char *authz = NULL;
    char *cb = start_flow("--type salesforce --return "
                          "https://app.example.test/integrations",
                          &authz);
    cr_expect(strstr(authz, "/oauth/salesforce/services/oauth2/authorize?"));
    cr_expect(strstr(authz, "code_challenge_method=S256"));
    struct it_resp r = get_url(cb);
    cr_assert_eq(r.status, 302, "%.*s", (int)r.body_len, r.body);
    char *loc = location(&r);
    cr_assert(strncmp(loc, "https://app.example.test/integrations?connected=",
                      48) == 0,
              "%s", loc);
    const char *id = loc + 48;
    struct row w = row_of(id);
    cr_expect_str_eq(w.type, "salesforce");
    char inst[100];
    snprintf(inst, sizeof(inst), "http://127.0.0.1:%d/salesforce",
             sandbox_port);
    cr_expect_str_eq(w.instance, inst);
    free(loc);
    free(cb);
    free(authz);
}

Test(oauth_connect, forged_or_expired_states_and_links_are_refused)
{
    char *cb = start_flow("--type hubspot", NULL);
    char *code = url_param(cb, "code");
    char *state = url_param(cb, "state");
    /* The state's MAC changed. */
    char forged[128];
    snprintf(forged, sizeof(forged), "%s", state);
    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
    char path[512];
    snprintf(path, sizeof(path),
             "/oauth/hubspot/callback?code=%s&state=%s&format=json", code,
             forged);
    struct it_resp r = it_get(connect_port, path);
    cr_expect_eq(r.status, 400, "%.*s", (int)r.body_len, r.body);
    cr_expect(strstr(r.body, "bad_state"));
    /* A well-signed state that has no record (expired, or never made). */
    char id[33], other[100];
    cr_assert_eq(oauth_state_new(STATE_KEY, id, other), 0);
    snprintf(path, sizeof(path),
             "/oauth/hubspot/callback?code=%s&state=%s&format=json", code,
             other);
    r = it_get(connect_port, path);
    cr_expect_eq(r.status, 400, "%.*s", (int)r.body_len, r.body);
    cr_expect(strstr(r.body, "state_expired"));
    /* The right state on another provider's callback. */
    snprintf(path, sizeof(path),
             "/oauth/google/callback?code=%s&state=%s&format=json", code,
             state);
    r = it_get(connect_port, path);
    cr_expect_eq(r.status, 400, "%.*s", (int)r.body_len, r.body);
    cr_expect(strstr(r.body, "provider_mismatch"));
    cr_expect_eq(conn_rows(), 0);

    /* Links: a changed agent, and one that has expired. */
    char *link = ctl_link("--type hubspot");
    char *tampered = xstrdup(link);
    char *a = strstr(tampered, "agent=") + 6;
    a[0] = a[0] == 'a' ? 'b' : 'a';
    r = get_url(tampered);
    cr_expect_eq(r.status, 400, "%.*s", (int)r.body_len, r.body);
    char pub[64];
    snprintf(pub, sizeof(pub), "http://127.0.0.1:%d", connect_port);
    char *old = oauth_link_make(STATE_KEY, pub, "hubspot", agent, NULL,
                                cs_now_ms() / 1000 - 5);
    r = get_url(old);
    cr_expect_eq(r.status, 403, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(conn_rows(), 0);
    free(old);
    free(tampered);
    free(link);
    free(state);
    free(code);
    free(cb);
}

Test(oauth_connect, access_denied_writes_nothing)
{
    char *cb = start_flow("--type hubspot", NULL);
    char *state = url_param(cb, "state");
    char path[512];
    snprintf(path, sizeof(path),
             "/oauth/hubspot/callback?error=access_denied&"
             "error_description=The+user+denied&state=%s",
             state);
    struct it_resp r = it_get(connect_port, path);
    cr_expect_eq(r.status, 400, "%.*s", (int)r.body_len, r.body);
    cr_expect(strstr(r.body, "access_denied"), "%.*s", (int)r.body_len,
              r.body);
    cr_expect(strstr(r.headers, "text/html"));
    cr_expect_eq(conn_rows(), 0);
    /* The code that the user did not give cannot be used afterwards. */
    r = get_url(cb);
    cr_expect_eq(r.status, 409, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(conn_rows(), 0);
    free(state);
    free(cb);
}

Test(oauth_connect, reconnect_updates_the_same_connection)
{
    char *sealed = cs_seal(kr, "hs-old-at", 9);
    const char *p[] = {agent, org, sealed};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      "organization_id, integration_type, auth_type, "
                      "connection_status, access_token, last_error) "
                      "VALUES ($1, $2, 'hubspot', 'oauth', 'expired', $3, "
                      "'reconnect HubSpot: the refresh token was revoked') "
                      "RETURNING id::text",
                      3, p);
    free(sealed);
    char args[128];
    snprintf(args, sizeof(args), "--type hubspot --connection %s", id);
    char *cb = start_flow(args, NULL);
    json_t *j;
    struct it_resp r = finish_json(cb, &j);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    cr_expect_str_eq(json_string_value(json_object_get(j, "connection_id")),
                     id);
    struct row w = row_of(id);
    cr_expect_str_eq(w.status, "connected");
    cr_expect_str_eq(w.last_error, "");
    cr_expect_str_neq(w.access, "hs-old-at");
    cr_expect(w.refresh[0]);
    cr_expect_eq(conn_rows(), 1);
    json_decref(j);
    free(cb);
    free(id);
}

Test(oauth_connect, wrong_pkce_verifier_is_refused_and_nothing_written)
{
    char *cb = start_flow("--type google", NULL);
    char *state = url_param(cb, "state");
    char key[80];
    snprintf(key, sizeof(key), OAUTH_STATE_PREFIX "{%.32s}", state);
    redisContext *rc2 = redisConnect("127.0.0.1", redis_port);
    cr_assert(rc2 && !rc2->err);
    redisReply *g = redisCommand(rc2, "GET %s", key);
    cr_assert(g && g->type == REDIS_REPLY_STRING);
    json_t *st = json_loads(g->str, 0, NULL);
    freeReplyObject(g);
    /* Another verifier than the one the challenge was made from. */
    char *other = cs_seal(kr, "0123456789012345678901234567890123456789abc",
                          43);
    json_object_set_new(st, "code_verifier", json_string(other));
    char *s = json_dumps(st, JSON_COMPACT);
    redisReply *set = redisCommand(rc2, "SET %s %s KEEPTTL", key, s);
    cr_assert(set && set->type == REDIS_REPLY_STATUS);
    freeReplyObject(set);
    json_t *j;
    struct it_resp r = finish_json(cb, &j);
    cr_expect_eq(r.status, 502, "%.*s", (int)r.body_len, r.body);
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")),
                     "token_refused");
    const char *msg = json_string_value(json_object_get(j, "message"));
    cr_expect(msg && strstr(msg, "invalid code verifier"), "%s", msg);
    cr_expect(!strstr(r.body, "g-secret"));
    cr_expect_eq(conn_rows(), 0);
    json_decref(j);
    free(s);
    free(other);
    json_decref(st);
    redisFree(rc2);
    free(state);
    free(cb);
}
