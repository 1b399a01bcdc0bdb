/*
 * dispatch.c - what happens to a request once it is complete: find the
 * provider from the path prefix, apply the first fault rule that fires,
 * run the provider's handler, then log the request (ring of the last
 * SB_REQUEST_RING) and count it per provider and status. Also the control
 * API under /_sandbox, which is never faulted nor logged.
 *
 * Fault rules (POST /_sandbox/faults replaces them all) are tried in order.
 * A rule matches on provider, path prefix (with or without the provider
 * prefix) and method; a matching request bumps the rule's `matched`
 * counter, and the rule fires when all of its conditions hold:
 *   every N        matched % N == 0
 *   probability p  next PRNG draw < p
 *   count N        it has fired fewer than N times
 * The first rule that fires decides: its latency is added to the global
 * one; then a hang (no answer, close after hang_ms; with "process" the
 * request is handled first, so its write happens and only the answer is
 * lost), or an injected status
 * (its body, or the provider's own error shape, plus Retry-After), or, with
 * neither, the normal answer after the latency.
 */
#include "sandbox.h"
#include "log.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const provider_names[SB_P_COUNT] = {
    "hubspot", "zapier", "retell", "custom", "gohighlevel", "oauth",
    "sentry", "google_calendar", "cal_com", "calendly", "outlook",
    "stripe", "twilio", "sendgrid", "pipedrive", "zoho", "salesforce",
    "monday", "housecall_pro", "segment", "other", "sandbox"};

static const char *const provider_prefix[] = {"/hubspot", "/zapier",
                                              "/retell", "/custom",
                                              "/gohighlevel", "/oauth",
                                              "/sentry", "/google_calendar",
                                              "/cal_com", "/calendly",
                                              "/outlook", "/stripe",
                                              "/twilio", "/sendgrid",
                                              "/pipedrive", "/zoho",
                                              "/salesforce",
                                              "/monday", "/housecall_pro",
                                              "/segment"};

/* ---- Small helpers ------------------------------------------------------ */

uint64_t sb_rand(struct sb *s)
{
    /* splitmix64: deterministic for a given --seed */
    uint64_t z = (s->prng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sb_resp_json(struct sb_resp *out, int status, json_t *body)
{
    free(out->body);
    out->status = status;
    out->body = json_dumps(body, JSON_COMPACT);
    CS_ASSERT(out->body);
    out->len = strlen(out->body);
    json_decref(body);
}

void sb_resp_header(struct sb_resp *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    int rc = buf_adds(&out->headers, line);
    if (!rc)
        rc = buf_adds(&out->headers, "\r\n");
    CS_ASSERT(rc == 0);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

char *sb_url_decode(const char *s, size_t n, bool plus_is_space)
{
    char *out = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            out[k++] = (char)(hexval((unsigned char)s[i + 1]) * 16 +
                              hexval((unsigned char)s[i + 2]));
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            out[k++] = ' ';
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

char *sb_query_param(const char *query, const char *name)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=')
            return sb_url_decode(p + nl + 1, len - nl - 1, true);
        if (len == nl && strncmp(p, name, nl) == 0)
            return xstrdup("");
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

json_t *sb_body_json(const struct sb_req *rq)
{
    if (!rq->body.len)
        return NULL;
    return json_loadb(rq->body.data, rq->body.len, JSON_DECODE_ANY, NULL);
}

bool sb_is_json_object(const struct sb_req *rq, json_t **out)
{
    json_t *j = sb_body_json(rq);
    if (!json_is_object(j)) {
        json_decref(j);
        *out = NULL;
        return false;
    }
    *out = j;
    return true;
}

const char *sb_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 300: return "Multiple Choices";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* ---- Request log and stats ---------------------------------------------- */

static void log_request(struct sb *s, const struct sb_req *rq, int status)
{
    if (rq->provider == SB_P_CONTROL)
        return;
    if (status >= 0 && status < 600)
        s->stats[rq->provider][status]++;
    if (s->ring_len == s->ring_cap && s->ring_cap < SB_REQUEST_RING) {
        /* Still growing: the ring has not wrapped, head is 0. */
        size_t cap = s->ring_cap ? s->ring_cap * 2 : 1024;
        if (cap > SB_REQUEST_RING)
            cap = SB_REQUEST_RING;
        s->ring = xrealloc(s->ring, cap * sizeof(*s->ring));
        s->ring_cap = cap;
    }
    struct sb_logged *e;
    if (s->ring_len < s->ring_cap) {
        e = &s->ring[(s->ring_head + s->ring_len) % s->ring_cap];
        s->ring_len++;
    } else {
        e = &s->ring[s->ring_head];
        free(e->path);
        s->ring_head = (s->ring_head + 1) % s->ring_cap;
    }
    e->at_ms = rq->received_ms;
    e->path = xstrdup(rq->path);
    e->status = (uint16_t)status;
    e->provider = (uint8_t)rq->provider;
    e->method = (uint8_t)rq->method;
}

static void free_rules(struct sb *s)
{
    for (size_t i = 0; i < s->nrules; i++) {
        free(s->rules[i].path_prefix);
        json_decref(s->rules[i].body);
    }
    free(s->rules);
    s->rules = NULL;
    s->nrules = 0;
}

static void clear_ring(struct sb *s)
{
    for (size_t i = 0; i < s->ring_len; i++)
        free(s->ring[(s->ring_head + i) % s->ring_cap].path);
    free(s->ring);
    s->ring = NULL;
    s->ring_cap = s->ring_len = s->ring_head = 0;
}

void sb_reset(struct sb *s)
{
    free_rules(s);
    clear_ring(s);
    memset(s->stats, 0, sizeof(s->stats));
    hs_free(s->hs);
    s->hs = hs_new();
    ghl_free(s->ghl);
    s->ghl = ghl_new();
    pd_free(s->pd);
    s->pd = pd_new();
    zoho_free(s->zoho);
    s->zoho = zoho_new();
    json_array_clear(s->zapier_hooks);
    json_array_clear(s->sentry_events);
    json_array_clear(s->retell_calls);
    json_array_clear(s->custom);
    json_object_clear(s->idem);
    s->custom_next = 1;
    s->prng = s->seed;
    oauth_reset(s->oauth);
    cal_sb_reset(s->cal);
    stripe_reset(s->stripe);
    twilio_reset(s->twilio);
    sendgrid_reset(s->sendgrid);
    sf_reset(s);
    if (s->monday)
        monday_reset(s->monday);
    if (s->hcp)
        hcp_reset(s->hcp);
    if (s->segment)
        segment_reset(s->segment);
}

void sb_free(struct sb *s)
{
    free_rules(s);
    clear_ring(s);
    hs_free(s->hs);
    ghl_free(s->ghl);
    pd_free(s->pd);
    zoho_free(s->zoho);
    json_decref(s->zapier_hooks);
    json_decref(s->sentry_events);
    json_decref(s->retell_calls);
    json_decref(s->custom);
    json_decref(s->idem);
    oauth_free(s->oauth);
    cal_sb_free(s->cal);
    stripe_free(s->stripe);
    twilio_free(s->twilio);
    sendgrid_free(s->sendgrid);
    sf_free(s);
    monday_free(s->monday);
    hcp_free(s->hcp);
    segment_free(s->segment);
}

/* ---- Fault rules -------------------------------------------------------- */

static int provider_parse(const char *name)
{
    if (strcmp(name, "*") == 0)
        return -1;
    for (int i = 0; i < SB_P_OTHER; i++)
        if (strcmp(name, provider_names[i]) == 0)
            return i;
    return -2;
}

static int method_parse(const char *name)
{
    for (int m = 0; m < 40; m++)
        if (strcasecmp(http_method_str((enum http_method)m), name) == 0)
            return m;
    return -2;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi,
                    long long *v, char *err, size_t errlen)
{
    json_t *x = json_object_get(o, key);
    if (!x)
        return true;
    if (!json_is_integer(x) || json_integer_value(x) < lo ||
        json_integer_value(x) > hi) {
        snprintf(err, errlen, "'%s' must be an integer in [%lld, %lld]", key,
                 lo, hi);
        return false;
    }
    *v = json_integer_value(x);
    return true;
}

/* Parse one rule; false and a message in err when it is invalid. */
static bool rule_parse(json_t *o, struct sb_rule *r, char *err, size_t el)
{
    memset(r, 0, sizeof(*r));
    r->provider = -1;
    r->method = -1;
    r->retry_after_s = -1;
    r->count = -1;
    r->probability = -1;
    r->hang_ms = 10000;
    if (!json_is_object(o)) {
        snprintf(err, el, "each rule must be an object");
        return false;
    }
    json_t *x = json_object_get(o, "provider");
    if (x) {
        if (!json_is_string(x) ||
            (r->provider = provider_parse(json_string_value(x))) == -2) {
            snprintf(err, el, "'provider' must be * or a provider's name "
                              "as /_sandbox/stats lists them");
            return false;
        }
    }
    x = json_object_get(o, "path_prefix");
    if (x) {
        if (!json_is_string(x)) {
            snprintf(err, el, "'path_prefix' must be a string");
            return false;
        }
        r->path_prefix = xstrdup(json_string_value(x));
    }
    x = json_object_get(o, "method");
    if (x) {
        if (!json_is_string(x) ||
            (r->method = method_parse(json_string_value(x))) == -2) {
            snprintf(err, el, "'method' must be an HTTP method");
            return false;
        }
    }
    long long v;
    v = 0;
    if (!get_int(o, "latency_ms", 0, 600000, &v, err, el))
        return false;
    r->latency_ms = (int)v;
    v = 0;
    if (!get_int(o, "status", 100, 599, &v, err, el))
        return false;
    r->status = (int)v;
    v = -1;
    if (!get_int(o, "retry_after_s", 0, 86400, &v, err, el))
        return false;
    r->retry_after_s = (int)v;
    v = r->hang_ms;
    if (!get_int(o, "hang_ms", 0, 600000, &v, err, el))
        return false;
    r->hang_ms = (int)v;
    if (!get_int(o, "count", 0, INT64_MAX, &r->count, err, el))
        return false;
    if (!get_int(o, "every", 1, INT64_MAX, &r->every, err, el))
        return false;
    x = json_object_get(o, "probability");
    if (x) {
        if (!json_is_number(x) || json_number_value(x) < 0 ||
            json_number_value(x) > 1) {
            snprintf(err, el, "'probability' must be a number in [0, 1]");
            return false;
        }
        r->probability = json_number_value(x);
    }
    x = json_object_get(o, "hang");
    if (x) {
        if (!json_is_boolean(x)) {
            snprintf(err, el, "'hang' must be a boolean");
            return false;
        }
        r->hang = json_is_true(x);
    }
    x = json_object_get(o, "process");
    if (x) {
        if (!json_is_boolean(x) || !r->hang) {
            snprintf(err, el, "'process' must be a boolean, with 'hang'");
            return false;
        }
        r->process = json_is_true(x);
    }
    x = json_object_get(o, "body");
    if (x)
        r->body = json_incref(x);
    return true;
}

static bool rule_matches(const struct sb_rule *r, const struct sb_req *rq)
{
    if (r->provider >= 0 && r->provider != (int)rq->provider)
        return false;
    if (r->method >= 0 && r->method != rq->method)
        return false;
    if (r->path_prefix) {
        size_t n = strlen(r->path_prefix);
        if (strncmp(rq->sub, r->path_prefix, n) != 0 &&
            strncmp(rq->path, r->path_prefix, n) != 0)
            return false;
    }
    return true;
}

static bool rule_fires(struct sb *s, struct sb_rule *r)
{
    r->matched++;
    if (r->every > 0 && r->matched % r->every != 0)
        return false;
    if (r->probability >= 0 &&
        (double)(sb_rand(s) >> 11) / 9007199254740992.0 >= r->probability)
        return false;
    if (r->count >= 0 && r->fired >= r->count)
        return false;
    r->fired++;
    return true;
}

static json_t *provider_error_body(enum sb_provider p, int status)
{
    switch (p) {
    case SB_P_HUBSPOT: return hs_error_body(status);
    case SB_P_ZAPIER: return zap_error_body(status);
    case SB_P_RETELL: return retell_error_body(status);
    case SB_P_GHL: return ghl_error_body(status);
    case SB_P_OAUTH: return oauth_error_body(status);
    case SB_P_SENTRY: return sentry_error_body(status);
    case SB_P_GCAL:
    case SB_P_CALCOM:
    case SB_P_CALENDLY:
    case SB_P_OUTLOOK: return cal_sb_error_body(p, status);
    case SB_P_STRIPE: return stripe_error_body(status);
    case SB_P_TWILIO: return twilio_error_body(status);
    case SB_P_SENDGRID: return sendgrid_error_body(status);
    case SB_P_PIPEDRIVE: return pd_error_body(status);
    case SB_P_ZOHO: return zoho_error_body(status);
    case SB_P_SALESFORCE: return sf_error_body(status);
    case SB_P_MONDAY: return monday_error_body(status);
    case SB_P_HCP: return hcp_error_body(status);
    case SB_P_SEGMENT: return segment_error_body(status);
    default: return custom_error_body(status);
    }
}

/* Apply the first rule that fires. True when the answer is decided. */
static bool apply_faults(struct sb *s, const struct sb_req *rq,
                         struct sb_resp *out)
{
    for (size_t i = 0; i < s->nrules; i++) {
        struct sb_rule *r = &s->rules[i];
        if (!rule_matches(r, rq) || !rule_fires(s, r))
            continue;
        out->delay_ms += r->latency_ms;
        if (r->hang) {
            out->hang_ms = r->hang_ms > 0 ? r->hang_ms : 1;
            return !r->process;
        }
        if (!r->status)
            return false;
        json_t *body = r->body ? json_incref(r->body)
                               : provider_error_body(rq->provider, r->status);
        sb_resp_json(out, r->status, body);
        if (r->retry_after_s >= 0)
            sb_resp_header(out, "Retry-After: %d", r->retry_after_s);
        if (rq->provider == SB_P_HUBSPOT)
            hs_rate_headers(s, out);
        if (rq->provider == SB_P_GHL)
            ghl_rate_headers(s, out);
        cal_sb_rate_headers(s, rq->provider, out);
        if (rq->provider == SB_P_SENDGRID)
            sendgrid_rate_headers(s, out);
        if (rq->provider == SB_P_PIPEDRIVE)
            pd_rate_headers(s, rq, out);
        if (rq->provider == SB_P_SALESFORCE)
            sf_limit_headers(s, out);
        return true;
    }
    return false;
}

/* ---- Control API -------------------------------------------------------- */

static json_t *rule_json(const struct sb_rule *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "provider",
                        json_string(r->provider < 0
                                        ? "*"
                                        : provider_names[r->provider]));
    if (r->path_prefix)
        json_object_set_new(o, "path_prefix", json_string(r->path_prefix));
    if (r->method >= 0)
        json_object_set_new(
            o, "method",
            json_string(http_method_str((enum http_method)r->method)));
    json_object_set_new(o, "latency_ms", json_integer(r->latency_ms));
    if (r->status)
        json_object_set_new(o, "status", json_integer(r->status));
    if (r->retry_after_s >= 0)
        json_object_set_new(o, "retry_after_s",
                            json_integer(r->retry_after_s));
    if (r->body)
        json_object_set(o, "body", r->body);
    if (r->hang) {
        json_object_set_new(o, "hang", json_true());
        if (r->process)
            json_object_set_new(o, "process", json_true());
        json_object_set_new(o, "hang_ms", json_integer(r->hang_ms));
    }
    if (r->count >= 0)
        json_object_set_new(o, "count", json_integer(r->count));
    if (r->every > 0)
        json_object_set_new(o, "every", json_integer(r->every));
    if (r->probability >= 0)
        json_object_set_new(o, "probability", json_real(r->probability));
    json_object_set_new(o, "matched", json_integer(r->matched));
    json_object_set_new(o, "fired", json_integer(r->fired));
    return o;
}

static void control_error(struct sb_resp *out, int status, const char *msg)
{
    sb_resp_json(out, status, json_pack("{s:s}", "error", msg));
}

static void control_faults_set(struct sb *s, const struct sb_req *rq,
                               struct sb_resp *out)
{
    json_t *j = sb_body_json(rq);
    json_t *list = j;
    if (json_is_object(j))
        list = json_object_get(j, "rules");
    if (!json_is_array(list)) {
        json_decref(j);
        control_error(out, 400, "body must be a JSON list of rules");
        return;
    }
    size_t n = json_array_size(list);
    struct sb_rule *rules = xcalloc(n ? n : 1, sizeof(*rules));
    char err[160];
    for (size_t i = 0; i < n; i++) {
        if (!rule_parse(json_array_get(list, i), &rules[i], err,
                        sizeof(err))) {
            for (size_t k = 0; k <= i; k++) {
                free(rules[k].path_prefix);
                json_decref(rules[k].body);
            }
            free(rules);
            json_decref(j);
            char *msg = xasprintf("rule %zu: %s", i, err);
            control_error(out, 400, msg);
            free(msg);
            return;
        }
    }
    json_decref(j);
    free_rules(s);
    s->rules = rules;
    s->nrules = n;
    sb_resp_json(out, 200, json_pack("{s:i}", "rules", (int)n));
}

static void control_faults_get(struct sb *s, struct sb_resp *out)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->nrules; i++)
        json_array_append_new(a, rule_json(&s->rules[i]));
    sb_resp_json(out, 200, json_pack("{s:o}", "rules", a));
}

static void control_records(struct sb *s, const struct sb_req *rq,
                            struct sb_resp *out)
{
    char *prov = sb_query_param(rq->query, "provider");
    char *type = sb_query_param(rq->query, "type");
    json_t *recs = NULL;
    const char *p = prov ? prov : "";
    const char *t = type ? type : "";
    if (!*p && (strcmp(t, "hooks") == 0))
        p = "zapier";
    else if (!*p && strcmp(t, "custom") == 0)
        p = "custom";
    else if (!*p && *t)
        p = "hubspot";
    if (strcmp(p, "hubspot") == 0)
        recs = hs_records(s, *t ? t : "contacts");
    else if (strcmp(p, "zapier") == 0 && (!*t || strcmp(t, "hooks") == 0))
        recs = json_incref(s->zapier_hooks);
    else if (strcmp(p, "retell") == 0 && (!*t || strcmp(t, "calls") == 0))
        recs = json_incref(s->retell_calls);
    else if (strcmp(p, "custom") == 0 && (!*t || strcmp(t, "custom") == 0))
        recs = json_incref(s->custom);
    else if (strcmp(p, "gohighlevel") == 0)
        recs = ghl_records(s, *t ? t : "contacts");
    else if (strcmp(p, "sentry") == 0 && (!*t || strcmp(t, "events") == 0))
        recs = json_incref(s->sentry_events);
    else if (strcmp(p, "stripe") == 0)
        recs = stripe_records(s, *t ? t : "customers");
    else if (strcmp(p, "twilio") == 0)
        recs = twilio_records(s, *t ? t : "messages");
    else if (strcmp(p, "sendgrid") == 0)
        recs = sendgrid_records(s, *t ? t : "mails");
    else if (strcmp(p, "pipedrive") == 0)
        recs = pd_records(s, *t ? t : "persons");
    else if (strcmp(p, "zoho") == 0)
        recs = zoho_records(s, *t ? t : "leads");
    else if (strcmp(p, "salesforce") == 0)
        recs = sf_records(s, *t ? t : "leads");
    else if (strcmp(p, "monday") == 0)
        recs = monday_records(s, *t ? t : "items");
    else if (strcmp(p, "housecall_pro") == 0)
        recs = hcp_records(s, *t ? t : "customers");
    else if (strcmp(p, "segment") == 0)
        recs = segment_records(s, *t ? t : "tracks");
    else
        recs = cal_sb_records(s, p, t);
    free(prov);
    free(type);
    if (!recs) {
        control_error(out, 400, "unknown provider or type");
        return;
    }
    /* ?count=1 answers {"count": n} instead of the records, and with
     * &distinct=<property> also how many distinct values of
     * records[].properties.<property> there are (or, for records without
     * properties such as Zapier's, of records[].<property>): tests count
     * duplicates without fetching thousands of records. */
    char *count = sb_query_param(rq->query, "count");
    if (count && strcmp(count, "1") == 0) {
        char *prop = sb_query_param(rq->query, "distinct");
        json_t *o = json_pack("{s:I}", "count",
                              (json_int_t)json_array_size(recs));
        if (prop) {
            json_t *seen = json_object();
            size_t i;
            json_t *r;
            json_array_foreach(recs, i, r)
            {
                /* HubSpot keeps fields under "properties", the others
                 * at the top of the record. */
                const json_t *props = json_object_get(r, "properties");
                const char *v = json_string_value(
                    json_object_get(props ? props : r, prop));
                if (v)
                    json_object_set_new(seen, v, json_true());
            }
            json_object_set_new(o, "distinct",
                                json_integer((json_int_t)json_object_size(seen)));
            json_decref(seen);
            free(prop);
        }
        free(count);
        json_decref(recs);
        sb_resp_json(out, 200, o);
        return;
    }
    free(count);
    sb_resp_json(out, 200, json_pack("{s:o}", "records", recs));
}

static void control_requests(struct sb *s, const struct sb_req *rq,
                             struct sb_resp *out)
{
    char *prov = sb_query_param(rq->query, "provider");
    char *since = sb_query_param(rq->query, "since_ms");
    int pf = -1;
    if (prov && *prov) {
        pf = provider_parse(prov);
        if (pf == -2 && strcmp(prov, "other") == 0)
            pf = SB_P_OTHER;
    }
    int64_t since_ms = since && *since ? strtoll(since, NULL, 10) : 0;
    free(prov);
    free(since);
    if (pf == -2) {
        control_error(out, 400, "unknown provider");
        return;
    }
    struct buf b;
    buf_init(&b, SIZE_MAX / 2);
    int rc = buf_adds(&b, "{\"requests\":[");
    bool first = true;
    for (size_t i = 0; i < s->ring_len && !rc; i++) {
        const struct sb_logged *e =
            &s->ring[(s->ring_head + i) % s->ring_cap];
        if ((pf >= 0 && e->provider != pf) || e->at_ms < since_ms)
            continue;
        json_t *path = json_string(e->path);
        char *ps = json_dumps(path, JSON_ENCODE_ANY);
        json_decref(path);
        rc = buf_addf(&b,
                      "%s{\"method\":\"%s\",\"path\":%s,\"provider\":\"%s\","
                      "\"status\":%u,\"received_at_ms\":%lld}",
                      first ? "" : ",",
                      http_method_str((enum http_method)e->method),
                      ps ? ps : "\"\"", provider_names[e->provider],
                      (unsigned)e->status, (long long)e->at_ms);
        free(ps);
        first = false;
    }
    if (!rc)
        rc = buf_adds(&b, "]}");
    CS_ASSERT(rc == 0);
    free(out->body);
    out->status = 200;
    out->body = buf_take(&b, &out->len);
}

static void control_stats(struct sb *s, struct sb_resp *out)
{
    json_t *o = json_object();
    long long total = 0;
    for (int p = 0; p < SB_P_CONTROL; p++) {
        json_t *by = json_object();
        long long n = 0;
        for (int st = 0; st < 600; st++) {
            if (!s->stats[p][st])
                continue;
            char key[8];
            snprintf(key, sizeof(key), "%d", st);
            json_object_set_new(by, key, json_integer(s->stats[p][st]));
            n += s->stats[p][st];
        }
        json_object_set_new(o, provider_names[p],
                            json_pack("{s:I,s:o}", "total", (json_int_t)n,
                                      "by_status", by));
        total += n;
    }
    sb_resp_json(out, 200,
                 json_pack("{s:I,s:o}", "total", (json_int_t)total,
                           "providers", o));
}

static void control(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out)
{
    const char *p = rq->sub;
    bool post = rq->method == HTTP_POST;
    bool get = rq->method == HTTP_GET;
    if (strcmp(p, "/reset") == 0 && post) {
        sb_reset(s);
        sb_resp_json(out, 200, json_pack("{s:b}", "reset", 1));
    } else if (strcmp(p, "/faults") == 0 && (post || rq->method == HTTP_PUT)) {
        control_faults_set(s, rq, out);
    } else if (strcmp(p, "/faults") == 0 && get) {
        control_faults_get(s, out);
    } else if (strcmp(p, "/records") == 0 && get) {
        control_records(s, rq, out);
    } else if (strcmp(p, "/requests") == 0 && get) {
        control_requests(s, rq, out);
    } else if (strcmp(p, "/stats") == 0 && get) {
        control_stats(s, out);
    } else if (strncmp(p, "/oauth/", 7) == 0) {
        oauth_control(s, rq, out);
    } else if (strncmp(p, "/stripe/", 8) == 0) {
        stripe_control(s, rq, out);
    } else if (strcmp(p, "/health") == 0 && get) {
        sb_resp_json(out, 200, json_pack("{s:s}", "status", "ok"));
    } else {
        control_error(out, 404, "no such control route");
    }
}

/* ---- Dispatch ----------------------------------------------------------- */

static void classify(struct sb_req *rq)
{
    rq->provider = SB_P_OTHER;
    rq->sub = rq->path;
    static const char ctl[] = "/_sandbox";
    if (strncmp(rq->path, ctl, sizeof(ctl) - 1) == 0 &&
        (rq->path[sizeof(ctl) - 1] == '/' || !rq->path[sizeof(ctl) - 1])) {
        rq->provider = SB_P_CONTROL;
        rq->sub = rq->path + sizeof(ctl) - 1;
        return;
    }
    for (int i = 0; i < (int)CS_ARRAY_LEN(provider_prefix); i++) {
        size_t n = strlen(provider_prefix[i]);
        if (strncmp(rq->path, provider_prefix[i], n) == 0 &&
            (rq->path[n] == '/' || !rq->path[n])) {
            rq->provider = (enum sb_provider)i;
            rq->sub = rq->path + n;
            return;
        }
    }
}

void sb_dispatch(struct sb *s, struct sb_req *rq, struct sb_resp *out)
{
    rq->received_ms = cs_now_ms();
    classify(rq);
    if (rq->provider == SB_P_CONTROL) {
        control(s, rq, out);
        return;
    }
    out->delay_ms = s->latency_ms;
    if (!apply_faults(s, rq, out)) {
        switch (rq->provider) {
        case SB_P_HUBSPOT: hs_handle(s, rq, out); break;
        case SB_P_ZAPIER: zap_handle(s, rq, out); break;
        case SB_P_RETELL: retell_handle(s, rq, out); break;
        case SB_P_CUSTOM: custom_handle(s, rq, out); break;
        case SB_P_GHL: ghl_handle(s, rq, out); break;
        case SB_P_OAUTH: oauth_handle(s, rq, out); break;
        case SB_P_SENTRY: sentry_handle(s, rq, out); break;
        case SB_P_GCAL:
        case SB_P_CALCOM:
        case SB_P_CALENDLY:
        case SB_P_OUTLOOK: cal_sb_handle(s, rq, out); break;
        case SB_P_STRIPE: stripe_handle(s, rq, out); break;
        case SB_P_TWILIO: twilio_handle(s, rq, out); break;
        case SB_P_SENDGRID: sendgrid_handle(s, rq, out); break;
        case SB_P_PIPEDRIVE: pd_handle(s, rq, out); break;
        case SB_P_ZOHO: zoho_handle(s, rq, out); break;
        case SB_P_SALESFORCE: sf_handle(s, rq, out); break;
        case SB_P_MONDAY: monday_handle(s, rq, out); break;
        case SB_P_HCP: hcp_handle(s, rq, out); break;
        case SB_P_SEGMENT: segment_handle(s, rq, out); break;
        default:
            sb_resp_json(out, 404,
                         json_pack("{s:s,s:s}", "error", "not_found",
                                   "message", "no provider at this path"));
            break;
        }
    }
    int status = out->hang_ms > 0 ? 0 : out->status;
    log_request(s, rq, status);
    log_debug("sandbox_request", LOG_S("provider", provider_names[rq->provider]),
              LOG_S("method", http_method_str((enum http_method)rq->method)),
              LOG_S("path", rq->path), LOG_I("status", status),
              LOG_I("delay_ms", out->delay_ms));
}
