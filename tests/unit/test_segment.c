/*
 * test_segment.c - the Segment provider: the Track and Identify calls of
 * the HTTP Tracking API (endpoint per region, Basic auth with the write
 * key, messageId "<job_id>:<step>", userId / anonymousId, timestamp,
 * properties and traits), the 32 KB cap, field mappings, and the answers
 * (200 done; 400 permanent; 401 auth; 429 and 5xx retried).
 */
#include "crypto.h"
#include "prov.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JOB_ID "0123456789abcdef0123456789abcdef"
#define KEY "wk_9pZ2fQ8d0Segment"

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
        "\"customer\":{\"name\":\"Jane Smith\",\"first_name\":\"Jane\","
        "\"last_name\":\"Smith\",\"phone\":\"+14079780655\","
        "\"email\":\"jane@example.com\",\"city\":\"Orlando\","
        "\"state\":\"FL\"},"
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"summary\":\"Customer scheduled roof repair\","
        "\"sentiment\":\"positive\",\"transcript\":\"Agent: Hi\","
        "\"recording_url\":\"https://rec.example.com/r/1.wav\","
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:35:00Z\",\"duration_s\":300,"
        "\"appointment\":{\"date\":\"2026-02-20\",\"time\":\"14:00\"},"
        "\"analysis\":{\"intent\":\"appointment_booking\",\"lead_score\":87}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:s,s:o}", "job_id", JOB_ID, "provider",
                       "segment", "agent_id", "agt_1", "call", call);
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
    f->ctx.now_ms = 1771166100000LL;
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
    for (size_t i = 0; i < prov_segment.nsteps; i++)
        if (strcmp(prov_segment.steps[i].name, name) == 0)
            return &prov_segment.steps[i];
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

static json_t *build(struct fx *f, const char *name, const char *url)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = step(name)->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s: %s", name, err.field, err.msg);
    cr_expect_str_eq(f->rq.method, "POST");
    cr_expect_str_eq(f->rq.url, url);
    cr_expect_str_eq(hdr(&f->rq, "Content-Type"), "application/json");
    char *want = cs_base64_encode((const unsigned char *)KEY ":",
                                  strlen(KEY) + 1);
    char *basic = xasprintf("Basic %s", want);
    cr_expect_str_eq(hdr(&f->rq, "Authorization"), basic,
                     "the write key is the user, the password empty");
    free(basic);
    free(want);
    json_t *b = json_loadb(f->rq.body, f->rq.body_len, 0, NULL);
    cr_assert(json_is_object(b));
    return b;
}

static int build_fails(struct fx *f, const char *name, struct cs_err *err)
{
    prov_request_release(&f->rq);
    memset(err, 0, sizeof(*err));
    return step(name)->build(&f->ctx, &f->rq, err);
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* ------------------------------------------------------------------ */

Test(segment, registered_keyed_by_message_id)
{
    const struct prov_ops *ops = prov_find("segment");
    cr_assert_eq(ops, &prov_segment);
    cr_expect_eq(ops->rate.requests, 1000);
    cr_expect_eq(ops->rate.per_ms, 1000);
    cr_expect_str_eq(ops->rate_scope, "workspace_id");
    cr_expect_eq(step("track")->reconcile, PROV_RECONCILE_KEY);
    cr_expect_eq(step("identify")->reconcile, PROV_RECONCILE_KEY);
    cr_expect_null(ops->probe);
    cr_expect(strstr(ops->no_probe, "no read-only call"));
}

Test(segment, track_call_synced)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_t *b = build(&f, "track", "https://api.segment.io/v1/track");
    cr_expect_str_eq(str(b, "userId"), "jane@example.com");
    cr_expect_null(json_object_get(b, "anonymousId"));
    cr_expect_str_eq(str(b, "event"), "Call Synced");
    cr_expect_str_eq(str(b, "messageId"), JOB_ID ":track");
    cr_expect_str_eq(str(b, "timestamp"), "2026-02-15T14:35:00Z");
    json_t *p = json_object_get(b, "properties");
    json_t *want = jparse(
        "{\"call_id\":\"call_abc123\",\"source\":\"retell\","
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"sentiment\":\"positive\",\"duration_s\":300,"
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:35:00Z\","
        "\"recording_url\":\"https://rec.example.com/r/1.wav\","
        "\"summary\":\"Customer scheduled roof repair\","
        "\"agent_id\":\"agt_1\",\"customer_name\":\"Jane Smith\","
        "\"appointment\":{\"date\":\"2026-02-20\",\"time\":\"14:00\"},"
        "\"analysis\":{\"intent\":\"appointment_booking\","
        "\"lead_score\":87}}");
    cr_expect(json_equal(p, want), "%s", json_dumps(p, JSON_COMPACT));
    json_decref(want);
    json_decref(b);

    struct prov_response r = {200, 0, NULL, "{\"success\":true}", 16};
    struct prov_result res = {0};
    step("track")->parse(&f.ctx, &r, &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(str(res.value, "message_id"), JOB_ID ":track");
    prov_result_release(&res);
    fx_release(&f);
}

Test(segment, configured_event_user_transcript_mappings_region)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"event_name\":\"Phone Call Completed\",\"region\":\"eu\","
            "\"user_id\":\"{{customer_phone}}\",\"include_transcript\":true,"
            "\"field_mappings\":[{\"target\":\"lead_tier\",\"type\":"
            "\"conditional\",\"conditions\":[{\"if\":"
            "\"ai_analysis.lead_score > 80\",\"then\":\"hot\"},"
            "{\"default\":\"warm\"}]}]}");
    json_t *b = build(&f, "track",
                      "https://events.eu1.segmentapis.com/v1/track");
    cr_expect_str_eq(str(b, "event"), "Phone Call Completed");
    cr_expect_str_eq(str(b, "userId"), "+14079780655");
    json_t *p = json_object_get(b, "properties");
    cr_expect_str_eq(str(p, "transcript"), "Agent: Hi");
    cr_expect_str_eq(str(p, "lead_tier"), "hot");
    json_decref(b);
    fx_release(&f);

    fx_init(&f, base_call(), "{\"region\":\"apac\"}");
    struct cs_err err;
    cr_expect_eq(build_fails(&f, "track", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "region 'apac' is not us or eu"), "%s",
              err.msg);
    fx_release(&f);

    fx_init(&f, base_call(), NULL);
    f.ctx.base_url = "http://sb.test/segment/";
    json_decref(build(&f, "track", "http://sb.test/segment/v1/track"));
    f.creds.api_key = NULL;
    cr_expect_eq(build_fails(&f, "track", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_credentials"), "%s", err.msg);
    fx_release(&f);
}

Test(segment, anonymous_when_the_call_names_nobody)
{
    json_t *call = base_call();
    json_object_del(json_object_get(call, "customer"), "email");
    json_object_del(json_object_get(call, "customer"), "phone");
    struct fx f;
    fx_init(&f, call, NULL);
    json_t *b = build(&f, "track", "https://api.segment.io/v1/track");
    cr_expect_null(json_object_get(b, "userId"));
    cr_expect_str_eq(str(b, "anonymousId"), "call_abc123");
    json_decref(b);
    fx_release(&f);

    call = base_call();
    json_object_clear(json_object_get(call, "customer"));
    json_object_del(call, "call_id");
    fx_init(&f, call, NULL);
    struct cs_err err;
    cr_expect_eq(build_fails(&f, "track", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_user"), "%s", err.msg);
    fx_release(&f);
}

Test(segment, identify_only_when_configured)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect_not(step("identify")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, base_call(), "{\"identify\":true}");
    cr_expect(step("identify")->applies(&f.ctx));
    json_t *b = build(&f, "identify", "https://api.segment.io/v1/identify");
    cr_expect_str_eq(str(b, "messageId"), JOB_ID ":identify");
    cr_expect_str_eq(str(b, "userId"), "jane@example.com");
    json_t *want = jparse(
        "{\"name\":\"Jane Smith\",\"firstName\":\"Jane\",\"lastName\":"
        "\"Smith\",\"email\":\"jane@example.com\",\"phone\":\"+14079780655\","
        "\"address\":{\"city\":\"Orlando\",\"state\":\"FL\"}}");
    cr_expect(json_equal(json_object_get(b, "traits"), want));
    json_decref(want);
    json_decref(b);
    fx_release(&f);
}

Test(segment, stays_within_32_kb)
{
    char *big = xmalloc(60001);
    memset(big, 'x', 60000);
    big[60000] = '\0';
    /* a long transcript is cut to 16 KB and the event fits */
    json_t *call = base_call();
    json_object_set_new(call, "transcript", json_string(big));
    json_object_set_new(call, "summary", json_string(big));
    struct fx f;
    fx_init(&f, call, "{\"include_transcript\":true}");
    json_t *b = build(&f, "track", "https://api.segment.io/v1/track");
    json_t *p = json_object_get(b, "properties");
    cr_expect_eq(strlen(str(p, "transcript")), 16000);
    cr_expect_eq(strlen(str(p, "summary")), 4000);
    json_decref(b);
    fx_release(&f);

    /* with 28 KB of mapped properties: the transcript goes, then most of
     * the summary */
    call = base_call();
    json_object_set_new(call, "transcript", json_string(big));
    json_object_set_new(call, "summary", json_string(big));
    json_object_set_new(json_object_get(call, "customer"), "address",
                        json_stringn(big, 28000));
    fx_init(&f, call, "{\"include_transcript\":true,\"field_mappings\":"
                      "{\"customer_address\":\"address\"}}");
    b = build(&f, "track", "https://api.segment.io/v1/track");
    cr_expect_leq(f.rq.body_len, 32000);
    p = json_object_get(b, "properties");
    cr_expect_null(json_object_get(p, "transcript"));
    cr_expect_eq(strlen(str(p, "summary")), 1000);
    cr_expect_eq(strlen(str(p, "address")), 28000);
    json_decref(b);
    fx_release(&f);

    /* a mapping that alone is too big: a permanent error */
    call = base_call();
    json_object_set_new(json_object_get(call, "customer"), "address",
                        json_string(big));
    fx_init(&f, call, "{\"field_mappings\":{\"customer_address\":\"a\"}}");
    struct cs_err err;
    cr_expect_eq(build_fails(&f, "track", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "payload_too_large"), "%s", err.msg);
    fx_release(&f);
    free(big);
}

static void answer(int status, const char *body, const char *retry_after,
                   enum prov_outcome want, int64_t wait_ms,
                   const char *message)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_header h = {(char *)"retry-after", (char *)retry_after};
    struct prov_response r = {status, retry_after ? 1 : 0, &h, body,
                              body ? strlen(body) : 0};
    struct prov_result res = {0};
    res.retry_after_ms = -1;
    step("track")->parse(&f.ctx, &r, &res);
    cr_expect_eq(res.outcome, want, "%d: %d", status, res.outcome);
    if (wait_ms)
        cr_expect_eq(res.retry_after_ms, wait_ms);
    if (message)
        cr_expect_str_eq(res.message, message);
    prov_result_release(&res);
    fx_release(&f);
}

Test(segment, answers)
{
    answer(200, "", NULL, PROV_DONE, 0, NULL);
    answer(400, "{\"success\":false,\"code\":\"no_user_anon_id\","
                "\"message\":\"a userId or an anonymousId is required\"}",
           NULL, PROV_PERMANENT, 0, "a userId or an anonymousId is required");
    answer(400, "Payload too large", NULL, PROV_PERMANENT, 0,
           "Payload too large");
    answer(401, "", NULL, PROV_AUTH, 0, NULL);
    answer(429, "", "3", PROV_RATE_LIMITED, 3000, NULL);
    answer(502, "", NULL, PROV_RETRY, 0, NULL);
    answer(0, NULL, NULL, PROV_RETRY, 0, NULL);
}
