/*
 * custom_rest.c - a CRM we have no module for, described by the
 * connection's config (seed 003, "Custom CRM Integration"):
 *
 *   {"api_base_url": "https://api.yourcrm.com/v1",
 *    "authentication": {"type": "bearer" | "basic" | "api_key",
 *                       "header": "X-API-Key"},      (api_key only)
 *    "endpoints": {
 *      "create_contact":     {"method": "POST", "path": "/contacts",
 *                             "headers": {"X-Tenant": "acme"},
 *                             "field_mappings": [...]},   (optional)
 *      "create_opportunity": {...}},
 *    "payload_templates": {"contact": {...}, "opportunity": {...}},
 *    "field_mappings": [...]}                             (mapping.h)
 *
 * Steps "contact" and "opportunity", each only when its endpoint is
 * configured. A step's body is its payload template rendered with
 * map_render, then the field mappings applied onto it with map_apply (an
 * endpoint's own "field_mappings" replace the top-level ones for that
 * step). Both read the same root: {"call": the call, "job": {job_id,
 * agent_id, org_id}, "steps": the checkpoints so far (so an opportunity
 * can name {{steps.contact.id}}), and seed 003's flat names: customer_name,
 * customer_name_first, customer_name_last, customer_phone, customer_email,
 * customer_address, customer_city, customer_state, recording_url,
 * transcription, ai_analysis, source, call_id, call_outcome, call_summary,
 * call_sentiment, duration_seconds, started_at, ended_at, appointment}.
 *
 * The secret: bearer and api_key use creds->api_key, else
 * creds->access_token; basic uses api_key as the user and api_secret as
 * the password. Endpoint header values may name it as {{auth.token}}
 * (rendered for headers only, never for bodies, and never logged); a
 * configured header of the same name replaces the one authentication
 * would add. Every write carries "Idempotency-Key: <job_id>:<step>", so a
 * CRM that honours it makes a retry safe, and a 409 (the key, or the
 * object, was seen) counts as done.
 */
#include "prov.h"
#include "mapping.h"

#include "crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The text of a string member, or NULL. */
static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static const char *step_endpoint_key(const char *step)
{
    return strcmp(step, "contact") == 0 ? "create_contact"
                                        : "create_opportunity";
}

static const json_t *endpoint_of(const struct prov_ctx *ctx, const char *step)
{
    const json_t *eps = json_object_get(ctx->config, "endpoints");
    const json_t *ep = json_object_get(eps, step_endpoint_key(step));
    return json_is_object(ep) ? ep : NULL;
}

static bool contact_applies(const struct prov_ctx *ctx)
{
    return endpoint_of(ctx, "contact") != NULL;
}

static bool opportunity_applies(const struct prov_ctx *ctx)
{
    return endpoint_of(ctx, "opportunity") != NULL;
}

static bool header_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static bool header_value_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return false;
    return true;
}

/* The secret and the header authentication adds; name and value are
 * xmalloc'd (value NULL when there is no authentication). */
static int auth_header(const struct prov_ctx *ctx, char **token, char **name,
                       char **value, struct cs_err *err)
{
    const json_t *auth = json_object_get(ctx->config, "authentication");
    const struct prov_creds *cr = ctx->creds;
    const char *secret = cr ? (cr->api_key ? cr->api_key : cr->access_token)
                            : NULL;
    *token = secret ? xstrdup(secret) : NULL;
    *name = *value = NULL;
    if (!auth || json_is_null(auth))
        return 0;
    const char *type = jstr(auth, "type");
    if (!type)
        return cs_err_set(err, CS_EINVAL, "authentication.type",
                          "missing (bearer, basic or api_key)");
    if (strcmp(type, "basic") == 0) {
        if (!cr || !cr->api_key)
            return cs_err_set(err, CS_EINVAL, "api_key", "basic "
                              "authentication needs a user (api_key)");
        char *pair = xasprintf("%s:%s", cr->api_key,
                               cr->api_secret ? cr->api_secret : "");
        char *b64 = cs_base64_encode((const unsigned char *)pair,
                                     strlen(pair));
        *name = xstrdup("Authorization");
        *value = xasprintf("Basic %s", b64);
        free(b64);
        free(pair);
        return 0;
    }
    if (strcmp(type, "bearer") != 0 && strcmp(type, "api_key") != 0)
        return cs_err_set(err, CS_EINVAL, "authentication.type",
                          "unknown type '%.40s' (bearer, basic or api_key)",
                          type);
    if (!secret)
        return cs_err_set(err, CS_EINVAL, "api_key", "%s authentication "
                          "needs an api key or access token", type);
    if (strcmp(type, "bearer") == 0) {
        *name = xstrdup("Authorization");
        *value = xasprintf("Bearer %s", secret);
        return 0;
    }
    const json_t *jh = json_object_get(auth, "header");
    const char *h = json_is_string(jh) ? json_string_value(jh) : "X-API-Key";
    if (!header_name_ok(h))
        return cs_err_set(err, CS_EINVAL, "authentication.header",
                          "'%.40s' is not a valid header name", h);
    *name = xstrdup(h);
    *value = xstrdup(secret);
    return 0;
}

/* Headers named by the endpoint that we set ourselves. */
static bool header_reserved(const char *name)
{
    return !strcasecmp(name, "Content-Type") ||
           !strcasecmp(name, "Content-Length") ||
           !strcasecmp(name, "Idempotency-Key") ||
           !strcasecmp(name, "X-Callsync-Job-Id") ||
           !strcasecmp(name, "Host");
}

/* The endpoint's configured headers, rendered with {{auth.token}}. */
static int endpoint_headers(const struct prov_ctx *ctx, const json_t *ep,
                            const char *epkey, const json_t *root,
                            const char *token, const char *auth_name,
                            bool *auth_overridden, struct prov_request *rq,
                            struct cs_err *err)
{
    const json_t *hs = json_object_get(ep, "headers");
    *auth_overridden = false;
    if (!hs || json_is_null(hs))
        return 0;
    char field[64];
    snprintf(field, sizeof(field), "endpoints.%s.headers", epkey);
    if (!json_is_object(hs))
        return cs_err_set(err, CS_EINVAL, field, "headers are not an object");
    CS_UNUSED(ctx);
    /* The token is visible to header templates only. */
    json_t *hroot = json_copy((json_t *)root);
    json_object_set_new(hroot, "auth", json_pack("{s:s?}", "token", token));
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)hs, key, v) {
        snprintf(field, sizeof(field), "endpoints.%s.headers.%s", epkey, key);
        if (!header_name_ok(key)) {
            rc = cs_err_set(err, CS_EINVAL, field, "not a valid header name");
            break;
        }
        if (!json_is_string(v)) {
            rc = cs_err_set(err, CS_EINVAL, field, "value is not a string");
            break;
        }
        if (header_reserved(key))
            continue;
        if (strstr(json_string_value(v), "auth.token") && !token) {
            rc = cs_err_set(err, CS_EINVAL, "api_key", "a header names "
                            "{{auth.token}} but the connection has no "
                            "api key or access token");
            break;
        }
        json_t *r = map_render(v, hroot, err);
        if (!r) {
            /* Keep map_render's message, name the header. */
            if (err)
                snprintf(err->field, sizeof(err->field), "%s", field);
            rc = CS_EINVAL;
            break;
        }
        char *text = map_text(r);
        json_decref(r);
        if (!header_value_ok(text)) {
            free(text);
            rc = cs_err_set(err, CS_EINVAL, field,
                            "value holds control characters");
            break;
        }
        if (rq->nheaders + 4 > PROV_MAX_HEADERS) {
            free(text);
            rc = cs_err_set(err, CS_EINVAL, field, "too many headers (at "
                            "most %d)", PROV_MAX_HEADERS - 4);
            break;
        }
        if (auth_name && strcasecmp(key, auth_name) == 0)
            *auth_overridden = true;
        prov_request_header(rq, key, text);
        free(text);
    }
    json_decref(hroot);
    return rc;
}

static int build_url(const struct prov_ctx *ctx, const json_t *ep,
                     const char *epkey, struct prov_request *rq,
                     struct cs_err *err)
{
    const char *base = ctx->base_url ? ctx->base_url
                                     : jstr(ctx->config, "api_base_url");
    if (!base || (strncasecmp(base, "https://", 8) != 0 &&
                  strncasecmp(base, "http://", 7) != 0))
        return cs_err_set(err, CS_EINVAL, "api_base_url",
                          "missing or not an http(s) url");
    const char *path = jstr(ep, "path");
    char field[64];
    snprintf(field, sizeof(field), "endpoints.%s.path", epkey);
    if (!path)
        path = "";
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return cs_err_set(err, CS_EINVAL, field,
                              "holds spaces or control characters");
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->url = xasprintf("%.*s%s%s", (int)bl, base,
                        *path && *path != '/' ? "/" : "", path);
    return 0;
}

static int rest_build(struct prov_ctx *ctx, const char *step,
                      struct prov_request *rq, struct cs_err *err)
{
    const json_t *ep = endpoint_of(ctx, step);
    const char *epkey = step_endpoint_key(step);
    char field[64];
    if (!ep)
        return cs_err_set(err, CS_EINVAL, "endpoints",
                          "no '%s' endpoint configured", epkey);
    const char *method = jstr(ep, "method");
    if (!method)
        method = "POST";
    if (strcasecmp(method, "POST") == 0)
        rq->method = "POST";
    else if (strcasecmp(method, "PUT") == 0)
        rq->method = "PUT";
    else if (strcasecmp(method, "PATCH") == 0)
        rq->method = "PATCH";
    else {
        snprintf(field, sizeof(field), "endpoints.%s.method", epkey);
        return cs_err_set(err, CS_EINVAL, field,
                          "'%.20s' is not POST, PUT or PATCH", method);
    }
    if (build_url(ctx, ep, epkey, rq, err) < 0)
        return CS_EINVAL;

    int rc = CS_EINVAL;
    char *token = NULL, *aname = NULL, *avalue = NULL;
    json_t *root = prov_data_root(ctx);
    json_t *body = NULL;
    if (auth_header(ctx, &token, &aname, &avalue, err) < 0)
        goto out;

    const json_t *tmpl = json_object_get(
        json_object_get(ctx->config, "payload_templates"), step);
    snprintf(field, sizeof(field), "payload_templates.%s", step);
    if (tmpl && !json_is_object(tmpl)) {
        cs_err_set(err, CS_EINVAL, field, "template is not an object");
        goto out;
    }
    body = tmpl ? map_render(tmpl, root, err) : json_object();
    if (!body) {
        /* Name the template and the position inside it. */
        if (err) {
            char full[160];
            snprintf(full, sizeof(full), "%s%s%s", field,
                     err->field[0] && err->field[0] != '[' ? "." : "",
                     err->field);
            snprintf(err->field, sizeof(err->field), "%.63s", full);
        }
        goto out;
    }
    const json_t *maps = json_object_get(ep, "field_mappings");
    if (!maps)
        maps = json_object_get(ctx->config, "field_mappings");
    if (map_apply(maps, root, body, err) < 0)
        goto out;

    bool overridden;
    if (endpoint_headers(ctx, ep, epkey, root, token, aname, &overridden, rq,
                         err) < 0)
        goto out;
    if (avalue && !overridden)
        prov_request_header(rq, aname, avalue);
    prov_request_json(rq, body);
    prov_request_header(rq, "Idempotency-Key", ctx->idempotency_key);
    const char *job_id = jstr(ctx->job, "job_id");
    prov_request_header(rq, "X-Callsync-Job-Id", job_id ? job_id : "");
    rc = 0;
out:
    if (avalue)
        memset(avalue, 0, strlen(avalue));
    if (token)
        memset(token, 0, strlen(token));
    free(avalue);
    free(aname);
    free(token);
    json_decref(body);
    json_decref(root);
    return rc;
}

static int contact_build(struct prov_ctx *ctx, struct prov_request *rq,
                         struct cs_err *err)
{
    return rest_build(ctx, "contact", rq, err);
}

static int opportunity_build(struct prov_ctx *ctx, struct prov_request *rq,
                             struct cs_err *err)
{
    return rest_build(ctx, "opportunity", rq, err);
}

static void rest_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    CS_UNUSED(ctx);
    int st = rsp->status;
    if ((st >= 200 && st < 300) || st == 409) {
        res->outcome = PROV_DONE;
        res->http_status = st;
        res->retry_after_ms = -1;
        json_t *v = json_object();
        if (st != 409) {
            json_t *b = rsp->body_len
                            ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                            : NULL;
            const json_t *id = json_object_get(b, "id");
            if (json_is_string(id) || json_is_integer(id))
                json_object_set(v, "id", (json_t *)id);
            json_decref(b);
        }
        json_object_set_new(v, "status", json_integer(st));
        res->value = v;
        return;
    }
    /* Carry the CRM's own message when it gives one (bodies of error
     * answers hold no secrets of ours). */
    json_t *b = rsp->body_len ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                              : NULL;
    const char *msg = jstr(b, "message");
    if (!msg)
        msg = jstr(b, "error");
    if (msg)
        snprintf(res->message, sizeof(res->message), "HTTP %d: %.200s", st,
                 msg);
    json_decref(b);
    prov_classify(rsp, res);
}

static const struct prov_step custom_rest_steps[] = {
    {
        .name = "contact",
        .reconcile = PROV_RECONCILE_KEY,
        .applies = contact_applies,
        .build = contact_build,
        .parse = rest_parse,
    },
    {
        .name = "opportunity",
        .reconcile = PROV_RECONCILE_KEY,
        .applies = opportunity_applies,
        .build = opportunity_build,
        .parse = rest_parse,
    },
};

const struct prov_ops prov_custom_rest = {
    .name = "custom_rest",
    .steps = custom_rest_steps,
    .nsteps = CS_ARRAY_LEN(custom_rest_steps),
    .rate = {10, 1000},
    .rate_scope = "connection",
    .no_probe = "a custom API has no agreed read-only call",
};
