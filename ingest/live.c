/*
 * live.c - requests that a caller waits for (the live-call tools): handed
 * to the workers through Redis and answered from a reply list, without
 * blocking the loop.
 *
 * Each loop owns one reply list, cs:reply:<instance>:<n> (instance: random
 * per process start; n: the loop's number), and two hiredis connections:
 * one that XADDs requests to the shard's priority stream cs:{S}:live, one
 * that waits on the reply list with BLPOP (1 s at a time, so a stopping
 * loop is never held up for long). A request names its reply list, so the
 * worker's answer comes back to the loop whose HTTP request it is. Pending
 * requests sit in a hash table by request id, each with its own deadline
 * timer; a reply that finds no pending request (its deadline passed) is
 * dropped and counted.
 */
#include "ingest.h"
#include "log.h"
#include "rq.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE_BUCKETS 1024
#define LIVE_RETRY_S 0.5
/* The live streams are short by nature (workers delete what they
 * answer); the cap only matters when no worker reads them. */
#define LIVE_MAXLEN "10000"

struct pending {
    char req_id[33];
    live_cb *cb;
    void *arg;
    ev_timer deadline;
    struct live *lv;
    struct pending *next;
};

struct live {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct rq_addr addr;
    redisAsyncContext *cmd;    /* XADD */
    redisAsyncContext *pop;    /* BLPOP on the reply list */
    bool popping;
    bool closing;
    ev_timer retry;
    char reply_to[96];
    struct pending *buckets[LIVE_BUCKETS];
    size_t npending;
};

static char instance_id[17];
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;
static atomic_uint loop_seq;

static void make_instance_id(void)
{
    unsigned char rnd[8] = {0};
    if (cs_random(rnd, sizeof(rnd))) {
        uint64_t t = (uint64_t)cs_now_ms() ^ (uint64_t)cs_mono_ns();
        memcpy(rnd, &t, sizeof(rnd));
    }
    cs_hex_encode(rnd, sizeof(rnd), instance_id);
}

static unsigned bucket_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++) {
        h ^= (unsigned char)*id;
        h *= 16777619u;
    }
    return h % LIVE_BUCKETS;
}

/* Remove and return the pending request with this id, or NULL. */
static struct pending *take(struct live *lv, const char *id)
{
    struct pending **pp = &lv->buckets[bucket_of(id)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->req_id, id) == 0) {
            struct pending *p = *pp;
            *pp = p->next;
            lv->npending--;
            ev_timer_stop(lv->loop, &p->deadline);
            return p;
        }
    }
    return NULL;
}

static void finish(struct pending *p, int rc, json_t *reply)
{
    p->cb(rc, reply, p->arg);
    free(p);
}

static void on_deadline(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct pending *p = w->data;
    struct pending *q = take(p->lv, p->req_id);
    CS_ASSERT(q == p);
    finish(p, CS_ETIMEDOUT, NULL);
}

/* ---- Replies ------------------------------------------------------------ */

static void pop_next(struct live *lv);

static void on_reply_text(struct live *lv, const char *s, size_t n)
{
    json_t *j = json_loadb(s, n, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "req_id"));
    struct pending *p = id ? take(lv, id) : NULL;
    if (!p) {
        met_live("late_reply");
        log_info("live_reply_dropped", LOG_S("req_id", id ? id : "?"),
                 LOG_S("msg", "no request waits for it (its deadline "
                              "passed)"));
    } else {
        finish(p, 0, j);
    }
    json_decref(j);
}

static void on_pop(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct live *lv = priv;
    redisReply *reply = r;
    lv->popping = false;
    if (!reply || lv->closing)
        return; /* the connection went away: reconnect pops again */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING)
        on_reply_text(lv, reply->element[1]->str, reply->element[1]->len);
    else if (reply->type == REDIS_REPLY_ERROR)
        log_error("live_pop_failed", LOG_S("err", reply->str));
    pop_next(lv);
}

static void pop_next(struct live *lv)
{
    if (lv->popping || !lv->pop || lv->closing)
        return;
    if (redisAsyncCommand(lv->pop, on_pop, lv, "BLPOP %s 1", lv->reply_to) ==
        REDIS_OK)
        lv->popping = true;
}

/* ---- Connections -------------------------------------------------------- */

static void connect_all(struct live *lv);

static void on_retry(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    connect_all(w->data);
}

static void schedule_retry(struct live *lv)
{
    if (lv->closing || ev_is_active(&lv->retry))
        return;
    ev_timer_set(&lv->retry, LIVE_RETRY_S, 0.0);
    ev_timer_start(lv->loop, &lv->retry);
}

static void forget(struct live *lv, const redisAsyncContext *ac)
{
    if (ac == lv->cmd) {
        lv->cmd = NULL;
    } else if (ac == lv->pop) {
        lv->pop = NULL;
        lv->popping = false;
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct live *lv = ac->data;
    if (status == REDIS_OK)
        return;
    log_warn("live_redis_connect_failed", LOG_S("err", ac->errstr));
    forget(lv, ac);
    schedule_retry(lv);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    CS_UNUSED(status);
    struct live *lv = ac->data;
    forget(lv, ac);
    if (!lv->closing)
        schedule_retry(lv);
}

static redisAsyncContext *open_one(struct live *lv)
{
    redisAsyncContext *ac = rq_connect(lv->loop, &lv->addr);
    if (!ac)
        return NULL;
    ac->data = lv;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_all(struct live *lv)
{
    if (lv->closing)
        return;
    if (!lv->cmd)
        lv->cmd = open_one(lv);
    if (!lv->pop) {
        lv->pop = open_one(lv);
        pop_next(lv);
    }
    if (!lv->cmd || !lv->pop)
        schedule_retry(lv);
}

/* ---- Requests ----------------------------------------------------------- */

struct sent {
    struct live *lv;
    char req_id[33];
};

static void on_added(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct sent *s = priv;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_STRING) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("live_enqueue_failed", LOG_S("err", reply->str));
        struct pending *p = s->lv->closing ? NULL : take(s->lv, s->req_id);
        if (p)
            finish(p, CS_EIO, NULL);
    }
    free(s);
}

void live_request(struct live *lv, unsigned shard, const char *fn,
                  const char *connection_id, const char *call_json,
                  const char *args_json, live_cb *cb, void *arg)
{
    if (!lv->cmd || lv->closing) {
        cb(CS_EIO, NULL, arg);
        return;
    }
    struct pending *p = xcalloc(1, sizeof(*p));
    unsigned char rnd[16] = {0};
    if (cs_random(rnd, sizeof(rnd))) {
        /* No randomness: fall back to the clock and the pointer. */
        uint64_t a = cs_mono_ns(), b = (uint64_t)(uintptr_t)p;
        memcpy(rnd, &a, 8);
        memcpy(rnd + 8, &b, 8);
    }
    cs_hex_encode(rnd, sizeof(rnd), p->req_id);
    p->cb = cb;
    p->arg = arg;
    p->lv = lv;
    int64_t deadline = cs_now_ms() + lv->cfg->live_deadline_ms;
    char key[48], dl[24];
    snprintf(key, sizeof(key), "cs:{%u}:live", shard);
    snprintf(dl, sizeof(dl), "%lld", (long long)deadline);
    const char *argv[] = {"XADD", key, "MAXLEN", "~", LIVE_MAXLEN, "*",
                          "req_id", p->req_id, "reply_to", lv->reply_to,
                          "deadline_ms", dl, "fn", fn, "connection_id",
                          connection_id, "call", call_json, "args",
                          args_json};
    struct sent *s = xcalloc(1, sizeof(*s));
    s->lv = lv;
    memcpy(s->req_id, p->req_id, sizeof(s->req_id));
    if (redisAsyncCommandArgv(lv->cmd, on_added, s, (int)CS_ARRAY_LEN(argv),
                              argv, NULL) != REDIS_OK) {
        free(s);
        free(p);
        cb(CS_EIO, NULL, arg);
        return;
    }
    unsigned b = bucket_of(p->req_id);
    p->next = lv->buckets[b];
    lv->buckets[b] = p;
    lv->npending++;
    ev_timer_init(&p->deadline, on_deadline,
                  lv->cfg->live_deadline_ms / 1000.0, 0.0);
    p->deadline.data = p;
    ev_timer_start(lv->loop, &p->deadline);
}

/* ---- Lifecycle ---------------------------------------------------------- */

struct live *live_new(struct ev_loop *loop, const struct cfg *cfg)
{
    struct cs_err err = {0};
    struct live *lv = xcalloc(1, sizeof(*lv));
    if (rq_parse_url(cfg->redis_url, &lv->addr, &err)) {
        free(lv);
        return NULL;
    }
    lv->loop = loop;
    lv->cfg = cfg;
    pthread_once(&instance_once, make_instance_id);
    snprintf(lv->reply_to, sizeof(lv->reply_to), "cs:reply:%s:%u",
             instance_id, atomic_fetch_add(&loop_seq, 1));
    ev_init(&lv->retry, on_retry);
    lv->retry.data = lv;
    connect_all(lv);
    return lv;
}

void live_free(struct live *lv)
{
    if (!lv)
        return;
    lv->closing = true;
    ev_timer_stop(lv->loop, &lv->retry);
    if (lv->cmd)
        redisAsyncFree(lv->cmd);
    if (lv->pop)
        redisAsyncFree(lv->pop);
    lv->cmd = lv->pop = NULL;
    for (size_t i = 0; i < LIVE_BUCKETS; i++) {
        while (lv->buckets[i]) {
            struct pending *p = lv->buckets[i];
            lv->buckets[i] = p->next;
            ev_timer_stop(lv->loop, &p->deadline);
            finish(p, CS_ECANCELED, NULL);
        }
    }
    free(lv);
}

const char *live_reply_list(const struct live *lv)
{
    return lv->reply_to;
}
