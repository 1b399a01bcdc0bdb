/*
 * salesforce_internal.h - what the Salesforce provider's two files share:
 * salesforce.c (the steps) and salesforce_api.c (the REST API around
 * them: URLs and auth, SOQL literals, the error array and
 * Sforce-Limit-Info, field mappings, and the texts written). Internal to
 * the provider; see salesforce.c for the docs followed.
 */
#ifndef CS_SALESFORCE_INTERNAL_H
#define CS_SALESFORCE_INTERNAL_H

#include "prov.h"
#include "buf.h"

#define SF_API_VERSION "66.0" /* Spring '26 */
/* Salesforce names no reset time for its rolling 24-hour allocation: an
 * hour frees about a twenty-fourth of it. */
#define SF_LIMIT_PAUSE_MS (60LL * 60 * 1000)
/* The org's concurrent long-request limit frees up within seconds. */
#define SF_CONCURRENCY_PAUSE_MS 5000
/* A 429 (not part of the REST API's documented answers) without
 * Retry-After. */
#define SF_429_PAUSE_MS 10000
/* The job may have been enqueued on a clock that runs ahead of the org's;
 * look this much further back for what it wrote. */
#define SF_SINCE_SLACK_MS (60LL * 60 * 1000)
#define SF_PLACEHOLDER "[not provided]"

/* Caps on the text we write, bytes (Description holds 32,000 chars). */
#define SF_DESC_MAX 30000
#define SF_SUMMARY_MAX 4000
#define SF_TRANSCRIPT_MAX 20000
#define SF_SHORT_MAX 255
#define SF_URL_MAX 2000

/* ---- Reading the call and the config ---------------------------------- */

/* A non-empty string at a dotted path (mapping.h), else NULL. */
const char *sf__str_at(const json_t *root, const char *path);
/* A non-empty string config value, else NULL. */
const char *sf__cfg_str(const struct prov_ctx *ctx, const char *key);
bool sf__cfg_bool(const struct prov_ctx *ctx, const char *key, bool dflt);
/* The API version as "NN.N" into out[8] and its major number, or
 * CS_EINVAL with err filled (config.api_version). */
int sf__api_version(const struct prov_ctx *ctx, char out[8], int *major,
                    struct cs_err *err);
/* A Salesforce datetime ("...000+0000", "Z", "+00:00") in ms. */
bool sf__parse_time(const char *s, int64_t *ms);

/* ---- Text ------------------------------------------------------------- */

/* The length of s cut to at most max bytes on a UTF-8 boundary. */
size_t sf__utf8_cut(const char *s, size_t max);
/* s cut so (xmalloc'd). */
char *sf__cut_dup(const char *s, size_t max);
/* Append to a capped buffer; past the cap the text is dropped. */
void sf__put(struct buf *b, const char *s, size_t n);
void sf__puts(struct buf *b, const char *s);
/* "Label: value\n", value cut to max bytes (then " [...]"); nothing for
 * a NULL value. */
void sf__put_line(struct buf *b, const char *label, const char *value,
                  size_t max);
/* "\nSync reference: <job marker>" (prov_job_marker). */
void sf__put_marker(struct buf *b, const struct prov_ctx *ctx);
bool sf__has_marker(const struct prov_ctx *ctx, const char *text);

/* ---- Requests --------------------------------------------------------- */

/* Start a request to <instance or base URL>/services/data/v<ver><path>
 * with the bearer token; CS_EINVAL with err filled when the connection
 * has no token or instance URL, or a bad api_version. */
int sf__begin(const struct prov_ctx *ctx, struct prov_request *rq,
              const char *method, const char *path, struct cs_err *err);
/* Append s as a SOQL string literal, quoted and escaped. */
void sf__soql_quote(struct buf *b, const char *s);
/* A GET of /query?q=<the SOQL in b> (b is consumed). */
int sf__begin_query(const struct prov_ctx *ctx, struct prov_request *rq,
                    struct buf *b, struct cs_err *err);

/* ---- Answers ---------------------------------------------------------- */

bool sf__is_2xx(int status);
/* The body as JSON (any value), or NULL. */
json_t *sf__body_json(const struct prov_response *rsp);
/* Start parsing an answer: status, no retry hint, and a pause when
 * Sforce-Limit-Info says the allocation is spent. */
void sf__parse_begin(const struct prov_ctx *ctx,
                     const struct prov_response *rsp, struct prov_result *res);
/* Classify a failed answer (prov_classify refined by the error array). */
void sf__fail(const struct prov_response *rsp, struct prov_result *res);
/* The first error of an error array with this errorCode, or NULL. */
const json_t *sf__error_with(const json_t *b, const char *code);
/* A 2xx whose body cannot be read: retried, and the retry looks up. */
void sf__bad_body(const struct prov_response *rsp, struct prov_result *res);
/* DONE with value (stolen) as the checkpoint. */
void sf__set_done(struct prov_result *res, json_t *value);
/* The records of a query answer, or NULL when it is not one. */
const json_t *sf__records_of(const json_t *b);
/* A non-empty string member, else NULL. */
const char *sf__id_of(const json_t *o, const char *key);

/* ---- Field mappings --------------------------------------------------- */

/* Whether name is a field API name (Phone, Score__c, ns__Field__c). */
bool sf__api_name_ok(const char *name);
/* Call fn for every target the mappings at config[key] name (list or
 * object form, mapping.h); stops at the first error. */
int sf__each_target(const struct prov_ctx *ctx, const char *key,
                    int (*fn)(const char *target, void *arg), void *arg);
/* The mappings at config[key] applied over prov_data_root into *out (a
 * new object of API name -> value), or CS_EINVAL with err naming the
 * mapping that cannot apply. */
int sf__apply_mappings(const struct prov_ctx *ctx, const char *key,
                       json_t **out, struct cs_err *err);
/* config[key] rendered as a template over prov_data_root (xmalloc'd), or
 * NULL when absent or empty; *failed and err on a bad template. */
char *sf__render_template(const struct prov_ctx *ctx, const char *key,
                          struct cs_err *err, bool *failed);

#endif
