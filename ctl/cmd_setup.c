/*
 * cmd_setup.c - migrate, orgs and agents: the commands that set up the
 * database and the tenants in it.
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

struct migrate_out {
    const struct ctl *ctl;
    int n;
};

static void on_applied(const char *file, void *arg)
{
    struct migrate_out *o = arg;
    if (o->ctl->json)
        printf("%s\"%s\"", o->n ? ", " : "", file);
    else
        printf("applied %s\n", file);
    fflush(stdout);
    o->n++;
}

int ctl_migrate(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl migrate [--dir DIR] [--json]\n\n"
        "Apply the migrations in DIR (default CALLSYNC_MIGRATIONS_DIR) that\n"
        "the database has not seen yet, each in its own transaction. Safe\n"
        "to run from several places at once.\n";
    const char *dir = NULL;
    const struct ctl_opt opts[] = {{"dir", &dir, NULL}};
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    if (!dir)
        dir = ctl->cfg.migrations_dir;
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    struct migrate_out out = {ctl, 0};
    if (ctl->json)
        printf("{\"applied\": [");
    struct cs_err err;
    int n = pgc_migrate(ctl->pg, dir, on_applied, &out, &err);
    if (ctl->json)
        printf("]}\n");
    if (n < 0)
        return ctl_fail(n == CS_ENOENT ? CTL_USAGE : CTL_FAIL, "%s",
                        err.msg);
    if (!ctl->json)
        printf("schema up to date: %d migration%s applied\n", n,
               n == 1 ? "" : "s");
    return CTL_OK;
}

int ctl_orgs_add(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl orgs add NAME [--json]\n\n"
        "Add an organisation and print its id.\n";
    const char *pos[1];
    int npos;
    const struct ctl_opt opts[] = {{"name", &pos[0], NULL}};
    pos[0] = NULL;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    if (!pos[0] || !*pos[0]) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "orgs add needs a NAME");
    }
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    const char *params[] = {pos[0]};
    PGresult *r = ctl_query(ctl, "add organisation",
                            "INSERT INTO organizations (name) VALUES ($1) "
                            "RETURNING id, name",
                            1, params);
    if (!r)
        return CTL_FAIL;
    if (ctl->json)
        ctl_print_result(ctl, r);
    else
        printf("%s\n", PQgetvalue(r, 0, 0));
    PQclear(r);
    return CTL_OK;
}

int ctl_orgs_list(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] = "usage: callsyncctl orgs list [--json]\n";
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, NULL, 0, pos, 0, &npos, usage);
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    PGresult *r = ctl_query(
        ctl, "list organisations",
        "SELECT o.id, o.name, "
        " (SELECT count(*) FROM agents a WHERE a.organization_id = o.id) "
        "   AS agents, "
        " to_char(o.created_at AT TIME ZONE 'UTC', "
        "         'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at "
        "FROM organizations o ORDER BY o.created_at, o.id",
        0, NULL);
    if (!r)
        return CTL_FAIL;
    ctl_print_result(ctl, r);
    PQclear(r);
    return CTL_OK;
}

/* 0 if the organisation exists, CTL_NOTFOUND or CTL_FAIL (printed). */
static int org_exists(struct ctl *ctl, const char *org)
{
    const char *params[] = {org};
    PGresult *r = ctl_query(ctl, "look up organisation",
                            "SELECT 1 FROM organizations WHERE id = $1", 1,
                            params);
    if (!r)
        return CTL_FAIL;
    int n = PQntuples(r);
    PQclear(r);
    if (n == 0)
        return ctl_fail(CTL_NOTFOUND, "organisation '%s' not found", org);
    return CTL_OK;
}

int ctl_agents_add(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl agents add --org ORG_ID --name NAME\n"
        "         [--retell-agent-id ID] [--callrail-company-id ID]\n"
        "         [--sync-on call_analyzed|call_ended] [--outbound-from E164]\n"
        "         [--timezone TZ] [--json]\n\n"
        "Add a voice agent and print its id.\n";
    const char *org = NULL, *name = NULL, *retell = NULL, *callrail = NULL,
               *sync_on = NULL, *from = NULL, *tz = NULL;
    const struct ctl_opt opts[] = {
        {"org", &org, NULL},
        {"name", &name, NULL},
        {"retell-agent-id", &retell, NULL},
        {"callrail-company-id", &callrail, NULL},
        {"sync-on", &sync_on, NULL},
        {"outbound-from", &from, NULL},
        {"timezone", &tz, NULL},
    };
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    static const char *const sync_values[] = {"call_analyzed", "call_ended",
                                              NULL};
    if (!org || !name || !*name) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "agents add needs --org and --name");
    }
    if (!ctl_is_uuid(org))
        return ctl_fail(CTL_USAGE, "invalid organisation id '%s'", org);
    if (sync_on && !ctl_in_list(sync_on, sync_values))
        return ctl_fail(CTL_USAGE, "invalid --sync-on '%s': expected "
                        "call_analyzed or call_ended", sync_on);
    if (from && !ctl_is_e164(from))
        return ctl_fail(CTL_USAGE, "invalid --outbound-from '%s': expected "
                        "an E.164 number such as +14155550100", from);
    if ((retell && !*retell) || (callrail && !*callrail) || (tz && !*tz))
        return ctl_fail(CTL_USAGE, "empty option value");
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    rc = org_exists(ctl, org);
    if (rc)
        return rc;
    const char *params[] = {org, name, retell, callrail, sync_on, from, tz};
    PGresult *r = ctl_query(
        ctl, "add agent",
        "INSERT INTO agents (organization_id, name, retell_agent_id, "
        " callrail_company_id, sync_on, outbound_from_number, timezone) "
        "VALUES ($1, $2, $3, $4, coalesce($5, 'call_analyzed'), $6, "
        " coalesce($7, 'America/New_York')) "
        "RETURNING id, organization_id, name, retell_agent_id, "
        " callrail_company_id, sync_on, outbound_from_number, timezone",
        7, params);
    if (!r)
        return CTL_FAIL;
    char *id = xstrdup(PQgetvalue(r, 0, 0));
    if (ctl->json)
        ctl_print_result(ctl, r);
    else
        printf("%s\n", id);
    PQclear(r);
    ctl_publish_change(ctl, id);
    free(id);
    return CTL_OK;
}

int ctl_agents_list(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl agents list [--org ORG_ID] [--json]\n";
    const char *org = NULL;
    const struct ctl_opt opts[] = {{"org", &org, NULL}};
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    if (org && !ctl_is_uuid(org))
        return ctl_fail(CTL_USAGE, "invalid organisation id '%s'", org);
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    const char *params[] = {org};
    PGresult *r = ctl_query(
        ctl, "list agents",
        "SELECT id, organization_id, name, retell_agent_id, "
        " callrail_company_id, sync_on, outbound_from_number, timezone, "
        " is_active AS active "
        "FROM agents WHERE $1::uuid IS NULL OR organization_id = $1 "
        "ORDER BY created_at, id",
        1, params);
    if (!r)
        return CTL_FAIL;
    ctl_print_result(ctl, r);
    PQclear(r);
    return CTL_OK;
}
