/*
 * test_sandbox_outlook.c - the Microsoft Graph (Outlook calendar) part of
 * the built callsync-sandbox (auth, event validation with Graph's error
 * shape, transactionId de-duplication, calendarView with pages, the 429
 * with Retry-After, faults), and the provider's booking and availability
 * functions run against it.
 */
#include "cal_sandbox_support.h"

#define TOKEN "eyJ0eXAiOiJKV1QiLCJub25jZSI6InNhbmRib3gifQ.graph"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"

static void setup(void)
{
    const char *args[] = {"--outlook-token", TOKEN, NULL};
    sbc_start(args);
}

TestSuite(sboutlook, .init = setup, .fini = sbc_stop, .timeout = 60);
TestSuite(sboutlook_opts, .fini = sbc_stop, .timeout = 60);

static void expect_graph_error(const struct it_resp *r, int status,
                               const char *code)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = sbc_json(r);
    json_t *e = json_object_get(j, "error");
    cr_expect_str_eq(json_string_value(json_object_get(e, "code")), code);
    cr_expect(json_string_value(json_object_get(e, "message")));
    cr_expect(json_object_get(json_object_get(e, "innerError"),
                              "request-id"));
    json_decref(j);
}

static const char event[] =
    "{\"subject\":\"Inspection\",\"start\":{\"dateTime\":"
    "\"2030-03-15T19:00:00\",\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":"
    "\"2030-03-15T20:00:00\",\"timeZone\":\"UTC\"},\"transactionId\":"
    "\"tx-1\"}";

Test(sboutlook, auth_validation_and_transaction_ids)
{
    struct it_resp r = sbc_req("POST", "/outlook/v1.0/me/events", NULL, event);
    expect_graph_error(&r, 401, "InvalidAuthenticationToken");
    r = sbc_req("POST", "/outlook/v1.0/me/events", AUTH,
                "{\"start\":{\"dateTime\":\"2030-03-15T19:00:00\","
                "\"timeZone\":\"Mars Standard Time\"},\"end\":{\"dateTime\":"
                "\"2030-03-15T20:00:00\",\"timeZone\":\"UTC\"}}");
    expect_graph_error(&r, 400, "TimeZoneNotSupportedException");
    r = sbc_req("POST", "/outlook/v1.0/me/events", AUTH,
                "{\"start\":{\"dateTime\":\"2030-03-15T19:00:00\","
                "\"timeZone\":\"UTC\"},\"end\":{\"dateTime\":"
                "\"2030-03-15T18:00:00\",\"timeZone\":\"UTC\"}}");
    expect_graph_error(&r, 400, "ErrorInvalidRequest");
    r = sbc_req("POST", "/outlook/v1.0/me/events", AUTH, event);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    char *id = xstrdup(json_string_value(json_object_get(j, "id")));
    json_decref(j);
    /* The same transactionId gives the first event back. */
    r = sbc_req("POST", "/outlook/v1.0/me/events", AUTH, event);
    cr_assert_eq(r.status, 201);
    j = sbc_json(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "id")), id);
    json_decref(j);
    /* Another mailbox is another store. */
    r = sbc_req("POST", "/outlook/v1.0/users/desk%40contoso.com/events", AUTH,
                event);
    cr_assert_eq(r.status, 201);
    cr_expect_eq(sbc_count("outlook", "events"), 2);
    r = sbc_req("GET", "/outlook/v1.0/me/calendarView", AUTH, NULL);
    expect_graph_error(&r, 400, "ErrorInvalidParameter");
    r = sbc_req("GET", "/outlook/v1.0/me/contacts", AUTH, NULL);
    expect_graph_error(&r, 404, "ErrorItemNotFound");
    free(id);
}

Test(sboutlook, booking_function_is_idempotent_by_transaction_id)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "outlook", TOKEN, "{\"calendar_id\":\"AAMkCal1\"}",
                 "0123456789abcdef0123456789abcdef");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(3), 60, "0123456789abcdef0123456789abcdef");
    struct prov_result res = {0};
    cr_assert_eq(sbc_book(&cal_outlook, &c, &b, &res), PROV_DONE, "%s %s",
                 res.code, res.message);
    char *id = xstrdup(json_string_value(json_object_get(res.value,
                                                         "event_id")));
    cr_assert_eq(sbc_book(&cal_outlook, &c, &b, &res), PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "event_id")),
                     id);
    cr_expect_eq(sbc_count("outlook", "events"), 1);
    json_t *evs = sbc_records("outlook", "events");
    json_t *ev = json_array_get(evs, 0);
    cr_expect_str_eq(json_string_value(json_object_get(ev, "calendar")),
                     "AAMkCal1");
    cr_expect_str_eq(json_string_value(json_object_get(ev,
                                                       "transactionId")),
                     "0123456789abcdef0123456789abcdef");
    json_decref(evs);
    free(id);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sboutlook, a_lost_answer_after_the_create_is_deduplicated)
{
    sbc_faults("[{\"provider\":\"outlook\",\"method\":\"POST\","
               "\"path_prefix\":\"/v1.0/me/events\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":300,\"count\":1}]");
    struct sbc_ctx c;
    sbc_ctx_init(&c, "outlook", TOKEN, "{}",
                 "fedcba9876543210fedcba9876543210");
    struct cal_booking b;
    sbc_booking(&b, sbc_future_hour(5), 30, "fedcba9876543210fedcba9876543210");
    struct prov_result res = {0};
    cr_expect_eq(sbc_book(&cal_outlook, &c, &b, &res), PROV_RETRY);
    cr_expect_eq(sbc_count("outlook", "events"), 1);
    cr_assert_eq(sbc_book(&cal_outlook, &c, &b, &res), PROV_DONE);
    cr_expect_eq(sbc_count("outlook", "events"), 1);
    prov_result_release(&res);
    cal_booking_release(&b);
    sbc_ctx_release(&c);
}

Test(sboutlook, availability_function_follows_pages)
{
    struct sbc_ctx c;
    sbc_ctx_init(&c, "outlook", TOKEN,
                 "{\"business_days\":[0,1,2,3,4,5,6],"
                 "\"business_hours_start\":0,\"business_hours_end\":24,"
                 "\"slot_duration_minutes\":30}",
                 "00000000000000000000000000000001");
    int64_t from = sbc_future_hour(2);
    /* 150 busy half hours (more than one page of 100), then one free. */
    for (int i = 0; i < 150; i++) {
        char id[40];
        snprintf(id, sizeof(id), "00000000000000000000000000%06d", i);
        struct cal_booking b;
        sbc_booking(&b, from + (int64_t)i * 1800000, 30, id);
        struct prov_result res = {0};
        cr_assert_eq(sbc_book(&cal_outlook, &c, &b, &res), PROV_DONE);
        prov_result_release(&res);
        cal_booking_release(&b);
    }
    struct cal_query q = {from, from + 151 * 1800000LL};
    struct cal_slots s = {0};
    struct prov_result res = {0};
    cr_assert_eq(sbc_avail(&cal_outlook, &c, &q, &s, &res), PROV_DONE, "%s",
                 res.message);
    cr_assert_eq(s.n, 1, "%zu slots", s.n);
    cr_expect_eq(s.v[0].start_ms, from + 150 * 1800000LL);
    cal_slots_release(&s);
    prov_result_release(&res);
    sbc_ctx_release(&c);
}

Test(sboutlook_opts, throttling_is_429_with_retry_after)
{
    const char *args[] = {"--outlook-rate", "1", NULL};
    sbc_start(args);
    const char *auth = "Authorization: Bearer any\r\n";
    struct it_resp r = sbc_req("POST", "/outlook/v1.0/me/events", auth, event);
    cr_expect_eq(r.status, 201);
    r = sbc_req("POST", "/outlook/v1.0/me/events", auth, event);
    expect_graph_error(&r, 429, "ApplicationThrottled");
    char v[128];
    cr_expect(strtol(sbc_hdr(&r, "Retry-After", v), NULL, 10) > 0);
}
