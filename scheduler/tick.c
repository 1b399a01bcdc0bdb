/*
 * tick.c - the leader's periodic work, every CALLSYNC_SCHEDULER_TICK_MS:
 *
 *   promote    due retries from cs:{S}:delayed into their streams
 *   reclaim    entries of dead consumers, re-queued as fresh entries
 *              (every visibility/4)
 *   replay     parked jobs of connections that are connected again, or
 *              that were removed (the worker then dead-letters them with
 *              the reason), in bounded batches
 *   retention  dead letters by age and count, sync logs by age, in
 *              batches, each trimmed item counted and logged
 *   refresh    OAuth tokens about to expire, and tokens that refreshers
 *              which died left in Redis (refresh.c)
 *
 * A tick issues its commands and is over when every reply is in; the next
 * tick is skipped while one is still running, so work never piles up
 * behind a slow Redis or PostgreSQL. Everything a tick does is one Lua
 * script or one SQL statement per step, each safe to repeat, so two
 * leaders overlapping for a moment (a paused process that has not noticed
 * its lease ran out) cannot lose or double a job.
 */
#include "sched.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROMOTE_ROUNDS 16      /* promote calls per shard per tick */
#define SSCAN_COUNT "500"

/* ---- Bookkeeping ------------------------------------------------------- */

static void op_begin(struct sch *s)
{
    s->tick_ops++;
}

static void op_end(struct sch *s)
{
    CS_ASSERT(s->tick_ops > 0);
    if (--s->tick_ops == 0)
        sch_metrics_tick(s, (double)(cs_mono_ns() - s->tick_started_ns) /
                                1e9);
}

/* Still worth starting more work in this tick. */
static bool active(const struct sch *s)
{
    return !s->stopping && s->rc && sch_is_leader(s);
}

static void eval(struct sch *s, const char *lua, redisCallbackFn *cb,
                 void *arg, int nkeys, const char *const *kv, int nkv)
{
    op_begin(s);
    if (rq_eval(s->rc, lua, cb, arg, nkeys, kv, nkv)) {
        s->m.errors_redis++;
        free(arg);
        op_end(s);
    }
}

/* A script's reply as an array of n integers, or false (counted). */
static bool ints(struct sch *s, const redisReply *r, size_t n,
                 long long *out)
{
    if (!r) /* connection lost: its loss is logged once, elsewhere */
        return false;
    if (r->type == REDIS_REPLY_ERROR) {
        s->m.errors_redis++;
        log_error("redis_script_failed", LOG_S("err", r->str));
        return false;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
        out[i] = r->element[i]->integer;
    }
    return true;
}

struct shard_op {
    struct sch *s;
    struct sch_shard *sh;
    char key[160];
};

static struct shard_op *shard_op_new(struct sch *s, struct sch_shard *sh)
{
    struct shard_op *o = xcalloc(1, sizeof(*o));
    o->s = s;
    o->sh = sh;
    return o;
}

/* ---- Promote ----------------------------------------------------------- */

static void promote(struct sch *s, struct sch_shard *sh);

static void on_promoted(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct shard_op *o = priv;
    struct sch *s = o->s;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        s->m.promoted += (uint64_t)reply->integer;
        log_info("retries_promoted", LOG_I("shard", o->sh->id),
                 LOG_I("count", reply->integer));
        /* A full batch: more may be due now. */
        if (reply->integer >= s->cfg->scheduler_batch &&
            ++o->sh->promote_rounds < PROMOTE_ROUNDS && active(s))
            promote(s, o->sh);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        s->m.errors_redis++;
        log_error("promote_failed", LOG_S("err", reply->str));
    }
    free(o);
    op_end(s);
}

static void promote(struct sch *s, struct sch_shard *sh)
{
    struct shard_op *o = shard_op_new(s, sh);
    char now[24], limit[16];
    snprintf(o->key, sizeof(o->key), "%sdelayed", sh->prefix);
    snprintf(now, sizeof(now), "%lld", (long long)cs_now_ms());
    snprintf(limit, sizeof(limit), "%d", s->cfg->scheduler_batch);
    const char *kv[] = {o->key, now, sh->prefix, limit};
    eval(s, rq_promote_lua, on_promoted, o, 1, kv, 4);
}

/* ---- Reclaim ----------------------------------------------------------- */

static void on_requeued(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct shard_op *o = priv;
    struct sch *s = o->s;
    long long v[3];
    if (ints(s, r, 3, v)) {
        if (v[0] > 0) {
            s->m.reclaimed += (uint64_t)v[0];
            log_warn("jobs_requeued", LOG_S("stream", o->key),
                     LOG_I("count", v[0]),
                     LOG_S("why", "their consumer stopped without "
                                  "finishing them"));
        }
        if (v[1] > 0) {
            s->m.reclaim_orphans += (uint64_t)v[1];
            log_warn("pending_without_entry_acked", LOG_S("stream", o->key),
                     LOG_I("count", v[1]));
        }
        if (v[2] > 0) {
            s->m.consumers_removed += (uint64_t)v[2];
            log_info("consumers_removed", LOG_S("stream", o->key),
                     LOG_I("count", v[2]));
        }
    }
    free(o);
    op_end(s);
}

static void reclaim(struct sch *s)
{
    char vis[16], limit[16], forget[16];
    snprintf(vis, sizeof(vis), "%d", s->cfg->worker_visibility_ms);
    snprintf(limit, sizeof(limit), "%d", s->cfg->scheduler_batch);
    snprintf(forget, sizeof(forget), "%d",
             s->cfg->scheduler_forget_consumers_ms);
    for (size_t i = 0; i < s->nshards; i++) {
        for (size_t p = 0; p < rq_nproviders; p++) {
            struct shard_op *o = shard_op_new(s, &s->shards[i]);
            snprintf(o->key, sizeof(o->key), "%sq:%s", o->sh->prefix,
                     rq_providers[p]);
            const char *kv[] = {o->key, vis, limit, forget};
            eval(s, rq_requeue_lua, on_requeued, o, 1, kv, 4);
        }
    }
}

/* ---- Replay parked jobs ------------------------------------------------ */

struct replay_check {
    struct sch *s;
    struct sch_shard *sh;
    char **ids;
    size_t n;
};

struct replay_op {
    struct sch *s;
    struct sch_shard *sh;
    bool removed;              /* the connection is gone, not healthy */
    char conn[64];
};

static void check_free(struct replay_check *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->ids[i]);
    free(c->ids);
    free(c);
}

static bool is_uuid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    if (strlen(s) != 36)
        return false;
    for (int i = 0, d = 0; i < 36; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!strchr("0123456789abcdefABCDEF", s[i])) {
            return false;
        }
    }
    return true;
}

static void on_replayed(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct replay_op *o = priv;
    struct sch *s = o->s;
    long long v[3];
    if (ints(s, r, 3, v)) {
        if (o->removed)
            s->m.replayed_removed += (uint64_t)v[0];
        else
            s->m.replayed_healthy += (uint64_t)v[0];
        s->m.replay_malformed += (uint64_t)v[1];
        if (v[0] > 0 || v[1] > 0)
            log_info("parked_replayed", LOG_S("connection_id", o->conn),
                     LOG_I("shard", o->sh->id), LOG_I("count", v[0]),
                     LOG_I("dead_lettered", v[1]), LOG_I("left", v[2]),
                     LOG_S("reason", o->removed ? "connection_removed"
                                                : "connected"));
        if (v[2] > 0)
            s->replay_more = true;
    }
    free(o);
    op_end(s);
}

static void replay_connection(struct sch *s, struct sch_shard *sh,
                              const char *conn, bool removed)
{
    struct replay_op *o = xcalloc(1, sizeof(*o));
    o->s = s;
    o->sh = sh;
    o->removed = removed;
    snprintf(o->conn, sizeof(o->conn), "%s", conn);
    char list[128], index[64], dead[48], limit[16], now[32];
    snprintf(list, sizeof(list), "%sparked:%s", sh->prefix, conn);
    snprintf(index, sizeof(index), "%sparked_conns", sh->prefix);
    snprintf(dead, sizeof(dead), "%sdead", sh->prefix);
    snprintf(limit, sizeof(limit), "%d", s->cfg->scheduler_replay_batch);
    cs_rfc3339_ms(cs_now_ms(), now);
    const char *kv[] = {list, index, dead, sh->prefix, limit, conn, now};
    eval(s, rq_replay_lua, on_replayed, o, 3, kv, 7);
}

static void on_conns_checked(int rc, const PGresult *res, void *arg)
{
    struct replay_check *c = arg;
    struct sch *s = c->s;
    if (rc) {
        if (rc != CS_ECANCELED) {
            s->m.errors_postgres++;
            log_warn("parked_check_failed",
                     LOG_S("err", res ? PQresultErrorMessage(res)
                                      : "PostgreSQL unavailable"));
        }
        goto out;
    }
    for (size_t i = 0; i < c->n && active(s); i++) {
        int row = -1;
        for (int k = 0; k < PQntuples(res); k++)
            if (strcmp(PQgetvalue(res, k, 0), c->ids[i]) == 0)
                row = k;
        bool healthy = row >= 0 && strcmp(PQgetvalue(res, row, 1), "t") == 0 &&
                       strcmp(PQgetvalue(res, row, 2), "connected") == 0;
        bool removed = row < 0 || strcmp(PQgetvalue(res, row, 1), "f") == 0 ||
                       strcmp(PQgetvalue(res, row, 2), "disconnected") == 0;
        if (healthy || removed)
            replay_connection(s, c->sh, c->ids[i], removed);
    }
out:
    check_free(c);
    op_end(s);
}

static void on_sscan(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct shard_op *o = priv;
    struct sch *s = o->s;
    struct sch_shard *sh = o->sh;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        if (reply)
            s->m.errors_redis++;
        goto out;
    }
    snprintf(sh->cursor, sizeof(sh->cursor), "%s", reply->element[0]->str);
    if (strcmp(sh->cursor, "0") != 0)
        s->replay_more = true; /* the rest of the set next tick */
    const redisReply *ids = reply->element[1];
    struct replay_check *c = xcalloc(1, sizeof(*c));
    c->s = s;
    c->sh = sh;
    c->ids = xcalloc(ids->elements ? ids->elements : 1, sizeof(char *));
    struct buf arr;
    buf_init(&arr, SIZE_MAX / 2);
    int brc = buf_adds(&arr, "{");
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        if (!id)
            continue;
        if (!is_uuid(id)) {
            log_warn("parked_connection_id_invalid",
                     LOG_I("shard", sh->id), LOG_S("connection_id", id),
                     LOG_S("msg", "its parked jobs stay until an operator "
                                  "moves them"));
            continue;
        }
        brc |= buf_addf(&arr, "%s%s", c->n ? "," : "", id);
        c->ids[c->n++] = xstrdup(id);
    }
    brc |= buf_adds(&arr, "}");
    CS_ASSERT(brc == 0);
    if (c->n == 0 || !active(s)) {
        check_free(c);
    } else {
        op_begin(s);
        const char *p[] = {arr.data};
        pga_query(s->pg,
                  "SELECT id::text, is_active, connection_status "
                  "FROM integration_connections WHERE id = ANY($1::uuid[])",
                  1, p, on_conns_checked, c);
    }
    buf_release(&arr);
out:
    free(o);
    op_end(s);
}

static void replay(struct sch *s)
{
    for (size_t i = 0; i < s->nshards; i++) {
        struct sch_shard *sh = &s->shards[i];
        struct shard_op *o = shard_op_new(s, sh);
        snprintf(o->key, sizeof(o->key), "%sparked_conns", sh->prefix);
        op_begin(s);
        if (redisAsyncCommand(s->rc, on_sscan, o, "SSCAN %s %s COUNT %s",
                              o->key, sh->cursor, SSCAN_COUNT) != REDIS_OK) {
            s->m.errors_redis++;
            free(o);
            op_end(s);
        }
    }
}

/* ---- Retention --------------------------------------------------------- */

static void on_dead_trimmed(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct shard_op *o = priv;
    struct sch *s = o->s;
    redisReply *reply = r;
    long long v[2];
    if (ints(s, reply, 2, v) && reply->elements == 5) {
        s->m.trimmed_dead_age += (uint64_t)v[0];
        s->m.trimmed_dead_count += (uint64_t)v[1];
        if (v[0] + v[1] > 0)
            log_warn("dead_letters_trimmed", LOG_S("stream", o->key),
                     LOG_I("by_age", v[0]), LOG_I("by_count", v[1]),
                     LOG_S("first_id", reply->element[2]->str),
                     LOG_S("last_id", reply->element[3]->str),
                     LOG_S("retention", s->cfg->dead_retention),
                     LOG_I("max", s->cfg->dead_max));
        if (reply->element[4]->type == REDIS_REPLY_INTEGER &&
            reply->element[4]->integer)
            s->retention_more = true;
    }
    free(o);
    op_end(s);
}

static void on_logs_trimmed(int rc, const PGresult *res, void *arg)
{
    struct sch *s = arg;
    if (rc) {
        if (rc != CS_ECANCELED) {
            s->m.errors_postgres++;
            log_warn("sync_log_retention_failed",
                     LOG_S("err", res ? PQresultErrorMessage(res)
                                      : "PostgreSQL unavailable"));
        }
    } else if (res && PQntuples(res) == 1) {
        long long n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (n > 0) {
            s->m.trimmed_sync_logs += (uint64_t)n;
            log_info("sync_logs_trimmed", LOG_I("count", n),
                     LOG_S("oldest", PQgetvalue(res, 0, 1)),
                     LOG_S("newest", PQgetvalue(res, 0, 2)),
                     LOG_S("retention", s->cfg->sync_log_retention));
        }
        if (n >= s->cfg->scheduler_retention_batch)
            s->retention_more = true;
    }
    op_end(s);
}

static void retention(struct sch *s)
{
    char age[24], max[16], limit[16];
    snprintf(age, sizeof(age), "%lld", (long long)s->dead_age_ms);
    snprintf(max, sizeof(max), "%d", s->cfg->dead_max);
    snprintf(limit, sizeof(limit), "%d", s->cfg->scheduler_retention_batch);
    if (s->dead_age_ms > 0 || s->cfg->dead_max > 0) {
        for (size_t i = 0; i < s->nshards; i++) {
            struct shard_op *o = shard_op_new(s, &s->shards[i]);
            snprintf(o->key, sizeof(o->key), "%sdead", o->sh->prefix);
            const char *kv[] = {o->key, age, max, limit};
            eval(s, rq_trim_dead_lua, on_dead_trimmed, o, 1, kv, 4);
        }
    }
    if (s->sync_log_age_ms > 0) {
        char logs_age[24];
        snprintf(logs_age, sizeof(logs_age), "%lld",
                 (long long)s->sync_log_age_ms);
        const char *p[] = {logs_age, limit};
        op_begin(s);
        /* Oldest first through the created_at index, one batch a
         * statement, so a large backlog never holds long locks. */
        pga_query(s->pg,
                  "WITH old AS (SELECT id FROM integration_sync_logs WHERE "
                  "created_at < now() - $1::bigint * interval '1 "
                  "millisecond' ORDER BY created_at LIMIT $2::int), "
                  "gone AS (DELETE FROM integration_sync_logs l USING old "
                  "WHERE l.id = old.id RETURNING l.created_at) "
                  "SELECT count(*)::text, coalesce(min(created_at)::text, ''), "
                  "coalesce(max(created_at)::text, '') FROM gone",
                  2, p, on_logs_trimmed, s);
    }
}

/* ---- The tick ---------------------------------------------------------- */

static void on_tick(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct sch *s = t->data;
    if (!active(s) || !s->rc_ready)
        return;
    if (s->tick_ops > 0) {
        s->m.ticks_skipped++;
        return;
    }
    const struct cfg *cfg = s->cfg;
    int64_t now = cs_mono_ms();
    s->tick_started_ns = cs_mono_ns();
    s->tick_ops = 1; /* held until everything below has been issued */
    for (size_t i = 0; i < s->nshards; i++) {
        s->shards[i].promote_rounds = 0;
        promote(s, &s->shards[i]);
    }
    if (now - s->last_reclaim >= cfg->worker_visibility_ms / 4) {
        s->last_reclaim = now;
        reclaim(s);
    }
    if (s->replay_more ||
        now - s->last_replay >= cfg->scheduler_replay_interval_ms) {
        s->last_replay = now;
        s->replay_more = false;
        replay(s);
    }
    if (s->retention_more ||
        now - s->last_retention >= cfg->scheduler_retention_interval_ms) {
        s->last_retention = now;
        s->retention_more = false;
        retention(s);
    }
    /*
     * OAuth tokens due within the margin, and write-ahead records of
     * refreshers that died (refresh.c). Their refreshes outlive the tick
     * (a token request can take CALLSYNC_OAUTH_TIMEOUT_MS), so they are
     * not counted in tick_ops. No fencing token guards their writes: the
     * connection's lock and the UPDATE's compare on the replaced tokens
     * order them against every refresher, leader or not (refresh.c).
     */
    sch_refresh_tick(s, now);
    op_end(s);
}

void sch_tick_start(struct sch *s)
{
    ev_timer_init(&s->tick, on_tick, s->cfg->scheduler_tick_ms / 1000.0,
                  s->cfg->scheduler_tick_ms / 1000.0);
    s->tick.data = s;
    ev_timer_start(s->loop, &s->tick);
}

void sch_tick_stop(struct sch *s)
{
    ev_timer_stop(s->loop, &s->tick);
}
