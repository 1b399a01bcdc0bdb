/*
 * test_sandbox_twilio.c - the Twilio part of the built callsync-sandbox:
 * HTTP Basic (Account SID or API key), the Messages.json create with
 * Twilio's validation codes (21602, 21603, 21604, 21211, 21212, 21617,
 * 21655, 21656, 21910), the message's progress from queued to sent, the
 * list with its filters (To, From, DateSent) and pages, the rate limit
 * (20429), fault rules (a hang that sends the message first) and the
 * /_sandbox records. Needs neither Redis nor PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define AC "AC0123456789abcdef0123456789abcdef"
#define AC2 "ACffffffffffffffffffffffffffffffff"
#define SK "SK0123456789abcdef0123456789abcdef"
#define TOKEN "twilio-auth-token"
#define MSGS "/2010-04-01/Accounts/" AC "/Messages.json"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];
static char auth[160];

static void start_with(const char *rate, const char *delay)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[] = {(char *)SANDBOX, (char *)"--port", port,
                    (char *)"--twilio-auth", (char *)AC ":" TOKEN,
                    (char *)"--twilio-auth", (char *)SK ":key-secret",
                    (char *)"--twilio-rate", (char *)rate,
                    (char *)"--twilio-send-delay-ms", (char *)delay, NULL};
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbtwilio_%d.log",
             (int)getpid());
    unlink(sb_log);
    sb_pid = it_spawn(argv, NULL, sb_log);
    char *b64 = cs_base64_encode((const unsigned char *)AC ":" TOKEN,
                                 strlen(AC ":" TOKEN));
    snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", b64);
    free(b64);
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

TestSuite(sbtwilio, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbtwilio_opts, .fini = stop, .timeout = 60);

static struct it_resp req(const char *method, const char *path,
                          const char *headers, const char *body)
{
    char *text = xasprintf("%s /twilio%s HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/x-www-form-urlencoded"
                           "\r\nContent-Length: %zu\r\n%s\r\n%s",
                           method, path, body ? strlen(body) : 0,
                           headers ? headers : "", body ? body : "");
    struct it_resp r;
    bool ok = it_raw(sb_port, text, strlen(text), &r);
    free(text);
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

static void expect_error(const struct it_resp *r, int status, int code,
                         const char *msg)
{
    cr_assert_eq(r->status, status, "%d: %.*s", r->status, (int)r->body_len,
                 r->body);
    json_t *j = jbody(r);
    cr_expect_eq(json_integer_value(json_object_get(j, "code")), code,
                 "%.*s", (int)r->body_len, r->body);
    cr_expect_eq(json_integer_value(json_object_get(j, "status")), status);
    const char *m = json_string_value(json_object_get(j, "message"));
    cr_expect(m && strncmp(m, msg, strlen(msg)) == 0, "message '%s'", m);
    char more[80];
    snprintf(more, sizeof(more), "https://www.twilio.com/docs/errors/%d",
             code);
    cr_expect_str_eq(json_string_value(json_object_get(j, "more_info")),
                     more);
    json_decref(j);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int count(void)
{
    struct it_resp r = it_get(sb_port, "/_sandbox/records?provider=twilio"
                                       "&type=messages&count=1");
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

static json_t *send_sms(const char *to, const char *body)
{
    char *form = xasprintf("To=%s&From=%%2B15017122661&Body=%s", to, body);
    struct it_resp r = req("POST", MSGS, auth, form);
    free(form);
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    return jbody(&r);
}

/* ---- Tests -------------------------------------------------------------- */

Test(sbtwilio, auth)
{
    struct it_resp r = req("POST", MSGS, NULL, "To=%2B14155550123");
    expect_error(&r, 401, 20003, "Authenticate");
    char *b64 = cs_base64_encode((const unsigned char *)AC ":wrong", 40);
    char *h = xasprintf("Authorization: Basic %s\r\n", b64);
    r = req("POST", MSGS, h, "To=%2B14155550123");
    expect_error(&r, 401, 20003, "Authenticate");
    free(h);
    free(b64);
    /* An API key may act for the account. */
    b64 = cs_base64_encode((const unsigned char *)SK ":key-secret", 45);
    h = xasprintf("Authorization: Basic %s\r\n", b64);
    r = req("GET", MSGS, h, NULL);
    cr_expect_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    free(h);
    free(b64);
    /* The account's SID must be the path's. */
    r = req("GET", "/2010-04-01/Accounts/" AC2 "/Messages.json", auth, NULL);
    expect_error(&r, 401, 20003, "Authenticate");
    r = req("GET", "/2010-04-01/Accounts/" AC "/Calls.json", auth, NULL);
    expect_error(&r, 404, 20404, "The requested resource");
}

Test(sbtwilio, create_validation)
{
    struct {
        const char *form;
        int code;
        const char *msg;
    } cases[] = {
        {"From=%2B15017122661&Body=x", 21604, "A 'To' phone number"},
        {"To=%2B14155550123&Body=x", 21603, "A 'From' phone number"},
        {"To=%2B14155550123&From=%2B15017122661", 21602,
         "Message body is required."},
        {"To=4155550123&From=%2B15017122661&Body=x", 21211,
         "The 'To' number 4155550123 is not a valid phone number."},
        {"To=%2B14155550123&From=abc&Body=x", 21212, "The 'From' number"},
        {"To=whatsapp%3A%2B14155550123&From=%2B15017122661&Body=x", 21910,
         "Invalid From and To pair."},
        {"To=%2B14155550123&MessagingServiceSid=MG1&Body=x", 21701,
         "The Messaging Service Sid"},
        {"To=%2B14155550123&From=%2B15017122661&ContentSid=HX1", 21655,
         "The ContentSid is Invalid."},
        {"To=%2B14155550123&From=%2B15017122661&ContentSid="
         "HX0123456789abcdef0123456789abcdef&ContentVariables=%5B1%5D",
         21656, "The ContentVariables Parameter is invalid."},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct it_resp r = req("POST", MSGS, auth, cases[i].form);
        expect_error(&r, 400, cases[i].code, cases[i].msg);
    }
    /* 1601 characters. */
    struct buf b;
    buf_init(&b, 8192);
    int rc = buf_adds(&b, "To=%2B14155550123&From=%2B15017122661&Body=");
    for (int i = 0; i < 1601 && !rc; i++)
        rc = buf_adds(&b, "a");
    cr_assert_eq(rc, 0);
    struct it_resp r = req("POST", MSGS, auth, b.data);
    expect_error(&r, 400, 21617, "The concatenated message body exceeds");
    buf_release(&b);
    cr_expect_eq(count(), 0, "nothing was sent");
}

Test(sbtwilio, create_and_list)
{
    json_t *m = send_sms("%2B14155550123", "Hi+Marcus.+Ref%3A+1a2b3c4d");
    cr_expect(strncmp(jstr(m, "sid"), "SM", 2) == 0);
    cr_expect_eq(strlen(jstr(m, "sid")), 34);
    cr_expect_str_eq(jstr(m, "status"), "queued");
    cr_expect_str_eq(jstr(m, "body"), "Hi Marcus. Ref: 1a2b3c4d");
    cr_expect_str_eq(jstr(m, "to"), "+14155550123");
    cr_expect_str_eq(jstr(m, "from"), "+15017122661");
    cr_expect_str_eq(jstr(m, "direction"), "outbound-api");
    cr_expect_str_eq(jstr(m, "account_sid"), AC);
    cr_expect(json_is_null(json_object_get(m, "date_sent")));
    json_decref(m);
    for (int i = 0; i < 3; i++)
        json_decref(send_sms("%2B14155550999", "other"));
    /* Filtered by To, newest first: ours only. */
    struct it_resp r = req("GET", MSGS "?To=%2B14155550123&From="
                                       "%2B15017122661",
                           auth, NULL);
    cr_assert_eq(r.status, 200);
    json_t *l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "messages")), 1);
    cr_expect_str_eq(jstr(json_array_get(json_object_get(l, "messages"), 0),
                          "status"),
                     "sent", "the send delay is 0");
    cr_expect(json_is_null(json_object_get(l, "next_page_uri")));
    cr_expect_eq(json_integer_value(json_object_get(l, "page_size")), 50);
    json_decref(l);
    /* Pages of 2 over the other number's 3 messages. */
    r = req("GET", MSGS "?To=%2B14155550999&PageSize=2", auth, NULL);
    l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "messages")), 2);
    const char *next = jstr(l, "next_page_uri");
    cr_assert(next && strncmp(next, "/2010-04-01/Accounts/" AC, 55) == 0,
              "%s", next);
    r = req("GET", next, auth, NULL);
    json_decref(l);
    l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "messages")), 1);
    cr_expect(json_is_null(json_object_get(l, "next_page_uri")));
    json_decref(l);
    r = req("GET", MSGS "?PageSize=0", auth, NULL);
    cr_expect_eq(r.status, 400);
}

Test(sbtwilio_opts, queued_messages_have_no_date_sent)
{
    start_with("1000", "60000");
    json_decref(send_sms("%2B14155550123", "Ref+1a2b3c4d"));
    /* Still queued: listed without a DateSent filter, missed with one. */
    struct it_resp r = req("GET", MSGS "?To=%2B14155550123", auth, NULL);
    json_t *l = jbody(&r);
    json_t *m = json_array_get(json_object_get(l, "messages"), 0);
    cr_expect_str_eq(jstr(m, "status"), "queued");
    cr_expect(json_is_null(json_object_get(m, "date_sent")));
    json_decref(l);
    r = req("GET", MSGS "?To=%2B14155550123&DateSent%3E=2000-01-01", auth,
            NULL);
    l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "messages")), 0);
    json_decref(l);
}

Test(sbtwilio, date_sent_filters)
{
    json_decref(send_sms("%2B14155550123", "x"));
    struct it_resp r = req("GET", MSGS "?DateSent%3E=2000-01-01", auth, NULL);
    json_t *l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "messages")), 1);
    json_decref(l);
    r = req("GET", MSGS "?DateSent%3C=2000-01-01", auth, NULL);
    l = jbody(&r);
    cr_expect_eq(json_array_size(json_object_get(l, "messages")), 0);
    json_decref(l);
}

Test(sbtwilio, whatsapp_service_and_content)
{
    struct it_resp r = req(
        "POST", MSGS, auth,
        "To=whatsapp%3A%2B14155550123&From=whatsapp%3A%2B14155238886&"
        "ContentSid=HX0123456789abcdef0123456789abcdef&ContentVariables="
        "%7B%221%22%3A%22Marcus%22%2C%222%22%3A%221a2b3c4d%22%7D");
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    json_t *m = jbody(&r);
    cr_expect_str_eq(jstr(m, "to"), "whatsapp:+14155550123");
    cr_expect(strstr(jstr(m, "body"), "1a2b3c4d"), "%s", jstr(m, "body"));
    json_decref(m);
    r = req("POST", MSGS, auth,
            "To=%2B14155550123&MessagingServiceSid="
            "MG0123456789abcdef0123456789abcdef&Body=x");
    cr_assert_eq(r.status, 201, "%.*s", (int)r.body_len, r.body);
    m = jbody(&r);
    cr_expect_str_eq(jstr(m, "status"), "accepted");
    cr_expect_str_eq(jstr(m, "messaging_service_sid"),
                     "MG0123456789abcdef0123456789abcdef");
    json_decref(m);
}

Test(sbtwilio_opts, rate_limit)
{
    start_with("2", "0");
    for (int i = 0; i < 2; i++)
        cr_expect_eq(req("GET", MSGS, auth, NULL).status, 200);
    struct it_resp r = req("GET", MSGS, auth, NULL);
    expect_error(&r, 429, 20429, "Too Many Requests");
    usleep(1100000);
    cr_expect_eq(req("GET", MSGS, auth, NULL).status, 200);
}

Test(sbtwilio, faults)
{
    const char *rules =
        "[{\"provider\":\"twilio\",\"method\":\"GET\",\"status\":503,"
        "\"count\":1},"
        "{\"provider\":\"twilio\",\"method\":\"POST\",\"hang\":true,"
        "\"process\":true,\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = req("GET", MSGS, auth, NULL);
    expect_error(&r, 503, 20500, "Internal Server Error");
    const char *body = "To=%2B14155550123&From=%2B15017122661&Body=Ref+1";
    char *text = xasprintf("POST /twilio" MSGS " HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/x-www-form-urlencoded"
                           "\r\nContent-Length: %zu\r\n%s\r\n%s",
                           strlen(body), auth, body);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    free(text);
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    cr_expect_eq(count(), 1, "the message was sent");
}
