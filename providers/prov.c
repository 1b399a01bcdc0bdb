/*
 * prov.c - what every provider shares: request building helpers, the
 * common error classification, and the job marker. See prov.h.
 */
#define _GNU_SOURCE
#include "prov.h"

#include <stdio.h>
#include <stdlib.h>
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

void prov_result_release(struct prov_result *res)
{
    json_decref(res->value);
    memset(res, 0, sizeof(*res));
}
