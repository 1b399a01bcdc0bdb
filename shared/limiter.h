/*
 * limiter.h - the distributed rate limiter: one GCRA (generic cell rate
 * algorithm) bucket per (provider, account) in Redis, shared by every
 * worker of the fleet, plus a pause that a 429 or a rate-limit header
 * puts on the key for everyone.
 *
 * Sans-I/O: this module holds the two Lua scripts, builds their argument
 * vectors (for redisAsyncCommandArgv in the worker) and parses the
 * replies. The *_sync functions do the same over a blocking hiredis
 * context, for callsyncctl and tests.
 *
 * Keys (one hash tag, so a Redis Cluster keeps both in one slot):
 *   cs:rl:{<provider>:<account>}        theoretical arrival time (TAT),
 *                                       microseconds on the script's clock
 *   cs:rl:{<provider>:<account>}:pause  end of the pause, microseconds
 * Both expire on their own: the TAT key when the bucket would be full
 * again (an absent key is a full bucket), the pause key when the pause
 * ends. An idle key therefore costs no memory.
 *
 * Clock: the scripts read the Redis server's clock (TIME), so workers on
 * machines with skewed clocks still share one timeline. Redis 7 replicates
 * script effects, not the script, so a script that reads TIME and then
 * writes is allowed and replicas get the same values. A non-negative
 * now_ms argument replaces the server clock; only tests use it, to make
 * the timeline deterministic.
 */
#ifndef CS_LIMITER_H
#define CS_LIMITER_H

#include "cs.h"

#include <hiredis/hiredis.h>

/* Room for a key: "cs:rl:{" + provider + ":" + account + "}:pause". */
#define RL_KEY_MAX 256

/* "requests per per_ms milliseconds"; also the burst (requests at once). */
struct rl_limit {
    int requests;
    int per_ms;
};

/*
 * Parse "<requests>/<duration>", e.g. "100/10s", "190/10s", "5/1s",
 * "20/1m", "200000/1d", "10/s" (a bare unit means one of it). Durations as
 * in dur.h. Requests 1..1,000,000, period 1 ms..1 day. Returns 0, or
 * CS_EINVAL (out untouched).
 */
CS_MUST_CHECK int rl_limit_parse(const char *s, struct rl_limit *out);
/* Whether lim is within the bounds rl_limit_parse accepts. */
bool rl_limit_valid(struct rl_limit lim);
/* Emission interval of lim in microseconds, rounded up so that rounding
 * never lets more than lim.requests through per period (>= 1). */
int64_t rl_interval_us(struct rl_limit lim);

/*
 * The two key names into k1 (TAT) and k2 (pause). Returns 0, CS_EINVAL if
 * provider or account is empty, or CS_E2BIG if a buffer is too small
 * (RL_KEY_MAX always fits a 200-byte provider:account).
 */
CS_MUST_CHECK int rl_keys(const char *provider, const char *account, char *k1,
                          size_t n1, char *k2, size_t n2);

/*
 * The acquire script.
 *   KEYS[1] TAT key, KEYS[2] pause key
 *   ARGV[1] now in ms, or -1 for the server's clock
 *   ARGV[2] emission interval in µs (rl_interval_us)
 *   ARGV[3] burst: this many requests may go at once from a full bucket
 *   ARGV[4] cost of this request (1), at most the burst
 * Returns {1, 0} when the request may go now (and counts it), or
 * {0, wait_ms} when it may not: wait_ms (>= 1, rounded up) until the pause
 * ends, or else until the bucket has room for this request. A refused
 * request is not counted.
 */
const char *rl_acquire_script(void);
/*
 * The pause script.
 *   KEYS[1] pause key
 *   ARGV[1] now in ms, or -1 for the server's clock
 *   ARGV[2] pause length in ms (>= 1)
 * Pauses the key until now + ARGV[2] unless it is already paused longer:
 * a shorter pause never shortens a longer one. Returns the remaining
 * pause in ms after the call.
 */
const char *rl_pause_script(void);
/* Lower-case hex SHA-1 of each script, for EVALSHA (thread-safe). */
const char *rl_acquire_sha(void);
const char *rl_pause_sha(void);

/*
 * An argument vector for redisCommandArgv / redisAsyncCommandArgv; owns
 * the strings argv points into, so it must outlive the call that sends it
 * (hiredis copies the arguments when the command is queued).
 */
struct rl_cmd {
    int argc;
    const char *argv[9];
    size_t argvlen[9];
    char k1[RL_KEY_MAX]; /* private */
    char k2[RL_KEY_MAX]; /* private */
    char num[4][24];     /* private */
};

/*
 * Build "EVALSHA <sha> 2 <k1> <k2> <now> <interval_us> <burst> 1" (or EVAL
 * with the script text when evalsha is false, e.g. after a NOSCRIPT
 * reply). now_override_ms < 0: the server's clock. Returns 0, or the
 * errors of rl_keys, or CS_EINVAL for an invalid limit.
 */
CS_MUST_CHECK int rl_acquire_cmd(struct rl_cmd *cmd, const char *provider,
                                 const char *account, struct rl_limit lim,
                                 int64_t now_override_ms, bool evalsha);
/* Build "EVALSHA <sha> 1 <k2> <now> <pause_ms>" likewise. CS_EINVAL if
 * pause_ms < 1. */
CS_MUST_CHECK int rl_pause_cmd(struct rl_cmd *cmd, const char *provider,
                               const char *account, int64_t pause_ms,
                               int64_t now_override_ms, bool evalsha);

/* Whether r is the NOSCRIPT error (send the EVAL form instead). */
bool rl_reply_is_noscript(const redisReply *r);
/* Read an acquire reply. 0, or CS_EIO for an error or malformed reply
 * (r may be NULL: the connection failed). */
CS_MUST_CHECK int rl_parse_reply(const redisReply *r, bool *allowed,
                                 int64_t *wait_ms);
/* Read a pause reply (the remaining pause in ms). 0 or CS_EIO. */
CS_MUST_CHECK int rl_parse_pause_reply(const redisReply *r, int64_t *wait_ms);

/*
 * Blocking forms: send the script (EVALSHA, then EVAL on NOSCRIPT) and
 * read the reply. now_override_ms: -1 for the server's clock, else the
 * tests' clock. Return 0, CS_EINVAL for bad arguments, CS_EIO when Redis
 * fails.
 */
CS_MUST_CHECK int rl_acquire_sync(redisContext *c, const char *provider,
                                  const char *account, struct rl_limit lim,
                                  int64_t now_override_ms, bool *allowed,
                                  int64_t *wait_ms);
CS_MUST_CHECK int rl_pause_sync(redisContext *c, const char *provider,
                                const char *account, int64_t pause_ms,
                                int64_t now_override_ms, int64_t *wait_ms);

#endif
