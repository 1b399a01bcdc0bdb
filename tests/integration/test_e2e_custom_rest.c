/*
 * test_e2e_custom_rest.c - a CRM callsync has no module for, described by
 * the connection's config (seed 003: endpoints, bearer auth, payload
 * templates with {{path}} placeholders), end to end: a signed Retell
 * webhook into the real ingest, the job through a private Redis into the
 * real worker, the CRM played by the sandbox's /custom API (which honours
 * Idempotency-Key). One call gives exactly one contact and one
 * opportunity naming the contact's id; a contact whose answer is lost after
 * the write is sent again with the same key and the CRM keeps one; a storm
 * of 429s changes nothing.
 */
#include "e2e_support.h"

#define CRM_KEY "crm-e2e-key-71c2"

static char *c_crm;

static void setup(void)
{
    e2e_setup("custom", 0);
    char *config = xasprintf(
        "{\"api_base_url\":\"http://127.0.0.1:%d/custom/v1\","
        "\"authentication\":{\"type\":\"bearer\"},"
        "\"endpoints\":{"
        "\"create_contact\":{\"method\":\"POST\",\"path\":\"/contacts\"},"
        "\"create_opportunity\":{\"method\":\"POST\",\"path\":\"/deals\"}},"
        "\"payload_templates\":{"
        "\"contact\":{\"name\":\"{{customer_name}}\","
        "\"phone\":\"{{customer_phone}}\",\"email\":\"{{customer_email}}\","
        "\"source\":\"callsync\"},"
        "\"opportunity\":{\"title\":\"{{customer_name}} - {{call_outcome}}\","
        "\"contact_id\":\"{{steps.contact.id}}\","
        "\"summary\":\"{{call_summary}}\"}},"
        "\"rate_limit\":\"5000/1s\"}",
        sandbox_port);
    c_crm = add_conn("custom_rest", CRM_KEY, NULL, config);
    free(config);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_crm);
    c_crm = NULL;
    worker_request_timeout_ms = 0;
}

static int crm(void)
{
    return records("custom", "custom");
}

static bool two_records(void)
{
    return crm() >= 2 && drained();
}

/* The CRM's records, parsed. */
static json_t *crm_records(void)
{
    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/records?provider=custom&type=custom");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

/* Exactly one contact and one opportunity, the opportunity naming the
 * contact; each request carried the bearer and its step's key. */
static void expect_one_contact_one_opportunity(void)
{
    json_t *recs = crm_records();
    cr_assert_eq(json_array_size(recs), 2, "%zu records",
                 json_array_size(recs));
    json_t *contact = json_array_get(recs, 0), *deal = json_array_get(recs, 1);
    cr_expect_str_eq(json_string_value(json_object_get(contact, "path")),
                     "/custom/v1/contacts");
    cr_expect_str_eq(json_string_value(json_object_get(deal, "path")),
                     "/custom/v1/deals");
    json_t *cb = json_object_get(contact, "body");
    cr_expect_str_eq(json_string_value(json_object_get(cb, "source")),
                     "callsync");
    cr_expect(json_string_value(json_object_get(cb, "phone")) &&
              *json_string_value(json_object_get(cb, "phone")));
    /* A template string that is one placeholder keeps the value's type:
     * the contact's numeric id stays a number. */
    cr_expect(json_equal(json_object_get(json_object_get(deal, "body"),
                                         "contact_id"),
                         json_object_get(contact, "id")),
              "the opportunity names the contact");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(contact, "headers"),
                         "authorization")),
                     "Bearer " CRM_KEY);
    const char *k1 = json_string_value(json_object_get(contact,
                                                       "idempotency_key"));
    const char *k2 = json_string_value(json_object_get(deal,
                                                       "idempotency_key"));
    cr_expect(k1 && strstr(k1, ":contact"), "%s", k1 ? k1 : "(none)");
    cr_expect(k2 && strstr(k2, ":opportunity"), "%s", k2 ? k2 : "(none)");
    cr_expect_eq(dead_count(), 0);
    json_decref(recs);
}

TestSuite(e2e_custom, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_custom, one_call_gives_one_contact_and_one_opportunity)
{
    start_worker(16);
    post_calls(0, 1);
    wait_until(two_records, 30000, "a contact and an opportunity");
    expect_one_contact_one_opportunity();
}

Test(e2e_custom, contact_answer_lost_after_the_write_gives_one_contact)
{
    set_faults("[{\"provider\":\"custom\",\"method\":\"POST\","
               "\"path_prefix\":\"/v1/contacts\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_calls(0, 1);
    wait_until(two_records, 60000, "a contact and an opportunity");
    expect_one_contact_one_opportunity();
    /* The contact was sent twice with one key; the CRM kept one. */
    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/requests?provider=custom");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    int posts = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "requests"), i, q)
        posts += strcmp(json_string_value(json_object_get(q, "path")),
                        "/custom/v1/contacts") == 0;
    json_decref(j);
    cr_expect_eq(posts, 2, "the contact was sent again after the timeout");
}

Test(e2e_custom, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"custom\",\"status\":429,"
               "\"retry_after_s\":1,\"every\":2,\"count\":4}]");
    start_worker(16);
    post_calls(0, 1);
    wait_until(two_records, 60000, "a contact and an opportunity");
    expect_one_contact_one_opportunity();
}
