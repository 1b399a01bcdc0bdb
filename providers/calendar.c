/*
 * calendar.c - business hours, free slots and bookings shared by the
 * calendar providers. See calendar.h.
 */
#define _GNU_SOURCE
#include "calendar.h"
#include "buf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CAL_SUMMARY_MAX 4000
#define CAL_TEXT_MAX 8000

/* ---- Business hours ----------------------------------------------------- */

/* An hour (integer 0-24) or "HH:MM" into minutes after midnight. */
static bool clock_minutes(const json_t *v, int *out)
{
    if (json_is_integer(v)) {
        json_int_t h = json_integer_value(v);
        if (h < 0 || h > 24)
            return false;
        *out = (int)h * 60;
        return true;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) != 5 || s[2] != ':' || !isdigit((unsigned char)s[0]) ||
        !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[3]) ||
        !isdigit((unsigned char)s[4]))
        return false;
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || m > 59 || (h == 24 && m != 0))
        return false;
    *out = h * 60 + m;
    return true;
}

static int weekday_of(const json_t *v)
{
    if (json_is_integer(v)) {
        json_int_t d = json_integer_value(v);
        return d >= 0 && d <= 6 ? (int)d : -1;
    }
    const char *s = json_string_value(v);
    static const char *const names[] = {"sunday",   "monday", "tuesday",
                                        "wednesday", "thursday", "friday",
                                        "saturday"};
    if (!s || strlen(s) < 3)
        return -1;
    for (int d = 0; d < 7; d++)
        if (strncasecmp(s, names[d], strlen(s)) == 0 &&
            strlen(s) <= strlen(names[d]))
            return d;
    return -1;
}

static bool int_in(const json_t *v, long lo, long hi, int *out)
{
    long n;
    if (json_is_integer(v)) {
        n = (long)json_integer_value(v);
    } else if (json_is_string(v) && *json_string_value(v)) {
        char *end;
        n = strtol(json_string_value(v), &end, 10);
        if (*end)
            return false;
    } else {
        return false;
    }
    if (n < lo || n > hi)
        return false;
    *out = (int)n;
    return true;
}

int cal_hours_from_config(const json_t *config, struct cal_hours *h,
                          struct cs_err *err)
{
    memset(h, 0, sizeof(*h));
    h->open_min = 9 * 60;
    h->close_min = 17 * 60;
    h->days = 0x3e; /* Monday to Friday */
    h->slot_min = 60;
    snprintf(h->tz, sizeof(h->tz), "UTC");
    const json_t *v = json_object_get(config, "timezone");
    if (v) {
        const char *tz = json_string_value(v);
        if (!tz || strlen(tz) >= sizeof(h->tz) || !when_tz_known(tz))
            return cs_err_set(err, CS_EINVAL, "config.timezone",
                              "config_error: unknown time zone '%.64s'",
                              tz ? tz : "");
        snprintf(h->tz, sizeof(h->tz), "%s", tz);
    }
    v = json_object_get(config, "business_hours_start");
    if (v) {
        if (!clock_minutes(v, &h->open_min) || h->open_min >= 1440)
            return cs_err_set(err, CS_EINVAL, "config.business_hours_start",
                              "config_error: business_hours_start must be "
                              "an hour 0-23 or \"HH:MM\"");
        h->explicit_hours = true;
    }
    v = json_object_get(config, "business_hours_end");
    if (v) {
        if (!clock_minutes(v, &h->close_min) || h->close_min == 0)
            return cs_err_set(err, CS_EINVAL, "config.business_hours_end",
                              "config_error: business_hours_end must be an "
                              "hour 1-24 or \"HH:MM\"");
        h->explicit_hours = true;
    }
    if (h->close_min <= h->open_min)
        return cs_err_set(err, CS_EINVAL, "config.business_hours_end",
                          "config_error: business_hours_end must be after "
                          "business_hours_start");
    v = json_object_get(config, "business_days");
    if (v) {
        if (!json_is_array(v))
            return cs_err_set(err, CS_EINVAL, "config.business_days",
                              "config_error: business_days must be a list "
                              "of weekdays");
        h->days = 0;
        size_t i;
        const json_t *d;
        json_array_foreach(v, i, d) {
            int wd = weekday_of(d);
            if (wd < 0)
                return cs_err_set(err, CS_EINVAL, "config.business_days",
                                  "config_error: business_days[%zu] is not "
                                  "a weekday (0-6 or a name)", i);
            h->days |= 1u << wd;
        }
    }
    v = json_object_get(config, "slot_duration_minutes");
    if (v && !int_in(v, 5, 1440, &h->slot_min))
        return cs_err_set(err, CS_EINVAL, "config.slot_duration_minutes",
                          "config_error: slot_duration_minutes must be "
                          "5-1440");
    v = json_object_get(config, "min_notice_minutes");
    if (v && !int_in(v, 0, 60 * 24 * 60, &h->notice_min))
        return cs_err_set(err, CS_EINVAL, "config.min_notice_minutes",
                          "config_error: min_notice_minutes must be 0-86400");
    return 0;
}

/* ---- Slot lists --------------------------------------------------------- */

void cal_slots_add(struct cal_slots *s, int64_t start_ms, int64_t end_ms)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n].start_ms = start_ms;
    s->v[s->n].end_ms = end_ms;
    s->n++;
}

void cal_slots_release(struct cal_slots *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static int slot_cmp(const void *a, const void *b)
{
    const struct cal_slot *x = a, *y = b;
    if (x->start_ms != y->start_ms)
        return x->start_ms < y->start_ms ? -1 : 1;
    return (x->end_ms > y->end_ms) - (x->end_ms < y->end_ms);
}

void cal_slots_sort_unique(struct cal_slots *s)
{
    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof(*s->v), slot_cmp);
    size_t k = 1;
    for (size_t i = 1; i < s->n; i++)
        if (s->v[i].start_ms != s->v[k - 1].start_ms)
            s->v[k++] = s->v[i];
    s->n = k;
}

/* ---- Days and slots ------------------------------------------------------ */

struct civil {
    int y, m, d, wday;
};

/* The civil date k days after c (k may be negative), with its weekday. */
static struct civil civil_add(struct civil c, int k)
{
    struct tm tm = {.tm_year = c.y - 1900, .tm_mon = c.m - 1,
                    .tm_mday = c.d + k, .tm_hour = 12};
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    struct civil r = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_wday};
    return r;
}

/* Opening and closing of a local day, ms. */
static bool day_bounds(const struct cal_hours *h, struct civil c,
                       int64_t *open_ms, int64_t *close_ms)
{
    return when_local_to_ms(h->tz, c.y, c.m, c.d, h->open_min, open_ms) &&
           when_local_to_ms(h->tz, c.y, c.m, c.d, h->close_min, close_ms);
}

static bool overlaps(int64_t s, int64_t e, const struct cal_slot *busy,
                     size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (busy[i].start_ms < e && busy[i].end_ms > s)
            return true;
    return false;
}

void cal_free_slots(const struct cal_hours *h, int64_t from_ms,
                    int64_t to_ms, int64_t now_ms,
                    const struct cal_slot *busy, size_t nbusy,
                    struct cal_slots *out)
{
    struct when_local lp;
    if (to_ms <= from_ms || !when_local_parts(h->tz, from_ms, &lp))
        return;
    int64_t earliest = now_ms + (int64_t)h->notice_min * 60000;
    int64_t slot = (int64_t)h->slot_min * 60000;
    struct civil day0 = {lp.year, lp.month, lp.day, lp.wday};
    /* The business day before the window's local date may run past
     * midnight into it only when close is 24:00; start a day early so
     * that case and odd offsets are covered, and stop once a day opens
     * after the window. */
    for (int k = -1;; k++) {
        struct civil c = civil_add(day0, k);
        int64_t open_ms, close_ms;
        if (!day_bounds(h, c, &open_ms, &close_ms) || open_ms >= to_ms)
            break;
        if (!(h->days & (1u << c.wday)))
            continue;
        for (int64_t t = open_ms; t + slot <= close_ms; t += slot) {
            if (t < from_ms || t < earliest)
                continue;
            if (t + slot > to_ms)
                break;
            if (!overlaps(t, t + slot, busy, nbusy))
                cal_slots_add(out, t, t + slot);
        }
    }
}

bool cal_slot_ok(const struct cal_hours *h, int64_t start_ms,
                 int64_t end_ms, int64_t from_ms, int64_t to_ms,
                 int64_t now_ms)
{
    if (start_ms < from_ms || end_ms > to_ms || end_ms <= start_ms ||
        start_ms < now_ms + (int64_t)h->notice_min * 60000)
        return false;
    if (!h->explicit_hours)
        return true;
    struct when_local lp;
    if (!when_local_parts(h->tz, start_ms, &lp))
        return false;
    struct civil c = {lp.year, lp.month, lp.day, lp.wday};
    int64_t open_ms, close_ms;
    return (h->days & (1u << c.wday)) && day_bounds(h, c, &open_ms,
                                                    &close_ms) &&
           start_ms >= open_ms && end_ms <= close_ms;
}

int cal_query_check(const struct cal_query *q, int64_t now_ms,
                    int64_t *from_ms, int64_t *to_ms, struct cs_err *err)
{
    if (q->to_ms <= q->from_ms)
        return cs_err_set(err, CS_EINVAL, "window",
                          "the window's end must be after its start");
    if (q->to_ms - q->from_ms > CAL_WINDOW_MAX_MS)
        return cs_err_set(err, CS_EINVAL, "window",
                          "the window may span at most 31 days");
    if (q->to_ms <= now_ms)
        return cs_err_set(err, CS_EINVAL, "window",
                          "the window lies in the past");
    *from_ms = q->from_ms < now_ms ? now_ms : q->from_ms;
    *to_ms = q->to_ms;
    return 0;
}

/* ---- Bookings ------------------------------------------------------------ */

static const char *str_at(const json_t *o, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    const char *s = json_string_value(v);
    return s && *s ? s : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* Bytes of s that fit in max without cutting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

static void line(struct buf *b, const char *label, const char *value,
                 size_t max)
{
    if (!value)
        return;
    size_t n = utf8_cut(value, max);
    if (buf_addf(b, "%s: %.*s\n", label, (int)n, value) < 0)
        CS_ASSERT(!"description too long");
}

int cal_booking_from_call(const struct prov_ctx *ctx, struct cal_booking *b,
                          struct cs_err *err)
{
    memset(b, 0, sizeof(*b));
    const char *job_id = str_at(ctx->job, "job_id", NULL);
    if (!job_id)
        return cs_err_set(err, CS_EINVAL, "job.job_id",
                          "mapping_error: the job has no id");
    struct when_appt a;
    if (when_appointment(ctx->call, ctx->config, &a, err) < 0)
        return CS_EINVAL;
    b->start_ms = a.start_ms;
    b->end_ms = a.end_ms;
    snprintf(b->tz, sizeof(b->tz), "%s", a.tz);
    const json_t *cust = json_object_get(ctx->call, "customer");
    b->name = dup_or_null(str_at(cust, "name", NULL));
    b->email = dup_or_null(str_at(cust, "email", NULL));
    b->phone = dup_or_null(str_at(cust, "phone", NULL));
    b->key = xstrdup(job_id);
    const char *title = str_at(ctx->call, "appointment", "title");
    const char *service = str_at(ctx->call, "appointment", "service_type");
    if (title)
        b->title = xstrdup(title);
    else
        b->title = xasprintf("%s%s%s", service ? service : "Appointment",
                             b->name ? " - " : "", b->name ? b->name : "");
    struct buf d;
    buf_init(&d, CAL_TEXT_MAX);
    line(&d, "Customer", b->name, 300);
    line(&d, "Phone", b->phone, 40);
    line(&d, "Email", b->email, 300);
    line(&d, "Service", service, 300);
    line(&d, "Time zone", b->tz, 80);
    line(&d, "Call summary", str_at(ctx->call, "summary", NULL),
         CAL_SUMMARY_MAX);
    char marker[48];
    prov_job_marker(ctx->job, marker);
    line(&d, "Sync reference", marker, 48);
    b->description = buf_take(&d, NULL);
    if (!b->description)
        b->description = xstrdup("");
    return 0;
}

void cal_booking_release(struct cal_booking *b)
{
    free(b->title);
    free(b->description);
    free(b->name);
    free(b->email);
    free(b->phone);
    free(b->key);
    memset(b, 0, sizeof(*b));
}

/* ---- Registry ------------------------------------------------------------ */

const struct cal_ops *cal_find(const char *name)
{
    static const struct cal_ops *const all[] = {
        &cal_google_calendar, &cal_cal_com, &cal_calendly, &cal_outlook};
    for (size_t i = 0; i < CS_ARRAY_LEN(all); i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

/* ---- Requests and answers ------------------------------------------------ */

const char *cal_token(const struct prov_ctx *ctx)
{
    if (!ctx->creds)
        return NULL;
    const char *t = ctx->creds->access_token;
    if (!t || !*t)
        t = ctx->creds->api_key;
    return t && *t ? t : NULL;
}

int cal_begin(const struct prov_ctx *ctx, struct prov_request *rq,
              const char *method, const char *dflt_base, const char *path,
              struct cs_err *err)
{
    const char *token = cal_token(ctx);
    if (!token)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no access "
                          "token or api key");
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url
                                                       : dflt_base;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    rq->method = method;
    rq->url = xasprintf("%.*s%s", (int)bl, base, path);
    char *auth = xasprintf("Bearer %s", token);
    prov_request_header(rq, "Authorization", auth);
    free(auth);
    prov_request_header(rq, "Accept", "application/json");
    return 0;
}

json_t *cal_body(const struct prov_response *rsp)
{
    if (!rsp->body || rsp->body_len == 0)
        return NULL;
    return json_loadb(rsp->body, rsp->body_len, 0, NULL);
}

void cal_fail(struct prov_result *res, enum prov_outcome o, const char *code,
              const char *fmt, ...)
{
    res->outcome = o;
    snprintf(res->code, sizeof(res->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
}

void cal_done(struct prov_result *res, json_t *value)
{
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = value;
}

void cal_bad_body(const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    cal_fail(res, PROV_RETRY, "bad_response",
             "HTTP %d with an unreadable body", rsp->status);
}

void cal_query_add(char **url, const char *name, const char *value)
{
    char *v = prov_url_escape(value);
    char *n = xasprintf("%s%c%s=%s", *url, strchr(*url, '?') ? '&' : '?',
                        name, v);
    free(v);
    free(*url);
    *url = n;
}

char *cal_base32hex(const char *s)
{
    static const char alpha[] = "0123456789abcdefghijklmnopqrstuv";
    size_t n = strlen(s);
    char *out = xmalloc(n * 8 / 5 + 2);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | (unsigned char)s[i];
        bits += 8;
        while (bits >= 5) {
            out[k++] = alpha[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[k++] = alpha[(acc << (5 - bits)) & 31];
    out[k] = '\0';
    return out;
}

void cal_utc(int64_t ms, char out[32])
{
    cs_rfc3339_s(ms, out);
}

int64_t cal_until_midnight(const char *tz, int64_t now_ms)
{
    struct when_local lp;
    int64_t next;
    if (!when_local_parts(tz, now_ms, &lp))
        return 3600000;
    struct civil c = civil_add((struct civil){lp.year, lp.month, lp.day,
                                              lp.wday},
                               1);
    if (!when_local_to_ms(tz, c.y, c.m, c.d, 0, &next))
        return 3600000;
    int64_t d = next - now_ms;
    return d < 60000 ? 60000 : d;
}

/* ---- The post-call step -------------------------------------------------- */

int cal_step_build(const struct cal_ops *ops, struct prov_ctx *ctx,
                   struct prov_request *rq, struct cs_err *err)
{
    struct cal_booking b;
    if (cal_booking_from_call(ctx, &b, err) < 0)
        return CS_EINVAL;
    int rc = ops->book_build(ctx, &b, rq, err);
    cal_booking_release(&b);
    return rc;
}

void cal_step_parse(const struct cal_ops *ops, struct prov_ctx *ctx,
                    const struct prov_response *rsp,
                    struct prov_result *res)
{
    struct cal_booking b;
    struct cs_err err = {0};
    if (cal_booking_from_call(ctx, &b, &err) < 0) {
        res->http_status = rsp->status;
        cal_fail(res, PROV_PERMANENT, "mapping_error", "%s", err.msg);
        return;
    }
    ops->book_parse(ctx, &b, rsp, res);
    cal_booking_release(&b);
}

const char *cal_phase(const struct prov_ctx *ctx)
{
    const char *p = json_string_value(json_object_get(ctx->scratch, "phase"));
    return p ? p : "";
}

void cal_next(struct prov_ctx *ctx, struct prov_result *res,
              const char *phase)
{
    json_object_set_new(ctx->scratch, "phase", json_string(phase));
    res->outcome = PROV_NEXT;
}

long long cal_header_int(const struct prov_response *rsp, const char *name)
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
