/*
 * zoho.c - the Zoho CRM provider (REST API v8): find the caller's lead or
 * contact (config.module) and update it or upsert it, then write the call
 * note on it. See prov.h for the step protocol and DESIGN.md ("A job's
 * life") for checkpoints and reconciliation.
 *
 * Docs followed: zoho.com/crm/developer/docs/api/v8 (Upsert Records,
 * Search Records, Update Records, Notes and related records, API Limits,
 * Multi DC Support, OAuth), the official SDKs' request parameters
 * (zoho/zohocrm-*-sdk: SearchRecordsParam criteria, email, phone, word,
 * page, per_page), and shared/providers.md section 6. Facts marked [U]
 * there were checked against these where they could be; the error codes
 * without a documented HTTP status are classified by their meaning.
 *
 * Auth and host. Every request carries "Authorization: Zoho-oauthtoken
 * <access token>". Zoho serves each data centre from its own API domain,
 * which the token endpoint returns as api_domain and callsync stores as
 * the connection's instance_url; else config.api_domain, else the data
 * centre config.dc (or config.oauth.dc, as the token refresh reads it):
 * com/us, eu, in, com.au/au, jp, com.cn/cn, ca, sa, uk. Only
 * https://www.zohoapis.<dc> is accepted, so a token never goes elsewhere.
 *
 * Steps and what a repeat after an unknown outcome does:
 *   record  search the module by email, then by phone (GET
 *           /crm/v8/{module}/search?email= | ?phone=; 204 is "none"); a
 *           record found is updated only with what it lacks plus the
 *           mapped fields that differ (PUT /crm/v8/{module}/{id}), so a
 *           name someone corrected stays. None found: upsert (POST
 *           /crm/v8/{module}/upsert, duplicate_check_fields Email and
 *           Phone), which Zoho resolves atomically: a record created
 *           meanwhile by another job, or by this step before its answer
 *           was lost, is updated, not doubled. A write refused with
 *           DUPLICATE_DATA (a unique field held by another record) adopts
 *           that record.
 *   note    POST /crm/v8/{module}/{id}/Notes with the job marker in
 *           Note_Content; a reconciling step lists the record's notes
 *           first (GET .../Notes?fields=Note_Title,Note_Content) and
 *           adopts the one with the marker.
 *
 * Limits. Zoho counts API credits per organisation over a rolling 24 h
 * (Free 5,000; Standard 50,000 + 250 per user, ...) and limits concurrent
 * calls per app and organisation (the Free edition's is the lowest);
 * there is no per-second limit. The limiter default, 5 requests per
 * second per organisation (rate_scope "zoho_org_id", else the
 * connection), keeps at most about five calls in flight at a second's
 * latency. A 429 waits for Retry-After; else, when Zoho says the credits
 * are used up, 5 minutes (they come back as the rolling window moves);
 * else 5 s (the concurrency limit frees up quickly).
 *
 * Errors. Zoho answers {"code", "details", "message", "status": "error"}
 * at the top or per record in "data". INVALID_TOKEN,
 * AUTHENTICATION_FAILURE and OAUTH_SCOPE_MISMATCH (401) park the
 * connection's jobs. INVALID_DATA, MANDATORY_NOT_FOUND, INVALID_MODULE,
 * LIMIT_REACHED (a request over a documented size or page limit),
 * NO_PERMISSION and other 4xx are dead letters with Zoho's code, message
 * and the field it names; 5xx and INTERNAL_ERROR are retried.
 *
 * Connection config:
 *   module            "Leads" (default) or "Contacts"
 *   lead_company      the Company of leads we create (Leads require one;
 *                     default the caller's name, else phone or email)
 *   lead_source       Lead_Source of records we create
 *   trigger           Zoho's trigger list for writes (workflow, approval,
 *                     blueprint, ...); absent: Zoho's default
 *   field_mappings    (mapping.h) onto the record: targets are field API
 *                     names (Last_Name, Phone, a custom field's API name)
 *   note_title        ("Call {{call_outcome}}" style template, mapping.h)
 *   zoho_org_id       the organisation (rate-limit key)
 *   api_domain, dc    see "Auth and host"
 */
#define _GNU_SOURCE /* strcasestr */
#include "prov.h"
#include "buf.h"
#include "mapping.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ZOHO_VERSION "v8"
#define ZOHO_NOTE_MAX 32000
#define ZOHO_SUMMARY_MAX 4000
#define ZOHO_TRANSCRIPT_MAX 3000
#define ZOHO_SHORT_MAX 300
#define ZOHO_URL_MAX 2000
#define ZOHO_MAX_PAGES 5

/* ------------------------------------------------------------------ */
/* Reading the call and the config                                    */
/* ------------------------------------------------------------------ */

static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(map_path(root, path));
    return s && *s ? s : NULL;
}

static const char *call_email(const struct prov_ctx *ctx)
{
    return str_at(ctx->call, "customer.email");
}

static const char *call_phone(const struct prov_ctx *ctx)
{
    return str_at(ctx->call, "customer.phone");
}

/* The configured module: Leads or Contacts, or NULL (config error). */
static const char *module_of(const struct prov_ctx *ctx)
{
    const char *m = str_at(ctx->config, "module");
    if (!m)
        return "Leads";
    if (strcasecmp(m, "Leads") == 0 || strcasecmp(m, "lead") == 0)
        return "Leads";
    if (strcasecmp(m, "Contacts") == 0 || strcasecmp(m, "contact") == 0)
        return "Contacts";
    return NULL;
}

static bool is_leads(const char *module)
{
    return strcmp(module, "Leads") == 0;
}

static const char *record_id_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "record.record_id");
}

/* Zoho ids are strings of digits. */
static bool id_ok(const char *s)
{
    return s && *s && strlen(s) <= 30 && strspn(s, "0123456789") == strlen(s);
}

static const char *id_of(const json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    return id_ok(id) ? id : NULL;
}

/* ------------------------------------------------------------------ */
/* Requests and responses                                             */
/* ------------------------------------------------------------------ */

static const struct {
    const char *dc, *url;
} api_domains[] = {
    {"com", "https://www.zohoapis.com"},
    {"us", "https://www.zohoapis.com"},
    {"eu", "https://www.zohoapis.eu"},
    {"in", "https://www.zohoapis.in"},
    {"com.au", "https://www.zohoapis.com.au"},
    {"au", "https://www.zohoapis.com.au"},
    {"jp", "https://www.zohoapis.jp"},
    {"com.cn", "https://www.zohoapis.com.cn"},
    {"cn", "https://www.zohoapis.com.cn"},
    {"ca", "https://www.zohoapis.ca"},
    {"sa", "https://www.zohoapis.sa"},
    {"uk", "https://www.zohoapis.uk"},
};

/* A known API domain (with an optional trailing slash) into out. */
static bool known_domain(const char *u, char *out, size_t n)
{
    size_t l = strlen(u);
    while (l > 0 && u[l - 1] == '/')
        l--;
    for (size_t i = 0; i < CS_ARRAY_LEN(api_domains); i++)
        if (strlen(api_domains[i].url) == l &&
            strncasecmp(api_domains[i].url, u, l) == 0) {
            snprintf(out, n, "%s", api_domains[i].url);
            return true;
        }
    return false;
}

/* The API base into *out (xmalloc'd): the sandbox or test override, the
 * connection's api_domain, config.api_domain, the data centre, or
 * www.zohoapis.com. */
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
    char url[64];
    const char *inst = ctx->creds ? ctx->creds->instance_url : NULL;
    const char *field = "instance_url";
    if (!inst || !*inst) {
        inst = str_at(ctx->config, "api_domain");
        field = "config.api_domain";
    }
    if (inst && *inst) {
        if (!known_domain(inst, url, sizeof(url)))
            return cs_err_set(err, CS_EINVAL, field,
                              "config_error: '%.60s' is not a Zoho API "
                              "domain (https://www.zohoapis.<dc>)", inst);
        *out = xstrdup(url);
        return 0;
    }
    const char *dc = str_at(ctx->config, "dc");
    if (!dc)
        dc = str_at(ctx->config, "oauth.dc");
    if (!dc) {
        *out = xstrdup("https://www.zohoapis.com");
        return 0;
    }
    for (size_t i = 0; i < CS_ARRAY_LEN(api_domains); i++)
        if (strcasecmp(api_domains[i].dc, dc) == 0) {
            *out = xstrdup(api_domains[i].url);
            return 0;
        }
    return cs_err_set(err, CS_EINVAL, "config.dc",
                      "config_error: unknown Zoho data centre '%.20s' (com, "
                      "eu, in, au, jp, cn, ca, sa, uk)", dc);
}

static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, struct cs_err *err)
{
    const struct prov_creds *c = ctx->creds;
    const char *token = c && c->access_token && *c->access_token
                            ? c->access_token
                        : c && c->api_key && *c->api_key ? c->api_key
                                                         : NULL;
    if (!token)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no access "
                          "token");
    char *base;
    if (api_base(ctx, &base, err) < 0)
        return CS_EINVAL;
    rq->method = method;
    rq->url = xasprintf("%s/crm/" ZOHO_VERSION "%s", base, path);
    free(base);
    char *auth = xasprintf("Zoho-oauthtoken %s", token);
    prov_request_header(rq, "Authorization", auth);
    free(auth);
    prov_request_header(rq, "Accept", "application/json");
    return 0;
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

static void bad_body(const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    prov_fail(res, PROV_RETRY, "bad_response",
              "HTTP %d with an unreadable body", rsp->status);
}

/* The answer's error object: the top-level one, or the first record's
 * when the top has none. NULL when the answer is no error. */
static const json_t *error_of(const json_t *b)
{
    const char *st = json_string_value(json_object_get(b, "status"));
    if (st && strcmp(st, "error") == 0)
        return b;
    const json_t *d = json_array_get(json_object_get(b, "data"), 0);
    st = json_string_value(json_object_get(d, "status"));
    return st && strcmp(st, "error") == 0 ? d : NULL;
}

static bool code_is(const json_t *e, const char *code)
{
    const char *c = json_string_value(json_object_get(e, "code"));
    return c && strcmp(c, code) == 0;
}

static void lower_code(const char *c, char out[48])
{
    size_t k = 0;
    for (; c[k] && k < 47; k++)
        out[k] = (char)tolower((unsigned char)c[k]);
    out[k] = '\0';
}

/* Zoho says the organisation's API credits are used up [U: the exact
 * code is not documented; its message names the credits]. */
static bool credits_spent(const json_t *e)
{
    const char *m = json_string_value(json_object_get(e, "message"));
    return code_is(e, "LIMIT_EXCEEDED") || code_is(e, "API_LIMIT_EXCEEDED") ||
           (m && (strcasestr(m, "credit") || strcasestr(m, "api limit")));
}

/*
 * Classify a failed answer (or a 2xx whose record failed): the shared
 * rules, refined by Zoho's error object: its code (lower case) and
 * "CODE: message (api_name)" as the message; the auth codes park, 429
 * waits (see the top of the file).
 */
static void zoho_fail(const struct prov_response *rsp,
                      struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    const json_t *e = error_of(b);
    const char *code = json_string_value(json_object_get(e, "code"));
    if (code && *code) {
        lower_code(code, res->code);
        const char *m = json_string_value(json_object_get(e, "message"));
        const json_t *det = json_object_get(e, "details");
        const char *field = json_string_value(json_object_get(det,
                                                              "api_name"));
        if (!field)
            field = json_string_value(json_object_get(det, "param"));
        snprintf(res->message, sizeof(res->message), "%s: %s%s%.60s%s",
                 code, m ? m : "", field ? " (" : "", field ? field : "",
                 field ? ")" : "");
    }
    struct prov_response as = *rsp;
    /* A record that failed inside a 2xx: classify by its code. */
    if (is_2xx(rsp->status) && e)
        as.status = code_is(e, "INTERNAL_ERROR") ? 500 : 400;
    prov_classify(&as, res);
    res->http_status = rsp->status;
    if (e && (code_is(e, "INVALID_TOKEN") ||
              code_is(e, "AUTHENTICATION_FAILURE") ||
              code_is(e, "OAUTH_SCOPE_MISMATCH")))
        res->outcome = PROV_AUTH;
    if (rsp->status == 429) {
        if (res->retry_after_ms < 0)
            res->retry_after_ms = credits_spent(e) ? 300000 : 5000;
        if (credits_spent(e))
            snprintf(res->code, sizeof(res->code), "credits_exhausted");
    } else if (e && code_is(e, "INTERNAL_ERROR")) {
        res->outcome = PROV_RETRY;
    }
    json_decref(b);
}

static void parse_begin(const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
}

static char *escape(const char *s)
{
    return prov_url_escape(s);
}

/* ------------------------------------------------------------------ */
/* Scratch phases                                                     */
/* ------------------------------------------------------------------ */

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
    json_object_del(ctx->scratch, "page");
    res->outcome = PROV_NEXT;
}

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

/* A field API name: a letter, then letters, digits or underscores. */
static bool api_name_ok(const char *s)
{
    if (!s || !isalpha((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

static int check_target(const char *t, struct cs_err *err)
{
    if (!t || !*t || api_name_ok(t))
        return 0; /* map_apply names a missing target */
    return cs_err_set(err, CS_EINVAL, "field_mappings",
                      "mapping_error: '%.40s' is not a Zoho field API name "
                      "(letters, digits and underscores, as in "
                      "Lead_Source)", t);
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
            if (check_target(json_is_string(m) ? json_string_value(m) : k,
                             err) < 0)
                return CS_EINVAL;
        }
    } else if (maps && !json_is_null(maps)) {
        return cs_err_set(err, CS_EINVAL, "field_mappings",
                          "mapping_error: field_mappings must be a list or "
                          "an object");
    }
    return 0;
}

/* The mapped fields (a new object; nulls dropped), or NULL with err. */
static json_t *mapped_fields(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *maps = json_object_get(ctx->config, "field_mappings");
    if (check_targets(maps, err) < 0)
        return NULL;
    json_t *out = json_object();
    if (!maps || json_is_null(maps))
        return out;
    json_t *root = prov_data_root(ctx);
    int rc = map_apply(maps, root, out, err);
    json_decref(root);
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(out, tmp, k, v) {
        if (json_is_null(v))
            json_object_del(out, k);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* Step 1: record                                                     */
/* ------------------------------------------------------------------ */

/* The call's own fields for the module: names, email, phone, address. */
static json_t *call_fields(const struct prov_ctx *ctx, const char *module)
{
    const json_t *c = ctx->call;
    json_t *f = json_object();
    const char *first = str_at(c, "customer.first_name");
    const char *last = str_at(c, "customer.last_name");
    const char *name = str_at(c, "customer.name");
    if (!first && !last && name) {
        const char *sp = strrchr(name, ' ');
        if (sp && sp[1]) {
            json_object_set_new(f, "First_Name",
                                json_stringn(name, (size_t)(sp - name)));
            json_object_set_new(f, "Last_Name", json_string(sp + 1));
        } else {
            json_object_set_new(f, "Last_Name", json_string(name));
        }
    } else {
        if (first)
            json_object_set_new(f, "First_Name", json_string(first));
        if (last)
            json_object_set_new(f, "Last_Name", json_string(last));
    }
    if (call_email(ctx))
        json_object_set_new(f, "Email", json_string(call_email(ctx)));
    if (call_phone(ctx))
        json_object_set_new(f, "Phone", json_string(call_phone(ctx)));
    bool leads = is_leads(module);
    static const struct {
        const char *lead, *contact, *path;
    } addr[] = {
        {"Street", "Mailing_Street", "customer.address"},
        {"City", "Mailing_City", "customer.city"},
        {"State", "Mailing_State", "customer.state"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(addr); i++) {
        const char *v = str_at(c, addr[i].path);
        if (v)
            json_object_set_new(f, leads ? addr[i].lead : addr[i].contact,
                                json_string(v));
    }
    return f;
}

/* Who the caller is, for a required field we have nothing better for. */
static const char *caller(const struct prov_ctx *ctx)
{
    const char *n = str_at(ctx->call, "customer.name");
    if (!n)
        n = call_phone(ctx);
    return n ? n : call_email(ctx);
}

/* The record the upsert writes: the call's fields, the create-only ones
 * (a Last_Name and, for leads, a Company, which Zoho requires; the lead
 * source) and the mappings over them. */
static json_t *upsert_record(const struct prov_ctx *ctx, const char *module,
                             const json_t *mapped)
{
    json_t *r = call_fields(ctx, module);
    if (!json_object_get(r, "Last_Name"))
        json_object_set_new(r, "Last_Name", json_string(caller(ctx)));
    if (is_leads(module)) {
        const char *co = str_at(ctx->config, "lead_company");
        json_object_set_new(r, "Company", json_string(co ? co : caller(ctx)));
    }
    const char *src = str_at(ctx->config, "lead_source");
    if (src)
        json_object_set_new(r, "Lead_Source", json_string(src));
    json_object_update(r, (json_t *)mapped);
    return r;
}

static bool same_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    const char *x = json_string_value(a), *y = json_string_value(b);
    if (x && y)
        return strcasecmp(x, y) == 0;
    return json_equal((json_t *)a, (json_t *)b);
}

static bool empty(const json_t *v)
{
    return !v || json_is_null(v) ||
           (json_is_string(v) && json_string_length(v) == 0);
}

/* What to PUT on a record found as `have`: the call's fields only where
 * it has none (a person may have corrected them), and every mapped field
 * that differs. */
static json_t *update_fields(const struct prov_ctx *ctx, const char *module,
                             const json_t *mapped, const json_t *have)
{
    json_t *patch = json_object();
    json_t *mine = call_fields(ctx, module);
    const char *k;
    json_t *v;
    json_object_foreach(mine, k, v) {
        if (empty(json_object_get(have, k)))
            json_object_set(patch, k, v);
    }
    json_decref(mine);
    json_object_foreach((json_t *)mapped, k, v) {
        const json_t *cur = json_object_get(have, k);
        if (!cur || !same_value(cur, v))
            json_object_set(patch, k, v);
    }
    return patch;
}

static int need_module(const struct prov_ctx *ctx, const char **module,
                       struct cs_err *err)
{
    *module = module_of(ctx);
    if (!*module)
        return cs_err_set(err, CS_EINVAL, "config.module",
                          "config_error: module '%.40s' is not Leads or "
                          "Contacts", str_at(ctx->config, "module"));
    return 0;
}

static int check_trigger(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *t = json_object_get(ctx->config, "trigger");
    if (!t)
        return 0;
    size_t i;
    const json_t *e;
    bool ok = json_is_array(t);
    json_array_foreach(t, i, e) ok &= json_is_string(e);
    if (!ok)
        return cs_err_set(err, CS_EINVAL, "config.trigger",
                          "config_error: trigger must be a list such as "
                          "[\"workflow\"]");
    return 0;
}

/* {"data": [record]} plus the configured trigger. */
static json_t *wrap(const struct prov_ctx *ctx, json_t *record)
{
    json_t *b = json_pack("{s:[o]}", "data", record);
    const json_t *t = json_object_get(ctx->config, "trigger");
    if (t)
        json_object_set(b, "trigger", (json_t *)t);
    return b;
}

static char *search_path(const char *module, const char *param,
                         const char *value)
{
    char *v = escape(value);
    char *p = xasprintf("/%s/search?%s=%s", module, param, v);
    free(v);
    return p;
}

static int record_build(struct prov_ctx *ctx, struct prov_request *rq,
                        struct cs_err *err)
{
    const char *module = NULL;
    if (!call_phone(ctx) && !call_email(ctx))
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    if (need_module(ctx, &module, err) < 0 || check_trigger(ctx, err) < 0)
        return CS_EINVAL;
    json_t *mapped = mapped_fields(ctx, err);
    if (!mapped)
        return CS_EINVAL;
    if (!*phase_of(ctx))
        set_phase(ctx, call_email(ctx) ? "search_email" : "search_phone");
    const char *id = json_string_value(json_object_get(ctx->scratch, "id"));
    int rc;
    json_t *body = NULL;
    char *path = NULL;
    if (phase_is(ctx, "upsert")) {
        path = xasprintf("/%s/upsert", module);
        rc = begin(ctx, rq, "POST", path, err);
        body = wrap(ctx, upsert_record(ctx, module, mapped));
        json_object_set_new(body, "duplicate_check_fields",
                            json_pack("[s,s]", "Email", "Phone"));
    } else if (phase_is(ctx, "fetch")) {
        path = xasprintf("/%s/%s", module, id);
        rc = begin(ctx, rq, "GET", path, err);
    } else if (phase_is(ctx, "update")) {
        path = xasprintf("/%s/%s", module, id);
        rc = begin(ctx, rq, "PUT", path, err);
        body = wrap(ctx, json_deep_copy(json_object_get(ctx->scratch,
                                                        "patch")));
    } else if (phase_is(ctx, "search_email")) {
        path = search_path(module, "email", call_email(ctx));
        rc = begin(ctx, rq, "GET", path, err);
    } else {
        set_phase(ctx, "search_phone");
        path = search_path(module, "phone", call_phone(ctx));
        rc = begin(ctx, rq, "GET", path, err);
    }
    if (rc == 0 && body)
        prov_request_json(rq, body);
    free(path);
    json_decref(body);
    json_decref(mapped);
    return rc;
}

static json_t *record_value(const char *id, const char *module)
{
    return json_pack("{s:s,s:s}", "record_id", id, "module", module);
}

static void record_found(struct prov_ctx *ctx, const char *id,
                         const json_t *have, struct prov_result *res)
{
    const char *module = module_of(ctx);
    struct cs_err err;
    /* build succeeded with the same input, so this cannot fail. */
    json_t *mapped = mapped_fields(ctx, &err);
    if (!mapped)
        mapped = json_object();
    json_t *patch = update_fields(ctx, module, mapped, have);
    json_decref(mapped);
    if (json_object_size(patch) == 0) {
        json_decref(patch);
        set_done(res, record_value(id, module));
        return;
    }
    json_object_set_new(ctx->scratch, "id", json_string(id));
    json_object_set_new(ctx->scratch, "patch", patch);
    next_phase(ctx, res, "update");
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

/* Same phone: equal digits, or one without its country code. */
static bool phone_same(const char *a, const char *b)
{
    char da[40], db[40];
    size_t na = digits_of(a, da, sizeof(da)), nb = digits_of(b, db,
                                                             sizeof(db));
    if (na < 7 || nb < 7)
        return na == nb && na > 0 && strcmp(da, db) == 0;
    return na < nb ? strcmp(db + nb - na, da) == 0
                   : strcmp(da + na - nb, db) == 0;
}

/* The first search hit that really has the call's email (any case) or
 * phone (Phone or Mobile): Zoho's search matches words, not values. */
static const json_t *search_hit(const struct prov_ctx *ctx,
                                const json_t *list)
{
    bool by_phone = phase_is(ctx, "search_phone");
    size_t i;
    const json_t *r;
    json_array_foreach(list, i, r) {
        if (!id_of(r))
            continue;
        if (!by_phone) {
            const char *e = json_string_value(json_object_get(r, "Email"));
            if (e && strcasecmp(e, call_email(ctx)) == 0)
                return r;
            continue;
        }
        static const char *const keys[] = {"Phone", "Mobile"};
        for (size_t k = 0; k < CS_ARRAY_LEN(keys); k++) {
            const char *p = json_string_value(json_object_get(r, keys[k]));
            if (p && phone_same(p, call_phone(ctx)))
                return r;
        }
    }
    return NULL;
}

/* DUPLICATE_DATA: the id of the record that holds the value, or NULL. */
static const char *duplicate_of(const json_t *e)
{
    if (!code_is(e, "DUPLICATE_DATA"))
        return NULL;
    const json_t *d = json_object_get(e, "details");
    const char *id = id_of(json_object_get(d, "duplicate_record"));
    return id ? id : id_of(d);
}

static void record_parse(struct prov_ctx *ctx,
                         const struct prov_response *rsp,
                         struct prov_result *res)
{
    parse_begin(rsp, res);
    json_t *b = prov_response_json(rsp);
    const json_t *e = error_of(b);
    const json_t *first = json_array_get(json_object_get(b, "data"), 0);
    const char *dup = duplicate_of(e);
    bool search = phase_is(ctx, "search_email") ||
                  phase_is(ctx, "search_phone");
    if (dup && (phase_is(ctx, "upsert") || phase_is(ctx, "update")) &&
        first_time(ctx, "duplicate")) {
        /* A unique field of ours belongs to another record: that is the
         * caller's record; read it and fill it in. */
        json_object_set_new(ctx->scratch, "id", json_string(dup));
        next_phase(ctx, res, "fetch");
    } else if (e || !is_2xx(rsp->status)) {
        zoho_fail(rsp, res);
    } else if (search && rsp->status == 204) {
        /* No content: nothing matched. */
        next_phase(ctx, res, phase_is(ctx, "search_email") && call_phone(ctx)
                                 ? "search_phone"
                                 : "upsert");
    } else if (search) {
        const json_t *hit = search_hit(ctx, json_object_get(b, "data"));
        if (!json_is_array(json_object_get(b, "data")))
            bad_body(rsp, res);
        else if (hit)
            record_found(ctx, id_of(hit), hit, res);
        else
            next_phase(ctx, res,
                       phase_is(ctx, "search_email") && call_phone(ctx)
                           ? "search_phone"
                           : "upsert");
    } else if (phase_is(ctx, "fetch")) {
        if (id_of(first))
            record_found(ctx, id_of(first), first, res);
        else if (rsp->status == 204 && first_time(ctx, "vanished"))
            next_phase(ctx, res, "upsert");
        else
            bad_body(rsp, res);
    } else {
        /* upsert or update: data[0].details.id */
        const char *id = id_of(json_object_get(first, "details"));
        if (id)
            set_done(res, record_value(id, module_of(ctx)));
        else
            bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 2: note                                                       */
/* ------------------------------------------------------------------ */

static void puts_(struct buf *b, const char *s)
{
    if (buf_adds(b, s) < 0)
        return;
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

static void put_line(struct buf *b, const char *label, const char *value,
                     size_t max)
{
    if (!value)
        return;
    puts_(b, label);
    puts_(b, ": ");
    size_t n = utf8_cut(value, max);
    if (buf_add(b, value, n) < 0)
        return;
    if (value[n])
        puts_(b, " [\xe2\x80\xa6]");
    puts_(b, "\n");
}

static bool has_marker(const struct prov_ctx *ctx, const char *text)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    return text && strstr(text, marker) != NULL;
}

static char *note_content(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, ZOHO_NOTE_MAX);
    put_line(&b, "Call outcome", str_at(c, "outcome"), ZOHO_SHORT_MAX);
    put_line(&b, "Direction", str_at(c, "direction"), ZOHO_SHORT_MAX);
    put_line(&b, "Summary", str_at(c, "summary"), ZOHO_SUMMARY_MAX);
    put_line(&b, "Sentiment", str_at(c, "sentiment"), ZOHO_SHORT_MAX);
    const json_t *d = map_path(c, "duration_s");
    if (json_is_number(d)) {
        long long s = (long long)json_number_value(d);
        char dur[64];
        if (s >= 60)
            snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
        else
            snprintf(dur, sizeof(dur), "%llds", s);
        put_line(&b, "Duration", dur, ZOHO_SHORT_MAX);
    }
    const char *rec = str_at(c, "recording_url");
    if (rec && strlen(rec) < ZOHO_URL_MAX)
        put_line(&b, "Recording", rec, ZOHO_URL_MAX);
    const char *tr = str_at(c, "transcript");
    if (tr) {
        size_t n = utf8_cut(tr, ZOHO_TRANSCRIPT_MAX);
        puts_(&b, "Transcript (excerpt):\n");
        if (buf_add(&b, tr, n) == 0 && tr[n])
            puts_(&b, " [\xe2\x80\xa6]");
        puts_(&b, "\n");
    }
    char marker[48];
    prov_job_marker(ctx->job, marker);
    puts_(&b, "\nSync reference: ");
    puts_(&b, marker);
    return buf_take(&b, NULL);
}

static char *note_title(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *tpl = json_object_get(ctx->config, "note_title");
    if (json_is_string(tpl)) {
        json_t *root = prov_data_root(ctx);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "config.note_title");
            return NULL;
        }
        char *s = json_is_string(v) && json_string_length(v)
                      ? xstrdup(json_string_value(v))
                      : NULL;
        json_decref(v);
        if (s)
            return s;
    }
    const char *o = str_at(ctx->call, "outcome");
    return xasprintf("Call%s%s", o ? ": " : "", o ? o : "");
}

static int need_record(const struct prov_ctx *ctx, const char **module,
                       struct cs_err *err)
{
    if (!record_id_done(ctx))
        return cs_err_set(err, CS_EINVAL, "record",
                          "no_record: the record step has no record_id");
    *module = str_at(ctx->done, "record.module");
    if (!*module && need_module(ctx, module, err) < 0)
        return CS_EINVAL;
    return 0;
}

static int note_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    const char *module = NULL;
    if (need_record(ctx, &module, err) < 0)
        return CS_EINVAL;
    char *title = note_title(ctx, err);
    if (!title)
        return CS_EINVAL;
    int rc;
    char *path;
    if (ctx->reconcile && !phase_is(ctx, "create")) {
        set_phase(ctx, "search");
        long long page = json_integer_value(json_object_get(ctx->scratch,
                                                            "page"));
        path = xasprintf("/%s/%s/Notes?fields=Note_Title%%2CNote_Content"
                         "&per_page=200&page=%lld", module,
                         record_id_done(ctx), page > 0 ? page : 1);
        rc = begin(ctx, rq, "GET", path, err);
    } else {
        set_phase(ctx, "create");
        path = xasprintf("/%s/%s/Notes", module, record_id_done(ctx));
        rc = begin(ctx, rq, "POST", path, err);
        if (rc == 0) {
            char *text = note_content(ctx);
            json_t *body = json_pack("{s:[{s:s,s:s}]}", "data", "Note_Title",
                                     title, "Note_Content",
                                     text ? text : "");
            free(text);
            prov_request_json(rq, body);
            json_decref(body);
        }
    }
    free(title);
    free(path);
    return rc;
}

static void note_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    parse_begin(rsp, res);
    json_t *b = prov_response_json(rsp);
    const json_t *e = error_of(b);
    const json_t *data = json_object_get(b, "data");
    if (e || !is_2xx(rsp->status)) {
        zoho_fail(rsp, res);
    } else if (phase_is(ctx, "search") && rsp->status == 204) {
        next_phase(ctx, res, "create");
    } else if (phase_is(ctx, "search")) {
        const char *hit = NULL;
        size_t i;
        const json_t *n;
        json_array_foreach(data, i, n) {
            if (!hit && id_of(n) &&
                has_marker(ctx, json_string_value(json_object_get(
                                    n, "Note_Content"))))
                hit = id_of(n);
        }
        long long page = json_integer_value(json_object_get(ctx->scratch,
                                                            "page"));
        if (page < 1)
            page = 1;
        if (!json_is_array(data)) {
            bad_body(rsp, res);
        } else if (hit) {
            set_done(res, json_pack("{s:s}", "note_id", hit));
        } else if (json_is_true(json_object_get(
                       json_object_get(b, "info"), "more_records")) &&
                   page < ZOHO_MAX_PAGES) {
            json_object_set_new(ctx->scratch, "page",
                                json_integer(page + 1));
            res->outcome = PROV_NEXT;
        } else {
            next_phase(ctx, res, "create");
        }
    } else {
        const char *id = id_of(json_object_get(json_array_get(data, 0),
                                               "details"));
        if (id)
            set_done(res, json_pack("{s:s}", "note_id", id));
        else
            bad_body(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Probe: callsyncctl connections test                                */
/* ------------------------------------------------------------------ */

/*
 * Two reads at the connection's API domain. First the configured module's
 * records, GET /crm/v8/{module}?fields=Last_Name&per_page=1 (Get
 * Records; fields is mandatory): the token is valid and holds the
 * module's READ scope, which every search of the record step needs.
 * Then the organisation, GET /crm/v8/org (Get Organization Data: its id,
 * company name and time zone) for the operator to see which org the
 * token opens; that one needs ZohoCRM.org.READ, which a sync does not,
 * so a token without it (OAUTH_SCOPE_MISMATCH) still passes, saying the
 * org was not readable. Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    const char *module;
    if (need_module(ctx, &module, err))
        return CS_EINVAL;
    if (json_object_get(ctx->scratch, "module"))
        return begin(ctx, rq, "GET", "/org", err);
    char *path = xasprintf("/%s?fields=Last_Name&per_page=1", module);
    int rc = begin(ctx, rq, "GET", path, err);
    free(path);
    return rc;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    parse_begin(rsp, res);
    bool org = json_object_get(ctx->scratch, "module") != NULL;
    json_t *b = prov_response_json(rsp);
    if (!org) {
        /* 204: the module is readable and empty. */
        if (!is_2xx(rsp->status) ||
            (rsp->status != 204 && !json_is_array(json_object_get(b,
                                                                  "data")))) {
            json_decref(b);
            if (is_2xx(rsp->status))
                prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                          "the records answer has no data");
            else
                zoho_fail(rsp, res);
            return;
        }
        json_object_set_new(ctx->scratch, "module",
                            json_string(module_of(ctx)));
        json_object_set_new(ctx->scratch, "records_readable", json_true());
        res->outcome = PROV_NEXT;
        json_decref(b);
        return;
    }
    const json_t *e = error_of(b);
    if (!is_2xx(rsp->status) && e && code_is(e, "OAUTH_SCOPE_MISMATCH")) {
        json_object_set_new(ctx->scratch, "org",
                            json_string("not readable: the token lacks "
                                        "ZohoCRM.org.READ"));
    } else if (!is_2xx(rsp->status)) {
        json_decref(b);
        zoho_fail(rsp, res);
        return;
    } else {
        const json_t *o = json_array_get(json_object_get(b, "org"), 0);
        const json_t *id = json_object_get(o, "id");
        if (!json_is_string(id)) {
            prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                      "the organization answer has no org[0].id");
            json_decref(b);
            return;
        }
        json_t *v = json_pack(
            "{s:O,s:s?,s:s?,s:s?,s:s?}", "org_id", id, "zgid",
            json_string_value(json_object_get(o, "zgid")), "company_name",
            json_string_value(json_object_get(o, "company_name")),
            "time_zone", json_string_value(json_object_get(o, "time_zone")),
            "currency", json_string_value(json_object_get(o, "iso_code")));
        json_object_update(ctx->scratch, v);
        json_decref(v);
    }
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = json_deep_copy(ctx->scratch);
    json_decref(b);
}

static const struct prov_step zoho_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step zoho_steps[] = {
    {"record", PROV_RECONCILE_LOOKUP, NULL, record_build, record_parse},
    {"note", PROV_RECONCILE_LOOKUP, NULL, note_build, note_parse},
};

/* 5 requests per second per organisation: at a second's latency, at most
 * about five calls in flight (see the top of the file). */
const struct prov_ops prov_zoho = {
    .name = "zoho",
    .steps = zoho_steps,
    .nsteps = CS_ARRAY_LEN(zoho_steps),
    .rate = {5, 1000},
    .rate_scope = "zoho_org_id",
    .probe = &zoho_probe,
};
