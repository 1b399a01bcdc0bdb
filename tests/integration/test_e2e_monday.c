/*
 * test_e2e_monday.c - monday.com end to end: a connection made with
 * `callsyncctl connections add --type monday`, a signed Retell webhook
 * into the real ingest, the job through a private Redis into the real
 * worker, monday played by the sandbox (tests/e2e_support.h). One call
 * gives exactly one item and one update, also when the answer to
 * create_item or to create_update is lost after the write, and through a
 * storm of 429s. `callsyncctl connections test` reads the board and checks
 * the configured columns' types.
 */
#include "e2e_support.h"

#define MONDAY_CONFIG                                                     \
    "'{\"board_id\":\"1234567890\",\"group_id\":\"new_leads\","           \
    "\"phone_column_id\":\"phone\",\"email_column_id\":\"email\","        \
    "\"marker_column_id\":\"text_marker\",\"status_column_id\":\"status\"," \
    "\"status_label\":\"New lead\",\"summary_column_id\":\"long_text\","  \
    "\"appointment_column_id\":\"date4\",\"rate_limit\":\"5000/1s\"}'"

static char *conn;

static void setup(void)
{
    e2e_setup("mon", 0);
    conn = ctl_add_conn("--type monday --api-key-env CS_E2E_SECRET "
                        "--config " MONDAY_CONFIG,
                        MONDAY_TOKEN);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(conn);
    conn = NULL;
    worker_request_timeout_ms = 0;
}

static int mon(const char *type)
{
    return records("monday", type);
}

static bool monday_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:monday") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool noted(void)
{
    return mon("updates") >= 1 && monday_drained();
}

static json_t *monday_records(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=monday&type=%s",
             type);
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
    cr_expect_eq(mon("items"), 1, "items: %d", mon("items"));
    cr_expect_eq(mon("updates"), 1, "updates: %d", mon("updates"));
    cr_expect_eq(dead_count(), 0);
}

TestSuite(e2e_monday, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_monday, one_call_gives_one_item_and_one_update)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(noted, 30000, "the update");
    expect_one_of_each();

    json_t *items = monday_records("items");
    json_t *it = json_array_get(items, 0);
    cr_expect_str_eq(json_string_value(json_object_get(it, "board_id")),
                     "1234567890");
    cr_expect_str_eq(json_string_value(json_object_get(it, "group_id")),
                     "new_leads");
    cr_expect_str_eq(json_string_value(json_object_get(it, "name")),
                     "Marcus Bell");
    json_t *cv = json_object_get(it, "column_values");
    json_t *want = json_loads(
        "{\"phone\":{\"phone\":\"+14155550000\",\"countryShortName\":\"US\"},"
        "\"email\":{\"email\":\"caller000000@example.com\","
        "\"text\":\"caller000000@example.com\"},"
        "\"status\":{\"label\":\"New lead\"},"
        "\"date4\":{\"date\":\"2026-02-20\",\"time\":\"20:00:00\"}}",
        0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v)
        cr_expect(json_equal(json_object_get(cv, k), v), "%s: %s", k,
                  json_dumps(json_object_get(cv, k), JSON_COMPACT));
    json_decref(want);
    const char *marker = json_string_value(json_object_get(cv,
                                                           "text_marker"));
    cr_expect(marker && strncmp(marker, "callsync:", 9) == 0);
    cr_expect(strstr(json_string_value(json_object_get(
                         json_object_get(cv, "long_text"), "text")),
                     "Marcus Bell booked"));
    char item_id[32];
    snprintf(item_id, sizeof(item_id), "%s",
             json_string_value(json_object_get(it, "id")));
    json_decref(items);

    json_t *ups = monday_records("updates");
    json_t *u = json_array_get(ups, 0);
    cr_expect_str_eq(json_string_value(json_object_get(u, "item_id")),
                     item_id);
    const char *body = json_string_value(json_object_get(u, "body"));
    cr_expect(body && strstr(body, "Sync reference: callsync:"), "%s", body);
    cr_expect(body && strstr(body, "<b>Summary:</b> Marcus Bell booked"),
              "%s", body);
    json_decref(ups);

    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success'",
                     0, NULL);
    cr_expect_str_eq(n, "2");
    free(n);
}

/* The sandbox cannot tell GraphQL operations apart in a fault rule (one
 * POST /v2 for all), but the order is fixed for a fresh call: three
 * look-ups (phone, email, marker), create_item, create_update. */
static void lose_answer_of_request(int nth)
{
    char *rules = xasprintf("[{\"provider\":\"monday\",\"method\":\"POST\","
                            "\"hang\":true,\"process\":true,\"hang_ms\":"
                            "20000,\"every\":%d,\"count\":1}]",
                            nth);
    set_faults(rules);
    free(rules);
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(noted, 60000, "the update");
    expect_one_of_each();
    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 1, "the hang fired once");
    json_decref(j);
}

Test(e2e_monday, create_item_answer_lost_after_the_write_gives_one_item)
{
    lose_answer_of_request(4);
    /* the retry found the item by its phone and updated it instead */
    json_t *items = monday_records("items");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(items, 0), "name")),
                     "Marcus Bell");
    json_decref(items);
}

Test(e2e_monday, create_update_answer_lost_after_the_write_gives_one_update)
{
    lose_answer_of_request(5);
}

Test(e2e_monday, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"monday\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(noted, 60000, "the update");
    expect_one_of_each();
}

Test(e2e_monday, connections_test_checks_the_board_and_its_columns)
{
    char *out = NULL;
    char *args = xasprintf("connections test %s --json", conn);
    cr_expect_eq(ctl_run_out(args, &out), 0, "%s", out);
    free(args);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "%s", out);
    cr_expect(json_is_true(json_object_get(j, "ok")));
    json_t *res = json_object_get(j, "result");
    cr_expect_str_eq(json_string_value(json_object_get(res, "board_name")),
                     "Board 1234567890");
    cr_expect_eq(json_array_size(json_object_get(res, "columns")), 6);
    json_decref(j);
    free(out);

    /* a column whose type is not what callsync writes into it */
    char *bad = ctl_add_conn("--type monday --api-key-env CS_E2E_SECRET "
                             "--config '{\"board_id\":\"1\","
                             "\"phone_column_id\":\"text_phone\"}'",
                             MONDAY_TOKEN);
    args = xasprintf("connections test %s", bad);
    cr_expect_eq(ctl_run_out(args, &out), 1, "%s", out);
    cr_expect(strstr(out, "column 'text_phone' of board 1 is text, not "
                          "phone"),
              "%s", out);
    free(out);
    free(args);
    free(bad);
    cr_expect_eq(mon("items"), 0, "nothing was written");
}
