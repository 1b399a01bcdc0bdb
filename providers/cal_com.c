/*
 * cal_com.c - the Cal.com provider, API v2 at api.cal.com/v2, following
 * Cal.com's API reference ("Create a booking", "Get all bookings", "Get
 * available time slots for an event type") and its rate-limit page.
 *
 * Every request carries "Authorization: Bearer <API key>" and the
 * cal-api-version its endpoint names: 2024-09-04 for /v2/slots,
 * 2024-08-13 for /v2/bookings (without it the endpoints fall back to
 * older versions with other shapes).
 *
 * Step "appointment": the bookings of the event type starting at the
 * appointment (GET /v2/bookings?eventTypeId&afterStart&beforeEnd, and
 * attendeeEmail when the call has one) are searched for our key in
 * metadata.callsync_job; only when none has it, POST /v2/bookings with
 * start (UTC), eventTypeId, attendee {name, email, timeZone, phoneNumber}
 * and metadata {callsync_job: job id, call_id}. The look-up runs before
 * every create, not only after an unknown outcome, because the agent may
 * have booked the slot during the call with the same key (calendar.h);
 * so a repeat never books twice (reconciled by key, found by lookup).
 * A booking found with our key is adopted whatever its status: one the
 * customer cancelled is not booked again.
 *
 * Availability: GET /v2/slots?eventTypeId&start&end&timeZone: the event
 * type's bookable starts by date; each slot lasts config
 * slot_duration_minutes (or the "end" the answer gives), filtered by
 * calendar.h's rules.
 *
 * Errors ({"status": "error", "error": {"code", "message", "details"}}):
 * 401 auth; 400/404/422 permanent with Cal.com's message (a slot that is
 * no longer free is a 400); 429 waits for Retry-After, else for
 * X-RateLimit-Reset-<Name> (unix seconds); a success whose
 * X-RateLimit-Remaining-<Name> is 0 pauses the key until that reset.
 *
 * Connection config: event_type_id (required), timezone and the business
 * hours of calendar.h. Rate: 120 requests per 60 s per API key.
 */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CALCOM_BASE_URL "https://api.cal.com"
#define CALCOM_V_SLOTS "2024-09-04"
#define CALCOM_V_BOOKINGS "2024-08-13"
#define CALCOM_PAGE 100

static int event_type(const struct prov_ctx *ctx, long long *out,
                      struct cs_err *err)
{
    const json_t *v = json_object_get(ctx->config, "event_type_id");
    long long id = -1;
    if (json_is_integer(v)) {
        id = json_integer_value(v);
    } else if (json_is_string(v) && *json_string_value(v)) {
        char *end;
        id = strtoll(json_string_value(v), &end, 10);
        if (*end)
            id = -1;
    }
    if (id <= 0)
        return cs_err_set(err, CS_EINVAL, "config.event_type_id",
                          "config_error: event_type_id must be the numeric "
                          "id of a Cal.com event type");
    *out = id;
    return 0;
}

static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, const char *version,
                 struct cs_err *err)
{
    int rc = cal_begin(ctx, rq, method, CALCOM_BASE_URL, path, err);
    if (rc == 0)
        prov_request_header(rq, "cal-api-version", version);
    return rc;
}

/* The X-RateLimit-<what>-<Name> header with the smallest value (the
 * tightest of the limits Cal.com applies), or -1. */
static long long limit_header(const struct prov_response *rsp,
                              const char *what)
{
    char prefix[40];
    snprintf(prefix, sizeof(prefix), "x-ratelimit-%s-", what);
    size_t pl = strlen(prefix);
    long long best = -1;
    for (size_t i = 0; i < rsp->nheaders; i++) {
        if (strncasecmp(rsp->headers[i].name, prefix, pl) != 0)
            continue;
        char *end;
        long long n = strtoll(rsp->headers[i].value, &end, 10);
        if (end != rsp->headers[i].value && *end == '\0' && n >= 0 &&
            (best < 0 || n < best))
            best = n;
    }
    return best;
}

/* ms until the X-RateLimit-Reset-* time, or dflt. */
static int64_t until_reset(const struct prov_ctx *ctx,
                           const struct prov_response *rsp, int64_t dflt)
{
    long long reset = limit_header(rsp, "reset");
    if (reset < 0)
        return dflt;
    int64_t d = (int64_t)reset * 1000 - ctx->now_ms;
    return d > 1000 ? d : 1000;
}

static void note_budget(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (rsp->status >= 200 && rsp->status < 300 &&
        limit_header(rsp, "remaining") == 0)
        res->pause_ms = until_reset(ctx, rsp, 60000);
}

static void calcom_fail(const struct prov_ctx *ctx,
                        const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = cal_body(rsp);
    const json_t *e = json_object_get(b, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg)
        msg = json_string_value(json_object_get(b, "message"));
    if (code && *code)
        snprintf(res->code, sizeof(res->code), "%s", code);
    if (msg && *msg)
        snprintf(res->message, sizeof(res->message), "%s", msg);
    json_decref(b);
    prov_classify(rsp, res);
    if (rsp->status == 429 && res->retry_after_ms < 0)
        res->retry_after_ms = until_reset(ctx, rsp, 60000);
}

/* ---- Availability -------------------------------------------------------- */

static int avail_build(struct prov_ctx *ctx, const struct cal_query *q,
                       struct prov_request *rq, struct cs_err *err)
{
    int64_t from, to;
    struct cal_hours h;
    long long et;
    if (cal_query_check(q, ctx->now_ms, &from, &to, err) < 0 ||
        cal_hours_from_config(ctx->config, &h, err) < 0 ||
        event_type(ctx, &et, err) < 0)
        return CS_EINVAL;
    int rc = begin(ctx, rq, "GET", "/v2/slots", CALCOM_V_SLOTS, err);
    if (rc < 0)
        return rc;
    char a[32], z[32], id[24];
    cal_utc(from, a);
    cal_utc(to, z);
    snprintf(id, sizeof(id), "%lld", et);
    cal_query_add(&rq->url, "eventTypeId", id);
    cal_query_add(&rq->url, "start", a);
    cal_query_add(&rq->url, "end", z);
    cal_query_add(&rq->url, "timeZone", h.tz);
    return 0;
}

static void avail_parse(struct prov_ctx *ctx, const struct cal_query *q,
                        const struct prov_response *rsp,
                        struct prov_result *res, struct cal_slots *out)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    if (rsp->status < 200 || rsp->status >= 300) {
        calcom_fail(ctx, rsp, res);
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
    json_t *b = cal_body(rsp);
    const json_t *data = json_object_get(b, "data");
    if (!json_is_object(data)) {
        cal_bad_body(rsp, res);
        json_decref(b);
        return;
    }
    struct cal_slots got = {0};
    const char *date;
    const json_t *list;
    bool ok = true;
    json_object_foreach((json_t *)data, date, list) {
        size_t i;
        const json_t *sl;
        json_array_foreach(list, i, sl) {
            int64_t s, e;
            if (!cs_parse_rfc3339(json_string_value(
                                      json_object_get(sl, "start")), &s)) {
                ok = false;
                continue;
            }
            if (!cs_parse_rfc3339(json_string_value(
                                      json_object_get(sl, "end")), &e))
                e = s + (int64_t)h.slot_min * 60000;
            if (cal_slot_ok(&h, s, e, from, to, ctx->now_ms))
                cal_slots_add(&got, s, e);
        }
    }
    if (!ok) {
        cal_bad_body(rsp, res);
    } else {
        cal_slots_sort_unique(&got);
        for (size_t i = 0; i < got.n; i++)
            cal_slots_add(out, got.v[i].start_ms, got.v[i].end_ms);
        cal_done(res, json_pack("{s:i}", "slots", (int)got.n));
    }
    cal_slots_release(&got);
    json_decref(b);
}

/* ---- Booking ------------------------------------------------------------- */

static int lookup_build(struct prov_ctx *ctx, const struct cal_booking *b,
                        long long et, struct prov_request *rq,
                        struct cs_err *err)
{
    int rc = begin(ctx, rq, "GET", "/v2/bookings", CALCOM_V_BOOKINGS, err);
    if (rc < 0)
        return rc;
    char id[24], after[32], before[32], take[16], skip[24];
    snprintf(id, sizeof(id), "%lld", et);
    cal_utc(b->start_ms - 60000, after);
    cal_utc(b->start_ms + 86400000, before);
    snprintf(take, sizeof(take), "%d", CALCOM_PAGE);
    snprintf(skip, sizeof(skip), "%lld",
             (long long)json_integer_value(json_object_get(ctx->scratch,
                                                           "skip")));
    cal_query_add(&rq->url, "eventTypeId", id);
    if (b->email)
        cal_query_add(&rq->url, "attendeeEmail", b->email);
    cal_query_add(&rq->url, "afterStart", after);
    cal_query_add(&rq->url, "beforeEnd", before);
    cal_query_add(&rq->url, "take", take);
    cal_query_add(&rq->url, "skip", skip);
    return 0;
}

static int book_build(struct prov_ctx *ctx, const struct cal_booking *b,
                      struct prov_request *rq, struct cs_err *err)
{
    long long et;
    if (event_type(ctx, &et, err) < 0)
        return CS_EINVAL;
    if (strcmp(cal_phase(ctx), "create") != 0)
        return lookup_build(ctx, b, et, rq, err);
    char start[32];
    cal_utc(b->start_ms, start);
    const char *name = b->name ? b->name : b->phone ? b->phone : "Caller";
    json_t *att = json_pack("{s:s,s:s}", "name", name, "timeZone", b->tz);
    if (b->email)
        json_object_set_new(att, "email", json_string(b->email));
    if (b->phone)
        json_object_set_new(att, "phoneNumber", json_string(b->phone));
    json_t *meta = json_pack("{s:s}", "callsync_job", b->key);
    const char *call_id = json_string_value(json_object_get(ctx->call,
                                                            "call_id"));
    if (call_id)
        json_object_set_new(meta, "call_id", json_string(call_id));
    json_t *body = json_pack("{s:s,s:I,s:o,s:o}", "start", start,
                             "eventTypeId", (json_int_t)et, "attendee", att,
                             "metadata", meta);
    int rc = begin(ctx, rq, "POST", "/v2/bookings", CALCOM_V_BOOKINGS, err);
    if (rc == 0)
        prov_request_json(rq, body);
    json_decref(body);
    return rc;
}

static json_t *ids_of(const json_t *bk, bool existing)
{
    const char *uid = json_string_value(json_object_get(bk, "uid"));
    const json_t *id = json_object_get(bk, "id");
    if (!uid || !*uid)
        return NULL;
    json_t *v = json_pack("{s:s}", "booking_uid", uid);
    if (json_is_integer(id))
        json_object_set_new(v, "booking_id", json_incref((json_t *)id));
    const char *st = json_string_value(json_object_get(bk, "status"));
    if (st)
        json_object_set_new(v, "status", json_string(st));
    if (existing)
        json_object_set_new(v, "existing", json_true());
    return v;
}

static void lookup_parse(struct prov_ctx *ctx, const struct cal_booking *b,
                         const struct prov_response *rsp,
                         struct prov_result *res)
{
    json_t *body = cal_body(rsp);
    const json_t *data = json_object_get(body, "data");
    if (!json_is_array(data)) {
        cal_bad_body(rsp, res);
        json_decref(body);
        return;
    }
    size_t i;
    const json_t *bk;
    json_t *hit = NULL;
    json_array_foreach(data, i, bk) {
        const char *k = json_string_value(json_object_get(
            json_object_get(bk, "metadata"), "callsync_job"));
        if (!hit && k && strcmp(k, b->key) == 0)
            hit = ids_of(bk, true);
    }
    bool more = json_is_true(json_object_get(
        json_object_get(body, "pagination"), "hasNextPage"));
    json_int_t got = (json_int_t)json_array_size(data);
    json_decref(body);
    if (hit) {
        cal_done(res, hit);
    } else if (more && got > 0) {
        json_int_t skip = json_integer_value(json_object_get(ctx->scratch,
                                                             "skip"));
        json_object_set_new(ctx->scratch, "skip", json_integer(skip + got));
        res->outcome = PROV_NEXT;
    } else {
        cal_next(ctx, res, "create");
    }
}

static void book_parse(struct prov_ctx *ctx, const struct cal_booking *b,
                       const struct prov_response *rsp,
                       struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    note_budget(ctx, rsp, res);
    if (rsp->status < 200 || rsp->status >= 300) {
        calcom_fail(ctx, rsp, res);
        return;
    }
    if (strcmp(cal_phase(ctx), "create") != 0) {
        lookup_parse(ctx, b, rsp, res);
        return;
    }
    json_t *body = cal_body(rsp);
    const json_t *data = json_object_get(body, "data");
    /* A recurring event type answers with a list of bookings. */
    if (json_is_array(data))
        data = json_array_get(data, 0);
    json_t *v = ids_of(data, false);
    if (v)
        cal_done(res, v);
    else
        cal_bad_body(rsp, res);
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
    return cal_step_build(&cal_cal_com, ctx, rq, err);
}

static void appt_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    cal_step_parse(&cal_cal_com, ctx, rsp, res);
}

/* ---- Probe: callsyncctl connections test -------------------------------- */

/*
 * One read: GET /v2/me ("Get my profile"; with an OAuth token it needs
 * PROFILE_READ): the API key is valid, and whose calendar it books into,
 * with the user's time zone. event_type_id is checked for its form, as
 * the step would; its existence shows at the first booking. Nothing is
 * written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    long long et;
    if (event_type(ctx, &et, err))
        return CS_EINVAL;
    return cal_begin(ctx, rq, "GET", CALCOM_BASE_URL, "/v2/me", err);
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    res->http_status = rsp->status;
    if (rsp->status < 200 || rsp->status >= 300) {
        calcom_fail(ctx, rsp, res);
        return;
    }
    note_budget(ctx, rsp, res);
    json_t *b = cal_body(rsp);
    const json_t *d = json_object_get(b, "data");
    const json_t *id = json_object_get(d, "id");
    long long et = 0;
    struct cs_err err = {0};
    if (!json_is_integer(id)) {
        cal_fail(res, PROV_PERMANENT, "unexpected_answer",
                 "the profile answer has no data.id");
    } else {
        (void)event_type(ctx, &et, &err);
        cal_done(res, json_pack(
                          "{s:O,s:s?,s:s?,s:s?,s:I}", "user_id", id,
                          "username",
                          json_string_value(json_object_get(d, "username")),
                          "email",
                          json_string_value(json_object_get(d, "email")),
                          "time_zone",
                          json_string_value(json_object_get(d, "timeZone")),
                          "event_type_id", (json_int_t)et));
    }
    json_decref(b);
}

static const struct prov_step calcom_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step calcom_steps[] = {
    {"appointment", PROV_RECONCILE_KEY, appt_applies, appt_build,
     appt_parse},
};

const struct prov_ops prov_cal_com = {
    .name = "cal_com",
    .steps = calcom_steps,
    .nsteps = CS_ARRAY_LEN(calcom_steps),
    .rate = {120, 60000},
    .probe = &calcom_probe,
};

const struct cal_ops cal_cal_com = {
    .name = "cal_com",
    .avail_build = avail_build,
    .avail_parse = avail_parse,
    .book_build = book_build,
    .book_parse = book_parse,
};
