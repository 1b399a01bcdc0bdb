/*
 * prov.c - what every provider shares: request building helpers, the
 * common error classification, and the job marker. See prov.h.
 */
#define _GNU_SOURCE
#include "prov.h"

#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void prov_request_header(struct prov_request *rq, const char *name,
                         const char *value)
{
    CS_ASSERT(rq->nheaders < PROV_MAX_HEADERS);
    rq->headers[rq->nheaders].name = xstrdup(name);
    rq->headers[rq->nheaders].value = xstrdup(value);
    rq->nheaders++;
}

void prov_request_json(struct prov_request *rq, const json_t *body)
{
    free(rq->body);
    rq->body = json_dumps(body, JSON_COMPACT);
    CS_ASSERT(rq->body != NULL);
    rq->body_len = strlen(rq->body);
    prov_request_header(rq, "Content-Type", "application/json");
}

void prov_request_release(struct prov_request *rq)
{
    free(rq->url);
    for (size_t i = 0; i < rq->nheaders; i++) {
        free(rq->headers[i].name);
        free(rq->headers[i].value);
    }
    free(rq->body);
    memset(rq, 0, sizeof(*rq));
}

const char *prov_response_header(const struct prov_response *r,
                                 const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* Retry-After: delta-seconds or an HTTP date (RFC 9110 10.2.3). */
static int64_t retry_after_ms(const char *v, int64_t now_ms)
{
    if (!v || !*v)
        return -1;
    char *end;
    long long s = strtoll(v, &end, 10);
    if (end != v && *end == '\0' && s >= 0)
        return s * 1000;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!rest || *rest)
        return -1;
    int64_t at = (int64_t)timegm(&tm) * 1000;
    return at > now_ms ? at - now_ms : 0;
}

void prov_classify(const struct prov_response *rsp, struct prov_result *res)
{
    int st = rsp->status;
    res->http_status = st;
    res->retry_after_ms = retry_after_ms(
        prov_response_header(rsp, "retry-after"), cs_now_ms());
    const char *code;
    if (st == 0) {
        res->outcome = PROV_RETRY;
        code = "network_error";
    } else if (st == 429) {
        res->outcome = PROV_RATE_LIMITED;
        code = "rate_limited";
    } else if (st == 408 || st == 425 || st >= 500) {
        res->outcome = PROV_RETRY;
        code = st >= 500 ? "server_error" : "timeout";
    } else if (st == 401) {
        res->outcome = PROV_AUTH;
        code = "unauthorized";
    } else if (st >= 400) {
        res->outcome = PROV_PERMANENT;
        code = st == 404 ? "not_found" : "rejected";
    } else {
        res->outcome = PROV_PERMANENT;
        code = "unexpected_status";
    }
    if (!res->code[0])
        snprintf(res->code, sizeof(res->code), "%s", code);
    if (!res->message[0])
        snprintf(res->message, sizeof(res->message), "HTTP %d", st);
}

void prov_job_marker(const json_t *job, char out[48])
{
    const char *id = json_string_value(json_object_get(job, "job_id"));
    snprintf(out, 48, "callsync:%.32s", id ? id : "unknown");
}

char *prov_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = xmalloc(n * 3 + 1);
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
            *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void set_copy(json_t *o, const char *key, const json_t *v)
{
    if (v && !json_is_null(v))
        json_object_set_new(o, key, json_deep_copy(v));
}

json_t *prov_data_root(const struct prov_ctx *ctx)
{
    const json_t *call = ctx->call;
    const json_t *cust = json_object_get(call, "customer");
    json_t *r = json_object();
    json_object_set_new(r, "call", call ? json_deep_copy(call)
                                        : json_object());
    json_t *job = json_object();
    set_copy(job, "job_id", json_object_get(ctx->job, "job_id"));
    set_copy(job, "agent_id", json_object_get(ctx->job, "agent_id"));
    set_copy(job, "org_id", json_object_get(ctx->job, "org_id"));
    json_object_set_new(r, "job", job);
    json_object_set_new(r, "steps", ctx->done ? json_deep_copy(ctx->done)
                                              : json_object());

    const char *name = jstr(cust, "name");
    const char *first = jstr(cust, "first_name");
    const char *last = jstr(cust, "last_name");
    if (name)
        json_object_set_new(r, "customer_name", json_string(name));
    if (first) {
        json_object_set_new(r, "customer_name_first", json_string(first));
    } else if (name) {
        size_t n = strcspn(name, " ");
        json_object_set_new(r, "customer_name_first",
                            json_stringn(name, n));
    }
    if (last) {
        json_object_set_new(r, "customer_name_last", json_string(last));
    } else if (name && strchr(name, ' ')) {
        const char *rest = strchr(name, ' ');
        while (*rest == ' ')
            rest++;
        if (*rest)
            json_object_set_new(r, "customer_name_last", json_string(rest));
    }
    static const struct {
        const char *alias, *key;
    } cust_keys[] = {
        {"customer_phone", "phone"},     {"customer_email", "email"},
        {"customer_address", "address"}, {"customer_city", "city"},
        {"customer_state", "state"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cust_keys); i++)
        set_copy(r, cust_keys[i].alias,
                 json_object_get(cust, cust_keys[i].key));
    static const struct {
        const char *alias, *key;
    } call_keys[] = {
        {"recording_url", "recording_url"},
        {"transcription", "transcript"},
        {"ai_analysis", "analysis"},
        {"source", "source"},
        {"call_id", "call_id"},
        {"call_outcome", "outcome"},
        {"call_summary", "summary"},
        {"call_sentiment", "sentiment"},
        {"duration_seconds", "duration_s"},
        {"started_at", "started_at"},
        {"ended_at", "ended_at"},
        {"appointment", "appointment"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(call_keys); i++)
        set_copy(r, call_keys[i].alias,
                 json_object_get(call, call_keys[i].key));
    return r;
}

void prov_result_release(struct prov_result *res)
{
    json_decref(res->value);
    memset(res, 0, sizeof(*res));
}

void prov_request_begin(struct prov_request *rq, const struct prov_ctx *ctx,
                        const char *method, const char *dflt,
                        const char *path, const char *token)
{
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url : dflt;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = method;
    rq->url = xasprintf("%.*s%s", (int)bl, base, path);
    if (token) {
        char *auth = xasprintf("Bearer %s", token);
        prov_request_header(rq, "Authorization", auth);
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    prov_request_header(rq, "Accept", "application/json");
}

void prov_done_id(struct prov_result *res, const char *key, const char *id)
{
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = json_pack("{s:s}", key, id);
}

void prov_fail(struct prov_result *res, enum prov_outcome o,
               const char *code, const char *fmt, ...)
{
    res->outcome = o;
    snprintf(res->code, sizeof(res->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
}

json_t *prov_response_json(const struct prov_response *rsp)
{
    if (!rsp->body || rsp->body_len == 0)
        return NULL;
    return json_loadb(rsp->body, rsp->body_len, 0, NULL);
}

void prov_error_code(const char *e, char code[48])
{
    size_t k = 0;
    for (const char *p = e; *p && k < 47; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c))
            code[k++] = (char)tolower(c);
        else if (k > 0 && code[k - 1] != '_')
            code[k++] = '_';
    }
    while (k > 0 && code[k - 1] == '_')
        k--;
    code[k] = '\0';
}
