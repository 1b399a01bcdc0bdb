/*
 * test_sandbox_google_calendar.c - the Google Calendar part of the built
 * callsync-sandbox (auth, request validation with Google's error shapes,
 * the 409 for a taken event id, freeBusy, the 403 rate limit, faults and
 * records), and the provider's booking and availability functions run
 * against it over HTTP. Needs neither Redis nor PostgreSQL.
 */
#include "cal_sandbox_support.h"

#define TOKEN "ya29.sandbox-google-token"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define EVENTS "/google_calendar/calendar/v3/calendars/primary/events"

static void setup(void)
{
    const char *args[] = {"--google-calendar-token", TOKEN, NULL};
    sbc_start(args);
}

TestSuite(sbgcal, .init = setup, .fini = sbc_stop, .timeout = 60);
TestSuite(sbgcal_opts, .fini = sbc_stop, .timeout = 60);

static void expect_google_error(const struct it_resp *r, int status,
                                const char *reason)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = sbc_json(r);
    json_t *e = json_object_get(j, "error");
    cr_expect_eq(json_integer_value(json_object_get(e, "code")), status);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(e, "errors"), 0),
                         "reason")),
                     reason);
    cr_expect(json_string_value(json_object_get(e, "message")));
    json_decref(j);
}

static char *event_json(const char *id, const char *start, const char *end)
{
    return xasprintf("{%s%s%s\"summary\":\"Busy\",\"start\":{\"dateTime\":"
                     "\"%s\"},\"end\":{\"dateTime\":\"%s\"}}",
                     id ? "\"id\":\"" : "", id ? id : "", id ? "\"," : "",
                     start, end);
}

Test(sbgcal, auth_is_checked)
{
    struct it_resp r = sbc_req("POST", EVENTS, NULL, "{}");
    expect_google_error(&r, 401, "authError");
    r = sbc_req("POST", EVENTS, "Authorization: Bearer wrong\r\n", "{}");
    expect_google_error(&r, 401, "authError");
    cr_expect_eq(sbc_count("google_calendar", "events"), 0);
}

Test(sbgcal, insert_validates_like_google)
{
    char *body = event_json("abcde12345", "2030-03-15T14:00:00-05:00",
                            "2030-03-15T15:00:00-05:00");
    struct it_resp r = sbc_req("POST", EVENTS "?sendUpdates=all", AUTH, body);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "id")),
                     "abcde12345");
    cr_expect_str_eq(json_string_value(json_object_get(j, "status")),
                     "confirmed");
    json_decref(j);
    /* The same id again. */
    r = sbc_req("POST", EVENTS, AUTH, body);
    expect_google_error(&r, 409, "duplicate");
    cr_expect(strstr(r.body, "The requested identifier already exists."));
    free(body);
    /* Read back. */
    r = sbc_req("GET", EVENTS "/abcde12345", AUTH, NULL);
    cr_expect_eq(r.status, 200);
    r = sbc_req("GET", EVENTS "/nosuchevent", AUTH, NULL);
    expect_google_error(&r, 404, "notFound");
    /* Ids outside base32hex, too short; an empty range; bad sendUpdates. */
    body = event_json("ABCDEFG", "2030-03-15T14:00:00Z",
                      "2030-03-15T15:00:00Z");
    r = sbc_req("POST", EVENTS, AUTH, body);
    expect_google_error(&r, 400, "invalid");
    free(body);
    body = event_json("abc", "2030-03-15T14:00:00Z", "2030-03-15T15:00:00Z");
    r = sbc_req("POST", EVENTS, AUTH, body);
    expect_google_error(&r, 400, "invalid");
    free(body);
    body = event_json(NULL, "2030-03-15T14:00:00Z", "2030-03-15T14:00:00Z");
    r = sbc_req("POST", EVENTS, AUTH, body);
    expect_google_error(&r, 400, "timeRangeEmpty");
    r = sbc_req("POST", EVENTS "?sendUpdates=maybe", AUTH, body);
    expect_google_error(&r, 400, "invalidParameter");
    free(body);
    r = sbc_req("POST", EVENTS, AUTH, "{\"start\":{\"dateTime\":"
                                      "\"2030-03-15T14:00:00Z\"}}");
    expect_google_error(&r, 400, "required");
    cr_expect_eq(sbc_count("google_calendar", "events"), 1);
}

Test(sbgcal, freebusy_answers_the_calendar_events)
{
    char *body = event_json(NULL, "2030-03-15T15:00:00Z",
                            "2030-03-15T15:30:00Z");
    struct it_resp r = sbc_req("POST", EVENTS, AUTH, body);
    cr_assert_eq(r.status, 200);
    free(body);
    r = sbc_req("POST", "/google_calendar/calendar/v3/freeBusy", AUTH,
                "{\"timeMin\":\"2030-03-15T00:00:00Z\",\"timeMax\":"
                "\"2030-03-16T00:00:00Z\",\"items\":[{\"id\":\"primary\"},"
                "{\"id\":\"other\"}]}");
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    json_t *busy = json_object_get(
        json_object_get(json_object_get(j, "calendars"), "primary"), "busy");
    cr_assert_eq(json_array_size(busy), 1);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(busy, 0), "start")),
                     "2030-03-15T15:00:00Z");
    cr_expect_eq(json_array_size(json_object_get(
                     json_object_get(json_object_get(j, "calendars"),
                                     "other"),
                     "busy")),
                 0);
    json_decref(j);
    r = sbc_req("POST", "/google_calendar/calendar/v3/freeBusy", AUTH,
                "{\"timeMin\":\"2030-03-16T00:00:00Z\",\"timeMax\":"
                "\"2030-03-15T00:00:00Z\",\"items\":[{\"id\":\"primary\"}]}");
    expect_google_error(&r, 400, "timeRangeEmpty");
}

Test(sbgcal, booking_function_books_once_and_adopts_the_repeat)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "google_calendar", TOKEN, "{}",
                 "0123456789abcdef0123456789abcdef");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(3), 60, "0123456789abcdef0123456789abcdef");
    struct prov_result res = {0};
    cr_assert_eq(sbc_book(&cal_google_calendar, &c, &b, &res), PROV_DONE,
                 "%s %s", res.code, res.message);
    const char *id = json_string_value(json_object_get(res.value,
                                                       "event_id"));
    cr_expect_str_eq(id,
                     "60oj4cpk6kr3ee1pc5h66p35coo32chj6gqjcdpo75gm4or4clj0");
    cr_expect_null(json_object_get(res.value, "existing"));
    /* The live-call tool booked it already: the same key finds it. */
    cr_assert_eq(sbc_book(&cal_google_calendar, &c, &b, &res), PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_eq(sbc_count("google_calendar", "events"), 1);
    json_t *evs = sbc_records("google_calendar", "events");
    json_t *ev = json_array_get(evs, 0);
    cr_expect_str_eq(json_string_value(json_object_get(ev, "sendUpdates")),
                     "all");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(ev, "start"), "timeZone")),
                     "America/Chicago");
    json_decref(evs);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbgcal, a_lost_answer_after_the_insert_is_found_by_key)
{
    sbc_faults("[{\"provider\":\"google_calendar\",\"method\":\"POST\","
               "\"path_prefix\":\"/calendar/v3/calendars/primary/events\","
               "\"hang\":true,\"process\":true,\"hang_ms\":300,"
               "\"count\":1}]");
    struct sbc_ctx c;
    sbc_ctx_init(&c, "google_calendar", TOKEN, "{}",
                 "fedcba9876543210fedcba9876543210");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(4), 30, "fedcba9876543210fedcba9876543210");
    struct prov_result res = {0};
    cr_expect_eq(sbc_book(&cal_google_calendar, &c, &b, &res), PROV_RETRY,
                 "no answer: retried");
    cr_expect_eq(sbc_count("google_calendar", "events"), 1,
                 "the insert happened");
    c.ctx.reconcile = true;
    cr_assert_eq(sbc_book(&cal_google_calendar, &c, &b, &res), PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_eq(sbc_count("google_calendar", "events"), 1);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbgcal, availability_function_sees_busy_events)
{
    /* Business hours around the clock for the next two days. */
    struct sbc_ctx c;
    sbc_ctx_init(&c, "google_calendar", TOKEN,
                 "{\"business_days\":[0,1,2,3,4,5,6],"
                 "\"business_hours_start\":0,\"business_hours_end\":24}",
                 "00000000000000000000000000000001");
    int64_t from = sbc_future_hour(1);
    struct cal_query q = {from, from + 6 * 3600000};
    struct cal_slots s = {0};
    struct prov_result res = {0};
    cr_assert_eq(sbc_avail(&cal_google_calendar, &c, &q, &s, &res),
                 PROV_DONE, "%s", res.message);
    cr_expect_eq(s.n, 6);
    cal_slots_release(&s);
    /* Book the second hour; it is busy now. */
    struct cal_booking b;
    sbc_booking(&b, from + 3600000, 60, "00000000000000000000000000000002");
    cr_assert_eq(sbc_book(&cal_google_calendar, &c, &b, &res), PROV_DONE);
    cr_assert_eq(sbc_avail(&cal_google_calendar, &c, &q, &s, &res),
                 PROV_DONE);
    cr_assert_eq(s.n, 5);
    cr_expect_eq(s.v[0].start_ms, from);
    cr_expect_eq(s.v[1].start_ms, from + 2 * 3600000);
    cal_slots_release(&s);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbgcal_opts, rate_limit_is_a_403_user_rate_limit)
{
    const char *args[] = {"--google-calendar-rate", "2", NULL};
    sbc_start(args);
    const char *auth = "Authorization: Bearer any\r\n";
    struct it_resp r = sbc_req("GET", EVENTS "/x1234", auth, NULL);
    cr_expect_eq(r.status, 404);
    r = sbc_req("GET", EVENTS "/x1234", auth, NULL);
    cr_expect_eq(r.status, 404);
    r = sbc_req("GET", EVENTS "/x1234", auth, NULL);
    expect_google_error(&r, 403, "userRateLimitExceeded");
    /* The provider reads it as a rate limit. */
    struct sbc_ctx c;
    sbc_ctx_init(&c, "google_calendar", "any", "{}",
                 "00000000000000000000000000000003");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(2), 60, "00000000000000000000000000000003");
    struct prov_result res = {0};
    cr_expect_eq(sbc_book(&cal_google_calendar, &c, &b, &res),
                 PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 10000);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbgcal, injected_faults_use_google_shapes)
{
    sbc_faults("[{\"provider\":\"google_calendar\",\"status\":429,"
               "\"retry_after_s\":2,\"count\":1},{\"provider\":"
               "\"google_calendar\",\"status\":503,\"count\":1}]");
    struct it_resp r = sbc_req("GET", EVENTS "/x1234", AUTH, NULL);
    expect_google_error(&r, 429, "rateLimitExceeded");
    char v[128];
    cr_expect_str_eq(sbc_hdr(&r, "Retry-After", v), "2");
    r = sbc_req("GET", EVENTS "/x1234", AUTH, NULL);
    expect_google_error(&r, 503, "backendError");
    struct it_resp q = it_get(sbc_port, "/_sandbox/records?provider="
                                        "google_calendar&type=nope");
    cr_expect_eq(q.status, 400);
}
