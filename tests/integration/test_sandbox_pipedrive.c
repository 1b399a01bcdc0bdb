/*
 * test_sandbox_pipedrive.c - the Pipedrive part of the built
 * callsync-sandbox: auth (x-api-token, api_token, Bearer), the envelope
 * and its v1/v2 pagination, strict v2 validation with Pipedrive's error
 * shape, persons search, notes, deals and activities with their filters,
 * the rate-limit headers, burst, search and daily-budget 429s, fault
 * rules (including a hang that processes the request first) and the
 * /_sandbox records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define TOKEN "pd-sandbox-token-1"
#define H_TOKEN "x-api-token: " TOKEN "\r\n"
#define H_BEARER "Authorization: Bearer " TOKEN "\r\n"
#define KEY1 "dcf558aac1ae4e8c4f849ba5e668430d8df9be12"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *rate, const char *daily)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--pipedrive-token", (char *)TOKEN,
                    (char *)"--pipedrive-rate", (char *)rate,
                    (char *)"--pipedrive-daily", (char *)daily, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbpd_%d.log", (int)getpid());
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
    start_with("100000", "100000000");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbpd, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbpd_opts, .fini = stop, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------ */

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *text = xasprintf("%s /pipedrive%s HTTP/1.1\r\nHost: t\r\n"
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

/* status, and for errors Pipedrive's envelope with "error" containing
 * want. */
static void expect_error(const struct it_resp *r, int status,
                         const char *want)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    cr_expect(json_is_false(json_object_get(j, "success")));
    const char *e = json_string_value(json_object_get(j, "error"));
    cr_expect(e && strstr(e, want), "no '%s' in %.*s", want,
              (int)r->body_len, r->body);
    cr_expect(json_is_string(json_object_get(j, "error_info")));
    json_decref(j);
}

/* A 2xx answer's data (caller frees), with success true. */
static json_t *data_of(const struct it_resp *r, int status)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    cr_expect(json_is_true(json_object_get(j, "success")));
    return j;
}

static long long new_person(const char *body)
{
    struct it_resp r = req("POST", "/api/v2/persons", H_TOKEN, body);
    json_t *j = data_of(&r, 200);
    long long id = json_integer_value(
        json_object_get(json_object_get(j, "data"), "id"));
    json_decref(j);
    cr_assert_gt(id, 0);
    return id;
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=pipedrive&type=%s&count=1", type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

#define JANE                                                                 \
    "{\"name\":\"Jane Smith\",\"emails\":[{\"value\":\"Jane@Example.com\","   \
    "\"primary\":true,\"label\":\"work\"}],\"phones\":[{\"value\":"          \
    "\"(415) 555-0100\"}],\"custom_fields\":{\"" KEY1 "\":\"x\"}}"

/* ---- Auth --------------------------------------------------------------- */

Test(sbpd, auth_forms_and_refusals)
{
    struct it_resp r = req("GET", "/api/v2/persons", NULL, NULL);
    cr_assert_eq(r.status, 401);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")),
                     "unauthorized access");
    cr_expect_eq(json_integer_value(json_object_get(j, "errorCode")), 401);
    json_decref(j);
    r = req("GET", "/api/v2/persons", "x-api-token: wrong\r\n", NULL);
    cr_expect_eq(r.status, 401);
    r = req("GET", "/api/v2/persons", "Authorization: Basic eDp5\r\n", NULL);
    cr_expect_eq(r.status, 401);
    r = req("GET", "/api/v2/persons", H_TOKEN, NULL);
    cr_expect_eq(r.status, 200);
    r = req("GET", "/api/v2/persons", H_BEARER, NULL);
    cr_expect_eq(r.status, 200);
    r = req("GET", "/api/v2/persons?api_token=" TOKEN, NULL, NULL);
    cr_expect_eq(r.status, 200, "the legacy query parameter");
    r = req("GET", "/api/v3/nothing", H_TOKEN, NULL);
    expect_error(&r, 404, "Unknown method");
}

/* ---- Persons ------------------------------------------------------------ */

Test(sbpd, person_create_read_patch)
{
    long long id = new_person(JANE);
    struct it_resp r = req("GET", "/api/v2/persons/1", H_TOKEN, NULL);
    json_t *j = data_of(&r, 200);
    json_t *p = json_object_get(j, "data");
    cr_expect_eq(json_integer_value(json_object_get(p, "id")), id);
    cr_expect_str_eq(json_string_value(json_object_get(p, "first_name")),
                     "Jane");
    /* The phone got primary and the default label. */
    json_t *ph = json_array_get(json_object_get(p, "phones"), 0);
    cr_expect(json_is_true(json_object_get(ph, "primary")));
    cr_expect_str_eq(json_string_value(json_object_get(ph, "label")), "work");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(p, "custom_fields"), KEY1)),
                     "x");
    cr_expect_null(json_object_get(p, "_update_ms"), "no sandbox keys");
    json_decref(j);

    r = req("PATCH", "/api/v2/persons/1", H_TOKEN,
            "{\"phones\":[{\"value\":\"+14155550100\",\"primary\":true,"
            "\"label\":\"mobile\"}],\"custom_fields\":{\"" KEY1 "\":null}}");
    j = data_of(&r, 200);
    p = json_object_get(j, "data");
    cr_expect_eq(json_array_size(json_object_get(p, "phones")), 1);
    cr_expect(json_is_null(json_object_get(json_object_get(p,
                                                           "custom_fields"),
                                           KEY1)));
    json_decref(j);
    r = req("PATCH", "/api/v2/persons/99", H_TOKEN, "{\"name\":\"x\"}");
    expect_error(&r, 404, "Person not found");
    r = req("GET", "/api/v2/persons/99", H_TOKEN, NULL);
    expect_error(&r, 404, "Person not found");
    /* Pipedrive accepts duplicates. */
    new_person(JANE);
    cr_expect_eq(count("persons"), 2);
}

Test(sbpd, person_validation)
{
    static const struct {
        const char *body, *says;
    } bad[] = {
        {"{\"emails\":[{\"value\":\"a@b.c\"}]}", "name: is required"},
        {"{\"name\":\"\"}", "name: is required"},
        {"{\"name\":\"A\",\"first_name\":\"A\"}", "first_name: is not a known"},
        {"{\"name\":\"A\",\"owner_id\":\"7\"}", "owner_id: must be an integer"},
        {"{\"name\":\"A\",\"emails\":[\"a@b.c\"]}", "emails: items must be"},
        {"{\"name\":\"A\",\"phones\":[{\"value\":\"1\",\"primary\":\"yes\"}]}",
         "phones: items must be"},
        {"{\"name\":\"A\",\"label_ids\":[1,\"2\"]}", "label_ids: must be"},
        {"{\"name\":\"A\",\"custom_fields\":{\"lead_score\":1}}",
         "custom field keys"},
        {"{\"name\":\"A\",\"custom_fields\":{\"" KEY1 "\":[]}}",
         "cleared with null"},
        {"[1]", "must be a JSON object"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct it_resp r = req("POST", "/api/v2/persons", H_TOKEN,
                               bad[i].body);
        expect_error(&r, 400, bad[i].says);
    }
    cr_expect_eq(count("persons"), 0, "nothing was written");
}

Test(sbpd, person_search)
{
    new_person(JANE);
    new_person("{\"name\":\"Bob\",\"emails\":[{\"value\":"
               "\"jane@example.com.au\"}]}");
    /* Exact: case-insensitive whole email; the .au one does not match. */
    struct it_resp r = req("GET", "/api/v2/persons/search?term=jane%40example"
                                  ".com&fields=email&exact_match=true",
                           H_TOKEN, NULL);
    json_t *j = data_of(&r, 200);
    json_t *items = json_object_get(json_object_get(j, "data"), "items");
    cr_assert_eq(json_array_size(items), 1);
    json_t *it = json_object_get(json_array_get(items, 0), "item");
    cr_expect_eq(json_integer_value(json_object_get(it, "id")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(it, "type")),
                     "person");
    cr_expect_str_eq(json_string_value(json_array_get(
                         json_object_get(it, "emails"), 0)),
                     "Jane@Example.com");
    cr_expect(json_is_null(json_object_get(
        json_object_get(j, "additional_data"), "next_cursor")));
    json_decref(j);
    /* Not exact: both contain it. */
    r = req("GET", "/api/v2/persons/search?term=jane%40example&fields=email",
            H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(json_object_get(j, "data"),
                                                 "items")),
                 2);
    json_decref(j);
    /* Phones compare by digits. */
    r = req("GET", "/api/v2/persons/search?term=4155550100&fields=phone"
                   "&exact_match=true",
            H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(json_object_get(j, "data"),
                                                 "items")),
                 1);
    json_decref(j);
    r = req("GET", "/api/v2/persons/search?term=x", H_TOKEN, NULL);
    expect_error(&r, 400, "term");
    r = req("GET", "/api/v2/persons/search?term=x&exact_match=true",
            H_TOKEN, NULL);
    cr_expect_eq(r.status, 200, "one character with exact_match");
    r = req("GET", "/api/v2/persons/search?term=jane&fields=email,address",
            H_TOKEN, NULL);
    expect_error(&r, 400, "fields");
    r = req("GET", "/api/v2/persons/search?term=jane&limit=101", H_TOKEN,
            NULL);
    expect_error(&r, 400, "limit");
}

Test(sbpd, person_list_since_sorted_and_paged)
{
    for (int i = 0; i < 3; i++)
        new_person("{\"name\":\"P\"}");
    struct it_resp r = req(
        "GET", "/api/v2/persons?updated_since=2000-01-01T00%3A00%3A00Z"
               "&sort_by=update_time&sort_direction=desc&limit=2",
        H_TOKEN, NULL);
    json_t *j = data_of(&r, 200);
    json_t *d = json_object_get(j, "data");
    cr_assert_eq(json_array_size(d), 2);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(d, 0),
                                                    "id")),
                 3);
    const char *cur = json_string_value(json_object_get(
        json_object_get(j, "additional_data"), "next_cursor"));
    cr_assert_not_null(cur);
    char path[256];
    snprintf(path, sizeof(path),
             "/api/v2/persons?sort_by=update_time&sort_direction=desc"
             "&limit=2&cursor=%s", cur);
    json_decref(j);
    r = req("GET", path, H_TOKEN, NULL);
    j = data_of(&r, 200);
    d = json_object_get(j, "data");
    cr_assert_eq(json_array_size(d), 1);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(d, 0),
                                                    "id")),
                 1);
    json_decref(j);
    /* Nothing updated in the future. */
    r = req("GET", "/api/v2/persons?updated_since=2100-01-01T00%3A00%3A00Z",
            H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
    r = req("GET", "/api/v2/persons?updated_since=yesterday", H_TOKEN, NULL);
    expect_error(&r, 400, "updated_since");
    r = req("GET", "/api/v2/persons?sort_by=name", H_TOKEN, NULL);
    expect_error(&r, 400, "sort_by");
    r = req("GET", "/api/v2/persons?cursor=bogus", H_TOKEN, NULL);
    expect_error(&r, 400, "cursor");
    r = req("GET", "/api/v2/persons?limit=501", H_TOKEN, NULL);
    expect_error(&r, 400, "limit");
}

/* ---- Notes -------------------------------------------------------------- */

Test(sbpd, notes_v1)
{
    new_person(JANE);
    struct it_resp r = req("GET", "/api/v1/notes?person_id=1", H_TOKEN,
                           NULL);
    json_t *j = data_of(&r, 200);
    cr_expect(json_is_null(json_object_get(j, "data")),
              "an empty v1 list is null");
    json_decref(j);
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof(body),
                 "{\"content\":\"<p>note %d</p>\",\"person_id\":1}", i);
        r = req("POST", "/api/v1/notes", H_TOKEN, body);
        j = data_of(&r, 201);
        cr_expect_eq(json_integer_value(json_object_get(
                         json_object_get(j, "data"), "person_id")),
                     1);
        json_decref(j);
    }
    r = req("GET", "/api/v1/notes?person_id=1&start=0&limit=2"
                   "&sort=add_time%20DESC",
            H_TOKEN, NULL);
    j = data_of(&r, 200);
    json_t *d = json_object_get(j, "data");
    cr_assert_eq(json_array_size(d), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(d, 0),
                                                       "content")),
                     "<p>note 2</p>");
    json_t *pg = json_object_get(json_object_get(j, "additional_data"),
                                 "pagination");
    cr_expect(json_is_true(json_object_get(pg, "more_items_in_collection")));
    cr_expect_eq(json_integer_value(json_object_get(pg, "next_start")), 2);
    json_decref(j);
    r = req("GET", "/v1/notes?person_id=1&start=2&limit=2", H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);

    r = req("POST", "/api/v1/notes", H_TOKEN, "{\"person_id\":1}");
    expect_error(&r, 400, "content");
    r = req("POST", "/api/v1/notes", H_TOKEN, "{\"content\":\"x\"}");
    expect_error(&r, 400, "a note needs");
    r = req("POST", "/api/v1/notes", H_TOKEN,
            "{\"content\":\"x\",\"person_id\":5}");
    expect_error(&r, 404, "Person not found");
    r = req("POST", "/api/v1/notes", H_TOKEN,
            "{\"content\":\"x\",\"person_id\":\"one\"}");
    expect_error(&r, 400, "integers");
    r = req("GET", "/api/v1/notes?sort=content%20UP", H_TOKEN, NULL);
    expect_error(&r, 400, "sort");
    cr_expect_eq(count("notes"), 3);
}

/* ---- Deals and activities ----------------------------------------------- */

Test(sbpd, deals_v2)
{
    new_person(JANE);
    struct it_resp r = req("POST", "/api/v2/deals", H_TOKEN,
                           "{\"title\":\"Roof\",\"person_id\":1,"
                           "\"pipeline_id\":3,\"stage_id\":9,\"value\":2500,"
                           "\"currency\":\"USD\",\"status\":\"open\","
                           "\"custom_fields\":{\"" KEY1 "\":87}}");
    json_t *j = data_of(&r, 200);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(j, "data"), "stage_id")),
                 9);
    json_decref(j);
    req("POST", "/api/v2/deals", H_TOKEN,
        "{\"title\":\"Old\",\"person_id\":1,\"pipeline_id\":3,"
        "\"status\":\"lost\"}");
    r = req("GET", "/api/v2/deals?person_id=1&pipeline_id=3&status=open",
            H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);
    r = req("GET", "/api/v2/deals?person_id=1&status=open,lost", H_TOKEN,
            NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 2);
    json_decref(j);
    r = req("GET", "/api/v2/deals?pipeline_id=4", H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);

    r = req("POST", "/api/v2/deals", H_TOKEN, "{\"person_id\":1}");
    expect_error(&r, 400, "title: is required");
    r = req("POST", "/api/v2/deals", H_TOKEN,
            "{\"title\":\"x\",\"status\":\"pending\"}");
    expect_error(&r, 400, "status");
    r = req("POST", "/api/v2/deals", H_TOKEN,
            "{\"title\":\"x\",\"person_id\":8}");
    expect_error(&r, 404, "Person not found");
    r = req("POST", "/api/v2/deals", H_TOKEN,
            "{\"title\":\"x\",\"expected_close_date\":\"31/12/2026\"}");
    expect_error(&r, 400, "expected_close_date");
    r = req("GET", "/api/v2/deals?status=closed", H_TOKEN, NULL);
    expect_error(&r, 400, "status");
    cr_expect_eq(count("deals"), 2);
}

Test(sbpd, activities_v2)
{
    new_person(JANE);
    new_person("{\"name\":\"Bob\"}");
    struct it_resp r = req(
        "POST", "/api/v2/activities", H_TOKEN,
        "{\"subject\":\"Roof Repair\",\"type\":\"meeting\","
        "\"due_date\":\"2026-02-21\",\"due_time\":\"00:30\","
        "\"duration\":\"01:30\",\"participants\":[{\"person_id\":1,"
        "\"primary\":true}],\"busy\":true,\"done\":false,\"note\":\"n\"}");
    json_t *j = data_of(&r, 200);
    json_t *a = json_object_get(j, "data");
    cr_expect_eq(json_integer_value(json_object_get(a, "person_id")), 1,
                 "the primary participant");
    cr_expect_str_eq(json_string_value(json_object_get(a, "due_time")),
                     "00:30:00");
    json_decref(j);
    r = req("GET", "/api/v2/activities?person_id=1&sort_by=add_time"
                   "&sort_direction=desc",
            H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);
    r = req("GET", "/api/v2/activities?person_id=2", H_TOKEN, NULL);
    j = data_of(&r, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);

    r = req("POST", "/api/v2/activities", H_TOKEN,
            "{\"subject\":\"x\",\"type\":\"visit\"}");
    expect_error(&r, 400, "activity type");
    r = req("POST", "/api/v2/activities", H_TOKEN,
            "{\"subject\":\"x\",\"due_time\":\"25:00\"}");
    expect_error(&r, 400, "due_time");
    r = req("POST", "/api/v2/activities", H_TOKEN,
            "{\"subject\":\"x\",\"participants\":[{\"person_id\":9,"
            "\"primary\":true}]}");
    expect_error(&r, 404, "Person not found");
    r = req("POST", "/api/v2/activities", H_TOKEN,
            "{\"subject\":\"x\",\"deal_id\":4}");
    expect_error(&r, 404, "Deal not found");
    r = req("POST", "/api/v2/activities", H_TOKEN,
            "{\"subject\":\"x\",\"busy\":1}");
    expect_error(&r, 400, "busy: must be a boolean");
    cr_expect_eq(count("activities"), 1);
}

/* ---- Rate limits -------------------------------------------------------- */

Test(sbpd_opts, burst_and_search_limits)
{
    start_with("12", "100000000");
    struct it_resp r = req("GET", "/api/v2/persons", H_TOKEN, NULL);
    char v[128];
    cr_expect_str_eq(hdr(&r, "x-ratelimit-limit", v), "12");
    cr_expect_str_eq(hdr(&r, "x-ratelimit-remaining", v), "11");
    cr_expect_str_eq(hdr(&r, "x-ratelimit-reset", v), "2");
    cr_expect_str_eq(hdr(&r, "x-daily-ratelimit-token-limit", v),
                     "100000000");
    cr_expect_str_eq(hdr(&r, "x-daily-ratelimit-token-remaining", v),
                     "99999990", "a list costs 10");
    cr_expect_str_eq(hdr(&r, "x-daily-requests-left", v), "",
                     "only on writes");
    /* Ten searches, then the search limit (the burst has room). */
    int s200 = 0, s429 = 0;
    for (int i = 0; i < 11; i++) {
        r = req("GET", "/api/v2/persons/search?term=ab", H_TOKEN, NULL);
        s200 += r.status == 200;
        s429 += r.status == 429;
    }
    cr_expect_eq(s200, 10);
    cr_expect_eq(s429, 1);
    expect_error(&r, 429, "Request over limit");
    /* The burst is now spent (12 in the window). */
    r = req("POST", "/api/v2/persons", H_TOKEN, "{\"name\":\"A\"}");
    cr_expect_eq(r.status, 429);
    cr_expect_str_eq(hdr(&r, "x-ratelimit-remaining", v), "0");
    cr_expect_str_eq(hdr(&r, "x-daily-requests-left", v), "10000");
    /* Once the window has passed, writes go through again. */
    usleep(2100000);
    r = req("POST", "/api/v2/persons", H_TOKEN, "{\"name\":\"A\"}");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(hdr(&r, "x-daily-requests-left", v), "9999");
    r = req("POST", "/api/v2/persons", H_BEARER, "{\"name\":\"B\"}");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(hdr(&r, "x-daily-requests-left", v), "",
                     "not for OAuth tokens");
}

Test(sbpd_opts, daily_budget)
{
    start_with("1000", "30");
    /* A create costs 5, a list 10: 5 + 10 + 10 = 25, then the next list
     * does not fit. */
    struct it_resp r = req("POST", "/api/v2/persons", H_TOKEN,
                           "{\"name\":\"A\"}");
    cr_expect_eq(r.status, 200);
    r = req("GET", "/api/v2/persons", H_TOKEN, NULL);
    cr_expect_eq(r.status, 200);
    r = req("GET", "/api/v2/deals", H_TOKEN, NULL);
    cr_expect_eq(r.status, 200);
    char v[128];
    cr_expect_str_eq(hdr(&r, "x-daily-ratelimit-token-remaining", v), "5");
    r = req("GET", "/api/v2/activities", H_TOKEN, NULL);
    expect_error(&r, 429, "Request over limit");
    /* A read of one person (1 token) still fits. */
    r = req("GET", "/api/v2/persons/1", H_TOKEN, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(hdr(&r, "x-daily-ratelimit-token-remaining", v), "4");
}

/* ---- Faults and records ------------------------------------------------- */

Test(sbpd, faults_and_records)
{
    const char *rules =
        "[{\"provider\":\"pipedrive\",\"path_prefix\":\"/api/v2/deals\","
        "\"status\":503,\"count\":1},"
        "{\"provider\":\"pipedrive\",\"method\":\"POST\",\"path_prefix\":"
        "\"/api/v1/notes\",\"hang\":true,\"process\":true,\"hang_ms\":300,"
        "\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("GET", "/api/v2/deals", H_TOKEN, NULL);
    expect_error(&r, 503, "Service Unavailable");
    char v[128];
    cr_expect_str_eq(hdr(&r, "x-ratelimit-limit", v), "100000");
    r = req("GET", "/api/v2/deals", H_TOKEN, NULL);
    cr_expect_eq(r.status, 200, "the rule fired once");

    new_person(JANE);
    /* The hang writes the note, then never answers. */
    const char *body = "{\"content\":\"callsync:x\",\"person_id\":1}";
    char *text = xasprintf("POST /pipedrive/api/v1/notes HTTP/1.1\r\n"
                           "Host: t\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" H_TOKEN "\r\n%s",
                           strlen(body), body);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count("notes"), 1, "the write happened");

    r = it_get(sb_port, "/_sandbox/records?provider=pipedrive&type=persons");
    json_t *j = jbody(&r);
    json_t *p = json_array_get(json_object_get(j, "records"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(p, "name")),
                     "Jane Smith");
    cr_expect(json_is_integer(json_object_get(p, "_update_ms")),
              "records keep the sandbox's own keys");
    json_decref(j);
    r = it_get(sb_port, "/_sandbox/records?provider=pipedrive&type=bogus");
    cr_expect_eq(r.status, 400);
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(count("persons"), 0);
    cr_expect_eq(count("notes"), 0);
    new_person(JANE);
    r = req("GET", "/api/v2/persons/1", H_TOKEN, NULL);
    cr_expect_eq(r.status, 200, "ids start again at 1");
}
