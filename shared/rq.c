/*
 * rq.c - Redis queue scripts and hiredis helpers; see rq.h.
 *
 * Every script moves a job from one place to exactly one other in a
 * single step, so a crash of any process leaves the job either where it
 * was or fully moved: never both, never neither.
 */
#include "rq.h"
#include "crypto.h"

#include <hiredis/adapters/libev.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rq_providers[] = {
    "google_calendar", "calendly",  "cal_com",  "hubspot",
    "salesforce",      "gohighlevel", "housecall_pro", "zapier",
    "stripe",          "pipedrive", "zoho",     "monday",
    "custom_rest",     "outlook",   "twilio",   "sendgrid",
    "segment",         "retell",
};
const size_t rq_nproviders = CS_ARRAY_LEN(rq_providers);

const char rq_promote_lua[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], "
    "'LIMIT', 0, tonumber(ARGV[3]))\n"
    "for _, m in ipairs(due) do\n"
    "  local ok, job = pcall(cjson.decode, m)\n"
    "  local provider, id = 'unknown', 'unknown'\n"
    "  if ok and type(job) == 'table' then\n"
    "    provider = tostring(job.provider or 'unknown')\n"
    "    id = tostring(job.job_id or 'unknown')\n"
    "  end\n"
    "  redis.call('XADD', ARGV[2] .. 'q:' .. provider, '*', 'job_id', id, "
    "'job', m)\n"
    "  redis.call('HSET', ARGV[2] .. 'job:' .. id, 'state', 'queued', "
    "'deliveries', 0)\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "end\n"
    "return #due\n";

/* The index key is the list key without its ":<conn_id>" tail. */
const char rq_park_lua[] =
    "redis.call('RPUSH', KEYS[3], ARGV[2])\n"
    "local conn = string.match(KEYS[3], ':parked:(.*)$')\n"
    "if conn then\n"
    "  local prefix = string.sub(KEYS[3], 1, #KEYS[3] - #conn - 7)\n"
    "  redis.call('SADD', prefix .. 'parked_conns', conn)\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'state', 'parked', 'parked_reason', "
    "ARGV[3])\n"
    "redis.call('XACK', KEYS[1], 'workers', ARGV[1])\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return 1\n";

const char rq_requeue_lua[] =
    "local vis = tonumber(ARGV[1])\n"
    "local forget = tonumber(ARGV[3])\n"
    "local pend = redis.pcall('XPENDING', KEYS[1], 'workers', 'IDLE', vis, "
    "'-', '+', tonumber(ARGV[2]))\n"
    "if type(pend) ~= 'table' or pend.err then return {0, 0, 0} end\n"
    "if #pend == 0 and forget <= 0 then return {0, 0, 0} end\n"
    "local cons = {}\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], "
    "'workers')) do\n"
    "  local f = {}\n"
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
    "  cons[f['name']] = {idle = tonumber(f['idle']), "
    "pending = tonumber(f['pending'])}\n"
    "end\n"
    "local moved, orphans, forgotten = 0, 0, 0\n"
    "for _, p in ipairs(pend) do\n"
    "  local id, c = p[1], cons[p[2]]\n"
    "  if c == nil or c.idle >= vis then\n"
    "    local e = redis.call('XRANGE', KEYS[1], id, id)\n"
    "    if #e == 1 then\n"
    "      redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))\n"
    "      moved = moved + 1\n"
    "    else\n"
    "      orphans = orphans + 1\n"
    "    end\n"
    "    redis.call('XACK', KEYS[1], 'workers', id)\n"
    "    redis.call('XDEL', KEYS[1], id)\n"
    "    if c then c.pending = c.pending - 1 end\n"
    "  end\n"
    "end\n"
    "if forget > 0 then\n"
    "  for name, c in pairs(cons) do\n"
    "    if c.pending == 0 and c.idle >= forget then\n"
    "      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'workers', name)\n"
    "      forgotten = forgotten + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {moved, orphans, forgotten}\n";

const char rq_replay_lua[] =
    "local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)\n"
    "local moved, bad = 0, 0\n"
    "for _, m in ipairs(items) do\n"
    "  local ok, job = pcall(cjson.decode, m)\n"
    "  if ok and type(job) == 'table' and type(job.provider) == 'string' "
    "and type(job.job_id) == 'string' then\n"
    "    redis.call('XADD', ARGV[1] .. 'q:' .. job.provider, '*', 'job_id', "
    "job.job_id, 'job', m)\n"
    "    redis.call('HSET', ARGV[1] .. 'job:' .. job.job_id, 'state', "
    "'queued', 'deliveries', 0)\n"
    "    moved = moved + 1\n"
    "  else\n"
    "    redis.call('XADD', KEYS[3], '*', 'job_id', 'unknown', 'job', m, "
    "'reason', 'malformed_job', 'message', 'a parked entry is not a job', "
    "'errors', '[]', 'at', ARGV[4], 'provider', 'unknown', "
    "'connection_id', ARGV[3], 'http_status', '0')\n"
    "    bad = bad + 1\n"
    "  end\n"
    "end\n"
    "if #items > 0 then redis.call('LTRIM', KEYS[1], #items, -1) end\n"
    "local left = redis.call('LLEN', KEYS[1])\n"
    "if left == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end\n"
    "return {moved, bad, left}\n";

/* XTRIM MINID (exact) to the id just after the last entry of a batch read
 * from the start removes exactly that batch. */
const char rq_trim_dead_lua[] =
    "local age, maxlen, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), "
    "tonumber(ARGV[3])\n"
    "local first, last = '', ''\n"
    "local function after(id)\n"
    "  local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"
    "  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)\n"
    "end\n"
    "local function cut(entries)\n"
    "  if #entries == 0 then return 0 end\n"
    "  if first == '' then first = entries[1][1] end\n"
    "  last = entries[#entries][1]\n"
    "  return redis.call('XTRIM', KEYS[1], 'MINID', after(last))\n"
    "end\n"
    "local by_age, by_count = 0, 0\n"
    "if age > 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  local min = string.format('%d', now - age)\n"
    "  by_age = cut(redis.call('XRANGE', KEYS[1], '-', '(' .. min .. '-0', "
    "'COUNT', limit))\n"
    "end\n"
    "local more = 0\n"
    "if by_age == limit then more = 1 end\n"
    "if maxlen > 0 then\n"
    "  local excess = redis.call('XLEN', KEYS[1]) - maxlen\n"
    "  local room = limit - by_age\n"
    "  if excess > 0 and room > 0 then\n"
    "    by_count = cut(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', "
    "math.min(excess, room)))\n"
    "  end\n"
    "  if redis.call('XLEN', KEYS[1]) > maxlen then more = 1 end\n"
    "end\n"
    "return {by_age, by_count, first, last, more}\n";

/* ---- Connections -------------------------------------------------------- */

int rq_parse_url(const char *url, struct rq_addr *a, struct cs_err *err)
{
    memset(a, 0, sizeof(*a));
    a->port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0)
        return cs_err_set(err, CS_EINVAL, "redis_url",
                          "CALLSYNC_REDIS_URL must start with redis://");
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if (colon && (size_t)(colon - p) >= sizeof(a->user))
            goto bad;
        if ((size_t)(at - pw) >= sizeof(a->pass))
            goto bad;
        if (colon)
            memcpy(a->user, p, (size_t)(colon - p));
        memcpy(a->pass, pw, (size_t)(at - pw));
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= sizeof(a->host))
        goto bad;
    memcpy(a->host, p, (size_t)(hend - p));
    if (colon) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535)
            goto bad;
        a->port = (int)port;
    }
    if (*end == '/' && end[1]) {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if ((*e && *e != '?') || db < 0 || db > 100000)
            goto bad;
        a->db = (int)db;
    }
    return 0;
bad:
    memset(a->pass, 0, sizeof(a->pass));
    return cs_err_set(err, CS_EINVAL, "redis_url",
                      "CALLSYNC_REDIS_URL must be "
                      "redis://[[user]:password@]host[:port][/db]");
}

redisAsyncContext *rq_connect(struct ev_loop *loop, const struct rq_addr *a)
{
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisLibevAttach(loop, ac);
    if (a->pass[0] && a->user[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", a->user, a->pass);
    else if (a->pass[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", a->pass);
    if (a->db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", a->db);
    return ac;
}

/* ---- Scripts ------------------------------------------------------------- */

struct evalq {
    redisCallbackFn *cb;
    void *arg;
    const char *lua;
    int argc;
    char **argv;
    size_t *lens;
    bool retried;
};

static void evalq_free(struct evalq *e)
{
    for (int i = 0; i < e->argc; i++)
        free(e->argv[i]);
    free(e->argv);
    free(e->lens);
    free(e);
}

static void eval_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct evalq *e = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && !e->retried) {
        e->retried = true;
        free(e->argv[0]);
        free(e->argv[1]);
        e->argv[0] = xstrdup("EVAL");
        e->argv[1] = xstrdup(e->lua);
        e->lens[0] = 4;
        e->lens[1] = strlen(e->lua);
        if (redisAsyncCommandArgv(ac, eval_reply, e, e->argc,
                                  (const char **)e->argv, e->lens) ==
            REDIS_OK)
            return;
        reply = NULL;
    }
    if (e->cb)
        e->cb(ac, reply, e->arg);
    evalq_free(e);
}

int rq_eval(redisAsyncContext *ac, const char *lua, redisCallbackFn *cb,
            void *arg, int nkeys, const char *const *kv, int nkv)
{
    if (!ac)
        return CS_EIO;
    struct evalq *e = xcalloc(1, sizeof(*e));
    e->cb = cb;
    e->arg = arg;
    e->lua = lua;
    e->argc = 3 + nkv;
    e->argv = xcalloc((size_t)e->argc, sizeof(char *));
    e->lens = xcalloc((size_t)e->argc, sizeof(size_t));
    unsigned char h[20];
    char sha[41];
    EVP_Digest(lua, strlen(lua), h, NULL, EVP_sha1(), NULL);
    cs_hex_encode(h, sizeof(h), sha);
    e->argv[0] = xstrdup("EVALSHA");
    e->argv[1] = xstrdup(sha);
    e->argv[2] = xasprintf("%d", nkeys);
    for (int i = 0; i < nkv; i++)
        e->argv[3 + i] = xstrdup(kv[i] ? kv[i] : "");
    for (int i = 0; i < e->argc; i++)
        e->lens[i] = strlen(e->argv[i]);
    if (redisAsyncCommandArgv(ac, eval_reply, e, e->argc,
                              (const char **)e->argv, e->lens) != REDIS_OK) {
        evalq_free(e);
        return CS_EIO;
    }
    return 0;
}
