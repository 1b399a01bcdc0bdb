/*
 * test_sandbox_gohighlevel.c - the GoHighLevel part of the built
 * callsync-sandbox: auth, the Version header, request validation with
 * HighLevel's 400/422 shapes, the duplicate rules for contacts and
 * opportunities, notes, workflows, calendars, the X-RateLimit-* headers
 * and 429s, fault rules (including a hang that processes the request
 * first) and the /_sandbox records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define TOKEN "pit-ghl-sandbox-token"
#define H_CONTACTS                                                           \
    "Authorization: Bearer " TOKEN "\r\nVersion: 2021-07-28\r\n"
#define H_CALENDARS                                                          \
    "Authorization: Bearer " TOKEN "\r\nVersion: 2021-04-15\r\n"
#define LOC "loc_sb_1"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *rate, const char *daily)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--gohighlevel-token", (char *)TOKEN,
                    (char *)"--gohighlevel-rate", (char *)rate,
                    (char *)"--gohighlevel-daily", (char *)daily, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbghl_%d.log", (int)getpid());
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
    start_with("1000", "200000");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbghl, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbghl_opts, .fini = stop, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------ */

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *full = xasprintf("/gohighlevel%s", path);
    char *text = xasprintf("%s %s HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n%s\r\n%s",
                           method, full, body ? strlen(body) : 0,
                           headers ? headers : "", body ? body : "");
    struct it_resp r;
    bool ok = it_raw(sb_port, text, strlen(text), &r);
    free(text);
    free(full);
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

/* status, and for errors HighLevel's shape with statusCode == status and
 * the message (or one of the messages of a 422) equal to want. */
static void expect_error(const struct it_resp *r, int status,
                         const char *want)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    cr_expect_eq(json_integer_value(json_object_get(j, "statusCode")),
                 status);
    const json_t *m = json_object_get(j, "message");
    bool found = false;
    if (json_is_string(m)) {
        found = strcmp(json_string_value(m), want) == 0;
    } else {
        cr_expect(json_is_array(m), "422 messages are a list");
        cr_expect_str_eq(json_string_value(json_object_get(j, "error")),
                         "Unprocessable Entity");
        size_t i;
        const json_t *s;
        json_array_foreach(m, i, s) found |=
            strcmp(json_string_value(s), want) == 0;
    }
    cr_expect(found, "no message '%s' in %.*s", want, (int)r->body_len,
              r->body);
    json_decref(j);
}

/* POST a contact; its id (caller frees). */
static char *new_contact(const char *body)
{
    struct it_resp r = req("POST", "/contacts/", H_CONTACTS, body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    char *id = xstrdup(json_string_value(
        json_object_get(json_object_get(j, "contact"), "id")));
    json_decref(j);
    return id;
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=gohighlevel&type=%s&count=1", type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

/* ---- Tests -------------------------------------------------------------- */

Test(sbghl, auth_and_version)
{
    const char *path = "/contacts/search/duplicate?locationId=" LOC;
    struct it_resp r = req("GET", path, "Version: 2021-07-28\r\n", NULL);
    expect_error(&r, 401, "Invalid token: access token is invalid");
    r = req("GET", path,
            "Authorization: Bearer nope\r\nVersion: 2021-07-28\r\n", NULL);
    expect_error(&r, 401, "Invalid token: access token is invalid");
    r = req("GET", path, "Authorization: Bearer " TOKEN "\r\n", NULL);
    expect_error(&r, 400, "Version header must be 2021-07-28 for this "
                          "endpoint");
    r = req("GET",
            "/calendars/events?locationId=" LOC
            "&calendarId=c&startTime=0&endTime=1",
            H_CONTACTS, NULL);
    expect_error(&r, 400, "Version header must be 2021-04-15 for this "
                          "endpoint");
    r = req("GET", path, H_CONTACTS, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"contact\":null"), "%s", r.body);
}

Test(sbghl, contact_validation_duplicates_and_search)
{
    struct it_resp r = req("POST", "/contacts/", H_CONTACTS,
                           "{\"firstName\":\"Al\",\"bogus\":1,\"dnd\":\"y\","
                           "\"tags\":[1]}");
    expect_error(&r, 422, "locationId should not be empty");
    expect_error(&r, 422, "property bogus should not exist");
    expect_error(&r, 422, "dnd must be a boolean value");
    expect_error(&r, 422, "each value in tags must be a string");
    r = req("POST", "/contacts/", H_CONTACTS, "[1]");
    expect_error(&r, 400, "Bad Request");
    r = req("POST", "/contacts/", H_CONTACTS,
            "{\"locationId\":\"" LOC "\",\"customFields\":[{\"field_value\":"
            "\"x\"}]}");
    expect_error(&r, 422, "customFields.0.id must be a string");
    cr_expect_eq(count("contacts"), 0, "nothing stored after a 422");

    char *id = new_contact("{\"locationId\":\"" LOC "\",\"firstName\":\"Al\","
                           "\"lastName\":\"Bo\",\"email\":\"Al@Example.com\","
                           "\"phone\":\"+14155550100\",\"customFields\":"
                           "[{\"id\":\"cf1\",\"field_value\":\"v1\"}]}");
    /* Same email in another case: HighLevel's duplicate answer. */
    r = req("POST", "/contacts/", H_CONTACTS,
            "{\"locationId\":\"" LOC "\",\"email\":\"al@example.COM\"}");
    expect_error(&r, 400, "This location does not allow duplicated contacts.");
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "meta"), "contactId")),
                     id);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "meta"), "matchingField")),
                     "email");
    json_decref(j);
    /* Found by phone (formatted differently) and by email. */
    r = req("GET", "/contacts/search/duplicate?locationId=" LOC
                   "&number=%2B1%20415%20555%200100",
            H_CONTACTS, NULL);
    j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "contact"), "id")),
                     id);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "contact"), "name")),
                     "Al Bo");
    json_decref(j);
    r = req("GET", "/contacts/search/duplicate?locationId=other"
                   "&email=al%40example.com",
            H_CONTACTS, NULL);
    cr_expect(strstr(r.body, "\"contact\":null"), "other location: %s",
              r.body);
    r = req("GET", "/contacts/search/duplicate", H_CONTACTS, NULL);
    expect_error(&r, 422, "locationId should not be empty");

    /* Update: no locationId; tags replace; custom fields merge by id. */
    char *path = xasprintf("/contacts/%s", id);
    r = req("PUT", path, H_CONTACTS, "{\"locationId\":\"" LOC "\"}");
    expect_error(&r, 422, "property locationId should not exist");
    r = req("PUT", path, H_CONTACTS,
            "{\"tags\":[\"a\"],\"customFields\":[{\"id\":\"cf2\","
            "\"field_value\":\"v2\"},{\"id\":\"cf1\",\"field_value\":"
            "\"v1b\"}]}");
    cr_expect_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("GET", path, H_CONTACTS, NULL);
    j = jbody(&r);
    json_t *c = json_object_get(j, "contact");
    json_t *want = json_loads("[{\"id\":\"cf1\",\"value\":\"v1b\"},{\"id\":"
                              "\"cf2\",\"value\":\"v2\"}]",
                              0, NULL);
    cr_expect(json_equal(json_object_get(c, "customFields"), want));
    cr_expect_eq(json_array_size(json_object_get(c, "tags")), 1);
    json_decref(want);
    json_decref(j);
    r = req("PUT", "/contacts/nosuch", H_CONTACTS, "{}");
    expect_error(&r, 400, "Contact with id nosuch not found");
    /* Upsert finds the same contact. */
    r = req("POST", "/contacts/upsert", H_CONTACTS,
            "{\"locationId\":\"" LOC "\",\"phone\":\"+14155550100\","
            "\"city\":\"Oakland\"}");
    cr_expect_eq(r.status, 200);
    j = jbody(&r);
    cr_expect(json_is_false(json_object_get(j, "new")));
    json_decref(j);
    cr_expect_eq(count("contacts"), 1);
    free(path);
    free(id);
}

Test(sbghl, notes_and_workflows)
{
    char *id = new_contact("{\"locationId\":\"" LOC "\",\"phone\":"
                           "\"+14155550101\"}");
    char *path = xasprintf("/contacts/%s/notes", id);
    struct it_resp r = req("POST", path, H_CONTACTS, "{\"title\":\"t\"}");
    expect_error(&r, 422, "body should not be empty");
    r = req("POST", "/contacts/ghost/notes", H_CONTACTS, "{\"body\":\"x\"}");
    expect_error(&r, 400, "Contact with id ghost not found");
    r = req("POST", path, H_CONTACTS, "{\"body\":\"hello\",\"userId\":\"u1\"}");
    cr_assert_eq(r.status, 201);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "note"), "body")),
                     "hello");
    json_decref(j);
    r = req("GET", path, H_CONTACTS, NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "notes")), 1);
    json_decref(j);
    free(path);

    path = xasprintf("/contacts/%s/workflow/wf9", id);
    r = req("POST", path, H_CONTACTS, "{\"eventStartTime\":5}");
    expect_error(&r, 422, "eventStartTime must be a string");
    r = req("POST", path, H_CONTACTS, "{}");
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"succeded\":true"));
    cr_expect_eq(count("enrollments"), 1);
    free(path);
    free(id);
}

Test(sbghl, appointments_and_events)
{
    char *id = new_contact("{\"locationId\":\"" LOC "\",\"phone\":"
                           "\"+14155550102\"}");
    struct it_resp r = req("POST", "/calendars/events/appointments",
                           H_CALENDARS,
                           "{\"calendarId\":\"c1\",\"appointmentStatus\":"
                           "\"maybe\"}");
    expect_error(&r, 422, "locationId should not be empty");
    expect_error(&r, 422, "contactId should not be empty");
    expect_error(&r, 422, "startTime should not be empty");
    expect_error(&r, 422, "appointmentStatus must be a valid enum value");
    char *body = xasprintf("{\"calendarId\":\"c1\",\"locationId\":\"" LOC
                           "\",\"contactId\":\"%s\",\"startTime\":"
                           "\"2026-02-20T14:00:00-06:00\",\"endTime\":"
                           "\"2026-02-20T15:00:00-06:00\",\"title\":\"T\"}",
                           id);
    r = req("POST", "/calendars/events/appointments", H_CALENDARS, body);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    cr_expect(json_string_value(json_object_get(j, "id")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "contactId")), id);
    json_decref(j);
    /* The slot is taken now, unless validation is skipped. */
    r = req("POST", "/calendars/events/appointments", H_CALENDARS, body);
    expect_error(&r, 400,
                 "The slot you have selected is no longer available.");
    free(body);
    body = xasprintf("{\"calendarId\":\"c1\",\"locationId\":\"" LOC
                     "\",\"contactId\":\"%s\",\"startTime\":"
                     "\"2026-02-20T14:30:00-06:00\","
                     "\"ignoreFreeSlotValidation\":true}",
                     id);
    r = req("POST", "/calendars/events/appointments", H_CALENDARS, body);
    cr_expect_eq(r.status, 200);
    free(body);
    /* 20:00Z .. 20:15Z holds the first one only. */
    r = req("GET",
            "/calendars/events?locationId=" LOC "&calendarId=c1"
            "&startTime=1771617600000&endTime=1771618500000",
            H_CALENDARS, NULL);
    j = jbody(&r);
    json_t *ev = json_object_get(j, "events");
    cr_expect_eq(json_array_size(ev), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(ev, 0), "startTime")),
                     "2026-02-20T14:00:00-06:00");
    json_decref(j);
    r = req("GET", "/calendars/events?locationId=" LOC, H_CALENDARS, NULL);
    expect_error(&r, 422, "Either of calendarId, userId or groupId is "
                          "required");
    cr_expect_eq(count("appointments"), 2);
    free(id);
}

Test(sbghl, opportunities)
{
    char *id = new_contact("{\"locationId\":\"" LOC "\",\"phone\":"
                           "\"+14155550103\"}");
    struct it_resp r = req("POST", "/opportunities/", H_CONTACTS,
                           "{\"pipelineId\":\"p1\",\"status\":\"maybe\","
                           "\"monetaryValue\":\"lots\"}");
    expect_error(&r, 422, "name should not be empty");
    expect_error(&r, 422, "status must be a valid enum value");
    expect_error(&r, 422, "monetaryValue must be a number conforming to the "
                          "specified constraints");
    char *body = xasprintf("{\"pipelineId\":\"p1\",\"locationId\":\"" LOC
                           "\",\"name\":\"N\",\"status\":\"open\","
                           "\"contactId\":\"%s\",\"monetaryValue\":100}",
                           id);
    r = req("POST", "/opportunities/", H_CONTACTS, body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    r = req("POST", "/opportunities/", H_CONTACTS, body);
    expect_error(&r, 400,
                 "Can not create duplicate opportunity for the contact.");
    free(body);
    char *q = xasprintf("/opportunities/search?location_id=" LOC
                        "&pipeline_id=p1&contact_id=%s&status=all",
                        id);
    r = req("GET", q, H_CONTACTS, NULL);
    json_t *j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "opportunities")), 1);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(j, "meta"), "total")),
                 1);
    json_decref(j);
    free(q);
    r = req("GET", "/opportunities/search?location_id=" LOC "&status=won",
            H_CONTACTS, NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "opportunities")), 0);
    json_decref(j);
    r = req("GET", "/opportunities/search", H_CONTACTS, NULL);
    expect_error(&r, 422, "location_id should not be empty");
    free(id);
}

Test(sbghl_opts, rate_limit_headers_and_429)
{
    start_with("3", "5");
    const char *path = "/contacts/search/duplicate?locationId=" LOC;
    char v[128];
    struct it_resp r = req("GET", path, H_CONTACTS, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Max", v), "3");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "2");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Interval-Milliseconds", v),
                     "10000");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Limit-Daily", v), "5");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Daily-Remaining", v), "4");
    req("GET", path, H_CONTACTS, NULL);
    r = req("GET", path, H_CONTACTS, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "0");
    r = req("GET", path, H_CONTACTS, NULL);
    expect_error(&r, 429, "Too Many Requests");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "0");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Daily-Remaining", v), "2");
}

Test(sbghl_opts, daily_limit)
{
    start_with("100", "2");
    const char *path = "/contacts/search/duplicate?locationId=" LOC;
    char v[128];
    req("GET", path, H_CONTACTS, NULL);
    struct it_resp r = req("GET", path, H_CONTACTS, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Daily-Remaining", v), "0");
    r = req("GET", path, H_CONTACTS, NULL);
    expect_error(&r, 429, "Too Many Requests");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "98");
}

Test(sbghl, faults_and_records)
{
    const char *rules =
        "[{\"provider\":\"gohighlevel\",\"path_prefix\":\"/opportunities\","
        "\"status\":503,\"count\":1},"
        "{\"provider\":\"gohighlevel\",\"method\":\"POST\",\"path_prefix\":"
        "\"/contacts/\",\"hang\":true,\"process\":true,\"hang_ms\":300,"
        "\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("GET", "/opportunities/search?location_id=" LOC, H_CONTACTS,
            NULL);
    expect_error(&r, 503, "Internal server error");
    char v[128];
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Max", v), "1000");
    r = req("GET", "/opportunities/search?location_id=" LOC, H_CONTACTS,
            NULL);
    cr_expect_eq(r.status, 200, "the rule fired once");

    /* The hang handles the create, then never answers. */
    const char *body = "{\"locationId\":\"" LOC "\",\"phone\":"
                       "\"+14155550104\"}";
    char *text = xasprintf("POST /gohighlevel/contacts/ HTTP/1.1\r\n"
                           "Host: t\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" H_CONTACTS "\r\n%s",
                           strlen(body), body);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count("contacts"), 1, "the write happened");
    r = req("POST", "/contacts/", H_CONTACTS, body);
    expect_error(&r, 400, "This location does not allow duplicated contacts.");

    r = it_get(sb_port, "/_sandbox/records?provider=gohighlevel&type=bogus");
    cr_expect_eq(r.status, 400);
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(count("contacts"), 0);
    r = it_post(sb_port, "/_sandbox/faults", NULL,
                "[{\"process\":true}]", 18);
    cr_expect_eq(r.status, 400, "process needs hang");
}
