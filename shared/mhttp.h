/*
 * mhttp.h - a small HTTP/1.1 listener for a process's operational
 * endpoints, on the process's libev loop:
 *
 *   GET /metrics   Prometheus text format 0.0.4, rendered by a callback
 *   GET /healthz   200 {"status":"ok"} while the loop runs
 *   GET /readyz    200 or 503 with a JSON body, as a callback decides
 *
 * HEAD is answered like GET without a body. Any other path is 404 and any
 * other method 405, both with {"error": code, "message": text}. One
 * request per connection (answers carry "Connection: close"); the request
 * line and headers are capped (431 above), and a client gets timeout_ms
 * from accept to send its request (408 after). It is meant for probes
 * and scrapers on a private address, not for the internet.
 */
#ifndef CS_MHTTP_H
#define CS_MHTTP_H

#include "buf.h"
#include "cs.h"

#include <ev.h>
#include <jansson.h>

struct mhttp;
/* An application request waiting for its answer (see mhttp_route_cb). */
struct mhttp_req;

/* Append the metrics in text format 0.0.4 to out (capped at 8 MiB).
 * Called once per scrape. Returns 0, or CS_E2BIG when an append failed
 * (the scrape is then answered 500 rather than with a partial page). */
typedef int mhttp_metrics_cb(struct buf *out, void *arg);
/* Fill body (an empty JSON object, owned by the caller) and return whether
 * the process is ready: 200 if so, else 503. */
typedef bool mhttp_ready_cb(json_t *body, void *arg);
/*
 * Application routes: called for every request whose path is none of the
 * three above, with the method ("GET", "POST", ...) and the request target
 * as sent (path and query; borrowed for the call). Return false to leave
 * it to the 404; return true to take it, and then answer it exactly once
 * with mhttp_reply(), now or later. While it waits the connection reads
 * nothing more; after route_timeout_ms it is answered 504 on its own (the
 * later mhttp_reply then only frees the request).
 */
typedef bool mhttp_route_cb(struct mhttp_req *r, const char *method,
                            const char *target, void *arg);

struct mhttp_opts {
    const char *addr;            /* "host:port", "[v6]:port" or ":port"
                                    (every interface); port 0 picks one */
    mhttp_metrics_cb *metrics;   /* NULL: /metrics is 404 */
    mhttp_ready_cb *ready;       /* NULL: always ready */
    void *arg;                   /* passed to both callbacks */
    int timeout_ms;              /* 0: 5000 */
    size_t max_header;           /* request line + headers; 0: 8192 */
    int max_conns;               /* open connections; 0: 64 */
    mhttp_route_cb *route;       /* NULL: only the three endpoints */
    int route_timeout_ms;        /* 0: 30000 */
};

/*
 * Answer an application request and free it: status, Content-Type, extra
 * header lines ("Location: ...\r\n", or NULL) and the body. The client
 * may be gone (closed, timed out, mhttp_free): then this only frees r.
 */
void mhttp_reply(struct mhttp_req *r, int status, const char *ctype,
                 const char *extra, const char *body, size_t len);
/* The reason phrase of a status ("Found", "Conflict", ...). */
const char *mhttp_reason(int status);

/*
 * Listen on o->addr and serve on loop. Returns NULL and fills *err when
 * the address is malformed or cannot be bound. Callbacks run on the loop,
 * never before this returns.
 */
struct mhttp *mhttp_new(struct ev_loop *loop, const struct mhttp_opts *o,
                        struct cs_err *err);
/* Close the listener and every connection. NULL does nothing. */
void mhttp_free(struct mhttp *m);
/* The port listened on (useful after asking for port 0). */
int mhttp_port(const struct mhttp *m);

/*
 * Parse "host:port", "[v6]:port" or ":port" into host (empty for every
 * interface) and port. 0, or CS_EINVAL with *err filled.
 */
CS_MUST_CHECK int mhttp_parse_addr(const char *addr, char *host,
                                   size_t hostlen, int *port,
                                   struct cs_err *err);

#endif
