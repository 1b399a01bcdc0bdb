/*
 * test_limiter.c - the GCRA limiter scripts against the real Redis (db 5,
 * flushed before each test). Most tests pass their own clock (the scripts'
 * now_ms override) so that every allowed count and wait is exact; the last
 * ones use the server's clock. The "limit", "keys", "cmd" and "reply"
 * suites need no Redis.
 */
#include "it_support.h"
#include "limiter.h"

#include <pthread.h>

#define DB 5
#define T0 1700000000000LL /* fake clock, ms: a realistic epoch */

static redisContext *rc;

static void setup(void)
{
    rc = it_redis(DB);
    redisReply *r = redisCommand(rc, "FLUSHDB");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

static void teardown(void)
{
    if (rc)
        redisFree(rc);
    rc = NULL;
}

TestSuite(limiter, .init = setup, .fini = teardown, .timeout = 60);

static struct rl_limit lim_of(const char *s)
{
    struct rl_limit l;
    cr_assert_eq(rl_limit_parse(s, &l), 0, "'%s'", s);
    return l;
}

/* One acquire on c; returns allowed, wait in *wait. */
static bool acq(redisContext *c, const char *account, struct rl_limit lim,
                int64_t now, int64_t *wait)
{
    bool allowed = false;
    int64_t w = -1;
    int rc_ = rl_acquire_sync(c, "test", account, lim, now, &allowed, &w);
    cr_assert_eq(rc_, 0, "acquire failed: %d", rc_);
    cr_assert(allowed ? w == 0 : w >= 1, "allowed %d wait %lld", allowed,
              (long long)w);
    if (wait)
        *wait = w;
    return allowed;
}

static int64_t pause_for(redisContext *c, const char *account, int64_t ms,
                         int64_t now)
{
    int64_t left = -1;
    cr_assert_eq(rl_pause_sync(c, "test", account, ms, now, &left), 0);
    return left;
}

static long long pttl(const char *key)
{
    return it_redis_int(rc, "PTTL %s", key);
}

/* ---- Exact behaviour on the test clock ---------------------------------- */

Test(limiter, burst_then_one_per_interval)
{
    struct rl_limit lim = lim_of("5/1s"); /* interval 200 ms */
    int64_t w;
    for (int i = 0; i < 5; i++)
        cr_expect(acq(rc, "a", lim, T0, NULL), "request %d", i);
    cr_expect(!acq(rc, "a", lim, T0, &w));
    cr_expect_eq(w, 200);
    cr_expect(!acq(rc, "a", lim, T0 + 150, &w));
    cr_expect_eq(w, 50);
    cr_expect(!acq(rc, "a", lim, T0 + 199, &w));
    cr_expect_eq(w, 1);
    cr_expect(acq(rc, "a", lim, T0 + 200, NULL));
    cr_expect(!acq(rc, "a", lim, T0 + 200, &w));
    cr_expect_eq(w, 200);
    /* Then one every 200 ms, each exactly when the wait said. */
    int64_t t = T0 + 200;
    for (int i = 0; i < 20; i++) {
        cr_expect(!acq(rc, "a", lim, t, &w));
        cr_expect_eq(w, 200);
        t += w;
        cr_expect(acq(rc, "a", lim, t, NULL), "step %d", i);
    }
    /* Idle for a full period refills the whole burst, no more. */
    t += 1000;
    for (int i = 0; i < 5; i++)
        cr_expect(acq(rc, "a", lim, t, NULL), "refill %d", i);
    cr_expect(!acq(rc, "a", lim, t, &w));
    cr_expect_eq(w, 200);
    /* Half a period refills half the burst. */
    t += 500;
    cr_expect(acq(rc, "a", lim, t, NULL));
    cr_expect(acq(rc, "a", lim, t, NULL));
    cr_expect(!acq(rc, "a", lim, t, &w));
    cr_expect_eq(w, 100);
}

Test(limiter, fractional_intervals_round_in_the_safe_direction)
{
    /* 3/1s: 333,333.3 µs, kept as 333,334 µs. */
    struct rl_limit lim = lim_of("3/1s");
    cr_expect_eq(rl_interval_us(lim), 333334);
    int64_t w;
    for (int i = 0; i < 3; i++)
        cr_expect(acq(rc, "f", lim, T0, NULL));
    cr_expect(!acq(rc, "f", lim, T0, &w));
    cr_expect_eq(w, 334); /* 333.334 ms, rounded up */
    cr_expect(!acq(rc, "f", lim, T0 + 333, &w));
    cr_expect_eq(w, 1);
    cr_expect(acq(rc, "f", lim, T0 + 334, NULL));
    /* Next room at 2 × 333.334 = 666.668 ms: 332.668 ms away. */
    cr_expect(!acq(rc, "f", lim, T0 + 334, &w));
    cr_expect_eq(w, 333);
    cr_expect(!acq(rc, "f", lim, T0 + 666, &w));
    cr_expect_eq(w, 1);
    cr_expect(acq(rc, "f", lim, T0 + 667, NULL));

    /* HubSpot Professional, 190/10s: 52,632 µs. */
    struct rl_limit hs = lim_of("190/10s");
    cr_expect_eq(rl_interval_us(hs), 52632);
    for (int i = 0; i < 190; i++)
        cr_expect(acq(rc, "hs", hs, T0, NULL), "request %d", i);
    cr_expect(!acq(rc, "hs", hs, T0, &w));
    cr_expect_eq(w, 53);
    /* Over 10 s after the burst: at most 190 more (189 by the rounding
     * lost in the last interval: 190 × 52,632 µs = 10,000,080 µs). */
    int n = 0;
    for (int64_t t = T0 + 1; t <= T0 + 10000; t++)
        while (acq(rc, "hs", hs, t, NULL))
            n++;
    cr_expect_eq(n, 189);
}

/*
 * 100/10s for 60 s of test time, greedy: 100 at t = 0, then one every
 * 100 ms. Over the closed window [0 ms, 60,000 ms] that is
 * 100 + 60,000 / 100 = 700; probing only at t < 60,000 (every 7 ms) the
 * last one, due at 60,000, is missed: 699.
 */
Test(limiter, hundred_per_ten_seconds_over_a_minute)
{
    struct rl_limit lim = lim_of("100/10s");
    int allowed = 0, refused = 0;
    int64_t t = T0, w;
    while (t <= T0 + 60000) {
        if (acq(rc, "m", lim, t, &w)) {
            allowed++;
        } else {
            refused++;
            /* The wait is exact: one ms earlier is still too early. */
            if (refused % 50 == 1 && w > 1) {
                int64_t w2;
                cr_expect(!acq(rc, "m", lim, t + w - 1, &w2));
                cr_expect_eq(w2, 1);
            }
            t += w;
        }
    }
    cr_expect_eq(allowed, 700);
    cr_expect_eq(refused, 601); /* after each of the 600 + the last probe */

    int probed = 0;
    for (int64_t p = T0; p < T0 + 60000; p += 7)
        while (acq(rc, "m7", lim, p, NULL))
            probed++;
    cr_expect_eq(probed, 699);
}

Test(limiter, two_workers_share_one_key)
{
    redisContext *other = it_redis(DB);
    struct rl_limit lim = lim_of("10/1s");
    int a = 0, b = 0;
    int64_t w;
    for (int i = 0; i < 10; i++) {
        if (acq(i % 2 ? other : rc, "shared", lim, T0, NULL))
            *(i % 2 ? &b : &a) += 1;
    }
    cr_expect_eq(a, 5);
    cr_expect_eq(b, 5);
    cr_expect(!acq(rc, "shared", lim, T0, &w));
    cr_expect_eq(w, 100);
    cr_expect(!acq(other, "shared", lim, T0 + 40, &w));
    cr_expect_eq(w, 60);
    cr_expect(acq(other, "shared", lim, T0 + 100, NULL));
    cr_expect(!acq(rc, "shared", lim, T0 + 100, &w));
    cr_expect_eq(w, 100);
    cr_expect(acq(rc, "shared", lim, T0 + 200, NULL));
    cr_expect(!acq(other, "shared", lim, T0 + 200, &w));
    cr_expect_eq(w, 100);
    /* Another account of the same provider is a separate bucket. */
    cr_expect(acq(other, "shared2", lim, T0 + 200, NULL));
    /* And so is the same account at another provider. */
    bool allowed;
    cr_assert_eq(
        rl_acquire_sync(rc, "other", "shared", lim, T0 + 200, &allowed, &w), 0);
    cr_expect(allowed);
    redisFree(other);
}

Test(limiter, a_pause_makes_every_worker_wait)
{
    redisContext *other = it_redis(DB);
    struct rl_limit lim = lim_of("5/1s");
    int64_t w;
    cr_expect(acq(rc, "p", lim, T0, NULL));
    /* Worker 1 meets a 429 with Retry-After: 5 s. */
    cr_expect_eq(pause_for(rc, "p", 5000, T0 + 10), 5000);
    cr_expect(!acq(other, "p", lim, T0 + 10, &w));
    cr_expect_eq(w, 5000);
    cr_expect(!acq(rc, "p", lim, T0 + 2010, &w));
    cr_expect_eq(w, 3000);
    cr_expect(!acq(other, "p", lim, T0 + 5009, &w));
    cr_expect_eq(w, 1);
    /* Refused requests during the pause used no room: after it the bucket
     * is full again (the one request at T0 has long been repaid). */
    for (int i = 0; i < 5; i++)
        cr_expect(acq(i % 2 ? rc : other, "p", lim, T0 + 5010, NULL));
    cr_expect(!acq(rc, "p", lim, T0 + 5010, &w));
    cr_expect_eq(w, 200);
    /* Other keys were never paused. */
    cr_expect(acq(rc, "q", lim, T0 + 10, NULL));
    redisFree(other);
}

Test(limiter, a_shorter_pause_never_shortens_a_longer_one)
{
    struct rl_limit lim = lim_of("5/1s");
    int64_t w;
    cr_expect_eq(pause_for(rc, "s", 10000, T0), 10000);
    cr_expect_eq(pause_for(rc, "s", 2000, T0 + 1000), 9000);
    cr_expect_eq(pause_for(rc, "s", 9000, T0 + 1000), 9000);
    cr_expect(!acq(rc, "s", lim, T0 + 5000, &w));
    cr_expect_eq(w, 5000);
    /* A longer one extends it. */
    cr_expect_eq(pause_for(rc, "s", 20000, T0 + 6000), 20000);
    cr_expect(!acq(rc, "s", lim, T0 + 11000, &w));
    cr_expect_eq(w, 15000);
    cr_expect(!acq(rc, "s", lim, T0 + 25999, &w));
    cr_expect_eq(w, 1);
    cr_expect(acq(rc, "s", lim, T0 + 26000, NULL));
    /* Once it is over, a new pause starts from now. */
    cr_expect_eq(pause_for(rc, "s", 1000, T0 + 30000), 1000);
    cr_expect(!acq(rc, "s", lim, T0 + 30000, &w));
    cr_expect_eq(w, 1000);
}

Test(limiter, keys_state_and_ttls)
{
    struct rl_limit lim = lim_of("5/1s");
    char k1[RL_KEY_MAX], k2[RL_KEY_MAX];
    cr_assert_eq(rl_keys("test", "ttl", k1, sizeof(k1), k2, sizeof(k2)), 0);
    cr_expect_str_eq(k1, "cs:rl:{test:ttl}");
    cr_expect_str_eq(k2, "cs:rl:{test:ttl}:pause");
    /* One request: the TAT is now + one interval, in µs, and the key lives
     * until the bucket is full again (200 ms). */
    cr_expect(acq(rc, "ttl", lim, T0, NULL));
    redisReply *r = redisCommand(rc, "GET %s", k1);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_expect_str_eq(r->str, "1700000000200000");
    freeReplyObject(r);
    long long t = pttl(k1);
    cr_expect(t > 150 && t <= 200, "pttl %lld", t);
    /* Four more: empty until 1 s from now. */
    for (int i = 0; i < 4; i++)
        cr_expect(acq(rc, "ttl", lim, T0, NULL));
    t = pttl(k1);
    cr_expect(t > 950 && t <= 1000, "pttl %lld", t);
    /* A refused request changes nothing. */
    cr_expect(!acq(rc, "ttl", lim, T0, NULL));
    r = redisCommand(rc, "GET %s", k1);
    cr_expect_str_eq(r->str, "1700000001000000");
    freeReplyObject(r);
    cr_expect_eq(it_redis_int(rc, "EXISTS %s", k2), 0);

    /* The pause key lives as long as the pause. */
    cr_expect_eq(pause_for(rc, "ttl", 5000, T0), 5000);
    t = pttl(k2);
    cr_expect(t > 4950 && t <= 5000, "pttl %lld", t);
    /* Refused while paused: no TAT key is created. */
    cr_expect_eq(pause_for(rc, "ttl2", 3000, T0), 3000);
    cr_expect(!acq(rc, "ttl2", lim, T0 + 1, NULL));
    cr_expect_eq(it_redis_int(rc, "EXISTS cs:rl:{test:ttl2}"), 0);

    /* On the server clock, an idle key disappears by itself. */
    struct rl_limit fast = lim_of("100/1s"); /* 10 ms interval */
    bool allowed;
    int64_t w;
    cr_assert_eq(rl_acquire_sync(rc, "test", "idle", fast, -1, &allowed, &w),
                 0);
    cr_expect(allowed);
    t = pttl("cs:rl:{test:idle}");
    cr_expect(t > 0 && t <= 10, "pttl %lld", t);
    cr_expect_eq(pause_for(rc, "idle", 30, -1), 30);
    usleep(80 * 1000);
    cr_expect_eq(it_redis_int(rc, "EXISTS cs:rl:{test:idle}"), 0);
    cr_expect_eq(it_redis_int(rc, "EXISTS cs:rl:{test:idle}:pause"), 0);
    cr_expect_eq(it_redis_int(rc, "DBSIZE"), 3); /* ttl's keys, ttl2's pause */
}

Test(limiter, reloads_the_script_after_script_flush)
{
    struct rl_limit lim = lim_of("2/1s");
    cr_expect(acq(rc, "nos", lim, T0, NULL));
    redisReply *r = redisCommand(rc, "SCRIPT FLUSH");
    freeReplyObject(r);
    cr_expect(acq(rc, "nos", lim, T0, NULL));
    cr_expect(!acq(rc, "nos", lim, T0, NULL));
    r = redisCommand(rc, "SCRIPT EXISTS %s %s", rl_acquire_sha(),
                     rl_pause_sha());
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    cr_expect_eq(r->element[0]->integer, 1); /* loaded again by EVAL */
    cr_expect_eq(r->element[1]->integer, 0);
    freeReplyObject(r);
    r = redisCommand(rc, "SCRIPT FLUSH");
    freeReplyObject(r);
    cr_expect_eq(pause_for(rc, "nos", 100, T0), 100);
}

Test(limiter, bad_arguments)
{
    bool allowed;
    int64_t w;
    struct rl_limit zero = {0, 1000};
    struct rl_limit ok = {1, 1000};
    cr_expect_eq(rl_acquire_sync(rc, "test", "x", zero, T0, &allowed, &w),
                 CS_EINVAL);
    cr_expect_eq(rl_acquire_sync(rc, "", "x", ok, T0, &allowed, &w), CS_EINVAL);
    cr_expect_eq(rl_acquire_sync(rc, "test", "", ok, T0, &allowed, &w),
                 CS_EINVAL);
    cr_expect_eq(rl_pause_sync(rc, "test", "x", 0, T0, &w), CS_EINVAL);
    cr_expect_eq(rl_pause_sync(rc, "test", "x", -5, T0, &w), CS_EINVAL);
    cr_expect_eq(it_redis_int(rc, "DBSIZE"), 0);
}

/* ---- Server clock, concurrent workers ----------------------------------- */

#define WORKERS 5
#define PER_WORKER 10

struct burst_arg {
    pthread_barrier_t *go;
    int allowed;
    int refused;
    int bad;
};

static void *burst_worker(void *p)
{
    struct burst_arg *a = p;
    redisContext *c = it_redis(DB);
    struct rl_limit lim = {10, 1000};
    struct rl_cmd cmd;
    int built = rl_acquire_cmd(&cmd, "test", "burst", lim, -1, false);
    pthread_barrier_wait(a->go);
    /* All ten requests of this worker go out before any reply is read. */
    for (int i = 0; i < PER_WORKER && built == 0; i++)
        redisAppendCommandArgv(c, cmd.argc, cmd.argv, cmd.argvlen);
    for (int i = 0; i < PER_WORKER; i++) {
        void *r = NULL;
        bool allowed;
        int64_t w;
        if (built != 0 || redisGetReply(c, &r) != REDIS_OK ||
            rl_parse_reply(r, &allowed, &w) != 0) {
            a->bad++;
        } else if (allowed) {
            a->allowed++;
        } else if (w >= 1 && w <= 1000) {
            a->refused++;
        } else {
            a->bad++;
        }
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

Test(limiter, server_clock_concurrent_burst_allows_exactly_the_limit)
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, WORKERS);
    pthread_t th[WORKERS];
    struct burst_arg args[WORKERS];
    memset(args, 0, sizeof(args));
    for (int i = 0; i < WORKERS; i++) {
        args[i].go = &go;
        cr_assert_eq(pthread_create(&th[i], NULL, burst_worker, &args[i]), 0);
    }
    int allowed = 0, refused = 0, bad = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        allowed += args[i].allowed;
        refused += args[i].refused;
        bad += args[i].bad;
    }
    pthread_barrier_destroy(&go);
    cr_expect_eq(bad, 0);
    cr_expect_eq(allowed, 10);
    cr_expect_eq(refused, WORKERS * PER_WORKER - 10);
    long long t = pttl("cs:rl:{test:burst}");
    cr_expect(t > 0 && t <= 1000, "pttl %lld", t);
}

Test(limiter, server_clock_refills_in_real_time)
{
    struct rl_limit lim = lim_of("10/1s");
    int64_t w;
    int n = 0;
    while (acq(rc, "rt", lim, -1, &w))
        n++;
    cr_expect_eq(n, 10);
    cr_expect(w >= 1 && w <= 100, "wait %lld", (long long)w);
    usleep((useconds_t)(w + 5) * 1000);
    cr_expect(acq(rc, "rt", lim, -1, NULL));
}

/* ---- Without Redis ------------------------------------------------------ */

Test(limit, parse)
{
    struct {
        const char *s;
        int requests, per_ms;
    } ok[] = {{"100/10s", 100, 10000},
              {"190/10s", 190, 10000},
              {"5/1s", 5, 1000},
              {"20/1m", 20, 60000},
              {"10/s", 10, 1000},
              {"120/60s", 120, 60000},
              {"200000/1d", 200000, 86400000},
              {"80/2s", 80, 2000},
              {"1/250ms", 1, 250},
              {"600/1m", 600, 60000},
              {"10000/10m", 10000, 600000}};
    for (size_t i = 0; i < CS_ARRAY_LEN(ok); i++) {
        struct rl_limit l = {-1, -1};
        cr_expect_eq(rl_limit_parse(ok[i].s, &l), 0, "'%s'", ok[i].s);
        cr_expect_eq(l.requests, ok[i].requests, "'%s'", ok[i].s);
        cr_expect_eq(l.per_ms, ok[i].per_ms, "'%s'", ok[i].s);
    }
    const char *bad[] = {"",
                         "100",
                         "100/",
                         "/10s",
                         "0/10s",
                         "100/0s",
                         "100/10",
                         "100/10x",
                         "-1/1s",
                         "1.5/1s",
                         "100 /10s",
                         "100/ 10s",
                         "100/10s ",
                         "a/1s",
                         "100/10s/1",
                         "1000001/1s",
                         "99999999999/1s",
                         "1/2d",
                         "1/25h",
                         "10/sec",
                         "10/ss",
                         "10/S"};
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct rl_limit l = {-1, -1};
        cr_expect_eq(rl_limit_parse(bad[i], &l), CS_EINVAL, "'%s'", bad[i]);
        cr_expect_eq(l.requests, -1, "'%s': out touched", bad[i]);
    }
    cr_expect_eq(rl_limit_parse(NULL, &(struct rl_limit){0, 0}), CS_EINVAL);
}

Test(limit, intervals)
{
    cr_expect_eq(rl_interval_us((struct rl_limit){100, 10000}), 100000);
    cr_expect_eq(rl_interval_us((struct rl_limit){190, 10000}), 52632);
    cr_expect_eq(rl_interval_us((struct rl_limit){3, 1000}), 333334);
    cr_expect_eq(rl_interval_us((struct rl_limit){1000000, 1}), 1);
    cr_expect_eq(rl_interval_us((struct rl_limit){1, 86400000}), 86400000000LL);
    cr_expect_eq(rl_interval_us((struct rl_limit){0, 1000}), 0);
}

Test(keys, names_share_one_hash_tag)
{
    char k1[RL_KEY_MAX], k2[RL_KEY_MAX];
    cr_assert_eq(
        rl_keys("hubspot", "portal-123", k1, sizeof(k1), k2, sizeof(k2)), 0);
    cr_expect_str_eq(k1, "cs:rl:{hubspot:portal-123}");
    cr_expect_str_eq(k2, "cs:rl:{hubspot:portal-123}:pause");
    cr_expect_eq(rl_keys("", "a", k1, sizeof(k1), k2, sizeof(k2)), CS_EINVAL);
    cr_expect_eq(rl_keys("p", NULL, k1, sizeof(k1), k2, sizeof(k2)), CS_EINVAL);
    char s1[24], s2[24];
    /* "cs:rl:{p:abcdefghijklm}" is 23 bytes: fits k1, not k2. */
    cr_expect_eq(rl_keys("p", "abcdefghijklm", s1, sizeof(s1), s2, sizeof(s2)),
                 CS_E2BIG);
    cr_expect_eq(rl_keys("p", "abcdefghijklmn", s1, sizeof(s1), s2, sizeof(s2)),
                 CS_E2BIG);
    char acct[300];
    memset(acct, 'a', sizeof(acct) - 1);
    acct[sizeof(acct) - 1] = '\0';
    cr_expect_eq(rl_keys("p", acct, k1, sizeof(k1), k2, sizeof(k2)), CS_E2BIG);
}

Test(cmd, acquire_and_pause_vectors)
{
    struct rl_cmd cmd;
    struct rl_limit lim = {190, 10000};
    cr_assert_eq(rl_acquire_cmd(&cmd, "hubspot", "42", lim, -1, true), 0);
    const char *want[] = {"EVALSHA",
                          rl_acquire_sha(),
                          "2",
                          "cs:rl:{hubspot:42}",
                          "cs:rl:{hubspot:42}:pause",
                          "-1",
                          "52632",
                          "190",
                          "1"};
    cr_assert_eq(cmd.argc, 9);
    for (int i = 0; i < 9; i++) {
        cr_expect_str_eq(cmd.argv[i], want[i], "argv[%d]", i);
        cr_expect_eq(cmd.argvlen[i], strlen(want[i]), "argvlen[%d]", i);
    }
    cr_expect_eq(strlen(rl_acquire_sha()), 40);
    cr_assert_eq(rl_acquire_cmd(&cmd, "hubspot", "42", lim, T0, false), 0);
    cr_expect_str_eq(cmd.argv[0], "EVAL");
    cr_expect_str_eq(cmd.argv[1], rl_acquire_script());
    cr_expect_str_eq(cmd.argv[5], "1700000000000");

    cr_assert_eq(rl_pause_cmd(&cmd, "hubspot", "42", 10000, -7, true), 0);
    const char *pw[] = {"EVALSHA", rl_pause_sha(),
                        "1",       "cs:rl:{hubspot:42}:pause",
                        "-1",      "10000"};
    cr_assert_eq(cmd.argc, 6);
    for (int i = 0; i < 6; i++)
        cr_expect_str_eq(cmd.argv[i], pw[i], "argv[%d]", i);
    cr_expect_str_neq(rl_acquire_sha(), rl_pause_sha());
    cr_expect_eq(rl_pause_cmd(&cmd, "hubspot", "42", 0, -1, true), CS_EINVAL);
    cr_expect_eq(rl_acquire_cmd(&cmd, "hubspot", "42", (struct rl_limit){1, 0},
                                -1, true),
                 CS_EINVAL);
}

Test(reply, parse)
{
    redisReply one = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    redisReply zero = {.type = REDIS_REPLY_INTEGER, .integer = 0};
    redisReply w250 = {.type = REDIS_REPLY_INTEGER, .integer = 250};
    redisReply neg = {.type = REDIS_REPLY_INTEGER, .integer = -1};
    redisReply str = {.type = REDIS_REPLY_STRING, .str = (char *)"1", .len = 1};
    redisReply *ok1[] = {&one, &zero};
    redisReply *ok0[] = {&zero, &w250};
    redisReply *bad1[] = {&one, &w250};
    redisReply *bad2[] = {&zero, &neg};
    redisReply *bad3[] = {&str, &zero};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 2};
    bool allowed = false;
    int64_t w = -1;

    arr.element = ok1;
    cr_expect_eq(rl_parse_reply(&arr, &allowed, &w), 0);
    cr_expect(allowed);
    cr_expect_eq(w, 0);
    arr.element = ok0;
    cr_expect_eq(rl_parse_reply(&arr, &allowed, &w), 0);
    cr_expect(!allowed);
    cr_expect_eq(w, 250);
    arr.element = bad1;
    cr_expect_eq(rl_parse_reply(&arr, &allowed, &w), CS_EIO);
    arr.element = bad2;
    cr_expect_eq(rl_parse_reply(&arr, &allowed, &w), CS_EIO);
    arr.element = bad3;
    cr_expect_eq(rl_parse_reply(&arr, &allowed, &w), CS_EIO);
    arr.element = ok1;
    arr.elements = 1;
    cr_expect_eq(rl_parse_reply(&arr, &allowed, &w), CS_EIO);
    cr_expect_eq(rl_parse_reply(NULL, &allowed, &w), CS_EIO);
    cr_expect_eq(rl_parse_reply(&one, &allowed, &w), CS_EIO);

    redisReply noscript = {.type = REDIS_REPLY_ERROR,
                           .str = (char *)"NOSCRIPT No matching script.",
                           .len = 28};
    cr_expect(rl_reply_is_noscript(&noscript));
    cr_expect_eq(rl_parse_reply(&noscript, &allowed, &w), CS_EIO);
    cr_expect(!rl_reply_is_noscript(&one));
    cr_expect(!rl_reply_is_noscript(NULL));

    cr_expect_eq(rl_parse_pause_reply(&w250, &w), 0);
    cr_expect_eq(w, 250);
    cr_expect_eq(rl_parse_pause_reply(&neg, &w), CS_EIO);
    cr_expect_eq(rl_parse_pause_reply(&noscript, &w), CS_EIO);
    cr_expect_eq(rl_parse_pause_reply(NULL, &w), CS_EIO);
}
