/*
 * oauth.c - token requests and answers of each OAuth provider; see
 * oauth.h. Facts per provider (parameter names, answers, errors) are from
 * the providers' documentation:
 *
 *   Google      developers.google.com/identity/protocols/oauth2/web-server
 *               (refresh: client_id, client_secret, refresh_token,
 *               grant_type; answer without a refresh_token; revoked or
 *               expired: 400 invalid_grant "Token has been expired or
 *               revoked.")
 *   HubSpot     /oauth/v3/token (v1 is deprecated from Feb 16 2027): form
 *               grant_type, client_id, client_secret, refresh_token; answer
 *               access_token, refresh_token, expires_in (1800), token_type,
 *               scopes[]; errors {"status"|"category", "message",
 *               "correlationId"}, e.g. BAD_REFRESH_TOKEN
 *   Salesforce  /services/oauth2/token: grant_type=refresh_token,
 *               refresh_token, client_id, client_secret (optional when the
 *               app does not require it); answer access_token,
 *               instance_url, id, issued_at (ms), signature, scope, and no
 *               expires_in (the session timeout applies, 2 h by default);
 *               with refresh-token rotation on, a new refresh_token. JWT
 *               bearer: grant_type=urn:ietf:params:oauth:grant-type:
 *               jwt-bearer&assertion=<RS256 JWT with iss = consumer key,
 *               sub = username, aud = login URL, exp within 3 minutes>;
 *               no refresh token. Errors {"error","error_description"}:
 *               invalid_grant, invalid_client_id, invalid_client,
 *               inactive_user, inactive_org
 *   Calendly    auth.calendly.com/oauth/token: grant_type, refresh_token,
 *               client_id, client_secret; access tokens last 2 h; refresh
 *               tokens are single-use (each answer carries a new one)
 *   GoHighLevel services.leadconnectorhq.com/oauth/token: client_id,
 *               client_secret, grant_type, refresh_token, user_type
 *               (Location | Company); access token 1 day, a new refresh
 *               token on each use; errors {"statusCode","message"[,
 *               "error"]}
 *   Zoho        {accounts server of the user's data centre}/oauth/v2/token:
 *               refresh_token, client_id, client_secret, grant_type; answer
 *               access_token, api_domain, expires_in (3600), no refresh
 *               token; a bad refresh token is {"error":"invalid_code"},
 *               often with HTTP 200; a burst of refreshes gets
 *               {"error":"Access Denied","error_description":"You have made
 *               too many requests continuously..."}
 *   Microsoft   login.microsoftonline.com/{tenant}/oauth2/v2.0/token:
 *               client_id, grant_type, refresh_token, client_secret,
 *               scope (optional); the answer carries a new refresh token
 *               that replaces the old one; errors {"error",
 *               "error_description":"AADSTS…","error_codes",…}; client
 *               action per code: invalid_grant / interaction_required /
 *               consent_required (user), invalid_client /
 *               unauthorized_client (app), temporarily_unavailable (retry)
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "oauth.h"
#include "crypto.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SF_DEFAULT_LOGIN "https://login.salesforce.com"
#define SF_DEFAULT_SESSION_S 7200
#define DEFAULT_EXPIRES_S 3600
#define JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"

struct pdef {
    const char *name;
    const char *title;
    const char *origin; /* default scheme and host */
    const char *path;   /* NULL: built per request (Microsoft's tenant) */
};

static const struct pdef defs[OAUTH_NPROVIDERS] = {
    [OAUTH_GOOGLE] = {"google", "Google", "https://oauth2.googleapis.com",
                      "/token"},
    [OAUTH_HUBSPOT] = {"hubspot", "HubSpot", "https://api.hubapi.com",
                       "/oauth/v3/token"},
    [OAUTH_SALESFORCE] = {"salesforce", "Salesforce", SF_DEFAULT_LOGIN,
                          "/services/oauth2/token"},
    [OAUTH_CALENDLY] = {"calendly", "Calendly", "https://auth.calendly.com",
                        "/oauth/token"},
    [OAUTH_GOHIGHLEVEL] = {"gohighlevel", "GoHighLevel",
                           "https://services.leadconnectorhq.com",
                           "/oauth/token"},
    [OAUTH_ZOHO] = {"zoho", "Zoho", "https://accounts.zoho.com",
                    "/oauth/v2/token"},
    [OAUTH_MICROSOFT] = {"microsoft", "Microsoft",
                         "https://login.microsoftonline.com", NULL},
};

/* Zoho data centres and their accounts servers (multi-DC documentation). */
static const struct {
    const char *dc;
    const char *url;
} zoho_dcs[] = {
    {"com", "https://accounts.zoho.com"},
    {"us", "https://accounts.zoho.com"},
    {"eu", "https://accounts.zoho.eu"},
    {"in", "https://accounts.zoho.in"},
    {"com.au", "https://accounts.zoho.com.au"},
    {"au", "https://accounts.zoho.com.au"},
    {"jp", "https://accounts.zoho.jp"},
    {"com.cn", "https://accounts.zoho.com.cn"},
    {"cn", "https://accounts.zoho.com.cn"},
    {"ca", "https://accounts.zohocloud.ca"},
    {"sa", "https://accounts.zoho.sa"},
    {"uk", "https://accounts.zoho.uk"},
};

const char *oauth_provider_name(enum oauth_provider p)
{
    return (unsigned)p < OAUTH_NPROVIDERS ? defs[p].name : "unknown";
}

const char *oauth_provider_title(enum oauth_provider p)
{
    return (unsigned)p < OAUTH_NPROVIDERS ? defs[p].title : "the provider";
}

int oauth_provider_parse(const char *name)
{
    for (int i = 0; name && i < OAUTH_NPROVIDERS; i++)
        if (strcmp(name, defs[i].name) == 0)
            return i;
    return -1;
}

int oauth_provider_for_type(const char *type)
{
    if (!type)
        return -1;
    if (strcmp(type, "google_calendar") == 0)
        return OAUTH_GOOGLE;
    if (strcmp(type, "outlook") == 0)
        return OAUTH_MICROSOFT;
    int p = oauth_provider_parse(type);
    return p == OAUTH_GOOGLE || p == OAUTH_MICROSOFT ? -1 : p;
}

/* ---- Encoding ------------------------------------------------------------ */

static bool unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static void append(char **out, size_t *len, const char *s, size_t n)
{
    *out = xrealloc(*out, *len + n + 1);
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
}

static void append_encoded(char **out, size_t *len, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    *out = xrealloc(*out, *len + 3 * n + 1);
    char *o = *out + *len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *len = (size_t)(o - *out);
    (*out)[*len] = '\0';
}

void oauth_form_add(char **out, size_t *len, const char *name,
                    const char *value)
{
    if (*len)
        append(out, len, "&", 1);
    append_encoded(out, len, name);
    append(out, len, "=", 1);
    append_encoded(out, len, value);
}

char *oauth_b64url(const unsigned char *in, size_t n)
{
    char *s = cs_base64_encode(in, n);
    size_t k = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '=')
            break;
        s[k++] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    }
    s[k] = '\0';
    return s;
}

char *oauth_spec_get(const char *spec, const char *key)
{
    size_t kl = strlen(key);
    const char *p = spec;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        const char *item = p;
        while (n && isspace((unsigned char)*item)) {
            item++;
            n--;
        }
        if (n > kl && strncmp(item, key, kl) == 0 && item[kl] == '=') {
            size_t vl = n - kl - 1;
            while (vl && isspace((unsigned char)item[kl + 1 + vl - 1]))
                vl--;
            return xstrndup(item + kl + 1, vl);
        }
        p = item + n;
        if (*p == ',')
            p++;
    }
    return NULL;
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *v = s;
    while (*v)
        *v++ = '\0';
    free(s);
}

/* ---- Endpoints ----------------------------------------------------------- */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t sl = strlen(suffix);
    return n > sl && strncmp(s + n - sl, suffix, sl) == 0;
}

/*
 * A Salesforce login URL into origin (no trailing slash). Only https and
 * Salesforce's own domains: the client secret and the user's refresh
 * token are sent there.
 */
static int salesforce_origin(const char *url, char *out, size_t cap,
                             struct cs_err *err)
{
    if (!url || !*url)
        url = SF_DEFAULT_LOGIN;
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    bool ok = n > 8 && n < cap && strncmp(url, "https://", 8) == 0;
    for (size_t i = 8; ok && i < n; i++)
        ok = host_char(url[i]);
    const char *host = url + 8;
    size_t hl = ok ? n - 8 : 0;
    ok = ok && (ends_with(host, hl, ".salesforce.com") ||
                ends_with(host, hl, ".force.com") ||
                ends_with(host, hl, ".site.com"));
    if (!ok)
        return cs_err_set(err, CS_EINVAL, "login_url",
                          "invalid Salesforce login URL: expected "
                          "https://login.salesforce.com, "
                          "https://test.salesforce.com or a My Domain URL");
    snprintf(out, cap, "%.*s", (int)n, url);
    return 0;
}

static int zoho_origin(const char *dc, char *out, size_t cap,
                       struct cs_err *err)
{
    if (!dc || !*dc)
        dc = "com";
    size_t n = strlen(dc);
    while (n && dc[n - 1] == '/')
        n--;
    for (size_t i = 0; i < CS_ARRAY_LEN(zoho_dcs); i++) {
        if ((strlen(zoho_dcs[i].dc) == n &&
             strncasecmp(dc, zoho_dcs[i].dc, n) == 0) ||
            (strlen(zoho_dcs[i].url) == n &&
             strncmp(dc, zoho_dcs[i].url, n) == 0)) {
            snprintf(out, cap, "%s", zoho_dcs[i].url);
            return 0;
        }
    }
    return cs_err_set(err, CS_EINVAL, "zoho_dc",
                      "unknown Zoho data centre '%.40s': expected com, eu, "
                      "in, com.au, jp, com.cn, ca, sa, uk or its accounts "
                      "server URL",
                      dc);
}

static int microsoft_tenant(const char *t, const char **out,
                            struct cs_err *err)
{
    if (!t || !*t)
        t = "common";
    size_t n = strlen(t);
    bool ok = n <= 128 && t[0] != '.' && t[0] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)t[i]) || t[i] == '.' || t[i] == '-';
    if (!ok)
        return cs_err_set(err, CS_EINVAL, "tenant",
                          "invalid Microsoft tenant: expected a tenant id, "
                          "a domain, common, organizations or consumers");
    *out = t;
    return 0;
}

/* The token endpoint URL for p (xmalloc'd), or NULL with err filled. */
static char *token_url(const struct oauth_params *p, struct cs_err *err)
{
    const struct pdef *d = &defs[p->provider];
    char origin[256];
    const char *tenant = NULL;
    if (p->provider == OAUTH_MICROSOFT &&
        microsoft_tenant(p->tenant, &tenant, err))
        return NULL;
    if (p->base_url && *p->base_url) {
        size_t n = strlen(p->base_url);
        while (n && p->base_url[n - 1] == '/')
            n--;
        if (n >= sizeof(origin)) {
            cs_err_set(err, CS_EINVAL, "base_url", "base URL too long");
            return NULL;
        }
        snprintf(origin, sizeof(origin), "%.*s", (int)n, p->base_url);
    } else if (p->provider == OAUTH_SALESFORCE) {
        if (salesforce_origin(p->login_url, origin, sizeof(origin), err))
            return NULL;
    } else if (p->provider == OAUTH_ZOHO) {
        if (zoho_origin(p->zoho_dc, origin, sizeof(origin), err))
            return NULL;
    } else {
        snprintf(origin, sizeof(origin), "%s", d->origin);
    }
    if (p->provider == OAUTH_MICROSOFT)
        return xasprintf("%s/%s/oauth2/v2.0/token", origin, tenant);
    return xasprintf("%s%s", origin, d->path);
}

/* ---- Requests ------------------------------------------------------------ */

static void add_header(struct oauth_request *rq, const char *name,
                       const char *value)
{
    CS_ASSERT(rq->nheaders < OAUTH_MAX_HEADERS);
    rq->headers[rq->nheaders].name = xstrdup(name);
    rq->headers[rq->nheaders].value = xstrdup(value);
    rq->nheaders++;
}

static bool given(const char *s)
{
    return s && *s;
}

static int check_params(const struct oauth_params *p, struct cs_err *err)
{
    if ((unsigned)p->provider >= OAUTH_NPROVIDERS)
        return cs_err_set(err, CS_EINVAL, "provider", "unknown provider");
    if (!given(p->client_id))
        return cs_err_set(err, CS_EINVAL, "client_id",
                          "no %s client id is configured",
                          defs[p->provider].title);
    if (p->grant == OAUTH_GRANT_JWT_BEARER) {
        if (p->provider != OAUTH_SALESFORCE)
            return cs_err_set(err, CS_EINVAL, "grant",
                              "the JWT bearer grant is for Salesforce only");
        if (!given(p->private_key_pem))
            return cs_err_set(err, CS_EINVAL, "private_key",
                              "no private key for the Salesforce JWT "
                              "bearer flow is configured");
        if (!given(p->username))
            return cs_err_set(err, CS_EINVAL, "username",
                              "the Salesforce JWT bearer flow needs the "
                              "user name (config oauth.username)");
        return 0;
    }
    if (p->grant == OAUTH_GRANT_CODE) {
        if (!given(p->code))
            return cs_err_set(err, CS_EINVAL, "code",
                              "no authorization code was given");
        if (!given(p->redirect_uri))
            return cs_err_set(err, CS_EINVAL, "redirect_uri",
                              "no redirect URI was given");
    } else if (!given(p->refresh_token)) {
        return cs_err_set(err, CS_EINVAL, "refresh_token",
                          "no refresh token is stored");
    }
    if (!given(p->client_secret) && p->provider != OAUTH_SALESFORCE)
        return cs_err_set(err, CS_EINVAL, "client_secret",
                          "no %s client secret is configured",
                          defs[p->provider].title);
    if (p->provider == OAUTH_GOHIGHLEVEL && given(p->user_type) &&
        strcmp(p->user_type, "Location") != 0 &&
        strcmp(p->user_type, "Company") != 0)
        return cs_err_set(err, CS_EINVAL, "user_type",
                          "GoHighLevel user_type must be Location or "
                          "Company");
    return 0;
}

static int jwt_body(const struct oauth_params *p, char **body, size_t *len,
                    struct cs_err *err)
{
    char aud[256];
    if (salesforce_origin(p->login_url, aud, sizeof(aud), err))
        return err->code;
    /* "exp ... within three minutes": now + 3 min, whole seconds. */
    int64_t exp_s = p->now_ms / 1000 + 180;
    char *jwt = oauth_jwt_assertion(p->private_key_pem, p->client_id,
                                    p->username, aud, exp_s, err);
    if (!jwt)
        return err->code;
    oauth_form_add(body, len, "grant_type", JWT_BEARER);
    oauth_form_add(body, len, "assertion", jwt);
    free(jwt);
    return 0;
}

static void refresh_body(const struct oauth_params *p, char **body,
                         size_t *len)
{
    bool code = p->grant == OAUTH_GRANT_CODE;
    oauth_form_add(body, len, "grant_type",
                   code ? "authorization_code" : "refresh_token");
    oauth_form_add(body, len, "client_id", p->client_id);
    if (given(p->client_secret))
        oauth_form_add(body, len, "client_secret", p->client_secret);
    if (code) {
        oauth_form_add(body, len, "code", p->code);
        oauth_form_add(body, len, "redirect_uri", p->redirect_uri);
        if (given(p->code_verifier))
            oauth_form_add(body, len, "code_verifier", p->code_verifier);
    } else {
        oauth_form_add(body, len, "refresh_token", p->refresh_token);
    }
    switch (p->provider) {
    case OAUTH_GOHIGHLEVEL:
        oauth_form_add(body, len, "user_type",
                       given(p->user_type) ? p->user_type : "Location");
        break;
    case OAUTH_MICROSOFT:
        if (given(p->scope))
            oauth_form_add(body, len, "scope", p->scope);
        break;
    default:
        break;
    }
}

int oauth_build_request(const struct oauth_params *p,
                        struct oauth_request *rq, struct cs_err *err)
{
    memset(rq, 0, sizeof(*rq));
    int rc = check_params(p, err);
    if (rc)
        return rc;
    char *url = token_url(p, err);
    if (!url)
        return err->code;
    char *body = NULL;
    size_t len = 0;
    if (p->grant == OAUTH_GRANT_JWT_BEARER) {
        rc = jwt_body(p, &body, &len, err);
        if (rc) {
            free(url);
            wipe_free(body);
            return rc;
        }
    } else {
        refresh_body(p, &body, &len);
    }
    rq->method = "POST";
    rq->url = url;
    rq->body = body;
    rq->body_len = len;
    add_header(rq, "Content-Type", "application/x-www-form-urlencoded");
    add_header(rq, "Accept", "application/json");
    return 0;
}

void oauth_request_release(struct oauth_request *rq)
{
    free(rq->url);
    for (size_t i = 0; i < rq->nheaders; i++) {
        free(rq->headers[i].name);
        wipe_free(rq->headers[i].value);
    }
    wipe_free(rq->body);
    memset(rq, 0, sizeof(*rq));
}

/* ---- Answers ------------------------------------------------------------- */

void oauth_result_release(struct oauth_result *res)
{
    wipe_free(res->access_token);
    wipe_free(res->refresh_token);
    free(res->instance_url);
    free(res->scope);
    free(res->account_id);
    memset(res, 0, sizeof(*res));
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* A number given as a JSON number or a numeric string; -1 if neither. */
static int64_t jnum(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    const char *s = json_string_value(v);
    if (s && *s) {
        char *end;
        long long n = strtoll(s, &end, 10);
        if (*end == '\0')
            return n;
    }
    return -1;
}

/* Copy a provider's text for a message: printable ASCII only, up to the
 * first line break (Microsoft appends trace lines), at most max chars. */
static void clean_copy(char *out, size_t cap, const char *s, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; s && s[i] && k + 1 < cap && k < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n')
            break;
        out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[k] = '\0';
}

/* Retry-After: delta-seconds or an HTTP date; -1 when absent or bad. */
static int64_t retry_after(const char *v, int64_t now_ms)
{
    if (!v || !*v)
        return -1;
    char *end;
    long long s = strtoll(v, &end, 10);
    if (end != v && *end == '\0' && s >= 0)
        return s * 1000;
    struct tm tm = {0};
    const char *e = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!e || *e)
        return -1;
    int64_t at = (int64_t)timegm(&tm) * 1000;
    return at > now_ms ? at - now_ms : 0;
}

static bool valid_instance_url(const char *u)
{
    if (!u || strlen(u) > 2048)
        return false;
    if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
        return false;
    const char *host = u + (u[4] == 's' ? 8 : 7);
    if (!*host || *host == '/')
        return false;
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return false;
    return true;
}

static char *scopes_text(const json_t *j)
{
    const char *s = jstr(j, "scope");
    if (s)
        return xstrdup(s);
    json_t *arr = json_object_get(j, "scopes"); /* HubSpot */
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return NULL;
    char *out = NULL;
    size_t len = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *x = json_string_value(v);
        if (!x)
            continue;
        if (len)
            append(&out, &len, " ", 1);
        append(&out, &len, x, strlen(x));
    }
    return out;
}

static void parse_tokens(const struct oauth_params *p, const json_t *j,
                         struct oauth_result *res)
{
    res->outcome = OAUTH_OK;
    res->access_token = xstrdup(jstr(j, "access_token"));
    const char *rt = jstr(j, "refresh_token");
    if (rt) {
        res->refresh_token = xstrdup(rt);
        res->rotated =
            !p->refresh_token || strcmp(rt, p->refresh_token) != 0;
    }
    int64_t in = jnum(j, "expires_in");
    int64_t base = p->now_ms;
    if (in <= 0 && p->provider == OAUTH_SALESFORCE) {
        /* No expires_in: the session timeout counts from issued_at. */
        in = p->session_lifetime_s > 0 ? p->session_lifetime_s
                                       : SF_DEFAULT_SESSION_S;
        int64_t issued = jnum(j, "issued_at");
        if (issued > 0 && issued <= p->now_ms + 60000 &&
            issued > p->now_ms - 86400000)
            base = issued;
    } else if (in <= 0) {
        in = DEFAULT_EXPIRES_S;
    }
    res->expires_in_s = in;
    res->expires_at_ms = base + in * 1000;
    const char *iu = p->provider == OAUTH_ZOHO ? jstr(j, "api_domain")
                                               : jstr(j, "instance_url");
    if (valid_instance_url(iu))
        res->instance_url = xstrdup(iu);
    res->scope = scopes_text(j);
    if (p->provider == OAUTH_GOHIGHLEVEL) {
        const char *acct = jstr(j, "locationId");
        if (!acct)
            acct = jstr(j, "companyId");
        if (acct && strlen(acct) <= 128)
            res->account_id = xstrdup(acct);
    }
    snprintf(res->message, sizeof(res->message),
             "new %s access token, valid for %lld s%s",
             defs[p->provider].title, (long long)in,
             res->rotated ? "; the refresh token was rotated" : "");
}

static bool code_in(const char *code, const char *const *list)
{
    for (; code && *list; list++)
        if (strcasecmp(code, *list) == 0)
            return true;
    return false;
}

/* Grant codes: the user's authorisation is gone. */
static const char *const grant_codes[] = {
    "invalid_grant", "invalid_code", "bad_refresh_token", "inactive_user",
    "inactive_org",  "interaction_required", "consent_required",
    "invalid_scope", "access_denied", NULL};
/* Client codes: the app's credentials or registration were refused. */
static const char *const client_codes[] = {
    "invalid_client", "invalid_client_id", "unauthorized_client",
    "bad_client_id", "bad_client_secret", "invalid_client_secret", NULL};
/* Codes that say "later". */
static const char *const busy_codes[] = {
    "temporarily_unavailable", "server_error", "slow_down", NULL};
/* GoHighLevel's "error" field is the HTTP reason phrase, not a code. */
static const char *const reason_phrases[] = {
    "Unauthorized", "Bad Request", "Unprocessable Entity", "Forbidden",
    "Not Found", NULL};

/* Case-insensitive substring test (strcasestr is a GNU extension). */
static bool mentions(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; s && *s; s++)
        if (strncasecmp(s, word, n) == 0)
            return true;
    return false;
}

static void set_transient(struct oauth_result *res, const char *code,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_transient(struct oauth_result *res, const char *code,
                          const char *fmt, ...)
{
    res->outcome = OAUTH_TRANSIENT;
    snprintf(res->error, sizeof(res->error), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
}

static void classify_error(const struct oauth_params *p, int status,
                           const char *code, const char *desc,
                           struct oauth_result *res)
{
    const char *title = defs[p->provider].title;
    char d[200];
    clean_copy(d, sizeof(d), desc ? desc : "", 160);
    char c[64];
    clean_copy(c, sizeof(c), code ? code : "", 60);
    char why[280];
    if (*c && *d)
        snprintf(why, sizeof(why), "%s: %s", c, d);
    else
        snprintf(why, sizeof(why), "%s", *c ? c : *d ? d : "no reason given");

    if (code_in(c, busy_codes) ||
        (p->provider == OAUTH_ZOHO && strcasecmp(c, "Access Denied") == 0 &&
         mentions(desc, "too many requests"))) {
        set_transient(res, *c ? c : "busy",
                      "the %s token endpoint is busy (%.200s): retrying later",
                      title, why);
        if (res->retry_after_ms < 0 && p->provider == OAUTH_ZOHO)
            res->retry_after_ms = 60000;
        return;
    }
    res->outcome = OAUTH_PERMANENT;
    snprintf(res->error, sizeof(res->error), "%s",
             *c ? c : status ? "http_error" : "error");
    if (p->grant == OAUTH_GRANT_CODE) {
        res->client_error = code_in(c, client_codes);
        snprintf(res->message, sizeof(res->message),
                 "%s refused the authorization code with HTTP %d (%.200s)",
                 title, status, why);
    } else if (p->grant == OAUTH_GRANT_JWT_BEARER) {
        res->client_error = true;
        snprintf(res->message, sizeof(res->message),
                 "fix the Salesforce JWT bearer set-up (connected app "
                 "certificate, consumer key, pre-authorised user): "
                 "Salesforce refused the assertion (%.160s)",
                 why);
    } else if (code_in(c, client_codes) ||
               (p->provider == OAUTH_GOHIGHLEVEL && !*c &&
                mentions(d, "client"))) {
        res->client_error = true;
        snprintf(res->message, sizeof(res->message),
                 "check the %s app's client id and secret "
                 "(CALLSYNC_OAUTH_CLIENTS or the connection's own): %s "
                 "refused them (%.160s)",
                 title, title, why);
    } else if (strcasecmp(c, "interaction_required") == 0 ||
               strcasecmp(c, "consent_required") == 0) {
        snprintf(res->message, sizeof(res->message),
                 "reconnect %s: the user must sign in again (%.240s)", title,
                 why);
    } else if (code_in(c, grant_codes) || p->provider == OAUTH_GOHIGHLEVEL) {
        snprintf(res->message, sizeof(res->message),
                 "reconnect %s: the refresh token was revoked or has "
                 "expired (%.220s)",
                 title, why);
    } else {
        res->client_error = true;
        snprintf(res->message, sizeof(res->message),
                 "the %s token endpoint refused the refresh with HTTP %d "
                 "(%.160s): check the integration's OAuth settings, or "
                 "reconnect %s",
                 title, status, why, title);
    }
}

void oauth_parse_response(const struct oauth_params *p,
                          const struct oauth_response *rsp,
                          struct oauth_result *res)
{
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    res->http_status = rsp->status;
    const char *title = oauth_provider_title(p->provider);
    if (rsp->status == 0) {
        set_transient(res, "network",
                      "cannot reach the %s token endpoint: %s", title,
                      rsp->transport_err ? rsp->transport_err : "no answer");
        return;
    }
    res->retry_after_ms = retry_after(rsp->retry_after, p->now_ms);
    json_t *j = rsp->body && rsp->body_len
                    ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                    : NULL;
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    /* The error code: OAuth's "error", HubSpot's "status"/"category";
     * the reason: "error_description" or "message" (GoHighLevel may send
     * a list of messages). */
    const char *code = jstr(j, "error");
    if (code && code_in(code, reason_phrases))
        code = NULL;
    if (!code && p->provider == OAUTH_HUBSPOT) {
        code = jstr(j, "category");
        const char *st = jstr(j, "status");
        if (st && strcasecmp(st, "error") != 0)
            code = st;
    }
    const char *desc = jstr(j, "error_description");
    if (!desc)
        desc = jstr(j, "message");
    if (!desc && json_is_array(json_object_get(j, "message")))
        desc = json_string_value(
            json_array_get(json_object_get(j, "message"), 0));

    char status_code[16];
    snprintf(status_code, sizeof(status_code), "http_%d", rsp->status);
    char st[8];
    snprintf(st, sizeof(st), "%d", rsp->status);
    if (rsp->status >= 200 && rsp->status < 300 && !code &&
        jstr(j, "access_token")) {
        parse_tokens(p, j, res);
    } else if (rsp->status == 429) {
        set_transient(res, "rate_limited",
                      "the %s token endpoint is rate limiting (HTTP %s): "
                      "retrying later",
                      title, st);
    } else if (rsp->status == 408 || rsp->status == 425 ||
               rsp->status >= 500) {
        set_transient(res, status_code,
                      "the %s token endpoint failed with HTTP %s: retrying "
                      "later",
                      title, st);
    } else if (code || (rsp->status >= 400 && rsp->status < 500)) {
        classify_error(p, rsp->status, code, desc, res);
    } else {
        set_transient(res, "malformed",
                      "the %s token endpoint answered HTTP %s without an "
                      "access token: retrying later",
                      title, st);
    }
    json_decref(j);
}

/* ---- Authorization request --------------------------------------------- */

static const struct {
    const char *origin;
    const char *path;          /* Microsoft: after /<tenant> */
    const char *scope;
    bool pkce;
} authz[OAUTH_NPROVIDERS] = {
    [OAUTH_GOOGLE] = {"https://accounts.google.com", "/o/oauth2/v2/auth",
                      "https://www.googleapis.com/auth/calendar.events "
                      "https://www.googleapis.com/auth/calendar.freebusy",
                      true},
    [OAUTH_HUBSPOT] = {"https://app.hubspot.com", "/oauth/authorize",
                       "oauth crm.objects.contacts.read "
                       "crm.objects.contacts.write crm.objects.deals.read "
                       "crm.objects.deals.write crm.schemas.contacts.read "
                       "crm.schemas.deals.read",
                       false},
    [OAUTH_SALESFORCE] = {SF_DEFAULT_LOGIN, "/services/oauth2/authorize",
                          "api refresh_token", true},
    [OAUTH_CALENDLY] = {"https://auth.calendly.com", "/oauth/authorize",
                        NULL, true},
    [OAUTH_GOHIGHLEVEL] = {"https://marketplace.gohighlevel.com",
                           "/oauth/chooselocation",
                           "contacts.readonly contacts.write "
                           "opportunities.readonly opportunities.write "
                           "calendars.readonly calendars/events.write",
                           false},
    [OAUTH_ZOHO] = {"https://accounts.zoho.com", "/oauth/v2/auth",
                    "ZohoCRM.modules.ALL ZohoSearch.securesearch.READ",
                    false},
    [OAUTH_MICROSOFT] = {"https://login.microsoftonline.com",
                         "/oauth2/v2.0/authorize",
                         "offline_access Calendars.ReadWrite", true},
};

bool oauth_uses_pkce(enum oauth_provider p)
{
    return (unsigned)p < OAUTH_NPROVIDERS && authz[p].pkce;
}

const char *oauth_default_scope(enum oauth_provider p)
{
    return (unsigned)p < OAUTH_NPROVIDERS ? authz[p].scope : NULL;
}

const char *oauth_zoho_accounts(const char *dc)
{
    char out[64];
    struct cs_err err = {0};
    if (!dc || !*dc || zoho_origin(dc, out, sizeof(out), &err))
        return NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(zoho_dcs); i++)
        if (strcmp(zoho_dcs[i].url, out) == 0)
            return zoho_dcs[i].url;
    return NULL;
}

int oauth_pkce_verifier(char out[44])
{
    unsigned char raw[32];
    if (cs_random(raw, sizeof(raw)))
        return -CS_EIO;
    char *v = oauth_b64url(raw, sizeof(raw));
    snprintf(out, 44, "%s", v);
    free(v);
    return 0;
}

char *oauth_pkce_challenge(const char *verifier)
{
    unsigned char d[CS_SHA256_LEN];
    cs_sha256(verifier, strlen(verifier), NULL, 0, d);
    return oauth_b64url(d, sizeof(d));
}

static void query_add(char **out, size_t *len, const char *name,
                      const char *value)
{
    if (*len && (*out)[*len - 1] != '?')
        append(out, len, "&", 1);
    append_encoded(out, len, name);
    append(out, len, "=", 1);
    append_encoded(out, len, value);
}

char *oauth_authorize_url(const struct oauth_authorize *a,
                          struct cs_err *err)
{
    enum oauth_provider p = a->provider;
    if ((unsigned)p >= OAUTH_NPROVIDERS) {
        cs_err_set(err, CS_EINVAL, "provider", "unknown provider");
        return NULL;
    }
    const char *title = defs[p].title;
    if (!given(a->client_id)) {
        cs_err_set(err, CS_EINVAL, "client_id",
                   "no %s client id is configured", title);
        return NULL;
    }
    if (!given(a->redirect_uri) || !given(a->state)) {
        cs_err_set(err, CS_EINVAL, given(a->state) ? "redirect_uri" : "state",
                   "the %s authorization request needs a redirect URI and "
                   "a state", title);
        return NULL;
    }
    if (authz[p].pkce && !given(a->code_challenge)) {
        cs_err_set(err, CS_EINVAL, "code_challenge",
                   "%s needs a PKCE code challenge", title);
        return NULL;
    }
    char origin[256];
    const char *tenant = NULL;
    if (p == OAUTH_MICROSOFT && microsoft_tenant(a->tenant, &tenant, err))
        return NULL;
    if (given(a->base_url)) {
        size_t n = strlen(a->base_url);
        while (n && a->base_url[n - 1] == '/')
            n--;
        if (n >= sizeof(origin)) {
            cs_err_set(err, CS_EINVAL, "base_url", "base URL too long");
            return NULL;
        }
        snprintf(origin, sizeof(origin), "%.*s", (int)n, a->base_url);
    } else if (p == OAUTH_SALESFORCE) {
        if (salesforce_origin(a->login_url, origin, sizeof(origin), err))
            return NULL;
    } else if (p == OAUTH_ZOHO) {
        if (zoho_origin(a->zoho_dc, origin, sizeof(origin), err))
            return NULL;
    } else {
        snprintf(origin, sizeof(origin), "%s", authz[p].origin);
    }
    char *u = p == OAUTH_MICROSOFT
                  ? xasprintf("%s/%s%s?", origin, tenant, authz[p].path)
                  : xasprintf("%s%s?", origin, authz[p].path);
    size_t len = strlen(u);
    query_add(&u, &len, "response_type", "code");
    query_add(&u, &len, "client_id", a->client_id);
    query_add(&u, &len, "redirect_uri", a->redirect_uri);
    const char *scope = given(a->scope) ? a->scope : authz[p].scope;
    if (scope)
        query_add(&u, &len, "scope", scope);
    query_add(&u, &len, "state", a->state);
    if (authz[p].pkce) {
        query_add(&u, &len, "code_challenge", a->code_challenge);
        query_add(&u, &len, "code_challenge_method", "S256");
    }
    switch (p) {
    case OAUTH_GOOGLE:
        query_add(&u, &len, "access_type", "offline");
        query_add(&u, &len, "prompt", "consent");
        query_add(&u, &len, "include_granted_scopes", "true");
        break;
    case OAUTH_ZOHO:
        query_add(&u, &len, "access_type", "offline");
        query_add(&u, &len, "prompt", "consent");
        break;
    case OAUTH_MICROSOFT:
        query_add(&u, &len, "response_mode", "query");
        break;
    default:
        break;
    }
    return u;
}

/* ---- JWT bearer ---------------------------------------------------------- */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    CS_UNUSED(buf);
    CS_UNUSED(size);
    CS_UNUSED(rwflag);
    CS_UNUSED(u);
    return 0; /* encrypted keys are refused, never prompted for */
}

static EVP_PKEY *load_rsa_key(const char *pem, struct cs_err *err)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key =
        bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (!key) {
        cs_err_set(err, CS_EINVAL, "private_key",
                   "cannot read the private key: expected an unencrypted "
                   "PEM RSA key");
        return NULL;
    }
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        cs_err_set(err, CS_EINVAL, "private_key",
                   "the private key is not an RSA key (RS256 needs one)");
        return NULL;
    }
    return key;
}

char *oauth_jwt_assertion(const char *pem, const char *iss, const char *sub,
                          const char *aud, int64_t exp_s, struct cs_err *err)
{
    EVP_PKEY *key = load_rsa_key(pem, err);
    if (!key)
        return NULL;
    static const char header[] = "{\"alg\":\"RS256\"}";
    json_t *claims = json_pack("{s:s,s:s,s:s,s:I}", "iss", iss, "sub", sub,
                               "aud", aud, "exp", (json_int_t)exp_s);
    CS_ASSERT(claims);
    char *cj = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(claims);
    CS_ASSERT(cj);
    char *h64 = oauth_b64url((const unsigned char *)header,
                             sizeof(header) - 1);
    char *c64 = oauth_b64url((const unsigned char *)cj, strlen(cj));
    free(cj);
    char *input = xasprintf("%s.%s", h64, c64);
    free(h64);
    free(c64);

    char *out = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input,
                       strlen(input)) == 1) {
        sig = xmalloc(siglen);
        if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input,
                           strlen(input)) == 1) {
            char *s64 = oauth_b64url(sig, siglen);
            out = xasprintf("%s.%s", input, s64);
            free(s64);
        }
    }
    if (!out)
        cs_err_set(err, CS_EIO, "private_key", "cannot sign the assertion");
    ERR_clear_error();
    free(sig);
    free(input);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    return out;
}
