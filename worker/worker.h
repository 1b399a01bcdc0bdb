/*
 * worker.h - internals of callsync-worker: one libev loop doing all I/O
 * (hiredis async, libcurl multi, libpq non-blocking) for up to
 * CALLSYNC_WORKER_INFLIGHT jobs at once. See DESIGN.md, "A job's life".
 */
#ifndef CS_WORKER_H
#define CS_WORKER_H

#include "backoff.h"
#include "cfg.h"
#include "crypto.h"
#include "httpc.h"
#include "mhttp.h"
#include "oauth_ev.h"
#include "pga.h"
#include "prov.h"
#include "rq.h"

#include <ev.h>
#include <hiredis/async.h>
#include <jansson.h>

struct wrk;
struct wlive;

#define WRK_LAT_BUCKETS 12

/* What happened to the jobs of one stream; /metrics sums the shards of a
 * provider (metrics.c). Touched only by the loop. */
struct wstats {
    uint64_t done, retried, deferred, parked, dead, reclaimed;
    uint64_t rl_waits;         /* limiter refusals and 429 pauses */
    uint64_t rl_wait_ms;       /* the waits they imposed */
    uint64_t lat_bucket[WRK_LAT_BUCKETS + 1];
    uint64_t lat_sum_us;
};

/* A stream this worker consumes: one provider in one shard. */
struct wstream {
    char *key;                 /* cs:{S}:q:<provider> */
    unsigned shard;
    const struct prov_ops *ops;
    struct bo_policy retry;    /* fleet-wide, or CALLSYNC_RETRY_POLICY_<P> */
    struct wstats stats;
};

/* A connection as the worker needs it, cached from PostgreSQL. */
struct wconn {
    char *id;
    char *type;
    char *status;
    char *auth_type;           /* "oauth", "jwt", "api_key", ... */
    bool active;
    int64_t expires_ms;        /* token_expires_at in ms, 0 when none */
    json_t *config;
    struct prov_creds creds;   /* opened secrets */
    char *owned[5];            /* the strings creds points into */
    int64_t loaded_ms;
    int refs;
    bool stale;
};

typedef void wconn_cb(int rc, struct wconn *c, void *arg);

/* Look a connection up (cached for a short time). The callback runs once:
 * at once on a cache hit, else when PostgreSQL answers. rc CS_ENOENT: no
 * such connection; CS_EIO: PostgreSQL unavailable. The callee gets a
 * reference to give back with wconn_put. */
void wconn_get(struct wrk *w, const char *id, wconn_cb *cb, void *arg);
void wconn_put(struct wrk *w, struct wconn *c);
/* The fleet-wide credentials of a provider whose jobs belong to no
 * connection (Retell outbound calls), with a reference; NULL if none is
 * configured. */
struct wconn *wconn_fleet(struct wrk *w, const char *provider);
void wconn_invalidate_all(struct wrk *w);
/* Drop one connection from the cache (its tokens were refreshed). */
void wconn_invalidate(struct wrk *w, const char *id);
/* Its tokens come from an OAuth grant (or Salesforce's JWT bearer flow)
 * that oauth_flow.h can refresh. */
bool wconn_refreshable(const struct wconn *c);
void wconn_free_all(struct wrk *w);

struct wrk {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct cs_keyring *kr;
    char consumer[128];

    redisAsyncContext *rc;     /* commands */
    redisAsyncContext *rb;     /* blocking XREADGROUP */
    redisAsyncContext *sub;    /* cache invalidation */
    bool rc_ready, rb_ready;
    char sha_finish[41], sha_retry[41], sha_dead[41], sha_park[41],
        sha_promote[41], sha_rl[41], sha_rl_pause[41];
    ev_timer reconnect;

    struct pga *pg;
    struct httpc *http;
    struct oev *oauth;         /* token refreshes after a 401 */
    struct bo_policy retry;

    struct wstream *streams;
    size_t nstreams;
    unsigned *shards;          /* distinct shards of the streams */
    size_t nshards;

    bool reading;              /* an XREADGROUP is outstanding */
    bool draining;
    bool drain_jobs_over;      /* jobs finished or handed back */
    bool stopping;             /* wrk_stop runs: disconnects are expected */
    size_t inflight;           /* jobs running */
    ev_timer tick;             /* promote, reclaim, flush */
    ev_timer drain_timer;
    ev_tstamp drain_started;
    int64_t last_reclaim_ms;
    int64_t last_heartbeat_ms;
    ev_signal sigterm, sigint;

    /* Connection cache. */
    struct wconn_slot *conns;
    struct wconn_wait *conn_waits;
    struct wconn *fleet_retell;

    /* Sync-log rows waiting to be written. */
    json_t *log_rows;
    json_t *synced_conns;      /* connection ids with a finished job */
    bool log_flushing;

    /* Counters for the log and tests. */
    uint64_t n_done, n_retried, n_dead, n_parked, n_deferred, n_reclaimed;
    uint64_t n_promoted;
    struct mhttp *ops;         /* /metrics, /healthz, /readyz, or NULL */
    struct wlive *live;        /* live-call requests (live.c) */
};

/* engine.c */
int wrk_start(struct wrk *w);
void wrk_stop(struct wrk *w);
/* Consumed streams have capacity: read more. */
void wrk_read_more(struct wrk *w);
/* A stream entry read or claimed: run its job. */
void wrk_job_start(struct wrk *w, struct wstream *st, const char *msg_id,
                   const char *job_id, const char *raw);

/* Keep running jobs from being reclaimed (see engine.c). */
void wrk_heartbeat(struct wrk *w);
bool wrk_is_running(const struct wstream *st, const char *msg_id);
/* Jobs still running; hand them back (reclaimable at once) on stop. */
size_t wrk_running(void);
void wrk_hand_back(struct wrk *w);
void wrk_free_jobs(struct wrk *w);
/* The API base URL override for a provider (sandbox), or NULL. */
const char *wrk_base_url(const struct wrk *w, const char *provider);
/* Pause a rate-limit key for everyone (a 429 or exhausted quota). */
void rl_pause_async(struct wrk *w, const char *provider, const char *account,
                    int64_t ms);
/* Redis scripting with an EVAL fallback when the script cache is empty. */
void wrk_eval(struct wrk *w, const char *lua, redisCallbackFn *cb, void *arg,
              int nkeys, const char *const *kv, int nkv);

/* live.c: live-call requests, read from cs:{S}:live apart from jobs.
 * Start after the streams and shards are known (2 on a bad config);
 * tick with the worker's tick; stop after wconn_free_all. */
int wlive_start(struct wrk *w);
void wlive_tick(struct wrk *w);
size_t wlive_running(const struct wrk *w);
void wlive_stop(struct wrk *w);

/* metrics.c: the operational endpoints (CALLSYNC_WORKER_METRICS_ADDR). */
int wrk_metrics_start(struct wrk *w);
void wrk_metrics_stop(struct wrk *w);
/* A provider request took dur_ms. */
void wrk_observe_request(struct wstream *st, int64_t dur_ms);
/* A job must wait ms for its rate limit (limiter or the provider's 429). */
void wrk_observe_wait(struct wstream *st, int64_t ms);

/* scripts.c: Lua scripts of a job's end states (promote and park are
 * shared with the scheduler: shared/rq.h). */
extern const char wrk_finish_lua[], wrk_retry_lua[], wrk_dead_lua[];

#endif
