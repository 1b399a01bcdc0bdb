/*
 * test_e2e_google_calendar.c - Google Calendar end to end
 * (tests/cal_e2e_support.h): a connection made with `callsyncctl connections
 * add --type google_calendar`, a signed Retell webhook into the real ingest,
 * the job through a private Redis into the real worker, Google Calendar
 * played by the sandbox. One call gives exactly one event, also when the
 * answer to the write is lost after the write (found by our event id: 409
 * duplicate, then read back), and through a storm of 429s.
 */
#include "cal_e2e_support.h"

static const struct cal_e2e provider = {
    .provider = "google_calendar",
    .ctl_args = "--type google_calendar --access-token-env CS_E2E_SECRET "
                "--config '{\"calendar_id\":\"primary\","
                "\"rate_limit\":\"1000/1s\"}'",
    .secret = "ya29.e2e-google-token",
    .record_type = "events",
    .write_method = "POST",
    .write_path = "/calendar/v3/calendars/primary/events",
};

static void setup(void)
{
    cal_e2e_setup(&provider);
}

TestSuite(e2e_gcal, .init = setup, .fini = cal_e2e_teardown,
          .timeout = 120);

Test(e2e_gcal, one_call_gives_one_event)
{
    cal_e2e_one_call();
    json_t *evs = cal_e2e_records_json("events");
    json_t *ev = json_array_get(evs, 0);
    /* 14:00 in Chicago on 15 March 2030 (CDT, UTC-5). */
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(ev, "start"), "dateTime")),
                     "2030-03-15T14:00:00-05:00");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(ev, "attendees"), 0),
                         "email")),
                     "caller000000@example.com");
    const char *id = json_string_value(json_object_get(ev, "id"));
    cr_expect(id && strlen(id) == 52, "the event id is our key: %s", id);
    json_decref(evs);
}

Test(e2e_gcal, answer_lost_after_the_write_gives_one_event)
{
    cal_e2e_lost_answer();
}

Test(e2e_gcal, storm_of_429_gives_one_event)
{
    cal_e2e_storm();
}
