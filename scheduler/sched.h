/*
 * sched.h - internals of callsync-scheduler: one libev loop, one async
 * Redis connection, one non-blocking PostgreSQL connection. Any number of
 * schedulers run; the one holding the Redis lease cs:lease:scheduler
 * leads, and only the leader's tick does work (DESIGN.md, "The three
 * processes").
 */
#ifndef CS_SCHED_H
#define CS_SCHED_H

#include "cfg.h"
#include "crypto.h"
#include "mhttp.h"
#include "pga.h"
#include "rq.h"

#include <ev.h>
#include <hiredis/async.h>

#define SCH_TICK_BUCKETS 12

/* Counters since start; rendered by metrics.c. */
struct sch_metrics {
    uint64_t promoted;
    uint64_t reclaimed;            /* re-queued entries of dead consumers */
    uint64_t reclaim_orphans;      /* pending ids whose entry was gone */
    uint64_t consumers_removed;
    uint64_t replayed_healthy;     /* connection connected again */
    uint64_t replayed_removed;     /* connection gone: worker dead-letters */
    uint64_t replay_malformed;     /* parked entries that were not jobs */
    uint64_t trimmed_dead_age;
    uint64_t trimmed_dead_count;
    uint64_t trimmed_sync_logs;
    uint64_t oauth_due;            /* connections found due for refresh */
    uint64_t lease_acquired;
    uint64_t lease_lost;
    uint64_t ticks;
    uint64_t ticks_skipped;        /* the previous tick was still running */
    uint64_t errors_redis;
    uint64_t errors_postgres;
    uint64_t tick_bucket[SCH_TICK_BUCKETS + 1];
    double tick_sum_s;
};

/* Per shard: where the scan of connections with parked jobs stands. */
struct sch_shard {
    unsigned id;
    char prefix[24];               /* "cs:{S}:" */
    char cursor[32];               /* SSCAN cursor of cs:{S}:parked_conns */
    int promote_rounds;            /* promote calls in this tick */
};

struct sch;
struct sch_refresh_item;
typedef void sch_release_cb(struct sch *s);

struct sch {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct rq_addr raddr;
    redisAsyncContext *rc;
    bool rc_ready;
    ev_timer reconnect;
    struct pga *pg;
    struct mhttp *http;
    ev_signal sigterm, sigint;
    ev_timer stop_timer;
    bool stopping;
    bool released;                 /* the lease is given back (or gave up) */
    int64_t stop_started;          /* mono ms of SIGTERM */

    /* Lease (lease.c). */
    char token[96];                /* ours; changes after every loss */
    bool leader;
    long long fence;               /* fencing token of our current lease */
    int64_t lease_until;           /* mono ms: act only before this */
    int64_t lease_sent;            /* mono ms of the outstanding command */
    bool lease_busy;
    ev_timer lease_timer;
    sch_release_cb *release_done; /* a release is waiting for this */

    /* Tick (tick.c). */
    ev_timer tick;
    int tick_ops;                  /* replies the current tick waits for */
    uint64_t tick_started_ns;
    int64_t last_reclaim, last_replay, last_retention;
    bool replay_more, retention_more;
    int64_t dead_age_ms, sync_log_age_ms;
    struct sch_shard *shards;
    size_t nshards;

    /* OAuth refresh ahead of expiry (refresh.c); NULL oauth: disabled. */
    struct cs_keyring *kr;
    struct httpc *oauth_http;
    struct oev *oauth;
    char *oauth_types;             /* "{hubspot,...}" for the due query */
    int64_t last_refresh, last_pending_scan;
    long long refresh_fence;       /* the lease of the last pending scan */
    bool refresh_selecting;        /* the due query is out */
    bool refresh_more;             /* the last page was full */
    bool refresh_progress;         /* this round ran a refresh */
    bool pending_scanning;
    char pending_cursor[32];
    struct sch_refresh_item *rq_head, *rq_tail;
    int refreshing;                /* refreshes started here running */

    struct sch_metrics m;
};

/* main.c: drop the Redis connection and make it again (callbacks of
 * commands in flight run with a NULL reply). */
void sch_redis_reset(struct sch *s, const char *why);

/* lease.c */
void sch_lease_start(struct sch *s);
/* Leader now, by the local clock (the lease has not run out). */
bool sch_is_leader(const struct sch *s);
/* Redis connected or lost: try for the lease at once / note it. */
void sch_lease_kick(struct sch *s);
/* Release the lease if we hold it; done(s) runs once either way (after
 * an acquisition or renewal in flight has been answered). */
void sch_lease_release(struct sch *s, sch_release_cb *done);
void sch_lease_stop(struct sch *s);

/* tick.c */
void sch_tick_start(struct sch *s);
void sch_tick_stop(struct sch *s);

/* refresh.c */
int sch_refresh_start(struct sch *s, struct cs_err *err);
/* On every tick the leader runs: start what is due. */
void sch_refresh_tick(struct sch *s, int64_t now);
/* Refreshes are running (a stop waits for them: a token answer that is
 * dropped may take the only valid refresh token with it). */
bool sch_refresh_busy(const struct sch *s);
/* Cancel what is left; before Redis, PostgreSQL and HTTP are freed. */
void sch_refresh_stop(struct sch *s);

/* metrics.c */
int sch_metrics_render(struct buf *b, void *arg);
void sch_metrics_tick(struct sch *s, double seconds);

#endif
