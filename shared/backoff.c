/*
 * backoff.c - retry delays and give-up rules; see backoff.h.
 */
#include "backoff.h"
#include "dur.h"

#include <stdio.h>
#include <string.h>

struct bo_policy bo_default_policy(void)
{
    struct bo_policy p = {
        .base_ms = 2000,
        .cap_ms = 3600 * 1000,
        .max_attempts = 15,
        .max_age_ms = 48LL * 3600 * 1000,
    };
    return p;
}

static int parse_int(const char *s, size_t n, int *out)
{
    if (n == 0 || n > 9)
        return CS_EINVAL;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CS_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static bool key_is(const char *k, size_t kl, const char *name)
{
    return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

int bo_policy_parse(const char *s, struct bo_policy *out, struct cs_err *err)
{
    struct bo_policy dflt = bo_default_policy();
    return bo_policy_parse_over(s, &dflt, out, err);
}

int bo_policy_parse_over(const char *s, const struct bo_policy *base,
                         struct bo_policy *out, struct cs_err *err)
{
    struct bo_policy p = *base;
    unsigned seen = 0;
    if (!s || !*s)
        return cs_err_set(err, CS_EINVAL, "", "empty retry policy");
    const char *cur = s;
    for (;;) {
        const char *end = strchr(cur, ',');
        size_t len = end ? (size_t)(end - cur) : strlen(cur);
        const char *eq = memchr(cur, '=', len);
        if (!eq || eq == cur)
            return cs_err_set(err, CS_EINVAL, "",
                              "expected key=value at '%.*s'",
                              (int)(len > 32 ? 32 : len), cur);
        size_t kl = (size_t)(eq - cur);
        const char *v = eq + 1;
        size_t vl = len - kl - 1;
        char key[24];
        snprintf(key, sizeof(key), "%.*s", (int)(kl < 23 ? kl : 23), cur);
        unsigned bit;
        int rc;
        if (key_is(cur, kl, "base")) {
            bit = 1;
            rc = dur_parse_ms(v, vl, &p.base_ms);
        } else if (key_is(cur, kl, "cap")) {
            bit = 2;
            rc = dur_parse_ms(v, vl, &p.cap_ms);
        } else if (key_is(cur, kl, "attempts")) {
            bit = 4;
            rc = parse_int(v, vl, &p.max_attempts);
        } else if (key_is(cur, kl, "max_age")) {
            bit = 8;
            rc = dur_parse_ms(v, vl, &p.max_age_ms);
        } else {
            return cs_err_set(err, CS_EINVAL, key, "unknown key '%s'", key);
        }
        if (seen & bit)
            return cs_err_set(err, CS_EINVAL, key, "'%s' given twice", key);
        seen |= bit;
        if (rc != 0)
            return cs_err_set(err, CS_EINVAL, key, "bad value for '%s'", key);
        if (!end)
            break;
        cur = end + 1;
    }
    if (p.base_ms < 1)
        return cs_err_set(err, CS_EINVAL, "base", "base must be at least 1ms");
    if (p.cap_ms < p.base_ms)
        return cs_err_set(err, CS_EINVAL, "cap", "cap must not be below base");
    if (p.max_attempts < 1)
        return cs_err_set(err, CS_EINVAL, "attempts",
                          "attempts must be at least 1");
    *out = p;
    return 0;
}

/* min(cap, base·2^attempt) without overflow: shifting base left by
 * `attempt` stays within the cap exactly when base <= cap >> attempt. */
static int64_t bound_ms(const struct bo_policy *p, int attempt)
{
    if (attempt < 0)
        attempt = 0;
    if (p->base_ms >= p->cap_ms)
        return p->cap_ms;
    if (attempt >= 63 || p->base_ms > (p->cap_ms >> attempt))
        return p->cap_ms;
    return p->base_ms << attempt;
}

int64_t bo_delay_ms(const struct bo_policy *p, int attempt, uint64_t random)
{
    int64_t b = bound_ms(p, attempt);
    if (b <= 0)
        return 0;
    /* Modulo bias is at most (b + 1) / 2^64: below 2^-40 for any cap up to
     * a year. */
    return (int64_t)(random % ((uint64_t)b + 1));
}

int64_t bo_next_ms(const struct bo_policy *p, int attempt,
                   int64_t retry_after_ms, uint64_t random)
{
    int64_t d = bo_delay_ms(p, attempt, random);
    if (retry_after_ms < 0 || retry_after_ms <= d)
        return d;
    if (retry_after_ms <= p->cap_ms)
        return retry_after_ms;
    /* The provider asks for more than our cap: honour it, up to the age
     * limit (past which the job would be dead anyway). */
    if (p->max_age_ms > 0 && retry_after_ms > p->max_age_ms)
        return p->max_age_ms;
    return retry_after_ms;
}

bool bo_exhausted(const struct bo_policy *p, int attempt,
                  int64_t first_enqueued_ms, int64_t now_ms)
{
    if (attempt >= p->max_attempts)
        return true;
    return p->max_age_ms > 0 && now_ms - first_enqueued_ms >= p->max_age_ms;
}
