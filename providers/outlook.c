/*
 * outlook.c - the Outlook calendar through Microsoft Graph v1.0
 * (graph.microsoft.com), following Graph's reference for "Create event"
 * (POST /me/events, /me/calendars/{id}/events), the event resource
 * (transactionId), "List calendarView", the dateTimeTimeZone type, the
 * error-response format and the throttling guidance.
 *
 * Step "appointment": POST {root}/events with subject, body (text:
 * customer, summary, job marker), start/end as UTC wall-clock time with
 * timeZone "UTC" (Graph shows them in each viewer's zone), the caller as
 * a required attendee when the call has an email (Outlook then sends the
 * invitation; config.invite_attendees false leaves the caller out), and
 * transactionId = the job id: Graph's key "for the server to avoid
 * redundant POST operations in case of client retries to create the
 * same event", so a repeat after an unknown outcome, or the agent's own
 * booking made with the same key during the call (calendar.h), gets the
 * first event back instead of a second one (reconciled by key). A 409 on
 * that POST is a mailbox save conflict (ConcurrentItemSave), not a
 * duplicate, and is retried.
 *
 * Availability: GET {root}/calendarView?startDateTime&endDateTime with
 * Prefer: outlook.timezone="UTC", following @odata.nextLink pages; events
 * shown as busy, tentative, oof or unknown are busy (free and
 * workingElsewhere are not, nor cancelled ones); calendar.h's slots
 * around them.
 *
 * {root} is /v1.0/me, or /v1.0/users/{config.user_id} for an app-only
 * token; with config.calendar_id it is .../calendars/{id}, else the
 * default calendar (/events, /calendarView).
 *
 * Errors ({"error": {"code", "message", "innerError"}}): 401
 * (InvalidAuthenticationToken) auth; 429 and 503/504 wait for Retry-After
 * (Graph sends it when throttling); 400/403/404 permanent with Graph's
 * code and message.
 *
 * Connection config: user_id, calendar_id, invite_attendees, timezone and
 * the business hours of calendar.h. Rate: 10,000 requests per 10 minutes
 * per app and mailbox.
 */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAPH_BASE_URL "https://graph.microsoft.com"
#define GRAPH_PAGE "100"

static const char *cfg_str(const struct prov_ctx *ctx, const char *k)
{
    const char *v = json_string_value(json_object_get(ctx->config, k));
    return v && *v ? v : NULL;
}

/* "/v1.0/me[/calendars/{id}]<rest>" or "/v1.0/users/{user}[...]". */
static char *graph_path(const struct prov_ctx *ctx, const char *rest)
{
    const char *user = cfg_str(ctx, "user_id");
    const char *cal = cfg_str(ctx, "calendar_id");
    char *u = user ? prov_url_escape(user) : NULL;
    char *c = cal ? prov_url_escape(cal) : NULL;
    char *p = xasprintf("/v1.0/%s%s%s%s%s", u ? "users/" : "me", u ? u : "",
                        c ? "/calendars/" : "", c ? c : "", rest);
    free(u);
    free(c);
    return p;
}

static void graph_fail(const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = cal_body(rsp);
    const json_t *e = json_object_get(b, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code && *code)
        snprintf(res->code, sizeof(res->code), "%s", code);
    if (msg && *msg)
        snprintf(res->message, sizeof(res->message), "%s", msg);
    json_decref(b);
    prov_classify(rsp, res);
    if (rsp->status == 409) {
        /* A save conflict in the mailbox: try again. */
        res->outcome = PROV_RETRY;
    }
}

/* Graph's dateTimeTimeZone wall clock without an offset, UTC. */
static void graph_time(int64_t ms, char out[32])
{
    cs_rfc3339_s(ms, out);
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == 'Z')
        out[n - 1] = '\0';
}

/* A dateTimeTimeZone of the answer (UTC asked for) to ms. */
static bool graph_parse_time(const json_t *dt, int64_t *ms)
{
    const char *s = json_string_value(json_object_get(dt, "dateTime"));
    const char *tz = json_string_value(json_object_get(dt, "timeZone"));
    if (!s || strlen(s) < 19 || strlen(s) > 40)
        return false;
    if (tz && strcmp(tz, "UTC") != 0 && strcmp(tz, "Etc/UTC") != 0 &&
        strcmp(tz, "tzone://Microsoft/Utc") != 0)
        return false;
    char buf[48];
    size_t n = strlen(s);
    bool has_zone = s[n - 1] == 'Z' || (n > 19 && (strchr(s + 19, '+') ||
                                                  strchr(s + 19, '-')));
    snprintf(buf, sizeof(buf), "%s%s", s, has_zone ? "" : "Z");
    return cs_parse_rfc3339(buf, ms);
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
    const char *next = json_string_value(json_object_get(ctx->scratch,
                                                         "next"));
    int rc;
    if (next) {
        rc = cal_begin(ctx, rq, "GET", GRAPH_BASE_URL, "", err);
        if (rc == 0) {
            free(rq->url);
            rq->url = xstrdup(next);
        }
    } else {
        char *path = graph_path(ctx, "/calendarView");
        rc = cal_begin(ctx, rq, "GET", GRAPH_BASE_URL, path, err);
        free(path);
        if (rc == 0) {
            char a[32], z[32];
            cal_utc(from, a);
            cal_utc(to, z);
            cal_query_add(&rq->url, "startDateTime", a);
            cal_query_add(&rq->url, "endDateTime", z);
            cal_query_add(&rq->url, "$select", "start,end,showAs,isCancelled");
            cal_query_add(&rq->url, "$top", GRAPH_PAGE);
        }
    }
    if (rc == 0)
        prov_request_header(rq, "Prefer", "outlook.timezone=\"UTC\"");
    return rc;
}

static bool is_busy(const json_t *ev)
{
    if (json_is_true(json_object_get(ev, "isCancelled")))
        return false;
    const char *s = json_string_value(json_object_get(ev, "showAs"));
    return !s || (strcmp(s, "free") != 0 &&
                  strcmp(s, "workingElsewhere") != 0);
}

/* Whether a nextLink stays on the API's own host (ours or Graph's). */
static bool same_base(const struct prov_ctx *ctx, const char *link)
{
    const char *base = ctx->base_url && *ctx->base_url ? ctx->base_url
                                                       : GRAPH_BASE_URL;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    return strncmp(link, base, n) == 0 && link[n] == '/';
}

static void avail_parse(struct prov_ctx *ctx, const struct cal_query *q,
                        const struct prov_response *rsp,
                        struct prov_result *res, struct cal_slots *out)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status < 200 || rsp->status >= 300) {
        graph_fail(rsp, res);
        return;
    }
    json_t *b = cal_body(rsp);
    const json_t *value = json_object_get(b, "value");
    if (!json_is_array(value)) {
        cal_bad_body(rsp, res);
        json_decref(b);
        return;
    }
    json_t *busy = json_object_get(ctx->scratch, "busy");
    if (!json_is_array(busy)) {
        busy = json_array();
        json_object_set_new(ctx->scratch, "busy", busy);
    }
    size_t i;
    const json_t *ev;
    bool ok = true;
    json_array_foreach(value, i, ev) {
        int64_t s, e;
        if (!is_busy(ev))
            continue;
        if (!graph_parse_time(json_object_get(ev, "start"), &s) ||
            !graph_parse_time(json_object_get(ev, "end"), &e)) {
            ok = false;
            break;
        }
        json_array_append_new(busy, json_pack("[I,I]", (json_int_t)s,
                                              (json_int_t)e));
    }
    const char *next = json_string_value(json_object_get(b,
                                                         "@odata.nextLink"));
    if (!ok) {
        cal_bad_body(rsp, res);
    } else if (next && !same_base(ctx, next)) {
        cal_fail(res, PROV_PERMANENT, "bad_next_link",
                 "the next page points away from the API");
    } else if (next) {
        json_object_set_new(ctx->scratch, "next", json_string(next));
        res->outcome = PROV_NEXT;
    } else {
        struct cal_hours h;
        struct cs_err err = {0};
        int64_t from, to;
        if (cal_hours_from_config(ctx->config, &h, &err) < 0 ||
            cal_query_check(q, ctx->now_ms, &from, &to, &err) < 0) {
            cal_fail(res, PROV_PERMANENT, "config_error", "%s", err.msg);
        } else {
            struct cal_slots bs = {0};
            const json_t *iv;
            json_array_foreach(busy, i, iv)
                cal_slots_add(&bs, json_integer_value(json_array_get(iv, 0)),
                              json_integer_value(json_array_get(iv, 1)));
            size_t before = out->n;
            cal_free_slots(&h, from, to, ctx->now_ms, bs.v, bs.n, out);
            cal_done(res, json_pack("{s:i}", "slots",
                                    (int)(out->n - before)));
            cal_slots_release(&bs);
        }
    }
    json_decref(b);
}

/* ---- Booking ------------------------------------------------------------- */

static int book_build(struct prov_ctx *ctx, const struct cal_booking *b,
                      struct prov_request *rq, struct cs_err *err)
{
    const json_t *inv = json_object_get(ctx->config, "invite_attendees");
    if (inv && !json_is_boolean(inv))
        return cs_err_set(err, CS_EINVAL, "config.invite_attendees",
                          "config_error: invite_attendees must be true or "
                          "false");
    char s[32], e[32];
    graph_time(b->start_ms, s);
    graph_time(b->end_ms, e);
    json_t *ev = json_pack(
        "{s:s,s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s},s:s}", "subject", b->title,
        "body", "contentType", "text", "content", b->description, "start",
        "dateTime", s, "timeZone", "UTC", "end", "dateTime", e, "timeZone",
        "UTC", "transactionId", b->key);
    if (b->email && !json_is_false(inv)) {
        json_t *addr = json_pack("{s:s}", "address", b->email);
        if (b->name)
            json_object_set_new(addr, "name", json_string(b->name));
        json_object_set_new(ev, "attendees",
                            json_pack("[{s:o,s:s}]", "emailAddress", addr,
                                      "type", "required"));
    }
    char *path = graph_path(ctx, "/events");
    int rc = cal_begin(ctx, rq, "POST", GRAPH_BASE_URL, path, err);
    if (rc == 0)
        prov_request_json(rq, ev);
    free(path);
    json_decref(ev);
    return rc;
}

static void book_parse(struct prov_ctx *ctx, const struct cal_booking *b,
                       const struct prov_response *rsp,
                       struct prov_result *res)
{
    CS_UNUSED(ctx);
    CS_UNUSED(b);
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status < 200 || rsp->status >= 300) {
        graph_fail(rsp, res);
        return;
    }
    json_t *body = cal_body(rsp);
    const char *id = json_string_value(json_object_get(body, "id"));
    if (id && *id) {
        json_t *v = json_pack("{s:s}", "event_id", id);
        const char *link = json_string_value(json_object_get(body,
                                                             "webLink"));
        if (link)
            json_object_set_new(v, "web_link", json_string(link));
        cal_done(res, v);
    } else {
        cal_bad_body(rsp, res);
    }
    json_decref(body);
}

/* ---- The post-call step -------------------------------------------------- */

static bool appt_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call);
}

static int appt_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    return cal_step_build(&cal_outlook, ctx, rq, err);
}

static void appt_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    cal_step_parse(&cal_outlook, ctx, rsp, res);
}

/* ---- Probe: callsyncctl connections test -------------------------------- */

/*
 * One read: Get calendar (GET {mailbox}/calendar, the default one, or
 * {mailbox}/calendars/{calendar_id}; Calendars.Read or
 * Calendars.ReadWrite): the token is valid and opens that mailbox's
 * calendar; the answer names it and its owner and says whether this
 * token may write to it (canEdit), which every booking needs: a calendar
 * it cannot edit is refused here. Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    char *path = graph_path(ctx, cfg_str(ctx, "calendar_id") ? ""
                                                             : "/calendar");
    int rc = cal_begin(ctx, rq, "GET", GRAPH_BASE_URL, path, err);
    free(path);
    return rc;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    CS_UNUSED(ctx);
    res->http_status = rsp->status;
    if (rsp->status < 200 || rsp->status >= 300) {
        graph_fail(rsp, res);
        return;
    }
    json_t *b = cal_body(rsp);
    const char *id = json_string_value(json_object_get(b, "id"));
    const json_t *owner = json_object_get(b, "owner");
    if (!id) {
        cal_fail(res, PROV_PERMANENT, "unexpected_answer",
                 "the calendar answer has no id");
    } else if (json_is_false(json_object_get(b, "canEdit"))) {
        cal_fail(res, PROV_PERMANENT, "calendar_read_only",
                 "the calendar '%.80s' cannot be edited with this token: "
                 "bookings would be refused",
                 json_string_value(json_object_get(b, "name"))
                     ? json_string_value(json_object_get(b, "name"))
                     : id);
    } else {
        cal_done(res,
                 json_pack("{s:s,s:s?,s:s?,s:b}", "calendar_id", id, "name",
                           json_string_value(json_object_get(b, "name")),
                           "owner",
                           json_string_value(json_object_get(owner,
                                                             "address")),
                           "can_edit", 1));
    }
    json_decref(b);
}

static const struct prov_step outlook_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step outlook_steps[] = {
    {"appointment", PROV_RECONCILE_KEY, appt_applies, appt_build,
     appt_parse},
};

const struct prov_ops prov_outlook = {
    .name = "outlook",
    .steps = outlook_steps,
    .nsteps = CS_ARRAY_LEN(outlook_steps),
    .rate = {10000, 600000},
    .probe = &outlook_probe,
};

const struct cal_ops cal_outlook = {
    .name = "outlook",
    .avail_build = avail_build,
    .avail_parse = avail_parse,
    .book_build = book_build,
    .book_parse = book_parse,
};
