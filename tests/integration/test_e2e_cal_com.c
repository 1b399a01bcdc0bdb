/*
 * test_e2e_cal_com.c - Cal.com end to end (tests/cal_e2e_support.h): a
 * connection made with `callsyncctl connections add --type cal_com`, a
 * signed Retell webhook into the real ingest, the job through a private
 * Redis into the real worker, Cal.com played by the sandbox. One call gives
 * exactly one booking, also when the answer to the write is lost after the
 * write (found by the job id in its metadata), and through a storm of 429s.
 */
#include "cal_e2e_support.h"

static const struct cal_e2e provider = {
    .provider = "cal_com",
    .ctl_args = "--type cal_com --api-key-env CS_E2E_SECRET --config "
                "'{\"event_type_id\":42,\"rate_limit\":\"1000/1s\"}'",
    .secret = "cal_live_e2e_key",
    .record_type = "bookings",
    .write_method = "POST",
    .write_path = "/v2/bookings",
};

static void setup(void)
{
    cal_e2e_setup(&provider);
}

TestSuite(e2e_calcom, .init = setup, .fini = cal_e2e_teardown,
          .timeout = 120);

Test(e2e_calcom, one_call_gives_one_booking)
{
    cal_e2e_one_call();
    json_t *bks = cal_e2e_records_json("bookings");
    json_t *bk = json_array_get(bks, 0);
    cr_expect_str_eq(json_string_value(json_object_get(bk, "start")),
                     "2030-03-15T19:00:00.000Z");
    cr_expect(json_string_value(json_object_get(
                  json_object_get(bk, "metadata"), "callsync_job")));
    json_decref(bks);
}

Test(e2e_calcom, answer_lost_after_the_write_gives_one_booking)
{
    cal_e2e_lost_answer();
}

Test(e2e_calcom, storm_of_429_gives_one_booking)
{
    cal_e2e_storm();
}
