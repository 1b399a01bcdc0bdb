/*
 * test_monday.c - the monday.com provider step by step: the exact GraphQL
 * requests (document, variables, headers), the column values shaped per
 * column type (phone, email, status, date in UTC, long text, text,
 * mapped columns), the look-ups before create_item and their exact
 * comparisons, the update (note) and its reconciliation, the complexity
 * budget pause, and the classification of monday's documented error
 * bodies.
 */
#include "prov.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://monday.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define MARKER "callsync:" JOB_ID
#define NOW_MS 1771166100000LL /* 2026-02-15T14:35:00Z */
#define CONFIG                                                              \
    "{\"board_id\":\"1234567890\",\"group_id\":\"topics\","                 \
    "\"phone_column_id\":\"phone\",\"email_column_id\":\"email\","          \
    "\"marker_column_id\":\"text_marker\",\"status_column_id\":\"status\"," \
    "\"status_by_outcome\":{\"appointment_booked\":\"Booked\","             \
    "\"*\":\"New lead\"},\"summary_column_id\":\"long_text\","              \
    "\"appointment_column_id\":\"date4\","                                  \
    "\"call_date_column_id\":\"date_call\"}"

struct fx {
    json_t *job, *config, *done, *scratch;
    struct prov_creds creds;
    struct prov_ctx ctx;
    struct prov_request rq;
};

static json_t *jparse(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    cr_assert_not_null(v, "bad test json: %s (%s)", e.text, s);
    return v;
}

static json_t *base_call(void)
{
    return jparse(
        "{\"call_id\":\"call_abc123\",\"source\":\"retell\","
        "\"customer\":{\"name\":\"Jane Smith\",\"phone\":\"+14079780655\","
        "\"email\":\"jane@example.com\"},"
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"summary\":\"Customer <scheduled> roof repair & gutters\","
        "\"sentiment\":\"positive\",\"transcript\":\"Agent: Hi\","
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:35:00Z\",\"duration_s\":300,"
        "\"appointment\":{\"title\":\"Roof Repair\",\"date\":\"2026-02-20\","
        "\"time\":\"14:00\",\"timezone\":\"America/New_York\","
        "\"duration_min\":120},"
        "\"analysis\":{\"lead_score\":87,\"urgency\":\"high\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:o}", "job_id", JOB_ID, "provider",
                       "monday", "call", call);
    f->config = jparse(config ? config : CONFIG);
    f->done = json_object();
    f->scratch = json_object();
    f->creds.api_key = "eyJhbGciOiJIUzI1NiJ9.tok";
    f->ctx.job = f->job;
    f->ctx.call = json_object_get(f->job, "call");
    f->ctx.config = f->config;
    f->ctx.creds = &f->creds;
    f->ctx.done = f->done;
    f->ctx.scratch = f->scratch;
    f->ctx.base_url = BASE;
    f->ctx.now_ms = NOW_MS;
}

static void fx_release(struct fx *f)
{
    prov_request_release(&f->rq);
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->done);
    json_decref(f->scratch);
}

static const struct prov_step *step(const char *name)
{
    for (size_t i = 0; i < prov_monday.nsteps; i++)
        if (strcmp(prov_monday.steps[i].name, name) == 0)
            return &prov_monday.steps[i];
    cr_assert_fail("no step '%s'", name);
    return NULL;
}

static const char *hdr(const struct prov_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

/* Build the step's next request; its body parsed (caller frees). */
static json_t *build(struct fx *f, const char *name)
{
    struct cs_err err = {0};
    prov_request_release(&f->rq);
    int rc = step(name)->build(&f->ctx, &f->rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s: %s", name, err.field, err.msg);
    cr_assert_str_eq(f->rq.method, "POST");
    cr_assert_str_eq(f->rq.url, BASE "/v2");
    cr_expect_str_eq(hdr(&f->rq, "Authorization"), f->creds.api_key,
                     "the token goes without Bearer");
    cr_expect_str_eq(hdr(&f->rq, "API-Version"), "2025-04");
    cr_expect_str_eq(hdr(&f->rq, "Content-Type"), "application/json");
    json_t *b = json_loadb(f->rq.body, f->rq.body_len, 0, NULL);
    cr_assert(json_is_object(b), "body is JSON");
    cr_assert(json_is_string(json_object_get(b, "query")));
    return b;
}

static int build_fails(struct fx *f, const char *name, struct cs_err *err)
{
    prov_request_release(&f->rq);
    memset(err, 0, sizeof(*err));
    return step(name)->build(&f->ctx, &f->rq, err);
}

static void parse(struct fx *f, const char *name, int status,
                  const char *body, struct prov_result *res)
{
    static struct prov_header h[2] = {{(char *)"content-type",
                                       (char *)"application/json"},
                                      {(char *)"retry-after", (char *)"30"}};
    struct prov_response r = {status, 2, h, body, body ? strlen(body) : 0};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    step(name)->parse(&f->ctx, &r, res);
}

static void parse_h(struct fx *f, const char *name, int status,
                    const char *body, const struct prov_header *hs,
                    size_t nh, struct prov_result *res)
{
    struct prov_response r = {status, nh, hs, body, body ? strlen(body) : 0};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    step(name)->parse(&f->ctx, &r, res);
}

static const char *var(const json_t *b, const char *name)
{
    return json_string_value(
        json_object_get(json_object_get(b, "variables"), name));
}

/* The column_values variable, decoded from its JSON string. */
static json_t *values_of(const json_t *b)
{
    const char *s = var(b, "values");
    cr_assert_not_null(s, "values is a JSON-encoded string");
    return jparse(s);
}

#define CX "\"complexity\":{\"query\":1250,\"after\":9988750," \
           "\"reset_in_x_seconds\":41}"

/* ------------------------------------------------------------------ */

Test(monday, registered_with_its_documented_rate)
{
    const struct prov_ops *ops = prov_find("monday");
    cr_assert_eq(ops, &prov_monday);
    cr_expect_eq(ops->rate.requests, 1000);
    cr_expect_eq(ops->rate.per_ms, 60000);
    cr_expect_str_eq(ops->rate_scope, "account_id");
    cr_expect_eq(ops->steps[0].reconcile, PROV_RECONCILE_LOOKUP);
    cr_expect_eq(ops->steps[1].reconcile, PROV_RECONCILE_LOOKUP);
}

Test(monday, looks_up_by_phone_digits_first)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_t *b = build(&f, "item");
    const char *q = json_string_value(json_object_get(b, "query"));
    cr_expect(strstr(q, "items_page_by_column_values (board_id: $board, "
                        "columns: $columns, limit: 25)"), "%s", q);
    cr_expect(strstr(q, "complexity { query after reset_in_x_seconds }"));
    cr_expect(strncmp(q, "query ($board: ID!, $columns: "
                         "[ItemsPageByColumnValuesQuery!]", 56) == 0);
    json_t *vars = json_object_get(b, "variables");
    json_t *want = jparse("{\"board\":\"1234567890\",\"columns\":[{"
                          "\"column_id\":\"phone\",\"column_values\":["
                          "\"14079780655\"]}],\"ids\":[\"phone\"]}");
    cr_expect(json_equal(vars, want), "variables %s",
              json_dumps(vars, JSON_COMPACT));
    json_decref(want);
    json_decref(b);
    fx_release(&f);
}

Test(monday, a_contains_match_is_checked_exactly_then_email_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "item"));
    struct prov_result res;
    /* monday's phone search matches a run of digits: 14079780655 is in
     * 114079780655 too. That is not our caller. */
    parse(&f, "item", 200,
          "{\"data\":{" CX ",\"items_page_by_column_values\":{\"cursor\":"
          "null,\"items\":[{\"id\":\"9\",\"name\":\"Other\","
          "\"column_values\":[{\"id\":\"phone\",\"text\":\"+114079780655\","
          "\"value\":\"{\\\"phone\\\":\\\"+114079780655\\\","
          "\\\"countryShortName\\\":\\\"US\\\"}\"}]}]}},\"account_id\":1}",
          &res);
    cr_expect_eq(res.outcome, PROV_NEXT);
    cr_expect_eq(res.pause_ms, 0);
    json_t *b = build(&f, "item");
    json_t *col = json_array_get(
        json_object_get(json_object_get(b, "variables"), "columns"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(col, "column_id")),
                     "email");
    cr_expect_str_eq(json_string_value(json_array_get(
                         json_object_get(col, "column_values"), 0)),
                     "jane@example.com");
    json_decref(b);
    prov_result_release(&res);
    parse(&f, "item", 200,
          "{\"data\":{" CX ",\"items_page_by_column_values\":{\"items\":[]}}}",
          &res);
    cr_expect_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    b = build(&f, "item");
    col = json_array_get(
        json_object_get(json_object_get(b, "variables"), "columns"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(col, "column_id")),
                     "text_marker");
    cr_expect_str_eq(json_string_value(json_array_get(
                         json_object_get(col, "column_values"), 0)),
                     MARKER);
    json_decref(b);
    parse(&f, "item", 200,
          "{\"data\":{" CX ",\"items_page_by_column_values\":{\"items\":[]}}}",
          &res);
    cr_expect_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);

    /* Nothing found: create_item with every column shaped for its type. */
    b = build(&f, "item");
    const char *q = json_string_value(json_object_get(b, "query"));
    cr_expect(strstr(q, "create_item (board_id: $board, group_id: $group, "
                        "item_name: $name, column_values: $values, "
                        "create_labels_if_missing: $labels) { id }"),
              "%s", q);
    cr_expect_str_eq(var(b, "board"), "1234567890");
    cr_expect_str_eq(var(b, "group"), "topics");
    cr_expect_str_eq(var(b, "name"), "Jane Smith");
    cr_expect(json_is_true(
        json_object_get(json_object_get(b, "variables"), "labels")));
    json_t *cv = values_of(b);
    json_t *want = jparse(
        "{\"phone\":{\"phone\":\"+14079780655\",\"countryShortName\":\"US\"},"
        "\"email\":{\"email\":\"jane@example.com\","
        "\"text\":\"jane@example.com\"},"
        "\"text_marker\":\"" MARKER "\","
        "\"status\":{\"label\":\"Booked\"},"
        "\"long_text\":{\"text\":"
        "\"Customer <scheduled> roof repair & gutters\"},"
        "\"date4\":{\"date\":\"2026-02-20\",\"time\":\"19:00:00\"},"
        "\"date_call\":{\"date\":\"2026-02-15\",\"time\":\"14:30:00\"}}");
    cr_expect(json_equal(cv, want), "column_values %s",
              json_dumps(cv, JSON_COMPACT));
    json_decref(want);
    json_decref(cv);
    json_decref(b);
    parse(&f, "item", 200,
          "{\"data\":{" CX ",\"create_item\":{\"id\":\"5001\"}},"
          "\"account_id\":1}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "item_id")),
                     "5001");
    cr_expect(json_is_true(json_object_get(res.value, "created")));
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, a_found_item_gets_the_call_columns_but_keeps_its_identity)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "item"));
    struct prov_result res;
    parse(&f, "item", 200,
          "{\"data\":{" CX ",\"items_page_by_column_values\":{\"items\":["
          "{\"id\":\"7001\",\"name\":\"Jane\",\"column_values\":[{\"id\":"
          "\"phone\",\"text\":\"+1 407 978 0655\",\"value\":\"{\\\"phone\\\":"
          "\\\"+14079780655\\\",\\\"countryShortName\\\":\\\"US\\\"}\"}]}]}}}",
          &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    json_t *b = build(&f, "item");
    const char *q = json_string_value(json_object_get(b, "query"));
    cr_expect(strstr(q, "change_multiple_column_values (board_id: $board, "
                        "item_id: $item, column_values: $values"),
              "%s", q);
    cr_expect_str_eq(var(b, "item"), "7001");
    json_t *cv = values_of(b);
    cr_expect_null(json_object_get(cv, "phone"));
    cr_expect_null(json_object_get(cv, "email"));
    cr_expect_null(json_object_get(cv, "text_marker"),
                   "another job's marker stays");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_object_get(cv, "status"), "label")),
                     "Booked");
    json_decref(cv);
    json_decref(b);
    parse(&f, "item", 200,
          "{\"data\":{" CX ",\"change_multiple_column_values\":{\"id\":"
          "\"7001\"}}}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "item_id")),
                     "7001");
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, update_existing_false_takes_a_found_item_as_it_is)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.config, "update_existing", json_false());
    json_decref(build(&f, "item"));
    struct prov_result res;
    parse(&f, "item", 200,
          "{\"data\":{\"items_page_by_column_values\":{\"items\":[{\"id\":"
          "\"7001\",\"column_values\":[{\"id\":\"phone\",\"text\":"
          "\"+14079780655\",\"value\":null}]}]}}}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "item_id")),
                     "7001");
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, an_email_match_takes_the_label_in_any_case)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"board_id\":1234567890,\"email_column_id\":\"email\"}");
    json_t *b = build(&f, "item");
    cr_expect_str_eq(var(b, "board"), "1234567890",
                     "an integer board id is sent as an ID string");
    json_decref(b);
    struct prov_result res;
    parse(&f, "item", 200,
          "{\"data\":{\"items_page_by_column_values\":{\"items\":[{\"id\":"
          "\"42\",\"column_values\":[{\"id\":\"email\",\"text\":"
          "\"JANE@example.com\",\"value\":\"{\\\"email\\\":"
          "\\\"JANE@example.com\\\",\\\"text\\\":\\\"JANE@example.com\\\"}"
          "\"}]}]}}}",
          &res);
    /* no other column is configured: nothing to update */
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(json_string_value(json_object_get(res.value, "item_id")),
                     "42");
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, item_name_template_and_mapped_columns)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"board_id\":\"1\",\"marker_column_id\":\"text_m\","
            "\"item_name_template\":\"{{customer_name}} - {{call_outcome}}\","
            "\"field_mappings\":["
            "{\"target\":\"numbers_score\","
            "\"source\":\"ai_analysis.lead_score\"},"
            "{\"target\":\"status_urgency\",\"type\":\"conditional\","
            "\"conditions\":[{\"if\":\"ai_analysis.urgency == 'high'\","
            "\"then\":\"Urgent\"},{\"default\":\"Normal\"}]},"
            "{\"target\":\"text_src\",\"source\":\"source\"},"
            "{\"target\":\"date_seen\",\"source\":\"ended_at\"}],"
            "\"column_types\":{\"numbers_score\":\"numbers\","
            "\"status_urgency\":\"status\",\"date_seen\":\"date\"}}");
    /* the marker look-up is the only one: go straight to create */
    json_decref(build(&f, "item"));
    struct prov_result res;
    parse(&f, "item", 200,
          "{\"data\":{\"items_page_by_column_values\":{\"items\":[]}}}", &res);
    prov_result_release(&res);
    json_t *b = build(&f, "item");
    cr_expect_str_eq(var(b, "name"), "Jane Smith - appointment_booked");
    cr_expect(json_is_null(
        json_object_get(json_object_get(b, "variables"), "group")));
    json_t *cv = values_of(b);
    json_t *want = jparse(
        "{\"text_m\":\"" MARKER "\",\"numbers_score\":\"87\","
        "\"status_urgency\":{\"label\":\"Urgent\"},\"text_src\":\"retell\","
        "\"date_seen\":{\"date\":\"2026-02-15\",\"time\":\"14:35:00\"}}");
    cr_expect(json_equal(cv, want), "%s", json_dumps(cv, JSON_COMPACT));
    json_decref(want);
    json_decref(cv);
    json_decref(b);
    fx_release(&f);
}

Test(monday, configuration_and_mapping_errors_are_permanent)
{
    struct fx f;
    struct cs_err err;
    fx_init(&f, base_call(), "{\"phone_column_id\":\"phone\"}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "board_id is not set"), "%s", err.msg);
    fx_release(&f);

    fx_init(&f, base_call(), "{\"board_id\":\"main board\"}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "not a monday board id"), "%s", err.msg);
    fx_release(&f);

    /* no column to find the item by: a create could repeat */
    fx_init(&f, base_call(), "{\"board_id\":\"1\"}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no way to find the item"), "%s", err.msg);
    fx_release(&f);

    /* a country monday cannot be told */
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "customer"), "phone",
                        json_string("+99912345678"));
    fx_init(&f, call, "{\"board_id\":\"1\",\"phone_column_id\":\"phone\"}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "set phone_country"), "%s", err.msg);
    json_object_set_new(f.config, "phone_country", json_string("gb"));
    cr_expect_eq(build_fails(&f, "item", &err), 0);
    fx_release(&f);

    fx_init(&f, base_call(),
            "{\"board_id\":\"1\",\"marker_column_id\":\"m\","
            "\"field_mappings\":{\"ai_analysis\":\"text_a\"}}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "mapping_error"), "%s", err.msg);
    fx_release(&f);

    /* a target that is no column id fails though its source is absent */
    fx_init(&f, base_call(),
            "{\"board_id\":\"1\",\"marker_column_id\":\"m\","
            "\"field_mappings\":{\"no.such.source\":\"status.label\"}}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "is not a column id"), "%s", err.msg);
    fx_release(&f);

    fx_init(&f, base_call(),
            "{\"board_id\":\"1\",\"marker_column_id\":\"m\","
            "\"field_mappings\":{\"customer_name\":\"x\"},"
            "\"column_types\":{\"x\":\"rating\"}}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "config_error: column type 'rating'"), "%s",
              err.msg);
    fx_release(&f);

    fx_init(&f, base_call(),
            "{\"board_id\":\"1\",\"marker_column_id\":\"m\","
            "\"field_mappings\":{\"customer_name\":\"mail\"},"
            "\"column_types\":{\"mail\":\"email\"}}");
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "takes an email address"), "%s", err.msg);
    fx_release(&f);

    fx_init(&f, base_call(), NULL);
    f.creds.api_key = NULL;
    cr_expect_eq(build_fails(&f, "item", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_credentials"), "%s", err.msg);
    fx_release(&f);
}

Test(monday, note_is_an_update_with_the_marker_and_escaped_text)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.done, "item", json_pack("{s:s}", "item_id", "5001"));
    json_t *b = build(&f, "note");
    const char *q = json_string_value(json_object_get(b, "query"));
    cr_expect(strstr(q, "create_update (item_id: $item, body: $body) "
                        "{ id }"), "%s", q);
    cr_expect_str_eq(var(b, "item"), "5001");
    const char *body = var(b, "body");
    cr_expect(strstr(body, "Sync reference: " MARKER), "%s", body);
    cr_expect(strstr(body, "<b>Summary:</b> Customer &lt;scheduled&gt; roof "
                           "repair &amp; gutters<br>"),
              "%s", body);
    cr_expect(strstr(body, "<b>Duration:</b> 5m 0s<br>"), "%s", body);
    json_decref(b);
    struct prov_result res;
    parse(&f, "note", 200,
          "{\"data\":{\"create_update\":{\"id\":\"3001\"}},\"account_id\":1}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(
        json_string_value(json_object_get(res.value, "update_id")), "3001");
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, note_reconciles_by_the_marker_in_the_item_updates)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.done, "item", json_pack("{s:s}", "item_id", "5001"));
    f.ctx.reconcile = true;
    json_t *b = build(&f, "note");
    const char *q = json_string_value(json_object_get(b, "query"));
    cr_expect(strstr(q, "items (ids: $items) { id updates (limit: 100) "
                        "{ id body text_body } }"), "%s", q);
    json_decref(b);
    struct prov_result res;
    parse(&f, "note", 200,
          "{\"data\":{\"items\":[{\"id\":\"5001\",\"updates\":[{\"id\":"
          "\"3002\",\"body\":\"<p>someone else</p>\",\"text_body\":"
          "\"someone else\"},{\"id\":\"3001\",\"body\":\"x<br>Sync "
          "reference: " MARKER "\",\"text_body\":\"x\"}]}]}}",
          &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_str_eq(
        json_string_value(json_object_get(res.value, "update_id")), "3001");
    prov_result_release(&res);

    /* not there: the next request writes it */
    json_object_clear(f.scratch);
    json_decref(build(&f, "note"));
    parse(&f, "note", 200,
          "{\"data\":{\"items\":[{\"id\":\"5001\",\"updates\":[]}]}}", &res);
    cr_assert_eq(res.outcome, PROV_NEXT);
    prov_result_release(&res);
    b = build(&f, "note");
    cr_expect(strstr(json_string_value(json_object_get(b, "query")),
                     "create_update"));
    json_decref(b);

    /* the item is gone: permanent */
    json_object_clear(f.scratch);
    json_decref(build(&f, "note"));
    parse(&f, "note", 200, "{\"data\":{\"items\":[]}}", &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "item_not_found");
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, a_spent_complexity_budget_pauses_the_key)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "item"));
    struct prov_result res;
    parse(&f, "item", 200,
          "{\"data\":{\"complexity\":{\"query\":1250,\"after\":900,"
          "\"reset_in_x_seconds\":17},\"items_page_by_column_values\":"
          "{\"items\":[]}}}",
          &res);
    cr_expect_eq(res.outcome, PROV_NEXT);
    cr_expect_eq(res.pause_ms, 17000);
    prov_result_release(&res);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Errors, with the bodies monday documents                           */
/* ------------------------------------------------------------------ */

static void classify(const char *name, int status, const char *body,
                     enum prov_outcome want, const char *code,
                     int64_t wait_ms)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.done, "item", json_pack("{s:s}", "item_id", "1"));
    json_decref(build(&f, name));
    struct prov_header none[1] = {{(char *)"x", (char *)"y"}};
    struct prov_result res;
    parse_h(&f, name, status, body, none, 1, &res);
    cr_expect_eq(res.outcome, want, "%d %s: outcome %d", status, body,
                 res.outcome);
    if (code)
        cr_expect_str_eq(res.code, code);
    if (wait_ms)
        cr_expect_eq(res.retry_after_ms, wait_ms, "%d %s: wait %lld", status,
                     body, (long long)res.retry_after_ms);
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, application_errors_in_a_200_are_classified_by_code)
{
    /* the changelog's ColumnValueException (column_type update) */
    classify("item", 200,
             "{\"errors\":[{\"message\":\"invalid value - label does not "
             "exist in column. Please check our API documentation\","
             "\"locations\":[{\"line\":1,\"column\":10}],\"path\":["
             "\"change_column_value\"],\"extensions\":{\"code\":"
             "\"ColumnValueException\",\"status_code\":200,\"error_data\":"
             "{\"column_type\":\"color\"}}}]}",
             PROV_PERMANENT, "ColumnValueException", 0);
    classify("item", 200,
             "{\"data\":{\"create_item\":null},\"errors\":[{\"message\":"
             "\"This column ID doesn't exist for the board\",\"extensions\":"
             "{\"code\":\"InvalidColumnIdException\",\"status_code\":200}}]}",
             PROV_PERMANENT, "InvalidColumnIdException", 0);
    /* the error handling page's UserUnauthorizedException (403) */
    classify("note", 200,
             "{\"data\":[],\"errors\":[{\"message\":\"User unauthorized to "
             "perform action\",\"locations\":[{\"line\":2,\"column\":3}],"
             "\"path\":[\"me\"],\"extensions\":{\"code\":"
             "\"UserUnauthorizedException\",\"error_data\":{},"
             "\"status_code\":403}}],\"account_id\":123456}",
             PROV_PERMANENT, "UserUnauthorizedException", 0);
    classify("item", 200,
             "{\"errors\":[{\"message\":\"Parse error on \\\")\\\" (RPAREN) "
             "at [59, 15]\",\"locations\":[{\"line\":59,\"column\":15}]}]}",
             PROV_PERMANENT, "graphql_error", 0);
    classify("item", 200,
             "{\"errors\":[{\"message\":\"Internal server error\","
             "\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}",
             PROV_RETRY, NULL, 0);
}

Test(monday, limits_wait_as_monday_says)
{
    /* API 2025-07's COMPLEXITY_BUDGET_EXHAUSTED */
    classify("item", 429,
             "{\"errors\":[{\"message\":\"Complexity budget exhausted\","
             "\"extensions\":{\"code\":\"COMPLEXITY_BUDGET_EXHAUSTED\","
             "\"retry_in_seconds\":7}}]}",
             PROV_RATE_LIMITED, "COMPLEXITY_BUDGET_EXHAUSTED", 7000);
    /* the same in a 200, as API 2025-01 hotfix shows it */
    classify("item", 200,
             "{\"errors\":[{\"message\":\"Complexity budget exhausted\","
             "\"extensions\":{\"code\":\"COMPLEXITY_BUDGET_EXHAUSTED\","
             "\"complexity\":6182,\"complexity_budget_left\":100,"
             "\"complexity_budget_limit\":5000000,\"retry_in_seconds\":60,"
             "\"status_code\":429}}]}",
             PROV_RATE_LIMITED, "COMPLEXITY_BUDGET_EXHAUSTED", 60000);
    /* the legacy ComplexityException body */
    classify("item", 200,
             "{\"error_code\":\"ComplexityException\",\"status_code\":429,"
             "\"error_message\":\"Complexity budget exhausted, query cost "
             "30001 budget remaining 19986 out of 1000000 reset in 3 "
             "seconds\",\"error_data\":{},\"errors\":[\"Complexity budget "
             "exhausted, query cost 30001 budget remaining 19986 out of "
             "1000000 reset in 3 seconds\"],\"account_id\":1234567890}",
             PROV_RATE_LIMITED, "ComplexityException", 3000);
    /* FIELD_LIMIT_EXCEEDED's legacy error_data.retry_in_seconds */
    classify("item", 429,
             "{\"error_message\":\"Concurrency limit exceeded for the "
             "field\",\"error_code\":\"FIELD_LIMIT_EXCEEDED\",\"error_data\":"
             "{\"retry_in_seconds\":15,\"entity\":\"boards\"},"
             "\"status_code\":429,\"account_id\":123456}",
             PROV_RATE_LIMITED, "FIELD_LIMIT_EXCEEDED", 15000);
    /* DAILY_LIMIT_EXCEEDED: until midnight UTC */
    classify("item", 200,
             "{\"errors\":[{\"message\":\"Daily limit exceeded\","
             "\"extensions\":{\"code\":\"DAILY_LIMIT_EXCEEDED\"}}]}",
             PROV_RATE_LIMITED, "DAILY_LIMIT_EXCEEDED",
             86400000 - NOW_MS % 86400000);
    /* a 429 without anything: a minute */
    classify("item", 429, "", PROV_RATE_LIMITED, NULL, 60000);

    /* Retry-After wins */
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_decref(build(&f, "item"));
    struct prov_result res;
    parse(&f, "item", 429,
          "{\"errors\":[{\"message\":\"Rate Limit Exceeded\",\"extensions\":"
          "{\"code\":\"RATE_LIMIT_EXCEEDED\",\"retry_in_seconds\":5}}]}",
          &res);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_eq(res.retry_after_ms, 30000);
    prov_result_release(&res);
    fx_release(&f);
}

Test(monday, transport_errors)
{
    classify("item", 401,
             "{\"errors\":[{\"message\":\"Not Authenticated\"}]}", PROV_AUTH,
             NULL, 0);
    classify("item", 200,
             "{\"errors\":[{\"message\":\"Not Authenticated\",\"extensions\":"
             "{\"code\":\"Unauthorized\",\"status_code\":401}}]}",
             PROV_AUTH, NULL, 0);
    classify("item", 500, "<html>oops</html>", PROV_RETRY, NULL, 0);
    classify("item", 423, "{\"errors\":[{\"message\":\"Resource is "
                          "currently locked, please try again later\"}]}",
             PROV_RETRY, NULL, 0);
    classify("item", 400,
             "{\"error_message\":\"Syntax error in JSON input\","
             "\"error_code\":\"JsonParseException\",\"status_code\":400}",
             PROV_PERMANENT, "JsonParseException", 0);
    classify("item", 0, NULL, PROV_RETRY, "network_error", 0);
    /* a 200 that is not JSON: the write may have happened, retry */
    classify("item", 200, "<html>", PROV_RETRY, "bad_response", 0);
    classify("note", 200, "{\"data\":{\"create_update\":{}}}", PROV_RETRY,
             "bad_response", 0);
}

/* ------------------------------------------------------------------ */
/* Probe                                                              */
/* ------------------------------------------------------------------ */

static void probe_answer(struct fx *f, const char *body,
                         struct prov_result *res)
{
    struct prov_response r = {200, 0, NULL, body, strlen(body)};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    prov_monday.probe->parse(&f->ctx, &r, res);
}

Test(monday, probe_reads_the_board_and_checks_the_columns)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"board_id\":\"42\",\"phone_column_id\":\"phone\","
            "\"status_column_id\":\"status\",\"column_types\":"
            "{\"extra\":\"json\"}}");
    cr_assert_not_null(prov_monday.probe);
    struct cs_err err = {0};
    cr_assert_eq(prov_monday.probe->build(&f.ctx, &f.rq, &err), 0);
    json_t *b = json_loadb(f.rq.body, f.rq.body_len, 0, NULL);
    const char *q = json_string_value(json_object_get(b, "query"));
    cr_expect(strstr(q, "boards (ids: $board) { id name columns (ids: "
                        "$columns) { id title type } }"), "%s", q);
    json_t *want = jparse("{\"board\":[\"42\"],\"columns\":[\"phone\","
                          "\"status\",\"extra\"]}");
    cr_expect(json_equal(json_object_get(b, "variables"), want), "%s",
              f.rq.body);
    json_decref(want);
    json_decref(b);

    struct prov_result res;
    probe_answer(&f,
                 "{\"data\":{\"boards\":[{\"id\":\"42\",\"name\":\"Leads\","
                 "\"columns\":[{\"id\":\"phone\",\"type\":\"phone\"},"
                 "{\"id\":\"status\",\"type\":\"status\"},{\"id\":"
                 "\"extra\",\"type\":\"rating\"}]}]}}",
                 &res);
    cr_assert_eq(res.outcome, PROV_DONE, "%s", res.message);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "board_name")),
                     "Leads");
    prov_result_release(&res);

    probe_answer(&f,
                 "{\"data\":{\"boards\":[{\"id\":\"42\",\"columns\":["
                 "{\"id\":\"phone\",\"type\":\"text\"}]}]}}",
                 &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "column_type");
    prov_result_release(&res);
    probe_answer(&f,
                 "{\"data\":{\"boards\":[{\"id\":\"42\",\"columns\":["
                 "{\"id\":\"phone\",\"type\":\"phone\"}]}]}}",
                 &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "column_not_found");
    cr_expect(strstr(res.message, "'status'"), "%s", res.message);
    prov_result_release(&res);
    probe_answer(&f, "{\"data\":{\"boards\":[]}}", &res);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "board_not_found");
    prov_result_release(&res);
    fx_release(&f);
}
