/*
 * outlook.c - Microsoft Graph v1.0 calendars in the sandbox, under
 * /outlook (the real base is https://graph.microsoft.com):
 *
 *   POST /v1.0/{me|users/{id}}[/calendars/{calId}]/events
 *   GET  /v1.0/{me|users/{id}}[/calendars/{calId}]/calendarView?
 *        startDateTime&endDateTime[&$top][&$skip][&$select]
 *   GET  /v1.0/{me|users/{id}}/calendar, .../calendars/{calId}   the
 *        calendar (canEdit, owner)
 *
 * Errors are Graph's {"error": {"code", "message", "innerError": {"date",
 * "request-id", "client-request-id"}}}: 401 InvalidAuthenticationToken
 * without a bearer token (or one not given by --outlook-token); 400
 * ErrorInvalidRequest for a malformed body, start or end, or an end not
 * after the start; 400 TimeZoneNotSupportedException for a time zone
 * other than UTC (the sandbox reads UTC only; Graph also takes Windows
 * and IANA names); 400 ErrorInvalidParameter for a calendarView without
 * its time window. A create whose transactionId the mailbox already holds
 * answers 201 with the event created first (Graph's documented purpose of
 * transactionId). Events are busy; calendarView answers those overlapping
 * the window, in UTC, $top per page (10 by default) with an absolute
 * @odata.nextLink. Past --outlook-rate requests in 10 minutes: 429
 * "ApplicationThrottled" with Retry-After.
 */
#include "calendars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *outlook_sb_error(int status, const char *code, const char *message)
{
    CS_UNUSED(status);
    char now[32];
    sbc_time(cs_now_ms(), false, now);
    return json_pack("{s:{s:s,s:s,s:{s:s,s:s,s:s}}}", "error", "code", code,
                     "message", message, "innerError", "date", now,
                     "request-id", "00000000-0000-4000-8000-000000000001",
                     "client-request-id",
                     "00000000-0000-4000-8000-000000000002");
}

static void fail(struct sb_resp *out, int status, const char *code,
                 const char *message)
{
    sb_resp_json(out, status, outlook_sb_error(status, code, message));
}

/* Graph's dateTimeTimeZone in UTC: "2030-03-04T09:00:00[.fffffff]". */
static bool graph_time(const json_t *dt, int64_t *ms, const char **why)
{
    const char *s = json_string_value(json_object_get(dt, "dateTime"));
    const char *tz = json_string_value(json_object_get(dt, "timeZone"));
    *why = "ErrorInvalidRequest";
    if (!s || !tz)
        return false;
    if (strcmp(tz, "UTC") != 0) {
        *why = "TimeZoneNotSupportedException";
        return false;
    }
    char buf[48];
    if (strlen(s) > 40 || strchr(s, 'Z') || strchr(s + 10, '+'))
        return false;
    snprintf(buf, sizeof(buf), "%sZ", s);
    return cs_parse_rfc3339(buf, ms);
}

static void graph_out(int64_t ms, char out[40])
{
    char t[32];
    sbc_time(ms, false, t);
    snprintf(out, 40, "%.19s.0000000", t);
}

/* The mailbox (me or users/{id}) and the calendar of a path, and what
 * follows them; false when the path is not one of ours. */
static bool split_path(const char *sub, char *mailbox, size_t mn, char *cal,
                       size_t cn, const char **rest)
{
    static const char v1[] = "/v1.0/";
    if (strncmp(sub, v1, sizeof(v1) - 1) != 0)
        return false;
    const char *p = sub + sizeof(v1) - 1;
    if (strncmp(p, "me/", 3) == 0 || strcmp(p, "me") == 0) {
        snprintf(mailbox, mn, "me");
        p += 2;
    } else if (strncmp(p, "users/", 6) == 0) {
        const char *u = p + 6;
        size_t n = strcspn(u, "/");
        if (!n || n >= mn)
            return false;
        snprintf(mailbox, mn, "%.*s", (int)n, u);
        p = u + n;
    } else {
        return false;
    }
    cal[0] = '\0';
    if (strncmp(p, "/calendars/", 11) == 0) {
        const char *c = p + 11;
        size_t n = strcspn(c, "/");
        if (!n || n >= cn)
            return false;
        snprintf(cal, cn, "%.*s", (int)n, c);
        p = c + n;
    }
    *rest = p;
    return true;
}

static json_t *by_transaction(struct sb *s, const char *mailbox,
                              const char *tid)
{
    size_t i;
    json_t *ev;
    json_array_foreach(s->cal->outlook_events, i, ev) {
        const char *t = json_string_value(json_object_get(ev,
                                                          "transactionId"));
        if (t && strcmp(t, tid) == 0 &&
            strcmp(json_string_value(json_object_get(ev, "mailbox")),
                   mailbox) == 0)
            return ev;
    }
    return NULL;
}

static void create(struct sb *s, const struct sb_req *rq, const char *mailbox,
                   const char *cal, struct sb_resp *out)
{
    json_t *b = NULL;
    int64_t st, en;
    const char *why = NULL;
    const json_t *tid = NULL;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "ErrorInvalidRequest",
             "Empty Payload. JSON content expected.");
    } else if (!graph_time(json_object_get(b, "start"), &st, &why) ||
               !graph_time(json_object_get(b, "end"), &en, &why)) {
        fail(out, 400, why,
             strcmp(why, "ErrorInvalidRequest") == 0
                 ? "The start and end must be dateTimeTimeZone values."
                 : "A valid TimeZone value must be specified.");
    } else if (en <= st) {
        fail(out, 400, "ErrorInvalidRequest",
             "The end time must be after the start time.");
    } else if ((tid = json_object_get(b, "transactionId")) &&
               !json_is_string(tid)) {
        fail(out, 400, "ErrorInvalidRequest",
             "transactionId must be a string.");
    } else if (tid && by_transaction(s, mailbox, json_string_value(tid))) {
        sb_resp_json(out, 201, json_incref(by_transaction(
                                   s, mailbox, json_string_value(tid))));
    } else {
        long long id = sbc_next_id(s);
        char eid[64], now[32], a[40], z[40];
        snprintf(eid, sizeof(eid), "AAMkAGSandbox%020lld", id);
        sbc_time(rq->received_ms, false, now);
        graph_out(st, a);
        graph_out(en, z);
        json_t *ev = json_deep_copy(b);
        json_object_set_new(ev, "id", json_string(eid));
        json_object_set_new(ev, "mailbox", json_string(mailbox));
        json_object_set_new(ev, "calendar", json_string(cal));
        json_object_set_new(ev, "start", json_pack("{s:s,s:s}", "dateTime",
                                                   a, "timeZone", "UTC"));
        json_object_set_new(ev, "end", json_pack("{s:s,s:s}", "dateTime", z,
                                                 "timeZone", "UTC"));
        json_object_set_new(ev, "showAs", json_string("busy"));
        json_object_set_new(ev, "isCancelled", json_false());
        json_object_set_new(ev, "createdDateTime", json_string(now));
        json_object_set_new(ev, "webLink",
                            json_sprintf("https://outlook.office365.com/owa/"
                                         "?itemid=%s", eid));
        json_array_append(s->cal->outlook_events, ev);
        sb_resp_json(out, 201, ev);
    }
    json_decref(b);
}

static long query_long(const struct sb_req *rq, const char *name, long dflt)
{
    char *v = sb_query_param(rq->query, name);
    long n = dflt;
    if (v && *v) {
        char *end;
        n = strtol(v, &end, 10);
        if (*end || n < 0)
            n = -1;
    }
    free(v);
    return n;
}

static void calendar_view(struct sb *s, const struct sb_req *rq,
                          const char *mailbox, const char *cal,
                          struct sb_resp *out)
{
    int64_t from, to;
    long top = query_long(rq, "$top", 10);
    long skip = query_long(rq, "$skip", 0);
    if (!sbc_query_time(rq, "startDateTime", false, false, &from) ||
        !sbc_query_time(rq, "endDateTime", false, false, &to)) {
        fail(out, 400, "ErrorInvalidParameter",
             "This request requires a time window specified by the query "
             "string parameters StartDateTime and EndDateTime.");
        return;
    }
    if (top < 1 || top > 1000 || skip < 0) {
        fail(out, 400, "ErrorInvalidParameter",
             "Invalid $top or $skip value.");
        return;
    }
    json_t *value = json_array();
    long seen = 0;
    bool more = false;
    size_t i;
    json_t *ev;
    json_array_foreach(s->cal->outlook_events, i, ev) {
        int64_t es, ee;
        const char *why;
        if (strcmp(json_string_value(json_object_get(ev, "mailbox")),
                   mailbox) != 0 ||
            (cal[0] && strcmp(json_string_value(json_object_get(ev,
                                                                "calendar")),
                              cal) != 0) ||
            !graph_time(json_object_get(ev, "start"), &es, &why) ||
            !graph_time(json_object_get(ev, "end"), &ee, &why) ||
            ee <= from || es >= to)
            continue;
        if (seen++ < skip)
            continue;
        if ((long)json_array_size(value) == top) {
            more = true;
            break;
        }
        json_array_append_new(
            value, json_pack("{s:O,s:O,s:O,s:O,s:O}", "id",
                             json_object_get(ev, "id"), "start",
                             json_object_get(ev, "start"), "end",
                             json_object_get(ev, "end"), "showAs",
                             json_object_get(ev, "showAs"), "isCancelled",
                             json_object_get(ev, "isCancelled")));
    }
    json_t *body = json_pack("{s:o}", "value", value);
    if (more) {
        const char *host = sb_header(rq, "host");
        char a[32], z[32];
        sbc_time(from, false, a);
        sbc_time(to, false, z);
        json_object_set_new(
            body, "@odata.nextLink",
            json_sprintf("http://%s%s?startDateTime=%s&endDateTime=%s&"
                         "$top=%ld&$skip=%ld",
                         host ? host : "localhost", rq->path, a, z, top,
                         skip + top));
    }
    sb_resp_json(out, 200, body);
}

void outlook_sb_handle(struct sb *s, const struct sb_req *rq,
                       struct sb_resp *out)
{
    char mailbox[128], cal[160];
    const char *rest = "";
    if (!sbc_authorised(s, SBC_OUTLOOK, rq)) {
        fail(out, 401, "InvalidAuthenticationToken",
             "Access token is empty.");
    } else if (!sbc_rate_take(s, SBC_OUTLOOK)) {
        fail(out, 429, "ApplicationThrottled",
             "Application is over its MailboxConcurrency limit.");
        sb_resp_header(out, "Retry-After: %lld",
                       (long long)(sbc_rate_reset_ms(s, SBC_OUTLOOK) + 999) /
                           1000);
    } else if (!split_path(rq->sub, mailbox, sizeof(mailbox), cal,
                           sizeof(cal), &rest)) {
        fail(out, 400, "BadRequest", "Resource not found for the segment.");
    } else if (rq->method == HTTP_GET &&
               ((!*rest && cal[0]) || (!strcmp(rest, "/calendar") &&
                                       !cal[0]))) {
        /* Get calendar: the mailbox's default one, or by id. */
        char *addr = strcmp(mailbox, "me") == 0
                         ? xstrdup("host@example.com")
                         : xstrdup(mailbox);
        sb_resp_json(
            out, 200,
            json_pack("{s:s,s:s,s:s,s:b,s:b,s:b,s:{s:s,s:s}}", "id",
                      cal[0] ? cal : "AAMkAGI2TGuLAAA=", "name",
                      cal[0] ? "Bookings" : "Calendar", "color", "auto",
                      "canEdit", 1, "canShare", 1, "isDefaultCalendar",
                      !cal[0], "owner", "name", "Sandbox Host", "address",
                      addr));
        free(addr);
    } else if (strcmp(rest, "/events") == 0 && rq->method == HTTP_POST) {
        create(s, rq, mailbox, cal, out);
    } else if (strcmp(rest, "/calendarView") == 0 &&
               rq->method == HTTP_GET) {
        calendar_view(s, rq, mailbox, cal, out);
    } else {
        fail(out, 404, "ErrorItemNotFound",
             "The specified object was not found in the store.");
    }
}
