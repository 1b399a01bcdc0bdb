/*
 * backoff.h - when to retry a job after a retryable error: exponential
 * backoff with full jitter (a uniform draw in [0, min(cap, base·2^attempt)]),
 * the provider's Retry-After honoured, and the point where a job gives up
 * (too many attempts, or too old) and goes to the dead letters.
 *
 * `attempt` everywhere is the job's attempt counter: how many deliveries of
 * the job have failed so far (1 after the first failure). Pure functions:
 * the caller supplies the random value and the clock.
 */
#ifndef CS_BACKOFF_H
#define CS_BACKOFF_H

#include "cs.h"

struct bo_policy {
    int64_t base_ms;    /* first bound; >= 1 */
    int64_t cap_ms;     /* no jittered delay above this; >= base_ms */
    int max_attempts;   /* give up once this many have failed; >= 1 */
    int64_t max_age_ms; /* give up this long after the first enqueue;
                           0: no age limit */
};

/*
 * The default: base 2 s, cap 1 h, 15 attempts, max age 48 h.
 *
 * Bounds after failure a (a = 1..14; the 15th failure is final):
 *   a:      1  2   3   4   5    6    7    8     9     10    11..14
 *   bound:  4s 8s  16s 32s 64s  128s 256s 512s  1024s 2048s 3600s (cap)
 * Worst case (every draw at its bound): 4,092 s + 4 × 3,600 s = 18,492 s
 * ≈ 5 h 8 min from the first failure to the 15th attempt. Expected (full
 * jitter: half of each bound): 9,246 s ≈ 2 h 34 min; the first retry comes
 * after 2 s on average. Retry-After hints can stretch this; the 48 h max
 * age bounds it whatever the hints say.
 */
struct bo_policy bo_default_policy(void);

/*
 * Parse "base=2s,cap=1h,attempts=15,max_age=48h": comma-separated
 * key=value pairs, any subset in any order, each at most once, on top of
 * the default policy. Durations as in dur.h ("max_age=0": no age limit).
 * Returns 0, or CS_EINVAL with err->field naming the offending key
 * ("base", "cap", "attempts", "max_age", or the unknown key itself) and
 * *out untouched.
 */
CS_MUST_CHECK int bo_policy_parse(const char *s, struct bo_policy *out,
                                  struct cs_err *err);

/*
 * The same on top of `base` instead of the default: a per-provider policy
 * ("cap=30m") only changes what it names of the fleet-wide one.
 */
CS_MUST_CHECK int bo_policy_parse_over(const char *s,
                                       const struct bo_policy *base,
                                       struct bo_policy *out,
                                       struct cs_err *err);

/*
 * Full-jitter delay: uniform in [0, min(cap, base·2^attempt)] drawn from
 * `random` (any 64-bit value, e.g. from cs_random). attempt < 0 counts as 0;
 * large attempts saturate at the cap without overflow.
 */
int64_t bo_delay_ms(const struct bo_policy *p, int attempt, uint64_t random);

/*
 * The delay before the next attempt: max(jitter delay, retry_after_ms).
 * retry_after_ms < 0 means the provider gave no hint. The result is at most
 * the cap, except that a provider asking for longer is honoured, up to the
 * max age (or in full when there is no age limit).
 */
int64_t bo_next_ms(const struct bo_policy *p, int attempt,
                   int64_t retry_after_ms, uint64_t random);

/*
 * Whether the job should be dead-lettered instead of retried: attempt
 * (failed deliveries so far) has reached max_attempts, or the job was first
 * enqueued max_age_ms or longer before now_ms. To refuse a retry that would
 * only run past the age limit, pass now_ms + the chosen delay.
 */
bool bo_exhausted(const struct bo_policy *p, int attempt,
                  int64_t first_enqueued_ms, int64_t now_ms);

#endif
