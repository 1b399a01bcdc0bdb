/*
 * sendgrid.c - the SendGrid v3 Mail Send part of the sandbox, under
 * /sendgrid:
 *
 *   POST /v3/mail/send     202 Accepted, no body, X-Message-Id
 *   GET  /v3/scopes        {"scopes": [...]}, mail.send among them
 *
 * As the API does (sendgrid-oai tsg_mail_v3.json, the Mail Send errors
 * page): "Authorization: Bearer <key>", any key shaped "SG.<id>.<secret>"
 * unless --sendgrid-key names some (401 "The provided authorization grant
 * is invalid, expired, or revoked"); a JSON body, checked the way Mail
 * Send checks it, every problem reported at once as 400 {"errors":
 * [{"message", "field", "help"}]}: personalizations (1 to 1000, each with
 * a "to" list of valid addresses), from (a valid address), subject and
 * content (unless template_id; content values non-empty, text/plain
 * first), template_id (d- and 32 hex digits for a dynamic template),
 * custom_args (string values, at most 10,000 bytes), headers (strings,
 * none of the reserved ones), categories (at most 10, each at most 255
 * characters), reply_to. With --sendgrid-sender EMAIL (repeatable) only
 * those senders are verified: another from address gets 403 "The from
 * address does not match a verified Sender Identity...".
 * mail_settings.sandbox_mode.enable answers 200 and sends nothing.
 *
 * Rate limit: --sendgrid-rate requests (600 by default) per one-second
 * refresh period; every answer carries X-RateLimit-Limit, -Remaining and
 * -Reset (the Unix time the period ends); past it, 429 {"errors":
 * [{"field": null, "message": "too many requests"}]}.
 *
 * Records: ?provider=sendgrid&type=mails (each accepted message with its
 * X-Message-Id).
 */
#include "sandbox.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HELP "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/" \
             "errors.html"

struct sb_sendgrid {
    /* configuration */
    const char *keys[SB_MAX_TOKENS];
    size_t nkeys;
    const char *senders[SB_MAX_TOKENS];
    size_t nsenders;
    int rate;
    /* state */
    json_t *mails;
    long long next_id;
    int64_t period;  /* the current refresh period, whole seconds */
    int used;
};

static struct sb_sendgrid *state(struct sb *s)
{
    if (!s->sendgrid) {
        s->sendgrid = xcalloc(1, sizeof(*s->sendgrid));
        s->sendgrid->rate = 600;
        sendgrid_reset(s->sendgrid);
    }
    return s->sendgrid;
}

void sendgrid_reset(struct sb_sendgrid *g)
{
    if (!g)
        return;
    json_decref(g->mails);
    g->mails = json_array();
    g->next_id = 1;
    g->period = 0;
    g->used = 0;
}

void sendgrid_free(struct sb_sendgrid *g)
{
    if (!g)
        return;
    json_decref(g->mails);
    free(g);
}

bool sendgrid_option(struct sb *s, const char *flag, const char *val)
{
    struct sb_sendgrid *g;
    if (strcmp(flag, "--sendgrid-key") == 0) {
        g = state(s);
        if (!*val || g->nkeys == SB_MAX_TOKENS)
            return false;
        g->keys[g->nkeys++] = val;
        return true;
    }
    if (strcmp(flag, "--sendgrid-sender") == 0) {
        g = state(s);
        if (!strchr(val, '@') || g->nsenders == SB_MAX_TOKENS)
            return false;
        g->senders[g->nsenders++] = val;
        return true;
    }
    if (strcmp(flag, "--sendgrid-rate") == 0) {
        char *end;
        long v = strtol(val, &end, 10);
        if (!*val || *end || v < 1 || v > 10000000)
            return false;
        state(s)->rate = (int)v;
        return true;
    }
    return false;
}

json_t *sendgrid_records(struct sb *s, const char *type)
{
    if (strcmp(type, "mails") != 0)
        return NULL;
    return json_incref(state(s)->mails);
}

/* ---- Errors and limits -------------------------------------------------- */

static json_t *one_error(const char *field, const char *message)
{
    return json_pack("{s:[{s:s?,s:s,s:n}]}", "errors", "field", field,
                     "message", message, "help");
}

json_t *sendgrid_error_body(int status)
{
    switch (status) {
    case 401:
        return one_error(NULL, "The provided authorization grant is "
                               "invalid, expired, or revoked");
    case 403:
        return one_error(NULL, "access forbidden");
    case 413:
        return one_error(NULL, "Payload Too Large");
    case 429:
        return one_error(NULL, "too many requests");
    default:
        if (status >= 500)
            return one_error(NULL, "Internal Server Error");
        return one_error(NULL, sb_reason(status));
    }
}

/* The current one-second refresh period (wall clock, as Reset is). */
static void period_roll(struct sb_sendgrid *g, int64_t now_ms)
{
    int64_t sec = now_ms / 1000;
    if (sec != g->period) {
        g->period = sec;
        g->used = 0;
    }
}

void sendgrid_rate_headers(struct sb *s, struct sb_resp *out)
{
    struct sb_sendgrid *g = state(s);
    period_roll(g, cs_now_ms());
    int left = g->rate - g->used;
    sb_resp_header(out, "X-RateLimit-Limit: %d", g->rate);
    sb_resp_header(out, "X-RateLimit-Remaining: %d", left < 0 ? 0 : left);
    sb_resp_header(out, "X-RateLimit-Reset: %lld",
                   (long long)(g->period + 1));
}

/* ---- Validation --------------------------------------------------------- */

static bool address_ok(const char *e)
{
    const char *at = e ? strchr(e, '@') : NULL;
    return at && at != e && strchr(at + 1, '.') && !strchr(at + 1, '@') &&
           !strpbrk(e, " \t<>,;\"") && at[strlen(at) - 1] != '.';
}

static void add_error(json_t *errs, const char *field, const char *anchor,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(json_t *errs, const char *field, const char *anchor,
                      const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(
        errs, json_pack("{s:s,s:s?,s:o}", "message", msg, "field", field,
                        "help", json_sprintf("%s#%s", HELP, anchor)));
}

/* An {"email", "name"?} object at field; adds errors. */
static void check_email_object(const json_t *o, const char *field,
                               json_t *errs)
{
    char f[96];
    snprintf(f, sizeof(f), "%s.email", field);
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "email"))) {
        add_error(errs, field, "message.from",
                  "The %s object must be provided with an email parameter, "
                  "and may also contain a name parameter.", field);
    } else if (!address_ok(json_string_value(json_object_get(o, "email")))) {
        add_error(errs, f, "message.from",
                  "The email address does not contain a valid address.");
    }
    const json_t *n = json_object_get(o, "name");
    if (n && !json_is_string(n)) {
        snprintf(f, sizeof(f), "%s.name", field);
        add_error(errs, f, "message.from",
                  "Invalid type. Expected: string, given: %s.",
                  json_is_integer(n) ? "integer" : "object");
    }
}

static const char *const reserved[] = {
    "x-sg-id",  "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to",
    "cc",       "bcc",      NULL};

static void check_personalizations(const json_t *ps, json_t *errs,
                                   bool *all_have_subject)
{
    *all_have_subject = false;
    if (!json_is_array(ps) || json_array_size(ps) == 0) {
        add_error(errs, "personalizations", "message.personalizations",
                  "The personalizations field is required and must have at "
                  "least one personalization.");
        return;
    }
    if (json_array_size(ps) > 1000) {
        add_error(errs, "personalizations", "message.personalizations",
                  "The personalization block is limited to 1000 "
                  "personalizations per API request. You have provided %zu "
                  "personalizations. Please consider splitting this into "
                  "multiple requests and resending your request.",
                  json_array_size(ps));
        return;
    }
    *all_have_subject = true;
    size_t i;
    const json_t *p;
    json_array_foreach(ps, i, p) {
        char f[64];
        snprintf(f, sizeof(f), "personalizations.%zu.to", i);
        const json_t *to = json_object_get(p, "to");
        if (!json_is_array(to) || json_array_size(to) == 0) {
            add_error(errs, f, "message.personalizations.to",
                      "The to array is required for all personalization "
                      "objects, and must have at least one email object "
                      "with a valid email address.");
        } else {
            size_t k;
            const json_t *r;
            json_array_foreach(to, k, r) {
                const char *e = json_string_value(json_object_get(r,
                                                                  "email"));
                if (!address_ok(e)) {
                    char fe[96];
                    snprintf(fe, sizeof(fe), "%s.%zu.email", f, k);
                    add_error(errs, fe, "message.personalizations.to",
                              "Does not contain a valid address.");
                }
            }
        }
        if (!json_is_string(json_object_get(p, "subject")))
            *all_have_subject = false;
        const json_t *d = json_object_get(p, "dynamic_template_data");
        if (d && !json_is_object(d)) {
            snprintf(f, sizeof(f),
                     "personalizations.%zu.dynamic_template_data", i);
            add_error(errs, f, "message.personalizations",
                      "Invalid type. Expected: object.");
        }
    }
}

static void check_content(const json_t *c, json_t *errs)
{
    if (!json_is_array(c) || json_array_size(c) == 0) {
        add_error(errs, "content", "message.content",
                  "Unless a valid template_id is provided, the content "
                  "parameter is required. There must be at least one "
                  "defined content block. We typically suggest both "
                  "text/plain and text/html blocks are included, but only "
                  "one block is required.");
        return;
    }
    size_t i;
    const json_t *b;
    json_array_foreach(c, i, b) {
        char f[48];
        const char *type = json_string_value(json_object_get(b, "type"));
        const char *val = json_string_value(json_object_get(b, "value"));
        if (!type || !*type) {
            snprintf(f, sizeof(f), "content.%zu.type", i);
            add_error(errs, f, "message.content.type",
                      "The content type cannot contain ';', or CRLF "
                      "characters, and must be at least 1 character.");
        } else if (i > 0 && strcmp(type, "text/plain") == 0) {
            snprintf(f, sizeof(f), "content.%zu.type", i);
            add_error(errs, f, "message.content.type",
                      "If present, text/plain content must be first, "
                      "followed by any other content types.");
        }
        if (!val || !*val) {
            snprintf(f, sizeof(f), "content.%zu.value", i);
            add_error(errs, f, "message.content.value",
                      "The content value must be a string at least one "
                      "character in length.");
        }
    }
}

static void check_custom_args(const json_t *a, json_t *errs)
{
    if (!json_is_object(a)) {
        add_error(errs, "custom_args", "message.custom_args",
                  "Invalid type. Expected: object, given: %s.",
                  json_is_string(a) ? "string" : "array");
        return;
    }
    size_t bytes = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)a, k, v) {
        char f[96];
        snprintf(f, sizeof(f), "custom_args.%.60s", k);
        if (!json_is_string(v))
            add_error(errs, f, "message.custom_args",
                      "Invalid type. Expected: string, given: %s.",
                      json_is_integer(v)   ? "integer"
                      : json_is_boolean(v) ? "boolean"
                                           : "object");
        else
            bytes += strlen(k) + json_string_length(v);
    }
    if (bytes > 10000)
        add_error(errs, "custom_args", "message.custom_args",
                  "The custom_args parameter is limited to 10,000 bytes.");
}

static void check_headers(const json_t *h, json_t *errs)
{
    if (!json_is_object(h)) {
        add_error(errs, "headers", "message.headers",
                  "Invalid type. Expected: object.");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)h, k, v) {
        char f[96];
        snprintf(f, sizeof(f), "headers.%.60s", k);
        for (const char *const *r = reserved; *r; r++)
            if (strcasecmp(k, *r) == 0)
                add_error(errs, f, "message.headers",
                          "The header '%s' is reserved; you may not use: "
                          "x-sg-id, x-sg-eid, received, dkim-signature, "
                          "Content-Type, Content-Transfer-Encoding, To, From, "
                          "Subject, Reply-To, CC, BCC", k);
        if (!json_is_string(v))
            add_error(errs, f, "message.headers",
                      "Invalid type. Expected: string.");
    }
}

static void check_categories(const json_t *c, json_t *errs)
{
    if (!json_is_array(c) || json_array_size(c) > 10) {
        add_error(errs, "categories", "message.categories",
                  "The categories parameter is an array of at most 10 "
                  "category names.");
        return;
    }
    size_t i;
    const json_t *x;
    json_array_foreach(c, i, x) {
        if (!json_is_string(x) || json_string_length(x) > 255) {
            char f[32];
            snprintf(f, sizeof(f), "categories.%zu", i);
            add_error(errs, f, "message.categories",
                      "A category cannot exceed 255 characters and must be "
                      "a string.");
        }
    }
}

static bool template_id_ok(const char *t)
{
    if (strncmp(t, "d-", 2) != 0)
        return strlen(t) == 36; /* a legacy GUID */
    if (strlen(t) != 34)
        return false;
    for (const char *p = t + 2; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return false;
    return true;
}

/* ---- Mail Send ---------------------------------------------------------- */

static bool authorised(struct sb_sendgrid *g, const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return false;
    const char *k = a + 7;
    while (*k == ' ')
        k++;
    if (!g->nkeys)
        return strncmp(k, "SG.", 3) == 0 && strchr(k + 3, '.') != NULL;
    for (size_t i = 0; i < g->nkeys; i++)
        if (strcmp(k, g->keys[i]) == 0)
            return true;
    return false;
}

static void mail_send(struct sb_sendgrid *g, const struct sb_req *rq,
                      struct sb_resp *out)
{
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        sb_resp_json(out, 400, one_error(NULL, "Bad Request"));
        return;
    }
    json_t *errs = json_array();
    bool all_subjects;
    check_personalizations(json_object_get(b, "personalizations"), errs,
                           &all_subjects);
    const json_t *from = json_object_get(b, "from");
    if (!from)
        add_error(errs, "from", "message.from",
                  "The from object must be provided for every email send. It "
                  "is an object that requires an email parameter, but may "
                  "also contain a name parameter.");
    else
        check_email_object(from, "from", errs);
    const json_t *reply = json_object_get(b, "reply_to");
    if (reply)
        check_email_object(reply, "reply_to", errs);
    const json_t *tid = json_object_get(b, "template_id");
    if (tid && (!json_is_string(tid) ||
                !template_id_ok(json_string_value(tid))))
        add_error(errs, "template_id", "message.template_id",
                  "The template_id must be a valid GUID, you provided "
                  "'%.60s'.", json_is_string(tid) ? json_string_value(tid)
                                                  : "");
    if (!tid) {
        const json_t *subj = json_object_get(b, "subject");
        if (!all_subjects &&
            (!json_is_string(subj) || json_string_length(subj) == 0))
            add_error(errs, "subject", "message.subject",
                      "The subject is required. You can get around this "
                      "requirement if you use a template with a subject "
                      "defined or if every personalization has a subject "
                      "defined.");
        check_content(json_object_get(b, "content"), errs);
    }
    const json_t *x;
    if ((x = json_object_get(b, "custom_args")))
        check_custom_args(x, errs);
    if ((x = json_object_get(b, "headers")))
        check_headers(x, errs);
    if ((x = json_object_get(b, "categories")))
        check_categories(x, errs);
    if (json_array_size(errs)) {
        sb_resp_json(out, 400, json_pack("{s:o}", "errors", errs));
        json_decref(b);
        return;
    }
    json_decref(errs);
    const char *sender = json_string_value(json_object_get(from, "email"));
    bool verified = !g->nsenders;
    for (size_t i = 0; i < g->nsenders; i++)
        verified |= strcasecmp(sender, g->senders[i]) == 0;
    if (!verified) {
        sb_resp_json(out, 403,
                     one_error("from",
                               "The from address does not match a verified "
                               "Sender Identity. Mail cannot be sent until "
                               "this error is resolved. Visit "
                               "https://sendgrid.com/docs/for-developers/"
                               "sending-email/sender-identity/ to see the "
                               "Sender Identity requirements"));
        json_decref(b);
        return;
    }
    const json_t *sandbox = json_object_get(
        json_object_get(json_object_get(b, "mail_settings"), "sandbox_mode"),
        "enable");
    if (json_is_true(sandbox)) {
        out->status = 200; /* validated, not sent */
        json_decref(b);
        return;
    }
    char id[32];
    snprintf(id, sizeof(id), "SBmsg%017lld", g->next_id++);
    json_object_set_new(b, "message_id", json_string(id));
    json_object_set_new(b, "received_at_ms", json_integer(rq->received_ms));
    json_array_append_new(g->mails, b);
    out->status = 202;
    sb_resp_header(out, "X-Message-Id: %s", id);
}

void sendgrid_handle(struct sb *s, const struct sb_req *rq,
                     struct sb_resp *out)
{
    struct sb_sendgrid *g = state(s);
    period_roll(g, cs_now_ms());
    if (!authorised(g, rq)) {
        sb_resp_json(out, 401, sendgrid_error_body(401));
    } else if (g->used >= g->rate) {
        sb_resp_json(out, 429, sendgrid_error_body(429));
    } else if (strcmp(rq->sub, "/v3/scopes") == 0) {
        g->used++;
        if (rq->method != HTTP_GET)
            sb_resp_json(out, 405, one_error(NULL, "method not allowed"));
        else
            /* The scopes of a full-access key, as far as callsync cares. */
            sb_resp_json(out, 200,
                         json_pack("{s:[s,s,s,s,s,s]}", "scopes",
                                   "alerts.read", "mail.batch.read",
                                   "mail.send", "scopes.read",
                                   "templates.read", "user.profile.read"));
    } else if (strcmp(rq->sub, "/v3/mail/send") != 0) {
        sb_resp_json(out, 404, one_error(NULL, "resource not found"));
    } else if (rq->method != HTTP_POST) {
        sb_resp_json(out, 405, one_error(NULL, "method not allowed"));
    } else {
        g->used++;
        mail_send(g, rq, out);
    }
    sendgrid_rate_headers(s, out);
}
