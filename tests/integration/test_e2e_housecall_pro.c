/*
 * test_e2e_housecall_pro.c - Housecall Pro end to end: a connection made
 * with `callsyncctl connections add --type housecall_pro`, a signed
 * Retell webhook of a plumbing call that booked a visit, the job through
 * a private Redis into the real worker, Housecall Pro played by the
 * sandbox (tests/e2e_support.h). One call gives exactly one customer, one
 * address, one job and one note, also when the answer to the job's create
 * or the note's is lost after the write, and through a storm of 429s.
 */
#include "e2e_support.h"

#define HCP_CONFIG                                                        \
    "'{\"company_id\":\"cmp_e2e\",\"lead_source\":\"Voice agent\","       \
    "\"default_employee_id\":\"pro_e2e_1\",\"tags\":[\"ai-call\"],"       \
    "\"arrival_window_minutes\":60,\"rate_limit\":\"5000/1s\"}'"

static char *conn;

static void setup(void)
{
    e2e_setup("hcp", 0);
    conn = ctl_add_conn("--type housecall_pro --api-key-env CS_E2E_SECRET "
                        "--config " HCP_CONFIG,
                        HCP_KEY);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(conn);
    conn = NULL;
    worker_request_timeout_ms = 0;
}

static int hcp(const char *type)
{
    return records("housecall_pro", type);
}

static bool hcp_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:housecall_pro") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool noted(void)
{
    return hcp("notes") >= 1 && hcp_drained();
}

static json_t *hcp_records(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=housecall_pro&type=%s", type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static void expect_one_of_each(void)
{
    cr_expect_eq(hcp("customers"), 1, "customers: %d", hcp("customers"));
    cr_expect_eq(hcp("addresses"), 1, "addresses: %d", hcp("addresses"));
    cr_expect_eq(hcp("jobs"), 1, "jobs: %d", hcp("jobs"));
    cr_expect_eq(hcp("notes"), 1, "notes: %d", hcp("notes"));
    cr_expect_eq(dead_count(), 0);
}

TestSuite(e2e_hcp, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_hcp, one_call_gives_one_customer_job_and_note)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_service.json", 0, 1);
    wait_until(noted, 30000, "the note");
    expect_one_of_each();

    json_t *cs = hcp_records("customers");
    json_t *c = json_array_get(cs, 0);
    cr_expect_str_eq(json_string_value(json_object_get(c, "first_name")),
                     "Marcus");
    cr_expect_str_eq(json_string_value(json_object_get(c, "last_name")),
                     "Bell");
    cr_expect_str_eq(json_string_value(json_object_get(c, "mobile_number")),
                     "4155550000");
    cr_expect_str_eq(json_string_value(json_object_get(c, "email")),
                     "caller000000@example.com");
    cr_expect_str_eq(json_string_value(json_object_get(c, "lead_source")),
                     "Voice agent");
    json_t *a = json_array_get(json_object_get(c, "addresses"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(a, "street")),
                     "1820 Ridge Ave");
    cr_expect_str_eq(json_string_value(json_object_get(a, "city")),
                     "Evanston");
    cr_expect_str_eq(json_string_value(json_object_get(a, "zip")), "60201");
    json_decref(cs);

    json_t *jobs = hcp_records("jobs");
    json_t *j = json_array_get(jobs, 0);
    json_t *sch = json_object_get(j, "schedule");
    /* 14:00 in Chicago on 20 February, for two hours */
    cr_expect_str_eq(json_string_value(json_object_get(sch,
                                                       "scheduled_start")),
                     "2026-02-20T20:00:00Z");
    cr_expect_str_eq(json_string_value(json_object_get(sch,
                                                       "scheduled_end")),
                     "2026-02-20T22:00:00Z");
    cr_expect_eq(json_integer_value(json_object_get(sch, "arrival_window")),
                 60);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j,
                                                        "assigned_employees"),
                                        0),
                         "id")),
                     "pro_e2e_1");
    char job_id[64];
    snprintf(job_id, sizeof(job_id), "%s",
             json_string_value(json_object_get(j, "id")));
    json_decref(jobs);

    json_t *notes = hcp_records("notes");
    json_t *n = json_array_get(notes, 0);
    cr_expect_str_eq(json_string_value(json_object_get(n, "job_id")), job_id);
    const char *content = json_string_value(json_object_get(n, "content"));
    cr_expect(content && strstr(content, "Summary: Marcus Bell booked a "
                                         "water heater repair"),
              "%s", content);
    cr_expect(content && strstr(content, "/note"), "%s", content);
    json_decref(notes);

    usleep(1500000);
    char *cnt = it_sql(&db,
                       "SELECT count(*) FROM integration_sync_logs WHERE "
                       "status = 'success'",
                       0, NULL);
    cr_expect_str_eq(cnt, "3");
    free(cnt);
}

static void lose_answer(const char *prefix)
{
    char *rules = xasprintf("[{\"provider\":\"housecall_pro\",\"method\":"
                            "\"POST\",\"path_prefix\":\"%s\",\"hang\":true,"
                            "\"process\":true,\"hang_ms\":20000,\"count\":1}]",
                            prefix);
    set_faults(rules);
    free(rules);
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_service.json", 0, 1);
    wait_until(noted, 60000, "the note");
    expect_one_of_each();
    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 1, "the hang fired once");
    json_decref(j);
}

Test(e2e_hcp, job_answer_lost_after_the_write_gives_one_job)
{
    /* the first POST under /jobs is the job's create */
    lose_answer("/jobs");
}

Test(e2e_hcp, customer_answer_lost_after_the_write_gives_one_customer)
{
    lose_answer("/customers");
}

Test(e2e_hcp, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"housecall_pro\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_service.json", 0, 1);
    wait_until(noted, 60000, "the note");
    expect_one_of_each();
}

Test(e2e_hcp, connections_test_reads_the_company)
{
    char *out = NULL;
    char *args = xasprintf("connections test %s --json", conn);
    cr_expect_eq(ctl_run_out(args, &out), 0, "%s", out);
    free(args);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "%s", out);
    json_t *res = json_object_get(j, "result");
    cr_expect_str_eq(json_string_value(json_object_get(res, "name")),
                     "Sandbox Plumbing");
    cr_expect_str_eq(json_string_value(json_object_get(res, "time_zone")),
                     "America/Chicago");
    json_decref(j);
    free(out);
    cr_expect_eq(hcp("customers"), 0, "nothing was written");
}
