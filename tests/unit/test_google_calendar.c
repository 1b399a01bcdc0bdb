/*
 * test_google_calendar.c - the Google Calendar provider without I/O:
 * events.insert with our event id, the 409 "duplicate" that adopts the
 * first event, sendUpdates, error classification from Google's error
 * bodies (rate limits on 403 and 429, daily quotas, auth, permanent
 * errors), and availability from freebusy.query.
 */
#include "cal_support.h"

#define GCAL_ID "60oj4cpk6kr3ee1pc5h66p35coo32chj6gqjcdpo75gm4or4clj0"

static const struct prov_ops *ops(void)
{
    return &prov_google_calendar;
}

static const char *google_error(int code, const char *reason,
                                const char *msg)
{
    static char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"error\":{\"errors\":[{\"domain\":\"usageLimits\","
             "\"reason\":\"%s\",\"message\":\"%s\"}],\"code\":%d,"
             "\"message\":\"%s\"}}",
             reason, msg, code, msg);
    return buf;
}

Test(gcal, insert_carries_our_event_id_and_the_local_time)
{
    struct ct t;
    ct_init(&t, "{\"calendar_id\":\"team@example.com\"}");
    cr_expect(ops()->steps[0].applies(&t.ctx));
    cr_expect_eq(ops()->steps[0].reconcile, PROV_RECONCILE_KEY);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "POST");
    cr_expect_str_eq(t.rq.url, "https://www.googleapis.com/calendar/v3/"
                               "calendars/team%40example.com/events?"
                               "sendUpdates=all");
    cr_expect_str_eq(ct_header(&t.rq, "Authorization"), "Bearer tok_test_1");
    json_t *b = ct_body(&t.rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "id")), GCAL_ID);
    cr_expect_str_eq(json_string_value(json_object_get(b, "summary")),
                     "roof_inspection - Marcus Bell");
    json_t *start = json_object_get(b, "start");
    cr_expect_str_eq(json_string_value(json_object_get(start, "dateTime")),
                     "2030-03-15T14:00:00-05:00");
    cr_expect_str_eq(json_string_value(json_object_get(start, "timeZone")),
                     "America/Chicago");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "end"), "dateTime")),
                     "2030-03-15T15:00:00-05:00");
    json_t *att = json_array_get(json_object_get(b, "attendees"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(att, "email")),
                     "marcus@example.org");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(b,
                                                         "extendedProperties"),
                                         "private"),
                         "callsync_job")),
                     CT_JOB_ID);
    cr_expect(strstr(json_string_value(json_object_get(b, "description")),
                     "callsync:" CT_JOB_ID));
    json_decref(b);

    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 200,
                    "{\"kind\":\"calendar#event\",\"id\":\"" GCAL_ID
                    "\",\"status\":\"confirmed\",\"htmlLink\":"
                    "\"https://www.google.com/calendar/event?eid=x\"}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "event_id")),
                     GCAL_ID);
    prov_result_release(&res);
    ct_release(&t);
}

Test(gcal, duplicate_id_reads_the_event_back_and_adopts_it)
{
    struct ct t;
    ct_init(&t, "{\"send_updates\":\"none\"}");
    t.ctx.reconcile = true;
    ct_build(&t, ops());
    cr_expect(strstr(t.rq.url, "/calendars/primary/events?sendUpdates=none"));
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 409,
                    "{\"error\":{\"errors\":[{\"domain\":\"global\","
                    "\"reason\":\"duplicate\",\"message\":\"The requested "
                    "identifier already exists.\"}],\"code\":409,"
                    "\"message\":\"The requested identifier already "
                    "exists.\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect_str_eq(t.rq.url, "https://www.googleapis.com/calendar/v3/"
                               "calendars/primary/events/" GCAL_ID);
    cr_expect_null(t.rq.body);
    ct_parse(&t, ops(),
             ct_rsp(&x, 200, "{\"id\":\"" GCAL_ID "\",\"status\":"
                             "\"cancelled\"}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    prov_result_release(&res);
    /* A 409 for another reason is not taken as "written before". */
    json_object_clear(t.scratch);
    ct_parse(&t, ops(), ct_rsp(&x, 409, google_error(409, "conflict", "x"),
                               NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    ct_release(&t);
}

Test(gcal, errors_are_classified_from_google_bodies)
{
    struct ct t;
    ct_init(&t, "{}");
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 403,
                    google_error(403, "userRateLimitExceeded",
                                 "User Rate Limit Exceeded"),
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 10000);
    cr_expect_str_eq(res.code, "userRateLimitExceeded");
    ct_parse(&t, ops(),
             ct_rsp(&x, 429, google_error(429, "rateLimitExceeded", "Rate"),
                    "retry-after", "7", NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 7000);
    ct_parse(&t, ops(),
             ct_rsp(&x, 403, google_error(403, "quotaExceeded", "Quota"),
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    /* now is 1 March 2030 00:00 UTC = 28 Feb 16:00 in Los Angeles. */
    cr_expect_eq(res.retry_after_ms, 8 * 3600000);
    ct_parse(&t, ops(),
             ct_rsp(&x, 401, google_error(401, "authError",
                                          "Invalid Credentials"),
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    ct_parse(&t, ops(),
             ct_rsp(&x, 403, google_error(403, "forbiddenForNonOrganizer",
                                          "Shared properties can only be "
                                          "changed by the organizer"),
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "forbiddenForNonOrganizer");
    cr_expect(strstr(res.message, "organizer"));
    ct_parse(&t, ops(),
             ct_rsp(&x, 404, google_error(404, "notFound", "Not Found"),
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    ct_parse(&t, ops(), ct_rsp(&x, 503, "", NULL, NULL, NULL, NULL), &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    ct_parse(&t, ops(), ct_rsp(&x, 200, "not json", NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RETRY, "a 2xx we cannot read");
    ct_release(&t);
}

Test(gcal, config_and_call_errors_are_permanent)
{
    struct ct t;
    ct_init(&t, "{\"send_updates\":\"sometimes\"}");
    struct cs_err err = {0};
    cr_expect_eq(ops()->steps[0].build(&t.ctx, &t.rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.send_updates");
    ct_release(&t);
    ct_init(&t, "{}");
    t.creds.access_token = NULL;
    cr_expect_eq(ops()->steps[0].build(&t.ctx, &t.rq, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_credentials"));
    json_object_del(json_object_get(json_object_get(t.job, "call"),
                                    "appointment"),
                    "date");
    cr_expect_not(ops()->steps[0].applies(&t.ctx));
    ct_release(&t);
}

Test(gcal, availability_from_freebusy)
{
    struct ct t;
    ct_init(&t, "{\"timezone\":\"America/Chicago\","
                "\"business_hours_start\":9,\"business_hours_end\":12}");
    const struct cal_ops *c = &cal_google_calendar;
    struct cal_query q = {ct_ms("2030-03-15T05:00:00Z"),
                          ct_ms("2030-03-16T05:00:00Z")};
    struct cs_err err = {0};
    cr_assert_eq(c->avail_build(&t.ctx, &q, &t.rq, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.url,
                     "https://www.googleapis.com/calendar/v3/freeBusy");
    json_t *b = ct_body(&t.rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "timeMin")),
                     "2030-03-15T05:00:00Z");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(b, "items"), 0),
                         "id")),
                     "primary");
    json_decref(b);
    /* 10:00-10:30 local (15:00-15:30 UTC) is busy. */
    struct ct_rsp x;
    struct prov_result res = {0};
    struct cal_slots s = {0};
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"kind\":\"calendar#freeBusy\",\"calendars\":"
                          "{\"primary\":{\"busy\":[{\"start\":"
                          "\"2030-03-15T15:00:00Z\",\"end\":"
                          "\"2030-03-15T15:30:00Z\"}]}}}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_assert_eq(s.n, 2);
    cr_expect_str_eq(ct_slot(&s, 0), "2030-03-15T14:00:00Z");
    cr_expect_str_eq(ct_slot(&s, 1), "2030-03-15T16:00:00Z");
    prov_result_release(&res);
    cal_slots_release(&s);
    /* A calendar the token cannot read. */
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"calendars\":{\"primary\":{\"errors\":"
                          "[{\"domain\":\"global\",\"reason\":"
                          "\"notFound\"}],\"busy\":[]}}}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "notFound");
    cr_expect_eq(s.n, 0);
    ct_release(&t);
}

Test(google_calendar_probe, gets_the_calendar)
{
    struct ct t;
    ct_init(&t, "{\"calendar_id\":\"team@example.com\"}");
    struct cs_err err = {0};
    struct ct_rsp x;
    struct prov_result res;
    cr_assert_eq(ct_probe_build(&t, &prov_google_calendar, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect_str_eq(t.rq.url, "https://www.googleapis.com/calendar/v3/"
                               "calendars/team%40example.com");
    cr_expect_str_eq(ct_header(&t.rq, "Authorization"), "Bearer tok_test_1");
    cr_expect_null(t.rq.body);
    ct_probe_parse(&t, &prov_google_calendar,
                   ct_rsp(&x, 200,
                          "{\"kind\":\"calendar#calendar\",\"etag\":\"\\\"x"
                          "\\\"\",\"id\":\"team@example.com\",\"summary\":"
                          "\"Team\",\"timeZone\":\"America/Denver\"}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "time_zone")),
                     "America/Denver");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "summary")), "Team");
    prov_result_release(&res);
    ct_probe_parse(&t, &prov_google_calendar,
                   ct_rsp(&x, 401,
                          "{\"error\":{\"errors\":[{\"domain\":\"global\","
                          "\"reason\":\"authError\",\"message\":\"Invalid "
                          "Credentials\"}],\"code\":401,\"message\":"
                          "\"Invalid Credentials\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "authError");
    prov_result_release(&res);
    ct_probe_parse(&t, &prov_google_calendar,
                   ct_rsp(&x, 404,
                          "{\"error\":{\"errors\":[{\"domain\":\"global\","
                          "\"reason\":\"notFound\",\"message\":\"Not "
                          "Found\"}],\"code\":404,\"message\":\"Not "
                          "Found\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    prov_result_release(&res);
    ct_release(&t);
}
