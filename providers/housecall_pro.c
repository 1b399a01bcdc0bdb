/*
 * housecall_pro.c - the Housecall Pro provider (REST, api.housecallpro.com,
 * the "Housecall v1 API" OpenAPI document): the customer, a job (or an
 * estimate) for an appointment the call booked, and a note.
 *
 * Docs followed: the Housecall v1 API OpenAPI document published with
 * docs.housecallpro.com (GET/POST /customers, GET/PUT /customers/{id},
 * POST /customers/{id}/addresses, GET/POST /jobs, GET /jobs/{id},
 * POST /jobs/{job_id}/notes, GET/POST /estimates, GET /estimates/{id},
 * POST /estimates/{id}/options/{option_id}/notes; CustomerCreate,
 * AddressCreate, JobCreate, EstimateCreate, ErrorResponse), the help
 * centre's API key article, and shared/providers.md section 8.
 *
 * Auth: "Authorization: Token <api key>" (a company API key, generated
 * by an admin on the MAX plan), or "Bearer <token>" for an OAuth token;
 * config.company_id, when set, goes in X-Company-Id (an application key
 * serving several companies picks the company with it).
 *
 * Step "customer": GET /customers?q= (name, email, mobile number and
 * address are searched) with the phone's digits, then with the email,
 * and an exact comparison of what comes back (mobile, home or work
 * number; email in any case). Found: the identity fields it lacks are
 * filled in with PUT; none: POST /customers with the service address
 * when the call gives a whole one (street, city, state, zip). So a
 * repeat after an unknown outcome finds what the first attempt made.
 *
 * Step "job" (a booked appointment; config.appointment_kind "job", the
 * default, or "estimate", or "none"): a job needs an address of the
 * customer: the customer's own (service first), else one created from the
 * call (POST /customers/{id}/addresses). Then GET /jobs (or /estimates)
 * of the customer starting at the appointment's time: one carrying our
 * marker in its notes, or starting at that instant, is ours; else POST
 * /jobs (/estimates) with the schedule as local time with the zone's UTC
 * offset (the call's zone, else config.timezone, else UTC: when.h) and the
 * marker in its notes.
 *
 * Step "note": on the job (POST /jobs/{id}/notes) or the estimate's
 * option, looked up by the marker in the job's notes when it reconciles;
 * without a job, in the customer's notes, which are one text field: read
 * it, append (PUT), and read it again to make sure a concurrent append
 * did not overwrite ours (then append again, three times at most per
 * attempt).
 *
 * Errors: 401 parks; 400 {"message"}, 404 {"error": {"message"}} and 422
 * {"errors": {field: [messages]}} are permanent with Housecall's words;
 * 408, 425, 429 and 5xx retry (Retry-After honoured). Housecall Pro
 * documents no rate limit: the limiter default is a conservative 120
 * requests per minute per company (rate_scope "company_id", else the
 * connection); a 429 pauses the key.
 *
 * Connection config:
 *   company_id, lead_source, tags (list), notifications_enabled
 *   appointment_kind ("job" | "estimate" | "none"), default_employee_id
 *   or assigned_employee_ids (list), job_type_id, business_unit_id,
 *   arrival_window_minutes, line_items (JobCreate line items, passed on),
 *   timezone, country (addresses, "US"), zip_source (a path over
 *   prov_data_root; by default the call's custom fields are searched for
 *   customer_zip, zip, postal_code, zip_code)
 *   field_mappings      onto the customer (mapping.h): first_name,
 *                       last_name, email, company, mobile_number,
 *                       home_number, work_number, lead_source, tags,
 *                       notifications_enabled
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

#define HCP_BASE_URL "https://api.housecallpro.com"
#define HCP_NOTE_MAX 8000
#define HCP_SUMMARY_MAX 3000
#define HCP_TRANSCRIPT_MAX 2000
#define HCP_SHORT_MAX 300
#define HCP_CUSTOMER_NOTES_MAX 60000
#define HCP_APPENDS 3

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
    return s && *s ? s : NULL;
}

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

static const char *phase_of(const struct prov_ctx *ctx)
{
    const char *p = json_string_value(json_object_get(ctx->scratch, "phase"));
    return p ? p : "";
}

static bool phase_is(const struct prov_ctx *ctx, const char *phase)
{
    return strcmp(phase_of(ctx), phase) == 0;
}

static void set_phase(struct prov_ctx *ctx, const char *phase)
{
    json_object_set_new(ctx->scratch, "phase", json_string(phase));
}

static void next_phase(struct prov_ctx *ctx, struct prov_result *res,
                       const char *phase)
{
    set_phase(ctx, phase);
    res->outcome = PROV_NEXT;
}

static const char *scratch_str(const struct prov_ctx *ctx, const char *key)
{
    return json_string_value(json_object_get(ctx->scratch, key));
}

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

/* A phone number reduced for comparison: its digits, without the leading
 * 1 of an eleven-digit North American number. */
static void phone_key(const char *s, char out[24])
{
    size_t k = 0;
    for (; s && *s && k < 23; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
    if (k == 11 && out[0] == '1')
        memmove(out, out + 1, 11);
}

/* The number as Housecall Pro keeps it: ten national digits for +1
 * numbers, else the E.164 form. */
static void phone_hcp(const char *e164, char out[24])
{
    if (strncmp(e164, "+1", 2) == 0 && strlen(e164) == 12)
        snprintf(out, 24, "%s", e164 + 2);
    else
        snprintf(out, 24, "%s", e164);
}

static bool is_2xx(int status)
{
    return status >= 200 && status < 300;
}

static void bad_body(const struct prov_response *rsp, struct prov_result *res,
                     const char *what)
{
    res->http_status = rsp->status;
    prov_fail(res, PROV_RETRY, "bad_response", "HTTP %d: %s", rsp->status,
             what);
}

static void set_done_kv(struct prov_result *res, json_t *value)
{
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = value;
}

/* ------------------------------------------------------------------ */
/* Requests and errors                                                */
/* ------------------------------------------------------------------ */

/* Start a request to base + path with the credentials, or fail with
 * no_credentials. */
static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, struct cs_err *err)
{
    const struct prov_creds *c = ctx->creds;
    char *auth = NULL;
    if (c && c->access_token && *c->access_token)
        auth = xasprintf("Bearer %s", c->access_token);
    else if (c && c->api_key && *c->api_key)
        auth = xasprintf("Token %s", c->api_key);
    if (!auth)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no api key");
    /* "Token" for an API key, which prov_request_begin does not write */
    prov_request_begin(rq, ctx, method, HCP_BASE_URL, path, NULL);
    prov_request_header(rq, "Authorization", auth);
    memset(auth, 0, strlen(auth));
    free(auth);
    char company[128];
    if (config_id(ctx->config, "company_id", company, sizeof(company)))
        prov_request_header(rq, "X-Company-Id", company);
    return 0;
}

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

/* "/a/<x>[/b[/<y>[/c]]]" with x and y escaped. */
static char *path3(const char *a, const char *x, const char *b,
                   const char *y, const char *c)
{
    char *ex = prov_url_escape(x);
    char *ey = y ? prov_url_escape(y) : NULL;
    char *p = xasprintf("%s%s%s%s%s", a, ex, b ? b : "", ey ? ey : "",
                        c ? c : "");
    free(ex);
    free(ey);
    return p;
}

/*
 * Classify a failed answer with Housecall Pro's own words: {"message"}
 * (400, 401), {"error": {"message"}} (404) or {"errors": {"field":
 * ["is missing"]}} (422, joined as "field is missing; ...").
 */
static void hcp_fail(const struct prov_response *rsp, struct prov_result *res)
{
    res->code[0] = res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    const char *m = json_string_value(json_object_get(b, "message"));
    const json_t *e = json_object_get(b, "error");
    if (!m)
        m = json_is_string(e) ? json_string_value(e)
                              : json_string_value(json_object_get(e,
                                                                  "message"));
    if (m) {
        snprintf(res->message, sizeof(res->message), "%s", m);
    } else if (json_is_object(json_object_get(b, "errors"))) {
        struct buf t;
        buf_init(&t, sizeof(res->message) - 1);
        const char *field;
        const json_t *list;
        json_object_foreach(json_object_get(b, "errors"), field, list) {
            size_t i;
            const json_t *s;
            json_array_foreach(list, i, s) {
                if (!json_is_string(s))
                    continue;
                if ((t.len && buf_adds(&t, "; ") < 0) ||
                    buf_addf(&t, "%s %s", field, json_string_value(s)) < 0)
                    break;
            }
        }
        char *txt = buf_take(&t, NULL);
        if (txt)
            snprintf(res->message, sizeof(res->message), "%s", txt);
        free(txt);
    }
    json_decref(b);
    if (rsp->status == 422)
        snprintf(res->code, sizeof(res->code), "%s", "unprocessable_entity");
    else if (rsp->status == 400)
        snprintf(res->code, sizeof(res->code), "%s", "bad_request");
    prov_classify(rsp, res);
    if (rsp->status == 429 && res->retry_after_ms < 0)
        res->retry_after_ms = 60000;
}

/* ------------------------------------------------------------------ */
/* Text                                                               */
/* ------------------------------------------------------------------ */

/* The job marker with a suffix naming what carries it: "/job" on the job
 * we create, "/note" on the note, so the note's lookup never takes the
 * job's own notes for the call note. */
static void marker_for(const struct prov_ctx *ctx, const char *what,
                       char out[64])
{
    char m[48];
    prov_job_marker(ctx->job, m);
    snprintf(out, 64, "%s/%s", m, what);
}

static bool has_text(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static void put(struct buf *b, const char *s, size_t n)
{
    if (buf_add(b, s, n) < 0)
        return; /* capped: the rest is dropped */
}

static void put_line(struct buf *b, const char *label, const char *value,
                     size_t max)
{
    if (!value)
        return;
    put(b, label, strlen(label));
    put(b, ": ", 2);
    size_t n = utf8_cut(value, max);
    put(b, value, n);
    if (value[n])
        put(b, " [\xe2\x80\xa6]", 6);
    put(b, "\n", 1);
}

static char *note_text(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, HCP_NOTE_MAX);
    put_line(&b, "Call outcome", str_at(c, "outcome"), HCP_SHORT_MAX);
    put_line(&b, "Direction", str_at(c, "direction"), HCP_SHORT_MAX);
    put_line(&b, "Summary", str_at(c, "summary"), HCP_SUMMARY_MAX);
    put_line(&b, "Sentiment", str_at(c, "sentiment"), HCP_SHORT_MAX);
    const json_t *d = map_path(c, "duration_s");
    if (json_is_number(d)) {
        long long s = (long long)json_number_value(d);
        char dur[64];
        snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
        put_line(&b, "Duration", dur, HCP_SHORT_MAX);
    }
    put_line(&b, "Recording", str_at(c, "recording_url"), 2000);
    put_line(&b, "Transcript (excerpt)", str_at(c, "transcript"),
             HCP_TRANSCRIPT_MAX);
    char marker[64];
    marker_for(ctx, "note", marker);
    put(&b, "Sync reference: ", 16);
    put(&b, marker, strlen(marker));
    return buf_take(&b, NULL);
}

/* ------------------------------------------------------------------ */
/* Customer fields                                                    */
/* ------------------------------------------------------------------ */

enum fkind { F_STR, F_BOOL, F_TAGS };

static const struct {
    const char *name;
    enum fkind kind;
} customer_fields[] = {
    {"first_name", F_STR},   {"last_name", F_STR},
    {"email", F_STR},        {"company", F_STR},
    {"mobile_number", F_STR}, {"home_number", F_STR},
    {"work_number", F_STR},  {"lead_source", F_STR},
    {"tags", F_TAGS},        {"notifications_enabled", F_BOOL},
};

static int field_kind(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(customer_fields); i++)
        if (strcmp(customer_fields[i].name, name) == 0)
            return (int)customer_fields[i].kind;
    return -1;
}

/* v converted for a customer field (a new value), or NULL with err. */
static json_t *convert(const char *name, enum fkind kind, const json_t *v,
                       struct cs_err *err)
{
    switch (kind) {
    case F_STR:
        if (json_is_string(v))
            return json_incref((json_t *)v);
        if (json_is_integer(v))
            return json_sprintf("%lld", (long long)json_integer_value(v));
        if (json_is_real(v))
            return json_sprintf("%.15g", json_real_value(v));
        break;
    case F_BOOL:
        if (json_is_boolean(v))
            return json_incref((json_t *)v);
        if (json_is_string(v) && (strcmp(json_string_value(v), "true") == 0 ||
                                  strcmp(json_string_value(v), "false") == 0))
            return json_boolean(strcmp(json_string_value(v), "true") == 0);
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
        break;
    }
    cs_err_set(err, CS_EINVAL, name,
               "mapping_error: customer field '%s' takes %s", name,
               kind == F_STR    ? "text or a number"
               : kind == F_BOOL ? "a boolean"
                                : "a string or a list of strings");
    return NULL;
}

/* Every target of the mappings (list or object form, mapping.h) must be
 * a customer field, checked before any applies: a bad one fails even
 * when this call lacks its source. */
static int check_targets(const json_t *maps, struct cs_err *err)
{
    size_t i;
    const json_t *m;
    const char *k;
    if (json_is_array(maps)) {
        json_array_foreach(maps, i, m) {
            const char *t = json_string_value(json_object_get(m, "target"));
            if (!t)
                t = json_string_value(json_object_get(m, "name"));
            if (t && field_kind(t) < 0)
                return cs_err_set(err, CS_EINVAL, t,
                                  "mapping_error: '%.40s' is not a Housecall "
                                  "Pro customer field", t);
        }
    } else if (json_is_object(maps)) {
        json_object_foreach((json_t *)maps, k, m) {
            const char *t = json_is_string(m) ? json_string_value(m) : k;
            if (field_kind(t) < 0)
                return cs_err_set(err, CS_EINVAL, t,
                                  "mapping_error: '%.40s' is not a Housecall "
                                  "Pro customer field", t);
        }
    }
    return 0;
}

/* The mapped customer fields (checked), into *out. */
static int mapped_fields(const struct prov_ctx *ctx, json_t **out,
                         struct cs_err *err)
{
    *out = json_object();
    const json_t *maps = json_object_get(ctx->config, "field_mappings");
    if (!maps || json_is_null(maps))
        return 0;
    if (check_targets(maps, err) < 0) {
        json_decref(*out);
        *out = NULL;
        return CS_EINVAL;
    }
    json_t *root = prov_data_root(ctx);
    json_t *raw = json_object();
    int rc = map_apply(maps, root, raw, err);
    json_decref(root);
    const char *k;
    json_t *v;
    json_object_foreach(raw, k, v) {
        if (rc < 0)
            break;
        int kind = field_kind(k);
        if (kind < 0) {
            rc = cs_err_set(err, CS_EINVAL, k,
                            "mapping_error: '%.40s' is not a Housecall Pro "
                            "customer field", k);
            break;
        }
        if (json_is_null(v))
            continue;
        json_t *c = convert(k, (enum fkind)kind, v, err);
        if (!c) {
            rc = CS_EINVAL;
            break;
        }
        json_object_set_new(*out, k, c);
    }
    json_decref(raw);
    if (rc < 0) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* The zip code: the call model has none, so it is taken from the call's
 * custom fields where platforms put what their agent collected (Retell's
 * custom analysis data and dynamic variables keep unknown keys under
 * custom.<object>), or from the path config.zip_source names over
 * prov_data_root. */
static const char *call_zip(const struct prov_ctx *ctx, json_t **root_out)
{
    *root_out = NULL;
    const char *src = str_at(ctx->config, "zip_source");
    if (src) {
        *root_out = prov_data_root(ctx);
        return str_at(*root_out, src);
    }
    static const char *const where[] = {
        "custom.", "custom.call_analysis.custom_analysis_data.",
        "custom.retell_llm_dynamic_variables.",
        "custom.collected_dynamic_variables."};
    static const char *const keys[] = {"customer_zip", "zip", "postal_code",
                                       "customer_postal_code", "zip_code"};
    for (size_t i = 0; i < CS_ARRAY_LEN(where); i++)
        for (size_t k = 0; k < CS_ARRAY_LEN(keys); k++) {
            char path[128];
            snprintf(path, sizeof(path), "%s%s", where[i], keys[k]);
            const char *z = str_at(ctx->call, path);
            if (z)
                return z;
        }
    return NULL;
}

/* The call's service address as AddressCreate wants it (street, city,
 * state, zip and country are required), or NULL when a part is missing. */
static json_t *call_address(const struct prov_ctx *ctx)
{
    const char *street = str_at(ctx->call, "customer.address");
    const char *city = str_at(ctx->call, "customer.city");
    const char *state = str_at(ctx->call, "customer.state");
    json_t *root;
    const char *zip = call_zip(ctx, &root);
    const char *country = str_at(ctx->config, "country");
    json_t *a = !street || !city || !state || !zip
                    ? NULL
                    : json_pack("{s:s,s:s,s:s,s:s,s:s}", "street", street,
                                "city", city, "state", state, "zip", zip,
                                "country", country ? country : "US");
    json_decref(root);
    return a;
}

/* The call's own identity fields. */
static json_t *call_fields(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    json_t *p = json_object();
    const char *first = str_at(c, "customer.first_name");
    const char *last = str_at(c, "customer.last_name");
    const char *name = str_at(c, "customer.name");
    if (!first && !last && name) {
        const char *sp = strchr(name, ' ');
        json_object_set_new(p, "first_name",
                            sp ? json_stringn(name, (size_t)(sp - name))
                               : json_string(name));
        while (sp && *sp == ' ')
            sp++;
        if (sp && *sp)
            json_object_set_new(p, "last_name", json_string(sp));
    } else {
        if (first)
            json_object_set_new(p, "first_name", json_string(first));
        if (last)
            json_object_set_new(p, "last_name", json_string(last));
    }
    const char *email = str_at(c, "customer.email");
    if (email)
        json_object_set_new(p, "email", json_string(email));
    const char *phone = str_at(c, "customer.phone");
    if (phone) {
        char hp[24];
        phone_hcp(phone, hp);
        json_object_set_new(p, "mobile_number", json_string(hp));
    }
    return p;
}

static json_t *create_body(const struct prov_ctx *ctx, const json_t *mapped)
{
    json_t *b = call_fields(ctx);
    const char *src = str_at(ctx->config, "lead_source");
    if (src)
        json_object_set_new(b, "lead_source", json_string(src));
    const json_t *tags = json_object_get(ctx->config, "tags");
    if (json_is_array(tags))
        json_object_set(b, "tags", (json_t *)tags);
    const json_t *notify = json_object_get(ctx->config,
                                           "notifications_enabled");
    if (json_is_boolean(notify))
        json_object_set(b, "notifications_enabled", (json_t *)notify);
    json_object_update(b, (json_t *)mapped);
    json_t *addr = call_address(ctx);
    if (addr)
        json_object_set_new(b, "addresses", json_pack("[o]", addr));
    return b;
}

/* What to PUT on a customer found as `have`: the call's identity fields
 * it lacks, mapped fields that differ, mapped tags merged in. */
static json_t *update_body(const struct prov_ctx *ctx, const json_t *mapped,
                           const json_t *have)
{
    json_t *patch = json_object();
    json_t *mine = call_fields(ctx);
    const char *k;
    json_t *v;
    json_object_foreach(mine, k, v) {
        const char *cur = json_string_value(json_object_get(have, k));
        if (!cur || !*cur)
            json_object_set(patch, k, v);
    }
    json_decref(mine);
    json_object_foreach((json_t *)mapped, k, v) {
        const json_t *cur = json_object_get(have, k);
        if (strcmp(k, "tags") == 0) {
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
        } else if (!cur || !json_equal((json_t *)cur, v)) {
            json_object_set(patch, k, v);
        }
    }
    return patch;
}

/* The id of the customer's address to book at: service first. */
static const char *pick_address(const json_t *customer)
{
    const json_t *list = json_object_get(customer, "addresses");
    const char *any = NULL;
    size_t i;
    const json_t *a;
    json_array_foreach(list, i, a) {
        const char *id = json_string_value(json_object_get(a, "id"));
        const char *type = json_string_value(json_object_get(a, "type"));
        if (!id || !*id)
            continue;
        if (type && strcmp(type, "service") == 0)
            return id;
        if (!any)
            any = id;
    }
    return any;
}

static json_t *customer_done(const json_t *customer, const char *id)
{
    json_t *v = json_pack("{s:s}", "customer_id", id);
    const char *addr = pick_address(customer);
    if (addr)
        json_object_set_new(v, "address_id", json_string(addr));
    return v;
}

/* ------------------------------------------------------------------ */
/* Step 1: customer                                                   */
/* ------------------------------------------------------------------ */

/* Lookups: 0 by phone, 1 by email; the ones this call allows. */
static bool lookup_allowed(const struct prov_ctx *ctx, int k)
{
    return k == 0 ? str_at(ctx->call, "customer.phone") != NULL
                  : str_at(ctx->call, "customer.email") != NULL;
}

static int customer_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    if (!str_at(ctx->call, "customer.phone") &&
        !str_at(ctx->call, "customer.email"))
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    json_t *mapped = NULL;
    if (mapped_fields(ctx, &mapped, err) < 0)
        return CS_EINVAL;
    int rc;
    if (phase_is(ctx, "create")) {
        rc = begin(ctx, rq, "POST", "/customers", err);
        json_t *body = create_body(ctx, mapped);
        if (rc == 0)
            prov_request_json(rq, body);
        json_decref(body);
    } else if (phase_is(ctx, "update")) {
        char *path = path3("/customers/", scratch_str(ctx, "customer_id"),
                           NULL, NULL, NULL);
        rc = begin(ctx, rq, "PUT", path, err);
        free(path);
        if (rc == 0)
            prov_request_json(rq, json_object_get(ctx->scratch, "patch"));
    } else {
        set_phase(ctx, "search");
        int k = (int)json_integer_value(json_object_get(ctx->scratch,
                                                        "lookup"));
        if (!lookup_allowed(ctx, k))
            k = 1;
        json_object_set_new(ctx->scratch, "lookup", json_integer(k));
        char q[256];
        if (k == 0)
            phone_key(str_at(ctx->call, "customer.phone"), q);
        else
            snprintf(q, sizeof(q), "%s", str_at(ctx->call, "customer.email"));
        struct buf qs;
        buf_init(&qs, 1024);
        query_add(&qs, "q", q);
        query_add(&qs, "page_size", "100");
        char *path = query_path("/customers", &qs);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    }
    json_decref(mapped);
    return rc;
}

static bool customer_matches(const struct prov_ctx *ctx, int k,
                             const json_t *c)
{
    if (k == 1) {
        const char *e = json_string_value(json_object_get(c, "email"));
        return e && strcasecmp(e, str_at(ctx->call, "customer.email")) == 0;
    }
    char want[24], have[24];
    phone_key(str_at(ctx->call, "customer.phone"), want);
    static const char *const keys[] = {"mobile_number", "home_number",
                                       "work_number"};
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        const char *p = json_string_value(json_object_get(c, keys[i]));
        if (!p)
            continue;
        phone_key(p, have);
        if (*want && strcmp(want, have) == 0)
            return true;
    }
    return false;
}

static void customer_found(struct prov_ctx *ctx, const json_t *c,
                           const char *id, struct prov_result *res)
{
    json_t *mapped = NULL;
    struct cs_err err;
    if (mapped_fields(ctx, &mapped, &err) < 0)
        mapped = json_object(); /* build checked the same input */
    json_t *patch = update_body(ctx, mapped, c);
    json_decref(mapped);
    if (json_object_size(patch) == 0) {
        json_decref(patch);
        set_done_kv(res, customer_done(c, id));
        return;
    }
    json_object_set_new(ctx->scratch, "customer_id", json_string(id));
    json_object_set_new(ctx->scratch, "patch", patch);
    json_object_set_new(ctx->scratch, "found", json_deep_copy(c));
    next_phase(ctx, res, "update");
}

static void customer_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        hcp_fail(rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "search")) {
        int k = (int)json_integer_value(json_object_get(ctx->scratch,
                                                        "lookup"));
        const json_t *list = json_object_get(b, "customers");
        const json_t *hit = NULL;
        size_t i;
        const json_t *c;
        json_array_foreach(list, i, c) {
            if (!hit && json_string_value(json_object_get(c, "id")) &&
                customer_matches(ctx, k, c))
                hit = c;
        }
        if (!json_is_array(list)) {
            bad_body(rsp, res, "customers without a list");
        } else if (hit) {
            customer_found(ctx, hit,
                           json_string_value(json_object_get(hit, "id")), res);
        } else if (k == 0 && lookup_allowed(ctx, 1)) {
            json_object_set_new(ctx->scratch, "lookup", json_integer(1));
            res->outcome = PROV_NEXT;
        } else {
            next_phase(ctx, res, "create");
        }
    } else {
        /* create (201 Customer) or update (200 Customer) */
        const char *id = json_string_value(json_object_get(b, "id"));
        if (phase_is(ctx, "update") && !id)
            id = scratch_str(ctx, "customer_id");
        const json_t *c = json_object_get(b, "addresses")
                              ? b
                              : json_object_get(ctx->scratch, "found");
        if (id && *id)
            set_done_kv(res, customer_done(c, id));
        else
            bad_body(rsp, res, "a customer without an id");
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 2: job or estimate                                            */
/* ------------------------------------------------------------------ */

static const char *kind_of(const struct prov_ctx *ctx)
{
    const char *k = str_at(ctx->config, "appointment_kind");
    return k ? k : "job";
}

static bool job_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call) &&
           strcmp(kind_of(ctx), "none") != 0;
}

static const char *customer_id_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "customer.customer_id");
}

/* The address to book at: found in this step, else the customer's. */
static const char *address_id(const struct prov_ctx *ctx)
{
    const char *a = scratch_str(ctx, "address_id");
    return a ? a : str_at(ctx->done, "customer.address_id");
}

static json_t *job_body(const struct prov_ctx *ctx,
                        const struct when_appt *a, bool estimate,
                        struct cs_err *err)
{
    char s[40], e[40];
    if (!when_local_rfc3339(a->tz, a->start_ms, s) ||
        !when_local_rfc3339(a->tz, a->end_ms, e)) {
        cs_err_set(err, CS_EINVAL, "call.appointment.timezone",
                   "mapping_error: unknown time zone '%.64s'", a->tz);
        return NULL;
    }
    char marker[64];
    marker_for(ctx, "job", marker);
    const char *title = str_at(ctx->call, "appointment.title");
    if (!title)
        title = str_at(ctx->call, "appointment.service_type");
    char *notes = xasprintf("%s%sBooked on a call (%s).\nSync reference: %s",
                            title ? title : "", title ? "\n" : "",
                            str_at(ctx->call, "call_id")
                                ? str_at(ctx->call, "call_id")
                                : "unknown call",
                            marker);
    CS_ASSERT(address_id(ctx) != NULL); /* the search phase had one */
    json_t *b = json_pack("{s:s,s:s}", "customer_id", customer_id_done(ctx),
                          "address_id", address_id(ctx));
    const json_t *win = json_object_get(ctx->config,
                                        "arrival_window_minutes");
    if (estimate) {
        json_t *sched = json_pack("{s:s,s:s}", "start_time", s, "end_time",
                                  e);
        if (json_is_integer(win))
            json_object_set(sched, "arrival_window_in_minutes",
                            (json_t *)win);
        json_object_set_new(b, "schedule", sched);
        json_object_set_new(b, "note", json_string(notes));
        json_object_set_new(
            b, "options",
            json_pack("[{s:s}]", "name", title ? title : "Appointment"));
    } else {
        json_t *sched = json_pack("{s:s,s:s}", "scheduled_start", s,
                                  "scheduled_end", e);
        if (json_is_integer(win))
            json_object_set(sched, "arrival_window", (json_t *)win);
        json_object_set_new(b, "schedule", sched);
        json_object_set_new(b, "notes", json_string(notes));
        const json_t *items = json_object_get(ctx->config, "line_items");
        if (json_is_array(items))
            json_object_set(b, "line_items", (json_t *)items);
        const json_t *tags = json_object_get(ctx->config, "tags");
        if (json_is_array(tags))
            json_object_set(b, "tags", (json_t *)tags);
        char id[128];
        json_t *fields = json_object();
        if (config_id(ctx->config, "job_type_id", id, sizeof(id)))
            json_object_set_new(fields, "job_type_id", json_string(id));
        if (config_id(ctx->config, "business_unit_id", id, sizeof(id)))
            json_object_set_new(fields, "business_unit_id", json_string(id));
        if (json_object_size(fields))
            json_object_set_new(b, "job_fields", fields);
        else
            json_decref(fields);
    }
    free(notes);
    const char *src = str_at(ctx->config, "lead_source");
    if (src)
        json_object_set_new(b, "lead_source", json_string(src));
    const json_t *emps = json_object_get(ctx->config, "assigned_employee_ids");
    char emp[128];
    if (json_is_array(emps))
        json_object_set(b, "assigned_employee_ids", (json_t *)emps);
    else if (config_id(ctx->config, "default_employee_id", emp, sizeof(emp)))
        json_object_set_new(b, "assigned_employee_ids",
                            json_pack("[s]", emp));
    return b;
}

static int job_build(struct prov_ctx *ctx, struct prov_request *rq,
                     struct cs_err *err)
{
    struct when_appt a;
    const char *kind = kind_of(ctx);
    bool estimate = strcmp(kind, "estimate") == 0;
    if (!estimate && strcmp(kind, "job") != 0)
        return cs_err_set(err, CS_EINVAL, "config.appointment_kind",
                          "config_error: appointment_kind '%.30s' is not "
                          "job, estimate or none", kind);
    if (!customer_id_done(ctx))
        return cs_err_set(err, CS_EINVAL, "customer",
                          "no_customer: the customer step has no "
                          "customer_id");
    if (when_appointment(ctx->call, ctx->config, &a, err) < 0)
        return CS_EINVAL;
    if (phase_is(ctx, "") && !address_id(ctx))
        set_phase(ctx, "fetch");
    else if (phase_is(ctx, ""))
        set_phase(ctx, "search");
    int rc;
    if (phase_is(ctx, "fetch")) {
        /* The customer may have an address by now (added by hand). */
        char *path = path3("/customers/", customer_id_done(ctx), NULL, NULL,
                           NULL);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    } else if (phase_is(ctx, "address")) {
        json_t *addr = call_address(ctx);
        CS_ASSERT(addr != NULL);
        char *path = path3("/customers/", customer_id_done(ctx),
                           "/addresses", NULL, NULL);
        rc = begin(ctx, rq, "POST", path, err);
        free(path);
        if (rc == 0)
            prov_request_json(rq, addr);
        json_decref(addr);
    } else if (phase_is(ctx, "create")) {
        json_t *body = job_body(ctx, &a, estimate, err);
        if (!body)
            return CS_EINVAL;
        rc = begin(ctx, rq, "POST", estimate ? "/estimates" : "/jobs", err);
        if (rc == 0)
            prov_request_json(rq, body);
        json_decref(body);
    } else {
        /* Before every create: the office may have booked it by hand
         * during the call, and a repeat must find what we made. */
        set_phase(ctx, "search");
        char from[32];
        cs_rfc3339_s(a.start_ms, from);
        struct buf q;
        buf_init(&q, 2048);
        query_add(&q, "customer_id", customer_id_done(ctx));
        query_add(&q, "scheduled_start_min", from);
        query_add(&q, "scheduled_start_max", from);
        query_add(&q, "page_size", "100");
        char *path = query_path(estimate ? "/estimates" : "/jobs", &q);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    }
    return rc;
}

/* A job or estimate of ours: our marker in its notes (or note), or the
 * same start, unless it was canceled. */
static bool booking_is_ours(const struct prov_ctx *ctx, const json_t *j,
                            int64_t start_ms)
{
    const char *status = json_string_value(json_object_get(j, "work_status"));
    if (status && strstr(status, "cancel"))
        return false;
    char marker[64];
    marker_for(ctx, "job", marker);
    size_t i;
    const json_t *n;
    json_array_foreach(json_object_get(j, "notes"), i, n) {
        if (has_text(json_string_value(json_object_get(n, "content")),
                     marker))
            return true;
    }
    if (has_text(json_string_value(json_object_get(j, "note")), marker) ||
        has_text(json_string_value(json_object_get(j, "description")),
                 marker))
        return true;
    const json_t *sch = json_object_get(j, "schedule");
    const char *st = json_string_value(json_object_get(sch,
                                                       "scheduled_start"));
    if (!st)
        st = json_string_value(json_object_get(sch, "start_time"));
    int64_t at;
    return st && cs_parse_rfc3339(st, &at) && at == start_ms;
}

static json_t *booking_done(const json_t *j, bool estimate)
{
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!estimate)
        return json_pack("{s:s}", "job_id", id);
    json_t *v = json_pack("{s:s}", "estimate_id", id);
    const char *opt = json_string_value(json_object_get(
        json_array_get(json_object_get(j, "options"), 0), "id"));
    if (opt)
        json_object_set_new(v, "option_id", json_string(opt));
    return v;
}

static void job_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                      struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        hcp_fail(rsp, res);
        return;
    }
    bool estimate = strcmp(kind_of(ctx), "estimate") == 0;
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "fetch")) {
        const char *addr = pick_address(b);
        json_t *mine = call_address(ctx);
        if (!json_is_object(b)) {
            bad_body(rsp, res, "the customer is not an object");
        } else if (addr) {
            json_object_set_new(ctx->scratch, "address_id",
                                json_string(addr));
            next_phase(ctx, res, "search");
        } else if (mine) {
            next_phase(ctx, res, "address");
        } else {
            prov_fail(res, PROV_PERMANENT, "no_service_address",
                     "a %s needs a service address: the customer has none "
                     "and the call gives no whole one (street, city, state "
                     "and zip)", estimate ? "estimate" : "job");
        }
        json_decref(mine);
    } else if (phase_is(ctx, "address")) {
        const char *id = json_string_value(json_object_get(b, "id"));
        if (id && *id) {
            json_object_set_new(ctx->scratch, "address_id", json_string(id));
            next_phase(ctx, res, "search");
        } else {
            bad_body(rsp, res, "an address without an id");
        }
    } else if (phase_is(ctx, "search")) {
        struct when_appt a;
        struct cs_err err;
        const json_t *list = json_object_get(b, estimate ? "estimates"
                                                         : "jobs");
        const json_t *hit = NULL;
        size_t i;
        const json_t *j;
        if (when_appointment(ctx->call, ctx->config, &a, &err) == 0)
            json_array_foreach(list, i, j) {
                if (!hit && json_string_value(json_object_get(j, "id")) &&
                    booking_is_ours(ctx, j, a.start_ms))
                    hit = j;
            }
        if (!json_is_array(list))
            bad_body(rsp, res, "a list without its items");
        else if (hit)
            set_done_kv(res, booking_done(hit, estimate));
        else
            next_phase(ctx, res, "create");
    } else {
        if (json_string_value(json_object_get(b, "id")))
            set_done_kv(res, booking_done(b, estimate));
        else
            bad_body(rsp, res, estimate ? "an estimate without an id"
                                        : "a job without an id");
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 3: note                                                       */
/* ------------------------------------------------------------------ */

static int note_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    const char *cust = customer_id_done(ctx);
    const char *job = str_at(ctx->done, "job.job_id");
    const char *est = str_at(ctx->done, "job.estimate_id");
    const char *opt = str_at(ctx->done, "job.option_id");
    if (!cust)
        return cs_err_set(err, CS_EINVAL, "customer",
                          "no_customer: the customer step has no "
                          "customer_id");
    int rc;
    char *path;
    if (job || (est && opt)) {
        bool lookup = ctx->reconcile && !phase_is(ctx, "create");
        set_phase(ctx, lookup ? "search" : "create");
        if (job)
            path = lookup ? path3("/jobs/", job, NULL, NULL, NULL)
                          : path3("/jobs/", job, "/notes", NULL, NULL);
        else
            path = lookup ? path3("/estimates/", est, NULL, NULL, NULL)
                          : path3("/estimates/", est, "/options/", opt,
                                  "/notes");
        rc = begin(ctx, rq, lookup ? "GET" : "POST", path, err);
        free(path);
        if (rc == 0 && !lookup) {
            char *text = note_text(ctx);
            json_t *body = json_pack("{s:s}", "content", text ? text : "");
            free(text);
            prov_request_json(rq, body);
            json_decref(body);
        }
        return rc;
    }
    /* The customer's notes: one text field, read, appended, read again. */
    path = path3("/customers/", cust, NULL, NULL, NULL);
    if (phase_is(ctx, "write")) {
        rc = begin(ctx, rq, "PUT", path, err);
        if (rc == 0)
            prov_request_json(rq, json_object_get(ctx->scratch, "patch"));
    } else {
        if (!phase_is(ctx, "verify"))
            set_phase(ctx, "read");
        rc = begin(ctx, rq, "GET", path, err);
    }
    free(path);
    return rc;
}

/* notes + a blank line + our note, the oldest text dropped first when
 * the whole would be longer than Housecall Pro's field should hold. */
static json_t *appended(const char *notes, const char *mine)
{
    size_t have = notes ? strlen(notes) : 0;
    size_t keep = have;
    size_t room = HCP_CUSTOMER_NOTES_MAX - strlen(mine) - 2;
    const char *from = notes;
    if (keep > room) {
        from = notes + (have - room);
        while (*from && ((unsigned char)*from & 0xc0) == 0x80)
            from++;
        keep = strlen(from);
    }
    char *t = xasprintf("%.*s%s%s", (int)keep, from ? from : "",
                        keep ? "\n\n" : "", mine);
    json_t *v = json_pack("{s:s}", "notes", t);
    free(t);
    return v;
}

static void note_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        hcp_fail(rsp, res);
        return;
    }
    char marker[64];
    marker_for(ctx, "note", marker);
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "search")) {
        /* the job or the estimate, with its notes */
        const char *hit = NULL;
        size_t i, k;
        const json_t *n, *o;
        json_array_foreach(json_object_get(b, "notes"), i, n) {
            if (!hit &&
                has_text(json_string_value(json_object_get(n, "content")),
                         marker))
                hit = json_string_value(json_object_get(n, "id"));
        }
        json_array_foreach(json_object_get(b, "options"), k, o) {
            json_array_foreach(json_object_get(o, "notes"), i, n) {
                if (!hit && has_text(json_string_value(
                                         json_object_get(n, "content")),
                                     marker))
                    hit = json_string_value(json_object_get(n, "id"));
            }
        }
        if (!json_is_object(b))
            bad_body(rsp, res, "not an object");
        else if (hit)
            set_done_kv(res, json_pack("{s:s}", "note_id", hit));
        else
            next_phase(ctx, res, "create");
    } else if (phase_is(ctx, "create")) {
        const char *id = json_string_value(json_object_get(b, "id"));
        if (id && *id)
            set_done_kv(res, json_pack("{s:s}", "note_id", id));
        else
            bad_body(rsp, res, "a note without an id");
    } else if (!json_is_object(b)) {
        bad_body(rsp, res, "the customer is not an object");
    } else {
        /* read, write (the customer as PUT returns it), verify */
        const char *notes = json_string_value(json_object_get(b, "notes"));
        json_int_t appends = json_integer_value(
            json_object_get(ctx->scratch, "appends"));
        if (has_text(notes, marker) && !phase_is(ctx, "write")) {
            set_done_kv(res, json_pack("{s:s,s:b}", "customer_id",
                                       customer_id_done(ctx),
                                       "customer_notes", 1));
        } else if (phase_is(ctx, "write")) {
            next_phase(ctx, res, "verify");
        } else if (appends >= HCP_APPENDS) {
            prov_fail(res, PROV_RETRY, "notes_contended",
                     "the customer's notes were overwritten %d times while "
                     "appending", HCP_APPENDS);
        } else {
            char *text = note_text(ctx);
            json_object_set_new(ctx->scratch, "patch",
                                appended(notes, text ? text : ""));
            free(text);
            json_object_set_new(ctx->scratch, "appends",
                                json_integer(appends + 1));
            next_phase(ctx, res, "write");
        }
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Probe: GET /company, read only                                     */
/* ------------------------------------------------------------------ */

static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    return begin(ctx, rq, "GET", "/company", err);
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    CS_UNUSED(ctx);
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        hcp_fail(rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const char *id = json_string_value(json_object_get(b, "id"));
    if (id) {
        json_t *v = json_pack("{s:s}", "company_id", id);
        static const char *const keys[] = {"name", "time_zone"};
        for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
            const json_t *x = json_object_get(b, keys[i]);
            if (json_is_string(x))
                json_object_set(v, keys[i], (json_t *)x);
        }
        set_done_kv(res, v);
    } else {
        bad_body(rsp, res, "the company without an id");
    }
    json_decref(b);
}

static const struct prov_step hcp_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

/* ------------------------------------------------------------------ */

static const struct prov_step hcp_steps[] = {
    {"customer", PROV_RECONCILE_LOOKUP, NULL, customer_build,
     customer_parse},
    {"job", PROV_RECONCILE_LOOKUP, job_applies, job_build, job_parse},
    {"note", PROV_RECONCILE_LOOKUP, NULL, note_build, note_parse},
};

/* Housecall Pro documents no limit: 120 requests per minute per company,
 * conservative; 429s pause the key for Retry-After (60 s without). */
const struct prov_ops prov_housecall_pro = {
    .name = "housecall_pro",
    .steps = hcp_steps,
    .nsteps = CS_ARRAY_LEN(hcp_steps),
    .rate = {120, 60000},
    .rate_scope = "company_id",
    .probe = &hcp_probe,
};
