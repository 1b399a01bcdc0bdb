/*
 * stripe.c - the Stripe provider (API v1 at api.stripe.com): find or
 * create the caller as a Customer, then, as the connection is configured,
 * a Payment Link for the service, or an Invoice (draft, invoice items,
 * finalize, send). See prov.h for the step protocol and DESIGN.md ("A
 * job's life") for checkpoints and reconciliation.
 *
 * Docs followed: docs.stripe.com/api (customers create, update, list and
 * search; payment links create and list; invoices create, list, retrieve,
 * finalize and send; invoice items create and list), /idempotency,
 * /rate-limits, /api/errors and /search (query language); the request
 * parameter names were checked against stripe/stripe-go's generated
 * parameter structs (paymentlink.go, invoiceitem.go).
 *
 * Requests carry "Authorization: Bearer <secret key>" and a pinned
 * "Stripe-Version" (config.stripe_version, else STRIPE_VERSION); bodies
 * are forms in Stripe's bracket notation (form.h). Every POST carries
 * "Idempotency-Key: <job_id>:<step>" (an invoice item adds ":<index>",
 * a customer update ":update:<hash of its body>"), so a request repeated
 * after an unknown outcome gets Stripe's saved answer instead of a second
 * object. Stripe prunes keys once they are 24 hours old and then treats a
 * repeat as new; so a step that reconciles for a job older than 23 hours
 * (STRIPE_KEY_TTL_MS, measured from first_enqueued_at, which no key can
 * predate) first looks for what it would create: the customer by our
 * metadata (search), the payment link among the account's recent links.
 * The invoice, its items and its finalization are always looked up when
 * reconciling (lists by customer and invoice are consistent and cheap);
 * sending an invoice can only rely on the key, so after 24 hours a send
 * whose answer was lost is repeated (a second e-mail of the same
 * invoice). The customer is looked up before every create, by e-mail
 * (list, consistent) and by phone (search: eventually consistent, usually
 * within a minute, hence the key for the moment right after a create).
 *
 * Connection config:
 *   payment            "payment_link" | "invoice" (absent: customer only)
 *   price_id           an existing Price for the link, or
 *   amount, currency   the amount in the currency's minor unit (an
 *                      integer, or a mapping.h mapping such as a lookup
 *                      on ai_analysis.project_type), three-letter currency
 *   product_name       template of the product's name (price_data)
 *   quantity           1
 *   payment_link_max_uses  restrictions.completed_sessions.limit
 *   invoice_items      [{"description": template, "amount": ...}], else
 *                      one item of amount with item_description
 *   collection_method  "send_invoice" (default) | "charge_automatically"
 *   days_until_due     7 (send_invoice)
 *   invoice_description  template
 *   invoice_send       true: e-mail a send_invoice invoice once finalized
 *   field_mappings     onto the customer: name, email, phone, description,
 *                      address.line1|line2|city|state|postal_code|country,
 *                      metadata.<key>
 *   phone_lookup       true; false where Search is unavailable (India)
 *   stripe_version     the Stripe-Version header
 *   account_id         the Stripe account (acct_...): connections naming
 *                      the same one share one rate limit
 *
 * Rate: 100 requests/s with a live key, 25/s with a test key (rate_of);
 * Search is limited to 20 reads/s besides, which the worker leaves to
 * Stripe's 429.
 */
#include "prov.h"
#include "buf.h"
#include "crypto.h"
#include "form.h"
#include "mapping.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STRIPE_BASE_URL "https://api.stripe.com"
#define STRIPE_VERSION "2025-09-30.clover"
/* A job older than this may have keys Stripe has pruned (24 h). */
#define STRIPE_KEY_TTL_MS (23LL * 3600 * 1000)
/* Pages of 100 payment links scanned for one whose key may be gone. */
#define STRIPE_LINK_PAGES 5
/* Pages of 100 invoices of a customer scanned when reconciling. */
#define STRIPE_INVOICE_PAGES 3
#define STRIPE_MAX_ITEMS 20
#define STRIPE_TEXT_MAX 500

/* ------------------------------------------------------------------ */
/* Reading the job and the config                                     */
/* ------------------------------------------------------------------ */

static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
    return s && *s ? s : NULL;
}

static const char *cfg_str(const struct prov_ctx *ctx, const char *key)
{
    const char *s = json_string_value(json_object_get(ctx->config, key));
    return s && *s ? s : NULL;
}

static bool cfg_bool(const struct prov_ctx *ctx, const char *key, bool dflt)
{
    const json_t *v = json_object_get(ctx->config, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *job_id(const struct prov_ctx *ctx)
{
    const char *id = json_string_value(json_object_get(ctx->job, "job_id"));
    return id ? id : "unknown";
}

static const char *customer_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "customer.customer_id");
}

static const char *invoice_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "invoice.invoice_id");
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

/* Once per step attempt (a scratch flag); false the second time. */
static bool first_time(struct prov_ctx *ctx, const char *flag)
{
    if (json_is_true(json_object_get(ctx->scratch, flag)))
        return false;
    json_object_set_new(ctx->scratch, flag, json_true());
    return true;
}

static void set_done(struct prov_result *res, json_t *value)
{
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = value;
}

static bool is_2xx(int status)
{
    return status >= 200 && status < 300;
}

/* A 2xx whose body we cannot read: the write may have happened, so the
 * step is retried, and the retry reconciles. */
static void bad_body(const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    prov_fail(res, PROV_RETRY, "bad_response",
              "HTTP %d with an unreadable body", rsp->status);
}

static const char *id_of(const json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    return id && *id ? id : NULL;
}

static bool has_our_job(const struct prov_ctx *ctx, const json_t *o)
{
    const char *v = json_string_value(
        json_object_get(json_object_get(o, "metadata"), "callsync_job_id"));
    return v && strcmp(v, job_id(ctx)) == 0;
}

/*
 * Whether Stripe may have pruned this job's idempotency keys: keys live
 * at least 24 hours, and none of ours can be older than the job. Without
 * a readable first_enqueued_at, assume they may be gone.
 */
static bool keys_may_be_gone(const struct prov_ctx *ctx)
{
    int64_t first;
    const char *fe = json_string_value(
        json_object_get(ctx->job, "first_enqueued_at"));
    if (!fe || !cs_parse_rfc3339(fe, &first))
        return true;
    return ctx->now_ms - first >= STRIPE_KEY_TTL_MS;
}

/* A string for Stripe's search query language: '...' with ' and \
 * escaped by a backslash (xmalloc'd). */
static char *search_quote(const char *s)
{
    struct buf b;
    buf_init(&b, strlen(s) * 2 + 3);
    int rc = buf_adds(&b, "'");
    for (const char *p = s; *p && !rc; p++) {
        if (*p == '\'' || *p == '\\')
            rc = buf_adds(&b, "\\");
        if (!rc)
            rc = buf_add(&b, p, 1);
    }
    if (!rc)
        rc = buf_adds(&b, "'");
    CS_ASSERT(rc == 0);
    return buf_take(&b, NULL);
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

static const char *secret_of(const struct prov_ctx *ctx)
{
    if (!ctx->creds)
        return NULL;
    const char *k = ctx->creds->api_key;
    if (!k || !*k)
        k = ctx->creds->access_token;
    return k && *k ? k : NULL;
}

/* Start a request to base + path (path already escaped) with the key and
 * the pinned version, or fail with no_credentials. */
static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, struct cs_err *err)
{
    const char *key = secret_of(ctx);
    if (!key)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no Stripe "
                          "secret key");
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url
                                                       : STRIPE_BASE_URL;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = method;
    rq->url = xasprintf("%.*s%s", (int)bl, base, path);
    char *auth = xasprintf("Bearer %s", key);
    prov_request_header(rq, "Authorization", auth);
    free(auth);
    const char *ver = cfg_str(ctx, "stripe_version");
    prov_request_header(rq, "Stripe-Version", ver ? ver : STRIPE_VERSION);
    return 0;
}

/* A POST of body (a JSON object, flattened into a form) with key. */
static int post(const struct prov_ctx *ctx, struct prov_request *rq,
                const char *path, const json_t *body, const char *key,
                struct cs_err *err)
{
    int rc = begin(ctx, rq, "POST", path, err);
    if (rc)
        return rc;
    prov_request_header(rq, "Idempotency-Key", key);
    struct form f;
    form_init(&f);
    form_add_json(&f, NULL, body);
    prov_request_form(rq, &f);
    form_release(&f);
    return 0;
}

/* The idempotency key of this step with a suffix (xmalloc'd). */
static char *key_with(const struct prov_ctx *ctx, const char *suffix)
{
    return xasprintf("%s%s%s", ctx->idempotency_key, suffix ? ":" : "",
                     suffix ? suffix : "");
}

/* "/v1/<what>/<escaped id><rest>" */
static char *path_id(const char *what, const char *id, const char *rest)
{
    char *e = prov_url_escape(id);
    char *p = xasprintf("/v1/%s/%s%s", what, e, rest ? rest : "");
    free(e);
    return p;
}

/* Append "&name=value" (or "?..." first) with value escaped. */
static void query_add(struct buf *q, const char *name, const char *value)
{
    char *v = prov_url_escape(value);
    int rc = buf_addf(q, "%c%s=%s", q->len ? '&' : '?', name, v);
    CS_ASSERT(rc == 0);
    free(v);
}

static int get_query(const struct prov_ctx *ctx, struct prov_request *rq,
                     const char *path, struct buf *q, struct cs_err *err)
{
    char *qs = buf_take(q, NULL);
    char *full = xasprintf("%s%s", path, qs ? qs : "");
    free(qs);
    int rc = begin(ctx, rq, "GET", full, err);
    free(full);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

/*
 * Classify a failed answer: the shared rules (prov_classify), refined by
 * Stripe's body {"error": {"type", "code", "message", "param"}} and its
 * Stripe-Should-Retry header. api_error (trouble on Stripe's side) is
 * retried and rate_limit_error rate-limited whatever the status; card and
 * invalid-request errors stay permanent. 409 is a concurrent request with
 * the same key, or a lock timeout: retried. A 400 idempotency_error means
 * the key was first used with other parameters (the connection's config
 * changed between attempts): permanent, saying so. Should-Retry "true"
 * makes any other answer but 401 and 429 retryable, "false" permanent.
 */
static void stripe_fail(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    const json_t *e = json_object_get(b, "error");
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *param = json_string_value(json_object_get(e, "param"));
    if (code && *code)
        snprintf(res->code, sizeof(res->code), "%s", code);
    else if (type && *type)
        snprintf(res->code, sizeof(res->code), "%s", type);
    if (msg && param && *param)
        snprintf(res->message, sizeof(res->message), "%s (param %s)", msg,
                 param);
    else if (msg)
        snprintf(res->message, sizeof(res->message), "%s", msg);
    bool idem = type && strcmp(type, "idempotency_error") == 0;
    prov_classify(rsp, res);
    const char *should = prov_response_header(rsp, "stripe-should-retry");
    if (type && strcmp(type, "rate_limit_error") == 0) {
        res->outcome = PROV_RATE_LIMITED;
    } else if (type && strcmp(type, "api_error") == 0 &&
               rsp->status != 401 && rsp->status != 429) {
        res->outcome = PROV_RETRY; /* a problem on Stripe's side */
    } else if (rsp->status == 409) {
        res->outcome = PROV_RETRY;
    } else if (idem && rsp->status == 400) {
        snprintf(res->code, sizeof(res->code), "idempotency_error");
        snprintf(res->message, sizeof(res->message),
                 "idempotency key '%.64s' was first used with other "
                 "parameters (did the connection's config change since the "
                 "first attempt?): %.60s",
                 ctx->idempotency_key ? ctx->idempotency_key : "",
                 msg ? msg : "");
        res->outcome = PROV_PERMANENT;
    }
    if (should && rsp->status != 401 && rsp->status != 429 &&
        rsp->status != 0) {
        if (strcasecmp(should, "true") == 0)
            res->outcome = PROV_RETRY;
        else if (strcasecmp(should, "false") == 0 &&
                 res->outcome == PROV_RETRY)
            res->outcome = PROV_PERMANENT;
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Templates and amounts                                              */
/* ------------------------------------------------------------------ */

/* A template (config string) rendered over prov_data_root; the default
 * when the key is absent or renders empty. NULL with err on a bad
 * template. */
static char *render_text(const struct prov_ctx *ctx, const json_t *tpl,
                         const char *field, const char *dflt,
                         struct cs_err *err)
{
    if (tpl && !json_is_string(tpl)) {
        cs_err_set(err, CS_EINVAL, field,
                   "config_error: %s must be a text template", field);
        return NULL;
    }
    char *out = NULL;
    if (tpl) {
        json_t *root = prov_data_root(ctx);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "%s", field);
            return NULL;
        }
        if (json_is_string(v) && json_string_length(v))
            out = xstrdup(json_string_value(v));
        else if (json_is_number(v) || json_is_boolean(v))
            out = map_text(v);
        json_decref(v);
    }
    if (!out)
        out = xstrdup(dflt);
    if (strlen(out) > STRIPE_TEXT_MAX)
        out[STRIPE_TEXT_MAX] = '\0';
    return out;
}

/*
 * An amount in minor units from spec: an integer, or a mapping (mapping.h)
 * whose result is one. Returns 0 with *out, or CS_EINVAL with err.
 */
static int amount_of(const struct prov_ctx *ctx, const json_t *spec,
                     const char *field, long long *out, struct cs_err *err)
{
    json_t *v = NULL;
    if (json_is_object(spec)) {
        json_t *maps = json_pack("{s:O}", "amount", spec);
        json_t *root = prov_data_root(ctx);
        json_t *res = json_object();
        int rc = map_apply(maps, root, res, err);
        json_decref(maps);
        json_decref(root);
        if (rc < 0) {
            json_decref(res);
            snprintf(err->field, sizeof(err->field), "%s", field);
            return CS_EINVAL;
        }
        v = json_incref(json_object_get(res, "amount"));
        json_decref(res);
    } else if (spec) {
        v = json_incref((json_t *)spec);
    }
    double d = 0;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else if (json_is_string(v)) {
        char *end;
        d = strtod(json_string_value(v), &end);
        if (end == json_string_value(v) || *end)
            d = -1;
    } else {
        d = -1;
    }
    json_decref(v);
    if (d < 1 || d > 99999999 || d != (double)(long long)d)
        return cs_err_set(err, CS_EINVAL, field,
                          "config_error: %s must give a whole amount in the "
                          "currency's minor unit between 1 and 99999999",
                          field);
    *out = (long long)d;
    return 0;
}

static int currency_of(const struct prov_ctx *ctx, char out[4],
                       struct cs_err *err)
{
    const char *c = cfg_str(ctx, "currency");
    if (!c || strlen(c) != 3)
        return cs_err_set(err, CS_EINVAL, "config.currency",
                          "config_error: currency must be a three-letter ISO "
                          "code such as \"usd\"");
    for (int i = 0; i < 3; i++) {
        char ch = c[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch < 'a' || ch > 'z')
            return cs_err_set(err, CS_EINVAL, "config.currency",
                              "config_error: currency must be a "
                              "three-letter ISO code such as \"usd\"");
        out[i] = ch;
    }
    out[3] = '\0';
    return 0;
}

/* metadata every object we create carries. */
static json_t *our_metadata(const struct prov_ctx *ctx)
{
    json_t *m = json_pack("{s:s}", "callsync_job_id", job_id(ctx));
    const char *call = str_at(ctx->call, "call_id");
    if (call)
        json_object_set_new(m, "callsync_call_id", json_string(call));
    return m;
}

/* ------------------------------------------------------------------ */
/* Step 1: customer                                                   */
/* ------------------------------------------------------------------ */

static const char *const customer_fields[] = {"name", "email", "phone",
                                              "description", NULL};
static const char *const address_fields[] = {
    "line1", "line2", "city", "state", "postal_code", "country", NULL};

static bool in_list(const char *s, size_t n, const char *const *list)
{
    for (; *list; list++)
        if (strlen(*list) == n && strncmp(s, *list, n) == 0)
            return true;
    return false;
}

/* Whether a mapping target is a customer field we send. */
static int check_target(const char *t, struct cs_err *err)
{
    if (!t || !*t)
        return 0; /* map_apply names what is missing */
    size_t n = strcspn(t, ".");
    if (!t[n] && in_list(t, n, customer_fields))
        return 0;
    const char *sub = t + n + 1;
    if (t[n] && n == 7 && strncmp(t, "address", 7) == 0 &&
        !strchr(sub, '.') && in_list(sub, strlen(sub), address_fields))
        return 0;
    if (t[n] && n == 8 && strncmp(t, "metadata", 8) == 0 && *sub &&
        !strchr(sub, '.') && !strpbrk(sub, "[]") && strlen(sub) <= 40)
        return 0;
    return cs_err_set(err, CS_EINVAL, "field_mappings",
                      "mapping_error: '%.60s' is not a Stripe customer field "
                      "(name, email, phone, description, address.<part>, "
                      "metadata.<key> of at most 40 characters)", t);
}

static int check_targets(const json_t *maps, struct cs_err *err)
{
    size_t i;
    const json_t *m;
    if (json_is_array(maps)) {
        json_array_foreach(maps, i, m) {
            const char *t = json_string_value(json_object_get(m, "target"));
            if (!t)
                t = json_string_value(json_object_get(m, "name"));
            if (check_target(t, err) < 0)
                return CS_EINVAL;
        }
    } else if (json_is_object(maps)) {
        const char *k;
        json_object_foreach((json_t *)maps, k, m) {
            const char *t = json_is_string(m) ? json_string_value(m) : k;
            if (check_target(t, err) < 0)
                return CS_EINVAL;
        }
    }
    return 0;
}

/* v as the text Stripe takes (a new string), or NULL. */
static json_t *as_text(const json_t *v)
{
    if (json_is_string(v))
        return json_incref((json_t *)v);
    if (json_is_integer(v))
        return json_sprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return json_sprintf("%.15g", json_real_value(v));
    if (json_is_boolean(v))
        return json_string(json_is_true(v) ? "true" : "false");
    return NULL;
}

/*
 * The configured field mappings applied over prov_data_root: an object of
 * customer fields, "address" and "metadata" sub-objects, every value text.
 * NULL with err filled for a mapping that cannot apply.
 */
static json_t *customer_mapped(const struct prov_ctx *ctx,
                               struct cs_err *err)
{
    const json_t *maps = json_object_get(ctx->config, "field_mappings");
    json_t *out = json_object();
    if (!maps || json_is_null(maps))
        return out;
    if (check_targets(maps, err) < 0) {
        json_decref(out);
        return NULL;
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
        if (json_is_null(v))
            continue;
        if (json_is_object(v) && (strcmp(k, "address") == 0 ||
                                  strcmp(k, "metadata") == 0)) {
            json_t *sub = json_object();
            const char *sk;
            json_t *sv;
            json_object_foreach(v, sk, sv) {
                json_t *t = json_is_null(sv) ? NULL : as_text(sv);
                if (!json_is_null(sv) && !t) {
                    rc = cs_err_set(err, CS_EINVAL, "field_mappings",
                                    "mapping_error: %s.%.40s takes text, "
                                    "the mapping gives an object or a list",
                                    k, sk);
                    break;
                }
                if (t && json_string_length(t) > STRIPE_TEXT_MAX) {
                    json_decref(t);
                    rc = cs_err_set(err, CS_EINVAL, "field_mappings",
                                    "mapping_error: %s.%.40s is longer "
                                    "than %d characters", k, sk,
                                    STRIPE_TEXT_MAX);
                    break;
                }
                if (t)
                    json_object_set_new(sub, sk, t);
            }
            json_object_set_new(out, k, sub);
            continue;
        }
        json_t *t = as_text(v);
        if (!t) {
            rc = cs_err_set(err, CS_EINVAL, "field_mappings",
                            "mapping_error: '%s' takes text, the mapping "
                            "gives an object or a list", k);
            break;
        }
        json_object_set_new(out, k, t);
    }
    json_decref(raw);
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* The fields the call itself gives. */
static json_t *call_customer(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    json_t *o = json_object();
    const char *name = str_at(c, "customer.name");
    const char *first = str_at(c, "customer.first_name");
    const char *last = str_at(c, "customer.last_name");
    if (name)
        json_object_set_new(o, "name", json_string(name));
    else if (first || last)
        json_object_set_new(o, "name",
                            json_sprintf("%s%s%s", first ? first : "",
                                         first && last ? " " : "",
                                         last ? last : ""));
    const char *email = str_at(c, "customer.email");
    const char *phone = str_at(c, "customer.phone");
    if (email)
        json_object_set_new(o, "email", json_string(email));
    if (phone)
        json_object_set_new(o, "phone", json_string(phone));
    json_t *addr = json_object();
    static const struct {
        const char *field, *path;
    } a[] = {{"line1", "customer.address"},
             {"city", "customer.city"},
             {"state", "customer.state"}};
    for (size_t i = 0; i < CS_ARRAY_LEN(a); i++) {
        const char *v = str_at(c, a[i].path);
        if (v)
            json_object_set_new(addr, a[i].field, json_string(v));
    }
    if (json_object_size(addr))
        json_object_set_new(o, "address", addr);
    else
        json_decref(addr);
    return o;
}

/* The create body: the call's fields, the mappings over them, and our
 * metadata (ours win over mapped keys of the same name). */
static json_t *customer_create_body(const struct prov_ctx *ctx,
                                    const json_t *mapped)
{
    json_t *b = call_customer(ctx);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)mapped, k, v) {
        json_t *cur = json_object_get(b, k);
        if (json_is_object(v) && json_is_object(cur))
            json_object_update(cur, v);
        else
            json_object_set(b, k, v);
    }
    json_t *meta = json_object_get(b, "metadata");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(b, "metadata", meta);
    }
    json_t *ours = our_metadata(ctx);
    json_object_update(meta, ours);
    json_decref(ours);
    return b;
}

static bool blank(const json_t *v)
{
    return !v || json_is_null(v) ||
           (json_is_string(v) && json_string_length(v) == 0);
}

/*
 * What to POST to a customer found as `have`: the call's name, e-mail and
 * phone only where the customer has none (a person may have corrected
 * them), its address only when the customer has none (Stripe replaces an
 * address as a whole), and every mapped field that differs: a mapped
 * address part sends the whole address with it, a mapped metadata key
 * only that key (Stripe merges metadata).
 */
static json_t *customer_patch(const struct prov_ctx *ctx,
                              const json_t *mapped, const json_t *have)
{
    json_t *patch = json_object();
    json_t *mine = call_customer(ctx);
    const char *k;
    json_t *v;
    json_object_foreach(mine, k, v) {
        if (blank(json_object_get(have, k)))
            json_object_set(patch, k, v);
    }
    json_decref(mine);
    json_object_foreach((json_t *)mapped, k, v) {
        const json_t *cur = json_object_get(have, k);
        if (strcmp(k, "address") == 0) {
            json_t *addr = json_is_object(cur) ? json_deep_copy(cur)
                                               : json_object();
            bool differs = false;
            const char *ak;
            json_t *av;
            json_object_foreach(v, ak, av) {
                if (!json_equal(json_object_get(addr, ak), av)) {
                    json_object_set(addr, ak, av);
                    differs = true;
                }
            }
            /* Stripe answers absent parts as null; send only text. */
            json_t *clean = json_object();
            json_object_foreach(addr, ak, av) {
                if (json_is_string(av))
                    json_object_set(clean, ak, av);
            }
            json_decref(addr);
            if (differs)
                json_object_set_new(patch, k, clean);
            else
                json_decref(clean);
        } else if (strcmp(k, "metadata") == 0) {
            json_t *m = json_object();
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_equal(json_object_get(cur, mk), mv))
                    json_object_set(m, mk, mv);
            }
            if (json_object_size(m))
                json_object_set_new(patch, k, m);
            else
                json_decref(m);
        } else if (!json_equal((json_t *)cur, v)) {
            json_object_set(patch, k, v);
        }
    }
    return patch;
}

/* The order in which the customer is looked for. */
static const char *const lookups[] = {"by_email", "by_phone", "by_marker",
                                      "create", NULL};

static bool lookup_applies(const struct prov_ctx *ctx, const char *phase)
{
    if (strcmp(phase, "by_email") == 0)
        return str_at(ctx->call, "customer.email") != NULL;
    if (strcmp(phase, "by_phone") == 0)
        return str_at(ctx->call, "customer.phone") != NULL &&
               cfg_bool(ctx, "phone_lookup", true);
    if (strcmp(phase, "by_marker") == 0)
        return ctx->reconcile && keys_may_be_gone(ctx);
    return true;
}

/* The first lookup phase after `after` ("" for the first) that applies. */
static const char *lookup_after(const struct prov_ctx *ctx, const char *after)
{
    size_t i = 0;
    if (*after) {
        while (lookups[i] && strcmp(lookups[i], after) != 0)
            i++;
        if (lookups[i])
            i++;
    }
    for (; lookups[i]; i++)
        if (lookup_applies(ctx, lookups[i]))
            return lookups[i];
    return "create";
}

static int customer_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    const char *email = str_at(ctx->call, "customer.email");
    const char *phone = str_at(ctx->call, "customer.phone");
    if (!email && !phone)
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    json_t *mapped = customer_mapped(ctx, err);
    if (!mapped)
        return CS_EINVAL;
    if (!*phase_of(ctx))
        set_phase(ctx, lookup_after(ctx, ""));
    int rc;
    if (phase_is(ctx, "create")) {
        json_t *body = customer_create_body(ctx, mapped);
        rc = post(ctx, rq, "/v1/customers", body, ctx->idempotency_key, err);
        json_decref(body);
    } else if (phase_is(ctx, "update")) {
        const char *id = json_string_value(
            json_object_get(ctx->scratch, "customer_id"));
        const json_t *patch = json_object_get(ctx->scratch, "patch");
        CS_ASSERT(id && patch);
        /* Each distinct update gets its own key: a key reused with other
         * parameters is refused. */
        struct form f;
        form_init(&f);
        form_add_json(&f, NULL, patch);
        unsigned char h[CS_SHA256_LEN];
        cs_sha256(form_text(&f), strlen(form_text(&f)), NULL, 0, h);
        form_release(&f);
        char hx[CS_SHA256_LEN * 2 + 1], suffix[32];
        cs_hex_encode(h, sizeof(h), hx);
        snprintf(suffix, sizeof(suffix), "update:%.12s", hx);
        char *key = key_with(ctx, suffix);
        char *path = path_id("customers", id, NULL);
        rc = post(ctx, rq, path, patch, key, err);
        free(path);
        free(key);
    } else {
        struct buf q;
        buf_init(&q, 4096);
        if (phase_is(ctx, "by_email")) {
            query_add(&q, "email", email);
            query_add(&q, "limit", "10");
            rc = get_query(ctx, rq, "/v1/customers", &q, err);
        } else {
            char *v = search_quote(phase_is(ctx, "by_phone") ? phone
                                                             : job_id(ctx));
            char *query = phase_is(ctx, "by_phone")
                              ? xasprintf("phone:%s", v)
                              : xasprintf("metadata['callsync_job_id']:%s",
                                          v);
            query_add(&q, "query", query);
            query_add(&q, "limit", "10");
            free(v);
            free(query);
            rc = get_query(ctx, rq, "/v1/customers/search", &q, err);
        }
    }
    json_decref(mapped);
    return rc;
}

/* The customer of a list or search answer to adopt: ours (our job's
 * metadata), else one with the call's phone, else the newest. */
static const json_t *pick_customer(const struct prov_ctx *ctx,
                                   const json_t *data)
{
    const char *phone = str_at(ctx->call, "customer.phone");
    const json_t *first = NULL, *same_phone = NULL;
    size_t i;
    const json_t *c;
    json_array_foreach(data, i, c) {
        if (!id_of(c) || json_is_true(json_object_get(c, "deleted")))
            continue;
        if (has_our_job(ctx, c))
            return c;
        const char *p = json_string_value(json_object_get(c, "phone"));
        if (!same_phone && phone && p && strcmp(p, phone) == 0)
            same_phone = c;
        if (!first)
            first = c;
    }
    return same_phone ? same_phone : first;
}

static void customer_found(struct prov_ctx *ctx, const json_t *c,
                           struct prov_result *res)
{
    struct cs_err err;
    json_t *mapped = customer_mapped(ctx, &err);
    if (!mapped) /* build succeeded with the same input */
        mapped = json_object();
    json_t *patch = customer_patch(ctx, mapped, c);
    json_decref(mapped);
    if (json_object_size(patch) == 0) {
        json_decref(patch);
        set_done(res, json_pack("{s:s,s:s}", "customer_id", id_of(c),
                                "action", "found"));
        return;
    }
    json_object_set_new(ctx->scratch, "customer_id", json_string(id_of(c)));
    json_object_set_new(ctx->scratch, "patch", patch);
    next_phase(ctx, res, "update");
}

static void customer_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (phase_is(ctx, "update") && rsp->status == 404) {
        /* Deleted between the look-up and the update: once per attempt,
         * create it afresh; a second time is permanent. */
        if (first_time(ctx, "vanished")) {
            json_object_del(ctx->scratch, "patch");
            json_object_del(ctx->scratch, "customer_id");
            next_phase(ctx, res, "create");
        } else {
            stripe_fail(ctx, rsp, res);
        }
        return;
    }
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "create") || phase_is(ctx, "update")) {
        if (id_of(b))
            set_done(res, json_pack("{s:s,s:s}", "customer_id", id_of(b),
                                    "action",
                                    phase_is(ctx, "create") ? "created"
                                                            : "updated"));
        else
            bad_body(rsp, res);
    } else {
        const json_t *data = json_object_get(b, "data");
        const json_t *hit = json_is_array(data) ? pick_customer(ctx, data)
                                                : NULL;
        if (!json_is_array(data))
            bad_body(rsp, res);
        else if (hit)
            customer_found(ctx, hit, res);
        else
            next_phase(ctx, res, lookup_after(ctx, phase_of(ctx)));
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 2: payment link                                               */
/* ------------------------------------------------------------------ */

static bool payment_is(const struct prov_ctx *ctx, const char *what)
{
    const char *p = cfg_str(ctx, "payment");
    return p && strcmp(p, what) == 0;
}

static bool link_applies(const struct prov_ctx *ctx)
{
    return payment_is(ctx, "payment_link");
}

static int quantity_of(const struct prov_ctx *ctx, long long *q,
                       struct cs_err *err)
{
    const json_t *v = json_object_get(ctx->config, "quantity");
    *q = 1;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > 999)
        return cs_err_set(err, CS_EINVAL, "config.quantity",
                          "config_error: quantity must be an integer from 1 "
                          "to 999");
    *q = json_integer_value(v);
    return 0;
}

static char *default_product(const struct prov_ctx *ctx)
{
    const char *s = str_at(ctx->call, "appointment.service_type");
    if (!s)
        s = str_at(ctx->call, "appointment.title");
    return xstrdup(s ? s : "Service");
}

/* The payment link's body, or NULL with err. */
static json_t *link_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    long long qty;
    if (quantity_of(ctx, &qty, err) < 0)
        return NULL;
    json_t *item = json_pack("{s:I}", "quantity", (json_int_t)qty);
    const char *price = cfg_str(ctx, "price_id");
    json_t *meta = our_metadata(ctx);
    const char *cus = customer_done(ctx);
    if (cus)
        json_object_set_new(meta, "callsync_customer_id", json_string(cus));
    json_t *body = json_object();
    if (price) {
        json_object_set_new(item, "price", json_string(price));
    } else {
        long long amount;
        char cur[4];
        const json_t *spec = json_object_get(ctx->config, "amount");
        if (!spec) {
            cs_err_set(err, CS_EINVAL, "config.price_id",
                       "config_error: a payment link needs price_id, or "
                       "amount and currency");
            goto out_fail;
        }
        if (amount_of(ctx, spec, "config.amount", &amount, err) < 0 ||
            currency_of(ctx, cur, err) < 0)
            goto out_fail;
        char *dflt = default_product(ctx);
        char *name = render_text(ctx,
                                 json_object_get(ctx->config, "product_name"),
                                 "config.product_name", dflt, err);
        free(dflt);
        if (!name)
            goto out_fail;
        json_object_set_new(
            item, "price_data",
            json_pack("{s:s,s:I,s:{s:s}}", "currency", cur, "unit_amount",
                      (json_int_t)amount, "product_data", "name", name));
        free(name);
        /* One-time prices only: the payment's metadata points back too. */
        json_object_set_new(body, "payment_intent_data",
                            json_pack("{s:O}", "metadata", meta));
    }
    json_object_set_new(body, "line_items", json_pack("[o]", item));
    json_object_set_new(body, "metadata", meta);
    const json_t *uses = json_object_get(ctx->config,
                                         "payment_link_max_uses");
    if (uses) {
        if (!json_is_integer(uses) || json_integer_value(uses) < 1) {
            json_decref(body);
            cs_err_set(err, CS_EINVAL, "config.payment_link_max_uses",
                       "config_error: payment_link_max_uses must be a "
                       "positive integer");
            return NULL;
        }
        json_object_set_new(body, "restrictions",
                            json_pack("{s:{s:O}}", "completed_sessions",
                                      "limit", uses));
    }
    return body;
out_fail:
    json_decref(item);
    json_decref(meta);
    json_decref(body);
    return NULL;
}

static int link_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    /* The body is checked before anything is sent, scan or not. */
    json_t *body = link_body(ctx, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (!*phase_of(ctx))
        set_phase(ctx, ctx->reconcile && keys_may_be_gone(ctx) ? "scan"
                                                               : "create");
    if (phase_is(ctx, "scan")) {
        /* The key may be gone: look among the account's links (newest
         * first; payment links have no search) for ours. */
        struct buf q;
        buf_init(&q, 1024);
        query_add(&q, "limit", "100");
        const char *after = json_string_value(
            json_object_get(ctx->scratch, "after"));
        if (after)
            query_add(&q, "starting_after", after);
        rc = get_query(ctx, rq, "/v1/payment_links", &q, err);
    } else {
        rc = post(ctx, rq, "/v1/payment_links", body, ctx->idempotency_key,
                  err);
    }
    json_decref(body);
    return rc;
}

static json_t *link_result(const json_t *l)
{
    json_t *v = json_pack("{s:s}", "payment_link_id", id_of(l));
    const char *url = json_string_value(json_object_get(l, "url"));
    if (url)
        json_object_set_new(v, "url", json_string(url));
    return v;
}

static void link_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "scan")) {
        const json_t *data = json_object_get(b, "data");
        const json_t *hit = NULL, *last = NULL;
        size_t i;
        const json_t *l;
        json_array_foreach(data, i, l) {
            if (!hit && id_of(l) && has_our_job(ctx, l))
                hit = l;
            last = l;
        }
        json_int_t pages = json_integer_value(
                               json_object_get(ctx->scratch, "pages")) + 1;
        json_object_set_new(ctx->scratch, "pages", json_integer(pages));
        if (!json_is_array(data)) {
            bad_body(rsp, res);
        } else if (hit) {
            set_done(res, link_result(hit));
        } else if (json_is_true(json_object_get(b, "has_more")) && last &&
                   id_of(last) && pages < STRIPE_LINK_PAGES) {
            json_object_set_new(ctx->scratch, "after",
                                json_string(id_of(last)));
            next_phase(ctx, res, "scan");
        } else {
            next_phase(ctx, res, "create");
        }
    } else if (id_of(b)) {
        set_done(res, link_result(b));
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 3: invoice                                                    */
/* ------------------------------------------------------------------ */

static bool invoice_applies(const struct prov_ctx *ctx)
{
    return payment_is(ctx, "invoice");
}

static const char *collection_of(const struct prov_ctx *ctx)
{
    const char *c = cfg_str(ctx, "collection_method");
    return c ? c : "send_invoice";
}

static bool send_applies(const struct prov_ctx *ctx)
{
    return invoice_applies(ctx) &&
           strcmp(collection_of(ctx), "send_invoice") == 0 &&
           cfg_bool(ctx, "invoice_send", true);
}

static int need_customer(const struct prov_ctx *ctx, struct cs_err *err)
{
    if (!customer_done(ctx))
        return cs_err_set(err, CS_EINVAL, "customer",
                          "no_customer: the customer step has no "
                          "customer_id");
    return 0;
}

static int need_invoice(const struct prov_ctx *ctx, struct cs_err *err)
{
    if (!invoice_done(ctx))
        return cs_err_set(err, CS_EINVAL, "invoice",
                          "no_invoice: the invoice step has no invoice_id");
    return 0;
}

static json_t *invoice_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    const char *method = collection_of(ctx);
    if (strcmp(method, "send_invoice") != 0 &&
        strcmp(method, "charge_automatically") != 0) {
        cs_err_set(err, CS_EINVAL, "config.collection_method",
                   "config_error: collection_method must be send_invoice or "
                   "charge_automatically");
        return NULL;
    }
    char cur[4];
    if (currency_of(ctx, cur, err) < 0)
        return NULL;
    const char *call = str_at(ctx->call, "call_id");
    char *dflt = xasprintf("Call %s", call ? call : job_id(ctx));
    char *desc = render_text(ctx,
                             json_object_get(ctx->config,
                                             "invoice_description"),
                             "config.invoice_description", dflt, err);
    free(dflt);
    if (!desc)
        return NULL;
    /* Drafts stay drafts until the finalize step (auto_advance false),
     * and take only the items we attach (pending items stay pending). */
    json_t *b = json_pack("{s:s,s:s,s:s,s:b,s:s,s:s,s:o}", "customer",
                          customer_done(ctx), "collection_method", method,
                          "currency", cur, "auto_advance", 0,
                          "pending_invoice_items_behavior", "exclude",
                          "description", desc, "metadata",
                          our_metadata(ctx));
    free(desc);
    if (strcmp(method, "send_invoice") == 0) {
        const json_t *d = json_object_get(ctx->config, "days_until_due");
        if (d && (!json_is_integer(d) || json_integer_value(d) < 0 ||
                  json_integer_value(d) > 3650)) {
            json_decref(b);
            cs_err_set(err, CS_EINVAL, "config.days_until_due",
                       "config_error: days_until_due must be an integer "
                       "from 0 to 3650");
            return NULL;
        }
        json_object_set_new(b, "days_until_due",
                            json_integer(d ? json_integer_value(d) : 7));
    }
    return b;
}

static int invoice_build(struct prov_ctx *ctx, struct prov_request *rq,
                         struct cs_err *err)
{
    if (need_customer(ctx, err) < 0)
        return CS_EINVAL;
    json_t *body = invoice_body(ctx, err);
    if (!body)
        return CS_EINVAL;
    if (!*phase_of(ctx))
        set_phase(ctx, ctx->reconcile ? "list" : "create");
    int rc;
    if (phase_is(ctx, "list")) {
        /* Did an attempt before create it? The customer's invoices are a
         * consistent list; ours carries our job in its metadata. */
        struct buf q;
        buf_init(&q, 1024);
        query_add(&q, "customer", customer_done(ctx));
        query_add(&q, "limit", "100");
        const char *after = json_string_value(
            json_object_get(ctx->scratch, "after"));
        if (after)
            query_add(&q, "starting_after", after);
        rc = get_query(ctx, rq, "/v1/invoices", &q, err);
    } else {
        rc = post(ctx, rq, "/v1/invoices", body, ctx->idempotency_key, err);
    }
    json_decref(body);
    return rc;
}

static void invoice_parse(struct prov_ctx *ctx,
                          const struct prov_response *rsp,
                          struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "list")) {
        const json_t *data = json_object_get(b, "data");
        const json_t *hit = NULL, *last = NULL;
        size_t i;
        const json_t *inv;
        json_array_foreach(data, i, inv) {
            if (!hit && id_of(inv) && has_our_job(ctx, inv))
                hit = inv;
            last = inv;
        }
        json_int_t pages = json_integer_value(
                               json_object_get(ctx->scratch, "pages")) + 1;
        json_object_set_new(ctx->scratch, "pages", json_integer(pages));
        if (!json_is_array(data)) {
            bad_body(rsp, res);
        } else if (hit) {
            set_done(res, json_pack("{s:s}", "invoice_id", id_of(hit)));
        } else if (json_is_true(json_object_get(b, "has_more")) && last &&
                   id_of(last) && pages < STRIPE_INVOICE_PAGES) {
            json_object_set_new(ctx->scratch, "after",
                                json_string(id_of(last)));
            next_phase(ctx, res, "list");
        } else {
            next_phase(ctx, res, "create");
        }
    } else if (id_of(b)) {
        set_done(res, json_pack("{s:s}", "invoice_id", id_of(b)));
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 4: invoice items                                              */
/* ------------------------------------------------------------------ */

/*
 * The items as [{"description", "amount"}], rendered and checked, or
 * NULL with err: config.invoice_items, else one item of config.amount
 * described by item_description (or product_name).
 */
static json_t *items_of(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *list = json_object_get(ctx->config, "invoice_items");
    json_t *out = json_array();
    if (list) {
        if (!json_is_array(list) || json_array_size(list) == 0 ||
            json_array_size(list) > STRIPE_MAX_ITEMS) {
            cs_err_set(err, CS_EINVAL, "config.invoice_items",
                       "config_error: invoice_items must be a list of 1 to "
                       "%d items", STRIPE_MAX_ITEMS);
            json_decref(out);
            return NULL;
        }
    } else if (!json_object_get(ctx->config, "amount")) {
        cs_err_set(err, CS_EINVAL, "config.invoice_items",
                   "config_error: an invoice needs invoice_items, or amount "
                   "and currency");
        json_decref(out);
        return NULL;
    }
    size_t n = list ? json_array_size(list) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *it = list ? json_array_get(list, i) : ctx->config;
        char field[48];
        snprintf(field, sizeof(field), list ? "config.invoice_items[%zu]"
                                            : "config", i);
        if (!json_is_object(it)) {
            cs_err_set(err, CS_EINVAL, field,
                       "config_error: each invoice item is an object with a "
                       "description and an amount");
            json_decref(out);
            return NULL;
        }
        long long amount;
        char afield[64];
        snprintf(afield, sizeof(afield), "%s.amount", field);
        if (amount_of(ctx, json_object_get(it, "amount"), afield, &amount,
                      err) < 0) {
            json_decref(out);
            return NULL;
        }
        const json_t *tpl = json_object_get(it, list ? "description"
                                                     : "item_description");
        if (!list && !tpl)
            tpl = json_object_get(ctx->config, "product_name");
        char *dflt = default_product(ctx);
        char *desc = render_text(ctx, tpl, field, dflt, err);
        free(dflt);
        if (!desc) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_pack("{s:s,s:I}", "description",
                                             desc, "amount",
                                             (json_int_t)amount));
        free(desc);
    }
    return out;
}

/* The index of the next item to create, or -1 when all are there. */
static int next_item(const struct prov_ctx *ctx, size_t n)
{
    const json_t *have = json_object_get(ctx->scratch, "have");
    for (size_t i = 0; i < n; i++) {
        char k[24];
        snprintf(k, sizeof(k), "%zu", i);
        if (!json_object_get(have, k))
            return (int)i;
    }
    return -1;
}

static int items_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    char cur[4];
    if (need_customer(ctx, err) < 0 || need_invoice(ctx, err) < 0 ||
        currency_of(ctx, cur, err) < 0)
        return CS_EINVAL;
    json_t *items = items_of(ctx, err);
    if (!items)
        return CS_EINVAL;
    if (!json_object_get(ctx->scratch, "have"))
        json_object_set_new(ctx->scratch, "have", json_object());
    if (!*phase_of(ctx))
        set_phase(ctx, ctx->reconcile ? "list" : "create");
    int rc;
    if (phase_is(ctx, "list")) {
        /* Which of our items did an attempt before attach already? */
        struct buf q;
        buf_init(&q, 1024);
        query_add(&q, "invoice", invoice_done(ctx));
        query_add(&q, "limit", "100");
        rc = get_query(ctx, rq, "/v1/invoiceitems", &q, err);
    } else {
        int i = next_item(ctx, json_array_size(items));
        CS_ASSERT(i >= 0);
        json_object_set_new(ctx->scratch, "item", json_integer(i));
        const json_t *it = json_array_get(items, (size_t)i);
        json_t *meta = our_metadata(ctx);
        json_object_set_new(meta, "callsync_item", json_sprintf("%d", i));
        json_t *body = json_pack(
            "{s:s,s:s,s:O,s:s,s:O,s:o}", "customer", customer_done(ctx),
            "invoice", invoice_done(ctx), "amount",
            json_object_get(it, "amount"), "currency", cur, "description",
            json_object_get(it, "description"), "metadata", meta);
        char idx[16];
        snprintf(idx, sizeof(idx), "%d", i);
        char *key = key_with(ctx, idx);
        rc = post(ctx, rq, "/v1/invoiceitems", body, key, err);
        free(key);
        json_decref(body);
    }
    json_decref(items);
    return rc;
}

static void items_done_or_next(struct prov_ctx *ctx, struct prov_result *res)
{
    struct cs_err err;
    json_t *items = items_of(ctx, &err);
    size_t n = items ? json_array_size(items) : 0;
    json_decref(items);
    if (next_item(ctx, n) >= 0) {
        next_phase(ctx, res, "create");
        return;
    }
    json_t *ids = json_array();
    const json_t *have = json_object_get(ctx->scratch, "have");
    for (size_t i = 0; i < n; i++) {
        char k[24];
        snprintf(k, sizeof(k), "%zu", i);
        json_array_append(ids, json_object_get(have, k));
    }
    set_done(res, json_pack("{s:o}", "invoice_item_ids", ids));
}

static void items_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    json_t *have = json_object_get(ctx->scratch, "have");
    if (phase_is(ctx, "list")) {
        const json_t *data = json_object_get(b, "data");
        size_t i;
        const json_t *it;
        json_array_foreach(data, i, it) {
            const char *idx = json_string_value(json_object_get(
                json_object_get(it, "metadata"), "callsync_item"));
            if (id_of(it) && idx && has_our_job(ctx, it))
                json_object_set_new(have, idx, json_string(id_of(it)));
        }
        if (json_is_array(data))
            items_done_or_next(ctx, res);
        else
            bad_body(rsp, res);
    } else if (id_of(b)) {
        char k[24];
        snprintf(k, sizeof(k), "%lld",
                 (long long)json_integer_value(
                     json_object_get(ctx->scratch, "item")));
        json_object_set_new(have, k, json_string(id_of(b)));
        items_done_or_next(ctx, res);
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 5: finalize, step 6: send                                     */
/* ------------------------------------------------------------------ */

static json_t *invoice_result(const json_t *inv)
{
    json_t *v = json_pack("{s:s}", "invoice_id", id_of(inv));
    static const char *const keys[] = {"status", "number",
                                       "hosted_invoice_url"};
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        const char *s = json_string_value(json_object_get(inv, keys[i]));
        if (s)
            json_object_set_new(v, keys[i], json_string(s));
    }
    return v;
}

static int finalize_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    if (need_invoice(ctx, err) < 0)
        return CS_EINVAL;
    if (!*phase_of(ctx))
        set_phase(ctx, ctx->reconcile ? "check" : "finalize");
    int rc;
    if (phase_is(ctx, "check")) {
        char *path = path_id("invoices", invoice_done(ctx), NULL);
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    } else {
        /* charge_automatically: Stripe collects (auto_advance true);
         * send_invoice: the send step e-mails it, once. */
        bool auto_advance = strcmp(collection_of(ctx),
                                   "charge_automatically") == 0;
        json_t *body = json_pack("{s:b}", "auto_advance", auto_advance);
        char *path = path_id("invoices", invoice_done(ctx), "/finalize");
        rc = post(ctx, rq, path, body, ctx->idempotency_key, err);
        free(path);
        json_decref(body);
    }
    return rc;
}

static void finalize_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (phase_is(ctx, "finalize") && rsp->status == 400 &&
        first_time(ctx, "recheck")) {
        /* Finalized meanwhile (the invoice is no draft any more): look. */
        next_phase(ctx, res, "check");
        return;
    }
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const char *status = json_string_value(json_object_get(b, "status"));
    if (!id_of(b) || !status)
        bad_body(rsp, res);
    else if (phase_is(ctx, "check") && strcmp(status, "draft") == 0)
        next_phase(ctx, res, "finalize");
    else
        set_done(res, invoice_result(b));
    json_decref(b);
}

static int send_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    if (need_invoice(ctx, err) < 0)
        return CS_EINVAL;
    json_t *body = json_object();
    char *path = path_id("invoices", invoice_done(ctx), "/send");
    int rc = post(ctx, rq, path, body, ctx->idempotency_key, err);
    free(path);
    json_decref(body);
    return rc;
}

static void send_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (id_of(b))
        set_done(res, invoice_result(b));
    else
        bad_body(rsp, res);
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Probe: callsyncctl connections test                                */
/* ------------------------------------------------------------------ */

/*
 * Two reads (docs.stripe.com/api/accounts/retrieve, /api/customers/list):
 * GET /v1/account names the account the key opens (the id that
 * config.account_id should hold, its display name, country and default
 * currency), then GET /v1/customers?limit=1 proves the key may read
 * customers, which the customer step needs first (a restricted key
 * without it answers 403). Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    bool second = json_object_get(ctx->scratch, "account_id") != NULL;
    return begin(ctx, rq, "GET", second ? "/v1/customers?limit=1"
                                        : "/v1/account",
                 err);
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    if (!is_2xx(rsp->status)) {
        stripe_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (!json_object_get(ctx->scratch, "account_id")) {
        const char *id = id_of(b);
        if (!id) {
            prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                      "the account answer has no id");
            json_decref(b);
            return;
        }
        const char *k = secret_of(ctx);
        const char *name = str_at(b, "settings.dashboard.display_name");
        if (!name)
            name = str_at(b, "business_profile.name");
        json_t *v = json_pack(
            "{s:s,s:s?,s:s?,s:s?,s:b}", "account_id", id, "name", name,
            "country", json_string_value(json_object_get(b, "country")),
            "default_currency",
            json_string_value(json_object_get(b, "default_currency")),
            "livemode", k && strstr(k, "_live_") != NULL);
        json_object_update(ctx->scratch, v);
        json_decref(v);
        res->outcome = PROV_NEXT;
        json_decref(b);
        return;
    }
    if (!json_is_array(json_object_get(b, "data"))) {
        prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                  "the customer list has no data");
        json_decref(b);
        return;
    }
    json_t *v = json_deep_copy(ctx->scratch);
    json_object_set_new(v, "customers_readable", json_true());
    const char *want = cfg_str(ctx, "account_id");
    const char *got = json_string_value(json_object_get(v, "account_id"));
    if (want && got && strcmp(want, got) != 0)
        json_object_set_new(v, "configured_account_id", json_string(want));
    set_done(res, v);
    json_decref(b);
}

static const struct prov_step stripe_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

/* ------------------------------------------------------------------ */

/* Live keys: 100 requests/s; test keys: 25/s (docs.stripe.com/rate-limits,
 * per account, reads and writes each). */
static bool stripe_rate_of(const struct prov_creds *creds,
                           const json_t *config, struct prov_rate *out)
{
    CS_UNUSED(config);
    const char *k = creds ? creds->api_key : NULL;
    if (!k || !*k)
        k = creds ? creds->access_token : NULL;
    if (!k)
        return false;
    if (strncmp(k, "sk_live_", 8) == 0 || strncmp(k, "rk_live_", 8) == 0) {
        *out = (struct prov_rate){100, 1000};
        return true;
    }
    if (strncmp(k, "sk_test_", 8) == 0 || strncmp(k, "rk_test_", 8) == 0) {
        *out = (struct prov_rate){25, 1000};
        return true;
    }
    return false;
}

static const struct prov_step stripe_steps[] = {
    {"customer", PROV_RECONCILE_LOOKUP, NULL, customer_build,
     customer_parse},
    {"payment_link", PROV_RECONCILE_KEY, link_applies, link_build,
     link_parse},
    {"invoice", PROV_RECONCILE_KEY, invoice_applies, invoice_build,
     invoice_parse},
    {"invoice_items", PROV_RECONCILE_KEY, invoice_applies, items_build,
     items_parse},
    {"finalize", PROV_RECONCILE_KEY, invoice_applies, finalize_build,
     finalize_parse},
    {"send", PROV_RECONCILE_KEY, send_applies, send_build, send_parse},
};

/* Test-mode rate by default (the lower one); stripe_rate_of raises it for
 * live keys. */
const struct prov_ops prov_stripe = {
    .name = "stripe",
    .steps = stripe_steps,
    .nsteps = CS_ARRAY_LEN(stripe_steps),
    .rate = {25, 1000},
    .rate_scope = "account_id",
    .probe = &stripe_probe,
    .rate_of = stripe_rate_of,
};
