/*
 * test_live_tools.c - the live-call tools end to end: signed Retell
 * custom-function calls into the real ingest (/tools/retell), the live
 * request through a private Redis into the real worker, Google Calendar
 * played by the sandbox. Availability matches the calendar's busy times
 * and the business hours; a booking made during the call is the one
 * event the post-call job finds done; a calendar slower than the deadline
 * gives the spoken fallback and its late reply does no harm; forged,
 * unknown-agent and calendar-less requests are answered as they should.
 */
#include "e2e_support.h"
#include "norm.h"

#define GCAL_TOKEN "ya29.live-google-token"
#define EVENTS_PATH "/google_calendar/calendar/v3/calendars/primary/events"
#define DEADLINE_MS 3000

static char *conn;

/* The worker has made its live consumer group: it reads. */
static bool worker_reading(void)
{
    return it_redis_int(rc, "EXISTS cs:{0}:live") == 1;
}

static void setup(void)
{
    e2e_setup("live", 0);
    conn = ctl_add_conn(
        "--type google_calendar --access-token-env CS_E2E_SECRET "
        "--config '{\"calendar_id\":\"primary\",\"timezone\":"
        "\"America/Chicago\",\"business_hours_start\":9,"
        "\"business_hours_end\":17,\"slot_duration_minutes\":60,"
        "\"rate_limit\":\"1000/1s\"}'",
        GCAL_TOKEN);
    ingest_env_extra[0] = "CALLSYNC_LIVE_DEADLINE_MS=3000";
    start_ingest();
    worker_env_extra[0] = "CALLSYNC_WORKER_LIVE_INFLIGHT=32";
    start_worker(16);
    wait_until(worker_reading, 15000, "the worker");
}

static void teardown(void)
{
    e2e_teardown();
    free(conn);
    conn = NULL;
}

TestSuite(live, .init = setup, .fini = teardown, .timeout = 120);

/* A signed custom-function call; the answer's body as JSON in *out. */
static int tool(const char *fn, const char *call_id, const char *agent_id,
                const char *args, const char *key, json_t **out,
                int64_t *ms)
{
    char *body = xasprintf("{\"name\":\"%s\",\"call\":{\"call_id\":\"%s\","
                           "\"agent_id\":\"%s\",\"from_number\":"
                           "\"+13125550187\",\"call_status\":\"ongoing\"},"
                           "\"args\":%s}",
                           fn, call_id, agent_id, args);
    size_t len = strlen(body);
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(key, strlen(key), body, len, ts, strlen(ts), NULL, 0,
                   mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    char *h = xasprintf("X-Retell-Signature: v=%s,d=%s\r\n", ts, hex);
    int64_t t0 = cs_mono_ms();
    struct it_resp r = it_post(ingest_port, "/tools/retell", h, body, len);
    if (ms)
        *ms = cs_mono_ms() - t0;
    free(h);
    free(body);
    if (out) {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        cr_assert(*out, "answer is not JSON: %.*s", (int)r.body_len, r.body);
    }
    return r.status;
}

static const char *msg_of(const json_t *j)
{
    const char *m = json_string_value(json_object_get(j, "message"));
    return m ? m : "";
}

/* An event on the sandbox calendar, UTC times. */
static void busy(const char *start, const char *end)
{
    char *body = xasprintf("{\"summary\":\"busy\",\"start\":{\"dateTime\":"
                           "\"%s\"},\"end\":{\"dateTime\":\"%s\"}}",
                           start, end);
    struct it_resp r = it_post(sandbox_port, EVENTS_PATH,
                               "Authorization: Bearer " GCAL_TOKEN "\r\n",
                               body, strlen(body));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    free(body);
}

static long long live_len(void)
{
    return it_redis_int(rc, "XLEN cs:{0}:live");
}

Test(live, availability_matches_busy_times_and_business_hours)
{
    /* Friday 15 March 2030, Chicago (CDT, UTC-5): busy 10:00-11:00 and
     * 13:30-14:15 local; open 9 to 5 in hour slots. */
    busy("2030-03-15T15:00:00Z", "2030-03-15T16:00:00Z");
    busy("2030-03-15T18:30:00Z", "2030-03-15T19:15:00Z");
    json_t *j = NULL;
    int64_t ms = 0;
    int st = tool("check_availability", "call_live_avail",
                  "agent_d8a1c0ffee", "{\"date\":\"2030-03-15\"}", RETELL_KEY,
                  &j, &ms);
    cr_assert_eq(st, 200);
    cr_expect_lt(ms, DEADLINE_MS, "answered in %lld ms", (long long)ms);
    json_t *slots = json_object_get(j, "slots");
    /* 9, 11, 12, 15, 16: 10 is busy, 13 and 14 overlap 13:30-14:15. */
    static const char *const want[] = {
        "2030-03-15T09:00:00-05:00", "2030-03-15T11:00:00-05:00",
        "2030-03-15T12:00:00-05:00", "2030-03-15T15:00:00-05:00",
        "2030-03-15T16:00:00-05:00"};
    cr_assert_eq(json_array_size(slots), CS_ARRAY_LEN(want), "%s",
                 msg_of(j));
    for (size_t i = 0; i < CS_ARRAY_LEN(want); i++)
        cr_expect_str_eq(json_string_value(json_object_get(
                             json_array_get(slots, i), "start")),
                         want[i]);
    cr_expect_str_eq(json_string_value(json_object_get(j, "timezone")),
                     "America/Chicago");
    cr_expect(strstr(msg_of(j), "Friday, March 15 at 9 AM, 11 AM, 12 PM, "
                                "3 PM or 4 PM"),
              "%s", msg_of(j));
    json_decref(j);
    /* A weekend day has no open times. */
    st = tool("check_availability", "call_live_avail", "agent_d8a1c0ffee",
              "{\"date\":\"2030-03-16\"}", RETELL_KEY, &j, NULL);
    cr_assert_eq(st, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "slots")), 0);
    cr_expect(strstr(msg_of(j), "don't have any open times on Saturday"),
              "%s", msg_of(j));
    json_decref(j);
    cr_expect_eq(live_len(), 0, "answered requests leave the stream");
}

static bool job_done(void)
{
    char id[33];
    cs_job_id("call_w_000000", conn, id);
    char key[96];
    snprintf(key, sizeof(key), "cs:{0}:job:%s", id);
    redisReply *r = redisCommand(rc, "HGET %s state", key);
    bool done = r && r->type == REDIS_REPLY_STRING &&
                strcmp(r->str, "done") == 0;
    freeReplyObject(r);
    return done;
}

Test(live, booking_during_the_call_is_the_one_event_the_post_call_job_finds)
{
    /* The fixture's call (call_w_000000 as post_fixture_calls names it)
     * books Friday 15 March 2030 at 14:00 in Chicago: book it live. */
    json_t *j = NULL;
    int st = tool("book_appointment", "call_w_000000", "agent_d8a1c0ffee",
                  "{\"customer_name\":\"Marcus Bell\",\"customer_phone\":"
                  "\"(312) 555-0187\",\"customer_email\":"
                  "\"marcus@example.org\",\"appointment_date\":\"2030-03-15\","
                  "\"appointment_time\":\"14:00\",\"duration_minutes\":60,"
                  "\"notes\":\"Roof inspection\"}",
                  RETELL_KEY, &j, NULL);
    cr_assert_eq(st, 200);
    cr_assert(json_is_true(json_object_get(j, "booked")), "%s", msg_of(j));
    cr_expect_str_eq(json_string_value(json_object_get(j, "start")),
                     "2030-03-15T14:00:00-05:00");
    cr_expect(strstr(msg_of(j), "Friday, March 15 at 2 PM"), "%s",
              msg_of(j));
    json_decref(j);
    cr_expect_eq(records("google_calendar", "events"), 1);
    /* The checkpoint sits on the job hash the post-call job will have,
     * with a TTL since no job exists yet. */
    char id[33], key[96];
    cs_job_id("call_w_000000", conn, id);
    snprintf(key, sizeof(key), "cs:{0}:job:%s", id);
    cr_expect_eq(it_redis_int(rc, "HEXISTS %s step:appointment", key), 1);
    cr_expect_eq(it_redis_int(rc, "HEXISTS %s state", key), 0);
    cr_expect_gt(it_redis_int(rc, "TTL %s", key), 0);
    /* The same slot asked again is taken now. */
    st = tool("book_appointment", "call_live_other", "agent_d8a1c0ffee",
              "{\"customer_name\":\"Ann Lee\",\"appointment_date\":"
              "\"2030-03-15\",\"appointment_time\":\"14:30\"}",
              RETELL_KEY, &j, NULL);
    cr_assert_eq(st, 200);
    cr_expect(json_is_false(json_object_get(j, "booked")), "%s", msg_of(j));
    json_decref(j);

    /* The call ends: the post-call webhook's job is enqueued (the hash
     * with only a checkpoint does not stop it), finds the step done and
     * books nothing more. */
    post_fixture_calls("call_analyzed_appointment_2030.json", 0, 1);
    wait_until(job_done, 30000, "the post-call job");
    cr_expect_eq(records("google_calendar", "events"), 1, "one event");
    cr_expect_eq(dead_count(), 0);
    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=google_calendar");
    json_t *reqs = json_loadb(r.body, r.body_len, 0, NULL);
    int posts = 0;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(reqs, "requests"), i, x)
        posts += strcmp(json_string_value(json_object_get(x, "method")),
                        "POST") == 0 &&
                 strcmp(json_string_value(json_object_get(x, "path")),
                        EVENTS_PATH) == 0;
    json_decref(reqs);
    cr_expect_eq(posts, 1, "one write: the live booking's");
}

static long long late_replies(void)
{
    struct it_resp r = it_get(ingest_port, "/metrics");
    const char *k = "callsync_ingest_live_requests_total{outcome="
                    "\"late_reply\"} ";
    const char *p = strstr(r.body, k);
    return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

static bool late_reply_seen(void)
{
    return late_replies() >= 1 && live_len() == 0;
}

Test(live, calendar_slower_than_the_deadline_gives_the_fallback)
{
    set_faults("[{\"provider\":\"google_calendar\",\"path_prefix\":"
               "\"/calendar/v3/freeBusy\",\"latency_ms\":4500,"
               "\"count\":1}]");
    json_t *j = NULL;
    int64_t ms = 0;
    int st = tool("check_availability", "call_live_slow", "agent_d8a1c0ffee",
                  "{\"date\":\"2030-03-15\"}", RETELL_KEY, &j, &ms);
    cr_assert_eq(st, 200);
    cr_expect(strstr(msg_of(j), "can't reach the calendar"), "%s",
              msg_of(j));
    cr_expect(strstr(msg_of(j), "call you back to confirm a time"), "%s",
              msg_of(j));
    cr_expect_geq(ms, DEADLINE_MS - 100);
    cr_expect_lt(ms, DEADLINE_MS + 1000);
    json_decref(j);
    /* The worker's own answer comes after the deadline: dropped, and the
     * entry is gone from the stream. */
    wait_until(late_reply_seen, 10000, "the late reply");
    /* Nothing is harmed: the next request is answered. */
    st = tool("check_availability", "call_live_slow", "agent_d8a1c0ffee",
              "{\"date\":\"2030-03-15\"}", RETELL_KEY, &j, NULL);
    cr_assert_eq(st, 200);
    cr_expect_eq(json_array_size(json_object_get(j, "slots")), 6, "%s",
                 msg_of(j));
    json_decref(j);
}

Test(live, forged_signature_is_refused_and_nothing_is_queued)
{
    json_t *j = NULL;
    int st = tool("check_availability", "call_live_forged",
                  "agent_d8a1c0ffee", "{\"date\":\"2030-03-15\"}",
                  "key_someone_else", &j, NULL);
    cr_expect_eq(st, 401);
    json_decref(j);
    cr_expect_eq(live_len(), 0);
    cr_expect_eq(it_redis_int(rc, "XLEN cs:{0}:q:google_calendar"), 0);
}

Test(live, unknown_agent_is_404_and_bad_arguments_are_400)
{
    json_t *j = NULL;
    cr_expect_eq(tool("check_availability", "call_live_x", "agent_nobody",
                      "{\"date\":\"2030-03-15\"}", RETELL_KEY, &j, NULL),
                 404);
    json_decref(j);
    cr_expect_eq(tool("check_availability", "call_live_x",
                      "agent_d8a1c0ffee", "{\"date\":\"15/03/2030\"}",
                      RETELL_KEY, &j, NULL),
                 400);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")),
                     "args.date");
    json_decref(j);
    cr_expect_eq(tool("book_appointment", "call_live_x", "agent_d8a1c0ffee",
                      "{\"appointment_date\":\"2030-03-15\"}", RETELL_KEY,
                      &j, NULL),
                 400);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")),
                     "args.appointment_time");
    json_decref(j);
    cr_expect_eq(tool("transfer_call", "call_live_x", "agent_d8a1c0ffee",
                      "{}", RETELL_KEY, &j, NULL),
                 400);
    cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "name");
    json_decref(j);
    cr_expect_eq(live_len(), 0);
}

Test(live, agent_without_a_calendar_hears_booking_is_not_available)
{
    const char *p[] = {org};
    char *other = it_sql(&db,
                         "INSERT INTO agents (organization_id, name, "
                         "retell_agent_id) VALUES ($1, 'front', "
                         "'agent_nocalendar') RETURNING id::text",
                         1, p);
    free(other);
    json_t *j = NULL;
    int st = tool("book_appointment", "call_live_nocal", "agent_nocalendar",
                  "{\"appointment_date\":\"2030-03-15\","
                  "\"appointment_time\":\"14:00\"}",
                  RETELL_KEY, &j, NULL);
    cr_assert_eq(st, 200);
    cr_expect_str_eq(json_string_value(json_object_get(j, "status")),
                     "not_available");
    cr_expect(strstr(msg_of(j), "Booking isn't available"), "%s", msg_of(j));
    json_decref(j);
    cr_expect_eq(live_len(), 0);
}
