/*
 * google_calendar.c - Google Calendar API v3 in the sandbox, under
 * /google_calendar (the real base is https://www.googleapis.com):
 *
 *   POST /calendar/v3/freeBusy
 *   POST /calendar/v3/calendars/{calendarId}/events[?sendUpdates=]
 *   GET  /calendar/v3/calendars/{calendarId}/events/{eventId}
 *   GET  /calendar/v3/calendars/{calendarId}     (Calendars: get)
 *
 * Shapes follow Google's reference and error guide: errors are
 * {"error": {"errors": [{"domain", "reason", "message"}], "code",
 * "message"}}; 401 authError "Invalid Credentials" without a bearer token
 * (or with one not given by --google-calendar-token); 400 for a missing
 * or malformed start/end ("required", "invalid"), an end not after the
 * start ("timeRangeEmpty"), an event id that is not 5-1024 characters of
 * a-v and 0-9 ("invalid": "Invalid resource id value."), a bad
 * sendUpdates; 409 "duplicate" ("The requested identifier already
 * exists.") for an id the calendar holds; 404 "notFound". Every calendar
 * id exists. freeBusy answers the calendar's events (not cancelled) that
 * overlap the range as busy intervals. Past --google-calendar-rate
 * requests in a minute: 403 usageLimits "userRateLimitExceeded" (Google
 * sends no rate-limit headers).
 */
#include "calendars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *gcal_sb_error(int status, const char *reason, const char *message)
{
    const char *domain = strcmp(reason, "authError") == 0 ? "global"
                         : strstr(reason, "RateLimit") ||
                                 strstr(reason, "rateLimit")
                             ? "usageLimits"
                             : "calendar";
    return json_pack("{s:{s:[{s:s,s:s,s:s}],s:i,s:s}}", "error", "errors",
                     "domain", domain, "reason", reason, "message", message,
                     "code", status, "message", message);
}

static void fail(struct sb_resp *out, int status, const char *reason,
                 const char *message)
{
    sb_resp_json(out, status, gcal_sb_error(status, reason, message));
}

/* start/end: {"dateTime": RFC 3339} or {"date": "YYYY-MM-DD"}. */
static bool event_time(const json_t *t, int64_t *ms)
{
    const char *dt = json_string_value(json_object_get(t, "dateTime"));
    const char *d = json_string_value(json_object_get(t, "date"));
    if (dt)
        return cs_parse_rfc3339(dt, ms);
    if (d && strlen(d) == 10) {
        char *full = xasprintf("%sT00:00:00Z", d);
        bool ok = cs_parse_rfc3339(full, ms);
        free(full);
        return ok;
    }
    return false;
}

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    return n >= 5 && n <= 1024 &&
           strspn(id, "0123456789abcdefghijklmnopqrstuv") == n;
}

static json_t *find_event(struct sb *s, const char *cal, const char *id)
{
    size_t i;
    json_t *ev;
    json_array_foreach(s->cal->gcal_events, i, ev) {
        if (strcmp(json_string_value(json_object_get(ev, "id")), id) == 0 &&
            strcmp(json_string_value(json_object_get(ev, "calendarId")),
                   cal) == 0)
            return ev;
    }
    return NULL;
}

static void insert(struct sb *s, const struct sb_req *rq, const char *cal,
                   struct sb_resp *out)
{
    char *su = sb_query_param(rq->query, "sendUpdates");
    bool su_ok = !su || strcmp(su, "all") == 0 ||
                 strcmp(su, "externalOnly") == 0 || strcmp(su, "none") == 0;
    json_t *b = NULL;
    int64_t st, en;
    const char *id = NULL;
    if (!su_ok) {
        fail(out, 400, "invalidParameter",
             "Invalid value for: sendUpdates");
    } else if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "parseError", "Parse Error");
    } else if (!json_object_get(b, "start")) {
        fail(out, 400, "required", "Missing start time.");
    } else if (!json_object_get(b, "end")) {
        fail(out, 400, "required", "Missing end time.");
    } else if (!event_time(json_object_get(b, "start"), &st) ||
               !event_time(json_object_get(b, "end"), &en)) {
        fail(out, 400, "invalid", "Invalid start or end time.");
    } else if (en <= st) {
        fail(out, 400, "timeRangeEmpty",
             "The specified time range is empty.");
    } else if (json_object_get(b, "id") &&
               (!(id = json_string_value(json_object_get(b, "id"))) ||
                !valid_id(id))) {
        fail(out, 400, "invalid", "Invalid resource id value.");
    } else if (id && find_event(s, cal, id)) {
        fail(out, 409, "duplicate", "The requested identifier already "
                                    "exists.");
    } else {
        json_t *ev = json_deep_copy(b);
        if (!id) {
            char gen[40];
            snprintf(gen, sizeof(gen), "sb%030lld", sbc_next_id(s));
            json_object_set_new(ev, "id", json_string(gen));
        }
        const char *eid = json_string_value(json_object_get(ev, "id"));
        char now[32];
        sbc_time(rq->received_ms, true, now);
        json_object_set_new(ev, "kind", json_string("calendar#event"));
        json_object_set_new(ev, "calendarId", json_string(cal));
        json_object_set_new(ev, "status", json_string("confirmed"));
        json_object_set_new(ev, "created", json_string(now));
        json_object_set_new(ev, "updated", json_string(now));
        json_object_set_new(ev, "htmlLink",
                            json_sprintf("https://www.google.com/calendar/"
                                         "event?eid=%s", eid));
        if (su)
            json_object_set_new(ev, "sendUpdates", json_string(su));
        json_array_append(s->cal->gcal_events, ev);
        sb_resp_json(out, 200, ev);
    }
    json_decref(b);
    free(su);
}

static void freebusy(struct sb *s, const struct sb_req *rq,
                     struct sb_resp *out)
{
    json_t *b = NULL;
    int64_t from, to;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "parseError", "Parse Error");
    } else if (!cs_parse_rfc3339(json_string_value(json_object_get(b,
                                                                   "timeMin")),
                                 &from) ||
               !cs_parse_rfc3339(json_string_value(json_object_get(b,
                                                                   "timeMax")),
                                 &to)) {
        fail(out, 400, "required", "Missing timeMin or timeMax.");
    } else if (to <= from) {
        fail(out, 400, "timeRangeEmpty",
             "The specified time range is empty.");
    } else if (!json_is_array(json_object_get(b, "items")) ||
               json_array_size(json_object_get(b, "items")) == 0) {
        fail(out, 400, "required", "Missing items.");
    } else {
        json_t *cals = json_object();
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(b, "items"), i, item) {
            const char *cal = json_string_value(json_object_get(item, "id"));
            if (!cal)
                continue;
            json_t *busy = json_array();
            size_t k;
            json_t *ev;
            json_array_foreach(s->cal->gcal_events, k, ev) {
                int64_t es, ee;
                if (strcmp(json_string_value(json_object_get(ev,
                                                             "calendarId")),
                           cal) != 0 ||
                    !event_time(json_object_get(ev, "start"), &es) ||
                    !event_time(json_object_get(ev, "end"), &ee) ||
                    ee <= from || es >= to)
                    continue;
                char a[32], z[32];
                sbc_time(es < from ? from : es, false, a);
                sbc_time(ee > to ? to : ee, false, z);
                json_array_append_new(busy, json_pack("{s:s,s:s}", "start",
                                                      a, "end", z));
            }
            json_object_set_new(cals, cal, json_pack("{s:o}", "busy", busy));
        }
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:O,s:O,s:o}", "kind",
                               "calendar#freeBusy", "timeMin",
                               json_object_get(b, "timeMin"), "timeMax",
                               json_object_get(b, "timeMax"), "calendars",
                               cals));
    }
    json_decref(b);
}

void gcal_sb_handle(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out)
{
    if (!sbc_authorised(s, SBC_GOOGLE, rq)) {
        fail(out, 401, "authError", "Invalid Credentials");
        return;
    }
    if (!sbc_rate_take(s, SBC_GOOGLE)) {
        fail(out, 403, "userRateLimitExceeded", "User Rate Limit Exceeded");
        return;
    }
    static const char cals[] = "/calendar/v3/calendars/";
    const char *p = rq->sub;
    if (strcmp(p, "/calendar/v3/freeBusy") == 0) {
        if (rq->method != HTTP_POST)
            fail(out, 405, "httpMethodNotAllowed", "Method Not Allowed");
        else
            freebusy(s, rq, out);
        return;
    }
    if (strncmp(p, cals, sizeof(cals) - 1) != 0) {
        fail(out, 404, "notFound", "Not Found");
        return;
    }
    const char *c = p + sizeof(cals) - 1;
    const char *ev = strstr(c, "/events");
    if (!ev && *c && !strchr(c, '/') && rq->method == HTTP_GET) {
        /* Calendars: get. "primary" is the token's own calendar. */
        char *cal = sb_url_decode(c, strlen(c), false);
        bool primary = strcmp(cal, "primary") == 0;
        sb_resp_json(out, 200,
                     json_pack("{s:s,s:s,s:s,s:s,s:s}", "kind",
                               "calendar#calendar", "etag", "\"sb-cal-1\"",
                               "id", primary ? "host@example.com" : cal,
                               "summary",
                               primary ? "host@example.com" : "Sandbox",
                               "timeZone", "America/Chicago"));
        free(cal);
        return;
    }
    if (!ev || ev == c) {
        fail(out, 404, "notFound", "Not Found");
        return;
    }
    char *cal = sb_url_decode(c, (size_t)(ev - c), false);
    const char *rest = ev + 7;
    if (!*rest && rq->method == HTTP_POST) {
        insert(s, rq, cal, out);
    } else if (rest[0] == '/' && rest[1] && !strchr(rest + 1, '/') &&
               rq->method == HTTP_GET) {
        char *id = sb_url_decode(rest + 1, strlen(rest + 1), false);
        json_t *e = find_event(s, cal, id);
        if (e)
            sb_resp_json(out, 200, json_incref(e));
        else
            fail(out, 404, "notFound", "Not Found");
        free(id);
    } else {
        fail(out, 404, "notFound", "Not Found");
    }
    free(cal);
}
