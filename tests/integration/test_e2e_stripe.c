/*
 * test_e2e_stripe.c - Stripe end to end: a connection made with
 * `callsyncctl connections add --type stripe`, a signed Retell webhook
 * into the real ingest, the job through a private Redis into the real
 * worker, Stripe played by the sandbox (tests/e2e_support.h). The tests
 * count what the sandbox holds: one call gives exactly one customer and
 * one payment link (or one invoice with its items, finalized and sent
 * once), also when the answer to a write is lost after the write (the
 * customer is found again by e-mail; the payment link and the send are
 * replayed by their Idempotency-Key), and through a storm of 429s.
 */
#include "e2e_support.h"

#define LINK_CONFIG                                                          \
    "'{\"payment\":\"payment_link\",\"currency\":\"usd\",\"amount\":"        \
    "{\"source\":\"ai_analysis.intent\",\"map\":{\"appointment_booking\":"   \
    "19900},\"default\":9900},\"product_name\":\"{{appointment."             \
    "service_type}} deposit\",\"rate_limit\":\"5000/1s\"}'"
#define INVOICE_CONFIG                                                       \
    "'{\"payment\":\"invoice\",\"currency\":\"usd\",\"days_until_due\":14,"  \
    "\"invoice_items\":[{\"description\":\"Inspection\",\"amount\":15000},"  \
    "{\"description\":\"Call-out\",\"amount\":4900}],"                       \
    "\"rate_limit\":\"5000/1s\"}'"

static char *c_stripe;

static void setup_with(const char *config)
{
    e2e_setup("stripe", 0);
    char *args = xasprintf("--type stripe --api-key-env CS_E2E_SECRET "
                           "--config %s", config);
    c_stripe = ctl_add_conn(args, STRIPE_KEY);
    free(args);
    start_ingest();
}

static void setup(void)
{
    setup_with(LINK_CONFIG);
}

static void setup_invoice(void)
{
    setup_with(INVOICE_CONFIG);
}

static void teardown(void)
{
    e2e_teardown();
    free(c_stripe);
    c_stripe = NULL;
    worker_request_timeout_ms = 0;
}

static int stripe(const char *type)
{
    return records("stripe", type);
}

/* The stripe stream is empty and nothing waits in the delayed set. */
static bool stripe_drained(void)
{
    return rint_("XLEN %s", "cs:{0}:q:stripe") == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static bool linked(void)
{
    return stripe("payment_links") >= 1 && stripe_drained();
}

static bool sent(void)
{
    return stripe("invoice_sends") >= 1 && stripe_drained();
}

static json_t *stripe_records(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=stripe"
                                 "&type=%s", type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j, "records are not JSON");
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

/* How often fault rule i fired. */
static long long fired(size_t i)
{
    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    long long n = json_integer_value(json_object_get(
        json_array_get(json_object_get(j, "rules"), i), "fired"));
    json_decref(j);
    return n;
}

/* POSTs to path (or, with a leading '*', to paths ending with the rest),
 * and how many of them the sandbox replayed. */
static int posts_to(const char *path, int *replayed)
{
    json_t *reqs = stripe_records("requests");
    int n = 0;
    *replayed = 0;
    size_t i;
    json_t *q;
    json_array_foreach(reqs, i, q) {
        const char *m = json_string_value(json_object_get(q, "method"));
        const char *p = json_string_value(json_object_get(q, "path"));
        size_t pl = strlen(p), sl = strlen(path + 1);
        bool match = path[0] == '*'
                         ? pl >= sl && strcmp(p + pl - sl, path + 1) == 0
                         : strcmp(p, path) == 0;
        if (strcmp(m, "POST") != 0 || !match)
            continue;
        n++;
        *replayed += json_is_true(json_object_get(q, "replayed"));
    }
    json_decref(reqs);
    return n;
}

static void expect_one_customer_and_link(void)
{
    cr_expect_eq(stripe("customers"), 1, "customers: %d",
                 stripe("customers"));
    cr_expect_eq(stripe("payment_links"), 1, "payment links: %d",
                 stripe("payment_links"));
    cr_expect_eq(dead_count(), 0);
}

TestSuite(e2e_stripe, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(e2e_stripe_invoice, .init = setup_invoice, .fini = teardown,
          .timeout = 120);

Test(e2e_stripe, one_call_gives_one_customer_and_one_payment_link)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(linked, 30000, "the payment link");
    expect_one_customer_and_link();

    json_t *cus = stripe_records("customers");
    json_t *c = json_array_get(cus, 0);
    cr_expect_str_eq(json_string_value(json_object_get(c, "email")),
                     "caller000000@example.com");
    cr_expect_str_eq(json_string_value(json_object_get(c, "phone")),
                     "+14155550000");
    cr_expect_str_eq(json_string_value(json_object_get(c, "name")),
                     "Marcus Bell");
    const char *jid = json_string_value(json_object_get(
        json_object_get(c, "metadata"), "callsync_job_id"));
    cr_assert(jid && strlen(jid) == 32, "%s", jid);
    char job[33];
    snprintf(job, sizeof(job), "%s", jid);

    json_t *links = stripe_records("payment_links");
    json_t *l = json_array_get(links, 0);
    json_t *meta = json_object_get(l, "metadata");
    cr_expect_str_eq(json_string_value(json_object_get(meta,
                                                       "callsync_job_id")),
                     job);
    cr_expect_str_eq(json_string_value(json_object_get(
                         meta, "callsync_customer_id")),
                     json_string_value(json_object_get(c, "id")));
    json_t *item = json_array_get(
        json_object_get(json_object_get(l, "line_items"), "data"), 0);
    cr_expect_eq(json_integer_value(json_object_get(item, "amount_total")),
                 19900, "the amount came from the mapping");
    json_decref(links);
    json_decref(cus);

    /* Every POST carried the pinned version and its step's key. */
    json_t *reqs = stripe_records("requests");
    size_t i;
    json_t *q;
    json_array_foreach(reqs, i, q) {
        cr_expect_str_eq(json_string_value(json_object_get(
                             q, "stripe_version")),
                         "2025-09-30.clover");
        if (strcmp(json_string_value(json_object_get(q, "method")),
                   "POST") == 0) {
            const char *k = json_string_value(json_object_get(
                q, "idempotency_key"));
            cr_expect(k && strncmp(k, job, 32) == 0, "key %s", k);
        }
    }
    json_decref(reqs);

    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success'",
                     0, NULL);
    cr_expect_str_eq(n, "2", "customer and payment link");
    free(n);
}

/* The caller of fixture call 0 calls again (a new call id, the same
 * phone and e-mail), signed as Retell signs it. */
static void post_same_caller_again(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/retell/"
             "call_analyzed_appointment.json", CS_SOURCE_DIR);
    json_t *doc = json_load_file(path, 0, NULL);
    cr_assert(doc, "cannot read %s", path);
    json_t *call = json_object_get(doc, "call");
    json_object_set_new(call, "call_id", json_string("call_w_again"));
    json_object_set_new(call, "from_number", json_string("+14155550000"));
    json_object_set_new(
        json_object_get(json_object_get(call, "call_analysis"),
                        "custom_analysis_data"),
        "customer_email", json_string("caller000000@example.com"));
    char *body = json_dumps(doc, JSON_COMPACT);
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(RETELL_KEY, strlen(RETELL_KEY), body, strlen(body), ts,
                   strlen(ts), NULL, 0, mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    char *h = xasprintf("X-Retell-Signature: v=%s,d=%s\r\n", ts, hex);
    struct it_resp r = it_post(ingest_port, "/webhooks/retell", h, body,
                               strlen(body));
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    free(h);
    free(body);
    json_decref(doc);
}

static bool two_links(void)
{
    return stripe("payment_links") >= 2 && stripe_drained();
}

Test(e2e_stripe, the_same_caller_again_is_the_same_customer)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(linked, 30000, "the first payment link");
    post_same_caller_again();
    wait_until(two_links, 30000, "the second payment link");
    cr_expect_eq(stripe("customers"), 1, "found by e-mail, not created");
    cr_expect_eq(dead_count(), 0);
}

Test(e2e_stripe, customer_answer_lost_after_the_write_gives_one_customer)
{
    /* The customer is created, then its answer withheld: the worker times
     * out not knowing, and the retry finds it by e-mail before creating
     * anything. */
    set_faults("[{\"provider\":\"stripe\",\"method\":\"POST\","
               "\"path_prefix\":\"/v1/customers\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(linked, 60000, "the payment link");
    expect_one_customer_and_link();
    cr_expect_eq(fired(0), 1, "the hang rule fired once");
    int replayed;
    cr_expect_eq(posts_to("/stripe/v1/customers", &replayed), 1,
                 "one POST of the customer");
}

Test(e2e_stripe, link_answer_lost_after_the_write_is_replayed_by_key)
{
    /* The link is created, its answer withheld; the retry sends the same
     * request with the same Idempotency-Key and Stripe answers with the
     * saved result: still one link. */
    set_faults("[{\"provider\":\"stripe\",\"method\":\"POST\","
               "\"path_prefix\":\"/v1/payment_links\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    /* linked() also waits for the job to leave the stream and the
     * delayed set, so the retry has run. */
    wait_until(linked, 60000, "the payment link");
    expect_one_customer_and_link();
    cr_expect_eq(fired(0), 1, "the hang rule fired once");
    int replayed;
    cr_expect_eq(posts_to("/stripe/v1/payment_links", &replayed), 2,
                 "the link was sent twice");
    cr_expect_eq(replayed, 1, "and the second was Stripe's replay");
}

Test(e2e_stripe, storm_of_429_then_one_of_each)
{
    set_faults("[{\"provider\":\"stripe\",\"status\":429,"
               "\"every\":2,\"count\":4}]");
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(linked, 60000, "the payment link");
    expect_one_customer_and_link();
}

Test(e2e_stripe_invoice, one_call_gives_one_invoice_sent_once)
{
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(sent, 30000, "the invoice e-mail");
    cr_expect_eq(stripe("customers"), 1);
    cr_expect_eq(stripe("invoices"), 1);
    cr_expect_eq(stripe("invoiceitems"), 2);
    cr_expect_eq(stripe("invoice_sends"), 1);
    cr_expect_eq(dead_count(), 0);
    json_t *inv = stripe_records("invoices");
    json_t *i = json_array_get(inv, 0);
    cr_expect_str_eq(json_string_value(json_object_get(i, "status")),
                     "open");
    cr_expect_eq(json_integer_value(json_object_get(i, "amount_due")),
                 19900);
    cr_expect_str_eq(json_string_value(json_object_get(i,
                                                       "collection_method")),
                     "send_invoice");
    json_decref(inv);
}

/* The second item's answer is lost (the retry lists the invoice's items
 * and finds both), and so is the send's (the retry is replayed by its
 * key: one e-mail). */
Test(e2e_stripe_invoice, lost_answers_of_items_and_send_give_one_of_each)
{
    set_faults("[{\"provider\":\"stripe\",\"method\":\"POST\","
               "\"path_prefix\":\"/v1/invoiceitems\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1,\"every\":2},"
               "{\"provider\":\"stripe\",\"method\":\"POST\","
               "\"path_prefix\":\"/v1/invoices/\",\"hang\":true,"
               "\"process\":true,\"hang_ms\":20000,\"count\":1,"
               "\"every\":2}]");
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls("call_analyzed_appointment.json", 0, 1);
    wait_until(sent, 90000, "the invoice e-mail");
    wait_until(stripe_drained, 60000, "the job");
    cr_expect_eq(stripe("customers"), 1);
    cr_expect_eq(stripe("invoices"), 1);
    cr_expect_eq(stripe("invoiceitems"), 2, "items: %d",
                 stripe("invoiceitems"));
    cr_expect_eq(stripe("invoice_sends"), 1);
    cr_expect_eq(dead_count(), 0);
    cr_expect_eq(fired(0), 1, "the items' hang fired");
    cr_expect_eq(fired(1), 1, "the send's hang fired");
    int replayed;
    cr_expect_eq(posts_to("/stripe/v1/invoiceitems", &replayed), 2,
                 "no item was posted twice");
    cr_expect_eq(posts_to("*/send", &replayed), 2, "the send was retried");
    cr_expect_eq(replayed, 1, "and replayed by its key");
}
