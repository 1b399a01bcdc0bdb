/*
 * cal_support.h - helpers for the calendar providers' unit tests: a job
 * with a booked appointment, a context around it, answers to feed the
 * parsers, and looks into built requests. Header-only; include it from
 * one test file each.
 */
#ifndef CS_TESTS_CAL_SUPPORT_H
#define CS_TESTS_CAL_SUPPORT_H

#include "calendar.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define CT_JOB_ID "0123456789abcdef0123456789abcdef"

struct ct {
    json_t *job;
    json_t *config;
    json_t *scratch;
    json_t *done;
    struct prov_creds creds;
    struct prov_ctx ctx;
    struct prov_request rq;
};

/* A job whose call booked Friday 15 March 2030, 14:00 in Chicago (19:00
 * UTC), 60 minutes; now is 1 March 2030. */
static inline void ct_init(struct ct *t, const char *config_json)
{
    memset(t, 0, sizeof(*t));
    t->job = json_pack(
        "{s:s,s:{s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s,s:i,s:s}}}",
        "job_id", CT_JOB_ID, "call", "call_id", "call_ct_1", "summary",
        "Marcus Bell booked a roof inspection.", "customer", "name",
        "Marcus Bell", "email", "marcus@example.org", "phone", "+13125550187",
        "appointment", "date", "2030-03-15", "time", "14:00", "timezone",
        "America/Chicago", "duration_min", 60, "service_type",
        "roof_inspection");
    json_error_t je;
    t->config = json_loads(config_json, 0, &je);
    cr_assert(t->config, "bad config: %s", je.text);
    t->scratch = json_object();
    t->done = json_object();
    t->creds.access_token = "tok_test_1";
    t->ctx.job = t->job;
    t->ctx.call = json_object_get(t->job, "call");
    t->ctx.config = t->config;
    t->ctx.creds = &t->creds;
    t->ctx.done = t->done;
    t->ctx.scratch = t->scratch;
    t->ctx.idempotency_key = CT_JOB_ID ":appointment";
    t->ctx.now_ms = 1898553600000LL; /* 2030-03-01T00:00:00Z */
}

static inline void ct_release(struct ct *t)
{
    prov_request_release(&t->rq);
    json_decref(t->job);
    json_decref(t->config);
    json_decref(t->scratch);
    json_decref(t->done);
}

static inline const char *ct_header(const struct prov_request *rq,
                                    const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static inline json_t *ct_body(const struct prov_request *rq)
{
    cr_assert(rq->body, "the request has no body");
    json_t *j = json_loadb(rq->body, rq->body_len, 0, NULL);
    cr_assert(j, "the body is not JSON: %s", rq->body);
    return j;
}

/* Build the post-call step's next request into t->rq. */
static inline void ct_build(struct ct *t, const struct prov_ops *ops)
{
    struct cs_err err = {0};
    prov_request_release(&t->rq);
    int rc = ops->steps[0].build(&t->ctx, &t->rq, &err);
    cr_assert_eq(rc, 0, "build failed: %s: %s", err.field, err.msg);
}

/* An answer with up to four "name: value" headers (lower-case names). */
struct ct_rsp {
    struct prov_header h[4];
    struct prov_response r;
};

static inline const struct prov_response *
ct_rsp(struct ct_rsp *x, int status, const char *body, const char *h1,
       const char *v1, const char *h2, const char *v2)
{
    memset(x, 0, sizeof(*x));
    x->r.status = status;
    x->r.body = body;
    x->r.body_len = body ? strlen(body) : 0;
    size_t n = 0;
    if (h1) {
        x->h[n].name = (char *)h1;
        x->h[n++].value = (char *)v1;
    }
    if (h2) {
        x->h[n].name = (char *)h2;
        x->h[n++].value = (char *)v2;
    }
    x->r.headers = x->h;
    x->r.nheaders = n;
    return &x->r;
}

/* Parse an answer to the step's last request. */
static inline void ct_parse(struct ct *t, const struct prov_ops *ops,
                            const struct prov_response *rsp,
                            struct prov_result *res)
{
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    ops->steps[0].parse(&t->ctx, rsp, res);
}

/* Build the probe's next request into t->rq (callsyncctl connections
 * test); 0, or the build's error with err filled. */
static inline int ct_probe_build(struct ct *t, const struct prov_ops *ops,
                                 struct cs_err *err)
{
    prov_request_release(&t->rq);
    cr_assert_not_null(ops->probe, "%s has no probe", ops->name);
    return ops->probe->build(&t->ctx, &t->rq, err);
}

/* Parse an answer to the probe's last request. */
static inline void ct_probe_parse(struct ct *t, const struct prov_ops *ops,
                                  const struct prov_response *rsp,
                                  struct prov_result *res)
{
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    ops->probe->parse(&t->ctx, rsp, res);
}

static inline int64_t ct_ms(const char *s)
{
    int64_t v = 0;
    cr_assert(cs_parse_rfc3339(s, &v), "bad time %s", s);
    return v;
}

static inline const char *ct_slot(const struct cal_slots *s, size_t i)
{
    static char buf[4][32];
    static int k;
    cr_assert_lt(i, s->n, "slot %zu of %zu", i, s->n);
    char *b = buf[k++ % 4];
    cs_rfc3339_s(s->v[i].start_ms, b);
    return b;
}

#endif
