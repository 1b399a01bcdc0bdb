/*
 * google_calendar.c - the Google Calendar provider (Calendar API v3 at
 * www.googleapis.com/calendar/v3), following Google's reference for
 * events.insert, events.get and freebusy.query, the discovery document
 * (calendar.v3, rev 20251028: the Event schema and its client-chosen
 * id) and the "Handle API errors" and quota guides.
 *
 * Step "appointment": events.insert into config.calendar_id ("primary"
 * by default) with OUR event id: the base32hex text of the job id (the
 * id must be 5-1024 characters of a-v and 0-9). A second insert with the
 * same id is refused with 409 reason "duplicate" ("The requested
 * identifier already exists."), which means the first one went through:
 * the event is read with events.get and adopted. So a repeat after an
 * unknown outcome never writes a second event (reconciled by key), and an
 * event the agent booked during the call with the same key (calendar.h)
 * is found the same way. An event that was created and later deleted
 * keeps its id (events.get answers it with status "cancelled"); it is
 * adopted too, not booked again.
 *
 * The event: summary (appointment title), description (customer, summary,
 * the job marker), start/end as local time with offset plus the IANA zone,
 * the caller as attendee when the call has an email, sendUpdates from
 * config.send_updates ("all" by default: Google mails the invitation;
 * "externalOnly" or "none"), and extendedProperties.private.callsync_job
 * = job id.
 *
 * Availability: freebusy.query over the window for the calendar, then
 * calendar.h's slots around the busy intervals.
 *
 * Errors ({"error": {"code", "message", "errors": [{"domain", "reason",
 * "message"}]}}): 403 or 429 with reason rateLimitExceeded or
 * userRateLimitExceeded are rate limits (Retry-After, else 10 s);
 * quotaExceeded and dailyLimitExceeded wait until midnight Pacific time
 * (when Google resets daily quotas); 401 (authError) is auth; other 403s
 * (forbiddenForNonOrganizer, insufficientPermissions, ...), 400 and 404
 * are permanent with Google's message; 5xx retry.
 *
 * Connection config: calendar_id, send_updates, timezone and the business
 * hours of calendar.h. Rate: 600 requests per minute per user (the
 * per-user quota; the per-project 10,000 is shared by every user).
 */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GCAL_BASE_URL "https://www.googleapis.com"

static const char *calendar_id(const struct prov_ctx *ctx)
{
    const char *c = json_string_value(json_object_get(ctx->config,
                                                      "calendar_id"));
    return c && *c ? c : "primary";
}

static char *calendar_path(const struct prov_ctx *ctx, const char *rest)
{
    char *c = prov_url_escape(calendar_id(ctx));
    char *p = xasprintf("/calendar/v3/calendars/%s%s", c, rest);
    free(c);
    return p;
}

/* The first errors[].reason of a Google error body, and its message. */
static void error_reason(const json_t *b, char *reason, size_t rn,
                         char *msg, size_t mn)
{
    const json_t *e = json_object_get(b, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    const json_t *first = json_array_get(json_object_get(e, "errors"), 0);
    const char *r = json_string_value(json_object_get(first, "reason"));
    snprintf(reason, rn, "%s", r ? r : "");
    snprintf(msg, mn, "%s", m ? m : "");
}

static void gcal_fail(const struct prov_ctx *ctx,
                      const struct prov_response *rsp,
                      struct prov_result *res)
{
    char reason[48], msg[200];
    json_t *b = cal_body(rsp);
    error_reason(b, reason, sizeof(reason), msg, sizeof(msg));
    json_decref(b);
    res->code[0] = '\0';
    res->message[0] = '\0';
    if (reason[0])
        snprintf(res->code, sizeof(res->code), "%s", reason);
    if (msg[0])
        snprintf(res->message, sizeof(res->message), "%s", msg);
    prov_classify(rsp, res);
    int st = rsp->status;
    bool rate = strcmp(reason, "rateLimitExceeded") == 0 ||
                strcmp(reason, "userRateLimitExceeded") == 0;
    bool daily = strcmp(reason, "quotaExceeded") == 0 ||
                 strcmp(reason, "dailyLimitExceeded") == 0;
    if ((st == 403 || st == 429) && daily) {
        res->outcome = PROV_RATE_LIMITED;
        if (res->retry_after_ms < 0)
            res->retry_after_ms =
                cal_until_midnight("America/Los_Angeles", ctx->now_ms);
    } else if ((st == 403 && rate) || st == 429) {
        res->outcome = PROV_RATE_LIMITED;
        if (res->retry_after_ms < 0)
            res->retry_after_ms = 10000;
    }
}

/* ---- Availability -------------------------------------------------------- */

static int avail_build(struct prov_ctx *ctx, const struct cal_query *q,
                       struct prov_request *rq, struct cs_err *err)
{
    int64_t from, to;
    struct cal_hours h;
    if (cal_query_check(q, ctx->now_ms, &from, &to, err) < 0 ||
        cal_hours_from_config(ctx->config, &h, err) < 0)
        return CS_EINVAL;
    char a[32], z[32];
    cal_utc(from, a);
    cal_utc(to, z);
    int rc = cal_begin(ctx, rq, "POST", GCAL_BASE_URL,
                       "/calendar/v3/freeBusy", err);
    if (rc < 0)
        return rc;
    json_t *body = json_pack("{s:s,s:s,s:s,s:[{s:s}]}", "timeMin", a,
                             "timeMax", z, "timeZone", "UTC", "items", "id",
                             calendar_id(ctx));
    prov_request_json(rq, body);
    json_decref(body);
    return 0;
}

static void avail_parse(struct prov_ctx *ctx, const struct cal_query *q,
                        const struct prov_response *rsp,
                        struct prov_result *res, struct cal_slots *out)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status < 200 || rsp->status >= 300) {
        gcal_fail(ctx, rsp, res);
        return;
    }
    json_t *b = cal_body(rsp);
    const json_t *cal = json_object_get(json_object_get(b, "calendars"),
                                        calendar_id(ctx));
    const json_t *busy = json_object_get(cal, "busy");
    const json_t *errs = json_object_get(cal, "errors");
    struct cal_hours h;
    struct cs_err err = {0};
    int64_t from, to;
    if (json_array_size(errs) > 0) {
        const char *r = json_string_value(
            json_object_get(json_array_get(errs, 0), "reason"));
        cal_fail(res, PROV_PERMANENT, r ? r : "calendar_error",
                 "free/busy of calendar '%.80s' failed: %s",
                 calendar_id(ctx), r ? r : "unknown reason");
    } else if (!json_is_array(busy)) {
        cal_bad_body(rsp, res);
    } else if (cal_hours_from_config(ctx->config, &h, &err) < 0 ||
               cal_query_check(q, ctx->now_ms, &from, &to, &err) < 0) {
        cal_fail(res, PROV_PERMANENT, "config_error", "%s", err.msg);
    } else {
        struct cal_slots bs = {0};
        size_t i;
        const json_t *iv;
        bool ok = true;
        json_array_foreach(busy, i, iv) {
            int64_t s, e;
            if (!cs_parse_rfc3339(json_string_value(
                                      json_object_get(iv, "start")), &s) ||
                !cs_parse_rfc3339(json_string_value(
                                      json_object_get(iv, "end")), &e)) {
                ok = false;
                break;
            }
            cal_slots_add(&bs, s, e);
        }
        if (ok) {
            size_t before = out->n;
            cal_free_slots(&h, from, to, ctx->now_ms, bs.v, bs.n, out);
            cal_done(res, json_pack("{s:i}", "slots",
                                    (int)(out->n - before)));
        } else {
            cal_bad_body(rsp, res);
        }
        cal_slots_release(&bs);
    }
    json_decref(b);
}

/* ---- Booking ------------------------------------------------------------- */

static int send_updates(const struct prov_ctx *ctx, const char **out,
                        struct cs_err *err)
{
    const json_t *v = json_object_get(ctx->config, "send_updates");
    const char *s = v ? json_string_value(v) : "all";
    if (!s || (strcmp(s, "all") != 0 && strcmp(s, "externalOnly") != 0 &&
               strcmp(s, "none") != 0))
        return cs_err_set(err, CS_EINVAL, "config.send_updates",
                          "config_error: send_updates must be all, "
                          "externalOnly or none");
    *out = s;
    return 0;
}

static json_t *when_json(const char *tz, int64_t ms, struct cs_err *err)
{
    char t[40];
    if (!when_local_rfc3339(tz, ms, t)) {
        cs_err_set(err, CS_EINVAL, "call.appointment.timezone",
                   "mapping_error: unknown time zone '%.64s'", tz);
        return NULL;
    }
    return json_pack("{s:s,s:s}", "dateTime", t, "timeZone", tz);
}

static json_t *event_body(const struct cal_booking *b, const char *id,
                          struct cs_err *err)
{
    json_t *start = when_json(b->tz, b->start_ms, err);
    json_t *end = start ? when_json(b->tz, b->end_ms, err) : NULL;
    if (!end) {
        json_decref(start);
        return NULL;
    }
    json_t *ev = json_pack("{s:s,s:s,s:s,s:o,s:o,s:{s:{s:s}}}", "id", id,
                           "summary", b->title, "description",
                           b->description, "start", start, "end", end,
                           "extendedProperties", "private", "callsync_job",
                           b->key);
    if (b->email) {
        json_t *att = json_pack("{s:s}", "email", b->email);
        if (b->name)
            json_object_set_new(att, "displayName", json_string(b->name));
        json_object_set_new(ev, "attendees", json_pack("[o]", att));
    }
    return ev;
}

static int book_build(struct prov_ctx *ctx, const struct cal_booking *b,
                      struct prov_request *rq, struct cs_err *err)
{
    char *id = cal_base32hex(b->key);
    int rc;
    if (strcmp(cal_phase(ctx), "get") == 0) {
        char *e = prov_url_escape(id);
        char *rest = xasprintf("/events/%s", e);
        char *path = calendar_path(ctx, rest);
        rc = cal_begin(ctx, rq, "GET", GCAL_BASE_URL, path, err);
        free(path);
        free(rest);
        free(e);
        free(id);
        return rc;
    }
    const char *su = "all";
    json_t *ev = NULL;
    if (send_updates(ctx, &su, err) < 0 || !(ev = event_body(b, id, err))) {
        free(id);
        return CS_EINVAL;
    }
    char *path = calendar_path(ctx, "/events");
    rc = cal_begin(ctx, rq, "POST", GCAL_BASE_URL, path, err);
    if (rc == 0) {
        cal_query_add(&rq->url, "sendUpdates", su);
        prov_request_json(rq, ev);
    }
    free(path);
    json_decref(ev);
    free(id);
    return rc;
}

static void book_parse(struct prov_ctx *ctx, const struct cal_booking *b,
                       const struct prov_response *rsp,
                       struct prov_result *res)
{
    CS_UNUSED(b);
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    bool get = strcmp(cal_phase(ctx), "get") == 0;
    if (!get && rsp->status == 409) {
        char reason[48], msg[200];
        json_t *e = cal_body(rsp);
        error_reason(e, reason, sizeof(reason), msg, sizeof(msg));
        json_decref(e);
        if (strcmp(reason, "duplicate") == 0) {
            /* Written before: read it back and adopt it. */
            cal_next(ctx, res, "get");
            return;
        }
    }
    if (get && rsp->status == 404) {
        /* The id is taken (409) but the event cannot be read here:
         * Google's view is still settling; ask again later. */
        cal_fail(res, PROV_RETRY, "duplicate_unreadable",
                 "the event id exists but the event cannot be read yet");
        return;
    }
    if (rsp->status < 200 || rsp->status >= 300) {
        gcal_fail(ctx, rsp, res);
        return;
    }
    json_t *ev = cal_body(rsp);
    const char *id = json_string_value(json_object_get(ev, "id"));
    if (!id || !*id) {
        cal_bad_body(rsp, res);
    } else {
        json_t *v = json_pack("{s:s}", "event_id", id);
        const char *link = json_string_value(json_object_get(ev,
                                                             "htmlLink"));
        if (link)
            json_object_set_new(v, "html_link", json_string(link));
        if (get)
            json_object_set_new(v, "existing", json_true());
        cal_done(res, v);
    }
    json_decref(ev);
}

/* ---- The post-call step -------------------------------------------------- */

static bool appt_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call);
}

static int appt_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    return cal_step_build(&cal_google_calendar, ctx, rq, err);
}

static void appt_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    cal_step_parse(&cal_google_calendar, ctx, rsp, res);
}

/* ---- Probe: callsyncctl connections test -------------------------------- */

/*
 * One read: GET /calendar/v3/calendars/{calendarId} (Calendars: get) on
 * the configured calendar ("primary" by default): the token is valid and
 * may see that calendar; the answer names it and gives its time zone,
 * the one events are read in. Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    char *path = calendar_path(ctx, "");
    int rc = cal_begin(ctx, rq, "GET", GCAL_BASE_URL, path, err);
    free(path);
    return rc;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    if (rsp->status < 200 || rsp->status >= 300) {
        gcal_fail(ctx, rsp, res);
        return;
    }
    json_t *b = cal_body(rsp);
    const char *id = json_string_value(json_object_get(b, "id"));
    if (!id)
        cal_fail(res, PROV_PERMANENT, "unexpected_answer",
                 "the calendar answer has no id");
    else
        cal_done(res, json_pack(
                          "{s:s,s:s?,s:s?}", "calendar_id", id, "summary",
                          json_string_value(json_object_get(b, "summary")),
                          "time_zone",
                          json_string_value(json_object_get(b, "timeZone"))));
    json_decref(b);
}

static const struct prov_step gcal_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step gcal_steps[] = {
    {"appointment", PROV_RECONCILE_KEY, appt_applies, appt_build,
     appt_parse},
};

const struct prov_ops prov_google_calendar = {
    .name = "google_calendar",
    .steps = gcal_steps,
    .nsteps = CS_ARRAY_LEN(gcal_steps),
    .rate = {600, 60000},
    .probe = &gcal_probe,
};

const struct cal_ops cal_google_calendar = {
    .name = "google_calendar",
    .avail_build = avail_build,
    .avail_parse = avail_parse,
    .book_build = book_build,
    .book_parse = book_parse,
};
