/*
 * support_pg.h - a fresh PostgreSQL database for each integration test,
 * migrated from CS_SOURCE_DIR/migrations and dropped afterwards, so tests
 * can run in parallel against one server. Header-only: every test binary
 * is one .c file.
 *
 *   static struct tpg db;
 *   static void setup(void) { tpg_setup(&db, "schema", true); }
 *   static void teardown(void) { tpg_teardown(&db); }
 *
 * The server comes from CALLSYNC_DATABASE_URL; without it the test is
 * skipped.
 */
#ifndef CS_TESTS_SUPPORT_PG_H
#define CS_TESTS_SUPPORT_PG_H

#include "pgc.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TPG_MIGRATIONS CS_SOURCE_DIR "/migrations"

struct tpg {
    char name[64];  /* database name */
    char *base_url; /* the server's URL from the environment */
    char *url;      /* URL of the fresh database */
    PGconn *c;      /* owner connection to it */
    int applied;    /* migrations applied at setup */
};

/* url with its database name replaced by db (xmalloc'd). */
static inline char *tpg_url_with_db(const char *url, const char *db)
{
    const char *scheme = strstr(url, "://");
    if (strncmp(url, "postgres", 8) != 0 || !scheme)
        return xasprintf("%s dbname=%s", url, db);
    const char *host = scheme + 3;
    size_t hostlen = strcspn(host, "/?");
    const char *rest = host + hostlen;
    const char *query = strchr(rest, '?');
    return xasprintf("%.*s/%s%s", (int)(rest - url), url, db,
                     query ? query : "");
}

static inline int tpg_count_migrations(void)
{
    DIR *d = opendir(TPG_MIGRATIONS);
    cr_assert(d, "cannot open '%s'", TPG_MIGRATIONS);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && len > 4 &&
            strcmp(e->d_name + len - 4, ".sql") == 0)
            n++;
    }
    closedir(d);
    return n;
}

static inline void tpg_admin(const char *base_url, const char *sql)
{
    struct cs_err err;
    PGconn *a = pgc_connect(base_url, &err);
    cr_assert(a, "%s", err.msg);
    int rc = pgc_exec(a, sql, 0, NULL, &err);
    PQfinish(a);
    cr_assert_eq(rc, 0, "%s: %s", sql, err.msg);
}

/* Create the database (migrated when migrate is true) and connect to it. */
static inline void tpg_setup(struct tpg *t, const char *tag, bool migrate)
{
    static int seq;
    memset(t, 0, sizeof(*t));
    const char *base = getenv("CALLSYNC_DATABASE_URL");
    if (!base || !*base)
        cr_skip_test("CALLSYNC_DATABASE_URL is not set");
    t->base_url = xstrdup(base);
    snprintf(t->name, sizeof(t->name), "cs_%s_%ld_%d", tag, (long)getpid(),
             seq++);
    char *sql = xasprintf("CREATE DATABASE %s", t->name);
    tpg_admin(t->base_url, sql);
    free(sql);
    t->url = tpg_url_with_db(t->base_url, t->name);
    struct cs_err err;
    t->c = pgc_connect(t->url, &err);
    cr_assert(t->c, "%s", err.msg);
    if (migrate) {
        t->applied = pgc_migrate(t->c, TPG_MIGRATIONS, NULL, NULL, &err);
        cr_assert_gt(t->applied, 0, "migrate: %s", err.msg);
    }
}

static inline void tpg_teardown(struct tpg *t)
{
    if (t->c)
        PQfinish(t->c);
    if (t->base_url && t->name[0]) {
        char *sql = xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)",
                              t->name);
        tpg_admin(t->base_url, sql);
        free(sql);
    }
    free(t->url);
    free(t->base_url);
    memset(t, 0, sizeof(*t));
}

/* Run SQL on the test database, asserting that it succeeds. */
static inline void tpg_exec(struct tpg *t, const char *sql)
{
    PGresult *r = PQexec(t->c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* Run a parameterised query, asserting success; caller PQclear()s. */
static inline PGresult *tpg_query(struct tpg *t, const char *sql, int n,
                                  const char *const *params)
{
    struct cs_err err;
    PGresult *r = pgc_query(t->c, sql, n, params, &err);
    cr_assert(r, "%s: %s", sql, err.msg);
    return r;
}

#endif
