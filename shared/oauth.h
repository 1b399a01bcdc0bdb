/*
 * oauth.h - OAuth 2.0 token refresh for the providers callsync connects
 * to, without I/O: build the token request a provider wants (URL, form
 * body, headers), and read its answer into new tokens or a classified
 * error. The caller sends the request (libcurl easy in oauth_flow.c, or
 * the worker's curl multi). Like providers/prov.h, every provider is
 * unit-tested with fixtures and the sandbox can stand in for it.
 *
 * Token endpoints (the origin is replaceable for the sandbox, see
 * oauth_params.base_url):
 *
 *   google       POST https://oauth2.googleapis.com/token
 *   hubspot      POST https://api.hubapi.com/oauth/v3/token
 *   salesforce   POST https://login.salesforce.com/services/oauth2/token
 *                (test.salesforce.com or a My Domain login URL instead;
 *                refresh_token grant, or the JWT bearer grant)
 *   calendly     POST https://auth.calendly.com/oauth/token
 *   gohighlevel  POST https://services.leadconnectorhq.com/oauth/token
 *   zoho         POST https://accounts.zoho.<dc>/oauth/v2/token
 *   microsoft    POST https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token
 *
 * Every body is application/x-www-form-urlencoded with the parameter
 * names of the provider's documentation; the answer is JSON.
 */
#ifndef CS_OAUTH_H
#define CS_OAUTH_H

#include "cs.h"

enum oauth_provider {
    OAUTH_GOOGLE = 0,
    OAUTH_HUBSPOT,
    OAUTH_SALESFORCE,
    OAUTH_CALENDLY,
    OAUTH_GOHIGHLEVEL,
    OAUTH_ZOHO,
    OAUTH_MICROSOFT,
    OAUTH_NPROVIDERS
};

enum oauth_grant {
    OAUTH_GRANT_REFRESH,    /* grant_type=refresh_token */
    OAUTH_GRANT_JWT_BEARER, /* Salesforce: a signed RS256 assertion */
    OAUTH_GRANT_CODE,       /* grant_type=authorization_code: the code the
                               user's browser brought back (connecting) */
};

/* "google", "hubspot", ... (the keys of CALLSYNC_OAUTH_CLIENTS). */
const char *oauth_provider_name(enum oauth_provider p);
/* "Google", "HubSpot", ... for messages to users. */
const char *oauth_provider_title(enum oauth_provider p);
/* A provider name as above, or -1. */
int oauth_provider_parse(const char *name);
/* The provider whose tokens an integration type uses ("google_calendar"
 * is google, "outlook" is microsoft), or -1 when it has no OAuth refresh. */
int oauth_provider_for_type(const char *integration_type);

/* What a token request needs. Strings are borrowed. */
struct oauth_params {
    enum oauth_provider provider;
    enum oauth_grant grant;
    const char *base_url;      /* replaces the endpoint's scheme and host
                                  (the sandbox); NULL: the provider's own */
    const char *client_id;
    const char *client_secret; /* refresh grant (optional for Salesforce
                                  apps that do not require it) */
    const char *refresh_token; /* refresh grant */
    const char *private_key_pem; /* JWT bearer: the RSA key whose
                                    certificate the connected app holds */
    const char *username;      /* JWT bearer: the Salesforce user (sub) */
    const char *login_url;     /* Salesforce: https://login.salesforce.com
                                  (default), https://test.salesforce.com or
                                  a My Domain URL; also the JWT audience */
    const char *zoho_dc;       /* Zoho data centre: com (default), eu, in,
                                  com.au, jp, com.cn, ca, sa, uk, or the
                                  accounts server URL of one of them */
    const char *tenant;        /* Microsoft: tenant id or domain, common
                                  (default), organizations, consumers */
    const char *scope;         /* optional: sent when set (Microsoft) */
    const char *user_type;     /* GoHighLevel: Location (default), Company */
    int64_t session_lifetime_s; /* Salesforce answers carry no expires_in:
                                   the connected app's session timeout;
                                   0 means 7200 (its default, 2 h) */
    int64_t now_ms;            /* wall clock, for expiries and JWT exp */
    const char *code;          /* code grant: the authorization code */
    const char *redirect_uri;  /* code grant: as sent to the authorize
                                  endpoint */
    const char *code_verifier; /* code grant: PKCE verifier, or NULL */
};

#define OAUTH_MAX_HEADERS 4

struct oauth_header {
    char *name;
    char *value;
};

/* A token request; everything is owned by it. */
struct oauth_request {
    const char *method;        /* "POST" */
    char *url;
    size_t nheaders;
    struct oauth_header headers[OAUTH_MAX_HEADERS];
    char *body;                /* form-encoded; holds secrets */
    size_t body_len;
};

/*
 * Build the token request for p into *rq (zeroed by the caller). Returns
 * 0, or CS_EINVAL with err naming the missing or invalid parameter
 * (err->field: "client_id", "refresh_token", "zoho_dc", "tenant",
 * "login_url", "private_key", ...); *rq is then empty.
 */
CS_MUST_CHECK int oauth_build_request(const struct oauth_params *p,
                                      struct oauth_request *rq,
                                      struct cs_err *err);
/* Wipe and free what the request owns, and zero it. */
void oauth_request_release(struct oauth_request *rq);

/* The answer as received; borrowed for the parse call. */
struct oauth_response {
    int status;                /* 0: no answer */
    const char *body;
    size_t body_len;
    const char *retry_after;   /* Retry-After header, or NULL */
    const char *transport_err; /* status 0: why (timeout, refused, ...) */
};

enum oauth_outcome {
    OAUTH_OK,          /* new tokens */
    OAUTH_TRANSIENT,   /* network, timeout, 408, 425, 429, 5xx, a busy or
                          garbled answer: try again later */
    OAUTH_PERMANENT,   /* the grant or the client was refused: a person
                          must act (message says who and what) */
};

struct oauth_result {
    enum oauth_outcome outcome;
    char *access_token;        /* OK */
    char *refresh_token;       /* OK: the refresh token the answer carried,
                                  or NULL (Google, Zoho, JWT bearer) */
    bool rotated;              /* refresh_token differs from the one sent */
    int64_t expires_in_s;
    int64_t expires_at_ms;     /* absolute */
    char *instance_url;        /* Salesforce instance_url, Zoho api_domain
                                  (http(s) URLs only), or NULL */
    char *scope;
    char *account_id;          /* GoHighLevel locationId (or companyId for
                                  a Company token), else NULL */
    int http_status;
    int64_t retry_after_ms;    /* TRANSIENT: the provider's hint, or -1 */
    bool client_error;         /* PERMANENT: the app's client id, secret or
                                  key was refused (the operator must act),
                                  not the user's grant */
    char error[64];            /* the provider's error code, e.g.
                                  "invalid_grant", "BAD_REFRESH_TOKEN",
                                  or "network", "http_503" */
    char message[320];         /* what happened and what to do; no secrets */
};

/*
 * Read a token endpoint's answer to the request built from p. Fills *res
 * (zeroed here first); release it with oauth_result_release.
 */
void oauth_parse_response(const struct oauth_params *p,
                          const struct oauth_response *rsp,
                          struct oauth_result *res);
/* Wipe and free the tokens and strings of res. */
void oauth_result_release(struct oauth_result *res);

/*
 * A JWT bearer assertion: base64url(header).base64url(claims).base64url(
 * RS256 signature) with header {"alg":"RS256"} and claims iss, sub, aud,
 * exp (seconds since the epoch). pem is an unencrypted RSA private key.
 * Returns the xmalloc'd assertion, or NULL with err filled.
 */
char *oauth_jwt_assertion(const char *pem, const char *iss, const char *sub,
                          const char *aud, int64_t exp_s,
                          struct cs_err *err);

/* ---- Connecting: the authorization request --------------------------
 *
 * Authorize endpoints (origin replaceable like the token endpoint's; the
 * path stays):
 *
 *   google       https://accounts.google.com/o/oauth2/v2/auth
 *                (access_type=offline&prompt=consent: a refresh token
 *                every time; PKCE S256)
 *   hubspot      https://app.hubspot.com/oauth/authorize (no PKCE)
 *   salesforce   <login URL>/services/oauth2/authorize (PKCE S256)
 *   calendly     https://auth.calendly.com/oauth/authorize (PKCE S256,
 *                which Calendly recommends for every app)
 *   gohighlevel  https://marketplace.gohighlevel.com/oauth/chooselocation
 *                (the user picks the sub-account; no PKCE)
 *   zoho         https://accounts.zoho.<dc>/oauth/v2/auth
 *                (access_type=offline&prompt=consent; no PKCE; the
 *                callback names the user's data centre in "location")
 *   microsoft    https://login.microsoftonline.com/<tenant>/oauth2/v2.0/
 *                authorize (response_mode=query; offline_access in the
 *                scope for a refresh token; PKCE S256)
 */
struct oauth_authorize {
    enum oauth_provider provider;
    const char *base_url;      /* NULL: the provider's own origin */
    const char *client_id;
    const char *redirect_uri;
    const char *state;
    const char *scope;         /* NULL or "": oauth_default_scope() */
    const char *code_challenge; /* S256 challenge; required when
                                   oauth_uses_pkce() */
    const char *login_url;     /* Salesforce */
    const char *zoho_dc;       /* Zoho */
    const char *tenant;        /* Microsoft */
};

/* The provider takes a PKCE S256 challenge (and its token endpoint then
 * checks the verifier). */
bool oauth_uses_pkce(enum oauth_provider p);
/* The scopes asked for when the connection names none (space-separated):
 * what the jobs of callsync need from that provider. */
const char *oauth_default_scope(enum oauth_provider p);
/*
 * The URL to send the user's browser to (xmalloc'd), or NULL with err
 * naming the missing or invalid parameter.
 */
char *oauth_authorize_url(const struct oauth_authorize *a,
                          struct cs_err *err);
/* A fresh PKCE verifier (43 base64url characters from 32 random bytes)
 * into out[44]; 0 or -CS_EIO. */
CS_MUST_CHECK int oauth_pkce_verifier(char out[44]);
/* The S256 challenge of a verifier: base64url(SHA-256(verifier)),
 * xmalloc'd. */
char *oauth_pkce_challenge(const char *verifier);
/* The Zoho accounts server of a data centre name or URL ("eu",
 * "https://accounts.zoho.eu"), or NULL when unknown. */
const char *oauth_zoho_accounts(const char *dc);

/* base64url without padding (RFC 7515), xmalloc'd. */
char *oauth_b64url(const unsigned char *in, size_t n);

/*
 * Look key up in "key=value[,key=value...]" (CALLSYNC_OAUTH_CLIENTS,
 * CALLSYNC_OAUTH_BASE_URLS). Returns the xmalloc'd value, or NULL.
 */
char *oauth_spec_get(const char *spec, const char *key);

/* Percent-encode s for a form body or query (unreserved characters kept,
 * everything else %XX) onto the end of *out, growing it. */
void oauth_form_add(char **out, size_t *len, const char *name,
                    const char *value);

#endif
