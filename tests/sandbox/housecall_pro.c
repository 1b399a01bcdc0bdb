/*
 * housecall_pro.c - the Housecall Pro API (api.housecallpro.com, the
 * Housecall v1 OpenAPI document) part of the sandbox, under
 * /housecall_pro:
 *
 *   GET  /customers?q&page&page_size     POST /customers
 *   GET  /customers/{id}                 PUT  /customers/{id}
 *   POST /customers/{id}/addresses
 *   GET  /jobs?customer_id&scheduled_start_min&scheduled_start_max&...
 *   POST /jobs        GET /jobs/{id}      POST /jobs/{id}/notes
 *   GET  /estimates?customer_id&...       POST /estimates
 *   GET  /estimates/{id}
 *   POST /estimates/{id}/options/{option_id}/notes
 *   GET  /company
 *
 * Auth: "Authorization: Token <api key>" or "Bearer <token>" (any key
 * unless --housecall-pro-token is given); otherwise 401 {"message":
 * "Unauthorized"}. Bodies are checked against the document's schemas:
 * CustomerCreate needs one of first_name, last_name, email,
 * mobile_number, home_number, work_number; typed fields must have their
 * type; AddressCreate needs street, city, state, zip and country; JobCreate
 * needs customer_id and address_id (the address must be the customer's)
 * and a schedule whose times parse as ISO-8601 and do not end before
 * they start; a note needs content. Failures answer as the document
 * shows: 400 {"message": "<all errors in a sentence>", "<field>":
 * "<error>"}, 422 {"errors": {"<field>": ["is missing"]}}, 404 {"error":
 * {"message": "... not found"}}. Properties the schemas do not know are
 * ignored, as Rails does.
 *
 * q searches names, email and address in any case, and phone numbers by
 * digits. Times without an offset are the company's (UTC here); answers
 * give them in UTC ("2026-02-20T20:00:00Z"). A job created with notes
 * carries them as its first note. Customers' notes are one text field.
 *
 * Rate limit: Housecall Pro documents none; --housecall-pro-rate N
 * accepted requests per sliding minute (default 0: none) answers 429
 * {"message": "Too Many Requests"} with Retry-After past it.
 * Records: ?provider=housecall_pro&type=customers|addresses|jobs|notes|
 * estimates ("notes" are the notes posted to jobs and estimate options).
 */
#include "sandbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MINUTE_MS 60000

enum { T_CUSTOMERS, T_ADDRESSES, T_JOBS, T_NOTES, T_ESTIMATES, T_COUNT };
static const char *const type_names[T_COUNT] = {
    "customers", "addresses", "jobs", "notes", "estimates"};

struct sb_hcp {
    const char *tokens[SB_MAX_TOKENS];
    size_t ntokens;
    long long rate;        /* per minute, 0: none */
    json_t *list[T_COUNT]; /* records in creation order */
    json_t *customers;     /* id -> record */
    json_t *jobs;          /* id -> record */
    json_t *estimates;     /* id -> record */
    long long next_id;
    int64_t *window;
    size_t wcap, whead, wlen;
};

static struct sb_hcp *state(struct sb *s)
{
    if (!s->hcp) {
        s->hcp = xcalloc(1, sizeof(*s->hcp));
        hcp_reset(s->hcp);
    }
    return s->hcp;
}

void hcp_reset(struct sb_hcp *h)
{
    for (int i = 0; i < T_COUNT; i++) {
        json_decref(h->list[i]);
        h->list[i] = json_array();
    }
    json_decref(h->customers);
    json_decref(h->jobs);
    json_decref(h->estimates);
    h->customers = json_object();
    h->jobs = json_object();
    h->estimates = json_object();
    h->next_id = 1;
    free(h->window);
    h->window = NULL;
    h->wcap = h->whead = h->wlen = 0;
}

void hcp_free(struct sb_hcp *h)
{
    if (!h)
        return;
    for (int i = 0; i < T_COUNT; i++)
        json_decref(h->list[i]);
    json_decref(h->customers);
    json_decref(h->jobs);
    json_decref(h->estimates);
    free(h->window);
    free(h);
}

bool hcp_option(struct sb *s, const char *flag, const char *val)
{
    struct sb_hcp *h = state(s);
    if (strcmp(flag, "--housecall-pro-token") == 0 && *val &&
        h->ntokens < SB_MAX_TOKENS) {
        h->tokens[h->ntokens++] = val;
        return true;
    }
    if (strcmp(flag, "--housecall-pro-rate") == 0) {
        char *end;
        errno = 0;
        long long n = strtoll(val, &end, 10);
        if (errno || !*val || *end || n < 0)
            return false;
        h->rate = n;
        return true;
    }
    return false;
}

json_t *hcp_records(struct sb *s, const char *type)
{
    struct sb_hcp *h = state(s);
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(type, type_names[i]) == 0)
            return json_incref(h->list[i]);
    return NULL;
}

json_t *hcp_error_body(int status)
{
    if (status == 404)
        return json_pack("{s:{s:s}}", "error", "message", "Not found");
    if (status == 422)
        return json_pack("{s:{s:[s]}}", "errors", "base", "is invalid");
    return json_pack("{s:s}", "message", status == 401 ? "Unauthorized"
                                                       : sb_reason(status));
}

static void fail(struct sb_resp *out, int status, const char *message)
{
    sb_resp_json(out, status, json_pack("{s:s}", "message", message));
}

static void not_found(struct sb_resp *out, const char *what)
{
    char m[80];
    snprintf(m, sizeof(m), "%s not found", what);
    sb_resp_json(out, 404, json_pack("{s:{s:s}}", "error", "message", m));
}

/* 422 {"errors": {field: [message]}} */
static void unprocessable(struct sb_resp *out, json_t *errors)
{
    sb_resp_json(out, 422, json_pack("{s:o}", "errors", errors));
}

static json_t *new_id(struct sb_hcp *h, const char *prefix)
{
    return json_sprintf("%s_%032llx", prefix, h->next_id++);
}

static json_t *now_iso(const struct sb_req *rq)
{
    char ts[32];
    cs_rfc3339_s(rq->received_ms, ts);
    return json_string(ts);
}

/* ---- Validation --------------------------------------------------------- */

enum vt { V_STR, V_BOOL, V_STRS, V_OBJ, V_ARR, V_INT };

struct vf {
    const char *name;
    enum vt type;
};

static const struct vf customer_fields[] = {
    {"first_name", V_STR},    {"last_name", V_STR},
    {"email", V_STR},         {"company", V_STR},
    {"notifications_enabled", V_BOOL},
    {"mobile_number", V_STR}, {"home_number", V_STR},
    {"work_number", V_STR},   {"tags", V_STRS},
    {"lead_source", V_STR},   {"notes", V_STR},
    {"addresses", V_ARR},     {NULL, V_STR},
};

/* Type errors into a 400 {"message", field: error}; false when any. */
static bool types_ok(const json_t *b, const struct vf *fields,
                     struct sb_resp *out)
{
    for (const struct vf *f = fields; f->name; f++) {
        const json_t *v = json_object_get(b, f->name);
        if (!v || json_is_null(v))
            continue;
        bool ok;
        size_t i;
        const json_t *e;
        switch (f->type) {
        case V_STR: ok = json_is_string(v); break;
        case V_BOOL: ok = json_is_boolean(v); break;
        case V_INT: ok = json_is_integer(v); break;
        case V_OBJ: ok = json_is_object(v); break;
        case V_ARR: ok = json_is_array(v); break;
        case V_STRS:
            ok = json_is_array(v);
            json_array_foreach(v, i, e) ok &= json_is_string(e);
            break;
        default: ok = true; break;
        }
        if (!ok) {
            char m[120];
            snprintf(m, sizeof(m), "%s is invalid", f->name);
            sb_resp_json(out, 400, json_pack("{s:s,s:s}", "message", m,
                                             f->name, "is invalid"));
            return false;
        }
    }
    return true;
}

static size_t digit_count(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += isdigit((unsigned char)*s) != 0;
    return n;
}

/* Email and phone formats, as the model validates them. */
static bool formats_ok(const json_t *b, struct sb_resp *out)
{
    const char *email = json_string_value(json_object_get(b, "email"));
    if (email && *email && (!strchr(email, '@') || strchr(email, ' '))) {
        sb_resp_json(out, 400, json_pack("{s:s,s:s}", "message",
                                         "Email is invalid", "email",
                                         "is invalid"));
        return false;
    }
    static const char *const phones[] = {"mobile_number", "home_number",
                                         "work_number"};
    for (size_t i = 0; i < CS_ARRAY_LEN(phones); i++) {
        const char *p = json_string_value(json_object_get(b, phones[i]));
        if (p && *p && (digit_count(p) < 7 || digit_count(p) > 15)) {
            char m[80];
            snprintf(m, sizeof(m), "%s is invalid", phones[i]);
            sb_resp_json(out, 400, json_pack("{s:s,s:s}", "message", m,
                                             phones[i], "is invalid"));
            return false;
        }
    }
    return true;
}

static const char *const address_required[] = {"street", "city", "state",
                                               "zip", "country"};

/* An address record (type service) from a body object, with a new id;
 * missing required fields into errors when it is not NULL. */
static json_t *address_of(struct sb_hcp *h, const json_t *a, json_t *errors,
                          const char *customer_id)
{
    json_t *r = json_pack("{s:o,s:s,s:s}", "id", new_id(h, "adr"), "type",
                          "service", "customer_id", customer_id);
    static const char *const keys[] = {"street", "street_line_2", "city",
                                       "state",  "zip",           "country"};
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        const json_t *v = json_object_get(a, keys[i]);
        json_object_set_new(r, keys[i], json_is_string(v)
                                            ? json_incref((json_t *)v)
                                            : json_null());
    }
    if (errors)
        for (size_t i = 0; i < CS_ARRAY_LEN(address_required); i++) {
            const char *v = json_string_value(
                json_object_get(a, address_required[i]));
            if (!v || !*v)
                json_object_set_new(errors, address_required[i],
                                    json_pack("[s]", "is missing"));
        }
    return r;
}

/* ---- Customers ---------------------------------------------------------- */

static const char *const identity[] = {"first_name",    "last_name",
                                       "email",         "mobile_number",
                                       "home_number",   "work_number"};

/* The customer as the API shows it (addresses without our customer_id). */
static json_t *customer_out(const json_t *rec)
{
    json_t *c = json_deep_copy(rec);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(c, "addresses"), i, a)
        json_object_del(a, "customer_id");
    return c;
}

static void set_fields(json_t *rec, const json_t *b)
{
    for (const struct vf *f = customer_fields; f->name; f++) {
        if (strcmp(f->name, "addresses") == 0)
            continue;
        const json_t *v = json_object_get(b, f->name);
        if (v)
            json_object_set(rec, f->name, (json_t *)v);
    }
}

static void customer_create(struct sb *s, const struct sb_req *rq,
                            struct sb_resp *out)
{
    struct sb_hcp *h = s->hcp;
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Request body must be a JSON object");
        return;
    }
    if (!types_ok(b, customer_fields, out) || !formats_ok(b, out)) {
        json_decref(b);
        return;
    }
    bool any = false;
    for (size_t i = 0; i < CS_ARRAY_LEN(identity); i++) {
        const char *v = json_string_value(json_object_get(b, identity[i]));
        any |= v && *v;
    }
    if (!any) {
        fail(out, 400, "One of first_name, last_name, email, mobile_number, "
                       "home_number, work_number is required");
        json_decref(b);
        return;
    }
    json_t *id = new_id(h, "cus");
    json_t *rec = json_pack(
        "{s:O,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:b,s:n,s:n,s:[],s:[],s:o,s:o,"
        "s:s,s:s}",
        "id", id, "first_name", "last_name", "email", "company",
        "mobile_number", "home_number", "work_number",
        "notifications_enabled", 1, "lead_source", "notes", "tags",
        "addresses", "created_at", now_iso(rq), "updated_at", now_iso(rq),
        "company_name", "Sandbox Plumbing", "company_id",
        "cmp_00000000000000000000000000000001");
    set_fields(rec, b);
    json_t *addrs = json_object_get(b, "addresses");
    size_t i;
    json_t *a;
    json_array_foreach(addrs, i, a) {
        if (!json_is_object(a))
            continue;
        json_t *r = address_of(h, a, NULL, json_string_value(id));
        json_array_append(json_object_get(rec, "addresses"), r);
        json_array_append_new(h->list[T_ADDRESSES], r);
    }
    json_array_append(h->list[T_CUSTOMERS], rec);
    json_object_set_new(h->customers, json_string_value(id), rec);
    json_decref(id);
    sb_resp_json(out, 201, customer_out(rec));
    json_decref(b);
}

static void customer_update(struct sb *s, const struct sb_req *rq,
                            json_t *rec, struct sb_resp *out)
{
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Request body must be a JSON object");
        return;
    }
    if (!types_ok(b, customer_fields, out) || !formats_ok(b, out)) {
        json_decref(b);
        return;
    }
    set_fields(rec, b);
    json_object_set_new(rec, "updated_at", now_iso(rq));
    json_decref(b);
    (void)s;
    sb_resp_json(out, 200, customer_out(rec));
}

static bool text_has(const json_t *v, const char *q)
{
    const char *s = json_string_value(v);
    if (!s || !*q)
        return false;
    size_t n = strlen(q);
    for (; *s; s++)
        if (strncasecmp(s, q, n) == 0)
            return true;
    return false;
}

static bool digits_have(const json_t *v, const char *qd)
{
    const char *s = json_string_value(v);
    if (!s || strlen(qd) < 3)
        return false;
    char d[40];
    size_t k = 0;
    for (; *s && k < sizeof(d) - 1; s++)
        if (isdigit((unsigned char)*s))
            d[k++] = *s;
    d[k] = '\0';
    return strstr(d, qd) != NULL;
}

static bool customer_hits(const json_t *c, const char *q)
{
    char qd[40];
    size_t k = 0;
    bool mostly_digits = true;
    for (const char *p = q; *p && k < sizeof(qd) - 1; p++) {
        if (isdigit((unsigned char)*p))
            qd[k++] = *p;
        else if (!strchr("+-() .", *p))
            mostly_digits = false;
    }
    qd[k] = '\0';
    if (mostly_digits && k >= 3)
        return digits_have(json_object_get(c, "mobile_number"), qd) ||
               digits_have(json_object_get(c, "home_number"), qd) ||
               digits_have(json_object_get(c, "work_number"), qd);
    if (text_has(json_object_get(c, "first_name"), q) ||
        text_has(json_object_get(c, "last_name"), q) ||
        text_has(json_object_get(c, "email"), q) ||
        text_has(json_object_get(c, "company"), q))
        return true;
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(c, "addresses"), i, a) {
        if (text_has(json_object_get(a, "street"), q) ||
            text_has(json_object_get(a, "city"), q))
            return true;
    }
    return false;
}

static long long int_param(const struct sb_req *rq, const char *name,
                           long long dflt)
{
    char *v = sb_query_param(rq->query, name);
    long long n = v && *v ? strtoll(v, NULL, 10) : dflt;
    free(v);
    return n > 0 ? n : dflt;
}

/* One page of list (newest first) into {"page", "page_size",
 * "total_pages", "total_items", key: [...]}. */
static void page_of(json_t *list, const char *key, const struct sb_req *rq,
                    json_t *(*shape)(const json_t *), struct sb_resp *out)
{
    long long page = int_param(rq, "page", 1);
    long long size = int_param(rq, "page_size", 10);
    if (size > 200)
        size = 200;
    size_t n = json_array_size(list);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        long long at = (long long)i;
        if (at >= (page - 1) * size && at < page * size)
            json_array_append_new(items,
                                  shape(json_array_get(list, n - 1 - i)));
    }
    long long pages = ((long long)n + size - 1) / size;
    sb_resp_json(out, 200,
                 json_pack("{s:I,s:I,s:I,s:I,s:o}", "page", (json_int_t)page,
                           "page_size", (json_int_t)size, "total_pages",
                           (json_int_t)pages, "total_items", (json_int_t)n,
                           key, items));
}

static json_t *copy_of(const json_t *v)
{
    return json_deep_copy(v);
}

static void customers_list(struct sb *s, const struct sb_req *rq,
                           struct sb_resp *out)
{
    char *q = sb_query_param(rq->query, "q");
    json_t *hits = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(s->hcp->list[T_CUSTOMERS], i, c) {
        if (!q || !*q || customer_hits(c, q))
            json_array_append(hits, c);
    }
    free(q);
    page_of(hits, "customers", rq, customer_out, out);
    json_decref(hits);
}

static void address_create(struct sb *s, const struct sb_req *rq,
                           json_t *cust, struct sb_resp *out)
{
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Request body must be a JSON object");
        return;
    }
    json_t *errors = json_object();
    json_t *r = address_of(s->hcp, b, errors,
                           json_string_value(json_object_get(cust, "id")));
    json_decref(b);
    if (json_object_size(errors)) {
        json_decref(r);
        unprocessable(out, errors);
        return;
    }
    json_decref(errors);
    json_array_append(json_object_get(cust, "addresses"), r);
    json_array_append(s->hcp->list[T_ADDRESSES], r);
    json_t *o = json_deep_copy(r);
    json_object_del(o, "customer_id");
    json_decref(r);
    sb_resp_json(out, 200, o);
}

/* ---- Jobs and estimates ------------------------------------------------- */

/* An ISO-8601 time: with an offset or Z, or without (the company's zone,
 * UTC here). */
static bool iso_time(const char *s, int64_t *ms)
{
    if (!s)
        return false;
    if (cs_parse_rfc3339(s, ms))
        return true;
    char z[40];
    if (strlen(s) != 19)
        return false;
    snprintf(z, sizeof(z), "%sZ", s);
    return cs_parse_rfc3339(z, ms);
}

static json_t *utc_of(int64_t ms)
{
    char ts[32];
    cs_rfc3339_s(ms, ts);
    return json_string(ts);
}

static json_t *customer_brief(const json_t *c)
{
    json_t *b = json_object();
    static const char *const keys[] = {
        "id",          "first_name",  "last_name", "email",
        "mobile_number", "home_number", "work_number", "company",
        "lead_source", "tags"};
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        const json_t *v = json_object_get(c, keys[i]);
        if (v)
            json_object_set(b, keys[i], (json_t *)v);
    }
    return b;
}

/* The customer and its address a job or estimate names; false after
 * answering. */
static bool booking_refs(struct sb_hcp *h, const json_t *b,
                         bool address_needed, json_t **cust,
                         const json_t **addr, struct sb_resp *out)
{
    const char *cid = json_string_value(json_object_get(b, "customer_id"));
    const char *aid = json_string_value(json_object_get(b, "address_id"));
    json_t *errors = json_object();
    if (!cid || !*cid)
        json_object_set_new(errors, "customer_id",
                            json_pack("[s]", "is missing"));
    if (address_needed && (!aid || !*aid))
        json_object_set_new(errors, "address_id",
                            json_pack("[s]", "is missing"));
    if (json_object_size(errors)) {
        unprocessable(out, errors);
        return false;
    }
    json_decref(errors);
    *cust = json_object_get(h->customers, cid);
    if (!*cust) {
        not_found(out, "Customer");
        return false;
    }
    *addr = NULL;
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(*cust, "addresses"), i, a) {
        if (aid && strcmp(json_string_value(json_object_get(a, "id")),
                          aid) == 0)
            *addr = a;
    }
    if (aid && !*addr) {
        unprocessable(out, json_pack("{s:[s]}", "address_id",
                                     "does not belong to the customer"));
        return false;
    }
    return true;
}

/* schedule {start_key, end_key, window_key} checked into a Schedule;
 * NULL after answering. An absent schedule is an empty one. */
static json_t *schedule_of(const json_t *sch, const char *start_key,
                           const char *end_key, const char *window_key,
                           struct sb_resp *out)
{
    if (!sch || json_is_null(sch))
        return json_pack("{s:n,s:n,s:i}", "scheduled_start",
                         "scheduled_end", "arrival_window", 0);
    if (!json_is_object(sch)) {
        sb_resp_json(out, 400, json_pack("{s:s,s:s}", "message",
                                         "schedule is invalid", "schedule",
                                         "is invalid"));
        return NULL;
    }
    int64_t st = 0, en = 0;
    const char *ss = json_string_value(json_object_get(sch, start_key));
    const char *es = json_string_value(json_object_get(sch, end_key));
    const json_t *win = json_object_get(sch, window_key);
    const char *bad = NULL;
    if (!iso_time(ss, &st))
        bad = start_key;
    else if (es && !iso_time(es, &en))
        bad = end_key;
    else if (es && en < st)
        bad = end_key;
    else if (win && !json_is_null(win) && !json_is_integer(win))
        bad = window_key;
    if (bad) {
        char m[120];
        snprintf(m, sizeof(m), "%s is invalid", bad);
        sb_resp_json(out, 400, json_pack("{s:s,s:s}", "message", m, bad,
                                         "is invalid"));
        return NULL;
    }
    if (!es)
        en = st + 3600000;
    return json_pack("{s:o,s:o,s:I}", "scheduled_start", utc_of(st),
                     "scheduled_end", utc_of(en), "arrival_window",
                     (json_int_t)(json_is_integer(win)
                                      ? json_integer_value(win)
                                      : 0));
}

static json_t *note_new(struct sb_hcp *h, const char *content)
{
    return json_pack("{s:o,s:s}", "id", new_id(h, "nte"), "content",
                     content);
}

static const struct vf job_fields[] = {
    {"customer_id", V_STR}, {"address_id", V_STR},
    {"schedule", V_OBJ},    {"assigned_employee_ids", V_STRS},
    {"line_items", V_ARR},  {"tags", V_STRS},
    {"lead_source", V_STR}, {"notes", V_STR},
    {"job_fields", V_OBJ},  {"invoice_number", V_INT},
    {NULL, V_STR},
};

static void job_create(struct sb *s, const struct sb_req *rq,
                       struct sb_resp *out)
{
    struct sb_hcp *h = s->hcp;
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Request body must be a JSON object");
        return;
    }
    json_t *cust;
    const json_t *addr;
    json_t *sched = NULL;
    if (!types_ok(b, job_fields, out) ||
        !booking_refs(h, b, true, &cust, &addr, out) ||
        !(sched = schedule_of(json_object_get(b, "schedule"),
                              "scheduled_start", "scheduled_end",
                              "arrival_window", out))) {
        json_decref(b);
        return;
    }
    size_t i;
    const json_t *li;
    json_array_foreach(json_object_get(b, "line_items"), i, li) {
        if (!json_is_object(li) ||
            !json_is_string(json_object_get(li, "name"))) {
            unprocessable(out, json_pack("{s:[s]}", "line_items",
                                         "name is missing"));
            json_decref(sched);
            json_decref(b);
            return;
        }
    }
    json_t *notes = json_array();
    const char *n = json_string_value(json_object_get(b, "notes"));
    if (n && *n)
        json_array_append_new(notes, note_new(h, n));
    json_t *emps = json_array();
    const json_t *e;
    json_array_foreach(json_object_get(b, "assigned_employee_ids"), i, e)
        json_array_append_new(emps, json_pack("{s:O}", "id", e));
    json_t *addr_out = json_deep_copy(addr);
    json_object_del(addr_out, "customer_id");
    const json_t *tags = json_object_get(b, "tags");
    const json_t *items = json_object_get(b, "line_items");
    const json_t *src = json_object_get(b, "lead_source");
    char *invoice = xasprintf("%lld", 1000 + h->next_id);
    json_t *id = new_id(h, "job");
    json_t *rec = json_pack(
        "{s:O,s:s,s:s,s:o,s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id",
        id, "invoice_number", invoice, "description", "", "customer",
        customer_brief(cust), "address", addr_out, "notes", notes,
        "work_status",
        json_is_string(json_object_get(sched, "scheduled_start"))
            ? "scheduled"
            : "needs scheduling",
        "schedule", sched, "assigned_employees", emps, "tags",
        tags ? json_deep_copy(tags) : json_array(), "lead_source",
        src ? json_deep_copy(src) : json_null(), "line_items",
        items ? json_deep_copy(items) : json_array(), "created_at",
        now_iso(rq), "updated_at", now_iso(rq));
    free(invoice);
    json_array_append(h->list[T_JOBS], rec);
    json_object_set_new(h->jobs, json_string_value(id), rec);
    json_decref(id);
    sb_resp_json(out, 201, json_deep_copy(rec));
    json_decref(b);
}

/* Jobs or estimates of a customer starting within [min, max]. */
static void bookings_list(struct sb *s, const struct sb_req *rq,
                          int type, struct sb_resp *out)
{
    char *cid = sb_query_param(rq->query, "customer_id");
    char *min = sb_query_param(rq->query, "scheduled_start_min");
    char *max = sb_query_param(rq->query, "scheduled_start_max");
    int64_t lo = 0, hi = INT64_MAX;
    bool ok = (!min || !*min || iso_time(min, &lo)) &&
              (!max || !*max || iso_time(max, &hi));
    json_t *hits = json_array();
    size_t i;
    json_t *j;
    json_array_foreach(s->hcp->list[type], i, j) {
        const char *jc = json_string_value(json_object_get(
            json_object_get(j, "customer"), "id"));
        int64_t at;
        const char *st = json_string_value(json_object_get(
            json_object_get(j, "schedule"), "scheduled_start"));
        bool timed = st && iso_time(st, &at);
        if (cid && *cid && (!jc || strcmp(jc, cid) != 0))
            continue;
        if (((min && *min) || (max && *max)) &&
            (!timed || at < lo || at > hi))
            continue;
        json_array_append(hits, j);
    }
    free(cid);
    free(min);
    free(max);
    if (!ok)
        sb_resp_json(out, 400, json_pack("{s:s,s:s}", "message",
                                         "scheduled_start is invalid",
                                         "scheduled_start", "is invalid"));
    else
        page_of(hits, type == T_JOBS ? "jobs" : "estimates", rq, copy_of,
                out);
    json_decref(hits);
}

static void note_add(struct sb *s, const struct sb_req *rq, json_t *notes,
                     const char *job_id, const char *estimate_id,
                     struct sb_resp *out)
{
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Request body must be a JSON object");
        return;
    }
    const char *c = json_string_value(json_object_get(b, "content"));
    if (!c || !*c) {
        unprocessable(out, json_pack("{s:[s]}", "content", "is missing"));
        json_decref(b);
        return;
    }
    json_t *n = note_new(s->hcp, c);
    json_array_append(notes, n);
    json_t *rec = json_deep_copy(n);
    if (job_id)
        json_object_set_new(rec, "job_id", json_string(job_id));
    if (estimate_id)
        json_object_set_new(rec, "estimate_id", json_string(estimate_id));
    json_array_append_new(s->hcp->list[T_NOTES], rec);
    sb_resp_json(out, 201, n);
    json_decref(b);
}

static const struct vf estimate_fields[] = {
    {"customer_id", V_STR}, {"address_id", V_STR},
    {"address", V_OBJ},     {"options", V_ARR},
    {"schedule", V_OBJ},    {"note", V_STR},
    {"message", V_STR},     {"lead_source", V_STR},
    {"assigned_employee_ids", V_STRS},
    {"estimate_number", V_INT}, {"estimate_fields", V_OBJ},
    {NULL, V_STR},
};

static void estimate_create(struct sb *s, const struct sb_req *rq,
                            struct sb_resp *out)
{
    struct sb_hcp *h = s->hcp;
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Request body must be a JSON object");
        return;
    }
    json_t *cust;
    const json_t *addr;
    json_t *sched = NULL;
    if (!types_ok(b, estimate_fields, out) ||
        !booking_refs(h, b, false, &cust, &addr, out) ||
        !(sched = schedule_of(json_object_get(b, "schedule"), "start_time",
                              "end_time", "arrival_window_in_minutes",
                              out))) {
        json_decref(b);
        return;
    }
    json_t *addr_out = NULL;
    if (addr) {
        addr_out = json_deep_copy(addr);
        json_object_del(addr_out, "customer_id");
    } else if (json_is_object(json_object_get(b, "address"))) {
        json_t *r = address_of(h, json_object_get(b, "address"), NULL,
                               json_string_value(json_object_get(cust,
                                                                 "id")));
        json_array_append(json_object_get(cust, "addresses"), r);
        json_array_append(h->list[T_ADDRESSES], r);
        addr_out = json_deep_copy(r);
        json_object_del(addr_out, "customer_id");
        json_decref(r);
    } else {
        unprocessable(out, json_pack("{s:[s]}", "address", "is missing"));
        json_decref(sched);
        json_decref(b);
        return;
    }
    json_t *opts = json_array();
    const json_t *in = json_object_get(b, "options");
    size_t i;
    const json_t *o;
    json_array_foreach(in, i, o) {
        const char *n = json_string_value(json_object_get(o, "name"));
        if (!json_is_object(o) || !n) {
            unprocessable(out, json_pack("{s:[s]}", "options",
                                         "name is missing"));
            json_decref(opts);
            json_decref(addr_out);
            json_decref(sched);
            json_decref(b);
            return;
        }
        json_array_append_new(
            opts, json_pack("{s:o,s:s,s:s,s:s,s:s,s:[]}", "id",
                            new_id(h, "eo"), "name", n, "option_number",
                            "1", "approval_status", "awaiting response",
                            "status", "scheduled", "notes"));
    }
    if (!json_array_size(opts))
        json_array_append_new(
            opts, json_pack("{s:o,s:s,s:s,s:s,s:s,s:[]}", "id",
                            new_id(h, "eo"), "name", "Option #1",
                            "option_number", "1", "approval_status",
                            "awaiting response", "status", "scheduled",
                            "notes"));
    const char *note = json_string_value(json_object_get(b, "note"));
    if (note && *note)
        json_array_append_new(
            json_object_get(json_array_get(opts, 0), "notes"),
            note_new(h, note));
    char *number = xasprintf("%lld", 1000 + h->next_id);
    json_t *id = new_id(h, "est");
    json_t *rec = json_pack(
        "{s:O,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "id", id, "estimate_number",
        number, "work_status", "scheduled",
        "customer", customer_brief(cust), "address", addr_out, "schedule",
        sched, "options", opts, "created_at", now_iso(rq), "updated_at",
        now_iso(rq));
    free(number);
    json_array_append(h->list[T_ESTIMATES], rec);
    json_object_set_new(h->estimates, json_string_value(id), rec);
    json_decref(id);
    sb_resp_json(out, 200, json_deep_copy(rec));
    json_decref(b);
}

/* ---- Routing ------------------------------------------------------------ */

static int segments(const char *p, char seg[5][128])
{
    int n = 0;
    while (*p == '/')
        p++;
    while (*p && n < 5) {
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

static void route(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_hcp *h = s->hcp;
    char seg[5][128];
    int n = segments(rq->sub, seg);
    int m = rq->method;
    bool get = m == HTTP_GET, post = m == HTTP_POST, put = m == HTTP_PUT;
    if (n < 1) {
        not_found(out, "Route");
        return;
    }
    if (strcmp(seg[0], "company") == 0 && n == 1 && get) {
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:s,s:s,s:s,s:s}", "id",
                               "cmp_00000000000000000000000000000001", "name",
                               "Sandbox Plumbing", "support_email",
                               "office@sandbox.test", "phone_number",
                               "3125550100", "time_zone", "America/Chicago"));
    } else if (strcmp(seg[0], "customers") == 0) {
        json_t *c = n >= 2 ? json_object_get(h->customers, seg[1]) : NULL;
        if (n == 1 && get)
            customers_list(s, rq, out);
        else if (n == 1 && post)
            customer_create(s, rq, out);
        else if (n >= 2 && !c)
            not_found(out, "Customer");
        else if (n == 2 && get)
            sb_resp_json(out, 200, customer_out(c));
        else if (n == 2 && put)
            customer_update(s, rq, c, out);
        else if (n == 3 && strcmp(seg[2], "addresses") == 0 && post)
            address_create(s, rq, c, out);
        else
            not_found(out, "Route");
    } else if (strcmp(seg[0], "jobs") == 0) {
        json_t *j = n >= 2 ? json_object_get(h->jobs, seg[1]) : NULL;
        if (n == 1 && get)
            bookings_list(s, rq, T_JOBS, out);
        else if (n == 1 && post)
            job_create(s, rq, out);
        else if (n >= 2 && !j)
            not_found(out, "Job");
        else if (n == 2 && get)
            sb_resp_json(out, 200, json_deep_copy(j));
        else if (n == 3 && strcmp(seg[2], "notes") == 0 && post)
            note_add(s, rq, json_object_get(j, "notes"), seg[1], NULL, out);
        else
            not_found(out, "Route");
    } else if (strcmp(seg[0], "estimates") == 0) {
        json_t *e = n >= 2 ? json_object_get(h->estimates, seg[1]) : NULL;
        json_t *opt = NULL;
        size_t i;
        json_t *o;
        if (e && n >= 4)
            json_array_foreach(json_object_get(e, "options"), i, o) {
                if (strcmp(json_string_value(json_object_get(o, "id")),
                           seg[3]) == 0)
                    opt = o;
            }
        if (n == 1 && get)
            bookings_list(s, rq, T_ESTIMATES, out);
        else if (n == 1 && post)
            estimate_create(s, rq, out);
        else if (n >= 2 && !e)
            not_found(out, "Estimate");
        else if (n == 2 && get)
            sb_resp_json(out, 200, json_deep_copy(e));
        else if (n == 5 && strcmp(seg[2], "options") == 0 &&
                 strcmp(seg[4], "notes") == 0 && post && opt)
            note_add(s, rq, json_object_get(opt, "notes"), NULL, seg[1], out);
        else if (n == 5 && !opt)
            not_found(out, "Estimate option");
        else
            not_found(out, "Route");
    } else {
        not_found(out, "Route");
    }
}

/* ---- Auth, limit, entry ------------------------------------------------- */

static bool authorised(struct sb_hcp *h, const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a)
        return false;
    if (strncasecmp(a, "Token ", 6) == 0)
        a += 6;
    else if (strncasecmp(a, "Bearer ", 7) == 0)
        a += 7;
    else
        return false;
    while (*a == ' ')
        a++;
    if (!*a)
        return false;
    if (!h->ntokens)
        return true;
    for (size_t i = 0; i < h->ntokens; i++)
        if (strcmp(a, h->tokens[i]) == 0)
            return true;
    return false;
}

/* 0 when the request may go, else the seconds until it may. */
static long long rate_take(struct sb_hcp *h, int64_t now)
{
    if (h->rate <= 0)
        return 0;
    if (!h->window) {
        h->wcap = (size_t)h->rate;
        h->window = xcalloc(h->wcap, sizeof(*h->window));
    }
    while (h->wlen && h->window[h->whead] <= now - MINUTE_MS) {
        h->whead = (h->whead + 1) % h->wcap;
        h->wlen--;
    }
    if (h->wlen >= h->wcap)
        return (h->window[h->whead] + MINUTE_MS - now + 999) / 1000;
    h->window[(h->whead + h->wlen) % h->wcap] = now;
    h->wlen++;
    return 0;
}

void hcp_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_hcp *h = state(s);
    if (!authorised(h, rq)) {
        sb_resp_json(out, 401, hcp_error_body(401));
        return;
    }
    long long wait = rate_take(h, cs_mono_ms());
    if (wait > 0) {
        sb_resp_json(out, 429, hcp_error_body(429));
        sb_resp_header(out, "Retry-After: %lld", wait);
        return;
    }
    route(s, rq, out);
}
