/*
 * calendly.c - Calendly API v2 in the sandbox, under /calendly (the real
 * base is https://api.calendly.com):
 *
 *   GET  /users/me
 *   GET  /event_types/{uuid}                        (Get Event Type)
 *   GET  /event_type_available_times?event_type&start_time&end_time
 *   POST /invitees                                  (Scheduling API)
 *   GET  /scheduled_events?user|organization&invitee_email&
 *                          min_start_time&max_start_time&status&count
 *
 * Errors are Calendly's {"title", "message", "details": [{"parameter",
 * "message"}]}: 401 "Unauthenticated" without a bearer token (or one not
 * given by --calendly-token); 400 "Invalid Argument" for missing or
 * malformed parameters, an availability range over 7 days or starting in
 * the past, an invitee without email or timezone, and a start that is not
 * bookable ("The selected time is no longer available."); 403 "Permission
 * Denied" for events of another user; 404 "Resource Not Found".
 *
 * The token's user is https://api.calendly.com/users/SBUSER000000001.
 * Every event type URI https://api.calendly.com/event_types/<id> exists,
 * 30 minutes long, bookable on the half hour all day every day (UTC)
 * where it has no active event. A booking creates a scheduled event and
 * its invitee. Every answer carries X-RateLimit-Limit, -Remaining and
 * -Reset (seconds); past --calendly-rate requests in a minute, 429.
 */
#include "calendars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API "https://api.calendly.com"
#define USER_URI API "/users/SBUSER000000001"
#define ORG_URI API "/organizations/SBORG0000000001"
#define SLOT_MS (30 * 60000LL)
#define WEEK_MS (7 * 86400000LL)

json_t *calendly_sb_error(int status, const char *title, const char *message)
{
    CS_UNUSED(status);
    return json_pack("{s:s,s:s}", "title", title, "message", message);
}

static void fail(struct sb_resp *out, int status, const char *title,
                 const char *message)
{
    sb_resp_json(out, status, calendly_sb_error(status, title, message));
}

static void invalid(struct sb_resp *out, const char *param, const char *msg)
{
    sb_resp_json(out, 400,
                 json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "title",
                           "Invalid Argument", "message",
                           "The supplied parameters are invalid.", "details",
                           "parameter", param, "message", msg));
}

void calendly_sb_rate_headers(struct sb *s, struct sb_resp *out)
{
    sb_resp_header(out, "X-RateLimit-Limit: %d", s->cal->rate[SBC_CALENDLY]);
    sb_resp_header(out, "X-RateLimit-Remaining: %ld",
                   sbc_rate_left(s, SBC_CALENDLY));
    sb_resp_header(out, "X-RateLimit-Reset: %lld",
                   (long long)(sbc_rate_reset_ms(s, SBC_CALENDLY) + 999) /
                       1000);
}

static bool event_type_ok(const char *uri)
{
    static const char pre[] = API "/event_types/";
    return uri && strncmp(uri, pre, sizeof(pre) - 1) == 0 &&
           uri[sizeof(pre) - 1] && !strchr(uri + sizeof(pre) - 1, '/');
}

static bool taken(struct sb *s, const char *et, int64_t st, int64_t en)
{
    size_t i;
    json_t *ev;
    json_array_foreach(s->cal->calendly_events, i, ev) {
        int64_t es, ee;
        if (strcmp(json_string_value(json_object_get(ev, "event_type")),
                   et) != 0 ||
            strcmp(json_string_value(json_object_get(ev, "status")),
                   "active") != 0)
            continue;
        cs_parse_rfc3339(json_string_value(json_object_get(ev, "start_time")),
                         &es);
        cs_parse_rfc3339(json_string_value(json_object_get(ev, "end_time")),
                         &ee);
        if (es < en && ee > st)
            return true;
    }
    return false;
}

static void available_times(struct sb *s, const struct sb_req *rq,
                            struct sb_resp *out)
{
    char *et = sb_query_param(rq->query, "event_type");
    int64_t from, to, now = cs_now_ms();
    if (!event_type_ok(et)) {
        invalid(out, "event_type", "must be a valid event type URI");
    } else if (!sbc_query_time(rq, "start_time", false, false, &from)) {
        invalid(out, "start_time", "is required and must be a date-time");
    } else if (!sbc_query_time(rq, "end_time", false, false, &to)) {
        invalid(out, "end_time", "is required and must be a date-time");
    } else if (from < now) {
        invalid(out, "start_time", "must be in the future");
    } else if (to <= from) {
        invalid(out, "end_time", "must be after start_time");
    } else if (to - from > WEEK_MS) {
        invalid(out, "end_time",
                "date range can be no greater than 1 week (7 days)");
    } else {
        json_t *coll = json_array();
        for (int64_t t = (from + SLOT_MS - 1) / SLOT_MS * SLOT_MS;
             t + SLOT_MS <= to; t += SLOT_MS) {
            if (taken(s, et, t, t + SLOT_MS))
                continue;
            char st[32];
            sbc_time(t, false, st);
            json_array_append_new(
                coll, json_pack("{s:s,s:i,s:s,s:s}", "status", "available",
                                "invitees_remaining", 1, "start_time", st,
                                "scheduling_url",
                                "https://calendly.com/sandbox/30min"));
        }
        sb_resp_json(out, 200, json_pack("{s:o}", "collection", coll));
    }
    free(et);
}

static void create_invitee(struct sb *s, const struct sb_req *rq,
                           struct sb_resp *out)
{
    json_t *b = NULL;
    int64_t start;
    if (!sb_is_json_object(rq, &b)) {
        invalid(out, "body", "must be a JSON object");
        return;
    }
    const char *et = json_string_value(json_object_get(b, "event_type"));
    const json_t *inv = json_object_get(b, "invitee");
    const char *email = json_string_value(json_object_get(inv, "email"));
    const char *tz = json_string_value(json_object_get(inv, "timezone"));
    const char *name = json_string_value(json_object_get(inv, "name"));
    const char *first = json_string_value(json_object_get(inv,
                                                          "first_name"));
    const json_t *tracking = json_object_get(b, "tracking");
    if (!event_type_ok(et)) {
        invalid(out, "event_type", "must be a valid event type URI");
    } else if (!cs_parse_rfc3339(json_string_value(json_object_get(
                                     b, "start_time")),
                                 &start)) {
        invalid(out, "start_time", "is required and must be a date-time");
    } else if (!json_is_object(inv)) {
        invalid(out, "invitee", "is required");
    } else if (!email || !strchr(email, '@')) {
        invalid(out, "invitee.email", "is required and must be an email");
    } else if (!tz || !*tz) {
        invalid(out, "invitee.timezone", "is required");
    } else if (!name && !first) {
        invalid(out, "invitee.name", "name or first_name is required");
    } else if (tracking && !json_is_object(tracking)) {
        invalid(out, "tracking", "must be an object");
    } else if (start < cs_now_ms() || start % SLOT_MS != 0 ||
               taken(s, et, start, start + SLOT_MS)) {
        invalid(out, "start_time", "The selected time is no longer "
                                   "available.");
    } else {
        long long id = sbc_next_id(s);
        char st[32], en[32], now[32], ev_uri[96], inv_uri[160];
        sbc_time(start, true, st);
        sbc_time(start + SLOT_MS, true, en);
        sbc_time(rq->received_ms, true, now);
        snprintf(ev_uri, sizeof(ev_uri), API "/scheduled_events/SBEV%012lld",
                 id);
        snprintf(inv_uri, sizeof(inv_uri), "%s/invitees/SBINV%011lld",
                 ev_uri, id);
        json_t *ev = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:i,s:i,s:i},s:[{s:s,s:s}],"
            "s:s,s:s,s:s}",
            "uri", ev_uri, "name", "30 Minute Meeting", "status", "active",
            "start_time", st, "end_time", en, "event_type", et,
            "invitees_counter", "total", 1, "active", 1, "limit", 1,
            "event_memberships", "user", USER_URI, "user_email",
            "host@example.com", "created_at", now, "updated_at", now,
            "invitee_email", email);
        const json_t *loc = json_object_get(b, "location");
        if (loc)
            json_object_set(ev, "location", (json_t *)loc);
        json_t *iv = json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "uri", inv_uri, "email",
            email, "name", name ? name : first, "status", "active",
            "timezone", tz, "event", ev_uri, "created_at", now, "updated_at",
            now, "rescheduled", 0);
        json_object_set_new(iv, "tracking",
                            tracking ? json_deep_copy(tracking)
                                     : json_object());
        json_array_append_new(s->cal->calendly_events, ev);
        json_array_append(s->cal->calendly_invitees, iv);
        sb_resp_json(out, 201, json_pack("{s:o}", "resource", iv));
    }
    json_decref(b);
}

static void scheduled_events(struct sb *s, const struct sb_req *rq,
                             struct sb_resp *out)
{
    char *user = sb_query_param(rq->query, "user");
    char *org = sb_query_param(rq->query, "organization");
    char *email = sb_query_param(rq->query, "invitee_email");
    char *status = sb_query_param(rq->query, "status");
    int64_t min = 0, max = 0;
    bool has_min = sbc_query_time(rq, "min_start_time", false, false, &min);
    bool has_max = sbc_query_time(rq, "max_start_time", false, false, &max);
    if (!user && !org) {
        invalid(out, "user", "user or organization is required");
    } else if ((user && strcmp(user, USER_URI) != 0) ||
               (org && strcmp(org, ORG_URI) != 0)) {
        fail(out, 403, "Permission Denied",
             "This user is not authorized to perform this action.");
    } else {
        json_t *coll = json_array();
        size_t i;
        json_t *ev;
        json_array_foreach(s->cal->calendly_events, i, ev) {
            int64_t st;
            cs_parse_rfc3339(json_string_value(json_object_get(ev,
                                                               "start_time")),
                             &st);
            const char *ie = json_string_value(json_object_get(
                ev, "invitee_email"));
            if ((email && strcmp(ie, email) != 0) ||
                (status && strcmp(status, json_string_value(json_object_get(
                                              ev, "status"))) != 0) ||
                (has_min && st < min) || (has_max && st >= max))
                continue;
            json_t *copy = json_deep_copy(ev);
            json_object_del(copy, "invitee_email");
            json_array_append_new(coll, copy);
        }
        json_t *pg = json_pack("{s:i,s:n,s:n,s:n,s:n}", "count",
                               (int)json_array_size(coll), "next_page",
                               "previous_page", "next_page_token",
                               "previous_page_token");
        sb_resp_json(out, 200,
                     json_pack("{s:o,s:o}", "collection", coll, "pagination",
                               pg));
    }
    free(user);
    free(org);
    free(email);
    free(status);
}

void calendly_sb_handle(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    if (!sbc_authorised(s, SBC_CALENDLY, rq)) {
        fail(out, 401, "Unauthenticated", "The access token is invalid");
    } else if (!sbc_rate_take(s, SBC_CALENDLY)) {
        fail(out, 429, "Too Many Requests",
             "You have exceeded the rate limit");
    } else if (strcmp(rq->sub, "/users/me") == 0 && rq->method == HTTP_GET) {
        sb_resp_json(out, 200,
                     json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s}}", "resource",
                               "uri", USER_URI, "name", "Sandbox Host",
                               "slug", "sandbox", "email", "host@example.com",
                               "timezone", "UTC", "current_organization",
                               ORG_URI));
    } else if (strncmp(rq->sub, "/event_types/", 13) == 0 &&
               rq->sub[13] && !strchr(rq->sub + 13, '/') &&
               rq->method == HTTP_GET) {
        json_t *uri = json_sprintf(API "%s", rq->sub);
        sb_resp_json(
            out, 200,
            json_pack("{s:{s:o,s:s,s:b,s:s,s:i,s:s,s:s,s:s,s:{s:s,s:s,s:s}}}",
                      "resource", "uri", uri, "name", "Roof inspection",
                      "active", 1, "slug", "roof-inspection", "duration", 30,
                      "kind", "solo", "type", "StandardEventType",
                      "scheduling_url",
                      "https://calendly.com/sandbox/roof-inspection",
                      "profile", "type", "User", "name", "Sandbox Host",
                      "owner", USER_URI));
    } else if (strcmp(rq->sub, "/event_type_available_times") == 0 &&
               rq->method == HTTP_GET) {
        available_times(s, rq, out);
    } else if (strcmp(rq->sub, "/invitees") == 0 && rq->method == HTTP_POST) {
        create_invitee(s, rq, out);
    } else if (strcmp(rq->sub, "/scheduled_events") == 0 &&
               rq->method == HTTP_GET) {
        scheduled_events(s, rq, out);
    } else {
        fail(out, 404, "Resource Not Found",
             "The server could not find the requested resource.");
    }
    calendly_sb_rate_headers(s, out);
}
