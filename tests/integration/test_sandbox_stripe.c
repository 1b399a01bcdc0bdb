/*
 * test_sandbox_stripe.c - the Stripe part of the built callsync-sandbox:
 * keys (Bearer and Basic, 401 shapes), form bodies, unknown and invalid
 * parameters (400 with param), customers (create, update, list by e-mail,
 * search with its lag), payment links, invoices with items, finalize and
 * send, idempotency keys (replay, a key reused with other parameters,
 * pruned keys), the per-mode rate limit, fault rules (including a hang
 * that processes the request first) and the /_sandbox records. Needs
 * neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define KEY "sk_test_sandbox0000000000000001"
#define AUTH "Authorization: Bearer " KEY "\r\n"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *rate, const char *lag)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--stripe-key", (char *)KEY,
                    (char *)"--stripe-key", (char *)"sk_live_sandbox0001",
                    (char *)"--stripe-rate", (char *)rate,
                    (char *)"--stripe-search-lag-ms", (char *)lag, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbstripe_%d.log",
             (int)getpid());
    unlink(sb_log);
    sb_pid = it_spawn(argv, NULL, sb_log);
    for (int i = 0; i < 250; i++) {
        int fd = it_connect(sb_port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    cr_assert_fail("sandbox did not start");
}

static void setup(void)
{
    start_with("1000", "0");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbstripe, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbstripe_opts, .fini = stop, .timeout = 60);

/* ---- Requests and answers ----------------------------------------------- */

static struct it_resp req_ct(const char *method, const char *path,
                             const char *headers, const char *ctype,
                             const char *body)
{
    char *text = xasprintf("%s /stripe%s HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: %s\r\n"
                           "Content-Length: %zu\r\n%s\r\n%s",
                           method, path, ctype, body ? strlen(body) : 0,
                           headers ? headers : "", body ? body : "");
    struct it_resp r;
    bool ok = it_raw(sb_port, text, strlen(text), &r);
    free(text);
    cr_assert(ok, "no answer to %s %s", method, path);
    return r;
}

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    return req_ct(method, path, headers, "application/x-www-form-urlencoded",
                  body);
}

static json_t *jbody(const struct it_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    cr_assert(j, "answer is not JSON (%s): %.*s", e.text, (int)r->body_len,
              r->body);
    return j;
}

static const char *hdr(const struct it_resp *r, const char *name,
                       char out[128])
{
    char key[96];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strstr(r->headers, key);
    out[0] = '\0';
    if (p) {
        p += strlen(key);
        size_t n = strcspn(p, "\r");
        if (n > 127)
            n = 127;
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

/* status, and Stripe's error shape with this type, code and param (NULL:
 * absent) and a message starting with msg. */
static void expect_error(const struct it_resp *r, int status,
                         const char *type, const char *code,
                         const char *param, const char *msg)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_object(e), "no error object: %.*s", (int)r->body_len,
              r->body);
    cr_expect_str_eq(json_string_value(json_object_get(e, "type")), type);
    const char *c = json_string_value(json_object_get(e, "code"));
    if (code)
        cr_expect(c && strcmp(c, code) == 0, "code %s, want %s", c, code);
    else
        cr_expect_null(c, "code %s", c);
    const char *p = json_string_value(json_object_get(e, "param"));
    if (param)
        cr_expect(p && strcmp(p, param) == 0, "param %s, want %s", p, param);
    const char *m = json_string_value(json_object_get(e, "message"));
    cr_expect(m && strncmp(m, msg, strlen(msg)) == 0, "message '%s'", m);
    char id[128];
    cr_expect(strncmp(hdr(r, "Request-Id", id), "req_", 4) == 0);
    json_decref(j);
}

static const char *jstr(const json_t *o, const char *path)
{
    const json_t *v = o;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = buf, *dot; tok; tok = dot) {
        dot = strchr(tok, '.');
        if (dot)
            *dot++ = '\0';
        v = json_object_get(v, tok);
    }
    return json_string_value(v);
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=stripe&type=%s&count=1", type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

/* A customer; returns its id (xmalloc'd). */
static char *make_customer(const char *email, const char *key)
{
    char *h = key ? xasprintf(AUTH "Idempotency-Key: %s\r\n", key)
                  : xstrdup(AUTH);
    char *body = xasprintf("email=%s&name=Jenny+Rosen&phone=%%2B14155550123"
                           "&metadata[callsync_job_id]=job1",
                           email);
    struct it_resp r = req("POST", "/v1/customers", h, body);
    free(h);
    free(body);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    char *id = xstrdup(jstr(j, "id"));
    json_decref(j);
    return id;
}

/* ---- Keys and requests -------------------------------------------------- */

Test(sbstripe, keys)
{
    struct it_resp r = req("GET", "/v1/customers", NULL, NULL);
    expect_error(&r, 401, "invalid_request_error", NULL, NULL,
                 "You did not provide an API key.");
    r = req("GET", "/v1/customers",
            "Authorization: Bearer sk_test_someone_else_9999\r\n", NULL);
    expect_error(&r, 401, "invalid_request_error", NULL, NULL,
                 "Invalid API Key provided: sk_test_****9999");
    /* Basic with the key as the user works as well. */
    char *b64 = cs_base64_encode((const unsigned char *)KEY ":",
                                 strlen(KEY) + 1);
    char *h = xasprintf("Authorization: Basic %s\r\n", b64);
    r = req("GET", "/v1/customers", h, NULL);
    cr_expect_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    free(h);
    free(b64);
}

Test(sbstripe, bodies_versions_and_parameters)
{
    struct it_resp r = req_ct("POST", "/v1/customers", AUTH,
                              "application/json", "{\"email\":\"a@b.co\"}");
    expect_error(&r, 400, "invalid_request_error", NULL, NULL,
                 "Invalid request: the body must be");
    r = req("POST", "/v1/customers", AUTH "Stripe-Version: yesterday\r\n",
            "email=a%40b.co");
    expect_error(&r, 400, "invalid_request_error", NULL, NULL,
                 "Invalid Stripe API version: yesterday");
    r = req("POST", "/v1/customers", AUTH "Stripe-Version: 2025-09-30.clover"
                                         "\r\n",
            "email=a%40b.co&favourite_colour=blue");
    expect_error(&r, 400, "invalid_request_error", "parameter_unknown",
                 "favourite_colour",
                 "Received unknown parameter: favourite_colour");
    r = req("POST", "/v1/customers", AUTH, "address[planet]=mars");
    expect_error(&r, 400, "invalid_request_error", "parameter_unknown",
                 "address[planet]", "Received unknown parameter");
    r = req("POST", "/v1/customers", AUTH, "email=not-an-address");
    expect_error(&r, 400, "invalid_request_error", "email_invalid", "email",
                 "Invalid email address: not-an-address");
    r = req("POST", "/v1/customers", AUTH,
            "metadata[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]=1");
    expect_error(&r, 400, "invalid_request_error", "parameter_invalid",
                 "metadata", "Metadata keys can have up to 40 characters");
    r = req("POST", "/v1/customers", AUTH, "metadata[a][b=1");
    cr_expect_eq(r.status, 400);
    r = req("GET", "/v1/charges", AUTH, NULL);
    expect_error(&r, 404, "invalid_request_error", NULL, NULL,
                 "Unrecognized request URL (GET: /stripe/v1/charges).");
    cr_expect_eq(count("customers"), 0, "nothing was created");
}

/* ---- Customers ---------------------------------------------------------- */

Test(sbstripe, customers)
{
    char *id = make_customer("jenny%40example.com", NULL);
    cr_expect(strncmp(id, "cus_", 4) == 0, "%s", id);
    char path[96];
    snprintf(path, sizeof(path), "/v1/customers/%s", id);
    struct it_resp r = req("GET", path, AUTH, NULL);
    cr_assert_eq(r.status, 200);
    json_t *c = jbody(&r);
    cr_expect_str_eq(jstr(c, "object"), "customer");
    cr_expect_str_eq(jstr(c, "email"), "jenny@example.com");
    cr_expect_str_eq(jstr(c, "phone"), "+14155550123");
    cr_expect_str_eq(jstr(c, "metadata.callsync_job_id"), "job1");
    cr_expect(json_is_null(json_object_get(c, "address")));
    cr_expect(json_is_false(json_object_get(c, "livemode")));
    json_decref(c);

    /* Update: metadata merges ("" removes), an address is set whole. */
    r = req("POST", path, AUTH, "metadata[tier]=gold&metadata[callsync_job_"
                                "id]=&address[line1]=1+Main+St&address[city]"
                                "=Oakland");
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    c = jbody(&r);
    cr_expect_str_eq(jstr(c, "metadata.tier"), "gold");
    cr_expect_null(json_object_get(json_object_get(c, "metadata"),
                                   "callsync_job_id"));
    cr_expect_str_eq(jstr(c, "address.line1"), "1 Main St");
    cr_expect(json_is_null(json_object_get(json_object_get(c, "address"),
                                           "postal_code")));
    json_decref(c);
    r = req("POST", "/v1/customers/cus_nobody", AUTH, "name=x");
    expect_error(&r, 404, "invalid_request_error", "resource_missing", "id",
                 "No such customer: 'cus_nobody'");

    /* List by e-mail: exact, newest first, limit and has_more. */
    char *other = make_customer("Jenny%40example.com", NULL);
    char *second = make_customer("jenny%40example.com", NULL);
    r = req("GET", "/v1/customers?email=jenny%40example.com&limit=1", AUTH,
            NULL);
    cr_assert_eq(r.status, 200);
    json_t *l = jbody(&r);
    cr_expect_str_eq(jstr(l, "object"), "list");
    cr_expect_eq(json_array_size(json_object_get(l, "data")), 1);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(l, "data"), 0),
                          "id"),
                     second);
    cr_expect(json_is_true(json_object_get(l, "has_more")));
    json_decref(l);
    char *q = xasprintf("/v1/customers?email=jenny%%40example.com&"
                        "starting_after=%s", second);
    r = req("GET", q, AUTH, NULL);
    free(q);
    l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "data")), 1);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(l, "data"), 0),
                          "id"),
                     id);
    json_decref(l);
    r = req("GET", "/v1/customers?limit=0", AUTH, NULL);
    cr_expect_eq(r.status, 400);
    free(id);
    free(other);
    free(second);
}

Test(sbstripe, search)
{
    char *id = make_customer("o%27brien%40example.com", NULL);
    struct it_resp r = req(
        "GET",
        "/v1/customers/search?query=email%3A%27O%5C%27Brien%40example.com"
        "%27",
        AUTH, NULL);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    cr_expect_str_eq(jstr(j, "object"), "search_result");
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);
    r = req("GET",
            "/v1/customers/search?query=metadata%5B%27callsync_job_id%27%5D"
            "%3A%27job1%27+AND+phone%3A%27%2B14155550123%27",
            AUTH, NULL);
    j = jbody(&r);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(j, "data"), 0),
                          "id"),
                     id);
    json_decref(j);
    r = req("GET", "/v1/customers/search?query=phone%3A%27%2B1999%27", AUTH,
            NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
    r = req("GET", "/v1/customers/search?query=colour%3A%27red%27", AUTH,
            NULL);
    expect_error(&r, 400, "invalid_request_error", NULL, "query",
                 "Invalid search query: Field 'colour'");
    r = req("GET", "/v1/customers/search", AUTH, NULL);
    expect_error(&r, 400, "invalid_request_error", "parameter_missing",
                 "query", "Missing required param: query.");
    free(id);
}

Test(sbstripe_opts, search_lags_behind_writes_lists_do_not)
{
    start_with("1000", "1500");
    char *id = make_customer("lag%40example.com", NULL);
    struct it_resp r = req("GET",
                           "/v1/customers/search?query=email%3A%27lag%40"
                           "example.com%27",
                           AUTH, NULL);
    json_t *j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 0,
                 "not searchable yet");
    json_decref(j);
    r = req("GET", "/v1/customers?email=lag%40example.com", AUTH, NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 1,
                 "lists are consistent");
    json_decref(j);
    usleep(1600000);
    r = req("GET", "/v1/customers/search?query=email%3A%27lag%40example.com"
                   "%27",
            AUTH, NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);
    free(id);
}

/* ---- Idempotency -------------------------------------------------------- */

Test(sbstripe, idempotency_keys)
{
    char *a = make_customer("k%40example.com", "job1:customer");
    /* The same request again: the saved answer, no second customer. */
    char *b = make_customer("k%40example.com", "job1:customer");
    cr_expect_str_eq(a, b);
    cr_expect_eq(count("customers"), 1);
    struct it_resp r = req("POST", "/v1/customers",
                           AUTH "Idempotency-Key: job1:customer\r\n",
                           "email=k%40example.com&name=Jenny+Rosen&phone="
                           "%2B14155550123&metadata[callsync_job_id]=job1");
    char v[128];
    cr_expect_str_eq(hdr(&r, "Idempotent-Replayed", v), "true");
    /* The key with other parameters: refused. */
    r = req("POST", "/v1/customers", AUTH "Idempotency-Key: job1:customer\r\n",
            "email=other%40example.com");
    expect_error(&r, 400, "idempotency_error", NULL, NULL,
                 "Keys for idempotent requests can only be used with the "
                 "same parameters");
    /* A refused request saves nothing: its key stays free. */
    r = req("POST", "/v1/customers", AUTH "Idempotency-Key: job2:customer\r\n",
            "email=bad");
    cr_expect_eq(r.status, 400);
    char *c = make_customer("c%40example.com", "job2:customer");
    cr_expect_eq(count("customers"), 2);
    /* Once keys are pruned (24 h), the same request is a new one. */
    r = it_post(sb_port, "/_sandbox/stripe/expire_keys", NULL, "", 0);
    cr_assert_eq(r.status, 200);
    char *d = make_customer("k%40example.com", "job1:customer");
    cr_expect_str_neq(a, d);
    cr_expect_eq(count("customers"), 3, "a duplicate: why the provider "
                                        "looks up after a day");
    /* Every request is recorded with its key. */
    r = it_get(sb_port, "/_sandbox/records?provider=stripe&type=requests");
    json_t *j = jbody(&r);
    int replayed = 0;
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(j, "records"), i, q) {
        replayed += json_is_true(json_object_get(q, "replayed"));
    }
    cr_expect_eq(replayed, 2);
    json_decref(j);
    free(a);
    free(b);
    free(c);
    free(d);
}

/* ---- Payment links and invoices ----------------------------------------- */

Test(sbstripe, payment_links)
{
    const char *body = "line_items[0][price_data][currency]=usd&"
                       "line_items[0][price_data][unit_amount]=15000&"
                       "line_items[0][price_data][product_data][name]=Roof&"
                       "line_items[0][quantity]=2&metadata[callsync_job_id]="
                       "job1&restrictions[completed_sessions][limit]=1";
    struct it_resp r = req("POST", "/v1/payment_links", AUTH, body);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *l = jbody(&r);
    cr_expect_str_eq(jstr(l, "object"), "payment_link");
    cr_expect(strncmp(jstr(l, "url"), "https://buy.stripe.com/test_", 28) ==
              0);
    cr_expect_str_eq(jstr(l, "metadata.callsync_job_id"), "job1");
    json_t *item = json_array_get(
        json_object_get(json_object_get(l, "line_items"), "data"), 0);
    cr_expect_eq(json_integer_value(json_object_get(item, "amount_total")),
                 30000);
    cr_expect_eq(json_integer_value(json_object_get(item, "quantity")), 2);
    json_decref(l);
    r = req("POST", "/v1/payment_links", AUTH,
            "line_items[0][price_data][currency]=dollars&line_items[0]"
            "[price_data][unit_amount]=1&line_items[0][price_data]"
            "[product_data][name]=x&line_items[0][quantity]=1");
    expect_error(&r, 400, "invalid_request_error", "parameter_invalid",
                 "line_items[0][price_data][currency]",
                 "Invalid currency: dollars");
    r = req("POST", "/v1/payment_links", AUTH,
            "line_items[0][price]=price_1");
    expect_error(&r, 400, "invalid_request_error", "parameter_missing",
                 "line_items[0][quantity]",
                 "Missing required param: line_items[0][quantity].");
    r = req("POST", "/v1/payment_links", AUTH, "metadata[a]=b");
    expect_error(&r, 400, "invalid_request_error", "parameter_missing",
                 "line_items", "Missing required param: line_items.");
    r = req("POST", "/v1/payment_links", AUTH,
            "line_items[0][price]=price_2&line_items[0][quantity]=1");
    cr_assert_eq(r.status, 200);
    r = req("GET", "/v1/payment_links?limit=1", AUTH, NULL);
    l = jbody(&r);
    json_t *first = json_array_get(json_object_get(l, "data"), 0);
    cr_expect(json_is_true(json_object_get(l, "has_more")));
    char *after = xasprintf("/v1/payment_links?limit=1&starting_after=%s",
                            jstr(first, "id"));
    json_decref(l);
    r = req("GET", after, AUTH, NULL);
    free(after);
    l = jbody(&r);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(l, "data"), 0),
                          "metadata.callsync_job_id"),
                     "job1", "newest first: the first link comes second");
    json_decref(l);
    cr_expect_eq(count("payment_links"), 2);
}

Test(sbstripe, invoices)
{
    char *cus = make_customer("inv%40example.com", NULL);
    char *body = xasprintf("customer=%s&collection_method=send_invoice&"
                           "currency=usd&auto_advance=false&"
                           "pending_invoice_items_behavior=exclude&"
                           "metadata[callsync_job_id]=job1",
                           cus);
    struct it_resp r = req("POST", "/v1/invoices", AUTH, body);
    expect_error(&r, 400, "invalid_request_error", "parameter_invalid",
                 "days_until_due",
                 "Invoices with `collection_method=send_invoice` must");
    char *b2 = xasprintf("%s&days_until_due=7", body);
    r = req("POST", "/v1/invoices", AUTH, b2);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *inv = jbody(&r);
    char *id = xstrdup(jstr(inv, "id"));
    cr_expect_str_eq(jstr(inv, "status"), "draft");
    cr_expect_str_eq(jstr(inv, "customer_email"), "inv@example.com");
    json_decref(inv);
    r = req("POST", "/v1/invoices", AUTH, "customer=cus_nobody");
    expect_error(&r, 400, "invalid_request_error", "resource_missing",
                 "customer", "No such customer: 'cus_nobody'");

    char *item = xasprintf("customer=%s&invoice=%s&amount=15000&currency=usd&"
                           "description=Inspection&metadata[callsync_item]=0",
                           cus, id);
    r = req("POST", "/v1/invoiceitems", AUTH, item);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    char *wrong = xasprintf("customer=%s&invoice=%s&amount=1&currency=eur",
                            cus, id);
    r = req("POST", "/v1/invoiceitems", AUTH, wrong);
    expect_error(&r, 400, "invalid_request_error", "parameter_invalid",
                 "currency", "The currency of the invoice item (eur)");
    char path[128];
    snprintf(path, sizeof(path), "/v1/invoiceitems?invoice=%s", id);
    r = req("GET", path, AUTH, NULL);
    json_t *l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "data")), 1);
    json_decref(l);

    snprintf(path, sizeof(path), "/v1/invoices/%s/send", id);
    r = req("POST", path, AUTH, NULL);
    expect_error(&r, 400, "invalid_request_error", "invoice_unexpected_state",
                 NULL, "You can't send a draft invoice");
    snprintf(path, sizeof(path), "/v1/invoices/%s/finalize", id);
    r = req("POST", path, AUTH, "auto_advance=false");
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    inv = jbody(&r);
    cr_expect_str_eq(jstr(inv, "status"), "open");
    cr_expect_eq(json_integer_value(json_object_get(inv, "amount_due")),
                 15000);
    cr_expect(jstr(inv, "number"));
    cr_expect(jstr(inv, "hosted_invoice_url"));
    json_decref(inv);
    r = req("POST", path, AUTH, NULL);
    expect_error(&r, 400, "invalid_request_error", "invoice_not_editable",
                 NULL, "This invoice is already finalized");
    r = req("POST", "/v1/invoiceitems", AUTH, item);
    expect_error(&r, 400, "invalid_request_error", "parameter_invalid",
                 "invoice", "You can only add invoice items to draft");
    snprintf(path, sizeof(path), "/v1/invoices/%s/send", id);
    r = req("POST", path, AUTH, NULL);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(count("invoice_sends"), 1);
    snprintf(path, sizeof(path), "/v1/invoices?customer=%s", cus);
    r = req("GET", path, AUTH, NULL);
    l = jbody(&r);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(l, "data"), 0),
                          "metadata.callsync_job_id"),
                     "job1");
    json_decref(l);
    r = req("GET", "/v1/invoices/in_nothing", AUTH, NULL);
    expect_error(&r, 404, "invalid_request_error", "resource_missing", "id",
                 "No such invoice: 'in_nothing'");
    free(cus);
    free(body);
    free(b2);
    free(id);
    free(item);
    free(wrong);
}

/* ---- Limits and faults -------------------------------------------------- */

Test(sbstripe_opts, rate_limit_per_second)
{
    start_with("3", "0");
    for (int i = 0; i < 3; i++) {
        struct it_resp r = req("GET", "/v1/customers", AUTH, NULL);
        cr_expect_eq(r.status, 200);
    }
    struct it_resp r = req("GET", "/v1/customers", AUTH, NULL);
    expect_error(&r, 429, "invalid_request_error", "rate_limit", NULL,
                 "Request rate limit exceeded.");
    /* Live mode has its own budget. */
    r = req("GET", "/v1/customers",
            "Authorization: Bearer sk_live_sandbox0001\r\n", NULL);
    cr_expect_eq(r.status, 200);
    usleep(1100000);
    r = req("GET", "/v1/customers", AUTH, NULL);
    cr_expect_eq(r.status, 200);
}

Test(sbstripe, faults)
{
    const char *rules =
        "[{\"provider\":\"stripe\",\"path_prefix\":\"/v1/payment_links\","
        "\"status\":402,\"count\":1},"
        "{\"provider\":\"stripe\",\"method\":\"POST\",\"path_prefix\":"
        "\"/v1/customers\",\"hang\":true,\"process\":true,\"hang_ms\":300,"
        "\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("POST", "/v1/payment_links", AUTH, "line_items[0][price]=p");
    cr_assert_eq(r.status, 402);
    json_t *j = jbody(&r);
    cr_expect_str_eq(jstr(j, "error.type"), "card_error");
    cr_expect_str_eq(jstr(j, "error.code"), "card_declined");
    json_decref(j);

    /* The hang creates the customer, then never answers; the same key
     * afterwards gets that customer back. */
    const char *body = "email=hang%40example.com";
    char *text = xasprintf("POST /stripe/v1/customers HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/x-www-form-urlencoded"
                           "\r\nContent-Length: %zu\r\n" AUTH
                           "Idempotency-Key: jh:customer\r\n\r\n%s",
                           strlen(body), body);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count("customers"), 1, "the write happened");
    r = req("POST", "/v1/customers", AUTH "Idempotency-Key: jh:customer\r\n",
            body);
    cr_expect_eq(r.status, 200);
    char v[128];
    cr_expect_str_eq(hdr(&r, "Idempotent-Replayed", v), "true");
    cr_expect_eq(count("customers"), 1);
    r = it_get(sb_port, "/_sandbox/records?provider=stripe&type=bogus");
    cr_expect_eq(r.status, 400);
}
