/*
 * test_sandbox_segment.c - the Segment part of the built
 * callsync-sandbox: the write key as Basic user name or in the body, the
 * 400s of the HTTP Tracking API (size, JSON, no user, long messageId, no
 * key), the 200s of calls Segment drops (unknown key, Track without an
 * event), de-duplication by messageId, the per-second limit, fault rules
 * and the /_sandbox records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define KEY "wk_sandbox_0001"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];
static char basic[128];

static void start_with(const char *rate)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--segment-write-key", (char *)KEY,
                    (char *)"--segment-rate", (char *)rate, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbseg_%d.log", (int)getpid());
    unlink(sb_log);
    char *b64 = cs_base64_encode((const unsigned char *)KEY ":",
                                 strlen(KEY) + 1);
    snprintf(basic, sizeof(basic), "Authorization: Basic %s\r\n", b64);
    free(b64);
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

TestSuite(sbseg, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbseg_opts, .fini = stop, .timeout = 60);

static struct it_resp call(const char *path, const char *headers,
                           const char *body)
{
    char *full = xasprintf("/segment%s", path);
    struct it_resp r = it_post(sb_port, full, headers, body, strlen(body));
    free(full);
    return r;
}

static json_t *records(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=segment&type=%s",
             type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static long long counter(const char *name)
{
    json_t *s = records("stats");
    long long n = json_integer_value(json_object_get(json_array_get(s, 0),
                                                     name));
    json_decref(s);
    return n;
}

#define TRACK                                                             \
    "{\"userId\":\"+14155550101\",\"event\":\"Call Synced\","             \
    "\"messageId\":\"job1:track\",\"properties\":{\"call_id\":\"c1\"}}"

Test(sbseg, track_with_basic_auth_or_body_key)
{
    struct it_resp r = call("/v1/track", basic, TRACK);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "{\"success\":true}"), "%.*s", (int)r.body_len,
              r.body);
    r = call("/v1/identify", NULL,
             "{\"writeKey\":\"" KEY "\",\"anonymousId\":\"call_1\","
             "\"traits\":{\"name\":\"Ann\"},\"messageId\":\"job1:identify\"}");
    cr_expect_eq(r.status, 200);
    json_t *t = records("tracks");
    cr_expect_eq(json_array_size(t), 1);
    json_t *rec = json_array_get(t, 0);
    cr_expect_str_eq(json_string_value(json_object_get(rec, "writeKey")),
                     KEY);
    cr_expect_str_eq(json_string_value(json_object_get(rec, "type")),
                     "track");
    json_decref(t);
    t = records("identifies");
    cr_expect_eq(json_array_size(t), 1);
    json_decref(t);
}

Test(sbseg, bad_calls_are_400)
{
    struct it_resp r = call("/v1/track", NULL, TRACK);
    cr_expect_eq(r.status, 400, "no write key");
    r = call("/v1/track", basic, "[1,2]");
    cr_expect_eq(r.status, 400);
    r = call("/v1/track", basic, "{\"event\":\"x\"}");
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "no_user_anon_id"));
    char mid[160];
    memset(mid, 'm', 120);
    mid[120] = '\0';
    char *b = xasprintf("{\"userId\":\"u\",\"event\":\"x\",\"messageId\":"
                        "\"%s\"}",
                        mid);
    r = call("/v1/track", basic, b);
    free(b);
    cr_expect_eq(r.status, 400);
    char *big = xmalloc(40001);
    memset(big, 'x', 40000);
    big[40000] = '\0';
    b = xasprintf("{\"userId\":\"u\",\"event\":\"x\",\"properties\":{"
                  "\"t\":\"%s\"}}",
                  big);
    r = call("/v1/track", basic, b);
    free(b);
    free(big);
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "payload_too_large"));
    r = call("/v1/batch", basic, TRACK);
    cr_expect_eq(r.status, 404);
    json_t *t = records("tracks");
    cr_expect_eq(json_array_size(t), 0);
    json_decref(t);
}

Test(sbseg, dropped_and_duplicate_calls_are_200_and_kept_once)
{
    char *b64 = cs_base64_encode((const unsigned char *)"unknown:", 8);
    char *other = xasprintf("Authorization: Basic %s\r\n", b64);
    free(b64);
    struct it_resp r = call("/v1/track", other, TRACK);
    cr_expect_eq(r.status, 200, "Segment does not check keys at the edge");
    free(other);
    r = call("/v1/track", basic, "{\"userId\":\"u\",\"messageId\":\"m2\"}");
    cr_expect_eq(r.status, 200, "a Track without an event is dropped later");
    cr_expect_eq(counter("dropped"), 2);
    r = call("/v1/track", basic, TRACK);
    r = call("/v1/track", basic, TRACK);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(counter("duplicates"), 1);
    json_t *t = records("tracks");
    cr_expect_eq(json_array_size(t), 1);
    json_decref(t);
}

Test(sbseg, faults)
{
    const char *rules = "[{\"provider\":\"segment\",\"status\":502,"
                        "\"count\":1},{\"provider\":\"segment\",\"hang\":"
                        "true,\"process\":true,\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = call("/v1/track", basic, TRACK);
    cr_expect_eq(r.status, 502);
    char *text = xasprintf("POST /segment/v1/track HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n%s\r\n%s",
                           strlen(TRACK), basic, TRACK);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    json_t *t = records("tracks");
    cr_expect_eq(json_array_size(t), 1, "the call was taken");
    json_decref(t);
    r = call("/v1/track", basic, TRACK);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(counter("duplicates"), 1, "the retry is a duplicate");
    r = it_get(sb_port, "/_sandbox/records?provider=segment&type=x");
    cr_expect_eq(r.status, 400);
}

Test(sbseg_opts, a_rate_answers_429)
{
    start_with("2");
    cr_expect_eq(call("/v1/track", basic, TRACK).status, 200);
    cr_expect_eq(call("/v1/track", basic, TRACK).status, 200);
    struct it_resp r = call("/v1/track", basic, TRACK);
    cr_expect_eq(r.status, 429);
    cr_expect(strstr(r.headers, "\r\nRetry-After: 1\r\n"), "%s", r.headers);
}
