/*
 * test_backoff.c - retry delays (full jitter bounds and distribution, no
 * overflow, Retry-After, cap), give-up rules, policy and duration parsing.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <string.h>

#include "backoff.h"
#include "dur.h"

#define DRAWS 100000
#define S 1000LL
#define H (3600 * S)

/* splitmix64: a fixed, well-mixed sequence, so failures reproduce. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* min(cap, base·2^attempt), the slow way. */
static int64_t expected_bound(const struct bo_policy *p, int attempt)
{
    int64_t b = p->base_ms;
    for (int i = 0; i < attempt; i++) {
        if (b >= p->cap_ms)
            return p->cap_ms;
        b *= 2;
    }
    return b < p->cap_ms ? b : p->cap_ms;
}

/* ---- Defaults ----------------------------------------------------------- */

Test(backoff, default_policy)
{
    struct bo_policy p = bo_default_policy();
    cr_expect_eq(p.base_ms, 2 * S);
    cr_expect_eq(p.cap_ms, 1 * H);
    cr_expect_eq(p.max_attempts, 15);
    cr_expect_eq(p.max_age_ms, 48 * H);
}

/* The schedule documented in backoff.h: bounds 4 s .. 2048 s, then the
 * cap for attempts 11..14; 18,492 s at worst, half of it expected. */
Test(backoff, default_schedule_spans_hours)
{
    struct bo_policy p = bo_default_policy();
    static const int64_t bounds[] = {4,   8,    16,   32,   64,   128,  256,
                                     512, 1024, 2048, 3600, 3600, 3600, 3600};
    int64_t worst = 0;
    for (int a = 1; a < p.max_attempts; a++) {
        int64_t b = expected_bound(&p, a);
        cr_expect_eq(b, bounds[a - 1] * S, "attempt %d", a);
        /* random == bound draws the bound itself. */
        cr_expect_eq(bo_delay_ms(&p, a, (uint64_t)b), b, "attempt %d", a);
        worst += b;
    }
    cr_expect_eq(worst, 18492 * S);
    cr_expect(!bo_exhausted(&p, 14, 0, 0));
    cr_expect(bo_exhausted(&p, 15, 0, 0));
}

/* ---- Jitter ------------------------------------------------------------- */

Test(backoff, jitter_within_bounds_and_mean_half_the_bound)
{
    struct bo_policy p = bo_default_policy();
    uint64_t state = 42;
    for (int a = 0; a <= 16; a++) {
        int64_t bound = expected_bound(&p, a);
        int64_t lo = INT64_MAX, hi = -1;
        double sum = 0;
        for (int i = 0; i < DRAWS; i++) {
            int64_t d = bo_delay_ms(&p, a, next_random(&state));
            if (d < 0 || d > bound)
                cr_assert_fail("attempt %d: %lld outside [0, %lld]", a,
                               (long long)d, (long long)bound);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            sum += (double)d;
        }
        double mean = sum / DRAWS;
        /* Uniform on [0, b]: mean b/2, standard error b/sqrt(12·DRAWS)
         * ≈ 0.0009·b; allow over 5 standard errors. */
        cr_expect(mean > bound * 0.495 && mean < bound * 0.505,
                  "attempt %d: mean %.1f for bound %lld", a, mean,
                  (long long)bound);
        cr_expect(lo <= bound / 1000, "attempt %d: min %lld", a, (long long)lo);
        cr_expect(hi >= bound - bound / 1000, "attempt %d: max %lld", a,
                  (long long)hi);
    }
}

Test(backoff, jitter_endpoints)
{
    struct bo_policy p = bo_default_policy();
    cr_expect_eq(bo_delay_ms(&p, 0, 0), 0);
    cr_expect_eq(bo_delay_ms(&p, 0, 2000), 2000);
    cr_expect_eq(bo_delay_ms(&p, 0, 2001), 0);
    cr_expect_eq(bo_delay_ms(&p, 1, 4000), 4000);
    cr_expect_eq(bo_delay_ms(&p, 1, 4001), 0);
    /* Negative attempts count as 0. */
    cr_expect_eq(bo_delay_ms(&p, -5, 2000), 2000);
    cr_expect_eq(bo_delay_ms(&p, -5, 2001), 0);
}

Test(backoff, no_overflow_at_large_attempts)
{
    struct bo_policy p = bo_default_policy();
    uint64_t state = 7;
    int attempts[] = {30, 31, 32, 62, 63, 64, 100, 200, INT_MAX};
    for (size_t k = 0; k < sizeof(attempts) / sizeof(attempts[0]); k++) {
        int a = attempts[k];
        for (int i = 0; i < DRAWS; i++) {
            int64_t d = bo_delay_ms(&p, a, next_random(&state));
            if (d < 0 || d > p.cap_ms)
                cr_assert_fail("attempt %d: %lld", a, (long long)d);
        }
        cr_expect_eq(bo_delay_ms(&p, a, (uint64_t)p.cap_ms), p.cap_ms);
    }
    /* A cap near the top of int64_t: base·2^attempt must still saturate. */
    struct bo_policy big = {.base_ms = 3,
                            .cap_ms = INT64_MAX,
                            .max_attempts = 1000,
                            .max_age_ms = 0};
    cr_expect_eq(bo_delay_ms(&big, 200, (uint64_t)INT64_MAX), INT64_MAX);
    cr_expect_eq(bo_delay_ms(&big, 62, (uint64_t)INT64_MAX), INT64_MAX);
    /* 3·2^61 still fits: the bound is exact up to there. */
    cr_expect_eq(bo_delay_ms(&big, 61, 3ULL << 61), (int64_t)(3ULL << 61));
    cr_expect_eq(bo_delay_ms(&big, 61, (3ULL << 61) + 1), 0);
    struct bo_policy one = {.base_ms = 1,
                            .cap_ms = INT64_MAX,
                            .max_attempts = 1000,
                            .max_age_ms = 0};
    cr_expect_eq(bo_delay_ms(&one, 62, 1ULL << 62), (int64_t)(1ULL << 62));
    cr_expect_eq(bo_delay_ms(&one, 63, (uint64_t)INT64_MAX), INT64_MAX);
    for (int a = 0; a <= 200; a++) {
        int64_t d = bo_delay_ms(&big, a, UINT64_MAX);
        cr_expect(d >= 0, "attempt %d: %lld", a, (long long)d);
    }
}

Test(backoff, cap_is_never_exceeded_without_a_hint)
{
    struct bo_policy p = bo_default_policy();
    uint64_t state = 99;
    for (int a = 0; a <= 200; a++)
        for (int i = 0; i < 1000; i++) {
            int64_t d = bo_next_ms(&p, a, -1, next_random(&state));
            if (d < 0 || d > p.cap_ms)
                cr_assert_fail("attempt %d: %lld", a, (long long)d);
        }
    cr_expect_eq(bo_next_ms(&p, 40, -1, (uint64_t)p.cap_ms), p.cap_ms);
}

/* ---- Retry-After -------------------------------------------------------- */

Test(backoff, retry_after_is_honoured)
{
    struct bo_policy p = bo_default_policy();
    uint64_t state = 5;
    /* 30 s from the provider beats any jitter of attempt 1 (<= 4 s). */
    for (int i = 0; i < DRAWS; i++)
        if (bo_next_ms(&p, 1, 30 * S, next_random(&state)) != 30 * S)
            cr_assert_fail("retry-after not honoured");
    /* A shorter hint than the drawn delay: the delay stands. */
    cr_expect_eq(bo_next_ms(&p, 5, 1 * S, 50 * S), 50 * S);
    cr_expect_eq(bo_next_ms(&p, 5, 50 * S, 1 * S), 50 * S);
    /* Zero is a hint too ("now"): the jitter decides. */
    cr_expect_eq(bo_next_ms(&p, 1, 0, 3000), 3000);
    /* No hint. */
    cr_expect_eq(bo_next_ms(&p, 1, -1, 3000), 3000);
    /* Above the cap: honoured, up to the max age. */
    cr_expect_eq(bo_next_ms(&p, 1, 2 * H, 0), 2 * H);
    cr_expect_eq(bo_next_ms(&p, 1, 47 * H, 0), 47 * H);
    cr_expect_eq(bo_next_ms(&p, 1, 100 * H, 0), 48 * H);
    struct bo_policy ageless = p;
    ageless.max_age_ms = 0;
    cr_expect_eq(bo_next_ms(&ageless, 1, 100 * H, 0), 100 * H);
}

/* ---- Giving up ---------------------------------------------------------- */

Test(backoff, exhausted_by_attempts)
{
    struct bo_policy p = bo_default_policy();
    for (int a = 0; a < 15; a++)
        cr_expect(!bo_exhausted(&p, a, 1000, 1000), "attempt %d", a);
    cr_expect(bo_exhausted(&p, 15, 1000, 1000));
    cr_expect(bo_exhausted(&p, 16, 1000, 1000));
    cr_expect(bo_exhausted(&p, INT_MAX, 1000, 1000));
    struct bo_policy one = p;
    one.max_attempts = 1;
    cr_expect(!bo_exhausted(&one, 0, 0, 0));
    cr_expect(bo_exhausted(&one, 1, 0, 0));
}

Test(backoff, exhausted_by_age)
{
    struct bo_policy p = bo_default_policy();
    int64_t t0 = 1700000000000LL;
    cr_expect(!bo_exhausted(&p, 1, t0, t0));
    cr_expect(!bo_exhausted(&p, 1, t0, t0 + 48 * H - 1));
    cr_expect(bo_exhausted(&p, 1, t0, t0 + 48 * H));
    cr_expect(bo_exhausted(&p, 1, t0, t0 + 1000 * H));
    /* A retry that would only run past the age limit. */
    cr_expect(bo_exhausted(&p, 3, t0, t0 + 47 * H + 2 * H));
    struct bo_policy ageless = p;
    ageless.max_age_ms = 0;
    cr_expect(!bo_exhausted(&ageless, 1, t0, t0 + 100000 * H));
    cr_expect(bo_exhausted(&ageless, 15, t0, t0));
}

/* ---- Parsing ------------------------------------------------------------ */

Test(backoff, parse_full_and_partial_policies)
{
    struct bo_policy p;
    struct cs_err err;
    cr_assert_eq(
        bo_policy_parse("base=2s,cap=1h,attempts=15,max_age=48h", &p, &err), 0,
        "%s", err.msg);
    struct bo_policy d = bo_default_policy();
    cr_expect_eq(p.base_ms, d.base_ms);
    cr_expect_eq(p.cap_ms, d.cap_ms);
    cr_expect_eq(p.max_attempts, d.max_attempts);
    cr_expect_eq(p.max_age_ms, d.max_age_ms);

    cr_assert_eq(
        bo_policy_parse("max_age=7d,attempts=3,cap=30m,base=250ms", &p, &err),
        0, "%s", err.msg);
    cr_expect_eq(p.base_ms, 250);
    cr_expect_eq(p.cap_ms, 30 * 60 * S);
    cr_expect_eq(p.max_attempts, 3);
    cr_expect_eq(p.max_age_ms, 7 * 24 * H);

    cr_assert_eq(bo_policy_parse("attempts=5", &p, &err), 0);
    cr_expect_eq(p.max_attempts, 5);
    cr_expect_eq(p.base_ms, 2 * S);
    cr_expect_eq(p.cap_ms, 1 * H);

    cr_assert_eq(bo_policy_parse("max_age=0", &p, &err), 0);
    cr_expect_eq(p.max_age_ms, 0);
    /* err may be NULL. */
    cr_assert_eq(bo_policy_parse("base=1s,cap=1s", &p, NULL), 0);
    cr_expect_eq(p.base_ms, 1 * S);
    cr_expect_eq(p.cap_ms, 1 * S);
}

Test(backoff, per_provider_policy_changes_only_what_it_names)
{
    struct bo_policy fleet, p;
    struct cs_err err;
    cr_assert_eq(bo_policy_parse("base=1s,cap=10m,attempts=8,max_age=12h",
                                 &fleet, &err), 0, "%s", err.msg);
    cr_assert_eq(bo_policy_parse_over("cap=2h,attempts=30", &fleet, &p, &err),
                 0, "%s", err.msg);
    cr_expect_eq(p.base_ms, 1 * S);
    cr_expect_eq(p.cap_ms, 2 * H);
    cr_expect_eq(p.max_attempts, 30);
    cr_expect_eq(p.max_age_ms, 12 * H);

    /* A cap below the inherited base is refused, and out stays as it was. */
    struct bo_policy q = {.base_ms = -7};
    cr_expect_eq(bo_policy_parse_over("cap=500ms", &fleet, &q, &err),
                 CS_EINVAL);
    cr_expect_str_eq(err.field, "cap");
    cr_expect_eq(q.base_ms, -7);
}

static void expect_parse_error(const char *s, const char *field)
{
    struct bo_policy p = {.base_ms = -7};
    struct cs_err err;
    memset(&err, 0, sizeof(err));
    cr_expect_eq(bo_policy_parse(s, &p, &err), CS_EINVAL, "'%s'", s);
    cr_expect_eq(err.code, CS_EINVAL, "'%s'", s);
    cr_expect_str_eq(err.field, field, "'%s': field", s);
    cr_expect_neq(err.msg[0], '\0', "'%s': message", s);
    cr_expect_eq(p.base_ms, -7, "'%s': out touched", s);
}

Test(backoff, parse_errors_name_the_field)
{
    expect_parse_error("base=2x", "base");
    expect_parse_error("base=", "base");
    expect_parse_error("base=-2s", "base");
    expect_parse_error("base=1.5s", "base");
    expect_parse_error("base=0", "base");
    expect_parse_error("base=2 s", "base");
    expect_parse_error("cap=1h,cap=2h", "cap");
    expect_parse_error("base=10s,cap=5s", "cap");
    expect_parse_error("cap=forever", "cap");
    expect_parse_error("attempts=0", "attempts");
    expect_parse_error("attempts=-1", "attempts");
    expect_parse_error("attempts=ten", "attempts");
    expect_parse_error("attempts=1234567890", "attempts");
    expect_parse_error("max_age=48", "max_age");
    expect_parse_error("max_age=99999999999999999999d", "max_age");
    expect_parse_error("jitter=full", "jitter");
    expect_parse_error("Base=2s", "Base");
    expect_parse_error("", "");
    expect_parse_error("base", "");
    expect_parse_error("=2s", "");
    expect_parse_error("base=2s,", "");
    expect_parse_error("base=2s,,cap=1h", "");
    expect_parse_error(" base=2s", " base");
}

Test(backoff, durations)
{
    int64_t ms = -1;
    struct {
        const char *s;
        int64_t ms;
    } ok[] = {{"0", 0},           {"0s", 0},        {"1ms", 1},
              {"250ms", 250},     {"2s", 2000},     {"10s", 10000},
              {"1m", 60000},      {"20m", 1200000}, {"1h", 3600000},
              {"48h", 172800000}, {"1d", 86400000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_expect_eq(dur_parse_ms(ok[i].s, strlen(ok[i].s), &ms), 0, "%s",
                     ok[i].s);
        cr_expect_eq(ms, ok[i].ms, "%s", ok[i].s);
    }
    const char *bad[] = {"",
                         "s",
                         "5",
                         "5x",
                         "5sec",
                         "-1s",
                         "+1s",
                         "1.5s",
                         " 1s",
                         "1s ",
                         "1S",
                         "1mss",
                         "9223372036854775807s",
                         "99999999999999999999ms"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(dur_parse_ms(bad[i], strlen(bad[i]), &ms), CS_EINVAL,
                     "'%s'", bad[i]);
    /* Only n bytes are read. */
    cr_expect_eq(dur_parse_ms("2s,cap", 2, &ms), 0);
    cr_expect_eq(ms, 2000);
}
