/*
 * cal_com.c - Cal.com API v2 in the sandbox, under /cal_com (the real
 * base is https://api.cal.com):
 *
 *   GET  /v2/me                                       the key's user
 *   GET  /v2/slots?eventTypeId&start&end[&timeZone]   cal-api-version
 *                                                     2024-09-04
 *   POST /v2/bookings                                 2024-08-13
 *   GET  /v2/bookings?eventTypeId&attendeeEmail&afterStart&beforeEnd&
 *                     take&skip                       2024-08-13
 *
 * Errors are Cal.com's {"status": "error", "timestamp", "path", "error":
 * {"code", "message"}}: 401 UnauthorizedException without a bearer token
 * (or one not given by --cal-com-token); 400 BadRequestException for a
 * missing or wrong cal-api-version (the real API falls back to an older
 * version instead; the sandbox refuses so that a wrong header shows),
 * missing or malformed fields, metadata over its limits (50 keys, keys up
 * to 40 characters, string values up to 500), a start in the past, and a
 * slot that is taken ("User either already has booking at this time or is
 * not available"). Every positive eventTypeId exists: 30-minute slots on
 * the half hour, all day, every day (UTC), the event type's accepted
 * bookings excluded; slots are answered in UTC ("...Z"). Every answer
 * carries X-RateLimit-Limit-Default, X-RateLimit-Remaining-Default and
 * X-RateLimit-Reset-Default (unix seconds); past --cal-com-rate requests
 * in a minute, 429 ThrottlerException with Retry-After.
 */
#include "calendars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_MS (30 * 60000LL)
#define V_SLOTS "2024-09-04"
#define V_BOOKINGS "2024-08-13"

json_t *calcom_sb_error(const struct sb_req *rq, int status,
                        const char *code, const char *message)
{
    CS_UNUSED(status);
    char now[32];
    sbc_time(cs_now_ms(), true, now);
    json_t *b = json_pack("{s:s,s:s,s:{s:s,s:s}}", "status", "error",
                          "timestamp", now, "error", "code", code, "message",
                          message);
    if (rq)
        json_object_set_new(b, "path", json_string(rq->path));
    return b;
}

static void fail(const struct sb_req *rq, struct sb_resp *out, int status,
                 const char *code, const char *message)
{
    sb_resp_json(out, status, calcom_sb_error(rq, status, code, message));
}

void calcom_sb_rate_headers(struct sb *s, struct sb_resp *out)
{
    int64_t reset = (cs_now_ms() + sbc_rate_reset_ms(s, SBC_CALCOM) + 999) /
                    1000;
    sb_resp_header(out, "X-RateLimit-Limit-Default: %d",
                   s->cal->rate[SBC_CALCOM]);
    sb_resp_header(out, "X-RateLimit-Remaining-Default: %ld",
                   sbc_rate_left(s, SBC_CALCOM));
    sb_resp_header(out, "X-RateLimit-Reset-Default: %lld", (long long)reset);
}

static bool version_is(const struct sb_req *rq, const char *want)
{
    const char *v = sb_header(rq, "cal-api-version");
    return v && strcmp(v, want) == 0;
}

/* Whether an accepted booking of the event type overlaps [s, e). */
static bool taken(struct sb *s, long long et, int64_t st, int64_t en)
{
    size_t i;
    json_t *b;
    json_array_foreach(s->cal->calcom_bookings, i, b) {
        int64_t bs, be;
        if (json_integer_value(json_object_get(b, "eventTypeId")) != et ||
            strcmp(json_string_value(json_object_get(b, "status")),
                   "accepted") != 0 ||
            !cs_parse_rfc3339(json_string_value(json_object_get(b, "start")),
                              &bs) ||
            !cs_parse_rfc3339(json_string_value(json_object_get(b, "end")),
                              &be))
            continue;
        if (bs < en && be > st)
            return true;
    }
    return false;
}

static long long query_id(const struct sb_req *rq, const char *name)
{
    char *v = sb_query_param(rq->query, name);
    long long id = -1;
    if (v && *v) {
        char *end;
        id = strtoll(v, &end, 10);
        if (*end)
            id = -1;
    }
    free(v);
    return id;
}

static void slots(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    int64_t from, to;
    long long et = query_id(rq, "eventTypeId");
    if (!version_is(rq, V_SLOTS)) {
        fail(rq, out, 400, "BadRequestException",
             "cal-api-version must be " V_SLOTS " for /v2/slots");
    } else if (!sbc_query_time(rq, "start", true, false, &from) ||
               !sbc_query_time(rq, "end", true, true, &to)) {
        fail(rq, out, 400, "BadRequestException",
             "start and end must be ISO 8601 date strings in UTC");
    } else if (et <= 0) {
        fail(rq, out, 400, "BadRequestException",
             "eventTypeId must be a positive number");
    } else if (to <= from || to - from > 62LL * 86400000) {
        fail(rq, out, 400, "BadRequestException",
             "end must be after start and within 62 days of it");
    } else {
        json_t *data = json_object();
        int64_t now = cs_now_ms();
        int64_t t = (from + SLOT_MS - 1) / SLOT_MS * SLOT_MS;
        for (; t + SLOT_MS <= to; t += SLOT_MS) {
            if (t < now || taken(s, et, t, t + SLOT_MS))
                continue;
            char st[32], day[16];
            sbc_time(t, true, st);
            snprintf(day, sizeof(day), "%.10s", st);
            json_t *list = json_object_get(data, day);
            if (!list) {
                list = json_array();
                json_object_set_new(data, day, list);
            }
            json_array_append_new(list, json_pack("{s:s}", "start", st));
        }
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:o}", "status", "success", "data",
                               data));
    }
}

/* The first problem of a create-booking body, or NULL. */
static const char *booking_problem(const json_t *b, int64_t *start,
                                   long long *et)
{
    const json_t *att = json_object_get(b, "attendee");
    const json_t *meta = json_object_get(b, "metadata");
    const char *email = json_string_value(json_object_get(att, "email"));
    if (!cs_parse_rfc3339(json_string_value(json_object_get(b, "start")),
                          start))
        return "start must be an ISO 8601 date string in UTC";
    if (!json_is_integer(json_object_get(b, "eventTypeId")) ||
        (*et = json_integer_value(json_object_get(b, "eventTypeId"))) <= 0)
        return "eventTypeId must be a positive number";
    if (!json_is_object(att))
        return "attendee must be an object";
    if (!json_string_value(json_object_get(att, "name")))
        return "attendee.name must be a string";
    if (!json_string_value(json_object_get(att, "timeZone")))
        return "attendee.timeZone must be a string";
    if (email ? !strchr(email, '@')
              : !json_string_value(json_object_get(att, "phoneNumber")))
        return "attendee.email must be an email";
    if (meta && !json_is_object(meta))
        return "metadata must be an object";
    if (json_object_size(meta) > 50)
        return "metadata can have at most 50 keys";
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)meta, k, v) {
        if (strlen(k) > 40)
            return "metadata keys can be at most 40 characters";
        if (json_is_string(v) && json_string_length(v) > 500)
            return "metadata string values can be at most 500 characters";
    }
    return NULL;
}

static void create(struct sb *s, const struct sb_req *rq,
                   struct sb_resp *out)
{
    json_t *b = NULL;
    int64_t start = 0;
    long long et = 0;
    const char *problem = NULL;
    if (!version_is(rq, V_BOOKINGS)) {
        fail(rq, out, 400, "BadRequestException",
             "cal-api-version must be " V_BOOKINGS " for /v2/bookings");
    } else if (!sb_is_json_object(rq, &b)) {
        fail(rq, out, 400, "BadRequestException", "Invalid JSON body");
    } else if ((problem = booking_problem(b, &start, &et))) {
        fail(rq, out, 400, "BadRequestException", problem);
    } else if (start < cs_now_ms()) {
        fail(rq, out, 400, "BadRequestException",
             "Attempting to book a meeting in the past.");
    } else if (start % SLOT_MS != 0 || taken(s, et, start, start + SLOT_MS)) {
        fail(rq, out, 400, "BadRequestException",
             "User either already has booking at this time or is not "
             "available");
    } else {
        long long id = sbc_next_id(s);
        char st[32], en[32], now[32], uid[40];
        sbc_time(start, true, st);
        sbc_time(start + SLOT_MS, true, en);
        sbc_time(rq->received_ms, true, now);
        snprintf(uid, sizeof(uid), "sbuid%017lld", id);
        const json_t *meta = json_object_get(b, "metadata");
        json_t *bk = json_pack(
            "{s:I,s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:[O],s:s,s:s}", "id",
            (json_int_t)id, "uid", uid, "title", "30 Min Meeting", "status",
            "accepted", "start", st, "end", en, "duration", 30,
            "eventTypeId", (json_int_t)et, "attendees",
            json_object_get(b, "attendee"), "createdAt", now, "updatedAt",
            now);
        json_object_set_new(bk, "metadata",
                            meta ? json_deep_copy(meta) : json_object());
        json_array_append(s->cal->calcom_bookings, bk);
        sb_resp_json(out, 201,
                     json_pack("{s:s,s:o}", "status", "success", "data", bk));
    }
    json_decref(b);
}

static bool attendee_has(const json_t *bk, const char *email)
{
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(bk, "attendees"), i, a) {
        const char *e = json_string_value(json_object_get(a, "email"));
        if (e && strcmp(e, email) == 0)
            return true;
    }
    return false;
}

static void list(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    long long et = query_id(rq, "eventTypeId");
    long long take = query_id(rq, "take");
    long long skip = query_id(rq, "skip");
    char *email = sb_query_param(rq->query, "attendeeEmail");
    int64_t after = 0, before = 0;
    bool has_after = sbc_query_time(rq, "afterStart", false, false, &after);
    bool has_before = sbc_query_time(rq, "beforeEnd", false, false, &before);
    if (!version_is(rq, V_BOOKINGS)) {
        fail(rq, out, 400, "BadRequestException",
             "cal-api-version must be " V_BOOKINGS " for /v2/bookings");
    } else if (take == 0 || take > 250) {
        fail(rq, out, 400, "BadRequestException",
             "take must be between 1 and 250");
    } else {
        if (take < 0)
            take = 100;
        if (skip < 0)
            skip = 0;
        json_t *all = json_array();
        size_t i;
        json_t *bk;
        json_array_foreach(s->cal->calcom_bookings, i, bk) {
            int64_t bs, be;
            cs_parse_rfc3339(json_string_value(json_object_get(bk, "start")),
                             &bs);
            cs_parse_rfc3339(json_string_value(json_object_get(bk, "end")),
                             &be);
            if ((et > 0 &&
                 json_integer_value(json_object_get(bk, "eventTypeId")) !=
                     et) ||
                (email && !attendee_has(bk, email)) ||
                (has_after && bs < after) || (has_before && be > before))
                continue;
            json_array_append(all, bk);
        }
        long long total = (long long)json_array_size(all);
        json_t *page = json_array();
        for (long long k = skip; k < total && k < skip + take; k++)
            json_array_append(page, json_array_get(all, (size_t)k));
        long long returned = (long long)json_array_size(page);
        long long pages = (total + take - 1) / take;
        json_t *pg = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b}", "totalItems",
            (json_int_t)total, "remainingItems",
            (json_int_t)(total - skip - returned > 0
                             ? total - skip - returned
                             : 0),
            "returnedItems", (json_int_t)returned, "itemsPerPage",
            (json_int_t)take, "currentPage", (json_int_t)(skip / take + 1),
            "totalPages", (json_int_t)pages, "hasNextPage",
            skip + returned < total, "hasPreviousPage", skip > 0);
        json_decref(all);
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:o,s:o}", "status", "success", "data",
                               page, "pagination", pg));
    }
    free(email);
}

void calcom_sb_handle(struct sb *s, const struct sb_req *rq,
                      struct sb_resp *out)
{
    if (!sbc_authorised(s, SBC_CALCOM, rq)) {
        fail(rq, out, 401, "UnauthorizedException", "Invalid Access Token.");
    } else if (!sbc_rate_take(s, SBC_CALCOM)) {
        fail(rq, out, 429, "ThrottlerException",
             "ThrottlerException: Too Many Requests");
        sb_resp_header(out, "Retry-After: %lld",
                       (long long)(sbc_rate_reset_ms(s, SBC_CALCOM) + 999) /
                           1000);
    } else if (strcmp(rq->sub, "/v2/me") == 0 && rq->method == HTTP_GET) {
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:{s:i,s:s,s:s,s:s,s:s,s:i,s:s,s:s}}",
                               "status", "success", "data", "id", 4201,
                               "username", "sandbox-host", "email",
                               "host@example.com", "name", "Sandbox Host",
                               "timeZone", "America/Chicago", "timeFormat",
                               12, "weekStart", "Monday", "locale", "en"));
    } else if (strcmp(rq->sub, "/v2/slots") == 0 && rq->method == HTTP_GET) {
        slots(s, rq, out);
    } else if (strcmp(rq->sub, "/v2/bookings") == 0 &&
               rq->method == HTTP_POST) {
        create(s, rq, out);
    } else if (strcmp(rq->sub, "/v2/bookings") == 0 &&
               rq->method == HTTP_GET) {
        list(s, rq, out);
    } else {
        fail(rq, out, 404, "NotFoundException", "Cannot find this route");
    }
    calcom_sb_rate_headers(s, out);
}
