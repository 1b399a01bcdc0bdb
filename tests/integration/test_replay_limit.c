/*
 * test_replay_limit.c - an outage's dead letters drained at the provider's
 * pace: 10,000 Zapier jobs die on a permanent error, the cause is fixed,
 * the connection is limited to 100 requests a second, and `callsyncctl dead
 * replay --all` puts them all back at once. The worker's limiter must hold
 * the provider to 100/s in every second while all 10,000 are delivered, each
 * exactly once (one Idempotency-Key per job at the sandbox).
 */
#include "e2e_support.h"

#include <curl/curl.h>

#define JOBS 10000
#define RATE 100

static char *c_zap;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    return buf_add(b, p, size * n) == 0 ? size * n : 0;
}

/* GET a sandbox answer too large for it_get (the request log of 10,000
 * requests is about a megabyte). */
static json_t *get_json(const char *path)
{
    char *url = xasprintf("http://127.0.0.1:%d%s", sandbox_port, path);
    struct buf b;
    buf_init(&b, 64 << 20);
    CURL *c = curl_easy_init();
    cr_assert(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    cr_assert(cc == CURLE_OK && status == 200, "GET %s: %s, %ld", path,
              curl_easy_strerror(cc), status);
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    cr_assert(j, "GET %s: not JSON", path);
    buf_release(&b);
    free(url);
    return j;
}

static void setup(void)
{
    e2e_setup("replay", 0);
    char *url = xasprintf("http://127.0.0.1:%d/zapier/hooks/catch/1/abc/",
                          sandbox_port);
    c_zap = add_conn("zapier", NULL, url, "{\"rate_limit\":\"100000/1s\"}");
    free(url);
    start_ingest();
}

static void teardown(void)
{
    e2e_teardown();
    free(c_zap);
}

static bool all_dead(void)
{
    return dead_count() == JOBS;
}

static bool all_hooks(void)
{
    return records("zapier", "hooks") >= JOBS && drained();
}

TestSuite(replay, .init = setup, .fini = teardown, .timeout = 600);

Test(replay, ten_thousand_dead_letters_replayed_under_100_per_second)
{
    set_faults("[{\"provider\":\"zapier\",\"status\":400}]");
    start_worker(512);
    post_calls(0, JOBS);
    wait_until(all_dead, 120000, "10,000 dead letters");
    cr_assert_eq(records("zapier", "hooks"), 0);

    /* The fix: the hook accepts again; the connection is paced. */
    set_faults("[]");
    char *args = xasprintf("connections update %s --config "
                           "'{\"rate_limit\":\"%d/1s\"}'",
                           c_zap, RATE);
    cr_assert_eq(ctl_run(args), 0, "connections update");
    free(args);
    usleep(500000); /* the worker's cache drops the old limit */
    int64_t since = cs_now_ms();
    cr_assert_eq(ctl_run("dead replay --all --rate 5000"), 0, "dead replay");
    cr_expect_eq(dead_count(), 0, "every dead letter taken");
    wait_until(all_hooks, 300000, "10,000 hooks after the replay");

    cr_expect_eq(records("zapier", "hooks"), JOBS);
    cr_expect_eq(distinct("zapier", "hooks", "idempotency_key"), JOBS,
                 "each job delivered once");
    cr_expect_eq(dead_count(), 0);

    /* The provider's view: never more than the limit in any second. */
    char path[96];
    snprintf(path, sizeof(path),
             "/_sandbox/requests?provider=zapier&since_ms=%lld",
             (long long)since);
    json_t *j = get_json(path);
    json_t *reqs = json_object_get(j, "requests");
    size_t n = json_array_size(reqs);
    cr_expect_eq(n, JOBS, "%zu requests after the replay", n);
    int64_t *at = xcalloc(n ? n : 1, sizeof(*at));
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
    /* Paced every 10 ms: a one-second window holds 100, or 101 when
     * both of its edges fall on a request. */
    cr_expect_leq(worst, RATE + 1, "%zu requests within one second", worst);
    cr_expect_geq(at[n - 1] - at[0], (int64_t)(JOBS - 1) * 1000 / RATE * 9 /
                                         10,
                  "%zu requests took %lld ms", n,
                  (long long)(at[n - 1] - at[0]));
    free(at);
    json_decref(j);
}
