/*
 * test_sandbox.c - the built callsync-sandbox on a free port: HubSpot
 * contacts, notes, search, enrolment, auth and rate limit; Zapier, Retell
 * and custom REST answers; fault rules; the /_sandbox control API; and 500
 * concurrent keep-alive connections. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>
#include <regex.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define TOKEN "pat-na1-sandbox-token"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

/* Start the sandbox with extra arguments (NULL-terminated) and read the
 * port from the line it prints on stdout. */
static void start(const char *const *extra)
{
    const char *argv[32] = {SANDBOX, "--port", "0", "--hubspot-token", TOKEN,
                            "--seed", "7"};
    size_t n = 7;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sandbox_%d.log", (int)getpid());
    unlink(sb_log);

    /* The child inherits our stdout: point it at a pipe while spawning. */
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
    cr_assert(sb_port > 0);
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

static void setup(void)
{
    start(NULL);
}

TestSuite(sandbox, .init = setup, .fini = stop, .timeout = 60);
/* Tests that start the sandbox with their own options. */
TestSuite(sandbox_opts, .fini = stop, .timeout = 60);

/* ---- HTTP and JSON helpers ---------------------------------------------- */

static char *request_text(const char *method, const char *path,
                          const char *headers, const char *body)
{
    return xasprintf("%s %s HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     method, path, body ? strlen(body) : 0,
                     headers ? headers : "", body ? body : "");
}

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *text = request_text(method, path, headers, body);
    struct it_resp r;
    bool ok = it_raw(sb_port, text, strlen(text), &r);
    free(text);
    cr_assert(ok, "no answer to %s %s", method, path);
    return r;
}

static json_t *jbody(const struct it_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    cr_assert(j, "answer is not JSON (%s): %.*s", e.text, (int)r->body_len,
              r->body);
    return j;
}

/* The value of a response header into out (empty when absent). */
static const char *hdr(const struct it_resp *r, const char *name,
                       char out[128])
{
    char key[96];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strstr(r->headers, key);
    out[0] = '\0';
    if (p) {
        p += strlen(key);
        size_t n = strcspn(p, "\r");
        if (n > 127)
            n = 127;
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

static bool matches(const char *s, const char *pattern)
{
    regex_t re;
    cr_assert(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) == 0);
    bool ok = s && regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

#define UUID_RE                                                              \
    "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
#define ISO_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"

/* Remove key from o after checking it matches pattern; returns its value
 * (borrowed until o is freed, so it is copied into out). */
static void take(json_t *o, const char *key, const char *pattern,
                 char out[64])
{
    const char *v = json_string_value(json_object_get(o, key));
    cr_assert(v, "missing string '%s'", key);
    cr_expect(matches(v, pattern), "'%s' = '%s' does not match %s", key, v,
              pattern);
    if (out)
        snprintf(out, 64, "%s", v);
    json_object_del(o, key);
}

/* Assert got equals the JSON text want; steals got. */
static void expect_json(json_t *got, const char *want)
{
    json_error_t e;
    json_t *w = json_loads(want, 0, &e);
    cr_assert(w, "bad expected JSON: %s", e.text);
    char *gs = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
    cr_expect(json_equal(got, w), "got  %s\nwant %s", gs, ws);
    free(gs);
    free(ws);
    json_decref(w);
    json_decref(got);
}

/* A HubSpot error body: checks and removes correlationId, then compares. */
static void expect_hs_error(const struct it_resp *r, int status,
                            const char *want)
{
    cr_expect_eq(r->status, status, "status %d, body %.*s", r->status,
                 (int)r->body_len, r->body);
    json_t *j = jbody(r);
    take(j, "correlationId", UUID_RE, NULL);
    expect_json(j, want);
}

/* Strip the server-set times from a HubSpot object, checking they agree,
 * and return it for comparison. */
static json_t *strip_times(json_t *o, bool contact_like)
{
    char created[64], updated[64], pc[64], pm[64];
    take(o, "createdAt", ISO_RE, created);
    take(o, "updatedAt", ISO_RE, updated);
    json_t *props = json_object_get(o, "properties");
    take(props, contact_like ? "createdate" : "hs_createdate", ISO_RE, pc);
    take(props, contact_like ? "lastmodifieddate" : "hs_lastmodifieddate",
         ISO_RE, pm);
    cr_expect_str_eq(created, pc);
    cr_expect_str_eq(updated, pm);
    return o;
}

static json_t *get_json(const char *path)
{
    struct it_resp r = req("GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %d %.*s", path, r.status,
                 (int)r.body_len, r.body);
    return jbody(&r);
}

static void set_faults(const char *rules)
{
    struct it_resp r = req("POST", "/_sandbox/faults", NULL, rules);
    cr_assert_eq(r.status, 200, "faults refused: %.*s", (int)r.body_len,
                 r.body);
}

static const char *const CONTACT =
    "{\"properties\":{\"email\":\"ada@example.com\",\"firstname\":\"Ada\","
    "\"lastname\":\"Lovelace\",\"phone\":\"+14155550100\"}}";

/* ---- HubSpot ------------------------------------------------------------ */

Test(sandbox, hubspot_contact_create_search_patch_conflict)
{
    struct it_resp r =
        req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    char v[128];
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Max", v), "100");
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Remaining", v), "99");
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Interval-Milliseconds", v),
                     "10000");
    expect_json(strip_times(jbody(&r), true),
                "{\"id\":\"1001\",\"archived\":false,\"properties\":{"
                "\"email\":\"ada@example.com\",\"firstname\":\"Ada\","
                "\"lastname\":\"Lovelace\",\"phone\":\"+14155550100\","
                "\"hs_object_id\":\"1001\"}}");

    /* Same email, other case: HubSpot's conflict. */
    r = req("POST", "/hubspot/crm/v3/objects/contacts", AUTH,
            "{\"properties\":{\"email\":\"ADA@example.com\"}}");
    expect_hs_error(&r, 409,
                    "{\"status\":\"error\",\"message\":\"Contact already "
                    "exists. Existing ID: 1001\",\"category\":\"CONFLICT\"}");

    /* Unknown property and bad email: VALIDATION_ERROR with both. */
    r = req("POST", "/hubspot/crm/v3/objects/contacts", AUTH,
            "{\"properties\":{\"favourite_colour\":\"red\"}}");
    expect_hs_error(
        &r, 400,
        "{\"status\":\"error\",\"category\":\"VALIDATION_ERROR\","
        "\"message\":\"Property values were not valid: [{\\\"isValid\\\":"
        "false,\\\"message\\\":\\\"Property \\\\\\\"favourite_colour\\\\\\\" "
        "does not exist\\\",\\\"error\\\":\\\"PROPERTY_DOESNT_EXIST\\\","
        "\\\"name\\\":\\\"favourite_colour\\\",\\\"localizedErrorMessage\\\":"
        "\\\"Property \\\\\\\"favourite_colour\\\\\\\" does not exist\\\"}]\","
        "\"errors\":[{\"message\":\"Property \\\"favourite_colour\\\" does "
        "not exist\",\"code\":\"PROPERTY_DOESNT_EXIST\",\"context\":{"
        "\"propertyName\":[\"favourite_colour\"]}}]}");
    r = req("POST", "/hubspot/crm/v3/objects/contacts", AUTH,
            "{\"properties\":{\"email\":\"not-an-email\"}}");
    cr_expect_eq(r.status, 400);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "category")),
                     "VALIDATION_ERROR");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "errors"), 0),
                         "code")),
                     "INVALID_EMAIL");
    json_decref(j);
    r = req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, "{not json");
    cr_expect_eq(r.status, 400);

    /* Search by email, other case: the default properties come back. */
    r = req("POST", "/hubspot/crm/v3/objects/contacts/search", AUTH,
            "{\"filterGroups\":[{\"filters\":[{\"propertyName\":\"email\","
            "\"operator\":\"EQ\",\"value\":\"Ada@Example.com\"}]}],"
            "\"limit\":10,\"after\":\"0\",\"sorts\":[],\"properties\":[]}");
    cr_assert_eq(r.status, 200);
    j = jbody(&r);
    strip_times(json_array_get(json_object_get(j, "results"), 0), true);
    expect_json(j, "{\"total\":1,\"results\":[{\"id\":\"1001\","
                   "\"archived\":false,\"properties\":{\"email\":"
                   "\"ada@example.com\",\"firstname\":\"Ada\",\"lastname\":"
                   "\"Lovelace\",\"hs_object_id\":\"1001\"}}]}");

    /* Search with named properties, one of them unset. */
    r = req("POST", "/hubspot/crm/v3/objects/contacts/search", AUTH,
            "{\"filterGroups\":[{\"filters\":[{\"propertyName\":\"phone\","
            "\"operator\":\"EQ\",\"value\":\"+14155550100\"}]}],"
            "\"properties\":[\"phone\",\"company\"]}");
    j = jbody(&r);
    strip_times(json_array_get(json_object_get(j, "results"), 0), true);
    expect_json(j, "{\"total\":1,\"results\":[{\"id\":\"1001\","
                   "\"archived\":false,\"properties\":{\"phone\":"
                   "\"+14155550100\",\"company\":null,\"hs_object_id\":"
                   "\"1001\"}}]}");

    /* PATCH, then GET with ?properties=. */
    r = req("PATCH", "/hubspot/crm/v3/objects/contacts/1001", AUTH,
            "{\"properties\":{\"firstname\":\"Augusta\","
            "\"company\":\"Analytical Engines\"}}");
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    expect_json(strip_times(jbody(&r), true),
                "{\"id\":\"1001\",\"archived\":false,\"properties\":{"
                "\"email\":\"ada@example.com\",\"firstname\":\"Augusta\","
                "\"lastname\":\"Lovelace\",\"phone\":\"+14155550100\","
                "\"company\":\"Analytical Engines\",\"hs_object_id\":"
                "\"1001\"}}");
    r = req("GET", "/hubspot/crm/v3/objects/contacts/1001?properties=company",
            AUTH, NULL);
    cr_assert_eq(r.status, 200);
    expect_json(strip_times(jbody(&r), true),
                "{\"id\":\"1001\",\"archived\":false,\"properties\":{"
                "\"company\":\"Analytical Engines\",\"hs_object_id\":"
                "\"1001\"}}");

    /* Unknown ids. */
    r = req("GET", "/hubspot/crm/v3/objects/contacts/999", AUTH, NULL);
    expect_hs_error(&r, 404,
                    "{\"status\":\"error\",\"message\":\"resource not "
                    "found\",\"category\":\"OBJECT_NOT_FOUND\"}");
    r = req("PATCH", "/hubspot/crm/v3/objects/contacts/999", AUTH,
            "{\"properties\":{\"firstname\":\"X\"}}");
    expect_hs_error(&r, 404,
                    "{\"status\":\"error\",\"message\":\"resource not "
                    "found\",\"category\":\"OBJECT_NOT_FOUND\"}");
}

Test(sandbox, hubspot_notes_record_associations)
{
    struct it_resp r =
        req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT);
    cr_assert_eq(r.status, 201);
    static const char note[] =
        "{\"properties\":{\"hs_timestamp\":\"2026-03-01T10:00:00.000Z\","
        "\"hs_note_body\":\"Call summary: wants a demo\"},"
        "\"associations\":[{\"to\":{\"id\":\"1001\"},\"types\":[{"
        "\"associationCategory\":\"HUBSPOT_DEFINED\","
        "\"associationTypeId\":202}]}]}";
    r = req("POST", "/hubspot/crm/v3/objects/notes", AUTH, note);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    expect_json(strip_times(jbody(&r), false),
                "{\"id\":\"1002\",\"archived\":false,\"properties\":{"
                "\"hs_timestamp\":\"2026-03-01T10:00:00.000Z\","
                "\"hs_note_body\":\"Call summary: wants a demo\","
                "\"hs_object_id\":\"1002\"}}");

    json_t *recs = get_json("/_sandbox/records?provider=hubspot&type=notes");
    json_t *rec = json_array_get(json_object_get(recs, "records"), 0);
    cr_assert(rec);
    cr_expect(json_integer_value(json_object_get(rec, "received_at_ms")) >
              1700000000000LL);
    expect_json(json_incref(json_object_get(rec, "associations")),
                "[{\"to\":{\"id\":\"1001\"},\"types\":[{"
                "\"associationCategory\":\"HUBSPOT_DEFINED\","
                "\"associationTypeId\":202}]}]");
    cr_expect_eq(json_array_size(json_object_get(recs, "records")), 1);
    json_decref(recs);

    /* The same for meetings and deals. */
    r = req("POST", "/hubspot/crm/v3/objects/meetings", AUTH,
            "{\"properties\":{\"hs_timestamp\":\"2026-03-02T09:00:00Z\","
            "\"hs_meeting_title\":\"Demo\"},\"associations\":[{\"to\":{"
            "\"id\":1001},\"types\":[{\"associationCategory\":"
            "\"HUBSPOT_DEFINED\",\"associationTypeId\":200}]}]}");
    cr_expect_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    r = req("POST", "/hubspot/crm/v3/objects/deals", AUTH,
            "{\"properties\":{\"dealname\":\"Ada - demo\",\"amount\":1500,"
            "\"dealstage\":\"appointmentscheduled\"}}");
    cr_expect_eq(r.status, 201);
    json_t *deal = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(deal, "properties"), "amount")),
                     "1500");
    json_decref(deal);
    recs = get_json("/_sandbox/records?provider=hubspot&type=meetings");
    expect_json(json_incref(json_object_get(
                    json_array_get(json_object_get(recs, "records"), 0),
                    "associations")),
                "[{\"to\":{\"id\":\"1001\"},\"types\":[{"
                "\"associationCategory\":\"HUBSPOT_DEFINED\","
                "\"associationTypeId\":200}]}]");
    json_decref(recs);
    r = req("GET", "/hubspot/crm/v3/objects/notes/1002", AUTH, NULL);
    cr_expect_eq(r.status, 200);

    /* An engagement needs hs_timestamp; a target must exist. */
    r = req("POST", "/hubspot/crm/v3/objects/notes", AUTH,
            "{\"properties\":{\"hs_note_body\":\"x\"}}");
    cr_expect_eq(r.status, 400);
    r = req("POST", "/hubspot/crm/v3/objects/notes", AUTH,
            "{\"properties\":{\"hs_timestamp\":\"2026-03-01T10:00:00Z\"},"
            "\"associations\":[{\"to\":{\"id\":\"424242\"},\"types\":[{"
            "\"associationCategory\":\"HUBSPOT_DEFINED\","
            "\"associationTypeId\":202}]}]}");
    expect_hs_error(&r, 400,
                    "{\"status\":\"error\",\"message\":\"One or more "
                    "associations are invalid\",\"category\":"
                    "\"VALIDATION_ERROR\",\"errors\":[{\"message\":\"No "
                    "object with ID 424242 exists\",\"code\":"
                    "\"INVALID_ASSOCIATION\"}]}");
    recs = get_json("/_sandbox/records?type=notes");
    cr_expect_eq(json_array_size(json_object_get(recs, "records")), 1);
    json_decref(recs);
}

static long long search_total(const char *body, json_t **out)
{
    struct it_resp r =
        req("POST", "/hubspot/crm/v3/objects/contacts/search", AUTH, body);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    long long n = json_integer_value(json_object_get(j, "total"));
    if (out)
        *out = j;
    else
        json_decref(j);
    return n;
}

Test(sandbox, hubspot_search_operators)
{
    static const char *const people[] = {
        "{\"properties\":{\"email\":\"j.roberts@example.com\",\"lastname\":"
        "\"Roberts\",\"city\":\"Leeds\"}}",
        "{\"properties\":{\"email\":\"k.robinson@example.com\",\"lastname\":"
        "\"Robinson\"}}",
        "{\"properties\":{\"email\":\"m.smith@example.com\",\"lastname\":"
        "\"Smith\",\"city\":\"Leeds\"}}"};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(req("POST", "/hubspot/crm/v3/objects/contacts", AUTH,
                         people[i])
                         .status,
                     201);
    json_t *j;
    cr_expect_eq(search_total("{\"filterGroups\":[{\"filters\":[{"
                              "\"propertyName\":\"lastname\",\"operator\":"
                              "\"CONTAINS_TOKEN\",\"value\":\"ROB\"}]}],"
                              "\"properties\":[\"lastname\"]}",
                              &j),
                 2);
    json_t *res = json_object_get(j, "results");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(res, 0), "properties"),
                         "lastname")),
                     "Roberts");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(res, 1), "properties"),
                         "lastname")),
                     "Robinson");
    cr_expect_null(json_object_get(j, "paging"));
    json_decref(j);
    /* AND inside a group. */
    cr_expect_eq(search_total("{\"filterGroups\":[{\"filters\":["
                              "{\"propertyName\":\"lastname\",\"operator\":"
                              "\"CONTAINS_TOKEN\",\"value\":\"*rob*\"},"
                              "{\"propertyName\":\"city\",\"operator\":"
                              "\"HAS_PROPERTY\"}]}]}",
                              NULL),
                 1);
    /* OR across groups. */
    cr_expect_eq(search_total("{\"filterGroups\":["
                              "{\"filters\":[{\"propertyName\":\"email\","
                              "\"operator\":\"EQ\",\"value\":"
                              "\"m.smith@example.com\"}]},"
                              "{\"filters\":[{\"propertyName\":\"lastname\","
                              "\"operator\":\"EQ\",\"value\":\"Robinson\"}]}"
                              "]}",
                              NULL),
                 2);
    cr_expect_eq(search_total("{\"filterGroups\":[{\"filters\":[{"
                              "\"propertyName\":\"city\",\"operator\":"
                              "\"NEQ\",\"value\":\"Leeds\"}]}]}",
                              NULL),
                 1);
    cr_expect_eq(search_total("{\"filterGroups\":[{\"filters\":[{"
                              "\"propertyName\":\"email\",\"operator\":"
                              "\"EQ\",\"value\":\"nobody@example.com\"}]}]}",
                              &j),
                 0);
    expect_json(j, "{\"total\":0,\"results\":[]}");
    /* Paging. */
    cr_expect_eq(search_total("{\"limit\":2}", &j), 3);
    cr_expect_eq(json_array_size(json_object_get(j, "results")), 2);
    expect_json(json_incref(json_object_get(j, "paging")),
                "{\"next\":{\"after\":\"2\",\"link\":\"?after=2\"}}");
    json_decref(j);
    cr_expect_eq(search_total("{\"limit\":2,\"after\":\"2\"}", &j), 3);
    cr_expect_eq(json_array_size(json_object_get(j, "results")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "results"), 0),
                         "id")),
                     "1003");
    json_decref(j);
    /* Unknown operator. */
    struct it_resp r =
        req("POST", "/hubspot/crm/v3/objects/contacts/search", AUTH,
            "{\"filterGroups\":[{\"filters\":[{\"propertyName\":\"email\","
            "\"operator\":\"LIKE\",\"value\":\"x\"}]}]}");
    expect_hs_error(&r, 400,
                    "{\"status\":\"error\",\"message\":\"unknown filter "
                    "operator\",\"category\":\"VALIDATION_ERROR\"}");
}

Test(sandbox, hubspot_workflow_enrollment)
{
    cr_assert_eq(
        req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT).status,
        201);
    struct it_resp r = req(
        "POST",
        "/hubspot/automation/v2/workflows/5150/enrollments/contacts/"
        "ada%40example.com",
        AUTH, NULL);
    cr_expect_eq(r.status, 204);
    cr_expect_eq(r.body_len, 0);
    r = req("POST",
            "/hubspot/automation/v2/workflows/5150/enrollments/contacts/"
            "nobody@example.com",
            AUTH, NULL);
    expect_hs_error(&r, 404,
                    "{\"status\":\"error\",\"message\":\"Contact does not "
                    "exist\",\"category\":\"OBJECT_NOT_FOUND\"}");
    json_t *recs = get_json("/_sandbox/records?provider=hubspot&type="
                            "enrollments");
    json_t *rec = json_array_get(json_object_get(recs, "records"), 0);
    json_object_del(rec, "received_at_ms");
    expect_json(json_incref(json_object_get(recs, "records")),
                "[{\"workflow_id\":\"5150\",\"email\":\"ada@example.com\","
                "\"contact_id\":\"1001\"}]");
    json_decref(recs);
}

Test(sandbox, hubspot_auth_401)
{
    static const char want[] =
        "{\"status\":\"error\",\"message\":\"Authentication credentials not "
        "found. This API supports OAuth 2.0 authentication and you can find "
        "more details at "
        "https://developers.hubspot.com/docs/methods/auth/oauth-overview\","
        "\"category\":\"INVALID_AUTHENTICATION\"}";
    struct it_resp r =
        req("POST", "/hubspot/crm/v3/objects/contacts", NULL, CONTACT);
    expect_hs_error(&r, 401, want);
    char v[128];
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Max", v), "100");
    r = req("GET", "/hubspot/crm/v3/objects/contacts/1001",
            "Authorization: Bearer wrong-token\r\n", NULL);
    expect_hs_error(&r, 401, want);
    json_t *recs = get_json("/_sandbox/records?provider=hubspot&type="
                            "contacts");
    expect_json(recs, "{\"records\":[]}");
}

Test(sandbox_opts, hubspot_rate_limit_429)
{
    const char *const extra[] = {"--hubspot-rate", "3", NULL};
    start(extra);
    char v[128];
    for (int i = 0; i < 3; i++) {
        struct it_resp r = req("GET", "/hubspot/crm/v3/objects/contacts/1",
                               AUTH, NULL);
        cr_expect_eq(r.status, 404);
        cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Remaining", v),
                         i == 0 ? "2" : i == 1 ? "1" : "0");
    }
    struct it_resp r =
        req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT);
    cr_expect_eq(r.status, 429);
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Max", v), "3");
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Remaining", v), "0");
    cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Interval-Milliseconds", v),
                     "10000");
    json_t *j = jbody(&r);
    take(j, "correlationId", UUID_RE, NULL);
    expect_json(j, "{\"status\":\"error\",\"message\":\"You have reached "
                   "your ten_secondly_rolling limit.\",\"errorType\":"
                   "\"RATE_LIMIT\",\"policyName\":\"TEN_SECONDLY_ROLLING\"}");
    /* Nothing was stored, and the request log shows the 429. */
    json_t *recs = get_json("/_sandbox/records?provider=hubspot&type="
                            "contacts");
    expect_json(recs, "{\"records\":[]}");
    json_t *st = get_json("/_sandbox/stats");
    expect_json(json_incref(json_object_get(
                    json_object_get(st, "providers"), "hubspot")),
                "{\"total\":4,\"by_status\":{\"404\":3,\"429\":1}}");
    json_decref(st);
}

/* ---- Zapier, Retell, custom --------------------------------------------- */

Test(sandbox, zapier_catch_hook)
{
    static const char *const paths[] = {"/zapier/hooks/catch/123/abcdef/",
                                        "/zapier/hooks/catch/123/abcdef"};
    for (size_t i = 0; i < 2; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"call_id\":\"c%zu\",\"n\":%zu}", i, i);
        struct it_resp r = req(i ? "PUT" : "POST", paths[i], NULL, body);
        cr_expect_eq(r.status, 200);
        json_t *j = jbody(&r);
        take(j, "attempt", UUID_RE, NULL);
        take(j, "id", UUID_RE, NULL);
        take(j, "request_id", UUID_RE, NULL);
        expect_json(j, "{\"status\":\"success\"}");
    }
    json_t *recs = get_json("/_sandbox/records?provider=zapier&type=hooks");
    json_t *list = json_object_get(recs, "records");
    cr_assert_eq(json_array_size(list), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *rec = json_array_get(list, i);
        cr_expect_str_eq(json_string_value(json_object_get(rec, "account")),
                         "123");
        cr_expect_str_eq(json_string_value(json_object_get(rec, "hook")),
                         "abcdef");
        cr_expect_str_eq(json_string_value(json_object_get(rec, "method")),
                         i ? "PUT" : "POST");
    }
    expect_json(json_incref(json_object_get(json_array_get(list, 0), "body")),
                "{\"call_id\":\"c0\",\"n\":0}");
    expect_json(json_incref(json_object_get(json_array_get(list, 1), "body")),
                "{\"call_id\":\"c1\",\"n\":1}");
    json_decref(recs);
    cr_expect_eq(req("GET", "/zapier/hooks/catch/123/abcdef/", NULL, NULL)
                     .status,
                 405);
}

/* A hook record keeps the request's Idempotency-Key, so a count of
 * records against distinct keys shows duplicate deliveries. */
Test(sandbox, zapier_duplicates_counted_by_idempotency_key)
{
    static const char *const keys[] = {"job1:hook", "job2:hook", "job1:hook",
                                        NULL};
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        char *h = keys[i] ? xasprintf("Idempotency-Key: %s\r\n", keys[i])
                          : NULL;
        cr_expect_eq(req("POST", "/zapier/hooks/catch/1/h/", h, "{}").status,
                     200);
        free(h);
    }
    expect_json(get_json("/_sandbox/records?provider=zapier&type=hooks&"
                         "count=1&distinct=idempotency_key"),
                "{\"count\":4,\"distinct\":2}");
    json_t *recs = get_json("/_sandbox/records?provider=zapier");
    json_t *list = json_object_get(recs, "records");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(list, 0), "idempotency_key")),
                     "job1:hook");
    cr_expect(json_is_null(json_object_get(json_array_get(list, 3),
                                           "idempotency_key")),
              "a hook without the header records null");
    json_decref(recs);
}

Test(sandbox, retell_create_phone_call)
{
    static const char body[] =
        "{\"from_number\":\"+14155550100\",\"to_number\":\"+14155550123\","
        "\"override_agent_id\":\"agent_abc\",\"metadata\":{\"job\":\"j1\"},"
        "\"retell_llm_dynamic_variables\":{\"name\":\"Ada\"}}";
    struct it_resp r = req("POST", "/retell/v2/create-phone-call",
                           "Authorization: Bearer key_test\r\n", body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    take(j, "call_id", "^[A-Za-z0-9]{32}$", NULL);
    expect_json(j, "{\"agent_id\":\"agent_abc\",\"agent_version\":1,"
                   "\"call_status\":\"registered\",\"call_type\":"
                   "\"phone_call\",\"direction\":\"outbound\","
                   "\"from_number\":\"+14155550100\",\"to_number\":"
                   "\"+14155550123\",\"metadata\":{\"job\":\"j1\"},"
                   "\"retell_llm_dynamic_variables\":{\"name\":\"Ada\"},"
                   "\"data_storage_setting\":\"everything\"}");

    r = req("POST", "/retell/v2/create-phone-call",
            "Authorization: Bearer key_test\r\n",
            "{\"from_number\":\"+14155550100\",\"to_number\":\"4155550123\"}");
    cr_expect_eq(r.status, 400);
    expect_json(jbody(&r), "{\"error_message\":\"to_number must be a valid "
                           "phone number in E.164 format\"}");
    r = req("POST", "/retell/v2/create-phone-call", NULL, body);
    cr_expect_eq(r.status, 401);
    expect_json(jbody(&r), "{\"error_message\":\"Unauthorized: missing or "
                           "invalid API key\"}");
    json_t *recs = get_json("/_sandbox/records?provider=retell&type=calls");
    cr_expect_eq(json_array_size(json_object_get(recs, "records")), 1);
    json_decref(recs);
}

Test(sandbox, custom_rest_idempotency)
{
    struct it_resp r = req("POST", "/custom/api/calls", "Idempotency-Key: "
                           "k-1\r\nX-Api-Key: secret\r\n",
                           "{\"call\":1}");
    cr_expect_eq(r.status, 201);
    expect_json(jbody(&r), "{\"id\":1}");
    r = req("POST", "/custom/api/calls", "Idempotency-Key: k-1\r\n",
            "{\"call\":1}");
    cr_expect_eq(r.status, 201);
    expect_json(jbody(&r), "{\"id\":1}");
    r = req("PUT", "/custom/api/calls/9?x=1", "Idempotency-Key: k-2\r\n",
            "{\"call\":2}");
    expect_json(jbody(&r), "{\"id\":2}");
    r = req("DELETE", "/custom/api/calls/9", NULL, NULL);
    expect_json(jbody(&r), "{\"id\":3}");

    json_t *recs = get_json("/_sandbox/records?provider=custom");
    json_t *list = json_object_get(recs, "records");
    cr_assert_eq(json_array_size(list), 3);
    json_t *first = json_array_get(list, 0);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(first, "headers"), "x-api-key")),
                     "secret");
    json_object_del(first, "headers");
    json_object_del(first, "received_at_ms");
    expect_json(json_incref(first),
                "{\"id\":1,\"method\":\"POST\",\"path\":\"/custom/api/calls\","
                "\"query\":\"\",\"body\":{\"call\":1},\"idempotency_key\":"
                "\"k-1\"}");
    json_t *second = json_array_get(list, 1);
    cr_expect_str_eq(json_string_value(json_object_get(second, "method")),
                     "PUT");
    cr_expect_str_eq(json_string_value(json_object_get(second, "query")),
                     "x=1");
    cr_expect(json_is_null(json_object_get(json_array_get(list, 2), "body")));
    json_decref(recs);
}

/* ---- Faults ------------------------------------------------------------- */

Test(sandbox, fault_429_with_retry_after_for_count_3)
{
    cr_assert_eq(
        req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT).status,
        201);
    set_faults("[{\"provider\":\"hubspot\",\"path_prefix\":"
               "\"/crm/v3/objects/notes\",\"method\":\"POST\","
               "\"status\":429,\"retry_after_s\":7,\"count\":3}]");
    static const char note[] =
        "{\"properties\":{\"hs_timestamp\":\"2026-03-01T10:00:00Z\"}}";
    char v[128];
    for (int i = 0; i < 3; i++) {
        struct it_resp r =
            req("POST", "/hubspot/crm/v3/objects/notes", AUTH, note);
        cr_expect_eq(r.status, 429);
        cr_expect_str_eq(hdr(&r, "Retry-After", v), "7");
        cr_expect_str_eq(hdr(&r, "X-HubSpot-RateLimit-Max", v), "100");
        json_t *j = jbody(&r);
        take(j, "correlationId", UUID_RE, NULL);
        expect_json(j, "{\"status\":\"error\",\"message\":\"You have "
                       "reached your ten_secondly_rolling limit.\","
                       "\"errorType\":\"RATE_LIMIT\",\"policyName\":"
                       "\"TEN_SECONDLY_ROLLING\"}");
        /* Other paths are not affected. */
        cr_expect_eq(req("GET", "/hubspot/crm/v3/objects/contacts/1001", AUTH,
                         NULL)
                         .status,
                     200);
    }
    struct it_resp r = req("POST", "/hubspot/crm/v3/objects/notes", AUTH, note);
    cr_expect_eq(r.status, 201);
    cr_expect_str_eq(hdr(&r, "Retry-After", v), "");
    json_t *f = get_json("/_sandbox/faults");
    json_t *rule = json_array_get(json_object_get(f, "rules"), 0);
    cr_expect_eq(json_integer_value(json_object_get(rule, "matched")), 4);
    cr_expect_eq(json_integer_value(json_object_get(rule, "fired")), 3);
    json_decref(f);
    json_t *recs = get_json("/_sandbox/records?provider=hubspot&type=notes");
    cr_expect_eq(json_array_size(json_object_get(recs, "records")), 1);
    json_decref(recs);
}

Test(sandbox, fault_503_every_second_request)
{
    set_faults("[{\"provider\":\"zapier\",\"status\":503,\"every\":2}]");
    int want[] = {200, 503, 200, 503, 200, 503};
    for (size_t i = 0; i < CS_ARRAY_LEN(want); i++) {
        struct it_resp r =
            req("POST", "/zapier/hooks/catch/1/h/", NULL, "{\"n\":1}");
        cr_expect_eq(r.status, want[i], "request %zu: %d", i, r.status);
        if (want[i] == 503)
            expect_json(jbody(&r), "{\"status\":\"error\",\"message\":"
                                   "\"Service Unavailable\"}");
    }
    /* A custom body; the provider match leaves others alone. */
    set_faults("[{\"provider\":\"custom\",\"status\":500,\"body\":{\"oops\":"
               "true}}]");
    struct it_resp r = req("POST", "/custom/x", NULL, "{}");
    cr_expect_eq(r.status, 500);
    expect_json(jbody(&r), "{\"oops\":true}");
    cr_expect_eq(req("POST", "/zapier/hooks/catch/1/h/", NULL, "{}").status,
                 200);
    json_t *recs = get_json("/_sandbox/records?provider=zapier");
    cr_expect_eq(json_array_size(json_object_get(recs, "records")), 4);
    json_decref(recs);
    /* Invalid rules are refused and the old ones kept. */
    r = req("POST", "/_sandbox/faults", NULL,
            "[{\"provider\":\"nope\",\"status\":500}]");
    cr_expect_eq(r.status, 400);
    r = req("POST", "/_sandbox/faults", NULL, "[{\"probability\":2}]");
    cr_expect_eq(r.status, 400);
    cr_expect_eq(req("POST", "/custom/x", NULL, "{}").status, 500);
}

Test(sandbox_opts, fault_latency_and_global_latency)
{
    const char *const extra[] = {"--latency-ms", "100", NULL};
    start(extra);
    int64_t t0 = cs_mono_ms();
    cr_expect_eq(req("POST", "/custom/a", NULL, "{}").status, 201);
    int64_t took = cs_mono_ms() - t0;
    cr_expect(took >= 100 && took < 2000, "global latency: %lld ms",
              (long long)took);
    set_faults("[{\"provider\":\"custom\",\"latency_ms\":300}]");
    t0 = cs_mono_ms();
    cr_expect_eq(req("POST", "/custom/a", NULL, "{}").status, 201);
    took = cs_mono_ms() - t0;
    cr_expect(took >= 400 && took < 3000, "rule + global latency: %lld ms",
              (long long)took);
    /* The control API is never delayed. */
    t0 = cs_mono_ms();
    json_t *st = get_json("/_sandbox/stats");
    json_decref(st);
    cr_expect(cs_mono_ms() - t0 < 100);
}

Test(sandbox, fault_hang_closes_without_answer)
{
    set_faults("[{\"provider\":\"retell\",\"hang\":true,\"hang_ms\":300,"
               "\"count\":1}]");
    static const char body[] =
        "{\"from_number\":\"+14155550100\",\"to_number\":\"+14155550123\"}";
    char *text = request_text("POST", "/retell/v2/create-phone-call",
                              "Authorization: Bearer k\r\n", body);
    int fd = it_connect(sb_port);
    cr_assert(fd >= 0);
    int64_t t0 = cs_mono_ms();
    it_send(fd, text, strlen(text));
    struct it_resp r;
    cr_expect_not(it_read_resp(fd, &r, 5000), "a hang must not answer");
    int64_t took = cs_mono_ms() - t0;
    cr_expect(took >= 300 && took < 4000, "closed after %lld ms",
              (long long)took);
    close(fd);
    /* count 1: the next one is answered. */
    cr_expect_eq(req("POST", "/retell/v2/create-phone-call",
                     "Authorization: Bearer k\r\n", body)
                     .status,
                 201);
    free(text);
    json_t *log = get_json("/_sandbox/requests?provider=retell");
    json_t *list = json_object_get(log, "requests");
    cr_assert_eq(json_array_size(list), 2);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(list, 0),
                                                    "status")),
                 0);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(list, 1),
                                                    "status")),
                 201);
    json_decref(log);
}

Test(sandbox, fault_probability_is_deterministic)
{
    /* Same seed, same rules: the same requests fail after a reset. */
    char first[64] = {0}, second[64] = {0};
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(req("POST", "/_sandbox/reset", NULL, "").status, 200);
        set_faults("[{\"provider\":\"custom\",\"status\":503,"
                   "\"probability\":0.5}]");
        char *seq = round ? second : first;
        for (int i = 0; i < 40; i++)
            seq[i] = req("POST", "/custom/p", NULL, "{}").status == 503 ? 'x'
                                                                        : '.';
    }
    cr_expect_str_eq(first, second);
    cr_expect(strchr(first, 'x') && strchr(first, '.'), "%s", first);
}

static char dumped[8192];
static const char *r_dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    snprintf(dumped, sizeof(dumped), "%s", s);
    free(s);
    return dumped;
}

/* ---- Control API -------------------------------------------------------- */

Test(sandbox, records_requests_stats_and_reset)
{
    cr_assert_eq(
        req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT).status,
        201);
    usleep(20000);
    int64_t mid = cs_now_ms();
    usleep(20000);
    cr_assert_eq(req("POST", "/zapier/hooks/catch/1/h", NULL, "{}").status,
                 200);
    cr_assert_eq(req("GET", "/hubspot/crm/v3/objects/contacts/7", AUTH, NULL)
                     .status,
                 404);
    cr_assert_eq(req("GET", "/nowhere", NULL, NULL).status, 404);

    json_t *log = get_json("/_sandbox/requests?provider=hubspot");
    json_t *list = json_object_get(log, "requests");
    cr_assert_eq(json_array_size(list), 2);
    json_t *e0 = json_array_get(list, 0);
    cr_expect(json_integer_value(json_object_get(e0, "received_at_ms")) <=
              mid);
    json_object_del(e0, "received_at_ms");
    expect_json(json_incref(e0),
                "{\"method\":\"POST\",\"path\":"
                "\"/hubspot/crm/v3/objects/contacts\",\"provider\":"
                "\"hubspot\",\"status\":201}");
    json_decref(log);

    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/requests?since_ms=%lld",
             (long long)mid);
    log = get_json(path);
    list = json_object_get(log, "requests");
    cr_assert_eq(json_array_size(list), 3, "%s", r_dump(log));
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(list, 0),
                                                       "provider")),
                     "zapier");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(list, 2),
                                                       "provider")),
                     "other");
    json_decref(log);

    expect_json(get_json("/_sandbox/stats"),
                "{\"total\":4,\"providers\":{"
                "\"hubspot\":{\"total\":2,\"by_status\":{\"201\":1,"
                "\"404\":1}},"
                "\"zapier\":{\"total\":1,\"by_status\":{\"200\":1}},"
                "\"retell\":{\"total\":0,\"by_status\":{}},"
                "\"custom\":{\"total\":0,\"by_status\":{}},"
                "\"gohighlevel\":{\"total\":0,\"by_status\":{}},"
                "\"oauth\":{\"total\":0,\"by_status\":{}},"
                "\"sentry\":{\"total\":0,\"by_status\":{}},"
                "\"google_calendar\":{\"total\":0,\"by_status\":{}},"
                "\"cal_com\":{\"total\":0,\"by_status\":{}},"
                "\"calendly\":{\"total\":0,\"by_status\":{}},"
                "\"outlook\":{\"total\":0,\"by_status\":{}},"
                "\"stripe\":{\"total\":0,\"by_status\":{}},"
                "\"twilio\":{\"total\":0,\"by_status\":{}},"
                "\"sendgrid\":{\"total\":0,\"by_status\":{}},"
                "\"pipedrive\":{\"total\":0,\"by_status\":{}},"
                "\"zoho\":{\"total\":0,\"by_status\":{}},"
                "\"salesforce\":{\"total\":0,\"by_status\":{}},"
                "\"monday\":{\"total\":0,\"by_status\":{}},"
                "\"housecall_pro\":{\"total\":0,\"by_status\":{}},"
                "\"segment\":{\"total\":0,\"by_status\":{}},"
                "\"other\":{\"total\":1,\"by_status\":{\"404\":1}}}}");
    cr_expect_eq(req("GET", "/_sandbox/records?provider=zapier&type=contacts",
                     NULL, NULL)
                     .status,
                 400);

    set_faults("[{\"provider\":\"*\",\"status\":500}]");
    struct it_resp r = req("POST", "/_sandbox/reset", NULL, "");
    cr_expect_eq(r.status, 200);
    expect_json(get_json("/_sandbox/records?provider=hubspot&type=contacts"),
                "{\"records\":[]}");
    expect_json(get_json("/_sandbox/records?provider=zapier"),
                "{\"records\":[]}");
    expect_json(get_json("/_sandbox/requests"), "{\"requests\":[]}");
    expect_json(get_json("/_sandbox/faults"), "{\"rules\":[]}");
    json_t *st = get_json("/_sandbox/stats");
    cr_expect_eq(json_integer_value(json_object_get(st, "total")), 0);
    json_decref(st);
    /* Ids start again and the old email is free. */
    r = req("POST", "/hubspot/crm/v3/objects/contacts", AUTH, CONTACT);
    cr_expect_eq(r.status, 201);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "id")), "1001");
    json_decref(j);
}

/* ---- Concurrency -------------------------------------------------------- */

#define NCONN 500

Test(sandbox_opts, concurrent_keep_alive_connections)
{
    const char *const extra[] = {"--latency-ms", "20", NULL};
    start(extra);
    static int fds[NCONN];
    for (int i = 0; i < NCONN; i++) {
        fds[i] = it_connect(sb_port);
        cr_assert(fds[i] >= 0, "connect %d failed", i);
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NCONN; i++) {
            char body[48], *text;
            snprintf(body, sizeof(body), "{\"conn\":%d,\"round\":%d}", i,
                     round);
            text = request_text("POST", "/custom/bulk", NULL, body);
            it_send(fds[i], text, strlen(text));
            free(text);
        }
        int64_t t0 = cs_mono_ms();
        for (int i = 0; i < NCONN; i++) {
            struct it_resp r;
            cr_assert(it_read_resp(fds[i], &r, 10000), "conn %d: no answer",
                      i);
            cr_expect_eq(r.status, 201);
            cr_expect_not(r.closed, "conn %d closed", i);
        }
        /* All waited on their timers together, not one after another. */
        cr_expect(cs_mono_ms() - t0 < 3000);
    }
    for (int i = 0; i < NCONN; i++)
        close(fds[i]);
    json_t *st = get_json("/_sandbox/stats");
    expect_json(json_incref(json_object_get(json_object_get(st, "providers"),
                                            "custom")),
                "{\"total\":1000,\"by_status\":{\"201\":1000}}");
    json_decref(st);
}
