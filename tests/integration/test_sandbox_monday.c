/*
 * test_sandbox_monday.c - the monday.com part of the built
 * callsync-sandbox: auth and API-Version, the GraphQL reader (typed
 * variables, unknown fields, syntax errors), column values per column
 * type with monday's error codes, items_page_by_column_values matching,
 * change_multiple_column_values, updates, the per-minute, daily and
 * complexity limits with Retry-After, fault rules (a hang that processes
 * the mutation first) and the /_sandbox records. Needs neither Redis nor
 * PostgreSQL.
 */
#include "it_support.h"

#include <jansson.h>

#define SANDBOX CS_BIN_DIR "/callsync-sandbox"
#define TOKEN "mon-token-0001"
#define H "Authorization: " TOKEN "\r\nAPI-Version: 2025-04\r\n"

#define Q_SEARCH                                                          \
    "query ($board: ID!, $columns: [ItemsPageByColumnValuesQuery!]) { "   \
    "items_page_by_column_values (board_id: $board, columns: $columns, "  \
    "limit: 25) { cursor items { id name column_values { id text value "  \
    "} } } }"
#define M_CREATE                                                          \
    "mutation ($board: ID!, $name: String!, $values: JSON, "              \
    "$labels: Boolean) { complexity { before query after "                \
    "reset_in_x_seconds } create_item (board_id: $board, item_name: "     \
    "$name, column_values: $values, create_labels_if_missing: $labels) "  \
    "{ id } }"

static pid_t sb_pid = -1;
static int sb_port;
static char sb_log[64];

static void start_with(const char *const *extra)
{
    sb_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sb_port);
    char *argv[24] = {(char *)SANDBOX, (char *)"--port", port,
                      (char *)"--monday-token", (char *)TOKEN};
    size_t n = 5;
    for (; extra && *extra && n < 22; extra++)
        argv[n++] = (char *)*extra;
    argv[n] = NULL;
    snprintf(sb_log, sizeof(sb_log), "/tmp/cs_sbmon_%d.log", (int)getpid());
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
    start_with(NULL);
}

static void stop(void)
{
    if (sb_pid > 0)
        cr_expect_eq(it_stop(sb_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sb_pid = -1;
    it_expect_clean_log(sb_log);
}

TestSuite(sbmon, .init = setup, .fini = stop, .timeout = 60);
TestSuite(sbmon_opts, .fini = stop, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------ */

static struct it_resp post_raw(const char *headers, const char *body)
{
    return it_post(sb_port, "/monday/v2", headers, body, strlen(body));
}

/* A GraphQL request with variables given as JSON text (or NULL). */
static struct it_resp gql(const char *query, const char *vars)
{
    json_t *v = vars ? json_loads(vars, 0, NULL) : json_object();
    cr_assert_not_null(v, "bad test variables %s", vars);
    json_t *b = json_pack("{s:s,s:o}", "query", query, "variables", v);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    struct it_resp r = post_raw(H, text);
    free(text);
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

/* The first error's extensions.code ("" when there is no error). */
static const char *error_code(const json_t *j)
{
    const char *c = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(j, "errors"), 0),
                        "extensions"),
        "code"));
    return c ? c : "";
}

static void expect_code(const struct it_resp *r, int status,
                        const char *code)
{
    cr_expect_eq(r->status, status, "%d: %.*s", r->status,
                 (int)r->body_len, r->body);
    json_t *j = jbody(r);
    cr_expect_str_eq(error_code(j), code, "%.*s", (int)r->body_len, r->body);
    json_decref(j);
}

/* create_item on board 1234 with column values (a JSON object as text);
 * the new id into id[32] when it worked. */
static struct it_resp create(const char *name, const char *values,
                             bool labels, char id[32])
{
    json_t *v = json_pack("{s:s,s:s,s:s,s:b}", "board", "1234", "name", name,
                          "values", values, "labels", labels);
    char *vars = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    struct it_resp r = gql(M_CREATE, vars);
    free(vars);
    if (id) {
        id[0] = '\0';
        json_t *j = jbody(&r);
        const char *s = json_string_value(json_object_get(
            json_object_get(json_object_get(j, "data"), "create_item"),
            "id"));
        if (s)
            snprintf(id, 32, "%s", s);
        json_decref(j);
    }
    return r;
}

/* The ids items_page_by_column_values finds for one column and value. */
static char *search(const char *col, const char *value)
{
    char *vars = xasprintf("{\"board\":\"1234\",\"columns\":[{\"column_id\":"
                           "\"%s\",\"column_values\":[\"%s\"]}]}",
                           col, value);
    struct it_resp r = gql(Q_SEARCH, vars);
    free(vars);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    const json_t *items = json_object_get(
        json_object_get(json_object_get(j, "data"),
                        "items_page_by_column_values"),
        "items");
    cr_assert(json_is_array(items), "%.*s", (int)r.body_len, r.body);
    struct buf b;
    buf_init(&b, 4096);
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        (void)!buf_addf(&b, "%s%s", i ? "," : "",
                        json_string_value(json_object_get(it, "id")));
    }
    json_decref(j);
    char *s = buf_take(&b, NULL);
    return s ? s : xstrdup("");
}

static int count(const char *type)
{
    char path[128];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=monday&type=%s&count=1", type);
    struct it_resp r = it_get(sb_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = jbody(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

#define ITEM_VALUES                                                       \
    "{\"phone\":{\"phone\":\"+14155550101\",\"countryShortName\":\"US\"}," \
    "\"email_1\":{\"email\":\"ann@example.com\","                          \
    "\"text\":\"ann@example.com\"},\"text_marker\":\"callsync:abc\","      \
    "\"status\":{\"label\":\"Done\"},\"date4\":{\"date\":\"2026-02-20\","  \
    "\"time\":\"20:00:00\"},\"long_text\":{\"text\":\"Summary\"},"         \
    "\"numbers\":\"87\"}"

/* ---- Tests -------------------------------------------------------------- */

Test(sbmon, auth_and_api_version)
{
    const char *b = "{\"query\":\"query { complexity { query } }\"}";
    struct it_resp r = post_raw(NULL, b);
    cr_expect_eq(r.status, 401);
    json_t *j = jbody(&r);
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "errors"), 0),
                         "message")),
                     "Not Authenticated");
    json_decref(j);
    r = post_raw("Authorization: wrong\r\n", b);
    cr_expect_eq(r.status, 401);
    r = post_raw("Authorization: Bearer " TOKEN "\r\n", b);
    cr_expect_eq(r.status, 200, "Bearer is accepted too");
    r = post_raw("Authorization: " TOKEN "\r\nAPI-Version: latest\r\n", b);
    cr_expect_eq(r.status, 400);
    r = post_raw(H, "not json");
    cr_expect_eq(r.status, 400);
    r = it_get(sb_port, "/monday/v2");
    cr_expect_eq(r.status, 405);
}

Test(sbmon, create_then_find_by_each_column_as_monday_matches)
{
    char id[32];
    struct it_resp r = create("Ann Lee", ITEM_VALUES, false, id);
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    cr_assert(id[0], "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    json_t *cx = json_object_get(json_object_get(j, "data"), "complexity");
    cr_expect_eq(json_integer_value(json_object_get(cx, "query")), 10000);
    cr_expect_eq(json_integer_value(json_object_get(cx, "after")),
                 json_integer_value(json_object_get(cx, "before")) - 10000);
    json_decref(j);
    cr_expect_eq(count("items"), 1);

    char *s = search("phone", "4155550101");
    cr_expect_str_eq(s, id, "a run of the number's digits");
    free(s);
    s = search("phone", "9999");
    cr_expect_str_eq(s, "");
    free(s);
    s = search("email_1", "ann@example.com");
    cr_expect_str_eq(s, id);
    free(s);
    s = search("email_1", "ANN@example.com");
    cr_expect_str_eq(s, "", "email matches the exact label");
    free(s);
    s = search("text_marker", "CALLSYNC:ABC");
    cr_expect_str_eq(s, id, "text matches in any case");
    free(s);
    s = search("status", "Done");
    cr_expect_str_eq(s, id);
    free(s);

    /* the answer's value is the JSON-encoded column value */
    r = gql(Q_SEARCH, "{\"board\":1234,\"columns\":[{\"column_id\":\"phone\","
                      "\"column_values\":[\"14155550101\"]}]}");
    j = jbody(&r);
    const json_t *cols = json_object_get(
        json_array_get(json_object_get(
                           json_object_get(json_object_get(j, "data"),
                                           "items_page_by_column_values"),
                           "items"),
                       0),
        "column_values");
    size_t i;
    const json_t *c;
    bool saw = false;
    json_array_foreach(cols, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "id")), "phone"))
            continue;
        saw = true;
        cr_expect_str_eq(json_string_value(json_object_get(c, "value")),
                         "{\"phone\":\"+14155550101\",\"countryShortName\":"
                         "\"US\"}");
        cr_expect_str_eq(json_string_value(json_object_get(c, "text")),
                         "+14155550101");
    }
    cr_expect(saw);
    json_decref(j);
}

Test(sbmon, column_values_are_checked_per_type)
{
    struct it_resp r = create("x", "{\"color_1\":\"red\"}", false, NULL);
    expect_code(&r, 200, "InvalidColumnIdException");
    r = create("x", "{\"phone\":{\"phone\":\"+14155550101\"}}", false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    json_t *j = jbody(&r);
    cr_expect_str_eq(
        json_string_value(json_object_get(
            json_object_get(json_object_get(json_array_get(
                                                json_object_get(j, "errors"),
                                                0),
                                            "extensions"),
                            "error_data"),
            "column_type")),
        "phone");
    json_decref(j);
    r = create("x", "{\"phone\":{\"phone\":\"call me\","
                    "\"countryShortName\":\"US\"}}",
               false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    r = create("x", "{\"email\":{\"email\":\"a@b.c\"}}", false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    r = create("x", "{\"status\":{\"label\":\"Hot lead\"}}", false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    r = create("x", "{\"date\":{\"date\":\"20/02/2026\"}}", false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    r = create("x", "{\"date\":{\"date\":\"2026-02-20\",\"time\":\"2pm\"}}",
               false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    r = create("x", "{\"numbers\":\"eighty\"}", false, NULL);
    expect_code(&r, 200, "ColumnValueException");
    r = create("x", "not json", false, NULL);
    expect_code(&r, 200, "JsonParseException");
    char name[300];
    memset(name, 'n', 256);
    name[256] = '\0';
    r = create(name, "{}", false, NULL);
    expect_code(&r, 200, "ItemNameTooLongException");
    cr_expect_eq(count("items"), 0, "nothing was written");

    /* a new status label only when asked to create it */
    char id[32];
    r = create("x", "{\"status\":{\"label\":\"Hot lead\"}}", true, id);
    cr_expect(id[0], "%.*s", (int)r.body_len, r.body);
    r = create("y", "{\"status\":{\"label\":\"Hot lead\"}}", false, id);
    cr_expect(id[0], "the label exists now");
}

Test(sbmon, the_document_is_read_and_validated)
{
    struct it_resp r = gql(M_CREATE, "{\"name\":\"x\"}");
    expect_code(&r, 200, "INVALID_VARIABLE");
    json_t *j = jbody(&r);
    cr_expect(strstr(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "errors"), 0),
                         "message")),
                     "$board of type ID!"));
    json_decref(j);
    r = gql(M_CREATE, "{\"board\":\"1\",\"name\":7}");
    expect_code(&r, 200, "INVALID_VARIABLE");
    r = gql("query { users { id } }", NULL);
    expect_code(&r, 200, "undefinedField");
    r = gql("query { create_item (board_id: 1, item_name: \"x\") { id } }",
            NULL);
    expect_code(&r, 200, "undefinedField");
    r = gql("mutation { create_item (board_id: 1 { id } }", NULL);
    expect_code(&r, 200, "PARSE_ERROR");
    r = gql("query ($x: Colour) { complexity { query } }", NULL);
    expect_code(&r, 200, "variableRequiresValidType");
    r = gql("query { items (ids: [$nope]) { id } }", NULL);
    expect_code(&r, 200, "PARSE_ERROR");
    /* literals and aliases work too */
    r = gql("mutation { made: create_item (board_id: 1234, item_name: "
            "\"Lit\", column_values: \"{\\\"text\\\":\\\"hi\\\"}\") "
            "{ id } }",
            NULL);
    cr_expect_eq(r.status, 200);
    j = jbody(&r);
    cr_expect(json_string_value(json_object_get(
                  json_object_get(json_object_get(j, "data"), "made"), "id")),
              "%.*s", (int)r.body_len, r.body);
    json_decref(j);
    cr_expect_eq(count("items"), 1);
}

Test(sbmon, change_values_and_updates)
{
    char id[32];
    create("Ann", ITEM_VALUES, false, id);
    cr_assert(id[0]);
    const char *m =
        "mutation ($board: ID!, $item: ID!, $values: JSON!) { "
        "change_multiple_column_values (board_id: $board, item_id: $item, "
        "column_values: $values) { id } }";
    char *vars = xasprintf("{\"board\":\"1234\",\"item\":\"%s\",\"values\":"
                           "\"{\\\"status\\\":{\\\"label\\\":"
                           "\\\"Stuck\\\"}}\"}",
                           id);
    struct it_resp r = gql(m, vars);
    free(vars);
    cr_expect_eq(r.status, 200);
    char *found = search("status", "Stuck");
    cr_expect_str_eq(found, id);
    free(found);
    r = gql(m, "{\"board\":\"1234\",\"item\":\"77\",\"values\":\"{}\"}");
    expect_code(&r, 200, "InvalidItemIdException");

    const char *u = "mutation ($item: ID!, $body: String!) { create_update "
                    "(item_id: $item, body: $body) { id } }";
    vars = xasprintf("{\"item\":\"%s\",\"body\":\"<b>first</b> &amp; "
                     "one<br>two\"}",
                     id);
    r = gql(u, vars);
    free(vars);
    cr_expect_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    vars = xasprintf("{\"item\":\"%s\",\"body\":\"second\"}", id);
    r = gql(u, vars);
    free(vars);
    r = gql(u, "{\"item\":\"77\",\"body\":\"x\"}");
    expect_code(&r, 200, "InvalidItemIdException");
    cr_expect_eq(count("updates"), 2);

    vars = xasprintf("{\"ids\":[\"%s\",\"77\"]}", id);
    r = gql("query ($ids: [ID!]) { items (ids: $ids) { id updates "
            "(limit: 100) { id body text_body } } }",
            vars);
    free(vars);
    json_t *j = jbody(&r);
    const json_t *items = json_object_get(json_object_get(j, "data"),
                                          "items");
    cr_expect_eq(json_array_size(items), 1, "unknown ids are left out");
    const json_t *ups = json_object_get(json_array_get(items, 0), "updates");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(ups, 0), "body")),
                     "second", "newest first");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(ups, 1), "text_body")),
                     "first & one\ntwo");
    json_decref(j);
}

Test(sbmon, faults_and_records)
{
    const char *rules =
        "[{\"provider\":\"monday\",\"status\":503,\"count\":1},"
        "{\"provider\":\"monday\",\"method\":\"POST\",\"hang\":true,"
        "\"process\":true,\"hang_ms\":300,\"count\":1}]";
    struct it_resp r = it_post(sb_port, "/_sandbox/faults", NULL, rules,
                               strlen(rules));
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    r = create("x", "{}", false, NULL);
    expect_code(&r, 503, "INTERNAL_SERVER_ERROR");
    /* the hang runs the mutation, then never answers */
    json_t *b = json_pack("{s:s,s:{s:s,s:s}}", "query", M_CREATE,
                          "variables", "board", "1234", "name", "hung");
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    char *text = xasprintf("POST /monday/v2 HTTP/1.1\r\nHost: t\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n" H "\r\n%s",
                           strlen(body), body);
    int fd = it_connect(sb_port);
    it_send(fd, text, strlen(text));
    struct it_resp hr;
    cr_expect_not(it_read_resp(fd, &hr, 1000), "no answer during a hang");
    close(fd);
    free(text);
    free(body);
    cr_expect_eq(count("items"), 1, "the write happened");
    r = it_get(sb_port, "/_sandbox/records?provider=monday&type=bogus");
    cr_expect_eq(r.status, 400);
    r = it_post(sb_port, "/_sandbox/reset", NULL, "", 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(count("items"), 0);
}

Test(sbmon, boards_answer_the_columns_asked_for)
{
    struct it_resp r = gql(
        "query ($b: [ID!], $c: [String]) { boards (ids: $b) { id name "
        "columns (ids: $c) { id title type } } }",
        "{\"b\":[\"1234\",\"x\"],\"c\":[\"phone\",\"long_text_1\","
        "\"color\"]}");
    cr_assert_eq(r.status, 200, "%.*s", (int)r.body_len, r.body);
    json_t *j = jbody(&r);
    const json_t *boards = json_object_get(json_object_get(j, "data"),
                                           "boards");
    cr_expect_eq(json_array_size(boards), 1, "no board 'x'");
    const json_t *b = json_array_get(boards, 0);
    cr_expect_str_eq(json_string_value(json_object_get(b, "name")),
                     "Board 1234");
    json_t *want = json_loads(
        "[{\"id\":\"name\",\"title\":\"Name\",\"type\":\"name\"},"
        "{\"id\":\"phone\",\"title\":\"phone\",\"type\":\"phone\"},"
        "{\"id\":\"long_text_1\",\"title\":\"long_text_1\","
        "\"type\":\"long_text\"}]",
        0, NULL);
    cr_expect(json_equal(json_object_get(b, "columns"), want), "%.*s",
              (int)r.body_len, r.body);
    json_decref(want);
    json_decref(j);
}

Test(sbmon_opts, only_the_given_boards_exist)
{
    const char *extra[] = {"--monday-board", "1234", NULL};
    start_with(extra);
    char id[32];
    create("ok", "{}", false, id);
    cr_expect(id[0]);
    struct it_resp r = gql(M_CREATE, "{\"board\":\"999\",\"name\":\"x\"}");
    expect_code(&r, 200, "InvalidBoardIdException");
    r = gql(Q_SEARCH, "{\"board\":\"999\",\"columns\":[{\"column_id\":"
                      "\"phone\",\"column_values\":[\"1\"]}]}");
    expect_code(&r, 200, "InvalidBoardIdException");
}

static void expect_limited(const struct it_resp *r, const char *code)
{
    expect_code(r, 429, code);
    cr_expect(strstr(r->headers, "\r\nRetry-After: "), "%s", r->headers);
    json_t *j = jbody(r);
    const json_t *ext = json_object_get(
        json_array_get(json_object_get(j, "errors"), 0), "extensions");
    cr_expect(json_integer_value(json_object_get(ext, "retry_in_seconds")) >
                  0,
              "%.*s", (int)r->body_len, r->body);
    json_decref(j);
}

Test(sbmon_opts, minute_daily_and_complexity_limits)
{
    const char *extra[] = {"--monday-rate", "3", NULL};
    start_with(extra);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(create("x", "{}", false, NULL).status, 200);
    struct it_resp r = create("x", "{}", false, NULL);
    expect_limited(&r, "RATE_LIMIT_EXCEEDED");
    cr_expect_eq(count("items"), 3);
    stop();

    const char *daily[] = {"--monday-daily", "2", NULL};
    start_with(daily);
    create("x", "{}", false, NULL);
    create("x", "{}", false, NULL);
    r = create("x", "{}", false, NULL);
    expect_limited(&r, "DAILY_LIMIT_EXCEEDED");
    stop();

    const char *budget[] = {"--monday-budget", "15000", NULL};
    start_with(budget);
    cr_expect_eq(create("x", "{}", false, NULL).status, 200);
    r = create("x", "{}", false, NULL);
    expect_limited(&r, "COMPLEXITY_BUDGET_EXHAUSTED");
    cr_expect_eq(count("items"), 1, "a query that does not fit runs nothing");
    char *s = search("phone", "1");
    cr_expect_str_eq(s, "", "a cheap query still fits");
    free(s);
}
