/*
 * test_small_providers.c - Zapier, custom REST and Retell: the exact
 * requests each builds (URL, headers, body), the mapping and config errors
 * they report, and how their answers are classified.
 */
#include "prov.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>


#define JOB_ID "0123456789abcdef0123456789abcdef"
/* 2026-02-15T14:35:01Z */
#define NOW_MS 1771166101000LL

static json_t *J(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(v, "bad test json at %d: %s", je.position, je.text);
    return v;
}

static void expect_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS |
                                        JSON_ENCODE_ANY)
                  : strdup("(null)");
    char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    cr_expect(got && json_equal((json_t *)got, w), "got %s, want %s", g, ws);
    free(g);
    free(ws);
    json_decref(w);
}

static const char *header(const struct prov_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static size_t header_count(const struct prov_request *rq, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            n++;
    return n;
}

static json_t *body_of(const struct prov_request *rq)
{
    cr_assert_not_null(rq->body);
    cr_assert_eq(rq->body_len, strlen(rq->body));
    return J(rq->body);
}

/* A test context over owned documents. */
struct tctx {
    json_t *job, *config, *done;
    struct prov_creds creds;
    struct prov_ctx ctx;
    char key[64];
};

static void tctx_init(struct tctx *t, const char *job, const char *config,
                      const char *step)
{
    memset(t, 0, sizeof(*t));
    t->job = J(job);
    t->config = J(config ? config : "{}");
    t->done = json_object();
    snprintf(t->key, sizeof(t->key), "%s:%s", JOB_ID, step);
    t->ctx.job = t->job;
    t->ctx.call = json_object_get(t->job, "call");
    t->ctx.config = t->config;
    t->ctx.creds = &t->creds;
    t->ctx.done = t->done;
    t->ctx.scratch = json_object();
    t->ctx.idempotency_key = t->key;
    t->ctx.now_ms = NOW_MS;
}

static void tctx_release(struct tctx *t)
{
    json_decref(t->job);
    json_decref(t->config);
    json_decref(t->done);
    json_decref(t->ctx.scratch);
}

static const struct prov_step *step_named(const struct prov_ops *ops,
                                          const char *name)
{
    for (size_t i = 0; i < ops->nsteps; i++)
        if (strcmp(ops->steps[i].name, name) == 0)
            return &ops->steps[i];
    cr_assert_fail("no step '%s' in %s", name, ops->name);
    return NULL;
}

/* Run a step's parse on a response. */
static void parse_with(const struct prov_step *st, struct tctx *t, int status,
                       const char *body, const char *hname, const char *hval,
                       struct prov_result *res)
{
    struct prov_header h = {(char *)hname, (char *)hval};
    struct prov_response rsp = {
        .status = status,
        .nheaders = hname ? 1 : 0,
        .headers = hname ? &h : NULL,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    memset(res, 0, sizeof(*res));
    st->parse(&t->ctx, &rsp, res);
}

/* ---- Zapier -------------------------------------------------------------- */

/* The call behind seed 002's example payload. */
static const char *SEED_JOB =
    "{\"job_id\": \"" JOB_ID "\", \"provider\": \"zapier\","
    " \"connection_id\": \"conn-1\", \"kind\": \"call_sync\","
    " \"agent_id\": \"agent_xyz789\", \"org_id\": \"org-1\", \"attempt\": 1,"
    " \"call\": {\"call_id\": \"call_abc123\", \"source\": \"retell\","
    "  \"agent_id\": \"agent_xyz789\", \"org_id\": \"org-1\","
    "  \"customer\": {\"name\": \"Jane Smith\", \"first_name\": \"Jane\","
    "   \"last_name\": \"Smith\", \"phone\": \"+14079780655\","
    "   \"email\": \"jane@example.com\"},"
    "  \"direction\": \"inbound\", \"outcome\": \"appointment_booked\","
    "  \"summary\": \"Customer scheduled roof inspection\","
    "  \"sentiment\": \"positive\", \"transcript\": \"Full transcript...\","
    "  \"recording_url\": \"https://...\","
    "  \"started_at\": \"2026-02-15T14:30:00Z\","
    "  \"ended_at\": \"2026-02-15T14:35:00Z\", \"duration_s\": 300,"
    "  \"appointment\": {\"date\": \"2026-02-20\", \"time\": \"14:00\","
    "   \"timezone\": \"America/New_York\", \"duration_min\": 60},"
    "  \"analysis\": null, \"custom\": {}}}";

/* Seed 002, "Webhook Payload", verbatim. */
static const char *SEED_PAYLOAD =
    "{\"action\":\"call_completed\",\"call\":{\"call_id\":\"call_abc123\","
    "\"agent_id\":\"agent_xyz789\",\"customer_name\":\"Jane Smith\","
    "\"customer_phone\":\"+14079780655\","
    "\"customer_email\":\"jane@example.com\","
    "\"call_outcome\":\"appointment_booked\","
    "\"call_summary\":\"Customer scheduled roof inspection\","
    "\"call_sentiment\":\"positive\",\"transcript\":\"Full transcript...\","
    "\"recording_url\":\"https://...\","
    "\"started_at\":\"2026-02-15T14:30:00Z\","
    "\"ended_at\":\"2026-02-15T14:35:00Z\",\"duration_seconds\":300,"
    "\"appointment_booked\":{\"date\":\"2026-02-20\",\"time\":\"14:00\","
    "\"timezone\":\"America/New_York\",\"durationMinutes\":60}},"
    "\"timestamp\":\"2026-02-15T14:35:01Z\"}";

#define HOOK_URL "https://hooks.zapier.com/hooks/catch/123456/abcdef/"

Test(zapier, ops_table)
{
    cr_expect_str_eq(prov_zapier.name, "zapier");
    cr_expect_eq(prov_zapier.nsteps, 1);
    cr_expect_str_eq(prov_zapier.steps[0].name, "hook");
    cr_expect_eq(prov_zapier.steps[0].reconcile, PROV_RECONCILE_NONE);
    cr_expect_eq(prov_zapier.rate.requests, 10);
    cr_expect_eq(prov_zapier.rate.per_ms, 1000);
    cr_expect_str_eq(prov_zapier.rate_scope, "connection");
}

Test(zapier, seed_002_payload_exactly)
{
    struct tctx t;
    tctx_init(&t, SEED_JOB, NULL, "hook");
    t.creds.webhook_url = HOOK_URL;
    struct prov_request rq = {0};
    struct cs_err err = {0};
    const struct prov_step *st = step_named(&prov_zapier, "hook");
    cr_assert_eq(st->build(&t.ctx, &rq, &err), 0, "%s: %s", err.field,
                 err.msg);
    cr_expect_str_eq(rq.method, "POST");
    cr_expect_str_eq(rq.url, HOOK_URL);
    cr_expect_str_eq(header(&rq, "Content-Type"), "application/json");
    cr_expect_str_eq(header(&rq, "Idempotency-Key"), JOB_ID ":hook");
    cr_expect_str_eq(header(&rq, "X-Callsync-Job-Id"), JOB_ID);
    cr_expect_eq(rq.nheaders, 3);

    /* Key by key against the seed, then byte for byte (same key order). */
    json_t *got = body_of(&rq);
    json_t *want = J(SEED_PAYLOAD);
    cr_expect_eq(json_object_size(got), json_object_size(want));
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) {
        if (strcmp(k, "call") == 0)
            continue;
        cr_expect(json_equal(json_object_get(got, k), v), "key %s", k);
    }
    json_t *gc = json_object_get(got, "call");
    json_t *wc = json_object_get(want, "call");
    cr_expect_eq(json_object_size(gc), json_object_size(wc));
    json_object_foreach(wc, k, v)
        cr_expect(json_equal(json_object_get(gc, k), v), "call.%s", k);
    cr_expect_str_eq(rq.body, SEED_PAYLOAD);
    json_decref(want);
    json_decref(got);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(zapier, appointment_omitted_and_missing_fields_null)
{
    struct tctx t;
    tctx_init(&t,
              "{\"job_id\": \"" JOB_ID "\", \"agent_id\": \"ag-job\","
              " \"call\": {\"call_id\": \"c9\","
              "  \"customer\": {\"first_name\": \"Ann\", \"last_name\": \"Lee\","
              "   \"phone\": \"+14155550100\"},"
              "  \"outcome\": \"message_taken\", \"duration_s\": 42,"
              "  \"appointment\": null}}",
              NULL, "hook");
    t.creds.webhook_url = HOOK_URL;
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_zapier.steps[0].build(&t.ctx, &rq, &err), 0);
    json_t *got = body_of(&rq);
    expect_json(json_object_get(got, "call"),
                "{\"call_id\": \"c9\", \"agent_id\": \"ag-job\","
                " \"customer_name\": \"Ann Lee\","
                " \"customer_phone\": \"+14155550100\","
                " \"customer_email\": null, \"call_outcome\": \"message_taken\","
                " \"call_summary\": null, \"call_sentiment\": null,"
                " \"transcript\": null, \"recording_url\": null,"
                " \"started_at\": null, \"ended_at\": null,"
                " \"duration_seconds\": 42}");
    cr_expect_null(json_object_get(json_object_get(got, "call"),
                                   "appointment_booked"));
    json_decref(got);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(zapier, appointment_title_kept)
{
    struct tctx t;
    tctx_init(&t,
              "{\"job_id\": \"" JOB_ID "\", \"call\": {\"call_id\": \"c9\","
              " \"appointment\": {\"title\": \"Roof inspection\","
              "  \"date\": \"2026-02-20\", \"time\": \"09:30\","
              "  \"timezone\": \"UTC\", \"duration_min\": 30,"
              "  \"service_type\": \"roofing\"}}}",
              NULL, "hook");
    t.creds.webhook_url = HOOK_URL;
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_zapier.steps[0].build(&t.ctx, &rq, &err), 0);
    json_t *got = body_of(&rq);
    expect_json(json_object_get(json_object_get(got, "call"),
                                "appointment_booked"),
                "{\"title\": \"Roof inspection\", \"date\": \"2026-02-20\","
                " \"time\": \"09:30\", \"timezone\": \"UTC\","
                " \"durationMinutes\": 30}");
    json_decref(got);
    prov_request_release(&rq);
    tctx_release(&t);
}

static void zapier_url(const char *url, const char *base, int want_rc,
                       const char *want_url)
{
    struct tctx t;
    tctx_init(&t, SEED_JOB, NULL, "hook");
    t.creds.webhook_url = url;
    t.ctx.base_url = base;
    struct prov_request rq = {0};
    struct cs_err err = {0};
    int rc = prov_zapier.steps[0].build(&t.ctx, &rq, &err);
    cr_expect_eq(rc, want_rc, "url %s: rc %d (%s)", url ? url : "(null)", rc,
                 err.msg);
    if (want_rc == 0)
        cr_expect_str_eq(rq.url, want_url);
    else
        cr_expect_str_eq(err.field, "webhook_url");
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(zapier, url_rules)
{
    zapier_url("http://127.0.0.1:8089/hooks/catch/1/a/", NULL, 0,
               "http://127.0.0.1:8089/hooks/catch/1/a/");
    zapier_url("http://localhost/h", NULL, 0, "http://localhost/h");
    zapier_url("http://[::1]:9/h", NULL, 0, "http://[::1]:9/h");
    zapier_url("https://relay.example.org/h?x=1", NULL, 0,
               "https://relay.example.org/h?x=1");
    zapier_url(HOOK_URL, "http://127.0.0.1:8089/", 0,
               "http://127.0.0.1:8089/hooks/catch/123456/abcdef/");
    zapier_url("http://hooks.zapier.com/hooks/catch/1/a/", NULL, CS_EINVAL,
               NULL);
    zapier_url("http://127.0.0.2/h", NULL, CS_EINVAL, NULL);
    zapier_url("http://localhost.evil.com/h", NULL, CS_EINVAL, NULL);
    zapier_url("https://hooks.zapier.com@evil.com/h", NULL, CS_EINVAL, NULL);
    zapier_url("ftp://hooks.zapier.com/h", NULL, CS_EINVAL, NULL);
    zapier_url("https:///nohost", NULL, CS_EINVAL, NULL);
    zapier_url("https://hooks.zapier.com/a b", NULL, CS_EINVAL, NULL);
    zapier_url("", NULL, CS_EINVAL, NULL);
    zapier_url(NULL, NULL, CS_EINVAL, NULL);
}

Test(zapier, responses)
{
    struct tctx t;
    tctx_init(&t, SEED_JOB, NULL, "hook");
    const struct prov_step *st = &prov_zapier.steps[0];
    struct prov_result res;

    parse_with(st, &t, 200,
               "{\"attempt\":\"a1\",\"id\":\"5e0f-1\",\"request_id\":\"r1\","
               "\"status\":\"success\"}", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.http_status, 200);
    expect_json(res.value, "{\"status\": \"success\", \"id\": \"5e0f-1\"}");
    prov_result_release(&res);

    parse_with(st, &t, 200, "", NULL, NULL, &res); /* silent mode */
    cr_expect_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{}");
    prov_result_release(&res);

    parse_with(st, &t, 410, "", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "hook_gone");
    cr_expect_null(res.value);
    prov_result_release(&res);

    parse_with(st, &t, 429, "", "retry-after", "30", &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 30000);
    prov_result_release(&res);

    parse_with(st, &t, 503, "", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "server_error");
    prov_result_release(&res);

    parse_with(st, &t, 0, NULL, NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "network_error");
    prov_result_release(&res);
    tctx_release(&t);
}

/* ---- Custom REST ------------------------------------------------------- */

static const char *REST_JOB =
    "{\"job_id\": \"" JOB_ID "\", \"kind\": \"call_sync\","
    " \"agent_id\": \"ag-1\", \"org_id\": \"org-1\","
    " \"call\": {\"call_id\": \"call_abc123\", \"source\": \"retell\","
    "  \"customer\": {\"name\": \"Jane Smith\", \"phone\": \"+14079780655\","
    "   \"email\": \"jane@example.com\", \"city\": \"Orlando\","
    "   \"state\": \"FL\"},"
    "  \"outcome\": \"appointment_booked\", \"transcript\": \"Hi there\","
    "  \"recording_url\": \"https://rec.example/1.mp3\","
    "  \"duration_s\": 300,"
    "  \"analysis\": {\"intent\": \"quote_request\","
    "   \"project_type\": \"kitchen\", \"timeline\": \"immediate\","
    "   \"budget\": \"high\", \"urgency\": \"low\", \"lead_score\": 87}}}";

/* Seed 003's custom CRM config, with an opportunity template added. */
static const char *SEED_003_CONFIG =
    "{\"type\": \"custom\", \"api_base_url\": \"https://api.yourcrm.com/v1\","
    " \"authentication\": {\"type\": \"bearer\"},"
    " \"endpoints\": {"
    "  \"create_contact\": {\"method\": \"POST\", \"path\": \"/contacts\","
    "   \"headers\": {\"Content-Type\": \"application/json\","
    "    \"Authorization\": \"Bearer {{auth.token}}\"}},"
    "  \"create_opportunity\": {\"method\": \"POST\","
    "   \"path\": \"/opportunities\","
    "   \"headers\": {\"Content-Type\": \"application/json\","
    "    \"Authorization\": \"Bearer {{auth.token}}\"}}},"
    " \"payload_templates\": {"
    "  \"contact\": {\"first_name\": \"{{customer_name_first}}\","
    "   \"last_name\": \"{{customer_name_last}}\","
    "   \"phone\": \"{{customer_phone}}\", \"email\": \"{{customer_email}}\","
    "   \"address\": {\"city\": \"{{customer_city}}\","
    "    \"state\": \"{{customer_state}}\"},"
    "   \"custom_fields\": {\"lead_source\": \"phone_call\","
    "    \"call_recording\": \"{{recording_url}}\","
    "    \"ai_score\": \"{{ai_analysis.lead_score}}\"}},"
    "  \"opportunity\": {\"contact_id\": \"{{steps.contact.id}}\","
    "   \"name\": \"{{customer_name}} - {{ai_analysis.project_type}}\"}},"
    " \"field_mappings\": {\"priority\": {\"type\": \"conditional\","
    "  \"conditions\": ["
    "   {\"if\": \"ai_analysis.lead_score > 80\", \"then\": \"High\"},"
    "   {\"if\": \"ai_analysis.urgency == 'high'\", \"then\": \"High\"},"
    "   {\"default\": \"Normal\"}]}}}";

Test(custom_rest, ops_table)
{
    cr_expect_str_eq(prov_custom_rest.name, "custom_rest");
    cr_expect_eq(prov_custom_rest.nsteps, 2);
    cr_expect_str_eq(prov_custom_rest.steps[0].name, "contact");
    cr_expect_str_eq(prov_custom_rest.steps[1].name, "opportunity");
    cr_expect_eq(prov_custom_rest.steps[0].reconcile, PROV_RECONCILE_KEY);
    cr_expect_eq(prov_custom_rest.steps[1].reconcile, PROV_RECONCILE_KEY);
    cr_expect_eq(prov_custom_rest.rate.requests, 10);
    cr_expect_eq(prov_custom_rest.rate.per_ms, 1000);
    cr_expect_str_eq(prov_custom_rest.rate_scope, "connection");
}

Test(custom_rest, seed_003_bearer_contact)
{
    struct tctx t;
    tctx_init(&t, REST_JOB, SEED_003_CONFIG, "contact");
    t.creds.api_key = "tok-123";
    const struct prov_step *st = step_named(&prov_custom_rest, "contact");
    cr_assert(st->applies(&t.ctx));
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(st->build(&t.ctx, &rq, &err), 0, "%s: %s", err.field,
                 err.msg);
    cr_expect_str_eq(rq.method, "POST");
    cr_expect_str_eq(rq.url, "https://api.yourcrm.com/v1/contacts");
    cr_expect_str_eq(header(&rq, "Authorization"), "Bearer tok-123");
    cr_expect_eq(header_count(&rq, "Authorization"), 1);
    cr_expect_str_eq(header(&rq, "Content-Type"), "application/json");
    cr_expect_eq(header_count(&rq, "Content-Type"), 1);
    cr_expect_str_eq(header(&rq, "Idempotency-Key"), JOB_ID ":contact");
    cr_expect_str_eq(header(&rq, "X-Callsync-Job-Id"), JOB_ID);
    cr_expect_eq(rq.nheaders, 4);
    json_t *body = body_of(&rq);
    expect_json(body,
                "{\"first_name\": \"Jane\", \"last_name\": \"Smith\","
                " \"phone\": \"+14079780655\", \"email\": \"jane@example.com\","
                " \"address\": {\"city\": \"Orlando\", \"state\": \"FL\"},"
                " \"custom_fields\": {\"lead_source\": \"phone_call\","
                "  \"call_recording\": \"https://rec.example/1.mp3\","
                "  \"ai_score\": 87},"
                " \"priority\": \"High\"}");
    cr_expect_null(strstr(rq.body, "tok-123"));
    json_decref(body);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(custom_rest, opportunity_reads_the_contact_checkpoint)
{
    struct tctx t;
    tctx_init(&t, REST_JOB, SEED_003_CONFIG, "opportunity");
    json_object_set_new(t.done, "contact",
                        J("{\"id\": \"ct_77\", \"status\": 201}"));
    t.creds.access_token = "oauth-tok";
    t.ctx.base_url = "http://127.0.0.1:8089/";
    const struct prov_step *st = step_named(&prov_custom_rest, "opportunity");
    cr_assert(st->applies(&t.ctx));
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(st->build(&t.ctx, &rq, &err), 0, "%s: %s", err.field,
                 err.msg);
    cr_expect_str_eq(rq.url, "http://127.0.0.1:8089/opportunities");
    cr_expect_str_eq(header(&rq, "Authorization"), "Bearer oauth-tok");
    cr_expect_str_eq(header(&rq, "Idempotency-Key"), JOB_ID ":opportunity");
    json_t *body = body_of(&rq);
    expect_json(body, "{\"contact_id\": \"ct_77\","
                      " \"name\": \"Jane Smith - kitchen\","
                      " \"priority\": \"High\"}");
    json_decref(body);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(custom_rest, steps_apply_only_when_configured)
{
    struct tctx t;
    tctx_init(&t, REST_JOB,
              "{\"api_base_url\": \"https://crm.example\","
              " \"endpoints\": {\"create_contact\": {\"path\": \"c\"}}}",
              "contact");
    cr_expect(step_named(&prov_custom_rest, "contact")->applies(&t.ctx));
    cr_expect_not(
        step_named(&prov_custom_rest, "opportunity")->applies(&t.ctx));
    /* No authentication, no template, no mappings: an empty body, the
     * default method, a path without its slash. */
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_custom_rest.steps[0].build(&t.ctx, &rq, &err), 0);
    cr_expect_str_eq(rq.method, "POST");
    cr_expect_str_eq(rq.url, "https://crm.example/c");
    cr_expect_str_eq(rq.body, "{}");
    cr_expect_null(header(&rq, "Authorization"));
    cr_expect_eq(rq.nheaders, 3);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(custom_rest, basic_auth)
{
    struct tctx t;
    tctx_init(&t, REST_JOB,
              "{\"api_base_url\": \"https://crm.example/api/\","
              " \"authentication\": {\"type\": \"basic\"},"
              " \"endpoints\": {\"create_contact\": {\"method\": \"put\","
              "  \"path\": \"/people\"}},"
              " \"field_mappings\": [{\"target\": \"phone\","
              "  \"source\": \"customer_phone\"},"
              "  {\"target\": \"name\", \"source\": \"call.customer.name\"}]}",
              "contact");
    t.creds.api_key = "user";
    t.creds.api_secret = "pass";
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_custom_rest.steps[0].build(&t.ctx, &rq, &err), 0,
                 "%s: %s", err.field, err.msg);
    cr_expect_str_eq(rq.method, "PUT");
    cr_expect_str_eq(rq.url, "https://crm.example/api/people");
    cr_expect_str_eq(header(&rq, "Authorization"), "Basic dXNlcjpwYXNz");
    cr_expect_str_eq(rq.body,
                     "{\"phone\":\"+14079780655\",\"name\":\"Jane Smith\"}");
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(custom_rest, api_key_headers)
{
    const char *configs[] = {
        "{\"api_base_url\": \"https://crm.example\","
        " \"authentication\": {\"type\": \"api_key\"},"
        " \"endpoints\": {\"create_contact\": {\"path\": \"/c\","
        "  \"headers\": {\"X-Tenant\": \"acme-{{job.org_id}}\"}}}}",
        "{\"api_base_url\": \"https://crm.example\","
        " \"authentication\": {\"type\": \"api_key\", \"header\": \"X-Token\"},"
        " \"endpoints\": {\"create_contact\": {\"path\": \"/c\","
        "  \"headers\": {\"X-Tenant\": \"acme-{{job.org_id}}\"}}}}",
    };
    const char *names[] = {"X-API-Key", "X-Token"};
    for (size_t i = 0; i < 2; i++) {
        struct tctx t;
        tctx_init(&t, REST_JOB, configs[i], "contact");
        t.creds.api_key = "k-9";
        struct prov_request rq = {0};
        struct cs_err err = {0};
        cr_assert_eq(prov_custom_rest.steps[0].build(&t.ctx, &rq, &err), 0,
                     "%s: %s", err.field, err.msg);
        cr_expect_str_eq(header(&rq, names[i]), "k-9");
        cr_expect_null(header(&rq, "Authorization"));
        cr_expect_str_eq(header(&rq, "X-Tenant"), "acme-org-1");
        cr_expect_str_eq(header(&rq, "Idempotency-Key"), JOB_ID ":contact");
        cr_expect_eq(rq.nheaders, 5);
        prov_request_release(&rq);
        tctx_release(&t);
    }
}

static void rest_error(const char *config, const char *api_key,
                       const char *field, const char *msg_part)
{
    struct tctx t;
    tctx_init(&t, REST_JOB, config, "contact");
    t.creds.api_key = api_key;
    struct prov_request rq = {0};
    struct cs_err err = {0};
    int rc = prov_custom_rest.steps[0].build(&t.ctx, &rq, &err);
    cr_expect_eq(rc, CS_EINVAL, "config %s: rc %d", config, rc);
    cr_expect_str_eq(err.field, field, "config %s: field '%s'", config,
                     err.field);
    cr_expect(strstr(err.msg, msg_part) != NULL, "msg '%s' lacks '%s'",
              err.msg, msg_part);
    if (api_key)
        cr_expect_null(strstr(err.msg, api_key));
    prov_request_release(&rq);
    tctx_release(&t);
}

#define EP "\"endpoints\": {\"create_contact\": {\"path\": \"/c\"}}"

Test(custom_rest, config_errors)
{
    rest_error("{" EP "}", "sk_secret_42", "api_base_url", "missing");
    rest_error("{\"api_base_url\": \"ftp://x\", " EP "}", "sk_secret_42", "api_base_url",
               "not an http(s) url");
    rest_error("{\"api_base_url\": \"https://x\","
               " \"authentication\": {\"type\": \"oauth1\"}, " EP "}",
               "sk_secret_42", "authentication.type", "unknown type 'oauth1'");
    rest_error("{\"api_base_url\": \"https://x\","
               " \"authentication\": {\"type\": \"bearer\"}, " EP "}",
               NULL, "api_key", "needs an api key");
    rest_error("{\"api_base_url\": \"https://x\","
               " \"authentication\": {\"type\": \"api_key\","
               "  \"header\": \"Bad Header\"}, " EP "}",
               "sk_secret_42", "authentication.header", "not a valid header name");
    rest_error("{\"api_base_url\": \"https://x\", \"endpoints\":"
               " {\"create_contact\": {\"method\": \"DELETE\"}}}",
               "sk_secret_42", "endpoints.create_contact.method",
               "'DELETE' is not POST, PUT or PATCH");
    rest_error("{\"api_base_url\": \"https://x\", " EP ","
               " \"payload_templates\": {\"contact\": {\"address\":"
               "  {\"city\": \"{{customer_city\"}}}}",
               "sk_secret_42", "payload_templates.contact.address.city",
               "unterminated '{{'");
    rest_error("{\"api_base_url\": \"https://x\", " EP ","
               " \"payload_templates\": {\"contact\": [1]}}",
               "sk_secret_42", "payload_templates.contact", "not an object");
    rest_error("{\"api_base_url\": \"https://x\", " EP ","
               " \"field_mappings\": [{\"target\": \"score\","
               "  \"source\": \"customer_city\", \"type\": \"number\"}]}",
               "sk_secret_42", "score", "'Orlando' is not a number");
    rest_error("{\"api_base_url\": \"https://x\", \"endpoints\":"
               " {\"create_contact\": {\"path\": \"/c\", \"headers\":"
               "  {\"X-A\": \"a\\r\\nX-Injected: 1\"}}}}",
               "sk_secret_42", "endpoints.create_contact.headers.X-A",
               "control characters");
    rest_error("{\"api_base_url\": \"https://x\", \"endpoints\":"
               " {\"create_contact\": {\"path\": \"/c\", \"headers\":"
               "  {\"X-A\": \"{{auth.token\"}}}}",
               "sk_secret_42", "endpoints.create_contact.headers.X-A",
               "unterminated");
}

Test(custom_rest, responses)
{
    struct tctx t;
    tctx_init(&t, REST_JOB, SEED_003_CONFIG, "contact");
    const struct prov_step *st = &prov_custom_rest.steps[0];
    struct prov_result res;

    parse_with(st, &t, 201, "{\"id\": \"ct_77\", \"name\": \"Jane\"}", NULL,
               NULL, &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"id\": \"ct_77\", \"status\": 201}");
    prov_result_release(&res);

    parse_with(st, &t, 200, "{\"id\": 991}", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"id\": 991, \"status\": 200}");
    prov_result_release(&res);

    parse_with(st, &t, 204, NULL, NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"status\": 204}");
    prov_result_release(&res);

    parse_with(st, &t, 409, "{\"message\": \"duplicate key\"}", NULL, NULL,
               &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.http_status, 409);
    expect_json(res.value, "{\"status\": 409}");
    prov_result_release(&res);

    parse_with(st, &t, 422, "{\"message\": \"email is invalid\"}", NULL, NULL,
               &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.message, "HTTP 422: email is invalid");
    cr_expect_str_eq(res.code, "rejected");
    prov_result_release(&res);

    parse_with(st, &t, 401, "", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.message, "HTTP 401");
    prov_result_release(&res);

    parse_with(st, &t, 429, "", "Retry-After", "7", &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 7000);
    prov_result_release(&res);

    parse_with(st, &t, 502, "<html>", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    prov_result_release(&res);
    tctx_release(&t);
}

/* ---- Retell -------------------------------------------------------------- */

static const char *OUTBOUND_JOB =
    "{\"job_id\": \"" JOB_ID "\", \"provider\": \"retell\","
    " \"kind\": \"outbound_call\", \"agent_id\": \"ag-1\","
    " \"org_id\": \"org-1\", \"retell_agent_id\": \"agent_ret_1\","
    " \"from_number\": \"+14155550100\","
    " \"request\": {\"phone\": \"+12125550199\","
    "  \"contact_name\": \"Priya Raman\","
    "  \"contact_data\": {\"ghl_contact_id\": \"ghl_55201\","
    "   \"email\": \"priya.raman@example.com\", \"tags\": [\"follow-up\"],"
    "   \"age\": 41, \"vip\": true, \"score\": 4.5, \"gone\": null,"
    "   \"address\": {\"city\": \"NYC\"}},"
    "  \"metadata\": {\"workflow\": \"no-answer-retry\", \"attempt\": 2},"
    "  \"extra\": {\"callback_url\": \"https://example.com/cb\"}}}";

Test(retell, ops_table)
{
    cr_expect_str_eq(prov_retell.name, "retell");
    cr_expect_eq(prov_retell.nsteps, 1);
    cr_expect_str_eq(prov_retell.steps[0].name, "call");
    cr_expect_eq(prov_retell.steps[0].reconcile, PROV_RECONCILE_NONE);
    cr_expect_eq(prov_retell.rate.requests, 20);
    cr_expect_eq(prov_retell.rate.per_ms, 1000);
    cr_expect_str_eq(prov_retell.rate_scope, "connection");
}

Test(retell, create_phone_call_request)
{
    struct tctx t;
    tctx_init(&t, OUTBOUND_JOB, NULL, "call");
    t.creds.api_key = "key_retell";
    const struct prov_step *st = &prov_retell.steps[0];
    cr_assert(st->applies(&t.ctx));
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(st->build(&t.ctx, &rq, &err), 0, "%s: %s", err.field,
                 err.msg);
    cr_expect_str_eq(rq.method, "POST");
    cr_expect_str_eq(rq.url, "https://api.retellai.com/v2/create-phone-call");
    cr_expect_str_eq(header(&rq, "Authorization"), "Bearer key_retell");
    cr_expect_str_eq(header(&rq, "Content-Type"), "application/json");
    cr_expect_eq(rq.nheaders, 2);
    cr_expect_eq(rq.timeout_ms, 120000);
    json_t *body = body_of(&rq);
    expect_json(body,
                "{\"from_number\": \"+14155550100\","
                " \"to_number\": \"+12125550199\","
                " \"override_agent_id\": \"agent_ret_1\","
                " \"metadata\": {\"workflow\": \"no-answer-retry\","
                "  \"attempt\": 2, \"callsync_job_id\": \"" JOB_ID "\","
                "  \"contact_name\": \"Priya Raman\"},"
                " \"retell_llm_dynamic_variables\": {"
                "  \"ghl_contact_id\": \"ghl_55201\","
                "  \"email\": \"priya.raman@example.com\","
                "  \"tags\": \"[\\\"follow-up\\\"]\", \"age\": \"41\","
                "  \"vip\": \"true\", \"score\": \"4.5\","
                "  \"address\": \"{\\\"city\\\":\\\"NYC\\\"}\","
                "  \"contact_name\": \"Priya Raman\"}}");
    json_decref(body);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(retell, minimal_request_and_base_override)
{
    struct tctx t;
    tctx_init(&t,
              "{\"job_id\": \"" JOB_ID "\", \"kind\": \"outbound_call\","
              " \"from_number\": \"+14155550100\","
              " \"request\": {\"phone\": \"+12125550199\","
              "  \"contact_data\": null, \"metadata\": null,"
              "  \"extra\": {\"name\": \"Sam\"}}}",
              NULL, "call");
    t.creds.api_key = "k";
    t.ctx.base_url = "http://127.0.0.1:8089/retell/";
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_retell.steps[0].build(&t.ctx, &rq, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(rq.url,
                     "http://127.0.0.1:8089/retell/v2/create-phone-call");
    cr_expect_str_eq(rq.body,
                     "{\"from_number\":\"+14155550100\","
                     "\"to_number\":\"+12125550199\","
                     "\"metadata\":{\"callsync_job_id\":\"" JOB_ID "\","
                     "\"contact_name\":\"Sam\"},"
                     "\"retell_llm_dynamic_variables\":"
                     "{\"contact_name\":\"Sam\"}}");
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(retell, applies_only_to_outbound_calls)
{
    struct tctx t;
    tctx_init(&t, REST_JOB, NULL, "call");
    cr_expect_not(prov_retell.steps[0].applies(&t.ctx));
    tctx_release(&t);
}

static void retell_error(const char *job, const char *key, const char *field)
{
    struct tctx t;
    tctx_init(&t, job, NULL, "call");
    t.creds.api_key = key;
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_expect_eq(prov_retell.steps[0].build(&t.ctx, &rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, field);
    prov_request_release(&rq);
    tctx_release(&t);
}

Test(retell, build_errors)
{
    retell_error(OUTBOUND_JOB, NULL, "api_key");
    retell_error("{\"job_id\": \"" JOB_ID "\", \"kind\": \"outbound_call\","
                 " \"from_number\": \"+14155550100\"}", "k", "request");
    retell_error("{\"job_id\": \"" JOB_ID "\", \"kind\": \"outbound_call\","
                 " \"from_number\": \"4155550100\","
                 " \"request\": {\"phone\": \"+12125550199\"}}",
                 "k", "from_number");
    retell_error("{\"job_id\": \"" JOB_ID "\", \"kind\": \"outbound_call\","
                 " \"from_number\": \"+14155550100\","
                 " \"request\": {\"phone\": \"212-555-0199\"}}",
                 "k", "request.phone");
    retell_error("{\"job_id\": \"" JOB_ID "\", \"kind\": \"outbound_call\","
                 " \"from_number\": \"+14155550100\", \"retell_agent_id\": 5,"
                 " \"request\": {\"phone\": \"+12125550199\"}}",
                 "k", "retell_agent_id");
    retell_error("{\"job_id\": \"" JOB_ID "\", \"kind\": \"outbound_call\","
                 " \"from_number\": \"+14155550100\","
                 " \"request\": {\"phone\": \"+12125550199\","
                 "  \"metadata\": [1]}}",
                 "k", "request.metadata");
}

Test(retell, responses)
{
    struct tctx t;
    tctx_init(&t, OUTBOUND_JOB, NULL, "call");
    const struct prov_step *st = &prov_retell.steps[0];
    struct prov_result res;

    parse_with(st, &t, 201,
               "{\"call_id\": \"call_8f2\", \"agent_id\": \"agent_ret_1\","
               " \"call_status\": \"registered\", \"call_type\":"
               " \"phone_call\", \"direction\": \"outbound\"}",
               NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.http_status, 201);
    expect_json(res.value,
                "{\"call_id\": \"call_8f2\", \"call_status\": \"registered\"}");
    prov_result_release(&res);

    parse_with(st, &t, 200, "{\"call_id\": \"call_9\"}", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    expect_json(res.value, "{\"call_id\": \"call_9\", \"call_status\": null}");
    prov_result_release(&res);

    parse_with(st, &t, 201, "{}", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "bad_response");
    cr_expect_null(res.value);
    prov_result_release(&res);

    parse_with(st, &t, 400,
               "{\"status\": \"error\", \"message\": \"Invalid to_number:"
               " +1999 is not a valid number\"}", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_eq(res.http_status, 400);
    cr_expect_str_eq(res.code, "invalid_number");
    cr_expect_str_eq(res.message,
                     "HTTP 400: Invalid to_number: +1999 is not a valid "
                     "number");
    prov_result_release(&res);

    parse_with(st, &t, 400, "{\"message\": \"override_agent_id not found\"}",
               NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "rejected");
    cr_expect_str_eq(res.message, "HTTP 400: override_agent_id not found");
    prov_result_release(&res);

    parse_with(st, &t, 401, "{\"message\": \"Invalid API key\"}", NULL, NULL,
               &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "unauthorized");
    prov_result_release(&res);

    parse_with(st, &t, 429, "{\"message\": \"Too many requests\"}",
               "retry-after", "2", &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 2000);
    prov_result_release(&res);

    parse_with(st, &t, 500, "", NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "server_error");
    cr_expect_str_eq(res.message, "HTTP 500");
    prov_result_release(&res);

    parse_with(st, &t, 0, NULL, NULL, NULL, &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "network_error");
    cr_expect_eq(res.retry_after_ms, -1);
    prov_result_release(&res);
    tctx_release(&t);
}
