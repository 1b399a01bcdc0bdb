/*
 * test_sandbox_cal_com.c - the Cal.com part of the built callsync-sandbox
 * (auth, cal-api-version, body validation with Cal.com's error shape,
 * taken slots, metadata limits, the booking list with its filters and
 * pages, slots, the rate-limit headers and 429, faults), and the
 * provider's booking and availability functions run against it.
 */
#include "cal_sandbox_support.h"

#define TOKEN "cal_live_sandbox_token"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define H_BOOK AUTH "cal-api-version: 2024-08-13\r\n"
#define H_SLOTS AUTH "cal-api-version: 2024-09-04\r\n"

static void setup(void)
{
    const char *args[] = {"--cal-com-token", TOKEN, NULL};
    sbc_start(args);
}

TestSuite(sbcalcom, .init = setup, .fini = sbc_stop, .timeout = 60);
TestSuite(sbcalcom_opts, .fini = sbc_stop, .timeout = 60);

static void expect_calcom_error(const struct it_resp *r, int status,
                                const char *code, const char *msg_part)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = sbc_json(r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "status")),
                     "error");
    json_t *e = json_object_get(j, "error");
    cr_expect_str_eq(json_string_value(json_object_get(e, "code")), code);
    const char *m = json_string_value(json_object_get(e, "message"));
    cr_expect(m && (!msg_part || strstr(m, msg_part)), "message %s", m);
    json_decref(j);
}

static char *booking_body(int64_t start, const char *extra)
{
    char st[32];
    cs_rfc3339_s(start, st);
    return xasprintf("{\"start\":\"%s\",\"eventTypeId\":42,\"attendee\":"
                     "{\"name\":\"Marcus Bell\",\"email\":"
                     "\"marcus@example.org\",\"timeZone\":"
                     "\"America/Chicago\"}%s}",
                     st, extra ? extra : "");
}

Test(sbcalcom, auth_version_and_validation)
{
    int64_t start = sbc_future_hour(2);
    char *body = booking_body(start, NULL);
    struct it_resp r = sbc_req("POST", "/cal_com/v2/bookings", NULL, body);
    expect_calcom_error(&r, 401, "UnauthorizedException", NULL);
    r = sbc_req("POST", "/cal_com/v2/bookings", AUTH, body);
    expect_calcom_error(&r, 400, "BadRequestException", "cal-api-version");
    r = sbc_req("POST", "/cal_com/v2/bookings", H_BOOK, "{\"start\":\"x\"}");
    expect_calcom_error(&r, 400, "BadRequestException", "start");
    char *past = booking_body(cs_now_ms() / 1800000 * 1800000 - 3600000, NULL);
    r = sbc_req("POST", "/cal_com/v2/bookings", H_BOOK, past);
    expect_calcom_error(&r, 400, "BadRequestException", "in the past");
    free(past);
    char big[2048] = ",\"metadata\":{";
    for (int i = 0; i < 51; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s\"k%d\":1",
                 i ? "," : "", i);
    snprintf(big + strlen(big), sizeof(big) - strlen(big), "}");
    char *meta = booking_body(start, big);
    r = sbc_req("POST", "/cal_com/v2/bookings", H_BOOK, meta);
    expect_calcom_error(&r, 400, "BadRequestException", "50 keys");
    free(meta);
    /* A good one, then the slot is taken. */
    r = sbc_req("POST", "/cal_com/v2/bookings", H_BOOK, body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    json_t *d = json_object_get(j, "data");
    cr_expect_str_eq(json_string_value(json_object_get(d, "status")),
                     "accepted");
    cr_expect(json_string_value(json_object_get(d, "uid")));
    json_decref(j);
    r = sbc_req("POST", "/cal_com/v2/bookings", H_BOOK, body);
    expect_calcom_error(&r, 400, "BadRequestException",
                        "already has booking");
    free(body);
    cr_expect_eq(sbc_count("cal_com", "bookings"), 1);
    char v[128];
    cr_expect_str_eq(sbc_hdr(&r, "X-RateLimit-Limit-Default", v), "120");
    cr_expect(*sbc_hdr(&r, "X-RateLimit-Reset-Default", v));
}

Test(sbcalcom, slots_leave_out_bookings)
{
    int64_t start = sbc_future_hour(2);
    char a[32], z[32];
    cs_rfc3339_s(start, a);
    cs_rfc3339_s(start + 3600000, z);
    char *path = xasprintf("/cal_com/v2/slots?eventTypeId=42&start=%s&end=%s",
                           a, z);
    struct it_resp r = sbc_req("GET", path, H_SLOTS, NULL);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    const char *day;
    json_t *list;
    size_t n = 0;
    json_object_foreach(json_object_get(j, "data"), day, list)
        n += json_array_size(list);
    cr_expect_eq(n, 2);
    json_decref(j);
    char *body = booking_body(start, NULL);
    r = sbc_req("POST", "/cal_com/v2/bookings", H_BOOK, body);
    cr_assert_eq(r.status, 201);
    free(body);
    r = sbc_req("GET", path, H_SLOTS, NULL);
    j = sbc_json(&r);
    n = 0;
    json_object_foreach(json_object_get(j, "data"), day, list)
        n += json_array_size(list);
    cr_expect_eq(n, 1);
    json_decref(j);
    r = sbc_req("GET", path, H_BOOK, NULL);
    expect_calcom_error(&r, 400, "BadRequestException", "2024-09-04");
    free(path);
}

Test(sbcalcom, booking_function_looks_up_then_books_once)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "cal_com", TOKEN, "{\"event_type_id\":42}",
                 "0123456789abcdef0123456789abcdef");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(3), 30, "0123456789abcdef0123456789abcdef");
    struct prov_result res = {0};
    cr_assert_eq(sbc_book(&cal_cal_com, &c, &b, &res), PROV_DONE, "%s %s",
                 res.code, res.message);
    cr_expect_null(json_object_get(res.value, "existing"));
    cr_expect(json_string_value(json_object_get(res.value, "booking_uid")));
    cr_assert_eq(sbc_book(&cal_cal_com, &c, &b, &res), PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_eq(sbc_count("cal_com", "bookings"), 1);
    json_t *bk = sbc_records("cal_com", "bookings");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(bk, 0), "metadata"),
                         "callsync_job")),
                     "0123456789abcdef0123456789abcdef");
    json_decref(bk);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbcalcom, a_lost_answer_after_the_create_is_found)
{
    sbc_faults("[{\"provider\":\"cal_com\",\"method\":\"POST\","
               "\"path_prefix\":\"/v2/bookings\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":300,\"count\":1}]");
    struct sbc_ctx c;
    sbc_ctx_init(&c, "cal_com", TOKEN, "{\"event_type_id\":\"42\"}",
                 "fedcba9876543210fedcba9876543210");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(5), 30, "fedcba9876543210fedcba9876543210");
    struct prov_result res = {0};
    cr_expect_eq(sbc_book(&cal_cal_com, &c, &b, &res), PROV_RETRY);
    cr_expect_eq(sbc_count("cal_com", "bookings"), 1);
    cr_assert_eq(sbc_book(&cal_cal_com, &c, &b, &res), PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_eq(sbc_count("cal_com", "bookings"), 1);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbcalcom, availability_function_reads_slots)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "cal_com", TOKEN,
                 "{\"event_type_id\":42,\"slot_duration_minutes\":30}",
                 "00000000000000000000000000000001");
    int64_t from = sbc_future_hour(1);
    struct cal_query q = {from, from + 2 * 3600000};
    struct cal_slots s = {0};
    struct prov_result res = {0};
    cr_assert_eq(sbc_avail(&cal_cal_com, &c, &q, &s, &res), PROV_DONE, "%s",
                 res.message);
    cr_expect_eq(s.n, 4);
    cr_expect_eq(s.v[0].start_ms, from);
    cr_expect_eq(s.v[3].end_ms, from + 2 * 3600000);
    cal_slots_release(&s);
    prov_result_release(&res);
    sbc_ctx_release(&c);
}

Test(sbcalcom_opts, rate_limit_headers_and_429)
{
    const char *args[] = {"--cal-com-rate", "2", NULL};
    sbc_start(args);
    char v[128];
    struct it_resp r = sbc_req("GET", "/cal_com/v2/bookings", H_BOOK, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(sbc_hdr(&r, "X-RateLimit-Remaining-Default", v), "1");
    r = sbc_req("GET", "/cal_com/v2/bookings", H_BOOK, NULL);
    cr_expect_str_eq(sbc_hdr(&r, "X-RateLimit-Remaining-Default", v), "0");
    r = sbc_req("GET", "/cal_com/v2/bookings", H_BOOK, NULL);
    expect_calcom_error(&r, 429, "ThrottlerException", NULL);
    cr_expect(*sbc_hdr(&r, "Retry-After", v));
    /* The provider pauses on the spent budget or waits on the 429. */
    struct sbc_ctx c;
    sbc_ctx_init(&c, "cal_com", "any", "{\"event_type_id\":42}",
                 "00000000000000000000000000000002");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(2), 30, "00000000000000000000000000000002");
    struct prov_result res = {0};
    cr_expect_eq(sbc_book(&cal_cal_com, &c, &b, &res), PROV_RATE_LIMITED);
    cr_expect_gt(res.retry_after_ms, 0);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}
