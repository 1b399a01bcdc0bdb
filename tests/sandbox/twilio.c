/*
 * twilio.c - the Twilio Programmable Messaging part of the sandbox, under
 * /twilio:
 *
 *   POST /2010-04-01/Accounts/{AccountSid}/Messages.json   201 a Message
 *   GET  /2010-04-01/Accounts/{AccountSid}/Messages.json   the list
 *   GET  /2010-04-01/Accounts/{AccountSid}.json            the Account
 *                                (with its Auth Token only, as for a
 *                                Standard API key Twilio refuses it)
 *
 * As the API does (twilio-oai twilio_api_v2010.json, the error
 * reference): HTTP Basic with an Account SID (AC...) or API key SID
 * (SK...) and its secret, any such pair unless --twilio-auth SID:SECRET
 * names some (401 {"code": 20003, "message": "Authenticate", ...}
 * otherwise); an Account SID as the user must be the path's. The create
 * takes a form: To (21604 when missing, 21211 when not E.164 or
 * whatsapp:+E.164), From (21212) or MessagingServiceSid (21701), one of
 * Body, MediaUrl or ContentSid (21602; a ContentSid must be HX... (21655)
 * and its ContentVariables a JSON object (21656)), To and From on the
 * same channel (21910), at most 1600 characters of Body (21617). Errors
 * are {"code", "message", "more_info", "status"}.
 *
 * A message is "queued" (or "accepted" with a messaging service) with no
 * date_sent for --twilio-send-delay-ms (0 by default), then "sent" with
 * date_sent. A ContentSid message's body is "Content HX...:" followed by
 * its variables' values, standing in for the rendered template.
 *
 * The list is newest first, filtered by To, From and DateSent (a day
 * "YYYY-MM-DD", or DateSent<= / DateSent>=; a message not sent yet has
 * no date_sent and so never matches a DateSent filter), PageSize (50 by
 * default, at most 1000) with next_page_uri carrying a PageToken.
 *
 * Rate limit: a sliding one-second window of --twilio-rate requests (100
 * by default); past it 429 with code 20429.
 *
 * Records: ?provider=twilio&type=messages.
 */
#include "sandbox.h"
#include "crypto.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_BODY_CHARS 1600

struct sb_twilio {
    /* configuration */
    const char *auth[SB_MAX_TOKENS]; /* "SID:SECRET" */
    size_t nauth;
    int rate;
    int send_delay_ms;
    /* state */
    json_t *messages; /* records, oldest first */
    json_t *made;     /* creation times (ms), parallel to messages */
    long long next_id;
    int64_t *window;
    size_t wcap, whead, wlen;
};

static struct sb_twilio *state(struct sb *s)
{
    if (!s->twilio) {
        s->twilio = xcalloc(1, sizeof(*s->twilio));
        s->twilio->rate = 100;
        twilio_reset(s->twilio);
    }
    return s->twilio;
}

void twilio_reset(struct sb_twilio *t)
{
    if (!t)
        return;
    json_decref(t->messages);
    json_decref(t->made);
    t->messages = json_array();
    t->made = json_array();
    t->next_id = 1;
    free(t->window);
    t->window = NULL;
    t->wcap = t->whead = t->wlen = 0;
}

void twilio_free(struct sb_twilio *t)
{
    if (!t)
        return;
    json_decref(t->messages);
    json_decref(t->made);
    free(t->window);
    free(t);
}

bool twilio_option(struct sb *s, const char *flag, const char *val)
{
    char *end;
    long v;
    if (strcmp(flag, "--twilio-auth") == 0) {
        struct sb_twilio *t = state(s);
        const char *colon = strchr(val, ':');
        if (!colon || colon == val || !colon[1] || t->nauth == SB_MAX_TOKENS)
            return false;
        t->auth[t->nauth++] = val;
        return true;
    }
    if (strcmp(flag, "--twilio-rate") == 0 ||
        strcmp(flag, "--twilio-send-delay-ms") == 0) {
        v = strtol(val, &end, 10);
        if (!*val || *end || v < 0 || v > 10000000)
            return false;
        if (strcmp(flag, "--twilio-rate") == 0) {
            if (v < 1)
                return false;
            state(s)->rate = (int)v;
        } else {
            state(s)->send_delay_ms = (int)v;
        }
        return true;
    }
    return false;
}

/* ---- Errors ------------------------------------------------------------- */

/* {"code", "message", "more_info", "status"}, more_info pointing at the
 * code's page. */
static json_t *error_body(int status, int code, const char *msg)
{
    return json_pack("{s:i,s:s,s:o,s:i}", "code", code, "message", msg,
                     "more_info",
                     json_sprintf("https://www.twilio.com/docs/errors/%d",
                                  code),
                     "status", status);
}

json_t *twilio_error_body(int status)
{
    switch (status) {
    case 401:
        return json_pack("{s:i,s:s,s:s,s:s,s:i}", "code", 20003, "detail",
                         "Your AccountSid or AuthToken was incorrect.",
                         "message", "Authenticate", "more_info",
                         "https://www.twilio.com/docs/errors/20003",
                         "status", 401);
    case 404:
        return error_body(404, 20404, "The requested resource was not found");
    case 429:
        return error_body(429, 20429, "Too Many Requests");
    default:
        if (status >= 500)
            return error_body(status, 20500, "Internal Server Error");
        return error_body(status, 20001, sb_reason(status));
    }
}

static void fail(struct sb_resp *out, int status, int code, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

static void fail(struct sb_resp *out, int status, int code, const char *fmt,
                 ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sb_resp_json(out, status, error_body(status, code, msg));
}

/* ---- Auth and rate ------------------------------------------------------ */

static bool sid_ok(const char *s, size_t n, const char *prefix)
{
    if (n != 34 || strncmp(s, prefix, 2) != 0)
        return false;
    for (size_t i = 2; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* The Basic credentials' user into user[40]; false when they are not
 * acceptable. */
static bool authorised(struct sb_twilio *t, const struct sb_req *rq,
                       char user[40])
{
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Basic ", 6) != 0)
        return false;
    const char *b = a + 6;
    unsigned char dec[512];
    int n = cs_base64_decode(b, strlen(b), dec, sizeof(dec) - 1);
    if (n <= 0)
        return false;
    dec[n] = '\0';
    const char *pair = (const char *)dec;
    const char *colon = strchr(pair, ':');
    if (!colon || !colon[1])
        return false;
    size_t ul = (size_t)(colon - pair);
    if (!sid_ok(pair, ul, "AC") && !sid_ok(pair, ul, "SK"))
        return false;
    snprintf(user, 40, "%.*s", (int)ul, pair);
    if (!t->nauth)
        return true;
    for (size_t i = 0; i < t->nauth; i++)
        if (strcmp(pair, t->auth[i]) == 0)
            return true;
    return false;
}

static bool rate_take(struct sb_twilio *t, int64_t now)
{
    if (!t->window) {
        t->wcap = (size_t)t->rate;
        t->window = xcalloc(t->wcap, sizeof(*t->window));
    }
    while (t->wlen && t->window[t->whead] <= now - 1000) {
        t->whead = (t->whead + 1) % t->wcap;
        t->wlen--;
    }
    if (t->wlen >= t->wcap)
        return false;
    t->window[(t->whead + t->wlen) % t->wcap] = now;
    t->wlen++;
    return true;
}

/* ---- Messages ----------------------------------------------------------- */

/* RFC 2822 date, as the API writes them. */
static json_t *rfc2822(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[64];
    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    return json_string(buf);
}

/* E.164: +, then 8 to 15 digits, the first not 0. */
static bool e164(const char *s)
{
    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    size_t n = strlen(s + 1);
    if (n < 8 || n > 15)
        return false;
    for (const char *p = s + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static bool is_whatsapp(const char *s)
{
    return s && strncmp(s, "whatsapp:", 9) == 0;
}

static bool address_ok(const char *s)
{
    return e164(is_whatsapp(s) ? s + 9 : s);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* The message's state as of now: queued until the send delay passed. */
static void refresh(struct sb_twilio *t, json_t *m, int64_t made,
                    int64_t now)
{
    const char *st = json_string_value(json_object_get(m, "status"));
    if ((strcmp(st, "queued") == 0 || strcmp(st, "accepted") == 0) &&
        now - made >= t->send_delay_ms) {
        json_object_set_new(m, "status", json_string("sent"));
        json_object_set_new(m, "date_sent",
                            rfc2822(made + t->send_delay_ms));
        json_object_set_new(m, "date_updated",
                            rfc2822(made + t->send_delay_ms));
    }
}

static void refresh_all(struct sb_twilio *t, int64_t now)
{
    size_t i;
    json_t *m;
    json_array_foreach(t->messages, i, m) {
        refresh(t, m, json_integer_value(json_array_get(t->made, i)), now);
    }
}

static const char *pstr(const json_t *p, const char *k)
{
    return json_string_value(json_object_get(p, k));
}

static void message_create(struct sb_twilio *t, const struct sb_req *rq,
                           const char *sid, struct sb_resp *out)
{
    if (!sb_is_form(rq)) {
        fail(out, 400, 20001, "The request body must be "
                              "application/x-www-form-urlencoded");
        return;
    }
    json_t *p = NULL;
    char err[200];
    if (!sb_form_parse(rq->body.data ? rq->body.data : "", rq->body.len,
                       false, &p, err, sizeof(err))) {
        fail(out, 400, 20001, "%s", err);
        return;
    }
    const char *to = pstr(p, "To");
    const char *from = pstr(p, "From");
    const char *svc = pstr(p, "MessagingServiceSid");
    const char *body = pstr(p, "Body");
    const char *content = pstr(p, "ContentSid");
    const char *vars = pstr(p, "ContentVariables");
    bool media = json_object_get(p, "MediaUrl") != NULL;
    if (!to || !*to) {
        fail(out, 400, 21604, "A 'To' phone number is required.");
    } else if ((!from || !*from) && (!svc || !*svc)) {
        fail(out, 400, 21603, "A 'From' phone number is required.");
    } else if ((!body || !*body) && !media && (!content || !*content)) {
        fail(out, 400, 21602, "Message body is required.");
    } else if (!address_ok(to)) {
        fail(out, 400, 21211, "The 'To' number %s is not a valid phone "
                              "number.", to);
    } else if (from && *from && !address_ok(from)) {
        fail(out, 400, 21212, "The 'From' number %s is not a valid phone "
                              "number, shortcode, or alphanumeric sender "
                              "ID.", from);
    } else if (svc && *svc && !sid_ok(svc, strlen(svc), "MG")) {
        fail(out, 400, 21701, "The Messaging Service Sid %s is invalid.",
             svc);
    } else if (from && *from && is_whatsapp(from) != is_whatsapp(to)) {
        fail(out, 400, 21910, "Invalid From and To pair. From and To should "
                              "be of the same channel");
    } else if (body && utf8_chars(body) > MAX_BODY_CHARS) {
        fail(out, 400, 21617, "The concatenated message body exceeds the "
                              "1600 character limit.");
    } else if (content && !sid_ok(content, strlen(content), "HX")) {
        fail(out, 400, 21655, "The ContentSid is Invalid.");
    } else {
        json_t *cv = NULL;
        if (content && vars)
            cv = json_loads(vars, 0, NULL);
        if (content && vars && !json_is_object(cv)) {
            json_decref(cv);
            fail(out, 400, 21656, "The ContentVariables Parameter is "
                                  "invalid.");
            json_decref(p);
            return;
        }
        char *text;
        if (content) {
            struct buf b;
            buf_init(&b, 8192);
            int rc = buf_addf(&b, "Content %s:", content);
            const char *k;
            json_t *v;
            json_object_foreach(cv, k, v) {
                if (!rc && json_is_string(v))
                    rc = buf_addf(&b, " %s", json_string_value(v));
            }
            text = buf_take(&b, NULL);
        } else {
            text = xstrdup(body ? body : "");
        }
        json_decref(cv);
        char msid[40];
        snprintf(msid, sizeof(msid), "%s%032llx", media ? "MM" : "SM",
                 (unsigned long long)t->next_id++);
        const char *sender = from && *from ? from : "+15005550006";
        json_t *m = json_pack(
            "{s:s,s:s,s:s,s:o,s:n,s:o,s:s,s:n,s:n,s:s,s:s?,s:s,s:s,s:n,"
            "s:s,s:s,s:s,s:s,s:o}",
            "account_sid", sid, "api_version", "2010-04-01", "body", text,
            "date_created", rfc2822(rq->received_ms), "date_sent",
            "date_updated", rfc2822(rq->received_ms), "direction",
            "outbound-api", "error_code", "error_message", "from", sender,
            "messaging_service_sid", svc, "num_media", media ? "1" : "0",
            "num_segments", "1", "price", "price_unit", "USD", "sid", msid,
            "status", svc && *svc ? "accepted" : "queued", "to", to,
            "subresource_uris",
            json_pack("{s:s}", "media", ""));
        free(text);
        json_object_set_new(
            json_object_get(m, "subresource_uris"), "media",
            json_sprintf("/2010-04-01/Accounts/%s/Messages/%s/Media.json",
                         sid, msid));
        json_object_set_new(m, "uri",
                            json_sprintf("/2010-04-01/Accounts/%s/Messages/"
                                         "%s.json", sid, msid));
        json_array_append(t->messages, m);
        json_array_append_new(t->made, json_integer(rq->received_ms));
        /* The answer is the message as created; later reads see it
         * progress. */
        sb_resp_json(out, 201, m);
    }
    json_decref(p);
}

/* "YYYY-MM-DD" of an RFC 2822 date_sent, into out[11]; false if none. */
static bool sent_day(const json_t *m, int64_t made, int delay, char out[11])
{
    if (json_is_null(json_object_get(m, "date_sent")))
        return false;
    time_t t = (time_t)((made + delay) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
    return true;
}

static bool keep(struct sb_twilio *t, const json_t *m, int64_t made,
                 const json_t *q)
{
    const char *to = pstr(q, "To");
    const char *from = pstr(q, "From");
    if (to && strcmp(to, pstr(m, "to")) != 0)
        return false;
    if (from && strcmp(from, pstr(m, "from")) != 0)
        return false;
    static const struct {
        const char *name;
        int cmp; /* 0 equal, 1 on or after, -1 on or before */
    } ds[] = {{"DateSent", 0}, {"DateSent>", 1}, {"DateSent<", -1}};
    char day[11];
    bool sent = sent_day(m, made, t->send_delay_ms, day);
    for (size_t i = 0; i < CS_ARRAY_LEN(ds); i++) {
        const char *v = pstr(q, ds[i].name);
        if (!v)
            continue;
        /* "DateSent>=2026-02-20" arrives as name "DateSent>" and value
         * "2026-02-20" after the form split on '='. */
        if (!sent)
            return false;
        int c = strcmp(day, v);
        if ((ds[i].cmp == 0 && c != 0) || (ds[i].cmp > 0 && c < 0) ||
            (ds[i].cmp < 0 && c > 0))
            return false;
    }
    return true;
}

static void message_list(struct sb_twilio *t, const struct sb_req *rq,
                         const char *sid, struct sb_resp *out)
{
    json_t *q = NULL;
    char err[200];
    if (!sb_form_parse(rq->query, strlen(rq->query), false, &q, err,
                       sizeof(err))) {
        fail(out, 400, 20001, "%s", err);
        return;
    }
    long page_size = 50, off = 0;
    const char *ps = pstr(q, "PageSize");
    if (ps) {
        char *end;
        page_size = strtol(ps, &end, 10);
        if (!*ps || *end || page_size < 1 || page_size > 1000) {
            fail(out, 400, 20001, "PageSize must be between 1 and 1000");
            json_decref(q);
            return;
        }
    }
    const char *tok = pstr(q, "PageToken");
    if (tok) {
        char *end;
        off = strncmp(tok, "PA", 2) == 0 ? strtol(tok + 2, &end, 10) : -1;
        if (off < 0 || (tok[2] && *end)) {
            fail(out, 400, 20001, "Invalid PageToken");
            json_decref(q);
            return;
        }
    }
    refresh_all(t, rq->received_ms);
    json_t *page = json_array();
    long matched = 0;
    bool more = false;
    for (size_t i = json_array_size(t->messages); i-- > 0;) {
        const json_t *m = json_array_get(t->messages, i);
        int64_t made = json_integer_value(json_array_get(t->made, i));
        if (!keep(t, m, made, q))
            continue;
        if (matched++ < off)
            continue;
        if ((long)json_array_size(page) == page_size) {
            more = true;
            break;
        }
        json_array_append(page, (json_t *)m);
    }
    /* next_page_uri keeps the filters, with the next page's token. */
    struct buf u;
    buf_init(&u, 4096);
    int rc = buf_addf(&u, "/2010-04-01/Accounts/%s/Messages.json?", sid);
    static const char *const keep_names[] = {"To", "From", "DateSent",
                                             "DateSent>", "DateSent<"};
    for (size_t i = 0; i < CS_ARRAY_LEN(keep_names) && !rc; i++) {
        const char *v = pstr(q, keep_names[i]);
        if (!v)
            continue;
        char *e = xmalloc(strlen(v) * 3 + 1);
        char *o = e;
        for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
            if (isalnum(*c) || strchr("-._~", *c)) {
                *o++ = (char)*c;
            } else {
                snprintf(o, 4, "%%%02X", *c);
                o += 3;
            }
        }
        *o = '\0';
        const char *name = keep_names[i];
        rc = buf_addf(&u, "%s=%s",
                      strcmp(name, "DateSent>") == 0   ? "DateSent%3E"
                      : strcmp(name, "DateSent<") == 0 ? "DateSent%3C"
                                                       : name,
                      e);
        free(e);
        if (!rc)
            rc = buf_adds(&u, "&");
    }
    if (!rc)
        rc = buf_addf(&u, "PageSize=%ld", page_size);
    char *base = buf_take(&u, NULL);
    CS_ASSERT(rc == 0 && base);
    long pageno = off / page_size;
    json_t *next = more ? json_sprintf("%s&Page=%ld&PageToken=PA%ld", base,
                                       pageno + 1, off + page_size)
                        : json_null();
    json_t *answer = json_pack(
        "{s:i,s:s,s:o,s:i,s:i,s:n,s:o,s:i,s:s}", "end",
        (int)(off + (long)json_array_size(page) -
              (json_array_size(page) ? 1 : 0)),
        "first_page_uri", base, "next_page_uri", next, "page", (int)pageno,
        "page_size", (int)page_size, "previous_page_uri", "messages", page,
        "start", (int)off, "uri", base);
    free(base);
    json_decref(q);
    sb_resp_json(out, 200, answer);
}

json_t *twilio_records(struct sb *s, const char *type)
{
    struct sb_twilio *t = state(s);
    if (strcmp(type, "messages") != 0)
        return NULL;
    refresh_all(t, cs_now_ms());
    return json_incref(t->messages);
}

void twilio_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_twilio *t = state(s);
    char user[40];
    if (!authorised(t, rq, user)) {
        sb_resp_json(out, 401, twilio_error_body(401));
        return;
    }
    if (!rate_take(t, cs_mono_ms())) {
        sb_resp_json(out, 429, twilio_error_body(429));
        return;
    }
    static const char pre[] = "/2010-04-01/Accounts/";
    const char *p = rq->sub;
    char sid[64] = "";
    bool account = false;
    bool ok = strncmp(p, pre, sizeof(pre) - 1) == 0;
    if (ok) {
        const char *a = p + sizeof(pre) - 1;
        size_t n = strcspn(a, "/");
        account = n > 5 && n - 5 < sizeof(sid) && !a[n] &&
                  strcmp(a + n - 5, ".json") == 0;
        ok = account ||
             (n < sizeof(sid) && strcmp(a + n, "/Messages.json") == 0);
        if (ok)
            snprintf(sid, sizeof(sid), "%.*s", (int)(account ? n - 5 : n),
                     a);
    }
    if (!ok || !sid_ok(sid, strlen(sid), "AC")) {
        fail(out, 404, 20404, "The requested resource %s was not found",
             rq->path);
        return;
    }
    if (strncmp(user, "AC", 2) == 0 && strcmp(user, sid) != 0) {
        sb_resp_json(out, 401, twilio_error_body(401));
        return;
    }
    if (account) {
        /* Fetch an Account: only with the account's own Auth Token (a
         * Standard API key may not read /Accounts). */
        if (rq->method != HTTP_GET) {
            fail(out, 405, 20004, "Method not allowed");
        } else if (strncmp(user, "AC", 2) != 0) {
            sb_resp_json(out, 401, twilio_error_body(401));
        } else {
            json_t *a = json_pack(
                "{s:s,s:s,s:s,s:s,s:s,s:s}", "sid", sid, "owner_account_sid",
                sid, "friendly_name", "Acme Roofing", "status", "active",
                "type", "Full", "date_created",
                "Tue, 03 Feb 2026 10:00:00 +0000");
            json_object_set_new(a, "uri",
                                json_sprintf("/2010-04-01/Accounts/%s.json",
                                             sid));
            sb_resp_json(out, 200, a);
        }
        return;
    }
    if (rq->method == HTTP_POST)
        message_create(t, rq, sid, out);
    else if (rq->method == HTTP_GET)
        message_list(t, rq, sid, out);
    else
        fail(out, 405, 20004, "Method not allowed");
}
