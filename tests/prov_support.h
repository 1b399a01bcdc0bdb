/*
 * prov_support.h - what the providers' unit tests share: feeding a step an
 * answer the way the worker does, building a request that must fail, and
 * comparing a JSON body with the one expected. Header-only.
 */
#ifndef CS_TESTS_PROV_SUPPORT_H
#define CS_TESTS_PROV_SUPPORT_H

#include "prov.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PROV_TEST_MAX_HEADERS 8

/*
 * Feed st's parse an answer: status, body (NULL for none), and headers as
 * name, value pairs in ap ending with NULL. *res is zeroed first, then its
 * retry_after_ms set to retry_after (the worker passes -1: no hint yet).
 */
static inline void prov_feed_v(const struct prov_step *st,
                               struct prov_ctx *ctx, int status,
                               const char *body, struct prov_result *res,
                               int64_t retry_after, va_list ap)
{
    struct prov_header h[PROV_TEST_MAX_HEADERS];
    size_t n = 0;
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        cr_assert(n < PROV_TEST_MAX_HEADERS, "too many headers");
        h[n].name = (char *)k;
        h[n].value = va_arg(ap, char *);
        n++;
    }
    struct prov_response rsp = {
        .status = status,
        .nheaders = n,
        .headers = h,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = retry_after;
    st->parse(ctx, &rsp, res);
}

/* Build st's request, expecting no request to be kept: the return code
 * (and *err) of its build. */
static inline int prov_build_err(const struct prov_step *st,
                                 struct prov_ctx *ctx, struct cs_err *err)
{
    struct prov_request rq = {0};
    memset(err, 0, sizeof(*err));
    int rc = st->build(ctx, &rq, err);
    prov_request_release(&rq);
    return rc;
}

/* The request body equals want as JSON (key order aside). */
static inline void prov_expect_json(const char *body, const char *want)
{
    json_error_t e;
    json_t *got = body ? json_loads(body, 0, &e) : NULL;
    cr_assert_not_null(got, "body is not JSON: %s", body ? body : "(none)");
    json_t *exp = json_loads(want, 0, &e);
    cr_assert_not_null(exp, "bad test json: %s (%s)", e.text, want);
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    char *w = json_dumps(exp, JSON_SORT_KEYS | JSON_COMPACT);
    cr_expect(json_equal(got, exp), "body\n got %s\nwant %s", g, w);
    free(g);
    free(w);
    json_decref(got);
    json_decref(exp);
}

#endif
