/*
 * limiter.c - GCRA rate limiter scripts, their arguments and replies; see
 * limiter.h.
 *
 * GCRA keeps one number per key, the theoretical arrival time (TAT): when
 * the requests let through so far are paid off at one per interval, i.e.
 * when the bucket is full again if no more requests come.
 * With emission interval T and burst B, a request of cost c at time now
 * goes if max(TAT, now) + c·T - B·T <= now, and then TAT becomes
 * max(TAT, now) + c·T. So a full bucket (no key, or TAT <= now) lets B
 * requests through at once, then one every T. A refused request waits
 * until that inequality holds and changes nothing.
 *
 * Times are integer microseconds in the scripts, so that intervals such
 * as 10 s / 190 (52,631.6 µs) are kept to within 1 µs: rounded up (to
 * 52,632), so the rate stays a hair under the documented limit, never
 * above it. Lua numbers are doubles: exact for integers up to 2^53 µs
 * (year 2255). Integers are formatted with %d because Lua's default number
 * formatting would write large values in exponent notation.
 */
#include "limiter.h"
#include "crypto.h"
#include "dur.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MAX_REQUESTS 1000000
#define MAX_PERIOD_MS (24 * 3600 * 1000)

/* The script's clock in µs: ARGV[1] ms when >= 0, else the server's. */
#define LUA_NOW                                                                \
    "local now = tonumber(ARGV[1])\n"                                          \
    "if now >= 0 then\n"                                                       \
    "  now = now * 1000\n"                                                     \
    "else\n"                                                                   \
    "  local t = redis.call('TIME')\n"                                         \
    "  now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"                      \
    "end\n"

/* clang-format off */
static const char acquire_lua[] =
    LUA_NOW
    "local pause = tonumber(redis.call('GET', KEYS[2]) or 0)\n"
    "if pause > now then\n"
    "  return {0, math.ceil((pause - now) / 1000)}\n"
    "end\n"
    "local interval = tonumber(ARGV[2])\n"
    "local burst = tonumber(ARGV[3])\n"
    "local cost = tonumber(ARGV[4])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or 0)\n"
    "if tat < now then tat = now end\n"
    "local new_tat = tat + cost * interval\n"
    "local allow_at = new_tat - burst * interval\n"
    "if allow_at > now then\n"
    "  return {0, math.ceil((allow_at - now) / 1000)}\n"
    "end\n"
    "redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',\n"
    "           string.format('%d', math.ceil((new_tat - now) / 1000)))\n"
    "return {1, 0}\n";

static const char pause_lua[] =
    LUA_NOW
    "local len = tonumber(ARGV[2])\n"
    "local want = now + len * 1000\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or 0)\n"
    "if cur >= want then\n"
    "  return math.ceil((cur - now) / 1000)\n"
    "end\n"
    "redis.call('SET', KEYS[1], string.format('%d', want), 'PX',\n"
    "           string.format('%d', len))\n"
    "return len\n";
/* clang-format on */

static char acquire_sha[41];
static char pause_sha[41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), md);
    cs_hex_encode(md, sizeof(md), out);
}

static void compute_shas(void)
{
    sha1_hex(acquire_lua, acquire_sha);
    sha1_hex(pause_lua, pause_sha);
}

const char *rl_acquire_script(void)
{
    return acquire_lua;
}

const char *rl_pause_script(void)
{
    return pause_lua;
}

const char *rl_acquire_sha(void)
{
    pthread_once(&sha_once, compute_shas);
    return acquire_sha;
}

const char *rl_pause_sha(void)
{
    pthread_once(&sha_once, compute_shas);
    return pause_sha;
}

/* ---- Limits ------------------------------------------------------------- */

bool rl_limit_valid(struct rl_limit lim)
{
    return lim.requests >= 1 && lim.requests <= MAX_REQUESTS &&
           lim.per_ms >= 1 && lim.per_ms <= MAX_PERIOD_MS;
}

int rl_limit_parse(const char *s, struct rl_limit *out)
{
    if (!s)
        return CS_EINVAL;
    const char *slash = strchr(s, '/');
    if (!slash || slash == s)
        return CS_EINVAL;
    int64_t req = 0;
    for (const char *p = s; p < slash; p++) {
        if (*p < '0' || *p > '9')
            return CS_EINVAL;
        req = req * 10 + (*p - '0');
        if (req > MAX_REQUESTS)
            return CS_EINVAL;
    }
    const char *d = slash + 1;
    size_t dl = strlen(d);
    int64_t per = 0;
    if (dl > 0 && (d[0] < '0' || d[0] > '9')) {
        /* "10/s": one of the unit. */
        char one[8];
        if (dl + 2 > sizeof(one))
            return CS_EINVAL;
        one[0] = '1';
        memcpy(one + 1, d, dl + 1);
        if (dur_parse_ms(one, dl + 1, &per) != 0)
            return CS_EINVAL;
    } else if (dur_parse_ms(d, dl, &per) != 0) {
        return CS_EINVAL;
    }
    if (per > MAX_PERIOD_MS)
        return CS_EINVAL;
    struct rl_limit lim = {(int)req, (int)per};
    if (!rl_limit_valid(lim))
        return CS_EINVAL;
    *out = lim;
    return 0;
}

int64_t rl_interval_us(struct rl_limit lim)
{
    if (!rl_limit_valid(lim))
        return 0;
    int64_t per_us = (int64_t)lim.per_ms * 1000;
    int64_t t = (per_us + lim.requests - 1) / lim.requests;
    return t > 0 ? t : 1;
}

/* ---- Keys and commands -------------------------------------------------- */

int rl_keys(const char *provider, const char *account, char *k1, size_t n1,
            char *k2, size_t n2)
{
    if (!provider || !*provider || !account || !*account)
        return CS_EINVAL;
    int a = snprintf(k1, n1, "cs:rl:{%s:%s}", provider, account);
    if (a < 0 || (size_t)a >= n1)
        return CS_E2BIG;
    int b = snprintf(k2, n2, "cs:rl:{%s:%s}:pause", provider, account);
    if (b < 0 || (size_t)b >= n2)
        return CS_E2BIG;
    return 0;
}

static void cmd_add(struct rl_cmd *cmd, const char *s)
{
    CS_ASSERT(cmd->argc < (int)CS_ARRAY_LEN(cmd->argv));
    cmd->argv[cmd->argc] = s;
    cmd->argvlen[cmd->argc] = strlen(s);
    cmd->argc++;
}

static const char *cmd_num(struct rl_cmd *cmd, int slot, int64_t v)
{
    snprintf(cmd->num[slot], sizeof(cmd->num[slot]), "%lld", (long long)v);
    return cmd->num[slot];
}

int rl_acquire_cmd(struct rl_cmd *cmd, const char *provider,
                   const char *account, struct rl_limit lim,
                   int64_t now_override_ms, bool evalsha)
{
    if (!rl_limit_valid(lim))
        return CS_EINVAL;
    int rc = rl_keys(provider, account, cmd->k1, sizeof(cmd->k1), cmd->k2,
                     sizeof(cmd->k2));
    if (rc != 0)
        return rc;
    cmd->argc = 0;
    cmd_add(cmd, evalsha ? "EVALSHA" : "EVAL");
    cmd_add(cmd, evalsha ? rl_acquire_sha() : acquire_lua);
    cmd_add(cmd, "2");
    cmd_add(cmd, cmd->k1);
    cmd_add(cmd, cmd->k2);
    cmd_add(cmd, cmd_num(cmd, 0, now_override_ms < 0 ? -1 : now_override_ms));
    cmd_add(cmd, cmd_num(cmd, 1, rl_interval_us(lim)));
    cmd_add(cmd, cmd_num(cmd, 2, lim.requests));
    cmd_add(cmd, "1");
    return 0;
}

int rl_pause_cmd(struct rl_cmd *cmd, const char *provider, const char *account,
                 int64_t pause_ms, int64_t now_override_ms, bool evalsha)
{
    if (pause_ms < 1)
        return CS_EINVAL;
    int rc = rl_keys(provider, account, cmd->k1, sizeof(cmd->k1), cmd->k2,
                     sizeof(cmd->k2));
    if (rc != 0)
        return rc;
    cmd->argc = 0;
    cmd_add(cmd, evalsha ? "EVALSHA" : "EVAL");
    cmd_add(cmd, evalsha ? rl_pause_sha() : pause_lua);
    cmd_add(cmd, "1");
    cmd_add(cmd, cmd->k2);
    cmd_add(cmd, cmd_num(cmd, 0, now_override_ms < 0 ? -1 : now_override_ms));
    cmd_add(cmd, cmd_num(cmd, 1, pause_ms));
    return 0;
}

/* ---- Replies ------------------------------------------------------------ */

bool rl_reply_is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           strncmp(r->str, "NOSCRIPT", 8) == 0;
}

int rl_parse_reply(const redisReply *r, bool *allowed, int64_t *wait_ms)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return CS_EIO;
    const redisReply *a = r->element[0], *w = r->element[1];
    if (!a || !w || a->type != REDIS_REPLY_INTEGER ||
        w->type != REDIS_REPLY_INTEGER)
        return CS_EIO;
    if ((a->integer != 0 && a->integer != 1) || w->integer < 0 ||
        (a->integer == 1 && w->integer != 0))
        return CS_EIO;
    *allowed = a->integer == 1;
    *wait_ms = w->integer;
    return 0;
}

int rl_parse_pause_reply(const redisReply *r, int64_t *wait_ms)
{
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return CS_EIO;
    *wait_ms = r->integer;
    return 0;
}

/* ---- Blocking forms ----------------------------------------------------- */

/* Send cmd and return the reply (caller frees), or NULL on I/O error. */
static redisReply *send_cmd(redisContext *c, struct rl_cmd *cmd)
{
    return redisCommandArgv(c, cmd->argc, cmd->argv, cmd->argvlen);
}

int rl_acquire_sync(redisContext *c, const char *provider, const char *account,
                    struct rl_limit lim, int64_t now_override_ms, bool *allowed,
                    int64_t *wait_ms)
{
    struct rl_cmd cmd;
    int rc =
        rl_acquire_cmd(&cmd, provider, account, lim, now_override_ms, true);
    if (rc != 0)
        return rc;
    redisReply *r = send_cmd(c, &cmd);
    if (rl_reply_is_noscript(r)) {
        freeReplyObject(r);
        rc = rl_acquire_cmd(&cmd, provider, account, lim, now_override_ms,
                            false);
        if (rc != 0)
            return rc;
        r = send_cmd(c, &cmd);
    }
    rc = rl_parse_reply(r, allowed, wait_ms);
    if (r)
        freeReplyObject(r);
    return rc;
}

int rl_pause_sync(redisContext *c, const char *provider, const char *account,
                  int64_t pause_ms, int64_t now_override_ms, int64_t *wait_ms)
{
    struct rl_cmd cmd;
    int rc =
        rl_pause_cmd(&cmd, provider, account, pause_ms, now_override_ms, true);
    if (rc != 0)
        return rc;
    redisReply *r = send_cmd(c, &cmd);
    if (rl_reply_is_noscript(r)) {
        freeReplyObject(r);
        rc = rl_pause_cmd(&cmd, provider, account, pause_ms, now_override_ms,
                          false);
        if (rc != 0)
            return rc;
        r = send_cmd(c, &cmd);
    }
    rc = rl_parse_pause_reply(r, wait_ms);
    if (r)
        freeReplyObject(r);
    return rc;
}
