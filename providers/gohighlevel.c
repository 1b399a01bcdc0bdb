/*
 * gohighlevel.c - the GoHighLevel (HighLevel, LeadConnector) provider,
 * API v2 at services.leadconnectorhq.com (OpenAPI documents in
 * shared/specs/gohighlevel): find the contact and create or update it,
 * write the call note, book the appointment in the configured calendar,
 * open the opportunity in the configured pipeline, and add the contact to
 * a workflow. See prov.h for the step protocol and DESIGN.md ("A job's
 * life") for checkpoints and reconciliation.
 *
 * Every request carries "Authorization: Bearer <token>" (an OAuth location
 * token or a Private Integration token) and the "Version" header its
 * operation names: 2021-07-28 for contacts, notes, opportunities and
 * workflows, 2021-04-15 for calendars.
 *
 * The contact is found with GET /contacts/search/duplicate (phone and
 * email; HighLevel applies the location's duplicate rules) and then
 * created (POST /contacts/) or updated (PUT /contacts/{id}). The upsert
 * endpoint is not used: it rewrites the contact's primary email when the
 * call's address matches a secondary one (highlevel-api-docs#337) and
 * overwrites the names a person curated, while the search lets an update
 * fill in only what the contact lacks (plus the configured mappings). A
 * create that races another job is answered "This location does not allow
 * duplicated contacts." with the existing id in meta.contactId, which we
 * adopt. So the contact, like the appointment and the opportunity, is
 * looked up before every write, and a repeat after an unknown outcome
 * finds what the first attempt wrote. The note carries the job marker and
 * is looked for among the contact's notes when its step reconciles. The
 * workflow enrolment cannot be looked up (the API lists no contact's
 * workflows) and is repeated blind; whether a repeat enrolls the contact
 * twice is the workflow's own "allow re-entry" setting.
 *
 * Connection config:
 *   location_id         the sub-account (required)
 *   calendar_id         book appointments here (appointment step)
 *   pipeline_id, pipeline_stage_id (or stage_id), opportunity_status
 *                       ("open"), opportunity_value, assigned_to,
 *                       opportunity_name_template ("{{customer_name}} ..."
 *                       over prov_data_root), opportunity_field_mappings
 *   workflow_id         add the contact to this workflow
 *   user_id             the author of notes
 *   appointment_status  ("confirmed"), appointment_ignore_free_slots (true:
 *                       the time was agreed on the call), assigned_user_id
 *   timezone            for appointments whose call names none
 *   contact_source      the "source" of contacts we create
 *   field_mappings      onto the contact (mapping.h); targets are contact
 *                       fields (firstName, companyName, tags, dnd, ...) or
 *                       customFields.<id> (also customField.<id>), sent as
 *                       customFields [{"id", "field_value"}]
 */
#define _GNU_SOURCE /* strcasestr */
#include "prov.h"
#include "buf.h"
#include "mapping.h"
#include "when.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GHL_BASE_URL "https://services.leadconnectorhq.com"
#define GHL_VERSION "2021-07-28"
#define GHL_CAL_VERSION "2021-04-15"

/* Caps on the text we write, bytes. */
#define GHL_NOTE_MAX 20000
#define GHL_SUMMARY_MAX 4000
#define GHL_TRANSCRIPT_MAX 3000
#define GHL_SHORT_MAX 300
#define GHL_URL_MAX 2000

/* ------------------------------------------------------------------ */
/* Reading the call and the config                                    */
/* ------------------------------------------------------------------ */

static const json_t *at_path(const json_t *root, const char *path)
{
    return map_path(root, path);
}

/* A non-empty string at path, else NULL. */
static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(at_path(root, path));
    return s && *s ? s : NULL;
}

/* A config value that may be a string or an integer id, into out. */
static bool config_id(const json_t *config, const char *key, char *out,
                      size_t n)
{
    const json_t *v = json_object_get(config, key);
    if (json_is_string(v) && json_string_length(v) > 0 &&
        json_string_length(v) < n)
        snprintf(out, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    else
        return false;
    return true;
}

static bool config_bool(const json_t *config, const char *key, bool dflt)
{
    const json_t *v = json_object_get(config, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *contact_id_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "contact.contact_id");
}

/* ------------------------------------------------------------------ */
/* Requests and responses                                             */
/* ------------------------------------------------------------------ */

static const char *token_of(const struct prov_ctx *ctx)
{
    if (!ctx->creds)
        return NULL;
    const char *t = ctx->creds->access_token;
    if (!t || !*t)
        t = ctx->creds->api_key;
    return t && *t ? t : NULL;
}

static int need_location(const struct prov_ctx *ctx, char loc[128],
                         struct cs_err *err)
{
    if (!config_id(ctx->config, "location_id", loc, 128))
        return cs_err_set(err, CS_EINVAL, "config.location_id",
                          "config_error: location_id is not set");
    return 0;
}

/* Start a request to base + path with the bearer token and the Version
 * header, or fail with no_credentials. */
static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, const char *version,
                 struct cs_err *err)
{
    const char *token = token_of(ctx);
    if (!token)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no access "
                          "token or api key");
    prov_request_begin(rq, ctx, method, GHL_BASE_URL, path, token);
    prov_request_header(rq, "Version", version);
    return 0;
}

static bool is_2xx(int status)
{
    return status >= 200 && status < 300;
}

/* A 2xx whose body we cannot read: the write may have happened, so the
 * step is retried, and the retry looks it up. */
static void bad_body(const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    prov_fail(res, PROV_RETRY, "bad_response",
              "HTTP %d with an unreadable body", rsp->status);
}

static int64_t until_midnight_utc(int64_t now_ms)
{
    const int64_t day = 86400000;
    return (now_ms / day + 1) * day - now_ms;
}

/* A non-negative integer header, or -1. */
static long long header_int(const struct prov_response *rsp,
                            const char *name)
{
    const char *v = prov_response_header(rsp, name);
    if (!v || !*v)
        return -1;
    char *end;
    long long n = strtoll(v, &end, 10);
    while (*end == ' ')
        end++;
    return end != v && *end == '\0' && n >= 0 ? n : -1;
}

/* The message of an error body: a string, or the strings of a list (422)
 * joined with "; ". */
static void error_message(const json_t *m, char *out, size_t n)
{
    if (json_is_string(m)) {
        snprintf(out, n, "%s", json_string_value(m));
        return;
    }
    if (!json_is_array(m))
        return;
    struct buf b;
    buf_init(&b, n - 1);
    size_t i;
    const json_t *s;
    json_array_foreach(m, i, s) {
        if (!json_is_string(s))
            continue;
        if ((b.len && buf_adds(&b, "; ") < 0) ||
            buf_adds(&b, json_string_value(s)) < 0)
            break;
    }
    char *t = buf_take(&b, NULL);
    if (t)
        snprintf(out, n, "%s", t);
    free(t);
}

/*
 * Classify a failed answer: the shared rules (prov_classify), refined by
 * HighLevel's error bodies {"statusCode", "message" (a string, or a list
 * for 422), "error"}: error becomes the code and message the message. A
 * 429 without Retry-After waits until midnight UTC when
 * X-RateLimit-Daily-Remaining is 0 (HighLevel documents no reset time for
 * the daily limit), else one X-RateLimit-Interval-Milliseconds (the
 * burst window, 10 s by default).
 */
static void ghl_fail(const struct prov_ctx *ctx,
                     const struct prov_response *rsp, struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    if (json_is_object(b)) {
        const char *e = json_string_value(json_object_get(b, "error"));
        if (e && *e && rsp->status != 429)
            prov_error_code(e, res->code);
        error_message(json_object_get(b, "message"), res->message,
                      sizeof(res->message));
    }
    json_decref(b);
    if (rsp->status == 429) {
        bool daily = header_int(rsp, "x-ratelimit-daily-remaining") == 0;
        snprintf(res->code, sizeof(res->code), "%s",
                 daily ? "daily_limit" : "rate_limited");
    }
    prov_classify(rsp, res);
    if (rsp->status == 429 && res->retry_after_ms < 0) {
        long long iv = header_int(rsp, "x-ratelimit-interval-milliseconds");
        if (strcmp(res->code, "daily_limit") == 0)
            res->retry_after_ms = until_midnight_utc(ctx->now_ms);
        else
            res->retry_after_ms = iv > 0 ? iv : 10000;
    }
}

/*
 * An answer that went through but spent the budget: X-RateLimit-Daily-
 * Remaining 0 pauses until midnight UTC, X-RateLimit-Remaining 0 for one
 * X-RateLimit-Interval-Milliseconds (10 s without it), so the next request
 * waits instead of drawing a 429.
 */
static void note_budget(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (!is_2xx(rsp->status))
        return;
    if (header_int(rsp, "x-ratelimit-daily-remaining") == 0) {
        res->pause_ms = until_midnight_utc(ctx->now_ms);
    } else if (header_int(rsp, "x-ratelimit-remaining") == 0) {
        long long iv = header_int(rsp, "x-ratelimit-interval-milliseconds");
        res->pause_ms = iv > 0 ? iv : 10000;
    }
}

/* The id member of obj, or of obj[wrap] when wrap is set. */
static const char *id_in(const json_t *b, const char *wrap)
{
    const json_t *o = wrap ? json_object_get(b, wrap) : b;
    const char *id = json_string_value(json_object_get(o, "id"));
    return id && *id ? id : NULL;
}

/* "<prefix><a>[<mid><b>]" with a and b escaped as path segments. */
static char *path_with(const char *prefix, const char *a, const char *mid,
                       const char *b)
{
    char *ea = prov_url_escape(a);
    char *eb = b ? prov_url_escape(b) : NULL;
    char *p = xasprintf("%s%s%s%s", prefix, ea, b ? mid : "", eb ? eb : "");
    free(ea);
    free(eb);
    return p;
}

/* Append "&name=value" (or "?..." first) with value escaped. */
static void query_add(struct buf *q, const char *name, const char *value)
{
    char *v = prov_url_escape(value);
    if (buf_addf(q, "%c%s=%s", q->len ? '&' : '?', name, v) < 0)
        CS_ASSERT(!"query too long");
    free(v);
}

static char *query_path(const char *path, struct buf *q)
{
    char *qs = buf_take(q, NULL);
    char *p = xasprintf("%s%s", path, qs ? qs : "");
    free(qs);
    return p;
}

/* ------------------------------------------------------------------ */
/* Scratch phases                                                     */
/* ------------------------------------------------------------------ */

static const char *phase_of(const struct prov_ctx *ctx)
{
    const char *p = json_string_value(json_object_get(ctx->scratch, "phase"));
    return p ? p : "";
}

static void set_phase(struct prov_ctx *ctx, const char *phase)
{
    json_object_set_new(ctx->scratch, "phase", json_string(phase));
}

static bool phase_is(const struct prov_ctx *ctx, const char *phase)
{
    return strcmp(phase_of(ctx), phase) == 0;
}

static void next_phase(struct prov_ctx *ctx, struct prov_result *res,
                       const char *phase)
{
    set_phase(ctx, phase);
    res->outcome = PROV_NEXT;
}

/* Once per step attempt (a scratch flag); false the second time. */
static bool first_time(struct prov_ctx *ctx, const char *flag)
{
    if (json_is_true(json_object_get(ctx->scratch, flag)))
        return false;
    json_object_set_new(ctx->scratch, flag, json_true());
    return true;
}

/* ------------------------------------------------------------------ */
/* Field mappings                                                     */
/* ------------------------------------------------------------------ */

enum fkind { F_STRING, F_BOOL, F_TAGS, F_NUMBER, F_STATUS };

struct field {
    const char *name;
    enum fkind kind;
};

/* UpsertContactDto / CreateContactDto properties a mapping may set. */
static const struct field contact_fields[] = {
    {"firstName", F_STRING},   {"lastName", F_STRING},
    {"name", F_STRING},        {"email", F_STRING},
    {"phone", F_STRING},       {"address1", F_STRING},
    {"city", F_STRING},        {"state", F_STRING},
    {"postalCode", F_STRING},  {"website", F_STRING},
    {"timezone", F_STRING},    {"source", F_STRING},
    {"country", F_STRING},     {"companyName", F_STRING},
    {"assignedTo", F_STRING},  {"gender", F_STRING},
    {"dateOfBirth", F_STRING}, {"dnd", F_BOOL},
    {"tags", F_TAGS},          {NULL, F_STRING},
};

/* CreateDto properties (opportunities) a mapping may set. */
static const struct field opportunity_fields[] = {
    {"name", F_STRING},        {"monetaryValue", F_NUMBER},
    {"status", F_STATUS},      {"assignedTo", F_STRING},
    {"pipelineStageId", F_STRING}, {NULL, F_STRING},
};

static const struct field *field_find(const struct field *t,
                                      const char *name)
{
    for (; t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static bool numeric_text(const char *s, double *out)
{
    char *end;
    if (!*s)
        return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

/* v converted for a field of the given kind (a new value), or NULL with
 * err filled. */
static json_t *convert(const char *what, const char *name, enum fkind kind,
                       const json_t *v, struct cs_err *err)
{
    double d;
    switch (kind) {
    case F_STRING:
        if (json_is_string(v))
            return json_incref((json_t *)v);
        if (json_is_integer(v))
            return json_sprintf("%lld", (long long)json_integer_value(v));
        if (json_is_real(v))
            return json_sprintf("%.15g", json_real_value(v));
        if (json_is_boolean(v))
            return json_string(json_is_true(v) ? "true" : "false");
        break;
    case F_BOOL:
        if (json_is_boolean(v))
            return json_incref((json_t *)v);
        if (json_is_string(v) && (strcmp(json_string_value(v), "true") == 0 ||
                                  strcmp(json_string_value(v), "false") == 0))
            return json_boolean(strcmp(json_string_value(v), "true") == 0);
        break;
    case F_NUMBER:
        if (json_is_number(v))
            return json_incref((json_t *)v);
        if (json_is_string(v) && numeric_text(json_string_value(v), &d))
            return json_real(d);
        break;
    case F_STATUS:
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            if (strcmp(s, "open") == 0 || strcmp(s, "won") == 0 ||
                strcmp(s, "lost") == 0 || strcmp(s, "abandoned") == 0)
                return json_incref((json_t *)v);
            cs_err_set(err, CS_EINVAL, name,
                       "mapping_error: %s '%s' must be open, won, lost or "
                       "abandoned, not '%.40s'", what, name, s);
            return NULL;
        }
        break;
    case F_TAGS:
        if (json_is_string(v))
            return json_pack("[O]", v);
        if (json_is_array(v)) {
            size_t i;
            const json_t *t;
            json_array_foreach(v, i, t) {
                if (!json_is_string(t))
                    break;
            }
            if (i == json_array_size(v))
                return json_incref((json_t *)v);
        }
        cs_err_set(err, CS_EINVAL, name,
                   "mapping_error: %s '%s' takes a string or a list of "
                   "strings", what, name);
        return NULL;
    }
    static const char *const kinds[] = {"text", "a boolean", "tags",
                                        "a number", "a status"};
    cs_err_set(err, CS_EINVAL, name,
               "mapping_error: %s '%s' takes %s, the mapping gives %s", what,
               name, kinds[kind],
               json_is_object(v)   ? "an object"
               : json_is_array(v)  ? "a list"
               : json_is_string(v) ? "text"
               : json_is_number(v) ? "a number"
                                   : "a boolean");
    return NULL;
}

/* A custom field's value: text, a number, or a list of strings
 * (checkbox and multi-select fields). */
static int custom_value(const char *id, const json_t *v, json_t *list,
                        struct cs_err *err)
{
    json_t *val = NULL;
    if (json_is_string(v) || json_is_number(v)) {
        val = json_incref((json_t *)v);
    } else if (json_is_boolean(v)) {
        val = json_string(json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *t;
        json_array_foreach(v, i, t) {
            if (!json_is_string(t))
                break;
        }
        if (i == json_array_size(v))
            val = json_incref((json_t *)v);
    }
    if (!val)
        return cs_err_set(err, CS_EINVAL, "customFields",
                          "mapping_error: custom field '%.40s' takes text, a "
                          "number or a list of strings, the mapping gives %s",
                          id, json_is_object(v) ? "an object" : "a list");
    json_array_append_new(list, json_pack("{s:s,s:o}", "id", id,
                                          "field_value", val));
    return 0;
}

/* Whether target (dotted) names a field of table or a custom field. */
static int check_target(const char *target, const char *what,
                        const struct field *table, struct cs_err *err)
{
    if (!target || !*target)
        return 0; /* map_apply names what is missing */
    size_t n = strcspn(target, ".");
    if ((n == 12 && strncmp(target, "customFields", 12) == 0) ||
        (n == 11 && strncmp(target, "customField", 11) == 0)) {
        const char *id = target + n;
        if (*id != '.' || !id[1] || strchr(id + 1, '.'))
            return cs_err_set(err, CS_EINVAL, "customFields",
                              "mapping_error: target '%.40s' needs one field "
                              "id: %.*s.<id>", target, (int)n, target);
        return 0;
    }
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)(n < 63 ? n : 63), target);
    if (target[n] || !field_find(table, name))
        return cs_err_set(err, CS_EINVAL, name,
                          "mapping_error: '%.40s' is not a GoHighLevel %s "
                          "field (use customFields.<id> for a custom one)",
                          target, what);
    return 0;
}

/* Check every target of the mappings (list or object form, mapping.h)
 * before any is applied, so a bad one fails even when its source is
 * missing from this call. */
static int check_targets(const json_t *maps, const char *what,
                         const struct field *table, struct cs_err *err)
{
    size_t i;
    const json_t *m;
    if (json_is_array(maps)) {
        json_array_foreach(maps, i, m) {
            const char *t = json_string_value(json_object_get(m, "target"));
            if (!t)
                t = json_string_value(json_object_get(m, "name"));
            if (check_target(t, what, table, err) < 0)
                return CS_EINVAL;
        }
    } else if (json_is_object(maps)) {
        const char *k;
        json_object_foreach((json_t *)maps, k, m) {
            const char *t = json_is_string(m) ? json_string_value(m) : k;
            if (check_target(t, what, table, err) < 0)
                return CS_EINVAL;
        }
    }
    return 0;
}

/*
 * Apply the mappings at config[key] over prov_data_root into *out: an
 * object of checked fields of table, plus "customFields" as the list
 * HighLevel takes. A target that is not a field (or customFields.<id>),
 * or a value of the wrong type, is a mapping_error naming it.
 */
static int apply_mappings(const struct prov_ctx *ctx, const char *key,
                          const char *what, const struct field *table,
                          json_t **out, struct cs_err *err)
{
    *out = NULL;
    const json_t *maps = json_object_get(ctx->config, key);
    if (!maps || json_is_null(maps)) {
        *out = json_object();
        return 0;
    }
    if (check_targets(maps, what, table, err) < 0)
        return CS_EINVAL;
    json_t *root = prov_data_root(ctx);
    json_t *raw = json_object();
    int rc = map_apply(maps, root, raw, err);
    json_decref(root);
    if (rc < 0) {
        json_decref(raw);
        return rc;
    }
    json_t *fields = json_object();
    json_t *custom = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(raw, k, v) {
        if (strcmp(k, "customFields") == 0 || strcmp(k, "customField") == 0) {
            if (!json_is_object(v)) {
                rc = cs_err_set(err, CS_EINVAL, k,
                                "mapping_error: target '%s' needs a field id: "
                                "%s.<id>", k, k);
                break;
            }
            const char *id;
            json_t *cv;
            json_object_foreach(v, id, cv) {
                if ((rc = custom_value(id, cv, custom, err)) < 0)
                    break;
            }
            if (rc < 0)
                break;
            continue;
        }
        const struct field *f = field_find(table, k);
        if (!f) {
            rc = cs_err_set(err, CS_EINVAL, k,
                            "mapping_error: '%.40s' is not a GoHighLevel %s "
                            "field (use customFields.<id> for a custom one)",
                            k, what);
            break;
        }
        if (json_is_null(v))
            continue;
        json_t *c = convert(what, k, f->kind, v, err);
        if (!c) {
            rc = CS_EINVAL;
            break;
        }
        json_object_set_new(fields, k, c);
    }
    json_decref(raw);
    if (rc < 0) {
        json_decref(fields);
        json_decref(custom);
        return rc;
    }
    if (json_array_size(custom))
        json_object_set_new(fields, "customFields", custom);
    else
        json_decref(custom);
    *out = fields;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Step 1: contact                                                    */
/* ------------------------------------------------------------------ */

/* The fields the call itself gives (identity fields). */
static json_t *call_fields(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    json_t *p = json_object();
    const char *first = str_at(c, "customer.first_name");
    const char *last = str_at(c, "customer.last_name");
    const char *name = str_at(c, "customer.name");
    if (!first && !last && name) {
        const char *sp = strchr(name, ' ');
        json_object_set_new(p, "firstName",
                            sp ? json_stringn(name, (size_t)(sp - name))
                               : json_string(name));
        while (sp && *sp == ' ')
            sp++;
        if (sp && *sp)
            json_object_set_new(p, "lastName", json_string(sp));
    } else {
        if (first)
            json_object_set_new(p, "firstName", json_string(first));
        if (last)
            json_object_set_new(p, "lastName", json_string(last));
    }
    static const struct {
        const char *field, *path;
    } keys[] = {
        {"email", "customer.email"},     {"phone", "customer.phone"},
        {"address1", "customer.address"}, {"city", "customer.city"},
        {"state", "customer.state"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        const char *v = str_at(c, keys[i].path);
        if (v)
            json_object_set_new(p, keys[i].field, json_string(v));
    }
    return p;
}

static int contact_mapped(const struct prov_ctx *ctx, json_t **out,
                          struct cs_err *err)
{
    return apply_mappings(ctx, "field_mappings", "contact", contact_fields,
                          out, err);
}

/* The create body: the call's fields, the mappings over them, the
 * location and the configured source. */
static json_t *create_body(const struct prov_ctx *ctx, const json_t *mapped,
                           const char *loc)
{
    json_t *b = call_fields(ctx);
    json_object_update(b, (json_t *)mapped);
    json_object_set_new(b, "locationId", json_string(loc));
    const char *src = str_at(ctx->config, "contact_source");
    if (src && !json_object_get(mapped, "source"))
        json_object_set_new(b, "source", json_string(src));
    return b;
}

static bool same_text(const char *k, const json_t *a, const json_t *b)
{
    const char *x = json_string_value(a), *y = json_string_value(b);
    if (!x || !y)
        return false;
    return strcmp(k, "email") == 0 ? strcasecmp(x, y) == 0
                                   : strcmp(x, y) == 0;
}

/* Whether the contact's customFields [{id, value}] hold entry's value. */
static bool custom_same(const json_t *have, const json_t *entry)
{
    const char *id = json_string_value(json_object_get(entry, "id"));
    const json_t *want = json_object_get(entry, "field_value");
    size_t i;
    const json_t *h;
    json_array_foreach(have, i, h) {
        const char *hid = json_string_value(json_object_get(h, "id"));
        if (id && hid && strcmp(id, hid) == 0)
            return json_equal(json_object_get(h, "value"), (json_t *)want);
    }
    return false;
}

/*
 * What to PUT on a contact found as `have`: the call's identity fields
 * only where the contact has none (a person may have corrected them),
 * every mapped field that differs, custom fields that differ, and mapped
 * tags merged into the contact's (a PUT replaces all tags). companyName
 * and gender are not in UpdateContactDto: they are set on create only.
 */
static json_t *update_body(const struct prov_ctx *ctx, const json_t *mapped,
                           const json_t *have)
{
    json_t *patch = json_object();
    json_t *mine = call_fields(ctx);
    const char *mk;
    json_t *mv;
    json_object_foreach(mine, mk, mv) {
        const char *cur = json_string_value(json_object_get(have, mk));
        if (!cur || !*cur)
            json_object_set(patch, mk, mv);
    }
    json_decref(mine);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)mapped, k, v) {
        const json_t *cur = json_object_get(have, k);
        if (strcmp(k, "companyName") == 0 || strcmp(k, "gender") == 0)
            continue;
        if (strcmp(k, "customFields") == 0) {
            json_t *missing = json_array();
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (!custom_same(json_object_get(have, "customFields"), e))
                    json_array_append(missing, e);
            }
            if (json_array_size(missing))
                json_object_set_new(patch, k, missing);
            else
                json_decref(missing);
        } else if (strcmp(k, "tags") == 0) {
            json_t *tags = json_is_array(cur) ? json_deep_copy(cur)
                                              : json_array();
            size_t before = json_array_size(tags), i, j;
            json_t *t, *u;
            json_array_foreach(v, i, t) {
                bool seen = false;
                json_array_foreach(tags, j, u) seen |= json_equal(t, u);
                if (!seen)
                    json_array_append(tags, t);
            }
            if (json_array_size(tags) > before)
                json_object_set_new(patch, k, tags);
            else
                json_decref(tags);
        } else if (!(cur && (json_equal((json_t *)cur, v) ||
                             same_text(k, cur, v)))) {
            json_object_set(patch, k, v);
        }
    }
    return patch;
}

static int contact_build(struct prov_ctx *ctx, struct prov_request *rq,
                         struct cs_err *err)
{
    const char *phone = str_at(ctx->call, "customer.phone");
    const char *email = str_at(ctx->call, "customer.email");
    char loc[128];
    if (!phone && !email)
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    if (need_location(ctx, loc, err) < 0)
        return CS_EINVAL;
    json_t *mapped = NULL;
    if (contact_mapped(ctx, &mapped, err) < 0)
        return CS_EINVAL;
    int rc;
    json_t *body = NULL;
    if (phase_is(ctx, "create")) {
        rc = begin(ctx, rq, "POST", "/contacts/", GHL_VERSION, err);
        body = create_body(ctx, mapped, loc);
    } else if (phase_is(ctx, "update") || phase_is(ctx, "fetch")) {
        const char *id = json_string_value(
            json_object_get(ctx->scratch, "contact_id"));
        CS_ASSERT(id != NULL);
        char *path = path_with("/contacts/", id, NULL, NULL);
        if (phase_is(ctx, "fetch")) {
            rc = begin(ctx, rq, "GET", path, GHL_VERSION, err);
        } else {
            rc = begin(ctx, rq, "PUT", path, GHL_VERSION, err);
            body = json_incref(json_object_get(ctx->scratch, "patch"));
        }
        free(path);
    } else {
        set_phase(ctx, "search");
        struct buf q;
        buf_init(&q, 4096);
        query_add(&q, "locationId", loc);
        if (phone)
            query_add(&q, "number", phone);
        if (email)
            query_add(&q, "email", email);
        char *path = query_path("/contacts/search/duplicate", &q);
        rc = begin(ctx, rq, "GET", path, GHL_VERSION, err);
        free(path);
    }
    if (rc == 0 && body)
        prov_request_json(rq, body);
    json_decref(body);
    json_decref(mapped);
    return rc;
}

/* Found (id and its fields): update what differs, or done. */
static void contact_found(struct prov_ctx *ctx, const char *id,
                          const json_t *have, struct prov_result *res)
{
    json_t *mapped = NULL;
    struct cs_err err;
    /* build succeeded with the same input, so this cannot fail. */
    if (contact_mapped(ctx, &mapped, &err) < 0)
        mapped = json_object();
    json_t *patch = update_body(ctx, mapped, have);
    json_decref(mapped);
    if (json_object_size(patch) == 0) {
        json_decref(patch);
        prov_done_id(res, "contact_id", id);
        return;
    }
    json_object_set_new(ctx->scratch, "contact_id", json_string(id));
    json_object_set_new(ctx->scratch, "patch", patch);
    next_phase(ctx, res, "update");
}

/* 400 "This location does not allow duplicated contacts." with
 * meta.contactId: the id, else NULL. */
static const char *duplicate_of(const json_t *b)
{
    const char *msg = json_string_value(json_object_get(b, "message"));
    const char *id = json_string_value(
        json_object_get(json_object_get(b, "meta"), "contactId"));
    if (!msg || !id || !*id || !strstr(msg, "duplicated contacts"))
        return NULL;
    return id;
}

static bool says_not_found(const struct prov_response *rsp)
{
    if (rsp->status == 404)
        return true;
    if (rsp->status != 400)
        return false;
    json_t *b = prov_response_json(rsp);
    const char *m = json_string_value(json_object_get(b, "message"));
    bool nf = m && strstr(m, "not found") != NULL;
    json_decref(b);
    return nf;
}

static void contact_parse(struct prov_ctx *ctx,
                          const struct prov_response *rsp,
                          struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    bool readable = is_2xx(rsp->status) || rsp->status == 400;
    json_t *b = readable ? prov_response_json(rsp) : NULL;
    if (phase_is(ctx, "search") && rsp->status == 200) {
        const json_t *c = json_object_get(b, "contact");
        if (!json_is_object(b) || (c && !json_is_null(c) && !id_in(c, NULL)))
            bad_body(rsp, res);
        else if (id_in(c, NULL))
            contact_found(ctx, id_in(c, NULL), c, res);
        else
            next_phase(ctx, res, "create");
    } else if (phase_is(ctx, "create") && is_2xx(rsp->status)) {
        if (id_in(b, "contact"))
            prov_done_id(res, "contact_id", id_in(b, "contact"));
        else
            bad_body(rsp, res);
    } else if (phase_is(ctx, "create") && rsp->status == 400 &&
               duplicate_of(b) && first_time(ctx, "duplicate")) {
        /* Created meanwhile, or matched on a field the search did not
         * weigh: HighLevel names it. Read it, then update it like a
         * contact the search found. */
        json_object_set_new(ctx->scratch, "contact_id",
                            json_string(duplicate_of(b)));
        next_phase(ctx, res, "fetch");
    } else if (phase_is(ctx, "fetch") && rsp->status == 200) {
        const json_t *c = json_object_get(b, "contact");
        if (id_in(c, NULL))
            contact_found(ctx, id_in(c, NULL), c, res);
        else
            bad_body(rsp, res);
    } else if (phase_is(ctx, "update") && is_2xx(rsp->status)) {
        const char *id = id_in(b, "contact");
        prov_done_id(res, "contact_id",
                     id ? id
                    : json_string_value(
                          json_object_get(ctx->scratch, "contact_id")));
    } else if (phase_is(ctx, "update") && says_not_found(rsp)) {
        /* Deleted or merged away between the search and the update: once
         * per attempt, create it afresh; a second time is permanent. */
        if (first_time(ctx, "vanished")) {
            json_object_del(ctx->scratch, "patch");
            json_object_del(ctx->scratch, "contact_id");
            next_phase(ctx, res, "create");
        } else {
            ghl_fail(ctx, rsp, res);
            prov_fail(res, PROV_PERMANENT, "contact_vanished",
                      "contact %s vanished twice during the update",
                      json_string_value(
                         json_object_get(ctx->scratch, "contact_id")));
        }
    } else {
        ghl_fail(ctx, rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Text                                                               */
/* ------------------------------------------------------------------ */

static void put(struct buf *b, const char *s, size_t n)
{
    /* Every section is capped below the buffer's cap; a failure here
     * would only drop text. */
    if (buf_add(b, s, n) < 0)
        return;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* The length of s cut to at most max bytes on a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* "Label: value\n", value cut to max bytes (then " [...]"). */
static void put_line(struct buf *b, const char *label, const char *value,
                     size_t max)
{
    if (!value)
        return;
    puts_(b, label);
    puts_(b, ": ");
    size_t n = utf8_cut(value, max);
    put(b, value, n);
    if (value[n])
        puts_(b, " [\xe2\x80\xa6]");
    puts_(b, "\n");
}

/* The job marker on a line of its own, so a search for it finds the
 * object however its text is shown. */
static void put_marker(struct buf *b, const struct prov_ctx *ctx)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    puts_(b, "\nSync reference: ");
    puts_(b, marker);
}

static bool has_marker(const struct prov_ctx *ctx, const char *text)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    return text && strstr(text, marker) != NULL;
}

static char *note_text(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, GHL_NOTE_MAX);
    put_line(&b, "Call outcome", str_at(c, "outcome"), GHL_SHORT_MAX);
    put_line(&b, "Direction", str_at(c, "direction"), GHL_SHORT_MAX);
    put_line(&b, "Summary", str_at(c, "summary"), GHL_SUMMARY_MAX);
    put_line(&b, "Sentiment", str_at(c, "sentiment"), GHL_SHORT_MAX);
    const json_t *d = at_path(c, "duration_s");
    if (json_is_number(d)) {
        long long s = (long long)json_number_value(d);
        char dur[64];
        if (s >= 60)
            snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
        else
            snprintf(dur, sizeof(dur), "%llds", s);
        put_line(&b, "Duration", dur, GHL_SHORT_MAX);
    }
    const char *rec = str_at(c, "recording_url");
    if (rec && strlen(rec) < GHL_URL_MAX)
        put_line(&b, "Recording", rec, GHL_URL_MAX);
    const char *tr = str_at(c, "transcript");
    if (tr) {
        size_t n = utf8_cut(tr, GHL_TRANSCRIPT_MAX);
        puts_(&b, "Transcript (excerpt):\n");
        put(&b, tr, n);
        if (tr[n])
            puts_(&b, " [\xe2\x80\xa6]");
        puts_(&b, "\n");
    }
    put_marker(&b, ctx);
    return buf_take(&b, NULL);
}

/* ------------------------------------------------------------------ */
/* Step 2: note                                                       */
/* ------------------------------------------------------------------ */

static int need_contact(const struct prov_ctx *ctx, struct cs_err *err)
{
    if (!contact_id_done(ctx))
        return cs_err_set(err, CS_EINVAL, "contact",
                          "no_contact: the contact step has no contact_id");
    return 0;
}

static int note_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    if (need_contact(ctx, err) < 0)
        return CS_EINVAL;
    char *path = path_with("/contacts/", contact_id_done(ctx), "/notes", "");
    int rc;
    if (ctx->reconcile && !phase_is(ctx, "create")) {
        /* Did the attempt before write it? List the contact's notes. */
        set_phase(ctx, "search");
        rc = begin(ctx, rq, "GET", path, GHL_VERSION, err);
    } else {
        set_phase(ctx, "create");
        rc = begin(ctx, rq, "POST", path, GHL_VERSION, err);
        if (rc == 0) {
            char *text = note_text(ctx);
            json_t *body = json_pack("{s:s}", "body", text ? text : "");
            free(text);
            char user[128];
            if (config_id(ctx->config, "user_id", user, sizeof(user)))
                json_object_set_new(body, "userId", json_string(user));
            prov_request_json(rq, body);
            json_decref(body);
        }
    }
    free(path);
    return rc;
}

static void note_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        ghl_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "search")) {
        const json_t *notes = json_object_get(b, "notes");
        const json_t *hit = NULL;
        size_t i;
        const json_t *n;
        json_array_foreach(notes, i, n) {
            if (!hit && id_in(n, NULL) &&
                has_marker(ctx, json_string_value(json_object_get(n, "body"))))
                hit = n;
        }
        if (!json_is_array(notes))
            bad_body(rsp, res);
        else if (hit)
            prov_done_id(res, "note_id", id_in(hit, NULL));
        else
            next_phase(ctx, res, "create");
    } else if (id_in(b, "note")) {
        prov_done_id(res, "note_id", id_in(b, "note"));
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 3: appointment                                                */
/* ------------------------------------------------------------------ */

static bool appointment_applies(const struct prov_ctx *ctx)
{
    char cal[128];
    return when_has_appointment(ctx->call) &&
           config_id(ctx->config, "calendar_id", cal, sizeof(cal));
}

static char *appointment_title(const struct prov_ctx *ctx)
{
    const char *title = str_at(ctx->call, "appointment.title");
    if (title)
        return xstrdup(title);
    const char *service = str_at(ctx->call, "appointment.service_type");
    const char *name = str_at(ctx->call, "customer.name");
    return xasprintf("%s%s%s", service ? service : "Appointment",
                     name ? " - " : "", name ? name : "");
}

static json_t *appointment_body(const struct prov_ctx *ctx,
                                const struct when_appt *a, const char *cal,
                                const char *loc, struct cs_err *err)
{
    char s[40], e[40];
    if (!when_local_rfc3339(a->tz, a->start_ms, s) ||
        !when_local_rfc3339(a->tz, a->end_ms, e)) {
        cs_err_set(err, CS_EINVAL, "call.appointment.timezone",
                   "mapping_error: unknown time zone '%.64s'", a->tz);
        return NULL;
    }
    const char *status = str_at(ctx->config, "appointment_status");
    if (!status)
        status = "confirmed";
    static const char *const statuses[] = {"new", "confirmed", "cancelled",
                                           "showed", "noshow", "invalid"};
    bool ok = false;
    for (size_t i = 0; i < CS_ARRAY_LEN(statuses); i++)
        ok |= strcmp(status, statuses[i]) == 0;
    if (!ok) {
        cs_err_set(err, CS_EINVAL, "config.appointment_status",
                   "config_error: appointment_status '%.40s' is not new, "
                   "confirmed, cancelled, showed, noshow or invalid",
                   status);
        return NULL;
    }
    struct buf b;
    buf_init(&b, GHL_NOTE_MAX);
    put_line(&b, "Service", str_at(ctx->call, "appointment.service_type"),
             GHL_SHORT_MAX);
    put_line(&b, "Time zone", a->tz, GHL_SHORT_MAX);
    put_line(&b, "Call summary", str_at(ctx->call, "summary"),
             GHL_SUMMARY_MAX);
    put_marker(&b, ctx);
    char *desc = buf_take(&b, NULL);
    char *title = appointment_title(ctx);
    json_t *body = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "calendarId", cal,
        "locationId", loc, "contactId", contact_id_done(ctx), "startTime", s,
        "endTime", e, "title", title, "appointmentStatus", status,
        "description", desc ? desc : "", "ignoreFreeSlotValidation",
        config_bool(ctx->config, "appointment_ignore_free_slots", true));
    free(title);
    free(desc);
    char user[128];
    if (config_id(ctx->config, "assigned_user_id", user, sizeof(user)))
        json_object_set_new(body, "assignedUserId", json_string(user));
    return body;
}

static int appointment_build(struct prov_ctx *ctx, struct prov_request *rq,
                             struct cs_err *err)
{
    char cal[128], loc[128];
    struct when_appt a;
    if (need_contact(ctx, err) < 0 || need_location(ctx, loc, err) < 0 ||
        when_appointment(ctx->call, ctx->config, &a, err) < 0)
        return CS_EINVAL;
    if (!config_id(ctx->config, "calendar_id", cal, sizeof(cal)))
        return cs_err_set(err, CS_EINVAL, "config.calendar_id",
                          "config_error: calendar_id is not set");
    if (phase_is(ctx, "create")) {
        json_t *body = appointment_body(ctx, &a, cal, loc, err);
        if (!body)
            return CS_EINVAL;
        int rc = begin(ctx, rq, "POST", "/calendars/events/appointments",
                       GHL_CAL_VERSION, err);
        if (rc == 0)
            prov_request_json(rq, body);
        json_decref(body);
        return rc;
    }
    /* Before every create, not only after a crash: the agent may have
     * booked the slot in HighLevel during the call. */
    set_phase(ctx, "search");
    char st[24], en[24];
    snprintf(st, sizeof(st), "%lld", (long long)a.start_ms);
    snprintf(en, sizeof(en), "%lld", (long long)a.end_ms);
    struct buf q;
    buf_init(&q, 4096);
    query_add(&q, "locationId", loc);
    query_add(&q, "calendarId", cal);
    query_add(&q, "startTime", st);
    query_add(&q, "endTime", en);
    char *path = query_path("/calendars/events", &q);
    int rc = begin(ctx, rq, "GET", path, GHL_CAL_VERSION, err);
    free(path);
    return rc;
}

/* An event of our contact that we wrote (the marker) or that starts when
 * ours would. */
static bool event_is_ours(const struct prov_ctx *ctx, const json_t *ev,
                          int64_t start_ms)
{
    const char *contact = json_string_value(json_object_get(ev, "contactId"));
    if (!contact || strcmp(contact, contact_id_done(ctx)) != 0 ||
        !id_in(ev, NULL))
        return false;
    if (has_marker(ctx, json_string_value(json_object_get(ev, "title"))) ||
        has_marker(ctx,
                   json_string_value(json_object_get(ev, "description"))) ||
        has_marker(ctx, json_string_value(json_object_get(ev, "notes"))))
        return true;
    int64_t at;
    return cs_parse_rfc3339(json_string_value(json_object_get(ev, "startTime")),
                            &at) &&
           at == start_ms;
}

static void appointment_parse(struct prov_ctx *ctx,
                              const struct prov_response *rsp,
                              struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        ghl_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "search")) {
        struct when_appt a;
        struct cs_err err;
        const json_t *events = json_object_get(b, "events");
        const json_t *hit = NULL;
        size_t i;
        const json_t *ev;
        if (when_appointment(ctx->call, ctx->config, &a, &err) == 0)
            json_array_foreach(events, i, ev) {
                if (!hit && event_is_ours(ctx, ev, a.start_ms))
                    hit = ev;
            }
        if (!json_is_array(events))
            bad_body(rsp, res);
        else if (hit)
            prov_done_id(res, "appointment_id", id_in(hit, NULL));
        else
            next_phase(ctx, res, "create");
    } else if (id_in(b, NULL)) {
        prov_done_id(res, "appointment_id", id_in(b, NULL));
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 4: opportunity                                                */
/* ------------------------------------------------------------------ */

static bool opportunity_applies(const struct prov_ctx *ctx)
{
    char id[128];
    return config_id(ctx->config, "pipeline_id", id, sizeof(id));
}

static char *opportunity_name(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *tpl = json_object_get(ctx->config,
                                        "opportunity_name_template");
    if (json_is_string(tpl)) {
        json_t *root = prov_data_root(ctx);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "%s",
                     "config.opportunity_name_template");
            return NULL;
        }
        char *s = json_is_string(v) && json_string_length(v)
                      ? xstrdup(json_string_value(v))
                      : NULL;
        json_decref(v);
        if (s)
            return s;
    }
    const char *who = str_at(ctx->call, "customer.name");
    if (!who)
        who = str_at(ctx->call, "customer.phone");
    if (!who)
        who = str_at(ctx->call, "customer.email");
    const char *what = str_at(ctx->call, "outcome");
    return xasprintf("%s \xe2\x80\x93 %s", who ? who : "Unknown caller",
                     what ? what : "call");
}

static json_t *opportunity_body(const struct prov_ctx *ctx, const char *loc,
                                const char *pipeline, struct cs_err *err)
{
    json_t *mapped = NULL;
    if (apply_mappings(ctx, "opportunity_field_mappings", "opportunity",
                       opportunity_fields, &mapped, err) < 0)
        return NULL;
    char *name = opportunity_name(ctx, err);
    if (!name) {
        json_decref(mapped);
        return NULL;
    }
    const char *status = str_at(ctx->config, "opportunity_status");
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s}", "pipelineId", pipeline,
                             "locationId", loc, "name", name, "status",
                             status ? status : "open", "contactId",
                             contact_id_done(ctx));
    free(name);
    char v[128];
    if (config_id(ctx->config, "pipeline_stage_id", v, sizeof(v)) ||
        config_id(ctx->config, "stage_id", v, sizeof(v)))
        json_object_set_new(body, "pipelineStageId", json_string(v));
    if (config_id(ctx->config, "assigned_to", v, sizeof(v)))
        json_object_set_new(body, "assignedTo", json_string(v));
    const json_t *amount = json_object_get(ctx->config, "opportunity_value");
    if (json_is_number(amount))
        json_object_set(body, "monetaryValue", (json_t *)amount);
    json_object_update(body, mapped);
    json_decref(mapped);
    /* The status, configured or mapped, must be one HighLevel takes. */
    struct cs_err e2;
    json_t *st = convert("opportunity", "status", F_STATUS,
                         json_object_get(body, "status"), &e2);
    if (!st) {
        *err = e2;
        snprintf(err->field, sizeof(err->field), "%s",
                 "config.opportunity_status");
        json_decref(body);
        return NULL;
    }
    json_decref(st);
    return body;
}

static int opportunity_build(struct prov_ctx *ctx, struct prov_request *rq,
                             struct cs_err *err)
{
    char loc[128], pipeline[128];
    if (need_contact(ctx, err) < 0 || need_location(ctx, loc, err) < 0)
        return CS_EINVAL;
    if (!config_id(ctx->config, "pipeline_id", pipeline, sizeof(pipeline)))
        return cs_err_set(err, CS_EINVAL, "config.pipeline_id",
                          "config_error: pipeline_id is not set");
    /* Check the body before anything is sent: a mapping that cannot
     * apply fails the step at once, not after the search. */
    json_t *body = opportunity_body(ctx, loc, pipeline, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (phase_is(ctx, "create")) {
        rc = begin(ctx, rq, "POST", "/opportunities/", GHL_VERSION, err);
        if (rc == 0)
            prov_request_json(rq, body);
    } else {
        /* HighLevel keeps one opportunity per contact and pipeline unless
         * the location allows duplicates: look for it first, always. */
        set_phase(ctx, "search");
        struct buf q;
        buf_init(&q, 4096);
        query_add(&q, "location_id", loc);
        query_add(&q, "pipeline_id", pipeline);
        query_add(&q, "contact_id", contact_id_done(ctx));
        query_add(&q, "status", "all");
        query_add(&q, "limit", "20");
        char *path = query_path("/opportunities/search", &q);
        rc = begin(ctx, rq, "GET", path, GHL_VERSION, err);
        free(path);
    }
    json_decref(body);
    return rc;
}

/* 400 "Can not create duplicate opportunity for the contact." */
static bool says_duplicate(const json_t *b)
{
    const char *m = json_string_value(json_object_get(b, "message"));
    return m && strcasestr(m, "duplicate opportunity") != NULL;
}

static void opportunity_parse(struct prov_ctx *ctx,
                              const struct prov_response *rsp,
                              struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    bool readable = is_2xx(rsp->status) || rsp->status == 400;
    json_t *b = readable ? prov_response_json(rsp) : NULL;
    char pipeline[128];
    if (!config_id(ctx->config, "pipeline_id", pipeline, sizeof(pipeline)))
        pipeline[0] = '\0';
    if (phase_is(ctx, "search") && is_2xx(rsp->status)) {
        const json_t *list = json_object_get(b, "opportunities");
        const json_t *hit = NULL;
        size_t i;
        const json_t *o;
        json_array_foreach(list, i, o) {
            const char *c = json_string_value(json_object_get(o, "contactId"));
            const char *p = json_string_value(json_object_get(o, "pipelineId"));
            if (!hit && id_in(o, NULL) && c &&
                strcmp(c, contact_id_done(ctx)) == 0 && p &&
                strcmp(p, pipeline) == 0)
                hit = o;
        }
        if (!json_is_array(list))
            bad_body(rsp, res);
        else if (hit)
            prov_done_id(res, "opportunity_id", id_in(hit, NULL));
        else
            next_phase(ctx, res, "create");
    } else if (phase_is(ctx, "create") && is_2xx(rsp->status)) {
        if (id_in(b, "opportunity"))
            prov_done_id(res, "opportunity_id", id_in(b, "opportunity"));
        else
            bad_body(rsp, res);
    } else if (phase_is(ctx, "create") && rsp->status == 400 &&
               says_duplicate(b) && first_time(ctx, "raced")) {
        /* Created meanwhile by another job of this contact: find it. */
        next_phase(ctx, res, "search");
    } else {
        ghl_fail(ctx, rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 5: workflow                                                   */
/* ------------------------------------------------------------------ */

static bool workflow_applies(const struct prov_ctx *ctx)
{
    char id[128];
    return config_id(ctx->config, "workflow_id", id, sizeof(id));
}

static int workflow_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    char id[128];
    if (need_contact(ctx, err) < 0)
        return CS_EINVAL;
    if (!config_id(ctx->config, "workflow_id", id, sizeof(id)))
        return cs_err_set(err, CS_EINVAL, "config.workflow_id",
                          "config_error: workflow_id is not set");
    char *path = path_with("/contacts/", contact_id_done(ctx),
                           "/workflow/", id);
    int rc = begin(ctx, rq, "POST", path, GHL_VERSION, err);
    free(path);
    if (rc == 0) {
        json_t *body = json_object();
        prov_request_json(rq, body);
        json_decref(body);
    }
    return rc;
}

static void workflow_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        ghl_fail(ctx, rsp, res);
        return;
    }
    char id[128];
    if (!config_id(ctx->config, "workflow_id", id, sizeof(id)))
        id[0] = '\0';
    prov_done_id(res, "workflow_id", id);
}

/* ------------------------------------------------------------------ */

/* ---- Probe: callsyncctl connections test -------------------------- */

/* GET /locations/{locationId} (scope locations.readonly): the token is
 * valid and opens the configured sub-account. Nothing is written. */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    char loc[128];
    if (!config_id(ctx->config, "location_id", loc, sizeof(loc)))
        return cs_err_set(err, CS_EINVAL, "config.location_id",
                          "config_error: location_id is not set");
    char *esc = prov_url_escape(loc);
    char *path = xasprintf("/locations/%s", esc);
    int rc = begin(ctx, rq, "GET", path, GHL_VERSION, err);
    free(path);
    free(esc);
    return rc;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (!is_2xx(rsp->status)) {
        ghl_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    json_t *loc = json_object_get(b, "location");
    const char *id = json_string_value(json_object_get(loc, "id"));
    if (!id) {
        prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                  "the location answer has no location.id");
        json_decref(b);
        return;
    }
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = json_pack("{s:s,s:s?,s:s?}", "location_id", id, "name",
                           json_string_value(json_object_get(loc, "name")),
                           "time_zone",
                           json_string_value(json_object_get(loc,
                                                             "timezone")));
    json_decref(b);
}

static const struct prov_step ghl_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step ghl_steps[] = {
    {"contact", PROV_RECONCILE_LOOKUP, NULL, contact_build, contact_parse},
    {"note", PROV_RECONCILE_LOOKUP, NULL, note_build, note_parse},
    {"appointment", PROV_RECONCILE_LOOKUP, appointment_applies,
     appointment_build, appointment_parse},
    {"opportunity", PROV_RECONCILE_LOOKUP, opportunity_applies,
     opportunity_build, opportunity_parse},
    {"workflow", PROV_RECONCILE_NONE, workflow_applies, workflow_build,
     workflow_parse},
};

/* Burst 100 requests per 10 s per app and location (the daily 200,000 is
 * left to the 429s and X-RateLimit-Daily-Remaining). */
const struct prov_ops prov_gohighlevel = {
    .name = "gohighlevel",
    .steps = ghl_steps,
    .nsteps = CS_ARRAY_LEN(ghl_steps),
    .rate = {100, 10000},
    .rate_scope = "location_id",
    .probe = &ghl_probe,
};
