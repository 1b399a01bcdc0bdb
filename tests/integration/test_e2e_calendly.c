/*
 * test_e2e_calendly.c - Calendly end to end (tests/cal_e2e_support.h): a
 * connection made with `callsyncctl connections add --type calendly`, a
 * signed Retell webhook into the real ingest, the job through a private
 * Redis into the real worker, Calendly played by the sandbox. One call gives
 * exactly one invitee, also when the answer to the write is lost after the
 * write (found by its scheduled event at the start time), and through a
 * storm of 429s.
 */
#include "cal_e2e_support.h"

static const struct cal_e2e provider = {
    .provider = "calendly",
    .ctl_args = "--type calendly --access-token-env CS_E2E_SECRET "
                "--config '{\"event_type_uri\":\"https://api.calendly.com"
                "/event_types/ETE2E00000000001\","
                "\"rate_limit\":\"1000/1s\"}'",
    .secret = "calendly-e2e-token",
    .record_type = "invitees",
    .write_method = "POST",
    .write_path = "/invitees",
};

static void setup(void)
{
    cal_e2e_setup(&provider);
}

TestSuite(e2e_calendly, .init = setup, .fini = cal_e2e_teardown,
          .timeout = 120);

Test(e2e_calendly, one_call_gives_one_invitee)
{
    cal_e2e_one_call();
    json_t *inv = cal_e2e_records_json("invitees");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(inv, 0),
                                                       "timezone")),
                     "America/Chicago");
    json_decref(inv);
    cr_expect_eq(records("calendly", "events"), 1);
}

Test(e2e_calendly, answer_lost_after_the_write_gives_one_invitee)
{
    cal_e2e_lost_answer();
}

Test(e2e_calendly, storm_of_429_gives_one_invitee)
{
    cal_e2e_storm();
}
