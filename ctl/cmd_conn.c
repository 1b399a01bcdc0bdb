/*
 * cmd_conn.c - connections and webhooks: the commands that store an
 * agent's credentials. Secrets come only from files ("-" for stdin) or
 * environment variables, are sealed with the keyring before they reach
 * PostgreSQL, and are never printed, except a secret generated here.
 */
#include "crypto.h"
#include "ctl.h"
#include "oauth_flow.h"
#include "oauth_link.h"

#include <hiredis/hiredis.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const conn_types[] = {
    "google_calendar", "calendly", "cal_com",      "hubspot",  "salesforce",
    "gohighlevel",     "housecall_pro", "zapier",  "stripe",   "pipedrive",
    "zoho",            "monday",   "custom_rest",  "outlook",  "twilio",
    "sendgrid",        "segment",  NULL};
static const char *const auth_types[] = {"oauth", "api_key", "webhook", "jwt",
                                         "basic", "none",    NULL};
static const char *const statuses[] = {"connected", "disconnected", "error",
                                       "expired", NULL};

/*
 * Look up an agent's organisation into org[37]: CTL_OK, CTL_NOTFOUND or
 * CTL_FAIL, with the error printed.
 */
static int agent_org(struct ctl *ctl, const char *agent, char org[37])
{
    const char *params[] = {agent};
    PGresult *r = ctl_query(ctl, "look up agent",
                            "SELECT organization_id FROM agents WHERE id = $1",
                            1, params);
    if (!r)
        return CTL_FAIL;
    int rc = CTL_OK;
    if (PQntuples(r) == 0)
        rc = ctl_fail(CTL_NOTFOUND, "agent '%s' not found", agent);
    else
        snprintf(org, 37, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

static struct cs_keyring *open_keyring(const struct ctl *ctl)
{
    struct cs_err err = {0};
    struct cs_keyring *kr = cs_keyring_new(ctl->cfg.encryption_keys, &err);
    if (!kr)
        ctl_fail(CTL_USAGE, "cannot seal secrets: %s (CALLSYNC_ENCRYPTION_KEYS)",
                 err.msg);
    return kr;
}

/* A secret option pair and, once read and sealed, its stored form. */
struct secret {
    const char *what; /* "api key" */
    const char *file;
    const char *env;
    char *sealed;
};

/* Read and seal every given secret; CTL_OK or CTL_USAGE (printed). */
static int seal_secrets(const struct ctl *ctl, struct secret *s, size_t n)
{
    struct cs_keyring *kr = NULL;
    int rc = CTL_OK;
    for (size_t i = 0; i < n && rc == CTL_OK; i++) {
        if (!s[i].file && !s[i].env)
            continue;
        if (!kr)
            kr = open_keyring(ctl);
        if (!kr)
            return CTL_USAGE;
        char *plain = ctl_read_secret(s[i].what, s[i].file, s[i].env);
        if (!plain) {
            rc = CTL_USAGE;
            break;
        }
        s[i].sealed = cs_seal(kr, plain, strlen(plain));
        ctl_secret_free(plain);
    }
    cs_keyring_free(kr);
    return rc;
}

/* Check that no two sources of a secret are given and at most one reads
 * stdin; CTL_OK or CTL_USAGE (printed). */
static int check_sources(const struct secret *s, size_t n, int *stdin_uses)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].file && s[i].env)
            return ctl_fail(CTL_USAGE, "give the %s as a file or a variable, "
                            "not both", s[i].what);
        if (s[i].file && strcmp(s[i].file, "-") == 0)
            (*stdin_uses)++;
    }
    if (*stdin_uses > 1)
        return ctl_fail(CTL_USAGE, "only one value can be read from stdin");
    return CTL_OK;
}

/* Parse --config or --config-file into compact JSON text (xmalloc'd). */
static char *load_config(const char *text, const char *file)
{
    json_error_t je;
    json_t *j;
    if (text)
        j = json_loads(text, 0, &je);
    else if (strcmp(file, "-") == 0)
        j = json_loadf(stdin, 0, &je);
    else
        j = json_load_file(file, 0, &je);
    if (!j) {
        ctl_fail(CTL_USAGE, "invalid config JSON from '%s': %s at line %d "
                 "column %d", text ? "--config" : file, je.text, je.line,
                 je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ctl_fail(CTL_USAGE, "invalid config from '%s': must be a JSON object",
                 text ? "--config" : file);
        return NULL;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    CS_ASSERT(s);
    return s;
}

/* Print a one-row result: the id on its own line, or the row as a JSON
 * object with --json. */
static void print_created(const struct ctl *ctl, const PGresult *r)
{
    if (!ctl->json) {
        printf("%s\n", PQgetvalue(r, 0, 0));
        return;
    }
    json_t *o = json_object();
    for (int j = 0; j < PQnfields(r); j++)
        json_object_set_new(o, PQfname(r, j),
                            PQgetisnull(r, 0, j)
                                ? json_null()
                                : json_string(PQgetvalue(r, 0, j)));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(s);
    free(s);
    json_decref(o);
}

enum { S_API_KEY, S_API_SECRET, S_ACCESS, S_REFRESH, S_WEBHOOK, S_COUNT };

struct conn_args {
    const char *agent, *type, *auth, *expires, *webhook_url, *instance_url,
        *config, *config_file, *status;
    struct secret sec[S_COUNT];
};

/* The checks of add's options; with identity also --agent and --type
 * (update changes neither). */
static int validate_conn(const struct conn_args *a, bool identity)
{
    if (identity && (!a->agent || !a->type))
        return ctl_fail(CTL_USAGE, "connections add needs --agent and --type");
    if (identity && !ctl_is_uuid(a->agent))
        return ctl_fail(CTL_USAGE, "invalid agent id '%s'", a->agent);
    if (identity && !ctl_in_list(a->type, conn_types))
        return ctl_fail(CTL_USAGE, "unknown connection type '%s'", a->type);
    if (a->auth && !ctl_in_list(a->auth, auth_types))
        return ctl_fail(CTL_USAGE, "unknown auth type '%s': expected oauth, "
                        "api_key, webhook, jwt, basic or none", a->auth);
    if (a->status && !ctl_in_list(a->status, statuses))
        return ctl_fail(CTL_USAGE, "unknown status '%s': expected connected, "
                        "disconnected, error or expired", a->status);
    if (a->webhook_url && !ctl_is_url(a->webhook_url))
        return ctl_fail(CTL_USAGE, "invalid --webhook-url: expected an "
                        "https:// or http:// URL");
    if (a->instance_url && !ctl_is_url(a->instance_url))
        return ctl_fail(CTL_USAGE, "invalid --instance-url '%s': expected "
                        "an https:// or http:// URL", a->instance_url);
    if (a->config && a->config_file)
        return ctl_fail(CTL_USAGE, "give --config or --config-file, not both");
    int64_t ms;
    if (a->expires && !cs_parse_rfc3339(a->expires, &ms))
        return ctl_fail(CTL_USAGE, "invalid --expires-at '%s': expected "
                        "RFC 3339 such as 2026-02-15T14:30:00Z", a->expires);
    int stdin_uses = a->config_file && strcmp(a->config_file, "-") == 0;
    return check_sources(a->sec, S_COUNT, &stdin_uses);
}

static const char *infer_auth(const struct conn_args *a)
{
    if (a->auth)
        return a->auth;
    if (a->sec[S_ACCESS].file || a->sec[S_REFRESH].file ||
        a->sec[S_ACCESS].env || a->sec[S_REFRESH].env)
        return "oauth";
    if (a->sec[S_API_KEY].file || a->sec[S_API_KEY].env)
        return "api_key";
    if (a->webhook_url)
        return "webhook";
    return "none";
}

/* The options of connections add (with_identity: --agent, --type and
 * --auth too) and connections update, pointing into *a. */
#define CONN_OPTS_MAX 19
static size_t conn_opts(struct conn_args *a, struct ctl_opt *o,
                        bool with_identity)
{
    size_t n = 0;
    if (with_identity) {
        o[n++] = (struct ctl_opt){"agent", &a->agent, NULL};
        o[n++] = (struct ctl_opt){"type", &a->type, NULL};
        o[n++] = (struct ctl_opt){"auth", &a->auth, NULL};
    }
    static const struct {
        const char *file, *env;
        int which;
    } sec[] = {
        {"api-key-file", "api-key-env", S_API_KEY},
        {"api-secret-file", "api-secret-env", S_API_SECRET},
        {"access-token-file", "access-token-env", S_ACCESS},
        {"refresh-token-file", "refresh-token-env", S_REFRESH},
        {"webhook-secret-file", "webhook-secret-env", S_WEBHOOK},
    };
    o[n++] = (struct ctl_opt){"expires-at", &a->expires, NULL};
    o[n++] = (struct ctl_opt){"webhook-url", &a->webhook_url, NULL};
    o[n++] = (struct ctl_opt){"instance-url", &a->instance_url, NULL};
    o[n++] = (struct ctl_opt){"config", &a->config, NULL};
    o[n++] = (struct ctl_opt){"config-file", &a->config_file, NULL};
    o[n++] = (struct ctl_opt){"status", &a->status, NULL};
    for (size_t i = 0; i < CS_ARRAY_LEN(sec); i++) {
        o[n++] = (struct ctl_opt){sec[i].file, &a->sec[sec[i].which].file,
                                  NULL};
        o[n++] = (struct ctl_opt){sec[i].env, &a->sec[sec[i].which].env,
                                  NULL};
    }
    CS_ASSERT(n <= CONN_OPTS_MAX);
    return n;
}

int ctl_connections_add(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections add --agent AGENT_ID --type TYPE\n"
        "         [--auth oauth|api_key|webhook|jwt|basic|none]\n"
        "         [--api-key-file F | --api-key-env VAR]\n"
        "         [--api-secret-file F | --api-secret-env VAR]\n"
        "         [--access-token-file F | --access-token-env VAR]\n"
        "         [--refresh-token-file F | --refresh-token-env VAR]\n"
        "         [--expires-at RFC3339] [--webhook-url URL]\n"
        "         [--webhook-secret-file F | --webhook-secret-env VAR]\n"
        "         [--instance-url URL] [--config JSON | --config-file F]\n"
        "         [--status connected|disconnected|error|expired] [--json]\n\n"
        "Connect an agent to a system and print the new connection's id.\n"
        "Secrets are read from files (\"-\" for stdin) or named environment\n"
        "variables, never from the command line, and are stored sealed.\n"
        "TYPE: google_calendar calendly cal_com hubspot salesforce\n"
        "gohighlevel housecall_pro zapier stripe pipedrive zoho monday\n"
        "custom_rest outlook twilio sendgrid segment\n";
    struct conn_args a = {
        .sec = {
            [S_API_KEY] = {"api key", NULL, NULL, NULL},
            [S_API_SECRET] = {"api secret", NULL, NULL, NULL},
            [S_ACCESS] = {"access token", NULL, NULL, NULL},
            [S_REFRESH] = {"refresh token", NULL, NULL, NULL},
            [S_WEBHOOK] = {"webhook secret", NULL, NULL, NULL},
        }};
    struct ctl_opt opts[CONN_OPTS_MAX];
    size_t nopts = conn_opts(&a, opts, true);
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, nopts, pos, 0, &npos, usage);
    int rc = validate_conn(&a, true);
    if (rc)
        return rc;

    char *config = NULL;
    char expires[32] = "";
    if (a.config || a.config_file) {
        config = load_config(a.config, a.config_file);
        if (!config)
            return CTL_USAGE;
    }
    if (a.expires) {
        int64_t ms = 0;
        cs_parse_rfc3339(a.expires, &ms);
        cs_rfc3339_ms(ms, expires);
    }
    rc = seal_secrets(ctl, a.sec, S_COUNT);
    if (rc)
        goto out_free;
    rc = ctl_db(ctl);
    if (rc)
        goto out_free;
    char org[37];
    rc = agent_org(ctl, a.agent, org);
    if (rc)
        goto out_free;
    const char *params[] = {
        a.agent,
        org,
        a.type,
        infer_auth(&a),
        a.status ? a.status : "connected",
        a.sec[S_ACCESS].sealed,
        a.sec[S_REFRESH].sealed,
        a.expires ? expires : NULL,
        a.sec[S_API_KEY].sealed,
        a.sec[S_API_SECRET].sealed,
        a.instance_url,
        a.webhook_url,
        a.sec[S_WEBHOOK].sealed,
        config ? config : "{}",
    };
    PGresult *r = ctl_query(
        ctl, "add connection",
        "INSERT INTO integration_connections (agent_id, organization_id, "
        " integration_type, auth_type, connection_status, access_token, "
        " refresh_token, token_expires_at, api_key, api_secret, "
        " instance_url, webhook_url, webhook_secret, config) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
        " $14::jsonb) "
        "RETURNING id, agent_id, organization_id, integration_type AS type, "
        " auth_type AS auth, connection_status AS status",
        (int)CS_ARRAY_LEN(params), params);
    if (!r) {
        rc = CTL_FAIL;
        goto out_free;
    }
    print_created(ctl, r);
    PQclear(r);
    ctl_publish_change(ctl, a.agent);
out_free:
    for (size_t i = 0; i < S_COUNT; i++)
        free(a.sec[i].sealed);
    free(config);
    return rc;
}

int ctl_connections_update(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections update ID\n"
        "         [--api-key-file F | --api-key-env VAR]\n"
        "         [--api-secret-file F | --api-secret-env VAR]\n"
        "         [--access-token-file F | --access-token-env VAR]\n"
        "         [--refresh-token-file F | --refresh-token-env VAR]\n"
        "         [--expires-at RFC3339] [--webhook-url URL]\n"
        "         [--webhook-secret-file F | --webhook-secret-env VAR]\n"
        "         [--instance-url URL] [--config JSON | --config-file F]\n"
        "         [--status connected|disconnected|error|expired] [--json]\n\n"
        "Change a connection in place: new credentials after the user\n"
        "reconnected, new settings. What is not given is kept. The status\n"
        "becomes --status, by default connected (which also clears the last\n"
        "error): the scheduler then replays the connection's parked jobs.\n"
        "Secrets are read from files (\"-\" for stdin) or named environment\n"
        "variables and stored sealed.\n"
        "exit codes: 0 updated, 1 failed, 2 usage, 3 no such connection\n";
    struct conn_args a = {
        .sec = {
            [S_API_KEY] = {"api key", NULL, NULL, NULL},
            [S_API_SECRET] = {"api secret", NULL, NULL, NULL},
            [S_ACCESS] = {"access token", NULL, NULL, NULL},
            [S_REFRESH] = {"refresh token", NULL, NULL, NULL},
            [S_WEBHOOK] = {"webhook secret", NULL, NULL, NULL},
        }};
    struct ctl_opt opts[CONN_OPTS_MAX];
    size_t nopts = conn_opts(&a, opts, false);
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, nopts, pos, 1, &npos, usage);
    if (npos != 1)
        return ctl_fail(CTL_USAGE, "connections update needs the connection "
                                   "id");
    if (!ctl_is_uuid(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid connection id '%s'", pos[0]);
    int rc = validate_conn(&a, false);
    if (rc)
        return rc;
    char *config = NULL;
    char expires[32] = "";
    if (a.config || a.config_file) {
        config = load_config(a.config, a.config_file);
        if (!config)
            return CTL_USAGE;
    }
    if (a.expires) {
        int64_t ms = 0;
        cs_parse_rfc3339(a.expires, &ms);
        cs_rfc3339_ms(ms, expires);
    }
    rc = seal_secrets(ctl, a.sec, S_COUNT);
    if (rc)
        goto out_free;
    rc = ctl_db(ctl);
    if (rc)
        goto out_free;
    const char *status = a.status ? a.status : "connected";
    const char *params[] = {
        pos[0],
        status,
        a.sec[S_ACCESS].sealed,
        a.sec[S_REFRESH].sealed,
        a.expires ? expires : NULL,
        a.sec[S_API_KEY].sealed,
        a.sec[S_API_SECRET].sealed,
        a.instance_url,
        a.webhook_url,
        a.sec[S_WEBHOOK].sealed,
        config,
    };
    PGresult *r = ctl_query(
        ctl, "update connection",
        "UPDATE integration_connections SET connection_status = $2, "
        " last_error = CASE WHEN $2 = 'connected' THEN NULL "
        "   ELSE last_error END, "
        " is_active = CASE WHEN $2 = 'disconnected' THEN false ELSE true END, "
        " access_token = COALESCE($3, access_token), "
        " refresh_token = COALESCE($4, refresh_token), "
        " token_expires_at = COALESCE($5::timestamptz, token_expires_at), "
        " api_key = COALESCE($6, api_key), "
        " api_secret = COALESCE($7, api_secret), "
        " instance_url = COALESCE($8, instance_url), "
        " webhook_url = COALESCE($9, webhook_url), "
        " webhook_secret = COALESCE($10, webhook_secret), "
        " config = COALESCE($11::jsonb, config), updated_at = now() "
        "WHERE id = $1 "
        "RETURNING id, agent_id, organization_id, integration_type AS type, "
        " auth_type AS auth, connection_status AS status",
        (int)CS_ARRAY_LEN(params), params);
    if (!r) {
        rc = CTL_FAIL;
        goto out_free;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        rc = ctl_fail(CTL_NOTFOUND, "connection '%s' not found", pos[0]);
        goto out_free;
    }
    char *agent = xstrdup(PQgetvalue(r, 0, 1));
    print_created(ctl, r);
    PQclear(r);
    ctl_publish_change(ctl, agent);
    free(agent);
out_free:
    for (size_t i = 0; i < S_COUNT; i++)
        free(a.sec[i].sealed);
    free(config);
    return rc;
}

int ctl_connections_list(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections list [--agent AGENT_ID] "
        "[--org ORG_ID] [--json]\n\n"
        "List connections with their state; secrets are never shown.\n";
    const char *agent = NULL, *org = NULL;
    const struct ctl_opt opts[] = {{"agent", &agent, NULL},
                                   {"org", &org, NULL}};
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    if (agent && !ctl_is_uuid(agent))
        return ctl_fail(CTL_USAGE, "invalid agent id '%s'", agent);
    if (org && !ctl_is_uuid(org))
        return ctl_fail(CTL_USAGE, "invalid organisation id '%s'", org);
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    char agent_org_id[37];
    if (agent && (rc = agent_org(ctl, agent, agent_org_id)) != CTL_OK)
        return rc;
    const char *params[] = {agent, org};
    PGresult *r = ctl_query(
        ctl, "list connections",
        "SELECT id, agent_id, integration_type AS type, auth_type AS auth, "
        " connection_status AS status, is_active AS active, sync_enabled, "
        " to_char(last_sync_at AT TIME ZONE 'UTC', "
        "         'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_sync_at, "
        " last_error "
        "FROM integration_connections "
        "WHERE ($1::uuid IS NULL OR agent_id = $1) "
        "  AND ($2::uuid IS NULL OR organization_id = $2) "
        "ORDER BY created_at, id",
        2, params);
    if (!r)
        return CTL_FAIL;
    ctl_print_result(ctl, r);
    PQclear(r);
    return CTL_OK;
}

int ctl_connections_remove(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections remove CONNECTION_ID [--hard] "
        "[--json]\n\n"
        "Deactivate a connection (is_active false, status disconnected),\n"
        "keeping its sync history; with --hard, delete it and its history.\n";
    bool hard = false;
    const struct ctl_opt opts[] = {{"hard", NULL, &hard}};
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    if (!pos[0]) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "connections remove needs a CONNECTION_ID");
    }
    if (!ctl_is_uuid(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid connection id '%s'", pos[0]);
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    const char *params[] = {pos[0]};
    PGresult *r = ctl_query(
        ctl, "remove connection",
        hard ? "DELETE FROM integration_connections WHERE id = $1 "
               "RETURNING id, agent_id"
             : "UPDATE integration_connections SET is_active = false, "
               " connection_status = 'disconnected' WHERE id = $1 "
               "RETURNING id, agent_id",
        1, params);
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return ctl_fail(CTL_NOTFOUND, "connection '%s' not found", pos[0]);
    }
    char *agent = xstrdup(PQgetvalue(r, 0, 1));
    if (ctl->json)
        printf("{\"id\": \"%s\", \"agent_id\": \"%s\", \"deleted\": %s}\n",
               PQgetvalue(r, 0, 0), agent, hard ? "true" : "false");
    else
        printf("%s %s\n", hard ? "deleted" : "disconnected",
               PQgetvalue(r, 0, 0));
    PQclear(r);
    ctl_publish_change(ctl, agent);
    free(agent);
    return CTL_OK;
}

int ctl_webhooks_set_outbound(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl webhooks set-outbound --agent AGENT_ID\n"
        "         (--secret-file F | --secret-env VAR | --generate)\n"
        "         [--callback-url URL] [--json]\n\n"
        "Set the secret that a CRM sends to trigger the agent's outbound\n"
        "calls. The secret is printed only when --generate made it.\n";
    const char *agent = NULL, *callback = NULL;
    struct secret sec = {"webhook secret", NULL, NULL, NULL};
    bool generate = false;
    const struct ctl_opt opts[] = {
        {"agent", &agent, NULL},
        {"secret-file", &sec.file, NULL},
        {"secret-env", &sec.env, NULL},
        {"generate", NULL, &generate},
        {"callback-url", &callback, NULL},
    };
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    int sources = (sec.file != NULL) + (sec.env != NULL) + generate;
    if (!agent || sources != 1) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "webhooks set-outbound needs --agent and "
                        "one of --secret-file, --secret-env, --generate");
    }
    if (!ctl_is_uuid(agent))
        return ctl_fail(CTL_USAGE, "invalid agent id '%s'", agent);
    if (callback && !ctl_is_url(callback))
        return ctl_fail(CTL_USAGE, "invalid --callback-url: expected an "
                        "https:// or http:// URL");

    char generated[65] = "";
    int rc;
    if (generate) {
        unsigned char raw[32];
        if (cs_random(raw, sizeof(raw)) != 0)
            return ctl_fail(CTL_FAIL, "cannot generate a secret: no random "
                            "bytes");
        for (size_t i = 0; i < sizeof(raw); i++)
            snprintf(generated + 2 * i, 3, "%02x", raw[i]);
        struct cs_keyring *kr = open_keyring(ctl);
        if (!kr)
            return CTL_USAGE;
        sec.sealed = cs_seal(kr, generated, strlen(generated));
        cs_keyring_free(kr);
    } else {
        rc = seal_secrets(ctl, &sec, 1);
        if (rc)
            return rc;
    }
    rc = ctl_db(ctl);
    if (rc)
        goto out_free;
    char org[37];
    rc = agent_org(ctl, agent, org);
    if (rc)
        goto out_free;
    const char *params[] = {agent, org, sec.sealed, callback};
    PGresult *r = ctl_query(
        ctl, "set outbound webhook",
        "INSERT INTO integration_webhooks (agent_id, organization_id, "
        " webhook_type, webhook_secret, callback_url) "
        "VALUES ($1, $2, 'outbound_call', $3, $4) "
        "ON CONFLICT (agent_id, webhook_type) DO UPDATE SET "
        " webhook_secret = EXCLUDED.webhook_secret, "
        " callback_url = coalesce(EXCLUDED.callback_url, "
        "                         integration_webhooks.callback_url), "
        " is_active = true "
        "RETURNING id, agent_id",
        4, params);
    if (!r) {
        rc = CTL_FAIL;
        goto out_free;
    }
    if (ctl->json) {
        json_t *o = json_pack("{s:s, s:s}", "id", PQgetvalue(r, 0, 0),
                              "agent_id", PQgetvalue(r, 0, 1));
        if (generate)
            json_object_set_new(o, "secret", json_string(generated));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else if (generate) {
        printf("%s\n", generated);
        fputs("note: store this secret now; it cannot be shown again\n",
              stderr);
    } else {
        printf("%s\n", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    ctl_publish_change(ctl, agent);
out_free:
    free(sec.sealed);
    return rc;
}

static void print_refresh(const struct ctl *ctl, const struct oflow_result *r)
{
    char at[32] = "";
    if (r->expires_at_ms > 0)
        cs_rfc3339_s(r->expires_at_ms, at);
    if (ctl->json) {
        json_t *o = json_pack(
            "{s:s,s:s?,s:s,s:s,s:s?,s:b,s:b,s:i}", "id", r->connection_id,
            "provider", r->provider[0] ? r->provider : NULL, "result",
            oflow_status_name(r->status), "message", r->message,
            "expires_at", at[0] ? at : NULL, "rotated", r->rotated,
            "applied_pending", r->applied_pending, "token_requests",
            r->token_requests);
        if (r->error[0])
            json_object_set_new(o, "error", json_string(r->error));
        if (r->http_status)
            json_object_set_new(o, "http_status",
                                json_integer(r->http_status));
        if (r->retry_after_ms >= 0 && r->status == OFLOW_TRANSIENT)
            json_object_set_new(o, "retry_after_ms",
                                json_integer(r->retry_after_ms));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
        return;
    }
    switch (r->status) {
    case OFLOW_REFRESHED:
    case OFLOW_FRESH:
        printf("%s %s: %s\n", oflow_status_name(r->status), r->connection_id,
               r->message);
        break;
    default:
        ctl_fail(CTL_FAIL, "cannot refresh connection '%s': %s",
                 r->connection_id, r->message);
        break;
    }
}

int ctl_connections_refresh(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections refresh CONNECTION_ID [--force] "
        "[--json]\n\n"
        "Refresh an OAuth connection's tokens now, under the same Redis lock\n"
        "as the workers and the scheduler: a token still valid for longer\n"
        "than CALLSYNC_OAUTH_REFRESH_MARGIN_S is kept unless --force is\n"
        "given (which also retries an expired connection). A refresh token\n"
        "the provider refuses marks the connection expired, with the reason\n"
        "in last_error. Exit codes: 0 refreshed or still valid, 1 failed or\n"
        "refused, 2 usage or configuration, 3 not found.\n";
    bool force = false;
    const struct ctl_opt opts[] = {{"force", NULL, &force}};
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    if (!pos[0]) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "connections refresh needs a "
                        "CONNECTION_ID");
    }
    if (!ctl_is_uuid(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid connection id '%s'", pos[0]);
    struct cs_keyring *kr = open_keyring(ctl);
    if (!kr)
        return CTL_USAGE;
    int rc = ctl_db(ctl);
    if (rc) {
        cs_keyring_free(kr);
        return rc;
    }
    struct cs_err err = {0};
    struct redisContext *redis = oflow_redis_connect(
        ctl->cfg.redis_url, ctl->cfg.oauth_timeout_ms + 5000, &err);
    if (!redis) {
        cs_keyring_free(kr);
        return ctl_fail(CTL_FAIL, "cannot refresh: %s (the refresh lock "
                        "lives in Redis)", err.msg);
    }
    struct oflow_env env = {
        .kr = kr,
        .clients = ctl->cfg.oauth_clients,
        .base_urls = ctl->cfg.oauth_base_urls,
        .jwt_key_pem = ctl->cfg.salesforce_jwt_key[0]
                           ? ctl->cfg.salesforce_jwt_key
                           : NULL,
        .timeout_ms = ctl->cfg.oauth_timeout_ms,
    };
    struct oflow_opts o = {
        .force = force,
        .min_valid_ms = (int64_t)ctl->cfg.oauth_refresh_margin_s * 1000,
        .stale_expires_ms = -1,
    };
    struct oflow_result res;
    oflow_run_blocking(&env, ctl->pg, redis, pos[0], &o, &res);
    redisFree(redis);
    cs_keyring_free(kr);
    print_refresh(ctl, &res);
    switch (res.status) {
    case OFLOW_REFRESHED:
    case OFLOW_FRESH:
        return CTL_OK;
    case OFLOW_INVALID:
        return res.code == CS_ENOENT ? CTL_NOTFOUND : CTL_USAGE;
    default:
        return CTL_FAIL;
    }
}

int ctl_connections_authorize_url(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections authorize-url --agent AGENT_ID\n"
        "         --type TYPE [--connection CONNECTION_ID] [--return URL]\n"
        "         [--scope SCOPES] [--login-url URL] [--dc DC]\n"
        "         [--tenant TENANT] [--ttl SECONDS] [--json]\n\n"
        "Print a signed, expiring link that lets a user connect the agent\n"
        "to TYPE with OAuth through callsync-connect (or reconnect the\n"
        "named connection). Only the agent named here can be connected\n"
        "with it. TYPE: google_calendar (or google), outlook (or\n"
        "microsoft), hubspot, salesforce, calendly, gohighlevel, zoho.\n"
        "--scope overrides the provider's default scopes; --login-url\n"
        "(Salesforce), --dc (Zoho) and --tenant (Microsoft) pick where the\n"
        "user signs in. The link lasts --ttl seconds (default\n"
        "CALLSYNC_CONNECT_LINK_TTL_S). Needs CALLSYNC_CONNECT_PUBLIC_URL\n"
        "and CALLSYNC_CONNECT_STATE_KEY as callsync-connect has them.\n";
    const char *agent = NULL, *type = NULL, *conn = NULL, *ret = NULL,
               *scope = NULL, *login = NULL, *dc = NULL, *tenant = NULL,
               *ttl = NULL;
    const struct ctl_opt opts[] = {
        {"agent", &agent, NULL},     {"type", &type, NULL},
        {"connection", &conn, NULL}, {"return", &ret, NULL},
        {"scope", &scope, NULL},     {"login-url", &login, NULL},
        {"dc", &dc, NULL},           {"tenant", &tenant, NULL},
        {"ttl", &ttl, NULL},
    };
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    if (!agent || !type)
        return ctl_fail(CTL_USAGE, "connections authorize-url needs --agent "
                        "and --type");
    if (!ctl_is_uuid(agent))
        return ctl_fail(CTL_USAGE, "invalid agent id '%s'", agent);
    if (conn && !ctl_is_uuid(conn))
        return ctl_fail(CTL_USAGE, "invalid connection id '%s'", conn);
    int p = oauth_provider_for_type(type);
    if (p < 0)
        p = oauth_provider_parse(type);
    if (p < 0)
        return ctl_fail(CTL_USAGE, "'%s' is not connected with OAuth: "
                        "expected google_calendar, outlook, hubspot, "
                        "salesforce, calendly, gohighlevel or zoho", type);
    if (ret && !ctl_is_url(ret))
        return ctl_fail(CTL_USAGE, "invalid --return: expected an https:// "
                        "or http:// URL");
    if (login && !ctl_is_url(login))
        return ctl_fail(CTL_USAGE, "invalid --login-url: expected an "
                        "https:// URL");
    long long life = ctl->cfg.connect_link_ttl_s;
    if (ttl) {
        char *end = NULL;
        life = strtoll(ttl, &end, 10);
        if (!end || *end || life < 1 || life > 2592000)
            return ctl_fail(CTL_USAGE, "invalid --ttl '%s': 1 to 2592000 "
                            "seconds", ttl);
    }
    struct cs_err err = {0};
    if (oauth_link_check_key(ctl->cfg.connect_state_key, &err))
        return ctl_fail(CTL_USAGE, "%s", err.msg);
    if (!ctl_is_url(ctl->cfg.connect_public_url))
        return ctl_fail(CTL_USAGE, "CALLSYNC_CONNECT_PUBLIC_URL must be set "
                        "to callsync-connect's public origin");
    /* The agent (and the connection) must exist now; the link is checked
     * again when it is used. */
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    char org[37];
    rc = agent_org(ctl, agent, org);
    if (rc)
        return rc;
    if (conn) {
        const char *params[] = {conn, agent};
        PGresult *r = ctl_query(
            ctl, "look up connection",
            "SELECT integration_type FROM integration_connections "
            "WHERE id = $1 AND agent_id = $2 AND is_active",
            2, params);
        if (!r)
            return CTL_FAIL;
        bool found = PQntuples(r) == 1;
        bool same = found && oauth_provider_for_type(PQgetvalue(r, 0, 0)) == p;
        PQclear(r);
        if (!found)
            return ctl_fail(CTL_NOTFOUND, "connection '%s' of agent '%s' not "
                            "found", conn, agent);
        if (!same)
            return ctl_fail(CTL_USAGE, "connection '%s' is not a %s "
                            "connection", conn, oauth_provider_title(p));
    }
    const char *extra[] = {"connection", conn, "return", ret, "scope", scope,
                           "login_url", login, "dc", dc, "tenant", tenant,
                           NULL};
    int64_t exp = cs_now_ms() / 1000 + life;
    char *url = oauth_link_make(ctl->cfg.connect_state_key,
                                ctl->cfg.connect_public_url,
                                oauth_provider_name(p), agent, extra, exp);
    if (ctl->json) {
        char when[32];
        cs_rfc3339_ms(exp * 1000, when);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "url", url, "provider",
                              oauth_provider_name(p), "agent_id", agent,
                              "expires_at", when);
        ctl_print_json(o);
        json_decref(o);
    } else {
        puts(url);
    }
    free(url);
    return CTL_OK;
}
