/*
 * calendly.c - the Calendly provider, API v2 at api.calendly.com,
 * following Calendly's developer docs: "Create Event Invitee" (the
 * Scheduling API, POST /invitees, paid plans; release notes of
 * 2026-04-15 for its limits), "List Event Type Available Times", "List
 * Events", "Get current user" and the rate-limit page.
 *
 * Calendly's API books directly since the Scheduling API: POST /invitees
 * with event_type (URI), start_time (UTC), invitee {name, email,
 * timezone}, location (config.location, when the event type needs one)
 * and tracking {utm_source: "callsync", utm_content: job id}. Calendly
 * then sends its usual notifications and calendar invitations. It takes
 * no idempotency key, so the step looks the booking up before every
 * create: the user's scheduled events (GET /scheduled_events?user&
 * invitee_email&min_start_time&max_start_time) for one of this event type
 * starting at the appointment. The user is config.user_uri, else the
 * token's own user (GET /users/me). A hit is adopted, so a repeat after an
 * unknown outcome, or a booking the agent made during the call, is not
 * booked again (reconciled by lookup). Calendly needs the invitee's email;
 * a call without one is a mapping error.
 *
 * Availability: GET /event_type_available_times?event_type&start_time&
 * end_time, at most 7 days per request and never from the past, so a
 * longer window takes one request per week. Calendly answers start times
 * only; a slot lasts config slot_duration_minutes (the event type's
 * length), filtered by calendar.h's rules.
 *
 * Errors ({"title", "message", "details": [{"parameter", "message"}]}):
 * 401 auth; 400/403/404/422 permanent with Calendly's message (403: the
 * plan has no Scheduling API); 429 waits for Retry-After, else
 * X-RateLimit-Reset (seconds); a success whose X-RateLimit-Remaining is
 * 0 pauses the key for X-RateLimit-Reset seconds.
 *
 * Connection config: event_type_uri (a URI, or "/event_types/<uuid>"),
 * user_uri, location, timezone and the business hours of calendar.h.
 * Rate: 10 requests per minute per user, the Create Event Invitee limit
 * of paid non-Enterprise plans (every job writes through it; the
 * general limit is 500 per minute); an Enterprise connection raises it
 * with config.rate_limit.
 */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALENDLY_BASE_URL "https://api.calendly.com"
#define CALENDLY_WEEK_MS (7LL * 86400000)

/* The event type's URI into a fresh string, or NULL with err. */
static char *event_type_uri(const struct prov_ctx *ctx, struct cs_err *err)
{
    const char *v = json_string_value(json_object_get(ctx->config,
                                                      "event_type_uri"));
    if (!v || !*v)
        v = json_string_value(json_object_get(ctx->config, "event_type"));
    if (v && strncmp(v, "/event_types/", 13) == 0 && v[13])
        return xasprintf("%s%s", CALENDLY_BASE_URL, v);
    if (v && strncmp(v, CALENDLY_BASE_URL "/event_types/", 37) == 0 &&
        v[37])
        return xstrdup(v);
    cs_err_set(err, CS_EINVAL, "config.event_type_uri",
               "config_error: event_type_uri must be "
               "https://api.calendly.com/event_types/<uuid>");
    return NULL;
}

static void calendly_fail(const struct prov_ctx *ctx,
                          const struct prov_response *rsp,
                          struct prov_result *res)
{
    CS_UNUSED(ctx);
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = cal_body(rsp);
    const char *title = json_string_value(json_object_get(b, "title"));
    const char *msg = json_string_value(json_object_get(b, "message"));
    const json_t *d0 = json_array_get(json_object_get(b, "details"), 0);
    const char *dp = json_string_value(json_object_get(d0, "parameter"));
    const char *dm = json_string_value(json_object_get(d0, "message"));
    if (title) {
        size_t k = 0;
        for (const char *p = title; *p && k + 1 < sizeof(res->code); p++)
            res->code[k++] = *p == ' ' ? '_'
                             : (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32)
                                                        : *p;
        res->code[k] = '\0';
    }
    if (msg && dm)
        snprintf(res->message, sizeof(res->message), "%s (%s%s%s)", msg,
                 dp ? dp : "", dp ? ": " : "", dm);
    else if (msg)
        snprintf(res->message, sizeof(res->message), "%s", msg);
    json_decref(b);
    prov_classify(rsp, res);
    if (rsp->status == 429 && res->retry_after_ms < 0) {
        long long r = cal_header_int(rsp, "x-ratelimit-reset");
        res->retry_after_ms = r > 0 ? r * 1000 : 60000;
    }
}

static void note_budget(const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (rsp->status >= 200 && rsp->status < 300 &&
        cal_header_int(rsp, "x-ratelimit-remaining") == 0) {
        long long r = cal_header_int(rsp, "x-ratelimit-reset");
        res->pause_ms = r > 0 ? r * 1000 : 60000;
    }
}

/* ---- Availability -------------------------------------------------------- */

/* Where the next weekly request starts: scratch.cursor, else the window's
 * start, never sooner than a minute from now (Calendly refuses a start in
 * the past, and our clock may trail theirs). */
static int64_t cursor_of(const struct prov_ctx *ctx, int64_t from)
{
    const json_t *c = json_object_get(ctx->scratch, "cursor");
    int64_t at = json_is_integer(c) ? json_integer_value(c) : from;
    return at < ctx->now_ms + 60000 ? ctx->now_ms + 60000 : at;
}

static int avail_build(struct prov_ctx *ctx, const struct cal_query *q,
                       struct prov_request *rq, struct cs_err *err)
{
    int64_t from, to;
    struct cal_hours h;
    if (cal_query_check(q, ctx->now_ms, &from, &to, err) < 0 ||
        cal_hours_from_config(ctx->config, &h, err) < 0)
        return CS_EINVAL;
    char *et = event_type_uri(ctx, err);
    if (!et)
        return CS_EINVAL;
    int64_t at = cursor_of(ctx, from);
    if (at >= to) {
        free(et);
        return cs_err_set(err, CS_EINVAL, "window",
                          "the window ends within a minute");
    }
    int64_t end = at + CALENDLY_WEEK_MS < to ? at + CALENDLY_WEEK_MS : to;
    int rc = cal_begin(ctx, rq, "GET", CALENDLY_BASE_URL,
                       "/event_type_available_times", err);
    if (rc == 0) {
        char a[32], z[32];
        cal_utc(at, a);
        cal_utc(end, z);
        cal_query_add(&rq->url, "event_type", et);
        cal_query_add(&rq->url, "start_time", a);
        cal_query_add(&rq->url, "end_time", z);
        json_object_set_new(ctx->scratch, "asked_to", json_integer(end));
    }
    free(et);
    return rc;
}

static void avail_parse(struct prov_ctx *ctx, const struct cal_query *q,
                        const struct prov_response *rsp,
                        struct prov_result *res, struct cal_slots *out)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(rsp, res);
    if (rsp->status < 200 || rsp->status >= 300) {
        calendly_fail(ctx, rsp, res);
        return;
    }
    json_t *b = cal_body(rsp);
    const json_t *coll = json_object_get(b, "collection");
    if (!json_is_array(coll)) {
        cal_bad_body(rsp, res);
        json_decref(b);
        return;
    }
    json_t *starts = json_object_get(ctx->scratch, "starts");
    if (!json_is_array(starts)) {
        starts = json_array();
        json_object_set_new(ctx->scratch, "starts", starts);
    }
    size_t i;
    const json_t *t;
    json_array_foreach(coll, i, t) {
        int64_t s;
        const char *st = json_string_value(json_object_get(t, "status"));
        if ((!st || strcmp(st, "available") == 0) &&
            cs_parse_rfc3339(json_string_value(
                                 json_object_get(t, "start_time")), &s))
            json_array_append_new(starts, json_integer(s));
    }
    json_decref(b);
    int64_t asked_to = json_integer_value(json_object_get(ctx->scratch,
                                                          "asked_to"));
    if (asked_to < q->to_ms) {
        json_object_set_new(ctx->scratch, "cursor", json_integer(asked_to));
        res->outcome = PROV_NEXT;
        return;
    }
    struct cal_hours h;
    struct cs_err err = {0};
    int64_t from, to;
    if (cal_hours_from_config(ctx->config, &h, &err) < 0 ||
        cal_query_check(q, ctx->now_ms, &from, &to, &err) < 0) {
        cal_fail(res, PROV_PERMANENT, "config_error", "%s", err.msg);
        return;
    }
    struct cal_slots got = {0};
    json_array_foreach(starts, i, t) {
        int64_t s = json_integer_value(t);
        int64_t e = s + (int64_t)h.slot_min * 60000;
        if (cal_slot_ok(&h, s, e, from, to, ctx->now_ms))
            cal_slots_add(&got, s, e);
    }
    cal_slots_sort_unique(&got);
    for (i = 0; i < got.n; i++)
        cal_slots_add(out, got.v[i].start_ms, got.v[i].end_ms);
    cal_done(res, json_pack("{s:i}", "slots", (int)got.n));
    cal_slots_release(&got);
}

/* ---- Booking ------------------------------------------------------------- */

static const char *user_uri(const struct prov_ctx *ctx)
{
    const char *u = json_string_value(json_object_get(ctx->scratch, "user"));
    if (!u)
        u = json_string_value(json_object_get(ctx->config, "user_uri"));
    return u && *u ? u : NULL;
}

static int book_build(struct prov_ctx *ctx, const struct cal_booking *b,
                      struct prov_request *rq, struct cs_err *err)
{
    if (!b->email)
        return cs_err_set(err, CS_EINVAL, "call.customer.email",
                          "mapping_error: Calendly books only with the "
                          "invitee's email, and the call has none");
    char *et = event_type_uri(ctx, err);
    if (!et)
        return CS_EINVAL;
    const char *ph = cal_phase(ctx);
    int rc;
    if (strcmp(ph, "create") == 0) {
        char start[32];
        cal_utc(b->start_ms, start);
        json_t *inv = json_pack("{s:s,s:s,s:s}", "name",
                                b->name ? b->name : b->email, "email",
                                b->email, "timezone", b->tz);
        json_t *body = json_pack(
            "{s:s,s:s,s:o,s:{s:s,s:s}}", "event_type", et, "start_time",
            start, "invitee", inv, "tracking", "utm_source", "callsync",
            "utm_content", b->key);
        const json_t *loc = json_object_get(ctx->config, "location");
        if (json_is_object(loc))
            json_object_set(body, "location", (json_t *)loc);
        rc = cal_begin(ctx, rq, "POST", CALENDLY_BASE_URL, "/invitees", err);
        if (rc == 0)
            prov_request_json(rq, body);
        json_decref(body);
    } else if (!user_uri(ctx)) {
        json_object_set_new(ctx->scratch, "phase", json_string("me"));
        rc = cal_begin(ctx, rq, "GET", CALENDLY_BASE_URL, "/users/me", err);
    } else {
        json_object_set_new(ctx->scratch, "phase", json_string("events"));
        rc = cal_begin(ctx, rq, "GET", CALENDLY_BASE_URL,
                       "/scheduled_events", err);
        if (rc == 0) {
            char a[32], z[32];
            cal_utc(b->start_ms, a);
            cal_utc(b->start_ms + 60000, z);
            cal_query_add(&rq->url, "user", user_uri(ctx));
            cal_query_add(&rq->url, "invitee_email", b->email);
            cal_query_add(&rq->url, "min_start_time", a);
            cal_query_add(&rq->url, "max_start_time", z);
            cal_query_add(&rq->url, "count", "100");
        }
    }
    free(et);
    return rc;
}

static void events_parse(struct prov_ctx *ctx, const struct cal_booking *b,
                         const struct prov_response *rsp,
                         struct prov_result *res)
{
    struct cs_err err = {0};
    char *et = event_type_uri(ctx, &err);
    json_t *body = cal_body(rsp);
    const json_t *coll = json_object_get(body, "collection");
    if (!et) {
        cal_fail(res, PROV_PERMANENT, "config_error", "%s", err.msg);
    } else if (!json_is_array(coll)) {
        cal_bad_body(rsp, res);
    } else {
        const char *hit = NULL;
        size_t i;
        const json_t *ev;
        json_array_foreach(coll, i, ev) {
            int64_t s;
            const char *t = json_string_value(json_object_get(ev,
                                                              "event_type"));
            const char *uri = json_string_value(json_object_get(ev, "uri"));
            if (!hit && uri && t && strcmp(t, et) == 0 &&
                cs_parse_rfc3339(json_string_value(
                                     json_object_get(ev, "start_time")),
                                 &s) &&
                s == b->start_ms)
                hit = uri;
        }
        if (hit)
            cal_done(res, json_pack("{s:s,s:b}", "event_uri", hit,
                                    "existing", 1));
        else
            cal_next(ctx, res, "create");
    }
    json_decref(body);
    free(et);
}

static void book_parse(struct prov_ctx *ctx, const struct cal_booking *b,
                       const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(rsp, res);
    if (rsp->status < 200 || rsp->status >= 300) {
        calendly_fail(ctx, rsp, res);
        return;
    }
    const char *ph = cal_phase(ctx);
    if (strcmp(ph, "events") == 0) {
        events_parse(ctx, b, rsp, res);
        return;
    }
    json_t *body = cal_body(rsp);
    const json_t *r = json_object_get(body, "resource");
    const char *uri = json_string_value(json_object_get(r, "uri"));
    if (strcmp(ph, "me") == 0) {
        if (uri && *uri) {
            json_object_set_new(ctx->scratch, "user", json_string(uri));
            cal_next(ctx, res, "lookup");
        } else {
            cal_bad_body(rsp, res);
        }
    } else {
        const char *ev = json_string_value(json_object_get(r, "event"));
        if (uri && *uri && ev && *ev)
            cal_done(res, json_pack("{s:s,s:s}", "invitee_uri", uri,
                                    "event_uri", ev));
        else
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
    return cal_step_build(&cal_calendly, ctx, rq, err);
}

static void appt_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    cal_step_parse(&cal_calendly, ctx, rsp, res);
}

/* ---- Probe: callsyncctl connections test -------------------------------- */

/*
 * Two reads: GET /users/me ("Get current user": the token is valid; whose
 * calendar it books into, its time zone and organisation), then the
 * configured event type, GET /event_types/{uuid} ("Get Event Type"): it
 * exists, this token may see it, and it is active (an inactive one
 * cannot be booked). Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    char *et = event_type_uri(ctx, err);
    if (!et)
        return CS_EINVAL;
    int rc;
    if (!json_object_get(ctx->scratch, "user_uri"))
        rc = cal_begin(ctx, rq, "GET", CALENDLY_BASE_URL, "/users/me", err);
    else /* the URI's path at the (possibly overridden) base */
        rc = cal_begin(ctx, rq, "GET", CALENDLY_BASE_URL,
                       et + strlen(CALENDLY_BASE_URL), err);
    free(et);
    return rc;
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    if (rsp->status < 200 || rsp->status >= 300) {
        calendly_fail(ctx, rsp, res);
        return;
    }
    json_t *b = cal_body(rsp);
    const json_t *r = json_object_get(b, "resource");
    const char *uri = json_string_value(json_object_get(r, "uri"));
    if (!uri) {
        cal_fail(res, PROV_PERMANENT, "unexpected_answer",
                 "the answer has no resource.uri");
    } else if (!json_object_get(ctx->scratch, "user_uri")) {
        json_t *v = json_pack(
            "{s:s,s:s?,s:s?,s:s?}", "user_uri", uri, "user_name",
            json_string_value(json_object_get(r, "name")), "time_zone",
            json_string_value(json_object_get(r, "timezone")),
            "organization",
            json_string_value(json_object_get(r, "current_organization")));
        json_object_update(ctx->scratch, v);
        json_decref(v);
        res->outcome = PROV_NEXT;
    } else if (json_is_false(json_object_get(r, "active"))) {
        cal_fail(res, PROV_PERMANENT, "event_type_inactive",
                 "the event type %s is not active: Calendly books nothing "
                 "on it", uri);
    } else {
        json_t *v = json_deep_copy(ctx->scratch);
        json_object_set_new(v, "event_type_uri", json_string(uri));
        const char *name = json_string_value(json_object_get(r, "name"));
        if (name)
            json_object_set_new(v, "event_type", json_string(name));
        const json_t *d = json_object_get(r, "duration");
        if (json_is_integer(d))
            json_object_set(v, "duration_minutes", (json_t *)d);
        cal_done(res, v);
    }
    json_decref(b);
}

static const struct prov_step calendly_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step calendly_steps[] = {
    {"appointment", PROV_RECONCILE_LOOKUP, appt_applies, appt_build,
     appt_parse},
};

const struct prov_ops prov_calendly = {
    .name = "calendly",
    .steps = calendly_steps,
    .nsteps = CS_ARRAY_LEN(calendly_steps),
    .rate = {10, 60000},
    .probe = &calendly_probe,
};

const struct cal_ops cal_calendly = {
    .name = "calendly",
    .avail_build = avail_build,
    .avail_parse = avail_parse,
    .book_build = book_build,
    .book_parse = book_parse,
};
