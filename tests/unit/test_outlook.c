/*
 * test_outlook.c - the Outlook (Microsoft Graph) provider without I/O:
 * the create-event request with transactionId, the mailbox and calendar
 * paths, Graph's error bodies (auth, throttling with Retry-After, save
 * conflicts, permanent errors), and availability from calendarView with
 * its pages.
 */
#include "cal_support.h"

static const struct prov_ops *ops(void)
{
    return &prov_outlook;
}

Test(outlook, create_carries_the_transaction_id)
{
    struct ct t;
    ct_init(&t, "{}");
    cr_expect_eq(ops()->steps[0].reconcile, PROV_RECONCILE_KEY);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "POST");
    cr_expect_str_eq(t.rq.url, "https://graph.microsoft.com/v1.0/me/events");
    json_t *b = ct_body(&t.rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "transactionId")),
                     CT_JOB_ID);
    cr_expect_str_eq(json_string_value(json_object_get(b, "subject")),
                     "roof_inspection - Marcus Bell");
    json_t *st = json_object_get(b, "start");
    cr_expect_str_eq(json_string_value(json_object_get(st, "dateTime")),
                     "2030-03-15T19:00:00");
    cr_expect_str_eq(json_string_value(json_object_get(st, "timeZone")),
                     "UTC");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "end"), "dateTime")),
                     "2030-03-15T20:00:00");
    json_t *att = json_array_get(json_object_get(b, "attendees"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(att, "emailAddress"), "address")),
                     "marcus@example.org");
    cr_expect_str_eq(json_string_value(json_object_get(att, "type")),
                     "required");
    cr_expect(strstr(json_string_value(json_object_get(
                         json_object_get(b, "body"), "content")),
                     "callsync:" CT_JOB_ID));
    json_decref(b);
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 201,
                    "{\"id\":\"AAMkAGI1\",\"webLink\":\"https://outlook."
                    "office365.com/owa/?itemid=AAMkAGI1\",\"transactionId\":"
                    "\"" CT_JOB_ID "\"}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "event_id")),
                     "AAMkAGI1");
    prov_result_release(&res);
    ct_release(&t);
}

Test(outlook, user_and_calendar_paths_and_no_invitation)
{
    struct ct t;
    ct_init(&t, "{\"user_id\":\"desk@contoso.com\",\"calendar_id\":"
                "\"AAMkCal=\",\"invite_attendees\":false}");
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.url, "https://graph.microsoft.com/v1.0/users/"
                               "desk%40contoso.com/calendars/AAMkCal%3D/"
                               "events");
    json_t *b = ct_body(&t.rq);
    cr_expect_null(json_object_get(b, "attendees"));
    json_decref(b);
    ct_release(&t);
    ct_init(&t, "{\"invite_attendees\":\"yes\"}");
    struct cs_err err = {0};
    cr_expect_eq(ops()->steps[0].build(&t.ctx, &t.rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.invite_attendees");
    ct_release(&t);
}

Test(outlook, graph_errors_are_classified)
{
    struct ct t;
    ct_init(&t, "{}");
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 401,
                    "{\"error\":{\"code\":\"InvalidAuthenticationToken\","
                    "\"message\":\"Access token has expired or is not yet "
                    "valid.\",\"innerError\":{\"date\":\"2030-03-01T00:00:00\""
                    "}}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "InvalidAuthenticationToken");
    ct_parse(&t, ops(),
             ct_rsp(&x, 429,
                    "{\"error\":{\"code\":\"ApplicationThrottled\","
                    "\"message\":\"Application is over its "
                    "MailboxConcurrency limit.\"}}",
                    "retry-after", "12", NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 12000);
    ct_parse(&t, ops(),
             ct_rsp(&x, 503, "{\"error\":{\"code\":\"ServiceNotAvailable\"}}",
                    "retry-after", "5", NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_eq(res.retry_after_ms, 5000);
    ct_parse(&t, ops(),
             ct_rsp(&x, 409,
                    "{\"error\":{\"code\":\"ErrorIrresolvableConflict\","
                    "\"message\":\"The send or update operation could not be "
                    "performed because the change key passed in the request "
                    "does not match the current change key for the item.\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RETRY);
    ct_parse(&t, ops(),
             ct_rsp(&x, 403,
                    "{\"error\":{\"code\":\"ErrorAccessDenied\",\"message\":"
                    "\"Access is denied. Check credentials and try again.\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "ErrorAccessDenied");
    cr_expect(strstr(res.message, "Access is denied"));
    ct_release(&t);
}

Test(outlook, availability_from_calendar_view_pages)
{
    struct ct t;
    ct_init(&t, "{\"business_hours_start\":9,\"business_hours_end\":13}");
    const struct cal_ops *c = &cal_outlook;
    struct cal_query q = {ct_ms("2030-03-15T00:00:00Z"),
                          ct_ms("2030-03-16T00:00:00Z")};
    struct cs_err err = {0};
    cr_assert_eq(c->avail_build(&t.ctx, &q, &t.rq, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.url,
                     "https://graph.microsoft.com/v1.0/me/calendarView?"
                     "startDateTime=2030-03-15T00%3A00%3A00Z&endDateTime="
                     "2030-03-16T00%3A00%3A00Z&$select=start%2Cend%2C"
                     "showAs%2CisCancelled&$top=100");
    cr_expect_str_eq(ct_header(&t.rq, "Prefer"), "outlook.timezone=\"UTC\"");
    struct ct_rsp x;
    struct prov_result res = {0};
    struct cal_slots s = {0};
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"value\":[{\"showAs\":\"busy\",\"isCancelled\":"
                          "false,\"start\":{\"dateTime\":"
                          "\"2030-03-15T09:30:00.0000000\",\"timeZone\":"
                          "\"UTC\"},\"end\":{\"dateTime\":"
                          "\"2030-03-15T10:00:00.0000000\",\"timeZone\":"
                          "\"UTC\"}},{\"showAs\":\"free\",\"start\":"
                          "{\"dateTime\":\"2030-03-15T11:00:00.0000000\","
                          "\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":"
                          "\"2030-03-15T12:00:00.0000000\",\"timeZone\":"
                          "\"UTC\"}}],\"@odata.nextLink\":\"https://graph."
                          "microsoft.com/v1.0/me/calendarView?$skip=100\"}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_request_release(&t.rq);
    cr_assert_eq(c->avail_build(&t.ctx, &q, &t.rq, &err), 0);
    cr_expect_str_eq(t.rq.url, "https://graph.microsoft.com/v1.0/me/"
                               "calendarView?$skip=100");
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"value\":[{\"showAs\":\"tentative\",\"start\":"
                          "{\"dateTime\":\"2030-03-15T12:00:00.0000000\","
                          "\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":"
                          "\"2030-03-15T12:30:00.0000000\",\"timeZone\":"
                          "\"UTC\"}},{\"showAs\":\"busy\",\"isCancelled\":"
                          "true,\"start\":{\"dateTime\":"
                          "\"2030-03-15T10:00:00.0000000\",\"timeZone\":"
                          "\"UTC\"},\"end\":{\"dateTime\":"
                          "\"2030-03-15T11:00:00.0000000\",\"timeZone\":"
                          "\"UTC\"}}]}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_assert_eq(res.outcome, PROV_DONE);
    /* 9 busy (09:30), 10 free (cancelled), 11 free (showAs free), 12
     * tentative. */
    cr_assert_eq(s.n, 2, "%zu slots", s.n);
    cr_expect_str_eq(ct_slot(&s, 0), "2030-03-15T10:00:00Z");
    cr_expect_str_eq(ct_slot(&s, 1), "2030-03-15T11:00:00Z");
    prov_result_release(&res);
    cal_slots_release(&s);
    /* A next page on another host is refused. */
    json_object_clear(t.scratch);
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"value\":[],\"@odata.nextLink\":"
                          "\"https://evil.example.com/v1.0/x\"}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    ct_release(&t);
}

Test(outlook_probe, gets_the_calendar_and_wants_can_edit)
{
    struct ct t;
    ct_init(&t, "{}");
    struct cs_err err = {0};
    struct ct_rsp x;
    struct prov_result res;
    cr_assert_eq(ct_probe_build(&t, &prov_outlook, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect_str_eq(t.rq.url, "https://graph.microsoft.com/v1.0/me/calendar");
    cr_expect_null(t.rq.body);
    ct_probe_parse(&t, &prov_outlook,
                   ct_rsp(&x, 200,
                          "{\"id\":\"AAMkAGI2TG93AAA=\",\"name\":"
                          "\"Calendar\",\"canEdit\":true,\"owner\":{\"name\":"
                          "\"Megan Bowen\",\"address\":\"MeganB@contoso."
                          "com\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "owner")),
                     "MeganB@contoso.com");
    prov_result_release(&res);
    ct_probe_parse(&t, &prov_outlook,
                   ct_rsp(&x, 200,
                          "{\"id\":\"AAMkAGI2TG93AAA=\",\"name\":\"Shared\","
                          "\"canEdit\":false}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "calendar_read_only");
    prov_result_release(&res);
    ct_probe_parse(&t, &prov_outlook,
                   ct_rsp(&x, 401,
                          "{\"error\":{\"code\":\"InvalidAuthenticationToken"
                          "\",\"message\":\"Access token has expired.\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    ct_release(&t);

    ct_init(&t, "{\"user_id\":\"megan@contoso.com\",\"calendar_id\":\"AB=\"}");
    cr_assert_eq(ct_probe_build(&t, &prov_outlook, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.url, "https://graph.microsoft.com/v1.0/users/"
                               "megan%40contoso.com/calendars/AB%3D");
    ct_release(&t);
}
