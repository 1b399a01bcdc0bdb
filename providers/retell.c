/*
 * retell.c - outbound calls through Retell (providers.md section 1): one
 * step, "call", for jobs of kind "outbound_call", that POSTs
 * /v2/create-phone-call.
 *
 * Retell documents no idempotency for creating a call: its generated SDK
 * declares an idempotency header slot but never sets one, and the API
 * reference names none. So a timed-out request cannot be reconciled and
 * is sent again (at-least-once; the README lists the step). The job id
 * travels in metadata.callsync_job_id, which Retell stores and echoes in
 * the call's webhooks, so a duplicate call can be traced to its job.
 *
 * Rate: Retell documents no request rate for this endpoint (only a
 * concurrent-call limit per plan); we default to 20 requests per second
 * per connection, which config can override.
 *
 * Request: {"from_number", "to_number": request.phone,
 * "override_agent_id": retell_agent_id (when given), "metadata":
 * {...request.metadata, "callsync_job_id", "contact_name"},
 * "retell_llm_dynamic_variables": {"contact_name", ...request.contact_data
 * with every value as a string}} (Retell wants a string map). The
 * request's "extra" fields are not sent, except that a GoHighLevel-style
 * "name" stands in for a missing contact_name.
 */
#define _GNU_SOURCE /* strcasestr */
#include "prov.h"
#include "mapping.h"
#include "norm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RETELL_BASE "https://api.retellai.com"
#define RETELL_CALL_TIMEOUT_MS 120000 /* the SDK's default for this call */

static bool call_applies(const struct prov_ctx *ctx)
{
    const char *kind = json_string_value(json_object_get(ctx->job, "kind"));
    return kind && strcmp(kind, "outbound_call") == 0;
}

static const char *contact_name_of(const json_t *req)
{
    const char *name = json_string_value(json_object_get(req,
                                                         "contact_name"));
    if (!name || !*name)
        name = json_string_value(
            json_object_get(json_object_get(req, "extra"), "name"));
    return name && *name ? name : NULL;
}

/* Retell's dynamic variables are a string map. */
static json_t *dynamic_variables(const json_t *req, const char *name)
{
    json_t *vars = json_object();
    const json_t *cd = json_object_get(req, "contact_data");
    if (json_is_object(cd)) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)cd, key, v) {
            if (json_is_null(v))
                continue;
            char *text = map_text(v);
            json_object_set_new(vars, key, json_string(text));
            free(text);
        }
    }
    if (name)
        json_object_set_new(vars, "contact_name", json_string(name));
    return vars;
}

static int call_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    const char *key = ctx->creds ? ctx->creds->api_key : NULL;
    if (!key || !*key)
        return cs_err_set(err, CS_EINVAL, "api_key",
                          "the connection has no retell api key");
    const json_t *job = ctx->job;
    const json_t *req = json_object_get(job, "request");
    if (!json_is_object(req))
        return cs_err_set(err, CS_EINVAL, "request",
                          "the job has no outbound request");
    const char *from = json_string_value(json_object_get(job,
                                                         "from_number"));
    if (!from || !cs_phone_is_e164(from))
        return cs_err_set(err, CS_EINVAL, "from_number",
                          "missing or not an e.164 number");
    const char *to = json_string_value(json_object_get(req, "phone"));
    if (!to || !cs_phone_is_e164(to))
        return cs_err_set(err, CS_EINVAL, "request.phone",
                          "missing or not an e.164 number");
    const json_t *agent = json_object_get(job, "retell_agent_id");
    if (agent && !json_is_null(agent) &&
        (!json_is_string(agent) || !*json_string_value(agent)))
        return cs_err_set(err, CS_EINVAL, "retell_agent_id",
                          "not a non-empty string");
    const json_t *md = json_object_get(req, "metadata");
    if (md && !json_is_null(md) && !json_is_object(md))
        return cs_err_set(err, CS_EINVAL, "request.metadata",
                          "not an object");
    const char *job_id = json_string_value(json_object_get(job, "job_id"));
    const char *name = contact_name_of(req);

    json_t *meta = json_is_object(md) ? json_deep_copy(md) : json_object();
    json_object_set_new(meta, "callsync_job_id",
                        job_id ? json_string(job_id) : json_null());
    if (name)
        json_object_set_new(meta, "contact_name", json_string(name));

    json_t *body = json_object();
    json_object_set_new(body, "from_number", json_string(from));
    json_object_set_new(body, "to_number", json_string(to));
    if (json_is_string(agent))
        json_object_set(body, "override_agent_id", (json_t *)agent);
    json_object_set_new(body, "metadata", meta);
    json_t *vars = dynamic_variables(req, name);
    if (json_object_size(vars))
        json_object_set_new(body, "retell_llm_dynamic_variables", vars);
    else
        json_decref(vars);

    const char *base = ctx->base_url ? ctx->base_url : RETELL_BASE;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = "POST";
    rq->url = xasprintf("%.*s/v2/create-phone-call", (int)bl, base);
    rq->timeout_ms = RETELL_CALL_TIMEOUT_MS;
    char *auth = xasprintf("Bearer %s", key);
    prov_request_header(rq, "Authorization", auth);
    memset(auth, 0, strlen(auth));
    free(auth);
    prov_request_json(rq, body);
    json_decref(body);
    return 0;
}

static void call_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    CS_UNUSED(ctx);
    int st = rsp->status;
    json_t *b = rsp->body_len ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                              : NULL;
    if (st == 200 || st == 201) {
        const json_t *id = json_object_get(b, "call_id");
        if (!json_is_string(id)) {
            /* The call may exist; repeating it could ring twice. */
            res->outcome = PROV_PERMANENT;
            res->http_status = st;
            res->retry_after_ms = -1;
            snprintf(res->code, sizeof(res->code), "bad_response");
            snprintf(res->message, sizeof(res->message),
                     "HTTP %d without a call_id", st);
            json_decref(b);
            return;
        }
        res->outcome = PROV_DONE;
        res->http_status = st;
        res->retry_after_ms = -1;
        json_t *v = json_object();
        json_object_set(v, "call_id", (json_t *)id);
        const json_t *cs = json_object_get(b, "call_status");
        json_object_set_new(v, "call_status",
                            json_is_string(cs) ? json_deep_copy(cs)
                                               : json_null());
        res->value = v;
        json_decref(b);
        return;
    }
    const char *msg = json_string_value(json_object_get(b, "message"));
    if (!msg)
        msg = json_string_value(json_object_get(b, "error_message"));
    if (!msg)
        msg = json_string_value(json_object_get(b, "error"));
    if (msg)
        snprintf(res->message, sizeof(res->message), "HTTP %d: %.200s", st,
                 msg);
    if (st == 400 && msg &&
        (strcasestr(msg, "number") || strcasestr(msg, "phone")))
        snprintf(res->code, sizeof(res->code), "invalid_number");
    json_decref(b);
    prov_classify(rsp, res);
}

static const struct prov_step retell_steps[] = {
    {
        .name = "call",
        .reconcile = PROV_RECONCILE_NONE,
        .applies = call_applies,
        .build = call_build,
        .parse = call_parse,
    },
};

const struct prov_ops prov_retell = {
    .name = "retell",
    .steps = retell_steps,
    .nsteps = CS_ARRAY_LEN(retell_steps),
    .rate = {20, 1000},
    .rate_scope = "connection",
    .no_probe = "outbound calls use the fleet's Retell key, not a connection",
};
