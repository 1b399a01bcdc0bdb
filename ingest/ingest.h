/*
 * ingest.h - internals shared by the files of callsync-ingest.
 *
 * One process runs several event loops (threads), each with its own
 * SO_REUSEPORT listener, Redis connection, PostgreSQL connection and
 * connection cache, so that loops never share mutable state except the
 * metrics counters (atomics).
 */
#ifndef CS_INGEST_H
#define CS_INGEST_H

#include "buf.h"
#include "cfg.h"
#include "crypto.h"
#include "norm.h"

#include <ev.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdatomic.h>

struct ing_loop;
struct ing_conn;
struct store;

/* ---- Routes and metrics ------------------------------------------------ */

enum ing_route {
    R_RETELL,
    R_CALLRAIL,
    R_CALCOM,
    R_STRIPE,
    R_STANDARD,
    R_OUTBOUND,
    R_TOOLS,
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_OTHER,
    R__COUNT
};

/* Why a request was refused; each has a counter. */
enum ing_reason {
    RJ_MALFORMED_HTTP,
    RJ_HEADER_TOO_LARGE,
    RJ_BODY_TOO_LARGE,
    RJ_UNSUPPORTED_MEDIA_TYPE,
    RJ_TIMEOUT,
    RJ_MISSING_SIGNATURE,
    RJ_MALFORMED_SIGNATURE,
    RJ_STALE_TIMESTAMP,
    RJ_BAD_SIGNATURE,
    RJ_INVALID_JSON,
    RJ_INVALID_FIELD,
    RJ_UNKNOWN_AGENT,
    RJ_UNKNOWN_CONNECTION,
    RJ_UNKNOWN_SOURCE,
    RJ_NOT_FOUND,
    RJ_METHOD_NOT_ALLOWED,
    RJ_NOT_CONFIGURED,
    RJ_REDIS_UNAVAILABLE,
    RJ_DB_UNAVAILABLE,
    RJ_OVERLOADED,
    RJ__COUNT
};

const char *ing_route_name(enum ing_route r);
const char *ing_reason_name(enum ing_reason r);
void met_request(enum ing_route r, int status, uint64_t dur_ns);
void met_reject(enum ing_reason why);
void met_jobs(const char *provider, unsigned n);
void met_duplicate(enum ing_route r);
void met_ignored(enum ing_route r);
void met_cache(bool hit);
void met_conns(int delta);
/* A live-call tool request ended: outcome names how (see tools.c). */
void met_live(const char *outcome);
/* Render every metric in Prometheus text format into b. */
void met_render(struct buf *b);

/* ---- Agents and their connections (cached) ----------------------------- */

struct ing_connection {
    char *id;
    char *type;                /* integration_type: the job's provider */
    char *status;
    json_t *conditions;        /* config.sync_conditions, may be NULL */
    char *webhook_secret;      /* opened (plaintext) or NULL */
    bool live_tools;           /* config.live_tools: the live calendar */
};

struct ing_agent {
    char *id;
    char *org_id;
    char *sync_on;             /* "call_analyzed" or "call_ended" */
    char *retell_agent_id;
    char *outbound_from;       /* E.164 or NULL */
    char *outbound_secret;     /* opened or NULL */
    size_t nconns;
    struct ing_connection *conns;
};

/* What to look an agent up by. */
enum store_key {
    SK_AGENT_ID,
    SK_RETELL_AGENT,
    SK_CALLRAIL_COMPANY,
    SK_CONNECTION_ID,
};

/*
 * Result of a look-up: 0 and *agent (borrowed from the cache, valid only
 * during the callback), CS_ENOENT (no such agent), or CS_EIO / CS_ETIMEDOUT
 * (PostgreSQL unavailable).
 */
typedef void store_lookup_cb(int rc, const struct ing_agent *agent,
                             void *arg);
/* Result of an enqueue: 0 with reply = ["accepted"|"duplicate", ids...]
 * as a JSON array (borrowed), or CS_EIO / CS_ETIMEDOUT. */
typedef void store_enqueue_cb(int rc, bool duplicate, const char *job_ids,
                              void *arg);

struct store *store_new(struct ing_loop *l, struct ev_loop *loop,
                        const struct cfg *cfg, const struct cs_keyring *kr);
void store_free(struct store *s);
/* Begin closing connections; returns true when nothing is pending. */
bool store_idle(const struct store *s);
bool store_redis_ready(const struct store *s);
bool store_pg_ready(const struct store *s);
/*
 * Look an agent up; the callback runs exactly once, possibly before this
 * returns (cache hit).
 */
void store_lookup(struct store *s, enum store_key k, const char *value,
                  store_lookup_cb *cb, void *arg);

/* One job for the enqueue script. */
struct store_job {
    char job_id[33];
    const char *provider;
    char *payload;             /* JSON, owned by the caller */
};

/*
 * Enqueue jobs atomically with the de-dup key: one Redis script call. The
 * callback runs exactly once.
 */
void store_enqueue(struct store *s, unsigned shard, const char *seen_key,
                   int seen_ttl_s, const struct store_job *jobs, size_t n,
                   store_enqueue_cb *cb, void *arg);

/* ---- Live requests (live.c) ------------------------------------------- */

struct live;

/*
 * The answer to a live request: rc 0 with the worker's reply (a JSON
 * object {req_id, ok, result | error}, borrowed), CS_ETIMEDOUT when
 * CALLSYNC_LIVE_DEADLINE_MS passed first, CS_EIO when Redis did not take
 * the request, CS_ECANCELED when the loop stops.
 */
typedef void live_cb(int rc, json_t *reply, void *arg);

/* NULL if the Redis URL cannot be parsed. */
struct live *live_new(struct ev_loop *loop, const struct cfg *cfg);
/* Pending requests are answered CS_ECANCELED. */
void live_free(struct live *lv);
/*
 * Queue a request on cs:{shard}:live (one XADD) and wait for its reply
 * without blocking. cb runs exactly once, possibly before this returns
 * (Redis unavailable).
 */
void live_request(struct live *lv, unsigned shard, const char *fn,
                  const char *connection_id, const char *call_json,
                  const char *args_json, live_cb *cb, void *arg);
/* This loop's reply list. */
const char *live_reply_list(const struct live *lv);

/* ---- HTTP -------------------------------------------------------------- */

#define ING_MAX_HEADERS 64

struct ing_header {
    char *name;                /* lower-cased */
    char *value;
};

struct ing_request {
    enum http_method method;
    char *url;                 /* path and query as sent */
    char *path;                /* decoded path without query */
    size_t nheaders;
    struct ing_header headers[ING_MAX_HEADERS];
    struct buf body;
    uint64_t started_ns;
    enum ing_route route;
};

/* Case-insensitive header look-up; NULL if absent. */
const char *ing_header(const struct ing_request *rq, const char *name);

/*
 * Answer the connection's current request. body is JSON (or text for
 * /metrics). extra_headers is NULL or CRLF-terminated header lines. After
 * this the request may not be touched.
 */
void ing_respond(struct ing_conn *c, int status, const char *content_type,
                 const char *extra_headers, const char *body, size_t len);
/* Answer {"error": code, "message": msg} and count the rejection. */
void ing_fail(struct ing_conn *c, int status, enum ing_reason why,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Answer a JSON value (stolen). */
void ing_respond_json(struct ing_conn *c, int status, json_t *body);
/* The connection's request and loop. */
struct ing_request *ing_conn_request(struct ing_conn *c);
struct ing_loop *ing_conn_loop(struct ing_conn *c);
/* Keep the connection alive across asynchronous work (refcount). */
void ing_conn_hold(struct ing_conn *c);
/* Drop a hold; returns false if the client went away meanwhile (the
 * request must then not be answered). */
bool ing_conn_release(struct ing_conn *c);

/* ---- Loops ------------------------------------------------------------- */

struct ing_loop {
    struct ev_loop *loop;
    const struct cfg *cfg;
    const struct cs_keyring *kr;
    struct store *store;
    struct live *live;
    int listen_fd;
    ev_io accept_w;
    ev_async stop_w;
    ev_timer drain_w;
    ev_tstamp drain_started;
    bool draining;
    int nconns;
    struct ing_conn *conns;    /* doubly linked list of open connections */
    /* Parsed once at startup from cfg. */
    const char *const *retell_keys;
    size_t nretell;
    const char *const *callrail_secrets;
    size_t ncallrail;
};

/* Parsed secrets shared read-only by all loops. */
struct ing_secrets {
    char **retell;
    size_t nretell;
    char **callrail;
    size_t ncallrail;
    char **std_sources;        /* parallel arrays: source name, secret */
    char **std_secrets;
    size_t nstd;
};
extern struct ing_secrets ing_secrets;

void ing_accept_cb(EV_P_ ev_io *w, int revents);
/* Close idle keep-alive connections (draining). */
void ing_close_idle(struct ing_loop *l);
/* Close every connection (the loop has ended). */
void ing_close_all(struct ing_loop *l);

/* Name the reason for a refusal decided in ing_route_early. */
void ing_set_early_reason(struct ing_conn *c, enum ing_reason why);

/* Refuse a failed signature check (rc from shared/sig.h) or a body that
 * does not validate (routes.c). */
void ing_fail_sig(struct ing_conn *c, int rc, const char *what);
void ing_fail_norm(struct ing_conn *c, const struct cs_err *err);
/* /tools/retell[/<function>] (tools.c). */
void ing_tools_retell(struct ing_conn *c, struct ing_request *rq);

/* Dispatch a complete request (routes.c). */
void ing_dispatch(struct ing_conn *c, struct ing_request *rq);
/* Route a path after the headers (routes.c); sets rq->route. Returns the
 * HTTP status to refuse with before reading the body, or 0. */
int ing_route_early(struct ing_conn *c, struct ing_request *rq);

#endif
