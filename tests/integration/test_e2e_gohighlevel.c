/*
 * test_e2e_gohighlevel.c - GoHighLevel end to end: a connection made with
 * `callsyncctl connections add --type gohighlevel`, a signed Retell
 * webhook into the real ingest, the job through a private Redis into the
 * real worker, HighLevel played by the sandbox (tests/e2e_support.h). The
 * tests count what the sandbox holds: one call gives exactly one contact,
 * one note, one appointment, one opportunity and one workflow enrolment,
 * also when the note's answer is lost after the note was written, and
 * through a storm of 429s.
 */
#include "e2e_support.h"

#define GHL_CONFIG                                                           \
    "'{\"location_id\":\"loc_e2e_1\",\"calendar_id\":\"cal_e2e_1\","         \
    "\"pipeline_id\":\"pipe_e2e_1\",\"pipeline_stage_id\":\"stage_new\","    \
    "\"workflow_id\":\"wf_e2e_1\",\"rate_limit\":\"5000/1s\","               \
    "\"field_mappings\":{\"call_outcome\":\"customField.call_result\"}}'"

/* The sandbox numbers its records from 1 after a start: the first
 * contact is this one. */
#define FIRST_CONTACT "ct0000000000000001"

static char *c_ghl;

static void setup(void)
{
    e2e_setup("ghl", 0);
    c_ghl = ctl_add_conn("--type gohighlevel --api-key-env CS_E2E_SECRET "
                         "--config " GHL_CONFIG,
                         GHL_TOKEN);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_ghl);
    c_ghl = NULL;
    worker_request_timeout_ms = 0;
}

static int ghl(const char *type)
{
    return records("gohighlevel", type);
}

static bool enrolled(void)
{
    return ghl("enrollments") >= 1 && drained();
}

/* The records of a type, parsed. */
static json_t *ghl_records_json(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=gohighlevel"
                                 "&type=%s", type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static void expect_exactly_one_of_each(void)
{
    cr_expect_eq(ghl("contacts"), 1, "contacts: %d", ghl("contacts"));
    cr_expect_eq(ghl("notes"), 1, "notes: %d", ghl("notes"));
    cr_expect_eq(ghl("appointments"), 1, "appointments: %d",
                 ghl("appointments"));
    cr_expect_eq(ghl("opportunities"), 1, "opportunities: %d",
                 ghl("opportunities"));
    cr_expect_eq(ghl("enrollments"), 1, "enrollments: %d",
                 ghl("enrollments"));
    cr_expect_eq(dead_count(), 0);
}

TestSuite(e2e_ghl, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_ghl, one_call_gives_one_of_each)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(enrolled, 30000, "the workflow enrolment");
    expect_exactly_one_of_each();

    json_t *contacts = ghl_records_json("contacts");
    json_t *c = json_array_get(contacts, 0);
    cr_expect_str_eq(json_string_value(json_object_get(c, "id")),
                     FIRST_CONTACT);
    cr_expect_str_eq(json_string_value(json_object_get(c, "phone")),
                     "+14155550000");
    cr_expect_str_eq(json_string_value(json_object_get(c, "email")),
                     "caller000000@example.com");
    cr_expect_str_eq(json_string_value(json_object_get(c, "locationId")),
                     "loc_e2e_1");
    /* The seed-style mapping reached the custom field. */
    json_t *cf = json_array_get(json_object_get(c, "customFields"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(cf, "id")),
                     "call_result");
    cr_expect(json_string_value(json_object_get(cf, "value")));
    json_decref(contacts);

    json_t *notes = ghl_records_json("notes");
    const char *body = json_string_value(
        json_object_get(json_array_get(notes, 0), "body"));
    cr_expect(body && strstr(body, "Sync reference: callsync:"), "%s", body);
    cr_expect(body && strstr(body, "Summary: Marcus Bell booked"), "%s",
              body);
    json_decref(notes);

    json_t *appts = ghl_records_json("appointments");
    json_t *a = json_array_get(appts, 0);
    /* 14:00 in Chicago on 20 February: UTC-6. */
    cr_expect_str_eq(json_string_value(json_object_get(a, "startTime")),
                     "2026-02-20T14:00:00-06:00");
    cr_expect_str_eq(json_string_value(json_object_get(a, "calendarId")),
                     "cal_e2e_1");
    cr_expect_str_eq(json_string_value(json_object_get(a, "contactId")),
                     FIRST_CONTACT);
    json_decref(appts);

    json_t *opps = ghl_records_json("opportunities");
    json_t *o = json_array_get(opps, 0);
    cr_expect_str_eq(json_string_value(json_object_get(o, "pipelineId")),
                     "pipe_e2e_1");
    cr_expect_str_eq(json_string_value(json_object_get(o, "pipelineStageId")),
                     "stage_new");
    json_decref(opps);

    /* Every step logged once as a success. */
    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success'",
                     0, NULL);
    cr_expect_str_eq(n, "5");
    free(n);
}

Test(e2e_ghl, note_answer_lost_after_the_write_gives_one_note)
{
    /* The note is written, then its answer withheld: the worker times out
     * not knowing, retries, and finds the note by its marker. */
    set_faults("[{\"provider\":\"gohighlevel\",\"method\":\"POST\","
               "\"path_prefix\":\"/contacts/" FIRST_CONTACT "/notes\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(enrolled, 60000, "the workflow enrolment");
    expect_exactly_one_of_each();

    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 1, "the hang rule fired once");
    json_decref(j);

    /* The retry listed the contact's notes before writing. */
    r = it_get(sandbox_port, "/_sandbox/requests?provider=gohighlevel");
    j = json_loadb(r.body, r.body_len, 0, NULL);
    int posts = 0, lists = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "requests"), i, q) {
        const char *m = json_string_value(json_object_get(q, "method"));
        const char *p = json_string_value(json_object_get(q, "path"));
        if (strcmp(p, "/gohighlevel/contacts/" FIRST_CONTACT "/notes") != 0)
            continue;
        posts += strcmp(m, "POST") == 0;
        lists += strcmp(m, "GET") == 0;
    }
    json_decref(j);
    cr_expect_eq(posts, 1, "one POST of the note");
    cr_expect_eq(lists, 1, "one look-up of the notes");
}

Test(e2e_ghl, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"gohighlevel\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(enrolled, 60000, "the workflow enrolment");
    expect_exactly_one_of_each();
}

/* HighLevel counts its budget per location: two connections to the same
 * location share one limiter key, so together they stay within one
 * connection's limit (4/s here, paced every 250 ms), where two separate
 * keys would send 8/s. */
Test(e2e_ghl, two_connections_to_one_location_share_one_limit)
{
    const char *slow = "'{\"location_id\":\"loc_shared\","
                       "\"rate_limit\":\"4/1s\"}'";
    char *args = xasprintf("--type gohighlevel --api-key-env CS_E2E_SECRET "
                           "--config %s", slow);
    char *c1 = ctl_add_conn(args, GHL_TOKEN);
    char *c2 = ctl_add_conn(args, GHL_TOKEN);
    free(args);
    /* The setup's connection is fast and on another location: take it
     * out so that only the two slow ones get jobs. */
    const char *p[] = {c_ghl};
    free(it_sql(&db, "UPDATE integration_connections SET is_active = false "
                     "WHERE id = $1::uuid RETURNING id::text", 1, p));
    it_stop(ingest_pid, SIGTERM, 15000);
    start_ingest();
    start_worker(64);
    post_fixture_calls("call_analyzed.json", 0, 3);
    wait_until(drained, 60000, "every job done");

    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=gohighlevel");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *reqs = json_object_get(j, "requests");
    size_t n = json_array_size(reqs);
    cr_assert_geq(n, 12, "both connections synced 3 calls: %zu requests", n);
    int64_t *at = xcalloc(n, sizeof(*at));
    for (size_t i = 0; i < n; i++)
        at[i] = json_integer_value(
            json_object_get(json_array_get(reqs, i), "received_at_ms"));
    /* No second holds more than the limit (plus one for a request on the
     * window's edge); the whole run took as long as pacing says. */
    size_t worst = 0;
    for (size_t i = 0, k = 0; i < n; i++) {
        while (at[i] - at[k] >= 1000)
            k++;
        if (i - k + 1 > worst)
            worst = i - k + 1;
    }
    cr_expect_leq(worst, 5, "%zu requests within one second", worst);
    cr_expect_geq(at[n - 1] - at[0], (int64_t)(n - 1) * 250 * 9 / 10,
                  "%zu requests in %lld ms", n,
                  (long long)(at[n - 1] - at[0]));
    cr_expect_eq(dead_count(), 0);
    free(at);
    json_decref(j);
    free(c1);
    free(c2);
}
