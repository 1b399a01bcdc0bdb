/*
 * twilio.c - the Twilio provider: an appointment confirmation by SMS (or
 * WhatsApp) through Programmable Messaging, API 2010-04-01 at
 * api.twilio.com. One step, "sms", applies when the call booked an
 * appointment and the customer has a phone number.
 *
 * Docs followed: twilio/twilio-oai spec/json/twilio_api_v2010.json
 * (Messages.json create and list: To, From or MessagingServiceSid, Body
 * or ContentSid with ContentVariables, StatusCallback; the list filters
 * To, From, DateSent and PageSize, newest first, next_page_uri), the
 * Message resource page (twilio.com/docs/messaging/api/message-resource),
 * the error reference (20003 authenticate, 20429 too many requests,
 * 21211 invalid To, 21610 unsubscribed recipient, ...), and twilio-node's
 * BaseTwilio (HTTP Basic with the Account SID and Auth Token, or an API
 * key SID and its secret).
 *
 * Twilio takes no idempotency key, so a message whose answer was lost is
 * reconciled by listing the recipient's messages before sending again:
 * GET Messages.json?To=<to>[&From=<from>]&PageSize=50, up to
 * TWILIO_LOOKUP_PAGES pages, newest first, for one whose body holds this
 * job's reference (sync_ref: the first 8 hex digits of the job id, "Ref:
 * 1a2b3c4d" unless the template places {{sync_ref}} itself). DateSent is
 * not used as a filter: it is empty until Twilio hands a message to the
 * carrier, so a message still queued behind the sender's rate (exactly
 * the one a lost answer leaves behind) would be filtered out. How exact
 * that is: it misses a message of ours only when more than 150 messages
 * went to the same number (from the same sender) after it, or when the
 * account redacts message bodies; it takes another message for ours only
 * when that one holds the same 8 hex digits (one in 4 billion per
 * message to the same number).
 *
 * Connection config:
 *   account_sid          AC... (required; the path and the rate limit key)
 *   api_key_sid          SK...: authenticate with an API key (the
 *                        connection's api_key is then the key's secret;
 *                        else it is the account's Auth Token)
 *   from                 the sender (E.164, or whatsapp:+E.164), or
 *   messaging_service_sid  MG... (Twilio picks the sender)
 *   channel              "sms" (default) | "whatsapp" (To and From become
 *                        whatsapp:+E.164)
 *   body_template        the text, {{path}} placeholders over
 *                        prov_data_root plus sync_ref
 *   content_sid, content_variables  a Content template (WhatsApp outside
 *                        the 24-hour window) and its variables; one of the
 *                        variables must hold {{sync_ref}}
 *   status_callback      StatusCallback URL
 *
 * Rate: Twilio documents a per-account limit on concurrent API requests
 * (429, error 20429) and queues messages per sender at the sender's
 * throughput, but no request rate; 10 requests/s per account is the
 * default (rate_limit overrides it, e.g. "1/1s" for one US long code).
 */
#include "prov.h"
#include "buf.h"
#include "crypto.h"
#include "form.h"
#include "mapping.h"
#include "when.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TWILIO_BASE_URL "https://api.twilio.com"
#define TWILIO_BODY_MAX 1600 /* characters */
#define TWILIO_LOOKUP_PAGES 3
#define TWILIO_REF_LEN 8

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

/* "AC" (or another prefix) and 32 hex digits. */
static bool sid_ok(const char *s, const char *prefix)
{
    if (!s || strncmp(s, prefix, 2) != 0 || strlen(s) != 34)
        return false;
    for (const char *p = s + 2; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
              (*p >= 'A' && *p <= 'F')))
            return false;
    return true;
}

/* The reference written into the message: the job id's first digits. */
static void sync_ref(const struct prov_ctx *ctx, char out[TWILIO_REF_LEN + 1])
{
    const char *id = json_string_value(json_object_get(ctx->job, "job_id"));
    snprintf(out, TWILIO_REF_LEN + 1, "%s", id ? id : "00000000");
}

static bool whatsapp(const struct prov_ctx *ctx)
{
    const char *c = cfg_str(ctx, "channel");
    return c && strcmp(c, "whatsapp") == 0;
}

/* An address on the configured channel (xmalloc'd). */
static char *address(const struct prov_ctx *ctx, const char *number)
{
    if (whatsapp(ctx) && strncmp(number, "whatsapp:", 9) != 0)
        return xasprintf("whatsapp:%s", number);
    return xstrdup(number);
}

/* ------------------------------------------------------------------ */
/* Text                                                               */
/* ------------------------------------------------------------------ */

/* The byte length of the first max characters (code points) of s. */
static size_t utf8_prefix(const char *s, size_t max)
{
    size_t n = 0, chars = 0;
    while (s[n] && chars < max) {
        n++;
        while (((unsigned char)s[n] & 0xc0) == 0x80)
            n++;
        chars++;
    }
    return n;
}

static size_t utf8_chars(const char *s)
{
    size_t chars = 0;
    for (; *s; s++)
        chars += ((unsigned char)*s & 0xc0) != 0x80;
    return chars;
}

/* The default text, when no template is configured. */
static char *default_text(const struct prov_ctx *ctx, const char *ref)
{
    const json_t *c = ctx->call;
    const char *first = str_at(c, "customer.first_name");
    char *fallback = NULL;
    if (!first && str_at(c, "customer.name")) {
        const char *name = str_at(c, "customer.name");
        fallback = xstrndup(name, strcspn(name, " "));
        first = fallback;
    }
    const char *what = str_at(c, "appointment.title");
    if (!what)
        what = str_at(c, "appointment.service_type");
    const char *date = str_at(c, "appointment.date");
    const char *time = str_at(c, "appointment.time");
    const char *tz = str_at(c, "appointment.timezone");
    if (!tz)
        tz = cfg_str(ctx, "timezone");
    char *s = xasprintf("%s%s, your %s%sappointment on %s at %s%s%s%s is "
                        "confirmed. Ref: %s",
                        first ? "Hi " : "Hello", first ? first : "",
                        what ? what : "", what ? " " : "", date ? date : "",
                        time ? time : "", tz ? " (" : "", tz ? tz : "",
                        tz ? ")" : "", ref);
    free(fallback);
    return s;
}

/* The root templates render over: prov_data_root plus sync_ref. */
static json_t *template_root(const struct prov_ctx *ctx, const char *ref)
{
    json_t *root = prov_data_root(ctx);
    json_object_set_new(root, "sync_ref", json_string(ref));
    return root;
}

/*
 * The message text: body_template rendered (or the default), holding the
 * reference (appended as "\nRef: <ref>" when the template does not place
 * it), at most TWILIO_BODY_MAX characters. NULL with err on a bad
 * template.
 */
static char *message_text(const struct prov_ctx *ctx, struct cs_err *err)
{
    char ref[TWILIO_REF_LEN + 1];
    sync_ref(ctx, ref);
    const json_t *tpl = json_object_get(ctx->config, "body_template");
    char *text = NULL;
    if (tpl) {
        if (!json_is_string(tpl)) {
            cs_err_set(err, CS_EINVAL, "config.body_template",
                       "config_error: body_template must be text");
            return NULL;
        }
        json_t *root = template_root(ctx, ref);
        json_t *v = map_render(tpl, root, err);
        json_decref(root);
        if (!v) {
            snprintf(err->field, sizeof(err->field), "%s",
                     "config.body_template");
            return NULL;
        }
        text = json_is_string(v) ? xstrdup(json_string_value(v))
                                 : map_text(v);
        json_decref(v);
    } else {
        text = default_text(ctx, ref);
    }
    char suffix[32];
    snprintf(suffix, sizeof(suffix), "\nRef: %s", ref);
    if (utf8_chars(text) > TWILIO_BODY_MAX) {
        /* Cut on a character boundary, leaving room for the reference. */
        text[utf8_prefix(text, TWILIO_BODY_MAX - strlen(suffix))] = '\0';
    }
    if (!strstr(text, ref)) {
        char *t = xasprintf("%s%s", text, suffix);
        free(text);
        text = t;
    }
    if (!*text || strspn(text, " \n\t\r") == strlen(text)) {
        free(text);
        cs_err_set(err, CS_EINVAL, "config.body_template",
                   "config_error: the message text is empty");
        return NULL;
    }
    return text;
}

/*
 * ContentVariables as the JSON text Twilio takes, from the configured
 * template (an object whose values render to text), or NULL with err.
 * One value must hold the reference, or a lost answer could not be
 * reconciled.
 */
static char *content_variables(const struct prov_ctx *ctx,
                               struct cs_err *err)
{
    char ref[TWILIO_REF_LEN + 1];
    sync_ref(ctx, ref);
    const json_t *tpl = json_object_get(ctx->config, "content_variables");
    if (!json_is_object(tpl)) {
        cs_err_set(err, CS_EINVAL, "config.content_variables",
                   "config_error: content_sid needs content_variables, an "
                   "object such as {\"1\": \"{{customer_name_first}}\", "
                   "\"2\": \"{{sync_ref}}\"}");
        return NULL;
    }
    json_t *root = template_root(ctx, ref);
    json_t *v = map_render(tpl, root, err);
    json_decref(root);
    if (!v) {
        snprintf(err->field, sizeof(err->field), "%s",
                 "config.content_variables");
        return NULL;
    }
    json_t *vars = json_object();
    bool has_ref = false;
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        char *t = json_is_string(x) ? xstrdup(json_string_value(x))
                                    : map_text(x);
        has_ref |= strstr(t, ref) != NULL;
        json_object_set_new(vars, k, json_string(t));
        free(t);
    }
    json_decref(v);
    if (!has_ref) {
        json_decref(vars);
        cs_err_set(err, CS_EINVAL, "config.content_variables",
                   "config_error: one of content_variables must hold "
                   "{{sync_ref}}, so that a message whose answer was lost "
                   "can be found instead of sent twice");
        return NULL;
    }
    char *s = json_dumps(vars, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(vars);
    return s;
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

struct target {
    char sid[40];
    char *to;    /* the recipient on the channel */
    char *from;  /* the sender, or NULL with a messaging service */
    char *service;
};

static void target_release(struct target *t)
{
    free(t->to);
    free(t->from);
    free(t->service);
}

static int target_of(const struct prov_ctx *ctx, struct target *t,
                     struct cs_err *err)
{
    memset(t, 0, sizeof(*t));
    const char *sid = cfg_str(ctx, "account_sid");
    if (!sid_ok(sid, "AC"))
        return cs_err_set(err, CS_EINVAL, "config.account_sid",
                          "config_error: account_sid must be the account's "
                          "SID (AC and 32 hex digits)");
    snprintf(t->sid, sizeof(t->sid), "%s", sid);
    const char *key = cfg_str(ctx, "api_key_sid");
    if (key && !sid_ok(key, "SK"))
        return cs_err_set(err, CS_EINVAL, "config.api_key_sid",
                          "config_error: api_key_sid must be an API key SID "
                          "(SK and 32 hex digits)");
    const char *from = cfg_str(ctx, "from");
    const char *svc = cfg_str(ctx, "messaging_service_sid");
    if (svc && !sid_ok(svc, "MG"))
        return cs_err_set(err, CS_EINVAL, "config.messaging_service_sid",
                          "config_error: messaging_service_sid must be MG "
                          "and 32 hex digits");
    if (!from && !svc)
        return cs_err_set(err, CS_EINVAL, "config.from",
                          "config_error: set from (the sender) or "
                          "messaging_service_sid");
    const char *ch = cfg_str(ctx, "channel");
    if (ch && strcmp(ch, "sms") != 0 && strcmp(ch, "whatsapp") != 0)
        return cs_err_set(err, CS_EINVAL, "config.channel",
                          "config_error: channel must be sms or whatsapp");
    const char *phone = str_at(ctx->call, "customer.phone");
    if (!phone)
        return cs_err_set(err, CS_EINVAL, "call.customer.phone",
                          "no_phone: the call has no phone number to text");
    t->to = address(ctx, phone);
    t->from = from ? address(ctx, from) : NULL;
    t->service = svc ? xstrdup(svc) : NULL;
    return 0;
}

static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, struct cs_err *err)
{
    const char *secret = ctx->creds ? ctx->creds->api_key : NULL;
    if (!secret || !*secret)
        secret = ctx->creds ? ctx->creds->access_token : NULL;
    if (!secret || !*secret)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no Auth Token "
                          "or API key secret");
    const char *user = cfg_str(ctx, "api_key_sid");
    if (!user)
        user = cfg_str(ctx, "account_sid");
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url
                                                       : TWILIO_BASE_URL;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = method;
    rq->url = xasprintf("%.*s%s", (int)bl, base, path);
    char *pair = xasprintf("%s:%s", user, secret);
    char *b64 = cs_base64_encode((const unsigned char *)pair, strlen(pair));
    char *auth = xasprintf("Basic %s", b64);
    prov_request_header(rq, "Authorization", auth);
    prov_request_header(rq, "Accept", "application/json");
    free(auth);
    free(b64);
    free(pair);
    return 0;
}

static bool sms_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call) &&
           str_at(ctx->call, "customer.phone") != NULL;
}

static int sms_build(struct prov_ctx *ctx, struct prov_request *rq,
                     struct cs_err *err)
{
    struct target t;
    int rc = target_of(ctx, &t, err);
    if (rc) {
        target_release(&t);
        return rc;
    }
    /* Everything the message needs is checked before anything is sent. */
    const char *content = cfg_str(ctx, "content_sid");
    char *text = NULL, *vars = NULL;
    if (content && !sid_ok(content, "HX"))
        rc = cs_err_set(err, CS_EINVAL, "config.content_sid",
                        "config_error: content_sid must be HX and 32 hex "
                        "digits");
    else if (content)
        vars = content_variables(ctx, err);
    else
        text = message_text(ctx, err);
    if (!rc && !text && !vars)
        rc = CS_EINVAL;
    const char *cb = cfg_str(ctx, "status_callback");
    if (!rc && cb && strncmp(cb, "https://", 8) != 0 &&
        strncmp(cb, "http://", 7) != 0)
        rc = cs_err_set(err, CS_EINVAL, "config.status_callback",
                        "config_error: status_callback must be an http(s) "
                        "URL");
    if (rc)
        goto out;
    if (!*phase_of(ctx))
        set_phase(ctx, ctx->reconcile ? "lookup" : "send");
    if (phase_is(ctx, "lookup")) {
        const char *next = json_string_value(
            json_object_get(ctx->scratch, "next"));
        char *path;
        if (next) {
            path = xstrdup(next);
        } else {
            char *to = prov_url_escape(t.to);
            char *from = t.from ? prov_url_escape(t.from) : NULL;
            path = xasprintf("/2010-04-01/Accounts/%s/Messages.json?To=%s"
                             "%s%s&PageSize=50",
                             t.sid, to, from ? "&From=" : "",
                             from ? from : "");
            free(to);
            free(from);
        }
        rc = begin(ctx, rq, "GET", path, err);
        free(path);
    } else {
        char *path = xasprintf("/2010-04-01/Accounts/%s/Messages.json",
                               t.sid);
        rc = begin(ctx, rq, "POST", path, err);
        free(path);
        if (!rc) {
            struct form f;
            form_init(&f);
            form_add(&f, "To", t.to);
            if (t.service)
                form_add(&f, "MessagingServiceSid", t.service);
            if (t.from)
                form_add(&f, "From", t.from);
            if (content) {
                form_add(&f, "ContentSid", content);
                form_add(&f, "ContentVariables", vars);
            } else {
                form_add(&f, "Body", text);
            }
            if (cb)
                form_add(&f, "StatusCallback", cb);
            prov_request_form(rq, &f);
            form_release(&f);
        }
    }
out:
    free(text);
    free(vars);
    target_release(&t);
    return rc;
}

/*
 * A failed answer: the shared rules, refined by Twilio's error body
 * {"code", "message", "more_info", "status"}: the code becomes
 * "twilio_<code>", 20429 is a rate limit whatever the status, 20003 an
 * authentication failure.
 */
static void twilio_fail(const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    long long code = json_integer_value(json_object_get(b, "code"));
    const char *msg = json_string_value(json_object_get(b, "message"));
    if (code > 0)
        snprintf(res->code, sizeof(res->code), "twilio_%lld", code);
    if (msg)
        snprintf(res->message, sizeof(res->message), "%s", msg);
    json_decref(b);
    prov_classify(rsp, res);
    if (code == 20429)
        res->outcome = PROV_RATE_LIMITED;
    else if (code == 20003)
        res->outcome = PROV_AUTH;
}

/* Whether m is the message this job sent. */
static bool ours(const struct target *t, const json_t *m, const char *ref)
{
    const char *to = json_string_value(json_object_get(m, "to"));
    const char *from = json_string_value(json_object_get(m, "from"));
    const char *body = json_string_value(json_object_get(m, "body"));
    const char *dir = json_string_value(json_object_get(m, "direction"));
    const char *sid = json_string_value(json_object_get(m, "sid"));
    if (!sid || !to || strcmp(to, t->to) != 0 || !body)
        return false;
    if (t->from && (!from || strcmp(from, t->from) != 0))
        return false;
    if (dir && strncmp(dir, "outbound", 8) != 0)
        return false;
    return strstr(body, ref) != NULL;
}

static json_t *message_result(const json_t *m)
{
    json_t *v = json_pack("{s:s}", "message_sid",
                          json_string_value(json_object_get(m, "sid")));
    const char *st = json_string_value(json_object_get(m, "status"));
    if (st)
        json_object_set_new(v, "status", json_string(st));
    return v;
}

static void sms_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                      struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status < 200 || rsp->status >= 300) {
        twilio_fail(rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (phase_is(ctx, "lookup")) {
        struct target t;
        struct cs_err err;
        char ref[TWILIO_REF_LEN + 1];
        sync_ref(ctx, ref);
        const json_t *list = json_object_get(b, "messages");
        const json_t *hit = NULL;
        if (target_of(ctx, &t, &err) == 0) {
            size_t i;
            const json_t *m;
            json_array_foreach(list, i, m) {
                if (!hit && ours(&t, m, ref))
                    hit = m;
            }
        }
        target_release(&t);
        json_int_t pages = json_integer_value(
                               json_object_get(ctx->scratch, "pages")) + 1;
        json_object_set_new(ctx->scratch, "pages", json_integer(pages));
        const char *next = json_string_value(
            json_object_get(b, "next_page_uri"));
        if (!json_is_array(list)) {
            res->outcome = PROV_RETRY;
            snprintf(res->code, sizeof(res->code), "bad_response");
            snprintf(res->message, sizeof(res->message),
                     "HTTP %d without a message list", rsp->status);
        } else if (hit) {
            res->outcome = PROV_DONE;
            res->value = message_result(hit);
        } else if (next && strncmp(next, "/2010-04-01/Accounts/", 21) == 0 &&
                   pages < TWILIO_LOOKUP_PAGES) {
            json_object_set_new(ctx->scratch, "next", json_string(next));
            res->outcome = PROV_NEXT;
        } else {
            set_phase(ctx, "send");
            res->outcome = PROV_NEXT;
        }
    } else if (json_string_value(json_object_get(b, "sid"))) {
        res->outcome = PROV_DONE;
        res->value = message_result(b);
    } else {
        /* Sent, maybe, but unreadable: the retry looks it up. */
        res->outcome = PROV_RETRY;
        snprintf(res->code, sizeof(res->code), "bad_response");
        snprintf(res->message, sizeof(res->message),
                 "HTTP %d with an unreadable body", rsp->status);
    }
    json_decref(b);
}

/* ---- Probe: callsyncctl connections test -------------------------- */

/*
 * One read, with the configured account and credentials. With the
 * account's Auth Token: GET /2010-04-01/Accounts/{AccountSid}.json (the
 * Account resource: its friendly_name, status active|suspended|closed,
 * type Trial|Full); a suspended or closed account sends nothing. With an
 * API key (api_key_sid): Twilio lets only Main keys read /Accounts
 * (twilio.com/docs/iam/api-keys, key types), so the check is the
 * account's message list instead, GET .../Messages.json?PageSize=1,
 * which is what the sms step reads when it reconciles. The sender
 * settings are checked as the sms step would (from or
 * messaging_service_sid). Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    const char *sid = cfg_str(ctx, "account_sid");
    if (!sid_ok(sid, "AC"))
        return cs_err_set(err, CS_EINVAL, "config.account_sid",
                          "config_error: account_sid must be the account's "
                          "SID (AC and 32 hex digits)");
    const char *key = cfg_str(ctx, "api_key_sid");
    if (key && !sid_ok(key, "SK"))
        return cs_err_set(err, CS_EINVAL, "config.api_key_sid",
                          "config_error: api_key_sid must be an API key SID "
                          "(SK and 32 hex digits)");
    const char *svc = cfg_str(ctx, "messaging_service_sid");
    if (svc && !sid_ok(svc, "MG"))
        return cs_err_set(err, CS_EINVAL, "config.messaging_service_sid",
                          "config_error: messaging_service_sid must be MG "
                          "and 32 hex digits");
    if (!svc && !cfg_str(ctx, "from"))
        return cs_err_set(err, CS_EINVAL, "config.from",
                          "config_error: set from (the sender) or "
                          "messaging_service_sid");
    char *path = key ? xasprintf("/2010-04-01/Accounts/%s/Messages.json"
                                 "?PageSize=1", sid)
                     : xasprintf("/2010-04-01/Accounts/%s.json", sid);
    int rc = begin(ctx, rq, "GET", path, err);
    free(path);
    return rc;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    if (rsp->status < 200 || rsp->status >= 300) {
        twilio_fail(rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    const char *key = cfg_str(ctx, "api_key_sid");
    const char *sid = cfg_str(ctx, "account_sid");
    const char *svc = cfg_str(ctx, "messaging_service_sid");
    if (key) {
        if (!json_is_array(json_object_get(b, "messages"))) {
            prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                      "the message list has no messages");
        } else {
            res->outcome = PROV_DONE;
            res->value = json_pack("{s:s,s:s,s:b,s:s?,s:s?}", "account_sid",
                                   sid, "api_key_sid", key,
                                   "messages_readable", 1, "from",
                                   cfg_str(ctx, "from"),
                                   "messaging_service_sid", svc);
        }
        json_decref(b);
        return;
    }
    const char *got = json_string_value(json_object_get(b, "sid"));
    const char *status = json_string_value(json_object_get(b, "status"));
    if (!got) {
        prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                  "the account answer has no sid");
    } else if (status && strcmp(status, "active") != 0) {
        prov_fail(res, PROV_PERMANENT, "account_not_active",
                  "the Twilio account %s is %s: it sends nothing", got,
                  status);
    } else {
        res->outcome = PROV_DONE;
        res->value = json_pack(
            "{s:s,s:s?,s:s?,s:s?,s:s?,s:s?}", "account_sid", got,
            "friendly_name",
            json_string_value(json_object_get(b, "friendly_name")), "status",
            status, "type", json_string_value(json_object_get(b, "type")),
            "from", cfg_str(ctx, "from"), "messaging_service_sid", svc);
    }
    json_decref(b);
}

static const struct prov_step twilio_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step twilio_steps[] = {
    {"sms", PROV_RECONCILE_LOOKUP, sms_applies, sms_build, sms_parse},
};

const struct prov_ops prov_twilio = {
    .name = "twilio",
    .steps = twilio_steps,
    .nsteps = CS_ARRAY_LEN(twilio_steps),
    .rate = {10, 1000},
    .rate_scope = "account_sid",
    .probe = &twilio_probe,
};
