/*
 * prov.h - the provider interface: every provider is a table of steps that
 * build HTTP requests and parse HTTP responses, without doing any I/O. The
 * worker sends the requests (libcurl multi), checkpoints every finished
 * step in Redis, and decides retries; a provider only says what to send
 * and what an answer means. So every provider is unit-tested with
 * fixtures, and the sandbox can stand in for the real API.
 *
 * A job runs the provider's steps in order. A step may need several
 * requests (find the contact, then create or update it); it keeps its own
 * state in ctx->scratch between them and answers PROV_NEXT until it is
 * done. A step's result (say {"contact_id": "123"}) is checkpointed and
 * visible to later steps in ctx->done.
 *
 * Reconciliation (DESIGN.md, "A job's life"): before a write is sent, the
 * worker records that the step is in flight. If the process dies or the
 * request times out after that, the next attempt runs the step with
 * ctx->reconcile set, and the step must first find out whether its write
 * happened: by the idempotency key it sent (ctx->idempotency_key, always
 * "<job_id>:<step>"), or by looking the object up (the contact by phone or
 * email; a note or event by the job marker written into it,
 * prov_job_marker()). Only steps whose reconcile is PROV_RECONCILE_NONE
 * may be repeated blind, and the README lists them.
 */
#ifndef CS_PROV_H
#define CS_PROV_H

#include "cs.h"

#include <jansson.h>

#define PROV_MAX_HEADERS 16

struct prov_header {
    char *name;
    char *value;
};

/* A request a step wants sent. Everything is owned by the request. */
struct prov_request {
    const char *method;        /* "GET", "POST", "PATCH", "PUT", "DELETE" */
    char *url;                 /* absolute URL */
    size_t nheaders;
    struct prov_header headers[PROV_MAX_HEADERS];
    char *body;                /* NULL for none */
    size_t body_len;
    int timeout_ms;            /* 0: the worker's default */
};

/* Add a header (both strings copied). */
void prov_request_header(struct prov_request *rq, const char *name,
                         const char *value);
/* Set a JSON body (serialised compactly; the value is not stolen) and
 * Content-Type: application/json. */
void prov_request_json(struct prov_request *rq, const json_t *body);
/* Free everything the request owns and zero it. */
void prov_request_release(struct prov_request *rq);

/* A response, as the worker received it. Borrowed for the parse call. */
struct prov_response {
    int status;                /* 0: no response (network error, timeout) */
    size_t nheaders;
    const struct prov_header *headers; /* names lower-case */
    const char *body;
    size_t body_len;
};

/* Case-insensitive header look-up; NULL if absent. */
const char *prov_response_header(const struct prov_response *r,
                                 const char *name);

enum prov_outcome {
    PROV_DONE,          /* step finished; result->value is its checkpoint */
    PROV_NEXT,          /* send the next request of this step */
    PROV_SKIP,          /* step does not apply after all (no checkpoint
                           value needed; recorded as skipped) */
    PROV_RETRY,         /* transient: network, timeout, 408, 425, 5xx */
    PROV_RATE_LIMITED,  /* 429 or an exhausted rate-limit header: pause the
                           key for everyone until retry_after_ms */
    PROV_AUTH,          /* 401 or invalid token: refresh once, else park */
    PROV_PERMANENT,     /* 400, 404, 422, mapping or config error: dead
                           letter with the reason */
};

struct prov_result {
    enum prov_outcome outcome;
    json_t *value;             /* DONE: the step's checkpoint (owned) */
    int64_t retry_after_ms;    /* RETRY/RATE_LIMITED: the provider's hint,
                                  -1 if it gave none */
    int64_t pause_ms;          /* DONE/NEXT/SKIP: > 0 when the answer says
                                  the budget is spent (a remaining-count
                                  header at 0): pause the key this long */
    int http_status;
    char code[48];             /* stable error code, e.g. "VALIDATION_ERROR" */
    char message[256];         /* what went wrong, no secrets */
};

/* Credentials of a connection, already opened (plaintext). */
struct prov_creds {
    const char *access_token;  /* OAuth or private-app token */
    const char *api_key;
    const char *api_secret;
    const char *webhook_url;
    const char *instance_url;
};

struct prov_ctx {
    const json_t *job;         /* the job document (job_id, call, ...) */
    const json_t *call;        /* job.call, or NULL for other kinds */
    const json_t *config;      /* the connection's config object */
    const struct prov_creds *creds;
    const json_t *done;        /* {step name: checkpoint value} so far */
    json_t *scratch;           /* this step's state across its requests;
                                  starts as {} for each step attempt */
    bool reconcile;            /* a previous attempt may have written */
    const char *idempotency_key; /* "<job_id>:<step>" */
    const char *base_url;      /* overrides the provider's API base (tests,
                                  sandbox); NULL for the real one */
    int64_t now_ms;
};

enum prov_reconcile {
    PROV_RECONCILE_KEY,        /* the request carries an idempotency key the
                                  provider honours */
    PROV_RECONCILE_LOOKUP,     /* the step looks its object up first */
    PROV_RECONCILE_NONE,       /* cannot tell: repeated blind (listed in the
                                  README) */
};

struct prov_step {
    const char *name;          /* "contact", "note", "meeting", "deal",
                                  "workflow", "hook", ... */
    enum prov_reconcile reconcile;
    /* Whether the step applies to this job (appointment present, pipeline
     * configured, ...). NULL: always. */
    bool (*applies)(const struct prov_ctx *ctx);
    /* Build the next request of the step into *rq (zeroed by the caller).
     * Returns 0, or CS_EINVAL with err filled when the job cannot be
     * mapped (a permanent error). */
    int (*build)(struct prov_ctx *ctx, struct prov_request *rq,
                 struct cs_err *err);
    /* Read the answer to the request build made. */
    void (*parse)(struct prov_ctx *ctx, const struct prov_response *rsp,
                  struct prov_result *res);
};

/* Documented request rate of a provider, the limiter's default. */
struct prov_rate {
    int requests;              /* this many ... */
    int per_ms;                /* ... per this many milliseconds */
};

struct prov_ops {
    const char *name;          /* integration_type, e.g. "hubspot" */
    const struct prov_step *steps;
    size_t nsteps;
    struct prov_rate rate;
    /* Which credential identifies the account for rate limiting:
     * "connection" or a config key such as "portal_id". */
    const char *rate_scope;
    /* A read-only check of the connection's credentials and settings, for
     * `callsyncctl connections test`: a step whose requests change nothing
     * at the provider and whose result says what was found. NULL when the
     * provider has no such call; no_probe says why. */
    const struct prov_step *probe;
    const char *no_probe;
    /* The documented rate when it depends on the connection (Stripe: a
     * live or a test key). NULL, or false from it: .rate. The worker
     * calls it once per job, before config.rate_limit overrides. */
    bool (*rate_of)(const struct prov_creds *creds, const json_t *config,
                    struct prov_rate *out);
};

/* The providers implemented so far (registry.c lists them). */
extern const struct prov_ops prov_hubspot;
extern const struct prov_ops prov_zapier;
extern const struct prov_ops prov_custom_rest;
extern const struct prov_ops prov_retell;
extern const struct prov_ops prov_gohighlevel;
extern const struct prov_ops prov_google_calendar;
extern const struct prov_ops prov_cal_com;
extern const struct prov_ops prov_calendly;
extern const struct prov_ops prov_outlook;
extern const struct prov_ops prov_stripe;
extern const struct prov_ops prov_twilio;
extern const struct prov_ops prov_sendgrid;
extern const struct prov_ops prov_pipedrive;
extern const struct prov_ops prov_zoho;
extern const struct prov_ops prov_salesforce;
extern const struct prov_ops prov_monday;
extern const struct prov_ops prov_housecall_pro;
extern const struct prov_ops prov_segment;

/* The provider for an integration type, or NULL if there is none yet. */
const struct prov_ops *prov_find(const char *name);

/*
 * Classification shared by providers (DESIGN.md, "Errors are classified"):
 * network error or timeout (status 0), 408, 425, 5xx → RETRY; 429 →
 * RATE_LIMITED; 401 → AUTH; other 4xx → PERMANENT. Retry-After (seconds or
 * an HTTP date) fills retry_after_ms. Providers refine it (HubSpot's
 * policyName, Salesforce's REQUEST_LIMIT_EXCEEDED on 403, ...).
 */
void prov_classify(const struct prov_response *rsp, struct prov_result *res);

/* The marker written into notes and events so a lookup can find what a
 * job wrote: "callsync:<job_id>". Into out[48]. */
void prov_job_marker(const json_t *job, char out[48]);

void prov_result_release(struct prov_result *res);

/* Percent-encode everything but RFC 3986 unreserved characters, for a
 * path segment or a query value (xmalloc'd). */
char *prov_url_escape(const char *s);

/*
 * Start a request: method, and the URL base + path where base is
 * ctx->base_url when set (the sandbox) or else dflt, trailing slashes
 * dropped; with a token, "Authorization: Bearer <token>"; and
 * "Accept: application/json".
 */
void prov_request_begin(struct prov_request *rq, const struct prov_ctx *ctx,
                        const char *method, const char *dflt,
                        const char *path, const char *token);

/* res becomes DONE with the checkpoint {key: id}. */
void prov_done_id(struct prov_result *res, const char *key, const char *id);
/* res becomes outcome o with a code and a message (printf format). */
void prov_fail(struct prov_result *res, enum prov_outcome o,
               const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A provider's error name as a code: "Unprocessable Entity",
 * "ERR_SCHEMA" -> "unprocessable_entity", "err_schema" (lower case, runs
 * of other characters become one '_', none at the ends), into code[48]. */
void prov_error_code(const char *e, char code[48]);
/* The answer's body parsed as JSON, or NULL (empty or not JSON). */
json_t *prov_response_json(const struct prov_response *rsp);

/*
 * The document templates and field mappings read (mapping.h), a new
 * object: {"call": the call, "job": {job_id, agent_id, org_id}, "steps":
 * the checkpoints so far} plus seed 003's flat names: customer_name,
 * customer_name_first, customer_name_last, customer_phone,
 * customer_email, customer_address, customer_city, customer_state,
 * recording_url, transcription, ai_analysis, source, call_id,
 * call_outcome, call_summary, call_sentiment, duration_seconds,
 * started_at, ended_at, appointment.
 */
json_t *prov_data_root(const struct prov_ctx *ctx);

#endif
