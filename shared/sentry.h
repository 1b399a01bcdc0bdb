/*
 * sentry.h - errors of any callsync process reported to Sentry (seed 004).
 *
 * With a DSN configured (CALLSYNC_SENTRY_DSN), every log line at level
 * error becomes a Sentry event: the log's event name is the message, its
 * fields are the event's extra data (secrets scrubbed by redact.h), the
 * process is a tag. Events go out as envelopes (POST
 * <scheme>://<host>/api/<project>/envelope/, X-Sentry-Auth) from one
 * sender thread with libcurl, so no event loop ever waits for Sentry and
 * a process with several loops (ingest) shares one sender.
 *
 * Bounded on every side: a queue of SENTRY_QUEUE_MAX events (more are
 * dropped and counted), at most SENTRY_BURST events of one name per
 * minute (a Redis outage logs the same error many times), and a 429 or
 * X-Sentry-Rate-Limits answer pauses sending for as long as Sentry asks.
 * Sentry being down never affects the process beyond a dropped report.
 */
#ifndef CS_SENTRY_H
#define CS_SENTRY_H

#include "cs.h"

#include <jansson.h>

#define SENTRY_QUEUE_MAX 256
#define SENTRY_BURST 10
/* How long a stopping process gives queued reports. */
#define SENTRY_FLUSH_MS 2000

struct sentry_dsn {
    char envelope_url[512];  /* <scheme>://<host>[:port][/path]/api/<id>/envelope/ */
    char public_key[128];
    char project_id[64];
    char dsn[1024];          /* as given, for the envelope header */
};

/*
 * Parse "<scheme>://<public_key>[:<secret>]@<host>[:port][/path]/<project>"
 * (scheme http or https). 0, or CS_EINVAL with err naming what is wrong.
 */
CS_MUST_CHECK int sentry_dsn_parse(const char *dsn, struct sentry_dsn *out,
                                   struct cs_err *err);

struct sentry_opts {
    const char *dsn;
    const char *environment;     /* e.g. "production"; NULL: none */
    const char *release;         /* e.g. "callsync@1.0.0"; NULL: none */
    const char *service;         /* "ingest", "worker", ... (a tag) */
    int timeout_ms;              /* per request; 0: 5000 */
};

/*
 * The event document for one log line (fields: the log's JSON object),
 * scrubbed. event_id is 32 hex digits. The caller frees the result.
 */
json_t *sentry_event(const struct sentry_opts *o, const char *event_id,
                     int level, const char *event, const json_t *fields,
                     int64_t now_ms);

/* The envelope carrying one event (xmalloc'd, *len bytes). */
char *sentry_envelope(const struct sentry_dsn *d, const char *event_id,
                      const json_t *event, int64_t now_ms, size_t *len);

/* The X-Sentry-Auth header value (xmalloc'd). */
char *sentry_auth_header(const struct sentry_dsn *d);

/*
 * Milliseconds Sentry asks us to wait from its answer: Retry-After
 * (seconds) or the longest "error" / all-categories entry of
 * X-Sentry-Rate-Limits; 60 s for a 429 without either; 0 to go on.
 */
int64_t sentry_backoff_ms(int status, const char *retry_after,
                          const char *rate_limits);

/*
 * Start reporting: parse the DSN, start the sender thread and hook the
 * log. Returns 0 (also when o->dsn is empty: nothing to do), or CS_EINVAL
 * with err filled for a bad DSN.
 */
CS_MUST_CHECK int sentry_start(const struct sentry_opts *o,
                               struct cs_err *err);
/* The same from the configuration table (CALLSYNC_SENTRY_*). */
struct cfg;
CS_MUST_CHECK int sentry_start_cfg(const struct cfg *cfg, const char *service,
                                   struct cs_err *err);
/* Unhook, send what is queued for up to flush_ms, stop the thread. Call it
 * once no other thread logs any more. */
void sentry_stop(int flush_ms);

struct sentry_stats {
    uint64_t sent, dropped, failed, suppressed;
};
void sentry_get_stats(struct sentry_stats *out);

#endif
