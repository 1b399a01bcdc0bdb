/*
 * pipedrive.c - the Pipedrive part of the sandbox, under /pipedrive (one
 * company):
 *
 *   GET  /api/v2/persons/search?term&fields&exact_match&limit&cursor
 *   GET  /api/v2/persons?owner_id&org_id&updated_since&sort_by&
 *        sort_direction&limit&cursor
 *   POST /api/v2/persons      GET|PATCH /api/v2/persons/{id}
 *   GET  /api/v1/notes?person_id&deal_id&org_id&start&limit&sort
 *   POST /api/v1/notes
 *   GET  /api/v1/users/me     the token's user and its company
 *   GET  /api/v2/deals?person_id&pipeline_id&stage_id&status&owner_id&
 *        org_id&limit&cursor      POST /api/v2/deals
 *   GET  /api/v2/activities?person_id&deal_id&owner_id&org_id&sort_by&
 *        sort_direction&limit&cursor      POST /api/v2/activities
 *
 * Shapes follow the API reference (v2 for persons, deals and activities,
 * v1 for notes): answers are the envelope {"success": true, "data",
 * "additional_data"} with cursor pagination (next_cursor) in v2 and
 * offset pagination (start, limit, more_items_in_collection, next_start;
 * "data": null for an empty list) in v1; errors are {"success": false,
 * "error", "error_info", "data": null, "additional_data": null}.
 *
 * Auth: the x-api-token header (the api_token query parameter, the old
 * way, is accepted too) or "Authorization: Bearer"; any token unless
 * --pipedrive-token names some. Otherwise 401 {"success": false, "error":
 * "unauthorized access", "errorCode": 401, "error_info": ...}.
 *
 * v2 is strict as documented: ids are integers, booleans true/false, no
 * unknown properties, custom_fields keyed by 40-character hashes; a
 * person needs a name, a deal a title, a note content and something to
 * attach to, an activity a known type (call, meeting, task, deadline,
 * email, lunch). Violations give 400 with "Validation failed: ..." (the
 * wording is the sandbox's). A person, deal or participant that does not
 * exist gives 404. Pipedrive accepts duplicate persons, and so does the
 * sandbox.
 *
 * Rate limits: a rolling 2-second window of --pipedrive-rate requests per
 * token (20 by default, the Lite plan's API-token burst) and of 10
 * search requests per token, and a daily budget of --pipedrive-daily
 * tokens (30,000 by default) spent at the documented v2 costs (search 20,
 * list 10, get 1, create or update 5; v1 notes: list 20, create 10).
 * Every answer carries x-ratelimit-limit, x-ratelimit-remaining,
 * x-ratelimit-reset (seconds), x-daily-ratelimit-token-limit and
 * x-daily-ratelimit-token-remaining, and API-token POST, PUT and PATCH
 * answers x-daily-requests-left (of 10,000). Past a limit: 429 {"success":
 * false, "error": "Request over limit", ...}.
 */
#define _GNU_SOURCE /* strcasestr */
#include "sandbox.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WINDOW_MS 2000
#define SEARCH_RATE 10
#define FAIR_USE 10000
#define MAX_WINDOWS (SB_MAX_TOKENS + 1)
#define ERROR_INFO                                                           \
    "Please check developers.pipedrive.com for more information about "      \
    "Pipedrive API."

enum { T_PERSONS, T_NOTES, T_DEALS, T_ACTIVITIES, T_COUNT };

static const char *const type_names[T_COUNT] = {"persons", "notes", "deals",
                                                "activities"};

struct ring {
    int64_t *at;
    size_t cap, head, len;
};

struct window {
    char *token;           /* NULL: free slot */
    struct ring burst;
    struct ring search;
};

struct sb_pd {
    json_t *list[T_COUNT];  /* records in creation order */
    json_t *by_id[T_COUNT]; /* "<id>" -> record */
    long long next_id[T_COUNT];
    long long tokens_used;  /* of the daily budget */
    long long writes;       /* API-token POST/PUT/PATCH, fair use */
    struct window win[MAX_WINDOWS];
};

/* ---- Lifecycle ---------------------------------------------------------- */

struct sb_pd *pd_new(void)
{
    struct sb_pd *p = xcalloc(1, sizeof(*p));
    for (int i = 0; i < T_COUNT; i++) {
        p->list[i] = json_array();
        p->by_id[i] = json_object();
        p->next_id[i] = 1;
    }
    return p;
}

void pd_free(struct sb_pd *p)
{
    if (!p)
        return;
    for (int i = 0; i < T_COUNT; i++) {
        json_decref(p->list[i]);
        json_decref(p->by_id[i]);
    }
    for (int i = 0; i < MAX_WINDOWS; i++) {
        free(p->win[i].token);
        free(p->win[i].burst.at);
        free(p->win[i].search.at);
    }
    free(p);
}

json_t *pd_records(struct sb *s, const char *type)
{
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(type, type_names[i]) == 0)
            return json_incref(s->pd->list[i]);
    return NULL;
}

/* ---- Small helpers ------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

static json_t *find(struct sb *s, int type, long long id)
{
    char k[24];
    snprintf(k, sizeof(k), "%lld", id);
    return json_object_get(s->pd->by_id[type], k);
}

static void store(struct sb *s, int type, json_t *rec)
{
    char k[24];
    snprintf(k, sizeof(k), "%lld",
             (long long)json_integer_value(json_object_get(rec, "id")));
    json_object_set(s->pd->by_id[type], k, rec);
    json_array_append(s->pd->list[type], rec);
}

/* v2 times are RFC 3339; v1 "YYYY-MM-DD HH:MM:SS" in UTC. */
static json_t *time_v2(int64_t ms)
{
    char ts[32];
    cs_rfc3339_s(ms, ts);
    return json_string(ts);
}

static json_t *time_v1(int64_t ms)
{
    char ts[32];
    cs_rfc3339_s(ms, ts);
    ts[10] = ' ';
    ts[19] = '\0';
    return json_string(ts);
}

/* The record as the API shows it: without the sandbox's "_" keys. */
static json_t *pub(const json_t *rec)
{
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rec, k, v) {
        if (k[0] != '_')
            json_object_set(o, k, v);
    }
    return o;
}

static void ok(struct sb_resp *out, int status, json_t *data,
               json_t *additional)
{
    json_t *b = json_pack("{s:b,s:o}", "success", 1, "data",
                          data ? data : json_null());
    if (additional)
        json_object_set_new(b, "additional_data", additional);
    sb_resp_json(out, status, b);
}

static void fail(struct sb_resp *out, int status, const char *error)
{
    sb_resp_json(out, status,
                 json_pack("{s:b,s:s,s:s,s:n,s:n}", "success", 0, "error",
                           error, "error_info", ERROR_INFO, "data",
                           "additional_data"));
}

static void failf(struct sb_resp *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void failf(struct sb_resp *out, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fail(out, status, msg);
}

json_t *pd_error_body(int status)
{
    if (status == 401)
        return json_pack("{s:b,s:s,s:i,s:s}", "success", 0, "error",
                         "unauthorized access", "errorCode", 401,
                         "error_info", "Please check developers.pipedrive.com");
    return json_pack("{s:b,s:s,s:s,s:n,s:n}", "success", 0, "error",
                     status == 429 ? "Request over limit" : sb_reason(status),
                     "error_info", ERROR_INFO, "data", "additional_data");
}

/* ---- Auth and rate limits ----------------------------------------------- */

/* The request's token: x-api-token, the api_token query parameter, or a
 * Bearer token; *bearer says which. xmalloc'd, or NULL. */
static char *token_of(const struct sb_req *rq, bool *bearer)
{
    *bearer = false;
    const char *t = sb_header(rq, "x-api-token");
    if (t && *t)
        return xstrdup(t);
    char *q = sb_query_param(rq->query, "api_token");
    if (q && *q)
        return q;
    free(q);
    const char *a = sb_header(rq, "authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ')
            a++;
        if (*a) {
            *bearer = true;
            return xstrdup(a);
        }
    }
    return NULL;
}

static bool token_known(struct sb *s, const char *tok)
{
    if (!tok)
        return false;
    if (!s->npd_tokens)
        return true;
    for (size_t i = 0; i < s->npd_tokens; i++)
        if (strcmp(tok, s->pd_tokens[i]) == 0)
            return true;
    return false;
}

static struct window *window_of(struct sb *s, const char *tok)
{
    struct window *w = s->pd->win;
    for (int i = 0; i < MAX_WINDOWS - 1; i++) {
        if (!w[i].token) {
            w[i].token = xstrdup(tok);
            return &w[i];
        }
        if (strcmp(w[i].token, tok) == 0)
            return &w[i];
    }
    return &w[MAX_WINDOWS - 1]; /* more tokens than slots share one */
}

static size_t ring_count(struct ring *r, int64_t now)
{
    while (r->len && r->at[r->head] <= now - WINDOW_MS) {
        r->head = (r->head + 1) % r->cap;
        r->len--;
    }
    return r->len;
}

static bool ring_take(struct ring *r, size_t cap, int64_t now)
{
    if (!r->at) {
        r->cap = cap;
        r->at = xcalloc(cap, sizeof(*r->at));
    }
    if (ring_count(r, now) >= r->cap)
        return false;
    r->at[(r->head + r->len) % r->cap] = now;
    r->len++;
    return true;
}

/* Seconds until the oldest request leaves the window (at least 1). */
static long long ring_reset_s(const struct ring *r, int64_t now)
{
    if (!r->len)
        return 0;
    int64_t wait = r->at[r->head] + WINDOW_MS - now;
    return wait <= 0 ? 1 : (wait + 999) / 1000;
}

void pd_rate_headers(struct sb *s, const struct sb_req *rq,
                     struct sb_resp *out)
{
    bool bearer;
    char *tok = token_of(rq, &bearer);
    int64_t now = cs_mono_ms();
    long long used = 0, reset = 0;
    if (tok) {
        struct window *w = window_of(s, tok);
        used = (long long)ring_count(&w->burst, now);
        reset = ring_reset_s(&w->burst, now);
    }
    long long left = s->pd_rate - used;
    long long dleft = s->pd_daily - s->pd->tokens_used;
    sb_resp_header(out, "x-ratelimit-limit: %d", s->pd_rate);
    sb_resp_header(out, "x-ratelimit-remaining: %lld", left < 0 ? 0 : left);
    sb_resp_header(out, "x-ratelimit-reset: %lld", reset ? reset : 2);
    sb_resp_header(out, "x-daily-ratelimit-token-limit: %lld", s->pd_daily);
    sb_resp_header(out, "x-daily-ratelimit-token-remaining: %lld",
                   dleft < 0 ? 0 : dleft);
    bool write = rq->method == HTTP_POST || rq->method == HTTP_PUT ||
                 rq->method == HTTP_PATCH;
    if (tok && !bearer && write) {
        long long wl = FAIR_USE - s->pd->writes;
        sb_resp_header(out, "x-daily-requests-left: %lld", wl < 0 ? 0 : wl);
    }
    free(tok);
}

/* The documented token cost of an operation. */
static long long cost_of(const struct sb_req *rq)
{
    const char *p = rq->sub;
    bool get = rq->method == HTTP_GET;
    if (strncmp(p, "/api/v1/notes", 13) == 0 || strncmp(p, "/v1/notes", 9) ==
                                                    0)
        return get ? 20 : 10;
    if (strcmp(p, "/api/v2/persons/search") == 0)
        return 20;
    if (!get)
        return 5;
    /* A list, or one item by id. */
    const char *last = strrchr(p, '/');
    return last && isdigit((unsigned char)last[1]) ? 1 : 10;
}

/* ---- Validation --------------------------------------------------------- */

/*
 * Body properties: i integer id (> 0), s string, b boolean, n number,
 * o object, I list of integer ids, E emails/phones [{value, primary,
 * label}], P participants [{person_id, primary}], a any list, d date
 * YYYY-MM-DD, t time HH:MM[:SS], C custom_fields; '*' marks required.
 */
struct vfield {
    const char *name;
    char type;
    bool required;
};

static const struct vfield person_body[] = {
    {"name", 's', true},        {"owner_id", 'i', false},
    {"org_id", 'i', false},     {"add_time", 's', false},
    {"update_time", 's', false}, {"emails", 'E', false},
    {"phones", 'E', false},     {"visible_to", 'i', false},
    {"label_ids", 'I', false},  {"marketing_status", 's', false},
    {"custom_fields", 'C', false}, {NULL, 0, false}};

static const struct vfield deal_body[] = {
    {"title", 's', true},        {"owner_id", 'i', false},
    {"person_id", 'i', false},   {"org_id", 'i', false},
    {"pipeline_id", 'i', false}, {"stage_id", 'i', false},
    {"value", 'n', false},       {"currency", 's', false},
    {"add_time", 's', false},    {"update_time", 's', false},
    {"status", 's', false},      {"probability", 'n', false},
    {"lost_reason", 's', false}, {"visible_to", 'i', false},
    {"expected_close_date", 'd', false}, {"label_ids", 'I', false},
    {"custom_fields", 'C', false}, {NULL, 0, false}};

static const struct vfield activity_body[] = {
    {"subject", 's', false},   {"type", 's', false},
    {"owner_id", 'i', false},  {"deal_id", 'i', false},
    {"lead_id", 's', false},   {"person_id", 'i', false},
    {"org_id", 'i', false},    {"project_id", 'i', false},
    {"due_date", 'd', false},  {"due_time", 't', false},
    {"duration", 't', false},  {"busy", 'b', false},
    {"done", 'b', false},      {"location", 'o', false},
    {"participants", 'P', false}, {"attendees", 'a', false},
    {"public_description", 's', false}, {"priority", 'i', false},
    {"note", 's', false},      {NULL, 0, false}};

static bool is_id(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) > 0;
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool date_ok(const char *s)
{
    return s && strlen(s) == 10 && digits(s, 4) && s[4] == '-' &&
           digits(s + 5, 2) && s[7] == '-' && digits(s + 8, 2);
}

static int two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool time_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return (n == 5 || n == 8) && digits(s, 2) && s[2] == ':' &&
           digits(s + 3, 2) && two(s) < 24 && two(s + 3) < 60 &&
           (n == 5 || (s[5] == ':' && digits(s + 6, 2) && two(s + 6) < 60));
}

static bool custom_key(const char *k)
{
    if (strlen(k) != 40)
        return false;
    for (const char *p = k; *p; p++)
        if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
            return false;
    return true;
}

/* Why v is not a valid value of type t, or NULL. */
static const char *type_error(char t, const json_t *v)
{
    size_t i;
    const json_t *e;
    switch (t) {
    case 'i': return is_id(v) ? NULL : "must be an integer";
    case 's': return json_is_string(v) ? NULL : "must be a string";
    case 'b': return json_is_boolean(v) ? NULL : "must be a boolean";
    case 'n': return json_is_number(v) ? NULL : "must be a number";
    case 'o': return json_is_object(v) ? NULL : "must be an object";
    case 'a': return json_is_array(v) ? NULL : "must be an array";
    case 'd':
        return date_ok(json_string_value(v)) ? NULL
                                             : "must be a date YYYY-MM-DD";
    case 't':
        return time_ok(json_string_value(v)) ? NULL
                                             : "must be a time HH:MM";
    case 'I':
        if (!json_is_array(v))
            return "must be an array of integers";
        json_array_foreach(v, i, e) {
            if (!is_id(e))
                return "must be an array of integers";
        }
        return NULL;
    case 'E':
        if (!json_is_array(v))
            return "must be an array";
        json_array_foreach(v, i, e) {
            const json_t *p = json_object_get(e, "primary");
            const json_t *l = json_object_get(e, "label");
            if (!json_is_object(e) || !jstr(e, "value") ||
                (p && !json_is_boolean(p)) || (l && !json_is_string(l)) ||
                json_object_size(e) > (size_t)(1 + !!p + !!l))
                return "items must be {value, primary, label} with a "
                       "non-empty value";
        }
        return NULL;
    case 'P':
        if (!json_is_array(v))
            return "must be an array";
        json_array_foreach(v, i, e) {
            const json_t *p = json_object_get(e, "primary");
            if (!json_is_object(e) || !is_id(json_object_get(e, "person_id")) ||
                (p && !json_is_boolean(p)))
                return "items must be {person_id, primary}";
        }
        return NULL;
    case 'C': {
        if (!json_is_object(v))
            return "must be an object";
        const char *k;
        const json_t *cv;
        json_object_foreach((json_t *)v, k, cv) {
            if (!custom_key(k))
                return "keys must be custom field keys";
            if (json_is_array(cv) && json_array_size(cv) == 0)
                return "a set field is cleared with null, not []";
        }
        return NULL;
    }
    default: return "has an unknown type";
    }
}

/* The request body checked against fields: NULL after answering 400. */
static json_t *checked_body(const struct sb_req *rq,
                            const struct vfield *fields, bool create,
                            struct sb_resp *out)
{
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Validation failed: the body must be a JSON object");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        const struct vfield *f = fields;
        while (f->name && strcmp(f->name, k) != 0)
            f++;
        const char *why = !f->name            ? "is not a known property"
                          : json_is_null(v)   ? NULL
                                              : type_error(f->type, v);
        if (why) {
            failf(out, 400, "Validation failed: %s: %s", k, why);
            json_decref(b);
            return NULL;
        }
    }
    for (const struct vfield *f = fields; create && f->name; f++) {
        v = json_object_get(b, f->name);
        if (f->required &&
            (!v || json_is_null(v) ||
             (json_is_string(v) && json_string_length(v) == 0))) {
            failf(out, 400, "Validation failed: %s: is required", f->name);
            json_decref(b);
            return NULL;
        }
    }
    return b;
}

/* ---- Query parameters --------------------------------------------------- */

/* An integer parameter: true with *v set, true and *v = dflt when absent;
 * false (after answering 400) when it is not an integer in [lo, hi]. */
static bool qint(const struct sb_req *rq, const char *name, long long lo,
                 long long hi, long long dflt, long long *v,
                 struct sb_resp *out)
{
    char *p = sb_query_param(rq->query, name);
    *v = dflt;
    if (!p)
        return true;
    char *end = NULL;
    long long n = *p ? strtoll(p, &end, 10) : 0;
    bool good = *p && *end == '\0' && n >= lo && n <= hi;
    free(p);
    if (!good) {
        failf(out, 400, "Validation failed: %s: must be an integer between "
                        "%lld and %lld", name, lo, hi);
        return false;
    }
    *v = n;
    return true;
}

/* v2 cursors are opaque; the sandbox's are "c<offset>". */
static bool qcursor(const struct sb_req *rq, long long *off,
                    struct sb_resp *out)
{
    char *c = sb_query_param(rq->query, "cursor");
    *off = 0;
    if (!c)
        return true;
    char *end = NULL;
    bool good = c[0] == 'c' && c[1] && (*off = strtoll(c + 1, &end, 10)) >=
                                               0 && *end == '\0';
    free(c);
    if (!good)
        fail(out, 400, "Validation failed: cursor: is not valid");
    return good;
}

static bool qenum(const struct sb_req *rq, const char *name,
                  const char *const *allowed, char **v, struct sb_resp *out)
{
    *v = sb_query_param(rq->query, name);
    if (!*v)
        return true;
    for (const char *const *a = allowed; *a; a++)
        if (strcmp(*v, *a) == 0)
            return true;
    failf(out, 400, "Validation failed: %s: '%.40s' is not allowed", name,
          *v);
    free(*v);
    *v = NULL;
    return false;
}

static const char *const sort_fields[] = {"id", "update_time", "add_time",
                                          NULL};
static const char *const directions[] = {"asc", "desc", NULL};

struct sort_spec {
    const char *key; /* the record's ms key */
    bool desc;
};

static int sort_cmp(const json_t *a, const json_t *b,
                    const struct sort_spec *s)
{
    long long x = json_integer_value(json_object_get(a, s->key));
    long long y = json_integer_value(json_object_get(b, s->key));
    if (x == y) {
        x = json_integer_value(json_object_get(a, "id"));
        y = json_integer_value(json_object_get(b, "id"));
    }
    int c = x < y ? -1 : x > y;
    return s->desc ? -c : c;
}

/* Sort a list of records in place (insertion sort: lists are small). */
static void sort_list(json_t *list, const struct sort_spec *spec)
{
    size_t n = json_array_size(list);
    for (size_t i = 1; i < n; i++) {
        json_t *cur = json_incref(json_array_get(list, i));
        size_t j = i;
        while (j > 0 &&
               sort_cmp(json_array_get(list, j - 1), cur, spec) > 0) {
            json_array_set(list, j, json_array_get(list, j - 1));
            j--;
        }
        json_array_set_new(list, j, cur);
    }
}

/* Answer a page of matches (v2): limit from offset, next_cursor. */
static void page_v2(json_t *matches, long long off, long long limit,
                    struct sb_resp *out)
{
    json_t *data = json_array();
    size_t n = json_array_size(matches);
    for (size_t i = (size_t)off; i < n && (long long)(i - off) < limit; i++)
        json_array_append_new(data, pub(json_array_get(matches, i)));
    json_t *next = (size_t)(off + limit) < n
                       ? json_sprintf("c%lld", off + limit)
                       : json_null();
    ok(out, 200, data, json_pack("{s:o}", "next_cursor", next));
    json_decref(matches);
}

/* The sort of a v2 list: sort_by (id, update_time, add_time) and
 * sort_direction, id ascending by default. */
static bool v2_sort(const struct sb_req *rq, struct sort_spec *spec,
                    struct sb_resp *out)
{
    char *by = NULL, *dir = NULL;
    if (!qenum(rq, "sort_by", sort_fields, &by, out) ||
        !qenum(rq, "sort_direction", directions, &dir, out)) {
        free(by);
        return false;
    }
    spec->key = !by || strcmp(by, "id") == 0 ? "id"
                : strcmp(by, "add_time") == 0 ? "_add_ms"
                                              : "_update_ms";
    spec->desc = dir && strcmp(dir, "desc") == 0;
    free(by);
    free(dir);
    return true;
}

static bool id_matches(const json_t *rec, const char *key, long long want)
{
    return want == 0 ||
           json_integer_value(json_object_get(rec, key)) == want;
}

/* ---- Persons ------------------------------------------------------------ */

static void stamp(json_t *rec, const char *add_key, const char *upd_key,
                  bool v1, int64_t ms, bool created)
{
    json_t *t = v1 ? time_v1(ms) : time_v2(ms);
    if (created) {
        json_object_set(rec, add_key, t);
        json_object_set_new(rec, "_add_ms", json_integer(ms));
    }
    json_object_set(rec, upd_key, t);
    json_object_set_new(rec, "_update_ms", json_integer(ms));
    json_decref(t);
}

/* Emails or phones as stored: primary set on the first when none is,
 * label "work" by default. */
static json_t *entries(const json_t *in)
{
    json_t *out = json_array();
    bool any = false;
    size_t i;
    const json_t *e;
    json_array_foreach(in, i, e) any |= json_is_true(json_object_get(e,
                                                                 "primary"));
    json_array_foreach(in, i, e) {
        const json_t *l = json_object_get(e, "label");
        json_array_append_new(
            out, json_pack("{s:s,s:b,s:s}", "value", jstr(e, "value"),
                           "primary",
                           any ? json_is_true(json_object_get(e, "primary"))
                               : i == 0,
                           "label",
                           json_is_string(l) ? json_string_value(l)
                                             : "work"));
    }
    return out;
}

static void apply_person(json_t *p, const json_t *in)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)in, k, v) {
        if (strcmp(k, "emails") == 0 || strcmp(k, "phones") == 0) {
            json_object_set_new(p, k, entries(v));
        } else if (strcmp(k, "custom_fields") == 0) {
            json_t *cf = json_object_get(p, "custom_fields");
            const char *ck;
            json_t *cv;
            json_object_foreach(v, ck, cv) json_object_set(cf, ck, cv);
        } else if (strcmp(k, "add_time") && strcmp(k, "update_time")) {
            json_object_set(p, k, v);
        }
    }
    const char *name = jstr(p, "name");
    if (name) {
        const char *sp = strchr(name, ' ');
        json_object_set_new(p, "first_name",
                            sp ? json_stringn(name, (size_t)(sp - name))
                               : json_string(name));
        json_object_set_new(p, "last_name",
                            sp ? json_string(sp + 1) : json_null());
    }
}

static void person_create(struct sb *s, const struct sb_req *rq,
                          struct sb_resp *out)
{
    json_t *in = checked_body(rq, person_body, true, out);
    if (!in)
        return;
    json_t *p = json_pack("{s:I,s:i,s:n,s:[],s:[],s:b,s:i,s:[],s:n,s:{}}",
                          "id", (json_int_t)s->pd->next_id[T_PERSONS]++,
                          "owner_id", 1, "org_id", "emails", "phones",
                          "is_deleted", 0, "visible_to", 3, "label_ids",
                          "picture_id", "custom_fields");
    stamp(p, "add_time", "update_time", false, rq->received_ms, true);
    apply_person(p, in);
    store(s, T_PERSONS, p);
    ok(out, 200, pub(p), NULL);
    json_decref(p);
    json_decref(in);
}

static void person_update(struct sb *s, const struct sb_req *rq,
                          long long id, struct sb_resp *out)
{
    json_t *p = find(s, T_PERSONS, id);
    if (!p) {
        fail(out, 404, "Person not found");
        return;
    }
    json_t *in = checked_body(rq, person_body, false, out);
    if (!in)
        return;
    if (json_object_get(in, "name") && !jstr(in, "name")) {
        fail(out, 400, "Validation failed: name: must not be empty");
    } else {
        apply_person(p, in);
        stamp(p, "add_time", "update_time", false, rq->received_ms, false);
        ok(out, 200, pub(p), NULL);
    }
    json_decref(in);
}

static size_t digits_of(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
    return k;
}

/* Does one entry of list (emails or phones) match term? Emails and names
 * ignore case; phones compare their digits. Exact: equal; else: contains. */
static bool entry_match(const json_t *list, const char *term, bool phone,
                        bool exact)
{
    char dt[64], dv[64];
    if (phone && digits_of(term, dt, sizeof(dt)) == 0)
        return false;
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) {
        const char *v = jstr(e, "value");
        if (!v)
            continue;
        if (phone) {
            digits_of(v, dv, sizeof(dv));
            if (exact ? strcmp(dv, dt) == 0 : strstr(dv, dt) != NULL)
                return true;
        } else if (exact ? strcasecmp(v, term) == 0
                         : strcasestr(v, term) != NULL) {
            return true;
        }
    }
    return false;
}

static json_t *strings_of(const json_t *entries_)
{
    json_t *a = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(entries_, i, e) {
        if (jstr(e, "value"))
            json_array_append_new(a, json_string(jstr(e, "value")));
    }
    return a;
}

static const char *const search_fields[] = {"custom_fields", "email",
                                            "notes", "phone", "name", NULL};

static void person_search(struct sb *s, const struct sb_req *rq,
                          struct sb_resp *out)
{
    char *term = sb_query_param(rq->query, "term");
    char *fields = sb_query_param(rq->query, "fields");
    char *exact_s = sb_query_param(rq->query, "exact_match");
    long long limit, off;
    bool exact = exact_s && strcmp(exact_s, "true") == 0;
    bool want[5] = {true, true, true, true, true};
    const char *bad = NULL;
    /* fields: a comma-separated subset of search_fields. */
    if (fields) {
        memset(want, 0, sizeof(want));
        const char *p = fields;
        while (*p && !bad) {
            size_t n = strcspn(p, ",");
            bool found = false;
            for (int i = 0; search_fields[i]; i++)
                if (strlen(search_fields[i]) == n &&
                    strncmp(p, search_fields[i], n) == 0) {
                    want[i] = true;
                    found = true;
                }
            if (!found)
                bad = "Validation failed: fields: is not valid";
            p += n;
            if (*p == ',')
                p++;
        }
    }
    if (!term || strlen(term) < (exact ? 1u : 2u))
        bad = "Validation failed: term: must be at least 2 characters (1 "
              "with exact_match)";
    if (exact_s && strcmp(exact_s, "true") && strcmp(exact_s, "false"))
        bad = "Validation failed: exact_match: must be a boolean";
    if (bad) {
        fail(out, 400, bad);
    } else if (qint(rq, "limit", 1, 100, 100, &limit, out) &&
               qcursor(rq, &off, out)) {
        json_t *items = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(s->pd->list[T_PERSONS], i, p) {
            const char *name = jstr(p, "name");
            bool m = (want[1] && entry_match(json_object_get(p, "emails"),
                                             term, false, exact)) ||
                     (want[3] && entry_match(json_object_get(p, "phones"),
                                             term, true, exact)) ||
                     (want[4] && name &&
                      (exact ? strcasecmp(name, term) == 0
                             : strcasestr(name, term) != NULL));
            if (!m)
                continue;
            json_array_append_new(
                items,
                json_pack("{s:f,s:{s:O,s:s,s:O,s:o,s:o,s:O,s:{s:O},s:n,"
                          "s:[],s:[],s:O}}",
                          "result_score", 1.0, "item", "id",
                          json_object_get(p, "id"), "type", "person", "name",
                          json_object_get(p, "name"), "phones",
                          strings_of(json_object_get(p, "phones")), "emails",
                          strings_of(json_object_get(p, "emails")),
                          "visible_to", json_object_get(p, "visible_to"),
                          "owner", "id", json_object_get(p, "owner_id"),
                          "organization", "custom_fields", "notes",
                          "update_time", json_object_get(p, "update_time")));
        }
        size_t n = json_array_size(items);
        json_t *page = json_array();
        for (size_t k = (size_t)off; k < n && (long long)(k - off) < limit;
             k++)
            json_array_append(page, json_array_get(items, k));
        json_decref(items);
        ok(out, 200, json_pack("{s:o}", "items", page),
           json_pack("{s:o}", "next_cursor",
                     (size_t)(off + limit) < n
                         ? json_sprintf("c%lld", off + limit)
                         : json_null()));
    }
    free(term);
    free(fields);
    free(exact_s);
}

static void person_list(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    long long limit, off, owner, org;
    struct sort_spec spec;
    char *since_s = sb_query_param(rq->query, "updated_since");
    int64_t since = 0;
    if (since_s && !cs_parse_rfc3339(since_s, &since)) {
        fail(out, 400, "Validation failed: updated_since: must be RFC 3339");
    } else if (qint(rq, "limit", 1, 500, 100, &limit, out) &&
               qint(rq, "owner_id", 1, INT64_MAX, 0, &owner, out) &&
               qint(rq, "org_id", 1, INT64_MAX, 0, &org, out) &&
               qcursor(rq, &off, out) && v2_sort(rq, &spec, out)) {
        json_t *m = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(s->pd->list[T_PERSONS], i, p) {
            if (id_matches(p, "owner_id", owner) &&
                id_matches(p, "org_id", org) &&
                (!since_s ||
                 json_integer_value(json_object_get(p, "_update_ms")) >=
                     since / 1000 * 1000))
                json_array_append(m, p);
        }
        sort_list(m, &spec);
        page_v2(m, off, limit, out);
    }
    free(since_s);
}

/* ---- Notes (v1) --------------------------------------------------------- */

static bool flag_ok(const json_t *v)
{
    return !v || json_is_boolean(v) ||
           (json_is_integer(v) && (json_integer_value(v) == 0 ||
                                   json_integer_value(v) == 1));
}

static void note_create(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    json_t *in;
    if (!sb_is_json_object(rq, &in)) {
        fail(out, 400, "Validation failed: the body must be a JSON object");
        return;
    }
    static const char *const links[] = {"person_id", "deal_id", "org_id",
                                        "project_id"};
    static const char *const known[] = {
        "content", "lead_id", "deal_id", "person_id", "org_id",
        "project_id", "user_id", "add_time", "pinned_to_lead_flag",
        "pinned_to_deal_flag", "pinned_to_organization_flag",
        "pinned_to_person_flag", "pinned_to_project_flag", NULL};
    const char *k;
    json_t *v;
    const char *bad = NULL;
    json_object_foreach(in, k, v) {
        bool found = false;
        for (int i = 0; known[i]; i++)
            found |= strcmp(known[i], k) == 0;
        if (!found)
            bad = "Validation failed: unknown property";
        else if (strncmp(k, "pinned_", 7) == 0 && !flag_ok(v))
            bad = "Validation failed: pinned flags must be 0 or 1";
        else if (strcmp(k, "content") && strcmp(k, "lead_id") &&
                 strcmp(k, "add_time") && strncmp(k, "pinned_", 7) &&
                 !json_is_null(v) && !is_id(v))
            bad = "Validation failed: ids must be integers";
    }
    bool linked = jstr(in, "lead_id") != NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(links); i++)
        linked |= is_id(json_object_get(in, links[i]));
    long long pid = json_integer_value(json_object_get(in, "person_id"));
    long long did = json_integer_value(json_object_get(in, "deal_id"));
    if (bad) {
        fail(out, 400, bad);
    } else if (!jstr(in, "content")) {
        fail(out, 400, "Validation failed: content: is required");
    } else if (!linked) {
        fail(out, 400, "Validation failed: a note needs a deal_id, "
                       "person_id, org_id, lead_id or project_id");
    } else if (pid && !find(s, T_PERSONS, pid)) {
        fail(out, 404, "Person not found");
    } else if (did && !find(s, T_DEALS, did)) {
        fail(out, 404, "Deal not found");
    } else {
        json_t *n = json_pack(
            "{s:I,s:b,s:O,s:O,s:O,s:O,s:n,s:i,s:b,s:b,s:b}", "id",
            (json_int_t)s->pd->next_id[T_NOTES]++, "active_flag", 1,
            "content", json_object_get(in, "content"), "person_id",
            json_object_get(in, "person_id")
                ? json_object_get(in, "person_id")
                : json_null(),
            "deal_id",
            json_object_get(in, "deal_id") ? json_object_get(in, "deal_id")
                                           : json_null(),
            "org_id",
            json_object_get(in, "org_id") ? json_object_get(in, "org_id")
                                          : json_null(),
            "lead_id", "user_id", 1, "pinned_to_person_flag",
            json_is_true(json_object_get(in, "pinned_to_person_flag")) ||
                json_integer_value(json_object_get(
                    in, "pinned_to_person_flag")) == 1,
            "pinned_to_deal_flag", 0, "pinned_to_organization_flag", 0);
        stamp(n, "add_time", "update_time", true, rq->received_ms, true);
        store(s, T_NOTES, n);
        ok(out, 201, pub(n), NULL);
        json_decref(n);
    }
    json_decref(in);
}

/* "add_time DESC" and the like: a field and an optional direction. */
static bool v1_sort(const char *sort, struct sort_spec *spec)
{
    spec->key = "id";
    spec->desc = false;
    if (!sort)
        return true;
    size_t n = strcspn(sort, " ");
    const char *dir = sort[n] ? sort + n + 1 : "ASC";
    if (strcasecmp(dir, "ASC") != 0 && strcasecmp(dir, "DESC") != 0)
        return false;
    spec->desc = strcasecmp(dir, "DESC") == 0;
    if (n == 2 && strncmp(sort, "id", 2) == 0)
        spec->key = "id";
    else if (n == 8 && strncmp(sort, "add_time", 8) == 0)
        spec->key = "_add_ms";
    else if (n == 11 && strncmp(sort, "update_time", 11) == 0)
        spec->key = "_update_ms";
    else
        return false;
    return true;
}

static void note_list(struct sb *s, const struct sb_req *rq,
                      struct sb_resp *out)
{
    long long person, deal, org, start, limit;
    char *sort = sb_query_param(rq->query, "sort");
    struct sort_spec spec;
    if (!v1_sort(sort, &spec)) {
        fail(out, 400, "Validation failed: sort: is not valid");
    } else if (qint(rq, "person_id", 1, INT64_MAX, 0, &person, out) &&
               qint(rq, "deal_id", 1, INT64_MAX, 0, &deal, out) &&
               qint(rq, "org_id", 1, INT64_MAX, 0, &org, out) &&
               qint(rq, "start", 0, INT64_MAX, 0, &start, out) &&
               qint(rq, "limit", 1, 500, 100, &limit, out)) {
        json_t *m = json_array();
        size_t i;
        json_t *n;
        json_array_foreach(s->pd->list[T_NOTES], i, n) {
            if (id_matches(n, "person_id", person) &&
                id_matches(n, "deal_id", deal) &&
                id_matches(n, "org_id", org))
                json_array_append(m, n);
        }
        sort_list(m, &spec);
        json_t *data = json_array();
        size_t total = json_array_size(m);
        for (size_t k = (size_t)start;
             k < total && (long long)(k - start) < limit; k++)
            json_array_append_new(data, pub(json_array_get(m, k)));
        json_decref(m);
        bool more = (size_t)(start + limit) < total;
        json_t *pg = json_pack("{s:I,s:I,s:b}", "start", (json_int_t)start,
                               "limit", (json_int_t)limit,
                               "more_items_in_collection", more);
        if (more)
            json_object_set_new(pg, "next_start",
                                json_integer(start + limit));
        if (json_array_size(data) == 0) {
            json_decref(data);
            data = NULL; /* v1 answers null for an empty list */
        }
        ok(out, 200, data, json_pack("{s:o}", "pagination", pg));
    }
    free(sort);
}

/* ---- Deals -------------------------------------------------------------- */

static const char *const deal_statuses[] = {"open", "won", "lost", NULL};

static void deal_create(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    json_t *in = checked_body(rq, deal_body, true, out);
    if (!in)
        return;
    const char *st = jstr(in, "status");
    bool st_ok = !st;
    for (int i = 0; st && deal_statuses[i]; i++)
        st_ok |= strcmp(st, deal_statuses[i]) == 0;
    long long pid = json_integer_value(json_object_get(in, "person_id"));
    if (!st_ok) {
        fail(out, 400, "Validation failed: status: must be open, won or "
                       "lost");
    } else if (pid && !find(s, T_PERSONS, pid)) {
        fail(out, 404, "Person not found");
    } else {
        json_t *d = json_pack(
            "{s:I,s:i,s:i,s:i,s:n,s:n,s:i,s:i,s:s,s:s,s:b,s:b,s:n,s:i,"
            "s:n,s:[],s:{}}",
            "id", (json_int_t)s->pd->next_id[T_DEALS]++, "creator_user_id",
            1, "owner_id", 1, "value", 0, "person_id", "org_id",
            "stage_id", 1, "pipeline_id", 1, "currency", "USD", "status",
            "open", "is_deleted", 0, "is_archived", 0, "probability",
            "visible_to", 3, "expected_close_date", "label_ids",
            "custom_fields");
        json_object_update(d, in);
        stamp(d, "add_time", "update_time", false, rq->received_ms, true);
        store(s, T_DEALS, d);
        ok(out, 200, pub(d), NULL);
        json_decref(d);
    }
    json_decref(in);
}

static bool status_in(const char *list, const char *st)
{
    if (!list)
        return strcmp(st, "deleted") != 0;
    size_t n = strlen(st);
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, st, n) == 0)
            return true;
        p += k;
        if (*p == ',')
            p++;
    }
    return false;
}

static void deal_list(struct sb *s, const struct sb_req *rq,
                      struct sb_resp *out)
{
    long long person, pipeline, stage, owner, org, limit, off;
    struct sort_spec spec;
    char *status = sb_query_param(rq->query, "status");
    bool st_ok = true;
    for (const char *p = status; p && *p;) {
        size_t k = strcspn(p, ",");
        bool one = (k == 4 && strncmp(p, "open", 4) == 0) ||
                   (k == 3 && strncmp(p, "won", 3) == 0) ||
                   (k == 4 && strncmp(p, "lost", 4) == 0) ||
                   (k == 7 && strncmp(p, "deleted", 7) == 0);
        st_ok &= one;
        p += k;
        if (*p == ',')
            p++;
    }
    if (!st_ok) {
        fail(out, 400, "Validation failed: status: is not valid");
    } else if (qint(rq, "person_id", 1, INT64_MAX, 0, &person, out) &&
               qint(rq, "pipeline_id", 1, INT64_MAX, 0, &pipeline, out) &&
               qint(rq, "stage_id", 1, INT64_MAX, 0, &stage, out) &&
               qint(rq, "owner_id", 1, INT64_MAX, 0, &owner, out) &&
               qint(rq, "org_id", 1, INT64_MAX, 0, &org, out) &&
               qint(rq, "limit", 1, 500, 100, &limit, out) &&
               qcursor(rq, &off, out) && v2_sort(rq, &spec, out)) {
        json_t *m = json_array();
        size_t i;
        json_t *d;
        json_array_foreach(s->pd->list[T_DEALS], i, d) {
            if (id_matches(d, "person_id", person) &&
                id_matches(d, "pipeline_id", pipeline) &&
                id_matches(d, "stage_id", stage) &&
                id_matches(d, "owner_id", owner) &&
                id_matches(d, "org_id", org) &&
                status_in(status, jstr(d, "status")))
                json_array_append(m, d);
        }
        sort_list(m, &spec);
        page_v2(m, off, limit, out);
    }
    free(status);
}

/* ---- Activities --------------------------------------------------------- */

static const char *const activity_types[] = {"call",  "meeting", "task",
                                             "deadline", "email", "lunch",
                                             NULL};

/* "HH:MM" or "HH:MM:SS" as "HH:MM:SS". */
static json_t *hms(const json_t *v)
{
    const char *s = json_string_value(v);
    if (!s)
        return json_null();
    return strlen(s) == 5 ? json_sprintf("%s:00", s) : json_string(s);
}

static void activity_create(struct sb *s, const struct sb_req *rq,
                            struct sb_resp *out)
{
    json_t *in = checked_body(rq, activity_body, true, out);
    if (!in)
        return;
    const char *type = jstr(in, "type");
    bool type_ok = !type;
    for (int i = 0; type && activity_types[i]; i++)
        type_ok |= strcmp(type, activity_types[i]) == 0;
    long long primary = json_integer_value(json_object_get(in, "person_id"));
    bool missing = false;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(in, "participants"), i, p) {
        long long pid = json_integer_value(json_object_get(p, "person_id"));
        missing |= !find(s, T_PERSONS, pid);
        if (json_is_true(json_object_get(p, "primary")) || !primary)
            primary = pid;
    }
    long long deal = json_integer_value(json_object_get(in, "deal_id"));
    if (!type_ok) {
        failf(out, 400, "Validation failed: type: '%.40s' is not an "
                        "activity type of this company", type);
    } else if (missing || (primary && !find(s, T_PERSONS, primary))) {
        fail(out, 404, "Person not found");
    } else if (deal && !find(s, T_DEALS, deal)) {
        fail(out, 404, "Deal not found");
    } else {
        json_t *a = json_pack(
            "{s:I,s:s,s:s,s:i,s:i,s:b,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:b,s:b,"
            "s:[],s:n,s:n}",
            "id", (json_int_t)s->pd->next_id[T_ACTIVITIES]++, "subject",
            jstr(in, "subject") ? jstr(in, "subject") : "Call", "type",
            type ? type : "call", "owner_id", 1, "creator_user_id", 1,
            "is_deleted", 0, "deal_id", "lead_id", "person_id", "org_id",
            "due_date", "due_time", "duration", "busy", 0, "done", 0,
            "participants", "note", "priority");
        json_object_update(a, in);
        json_object_set_new(a, "due_time",
                            hms(json_object_get(in, "due_time")));
        json_object_set_new(a, "duration",
                            hms(json_object_get(in, "duration")));
        json_object_set_new(a, "person_id",
                            primary ? json_integer(primary) : json_null());
        stamp(a, "add_time", "update_time", false, rq->received_ms, true);
        store(s, T_ACTIVITIES, a);
        ok(out, 200, pub(a), NULL);
        json_decref(a);
    }
    json_decref(in);
}

static void activity_list(struct sb *s, const struct sb_req *rq,
                          struct sb_resp *out)
{
    long long person, deal, owner, org, limit, off;
    struct sort_spec spec;
    if (qint(rq, "person_id", 1, INT64_MAX, 0, &person, out) &&
        qint(rq, "deal_id", 1, INT64_MAX, 0, &deal, out) &&
        qint(rq, "owner_id", 1, INT64_MAX, 0, &owner, out) &&
        qint(rq, "org_id", 1, INT64_MAX, 0, &org, out) &&
        qint(rq, "limit", 1, 500, 100, &limit, out) &&
        qcursor(rq, &off, out) && v2_sort(rq, &spec, out)) {
        json_t *m = json_array();
        size_t i;
        json_t *a;
        json_array_foreach(s->pd->list[T_ACTIVITIES], i, a) {
            /* person_id: activities whose primary participant it is. */
            if (id_matches(a, "person_id", person) &&
                id_matches(a, "deal_id", deal) &&
                id_matches(a, "owner_id", owner) &&
                id_matches(a, "org_id", org))
                json_array_append(m, a);
        }
        sort_list(m, &spec);
        page_v2(m, off, limit, out);
    }
}

/* ---- Routing ------------------------------------------------------------ */

/* "/<digits>" after prefix: the id, else 0. */
static long long id_after(const char *p, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(p, prefix, n) != 0 || !isdigit((unsigned char)p[n]))
        return 0;
    char *end;
    long long id = strtoll(p + n, &end, 10);
    return *end == '\0' ? id : 0;
}

static void route(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    const char *p = rq->sub;
    int m = rq->method;
    bool get = m == HTTP_GET, post = m == HTTP_POST;
    long long id;
    if (strcmp(p, "/api/v2/persons/search") == 0 && get)
        person_search(s, rq, out);
    else if (strcmp(p, "/api/v2/persons") == 0 && get)
        person_list(s, rq, out);
    else if (strcmp(p, "/api/v2/persons") == 0 && post)
        person_create(s, rq, out);
    else if ((id = id_after(p, "/api/v2/persons/")) && get)
        find(s, T_PERSONS, id) ? ok(out, 200, pub(find(s, T_PERSONS, id)),
                                    NULL)
                               : fail(out, 404, "Person not found");
    else if (id && m == HTTP_PATCH)
        person_update(s, rq, id, out);
    else if ((strcmp(p, "/api/v1/users/me") == 0 ||
              strcmp(p, "/v1/users/me") == 0) && get)
        ok(out, 200,
           json_pack("{s:i,s:s,s:s,s:s,s:b,s:b,s:s,s:i,s:s,s:s,s:s}", "id",
                     777, "name", "Dana Desk", "email", "dana@acme.example",
                     "default_currency", "USD", "active_flag", 1,
                     "is_admin", 1, "timezone_name", "America/New_York",
                     "company_id", 5566, "company_name", "Acme Roofing",
                     "company_domain", "acme", "locale", "en_US"),
           NULL);
    else if ((strcmp(p, "/api/v1/notes") == 0 ||
              strcmp(p, "/v1/notes") == 0) && get)
        note_list(s, rq, out);
    else if ((strcmp(p, "/api/v1/notes") == 0 ||
              strcmp(p, "/v1/notes") == 0) && post)
        note_create(s, rq, out);
    else if (strcmp(p, "/api/v2/deals") == 0 && get)
        deal_list(s, rq, out);
    else if (strcmp(p, "/api/v2/deals") == 0 && post)
        deal_create(s, rq, out);
    else if (strcmp(p, "/api/v2/activities") == 0 && get)
        activity_list(s, rq, out);
    else if (strcmp(p, "/api/v2/activities") == 0 && post)
        activity_create(s, rq, out);
    else
        failf(out, 404, "Unknown method %s %.200s",
              http_method_str((enum http_method)m), p);
}

void pd_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    bool bearer;
    char *tok = token_of(rq, &bearer);
    if (!token_known(s, tok)) {
        sb_resp_json(out, 401, pd_error_body(401));
        free(tok);
        return;
    }
    int64_t now = cs_mono_ms();
    struct window *w = window_of(s, tok);
    bool search = strcmp(rq->sub, "/api/v2/persons/search") == 0;
    long long cost = cost_of(rq);
    if (s->pd->tokens_used + cost > s->pd_daily) {
        /* The budget is spent: every request gets 429 until it resets. */
        sb_resp_json(out, 429, pd_error_body(429));
    } else if (!ring_take(&w->burst, (size_t)s->pd_rate, now) ||
               (search && !ring_take(&w->search, SEARCH_RATE, now))) {
        sb_resp_json(out, 429, pd_error_body(429));
    } else {
        s->pd->tokens_used += cost;
        if (!bearer && rq->method != HTTP_GET)
            s->pd->writes++;
        route(s, rq, out);
    }
    pd_rate_headers(s, rq, out);
    free(tok);
}
