/*
 * pgc.h - blocking libpq helpers for tools and tests: connecting with a
 * timeout, parameterised queries that report PostgreSQL's message, and the
 * migrations runner. The long-running processes talk to PostgreSQL without
 * blocking; they do not use these.
 */
#ifndef CS_PGC_H
#define CS_PGC_H

#include "cs.h"

#include <libpq-fe.h>

/* Connect timeout used when the URL does not name one. */
#define PGC_CONNECT_TIMEOUT_S 5

/*
 * Connect to url (libpq URI or key=value string). A connect_timeout in the
 * URL wins over PGC_CONNECT_TIMEOUT_S. Notices are dropped. Returns the
 * connection, or NULL with *err filled (-CS_EIO; the message never quotes
 * the URL, which may hold a password).
 */
PGconn *pgc_connect(const char *url, struct cs_err *err);

/*
 * Run one parameterised statement (text parameters, NULL for SQL NULL).
 * Returns the result (caller PQclear()s it), or NULL with *err filled:
 * code -CS_EIO, msg PostgreSQL's primary message, field the SQLSTATE.
 */
PGresult *pgc_query(PGconn *c, const char *sql, int nparams,
                    const char *const *params, struct cs_err *err);

/* Same, for statements whose rows are not needed: 0 or -CS_EIO. */
CS_MUST_CHECK int pgc_exec(PGconn *c, const char *sql, int nparams,
                           const char *const *params, struct cs_err *err);

/* Called after each migration is committed, with its file name. */
typedef void pgc_migrate_cb(const char *file, void *arg);

/*
 * Apply the migrations in dir that are not applied yet. Files are named
 * NNNN_name.sql and run in version order; each runs in its own transaction
 * together with its row in schema_migrations (created if missing). A
 * session advisory lock serialises concurrent runners: the second waits,
 * then finds nothing left to do. Statements that cannot run inside a
 * transaction (CREATE INDEX CONCURRENTLY) are not supported.
 *
 * Returns the number of migrations applied, or a negative -CS_E* with *err
 * naming the file and PostgreSQL's message (and line). cb may be NULL.
 */
CS_MUST_CHECK int pgc_migrate(PGconn *c, const char *dir, pgc_migrate_cb *cb,
                              void *arg, struct cs_err *err);

#endif
