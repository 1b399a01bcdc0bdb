/*
 * calendars.c - the calendar providers of the sandbox: Google Calendar
 * (/google_calendar), Cal.com (/cal_com), Calendly (/calendly) and
 * Outlook through Microsoft Graph (/outlook). This file holds what they
 * share: state, options, tokens, the sliding-window rate counters, the
 * records and the error bodies of injected faults; each provider's routes
 * are in its own file.
 *
 * Options (each may repeat the token flag):
 *   --google-calendar-token T   --google-calendar-rate N (per minute, 600)
 *   --cal-com-token T           --cal-com-rate N (per minute, 120)
 *   --calendly-token T          --calendly-rate N (per minute, 500)
 *   --outlook-token T           --outlook-rate N (per 10 minutes, 10000)
 */
#include "calendars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const opt_names[SBC_COUNT] = {
    "google-calendar", "cal-com", "calendly", "outlook"};
static const int default_rate[SBC_COUNT] = {600, 120, 500, 10000};

int64_t sbc_window_ms(enum sb_cal_which w)
{
    return w == SBC_OUTLOOK ? 600000 : 60000;
}

struct sb_cal *cal_sb_new(void)
{
    struct sb_cal *c = xcalloc(1, sizeof(*c));
    for (int i = 0; i < SBC_COUNT; i++)
        c->rate[i] = default_rate[i];
    c->gcal_events = json_array();
    c->calcom_bookings = json_array();
    c->calendly_events = json_array();
    c->calendly_invitees = json_array();
    c->outlook_events = json_array();
    c->next_id = 1;
    return c;
}

void cal_sb_reset(struct sb_cal *c)
{
    for (int i = 0; i < SBC_COUNT; i++) {
        free(c->win[i].t);
        memset(&c->win[i], 0, sizeof(c->win[i]));
    }
    json_array_clear(c->gcal_events);
    json_array_clear(c->calcom_bookings);
    json_array_clear(c->calendly_events);
    json_array_clear(c->calendly_invitees);
    json_array_clear(c->outlook_events);
    c->next_id = 1;
}

void cal_sb_free(struct sb_cal *c)
{
    if (!c)
        return;
    cal_sb_reset(c);
    json_decref(c->gcal_events);
    json_decref(c->calcom_bookings);
    json_decref(c->calendly_events);
    json_decref(c->calendly_invitees);
    json_decref(c->outlook_events);
    free(c);
}

bool cal_sb_option(struct sb *s, const char *flag, const char *val)
{
    if (strncmp(flag, "--", 2) != 0)
        return false;
    for (int i = 0; i < SBC_COUNT; i++) {
        size_t n = strlen(opt_names[i]);
        if (strncmp(flag + 2, opt_names[i], n) != 0)
            continue;
        const char *rest = flag + 2 + n;
        if (strcmp(rest, "-token") == 0 && *val &&
            s->cal->ntokens[i] < SB_MAX_TOKENS) {
            s->cal->tokens[i][s->cal->ntokens[i]++] = val;
            return true;
        }
        if (strcmp(rest, "-rate") == 0) {
            char *end;
            long v = strtol(val, &end, 10);
            if (*end || v < 1 || v > 10000000)
                return false;
            s->cal->rate[i] = (int)v;
            return true;
        }
    }
    return false;
}

/* ---- Rate windows -------------------------------------------------------- */

static void window_trim(struct sbc_window *w, int64_t now, int64_t span)
{
    while (w->len && w->t[w->head] <= now - span) {
        w->head = (w->head + 1) % w->cap;
        w->len--;
    }
}

bool sbc_rate_take(struct sb *s, enum sb_cal_which which)
{
    struct sbc_window *w = &s->cal->win[which];
    int64_t now = cs_mono_ms();
    if (!w->t) {
        w->cap = (size_t)s->cal->rate[which];
        w->t = xcalloc(w->cap, sizeof(*w->t));
    }
    window_trim(w, now, sbc_window_ms(which));
    if (w->len >= w->cap)
        return false;
    w->t[(w->head + w->len) % w->cap] = now;
    w->len++;
    return true;
}

long sbc_rate_left(struct sb *s, enum sb_cal_which which)
{
    struct sbc_window *w = &s->cal->win[which];
    if (!w->t)
        return s->cal->rate[which];
    window_trim(w, cs_mono_ms(), sbc_window_ms(which));
    return (long)(w->cap - w->len);
}

int64_t sbc_rate_reset_ms(struct sb *s, enum sb_cal_which which)
{
    struct sbc_window *w = &s->cal->win[which];
    int64_t now = cs_mono_ms();
    if (!w->t)
        return sbc_window_ms(which);
    window_trim(w, now, sbc_window_ms(which));
    if (!w->len)
        return sbc_window_ms(which);
    int64_t d = w->t[w->head] + sbc_window_ms(which) - now;
    return d > 0 ? d : 1;
}

/* ---- Small helpers ------------------------------------------------------- */

bool sbc_authorised(struct sb *s, enum sb_cal_which w,
                    const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return false;
    const char *tok = a + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return false;
    if (!s->cal->ntokens[w])
        return true;
    for (size_t i = 0; i < s->cal->ntokens[w]; i++)
        if (strcmp(tok, s->cal->tokens[w][i]) == 0)
            return true;
    return false;
}

long long sbc_next_id(struct sb *s)
{
    return s->cal->next_id++;
}

void sbc_time(int64_t ms, bool frac, char out[32])
{
    if (frac)
        cs_rfc3339_ms(ms, out);
    else
        cs_rfc3339_s(ms, out);
}

bool sbc_query_time(const struct sb_req *rq, const char *name, bool date_ok,
                    bool end_of_day, int64_t *out)
{
    char *v = sb_query_param(rq->query, name);
    bool ok = false;
    if (v && date_ok && strlen(v) == 10) {
        char *full = xasprintf("%sT%s", v, end_of_day ? "23:59:59Z"
                                                      : "00:00:00Z");
        ok = cs_parse_rfc3339(full, out);
        free(full);
    } else if (v) {
        ok = cs_parse_rfc3339(v, out);
    }
    free(v);
    return ok;
}

/* ---- Entry points -------------------------------------------------------- */

void cal_sb_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    switch (rq->provider) {
    case SB_P_GCAL: gcal_sb_handle(s, rq, out); break;
    case SB_P_CALCOM: calcom_sb_handle(s, rq, out); break;
    case SB_P_CALENDLY: calendly_sb_handle(s, rq, out); break;
    case SB_P_OUTLOOK: outlook_sb_handle(s, rq, out); break;
    default:
        sb_resp_json(out, 404, json_pack("{s:s}", "error", "not_found"));
        break;
    }
}

json_t *cal_sb_error_body(enum sb_provider p, int status)
{
    const char *reason = sb_reason(status);
    switch (p) {
    case SB_P_GCAL:
        return gcal_sb_error(status,
                             status == 401   ? "authError"
                             : status == 429 ? "rateLimitExceeded"
                             : status >= 500 ? "backendError"
                                             : "invalid",
                             status == 401 ? "Invalid Credentials" : reason);
    case SB_P_CALCOM:
        return calcom_sb_error(NULL, status,
                               status == 401   ? "UnauthorizedException"
                               : status == 429 ? "ThrottlerException"
                               : status >= 500 ? "InternalServerErrorException"
                                               : "BadRequestException",
                               reason);
    case SB_P_CALENDLY:
        return calendly_sb_error(status,
                                 status == 401 ? "Unauthenticated" : reason,
                                 status == 401 ? "The access token is invalid"
                                               : reason);
    default:
        return outlook_sb_error(status,
                                status == 401   ? "InvalidAuthenticationToken"
                                : status == 429 ? "TooManyRequests"
                                : status >= 500 ? "ServiceNotAvailable"
                                                : "ErrorInvalidRequest",
                                reason);
    }
}

void cal_sb_rate_headers(struct sb *s, enum sb_provider p,
                         struct sb_resp *out)
{
    if (p == SB_P_CALCOM)
        calcom_sb_rate_headers(s, out);
    else if (p == SB_P_CALENDLY)
        calendly_sb_rate_headers(s, out);
}

json_t *cal_sb_records(struct sb *s, const char *provider, const char *type)
{
    struct sb_cal *c = s->cal;
    const char *t = type && *type ? type : NULL;
    if (strcmp(provider, "google_calendar") == 0 &&
        (!t || strcmp(t, "events") == 0))
        return json_incref(c->gcal_events);
    if (strcmp(provider, "cal_com") == 0 && (!t || strcmp(t, "bookings") == 0))
        return json_incref(c->calcom_bookings);
    if (strcmp(provider, "calendly") == 0 && (!t || strcmp(t, "events") == 0))
        return json_incref(c->calendly_events);
    if (strcmp(provider, "calendly") == 0 && strcmp(t, "invitees") == 0)
        return json_incref(c->calendly_invitees);
    if (strcmp(provider, "outlook") == 0 && (!t || strcmp(t, "events") == 0))
        return json_incref(c->outlook_events);
    return NULL;
}
