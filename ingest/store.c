/*
 * store.c - ingest's view of Redis and PostgreSQL, all non-blocking on the
 * loop's libev.
 *
 * Redis (hiredis async): one connection for the enqueue script and one for
 * the cache-invalidation subscription, both reconnecting on their own.
 * hiredis 0.14 has no command timeouts, so every enqueue has its own
 * deadline timer: past it the request is answered 503 and the late reply,
 * if any, is dropped (a retried webhook then meets the de-dup key and gets
 * the original job ids, so a late success is never doubled).
 *
 * PostgreSQL (shared/pga.h, libpq non-blocking): one connection per loop,
 * one query at a time, look-ups queued behind it. Results are cached per key for
 * CALLSYNC_INGEST_CACHE_TTL_MS; concurrent misses for one key share one
 * query; "not found" is cached too. callsyncctl publishes on
 * cs:cache:connections after every change, which empties the cache.
 */
#include "ingest.h"
#include "log.h"
#include "pga.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_S 0.5
#define CACHE_MAX 65536
#define INVALIDATE_CHANNEL "cs:cache:connections"

/*
 * KEYS[1]     de-dup key of the event
 * KEYS[2i]    stream of job i, KEYS[2i+1] its job hash
 * ARGV[1]     de-dup TTL in seconds
 * ARGV[2i]    job id i, ARGV[2i+1] its JSON
 * Returns {1, "id,id"} (new) or {0, "id,id"} (the event was seen: the
 * original ids).
 * A job id that already has a hash is not enqueued again: the same call
 * reaching the same connection through another event is one job. The job
 * hash starts as {state: queued}; workers add checkpoints to it. A hash
 * without a state holds only what a live-call booking checkpointed (with
 * a TTL, in case no job ever follows): the job is enqueued and its hash
 * kept for good, like any other. Consumer
 * groups are created by workers (XGROUP CREATE ... 0 MKSTREAM), so jobs
 * enqueued before the first worker starts are delivered too.
 */
static const char enqueue_lua[] =
    "local seen = redis.call('GET', KEYS[1])\n"
    "if seen then return {0, seen} end\n"
    "local ids = {}\n"
    "for i = 1, (#KEYS - 1) / 2 do\n"
    "  local id = ARGV[2 * i]\n"
    "  ids[i] = id\n"
    "  if redis.call('HSETNX', KEYS[2 * i + 1], 'state', 'queued') == 1 then\n"
    "    redis.call('PERSIST', KEYS[2 * i + 1])\n"
    "    redis.call('XADD', KEYS[2 * i], '*', 'job_id', id, 'job', "
    "ARGV[2 * i + 1])\n"
    "  end\n"
    "end\n"
    "local joined = table.concat(ids, ',')\n"
    "redis.call('SET', KEYS[1], joined, 'EX', tonumber(ARGV[1]))\n"
    "return {1, joined}\n";

struct waiter {
    store_lookup_cb *cb;
    void *arg;
    struct waiter *next;
};

enum centry_state { CE_LOADING, CE_READY };

struct centry {
    char *key;                 /* "<kind>:<value>" */
    enum store_key kind;
    char *value;
    enum centry_state state;
    int rc;                    /* 0 or CS_ENOENT when ready */
    struct ing_agent *agent;
    int64_t expires_ms;
    uint64_t generation;
    bool busy;                 /* its waiters are being called */
    struct waiter *waiters;
    struct centry *next;       /* hash chain */
    struct store *owner;
};

struct store {
    struct ing_loop *l;
    struct ev_loop *loop;
    const struct cfg *cfg;
    const struct cs_keyring *kr;

    /* Redis */
    char *r_host;
    int r_port;
    char *r_password;
    int r_db;
    redisAsyncContext *rc;
    bool r_ready;
    redisAsyncContext *sub;
    ev_timer r_retry;
    char script_sha[41];
    int r_pending;
    bool closing;

    /* PostgreSQL: look-ups queue behind each other on one connection. */
    struct pga *pg;

    /* Cache */
    struct centry **buckets;
    size_t nbuckets;
    size_t nentries;
    uint64_t generation;
};

static void redis_connect(struct store *s);
static void on_lookup(int rc, const PGresult *res, void *arg);
static const char *const lookup_sql[];

/* ---- Redis URL --------------------------------------------------------- */

static int parse_redis_url(struct store *s, const char *url)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return -1;
    p += 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        s->r_password = xstrndup(pw, (size_t)(at - pw));
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hostend = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(hostend - p));
    s->r_host = xstrndup(p, (size_t)((colon ? colon : hostend) - p));
    s->r_port = colon ? atoi(colon + 1) : 6379;
    s->r_db = slash && slash[1] ? atoi(slash + 1) : 0;
    if (!*s->r_host || s->r_port <= 0 || s->r_port > 65535)
        return -1;
    return 0;
}

/* ---- Cache ------------------------------------------------------------- */

static uint32_t fnv(const char *k)
{
    uint32_t h = 2166136261u;
    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 16777619u;
    }
    return h;
}

static void wipe_free(char *secret)
{
    if (secret) {
        volatile char *v = secret;
        while (*v)
            *v++ = 0;
        free(secret);
    }
}

static void agent_free(struct ing_agent *a)
{
    if (!a)
        return;
    free(a->id);
    free(a->org_id);
    free(a->sync_on);
    free(a->retell_agent_id);
    free(a->outbound_from);
    wipe_free(a->outbound_secret);
    for (size_t i = 0; i < a->nconns; i++) {
        free(a->conns[i].id);
        free(a->conns[i].type);
        free(a->conns[i].status);
        json_decref(a->conns[i].conditions);
        wipe_free(a->conns[i].webhook_secret);
    }
    free(a->conns);
    free(a);
}

static void centry_free(struct centry *e)
{
    free(e->key);
    free(e->value);
    agent_free(e->agent);
    free(e);
}

static struct centry **cache_slot(struct store *s, const char *key)
{
    struct centry **pp = &s->buckets[fnv(key) % s->nbuckets];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Drop every settled entry; loading ones will not be cached on arrival. */
static void cache_invalidate(struct store *s)
{
    s->generation++;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct centry **pp = &s->buckets[i];
        while (*pp) {
            struct centry *e = *pp;
            if (e->state == CE_READY && !e->busy) {
                *pp = e->next;
                centry_free(e);
                s->nentries--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static void unlink_entry(struct store *s, struct centry *e)
{
    struct centry **pp = cache_slot(s, e->key);
    if (*pp == e) {
        *pp = e->next;
        s->nentries--;
    }
}

static void finish_entry(struct store *s, struct centry *e, int rc)
{
    struct waiter *w = e->waiters;
    e->waiters = NULL;
    bool keep = rc == 0 || rc == CS_ENOENT;
    if (!keep)
        unlink_entry(s, e); /* a failure is never served from the cache */
    e->state = CE_READY;
    e->rc = rc;
    e->expires_ms = cs_mono_ms() +
                    (e->generation == s->generation ? s->cfg->ingest_cache_ttl_ms
                                                    : 0);
    /* Callbacks may start new look-ups; the entry is pinned until they
     * have all returned. */
    e->busy = true;
    while (w) {
        struct waiter *next = w->next;
        w->cb(rc, rc == 0 ? e->agent : NULL, w->arg);
        free(w);
        w = next;
    }
    e->busy = false;
    if (!keep)
        centry_free(e);
}

void store_lookup(struct store *s, enum store_key k, const char *value,
                  store_lookup_cb *cb, void *arg)
{
    char *key = xasprintf("%d:%s", (int)k, value);
    struct centry **pp = cache_slot(s, key);
    struct centry *e = *pp;
    if (e && e->state == CE_READY &&
        (e->expires_ms > cs_mono_ms() || e->busy)) {
        free(key);
        met_cache(true);
        cb(e->rc, e->rc == 0 ? e->agent : NULL, arg);
        return;
    }
    met_cache(false);
    if (e && e->state == CE_READY) {
        /* Expired: reload in place. */
        agent_free(e->agent);
        e->agent = NULL;
    }
    if (!e) {
        if (s->nentries >= CACHE_MAX)
            cache_invalidate(s);
        pp = cache_slot(s, key);
        e = xcalloc(1, sizeof(*e));
        e->key = key;
        key = NULL;
        e->kind = k;
        e->value = xstrdup(value);
        e->next = *pp;
        *pp = e;
        s->nentries++;
    }
    free(key);
    struct waiter *w = xmalloc(sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = e->waiters;
    e->waiters = w;
    if (e->state == CE_LOADING && w->next)
        return; /* a query for this key is already queued */
    e->state = CE_LOADING;
    e->generation = s->generation;
    e->owner = s;
    const char *params[1] = {e->value};
    pga_query(s->pg, lookup_sql[e->kind], 1, params, on_lookup, e);
}

/* ---- PostgreSQL -------------------------------------------------------- */

#define LOOKUP_SELECT                                                        \
    "SELECT a.id::text, a.organization_id::text, a.sync_on, "                \
    "a.retell_agent_id, a.outbound_from_number, "                            \
    "(SELECT w.webhook_secret FROM integration_webhooks w "                  \
    "  WHERE w.agent_id = a.id AND w.webhook_type = 'outbound_call' "        \
    "  AND w.is_active LIMIT 1), "                                           \
    "COALESCE((SELECT json_agg(json_build_object('id', c.id, 'type', "       \
    "  c.integration_type, 'status', c.connection_status, 'conditions', "    \
    "  c.config->'sync_conditions', 'webhook_secret', c.webhook_secret, "     \
    "  'live_tools', c.config->'live_tools') "                                \
    "  ORDER BY c.created_at, c.id) FROM integration_connections c "         \
    "  WHERE c.agent_id = a.id AND c.is_active AND c.sync_enabled "          \
    "  AND c.connection_status <> 'disconnected'), '[]') "                   \
    "FROM agents a WHERE a.is_active AND "

static const char *const lookup_sql[] = {
    [SK_AGENT_ID] = LOOKUP_SELECT "a.id = $1::uuid",
    [SK_RETELL_AGENT] = LOOKUP_SELECT "a.retell_agent_id = $1",
    [SK_CALLRAIL_COMPANY] = LOOKUP_SELECT "a.callrail_company_id = $1",
    [SK_CONNECTION_ID] = LOOKUP_SELECT
    "a.id = (SELECT agent_id FROM integration_connections WHERE id = $1::uuid)",
};

static char *opt_str(const PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : xstrdup(PQgetvalue(r, 0, col));
}

static char *open_secret(struct store *s, const char *sealed,
                         const char *what, const char *id)
{
    if (!sealed)
        return NULL;
    struct cs_err err = {0};
    size_t n;
    char *plain = s->kr ? cs_open(s->kr, sealed, &n, &err) : NULL;
    if (!plain)
        log_error("secret_unreadable", LOG_S("what", what), LOG_S("id", id),
                  LOG_S("err", s->kr ? err.msg : "no encryption keys"));
    return plain;
}

static struct ing_agent *agent_from_result(struct store *s, const PGresult *r)
{
    struct ing_agent *a = xcalloc(1, sizeof(*a));
    a->id = opt_str(r, 0);
    a->org_id = opt_str(r, 1);
    a->sync_on = opt_str(r, 2);
    a->retell_agent_id = opt_str(r, 3);
    a->outbound_from = opt_str(r, 4);
    a->outbound_secret = open_secret(
        s, PQgetisnull(r, 0, 5) ? NULL : PQgetvalue(r, 0, 5), "outbound",
        a->id);
    json_error_t je;
    json_t *arr = json_loads(PQgetvalue(r, 0, 6), 0, &je);
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    a->conns = xcalloc(n ? n : 1, sizeof(*a->conns));
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(arr, i);
        struct ing_connection *ic = &a->conns[a->nconns];
        const char *id = json_string_value(json_object_get(c, "id"));
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!id || !type)
            continue;
        ic->id = xstrdup(id);
        ic->type = xstrdup(type);
        const char *st = json_string_value(json_object_get(c, "status"));
        ic->status = xstrdup(st ? st : "connected");
        json_t *cond = json_object_get(c, "conditions");
        ic->conditions = json_is_null(cond) ? NULL : json_incref(cond);
        ic->live_tools = json_is_true(json_object_get(c, "live_tools"));
        ic->webhook_secret = open_secret(
            s, json_string_value(json_object_get(c, "webhook_secret")),
            "webhook_secret", id);
        a->nconns++;
    }
    json_decref(arr);
    return a;
}

static void on_lookup(int rc, const PGresult *res, void *arg)
{
    struct centry *e = arg;
    struct store *s = e->owner;
    if (rc == CS_EIO && res)
        log_error("lookup_failed", LOG_S("err", PQresultErrorMessage(res)));
    if (rc) {
        finish_entry(s, e, rc);
        return;
    }
    if (PQntuples(res) > 0)
        e->agent = agent_from_result(s, res);
    finish_entry(s, e, e->agent ? 0 : CS_ENOENT);
}

bool store_pg_ready(const struct store *s)
{
    return pga_ready(s->pg);
}

/* ---- Redis ------------------------------------------------------------- */

struct enq {
    struct store *s;
    store_enqueue_cb *cb;
    void *arg;
    ev_timer deadline;
    bool answered;
    bool retried;              /* EVAL after NOSCRIPT */
    int argc;
    char **argv;
    size_t *argvlen;
};

static void enq_free(struct enq *q)
{
    for (int i = 0; i < q->argc; i++)
        free(q->argv[i]);
    free(q->argv);
    free(q->argvlen);
    free(q);
}

static void enq_answer(struct enq *q, int rc, bool dup, const char *ids)
{
    if (q->answered)
        return;
    q->answered = true;
    ev_timer_stop(q->s->loop, &q->deadline);
    q->cb(rc, dup, ids, q->arg);
}

static void enq_on_deadline(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct enq *q = w->data;
    log_warn("enqueue_timed_out");
    enq_answer(q, CS_ETIMEDOUT, false, NULL);
}

static void enq_on_reply(redisAsyncContext *ac, void *r, void *priv);

static int enq_send(struct enq *q)
{
    return redisAsyncCommandArgv(q->s->rc, enq_on_reply, q, q->argc,
                                 (const char **)q->argv, q->argvlen);
}

static void enq_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct enq *q = priv;
    redisReply *reply = r;
    struct store *s = q->s;
    s->r_pending--;
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && !q->retried &&
        !q->answered && s->rc) {
        /* Redis lost its script cache (restart): send the script itself. */
        q->retried = true;
        free(q->argv[0]);
        free(q->argv[1]);
        q->argv[0] = xstrdup("EVAL");
        q->argvlen[0] = 4;
        q->argv[1] = xstrdup(enqueue_lua);
        q->argvlen[1] = strlen(enqueue_lua);
        if (enq_send(q) == REDIS_OK) {
            s->r_pending++;
            return;
        }
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("enqueue_failed", LOG_S("err", reply->str));
        enq_answer(q, CS_EIO, false, NULL);
    } else {
        enq_answer(q, 0, reply->element[0]->integer == 0,
                   reply->element[1]->str);
    }
    enq_free(q);
}

void store_enqueue(struct store *s, unsigned shard, const char *seen_key,
                   int seen_ttl_s, const struct store_job *jobs, size_t n,
                   store_enqueue_cb *cb, void *arg)
{
    struct enq *q = xcalloc(1, sizeof(*q));
    q->s = s;
    q->cb = cb;
    q->arg = arg;
    ev_timer_init(&q->deadline, enq_on_deadline,
                  s->cfg->ingest_redis_timeout_ms / 1000.0, 0.0);
    q->deadline.data = q;
    if (!s->rc || !s->r_ready) {
        q->answered = true;
        cb(CS_EIO, false, NULL, arg);
        free(q);
        return;
    }
    q->argc = (int)(3 + 1 + 2 * n + 1 + 2 * n);
    q->argv = xcalloc((size_t)q->argc, sizeof(char *));
    q->argvlen = xcalloc((size_t)q->argc, sizeof(size_t));
    int i = 0;
    q->argv[i++] = xstrdup("EVALSHA");
    q->argv[i++] = xstrdup(s->script_sha);
    q->argv[i++] = xasprintf("%zu", 1 + 2 * n);
    q->argv[i++] = xstrdup(seen_key);
    for (size_t j = 0; j < n; j++) {
        q->argv[i++] = xasprintf("cs:{%u}:q:%s", shard, jobs[j].provider);
        q->argv[i++] = xasprintf("cs:{%u}:job:%s", shard, jobs[j].job_id);
    }
    q->argv[i++] = xasprintf("%d", seen_ttl_s);
    for (size_t j = 0; j < n; j++) {
        q->argv[i++] = xstrdup(jobs[j].job_id);
        q->argv[i++] = xstrdup(jobs[j].payload);
    }
    CS_ASSERT(i == q->argc);
    for (i = 0; i < q->argc; i++)
        q->argvlen[i] = strlen(q->argv[i]);
    if (enq_send(q) != REDIS_OK) {
        q->answered = true;
        cb(CS_EIO, false, NULL, arg);
        enq_free(q);
        return;
    }
    s->r_pending++;
    ev_timer_start(s->loop, &q->deadline);
}

static void r_on_retry(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    redis_connect(w->data);
}

static void r_schedule_retry(struct store *s)
{
    if (s->closing || ev_is_active(&s->r_retry))
        return;
    ev_timer_set(&s->r_retry, RETRY_S, 0.0);
    ev_timer_start(s->loop, &s->r_retry);
}

static void r_on_ready(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    CS_UNUSED(priv);
    redisReply *reply = r;
    struct store *s = ac->data;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        s->r_ready = true;
        log_info("redis_connected", LOG_S("host", s->r_host),
                 LOG_I("port", s->r_port));
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_error("redis_script_load_failed", LOG_S("err", reply->str));
    }
}

static void r_on_connect(const redisAsyncContext *ac, int status)
{
    struct store *s = ac->data;
    if (status != REDIS_OK) {
        log_warn("redis_connect_failed", LOG_S("err", ac->errstr));
        if (ac == s->rc)
            s->rc = NULL;
        else if (ac == s->sub)
            s->sub = NULL;
        r_schedule_retry(s);
    }
}

static void r_on_disconnect(const redisAsyncContext *ac, int status)
{
    CS_UNUSED(status);
    struct store *s = ac->data;
    if (ac == s->rc) {
        s->rc = NULL;
        s->r_ready = false;
        log_warn("redis_disconnected", LOG_S("err", ac->errstr));
    } else if (ac == s->sub) {
        s->sub = NULL;
        /* Messages may have been missed while away. */
        cache_invalidate(s);
    }
    r_schedule_retry(s);
}

static void sub_on_message(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(priv);
    redisReply *reply = r;
    struct store *s = ac->data;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    if (reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "message") == 0) {
        log_debug("cache_invalidated",
                  LOG_S("agent", reply->element[2]->str));
        cache_invalidate(s);
    }
}

static redisAsyncContext *r_open(struct store *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->r_host, s->r_port);
    if (!ac || ac->err) {
        log_warn("redis_connect_failed",
                 LOG_S("err", ac ? ac->errstr : "out of memory"));
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisLibevAttach(s->loop, ac);
    redisAsyncSetConnectCallback(ac, r_on_connect);
    redisAsyncSetDisconnectCallback(ac, r_on_disconnect);
    if (s->r_password)
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", s->r_password);
    if (s->r_db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", s->r_db);
    return ac;
}

static void redis_connect(struct store *s)
{
    if (!s->rc) {
        s->rc = r_open(s);
        if (s->rc)
            redisAsyncCommand(s->rc, r_on_ready, NULL, "SCRIPT LOAD %s",
                              enqueue_lua);
    }
    if (!s->sub) {
        s->sub = r_open(s);
        if (s->sub) {
            redisAsyncCommand(s->sub, sub_on_message, NULL, "SUBSCRIBE %s",
                              INVALIDATE_CHANNEL);
            cache_invalidate(s);
        }
    }
    if (!s->rc || !s->sub)
        r_schedule_retry(s);
}

bool store_redis_ready(const struct store *s)
{
    return s->rc && s->r_ready;
}

/* ---- Lifecycle --------------------------------------------------------- */

struct store *store_new(struct ing_loop *l, struct ev_loop *loop,
                        const struct cfg *cfg, const struct cs_keyring *kr)
{
    struct store *s = xcalloc(1, sizeof(*s));
    s->l = l;
    s->loop = loop;
    s->cfg = cfg;
    s->kr = kr;
    s->nbuckets = 4096;
    s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
    if (parse_redis_url(s, cfg->redis_url)) {
        log_error("bad_redis_url", LOG_S("url", cfg->redis_url));
        store_free(s);
        return NULL;
    }
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)enqueue_lua, strlen(enqueue_lua), sha);
    cs_hex_encode(sha, sizeof(sha), s->script_sha);
    ev_init(&s->r_retry, r_on_retry);
    s->r_retry.data = s;
    s->pg = pga_new(loop, cfg->database_url, cfg->ingest_pg_timeout_ms);
    redis_connect(s);
    return s;
}

bool store_idle(const struct store *s)
{
    return s->r_pending == 0 && pga_idle(s->pg);
}

void store_free(struct store *s)
{
    if (!s)
        return;
    s->closing = true;
    ev_timer_stop(s->loop, &s->r_retry);
    if (s->rc)
        redisAsyncFree(s->rc);
    if (s->sub)
        redisAsyncFree(s->sub);
    s->rc = s->sub = NULL;
    /* Cancelled look-ups answer their waiters and free their entries. */
    pga_free(s->pg);
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct centry *e = s->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            centry_free(e);
        }
    }
    free(s->buckets);
    free(s->r_host);
    wipe_free(s->r_password);
    free(s);
}
