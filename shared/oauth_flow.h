/*
 * oauth_flow.h - refreshing a connection's OAuth tokens so that
 * concurrent refreshers never race and a rotated refresh token is never
 * lost, whoever refreshes (a worker that got a 401, the scheduler ahead of
 * expiry, callsyncctl) and whenever one of them dies.
 *
 * Redis keys (one hash tag per connection, so both live in one slot):
 *
 *   cs:oauth:lock:{<id>}     SET NX PX <ttl> <random token>; extended and
 *                            released only by a compare-and-set script
 *   cs:oauth:pending:{<id>}  write-ahead record of tokens the endpoint
 *                            returned but PostgreSQL may not hold yet:
 *                            JSON {"v":1, "access_token", "refresh_token",
 *                            "expires_at_ms", "instance_url",
 *                            "base_access", "base_refresh", "at_ms"}; the
 *                            tokens are sealed with the keyring (never
 *                            plaintext); no TTL
 *
 * The steps, as one state machine (oflow_*):
 *
 *   1. Read the row (no lock). Fresh enough (expiry beyond now + min_valid
 *      and not the expiry the caller saw fail) and not forced: done.
 *   2. Take the lock. If another refresher holds it, wait until it is
 *      gone, then go back to 1 (most waiters stop there: the holder has
 *      refreshed).
 *   3. Under the lock: if a pending record exists, apply it to the row
 *      (one conditional UPDATE: only if the row still holds the tokens
 *      the record replaced) and delete it. Re-read the row; fresh: unlock,
 *      done.
 *   4. Ask the token endpoint (oauth.h), the lock extended to cover the
 *      request's timeout.
 *   5. Tokens: seal them and SET the pending record first, then store
 *      access token, rotated refresh token and expiry in ONE UPDATE (again
 *      conditional on the tokens read in 3), delete the pending record
 *      (only if it is still ours), unlock, and PUBLISH the agent on
 *      cs:cache:connections so caches drop the old token.
 *   6. Refused (invalid_grant, revoked, bad client): unless the row or a
 *      pending record changed meanwhile (then back to 3), mark the
 *      connection expired with a last_error saying what to do. Transient
 *      (network, timeout, 429, 5xx): change nothing, report it.
 *
 * A refresher that dies after 4 leaves the pending record; the next one
 * applies it in 3 and never presents the old refresh token, which a
 * rotating provider has already invalidated.
 *
 * Drivers: oflow_run_blocking() below (libpq, hiredis and libcurl easy;
 * for callsyncctl and tests). An event-loop driver feeds the same machine
 * from hiredis async, pga.h and httpc.h callbacks: while oflow_step() is
 * not OFLOW_STEP_DONE, perform the step it names and hand the outcome to
 * the matching oflow_*_done() (or oflow_wake() after OFLOW_STEP_SLEEP).
 */
#ifndef CS_OAUTH_FLOW_H
#define CS_OAUTH_FLOW_H

#include "crypto.h"
#include "oauth.h"

#include <libpq-fe.h>

struct redisReply;
struct redisContext;

#define OFLOW_LOCK_PREFIX "cs:oauth:lock:"
#define OFLOW_PENDING_PREFIX "cs:oauth:pending:"
#define OFLOW_CACHE_CHANNEL "cs:cache:connections"

/* Settings shared by every refresh of a process; borrowed. */
struct oflow_env {
    const struct cs_keyring *kr; /* opens and seals tokens */
    const char *clients;       /* CALLSYNC_OAUTH_CLIENTS:
                                  provider=client_id:secret[,...] */
    const char *base_urls;     /* CALLSYNC_OAUTH_BASE_URLS:
                                  provider=url[,...] (the sandbox) */
    const char *jwt_key_pem;   /* CALLSYNC_SALESFORCE_JWT_KEY */
    int timeout_ms;            /* token request timeout; 0: 15000 */
    int lock_ttl_ms;           /* how long a refresher that died keeps the
                                  lock; 0: timeout_ms + 10000 (always at
                                  least timeout_ms + 1000: the lock must
                                  outlive the request) */
    int lock_wait_ms;          /* longest wait for another refresher;
                                  0: the lock's TTL + 5000 */
    /* Tests only: called after the pending record is written and before
     * PostgreSQL is updated (a test exits the process here). */
    void (*after_pending)(void *arg);
    void *hook_arg;
};

/* What the caller wants. */
struct oflow_opts {
    bool force;                /* refresh even if the token is still valid */
    int64_t min_valid_ms;      /* a token valid at least this much longer
                                  is fresh enough (scheduler: its margin) */
    int64_t stale_expires_ms;  /* the expiry (ms) of the token that just
                                  failed with 401, 0 if it had none, -1 if
                                  unknown: a row still holding that token
                                  is refreshed even if not yet expired */
    bool pending_only;         /* only apply the pending record of an
                                  interrupted refresh, if there is one,
                                  under the lock; never ask the token
                                  endpoint. Ends FRESH (applied_pending
                                  says whether a record was applied) or
                                  TRANSIENT; a record that no longer fits
                                  the row (reconnected, disconnected,
                                  removed) is dropped */
};

enum oflow_status {
    OFLOW_REFRESHED,  /* new tokens stored by this call */
    OFLOW_FRESH,      /* nothing to do: the stored token is valid (perhaps
                         another refresher just stored it) */
    OFLOW_TRANSIENT,  /* try later; nothing changed (or new tokens wait in
                         the pending record, see message) */
    OFLOW_PERMANENT,  /* refused: the connection is now expired and its
                         last_error says what to do */
    OFLOW_INVALID,    /* cannot refresh this connection (not found, not
                         OAuth, disconnected, no client configured); the
                         row is unchanged. code: CS_ENOENT or CS_EINVAL */
};

struct oflow_result {
    enum oflow_status status;
    int code;                  /* INVALID: CS_ENOENT or CS_EINVAL */
    char connection_id[40];
    char agent_id[40];
    char provider[16];         /* oauth.h name, "" if not OAuth */
    int64_t expires_at_ms;     /* expiry of the stored token afterwards,
                                  0 when unknown */
    bool rotated;              /* a new refresh token was stored */
    bool applied_pending;      /* an interrupted refresh's tokens were
                                  applied first */
    bool waited;               /* another refresher held the lock */
    int token_requests;        /* requests this call sent (0 or 1, 2 after
                                  a rare restart) */
    int http_status;
    int64_t retry_after_ms;    /* TRANSIENT: provider's hint, -1 if none */
    char error[64];            /* stable code: invalid_grant, network,
                                  lock_busy, redis, database, ... */
    char message[320];
};

const char *oflow_status_name(enum oflow_status s);

/* ---- The state machine --------------------------------------------------- */

struct oflow;

enum oflow_step {
    OFLOW_STEP_REDIS,  /* run oflow_redis_argv(), then oflow_redis_done() */
    OFLOW_STEP_SQL,    /* run oflow_sql(), then oflow_sql_done() */
    OFLOW_STEP_HTTP,   /* send oflow_http(), then oflow_http_done() */
    OFLOW_STEP_SLEEP,  /* wait oflow_sleep_ms(), then oflow_wake() */
    OFLOW_STEP_DONE,   /* oflow_result() holds the outcome */
};

/* A refresh of one connection; env and opts are copied (env's strings
 * stay borrowed). Never NULL. */
struct oflow *oflow_new(const struct oflow_env *env, const char *conn_id,
                        const struct oflow_opts *opts);
void oflow_free(struct oflow *f);
enum oflow_step oflow_step(const struct oflow *f);

/* OFLOW_STEP_REDIS: the command (borrowed until the next call). */
void oflow_redis_argv(const struct oflow *f, int *argc, const char ***argv,
                      const size_t **argvlen);
/* The reply, or NULL when Redis could not be reached. */
void oflow_redis_done(struct oflow *f, const struct redisReply *r);

/* OFLOW_STEP_SQL: a parameterised statement (text parameters). */
void oflow_sql(const struct oflow *f, const char **sql, int *nparams,
               const char *const **params);
/* The result (PGRES_TUPLES_OK or PGRES_COMMAND_OK), or NULL and a reason
 * when the statement failed. */
void oflow_sql_done(struct oflow *f, const PGresult *r, const char *err);

/* OFLOW_STEP_HTTP: the token request and its timeout. */
const struct oauth_request *oflow_http(const struct oflow *f);
int oflow_http_timeout_ms(const struct oflow *f);
void oflow_http_done(struct oflow *f, const struct oauth_response *rsp);

/* OFLOW_STEP_SLEEP */
int64_t oflow_sleep_ms(const struct oflow *f);
void oflow_wake(struct oflow *f);

/* OFLOW_STEP_DONE */
const struct oflow_result *oflow_result(const struct oflow *f);

/* ---- Blocking driver ----------------------------------------------------- */

/*
 * Run a refresh to the end with blocking I/O: pg and redis are open
 * connections (redis already on the right database), the token request
 * goes out with libcurl easy. Fills *out and returns out->status.
 * Safe to call from several threads, each with its own connections.
 */
enum oflow_status oflow_run_blocking(const struct oflow_env *env, PGconn *pg,
                                     struct redisContext *redis,
                                     const char *conn_id,
                                     const struct oflow_opts *opts,
                                     struct oflow_result *out);

/*
 * Connect to a redis://[[user]:password@]host[:port][/db] URL (AUTH and
 * SELECT as needed) with a timeout on connect and on every command.
 * Returns the context, or NULL with err filled (the message never quotes
 * the password).
 */
struct redisContext *oflow_redis_connect(const char *url, int timeout_ms,
                                         struct cs_err *err);

#endif
