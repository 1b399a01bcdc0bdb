/*
 * test_housecall_pro.c - the Housecall Pro provider step by step: the
 * customer search by phone then email with exact comparisons, create and
 * fill-in bodies (CustomerCreate / CustomerUpdate fields), the job and
 * estimate bodies (JobCreate / EstimateCreate: schedule in the caller's
 * zone with its offset, the marker in the notes), the address a job
 * needs, the look-ups before every write, the note on the job, the
 * estimate option or the customer's notes field (read, append, verify),
 * field mappings and the error bodies of the Housecall v1 document.
 */
#include "prov.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://hcp.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define MARKER "callsync:" JOB_ID
#define NOW_MS 1771166100000LL
#define CUS "cus_4e3bd29c9b2b4b5c9e6f2f0a1e2d3c4b"
#define ADR "adr_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
#define JOB "job_1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a"
#define CONFIG                                                         \
    "{\"company_id\":\"cmp_77\",\"lead_source\":\"Voice agent\","      \
    "\"tags\":[\"ai-call\"],\"default_employee_id\":\"pro_123\","      \
    "\"job_type_id\":\"jt_9\",\"arrival_window_minutes\":60}"

struct fx {
    json_t *job, *config, *done, *scratch;
    struct prov_creds creds;
    struct prov_ctx ctx;
    struct prov_request rq;
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
        "\"customer\":{\"name\":\"Marcus Bell\",\"phone\":\"+13125550187\","
        "\"email\":\"marcus.bell@example.org\",\"address\":\"1820 Ridge Ave\","
        "\"city\":\"Evanston\",\"state\":\"IL\"},"
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"summary\":\"Roof inspection booked\",\"duration_s\":241,"
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:34:01Z\","
        "\"appointment\":{\"title\":\"Roof inspection\","
        "\"date\":\"2026-02-20\",\"time\":\"14:00\","
        "\"timezone\":\"America/Chicago\",\"duration_min\":90,"
        "\"service_type\":\"roof_inspection\"},"
        "\"custom\":{\"customer_zip\":\"60201\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:o}", "job_id", JOB_ID, "provider",
                       "housecall_pro", "call", call);
    f->config = jparse(config ? config : CONFIG);
    f->done = json_object();
    f->scratch = json_object();
    f->creds.api_key = "hcp-key-0001";
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
    prov_request_release(&f->rq);
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->done);
    json_decref(f->scratch);
}

static const struct prov_step *step(const char *name)
{
    for (size_t i = 0; i < prov_housecall_pro.nsteps; i++)
        if (strcmp(prov_housecall_pro.steps[i].name, name) == 0)
            return &prov_housecall_pro.steps[i];
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

/* The next request: method and URL (after BASE) checked; the body parsed
 * (NULL without one). */
static json_t *build(struct fx *f, const char *name, const char *method,
                     const char *path)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = step(name)->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s: %s", name, err.field, err.msg);
    cr_expect_str_eq(f->rq.method, method);
    cr_expect_str_eq(f->rq.url + strlen(BASE), path);
    cr_expect_str_eq(hdr(&f->rq, "Accept"), "application/json");
    if (!f->rq.body)
        return NULL;
    cr_expect_str_eq(hdr(&f->rq, "Content-Type"), "application/json");
    json_t *b = json_loadb(f->rq.body, f->rq.body_len, 0, NULL);
    cr_assert_not_null(b);
    return b;
}

static void parse(struct fx *f, const char *name, int status,
                  const char *body, struct prov_result *res)
{
    struct prov_response r = {status, 0, NULL, body, body ? strlen(body) : 0};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    step(name)->parse(&f->ctx, &r, res);
}

static void expect_json(const json_t *got, const char *want)
{
    json_t *w = jparse(want);
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    cr_expect(json_equal((json_t *)got, w), "got %s", g);
    free(g);
    json_decref(w);
}

static void customer_done(struct fx *f, bool with_address)
{
    json_object_set_new(
        f->done, "customer",
        with_address ? json_pack("{s:s,s:s}", "customer_id", CUS,
                                 "address_id", ADR)
                     : json_pack("{s:s}", "customer_id", CUS));
}

/* ------------------------------------------------------------------ */

Test(hcp, registered_with_a_conservative_rate_per_company)
{
    const struct prov_ops *ops = prov_find("housecall_pro");
    cr_assert_eq(ops, &prov_housecall_pro);
    cr_expect_eq(ops->rate.requests, 120);
    cr_expect_eq(ops->rate.per_ms, 60000);
    cr_expect_str_eq(ops->rate_scope, "company_id");
    for (size_t i = 0; i < ops->nsteps; i++)
        cr_expect_eq(ops->steps[i].reconcile, PROV_RECONCILE_LOOKUP);
}

Test(hcp, customer_search_by_phone_with_the_api_key)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect_null(build(&f, "customer", "GET",
                         "/customers?q=3125550187&page_size=100"));
    cr_expect_str_eq(hdr(&f.rq, "Authorization"), "Token hcp-key-0001");
    cr_expect_str_eq(hdr(&f.rq, "X-Company-Id"), "cmp_77");
    fx_release(&f);

    /* an OAuth token goes as Bearer; no company header unless set */
    fx_init(&f, base_call(), "{}");
    f.creds.access_token = "oauth-tok";
    cr_expect_null(build(&f, "customer", "GET",
                         "/customers?q=3125550187&page_size=100"));
    cr_expect_str_eq(hdr(&f.rq, "Authorization"), "Bearer oauth-tok");
    cr_expect_null(hdr(&f.rq, "X-Company-Id"));
    fx_release(&f);
}

Test(hcp, a_found_customer_gets_what_it_lacks)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "customer", "GET",
                      "/customers?q=3125550187&page_size=100"));
    struct prov_result res;
    /* The search matches by contained digits and names: only the exact
     * number counts (home_number here, formatted). */
    parse(&f, "customer", 200,
          "{\"page\":1,\"page_size\":100,\"total_pages\":1,\"total_items\":2,"
          "\"customers\":[{\"id\":\"cus_other\",\"mobile_number\":"
          "\"13125550187999\"},{\"id\":\"" CUS "\",\"first_name\":\"Marcus\","
          "\"last_name\":null,\"email\":null,\"mobile_number\":null,"
          "\"home_number\":\"(312) 555-0187\",\"tags\":[\"vip\"],"
          "\"addresses\":[{\"id\":\"adr_bill\",\"type\":\"billing\"},"
          "{\"id\":\"" ADR "\",\"type\":\"service\"}]}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_t *b = build(&f, "customer", "PUT", "/customers/" CUS);
    expect_json(b, "{\"last_name\":\"Bell\",\"email\":"
                   "\"marcus.bell@example.org\",\"mobile_number\":"
                   "\"3125550187\"}");
    json_decref(b);
    parse(&f, "customer", 200,
          "{\"id\":\"" CUS "\",\"first_name\":\"Marcus\",\"addresses\":["
          "{\"id\":\"" ADR "\",\"type\":\"service\"}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"customer_id\":\"" CUS "\",\"address_id\":\""
                           ADR "\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, a_customer_with_everything_is_taken_as_it_is)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "customer", "GET",
                      "/customers?q=3125550187&page_size=100"));
    struct prov_result res;
    parse(&f, "customer", 200,
          "{\"customers\":[{\"id\":\"" CUS "\",\"first_name\":\"M\","
          "\"last_name\":\"B\",\"email\":\"m@b.c\",\"mobile_number\":"
          "\"+1 312 555 0187\",\"addresses\":[]}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"customer_id\":\"" CUS "\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, no_phone_match_then_email_then_create_with_the_address)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "customer", "GET",
                      "/customers?q=3125550187&page_size=100"));
    struct prov_result res;
    parse(&f, "customer", 200, "{\"customers\":[]}", &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    cr_expect_null(build(&f, "customer", "GET",
                         "/customers?q=marcus.bell%40example.org"
                         "&page_size=100"));
    parse(&f, "customer", 200,
          "{\"customers\":[{\"id\":\"cus_x\",\"email\":"
          "\"marcus.bell@example.org.uk\"}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_t *b = build(&f, "customer", "POST", "/customers");
    expect_json(b, "{\"first_name\":\"Marcus\",\"last_name\":\"Bell\","
                   "\"email\":\"marcus.bell@example.org\",\"mobile_number\":"
                   "\"3125550187\",\"lead_source\":\"Voice agent\",\"tags\":["
                   "\"ai-call\"],\"addresses\":[{\"street\":\"1820 Ridge Ave\","
                   "\"city\":\"Evanston\",\"state\":\"IL\",\"zip\":\"60201\","
                   "\"country\":\"US\"}]}");
    json_decref(b);
    parse(&f, "customer", 201,
          "{\"id\":\"" CUS "\",\"addresses\":[{\"id\":\"" ADR "\","
          "\"type\":\"service\"}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"customer_id\":\"" CUS "\",\"address_id\":\""
                           ADR "\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, customer_mappings_and_their_errors)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"field_mappings\":{\"ai_analysis.project_type\":\"company\","
            "\"source\":\"lead_source\"}}");
    json_object_set_new(json_object_get(f.job, "call"), "analysis",
                        json_pack("{s:s}", "project_type", "Roofing Co"));
    json_decref(build(&f, "customer", "GET",
                      "/customers?q=3125550187&page_size=100"));
    json_object_set_new(f.scratch, "phase", json_string("create"));
    json_t *b = build(&f, "customer", "POST", "/customers");
    cr_expect_str_eq(json_string_value(json_object_get(b, "company")),
                     "Roofing Co");
    cr_expect_str_eq(json_string_value(json_object_get(b, "lead_source")),
                     "retell");
    json_decref(b);
    fx_release(&f);

    fx_init(&f, base_call(), "{\"field_mappings\":{\"summary\":\"notez\"}}");
    struct cs_err err = {0};
    cr_expect_eq(step("customer")->build(&f.ctx, &f.rq, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "not a Housecall Pro customer field"), "%s",
              err.msg);
    fx_release(&f);

    json_t *call = base_call();
    json_object_del(json_object_get(call, "customer"), "phone");
    json_object_del(json_object_get(call, "customer"), "email");
    fx_init(&f, call, NULL);
    memset(&err, 0, sizeof(err));
    cr_expect_eq(step("customer")->build(&f.ctx, &f.rq, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_contact_key"), "%s", err.msg);
    fx_release(&f);
}

Test(hcp, job_is_looked_up_then_created_in_the_callers_zone)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    customer_done(&f, true);
    cr_expect(step("job")->applies(&f.ctx));
    /* 14:00 in Chicago on 20 February is 20:00 UTC */
    cr_expect_null(build(&f, "job", "GET",
                         "/jobs?customer_id=" CUS "&scheduled_start_min="
                         "2026-02-20T20%3A00%3A00Z&scheduled_start_max="
                         "2026-02-20T20%3A00%3A00Z&page_size=100"));
    struct prov_result res;
    /* a canceled job at that time is not ours; another job at another
     * time neither */
    parse(&f, "job", 200,
          "{\"jobs\":[{\"id\":\"job_c\",\"work_status\":\"pro canceled\","
          "\"schedule\":{\"scheduled_start\":\"2026-02-20T20:00:00Z\"}},"
          "{\"id\":\"job_o\",\"work_status\":\"scheduled\",\"schedule\":"
          "{\"scheduled_start\":\"2026-02-20T21:00:00Z\"},\"notes\":[]}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_t *b = build(&f, "job", "POST", "/jobs");
    const char *notes = json_string_value(json_object_get(b, "notes"));
    cr_expect(strstr(notes, "Sync reference: " MARKER "/job"), "%s", notes);
    json_object_del(b, "notes");
    expect_json(b, "{\"customer_id\":\"" CUS "\",\"address_id\":\"" ADR "\","
                   "\"schedule\":{\"scheduled_start\":"
                   "\"2026-02-20T14:00:00-06:00\",\"scheduled_end\":"
                   "\"2026-02-20T15:30:00-06:00\",\"arrival_window\":60},"
                   "\"tags\":[\"ai-call\"],\"job_fields\":{\"job_type_id\":"
                   "\"jt_9\"},\"lead_source\":\"Voice agent\","
                   "\"assigned_employee_ids\":[\"pro_123\"]}");
    json_decref(b);
    parse(&f, "job", 201, "{\"id\":\"" JOB "\",\"notes\":[]}", &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"job_id\":\"" JOB "\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, a_job_of_ours_or_at_the_same_instant_is_found)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    customer_done(&f, true);
    json_decref(build(&f, "job", "GET",
                      "/jobs?customer_id=" CUS "&scheduled_start_min="
                      "2026-02-20T20%3A00%3A00Z&scheduled_start_max="
                      "2026-02-20T20%3A00%3A00Z&page_size=100"));
    struct prov_result res;
    parse(&f, "job", 200,
          "{\"jobs\":[{\"id\":\"" JOB "\",\"schedule\":{\"scheduled_start\":"
          "\"2026-02-20T14:00:00-06:00\"}}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"job_id\":\"" JOB "\"}");
    prov_result_release(&res);
    json_object_clear(f.scratch);
    json_decref(build(&f, "job", "GET",
                      "/jobs?customer_id=" CUS "&scheduled_start_min="
                      "2026-02-20T20%3A00%3A00Z&scheduled_start_max="
                      "2026-02-20T20%3A00%3A00Z&page_size=100"));
    parse(&f, "job", 200,
          "{\"jobs\":[{\"id\":\"job_m\",\"notes\":[{\"id\":\"n\",\"content\":"
          "\"x Sync reference: " MARKER "/job\"}]}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"job_id\":\"job_m\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, a_job_needs_an_address_from_the_customer_or_the_call)
{
    struct fx f;
    json_t *call;
    fx_init(&f, base_call(), NULL);
    customer_done(&f, false);
    cr_expect_null(build(&f, "job", "GET", "/customers/" CUS));
    struct prov_result res;
    parse(&f, "job", 200, "{\"id\":\"" CUS "\",\"addresses\":[]}", &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_t *b = build(&f, "job", "POST", "/customers/" CUS "/addresses");
    expect_json(b, "{\"street\":\"1820 Ridge Ave\",\"city\":\"Evanston\","
                   "\"state\":\"IL\",\"zip\":\"60201\",\"country\":\"US\"}");
    json_decref(b);
    parse(&f, "job", 200, "{\"id\":\"adr_new\",\"type\":\"service\"}", &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_decref(build(&f, "job", "GET",
                      "/jobs?customer_id=" CUS "&scheduled_start_min="
                      "2026-02-20T20%3A00%3A00Z&scheduled_start_max="
                      "2026-02-20T20%3A00%3A00Z&page_size=100"));
    parse(&f, "job", 200, "{\"jobs\":[]}", &res);
    prov_result_release(&res);
    b = build(&f, "job", "POST", "/jobs");
    cr_expect_str_eq(json_string_value(json_object_get(b, "address_id")),
                     "adr_new");
    json_decref(b);
    fx_release(&f);

    /* a zip where Retell keeps what its agent collected, or where
     * zip_source says */
    call = base_call();
    json_object_set_new(call, "custom",
                        jparse("{\"call_analysis\":{\"custom_analysis_data\":"
                               "{\"zip\":\"60202\"}},\"form\":{\"pc\":"
                               "\"60203\"}}"));
    fx_init(&f, call, NULL);
    customer_done(&f, false);
    json_object_set_new(f.scratch, "phase", json_string("address"));
    b = build(&f, "job", "POST", "/customers/" CUS "/addresses");
    cr_expect_str_eq(json_string_value(json_object_get(b, "zip")), "60202");
    json_decref(b);
    json_object_set_new(f.config, "zip_source",
                        json_string("call.custom.form.pc"));
    b = build(&f, "job", "POST", "/customers/" CUS "/addresses");
    cr_expect_str_eq(json_string_value(json_object_get(b, "zip")), "60203");
    json_decref(b);
    fx_release(&f);

    /* no zip: no address to create, a clear permanent error */
    call = base_call();
    json_object_del(call, "custom");
    fx_init(&f, call, NULL);
    customer_done(&f, false);
    cr_expect_null(build(&f, "job", "GET", "/customers/" CUS));
    parse(&f, "job", 200, "{\"id\":\"" CUS "\",\"addresses\":[]}", &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "no_service_address");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, an_estimate_instead_of_a_job)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"appointment_kind\":\"estimate\"}");
    customer_done(&f, true);
    json_decref(build(&f, "job", "GET",
                      "/estimates?customer_id=" CUS "&scheduled_start_min="
                      "2026-02-20T20%3A00%3A00Z&scheduled_start_max="
                      "2026-02-20T20%3A00%3A00Z&page_size=100"));
    struct prov_result res;
    parse(&f, "job", 200, "{\"estimates\":[]}", &res);
    prov_result_release(&res);
    json_t *b = build(&f, "job", "POST", "/estimates");
    cr_expect(strstr(json_string_value(json_object_get(b, "note")),
                     MARKER "/job"));
    json_object_del(b, "note");
    expect_json(b, "{\"customer_id\":\"" CUS "\",\"address_id\":\"" ADR "\","
                   "\"schedule\":{\"start_time\":\"2026-02-20T14:00:00-06:00\","
                   "\"end_time\":\"2026-02-20T15:30:00-06:00\"},"
                   "\"options\":[{\"name\":\"Roof inspection\"}]}");
    json_decref(b);
    parse(&f, "job", 200,
          "{\"id\":\"est_1\",\"options\":[{\"id\":\"eo_1\",\"notes\":[]}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"estimate_id\":\"est_1\",\"option_id\":"
                           "\"eo_1\"}");
    prov_result_release(&res);
    fx_release(&f);

    fx_init(&f, base_call(), "{\"appointment_kind\":\"none\"}");
    cr_expect_not(step("job")->applies(&f.ctx));
    fx_release(&f);
    json_t *call = base_call();
    json_object_del(call, "appointment");
    fx_init(&f, call, NULL);
    cr_expect_not(step("job")->applies(&f.ctx));
    fx_release(&f);
}

Test(hcp, note_on_the_job_and_its_reconciliation)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    customer_done(&f, true);
    json_object_set_new(f.done, "job", json_pack("{s:s}", "job_id", JOB));
    json_t *b = build(&f, "note", "POST", "/jobs/" JOB "/notes");
    const char *c = json_string_value(json_object_get(b, "content"));
    cr_expect(strstr(c, "Summary: Roof inspection booked\n"), "%s", c);
    cr_expect(strstr(c, "Duration: 4m 1s\n"), "%s", c);
    cr_expect(strstr(c, "Sync reference: " MARKER "/note"), "%s", c);
    json_decref(b);
    struct prov_result res;
    parse(&f, "note", 201, "{\"id\":\"nte_1\",\"content\":\"x\"}", &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"note_id\":\"nte_1\"}");
    prov_result_release(&res);

    /* reconcile: the job's own "/job" marker is not the call note */
    json_object_clear(f.scratch);
    f.ctx.reconcile = true;
    cr_expect_null(build(&f, "note", "GET", "/jobs/" JOB));
    parse(&f, "note", 200,
          "{\"id\":\"" JOB "\",\"notes\":[{\"id\":\"nte_0\",\"content\":"
          "\"Sync reference: " MARKER "/job\"}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_decref(build(&f, "note", "POST", "/jobs/" JOB "/notes"));
    json_object_clear(f.scratch);
    cr_expect_null(build(&f, "note", "GET", "/jobs/" JOB));
    parse(&f, "note", 200,
          "{\"id\":\"" JOB "\",\"notes\":[{\"id\":\"nte_1\",\"content\":"
          "\"Sync reference: " MARKER "/note\"}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"note_id\":\"nte_1\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, note_on_an_estimate_option)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    customer_done(&f, true);
    json_object_set_new(f.done, "job",
                        json_pack("{s:s,s:s}", "estimate_id", "est_1",
                                  "option_id", "eo_1"));
    json_decref(build(&f, "note", "POST",
                      "/estimates/est_1/options/eo_1/notes"));
    f.ctx.reconcile = true;
    json_object_clear(f.scratch);
    cr_expect_null(build(&f, "note", "GET", "/estimates/est_1"));
    struct prov_result res;
    parse(&f, "note", 200,
          "{\"id\":\"est_1\",\"options\":[{\"id\":\"eo_1\",\"notes\":[{"
          "\"id\":\"nte_9\",\"content\":\"Sync reference: " MARKER
          "/note\"}]}]}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"note_id\":\"nte_9\"}");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, without_a_job_the_note_is_appended_to_the_customer_and_checked)
{
    struct fx f;
    json_t *call = base_call();
    json_object_del(call, "appointment");
    fx_init(&f, call, NULL);
    customer_done(&f, true);
    cr_expect_null(build(&f, "note", "GET", "/customers/" CUS));
    struct prov_result res;
    parse(&f, "note", 200, "{\"id\":\"" CUS "\",\"notes\":\"Gate code 4411\"}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_t *b = build(&f, "note", "PUT", "/customers/" CUS);
    const char *n = json_string_value(json_object_get(b, "notes"));
    cr_expect(strncmp(n, "Gate code 4411\n\nCall outcome: ", 30) == 0, "%s", n);
    cr_expect(strstr(n, MARKER "/note"));
    cr_expect_eq(json_object_size(b), 1, "only the notes field is sent");
    json_decref(b);
    parse(&f, "note", 200, "{\"id\":\"" CUS "\",\"notes\":\"whatever\"}", &res);
    cr_assert_eq(res.outcome, PROV_NEXT, "then read again");
    prov_result_release(&res);
    cr_expect_null(build(&f, "note", "GET", "/customers/" CUS));
    /* someone else's append replaced ours: append again */
    parse(&f, "note", 200,
          "{\"id\":\"" CUS "\",\"notes\":\"Gate code 4411\\n\\nother call\"}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    b = build(&f, "note", "PUT", "/customers/" CUS);
    n = json_string_value(json_object_get(b, "notes"));
    cr_expect(strstr(n, "other call\n\nCall outcome:"), "%s", n);
    json_decref(b);
    parse(&f, "note", 200, "{\"id\":\"" CUS "\"}", &res);
    prov_result_release(&res);
    cr_expect_null(build(&f, "note", "GET", "/customers/" CUS));
    parse(&f, "note", 200,
          "{\"id\":\"" CUS "\",\"notes\":\"... Sync reference: " MARKER
          "/note\"}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"customer_id\":\"" CUS "\",\"customer_notes\":"
                           "true}");
    prov_result_release(&res);

    /* lost three times in one attempt: retry later */
    json_object_clear(f.scratch);
    json_object_set_new(f.scratch, "appends", json_integer(3));
    json_object_set_new(f.scratch, "phase", json_string("verify"));
    cr_expect_null(build(&f, "note", "GET", "/customers/" CUS));
    parse(&f, "note", 200, "{\"id\":\"" CUS "\",\"notes\":\"x\"}", &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "notes_contended");
    prov_result_release(&res);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */

static void classify(int status, const char *body, enum prov_outcome want,
                     const char *message)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    customer_done(&f, true);
    json_object_set_new(f.done, "job", json_pack("{s:s}", "job_id", JOB));
    json_decref(build(&f, "note", "POST", "/jobs/" JOB "/notes"));
    struct prov_result res;
    parse(&f, "note", status, body, &res);
    cr_expect_eq(res.outcome, want, "%d %s: outcome %d", status, body,
                 res.outcome);
    if (message)
        cr_expect_str_eq(res.message, message);
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, errors_in_the_documents_shapes)
{
    classify(401, "{\"message\":\"Unauthorized\"}", PROV_AUTH,
             "Unauthorized");
    classify(404, "{\"error\":{\"message\":\"job not found\"}}",
             PROV_PERMANENT, "job not found");
    classify(422, "{\"errors\":{\"content\":[\"is missing\"],\"name\":["
                  "\"is missing\",\"is too short\"]}}",
             PROV_PERMANENT,
             "content is missing; name is missing; name is too short");
    classify(400, "{\"message\":\"All errors formatted in a sentence\","
                  "\"attr1\":\"bad\"}",
             PROV_PERMANENT, "All errors formatted in a sentence");
    classify(503, "", PROV_RETRY, NULL);
    classify(0, NULL, PROV_RETRY, NULL);
    classify(201, "not json", PROV_RETRY, NULL);

    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "customer", "GET",
                      "/customers?q=3125550187&page_size=100"));
    struct prov_result res;
    parse(&f, "customer", 429, "{\"message\":\"Too Many Requests\"}", &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 60000, "a minute without Retry-After");
    prov_result_release(&res);
    struct prov_header h = {(char *)"retry-after", (char *)"12"};
    struct prov_response r = {429, 1, &h, "", 0};
    memset(&res, 0, sizeof(res));
    step("customer")->parse(&f.ctx, &r, &res);
    cr_expect_eq(res.retry_after_ms, 12000);
    prov_result_release(&res);
    fx_release(&f);
}

Test(hcp, probe_reads_the_company)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_assert_not_null(prov_housecall_pro.probe);
    struct cs_err err = {0};
    cr_assert_eq(prov_housecall_pro.probe->build(&f.ctx, &f.rq, &err), 0);
    cr_expect_str_eq(f.rq.method, "GET");
    cr_expect_str_eq(f.rq.url, BASE "/company");
    cr_expect_str_eq(hdr(&f.rq, "X-Company-Id"), "cmp_77");
    const char *body = "{\"id\":\"cmp_77\",\"name\":\"Ridge Plumbing\","
                       "\"time_zone\":\"America/Chicago\"}";
    struct prov_response r = {200, 0, NULL, body, strlen(body)};
    struct prov_result res = {0};
    prov_housecall_pro.probe->parse(&f.ctx, &r, &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"company_id\":\"cmp_77\",\"name\":"
                           "\"Ridge Plumbing\",\"time_zone\":"
                           "\"America/Chicago\"}");
    prov_result_release(&res);
    struct prov_response u = {401, 0, NULL, "{\"message\":\"Unauthorized\"}",
                              26};
    prov_housecall_pro.probe->parse(&f.ctx, &u, &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    fx_release(&f);
}
