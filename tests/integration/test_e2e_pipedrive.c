/*
 * test_e2e_pipedrive.c - Pipedrive end to end: a connection made with
 * `callsyncctl connections add --type pipedrive`, a signed Retell webhook
 * into the real ingest, the job through a private Redis into the real
 * worker, Pipedrive played by the sandbox (tests/e2e_support.h). The
 * tests count what the sandbox holds: one call gives exactly one person,
 * one note, one deal and one activity, also when the answer to the note
 * or to the person's create is lost after the write, through a storm of
 * 429s, and a second call of the same caller adds a note to the same
 * person and deal.
 */
#include "e2e_support.h"

#define KEY_SCORE "dcf558aac1ae4e8c4f849ba5e668430d8df9be12"
#define KEY_REC "4bd3e0d6d8e3c54b39ba2e1e8b4a4de6aa12bf31"
#define PD_CONFIG                                                            \
    "'{\"company_domain\":\"acme-e2e\",\"pipeline_id\":3,\"stage_id\":9,"    \
    "\"default_owner\":7,\"rate_limit\":\"5000/1s\","                        \
    "\"field_mappings\":{\"ai_analysis.lead_score\":\"custom_fields."        \
    KEY_SCORE "\"},\"custom_fields\":{\"" KEY_REC "\":\"recording_url\"},"   \
    "\"deal_settings\":{\"title_template\":\"{{customer_name}} - "           \
    "{{appointment.service_type}}\",\"currency\":\"USD\"}}'"

static char *c_pd;

static void setup(void)
{
    e2e_setup("pd", 0);
    c_pd = ctl_add_conn("--type pipedrive --api-key-env CS_E2E_SECRET "
                        "--config " PD_CONFIG,
                        PD_TOKEN);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_pd);
    c_pd = NULL;
    worker_request_timeout_ms = 0;
}

static int pd(const char *type)
{
    return records("pipedrive", type);
}

static bool pd_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:pipedrive") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool activity_written(void)
{
    return pd("activities") >= 1 && pd_drained();
}

static int notes_target;

static bool notes_written(void)
{
    return pd("notes") >= notes_target && pd_drained();
}

/* The records of a type, parsed. */
static json_t *pd_records_json(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=pipedrive"
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
    cr_expect_eq(pd("persons"), 1, "persons: %d", pd("persons"));
    cr_expect_eq(pd("notes"), 1, "notes: %d", pd("notes"));
    cr_expect_eq(pd("deals"), 1, "deals: %d", pd("deals"));
    cr_expect_eq(pd("activities"), 1, "activities: %d", pd("activities"));
    cr_expect_eq(dead_count(), 0);
}

/* How many requests of method to path the sandbox saw. */
static int requests_to(const char *method, const char *path)
{
    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=pipedrive");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    int n = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "requests"), i, q) {
        const char *m = json_string_value(json_object_get(q, "method"));
        const char *p = json_string_value(json_object_get(q, "path"));
        n += strcmp(m, method) == 0 && strcmp(p, path) == 0;
    }
    json_decref(j);
    return n;
}

TestSuite(e2e_pd, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_pd, one_call_gives_one_of_each)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(activity_written, 30000, "the activity");
    expect_exactly_one_of_each();

    json_t *persons = pd_records_json("persons");
    json_t *p = json_array_get(persons, 0);
    cr_expect_eq(json_integer_value(json_object_get(p, "id")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(p, "name")),
                     "Marcus Bell");
    cr_expect_eq(json_integer_value(json_object_get(p, "owner_id")), 7);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(p, "phones"), 0),
                         "value")),
                     "+14155550000");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(p, "emails"), 0),
                         "value")),
                     "caller000000@example.com");
    json_t *cf = json_object_get(p, "custom_fields");
    cr_expect(json_object_get(cf, KEY_SCORE), "the mapped lead score");
    cr_expect(json_string_value(json_object_get(cf, KEY_REC)),
              "the seed-style recording field");
    json_decref(persons);

    json_t *notes = pd_records_json("notes");
    json_t *n = json_array_get(notes, 0);
    const char *content = json_string_value(json_object_get(n, "content"));
    cr_expect(content && strstr(content, "Sync reference: callsync:"), "%s",
              content);
    cr_expect(content && strstr(content, "<b>Summary:</b> Marcus Bell "
                                         "booked"),
              "%s", content);
    cr_expect_eq(json_integer_value(json_object_get(n, "person_id")), 1);
    json_decref(notes);

    json_t *deals = pd_records_json("deals");
    json_t *d = json_array_get(deals, 0);
    cr_expect_str_eq(json_string_value(json_object_get(d, "title")),
                     "Marcus Bell - roof_inspection");
    cr_expect_eq(json_integer_value(json_object_get(d, "pipeline_id")), 3);
    cr_expect_eq(json_integer_value(json_object_get(d, "stage_id")), 9);
    cr_expect_eq(json_integer_value(json_object_get(d, "person_id")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(d, "currency")),
                     "USD");
    json_decref(deals);

    json_t *acts = pd_records_json("activities");
    json_t *a = json_array_get(acts, 0);
    /* 14:00 in Chicago on 20 February is 20:00 UTC. */
    cr_expect_str_eq(json_string_value(json_object_get(a, "due_date")),
                     "2026-02-20");
    cr_expect_str_eq(json_string_value(json_object_get(a, "due_time")),
                     "20:00:00");
    cr_expect_str_eq(json_string_value(json_object_get(a, "duration")),
                     "01:00:00");
    cr_expect_eq(json_integer_value(json_object_get(a, "person_id")), 1);
    cr_expect_eq(json_integer_value(json_object_get(a, "deal_id")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(a, "type")),
                     "meeting");
    json_decref(acts);

    /* Every step logged once as a success. */
    usleep(1500000);
    char *cnt = it_sql(&db,
                       "SELECT count(*) FROM integration_sync_logs WHERE "
                       "status = 'success'",
                       0, NULL);
    cr_expect_str_eq(cnt, "4");
    free(cnt);
}

Test(e2e_pd, note_answer_lost_after_the_write_gives_one_note)
{
    /* The note is written, then its answer withheld: the worker times out
     * not knowing, retries, and finds the note by its marker. */
    set_faults("[{\"provider\":\"pipedrive\",\"method\":\"POST\","
               "\"path_prefix\":\"/api/v1/notes\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(activity_written, 60000, "the activity");
    expect_exactly_one_of_each();
    cr_expect_eq(requests_to("POST", "/pipedrive/api/v1/notes"), 1,
                 "one POST of the note");
    cr_expect_eq(requests_to("GET", "/pipedrive/api/v1/notes"), 1,
                 "one look-up of the notes");
}

Test(e2e_pd, person_answer_lost_after_the_write_gives_one_person)
{
    /* The person is created, then the answer is lost: the retry lists the
     * persons updated since the job was enqueued and adopts it. */
    set_faults("[{\"provider\":\"pipedrive\",\"method\":\"POST\","
               "\"path_prefix\":\"/api/v2/persons\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(activity_written, 60000, "the activity");
    expect_exactly_one_of_each();
    cr_expect_eq(requests_to("POST", "/pipedrive/api/v2/persons"), 1,
                 "one POST of the person");
    cr_expect_eq(requests_to("GET", "/pipedrive/api/v2/persons"), 1,
                 "one list of recent persons");
}

Test(e2e_pd, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"pipedrive\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(activity_written, 60000, "the activity");
    expect_exactly_one_of_each();
}

Test(e2e_pd, second_call_of_the_caller_reuses_person_and_deal)
{
    start_worker(16);
    post_fixture_calls("call_analyzed.json", 0, 1);
    notes_target = 1;
    wait_until(notes_written, 30000, "the first note");
    /* Same caller (number and email of call 0), another call. */
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retell/call_analyzed.json",
             CS_SOURCE_DIR);
    json_t *doc = json_load_file(path, 0, NULL);
    cr_assert(doc);
    json_t *call = json_object_get(doc, "call");
    json_object_set_new(call, "call_id", json_string("call_w_again"));
    json_object_set_new(call, "from_number", json_string("+14155550000"));
    json_object_set_new(json_object_get(json_object_get(call,
                                                        "call_analysis"),
                                        "custom_analysis_data"),
                        "customer_email",
                        json_string("caller000000@example.com"));
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    size_t len = strlen(body);
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(RETELL_KEY, strlen(RETELL_KEY), body, len, ts, strlen(ts),
                   NULL, 0, mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    char *h = xasprintf("X-Retell-Signature: v=%s,d=%s\r\n", ts, hex);
    struct it_resp r = it_post(ingest_port, "/webhooks/retell", h, body, len);
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    free(h);
    free(body);
    notes_target = 2;
    wait_until(notes_written, 30000, "the second note");
    cr_expect_eq(pd("persons"), 1, "one person for one caller");
    cr_expect_eq(pd("deals"), 1, "the open deal is reused");
    cr_expect_eq(pd("notes"), 2, "a note per call");
    cr_expect_eq(dead_count(), 0);
}

/* Pipedrive spends one budget per company: two connections to the same
 * company_domain share one limiter key, so together they stay within one
 * connection's limit (4/s here, paced every 250 ms), where two separate
 * keys would send 8/s. */
Test(e2e_pd, two_connections_to_one_company_share_one_limit)
{
    const char *slow = "'{\"company_domain\":\"shared-co\","
                       "\"rate_limit\":\"4/1s\"}'";
    char *args = xasprintf("--type pipedrive --api-key-env CS_E2E_SECRET "
                           "--config %s", slow);
    char *c1 = ctl_add_conn(args, PD_TOKEN);
    char *c2 = ctl_add_conn(args, PD_TOKEN);
    free(args);
    /* The setup's connection is fast and of another company: take it out
     * so that only the two slow ones get jobs. */
    const char *p[] = {c_pd};
    free(it_sql(&db, "UPDATE integration_connections SET is_active = false "
                     "WHERE id = $1::uuid RETURNING id::text", 1, p));
    it_stop(ingest_pid, SIGTERM, 15000);
    start_ingest();
    start_worker(64);
    post_fixture_calls("call_analyzed.json", 0, 3);
    notes_target = 6;
    wait_until(notes_written, 60000, "every job done");

    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=pipedrive");
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
