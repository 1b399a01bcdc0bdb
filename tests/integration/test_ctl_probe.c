/*
 * test_ctl_probe.c - `callsyncctl connections test` against the sandbox:
 * HubSpot and GoHighLevel connections that work answer ok with what the
 * provider said (portal, sub-account); a revoked token is refused as
 * unauthorized; a provider without a read-only call exits 4 saying why;
 * nothing is written at the provider, and the connection row is unchanged.
 */
#include "e2e_support.h"

static void setup(void)
{
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
