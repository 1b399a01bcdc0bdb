/*
 * sendgrid.c - the SendGrid provider: an appointment confirmation e-mail
 * through the v3 Mail Send API (POST /v3/mail/send at api.sendgrid.com,
 * or api.eu.sendgrid.com for EU subusers). One step, "email", applies
 * when the customer has an e-mail address and the call booked an
 * appointment (or config.send_without_appointment is true).
 *
 * Docs followed: twilio/sendgrid-oai spec/json/tsg_mail_v3.json (the
 * request body: personalizations, from, reply_to, subject, content,
 * template_id with dynamic_template_data, headers, categories,
 * custom_args; 202 Accepted without a body), the Mail Send errors page
 * (twilio.com/docs/sendgrid/api-reference/mail-send/errors: 400s with
 * {"errors": [{"message", "field", "help"}]}), the v3 rate limit page
 * (X-RateLimit-Limit, -Remaining, -Reset as a Unix time, 429 "too many
 * requests"), the X-Message-Id glossary entry, and the reserved headers
 * the SDKs list (x-sg-id, x-sg-eid, received, dkim-signature,
 * Content-Type, Content-Transfer-Encoding, To, From, Subject, Reply-To,
 * CC, BCC).
 *
 * At least once: Mail Send takes no idempotency key and SendGrid offers
 * no cheap, consistent way to ask whether a message was accepted (the
 * Email Activity API is a paid add-on and lags), so a send whose answer
 * was lost is sent again and the customer may get the confirmation
 * twice. Every message carries the job in custom_args
 * (callsync_job_id, callsync_call_id, which the Event Webhook reports)
 * and in an "X-Callsync-Job-Id" header, so duplicates can be told apart
 * downstream.
 *
 * Connection config:
 *   from_email, from_name  the verified sender (from_email required)
 *   reply_to               a reply-to address
 *   template_id            a dynamic template (d-...); then
 *   dynamic_template_data  a JSON template over prov_data_root plus
 *                          sync_ref (default: the customer's name, the
 *                          appointment, the summary and sync_ref)
 *   subject_template, text_template, html_template  without template_id
 *   categories             up to 10 category names
 *   region                 "eu": api.eu.sendgrid.com
 *   send_without_appointment  false
 *
 * Rate: SendGrid publishes no number for Mail Send (limits come as
 * X-RateLimit-* headers per endpoint); 100 requests/s per connection is
 * the default, and a 429 or an exhausted X-RateLimit-Remaining pauses the
 * key until X-RateLimit-Reset.
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

#define SENDGRID_BASE_URL "https://api.sendgrid.com"
#define SENDGRID_EU_BASE_URL "https://api.eu.sendgrid.com"
#define SENDGRID_REF_LEN 8
#define SENDGRID_MAX_CATEGORIES 10

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

static const char *job_id(const struct prov_ctx *ctx)
{
    const char *id = json_string_value(json_object_get(ctx->job, "job_id"));
    return id ? id : "unknown";
}

static bool email_ok(const char *s)
{
    const char *at = s ? strchr(s, '@') : NULL;
    return at && at != s && at[1] && !strchr(at + 1, '@') &&
           strchr(at + 1, '.') && !strpbrk(s, " \t\r\n<>,;");
}

/* The root templates render over: prov_data_root plus sync_ref. */
static json_t *template_root(const struct prov_ctx *ctx)
{
    char ref[SENDGRID_REF_LEN + 1];
    snprintf(ref, sizeof(ref), "%s", job_id(ctx));
    json_t *root = prov_data_root(ctx);
    json_object_set_new(root, "sync_ref", json_string(ref));
    return root;
}

/* A text template from config, rendered; NULL without one (and err
 * untouched), or NULL with err->code set for a bad one. */
static char *render(const struct prov_ctx *ctx, const char *key,
                    struct cs_err *err)
{
    const json_t *tpl = json_object_get(ctx->config, key);
    if (!tpl)
        return NULL;
    char field[64];
    snprintf(field, sizeof(field), "config.%s", key);
    if (!json_is_string(tpl)) {
        cs_err_set(err, CS_EINVAL, field, "config_error: %s must be text",
                   key);
        return NULL;
    }
    json_t *root = template_root(ctx);
    json_t *v = map_render(tpl, root, err);
    json_decref(root);
    if (!v) {
        snprintf(err->field, sizeof(err->field), "%s", field);
        return NULL;
    }
    char *s = json_is_string(v) ? xstrdup(json_string_value(v))
                                : map_text(v);
    json_decref(v);
    return s;
}

/* The greeting's name: the first name, else the name's first word. */
static char *first_name(const struct prov_ctx *ctx)
{
    const char *f = str_at(ctx->call, "customer.first_name");
    if (f)
        return xstrdup(f);
    const char *n = str_at(ctx->call, "customer.name");
    return n ? xstrndup(n, strcspn(n, " ")) : NULL;
}

static char *default_subject(const struct prov_ctx *ctx)
{
    const char *what = str_at(ctx->call, "appointment.title");
    if (!what)
        what = str_at(ctx->call, "appointment.service_type");
    return what ? xasprintf("Your %s appointment is confirmed", what)
                : xstrdup("Your appointment is confirmed");
}

static char *default_text(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    char *first = first_name(ctx);
    const char *date = str_at(c, "appointment.date");
    const char *time = str_at(c, "appointment.time");
    const char *tz = str_at(c, "appointment.timezone");
    if (!tz)
        tz = cfg_str(ctx, "timezone");
    char ref[SENDGRID_REF_LEN + 1];
    snprintf(ref, sizeof(ref), "%s", job_id(ctx));
    char *when = date ? xasprintf("on %s%s%s%s%s%s", date, time ? " at " : "",
                                  time ? time : "", tz ? " (" : "",
                                  tz ? tz : "", tz ? ")" : "")
                      : xstrdup("as agreed on the phone");
    const char *summary = str_at(c, "summary");
    char *s = xasprintf("%s%s,\n\nyour appointment %s is confirmed.\n\n"
                        "%s%s%sReference: %s\n",
                        first ? "Hi " : "Hello", first ? first : "", when,
                        summary ? "What we noted: " : "",
                        summary ? summary : "", summary ? "\n\n" : "", ref);
    free(when);
    free(first);
    return s;
}

static bool email_applies(const struct prov_ctx *ctx)
{
    const json_t *v = json_object_get(ctx->config, "send_without_appointment");
    return str_at(ctx->call, "customer.email") != NULL &&
           (when_has_appointment(ctx->call) || json_is_true(v));
}

/* The personalization's dynamic_template_data, or NULL with err. */
static json_t *template_data(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *tpl = json_object_get(ctx->config,
                                        "dynamic_template_data");
    json_t *root = template_root(ctx);
    json_t *v;
    if (tpl) {
        if (!json_is_object(tpl)) {
            json_decref(root);
            cs_err_set(err, CS_EINVAL, "config.dynamic_template_data",
                       "config_error: dynamic_template_data must be an "
                       "object (a template)");
            return NULL;
        }
        v = map_render(tpl, root, err);
        if (!v)
            snprintf(err->field, sizeof(err->field), "%s",
                     "config.dynamic_template_data");
    } else {
        v = json_object();
        static const char *const keys[] = {
            "customer_name", "customer_name_first", "customer_phone",
            "customer_email", "appointment", "call_summary", "sync_ref"};
        for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
            json_t *x = json_object_get(root, keys[i]);
            if (x)
                json_object_set(v, keys[i], x);
        }
    }
    json_decref(root);
    return v;
}

static int add_categories(const struct prov_ctx *ctx, json_t *body,
                          struct cs_err *err)
{
    const json_t *cats = json_object_get(ctx->config, "categories");
    if (!cats)
        return 0;
    bool ok = json_is_array(cats) && json_array_size(cats) > 0 &&
              json_array_size(cats) <= SENDGRID_MAX_CATEGORIES;
    size_t i;
    const json_t *c;
    json_array_foreach(cats, i, c) {
        ok &= json_is_string(c) && json_string_length(c) > 0 &&
              json_string_length(c) <= 255;
    }
    if (!ok)
        return cs_err_set(err, CS_EINVAL, "config.categories",
                          "config_error: categories must be 1 to %d names "
                          "of at most 255 characters",
                          SENDGRID_MAX_CATEGORIES);
    json_object_set(body, "categories", (json_t *)cats);
    return 0;
}

/* The Mail Send body, or NULL with err. */
static json_t *mail_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    const char *from = cfg_str(ctx, "from_email");
    const char *to = str_at(ctx->call, "customer.email");
    if (!email_ok(from)) {
        cs_err_set(err, CS_EINVAL, "config.from_email",
                   "config_error: from_email must be the verified sender's "
                   "address");
        return NULL;
    }
    if (!email_ok(to)) {
        cs_err_set(err, CS_EINVAL, "call.customer.email",
                   "mapping_error: the customer's e-mail address '%.80s' "
                   "is not one SendGrid takes", to ? to : "");
        return NULL;
    }
    const char *reply = cfg_str(ctx, "reply_to");
    if (reply && !email_ok(reply)) {
        cs_err_set(err, CS_EINVAL, "config.reply_to",
                   "config_error: reply_to must be an e-mail address");
        return NULL;
    }
    json_t *rcpt = json_pack("{s:s}", "email", to);
    const char *name = str_at(ctx->call, "customer.name");
    if (name)
        json_object_set_new(rcpt, "name", json_string(name));
    json_t *pers = json_pack("{s:[o]}", "to", rcpt);
    json_t *sender = json_pack("{s:s}", "email", from);
    const char *from_name = cfg_str(ctx, "from_name");
    if (from_name)
        json_object_set_new(sender, "name", json_string(from_name));
    const char *call = str_at(ctx->call, "call_id");
    json_t *args = json_pack("{s:s}", "callsync_job_id", job_id(ctx));
    if (call)
        json_object_set_new(args, "callsync_call_id", json_string(call));
    json_t *body = json_pack("{s:[o],s:o,s:o,s:{s:s}}", "personalizations",
                             pers, "from", sender, "custom_args", args,
                             "headers", "X-Callsync-Job-Id", job_id(ctx));
    if (reply)
        json_object_set_new(body, "reply_to",
                            json_pack("{s:s}", "email", reply));
    if (add_categories(ctx, body, err) < 0)
        goto out_fail;
    const char *tid = cfg_str(ctx, "template_id");
    if (tid) {
        json_t *data = template_data(ctx, err);
        if (!data)
            goto out_fail;
        json_object_set_new(body, "template_id", json_string(tid));
        json_object_set_new(pers, "dynamic_template_data", data);
        return body;
    }
    err->code = 0;
    char *subject = render(ctx, "subject_template", err);
    if (!subject && err->code)
        goto out_fail;
    char *text = render(ctx, "text_template", err);
    if (!text && err->code) {
        free(subject);
        goto out_fail;
    }
    char *html = render(ctx, "html_template", err);
    if (!html && err->code) {
        free(subject);
        free(text);
        goto out_fail;
    }
    if (!subject || !*subject) {
        free(subject);
        subject = default_subject(ctx);
    }
    if (!text || !*text) {
        free(text);
        text = default_text(ctx);
    }
    json_t *content = json_pack("[{s:s,s:s}]", "type", "text/plain",
                                "value", text);
    if (html && *html)
        json_array_append_new(content, json_pack("{s:s,s:s}", "type",
                                                 "text/html", "value", html));
    json_object_set_new(body, "subject", json_string(subject));
    json_object_set_new(body, "content", content);
    free(subject);
    free(text);
    free(html);
    return body;
out_fail:
    json_decref(body);
    return NULL;
}

static int email_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    const char *key = ctx->creds ? ctx->creds->api_key : NULL;
    if (!key || !*key)
        key = ctx->creds ? ctx->creds->access_token : NULL;
    if (!key || !*key)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no SendGrid "
                          "API key");
    const char *region = cfg_str(ctx, "region");
    if (region && strcmp(region, "eu") != 0 && strcmp(region, "global") != 0)
        return cs_err_set(err, CS_EINVAL, "config.region",
                          "config_error: region must be eu or global");
    json_t *body = mail_body(ctx, err);
    if (!body)
        return CS_EINVAL;
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url
                       : region && strcmp(region, "eu") == 0
                           ? SENDGRID_EU_BASE_URL
                           : SENDGRID_BASE_URL;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = "POST";
    rq->url = xasprintf("%.*s/v3/mail/send", (int)bl, base);
    char *auth = xasprintf("Bearer %s", key);
    prov_request_header(rq, "Authorization", auth);
    free(auth);
    prov_request_json(rq, body);
    json_decref(body);
    return 0;
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

/* Milliseconds until X-RateLimit-Reset (a Unix time in seconds), or -1. */
static int64_t until_reset(const struct prov_ctx *ctx,
                           const struct prov_response *rsp)
{
    long long reset = header_int(rsp, "x-ratelimit-reset");
    if (reset < 0)
        return -1;
    int64_t ms = reset * 1000 - ctx->now_ms;
    return ms > 0 ? ms : 0;
}

/* "field: message; ..." from {"errors": [...]} into out. */
static void error_text(const json_t *b, char *out, size_t n)
{
    struct buf t;
    buf_init(&t, n - 1);
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(b, "errors"), i, e) {
        const char *m = json_string_value(json_object_get(e, "message"));
        const char *f = json_string_value(json_object_get(e, "field"));
        if (!m)
            continue;
        if ((t.len && buf_adds(&t, "; ") < 0) ||
            (f && *f && buf_addf(&t, "%s: ", f) < 0) || buf_adds(&t, m) < 0)
            break;
    }
    char *s = buf_take(&t, NULL);
    if (s)
        snprintf(out, n, "%s", s);
    free(s);
}

static void email_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status >= 200 && rsp->status < 300) {
        /* 202 queued; 200 validated only (mail_settings.sandbox_mode). */
        if (header_int(rsp, "x-ratelimit-remaining") == 0)
            res->pause_ms = until_reset(ctx, rsp) > 0 ? until_reset(ctx, rsp)
                                                      : 1000;
        const char *id = prov_response_header(rsp, "x-message-id");
        res->outcome = PROV_DONE;
        res->value = json_pack("{s:s?,s:s}", "message_id", id, "status",
                               rsp->status == 202 ? "queued" : "validated");
        return;
    }
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = rsp->body_len ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                              : NULL;
    error_text(b, res->message, sizeof(res->message));
    json_decref(b);
    if (rsp->status == 403)
        snprintf(res->code, sizeof(res->code), "forbidden");
    else if (rsp->status == 413)
        snprintf(res->code, sizeof(res->code), "payload_too_large");
    prov_classify(rsp, res);
    if (rsp->status == 429 && res->retry_after_ms < 0)
        res->retry_after_ms = until_reset(ctx, rsp) > 0
                                  ? until_reset(ctx, rsp)
                                  : 1000;
}

/* ---- Probe: callsyncctl connections test -------------------------- */

/*
 * One read: GET /v3/scopes (API Key Permissions, "retrieve a list of
 * scopes for which this user has access"), which answers with the scopes
 * of the very key that authenticates it. The email step needs mail.send:
 * a key without it (a restricted key made for something else) is refused
 * here rather than with a 403 at the first confirmation. The sender
 * (from_email) is checked as the email step would. Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    const char *key = ctx->creds ? ctx->creds->api_key : NULL;
    if (!key || !*key)
        key = ctx->creds ? ctx->creds->access_token : NULL;
    if (!key || !*key)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no SendGrid "
                          "API key");
    const char *region = cfg_str(ctx, "region");
    if (region && strcmp(region, "eu") != 0 && strcmp(region, "global") != 0)
        return cs_err_set(err, CS_EINVAL, "config.region",
                          "config_error: region must be eu or global");
    if (!email_ok(cfg_str(ctx, "from_email")))
        return cs_err_set(err, CS_EINVAL, "config.from_email",
                          "config_error: from_email (the verified sender) "
                          "is not set or not an e-mail address");
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url
                       : region && strcmp(region, "eu") == 0
                           ? SENDGRID_EU_BASE_URL
                           : SENDGRID_BASE_URL;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = "GET";
    rq->url = xasprintf("%.*s/v3/scopes", (int)bl, base);
    char *auth = xasprintf("Bearer %s", key);
    prov_request_header(rq, "Authorization", auth);
    prov_request_header(rq, "Accept", "application/json");
    free(auth);
    return 0;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    if (rsp->status < 200 || rsp->status >= 300) {
        email_parse(ctx, rsp, res);
        return;
    }
    json_t *b = rsp->body_len ? json_loadb(rsp->body, rsp->body_len, 0, NULL)
                              : NULL;
    json_t *scopes = json_object_get(b, "scopes");
    if (!json_is_array(scopes)) {
        prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                  "the scopes answer has no scopes list");
        json_decref(b);
        return;
    }
    bool send = false;
    size_t i;
    json_t *sc;
    json_array_foreach(scopes, i, sc) {
        const char *v = json_string_value(sc);
        send |= v && strcmp(v, "mail.send") == 0;
    }
    if (!send) {
        prov_fail(res, PROV_PERMANENT, "missing_scope",
                  "the API key lacks the mail.send permission (it has %zu "
                  "other scopes): give it Mail Send access",
                  json_array_size(scopes));
        res->http_status = rsp->status;
    } else {
        res->outcome = PROV_DONE;
        res->value = json_pack("{s:b,s:i,s:s,s:s}", "mail_send", 1,
                               "scopes", (int)json_array_size(scopes),
                               "from_email", cfg_str(ctx, "from_email"),
                               "region", cfg_str(ctx, "region")
                                             ? cfg_str(ctx, "region")
                                             : "global");
    }
    json_decref(b);
}

static const struct prov_step sendgrid_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step sendgrid_steps[] = {
    {"email", PROV_RECONCILE_NONE, email_applies, email_build, email_parse},
};

const struct prov_ops prov_sendgrid = {
    .name = "sendgrid",
    .steps = sendgrid_steps,
    .nsteps = CS_ARRAY_LEN(sendgrid_steps),
    .rate = {100, 1000},
    .rate_scope = "connection",
    .probe = &sendgrid_probe,
};
