/*
 * test_schema.c - the migrations and the schema they build: idempotent and
 * concurrent runs, the monitoring queries of seeds 000 and 002 on known
 * data, row-level security, the sealed-secret checks and the indexes.
 */
#include "support_pg.h"

#include <pthread.h>
#include <sys/stat.h>

static struct tpg db;

static void setup(void)
{
    tpg_setup(&db, "schema", true);
}

static void setup_empty(void)
{
    tpg_setup(&db, "schema", false);
}

static void teardown(void)
{
    tpg_teardown(&db);
}

#define ORG_A "00000000-0000-4000-8000-00000000000a"
#define ORG_B "00000000-0000-4000-8000-00000000000b"
#define AGENT_A "00000000-0000-4000-8000-0000000000a1"
#define AGENT_B "00000000-0000-4000-8000-0000000000b1"
#define CONN_H "00000000-0000-4000-8000-000000000c01"
#define CONN_Z "00000000-0000-4000-8000-000000000c02"
#define CONN_G "00000000-0000-4000-8000-000000000c03"

/* Two organisations, an agent each; agent A has HubSpot and Zapier, agent
 * B GoHighLevel; sync logs spread over the last eight days. */
static void insert_fixture(void)
{
    tpg_exec(&db,
             "INSERT INTO organizations (id, name) VALUES "
             " ('" ORG_A "', 'Acme Roofing'), ('" ORG_B "', 'Best Plumbing');"
             "INSERT INTO agents (id, organization_id, name, retell_agent_id)"
             " VALUES ('" AGENT_A "', '" ORG_A "', 'front desk', 'ag_a'),"
             "        ('" AGENT_B "', '" ORG_B "', 'dispatch', 'ag_b');"
             "INSERT INTO integration_connections (id, agent_id,"
             " integration_type, auth_type, api_key) VALUES"
             " ('" CONN_H "', '" AGENT_A "', 'hubspot', 'oauth', NULL),"
             " ('" CONN_Z "', '" AGENT_A "', 'zapier', 'webhook', NULL),"
             " ('" CONN_G "', '" AGENT_B "', 'gohighlevel', 'api_key',"
             "  'v1:k:AAAA');"
             "INSERT INTO calls (id, agent_id, customer_phone, call_outcome)"
             " VALUES ('call_1', '" AGENT_A "', '+15550001111',"
             "         'appointment_booked'),"
             "        ('call_2', '" AGENT_B "', '+15550002222', 'message');"
             "INSERT INTO integration_sync_logs (integration_connection_id,"
             " call_id, operation_type, status, error_message, created_at)"
             " VALUES"
             " ('" CONN_H "', 'call_1', 'contact', 'success', NULL,"
             "  now() - interval '1 hour'),"
             " ('" CONN_H "', 'call_1', 'note', 'failed', 'rate limited',"
             "  now() - interval '30 minutes'),"
             " ('" CONN_H "', 'call_x', 'contact', 'success', NULL,"
             "  now() - interval '3 days'),"
             " ('" CONN_Z "', 'call_1', 'webhook', 'failed', 'timeout',"
             "  now() - interval '2 days'),"
             " ('" CONN_Z "', 'call_1', 'webhook', 'success', NULL,"
             "  now() - interval '10 minutes'),"
             " ('" CONN_G "', 'call_2', 'contact', 'success', NULL,"
             "  now() - interval '5 minutes'),"
             " ('" CONN_G "', 'call_2', 'note', 'failed', 'bad request',"
             "  now() - interval '8 days')");
}

/* Replace every 'YOUR_AGENT_ID' in a seed query by a real agent id. */
static char *with_agent(const char *sql, const char *agent)
{
    const char *marker = "YOUR_AGENT_ID";
    const char *at = strstr(sql, marker);
    cr_assert(at);
    return xasprintf("%.*s%s%s", (int)(at - sql), sql, agent,
                     at + strlen(marker));
}

static const char *val(const PGresult *r, int row, const char *col)
{
    int c = PQfnumber(r, col);
    cr_assert_geq(c, 0, "no column '%s'", col);
    return PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
}

/* Row whose column col equals v; fails the test if there is none. */
static int row_where(const PGresult *r, const char *col, const char *v)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (val(r, i, col) && strcmp(val(r, i, col), v) == 0)
            return i;
    cr_assert_fail("no row with %s = '%s'", col, v);
    return -1;
}

/* Seed 000, "View Sync Logs", verbatim. */
static const char seed_sync_logs[] =
    "SELECT\n"
    "  isl.created_at,\n"
    "  ic.integration_type,\n"
    "  isl.operation_type,\n"
    "  isl.status,\n"
    "  isl.error_message,\n"
    "  c.customer_phone\n"
    "FROM integration_sync_logs isl\n"
    "JOIN integration_connections ic ON ic.id = isl.integration_connection_id\n"
    "LEFT JOIN calls c ON c.id = isl.call_id\n"
    "WHERE ic.agent_id = 'YOUR_AGENT_ID'\n"
    "ORDER BY isl.created_at DESC\n"
    "LIMIT 50;";

/* Seed 002, "Get All Integrations for Agent", verbatim. */
static const char seed_all_integrations[] =
    "SELECT\n"
    "  ic.*,\n"
    "  COUNT(isl.id) as total_syncs,\n"
    "  COUNT(CASE WHEN isl.status = 'success' THEN 1 END) as successful_syncs,\n"
    "  COUNT(CASE WHEN isl.status = 'failed' THEN 1 END) as failed_syncs\n"
    "FROM integration_connections ic\n"
    "LEFT JOIN integration_sync_logs isl ON isl.integration_connection_id = "
    "ic.id\n"
    "WHERE ic.agent_id = 'YOUR_AGENT_ID'\n"
    "GROUP BY ic.id;";

/* Seed 002, "Get Failed Syncs for Debugging", verbatim. */
static const char seed_failed_syncs[] =
    "SELECT\n"
    "  isl.*,\n"
    "  ic.integration_type,\n"
    "  c.customer_phone,\n"
    "  c.call_outcome\n"
    "FROM integration_sync_logs isl\n"
    "JOIN integration_connections ic ON ic.id = isl.integration_connection_id\n"
    "LEFT JOIN calls c ON c.id = isl.call_id\n"
    "WHERE isl.status = 'failed'\n"
    "  AND isl.created_at > NOW() - INTERVAL '24 hours'\n"
    "ORDER BY isl.created_at DESC\n"
    "LIMIT 20;";

/* Seed 002, "Get Sync Stats by Integration Type", verbatim. */
static const char seed_stats[] =
    "SELECT\n"
    "  ic.integration_type,\n"
    "  COUNT(DISTINCT ic.agent_id) as agents_connected,\n"
    "  COUNT(isl.id) as total_syncs,\n"
    "  ROUND(\n"
    "    COUNT(CASE WHEN isl.status = 'success' THEN 1 END)::numeric /\n"
    "    NULLIF(COUNT(isl.id), 0) * 100,\n"
    "    2\n"
    "  ) as success_rate_percent\n"
    "FROM integration_connections ic\n"
    "LEFT JOIN integration_sync_logs isl ON isl.integration_connection_id = "
    "ic.id\n"
    "WHERE isl.created_at > NOW() - INTERVAL '7 days'\n"
    "GROUP BY ic.integration_type\n"
    "ORDER BY total_syncs DESC;";

TestSuite(schema, .init = setup, .fini = teardown, .timeout = 60);

Test(schema, migrate_twice_applies_nothing_the_second_time)
{
    cr_expect_eq(db.applied, tpg_count_migrations());
    struct cs_err err;
    int n = pgc_migrate(db.c, TPG_MIGRATIONS, NULL, NULL, &err);
    cr_assert_eq(n, 0, "second run: %d (%s)", n, err.msg);
    PGresult *r = tpg_query(&db, "SELECT count(*) FROM schema_migrations", 0,
                            NULL);
    cr_expect_eq(atoi(PQgetvalue(r, 0, 0)), tpg_count_migrations());
    PQclear(r);
}

struct runner {
    const char *url;
    int applied;
    char msg[160];
};

static void *run_migrate(void *arg)
{
    struct runner *r = arg;
    struct cs_err err = {0};
    PGconn *c = pgc_connect(r->url, &err);
    if (!c) {
        r->applied = -1;
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
        return NULL;
    }
    r->applied = pgc_migrate(c, TPG_MIGRATIONS, NULL, NULL, &err);
    snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    PQfinish(c);
    return NULL;
}

/* Runners on an empty database (suite and test .init would both run). */
TestSuite(migrate, .init = setup_empty, .fini = teardown, .timeout = 60);

Test(migrate, concurrent_runners_apply_each_migration_once)
{
    enum { N = 4 };
    struct runner runs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        runs[i] = (struct runner){.url = db.url};
        cr_assert_eq(pthread_create(&th[i], NULL, run_migrate, &runs[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect_geq(runs[i].applied, 0, "runner %d: %s", i, runs[i].msg);
        total += runs[i].applied;
    }
    cr_expect_eq(total, tpg_count_migrations());
}

Test(migrate, failed_migration_names_file_and_line_and_rolls_back)
{
    char dir[] = "/tmp/cs_mig_XXXXXX";
    cr_assert(mkdtemp(dir));
    char *ok = xasprintf("%s/0001_first.sql", dir);
    char *bad = xasprintf("%s/0002_broken.sql", dir);
    FILE *f = fopen(ok, "w");
    fputs("CREATE TABLE t1 (id int);\n", f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("CREATE TABLE t2 (id int);\n\nSELEC 1;\n", f);
    fclose(f);
    struct cs_err err = {0};
    int n = pgc_migrate(db.c, dir, NULL, NULL, &err);
    unlink(ok);
    unlink(bad);
    rmdir(dir);
    free(ok);
    free(bad);
    cr_assert_lt(n, 0);
    cr_expect(strstr(err.msg, "'0002_broken.sql'"), "%s", err.msg);
    cr_expect(strstr(err.msg, "syntax error"), "%s", err.msg);
    cr_expect(strstr(err.msg, "line 3"), "%s", err.msg);
    PGresult *r = tpg_query(&db,
                            "SELECT string_agg(version::text, ',') FROM "
                            "schema_migrations",
                            0, NULL);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    r = tpg_query(&db, "SELECT to_regclass('t2') IS NULL", 0, NULL);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
}

Test(schema, seed_sync_log_query_returns_the_agents_logs)
{
    insert_fixture();
    char *sql = with_agent(seed_sync_logs, AGENT_A);
    PGresult *r = tpg_query(&db, sql, 0, NULL);
    free(sql);
    cr_assert_eq(PQntuples(r), 5);
    const char *want[][4] = {
        {"zapier", "webhook", "success", "+15550001111"},
        {"hubspot", "note", "failed", "+15550001111"},
        {"hubspot", "contact", "success", "+15550001111"},
        {"zapier", "webhook", "failed", "+15550001111"},
        {"hubspot", "contact", "success", NULL},
    };
    for (int i = 0; i < 5; i++) {
        cr_expect_str_eq(val(r, i, "integration_type"), want[i][0]);
        cr_expect_str_eq(val(r, i, "operation_type"), want[i][1]);
        cr_expect_str_eq(val(r, i, "status"), want[i][2]);
        if (want[i][3])
            cr_expect_str_eq(val(r, i, "customer_phone"), want[i][3]);
        else
            cr_expect_null(val(r, i, "customer_phone"));
    }
    PQclear(r);
}

Test(schema, seed_all_integrations_counts_syncs_per_connection)
{
    insert_fixture();
    char *sql = with_agent(seed_all_integrations, AGENT_A);
    PGresult *r = tpg_query(&db, sql, 0, NULL);
    free(sql);
    cr_assert_eq(PQntuples(r), 2);
    int h = row_where(r, "integration_type", "hubspot");
    cr_expect_str_eq(val(r, h, "id"), CONN_H);
    cr_expect_str_eq(val(r, h, "total_syncs"), "3");
    cr_expect_str_eq(val(r, h, "successful_syncs"), "2");
    cr_expect_str_eq(val(r, h, "failed_syncs"), "1");
    int z = row_where(r, "integration_type", "zapier");
    cr_expect_str_eq(val(r, z, "total_syncs"), "2");
    cr_expect_str_eq(val(r, z, "successful_syncs"), "1");
    cr_expect_str_eq(val(r, z, "failed_syncs"), "1");
    PQclear(r);
}

Test(schema, seed_failed_syncs_lists_the_last_day)
{
    insert_fixture();
    PGresult *r = tpg_query(&db, seed_failed_syncs, 0, NULL);
    cr_assert_eq(PQntuples(r), 1);
    cr_expect_str_eq(val(r, 0, "integration_type"), "hubspot");
    cr_expect_str_eq(val(r, 0, "error_message"), "rate limited");
    cr_expect_str_eq(val(r, 0, "customer_phone"), "+15550001111");
    cr_expect_str_eq(val(r, 0, "call_outcome"), "appointment_booked");
    cr_expect_str_eq(val(r, 0, "organization_id"), ORG_A);
    PQclear(r);
}

Test(schema, seed_stats_by_type_covers_the_last_week)
{
    insert_fixture();
    PGresult *r = tpg_query(&db, seed_stats, 0, NULL);
    cr_assert_eq(PQntuples(r), 3);
    const char *want[][4] = {
        {"hubspot", "1", "3", "66.67"},
        {"zapier", "1", "2", "50.00"},
        {"gohighlevel", "1", "1", "100.00"},
    };
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq(val(r, i, "integration_type"), want[i][0]);
        cr_expect_str_eq(val(r, i, "agents_connected"), want[i][1]);
        cr_expect_str_eq(val(r, i, "total_syncs"), want[i][2]);
        cr_expect_str_eq(val(r, i, "success_rate_percent"), want[i][3]);
    }
    PQclear(r);
}

static int count_as_tenant(const char *table)
{
    char *sql = xasprintf("SELECT count(*) FROM %s", table);
    PGresult *r = tpg_query(&db, sql, 0, NULL);
    free(sql);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

Test(schema, tenant_role_sees_only_its_organisation)
{
    insert_fixture();
    tpg_exec(&db, "SET ROLE callsync_tenant");
    cr_expect_eq(count_as_tenant("agents"), 0, "no org set: nothing visible");
    const char *org[] = {ORG_A};
    PQclear(tpg_query(&db, "SELECT set_config('callsync.org_id', $1, false)",
                      1, org));
    cr_expect_eq(count_as_tenant("organizations"), 1);
    cr_expect_eq(count_as_tenant("agents"), 1);
    cr_expect_eq(count_as_tenant("integration_connections"), 2);
    cr_expect_eq(count_as_tenant("integration_sync_logs"), 5);
    cr_expect_eq(count_as_tenant("calls"), 1);

    struct cs_err err = {0};
    const char *other[] = {ORG_B};
    int rc = pgc_exec(db.c,
                      "INSERT INTO agents (organization_id, name) "
                      "VALUES ($1, 'intruder')",
                      1, other, &err);
    cr_expect_neq(rc, 0, "inserting another org's agent must fail");
    cr_expect_str_eq(err.field, "42501", "%s", err.msg);
    const char *mine[] = {ORG_A};
    rc = pgc_exec(db.c,
                  "INSERT INTO agents (organization_id, name) "
                  "VALUES ($1, 'second desk')",
                  1, mine, &err);
    cr_expect_eq(rc, 0, "%s", err.msg);
    rc = pgc_exec(db.c,
                  "UPDATE integration_connections SET last_error = 'x' "
                  "WHERE id = '" CONN_G "'",
                  0, NULL, &err);
    cr_expect_eq(rc, 0);
    tpg_exec(&db, "RESET ROLE");
    PGresult *r = tpg_query(&db,
                            "SELECT last_error IS NULL FROM "
                            "integration_connections WHERE id = '" CONN_G
                            "'",
                            0, NULL);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "t", "B's row was not updatable");
    PQclear(r);
}

Test(schema, plaintext_secrets_are_rejected)
{
    insert_fixture();
    const char *cols[] = {"access_token", "refresh_token", "api_key",
                          "api_secret", "webhook_secret"};
    for (size_t i = 0; i < CS_ARRAY_LEN(cols); i++) {
        char *sql = xasprintf("UPDATE integration_connections SET %s = "
                              "'pat-na1-plaintext' WHERE id = '" CONN_H "'",
                              cols[i]);
        struct cs_err err = {0};
        int rc = pgc_exec(db.c, sql, 0, NULL, &err);
        free(sql);
        cr_expect_neq(rc, 0, "%s accepted plaintext", cols[i]);
        cr_expect_str_eq(err.field, "23514", "%s: %s", cols[i], err.msg);
    }
    struct cs_err err = {0};
    int rc = pgc_exec(db.c,
                      "UPDATE integration_connections SET access_token = "
                      "'v1:t1:AAAA' WHERE id = '" CONN_H "'",
                      0, NULL, &err);
    cr_expect_eq(rc, 0, "%s", err.msg);
}

Test(schema, organisation_is_filled_from_the_parent_row)
{
    insert_fixture();
    PGresult *r = tpg_query(&db,
                            "SELECT DISTINCT organization_id FROM "
                            "integration_sync_logs WHERE "
                            "integration_connection_id = '" CONN_G "'",
                            0, NULL);
    cr_assert_eq(PQntuples(r), 1);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), ORG_B);
    PQclear(r);
    /* A connection cannot claim another organisation than its agent's. */
    struct cs_err err = {0};
    int rc = pgc_exec(db.c,
                      "INSERT INTO integration_connections (agent_id, "
                      "organization_id, integration_type) VALUES "
                      "('" AGENT_A "', '" ORG_B "', 'stripe')",
                      0, NULL, &err);
    cr_expect_neq(rc, 0);
    cr_expect_str_eq(err.field, "23503", "%s", err.msg);
}

Test(schema, sync_log_lookup_by_connection_uses_an_index)
{
    insert_fixture();
    tpg_exec(&db, "ANALYZE; SET enable_seqscan = off");
    PGresult *r = tpg_query(&db,
                            "EXPLAIN SELECT * FROM integration_sync_logs "
                            "WHERE integration_connection_id = '" CONN_H "' "
                            "ORDER BY created_at DESC LIMIT 50",
                            0, NULL);
    struct buf_s {
        char text[4096];
        size_t len;
    } plan = {{0}, 0};
    for (int i = 0; i < PQntuples(r); i++)
        plan.len += (size_t)snprintf(plan.text + plan.len,
                                     sizeof(plan.text) - plan.len, "%s\n",
                                     PQgetvalue(r, i, 0));
    PQclear(r);
    cr_expect(strstr(plan.text, "integration_sync_logs_conn_created_idx"),
              "plan:\n%s", plan.text);
    cr_expect(!strstr(plan.text, "Sort"), "no sort needed:\n%s", plan.text);
}
