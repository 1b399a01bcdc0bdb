/*
 * pipedrive.c - the Pipedrive provider: find the caller's person and
 * create or update it, write the call note on the person, open a deal in
 * the configured pipeline and stage, and add a booked appointment as an
 * activity. See prov.h for the step protocol and DESIGN.md ("A job's
 * life") for checkpoints and reconciliation.
 *
 * Docs followed: the API reference of developers.pipedrive.com (v1 and
 * v2) as generated into the official SDK pipedrive/client-nodejs
 * (PersonsApi.searchPersons and its parameters, AddPersonRequest,
 * AddActivityRequest, ActivitiesApi.getActivities and its person_id
 * filter, DealsApi.getDeals, NotesApi), the guides on pipedrive.readme.io
 * ("Rate limiting", "HTTP status codes", "Authentication", "API v2
 * migration guide") and shared/providers.md section 5. Field mappings,
 * the matching of emails and phones and the note text are in
 * pipedrive_fields.c.
 *
 * Versions. Persons, deals and activities use API v2 (/api/v2/...): their
 * v1 endpoints were deprecated at the end of 2025 and are out of support
 * since 2026-08-01, v2 costs about half the tokens, and v2 is strict
 * about types (ids are numbers, booleans true/false). Notes have no v2
 * endpoint and use v1 (/api/v1/notes), which is not deprecated.
 *
 * Auth. An API token travels in the x-api-token header, as the docs
 * prescribe (the old api_token query parameter would put the secret into
 * URLs and logs); an OAuth access token as "Authorization: Bearer".
 * Requests go to the company's own domain, which the docs advise for
 * routing to the right data centre: the connection's instance_url (an
 * OAuth grant's api_domain, https://<company>.pipedrive.com), else
 * config.company_domain ("acme", "acme.pipedrive.com" or
 * "https://acme.pipedrive.com"), else https://api.pipedrive.com.
 *
 * Steps and what a repeat after an unknown outcome does:
 *   person    search by email, then by phone (GET /api/v2/persons/search,
 *             exact_match), read the hit (GET /api/v2/persons/{id}) and
 *             PATCH what it lacks, or POST a new person. Pipedrive
 *             accepts duplicate persons, and its search index may not
 *             show a person created a moment ago; so a step that
 *             reconciles first lists the persons updated since the job
 *             was enqueued (GET /api/v2/persons?updated_since=..., read
 *             from the database, not the index) and adopts one with the
 *             caller's email or phone.
 *   note      POST /api/v1/notes on the person, HTML content with the job
 *             marker; a reconciling step lists the person's notes first
 *             (GET /api/v1/notes?person_id=...) and adopts the one that
 *             holds the marker.
 *   deal      the person's open deals in the configured pipeline
 *             (GET /api/v2/deals?person_id&pipeline_id&status=open) are
 *             looked at before every create; one found is adopted.
 *   activity  the activities whose primary participant is the person
 *             (GET /api/v2/activities?person_id=...) are looked at before
 *             every create; one with our marker in its note, or with our
 *             subject at our due date and time, is adopted.
 *
 * Times. Pipedrive's due_date and due_time are UTC ("The due time of the
 * activity in UTC. Format: HH:MM"); the appointment's wall-clock time is
 * read in its own zone, else config.timezone, else UTC (when.h), and
 * converted.
 *
 * Rate limits. Pipedrive spends a daily token budget per company (30,000
 * x plan multiplier x seats) and limits bursts per token in a rolling
 * 2-second window (API token: Lite 20, Growth 40, Premium 100, Ultimate
 * 120; OAuth 80 to 480; search 10 on every plan). The limiter default is
 * the lowest plan's 20 per 2 s, keyed per company (rate_scope
 * "company_domain") so that every connection of one company shares it. A
 * 429 waits for Retry-After, else x-ratelimit-reset (seconds, 1..60),
 * else 2 s; one with x-daily-ratelimit-token-remaining 0 (the budget is
 * spent) waits until UTC midnight, at most an hour at a time, because the
 * budget resets at midnight in Pipedrive's server time zone, which the
 * docs do not name. A successful answer whose x-ratelimit-remaining,
 * x-daily-ratelimit-token-remaining or x-daily-requests-left (the API
 * token's POST/PUT fair-use count, UTC day) is 0 pauses the key the same
 * way before the next request draws a 429.
 *
 * Errors. 401 (invalid token) and 402 (the company account is not open:
 * trial ended or payment missing) park the connection's jobs: its user
 * must act. A 403 that is not JSON is Pipedrive's block of clients that
 * keep sending after 429s and is waited out; other 400, 403, 404, 410,
 * 415 and 422 answers are permanent with Pipedrive's "error" text.
 *
 * Connection config:
 *   company_domain      the company (base URL and rate-limit key)
 *   default_owner       owner_id of persons, deals and activities we
 *                       create (also owner_id)
 *   field_mappings      onto the person (mapping.h): targets name, email,
 *                       phone, owner_id, org_id, visible_to, label_ids,
 *                       marketing_status, or custom_fields.<key> (also the
 *                       bare key) where <key> is the field's 40-character
 *                       hash
 *   custom_fields       seed 003's form {"<key>": "source.path"}
 *   pipeline_id, stage_id (or pipeline_stage_id)  open a deal
 *   deal_title_template, deal_currency, deal_value, deal_field_mappings,
 *   deal_settings {title_template, currency, value_estimation {<project
 *                       type>: value, "default": value}} (seed 003)
 *   activity_type       ("meeting"), activity_busy (true),
 *   create_activity     (true): add booked appointments as activities
 *   timezone            for appointments whose call names none
 */
#include "pipedrive_internal.h"
#include "buf.h"
#include "mapping.h"
#include "when.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PD_BASE_URL "https://api.pipedrive.com"

/* Pages a lookup reads before it gives up and writes. */
#define PD_MAX_PAGES 4
/* How far before its first enqueue a reconciling person step looks. */
#define PD_RECENT_SLACK_MS (5 * 60 * 1000)

#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL

/* ------------------------------------------------------------------ */
/* Reading the call and the config                                    */
/* ------------------------------------------------------------------ */

/* A non-empty string at path, else NULL. */
const char *pd__str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
    return s && *s ? s : NULL;
}

/* A positive id: an integer, or a string of digits. */
bool pd__json_id(const json_t *v, long long *out)
{
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        *out = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 18 || strspn(s, "0123456789") != strlen(s))
        return false;
    *out = strtoll(s, NULL, 10);
    return *out > 0;
}

static bool config_id(const json_t *config, const char *key, long long *out)
{
    return pd__json_id(json_object_get(config, key), out);
}

static bool config_bool(const json_t *config, const char *key, bool dflt)
{
    const json_t *v = json_object_get(config, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* The owner of what we create: default_owner (seed 003), else owner_id. */
static bool config_owner(const json_t *config, long long *out)
{
    return config_id(config, "default_owner", out) ||
           config_id(config, "owner_id", out);
}

static long long done_id(const struct prov_ctx *ctx, const char *path)
{
    long long id = 0;
    return pd__json_id(map_path(ctx->done, path), &id) ? id : 0;
}

static long long person_id_done(const struct prov_ctx *ctx)
{
    return done_id(ctx, "person.person_id");
}

/* ------------------------------------------------------------------ */
/* Requests and responses                                             */
/* ------------------------------------------------------------------ */

static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && strncasecmp(s + n - k, suffix, k) == 0;
}

/*
 * The API base into *out (xmalloc'd, no trailing slash): the sandbox or
 * test override, the OAuth grant's api_domain, config.company_domain, or
 * api.pipedrive.com. The secret goes to whatever host this names, so only
 * https://<one label>.pipedrive.com is accepted from the connection.
 */
static int api_base(const struct prov_ctx *ctx, char **out,
                    struct cs_err *err)
{
    *out = NULL;
    const char *b = ctx->base_url;
    if (b && *b) {
        size_t n = strlen(b);
        while (n > 0 && b[n - 1] == '/')
            n--;
        *out = xstrndup(b, n);
        return 0;
    }
    const char *inst = ctx->creds ? ctx->creds->instance_url : NULL;
    if (inst && *inst) {
        const char *h = strncasecmp(inst, "https://", 8) == 0 ? inst + 8
                                                               : NULL;
        size_t n = h ? strcspn(h, "/") : 0;
        const char *rest = h ? h + n : "";
        if (!h || (rest[0] && strcmp(rest, "/") != 0) ||
            !ends_with(h, n, ".pipedrive.com") ||
            !label_ok(h, n - strlen(".pipedrive.com")))
            return cs_err_set(err, CS_EINVAL, "instance_url",
                              "config_error: instance_url must be "
                              "https://<company>.pipedrive.com");
        *out = xasprintf("https://%.*s", (int)n, h);
        return 0;
    }
    const char *d = pd__str_at(ctx->config, "company_domain");
    if (!d) {
        *out = xstrdup(PD_BASE_URL);
        return 0;
    }
    if (strncasecmp(d, "https://", 8) == 0)
        d += 8;
    size_t n = strlen(d);
    while (n > 0 && d[n - 1] == '/')
        n--;
    if (ends_with(d, n, ".pipedrive.com"))
        n -= strlen(".pipedrive.com");
    if (!label_ok(d, n))
        return cs_err_set(err, CS_EINVAL, "config.company_domain",
                          "config_error: company_domain '%.64s' is not a "
                          "Pipedrive company domain (acme or "
                          "acme.pipedrive.com)",
                          pd__str_at(ctx->config, "company_domain"));
    *out = xasprintf("https://%.*s.pipedrive.com", (int)n, d);
    return 0;
}

/* Start a request to base + path with the token, or fail with
 * no_credentials / config_error. */
static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, struct cs_err *err)
{
    const struct prov_creds *c = ctx->creds;
    const char *bearer = c && c->access_token && *c->access_token
                             ? c->access_token
                             : NULL;
    const char *token = c && c->api_key && *c->api_key ? c->api_key : NULL;
    if (!bearer && !token)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no API token "
                          "or access token");
    char *base;
    if (api_base(ctx, &base, err) < 0)
        return CS_EINVAL;
    rq->method = method;
    rq->url = xasprintf("%s%s", base, path);
    free(base);
    if (bearer) {
        char *auth = xasprintf("Bearer %s", bearer);
        prov_request_header(rq, "Authorization", auth);
        free(auth);
    } else {
        prov_request_header(rq, "x-api-token", token);
    }
    prov_request_header(rq, "Accept", "application/json");
    return 0;
}

static void set_done(struct prov_result *res, const char *key, long long id)
{
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = json_pack("{s:I}", key, (json_int_t)id);
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

/* Until the next UTC midnight, at most an hour: the budget resets at
 * midnight in Pipedrive's server time zone, which the docs do not name,
 * so a spent budget is probed again at least hourly. */
static int64_t until_budget_reset(int64_t now_ms)
{
    int64_t mid = (now_ms / DAY_MS + 1) * DAY_MS - now_ms;
    return mid < HOUR_MS ? mid : HOUR_MS;
}

static int64_t until_midnight_utc(int64_t now_ms)
{
    return (now_ms / DAY_MS + 1) * DAY_MS - now_ms;
}

/* x-ratelimit-reset (seconds until the burst window frees up) in ms,
 * 1..60 s, or 2 s (the window) without it. */
static int64_t burst_reset_ms(const struct prov_response *rsp)
{
    long long s = header_int(rsp, "x-ratelimit-reset");
    if (s < 1)
        return 2000;
    return s > 60 ? 60000 : s * 1000;
}

static bool budget_spent(const struct prov_response *rsp)
{
    return header_int(rsp, "x-daily-ratelimit-token-remaining") == 0;
}

/*
 * Classify a failed answer: the shared rules (prov_classify), refined by
 * Pipedrive's error envelope {"success": false, "error", "error_info",
 * "code"?}: "error" is the message, "code" (an account limit such as
 * feature_capping_deals_limit) the code. 402, 403 without JSON and 429
 * are Pipedrive's own (see the top of the file).
 */
static void pd_fail(const struct prov_ctx *ctx,
                    const struct prov_response *rsp, struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    int st = rsp->status;
    json_t *b = prov_response_json(rsp);
    if (json_is_object(b)) {
        const char *e = json_string_value(json_object_get(b, "error"));
        const char *c = json_string_value(json_object_get(b, "code"));
        if (e && *e)
            snprintf(res->message, sizeof(res->message), "%s", e);
        if (c && *c && st != 429)
            prov_error_code(c, res->code);
    }
    prov_classify(rsp, res);
    if (st == 402) {
        res->outcome = PROV_AUTH;
        snprintf(res->code, sizeof(res->code), "payment_required");
        char m[sizeof(res->message)];
        memcpy(m, res->message, sizeof(m));
        snprintf(res->message, sizeof(res->message),
                 "the Pipedrive company account is not open (trial ended "
                 "or payment missing): %.150s", m);
    } else if (st == 403 && !json_is_object(b)) {
        res->outcome = PROV_RATE_LIMITED;
        snprintf(res->code, sizeof(res->code), "blocked");
        snprintf(res->message, sizeof(res->message),
                 "Pipedrive refused the request without an API answer "
                 "(blocked after repeated 429s)");
        if (res->retry_after_ms < 0)
            res->retry_after_ms = 60000;
    } else if (st == 429) {
        bool daily = budget_spent(rsp);
        snprintf(res->code, sizeof(res->code), "%s",
                 daily ? "daily_budget" : "rate_limited");
        if (daily)
            res->retry_after_ms = until_budget_reset(ctx->now_ms);
        else if (res->retry_after_ms < 0)
            res->retry_after_ms = burst_reset_ms(rsp);
    }
    json_decref(b);
}

/*
 * An answer that went through but spent a budget: the company's daily
 * tokens (until the budget resets, see until_budget_reset), the API
 * token's POST/PUT fair-use count (until UTC midnight) or the burst
 * window (x-ratelimit-reset), so the next request waits instead of
 * drawing a 429.
 */
static void note_budget(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (!is_2xx(rsp->status))
        return;
    if (budget_spent(rsp))
        res->pause_ms = until_budget_reset(ctx->now_ms);
    else if (header_int(rsp, "x-daily-requests-left") == 0)
        res->pause_ms = until_midnight_utc(ctx->now_ms);
    else if (header_int(rsp, "x-ratelimit-remaining") == 0)
        res->pause_ms = burst_reset_ms(rsp);
}

/* Every parse starts here. */
static void parse_begin(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
}

/* Append "&name=value" (or "?..." first) with value escaped. */
static void query_add(struct buf *q, const char *name, const char *value)
{
    char *v = prov_url_escape(value);
    if (buf_addf(q, "%c%s=%s", q->len ? '&' : '?', name, v) < 0)
        CS_ASSERT(!"query too long");
    free(v);
}

static void query_add_id(struct buf *q, const char *name, long long id)
{
    char v[24];
    snprintf(v, sizeof(v), "%lld", id);
    query_add(q, name, v);
}

static char *query_path(const char *path, struct buf *q)
{
    char *qs = buf_take(q, NULL);
    char *p = xasprintf("%s%s", path, qs ? qs : "");
    free(qs);
    return p;
}

/* The v2 envelope's data.id, or 0. */
static long long data_id(const json_t *b)
{
    long long id = 0;
    return pd__json_id(json_object_get(json_object_get(b, "data"), "id"), &id)
               ? id
               : 0;
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
    json_object_del(ctx->scratch, "cursor");
    json_object_del(ctx->scratch, "start");
    json_object_del(ctx->scratch, "pages");
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

/* A listing has another page and the step may read it: remember where
 * it continues (v2 cursor, or v1 start) and stay in the phase. */
static bool more_pages(struct prov_ctx *ctx, const json_t *b,
                       struct prov_result *res)
{
    long long pages = json_integer_value(json_object_get(ctx->scratch,
                                                         "pages")) + 1;
    if (pages >= PD_MAX_PAGES)
        return false;
    const json_t *ad = json_object_get(b, "additional_data");
    const char *cursor = json_string_value(json_object_get(ad,
                                                           "next_cursor"));
    const json_t *pg = json_object_get(ad, "pagination");
    long long start = 0;
    if (cursor && *cursor) {
        json_object_set_new(ctx->scratch, "cursor", json_string(cursor));
    } else if (json_is_true(json_object_get(pg,
                                            "more_items_in_collection")) &&
               pd__json_id(json_object_get(pg, "next_start"), &start)) {
        json_object_set_new(ctx->scratch, "start", json_integer(start));
    } else {
        return false;
    }
    json_object_set_new(ctx->scratch, "pages", json_integer(pages));
    res->outcome = PROV_NEXT;
    return true;
}

static void query_cursor(const struct prov_ctx *ctx, struct buf *q)
{
    const char *c = json_string_value(json_object_get(ctx->scratch,
                                                      "cursor"));
    if (c)
        query_add(q, "cursor", c);
}

/* ------------------------------------------------------------------ */
/* Step 1: person                                                     */
/* ------------------------------------------------------------------ */

static const char *call_email(const struct prov_ctx *ctx)
{
    return pd__str_at(ctx->call, "customer.email");
}

static const char *call_phone(const struct prov_ctx *ctx)
{
    return pd__str_at(ctx->call, "customer.phone");
}

/* The person's name: the call's, else first and last, else the phone or
 * the email (Pipedrive requires a name). */
static char *call_name(const struct prov_ctx *ctx)
{
    const char *name = pd__str_at(ctx->call, "customer.name");
    if (name)
        return xstrdup(name);
    const char *first = pd__str_at(ctx->call, "customer.first_name");
    const char *last = pd__str_at(ctx->call, "customer.last_name");
    if (first || last)
        return xasprintf("%s%s%s", first ? first : "",
                         first && last ? " " : "", last ? last : "");
    const char *p = call_phone(ctx);
    return xstrdup(p ? p : call_email(ctx));
}

static int person_mapped(const struct prov_ctx *ctx, json_t **out,
                         struct cs_err *err)
{
    return pd__apply_mappings(ctx, "field_mappings", true, "person",
                              pd__person_fields, out, err);
}

/* An entry for the emails or phones list. */
static json_t *contact_entry(const char *value, bool primary,
                             const char *label)
{
    return json_pack("{s:s,s:b,s:s}", "value", value, "primary", primary,
                     "label", label);
}

/* The new person: name, the call's email and phone, the owner, and the
 * mapped fields over them (a mapped email or phone is added). */
static json_t *create_body(const struct prov_ctx *ctx, const json_t *mapped)
{
    json_t *b = json_object();
    char *name = call_name(ctx);
    json_object_set_new(b, "name", json_string(name));
    free(name);
    json_t *emails = json_array(), *phones = json_array();
    const char *email = call_email(ctx), *phone = call_phone(ctx);
    if (email)
        json_array_append_new(emails, contact_entry(email, true, "work"));
    if (phone)
        json_array_append_new(phones, contact_entry(phone, true, "mobile"));
    long long owner;
    if (config_owner(ctx->config, &owner))
        json_object_set_new(b, "owner_id", json_integer(owner));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)mapped, k, v) {
        if (strcmp(k, "email") == 0 || strcmp(k, "phone") == 0) {
            bool ph = k[0] == 'p';
            json_t *list = ph ? phones : emails;
            if (!pd__list_has(list, json_string_value(v), ph))
                json_array_append_new(
                    list, contact_entry(json_string_value(v),
                                        json_array_size(list) == 0,
                                        ph ? "mobile" : "work"));
        } else if (strcmp(k, "custom_fields") != 0 ||
                   json_object_size(v) > 0) {
            json_object_set(b, k, v);
        }
    }
    if (json_array_size(emails))
        json_object_set_new(b, "emails", emails);
    else
        json_decref(emails);
    if (json_array_size(phones))
        json_object_set_new(b, "phones", phones);
    else
        json_decref(phones);
    return b;
}

/* have's list (emails or phones) as writable entries plus value when it
 * is missing, or NULL when nothing is missing. */
static json_t *list_with(const json_t *have, const char *value, bool phone)
{
    if (!value || pd__list_has(have, value, phone))
        return NULL;
    json_t *out = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(have, i, e) {
        const char *v = pd__entry_value(e);
        if (!v)
            continue;
        json_t *w = json_pack("{s:s}", "value", v);
        const json_t *p = json_object_get(e, "primary");
        const json_t *l = json_object_get(e, "label");
        if (json_is_boolean(p))
            json_object_set(w, "primary", (json_t *)p);
        if (json_is_string(l))
            json_object_set(w, "label", (json_t *)l);
        json_array_append_new(out, w);
    }
    json_array_append_new(out, contact_entry(value,
                                             json_array_size(out) == 0,
                                             phone ? "mobile" : "work"));
    return out;
}

/*
 * What to PATCH on a person found as `have`: the name only where it has
 * none (a person may have corrected it), the call's and mapped emails
 * and phones it lacks (added to its own list: a PATCH replaces the list),
 * every mapped field that differs, mapped label_ids merged into its own,
 * and the custom fields whose values differ. The owner is set on create
 * only.
 */
static json_t *update_body(const struct prov_ctx *ctx, const json_t *mapped,
                           const json_t *have)
{
    json_t *patch = json_object();
    const char *hn = json_string_value(json_object_get(have, "name"));
    if (!hn || !*hn) {
        char *name = call_name(ctx);
        json_object_set_new(patch, "name", json_string(name));
        free(name);
    }
    json_t *emails = json_deep_copy(json_object_get(have, "emails"));
    json_t *phones = json_deep_copy(json_object_get(have, "phones"));
    if (!json_is_array(emails)) {
        json_decref(emails);
        emails = json_array();
    }
    if (!json_is_array(phones)) {
        json_decref(phones);
        phones = json_array();
    }
    const char *adds[4][2] = {
        {call_email(ctx), "e"},
        {json_string_value(json_object_get(mapped, "email")), "e"},
        {call_phone(ctx), "p"},
        {json_string_value(json_object_get(mapped, "phone")), "p"},
    };
    bool changed[2] = {false, false};
    for (size_t i = 0; i < CS_ARRAY_LEN(adds); i++) {
        bool ph = adds[i][1][0] == 'p';
        json_t *n = list_with(ph ? phones : emails, adds[i][0], ph);
        if (!n)
            continue;
        if (ph) {
            json_decref(phones);
            phones = n;
        } else {
            json_decref(emails);
            emails = n;
        }
        changed[ph] = true;
    }
    if (changed[0])
        json_object_set(patch, "emails", emails);
    if (changed[1])
        json_object_set(patch, "phones", phones);
    json_decref(emails);
    json_decref(phones);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)mapped, k, v) {
        const json_t *cur = json_object_get(have, k);
        if (strcmp(k, "email") == 0 || strcmp(k, "phone") == 0) {
            continue;
        } else if (strcmp(k, "custom_fields") == 0) {
            const json_t *hc = json_object_get(have, "custom_fields");
            json_t *missing = json_object();
            const char *ck;
            json_t *cv;
            json_object_foreach(v, ck, cv) {
                const json_t *h = json_object_get(hc, ck);
                if (!h || !pd__same_value(h, cv))
                    json_object_set(missing, ck, cv);
            }
            if (json_object_size(missing))
                json_object_set_new(patch, k, missing);
            else
                json_decref(missing);
        } else if (strcmp(k, "label_ids") == 0) {
            json_t *ids = json_is_array(cur) ? json_deep_copy(cur)
                                             : json_array();
            size_t before = json_array_size(ids), i, j;
            json_t *t, *u;
            json_array_foreach(v, i, t) {
                bool seen = false;
                json_array_foreach(ids, j, u) seen |= pd__same_value(t, u);
                if (!seen)
                    json_array_append(ids, t);
            }
            if (json_array_size(ids) > before)
                json_object_set_new(patch, k, ids);
            else
                json_decref(ids);
        } else if (!(cur && pd__same_value(cur, v))) {
            json_object_set(patch, k, v);
        }
    }
    return patch;
}

static char *person_path(long long id)
{
    return xasprintf("/api/v2/persons/%lld", id);
}

/* The search of one field: exact, as Pipedrive's search defines it (not
 * case sensitive). */
static char *search_path(const char *field, const char *term)
{
    struct buf q;
    buf_init(&q, 4096);
    query_add(&q, "term", term);
    query_add(&q, "fields", field);
    query_add(&q, "exact_match", "true");
    query_add(&q, "limit", "10");
    return query_path("/api/v2/persons/search", &q);
}

/* Persons updated since the job was first enqueued (less some slack for
 * clocks), newest first: the database's view, which a create shows up in
 * at once. */
static char *recent_path(const struct prov_ctx *ctx)
{
    int64_t since;
    const char *fe = json_string_value(json_object_get(ctx->job,
                                                       "first_enqueued_at"));
    if (!fe || !cs_parse_rfc3339(fe, &since))
        since = ctx->now_ms - DAY_MS;
    char ts[32];
    cs_rfc3339_s(since - PD_RECENT_SLACK_MS, ts);
    struct buf q;
    buf_init(&q, 4096);
    query_add(&q, "updated_since", ts);
    query_add(&q, "sort_by", "update_time");
    query_add(&q, "sort_direction", "desc");
    query_add(&q, "limit", "500");
    query_cursor(ctx, &q);
    return query_path("/api/v2/persons", &q);
}

/* The first phase: a reconciling step looks at recent persons first, a
 * new one searches by email, else by phone. */
static const char *first_person_phase(const struct prov_ctx *ctx)
{
    if (ctx->reconcile)
        return "recent";
    return call_email(ctx) ? "search_email" : "search_phone";
}

static int person_build(struct prov_ctx *ctx, struct prov_request *rq,
                        struct cs_err *err)
{
    if (!call_phone(ctx) && !call_email(ctx))
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    json_t *mapped = NULL;
    if (person_mapped(ctx, &mapped, err) < 0)
        return CS_EINVAL;
    if (!*phase_of(ctx))
        set_phase(ctx, first_person_phase(ctx));
    long long id = 0;
    pd__json_id(json_object_get(ctx->scratch, "person_id"), &id);
    int rc;
    json_t *body = NULL;
    char *path = NULL;
    if (phase_is(ctx, "create")) {
        rc = begin(ctx, rq, "POST", "/api/v2/persons", err);
        body = create_body(ctx, mapped);
    } else if (phase_is(ctx, "fetch")) {
        path = person_path(id);
        rc = begin(ctx, rq, "GET", path, err);
    } else if (phase_is(ctx, "update")) {
        path = person_path(id);
        rc = begin(ctx, rq, "PATCH", path, err);
        body = json_incref(json_object_get(ctx->scratch, "patch"));
    } else if (phase_is(ctx, "recent")) {
        path = recent_path(ctx);
        rc = begin(ctx, rq, "GET", path, err);
    } else if (phase_is(ctx, "search_email")) {
        path = search_path("email", call_email(ctx));
        rc = begin(ctx, rq, "GET", path, err);
    } else {
        set_phase(ctx, "search_phone");
        path = search_path("phone", call_phone(ctx));
        rc = begin(ctx, rq, "GET", path, err);
    }
    if (rc == 0 && body)
        prov_request_json(rq, body);
    free(path);
    json_decref(body);
    json_decref(mapped);
    return rc;
}

/* Found with its fields: update what it lacks, or done. */
static void person_found(struct prov_ctx *ctx, long long id,
                         const json_t *have, struct prov_result *res)
{
    json_t *mapped = NULL;
    struct cs_err err;
    /* build succeeded with the same input, so this cannot fail. */
    if (person_mapped(ctx, &mapped, &err) < 0)
        mapped = json_object();
    json_t *patch = update_body(ctx, mapped, have);
    json_decref(mapped);
    if (json_object_size(patch) == 0) {
        json_decref(patch);
        set_done(res, "person_id", id);
        return;
    }
    json_object_set_new(ctx->scratch, "person_id", json_integer(id));
    json_object_set_new(ctx->scratch, "patch", patch);
    next_phase(ctx, res, "update");
}

/* After a search that found nothing: the phone search, or create. */
static void person_not_found(struct prov_ctx *ctx, struct prov_result *res)
{
    if ((phase_is(ctx, "recent") && call_email(ctx)))
        next_phase(ctx, res, "search_email");
    else if (!phase_is(ctx, "search_phone") && call_phone(ctx))
        next_phase(ctx, res, "search_phone");
    else
        next_phase(ctx, res, "create");
}

/* data.items[].item of a search: the first that has the call's email or
 * phone (exact_match is Pipedrive's; this guards against a loose hit). */
static long long search_hit(const struct prov_ctx *ctx, const json_t *items)
{
    bool by_phone = phase_is(ctx, "search_phone");
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        const json_t *p = json_object_get(it, "item");
        long long id;
        if (pd__json_id(json_object_get(p, "id"), &id) &&
            pd__person_matches(p, by_phone ? NULL : call_email(ctx),
                               by_phone ? call_phone(ctx) : NULL))
            return id;
    }
    return 0;
}

static void person_vanished(struct prov_ctx *ctx,
                            const struct prov_response *rsp,
                            struct prov_result *res)
{
    /* Deleted or merged away between the search and the write: once per
     * attempt, create it afresh; a second time is permanent. */
    if (first_time(ctx, "vanished")) {
        json_object_del(ctx->scratch, "patch");
        json_object_del(ctx->scratch, "person_id");
        next_phase(ctx, res, "create");
        return;
    }
    pd_fail(ctx, rsp, res);
    prov_fail(res, PROV_PERMANENT, "person_vanished",
              "the person vanished twice while it was being updated");
}

static void person_parse(struct prov_ctx *ctx,
                         const struct prov_response *rsp,
                         struct prov_result *res)
{
    parse_begin(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        if (rsp->status == 404 &&
            (phase_is(ctx, "update") || phase_is(ctx, "fetch")))
            person_vanished(ctx, rsp, res);
        else
            pd_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const json_t *data = json_object_get(b, "data");
    long long id = 0;
    if (phase_is(ctx, "recent")) {
        const json_t *hit = NULL;
        size_t i;
        const json_t *p;
        json_array_foreach(data, i, p) {
            if (!hit && pd__json_id(json_object_get(p, "id"), &id) &&
                !json_is_true(json_object_get(p, "is_deleted")) &&
                pd__person_matches(p, call_email(ctx), call_phone(ctx)))
                hit = p;
        }
        if (!json_is_array(data) && !json_is_null(data))
            bad_body(rsp, res);
        else if (hit && pd__json_id(json_object_get(hit, "id"), &id))
            person_found(ctx, id, hit, res);
        else if (!more_pages(ctx, b, res))
            person_not_found(ctx, res);
    } else if (phase_is(ctx, "search_email") ||
               phase_is(ctx, "search_phone")) {
        const json_t *items = json_object_get(data, "items");
        if (!json_is_object(data) ||
            (!json_is_array(items) && !json_is_null(items))) {
            bad_body(rsp, res);
        } else if ((id = search_hit(ctx, items)) > 0) {
            json_object_set_new(ctx->scratch, "person_id", json_integer(id));
            next_phase(ctx, res, "fetch");
        } else {
            person_not_found(ctx, res);
        }
    } else if (phase_is(ctx, "fetch")) {
        if (pd__json_id(json_object_get(data, "id"), &id))
            person_found(ctx, id, data, res);
        else
            bad_body(rsp, res);
    } else if ((id = data_id(b)) > 0) {
        set_done(res, "person_id", id);
    } else if (phase_is(ctx, "update") &&
               pd__json_id(json_object_get(ctx->scratch, "person_id"), &id)) {
        set_done(res, "person_id", id);
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 2: note                                                       */
/* ------------------------------------------------------------------ */

static int need_person(const struct prov_ctx *ctx, struct cs_err *err)
{
    if (!person_id_done(ctx))
        return cs_err_set(err, CS_EINVAL, "person",
                          "no_person: the person step has no person_id");
    return 0;
}

static int note_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    if (need_person(ctx, err) < 0)
        return CS_EINVAL;
    long long pid = person_id_done(ctx);
    int rc;
    if (ctx->reconcile && !phase_is(ctx, "create")) {
        /* Did the attempt before write it? The person's notes, newest
         * first. */
        set_phase(ctx, "search");
        struct buf q;
        buf_init(&q, 4096);
        query_add_id(&q, "person_id", pid);
        long long start = json_integer_value(json_object_get(ctx->scratch,
                                                             "start"));
        query_add_id(&q, "start", start);
        query_add(&q, "limit", "100");
        query_add(&q, "sort", "add_time DESC");
        char *path = query_path("/api/v1/notes", &q);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    } else {
        set_phase(ctx, "create");
        rc = begin(ctx, rq, "POST", "/api/v1/notes", err);
        if (rc == 0) {
            char *text = pd__note_text(ctx);
            json_t *body = json_pack("{s:s,s:I}", "content", text ? text : "",
                                     "person_id", (json_int_t)pid);
            free(text);
            prov_request_json(rq, body);
            json_decref(body);
        }
    }
    return rc;
}

static void note_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    parse_begin(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        pd_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const json_t *data = json_object_get(b, "data");
    long long id = 0;
    if (phase_is(ctx, "search")) {
        /* v1 answers "data": null for no notes. */
        const json_t *hit = NULL;
        size_t i;
        const json_t *n;
        json_array_foreach(data, i, n) {
            if (!hit && pd__json_id(json_object_get(n, "id"), &id) &&
                pd__has_marker(ctx, json_string_value(
                                        json_object_get(n, "content"))))
                hit = n;
        }
        if (!json_is_object(b) ||
            (!json_is_array(data) && !json_is_null(data)))
            bad_body(rsp, res);
        else if (hit && pd__json_id(json_object_get(hit, "id"), &id))
            set_done(res, "note_id", id);
        else if (!more_pages(ctx, b, res))
            next_phase(ctx, res, "create");
    } else if ((id = data_id(b)) > 0) {
        set_done(res, "note_id", id);
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 3: deal                                                       */
/* ------------------------------------------------------------------ */

static bool deal_applies(const struct prov_ctx *ctx)
{
    long long id;
    return config_id(ctx->config, "pipeline_id", &id);
}

/* A deal_settings key (seed 003), else the flat one. */
static const json_t *deal_setting(const struct prov_ctx *ctx,
                                  const char *flat, const char *nested)
{
    const json_t *v = json_object_get(ctx->config, flat);
    if (v && !json_is_null(v))
        return v;
    return json_object_get(json_object_get(ctx->config, "deal_settings"),
                           nested);
}

static char *deal_title(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *tpl = deal_setting(ctx, "deal_title_template",
                                     "title_template");
    if (json_is_string(tpl)) {
        json_t *root = prov_data_root(ctx);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "%s",
                     "config.deal_title_template");
            return NULL;
        }
        char *s = json_is_string(v) && json_string_length(v)
                      ? xstrdup(json_string_value(v))
                      : NULL;
        json_decref(v);
        if (s)
            return s;
    }
    const char *who = pd__str_at(ctx->call, "customer.name");
    if (!who)
        who = call_phone(ctx);
    if (!who)
        who = call_email(ctx);
    const char *what = pd__str_at(ctx->call, "outcome");
    return xasprintf("%s \xe2\x80\x93 %s", who ? who : "Unknown caller",
                     what ? what : "call");
}

/* deal_value, or seed 003's value_estimation by the call's project type
 * (its "default" otherwise); NULL for none. */
static json_t *deal_value(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *v = json_object_get(ctx->config, "deal_value");
    if (json_is_number(v))
        return json_incref((json_t *)v);
    const json_t *est = deal_setting(ctx, "deal_value_estimation",
                                     "value_estimation");
    if (!est || json_is_null(est))
        return NULL;
    if (!json_is_object(est)) {
        cs_err_set(err, CS_EINVAL, "config.deal_settings.value_estimation",
                   "config_error: value_estimation must be an object of "
                   "numbers");
        return NULL;
    }
    const char *pt = pd__str_at(ctx->call, "analysis.project_type");
    const json_t *x = pt ? json_object_get(est, pt) : NULL;
    if (!x)
        x = json_object_get(est, "default");
    if (x && !json_is_number(x)) {
        cs_err_set(err, CS_EINVAL, "config.deal_settings.value_estimation",
                   "config_error: value_estimation values must be numbers");
        return NULL;
    }
    return x ? json_incref((json_t *)x) : NULL;
}

static json_t *deal_body(const struct prov_ctx *ctx, long long pipeline,
                         struct cs_err *err)
{
    json_t *mapped = NULL;
    if (pd__apply_mappings(ctx, "deal_field_mappings", false, "deal",
                           pd__deal_fields, &mapped, err) < 0)
        return NULL;
    err->code = 0;
    json_t *value = deal_value(ctx, err);
    char *title = err->code ? NULL : deal_title(ctx, err);
    if (!title) {
        json_decref(value);
        json_decref(mapped);
        return NULL;
    }
    json_t *body = json_pack("{s:s,s:I,s:I,s:s}", "title", title,
                             "person_id", (json_int_t)person_id_done(ctx),
                             "pipeline_id", (json_int_t)pipeline, "status",
                             "open");
    free(title);
    long long v;
    if (config_id(ctx->config, "stage_id", &v) ||
        config_id(ctx->config, "pipeline_stage_id", &v))
        json_object_set_new(body, "stage_id", json_integer(v));
    if (config_owner(ctx->config, &v))
        json_object_set_new(body, "owner_id", json_integer(v));
    if (value)
        json_object_set_new(body, "value", value);
    const json_t *cur = deal_setting(ctx, "deal_currency", "currency");
    if (json_is_string(cur))
        json_object_set(body, "currency", (json_t *)cur);
    if (json_object_size(json_object_get(mapped, "custom_fields")) == 0)
        json_object_del(mapped, "custom_fields");
    json_object_update(body, mapped);
    json_decref(mapped);
    return body;
}

static int deal_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    long long pipeline;
    if (need_person(ctx, err) < 0)
        return CS_EINVAL;
    if (!config_id(ctx->config, "pipeline_id", &pipeline))
        return cs_err_set(err, CS_EINVAL, "config.pipeline_id",
                          "config_error: pipeline_id is not set");
    /* Check the body before anything is sent: a mapping that cannot
     * apply fails the step at once, not after the lookup. */
    json_t *body = deal_body(ctx, pipeline, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (phase_is(ctx, "create")) {
        rc = begin(ctx, rq, "POST", "/api/v2/deals", err);
        if (rc == 0)
            prov_request_json(rq, body);
    } else {
        /* The person's open deal in this pipeline, before every create:
         * one deal per caller and pipeline. */
        set_phase(ctx, "search");
        struct buf q;
        buf_init(&q, 4096);
        query_add_id(&q, "person_id", person_id_done(ctx));
        query_add_id(&q, "pipeline_id", pipeline);
        query_add(&q, "status", "open");
        query_add(&q, "limit", "100");
        query_cursor(ctx, &q);
        char *path = query_path("/api/v2/deals", &q);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    }
    json_decref(body);
    return rc;
}

static bool id_is(const json_t *o, const char *key, long long want)
{
    long long id;
    return pd__json_id(json_object_get(o, key), &id) && id == want;
}

static void deal_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    parse_begin(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        pd_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const json_t *data = json_object_get(b, "data");
    long long pipeline = 0, id = 0;
    config_id(ctx->config, "pipeline_id", &pipeline);
    if (phase_is(ctx, "search")) {
        const json_t *hit = NULL;
        size_t i;
        const json_t *d;
        json_array_foreach(data, i, d) {
            const char *st = json_string_value(json_object_get(d, "status"));
            if (!hit && pd__json_id(json_object_get(d, "id"), &id) &&
                id_is(d, "person_id", person_id_done(ctx)) &&
                id_is(d, "pipeline_id", pipeline) && st &&
                strcmp(st, "open") == 0 &&
                !json_is_true(json_object_get(d, "is_deleted")))
                hit = d;
        }
        if (!json_is_object(b) ||
            (!json_is_array(data) && !json_is_null(data)))
            bad_body(rsp, res);
        else if (hit && pd__json_id(json_object_get(hit, "id"), &id))
            set_done(res, "deal_id", id);
        else if (!more_pages(ctx, b, res))
            next_phase(ctx, res, "create");
    } else if ((id = data_id(b)) > 0) {
        set_done(res, "deal_id", id);
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 4: activity                                                   */
/* ------------------------------------------------------------------ */

static bool activity_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call) &&
           config_bool(ctx->config, "create_activity", true);
}

static char *activity_subject(const struct prov_ctx *ctx)
{
    const char *title = pd__str_at(ctx->call, "appointment.title");
    if (title)
        return xstrdup(title);
    const char *service = pd__str_at(ctx->call, "appointment.service_type");
    const char *name = pd__str_at(ctx->call, "customer.name");
    return xasprintf("%s%s%s", service ? service : "Appointment",
                     name ? " - " : "", name ? name : "");
}

/* The appointment's due date ("YYYY-MM-DD"), due time ("HH:MM") and
 * duration ("HH:MM", at most 23:59) in UTC, as Pipedrive takes them. */
struct due {
    char date[11];
    char time[6];
    char duration[6];
};

static void due_of(const struct when_appt *a, struct due *d)
{
    char ts[32];
    cs_rfc3339_s(a->start_ms, ts);
    snprintf(d->date, sizeof(d->date), "%.10s", ts);
    snprintf(d->time, sizeof(d->time), "%.5s", ts + 11);
    int64_t mins = (a->end_ms - a->start_ms) / 60000;
    if (mins < 0)
        mins = 0;
    if (mins > 23 * 60 + 59)
        mins = 23 * 60 + 59;
    snprintf(d->duration, sizeof(d->duration), "%02d:%02d",
             (int)(mins / 60), (int)(mins % 60));
}

static json_t *activity_body(const struct prov_ctx *ctx,
                             const struct when_appt *a, struct cs_err *err)
{
    char local[40];
    if (!when_local_rfc3339(a->tz, a->start_ms, local)) {
        cs_err_set(err, CS_EINVAL, "call.appointment.timezone",
                   "mapping_error: unknown time zone '%.64s'", a->tz);
        return NULL;
    }
    struct due d;
    due_of(a, &d);
    const char *type = pd__str_at(ctx->config, "activity_type");
    struct buf b;
    buf_init(&b, PD_NOTE_MAX);
    pd__puts(&b, "<p>");
    pd__put_line(&b, "Service",
                 pd__str_at(ctx->call, "appointment.service_type"),
                 PD_SHORT_MAX);
    pd__put_line(&b, "Local time", local, PD_SHORT_MAX);
    pd__put_line(&b, "Time zone", a->tz, PD_SHORT_MAX);
    pd__put_line(&b, "Call summary", pd__str_at(ctx->call, "summary"),
                 PD_SUMMARY_MAX);
    pd__puts(&b, "</p>");
    pd__put_marker(&b, ctx);
    char *note = buf_take(&b, NULL);
    char *subject = activity_subject(ctx);
    json_t *body = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:[{s:I,s:b}],s:b,s:b,s:s}", "subject",
        subject, "type", type ? type : "meeting", "due_date", d.date,
        "due_time", d.time, "duration", d.duration, "participants",
        "person_id", (json_int_t)person_id_done(ctx), "primary", 1, "busy",
        config_bool(ctx->config, "activity_busy", true), "done", 0, "note",
        note ? note : "");
    free(subject);
    free(note);
    long long v;
    if ((v = done_id(ctx, "deal.deal_id")) > 0)
        json_object_set_new(body, "deal_id", json_integer(v));
    if (config_owner(ctx->config, &v))
        json_object_set_new(body, "owner_id", json_integer(v));
    return body;
}

static int activity_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    struct when_appt a;
    if (need_person(ctx, err) < 0 ||
        when_appointment(ctx->call, ctx->config, &a, err) < 0)
        return CS_EINVAL;
    json_t *body = activity_body(ctx, &a, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (phase_is(ctx, "create")) {
        rc = begin(ctx, rq, "POST", "/api/v2/activities", err);
        if (rc == 0)
            prov_request_json(rq, body);
    } else {
        /* Before every create, not only after a crash: the agent may
         * have scheduled it in Pipedrive during the call. */
        set_phase(ctx, "search");
        struct buf q;
        buf_init(&q, 4096);
        query_add_id(&q, "person_id", person_id_done(ctx));
        query_add(&q, "sort_by", "add_time");
        query_add(&q, "sort_direction", "desc");
        query_add(&q, "limit", "100");
        query_cursor(ctx, &q);
        char *path = query_path("/api/v2/activities", &q);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    }
    json_decref(body);
    return rc;
}

/* An activity we wrote (the marker in its note), or one with our subject
 * at our due date and time. */
static bool activity_is_ours(const struct prov_ctx *ctx, const json_t *act,
                             const char *subject, const struct due *d)
{
    if (json_is_true(json_object_get(act, "is_deleted")))
        return false;
    if (pd__has_marker(ctx, json_string_value(json_object_get(act, "note"))))
        return true;
    const char *s = json_string_value(json_object_get(act, "subject"));
    const char *dd = json_string_value(json_object_get(act, "due_date"));
    const char *dt = json_string_value(json_object_get(act, "due_time"));
    return s && dd && dt && strcmp(s, subject) == 0 &&
           strcmp(dd, d->date) == 0 && strncmp(dt, d->time, 5) == 0;
}

static void activity_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    parse_begin(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        pd_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const json_t *data = json_object_get(b, "data");
    long long id = 0;
    if (phase_is(ctx, "search")) {
        struct when_appt a;
        struct cs_err err;
        const json_t *hit = NULL;
        if (when_appointment(ctx->call, ctx->config, &a, &err) == 0) {
            struct due d;
            due_of(&a, &d);
            char *subject = activity_subject(ctx);
            size_t i;
            const json_t *act;
            json_array_foreach(data, i, act) {
                if (!hit && pd__json_id(json_object_get(act, "id"), &id) &&
                    activity_is_ours(ctx, act, subject, &d))
                    hit = act;
            }
            free(subject);
        }
        if (!json_is_object(b) ||
            (!json_is_array(data) && !json_is_null(data)))
            bad_body(rsp, res);
        else if (hit && pd__json_id(json_object_get(hit, "id"), &id))
            set_done(res, "activity_id", id);
        else if (!more_pages(ctx, b, res))
            next_phase(ctx, res, "create");
    } else if ((id = data_id(b)) > 0) {
        set_done(res, "activity_id", id);
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */

/* ---- Probe: callsyncctl connections test -------------------------- */

/*
 * One read: GET /api/v1/users/me ("Get current user data", the call the
 * marketplace guide names for learning who a token belongs to: the user
 * and the bound company's id, name and domain), at the company's own
 * domain as every step goes. It proves the token and the domain routing;
 * a company whose account is not open answers 402. Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    return begin(ctx, rq, "GET", "/api/v1/users/me", err);
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    parse_begin(ctx, rsp, res);
    if (!is_2xx(rsp->status)) {
        pd_fail(ctx, rsp, res);
        return;
    }
    json_t *b = rsp->body_len ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                              : NULL;
    json_t *d = json_object_get(b, "data");
    json_t *cid = json_object_get(d, "company_id");
    if (!json_is_integer(cid)) {
        prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                  "the current user answer has no company_id");
        json_decref(b);
        return;
    }
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = json_pack(
        "{s:O,s:s?,s:s?,s:O?,s:s?,s:s?}", "company_id", cid, "company_name",
        json_string_value(json_object_get(d, "company_name")),
        "company_domain",
        json_string_value(json_object_get(d, "company_domain")), "user_id",
        json_object_get(d, "id"), "user_name",
        json_string_value(json_object_get(d, "name")), "time_zone",
        json_string_value(json_object_get(d, "timezone_name")));
    json_decref(b);
}

static const struct prov_step pd_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step pd_steps[] = {
    {"person", PROV_RECONCILE_LOOKUP, NULL, person_build, person_parse},
    {"note", PROV_RECONCILE_LOOKUP, NULL, note_build, note_parse},
    {"deal", PROV_RECONCILE_LOOKUP, deal_applies, deal_build, deal_parse},
    {"activity", PROV_RECONCILE_LOOKUP, activity_applies, activity_build,
     activity_parse},
};

/* The lowest plan's API-token burst, 20 requests per 2 s, per company
 * (see the top of the file). */
const struct prov_ops prov_pipedrive = {
    .name = "pipedrive",
    .steps = pd_steps,
    .nsteps = CS_ARRAY_LEN(pd_steps),
    .rate = {20, 2000},
    .rate_scope = "company_domain",
    .probe = &pd_probe,
};
