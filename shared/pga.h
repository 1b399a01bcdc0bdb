/*
 * pga.h - a non-blocking PostgreSQL client on a libev loop: one libpq
 * connection, parameterised queries queued behind each other, a deadline
 * per query, and reconnection on its own. For the long-running processes;
 * tools and tests use the blocking pgc.h.
 */
#ifndef CS_PGA_H
#define CS_PGA_H

#include "cs.h"

#include <ev.h>
#include <libpq-fe.h>

struct pga;

/*
 * Result of a query: rc 0 and the result (borrowed: valid during the
 * callback; PGRES_TUPLES_OK or PGRES_COMMAND_OK), or rc CS_EIO (the query
 * failed: res holds PostgreSQL's error, or NULL when the connection went
 * away) or CS_ETIMEDOUT / CS_ECANCELED with res NULL.
 */
typedef void pga_cb(int rc, const PGresult *res, void *arg);

/* Start connecting to url; timeout_ms bounds each connect and query. */
struct pga *pga_new(struct ev_loop *loop, const char *url, int timeout_ms);
/* Cancel queued queries (their callbacks run with CS_ECANCELED) and close. */
void pga_free(struct pga *p);
/* Connected and usable now. */
bool pga_ready(const struct pga *p);
/* No query queued or running. */
bool pga_idle(const struct pga *p);
/*
 * Queue a query with text parameters (copied). The callback runs exactly
 * once, never before this returns; when the connection is down it runs
 * with CS_EIO on the next loop iteration.
 */
void pga_query(struct pga *p, const char *sql, int nparams,
               const char *const *params, pga_cb *cb, void *arg);

#endif
