/*
 * test_sandbox_salesforce.c - the Salesforce part of the built
 * callsync-sandbox: bearer auth (INVALID_SESSION_ID), API versions,
 * sObject create/read/update/delete with Salesforce's validation errors,
 * upsert by an external id (201, 200, 300), blocking duplicate rules
 * (DUPLICATES_DETECTED naming the record), the SOQL shapes callsync sends
 * and the errors for others, Sforce-Limit-Info and REQUEST_LIMIT_EXCEEDED,
 * fault rules (including a hang that processes the request first) and the
 * /_sandbox records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"
#include "prov.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define TOKEN "00D5g000004SBOX!AQ4AQSandboxToken"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define V "/salesforce/services/data/v66.0"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *daily, const char *duplicates)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--salesforce-token", (char *)TOKEN,
                    (char *)"--salesforce-daily", (char *)daily,
                    (char *)"--salesforce-duplicates", (char *)duplicates,
                    NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbsf_%d.log", (int)getpid());
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
    start_with("100000", "allow");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbsf, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbsf_opts, .fini = stop, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------ */

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *text = xasprintf("%s %s HTTP/1.1\r\nHost: t\r\n"
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

static struct it_resp api(const char *method, const char *path,
                          const char *body)
{
    char *full = xasprintf(V "%s", path);
    struct it_resp r = req(method, full, AUTH, body);
    free(full);
    return r;
}

static struct it_resp query(const char *soql)
{
    char *q = prov_url_escape(soql);
    char *path = xasprintf("/query?q=%s", q);
    struct it_resp r = api("GET", path, NULL);
    free(path);
    free(q);
    return r;
}

static json_t *jbody(const struct it_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &e);
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

/* status, and Salesforce's error array whose first error has this code
 * and a message containing says. */
static void expect_error(const struct it_resp *r, int status,
                         const char *code, const char *says)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    cr_assert(json_is_array(j), "errors are a list: %.*s", (int)r->body_len,
              r->body);
    json_t *e = json_array_get(j, 0);
    cr_expect_str_eq(json_string_value(json_object_get(e, "errorCode")),
                     code);
    const char *m = json_string_value(json_object_get(e, "message"));
    cr_expect(m && strstr(m, says), "message '%s' lacks '%s'", m, says);
    json_decref(j);
}

/* Create a record; its id (caller frees). */
static char *create(const char *object, const char *body)
{
    char *path = xasprintf("/sobjects/%s", object);
    struct it_resp r = api("POST", path, body);
    free(path);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    cr_expect(json_is_true(json_object_get(j, "success")));
    cr_expect_eq(json_array_size(json_object_get(j, "errors")), 0);
    char *id = xstrdup(json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return id;
}

/* The records of a query answer (new reference). */
static json_t *query_records(const char *soql)
{
    struct it_resp r = query(soql);
    cr_assert_eq(r.status, 200, "%s: %.*s", soql, (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    json_t *recs = json_incref(json_object_get(j, "records"));
    cr_expect_eq(json_integer_value(json_object_get(j, "totalSize")),
                 (json_int_t)json_array_size(recs));
    cr_expect(json_is_true(json_object_get(j, "done")));
    json_decref(j);
    return recs;
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=salesforce&type=%s&count=1", type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

#define LEAD_BODY(last, phone, email)                                        \
    "{\"LastName\":\"" last "\",\"Company\":\"[not provided]\",\"Phone\":\"" \
    phone "\",\"Email\":\"" email "\"}"

/* ---- Auth, versions, limits --------------------------------------------- */

Test(sbsf, bearer_auth_is_checked)
{
    struct it_resp r = req("GET", V "/query?q=SELECT%20Id%20FROM%20Lead",
                           NULL, NULL);
    expect_error(&r, 401, "INVALID_SESSION_ID", "Session expired or invalid");
    r = req("GET", V "/query?q=SELECT%20Id%20FROM%20Lead",
            "Authorization: Bearer someone-else\r\n", NULL);
    expect_error(&r, 401, "INVALID_SESSION_ID", "Session expired or invalid");
    r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead", NULL);
    cr_expect_eq(r.status, 200);
}

Test(sbsf, versions_and_unknown_resources)
{
    struct it_resp r = req("GET", "/salesforce/services/data/", AUTH, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    cr_expect(json_is_array(j) && json_array_size(j) > 10);
    json_t *last = json_array_get(j, json_array_size(j) - 1);
    cr_expect_str_eq(json_string_value(json_object_get(last, "url")),
                     "/services/data/v68.0");
    json_decref(j);
    r = req("GET", "/salesforce/services/data/v99.0/sobjects/Lead/x", AUTH,
            NULL);
    expect_error(&r, 404, "NOT_FOUND", "does not exist");
    r = api("POST", "/sobjects/Widget__x", "{}");
    expect_error(&r, 404, "NOT_FOUND", "does not exist");
    r = api("PUT", "/sobjects/Lead", "{}");
    expect_error(&r, 405, "METHOD_NOT_ALLOWED", "POST");
}

Test(sbsf, every_answer_carries_the_usage)
{
    char v[128];
    struct it_resp r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead", NULL);
    cr_expect_str_eq(hdr(&r, "Sforce-Limit-Info", v),
                     "api-usage=1/100000");
    r = api("POST", "/sobjects/Lead", "{}");
    cr_expect_eq(r.status, 400);
    cr_expect_str_eq(hdr(&r, "Sforce-Limit-Info", v),
                     "api-usage=2/100000");
    /* The versions resource is free. */
    r = req("GET", "/salesforce/services/data/", AUTH, NULL);
    cr_expect_str_eq(hdr(&r, "Sforce-Limit-Info", v),
                     "api-usage=2/100000");
}

Test(sbsf_opts, the_daily_allocation_runs_out)
{
    start_with("3", "allow");
    char v[128];
    for (int i = 0; i < 3; i++) {
        struct it_resp r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead",
                               NULL);
        cr_expect_eq(r.status, 200, "request %d", i);
    }
    struct it_resp r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead",
                           NULL);
    expect_error(&r, 403, "REQUEST_LIMIT_EXCEEDED",
                 "TotalRequests Limit exceeded.");
    cr_expect_str_eq(hdr(&r, "Sforce-Limit-Info", v), "api-usage=3/3");
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(r.status, 200);
    r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead", NULL);
    cr_expect_eq(r.status, 200, "a reset starts a new day");
}

/* ---- sObjects ----------------------------------------------------------- */

Test(sbsf, lead_create_read_update_delete)
{
    char *id = create("Lead", LEAD_BODY("Bell", "+13125550187",
                                        "Marcus.Bell@example.org"));
    cr_expect_eq(strncmp(id, "00Q", 3), 0, "a lead id: %s", id);
    cr_expect_eq(strlen(id), 18);
    char *path = xasprintf("/sobjects/Lead/%s", id);
    struct it_resp r = api("GET", path, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "Status")),
                     "Open - Not Contacted", "the default status");
    cr_expect(json_is_false(json_object_get(j, "IsConverted")));
    const char *cd = json_string_value(json_object_get(j, "CreatedDate"));
    cr_expect(cd && strlen(cd) == 28 && strcmp(cd + 23, "+0000") == 0,
              "Salesforce's datetime form: %s", cd);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "attributes"), "type")),
                     "Lead");
    json_decref(j);

    r = api("PATCH", path, "{\"FirstName\":\"Marcus\",\"Rating\":\"Hot\"}");
    cr_expect_eq(r.status, 204, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(r.body_len, 0);
    char *fpath = xasprintf("%s?fields=Id,FirstName,rating", path);
    r = api("GET", fpath, NULL);
    free(fpath);
    j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "FirstName")),
                     "Marcus");
    cr_expect_str_eq(json_string_value(json_object_get(j, "Rating")), "Hot",
                     "fields answer under their own names");
    cr_expect_null(json_object_get(j, "LastName"), "only the fields asked");
    json_decref(j);

    r = api("PATCH", path, "{\"IsConverted\":true}");
    expect_error(&r, 400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                 "Unable to create/update fields: IsConverted");
    r = api("PATCH", "/sobjects/Lead/00QSb0000000009999", "{}");
    expect_error(&r, 404, "NOT_FOUND", "does not exist");

    r = api("DELETE", path, NULL);
    cr_expect_eq(r.status, 204);
    r = api("PATCH", path, "{\"FirstName\":\"M\"}");
    expect_error(&r, 404, "ENTITY_IS_DELETED", "entity is deleted");
    cr_expect_eq(count("leads"), 0);
    free(path);
    free(id);
}

Test(sbsf, create_is_validated_as_salesforce_does)
{
    static const struct {
        const char *object, *body, *code, *says;
    } cases[] = {
        {"Lead", "{\"FirstName\":\"x\"}", "REQUIRED_FIELD_MISSING",
         "Required fields are missing: [LastName, Company]"},
        {"Lead", "{\"LastName\":\"x\",\"Company\":\"\"}",
         "REQUIRED_FIELD_MISSING", "[Company]"},
        {"Lead", "{\"LastName\":\"x\",\"Company\":\"c\",\"Foo\":1}",
         "INVALID_FIELD", "No such column 'Foo' on sobject of type Lead"},
        {"Lead", "{\"LastName\":\"x\",\"Company\":\"c\",\"Id\":"
                 "\"00QSb0000000000001\"}",
         "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: "
                                            "Id"},
        {"Lead", "{\"LastName\":\"x\",\"Company\":\"c\",\"Email\":\"nope\"}",
         "INVALID_EMAIL_ADDRESS", "Email: invalid email address: nope"},
        {"Lead", "{\"LastName\":\"x\",\"Company\":\"c\",\"Status\":\"Hot\"}",
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
         "Status: bad value for restricted picklist field: Hot"},
        {"Lead", "{\"LastName\":\"0123456789012345678901234567890123456789"
                 "01234567890123456789012345678901234567890\",\"Company\":"
                 "\"c\"}",
         "STRING_TOO_LONG", "(max length=80)"},
        {"Lead", "{\"LastName\":{\"a\":1},\"Company\":\"c\"}",
         "JSON_PARSER_ERROR", "Cannot deserialize instance of string"},
        {"Lead", "[1]", "JSON_PARSER_ERROR", "not a JSON object"},
        {"Task", "{\"WhoId\":\"abc\"}", "MALFORMED_ID",
         "Name ID: id value of incorrect type: abc"},
        {"Task", "{\"WhoId\":\"001Sb0000000000001\"}", "MALFORMED_ID",
         "id value of incorrect type"},
        {"Task", "{\"WhoId\":\"00QSb0000000009999\"}",
         "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"},
        {"Task", "{\"CallType\":\"Sideways\"}",
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Call Type"},
        {"Task", "{\"ActivityDate\":\"2026-02-30\"}", "JSON_PARSER_ERROR",
         "instance of date"},
        {"Task", "{\"CallDurationInSeconds\":\"long\"}", "JSON_PARSER_ERROR",
         "instance of int"},
        {"Event", "{\"StartDateTime\":\"2026-02-20T19:00:00Z\"}",
         "REQUIRED_FIELD_MISSING", "[DurationInMinutes]"},
        {"Event", "{\"StartDateTime\":\"2026-02-20T19:00:00Z\","
                  "\"EndDateTime\":\"2026-02-20T18:00:00Z\"}",
         "FIELD_INTEGRITY_EXCEPTION", "before the start"},
        {"Event", "{\"StartDateTime\":\"2026-02-20T19:00:00Z\","
                  "\"EndDateTime\":\"2026-03-20T18:00:00Z\"}",
         "FIELD_INTEGRITY_EXCEPTION", "14 days"},
        {"Event", "{\"StartDateTime\":\"20 Feb\",\"DurationInMinutes\":5}",
         "JSON_PARSER_ERROR", "instance of datetime"},
        {"Opportunity", "{\"Name\":\"x\"}", "REQUIRED_FIELD_MISSING",
         "[StageName, CloseDate]"},
        {"Opportunity", "{\"Name\":\"x\",\"StageName\":\"Maybe\","
                        "\"CloseDate\":\"2026-03-01\"}",
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Stage"},
        {"Contact", "{\"LastName\":\"x\",\"AccountId\":"
                    "\"001Sb0000000009999\"}",
         "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        char *path = xasprintf("/sobjects/%s", cases[i].object);
        struct it_resp r = api("POST", path, cases[i].body);
        free(path);
        cr_expect_eq(r.status, 400, "case %zu: %d %.*s", i, r.status,
                     (int)r.body_len, r.body);
        if (r.status == 400)
            expect_error(&r, 400, cases[i].code, cases[i].says);
    }
    cr_expect_eq(count("leads") + count("tasks") + count("events") +
                     count("opportunities") + count("contacts"),
                 0, "nothing was written");
}

Test(sbsf, activities_and_opportunities)
{
    char *lead = create("Lead", LEAD_BODY("Bell", "+13125550187",
                                          "m@example.org"));
    char *body = xasprintf(
        "{\"Subject\":\"Inbound call\",\"WhoId\":\"%s\",\"Status\":"
        "\"Completed\",\"TaskSubtype\":\"Call\",\"CallType\":\"Inbound\","
        "\"CallDurationInSeconds\":241,\"ActivityDate\":\"2026-02-17\","
        "\"Description\":\"x\\nSync reference: callsync:abc\"}",
        lead);
    char *task = create("Task", body);
    free(body);
    cr_expect_eq(strncmp(task, "00T", 3), 0);
    char *path = xasprintf("/sobjects/Task/%s", task);
    struct it_resp r = api("GET", path, NULL);
    json_t *j = jbody(&r);
    cr_expect(json_is_true(json_object_get(j, "IsClosed")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "Priority")),
                     "Normal");
    json_decref(j);
    /* The subtype is set at creation only. */
    r = api("PATCH", path, "{\"TaskSubtype\":\"Task\"}");
    expect_error(&r, 400, "INVALID_FIELD_FOR_INSERT_UPDATE", "TaskSubtype");
    free(path);

    body = xasprintf("{\"Subject\":\"Inspection\",\"WhoId\":\"%s\","
                     "\"StartDateTime\":\"2026-02-20T14:00:00-06:00\","
                     "\"EndDateTime\":\"2026-02-20T21:00:00.000+0000\"}",
                     lead);
    char *event = create("Event", body);
    free(body);
    path = xasprintf("/sobjects/Event/%s", event);
    r = api("GET", path, NULL);
    j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "StartDateTime")),
                     "2026-02-20T20:00:00.000+0000");
    cr_expect_eq(json_integer_value(json_object_get(j, "DurationInMinutes")),
                 60);
    cr_expect_str_eq(json_string_value(json_object_get(j, "ActivityDate")),
                     "2026-02-20");
    json_decref(j);
    free(path);

    char *opp = create("Opportunity",
                       "{\"Name\":\"Bell roof\",\"StageName\":\"Closed Won\","
                       "\"CloseDate\":\"2026-03-17\",\"Amount\":25000}");
    path = xasprintf("/sobjects/Opportunity/%s", opp);
    r = api("GET", path, NULL);
    j = jbody(&r);
    cr_expect(json_is_true(json_object_get(j, "IsWon")));
    cr_expect(json_is_true(json_object_get(j, "IsClosed")));
    json_decref(j);
    free(path);
    free(lead);
    free(task);
    free(event);
    free(opp);
}

/* ---- Upsert and duplicates ---------------------------------------------- */

Test(sbsf, upsert_by_external_id)
{
    const char *body = "{\"LastName\":\"Bell\",\"Company\":\"c\"}";
    struct it_resp r = api("PATCH", "/sobjects/Lead/Caller_Key__c/"
                                    "%2B13125550187", body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    cr_expect(json_is_true(json_object_get(j, "created")));
    char *id = xstrdup(json_string_value(json_object_get(j, "id")));
    json_decref(j);
    r = api("PATCH", "/sobjects/Lead/Caller_Key__c/%2B13125550187",
            "{\"FirstName\":\"Marcus\"}");
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    j = jbody(&r);
    cr_expect(json_is_false(json_object_get(j, "created")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "id")), id);
    json_decref(j);
    /* Before API 46.0 an update answers 204. */
    r = req("PATCH",
            "/salesforce/services/data/v45.0/sobjects/Lead/Caller_Key__c/"
            "%2B13125550187",
            AUTH, "{\"Title\":\"Owner\"}");
    cr_expect_eq(r.status, 204);
    cr_expect_eq(count("leads"), 1);
    json_t *recs = query_records("SELECT Id, caller_key__c FROM Lead WHERE "
                                 "Caller_Key__c = '+13125550187'");
    cr_assert_eq(json_array_size(recs), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(recs, 0), "Caller_Key__c")),
                     "+13125550187");
    json_decref(recs);

    /* A second record with the key makes it ambiguous: 300. */
    char *other = create("Lead", "{\"LastName\":\"Twin\",\"Company\":\"c\","
                                 "\"Caller_Key__c\":\"+13125550187\"}");
    r = api("PATCH", "/sobjects/Lead/Caller_Key__c/%2B13125550187", body);
    cr_expect_eq(r.status, 300);
    j = jbody(&r);
    cr_expect_eq(json_array_size(j), 2);
    json_decref(j);
    r = api("PATCH", "/sobjects/Lead/Phone/%2B13125550187", body);
    expect_error(&r, 404, "NOT_FOUND", "external ID field does not exist");
    free(id);
    free(other);
}

Test(sbsf_opts, blocking_duplicate_rules)
{
    start_with("100000", "block");
    char *first = create("Lead", LEAD_BODY("Bell", "(312) 555-0187",
                                           "marcus@example.org"));
    /* Same number in another format. */
    struct it_resp r = api("POST", "/sobjects/Lead",
                           LEAD_BODY("Other", "+13125550187",
                                     "other@example.org"));
    expect_error(&r, 400, "DUPLICATES_DETECTED", "Use one of these records?");
    json_t *j = jbody(&r);
    json_t *rec = json_object_get(
        json_array_get(json_object_get(
                           json_array_get(json_object_get(
                                              json_object_get(
                                                  json_array_get(j, 0),
                                                  "duplicateResult"),
                                              "matchResults"),
                                          0),
                           "matchRecords"),
                       0),
        "record");
    cr_expect_str_eq(json_string_value(json_object_get(rec, "Id")), first);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(rec, "attributes"), "type")),
                     "Lead");
    json_decref(j);
    /* Same email, other case. */
    r = api("POST", "/sobjects/Lead",
            LEAD_BODY("Other", "+13125550999", "MARCUS@example.org"));
    expect_error(&r, 400, "DUPLICATES_DETECTED", "Use one");
    /* A contact is another kind: allowed. */
    char *c = create("Contact", "{\"LastName\":\"Bell\",\"Email\":"
                                "\"marcus@example.org\"}");
    /* An edit that makes a duplicate is refused too. */
    char *second = create("Lead", LEAD_BODY("Second", "+13125550999",
                                            "second@example.org"));
    char *path = xasprintf("/sobjects/Lead/%s", second);
    r = api("PATCH", path, "{\"Email\":\"marcus@example.org\"}");
    expect_error(&r, 400, "DUPLICATES_DETECTED", "Use one");
    cr_expect_eq(count("leads"), 2);
    free(path);
    free(first);
    free(second);
    free(c);
}

/* ---- SOQL --------------------------------------------------------------- */

Test(sbsf, soql_shapes_callsync_sends)
{
    char *a = create("Lead", LEAD_BODY("Bell", "(312) 555-0187",
                                       "Marcus.Bell@example.org"));
    char *b = create("Lead", LEAD_BODY("O\\u0027Brien", "+14155550100",
                                       "ob@example.org"));
    json_t *recs = query_records(
        "SELECT Id, FirstName, LastName, Company, Email, Phone, MobilePhone "
        "FROM Lead WHERE (Phone IN ('+13125550187', '(312) 555-0187') OR "
        "MobilePhone IN ('+13125550187', '(312) 555-0187') OR Email = "
        "'marcus.bell@EXAMPLE.org') AND IsConverted = false ORDER BY "
        "CreatedDate ASC LIMIT 10");
    cr_assert_eq(json_array_size(recs), 1);
    json_t *r0 = json_array_get(recs, 0);
    cr_expect_str_eq(json_string_value(json_object_get(r0, "Id")), a);
    cr_expect(json_is_null(json_object_get(r0, "FirstName")),
              "selected fields without a value are null");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(r0, "attributes"), "type")),
                     "Lead");
    json_decref(recs);

    /* Escapes: a quote in a name. */
    recs = query_records("SELECT Id FROM Lead WHERE LastName = 'o\\'brien'");
    cr_assert_eq(json_array_size(recs), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(recs, 0), "Id")),
                     b);
    json_decref(recs);

    /* Tasks of a lead since a time, newest first. */
    for (int i = 0; i < 3; i++) {
        char *body = xasprintf("{\"Subject\":\"t%d\",\"WhoId\":\"%s\","
                               "\"Description\":\"n%d\"}",
                               i, a, i);
        free(create("Task", body));
        free(body);
    }
    char *soql = xasprintf("SELECT Id, Subject, Description FROM Task WHERE "
                           "WhoId = '%s' AND CreatedDate >= "
                           "2020-01-01T00:00:00Z ORDER BY CreatedDate DESC "
                           "LIMIT 2",
                           a);
    recs = query_records(soql);
    free(soql);
    cr_assert_eq(json_array_size(recs), 2);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(recs, 0), "Subject")),
                     "t2");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(recs, 1), "Description")),
                     "n1");
    json_decref(recs);
    soql = xasprintf("SELECT Id FROM Task WHERE WhoId = '%s' AND "
                     "CreatedDate >= 2099-01-01T00:00:00Z", a);
    recs = query_records(soql);
    free(soql);
    cr_expect_eq(json_array_size(recs), 0);
    json_decref(recs);

    /* An event at a start given in another offset. */
    char *body = xasprintf("{\"WhoId\":\"%s\",\"StartDateTime\":"
                           "\"2026-02-20T14:00:00-06:00\","
                           "\"DurationInMinutes\":60}",
                           a);
    char *ev = create("Event", body);
    free(body);
    soql = xasprintf("SELECT Id, Subject, Description, StartDateTime FROM "
                     "Event WHERE WhoId = '%s' AND StartDateTime = "
                     "2026-02-20T20:00:00Z ORDER BY CreatedDate ASC LIMIT 10",
                     a);
    recs = query_records(soql);
    free(soql);
    cr_assert_eq(json_array_size(recs), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(recs, 0), "Id")),
                     ev);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(recs, 0), "StartDateTime")),
                     "2026-02-20T20:00:00.000+0000");
    json_decref(recs);

    /* NOT, != and NOT IN. */
    recs = query_records("SELECT Id FROM Lead WHERE NOT (LastName = 'Bell') "
                         "AND Email != null AND Phone NOT IN ('1')");
    cr_expect_eq(json_array_size(recs), 1);
    json_decref(recs);
    free(a);
    free(b);
    free(ev);
}

Test(sbsf, soql_refuses_what_it_does_not_know)
{
    static const struct {
        const char *soql, *code, *says;
    } cases[] = {
        {"SELECT Id FROM Lead WHERE LastName LIKE 'B%'", "MALFORMED_QUERY",
         "unexpected token: 'LIKE'"},
        {"SELECT Id FROM Lead WHERE LastName = 'a' AND Email = 'b' OR "
         "Phone = 'c'",
         "MALFORMED_QUERY", "unexpected token: 'OR'"},
        {"SELECT COUNT() FROM Lead", "MALFORMED_QUERY", "unexpected token"},
        {"SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", "<EOF>"},
        {"SELECT Id FROM Lead LIMIT 10 OFFSET 5", "MALFORMED_QUERY",
         "'OFFSET'"},
        {"SELECT Id, Owner.Name FROM Lead", "MALFORMED_QUERY",
         "'Owner.Name'"},
        {"SELECT Id FROM Lead WHERE LastName = 'a\\x'", "MALFORMED_QUERY",
         "unexpected token"},
        {"SELECT Id FROM Lead WHERE LastName = 'open", "MALFORMED_QUERY",
         "unexpected token"},
        {"SELECT Id, Id FROM Lead", "MALFORMED_QUERY",
         "duplicate field selected: Id"},
        {"SELECT Id FROM Widget", "INVALID_TYPE",
         "sObject type 'Widget' is not supported"},
        {"SELECT Id, Nickname FROM Lead", "INVALID_FIELD",
         "No such column 'Nickname' on entity 'Lead'"},
        {"SELECT Id FROM Task WHERE Description = 'x'", "INVALID_FIELD",
         "field 'Description' can not be filtered in a query call"},
        {"SELECT Id FROM Task WHERE CreatedDate >= '2026-01-01T00:00:00Z'",
         "INVALID_FIELD", "must be of type dateTime and should not be "
                          "enclosed in quotes"},
        {"SELECT Id FROM Lead WHERE IsConverted = 'false'", "INVALID_FIELD",
         "must be of type boolean"},
        {"SELECT Id FROM Lead WHERE LastName = 5", "INVALID_FIELD",
         "must be of type string and should be enclosed in quotes"},
        {"SELECT Id FROM Task WHERE WhoId = 'abc'",
         "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct it_resp r = query(cases[i].soql);
        cr_expect_eq(r.status, 400, "case %zu: %d", i, r.status);
        if (r.status == 400)
            expect_error(&r, 400, cases[i].code, cases[i].says);
    }
    struct it_resp r = api("GET", "/query", NULL);
    expect_error(&r, 400, "MALFORMED_QUERY", "query string");
}

/* ---- Faults and records ------------------------------------------------- */

Test(sbsf, faults_hang_and_records)
{
    const char *rules =
        "[{\"provider\":\"salesforce\",\"path_prefix\":\"/services/data/"
        "v66.0/query\",\"status\":503,\"count\":1},"
        "{\"provider\":\"salesforce\",\"method\":\"POST\",\"path_prefix\":"
        "\"/services/data/v66.0/sobjects/Task\",\"hang\":true,\"process\":"
        "true,\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead", NULL);
    expect_error(&r, 503, "SERVER_UNAVAILABLE", "temporarily unavailable");
    char v[128];
    cr_expect(strncmp(hdr(&r, "Sforce-Limit-Info", v), "api-usage=", 10) ==
                  0,
              "an injected answer has the usage header: '%s'", v);
    r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead", NULL);
    cr_expect_eq(r.status, 200, "the rule fired once");

    /* The hang handles the create, then never answers. */
    char *lead = create("Lead", LEAD_BODY("Bell", "+13125550187",
                                          "m@example.org"));
    char *body = xasprintf("{\"Subject\":\"Call\",\"WhoId\":\"%s\"}", lead);
    char *text = xasprintf("POST " V "/sobjects/Task HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" AUTH "\r\n%s",
                           strlen(body), body);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count("tasks"), 1, "the write happened");
    free(create("Task", body));
    cr_expect_eq(count("tasks"), 2);
    free(body);

    r = it_get(sb_port, "/_sandbox/records?provider=salesforce&type=tasks");
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    json_t *t = json_array_get(json_object_get(j, "records"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(t, "WhoId")), lead);
    json_decref(j);
    r = it_get(sb_port, "/_sandbox/records?provider=salesforce&type=tasks"
                        "&count=1&distinct=WhoId");
    j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "distinct")), 1);
    json_decref(j);
    r = it_get(sb_port, "/_sandbox/records?provider=salesforce&type=bogus");
    cr_expect_eq(r.status, 400);
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(count("tasks"), 0);
    cr_expect_eq(count("leads"), 0);
    r = api("GET", "/query?q=SELECT%20Id%20FROM%20Lead", NULL);
    cr_expect_str_eq(hdr(&r, "Sforce-Limit-Info", v), "api-usage=1/100000",
                     "a reset forgets the usage");
    free(lead);
}
