/*
 * salesforce_api.c - the Salesforce REST API around the provider's steps
 * (salesforce.c): request URLs under /services/data/vXX.X on the
 * instance URL with the bearer token, SOQL string literals with SOQL's
 * escape sequences, the error array {message, errorCode, fields} and its
 * classification, Sforce-Limit-Info, field mappings onto API names, and
 * the helpers for the texts written. See salesforce_internal.h.
 */
#define _GNU_SOURCE /* strcasestr */
#include "salesforce_internal.h"
#include "mapping.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

const char *sf__str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
    return s && *s ? s : NULL;
}

const char *sf__cfg_str(const struct prov_ctx *ctx, const char *key)
{
    const char *s = json_string_value(json_object_get(ctx->config, key));
    return s && *s ? s : NULL;
}

bool sf__cfg_bool(const struct prov_ctx *ctx, const char *key, bool dflt)
{
    const json_t *v = json_object_get(ctx->config, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

bool sf__is_2xx(int status)
{
    return status >= 200 && status < 300;
}

json_t *sf__body_json(const struct prov_response *rsp)
{
    if (!rsp->body || rsp->body_len == 0)
        return NULL;
    return json_loadb(rsp->body, rsp->body_len, JSON_DECODE_ANY, NULL);
}

/* A 2xx we cannot read: the write may have happened, so the step is
 * retried and the retry looks it up. */
void sf__bad_body(const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    prov_fail(res, PROV_RETRY, "bad_response",
              "HTTP %d with an unreadable body", rsp->status);
}

/* The length of s cut to at most max bytes on a UTF-8 boundary. */
size_t sf__utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

char *sf__cut_dup(const char *s, size_t max)
{
    return xstrndup(s, sf__utf8_cut(s, max));
}

void sf__put(struct buf *b, const char *s, size_t n)
{
    /* Every section is capped below the buffer's cap; a failure here
     * would only drop text. */
    if (buf_add(b, s, n) < 0)
        return;
}

void sf__puts(struct buf *b, const char *s)
{
    sf__put(b, s, strlen(s));
}

/* "Label: value\n", value cut to max bytes (then " [...]"). */
void sf__put_line(struct buf *b, const char *label, const char *value,
                  size_t max)
{
    if (!value)
        return;
    sf__puts(b, label);
    sf__puts(b, ": ");
    size_t n = sf__utf8_cut(value, max);
    sf__put(b, value, n);
    if (value[n])
        sf__puts(b, " [\xe2\x80\xa6]");
    sf__puts(b, "\n");
}

void sf__put_marker(struct buf *b, const struct prov_ctx *ctx)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    sf__puts(b, "\nSync reference: ");
    sf__puts(b, marker);
}

bool sf__has_marker(const struct prov_ctx *ctx, const char *text)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    return text && strstr(text, marker) != NULL;
}

/* Salesforce writes offsets without a colon ("+0000"); RFC 3339 wants
 * one. */
bool sf__parse_time(const char *s, int64_t *ms)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n >= 5 && (s[n - 5] == '+' || s[n - 5] == '-') &&
        isdigit((unsigned char)s[n - 1]) && isdigit((unsigned char)s[n - 4])) {
        char t[64];
        if (n + 1 >= sizeof(t))
            return false;
        snprintf(t, sizeof(t), "%.*s:%s", (int)(n - 2), s, s + n - 2);
        return cs_parse_rfc3339(t, ms);
    }
    return cs_parse_rfc3339(s, ms);
}

/* The API version as "NN.N" into out[8]; its major number into *major. */
int sf__api_version(const struct prov_ctx *ctx, char out[8], int *major,
                    struct cs_err *err)
{
    const json_t *v = json_object_get(ctx->config, "api_version");
    char tmp[32];
    if (!v || json_is_null(v))
        snprintf(tmp, sizeof(tmp), "%s", SF_API_VERSION);
    else if (json_is_string(v))
        snprintf(tmp, sizeof(tmp), "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(tmp, sizeof(tmp), "%lld.0", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(tmp, sizeof(tmp), "%.1f", json_real_value(v));
    else
        tmp[0] = '\0';
    const char *p = tmp[0] == 'v' || tmp[0] == 'V' ? tmp + 1 : tmp;
    if (!(isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
          p[2] == '.' && isdigit((unsigned char)p[3]) && !p[4]))
        return cs_err_set(err, CS_EINVAL, "config.api_version",
                          "config_error: api_version must look like "
                          "\"66.0\"");
    *major = (p[0] - '0') * 10 + (p[1] - '0');
    if (*major < 31)
        return cs_err_set(err, CS_EINVAL, "config.api_version",
                          "config_error: api_version %s is retired", p);
    memcpy(out, p, 5);
    out[5] = '\0';
    return 0;
}
/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

/* Start a request to <instance>/services/data/v<version><path>. */
int sf__begin(const struct prov_ctx *ctx, struct prov_request *rq,
              const char *method, const char *path, struct cs_err *err)
{
    const char *token = ctx->creds ? ctx->creds->access_token : NULL;
    if (!token || !*token)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no access "
                          "token");
    const char *base =
        ctx->base_url && *ctx->base_url
            ? ctx->base_url
            : (ctx->creds->instance_url && *ctx->creds->instance_url
                   ? ctx->creds->instance_url
                   : NULL);
    if (!base)
        return cs_err_set(err, CS_EINVAL, "instance_url",
                          "no_instance_url: the connection has no instance "
                          "URL (reconnect Salesforce)");
    if (strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0)
        return cs_err_set(err, CS_EINVAL, "instance_url",
                          "config_error: the instance URL is not an http(s) "
                          "URL");
    char ver[8];
    int major;
    if (sf__api_version(ctx, ver, &major, err) < 0)
        return CS_EINVAL;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = method;
    rq->url = xasprintf("%.*s/services/data/v%s%s", (int)bl, base, ver, path);
    char *auth = xasprintf("Bearer %s", token);
    prov_request_header(rq, "Authorization", auth);
    free(auth);
    prov_request_header(rq, "Accept", "application/json");
    return 0;
}

/* Append s as a SOQL string literal (quoted, escaped). */
void sf__soql_quote(struct buf *b, const char *s)
{
    sf__puts(b, "'");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        switch (*p) {
        case '\\': sf__puts(b, "\\\\"); break;
        case '\'': sf__puts(b, "\\'"); break;
        case '"': sf__puts(b, "\\\""); break;
        case '\n': sf__puts(b, "\\n"); break;
        case '\r': sf__puts(b, "\\r"); break;
        case '\t': sf__puts(b, "\\t"); break;
        case '\b': sf__puts(b, "\\b"); break;
        case '\f': sf__puts(b, "\\f"); break;
        default:
            if (*p < 0x20) {
                snprintf(e, sizeof(e), "\\u%04x", *p);
                sf__puts(b, e);
            } else {
                sf__put(b, (const char *)p, 1);
            }
        }
    }
    sf__puts(b, "'");
}

/* A GET of /query with the SOQL in b (consumed). */
int sf__begin_query(const struct prov_ctx *ctx, struct prov_request *rq,
                    struct buf *b, struct cs_err *err)
{
    char *soql = buf_take(b, NULL);
    char *q = prov_url_escape(soql ? soql : "");
    char *path = xasprintf("/query?q=%s", q);
    int rc = sf__begin(ctx, rq, "GET", path, err);
    free(path);
    free(q);
    free(soql);
    return rc;
}

void sf__set_done(struct prov_result *res, json_t *value)
{
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = value;
}

/* ------------------------------------------------------------------ */
/* Answers: limits and errors                                         */
/* ------------------------------------------------------------------ */

/*
 * Sforce-Limit-Info: "api-usage=25/5000; per-app-api-usage=17/250(appName=
 * x)". True when api-usage or per-app-api-usage has reached the share of
 * its limit that config.api_usage_limit_pct allows (100 %: all of it).
 * Other items are not limits we know the meaning of and are ignored.
 */
static bool limit_spent(const struct prov_ctx *ctx,
                        const struct prov_response *rsp)
{
    const char *h = prov_response_header(rsp, "sforce-limit-info");
    if (!h)
        return false;
    long long pct = 100;
    const json_t *p = json_object_get(ctx->config, "api_usage_limit_pct");
    if (json_is_integer(p) && json_integer_value(p) >= 1 &&
        json_integer_value(p) <= 100)
        pct = json_integer_value(p);
    while (*h) {
        while (*h == ' ' || *h == ';')
            h++;
        size_t n = strcspn(h, "=;");
        bool known = (n == 9 && strncmp(h, "api-usage", 9) == 0) ||
                     (n == 17 && strncmp(h, "per-app-api-usage", 17) == 0);
        h += n;
        if (*h != '=')
            continue;
        h++;
        char *end;
        long long used = strtoll(h, &end, 10);
        long long limit = -1;
        if (end != h && *end == '/') {
            const char *q = end + 1;
            limit = strtoll(q, &end, 10);
            if (end == q)
                limit = -1;
        }
        if (known && limit > 0 && used >= 0 && used * 100 >= limit * pct)
            return true;
        h += strcspn(h, ";");
    }
    return false;
}

static void note_budget(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (sf__is_2xx(rsp->status) && limit_spent(ctx, rsp))
        res->pause_ms = SF_LIMIT_PAUSE_MS;
}

/* The first error of an error array with this code, or NULL. */
const json_t *sf__error_with(const json_t *b, const char *code)
{
    size_t i;
    const json_t *e;
    json_array_foreach(b, i, e) {
        const char *c = json_string_value(json_object_get(e, "errorCode"));
        if (c && strcmp(c, code) == 0)
            return e;
    }
    return NULL;
}

/* Every error's message (and fields) joined with "; " into out. */
static void error_messages(const json_t *b, char *out, size_t n)
{
    struct buf m;
    buf_init(&m, n - 1);
    size_t i;
    const json_t *e;
    json_array_foreach(b, i, e) {
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (!msg)
            continue;
        /* MALFORMED_QUERY messages start with the query and a caret line:
         * keep what follows the last line break that is not the end. */
        const char *last = msg;
        for (const char *p = msg; *p; p++)
            if (*p == '\n' && p[1])
                last = p + 1;
        if (m.len)
            sf__puts(&m, "; ");
        sf__puts(&m, last);
        const json_t *fields = json_object_get(e, "fields");
        if (json_array_size(fields)) {
            sf__puts(&m, " (fields:");
            size_t j;
            const json_t *f;
            json_array_foreach(fields, j, f) {
                if (json_is_string(f)) {
                    sf__puts(&m, " ");
                    sf__puts(&m, json_string_value(f));
                }
            }
            sf__puts(&m, ")");
        }
    }
    char *t = buf_take(&m, NULL);
    if (t)
        snprintf(out, n, "%s", t);
    free(t);
}

/*
 * Classify a failed answer: the shared rules (prov_classify), refined by
 * Salesforce's error array. 403 REQUEST_LIMIT_EXCEEDED is a rate limit:
 * "TotalRequests Limit exceeded." (the daily allocation) pauses the key
 * for SF_LIMIT_PAUSE_MS, the concurrent-request limit for a few seconds;
 * API access switched off for the org or the user parks the connection
 * (its owner must act); UNABLE_TO_LOCK_ROW (a record lock another
 * transaction holds) is retried; 300 (an external id on several records)
 * is permanent.
 */
void sf__fail(const struct prov_response *rsp, struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = sf__body_json(rsp);
    const char *first = NULL;
    if (json_is_array(b)) {
        first = json_string_value(
            json_object_get(json_array_get(b, 0), "errorCode"));
        error_messages(b, res->message, sizeof(res->message));
    } else if (json_is_object(b)) {
        /* Not the REST shape (a gateway, an OAuth error): keep what it
         * says. */
        const char *m = json_string_value(json_object_get(b, "message"));
        if (!m)
            m = json_string_value(json_object_get(b, "error_description"));
        if (m)
            snprintf(res->message, sizeof(res->message), "%s", m);
    }
    if (first)
        snprintf(res->code, sizeof(res->code), "%s", first);
    if (rsp->status == 300 && !res->message[0])
        snprintf(res->message, sizeof(res->message),
                 "the external id matches several records");
    prov_classify(rsp, res);
    if (rsp->status == 403 && sf__error_with(b, "REQUEST_LIMIT_EXCEEDED")) {
        const char *m = json_string_value(json_object_get(
            sf__error_with(b, "REQUEST_LIMIT_EXCEEDED"), "message"));
        res->outcome = PROV_RATE_LIMITED;
        if (res->retry_after_ms < 0)
            res->retry_after_ms = m && strcasestr(m, "concurrent")
                                      ? SF_CONCURRENCY_PAUSE_MS
                                      : SF_LIMIT_PAUSE_MS;
    } else if (rsp->status == 429 && res->retry_after_ms < 0) {
        res->retry_after_ms = SF_429_PAUSE_MS;
    } else if (sf__error_with(b, "API_DISABLED_FOR_ORG") ||
               sf__error_with(b, "API_CURRENTLY_DISABLED") ||
               sf__error_with(b, "INVALID_OPERATION_WITH_EXPIRED_PASSWORD")) {
        res->outcome = PROV_AUTH;
    } else if (sf__error_with(b, "UNABLE_TO_LOCK_ROW")) {
        res->outcome = PROV_RETRY;
    }
    json_decref(b);
}

/* Start the parse of an answer: status, budget, and no retry hint. */
void sf__parse_begin(const struct prov_ctx *ctx,
                     const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
}

/* The records of a query answer, or NULL when it is not one. */
const json_t *sf__records_of(const json_t *b)
{
    const json_t *r = json_object_get(b, "records");
    return json_is_array(r) ? r : NULL;
}

const char *sf__id_of(const json_t *o, const char *key)
{
    const char *id = json_string_value(json_object_get(o, key));
    return id && *id ? id : NULL;
}

/* ------------------------------------------------------------------ */
/* Field mappings                                                     */
/* ------------------------------------------------------------------ */

/* Fields Salesforce sets itself: a mapping may not write them. */
static const char *const system_fields[] = {
    "Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
    "LastModifiedById", "SystemModstamp", "IsConverted", "ConvertedContactId",
    "ConvertedAccountId", "ConvertedOpportunityId", "ConvertedDate",
    "MasterRecordId", "LastActivityDate", "IsClosed",
};

/* Whether name is a field API name: a letter, then letters, digits and
 * single underscores (a custom field ends in "__c", a namespace adds
 * "ns__"), at most 80 characters. */
bool sf__api_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 80 || !isalpha((unsigned char)name[0]) ||
        name[n - 1] == '_' || strstr(name, "___"))
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

static int check_target(const char *target, const char *what,
                        struct cs_err *err)
{
    if (!target || !*target)
        return 0; /* map_apply names what is missing */
    if (!sf__api_name_ok(target))
        return cs_err_set(err, CS_EINVAL, what,
                          "mapping_error: '%.60s' is not a Salesforce field "
                          "API name (Phone, Score__c)",
                          target);
    for (size_t i = 0; i < CS_ARRAY_LEN(system_fields); i++)
        if (strcasecmp(target, system_fields[i]) == 0)
            return cs_err_set(err, CS_EINVAL, what,
                              "mapping_error: '%s' is set by Salesforce and "
                              "cannot be mapped",
                              system_fields[i]);
    return 0;
}

/* Call fn for every target the mappings at config[key] name (list or
 * object form, mapping.h). */
int sf__each_target(const struct prov_ctx *ctx, const char *key,
                    int (*fn)(const char *target, void *arg), void *arg)
{
    const json_t *maps = json_object_get(ctx->config, key);
    size_t i;
    const json_t *m;
    int rc;
    if (json_is_array(maps)) {
        json_array_foreach(maps, i, m) {
            const char *t = json_string_value(json_object_get(m, "target"));
            if (!t)
                t = json_string_value(json_object_get(m, "name"));
            if (t && (rc = fn(t, arg)) < 0)
                return rc;
        }
    } else if (json_is_object(maps)) {
        const char *k;
        json_object_foreach((json_t *)maps, k, m) {
            const char *t = json_is_string(m) ? json_string_value(m) : k;
            if ((rc = fn(t, arg)) < 0)
                return rc;
        }
    }
    return 0;
}

struct check_arg {
    const char *key;
    struct cs_err *err;
};

static int check_one(const char *target, void *arg)
{
    struct check_arg *a = arg;
    return check_target(target, a->key, a->err);
}

/* A mapped value as Salesforce takes it: text, a number or a boolean
 * as they are, a list of strings as a multi-select value "a;b". */
static json_t *sf_value(const char *key, const char *target, const json_t *v,
                        struct cs_err *err)
{
    if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
        return json_incref((json_t *)v);
    if (json_is_array(v)) {
        struct buf b;
        buf_init(&b, 4096);
        size_t i;
        const json_t *t;
        json_array_foreach(v, i, t) {
            if (!json_is_string(t) || strchr(json_string_value(t), ';') ||
                (b.len && buf_adds(&b, ";") < 0) ||
                buf_adds(&b, json_string_value(t)) < 0) {
                buf_release(&b);
                cs_err_set(err, CS_EINVAL, key,
                           "mapping_error: '%.40s' takes a list of strings "
                           "without ';' (a multi-select picklist)",
                           target);
                return NULL;
            }
        }
        char *s = buf_take(&b, NULL);
        json_t *r = json_string(s ? s : "");
        free(s);
        return r;
    }
    cs_err_set(err, CS_EINVAL, key,
               "mapping_error: '%.40s' takes text, a number, a boolean or a "
               "list of strings, the mapping gives an object",
               target);
    return NULL;
}

/*
 * Apply the mappings at config[key] over prov_data_root into *out (an
 * object of API name -> value). Every target is checked first, so a bad
 * one fails even when its source is missing from this call.
 */
int sf__apply_mappings(const struct prov_ctx *ctx, const char *key,
                       json_t **out, struct cs_err *err)
{
    *out = json_object();
    const json_t *maps = json_object_get(ctx->config, key);
    if (!maps || json_is_null(maps))
        return 0;
    if (!json_is_array(maps) && !json_is_object(maps)) {
        json_decref(*out);
        *out = NULL;
        return cs_err_set(err, CS_EINVAL, key,
                          "mapping_error: %s must be a list or an object", key);
    }
    struct check_arg ca = {key, err};
    int rc = sf__each_target(ctx, key, check_one, &ca);
    json_t *raw = json_object();
    if (rc == 0) {
        json_t *root = prov_data_root(ctx);
        rc = map_apply(maps, root, raw, err);
        json_decref(root);
    }
    const char *k;
    json_t *v;
    json_object_foreach(raw, k, v) {
        if (rc < 0)
            break;
        if (json_is_null(v))
            continue;
        json_t *c = sf_value(key, k, v, err);
        if (!c)
            rc = CS_EINVAL;
        else
            json_object_set_new(*out, k, c);
    }
    json_decref(raw);
    if (rc < 0) {
        json_decref(*out);
        *out = NULL;
    }
    return rc < 0 ? CS_EINVAL : 0;
}

/* A string rendered from config[key] (a template over prov_data_root),
 * or NULL when there is none or it renders empty. */
char *sf__render_template(const struct prov_ctx *ctx, const char *key,
                          struct cs_err *err, bool *failed)
{
    *failed = false;
    const json_t *tpl = json_object_get(ctx->config, key);
    if (!json_is_string(tpl))
        return NULL;
    json_t *root = prov_data_root(ctx);
    json_t *v = map_render(tpl, root, err);
    json_decref(root);
    if (!v) {
        snprintf(err->field, sizeof(err->field), "config.%s", key);
        *failed = true;
        return NULL;
    }
    char *s = json_is_string(v) && json_string_length(v)
                  ? xstrdup(json_string_value(v))
                  : NULL;
    json_decref(v);
    return s;
}
