/*
 * test_gohighlevel.c - the GoHighLevel provider, step by step: the exact
 * requests (method, path, query, Version header, JSON body compared as
 * JSON), every request checked against its operation in HighLevel's
 * OpenAPI documents (path and method, required query parameters, the
 * Version enum, the body against the request schema), answers built from
 * the response schemas' own examples, reconciliation, applies() rules,
 * field mappings and error classification.
 *
 * The specs are read from CALLSYNC_GHL_SPECS, else from tests/specs/
 * gohighlevel in the source tree (HighLevel's published documents, copied
 * from shared/specs so a checkout tests on its own).
 */
#include "prov_support.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BASE "http://ghl.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define MARKER "callsync:" JOB_ID
#define NOW_MS 1771166100000LL /* 2026-02-15T14:35:00Z */
#define CONTACT "seD4PfOuKoVMLkEZqohJ"
#define LOC "ve9EPM428h8vShlRW1KT"
#define CONFIG                                                               \
    "{\"location_id\":\"" LOC "\",\"calendar_id\":\"CVokAlI8fgw4WYWoCtQz\"," \
    "\"pipeline_id\":\"VDm7RPYC2GLUvdpKmBfC\",\"pipeline_stage_id\":"       \
    "\"7915dedc-8f18-44d5-8bc3-77c04e994a10\",\"workflow_id\":"             \
    "\"wf-123\"}"

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
        "\"summary\":\"Customer scheduled roof repair\","
        "\"sentiment\":\"positive\",\"transcript\":\"Agent: Hi\\nUser: Hello\","
        "\"recording_url\":\"https://rec.example.com/r/1.wav\","
        "\"started_at\":\"2026-02-15T14:30:00Z\","
        "\"ended_at\":\"2026-02-15T14:35:00Z\",\"duration_s\":300,"
        "\"appointment\":{\"title\":\"Roof Repair\",\"date\":\"2026-02-20\","
        "\"time\":\"14:00\",\"timezone\":\"America/New_York\","
        "\"duration_min\":120,\"service_type\":\"roofing\"},"
        "\"analysis\":{\"intent\":\"appointment_booking\","
        "\"project_type\":\"kitchen\",\"urgency\":\"high\",\"lead_score\":87},"
        "\"custom\":{\"promo\":\"SPRING\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:s,s:s,s:i,s:o}", "job_id", JOB_ID,
                       "provider", "gohighlevel", "connection_id",
                       "7d0e1c52-0000-4000-8000-000000000001", "kind",
                       "call_sync", "attempt", 1, "call", call);
    f->config = jparse(config ? config : CONFIG);
    f->done = json_object();
    f->scratch = json_object();
    f->creds.access_token = "pit-secret-token";
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

static void fx_contact_done(struct fx *f)
{
    json_object_set_new(f->done, "contact",
                        json_pack("{s:s}", "contact_id", CONTACT));
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
    for (size_t i = 0; i < prov_gohighlevel.nsteps; i++)
        if (strcmp(prov_gohighlevel.steps[i].name, name) == 0)
            return &prov_gohighlevel.steps[i];
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
/* The specs                                                          */
/* ------------------------------------------------------------------ */

static const char *spec_names[] = {"contacts", "calendars", "opportunities"};
static json_t *spec_cache[3];

static json_t *spec_load(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(spec_names); i++) {
        if (strcmp(spec_names[i], name) != 0)
            continue;
        if (spec_cache[i])
            return spec_cache[i];
        char path[1024];
        const char *dir = getenv("CALLSYNC_GHL_SPECS");
        if (dir)
            snprintf(path, sizeof(path), "%s/%s.json", dir, name);
        else
            snprintf(path, sizeof(path),
                     "%s/tests/specs/gohighlevel/%s.json", CS_SOURCE_DIR,
                     name);
        spec_cache[i] = json_load_file(path, 0, NULL);
        return spec_cache[i];
    }
    return NULL;
}

/* A local schema behind $ref, or NULL for one in another file (the
 * common error schemas). */
static const json_t *deref(const json_t *spec, const json_t *s)
{
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (!ref)
        return s;
    const char *pfx = "#/components/schemas/";
    if (strncmp(ref, pfx, strlen(pfx)) != 0)
        return NULL;
    const json_t *t = json_object_get(
        json_object_get(json_object_get(spec, "components"), "schemas"),
        ref + strlen(pfx));
    cr_assert_not_null(t, "dangling $ref %s", ref);
    return t;
}

static bool type_ok(const char *type, const json_t *v)
{
    return (strcmp(type, "object") == 0 && json_is_object(v)) ||
           (strcmp(type, "array") == 0 && json_is_array(v)) ||
           (strcmp(type, "string") == 0 && json_is_string(v)) ||
           (strcmp(type, "integer") == 0 && json_is_integer(v)) ||
           (strcmp(type, "number") == 0 && json_is_number(v)) ||
           (strcmp(type, "boolean") == 0 && json_is_boolean(v));
}

/* Whether v matches schema (type, enum, required, known properties,
 * items, anyOf); *why names the first mismatch. */
static bool schema_ok(const json_t *spec, const json_t *schema,
                      const json_t *v, const char *path, char *why,
                      size_t wn)
{
    schema = deref(spec, schema);
    if (!schema)
        return true;
    const json_t *any = json_object_get(schema, "anyOf");
    if (json_is_array(any)) {
        size_t i;
        const json_t *alt;
        json_array_foreach(any, i, alt) {
            if (schema_ok(spec, alt, v, path, why, wn))
                return true;
        }
        snprintf(why, wn, "%s: matches no anyOf alternative", path);
        return false;
    }
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type && !type_ok(type, v)) {
        snprintf(why, wn, "%s: expected %s", path, type);
        return false;
    }
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en)) {
        bool found = false;
        size_t i;
        const json_t *e;
        json_array_foreach(en, i, e) found |= json_equal(e, v);
        if (!found) {
            snprintf(why, wn, "%s: value not in enum", path);
            return false;
        }
    }
    if (json_is_object(v)) {
        const json_t *req = json_object_get(schema, "required");
        size_t i;
        const json_t *r;
        json_array_foreach(req, i, r) {
            if (!json_object_get(v, json_string_value(r))) {
                snprintf(why, wn, "%s: required key '%s' missing", path,
                         json_string_value(r));
                return false;
            }
        }
        const json_t *props = json_object_get(schema, "properties");
        const char *k;
        const json_t *sub;
        json_object_foreach((json_t *)v, k, sub) {
            char p[512];
            snprintf(p, sizeof(p), "%s.%s", path, k);
            const json_t *ps = json_object_get(props, k);
            if (!ps) {
                snprintf(why, wn, "%.200s: unknown key", p);
                return false;
            }
            if (!schema_ok(spec, ps, sub, p, why, wn))
                return false;
        }
    }
    if (json_is_array(v)) {
        const json_t *items = json_object_get(schema, "items");
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it) {
            char p[512];
            snprintf(p, sizeof(p), "%s[%zu]", path, i);
            if (items && !schema_ok(spec, items, it, p, why, wn))
                return false;
        }
    }
    return true;
}

static bool path_match(const char *tpl, const char *path)
{
    while (*tpl && *path) {
        if (*tpl == '{') {
            tpl = strchr(tpl, '}');
            if (!tpl)
                return false;
            tpl++;
            while (*path && *path != '/')
                path++;
            continue;
        }
        if (*tpl++ != *path++)
            return false;
    }
    return *tpl == '\0' && *path == '\0';
}

/* The operation of a request, and its spec (NULL: specs absent). */
static const json_t *operation(const struct prov_request *rq,
                               const json_t **spec_out, char *path,
                               size_t pn)
{
    cr_assert(strncmp(rq->url, BASE, strlen(BASE)) == 0, "url %s", rq->url);
    snprintf(path, pn, "%s", rq->url + strlen(BASE));
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    const char *name = strncmp(path, "/contacts", 9) == 0    ? "contacts"
                       : strncmp(path, "/calendars", 10) == 0 ? "calendars"
                       : strncmp(path, "/opportunities", 14) == 0
                           ? "opportunities"
                           : NULL;
    cr_assert_not_null(name, "no spec covers %s", path);
    const json_t *spec = spec_load(name);
    *spec_out = spec;
    if (!spec)
        return NULL;
    char m[8];
    size_t i = 0;
    for (; rq->method[i] && i < sizeof(m) - 1; i++)
        m[i] = (char)(rq->method[i] | 0x20);
    m[i] = '\0';
    const json_t *paths = json_object_get(spec, "paths");
    const json_t *op = json_object_get(json_object_get(paths, path), m);
    const char *tpl;
    json_t *item;
    json_object_foreach((json_t *)paths, tpl, item) {
        if (!op && strchr(tpl, '{') && path_match(tpl, path))
            op = json_object_get(item, m);
    }
    cr_assert_not_null(op, "%s %s is not in %s.json", rq->method, path, name);
    return op;
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

/*
 * Check a built request against its operation: method and path exist,
 * every query parameter is one the operation names and the required ones
 * are there, the Version header is in the operation's enum, and the body
 * matches the request schema.
 */
static void validate(const struct prov_request *rq)
{
    const json_t *spec;
    char path[512];
    const json_t *op = operation(rq, &spec, path, sizeof(path));
    if (!op)
        return;
    const json_t *params = json_object_get(op, "parameters");
    size_t i;
    const json_t *p;
    bool version_seen = false;
    json_array_foreach(params, i, p) {
        const char *in = json_string_value(json_object_get(p, "in"));
        const char *name = json_string_value(json_object_get(p, "name"));
        if (strcmp(in, "header") == 0 && strcmp(name, "Version") == 0) {
            const char *v = hdr(rq, "Version");
            cr_assert_not_null(v, "%s: no Version header", path);
            json_t *vs = json_string(v);
            char why[256] = "";
            cr_assert(schema_ok(spec, json_object_get(p, "schema"), vs,
                                "Version", why, sizeof(why)),
                      "%s %s: Version %s: %s", rq->method, path, v, why);
            json_decref(vs);
            version_seen = true;
        }
        if (strcmp(in, "query") == 0 &&
            json_is_true(json_object_get(p, "required"))) {
            char *v = query_of(rq, name);
            cr_assert(v && *v, "%s: required query parameter %s missing",
                      path, name);
            free(v);
        }
    }
    cr_assert(version_seen, "%s takes a Version header", path);
    /* No query parameter the operation does not name. */
    const char *q = strchr(rq->url, '?');
    while (q && *q) {
        q++;
        size_t len = strcspn(q, "=&");
        bool known = false;
        json_array_foreach(params, i, p) {
            const char *name = json_string_value(json_object_get(p, "name"));
            known |= strlen(name) == len && strncmp(name, q, len) == 0;
        }
        cr_assert(known, "%s: unknown query parameter %.*s", path, (int)len,
                  q);
        q += strcspn(q, "&");
    }
    const json_t *schema = json_object_get(
        json_object_get(
            json_object_get(json_object_get(op, "requestBody"), "content"),
            "application/json"),
        "schema");
    if (!schema) {
        cr_assert_null(rq->body, "%s %s takes no body", rq->method, path);
        return;
    }
    cr_assert_not_null(rq->body, "%s %s needs a body", rq->method, path);
    json_t *body = jparse(rq->body);
    char why[256] = "";
    cr_assert(schema_ok(spec, schema, body, "$", why, sizeof(why)),
              "%s %s: %s in %s", rq->method, path, why, rq->body);
    json_decref(body);
}

/* A value made of the schema's examples: the spec's own fixture. */
static json_t *example_of(const json_t *spec, const json_t *schema)
{
    schema = deref(spec, schema);
    if (!schema)
        return json_null();
    const json_t *ex = json_object_get(schema, "example");
    if (ex)
        return json_deep_copy(ex);
    const json_t *any = json_object_get(schema, "anyOf");
    if (json_is_array(any))
        return example_of(spec, json_array_get(any, 0));
    const json_t *all = json_object_get(schema, "allOf");
    if (json_is_array(all))
        return example_of(spec, json_array_get(all, 0));
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type && strcmp(type, "array") == 0)
        return json_pack("[o]",
                         example_of(spec, json_object_get(schema, "items")));
    const json_t *props = json_object_get(schema, "properties");
    if (json_is_object(props)) {
        json_t *o = json_object();
        const char *k;
        const json_t *ps;
        json_object_foreach((json_t *)props, k, ps)
            json_object_set_new(o, k, example_of(spec, ps));
        return o;
    }
    return json_null();
}

/* The example answer of (spec, schema name), as text (xmalloc'd). */
static char *spec_example(const char *spec_name, const char *schema)
{
    json_t *spec = spec_load(spec_name);
    cr_assert_not_null(spec, "the %s spec is needed for its examples",
                       spec_name);
    json_t *ref = json_pack("{s:s+}", "$ref", "#/components/schemas/",
                            schema);
    json_t *ex = example_of(spec, ref);
    json_decref(ref);
    char *s = json_dumps(ex, JSON_COMPACT);
    json_decref(ex);
    return s;
}

/* ------------------------------------------------------------------ */
/* Building and answering                                             */
/* ------------------------------------------------------------------ */

static void build(struct fx *f, const char *name, struct prov_request *rq,
                  const char *method, const char *url, const char *version)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    int rc = step(name)->build(&f->ctx, rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s (%s)", name, err.msg, err.field);
    cr_assert_str_eq(rq->method, method);
    char full[2048];
    snprintf(full, sizeof(full), "%s%s", BASE, url);
    cr_assert_str_eq(rq->url, full);
    cr_assert_str_eq(hdr(rq, "Authorization"), "Bearer pit-secret-token");
    cr_assert_str_eq(hdr(rq, "Accept"), "application/json");
    cr_assert_str_eq(hdr(rq, "Version"), version);
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
    prov_feed_v(step(name), &f->ctx, status, body, res, 0, ap);
    va_end(ap);
}

static void expect_done(struct prov_result *res, const char *key,
                        const char *id)
{
    cr_assert_eq(res->outcome, PROV_DONE, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    cr_assert_str_eq(json_string_value(json_object_get(res->value, key)),
                     id);
    prov_result_release(res);
}

static void expect_next(struct prov_result *res)
{
    cr_assert_eq(res->outcome, PROV_NEXT, "outcome %d (%s: %s)",
                 res->outcome, res->code, res->message);
    prov_result_release(res);
}

#define SEARCH_URL                                                           \
    "/contacts/search/duplicate?locationId=" LOC                             \
    "&number=%2B14079780655&email=jane%2Broof%40example.com"

/* ------------------------------------------------------------------ */
/* The table                                                          */
/* ------------------------------------------------------------------ */

Test(ghl, ops_table)
{
    cr_assert_eq(prov_find("gohighlevel"), &prov_gohighlevel);
    cr_expect_str_eq(prov_gohighlevel.name, "gohighlevel");
    cr_expect_eq(prov_gohighlevel.rate.requests, 100);
    cr_expect_eq(prov_gohighlevel.rate.per_ms, 10000);
    cr_expect_str_eq(prov_gohighlevel.rate_scope, "location_id");
    static const char *const names[] = {"contact", "note", "appointment",
                                        "opportunity", "workflow"};
    static const enum prov_reconcile rec[] = {
        PROV_RECONCILE_LOOKUP, PROV_RECONCILE_LOOKUP, PROV_RECONCILE_LOOKUP,
        PROV_RECONCILE_LOOKUP, PROV_RECONCILE_NONE};
    cr_assert_eq(prov_gohighlevel.nsteps, 5);
    for (size_t i = 0; i < 5; i++) {
        cr_expect_str_eq(prov_gohighlevel.steps[i].name, names[i]);
        cr_expect_eq(prov_gohighlevel.steps[i].reconcile, rec[i]);
    }
}

Test(ghl, specs_are_present)
{
    /* Without them the schema checks above would be skipped silently. */
    for (size_t i = 0; i < CS_ARRAY_LEN(spec_names); i++)
        cr_expect_not_null(spec_load(spec_names[i]), "%s.json",
                           spec_names[i]);
}

/* ------------------------------------------------------------------ */
/* Contact                                                            */
/* ------------------------------------------------------------------ */

Test(ghl, contact_search_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    cr_expect_null(rq.body);
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    expect_body(&rq, "{\"locationId\":\"" LOC "\",\"firstName\":\"Jane\","
                     "\"lastName\":\"Smith\",\"email\":"
                     "\"jane+roof@example.com\",\"phone\":\"+14079780655\","
                     "\"city\":\"Orlando\",\"state\":\"FL\"}");
    prov_request_release(&rq);
    char *ex = spec_example("contacts", "CreateContactsSuccessfulResponseDto");
    answer(&f, "contact", 201, ex, &res, NULL);
    free(ex);
    expect_done(&res, "contact_id", CONTACT);
    fx_release(&f);
}

Test(ghl, contact_found_with_everything_needs_no_update)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200,
           "{\"contact\":{\"id\":\"c1\",\"firstName\":\"Janet\","
           "\"lastName\":\"Smith-Doe\",\"email\":\"JANE+roof@example.com\","
           "\"phone\":\"+14079780655\",\"address1\":\"1 Main St\","
           "\"city\":\"Orlando\",\"state\":\"FL\",\"tags\":[]}}",
           &res, NULL);
    /* A person's corrections (Janet, Smith-Doe) are kept. */
    expect_done(&res, "contact_id", "c1");
    fx_release(&f);
}

Test(ghl, contact_found_is_filled_in_and_mapped)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    config_set(&f, "field_mappings",
               "[{\"target\":\"customFields.cf_score\","
               "\"source\":\"call.analysis.lead_score\",\"type\":\"string\"},"
               "{\"target\":\"tags\",\"source\":\"call_outcome\"},"
               "{\"target\":\"source\",\"template\":\"AI call "
               "{{call_id}}\"}]");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200,
           "{\"contact\":{\"id\":\"c1\",\"firstName\":\"Jane\","
           "\"phone\":\"+14079780655\",\"city\":\"Tampa\","
           "\"tags\":[\"vip\"],\"customFields\":[{\"id\":\"cf_other\","
           "\"value\":\"x\"}]}}",
           &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "PUT", "/contacts/c1", "2021-07-28");
    expect_body(&rq, "{\"lastName\":\"Smith\",\"email\":"
                     "\"jane+roof@example.com\",\"state\":\"FL\","
                     "\"customFields\":[{\"id\":\"cf_score\","
                     "\"field_value\":\"87\"}],"
                     "\"tags\":[\"vip\",\"appointment_booked\"],"
                     "\"source\":\"AI call call_abc123\"}");
    prov_request_release(&rq);
    char *ex = spec_example("contacts", "UpdateContactsSuccessfulResponseDto");
    answer(&f, "contact", 200, ex, &res, NULL);
    free(ex);
    expect_done(&res, "contact_id", CONTACT);
    fx_release(&f);
}

Test(ghl, contact_seed_object_mapping_and_unchanged_custom_field)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    /* Seed 001's form: source path -> target. */
    config_set(&f, "field_mappings",
               "{\"call_outcome\":\"customField.call_result\"}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    json_t *b = body_of(&rq);
    json_t *want = jparse("[{\"id\":\"call_result\",\"field_value\":"
                          "\"appointment_booked\"}]");
    cr_expect(json_equal(json_object_get(b, "customFields"), want));
    json_decref(want);
    json_decref(b);
    prov_request_release(&rq);
    /* Found later with the value already there: nothing to send. */
    fx_step(&f, false);
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200,
           "{\"contact\":{\"id\":\"c9\",\"firstName\":\"Jane\","
           "\"lastName\":\"Smith\",\"email\":\"jane+roof@example.com\","
           "\"phone\":\"+14079780655\",\"city\":\"Orlando\",\"state\":"
           "\"FL\",\"customFields\":[{\"id\":\"call_result\",\"value\":"
           "\"appointment_booked\"}]}}",
           &res, NULL);
    expect_done(&res, "contact_id", "c9");
    fx_release(&f);
}

Test(ghl, contact_duplicate_on_create_reads_and_updates_it)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    const char *dup =
        "{\"statusCode\":400,\"message\":\"This location does not allow "
        "duplicated contacts.\",\"meta\":{\"contactName\":\"Jane\","
        "\"contactId\":\"" CONTACT "\",\"matchingField\":\"email\"}}";
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 400, dup, &res, NULL);
    expect_next(&res);
    /* Read it (the spec's example contact has every field we would set:
     * nothing to update). */
    build(&f, "contact", &rq, "GET", "/contacts/" CONTACT, "2021-07-28");
    cr_expect_null(rq.body);
    prov_request_release(&rq);
    char *ex = spec_example("contacts", "ContactsByIdSuccessfulResponseDto");
    answer(&f, "contact", 200, ex, &res, NULL);
    expect_done(&res, "contact_id", CONTACT);

    /* With a mapping, the mapped field is written to it. */
    fx_step(&f, false);
    config_set(&f, "field_mappings",
               "{\"call_summary\":\"customFields.cf_summary\"}");
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 400, dup, &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "GET", "/contacts/" CONTACT, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, ex, &res, NULL);
    free(ex);
    expect_next(&res);
    build(&f, "contact", &rq, "PUT", "/contacts/" CONTACT, "2021-07-28");
    expect_body(&rq, "{\"customFields\":[{\"id\":\"cf_summary\","
                     "\"field_value\":\"Customer scheduled roof "
                     "repair\"}]}");
    prov_request_release(&rq);

    /* A second duplicate answer in one attempt is permanent. */
    fx_step(&f, false);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    json_object_set_new(f.scratch, "duplicate", json_true());
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 400, dup, &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    prov_result_release(&res);
    fx_release(&f);
}

Test(ghl, contact_other_400_on_create_is_permanent)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 400, "{\"statusCode\":400,\"message\":\"Bad "
                               "Request\"}", &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.message, "Bad Request");
    prov_result_release(&res);
    fx_release(&f);
}

Test(ghl, contact_vanished_before_the_update)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    const char *found = "{\"contact\":{\"id\":\"c1\",\"phone\":"
                        "\"+14079780655\"}}";
    const char *gone = "{\"statusCode\":400,\"message\":\"Contact with id c1 "
                       "not found\"}";
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, found, &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "PUT", "/contacts/c1", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 400, gone, &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 201, "{\"contact\":{\"id\":\"c2\"}}", &res, NULL);
    expect_done(&res, "contact_id", "c2");
    /* Twice vanished in one attempt: permanent. */
    fx_step(&f, false);
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, found, &res, NULL);
    expect_next(&res);
    json_object_set_new(f.scratch, "vanished", json_true());
    build(&f, "contact", &rq, "PUT", "/contacts/c1", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 404, "{\"statusCode\":404,\"message\":\"Not "
                               "Found\"}", &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "contact_vanished");
    prov_result_release(&res);
    fx_release(&f);
}

Test(ghl, contact_keys_and_config_errors)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(call, "customer", json_pack("{s:s}", "name", "Bob"));
    fx_init(&f, call, NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_contact_key") != NULL, "%s", err.msg);
    fx_release(&f);

    fx_init(&f, base_call(), "{}");
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.location_id");
    fx_release(&f);

    fx_init(&f, base_call(), NULL);
    f.creds.access_token = NULL;
    cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_credentials") != NULL);
    /* A Private Integration token stored as an API key works too. */
    f.creds.api_key = "pit-secret-token";
    struct prov_request rq;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(ghl, contact_phone_only_and_name_split)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(call, "customer",
                        json_pack("{s:s,s:s}", "name", "Mary Ann Lee",
                                  "phone", "+14155550100"));
    fx_init(&f, call, NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET",
          "/contacts/search/duplicate?locationId=" LOC
          "&number=%2B14155550100",
          "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    expect_body(&rq, "{\"locationId\":\"" LOC "\",\"firstName\":\"Mary\","
                     "\"lastName\":\"Ann Lee\",\"phone\":\"+14155550100\"}");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(ghl, mapping_errors_are_permanent_with_a_reason)
{
    static const struct {
        const char *maps, *field, *needle;
    } cases[] = {
        {"[{\"target\":\"favouriteColour\",\"source\":\"outcome\"}]",
         "favouriteColour", "not a GoHighLevel contact field"},
        {"[{\"target\":\"dnd\",\"source\":\"call.summary\"}]", "dnd",
         "takes a boolean"},
        {"[{\"target\":\"tags\",\"source\":\"call.analysis\"}]", "tags",
         "list of strings"},
        {"[{\"target\":\"customFields\",\"source\":\"call.outcome\"}]",
         "customFields", "needs one field id"},
        {"[{\"target\":\"customFields.cf1\",\"source\":\"call.analysis\"}]",
         "customFields", "custom field 'cf1'"},
        {"[{\"target\":\"phone\",\"template\":\"{{unterminated\"}]", "",
         ""},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct fx f;
        fx_init(&f, base_call(), NULL);
        config_set(&f, "field_mappings", cases[i].maps);
        struct cs_err err;
        cr_expect_eq(build_err(&f, "contact", &err), CS_EINVAL, "case %zu",
                     i);
        if (*cases[i].field)
            cr_expect_str_eq(err.field, cases[i].field, "case %zu", i);
        cr_expect(strstr(err.msg, cases[i].needle) != NULL,
                  "case %zu: %s", i, err.msg);
        fx_release(&f);
    }
}

Test(ghl, conditional_and_lookup_mappings)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    config_set(&f, "field_mappings",
               "{\"customFields.cf_priority\":{\"type\":\"conditional\","
               "\"conditions\":[{\"if\":\"call.analysis.lead_score > 80\","
               "\"then\":\"High\"},{\"default\":\"Normal\"}]},"
               "\"companyName\":{\"source\":\"call.custom.promo\"},"
               "\"dnd\":{\"source\":\"call.analysis.urgency\","
               "\"map\":{\"high\":false},\"default\":true}}");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "GET", SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "contact", 200, "{\"contact\":null}", &res, NULL);
    expect_next(&res);
    build(&f, "contact", &rq, "POST", "/contacts/", "2021-07-28");
    json_t *b = body_of(&rq);
    json_t *want = jparse("[{\"id\":\"cf_priority\",\"field_value\":"
                          "\"High\"}]");
    cr_expect(json_equal(json_object_get(b, "customFields"), want));
    cr_expect_str_eq(json_string_value(json_object_get(b, "companyName")),
                     "SPRING");
    cr_expect(json_is_false(json_object_get(b, "dnd")));
    json_decref(want);
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Note                                                               */
/* ------------------------------------------------------------------ */

Test(ghl, note_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    config_set(&f, "user_id", "\"GCs5KuzPqTls7vWclkEV\"");
    fx_contact_done(&f);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "note", &rq, "POST", "/contacts/" CONTACT "/notes",
          "2021-07-28");
    expect_body(&rq,
                "{\"userId\":\"GCs5KuzPqTls7vWclkEV\",\"body\":"
                "\"Call outcome: appointment_booked\\nDirection: inbound\\n"
                "Summary: Customer scheduled roof repair\\nSentiment: "
                "positive\\nDuration: 5m 0s\\nRecording: "
                "https://rec.example.com/r/1.wav\\nTranscript (excerpt):\\n"
                "Agent: Hi\\nUser: Hello\\n\\nSync reference: " MARKER "\"}");
    prov_request_release(&rq);
    char *ex = spec_example("contacts",
                            "GetCreateUpdateNoteSuccessfulResponseDto");
    answer(&f, "note", 201, ex, &res, NULL);
    free(ex);
    expect_done(&res, "note_id", "HGPcayliwcdoUFzvbTok");
    fx_release(&f);
}

Test(ghl, note_transcript_excerpt_is_cut_on_a_character)
{
    struct fx f;
    json_t *call = base_call();
    /* 2999 ASCII bytes then a 3-byte character across the cap. */
    char *t = malloc(5000);
    memset(t, 'a', 2999);
    static const char tail[] = "\xe2\x82\xac and more text";
    memcpy(t + 2999, tail, sizeof(tail));
    json_object_set_new(call, "transcript", json_string(t));
    free(t);
    fx_init(&f, call, NULL);
    fx_contact_done(&f);
    struct prov_request rq;
    build(&f, "note", &rq, "POST", "/contacts/" CONTACT "/notes",
          "2021-07-28");
    json_t *b = body_of(&rq);
    const char *text = json_string_value(json_object_get(b, "body"));
    const char *tr = strstr(text, "(excerpt):\n") + strlen("(excerpt):\n");
    cr_expect_eq(strspn(tr, "a"), 2999);
    cr_expect(strncmp(tr + 2999, " [\xe2\x80\xa6]\n", 6) == 0, "%.20s",
              tr + 2999);
    cr_expect(strstr(text, "more text") == NULL);
    cr_expect(strstr(text, MARKER) != NULL);
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(ghl, note_reconcile_finds_the_marker)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    fx_step(&f, true);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "note", &rq, "GET", "/contacts/" CONTACT "/notes",
          "2021-07-28");
    cr_expect_null(rq.body);
    prov_request_release(&rq);
    answer(&f, "note", 200,
           "{\"notes\":[{\"id\":\"n1\",\"body\":\"other call\\n\\nSync "
           "reference: callsync:ffff\"},{\"id\":\"n2\",\"body\":\"Call "
           "outcome: x\\n\\nSync reference: " MARKER "\"}]}",
           &res, NULL);
    expect_done(&res, "note_id", "n2");

    /* Not there: the note is written after all. */
    fx_step(&f, true);
    build(&f, "note", &rq, "GET", "/contacts/" CONTACT "/notes",
          "2021-07-28");
    prov_request_release(&rq);
    char *ex = spec_example("contacts", "GetNotesListSuccessfulResponseDto");
    answer(&f, "note", 200, ex, &res, NULL);
    free(ex);
    expect_next(&res);
    build(&f, "note", &rq, "POST", "/contacts/" CONTACT "/notes",
          "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "note", 201, "{\"note\":{\"id\":\"n3\"}}", &res, NULL);
    expect_done(&res, "note_id", "n3");
    fx_release(&f);
}

Test(ghl, note_without_contact_is_an_error)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "note", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "no_contact") != NULL);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Appointment                                                        */
/* ------------------------------------------------------------------ */

/* 2026-02-20 14:00 America/New_York (EST) = 19:00Z; 120 minutes. */
#define APPT_START_MS "1771614000000"
#define APPT_END_MS "1771621200000"
#define EVENTS_URL                                                           \
    "/calendars/events?locationId=" LOC "&calendarId=CVokAlI8fgw4WYWoCtQz"   \
    "&startTime=" APPT_START_MS "&endTime=" APPT_END_MS

Test(ghl, appointment_applies)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect(step("appointment")->applies(&f.ctx));
    json_object_del(f.config, "calendar_id");
    cr_expect_not(step("appointment")->applies(&f.ctx));
    fx_release(&f);
    json_t *call = base_call();
    json_object_del(call, "appointment");
    fx_init(&f, call, NULL);
    cr_expect_not(step("appointment")->applies(&f.ctx));
    fx_release(&f);
}

Test(ghl, appointment_search_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "appointment", &rq, "GET", EVENTS_URL, "2021-04-15");
    prov_request_release(&rq);
    /* Another contact at the same time is not ours. */
    answer(&f, "appointment", 200,
           "{\"events\":[{\"id\":\"e1\",\"contactId\":\"someone\","
           "\"startTime\":\"2026-02-20T14:00:00-05:00\"}]}",
           &res, NULL);
    expect_next(&res);
    build(&f, "appointment", &rq, "POST", "/calendars/events/appointments",
          "2021-04-15");
    expect_body(&rq,
                "{\"calendarId\":\"CVokAlI8fgw4WYWoCtQz\",\"locationId\":\""
                LOC "\",\"contactId\":\"" CONTACT "\",\"startTime\":"
                "\"2026-02-20T14:00:00-05:00\",\"endTime\":"
                "\"2026-02-20T16:00:00-05:00\",\"title\":\"Roof Repair\","
                "\"appointmentStatus\":\"confirmed\",\"description\":"
                "\"Service: roofing\\nTime zone: America/New_York\\nCall "
                "summary: Customer scheduled roof repair\\n\\nSync "
                "reference: " MARKER "\",\"ignoreFreeSlotValidation\":true}");
    prov_request_release(&rq);
    char *ex = spec_example("calendars", "AppointmentSchemaResponse");
    answer(&f, "appointment", 200, ex, &res, NULL);
    free(ex);
    expect_done(&res, "appointment_id", "0TkCdp9PfvLeWKYRRvIz");
    fx_release(&f);
}

Test(ghl, appointment_already_booked_is_adopted)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    struct prov_request rq;
    struct prov_result res;
    /* Booked during the call, same start written in UTC. */
    build(&f, "appointment", &rq, "GET", EVENTS_URL, "2021-04-15");
    prov_request_release(&rq);
    answer(&f, "appointment", 200,
           "{\"events\":[{\"id\":\"e7\",\"contactId\":\"" CONTACT "\","
           "\"title\":\"Consult\",\"startTime\":\"2026-02-20T19:00:00Z\"}]}",
           &res, NULL);
    expect_done(&res, "appointment_id", "e7");
    /* Ours by the marker, even at another start. */
    fx_step(&f, true);
    build(&f, "appointment", &rq, "GET", EVENTS_URL, "2021-04-15");
    prov_request_release(&rq);
    answer(&f, "appointment", 200,
           "{\"events\":[{\"id\":\"e8\",\"contactId\":\"" CONTACT "\","
           "\"description\":\"x\\nSync reference: " MARKER "\","
           "\"startTime\":\"2026-02-20T19:30:00Z\"}]}",
           &res, NULL);
    expect_done(&res, "appointment_id", "e8");
    fx_release(&f);
}

Test(ghl, appointment_config_and_time_errors)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "appointment"), "timezone",
                        json_string("Mars/Olympus"));
    fx_init(&f, call, NULL);
    fx_contact_done(&f);
    struct cs_err err;
    cr_expect_eq(build_err(&f, "appointment", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "call.appointment.timezone");
    fx_release(&f);

    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    config_set(&f, "appointment_status", "\"booked\"");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    cr_expect_eq(build_err(&f, "appointment", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.appointment_status");
    fx_release(&f);
}

Test(ghl, appointment_in_utc_without_zone)
{
    struct fx f;
    json_t *call = base_call();
    json_object_del(json_object_get(call, "appointment"), "timezone");
    json_object_del(json_object_get(call, "appointment"), "duration_min");
    fx_init(&f, call, NULL);
    fx_contact_done(&f);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "appointment", &rq, "POST", "/calendars/events/appointments",
          "2021-04-15");
    json_t *b = body_of(&rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "startTime")),
                     "2026-02-20T14:00:00+00:00");
    cr_expect_str_eq(json_string_value(json_object_get(b, "endTime")),
                     "2026-02-20T15:00:00+00:00");
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Opportunity                                                        */
/* ------------------------------------------------------------------ */

#define OPP_SEARCH_URL                                                       \
    "/opportunities/search?location_id=" LOC                                 \
    "&pipeline_id=VDm7RPYC2GLUvdpKmBfC&contact_id=" CONTACT                  \
    "&status=all&limit=20"

Test(ghl, opportunity_search_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    config_set(&f, "opportunity_value", "1500");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "opportunity", &rq, "GET", OPP_SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "opportunity", 200,
           "{\"opportunities\":[],\"meta\":{\"total\":0}}", &res, NULL);
    expect_next(&res);
    build(&f, "opportunity", &rq, "POST", "/opportunities/", "2021-07-28");
    expect_body(&rq, "{\"pipelineId\":\"VDm7RPYC2GLUvdpKmBfC\",\"locationId\""
                     ":\"" LOC "\",\"name\":\"Jane Smith \xe2\x80\x93 "
                     "appointment_booked\",\"status\":\"open\",\"contactId\":"
                     "\"" CONTACT "\",\"pipelineStageId\":"
                     "\"7915dedc-8f18-44d5-8bc3-77c04e994a10\","
                     "\"monetaryValue\":1500}");
    prov_request_release(&rq);
    char *ex = spec_example("opportunities",
                            "GetPostOpportunitySuccessfulResponseDto");
    answer(&f, "opportunity", 201, ex, &res, NULL);
    free(ex);
    expect_done(&res, "opportunity_id", "yWQobCRIhRguQtD2llvk");
    fx_release(&f);
}

Test(ghl, opportunity_found_by_contact_and_pipeline)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "opportunity", &rq, "GET", OPP_SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "opportunity", 200,
           "{\"opportunities\":[{\"id\":\"o1\",\"contactId\":\"other\","
           "\"pipelineId\":\"VDm7RPYC2GLUvdpKmBfC\"},{\"id\":\"o2\","
           "\"contactId\":\"" CONTACT "\",\"pipelineId\":\"elsewhere\"},"
           "{\"id\":\"o3\",\"contactId\":\"" CONTACT "\",\"pipelineId\":"
           "\"VDm7RPYC2GLUvdpKmBfC\",\"status\":\"lost\"}]}",
           &res, NULL);
    expect_done(&res, "opportunity_id", "o3");
    fx_release(&f);
}

Test(ghl, opportunity_duplicate_race_searches_again_once)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    const char *dup = "{\"statusCode\":400,\"message\":\"Can not create "
                      "duplicate opportunity for the contact.\"}";
    struct prov_request rq;
    struct prov_result res;
    build(&f, "opportunity", &rq, "POST", "/opportunities/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "opportunity", 400, dup, &res, NULL);
    expect_next(&res);
    build(&f, "opportunity", &rq, "GET", OPP_SEARCH_URL, "2021-07-28");
    prov_request_release(&rq);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    build(&f, "opportunity", &rq, "POST", "/opportunities/", "2021-07-28");
    prov_request_release(&rq);
    answer(&f, "opportunity", 400, dup, &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    prov_result_release(&res);
    fx_release(&f);
}

Test(ghl, opportunity_mappings_and_template)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    config_set(&f, "opportunity_name_template",
               "\"{{customer_name}} / {{call.appointment.service_type}}\"");
    config_set(&f, "opportunity_field_mappings",
               "[{\"target\":\"monetaryValue\",\"source\":"
               "\"call.analysis.project_type\",\"map\":{\"kitchen\":25000},"
               "\"default\":5000},{\"target\":\"customFields.cf_intent\","
               "\"source\":\"call.analysis.intent\"}]");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "opportunity", &rq, "POST", "/opportunities/", "2021-07-28");
    json_t *b = body_of(&rq);
    cr_expect_str_eq(json_string_value(json_object_get(b, "name")),
                     "Jane Smith / roofing");
    cr_expect_eq(json_integer_value(json_object_get(b, "monetaryValue")),
                 25000);
    json_t *want = jparse("[{\"id\":\"cf_intent\",\"field_value\":"
                          "\"appointment_booking\"}]");
    cr_expect(json_equal(json_object_get(b, "customFields"), want));
    json_decref(want);
    json_decref(b);
    prov_request_release(&rq);

    struct cs_err err;
    config_set(&f, "opportunity_status", "\"pending\"");
    cr_expect_eq(build_err(&f, "opportunity", &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "config.opportunity_status");
    config_set(&f, "opportunity_status", "\"won\"");
    config_set(&f, "opportunity_field_mappings",
               "[{\"target\":\"stage\",\"source\":\"outcome\"}]");
    cr_expect_eq(build_err(&f, "opportunity", &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "not a GoHighLevel opportunity field") != NULL,
              "%s", err.msg);
    fx_release(&f);
}

Test(ghl, opportunity_applies_only_with_a_pipeline)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_expect(step("opportunity")->applies(&f.ctx));
    json_object_del(f.config, "pipeline_id");
    cr_expect_not(step("opportunity")->applies(&f.ctx));
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Workflow                                                           */
/* ------------------------------------------------------------------ */

Test(ghl, workflow_add)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    cr_expect(step("workflow")->applies(&f.ctx));
    struct prov_request rq;
    struct prov_result res;
    build(&f, "workflow", &rq, "POST",
          "/contacts/" CONTACT "/workflow/wf-123", "2021-07-28");
    expect_body(&rq, "{}");
    prov_request_release(&rq);
    char *ex = spec_example("contacts",
                            "ContactsWorkflowSuccessfulResponseDto");
    answer(&f, "workflow", 200, ex, &res, NULL);
    free(ex);
    expect_done(&res, "workflow_id", "wf-123");
    json_object_del(f.config, "workflow_id");
    cr_expect_not(step("workflow")->applies(&f.ctx));
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

Test(ghl, error_classification)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    struct prov_result res;

    answer(&f, "note", 401,
           "{\"statusCode\":401,\"message\":\"Invalid token: access token "
           "is invalid\",\"error\":\"Unauthorized\"}",
           &res, NULL);
    cr_expect_eq(res.outcome, PROV_AUTH);
    cr_expect_str_eq(res.code, "unauthorized");
    cr_expect_str_eq(res.message, "Invalid token: access token is invalid");
    prov_result_release(&res);

    answer(&f, "note", 422,
           "{\"statusCode\":422,\"message\":[\"body should not be empty\","
           "\"body must be a string\"],\"error\":\"Unprocessable Entity\"}",
           &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "unprocessable_entity");
    cr_expect_str_eq(res.message,
                     "body should not be empty; body must be a string");
    cr_expect_eq(res.http_status, 422);
    prov_result_release(&res);

    answer(&f, "note", 403,
           "{\"statusCode\":403,\"message\":\"The token is not authorized "
           "for this scope.\"}",
           &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    prov_result_release(&res);

    /* Burst: the interval header names the wait. */
    answer(&f, "note", 429, "{\"statusCode\":429,\"message\":\"Too Many "
                            "Requests\"}", &res,
           "x-ratelimit-remaining", "0", "x-ratelimit-interval-milliseconds",
           "10000", "x-ratelimit-daily-remaining", "1500", NULL);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_str_eq(res.code, "rate_limited");
    cr_expect_eq(res.retry_after_ms, 10000);
    prov_result_release(&res);

    /* Retry-After wins. */
    answer(&f, "note", 429, NULL, &res, "retry-after", "3", NULL);
    cr_expect_eq(res.retry_after_ms, 3000);
    prov_result_release(&res);

    /* Nothing said: the documented 10 s window. */
    answer(&f, "note", 429, "", &res, NULL);
    cr_expect_eq(res.retry_after_ms, 10000);
    prov_result_release(&res);

    /* Daily budget gone: wait for the next day (UTC). */
    answer(&f, "note", 429, NULL, &res, "x-ratelimit-daily-remaining", "0",
           "x-ratelimit-interval-milliseconds", "10000", NULL);
    cr_expect_eq(res.outcome, PROV_RATE_LIMITED);
    cr_expect_str_eq(res.code, "daily_limit");
    cr_expect_eq(res.retry_after_ms, 86400000LL - NOW_MS % 86400000LL);
    prov_result_release(&res);

    answer(&f, "note", 502, "<html>bad gateway</html>", &res, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    prov_result_release(&res);

    answer(&f, "note", 0, NULL, &res, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    prov_result_release(&res);

    /* A 2xx whose body we cannot read: retried, and the retry looks. */
    answer(&f, "note", 201, "not json", &res, NULL);
    cr_expect_eq(res.outcome, PROV_RETRY);
    cr_expect_str_eq(res.code, "bad_response");
    prov_result_release(&res);
    fx_release(&f);
}

Test(ghl, spec_error_examples_classify)
{
    /* The common error shapes HighLevel documents (common-schemas.json:
     * BadRequestDTO, UnauthorizedDTO, UnprocessableDTO). */
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    struct prov_result res;
    answer(&f, "workflow", 400, "{\"statusCode\":400,\"message\":\"Bad "
                                "Request\"}", &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.code, "rejected");
    prov_result_release(&res);
    answer(&f, "workflow", 422, "{\"statusCode\":422,\"message\":"
                                "[\"Unprocessable Entity\"],\"error\":"
                                "\"Unprocessable Entity\"}", &res, NULL);
    cr_expect_eq(res.outcome, PROV_PERMANENT);
    cr_expect_str_eq(res.message, "Unprocessable Entity");
    prov_result_release(&res);
    fx_release(&f);
}

Test(ghl, spent_budget_on_success_pauses_the_key)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f);
    struct prov_result res;
    answer(&f, "workflow", 200, "{\"succeded\":true}", &res,
           "x-ratelimit-remaining", "7", "x-ratelimit-daily-remaining",
           "1000", NULL);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.pause_ms, 0);
    prov_result_release(&res);
    answer(&f, "workflow", 200, "{\"succeded\":true}", &res,
           "x-ratelimit-remaining", "0", "x-ratelimit-interval-milliseconds",
           "8000", NULL);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.pause_ms, 8000);
    prov_result_release(&res);
    answer(&f, "note", 201, "{\"note\":{\"id\":\"n1\"}}", &res,
           "x-ratelimit-remaining", "40", "x-ratelimit-daily-remaining", "0",
           NULL);
    cr_expect_eq(res.outcome, PROV_DONE);
    cr_expect_eq(res.pause_ms, 86400000LL - NOW_MS % 86400000LL);
    prov_result_release(&res);
    fx_release(&f);
}
