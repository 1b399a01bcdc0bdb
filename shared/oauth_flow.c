/*
 * oauth_flow.c - the refresh of one connection's tokens under a Redis
 * lock with a write-ahead pending record (see oauth_flow.h), as a state
 * machine that does no I/O itself, and a blocking driver for it.
 *
 * Every change to the row is one UPDATE conditional on the sealed access
 * and refresh tokens read under the lock: a refresher that lost its lock
 * (paused past the TTL) can never overwrite newer tokens with older ones,
 * and a pending record whose base no longer matches the row is stale and
 * is dropped. A refusal (invalid_grant) is only recorded when neither the
 * row nor the pending record changed since the request was built: with a
 * rotating provider, a refresher that presented a token someone else had
 * just rotated must not expire a healthy connection.
 */
#include "oauth_flow.h"
#include "log.h"

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 15000
#define LOCK_SLACK_MS 10000
#define MAX_RESTARTS 2
#define MAX_BODY (64 * 1024)

/* Compare-and-delete and compare-and-extend: a lock or a pending record
 * is only ever removed by whoever wrote that exact value. */
static const char cmpdel_lua[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end";
static const char extend_lua[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

static const char read_sql[] =
    "SELECT integration_type, auth_type, connection_status, is_active, "
    " access_token, refresh_token, "
    " (extract(epoch FROM token_expires_at) * 1000)::bigint, "
    " config::text, api_secret, instance_url, agent_id "
    "FROM integration_connections WHERE id = $1::uuid";

/* Store new tokens (ours or a pending record's): one statement, only if
 * the row still holds the tokens they replace. */
static const char store_sql[] =
    "UPDATE integration_connections SET access_token = $2, "
    " refresh_token = coalesce($3, refresh_token), "
    " token_expires_at = to_timestamp($4::bigint / 1000.0), "
    " instance_url = coalesce($5, instance_url), "
    " connection_status = 'connected', last_error = NULL "
    "WHERE id = $1::uuid AND access_token IS NOT DISTINCT FROM $6 "
    " AND refresh_token IS NOT DISTINCT FROM $7 "
    " AND is_active AND connection_status <> 'disconnected' "
    "RETURNING (extract(epoch FROM token_expires_at) * 1000)::bigint";

static const char expire_sql[] =
    "UPDATE integration_connections SET connection_status = 'expired', "
    " last_error = $2 "
    "WHERE id = $1::uuid AND access_token IS NOT DISTINCT FROM $3 "
    " AND refresh_token IS NOT DISTINCT FROM $4 "
    " AND connection_status <> 'disconnected' RETURNING 1";

enum st {
    ST_READ0,           /* SQL: the row, no lock */
    ST_LOCK,            /* REDIS: SET lock NX PX */
    ST_WAIT,            /* SLEEP */
    ST_WAIT_CHECK,      /* REDIS: EXISTS lock */
    ST_PENDING_GET,     /* REDIS: GET pending */
    ST_PENDING_APPLY,   /* SQL: store the pending record's tokens */
    ST_PENDING_DROP,    /* REDIS: compare-delete that record */
    ST_READ,            /* SQL: the row, under the lock */
    ST_EXTEND,          /* REDIS: compare-extend the lock */
    ST_HTTP,            /* the token request */
    ST_PENDING_SET,     /* REDIS: SET pending (write-ahead) */
    ST_STORE,           /* SQL: store the new tokens */
    ST_OWN_DROP,        /* REDIS: compare-delete our pending record */
    ST_RECHECK_PENDING, /* REDIS: GET pending, after a refusal */
    ST_RECHECK_ROW,     /* SQL: the row, after a refusal */
    ST_EXPIRE,          /* SQL: connection expired + last_error */
    ST_UNLOCK,          /* REDIS: compare-delete the lock */
    ST_PUBLISH,         /* REDIS: PUBLISH the agent (caches drop) */
    ST_DONE
};

static const char *const st_names[] = {
    "read0", "lock", "wait", "wait_check", "pending_get", "pending_apply",
    "pending_drop", "read", "extend", "http", "pending_set", "store",
    "own_drop", "recheck_pending", "recheck_row", "expire", "unlock",
    "publish", "done"};

struct row {
    bool found;
    char *type, *auth_type, *status, *agent;
    bool active;
    char *access, *refresh; /* sealed, or NULL */
    bool has_expiry;
    int64_t expires_ms;
    json_t *config;
    char *api_secret;       /* sealed, or NULL */
};

#define MAX_ARGS 8

struct oflow {
    struct oflow_env env;
    struct oflow_opts opts;
    char id[40];
    char lock_key[96], pending_key[96];
    char lock_token[33];
    enum st st;
    bool locked;
    int provider;
    struct row row;

    /* the current Redis command or SQL statement */
    int argc;
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    const char *sql;
    int nparams;
    const char *params[MAX_ARGS];
    char *owned[MAX_ARGS];  /* strings argv/params point into */
    size_t nowned;

    char *pending_seen;     /* the pending record read (to drop it) */
    char *pending_ours;     /* the pending record written */
    bool pending_written;
    char *base_access, *base_refresh; /* the row's tokens the request
                                         replaces (sealed) */
    /* the token request */
    struct oauth_params op;
    struct oauth_request rq;
    char *p_client_id, *p_client_secret, *p_refresh, *p_base, *p_key;
    /* new tokens, sealed */
    char *new_access, *new_refresh, *new_instance;
    int64_t new_expires_ms;

    int64_t wait_deadline;  /* monotonic ms, 0 before the first wait */
    int64_t sleep_for;
    int restarts;
    bool publish;
    struct oflow_result res;
};

const char *oflow_status_name(enum oflow_status s)
{
    switch (s) {
    case OFLOW_REFRESHED: return "refreshed";
    case OFLOW_FRESH: return "fresh";
    case OFLOW_TRANSIENT: return "failed";
    case OFLOW_PERMANENT: return "expired";
    case OFLOW_INVALID: return "invalid";
    }
    return "unknown";
}

/* ---- Small helpers ------------------------------------------------------- */

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *v = s;
    while (*v)
        *v++ = '\0';
    free(s);
}

static int lock_ttl_ms(const struct oflow *f)
{
    return f->env.lock_ttl_ms;
}

static char *own(struct oflow *f, char *s)
{
    CS_ASSERT(f->nowned < MAX_ARGS);
    f->owned[f->nowned++] = s;
    return s;
}

static void clear_cmd(struct oflow *f)
{
    for (size_t i = 0; i < f->nowned; i++)
        free(f->owned[i]);
    f->nowned = 0;
    f->argc = 0;
    f->sql = NULL;
    f->nparams = 0;
}

static void arg(struct oflow *f, const char *s)
{
    CS_ASSERT(f->argc < MAX_ARGS);
    f->argv[f->argc] = s;
    f->argvlen[f->argc] = strlen(s);
    f->argc++;
}

static void row_release(struct row *r)
{
    free(r->type);
    free(r->auth_type);
    free(r->status);
    free(r->agent);
    free(r->access);
    free(r->refresh);
    free(r->api_secret);
    json_decref(r->config);
    memset(r, 0, sizeof(*r));
}

static char *col(const PGresult *r, int c)
{
    return PQgetisnull(r, 0, c) ? NULL : xstrdup(PQgetvalue(r, 0, c));
}

static void row_load(struct row *row, const PGresult *r)
{
    row_release(row);
    if (PQntuples(r) != 1)
        return;
    row->found = true;
    row->type = col(r, 0);
    row->auth_type = col(r, 1);
    row->status = col(r, 2);
    row->active = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
    row->access = col(r, 4);
    row->refresh = col(r, 5);
    row->has_expiry = !PQgetisnull(r, 0, 6);
    row->expires_ms =
        row->has_expiry ? strtoll(PQgetvalue(r, 0, 6), NULL, 10) : 0;
    row->config = json_loads(PQgetvalue(r, 0, 7), 0, NULL);
    if (!json_is_object(row->config)) {
        json_decref(row->config);
        row->config = json_object();
    }
    row->api_secret = col(r, 8);
    row->agent = col(r, 10);
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-'
                 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* The stored token is good enough: valid for min_valid longer, and not
 * the one the caller saw fail. */
static bool is_fresh(const struct oflow *f)
{
    const struct row *r = &f->row;
    if (f->opts.force || !r->has_expiry || !r->access)
        return false;
    if (r->expires_ms <= cs_now_ms() + f->opts.min_valid_ms)
        return false;
    if (f->opts.stale_expires_ms >= 0 &&
        r->expires_ms == f->opts.stale_expires_ms)
        return false;
    return true;
}

/* ---- Entering states ------------------------------------------------------ */

static void go(struct oflow *f, enum st st);

static void enter_sql_read(struct oflow *f)
{
    f->sql = read_sql;
    f->params[0] = f->id;
    f->nparams = 1;
}

static void enter_store(struct oflow *f, const char *access,
                        const char *refresh, int64_t expires_ms,
                        const char *instance, const char *base_access,
                        const char *base_refresh)
{
    f->sql = store_sql;
    f->params[0] = f->id;
    f->params[1] = access;
    f->params[2] = refresh;
    f->params[3] = own(f, xasprintf("%lld", (long long)expires_ms));
    f->params[4] = instance;
    f->params[5] = base_access;
    f->params[6] = base_refresh;
    f->nparams = 7;
}

/* The pending record just read, parsed into store parameters. */
static bool enter_pending_apply(struct oflow *f)
{
    json_t *j = json_loads(f->pending_seen, 0, NULL);
    const char *access = json_string_value(json_object_get(j, "access_token"));
    json_t *exp = json_object_get(j, "expires_at_ms");
    if (!json_is_object(j) || !access || strncmp(access, "v1:", 3) != 0 ||
        !json_is_integer(exp)) {
        json_decref(j);
        return false;
    }
    const char *refresh =
        json_string_value(json_object_get(j, "refresh_token"));
    const char *inst = json_string_value(json_object_get(j, "instance_url"));
    const char *ba = json_string_value(json_object_get(j, "base_access"));
    const char *br = json_string_value(json_object_get(j, "base_refresh"));
    enter_store(f, own(f, xstrdup(access)),
                refresh ? own(f, xstrdup(refresh)) : NULL,
                (int64_t)json_integer_value(exp),
                inst ? own(f, xstrdup(inst)) : NULL,
                ba ? own(f, xstrdup(ba)) : NULL,
                br ? own(f, xstrdup(br)) : NULL);
    json_decref(j);
    return true;
}

static void go(struct oflow *f, enum st st)
{
    clear_cmd(f);
    f->st = st;
    switch (st) {
    case ST_READ0:
    case ST_READ:
    case ST_RECHECK_ROW:
        enter_sql_read(f);
        break;
    case ST_LOCK:
        arg(f, "SET");
        arg(f, f->lock_key);
        arg(f, f->lock_token);
        arg(f, "NX");
        arg(f, "PX");
        arg(f, own(f, xasprintf("%d", lock_ttl_ms(f))));
        break;
    case ST_WAIT:
        break;
    case ST_WAIT_CHECK:
        arg(f, "EXISTS");
        arg(f, f->lock_key);
        break;
    case ST_PENDING_GET:
    case ST_RECHECK_PENDING:
        arg(f, "GET");
        arg(f, f->pending_key);
        break;
    case ST_PENDING_APPLY:
        CS_ASSERT(!"entered through enter_pending_apply");
        break;
    case ST_PENDING_DROP:
    case ST_OWN_DROP:
        arg(f, "EVAL");
        arg(f, cmpdel_lua);
        arg(f, "1");
        arg(f, f->pending_key);
        arg(f, st == ST_OWN_DROP ? f->pending_ours : f->pending_seen);
        break;
    case ST_EXTEND:
        arg(f, "EVAL");
        arg(f, extend_lua);
        arg(f, "1");
        arg(f, f->lock_key);
        arg(f, f->lock_token);
        arg(f, own(f, xasprintf("%d", lock_ttl_ms(f))));
        break;
    case ST_HTTP:
        break;
    case ST_PENDING_SET:
        arg(f, "SET");
        arg(f, f->pending_key);
        arg(f, f->pending_ours);
        break;
    case ST_STORE:
        enter_store(f, f->new_access, f->new_refresh, f->new_expires_ms,
                    f->new_instance, f->base_access, f->base_refresh);
        break;
    case ST_EXPIRE:
        f->sql = expire_sql;
        f->params[0] = f->id;
        f->params[1] = f->res.message;
        f->params[2] = f->base_access;
        f->params[3] = f->base_refresh;
        f->nparams = 4;
        break;
    case ST_UNLOCK:
        arg(f, "EVAL");
        arg(f, cmpdel_lua);
        arg(f, "1");
        arg(f, f->lock_key);
        arg(f, f->lock_token);
        break;
    case ST_PUBLISH:
        arg(f, "PUBLISH");
        arg(f, OFLOW_CACHE_CHANNEL);
        arg(f, f->row.agent ? f->row.agent : f->res.agent_id);
        break;
    case ST_DONE:
        break;
    }
    log_debug("oauth_flow_step", LOG_S("connection", f->id),
              LOG_S("step", st_names[st]));
}

/* End with status (the result's other fields already set): release the
 * lock first, then announce a change. */
static void finish(struct oflow *f, enum oflow_status status)
{
    f->res.status = status;
    if (f->locked)
        go(f, ST_UNLOCK);
    else if (f->publish && (f->row.agent || f->res.agent_id[0]))
        go(f, ST_PUBLISH);
    else
        go(f, ST_DONE);
}

static void fail(struct oflow *f, enum oflow_status status, int code,
                 const char *error, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(struct oflow *f, enum oflow_status status, int code,
                 const char *error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->res.message, sizeof(f->res.message), fmt, ap);
    va_end(ap);
    snprintf(f->res.error, sizeof(f->res.error), "%s", error);
    f->res.code = code;
    finish(f, status);
}

static void restart(struct oflow *f)
{
    if (++f->restarts > MAX_RESTARTS) {
        fail(f, OFLOW_TRANSIENT, 0, "conflict",
             "the connection's tokens kept changing during the refresh: "
             "try again");
        return;
    }
    f->res.error[0] = '\0';
    f->res.status = OFLOW_TRANSIENT;
    go(f, ST_PENDING_GET);
}

/* ---- Decisions ------------------------------------------------------------ */

/* Whether the row can be refreshed at all; if not, finishes the flow. */
static bool check_row(struct oflow *f)
{
    struct row *r = &f->row;
    if (!r->found) {
        fail(f, OFLOW_INVALID, CS_ENOENT, "not_found",
             "connection '%s' not found", f->id);
        return false;
    }
    snprintf(f->res.agent_id, sizeof(f->res.agent_id), "%s",
             r->agent ? r->agent : "");
    f->res.expires_at_ms = r->has_expiry ? r->expires_ms : 0;
    f->provider = oauth_provider_for_type(r->type);
    if (f->provider < 0) {
        fail(f, OFLOW_INVALID, CS_EINVAL, "not_oauth",
             "connection '%s' (%s) has no OAuth tokens to refresh", f->id,
             r->type);
        return false;
    }
    snprintf(f->res.provider, sizeof(f->res.provider), "%s",
             oauth_provider_name(f->provider));
    if (strcmp(r->auth_type, "oauth") != 0 &&
        strcmp(r->auth_type, "jwt") != 0) {
        fail(f, OFLOW_INVALID, CS_EINVAL, "not_oauth",
             "connection '%s' uses %s authentication, not OAuth", f->id,
             r->auth_type);
        return false;
    }
    if (!r->active || strcmp(r->status, "disconnected") == 0) {
        fail(f, OFLOW_INVALID, CS_EINVAL, "disconnected",
             "connection '%s' is disconnected", f->id);
        return false;
    }
    return true;
}

/* An expired connection is not retried on every call (its refresh token
 * was refused): only a forced refresh tries again. */
static bool stop_if_expired(struct oflow *f)
{
    if (f->opts.force || strcmp(f->row.status, "expired") != 0)
        return false;
    fail(f, OFLOW_PERMANENT, 0, "expired",
         "connection '%s' is expired; reconnect %s (or refresh with force)",
         f->id, oauth_provider_title(f->provider));
    return true;
}

static char *open_secret(struct oflow *f, const char *sealed,
                         const char *what, bool *bad)
{
    if (!sealed)
        return NULL;
    struct cs_err err = {0};
    size_t n = 0;
    char *plain = f->env.kr ? cs_open(f->env.kr, sealed, &n, &err) : NULL;
    if (!plain) {
        *bad = true;
        fail(f, OFLOW_INVALID, CS_EINVAL, "secret_unreadable",
             "cannot open the connection's stored %s: %s", what,
             f->env.kr ? err.msg : "no encryption keys configured");
    }
    return plain;
}

static const char *cfg_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* Resolve credentials and settings and build the token request. */
static bool prepare_request(struct oflow *f)
{
    const struct row *r = &f->row;
    const json_t *oc = json_object_get(r->config, "oauth");
    struct oauth_params *p = &f->op;
    memset(p, 0, sizeof(*p));
    p->provider = (enum oauth_provider)f->provider;
    p->grant = strcmp(r->auth_type, "jwt") == 0 &&
                       f->provider == OAUTH_SALESFORCE
                   ? OAUTH_GRANT_JWT_BEARER
                   : OAUTH_GRANT_REFRESH;
    const char *name = oauth_provider_name(p->provider);
    bool bad = false;

    /* The connection's own app (config oauth.client_id and the sealed
     * api_secret), else the fleet's app for this provider. */
    const char *own_id = cfg_str(oc, "client_id");
    if (own_id) {
        f->p_client_id = xstrdup(own_id);
        char *sec = open_secret(f, r->api_secret, "client secret", &bad);
        if (bad)
            return false;
        if (p->grant == OAUTH_GRANT_JWT_BEARER)
            f->p_key = sec;
        else
            f->p_client_secret = sec;
    } else {
        char *spec = oauth_spec_get(f->env.clients, name);
        char *colon = spec ? strchr(spec, ':') : NULL;
        if (spec && colon && colon != spec) {
            f->p_client_id = xstrndup(spec, (size_t)(colon - spec));
            f->p_client_secret = xstrdup(colon + 1);
        } else if (spec && !colon && p->grant == OAUTH_GRANT_JWT_BEARER) {
            f->p_client_id = xstrdup(spec);
        }
        wipe_free(spec);
    }
    if (!f->p_client_id) {
        fail(f, OFLOW_INVALID, CS_EINVAL, "no_client",
             "no %s OAuth client is configured: set CALLSYNC_OAUTH_CLIENTS="
             "%s=<client id>:<client secret>, or the connection's "
             "config.oauth.client_id and api secret",
             oauth_provider_title(p->provider), name);
        return false;
    }
    if (p->grant == OAUTH_GRANT_JWT_BEARER && !f->p_key && f->env.jwt_key_pem)
        f->p_key = xstrdup(f->env.jwt_key_pem);
    if (p->grant == OAUTH_GRANT_REFRESH) {
        f->p_refresh = open_secret(f, r->refresh, "refresh token", &bad);
        if (bad)
            return false;
    }
    f->p_base = oauth_spec_get(f->env.base_urls, name);
    p->base_url = f->p_base;
    p->client_id = f->p_client_id;
    p->client_secret = f->p_client_secret;
    p->refresh_token = f->p_refresh;
    p->private_key_pem = f->p_key;
    p->username = cfg_str(oc, "username");
    p->login_url = cfg_str(oc, "login_url");
    p->zoho_dc = cfg_str(oc, "dc");
    p->tenant = cfg_str(oc, "tenant");
    p->scope = cfg_str(oc, "scope");
    p->user_type = cfg_str(oc, "user_type");
    json_t *life = json_object_get(oc, "session_lifetime_s");
    p->session_lifetime_s =
        json_is_integer(life) ? (int64_t)json_integer_value(life) : 0;
    p->now_ms = cs_now_ms();

    struct cs_err err = {0};
    if (oauth_build_request(p, &f->rq, &err) != 0) {
        if (strcmp(err.field, "refresh_token") == 0) {
            /* Nothing to refresh with: the user must connect again. */
            f->base_access = r->access ? xstrdup(r->access) : NULL;
            f->base_refresh = NULL;
            snprintf(f->res.error, sizeof(f->res.error), "no_refresh_token");
            snprintf(f->res.message, sizeof(f->res.message),
                     "reconnect %s: no refresh token is stored",
                     oauth_provider_title(p->provider));
            f->res.status = OFLOW_PERMANENT;
            go(f, ST_EXPIRE);
            return false;
        }
        fail(f, OFLOW_INVALID, CS_EINVAL, "config",
             "cannot build the %s token request: %s",
             oauth_provider_title(p->provider), err.msg);
        return false;
    }
    f->base_access = r->access ? xstrdup(r->access) : NULL;
    f->base_refresh = r->refresh ? xstrdup(r->refresh) : NULL;
    return true;
}

static void release_request(struct oflow *f)
{
    oauth_request_release(&f->rq);
    free(f->p_client_id);
    wipe_free(f->p_client_secret);
    wipe_free(f->p_refresh);
    wipe_free(f->p_key);
    free(f->p_base);
    f->p_client_id = f->p_client_secret = f->p_refresh = f->p_key = NULL;
    f->p_base = NULL;
}

static void fresh_message(struct oflow *f)
{
    char at[32];
    cs_rfc3339_s(f->row.expires_ms, at);
    snprintf(f->res.message, sizeof(f->res.message),
             "the stored %s token is valid until %s%s",
             oauth_provider_title(f->provider), at,
             f->res.applied_pending
                 ? " (tokens of an interrupted refresh were applied)"
             : f->res.waited ? " (another refresher just renewed it)"
                             : "");
}

/* pending_only: the record (if any) has been dealt with; stop. */
static void pending_only_done(struct oflow *f)
{
    const struct row *r = &f->row;
    snprintf(f->res.agent_id, sizeof(f->res.agent_id), "%s",
             r->agent ? r->agent : "");
    f->res.expires_at_ms = r->has_expiry ? r->expires_ms : 0;
    int p = r->found ? oauth_provider_for_type(r->type) : -1;
    if (p >= 0)
        snprintf(f->res.provider, sizeof(f->res.provider), "%s",
                 oauth_provider_name(p));
    snprintf(f->res.message, sizeof(f->res.message), "%s",
             f->res.applied_pending
                 ? "the tokens of an interrupted refresh were applied"
                 : "no tokens of an interrupted refresh to apply");
    finish(f, OFLOW_FRESH);
}

/* The row was read under the lock: done, or ask the provider. */
static void decide(struct oflow *f)
{
    if (f->opts.pending_only) {
        pending_only_done(f);
        return;
    }
    if (!check_row(f))
        return;
    if (is_fresh(f)) {
        fresh_message(f);
        finish(f, OFLOW_FRESH);
        return;
    }
    if (stop_if_expired(f))
        return;
    release_request(f);
    free(f->base_access);
    free(f->base_refresh);
    f->base_access = f->base_refresh = NULL;
    if (prepare_request(f))
        go(f, ST_EXTEND);
}

/* The token endpoint gave tokens: seal them and write ahead. */
static void got_tokens(struct oflow *f, struct oauth_result *t)
{
    /* A restarted refresh may come here a second time. */
    free(f->new_access);
    free(f->new_refresh);
    free(f->new_instance);
    free(f->pending_ours);
    f->pending_written = false;
    f->new_access = cs_seal(f->env.kr, t->access_token,
                            strlen(t->access_token));
    f->new_refresh = t->refresh_token && t->rotated
                         ? cs_seal(f->env.kr, t->refresh_token,
                                   strlen(t->refresh_token))
                         : NULL;
    f->new_instance = t->instance_url ? xstrdup(t->instance_url) : NULL;
    f->new_expires_ms = t->expires_at_ms;
    f->res.rotated = f->new_refresh != NULL;
    json_t *j = json_pack("{s:i,s:s,s:s?,s:I,s:s?,s:s?,s:s?,s:I}", "v", 1,
                          "access_token", f->new_access, "refresh_token",
                          f->new_refresh, "expires_at_ms",
                          (json_int_t)f->new_expires_ms, "instance_url",
                          f->new_instance, "base_access", f->base_access,
                          "base_refresh", f->base_refresh, "at_ms",
                          (json_int_t)cs_now_ms());
    CS_ASSERT(j);
    f->pending_ours = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    CS_ASSERT(f->pending_ours);
    go(f, ST_PENDING_SET);
}

/* ---- Feeding results ------------------------------------------------------ */

static bool reply_ok(const redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

static void redis_failed(struct oflow *f, const redisReply *r)
{
    fail(f, OFLOW_TRANSIENT, 0, "redis", "Redis failed during the refresh: %s",
         r && r->type == REDIS_REPLY_ERROR ? r->str : "unreachable");
}

void oflow_redis_done(struct oflow *f, const struct redisReply *r)
{
    switch (f->st) {
    case ST_LOCK:
        if (!reply_ok(r)) {
            redis_failed(f, r);
        } else if (r->type == REDIS_REPLY_STATUS) {
            f->locked = true;
            go(f, ST_PENDING_GET);
        } else {
            /* Someone else is refreshing: wait for the lock to go. */
            f->res.waited = true;
            if (!f->wait_deadline)
                f->wait_deadline = cs_mono_ms() + f->env.lock_wait_ms;
            go(f, ST_WAIT);
        }
        break;
    case ST_WAIT_CHECK:
        if (!reply_ok(r))
            redis_failed(f, r);
        else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
            go(f, ST_READ0);
        else
            go(f, ST_WAIT);
        break;
    case ST_PENDING_GET:
    case ST_RECHECK_PENDING:
        if (!reply_ok(r)) {
            if (f->st == ST_RECHECK_PENDING) {
                go(f, ST_RECHECK_ROW); /* cannot tell: look at the row */
                break;
            }
            redis_failed(f, r);
        } else if (r->type == REDIS_REPLY_STRING) {
            if (f->st == ST_RECHECK_PENDING) {
                restart(f);
                break;
            }
            free(f->pending_seen);
            f->pending_seen = xstrndup(r->str, r->len);
            clear_cmd(f);
            if (enter_pending_apply(f)) {
                f->st = ST_PENDING_APPLY;
            } else {
                log_warn("oauth_pending_malformed",
                         LOG_S("connection", f->id));
                go(f, ST_PENDING_DROP);
            }
        } else if (f->st == ST_RECHECK_PENDING) {
            go(f, ST_RECHECK_ROW);
        } else {
            go(f, ST_READ);
        }
        break;
    case ST_PENDING_DROP:
        go(f, ST_READ);
        break;
    case ST_EXTEND:
        if (!reply_ok(r)) {
            redis_failed(f, r);
        } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            go(f, ST_HTTP);
        } else {
            /* The lock expired under us (a long pause): start over. */
            f->locked = false;
            if (++f->restarts > MAX_RESTARTS)
                fail(f, OFLOW_TRANSIENT, 0, "lock_lost",
                     "lost the refresh lock repeatedly: try again");
            else
                go(f, ST_LOCK);
        }
        break;
    case ST_PENDING_SET:
        if (reply_ok(r)) {
            f->pending_written = true;
            if (f->env.after_pending)
                f->env.after_pending(f->env.hook_arg);
        } else {
            /* Without the write-ahead the tokens must still reach
             * PostgreSQL: a lost rotated token costs a reconnect. */
            log_error("oauth_pending_not_written", LOG_S("connection", f->id),
                      LOG_S("err", r && r->type == REDIS_REPLY_ERROR
                                       ? r->str
                                       : "unreachable"));
        }
        go(f, ST_STORE);
        break;
    case ST_OWN_DROP:
        go(f, ST_UNLOCK);
        break;
    case ST_UNLOCK:
        f->locked = false;
        if (f->publish && f->res.agent_id[0])
            go(f, ST_PUBLISH);
        else
            go(f, ST_DONE);
        break;
    case ST_PUBLISH:
        go(f, ST_DONE);
        break;
    default:
        CS_ASSERT(!"redis reply in a state without a command");
    }
}

static void pg_failed(struct oflow *f, const char *err)
{
    char m[200];
    snprintf(m, sizeof(m), "%s", err ? err : "unreachable");
    m[strcspn(m, "\r\n")] = '\0';
    fail(f, OFLOW_TRANSIENT, 0, "database",
         "PostgreSQL failed during the refresh: %s", m);
}

void oflow_sql_done(struct oflow *f, const PGresult *r, const char *err)
{
    switch (f->st) {
    case ST_READ0:
        if (!r) {
            pg_failed(f, err);
            break;
        }
        row_load(&f->row, r);
        if (f->opts.pending_only) {
            /* Whatever the row says: a leftover record is applied or,
             * when it no longer fits the row, dropped. */
            go(f, ST_LOCK);
            break;
        }
        if (!check_row(f))
            break;
        if (is_fresh(f)) {
            fresh_message(f);
            finish(f, OFLOW_FRESH);
        } else if (!stop_if_expired(f)) {
            go(f, ST_LOCK);
        }
        break;
    case ST_PENDING_APPLY:
        if (!r) {
            pg_failed(f, err); /* the record stays for the next one */
            break;
        }
        if (PQntuples(r) == 1) {
            f->res.applied_pending = true;
            f->publish = true;
            log_info("oauth_pending_applied", LOG_S("connection", f->id));
        } else {
            log_warn("oauth_pending_discarded", LOG_S("connection", f->id),
                     LOG_S("reason", "the row changed since it was written"));
        }
        go(f, ST_PENDING_DROP);
        break;
    case ST_READ:
        if (!r) {
            pg_failed(f, err);
            break;
        }
        row_load(&f->row, r);
        decide(f);
        break;
    case ST_STORE:
        if (!r) {
            if (f->pending_written) {
                /* The tokens are safe in the pending record, which
                 * stays for the next refresher to apply. */
                char m[200];
                snprintf(m, sizeof(m), "%s", err ? err : "unreachable");
                m[strcspn(m, "\r\n")] = '\0';
                fail(f, OFLOW_TRANSIENT, 0, "database",
                     "new tokens were received but not stored (%s); they "
                     "wait in Redis and the next refresh applies them",
                     m);
            } else {
                log_error("oauth_tokens_lost", LOG_S("connection", f->id));
                pg_failed(f, err);
            }
            break;
        }
        if (PQntuples(r) == 1) {
            f->res.expires_at_ms = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            f->publish = true;
            f->res.status = OFLOW_REFRESHED;
            snprintf(f->res.message, sizeof(f->res.message),
                     "new %s access token stored, valid for %lld s%s",
                     oauth_provider_title(f->provider),
                     (long long)((f->res.expires_at_ms - cs_now_ms() + 500) /
                                 1000),
                     f->res.rotated ? "; rotated refresh token stored" : "");
            log_info("oauth_refreshed", LOG_S("connection", f->id),
                     LOG_S("provider", f->res.provider),
                     LOG_I("rotated", f->res.rotated));
        } else {
            /* Someone stored other tokens meanwhile (we lost the lock):
             * theirs stay, ours are dropped. */
            f->res.status = OFLOW_FRESH;
            f->res.rotated = false;
            snprintf(f->res.message, sizeof(f->res.message),
                     "another refresher stored newer %s tokens first",
                     oauth_provider_title(f->provider));
            log_warn("oauth_refresh_superseded", LOG_S("connection", f->id));
        }
        if (f->pending_written)
            go(f, ST_OWN_DROP);
        else
            finish(f, f->res.status);
        break;
    case ST_RECHECK_ROW:
        if (!r) {
            pg_failed(f, err);
            break;
        }
        row_load(&f->row, r);
        if (!f->row.found || !same(f->row.access, f->base_access) ||
            !same(f->row.refresh, f->base_refresh))
            restart(f);
        else
            go(f, ST_EXPIRE);
        break;
    case ST_EXPIRE:
        if (!r) {
            /* The refusal stands even if it could not be recorded. */
            log_error("oauth_expire_not_saved", LOG_S("connection", f->id));
            finish(f, OFLOW_PERMANENT);
            break;
        }
        if (PQntuples(r) == 1) {
            f->publish = true;
            log_warn("oauth_connection_expired", LOG_S("connection", f->id),
                     LOG_S("provider", f->res.provider),
                     LOG_S("error", f->res.error));
            finish(f, OFLOW_PERMANENT);
        } else {
            restart(f);
        }
        break;
    default:
        CS_ASSERT(!"sql result in a state without a statement");
    }
}

void oflow_http_done(struct oflow *f, const struct oauth_response *rsp)
{
    CS_ASSERT(f->st == ST_HTTP);
    f->res.token_requests++;
    struct oauth_result t;
    f->op.now_ms = cs_now_ms();
    oauth_parse_response(&f->op, rsp, &t);
    f->res.http_status = t.http_status;
    f->res.retry_after_ms = t.retry_after_ms;
    release_request(f);
    switch (t.outcome) {
    case OAUTH_OK:
        got_tokens(f, &t);
        break;
    case OAUTH_TRANSIENT:
        snprintf(f->res.error, sizeof(f->res.error), "%s", t.error);
        snprintf(f->res.message, sizeof(f->res.message), "%s", t.message);
        log_warn("oauth_refresh_failed", LOG_S("connection", f->id),
                 LOG_S("provider", f->res.provider), LOG_S("error", t.error),
                 LOG_I("status", t.http_status));
        finish(f, OFLOW_TRANSIENT);
        break;
    case OAUTH_PERMANENT:
        snprintf(f->res.error, sizeof(f->res.error), "%s", t.error);
        snprintf(f->res.message, sizeof(f->res.message), "%s", t.message);
        f->res.status = OFLOW_PERMANENT;
        go(f, ST_RECHECK_PENDING);
        break;
    }
    oauth_result_release(&t);
}

void oflow_wake(struct oflow *f)
{
    CS_ASSERT(f->st == ST_WAIT);
    if (cs_mono_ms() >= f->wait_deadline) {
        fail(f, OFLOW_TRANSIENT, 0, "lock_busy",
             "another refresh of connection '%s' is still running: try "
             "again",
             f->id);
        return;
    }
    go(f, ST_WAIT_CHECK);
}

/* ---- Life and accessors --------------------------------------------------- */

struct oflow *oflow_new(const struct oflow_env *env, const char *conn_id,
                        const struct oflow_opts *opts)
{
    struct oflow *f = xcalloc(1, sizeof(*f));
    f->env = *env;
    if (f->env.timeout_ms <= 0)
        f->env.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (f->env.lock_ttl_ms <= 0)
        f->env.lock_ttl_ms = f->env.timeout_ms + LOCK_SLACK_MS;
    if (f->env.lock_ttl_ms < f->env.timeout_ms + 1000)
        f->env.lock_ttl_ms = f->env.timeout_ms + 1000;
    if (f->env.lock_wait_ms <= 0)
        f->env.lock_wait_ms = lock_ttl_ms(f) + 5000;
    f->opts = *opts;
    f->provider = -1;
    f->res.retry_after_ms = -1;
    snprintf(f->res.connection_id, sizeof(f->res.connection_id), "%.36s",
             conn_id ? conn_id : "");
    if (!is_uuid(conn_id)) {
        fail(f, OFLOW_INVALID, CS_ENOENT, "not_found",
             "invalid connection id '%.40s'", conn_id ? conn_id : "");
        return f;
    }
    snprintf(f->id, sizeof(f->id), "%s", conn_id);
    snprintf(f->lock_key, sizeof(f->lock_key), "%s{%s}", OFLOW_LOCK_PREFIX,
             f->id);
    snprintf(f->pending_key, sizeof(f->pending_key), "%s{%s}",
             OFLOW_PENDING_PREFIX, f->id);
    unsigned char rnd[16] = {0};
    if (cs_random(rnd, sizeof(rnd)) != 0) {
        fail(f, OFLOW_TRANSIENT, 0, "random", "no random bytes for the lock");
        return f;
    }
    cs_hex_encode(rnd, sizeof(rnd), f->lock_token);
    go(f, ST_READ0);
    return f;
}

void oflow_free(struct oflow *f)
{
    if (!f)
        return;
    clear_cmd(f);
    row_release(&f->row);
    release_request(f);
    free(f->pending_seen);
    free(f->pending_ours);
    free(f->base_access);
    free(f->base_refresh);
    free(f->new_access);
    free(f->new_refresh);
    free(f->new_instance);
    free(f);
}

enum oflow_step oflow_step(const struct oflow *f)
{
    switch (f->st) {
    case ST_READ0:
    case ST_PENDING_APPLY:
    case ST_READ:
    case ST_STORE:
    case ST_RECHECK_ROW:
    case ST_EXPIRE:
        return OFLOW_STEP_SQL;
    case ST_WAIT:
        return OFLOW_STEP_SLEEP;
    case ST_HTTP:
        return OFLOW_STEP_HTTP;
    case ST_DONE:
        return OFLOW_STEP_DONE;
    default:
        return OFLOW_STEP_REDIS;
    }
}

void oflow_redis_argv(const struct oflow *f, int *argc, const char ***argv,
                      const size_t **argvlen)
{
    *argc = f->argc;
    *argv = (const char **)f->argv;
    *argvlen = f->argvlen;
}

void oflow_sql(const struct oflow *f, const char **sql, int *nparams,
               const char *const **params)
{
    *sql = f->sql;
    *nparams = f->nparams;
    *params = f->params;
}

const struct oauth_request *oflow_http(const struct oflow *f)
{
    return &f->rq;
}

int oflow_http_timeout_ms(const struct oflow *f)
{
    return f->env.timeout_ms;
}

int64_t oflow_sleep_ms(const struct oflow *f)
{
    /* 20-50 ms: short enough that waiters notice the holder's end
     * quickly, jittered so they do not all wake together. */
    unsigned char b = 0;
    (void)!cs_random(&b, 1);
    int64_t ms = 20 + b % 31;
    int64_t left = f->wait_deadline - cs_mono_ms();
    return left < ms ? (left > 0 ? left : 0) : ms;
}

const struct oflow_result *oflow_result(const struct oflow *f)
{
    return &f->res;
}

/* ---- Blocking driver ------------------------------------------------------ */

struct http_body {
    char *data;
    size_t len;
    char retry_after[64];
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct http_body *b = arg;
    size_t add = sz * n;
    if (b->len + add > MAX_BODY)
        return 0;
    b->data = xrealloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct http_body *b = arg;
    size_t len = sz * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        const char *v = p + sizeof(name) - 1;
        size_t vl = len - (sizeof(name) - 1);
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
                      v[vl - 1] == ' '))
            vl--;
        snprintf(b->retry_after, sizeof(b->retry_after), "%.*s", (int)vl, v);
    }
    return len;
}

static void http_blocking(struct oflow *f)
{
    const struct oauth_request *rq = oflow_http(f);
    CURL *c = curl_easy_init();
    struct http_body b = {0};
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct oauth_response rsp = {0};
    if (!c) {
        rsp.transport_err = "cannot create an HTTP handle";
        oflow_http_done(f, &rsp);
        return;
    }
    for (size_t i = 0; i < rq->nheaders; i++) {
        char *h = xasprintf("%s: %s", rq->headers[i].name,
                            rq->headers[i].value);
        hdrs = curl_slist_append(hdrs, h);
        free(h);
    }
    int timeout = oflow_http_timeout_ms(f);
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->body_len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout < 5000 ? timeout : 5000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    rsp.status = (int)status;
    rsp.body = b.data;
    rsp.body_len = b.len;
    rsp.retry_after = b.retry_after[0] ? b.retry_after : NULL;
    rsp.transport_err = cc == CURLE_OK ? NULL
                        : errbuf[0]    ? errbuf
                                       : curl_easy_strerror(cc);
    oflow_http_done(f, &rsp);
    free(b.data);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

enum oflow_status oflow_run_blocking(const struct oflow_env *env, PGconn *pg,
                                     struct redisContext *redis,
                                     const char *conn_id,
                                     const struct oflow_opts *opts,
                                     struct oflow_result *out)
{
    struct oflow *f = oflow_new(env, conn_id, opts);
    for (;;) {
        switch (oflow_step(f)) {
        case OFLOW_STEP_REDIS: {
            int argc;
            const char **argv;
            const size_t *len;
            oflow_redis_argv(f, &argc, &argv, &len);
            redisReply *r =
                redis ? redisCommandArgv(redis, argc, argv, len) : NULL;
            oflow_redis_done(f, r);
            if (r)
                freeReplyObject(r);
            break;
        }
        case OFLOW_STEP_SQL: {
            const char *sql;
            int n;
            const char *const *params;
            oflow_sql(f, &sql, &n, &params);
            PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
                oflow_sql_done(f, r, NULL);
            else
                oflow_sql_done(f, NULL,
                               r ? PQresultErrorMessage(r)
                                 : PQerrorMessage(pg));
            PQclear(r);
            break;
        }
        case OFLOW_STEP_HTTP:
            http_blocking(f);
            break;
        case OFLOW_STEP_SLEEP: {
            int64_t ms = oflow_sleep_ms(f);
            struct timespec ts = {(time_t)(ms / 1000),
                                  (long)(ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            oflow_wake(f);
            break;
        }
        case OFLOW_STEP_DONE:
            *out = *oflow_result(f);
            oflow_free(f);
            return out->status;
        }
    }
}

/* ---- Redis connection ----------------------------------------------------- */

struct redisContext *oflow_redis_connect(const char *url, int timeout_ms,
                                         struct cs_err *err)
{
    char host[256] = "", user[128] = "", pass[256] = "";
    int port = 6379;
    long db = 0;
    if (!url || strncmp(url, "redis://", 8) != 0) {
        cs_err_set(err, CS_EINVAL, "redis_url",
                   "CALLSYNC_REDIS_URL must be a redis:// URL");
        return NULL;
    }
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(user, sizeof(user), "%.*s", (int)(colon - p), p);
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - colon - 1),
                     colon + 1);
        } else {
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= sizeof(host)) {
        cs_err_set(err, CS_EINVAL, "redis_url", "no host in CALLSYNC_REDIS_URL");
        return NULL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(hend - p), p);
    if (colon) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v < 1 || v > 65535) {
            cs_err_set(err, CS_EINVAL, "redis_url",
                       "bad port in CALLSYNC_REDIS_URL");
            return NULL;
        }
        port = (int)v;
    }
    if (*end == '/' && end[1] && end[1] != '?') {
        char *e;
        db = strtol(end + 1, &e, 10);
        if ((*e && *e != '?') || db < 0) {
            cs_err_set(err, CS_EINVAL, "redis_url",
                       "bad database number in CALLSYNC_REDIS_URL");
            return NULL;
        }
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        cs_err_set(err, CS_EIO, "redis_url", "cannot connect to Redis at %s:%d: %s",
                   host, port, rc ? rc->errstr : "out of memory");
        if (rc)
            redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    redisReply *r = NULL;
    if (pass[0]) {
        r = user[0] ? redisCommand(rc, "AUTH %s %s", user, pass)
                    : redisCommand(rc, "AUTH %s", pass);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            cs_err_set(err, CS_EIO, "redis_url", "Redis refused the password");
            goto out_fail;
        }
        freeReplyObject(r);
    }
    if (db) {
        r = redisCommand(rc, "SELECT %ld", db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            cs_err_set(err, CS_EIO, "redis_url",
                       "Redis refused database %ld", db);
            goto out_fail;
        }
        freeReplyObject(r);
    }
    memset(pass, 0, sizeof(pass));
    return rc;
out_fail:
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    memset(pass, 0, sizeof(pass));
    return NULL;
}
