/*
 * ctl.h - what the commands of callsyncctl share: exit codes, option
 * parsing, output as tables or JSON, database and Redis access, secrets
 * read from files or the environment, and input validation.
 */
#ifndef CS_CTL_H
#define CS_CTL_H

#include "cfg.h"
#include "cs.h"
#include "pgc.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>

/* Exit codes, the same for every command. */
enum {
    CTL_OK = 0,
    CTL_FAIL = 1,     /* the operation failed: database unreachable, ... */
    CTL_USAGE = 2,    /* bad arguments or configuration */
    CTL_NOTFOUND = 3, /* the named organisation, agent, connection, dead
                         letter or call; or no dead letter matched */
    CTL_INTERRUPTED = 130, /* stopped by SIGINT or SIGTERM (dead replay) */
};

/* State of one invocation. */
struct ctl {
    struct cfg cfg;
    bool json; /* --json: machine output on stdout */
    PGconn *pg;
    redisContext *redis;
};

/* One command: "orgs add", run with the arguments after its name. */
typedef int ctl_cmd_fn(struct ctl *ctl, int argc, char **argv);

struct ctl_cmd {
    const char *group; /* "orgs", or NULL for a top-level command */
    const char *name;
    ctl_cmd_fn *run;
    const char *summary;
};

/*
 * Options: "--name VALUE", "--name=VALUE" or a "--flag". Every command
 * accepts --help and --json. ctl_parse() fills the targets, collects up to
 * maxpos positional arguments and returns CTL_OK, CTL_USAGE (message
 * printed) or -1 when --help was given (usage printed, exit 0).
 */
struct ctl_opt {
    const char *name;
    const char **value; /* NULL for a flag */
    bool *flag;
};

int ctl_parse(struct ctl *ctl, int argc, char **argv,
              const struct ctl_opt *opts, size_t nopts, const char **pos,
              int maxpos, int *npos, const char *usage);

/* Parse a command's options; returns from the command on --help or error. */
#define PARSE(ctl, argc, argv, opts, nopts, pos, maxpos, npos, usage)        \
    do {                                                                     \
        int prc_ = ctl_parse((ctl), (argc), (argv), (opts), (nopts), (pos),  \
                             (maxpos), (npos), (usage));                     \
        if (prc_ != CTL_OK)                                                  \
            return prc_ < 0 ? CTL_OK : prc_;                                 \
    } while (0)

/* Print "error: ..." on stderr and return code. */
int ctl_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Connect ctl->pg (once) from the configured URL; CTL_OK or CTL_FAIL. */
int ctl_db(struct ctl *ctl);
/* Run a query; on failure print "error: cannot <what>: <pg message>". */
PGresult *ctl_query(struct ctl *ctl, const char *what, const char *sql,
                    int nparams, const char *const *params);

/*
 * Tell every ingest that an agent's connections changed: PUBLISH the agent
 * id on cs:cache:connections. A Redis that cannot be reached is only a
 * warning: the caches expire on their own.
 */
void ctl_publish_change(struct ctl *ctl, const char *agent_id);

/*
 * Read a secret from a file ("-" for stdin) or the environment variable
 * named env. Exactly one of file and env is non-NULL. Trailing newlines are
 * dropped; an empty secret is an error. Returns the xmalloc'd secret (free
 * with ctl_secret_free), or NULL with an error printed.
 */
char *ctl_read_secret(const char *what, const char *file, const char *env);
void ctl_secret_free(char *s);

/*
 * The opened secrets of a connection (NULL-terminated, free with
 * ctl_secrets_free), so that output can redact them wherever they appear.
 * Best effort: NULL when the keys, the database or the connection are not
 * there (the pattern rules of redact.h still apply).
 */
char **ctl_conn_secrets(struct ctl *ctl, const char *conn_id);
void ctl_secrets_free(char **s);

/* Validation. */
bool ctl_is_uuid(const char *s);
bool ctl_is_url(const char *s);
bool ctl_is_e164(const char *s);
bool ctl_in_list(const char *s, const char *const *list);

/* Print a result as an aligned table, or as a JSON array with --json. */
void ctl_print_result(const struct ctl *ctl, const PGresult *r);
/* A result as a JSON array of objects (numbers, booleans and JSON columns
 * typed). */
json_t *ctl_result_json(const PGresult *r);
/* Print a JSON value indented, with a newline. */
void ctl_print_json(json_t *v);

/*
 * Redis (redis.c). ctl_redis connects ctl->redis once from
 * CALLSYNC_REDIS_URL (AUTH and SELECT as the URL says): CTL_OK or
 * CTL_FAIL, printed. ctl_rcmd sends one command: the reply (which may be
 * an error reply), or NULL with "error: Redis: ..." printed when the
 * connection failed. ctl_eval runs a script by EVALSHA, loading it on
 * NOSCRIPT; args holds the keys, then the arguments.
 */
int ctl_redis(struct ctl *ctl);
redisReply *ctl_rcmd(struct ctl *ctl, const char *fmt, ...);
redisReply *ctl_rcmd_argv(struct ctl *ctl, int argc, const char **argv,
                          const size_t *lens);
redisReply *ctl_eval(struct ctl *ctl, const char *lua, int nkeys, int nargs,
                     const char **args);
/* The value of field name in a [field, value, ...] reply, or NULL. */
const char *ctl_rfield(const redisReply *fields, const char *name);
/* Every key matching pattern, by SCAN (never KEYS); fn runs once per key
 * (duplicates that SCAN may return removed). CTL_OK or CTL_FAIL. */
int ctl_scan(struct ctl *ctl, const char *pattern,
             void (*fn)(const char *key, void *arg), void *arg);

/* A point in time given as RFC 3339 or as a duration back from now_ms
 * ("90m", "2h", "7d"). */
bool ctl_parse_when(const char *s, int64_t now_ms, int64_t *ms);
/* An age as "4d3h", "2h5m", "3m12s", "950ms" into out[32]. */
void ctl_fmt_age(int64_t ms, char out[32]);

/* Commands. */
int ctl_migrate(struct ctl *ctl, int argc, char **argv);
int ctl_orgs_add(struct ctl *ctl, int argc, char **argv);
int ctl_orgs_list(struct ctl *ctl, int argc, char **argv);
int ctl_agents_add(struct ctl *ctl, int argc, char **argv);
int ctl_agents_list(struct ctl *ctl, int argc, char **argv);
int ctl_webhooks_set_outbound(struct ctl *ctl, int argc, char **argv);
int ctl_connections_add(struct ctl *ctl, int argc, char **argv);
int ctl_connections_list(struct ctl *ctl, int argc, char **argv);
int ctl_connections_remove(struct ctl *ctl, int argc, char **argv);
int ctl_connections_update(struct ctl *ctl, int argc, char **argv);
int ctl_connections_test(struct ctl *ctl, int argc, char **argv);
int ctl_connections_show(struct ctl *ctl, int argc, char **argv);
int ctl_queues(struct ctl *ctl, int argc, char **argv);
int ctl_dead_list(struct ctl *ctl, int argc, char **argv);
int ctl_dead_show(struct ctl *ctl, int argc, char **argv);
int ctl_dead_replay(struct ctl *ctl, int argc, char **argv);
int ctl_dead_purge(struct ctl *ctl, int argc, char **argv);
int ctl_trace(struct ctl *ctl, int argc, char **argv);
int ctl_connections_refresh(struct ctl *ctl, int argc, char **argv);
int ctl_connections_authorize_url(struct ctl *ctl, int argc, char **argv);

#endif
