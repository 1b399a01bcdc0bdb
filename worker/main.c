/*
 * main.c - callsync-worker: configuration, Redis connections, the
 * consumer groups, reading jobs, the periodic work (promote due retries,
 * reclaim jobs of dead consumers, flush sync logs) and a graceful stop:
 * on SIGTERM it stops reading, lets jobs in flight finish within
 * CALLSYNC_WORKER_GRACE_MS, hands the rest back (reclaimable at once by
 * any worker) and exits 0.
 */
#include "worker.h"
#include "limiter.h"
#include "log.h"
#include "sentry.h"

#include <hiredis/adapters/libev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_S 0.25
#define PROMOTE_LIMIT "500"

static char *base_urls[64][2];
static size_t nbase_urls;

const char *wrk_base_url(const struct wrk *w, const char *provider)
{
    CS_UNUSED(w);
    for (size_t i = 0; i < nbase_urls; i++)
        if (strcmp(base_urls[i][0], provider) == 0)
            return base_urls[i][1];
    return NULL;
}

static int parse_base_urls(const char *spec, struct cs_err *err)
{
    const char *p = spec ? spec : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p || nbase_urls == CS_ARRAY_LEN(base_urls))
            return cs_err_set(err, CS_EINVAL, "provider_base_urls",
                              "CALLSYNC_PROVIDER_BASE_URLS must be "
                              "provider=url[,provider=url]");
        base_urls[nbase_urls][0] = xstrndup(p, (size_t)(eq - p));
        base_urls[nbase_urls][1] = xstrndup(eq + 1, (size_t)(p + n - eq - 1));
        nbase_urls++;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

void rl_pause_async(struct wrk *w, const char *provider, const char *account,
                    int64_t ms)
{
    char k1[RL_KEY_MAX], k2[RL_KEY_MAX], v[24];
    if (rl_keys(provider, account ? account : "none", k1, sizeof(k1), k2,
                sizeof(k2)))
        return;
    snprintf(v, sizeof(v), "%lld", (long long)(ms > 0 ? ms : 1));
    const char *kv[] = {k2, "-1", v};
    wrk_eval(w, rl_pause_script(), NULL, NULL, 1, kv, 3);
}

/* ---- Redis connections --------------------------------------------------- */

static void redis_connect(struct wrk *w);

static void on_reconnect(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    redis_connect(t->data);
}

static void schedule_reconnect(struct wrk *w)
{
    if (w->draining || ev_is_active(&w->reconnect))
        return;
    ev_timer_set(&w->reconnect, 0.5, 0.0);
    ev_timer_start(w->loop, &w->reconnect);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct wrk *w = ac->data;
    if (status == REDIS_OK)
        return;
    log_warn("redis_connect_failed", LOG_S("err", ac->errstr));
    if (ac == w->rc) {
        w->rc = NULL;
        w->rc_ready = false;
    } else if (ac == w->rb) {
        w->rb = NULL;
        w->rb_ready = false;
        w->reading = false;
    } else if (ac == w->sub) {
        w->sub = NULL;
    }
    schedule_reconnect(w);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    CS_UNUSED(status);
    struct wrk *w = ac->data;
    if (ac == w->rc) {
        w->rc = NULL;
        w->rc_ready = false;
        if (!w->stopping)
            log_warn("redis_disconnected");
    } else if (ac == w->rb) {
        w->rb = NULL;
        w->rb_ready = false;
        w->reading = false;
    } else if (ac == w->sub) {
        w->sub = NULL;
        wconn_invalidate_all(w);
    }
    schedule_reconnect(w);
}

static redisAsyncContext *open_redis(struct wrk *w)
{
    const char *url = w->cfg->redis_url;
    char host[256] = "127.0.0.1", pw[256] = "";
    int port = 6379, db = 0;
    const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *s = colon ? colon + 1 : p;
        snprintf(pw, sizeof(pw), "%.*s", (int)(at - s), s);
        p = at + 1;
    }
    sscanf(p, "%255[^:/]:%d/%d", host, &port, &db);
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = w;
    redisLibevAttach(w->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (pw[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", pw);
    if (db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", db);
    return ac;
}

static void on_group(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    CS_UNUSED(priv);
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "BUSYGROUP", 9) != 0)
        log_error("xgroup_failed", LOG_S("err", reply->str));
}

static void on_groups_ready(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    CS_UNUSED(priv);
    struct wrk *w = ac->data;
    if (!r)
        return;
    w->rc_ready = true;
    log_info("redis_connected");
    wrk_read_more(w);
}

static void on_message(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(priv);
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
        reply->element[0]->str &&
        strcmp(reply->element[0]->str, "message") == 0)
        wconn_invalidate_all(ac->data);
}

static void on_rb_ready(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(priv);
    struct wrk *w = ac->data;
    if (!r)
        return;
    w->rb_ready = true;
    wrk_read_more(w);
}

static void redis_connect(struct wrk *w)
{
    if (!w->rc && (w->rc = open_redis(w))) {
        /* Groups start at 0 so jobs enqueued before any worker existed
         * are delivered too. */
        for (size_t i = 0; i < w->nstreams; i++)
            redisAsyncCommand(w->rc, on_group, NULL,
                              "XGROUP CREATE %s workers 0 MKSTREAM",
                              w->streams[i].key);
        redisAsyncCommand(w->rc, on_groups_ready, NULL, "PING");
    }
    if (!w->rb && (w->rb = open_redis(w)))
        redisAsyncCommand(w->rb, on_rb_ready, NULL, "PING");
    if (!w->sub && (w->sub = open_redis(w)))
        redisAsyncCommand(w->sub, on_message, NULL,
                          "SUBSCRIBE cs:cache:connections");
    if (!w->rc || !w->rb || !w->sub)
        schedule_reconnect(w);
}

/* ---- Reading -------------------------------------------------------------- */

static struct wstream *stream_of(struct wrk *w, const char *key)
{
    for (size_t i = 0; i < w->nstreams; i++)
        if (strcmp(w->streams[i].key, key) == 0)
            return &w->streams[i];
    return NULL;
}

/* Run (or, when stopping, hand back) the entries of an XREADGROUP or
 * XAUTOCLAIM reply: [[id, [field, value, ...]], ...]. Only claimed
 * entries can be jobs already running here (XREADGROUP '>' delivers new
 * entries only), so only they are checked against the running jobs. */
static void take_entries(struct wrk *w, struct wstream *st,
                         const redisReply *entries, bool claimed)
{
    for (size_t i = 0; entries && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const char *id = e->element[0]->str;
        const redisReply *f = e->element[1];
        const char *job_id = NULL, *raw = NULL;
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            if (!f->element[k]->str)
                continue;
            if (strcmp(f->element[k]->str, "job_id") == 0)
                job_id = f->element[k + 1]->str;
            else if (strcmp(f->element[k]->str, "job") == 0)
                raw = f->element[k + 1]->str;
        }
        if (w->draining) {
            char idle[24];
            snprintf(idle, sizeof(idle), "%d",
                     w->cfg->worker_visibility_ms + 1);
            if (w->rc)
                redisAsyncCommand(w->rc, NULL, NULL,
                                  "XCLAIM %s workers %s 0 %s IDLE %s JUSTID",
                                  st->key, w->consumer, id, idle);
            continue;
        }
        if (claimed && wrk_is_running(st, id))
            continue; /* claimed back while still running here */
        wrk_job_start(w, st, id, job_id, raw);
    }
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(priv);
    struct wrk *w = ac->data;
    redisReply *reply = r;
    w->reading = false;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("xreadgroup_failed", LOG_S("err", reply->str));
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *s = reply->element[i];
            if (s->type != REDIS_REPLY_ARRAY || s->elements < 2)
                continue;
            struct wstream *st = stream_of(w, s->element[0]->str);
            if (st)
                take_entries(w, st, s->element[1], false);
        }
    }
    wrk_read_more(w);
}

void wrk_read_more(struct wrk *w)
{
    if (w->draining || w->reading || !w->rb || !w->rb_ready || !w->rc_ready)
        return;
    int cap = w->cfg->worker_inflight - (int)w->inflight;
    if (cap <= 0 || w->nstreams == 0)
        return;
    if (cap > w->cfg->worker_batch)
        cap = w->cfg->worker_batch;
    int argc = 9 + 2 * (int)w->nstreams;
    const char **argv = xcalloc((size_t)argc, sizeof(char *));
    char count[16];
    snprintf(count, sizeof(count), "%d", cap);
    int i = 0;
    argv[i++] = "XREADGROUP";
    argv[i++] = "GROUP";
    argv[i++] = "workers";
    argv[i++] = w->consumer;
    argv[i++] = "COUNT";
    argv[i++] = count;
    argv[i++] = "BLOCK";
    argv[i++] = "1000";
    argv[i++] = "STREAMS";
    for (size_t s = 0; s < w->nstreams; s++)
        argv[i++] = w->streams[s].key;
    for (size_t s = 0; s < w->nstreams; s++)
        argv[i++] = ">";
    w->reading = true;
    if (redisAsyncCommandArgv(w->rb, on_read, NULL, i, argv, NULL) !=
        REDIS_OK)
        w->reading = false;
    free(argv);
}

/* ---- Periodic work -------------------------------------------------------- */

struct claim_ctx {
    struct wrk *w;
    struct wstream *st;
};

static void on_claimed(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct claim_ctx *c = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[1]->type == REDIS_REPLY_ARRAY) {
        if (reply->element[1]->elements) {
            c->w->n_reclaimed += reply->element[1]->elements;
            c->st->stats.reclaimed += reply->element[1]->elements;
            log_info("jobs_reclaimed", LOG_S("stream", c->st->key),
                     LOG_I("count", (long long)reply->element[1]->elements));
        }
        take_entries(c->w, c->st, reply->element[1], true);
    }
    free(c);
}

static void reclaim(struct wrk *w)
{
    int cap = w->cfg->worker_inflight - (int)w->inflight;
    if (cap <= 0 || !w->rc_ready)
        return;
    char idle[24], count[16];
    snprintf(idle, sizeof(idle), "%d", w->cfg->worker_visibility_ms);
    snprintf(count, sizeof(count), "%d",
             cap < w->cfg->worker_batch ? cap : w->cfg->worker_batch);
    for (size_t i = 0; i < w->nstreams; i++) {
        struct claim_ctx *c = xmalloc(sizeof(*c));
        c->w = w;
        c->st = &w->streams[i];
        redisAsyncCommand(w->rc, on_claimed, c,
                          "XAUTOCLAIM %s workers %s %s 0-0 COUNT %s",
                          c->st->key, w->consumer, idle, count);
    }
}

static void on_promoted(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct wrk *w = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        w->n_promoted += (uint64_t)reply->integer;
}

static void promote(struct wrk *w)
{
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)cs_now_ms());
    for (size_t i = 0; i < w->nshards; i++) {
        char delayed[64], prefix[32];
        snprintf(delayed, sizeof(delayed), "cs:{%u}:delayed", w->shards[i]);
        snprintf(prefix, sizeof(prefix), "cs:{%u}:", w->shards[i]);
        const char *kv[] = {delayed, now, prefix, PROMOTE_LIMIT};
        wrk_eval(w, rq_promote_lua, on_promoted, w, 1, kv, 4);
    }
}

static void on_logs_written(int rc, const PGresult *res, void *arg)
{
    struct wrk *w = arg;
    w->log_flushing = false;
    if (rc)
        log_warn("sync_logs_not_written",
                 LOG_S("err", res ? PQresultErrorMessage(res) : "no database"));
}

static void on_synced(int rc, const PGresult *res, void *arg)
{
    CS_UNUSED(res);
    CS_UNUSED(arg);
    if (rc)
        log_warn("last_sync_not_written");
}

/* Sync logs go to PostgreSQL in batches, off the jobs' path. */
static void flush_logs(struct wrk *w)
{
    if (w->log_flushing || !pga_ready(w->pg))
        return;
    if (json_array_size(w->log_rows)) {
        char *rows = json_dumps(w->log_rows, JSON_COMPACT);
        json_array_clear(w->log_rows);
        const char *p[] = {rows};
        w->log_flushing = true;
        pga_query(
            w->pg,
            /* Joined to the connection: rows of a connection deleted
             * meanwhile are dropped, and organization_id comes along so
             * the insert trigger need not look it up row by row. */
            "INSERT INTO integration_sync_logs (integration_connection_id, "
            "organization_id, call_id, operation_type, direction, status, "
            "error_message, job_id, attempt, http_status, duration_ms, "
            "completed_at) "
            "SELECT x.integration_connection_id, c.organization_id, "
            "x.call_id, x.operation_type, 'outbound', x.status, "
            "x.error_message, x.job_id, x.attempt, NULLIF(x.http_status, 0), "
            "x.duration_ms, x.completed_at FROM "
            "json_to_recordset($1::json) AS x(integration_connection_id uuid, "
            "call_id text, operation_type text, status text, error_message "
            "text, job_id text, attempt int, http_status int, duration_ms int, "
            "completed_at timestamptz) JOIN integration_connections c ON "
            "c.id = x.integration_connection_id",
            1, p, on_logs_written, w);
        free(rows);
    }
    if (json_array_size(w->synced_conns)) {
        char *ids = json_dumps(w->synced_conns, JSON_COMPACT);
        json_array_clear(w->synced_conns);
        const char *p[] = {ids};
        pga_query(w->pg,
                  "UPDATE integration_connections SET last_sync_at = now() "
                  "WHERE id IN (SELECT DISTINCT value::uuid FROM "
                  "json_array_elements_text($1::json))",
                  1, p, on_synced, w);
        free(ids);
    }
}

static void on_tick(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct wrk *w = t->data;
    if (!w->rc_ready)
        return;
    int64_t now = cs_mono_ms();
    if (now - w->last_heartbeat_ms >= w->cfg->worker_visibility_ms / 3) {
        w->last_heartbeat_ms = now;
        wrk_heartbeat(w);
    }
    if (!w->draining) {
        wlive_tick(w);
        promote(w);
        if (now - w->last_reclaim_ms >= w->cfg->worker_visibility_ms / 4) {
            w->last_reclaim_ms = now;
            reclaim(w);
        }
        wrk_read_more(w);
    }
    flush_logs(w);
}

/* ---- Stop ------------------------------------------------------------------ */

/* After the jobs, how long a stopping worker waits for its sync logs. */
#define DRAIN_LOG_WAIT_S 6.0

static void on_final(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(r);
    CS_UNUSED(priv);
    struct wrk *w = ac->data;
    ev_break(w->loop, EVBREAK_ALL);
}

/* Sync-log rows still to write, in memory or in flight. */
static bool logs_pending(const struct wrk *w)
{
    return w->log_flushing || json_array_size(w->log_rows) ||
           json_array_size(w->synced_conns) || !pga_idle(w->pg);
}

/* Draining: wait for the jobs in flight (up to the grace period), hand
 * back the rest, then wait for their sync-log rows to reach PostgreSQL
 * (up to one database timeout more), then exit. */
static void on_drain(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(revents);
    struct wrk *w = t->data;
    double since = ev_now(EV_A) - w->drain_started;
    double grace = w->cfg->worker_grace_ms / 1000.0;
    if (!w->drain_jobs_over) {
        if ((w->inflight > 0 || wlive_running(w) > 0) && since <= grace)
            return;
        w->drain_jobs_over = true;
        if (w->inflight > 0) {
            log_warn("grace_period_over",
                     LOG_I("jobs", (long long)w->inflight));
            wrk_hand_back(w);
        }
    }
    flush_logs(w);
    if (logs_pending(w) && since <= grace + DRAIN_LOG_WAIT_S)
        return;
    if (logs_pending(w))
        log_warn("sync_logs_not_written_at_exit",
                 LOG_I("rows", (long long)json_array_size(w->log_rows)));
    ev_timer_stop(EV_A_ t);
    if (w->rc)
        redisAsyncCommand(w->rc, on_final, NULL, "PING");
    else
        ev_break(EV_A_ EVBREAK_ALL);
}

static void on_signal(EV_P_ ev_signal *s, int revents)
{
    CS_UNUSED(revents);
    struct wrk *w = s->data;
    if (w->draining)
        return;
    log_info("worker_stopping", LOG_I("signal", s->signum),
             LOG_I("jobs", (long long)w->inflight));
    w->draining = true;
    ev_timer_init(&w->drain_timer, on_drain, 0.0, 0.05);
    w->drain_timer.data = w;
    w->drain_started = ev_now(EV_A);
    ev_timer_start(EV_A_ & w->drain_timer);
}

/* ---- Start ----------------------------------------------------------------- */

static bool wanted(const char *list, const char *name)
{
    if (!list || !*list)
        return true;
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

static const char *const all_providers[] = {
    "hubspot", "zapier", "custom_rest", "retell", "salesforce",
    "gohighlevel", "pipedrive", "zoho", "monday", "housecall_pro",
    "google_calendar", "outlook", "calendly", "cal_com", "stripe", "twilio",
    "sendgrid", "segment",
};

/* CALLSYNC_RETRY_POLICY_<PROVIDER> (upper case), on top of the fleet-wide
 * policy: a provider that is down for hours more often than others can
 * get a longer cap or more attempts without changing anyone else's. */
static int provider_policy(const struct wrk *w, const char *provider,
                           struct bo_policy *out)
{
    const char *v = cfg_per_provider("CALLSYNC_RETRY_POLICY", provider);
    if (!v) {
        *out = w->retry;
        return 0;
    }
    struct cs_err err = {0};
    if (bo_policy_parse_over(v, &w->retry, out, &err)) {
        fprintf(stderr, "callsync-worker: CALLSYNC_RETRY_POLICY_%s: %s\n",
                provider, err.msg);
        return -1;
    }
    log_info("retry_policy", LOG_S("provider", provider), LOG_S("policy", v));
    return 0;
}

/* The Redis connection token refreshes use: the commands connection. */
static redisAsyncContext *oauth_redis(void *arg)
{
    struct wrk *w = arg;
    return w->rc;
}

int wrk_start(struct wrk *w)
{
    struct cs_err err = {0};
    if (parse_base_urls(w->cfg->provider_base_urls, &err)) {
        fprintf(stderr, "callsync-worker: %s\n", err.msg);
        return 2;
    }
    if (bo_policy_parse(w->cfg->retry_policy, &w->retry, &err)) {
        fprintf(stderr, "callsync-worker: CALLSYNC_RETRY_POLICY: %s\n",
                err.msg);
        return 2;
    }
    if (w->cfg->worker_consumer[0]) {
        snprintf(w->consumer, sizeof(w->consumer), "%s",
                 w->cfg->worker_consumer);
    } else {
        char host[64] = "worker";
        gethostname(host, sizeof(host) - 1);
        snprintf(w->consumer, sizeof(w->consumer), "%s-%d", host,
                 (int)getpid());
    }
    unsigned nshards = (unsigned)w->cfg->shards;
    w->streams = xcalloc(CS_ARRAY_LEN(all_providers) * nshards,
                         sizeof(*w->streams));
    w->shards = xcalloc(nshards, sizeof(*w->shards));
    for (unsigned s = 0; s < nshards; s++) {
        w->shards[w->nshards++] = s;
        for (size_t i = 0; i < CS_ARRAY_LEN(all_providers); i++) {
            const struct prov_ops *ops = prov_find(all_providers[i]);
            if (!ops || !wanted(w->cfg->worker_providers, ops->name))
                continue;
            struct wstream *st = &w->streams[w->nstreams++];
            st->key = xasprintf("cs:{%u}:q:%s", s, ops->name);
            st->shard = s;
            st->ops = ops;
            if (provider_policy(w, ops->name, &st->retry) != 0)
                return 2;
        }
    }
    w->log_rows = json_array();
    w->synced_conns = json_array();
    int mrc = wrk_metrics_start(w);
    if (mrc)
        return mrc;
    struct httpc_opts ho = {
        .connect_timeout_ms = w->cfg->worker_connect_timeout_ms,
        .timeout_ms = w->cfg->worker_request_timeout_ms,
        .max_host_conns = w->cfg->worker_host_conns,
        .max_body = 4 * 1024 * 1024,
    };
    w->http = httpc_new(w->loop, &ho);
    w->pg = pga_new(w->loop, w->cfg->database_url, 5000);
    struct oev_io oio = {
        .loop = w->loop,
        .redis = oauth_redis,
        .redis_arg = w,
        .pg = w->pg,
        .http = w->http,
    };
    struct oflow_env oenv = {
        .kr = w->kr,
        .clients = w->cfg->oauth_clients,
        .base_urls = w->cfg->oauth_base_urls,
        .jwt_key_pem = w->cfg->salesforce_jwt_key[0]
                           ? w->cfg->salesforce_jwt_key
                           : NULL,
        .timeout_ms = w->cfg->oauth_timeout_ms,
    };
    w->oauth = oev_new(&oio, &oenv);
    ev_init(&w->reconnect, on_reconnect);
    w->reconnect.data = w;
    redis_connect(w);
    if (wlive_start(w))
        return 2;
    ev_timer_init(&w->tick, on_tick, TICK_S, TICK_S);
    w->tick.data = w;
    ev_timer_start(w->loop, &w->tick);
    ev_signal_init(&w->sigterm, on_signal, SIGTERM);
    w->sigterm.data = w;
    ev_signal_start(w->loop, &w->sigterm);
    ev_signal_init(&w->sigint, on_signal, SIGINT);
    w->sigint.data = w;
    ev_signal_start(w->loop, &w->sigint);
    log_info("worker_started", LOG_S("consumer", w->consumer),
             LOG_I("streams", (long long)w->nstreams),
             LOG_I("inflight", w->cfg->worker_inflight));
    return 0;
}

void wrk_stop(struct wrk *w)
{
    w->stopping = true; /* the disconnects that follow are ours */
    /* First: jobs waiting for a refresh end here, and a refresh waiting
     * for Redis, PostgreSQL or its token request is released when those
     * are freed below. */
    oev_free(w->oauth);
    w->oauth = NULL;
    wrk_metrics_stop(w);
    ev_timer_stop(w->loop, &w->tick);
    ev_timer_stop(w->loop, &w->reconnect);
    ev_signal_stop(w->loop, &w->sigterm);
    ev_signal_stop(w->loop, &w->sigint);
    httpc_free(w->http);
    w->http = NULL;
    if (w->rc)
        redisAsyncFree(w->rc);
    if (w->rb)
        redisAsyncFree(w->rb);
    if (w->sub)
        redisAsyncFree(w->sub);
    w->rc = w->rb = w->sub = NULL;
    wrk_free_jobs(w);
    wconn_free_all(w);
    wlive_stop(w);
    pga_free(w->pg);
    for (size_t i = 0; i < w->nstreams; i++)
        free(w->streams[i].key);
    free(w->streams);
    free(w->shards);
    json_decref(w->log_rows);
    json_decref(w->synced_conns);
    for (size_t i = 0; i < nbase_urls; i++) {
        free(base_urls[i][0]);
        free(base_urls[i][1]);
    }
    nbase_urls = 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config-reference") == 0) {
            cfg_print_reference(stdout);
            return 0;
        }
        printf("usage: callsync-worker [--config-reference]\n\n"
               "Consumes jobs from the Redis streams and delivers them to "
               "the providers.\nConfigured by CALLSYNC_* environment "
               "variables.\n");
        return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
    struct cfg cfg;
    struct cs_err err = {0};
    if (cfg_load(&cfg, &err)) {
        fprintf(stderr, "callsync-worker: %s\n", err.msg);
        cfg_release(&cfg);
        return 2;
    }
    log_init("worker", cfg.log_level);
    cfg_log(&cfg);
    signal(SIGPIPE, SIG_IGN);
    if (sentry_start_cfg(&cfg, "worker", &err)) {
        fprintf(stderr, "callsync-worker: CALLSYNC_SENTRY_DSN: %s\n",
                err.msg);
        return 2;
    }
    struct wrk w;
    memset(&w, 0, sizeof(w));
    w.cfg = &cfg;
    w.loop = ev_default_loop(EVFLAG_AUTO);
    if (cfg.encryption_keys[0]) {
        w.kr = cs_keyring_new(cfg.encryption_keys, &err);
        if (!w.kr) {
            fprintf(stderr, "callsync-worker: CALLSYNC_ENCRYPTION_KEYS: %s\n",
                    err.msg);
            return 2;
        }
    }
    int rc = wrk_start(&w);
    if (rc)
        return rc;
    ev_run(w.loop, 0);
    log_info("worker_stopped", LOG_I("done", (long long)w.n_done),
             LOG_I("retried", (long long)w.n_retried),
             LOG_I("dead", (long long)w.n_dead),
             LOG_I("parked", (long long)w.n_parked));
    wrk_stop(&w);
    sentry_stop(SENTRY_FLUSH_MS);
    cs_keyring_free(w.kr);
    cfg_release(&cfg);
    return 0;
}
