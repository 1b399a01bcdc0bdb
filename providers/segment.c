/*
 * segment.c - Segment (Twilio Segment) as a destination: the call as a
 * Track event ("Call Synced" unless config.event_name says otherwise) on
 * the HTTP Tracking API, and optionally an Identify of the caller first
 * (seed 004's analytics pipeline).
 *
 * Docs followed: Segment's HTTP API source page (POST /v1/track and
 * /v1/identify, Basic auth with the source's write key as the user name
 * and no password, Content-Type application/json, 32 KB per call, 200 for
 * everything but oversized or invalid JSON, which is 400; userId and/or
 * anonymousId required; messageId under 100 characters), the duplicate
 * data guide (Segment drops a message whose messageId it has seen within
 * about 24 hours, across all sources), the regional guide (EU workspaces
 * ingest at events.eu1.segmentapis.com) and Product Limits (1,000 events
 * per second per workspace before Segment queues), plus seed 004.
 *
 * Both steps carry messageId "<job_id>:<step>", which is the idempotency
 * key Segment honours: a step repeated after an unknown outcome sends the
 * same messageId and Segment keeps one. The window is about a day, so a
 * job retried for longer (CALLSYNC_RETRY_POLICY max_age is 48 h by
 * default) may be counted twice by Segment; the README says so.
 *
 * The Tracking API validates almost nothing: it answers 200 to a write
 * key it does not know and drops the events (so a bad key cannot park the
 * connection; a 401, should Segment ever send one, does). 400 (too large,
 * invalid JSON, no user) is permanent; 408, 425, 429 and 5xx retry.
 *
 * The event: userId from config.user_id (a template over prov_data_root,
 * e.g. "{{customer_phone}}"), else the caller's email, else the phone;
 * without one, anonymousId = the call id. timestamp = when the call
 * ended (else started), so the event lands at the call's time. Properties:
 * call_id, source, direction, outcome, summary, sentiment, duration_s,
 * started_at, ended_at, recording_url, agent_id, customer_name,
 * appointment, analysis, the transcript only with
 * config.include_transcript, and config.field_mappings onto properties.
 * Identify traits: name, firstName, lastName, email, phone, address
 * {street, city, state}. A message over 32 KB loses the transcript, then
 * most of the summary; still too large is a permanent error.
 *
 * Connection config:
 *   event_name ("Call Synced"), identify (false), user_id (template),
 *   include_transcript (false), field_mappings (onto properties),
 *   region ("us" | "eu"), workspace_id (the limiter's key: Segment's
 *   ingestion limit is per workspace)
 */
#include "prov.h"
#include "crypto.h"
#include "mapping.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEG_US_URL "https://api.segment.io"
#define SEG_EU_URL "https://events.eu1.segmentapis.com"
#define SEG_MAX_BYTES 32000 /* "32KB or smaller" per call, with headroom */
#define SEG_SUMMARY_MAX 4000
#define SEG_SUMMARY_SHORT 1000
#define SEG_TRANSCRIPT_MAX 16000

static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
    return s && *s ? s : NULL;
}

static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

static void set_cut(json_t *o, const char *key, const char *s, size_t max)
{
    if (!s)
        return;
    json_object_set_new(o, key, json_stringn(s, utf8_cut(s, max)));
}

static void set_copy(json_t *o, const char *key, const json_t *v)
{
    if (v && !json_is_null(v))
        json_object_set_new(o, key, json_deep_copy(v));
}

/* userId (xmalloc'd), or NULL when the call names nobody. */
static char *user_id(const struct prov_ctx *ctx, struct cs_err *err,
                     bool *failed)
{
    *failed = false;
    const json_t *tpl = json_object_get(ctx->config, "user_id");
    if (json_is_string(tpl)) {
        json_t *root = prov_data_root(ctx);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "%s", "config.user_id");
            *failed = true;
            return NULL;
        }
        char *s = json_is_string(v) && json_string_length(v)
                      ? xstrdup(json_string_value(v))
                      : NULL;
        json_decref(v);
        if (s)
            return s;
    }
    const char *id = str_at(ctx->call, "customer.email");
    if (!id)
        id = str_at(ctx->call, "customer.phone");
    return id ? xstrdup(id) : NULL;
}

/* The common part of a message: who, when, messageId. Returns NULL with
 * err filled when the call cannot name anyone or the template fails. */
static json_t *message(const struct prov_ctx *ctx, const char *step,
                       struct cs_err *err)
{
    bool failed;
    char *uid = user_id(ctx, err, &failed);
    if (failed)
        return NULL;
    json_t *m = json_object();
    const char *call_id = str_at(ctx->call, "call_id");
    if (uid)
        json_object_set_new(m, "userId", json_string(uid));
    else if (call_id)
        json_object_set_new(m, "anonymousId", json_string(call_id));
    free(uid);
    if (!json_object_get(m, "userId") && !json_object_get(m, "anonymousId")) {
        json_decref(m);
        cs_err_set(err, CS_EINVAL, "call.customer",
                   "no_user: the call has no email, phone or call id for "
                   "userId or anonymousId");
        return NULL;
    }
    const char *job_id = json_string_value(json_object_get(ctx->job,
                                                           "job_id"));
    char mid[96];
    snprintf(mid, sizeof(mid), "%.64s:%s", job_id ? job_id : "unknown",
             step);
    json_object_set_new(m, "messageId", json_string(mid));
    const char *at = str_at(ctx->call, "ended_at");
    if (!at)
        at = str_at(ctx->call, "started_at");
    if (at)
        json_object_set_new(m, "timestamp", json_string(at));
    json_object_set_new(m, "context",
                        json_pack("{s:{s:s}}", "library", "name",
                                  "callsync"));
    return m;
}

static json_t *properties(const struct prov_ctx *ctx, size_t summary_max,
                          bool transcript, struct cs_err *err)
{
    const json_t *c = ctx->call;
    json_t *p = json_object();
    static const char *const keys[] = {
        "call_id",  "source",     "direction",  "outcome",
        "sentiment", "duration_s", "started_at", "ended_at",
        "recording_url",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++)
        set_copy(p, keys[i], json_object_get(c, keys[i]));
    set_cut(p, "summary", str_at(c, "summary"), summary_max);
    set_copy(p, "agent_id", json_object_get(ctx->job, "agent_id"));
    set_copy(p, "customer_name", map_path(c, "customer.name"));
    if (json_is_object(json_object_get(c, "appointment")))
        set_copy(p, "appointment", json_object_get(c, "appointment"));
    if (json_is_object(json_object_get(c, "analysis")))
        set_copy(p, "analysis", json_object_get(c, "analysis"));
    if (transcript)
        set_cut(p, "transcript", str_at(c, "transcript"),
                SEG_TRANSCRIPT_MAX);
    const json_t *maps = json_object_get(ctx->config, "field_mappings");
    if (maps && !json_is_null(maps)) {
        json_t *root = prov_data_root(ctx);
        int rc = map_apply(maps, root, p, err);
        json_decref(root);
        if (rc < 0) {
            json_decref(p);
            return NULL;
        }
    }
    return p;
}

static json_t *traits(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    json_t *t = json_object();
    set_copy(t, "name", map_path(c, "customer.name"));
    set_copy(t, "firstName", map_path(c, "customer.first_name"));
    set_copy(t, "lastName", map_path(c, "customer.last_name"));
    set_copy(t, "email", map_path(c, "customer.email"));
    set_copy(t, "phone", map_path(c, "customer.phone"));
    json_t *a = json_object();
    set_copy(a, "street", map_path(c, "customer.address"));
    set_copy(a, "city", map_path(c, "customer.city"));
    set_copy(a, "state", map_path(c, "customer.state"));
    if (json_object_size(a))
        json_object_set_new(t, "address", a);
    else
        json_decref(a);
    return t;
}

static size_t encoded_size(const json_t *m)
{
    char *s = json_dumps(m, JSON_COMPACT);
    CS_ASSERT(s != NULL);
    size_t n = strlen(s);
    free(s);
    return n;
}

/* The whole Track message within 32 KB, or NULL with err. */
static json_t *track_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    json_t *m = message(ctx, "track", err);
    if (!m)
        return NULL;
    const char *ev = str_at(ctx->config, "event_name");
    json_object_set_new(m, "event", json_string(ev ? ev : "Call Synced"));
    const json_t *tr = json_object_get(ctx->config, "include_transcript");
    bool transcript = json_is_true(tr);
    /* Shrink until it fits: the transcript goes first, then most of the
     * summary. */
    for (int pass = 0; pass < 3; pass++) {
        json_t *p = properties(ctx, pass == 2 ? SEG_SUMMARY_SHORT
                                              : SEG_SUMMARY_MAX,
                               transcript && pass == 0, err);
        if (!p) {
            json_decref(m);
            return NULL;
        }
        json_object_set_new(m, "properties", p);
        if (encoded_size(m) <= SEG_MAX_BYTES)
            return m;
    }
    json_decref(m);
    cs_err_set(err, CS_EINVAL, "properties",
               "payload_too_large: the event is over Segment's 32 KB "
               "even without the transcript (field_mappings?)");
    return NULL;
}

static json_t *identify_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    json_t *m = message(ctx, "identify", err);
    if (!m)
        return NULL;
    json_object_set_new(m, "traits", traits(ctx));
    if (encoded_size(m) > SEG_MAX_BYTES) {
        json_decref(m);
        cs_err_set(err, CS_EINVAL, "traits",
                   "payload_too_large: the identify is over Segment's "
                   "32 KB");
        return NULL;
    }
    return m;
}

static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *path, struct cs_err *err)
{
    const char *key = ctx->creds ? ctx->creds->api_key : NULL;
    if (!key || !*key)
        key = ctx->creds ? ctx->creds->access_token : NULL;
    if (!key || !*key)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no write key");
    const char *region = str_at(ctx->config, "region");
    const char *base;
    if (!region || strcasecmp(region, "us") == 0)
        base = SEG_US_URL;
    else if (strcasecmp(region, "eu") == 0)
        base = SEG_EU_URL;
    else
        return cs_err_set(err, CS_EINVAL, "config.region",
                          "config_error: region '%.20s' is not us or eu",
                          region);
    prov_request_begin(rq, ctx, "POST", base, path, NULL);
    /* Basic auth: the write key is the user name, the password empty. */
    char *user = xasprintf("%s:", key);
    char *b64 = cs_base64_encode((const unsigned char *)user, strlen(user));
    char *auth = xasprintf("Basic %s", b64);
    prov_request_header(rq, "Authorization", auth);
    memset(auth, 0, strlen(auth));
    memset(b64, 0, strlen(b64));
    memset(user, 0, strlen(user));
    free(auth);
    free(b64);
    free(user);
    return 0;
}

static int send_body(const struct prov_ctx *ctx, struct prov_request *rq,
                     const char *path, json_t *body, struct cs_err *err)
{
    if (!body)
        return CS_EINVAL;
    int rc = begin(ctx, rq, path, err);
    if (rc == 0)
        prov_request_json(rq, body);
    json_decref(body);
    return rc;
}

static bool identify_applies(const struct prov_ctx *ctx)
{
    return json_is_true(json_object_get(ctx->config, "identify"));
}

static int identify_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    return send_body(ctx, rq, "/v1/identify", identify_body(ctx, err), err);
}

static int track_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    return send_body(ctx, rq, "/v1/track", track_body(ctx, err), err);
}

/* 200 {"success": true}: done, with the messageId we sent as the
 * checkpoint. Else the shared classification, with Segment's message
 * when the body has one. */
static void seg_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                      struct prov_result *res, const char *step)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    json_t *b = prov_response_json(rsp);
    if (rsp->status >= 200 && rsp->status < 300) {
        const char *job_id = json_string_value(json_object_get(ctx->job,
                                                               "job_id"));
        char mid[96];
        snprintf(mid, sizeof(mid), "%.64s:%s", job_id ? job_id : "unknown",
                 step);
        res->outcome = PROV_DONE;
        json_decref(res->value);
        res->value = json_pack("{s:s}", "message_id", mid);
        json_decref(b);
        return;
    }
    const char *m = json_string_value(json_object_get(b, "message"));
    if (!m)
        m = json_string_value(json_object_get(b, "error"));
    if (m)
        snprintf(res->message, sizeof(res->message), "%s", m);
    else if (rsp->status == 400 && rsp->body_len && !b)
        snprintf(res->message, sizeof(res->message), "%.*s",
                 (int)(rsp->body_len < 200 ? rsp->body_len : 200),
                 rsp->body);
    const char *code = json_string_value(json_object_get(b, "code"));
    if (code)
        snprintf(res->code, sizeof(res->code), "%s", code);
    json_decref(b);
    prov_classify(rsp, res);
}

static void identify_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    seg_parse(ctx, rsp, res, "identify");
}

static void track_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    seg_parse(ctx, rsp, res, "track");
}

static const struct prov_step segment_steps[] = {
    {"identify", PROV_RECONCILE_KEY, identify_applies, identify_build,
     identify_parse},
    {"track", PROV_RECONCILE_KEY, NULL, track_build, track_parse},
};

/* 1,000 events per second per workspace (Product Limits). */
const struct prov_ops prov_segment = {
    .name = "segment",
    .steps = segment_steps,
    .nsteps = CS_ARRAY_LEN(segment_steps),
    .rate = {1000, 1000},
    .rate_scope = "workspace_id",
    .no_probe = "Segment's tracking API has no read-only call and answers "
                "200 to any write key; the source's debugger shows what "
                "arrives",
};
