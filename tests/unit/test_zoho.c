/*
 * test_zoho.c - the Zoho CRM provider, step by step: the exact requests
 * (method, URL on the data centre's API domain, the Zoho-oauthtoken
 * header, JSON bodies compared as JSON), answers shaped like the API
 * reference's samples (upsert's data[].details.id with action, search's
 * 204 for none, per-record errors), the search-then-update-or-upsert
 * flow, DUPLICATE_DATA adoption, note reconciliation by marker, field
 * mappings and error classification.
 */
#include "prov_support.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://zoho.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define MARKER "callsync:" JOB_ID
#define REC "5725767000000411001"

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
        "\"customer\":{\"name\":\"Jane Van Smith\",\"phone\":\"+14079780655\","
        "\"email\":\"jane@example.com\",\"city\":\"Orlando\","
        "\"state\":\"FL\"},"
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"summary\":\"Customer scheduled roof repair\","
        "\"sentiment\":\"positive\",\"transcript\":\"Agent: Hi\\nUser: Hello\","
        "\"recording_url\":\"https://rec.example.com/r/1.wav\","
        "\"duration_s\":75,"
        "\"analysis\":{\"lead_score\":87,\"project_type\":\"kitchen\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:o}", "job_id", JOB_ID, "provider", "zoho",
                       "call", call);
    f->config = jparse(config ? config : "{}");
    f->done = json_object();
    f->scratch = json_object();
    f->creds.access_token = "1000.zoho-secret";
    f->ctx.job = f->job;
    f->ctx.call = json_object_get(f->job, "call");
    f->ctx.config = f->config;
    f->ctx.creds = &f->creds;
    f->ctx.done = f->done;
    f->ctx.scratch = f->scratch;
    f->ctx.base_url = BASE;
    f->ctx.now_ms = 1771166100000LL;
}

static void fx_release(struct fx *f)
{
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->done);
    json_decref(f->scratch);
}

static void fx_record_done(struct fx *f, const char *module)
{
    json_object_set_new(f->done, "record", json_pack("{s:s,s:s}",
                                                     "record_id", REC,
                                                     "module", module));
}

static const struct prov_step *step(const char *name)
{
    for (size_t i = 0; i < prov_zoho.nsteps; i++)
        if (strcmp(prov_zoho.steps[i].name, name) == 0)
            return &prov_zoho.steps[i];
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

static void build(struct fx *f, const char *name, struct prov_request *rq,
                  const char *method, const char *path)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    int rc = step(name)->build(&f->ctx, rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s (%s)", name, err.msg, err.field);
    cr_assert_str_eq(rq->method, method);
    char full[1024];
    snprintf(full, sizeof(full), "%s/crm/v8%s", BASE, path);
    cr_assert_str_eq(rq->url, full);
    cr_assert_str_eq(hdr(rq, "Authorization"),
                     "Zoho-oauthtoken 1000.zoho-secret");
    if (rq->body)
        cr_assert_str_eq(hdr(rq, "Content-Type"), "application/json");
}

static void expect_body(const struct prov_request *rq, const char *want)
{
    prov_expect_json(rq->body, want);
}

static int build_err(struct fx *f, const char *name, struct cs_err *err)
{
    return prov_build_err(step(name), &f->ctx, err);
}

static void answer(struct fx *f, const char *name, int status,
                   const char *body, struct prov_result *res, ...)
{
    va_list ap;
    va_start(ap, res);
    prov_feed_v(step(name), &f->ctx, status, body, res, -1, ap);
    va_end(ap);
}

static void expect_next(struct prov_result *res)
{
    cr_assert_eq(res->outcome, PROV_NEXT, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    prov_result_release(res);
}

static void expect_record(struct prov_result *res, const char *id,
                          const char *module)
{
    cr_assert_eq(res->outcome, PROV_DONE, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    cr_expect_str_eq(json_string_value(json_object_get(res->value,
                                                       "record_id")),
                     id);
    cr_expect_str_eq(json_string_value(json_object_get(res->value,
                                                       "module")),
                     module);
    prov_result_release(res);
}

/* The reference's upsert sample: one record added. */
#define UPSERTED(id, action)                                                 \
    "{\"data\":[{\"code\":\"SUCCESS\",\"duplicate_field\":null,"             \
    "\"action\":\"" action "\",\"details\":{\"Modified_Time\":"              \
    "\"2026-02-15T09:35:00-05:00\",\"Modified_By\":{\"name\":\"P B\","        \
    "\"id\":\"111\"},\"Created_Time\":\"2026-02-15T09:35:00-05:00\","        \
    "\"id\":\"" id "\",\"Created_By\":{\"name\":\"P B\",\"id\":\"111\"}},"   \
    "\"message\":\"record added\",\"status\":\"success\"}]}"

#define Q_EMAIL "/Leads/search?email=jane%40example.com"
#define Q_PHONE "/Leads/search?phone=%2B14079780655"

Test(zoho, ops_table)
{
    cr_assert_eq(prov_find("zoho"), &prov_zoho);
    cr_expect_eq(prov_zoho.rate.requests, 5);
    cr_expect_eq(prov_zoho.rate.per_ms, 1000);
    cr_expect_str_eq(prov_zoho.rate_scope, "zoho_org_id");
    cr_assert_eq(prov_zoho.nsteps, 2);
    cr_expect_str_eq(prov_zoho.steps[0].name, "record");
    cr_expect_str_eq(prov_zoho.steps[1].name, "note");
    cr_expect_eq(prov_zoho.steps[0].reconcile, PROV_RECONCILE_LOOKUP);
    cr_expect_eq(prov_zoho.steps[1].reconcile, PROV_RECONCILE_LOOKUP);
}

Test(zoho, data_centres)
{
    static const struct {
        const char *config, *instance, *want;
    } ok[] = {
        {"{}", NULL, "https://www.zohoapis.com"},
        {"{}", "https://www.zohoapis.eu", "https://www.zohoapis.eu"},
        {"{}", "https://www.zohoapis.com.au/", "https://www.zohoapis.com.au"},
        {"{\"api_domain\":\"https://www.zohoapis.in\"}", NULL,
         "https://www.zohoapis.in"},
        {"{\"dc\":\"jp\"}", NULL, "https://www.zohoapis.jp"},
        {"{\"oauth\":{\"dc\":\"ca\"}}", NULL, "https://www.zohoapis.ca"},
        {"{\"dc\":\"cn\"}", NULL, "https://www.zohoapis.com.cn"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(ok); i++) {
        struct fx f;
        fx_init(&f, base_call(), ok[i].config);
        f.ctx.base_url = NULL;
        f.creds.instance_url = ok[i].instance;
        struct prov_request rq = {0};
        struct cs_err err = {0};
        cr_assert_eq(step("record")->build(&f.ctx, &rq, &err), 0, "%s",
                     err.msg);
        char want[256];
        snprintf(want, sizeof(want), "%s/crm/v8%s", ok[i].want, Q_EMAIL);
        cr_expect_str_eq(rq.url, want);
        prov_request_release(&rq);
        fx_release(&f);
    }
    static const struct {
        const char *config, *instance, *field;
    } bad[] = {
        {"{}", "https://www.zohoapis.evil.io", "instance_url"},
        {"{}", "http://www.zohoapis.com", "instance_url"},
        {"{\"api_domain\":\"https://crm.zoho.com\"}", NULL,
         "config.api_domain"},
        {"{\"dc\":\"mars\"}", NULL, "config.dc"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct fx f;
        fx_init(&f, base_call(), bad[i].config);
        f.ctx.base_url = NULL;
        f.creds.instance_url = bad[i].instance;
        struct cs_err err;
        cr_expect_eq(build_err(&f, "record", &err), CS_EINVAL);
        cr_expect_str_eq(err.field, bad[i].field);
        fx_release(&f);
    }
    struct fx f;
    fx_init(&f, base_call(), NULL);
    f.creds.access_token = NULL;
    struct cs_err err;
    cr_expect_eq(build_err(&f, "record", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "no_credentials: ", 16) == 0);
    fx_release(&f);
}

Test(zoho, record_search_then_upsert_a_lead)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"lead_source\":\"Phone Call\","
                             "\"trigger\":[\"workflow\"],"
                             "\"field_mappings\":{\"ai_analysis.lead_score\":"
                             "\"Lead_Score__c\"}}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "record", &rq, "GET", Q_EMAIL);
    prov_request_release(&rq);
    answer(&f, "record", 204, NULL, &res, NULL);
    expect_next(&res);
    build(&f, "record", &rq, "GET", Q_PHONE);
    prov_request_release(&rq);
    answer(&f, "record", 204, NULL, &res, NULL);
    expect_next(&res);
    build(&f, "record", &rq, "POST", "/Leads/upsert");
    expect_body(&rq, "{\"data\":[{\"First_Name\":\"Jane Van\","
                     "\"Last_Name\":\"Smith\",\"Email\":\"jane@example.com\","
                     "\"Phone\":\"+14079780655\",\"City\":\"Orlando\","
                     "\"State\":\"FL\",\"Company\":\"Jane Van Smith\","
                     "\"Lead_Source\":\"Phone Call\",\"Lead_Score__c\":87}],"
                     "\"duplicate_check_fields\":[\"Email\",\"Phone\"],"
                     "\"trigger\":[\"workflow\"]}");
    prov_request_release(&rq);
    answer(&f, "record", 201, UPSERTED("111112000000142001", "insert"), &res,
           NULL);
    expect_record(&res, "111112000000142001", "Leads");
    fx_release(&f);
}

Test(zoho, record_found_is_filled_in_only_where_empty)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"module\":\"Contacts\",\"field_mappings\":"
                             "[{\"target\":\"Description\","
                             "\"source\":\"call_summary\"}]}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "record", &rq, "GET",
          "/Contacts/search?email=jane%40example.com");
    prov_request_release(&rq);
    /* Search matches words: the first hit has another email. */
    answer(&f, "record", 200,
           "{\"data\":[{\"id\":\"1\",\"Email\":\"jane@example.com.au\"},"
           "{\"id\":\"" REC "\",\"Email\":\"JANE@example.com\","
           "\"First_Name\":\"Janet\",\"Last_Name\":\"Smith\","
           "\"Phone\":null,\"Mailing_City\":\"Tampa\","
           "\"Description\":\"old\"}],\"info\":{\"per_page\":200,"
           "\"count\":2,\"page\":1,\"more_records\":false}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "record", &rq, "PUT", "/Contacts/" REC);
    /* Janet and Tampa stay (curated); the phone and state are added; the
     * mapped description differs. */
    expect_body(&rq, "{\"data\":[{\"Phone\":\"+14079780655\","
                     "\"Mailing_State\":\"FL\","
                     "\"Description\":\"Customer scheduled roof repair\"}]}");
    prov_request_release(&rq);
    answer(&f, "record", 200,
           "{\"data\":[{\"code\":\"SUCCESS\",\"details\":{\"id\":\"" REC "\"},"
           "\"message\":\"record updated\",\"status\":\"success\"}]}",
           &res, NULL);
    expect_record(&res, REC, "Contacts");
    fx_release(&f);
}

Test(zoho, record_found_by_phone_needs_nothing)
{
    json_t *call = base_call();
    json_object_del(json_object_get(call, "customer"), "email");
    json_object_del(json_object_get(call, "customer"), "city");
    json_object_del(json_object_get(call, "customer"), "state");
    struct fx f;
    fx_init(&f, call, NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "record", &rq, "GET", Q_PHONE);
    prov_request_release(&rq);
    answer(&f, "record", 200,
           "{\"data\":[{\"id\":\"" REC "\",\"First_Name\":\"Jane Van\","
           "\"Last_Name\":\"Smith\",\"Phone\":null,"
           "\"Mobile\":\"(407) 978-0655\"}],\"info\":{\"more_records\":"
           "false}}",
           &res, NULL);
    expect_next(&res);
    /* The number is there as Mobile: only Phone is empty. */
    build(&f, "record", &rq, "PUT", "/Leads/" REC);
    expect_body(&rq, "{\"data\":[{\"Phone\":\"+14079780655\"}]}");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(zoho, duplicate_data_adopts_the_other_record)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.scratch, "phase", json_string("upsert"));
    struct prov_request rq;
    struct prov_result res;
    build(&f, "record", &rq, "POST", "/Leads/upsert");
    prov_request_release(&rq);
    answer(&f, "record", 400,
           "{\"data\":[{\"code\":\"DUPLICATE_DATA\",\"details\":{\"api_name\":"
           "\"Email\",\"json_path\":\"$.data[0].Email\",\"duplicate_record\":"
           "{\"module\":{\"api_name\":\"Leads\",\"id\":\"9\"},\"id\":\"" REC
           "\"}},\"message\":\"duplicate data\",\"status\":\"error\"}]}",
           &res, NULL);
    expect_next(&res);
    build(&f, "record", &rq, "GET", "/Leads/" REC);
    prov_request_release(&rq);
    answer(&f, "record", 200,
           "{\"data\":[{\"id\":\"" REC "\",\"First_Name\":\"Jane Van\","
           "\"Last_Name\":\"Smith\",\"Email\":\"jane@example.com\","
           "\"Phone\":\"+14079780655\",\"City\":\"Orlando\","
           "\"State\":\"FL\"}]}",
           &res, NULL);
    expect_record(&res, REC, "Leads");
    /* A second DUPLICATE_DATA in one attempt is a dead letter. */
    json_object_set_new(f.scratch, "phase", json_string("upsert"));
    answer(&f, "record", 400,
           "{\"data\":[{\"code\":\"DUPLICATE_DATA\",\"details\":{\"id\":\""
           REC "\"},\"message\":\"duplicate data\",\"status\":\"error\"}]}",
           &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "duplicate_data");
    prov_result_release(&res);
    fx_release(&f);
}

Test(zoho, record_config_and_mapping_errors)
{
    static const struct {
        const char *config, *field, *says;
    } bad[] = {
        {"{\"module\":\"Deals\"}", "config.module", "not Leads or Contacts"},
        {"{\"trigger\":\"workflow\"}", "config.trigger", "must be a list"},
        {"{\"field_mappings\":{\"call_id\":\"Lead Score\"}}", "field_mappings",
         "not a Zoho field API name"},
        {"{\"field_mappings\":5}", "field_mappings", "a list or an object"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct fx f;
        fx_init(&f, base_call(), bad[i].config);
        struct cs_err err;
        cr_expect_eq(build_err(&f, "record", &err), CS_EINVAL, "%s",
                     bad[i].config);
        cr_expect_str_eq(err.field, bad[i].field);
        cr_expect(strstr(err.msg, bad[i].says), "%s", err.msg);
        fx_release(&f);
    }
    json_t *call = base_call();
    json_object_del(json_object_get(call, "customer"), "email");
    json_object_del(json_object_get(call, "customer"), "phone");
    struct fx f;
    fx_init(&f, call, NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "record", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "no_contact_key: ", 16) == 0);
    fx_release(&f);
}

Test(zoho, note_create_and_reconcile)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"note_title\":\"Call {{call_outcome}}\"}");
    fx_record_done(&f, "Leads");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "note", &rq, "POST", "/Leads/" REC "/Notes");
    json_t *b = jparse(rq.body);
    json_t *n = json_array_get(json_object_get(b, "data"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(n, "Note_Title")),
                     "Call appointment_booked");
    const char *c = json_string_value(json_object_get(n, "Note_Content"));
    cr_expect(strstr(c, "Summary: Customer scheduled roof repair\n"), "%s", c);
    cr_expect(strstr(c, "Duration: 1m 15s"), "%s", c);
    cr_expect(strstr(c, "Recording: https://rec.example.com/r/1.wav"), "%s",
              c);
    cr_expect(strstr(c, "Sync reference: " MARKER), "%s", c);
    json_decref(b);
    prov_request_release(&rq);
    answer(&f, "note", 201,
           "{\"data\":[{\"code\":\"SUCCESS\",\"details\":{\"Modified_Time\":"
           "\"2026-02-15T09:35:00-05:00\",\"id\":\"777\"},\"message\":"
           "\"record added\",\"status\":\"success\"}]}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "note_id")),
                     "777");
    prov_result_release(&res);

    /* Reconcile: two pages of notes, the second holds the marker. */
    json_object_clear(f.scratch);
    f.ctx.reconcile = true;
    build(&f, "note", &rq, "GET", "/Leads/" REC "/Notes?fields=Note_Title"
                                  "%2CNote_Content&per_page=200&page=1");
    prov_request_release(&rq);
    answer(&f, "note", 200,
           "{\"data\":[{\"id\":\"1\",\"Note_Content\":\"other\"}],"
           "\"info\":{\"per_page\":200,\"count\":1,\"page\":1,"
           "\"more_records\":true}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "note", &rq, "GET", "/Leads/" REC "/Notes?fields=Note_Title"
                                  "%2CNote_Content&per_page=200&page=2");
    prov_request_release(&rq);
    answer(&f, "note", 200,
           "{\"data\":[{\"id\":\"778\",\"Note_Content\":\"x\\nSync "
           "reference: " MARKER "\"}],\"info\":{\"more_records\":false}}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "note_id")),
                     "778");
    prov_result_release(&res);
    /* No notes (204): write it. */
    json_object_clear(f.scratch);
    build(&f, "note", &rq, "GET", "/Leads/" REC "/Notes?fields=Note_Title"
                                  "%2CNote_Content&per_page=200&page=1");
    prov_request_release(&rq);
    answer(&f, "note", 204, NULL, &res, NULL);
    expect_next(&res);
    build(&f, "note", &rq, "POST", "/Leads/" REC "/Notes");
    prov_request_release(&rq);
    fx_release(&f);

    fx_init(&f, base_call(), NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "note", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "no_record: ", 11) == 0);
    fx_release(&f);
}

static void classify(int status, const char *body, struct prov_result *res,
                     const char *h, const char *v)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_record_done(&f, "Leads");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "note", status, body, res, h, v, NULL);
    fx_release(&f);
}

Test(zoho, error_classification)
{
    struct prov_result res;
    classify(401, "{\"code\":\"INVALID_TOKEN\",\"details\":{},\"message\":"
                  "\"invalid oauth token\",\"status\":\"error\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "invalid_token");
    cr_expect_str_eq(res.message, "INVALID_TOKEN: invalid oauth token");
    prov_result_release(&res);
    classify(401, "{\"code\":\"OAUTH_SCOPE_MISMATCH\",\"details\":{},"
                  "\"message\":\"invalid oauth scope to access this URL\","
                  "\"status\":\"error\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    classify(400, "{\"data\":[{\"code\":\"MANDATORY_NOT_FOUND\",\"details\":"
                  "{\"api_name\":\"Note_Content\",\"json_path\":"
                  "\"$.data[0].Note_Content\"},\"message\":\"required field "
                  "not found\",\"status\":\"error\"}]}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "mandatory_not_found");
    cr_expect_str_eq(res.message, "MANDATORY_NOT_FOUND: required field not "
                                  "found (Note_Content)");
    prov_result_release(&res);
    classify(400, "{\"code\":\"LIMIT_REACHED\",\"details\":{},\"message\":"
                  "\"limit reached\",\"status\":\"error\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "limit_reached");
    prov_result_release(&res);
    /* A record that failed inside a multi-status 2xx. */
    classify(202, "{\"data\":[{\"code\":\"INVALID_DATA\",\"details\":"
                  "{\"api_name\":\"Note_Title\"},\"message\":\"invalid "
                  "data\",\"status\":\"error\"}]}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "invalid_data");
    cr_expect_eq(res.http_status, 202);
    prov_result_release(&res);
    classify(500, "{\"code\":\"INTERNAL_ERROR\",\"details\":{},\"message\":"
                  "\"Internal Server Error\",\"status\":\"error\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    prov_result_release(&res);
    classify(429, "{\"code\":\"TOO_MANY_REQUESTS\",\"details\":{},"
                  "\"message\":\"concurrency limit exceeded\","
                  "\"status\":\"error\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 5000);
    prov_result_release(&res);
    classify(429, "{\"code\":\"TOO_MANY_REQUESTS\",\"details\":{},"
                  "\"message\":\"API credits exhausted for the last 24 "
                  "hours\",\"status\":\"error\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.retry_after_ms, 300000);
    cr_expect_str_eq(res.code, "credits_exhausted");
    prov_result_release(&res);
    classify(429, NULL, &res, "Retry-After", "7");
    cr_expect_eq(res.retry_after_ms, 7000);
    prov_result_release(&res);
    classify(0, NULL, &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    prov_result_release(&res);
    classify(201, "{\"data\":[]}", &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "bad_response");
    prov_result_release(&res);
}

/* ------------------------------------------------------------------ */
/* Probe (callsyncctl connections test)                               */
/* ------------------------------------------------------------------ */

static void probe_build(struct fx *f, struct prov_request *rq,
                        const char *path)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    cr_assert_not_null(prov_zoho.probe);
    cr_assert_eq(prov_zoho.probe->build(&f->ctx, rq, &err), 0, "%s",
                 err.msg);
    char full[256];
    snprintf(full, sizeof(full), "%s/crm/v8%s", BASE, path);
    cr_expect_str_eq(rq->method, "GET");
    cr_expect_str_eq(rq->url, full);
    cr_expect_str_eq(hdr(rq, "Authorization"),
                     "Zoho-oauthtoken 1000.zoho-secret");
    cr_expect_null(rq->body);
    prov_request_release(rq);
}

static void probe_answer(struct fx *f, int status, const char *body,
                         struct prov_result *res)
{
    struct prov_response rsp = {status, 0, NULL, body,
                                body ? strlen(body) : 0};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    prov_zoho.probe->parse(&f->ctx, &rsp, res);
}

#define ORG_JSON                                                             \
    "{\"org\":[{\"country\":\"United States\",\"id\":"                       \
    "\"4150868000000225013\",\"zgid\":\"4150868000000225002\","              \
    "\"company_name\":\"Zylker\",\"time_zone\":\"PST\",\"iso_code\":"        \
    "\"USD\",\"currency\":\"US Dollar - USD\"}]}"

Test(zoho_probe, reads_the_module_then_the_org)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"module\":\"Contacts\"}");
    struct prov_request rq;
    struct prov_result res;
    probe_build(&f, &rq, "/Contacts?fields=Last_Name&per_page=1");
    probe_answer(&f, 204, NULL, &res);
    expect_next(&res);
    prov_result_release(&res);
    probe_build(&f, &rq, "/org");
    probe_answer(&f, 200, ORG_JSON, &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "module")),
                     "Contacts");
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "org_id")),
                     "4150868000000225013");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "company_name")),
                     "Zylker");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "time_zone")),
                     "PST");
    prov_result_release(&res);
    fx_release(&f);
}

Test(zoho_probe, org_scope_is_optional_module_scope_is_not)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    probe_build(&f, &rq, "/Leads?fields=Last_Name&per_page=1");
    probe_answer(&f, 200, "{\"data\":[{\"Last_Name\":\"Doe\",\"id\":\"" REC
                          "\"}],\"info\":{\"per_page\":1,\"count\":1,"
                          "\"page\":1,\"more_records\":true}}", &res);
    expect_next(&res);
    prov_result_release(&res);
    const char *mismatch = "{\"code\":\"OAUTH_SCOPE_MISMATCH\",\"details\":"
                           "{},\"message\":\"invalid oauth scope to access "
                           "this URL\",\"status\":\"error\"}";
    probe_answer(&f, 401, mismatch, &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect(strstr(json_string_value(json_object_get(res.value, "org")),
                     "ZohoCRM.org.READ"));
    prov_result_release(&res);
    /* Without the module's scope the probe fails: a sync would. */
    json_object_clear(f.scratch);
    probe_answer(&f, 401, mismatch, &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "oauth_scope_mismatch");
    prov_result_release(&res);
    probe_answer(&f, 401, "{\"code\":\"INVALID_TOKEN\",\"details\":{},"
                          "\"message\":\"invalid oauth token\",\"status\":"
                          "\"error\"}", &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    json_object_set_new(f.config, "module", json_string("Deals"));
    struct cs_err err = {0};
    memset(&rq, 0, sizeof(rq));
    cr_expect_eq(prov_zoho.probe->build(&f.ctx, &rq, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "module"), "%s", err.msg);
    prov_request_release(&rq);
    fx_release(&f);
}
