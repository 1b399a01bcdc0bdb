/*
 * test_sentry_report.c - a real worker reports its errors to Sentry (the
 * sandbox's envelope endpoint): a connection whose token was sealed with a
 * key the fleet no longer has makes the worker log secret_unreadable; the
 * event arrives with the service and event as tags, the connection in its
 * extra data, and no secret anywhere; the worker's work goes on.
 */
#include "e2e_support.h"

#define SENTRY_KEY "e2ekey0123"

static void setup(void)
{
    e2e_setup("sentry", 0);
    start_ingest();
}

TestSuite(sentry_report, .init = setup, .fini = e2e_teardown,
          .timeout = 90);

static bool one_event(void)
{
    return records("sentry", "events") >= 1;
}

Test(sentry_report, worker_error_reaches_sentry_scrubbed)
{
    /* A token sealed with a key the fleet does not hold. */
    unsigned char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(255 - i);
    char *b64 = cs_base64_encode(raw, sizeof(raw));
    char *other = xasprintf("old:%s", b64);
    free(b64);
    struct cs_err err = {0};
    struct cs_keyring *okr = cs_keyring_new(other, &err);
    cr_assert(okr, "%s", err.msg);
    const char *token = "pat-na1-sealed-with-a-retired-key";
    char *sealed = cs_seal(okr, token, strlen(token));
    const char *p[] = {agent, org, sealed};
    char *conn = it_sql(&db,
                        "INSERT INTO integration_connections (agent_id, "
                        "organization_id, integration_type, auth_type, "
                        "api_key) VALUES ($1, $2, 'hubspot', 'api_key', $3) "
                        "RETURNING id::text",
                        3, p);
    free(sealed);
    cs_keyring_free(okr);
    free(other);

    char dsn[160];
    snprintf(dsn, sizeof(dsn),
             "CALLSYNC_SENTRY_DSN=http://" SENTRY_KEY "@127.0.0.1:%d/sentry/7",
             sandbox_port);
    worker_env_extra[0] = dsn;
    worker_env_extra[1] = "CALLSYNC_SENTRY_ENVIRONMENT=test";
    start_worker(16);
    post_calls(0, 1);
    wait_until(one_event, 30000, "a Sentry event");

    struct it_resp r = it_get(sandbox_port,
                              "/_sandbox/records?provider=sentry&type=events");
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *e = json_array_get(json_object_get(j, "records"), 0);
    cr_assert(e, "%.*s", (int)r.body_len, r.body);
    json_t *tags = json_object_get(e, "tags");
    cr_expect_str_eq(json_string_value(json_object_get(tags, "service")),
                     "worker");
    cr_expect_str_eq(json_string_value(json_object_get(tags, "event")),
                     "secret_unreadable");
    cr_expect_str_eq(json_string_value(json_object_get(e, "environment")),
                     "test");
    cr_expect_str_eq(json_string_value(json_object_get(e, "level")), "error");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(e, "extra"), "connection")),
                     conn);
    cr_expect(!memmem(r.body, r.body_len, "pat-na1-sealed", 14),
              "no secret in the report");
    json_decref(j);

    /* The job itself still ends: no credentials is a permanent error. */
    for (int i = 0; i < 300 && dead_count() < 1; i++)
        usleep(20000);
    cr_expect_eq(dead_count(), 1);
    free(conn);
}
