/*
 * test_sendgrid.c - the SendGrid provider: the Mail Send request (URL,
 * Bearer key, the JSON body compared as JSON: personalizations, from,
 * subject and content or a dynamic template, custom_args and the job
 * header), templates, the EU host, when the step applies, answers (202
 * with X-Message-Id, the rate-limit headers) and the error bodies
 * {"errors": [{"message", "field", "help"}]}. The step is at least once:
 * a reconciling attempt sends again, and the test says so.
 */
#include "prov.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://sendgrid.test"
#define JOB_ID "1a2b3c4d89abcdef0123456789abcdef"
#define KEY "SG.abc123.def456"
#define NOW_MS 1771166100000LL
#define CONFIG                                                               \
    "{\"from_email\":\"bookings@summitroofing.example\","                    \
    "\"from_name\":\"Summit Roofing\"}"

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
        "{s:s,s:s,s:o}", "job_id", JOB_ID, "provider", "sendgrid", "call",
        jparse("{\"call_id\":\"call_abc123\",\"summary\":\"Roof check "
               "booked.\",\"customer\":{\"name\":\"Marcus Bell\","
               "\"phone\":\"+14155550123\",\"email\":"
               "\"marcus@example.org\"},\"appointment\":{\"date\":"
               "\"2026-02-20\",\"time\":\"14:00\",\"timezone\":"
               "\"America/Chicago\",\"service_type\":\"roof inspection\"}}"));
    f->config = jparse(config ? config : CONFIG);
    f->scratch = json_object();
    f->creds.api_key = KEY;
    f->ctx.job = f->job;
    f->ctx.call = json_object_get(f->job, "call");
    f->ctx.config = f->config;
    f->ctx.creds = &f->creds;
    f->ctx.scratch = f->scratch;
    f->ctx.base_url = BASE;
    f->ctx.now_ms = NOW_MS;
    f->ctx.idempotency_key = JOB_ID ":email";
}

static void fx_release(struct fx *f)
{
    prov_request_release(&f->rq);
    prov_result_release(&f->res);
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->scratch);
}

static const struct prov_step *email(void)
{
    cr_assert_eq(prov_sendgrid.nsteps, 1);
    cr_assert_str_eq(prov_sendgrid.steps[0].name, "email");
    return &prov_sendgrid.steps[0];
}

static void build(struct fx *f)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = email()->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, 0, "build failed: %s: %s", err.field, err.msg);
}

static void build_fails(struct fx *f, const char *prefix)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    cr_assert_eq(email()->build(&f->ctx, &f->rq, &err), CS_EINVAL,
                 "build should fail with %s", prefix);
    cr_expect(strncmp(err.msg, prefix, strlen(prefix)) == 0,
              "message '%s' should start with '%s'", err.msg, prefix);
}

static void answer_h(struct fx *f, int status, const char *body,
                     const struct prov_header *h, size_t nh)
{
    prov_result_release(&f->res);
    f->res.retry_after_ms = -1;
    struct prov_response rsp = {status, nh, h, body,
                                body ? strlen(body) : 0};
    email()->parse(&f->ctx, &rsp, &f->res);
}

static const char *hdr(const struct prov_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static json_t *body_of(const struct fx *f)
{
    cr_assert_str_eq(hdr(&f->rq, "Content-Type"), "application/json");
    json_t *b = json_loadb(f->rq.body, f->rq.body_len, 0, NULL);
    cr_assert(b, "body is not JSON: %s", f->rq.body);
    return b;
}

static void expect_json(json_t *got, const char *want)
{
    json_t *w = jparse(want);
    char *gs = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    char *ws = json_dumps(w, JSON_SORT_KEYS | JSON_COMPACT);
    cr_expect(json_equal(got, w), "body\n  got  %s\n  want %s", gs, ws);
    free(gs);
    free(ws);
    json_decref(w);
}

/* ------------------------------------------------------------------ */

Test(sendgrid, sends_the_confirmation)
{
    struct fx f;
    fx_init(&f, NULL);
    cr_expect(email()->applies(&f.ctx));
    build(&f);
    cr_expect_str_eq(f.rq.method, "POST");
    cr_expect_str_eq(f.rq.url, BASE "/v3/mail/send");
    cr_expect_str_eq(hdr(&f.rq, "Authorization"), "Bearer " KEY);
    json_t *b = body_of(&f);
    expect_json(b,
                "{\"personalizations\":[{\"to\":[{\"email\":"
                "\"marcus@example.org\",\"name\":\"Marcus Bell\"}]}],"
                "\"from\":{\"email\":\"bookings@summitroofing.example\","
                "\"name\":\"Summit Roofing\"},"
                "\"custom_args\":{\"callsync_job_id\":\"" JOB_ID "\","
                "\"callsync_call_id\":\"call_abc123\"},"
                "\"headers\":{\"X-Callsync-Job-Id\":\"" JOB_ID "\"},"
                "\"subject\":\"Your roof inspection appointment is "
                "confirmed\","
                "\"content\":[{\"type\":\"text/plain\",\"value\":"
                "\"Hi Marcus,\\n\\nyour appointment on 2026-02-20 at 14:00 "
                "(America/Chicago) is confirmed.\\n\\nWhat we noted: Roof "
                "check booked.\\n\\nReference: 1a2b3c4d\\n\"}]}");
    json_decref(b);

    struct prov_header h[] = {
        {(char *)"x-message-id", (char *)"W86EgYT6SQKk0lRflfLRsA"},
        {(char *)"x-ratelimit-remaining", (char *)"599"},
    };
    answer_h(&f, 202, "", h, 2);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "message_id")),
                     "W86EgYT6SQKk0lRflfLRsA");
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "status")),
                     "queued");
    cr_expect_eq(f.res.pause_ms, 0);
    fx_release(&f);
}

Test(sendgrid, templates_and_options)
{
    struct fx f;
    fx_init(&f, "{\"from_email\":\"b@summit.example\",\"reply_to\":"
                "\"office@summit.example\",\"region\":\"eu\","
                "\"categories\":[\"confirmation\"],"
                "\"subject_template\":\"{{customer_name_first}}, you're "
                "booked\",\"text_template\":\"See you on "
                "{{appointment.date}} (ref {{sync_ref}})\","
                "\"html_template\":"
                "\"<p>See you on {{appointment.date}}</p>\"}");
    /* base_url overrides the region's host only in tests */
    f.ctx.base_url = NULL;
    build(&f);
    cr_expect_str_eq(f.rq.url, "https://api.eu.sendgrid.com/v3/mail/send");
    json_t *b = body_of(&f);
    cr_expect_str_eq(json_string_value(json_object_get(b, "subject")),
                     "Marcus, you're booked");
    expect_json(json_object_get(b, "content"),
                "[{\"type\":\"text/plain\",\"value\":\"See you on "
                "2026-02-20 (ref 1a2b3c4d)\"},{\"type\":\"text/html\","
                "\"value\":\"<p>See you on 2026-02-20</p>\"}]");
    expect_json(json_object_get(b, "reply_to"),
                "{\"email\":\"office@summit.example\"}");
    expect_json(json_object_get(b, "categories"), "[\"confirmation\"]");
    json_decref(b);
    fx_release(&f);

    fx_init(&f, "{\"from_email\":\"b@summit.example\"}");
    f.ctx.base_url = NULL;
    build(&f);
    cr_expect_str_eq(f.rq.url, "https://api.sendgrid.com/v3/mail/send");
    fx_release(&f);
}

Test(sendgrid, dynamic_template)
{
    struct fx f;
    fx_init(&f, "{\"from_email\":\"b@summit.example\",\"template_id\":"
                "\"d-13b8f94fbcae4ec6b75270d6cb59f932\"}");
    build(&f);
    json_t *b = body_of(&f);
    cr_expect_str_eq(json_string_value(json_object_get(b, "template_id")),
                     "d-13b8f94fbcae4ec6b75270d6cb59f932");
    cr_expect_null(json_object_get(b, "subject"));
    cr_expect_null(json_object_get(b, "content"));
    json_t *data = json_object_get(
        json_array_get(json_object_get(b, "personalizations"), 0),
        "dynamic_template_data");
    cr_expect_str_eq(json_string_value(json_object_get(data,
                                                       "customer_name")),
                     "Marcus Bell");
    cr_expect_str_eq(json_string_value(json_object_get(data, "sync_ref")),
                     "1a2b3c4d");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(data, "appointment"), "date")),
                     "2026-02-20");
    json_decref(b);
    fx_release(&f);

    fx_init(&f, "{\"from_email\":\"b@summit.example\",\"template_id\":"
                "\"d-13b8f94fbcae4ec6b75270d6cb59f932\","
                "\"dynamic_template_data\":{\"first\":"
                "\"{{customer_name_first}}\",\"when\":{\"day\":"
                "\"{{appointment.date}}\"}}}");
    build(&f);
    b = body_of(&f);
    expect_json(json_object_get(
                    json_array_get(json_object_get(b, "personalizations"), 0),
                    "dynamic_template_data"),
                "{\"first\":\"Marcus\",\"when\":{\"day\":\"2026-02-20\"}}");
    json_decref(b);
    fx_release(&f);
}

Test(sendgrid, applies)
{
    struct fx f;
    fx_init(&f, NULL);
    json_object_del(json_object_get(f.job, "call"), "appointment");
    cr_expect_not(email()->applies(&f.ctx));
    json_object_set_new(f.config, "send_without_appointment", json_true());
    cr_expect(email()->applies(&f.ctx));
    /* Without an appointment the text says so instead of a date. */
    build(&f);
    json_t *b = body_of(&f);
    const char *text = json_string_value(json_object_get(
        json_array_get(json_object_get(b, "content"), 0), "value"));
    cr_expect(strstr(text, "as agreed on the phone"), "%s", text);
    json_decref(b);
    json_object_del(json_object_get(json_object_get(f.job, "call"),
                                    "customer"),
                    "email");
    cr_expect_not(email()->applies(&f.ctx));
    fx_release(&f);
}

Test(sendgrid, config_errors)
{
    static const char *const cases[][2] = {
        {"{}", "config_error: from_email"},
        {"{\"from_email\":\"not-an-address\"}", "config_error: from_email"},
        {"{\"from_email\":\"b@x.example\",\"reply_to\":\"nope\"}",
         "config_error: reply_to"},
        {"{\"from_email\":\"b@x.example\",\"categories\":\"one\"}",
         "config_error: categories"},
        {"{\"from_email\":\"b@x.example\",\"region\":\"mars\"}",
         "config_error: region"},
        {"{\"from_email\":\"b@x.example\",\"subject_template\":7}",
         "config_error: subject_template"},
        {"{\"from_email\":\"b@x.example\",\"template_id\":\"d-1\","
         "\"dynamic_template_data\":[1]}",
         "config_error: dynamic_template_data"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, cases[i][0]);
        build_fails(&f, cases[i][1]);
        fx_release(&f);
    }
    struct fx f;
    fx_init(&f, NULL);
    json_object_set_new(json_object_get(json_object_get(f.job, "call"),
                                        "customer"),
                        "email", json_string("marcus at example"));
    build_fails(&f, "mapping_error:");
    f.creds.api_key = NULL;
    build_fails(&f, "no_credentials:");
    fx_release(&f);
}

Test(sendgrid, at_least_once_a_reconciling_attempt_sends_again)
{
    cr_expect_eq(email()->reconcile, PROV_RECONCILE_NONE);
    struct fx f;
    fx_init(&f, NULL);
    build(&f);
    char *first = xstrndup(f.rq.body, f.rq.body_len);
    f.ctx.reconcile = true;
    build(&f);
    /* No look-up exists: the same message is sent again. */
    cr_expect_str_eq(f.rq.method, "POST");
    cr_expect_str_eq(f.rq.body, first);
    free(first);
    fx_release(&f);
}

Test(sendgrid, rate_limit_headers_and_errors)
{
    struct fx f;
    fx_init(&f, NULL);
    build(&f);
    char reset[32];
    snprintf(reset, sizeof(reset), "%lld", NOW_MS / 1000 + 3);
    struct prov_header spent[] = {
        {(char *)"x-ratelimit-limit", (char *)"600"},
        {(char *)"x-ratelimit-remaining", (char *)"0"},
        {(char *)"x-ratelimit-reset", reset},
    };
    answer_h(&f, 202, "", spent, 3);
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect_eq(f.res.pause_ms, 3000 - NOW_MS % 1000);

    answer_h(&f, 429, "{\"errors\":[{\"field\":null,\"message\":"
                      "\"too many requests\"}]}",
             spent, 3);
    cr_expect_eq(f.res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(f.res.retry_after_ms, 3000 - NOW_MS % 1000);
    cr_expect_str_eq(f.res.message, "too many requests");

    answer_h(&f, 400, "{\"errors\":[{\"message\":\"The from object must be "
                      "provided for every email send.\",\"field\":\"from\","
                      "\"help\":\"http://sendgrid.com/docs/API_Reference/"
                      "Web_API_v3/Mail/errors.html#message.from\"},"
                      "{\"message\":\"Does not contain a valid address.\","
                      "\"field\":\"personalizations.0.to.0.email\","
                      "\"help\":null}]}",
             NULL, 0);
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.message,
                     "from: The from object must be provided for every "
                     "email send.; personalizations.0.to.0.email: Does not "
                     "contain a valid address.");

    answer_h(&f, 401, "{\"errors\":[{\"field\":null,\"message\":\"The "
                      "provided authorization grant is invalid, expired, "
                      "or revoked\"}]}",
             NULL, 0);
    cr_expect_eq(f.res.outcome, PROV_AUTH);

    answer_h(&f, 403, "{\"errors\":[{\"message\":\"The from address does not "
                      "match a verified Sender Identity.\",\"field\":"
                      "\"from\",\"help\":null}]}",
             NULL, 0);
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "forbidden");

    answer_h(&f, 500, "", NULL, 0);
    cr_expect_eq(f.res.outcome, PROV_RETRY);
    answer_h(&f, 0, NULL, NULL, 0);
    cr_expect_eq(f.res.outcome, PROV_RETRY);

    /* 200: sandbox mode validated it without sending. */
    answer_h(&f, 200, "", NULL, 0);
    cr_expect_eq(f.res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(f.res.value,
                                                       "status")),
                     "validated");
    fx_release(&f);
}

Test(sendgrid, ops)
{
    cr_expect_eq(prov_find("sendgrid"), &prov_sendgrid);
    cr_expect_eq(prov_sendgrid.rate.requests, 100);
    cr_expect_eq(prov_sendgrid.rate.per_ms, 1000);
}

/* ---- Probe (callsyncctl connections test) ------------------------------ */

static void probe_answer(struct fx *f, int status, const char *body)
{
    prov_result_release(&f->res);
    f->res.retry_after_ms = -1;
    struct prov_response rsp = {status, 0, NULL, body, strlen(body)};
    prov_sendgrid.probe->parse(&f->ctx, &rsp, &f->res);
}

Test(sendgrid_probe, lists_the_key_scopes_and_wants_mail_send)
{
    struct fx f;
    fx_init(&f, NULL);
    cr_assert_not_null(prov_sendgrid.probe);
    struct cs_err err = {0};
    cr_assert_eq(prov_sendgrid.probe->build(&f.ctx, &f.rq, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(f.rq.method, "GET");
    cr_expect_str_eq(f.rq.url, BASE "/v3/scopes");
    cr_expect_str_eq(hdr(&f.rq, "Authorization"), "Bearer " KEY);
    cr_expect_null(f.rq.body);
    probe_answer(&f, 200, "{\"scopes\":[\"alerts.create\",\"alerts.read\","
                          "\"mail.send\",\"templates.read\"]}");
    cr_assert_eq(f.res.outcome, PROV_DONE);
    cr_expect(json_is_true(json_object_get(f.res.value, "mail_send")));
    cr_expect_eq(json_integer_value(json_object_get(f.res.value, "scopes")),
                 4);
    probe_answer(&f, 200, "{\"scopes\":[\"alerts.read\",\"stats.read\"]}");
    cr_expect_eq(f.res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(f.res.code, "missing_scope");
    cr_expect(strstr(f.res.message, "mail.send"));
    probe_answer(&f, 401, "{\"errors\":[{\"field\":null,\"message\":"
                          "\"authorization required\"}]}");
    cr_expect_eq(f.res.outcome, PROV_AUTH);
    cr_expect_eq(f.res.http_status, 401);
    fx_release(&f);
}

Test(sendgrid_probe, eu_region_and_config_errors)
{
    struct fx f;
    fx_init(&f, "{\"from_email\":\"desk@acme.example\",\"region\":\"eu\"}");
    struct cs_err err = {0};
    f.ctx.base_url = NULL;
    cr_assert_eq(prov_sendgrid.probe->build(&f.ctx, &f.rq, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(f.rq.url, "https://api.eu.sendgrid.com/v3/scopes");
    prov_request_release(&f.rq);
    json_object_del(f.config, "from_email");
    cr_expect_eq(prov_sendgrid.probe->build(&f.ctx, &f.rq, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "from_email"), "%s", err.msg);
    fx_release(&f);
}
