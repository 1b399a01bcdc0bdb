/*
 * test_twilio.c - the Twilio provider: the Messages.json request (path,
 * HTTP Basic with the Account SID or an API key, the form: To, From or
 * MessagingServiceSid, Body or ContentSid and ContentVariables,
 * StatusCallback), the text and its reference, WhatsApp addresses, when
 * the step applies, the look-up that reconciles a lost answer (filters,
 * pages, what counts as ours), answers built from the Message resource's
 * documented example, and error classification (20003, 20429, 21211).
 */
#include "prov.h"
#include "crypto.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://twilio.test"
#define JOB_ID "1a2b3c4d89abcdef0123456789abcdef"
#define REF "1a2b3c4d"
#define AC "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
#define ACX "AC0123456789abcdef0123456789abcdef"
#define SK "SK0123456789abcdef0123456789abcdef"
#define MG "MG0123456789abcdef0123456789abcdef"
#define HX "HX0123456789abcdef0123456789abcdef"
#define TOKEN "auth-token-secret"
#define PATH "/2010-04-01/Accounts/" ACX "/Messages.json"
#define CONFIG "{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\"}"

struct fx {
    json_t *job;
    json_t *config;
    json_t *scratch;
    struct prov_creds creds;
    struct prov_ctx ctx;
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

static void fx_init(struct fx *f, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack(
        "{s:s,s:s,s:o}", "job_id", JOB_ID, "provider", "twilio", "call",
        jparse("{\"call_id\":\"call_abc123\",\"customer\":{\"name\":"
               "\"Marcus Bell\",\"phone\":\"+14155550123\",\"email\":"
               "\"marcus@example.org\"},\"appointment\":{\"date\":"
               "\"2026-02-20\",\"time\":\"14:00\",\"timezone\":"
               "\"America/Chicago\",\"service_type\":\"roof_inspection\"}}"));
    f->config = jparse(config ? config : CONFIG);
    f->scratch = json_object();
    f->creds.api_key = TOKEN;
    f->ctx.job = f->job;
    f->ctx.call = json_object_get(f->job, "call");
    f->ctx.config = f->config;
    f->ctx.creds = &f->creds;
    f->ctx.done = NULL;
    f->ctx.scratch = f->scratch;
    f->ctx.base_url = BASE;
    f->ctx.now_ms = 1771166100000LL;
    f->ctx.idempotency_key = JOB_ID ":sms";
}

static void fx_release(struct fx *f)
{
    prov_request_release(&f->rq);
    prov_result_release(&f->res);
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->scratch);
}

static const struct prov_step *sms(void)
{
    cr_assert_eq(prov_twilio.nsteps, 1);
    cr_assert_str_eq(prov_twilio.steps[0].name, "sms");
    return &prov_twilio.steps[0];
}

static void fx_step(struct fx *f, bool reconcile)
{
    json_object_clear(f->scratch);
    f->ctx.reconcile = reconcile;
}

static void build(struct fx *f)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = sms()->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, 0, "build failed: %s: %s", err.field, err.msg);
}

static void build_fails(struct fx *f, const char *prefix)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    cr_assert_eq(sms()->build(&f->ctx, &f->rq, &err), CS_EINVAL,
                 "build should fail with %s", prefix);
    cr_expect(strncmp(err.msg, prefix, strlen(prefix)) == 0,
              "message '%s' should start with '%s'", err.msg, prefix);
}

static void answer(struct fx *f, int status, const char *body)
{
    prov_result_release(&f->res);
    f->res.retry_after_ms = -1;
    struct prov_response rsp = {status, 0, NULL, body,
                                body ? strlen(body) : 0};
    sms()->parse(&f->ctx, &rsp, &f->res);
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
    return c >= '0' && c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

static char *decode(const char *s, size_t n)
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

static json_t *form_of(const struct prov_request *rq)
{
    cr_assert_str_eq(hdr(rq, "Content-Type"),
                     "application/x-www-form-urlencoded");
    json_t *o = json_object();
    const char *p = rq->body;
    while (p && *p) {
        size_t l = strcspn(p, "&");
        const char *eq = memchr(p, '=', l);
        cr_assert(eq);
        char *k = decode(p, (size_t)(eq - p));
        char *v = decode(eq + 1, l - (size_t)(eq + 1 - p));
        json_object_set_new(o, k, json_string(v));
        free(k);
        free(v);
        p += l;
        if (*p == '&')
            p++;
    }
    return o;
}

static const char *field(json_t *form, const char *k)
{
    return json_string_value(json_object_get(form, k));
}

static void expect_basic(const struct prov_request *rq, const char *user,
                         const char *secret)
{
    char *pair = xasprintf("%s:%s", user, secret);
    char *b64 = cs_base64_encode((const unsigned char *)pair, strlen(pair));
    char *want = xasprintf("Basic %s", b64);
    cr_expect_str_eq(hdr(rq, "Authorization"), want);
    free(want);
    free(b64);
    free(pair);
}

/* The documented create answer (the Message resource's example). */
#define MESSAGE(to, from, body)                                              \
    "{\"account_sid\":\"" AC "\",\"api_version\":\"2010-04-01\",\"body\":"   \
    body ",\"date_created\":\"Thu, 24 Aug 2023 05:01:45 +0000\","            \
    "\"date_sent\":\"Thu, 24 Aug 2023 05:01:45 +0000\",\"date_updated\":"    \
    "\"Thu, 24 Aug 2023 05:01:45 +0000\",\"direction\":\"outbound-api\","    \
    "\"error_code\":null,\"error_message\":null,\"from\":" from ","          \
    "\"num_media\":\"0\",\"num_segments\":\"1\",\"price\":null,"             \
    "\"price_unit\":null,\"messaging_service_sid\":null,"                    \
    "\"sid\":\"SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\",\"status\":\"queued\","  \
    "\"subresource_uris\":{\"media\":\"/2010-04-01/Accounts/" AC             \
    "/Messages/SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Media.json\"},\"to\":" to  \
    ",\"uri\":\"/2010-04-01/Accounts/" AC "/Messages/"                       \
    "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX.json\"}"

/* ------------------------------------------------------------------ */

Test(twilio, sends_the_confirmation)
{
    struct fx f;
    fx_init(&f, NULL);
    cr_expect(sms()->applies(&f.ctx));
    fx_step(&f, false);
    build(&f);
    cr_expect_str_eq(f.rq.method, "POST");
    cr_expect_str_eq(f.rq.url, BASE PATH);
    expect_basic(&f.rq, ACX, TOKEN);
    cr_expect_null(hdr(&f.rq, "Idempotency-Key"));
    json_t *form = form_of(&f.rq);
    cr_expect_str_eq(field(form, "To"), "+14155550123");
    cr_expect_str_eq(field(form, "From"), "+15017122661");
    cr_expect_str_eq(field(form, "Body"),
                     "Hi Marcus, your roof_inspection appointment on "
                     "2026-02-20 at 14:00 (America/Chicago) is confirmed. "
                     "Ref: " REF);
    cr_expect_null(json_object_get(form, "MessagingServiceSid"));
    cr_expect_eq(json_object_size(form), 3);
    json_decref(form);
    answer(&f, 201, MESSAGE("\"+14155550123\"", "\"+15017122661\"",
                            "\"Hi\""));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "message_sid")),
                     "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "status")),
                     "queued");
    fx_release(&f);
}

Test(twilio, templates_and_the_reference)
{
    struct fx f;
    fx_init(&f, "{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
                "\"body_template\":\"{{customer_name_first}}: see you "
                "{{appointment.date}}! ({{sync_ref}})\","
                "\"status_callback\":\"https://cb.example.com/s\"}");
    fx_step(&f, false);
    build(&f);
    json_t *form = form_of(&f.rq);
    cr_expect_str_eq(field(form, "Body"),
                     "Marcus: see you 2026-02-20! (" REF ")");
    cr_expect_str_eq(field(form, "StatusCallback"),
                     "https://cb.example.com/s");
    json_decref(form);
    fx_release(&f);

    /* A template without the reference gets it appended. */
    fx_init(&f, "{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
                "\"body_template\":\"See you soon\"}");
    fx_step(&f, false);
    build(&f);
    form = form_of(&f.rq);
    cr_expect_str_eq(field(form, "Body"), "See you soon\nRef: " REF);
    json_decref(form);
    fx_release(&f);
}

Test(twilio, long_text_is_cut_to_1600_characters_keeping_the_reference)
{
    char *tpl = xmalloc(5000);
    char *p = tpl;
    for (int i = 0; i < 1700; i++) {
        memcpy(p, "\xc3\xa9", 2); /* é: two bytes, one character */
        p += 2;
    }
    *p = '\0';
    char *cfg = xasprintf("{\"account_sid\":\"" ACX "\",\"from\":"
                          "\"+15017122661\",\"body_template\":\"%s\"}", tpl);
    struct fx f;
    fx_init(&f, cfg);
    fx_step(&f, false);
    build(&f);
    json_t *form = form_of(&f.rq);
    const char *body = field(form, "Body");
    size_t chars = 0;
    for (const char *c = body; *c; c++)
        chars += ((unsigned char)*c & 0xc0) != 0x80;
    cr_expect_eq(chars, 1600);
    cr_expect(strstr(body, "\nRef: " REF));
    json_decref(form);
    fx_release(&f);
    free(cfg);
    free(tpl);
}

Test(twilio, api_key_messaging_service_and_whatsapp)
{
    struct fx f;
    fx_init(&f, "{\"account_sid\":\"" ACX "\",\"api_key_sid\":\"" SK "\","
                "\"messaging_service_sid\":\"" MG "\"}");
    fx_step(&f, false);
    build(&f);
    expect_basic(&f.rq, SK, TOKEN);
    cr_expect_str_eq(f.rq.url, BASE PATH);
    json_t *form = form_of(&f.rq);
    cr_expect_str_eq(field(form, "MessagingServiceSid"), MG);
    cr_expect_null(json_object_get(form, "From"));
    json_decref(form);
    fx_release(&f);

    fx_init(&f, "{\"account_sid\":\"" ACX "\",\"channel\":\"whatsapp\","
                "\"from\":\"+14155238886\",\"content_sid\":\"" HX "\","
                "\"content_variables\":{\"1\":\"{{customer_name_first}}\","
                "\"2\":\"{{appointment.date}}\",\"3\":\"{{sync_ref}}\"}}");
    fx_step(&f, false);
    build(&f);
    form = form_of(&f.rq);
    cr_expect_str_eq(field(form, "To"), "whatsapp:+14155550123");
    cr_expect_str_eq(field(form, "From"), "whatsapp:+14155238886");
    cr_expect_str_eq(field(form, "ContentSid"), HX);
    cr_expect_str_eq(field(form, "ContentVariables"),
                     "{\"1\":\"Marcus\",\"2\":\"2026-02-20\",\"3\":\"" REF
                     "\"}");
    cr_expect_null(json_object_get(form, "Body"));
    json_decref(form);
    fx_release(&f);
}

Test(twilio, applies_only_to_a_booked_caller_with_a_phone)
{
    struct fx f;
    fx_init(&f, NULL);
    json_t *call = json_object_get(f.job, "call");
    json_object_del(json_object_get(call, "customer"), "phone");
    cr_expect_not(sms()->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, NULL);
    json_object_del(json_object_get(f.job, "call"), "appointment");
    cr_expect_not(sms()->applies(&f.ctx));
    fx_release(&f);
}

Test(twilio, config_errors)
{
    static const char *const cases[][2] = {
        {"{\"from\":\"+15017122661\"}", "config_error: account_sid"},
        {"{\"account_sid\":\"AC123\",\"from\":\"+15017122661\"}",
         "config_error: account_sid"},
        {"{\"account_sid\":\"" ACX "\"}", "config_error: set from"},
        {"{\"account_sid\":\"" ACX "\",\"messaging_service_sid\":\"MG1\"}",
         "config_error: messaging_service_sid"},
        {"{\"account_sid\":\"" ACX "\",\"api_key_sid\":\"AC1\","
         "\"from\":\"+15017122661\"}",
         "config_error: api_key_sid"},
        {"{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
         "\"channel\":\"fax\"}",
         "config_error: channel"},
        {"{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
         "\"content_sid\":\"" HX "\",\"content_variables\":{\"1\":\"x\"}}",
         "config_error: one of content_variables must hold {{sync_ref}}"},
        {"{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
         "\"content_sid\":\"HX1\"}",
         "config_error: content_sid"},
        {"{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
         "\"status_callback\":\"ftp://x\"}",
         "config_error: status_callback"},
        {"{\"account_sid\":\"" ACX "\",\"from\":\"+15017122661\","
         "\"body_template\":42}",
         "config_error: body_template"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, cases[i][0]);
        fx_step(&f, false);
        build_fails(&f, cases[i][1]);
        fx_release(&f);
    }
    struct fx f;
    fx_init(&f, NULL);
    f.creds.api_key = NULL;
    fx_step(&f, false);
    build_fails(&f, "no_credentials:");
    fx_release(&f);
}

Test(twilio, reconcile_finds_the_message_by_its_reference)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_step(&f, true);
    build(&f);
    cr_expect_str_eq(f.rq.method, "GET");
    cr_expect_str_eq(f.rq.url, BASE PATH "?To=%2B14155550123&From="
                                          "%2B15017122661&PageSize=50");
    expect_basic(&f.rq, ACX, TOKEN);
    /* Another job's message to the same number, then ours. */
    answer(&f, 200,
           "{\"messages\":["
           MESSAGE("\"+14155550123\"", "\"+15017122661\"",
                   "\"Ref: ffff0000 other\"") ","
           "{\"sid\":\"SMours\",\"to\":\"+14155550123\",\"from\":"
           "\"+15017122661\",\"direction\":\"outbound-api\",\"status\":"
           "\"queued\",\"date_sent\":null,\"body\":\"Hi Marcus ... Ref: "
           REF "\"}],\"next_page_uri\":null,\"page\":0,\"page_size\":50}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "message_sid")),
                     "SMours");
    fx_release(&f);
}

Test(twilio, reconcile_pages_then_sends)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_step(&f, true);
    const char *next = "/2010-04-01/Accounts/" ACX "/Messages.json?To="
                       "%2B14155550123&PageSize=50&Page=1&PageToken=PA50";
    for (int page = 0; page < 3; page++) {
        build(&f);
        cr_expect_str_eq(f.rq.method, "GET");
        if (page > 0)
            cr_expect_str_eq(f.rq.url + strlen(BASE), next);
        char *body = xasprintf(
            "{\"messages\":[{\"sid\":\"SM1\",\"to\":\"+14155550123\","
            "\"from\":\"+15017122661\",\"body\":\"Ref: %s\"},"
            /* inbound from the customer, mentioning our ref: not ours */
            "{\"sid\":\"SM2\",\"to\":\"+14155550123\",\"from\":"
            "\"+15017122661\",\"direction\":\"inbound\",\"body\":\"" REF
            "\"}],\"next_page_uri\":\"%s\"}",
            "00000000", next);
        answer(&f, 200, body);
        free(body);
        cr_assert_eq(f.res.outcome, PROV_NEXT);
    }
    build(&f);
    cr_expect_str_eq(f.rq.method, "POST");
    fx_release(&f);
}

Test(twilio, errors_are_classified)
{
    struct fx f;
    fx_init(&f, NULL);
    fx_step(&f, false);
    build(&f);
    answer(&f, 400, "{\"code\":21211,\"message\":\"The 'To' number 5551234 "
                    "is not a valid phone number.\",\"more_info\":"
                    "\"https://www.twilio.com/docs/errors/21211\","
                    "\"status\":400}");
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "twilio_21211");
    cr_expect_str_eq(f.res.message,
                     "The 'To' number 5551234 is not a valid phone number.");
    answer(&f, 429, "{\"code\":20429,\"message\":\"Too Many Requests\","
                    "\"more_info\":\"https://www.twilio.com/docs/errors/"
                    "20429\",\"status\":429}");
    cr_expect_eq(f.res.outcome, PROV_RATE_LIMITED);
    answer(&f, 503, "{\"code\":20429,\"message\":\"Too Many Requests\"}");
    cr_expect_eq(f.res.outcome, PROV_RATE_LIMITED);
    answer(&f, 401, "{\"code\":20003,\"detail\":\"Your AccountSid or "
                    "AuthToken was incorrect.\",\"message\":\"Authenticate\","
                    "\"more_info\":\"https://www.twilio.com/docs/errors/"
                    "20003\",\"status\":401}");
    cr_expect_eq(f.res.outcome, PROV_AUTH);
    answer(&f, 500, "{\"code\":20500,\"message\":\"Internal Server Error\"}");
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    answer(&f, 0, NULL);
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    answer(&f, 201, "not json");
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    cr_expect_str_eq(f.res.code, "bad_response");
    fx_release(&f);
}

Test(twilio, ops)
{
    cr_expect_eq(prov_find("twilio"), &prov_twilio);
    cr_expect_eq(prov_twilio.steps[0].reconcile, PROV_RECONCILE_LOOKUP);
    cr_expect_str_eq(prov_twilio.rate_scope, "account_sid");
    cr_expect_eq(prov_twilio.rate.requests, 10);
    cr_expect_eq(prov_twilio.rate.per_ms, 1000);
}

/* ---- Probe (callsyncctl connections test) ------------------------------ */

static int probe_build(struct fx *f, struct cs_err *err)
{
    prov_request_release(&f->rq);
    cr_assert_not_null(prov_twilio.probe);
    return prov_twilio.probe->build(&f->ctx, &f->rq, err);
}

static void probe_answer(struct fx *f, int status, const char *body)
{
    prov_result_release(&f->res);
    f->res.retry_after_ms = -1;
    struct prov_response rsp = {status, 0, NULL, body, strlen(body)};
    prov_twilio.probe->parse(&f->ctx, &rsp, &f->res);
}

#define ACCOUNT_JSON(status)                                                 \
    "{\"auth_token\":\"redacted\",\"date_created\":\"Thu, 30 Jul 2015 "     \
    "20:00:00 +0000\",\"friendly_name\":\"friendly_name\","                  \
    "\"owner_account_sid\":\"" ACX "\",\"sid\":\"" ACX "\",\"status\":\""    \
    status "\",\"type\":\"Full\",\"uri\":\"/2010-04-01/Accounts/" ACX        \
    ".json\"}"

Test(twilio_probe, fetches_the_account_with_the_auth_token)
{
    struct fx f;
    fx_init(&f, NULL);
    struct cs_err err = {0};
    cr_assert_eq(probe_build(&f, &err), 0, "%s", err.msg);
    cr_expect_str_eq(f.rq.method, "GET");
    cr_expect_str_eq(f.rq.url, BASE "/2010-04-01/Accounts/" ACX ".json");
    cr_expect_null(f.rq.body);
    const char *auth = hdr(&f.rq, "Authorization");
    cr_assert_not_null(auth);
    cr_expect(strncmp(auth, "Basic ", 6) == 0);
    probe_answer(&f, 200, ACCOUNT_JSON("active"));
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "account_sid")), ACX);
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "friendly_name")),
                     "friendly_name");
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "from")),
                     "+15017122661");
    probe_answer(&f, 200, ACCOUNT_JSON("suspended"));
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "account_not_active");
    probe_answer(&f, 401, "{\"code\":20003,\"message\":\"Authenticate\","
                          "\"more_info\":\"https://www.twilio.com/docs/"
                          "errors/20003\",\"status\":401}");
    cr_expect_eq(f.res.outcome, PROV_AUTH);
    cr_expect_str_eq(f.res.code, "twilio_20003");
    fx_release(&f);
}

Test(twilio_probe, api_key_reads_the_message_list)
{
    struct fx f;
    fx_init(&f, "{\"account_sid\":\"" ACX "\",\"api_key_sid\":\"" SK "\","
                "\"messaging_service_sid\":\"" MG "\"}");
    struct cs_err err = {0};
    cr_assert_eq(probe_build(&f, &err), 0, "%s", err.msg);
    cr_expect_str_eq(f.rq.url, BASE PATH "?PageSize=1");
    probe_answer(&f, 200, "{\"messages\":[],\"page\":0,\"page_size\":1,"
                          "\"next_page_uri\":null}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect(json_is_true(json_object_get(f.res.value,
                                           "messages_readable")));
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "api_key_sid")), SK);
    fx_release(&f);
}

Test(twilio_probe, config_errors_before_any_request)
{
    struct fx f;
    fx_init(&f, "{\"account_sid\":\"AC12\",\"from\":\"+15017122661\"}");
    struct cs_err err = {0};
    cr_expect_eq(probe_build(&f, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "account_sid"), "%s", err.msg);
    json_decref(f.config);
    f.config = jparse("{\"account_sid\":\"" ACX "\"}");
    f.ctx.config = f.config;
    cr_expect_eq(probe_build(&f, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "messaging_service_sid"), "%s", err.msg);
    fx_release(&f);
}
