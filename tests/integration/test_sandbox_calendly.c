/*
 * test_sandbox_calendly.c - the Calendly part of the built
 * callsync-sandbox (auth, the current user, available times and their
 * limits, Create Event Invitee with Calendly's validation errors, the
 * scheduled-events list, rate-limit headers, faults), and the provider's
 * booking and availability functions run against it.
 */
#include "cal_sandbox_support.h"

#define TOKEN "eyJraWQiOiJzYW5kYm94In0.calendly"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define ET "https://api.calendly.com/event_types/ETSANDBOX0000001"
#define ET_Q "https%3A%2F%2Fapi.calendly.com%2Fevent_types%2FETSANDBOX0000001"
#define USER "https://api.calendly.com/users/SBUSER000000001"

static void setup(void)
{
    const char *args[] = {"--calendly-token", TOKEN, NULL};
    sbc_start(args);
}

TestSuite(sbcalendly, .init = setup, .fini = sbc_stop, .timeout = 60);
TestSuite(sbcalendly_opts, .fini = sbc_stop, .timeout = 60);

static void expect_calendly_error(const struct it_resp *r, int status,
                                  const char *title, const char *detail)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = sbc_json(r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "title")), title);
    cr_expect(json_string_value(json_object_get(j, "message")));
    if (detail) {
        json_t *d = json_array_get(json_object_get(j, "details"), 0);
        const char *m = json_string_value(json_object_get(d, "message"));
        cr_expect(m && strstr(m, detail), "detail %s", m);
    }
    json_decref(j);
}

static char *invitee_body(int64_t start, const char *email)
{
    char st[32];
    cs_rfc3339_s(start, st);
    return xasprintf("{\"event_type\":\"" ET "\",\"start_time\":\"%s\","
                     "\"invitee\":{\"name\":\"Marcus Bell\",%s%s%s"
                     "\"timezone\":\"America/Chicago\"}}",
                     st, email ? "\"email\":\"" : "", email ? email : "",
                     email ? "\"," : "");
}

Test(sbcalendly, auth_and_current_user)
{
    struct it_resp r = sbc_req("GET", "/calendly/users/me", NULL, NULL);
    expect_calendly_error(&r, 401, "Unauthenticated", NULL);
    r = sbc_req("GET", "/calendly/users/me", AUTH, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = sbc_json(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "resource"), "uri")),
                     USER);
    json_decref(j);
    char v[128];
    cr_expect_str_eq(sbc_hdr(&r, "X-RateLimit-Limit", v), "500");
    cr_expect(*sbc_hdr(&r, "X-RateLimit-Reset", v));
}

Test(sbcalendly, invitees_are_validated_and_slots_taken)
{
    int64_t start = sbc_future_hour(2);
    char *body = invitee_body(start, NULL);
    struct it_resp r = sbc_req("POST", "/calendly/invitees", AUTH, body);
    expect_calendly_error(&r, 400, "Invalid Argument", "email");
    free(body);
    body = invitee_body(start + 60000, "marcus@example.org");
    r = sbc_req("POST", "/calendly/invitees", AUTH, body);
    expect_calendly_error(&r, 400, "Invalid Argument", "no longer available");
    free(body);
    body = invitee_body(start, "marcus@example.org");
    r = sbc_req("POST", "/calendly/invitees", AUTH, body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    json_t *res = json_object_get(j, "resource");
    cr_expect(strstr(json_string_value(json_object_get(res, "uri")),
                     "/invitees/"));
    cr_expect(strncmp(json_string_value(json_object_get(res, "event")),
                      "https://api.calendly.com/scheduled_events/", 42) == 0);
    json_decref(j);
    r = sbc_req("POST", "/calendly/invitees", AUTH, body);
    expect_calendly_error(&r, 400, "Invalid Argument", "no longer available");
    free(body);
    cr_expect_eq(sbc_count("calendly", "events"), 1);
    cr_expect_eq(sbc_count("calendly", "invitees"), 1);
}

Test(sbcalendly, available_times_limits)
{
    int64_t from = sbc_future_hour(1);
    char a[32], z[32], *path;
    cs_rfc3339_s(from, a);
    cs_rfc3339_s(from + 8 * 86400000LL, z);
    path = xasprintf("/calendly/event_type_available_times?event_type=%s"
                     "&start_time=%s&end_time=%s",
                     ET_Q, a, z);
    struct it_resp r = sbc_req("GET", path, AUTH, NULL);
    expect_calendly_error(&r, 400, "Invalid Argument", "7 days");
    free(path);
    cs_rfc3339_s(cs_now_ms() - 3600000, a);
    cs_rfc3339_s(cs_now_ms() + 3600000, z);
    path = xasprintf("/calendly/event_type_available_times?event_type=%s"
                     "&start_time=%s&end_time=%s",
                     ET_Q, a, z);
    r = sbc_req("GET", path, AUTH, NULL);
    expect_calendly_error(&r, 400, "Invalid Argument", "future");
    free(path);
    cs_rfc3339_s(from, a);
    cs_rfc3339_s(from + 3600000, z);
    path = xasprintf("/calendly/event_type_available_times?event_type=%s"
                     "&start_time=%s&end_time=%s",
                     ET_Q, a, z);
    r = sbc_req("GET", path, AUTH, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = sbc_json(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "collection")), 2);
    json_decref(j);
    free(path);
    r = sbc_req("GET", "/calendly/scheduled_events", AUTH, NULL);
    expect_calendly_error(&r, 400, "Invalid Argument", "user");
    r = sbc_req("GET", "/calendly/scheduled_events?user=https%3A%2F%2F"
                       "api.calendly.com%2Fusers%2FOTHER",
                AUTH, NULL);
    expect_calendly_error(&r, 403, "Permission Denied", NULL);
}

Test(sbcalendly, booking_function_books_once_and_adopts)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "calendly", TOKEN, "{\"event_type_uri\":\"" ET "\"}",
                 "0123456789abcdef0123456789abcdef");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(3), 30, "0123456789abcdef0123456789abcdef");
    struct prov_result res = {0};
    cr_assert_eq(sbc_book(&cal_calendly, &c, &b, &res), PROV_DONE, "%s %s",
                 res.code, res.message);
    cr_expect(json_string_value(json_object_get(res.value, "invitee_uri")));
    cr_assert_eq(sbc_book(&cal_calendly, &c, &b, &res), PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_eq(sbc_count("calendly", "invitees"), 1);
    json_t *inv = sbc_records("calendly", "invitees");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(inv, 0), "tracking"),
                         "utm_content")),
                     "0123456789abcdef0123456789abcdef");
    json_decref(inv);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbcalendly, a_lost_answer_after_the_create_is_found)
{
    sbc_faults("[{\"provider\":\"calendly\",\"method\":\"POST\","
               "\"path_prefix\":\"/invitees\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":300,\"count\":1}]");
    struct sbc_ctx c;
    sbc_ctx_init(&c, "calendly", TOKEN,
                 "{\"event_type_uri\":\"/event_types/ETSANDBOX0000001\","
                 "\"user_uri\":\"" USER "\"}",
                 "fedcba9876543210fedcba9876543210");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(5), 30, "fedcba9876543210fedcba9876543210");
    struct prov_result res = {0};
    cr_expect_eq(sbc_book(&cal_calendly, &c, &b, &res), PROV_RETRY);
    cr_expect_eq(sbc_count("calendly", "invitees"), 1);
    cr_assert_eq(sbc_book(&cal_calendly, &c, &b, &res), PROV_DONE);
    cr_expect(json_is_true(json_object_get(res.value, "existing")));
    cr_expect_eq(sbc_count("calendly", "invitees"), 1);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sbcalendly, availability_function_asks_week_by_week)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "calendly", TOKEN,
                 "{\"event_type_uri\":\"" ET "\",\"slot_duration_minutes\":30}",
                 "00000000000000000000000000000001");
    int64_t from = sbc_future_hour(1);
    struct cal_query q = {from, from + 10 * 86400000LL};
    struct cal_slots s = {0};
    struct prov_result res = {0};
    cr_assert_eq(sbc_avail(&cal_calendly, &c, &q, &s, &res), PROV_DONE, "%s",
                 res.message);
    /* Every half hour of ten days. */
    cr_expect_eq(s.n, 10 * 48, "%zu slots", s.n);
    cal_slots_release(&s);
    prov_result_release(&res);
    struct it_resp r = it_get(sbc_port, "/_sandbox/requests?provider=calendly");
    json_t *j = sbc_json(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "requests")), 2,
                 "two weekly requests");
    json_decref(j);
    sbc_ctx_release(&c);
}

Test(sbcalendly_opts, rate_limit_429_with_reset)
{
    const char *args[] = {"--calendly-rate", "1", NULL};
    sbc_start(args);
    const char *auth = "Authorization: Bearer any\r\n";
    struct it_resp r = sbc_req("GET", "/calendly/users/me", auth, NULL);
    cr_expect_eq(r.status, 200);
    char v[128];
    cr_expect_str_eq(sbc_hdr(&r, "X-RateLimit-Remaining", v), "0");
    r = sbc_req("GET", "/calendly/users/me", auth, NULL);
    expect_calendly_error(&r, 429, "Too Many Requests", NULL);
    cr_expect(strtol(sbc_hdr(&r, "X-RateLimit-Reset", v), NULL, 10) > 0);
}
