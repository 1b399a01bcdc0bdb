/*
 * oauth.c - the providers' OAuth 2.0 token endpoints, under /oauth/<name>
 * followed by the path the real endpoint has:
 *
 *   /oauth/google/token                          (oauth2.googleapis.com)
 *   /oauth/hubspot/oauth/v3/token, .../v1/token  (api.hubapi.com)
 *   /oauth/salesforce/services/oauth2/token      (login.salesforce.com)
 *   /oauth/calendly/oauth/token                  (auth.calendly.com)
 *   /oauth/gohighlevel/oauth/token               (services.leadconnectorhq.com)
 *   /oauth/zoho/oauth/v2/token                   (accounts.zoho.<dc>)
 *   /oauth/microsoft/<tenant>/oauth2/v2.0/token  (login.microsoftonline.com)
 *
 * so callsync's CALLSYNC_OAUTH_BASE_URLS points each provider at
 * http://HOST:PORT/oauth/<name>. Each endpoint takes the refresh_token
 * grant as a form body (Zoho also as query parameters), checks the client
 * given by --oauth-client (body or HTTP Basic), and answers with the
 * provider's own success and error shapes. Salesforce also takes the JWT
 * bearer grant: an RS256 assertion verified against --salesforce-jwt-key,
 * with iss = the client id, aud = https://login.salesforce.com or
 * https://test.salesforce.com, exp in the future and at most 5 minutes
 * ahead, and sub a registered user.
 *
 * Refresh tokens belong to grants that tests register through the control
 * API (one per connection). Calendly and GoHighLevel rotate refresh
 * tokens and the old one stops working at once (invalid_grant);
 * Microsoft rotates but the old one keeps working; HubSpot answers with
 * the same refresh token; Google and Zoho return none. --oauth-rotate
 * <name> turns single-use rotation on for another provider (Salesforce's
 * connected-app option). Every token request is counted per grant, and
 * requests that present an already rotated refresh token separately.
 *
 * Every access token a grant was issued is remembered with its expiry,
 * so the sandbox's HubSpot API can accept exactly those (oauth_access):
 * a token that was never issued, has expired or whose grant is revoked
 * gets HubSpot's 401.
 *
 * Control API:
 *   POST /_sandbox/oauth/grants  {"provider","connection","refresh_token"}
 *                                or {"provider":"salesforce","connection",
 *                                "subject"} for the JWT bearer grant;
 *                                optionally "access_token" (and
 *                                "expires_in" seconds) the grant starts
 *                                with; replaces the connection's grant
 *   POST /_sandbox/oauth/revoke  {"connection"}: its tokens stop working
 *   GET  /_sandbox/oauth/grants[?connection=ID]: grants with their current
 *        tokens and counters (token_requests, stale_token_requests,
 *        refused, api_requests made with their access tokens and
 *        api_requests_latest with the newest one), and token requests per
 *        provider
 */
#include "sandbox.h"
#include "crypto.h"
#include "oauth.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    O_GOOGLE = 0,
    O_HUBSPOT,
    O_SALESFORCE,
    O_CALENDLY,
    O_GHL,
    O_ZOHO,
    O_MICROSOFT,
    O_N
};

static const char *const names[O_N] = {"google",   "hubspot",
                                       "salesforce", "calendly",
                                       "gohighlevel", "zoho",
                                       "microsoft"};

#define JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"

struct grant {
    char *connection;
    int provider;
    char *refresh;     /* current refresh token (NULL: JWT subject) */
    char *subject;     /* Salesforce JWT user */
    char *access;      /* latest access token issued */
    json_t *used;      /* refresh tokens rotated away */
    json_t *issued;    /* access token -> {"expires_at_ms", "uses"} */
    long long requests, stale, refused;
    long long api_requests; /* API calls made with its access tokens */
    bool revoked;
};

/* An authorization code handed out by an authorize endpoint. */
struct authcode {
    char *code;
    int provider;
    char *client_id;
    char *redirect_uri;
    char *challenge;   /* S256 challenge, or NULL */
    char *scope;
    int64_t expires_ms;
    bool used;
};

struct sb_oauth {
    struct authcode **codes;
    size_t ncodes;
    long long authorize_requests[O_N];
    long long code_grants[O_N];
    char *client_id[O_N];
    char *client_secret[O_N];
    bool rotate[O_N];     /* single-use rotation (old token invalid) */
    EVP_PKEY *sf_key;     /* verifies JWT bearer assertions */
    struct grant **grants;
    size_t ngrants;
    long long requests[O_N];
    long long seq;
};

/* ---- Life ---------------------------------------------------------------- */

static struct sb_oauth *state(struct sb *s)
{
    if (!s->oauth)
        s->oauth = oauth_new();
    return s->oauth;
}

struct sb_oauth *oauth_new(void)
{
    struct sb_oauth *o = xcalloc(1, sizeof(*o));
    o->rotate[O_CALENDLY] = true;
    o->rotate[O_GHL] = true;
    return o;
}

static void grant_free(struct grant *g)
{
    free(g->connection);
    free(g->refresh);
    free(g->subject);
    free(g->access);
    json_decref(g->used);
    json_decref(g->issued);
    free(g);
}

static void authcode_free(struct authcode *c)
{
    free(c->code);
    free(c->client_id);
    free(c->redirect_uri);
    free(c->challenge);
    free(c->scope);
    free(c);
}

void oauth_reset(struct sb_oauth *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->ncodes; i++)
        authcode_free(o->codes[i]);
    free(o->codes);
    o->codes = NULL;
    o->ncodes = 0;
    memset(o->authorize_requests, 0, sizeof(o->authorize_requests));
    memset(o->code_grants, 0, sizeof(o->code_grants));
    for (size_t i = 0; i < o->ngrants; i++)
        grant_free(o->grants[i]);
    free(o->grants);
    o->grants = NULL;
    o->ngrants = 0;
    memset(o->requests, 0, sizeof(o->requests));
}

void oauth_free(struct sb_oauth *o)
{
    if (!o)
        return;
    oauth_reset(o);
    for (int i = 0; i < O_N; i++) {
        free(o->client_id[i]);
        free(o->client_secret[i]);
    }
    EVP_PKEY_free(o->sf_key);
    free(o);
}

static int provider_index(const char *name, size_t n)
{
    for (int i = 0; i < O_N; i++)
        if (strlen(names[i]) == n && strncmp(names[i], name, n) == 0)
            return i;
    return -1;
}

static EVP_PKEY *read_public_key(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!k) {
        /* A certificate, as uploaded to the connected app. */
        rewind(f);
        X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
        if (x) {
            k = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    fclose(f);
    ERR_clear_error();
    if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

bool oauth_option(struct sb *s, const char *flag, const char *val)
{
    struct sb_oauth *o = state(s);
    if (strcmp(flag, "--oauth-client") == 0) {
        /* PROVIDER=CLIENT_ID:SECRET */
        const char *eq = strchr(val, '=');
        const char *colon = eq ? strchr(eq + 1, ':') : NULL;
        int p = eq ? provider_index(val, (size_t)(eq - val)) : -1;
        if (p < 0 || !colon || colon == eq + 1 || !colon[1])
            return false;
        free(o->client_id[p]);
        free(o->client_secret[p]);
        o->client_id[p] = xstrndup(eq + 1, (size_t)(colon - eq - 1));
        o->client_secret[p] = xstrdup(colon + 1);
        return true;
    }
    if (strcmp(flag, "--oauth-rotate") == 0) {
        int p = provider_index(val, strlen(val));
        if (p < 0)
            return false;
        o->rotate[p] = true;
        return true;
    }
    if (strcmp(flag, "--salesforce-jwt-key") == 0) {
        EVP_PKEY_free(o->sf_key);
        o->sf_key = read_public_key(val);
        return o->sf_key != NULL;
    }
    return false;
}

/* ---- Answers ------------------------------------------------------------- */

enum err_kind { E_GRANT, E_CLIENT_ID, E_CLIENT_SECRET, E_REQUEST,
                E_UNSUPPORTED };

static json_t *ms_error(const char *error, int aadsts, const char *text)
{
    char trace[37], corr[37];
    cs_uuid4(trace);
    cs_uuid4(corr);
    char ts[32];
    cs_rfc3339_s(cs_now_ms(), ts);
    ts[10] = ' ';
    ts[19] = '\0';
    char *desc = xasprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s "
                           "Timestamp: %s",
                           aadsts, text, trace, corr, ts);
    json_t *j = json_pack("{s:s,s:s,s:[i],s:s,s:s,s:s}", "error", error,
                          "error_description", desc, "error_codes", aadsts,
                          "timestamp", ts, "trace_id", trace,
                          "correlation_id", corr);
    free(desc);
    return j;
}

/* The provider's error answer for a refused token request. */
static void refuse(struct sb_resp *out, int p, enum err_kind k,
                   const char *detail)
{
    char corr[37];
    cs_uuid4(corr);
    const char *oauth_code = k == E_GRANT           ? "invalid_grant"
                             : k == E_REQUEST       ? "invalid_request"
                             : k == E_UNSUPPORTED   ? "unsupported_grant_type"
                                                    : "invalid_client";
    switch (p) {
    case O_GOOGLE:
        sb_resp_json(
            out, k == E_CLIENT_ID || k == E_CLIENT_SECRET ? 401 : 400,
            json_pack("{s:s,s:s}", "error",
                      k == E_CLIENT_SECRET ? "invalid_client" : oauth_code,
                      "error_description",
                      k == E_GRANT && detail ? detail
                      : k == E_GRANT     ? "Token has been expired or revoked."
                      : k == E_CLIENT_ID ? "The OAuth client was not found."
                      : k == E_CLIENT_SECRET ? "Unauthorized"
                                             : detail));
        return;
    case O_HUBSPOT: {
        const char *st = k == E_GRANT           ? "BAD_REFRESH_TOKEN"
                         : k == E_CLIENT_ID     ? "BAD_CLIENT_ID"
                         : k == E_CLIENT_SECRET ? "BAD_CLIENT_SECRET"
                                                : "BAD_GRANT_TYPE";
        const char *msg = k == E_GRANT ? "missing or unknown refresh token"
                          : k == E_CLIENT_ID ? "missing or unknown client id"
                          : k == E_CLIENT_SECRET
                              ? "client secret does not match"
                              : detail;
        sb_resp_json(out, 400,
                     json_pack("{s:s,s:s,s:s}", "status", st, "message", msg,
                               "correlationId", corr));
        return;
    }
    case O_SALESFORCE:
        sb_resp_json(
            out, 400,
            json_pack("{s:s,s:s}", "error",
                      k == E_CLIENT_ID ? "invalid_client_id" : oauth_code,
                      "error_description",
                      k == E_GRANT && !detail ? "expired access/refresh token"
                      : k == E_CLIENT_ID      ? "client identifier invalid"
                      : k == E_CLIENT_SECRET  ? "invalid client credentials"
                      : k == E_UNSUPPORTED    ? "grant type not supported"
                                              : detail));
        return;
    case O_CALENDLY:
        sb_resp_json(
            out, k == E_CLIENT_ID || k == E_CLIENT_SECRET ? 401 : 400,
            json_pack(
                "{s:s,s:s}", "error", oauth_code, "error_description",
                k == E_GRANT
                    ? "The provided authorization grant is invalid, expired, "
                      "revoked, does not match the redirection URI used in "
                      "the authorization request, or was issued to another "
                      "client."
                : k == E_CLIENT_ID || k == E_CLIENT_SECRET
                    ? "Client authentication failed due to unknown client, "
                      "no client authentication included, or unsupported "
                      "authentication method."
                    : detail));
        return;
    case O_GHL: {
        bool client = k == E_CLIENT_ID || k == E_CLIENT_SECRET;
        sb_resp_json(
            out, client ? 401 : 400,
            json_pack("{s:i,s:s,s:s}", "statusCode", client ? 401 : 400,
                      "message",
                      k == E_GRANT ? "Invalid grant: refresh token is invalid"
                      : client     ? "Invalid client: client is invalid"
                                   : detail,
                      "error", client ? "Unauthorized" : "Bad Request"));
        return;
    }
    case O_ZOHO:
        /* Zoho answers these with HTTP 200. */
        sb_resp_json(out, 200,
                     json_pack("{s:s}", "error",
                               k == E_GRANT ? "invalid_code"
                               : k == E_CLIENT_ID || k == E_CLIENT_SECRET
                                   ? "invalid_client"
                                   : oauth_code));
        return;
    case O_MICROSOFT:
        if (k == E_GRANT)
            sb_resp_json(out, 400,
                         ms_error("invalid_grant", 70000,
                                  "The provided value for the input "
                                  "parameter 'refresh_token' or "
                                  "'assertion' is not valid."));
        else if (k == E_CLIENT_ID)
            sb_resp_json(out, 400,
                         ms_error("unauthorized_client", 700016,
                                  "Application was not found in the "
                                  "directory."));
        else if (k == E_CLIENT_SECRET)
            sb_resp_json(out, 401,
                         ms_error("invalid_client", 7000215,
                                  "Invalid client secret provided."));
        else
            sb_resp_json(out, 400,
                         ms_error(oauth_code, 900144, detail));
        return;
    default:
        sb_resp_json(out, 400, json_pack("{s:s}", "error", oauth_code));
    }
}

json_t *oauth_error_body(int status)
{
    return json_pack("{s:s,s:s}", "error",
                     status == 503 ? "temporarily_unavailable"
                                   : "server_error",
                     "error_description", sb_reason(status));
}

static char *token(struct sb *s, const char *prefix, int p)
{
    struct sb_oauth *o = state(s);
    o->seq++;
    return xasprintf("%s-%s-%lld-%016llx", names[p], prefix, o->seq,
                     (unsigned long long)sb_rand(s));
}

/* How long an access token lives (the expires_in each provider answers
 * with; Salesforce sends none: its default session timeout). */
static int64_t lifetime_s(int p)
{
    switch (p) {
    case O_HUBSPOT: return 1800;
    case O_SALESFORCE:
    case O_CALENDLY: return 7200;
    case O_GHL: return 86399;
    case O_ZOHO: return 3600;
    default: return 3599;
    }
}

/* Remember an access token of g as valid for expires_in_s. */
static void remember_access(struct grant *g, const char *at,
                            int64_t expires_in_s)
{
    json_object_set_new(g->issued, at,
                        json_pack("{s:I,s:I}", "expires_at_ms",
                                  (json_int_t)(cs_now_ms() +
                                               expires_in_s * 1000),
                                  "uses", (json_int_t)0));
}

/* A new access token for g. */
static void issue_access(struct sb *s, struct grant *g)
{
    free(g->access);
    g->access = token(s, "at", g->provider);
    remember_access(g, g->access, lifetime_s(g->provider));
}

static char *host_url(const struct sb_req *rq, const char *prefix)
{
    const char *h = sb_header(rq, "host");
    return xasprintf("http://%s%s", h && *h ? h : "127.0.0.1", prefix);
}

static json_t *success_body(struct sb *s, const struct sb_req *rq,
                            struct grant *g, bool with_refresh)
{
    CS_UNUSED(s);
    int p = g->provider;
    const char *at = g->access;
    const char *rt = with_refresh ? g->refresh : NULL;
    switch (p) {
    case O_GOOGLE:
        return json_pack("{s:s,s:i,s:s,s:s,s:s?}", "access_token", at,
                         "expires_in", 3599, "scope",
                         "https://www.googleapis.com/auth/calendar",
                         "token_type", "Bearer", "refresh_token", rt);
    case O_HUBSPOT:
        return json_pack("{s:s,s:s,s:s,s:i}", "token_type", "bearer",
                         "refresh_token", g->refresh, "access_token", at,
                         "expires_in", 1800);
    case O_SALESFORCE: {
        char issued[24];
        snprintf(issued, sizeof(issued), "%lld", (long long)cs_now_ms());
        unsigned char mac[CS_SHA256_LEN];
        cs_hmac_sha256("sandbox", 7, issued, strlen(issued), at, strlen(at),
                       NULL, 0, mac);
        char *sig = cs_base64_encode(mac, sizeof(mac));
        char *inst = host_url(rq, "/salesforce");
        json_t *j = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s?}", "access_token", at,
            "signature", sig, "scope", "refresh_token api", "instance_url",
            inst, "id",
            "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
            "token_type", "Bearer", "issued_at", issued, "refresh_token", rt);
        free(sig);
        free(inst);
        return j;
    }
    case O_CALENDLY:
        return json_pack(
            "{s:s,s:s,s:s,s:s,s:I,s:i,s:s,s:s}", "token_type", "Bearer",
            "access_token", at, "refresh_token", g->refresh, "scope",
            "default", "created_at", (json_int_t)(cs_now_ms() / 1000),
            "expires_in", 7200, "owner",
            "https://api.calendly.com/users/EBHAAFHDCAEQTSEZ", "organization",
            "https://api.calendly.com/organizations/EBHAAFHDCAEQTSEZ");
    case O_GHL:
        return json_pack(
            "{s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:s,s:s}", "access_token", at,
            "token_type", "Bearer", "expires_in", 86399, "refresh_token",
            g->refresh, "scope",
            "contacts.readonly contacts.write opportunities.write",
            "userType", "Location", "locationId", "l1C08ntBrFjLS0elLIYU",
            "companyId", "l1C08ntBrFjLS0elLIYU", "userId",
            "l1C08ntBrFjLS0elLIYU");
    case O_ZOHO: {
        char *api = host_url(rq, "/zoho");
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:i}", "access_token", at,
                              "scope", "ZohoCRM.modules.ALL", "api_domain",
                              api, "token_type", "Bearer", "expires_in",
                              3600);
        free(api);
        return j;
    }
    case O_MICROSOFT:
    default:
        return json_pack("{s:s,s:s,s:i,s:i,s:s,s:s}", "token_type", "Bearer",
                         "scope",
                         "https://graph.microsoft.com/Calendars.ReadWrite",
                         "expires_in", 3599, "ext_expires_in", 3599,
                         "access_token", at, "refresh_token", g->refresh);
    }
}

/* ---- Requests ------------------------------------------------------------ */

/* Parse a form (or query) string into o (values decoded). */
static void form_parse(const char *s, size_t n, json_t *o)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&')
            j++;
        const char *eq = memchr(s + i, '=', j - i);
        if (eq && eq > s + i) {
            char *k = sb_url_decode(s + i, (size_t)(eq - s - i), true);
            char *v = sb_url_decode(eq + 1, (size_t)(s + j - eq - 1), true);
            if (!json_object_get(o, k))
                json_object_set_new(o, k, json_string(v));
            free(k);
            free(v);
        }
        i = j + 1;
    }
}

static const char *fstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && *v ? v : NULL;
}

/* Client id and secret from HTTP Basic or the body; false when wrong. */
static bool check_client(struct sb_oauth *o, int p, const struct sb_req *rq,
                         const json_t *form, struct sb_resp *out)
{
    char *id = NULL, *secret = NULL;
    const char *auth = sb_header(rq, "authorization");
    if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
        unsigned char raw[512];
        int n = cs_base64_decode(auth + 6, strlen(auth + 6), raw,
                                 sizeof(raw) - 1);
        if (n > 0) {
            raw[n] = '\0';
            char *colon = strchr((char *)raw, ':');
            if (colon) {
                id = sb_url_decode((char *)raw,
                                   (size_t)(colon - (char *)raw), true);
                secret = sb_url_decode(colon + 1, strlen(colon + 1), true);
            }
        }
    }
    if (!id && fstr(form, "client_id"))
        id = xstrdup(fstr(form, "client_id"));
    if (!secret && fstr(form, "client_secret"))
        secret = xstrdup(fstr(form, "client_secret"));
    bool ok = true;
    if (o->client_id[p] && (!id || strcmp(id, o->client_id[p]) != 0)) {
        refuse(out, p, E_CLIENT_ID, NULL);
        ok = false;
    } else if (o->client_secret[p] &&
               (!secret || strcmp(secret, o->client_secret[p]) != 0)) {
        refuse(out, p, E_CLIENT_SECRET, NULL);
        ok = false;
    } else if (!id) {
        refuse(out, p, E_REQUEST, "client_id is required");
        ok = false;
    }
    free(id);
    free(secret);
    return ok;
}

static struct grant *find_by_refresh(struct sb_oauth *o, int p,
                                     const char *rt, bool *stale)
{
    *stale = false;
    for (size_t i = 0; i < o->ngrants; i++) {
        struct grant *g = o->grants[i];
        if (g->provider != p || !g->refresh)
            continue;
        if (strcmp(g->refresh, rt) == 0)
            return g;
        size_t k;
        json_t *v;
        json_array_foreach(g->used, k, v)
        {
            if (strcmp(json_string_value(v), rt) == 0) {
                *stale = true;
                return g;
            }
        }
    }
    return NULL;
}

static void refresh_grant(struct sb *s, int p, const struct sb_req *rq,
                          const json_t *form, struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    const char *rt = fstr(form, "refresh_token");
    if (!rt) {
        refuse(out, p, E_REQUEST, "refresh_token is required");
        return;
    }
    const char *ut = fstr(form, "user_type");
    if (p == O_GHL && ut && strcmp(ut, "Location") != 0 &&
        strcmp(ut, "Company") != 0) {
        refuse(out, p, E_REQUEST, "user_type must be Location or Company");
        return;
    }
    bool stale = false;
    struct grant *g = find_by_refresh(o, p, rt, &stale);
    if (g) {
        g->requests++;
        if (stale)
            g->stale++;
    }
    /* Microsoft keeps old refresh tokens valid after rotation. */
    bool usable = g && !g->revoked && (!stale || p == O_MICROSOFT);
    if (!usable) {
        if (g)
            g->refused++;
        refuse(out, p, E_GRANT, NULL);
        return;
    }
    issue_access(s, g);
    bool rotate = o->rotate[p] || p == O_MICROSOFT;
    if (rotate) {
        json_array_append_new(g->used, json_string(g->refresh));
        free(g->refresh);
        g->refresh = token(s, "rt", p);
    }
    sb_resp_json(out, 200, success_body(s, rq, g, rotate));
}

static unsigned char *b64url_decode(const char *s, size_t n, size_t *len)
{
    char *std = xmalloc(n + 3);
    for (size_t i = 0; i < n; i++)
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t m = n;
    while (m % 4)
        std[m++] = '=';
    unsigned char *out = xmalloc(m + 1);
    int r = cs_base64_decode(std, m, out, m);
    free(std);
    if (r < 0) {
        free(out);
        return NULL;
    }
    out[r] = '\0';
    *len = (size_t)r;
    return out;
}

static bool verify_rs256(EVP_PKEY *key, const char *input, size_t n,
                         const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md &&
              EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input,
                               n) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

/* Check a JWT bearer assertion; returns its claims or NULL (refused). */
static json_t *check_assertion(struct sb_oauth *o, const char *jwt,
                               struct sb_resp *out)
{
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    size_t hl = 0, cl = 0, sl = 0;
    unsigned char *h = d1 ? b64url_decode(jwt, (size_t)(d1 - jwt), &hl) : NULL;
    unsigned char *c = d2 ? b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &cl)
                          : NULL;
    unsigned char *sig =
        d2 ? b64url_decode(d2 + 1, strlen(d2 + 1), &sl) : NULL;
    json_t *hj = h ? json_loadb((char *)h, hl, 0, NULL) : NULL;
    json_t *cj = c ? json_loadb((char *)c, cl, 0, NULL) : NULL;
    const char *alg = json_string_value(json_object_get(hj, "alg"));
    bool ok = hj && cj && sig && alg && strcmp(alg, "RS256") == 0 &&
              o->sf_key &&
              verify_rs256(o->sf_key, jwt, (size_t)(d2 - jwt), sig, sl);
    const char *aud = json_string_value(json_object_get(cj, "aud"));
    json_t *exp = json_object_get(cj, "exp");
    int64_t now = cs_now_ms() / 1000;
    const char *why = "invalid assertion";
    if (ok && (!aud || (strcmp(aud, "https://login.salesforce.com") != 0 &&
                        strcmp(aud, "https://test.salesforce.com") != 0))) {
        ok = false;
        why = "audience is invalid";
    }
    if (ok && (!json_is_integer(exp) || json_integer_value(exp) <= now ||
               json_integer_value(exp) > now + 300)) {
        ok = false;
        why = "expired authorization code";
    }
    free(h);
    free(c);
    free(sig);
    json_decref(hj);
    if (!ok) {
        json_decref(cj);
        sb_resp_json(out, 400,
                     json_pack("{s:s,s:s}", "error", "invalid_grant",
                               "error_description", why));
        return NULL;
    }
    return cj;
}

static void jwt_grant(struct sb *s, const struct sb_req *rq,
                      const json_t *form, struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    const char *jwt = fstr(form, "assertion");
    if (!jwt) {
        refuse(out, O_SALESFORCE, E_REQUEST, "assertion is required");
        return;
    }
    json_t *claims = check_assertion(o, jwt, out);
    if (!claims)
        return;
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    if (o->client_id[O_SALESFORCE] &&
        (!iss || strcmp(iss, o->client_id[O_SALESFORCE]) != 0)) {
        json_decref(claims);
        refuse(out, O_SALESFORCE, E_CLIENT_ID, NULL);
        return;
    }
    struct grant *g = NULL;
    for (size_t i = 0; sub && i < o->ngrants; i++)
        if (o->grants[i]->provider == O_SALESFORCE && o->grants[i]->subject &&
            strcmp(o->grants[i]->subject, sub) == 0)
            g = o->grants[i];
    json_decref(claims);
    if (g)
        g->requests++;
    if (!g || g->revoked) {
        if (g)
            g->refused++;
        sb_resp_json(out, 400,
                     json_pack("{s:s,s:s}", "error", "invalid_grant",
                               "error_description",
                               "user hasn't approved this consumer"));
        return;
    }
    issue_access(s, g);
    sb_resp_json(out, 200, success_body(s, rq, g, false));
}

/* ---- Authorization codes ------------------------------------------------ */

/* The authorize endpoint path each provider has after /oauth/<name>. */
static bool authorize_path(int p, const char *rest)
{
    switch (p) {
    case O_GOOGLE: return strcmp(rest, "/o/oauth2/v2/auth") == 0;
    case O_HUBSPOT:
    case O_CALENDLY: return strcmp(rest, "/oauth/authorize") == 0;
    case O_SALESFORCE: return strcmp(rest, "/services/oauth2/authorize") == 0;
    case O_GHL:
        return strcmp(rest, "/oauth/chooselocation") == 0 ||
               strcmp(rest, "/v2/oauth/chooselocation") == 0;
    case O_ZOHO: return strcmp(rest, "/oauth/v2/auth") == 0;
    case O_MICROSOFT: {
        size_t tl = rest[0] == '/' ? strcspn(rest + 1, "/") : 0;
        return tl > 0 &&
               strcmp(rest + 1 + tl, "/oauth2/v2.0/authorize") == 0;
    }
    }
    return false;
}

/* Which providers insist on a PKCE challenge here (those callsync sends
 * one to). */
static bool pkce_required(int p)
{
    return p == O_GOOGLE || p == O_SALESFORCE || p == O_CALENDLY ||
           p == O_MICROSOFT;
}

static void authorize_error(struct sb_resp *out, const char *msg)
{
    /* Providers show an error page instead of redirecting when the client
     * or the redirect URI is wrong. */
    sb_resp_json(out, 400, json_pack("{s:s,s:s}", "error", "invalid_request",
                                     "error_description", msg));
}

static void authorize(struct sb *s, int p, const struct sb_req *rq,
                      struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    o->authorize_requests[p]++;
    json_t *q = json_object();
    form_parse(rq->query, strlen(rq->query), q);
    const char *cid = fstr(q, "client_id");
    const char *redirect = fstr(q, "redirect_uri");
    const char *st = fstr(q, "state");
    const char *rt = fstr(q, "response_type");
    const char *ch = fstr(q, "code_challenge");
    const char *chm = fstr(q, "code_challenge_method");
    if (!cid || (o->client_id[p] && strcmp(cid, o->client_id[p]) != 0)) {
        authorize_error(out, "unknown client_id");
    } else if (!redirect || (strncmp(redirect, "http://", 7) != 0 &&
                             strncmp(redirect, "https://", 8) != 0)) {
        authorize_error(out, "redirect_uri is missing or not http(s)");
    } else if (!rt || strcmp(rt, "code") != 0) {
        authorize_error(out, "response_type must be code");
    } else if (pkce_required(p) &&
               (!ch || !chm || strcmp(chm, "S256") != 0 ||
                strlen(ch) != 43)) {
        authorize_error(out, "code_challenge with code_challenge_method "
                             "S256 is required");
    } else {
        struct authcode *c = xcalloc(1, sizeof(*c));
        c->code = token(s, "code", p);
        c->provider = p;
        c->client_id = xstrdup(cid);
        c->redirect_uri = xstrdup(redirect);
        c->challenge = ch ? xstrdup(ch) : NULL;
        c->scope = fstr(q, "scope") ? xstrdup(fstr(q, "scope")) : NULL;
        c->expires_ms = cs_now_ms() + 600000;
        o->codes = xrealloc(o->codes, (o->ncodes + 1) * sizeof(*o->codes));
        o->codes[o->ncodes++] = c;
        char *qs = NULL;
        size_t len = 0;
        oauth_form_add(&qs, &len, "code", c->code);
        if (st)
            oauth_form_add(&qs, &len, "state", st);
        if (p == O_ZOHO) {
            char *acc = host_url(rq, "/oauth/zoho");
            oauth_form_add(&qs, &len, "location", "us");
            oauth_form_add(&qs, &len, "accounts-server", acc);
            free(acc);
        }
        sb_resp_header(out, "Location: %s%s%s", redirect,
                       strchr(redirect, '?') ? "&" : "?", qs);
        free(qs);
        out->status = 302;
    }
    json_decref(q);
}

static struct authcode *find_code(struct sb_oauth *o, const char *code)
{
    for (size_t i = 0; code && i < o->ncodes; i++)
        if (strcmp(o->codes[i]->code, code) == 0)
            return o->codes[i];
    return NULL;
}

static void code_grant(struct sb *s, int p, const struct sb_req *rq,
                       const json_t *form, struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    o->code_grants[p]++;
    struct authcode *c = find_code(o, fstr(form, "code"));
    const char *redirect = fstr(form, "redirect_uri");
    const char *verifier = fstr(form, "code_verifier");
    const char *why = NULL;
    if (!c || c->provider != p)
        why = "invalid authorization code";
    else if (c->used)
        why = "authorization code already used";
    else if (c->expires_ms <= cs_now_ms())
        why = "expired authorization code";
    else if (!redirect || strcmp(redirect, c->redirect_uri) != 0)
        why = "redirect_uri mismatch";
    else if (c->challenge && !verifier)
        why = "code_verifier is required";
    if (!why && c->challenge) {
        unsigned char d[CS_SHA256_LEN];
        cs_sha256(verifier, strlen(verifier), NULL, 0, d);
        char *b = cs_base64_encode(d, sizeof(d));
        size_t k = 0;
        for (size_t i = 0; b[i] && b[i] != '='; i++)
            b[k++] = b[i] == '+' ? '-' : b[i] == '/' ? '_' : b[i];
        b[k] = '\0';
        if (strcmp(b, c->challenge) != 0)
            why = "invalid code verifier";
        free(b);
    }
    if (c && !why)
        c->used = true;
    if (why) {
        refuse(out, p, E_GRANT, why);
        return;
    }
    /* A grant the refresh endpoint knows from now on. */
    struct grant *g = xcalloc(1, sizeof(*g));
    g->connection = xasprintf("authorized-%s", c->code);
    g->provider = p;
    g->used = json_array();
    g->issued = json_object();
    g->refresh = token(s, "rt", p);
    g->requests = 1;
    o->grants = xrealloc(o->grants, (o->ngrants + 1) * sizeof(*o->grants));
    o->grants[o->ngrants++] = g;
    issue_access(s, g);
    json_t *body = success_body(s, rq, g, true);
    if (!json_object_get(body, "refresh_token"))
        json_object_set_new(body, "refresh_token", json_string(g->refresh));
    sb_resp_json(out, 200, body);
}

/* The endpoint path each provider has after /oauth/<name>. */
static bool token_path(int p, const char *rest)
{
    switch (p) {
    case O_GOOGLE: return strcmp(rest, "/token") == 0;
    case O_HUBSPOT:
        return strcmp(rest, "/oauth/v1/token") == 0 ||
               strcmp(rest, "/oauth/v3/token") == 0;
    case O_SALESFORCE: return strcmp(rest, "/services/oauth2/token") == 0;
    case O_CALENDLY:
    case O_GHL: return strcmp(rest, "/oauth/token") == 0;
    case O_ZOHO: return strcmp(rest, "/oauth/v2/token") == 0;
    case O_MICROSOFT: {
        /* /<tenant>/oauth2/v2.0/token */
        size_t tl = rest[0] == '/' ? strcspn(rest + 1, "/") : 0;
        return tl > 0 && strcmp(rest + 1 + tl, "/oauth2/v2.0/token") == 0;
    }
    }
    return false;
}

void oauth_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    const char *sub = rq->sub[0] == '/' ? rq->sub + 1 : rq->sub;
    size_t nl = strcspn(sub, "/");
    int p = provider_index(sub, nl);
    if (p >= 0 && authorize_path(p, sub + nl)) {
        if (rq->method != HTTP_GET)
            sb_resp_json(out, 405,
                         json_pack("{s:s}", "error", "method_not_allowed"));
        else
            authorize(s, p, rq, out);
        return;
    }
    if (p < 0 || !token_path(p, sub + nl)) {
        sb_resp_json(out, 404,
                     json_pack("{s:s,s:s}", "error", "not_found", "message",
                               "no token endpoint at this path"));
        return;
    }
    if (rq->method != HTTP_POST) {
        sb_resp_json(out, 405,
                     json_pack("{s:s}", "error", "method_not_allowed"));
        return;
    }
    o->requests[p]++;
    const char *ct = sb_header(rq, "content-type");
    json_t *form = json_object();
    if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
        form_parse(rq->body.data ? rq->body.data : "", rq->body.len, form);
    else if (p != O_ZOHO) {
        json_decref(form);
        refuse(out, p, E_REQUEST,
               "the body must be application/x-www-form-urlencoded");
        return;
    }
    if (p == O_ZOHO) /* Zoho documents the parameters in the query */
        form_parse(rq->query, strlen(rq->query), form);
    const char *gt = fstr(form, "grant_type");
    if (!gt) {
        refuse(out, p, E_REQUEST, "grant_type is required");
    } else if (p == O_SALESFORCE && strcmp(gt, JWT_BEARER) == 0) {
        jwt_grant(s, rq, form, out); /* the client is the assertion's iss */
    } else if (!check_client(o, p, rq, form, out)) {
        /* refused */
    } else if (strcmp(gt, "refresh_token") == 0) {
        refresh_grant(s, p, rq, form, out);
    } else if (strcmp(gt, "authorization_code") == 0) {
        code_grant(s, p, rq, form, out);
    } else {
        refuse(out, p, E_UNSUPPORTED, "unsupported grant_type");
    }
    json_decref(form);
}

/* ---- Control API --------------------------------------------------------- */

static json_t *grant_json(const struct grant *g)
{
    json_t *latest = g->access ? json_object_get(g->issued, g->access) : NULL;
    return json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:I,s:I,s:I,s:b,s:O,s:I,s:I}",
                     "connection", g->connection, "provider",
                     names[g->provider], "refresh_token", g->refresh,
                     "subject", g->subject, "access_token", g->access,
                     "token_requests", (json_int_t)g->requests,
                     "stale_token_requests", (json_int_t)g->stale, "refused",
                     (json_int_t)g->refused, "revoked", g->revoked,
                     "rotated_refresh_tokens", g->used, "api_requests",
                     (json_int_t)g->api_requests, "api_requests_latest",
                     json_integer_value(json_object_get(latest, "uses")));
}

enum sb_access oauth_access(struct sb *s, const char *provider,
                            const char *at, int64_t *expired_ago_ms)
{
    struct sb_oauth *o = state(s);
    int p = provider_index(provider, strlen(provider));
    *expired_ago_ms = 0;
    for (size_t i = 0; p >= 0 && i < o->ngrants; i++) {
        struct grant *g = o->grants[i];
        json_t *t = g->provider == p ? json_object_get(g->issued, at) : NULL;
        if (!t)
            continue;
        if (g->revoked)
            return SB_ACCESS_REVOKED;
        int64_t exp = json_integer_value(json_object_get(t, "expires_at_ms"));
        if (exp <= cs_now_ms()) {
            *expired_ago_ms = cs_now_ms() - exp;
            return SB_ACCESS_EXPIRED;
        }
        json_object_set_new(
            t, "uses",
            json_integer(json_integer_value(json_object_get(t, "uses")) + 1));
        g->api_requests++;
        return SB_ACCESS_OK;
    }
    return SB_ACCESS_UNKNOWN;
}

static void control_error(struct sb_resp *out, int status, const char *msg)
{
    sb_resp_json(out, status, json_pack("{s:s}", "error", msg));
}

static void add_grant(struct sb *s, const struct sb_req *rq,
                      struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    json_t *j;
    if (!sb_is_json_object(rq, &j)) {
        control_error(out, 400, "body must be a JSON object");
        return;
    }
    const char *prov = json_string_value(json_object_get(j, "provider"));
    const char *conn = json_string_value(json_object_get(j, "connection"));
    const char *rt = json_string_value(json_object_get(j, "refresh_token"));
    const char *subj = json_string_value(json_object_get(j, "subject"));
    const char *at = json_string_value(json_object_get(j, "access_token"));
    json_t *ttl = json_object_get(j, "expires_in");
    int p = prov ? provider_index(prov, strlen(prov)) : -1;
    if (p < 0 || !conn || !*conn || (!rt == !subj) ||
        (subj && p != O_SALESFORCE) || (at && !*at) ||
        (ttl && (!at || !json_is_integer(ttl)))) {
        json_decref(j);
        control_error(out, 400,
                      "need provider, connection and either refresh_token "
                      "or (salesforce) subject; expires_in (seconds) only "
                      "with access_token");
        return;
    }
    struct grant *g = NULL;
    for (size_t i = 0; i < o->ngrants; i++)
        if (o->grants[i]->provider == p &&
            strcmp(o->grants[i]->connection, conn) == 0)
            g = o->grants[i];
    if (g) {
        free(g->refresh);
        free(g->subject);
        free(g->access);
        json_array_clear(g->used);
        json_object_clear(g->issued);
        g->access = NULL;
        g->revoked = false;
    } else {
        g = xcalloc(1, sizeof(*g));
        g->connection = xstrdup(conn);
        g->provider = p;
        g->used = json_array();
        g->issued = json_object();
        o->grants = xrealloc(o->grants, (o->ngrants + 1) * sizeof(*o->grants));
        o->grants[o->ngrants++] = g;
    }
    g->refresh = rt ? xstrdup(rt) : NULL;
    g->subject = subj ? xstrdup(subj) : NULL;
    if (at) {
        /* The access token the grant started with (as at connect time). */
        g->access = xstrdup(at);
        remember_access(g, at,
                        ttl ? (int64_t)json_integer_value(ttl)
                            : lifetime_s(p));
    }
    json_decref(j);
    sb_resp_json(out, 201, grant_json(g));
}

static void revoke(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    json_t *j;
    if (!sb_is_json_object(rq, &j)) {
        control_error(out, 400, "body must be a JSON object");
        return;
    }
    const char *conn = json_string_value(json_object_get(j, "connection"));
    int n = 0;
    for (size_t i = 0; conn && i < o->ngrants; i++)
        if (strcmp(o->grants[i]->connection, conn) == 0) {
            o->grants[i]->revoked = true;
            n++;
        }
    json_decref(j);
    sb_resp_json(out, 200, json_pack("{s:i}", "revoked", n));
}

static void list_grants(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    struct sb_oauth *o = state(s);
    char *conn = sb_query_param(rq->query, "connection");
    if (conn && *conn) {
        for (size_t i = 0; i < o->ngrants; i++)
            if (strcmp(o->grants[i]->connection, conn) == 0) {
                sb_resp_json(out, 200, grant_json(o->grants[i]));
                free(conn);
                return;
            }
        free(conn);
        control_error(out, 404, "no grant for this connection");
        return;
    }
    free(conn);
    json_t *a = json_array();
    for (size_t i = 0; i < o->ngrants; i++)
        json_array_append_new(a, grant_json(o->grants[i]));
    json_t *per = json_object();
    json_t *az = json_object();
    json_t *cg = json_object();
    for (int p = 0; p < O_N; p++) {
        json_object_set_new(per, names[p], json_integer(o->requests[p]));
        json_object_set_new(az, names[p],
                            json_integer(o->authorize_requests[p]));
        json_object_set_new(cg, names[p], json_integer(o->code_grants[p]));
    }
    sb_resp_json(out, 200,
                 json_pack("{s:o,s:o,s:o,s:o}", "grants", a, "token_requests",
                           per, "authorize_requests", az, "code_grants", cg));
}

void oauth_control(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    const char *p = rq->sub + strlen("/oauth");
    if (strcmp(p, "/grants") == 0 && rq->method == HTTP_POST)
        add_grant(s, rq, out);
    else if (strcmp(p, "/grants") == 0 && rq->method == HTTP_GET)
        list_grants(s, rq, out);
    else if (strcmp(p, "/revoke") == 0 && rq->method == HTTP_POST)
        revoke(s, rq, out);
    else
        control_error(out, 404, "no such control route");
}
