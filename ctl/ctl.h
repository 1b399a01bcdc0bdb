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

#include <stdio.h>

/* Exit codes, the same for every command. */
enum {
    CTL_OK = 0,
    CTL_FAIL = 1,     /* the operation failed: database unreachable, ... */
    CTL_USAGE = 2,    /* bad arguments or configuration */
    CTL_NOTFOUND = 3, /* the named organisation, agent or connection */
};

/* State of one invocation. */
struct ctl {
    struct cfg cfg;
    bool json; /* --json: machine output on stdout */
    PGconn *pg;
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

/* Validation. */
bool ctl_is_uuid(const char *s);
bool ctl_is_url(const char *s);
bool ctl_is_e164(const char *s);
bool ctl_in_list(const char *s, const char *const *list);

/* Print a result as an aligned table, or as a JSON array with --json. */
void ctl_print_result(const struct ctl *ctl, const PGresult *r);

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
int ctl_connections_refresh(struct ctl *ctl, int argc, char **argv);

#endif
