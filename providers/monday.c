/*
 * monday.c - the monday.com provider (GraphQL platform API, POST
 * https://api.monday.com/v2): an item on the configured board and group
 * for the caller, with typed column values, and an update on it (monday's
 * "updates" are the item's notes) carrying the call summary.
 *
 * Docs followed: developer.monday.com api-reference (items page by column
 * values, create_item / change_multiple_column_values, column types:
 * phone, email, status, date, long text, text, numbers; updates;
 * complexity; rate limits; error handling) and shared/providers.md
 * section 7.
 *
 * Every request is one POST of {"query", "variables"} with
 * "Authorization: <token>" (a personal API token or an OAuth token, sent
 * without "Bearer") and "API-Version: <config.api_version>" (2025-04 by
 * default, which has the unified error format). column_values is a
 * JSON-encoded string keyed by column id, each value shaped for its
 * column's type (phone {"phone","countryShortName"}, email {"email",
 * "text"}, status {"label"}, date {"date","time"} in UTC, long text
 * {"text"}, text a plain string).
 *
 * Step "item" looks before it writes: items_page_by_column_values by the
 * phone column (digits, then an exact comparison of what comes back), else
 * the email column (exact label; the item we create has the address as
 * its label), else the marker column (a text column holding
 * "callsync:<job_id>"). A found item gets the call's non-identity columns
 * with change_multiple_column_values (idempotent: the same values again);
 * none found, create_item. At least one of the three lookups must be
 * possible for the call, so a repeated create cannot happen. Step "note"
 * is create_update with the job marker in its body; when it reconciles it
 * reads the item's newest updates and looks for the marker first.
 *
 * Errors: HTTP 429 and the rate-limit codes (COMPLEXITY_BUDGET_EXHAUSTED /
 * ComplexityException, RATE_LIMIT_EXCEEDED, maxConcurrencyExceeded,
 * IP_RATE_LIMIT_EXCEEDED, FIELD_LIMIT_EXCEEDED) wait for Retry-After or
 * retry_in_seconds; DAILY_LIMIT_EXCEEDED until midnight UTC (monday resets
 * the daily count then); 401 and Unauthorized codes park the connection;
 * 5xx, INTERNAL_SERVER_ERROR and 423 (board locked) retry; everything
 * else (InvalidColumnIdException, ColumnValueException,
 * InvalidBoardIdException, ItemNameTooLongException, parse errors, ...)
 * is permanent with monday's message. Every query also asks for
 * complexity { query after reset_in_x_seconds }: when what is left of the
 * per-minute budget would not pay for the same query again, the key
 * pauses until the budget resets (prov_result.pause_ms), before monday
 * answers with an error.
 *
 * Rate: the limiter default is 1,000 requests per minute, the lowest
 * per-minute call limit monday documents (plans below Pro); the
 * complexity budget (10M points per minute per account for API tokens,
 * 5M each for app reads and writes) is followed through the complexity
 * field as above. monday counts per account: rate_scope "account_id"
 * (config), else the connection.
 *
 * Connection config:
 *   board_id (required), group_id, api_version ("2025-04")
 *   item_name_template  over prov_data_root ("{{customer_name}}"; else the
 *                       caller's name, phone or email)
 *   phone_column_id, email_column_id, marker_column_id (text column)
 *   phone_country       ISO-2 country for the phone column when the
 *                       number's calling code does not name one (+1: US)
 *   status_column_id, status_label, status_by_outcome {"outcome": label}
 *   summary_column_id (long text), appointment_column_id and
 *   call_date_column_id (date columns)
 *   field_mappings      onto column ids (mapping.h), shaped by
 *                       column_types {"<column id>": "text" | "long_text" |
 *                       "status" | "date" | "email" | "phone" | "numbers" |
 *                       "checkbox" | "link" | "dropdown" | "json"}; text
 *                       when the column is not listed
 *   create_labels_if_missing (true), update_existing (true)
 *   account_id          the limiter's key (rate_scope)
 */
#include "prov.h"
#include "buf.h"
#include "mapping.h"
#include "when.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MONDAY_BASE_URL "https://api.monday.com"
#define MONDAY_API_VERSION "2025-04"

#define MONDAY_NAME_MAX 255    /* ItemNameTooLongException above */
#define MONDAY_NOTE_MAX 20000
#define MONDAY_SUMMARY_MAX 4000
#define MONDAY_TRANSCRIPT_MAX 3000
#define MONDAY_SHORT_MAX 300

#define COMPLEXITY "complexity { query after reset_in_x_seconds } "

static const char q_search[] =
    "query ($board: ID!, $columns: [ItemsPageByColumnValuesQuery!], "
    "$ids: [String!]) { " COMPLEXITY
    "items_page_by_column_values (board_id: $board, columns: $columns, "
    "limit: 25) { items { id name column_values (ids: $ids) "
    "{ id text value } } } }";
static const char m_create[] =
    "mutation ($board: ID!, $group: String, $name: String!, "
    "$values: JSON, $labels: Boolean) { " COMPLEXITY
    "create_item (board_id: $board, group_id: $group, item_name: $name, "
    "column_values: $values, create_labels_if_missing: $labels) { id } }";
static const char m_change[] =
    "mutation ($board: ID!, $item: ID!, $values: JSON!, $labels: Boolean) "
    "{ " COMPLEXITY
    "change_multiple_column_values (board_id: $board, item_id: $item, "
    "column_values: $values, create_labels_if_missing: $labels) { id } }";
static const char m_update[] =
    "mutation ($item: ID!, $body: String!) { " COMPLEXITY
    "create_update (item_id: $item, body: $body) { id } }";
static const char q_updates[] =
    "query ($items: [ID!]) { " COMPLEXITY
    "items (ids: $items) { id updates (limit: 100) { id body text_body } } }";

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
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

static const char *phase_of(const struct prov_ctx *ctx)
{
    const char *p = json_string_value(json_object_get(ctx->scratch, "phase"));
    return p ? p : "";
}

static bool phase_is(const struct prov_ctx *ctx, const char *phase)
{
    return strcmp(phase_of(ctx), phase) == 0;
}

static void next_phase(struct prov_ctx *ctx, struct prov_result *res,
                       const char *phase)
{
    json_object_set_new(ctx->scratch, "phase", json_string(phase));
    res->outcome = PROV_NEXT;
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

/* The digits of s into out (at most n-1 of them). */
static void digits_of(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
}

static int64_t until_midnight_utc(int64_t now_ms)
{
    const int64_t day = 86400000;
    return (now_ms / day + 1) * day - now_ms;
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */
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

static int need_board(const struct prov_ctx *ctx, char board[64],
                      struct cs_err *err)
{
    if (!config_id(ctx->config, "board_id", board, 64))
        return cs_err_set(err, CS_EINVAL, "config.board_id",
                          "config_error: board_id is not set");
    for (const char *p = board; *p; p++)
        if (!isdigit((unsigned char)*p))
            return cs_err_set(err, CS_EINVAL, "config.board_id",
                              "config_error: board_id '%.40s' is not a "
                              "monday board id (digits)", board);
    return 0;
}

/* One GraphQL request: the document and its variables (stolen). */
static int graphql(const struct prov_ctx *ctx, struct prov_request *rq,
                   const char *doc, json_t *vars, struct cs_err *err)
{
    const char *token = token_of(ctx);
    if (!token) {
        json_decref(vars);
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no api token");
    }
    const char *version = str_at(ctx->config, "api_version");
    if (!version)
        version = MONDAY_API_VERSION;
    /* monday takes the token as it is, without "Bearer" */
    prov_request_begin(rq, ctx, "POST", MONDAY_BASE_URL, "/v2", NULL);
    prov_request_header(rq, "Authorization", token);
    prov_request_header(rq, "API-Version", version);
    json_t *body = json_pack("{s:s,s:o}", "query", doc, "variables", vars);
    prov_request_json(rq, body);
    json_decref(body);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Answers                                                            */
/* ------------------------------------------------------------------ */

/* The first error of a body: the errors array (every API version since
 * 2024-10) or the legacy top-level error_code / error_message. */
static bool first_error(const json_t *b, const char **code,
                        const char **message, const json_t **ext)
{
    *code = *message = NULL;
    *ext = NULL;
    const json_t *errors = json_object_get(b, "errors");
    const json_t *e = json_array_get(errors, 0);
    if (json_is_object(e)) {
        *ext = json_object_get(e, "extensions");
        *code = json_string_value(json_object_get(*ext, "code"));
        *message = json_string_value(json_object_get(e, "message"));
    } else if (json_is_string(e)) {
        *message = json_string_value(e);
    }
    if (!*code)
        *code = json_string_value(json_object_get(b, "error_code"));
    if (!*message)
        *message = json_string_value(json_object_get(b, "error_message"));
    return *code || *message || json_array_size(errors) > 0;
}

static bool code_in(const char *code, const char *const *list)
{
    for (; code && *list; list++)
        if (strcasecmp(code, *list) == 0)
            return true;
    return false;
}

/* retry_in_seconds from the extensions (or legacy error_data), else the
 * "reset in N seconds" of a legacy complexity message, in ms; -1. */
static int64_t retry_in(const json_t *ext, const json_t *b,
                        const char *message)
{
    const json_t *v = json_object_get(ext, "retry_in_seconds");
    if (!v)
        v = json_object_get(json_object_get(b, "error_data"),
                            "retry_in_seconds");
    if (json_is_number(v) && json_number_value(v) >= 0)
        return (int64_t)(json_number_value(v) * 1000);
    const char *r = message ? strstr(message, "reset in ") : NULL;
    if (r) {
        long long s = strtoll(r + 9, NULL, 10);
        if (s >= 0)
            return s * 1000;
    }
    return -1;
}

static const char *const rate_codes[] = {
    "COMPLEXITY_BUDGET_EXHAUSTED", "ComplexityException",
    "RATE_LIMIT_EXCEEDED",         "Rate Limit Exceeded",
    "maxConcurrencyExceeded",      "IP_RATE_LIMIT_EXCEEDED",
    "FIELD_LIMIT_EXCEEDED",        "MINUTE_LIMIT_EXCEEDED",
    NULL};
static const char *const auth_codes[] = {"Unauthorized", "UNAUTHENTICATED",
                                         "NotAuthenticated", NULL};
static const char *const transient_codes[] = {
    "INTERNAL_SERVER_ERROR", "InternalServerError", "ResourceLockedException",
    NULL};

/*
 * Classify a failed answer: an HTTP error, or a 200 whose body has an
 * errors array (GraphQL application errors). The message is monday's.
 */
static void monday_fail(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->code[0] = res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    const char *code = NULL, *msg = NULL;
    const json_t *ext = NULL;
    bool has = json_is_object(b) && first_error(b, &code, &msg, &ext);
    if (msg)
        snprintf(res->message, sizeof(res->message), "%s", msg);
    if (code)
        snprintf(res->code, sizeof(res->code), "%s", code);
    const json_t *sc = json_object_get(ext, "status_code");
    if (!sc)
        sc = json_object_get(b, "status_code");
    int body_status = json_is_integer(sc) ? (int)json_integer_value(sc) : 0;
    int64_t wait = retry_in(ext, b, msg);
    bool daily = code && strcasecmp(code, "DAILY_LIMIT_EXCEEDED") == 0;

    if (daily) {
        res->http_status = rsp->status;
        prov_fail(res, PROV_RATE_LIMITED, "DAILY_LIMIT_EXCEEDED", "%s",
                 msg ? msg : "daily call limit exceeded");
        res->retry_after_ms = until_midnight_utc(ctx->now_ms);
    } else if (rsp->status == 429 || code_in(code, rate_codes) ||
               body_status == 429) {
        struct prov_response r429 = *rsp;
        r429.status = 429;
        prov_classify(&r429, res);
        res->http_status = rsp->status;
        if (res->retry_after_ms < 0)
            res->retry_after_ms = wait >= 0 ? wait : 60000;
    } else if (rsp->status >= 200 && rsp->status < 300 && has) {
        /* An application error in a 200. */
        res->http_status = rsp->status;
        res->retry_after_ms = -1;
        if (code_in(code, auth_codes) || body_status == 401)
            res->outcome = PROV_AUTH;
        else if (code_in(code, transient_codes) || body_status >= 500 ||
                 body_status == 423)
            res->outcome = PROV_RETRY;
        else
            res->outcome = PROV_PERMANENT;
        if (!res->code[0])
            snprintf(res->code, sizeof(res->code), "%s", "graphql_error");
        if (!res->message[0])
            snprintf(res->message, sizeof(res->message), "%s",
                     "the API answered with an error");
    } else {
        prov_classify(rsp, res);
        if (rsp->status == 423)
            res->outcome = PROV_RETRY;
    }
    json_decref(b);
}

/*
 * The data of a successful answer, or NULL after classifying the failure
 * into res. Also notes a spent complexity budget: when what is left after
 * this query would not pay for it again, pause the key until the budget
 * resets.
 */
static json_t *answer_data(const struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res, json_t **doc)
{
    *doc = NULL;
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status < 200 || rsp->status >= 300) {
        monday_fail(ctx, rsp, res);
        return NULL;
    }
    json_t *b = prov_response_json(rsp);
    const json_t *errors = json_object_get(b, "errors");
    if (!json_is_object(b) || json_array_size(errors) > 0 ||
        json_object_get(b, "error_code")) {
        if (!json_is_object(b)) {
            prov_fail(res, PROV_RETRY, "bad_response",
                     "HTTP %d with an unreadable body", rsp->status);
        } else {
            monday_fail(ctx, rsp, res);
        }
        json_decref(b);
        return NULL;
    }
    json_t *data = json_object_get(b, "data");
    if (!json_is_object(data)) {
        prov_fail(res, PROV_RETRY, "bad_response",
                 "HTTP %d without data", rsp->status);
        json_decref(b);
        return NULL;
    }
    const json_t *cx = json_object_get(data, "complexity");
    const json_t *q = json_object_get(cx, "query");
    const json_t *after = json_object_get(cx, "after");
    const json_t *reset = json_object_get(cx, "reset_in_x_seconds");
    if (json_is_number(q) && json_is_number(after) &&
        json_number_value(after) < json_number_value(q))
        res->pause_ms = json_is_number(reset) && json_number_value(reset) > 0
                            ? (int64_t)(json_number_value(reset) * 1000)
                            : 60000;
    *doc = b;
    return data;
}

/* ------------------------------------------------------------------ */
/* Column values                                                      */
/* ------------------------------------------------------------------ */

/* Calling codes to ISO-2 countries for the phone column, longest code
 * first wins. +1 is the United States unless config.phone_country says
 * Canada or another NANP country. */
static const struct {
    const char *code, *iso;
} calling_codes[] = {
    {"1", "US"},    {"7", "RU"},    {"20", "EG"},   {"27", "ZA"},
    {"30", "GR"},   {"31", "NL"},   {"32", "BE"},   {"33", "FR"},
    {"34", "ES"},   {"36", "HU"},   {"39", "IT"},   {"40", "RO"},
    {"41", "CH"},   {"43", "AT"},   {"44", "GB"},   {"45", "DK"},
    {"46", "SE"},   {"47", "NO"},   {"48", "PL"},   {"49", "DE"},
    {"51", "PE"},   {"52", "MX"},   {"54", "AR"},   {"55", "BR"},
    {"56", "CL"},   {"57", "CO"},   {"60", "MY"},   {"61", "AU"},
    {"62", "ID"},   {"63", "PH"},   {"64", "NZ"},   {"65", "SG"},
    {"66", "TH"},   {"81", "JP"},   {"82", "KR"},   {"84", "VN"},
    {"86", "CN"},   {"90", "TR"},   {"91", "IN"},   {"92", "PK"},
    {"351", "PT"},  {"352", "LU"},  {"353", "IE"},  {"358", "FI"},
    {"420", "CZ"},  {"852", "HK"},  {"886", "TW"},  {"971", "AE"},
    {"972", "IL"},  {"966", "SA"},
};

/* The ISO-2 country of an E.164 number, config.phone_country first. */
static bool phone_country(const struct prov_ctx *ctx, const char *phone,
                          char iso[3])
{
    const char *c = str_at(ctx->config, "phone_country");
    if (c) {
        if (strlen(c) != 2 || !isalpha((unsigned char)c[0]) ||
            !isalpha((unsigned char)c[1]))
            return false;
        iso[0] = (char)toupper((unsigned char)c[0]);
        iso[1] = (char)toupper((unsigned char)c[1]);
        iso[2] = '\0';
        return true;
    }
    if (!phone || phone[0] != '+')
        return false;
    size_t best = 0;
    for (size_t i = 0; i < CS_ARRAY_LEN(calling_codes); i++) {
        size_t n = strlen(calling_codes[i].code);
        if (n > best && strncmp(phone + 1, calling_codes[i].code, n) == 0) {
            best = n;
            memcpy(iso, calling_codes[i].iso, 3);
        }
    }
    return best > 0;
}

/* "2026-02-20T20:00:00Z" into {"date": "2026-02-20", "time": "20:00:00"}
 * (monday stores dates and times in UTC). */
static json_t *date_value_ms(int64_t ms, bool with_time)
{
    char ts[32];
    cs_rfc3339_s(ms, ts);
    json_t *v = json_pack("{s:s#}", "date", ts, (int)10);
    if (with_time)
        json_object_set_new(v, "time", json_stringn(ts + 11, 8));
    return v;
}

static bool date_only(const char *s)
{
    if (strlen(s) != 10)
        return false;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? s[i] != '-' : !isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* v shaped for a column of type kind (a new value), or NULL with err. */
static json_t *shape(const struct prov_ctx *ctx, const char *col,
                     const char *kind, const json_t *v, struct cs_err *err)
{
    char text[512] = "";
    if (json_is_string(v))
        snprintf(text, sizeof(text), "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(text, sizeof(text), "%.15g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(text, sizeof(text), "%s", json_is_true(v) ? "true" : "false");
    bool scalar = json_is_string(v) || json_is_number(v) ||
                  json_is_boolean(v);
    if (strcmp(kind, "json") == 0)
        return json_deep_copy(v);
    if (strcmp(kind, "dropdown") == 0 && json_is_array(v)) {
        size_t i;
        const json_t *t;
        json_array_foreach(v, i, t) {
            if (!json_is_string(t))
                break;
        }
        if (i == json_array_size(v))
            return json_pack("{s:O}", "labels", v);
    }
    if (!scalar) {
        cs_err_set(err, CS_EINVAL, col,
                   "mapping_error: column '%.40s' (%s) takes text, a number "
                   "or a boolean, the mapping gives %s", col, kind,
                   json_is_object(v) ? "an object" : "a list");
        return NULL;
    }
    if (strcmp(kind, "text") == 0)
        return json_string(text);
    if (strcmp(kind, "long_text") == 0)
        return json_pack("{s:s}", "text", text);
    if (strcmp(kind, "status") == 0)
        return json_pack("{s:s}", "label", text);
    if (strcmp(kind, "dropdown") == 0)
        return json_pack("{s:[s]}", "labels", text);
    if (strcmp(kind, "email") == 0) {
        if (!strchr(text, '@')) {
            cs_err_set(err, CS_EINVAL, col,
                       "mapping_error: column '%.40s' takes an email "
                       "address, not '%.60s'", col, text);
            return NULL;
        }
        return json_pack("{s:s,s:s}", "email", text, "text", text);
    }
    if (strcmp(kind, "link") == 0)
        return json_pack("{s:s,s:s}", "url", text, "text", text);
    if (strcmp(kind, "checkbox") == 0) {
        bool on = json_is_true(v) || strcasecmp(text, "true") == 0 ||
                  strcmp(text, "1") == 0 || strcasecmp(text, "yes") == 0;
        return on ? json_pack("{s:s}", "checked", "true") : json_null();
    }
    if (strcmp(kind, "numbers") == 0) {
        char *end;
        strtod(text, &end);
        if (!*text || *end) {
            cs_err_set(err, CS_EINVAL, col,
                       "mapping_error: column '%.40s' takes a number, not "
                       "'%.60s'", col, text);
            return NULL;
        }
        return json_string(text);
    }
    if (strcmp(kind, "phone") == 0) {
        char d[32], iso[3];
        digits_of(text, d, sizeof(d));
        if (strlen(d) < 6 || !phone_country(ctx, text[0] == '+' ? text : NULL,
                                            iso)) {
            cs_err_set(err, CS_EINVAL, col,
                       "mapping_error: column '%.40s' needs an E.164 number "
                       "or config.phone_country, not '%.40s'", col, text);
            return NULL;
        }
        char e164[40];
        snprintf(e164, sizeof(e164), "+%s", d);
        return json_pack("{s:s,s:s}", "phone", e164, "countryShortName", iso);
    }
    if (strcmp(kind, "date") == 0) {
        int64_t ms;
        if (date_only(text))
            return json_pack("{s:s}", "date", text);
        if (cs_parse_rfc3339(text, &ms))
            return date_value_ms(ms, true);
        cs_err_set(err, CS_EINVAL, col,
                   "mapping_error: column '%.40s' takes YYYY-MM-DD or an "
                   "RFC 3339 time, not '%.40s'", col, text);
        return NULL;
    }
    cs_err_set(err, CS_EINVAL, "config.column_types",
               "config_error: column type '%.30s' of '%.40s' is not text, "
               "long_text, status, date, email, phone, numbers, checkbox, "
               "link, dropdown or json", kind, col);
    return NULL;
}

static const char *column_kind(const struct prov_ctx *ctx, const char *col)
{
    const char *k = json_string_value(
        json_object_get(json_object_get(ctx->config, "column_types"), col));
    return k ? k : "text";
}

/* The configured status label for this call's outcome, or NULL. */
static const char *status_label(const struct prov_ctx *ctx)
{
    const json_t *by = json_object_get(ctx->config, "status_by_outcome");
    const char *outcome = str_at(ctx->call, "outcome");
    const char *l = outcome ? json_string_value(json_object_get(by, outcome))
                            : NULL;
    if (!l)
        l = json_string_value(json_object_get(by, "*"));
    if (!l)
        l = str_at(ctx->config, "status_label");
    return l && *l ? l : NULL;
}

static void marker_of(const struct prov_ctx *ctx, char out[48])
{
    prov_job_marker(ctx->job, out);
}

/* Every target must be a column id (no dots) of a known column type,
 * checked before any mapping applies, so a bad one fails even when this
 * call lacks its source. */
static int check_target(const struct prov_ctx *ctx, const char *t,
                        struct cs_err *err)
{
    static const char *const kinds[] = {
        "text", "long_text", "status", "date",     "email", "phone",
        "numbers", "checkbox", "link", "dropdown", "json"};
    if (!t || !*t)
        return 0; /* map_apply names what is missing */
    if (strchr(t, '.'))
        return cs_err_set(err, CS_EINVAL, t,
                          "mapping_error: target '%.40s' is not a column id "
                          "(column ids have no dots)", t);
    const char *k = column_kind(ctx, t);
    for (size_t i = 0; i < CS_ARRAY_LEN(kinds); i++)
        if (strcmp(k, kinds[i]) == 0)
            return 0;
    return cs_err_set(err, CS_EINVAL, "config.column_types",
                      "config_error: column type '%.30s' of '%.40s' is not "
                      "text, long_text, status, date, email, phone, "
                      "numbers, checkbox, link, dropdown or json", k, t);
}

static int check_targets(const struct prov_ctx *ctx, const json_t *maps,
                         struct cs_err *err)
{
    size_t i;
    const json_t *m;
    const char *k;
    if (json_is_array(maps)) {
        json_array_foreach(maps, i, m) {
            const char *t = json_string_value(json_object_get(m, "target"));
            if (!t)
                t = json_string_value(json_object_get(m, "name"));
            if (check_target(ctx, t, err) < 0)
                return CS_EINVAL;
        }
    } else if (json_is_object(maps)) {
        json_object_foreach((json_t *)maps, k, m) {
            if (check_target(ctx, json_is_string(m) ? json_string_value(m) : k,
                             err) < 0)
                return CS_EINVAL;
        }
    }
    return 0;
}

/*
 * The column values for this call: identity columns (phone, email,
 * marker) when `identity`, and the others (status, summary, dates, the
 * mappings) always. Returns a new object, or NULL with err filled.
 */
static json_t *column_values(const struct prov_ctx *ctx, bool identity,
                             struct cs_err *err)
{
    json_t *cv = json_object();
    char col[128];
    const char *phone = str_at(ctx->call, "customer.phone");
    const char *email = str_at(ctx->call, "customer.email");
    if (identity && phone && config_id(ctx->config, "phone_column_id", col,
                                       sizeof(col))) {
        char iso[3];
        if (!phone_country(ctx, phone, iso)) {
            cs_err_set(err, CS_EINVAL, "config.phone_country",
                       "config_error: no country for %.20s: set "
                       "phone_country (ISO-2)", phone);
            json_decref(cv);
            return NULL;
        }
        json_object_set_new(cv, col, json_pack("{s:s,s:s}", "phone", phone,
                                               "countryShortName", iso));
    }
    if (identity && email && config_id(ctx->config, "email_column_id", col,
                                       sizeof(col)))
        json_object_set_new(cv, col, json_pack("{s:s,s:s}", "email", email,
                                               "text", email));
    if (identity && config_id(ctx->config, "marker_column_id", col,
                              sizeof(col))) {
        char marker[48];
        marker_of(ctx, marker);
        json_object_set_new(cv, col, json_string(marker));
    }
    const char *label = status_label(ctx);
    if (label && config_id(ctx->config, "status_column_id", col, sizeof(col)))
        json_object_set_new(cv, col, json_pack("{s:s}", "label", label));
    const char *summary = str_at(ctx->call, "summary");
    if (summary && config_id(ctx->config, "summary_column_id", col,
                             sizeof(col))) {
        size_t n = utf8_cut(summary, MONDAY_SUMMARY_MAX);
        json_object_set_new(cv, col, json_pack("{s:s#}", "text", summary,
                                               (int)n));
    }
    if (when_has_appointment(ctx->call) &&
        config_id(ctx->config, "appointment_column_id", col, sizeof(col))) {
        struct when_appt a;
        if (when_appointment(ctx->call, ctx->config, &a, err) < 0) {
            json_decref(cv);
            return NULL;
        }
        json_object_set_new(cv, col, date_value_ms(a.start_ms, true));
    }
    const char *at = str_at(ctx->call, "started_at");
    if (!at)
        at = str_at(ctx->call, "ended_at");
    int64_t ms;
    if (at && cs_parse_rfc3339(at, &ms) &&
        config_id(ctx->config, "call_date_column_id", col, sizeof(col)))
        json_object_set_new(cv, col, date_value_ms(ms, true));

    const json_t *maps = json_object_get(ctx->config, "field_mappings");
    if (maps && !json_is_null(maps) && check_targets(ctx, maps, err) < 0) {
        json_decref(cv);
        return NULL;
    }
    if (maps && !json_is_null(maps)) {
        json_t *root = prov_data_root(ctx);
        json_t *raw = json_object();
        int rc = map_apply(maps, root, raw, err);
        json_decref(root);
        const char *k;
        json_t *v;
        json_object_foreach(raw, k, v) {
            if (rc < 0)
                break;
            if (json_is_null(v))
                continue;
            if (json_is_object(v) && strcmp(column_kind(ctx, k), "json")) {
                /* A dotted target ("status.x") made an object: monday
                 * column ids have no dots. */
                rc = cs_err_set(err, CS_EINVAL, k,
                                "mapping_error: target '%.40s' is not a "
                                "column id (column ids have no dots)", k);
                break;
            }
            json_t *s = shape(ctx, k, column_kind(ctx, k), v, err);
            if (!s) {
                rc = CS_EINVAL;
                break;
            }
            json_object_set_new(cv, k, s);
        }
        json_decref(raw);
        if (rc < 0) {
            json_decref(cv);
            return NULL;
        }
    }
    return cv;
}

/* column_values as the JSON-encoded string monday takes. */
static json_t *encoded(json_t *cv)
{
    char *s = json_dumps(cv, JSON_COMPACT);
    CS_ASSERT(s != NULL);
    json_t *v = json_string(s);
    free(s);
    return v;
}

/* The item's name: config.item_name_template, else the caller. */
static char *item_name(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *tpl = json_object_get(ctx->config, "item_name_template");
    char *name = NULL;
    if (json_is_string(tpl)) {
        json_t *root = prov_data_root(ctx);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "%s",
                     "config.item_name_template");
            return NULL;
        }
        if (json_is_string(v) && json_string_length(v) > 0)
            name = xstrdup(json_string_value(v));
        json_decref(v);
    }
    if (!name) {
        const char *who = str_at(ctx->call, "customer.name");
        if (!who)
            who = str_at(ctx->call, "customer.phone");
        if (!who)
            who = str_at(ctx->call, "customer.email");
        const char *call_id = str_at(ctx->call, "call_id");
        name = who ? xstrdup(who)
                   : xasprintf("Caller %s", call_id ? call_id : "unknown");
    }
    name[utf8_cut(name, MONDAY_NAME_MAX)] = '\0';
    return name;
}

/* ------------------------------------------------------------------ */
/* Step 1: item                                                       */
/* ------------------------------------------------------------------ */

enum lookup { L_PHONE, L_EMAIL, L_MARKER };

/* The lookups this call allows, in order, into out[3]; their count. */
static size_t lookups(const struct prov_ctx *ctx, enum lookup out[3])
{
    size_t n = 0;
    char col[128];
    if (str_at(ctx->call, "customer.phone") &&
        config_id(ctx->config, "phone_column_id", col, sizeof(col)))
        out[n++] = L_PHONE;
    if (str_at(ctx->call, "customer.email") &&
        config_id(ctx->config, "email_column_id", col, sizeof(col)))
        out[n++] = L_EMAIL;
    if (config_id(ctx->config, "marker_column_id", col, sizeof(col)))
        out[n++] = L_MARKER;
    return n;
}

static int item_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    char board[64], col[128];
    if (need_board(ctx, board, err) < 0)
        return CS_EINVAL;
    enum lookup ls[3];
    size_t nl = lookups(ctx, ls);
    if (nl == 0)
        return cs_err_set(err, CS_EINVAL, "config.marker_column_id",
                          "config_error: no way to find the item before "
                          "creating it: set marker_column_id (a text "
                          "column), or phone_column_id / email_column_id "
                          "for calls with a phone or email");
    bool labels = config_bool(ctx->config, "create_labels_if_missing", true);
    /* Check the values before anything is sent: a mapping that cannot
     * apply fails the step at once. */
    json_t *cv = column_values(ctx, !phase_is(ctx, "update"), err);
    if (!cv)
        return CS_EINVAL;
    int rc;
    if (phase_is(ctx, "create")) {
        char *name = item_name(ctx, err);
        if (!name) {
            json_decref(cv);
            return CS_EINVAL;
        }
        json_t *vars = json_pack("{s:s,s:s,s:o,s:b}", "board", board, "name",
                                 name, "values", encoded(cv), "labels",
                                 labels);
        free(name);
        char group[128];
        json_object_set_new(vars, "group",
                            config_id(ctx->config, "group_id", group,
                                      sizeof(group))
                                ? json_string(group)
                                : json_null());
        rc = graphql(ctx, rq, m_create, vars, err);
    } else if (phase_is(ctx, "update")) {
        const char *id = json_string_value(
            json_object_get(ctx->scratch, "item_id"));
        CS_ASSERT(id != NULL);
        json_t *vars = json_pack("{s:s,s:s,s:o,s:b}", "board", board, "item",
                                 id, "values", encoded(cv), "labels", labels);
        rc = graphql(ctx, rq, m_change, vars, err);
    } else {
        json_object_set_new(ctx->scratch, "phase", json_string("search"));
        size_t k = (size_t)json_integer_value(
            json_object_get(ctx->scratch, "lookup"));
        CS_ASSERT(k < nl);
        char value[160];
        const char *key = ls[k] == L_PHONE   ? "phone_column_id"
                          : ls[k] == L_EMAIL ? "email_column_id"
                                             : "marker_column_id";
        config_id(ctx->config, key, col, sizeof(col));
        if (ls[k] == L_PHONE)
            digits_of(str_at(ctx->call, "customer.phone"), value,
                      sizeof(value));
        else if (ls[k] == L_EMAIL)
            snprintf(value, sizeof(value), "%s",
                     str_at(ctx->call, "customer.email"));
        else
            marker_of(ctx, value);
        json_t *vars = json_pack("{s:s,s:[{s:s,s:[s]}],s:[s]}", "board",
                                 board, "columns", "column_id", col,
                                 "column_values", value, "ids", col);
        rc = graphql(ctx, rq, q_search, vars, err);
    }
    json_decref(cv);
    return rc;
}

/* Whether an item's column holds exactly what we searched for: the same
 * phone digits, the same address (any case), the same marker. */
static bool column_matches(const struct prov_ctx *ctx, enum lookup l,
                           const json_t *item, const char *col)
{
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(item, "column_values"), i, c) {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (!id || strcmp(id, col) != 0)
            continue;
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *val = NULL;
        const json_t *raw = json_object_get(c, "value");
        if (json_is_string(raw))
            val = json_loads(json_string_value(raw), JSON_DECODE_ANY, NULL);
        else if (raw)
            val = json_incref((json_t *)raw);
        bool ok = false;
        if (l == L_PHONE) {
            char want[32], have[32];
            digits_of(str_at(ctx->call, "customer.phone"), want,
                      sizeof(want));
            const char *p = json_string_value(json_object_get(val, "phone"));
            digits_of(p ? p : text, have, sizeof(have));
            ok = *want && strcmp(want, have) == 0;
        } else if (l == L_EMAIL) {
            const char *want = str_at(ctx->call, "customer.email");
            const char *e = json_string_value(json_object_get(val, "email"));
            ok = (e && strcasecmp(e, want) == 0) ||
                 (text && strcasecmp(text, want) == 0);
        } else {
            char marker[48];
            marker_of(ctx, marker);
            const char *t = json_string_value(val);
            ok = (text && strcmp(text, marker) == 0) ||
                 (t && strcmp(t, marker) == 0);
        }
        json_decref(val);
        return ok;
    }
    return false;
}

static void item_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    json_t *doc;
    json_t *data = answer_data(ctx, rsp, res, &doc);
    if (!data)
        return;
    if (phase_is(ctx, "search")) {
        enum lookup ls[3];
        size_t nl = lookups(ctx, ls);
        size_t k = (size_t)json_integer_value(
            json_object_get(ctx->scratch, "lookup"));
        const json_t *items = json_object_get(
            json_object_get(data, "items_page_by_column_values"), "items");
        char col[128] = "";
        if (k < nl)
            config_id(ctx->config,
                      ls[k] == L_PHONE   ? "phone_column_id"
                      : ls[k] == L_EMAIL ? "email_column_id"
                                         : "marker_column_id",
                      col, sizeof(col));
        const char *hit = NULL;
        size_t i;
        const json_t *it;
        json_array_foreach(items, i, it) {
            const char *id = json_string_value(json_object_get(it, "id"));
            if (!hit && id && k < nl && column_matches(ctx, ls[k], it, col))
                hit = id;
        }
        struct cs_err err = {0};
        json_t *upd = NULL;
        if (!json_is_array(items) || k >= nl) {
            prov_fail(res, PROV_RETRY, "bad_response",
                     "items_page_by_column_values without items");
        } else if (hit && config_bool(ctx->config, "update_existing", true) &&
                   (upd = column_values(ctx, false, &err)) &&
                   json_object_size(upd) > 0) {
            json_object_set_new(ctx->scratch, "item_id", json_string(hit));
            next_phase(ctx, res, "update");
        } else if (hit) {
            prov_done_id(res, "item_id", hit);
        } else if (k + 1 < nl) {
            json_object_set_new(ctx->scratch, "lookup",
                                json_integer((json_int_t)k + 1));
            res->outcome = PROV_NEXT;
        } else {
            next_phase(ctx, res, "create");
        }
        json_decref(upd);
    } else {
        const char *op = phase_is(ctx, "create")
                             ? "create_item"
                             : "change_multiple_column_values";
        const char *id = json_string_value(
            json_object_get(json_object_get(data, op), "id"));
        if (id && *id)
            prov_done_id(res, "item_id", id);
        else
            prov_fail(res, PROV_RETRY, "bad_response", "%s without an id", op);
        if (id && phase_is(ctx, "create"))
            json_object_set_new(res->value, "created", json_true());
    }
    json_decref(doc);
}

/* ------------------------------------------------------------------ */
/* Step 2: note (an update on the item)                               */
/* ------------------------------------------------------------------ */

static void put_esc(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc;
        switch (s[i]) {
        case '<': rc = buf_adds(b, "&lt;"); break;
        case '>': rc = buf_adds(b, "&gt;"); break;
        case '&': rc = buf_adds(b, "&amp;"); break;
        case '"': rc = buf_adds(b, "&quot;"); break;
        case '\n': rc = buf_adds(b, "<br>"); break;
        default: rc = buf_add(b, s + i, 1); break;
        }
        if (rc < 0)
            return; /* capped: the rest is dropped */
    }
}

/* "<b>Label:</b> value<br>", value cut to max bytes (then " [...]"). */
static void put_line(struct buf *b, const char *label, const char *value,
                     size_t max)
{
    if (!value)
        return;
    if (buf_addf(b, "<b>%s:</b> ", label) < 0)
        return;
    size_t n = utf8_cut(value, max);
    put_esc(b, value, n);
    if (value[n] && buf_adds(b, " [\xe2\x80\xa6]") < 0)
        return;
    if (buf_adds(b, "<br>") < 0)
        return;
}

static char *note_body(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, MONDAY_NOTE_MAX);
    put_line(&b, "Call outcome", str_at(c, "outcome"), MONDAY_SHORT_MAX);
    put_line(&b, "Direction", str_at(c, "direction"), MONDAY_SHORT_MAX);
    put_line(&b, "Caller", str_at(c, "customer.name"), MONDAY_SHORT_MAX);
    put_line(&b, "Phone", str_at(c, "customer.phone"), MONDAY_SHORT_MAX);
    put_line(&b, "Summary", str_at(c, "summary"), MONDAY_SUMMARY_MAX);
    put_line(&b, "Sentiment", str_at(c, "sentiment"), MONDAY_SHORT_MAX);
    const json_t *d = map_path(c, "duration_s");
    if (json_is_number(d)) {
        long long s = (long long)json_number_value(d);
        char dur[64];
        snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
        put_line(&b, "Duration", dur, MONDAY_SHORT_MAX);
    }
    if (when_has_appointment(c)) {
        char appt[160];
        snprintf(appt, sizeof(appt), "%s %s %s",
                 str_at(c, "appointment.date"), str_at(c, "appointment.time"),
                 str_at(c, "appointment.timezone")
                     ? str_at(c, "appointment.timezone")
                     : "");
        put_line(&b, "Appointment", appt, MONDAY_SHORT_MAX);
    }
    put_line(&b, "Recording", str_at(c, "recording_url"), 2000);
    put_line(&b, "Transcript (excerpt)", str_at(c, "transcript"),
             MONDAY_TRANSCRIPT_MAX);
    char marker[48];
    marker_of(ctx, marker);
    if (buf_addf(&b, "Sync reference: %s", marker) < 0) {
        /* The cap leaves room: sections are capped well below it. */
        CS_ASSERT(!"note over its cap");
    }
    return buf_take(&b, NULL);
}

static const char *item_id_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "item.item_id");
}

static int note_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    const char *item = item_id_done(ctx);
    if (!item)
        return cs_err_set(err, CS_EINVAL, "item",
                          "no_item: the item step has no item_id");
    if (ctx->reconcile && !phase_is(ctx, "create")) {
        json_object_set_new(ctx->scratch, "phase", json_string("search"));
        return graphql(ctx, rq, q_updates, json_pack("{s:[s]}", "items", item),
                       err);
    }
    json_object_set_new(ctx->scratch, "phase", json_string("create"));
    char *body = note_body(ctx);
    json_t *vars = json_pack("{s:s,s:s}", "item", item, "body",
                             body ? body : "");
    free(body);
    return graphql(ctx, rq, m_update, vars, err);
}

static void note_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    json_t *doc;
    json_t *data = answer_data(ctx, rsp, res, &doc);
    if (!data)
        return;
    if (phase_is(ctx, "search")) {
        char marker[48];
        marker_of(ctx, marker);
        const json_t *items = json_object_get(data, "items");
        const json_t *item = json_array_get(items, 0);
        const char *hit = NULL;
        size_t i;
        const json_t *u;
        json_array_foreach(json_object_get(item, "updates"), i, u) {
            const char *id = json_string_value(json_object_get(u, "id"));
            const char *body = json_string_value(json_object_get(u, "body"));
            const char *text =
                json_string_value(json_object_get(u, "text_body"));
            if (!hit && id && ((body && strstr(body, marker)) ||
                               (text && strstr(text, marker))))
                hit = id;
        }
        if (!json_is_array(items))
            prov_fail(res, PROV_RETRY, "bad_response", "items without a list");
        else if (!item)
            prov_fail(res, PROV_PERMANENT, "item_not_found",
                     "item %s is not on the board any more",
                     item_id_done(ctx));
        else if (hit)
            prov_done_id(res, "update_id", hit);
        else
            next_phase(ctx, res, "create");
    } else {
        const char *id = json_string_value(
            json_object_get(json_object_get(data, "create_update"), "id"));
        if (id && *id)
            prov_done_id(res, "update_id", id);
        else
            prov_fail(res, PROV_RETRY, "bad_response",
                     "create_update without an id");
    }
    json_decref(doc);
}

/* ------------------------------------------------------------------ */
/* Probe: the board and the configured columns, read only             */
/* ------------------------------------------------------------------ */

static const char q_board[] =
    "query ($board: [ID!], $columns: [String]) { " COMPLEXITY
    "boards (ids: $board) { id name columns (ids: $columns) "
    "{ id title type } } }";

/* The configured columns and the type each must have; into cols (column
 * id -> type, "" for any). */
static json_t *configured_columns(const struct prov_ctx *ctx)
{
    static const struct {
        const char *key, *type;
    } keys[] = {
        {"phone_column_id", "phone"},       {"email_column_id", "email"},
        {"marker_column_id", "text"},       {"status_column_id", "status"},
        {"summary_column_id", "long_text"}, {"appointment_column_id", "date"},
        {"call_date_column_id", "date"},
    };
    json_t *cols = json_object();
    char col[128];
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++)
        if (config_id(ctx->config, keys[i].key, col, sizeof(col)))
            json_object_set_new(cols, col, json_string(keys[i].type));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(ctx->config, "column_types"), k, v) {
        const char *t = json_string_value(v);
        if (t && !json_object_get(cols, k))
            json_object_set_new(cols, k,
                                json_string(strcmp(t, "json") ? t : ""));
    }
    return cols;
}

static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    char board[64];
    if (need_board(ctx, board, err) < 0)
        return CS_EINVAL;
    json_t *cols = configured_columns(ctx);
    json_t *ids = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(cols, k, v) json_array_append_new(ids,
                                                          json_string(k));
    json_decref(cols);
    return graphql(ctx, rq, q_board,
                   json_pack("{s:[s],s:o}", "board", board, "columns", ids),
                   err);
}

/* The board must be readable and hold every configured column with the
 * type callsync writes into it. */
static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    json_t *doc;
    json_t *data = answer_data(ctx, rsp, res, &doc);
    if (!data)
        return;
    char board[64] = "";
    config_id(ctx->config, "board_id", board, sizeof(board));
    const json_t *b = json_array_get(json_object_get(data, "boards"), 0);
    json_t *want = configured_columns(ctx);
    const char *k;
    json_t *v;
    bool ok = true;
    if (!json_is_object(b)) {
        prov_fail(res, PROV_PERMANENT, "board_not_found",
                 "board %s is not there or the token cannot read it", board);
        ok = false;
    }
    json_object_foreach(want, k, v) {
        if (!ok)
            break;
        const json_t *hit = NULL;
        size_t i;
        const json_t *c;
        json_array_foreach(json_object_get(b, "columns"), i, c) {
            const char *id = json_string_value(json_object_get(c, "id"));
            if (id && strcmp(id, k) == 0)
                hit = c;
        }
        const char *type = json_string_value(json_object_get(hit, "type"));
        const char *need = json_string_value(v);
        if (!hit) {
            prov_fail(res, PROV_PERMANENT, "column_not_found",
                     "board %s has no column '%.60s'", board, k);
            ok = false;
        } else if (*need && (!type || strcmp(type, need) != 0)) {
            prov_fail(res, PROV_PERMANENT, "column_type",
                     "column '%.60s' of board %s is %.30s, not %s", k, board,
                     type ? type : "of no type", need);
            ok = false;
        }
    }
    if (ok) {
        json_t *ids = json_array();
        json_object_foreach(want, k, v) json_array_append_new(ids,
                                                              json_string(k));
        res->outcome = PROV_DONE;
        res->value = json_pack("{s:s,s:o}", "board_id", board, "columns",
                               ids);
        const json_t *name = json_object_get(b, "name");
        if (json_is_string(name))
            json_object_set(res->value, "board_name", (json_t *)name);
    }
    json_decref(want);
    json_decref(doc);
}

static const struct prov_step monday_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

/* ------------------------------------------------------------------ */

static const struct prov_step monday_steps[] = {
    {"item", PROV_RECONCILE_LOOKUP, NULL, item_build, item_parse},
    {"note", PROV_RECONCILE_LOOKUP, NULL, note_build, note_parse},
};

/* 1,000 requests per minute: the lowest documented minute limit (plans
 * below Pro); the complexity budget is followed per answer. */
const struct prov_ops prov_monday = {
    .name = "monday",
    .steps = monday_steps,
    .nsteps = CS_ARRAY_LEN(monday_steps),
    .rate = {1000, 60000},
    .rate_scope = "account_id",
    .probe = &monday_probe,
};
