/*
 * test_calendly.c - the Calendly provider without I/O: the look-up
 * (current user, then the user's scheduled events for the invitee at the
 * start) before POST /invitees, adoption of a found event, the create
 * request and answer, Calendly's error bodies and rate-limit headers,
 * the email a booking needs, and availability in weekly requests.
 */
#include "cal_support.h"

#define ET "https://api.calendly.com/event_types/ETAAAAAAAAAAAAAA"
#define USER "https://api.calendly.com/users/USAAAAAAAAAAAAAA"

static const struct prov_ops *ops(void)
{
    return &prov_calendly;
}

Test(calendly, looks_up_the_user_and_events_then_books)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"/event_types/ETAAAAAAAAAAAAAA\","
                "\"location\":{\"kind\":\"outbound_call\"}}");
    cr_expect_eq(ops()->steps[0].reconcile, PROV_RECONCILE_LOOKUP);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.url, "https://api.calendly.com/users/me");
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 200,
                    "{\"resource\":{\"uri\":\"" USER "\",\"name\":\"Host\","
                    "\"current_organization\":\"https://api.calendly.com/"
                    "organizations/ORG\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.url,
                     "https://api.calendly.com/scheduled_events?user="
                     "https%3A%2F%2Fapi.calendly.com%2Fusers%2F"
                     "USAAAAAAAAAAAAAA&invitee_email=marcus%40example.org&"
                     "min_start_time=2030-03-15T19%3A00%3A00Z&"
                     "max_start_time=2030-03-15T19%3A01%3A00Z&count=100");
    /* An event of another type at that time is not ours. */
    ct_parse(&t, ops(),
             ct_rsp(&x, 200,
                    "{\"collection\":[{\"uri\":\"https://api.calendly.com/"
                    "scheduled_events/OTHER\",\"event_type\":\"https://"
                    "api.calendly.com/event_types/OTHER\",\"start_time\":"
                    "\"2030-03-15T19:00:00.000000Z\"}],\"pagination\":{}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "POST");
    cr_expect_str_eq(t.rq.url, "https://api.calendly.com/invitees");
    json_t *b = ct_body(&t.rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "event_type")), ET);
    cr_expect_str_eq(json_string_value(json_object_get(b, "start_time")),
                     "2030-03-15T19:00:00Z");
    json_t *inv = json_object_get(b, "invitee");
    cr_expect_str_eq(json_string_value(json_object_get(inv, "email")),
                     "marcus@example.org");
    cr_expect_str_eq(json_string_value(json_object_get(inv, "timezone")),
                     "America/Chicago");
    cr_expect_str_eq(json_string_value(json_object_get(inv, "name")),
                     "Marcus Bell");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "tracking"), "utm_content")),
                     CT_JOB_ID);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "location"), "kind")),
                     "outbound_call");
    json_decref(b);
    ct_parse(&t, ops(),
             ct_rsp(&x, 201,
                    "{\"resource\":{\"uri\":\"https://api.calendly.com/"
                    "scheduled_events/EV1/invitees/INV1\",\"event\":"
                    "\"https://api.calendly.com/scheduled_events/EV1\","
                    "\"status\":\"active\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "event_uri")),
                     "https://api.calendly.com/scheduled_events/EV1");
    prov_result_release(&res);
    ct_release(&t);
}

Test(calendly, an_event_at_the_start_is_adopted)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"" ET "\",\"user_uri\":\"" USER "\"}");
    t.ctx.reconcile = true;
    ct_build(&t, ops());
    cr_expect(strncmp(t.rq.url, "https://api.calendly.com/scheduled_events?",
                      42) == 0,
              "%s", t.rq.url);
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 200,
                    "{\"collection\":[{\"uri\":\"https://api.calendly.com/"
                    "scheduled_events/EV1\",\"event_type\":\"" ET "\","
                    "\"status\":\"active\",\"start_time\":"
                    "\"2030-03-15T19:00:00.000000Z\"}]}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    prov_result_release(&res);
    ct_release(&t);
}

Test(calendly, needs_an_email_and_an_event_type)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"" ET "\"}");
    json_object_del(json_object_get(json_object_get(t.job, "call"),
                                    "customer"),
                    "email");
    struct cs_err err = {0};
    cr_expect_eq(ops()->steps[0].build(&t.ctx, &t.rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "call.customer.email");
    ct_release(&t);
    ct_init(&t, "{\"event_type_uri\":\"https://example.com/x\"}");
    cr_expect_eq(ops()->steps[0].build(&t.ctx, &t.rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.event_type_uri");
    ct_release(&t);
}

Test(calendly, errors_and_rate_limit_headers)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"" ET "\"}");
    json_object_set_new(t.scratch, "phase", json_string("create"));
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 400,
                    "{\"title\":\"Invalid Argument\",\"message\":\"The "
                    "supplied parameters are invalid.\",\"details\":[{"
                    "\"parameter\":\"start_time\",\"message\":\"The selected "
                    "time is no longer available.\"}]}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "invalid_argument");
    cr_expect(strstr(res.message, "(start_time: The selected time"),
              "%s", res.message);
    ct_parse(&t, ops(),
             ct_rsp(&x, 401,
                    "{\"title\":\"Unauthenticated\",\"message\":\"The access "
                    "token is invalid\"}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    ct_parse(&t, ops(),
             ct_rsp(&x, 403,
                    "{\"title\":\"Permission Denied\",\"message\":\"Please "
                    "upgrade your Calendly account\"}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    ct_parse(&t, ops(),
             ct_rsp(&x, 429, "{\"title\":\"Too Many Requests\"}",
                    "x-ratelimit-remaining", "0", "x-ratelimit-reset", "42"),
             &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 42000);
    ct_parse(&t, ops(),
             ct_rsp(&x, 201,
                    "{\"resource\":{\"uri\":\"u\",\"event\":\"e\"}}",
                    "x-ratelimit-remaining", "0", "x-ratelimit-reset", "17"),
             &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.pause_ms, 17000);
    prov_result_release(&res);
    ct_release(&t);
}

Test(calendly, availability_one_week_per_request)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"" ET "\",\"slot_duration_minutes\":30,"
                "\"min_notice_minutes\":60}");
    const struct cal_ops *c = &cal_calendly;
    /* Ten days from a window that starts in the past. */
    struct cal_query q = {ct_ms("2030-02-20T00:00:00Z"),
                          ct_ms("2030-03-11T00:00:00Z")};
    struct cs_err err = {0};
    cr_assert_eq(c->avail_build(&t.ctx, &q, &t.rq, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.url,
                     "https://api.calendly.com/event_type_available_times?"
                     "event_type=https%3A%2F%2Fapi.calendly.com%2F"
                     "event_types%2FETAAAAAAAAAAAAAA&start_time="
                     "2030-03-01T00%3A01%3A00Z&end_time="
                     "2030-03-08T00%3A01%3A00Z");
    struct ct_rsp x;
    struct prov_result res = {0};
    struct cal_slots s = {0};
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"collection\":[{\"status\":\"available\","
                          "\"start_time\":\"2030-03-01T00:30:00Z\"},"
                          "{\"status\":\"available\",\"start_time\":"
                          "\"2030-03-01T01:00:00Z\"}]}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_request_release(&t.rq);
    cr_assert_eq(c->avail_build(&t.ctx, &q, &t.rq, &err), 0, "%s", err.msg);
    cr_expect(strstr(t.rq.url, "start_time=2030-03-08T00%3A01%3A00Z&"
                               "end_time=2030-03-11T00%3A00%3A00Z"),
              "%s", t.rq.url);
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"collection\":[{\"status\":\"available\","
                          "\"start_time\":\"2030-03-09T10:00:00Z\"}]}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_assert_eq(res.outcome, PROV_DONE);
    /* 00:30 is within the hour of notice; no business hours are set, so
     * the Saturday slot stays. */
    cr_assert_eq(s.n, 2, "%zu slots", s.n);
    cr_expect_str_eq(ct_slot(&s, 0), "2030-03-01T01:00:00Z");
    cr_expect_str_eq(ct_slot(&s, 1), "2030-03-09T10:00:00Z");
    prov_result_release(&res);
    cal_slots_release(&s);
    ct_release(&t);
}

Test(calendly_probe, reads_the_user_then_the_event_type)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"" ET "\"}");
    struct cs_err err = {0};
    struct ct_rsp x;
    struct prov_result res;
    cr_assert_eq(ct_probe_build(&t, ops(), &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect_str_eq(t.rq.url, "https://api.calendly.com/users/me");
    cr_expect_str_eq(ct_header(&t.rq, "Authorization"), "Bearer tok_test_1");
    ct_probe_parse(&t, ops(),
                   ct_rsp(&x, 200,
                          "{\"resource\":{\"uri\":\"" USER "\",\"name\":"
                          "\"Host\",\"timezone\":\"America/New_York\","
                          "\"current_organization\":\"https://api.calendly."
                          "com/organizations/ORG\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    t.ctx.base_url = "http://sb/calendly";
    cr_assert_eq(ct_probe_build(&t, ops(), &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.url,
                     "http://sb/calendly/event_types/ETAAAAAAAAAAAAAA");
    cr_expect_null(t.rq.body);
    ct_probe_parse(&t, ops(),
                   ct_rsp(&x, 200,
                          "{\"resource\":{\"uri\":\"" ET "\",\"name\":"
                          "\"15 Minute Meeting\",\"active\":true,"
                          "\"duration\":15,\"kind\":\"solo\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "user_uri")), USER);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "time_zone")),
                     "America/New_York");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "event_type")),
                     "15 Minute Meeting");
    cr_expect_eq(json_integer_value(json_object_get(res.value,
                                                    "duration_minutes")),
                 15);
    prov_result_release(&res);
    ct_probe_parse(&t, ops(),
                   ct_rsp(&x, 200,
                          "{\"resource\":{\"uri\":\"" ET "\",\"active\":"
                          "false}}", NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "event_type_inactive");
    prov_result_release(&res);
    ct_release(&t);
}

Test(calendly_probe, bad_token_and_missing_event_type)
{
    struct ct t;
    ct_init(&t, "{\"event_type_uri\":\"" ET "\"}");
    struct cs_err err = {0};
    struct ct_rsp x;
    struct prov_result res;
    cr_assert_eq(ct_probe_build(&t, ops(), &err), 0);
    ct_probe_parse(&t, ops(),
                   ct_rsp(&x, 401,
                          "{\"title\":\"Unauthenticated\",\"message\":"
                          "\"The access token is invalid\"}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "unauthenticated");
    prov_result_release(&res);
    json_object_del(t.config, "event_type_uri");
    cr_expect_eq(ct_probe_build(&t, ops(), &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "event_type_uri"), "%s", err.msg);
    ct_release(&t);
}
