/*
 * main.c - callsync-connect: the pages a user's browser goes through to
 * connect an agent to Google, HubSpot, Salesforce, Calendly, GoHighLevel,
 * Zoho or Microsoft with OAuth 2.0 (authorization code grant, PKCE where
 * the provider takes it), on one libev loop:
 *
 *   GET /oauth/<provider>/authorize?agent=..[&connection=..]..&exp=&sig=
 *       The signed link callsyncctl made (oauth_link.h): checks it, the
 *       agent (and the connection to reconnect), stores the flow's state in
 *       Redis (cs:oauth:state:{<id>}, 10 minutes, the PKCE verifier sealed)
 *       and redirects (302) to the provider's authorize URL.
 *   GET /oauth/<provider>/callback?code=..&state=..  (or error=..&state=..)
 *       Checks the state's HMAC, takes the state record once (a script:
 *       the record is deleted and its id remembered for an hour, so a
 *       replayed callback is told apart from an expired one), exchanges the
 *       code at the token endpoint (httpc: non-blocking, with the
 *       CALLSYNC_OAUTH_TIMEOUT_MS deadline) and stores the sealed tokens:
 *       a new connected row, or the named connection updated (connected,
 *       last_error cleared: the scheduler replays its parked jobs). Then
 *       PUBLISH on cs:cache:connections, and a page or a redirect to the
 *       return URL with ?connected=<id>.
 *   GET /metrics, /healthz, /readyz
 *
 * Every refusal is a page (or JSON when the client asks for it) with its
 * status: 400 bad link or state, 403 expired link, 404 agent or
 * connection unknown, 409 callback replayed, 502 token endpoint refused
 * or unreachable, 503 Redis or PostgreSQL down; nothing is written. A
 * refusal after the state was taken (access_denied, 502) goes to the
 * return URL with ?error=<code> when there is one.
 *
 * It is its own process rather than routes on the scheduler: it faces
 * users' browsers (a public address behind a TLS proxy) while the
 * scheduler's listener is for probes on a private one, it scales and
 * restarts on its own, and a slow token endpoint never delays the
 * scheduler's leader work.
 */
#include "cfg.h"
#include "crypto.h"
#include "httpc.h"
#include "log.h"
#include "mhttp.h"
#include "oauth.h"
#include "oauth_flow.h"
#include "oauth_link.h"
#include "pga.h"
#include "rq.h"
#include "sentry.h"

#include <hiredis/async.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_TTL_S 600
#define USED_TTL_S 3600
#define PG_TIMEOUT_MS 5000
#define RECONNECT_S 0.5

/* Outcomes counted in /metrics. */
enum outcome {
    O_REDIRECTED,      /* authorize: sent to the provider */
    O_CONNECTED,       /* callback: a new connection */
    O_RECONNECTED,     /* callback: an existing connection updated */
    O_BAD_REQUEST,     /* malformed link or callback */
    O_BAD_SIGNATURE,   /* link signature wrong */
    O_LINK_EXPIRED,
    O_BAD_STATE,       /* state forged or malformed */
    O_STATE_EXPIRED,
    O_REPLAYED,
    O_PROVIDER_MISMATCH,
    O_NOT_FOUND,       /* agent or connection */
    O_DENIED,          /* the user or provider said no (error=...) */
    O_TOKEN_REFUSED,
    O_TOKEN_UNAVAILABLE,
    O_UNAVAILABLE,     /* Redis or PostgreSQL */
    O_NOT_CONFIGURED,
    O_N
};

static const char *const outcome_names[O_N] = {
    "redirected",   "connected",     "reconnected",       "bad_request",
    "bad_signature", "link_expired", "bad_state",         "state_expired",
    "replayed",     "provider_mismatch", "not_found",     "denied",
    "token_refused", "token_unavailable", "unavailable",  "not_configured",
};

struct app {
    struct cfg *cfg;
    struct ev_loop *loop;
    struct cs_keyring *kr;
    struct mhttp *http;
    struct httpc *hc;
    struct pga *pg;
    struct rq_addr raddr;
    redisAsyncContext *rc;
    bool rc_ready;
    bool stopping;
    ev_timer reconnect;
    ev_signal sigterm, sigint;
    uint64_t count[2][O_N]; /* [authorize, callback][outcome] */
};

/* One request in progress. */
struct op {
    struct app *a;
    struct mhttp_req *req;
    bool callback;
    bool json;                 /* the client asked for JSON */
    int provider;
    char id[33];
    char *agent, *connection, *ret, *scope, *login_url, *dc, *tenant;
    char org[40];
    json_t *st;                /* callback: the state record */
    char *code, *location;
    struct oauth_params p;
    char *client_id, *client_secret, *base, *verifier;
    struct oauth_result res;
    char challenge[64];
    char state[100];           /* authorize: the signed state */
    char conn_id[40];
};

/* ---- Small helpers ------------------------------------------------------- */

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The decoded value of query parameter name (xmalloc'd), or NULL. A value
 * with a NUL byte or a bad escape counts as absent. */
static char *qparam(const char *query, const char *name)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        size_t n = strcspn(p, "&");
        if (n > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t vl = n - nl - 1;
            char *out = xmalloc(vl + 1);
            size_t k = 0;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] == '%') {
                    int hi = i + 2 < vl ? hexval(v[i + 1]) : -1;
                    int lo = i + 2 < vl ? hexval(v[i + 2]) : -1;
                    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                        free(out);
                        return NULL;
                    }
                    out[k++] = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    out[k++] = v[i] == '+' ? ' ' : v[i];
                }
            }
            out[k] = '\0';
            return out;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return NULL;
}

static bool is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : hexval(s[i]) < 0)
            return false;
    }
    return true;
}

static bool is_http_url(const char *s)
{
    if (!s || strlen(s) > 2048)
        return false;
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
        return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '"' ||
            *c == '<' || *c == '>')
            return false;
    return true;
}

static void html_escape(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        int rc;
        switch (*s) {
        case '<': rc = buf_addf(b, "&lt;"); break;
        case '>': rc = buf_addf(b, "&gt;"); break;
        case '&': rc = buf_addf(b, "&amp;"); break;
        case '"': rc = buf_addf(b, "&quot;"); break;
        default: rc = buf_add(b, s, 1); break;
        }
        CS_UNUSED(rc);
    }
}

static const char *ptitle(const struct op *o)
{
    return o->provider >= 0
               ? oauth_provider_title((enum oauth_provider)o->provider)
               : "the provider";
}

/* ---- Answers ------------------------------------------------------------- */

static void op_free(struct op *o)
{
    free(o->agent);
    free(o->connection);
    free(o->ret);
    free(o->scope);
    free(o->login_url);
    free(o->dc);
    free(o->tenant);
    json_decref(o->st);
    free(o->code);
    free(o->location);
    free(o->client_id);
    if (o->client_secret)
        wipe(o->client_secret, strlen(o->client_secret));
    free(o->client_secret);
    free(o->base);
    if (o->verifier)
        wipe(o->verifier, strlen(o->verifier));
    free(o->verifier);
    oauth_result_release(&o->res);
    free(o);
}

/* A URL with one more query parameter. */
static char *with_param(const char *url, const char *name, const char *value)
{
    char *q = NULL;
    size_t len = 0;
    oauth_form_add(&q, &len, name, value);
    const char *sep = strchr(url, '?') ? "&" : "?";
    char *u = xasprintf("%s%s%s", url, sep, q);
    free(q);
    return u;
}

static void count(struct op *o, enum outcome oc)
{
    o->a->count[o->callback ? 1 : 0][oc]++;
}

/* Answer with a page (or JSON) and free the op. */
static void finish(struct op *o, int status, enum outcome oc,
                   const char *code, const char *msg)
{
    count(o, oc);
    log_at_(status >= 500 ? LOG_WARN : LOG_INFO, "oauth_connect",
            LOG_S("step", o->callback ? "callback" : "authorize"),
            LOG_S("provider", o->provider >= 0
                                  ? oauth_provider_name(
                                        (enum oauth_provider)o->provider)
                                  : ""),
            LOG_S("outcome", outcome_names[oc]), LOG_I("status", status),
            LOG_S("agent", o->agent ? o->agent : ""),
            LOG_S("connection", o->conn_id), LOG_S("message", msg), LOG_END);
    if (o->json) {
        json_t *j = json_pack("{s:s,s:s}", status < 400 ? "status" : "error",
                              code, "message", msg);
        if (o->conn_id[0])
            json_object_set_new(j, "connection_id", json_string(o->conn_id));
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        mhttp_reply(o->req, status, "application/json", NULL, s, strlen(s));
        free(s);
    } else {
        struct buf b;
        buf_init(&b, 65536);
        int rc = buf_addf(&b, "<!doctype html><html><head><meta "
                              "charset=\"utf-8\"><title>");
        html_escape(&b, status < 400 ? "Connected" : "Not connected");
        rc |= buf_addf(&b, "</title></head><body><h1>");
        html_escape(&b, status < 400 ? "Connected" : "Not connected");
        rc |= buf_addf(&b, "</h1><p>");
        html_escape(&b, msg);
        rc |= buf_addf(&b, "</p><p><code>");
        html_escape(&b, code);
        rc |= buf_addf(&b, "</code></p></body></html>\n");
        CS_UNUSED(rc);
        mhttp_reply(o->req, status, "text/html; charset=utf-8", NULL,
                    b.data, b.len);
        buf_release(&b);
    }
    op_free(o);
}

/* After the state was taken: to the return URL when there is one. */
static void finish_flow(struct op *o, int status, enum outcome oc,
                        const char *code, const char *msg)
{
    const char *ret = o->ret && *o->ret ? o->ret
                      : o->a->cfg->connect_return_url[0]
                          ? o->a->cfg->connect_return_url
                          : NULL;
    if (!ret || o->json) {
        finish(o, status, oc, code, msg);
        return;
    }
    count(o, oc);
    log_info("oauth_connect", LOG_S("step", "callback"),
             LOG_S("provider",
                   oauth_provider_name((enum oauth_provider)o->provider)),
             LOG_S("outcome", outcome_names[oc]), LOG_I("status", status),
             LOG_S("agent", o->agent ? o->agent : ""),
             LOG_S("connection", o->conn_id), LOG_S("message", msg));
    char *u = status < 400 ? with_param(ret, "connected", o->conn_id)
                           : with_param(ret, "error", code);
    char *loc = xasprintf("Location: %s\r\n", u);
    mhttp_reply(o->req, 302, "text/plain; charset=utf-8", loc, u, strlen(u));
    free(loc);
    free(u);
    op_free(o);
}

/* ---- Client credentials -------------------------------------------------- */

static bool load_client(struct op *o)
{
    const char *name = oauth_provider_name((enum oauth_provider)o->provider);
    char *spec = oauth_spec_get(o->a->cfg->oauth_clients, name);
    char *colon = spec ? strchr(spec, ':') : NULL;
    if (spec && colon && colon != spec && colon[1]) {
        o->client_id = xstrndup(spec, (size_t)(colon - spec));
        o->client_secret = xstrdup(colon + 1);
    }
    if (spec)
        wipe(spec, strlen(spec));
    free(spec);
    o->base = oauth_spec_get(o->a->cfg->oauth_base_urls, name);
    return o->client_id != NULL;
}

static redisAsyncContext *redis(struct app *a)
{
    return a->rc && a->rc_ready && !a->stopping ? a->rc : NULL;
}

/* ---- Authorize ----------------------------------------------------------- */

static void on_state_stored(redisAsyncContext *ac, void *r, void *arg)
{
    CS_UNUSED(ac);
    struct op *o = arg;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_STATUS) {
        /* Down, an error, or (nil) for an id already taken. */
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "cannot store the connection flow's state (Redis): try "
               "again in a moment");
        return;
    }
    struct app *a = o->a;
    char *redirect = xasprintf("%s/oauth/%s/callback",
                               a->cfg->connect_public_url,
                               oauth_provider_name(
                                   (enum oauth_provider)o->provider));
    struct oauth_authorize az = {
        .provider = (enum oauth_provider)o->provider,
        .base_url = o->base,
        .client_id = o->client_id,
        .redirect_uri = redirect,
        .state = o->state,
        .scope = o->scope,
        .code_challenge = o->challenge[0] ? o->challenge : NULL,
        .login_url = o->login_url,
        .zoho_dc = o->dc,
        .tenant = o->tenant,
    };
    struct cs_err err = {0};
    char *u = oauth_authorize_url(&az, &err);
    free(redirect);
    if (!u) {
        /* The record expires unused. */
        finish(o, 400, O_BAD_REQUEST, "bad_link", err.msg);
        return;
    }
    count(o, O_REDIRECTED);
    log_info("oauth_connect", LOG_S("step", "authorize"),
             LOG_S("provider",
                   oauth_provider_name((enum oauth_provider)o->provider)),
             LOG_S("outcome", "redirected"), LOG_S("agent", o->agent),
             LOG_S("connection", o->connection ? o->connection : ""));
    char *loc = xasprintf("Location: %s\r\n", u);
    mhttp_reply(o->req, 302, "text/plain; charset=utf-8", loc, u, strlen(u));
    free(loc);
    free(u);
    op_free(o);
}

static void store_state(struct op *o);

static void on_authorize_lookup(int rc, const PGresult *res, void *arg)
{
    struct op *o = arg;
    if (rc || !res) {
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "cannot look the agent up (PostgreSQL): try again in a "
               "moment");
        return;
    }
    if (PQntuples(res) == 0) {
        finish(o, 404, O_NOT_FOUND, "agent_not_found",
               "this link names an agent that does not exist");
        return;
    }
    snprintf(o->org, sizeof(o->org), "%s", PQgetvalue(res, 0, 0));
    if (o->connection) {
        if (PQgetisnull(res, 0, 1)) {
            finish(o, 404, O_NOT_FOUND, "connection_not_found",
                   "this link names a connection that does not exist or "
                   "belongs to another agent");
            return;
        }
        const char *type = PQgetvalue(res, 0, 1);
        if (oauth_provider_for_type(type) != o->provider) {
            finish(o, 400, O_PROVIDER_MISMATCH, "provider_mismatch",
                   "the connection to reconnect is not of this provider");
            return;
        }
        /* Its own OAuth settings, unless the link overrides them. */
        json_t *cfgj = PQgetisnull(res, 0, 2)
                           ? NULL
                           : json_loads(PQgetvalue(res, 0, 2), 0, NULL);
        json_t *oc = json_object_get(cfgj, "oauth");
        const char *keys[] = {"scope", "login_url", "dc", "tenant"};
        char **dst[] = {&o->scope, &o->login_url, &o->dc, &o->tenant};
        for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
            const char *v = json_string_value(json_object_get(oc, keys[i]));
            if (!*dst[i] && v && *v)
                *dst[i] = xstrdup(v);
        }
        json_decref(cfgj);
    }
    store_state(o);
}

static void store_state(struct op *o)
{
    struct app *a = o->a;
    redisAsyncContext *ac = redis(a);
    if (!ac) {
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "cannot store the connection flow's state (Redis is down): "
               "try again in a moment");
        return;
    }
    char *sealed_verifier = NULL;
    if (oauth_uses_pkce((enum oauth_provider)o->provider)) {
        char v[44];
        if (oauth_pkce_verifier(v)) {
            finish(o, 503, O_UNAVAILABLE, "unavailable", "no random bytes");
            return;
        }
        char *ch = oauth_pkce_challenge(v);
        snprintf(o->challenge, sizeof(o->challenge), "%s", ch);
        free(ch);
        sealed_verifier = cs_seal(a->kr, v, strlen(v));
        wipe(v, sizeof(v));
    }
    json_t *j = json_pack(
        "{s:i,s:s,s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:I}", "v", 1,
        "provider", oauth_provider_name((enum oauth_provider)o->provider),
        "agent", o->agent, "org", o->org, "connection", o->connection,
        "code_verifier", sealed_verifier, "return", o->ret, "scope",
        o->scope, "login_url", o->login_url, "dc", o->dc, "tenant",
        o->tenant, "created_ms", (json_int_t)cs_now_ms());
    free(sealed_verifier);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char key[80];
    snprintf(key, sizeof(key), OAUTH_STATE_PREFIX "{%s}", o->id);
    int rc = redisAsyncCommand(ac, on_state_stored, o, "SET %s %s EX %d NX",
                               key, s, STATE_TTL_S);
    free(s);
    if (rc != REDIS_OK)
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "cannot store the connection flow's state (Redis)");
}

static void authorize(struct op *o, const char *query)
{
    struct app *a = o->a;
    const char *name = oauth_provider_name((enum oauth_provider)o->provider);
    if (!oauth_link_verify(a->cfg->connect_state_key, name, query)) {
        finish(o, 400, O_BAD_SIGNATURE, "bad_link",
               "this connection link is not valid: ask for a new one");
        return;
    }
    o->agent = qparam(query, "agent");
    o->connection = qparam(query, "connection");
    o->ret = qparam(query, "return");
    o->scope = qparam(query, "scope");
    o->login_url = qparam(query, "login_url");
    o->dc = qparam(query, "dc");
    o->tenant = qparam(query, "tenant");
    char *exp = qparam(query, "exp");
    char *end = NULL;
    long long e = exp ? strtoll(exp, &end, 10) : 0;
    bool exp_ok = exp && end && *end == '\0' && e > 0;
    free(exp);
    if (!is_uuid(o->agent) || (o->connection && !is_uuid(o->connection)) ||
        (o->ret && !is_http_url(o->ret)) || !exp_ok) {
        finish(o, 400, O_BAD_REQUEST, "bad_link",
               "this connection link is malformed: ask for a new one");
        return;
    }
    if (e * 1000 < cs_now_ms()) {
        finish(o, 403, O_LINK_EXPIRED, "link_expired",
               "this connection link has expired: ask for a new one");
        return;
    }
    if (!load_client(o)) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "no %s OAuth app is configured (CALLSYNC_OAUTH_CLIENTS)",
                 ptitle(o));
        finish(o, 500, O_NOT_CONFIGURED, "not_configured", msg);
        return;
    }
    if (oauth_state_new(a->cfg->connect_state_key, o->id, o->state)) {
        finish(o, 503, O_UNAVAILABLE, "unavailable", "no random bytes");
        return;
    }
    if (a->stopping || !pga_ready(a->pg)) {
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "the database is not reachable: try again in a moment");
        return;
    }
    const char *params[] = {o->agent, o->connection};
    pga_query(a->pg,
              "SELECT a.organization_id, c.integration_type, c.config "
              "FROM agents a LEFT JOIN integration_connections c "
              "ON c.id = $2::uuid AND c.agent_id = a.id AND c.is_active "
              "WHERE a.id = $1",
              2, params, on_authorize_lookup, o);
}

/* ---- Callback ------------------------------------------------------------ */

/* Take the state record once: {1, record}, {2} (taken before: replay) or
 * {0} (never was, or expired). */
static const char take_state_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])\n"
    "  return {1, v}\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end\n"
    "return {0}\n";

static const char *jget(const json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    return s && *s ? s : NULL;
}

static char *jdup(const json_t *j, const char *k)
{
    const char *s = jget(j, k);
    return s ? xstrdup(s) : NULL;
}

static void on_published(redisAsyncContext *ac, void *r, void *arg)
{
    CS_UNUSED(ac);
    CS_UNUSED(r);
    CS_UNUSED(arg);
}

static void on_stored(int rc, const PGresult *res, void *arg)
{
    struct op *o = arg;
    bool reconnect = o->connection != NULL;
    if (rc || !res) {
        /* The INSERT or UPDATE did not happen (one statement). */
        finish_flow(o, 503, O_UNAVAILABLE, "store_failed",
                    "the tokens could not be stored (PostgreSQL): connect "
                    "again in a moment");
        return;
    }
    if (PQntuples(res) == 0) {
        finish_flow(o, 404, O_NOT_FOUND, "connection_not_found",
                    "the connection to reconnect was removed meanwhile");
        return;
    }
    snprintf(o->conn_id, sizeof(o->conn_id), "%s", PQgetvalue(res, 0, 0));
    redisAsyncContext *ac = redis(o->a);
    if (ac)
        redisAsyncCommand(ac, on_published, NULL, "PUBLISH %s %s",
                          OFLOW_CACHE_CHANNEL, o->agent);
    char msg[200];
    snprintf(msg, sizeof(msg), "%s is %s.", ptitle(o),
             reconnect ? "connected again" : "connected");
    finish_flow(o, 200, reconnect ? O_RECONNECTED : O_CONNECTED, "connected",
                msg);
}

static void store_tokens(struct op *o)
{
    struct app *a = o->a;
    struct oauth_result *r = &o->res;
    char *at = cs_seal(a->kr, r->access_token, strlen(r->access_token));
    char *rt = r->refresh_token ? cs_seal(a->kr, r->refresh_token,
                                          strlen(r->refresh_token))
                                : NULL;
    char expires[40];
    cs_rfc3339_ms(r->expires_at_ms, expires);
    json_t *oc = json_object();
    const char *keys[] = {"scope", "login_url", "dc", "tenant"};
    const char *vals[] = {o->scope, o->login_url, o->dc, o->tenant};
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++)
        if (vals[i] && *vals[i])
            json_object_set_new(oc, keys[i], json_string(vals[i]));
    json_t *top = json_object();
    if (r->account_id && o->provider == OAUTH_GOHIGHLEVEL)
        json_object_set_new(top, "location_id", json_string(r->account_id));
    char *ocs = json_dumps(oc, JSON_COMPACT);
    char *tops = json_dumps(top, JSON_COMPACT);
    json_decref(oc);
    json_decref(top);
    const char *type = o->provider == OAUTH_GOOGLE      ? "google_calendar"
                       : o->provider == OAUTH_MICROSOFT ? "outlook"
                           : oauth_provider_name(
                                 (enum oauth_provider)o->provider);
    if (o->connection) {
        const char *params[] = {o->connection, o->agent, at, rt, expires,
                                r->instance_url, tops, ocs};
        pga_query(a->pg,
                  "UPDATE integration_connections SET auth_type = 'oauth', "
                  " connection_status = 'connected', last_error = NULL, "
                  " access_token = $3, refresh_token = $4, "
                  " token_expires_at = $5::timestamptz, "
                  " instance_url = coalesce($6, instance_url), "
                  " config = config || $7::jsonb || jsonb_build_object("
                  "  'oauth', coalesce(config->'oauth', '{}'::jsonb) || "
                  "  $8::jsonb) "
                  "WHERE id = $1 AND agent_id = $2 AND is_active "
                  "RETURNING id",
                  8, params, on_stored, o);
    } else {
        json_t *cfgj = json_loads(tops, 0, NULL);
        json_object_set_new(cfgj, "oauth", json_loads(ocs, 0, NULL));
        char *cfgs = json_dumps(cfgj, JSON_COMPACT);
        json_decref(cfgj);
        const char *params[] = {o->agent, o->org, type, at, rt, expires,
                                r->instance_url, cfgs};
        pga_query(a->pg,
                  "INSERT INTO integration_connections (agent_id, "
                  " organization_id, integration_type, auth_type, "
                  " connection_status, access_token, refresh_token, "
                  " token_expires_at, instance_url, config) "
                  "VALUES ($1, $2, $3, 'oauth', 'connected', $4, $5, "
                  " $6::timestamptz, $7, $8::jsonb) RETURNING id",
                  8, params, on_stored, o);
        free(cfgs);
    }
    free(at);
    free(rt);
    free(ocs);
    free(tops);
}

static void on_token(const struct prov_response *rsp, const char *err,
                     int64_t dur_ms, void *arg)
{
    CS_UNUSED(dur_ms);
    struct op *o = arg;
    const char *ra = rsp->status ? prov_response_header(rsp, "retry-after")
                                 : NULL;
    struct oauth_response orsp = {
        .status = rsp->status,
        .body = rsp->body,
        .body_len = rsp->body_len,
        .retry_after = ra,
        .transport_err = err,
    };
    o->p.now_ms = cs_now_ms();
    oauth_parse_response(&o->p, &orsp, &o->res);
    if (o->res.outcome != OAUTH_OK) {
        bool refused = o->res.outcome == OAUTH_PERMANENT;
        finish_flow(o, 502, refused ? O_TOKEN_REFUSED : O_TOKEN_UNAVAILABLE,
                    refused ? "token_refused" : "token_unavailable",
                    o->res.message);
        return;
    }
    if (o->a->stopping || !pga_ready(o->a->pg)) {
        finish_flow(o, 503, O_UNAVAILABLE, "store_failed",
                    "the database is not reachable: connect again in a "
                    "moment");
        return;
    }
    store_tokens(o);
}

static void exchange(struct op *o)
{
    struct app *a = o->a;
    if (!load_client(o)) {
        finish_flow(o, 500, O_NOT_CONFIGURED, "not_configured",
                    "no OAuth app is configured for this provider "
                    "(CALLSYNC_OAUTH_CLIENTS)");
        return;
    }
    const char *sealed = jget(o->st, "code_verifier");
    if (sealed) {
        size_t n = 0;
        struct cs_err err = {0};
        o->verifier = cs_open(a->kr, sealed, &n, &err);
        if (!o->verifier) {
            finish_flow(o, 500, O_NOT_CONFIGURED, "not_configured",
                        "the flow's verifier cannot be opened "
                        "(CALLSYNC_ENCRYPTION_KEYS changed?)");
            return;
        }
    }
    /* Zoho names the user's data centre on the callback: its accounts
     * server takes the code (only data centres of our table). */
    if (o->provider == OAUTH_ZOHO && o->location) {
        if (!oauth_zoho_accounts(o->location)) {
            finish_flow(o, 400, O_BAD_REQUEST, "bad_location",
                        "Zoho named an unknown data centre");
            return;
        }
        free(o->dc);
        o->dc = xstrdup(o->location);
    }
    char *redirect = xasprintf("%s/oauth/%s/callback",
                               a->cfg->connect_public_url,
                               oauth_provider_name(
                                   (enum oauth_provider)o->provider));
    o->p = (struct oauth_params){
        .provider = (enum oauth_provider)o->provider,
        .grant = OAUTH_GRANT_CODE,
        .base_url = o->base,
        .client_id = o->client_id,
        .client_secret = o->client_secret,
        .login_url = o->login_url,
        .zoho_dc = o->dc,
        .tenant = o->tenant,
        .scope = o->provider == OAUTH_MICROSOFT ? o->scope : NULL,
        .code = o->code,
        .redirect_uri = redirect,
        .code_verifier = o->verifier,
        .now_ms = cs_now_ms(),
    };
    struct oauth_request orq;
    struct cs_err err = {0};
    if (oauth_build_request(&o->p, &orq, &err)) {
        free(redirect);
        o->p.redirect_uri = NULL;
        finish_flow(o, 500, O_NOT_CONFIGURED, "not_configured", err.msg);
        return;
    }
    struct prov_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = orq.method;
    rq.url = orq.url;
    for (size_t i = 0; i < orq.nheaders && i < PROV_MAX_HEADERS; i++) {
        rq.headers[i].name = orq.headers[i].name;
        rq.headers[i].value = orq.headers[i].value;
        rq.nheaders++;
    }
    rq.body = orq.body;
    rq.body_len = orq.body_len;
    rq.timeout_ms = a->cfg->oauth_timeout_ms;
    httpc_send(a->hc, &rq, on_token, o);
    oauth_request_release(&orq);
    free(redirect);
    o->p.redirect_uri = NULL; /* only the request needed it */
}

static void on_state_taken(redisAsyncContext *ac, void *r, void *arg)
{
    CS_UNUSED(ac);
    struct op *o = arg;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "cannot read the connection flow's state (Redis): try "
               "again in a moment");
        return;
    }
    long long k = reply->element[0]->integer;
    if (k == 2) {
        finish(o, 409, O_REPLAYED, "replayed",
               "this sign-in was already used: start again from the "
               "connection link");
        return;
    }
    if (k != 1 || reply->elements < 2 ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        finish(o, 400, O_STATE_EXPIRED, "state_expired",
               "this sign-in took too long or is unknown: start again "
               "from the connection link");
        return;
    }
    o->st = json_loadb(reply->element[1]->str, reply->element[1]->len, 0,
                       NULL);
    const char *prov = jget(o->st, "provider");
    if (!prov || oauth_provider_parse(prov) != o->provider) {
        finish(o, 400, O_PROVIDER_MISMATCH, "provider_mismatch",
               "this sign-in was started for another provider");
        return;
    }
    o->agent = jdup(o->st, "agent");
    o->connection = jdup(o->st, "connection");
    o->ret = jdup(o->st, "return");
    o->scope = jdup(o->st, "scope");
    o->login_url = jdup(o->st, "login_url");
    o->dc = jdup(o->st, "dc");
    o->tenant = jdup(o->st, "tenant");
    snprintf(o->org, sizeof(o->org), "%s",
             jget(o->st, "org") ? jget(o->st, "org") : "");
    if (!o->agent || !o->org[0]) {
        finish(o, 400, O_BAD_STATE, "bad_state", "the state record is "
                                                 "incomplete");
        return;
    }
    char *error = NULL;
    if (o->code == NULL) {
        /* error=access_denied (or another code the provider sent) */
        error = o->location; /* holds error here, see callback() */
        o->location = NULL;
        char code[64];
        size_t n = 0;
        for (size_t i = 0; error && error[i] && n + 1 < sizeof(code); i++) {
            char c = error[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '-';
            code[n++] = ok ? c : '_';
        }
        code[n] = '\0';
        free(error);
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "%s did not grant access (%s): nothing was connected",
                 ptitle(o), n ? code : "no code");
        finish_flow(o, 400, O_DENIED, n ? code : "access_denied", msg);
        return;
    }
    exchange(o);
}

static void callback(struct op *o, const char *query)
{
    struct app *a = o->a;
    char *state = qparam(query, "state");
    bool ok = oauth_state_verify(a->cfg->connect_state_key, state, o->id);
    free(state);
    if (!ok) {
        finish(o, 400, O_BAD_STATE, "bad_state",
               "this sign-in cannot be verified: start again from the "
               "connection link");
        return;
    }
    o->code = qparam(query, "code");
    char *error = qparam(query, "error");
    if (!o->code && !error) {
        finish(o, 400, O_BAD_REQUEST, "bad_request",
               "the callback has neither a code nor an error");
        return;
    }
    if (o->code) {
        free(error);
        o->location = qparam(query, "location"); /* Zoho */
    } else {
        o->location = error; /* the error code, read in on_state_taken */
    }
    redisAsyncContext *ac = redis(a);
    char k1[80], k2[80], ttl[16];
    snprintf(k1, sizeof(k1), OAUTH_STATE_PREFIX "{%s}", o->id);
    snprintf(k2, sizeof(k2), OAUTH_STATE_USED_PREFIX "{%s}", o->id);
    snprintf(ttl, sizeof(ttl), "%d", USED_TTL_S);
    const char *kv[] = {k1, k2, ttl};
    if (!ac || rq_eval(ac, take_state_lua, on_state_taken, o, 2, kv, 3))
        finish(o, 503, O_UNAVAILABLE, "unavailable",
               "cannot read the connection flow's state (Redis is down): "
               "try again in a moment");
}

/* ---- Routing ------------------------------------------------------------- */

static bool route(struct mhttp_req *r, const char *method, const char *target,
                  void *arg)
{
    struct app *a = arg;
    if (strncmp(target, "/oauth/", 7) != 0)
        return false;
    const char *p = target + 7;
    size_t nl = strcspn(p, "/?");
    const char *rest = p + nl;
    size_t rl = strcspn(rest, "?");
    bool is_auth = rl == 10 && strncmp(rest, "/authorize", 10) == 0;
    bool is_cb = rl == 9 && strncmp(rest, "/callback", 9) == 0;
    char name[32];
    snprintf(name, sizeof(name), "%.*s", (int)(nl < 31 ? nl : 31), p);
    int prov = nl < 31 ? oauth_provider_parse(name) : -1;
    if (!is_auth && !is_cb)
        return false;
    struct op *o = xcalloc(1, sizeof(*o));
    o->a = a;
    o->req = r;
    o->callback = is_cb;
    o->provider = prov;
    const char *query = rest[rl] == '?' ? rest + rl + 1 : "";
    o->json = strstr(query, "format=json") != NULL;
    if (strcmp(method, "GET") != 0) {
        finish(o, 405, O_BAD_REQUEST, "method_not_allowed",
               "only GET is allowed");
        return true;
    }
    if (prov < 0) {
        finish(o, 404, O_BAD_REQUEST, "unknown_provider",
               "unknown provider: expected google, hubspot, salesforce, "
               "calendly, gohighlevel, zoho or microsoft");
        return true;
    }
    if (a->stopping) {
        finish(o, 503, O_UNAVAILABLE, "stopping", "shutting down");
        return true;
    }
    if (is_auth)
        authorize(o, query);
    else
        callback(o, query);
    return true;
}

/* ---- Metrics and readiness ----------------------------------------------- */

static int metrics(struct buf *b, void *arg)
{
    struct app *a = arg;
    int rc = buf_addf(b, "# HELP callsync_connect_requests_total OAuth "
                         "connection pages served, by step and outcome\n"
                         "# TYPE callsync_connect_requests_total counter\n");
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < O_N; i++)
            if (a->count[s][i] || i == O_REDIRECTED || i == O_CONNECTED)
                rc |= buf_addf(b,
                               "callsync_connect_requests_total{step=\"%s\","
                               "outcome=\"%s\"} %llu\n",
                               s ? "callback" : "authorize", outcome_names[i],
                               (unsigned long long)a->count[s][i]);
    rc |= buf_addf(b, "# HELP callsync_connect_token_requests_inflight "
                      "code exchanges waiting for the token endpoint\n"
                      "# TYPE callsync_connect_token_requests_inflight "
                      "gauge\ncallsync_connect_token_requests_inflight %zu\n",
                   httpc_inflight(a->hc));
    return rc ? CS_E2BIG : 0;
}

static bool ready(json_t *body, void *arg)
{
    struct app *a = arg;
    bool r = a->rc && a->rc_ready;
    bool p = pga_ready(a->pg);
    json_object_set_new(body, "redis", json_boolean(r));
    json_object_set_new(body, "postgres", json_boolean(p));
    return r && p && !a->stopping;
}

/* ---- Redis --------------------------------------------------------------- */

static void redis_connect(struct app *a);

static void on_reconnect(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    redis_connect(t->data);
}

static void forget_redis(struct app *a, const redisAsyncContext *ac)
{
    if (ac != a->rc)
        return;
    a->rc = NULL;
    a->rc_ready = false;
    if (!a->stopping && !ev_is_active(&a->reconnect)) {
        ev_timer_set(&a->reconnect, RECONNECT_S, 0.0);
        ev_timer_start(a->loop, &a->reconnect);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK) {
        log_warn("redis_connect_failed", LOG_S("err", ac->errstr));
        forget_redis(ac->data, ac);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct app *a = ac->data;
    if (ac == a->rc && !a->stopping)
        log_warn("redis_disconnected",
                 LOG_S("err", status == REDIS_OK ? "closed" : ac->errstr));
    forget_redis(a, ac);
}

static void on_ping(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(priv);
    struct app *a = ac->data;
    redisReply *reply = r;
    if (!reply || ac != a->rc)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis_not_usable", LOG_S("err", reply->str));
        redisAsyncDisconnect(ac);
        return;
    }
    a->rc_ready = true;
    log_info("redis_connected");
}

static void redis_connect(struct app *a)
{
    if (a->rc || a->stopping)
        return;
    a->rc = rq_connect(a->loop, &a->raddr);
    if (!a->rc) {
        forget_redis(a, NULL);
        return;
    }
    a->rc->data = a;
    redisAsyncSetConnectCallback(a->rc, on_connect);
    redisAsyncSetDisconnectCallback(a->rc, on_disconnect);
    redisAsyncCommand(a->rc, on_ping, NULL, "PING");
}

/* ---- Life ---------------------------------------------------------------- */

static void on_signal(EV_P_ ev_signal *w, int revents)
{
    CS_UNUSED(revents);
    struct app *a = w->data;
    log_info("connect_stopping", LOG_I("signal", w->signum));
    a->stopping = true;
    ev_break(EV_A_ EVBREAK_ALL);
}

static int start(struct app *a, struct cs_err *err)
{
    struct cfg *c = a->cfg;
    if (oauth_link_check_key(c->connect_state_key, err))
        return err->code;
    if (!is_http_url(c->connect_public_url))
        return cs_err_set(err, CS_EINVAL, "connect_public_url",
                          "CALLSYNC_CONNECT_PUBLIC_URL must be the http(s) "
                          "origin users' browsers reach callsync-connect "
                          "at");
    size_t n = strlen(c->connect_public_url);
    while (n && c->connect_public_url[n - 1] == '/')
        c->connect_public_url[--n] = '\0';
    if (c->connect_return_url[0] && !is_http_url(c->connect_return_url))
        return cs_err_set(err, CS_EINVAL, "connect_return_url",
                          "CALLSYNC_CONNECT_RETURN_URL must be an http(s) "
                          "URL");
    a->kr = cs_keyring_new(c->encryption_keys, err);
    if (!a->kr)
        return err->code ? err->code : CS_EINVAL;
    if (rq_parse_url(c->redis_url, &a->raddr, err))
        return err->code;
    struct httpc_opts ho = {
        .connect_timeout_ms = 5000,
        .timeout_ms = c->oauth_timeout_ms,
        .max_host_conns = 16,
        .max_body = 65536,
    };
    a->hc = httpc_new(a->loop, &ho);
    a->pg = pga_new(a->loop, c->database_url, PG_TIMEOUT_MS);
    ev_timer_init(&a->reconnect, on_reconnect, RECONNECT_S, 0.0);
    a->reconnect.data = a;
    redis_connect(a);
    struct mhttp_opts mo = {
        .addr = c->connect_addr,
        .metrics = metrics,
        .ready = ready,
        .route = route,
        .arg = a,
        .route_timeout_ms = c->oauth_timeout_ms + PG_TIMEOUT_MS + 5000,
        .max_conns = 1024,
    };
    a->http = mhttp_new(a->loop, &mo, err);
    if (!a->http)
        return err->code ? err->code : CS_EIO;
    ev_signal_init(&a->sigterm, on_signal, SIGTERM);
    a->sigterm.data = a;
    ev_signal_start(a->loop, &a->sigterm);
    ev_signal_init(&a->sigint, on_signal, SIGINT);
    a->sigint.data = a;
    ev_signal_start(a->loop, &a->sigint);
    log_info("connect_started", LOG_I("port", mhttp_port(a->http)),
             LOG_S("public_url", c->connect_public_url));
    return 0;
}

static void stop(struct app *a)
{
    a->stopping = true;
    ev_timer_stop(a->loop, &a->reconnect);
    ev_signal_stop(a->loop, &a->sigterm);
    ev_signal_stop(a->loop, &a->sigint);
    /* The listener first (requests in flight are detached), then the I/O
     * whose callbacks end the operations, nothing written after. */
    mhttp_free(a->http);
    a->http = NULL;
    if (a->hc)
        httpc_free(a->hc);
    a->hc = NULL;
    if (a->pg)
        pga_free(a->pg);
    a->pg = NULL;
    if (a->rc) {
        redisAsyncContext *ac = a->rc;
        a->rc = NULL;
        redisAsyncFree(ac);
    }
    cs_keyring_free(a->kr);
    a->kr = NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        fprintf(strcmp(argv[i], "--help") == 0 ? stdout : stderr,
                "usage: callsync-connect\n\n"
                "Serves the OAuth connection pages (authorize links made by "
                "callsyncctl\nconnections authorize-url, and the providers' "
                "callbacks). Configured by\nCALLSYNC_* environment "
                "variables.\n");
        return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
    struct cfg cfg;
    struct cs_err err = {0};
    if (cfg_load(&cfg, &err)) {
        fprintf(stderr, "callsync-connect: %s\n", err.msg);
        cfg_release(&cfg);
        return 2;
    }
    log_init("connect", cfg.log_level);
    cfg_log(&cfg);
    signal(SIGPIPE, SIG_IGN);
    if (sentry_start_cfg(&cfg, "connect", &err)) {
        fprintf(stderr, "callsync-connect: CALLSYNC_SENTRY_DSN: %s\n",
                err.msg);
        cfg_release(&cfg);
        return 2;
    }
    struct app a;
    memset(&a, 0, sizeof(a));
    a.cfg = &cfg;
    a.loop = ev_default_loop(EVFLAG_AUTO);
    int rc = start(&a, &err);
    if (rc) {
        fprintf(stderr, "callsync-connect: %s\n", err.msg);
        stop(&a);
        sentry_stop(0);
        cfg_release(&cfg);
        return 2;
    }
    ev_run(a.loop, 0);
    stop(&a);
    sentry_stop(SENTRY_FLUSH_MS);
    log_info("connect_stopped");
    cfg_release(&cfg);
    return 0;
}
