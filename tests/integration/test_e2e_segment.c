/*
 * test_e2e_segment.c - Segment end to end: a connection made with
 * `callsyncctl connections add --type segment` (the write key as its API
 * key), a signed Retell webhook, the job through a private Redis into
 * the real worker, Segment's tracking API played by the sandbox
 * (tests/e2e_support.h). One call gives exactly one Identify and one
 * Track; when the Track's answer is lost after Segment took it, the
 * retry carries the same messageId and Segment keeps one; a storm of
 * 429s still gives one of each.
 */
#include "e2e_support.h"

#define SEGMENT_CONFIG                                                    \
    "'{\"identify\":true,\"event_name\":\"Call Synced\","                 \
    "\"workspace_id\":\"ws_e2e\",\"rate_limit\":\"5000/1s\","             \
    "\"field_mappings\":{\"ai_analysis.intent\":\"intent\"}}'"

static char *conn;

static void setup(void)
{
    e2e_setup("seg", 0);
    conn = ctl_add_conn("--type segment --api-key-env CS_E2E_SECRET "
                        "--config " SEGMENT_CONFIG,
                        SEGMENT_KEY);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(conn);
    conn = NULL;
    worker_request_timeout_ms = 0;
}

static int seg(const char *type)
{
    return records("segment", type);
}

static bool tracked(void)
{
    return seg("tracks") >= 1 &&
           rint_("XLEN %s", "cs:{0}:q:segment") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static json_t *seg_records(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=segment&type=%s",
             type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static long long counter(const char *name)
{
    json_t *s = seg_records("stats");
    long long n = json_integer_value(json_object_get(json_array_get(s, 0),
                                                     name));
    json_decref(s);
    return n;
}

static void expect_one_of_each(void)
{
    cr_expect_eq(seg("tracks"), 1, "tracks: %d", seg("tracks"));
    cr_expect_eq(seg("identifies"), 1, "identifies: %d", seg("identifies"));
    cr_expect_eq(counter("dropped"), 0, "the write key was known");
    cr_expect_eq(dead_count(), 0);
}

TestSuite(e2e_segment, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_segment, one_call_gives_one_identify_and_one_track)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(tracked, 30000, "the track");
    expect_one_of_each();

    json_t *ts = seg_records("tracks");
    json_t *t = json_array_get(ts, 0);
    cr_expect_str_eq(json_string_value(json_object_get(t, "event")),
                     "Call Synced");
    cr_expect_str_eq(json_string_value(json_object_get(t, "userId")),
                     "caller000000@example.com");
    cr_expect_str_eq(json_string_value(json_object_get(t, "writeKey")),
                     SEGMENT_KEY);
    const char *mid = json_string_value(json_object_get(t, "messageId"));
    cr_expect(mid && strlen(mid) == 38 && strcmp(mid + 32, ":track") == 0,
              "%s", mid);
    json_t *p = json_object_get(t, "properties");
    cr_expect_str_eq(json_string_value(json_object_get(p, "call_id")),
                     "call_w_000000");
    cr_expect_str_eq(json_string_value(json_object_get(p, "intent")),
                     "appointment_booking");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(p, "appointment"), "date")),
                     "2026-02-20");
    json_decref(ts);
    json_t *is = seg_records("identifies");
    json_t *traits = json_object_get(json_array_get(is, 0), "traits");
    cr_expect_str_eq(json_string_value(json_object_get(traits, "phone")),
                     "+14155550000");
    cr_expect_str_eq(json_string_value(json_object_get(traits, "name")),
                     "Marcus Bell");
    json_decref(is);
}

Test(e2e_segment, track_answer_lost_after_segment_took_it_is_kept_once)
{
    set_faults("[{\"provider\":\"segment\",\"path_prefix\":\"/v1/track\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    /* the sandbox kept the first delivery; wait for the retry to land as
     * a duplicate and the job to finish */
    int64_t end = cs_mono_ms() + 60000;
    while (cs_mono_ms() < end && !(counter("duplicates") >= 1 && tracked()))
        usleep(50000);
    cr_expect_eq(counter("duplicates"), 1, "the retry sent the same "
                                           "messageId");
    expect_one_of_each();
}

Test(e2e_segment, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"segment\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(tracked, 60000, "the track");
    expect_one_of_each();
}

Test(e2e_segment, connections_test_says_why_it_cannot)
{
    char *out = NULL;
    char *args = xasprintf("connections test %s", conn);
    cr_expect_eq(ctl_run_out(args, &out), 4, "%s", out);
    cr_expect(strstr(out, "no read-only call"), "%s", out);
    free(args);
    free(out);
}
