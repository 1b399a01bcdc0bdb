/*
 * test_stripe.c - the Stripe provider, step by step: the exact requests
 * (method, path and query, the Bearer key, Stripe-Version, the
 * Idempotency-Key of every POST, the form body decoded and compared field
 * by field), answers built from the examples in Stripe's API reference
 * (customer cus_NffrFeUfNV2Hib, payment link plink_1MoC3ULkdIwHu7ixZjtGpVl2,
 * invoice in_1MtGmCLkdIwHu7ix6PgS6g8S), the customer look-up order,
 * reconciliation (by key, and by look-up once keys may have been pruned),
 * error classification, the rate by key mode, and form encoding.
 */
#include "prov.h"
#include "form.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://stripe.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define NOW_MS 1771166100000LL /* 2026-02-15T14:35:00Z */
#define CUS "cus_NffrFeUfNV2Hib"
#define INV "in_1MtGmCLkdIwHu7ix6PgS6g8S"
#define KEY "sk_test_4eC39HqLyjWDarjtT1zdp7dc"

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
    char idem[96];
    const struct prov_step *step;
    struct prov_request rq;
    struct prov_result res;
};

static json_t *jparse(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, 0, &e);
    cr_assert_not_null(v, "bad test json: %s (%s)", e.text, s);
    return v;
}

static json_t *base_call(void)
{
    return jparse(
        "{\"call_id\":\"call_abc123\",\"source\":\"retell\","
        "\"customer\":{\"name\":\"Jenny Rosen\",\"first_name\":\"Jenny\","
        "\"last_name\":\"Rosen\",\"phone\":\"+14155550123\","
        "\"email\":\"jennyrosen@example.com\",\"address\":\"1 Main St\","
        "\"city\":\"Oakland\",\"state\":\"CA\"},"
        "\"outcome\":\"appointment_booked\",\"summary\":\"Booked a repair\","
        "\"appointment\":{\"title\":\"Roof Repair\",\"date\":\"2026-02-20\","
        "\"time\":\"14:00\",\"timezone\":\"America/New_York\","
        "\"service_type\":\"roofing\"},"
        "\"analysis\":{\"project_type\":\"kitchen\",\"lead_score\":87}}");
}

/* first_enqueued_at: ago_ms before NOW_MS. */
static void fx_init_aged(struct fx *f, const char *config, int64_t ago_ms)
{
    memset(f, 0, sizeof(*f));
    char at[32];
    cs_rfc3339_ms(NOW_MS - ago_ms, at);
    f->job = json_pack("{s:s,s:s,s:s,s:s,s:o}", "job_id", JOB_ID, "provider",
                       "stripe", "connection_id",
                       "7d0e1c52-0000-4000-8000-000000000001",
                       "first_enqueued_at", at, "call", base_call());
    f->config = jparse(config ? config : "{}");
    f->done = json_object();
    f->scratch = json_object();
    f->creds.api_key = KEY;
    f->ctx.job = f->job;
    f->ctx.call = json_object_get(f->job, "call");
    f->ctx.config = f->config;
    f->ctx.creds = &f->creds;
    f->ctx.done = f->done;
    f->ctx.scratch = f->scratch;
    f->ctx.base_url = BASE;
    f->ctx.now_ms = NOW_MS;
}

static void fx_init(struct fx *f, const char *config)
{
    fx_init_aged(f, config, 60000);
}

static void fx_release(struct fx *f)
{
    prov_request_release(&f->rq);
    prov_result_release(&f->res);
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->done);
    json_decref(f->scratch);
}

static const struct prov_step *step_of(const char *name)
{
    for (size_t i = 0; i < prov_stripe.nsteps; i++)
        if (strcmp(prov_stripe.steps[i].name, name) == 0)
            return &prov_stripe.steps[i];
    cr_assert_fail("no step '%s'", name);
    return NULL;
}

/* Begin a step attempt. */
static void fx_step(struct fx *f, const char *name, bool reconcile)
{
    f->step = step_of(name);
    json_object_clear(f->scratch);
    f->ctx.reconcile = reconcile;
    snprintf(f->idem, sizeof(f->idem), "%s:%s", JOB_ID, name);
    f->ctx.idempotency_key = f->idem;
}

static void fx_done(struct fx *f, const char *step, const char *json)
{
    json_object_set_new(f->done, step, jparse(json));
}

/* Build the next request; asserts success. */
static void build(struct fx *f)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = f->step->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, 0, "build failed: %s: %s", err.field, err.msg);
}

/* Build, expecting a mapping/config error whose message starts with
 * prefix. */
static void build_fails(struct fx *f, const char *prefix)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = f->step->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, CS_EINVAL, "build should fail with %s", prefix);
    cr_expect(strncmp(err.msg, prefix, strlen(prefix)) == 0,
              "message '%s' should start with '%s'", err.msg, prefix);
}

/* Feed an answer to the step. */
static void answer_h(struct fx *f, int status, const char *body,
                     const struct prov_header *h, size_t nh)
{
    prov_result_release(&f->res);
    f->res.retry_after_ms = -1;
    struct prov_response rsp = {status, nh, h, body, body ? strlen(body) : 0};
    f->step->parse(&f->ctx, &rsp, &f->res);
}

static void answer(struct fx *f, int status, const char *body)
{
    answer_h(f, status, body, NULL, 0);
}

static const char *hdr(const struct prov_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static void expect_request(const struct fx *f, const char *method,
                           const char *path)
{
    char *url = xasprintf("%s%s", BASE, path);
    cr_expect_str_eq(f->rq.method, method);
    cr_expect_str_eq(f->rq.url, url);
    cr_expect_str_eq(hdr(&f->rq, "Authorization"), "Bearer " KEY);
    cr_expect_str_eq(hdr(&f->rq, "Stripe-Version"), "2025-09-30.clover");
    free(url);
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

static char *form_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[k++] = ' ';
        } else if (s[i] == '%' && i + 2 < n) {
            out[k++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

/* The form body as {name: value} (names keep their brackets). */
static json_t *form_of(const struct prov_request *rq)
{
    cr_assert_str_eq(hdr(rq, "Content-Type"),
                     "application/x-www-form-urlencoded");
    json_t *o = json_object();
    const char *p = rq->body;
    while (p && *p) {
        size_t l = strcspn(p, "&");
        const char *eq = memchr(p, '=', l);
        cr_assert(eq, "form pair without '=': %.*s", (int)l, p);
        char *k = form_decode(p, (size_t)(eq - p));
        char *v = form_decode(eq + 1, l - (size_t)(eq + 1 - p));
        cr_assert_null(json_object_get(o, k), "'%s' given twice", k);
        json_object_set_new(o, k, json_string(v));
        free(k);
        free(v);
        p += l;
        if (*p == '&')
            p++;
    }
    return o;
}

/* The form equals want (a JSON object of name: value strings). */
static void expect_form(const struct prov_request *rq, const char *want)
{
    json_t *got = form_of(rq);
    json_t *w = jparse(want);
    char *gs = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    char *ws = json_dumps(w, JSON_SORT_KEYS | JSON_COMPACT);
    cr_expect(json_equal(got, w), "form\n  got  %s\n  want %s", gs, ws);
    free(gs);
    free(ws);
    json_decref(got);
    json_decref(w);
}

static const char *done_str(const struct fx *f, const char *key)
{
    return json_string_value(json_object_get(f->res.value, key));
}

/* Documented answers (abbreviated, ids as in the API reference). */
#define CUSTOMER_JSON(email, phone, name, meta)                              \
    "{\"id\":\"" CUS "\",\"object\":\"customer\",\"address\":null,"          \
    "\"balance\":0,\"created\":1680893993,\"currency\":null,"                \
    "\"default_source\":null,\"delinquent\":false,\"description\":null,"     \
    "\"email\":" email ",\"invoice_prefix\":\"0759376C\","                   \
    "\"invoice_settings\":{\"custom_fields\":null,"                          \
    "\"default_payment_method\":null,\"footer\":null,"                       \
    "\"rendering_options\":null},\"livemode\":false,\"metadata\":" meta ","  \
    "\"name\":" name ",\"next_invoice_sequence\":1,\"phone\":" phone ","     \
    "\"preferred_locales\":[],\"shipping\":null,\"tax_exempt\":\"none\","    \
    "\"test_clock\":null}"
#define CUSTOMER_FULL                                                        \
    CUSTOMER_JSON("\"jennyrosen@example.com\"", "\"+14155550123\"",          \
                  "\"Jenny Rosen\"", "{}")
#define EMPTY_LIST "{\"object\":\"list\",\"url\":\"/v1/customers\"," \
                   "\"has_more\":false,\"data\":[]}"
#define EMPTY_SEARCH "{\"object\":\"search_result\",\"url\":"               \
                     "\"/v1/customers/search\",\"has_more\":false,"         \
                     "\"next_page\":null,\"data\":[]}"
#define LINK_JSON(meta)                                                      \
    "{\"id\":\"plink_1MoC3ULkdIwHu7ixZjtGpVl2\",\"object\":"                 \
    "\"payment_link\",\"active\":true,\"currency\":\"usd\","                 \
    "\"livemode\":false,\"metadata\":" meta ",\"url\":"                      \
    "\"https://buy.stripe.com/test_cN25nr0iZ7bUa7meUY\"}"
#define INVOICE_JSON(status, meta)                                           \
    "{\"id\":\"" INV "\",\"object\":\"invoice\",\"collection_method\":"      \
    "\"send_invoice\",\"currency\":\"usd\",\"customer\":\"" CUS "\","        \
    "\"status\":\"" status "\",\"number\":\"0759376C-0001\","                \
    "\"hosted_invoice_url\":\"https://invoice.stripe.com/i/acct_1M2JTkLkd"   \
    "IwHu7ix/test_YWNjdF8xTTJKVGtMa2RJd0h1N2l4LF9OZVp3dVBYNnF0dGlvdXRubGJS"  \
    "WHZaWVhNdEJ3N2l6LDcxMTgyMTA50200x7xXYw4D\",\"metadata\":" meta "}"

/* ------------------------------------------------------------------ */
/* Forms                                                              */
/* ------------------------------------------------------------------ */

Test(stripe_form, flattens_json_in_bracket_notation)
{
    json_t *v = jparse("{\"email\":\"a+b@x.com\",\"name\":\"Jenny Rosen\","
                       "\"metadata\":{\"call id\":\"c&1\"},"
                       "\"line_items\":[{\"price_data\":{\"unit_amount\":"
                       "1500,\"product_data\":{\"name\":\"Roof / gutter\"}},"
                       "\"quantity\":1}],\"auto_advance\":false,"
                       "\"nothing\":null,\"empty\":{}}");
    struct form f;
    form_init(&f);
    form_add_json(&f, NULL, v);
    cr_expect_str_eq(form_text(&f),
                     "email=a%2Bb%40x.com&name=Jenny+Rosen&"
                     "metadata[call+id]=c%261&"
                     "line_items[0][price_data][unit_amount]=1500&"
                     "line_items[0][price_data][product_data][name]="
                     "Roof+%2F+gutter&line_items[0][quantity]=1&"
                     "auto_advance=false");
    form_release(&f);
    json_decref(v);
    char *e = form_escape("é ~*");
    cr_expect_str_eq(e, "%C3%A9+%7E*");
    free(e);
}

/* ------------------------------------------------------------------ */
/* Customer                                                           */
/* ------------------------------------------------------------------ */

Test(stripe_customer, looks_up_by_email_then_phone_then_creates)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_step(&f, "customer", false);
    build(&f);
    expect_request(&f, "GET",
                   "/v1/customers?email=jennyrosen%40example.com&limit=10");
    cr_expect_null(hdr(&f.rq, "Idempotency-Key"));
    cr_expect_null(f.rq.body);
    answer(&f, 200, EMPTY_LIST);
    cr_assert_eq(f.res.outcome, PROV_NEXT);

    build(&f);
    expect_request(&f, "GET",
                   "/v1/customers/search?query=phone%3A%27%2B14155550123%27"
                   "&limit=10");
    answer(&f, 200, EMPTY_SEARCH);
    cr_assert_eq(f.res.outcome, PROV_NEXT);

    build(&f);
    expect_request(&f, "POST", "/v1/customers");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":customer");
    expect_form(&f.rq,
                "{\"name\":\"Jenny Rosen\","
                "\"email\":\"jennyrosen@example.com\","
                "\"phone\":\"+14155550123\",\"address[line1]\":\"1 Main St\","
                "\"address[city]\":\"Oakland\",\"address[state]\":\"CA\","
                "\"metadata[callsync_job_id]\":\"" JOB_ID "\","
                "\"metadata[callsync_call_id]\":\"call_abc123\"}");
    answer(&f, 200, CUSTOMER_FULL);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "customer_id"), CUS);
    cr_expect_str_eq(done_str(&f, "action"), "created");
    fx_release(&f);
}

Test(stripe_customer, found_complete_is_done_without_a_write)
{
    struct fx f;
    fx_init(&f, NULL);
    /* A caller without an address: the customer lacks nothing. */
    json_t *cust = json_object_get(json_object_get(f.job, "call"),
                                   "customer");
    json_object_del(cust, "address");
    json_object_del(cust, "city");
    json_object_del(cust, "state");
    fx_step(&f, "customer", false);
    build(&f);
    answer(&f, 200, "{\"object\":\"list\",\"data\":[" CUSTOMER_JSON(
                        "\"jennyrosen@example.com\"", "\"+14155550123\"",
                        "\"Jenny Rosen\"",
                        "{}") "],\"has_more\":false}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "customer_id"), CUS);
    cr_expect_str_eq(done_str(&f, "action"), "found");
    fx_release(&f);
}

Test(stripe_customer, found_fills_only_what_is_missing)
{
    struct fx f;
    fx_init(&f, "{\"field_mappings\":{\"ai_analysis.lead_score\":"
                "\"metadata.lead_score\"}}");
    fx_step(&f, "customer", false);
    build(&f);
    /* The customer's own name stays; the phone and address it lacks are
     * filled; the mapped metadata key is added. */
    answer(&f, 200, "{\"object\":\"list\",\"data\":[" CUSTOMER_JSON(
                        "\"jennyrosen@example.com\"", "null",
                        "\"Jennifer Rosen\"",
                        "{\"source\":\"web\"}") "],\"has_more\":false}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "POST", "/v1/customers/" CUS);
    const char *key = hdr(&f.rq, "Idempotency-Key");
    cr_assert(key);
    cr_expect(strncmp(key, JOB_ID ":customer:update:",
                      strlen(JOB_ID ":customer:update:")) == 0,
              "%s", key);
    cr_expect_eq(strlen(key), strlen(JOB_ID ":customer:update:") + 12);
    expect_form(&f.rq, "{\"phone\":\"+14155550123\","
                       "\"address[line1]\":\"1 Main St\","
                       "\"address[city]\":\"Oakland\","
                       "\"address[state]\":\"CA\","
                       "\"metadata[lead_score]\":\"87\"}");
    /* The same patch gets the same key: a repeat is replayed. */
    char *first = xstrdup(key);
    build(&f);
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), first);
    free(first);
    answer(&f, 200, CUSTOMER_FULL);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "action"), "updated");
    fx_release(&f);
}

Test(stripe_customer, prefers_the_customer_this_job_created)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_step(&f, "customer", false);
    build(&f);
    answer(&f,
           200,
           "{\"object\":\"list\",\"data\":["
           "{\"id\":\"cus_newer\",\"email\":\"jennyrosen@example.com\","
           "\"phone\":null,\"name\":\"J\",\"address\":null,\"metadata\":{}},"
           "{\"id\":\"cus_ours\",\"email\":\"jennyrosen@example.com\","
           "\"phone\":\"+14155550123\",\"name\":\"Jenny Rosen\",\"address\":"
           "{\"line1\":\"1 Main St\",\"city\":\"Oakland\",\"state\":\"CA\"},"
           "\"metadata\":{\"callsync_job_id\":\"" JOB_ID "\"}}]}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "customer_id"), "cus_ours");
    fx_release(&f);
}

Test(stripe_customer, vanished_during_update_is_created_once)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_step(&f, "customer", false);
    build(&f);
    answer(&f, 200, "{\"object\":\"list\",\"data\":[" CUSTOMER_JSON(
                        "\"jennyrosen@example.com\"", "null", "null",
                        "{}") "]}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    answer(&f, 404, "{\"error\":{\"code\":\"resource_missing\",\"message\":"
                    "\"No such customer: '" CUS "'\",\"param\":\"id\","
                    "\"type\":\"invalid_request_error\"}}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "POST", "/v1/customers");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":customer");
    fx_release(&f);
}

Test(stripe_customer, phone_only_caller_and_no_phone_search)
{
    struct fx f;
    fx_init(&f, "{\"phone_lookup\":false}");
    json_object_del(json_object_get(json_object_get(f.job, "call"),
                                    "customer"),
                    "email");
    fx_step(&f, "customer", false);
    build(&f);
    /* Neither e-mail nor phone look-up applies: create at once. */
    expect_request(&f, "POST", "/v1/customers");
    fx_release(&f);

    fx_init(&f, NULL);
    json_object_del(json_object_get(json_object_get(f.job, "call"),
                                    "customer"),
                    "email");
    fx_step(&f, "customer", false);
    build(&f);
    expect_request(&f, "GET",
                   "/v1/customers/search?query=phone%3A%27%2B14155550123%27"
                   "&limit=10");
    fx_release(&f);
}

Test(stripe_customer, needs_a_phone_or_an_email)
{
    struct fx f;
    fx_init(&f, NULL);
    json_t *cust = json_object_get(json_object_get(f.job, "call"),
                                   "customer");
    json_object_del(cust, "email");
    json_object_del(cust, "phone");
    fx_step(&f, "customer", false);
    build_fails(&f, "no_contact_key:");
    fx_release(&f);
}

Test(stripe_customer, reconcile_of_an_old_job_searches_our_metadata)
{
    struct fx f;
    /* 25 hours: Stripe may have pruned the key of the first attempt. */
    fx_init_aged(&f, NULL, 25LL * 3600 * 1000);
    fx_step(&f, "customer", true);
    build(&f);
    answer(&f, 200, EMPTY_LIST);
    build(&f);
    answer(&f, 200, EMPTY_SEARCH);
    build(&f);
    expect_request(&f, "GET",
                   "/v1/customers/search?query=metadata%5B%27callsync_job_"
                   "id%27%5D%3A%27" JOB_ID "%27&limit=10");
    answer(&f, 200, "{\"object\":\"search_result\",\"data\":["
                    "{\"id\":\"cus_mine\",\"email\":\"jennyrosen@example.com\","
                    "\"phone\":\"+14155550123\",\"name\":\"Jenny Rosen\","
                    "\"address\":{\"line1\":\"1 Main St\",\"city\":\"Oakland\","
                    "\"state\":\"CA\"},\"metadata\":{\"callsync_job_id\":\""
                    JOB_ID "\"}}]}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "customer_id"), "cus_mine");
    fx_release(&f);

    /* A young job relies on the key: no metadata search. */
    fx_init(&f, NULL);
    fx_step(&f, "customer", true);
    build(&f);
    answer(&f, 200, EMPTY_LIST);
    build(&f);
    answer(&f, 200, EMPTY_SEARCH);
    build(&f);
    expect_request(&f, "POST", "/v1/customers");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":customer");
    fx_release(&f);
}

Test(stripe_customer, search_values_are_quoted)
{
    struct fx f;
    fx_init(&f, NULL);
    json_t *cust = json_object_get(json_object_get(f.job, "call"),
                                   "customer");
    json_object_del(cust, "email");
    json_object_set_new(cust, "phone", json_string("+1415'55\\0"));
    fx_step(&f, "customer", false);
    build(&f);
    /* phone:'+1415\'55\\0' */
    expect_request(&f, "GET",
                   "/v1/customers/search?query=phone%3A%27%2B1415%5C%2755"
                   "%5C%5C0%27&limit=10");
    fx_release(&f);
}

Test(stripe_customer, field_mappings_and_their_errors)
{
    struct fx f;
    fx_init(&f, "{\"phone_lookup\":false,\"field_mappings\":["
                "{\"target\":\"description\",\"template\":"
                "\"{{call_outcome}}: {{call_summary}}\"},"
                "{\"target\":\"address.postal_code\",\"source\":"
                "\"call.custom.zip\"},"
                "{\"target\":\"metadata.project\",\"source\":"
                "\"ai_analysis.project_type\"}]}");
    json_object_set_new(json_object_get(f.job, "call"), "custom",
                        json_pack("{s:s}", "zip", "94607"));
    fx_step(&f, "customer", false);
    build(&f);
    answer(&f, 200, EMPTY_LIST);
    build(&f);
    expect_form(&f.rq,
                "{\"name\":\"Jenny Rosen\","
                "\"email\":\"jennyrosen@example.com\","
                "\"phone\":\"+14155550123\",\"address[line1]\":\"1 Main St\","
                "\"address[city]\":\"Oakland\",\"address[state]\":\"CA\","
                "\"address[postal_code]\":\"94607\","
                "\"description\":\"appointment_booked: Booked a repair\","
                "\"metadata[project]\":\"kitchen\","
                "\"metadata[callsync_job_id]\":\"" JOB_ID "\","
                "\"metadata[callsync_call_id]\":\"call_abc123\"}");
    fx_release(&f);

    fx_init(&f, "{\"field_mappings\":{\"call_summary\":\"notes\"}}");
    fx_step(&f, "customer", false);
    build_fails(&f, "mapping_error: 'notes' is not a Stripe customer field");
    fx_release(&f);

    fx_init(&f, "{\"field_mappings\":{\"ai_analysis\":\"description\"}}");
    fx_step(&f, "customer", false);
    build_fails(&f, "mapping_error:");
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Payment link                                                       */
/* ------------------------------------------------------------------ */

Test(stripe_link, applies_only_when_configured)
{
    struct fx f;
    fx_init(&f, NULL);
    cr_expect_not(step_of("payment_link")->applies(&f.ctx));
    cr_expect_not(step_of("invoice")->applies(&f.ctx));
    cr_expect_not(step_of("send")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, "{\"payment\":\"payment_link\",\"price_id\":\"price_1\"}");
    cr_expect(step_of("payment_link")->applies(&f.ctx));
    cr_expect_not(step_of("invoice_items")->applies(&f.ctx));
    fx_release(&f);
}

Test(stripe_link, with_a_price)
{
    struct fx f;
    fx_init(&f, "{\"payment\":\"payment_link\",\"price_id\":"
                "\"price_1MoBy5LkdIwHu7ixZhnattbh\",\"quantity\":2,"
                "\"payment_link_max_uses\":1}");
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_step(&f, "payment_link", false);
    build(&f);
    expect_request(&f, "POST", "/v1/payment_links");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":payment_link");
    expect_form(&f.rq,
                "{\"line_items[0][quantity]\":\"2\","
                "\"line_items[0][price]\":\"price_1MoBy5LkdIwHu7ixZhnattbh\","
                "\"metadata[callsync_job_id]\":\"" JOB_ID "\","
                "\"metadata[callsync_call_id]\":\"call_abc123\","
                "\"metadata[callsync_customer_id]\":\"" CUS "\","
                "\"restrictions[completed_sessions][limit]\":\"1\"}");
    answer(&f, 200, LINK_JSON("{}"));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "payment_link_id"),
                     "plink_1MoC3ULkdIwHu7ixZjtGpVl2");
    cr_expect_str_eq(done_str(&f, "url"),
                     "https://buy.stripe.com/test_cN25nr0iZ7bUa7meUY");
    fx_release(&f);
}

Test(stripe_link, with_an_amount_from_a_lookup)
{
    struct fx f;
    fx_init(&f, "{\"payment\":\"payment_link\",\"currency\":\"USD\","
                "\"amount\":{\"source\":\"ai_analysis.project_type\","
                "\"map\":{\"kitchen\":25000},\"default\":9900},"
                "\"product_name\":\"{{appointment.title}} deposit\"}");
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_step(&f, "payment_link", false);
    build(&f);
    expect_form(&f.rq,
                "{\"line_items[0][quantity]\":\"1\","
                "\"line_items[0][price_data][currency]\":\"usd\","
                "\"line_items[0][price_data][unit_amount]\":\"25000\","
                "\"line_items[0][price_data][product_data][name]\":"
                "\"Roof Repair deposit\","
                "\"payment_intent_data[metadata][callsync_job_id]\":\""
                JOB_ID "\","
                "\"payment_intent_data[metadata][callsync_call_id]\":"
                "\"call_abc123\","
                "\"payment_intent_data[metadata][callsync_customer_id]\":\""
                CUS "\","
                "\"metadata[callsync_job_id]\":\"" JOB_ID "\","
                "\"metadata[callsync_call_id]\":\"call_abc123\","
                "\"metadata[callsync_customer_id]\":\"" CUS "\"}");
    fx_release(&f);
}

Test(stripe_link, config_errors)
{
    static const char *const cases[][2] = {
        {"{\"payment\":\"payment_link\"}", "config_error: a payment link"},
        {"{\"payment\":\"payment_link\",\"amount\":100}",
         "config_error: currency"},
        {"{\"payment\":\"payment_link\",\"amount\":100,\"currency\":\"us\"}",
         "config_error: currency"},
        {"{\"payment\":\"payment_link\",\"amount\":12.5,\"currency\":\"usd\"}",
         "config_error: config.amount must give a whole amount"},
        {"{\"payment\":\"payment_link\",\"amount\":0,\"currency\":\"usd\"}",
         "config_error: config.amount"},
        {"{\"payment\":\"payment_link\",\"price_id\":\"p\",\"quantity\":0}",
         "config_error: quantity"},
        {"{\"payment\":\"payment_link\",\"price_id\":\"p\","
         "\"payment_link_max_uses\":\"one\"}",
         "config_error: payment_link_max_uses"},
        {"{\"payment\":\"payment_link\",\"amount\":1,\"currency\":\"usd\","
         "\"product_name\":\"{{oops\"}",
         ""},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, cases[i][0]);
        fx_step(&f, "payment_link", false);
        build_fails(&f, cases[i][1]);
        fx_release(&f);
    }
}

Test(stripe_link, reconcile_relies_on_the_key_while_it_lives)
{
    struct fx f;
    fx_init(&f, "{\"payment\":\"payment_link\",\"price_id\":\"price_1\"}");
    fx_step(&f, "payment_link", true);
    build(&f);
    expect_request(&f, "POST", "/v1/payment_links");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":payment_link");
    /* The replayed answer is the link the lost attempt created. */
    struct prov_header replayed = {(char *)"idempotent-replayed",
                                   (char *)"true"};
    answer_h(&f, 200, LINK_JSON("{}"), &replayed, 1);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    fx_release(&f);
}

Test(stripe_link, reconcile_after_a_day_scans_recent_links)
{
    struct fx f;
    fx_init_aged(&f, "{\"payment\":\"payment_link\",\"price_id\":"
                     "\"price_1\"}",
                 30LL * 3600 * 1000);
    fx_step(&f, "payment_link", true);
    build(&f);
    expect_request(&f, "GET", "/v1/payment_links?limit=100");
    answer(&f, 200, "{\"object\":\"list\",\"has_more\":true,\"data\":["
                    "{\"id\":\"plink_a\",\"metadata\":{}},"
                    "{\"id\":\"plink_b\",\"metadata\":{\"callsync_job_id\":"
                    "\"other\"}}]}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "GET",
                   "/v1/payment_links?limit=100&starting_after=plink_b");
    answer(&f, 200, "{\"object\":\"list\",\"has_more\":false,\"data\":["
                    LINK_JSON("{\"callsync_job_id\":\"" JOB_ID "\"}") "]}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "payment_link_id"),
                     "plink_1MoC3ULkdIwHu7ixZjtGpVl2");
    fx_release(&f);

    /* Not found within the pages scanned: created (a new key use). */
    fx_init_aged(&f, "{\"payment\":\"payment_link\",\"price_id\":"
                     "\"price_1\"}",
                 30LL * 3600 * 1000);
    fx_step(&f, "payment_link", true);
    for (int page = 0; page < 5; page++) {
        build(&f);
        cr_expect_str_eq(f.rq.method, "GET");
        answer(&f, 200, "{\"object\":\"list\",\"has_more\":true,\"data\":["
                        "{\"id\":\"plink_x\",\"metadata\":{}}]}");
        cr_assert_eq(f.res.outcome, PROV_NEXT);
    }
    build(&f);
    expect_request(&f, "POST", "/v1/payment_links");
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Invoice                                                            */
/* ------------------------------------------------------------------ */

#define INVOICE_CONFIG                                                       \
    "{\"payment\":\"invoice\",\"currency\":\"usd\",\"days_until_due\":14,"   \
    "\"invoice_description\":\"{{appointment.title}} on "                    \
    "{{appointment.date}}\",\"invoice_items\":["                             \
    "{\"description\":\"Inspection\",\"amount\":15000},"                     \
    "{\"description\":\"{{appointment.service_type}} materials\","           \
    "\"amount\":{\"source\":\"ai_analysis.lead_score\",\"map\":"             \
    "{\"87\":4200},\"default\":100}}]}"

Test(stripe_invoice, creates_a_draft)
{
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    cr_expect(step_of("invoice")->applies(&f.ctx));
    cr_expect(step_of("send")->applies(&f.ctx));
    fx_step(&f, "invoice", false);
    build(&f);
    expect_request(&f, "POST", "/v1/invoices");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":invoice");
    expect_form(&f.rq, "{\"customer\":\"" CUS "\","
                       "\"collection_method\":\"send_invoice\","
                       "\"currency\":\"usd\",\"auto_advance\":\"false\","
                       "\"pending_invoice_items_behavior\":\"exclude\","
                       "\"description\":\"Roof Repair on 2026-02-20\","
                       "\"days_until_due\":\"14\","
                       "\"metadata[callsync_job_id]\":\"" JOB_ID "\","
                       "\"metadata[callsync_call_id]\":\"call_abc123\"}");
    answer(&f, 200, INVOICE_JSON("draft", "{}"));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "invoice_id"), INV);
    fx_release(&f);
}

Test(stripe_invoice, reconcile_lists_the_customers_invoices)
{
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_step(&f, "invoice", true);
    build(&f);
    expect_request(&f, "GET", "/v1/invoices?customer=" CUS "&limit=100");
    answer(&f, 200, "{\"object\":\"list\",\"has_more\":false,\"data\":["
                    INVOICE_JSON("draft", "{\"callsync_job_id\":\"" JOB_ID
                                          "\"}") "]}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "invoice_id"), INV);
    fx_release(&f);

    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_step(&f, "invoice", true);
    build(&f);
    answer(&f, 200, "{\"object\":\"list\",\"has_more\":false,\"data\":["
                    INVOICE_JSON("open", "{}") "]}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "POST", "/v1/invoices");
    fx_release(&f);
}

Test(stripe_invoice, items_each_with_its_own_key)
{
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_done(&f, "invoice", "{\"invoice_id\":\"" INV "\"}");
    fx_step(&f, "invoice_items", false);
    build(&f);
    expect_request(&f, "POST", "/v1/invoiceitems");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"),
                     JOB_ID ":invoice_items:0");
    expect_form(&f.rq, "{\"customer\":\"" CUS "\",\"invoice\":\"" INV "\","
                       "\"amount\":\"15000\",\"currency\":\"usd\","
                       "\"description\":\"Inspection\","
                       "\"metadata[callsync_job_id]\":\"" JOB_ID "\","
                       "\"metadata[callsync_call_id]\":\"call_abc123\","
                       "\"metadata[callsync_item]\":\"0\"}");
    answer(&f, 200, "{\"id\":\"ii_1\",\"object\":\"invoiceitem\"}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"),
                     JOB_ID ":invoice_items:1");
    json_t *form = form_of(&f.rq);
    cr_expect_str_eq(json_string_value(json_object_get(form, "amount")),
                     "4200");
    cr_expect_str_eq(json_string_value(json_object_get(form, "description")),
                     "roofing materials");
    json_decref(form);
    answer(&f, 200, "{\"id\":\"ii_2\",\"object\":\"invoiceitem\"}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    json_t *ids = json_object_get(f.res.value, "invoice_item_ids");
    cr_expect_eq(json_array_size(ids), 2);
    cr_expect_str_eq(json_string_value(json_array_get(ids, 1)), "ii_2");
    fx_release(&f);
}

Test(stripe_invoice, items_reconcile_skips_those_attached)
{
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_done(&f, "invoice", "{\"invoice_id\":\"" INV "\"}");
    fx_step(&f, "invoice_items", true);
    build(&f);
    expect_request(&f, "GET", "/v1/invoiceitems?invoice=" INV "&limit=100");
    answer(&f, 200, "{\"object\":\"list\",\"data\":["
                    "{\"id\":\"ii_0\",\"metadata\":{\"callsync_job_id\":\""
                    JOB_ID "\",\"callsync_item\":\"0\"}},"
                    "{\"id\":\"ii_other\",\"metadata\":{\"callsync_item\":"
                    "\"1\"}}]}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"),
                     JOB_ID ":invoice_items:1");
    answer(&f, 200, "{\"id\":\"ii_1\"}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    json_t *ids = json_object_get(f.res.value, "invoice_item_ids");
    cr_expect_str_eq(json_string_value(json_array_get(ids, 0)), "ii_0");
    cr_expect_str_eq(json_string_value(json_array_get(ids, 1)), "ii_1");
    fx_release(&f);
}

Test(stripe_invoice, finalize_then_send)
{
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "invoice", "{\"invoice_id\":\"" INV "\"}");
    fx_step(&f, "finalize", false);
    build(&f);
    expect_request(&f, "POST", "/v1/invoices/" INV "/finalize");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":finalize");
    expect_form(&f.rq, "{\"auto_advance\":\"false\"}");
    answer(&f, 200, INVOICE_JSON("open", "{}"));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "status"), "open");
    cr_expect_str_eq(done_str(&f, "number"), "0759376C-0001");

    fx_step(&f, "send", false);
    build(&f);
    expect_request(&f, "POST", "/v1/invoices/" INV "/send");
    cr_expect_str_eq(hdr(&f.rq, "Idempotency-Key"), JOB_ID ":send");
    answer(&f, 200, INVOICE_JSON("open", "{}"));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    fx_release(&f);
}

Test(stripe_invoice, finalize_reconciles_by_the_invoice_status)
{
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_done(&f, "invoice", "{\"invoice_id\":\"" INV "\"}");
    fx_step(&f, "finalize", true);
    build(&f);
    expect_request(&f, "GET", "/v1/invoices/" INV);
    answer(&f, 200, INVOICE_JSON("open", "{}"));
    cr_assert_eq(f.res.outcome, PROV_DONE);

    fx_step(&f, "finalize", true);
    build(&f);
    answer(&f, 200, INVOICE_JSON("draft", "{}"));
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "POST", "/v1/invoices/" INV "/finalize");

    /* Finalized by someone else meanwhile: a 400, then a look. */
    fx_step(&f, "finalize", false);
    build(&f);
    answer(&f, 400, "{\"error\":{\"message\":\"This invoice is already "
                    "finalized, you can't re-finalize a non-draft "
                    "invoice.\",\"type\":\"invalid_request_error\"}}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "GET", "/v1/invoices/" INV);
    answer(&f, 200, INVOICE_JSON("paid", "{}"));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    fx_release(&f);
}

Test(stripe_invoice, charge_automatically_advances_and_is_not_sent)
{
    struct fx f;
    fx_init(&f, "{\"payment\":\"invoice\",\"currency\":\"eur\","
                "\"collection_method\":\"charge_automatically\","
                "\"amount\":5000}");
    fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
    fx_done(&f, "invoice", "{\"invoice_id\":\"" INV "\"}");
    cr_expect_not(step_of("send")->applies(&f.ctx));
    fx_step(&f, "invoice", false);
    build(&f);
    json_t *form = form_of(&f.rq);
    cr_expect_null(json_object_get(form, "days_until_due"));
    cr_expect_str_eq(json_string_value(json_object_get(form,
                                                       "collection_method")),
                     "charge_automatically");
    json_decref(form);
    fx_step(&f, "invoice_items", false);
    build(&f);
    form = form_of(&f.rq);
    cr_expect_str_eq(json_string_value(json_object_get(form, "amount")),
                     "5000");
    cr_expect_str_eq(json_string_value(json_object_get(form, "description")),
                     "roofing");
    json_decref(form);
    fx_step(&f, "finalize", false);
    build(&f);
    expect_form(&f.rq, "{\"auto_advance\":\"true\"}");
    fx_release(&f);

    fx_init(&f, "{\"payment\":\"invoice\",\"currency\":\"usd\","
                "\"amount\":1,\"invoice_send\":false}");
    cr_expect_not(step_of("send")->applies(&f.ctx));
    fx_release(&f);
}

Test(stripe_invoice, config_errors)
{
    static const char *const cases[][3] = {
        {"invoice", "{\"payment\":\"invoice\",\"currency\":\"usd\","
                    "\"collection_method\":\"cash\"}",
         "config_error: collection_method"},
        {"invoice", "{\"payment\":\"invoice\",\"currency\":\"usd\","
                    "\"days_until_due\":-1}",
         "config_error: days_until_due"},
        {"invoice_items", "{\"payment\":\"invoice\",\"currency\":\"usd\"}",
         "config_error: an invoice needs invoice_items"},
        {"invoice_items", "{\"payment\":\"invoice\",\"currency\":\"usd\","
                          "\"invoice_items\":[]}",
         "config_error: invoice_items must be a list"},
        {"invoice_items", "{\"payment\":\"invoice\",\"currency\":\"usd\","
                          "\"invoice_items\":[{\"description\":\"x\"}]}",
         "config_error: config.invoice_items[0].amount"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, cases[i][1]);
        fx_done(&f, "customer", "{\"customer_id\":\"" CUS "\"}");
        fx_done(&f, "invoice", "{\"invoice_id\":\"" INV "\"}");
        fx_step(&f, cases[i][0], false);
        build_fails(&f, cases[i][2]);
        fx_release(&f);
    }
    /* Steps in order: without the customer's checkpoint, no invoice. */
    struct fx f;
    fx_init(&f, INVOICE_CONFIG);
    fx_step(&f, "invoice", false);
    build_fails(&f, "no_customer:");
    fx_step(&f, "finalize", false);
    build_fails(&f, "no_invoice:");
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Errors, rate, registry                                             */
/* ------------------------------------------------------------------ */

Test(stripe_errors, classified)
{
    struct fx f;
    fx_init(&f, "{\"payment\":\"payment_link\",\"price_id\":\"price_1\"}");
    fx_step(&f, "payment_link", false);
    build(&f);

    answer(&f, 402, "{\"error\":{\"code\":\"card_declined\",\"decline_code\":"
                    "\"generic_decline\",\"message\":\"Your card was "
                    "declined.\",\"type\":\"card_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "card_declined");
    cr_expect_str_eq(f.res.message, "Your card was declined.");

    answer(&f, 400, "{\"error\":{\"message\":\"Invalid currency: zz\","
                    "\"param\":\"line_items[0][price_data][currency]\","
                    "\"type\":\"invalid_request_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "invalid_request_error");
    cr_expect_str_eq(f.res.message, "Invalid currency: zz (param "
                                    "line_items[0][price_data][currency])");

    answer(&f, 400, "{\"error\":{\"message\":\"Keys for idempotent requests "
                    "can only be used with the same parameters they were "
                    "first used with.\",\"type\":\"idempotency_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "idempotency_error");
    cr_expect(strstr(f.res.message, JOB_ID ":payment_link"), "%s",
              f.res.message);
    cr_expect(strstr(f.res.message, "config change"), "%s", f.res.message);

    answer(&f, 409, "{\"error\":{\"message\":\"There is currently another "
                    "in-progress request using this Idempotent Key\","
                    "\"type\":\"idempotency_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_RETRY);

    answer(&f, 429, "{\"error\":{\"code\":\"rate_limit\",\"message\":"
                    "\"Request rate limit exceeded.\",\"type\":"
                    "\"invalid_request_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_RATE_LIMITED);
    cr_expect_str_eq(f.res.code, "rate_limit");

    answer(&f, 401, "{\"error\":{\"message\":\"Invalid API Key provided: "
                    "sk_test_****dc\",\"type\":\"invalid_request_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_AUTH);

    answer(&f, 500, "{\"error\":{\"message\":\"An unknown error occurred\","
                    "\"type\":\"api_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    cr_expect_str_eq(f.res.code, "api_error");

    answer(&f, 400, "{\"error\":{\"message\":\"Something went wrong\","
                    "\"type\":\"api_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    answer(&f, 400, "{\"error\":{\"message\":\"Too many requests\","
                    "\"type\":\"rate_limit_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_RATE_LIMITED);

    struct prov_header no = {(char *)"stripe-should-retry", (char *)"false"};
    answer_h(&f, 500, "{\"error\":{\"type\":\"api_error\"}}", &no, 1);
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    struct prov_header yes = {(char *)"stripe-should-retry", (char *)"true"};
    answer_h(&f, 400, "{\"error\":{\"type\":\"invalid_request_error\"}}",
             &yes, 1);
    cr_expect_eq(f.res.outcome, PROV_RETRY);

    answer(&f, 0, NULL);
    cr_expect_eq(f.res.outcome, PROV_RETRY);

    answer(&f, 200, "<html>");
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    cr_expect_str_eq(f.res.code, "bad_response");
    fx_release(&f);
}

Test(stripe_errors, no_key_is_a_credentials_error)
{
    struct fx f;
    fx_init(&f, NULL);
    f.creds.api_key = NULL;
    fx_step(&f, "customer", false);
    build_fails(&f, "no_credentials:");
    fx_release(&f);
}

Test(stripe_ops, rate_by_key_mode_and_registry)
{
    cr_expect_eq(prov_find("stripe"), &prov_stripe);
    cr_expect_eq(prov_stripe.rate.requests, 25);
    cr_expect_eq(prov_stripe.rate.per_ms, 1000);
    cr_expect_str_eq(prov_stripe.rate_scope, "account_id");
    struct prov_rate r;
    struct prov_creds c = {0};
    c.api_key = "sk_live_abc";
    cr_expect(prov_stripe.rate_of(&c, NULL, &r));
    cr_expect_eq(r.requests, 100);
    cr_expect_eq(r.per_ms, 1000);
    c.api_key = "rk_test_abc";
    cr_expect(prov_stripe.rate_of(&c, NULL, &r));
    cr_expect_eq(r.requests, 25);
    c.api_key = "pk_live_abc";
    cr_expect_not(prov_stripe.rate_of(&c, NULL, &r));
    c.api_key = NULL;
    cr_expect_not(prov_stripe.rate_of(&c, NULL, &r));
    /* Every write step reconciles by key or look-up; none is blind. */
    for (size_t i = 0; i < prov_stripe.nsteps; i++)
        cr_expect_neq(prov_stripe.steps[i].reconcile, PROV_RECONCILE_NONE);
}

Test(stripe_ops, pinned_version_is_configurable)
{
    struct fx f;
    fx_init(&f, "{\"stripe_version\":\"2026-01-28.clover\"}");
    fx_step(&f, "customer", false);
    build(&f);
    cr_expect_str_eq(hdr(&f.rq, "Stripe-Version"), "2026-01-28.clover");
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Probe (callsyncctl connections test)                               */
/* ------------------------------------------------------------------ */

static void fx_probe(struct fx *f)
{
    f->step = prov_stripe.probe;
    cr_assert_not_null(f->step);
    f->ctx.idempotency_key = "probe";
}

Test(stripe_probe, reads_the_account_then_one_customer)
{
    struct fx f;
    fx_init(&f, "{\"account_id\":\"acct_1Nv0FGQ9RKHgCVdK\"}");
    fx_probe(&f);
    build(&f);
    expect_request(&f, "GET", "/v1/account");
    cr_expect_null(f.rq.body);
    cr_expect_null(hdr(&f.rq, "Idempotency-Key"));
    answer(&f, 200,
           "{\"id\":\"acct_1Nv0FGQ9RKHgCVdK\",\"object\":\"account\","
           "\"business_profile\":{\"name\":\"Furever\"},\"country\":\"US\","
           "\"default_currency\":\"usd\",\"settings\":{\"dashboard\":"
           "{\"display_name\":\"Furever Shop\",\"timezone\":\"Etc/UTC\"}}}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    expect_request(&f, "GET", "/v1/customers?limit=1");
    answer(&f, 200, EMPTY_LIST);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "account_id"), "acct_1Nv0FGQ9RKHgCVdK");
    cr_expect_str_eq(done_str(&f, "name"), "Furever Shop");
    cr_expect_str_eq(done_str(&f, "country"), "US");
    cr_expect_str_eq(done_str(&f, "default_currency"), "usd");
    cr_expect(json_is_false(json_object_get(f.res.value, "livemode")));
    cr_expect(json_is_true(json_object_get(f.res.value,
                                           "customers_readable")));
    cr_expect_null(json_object_get(f.res.value, "configured_account_id"));
    fx_release(&f);
}

Test(stripe_probe, says_when_config_names_another_account)
{
    struct fx f;
    fx_init(&f, "{\"account_id\":\"acct_other\"}");
    fx_probe(&f);
    build(&f);
    answer(&f, 200, "{\"id\":\"acct_1Nv0FGQ9RKHgCVdK\",\"object\":"
                    "\"account\",\"business_profile\":{\"name\":\"Furever\"}}");
    cr_assert_eq(f.res.outcome, PROV_NEXT);
    build(&f);
    answer(&f, 200, EMPTY_LIST);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(done_str(&f, "name"), "Furever");
    cr_expect_str_eq(done_str(&f, "configured_account_id"), "acct_other");
    fx_release(&f);
}

Test(stripe_probe, bad_key_is_unauthorized_restricted_key_refused)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_probe(&f);
    build(&f);
    answer(&f, 401, "{\"error\":{\"message\":\"Invalid API Key provided: "
                    "sk_test_****7dc\",\"type\":\"invalid_request_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_AUTH);
    cr_expect_eq(f.res.http_status, 401);
    /* A restricted key without customer read: 403 on the second read. */
    json_object_set_new(f.scratch, "account_id", json_string("acct_1"));
    build(&f);
    expect_request(&f, "GET", "/v1/customers?limit=1");
    answer(&f, 403, "{\"error\":{\"message\":\"The provided key "
                    "'rk_test_****' does not have the required permissions "
                    "for this endpoint.\",\"type\":\"invalid_request_error\"}}");
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect(strstr(f.res.message, "required permissions"));
    f.creds.api_key = NULL;
    build_fails(&f, "no_credentials");
    fx_release(&f);
}
