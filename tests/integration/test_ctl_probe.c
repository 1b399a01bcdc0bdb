/*
 * test_ctl_probe.c - `callsyncctl connections test` against the sandbox:
 * for every provider with a probe, a connection that works answers ok
 * with what the provider said (portal, sub-account, company, org,
 * account, calendar and its time zone, scopes...); a revoked token is
 * refused as unauthorized and never shown; only GETs reach the sandbox
 * and it holds no record afterwards; a provider without a read-only call
 * exits 4 saying why; the connection row is unchanged.
 */
#include "e2e_support.h"

/* The calendars' sandbox takes any token unless given some. */
#define CALENDLY_TOKEN "calendly-probe-token"
#define CALCOM_TOKEN "cal_live_probe0000000000000000"
#define GCAL_TOKEN "ya29.probe-google-token"
#define OUTLOOK_TOKEN "eyJ0eXAiOiJKV1QiLCJub25jZSI6InByb2JlIn0.probe"

static void setup(void)
{
    static const char *const extra[] = {
        "--calendly-token", CALENDLY_TOKEN, "--cal-com-token", CALCOM_TOKEN,
        "--google-calendar-token", GCAL_TOKEN, "--outlook-token",
        OUTLOOK_TOKEN};
    for (size_t i = 0; i < CS_ARRAY_LEN(extra); i++)
        sandbox_args_extra[i] = extra[i];
    e2e_setup("probe", 0);
}

TestSuite(probe, .init = setup, .fini = e2e_teardown, .timeout = 60);

static int test_conn(const char *id, const char *extra, char **out)
{
    char *args = xasprintf("connections test %s %s", id, extra);
    int st = ctl_run_out(args, out);
    free(args);
    return st;
}

/* The sandbox saw at least one request for provider, and only GETs. */
static void only_reads(const char *provider)
{
    char path[96];
    snprintf(path, sizeof(path), "/_sandbox/requests?provider=%s", provider);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *reqs = json_object_get(j, "requests");
    cr_expect_gt(json_array_size(reqs), 0, "no %s request seen", provider);
    size_t i;
    json_t *q;
    json_array_foreach(reqs, i, q) {
        cr_expect_str_eq(json_string_value(json_object_get(q, "method")),
                         "GET", "%s: %s", provider,
                         json_string_value(json_object_get(q, "path")));
    }
    json_decref(j);
}

/* Run `connections test` on a good connection with --json: exit 0, ok,
 * and the result object (to json_decref). */
static json_t *probe_ok(const char *id)
{
    char *out = NULL;
    cr_expect_eq(test_conn(id, "--json", &out), 0, "%s", out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "%s", out);
    cr_expect(json_is_true(json_object_get(j, "ok")), "%s", out);
    json_t *res = json_incref(json_object_get(j, "result"));
    cr_assert(json_is_object(res), "%s", out);
    free(out);
    json_decref(j);
    return res;
}

/* A connection with a bad secret: exit 1, unauthorized, secret not shown. */
static void probe_unauthorized(const char *id, const char *secret)
{
    char *out = NULL;
    cr_expect_eq(test_conn(id, "", &out), 1, "%s", out);
    cr_expect(strstr(out, "FAILED (unauthorized, HTTP 401)"), "%s", out);
    cr_expect(!strstr(out, secret), "the secret is never shown: %s", out);
    free(out);
}

static const char *res_str(const json_t *res, const char *key)
{
    const char *s = json_string_value(json_object_get(res, key));
    cr_assert(s, "no %s in the result", key);
    return s;
}

Test(probe, stripe_names_the_account)
{
    char *good = add_conn("stripe", STRIPE_KEY, NULL, "{}");
    char *bad = add_conn("stripe", "sk_test_revoked000000000000000001", NULL,
                         "{}");
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "account_id"), "acct_sandbox");
    cr_expect_str_eq(res_str(res, "name"), "Acme Roofing");
    cr_expect_str_eq(res_str(res, "default_currency"), "usd");
    cr_expect(json_is_true(json_object_get(res, "customers_readable")));
    json_decref(res);
    probe_unauthorized(bad, "sk_test_revoked000000000000000001");
    only_reads("stripe");
    cr_expect_eq(records("stripe", "customers"), 0);
    free(good);
    free(bad);
}

Test(probe, twilio_names_the_account)
{
    char *good = add_conn("twilio", TWILIO_TOKEN, NULL,
                          "{\"account_sid\":\"" TWILIO_SID "\","
                          "\"from\":\"+15017122661\"}");
    char *bad = add_conn("twilio", "twilio-wrong-token", NULL,
                         "{\"account_sid\":\"" TWILIO_SID "\","
                         "\"from\":\"+15017122661\"}");
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "account_sid"), TWILIO_SID);
    cr_expect_str_eq(res_str(res, "status"), "active");
    cr_expect_str_eq(res_str(res, "friendly_name"), "Acme Roofing");
    json_decref(res);
    probe_unauthorized(bad, "twilio-wrong-token");
    only_reads("twilio");
    cr_expect_eq(records("twilio", "messages"), 0);
    free(good);
    free(bad);
}

Test(probe, sendgrid_checks_mail_send)
{
    const char *cfg = "{\"from_email\":\"desk@acme.example\"}";
    char *good = add_conn("sendgrid", SENDGRID_KEY, NULL, cfg);
    char *bad = add_conn("sendgrid", "SG.revoked.key", NULL, cfg);
    json_t *res = probe_ok(good);
    cr_expect(json_is_true(json_object_get(res, "mail_send")));
    cr_expect_str_eq(res_str(res, "from_email"), "desk@acme.example");
    json_decref(res);
    probe_unauthorized(bad, "SG.revoked.key");
    only_reads("sendgrid");
    cr_expect_eq(records("sendgrid", "mails"), 0);
    free(good);
    free(bad);
}

Test(probe, pipedrive_names_the_company)
{
    const char *cfg = "{\"company_domain\":\"acme\"}";
    char *good = add_conn("pipedrive", PD_TOKEN, NULL, cfg);
    char *bad = add_conn("pipedrive", "pd-revoked-token", NULL, cfg);
    json_t *res = probe_ok(good);
    cr_expect_eq(json_integer_value(json_object_get(res, "company_id")),
                 5566);
    cr_expect_str_eq(res_str(res, "company_name"), "Acme Roofing");
    cr_expect_str_eq(res_str(res, "company_domain"), "acme");
    json_decref(res);
    probe_unauthorized(bad, "pd-revoked-token");
    only_reads("pipedrive");
    cr_expect_eq(records("pipedrive", "persons"), 0);
    free(good);
    free(bad);
}

Test(probe, zoho_reads_the_module_and_names_the_org)
{
    char *good = add_conn("zoho", ZOHO_TOKEN, NULL,
                          "{\"module\":\"Contacts\"}");
    char *bad = add_conn("zoho", "1000.zoho-revoked", NULL, "{}");
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "module"), "Contacts");
    cr_expect(json_is_true(json_object_get(res, "records_readable")));
    cr_expect_str_eq(res_str(res, "org_id"), "4150868000000225013");
    cr_expect_str_eq(res_str(res, "company_name"), "Acme Roofing");
    json_decref(res);
    probe_unauthorized(bad, "1000.zoho-revoked");
    only_reads("zoho");
    cr_expect_eq(records("zoho", "leads"), 0);
    cr_expect_eq(records("zoho", "contacts"), 0);
    free(good);
    free(bad);
}

Test(probe, calendly_names_the_user_and_event_type)
{
    const char *cfg = "{\"event_type_uri\":\"https://api.calendly.com/"
                      "event_types/ETSANDBOX0000001\"}";
    char *good = add_conn("calendly", CALENDLY_TOKEN, NULL, cfg);
    char *bad = add_conn("calendly", "calendly-revoked", NULL, cfg);
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "user_uri"),
                     "https://api.calendly.com/users/SBUSER000000001");
    cr_expect_str_eq(res_str(res, "event_type_uri"),
                     "https://api.calendly.com/event_types/"
                     "ETSANDBOX0000001");
    cr_expect_str_eq(res_str(res, "event_type"), "Roof inspection");
    json_decref(res);
    probe_unauthorized(bad, "calendly-revoked");
    only_reads("calendly");
    cr_expect_eq(records("calendly", "events"), 0);
    free(good);
    free(bad);
}

Test(probe, cal_com_names_the_user)
{
    const char *cfg = "{\"event_type_id\":1001}";
    char *good = add_conn("cal_com", CALCOM_TOKEN, NULL, cfg);
    char *bad = add_conn("cal_com", "cal_live_revoked", NULL, cfg);
    json_t *res = probe_ok(good);
    cr_expect_eq(json_integer_value(json_object_get(res, "user_id")), 4201);
    cr_expect_str_eq(res_str(res, "time_zone"), "America/Chicago");
    json_decref(res);
    probe_unauthorized(bad, "cal_live_revoked");
    only_reads("cal_com");
    cr_expect_eq(records("cal_com", "bookings"), 0);
    free(good);
    free(bad);
}

Test(probe, google_calendar_gives_the_time_zone)
{
    char *good = add_conn("google_calendar", GCAL_TOKEN, NULL,
                          "{\"calendar_id\":\"primary\"}");
    char *bad = add_conn("google_calendar", "ya29.revoked", NULL, "{}");
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "calendar_id"), "host@example.com");
    cr_expect_str_eq(res_str(res, "time_zone"), "America/Chicago");
    json_decref(res);
    probe_unauthorized(bad, "ya29.revoked");
    only_reads("google_calendar");
    cr_expect_eq(records("google_calendar", "events"), 0);
    free(good);
    free(bad);
}

Test(probe, outlook_checks_the_calendar_is_editable)
{
    char *good = add_conn("outlook", OUTLOOK_TOKEN, NULL, "{}");
    char *bad = add_conn("outlook", "eyJ.revoked", NULL, "{}");
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "name"), "Calendar");
    cr_expect_str_eq(res_str(res, "owner"), "host@example.com");
    cr_expect(json_is_true(json_object_get(res, "can_edit")));
    json_decref(res);
    probe_unauthorized(bad, "eyJ.revoked");
    only_reads("outlook");
    cr_expect_eq(records("outlook", "events"), 0);
    free(good);
    free(bad);
}

static char *sf_conn(const char *token)
{
    return ctl_add_conn("--type salesforce --access-token-env CS_E2E_SECRET "
                        "--instance-url https://acme-probe.my.salesforce.com "
                        "--config '{\"object\":\"Lead\"}'",
                        token);
}

Test(probe, salesforce_reads_the_object)
{
    char *good = sf_conn(SF_TOKEN);
    char *bad = sf_conn("00D5g000004E2E0!AQ4AQRevoked");
    json_t *res = probe_ok(good);
    cr_expect_str_eq(res_str(res, "object"), "Lead");
    cr_expect(json_is_true(json_object_get(res, "readable")));
    cr_expect_str_eq(res_str(res, "api_version"), "66.0");
    cr_expect(strstr(res_str(res, "limit_info"), "api-usage="));
    json_decref(res);
    probe_unauthorized(bad, "00D5g000004E2E0!AQ4AQRevoked");
    only_reads("salesforce");
    cr_expect_eq(records("salesforce", "leads"), 0);
    free(good);
    free(bad);
}

Test(probe, hubspot_ok_then_refused_with_a_revoked_token)
{
    char *good = add_conn("hubspot", HUBSPOT_TOKEN, NULL, "{}");
    char *bad = add_conn("hubspot", "pat-na1-revoked", NULL, "{}");
    char *out = NULL;
    cr_expect_eq(test_conn(good, "--json", &out), 0, "%s", out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "%s", out);
    cr_expect(json_is_true(json_object_get(j, "ok")));
    json_t *res = json_object_get(j, "result");
    cr_expect_eq(json_integer_value(json_object_get(res, "portal_id")), 62515);
    cr_expect(json_is_true(json_object_get(res, "contacts_readable")));
    json_decref(j);
    free(out);

    cr_expect_eq(test_conn(bad, "", &out), 1, "%s", out);
    cr_expect(strstr(out, "FAILED (unauthorized, HTTP 401)"), "%s", out);
    cr_expect(!strstr(out, "pat-na1-revoked"), "the token is never shown");
    free(out);

    /* Read-only: the sandbox holds no record, and the row is as it was. */
    cr_expect_eq(records("hubspot", "contacts"), 0);
    const char *p[] = {bad};
    char *st = it_sql(&db, "SELECT connection_status FROM "
                           "integration_connections WHERE id = $1",
                      1, p);
    cr_expect_str_eq(st, "connected");
    free(st);
    free(good);
    free(bad);
}

Test(probe, gohighlevel_names_the_sub_account)
{
    char *c = add_conn("gohighlevel", GHL_TOKEN, NULL,
                       "{\"location_id\":\"ve9EPM428h8vShlRW1KT\"}");
    char *none = add_conn("gohighlevel", GHL_TOKEN, NULL, "{}");
    char *out = NULL;
    cr_expect_eq(test_conn(c, "", &out), 0, "%s", out);
    cr_expect(strstr(out, "gohighlevel connection"), "%s", out);
    cr_expect(strstr(out, "\"location_id\":\"ve9EPM428h8vShlRW1KT\""), "%s",
              out);
    free(out);
    cr_expect_eq(test_conn(none, "", &out), 1, "%s", out);
    cr_expect(strstr(out, "location_id is not set"), "%s", out);
    free(out);
    free(c);
    free(none);
}

Test(probe, untestable_unknown_and_bad_ids)
{
    char *z = add_conn("zapier", NULL,
                       "https://hooks.zapier.com/hooks/catch/1/abc/", "{}");
    char *out = NULL;
    cr_expect_eq(test_conn(z, "", &out), 4, "%s", out);
    cr_expect(strstr(out, "runs the Zap"), "%s", out);
    free(out);
    cr_expect_eq(test_conn("00000000-0000-4000-8000-000000000000", "", NULL),
                 3);
    cr_expect_eq(test_conn("nope", "", NULL), 2);
    cr_expect_eq(records("zapier", "hooks"), 0);
    free(z);
}
