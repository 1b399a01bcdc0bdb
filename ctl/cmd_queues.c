/*
 * cmd_queues.c - callsyncctl queues: how many jobs wait, run, wait for a
 * retry, wait for their connection, or are dead, per shard and provider.
 *
 * Where each number comes from (the layout of worker/scripts.c):
 *   waiting    entries of cs:{S}:q:<provider> not delivered to a worker:
 *              XLEN minus the pending count (a finished job's entry is
 *              acknowledged and deleted in one script, so every entry left
 *              is either waiting or in flight)
 *   in flight  XPENDING of the group "workers": delivered, not finished
 *   delayed    members of cs:{S}:delayed (retries and deferrals), by the
 *              provider in the job document
 *   parked     lengths of cs:{S}:parked:<connection>, by the provider of
 *              the first job in each list
 *   dead       entries of cs:{S}:dead, by their provider field
 *   oldest     age of the stream's first entry (waiting or in flight)
 *   lag        XINFO GROUPS "lag" of the group: entries the group has not
 *              read yet, as Redis counts them ("-" when Redis cannot tell,
 *              e.g. after deletions in the unread part)
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

#define PAGE 1000

struct qrow {
    unsigned shard;
    char provider[72];
    long long waiting, inflight, delayed, parked, dead, consumers;
    long long lag;             /* -1: unknown */
    int64_t oldest_ms;         /* -1: empty */
    bool stream;               /* the stream exists */
};

struct qtab {
    struct ctl *ctl;
    struct qrow *v;
    size_t n, cap;
    unsigned shard;            /* the shard being read */
    const char *only;          /* --provider */
    int rc;
};

static struct qrow *row(struct qtab *t, const char *provider)
{
    if (t->only && strcmp(provider, t->only) != 0)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].shard == t->shard &&
            strcmp(t->v[i].provider, provider) == 0)
            return &t->v[i];
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    struct qrow *r = &t->v[t->n++];
    memset(r, 0, sizeof(*r));
    r->shard = t->shard;
    snprintf(r->provider, sizeof(r->provider), "%s", provider);
    r->lag = -1;
    r->oldest_ms = -1;
    return r;
}

/* The element after name in a flat [name, value, ...] reply. */
static const redisReply *rget(const redisReply *f, const char *name)
{
    if (!f || f->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->str && strcmp(f->element[i]->str, name) == 0)
            return f->element[i + 1];
    return NULL;
}

static long long rint_of(const redisReply *r, long long dflt)
{
    if (!r)
        return dflt;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->str && (r->type == REDIS_REPLY_STRING ||
                   r->type == REDIS_REPLY_STATUS))
        return strtoll(r->str, NULL, 10);
    return dflt;
}

/* An integer reply, or -1 with t->rc set. */
static long long int_cmd(struct qtab *t, redisReply *r)
{
    long long v = -1;
    if (!r)
        t->rc = CTL_FAIL;
    else if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else
        t->rc = ctl_fail(CTL_FAIL, "Redis: %s",
                         r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "unexpected reply");
    freeReplyObject(r);
    return v;
}

static void on_stream(const char *key, void *arg)
{
    struct qtab *t = arg;
    const char *provider = strstr(key, "}:q:");
    if (t->rc || !provider)
        return;
    struct qrow *q = row(t, provider + 4);
    if (!q)
        return;
    struct ctl *ctl = t->ctl;
    redisReply *r = ctl_rcmd(ctl, "TYPE %s", key);
    bool is_stream = r && r->type == REDIS_REPLY_STATUS &&
                     strcmp(r->str, "stream") == 0;
    freeReplyObject(r);
    if (!is_stream)
        return;
    q->stream = true;
    long long len = int_cmd(t, ctl_rcmd(ctl, "XLEN %s", key));
    r = ctl_rcmd(ctl, "XINFO GROUPS %s", key);
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *g = r->element[i];
            const redisReply *name = rget(g, "name");
            if (!name || !name->str || strcmp(name->str, "workers") != 0)
                continue;
            q->inflight = rint_of(rget(g, "pending"), 0);
            q->consumers = rint_of(rget(g, "consumers"), 0);
            const redisReply *lag = rget(g, "lag");
            q->lag = lag && lag->type == REDIS_REPLY_INTEGER ? lag->integer
                                                             : -1;
        }
    } else if (!r) {
        t->rc = CTL_FAIL;
    }
    freeReplyObject(r);
    q->waiting = len > q->inflight ? len - q->inflight : 0;
    r = ctl_rcmd(ctl, "XRANGE %s - + COUNT 1", key);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1)
        q->oldest_ms = strtoll(r->element[0]->element[0]->str, NULL, 10);
    freeReplyObject(r);
}

static const char *job_provider(const char *doc, json_t **keep)
{
    *keep = json_loads(doc, 0, NULL);
    const char *p = json_string_value(json_object_get(*keep, "provider"));
    return p && *p ? p : "unknown";
}

static void count_delayed(struct qtab *t)
{
    char key[32];
    snprintf(key, sizeof(key), "cs:{%u}:delayed", t->shard);
    for (long long at = 0; !t->rc; at += PAGE) {
        redisReply *r = ctl_rcmd(t->ctl, "ZRANGE %s %lld %lld", key, at,
                                 at + PAGE - 1);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            t->rc = r ? ctl_fail(CTL_FAIL, "Redis: ZRANGE %s: %s", key,
                                 r->type == REDIS_REPLY_ERROR ? r->str
                                                              : "bad reply")
                      : CTL_FAIL;
            freeReplyObject(r);
            return;
        }
        for (size_t i = 0; i < r->elements; i++) {
            json_t *j;
            struct qrow *q = row(t, job_provider(r->element[i]->str, &j));
            if (q)
                q->delayed++;
            json_decref(j);
        }
        size_t n = r->elements;
        freeReplyObject(r);
        if (n < PAGE)
            return;
    }
}

static void on_parked(const char *key, void *arg)
{
    struct qtab *t = arg;
    if (t->rc)
        return;
    long long n = int_cmd(t, ctl_rcmd(t->ctl, "LLEN %s", key));
    if (n <= 0)
        return;
    redisReply *r = ctl_rcmd(t->ctl, "LINDEX %s 0", key);
    json_t *j = NULL;
    const char *p = r && r->type == REDIS_REPLY_STRING
                        ? job_provider(r->str, &j)
                        : "unknown";
    struct qrow *q = row(t, p);
    if (q)
        q->parked += n;
    json_decref(j);
    freeReplyObject(r);
}

static void count_dead(struct qtab *t)
{
    char key[32], start[64] = "-";
    snprintf(key, sizeof(key), "cs:{%u}:dead", t->shard);
    while (!t->rc) {
        redisReply *r = ctl_rcmd(t->ctl, "XRANGE %s %s + COUNT %d", key,
                                 start, PAGE);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            t->rc = r ? ctl_fail(CTL_FAIL, "Redis: XRANGE %s: %s", key,
                                 r->type == REDIS_REPLY_ERROR ? r->str
                                                              : "bad reply")
                      : CTL_FAIL;
            freeReplyObject(r);
            return;
        }
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            const char *p = ctl_rfield(r->element[i]->element[1], "provider");
            struct qrow *q = row(t, p && *p ? p : "unknown");
            if (q)
                q->dead++;
        }
        if (n)
            snprintf(start, sizeof(start), "(%s",
                     r->element[n - 1]->element[0]->str);
        freeReplyObject(r);
        if (n < PAGE)
            return;
    }
}

static int cmp_rows(const void *a, const void *b)
{
    const struct qrow *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return strcmp(x->provider, y->provider);
}

static json_t *row_json(const struct qrow *q, int64_t now, bool total)
{
    json_t *o = json_object();
    if (!total) {
        json_object_set_new(o, "shard", json_integer(q->shard));
        json_object_set_new(o, "provider", json_string(q->provider));
    }
    json_object_set_new(o, "waiting", json_integer(q->waiting));
    json_object_set_new(o, "in_flight", json_integer(q->inflight));
    json_object_set_new(o, "delayed", json_integer(q->delayed));
    json_object_set_new(o, "parked", json_integer(q->parked));
    json_object_set_new(o, "dead", json_integer(q->dead));
    json_object_set_new(o, "oldest_age_ms",
                        q->oldest_ms >= 0
                            ? json_integer(now - q->oldest_ms)
                            : json_null());
    if (!total) {
        json_object_set_new(o, "lag", q->lag >= 0 ? json_integer(q->lag)
                                                  : json_null());
        json_object_set_new(o, "consumers", json_integer(q->consumers));
    }
    return o;
}

static void print_row(const struct qrow *q, int64_t now, bool total)
{
    char shard[8], age[32] = "-", lag[24] = "-", cons[24] = "-";
    snprintf(shard, sizeof(shard), "%u", q->shard);
    if (q->oldest_ms >= 0)
        ctl_fmt_age(now - q->oldest_ms, age);
    if (!total && q->lag >= 0)
        snprintf(lag, sizeof(lag), "%lld", q->lag);
    if (!total && q->stream)
        snprintf(cons, sizeof(cons), "%lld", q->consumers);
    printf("%-5s  %-14s %9lld %9lld %9lld %9lld %9lld %8s %9s %9s\n",
           total ? "total" : shard, total ? "" : q->provider, q->waiting,
           q->inflight, q->delayed, q->parked, q->dead, age, lag, cons);
}

int ctl_queues(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl queues [--shard N] [--provider NAME] [--json]\n\n"
        "Jobs per shard and provider:\n"
        "  WAITING    in the stream, not yet delivered to a worker\n"
        "  IN FLIGHT  delivered, not finished (XPENDING of group workers)\n"
        "  DELAYED    waiting for a retry or a rate limit (cs:{S}:delayed)\n"
        "  PARKED     waiting for their connection to be reconnected\n"
        "             (cs:{S}:parked:<connection>)\n"
        "  DEAD       dead letters (cs:{S}:dead; see callsyncctl dead)\n"
        "  OLDEST     age of the oldest job in the stream\n"
        "  LAG        entries the group has not read (XINFO GROUPS; '-'\n"
        "             when Redis cannot tell)\n"
        "  CONSUMERS  workers that have read the stream\n"
        "Keys are found with SCAN. --json prints {shards, queues: [...],\n"
        "total}; oldest_age_ms and lag are null when unknown.\n\n"
        "exit codes: 0 ok, 1 Redis failed, 2 usage\n";
    const char *shard_s = NULL, *provider = NULL;
    const struct ctl_opt opts[] = {{"shard", &shard_s, NULL},
                                   {"provider", &provider, NULL}};
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    int only_shard = -1;
    if (shard_s) {
        char *e;
        long v = strtol(shard_s, &e, 10);
        if (*e || e == shard_s || v < 0 || v >= ctl->cfg.shards)
            return ctl_fail(CTL_USAGE, "invalid --shard '%s': expected 0..%d "
                            "(CALLSYNC_SHARDS is %d)", shard_s,
                            ctl->cfg.shards - 1, ctl->cfg.shards);
        only_shard = (int)v;
    }
    if (provider && (!*provider || strpbrk(provider, "*?[]{}\\ ")))
        return ctl_fail(CTL_USAGE, "invalid --provider '%s'", provider);
    int rc = ctl_redis(ctl);
    if (rc)
        return rc;
    struct qtab t = {.ctl = ctl, .only = provider};
    for (int s = 0; s < ctl->cfg.shards && !t.rc; s++) {
        if (only_shard >= 0 && s != only_shard)
            continue;
        t.shard = (unsigned)s;
        char pattern[64];
        snprintf(pattern, sizeof(pattern), "cs:{%d}:q:*", s);
        if (ctl_scan(ctl, pattern, on_stream, &t) != CTL_OK)
            t.rc = CTL_FAIL;
        count_delayed(&t);
        snprintf(pattern, sizeof(pattern), "cs:{%d}:parked:*", s);
        if (!t.rc && ctl_scan(ctl, pattern, on_parked, &t) != CTL_OK)
            t.rc = CTL_FAIL;
        count_dead(&t);
    }
    if (t.rc) {
        free(t.v);
        return t.rc;
    }
    qsort(t.v, t.n, sizeof(*t.v), cmp_rows);
    struct qrow total = {.lag = -1, .oldest_ms = -1};
    for (size_t i = 0; i < t.n; i++) {
        const struct qrow *q = &t.v[i];
        total.waiting += q->waiting;
        total.inflight += q->inflight;
        total.delayed += q->delayed;
        total.parked += q->parked;
        total.dead += q->dead;
        if (q->oldest_ms >= 0 &&
            (total.oldest_ms < 0 || q->oldest_ms < total.oldest_ms))
            total.oldest_ms = q->oldest_ms;
    }
    int64_t now = cs_now_ms();
    if (ctl->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < t.n; i++)
            json_array_append_new(arr, row_json(&t.v[i], now, false));
        json_t *o = json_pack("{s:i,s:o,s:o}", "shards", ctl->cfg.shards,
                              "queues", arr, "total",
                              row_json(&total, now, true));
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("%-5s  %-14s %9s %9s %9s %9s %9s %8s %9s %9s\n", "SHARD",
               "PROVIDER", "WAITING", "IN FLIGHT", "DELAYED", "PARKED",
               "DEAD", "OLDEST", "LAG", "CONSUMERS");
        for (size_t i = 0; i < t.n; i++)
            print_row(&t.v[i], now, false);
        print_row(&total, now, true);
    }
    free(t.v);
    return CTL_OK;
}
