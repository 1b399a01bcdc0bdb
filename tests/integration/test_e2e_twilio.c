/*
 * test_e2e_twilio.c - Twilio SMS end to end: a connection made with
 * `callsyncctl connections add --type twilio`, signed Retell webhooks into
 * the real ingest, the jobs through a private Redis into the real worker,
 * Twilio played by the sandbox (tests/e2e_support.h). One call that
 * booked an appointment gives exactly one SMS with the job's reference;
 * a call without one gives none; a message whose answer is lost after
 * Twilio queued it is found by listing the recipient's messages, not sent
 * again; a storm of 429s still ends in one message.
 */
#include "e2e_support.h"

#define TWILIO_CONFIG                                                        \
    "'{\"account_sid\":\"" TWILIO_SID "\",\"from\":\"+15017122661\","        \
    "\"rate_limit\":\"5000/1s\"}'"

static char *c_twilio;

static void setup(void)
{
    e2e_setup("twilio", 0);
    c_twilio = ctl_add_conn("--type twilio --api-key-env CS_E2E_SECRET "
                            "--config " TWILIO_CONFIG,
                            TWILIO_TOKEN);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_twilio);
    c_twilio = NULL;
    worker_request_timeout_ms = 0;
}

static int messages(void)
{
    return records("twilio", "messages");
}

static bool twilio_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:twilio") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool texted(void)
{
    return messages() >= 1 && twilio_drained();
}

static json_t *sandbox_json(const char *path)
{
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200, "%s: %.*s", path, (int)r.body_len, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    return j;
}

/* Requests to the Messages list resource by method. */
static void count_requests(int *posts, int *lists)
{
    json_t *j = sandbox_json("/_sandbox/requests?provider=twilio");
    *posts = *lists = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "requests"), i, q) {
        const char *m = json_string_value(json_object_get(q, "method"));
        *posts += strcmp(m, "POST") == 0;
        *lists += strcmp(m, "GET") == 0;
    }
    json_decref(j);
}

/* The job id of the stream's only job, from the job hashes. */
static void the_job_id(char out[33])
{
    redisReply *r = redisCommand(rc, "SCAN 0 MATCH cs:{0}:job:* COUNT 1000");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[1]->elements == 1, "one job hash");
    const char *k = r->element[1]->element[0]->str;
    snprintf(out, 33, "%s", strrchr(k, ':') + 1);
    freeReplyObject(r);
}

TestSuite(e2e_twilio, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_twilio, a_booked_call_gives_one_sms)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(texted, 30000, "the SMS");
    cr_expect_eq(messages(), 1);
    cr_expect_eq(dead_count(), 0);
    char job[33];
    the_job_id(job);
    json_t *j = sandbox_json("/_sandbox/records?provider=twilio"
                             "&type=messages");
    json_t *m = json_array_get(json_object_get(j, "records"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(m, "to")),
                     "+14155550000");
    cr_expect_str_eq(json_string_value(json_object_get(m, "from")),
                     "+15017122661");
    const char *body = json_string_value(json_object_get(m, "body"));
    char ref[16];
    snprintf(ref, sizeof(ref), "Ref: %.8s", job);
    cr_expect(body && strstr(body, ref), "'%s' should hold '%s'", body, ref);
    cr_expect(body && strstr(body, "2026-02-20 at 14:00"), "%s", body);
    json_decref(j);

    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success' AND operation_type = 'sms'",
                     0, NULL);
    cr_expect_str_eq(n, "1");
    free(n);
}

Test(e2e_twilio, a_call_without_an_appointment_sends_nothing)
{
    start_worker(16);
    post_fixture_calls("call_analyzed.json", 0, 1);
    /* The job ends without calling Twilio. */
    wait_until(twilio_drained, 30000, "the job");
    char job[33];
    the_job_id(job);
    char key[80];
    snprintf(key, sizeof(key), "cs:{0}:job:%s", job);
    redisReply *r = redisCommand(rc, "HGET %s state", key);
    cr_expect(r && r->type == REDIS_REPLY_STRING &&
              strcmp(r->str, "done") == 0, "state %s",
              r && r->str ? r->str : "(none)");
    freeReplyObject(r);
    cr_expect_eq(messages(), 0);
    int posts, lists;
    count_requests(&posts, &lists);
    cr_expect_eq(posts + lists, 0, "Twilio was not called");
}

Test(e2e_twilio, sms_answer_lost_after_sending_is_found_not_resent)
{
    /* Twilio queues the message, then its answer is withheld: the worker
     * times out not knowing, and the retry finds the message by listing
     * the recipient's messages for the job's reference. */
    set_faults("[{\"provider\":\"twilio\",\"method\":\"POST\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(texted, 60000, "the SMS");
    cr_expect_eq(messages(), 1);
    cr_expect_eq(dead_count(), 0);
    int posts, lists;
    count_requests(&posts, &lists);
    cr_expect_eq(posts, 1, "one send");
    cr_expect_eq(lists, 1, "one look-up of the recipient's messages");
}

Test(e2e_twilio, storm_of_429_then_one_sms_per_call)
{
    set_faults("[{\"provider\":\"twilio\",\"status\":429,"
               "\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 3);
    wait_until(twilio_drained, 60000, "the jobs");
    cr_expect_eq(messages(), 3, "one per call");
    cr_expect_eq(distinct("twilio", "messages", "to"), 3);
    cr_expect_eq(dead_count(), 0);
}
