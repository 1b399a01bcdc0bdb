/*
 * test_sandbox_housecall_pro.c - the Housecall Pro part of the built
 * callsync-sandbox: Token and Bearer auth, the customer search, the
 * schemas' required and typed fields with Housecall's 400, 404 and 422
 * shapes, addresses, jobs with their schedule and notes, estimates with
 * option notes, the per-minute limit with Retry-After, fault rules (a
 * hang that processes the write first) and the /_sandbox records. Needs
 * neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define KEY "hcp-sandbox-key"
#define H "Authorization: Token " KEY "\r\n"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *rate)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--housecall-pro-token", (char *)KEY,
                    (char *)"--housecall-pro-rate", (char *)rate, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbhcp_%d.log", (int)getpid());
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
    start_with("0");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbhcp, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbhcp_opts, .fini = stop, .timeout = 60);

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *full = xasprintf("/housecall_pro%s", path);
    char *text = xasprintf("%s %s HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n%s\r\n%s",
                           method, full, body ? strlen(body) : 0,
                           headers ? headers : "", body ? body : "");
    struct it_resp r;
    bool ok = it_raw(sb_port, text, strlen(text), &r);
    free(text);
    free(full);
    cr_assert(ok, "no answer to %s %s", method, path);
    return r;
}

static json_t *jbody(const struct it_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    cr_assert(j, "answer is not JSON (%s): %.*s", e.text, (int)r->body_len,
              r->body);
    return j;
}

static const char *s_of(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* POST a customer; its id and first address id (caller frees). */
static char *new_customer(const char *body, char addr[64])
{
    struct it_resp r = req("POST", "/customers", H, body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    char *id = xstrdup(s_of(j, "id"));
    if (addr) {
        const char *a = s_of(json_array_get(json_object_get(j, "addresses"),
                                            0),
                             "id");
        snprintf(addr, 64, "%s", a ? a : "");
    }
    json_decref(j);
    return id;
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=housecall_pro&type=%s&count=1",
             type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

#define CUSTOMER                                                          \
    "{\"first_name\":\"Marcus\",\"last_name\":\"Bell\",\"email\":"        \
    "\"marcus@example.org\",\"mobile_number\":\"3125550187\","            \
    "\"lead_source\":\"Voice agent\",\"tags\":[\"ai-call\"],\"addresses\":[" \
    "{\"street\":\"1820 Ridge Ave\",\"city\":\"Evanston\",\"state\":\"IL\"," \
    "\"zip\":\"60201\",\"country\":\"US\"}]}"

Test(sbhcp, auth)
{
    struct it_resp r = req("GET", "/customers", NULL, NULL);
    cr_expect_eq(r.status, 401);
    cr_expect(strstr(r.body, "\"message\":\"Unauthorized\""), "%.*s",
              (int)r.body_len, r.body);
    r = req("GET", "/customers", "Authorization: Token wrong\r\n", NULL);
    cr_expect_eq(r.status, 401);
    r = req("GET", "/customers", "Authorization: " KEY "\r\n", NULL);
    cr_expect_eq(r.status, 401, "the scheme is required");
    r = req("GET", "/customers", "Authorization: Bearer " KEY "\r\n", NULL);
    cr_expect_eq(r.status, 200);
}

Test(sbhcp, customers_search_create_update)
{
    char addr[64];
    char *id = new_customer(CUSTOMER, addr);
    cr_expect(strncmp(addr, "adr_", 4) == 0, "%s", addr);
    free(new_customer("{\"first_name\":\"Ann\",\"home_number\":"
                      "\"+1 415 555 0101\"}",
                      NULL));
    struct it_resp r = req("GET", "/customers?q=3125550187&page_size=100", H,
                           NULL);
    json_t *j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "total_items")), 1);
    cr_expect_str_eq(s_of(json_array_get(json_object_get(j, "customers"), 0),
                          "id"),
                     id);
    json_decref(j);
    r = req("GET", "/customers?q=555", H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "total_items")), 2,
                 "digits match within numbers");
    cr_expect_eq(json_integer_value(json_object_get(j, "page_size")), 10);
    json_decref(j);
    r = req("GET", "/customers?q=MARCUS%40example.org", H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "total_items")), 1);
    json_decref(j);
    r = req("GET", "/customers?q=evanston", H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "total_items")), 1,
                 "the address is searched");
    json_decref(j);

    char *path = xasprintf("/customers/%s", id);
    r = req("PUT", path, H, "{\"notes\":\"Gate code 4411\"}");
    cr_expect_eq(r.status, 200);
    r = req("GET", path, H, NULL);
    j = jbody(&r);
    cr_expect_str_eq(s_of(j, "notes"), "Gate code 4411");
    cr_expect_str_eq(s_of(j, "first_name"), "Marcus");
    json_decref(j);
    r = req("PUT", path, H, "{\"tags\":\"vip\"}");
    cr_expect_eq(r.status, 400);
    free(path);
    r = req("GET", "/customers/cus_nope", H, NULL);
    cr_expect_eq(r.status, 404);
    cr_expect(strstr(r.body, "{\"error\":{\"message\":\"Customer not "
                             "found\"}}"),
              "%.*s", (int)r.body_len, r.body);
    free(id);
}

Test(sbhcp, customer_validation)
{
    struct it_resp r = req("POST", "/customers", H, "{\"company\":\"Acme\"}");
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "One of first_name"), "%.*s", (int)r.body_len,
              r.body);
    r = req("POST", "/customers", H, "{\"email\":\"not-an-email\"}");
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "\"email\":\"is invalid\""));
    r = req("POST", "/customers", H, "{\"mobile_number\":\"12\"}");
    cr_expect_eq(r.status, 400);
    r = req("POST", "/customers", H,
            "{\"first_name\":\"A\",\"notifications_enabled\":\"yes\"}");
    cr_expect_eq(r.status, 400);
    r = req("POST", "/customers", H, "[1]");
    cr_expect_eq(r.status, 400);
    cr_expect_eq(count("customers"), 0);
    /* properties the schema does not know are ignored */
    r = req("POST", "/customers", H, "{\"first_name\":\"A\",\"shoe\":9}");
    cr_expect_eq(r.status, 201);
    cr_expect_null(strstr(r.body, "shoe"));
}

Test(sbhcp, addresses_jobs_and_notes)
{
    char *id = new_customer("{\"first_name\":\"Ann\"}", NULL);
    char *path = xasprintf("/customers/%s/addresses", id);
    struct it_resp r = req("POST", path, H,
                           "{\"street\":\"1 Main\",\"city\":\"X\"}");
    cr_expect_eq(r.status, 422);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(
                         json_object_get(j, "errors"), "zip"), 0)),
                     "is missing");
    json_decref(j);
    r = req("POST", path, H,
            "{\"street\":\"1 Main\",\"city\":\"X\",\"state\":\"IL\","
            "\"zip\":\"60201\",\"country\":\"US\"}");
    cr_expect_eq(r.status, 200);
    j = jbody(&r);
    char *addr = xstrdup(s_of(j, "id"));
    cr_expect_str_eq(s_of(j, "type"), "service");
    json_decref(j);
    free(path);

    r = req("POST", "/jobs", H, "{\"customer_id\":\"x\"}");
    cr_expect_eq(r.status, 422);
    char *other = new_customer("{\"first_name\":\"Bo\"}", NULL);
    char *body = xasprintf("{\"customer_id\":\"%s\",\"address_id\":\"%s\"}",
                           other, addr);
    r = req("POST", "/jobs", H, body);
    cr_expect_eq(r.status, 422, "the address is another customer's");
    free(body);
    body = xasprintf("{\"customer_id\":\"%s\",\"address_id\":\"%s\","
                     "\"schedule\":{\"scheduled_start\":"
                     "\"2026-02-20T14:00:00-06:00\",\"scheduled_end\":"
                     "\"2026-02-20T13:00:00-06:00\"}}",
                     id, addr);
    r = req("POST", "/jobs", H, body);
    cr_expect_eq(r.status, 400, "ends before it starts");
    free(body);
    body = xasprintf("{\"customer_id\":\"%s\",\"address_id\":\"%s\","
                     "\"schedule\":{\"scheduled_start\":"
                     "\"2026-02-20T14:00:00-06:00\",\"scheduled_end\":"
                     "\"2026-02-20T15:30:00-06:00\",\"arrival_window\":60},"
                     "\"notes\":\"Sync reference: callsync:x/job\","
                     "\"line_items\":[{\"name\":\"Inspection\"}]}",
                     id, addr);
    r = req("POST", "/jobs", H, body);
    free(body);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    j = jbody(&r);
    char *job = xstrdup(s_of(j, "id"));
    json_t *sch = json_object_get(j, "schedule");
    cr_expect_str_eq(s_of(sch, "scheduled_start"), "2026-02-20T20:00:00Z");
    cr_expect_str_eq(s_of(sch, "scheduled_end"), "2026-02-20T21:30:00Z");
    cr_expect_str_eq(s_of(j, "work_status"), "scheduled");
    cr_expect_str_eq(s_of(json_array_get(json_object_get(j, "notes"), 0),
                          "content"),
                     "Sync reference: callsync:x/job");
    cr_expect_str_eq(s_of(json_object_get(j, "customer"), "id"), id);
    json_decref(j);

    /* listed by customer and start */
    char *q = xasprintf("/jobs?customer_id=%s&scheduled_start_min="
                        "2026-02-20T20%%3A00%%3A00Z&scheduled_start_max="
                        "2026-02-20T20%%3A00%%3A00Z",
                        id);
    r = req("GET", q, H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "total_items")), 1);
    json_decref(j);
    free(q);
    q = xasprintf("/jobs?customer_id=%s&scheduled_start_min="
                  "2026-02-20T21%%3A00%%3A00Z",
                  id);
    r = req("GET", q, H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "total_items")), 0);
    json_decref(j);
    free(q);

    char *np = xasprintf("/jobs/%s/notes", job);
    r = req("POST", np, H, "{\"content\":\"\"}");
    cr_expect_eq(r.status, 422);
    r = req("POST", np, H, "{\"content\":\"Call summary\"}");
    cr_expect_eq(r.status, 201);
    free(np);
    r = req("POST", "/jobs/job_nope/notes", H, "{\"content\":\"x\"}");
    cr_expect_eq(r.status, 404);
    cr_expect(strstr(r.body, "Job not found"));
    char *jp = xasprintf("/jobs/%s", job);
    r = req("GET", jp, H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "notes")), 2);
    json_decref(j);
    free(jp);
    cr_expect_eq(count("jobs"), 1);
    cr_expect_eq(count("notes"), 1);
    free(job);
    free(addr);
    free(other);
    free(id);
}

Test(sbhcp, estimates_with_option_notes)
{
    char addr[64];
    char *id = new_customer(CUSTOMER, addr);
    char *body = xasprintf("{\"customer_id\":\"%s\",\"address_id\":\"%s\","
                           "\"options\":[{\"name\":\"Roof\"}],\"note\":"
                           "\"ref x/job\",\"schedule\":{\"start_time\":"
                           "\"2026-02-20T14:00:00-06:00\",\"end_time\":"
                           "\"2026-02-20T15:00:00-06:00\"}}",
                           id, addr);
    struct it_resp r = req("POST", "/estimates", H, body);
    free(body);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    char *est = xstrdup(s_of(j, "id"));
    json_t *opt = json_array_get(json_object_get(j, "options"), 0);
    char *o = xstrdup(s_of(opt, "id"));
    cr_expect_str_eq(s_of(json_array_get(json_object_get(opt, "notes"), 0),
                          "content"),
                     "ref x/job");
    json_decref(j);
    char *p = xasprintf("/estimates/%s/options/%s/notes", est, o);
    r = req("POST", p, H, "{\"content\":\"call\"}");
    cr_expect_eq(r.status, 201);
    free(p);
    p = xasprintf("/estimates/%s/options/eo_nope/notes", est);
    r = req("POST", p, H, "{\"content\":\"call\"}");
    cr_expect_eq(r.status, 404);
    free(p);
    p = xasprintf("/estimates?customer_id=%s", id);
    r = req("GET", p, H, NULL);
    j = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "estimates")), 1);
    json_decref(j);
    free(p);
    cr_expect_eq(count("estimates"), 1);
    free(est);
    free(o);
    free(id);
}

Test(sbhcp, faults_and_records)
{
    const char *rules =
        "[{\"provider\":\"housecall_pro\",\"path_prefix\":\"/customers\","
        "\"method\":\"GET\",\"status\":500,\"count\":1},"
        "{\"provider\":\"housecall_pro\",\"method\":\"POST\",\"hang\":true,"
        "\"process\":true,\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("GET", "/customers", H, NULL);
    cr_expect_eq(r.status, 500);
    cr_expect(strstr(r.body, "\"message\""), "%.*s", (int)r.body_len,
              r.body);
    char *text = xasprintf("POST /housecall_pro/customers HTTP/1.1\r\n"
                           "Host: t\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" H "\r\n%s",
                           strlen(CUSTOMER), CUSTOMER);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count("customers"), 1, "the write happened");
    cr_expect_eq(count("addresses"), 1);
    r = it_get(sb_port, "/_sandbox/records?provider=housecall_pro&type=x");
    cr_expect_eq(r.status, 400);
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(count("customers"), 0);
}

Test(sbhcp_opts, a_minute_limit_answers_429_with_retry_after)
{
    start_with("2");
    cr_expect_eq(req("GET", "/customers", H, NULL).status, 200);
    cr_expect_eq(req("GET", "/customers", H, NULL).status, 200);
    struct it_resp r = req("GET", "/customers", H, NULL);
    cr_expect_eq(r.status, 429);
    cr_expect(strstr(r.headers, "\r\nRetry-After: "), "%s", r.headers);
    cr_expect(strstr(r.body, "Too Many Requests"));
}
