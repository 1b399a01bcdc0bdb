/*
 * test_cal_com.c - the Cal.com provider without I/O: the look-up of our
 * key in the bookings' metadata before the create (also across pages),
 * the create request with its API version, the answers of both, error
 * classification with Cal.com's bodies and rate-limit headers, and
 * availability from /v2/slots.
 */
#include "cal_support.h"

static const struct prov_ops *ops(void)
{
    return &prov_cal_com;
}

static const char booking_json[] =
    "{\"status\":\"success\",\"data\":{\"id\":501,\"uid\":\"bk_uid_501\","
    "\"title\":\"Inspection\",\"status\":\"accepted\",\"start\":"
    "\"2030-03-15T19:00:00.000Z\",\"end\":\"2030-03-15T20:00:00.000Z\","
    "\"eventTypeId\":42,\"attendees\":[{\"name\":\"Marcus Bell\",\"email\":"
    "\"marcus@example.org\",\"timeZone\":\"America/Chicago\"}],"
    "\"metadata\":{\"callsync_job\":\"" CT_JOB_ID "\"}}}";

Test(calcom, looks_up_then_creates_with_metadata)
{
    struct ct t;
    ct_init(&t, "{\"event_type_id\":\"42\"}");
    cr_expect_eq(ops()->steps[0].reconcile, PROV_RECONCILE_KEY);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect_str_eq(t.rq.url,
                     "https://api.cal.com/v2/bookings?eventTypeId=42&"
                     "attendeeEmail=marcus%40example.org&afterStart="
                     "2030-03-15T18%3A59%3A00Z&beforeEnd="
                     "2030-03-16T19%3A00%3A00Z&take=100&skip=0");
    cr_expect_str_eq(ct_header(&t.rq, "cal-api-version"), "2024-08-13");
    cr_expect_str_eq(ct_header(&t.rq, "Authorization"), "Bearer tok_test_1");
    struct ct_rsp x;
    struct prov_result res;
    /* Someone else's booking at that time does not count. */
    ct_parse(&t, ops(),
             ct_rsp(&x, 200,
                    "{\"status\":\"success\",\"data\":[{\"id\":7,\"uid\":"
                    "\"other\",\"metadata\":{\"callsync_job\":\"nope\"}},"
                    "{\"id\":8,\"uid\":\"plain\"}],\"pagination\":"
                    "{\"hasNextPage\":false}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "POST");
    cr_expect_str_eq(t.rq.url, "https://api.cal.com/v2/bookings");
    cr_expect_str_eq(ct_header(&t.rq, "cal-api-version"), "2024-08-13");
    json_t *b = ct_body(&t.rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "start")),
                     "2030-03-15T19:00:00Z");
    cr_expect_eq(json_integer_value(json_object_get(b, "eventTypeId")), 42);
    json_t *att = json_object_get(b, "attendee");
    cr_expect_str_eq(json_string_value(json_object_get(att, "name")),
                     "Marcus Bell");
    cr_expect_str_eq(json_string_value(json_object_get(att, "email")),
                     "marcus@example.org");
    cr_expect_str_eq(json_string_value(json_object_get(att, "timeZone")),
                     "America/Chicago");
    cr_expect_str_eq(json_string_value(json_object_get(att, "phoneNumber")),
                     "+13125550187");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "metadata"), "callsync_job")),
                     CT_JOB_ID);
    json_decref(b);
    ct_parse(&t, ops(), ct_rsp(&x, 201, booking_json, NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "booking_uid")),
                     "bk_uid_501");
    cr_expect_eq(json_integer_value(json_object_get(res.value, "booking_id")),
                 501);
    prov_result_release(&res);
    ct_release(&t);
}

Test(calcom, a_booking_with_our_key_is_adopted_on_any_page)
{
    struct ct t;
    ct_init(&t, "{\"event_type_id\":42}");
    struct ct_rsp x;
    struct prov_result res;
    ct_build(&t, ops());
    ct_parse(&t, ops(),
             ct_rsp(&x, 200,
                    "{\"status\":\"success\",\"data\":[{\"id\":7,\"uid\":"
                    "\"a\"}],\"pagination\":{\"hasNextPage\":true}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    ct_build(&t, ops());
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect(strstr(t.rq.url, "&skip=1"), "%s", t.rq.url);
    static const char list[] =
        "{\"status\":\"success\",\"data\":[{\"id\":501,\"uid\":"
        "\"bk_uid_501\",\"status\":\"cancelled\",\"metadata\":"
        "{\"callsync_job\":\"" CT_JOB_ID "\"}}],\"pagination\":"
        "{\"hasNextPage\":false}}";
    ct_parse(&t, ops(), ct_rsp(&x, 200, list, NULL, NULL, NULL, NULL), &res);
    cr_assert_eq(res.outcome, PROV_DONE, "%s", list);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "booking_uid")),
                     "bk_uid_501");
    prov_result_release(&res);
    ct_release(&t);
}

Test(calcom, errors_and_rate_limit_headers)
{
    struct ct t;
    ct_init(&t, "{\"event_type_id\":42}");
    json_object_set_new(t.scratch, "phase", json_string("create"));
    struct ct_rsp x;
    struct prov_result res;
    ct_parse(&t, ops(),
             ct_rsp(&x, 400,
                    "{\"status\":\"error\",\"timestamp\":\"2030-03-01T00:00:"
                    "00.000Z\",\"path\":\"/v2/bookings\",\"error\":{\"code\":"
                    "\"BadRequestException\",\"message\":\"User either "
                    "already has booking at this time or is not "
                    "available\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "BadRequestException");
    cr_expect(strstr(res.message, "already has booking"));
    ct_parse(&t, ops(),
             ct_rsp(&x, 401,
                    "{\"status\":\"error\",\"error\":{\"code\":"
                    "\"UnauthorizedException\",\"message\":\"Invalid\"}}",
                    NULL, NULL, NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    /* 429 without Retry-After waits for the reset (unix seconds). */
    ct_parse(&t, ops(),
             ct_rsp(&x, 429, "{\"status\":\"error\"}",
                    "x-ratelimit-reset-default", "1898553645", NULL, NULL),
             &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 45000);
    ct_parse(&t, ops(),
             ct_rsp(&x, 429, "{}", "retry-after", "3", NULL, NULL), &res);
    cr_expect_eq(res.retry_after_ms, 3000);
    /* A success that spent the budget pauses the key until the reset. */
    ct_parse(&t, ops(),
             ct_rsp(&x, 201, booking_json, "x-ratelimit-remaining-default",
                    "0", "x-ratelimit-reset-default", "1898553630"),
             &res);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.pause_ms, 30000);
    prov_result_release(&res);
    ct_release(&t);
}

Test(calcom, config_needs_an_event_type)
{
    struct ct t;
    ct_init(&t, "{\"event_type_id\":\"forty-two\"}");
    struct cs_err err = {0};
    cr_expect_eq(ops()->steps[0].build(&t.ctx, &t.rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.event_type_id");
    ct_release(&t);
}

Test(calcom, availability_from_slots)
{
    struct ct t;
    ct_init(&t, "{\"event_type_id\":42,\"timezone\":\"America/Chicago\","
                "\"slot_duration_minutes\":30,\"business_hours_start\":9,"
                "\"business_hours_end\":17}");
    const struct cal_ops *c = &cal_cal_com;
    struct cal_query q = {ct_ms("2030-03-15T00:00:00Z"),
                          ct_ms("2030-03-17T00:00:00Z")};
    struct cs_err err = {0};
    cr_assert_eq(c->avail_build(&t.ctx, &q, &t.rq, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.url,
                     "https://api.cal.com/v2/slots?eventTypeId=42&start="
                     "2030-03-15T00%3A00%3A00Z&end=2030-03-17T00%3A00%3A00Z"
                     "&timeZone=America%2FChicago");
    cr_expect_str_eq(ct_header(&t.rq, "cal-api-version"), "2024-09-04");
    struct ct_rsp x;
    struct prov_result res = {0};
    struct cal_slots s = {0};
    /* 08:30 local is before opening, 16:45 runs past closing, the
     * Saturday slot is on a closed day; the repeated one counts once. */
    c->avail_parse(&t.ctx, &q,
                   ct_rsp(&x, 200,
                          "{\"status\":\"success\",\"data\":{"
                          "\"2030-03-15\":[{\"start\":"
                          "\"2030-03-15T08:30:00.000-05:00\"},{\"start\":"
                          "\"2030-03-15T10:00:00.000-05:00\"},{\"start\":"
                          "\"2030-03-15T10:00:00.000-05:00\"},{\"start\":"
                          "\"2030-03-15T16:45:00.000-05:00\"},{\"start\":"
                          "\"2030-03-15T09:30:00.000-05:00\"}],"
                          "\"2030-03-16\":[{\"start\":"
                          "\"2030-03-16T10:00:00.000-05:00\"}]}}",
                          NULL, NULL, NULL, NULL),
                   &res, &s);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_assert_eq(s.n, 2, "%zu slots", s.n);
    cr_expect_str_eq(ct_slot(&s, 0), "2030-03-15T14:30:00Z");
    cr_expect_str_eq(ct_slot(&s, 1), "2030-03-15T15:00:00Z");
    cr_expect_eq(s.v[0].end_ms - s.v[0].start_ms, 30 * 60000);
    prov_result_release(&res);
    cal_slots_release(&s);
    ct_release(&t);
}

Test(cal_com_probe, reads_my_profile)
{
    struct ct t;
    ct_init(&t, "{\"event_type_id\":\"1234\"}");
    struct cs_err err = {0};
    struct ct_rsp x;
    struct prov_result res;
    cr_assert_eq(ct_probe_build(&t, &prov_cal_com, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t.rq.method, "GET");
    cr_expect_str_eq(t.rq.url, "https://api.cal.com/v2/me");
    cr_expect_str_eq(ct_header(&t.rq, "Authorization"), "Bearer tok_test_1");
    cr_expect_null(t.rq.body);
    ct_probe_parse(&t, &prov_cal_com,
                   ct_rsp(&x, 200,
                          "{\"status\":\"success\",\"data\":{\"id\":123,"
                          "\"username\":\"jane\",\"email\":\"jane@example."
                          "com\",\"timeZone\":\"Europe/Berlin\",\"locale\":"
                          "\"en\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_eq(json_integer_value(json_object_get(res.value, "user_id")),
                 123);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "time_zone")),
                     "Europe/Berlin");
    cr_expect_eq(json_integer_value(json_object_get(res.value,
                                                    "event_type_id")),
                 1234);
    prov_result_release(&res);
    ct_probe_parse(&t, &prov_cal_com,
                   ct_rsp(&x, 401,
                          "{\"status\":\"error\",\"error\":{\"code\":"
                          "\"UnauthorizedException\",\"message\":\"Invalid "
                          "Access Token.\"}}",
                          NULL, NULL, NULL, NULL),
                   &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    json_object_set_new(t.config, "event_type_id", json_string("abc"));
    cr_expect_eq(ct_probe_build(&t, &prov_cal_com, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "event_type_id"), "%s", err.msg);
    ct_release(&t);
}
