/*
 * main.c - callsync-scheduler: configuration, the Redis and PostgreSQL
 * connections, the operational listener, and a clean stop. Run two or
 * more: one leads through the lease (lease.c) and does the periodic work
 * (tick.c); the others stand by and take over within the lease time when
 * it dies, or at once when it stops. SIGTERM or SIGINT: stop the work,
 * release the lease if held, let token refreshes in flight end (a token
 * answer dropped halfway may carry the only valid refresh token), exit 0.
 */
#include "sched.h"
#include "dur.h"
#include "log.h"
#include "sentry.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECONNECT_S 0.5
#define STOP_GRACE_S 3
#define STOP_POLL_S 0.05
#define PG_TIMEOUT_MS 5000

/* ---- Redis -------------------------------------------------------------- */

static void redis_connect(struct sch *s);

static void on_reconnect(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    redis_connect(t->data);
}

static void schedule_reconnect(struct sch *s)
{
    if (s->stopping || ev_is_active(&s->reconnect))
        return;
    ev_timer_set(&s->reconnect, RECONNECT_S, 0.0);
    ev_timer_start(s->loop, &s->reconnect);
}

static void forget_redis(struct sch *s, const redisAsyncContext *ac)
{
    if (ac != s->rc)
        return;
    s->rc = NULL;
    s->rc_ready = false;
    schedule_reconnect(s);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct sch *s = ac->data;
    if (status == REDIS_OK)
        return;
    log_warn("redis_connect_failed", LOG_S("err", ac->errstr));
    forget_redis(s, ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct sch *s = ac->data;
    if (ac == s->rc && !s->stopping)
        log_warn("redis_disconnected",
                 LOG_S("err", status == REDIS_OK ? "closed" : ac->errstr));
    forget_redis(s, ac);
}

static void on_ready(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(priv);
    struct sch *s = ac->data;
    redisReply *reply = r;
    if (!reply || ac != s->rc)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* AUTH or SELECT failed: nothing will work on this connection. */
        log_error("redis_not_usable", LOG_S("err", reply->str));
        redisAsyncDisconnect(ac);
        return;
    }
    s->rc_ready = true;
    log_info("redis_connected");
    sch_lease_kick(s);
}

static void redis_connect(struct sch *s)
{
    if (s->rc || s->stopping)
        return;
    s->rc = rq_connect(s->loop, &s->raddr);
    if (!s->rc) {
        schedule_reconnect(s);
        return;
    }
    s->rc->data = s;
    redisAsyncSetConnectCallback(s->rc, on_connect);
    redisAsyncSetDisconnectCallback(s->rc, on_disconnect);
    redisAsyncCommand(s->rc, on_ready, NULL, "PING");
}

void sch_redis_reset(struct sch *s, const char *why)
{
    redisAsyncContext *ac = s->rc;
    if (!ac)
        return;
    log_warn("redis_reset", LOG_S("reason", why));
    s->rc = NULL;
    s->rc_ready = false;
    redisAsyncFree(ac);
    schedule_reconnect(s);
}

/* ---- Readiness ----------------------------------------------------------- */

static bool ready(json_t *body, void *arg)
{
    struct sch *s = arg;
    bool redis = s->rc && s->rc_ready;
    bool pg = pga_ready(s->pg);
    json_object_set_new(body, "redis", json_boolean(redis));
    json_object_set_new(body, "postgres", json_boolean(pg));
    json_object_set_new(body, "leader", json_boolean(sch_is_leader(s)));
    json_object_set_new(body, "fence", json_integer(s->fence));
    return redis && pg && !s->stopping;
}

/* ---- Stop ---------------------------------------------------------------- */

/* Exit once the lease is given back (or that gave up) and the token
 * refreshes in flight have ended (or their time is up). */
static void maybe_exit(struct sch *s)
{
    int64_t waited = cs_mono_ms() - s->stop_started;
    if (!s->released) {
        if (waited < STOP_GRACE_S * 1000)
            return;
        log_warn("lease_release_timed_out");
        s->released = true;
    }
    if (sch_refresh_busy(s)) {
        if (waited < s->cfg->oauth_timeout_ms + STOP_GRACE_S * 1000)
            return;
        log_warn("oauth_refresh_abandoned",
                 LOG_S("msg", "a token request did not end in time"));
    }
    ev_break(s->loop, EVBREAK_ALL);
}

static void on_released(struct sch *s)
{
    s->released = true;
    maybe_exit(s);
}

static void on_stop_timer(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    maybe_exit(t->data);
}

static void on_signal(EV_P_ ev_signal *w, int revents)
{
    CS_UNUSED(revents);
    struct sch *s = w->data;
    if (s->stopping)
        return;
    log_info("scheduler_stopping", LOG_I("signal", w->signum),
             LOG_I("leader", sch_is_leader(s)));
    s->stopping = true;
    s->stop_started = cs_mono_ms();
    sch_tick_stop(s);
    ev_timer_init(&s->stop_timer, on_stop_timer, STOP_POLL_S, STOP_POLL_S);
    s->stop_timer.data = s;
    ev_timer_start(EV_A_ & s->stop_timer);
    sch_lease_release(s, on_released);
}

/* ---- Start --------------------------------------------------------------- */

static int start(struct sch *s, struct cs_err *err)
{
    const struct cfg *cfg = s->cfg;
    if (rq_parse_url(cfg->redis_url, &s->raddr, err))
        return CS_EINVAL;
    /* cfg_load has checked both durations. */
    if (dur_parse_ms(cfg->dead_retention, strlen(cfg->dead_retention),
                     &s->dead_age_ms) ||
        dur_parse_ms(cfg->sync_log_retention,
                     strlen(cfg->sync_log_retention), &s->sync_log_age_ms))
        return cs_err_set(err, CS_EINVAL, "dead_retention",
                          "bad retention duration");
    s->nshards = (size_t)cfg->shards;
    s->shards = xcalloc(s->nshards, sizeof(*s->shards));
    for (size_t i = 0; i < s->nshards; i++) {
        s->shards[i].id = (unsigned)i;
        snprintf(s->shards[i].prefix, sizeof(s->shards[i].prefix),
                 "cs:{%u}:", (unsigned)i);
        snprintf(s->shards[i].cursor, sizeof(s->shards[i].cursor), "0");
    }
    if (cfg->scheduler_metrics_addr[0]) {
        struct mhttp_opts o = {
            .addr = cfg->scheduler_metrics_addr,
            .metrics = sch_metrics_render,
            .ready = ready,
            .arg = s,
        };
        struct cs_err herr = {0};
        s->http = mhttp_new(s->loop, &o, &herr);
        if (!s->http)
            return cs_err_set(err, CS_EINVAL, "scheduler_metrics_addr",
                              "CALLSYNC_SCHEDULER_METRICS_ADDR: %s",
                              herr.msg);
    }
    s->pg = pga_new(s->loop, cfg->database_url, PG_TIMEOUT_MS);
    if (sch_refresh_start(s, err))
        return CS_EINVAL;
    ev_init(&s->reconnect, on_reconnect);
    s->reconnect.data = s;
    sch_lease_start(s);
    redis_connect(s);
    sch_tick_start(s);
    ev_signal_init(&s->sigterm, on_signal, SIGTERM);
    s->sigterm.data = s;
    ev_signal_start(s->loop, &s->sigterm);
    ev_signal_init(&s->sigint, on_signal, SIGINT);
    s->sigint.data = s;
    ev_signal_start(s->loop, &s->sigint);
    log_info("scheduler_started", LOG_S("token", s->token),
             LOG_I("shards", (long long)s->nshards),
             LOG_I("lease_ms", cfg->scheduler_lease_ms),
             LOG_I("tick_ms", cfg->scheduler_tick_ms),
             LOG_I("metrics_port", s->http ? mhttp_port(s->http) : 0));
    return 0;
}

static void stop(struct sch *s)
{
    sch_refresh_stop(s);
    sch_tick_stop(s);
    sch_lease_stop(s);
    ev_timer_stop(s->loop, &s->reconnect);
    ev_timer_stop(s->loop, &s->stop_timer);
    ev_signal_stop(s->loop, &s->sigterm);
    ev_signal_stop(s->loop, &s->sigint);
    mhttp_free(s->http);
    s->http = NULL;
    /* Callbacks of commands still in flight run now, with no reply. */
    redisAsyncContext *ac = s->rc;
    s->rc = NULL;
    s->rc_ready = false;
    if (ac)
        redisAsyncFree(ac);
    pga_free(s->pg);
    s->pg = NULL;
    free(s->shards);
    s->shards = NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config-reference") == 0) {
            cfg_print_reference(stdout);
            return 0;
        }
        printf("usage: callsync-scheduler [--config-reference]\n\n"
               "Leads through a Redis lease (others stand by): promotes due "
               "retries,\nre-queues jobs of dead consumers, replays parked "
               "jobs and trims\ndead letters and sync logs. Configured by "
               "CALLSYNC_* environment variables.\n");
        return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
    struct cfg cfg;
    struct cs_err err = {0};
    if (cfg_load(&cfg, &err)) {
        fprintf(stderr, "callsync-scheduler: %s\n", err.msg);
        cfg_release(&cfg);
        return 2;
    }
    log_init("scheduler", cfg.log_level);
    cfg_log(&cfg);
    signal(SIGPIPE, SIG_IGN);
    if (sentry_start_cfg(&cfg, "scheduler", &err)) {
        fprintf(stderr, "callsync-scheduler: CALLSYNC_SENTRY_DSN: %s\n",
                err.msg);
        cfg_release(&cfg);
        return 2;
    }
    struct sch s;
    memset(&s, 0, sizeof(s));
    s.cfg = &cfg;
    s.loop = ev_default_loop(EVFLAG_AUTO);
    ev_init(&s.stop_timer, on_stop_timer);
    if (start(&s, &err)) {
        fprintf(stderr, "callsync-scheduler: %s\n", err.msg);
        stop(&s);
        cfg_release(&cfg);
        return 2;
    }
    ev_run(s.loop, 0);
    stop(&s);
    sentry_stop(SENTRY_FLUSH_MS);
    log_info("scheduler_stopped", LOG_I("promoted", (long long)s.m.promoted),
             LOG_I("reclaimed", (long long)s.m.reclaimed),
             LOG_I("replayed", (long long)(s.m.replayed_healthy +
                                           s.m.replayed_removed)));
    cfg_release(&cfg);
    return 0;
}
