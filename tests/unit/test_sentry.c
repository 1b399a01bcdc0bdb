/*
 * test_sentry.c - Sentry reports: DSN parsing, the event and envelope
 * documents as Sentry's envelope format defines them, scrubbing, and how
 * long Sentry's rate-limit answers make us wait.
 */
#include "log.h"
#include "sentry.h"

#include <criterion/criterion.h>
#include <string.h>

Test(sentry, dsn_forms)
{
    struct sentry_dsn d;
    struct cs_err err;
    cr_assert_eq(sentry_dsn_parse("https://abc123@o450.ingest.sentry.io/5501",
                                  &d, &err), 0, "%s", err.msg);
    cr_expect_str_eq(d.envelope_url,
                     "https://o450.ingest.sentry.io/api/5501/envelope/");
    cr_expect_str_eq(d.public_key, "abc123");
    cr_expect_str_eq(d.project_id, "5501");
    /* A legacy secret, a port and a path prefix (self-hosted). */
    cr_assert_eq(sentry_dsn_parse("http://pub:sec@127.0.0.1:9000/sentry/42",
                                  &d, &err), 0, "%s", err.msg);
    cr_expect_str_eq(d.envelope_url,
                     "http://127.0.0.1:9000/sentry/api/42/envelope/");
    cr_expect_str_eq(d.public_key, "pub");
    const char *bad[] = {"", "ftp://k@h/1", "https://h/1", "https://k@h",
                         "https://k@h/", "https://@h/1", "https://k@h/1 2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(sentry_dsn_parse(bad[i], &d, &err), CS_EINVAL, "'%s'",
                     bad[i]);
    char *auth = sentry_auth_header(&(struct sentry_dsn){.public_key = "k1"});
    cr_expect_str_eq(auth, "Sentry sentry_version=7, sentry_client="
                           "callsync/1.0, sentry_key=k1");
    free(auth);
}

Test(sentry, event_and_envelope)
{
    struct sentry_opts o = {"https://k@h/1", "staging", "callsync@1", "worker",
                            0};
    json_t *line = json_pack(
        "{s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s}", "ts", "2026-11-30T06:00:00Z",
        "level", "error", "svc", "worker", "pid", 42, "event",
        "secret_unreadable", "connection", "c-1", "err",
        "Authorization: Bearer sk_live_abcdef123456", "refresh_token",
        "1//0gabc");
    const char *id = "0123456789abcdef0123456789abcdef";
    json_t *e = sentry_event(&o, id, LOG_ERROR, "secret_unreadable", line,
                             1796000000000);
    cr_expect_str_eq(json_string_value(json_object_get(e, "event_id")), id);
    cr_expect_str_eq(json_string_value(json_object_get(e, "level")), "error");
    cr_expect_str_eq(json_string_value(json_object_get(e, "environment")),
                     "staging");
    cr_expect_str_eq(json_string_value(json_object_get(e, "release")),
                     "callsync@1");
    json_t *tags = json_object_get(e, "tags");
    cr_expect_str_eq(json_string_value(json_object_get(tags, "service")),
                     "worker");
    cr_expect_str_eq(json_string_value(json_object_get(tags, "event")),
                     "secret_unreadable");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(e, "logentry"), "formatted")),
                     "secret_unreadable");
    json_t *extra = json_object_get(e, "extra");
    cr_expect_str_eq(json_string_value(json_object_get(extra, "connection")),
                     "c-1");
    cr_expect_null(json_object_get(extra, "ts"), "log plumbing left out");
    char *all = json_dumps(e, JSON_COMPACT);
    cr_expect_null(strstr(all, "sk_live_abcdef123456"), "%s", all);
    cr_expect_null(strstr(all, "1//0gabc"), "%s", all);
    free(all);

    struct sentry_dsn d;
    struct cs_err err;
    cr_assert_eq(sentry_dsn_parse("https://k@h/1", &d, &err), 0);
    size_t len;
    char *env = sentry_envelope(&d, id, e, 1796000000000, &len);
    cr_expect_eq(strlen(env), len);
    /* header \n item header \n payload \n */
    char *nl1 = strchr(env, '\n');
    cr_assert(nl1);
    json_t *h = json_loadb(env, (size_t)(nl1 - env), 0, NULL);
    cr_assert(h);
    cr_expect_str_eq(json_string_value(json_object_get(h, "event_id")), id);
    cr_expect_str_eq(json_string_value(json_object_get(h, "dsn")),
                     "https://k@h/1");
    json_decref(h);
    char *nl2 = strchr(nl1 + 1, '\n');
    cr_assert(nl2);
    json_t *ih = json_loadb(nl1 + 1, (size_t)(nl2 - nl1 - 1), 0, NULL);
    cr_assert(ih);
    cr_expect_str_eq(json_string_value(json_object_get(ih, "type")), "event");
    size_t plen = (size_t)json_integer_value(json_object_get(ih, "length"));
    json_decref(ih);
    cr_expect_eq(plen + 1, len - (size_t)(nl2 + 1 - env),
                 "length counts the payload's bytes");
    json_t *back = json_loadb(nl2 + 1, plen, 0, NULL);
    cr_expect(json_equal(back, e));
    json_decref(back);
    free(env);
    json_decref(e);
    json_decref(line);
}

Test(sentry, backoff_from_answers)
{
    cr_expect_eq(sentry_backoff_ms(200, NULL, NULL), 0);
    cr_expect_eq(sentry_backoff_ms(429, NULL, NULL), 60000);
    cr_expect_eq(sentry_backoff_ms(429, "17", NULL), 17000);
    cr_expect_eq(sentry_backoff_ms(200, NULL, "60:error:org"), 60000);
    cr_expect_eq(sentry_backoff_ms(429, NULL,
                                   "60:transaction:key, 2700:default;error:"
                                   "organization"),
                 2700000, "the longest entry covering errors");
    cr_expect_eq(sentry_backoff_ms(200, NULL, "60:transaction:key"), 0,
                 "transactions are not ours");
    cr_expect_eq(sentry_backoff_ms(429, NULL, "30::organization"), 30000,
                 "no categories: all of them");
}

/* The reporter itself: every error line is offered to it, and one event
 * name gets SENTRY_BURST reports a minute; lines below error none. The
 * DSN points at a closed port, so sending fails fast and is counted. */
Test(sentry, burst_per_event_name_and_levels)
{
    log_init("test", "error");
    struct sentry_opts o = {"http://k@127.0.0.1:9/1", NULL, NULL, "test", 500};
    struct cs_err err;
    cr_assert_eq(sentry_start(&o, &err), 0, "%s", err.msg);
    for (int i = 0; i < 30; i++)
        log_error("same_failure", LOG_I("i", i));
    log_error("another_failure");
    log_warn("only_a_warning");
    sentry_stop(3000);
    struct sentry_stats st;
    sentry_get_stats(&st);
    cr_expect_eq(st.suppressed, 20, "suppressed %llu",
                 (unsigned long long)st.suppressed);
    cr_expect_eq(st.sent + st.failed + st.dropped, SENTRY_BURST + 1,
                 "sent %llu failed %llu dropped %llu",
                 (unsigned long long)st.sent, (unsigned long long)st.failed,
                 (unsigned long long)st.dropped);
    cr_expect_eq(st.sent, 0);
}

Test(sentry, no_dsn_is_no_reporter)
{
    struct sentry_opts o = {"", NULL, NULL, "test", 0};
    struct cs_err err;
    cr_expect_eq(sentry_start(&o, &err), 0);
    sentry_stop(0);
    struct sentry_opts bad = {"https://nokey.example/1", NULL, NULL, "t", 0};
    cr_expect_eq(sentry_start(&bad, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "public key"), "%s", err.msg);
}
