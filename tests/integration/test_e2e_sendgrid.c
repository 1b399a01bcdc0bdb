/*
 * test_e2e_sendgrid.c - SendGrid confirmation e-mail end to end: a
 * connection made with `callsyncctl connections add --type sendgrid`,
 * signed Retell webhooks into the real ingest, the jobs through a private
 * Redis into the real worker, SendGrid played by the sandbox
 * (tests/e2e_support.h). One booked call gives exactly one e-mail; a
 * storm of 429s still one. Mail Send is at least once: when the answer to
 * an accepted message is lost, the retry sends it again, and the test
 * asserts exactly that: two e-mails, both carrying the same job in
 * custom_args and in the X-Callsync-Job-Id header, so the duplicate can
 * be recognised downstream.
 */
#include "e2e_support.h"

#define SENDER "bookings@summit.example"
#define SENDGRID_CONFIG                                                      \
    "'{\"from_email\":\"" SENDER "\",\"from_name\":\"Summit Roofing\","      \
    "\"rate_limit\":\"5000/1s\"}'"

static char *c_sendgrid;

static void setup(void)
{
    e2e_setup("sendgrid", 0);
    c_sendgrid = ctl_add_conn("--type sendgrid --api-key-env CS_E2E_SECRET "
                              "--config " SENDGRID_CONFIG,
                              SENDGRID_KEY);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_sendgrid);
    c_sendgrid = NULL;
    worker_request_timeout_ms = 0;
}

static int mails(void)
{
    return records("sendgrid", "mails");
}

static bool sendgrid_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:sendgrid") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool mailed(void)
{
    return mails() >= 1 && sendgrid_drained();
}

static json_t *mail_records(void)
{
    struct it_resp r = it_get(sandbox_port, "/_sandbox/records?provider="
                                            "sendgrid&type=mails");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static const char *job_of(const json_t *mail)
{
    return json_string_value(json_object_get(
        json_object_get(mail, "custom_args"), "callsync_job_id"));
}

TestSuite(e2e_sendgrid, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_sendgrid, a_booked_call_gives_one_email)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(mailed, 30000, "the e-mail");
    cr_expect_eq(mails(), 1);
    cr_expect_eq(dead_count(), 0);
    json_t *recs = mail_records();
    json_t *m = json_array_get(recs, 0);
    json_t *to = json_array_get(json_object_get(
        json_array_get(json_object_get(m, "personalizations"), 0), "to"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(to, "email")),
                     "caller000000@example.com");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(m, "from"), "email")),
                     SENDER);
    const char *job = job_of(m);
    cr_assert(job && strlen(job) == 32);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(m, "headers"),
                         "X-Callsync-Job-Id")),
                     job);
    const char *text = json_string_value(json_object_get(
        json_array_get(json_object_get(m, "content"), 0), "value"));
    cr_expect(text && strstr(text, "2026-02-20 at 14:00 (America/Chicago)"),
              "%s", text);
    json_decref(recs);
}

Test(e2e_sendgrid, lost_answer_sends_again_at_least_once)
{
    set_faults("[{\"provider\":\"sendgrid\",\"method\":\"POST\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(mailed, 60000, "the e-mail");
    /* What happens: SendGrid accepted the first message, the worker
     * could not know, and sent it again. */
    cr_expect_eq(mails(), 2, "at least once: %d e-mails", mails());
    cr_expect_eq(dead_count(), 0);
    json_t *recs = mail_records();
    const char *a = job_of(json_array_get(recs, 0));
    const char *b = job_of(json_array_get(recs, 1));
    cr_expect(a && b && strcmp(a, b) == 0,
              "both carry the same job (%s, %s)", a, b);
    json_decref(recs);
}

Test(e2e_sendgrid, storm_of_429_then_one_email_per_call)
{
    set_faults("[{\"provider\":\"sendgrid\",\"status\":429,"
               "\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 3);
    wait_until(sendgrid_drained, 60000, "the jobs");
    cr_expect_eq(mails(), 3, "one per call: %d", mails());
    cr_expect_eq(dead_count(), 0);
}
