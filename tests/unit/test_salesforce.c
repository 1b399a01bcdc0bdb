/*
 * test_salesforce.c - the Salesforce provider, step by step: the exact
 * requests (method, URL under /services/data/vXX.X, the SOQL decoded from
 * the query string, JSON bodies compared as JSON), answers in the shapes
 * of the REST API Developer Guide's examples (create {"id", "errors",
 * "success"}, query {"totalSize", "done", "records"}, upsert "created",
 * the error array, DUPLICATES_DETECTED's duplicateResult), reconciliation,
 * applies() rules, field mappings, SOQL escaping, error classification
 * and Sforce-Limit-Info.
 */
#include "prov_support.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://sf.test/salesforce"
#define API BASE "/services/data/v66.0"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define MARKER "callsync:" JOB_ID
#define NOW_MS 1771166100000LL /* 2026-02-15T14:35:00Z */
#define LEAD "00Q5g00000ABCDeEAF"
#define CONTACT "0035g00000XYZabQAA"
#define ACCOUNT "0015g00000Acct1AAA"
#define CONFIG "{\"org_id\":\"00D5g000004ABCDEAZ\"}"
#define EMPTY "{\"totalSize\":0,\"done\":true,\"records\":[]}"

/* The REST API guide's create answer. */
#define CREATED(id) "{\"id\":\"" id "\",\"errors\":[],\"success\":true}"

/* ------------------------------------------------------------------ */
/* Fixture                                                            */
/* ------------------------------------------------------------------ */

struct fx {
    json_t *job;
    json_t *config;
    json_t *done;
    json_t *scratch;
    struct prov_creds creds;
    struct prov_ctx ctx;
};

static json_t *jparse(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    cr_assert_not_null(v, "bad test json: %s (%s)", e.text, s);
    return v;
}

static json_t *base_call(void)
{
    return jparse(
        "{\"call_id\":\"call_abc123\",\"source\":\"retell\","
        "\"agent_id\":\"agent_1\",\"org_id\":\"org_1\","
        "\"customer\":{\"name\":\"Jane Smith\",\"first_name\":\"Jane\","
        "\"last_name\":\"Smith\",\"phone\":\"+14079780655\","
        "\"email\":\"jane+roof@example.com\",\"address\":null,"
        "\"city\":\"Orlando\",\"state\":\"FL\"},"
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"summary\":\"Customer scheduled roof repair\","
        "\"sentiment\":\"positive\",\"transcript\":\"Agent: Hi\\nUser: Hello\","
        "\"recording_url\":\"https://rec.example.com/r/1.wav\","
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:35:00Z\",\"duration_s\":300,"
        "\"appointment\":{\"title\":\"Roof Repair\",\"date\":\"2026-02-20\","
        "\"time\":\"14:00\",\"timezone\":\"America/New_York\","
        "\"duration_min\":120,\"service_type\":\"roofing\"},"
        "\"analysis\":{\"intent\":\"appointment_booking\","
        "\"project_type\":\"kitchen\",\"urgency\":\"high\",\"lead_score\":87},"
        "\"custom\":{\"promo\":\"SPRING\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:o}", "job_id", JOB_ID,
                       "provider", "salesforce", "connection_id",
                       "7d0e1c52-0000-4000-8000-000000000001", "kind",
                       "call_sync", "attempt", 1, "first_enqueued_at",
                       "2026-02-15T14:35:02.000Z", "call", call);
    f->config = jparse(config ? config : CONFIG);
    f->done = json_object();
    f->scratch = json_object();
    f->creds.access_token = "00D5g000004ABCD!AQ4AQFakeToken";
    f->creds.instance_url = "https://acme.my.salesforce.com";
    f->ctx.job = f->job;
    f->ctx.call = json_object_get(f->job, "call");
    f->ctx.config = f->config;
    f->ctx.creds = &f->creds;
    f->ctx.done = f->done;
    f->ctx.scratch = f->scratch;
    f->ctx.base_url = BASE;
    f->ctx.now_ms = NOW_MS;
}

static void fx_release(struct fx *f)
{
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->done);
    json_decref(f->scratch);
}

static void fx_step(struct fx *f, bool reconcile)
{
    json_object_clear(f->scratch);
    f->ctx.reconcile = reconcile;
}

static void contact_done(struct fx *f, const char *id, const char *object,
                         const char *account)
{
    json_t *v = json_pack("{s:s,s:s}", "contact_id", id, "object", object);
    if (account)
        json_object_set_new(v, "account_id", json_string(account));
    json_object_set_new(f->done, "contact", v);
}

static void config_set(struct fx *f, const char *key, const char *json)
{
    json_object_set_new(f->config, key, jparse(json));
}

static const struct prov_step *step(const char *name)
{
    for (size_t i = 0; i < prov_salesforce.nsteps; i++)
        if (strcmp(prov_salesforce.steps[i].name, name) == 0)
            return &prov_salesforce.steps[i];
    cr_assert_fail("no step '%s'", name);
    return NULL;
}

static const char *hdr(const struct prov_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* Percent-decode s (the query parameter as sent). */
static char *pct_decode(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    size_t k = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '%' && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            out[k++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else {
            cr_assert(s[i] != '+' && s[i] != ' ' && s[i] != '\'',
                      "'%c' must be escaped in %s", s[i], s);
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

/* ------------------------------------------------------------------ */
/* Building and answering                                             */
/* ------------------------------------------------------------------ */

static void check_common(const struct prov_request *rq)
{
    cr_assert_str_eq(hdr(rq, "Authorization"),
                     "Bearer 00D5g000004ABCD!AQ4AQFakeToken");
    cr_assert_str_eq(hdr(rq, "Accept"), "application/json");
    if (rq->body) {
        cr_assert_str_eq(hdr(rq, "Content-Type"), "application/json");
        cr_assert_eq(rq->body_len, strlen(rq->body));
    } else {
        cr_assert_null(hdr(rq, "Content-Type"));
    }
}

/* Build a request of step name that must be method API<path>. */
static void build(struct fx *f, const char *name, struct prov_request *rq,
                  const char *method, const char *path)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    int rc = step(name)->build(&f->ctx, rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s (%s)", name, err.msg, err.field);
    cr_assert_str_eq(rq->method, method);
    char full[2048];
    snprintf(full, sizeof(full), "%s%s", API, path);
    cr_assert_str_eq(rq->url, full);
    check_common(rq);
}

/* Build a query of step name; returns the SOQL (caller frees). */
static char *build_query(struct fx *f, const char *name,
                         struct prov_request *rq)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    int rc = step(name)->build(&f->ctx, rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s (%s)", name, err.msg, err.field);
    cr_assert_str_eq(rq->method, "GET");
    const char *pfx = API "/query?q=";
    cr_assert(strncmp(rq->url, pfx, strlen(pfx)) == 0, "url %s", rq->url);
    check_common(rq);
    cr_assert_null(rq->body);
    return pct_decode(rq->url + strlen(pfx));
}

static void expect_soql(struct fx *f, const char *name, const char *want)
{
    struct prov_request rq;
    char *q = build_query(f, name, &rq);
    cr_expect_str_eq(q, want);
    free(q);
    prov_request_release(&rq);
}

static void expect_body(const struct prov_request *rq, const char *want)
{
    prov_expect_json(rq->body, want);
}

static json_t *body_of(const struct prov_request *rq)
{
    return jparse(rq->body);
}

static int build_err(struct fx *f, const char *name, struct cs_err *err)
{
    return prov_build_err(step(name), &f->ctx, err);
}

/* Feed an answer; headers as name, value pairs ending with NULL. */
static void answer(struct fx *f, const char *name, int status,
                   const char *body, struct prov_result *res, ...)
{
    va_list ap;
    va_start(ap, res);
    prov_feed_v(step(name), &f->ctx, status, body, res, 0, ap);
    va_end(ap);
}

static void expect_done(struct prov_result *res, const char *key,
                        const char *id)
{
    cr_assert_eq(res->outcome, PROV_DONE, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    cr_assert_str_eq(json_string_value(json_object_get(res->value, key)),
                     id);
}

static void expect_next(struct prov_result *res)
{
    cr_assert_eq(res->outcome, PROV_NEXT, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    prov_result_release(res);
}

/* A query answer with the given records (JSON array text). */
static char *records(const char *type, const char *recs)
{
    json_t *a = jparse(recs);
    size_t i;
    json_t *r;
    json_array_foreach(a, i, r) {
        const char *id = json_string_value(json_object_get(r, "Id"));
        json_object_set_new(
            r, "attributes",
            json_pack("{s:s,s:o}", "type", type, "url",
                      json_sprintf("/services/data/v66.0/sobjects/%s/%s",
                                   type, id ? id : "")));
    }
    json_t *o = json_pack("{s:I,s:b,s:o}", "totalSize",
                          (json_int_t)json_array_size(a), "done", 1,
                          "records", a);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

#define PHONES                                                               \
    "('+14079780655', '14079780655', '4079780655', '(407) 978-0655', "      \
    "'407-978-0655', '407.978.0655', '+1 (407) 978-0655', "                  \
    "'+1 407-978-0655')"
#define LEAD_FIELDS                                                          \
    "Id, FirstName, LastName, Company, Email, Phone, MobilePhone, Street, "  \
    "City, State"
#define LEAD_SEARCH                                                          \
    "SELECT " LEAD_FIELDS " FROM Lead WHERE (Phone IN " PHONES              \
    " OR MobilePhone IN " PHONES " OR Email = 'jane+roof@example.com') AND " \
    "IsConverted = false ORDER BY CreatedDate ASC LIMIT 10"

/* ------------------------------------------------------------------ */
/* The table                                                          */
/* ------------------------------------------------------------------ */

Test(sf, ops_table)
{
    cr_assert_eq(prov_find("salesforce"), &prov_salesforce);
    cr_expect_str_eq(prov_salesforce.name, "salesforce");
    cr_expect_eq(prov_salesforce.rate.requests, 5);
    cr_expect_eq(prov_salesforce.rate.per_ms, 1000);
    cr_expect_str_eq(prov_salesforce.rate_scope, "org_id");
    static const char *const names[] = {"contact", "task", "event",
                                        "opportunity"};
    cr_assert_eq(prov_salesforce.nsteps, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_expect_str_eq(prov_salesforce.steps[i].name, names[i]);
        cr_expect_eq(prov_salesforce.steps[i].reconcile,
                     PROV_RECONCILE_LOOKUP);
    }
}

/* ------------------------------------------------------------------ */
/* Contact                                                            */
/* ------------------------------------------------------------------ */

Test(sf, lead_search_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    expect_soql(&f, "contact", LEAD_SEARCH);
    answer(&f, "contact", 200, EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/sobjects/Lead");
    /* Company is required on a lead: Salesforce's placeholder. */
    expect_body(&rq, "{\"FirstName\":\"Jane\",\"LastName\":\"Smith\","
                     "\"Email\":\"jane+roof@example.com\",\"Phone\":"
                     "\"+14079780655\",\"City\":\"Orlando\",\"State\":\"FL\","
                     "\"Company\":\"[not provided]\"}");
    prov_request_release(&rq);
    answer(&f, "contact", 201, CREATED(LEAD), &res, NULL);
    expect_done(&res, "contact_id", LEAD);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "object")),
                     "Lead");
    cr_expect_eq(res.pause_ms, 0);
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, lead_create_with_configured_defaults)
{
    struct fx f;
    json_t *call = base_call();
    json_object_del(json_object_get(call, "customer"), "first_name");
    json_object_del(json_object_get(call, "customer"), "last_name");
    json_object_set_new(json_object_get(call, "customer"), "name",
                        json_string("Cher"));
    json_object_set_new(json_object_get(call, "customer"), "address",
                        json_string("1 Main St"));
    fx_init(&f, call,
            "{\"lead_company\":\"Summit Roofing prospects\","
            "\"lead_source\":\"Phone Inquiry\",\"lead_status\":"
            "\"Working - Contacted\",\"owner_id\":\"0055g00000Own01AAA\"}");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "contact", &rq, "POST", "/sobjects/Lead");
    /* A single name is the last name (required). */
    expect_body(&rq, "{\"LastName\":\"Cher\",\"Email\":"
                     "\"jane+roof@example.com\",\"Phone\":\"+14079780655\","
                     "\"Street\":\"1 Main St\",\"City\":\"Orlando\","
                     "\"State\":\"FL\",\"Company\":\"Summit Roofing "
                     "prospects\",\"LeadSource\":\"Phone Inquiry\","
                     "\"Status\":\"Working - Contacted\",\"OwnerId\":"
                     "\"0055g00000Own01AAA\"}");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(sf, lead_found_with_everything_needs_no_update)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    free(build_query(&f, "contact", &rq));
    prov_request_release(&rq);
    /* Found by the mobile number in another format. */
    char *ans = records("Lead",
                        "[{\"Id\":\"" LEAD "\",\"FirstName\":\"Janet\","
                        "\"LastName\":\"Smith\",\"Company\":\"Acme\","
                        "\"Email\":\"JANE+roof@example.com\",\"Phone\":null,"
                        "\"MobilePhone\":\"(407) 978-0655\",\"Street\":null,"
                        "\"City\":\"Orlando\",\"State\":\"FL\"}]");
    answer(&f, "contact", 200, ans, &res, NULL);
    free(ans);
    /* Names a person set are kept; the number is on the record already;
     * the street is unknown on both sides. */
    expect_done(&res, "contact_id", LEAD);
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, lead_found_is_filled_in_and_mapped)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"field_mappings\":{\"ai_analysis.lead_score\":"
            "\"AI_Lead_Score__c\",\"ai_analysis.project_type\":"
            "\"Project_Type__c\",\"call_outcome\":\"Rating\"}}");
    struct prov_request rq;
    struct prov_result res;
    char *q = build_query(&f, "contact", &rq);
    /* Mapped targets are read too, to compare. */
    cr_expect(strstr(q, "SELECT " LEAD_FIELDS ", AI_Lead_Score__c, "
                        "Project_Type__c, Rating FROM Lead") != NULL,
              "%s", q);
    free(q);
    prov_request_release(&rq);
    char *ans = records("Lead",
                        "[{\"Id\":\"" LEAD "\",\"FirstName\":null,"
                        "\"LastName\":\"[not provided]\",\"Company\":"
                        "\"[not provided]\",\"Email\":null,\"Phone\":"
                        "\"+1 (407) 555-0000\",\"MobilePhone\":null,"
                        "\"Street\":null,\"City\":\"Miami\",\"State\":null,"
                        "\"AI_Lead_Score__c\":87.0,\"Project_Type__c\":"
                        "\"bathroom\",\"Rating\":null}]");
    answer(&f, "contact", 200, ans, &res, NULL);
    free(ans);
    expect_next(&res);
    build(&f, "contact", &rq, "PATCH", "/sobjects/Lead/" LEAD);
    /* Placeholders and empty fields are filled; a different number and
     * city a person entered stay; the score is equal as a number. */
    expect_body(&rq, "{\"FirstName\":\"Jane\",\"LastName\":\"Smith\","
                     "\"Email\":\"jane+roof@example.com\",\"State\":\"FL\","
                     "\"Project_Type__c\":\"kitchen\",\"Rating\":"
                     "\"appointment_booked\"}");
    prov_request_release(&rq);
    answer(&f, "contact", 204, NULL, &res, NULL);
    expect_done(&res, "contact_id", LEAD);
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, contact_object_search_create_and_account)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"object\":\"Contact\",\"account_id\":\"" ACCOUNT "\"}");
    struct prov_request rq;
    struct prov_result res;
    expect_soql(&f, "contact",
                "SELECT Id, FirstName, LastName, Email, Phone, MobilePhone, "
                "MailingStreet, MailingCity, MailingState, AccountId FROM "
                "Contact WHERE (Phone IN " PHONES " OR MobilePhone IN " PHONES
                " OR Email = 'jane+roof@example.com') ORDER BY CreatedDate "
                "ASC LIMIT 10");
    answer(&f, "contact", 200, EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/sobjects/Contact");
    expect_body(&rq, "{\"FirstName\":\"Jane\",\"LastName\":\"Smith\","
                     "\"Email\":\"jane+roof@example.com\",\"Phone\":"
                     "\"+14079780655\",\"MailingCity\":\"Orlando\","
                     "\"MailingState\":\"FL\",\"AccountId\":\"" ACCOUNT "\"}");
    prov_request_release(&rq);
    answer(&f, "contact", 201, CREATED(CONTACT), &res, NULL);
    expect_done(&res, "contact_id", CONTACT);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "object")),
                     "Contact");
    prov_result_release(&res);

    /* Found: its account is kept for the opportunity. */
    fx_step(&f, false);
    free(build_query(&f, "contact", &rq));
    prov_request_release(&rq);
    char *ans = records("Contact",
                        "[{\"Id\":\"" CONTACT "\",\"FirstName\":\"Jane\","
                        "\"LastName\":\"Smith\",\"Email\":"
                        "\"jane+roof@example.com\",\"Phone\":\"4079780655\","
                        "\"MobilePhone\":null,\"MailingStreet\":null,"
                        "\"MailingCity\":\"Orlando\",\"MailingState\":\"FL\","
                        "\"AccountId\":\"0015g00000Other1AAA\"}]");
    answer(&f, "contact", 200, ans, &res, NULL);
    free(ans);
    expect_done(&res, "contact_id", CONTACT);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "account_id")),
                     "0015g00000Other1AAA");
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, best_match_prefers_email_and_number)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    free(build_query(&f, "contact", &rq));
    prov_request_release(&rq);
    char *ans = records(
        "Lead", "[{\"Id\":\"00Q5g00000Older1AAA\",\"LastName\":\"Smith\","
                "\"Company\":\"A\",\"Email\":\"other@example.com\","
                "\"Phone\":\"+14079780655\",\"FirstName\":\"Jane\","
                "\"City\":\"Orlando\",\"State\":\"FL\",\"Street\":null},"
                "{\"Id\":\"" LEAD "\",\"LastName\":\"Smith\",\"Company\":"
                "\"A\",\"Email\":\"jane+roof@example.com\",\"Phone\":"
                "\"407-978-0655\",\"FirstName\":\"Jane\",\"City\":"
                "\"Orlando\",\"State\":\"FL\",\"Street\":null}]");
    answer(&f, "contact", 200, ans, &res, NULL);
    free(ans);
    expect_done(&res, "contact_id", LEAD);
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, external_id_upsert)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"external_id_field\":\"Caller_Key__c\"}");
    struct prov_request rq;
    struct prov_result res;
    expect_soql(&f, "contact",
                "SELECT " LEAD_FIELDS ", Caller_Key__c FROM Lead WHERE "
                "(Caller_Key__c = '+14079780655' OR Phone IN " PHONES
                " OR MobilePhone IN " PHONES " OR Email = "
                "'jane+roof@example.com') AND IsConverted = false ORDER BY "
                "CreatedDate ASC LIMIT 10");
    answer(&f, "contact", 200, EMPTY, &res, NULL);
    expect_next(&res);
    /* The key goes in the URL, escaped, and not in the body. */
    build(&f, "contact", &rq, "PATCH",
          "/sobjects/Lead/Caller_Key__c/%2B14079780655");
    json_t *b = body_of(&rq);
    cr_expect_null(json_object_get(b, "Caller_Key__c"));
    cr_expect_str_eq(json_string_value(json_object_get(b, "LastName")),
                     "Smith");
    json_decref(b);
    prov_request_release(&rq);
    answer(&f, "contact", 201,
           "{\"id\":\"" LEAD "\",\"errors\":[],\"success\":true,"
           "\"created\":true}",
           &res, NULL);
    expect_done(&res, "contact_id", LEAD);
    prov_result_release(&res);

    /* Another job created it meanwhile: the upsert updated it (200,
     * API 46.0 and later). */
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "contact", 200,
           "{\"id\":\"" LEAD "\",\"errors\":[],\"success\":true,"
           "\"created\":false}",
           &res, NULL);
    expect_done(&res, "contact_id", LEAD);
    prov_result_release(&res);

    /* Before 46.0 an update answers 204 without the id: search again. */
    fx_step(&f, false);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "contact", 204, NULL, &res, NULL);
    expect_next(&res);
    free(build_query(&f, "contact", &rq));
    prov_request_release(&rq);
    answer(&f, "contact", 200, EMPTY, &res, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY, "no second create in one attempt");
    prov_result_release(&res);

    /* The key on several records: 300 with their URLs. */
    fx_step(&f, false);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "contact", 300,
           "[\"/services/data/v66.0/sobjects/Lead/00Q5g00000A1\","
           "\"/services/data/v66.0/sobjects/Lead/00Q5g00000A2\"]",
           &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect(strstr(res.message, "several records"), "%s", res.message);
    prov_result_release(&res);
    fx_release(&f);
}

/* The DUPLICATES_DETECTED answer of a blocking duplicate rule. */
static char *duplicate_answer(const char *type, const char *id)
{
    json_t *e = json_pack(
        "[{s:{s:b,s:s,s:s,s:s,s:[{s:s,s:[],s:s,s:[{s:[],s:[],s:f,"
        "s:{s:{s:s,s:o},s:s}}],s:s,s:i,s:b}]},s:s,s:[],s:s}]",
        "duplicateResult", "allowSave", 0, "duplicateRule",
        "Standard_Lead_Duplicate_Rule", "duplicateRuleEntityType", "Lead",
        "errorMessage", "Use one of these records?", "matchResults",
        "entityType", type, "errors", "matchEngine", "FuzzyMatchEngine",
        "matchRecords", "additionalInformation", "fieldDiffs",
        "matchConfidence", 100.0, "record", "attributes", "type", type, "url",
        json_sprintf("/services/data/v66.0/sobjects/%s/%s", type, id), "Id",
        id, "rule", "Standard_Contact_Match_Rule_v1_1", "size", 1, "success",
        1, "errorCode", "DUPLICATES_DETECTED", "fields", "message",
        "Use one of these records?");
    cr_assert_not_null(e);
    char *s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    return s;
}

Test(sf, duplicate_rule_names_the_lead_to_use)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    json_object_set_new(f.scratch, "phase", json_string("create"));
    char *dup = duplicate_answer("Lead", LEAD);
    answer(&f, "contact", 400, dup, &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "GET",
          "/sobjects/Lead/" LEAD "?fields=Id%2CFirstName%2CLastName%2C"
          "Company%2CEmail%2CPhone%2CMobilePhone%2CStreet%2CCity%2CState");
    prov_request_release(&rq);
    answer(&f, "contact", 200,
           "{\"attributes\":{\"type\":\"Lead\",\"url\":\"/services/data/"
           "v66.0/sobjects/Lead/" LEAD "\"},\"Id\":\"" LEAD "\","
           "\"FirstName\":\"Jane\",\"LastName\":\"Smith\",\"Company\":\"A\","
           "\"Email\":\"jane+roof@example.com\",\"Phone\":null,"
           "\"MobilePhone\":null,\"Street\":null,\"City\":null,"
           "\"State\":null}",
           &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "PATCH", "/sobjects/Lead/" LEAD);
    expect_body(&rq, "{\"Phone\":\"+14079780655\",\"City\":\"Orlando\","
                     "\"State\":\"FL\"}");
    prov_request_release(&rq);
    answer(&f, "contact", 204, NULL, &res, NULL);
    expect_done(&res, "contact_id", LEAD);
    prov_result_release(&res);

    /* A second refusal in the same attempt is the org's final word. */
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "contact", 400, dup, &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "DUPLICATES_DETECTED");
    prov_result_release(&res);
    free(dup);
    fx_release(&f);
}

Test(sf, duplicate_rule_naming_a_contact_is_used_as_is)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_result res;
    json_object_set_new(f.scratch, "phase", json_string("create"));
    char *dup = duplicate_answer("Contact", CONTACT);
    answer(&f, "contact", 400, dup, &res, NULL);
    free(dup);
    expect_done(&res, "contact_id", CONTACT);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "object")),
                     "Contact");
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, update_of_a_vanished_or_converted_lead_searches_again_once)
{
    static const char *const answers[] = {
        "[{\"errorCode\":\"NOT_FOUND\",\"message\":\"The requested resource "
        "does not exist\"}]",
        "[{\"errorCode\":\"ENTITY_IS_DELETED\",\"message\":\"entity is "
        "deleted\",\"fields\":[]}]",
        "[{\"errorCode\":\"CANNOT_UPDATE_CONVERTED_LEAD\",\"message\":"
        "\"cannot reference converted lead\",\"fields\":[]}]"};
    static const int statuses[] = {404, 404, 400};
    for (size_t i = 0; i < 3; i++) {
        struct fx f;
        fx_init(&f, base_call(), NULL);
        struct prov_request rq;
        struct prov_result res;
        json_object_set_new(f.scratch, "phase", json_string("update"));
        json_object_set_new(f.scratch, "contact_id", json_string(LEAD));
        json_object_set_new(f.scratch, "object", json_string("Lead"));
        json_object_set_new(f.scratch, "patch", jparse("{\"City\":\"X\"}"));
        answer(&f, "contact", statuses[i], answers[i], &res, NULL);
        expect_next(&res);
        free(build_query(&f, "contact", &rq));
        prov_request_release(&rq);
        answer(&f, "contact", 200, EMPTY, &res, NULL);
        expect_next(&res);
        build(&f, "contact", &rq, "POST", "/sobjects/Lead");
        prov_request_release(&rq);
        /* The same again in this attempt is an error. */
        json_object_set_new(f.scratch, "phase", json_string("update"));
        json_object_set_new(f.scratch, "contact_id", json_string(LEAD));
        answer(&f, "contact", statuses[i], answers[i], &res, NULL);
        cr_expect_eq(res.outcome, PROV_PERMANENT, "answer %zu", i);
        prov_result_release(&res);
        fx_release(&f);
    }
}

Test(sf, soql_values_are_escaped)
{
    struct fx f;
    json_t *call = base_call();
    json_t *cust = json_object_get(call, "customer");
    json_object_del(cust, "phone");
    /* Quote, backslash, double quote, newline, tab and a control byte. */
    json_object_set_new(cust, "email",
                        json_string("o'b\\r\"x\ny\tz\x01@example.com"));
    fx_init(&f, call, NULL);
    expect_soql(&f, "contact",
                "SELECT " LEAD_FIELDS " FROM Lead WHERE (Email = "
                "'o\\'b\\\\r\\\"x\\ny\\tz\\u0001@example.com') AND "
                "IsConverted = false ORDER BY CreatedDate ASC LIMIT 10");
    fx_release(&f);
}

Test(sf, phone_variants_outside_north_america)
{
    struct fx f;
    json_t *call = base_call();
    json_t *cust = json_object_get(call, "customer");
    json_object_set_new(cust, "phone", json_string("+442079460958"));
    json_object_del(cust, "email");
    fx_init(&f, call, NULL);
    expect_soql(&f, "contact",
                "SELECT " LEAD_FIELDS " FROM Lead WHERE (Phone IN "
                "('+442079460958', '442079460958') OR MobilePhone IN "
                "('+442079460958', '442079460958')) AND IsConverted = false "
                "ORDER BY CreatedDate ASC LIMIT 10");
    fx_release(&f);
}

Test(sf, contact_keys_and_config_errors)
{
    struct fx f;
    struct cs_err err;
    json_t *call = base_call();
    json_object_del(json_object_get(call, "customer"), "phone");
    json_object_del(json_object_get(call, "customer"), "email");
    fx_init(&f, call, NULL);
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_contact_key"), "%s", err.msg);
    fx_release(&f);

    fx_init(&f, base_call(), "{\"object\":\"Account\"}");
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.object");
    fx_release(&f);

    fx_init(&f, base_call(), "{\"api_version\":\"latest\"}");
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.api_version");
    fx_release(&f);

    fx_init(&f, base_call(), "{\"api_version\":\"v20.0\"}");
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "retired"), "%s", err.msg);
    fx_release(&f);

    fx_init(&f, base_call(), "{\"external_id_field\":\"Key c\"}");
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.external_id_field");
    fx_release(&f);

    /* No token, no instance URL. */
    fx_init(&f, base_call(), NULL);
    f.creds.access_token = NULL;
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_credentials"), "%s", err.msg);
    f.creds.access_token = "tok";
    f.ctx.base_url = NULL;
    f.creds.instance_url = NULL;
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_instance_url"), "%s", err.msg);
    f.creds.instance_url = "ftp://acme";
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    fx_release(&f);
}

Test(sf, instance_url_and_api_version)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"api_version\":\"v61.0\"}");
    f.ctx.base_url = NULL;
    f.creds.instance_url = "https://acme.my.salesforce.com/";
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(step("contact")->build(&f.ctx, &rq, &err), 0, "%s",
                 err.msg);
    const char *want = "https://acme.my.salesforce.com/services/data/v61.0/"
                       "query?q=SELECT%20Id";
    cr_expect(strncmp(rq.url, want, strlen(want)) == 0, "%s", rq.url);
    prov_request_release(&rq);
    config_set(&f, "api_version", "62");
    fx_step(&f, false);
    cr_assert_eq(step("contact")->build(&f.ctx, &rq, &err), 0);
    cr_expect(strstr(rq.url, "/services/data/v62.0/query"), "%s", rq.url);
    prov_request_release(&rq);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Mappings                                                           */
/* ------------------------------------------------------------------ */

Test(sf, mapping_errors_are_permanent_with_a_reason)
{
    static const struct {
        const char *maps, *says;
    } cases[] = {
        {"{\"call_outcome\":\"Call Result\"}", "not a Salesforce field"},
        {"{\"call_outcome\":\"CreatedDate\"}", "set by Salesforce"},
        {"{\"call_outcome\":\"id\"}", "set by Salesforce"},
        {"[{\"target\":\"Notes__c\",\"source\":\"ai_analysis\"}]",
         "gives an object"},
        {"[{\"target\":\"Tags__c\",\"source\":\"call.custom.tags\"}]",
         "without ';'"},
        {"[{\"target\":\"X__c\",\"source\":\"a\",\"type\":\"computed\"}]",
         "computed"},
        {"\"Phone\"", "must be a list or an object"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        json_t *call = base_call();
        json_object_set_new(json_object_get(call, "custom"), "tags",
                            jparse("[\"a;b\",\"c\"]"));
        fx_init(&f, call, NULL);
        config_set(&f, "field_mappings", cases[i].maps);
        struct cs_err err;
        cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL, "case %zu",
                     i);
        cr_expect(strstr(err.msg, cases[i].says), "case %zu: %s", i,
                  err.msg);
        fx_release(&f);
    }
}

Test(sf, mappings_conditions_templates_and_multiselect)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "custom"), "services",
                        jparse("[\"Roof\",\"Gutters\"]"));
    fx_init(&f, call,
            "{\"field_mappings\":["
            "{\"target\":\"Rating\",\"type\":\"conditional\",\"conditions\":"
            "[{\"if\":\"ai_analysis.lead_score > 80\",\"then\":\"Hot\"},"
            "{\"default\":\"Cold\"}]},"
            "{\"target\":\"Description\",\"template\":"
            "\"{{ai_analysis.intent}} via {{source}}\"},"
            "{\"target\":\"Services__c\",\"source\":\"call.custom.services\"},"
            "{\"target\":\"Budget__c\",\"source\":\"ai_analysis.budget\"}]}");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "contact", &rq, "POST", "/sobjects/Lead");
    json_t *b = body_of(&rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "Rating")), "Hot");
    cr_expect_str_eq(json_string_value(json_object_get(b, "Description")),
                     "appointment_booking via retell");
    cr_expect_str_eq(json_string_value(json_object_get(b, "Services__c")),
                     "Roof;Gutters");
    /* A missing source leaves the field out. */
    cr_expect_null(json_object_get(b, "Budget__c"));
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Task                                                               */
/* ------------------------------------------------------------------ */

/* The description, as a JSON string's contents. */
#define TASK_DESC                                                            \
    "Call outcome: appointment_booked\\nDirection: inbound\\nSummary: "    \
    "Customer scheduled roof repair\\nSentiment: positive\\nDuration: "    \
    "5m 0s\\nRecording: https://rec.example.com/r/1.wav\\nTranscript "     \
    "(excerpt):\\nAgent: Hi\\nUser: Hello\\n\\nSync reference: " MARKER

Test(sf, task_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "task", &rq, "POST", "/sobjects/Task");
    expect_body(&rq, "{\"Subject\":\"Inbound call: appointment_booked\","
                     "\"Description\":\"" TASK_DESC "\",\"WhoId\":\"" LEAD
                     "\",\"Status\":\"Completed\",\"ActivityDate\":"
                     "\"2026-02-15\",\"TaskSubtype\":\"Call\",\"CallType\":"
                     "\"Inbound\",\"CallDurationInSeconds\":300,"
                     "\"CallDisposition\":\"appointment_booked\"}");
    prov_request_release(&rq);
    answer(&f, "task", 201, CREATED("00T5g00000Task1AAA"), &res, NULL);
    expect_done(&res, "task_id", "00T5g00000Task1AAA");
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, task_options_date_in_the_connections_zone)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(call, "direction", json_string("outbound"));
    fx_init(&f, call,
            "{\"timezone\":\"Pacific/Auckland\",\"task_status\":"
            "\"Not Started\",\"task_priority\":\"High\",\"owner_id\":"
            "\"0055g00000Own01AAA\",\"task_subject_template\":"
            "\"{{customer_name}}: {{call_outcome}}\",\"task_field_mappings\":"
            "{\"ai_analysis.urgency\":\"Urgency__c\"}}");
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_request rq;
    build(&f, "task", &rq, "POST", "/sobjects/Task");
    json_t *b = body_of(&rq);
    /* 14:30 UTC on 15 February is the 16th in Auckland. */
    cr_expect_str_eq(json_string_value(json_object_get(b, "ActivityDate")),
                     "2026-02-16");
    cr_expect_str_eq(json_string_value(json_object_get(b, "Subject")),
                     "Jane Smith: appointment_booked");
    cr_expect_str_eq(json_string_value(json_object_get(b, "CallType")),
                     "Outbound");
    cr_expect_str_eq(json_string_value(json_object_get(b, "Status")),
                     "Not Started");
    cr_expect_str_eq(json_string_value(json_object_get(b, "Priority")),
                     "High");
    cr_expect_str_eq(json_string_value(json_object_get(b, "OwnerId")),
                     "0055g00000Own01AAA");
    cr_expect_str_eq(json_string_value(json_object_get(b, "Urgency__c")),
                     "high");
    json_decref(b);
    prov_request_release(&rq);

    struct cs_err err;
    config_set(&f, "timezone", "\"Mars/Olympus\"");
    cr_expect_eq(build_err(&f, "task", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.timezone");
    fx_release(&f);
}

Test(sf, task_texts_are_cut_on_a_character)
{
    struct fx f;
    json_t *call = base_call();
    /* 30,000 bytes of two-byte characters, and a long outcome. */
    char *tr = malloc(30001);
    for (int i = 0; i < 30000; i += 2)
        memcpy(tr + i, "\xc3\xa9", 2);
    tr[30000] = '\0';
    json_object_set_new(call, "transcript", json_string(tr));
    free(tr);
    char out[400];
    memset(out, 'x', sizeof(out) - 1);
    out[sizeof(out) - 1] = '\0';
    json_object_set_new(call, "outcome", json_string(out));
    fx_init(&f, call, NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_request rq;
    build(&f, "task", &rq, "POST", "/sobjects/Task");
    json_t *b = body_of(&rq);
    const char *d = json_string_value(json_object_get(b, "Description"));
    cr_assert_not_null(d, "the description is valid UTF-8");
    cr_expect_lt(strlen(d), 32000);
    cr_expect(strstr(d, "\xc3\xa9 [\xe2\x80\xa6]\n"), "cut, then marked");
    cr_expect(strstr(d, "Sync reference: " MARKER), "the marker survives");
    cr_expect_eq(strlen(json_string_value(json_object_get(b, "Subject"))),
                 255);
    cr_expect_eq(strlen(json_string_value(json_object_get(b,
                                                          "CallDisposition"))),
                 255);
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(sf, task_reconcile_finds_the_marker)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    fx_step(&f, true);
    struct prov_request rq;
    struct prov_result res;
    /* Tasks created since an hour before the job was enqueued. */
    expect_soql(&f, "task",
                "SELECT Id, Description FROM Task WHERE WhoId = '" LEAD "' "
                "AND CreatedDate >= 2026-02-15T13:35:02Z ORDER BY "
                "CreatedDate DESC LIMIT 200");
    char *ans = records("Task",
                        "[{\"Id\":\"00T5g00000Other1AAA\",\"Description\":"
                        "\"Sync reference: callsync:ffff\"},"
                        "{\"Id\":\"00T5g00000Task1AAA\",\"Description\":\""
                        "Summary: x\\n\\nSync reference: " MARKER "\"}]");
    answer(&f, "task", 200, ans, &res, NULL);
    free(ans);
    expect_done(&res, "task_id", "00T5g00000Task1AAA");
    prov_result_release(&res);

    /* Not there: the write never happened; create it. */
    fx_step(&f, true);
    free(build_query(&f, "task", &rq));
    prov_request_release(&rq);
    answer(&f, "task", 200, EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "task", &rq, "POST", "/sobjects/Task");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(sf, task_without_contact_is_an_error)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "task", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_contact"), "%s", err.msg);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Event                                                              */
/* ------------------------------------------------------------------ */

#define EVENT_SEARCH                                                         \
    "SELECT Id, Subject, Description, StartDateTime FROM Event WHERE WhoId " \
    "= '" LEAD "' AND StartDateTime = 2026-02-20T19:00:00Z ORDER BY "        \
    "CreatedDate ASC LIMIT 10"

Test(sf, event_applies)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect(step("event")->applies(&f.ctx));
    config_set(&f, "create_events", "false");
    cr_expect_not(step("event")->applies(&f.ctx));
    fx_release(&f);
    json_t *call = base_call();
    json_object_del(call, "appointment");
    fx_init(&f, call, NULL);
    cr_expect_not(step("event")->applies(&f.ctx));
    fx_release(&f);
}

Test(sf, event_search_then_create)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "customer"), "address",
                        json_string("12 Oak Rd"));
    fx_init(&f, call, NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_request rq;
    struct prov_result res;
    /* 14:00 in New York on 20 February is 19:00 UTC. */
    expect_soql(&f, "event", EVENT_SEARCH);
    answer(&f, "event", 200, EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "event", &rq, "POST", "/sobjects/Event");
    expect_body(&rq, "{\"Subject\":\"Roof Repair\",\"StartDateTime\":"
                     "\"2026-02-20T19:00:00Z\",\"EndDateTime\":"
                     "\"2026-02-20T21:00:00Z\",\"WhoId\":\"" LEAD "\","
                     "\"Location\":\"12 Oak Rd, Orlando, FL\","
                     "\"Description\":\"Service: roofing\\nLocal time: "
                     "2026-02-20T14:00:00-05:00\\nTime zone: "
                     "America/New_York\\nCall summary: Customer scheduled "
                     "roof repair\\n\\nSync reference: " MARKER "\"}");
    prov_request_release(&rq);
    answer(&f, "event", 201, CREATED("00U5g00000Evt01AAA"), &res, NULL);
    expect_done(&res, "event_id", "00U5g00000Evt01AAA");
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, event_booked_at_the_same_start_is_adopted)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_request rq;
    struct prov_result res;
    free(build_query(&f, "event", &rq));
    prov_request_release(&rq);
    /* Salesforce answers datetimes as "...000+0000". */
    char *ans = records("Event",
                        "[{\"Id\":\"00U5g00000Agent1AAA\",\"Subject\":"
                        "\"Inspection\",\"Description\":null,"
                        "\"StartDateTime\":\"2026-02-20T19:00:00.000+0000\"}]");
    answer(&f, "event", 200, ans, &res, NULL);
    free(ans);
    expect_done(&res, "event_id", "00U5g00000Agent1AAA");
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, event_time_errors)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "appointment"), "timezone",
                        json_string("Nowhere/City"));
    fx_init(&f, call, NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "event", &err), CS_EINVAL);
    cr_expect(strstr(err.field, "call.appointment"), "%s", err.field);
    fx_release(&f);

    call = base_call();
    json_object_set_new(json_object_get(call, "appointment"), "duration_min",
                        json_integer(15 * 24 * 60));
    fx_init(&f, call, NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    cr_expect_eq(build_err(&f, "event", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "14 days"), "%s", err.msg);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Opportunity                                                        */
/* ------------------------------------------------------------------ */

Test(sf, opportunity_applies_only_with_a_stage)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect_not(step("opportunity")->applies(&f.ctx));
    config_set(&f, "opportunity_stage", "\"Prospecting\"");
    cr_expect(step("opportunity")->applies(&f.ctx));
    fx_release(&f);
}

Test(sf, opportunity_for_a_lead)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"opportunity_stage\":\"Qualification\","
            "\"opportunity_amount\":25000,\"lead_source\":\"Phone Inquiry\"}");
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "opportunity", &rq, "POST", "/sobjects/Opportunity");
    /* A lead has no link to an opportunity: its id is in the text. */
    expect_body(&rq, "{\"Name\":\"Jane Smith \xe2\x80\x93 "
                     "appointment_booked\",\"StageName\":\"Qualification\","
                     "\"CloseDate\":\"2026-03-17\",\"Amount\":25000,"
                     "\"LeadSource\":\"Phone Inquiry\",\"Description\":"
                     "\"Caller: Jane Smith\\nPhone: +14079780655\\nEmail: "
                     "jane+roof@example.com\\nLead: " LEAD "\\nCall outcome: "
                     "appointment_booked\\nSummary: Customer scheduled roof "
                     "repair\\n\\nSync reference: " MARKER "\"}");
    prov_request_release(&rq);
    answer(&f, "opportunity", 201, CREATED("0065g00000Opp01AAA"), &res, NULL);
    expect_done(&res, "opportunity_id", "0065g00000Opp01AAA");
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, opportunity_for_a_contact_and_reconcile)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"object\":\"Contact\",\"opportunity_stage\":\"Prospecting\","
            "\"opportunity_close_days\":7,\"opportunity_name_template\":"
            "\"{{customer_name}} / {{ai_analysis.project_type}}\","
            "\"opportunity_field_mappings\":{\"ai_analysis.lead_score\":"
            "\"Probability\"}}");
    contact_done(&f, CONTACT, "Contact", ACCOUNT);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "opportunity", &rq, "POST", "/sobjects/Opportunity");
    json_t *b = body_of(&rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "Name")),
                     "Jane Smith / kitchen");
    cr_expect_str_eq(json_string_value(json_object_get(b, "CloseDate")),
                     "2026-02-22");
    cr_expect_str_eq(json_string_value(json_object_get(b, "AccountId")),
                     ACCOUNT);
    cr_expect_str_eq(json_string_value(json_object_get(b, "ContactId")),
                     CONTACT);
    cr_expect_eq(json_integer_value(json_object_get(b, "Probability")), 87);
    json_decref(b);
    prov_request_release(&rq);

    fx_step(&f, true);
    expect_soql(&f, "opportunity",
                "SELECT Id, Description FROM Opportunity WHERE Name = "
                "'Jane Smith / kitchen' AND ContactId = '" CONTACT "' AND "
                "CreatedDate >= 2026-02-15T13:35:02Z ORDER BY CreatedDate "
                "DESC LIMIT 200");
    char *ans = records("Opportunity",
                        "[{\"Id\":\"0065g00000Opp01AAA\",\"Description\":"
                        "\"x\\nSync reference: " MARKER "\"}]");
    answer(&f, "opportunity", 200, ans, &res, NULL);
    free(ans);
    expect_done(&res, "opportunity_id", "0065g00000Opp01AAA");
    prov_result_release(&res);

    /* Before API 46.0 there is no ContactId. */
    fx_step(&f, false);
    config_set(&f, "api_version", "\"45.0\"");
    struct cs_err err = {0};
    memset(&rq, 0, sizeof(rq));
    cr_assert_eq(step("opportunity")->build(&f.ctx, &rq, &err), 0);
    cr_expect_str_eq(rq.url, BASE "/services/data/v45.0/sobjects/"
                             "Opportunity");
    b = body_of(&rq);
    cr_expect_null(json_object_get(b, "ContactId"));
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(sf, opportunity_config_errors)
{
    struct fx f;
    struct cs_err err;
    fx_init(&f, base_call(),
            "{\"opportunity_stage\":\"Prospecting\","
            "\"opportunity_close_days\":-1}");
    contact_done(&f, LEAD, "Lead", NULL);
    cr_expect_eq(build_err(&f, "opportunity", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.opportunity_close_days");
    config_set(&f, "opportunity_close_days", "10");
    config_set(&f, "opportunity_amount", "\"lots\"");
    cr_expect_eq(build_err(&f, "opportunity", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.opportunity_amount");
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Errors and limits                                                  */
/* ------------------------------------------------------------------ */

Test(sf, error_classification)
{
    static const struct {
        int status;
        const char *body, *retry_after;
        enum prov_outcome outcome;
        const char *code, *says;
        int64_t retry_ms;
    } cases[] = {
        {401, "[{\"message\":\"Session expired or invalid\",\"errorCode\":"
              "\"INVALID_SESSION_ID\"}]",
         NULL, PROV_AUTH, "INVALID_SESSION_ID", "Session expired", -1},
        {403, "[{\"message\":\"TotalRequests Limit exceeded.\","
              "\"errorCode\":\"REQUEST_LIMIT_EXCEEDED\"}]",
         NULL, PROV_RATE_LIMITED, "REQUEST_LIMIT_EXCEEDED", "TotalRequests",
         3600000},
        {403, "[{\"message\":\"ConcurrentPerOrgLongTxn Limit exceeded\","
              "\"errorCode\":\"REQUEST_LIMIT_EXCEEDED\"}]",
         NULL, PROV_RATE_LIMITED, "REQUEST_LIMIT_EXCEEDED", "Concurrent",
         5000},
        {403, "[{\"message\":\"TotalRequests Limit exceeded.\","
              "\"errorCode\":\"REQUEST_LIMIT_EXCEEDED\"}]",
         "120", PROV_RATE_LIMITED, "REQUEST_LIMIT_EXCEEDED", "TotalRequests",
         120000},
        {403, "[{\"message\":\"The REST API is not enabled for this "
              "Organization.\",\"errorCode\":\"API_DISABLED_FOR_ORG\"}]",
         NULL, PROV_AUTH, "API_DISABLED_FOR_ORG", "not enabled", -1},
        {403, "[{\"message\":\"insufficient access rights on object id\","
              "\"errorCode\":\"INSUFFICIENT_ACCESS_OR_READONLY\","
              "\"fields\":[]}]",
         NULL, PROV_PERMANENT, "INSUFFICIENT_ACCESS_OR_READONLY",
         "insufficient access", -1},
        {429, "[{\"message\":\"Too Many Requests\",\"errorCode\":"
              "\"REQUEST_LIMIT_EXCEEDED\"}]",
         NULL, PROV_RATE_LIMITED, "REQUEST_LIMIT_EXCEEDED", "Too Many",
         10000},
        {400, "[{\"message\":\"Required fields are missing: [LastName]\","
              "\"errorCode\":\"REQUIRED_FIELD_MISSING\",\"fields\":"
              "[\"LastName\"]}]",
         NULL, PROV_PERMANENT, "REQUIRED_FIELD_MISSING",
         "Required fields are missing: [LastName] (fields: LastName)", -1},
        {400, "[{\"message\":\"Phone must be 10 digits\",\"errorCode\":"
              "\"FIELD_CUSTOM_VALIDATION_EXCEPTION\",\"fields\":[]}]",
         NULL, PROV_PERMANENT, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
         "Phone must be 10 digits", -1},
        {400, "[{\"message\":\"No such column 'Foo__c' on sobject of type "
              "Lead\",\"errorCode\":\"INVALID_FIELD\"}]",
         NULL, PROV_PERMANENT, "INVALID_FIELD", "No such column 'Foo__c'",
         -1},
        {400, "[{\"message\":\"\\nSELECT Id FROM Lead WHERE\\n ^\\nERROR at "
              "Row:1:Column:26\\nunexpected token: <EOF>\",\"errorCode\":"
              "\"MALFORMED_QUERY\"}]",
         NULL, PROV_PERMANENT, "MALFORMED_QUERY", "unexpected token: <EOF>",
         -1},
        {400, "[{\"message\":\"unable to obtain exclusive access to this "
              "record\",\"errorCode\":\"UNABLE_TO_LOCK_ROW\",\"fields\":[]}]",
         NULL, PROV_RETRY, "UNABLE_TO_LOCK_ROW", "exclusive access", -1},
        {404, "[{\"errorCode\":\"NOT_FOUND\",\"message\":\"The requested "
              "resource does not exist\"}]",
         NULL, PROV_PERMANENT, "NOT_FOUND", "does not exist", -1},
        {500, "[{\"message\":\"An unexpected error occurred.\","
              "\"errorCode\":\"UNKNOWN_EXCEPTION\"}]",
         NULL, PROV_RETRY, "UNKNOWN_EXCEPTION", "unexpected error", -1},
        {503, "<html>maintenance</html>", "30", PROV_RETRY, "server_error",
         "HTTP 503", 30000},
        {0, NULL, NULL, PROV_RETRY, "network_error", "HTTP 0", -1},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, base_call(), NULL);
        contact_done(&f, LEAD, "Lead", NULL);
        struct prov_result res;
        if (cases[i].retry_after)
            answer(&f, "task", cases[i].status, cases[i].body, &res,
                   "retry-after", cases[i].retry_after, NULL);
        else
            answer(&f, "task", cases[i].status, cases[i].body, &res, NULL);
        cr_expect_eq(res.outcome, cases[i].outcome, "case %zu: outcome %d",
                     i, res.outcome);
        cr_expect_str_eq(res.code, cases[i].code, "case %zu", i);
        cr_expect(strstr(res.message, cases[i].says), "case %zu: %s", i,
                  res.message);
        cr_expect_eq(res.http_status, cases[i].status, "case %zu", i);
        cr_expect_eq(res.retry_after_ms, cases[i].retry_ms,
                     "case %zu: retry after %lld", i,
                     (long long)res.retry_after_ms);
        prov_result_release(&res);
        fx_release(&f);
    }
}

Test(sf, unreadable_success_is_retried)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    contact_done(&f, LEAD, "Lead", NULL);
    struct prov_result res;
    answer(&f, "task", 201, "<html>", &res, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "bad_response");
    prov_result_release(&res);
    fx_release(&f);
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.scratch, "phase", json_string("search"));
    answer(&f, "contact", 200, "{\"totalSize\":1}", &res, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    prov_result_release(&res);
    fx_release(&f);
}

Test(sf, spent_allocation_pauses_the_key)
{
    static const struct {
        const char *config, *header;
        int64_t pause;
    } cases[] = {
        {NULL, "api-usage=5000/5000", 3600000},
        {NULL, "api-usage=4999/5000", 0},
        {NULL, "api-usage=25/5000; per-app-api-usage=250/250"
               "(appName=sample-connected-app)", 3600000},
        {NULL, "api-usage=25/5000; per-app-api-usage=17/250"
               "(appName=sample-connected-app)", 0},
        {"{\"api_usage_limit_pct\":90}", "api-usage=90018/100000", 3600000},
        {"{\"api_usage_limit_pct\":90}", "api-usage=89999/100000", 0},
        {NULL, "api-usage=10018/100000; api-bursts=750/750", 0},
        {NULL, "api-usage=lots", 0},
        {NULL, "api-usage=5/0", 0},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, base_call(), cases[i].config);
        contact_done(&f, LEAD, "Lead", NULL);
        struct prov_result res;
        answer(&f, "task", 201, CREATED("00T5g00000Task1AAA"), &res,
               "sforce-limit-info", cases[i].header, NULL);
        cr_expect_eq(res.outcome, PROV_DONE, "case %zu", i);
        cr_expect_eq(res.pause_ms, cases[i].pause, "case %zu: %lld", i,
                     (long long)res.pause_ms);
        prov_result_release(&res);
        fx_release(&f);
    }
}

/* ------------------------------------------------------------------ */
/* Probe (callsyncctl connections test)                               */
/* ------------------------------------------------------------------ */

static void probe_answer(struct fx *f, int status, const char *body,
                         const char *limit_info, struct prov_result *res)
{
    struct prov_header h = {(char *)"sforce-limit-info", (char *)limit_info};
    struct prov_response rsp = {status, limit_info ? 1 : 0, &h, body,
                                strlen(body)};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    prov_salesforce.probe->parse(&f->ctx, &rsp, res);
}

Test(salesforce_probe, queries_one_record_of_the_object)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"object\":\"Contact\"}");
    cr_assert_not_null(prov_salesforce.probe);
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_salesforce.probe->build(&f.ctx, &rq, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(rq.method, "GET");
    cr_expect_str_eq(rq.url, API "/query?q=SELECT%20Id%20FROM%20Contact%20"
                                 "LIMIT%201");
    cr_expect_null(rq.body);
    prov_request_release(&rq);
    struct prov_result res;
    probe_answer(&f, 200, EMPTY, "api-usage=18/5000", &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "object")),
                     "Contact");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "api_version")),
                     "66.0");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "limit_info")),
                     "api-usage=18/5000");
    prov_result_release(&res);
    probe_answer(&f, 401, "[{\"message\":\"Session expired or invalid\","
                          "\"errorCode\":\"INVALID_SESSION_ID\"}]", NULL,
                 &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    probe_answer(&f, 400, "[{\"message\":\"sObject type 'Contact' is not "
                          "supported.\",\"errorCode\":\"INVALID_TYPE\"}]",
                 NULL, &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    prov_result_release(&res);
    json_object_set_new(f.config, "object", json_string("Account"));
    cr_expect_eq(prov_salesforce.probe->build(&f.ctx, &rq, &err), CS_EINVAL);
    prov_request_release(&rq);
    fx_release(&f);
}
