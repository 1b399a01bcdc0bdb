/*
 * zapier.c - Zapier catch hooks (providers.md section 18): one step,
 * "hook", that POSTs the call to the connection's webhook URL in seed 002's
 * payload shape.
 *
 * A catch hook has no signature and no idempotency: Zapier answers 2xx as
 * soon as the request is queued, whether or not the Zap then runs, so a
 * timed-out hook cannot be reconciled and is sent again (at-least-once;
 * the README lists the step). The request still carries
 * "Idempotency-Key: <job_id>:hook" and X-Callsync-Job-Id so a Zap can
 * filter duplicates itself.
 *
 * The URL must be https, except to 127.0.0.1, ::1 or localhost (the
 * sandbox and local tests). Any host is allowed: Zapier hands out
 * hooks.zapier.com URLs, but self-hosted relays exist. With ctx->base_url
 * set, the URL's path and query are sent to that base instead.
 *
 * Rate: Zapier documents no limit for sending to a catch hook that fits a
 * per-second limiter; we default to 10 requests per second per connection,
 * a conservative figure well under what a Zap accepts, which config can
 * override.
 */
#include "prov.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Where a URL's authority starts and ends; false if the scheme is not
 * http(s), the host is empty, or the URL holds spaces or control bytes. */
static bool url_split(const char *url, bool *https, const char **host,
                      size_t *hostlen, const char **rest)
{
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        *https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        *https = false;
        p = url + 7;
    } else {
        return false;
    }
    size_t alen = strcspn(p, "/?#");
    /* No user-info: "https://hooks.zapier.com@evil" must not read as
     * Zapier. */
    if (memchr(p, '@', alen))
        return false;
    *rest = p + alen;
    *host = p;
    if (*p == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close)
            return false;
        *hostlen = (size_t)(close - p + 1);
    } else {
        const char *colon = memchr(p, ':', alen);
        *hostlen = colon ? (size_t)(colon - p) : alen;
    }
    return *hostlen > 0;
}

static bool host_is_loopback(const char *host, size_t n)
{
    static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < CS_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && strncasecmp(host, names[i], n) == 0)
            return true;
    return false;
}

static void set_str_or_null(json_t *o, const char *key, const json_t *v)
{
    json_object_set_new(o, key, json_is_string(v) ? json_deep_copy(v)
                                                  : json_null());
}

/* Seed 002's "customer_name": the name, else first and last joined. */
static json_t *customer_name(const json_t *cust)
{
    const char *name = json_string_value(json_object_get(cust, "name"));
    if (name && *name)
        return json_string(name);
    const char *f = json_string_value(json_object_get(cust, "first_name"));
    const char *l = json_string_value(json_object_get(cust, "last_name"));
    if (!f && !l)
        return json_null();
    char *s = xasprintf("%s%s%s", f ? f : "", f && l ? " " : "", l ? l : "");
    json_t *out = json_string(s);
    free(s);
    return out;
}

static json_t *appointment_booked(const json_t *appt)
{
    static const struct {
        const char *from, *to;
    } keys[] = {
        {"title", "title"},   {"date", "date"},
        {"time", "time"},     {"timezone", "timezone"},
        {"duration_min", "durationMinutes"},
    };
    json_t *out = json_object();
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        const json_t *v = json_object_get(appt, keys[i].from);
        if (v && !json_is_null(v))
            json_object_set_new(out, keys[i].to, json_deep_copy(v));
    }
    return out;
}

/* The seed 002 payload for a call. */
static json_t *hook_payload(const json_t *job, const json_t *call,
                            int64_t now_ms)
{
    const json_t *cust = json_object_get(call, "customer");
    json_t *c = json_object();
    set_str_or_null(c, "call_id", json_object_get(call, "call_id"));
    const json_t *agent = json_object_get(call, "agent_id");
    set_str_or_null(c, "agent_id",
                    agent ? agent : json_object_get(job, "agent_id"));
    json_object_set_new(c, "customer_name", customer_name(cust));
    set_str_or_null(c, "customer_phone", json_object_get(cust, "phone"));
    set_str_or_null(c, "customer_email", json_object_get(cust, "email"));
    set_str_or_null(c, "call_outcome", json_object_get(call, "outcome"));
    set_str_or_null(c, "call_summary", json_object_get(call, "summary"));
    set_str_or_null(c, "call_sentiment", json_object_get(call, "sentiment"));
    set_str_or_null(c, "transcript", json_object_get(call, "transcript"));
    set_str_or_null(c, "recording_url",
                    json_object_get(call, "recording_url"));
    set_str_or_null(c, "started_at", json_object_get(call, "started_at"));
    set_str_or_null(c, "ended_at", json_object_get(call, "ended_at"));
    const json_t *dur = json_object_get(call, "duration_s");
    json_object_set_new(c, "duration_seconds",
                        json_is_number(dur) ? json_deep_copy(dur)
                                            : json_null());
    const json_t *appt = json_object_get(call, "appointment");
    if (json_is_object(appt))
        json_object_set_new(c, "appointment_booked",
                            appointment_booked(appt));

    char ts[32];
    cs_rfc3339_s(now_ms, ts);
    json_t *out = json_object();
    json_object_set_new(out, "action", json_string("call_completed"));
    json_object_set_new(out, "call", c);
    json_object_set_new(out, "timestamp", json_string(ts));
    return out;
}

static int hook_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    const char *url = ctx->creds ? ctx->creds->webhook_url : NULL;
    if (!url || !*url)
        return cs_err_set(err, CS_EINVAL, "webhook_url",
                          "the connection has no webhook url");
    bool https;
    const char *host, *rest;
    size_t hostlen;
    if (!url_split(url, &https, &host, &hostlen, &rest))
        return cs_err_set(err, CS_EINVAL, "webhook_url",
                          "not an http(s) url without user info");
    if (!https && !host_is_loopback(host, hostlen))
        return cs_err_set(err, CS_EINVAL, "webhook_url",
                          "must be https (plain http only to localhost)");
    if (!json_is_object(ctx->call))
        return cs_err_set(err, CS_EINVAL, "call", "the job has no call");
    const char *job_id = json_string_value(json_object_get(ctx->job,
                                                           "job_id"));

    rq->method = "POST";
    if (ctx->base_url) {
        size_t bl = strlen(ctx->base_url);
        while (bl > 0 && ctx->base_url[bl - 1] == '/')
            bl--;
        rq->url = xasprintf("%.*s%s", (int)bl, ctx->base_url,
                            *rest ? rest : "/");
    } else {
        rq->url = xstrdup(url);
    }
    json_t *body = hook_payload(ctx->job, ctx->call, ctx->now_ms);
    prov_request_json(rq, body);
    json_decref(body);
    prov_request_header(rq, "Idempotency-Key", ctx->idempotency_key);
    prov_request_header(rq, "X-Callsync-Job-Id", job_id ? job_id : "");
    return 0;
}

static void hook_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    CS_UNUSED(ctx);
    if (rsp->status >= 200 && rsp->status < 300) {
        res->outcome = PROV_DONE;
        res->http_status = rsp->status;
        res->retry_after_ms = -1;
        json_t *v = json_object();
        json_t *b = rsp->body_len
                        ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                        : NULL;
        const json_t *status = json_object_get(b, "status");
        const json_t *id = json_object_get(b, "id");
        if (json_is_string(status))
            json_object_set(v, "status", (json_t *)status);
        if (json_is_string(id))
            json_object_set(v, "id", (json_t *)id);
        json_decref(b);
        res->value = v;
        return;
    }
    if (rsp->status == 410 || rsp->status == 404) {
        snprintf(res->code, sizeof(res->code), "hook_gone");
        snprintf(res->message, sizeof(res->message),
                 "HTTP %d: the catch hook no longer exists (zap deleted or "
                 "url changed)", rsp->status);
    }
    prov_classify(rsp, res);
}

static const struct prov_step zapier_steps[] = {
    {
        .name = "hook",
        .reconcile = PROV_RECONCILE_NONE,
        .applies = NULL,
        .build = hook_build,
        .parse = hook_parse,
    },
};

const struct prov_ops prov_zapier = {
    .name = "zapier",
    .steps = zapier_steps,
    .nsteps = CS_ARRAY_LEN(zapier_steps),
    .rate = {10, 1000},
    .rate_scope = "connection",
    .no_probe = "a catch hook has no read-only call: any request to it "
                "runs the Zap",
};
