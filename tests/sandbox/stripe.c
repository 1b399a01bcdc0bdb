/*
 * stripe.c - the Stripe (API v1) part of the sandbox, under /stripe:
 *
 *   POST /v1/customers          GET /v1/customers?email&limit&starting_after
 *   POST /v1/customers/{id}     GET /v1/customers/{id}
 *   GET  /v1/customers/search?query&limit
 *   POST /v1/payment_links      GET /v1/payment_links?limit&starting_after
 *   POST /v1/invoices           GET /v1/invoices?customer&limit&starting_after
 *   GET  /v1/invoices/{id}
 *   POST /v1/invoices/{id}/finalize   POST /v1/invoices/{id}/send
 *   POST /v1/invoiceitems       GET /v1/invoiceitems?invoice&customer&limit
 *
 * As the API does (docs.stripe.com/api): "Authorization: Bearer <key>"
 * (or Basic with the key as the user) with an sk_/rk_ test or live key,
 * any such key unless --stripe-key names some (401 "Invalid API Key
 * provided: sk_test_****abcd" otherwise, "You did not provide an API
 * key..." without one); POST bodies are forms in bracket notation (a
 * body of another type is refused with 400); unknown parameters give 400
 * "Received unknown parameter: x" with param; a Stripe-Version header
 * must look like a version ("2025-09-30.clover"). Errors are
 * {"error": {"type", "code", "message", "param"}}; every answer carries
 * a Request-Id.
 *
 * Idempotency: a POST's Idempotency-Key is remembered with the request
 * (method, path, parameters) and its answer when the answer is a 2xx
 * (Stripe saves results once the endpoint ran; a refused request saves
 * nothing). The same key again with the same request replays the answer
 * with "Idempotent-Replayed: true"; with another request it is refused
 * with 400 idempotency_error. Keys are forgotten after 24 hours, or at
 * once by POST /_sandbox/stripe/expire_keys.
 *
 * Search is eventually consistent: an object is found by search only
 * --stripe-search-lag-ms after it was created or updated (0 by
 * default); lists are consistent. The query language covers field:'v'
 * (exact) and field~'v' (substring) on email, phone, name and
 * metadata['key'], joined by AND or OR.
 *
 * Rate limit: a sliding one-second window per mode, 25 requests with a
 * test key and 100 with a live one (--stripe-rate N sets both); past it,
 * 429 {"error": {"code": "rate_limit", "type": "invalid_request_error",
 * ...}}.
 *
 * Records: ?provider=stripe&type=customers|payment_links|invoices|
 * invoiceitems|invoice_sends|requests (every API request with its
 * idempotency key, Stripe-Version and whether it was replayed).
 */
#define _GNU_SOURCE /* strcasestr */
#include "sandbox.h"
#include "crypto.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_TTL_MS (24LL * 3600 * 1000)

enum { T_CUS, T_LINKS, T_INV, T_ITEMS, T_SENDS, T_REQS, T_COUNT };

static const char *const type_names[T_COUNT] = {
    "customers", "payment_links", "invoices", "invoiceitems",
    "invoice_sends", "requests"};

struct win {
    int64_t *t;
    size_t cap, head, len;
};

struct sb_stripe {
    /* configuration */
    const char *keys[SB_MAX_TOKENS];
    size_t nkeys;
    int rate;              /* per second for both modes; 0: 25 / 100 */
    int search_lag_ms;
    /* state */
    json_t *list[T_COUNT]; /* records, oldest first */
    json_t *by_id;         /* id -> record (customers, invoices) */
    json_t *touched;       /* id -> ms of the last create or update */
    json_t *idem;          /* key -> {method, path, params, status, body,
                              at} */
    long long next_id;
    struct win win[2];     /* test, live */
};

/* ---- State -------------------------------------------------------------- */

static struct sb_stripe *state(struct sb *s)
{
    if (!s->stripe) {
        s->stripe = xcalloc(1, sizeof(*s->stripe));
        stripe_reset(s->stripe);
    }
    return s->stripe;
}

void stripe_reset(struct sb_stripe *st)
{
    if (!st)
        return;
    for (int i = 0; i < T_COUNT; i++) {
        json_decref(st->list[i]);
        st->list[i] = json_array();
    }
    json_decref(st->by_id);
    json_decref(st->touched);
    json_decref(st->idem);
    st->by_id = json_object();
    st->touched = json_object();
    st->idem = json_object();
    st->next_id = 1;
    for (int m = 0; m < 2; m++) {
        free(st->win[m].t);
        memset(&st->win[m], 0, sizeof(st->win[m]));
    }
}

void stripe_free(struct sb_stripe *st)
{
    if (!st)
        return;
    for (int i = 0; i < T_COUNT; i++)
        json_decref(st->list[i]);
    json_decref(st->by_id);
    json_decref(st->touched);
    json_decref(st->idem);
    for (int m = 0; m < 2; m++)
        free(st->win[m].t);
    free(st);
}

bool stripe_option(struct sb *s, const char *flag, const char *val)
{
    char *end;
    long v;
    if (strcmp(flag, "--stripe-key") == 0) {
        struct sb_stripe *st = state(s);
        if (!*val || st->nkeys == SB_MAX_TOKENS)
            return false;
        st->keys[st->nkeys++] = val;
        return true;
    }
    if (strcmp(flag, "--stripe-rate") == 0 ||
        strcmp(flag, "--stripe-search-lag-ms") == 0) {
        v = strtol(val, &end, 10);
        if (!*val || *end || v < 0 || v > 10000000)
            return false;
        if (strcmp(flag, "--stripe-rate") == 0) {
            if (v < 1)
                return false;
            state(s)->rate = (int)v;
        } else {
            state(s)->search_lag_ms = (int)v;
        }
        return true;
    }
    return false;
}

json_t *stripe_records(struct sb *s, const char *type)
{
    struct sb_stripe *st = state(s);
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(type, type_names[i]) == 0)
            return json_incref(st->list[i]);
    return NULL;
}

static json_t *new_id(struct sb_stripe *st, const char *prefix)
{
    return json_sprintf("%s_SB%012lld", prefix, st->next_id++);
}

/* ---- Errors ------------------------------------------------------------- */

static json_t *error_body(const char *type, const char *code,
                          const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static json_t *error_body(const char *type, const char *code,
                          const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s,s:s}", "type", type, "message", msg);
    if (code)
        json_object_set_new(e, "code", json_string(code));
    if (param)
        json_object_set_new(e, "param", json_string(param));
    if (code)
        json_object_set_new(e, "doc_url",
                            json_sprintf("https://stripe.com/docs/error-codes/"
                                         "%s", code));
    return json_pack("{s:o}", "error", e);
}

json_t *stripe_error_body(int status)
{
    switch (status) {
    case 401:
        return error_body("invalid_request_error", NULL, NULL,
                          "Invalid API Key provided: sk_test_****0000");
    case 402:
        return error_body("card_error", "card_declined", NULL,
                          "Your card was declined.");
    case 404:
        return error_body("invalid_request_error", "resource_missing", "id",
                          "No such object");
    case 409:
        return error_body("invalid_request_error", "lock_timeout", NULL,
                          "This object cannot be accessed right now because "
                          "another API request or Stripe process is "
                          "currently accessing it. If you see this error "
                          "intermittently, retry the request.");
    case 429:
        return error_body("invalid_request_error", "rate_limit", NULL,
                          "Request rate limit exceeded. Learn more about rate "
                          "limits here https://stripe.com/docs/rate-limits.");
    default:
        if (status >= 500)
            return error_body("api_error", NULL, NULL,
                              "An unknown error occurred");
        return error_body("invalid_request_error", NULL, NULL, "%s",
                          sb_reason(status));
    }
}

static void fail(struct sb_resp *out, int status, json_t *body)
{
    sb_resp_json(out, status, body);
}

static void bad_param(struct sb_resp *out, const char *param, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

static void bad_param(struct sb_resp *out, const char *param, const char *fmt,
                      ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fail(out, 400, error_body("invalid_request_error", "parameter_invalid",
                              param, "%s", msg));
}

static void missing(struct sb_resp *out, const char *param)
{
    fail(out, 400, error_body("invalid_request_error", "parameter_missing",
                              param, "Missing required param: %s.", param));
}

static void no_such(struct sb_resp *out, const char *what, const char *id,
                    const char *param)
{
    fail(out, param ? 400 : 404,
         error_body("invalid_request_error", "resource_missing",
                    param ? param : "id", "No such %s: '%s'", what, id));
}

/* ---- Parameters --------------------------------------------------------- */

/* The first parameter of p not in allowed (NULL-terminated), or NULL. */
static const char *unknown_param(const json_t *p, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)p, k, v) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, k) != 0)
            a++;
        if (!*a)
            return k;
    }
    return NULL;
}

static bool refuse_unknown(struct sb_resp *out, const json_t *p,
                           const char *prefix, const char *const *allowed)
{
    const char *k = unknown_param(p, allowed);
    if (!k)
        return false;
    char name[160];
    snprintf(name, sizeof(name), "%s%s%s%s", prefix ? prefix : "",
             prefix ? "[" : "", k, prefix ? "]" : "");
    fail(out, 400, error_body("invalid_request_error", "parameter_unknown",
                              name, "Received unknown parameter: %s", name));
    return true;
}

static const char *pstr(const json_t *p, const char *k)
{
    return json_string_value(json_object_get(p, k));
}

/* An integer parameter in [lo, hi]; false after answering 400. */
static bool pint(const json_t *p, const char *k, long long lo, long long hi,
                 long long *v, bool *present, struct sb_resp *out)
{
    const char *s = pstr(p, k);
    *present = json_object_get(p, k) != NULL;
    if (!*present)
        return true;
    char *end;
    long long n = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || n < lo || n > hi) {
        bad_param(out, k, "Invalid integer: %s", s ? s : "(not a string)");
        return false;
    }
    *v = n;
    return true;
}

static bool pbool(const json_t *p, const char *k, bool *v, bool *present,
                  struct sb_resp *out)
{
    const char *s = pstr(p, k);
    *present = json_object_get(p, k) != NULL;
    if (!*present)
        return true;
    if (s && strcmp(s, "true") == 0) {
        *v = true;
    } else if (s && strcmp(s, "false") == 0) {
        *v = false;
    } else {
        bad_param(out, k, "Invalid boolean: %s", s ? s : "(not a string)");
        return false;
    }
    return true;
}

/* metadata: strings, keys of at most 40 characters without brackets,
 * values of at most 500, at most 50 keys. */
static bool check_metadata(const json_t *m, struct sb_resp *out)
{
    if (!m)
        return true;
    if (!json_is_object(m)) {
        bad_param(out, "metadata", "Invalid hash");
        return false;
    }
    if (json_object_size(m) > 50) {
        bad_param(out, "metadata", "You can have up to 50 metadata keys");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        if (strlen(k) > 40) {
            bad_param(out, "metadata",
                      "Metadata keys can have up to 40 characters. The key "
                      "'%.60s' is too long.", k);
            return false;
        }
        if (!json_is_string(v) || json_string_length(v) > 500) {
            bad_param(out, "metadata",
                      "Metadata values can have up to 500 characters, but "
                      "the value for '%s' is longer or not a string.", k);
            return false;
        }
    }
    return true;
}

/* Merge metadata: an empty value removes the key (Stripe's rule). */
static void merge_metadata(json_t *rec, const json_t *m)
{
    json_t *cur = json_object_get(rec, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        if (json_string_length(v) == 0)
            json_object_del(cur, k);
        else
            json_object_set(cur, k, v);
    }
}

static bool email_valid(const char *e)
{
    const char *at = strchr(e, '@');
    return at && at != e && strchr(at + 1, '.') && !strchr(at + 1, '@') &&
           !strpbrk(e, " <>,;") && strlen(e) <= 512;
}

static bool currency_valid(const char *c)
{
    return c && strlen(c) == 3 && islower((unsigned char)c[0]) &&
           islower((unsigned char)c[1]) && islower((unsigned char)c[2]);
}

/* ---- Auth, rate, versions ----------------------------------------------- */

/* The API key of the request, or NULL; *live for a live key. */
static char *request_key(const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a)
        return NULL;
    if (strncasecmp(a, "Bearer ", 7) == 0) {
        const char *k = a + 7;
        while (*k == ' ')
            k++;
        return xstrdup(k);
    }
    if (strncasecmp(a, "Basic ", 6) == 0) {
        unsigned char dec[512];
        const char *b = a + 6;
        int n = cs_base64_decode(b, strlen(b), dec, sizeof(dec) - 1);
        if (n <= 0)
            return NULL;
        dec[n] = '\0';
        char *colon = strchr((char *)dec, ':');
        if (colon)
            *colon = '\0';
        return xstrdup((char *)dec);
    }
    return NULL;
}

static bool key_shape_ok(const char *k)
{
    return strncmp(k, "sk_test_", 8) == 0 || strncmp(k, "sk_live_", 8) == 0 ||
           strncmp(k, "rk_test_", 8) == 0 || strncmp(k, "rk_live_", 8) == 0;
}

/* 401 unless the key is acceptable; *live for a live one. */
static bool authorised(struct sb_stripe *st, const struct sb_req *rq,
                       bool *live, struct sb_resp *out)
{
    char *k = request_key(rq);
    if (!k || !*k) {
        free(k);
        fail(out, 401,
             error_body("invalid_request_error", NULL, NULL,
                        "You did not provide an API key. You need to provide "
                        "your API key in the Authorization header, using "
                        "Bearer auth (e.g. 'Authorization: Bearer "
                        "YOUR_SECRET_KEY'). See "
                        "https://stripe.com/docs/api#authentication for "
                        "details, or we can help at "
                        "https://support.stripe.com/."));
        return false;
    }
    bool ok = key_shape_ok(k);
    if (ok && st->nkeys) {
        ok = false;
        for (size_t i = 0; i < st->nkeys; i++)
            ok |= strcmp(k, st->keys[i]) == 0;
    }
    *live = strstr(k, "_live_") != NULL;
    if (!ok) {
        size_t n = strlen(k);
        char shown[64];
        snprintf(shown, sizeof(shown), "%.8s****%s", k,
                 n > 12 ? k + n - 4 : "");
        fail(out, 401, error_body("invalid_request_error", NULL, NULL,
                                  "Invalid API Key provided: %s", shown));
    }
    free(k);
    return ok;
}

static bool rate_take(struct sb_stripe *st, bool live, int64_t now)
{
    struct win *w = &st->win[live ? 1 : 0];
    size_t cap = (size_t)(st->rate > 0 ? st->rate : live ? 100 : 25);
    if (!w->t) {
        w->cap = cap;
        w->t = xcalloc(cap, sizeof(*w->t));
    }
    while (w->len && w->t[w->head] <= now - 1000) {
        w->head = (w->head + 1) % w->cap;
        w->len--;
    }
    if (w->len >= w->cap)
        return false;
    w->t[(w->head + w->len) % w->cap] = now;
    w->len++;
    return true;
}

static bool version_ok(const char *v)
{
    if (strlen(v) < 10)
        return false;
    for (int i = 0; i < 10; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? v[i] != '-' : !isdigit((unsigned char)v[i]))
            return false;
    }
    if (!v[10])
        return true;
    if (v[10] != '.' || !v[11])
        return false;
    for (const char *p = v + 11; *p; p++)
        if (!islower((unsigned char)*p))
            return false;
    return true;
}

/* ---- Objects ------------------------------------------------------------ */

static json_int_t now_s(const struct sb_req *rq)
{
    return (json_int_t)(rq->received_ms / 1000);
}

static json_t *address_of(const json_t *a)
{
    json_t *o = json_object();
    static const char *const parts[] = {"city", "country", "line1", "line2",
                                        "postal_code", "state"};
    for (size_t i = 0; i < CS_ARRAY_LEN(parts); i++) {
        const char *v = pstr(a, parts[i]);
        json_object_set_new(o, parts[i], v && *v ? json_string(v)
                                                 : json_null());
    }
    return o;
}

static const char *const customer_params[] = {
    "address",  "description", "email",   "metadata", "name", "phone",
    "preferred_locales", "expand", "tax_exempt", NULL};
static const char *const address_params[] = {
    "city", "country", "line1", "line2", "postal_code", "state", NULL};

/* Check customer parameters; false after answering 400. */
static bool customer_params_ok(const json_t *p, struct sb_resp *out)
{
    if (refuse_unknown(out, p, NULL, customer_params))
        return false;
    const json_t *a = json_object_get(p, "address");
    if (a && !json_is_object(a) && !(json_is_string(a) &&
                                     json_string_length(a) == 0)) {
        bad_param(out, "address", "Invalid hash");
        return false;
    }
    if (json_is_object(a) && refuse_unknown(out, a, "address",
                                            address_params))
        return false;
    const char *e = pstr(p, "email");
    if (e && *e && !email_valid(e)) {
        fail(out, 400, error_body("invalid_request_error", "email_invalid",
                                  "email", "Invalid email address: %s", e));
        return false;
    }
    const char *ph = pstr(p, "phone");
    if (ph && strlen(ph) > 20) {
        bad_param(out, "phone",
                  "Invalid string: %.40s...; must be at most 20 characters",
                  ph);
        return false;
    }
    const char *n = pstr(p, "name");
    if (n && strlen(n) > 256) {
        bad_param(out, "name", "Invalid string: must be at most 256 "
                               "characters");
        return false;
    }
    return check_metadata(json_object_get(p, "metadata"), out);
}

static void customer_apply(json_t *c, const json_t *p)
{
    static const char *const fields[] = {"description", "email", "name",
                                         "phone"};
    for (size_t i = 0; i < CS_ARRAY_LEN(fields); i++) {
        const char *v = pstr(p, fields[i]);
        if (v)
            json_object_set_new(c, fields[i],
                                *v ? json_string(v) : json_null());
    }
    const json_t *a = json_object_get(p, "address");
    if (json_is_object(a))
        json_object_set_new(c, "address", address_of(a));
    else if (a)
        json_object_set_new(c, "address", json_null());
    const json_t *m = json_object_get(p, "metadata");
    if (m)
        merge_metadata(c, m);
}

static void customer_create(struct sb_stripe *st, const struct sb_req *rq,
                            const json_t *p, bool live, struct sb_resp *out)
{
    if (!customer_params_ok(p, out))
        return;
    json_t *id = new_id(st, "cus");
    json_t *c = json_pack(
        "{s:O,s:s,s:n,s:i,s:I,s:n,s:n,s:b,s:n,s:n,s:{s:n,s:n,s:n},s:b,s:{},"
        "s:n,s:n,s:i,s:[],s:n,s:s,s:n}",
        "id", id, "object", "customer", "address", "balance", 0, "created",
        now_s(rq), "currency", "default_source", "delinquent", 0,
        "description", "email", "invoice_settings", "custom_fields",
        "default_payment_method", "footer", "livemode", live, "metadata",
        "name", "phone", "next_invoice_sequence", 1, "preferred_locales",
        "shipping", "tax_exempt", "none", "test_clock");
    json_object_set_new(c, "invoice_prefix",
                        json_sprintf("SB%06lld", st->next_id));
    customer_apply(c, p);
    json_array_append(st->list[T_CUS], c);
    json_object_set(st->by_id, json_string_value(id), c);
    json_object_set_new(st->touched, json_string_value(id),
                        json_integer(rq->received_ms));
    json_decref(id);
    sb_resp_json(out, 200, c);
}

static json_t *find(struct sb_stripe *st, const char *id, const char *object)
{
    json_t *o = id ? json_object_get(st->by_id, id) : NULL;
    const char *t = json_string_value(json_object_get(o, "object"));
    return t && strcmp(t, object) == 0 ? o : NULL;
}

static void customer_update(struct sb_stripe *st, const struct sb_req *rq,
                            const char *id, const json_t *p,
                            struct sb_resp *out)
{
    json_t *c = find(st, id, "customer");
    if (!c) {
        no_such(out, "customer", id, NULL);
        return;
    }
    if (!customer_params_ok(p, out))
        return;
    customer_apply(c, p);
    json_object_set_new(st->touched, id, json_integer(rq->received_ms));
    sb_resp_json(out, 200, json_incref(c));
}

/* ---- Lists -------------------------------------------------------------- */

typedef bool list_filter(const json_t *rec, const json_t *params);

/*
 * A list answer over recs (oldest first) newest first: records the
 * filter keeps, after starting_after, at most limit (default 10).
 */
static void list_answer(const json_t *recs, const json_t *q,
                        list_filter *keep, const char *url,
                        struct sb_resp *out)
{
    long long limit = 10;
    bool has;
    if (!pint(q, "limit", 1, 100, &limit, &has, out))
        return;
    const char *after = pstr(q, "starting_after");
    json_t *data = json_array();
    bool started = !after, more = false;
    for (size_t i = json_array_size(recs); i-- > 0;) {
        const json_t *r = json_array_get(recs, i);
        if (!started) {
            const char *id = json_string_value(json_object_get(r, "id"));
            started = id && strcmp(id, after) == 0;
            continue;
        }
        if (keep && !keep(r, q))
            continue;
        if ((long long)json_array_size(data) == limit) {
            more = true;
            break;
        }
        json_array_append(data, (json_t *)r);
    }
    sb_resp_json(out, 200,
                 json_pack("{s:s,s:o,s:b,s:s}", "object", "list", "data",
                           data, "has_more", more, "url", url));
}

static bool str_param_eq(const json_t *r, const json_t *q, const char *field,
                         const char *param)
{
    const char *want = pstr(q, param);
    if (!want)
        return true;
    const char *have = json_string_value(json_object_get(r, field));
    return have && strcmp(have, want) == 0;
}

static bool keep_customer(const json_t *r, const json_t *q)
{
    return str_param_eq(r, q, "email", "email");
}

static bool keep_link(const json_t *r, const json_t *q)
{
    const char *a = pstr(q, "active");
    return !a || (strcmp(a, "true") == 0) ==
                     json_is_true(json_object_get(r, "active"));
}

static bool keep_invoice(const json_t *r, const json_t *q)
{
    return str_param_eq(r, q, "customer", "customer") &&
           str_param_eq(r, q, "status", "status");
}

static bool keep_item(const json_t *r, const json_t *q)
{
    return str_param_eq(r, q, "customer", "customer") &&
           str_param_eq(r, q, "invoice", "invoice");
}

/* ---- Search ------------------------------------------------------------- */

struct clause {
    char field[64];    /* email, phone, name, or the metadata key */
    bool metadata;
    bool substring;    /* ~ */
    char value[256];
};

/* Parse a search query; the number of clauses (and AND/OR in *any), or
 * -1 with a message in err. */
static int parse_query(const char *q, struct clause c[8], bool *any,
                       char *err, size_t el)
{
    int n = 0;
    int joins = 0; /* 1 AND, 2 OR */
    const char *p = q;
    while (*p) {
        while (*p == ' ')
            p++;
        if (n == 8) {
            snprintf(err, el, "at most 8 clauses are supported");
            return -1;
        }
        struct clause *cl = &c[n];
        memset(cl, 0, sizeof(*cl));
        if (strncmp(p, "metadata[", 9) == 0) {
            p += 9;
            char quote = *p;
            if (quote != '\'' && quote != '"') {
                snprintf(err, el, "metadata keys must be quoted");
                return -1;
            }
            const char *end = strchr(p + 1, quote);
            if (!end || end[1] != ']' || (size_t)(end - p - 1) >= 64) {
                snprintf(err, el, "unterminated metadata key");
                return -1;
            }
            memcpy(cl->field, p + 1, (size_t)(end - p - 1));
            cl->metadata = true;
            p = end + 2;
        } else {
            size_t l = strcspn(p, ":~ ");
            if (l == 0 || l >= sizeof(cl->field)) {
                snprintf(err, el, "expected a field at '%.20s'", p);
                return -1;
            }
            memcpy(cl->field, p, l);
            p += l;
            if (strcmp(cl->field, "email") && strcmp(cl->field, "phone") &&
                strcmp(cl->field, "name")) {
                snprintf(err, el, "Field '%.60s' is an unsupported search "
                                  "field for resource customer", cl->field);
                return -1;
            }
        }
        if (*p != ':' && *p != '~') {
            snprintf(err, el, "expected ':' or '~' after '%.60s'", cl->field);
            return -1;
        }
        cl->substring = *p == '~';
        p++;
        char quote = *p;
        if (quote != '\'' && quote != '"') {
            snprintf(err, el, "values must be quoted");
            return -1;
        }
        p++;
        size_t k = 0;
        while (*p && *p != quote) {
            if (*p == '\\' && p[1])
                p++;
            if (k + 1 < sizeof(cl->value))
                cl->value[k++] = *p;
            p++;
        }
        if (*p != quote) {
            snprintf(err, el, "unterminated value");
            return -1;
        }
        p++;
        n++;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        int j = strncmp(p, "AND ", 4) == 0 ? 1 : strncmp(p, "OR ", 3) == 0
                                                     ? 2
                                                     : 0;
        if (!j || (joins && joins != j)) {
            snprintf(err, el, "clauses must be joined by AND or by OR");
            return -1;
        }
        joins = j;
        p += j == 1 ? 4 : 3;
    }
    if (n == 0) {
        snprintf(err, el, "the query is empty");
        return -1;
    }
    *any = joins == 2;
    return n;
}

static bool clause_matches(const struct clause *cl, const json_t *r)
{
    const json_t *v = cl->metadata
                          ? json_object_get(json_object_get(r, "metadata"),
                                            cl->field)
                          : json_object_get(r, cl->field);
    const char *s = json_string_value(v);
    if (!s)
        return false;
    if (cl->substring)
        return strcasestr(s, cl->value) != NULL;
    /* email matches case-insensitively; the rest exactly */
    return strcmp(cl->field, "email") == 0 && !cl->metadata
               ? strcasecmp(s, cl->value) == 0
               : strcmp(s, cl->value) == 0;
}

static void customer_search(struct sb_stripe *st, const struct sb_req *rq,
                            const json_t *q, struct sb_resp *out)
{
    const char *query = pstr(q, "query");
    if (!query) {
        missing(out, "query");
        return;
    }
    long long limit = 10;
    bool has;
    if (!pint(q, "limit", 1, 100, &limit, &has, out))
        return;
    struct clause c[8];
    bool any = false;
    char err[200];
    int n = parse_query(query, c, &any, err, sizeof(err));
    if (n < 0) {
        fail(out, 400, error_body("invalid_request_error", NULL, "query",
                                  "Invalid search query: %s", err));
        return;
    }
    json_t *data = json_array();
    const json_t *recs = st->list[T_CUS];
    for (size_t i = json_array_size(recs); i-- > 0;) {
        const json_t *r = json_array_get(recs, i);
        const char *id = json_string_value(json_object_get(r, "id"));
        int64_t at = json_integer_value(json_object_get(st->touched, id));
        /* Not indexed yet: the search lags behind writes. */
        if (rq->received_ms - at < st->search_lag_ms)
            continue;
        bool hit = !any;
        for (int k = 0; k < n; k++) {
            bool m = clause_matches(&c[k], r);
            hit = any ? hit || m : hit && m;
        }
        if (hit && (long long)json_array_size(data) < limit)
            json_array_append(data, (json_t *)r);
    }
    sb_resp_json(out, 200,
                 json_pack("{s:s,s:s,s:b,s:n,s:o}", "object", "search_result",
                           "url", "/v1/customers/search", "has_more", 0,
                           "next_page", "data", data));
}

/* ---- Payment links ------------------------------------------------------ */

static const char *const link_params[] = {
    "line_items", "metadata", "payment_intent_data", "restrictions",
    "after_completion", "allow_promotion_codes", "currency",
    "customer_creation", "expand", "phone_number_collection", NULL};
static const char *const item_params[] = {"price", "price_data", "quantity",
                                          "adjustable_quantity", NULL};
static const char *const price_data_params[] = {
    "currency", "product", "product_data", "unit_amount",
    "unit_amount_decimal", "tax_behavior", "recurring", NULL};

/* Check one line item; its amount and currency into the outputs, false
 * after answering 400. */
static bool line_item_ok(const json_t *it, size_t i, json_int_t *amount,
                         json_int_t *quantity, const char **cur,
                         struct sb_resp *out)
{
    char pre[48];
    snprintf(pre, sizeof(pre), "line_items[%zu]", i);
    if (!json_is_object(it)) {
        bad_param(out, pre, "Invalid hash");
        return false;
    }
    if (refuse_unknown(out, it, pre, item_params))
        return false;
    const char *q = pstr(it, "quantity");
    char *end;
    long long qty = q ? strtoll(q, &end, 10) : 0;
    if (!q || *end || qty < 1) {
        char name[64];
        snprintf(name, sizeof(name), "%s[quantity]", pre);
        missing(out, name);
        return false;
    }
    const char *price = pstr(it, "price");
    const json_t *pd = json_object_get(it, "price_data");
    if (!price == !pd) {
        bad_param(out, pre, "You must specify exactly one of price or "
                            "price_data for each line item.");
        return false;
    }
    *amount = 0;
    *quantity = (json_int_t)qty;
    *cur = "usd";
    if (price) {
        if (strncmp(price, "price_", 6) != 0 &&
            strncmp(price, "plan_", 5) != 0) {
            no_such(out, "price", price, "line_items[0][price]");
            return false;
        }
        return true;
    }
    char pdn[64];
    snprintf(pdn, sizeof(pdn), "%s[price_data]", pre);
    if (!json_is_object(pd)) {
        bad_param(out, pdn, "Invalid hash");
        return false;
    }
    if (refuse_unknown(out, pd, pdn, price_data_params))
        return false;
    const char *c = pstr(pd, "currency");
    if (!currency_valid(c)) {
        char n[96];
        snprintf(n, sizeof(n), "%s[currency]", pdn);
        bad_param(out, n, "Invalid currency: %s", c ? c : "");
        return false;
    }
    const json_t *prod = json_object_get(pd, "product_data");
    if (!pstr(pd, "product") &&
        !(json_is_object(prod) && pstr(prod, "name") &&
          *pstr(prod, "name"))) {
        char n[96];
        snprintf(n, sizeof(n), "%s[product_data][name]", pdn);
        missing(out, n);
        return false;
    }
    const char *ua = pstr(pd, "unit_amount");
    long long a = ua ? strtoll(ua, &end, 10) : -1;
    if (!ua || *end || a < 0 || a > 99999999) {
        char n[96];
        snprintf(n, sizeof(n), "%s[unit_amount]", pdn);
        bad_param(out, n, "Invalid integer: %s", ua ? ua : "");
        return false;
    }
    *amount = (json_int_t)(a * qty);
    *cur = c;
    return true;
}

static void link_create(struct sb_stripe *st, const json_t *p, bool live,
                        struct sb_resp *out)
{
    if (refuse_unknown(out, p, NULL, link_params))
        return;
    const json_t *items = json_object_get(p, "line_items");
    if (!json_is_array(items) || json_array_size(items) == 0) {
        missing(out, "line_items");
        return;
    }
    if (json_array_size(items) > 20) {
        bad_param(out, "line_items", "You can have up to 20 line items.");
        return;
    }
    json_t *lines = json_array();
    const char *currency = NULL;
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        json_int_t amount, qty;
        const char *cur;
        if (!line_item_ok(it, i, &amount, &qty, &cur, out)) {
            json_decref(lines);
            return;
        }
        currency = cur;
        json_array_append_new(
            lines, json_pack("{s:s,s:I,s:s,s:I}", "object", "item",
                             "amount_total", amount, "currency", cur,
                             "quantity", qty));
    }
    const json_t *meta = json_object_get(p, "metadata");
    const json_t *pid = json_object_get(p, "payment_intent_data");
    if (!check_metadata(meta, out) ||
        !check_metadata(json_object_get(pid, "metadata"), out)) {
        json_decref(lines);
        return;
    }
    json_t *id = new_id(st, "plink");
    json_t *l = json_pack(
        "{s:O,s:s,s:b,s:s,s:b,s:O,s:{},s:o,s:s}", "id", id, "object",
        "payment_link", "active", 1, "currency", currency, "livemode", live,
        "metadata", json_object_get(p, "metadata") ? meta : json_null(),
        "payment_intent_data", "line_items", json_pack("{s:s,s:o,s:b}",
                                                       "object", "list",
                                                       "data", lines,
                                                       "has_more", 0),
        "url", "");
    if (!json_is_object(json_object_get(l, "metadata")))
        json_object_set_new(l, "metadata", json_object());
    json_object_set_new(l, "url",
                        json_sprintf("https://buy.stripe.com/%s%s",
                                     live ? "" : "test_",
                                     json_string_value(id) + 6));
    if (pid)
        json_object_set(l, "payment_intent_data", (json_t *)pid);
    const json_t *r = json_object_get(p, "restrictions");
    if (r)
        json_object_set(l, "restrictions", (json_t *)r);
    json_array_append(st->list[T_LINKS], l);
    json_decref(id);
    sb_resp_json(out, 200, l);
}

/* ---- Invoices and items ------------------------------------------------- */

static const char *const invoice_params[] = {
    "customer", "collection_method", "days_until_due", "due_date",
    "currency", "auto_advance", "pending_invoice_items_behavior",
    "description", "metadata", "expand", "footer", NULL};

static void invoice_create(struct sb_stripe *st, const struct sb_req *rq,
                           const json_t *p, bool live, struct sb_resp *out)
{
    if (refuse_unknown(out, p, NULL, invoice_params))
        return;
    const char *cid = pstr(p, "customer");
    if (!cid) {
        missing(out, "customer");
        return;
    }
    json_t *cus = find(st, cid, "customer");
    if (!cus) {
        no_such(out, "customer", cid, "customer");
        return;
    }
    const char *method = pstr(p, "collection_method");
    if (!method)
        method = "charge_automatically";
    if (strcmp(method, "charge_automatically") &&
        strcmp(method, "send_invoice")) {
        bad_param(out, "collection_method",
                  "Invalid collection_method: must be one of "
                  "charge_automatically or send_invoice");
        return;
    }
    long long days = 0;
    bool has_days, has_auto, has_due;
    long long due = 0;
    bool auto_advance = false;
    if (!pint(p, "days_until_due", 0, 3650, &days, &has_days, out) ||
        !pint(p, "due_date", 0, INT64_MAX, &due, &has_due, out) ||
        !pbool(p, "auto_advance", &auto_advance, &has_auto, out))
        return;
    if (strcmp(method, "send_invoice") == 0 && !has_days && !has_due) {
        bad_param(out, "days_until_due",
                  "Invoices with `collection_method=send_invoice` must "
                  "specify `days_until_due` or `due_date`.");
        return;
    }
    if (strcmp(method, "charge_automatically") == 0 && has_days) {
        bad_param(out, "days_until_due",
                  "`days_until_due` can only be set when "
                  "`collection_method=send_invoice`.");
        return;
    }
    const char *cur = pstr(p, "currency");
    if (cur && !currency_valid(cur)) {
        bad_param(out, "currency", "Invalid currency: %s", cur);
        return;
    }
    const char *pib = pstr(p, "pending_invoice_items_behavior");
    if (pib && strcmp(pib, "exclude") && strcmp(pib, "include")) {
        bad_param(out, "pending_invoice_items_behavior",
                  "Invalid pending_invoice_items_behavior: must be one of "
                  "exclude or include");
        return;
    }
    if (!check_metadata(json_object_get(p, "metadata"), out))
        return;
    json_t *id = new_id(st, "in");
    json_t *inv = json_pack(
        "{s:O,s:s,s:s,s:O,s:O,s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:n,s:n,s:b,"
        "s:{},s:{s:s,s:[],s:b}}",
        "id", id, "object", "invoice", "customer", cid, "customer_email",
        json_object_get(cus, "email"), "customer_name",
        json_object_get(cus, "name"), "collection_method", method,
        "currency", cur ? cur : "usd", "status", "draft", "auto_advance",
        auto_advance, "amount_due", (json_int_t)0, "subtotal", (json_int_t)0,
        "total", (json_int_t)0, "created", now_s(rq), "number",
        "hosted_invoice_url", "livemode", live, "metadata", "lines",
        "object", "list", "data", "has_more", 0);
    const char *desc = pstr(p, "description");
    json_object_set_new(inv, "description",
                        desc ? json_string(desc) : json_null());
    json_object_set_new(inv, "days_until_due",
                        has_days ? json_integer(days) : json_null());
    json_object_set_new(inv, "due_date",
                        has_due ? json_integer(due)
                        : has_days ? json_integer(now_s(rq) + days * 86400)
                                   : json_null());
    const json_t *m = json_object_get(p, "metadata");
    if (m)
        merge_metadata(inv, m);
    json_array_append(st->list[T_INV], inv);
    json_object_set(st->by_id, json_string_value(id), inv);
    json_decref(id);
    sb_resp_json(out, 200, inv);
}

static const char *const item_create_params[] = {
    "customer", "amount", "currency", "description", "invoice", "metadata",
    "discountable", "expand", NULL};

static void item_create(struct sb_stripe *st, const struct sb_req *rq,
                        const json_t *p, bool live, struct sb_resp *out)
{
    if (refuse_unknown(out, p, NULL, item_create_params))
        return;
    const char *cid = pstr(p, "customer");
    if (!cid) {
        missing(out, "customer");
        return;
    }
    if (!find(st, cid, "customer")) {
        no_such(out, "customer", cid, "customer");
        return;
    }
    long long amount = 0;
    bool has_amount;
    if (!pint(p, "amount", -99999999, 99999999, &amount, &has_amount, out))
        return;
    if (!has_amount) {
        missing(out, "amount");
        return;
    }
    const char *cur = pstr(p, "currency");
    if (!currency_valid(cur)) {
        missing(out, "currency");
        return;
    }
    const char *iid = pstr(p, "invoice");
    json_t *inv = iid ? find(st, iid, "invoice") : NULL;
    if (iid && !inv) {
        no_such(out, "invoice", iid, "invoice");
        return;
    }
    if (inv) {
        const char *status = json_string_value(json_object_get(inv,
                                                               "status"));
        if (strcmp(status, "draft") != 0) {
            bad_param(out, "invoice",
                      "You can only add invoice items to draft invoices. "
                      "The invoice %s is %s.", iid, status);
            return;
        }
        if (strcmp(json_string_value(json_object_get(inv, "customer")),
                   cid) != 0) {
            bad_param(out, "invoice", "The invoice %s belongs to another "
                                      "customer.", iid);
            return;
        }
        if (strcmp(json_string_value(json_object_get(inv, "currency")),
                   cur) != 0) {
            bad_param(out, "currency",
                      "The currency of the invoice item (%s) must match the "
                      "invoice's currency (%s).", cur,
                      json_string_value(json_object_get(inv, "currency")));
            return;
        }
    }
    if (!check_metadata(json_object_get(p, "metadata"), out))
        return;
    json_t *id = new_id(st, "ii");
    const char *desc = pstr(p, "description");
    json_t *it = json_pack(
        "{s:O,s:s,s:I,s:s,s:s,s:I,s:s?,s:s?,s:b,s:i,s:b,s:{}}", "id", id,
        "object", "invoiceitem", "amount", (json_int_t)amount, "currency",
        cur, "customer", cid, "date", now_s(rq), "description", desc,
        "invoice", iid, "livemode", live, "quantity", 1, "proration", 0,
        "metadata");
    const json_t *m = json_object_get(p, "metadata");
    if (m)
        merge_metadata(it, m);
    json_array_append(st->list[T_ITEMS], it);
    if (inv) {
        json_array_append(
            json_object_get(json_object_get(inv, "lines"), "data"),
            json_pack("{s:s,s:s,s:I,s:s,s:s?,s:O}", "id",
                      json_string_value(id), "object", "line_item", "amount",
                      (json_int_t)amount, "currency", cur, "description",
                      desc, "metadata", json_object_get(it, "metadata")));
        json_int_t total =
            json_integer_value(json_object_get(inv, "total")) + amount;
        json_object_set_new(inv, "total", json_integer(total));
        json_object_set_new(inv, "subtotal", json_integer(total));
        json_object_set_new(inv, "amount_due", json_integer(total));
    }
    json_decref(id);
    sb_resp_json(out, 200, it);
}

static void invoice_finalize(struct sb_stripe *st, const json_t *p,
                             json_t *inv, struct sb_resp *out)
{
    static const char *const allowed[] = {"auto_advance", "expand", NULL};
    if (refuse_unknown(out, p, NULL, allowed))
        return;
    bool aa = false, has;
    if (!pbool(p, "auto_advance", &aa, &has, out))
        return;
    const char *status = json_string_value(json_object_get(inv, "status"));
    if (strcmp(status, "draft") != 0) {
        fail(out, 400,
             error_body("invalid_request_error", "invoice_not_editable",
                        NULL,
                        "This invoice is already finalized, you can't "
                        "re-finalize a non-draft invoice."));
        return;
    }
    if (has)
        json_object_set_new(inv, "auto_advance", json_boolean(aa));
    json_int_t total = json_integer_value(json_object_get(inv, "total"));
    json_object_set_new(inv, "status", json_string(total > 0 ? "open"
                                                             : "paid"));
    json_object_set_new(inv, "number",
                        json_sprintf("SB-%04lld", st->next_id++));
    json_object_set_new(
        inv, "hosted_invoice_url",
        json_sprintf("https://invoice.stripe.com/i/acct_sandbox/%s",
                     json_string_value(json_object_get(inv, "id"))));
    sb_resp_json(out, 200, json_incref(inv));
}

static void invoice_send(struct sb_stripe *st, const struct sb_req *rq,
                         const json_t *p, json_t *inv, struct sb_resp *out)
{
    static const char *const allowed[] = {"expand", NULL};
    if (refuse_unknown(out, p, NULL, allowed))
        return;
    const char *method = json_string_value(json_object_get(
        inv, "collection_method"));
    const char *status = json_string_value(json_object_get(inv, "status"));
    if (strcmp(method, "send_invoice") != 0) {
        fail(out, 400, error_body("invalid_request_error", NULL, NULL,
                                  "You can only manually send an invoice if "
                                  "its collection method is "
                                  "'send_invoice'."));
        return;
    }
    if (strcmp(status, "draft") == 0) {
        fail(out, 400, error_body("invalid_request_error",
                                  "invoice_unexpected_state", NULL,
                                  "You can't send a draft invoice; finalize "
                                  "it first."));
        return;
    }
    json_array_append_new(
        st->list[T_SENDS],
        json_pack("{s:O,s:O,s:I}", "invoice", json_object_get(inv, "id"),
                  "customer_email", json_object_get(inv, "customer_email"),
                  "at_ms", (json_int_t)rq->received_ms));
    sb_resp_json(out, 200, json_incref(inv));
}

/* ---- Routing ------------------------------------------------------------ */

static const char *method_name(const struct sb_req *rq)
{
    return http_method_str((enum http_method)rq->method);
}

/* Split the path after /v1/ into at most 3 segments; the count, or -1. */
static int segments(const char *p, char seg[3][128])
{
    int n = 0;
    while (*p == '/')
        p++;
    while (*p && n < 3) {
        size_t l = strcspn(p, "/");
        if (l == 0 || l >= 128)
            return -1;
        char *d = sb_url_decode(p, l, false);
        snprintf(seg[n++], 128, "%s", d);
        free(d);
        p += l;
        while (*p == '/')
            p++;
    }
    return *p ? -1 : n;
}

static void route(struct sb_stripe *st, const struct sb_req *rq,
                  const json_t *p, bool live, struct sb_resp *out)
{
    char seg[3][128];
    bool get = rq->method == HTTP_GET, post = rq->method == HTTP_POST;
    int n = strncmp(rq->sub, "/v1/", 4) == 0 ? segments(rq->sub + 4, seg)
                                             : -1;
    if (n < 1) {
        fail(out, 404, error_body("invalid_request_error", NULL, NULL,
                                  "Unrecognized request URL (%s: %s).",
                                  method_name(rq), rq->path));
        return;
    }
    const char *what = seg[0];
    if (strcmp(what, "account") == 0 && n == 1 && get) {
        /* Retrieve account: the platform account the key belongs to. */
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:s,s:{s:s,s:s?},s:s,s:b,s:b,s:s,"
                               "s:b,s:s,s:{s:{s:s,s:s}},s:s}",
                               "id", "acct_sandbox", "object", "account",
                               "business_profile", "name", "Acme Roofing",
                               "url", NULL, "business_type", "company",
                               "charges_enabled", 1, "payouts_enabled", 1,
                               "country", "US", "details_submitted", 1,
                               "default_currency", "usd", "settings",
                               "dashboard", "display_name", "Acme Roofing",
                               "timezone", "America/New_York", "type",
                               "standard"));
    } else if (strcmp(what, "customers") == 0) {
        if (n == 1 && post)
            customer_create(st, rq, p, live, out);
        else if (n == 1 && get)
            list_answer(st->list[T_CUS], p, keep_customer, "/v1/customers",
                        out);
        else if (n == 2 && get && strcmp(seg[1], "search") == 0)
            customer_search(st, rq, p, out);
        else if (n == 2 && post)
            customer_update(st, rq, seg[1], p, out);
        else if (n == 2 && get && find(st, seg[1], "customer"))
            sb_resp_json(out, 200, json_incref(find(st, seg[1],
                                                    "customer")));
        else if (n == 2 && get)
            no_such(out, "customer", seg[1], NULL);
        else
            goto unknown;
    } else if (strcmp(what, "payment_links") == 0 && n == 1) {
        if (post)
            link_create(st, p, live, out);
        else if (get)
            list_answer(st->list[T_LINKS], p, keep_link,
                        "/v1/payment_links", out);
        else
            goto unknown;
    } else if (strcmp(what, "invoiceitems") == 0 && n == 1) {
        if (post)
            item_create(st, rq, p, live, out);
        else if (get)
            list_answer(st->list[T_ITEMS], p, keep_item, "/v1/invoiceitems",
                        out);
        else
            goto unknown;
    } else if (strcmp(what, "invoices") == 0) {
        json_t *inv = n >= 2 ? find(st, seg[1], "invoice") : NULL;
        if (n == 1 && post)
            invoice_create(st, rq, p, live, out);
        else if (n == 1 && get)
            list_answer(st->list[T_INV], p, keep_invoice, "/v1/invoices",
                        out);
        else if (n >= 2 && !inv)
            no_such(out, "invoice", seg[1], NULL);
        else if (n == 2 && get)
            sb_resp_json(out, 200, json_incref(inv));
        else if (n == 3 && post && strcmp(seg[2], "finalize") == 0)
            invoice_finalize(st, p, inv, out);
        else if (n == 3 && post && strcmp(seg[2], "send") == 0)
            invoice_send(st, rq, p, inv, out);
        else
            goto unknown;
    } else {
        goto unknown;
    }
    return;
unknown:
    fail(out, 404, error_body("invalid_request_error", NULL, NULL,
                              "Unrecognized request URL (%s: %s).",
                              method_name(rq), rq->path));
}

/* The request's parameters: the form body for POST, the query for GET;
 * NULL after answering 400. */
static json_t *params_of(const struct sb_req *rq, struct sb_resp *out)
{
    char err[200];
    json_t *p = NULL;
    if (rq->method == HTTP_POST && rq->body.len) {
        if (!sb_is_form(rq)) {
            fail(out, 400, error_body("invalid_request_error", NULL, NULL,
                                      "Invalid request: the body must be "
                                      "application/x-www-form-urlencoded"));
            return NULL;
        }
        if (!sb_form_parse(rq->body.data, rq->body.len, true, &p, err,
                           sizeof(err))) {
            fail(out, 400,
                 error_body("invalid_request_error", NULL, NULL, "%s", err));
            return NULL;
        }
        return p;
    }
    if (!sb_form_parse(rq->query, strlen(rq->query), true, &p, err,
                       sizeof(err))) {
        fail(out, 400,
             error_body("invalid_request_error", NULL, NULL, "%s", err));
        return NULL;
    }
    return p;
}

void stripe_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_stripe *st = state(s);
    char rid[32];
    snprintf(rid, sizeof(rid), "req_SB%012lld", st->next_id++);
    bool live = false;
    const char *ver = sb_header(rq, "stripe-version");
    const char *key = sb_header(rq, "idempotency-key");
    bool replayed = false;
    json_t *p = NULL;
    if (!authorised(st, rq, &live, out))
        goto out_log;
    if (!rate_take(st, live, cs_mono_ms())) {
        sb_resp_json(out, 429, stripe_error_body(429));
        goto out_log;
    }
    if (ver && !version_ok(ver)) {
        fail(out, 400, error_body("invalid_request_error", NULL, NULL,
                                  "Invalid Stripe API version: %s", ver));
        goto out_log;
    }
    p = params_of(rq, out);
    if (!p)
        goto out_log;
    json_t *seen = NULL;
    if (key && rq->method == HTTP_POST) {
        if (strlen(key) > 255) {
            fail(out, 400, error_body("invalid_request_error", NULL, NULL,
                                      "Idempotency keys can be at most 255 "
                                      "characters long."));
            goto out_log;
        }
        seen = json_object_get(st->idem, key);
        if (seen && rq->received_ms -
                            json_integer_value(json_object_get(seen, "at")) >=
                        KEY_TTL_MS) {
            json_object_del(st->idem, key); /* pruned: a new request */
            seen = NULL;
        }
    }
    if (seen) {
        const char *path = json_string_value(json_object_get(seen, "path"));
        if (strcmp(path, rq->path) != 0 ||
            !json_equal(json_object_get(seen, "params"), p)) {
            fail(out, 400,
                 error_body("idempotency_error", NULL, NULL,
                            "Keys for idempotent requests can only be used "
                            "with the same parameters they were first used "
                            "with. Try using a key other than '%s' if you "
                            "meant to execute a different request.",
                            key));
            goto out_log;
        }
        const char *body = json_string_value(json_object_get(seen, "body"));
        free(out->body);
        out->status = (int)json_integer_value(json_object_get(seen,
                                                              "status"));
        out->body = xstrdup(body);
        out->len = strlen(body);
        sb_resp_header(out, "Idempotent-Replayed: true");
        replayed = true;
        goto out_log;
    }
    route(st, rq, p, live, out);
    if (key && rq->method == HTTP_POST && out->status >= 200 &&
        out->status < 300)
        json_object_set_new(
            st->idem, key,
            json_pack("{s:s,s:O,s:i,s:s%,s:I}", "path", rq->path, "params",
                      p, "status", out->status, "body", out->body, out->len,
                      "at", (json_int_t)rq->received_ms));
out_log:
    sb_resp_header(out, "Request-Id: %s", rid);
    sb_resp_header(out, "Stripe-Version: %s", ver ? ver : "2025-09-30.clover");
    json_array_append_new(
        st->list[T_REQS],
        json_pack("{s:s,s:s,s:s?,s:s?,s:b,s:i}", "method",
                  method_name(rq), "path", rq->path,
                  "idempotency_key", key, "stripe_version", ver, "replayed",
                  replayed, "status", out->status));
    json_decref(p);
}

void stripe_control(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out)
{
    struct sb_stripe *st = state(s);
    if (strcmp(rq->sub, "/stripe/expire_keys") == 0 &&
        rq->method == HTTP_POST) {
        size_t n = json_object_size(st->idem);
        json_object_clear(st->idem);
        sb_resp_json(out, 200, json_pack("{s:I}", "expired", (json_int_t)n));
        return;
    }
    sb_resp_json(out, 404, json_pack("{s:s}", "error",
                                     "no such control route"));
}
