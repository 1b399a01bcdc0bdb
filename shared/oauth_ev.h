/*
 * oauth_ev.h - OAuth token refreshes (oauth_flow.h) on a libev loop, for
 * the long-running processes: the worker refreshes when a provider
 * answers 401, the scheduler ahead of expiry. The flow's steps go to the
 * process's own hiredis async connection, its pga (PostgreSQL) and its
 * httpc (libcurl multi); nothing blocks the loop.
 *
 * One refresh per connection per process: a caller that asks while one
 * runs waits for it and gets its result, whatever options it passed.
 * Across processes the flow's Redis lock does the same, so a fleet makes
 * one token request per connection however many jobs saw the 401.
 *
 * After a transient failure (network, 5xx, 429, Redis or PostgreSQL
 * down) the connection is left alone for a while: the provider's
 * Retry-After, else 1 s doubling with every further failure up to 5 min,
 * jittered. A caller asking during that time gets TRANSIENT at once,
 * error "backoff" and retry_after_ms = what is left, and nothing is sent.
 * A forced refresh ignores the backoff; any other outcome clears it.
 */
#ifndef CS_OAUTH_EV_H
#define CS_OAUTH_EV_H

#include "buf.h"
#include "oauth_flow.h"

#include <ev.h>
#include <hiredis/async.h>

struct oev;
struct pga;
struct httpc;

/* The process's I/O, borrowed for the life of the oev. */
struct oev_io {
    struct ev_loop *loop;
    /* The command connection to Redis now, or NULL while it is down;
     * asked before every command, since it changes on reconnects. */
    redisAsyncContext *(*redis)(void *arg);
    void *redis_arg;
    struct pga *pg;
    struct httpc *http;
};

/* Counters since start; touched only by the loop. */
struct oev_stats {
    uint64_t outcome[OFLOW_INVALID + 1]; /* refreshes run, by status */
    uint64_t joined;           /* callers that waited for a running one */
    uint64_t token_requests;   /* sent to token endpoints */
    uint64_t pending_applied;  /* interrupted refreshes' tokens applied */
    uint64_t backoff_skips;    /* answered from the backoff, nothing sent */
};

/*
 * A refresh's end. rc 0: res is the outcome (borrowed for the call).
 * rc CS_ECANCELED: the oev is being freed, res is NULL.
 */
typedef void oev_cb(int rc, const struct oflow_result *res, void *arg);

/* env is copied (its strings stay borrowed). Never NULL. */
struct oev *oev_new(const struct oev_io *io, const struct oflow_env *env);

/*
 * Cancel everything: callers waiting get CS_ECANCELED (before this
 * returns). Call it before freeing the Redis connection, the pga and the
 * httpc: a refresh waiting on one of them is released when that one runs
 * its callback. The refresh lock of an interrupted refresh expires on
 * its own in Redis.
 */
void oev_free(struct oev *o);

/*
 * Refresh conn_id with opts (copied), or wait for the refresh of it that
 * is already running here. cb runs exactly once, never before this
 * returns.
 */
void oev_refresh(struct oev *o, const char *conn_id,
                 const struct oflow_opts *opts, oev_cb *cb, void *arg);

/* A refresh of conn_id is running here. */
bool oev_running(const struct oev *o, const char *conn_id);
/* Refreshes running. */
size_t oev_inflight(const struct oev *o);
/* Connections in their backoff now. */
size_t oev_backing_off(const struct oev *o);
const struct oev_stats *oev_stats(const struct oev *o);

/*
 * Append the counters to a Prometheus text page, each series named
 * <prefix>_oauth_... ("callsync_worker", "callsync_scheduler"). Returns
 * 0 or CS_E2BIG.
 */
int oev_metrics_render(const struct oev *o, struct buf *b,
                       const char *prefix);

/* "refreshed", "fresh", "refused", "transient", "invalid": the outcome
 * label of the metrics. */
const char *oev_outcome_name(enum oflow_status s);

#endif
