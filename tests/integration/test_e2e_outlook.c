/*
 * test_e2e_outlook.c - Outlook (Microsoft Graph) end to end
 * (tests/cal_e2e_support.h): a connection made with `callsyncctl connections
 * add --type outlook`, a signed Retell webhook into the real ingest, the job
 * through a private Redis into the real worker, Outlook (Microsoft Graph)
 * played by the sandbox. One call gives exactly one event, also when the
 * answer to the write is lost after the write (the repeated POST carries the
 * same transactionId), and through a storm of 429s.
 */
#include "cal_e2e_support.h"

static const struct cal_e2e provider = {
    .provider = "outlook",
    .ctl_args = "--type outlook --access-token-env CS_E2E_SECRET "
                "--config '{\"rate_limit\":\"1000/1s\"}'",
    .secret = "graph-e2e-token",
    .record_type = "events",
    .write_method = "POST",
    .write_path = "/v1.0/me/events",
};

static void setup(void)
{
    cal_e2e_setup(&provider);
}

TestSuite(e2e_outlook, .init = setup, .fini = cal_e2e_teardown,
          .timeout = 120);

Test(e2e_outlook, one_call_gives_one_event)
{
    cal_e2e_one_call();
    json_t *evs = cal_e2e_records_json("events");
    json_t *ev = json_array_get(evs, 0);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(ev, "start"), "dateTime")),
                     "2030-03-15T19:00:00.0000000");
    cr_expect_eq(strlen(json_string_value(json_object_get(ev,
                                                          "transactionId"))),
                 32);
    json_decref(evs);
}

Test(e2e_outlook, answer_lost_after_the_write_gives_one_event)
{
    cal_e2e_lost_answer();
}

Test(e2e_outlook, storm_of_429_gives_one_event)
{
    cal_e2e_storm();
}
