/*
 * test_pipedrive.c - the Pipedrive provider, step by step: the exact
 * requests (method, URL with query, auth header, JSON body compared as
 * JSON), every request checked against its operation as the API
 * reference documents it (the query parameters it names, the body
 * properties of AddPersonRequest, AddDealRequest, AddActivityRequest and
 * the v1 note, with their types), answers shaped like the reference's
 * examples, reconciliation, applies() rules, field mappings with
 * 40-character custom field keys, and error classification.
 */
#include "prov_support.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://pd.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define MARKER "callsync:" JOB_ID
#define NOW_MS 1771166100000LL /* 2026-02-15T14:35:00Z */
#define KEY1 "dcf558aac1ae4e8c4f849ba5e668430d8df9be12"
#define KEY2 "4bd3e0d6d8e3c54b39ba2e1e8b4a4de6aa12bf31"
#define CONFIG                                                               \
    "{\"company_domain\":\"acme\",\"pipeline_id\":1,\"stage_id\":2,"         \
    "\"default_owner\":7}"

/* ------------------------------------------------------------------ */
/* Fixture                                                            */
/* ------------------------------------------------------------------ */

struct fx {
    json_t *job;
    json_t *config;
    json_t *done;
    json_t *scratch;
    struct prov_creds creds;
    struct prov_ctx ctx;
};

static json_t *jparse(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, 0, &e);
    cr_assert_not_null(v, "bad test json: %s (%s)", e.text, s);
    return v;
}

static json_t *base_call(void)
{
    return jparse(
        "{\"call_id\":\"call_abc123\",\"source\":\"retell\","
        "\"agent_id\":\"agent_1\",\"org_id\":\"org_1\","
        "\"customer\":{\"name\":\"Jane Smith\",\"first_name\":\"Jane\","
        "\"last_name\":\"Smith\",\"phone\":\"+14079780655\","
        "\"email\":\"jane+roof@example.com\",\"address\":null,"
        "\"city\":\"Orlando\",\"state\":\"FL\"},"
        "\"direction\":\"inbound\",\"outcome\":\"appointment_booked\","
        "\"summary\":\"Customer scheduled <roof> repair & gutters\","
        "\"sentiment\":\"positive\",\"transcript\":\"Agent: Hi\\nUser: Hello\","
        "\"recording_url\":\"https://rec.example.com/r/1.wav?a=1&b=2\","
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:35:00Z\",\"duration_s\":300,"
        "\"appointment\":{\"title\":\"Roof Repair\",\"date\":\"2026-02-20\","
        "\"time\":\"19:30\",\"timezone\":\"America/New_York\","
        "\"duration_min\":90,\"service_type\":\"roofing\"},"
        "\"analysis\":{\"intent\":\"appointment_booking\","
        "\"project_type\":\"kitchen\",\"urgency\":\"high\",\"lead_score\":87},"
        "\"custom\":{\"promo\":\"SPRING\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:o}", "job_id", JOB_ID,
                       "provider", "pipedrive", "connection_id",
                       "7d0e1c52-0000-4000-8000-000000000001", "kind",
                       "call_sync", "attempt", 1, "first_enqueued_at",
                       "2026-02-15T14:35:10Z", "call", call);
    f->config = jparse(config ? config : CONFIG);
    f->done = json_object();
    f->scratch = json_object();
    f->creds.api_key = "pd-api-token-secret";
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
    json_decref(f->job);
    json_decref(f->config);
    json_decref(f->done);
    json_decref(f->scratch);
}

static void fx_step(struct fx *f, bool reconcile)
{
    json_object_clear(f->scratch);
    f->ctx.reconcile = reconcile;
}

static void fx_person_done(struct fx *f)
{
    json_object_set_new(f->done, "person", json_pack("{s:i}", "person_id",
                                                     42));
}

static void config_set(struct fx *f, const char *key, const char *json)
{
    json_error_t e;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &e);
    cr_assert_not_null(v, "bad test json: %s (%s)", e.text, json);
    json_object_set_new(f->config, key, v);
}

static const struct prov_step *step(const char *name)
{
    for (size_t i = 0; i < prov_pipedrive.nsteps; i++)
        if (strcmp(prov_pipedrive.steps[i].name, name) == 0)
            return &prov_pipedrive.steps[i];
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

/* ------------------------------------------------------------------ */
/* The operations, as the API reference documents them                */
/* ------------------------------------------------------------------ */

/*
 * Body properties are "name:t" with t one of i (integer), s (string),
 * b (boolean), n (number), a (array), o (object); a leading '*' marks a
 * required one.
 */
struct op {
    const char *method;
    const char *path; /* {id} matches one segment of digits */
    const char *query[20];
    const char *body[26];
};

static const struct op ops[] = {
    {"GET", "/api/v2/persons/search",
     {"*term", "fields", "exact_match", "organization_id", "include_fields",
      "limit", "cursor"},
     {NULL}},
    {"GET", "/api/v2/persons",
     {"filter_id", "ids", "owner_id", "org_id", "deal_id", "updated_since",
      "updated_until", "sort_by", "sort_direction", "include_fields",
      "custom_fields", "limit", "cursor"},
     {NULL}},
    {"GET", "/api/v2/persons/{id}",
     {"include_fields", "custom_fields", "include_option_labels",
      "include_labels"},
     {NULL}},
    {"POST", "/api/v2/persons",
     {NULL},
     {"*name:s", "owner_id:i", "org_id:i", "add_time:s", "update_time:s",
      "emails:a", "phones:a", "visible_to:i", "label_ids:a",
      "marketing_status:s", "custom_fields:o"}},
    {"PATCH", "/api/v2/persons/{id}",
     {NULL},
     {"name:s", "owner_id:i", "org_id:i", "add_time:s", "update_time:s",
      "emails:a", "phones:a", "visible_to:i", "label_ids:a",
      "marketing_status:s", "custom_fields:o"}},
    {"GET", "/api/v1/notes",
     {"user_id", "lead_id", "deal_id", "person_id", "org_id", "project_id",
      "start", "limit", "sort", "start_date", "end_date", "updated_since",
      "pinned_to_lead_flag", "pinned_to_deal_flag",
      "pinned_to_organization_flag", "pinned_to_person_flag"},
     {NULL}},
    {"POST", "/api/v1/notes",
     {NULL},
     {"*content:s", "lead_id:s", "deal_id:i", "person_id:i", "org_id:i",
      "project_id:i", "user_id:i", "add_time:s", "pinned_to_lead_flag:i",
      "pinned_to_deal_flag:i", "pinned_to_organization_flag:i",
      "pinned_to_person_flag:i", "pinned_to_project_flag:i"}},
    {"GET", "/api/v2/deals",
     {"filter_id", "ids", "owner_id", "person_id", "org_id", "pipeline_id",
      "stage_id", "status", "updated_since", "updated_until", "sort_by",
      "sort_direction", "include_fields", "custom_fields", "limit",
      "cursor"},
     {NULL}},
    {"POST", "/api/v2/deals",
     {NULL},
     {"*title:s", "owner_id:i", "person_id:i", "org_id:i", "pipeline_id:i",
      "stage_id:i", "value:n", "currency:s", "add_time:s", "update_time:s",
      "stage_change_time:s", "is_deleted:b", "is_archived:b",
      "archive_time:s", "status:s", "probability:i", "lost_reason:s",
      "visible_to:i", "close_time:s", "won_time:s", "lost_time:s",
      "expected_close_date:s", "label_ids:a", "custom_fields:o"}},
    {"GET", "/api/v2/activities",
     {"filter_id", "ids", "owner_id", "deal_id", "lead_id", "person_id",
      "org_id", "updated_since", "updated_until", "sort_by",
      "sort_direction", "include_fields", "limit", "cursor"},
     {NULL}},
    {"POST", "/api/v2/activities",
     {NULL},
     {"subject:s", "type:s", "owner_id:i", "deal_id:i", "lead_id:s",
      "person_id:i", "org_id:i", "project_id:i", "due_date:s", "due_time:s",
      "duration:s", "busy:b", "done:b", "location:o", "participants:a",
      "attendees:a", "public_description:s", "priority:i", "note:s"}},
};

static bool path_match(const char *tpl, const char *path)
{
    while (*tpl && *path) {
        if (*tpl == '{') {
            tpl = strchr(tpl, '}') + 1;
            if (!(*path >= '0' && *path <= '9'))
                return false;
            while (*path >= '0' && *path <= '9')
                path++;
            continue;
        }
        if (*tpl++ != *path++)
            return false;
    }
    return *tpl == '\0' && *path == '\0';
}

static bool type_ok(char t, const json_t *v)
{
    switch (t) {
    case 'i': return json_is_integer(v);
    case 's': return json_is_string(v);
    case 'b': return json_is_boolean(v);
    case 'n': return json_is_number(v);
    case 'a': return json_is_array(v);
    case 'o': return json_is_object(v);
    default: return false;
    }
}

/* The query string's value of name, or NULL (not decoded). */
static char *query_of(const struct prov_request *rq, const char *name)
{
    const char *q = strchr(rq->url, '?');
    size_t nl = strlen(name);
    while (q && *q) {
        q++;
        size_t len = strcspn(q, "&");
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=')
            return strndup(q + nl + 1, len - nl - 1);
        q += len;
    }
    return NULL;
}

/* Check a built request against its documented operation. */
static void validate(const struct prov_request *rq)
{
    cr_assert(strncmp(rq->url, BASE, strlen(BASE)) == 0, "url %s", rq->url);
    char path[1024];
    snprintf(path, sizeof(path), "%s", rq->url + strlen(BASE));
    char *qm = strchr(path, '?');
    if (qm)
        *qm = '\0';
    const struct op *op = NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(ops) && !op; i++)
        if (strcmp(ops[i].method, rq->method) == 0 &&
            path_match(ops[i].path, path))
            op = &ops[i];
    cr_assert_not_null(op, "%s %s is not a documented operation",
                       rq->method, path);
    for (size_t i = 0; op->query[i]; i++) {
        if (op->query[i][0] != '*')
            continue;
        char *v = query_of(rq, op->query[i] + 1);
        cr_assert(v && *v, "%s: required query parameter %s missing", path,
                  op->query[i] + 1);
        free(v);
    }
    const char *q = strchr(rq->url, '?');
    while (q && *q) {
        q++;
        size_t len = strcspn(q, "=&");
        bool known = false;
        for (size_t i = 0; op->query[i]; i++) {
            const char *n = op->query[i] + (op->query[i][0] == '*');
            known |= strlen(n) == len && strncmp(n, q, len) == 0;
        }
        cr_assert(known, "%s: unknown query parameter %.*s", path, (int)len,
                  q);
        q += strcspn(q, "&");
    }
    if (!op->body[0]) {
        cr_assert_null(rq->body, "%s %s takes no body", rq->method, path);
        return;
    }
    cr_assert_not_null(rq->body, "%s %s needs a body", rq->method, path);
    json_t *b = jparse(rq->body);
    cr_assert(json_is_object(b));
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        bool ok = false;
        for (size_t i = 0; op->body[i] && !ok; i++) {
            const char *d = op->body[i] + (op->body[i][0] == '*');
            size_t n = strcspn(d, ":");
            if (strlen(k) == n && strncmp(d, k, n) == 0) {
                cr_assert(type_ok(d[n + 1], v), "%s %s: '%s' must be %c",
                          rq->method, path, k, d[n + 1]);
                ok = true;
            }
        }
        cr_assert(ok, "%s %s: '%s' is not a documented property",
                  rq->method, path, k);
    }
    for (size_t i = 0; op->body[i]; i++) {
        if (op->body[i][0] != '*')
            continue;
        char n[64];
        snprintf(n, sizeof(n), "%.*s", (int)strcspn(op->body[i] + 1, ":"),
                 op->body[i] + 1);
        cr_assert_not_null(json_object_get(b, n), "%s %s: '%s' missing",
                           rq->method, path, n);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Building and answering                                             */
/* ------------------------------------------------------------------ */

static void build(struct fx *f, const char *name, struct prov_request *rq,
                  const char *method, const char *url)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    int rc = step(name)->build(&f->ctx, rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s (%s)", name, err.msg, err.field);
    cr_assert_str_eq(rq->method, method);
    char full[2048];
    snprintf(full, sizeof(full), "%s%s", BASE, url);
    cr_assert_str_eq(rq->url, full);
    cr_assert_str_eq(hdr(rq, "x-api-token"), "pd-api-token-secret");
    cr_assert_null(hdr(rq, "Authorization"));
    cr_assert_str_eq(hdr(rq, "Accept"), "application/json");
    if (rq->body) {
        cr_assert_str_eq(hdr(rq, "Content-Type"), "application/json");
        cr_assert_eq(rq->body_len, strlen(rq->body));
    } else {
        cr_assert_null(hdr(rq, "Content-Type"));
    }
    validate(rq);
}

static void expect_body(const struct prov_request *rq, const char *want)
{
    prov_expect_json(rq->body, want);
}

static json_t *body_of(const struct prov_request *rq)
{
    return jparse(rq->body);
}

static int build_err(struct fx *f, const char *name, struct cs_err *err)
{
    return prov_build_err(step(name), &f->ctx, err);
}

/* Feed an answer; headers as name, value pairs ending with NULL. */
static void answer(struct fx *f, const char *name, int status,
                   const char *body, struct prov_result *res, ...)
{
    va_list ap;
    va_start(ap, res);
    prov_feed_v(step(name), &f->ctx, status, body, res, -1, ap);
    va_end(ap);
}

static void expect_done(struct prov_result *res, const char *key,
                        long long id)
{
    cr_assert_eq(res->outcome, PROV_DONE, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    cr_assert(json_is_integer(json_object_get(res->value, key)),
              "checkpoint has no integer %s", key);
    cr_assert_eq(json_integer_value(json_object_get(res->value, key)), id);
    prov_result_release(res);
}

static void expect_next(struct prov_result *res)
{
    cr_assert_eq(res->outcome, PROV_NEXT, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    prov_result_release(res);
}

/* ------------------------------------------------------------------ */
/* Answers shaped like the reference's examples                       */
/* ------------------------------------------------------------------ */

#define SEARCH_EMPTY                                                         \
    "{\"success\":true,\"data\":{\"items\":[]},"                             \
    "\"additional_data\":{\"next_cursor\":null}}"

/* GetPersonSearchResponse: items[].item with phones and emails as
 * strings. */
#define SEARCH_HIT(id, email, phone)                                         \
    "{\"success\":true,\"data\":{\"items\":[{\"result_score\":1.22,"          \
    "\"item\":{\"id\":" id ",\"type\":\"person\",\"name\":\"Jane Smith\","   \
    "\"phones\":[\"" phone "\"],\"emails\":[\"" email "\"],"                 \
    "\"visible_to\":3,\"owner\":{\"id\":7},\"organization\":null,"           \
    "\"custom_fields\":[],\"notes\":[],"                                     \
    "\"update_time\":\"2026-02-01T10:00:00Z\"}}]},"                          \
    "\"additional_data\":{\"next_cursor\":null}}"

/* GetPersonResponse data. */
#define PERSON(id, extra)                                                    \
    "{\"success\":true,\"data\":{\"id\":" id ",\"name\":\"Jane Smith\","     \
    "\"first_name\":\"Jane\",\"last_name\":\"Smith\",\"owner_id\":7,"        \
    "\"org_id\":null,\"add_time\":\"2026-01-01T00:00:00Z\","                 \
    "\"update_time\":\"2026-02-01T00:00:00Z\",\"is_deleted\":false,"         \
    "\"visible_to\":3,\"label_ids\":[],\"picture_id\":null" extra "}}"

#define PERSON_FULL                                                          \
    PERSON("42", ",\"emails\":[{\"value\":\"JANE+roof@example.com\","         \
                 "\"primary\":true,\"label\":\"work\"}],"                    \
                 "\"phones\":[{\"value\":\"(407) 978-0655\","                 \
                 "\"primary\":true,\"label\":\"mobile\"}],"                  \
                 "\"custom_fields\":{}")

#define ADDED(id) "{\"success\":true,\"data\":{\"id\":" id "}}"

#define Q_EMAIL                                                              \
    "/api/v2/persons/search?term=jane%2Broof%40example.com&fields=email"     \
    "&exact_match=true&limit=10"
#define Q_PHONE                                                              \
    "/api/v2/persons/search?term=%2B14079780655&fields=phone"                \
    "&exact_match=true&limit=10"

/* ------------------------------------------------------------------ */
/* The table and the connection                                       */
/* ------------------------------------------------------------------ */

Test(pd, ops_table)
{
    cr_assert_eq(prov_find("pipedrive"), &prov_pipedrive);
    cr_expect_eq(prov_pipedrive.rate.requests, 20);
    cr_expect_eq(prov_pipedrive.rate.per_ms, 2000);
    cr_expect_str_eq(prov_pipedrive.rate_scope, "company_domain");
    const char *names[] = {"person", "note", "deal", "activity"};
    cr_assert_eq(prov_pipedrive.nsteps, CS_ARRAY_LEN(names));
    for (size_t i = 0; i < CS_ARRAY_LEN(names); i++) {
        cr_expect_str_eq(prov_pipedrive.steps[i].name, names[i]);
        cr_expect_eq(prov_pipedrive.steps[i].reconcile,
                     PROV_RECONCILE_LOOKUP);
    }
}

static char *url_for(const char *config, const char *instance,
                     const char *access, struct cs_err *err, int *rc)
{
    struct fx f;
    fx_init(&f, base_call(), config);
    f.ctx.base_url = NULL;
    f.creds.instance_url = instance;
    if (access) {
        f.creds.access_token = access;
        f.creds.api_key = NULL;
    }
    struct prov_request rq = {0};
    memset(err, 0, sizeof(*err));
    *rc = step("person")->build(&f.ctx, &rq, err);
    char *u = rq.url ? strdup(rq.url) : NULL;
    if (access && *rc == 0) {
        char want[128];
        snprintf(want, sizeof(want), "Bearer %s", access);
        cr_expect_str_eq(hdr(&rq, "Authorization"), want);
        cr_expect_null(hdr(&rq, "x-api-token"));
    }
    prov_request_release(&rq);
    fx_release(&f);
    return u;
}

Test(pd, base_url_and_auth)
{
    struct cs_err err;
    int rc;
    static const struct {
        const char *config, *instance, *want;
    } ok[] = {
        {"{\"company_domain\":\"acme\"}", NULL, "https://acme.pipedrive.com"},
        {"{\"company_domain\":\"acme-co.pipedrive.com\"}", NULL,
         "https://acme-co.pipedrive.com"},
        {"{\"company_domain\":\"https://Acme.pipedrive.com/\"}", NULL,
         "https://Acme.pipedrive.com"},
        {"{}", NULL, "https://api.pipedrive.com"},
        {"{\"company_domain\":\"acme\"}", "https://oauthco.pipedrive.com",
         "https://oauthco.pipedrive.com"},
        {"{}", "https://oauthco.pipedrive.com/",
         "https://oauthco.pipedrive.com"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(ok); i++) {
        char *u = url_for(ok[i].config, ok[i].instance, NULL, &err, &rc);
        cr_assert_eq(rc, 0, "%s: %s", ok[i].config, err.msg);
        char want[256];
        snprintf(want, sizeof(want), "%s%s", ok[i].want, Q_EMAIL);
        cr_expect_str_eq(u, want);
        free(u);
    }
    /* An OAuth token is a Bearer token. */
    free(url_for("{\"company_domain\":\"acme\"}", NULL, "oauth-at-1", &err,
                 &rc));
    cr_expect_eq(rc, 0);
    /* The secret only ever goes to a pipedrive.com company host. */
    static const struct {
        const char *config, *instance, *field;
    } bad[] = {
        {"{\"company_domain\":\"evil.example.com\"}", NULL,
         "config.company_domain"},
        {"{\"company_domain\":\"a.b.pipedrive.com\"}", NULL,
         "config.company_domain"},
        {"{\"company_domain\":\"-x\"}", NULL, "config.company_domain"},
        {"{}", "http://acme.pipedrive.com", "instance_url"},
        {"{}", "https://acme.pipedrive.com.evil.io", "instance_url"},
        {"{}", "https://acme.pipedrive.com/api", "instance_url"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        char *u = url_for(bad[i].config, bad[i].instance, NULL, &err, &rc);
        cr_expect_eq(rc, CS_EINVAL, "%s %s accepted", bad[i].config,
                     bad[i].instance ? bad[i].instance : "");
        cr_expect_str_eq(err.field, bad[i].field);
        cr_expect(strncmp(err.msg, "config_error: ", 14) == 0, "%s",
                  err.msg);
        free(u);
    }
    /* No credentials at all. */
    struct fx f;
    fx_init(&f, base_call(), NULL);
    f.creds.api_key = NULL;
    cr_expect_eq(build_err(&f, "person", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "no_credentials: ", 16) == 0, "%s", err.msg);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Person                                                             */
/* ------------------------------------------------------------------ */

Test(pd, person_search_email_then_phone_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    config_set(&f, "field_mappings",
               "{\"ai_analysis.lead_score\":\"custom_fields." KEY1 "\"}");
    config_set(&f, "custom_fields", "{\"" KEY2 "\":\"recording_url\"}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "person", &rq, "GET", Q_EMAIL);
    prov_request_release(&rq);
    answer(&f, "person", 200, SEARCH_EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "GET", Q_PHONE);
    prov_request_release(&rq);
    answer(&f, "person", 200, SEARCH_EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "POST", "/api/v2/persons");
    expect_body(&rq,
                "{\"name\":\"Jane Smith\",\"owner_id\":7,"
                "\"emails\":[{\"value\":\"jane+roof@example.com\","
                "\"primary\":true,\"label\":\"work\"}],"
                "\"phones\":[{\"value\":\"+14079780655\",\"primary\":true,"
                "\"label\":\"mobile\"}],"
                "\"custom_fields\":{\"" KEY1 "\":87,\"" KEY2 "\":"
                "\"https://rec.example.com/r/1.wav?a=1&b=2\"}}");
    prov_request_release(&rq);
    answer(&f, "person", 200, PERSON("1001", ""), &res, NULL);
    expect_done(&res, "person_id", 1001);
    fx_release(&f);
}

Test(pd, person_found_with_everything_needs_no_update)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "person", &rq, "GET", Q_EMAIL);
    prov_request_release(&rq);
    answer(&f, "person", 200,
           SEARCH_HIT("42", "jane+ROOF@example.com", "4079780655"), &res,
           NULL);
    expect_next(&res);
    build(&f, "person", &rq, "GET", "/api/v2/persons/42");
    prov_request_release(&rq);
    /* Email in another case, phone written nationally: both known. */
    answer(&f, "person", 200, PERSON_FULL, &res, NULL);
    expect_done(&res, "person_id", 42);
    fx_release(&f);
}

Test(pd, person_found_is_filled_in_and_mapped)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    config_set(&f, "field_mappings",
               "[{\"target\":\"custom_fields." KEY1 "\","
               "\"source\":\"ai_analysis.lead_score\"},"
               "{\"target\":\"" KEY2 "\",\"source\":\"call_outcome\"},"
               "{\"target\":\"label_ids\",\"source\":\"call.custom.lbl\"},"
               "{\"target\":\"visible_to\",\"source\":\"call.custom.vis\"}]");
    json_object_set_new(json_object_get((json_t *)f.ctx.call, "custom"),
                        "lbl", json_pack("[i,i]", 5, 9));
    json_object_set_new(json_object_get((json_t *)f.ctx.call, "custom"),
                        "vis", json_string("7"));
    struct prov_request rq;
    struct prov_result res;
    build(&f, "person", &rq, "GET", Q_EMAIL);
    prov_request_release(&rq);
    answer(&f, "person", 200,
           SEARCH_HIT("42", "jane+roof@example.com", "+15550000000"), &res,
           NULL);
    expect_next(&res);
    build(&f, "person", &rq, "GET", "/api/v2/persons/42");
    prov_request_release(&rq);
    answer(&f, "person", 200,
           PERSON("42", ",\"name\":\"\",\"label_ids\":[9],"
                        "\"emails\":[{\"value\":\"jane+roof@example.com\","
                        "\"primary\":true,\"label\":\"work\"}],"
                        "\"phones\":[{\"value\":\"+15550000000\","
                        "\"primary\":true,\"label\":\"home\"}],"
                        "\"custom_fields\":{\"" KEY1 "\":87.0,"
                        "\"" KEY2 "\":\"old\"}"),
           &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "PATCH", "/api/v2/persons/42");
    /* The name only because it had none; the phone added to its own;
     * 87 already there; label 9 kept and 5 added; visible_to differs. */
    expect_body(&rq,
                "{\"name\":\"Jane Smith\","
                "\"phones\":[{\"value\":\"+15550000000\",\"primary\":true,"
                "\"label\":\"home\"},{\"value\":\"+14079780655\","
                "\"primary\":false,\"label\":\"mobile\"}],"
                "\"label_ids\":[9,5],\"visible_to\":7,"
                "\"custom_fields\":{\"" KEY2 "\":\"appointment_booked\"}}");
    prov_request_release(&rq);
    answer(&f, "person", 200, PERSON("42", ""), &res, NULL);
    expect_done(&res, "person_id", 42);
    fx_release(&f);
}

Test(pd, person_loose_search_hit_is_not_adopted)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "person", &rq, "GET", Q_EMAIL);
    prov_request_release(&rq);
    answer(&f, "person", 200,
           SEARCH_HIT("43", "jane@example.com", "+15550000000"), &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "GET", Q_PHONE);
    prov_request_release(&rq);
    answer(&f, "person", 200,
           SEARCH_HIT("44", "x@example.com", "+14079780656"), &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "POST", "/api/v2/persons");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(pd, person_reconcile_lists_recent_persons_first)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_step(&f, true);
    struct prov_request rq;
    struct prov_result res;
    /* Enqueued 14:35:10, five minutes of slack. */
    const char *recent =
        "/api/v2/persons?updated_since=2026-02-15T14%3A30%3A10Z"
        "&sort_by=update_time&sort_direction=desc&limit=500";
    build(&f, "person", &rq, "GET", recent);
    prov_request_release(&rq);
    answer(&f, "person", 200,
           "{\"success\":true,\"data\":[{\"id\":50,\"name\":\"Other\","
           "\"emails\":[],\"phones\":[]}],"
           "\"additional_data\":{\"next_cursor\":\"eyJpZCI6NTB9\"}}",
           &res, NULL);
    expect_next(&res);
    char next[512];
    snprintf(next, sizeof(next), "%s&cursor=eyJpZCI6NTB9", recent);
    build(&f, "person", &rq, "GET", next);
    prov_request_release(&rq);
    /* The person the lost create wrote: adopted, nothing to add. */
    answer(&f, "person", 200,
           "{\"success\":true,\"data\":[{\"id\":61,\"name\":\"Jane Smith\","
           "\"is_deleted\":false,\"emails\":[{\"value\":"
           "\"jane+roof@example.com\",\"primary\":true,\"label\":\"work\"}],"
           "\"phones\":[{\"value\":\"+14079780655\",\"primary\":true,"
           "\"label\":\"mobile\"}],\"custom_fields\":{}}],"
           "\"additional_data\":{\"next_cursor\":null}}",
           &res, NULL);
    expect_done(&res, "person_id", 61);

    /* Nothing recent: the usual search. */
    fx_step(&f, true);
    build(&f, "person", &rq, "GET", recent);
    prov_request_release(&rq);
    answer(&f, "person", 200,
           "{\"success\":true,\"data\":[],\"additional_data\":"
           "{\"next_cursor\":null}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "GET", Q_EMAIL);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(pd, person_vanished_before_the_update)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    json_object_set_new(f.scratch, "phase", json_string("fetch"));
    json_object_set_new(f.scratch, "person_id", json_integer(42));
    build(&f, "person", &rq, "GET", "/api/v2/persons/42");
    prov_request_release(&rq);
    answer(&f, "person", 404,
           "{\"success\":false,\"error\":\"Person not found\","
           "\"error_info\":\"Please check developers.pipedrive.com\","
           "\"data\":null,\"additional_data\":null}",
           &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "POST", "/api/v2/persons");
    prov_request_release(&rq);
    /* A second vanishing in one attempt is permanent. */
    json_object_set_new(f.scratch, "phase", json_string("update"));
    json_object_set_new(f.scratch, "person_id", json_integer(42));
    answer(&f, "person", 404, "{\"success\":false,\"error\":\"gone\"}", &res,
           NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "person_vanished");
    prov_result_release(&res);
    fx_release(&f);
}

Test(pd, person_phone_only_gets_the_phone_as_name)
{
    json_t *call = base_call();
    json_t *cust = json_object_get(call, "customer");
    json_object_del(cust, "email");
    json_object_del(cust, "name");
    json_object_del(cust, "first_name");
    json_object_del(cust, "last_name");
    struct fx f;
    fx_init(&f, call, "{}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "person", &rq, "GET", Q_PHONE);
    prov_request_release(&rq);
    answer(&f, "person", 200, SEARCH_EMPTY, &res, NULL);
    expect_next(&res);
    build(&f, "person", &rq, "POST", "/api/v2/persons");
    expect_body(&rq, "{\"name\":\"+14079780655\",\"phones\":[{\"value\":"
                     "\"+14079780655\",\"primary\":true,\"label\":"
                     "\"mobile\"}]}");
    prov_request_release(&rq);
    fx_release(&f);

    /* Neither phone nor email: permanent, nothing sent. */
    call = base_call();
    cust = json_object_get(call, "customer");
    json_object_del(cust, "email");
    json_object_del(cust, "phone");
    fx_init(&f, call, NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "person", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "no_contact_key: ", 16) == 0, "%s", err.msg);
    fx_release(&f);
}

Test(pd, mapping_errors_are_permanent_with_a_reason)
{
    static const struct {
        const char *key, *json, *field, *says;
    } cases[] = {
        {"field_mappings", "{\"customer_phone\":\"mobile\"}", "field_mappings",
         "'mobile' is not a Pipedrive person field"},
        /* Seed 003 wrote field_mappings target first; callsync's object
         * form is source first (mapping.h), and says so. */
        {"field_mappings", "{\"name\":\"customer_name\"}", "field_mappings",
         "'customer_name' is not a Pipedrive person field"},
        {"field_mappings", "{\"call_id\":\"custom_fields.lead_score\"}",
         "custom_fields", "40-character key"},
        {"custom_fields", "{\"call_recording_url\":\"recording_url\"}",
         "custom_fields", "not a Pipedrive custom field key"},
        {"field_mappings", "{\"call_summary\":\"owner_id\"}", "owner_id",
         "takes an integer id"},
        {"field_mappings", "{\"call_outcome\":\"marketing_status\"}",
         "marketing_status", "cannot be 'appointment_booked'"},
        {"field_mappings", "17", "field_mappings", "a list or an object"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, base_call(), NULL);
        config_set(&f, cases[i].key, cases[i].json);
        struct cs_err err;
        cr_expect_eq(build_err(&f, "person", &err), CS_EINVAL, "%s",
                     cases[i].json);
        cr_expect_str_eq(err.field, cases[i].field, "%s", cases[i].json);
        cr_expect(strstr(err.msg, cases[i].says) &&
                      strncmp(err.msg, "mapping_error: ", 15) == 0,
                  "%s: %s", cases[i].json, err.msg);
        fx_release(&f);
    }
}

Test(pd, conditional_mapping_and_mapped_email)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    config_set(&f, "field_mappings",
               "{\"custom_fields." KEY1 "\":{\"type\":\"conditional\","
               "\"conditions\":[{\"if\":\"ai_analysis.lead_score > 80\","
               "\"then\":\"Hot\"},{\"default\":\"Cold\"}]},"
               "\"call.custom.promo\":\"email\"}");
    json_object_set_new(json_object_get((json_t *)f.ctx.call, "custom"),
                        "promo", json_string("second@example.com"));
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "person", &rq, "POST", "/api/v2/persons");
    expect_body(&rq,
                "{\"name\":\"Jane Smith\",\"owner_id\":7,"
                "\"emails\":[{\"value\":\"jane+roof@example.com\","
                "\"primary\":true,\"label\":\"work\"},{\"value\":"
                "\"second@example.com\",\"primary\":false,\"label\":"
                "\"work\"}],"
                "\"phones\":[{\"value\":\"+14079780655\",\"primary\":true,"
                "\"label\":\"mobile\"}],"
                "\"custom_fields\":{\"" KEY1 "\":\"Hot\"}}");
    prov_request_release(&rq);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Note                                                               */
/* ------------------------------------------------------------------ */

Test(pd, note_create_is_html_with_the_marker)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "note", &rq, "POST", "/api/v1/notes");
    json_t *b = body_of(&rq);
    cr_expect_eq(json_integer_value(json_object_get(b, "person_id")), 42);
    const char *c = json_string_value(json_object_get(b, "content"));
    cr_assert_not_null(c);
    cr_expect(strstr(c, "<b>Call outcome:</b> appointment_booked<br>"), "%s",
              c);
    cr_expect(strstr(c, "<b>Summary:</b> Customer scheduled &lt;roof&gt; "
                        "repair &amp; gutters<br>"),
              "%s", c);
    cr_expect(strstr(c, "<b>Sentiment:</b> positive"), "%s", c);
    cr_expect(strstr(c, "<b>Duration:</b> 5m 0s"), "%s", c);
    cr_expect(strstr(c, "<a href=\"https://rec.example.com/r/1.wav?a=1&amp;"
                        "b=2\">"),
              "%s", c);
    cr_expect(strstr(c, "Agent: Hi<br>User: Hello"), "%s", c);
    cr_expect(strstr(c, "<p>Sync reference: " MARKER "</p>"), "%s", c);
    json_decref(b);
    prov_request_release(&rq);
    answer(&f, "note", 201,
           "{\"success\":true,\"data\":{\"id\":301,\"active_flag\":true,"
           "\"add_time\":\"2026-02-15 14:35:20\",\"content\":\"...\","
           "\"person_id\":42,\"deal_id\":null,\"user_id\":7}}",
           &res, NULL);
    expect_done(&res, "note_id", 301);
    fx_release(&f);
}

Test(pd, note_transcript_excerpt_is_cut_on_a_character)
{
    json_t *call = base_call();
    /* 2999 ASCII bytes, then a 2-byte character straddling the cap. */
    char *tr = malloc(3200);
    memset(tr, 'a', 2999);
    memcpy(tr + 2999, "\xc3\xa9 and more", sizeof("\xc3\xa9 and more"));
    json_object_set_new(call, "transcript", json_string(tr));
    free(tr);
    struct fx f;
    fx_init(&f, call, NULL);
    fx_person_done(&f);
    struct prov_request rq;
    build(&f, "note", &rq, "POST", "/api/v1/notes");
    json_t *b = body_of(&rq);
    const char *c = json_string_value(json_object_get(b, "content"));
    cr_expect(strstr(c, "aaa [\xe2\x80\xa6]</p>"), "cut before the é");
    cr_expect_null(strstr(c, "and more"));
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(pd, note_reconcile_pages_for_the_marker)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    fx_step(&f, true);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "note", &rq, "GET",
          "/api/v1/notes?person_id=42&start=0&limit=100"
          "&sort=add_time%20DESC");
    prov_request_release(&rq);
    answer(&f, "note", 200,
           "{\"success\":true,\"data\":[{\"id\":300,\"content\":\"hello\","
           "\"person_id\":42}],\"additional_data\":{\"pagination\":"
           "{\"start\":0,\"limit\":100,\"more_items_in_collection\":true,"
           "\"next_start\":100}}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "note", &rq, "GET",
          "/api/v1/notes?person_id=42&start=100&limit=100"
          "&sort=add_time%20DESC");
    prov_request_release(&rq);
    answer(&f, "note", 200,
           "{\"success\":true,\"data\":[{\"id\":305,\"content\":\"<p>x</p>"
           "<p>Sync reference: " MARKER "</p>\",\"person_id\":42}],"
           "\"additional_data\":{\"pagination\":{\"start\":100,"
           "\"limit\":100,\"more_items_in_collection\":false}}}",
           &res, NULL);
    expect_done(&res, "note_id", 305);

    /* No notes at all: v1 answers data null; then the note is written. */
    fx_step(&f, true);
    build(&f, "note", &rq, "GET",
          "/api/v1/notes?person_id=42&start=0&limit=100"
          "&sort=add_time%20DESC");
    prov_request_release(&rq);
    answer(&f, "note", 200,
           "{\"success\":true,\"data\":null,\"additional_data\":"
           "{\"pagination\":{\"start\":0,\"limit\":100,"
           "\"more_items_in_collection\":false}}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "note", &rq, "POST", "/api/v1/notes");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(pd, note_without_person_is_an_error)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "note", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "no_person: ", 11) == 0, "%s", err.msg);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Deal                                                               */
/* ------------------------------------------------------------------ */

#define Q_DEALS                                                              \
    "/api/v2/deals?person_id=42&pipeline_id=1&status=open&limit=100"

Test(pd, deal_applies_only_with_a_pipeline)
{
    struct fx f;
    fx_init(&f, base_call(), "{}");
    cr_expect_not(step("deal")->applies(&f.ctx));
    config_set(&f, "pipeline_id", "\"3\"");
    cr_expect(step("deal")->applies(&f.ctx));
    config_set(&f, "pipeline_id", "\"three\"");
    cr_expect_not(step("deal")->applies(&f.ctx));
    fx_release(&f);
}

Test(pd, deal_lookup_then_create_with_seed_settings)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    config_set(&f, "deal_settings",
               "{\"title_template\":\"{{customer_name}} - "
               "{{ai_analysis.project_type}} Project\",\"currency\":\"USD\","
               "\"value_estimation\":{\"kitchen\":25000,\"default\":"
               "20000}}");
    config_set(&f, "deal_field_mappings",
               "{\"ai_analysis.lead_score\":\"custom_fields." KEY1 "\"}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "deal", &rq, "GET", Q_DEALS);
    prov_request_release(&rq);
    /* A deal of the person in another pipeline, and a lost one: no. */
    answer(&f, "deal", 200,
           "{\"success\":true,\"data\":[{\"id\":8,\"person_id\":42,"
           "\"pipeline_id\":2,\"status\":\"open\"},{\"id\":9,"
           "\"person_id\":42,\"pipeline_id\":1,\"status\":\"lost\"}],"
           "\"additional_data\":{\"next_cursor\":null}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "deal", &rq, "POST", "/api/v2/deals");
    expect_body(&rq, "{\"title\":\"Jane Smith - kitchen Project\","
                     "\"person_id\":42,\"pipeline_id\":1,\"stage_id\":2,"
                     "\"status\":\"open\",\"owner_id\":7,\"value\":25000,"
                     "\"currency\":\"USD\",\"custom_fields\":{\"" KEY1
                     "\":87}}");
    prov_request_release(&rq);
    answer(&f, "deal", 200,
           "{\"success\":true,\"data\":{\"id\":77,\"title\":\"x\","
           "\"person_id\":42,\"pipeline_id\":1,\"stage_id\":2,"
           "\"status\":\"open\",\"custom_fields\":{}}}",
           &res, NULL);
    expect_done(&res, "deal_id", 77);
    fx_release(&f);
}

Test(pd, deal_open_one_is_adopted)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "deal", &rq, "GET", Q_DEALS);
    prov_request_release(&rq);
    answer(&f, "deal", 200,
           "{\"success\":true,\"data\":[{\"id\":12,\"person_id\":42,"
           "\"pipeline_id\":1,\"stage_id\":5,\"status\":\"open\","
           "\"is_deleted\":false}],\"additional_data\":"
           "{\"next_cursor\":null}}",
           &res, NULL);
    expect_done(&res, "deal_id", 12);
    fx_release(&f);
}

Test(pd, deal_default_title_and_mapping_errors)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"pipeline_id\":\"4\",\"deal_value\":100}");
    fx_person_done(&f);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "deal", &rq, "POST", "/api/v2/deals");
    expect_body(&rq, "{\"title\":\"Jane Smith \xe2\x80\x93 "
                     "appointment_booked\",\"person_id\":42,"
                     "\"pipeline_id\":4,\"status\":\"open\",\"value\":100}");
    prov_request_release(&rq);
    struct cs_err err;
    config_set(&f, "deal_field_mappings", "{\"call_id\":\"status\"}");
    cr_expect_eq(build_err(&f, "deal", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "status");
    config_set(&f, "deal_field_mappings", "{\"call_id\":\"stage\"}");
    cr_expect_eq(build_err(&f, "deal", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "not a Pipedrive deal field"), "%s", err.msg);
    json_object_del(f.config, "deal_field_mappings");
    config_set(&f, "deal_settings", "{\"value_estimation\":{\"default\":"
                                    "\"lots\"}}");
    json_object_del(f.config, "deal_value");
    cr_expect_eq(build_err(&f, "deal", &err), CS_EINVAL);
    cr_expect(strncmp(err.msg, "config_error: ", 14) == 0, "%s", err.msg);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Activity                                                           */
/* ------------------------------------------------------------------ */

#define Q_ACTS                                                               \
    "/api/v2/activities?person_id=42&sort_by=add_time&sort_direction=desc"   \
    "&limit=100"

Test(pd, activity_applies)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect(step("activity")->applies(&f.ctx));
    config_set(&f, "create_activity", "false");
    cr_expect_not(step("activity")->applies(&f.ctx));
    fx_release(&f);
    json_t *call = base_call();
    json_object_del(call, "appointment");
    fx_init(&f, call, NULL);
    cr_expect_not(step("activity")->applies(&f.ctx));
    fx_release(&f);
}

Test(pd, activity_lookup_then_create_in_utc)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    json_object_set_new(f.done, "deal", json_pack("{s:i}", "deal_id", 77));
    struct prov_request rq;
    struct prov_result res;
    build(&f, "activity", &rq, "GET", Q_ACTS);
    prov_request_release(&rq);
    /* Same subject another day; a deleted one with our marker. */
    answer(&f, "activity", 200,
           "{\"success\":true,\"data\":[{\"id\":3,\"subject\":\"Roof Repair\","
           "\"due_date\":\"2026-02-19\",\"due_time\":\"00:30:00\"},"
           "{\"id\":4,\"is_deleted\":true,\"note\":\"" MARKER "\"}],"
           "\"additional_data\":{\"next_cursor\":null}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "activity", &rq, "POST", "/api/v2/activities");
    json_t *b = body_of(&rq);
    /* 19:30 in New York on 20 February is 00:30 UTC on the 21st. */
    cr_expect_str_eq(json_string_value(json_object_get(b, "due_date")),
                     "2026-02-21");
    cr_expect_str_eq(json_string_value(json_object_get(b, "due_time")),
                     "00:30");
    cr_expect_str_eq(json_string_value(json_object_get(b, "duration")),
                     "01:30");
    cr_expect_str_eq(json_string_value(json_object_get(b, "subject")),
                     "Roof Repair");
    cr_expect_str_eq(json_string_value(json_object_get(b, "type")),
                     "meeting");
    cr_expect_eq(json_integer_value(json_object_get(b, "deal_id")), 77);
    cr_expect_eq(json_integer_value(json_object_get(b, "owner_id")), 7);
    cr_expect(json_is_true(json_object_get(b, "busy")));
    cr_expect(json_is_false(json_object_get(b, "done")));
    json_t *want = jparse("[{\"person_id\":42,\"primary\":true}]");
    cr_expect(json_equal(json_object_get(b, "participants"), want));
    json_decref(want);
    const char *note = json_string_value(json_object_get(b, "note"));
    cr_expect(strstr(note, "<b>Local time:</b> 2026-02-20T19:30:00-05:00"),
              "%s", note);
    cr_expect(strstr(note, "Sync reference: " MARKER), "%s", note);
    json_decref(b);
    prov_request_release(&rq);
    answer(&f, "activity", 200,
           "{\"success\":true,\"data\":{\"id\":501,\"subject\":\"Roof "
           "Repair\",\"type\":\"meeting\",\"due_date\":\"2026-02-21\","
           "\"due_time\":\"00:30:00\",\"duration\":\"01:30:00\","
           "\"person_id\":42,\"participants\":[{\"person_id\":42,"
           "\"primary\":true}]}}",
           &res, NULL);
    expect_done(&res, "activity_id", 501);
    fx_release(&f);
}

Test(pd, activity_found_by_marker_or_by_subject_and_time)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"activity_type\":\"call\","
                             "\"timezone\":\"Europe/Berlin\"}");
    fx_person_done(&f);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "activity", &rq, "GET", Q_ACTS);
    prov_request_release(&rq);
    answer(&f, "activity", 200,
           "{\"success\":true,\"data\":[{\"id\":6,\"subject\":\"Other\","
           "\"note\":\"<p>Sync reference: " MARKER "</p>\"}],"
           "\"additional_data\":{\"next_cursor\":null}}",
           &res, NULL);
    expect_done(&res, "activity_id", 6);
    /* The agent booked it in Pipedrive during the call. */
    fx_step(&f, false);
    build(&f, "activity", &rq, "GET", Q_ACTS);
    prov_request_release(&rq);
    answer(&f, "activity", 200,
           "{\"success\":true,\"data\":[{\"id\":7,\"subject\":\"Roof Repair\","
           "\"due_date\":\"2026-02-21\",\"due_time\":\"00:30:00\"}],"
           "\"additional_data\":{\"next_cursor\":null}}",
           &res, NULL);
    expect_done(&res, "activity_id", 7);
    fx_release(&f);
}

Test(pd, activity_without_zone_is_utc_and_bad_times_fail)
{
    json_t *call = base_call();
    json_object_del(json_object_get(call, "appointment"), "timezone");
    json_object_del(json_object_get(call, "appointment"), "duration_min");
    struct fx f;
    fx_init(&f, call, NULL);
    fx_person_done(&f);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "activity", &rq, "POST", "/api/v2/activities");
    json_t *b = body_of(&rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "due_date")),
                     "2026-02-20");
    cr_expect_str_eq(json_string_value(json_object_get(b, "due_time")),
                     "19:30");
    cr_expect_str_eq(json_string_value(json_object_get(b, "duration")),
                     "01:00");
    json_decref(b);
    prov_request_release(&rq);
    struct cs_err err;
    config_set(&f, "timezone", "\"Mars/Olympus\"");
    cr_expect_eq(build_err(&f, "activity", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "call.appointment.timezone");
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Errors and rate limits                                             */
/* ------------------------------------------------------------------ */

static void classify(int status, const char *body, struct prov_result *res,
                     const char *h1, const char *v1)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "note", status, body, res, h1, v1, NULL);
    fx_release(&f);
}

Test(pd, error_classification)
{
    struct prov_result res;
    classify(401,
             "{\"success\":false,\"error\":\"unauthorized access\","
             "\"errorCode\":401,\"error_info\":\"Please check "
             "developers.pipedrive.com\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.message, "unauthorized access");
    prov_result_release(&res);

    classify(402, "{\"success\":false,\"error\":\"Company account is not "
                  "open\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "payment_required");
    cr_expect(strstr(res.message, "not open"), "%s", res.message);
    prov_result_release(&res);

    classify(400, "{\"success\":false,\"error\":\"Validation failed: "
                  "content: Parameter 'content' must be a string\","
                  "\"error_info\":\"Please check developers.pipedrive.com\","
                  "\"data\":null,\"additional_data\":null}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "rejected");
    cr_expect(strstr(res.message, "must be a string"), "%s", res.message);
    prov_result_release(&res);

    classify(403, "{\"success\":false,\"error\":\"You have reached the "
                  "limit\",\"code\":\"feature_capping_deals_limit\"}",
             &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "feature_capping_deals_limit");
    prov_result_release(&res);

    classify(403, "<html><body>Attention Required!</body></html>", &res,
             NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_str_eq(res.code, "blocked");
    cr_expect_eq(res.retry_after_ms, 60000);
    prov_result_release(&res);

    classify(404, "{\"success\":false,\"error\":\"Person not found\"}", &res,
             NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "not_found");
    prov_result_release(&res);

    classify(410, NULL, &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    prov_result_release(&res);

    classify(503, "<html>maintenance</html>", &res, "Retry-After", "30");
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_eq(res.retry_after_ms, 30000);
    prov_result_release(&res);

    classify(0, NULL, &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "network_error");
    prov_result_release(&res);

    /* A 2xx without an id: the write may have happened, retry. */
    classify(201, "{\"success\":true}", &res, NULL, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "bad_response");
    prov_result_release(&res);
}

Test(pd, rate_limits_on_429)
{
    struct prov_result res;
    const char *body = "{\"success\":false,\"error\":\"Request over limit\"}";
    /* The burst window: x-ratelimit-reset seconds. */
    classify(429, body, &res, "x-ratelimit-reset", "3");
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_str_eq(res.code, "rate_limited");
    cr_expect_eq(res.retry_after_ms, 3000);
    prov_result_release(&res);
    /* Retry-After wins. */
    classify(429, body, &res, "Retry-After", "5");
    cr_expect_eq(res.retry_after_ms, 5000);
    prov_result_release(&res);
    /* Neither: the 2-second window. */
    classify(429, NULL, &res, NULL, NULL);
    cr_expect_eq(res.retry_after_ms, 2000);
    prov_result_release(&res);
    /* The company's daily budget is spent: until midnight UTC, an hour
     * at most (NOW is 14:35 UTC). */
    classify(429, body, &res, "x-daily-ratelimit-token-remaining", "0");
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_str_eq(res.code, "daily_budget");
    cr_expect_eq(res.retry_after_ms, 3600000);
    prov_result_release(&res);
}

Test(pd, spent_budget_on_success_pauses_the_key)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_person_done(&f);
    struct prov_result res;
    json_object_set_new(f.scratch, "phase", json_string("create"));
    answer(&f, "note", 201, ADDED("1"), &res, "x-ratelimit-remaining", "0",
           "x-ratelimit-reset", "2", NULL);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.pause_ms, 2000);
    prov_result_release(&res);
    answer(&f, "note", 201, ADDED("1"), &res, "x-ratelimit-remaining", "5",
           "x-daily-requests-left", "0", NULL);
    /* 14:35 UTC to midnight. */
    cr_expect_eq(res.pause_ms, 9 * 3600000LL + 25 * 60000LL);
    prov_result_release(&res);
    answer(&f, "note", 201, ADDED("1"), &res,
           "x-daily-ratelimit-token-remaining", "0", NULL);
    cr_expect_eq(res.pause_ms, 3600000);
    prov_result_release(&res);
    answer(&f, "note", 201, ADDED("1"), &res, "x-ratelimit-remaining", "12",
           "x-daily-ratelimit-token-remaining", "40000", NULL);
    cr_expect_eq(res.pause_ms, 0);
    prov_result_release(&res);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Probe (callsyncctl connections test)                               */
/* ------------------------------------------------------------------ */

static void probe_answer(struct fx *f, int status, const char *body,
                         struct prov_result *res)
{
    struct prov_response rsp = {status, 0, NULL, body, strlen(body)};
    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    prov_pipedrive.probe->parse(&f->ctx, &rsp, res);
}

Test(pipedrive_probe, reads_the_current_user_and_company)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_assert_not_null(prov_pipedrive.probe);
    struct prov_request rq = {0};
    struct cs_err err = {0};
    cr_assert_eq(prov_pipedrive.probe->build(&f.ctx, &rq, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(rq.method, "GET");
    cr_expect_str_eq(rq.url, BASE "/api/v1/users/me");
    cr_expect_str_eq(hdr(&rq, "x-api-token"), "pd-api-token-secret");
    cr_expect_null(rq.body);
    prov_request_release(&rq);
    struct prov_result res;
    probe_answer(&f, 200,
                 "{\"success\":true,\"data\":{\"id\":777,\"name\":\"James "
                 "Bond\",\"default_currency\":\"USD\",\"locale\":\"en_US\","
                 "\"email\":\"james@example.com\",\"is_admin\":1,"
                 "\"timezone_name\":\"Europe/Helsinki\",\"company_id\":"
                 "999,\"company_name\":\"Acme\",\"company_domain\":"
                 "\"acme\"}}",
                 &res);
    cr_assert_eq(res.outcome, PROV_DONE);
    cr_expect_eq(json_integer_value(json_object_get(res.value,
                                                    "company_id")), 999);
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "company_domain")),
                     "acme");
    cr_expect_str_eq(json_string_value(json_object_get(res.value,
                                                       "time_zone")),
                     "Europe/Helsinki");
    prov_result_release(&res);
    probe_answer(&f, 401, "{\"success\":false,\"error\":\"unauthorized "
                          "access\",\"errorCode\":401}", &res);
    cr_expect_eq(res.outcome, PROV_AUTH);
    prov_result_release(&res);
    probe_answer(&f, 402, "{\"success\":false,\"error\":\"Company account "
                          "is not open\"}", &res);
    cr_expect_neq(res.outcome, PROV_DONE);
    cr_expect_eq(res.http_status, 402);
    prov_result_release(&res);
    fx_release(&f);
}
