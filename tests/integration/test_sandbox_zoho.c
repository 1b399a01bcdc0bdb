/*
 * test_sandbox_zoho.c - the Zoho CRM part of the built callsync-sandbox:
 * the Zoho-oauthtoken scheme and INVALID_TOKEN, upsert with
 * duplicate_check_fields (insert, then update by email or phone), the
 * mandatory fields and per-record errors, search with 204 for none,
 * updates, notes with their required "fields", credits and the per-second
 * stand-in for concurrency (429 TOO_MANY_REQUESTS), fault rules and the
 * /_sandbox records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define TOKEN "1000.zoho-sandbox-token"
#define H_AUTH "Authorization: Zoho-oauthtoken " TOKEN "\r\n"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *credits, const char *rate)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--zoho-token", (char *)TOKEN,
                    (char *)"--zoho-credits", (char *)credits,
                    (char *)"--zoho-rate", (char *)rate, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbzoho_%d.log", (int)getpid());
    unlink(sb_log);
    sb_pid = it_spawn(argv, NULL, sb_log);
    for (int i = 0; i < 250; i++) {
        int fd = it_connect(sb_port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    cr_assert_fail("sandbox did not start");
}

static void setup(void)
{
    start_with("1000000", "0");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbzoho, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbzoho_opts, .fini = stop, .timeout = 60);

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *text = xasprintf("%s /zoho/crm/v8%s HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n%s\r\n%s",
                           method, path, body ? strlen(body) : 0,
                           headers ? headers : "", body ? body : "");
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

/* status, and Zoho's error object (top level or the first record's) with
 * code and, when given, details.api_name. */
static void expect_error(const struct it_resp *r, int status,
                         const char *code, const char *api_name)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    json_t *e = json_object_get(j, "code") ? j
                                           : json_array_get(
                                                 json_object_get(j, "data"),
                                                 0);
    cr_expect_str_eq(json_string_value(json_object_get(e, "code")), code);
    cr_expect_str_eq(json_string_value(json_object_get(e, "status")),
                     "error");
    if (api_name)
        cr_expect_str_eq(json_string_value(json_object_get(
                             json_object_get(e, "details"), "api_name")),
                         api_name);
    json_decref(j);
}

/* The first record's result of a write: its id, checking code and
 * action. */
static char *written(const struct it_resp *r, int status, const char *action)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    json_t *d = json_array_get(json_object_get(j, "data"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(d, "code")),
                     "SUCCESS");
    if (action)
        cr_expect_str_eq(json_string_value(json_object_get(d, "action")),
                         action);
    char *id = xstrdup(json_string_value(
        json_object_get(json_object_get(d, "details"), "id")));
    json_decref(j);
    return id;
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=zoho&type=%s&count=1", type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

#define LEAD                                                                 \
    "{\"data\":[{\"Last_Name\":\"Smith\",\"First_Name\":\"Jane\","           \
    "\"Company\":\"Smith Roofing\",\"Email\":\"jane@example.com\","          \
    "\"Phone\":\"+14155550100\"}],"                                          \
    "\"duplicate_check_fields\":[\"Email\",\"Phone\"]}"

Test(sbzoho, auth)
{
    struct it_resp r = req("GET", "/Leads/search?email=a%40b.c", NULL, NULL);
    expect_error(&r, 401, "INVALID_TOKEN", NULL);
    r = req("GET", "/Leads/search?email=a%40b.c",
            "Authorization: Bearer " TOKEN "\r\n", NULL);
    expect_error(&r, 401, "INVALID_TOKEN", NULL);
    r = req("GET", "/Leads/search?email=a%40b.c",
            "Authorization: Zoho-oauthtoken other\r\n", NULL);
    expect_error(&r, 401, "INVALID_TOKEN", NULL);
    r = req("GET", "/Leads/search?email=a%40b.c", H_AUTH, NULL);
    cr_expect_eq(r.status, 204);
    cr_expect_eq(r.body_len, 0);
}

Test(sbzoho, upsert_inserts_then_updates)
{
    struct it_resp r = req("POST", "/Leads/upsert", H_AUTH, LEAD);
    char *id = written(&r, 201, "insert");
    /* Same email in another case: the same lead, updated. */
    r = req("POST", "/Leads/upsert", H_AUTH,
            "{\"data\":[{\"Last_Name\":\"Smith\",\"Company\":\"X\","
            "\"Email\":\"JANE@example.com\",\"City\":\"Orlando\"}],"
            "\"duplicate_check_fields\":[\"Email\",\"Phone\"]}");
    char *id2 = written(&r, 200, "update");
    cr_expect_str_eq(id2, id);
    free(id2);
    /* By phone (written without the country code). */
    r = req("POST", "/Leads/upsert", H_AUTH,
            "{\"data\":[{\"Last_Name\":\"Smith\",\"Company\":\"X\","
            "\"Phone\":\"(415) 555-0100\"}],"
            "\"duplicate_check_fields\":[\"Email\",\"Phone\"]}");
    id2 = written(&r, 200, "update");
    cr_expect_str_eq(id2, id);
    free(id2);
    cr_expect_eq(count("leads"), 1);
    /* A contact is another module. */
    r = req("POST", "/Contacts/upsert", H_AUTH,
            "{\"data\":[{\"Last_Name\":\"Smith\",\"Email\":"
            "\"jane@example.com\"}]}");
    free(written(&r, 201, "insert"));
    cr_expect_eq(count("contacts"), 1);
    r = req("GET", "/Leads/search?email=jane%40example.com", H_AUTH, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    json_t *d = json_object_get(j, "data");
    cr_assert_eq(json_array_size(d), 1);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(d, 0),
                                                       "City")),
                     "Orlando");
    cr_expect_null(json_object_get(json_array_get(d, 0), "received_at_ms"));
    cr_expect(json_is_false(json_object_get(json_object_get(j, "info"),
                                            "more_records")));
    json_decref(j);
    r = req("GET", "/Leads/search?phone=%2B14155550100", H_AUTH, NULL);
    cr_expect_eq(r.status, 200);
    r = req("GET", "/Leads/search?phone=%2B14155550199", H_AUTH, NULL);
    cr_expect_eq(r.status, 204);
    free(id);
}

Test(sbzoho, validation)
{
    struct it_resp r = req("POST", "/Leads/upsert", H_AUTH,
                           "{\"data\":[{\"Company\":\"X\"}]}");
    expect_error(&r, 400, "MANDATORY_NOT_FOUND", "Last_Name");
    r = req("POST", "/Leads/upsert", H_AUTH,
            "{\"data\":[{\"Last_Name\":\"X\"}]}");
    expect_error(&r, 400, "MANDATORY_NOT_FOUND", "Company");
    r = req("POST", "/Contacts/upsert", H_AUTH,
            "{\"data\":[{\"Last_Name\":\"X\",\"Email\":\"not-an-email\"}]}");
    expect_error(&r, 400, "INVALID_DATA", "Email");
    r = req("POST", "/Contacts/upsert", H_AUTH,
            "{\"data\":[{\"Last Name\":\"X\"}]}");
    expect_error(&r, 400, "INVALID_DATA", "Last Name");
    r = req("POST", "/Contacts/upsert", H_AUTH, "{\"data\":[]}");
    expect_error(&r, 400, "REQUIRED_PARAM_MISSING", NULL);
    r = req("POST", "/Contacts/upsert", H_AUTH,
            "{\"data\":[{\"Last_Name\":\"X\"}],\"extra\":1}");
    expect_error(&r, 400, "INVALID_DATA", NULL);
    r = req("POST", "/Deals/upsert", H_AUTH, "{\"data\":[{}]}");
    expect_error(&r, 400, "INVALID_MODULE", NULL);
    r = req("GET", "/Leads/search", H_AUTH, NULL);
    expect_error(&r, 400, "REQUIRED_PARAM_MISSING", NULL);
    r = req("GET", "/Leads/search?criteria=Email:equals:x", H_AUTH, NULL);
    expect_error(&r, 400, "INVALID_QUERY", NULL);
    r = req("PUT", "/Leads/999", H_AUTH, "{\"data\":[{\"City\":\"x\"}]}");
    expect_error(&r, 400, "INVALID_DATA", NULL);
    r = req("GET", "/Leads/999", H_AUTH, NULL);
    cr_expect_eq(r.status, 204);
    cr_expect_eq(count("leads") + count("contacts"), 0, "nothing written");
}

Test(sbzoho, update_and_notes)
{
    struct it_resp r = req("POST", "/Leads/upsert", H_AUTH, LEAD);
    char *id = written(&r, 201, "insert");
    char path[128];
    snprintf(path, sizeof(path), "/Leads/%s", id);
    r = req("PUT", path, H_AUTH, "{\"data\":[{\"State\":\"FL\"}]}");
    free(written(&r, 200, NULL));
    r = req("GET", path, H_AUTH, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "data"), 0),
                         "State")),
                     "FL");
    json_decref(j);

    snprintf(path, sizeof(path), "/Leads/%s/Notes", id);
    char list[160];
    snprintf(list, sizeof(list),
             "/Leads/%s/Notes?fields=Note_Content&per_page=1&page=1", id);
    r = req("GET", list, H_AUTH, NULL);
    cr_expect_eq(r.status, 204, "no notes yet");
    for (int i = 0; i < 2; i++) {
        char body[128];
        snprintf(body, sizeof(body),
                 "{\"data\":[{\"Note_Title\":\"t\",\"Note_Content\":\"n%d\"}]}",
                 i);
        r = req("POST", path, H_AUTH, body);
        free(written(&r, 201, NULL));
    }
    r = req("GET", list, H_AUTH, NULL);
    cr_assert_eq(r.status, 200);
    j = jbody(&r);
    json_t *n = json_array_get(json_object_get(j, "data"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(n, "Note_Content")),
                     "n0");
    cr_expect_null(json_object_get(n, "Note_Title"), "only asked fields");
    cr_expect(json_is_true(json_object_get(json_object_get(j, "info"),
                                           "more_records")));
    json_decref(j);
    snprintf(list, sizeof(list), "/Leads/%s/Notes", id);
    r = req("GET", list, H_AUTH, NULL);
    expect_error(&r, 400, "REQUIRED_PARAM_MISSING", NULL);
    r = req("POST", path, H_AUTH, "{\"data\":[{\"Note_Title\":\"t\"}]}");
    expect_error(&r, 400, "MANDATORY_NOT_FOUND", "Note_Content");
    r = req("POST", "/Leads/123/Notes", H_AUTH,
            "{\"data\":[{\"Note_Content\":\"x\"}]}");
    expect_error(&r, 400, "INVALID_DATA", NULL);
    cr_expect_eq(count("notes"), 2);
    free(id);
}

Test(sbzoho_opts, credits_and_rate)
{
    start_with("3", "0");
    for (int i = 0; i < 3; i++) {
        struct it_resp r = req("GET", "/Leads/search?email=a%40b.c", H_AUTH,
                               NULL);
        cr_expect_eq(r.status, 204);
    }
    struct it_resp r = req("GET", "/Leads/search?email=a%40b.c", H_AUTH,
                           NULL);
    expect_error(&r, 429, "TOO_MANY_REQUESTS", NULL);
    json_t *j = jbody(&r);
    cr_expect(strstr(json_string_value(json_object_get(j, "message")),
                     "credits"));
    json_decref(j);
    it_stop(sb_pid, SIGTERM, 5000);
    start_with("1000", "2");
    int ok = 0, limited = 0;
    for (int i = 0; i < 4; i++) {
        r = req("GET", "/Leads/search?email=a%40b.c", H_AUTH, NULL);
        ok += r.status == 204;
        limited += r.status == 429;
    }
    cr_expect_geq(ok, 2);
    cr_expect_geq(limited, 1, "more than 2 in one second");
}

Test(sbzoho, faults_and_records)
{
    const char *rules =
        "[{\"provider\":\"zoho\",\"path_prefix\":\"/crm/v8/Leads/search\","
        "\"status\":500,\"count\":1},"
        "{\"provider\":\"zoho\",\"method\":\"POST\",\"path_prefix\":"
        "\"/crm/v8/Leads/upsert\",\"hang\":true,\"process\":true,"
        "\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("GET", "/Leads/search?email=a%40b.c", H_AUTH, NULL);
    expect_error(&r, 500, "INTERNAL_ERROR", NULL);
    r = req("GET", "/Leads/search?email=a%40b.c", H_AUTH, NULL);
    cr_expect_eq(r.status, 204, "the rule fired once");
    char *text = xasprintf("POST /zoho/crm/v8/Leads/upsert HTTP/1.1\r\n"
                           "Host: t\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" H_AUTH "\r\n%s",
                           strlen(LEAD), LEAD);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count("leads"), 1, "the write happened");
    /* The retry of the lost upsert updates, not doubles. */
    r = req("POST", "/Leads/upsert", H_AUTH, LEAD);
    free(written(&r, 200, "update"));
    cr_expect_eq(count("leads"), 1);
    r = it_get(sb_port, "/_sandbox/records?provider=zoho&type=deals");
    cr_expect_eq(r.status, 400);
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(count("leads"), 0);
}
