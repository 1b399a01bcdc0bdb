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
 *   calendars.c  Google Calendar, Cal.com, Calendly and Outlook (with
 *              google_calendar.c, cal_com.c, calendly.c, outlook.c)
 *   stripe.c   Stripe customers, payment links, invoices, invoice items
 *   twilio.c   Twilio Programmable Messaging (Messages.json)
 *   sendgrid.c SendGrid v3 Mail Send
 *   forms.c    form-encoded bodies (Stripe, Twilio)
 *   pipedrive.c  Pipedrive persons, notes, deals, activities
 *   zoho.c     Zoho CRM leads, contacts and their notes
 *   salesforce.c, soql.c  Salesforce REST: sObjects, upsert, SOQL queries
 *   monday.c   monday.com's GraphQL API (items, column values, updates)
 *   graphql.c  the GraphQL document reader monday.c uses
 *   housecall_pro.c  Housecall Pro customers, addresses, jobs, estimates,
 *              notes
 *   segment.c  Segment's HTTP Tracking API (track, identify)
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
    SB_P_SENTRY,  /* /sentry/api/<project>/envelope/ */
    SB_P_GCAL,    /* /google_calendar */
    SB_P_CALCOM,  /* /cal_com */
    SB_P_CALENDLY, /* /calendly */
    SB_P_OUTLOOK, /* /outlook */
    SB_P_STRIPE,
    SB_P_TWILIO,
    SB_P_SENDGRID,
    SB_P_PIPEDRIVE,
    SB_P_ZOHO,
    SB_P_SALESFORCE,
    SB_P_MONDAY,
    SB_P_HCP,     /* /housecall_pro */
    SB_P_SEGMENT,
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
struct sb_cal;
struct sb_stripe;
struct sb_twilio;
struct sb_sendgrid;
struct sb_pd;
struct sb_zoho;
struct sb_sf;
struct sb_monday;
struct sb_hcp;
struct sb_segment;

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
    json_t *sentry_events;   /* array of the events received */
    const char *sentry_key;  /* --sentry-key: the only key accepted */
    struct sb_cal *cal;      /* calendar providers */
    struct sb_stripe *stripe;     /* created on first use, like oauth */
    struct sb_twilio *twilio;
    struct sb_sendgrid *sendgrid;
    const char *pd_tokens[SB_MAX_TOKENS];
    size_t npd_tokens;
    int pd_rate;         /* per 2 s and token */
    long long pd_daily;  /* daily token budget */
    struct sb_pd *pd;
    const char *zoho_tokens[SB_MAX_TOKENS];
    size_t nzoho_tokens;
    long long zoho_credits; /* per rolling 24 h */
    long long zoho_rate;    /* calls per second; 0: no limit */
    struct sb_zoho *zoho;
    struct sb_sf *sf;        /* Salesforce: options, records, usage */
    struct sb_monday *monday;  /* created by its first option or request */
    struct sb_hcp *hcp;
    struct sb_segment *segment;
};

/* ---- sentry.c ----------------------------------------------------------- */

void sentry_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
json_t *sentry_error_body(int status);

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

/* ---- calendars.c -------------------------------------------------------- */

struct sb_cal *cal_sb_new(void);
/* Forget records and counters, keep the options. */
void cal_sb_reset(struct sb_cal *c);
void cal_sb_free(struct sb_cal *c);
/* --google-calendar-token/-rate, --cal-com-..., --calendly-...,
 * --outlook-...; false when flag is not one or val is invalid. */
bool cal_sb_option(struct sb *s, const char *flag, const char *val);
/* Requests under /google_calendar, /cal_com, /calendly and /outlook. */
void cal_sb_handle(struct sb *s, const struct sb_req *rq,
                   struct sb_resp *out);
/* The provider's error body for an injected status (stolen json). */
json_t *cal_sb_error_body(enum sb_provider p, int status);
/* Cal.com's and Calendly's rate-limit headers (nothing for the others). */
void cal_sb_rate_headers(struct sb *s, enum sb_provider p,
                         struct sb_resp *out);
/* Records: google_calendar events, cal_com bookings, calendly events and
 * invitees, outlook events; NULL for another type. */
json_t *cal_sb_records(struct sb *s, const char *provider, const char *type);
/* ---- forms.c ----------------------------------------------------------- */

/* Parse a form body or query string into JSON strings (nested: Stripe's
 * bracket notation; flat: repeated names become lists). False with a
 * message in err for a malformed name. */
bool sb_form_parse(const char *s, size_t n, bool nested, json_t **out,
                   char *err, size_t errlen);
/* Whether the request's body is application/x-www-form-urlencoded. */
bool sb_is_form(const struct sb_req *rq);

/* ---- stripe.c, twilio.c, sendgrid.c ------------------------------------- */

/* Each: a command-line option of its own (false when it is not one or is
 * invalid), the handler, the error body for an injected status (stolen
 * json), the rate-limit headers it adds to every answer, its records of
 * one type (NULL for an unknown type), and reset (records and counters
 * go, configuration stays) and free. */
bool stripe_option(struct sb *s, const char *flag, const char *val);
void stripe_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
json_t *stripe_error_body(int status);
json_t *stripe_records(struct sb *s, const char *type);
/* /_sandbox/stripe/expire_keys: forget every idempotency key, as Stripe
 * does once they are 24 hours old. */
void stripe_control(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out);
void stripe_reset(struct sb_stripe *st);
void stripe_free(struct sb_stripe *st);

bool twilio_option(struct sb *s, const char *flag, const char *val);
void twilio_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
json_t *twilio_error_body(int status);
json_t *twilio_records(struct sb *s, const char *type);
void twilio_reset(struct sb_twilio *t);
void twilio_free(struct sb_twilio *t);

bool sendgrid_option(struct sb *s, const char *flag, const char *val);
void sendgrid_handle(struct sb *s, const struct sb_req *rq,
                     struct sb_resp *out);
json_t *sendgrid_error_body(int status);
void sendgrid_rate_headers(struct sb *s, struct sb_resp *out);
json_t *sendgrid_records(struct sb *s, const char *type);
void sendgrid_reset(struct sb_sendgrid *g);
void sendgrid_free(struct sb_sendgrid *g);
/* ---- pipedrive.c -------------------------------------------------------- */

struct sb_pd *pd_new(void);
void pd_free(struct sb_pd *p);
void pd_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
/* The Pipedrive error body for an injected status (stolen json). */
json_t *pd_error_body(int status);
/* Add the x-ratelimit-* and daily budget headers to out. */
void pd_rate_headers(struct sb *s, const struct sb_req *rq,
                     struct sb_resp *out);
/* Records of one type ("persons", "notes", "deals", "activities"), or
 * NULL. */
json_t *pd_records(struct sb *s, const char *type);

/* ---- zoho.c ------------------------------------------------------------- */

struct sb_zoho *zoho_new(void);
void zoho_free(struct sb_zoho *z);
void zoho_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
/* The Zoho error body for an injected status (stolen json). */
json_t *zoho_error_body(int status);
/* Records of one type ("leads", "contacts", "notes"), or NULL. */
json_t *zoho_records(struct sb *s, const char *type);
/* ---- salesforce.c ------------------------------------------------------- */

/* --salesforce-token T, --salesforce-daily N, --salesforce-duplicates
 * block|allow; false when flag is not one of them or val is invalid. */
bool sf_option(struct sb *s, const char *flag, const char *val);
/* Forget records and usage, keep the options. */
void sf_reset(struct sb *s);
void sf_free(struct sb *s);
void sf_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
/* The Salesforce error array for an injected status (stolen json). */
json_t *sf_error_body(int status);
/* Add Sforce-Limit-Info to out. */
void sf_limit_headers(struct sb *s, struct sb_resp *out);
/* Live records of one type ("leads", "contacts", "accounts", "tasks",
 * "events", "opportunities"), or NULL. */
json_t *sf_records(struct sb *s, const char *type);
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
/* ---- monday.c, housecall_pro.c, segment.c --------------------------------
 * Each keeps its configuration and records in its own state, created on
 * first use. _option takes a command-line option (false when it is not
 * one of the module's or its value is invalid); _reset forgets records
 * and counters and keeps the configuration; _records answers the records
 * of a type, or NULL for an unknown type. */
bool monday_option(struct sb *s, const char *flag, const char *val);
void monday_handle(struct sb *s, const struct sb_req *rq,
                   struct sb_resp *out);
void monday_reset(struct sb_monday *m);
void monday_free(struct sb_monday *m);
json_t *monday_error_body(int status);
json_t *monday_records(struct sb *s, const char *type);

bool hcp_option(struct sb *s, const char *flag, const char *val);
void hcp_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out);
void hcp_reset(struct sb_hcp *h);
void hcp_free(struct sb_hcp *h);
json_t *hcp_error_body(int status);
json_t *hcp_records(struct sb *s, const char *type);

bool segment_option(struct sb *s, const char *flag, const char *val);
void segment_handle(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out);
void segment_reset(struct sb_segment *g);
void segment_free(struct sb_segment *g);
json_t *segment_error_body(int status);
json_t *segment_records(struct sb *s, const char *type);

const char *sb_reason(int status);

#endif
