/*
 * test_e2e_salesforce.c - Salesforce end to end: a connection made with
 * `callsyncctl connections add --type salesforce` (OAuth access token and
 * instance URL; the worker's base URL override points at the sandbox), a
 * signed Retell webhook into the real ingest, the job through a private
 * Redis into the real worker, the org played by the sandbox
 * (tests/e2e_support.h). The tests count what the sandbox holds: one call
 * gives exactly one lead, one task, one event and one opportunity, also
 * when the answer to the task's or the lead's create is lost after the
 * write, and through storms of 429s and of REQUEST_LIMIT_EXCEEDED.
 */
#include "e2e_support.h"

#define ORG "00D5g000004E2E0EAA"
#define SF_CONFIG                                                            \
    "'{\"org_id\":\"" ORG "\",\"opportunity_stage\":\"Qualification\","      \
    "\"opportunity_amount\":12000,\"rate_limit\":\"5000/1s\","              \
    "\"field_mappings\":{\"call_outcome\":\"Call_Result__c\"}}'"
#define SF_API "/salesforce/services/data/v66.0"

static char *c_sf;

static char *sf_conn(const char *config)
{
    char *args = xasprintf("--type salesforce --access-token-env "
                           "CS_E2E_SECRET --instance-url "
                           "https://acme-e2e.my.salesforce.com --config %s",
                           config);
    char *id = ctl_add_conn(args, SF_TOKEN);
    free(args);
    return id;
}

static void setup(void)
{
    e2e_setup("sf", 0);
    c_sf = sf_conn(SF_CONFIG);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_sf);
    c_sf = NULL;
    worker_request_timeout_ms = 0;
}

static int sf(const char *type)
{
    return records("salesforce", type);
}

/* Every Salesforce job finished: its stream empty, nothing delayed. */
static bool sf_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:salesforce") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool opportunity_made(void)
{
    return sf("opportunities") >= 1 && sf_drained();
}

/* The records of a type, parsed. */
static json_t *sf_records_json(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=salesforce"
                                 "&type=%s", type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void expect_exactly_one_of_each(void)
{
    cr_expect_eq(sf("leads"), 1, "leads: %d", sf("leads"));
    cr_expect_eq(sf("tasks"), 1, "tasks: %d", sf("tasks"));
    cr_expect_eq(sf("events"), 1, "events: %d", sf("events"));
    cr_expect_eq(sf("opportunities"), 1, "opportunities: %d",
                 sf("opportunities"));
    cr_expect_eq(sf("contacts"), 0);
    cr_expect_eq(dead_count(), 0);
}

/* How many requests the sandbox saw of method on path. */
static int requests(const char *method, const char *path)
{
    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=salesforce");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    int n = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "requests"), i, q) {
        n += strcmp(str(q, "method"), method) == 0 &&
             strcmp(str(q, "path"), path) == 0;
    }
    json_decref(j);
    return n;
}

TestSuite(e2e_sf, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_sf, one_call_gives_one_of_each)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(opportunity_made, 30000, "the opportunity");
    expect_exactly_one_of_each();

    json_t *leads = sf_records_json("leads");
    json_t *l = json_array_get(leads, 0);
    const char *lead = str(l, "Id");
    cr_assert(lead && strncmp(lead, "00Q", 3) == 0, "a lead id: %s", lead);
    cr_expect_str_eq(str(l, "Phone"), "+14155550000");
    cr_expect_str_eq(str(l, "Email"), "caller000000@example.com");
    cr_expect_str_eq(str(l, "FirstName"), "Marcus");
    cr_expect_str_eq(str(l, "LastName"), "Bell");
    cr_expect_str_eq(str(l, "Company"), "[not provided]");
    /* The seed-style mapping reached the custom field. */
    cr_expect(str(l, "Call_Result__c"), "the mapped custom field");

    json_t *tasks = sf_records_json("tasks");
    json_t *t = json_array_get(tasks, 0);
    cr_expect_str_eq(str(t, "WhoId"), lead);
    cr_expect_str_eq(str(t, "TaskSubtype"), "Call");
    cr_expect_str_eq(str(t, "Status"), "Completed");
    cr_expect_str_eq(str(t, "CallType"), "Inbound");
    cr_expect_eq(json_integer_value(json_object_get(t,
                                                    "CallDurationInSeconds")),
                 241);
    const char *d = str(t, "Description");
    cr_expect(d && strstr(d, "Sync reference: callsync:"), "%s", d);
    cr_expect(d && strstr(d, "Summary: Marcus Bell booked"), "%s", d);
    cr_expect(d && strstr(d, "Recording: https://"), "%s", d);

    json_t *events = sf_records_json("events");
    json_t *e = json_array_get(events, 0);
    /* 14:00 in Chicago on 20 February: 20:00 UTC. */
    cr_expect_str_eq(str(e, "StartDateTime"),
                     "2026-02-20T20:00:00.000+0000");
    cr_expect_str_eq(str(e, "EndDateTime"), "2026-02-20T21:00:00.000+0000");
    cr_expect_str_eq(str(e, "WhoId"), lead);

    json_t *opps = sf_records_json("opportunities");
    json_t *o = json_array_get(opps, 0);
    cr_expect_str_eq(str(o, "StageName"), "Qualification");
    cr_expect_eq(json_integer_value(json_object_get(o, "Amount")), 12000);
    const char *od = str(o, "Description");
    char want[64];
    snprintf(want, sizeof(want), "Lead: %s", lead);
    cr_expect(od && strstr(od, want), "%s", od);
    json_decref(leads);
    json_decref(tasks);
    json_decref(events);
    json_decref(opps);

    /* Every step logged once as a success. */
    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success'",
                     0, NULL);
    cr_expect_str_eq(n, "4");
    free(n);
}

Test(e2e_sf, task_answer_lost_after_the_write_gives_one_task)
{
    /* The task is written, then its answer withheld: the worker times out
     * not knowing, retries, and finds the task by its marker. */
    set_faults("[{\"provider\":\"salesforce\",\"method\":\"POST\","
               "\"path_prefix\":\"/services/data/v66.0/sobjects/Task\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(opportunity_made, 60000, "the opportunity");
    expect_exactly_one_of_each();

    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 1, "the hang rule fired once");
    json_decref(j);
    cr_expect_eq(requests("POST", SF_API "/sobjects/Task"), 1,
                 "one POST of the task");
    /* The lead search, the task look-up after the lost answer, the
     * event look-up. */
    cr_expect_eq(requests("GET", SF_API "/query"), 3);
}

Test(e2e_sf, lead_answer_lost_after_the_write_gives_one_lead)
{
    set_faults("[{\"provider\":\"salesforce\",\"method\":\"POST\","
               "\"path_prefix\":\"/services/data/v66.0/sobjects/Lead\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(opportunity_made, 60000, "the opportunity");
    expect_exactly_one_of_each();
    cr_expect_eq(requests("POST", SF_API "/sobjects/Lead"), 1,
                 "one POST of the lead: the retry found it");
    json_t *tasks = sf_records_json("tasks");
    json_t *leads = sf_records_json("leads");
    cr_expect_str_eq(str(json_array_get(tasks, 0), "WhoId"),
                     str(json_array_get(leads, 0), "Id"));
    json_decref(tasks);
    json_decref(leads);
}

Test(e2e_sf, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"salesforce\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(opportunity_made, 60000, "the opportunity");
    expect_exactly_one_of_each();
}

Test(e2e_sf, concurrent_request_limit_then_one_of_each)
{
    /* Salesforce's own refusal: 403 REQUEST_LIMIT_EXCEEDED, the
     * concurrent-request limit (a few seconds' pause each). */
    set_faults("[{\"provider\":\"salesforce\",\"status\":403,\"body\":"
               "[{\"message\":\"ConcurrentPerOrgLongTxn Limit exceeded\","
               "\"errorCode\":\"REQUEST_LIMIT_EXCEEDED\"}],\"every\":3,"
               "\"count\":2}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(opportunity_made, 60000, "the opportunity");
    expect_exactly_one_of_each();
    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 2);
    json_decref(j);
}

/* Salesforce counts per org: two connections to one org share one limiter
 * key (4/s here, one request every 250 ms), where two keys would send
 * 8/s. */
Test(e2e_sf, two_connections_to_one_org_share_one_limit)
{
    const char *slow = "'{\"org_id\":\"00D5g000004SHAREAA\","
                       "\"rate_limit\":\"4/1s\",\"create_events\":false}'";
    char *c1 = sf_conn(slow);
    char *c2 = sf_conn(slow);
    const char *p[] = {c_sf};
    free(it_sql(&db, "UPDATE integration_connections SET is_active = false "
                     "WHERE id = $1::uuid RETURNING id::text", 1, p));
    it_stop(ingest_pid, SIGTERM, 15000);
    start_ingest();
    start_worker(64);
    post_fixture_calls("call_analyzed.json", 0, 3);
    wait_until(sf_drained, 60000, "every job done");
    cr_expect_eq(sf("tasks"), 6, "two connections, three calls");

    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=salesforce");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *reqs = json_object_get(j, "requests");
    size_t n = json_array_size(reqs);
    cr_assert_geq(n, 12, "%zu requests", n);
    int64_t *at = xcalloc(n, sizeof(*at));
    for (size_t i = 0; i < n; i++)
        at[i] = json_integer_value(
            json_object_get(json_array_get(reqs, i), "received_at_ms"));
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
