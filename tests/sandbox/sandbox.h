/*
 * sandbox.h - callsync-sandbox: one HTTP server that stands in for the
 * providers callsync talks to (HubSpot, Zapier catch hooks, Retell's
 * create-phone-call, a generic custom REST endpoint). It answers with the
 * providers' own request and response shapes, keeps what it receives in
 * memory, lets tests inspect it through /_sandbox, and injects faults
 * (status codes, latency, hangs) on request.
 *
 * Modules:
 *   main.c     command line, listener, signals
 *   server.c   HTTP/1.1 connections on libev (keep-alive, delayed answers)
 *   dispatch.c provider routing, fault rules, request log, stats, /_sandbox
 *   hubspot.c  HubSpot CRM v3 objects, search, workflow enrolment
 *   others.c   Zapier, Retell and custom REST
 *   gohighlevel.c  GoHighLevel contacts, notes, calendars, opportunities
 *   oauth.c    the providers' OAuth 2.0 token endpoints
 *
 * Everything runs on one event loop; no locks.
 */
#ifndef CS_SANDBOX_H
#define CS_SANDBOX_H

#include "buf.h"
#include "cs.h"

#include <ev.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdint.h>

#define SB_MAX_HEADERS 64
#define SB_MAX_BODY (8 * 1024 * 1024)
#define SB_MAX_TOKENS 16
#define SB_REQUEST_RING 1000000

enum sb_provider {
    SB_P_HUBSPOT = 0,
    SB_P_ZAPIER,
    SB_P_RETELL,
    SB_P_CUSTOM,
    SB_P_GHL,
    SB_P_OAUTH,   /* /oauth/<provider>/...: token endpoints */
    SB_P_OTHER,
    SB_P_CONTROL, /* /_sandbox: never logged, never faulted */
    SB_P_COUNT
};

struct sb_header {
    char *name; /* lower case */
    char *value;
};

/* One parsed request; owned by its connection and valid during dispatch. */
struct sb_req {
    int method;          /* enum http_method */
    char *url;           /* as received: path and query */
    char *path;          /* url before '?' */
    const char *query;   /* after '?', or "" */
    const char *sub;     /* path with the provider prefix removed */
    enum sb_provider provider;
    struct sb_header headers[SB_MAX_HEADERS];
    size_t nheaders;
    struct buf body;
    int64_t received_ms; /* wall clock */
};

/* The answer a handler builds; the server writes it (maybe later). */
struct sb_resp {
    int status;
    struct buf headers;  /* extra "Name: value\r\n" lines */
    char *body;          /* xmalloc'd, may be NULL */
    size_t len;
    int delay_ms;        /* answer after this long */
    int hang_ms;         /* > 0: never answer, close after this long */
};

/* Fault rules, set by POST /_sandbox/faults. */
struct sb_rule {
    int provider;        /* enum sb_provider, or -1 for any */
    char *path_prefix;   /* NULL: any */
    int method;          /* enum http_method, or -1 for any */
    int latency_ms;
    int status;          /* 0: no injected status */
    int retry_after_s;   /* -1: no Retry-After */
    json_t *body;        /* NULL: the provider's own error shape */
    bool hang;
    bool process;        /* with hang: handle the request, then withhold
                            the answer (a write whose outcome is unknown) */
    int hang_ms;
    long long count;     /* -1: unlimited */
    long long every;     /* 0: every match */
    double probability;  /* < 0: always */
    long long matched;   /* read-only: matching requests seen */
    long long fired;     /* read-only: times applied */
};

struct sb_logged {
    int64_t at_ms;
    char *path;
    uint16_t status;
    uint8_t provider;
    uint8_t method;
};

struct sb_hubspot;
struct sb_ghl;
struct sb_oauth;

/* Process-wide state, created in main and passed to every handler. */
struct sb {
    struct ev_loop *loop;
    /* configuration (immutable after start) */
    int latency_ms;
    const char *tokens[SB_MAX_TOKENS];
    size_t ntokens;
    int hubspot_rate;    /* per 10 s */
    const char *ghl_tokens[SB_MAX_TOKENS];
    size_t nghl_tokens;
    int ghl_rate;        /* per 10 s */
    long long ghl_daily;
    uint64_t seed;
    /* state */
    uint64_t prng;
    struct sb_rule *rules;
    size_t nrules;
    struct sb_logged *ring; /* grows up to SB_REQUEST_RING */
    size_t ring_cap, ring_len, ring_head;
    long long stats[SB_P_COUNT][600];
    struct sb_hubspot *hs;
    struct sb_ghl *ghl;
    json_t *zapier_hooks;  /* array of records */
    json_t *retell_calls;  /* array */
    json_t *custom;        /* array */
    json_t *idem;          /* Idempotency-Key -> {"status","body"} */
    long long custom_next;
    struct sb_oauth *oauth;  /* token endpoints: clients, grants, counters */
};

/* ---- server.c ----------------------------------------------------------- */

/* Accept connections from listen_fd on s->loop. */
void sb_server_start(struct sb *s, int listen_fd);
/* Close every connection and the listener. */
void sb_server_stop(void);
/* The value of header name (lower case) or NULL. */
const char *sb_header(const struct sb_req *rq, const char *name);

/* ---- dispatch.c --------------------------------------------------------- */

/* Route rq, apply faults, run the handler, log it; fills *out. */
void sb_dispatch(struct sb *s, struct sb_req *rq, struct sb_resp *out);
/* Forget every record, rule, logged request and counter. */
void sb_reset(struct sb *s);
void sb_free(struct sb *s);
/* Next value of the deterministic PRNG. */
uint64_t sb_rand(struct sb *s);

/* Answer helpers: the body is stolen (json) or copied (text). */
void sb_resp_json(struct sb_resp *out, int status, json_t *body);
void sb_resp_header(struct sb_resp *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Query parameter name from a query string, xmalloc'd and decoded. */
char *sb_query_param(const char *query, const char *name);
/* Percent-decode n bytes of s into a fresh string ('+' is a space in a
 * query, not in a path). */
char *sb_url_decode(const char *s, size_t n, bool plus_is_space);
/* Parse the request body as a JSON value, or NULL. */
json_t *sb_body_json(const struct sb_req *rq);
bool sb_is_json_object(const struct sb_req *rq, json_t **out);

/* ---- hubspot.c ---------------------------------------------------------- */

struct sb_hubspot *hs_new(void);
void hs_free(struct sb_hubspot *h);
void hs_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
/* The HubSpot error body for an injected status (stolen json). */
json_t *hs_error_body(int status);
/* Add the X-HubSpot-RateLimit-* headers to out. */
void hs_rate_headers(struct sb *s, struct sb_resp *out);
/* Records of one type ("contacts", ..., "enrollments"), or NULL. */
json_t *hs_records(struct sb *s, const char *type);

/* ---- others.c ----------------------------------------------------------- */

void zap_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
void retell_handle(struct sb *s, const struct sb_req *rq,
                   struct sb_resp *out);
void custom_handle(struct sb *s, const struct sb_req *rq,
                   struct sb_resp *out);
/* Error bodies for injected statuses. */
json_t *zap_error_body(int status);
json_t *retell_error_body(int status);
json_t *custom_error_body(int status);

/* ---- gohighlevel.c ------------------------------------------------------ */

struct sb_ghl *ghl_new(void);
void ghl_free(struct sb_ghl *g);
void ghl_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
/* The GoHighLevel error body for an injected status (stolen json). */
json_t *ghl_error_body(int status);
/* Add the X-RateLimit-* headers to out. */
void ghl_rate_headers(struct sb *s, struct sb_resp *out);
/* Records of one type ("contacts", "notes", "appointments",
 * "opportunities", "enrollments"), or NULL. */
json_t *ghl_records(struct sb *s, const char *type);
/* ---- oauth.c ------------------------------------------------------------ */

struct sb_oauth *oauth_new(void);
/* Forget grants and counters, keep the configuration. */
void oauth_reset(struct sb_oauth *o);
void oauth_free(struct sb_oauth *o);
/* A command-line option (--oauth-client P=ID:SECRET, --oauth-rotate P,
 * --salesforce-jwt-key PATH); false when it is not one or is invalid. */
bool oauth_option(struct sb *s, const char *flag, const char *val);
void oauth_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
/* /_sandbox/oauth/...: grants, revocation, counters. */
void oauth_control(struct sb *s, const struct sb_req *rq,
                   struct sb_resp *out);
json_t *oauth_error_body(int status);

enum sb_access {
    SB_ACCESS_UNKNOWN,  /* not a token the endpoints issued */
    SB_ACCESS_OK,       /* issued, unexpired: counted as an API request */
    SB_ACCESS_EXPIRED,  /* issued, past its expires_in (*expired_ago_ms) */
    SB_ACCESS_REVOKED,  /* its grant was revoked */
};
/* Whether access token at was issued to a grant of provider ("hubspot")
 * and may still be used. */
enum sb_access oauth_access(struct sb *s, const char *provider,
                            const char *at, int64_t *expired_ago_ms);

const char *sb_reason(int status);

#endif
