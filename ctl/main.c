/*
 * main.c - callsyncctl, the operators' command line: finds the command
 * named by the first one or two arguments and runs it. Exit codes: 0 ok,
 * 1 the operation failed, 2 usage or configuration error, 3 not found or
 * nothing matched, 4 cannot be tested (connections test), 130 interrupted
 * (dead replay).
 */
#include "ctl.h"
#include "log.h"

#include <string.h>

static const struct ctl_cmd cmds[] = {
    {NULL, "migrate", ctl_migrate, "apply pending database migrations"},
    {"orgs", "add", ctl_orgs_add, "add an organisation"},
    {"orgs", "list", ctl_orgs_list, "list organisations"},
    {"agents", "add", ctl_agents_add, "add a voice agent to an organisation"},
    {"agents", "list", ctl_agents_list, "list agents"},
    {"webhooks", "set-outbound", ctl_webhooks_set_outbound,
     "set an agent's outbound-call webhook secret"},
    {"connections", "add", ctl_connections_add,
     "connect an agent to a CRM or other system"},
    {"connections", "list", ctl_connections_list,
     "list connections (never their secrets)"},
    {"connections", "update", ctl_connections_update,
     "new credentials or settings; reconnects by default"},
    {"connections", "test", ctl_connections_test,
     "ask the provider whether the credentials work (read-only)"},
    {"connections", "remove", ctl_connections_remove,
     "disconnect a connection, or delete it with --hard"},
    {"connections", "show", ctl_connections_show,
     "status, token expiry, last error, sync stats"},
    {NULL, "queues", ctl_queues,
     "jobs waiting, in flight, delayed, parked, dead"},
    {"dead", "list", ctl_dead_list, "list dead letters (with filters)"},
    {"dead", "show", ctl_dead_show,
     "one dead letter in full, secrets redacted"},
    {"dead", "replay", ctl_dead_replay,
     "re-enqueue dead jobs, paced, each once"},
    {"dead", "purge", ctl_dead_purge, "delete dead letters for good"},
    {NULL, "trace", ctl_trace,
     "every job and step attempt of one call"},
    {"connections", "refresh", ctl_connections_refresh,
     "refresh a connection's OAuth tokens now"},
    {"connections", "authorize-url", ctl_connections_authorize_url,
     "print a signed link that connects an agent with OAuth"},
};

static void print_usage(FILE *f, const char *group)
{
    fprintf(f, "usage: callsyncctl %s%s<command> [options] [--json] "
               "[--help]\n\ncommands:\n",
            group ? group : "", group ? " " : "");
    for (size_t i = 0; i < CS_ARRAY_LEN(cmds); i++) {
        const struct ctl_cmd *c = &cmds[i];
        if (group && (!c->group || strcmp(c->group, group) != 0))
            continue;
        char name[64];
        snprintf(name, sizeof(name), "%s%s%s", c->group ? c->group : "",
                 c->group ? " " : "", c->name);
        fprintf(f, "  %-26s %s\n", name, c->summary);
    }
    fputs("\nconfiguration: CALLSYNC_DATABASE_URL, CALLSYNC_REDIS_URL, "
          "CALLSYNC_SHARDS,\nCALLSYNC_ENCRYPTION_KEYS, CALLSYNC_MIGRATIONS_DIR, "
          "CALLSYNC_JOB_RETENTION_S,\nCALLSYNC_PROVIDER_BASE_URLS "
          "(or CALLSYNC_CONFIG_FILE)\n"
          "exit codes: 0 ok, 1 failed, 2 usage, 3 not found or nothing "
          "matched,\n4 cannot be tested, 130 interrupted (each command's "
          "--help tells which it uses)\n",
          f);
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ||
           strcmp(a, "help") == 0;
}

static const struct ctl_cmd *find_cmd(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(cmds); i++) {
        const struct ctl_cmd *c = &cmds[i];
        if (!c->group && strcmp(argv[0], c->name) == 0) {
            *used = 1;
            return c;
        }
        if (c->group && argc >= 2 && strcmp(argv[0], c->group) == 0 &&
            strcmp(argv[1], c->name) == 0) {
            *used = 2;
            return c;
        }
    }
    return NULL;
}

static bool is_group(const char *s)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(cmds); i++)
        if (cmds[i].group && strcmp(cmds[i].group, s) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr, NULL);
        return CTL_USAGE;
    }
    if (is_help(argv[1])) {
        print_usage(stdout, NULL);
        return CTL_OK;
    }
    int used = 0;
    const struct ctl_cmd *cmd = find_cmd(argc - 1, argv + 1, &used);
    if (!cmd) {
        if (is_group(argv[1])) {
            bool help = argc >= 3 && is_help(argv[2]);
            if (!help && argc >= 3)
                ctl_fail(CTL_USAGE, "unknown command '%s %s'", argv[1],
                         argv[2]);
            print_usage(help ? stdout : stderr, argv[1]);
            return help ? CTL_OK : CTL_USAGE;
        }
        ctl_fail(CTL_USAGE, "unknown command '%s'", argv[1]);
        print_usage(stderr, NULL);
        return CTL_USAGE;
    }

    struct ctl ctl = {0};
    struct cs_err err = {0};
    if (cfg_load(&ctl.cfg, &err) != 0) {
        ctl_fail(CTL_USAGE, "invalid configuration: %s", err.msg);
        cfg_release(&ctl.cfg);
        return CTL_USAGE;
    }
    log_init("callsyncctl", ctl.cfg.log_level);
    int rc = cmd->run(&ctl, argc - 1 - used, argv + 1 + used);
    if (ctl.pg)
        PQfinish(ctl.pg);
    if (ctl.redis)
        redisFree(ctl.redis);
    cfg_release(&ctl.cfg);
    return rc;
}
