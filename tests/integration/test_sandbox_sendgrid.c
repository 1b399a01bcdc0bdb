/*
 * test_sandbox_sendgrid.c - the SendGrid part of the built
 * callsync-sandbox: the Bearer key (401), Mail Send's validation with
 * every problem reported at once ({"errors": [{"message", "field",
 * "help"}]}), sender verification (403), sandbox mode (200, nothing
 * sent), 202 with X-Message-Id, the X-RateLimit-* headers and 429,
 * fault rules (a hang that accepts the message first) and the /_sandbox
 * records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define KEY "SG.sandbox-key.0123456789"
#define AUTH "Authorization: Bearer " KEY "\r\n"
#define SENDER "bookings@summit.example"
#define GOOD                                                                 \
    "{\"personalizations\":[{\"to\":[{\"email\":\"marcus@example.org\","     \
    "\"name\":\"Marcus Bell\"}]}],\"from\":{\"email\":\"" SENDER "\"},"      \
    "\"subject\":\"Confirmed\",\"content\":[{\"type\":\"text/plain\","       \
    "\"value\":\"See you Friday\"}],\"custom_args\":{\"callsync_job_id\":"   \
    "\"job1\"},\"headers\":{\"X-Callsync-Job-Id\":\"job1\"}}"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *rate)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--sendgrid-key", (char *)KEY,
                    (char *)"--sendgrid-sender", (char *)SENDER,
                    (char *)"--sendgrid-rate", (char *)rate, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbsendgrid_%d.log",
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
    start_with("1000");
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbsendgrid, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbsendgrid_opts, .fini = stop, .timeout = 60);

static struct it_resp send_mail(const char *headers, const char *body)
{
    return it_post(sb_port, "/sendgrid/v3/mail/send", headers, body,
                   strlen(body));
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

/* The answer's errors hold one for field (NULL: null) starting msg. */
static bool has_error(const struct it_resp *r, const char *field,
                      const char *msg)
{
    json_t *j = jbody(r);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "errors"), i, e) {
        const char *f = json_string_value(json_object_get(e, "field"));
        const char *m = json_string_value(json_object_get(e, "message"));
        bool fok = field ? f && strcmp(f, field) == 0
                         : json_is_null(json_object_get(e, "field"));
        if (fok && m && strncmp(m, msg, strlen(msg)) == 0)
            found = true;
    }
    json_decref(j);
    return found;
}

static int count(void)
{
    struct it_resp r = it_get(sb_port, "/_sandbox/records?provider=sendgrid"
                                       "&type=mails&count=1");
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

/* ---- Tests -------------------------------------------------------------- */

Test(sbsendgrid, accepted)
{
    struct it_resp r = send_mail(AUTH, GOOD);
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(r.body_len, 0, "no body");
    char v[128];
    cr_expect(strlen(hdr(&r, "X-Message-Id", v)) > 10);
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Limit", v), "1000");
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "999");
    long long reset = strtoll(hdr(&r, "X-RateLimit-Reset", v), NULL, 10);
    cr_expect(reset * 1000 > cs_now_ms() - 1000 &&
              reset * 1000 <= cs_now_ms() + 1000, "reset %lld", reset);
    r = it_get(sb_port, "/_sandbox/records?provider=sendgrid&type=mails");
    json_t *j = jbody(&r);
    json_t *m = json_array_get(json_object_get(j, "records"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(m, "custom_args"),
                         "callsync_job_id")),
                     "job1");
    cr_expect(json_string_value(json_object_get(m, "message_id")));
    json_decref(j);
}

Test(sbsendgrid, keys)
{
    struct it_resp r = send_mail(NULL, GOOD);
    cr_assert_eq(r.status, 401);
    cr_expect(has_error(&r, NULL, "The provided authorization grant is "
                                  "invalid, expired, or revoked"));
    r = send_mail("Authorization: Bearer SG.other.key\r\n", GOOD);
    cr_expect_eq(r.status, 401);
    cr_expect_eq(count(), 0);
}

Test(sbsendgrid, validation_reports_every_problem)
{
    struct it_resp r = send_mail(
        AUTH, "{\"personalizations\":[{\"to\":[{\"email\":\"nope\"}]}],"
              "\"from\":{\"name\":\"x\"},\"content\":[{\"type\":"
              "\"text/html\",\"value\":\"<p>x</p>\"},{\"type\":"
              "\"text/plain\",\"value\":\"\"}],"
              "\"custom_args\":{\"n\":1},\"headers\":{\"Subject\":\"x\"},"
              "\"categories\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\","
              "\"h\",\"i\",\"j\",\"k\"]}");
    cr_assert_eq(r.status, 400, "%.*s", (int)r.body_len, r.body);
    cr_expect(has_error(&r, "personalizations.0.to.0.email",
                        "Does not contain a valid address."));
    cr_expect(has_error(&r, "from", "The from object must be provided"));
    cr_expect(has_error(&r, "subject", "The subject is required."));
    cr_expect(has_error(&r, "content.1.type",
                        "If present, text/plain content must be first"));
    cr_expect(has_error(&r, "content.1.value",
                        "The content value must be a string at least one "
                        "character in length."));
    cr_expect(has_error(&r, "custom_args.n",
                        "Invalid type. Expected: string, given: integer."));
    cr_expect(has_error(&r, "headers.Subject", "The header 'Subject' is "
                                               "reserved"));
    cr_expect(has_error(&r, "categories", "The categories parameter"));
    json_t *j = jbody(&r);
    const char *help = json_string_value(json_object_get(
        json_array_get(json_object_get(j, "errors"), 0), "help"));
    cr_expect(help && strstr(help, "sendgrid.com/docs"), "%s", help);
    json_decref(j);

    r = send_mail(AUTH, "{\"from\":{\"email\":\"" SENDER "\"},\"subject\":"
                        "\"s\",\"content\":[{\"type\":\"text/plain\","
                        "\"value\":\"v\"}]}");
    cr_expect(has_error(&r, "personalizations",
                        "The personalizations field is required"));
    r = send_mail(AUTH, "{\"personalizations\":[{\"to\":[{\"email\":"
                        "\"a@b.co\"}]}],\"from\":{\"email\":\"" SENDER
                        "\"},\"template_id\":\"d-123\"}");
    cr_expect(has_error(&r, "template_id", "The template_id must be a "
                                           "valid GUID"));
    r = send_mail(AUTH, "not json");
    cr_expect_eq(r.status, 400);
    cr_expect_eq(count(), 0, "nothing was sent");

    /* A dynamic template needs no subject or content. */
    r = send_mail(AUTH, "{\"personalizations\":[{\"to\":[{\"email\":"
                        "\"a@b.co\"}],\"dynamic_template_data\":{\"x\":1}}],"
                        "\"from\":{\"email\":\"" SENDER "\"},\"template_id\":"
                        "\"d-13b8f94fbcae4ec6b75270d6cb59f932\"}");
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
}

Test(sbsendgrid, unverified_sender_and_sandbox_mode)
{
    struct it_resp r = send_mail(
        AUTH, "{\"personalizations\":[{\"to\":[{\"email\":\"a@b.co\"}]}],"
              "\"from\":{\"email\":\"someone@else.example\"},\"subject\":"
              "\"s\",\"content\":[{\"type\":\"text/plain\",\"value\":"
              "\"v\"}]}");
    cr_assert_eq(r.status, 403, "%.*s", (int)r.body_len, r.body);
    cr_expect(has_error(&r, "from", "The from address does not match a "
                                    "verified Sender Identity."));
    r = send_mail(AUTH, "{\"personalizations\":[{\"to\":[{\"email\":"
                        "\"a@b.co\"}]}],\"from\":{\"email\":\"" SENDER "\"},"
                        "\"subject\":\"s\",\"content\":[{\"type\":"
                        "\"text/plain\",\"value\":\"v\"}],\"mail_settings\":"
                        "{\"sandbox_mode\":{\"enable\":true}}}");
    cr_expect_eq(r.status, 200);
    cr_expect_eq(count(), 0);
}

Test(sbsendgrid_opts, rate_limit)
{
    start_with("2");
    /* Start at the beginning of a second so that three requests fall
     * into one refresh period. */
    while (cs_now_ms() % 1000 > 200)
        usleep(10000);
    cr_expect_eq(send_mail(AUTH, GOOD).status, 202);
    struct it_resp r = send_mail(AUTH, GOOD);
    cr_expect_eq(r.status, 202);
    char v[128];
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "0");
    r = send_mail(AUTH, GOOD);
    cr_assert_eq(r.status, 429);
    cr_expect(has_error(&r, NULL, "too many requests"));
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Remaining", v), "0");
    usleep(1100000);
    cr_expect_eq(send_mail(AUTH, GOOD).status, 202);
    cr_expect_eq(count(), 3);
}

Test(sbsendgrid, faults)
{
    const char *rules =
        "[{\"provider\":\"sendgrid\",\"status\":500,\"count\":1},"
        "{\"provider\":\"sendgrid\",\"hang\":true,\"process\":true,"
        "\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = send_mail(AUTH, GOOD);
    cr_assert_eq(r.status, 500);
    cr_expect(has_error(&r, NULL, "Internal Server Error"));
    char v[128];
    cr_expect_str_eq(hdr(&r, "X-RateLimit-Limit", v), "1000");
    char *text = xasprintf("POST /sendgrid/v3/mail/send HTTP/1.1\r\nHost: t"
                           "\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" AUTH "\r\n%s",
                           strlen(GOOD), GOOD);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count(), 1, "the message was accepted");
}
