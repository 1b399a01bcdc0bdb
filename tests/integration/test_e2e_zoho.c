/*
 * test_e2e_zoho.c - Zoho CRM end to end: a connection made with
 * `callsyncctl connections add --type zoho`, a signed Retell webhook into
 * the real ingest, the job through a private Redis into the real worker,
 * Zoho played by the sandbox (tests/e2e_support.h). One call gives
 * exactly one lead and one note, also when the answer to the upsert or to
 * the note is lost after the write, and through a storm of 429s; a second
 * call of the same caller adds a note to the same lead.
 */
#include "e2e_support.h"

#define ZOHO_CONFIG                                                          \
    "'{\"module\":\"Leads\",\"lead_company\":\"Walk-in\","                  \
    "\"lead_source\":\"Phone Call\",\"zoho_org_id\":\"org_e2e\","            \
    "\"rate_limit\":\"5000/1s\",\"field_mappings\":{\"call_outcome\":"       \
    "\"Call_Outcome__c\"}}'"

#define FIRST_LEAD "5725767000000000001"

static char *c_zoho;

static void setup(void)
{
    e2e_setup("zoho", 0);
    c_zoho = ctl_add_conn("--type zoho --access-token-env CS_E2E_SECRET "
                          "--config " ZOHO_CONFIG,
                          ZOHO_TOKEN);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_zoho);
    c_zoho = NULL;
    worker_request_timeout_ms = 0;
}

static int zoho(const char *type)
{
    return records("zoho", type);
}

static bool zoho_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:zoho") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static int notes_target = 1;

static bool notes_written(void)
{
    return zoho("notes") >= notes_target && zoho_drained();
}

static json_t *zoho_records_json(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=zoho&type=%s",
             type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static void expect_one_lead_one_note(void)
{
    cr_expect_eq(zoho("leads"), 1, "leads: %d", zoho("leads"));
    cr_expect_eq(zoho("contacts"), 0);
    cr_expect_eq(zoho("notes"), 1, "notes: %d", zoho("notes"));
    cr_expect_eq(dead_count(), 0);
}

static int requests_to(const char *method, const char *prefix)
{
    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=zoho");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    int n = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "requests"), i, q) {
        const char *m = json_string_value(json_object_get(q, "method"));
        const char *p = json_string_value(json_object_get(q, "path"));
        n += strcmp(m, method) == 0 && strncmp(p, prefix, strlen(prefix)) == 0;
    }
    json_decref(j);
    return n;
}

TestSuite(e2e_zoho, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_zoho, one_call_gives_one_lead_and_one_note)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(notes_written, 30000, "the note");
    expect_one_lead_one_note();

    json_t *leads = zoho_records_json("leads");
    json_t *l = json_array_get(leads, 0);
    cr_expect_str_eq(json_string_value(json_object_get(l, "First_Name")),
                     "Marcus");
    cr_expect_str_eq(json_string_value(json_object_get(l, "Last_Name")),
                     "Bell");
    cr_expect_str_eq(json_string_value(json_object_get(l, "Company")),
                     "Walk-in");
    cr_expect_str_eq(json_string_value(json_object_get(l, "Lead_Source")),
                     "Phone Call");
    cr_expect_str_eq(json_string_value(json_object_get(l, "Phone")),
                     "+14155550000");
    cr_expect_str_eq(json_string_value(json_object_get(l, "Email")),
                     "caller000000@example.com");
    cr_expect(json_string_value(json_object_get(l, "Call_Outcome__c")),
              "the mapped field");
    const char *lead_id = json_string_value(json_object_get(l, "id"));

    json_t *notes = zoho_records_json("notes");
    json_t *n = json_array_get(notes, 0);
    const char *c = json_string_value(json_object_get(n, "Note_Content"));
    cr_expect(c && strstr(c, "Sync reference: callsync:"), "%s", c);
    cr_expect(c && strstr(c, "Summary: Marcus Bell booked"), "%s", c);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(n, "Parent_Id"), "id")),
                     lead_id);
    json_decref(notes);
    json_decref(leads);

    usleep(1500000);
    char *cnt = it_sql(&db,
                       "SELECT count(*) FROM integration_sync_logs WHERE "
                       "status = 'success'",
                       0, NULL);
    cr_expect_str_eq(cnt, "2");
    free(cnt);
}

Test(e2e_zoho, upsert_answer_lost_after_the_write_gives_one_lead)
{
    set_faults("[{\"provider\":\"zoho\",\"method\":\"POST\","
               "\"path_prefix\":\"/crm/v8/Leads/upsert\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(notes_written, 60000, "the note");
    expect_one_lead_one_note();
    cr_expect_eq(requests_to("POST", "/zoho/crm/v8/Leads/upsert"), 1,
                 "the retry found the lead by its email");
}

Test(e2e_zoho, note_answer_lost_after_the_write_gives_one_note)
{
    /* The sandbox numbers its records from 1 after a start: the lead is
     * this one. */
    set_faults("[{\"provider\":\"zoho\",\"method\":\"POST\","
               "\"path_prefix\":\"/crm/v8/Leads/" FIRST_LEAD "/Notes\","
               "\"hang\":true,\"process\":true,\"hang_ms\":20000,"
               "\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(notes_written, 60000, "the note");
    expect_one_lead_one_note();
    const char *notes = "/zoho/crm/v8/Leads/" FIRST_LEAD "/Notes";
    cr_expect_eq(requests_to("POST", notes), 1, "one POST of the note");
    cr_expect_eq(requests_to("GET", notes), 1, "one look-up of the notes");
}

Test(e2e_zoho, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"zoho\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(notes_written, 60000, "the note");
    expect_one_lead_one_note();
}

Test(e2e_zoho, second_call_of_the_caller_adds_a_note_to_the_same_lead)
{
    start_worker(16);
    post_fixture_calls("call_analyzed.json", 0, 1);
    wait_until(notes_written, 30000, "the first note");
    /* call_analyzed.json again, as another call from caller 0. */
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
    notes_target = 1;
    cr_expect_eq(zoho("leads"), 1, "one lead for one caller");
    cr_expect_eq(zoho("notes"), 2);
    cr_expect_eq(requests_to("POST", "/zoho/crm/v8/Leads/upsert"), 1,
                 "the second call found the lead");
    cr_expect_eq(dead_count(), 0);
}
