/*
 * monday.c - the monday.com platform API (GraphQL, POST /v2) part of the
 * sandbox, under /monday. It reads GraphQL documents for real (operation,
 * variable definitions with their types, root fields with arguments,
 * nested selections checked for syntax) and answers the root fields
 * callsync uses:
 *
 *   query     complexity, items_page_by_column_values, items { updates },
 *             boards { id name columns { id title type } }
 *   mutation  complexity, create_item, change_multiple_column_values,
 *             create_update
 *
 * Selections below the root are parsed but not honoured: answers carry a
 * fixed superset (items with id, name and every column's {id, text,
 * value}, value being the JSON-encoded column value as monday returns
 * it; updates newest first, at most 100).
 *
 * Boards: with --monday-board ID (repeatable) only those exist
 * (InvalidBoardIdException otherwise); without, every numeric id is a
 * board. A column's type is read from its id: "phone...", "email...",
 * "status...", "date...", "long_text...", "text...", "numbers...",
 * "checkbox...", "link...", "dropdown..." (the prefix alone, or followed
 * by "_" or a digit: "phone", "phone_1", "text_mkx2"); any other id is
 * InvalidColumnIdException, as for a column the board does not have.
 * Column values are checked as monday does (ColumnValueException, with
 * error_data.column_type): phone {"phone","countryShortName"} (digits,
 * ISO-2), email {"email","text"} (both required), status {"label"} or
 * {"index"} or the label as a string (a label the column lacks is refused
 * unless create_labels_if_missing; each status column starts with
 * "Working on it", "Done", "Stuck"), date {"date": "YYYY-MM-DD", "time":
 * "HH:MM:SS"}, long text {"text"}, text a string, numbers a numeric
 * string. items_page_by_column_values matches as documented: phone by a
 * run of digits the number contains, email by the exact label, text by
 * the whole text in any case, long text and status exactly.
 *
 * Errors use the unified format of API 2025-01 and later: HTTP 200 with
 * {"data", "errors": [{"message", "locations", "path", "extensions":
 * {"code", "status_code", "error_data"}}], "account_id"} for application
 * errors and parse or validation errors (a missing required variable, a
 * variable of the wrong type, an unknown field); HTTP 401 {"errors":
 * [{"message": "Not Authenticated", ...}]} without a token (or one not
 * given with --monday-token when some are); HTTP 400 for a body that is
 * not JSON or an API-Version header that is not YYYY-MM.
 *
 * Limits: --monday-rate requests per minute (sliding minute, default
 * 1000) and --monday-daily per day (default none) answer 429
 * RATE_LIMIT_EXCEEDED / DAILY_LIMIT_EXCEEDED with Retry-After and
 * retry_in_seconds; a complexity budget of --monday-budget points per
 * minute (default 10,000,000; the window starts at the first query) is
 * charged per root field (items_page_by_column_values 1000 + 10 per item
 * of its limit, items 1000, every mutation 10000) and answers 429
 * COMPLEXITY_BUDGET_EXHAUSTED when a query does not fit. Every query may
 * ask for complexity { before query after reset_in_x_seconds }.
 */
#include "sandbox.h"
#include "crypto.h"
#include "graphql.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MONDAY_ACCOUNT 9000001
#define MINUTE_MS 60000
#define MAX_BOARDS 16

struct sb_monday {
    /* configuration, kept across resets */
    const char *tokens[SB_MAX_TOKENS];
    size_t ntokens;
    const char *boards[MAX_BOARDS];
    size_t nboards;
    long long rate;        /* requests per minute, 0: none */
    long long budget;      /* complexity points per minute */
    long long daily;       /* requests per day, 0: none */
    /* state */
    json_t *items;         /* records in creation order */
    json_t *updates;
    json_t *by_id;         /* item id -> record */
    json_t *labels;        /* "board:column" -> [labels] */
    long long next_item, next_update;
    int64_t *window;       /* accepted request times, a ring */
    size_t wcap, whead, wlen;
    int64_t budget_from;   /* start of the complexity window, 0: none */
    long long budget_used;
    long long daily_used;
};

static struct sb_monday *state(struct sb *s)
{
    if (!s->monday) {
        struct sb_monday *m = xcalloc(1, sizeof(*m));
        m->rate = 1000;
        m->budget = 10000000;
        s->monday = m;
        monday_reset(m);
    }
    return s->monday;
}

void monday_reset(struct sb_monday *m)
{
    json_decref(m->items);
    json_decref(m->updates);
    json_decref(m->by_id);
    json_decref(m->labels);
    m->items = json_array();
    m->updates = json_array();
    m->by_id = json_object();
    m->labels = json_object();
    m->next_item = 1000000001;
    m->next_update = 2000000001;
    free(m->window);
    m->window = NULL;
    m->wcap = m->whead = m->wlen = 0;
    m->budget_from = 0;
    m->budget_used = 0;
    m->daily_used = 0;
}

void monday_free(struct sb_monday *m)
{
    if (!m)
        return;
    json_decref(m->items);
    json_decref(m->updates);
    json_decref(m->by_id);
    json_decref(m->labels);
    free(m->window);
    free(m);
}

static bool parse_count(const char *v, long long lo, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || !*v || *end || n < lo)
        return false;
    *out = n;
    return true;
}

bool monday_option(struct sb *s, const char *flag, const char *val)
{
    struct sb_monday *m = state(s);
    if (strcmp(flag, "--monday-token") == 0 && *val &&
        m->ntokens < SB_MAX_TOKENS) {
        m->tokens[m->ntokens++] = val;
        return true;
    }
    if (strcmp(flag, "--monday-board") == 0 && *val &&
        m->nboards < MAX_BOARDS) {
        m->boards[m->nboards++] = val;
        return true;
    }
    if (strcmp(flag, "--monday-rate") == 0)
        return parse_count(val, 0, &m->rate);
    if (strcmp(flag, "--monday-budget") == 0)
        return parse_count(val, 1, &m->budget);
    if (strcmp(flag, "--monday-daily") == 0)
        return parse_count(val, 0, &m->daily);
    return false;
}

json_t *monday_records(struct sb *s, const char *type)
{
    struct sb_monday *m = state(s);
    if (strcmp(type, "items") == 0)
        return json_incref(m->items);
    if (strcmp(type, "updates") == 0)
        return json_incref(m->updates);
    return NULL;
}

/* ---- Errors ------------------------------------------------------------- */

static json_t *gql_error(const char *message, const char *code,
                         int status_code, json_t *data)
{
    json_t *ext = json_pack("{s:s,s:i}", "code", code, "status_code",
                            status_code);
    json_object_set_new(ext, "error_data", data ? data : json_object());
    return json_pack("{s:s,s:[],s:o}", "message", message, "locations",
                     "extensions", ext);
}

static json_t *errors_body(json_t *error)
{
    return json_pack("{s:[o],s:i}", "errors", error, "account_id",
                     MONDAY_ACCOUNT);
}

json_t *monday_error_body(int status)
{
    switch (status) {
    case 401:
        return json_pack("{s:[{s:s,s:{s:s,s:i}}]}", "errors", "message",
                         "Not Authenticated", "extensions", "code",
                         "Unauthorized", "status_code", 401);
    case 429:
        return errors_body(gql_error("Rate Limit Exceeded",
                                     "RATE_LIMIT_EXCEEDED", 429,
                                     json_pack("{s:i}", "retry_in_seconds",
                                               30)));
    default:
        return errors_body(gql_error(status >= 500 ? "Internal server error"
                                                   : sb_reason(status),
                                     status >= 500 ? "INTERNAL_SERVER_ERROR"
                                                   : "BAD_REQUEST",
                                     status, NULL));
    }
}

/* ---- Variable types --------------------------------------------------- */

/* Whether v fits type t (a GraphQL input type as written). */
static bool fits(const char *t, const json_t *v)
{
    size_t n = strlen(t);
    bool nonnull = n && t[n - 1] == '!';
    if (nonnull)
        n--;
    if (!v || json_is_null(v))
        return !nonnull;
    if (t[0] == '[') {
        char inner[256];
        snprintf(inner, sizeof(inner), "%.*s", (int)(n - 2), t + 1);
        if (!json_is_array(v))
            return fits(inner, v); /* input coercion of a single value */
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            if (!fits(inner, e))
                return false;
        }
        return true;
    }
    char base[128];
    snprintf(base, sizeof(base), "%.*s", (int)n, t);
    if (strcmp(base, "ID") == 0)
        return json_is_string(v) || json_is_integer(v);
    if (strcmp(base, "String") == 0)
        return json_is_string(v);
    if (strcmp(base, "Int") == 0)
        return json_is_integer(v);
    if (strcmp(base, "Boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(base, "JSON") == 0)
        return true;
    if (strcmp(base, "ItemsPageByColumnValuesQuery") == 0) {
        const json_t *vals = json_object_get(v, "column_values");
        if (!json_is_object(v) ||
            !json_is_string(json_object_get(v, "column_id")) ||
            !json_is_array(vals))
            return false;
        size_t i;
        const json_t *e;
        json_array_foreach(vals, i, e) {
            if (!json_is_string(e) && !json_is_null(e))
                return false;
        }
        return true;
    }
    return false;
}

static bool known_type(const char *t)
{
    char base[128];
    size_t k = 0;
    for (; *t && k < sizeof(base) - 1; t++)
        if (*t != '[' && *t != ']' && *t != '!')
            base[k++] = *t;
    base[k] = '\0';
    static const char *const names[] = {"ID", "String", "Int", "Boolean",
                                        "JSON",
                                        "ItemsPageByColumnValuesQuery"};
    for (size_t i = 0; i < CS_ARRAY_LEN(names); i++)
        if (strcmp(base, names[i]) == 0)
            return true;
    return false;
}

/* ---- Boards, columns and values ----------------------------------------- */

static const char *const col_kinds[] = {
    "long_text", "phone",  "email", "status",   "date",
    "text",      "numbers", "checkbox", "link", "dropdown",
};

static const char *column_kind(const char *id)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(col_kinds); i++) {
        size_t n = strlen(col_kinds[i]);
        if (strncmp(id, col_kinds[i], n) == 0 &&
            (!id[n] || id[n] == '_' || isdigit((unsigned char)id[n])))
            return col_kinds[i];
    }
    return NULL;
}

static bool board_exists(struct sb_monday *m, const char *id)
{
    if (!*id)
        return false;
    if (m->nboards) {
        for (size_t i = 0; i < m->nboards; i++)
            if (strcmp(m->boards[i], id) == 0)
                return true;
        return false;
    }
    for (const char *p = id; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

/* An ID argument as text into out[64]; false when absent or wrong. */
static bool id_arg(const json_t *args, const char *key, char out[64])
{
    const json_t *v = json_object_get(args, key);
    if (json_is_string(v) && json_string_length(v) < 64)
        snprintf(out, 64, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, 64, "%lld", (long long)json_integer_value(v));
    else
        return false;
    return true;
}

/* The labels of a status column, created with monday's defaults. */
static json_t *status_labels(struct sb_monday *m, const char *board,
                             const char *col)
{
    char key[160];
    snprintf(key, sizeof(key), "%s:%s", board, col);
    json_t *l = json_object_get(m->labels, key);
    if (!l) {
        l = json_pack("[sss]", "Working on it", "Done", "Stuck");
        json_object_set_new(m->labels, key, l);
    }
    return l;
}

static bool digits_only(const char *s, size_t min, size_t max, bool plus)
{
    if (plus && *s == '+')
        s++;
    size_t n = 0;
    for (; *s; s++, n++)
        if (!isdigit((unsigned char)*s))
            return false;
    return n >= min && n <= max;
}

static bool valid_date(const char *d)
{
    if (strlen(d) != 10)
        return false;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? d[i] != '-' : !isdigit((unsigned char)d[i]))
            return false;
    int mo = (d[5] - '0') * 10 + (d[6] - '0');
    int day = (d[8] - '0') * 10 + (d[9] - '0');
    return mo >= 1 && mo <= 12 && day >= 1 && day <= 31;
}

/* "HH:MM:SS", each part in range. */
static bool valid_time(const char *t)
{
    if (strlen(t) != 8 || t[2] != ':' || t[5] != ':')
        return false;
    for (int i = 0; i < 8; i += 3)
        if (!isdigit((unsigned char)t[i]) ||
            !isdigit((unsigned char)t[i + 1]))
            return false;
    int h = (t[0] - '0') * 10 + (t[1] - '0');
    int m = (t[3] - '0') * 10 + (t[4] - '0');
    int sec = (t[6] - '0') * 10 + (t[7] - '0');
    return h < 24 && m < 60 && sec < 60;
}

struct verr {
    char code[48];
    char message[240];
    json_t *data;
};

static bool value_fail(struct verr *e, const char *kind, const char *col,
                       const char *why)
{
    snprintf(e->code, sizeof(e->code), "%s", "ColumnValueException");
    snprintf(e->message, sizeof(e->message),
             "invalid value - %s. Please check our API documentation for the "
             "correct data structure for this column. "
             "https://developer.monday.com/api-reference/docs/"
             "change-column-values", why);
    e->data = json_pack("{s:s,s:s}", "column_id", col, "column_type", kind);
    return false;
}

/* One column value checked and normalised into *out (a new value;
 * json null clears). */
static bool column_value(struct sb_monday *m, const char *board,
                         const char *col, const json_t *v, bool add_labels,
                         json_t **out, struct verr *e)
{
    const char *kind = column_kind(col);
    *out = NULL;
    if (!kind) {
        snprintf(e->code, sizeof(e->code), "%s", "InvalidColumnIdException");
        snprintf(e->message, sizeof(e->message),
                 "This column ID doesn't exist for the board");
        e->data = json_pack("{s:s}", "column_id", col);
        return false;
    }
    if (json_is_null(v) || (json_is_string(v) && !json_string_length(v)) ||
        (json_is_object(v) && !json_object_size(v))) {
        *out = json_null();
        return true;
    }
    const char *s = json_string_value(v);
    if (strcmp(kind, "text") == 0) {
        if (json_is_string(v) || json_is_number(v)) {
            *out = json_is_string(v)
                       ? json_incref((json_t *)v)
                       : json_sprintf("%g", json_number_value(v));
            return true;
        }
        return value_fail(e, kind, col, "text columns take a string");
    }
    if (strcmp(kind, "long_text") == 0) {
        const char *t = s ? s : json_string_value(json_object_get(v, "text"));
        if (!t)
            return value_fail(e, kind, col, "long text takes {\"text\"}");
        *out = json_pack("{s:s}", "text", t);
        return true;
    }
    if (strcmp(kind, "numbers") == 0) {
        char *end;
        if (json_is_number(v)) {
            *out = json_sprintf("%g", json_number_value(v));
            return true;
        }
        if (s && *s && (strtod(s, &end), *end == '\0')) {
            *out = json_string(s);
            return true;
        }
        return value_fail(e, kind, col, "numbers columns take a number");
    }
    if (strcmp(kind, "phone") == 0) {
        const char *p = json_string_value(json_object_get(v, "phone"));
        const char *cc = json_string_value(json_object_get(v,
                                                           "countryShortName"));
        if (!json_is_object(v) || !p || !digits_only(p, 4, 20, true))
            return value_fail(e, kind, col, "phone number is not valid");
        if (!cc || strlen(cc) != 2 || !isupper((unsigned char)cc[0]) ||
            !isupper((unsigned char)cc[1]))
            return value_fail(e, kind, col,
                              "countryShortName must be an ISO-2 code");
        *out = json_pack("{s:s,s:s}", "phone", p, "countryShortName", cc);
        return true;
    }
    if (strcmp(kind, "email") == 0) {
        const char *a = json_string_value(json_object_get(v, "email"));
        const char *t = json_string_value(json_object_get(v, "text"));
        if (!json_is_object(v) || !a || !t)
            return value_fail(e, kind, col,
                              "email takes both \"email\" and \"text\"");
        if (!strchr(a, '@'))
            return value_fail(e, kind, col, "email is not valid");
        *out = json_pack("{s:s,s:s}", "email", a, "text", t);
        return true;
    }
    if (strcmp(kind, "status") == 0) {
        json_t *labels = status_labels(m, board, col);
        const char *label = s ? s : json_string_value(json_object_get(v,
                                                                      "label"));
        const json_t *index = json_object_get(v, "index");
        if (!label && json_is_integer(index)) {
            label = json_string_value(
                json_array_get(labels, (size_t)json_integer_value(index)));
            if (!label)
                return value_fail(e, kind, col,
                                  "index does not exist in column");
        }
        if (!label)
            return value_fail(e, kind, col,
                              "status takes {\"label\"} or {\"index\"}");
        bool known = false;
        size_t i;
        const json_t *l;
        json_array_foreach(labels, i, l) known |=
            strcmp(json_string_value(l), label) == 0;
        if (!known && !add_labels)
            return value_fail(e, kind, col, "label does not exist in column");
        if (!known)
            json_array_append_new(labels, json_string(label));
        *out = json_pack("{s:s}", "label", label);
        return true;
    }
    if (strcmp(kind, "date") == 0) {
        const char *d = s ? s : json_string_value(json_object_get(v, "date"));
        const char *t = s ? NULL : json_string_value(json_object_get(v,
                                                                     "time"));
        char dd[11] = "", tt[9] = "";
        if (s && strlen(s) >= 10) {
            snprintf(dd, sizeof(dd), "%.10s", s);
            if (strlen(s) == 19 && s[10] == ' ')
                snprintf(tt, sizeof(tt), "%s", s + 11);
            d = dd;
            t = tt[0] ? tt : NULL;
        }
        if (!d || !valid_date(d) || (t && !valid_time(t)))
            return value_fail(e, kind, col,
                              "date takes {\"date\": \"YYYY-MM-DD\", "
                              "\"time\": \"HH:MM:SS\"} in UTC");
        *out = t ? json_pack("{s:s,s:s}", "date", d, "time", t)
                 : json_pack("{s:s}", "date", d);
        return true;
    }
    if (strcmp(kind, "checkbox") == 0) {
        const json_t *c = json_object_get(v, "checked");
        if (json_is_true(c) ||
            (json_is_string(c) && strcmp(json_string_value(c), "true") == 0)) {
            *out = json_pack("{s:s}", "checked", "true");
            return true;
        }
        return value_fail(e, kind, col, "checkbox takes {\"checked\"}");
    }
    if (strcmp(kind, "link") == 0) {
        const char *u = json_string_value(json_object_get(v, "url"));
        const char *t = json_string_value(json_object_get(v, "text"));
        if (!u)
            return value_fail(e, kind, col, "link takes {\"url\", \"text\"}");
        *out = json_pack("{s:s,s:s}", "url", u, "text", t ? t : u);
        return true;
    }
    /* dropdown */
    const json_t *ls = json_object_get(v, "labels");
    if (!json_is_array(ls))
        ls = json_object_get(v, "ids");
    if (!json_is_array(ls))
        return value_fail(e, kind, col, "dropdown takes {\"labels\"}");
    *out = json_deep_copy(v);
    return true;
}

/* column_values (a JSON-encoded string, or an object) checked into a new
 * object of normalised values; NULL with e filled. */
static json_t *column_values(struct sb_monday *m, const char *board,
                             const json_t *arg, bool add_labels,
                             struct verr *e)
{
    json_t *cv;
    if (!arg || json_is_null(arg))
        return json_object();
    if (json_is_string(arg)) {
        cv = json_loads(json_string_value(arg), 0, NULL);
    } else {
        cv = json_incref((json_t *)arg);
    }
    if (!json_is_object(cv)) {
        json_decref(cv);
        snprintf(e->code, sizeof(e->code), "%s", "JsonParseException");
        snprintf(e->message, sizeof(e->message), "%s",
                 "Syntax error in JSON input");
        e->data = json_pack("{s:O}", "json", arg);
        return NULL;
    }
    json_t *out = json_object();
    const char *col;
    json_t *v;
    json_object_foreach(cv, col, v) {
        json_t *n;
        if (!column_value(m, board, col, v, add_labels, &n, e)) {
            json_decref(out);
            json_decref(cv);
            return NULL;
        }
        json_object_set_new(out, col, n);
    }
    json_decref(cv);
    return out;
}

/* The text of a stored column value, as monday's "text" field shows it. */
static char *value_text(const char *col, const json_t *v)
{
    const char *kind = column_kind(col);
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (!json_is_object(v) || !kind)
        return xstrdup("");
    const char *key = strcmp(kind, "phone") == 0      ? "phone"
                      : strcmp(kind, "email") == 0    ? "text"
                      : strcmp(kind, "status") == 0   ? "label"
                      : strcmp(kind, "long_text") == 0 ? "text"
                      : strcmp(kind, "link") == 0     ? "text"
                      : strcmp(kind, "checkbox") == 0 ? "checked"
                                                      : NULL;
    if (key)
        return xstrdup(json_string_value(json_object_get(v, key))
                           ? json_string_value(json_object_get(v, key))
                           : "");
    if (strcmp(kind, "date") == 0) {
        const char *d = json_string_value(json_object_get(v, "date"));
        const char *t = json_string_value(json_object_get(v, "time"));
        return xasprintf("%s%s%s", d ? d : "", t ? " " : "", t ? t : "");
    }
    char *dump = json_dumps(v, JSON_COMPACT);
    return dump ? dump : xstrdup("");
}

/* An item as the API returns it: id, name, column_values [{id, text,
 * value (a JSON-encoded string)}]. */
static json_t *item_out(const json_t *rec)
{
    json_t *cols = json_array();
    const char *col;
    const json_t *v;
    json_object_foreach(json_object_get(rec, "column_values"), col, v) {
        char *text = value_text(col, v);
        char *raw = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_array_append_new(cols, json_pack("{s:s,s:s,s:s}", "id", col,
                                              "text", text, "value",
                                              raw ? raw : "null"));
        free(text);
        free(raw);
    }
    return json_pack("{s:O,s:O,s:o}", "id", json_object_get(rec, "id"),
                     "name", json_object_get(rec, "name"), "column_values",
                     cols);
}

/* ---- Root fields -------------------------------------------------------- */

struct exec {
    struct sb *s;
    struct sb_monday *m;
    const struct sb_req *rq;
    json_t *data;
    json_t *errors;
};

static void field_error(struct exec *x, const char *alias, const char *code,
                        const char *message, json_t *data)
{
    json_t *e = gql_error(message, code, 200, data);
    json_object_set_new(e, "path", json_pack("[s]", alias));
    json_array_append_new(x->errors, e);
    json_object_set_new(x->data, alias, json_null());
}

static void verr_field(struct exec *x, const char *alias, struct verr *e)
{
    field_error(x, alias, e->code, e->message, e->data);
}

/* Whether an item's stored value matches one searched value. */
static bool search_hit(const char *col, const json_t *stored,
                       const json_t *want)
{
    const char *kind = column_kind(col);
    const char *w = json_string_value(want);
    bool empty = !stored || json_is_null(stored);
    if (!w || !*w)
        return empty;
    if (empty)
        return false;
    char *text = value_text(col, stored);
    bool hit = false;
    if (strcmp(kind, "phone") == 0) {
        if (digits_only(w, 1, 20, false)) {
            char d[32];
            size_t k = 0;
            for (const char *p = text; *p && k < sizeof(d) - 1; p++)
                if (isdigit((unsigned char)*p))
                    d[k++] = *p;
            d[k] = '\0';
            hit = strstr(d, w) != NULL;
        } else {
            const char *cc = json_string_value(
                json_object_get(stored, "countryShortName"));
            hit = cc && strcasecmp(cc, w) == 0;
        }
    } else if (strcmp(kind, "text") == 0) {
        hit = strcasecmp(text, w) == 0;
    } else if (strcmp(kind, "date") == 0) {
        hit = strncmp(text, w, 10) == 0 && strlen(w) >= 10;
    } else {
        hit = strcmp(text, w) == 0;
    }
    free(text);
    return hit;
}

static void items_page_by_column_values(struct exec *x, const char *alias,
                                        const json_t *args)
{
    char board[64];
    if (!id_arg(args, "board_id", board) || !board_exists(x->m, board)) {
        field_error(x, alias, "InvalidBoardIdException",
                    "Board not found", NULL);
        return;
    }
    const json_t *columns = json_object_get(args, "columns");
    const json_t *lim = json_object_get(args, "limit");
    long long limit = json_is_integer(lim) ? json_integer_value(lim) : 25;
    if (limit < 1 || limit > 500) {
        field_error(x, alias, "InvalidArgumentException",
                    "limit must be between 1 and 500", NULL);
        return;
    }
    if (!json_is_array(columns) || !json_array_size(columns)) {
        field_error(x, alias, "InvalidArgumentException",
                    "columns must hold at least one column", NULL);
        return;
    }
    size_t i;
    const json_t *c;
    json_array_foreach(columns, i, c) {
        const char *col = json_string_value(json_object_get(c, "column_id"));
        const char *kind = col ? column_kind(col) : NULL;
        if (!kind) {
            field_error(x, alias, "InvalidColumnIdException",
                        "This column ID doesn't exist for the board",
                        json_pack("{s:s}", "column_id", col ? col : ""));
            return;
        }
        if (strcmp(kind, "link") == 0 || strcmp(kind, "checkbox") == 0 ||
            strcmp(kind, "dropdown") == 0) {
            /* supported by monday, not by this sandbox's matcher */
            field_error(x, alias, "InvalidArgumentException",
                        "the sandbox does not search this column type",
                        json_pack("{s:s}", "column_id", col));
            return;
        }
    }
    json_t *items = json_array();
    size_t k;
    const json_t *rec;
    json_array_foreach(x->m->items, k, rec) {
        if ((long long)json_array_size(items) >= limit)
            break;
        if (strcmp(json_string_value(json_object_get(rec, "board_id")),
                   board) != 0)
            continue;
        bool all = true;
        json_array_foreach(columns, i, c) {
            const char *col = json_string_value(json_object_get(c,
                                                                "column_id"));
            const json_t *stored = json_object_get(
                json_object_get(rec, "column_values"), col);
            bool any = false;
            size_t j;
            const json_t *w;
            json_array_foreach(json_object_get(c, "column_values"), j, w)
                any |= search_hit(col, stored, w);
            all &= any;
        }
        if (all)
            json_array_append_new(items, item_out(rec));
    }
    json_object_set_new(x->data, alias,
                        json_pack("{s:n,s:o}", "cursor", "items", items));
}

static void create_item(struct exec *x, const char *alias,
                        const json_t *args)
{
    char board[64];
    if (!id_arg(args, "board_id", board) || !board_exists(x->m, board)) {
        field_error(x, alias, "InvalidBoardIdException",
                    "Board not found", NULL);
        return;
    }
    const char *name = json_string_value(json_object_get(args, "item_name"));
    if (!name || !*name) {
        field_error(x, alias, "InvalidArgumentException",
                    "item_name must not be empty", NULL);
        return;
    }
    if (strlen(name) > 255) {
        field_error(x, alias, "ItemNameTooLongException",
                    "Item name is too long", NULL);
        return;
    }
    const json_t *group = json_object_get(args, "group_id");
    if (group && !json_is_null(group) && !json_is_string(group)) {
        field_error(x, alias, "InvalidGroupIdException",
                    "Group not found", NULL);
        return;
    }
    struct verr e = {0};
    json_t *cv = column_values(
        x->m, board, json_object_get(args, "column_values"),
        json_is_true(json_object_get(args, "create_labels_if_missing")), &e);
    if (!cv) {
        verr_field(x, alias, &e);
        return;
    }
    json_t *id = json_sprintf("%lld", x->m->next_item++);
    char ts[32];
    cs_rfc3339_ms(x->rq->received_ms, ts);
    json_t *rec = json_pack(
        "{s:O,s:s,s:s,s:s,s:o,s:s}", "id", id, "board_id", board, "group_id",
        json_is_string(group) ? json_string_value(group) : "topics", "name",
        name, "column_values", cv, "created_at", ts);
    json_array_append(x->m->items, rec);
    json_object_set_new(x->m->by_id, json_string_value(id), rec);
    json_object_set_new(x->data, alias, json_pack("{s:o}", "id", id));
}

static json_t *item_in_board(struct exec *x, const char *alias,
                             const json_t *args, char board[64])
{
    char item[64];
    if (!id_arg(args, "board_id", board) || !board_exists(x->m, board)) {
        field_error(x, alias, "InvalidBoardIdException", "Board not found",
                    NULL);
        return NULL;
    }
    json_t *rec = id_arg(args, "item_id", item)
                      ? json_object_get(x->m->by_id, item)
                      : NULL;
    if (!rec || strcmp(json_string_value(json_object_get(rec, "board_id")),
                       board) != 0) {
        field_error(x, alias, "InvalidItemIdException",
                    "Item not found in board", NULL);
        return NULL;
    }
    return rec;
}

static void change_values(struct exec *x, const char *alias,
                          const json_t *args)
{
    char board[64];
    json_t *rec = item_in_board(x, alias, args, board);
    if (!rec)
        return;
    struct verr e = {0};
    const json_t *arg = json_object_get(args, "column_values");
    if (!arg || json_is_null(arg)) {
        field_error(x, alias, "InvalidArgumentException",
                    "column_values must not be empty", NULL);
        return;
    }
    json_t *cv = column_values(
        x->m, board, arg,
        json_is_true(json_object_get(args, "create_labels_if_missing")), &e);
    if (!cv) {
        verr_field(x, alias, &e);
        return;
    }
    json_t *have = json_object_get(rec, "column_values");
    const char *col;
    json_t *v;
    json_object_foreach(cv, col, v) {
        if (json_is_null(v))
            json_object_del(have, col);
        else
            json_object_set(have, col, v);
    }
    json_decref(cv);
    json_object_set_new(x->data, alias,
                        json_pack("{s:O}", "id", json_object_get(rec, "id")));
}

/* The text of an HTML body: tags dropped, <br> and </p> as newlines,
 * the five entities decoded. */
static char *text_body(const char *html)
{
    struct buf b;
    buf_init(&b, strlen(html) + 1);
    for (const char *p = html; *p;) {
        if (*p == '<') {
            const char *end = strchr(p, '>');
            if (!end)
                break;
            if (strncasecmp(p, "<br", 3) == 0 || strncasecmp(p, "</p", 3) == 0)
                (void)!buf_adds(&b, "\n");
            p = end + 1;
            continue;
        }
        static const struct {
            const char *ent, *c;
        } ents[] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"},
                    {"&quot;", "\""}, {"&#39;", "'"}};
        bool done = false;
        for (size_t i = 0; i < CS_ARRAY_LEN(ents) && !done; i++)
            if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0) {
                (void)!buf_adds(&b, ents[i].c);
                p += strlen(ents[i].ent);
                done = true;
            }
        if (!done)
            (void)!buf_add(&b, p++, 1);
    }
    char *t = buf_take(&b, NULL);
    return t ? t : xstrdup("");
}

static void create_update(struct exec *x, const char *alias,
                          const json_t *args)
{
    char item[64];
    json_t *rec = id_arg(args, "item_id", item)
                      ? json_object_get(x->m->by_id, item)
                      : NULL;
    if (!rec) {
        field_error(x, alias, "InvalidItemIdException", "Item not found",
                    NULL);
        return;
    }
    const char *body = json_string_value(json_object_get(args, "body"));
    if (!body || !*body) {
        field_error(x, alias, "InvalidArgumentException",
                    "body must not be empty", NULL);
        return;
    }
    json_t *id = json_sprintf("%lld", x->m->next_update++);
    char ts[32];
    cs_rfc3339_ms(x->rq->received_ms, ts);
    char *tb = text_body(body);
    json_array_append_new(
        x->m->updates, json_pack("{s:O,s:s,s:s,s:s,s:s}", "id", id, "item_id",
                                 item, "body", body, "text_body", tb,
                                 "created_at", ts));
    free(tb);
    json_object_set_new(x->data, alias, json_pack("{s:o}", "id", id));
}

static void items_query(struct exec *x, const char *alias,
                        const json_t *args)
{
    const json_t *ids = json_object_get(args, "ids");
    json_t *out = json_array();
    size_t i;
    const json_t *idv;
    json_array_foreach(ids, i, idv) {
        char id[64];
        if (json_is_integer(idv))
            snprintf(id, sizeof(id), "%lld",
                     (long long)json_integer_value(idv));
        else
            snprintf(id, sizeof(id), "%s",
                     json_string_value(idv) ? json_string_value(idv) : "");
        const json_t *rec = json_object_get(x->m->by_id, id);
        if (!rec)
            continue;
        json_t *it = item_out(rec);
        json_t *ups = json_array();
        size_t n = json_array_size(x->m->updates);
        for (size_t k = n; k-- > 0 && json_array_size(ups) < 100;) {
            const json_t *u = json_array_get(x->m->updates, k);
            if (strcmp(json_string_value(json_object_get(u, "item_id")),
                       id) == 0)
                json_array_append(ups, (json_t *)u);
        }
        json_object_set_new(it, "updates", ups);
        json_array_append_new(out, it);
    }
    json_object_set_new(x->data, alias, out);
}

/* boards (ids) { id name columns (ids) { id title type } }: a board is
 * every id board_exists() takes; its columns are the ids the nested
 * columns field asks for that have a type (the sandbox's boards have
 * every column whose id names a type), else the columns its items use. */
static void boards_query(struct exec *x, const char *alias,
                         const json_t *args, const json_t *sel)
{
    const json_t *want = NULL;
    size_t i;
    const json_t *f;
    json_array_foreach(sel, i, f) {
        if (strcmp(json_string_value(json_object_get(f, "name")),
                   "columns") == 0)
            want = json_object_get(json_object_get(f, "args"), "ids");
    }
    json_t *out = json_array();
    const json_t *idv;
    json_array_foreach(json_object_get(args, "ids"), i, idv) {
        char id[64];
        if (json_is_integer(idv))
            snprintf(id, sizeof(id), "%lld",
                     (long long)json_integer_value(idv));
        else
            snprintf(id, sizeof(id), "%s",
                     json_string_value(idv) ? json_string_value(idv) : "");
        if (!board_exists(x->m, id))
            continue;
        json_t *cols = json_pack("[{s:s,s:s,s:s}]", "id", "name", "title",
                                 "Name", "type", "name");
        json_t *seen = json_object();
        size_t k;
        const json_t *c;
        if (json_is_array(want)) {
            json_array_foreach(want, k, c) {
                const char *cid = json_string_value(c);
                if (cid && column_kind(cid))
                    json_object_set_new(seen, cid, json_true());
            }
        } else {
            const json_t *rec;
            json_array_foreach(x->m->items, k, rec) {
                if (strcmp(json_string_value(json_object_get(rec,
                                                             "board_id")),
                           id) != 0)
                    continue;
                const char *col;
                const json_t *v;
                json_object_foreach(json_object_get(rec, "column_values"),
                                    col, v)
                    json_object_set_new(seen, col, json_true());
            }
        }
        const char *col;
        const json_t *v;
        json_object_foreach(seen, col, v)
            json_array_append_new(cols, json_pack("{s:s,s:s,s:s}", "id", col,
                                                  "title", col, "type",
                                                  column_kind(col)));
        json_decref(seen);
        json_array_append_new(out, json_pack("{s:s,s:o,s:o}", "id", id,
                                             "name",
                                             json_sprintf("Board %s", id),
                                             "columns", cols));
    }
    json_object_set_new(x->data, alias, out);
}

/* The complexity a root field costs. */
static long long cost_of(const char *field, const json_t *args)
{
    if (strcmp(field, "complexity") == 0)
        return 0;
    if (strcmp(field, "items_page_by_column_values") == 0) {
        const json_t *l = json_object_get(args, "limit");
        return 1000 + 10 * (json_is_integer(l) ? json_integer_value(l) : 25);
    }
    if (strcmp(field, "items") == 0 || strcmp(field, "boards") == 0)
        return 1000;
    return 10000;
}

static const char *const query_fields[] = {
    "complexity", "items_page_by_column_values", "items", "boards", NULL};
static const char *const mutation_fields[] = {
    "complexity", "create_item", "change_multiple_column_values",
    "create_update", NULL};

static bool field_known(const char *f, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(f, *list) == 0)
            return true;
    return false;
}

/* ---- Limits ------------------------------------------------------------- */

static size_t window_count(struct sb_monday *m, int64_t now)
{
    while (m->wlen && m->window[m->whead] <= now - MINUTE_MS) {
        m->whead = (m->whead + 1) % m->wcap;
        m->wlen--;
    }
    return m->wlen;
}

/* 0 when the request may go, else the seconds to wait (rate limit). */
static long long rate_take(struct sb_monday *m, int64_t now)
{
    if (m->rate <= 0)
        return 0;
    if (!m->window) {
        m->wcap = (size_t)m->rate;
        m->window = xcalloc(m->wcap, sizeof(*m->window));
    }
    if (window_count(m, now) >= m->wcap) {
        int64_t free_at = m->window[m->whead] + MINUTE_MS;
        return (free_at - now + 999) / 1000;
    }
    m->window[(m->whead + m->wlen) % m->wcap] = now;
    m->wlen++;
    return 0;
}

static void limited(struct sb_resp *out, const char *code,
                    const char *message, long long wait_s)
{
    json_t *e = gql_error(message, code, 429,
                          json_pack("{s:I}", "retry_in_seconds",
                                    (json_int_t)wait_s));
    /* retry_in_seconds also where API 2025-01 and later put it */
    json_object_set_new(json_object_get(e, "extensions"), "retry_in_seconds",
                        json_integer(wait_s));
    sb_resp_json(out, 429, errors_body(e));
    sb_resp_header(out, "Retry-After: %lld", wait_s);
}

/* ---- Handler ------------------------------------------------------------ */

static bool authorised(struct sb_monday *m, const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a)
        return false;
    if (strncasecmp(a, "Bearer ", 7) == 0)
        a += 7;
    while (*a == ' ')
        a++;
    if (!*a)
        return false;
    if (!m->ntokens)
        return true;
    for (size_t i = 0; i < m->ntokens; i++)
        if (strcmp(a, m->tokens[i]) == 0)
            return true;
    return false;
}

static void answer_errors(struct sb_resp *out, const char *message,
                          const char *code)
{
    sb_resp_json(out, 200, errors_body(gql_error(message, code, 200, NULL)));
}

static void execute(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out)
{
    struct sb_monday *m = state(s);
    json_t *b = sb_body_json(rq);
    const char *query = json_string_value(json_object_get(b, "query"));
    json_t *vars = json_object_get(b, "variables");
    if (json_is_string(vars))
        vars = json_loads(json_string_value(vars), 0, NULL);
    else
        json_incref(vars);
    if (!json_is_object(b) || !query || (vars && !json_is_object(vars) &&
                                         !json_is_null(vars))) {
        sb_resp_json(out, 400,
                     errors_body(gql_error(
                         "No query string was present", "BAD_REQUEST", 400,
                         NULL)));
        json_decref(vars);
        json_decref(b);
        return;
    }
    struct gql_doc doc;
    char perr[200];
    bool ok = gql_read(query, vars, &doc, perr) == 0;
    json_t *fields = doc.fields;
    bool mutation = doc.mutation;
    const char *vname;
    json_t *vtype;
    if (!ok)
        answer_errors(out, perr, "PARSE_ERROR");
    if (ok) {
        json_object_foreach(doc.declared, vname, vtype) {
            const char *t = json_string_value(vtype);
            char m2[200];
            if (!known_type(t)) {
                snprintf(m2, sizeof(m2), "%s isn't a defined input type "
                                         "(on $%s)", t, vname);
                answer_errors(out, m2, "variableRequiresValidType");
                ok = false;
                break;
            }
            if (!fits(t, json_object_get(vars, vname))) {
                snprintf(m2, sizeof(m2),
                         "Variable $%s of type %s was provided invalid "
                         "value", vname, t);
                answer_errors(out, m2, "INVALID_VARIABLE");
                ok = false;
                break;
            }
        }
    }
    size_t i;
    const json_t *f;
    if (ok) {
        json_array_foreach(fields, i, f) {
            const char *fn = json_string_value(json_object_get(f, "name"));
            if (!field_known(fn, mutation ? mutation_fields : query_fields)) {
                char m2[200];
                snprintf(m2, sizeof(m2), "Field '%s' doesn't exist on type "
                                         "'%s'", fn,
                         mutation ? "Mutation" : "Query");
                answer_errors(out, m2, "undefinedField");
                ok = false;
                break;
            }
        }
    }
    if (!ok)
        goto out_free;

    /* The complexity budget: the whole query fits, or nothing runs. */
    long long cost = 0;
    json_array_foreach(fields, i, f) cost += cost_of(
        json_string_value(json_object_get(f, "name")),
        json_object_get(f, "args"));
    int64_t now = cs_mono_ms();
    if (m->budget_from && now - m->budget_from >= MINUTE_MS)
        m->budget_from = 0;
    if (!m->budget_from) {
        m->budget_from = now;
        m->budget_used = 0;
    }
    long long reset_s = (m->budget_from + MINUTE_MS - now + 999) / 1000;
    if (m->budget_used + cost > m->budget) {
        limited(out, "COMPLEXITY_BUDGET_EXHAUSTED",
                "Complexity budget exhausted", reset_s);
        goto out_free;
    }
    long long before = m->budget - m->budget_used;
    m->budget_used += cost;

    struct exec x = {s, m, rq, json_object(), json_array()};
    json_array_foreach(fields, i, f) {
        const char *fn = json_string_value(json_object_get(f, "name"));
        const char *alias = json_string_value(json_object_get(f, "alias"));
        const json_t *args = json_object_get(f, "args");
        if (strcmp(fn, "complexity") == 0)
            json_object_set_new(
                x.data, alias,
                json_pack("{s:I,s:I,s:I,s:I}", "before", (json_int_t)before,
                          "query", (json_int_t)cost, "after",
                          (json_int_t)(before - cost), "reset_in_x_seconds",
                          (json_int_t)reset_s));
        else if (strcmp(fn, "items_page_by_column_values") == 0)
            items_page_by_column_values(&x, alias, args);
        else if (strcmp(fn, "items") == 0)
            items_query(&x, alias, args);
        else if (strcmp(fn, "boards") == 0)
            boards_query(&x, alias, args, json_object_get(f, "fields"));
        else if (strcmp(fn, "create_item") == 0)
            create_item(&x, alias, args);
        else if (strcmp(fn, "change_multiple_column_values") == 0)
            change_values(&x, alias, args);
        else
            create_update(&x, alias, args);
    }
    json_t *resp = json_pack("{s:o,s:i}", "data", x.data, "account_id",
                             MONDAY_ACCOUNT);
    if (json_array_size(x.errors))
        json_object_set_new(resp, "errors", x.errors);
    else
        json_decref(x.errors);
    char rid[37];
    cs_uuid4(rid);
    json_object_set_new(resp, "extensions",
                        json_pack("{s:s}", "request_id", rid));
    sb_resp_json(out, 200, resp);
out_free:
    gql_doc_release(&doc);
    json_decref(vars);
    json_decref(b);
}

static bool version_ok(const char *v)
{
    return !v || (strlen(v) == 7 && isdigit((unsigned char)v[0]) &&
                  isdigit((unsigned char)v[1]) &&
                  isdigit((unsigned char)v[2]) &&
                  isdigit((unsigned char)v[3]) && v[4] == '-' &&
                  isdigit((unsigned char)v[5]) &&
                  isdigit((unsigned char)v[6]));
}

void monday_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_monday *m = state(s);
    if (strcmp(rq->sub, "/v2") != 0 && strcmp(rq->sub, "/v2/") != 0) {
        sb_resp_json(out, 404, monday_error_body(404));
        return;
    }
    if (rq->method != HTTP_POST) {
        sb_resp_json(out, 405, monday_error_body(405));
        return;
    }
    if (!authorised(m, rq)) {
        sb_resp_json(out, 401, monday_error_body(401));
        return;
    }
    if (!version_ok(sb_header(rq, "api-version"))) {
        sb_resp_json(out, 400,
                     errors_body(gql_error("Invalid API version: use "
                                           "YYYY-MM",
                                           "InvalidVersionException", 400,
                                           NULL)));
        return;
    }
    int64_t now = cs_mono_ms();
    long long wait = rate_take(m, now);
    if (wait > 0) {
        limited(out, "RATE_LIMIT_EXCEEDED", "Rate Limit Exceeded", wait);
        return;
    }
    if (m->daily > 0 && m->daily_used >= m->daily) {
        int64_t wall = cs_now_ms();
        limited(out, "DAILY_LIMIT_EXCEEDED", "Daily limit exceeded",
                (86400000 - wall % 86400000 + 999) / 1000);
        return;
    }
    m->daily_used++;
    execute(s, rq, out);
}
