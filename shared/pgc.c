/*
 * pgc.c - blocking libpq helpers and the migrations runner; see pgc.h.
 */
#include "pgc.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key of the session advisory lock that serialises migration runners. */
#define MIGRATE_LOCK_KEY "7160389451253021"
/* Largest migration file we read. */
#define MIGRATION_MAX (4 * 1024 * 1024)

static void drop_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Copy the first line of a libpq message, which ends in a newline. */
static void first_line(char *out, size_t cap, const char *msg)
{
    size_t n = msg ? strcspn(msg, "\r\n") : 0;
    snprintf(out, cap, "%.*s", (int)n, msg ? msg : "");
}

PGconn *pgc_connect(const char *url, struct cs_err *err)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", PGC_CONNECT_TIMEOUT_S);
    /* Later keywords win; the URL is expanded last so that its own
     * connect_timeout or application_name take precedence. */
    const char *const keys[] = {"connect_timeout", "application_name",
                                "dbname", NULL};
    const char *const vals[] = {timeout, "callsync", url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        cs_err_set(err, CS_ENOMEM, "", "cannot connect to PostgreSQL: "
                                       "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char line[128];
        first_line(line, sizeof(line), PQerrorMessage(c));
        cs_err_set(err, CS_EIO, "", "cannot connect to PostgreSQL: %s", line);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, drop_notice, NULL);
    return c;
}

static void fill_pg_error(struct cs_err *err, PGconn *c, const PGresult *r)
{
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                        : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char line[160];
    first_line(line, sizeof(line), msg ? msg : PQerrorMessage(c));
    cs_err_set(err, CS_EIO, state ? state : "", "%s", line);
}

PGresult *pgc_query(PGconn *c, const char *sql, int nparams,
                    const char *const *params, struct cs_err *err)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    fill_pg_error(err, c, r);
    PQclear(r);
    return NULL;
}

int pgc_exec(PGconn *c, const char *sql, int nparams,
             const char *const *params, struct cs_err *err)
{
    PGresult *r = pgc_query(c, sql, nparams, params, err);
    if (!r)
        return CS_EIO;
    PQclear(r);
    return 0;
}

struct migration {
    int version;
    char *file;
};

static int cmp_migration(const void *a, const void *b)
{
    const struct migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

/* "0001_schema.sql" -> 1; -1 if the name is not a migration's. */
static int parse_version(const char *name)
{
    size_t digits = strspn(name, "0123456789");
    size_t len = strlen(name);
    if (digits == 0 || digits > 9 || name[digits] != '_' || len < 5 ||
        strcmp(name + len - 4, ".sql") != 0 || len - 4 <= digits + 1)
        return -1;
    return atoi(name);
}

static void free_list(struct migration *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].file);
    free(m);
}

static int list_migrations(const char *dir, struct migration **out,
                           size_t *count, struct cs_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return cs_err_set(err, CS_ENOENT, "migrations_dir",
                          "cannot open migrations folder '%s'", dir);
    struct migration *m = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int v = parse_version(e->d_name);
        if (v < 0)
            continue;
        m = xrealloc(m, (n + 1) * sizeof(*m));
        m[n].version = v;
        m[n].file = xstrdup(e->d_name);
        n++;
    }
    closedir(d);
    if (n)
        qsort(m, n, sizeof(*m), cmp_migration);
    for (size_t i = 1; i < n; i++)
        if (m[i].version == m[i - 1].version) {
            cs_err_set(err, CS_EINVAL, "migrations_dir",
                       "migrations '%s' and '%s' share version %d",
                       m[i - 1].file, m[i].file, m[i].version);
            free_list(m, n);
            return CS_EINVAL;
        }
    *out = m;
    *count = n;
    return 0;
}

static char *read_file(const char *path, struct cs_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cs_err_set(err, CS_ENOENT, "", "cannot open '%s'", path);
        return NULL;
    }
    char *data = xmalloc(MIGRATION_MAX + 1);
    size_t n = fread(data, 1, MIGRATION_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || n > MIGRATION_MAX) {
        free(data);
        cs_err_set(err, bad ? CS_EIO : CS_E2BIG, "",
                   bad ? "cannot read '%s'" : "'%s' is too large", path);
        return NULL;
    }
    data[n] = '\0';
    return data;
}

/* Line of a 1-based character position in sql (ASCII-safe approximation). */
static int line_of(const char *sql, const char *pos)
{
    long p = pos ? strtol(pos, NULL, 10) : 0;
    int line = 1;
    for (long i = 0; i < p - 1 && sql[i]; i++)
        if (sql[i] == '\n')
            line++;
    return line;
}

/* Apply one file in its own transaction; 0 or -CS_E*. */
static int apply_one(PGconn *c, const char *dir, const struct migration *m,
                     struct cs_err *err)
{
    char *path = xasprintf("%s/%s", dir, m->file);
    char *sql = read_file(path, err);
    free(path);
    if (!sql)
        return err ? err->code : CS_EIO;
    struct cs_err e2;
    int rc = pgc_exec(c, "BEGIN", 0, NULL, &e2);
    if (rc) {
        cs_err_set(err, rc, "", "cannot apply migration '%s': %s", m->file,
                   e2.msg);
        goto out_free_sql;
    }
    /* PQexec: the file may hold many statements (simple query protocol). */
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION)
                            : NULL;
        fill_pg_error(&e2, c, r);
        if (pos)
            cs_err_set(err, CS_EIO, "", "cannot apply migration '%s': %s "
                       "(line %d)", m->file, e2.msg, line_of(sql, pos));
        else
            cs_err_set(err, CS_EIO, "", "cannot apply migration '%s': %s",
                       m->file, e2.msg);
        PQclear(r);
        rc = CS_EIO;
        goto out_rollback;
    }
    PQclear(r);
    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[] = {version, m->file};
    rc = pgc_exec(c,
                  "INSERT INTO schema_migrations (version, name) "
                  "VALUES ($1::integer, $2)",
                  2, params, &e2);
    if (!rc)
        rc = pgc_exec(c, "COMMIT", 0, NULL, &e2);
    if (rc) {
        cs_err_set(err, rc, "", "cannot record migration '%s': %s", m->file,
                   e2.msg);
        goto out_rollback;
    }
    free(sql);
    return 0;
out_rollback:
    PQclear(PQexec(c, "ROLLBACK"));
out_free_sql:
    free(sql);
    return rc;
}

static bool is_applied(PGconn *c, int version, struct cs_err *err, int *rc)
{
    char v[16];
    snprintf(v, sizeof(v), "%d", version);
    const char *params[] = {v};
    PGresult *r = pgc_query(c,
                            "SELECT 1 FROM schema_migrations "
                            "WHERE version = $1::integer",
                            1, params, err);
    if (!r) {
        *rc = CS_EIO;
        return false;
    }
    bool found = PQntuples(r) > 0;
    PQclear(r);
    return found;
}

int pgc_migrate(PGconn *c, const char *dir, pgc_migrate_cb *cb, void *arg,
                struct cs_err *err)
{
    struct migration *m = NULL;
    size_t n = 0;
    int rc = list_migrations(dir, &m, &n, err);
    if (rc)
        return rc;
    struct cs_err e2;
    rc = pgc_exec(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0,
                  NULL, &e2);
    if (rc) {
        cs_err_set(err, rc, "", "cannot lock migrations: %s", e2.msg);
        goto out_free;
    }
    rc = pgc_exec(c,
                  "CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " version integer PRIMARY KEY,"
                  " name text NOT NULL,"
                  " applied_at timestamptz NOT NULL DEFAULT now())",
                  0, NULL, &e2);
    if (rc) {
        cs_err_set(err, rc, "", "cannot create 'schema_migrations': %s",
                   e2.msg);
        goto out_unlock;
    }
    int applied = 0;
    for (size_t i = 0; i < n; i++) {
        int qrc = 0;
        bool done = is_applied(c, m[i].version, &e2, &qrc);
        if (qrc) {
            rc = cs_err_set(err, qrc, "", "cannot read 'schema_migrations': "
                            "%s", e2.msg);
            goto out_unlock;
        }
        if (done)
            continue;
        rc = apply_one(c, dir, &m[i], err);
        if (rc)
            goto out_unlock;
        applied++;
        if (cb)
            cb(m[i].file, arg);
    }
    rc = applied;
out_unlock:
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
out_free:
    free_list(m, n);
    return rc;
}
