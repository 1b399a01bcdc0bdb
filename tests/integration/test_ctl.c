/*
 * test_ctl.c - the built callsyncctl against a fresh database: adding and
 * listing organisations, agents and connections, sealed secrets, removal,
 * exit codes, and the cache invalidation it publishes on Redis.
 */
#include "crypto.h"
#include "support_pg.h"

#include <hiredis.h>
#include <stdarg.h>
#include <jansson.h>
#include <sys/wait.h>

#define CTL CS_BIN_DIR "/callsyncctl"
#define API_KEY "pat-na1-11111111-2222-3333-4444-555555555555"
#define WH_SECRET "whsec_test_do_not_print"

static struct tpg db;
static char keys[80];
static char dir[] = "/tmp/cs_ctl_XXXXXX";
static char errpath[64];
static char stderr_text[8192];

static void setup(void)
{
    tpg_setup(&db, "ctl", true);
    unsigned char raw[32];
    cr_assert_eq(cs_random(raw, sizeof(raw)), 0);
    char *b64 = cs_base64_encode(raw, sizeof(raw));
    snprintf(keys, sizeof(keys), "t1:%s", b64);
    free(b64);
    setenv("CALLSYNC_DATABASE_URL", db.url, 1);
    setenv("CALLSYNC_ENCRYPTION_KEYS", keys, 1);
    unsetenv("CALLSYNC_CONFIG_FILE");
    cr_assert(mkdtemp(dir));
    snprintf(errpath, sizeof(errpath), "%s/stderr", dir);
}

static void teardown(void)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    (void)!system(cmd);
    free(cmd);
    tpg_teardown(&db);
}

/*
 * Run callsyncctl with args (shell syntax), return its exit code and its
 * stdout in out (caller frees); stderr lands in stderr_text.
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
    char *cmd = xasprintf("'%s' %s 2>'%s'", CTL, args, errpath);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run '%s'", cmd);
    free(cmd);
    size_t cap = 65536, n = 0;
    char *text = xmalloc(cap);
    size_t got;
    while ((got = fread(text + n, 1, cap - 1 - n, p)) > 0)
        n += got;
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

/* Run a command that prints one id; return it (caller frees). */
static char *ctl_id(const char *what, char *args)
{
    char *out;
    int rc = ctl(&out, "%s", args);
    free(args);
    cr_assert_eq(rc, 0, "%s: exit %d: %s", what, rc, stderr_text);
    size_t n = strlen(out);
    cr_assert(n == 37 && out[36] == '\n', "%s printed '%s'", what, out);
    out[36] = '\0';
    return out;
}

static char *write_file(const char *name, const char *content)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static char *open_sealed(const char *sealed)
{
    struct cs_err err = {0};
    struct cs_keyring *kr = cs_keyring_new(keys, &err);
    cr_assert(kr, "%s", err.msg);
    size_t n;
    char *plain = cs_open(kr, sealed, &n, &err);
    cs_keyring_free(kr);
    cr_assert(plain, "cannot open '%s': %s", sealed, err.msg);
    return plain;
}

static char *add_org_and_agent(char **org_out)
{
    char *org = ctl_id("orgs add", xstrdup("orgs add 'Acme Roofing'"));
    char *agent = ctl_id("agents add",
                         xasprintf("agents add --org %s --name Front "
                                   "--retell-agent-id ag_ctl_%ld --sync-on "
                                   "call_ended --outbound-from +14155550100",
                                   org, (long)getpid()));
    if (org_out)
        *org_out = org;
    else
        free(org);
    return agent;
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 60);

Test(ctl, adds_lists_and_removes_a_connection_without_showing_secrets)
{
    char *agent = add_org_and_agent(NULL);
    char *keyfile = write_file("api_key", API_KEY "\n");
    setenv("CS_TEST_WH_SECRET", WH_SECRET, 1);
    char *out;
    int rc = ctl(&out,
                 "connections add --agent %s --type hubspot "
                 "--api-key-file '%s' --webhook-secret-env CS_TEST_WH_SECRET "
                 "--instance-url https://api.hubapi.com "
                 "--config '{\"pipeline_id\": \"default\"}'",
                 agent, keyfile);
    cr_assert_eq(rc, 0, "%s", stderr_text);
    cr_assert_eq(strlen(out), 37, "printed '%s'", out);
    char conn[37];
    snprintf(conn, sizeof(conn), "%s", out);
    cr_expect(!strstr(stderr_text, API_KEY) && !strstr(stderr_text, WH_SECRET));
    free(out);

    /* list --json: the connection, and nothing secret. */
    rc = ctl(&out, "connections list --agent %s --json", agent);
    cr_assert_eq(rc, 0, "%s", stderr_text);
    cr_expect(!strstr(out, API_KEY) && !strstr(out, WH_SECRET) &&
              !strstr(out, "v1:"), "%s", out);
    json_error_t je;
    json_t *arr = json_loads(out, 0, &je);
    cr_assert(json_is_array(arr), "not JSON: %s", out);
    cr_assert_eq(json_array_size(arr), 1);
    json_t *o = json_array_get(arr, 0);
    cr_expect_str_eq(json_string_value(json_object_get(o, "id")), conn);
    cr_expect_str_eq(json_string_value(json_object_get(o, "agent_id")), agent);
    cr_expect_str_eq(json_string_value(json_object_get(o, "type")), "hubspot");
    cr_expect_str_eq(json_string_value(json_object_get(o, "auth")), "api_key");
    cr_expect_str_eq(json_string_value(json_object_get(o, "status")),
                     "connected");
    cr_expect(json_is_true(json_object_get(o, "active")));
    cr_expect(json_is_true(json_object_get(o, "sync_enabled")));
    cr_expect(json_is_null(json_object_get(o, "last_sync_at")));
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        cr_expect(!strstr(key, "key") && !strstr(key, "token") &&
                  !strstr(key, "secret"), "list shows '%s'", key);
    }
    json_decref(arr);
    free(out);

    /* Stored sealed; opens back to what was given. */
    const char *p[] = {conn};
    PGresult *r = tpg_query(&db,
                            "SELECT api_key, webhook_secret, config->>"
                            "'pipeline_id', organization_id, access_token "
                            "FROM integration_connections WHERE id = $1",
                            1, p);
    cr_assert_eq(PQntuples(r), 1);
    cr_expect(strncmp(PQgetvalue(r, 0, 0), "v1:t1:", 6) == 0);
    cr_expect(!strstr(PQgetvalue(r, 0, 0), API_KEY));
    char *plain = open_sealed(PQgetvalue(r, 0, 0));
    cr_expect_str_eq(plain, API_KEY);
    free(plain);
    plain = open_sealed(PQgetvalue(r, 0, 1));
    cr_expect_str_eq(plain, WH_SECRET);
    free(plain);
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "default");
    cr_expect(PQgetisnull(r, 0, 4));
    PQclear(r);

    /* Soft removal, then hard, then not found. */
    rc = ctl(NULL, "connections remove %s", conn);
    cr_expect_eq(rc, 0, "%s", stderr_text);
    r = tpg_query(&db,
                  "SELECT is_active, connection_status FROM "
                  "integration_connections WHERE id = $1",
                  1, p);
    cr_assert_eq(PQntuples(r), 1);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "f");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "disconnected");
    PQclear(r);
    rc = ctl(NULL, "connections remove %s --hard", conn);
    cr_expect_eq(rc, 0, "%s", stderr_text);
    r = tpg_query(&db, "SELECT 1 FROM integration_connections WHERE id = $1",
                  1, p);
    cr_expect_eq(PQntuples(r), 0);
    PQclear(r);
    cr_expect_eq(ctl(NULL, "connections remove %s", conn), 3);
    free(keyfile);
    free(agent);
}

Test(ctl, update_reconnects_an_expired_connection_in_place)
{
    char *agent = add_org_and_agent(NULL);
    char *k1 = write_file("key1", "pat-na1-old");
    char *k2 = write_file("key2", "pat-na1-new");
    char *conn;
    cr_assert_eq(ctl(&conn, "connections add --agent %s --type hubspot "
                     "--api-key-file '%s' --config '{\"pipeline_id\":\"p1\"}'",
                     agent, k1), 0, "%s", stderr_text);
    conn[strcspn(conn, "\n")] = '\0';
    const char *p[] = {conn};
    PQclear(tpg_query(&db,
                      "UPDATE integration_connections SET connection_status "
                      "= 'expired', last_error = 'token revoked' WHERE id = "
                      "$1",
                      1, p));

    /* New key only: the rest stays, the connection is connected again. */
    cr_assert_eq(ctl(NULL, "connections update %s --api-key-file '%s'", conn,
                     k2), 0, "%s", stderr_text);
    PGresult *r = tpg_query(&db,
                            "SELECT connection_status, last_error IS NULL, "
                            "api_key, config->>'pipeline_id', is_active "
                            "FROM integration_connections WHERE id = $1",
                            1, p);
    cr_assert_eq(PQntuples(r), 1);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "connected");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "t");
    char *plain = open_sealed(PQgetvalue(r, 0, 2));
    cr_expect_str_eq(plain, "pat-na1-new");
    free(plain);
    cr_expect_str_eq(PQgetvalue(r, 0, 3), "p1");
    cr_expect_str_eq(PQgetvalue(r, 0, 4), "t");
    PQclear(r);

    /* Settings only, with an explicit status: the key stays. */
    cr_assert_eq(ctl(NULL, "connections update %s --config "
                     "'{\"pipeline_id\":\"p2\"}' --status error", conn),
                 0, "%s", stderr_text);
    r = tpg_query(&db,
                  "SELECT connection_status, api_key, config->>'pipeline_id' "
                  "FROM integration_connections WHERE id = $1",
                  1, p);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "error");
    plain = open_sealed(PQgetvalue(r, 0, 1));
    cr_expect_str_eq(plain, "pat-na1-new");
    free(plain);
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "p2");
    PQclear(r);

    cr_expect_eq(ctl(NULL, "connections update "
                     "00000000-0000-4000-8000-000000000000 --status "
                     "connected"), 3);
    cr_expect_eq(ctl(NULL, "connections update not-a-uuid"), 2);
    cr_expect_eq(ctl(NULL, "connections update %s --status sleeping", conn),
                 2);
    cr_expect_eq(ctl(NULL, "connections update %s --config '{'", conn), 2);
    free(conn);
    free(k1);
    free(k2);
    free(agent);
}

Test(ctl, reads_a_secret_from_stdin_and_infers_oauth)
{
    char *agent = add_org_and_agent(NULL);
    char *tok = write_file("token", "ya29.token-value");
    char *out;
    int rc = ctl(&out,
                 "connections add --agent %s --type google_calendar "
                 "--access-token-file - --expires-at 2030-01-02T03:04:05Z "
                 "< '%s'",
                 agent, tok);
    cr_assert_eq(rc, 0, "%s", stderr_text);
    out[strcspn(out, "\n")] = '\0';
    const char *p[] = {out};
    PGresult *r = tpg_query(&db,
                            "SELECT access_token, auth_type, "
                            "token_expires_at = '2030-01-02T03:04:05Z' "
                            "FROM integration_connections WHERE id = $1",
                            1, p);
    cr_assert_eq(PQntuples(r), 1);
    char *plain = open_sealed(PQgetvalue(r, 0, 0));
    cr_expect_str_eq(plain, "ya29.token-value");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "oauth");
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "t");
    free(plain);
    PQclear(r);
    free(out);
    free(tok);
    free(agent);
}

Test(ctl, exit_codes)
{
    char *org = NULL;
    char *agent = add_org_and_agent(&org);
    cr_expect_eq(ctl(NULL, "--help"), 0);
    cr_expect_eq(ctl(NULL, "connections add --help"), 0);
    cr_expect_eq(ctl(NULL, "frobnicate"), 2);
    cr_expect_eq(ctl(NULL, "orgs list --bogus"), 2);
    cr_expect_eq(ctl(NULL, "connections add --agent %s --type myspace",
                     agent), 2);
    cr_expect(strstr(stderr_text, "unknown connection type 'myspace'"),
              "%s", stderr_text);
    cr_expect_eq(ctl(NULL, "connections add --agent %s --type zapier "
                     "--webhook-url ftp://example.com/x", agent), 2);
    cr_expect_eq(ctl(NULL, "connections add --agent %s --type zapier "
                     "--config '[1, 2]'", agent), 2);
    cr_expect_eq(ctl(NULL, "connections add --agent %s --type zapier "
                     "--config '{bad'", agent), 2);
    cr_expect_eq(ctl(NULL, "connections add --agent %s --type stripe "
                     "--api-key-env CS_TEST_NOT_SET", agent), 2);
    cr_expect_eq(ctl(NULL, "connections add --agent not-a-uuid --type "
                     "zapier"), 2);
    cr_expect_eq(ctl(NULL, "agents add --org %s --name X --outbound-from "
                     "4155550100", org), 2);
    cr_expect_eq(ctl(NULL, "connections add --agent "
                     "00000000-0000-4000-8000-000000000000 --type zapier "
                     "--webhook-url https://hooks.zapier.com/x"), 3);
    cr_expect(strstr(stderr_text, "agent '00000000-0000-4000-8000-"
                     "000000000000' not found"), "%s", stderr_text);
    cr_expect_eq(ctl(NULL, "agents add --org "
                     "00000000-0000-4000-8000-000000000000 --name X"), 3);
    free(org);
    free(agent);
}

Test(ctl, unreachable_database_exits_1)
{
    setenv("CALLSYNC_DATABASE_URL", "postgresql://callsync@127.0.0.1:1/none",
           1);
    cr_expect_eq(ctl(NULL, "orgs list"), 1);
    cr_expect(strstr(stderr_text, "cannot connect to PostgreSQL"), "%s",
              stderr_text);
    cr_expect_eq(ctl(NULL, "migrate"), 1);
}

Test(ctl, list_json_shows_every_agent)
{
    char *org = NULL;
    char *agent = add_org_and_agent(&org);
    char *out;
    cr_assert_eq(ctl(&out, "agents list --org %s --json", org), 0);
    json_t *arr = json_loads(out, 0, NULL);
    cr_assert(json_is_array(arr) && json_array_size(arr) == 1, "%s", out);
    json_t *a = json_array_get(arr, 0);
    cr_expect_str_eq(json_string_value(json_object_get(a, "id")), agent);
    cr_expect_str_eq(json_string_value(json_object_get(a, "sync_on")),
                     "call_ended");
    cr_expect_str_eq(
        json_string_value(json_object_get(a, "outbound_from_number")),
        "+14155550100");
    json_decref(arr);
    free(out);
    cr_assert_eq(ctl(&out, "orgs list"), 0);
    cr_expect(strstr(out, "Acme Roofing"), "%s", out);
    free(out);
    free(org);
    free(agent);
}

Test(ctl, outbound_webhook_secret_is_generated_then_replaced)
{
    char *agent = add_org_and_agent(NULL);
    char *out;
    cr_assert_eq(ctl(&out, "webhooks set-outbound --agent %s --generate",
                     agent), 0, "%s", stderr_text);
    out[strcspn(out, "\n")] = '\0';
    cr_expect_eq(strlen(out), 64, "secret '%s'", out);
    const char *p[] = {agent};
    PGresult *r = tpg_query(&db,
                            "SELECT webhook_secret FROM integration_webhooks "
                            "WHERE agent_id = $1",
                            1, p);
    cr_assert_eq(PQntuples(r), 1);
    char *plain = open_sealed(PQgetvalue(r, 0, 0));
    cr_expect_str_eq(plain, out);
    free(plain);
    PQclear(r);
    free(out);

    setenv("CS_TEST_OUTBOUND", "replaced-secret", 1);
    cr_assert_eq(ctl(&out, "webhooks set-outbound --agent %s --secret-env "
                     "CS_TEST_OUTBOUND --callback-url https://crm.example/cb",
                     agent), 0, "%s", stderr_text);
    cr_expect(!strstr(out, "replaced-secret"), "%s", out);
    free(out);
    r = tpg_query(&db,
                  "SELECT webhook_secret, callback_url FROM "
                  "integration_webhooks WHERE agent_id = $1",
                  1, p);
    cr_assert_eq(PQntuples(r), 1, "upsert keeps one row");
    plain = open_sealed(PQgetvalue(r, 0, 0));
    cr_expect_str_eq(plain, "replaced-secret");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "https://crm.example/cb");
    free(plain);
    PQclear(r);
    cr_expect_eq(ctl(NULL, "webhooks set-outbound --agent %s", agent), 2);
    free(agent);
}

/* Connect to CALLSYNC_REDIS_URL (redis://host:port[/db]) or skip. */
static redisContext *redis_or_skip(void)
{
    const char *url = getenv("CALLSYNC_REDIS_URL");
    if (!url || strncmp(url, "redis://", 8) != 0)
        cr_skip_test("CALLSYNC_REDIS_URL is not set");
    char host[128] = "127.0.0.1";
    int port = 6379;
    const char *h = url + 8;
    size_t hl = strcspn(h, ":/");
    snprintf(host, sizeof(host), "%.*s", (int)hl, h);
    if (h[hl] == ':')
        port = atoi(h + hl + 1);
    struct timeval tv = {3, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    cr_assert(c && !c->err, "cannot connect to Redis at '%s'", url);
    redisSetTimeout(c, tv);
    return c;
}

/* Wait up to 3 s for agent on cs:cache:connections. */
static bool saw_publish(redisContext *c, const char *agent)
{
    for (int i = 0; i < 20; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return false;
        bool hit = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                   strcmp(r->element[0]->str, "message") == 0 &&
                   strcmp(r->element[2]->str, agent) == 0;
        freeReplyObject(r);
        if (hit)
            return true;
    }
    return false;
}

Test(ctl, changes_are_published_for_the_agent)
{
    redisContext *sub = redis_or_skip();
    redisReply *r = redisCommand(sub, "SUBSCRIBE cs:cache:connections");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    freeReplyObject(r);

    char *agent = add_org_and_agent(NULL);
    cr_expect(saw_publish(sub, agent), "agents add published nothing");
    char *out;
    cr_assert_eq(ctl(&out, "connections add --agent %s --type zapier "
                     "--webhook-url https://hooks.zapier.com/hooks/catch/1/a",
                     agent), 0, "%s", stderr_text);
    cr_expect(saw_publish(sub, agent), "connections add published nothing");
    out[strcspn(out, "\n")] = '\0';
    cr_assert_eq(ctl(NULL, "connections remove %s", out), 0);
    cr_expect(saw_publish(sub, agent), "connections remove published "
              "nothing");
    free(out);
    free(agent);
    redisFree(sub);
}

Test(ctl, unreachable_redis_is_only_a_warning)
{
    setenv("CALLSYNC_REDIS_URL", "redis://127.0.0.1:1/0", 1);
    char *agent = add_org_and_agent(NULL);
    cr_expect(strstr(stderr_text, "warning: cannot tell ingest"), "%s",
              stderr_text);
    free(agent);
}
