/*
 * test_hubspot.c - the HubSpot provider, step by step: the exact requests
 * (method, URL, headers, JSON body compared as JSON), every body checked
 * against the request schema of its operation in HubSpot's OpenAPI specs,
 * the answers from the specs' response schemas, reconciliation, applies()
 * rules, field mappings, error classification and time zones.
 *
 * The specs are read from CALLSYNC_HUBSPOT_SPECS, else from tests/specs/
 * hubspot in the source tree (HubSpot's published documents, copied from
 * shared/specs so a checkout tests on its own).
 */
#include "prov_support.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>


#define BASE "http://hs.test"
#define JOB_ID "0123456789abcdef0123456789abcdef"
#define NOW_MS 1771166100000LL /* 2026-02-15T14:35:00Z */

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
        "\"email\":\"jane@example.com\",\"address\":null,\"city\":\"Orlando\","
        "\"state\":\"FL\"},"
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
        "\"project_type\":\"kitchen\",\"timeline\":\"immediate\","
        "\"budget\":\"high\",\"urgency\":\"high\",\"lead_score\":87},"
        "\"custom\":{\"promo\":\"SPRING\"}}");
}

static void fx_init(struct fx *f, json_t *call, const char *config)
{
    memset(f, 0, sizeof(*f));
    f->job = json_pack("{s:s,s:s,s:s,s:s,s:i,s:o}", "job_id", JOB_ID,
                       "provider", "hubspot", "connection_id",
                       "7d0e1c52-0000-4000-8000-000000000001", "kind",
                       "call_sync", "attempt", 1, "call", call);
    f->config = jparse(config ? config : "{}");
    f->done = json_object();
    f->scratch = json_object();
    f->creds.access_token = "pat-na1-secret";
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

/* Start a new step: fresh scratch, as the worker does. */
static void fx_step(struct fx *f, bool reconcile)
{
    json_object_clear(f->scratch);
    f->ctx.reconcile = reconcile;
}

static void fx_contact_done(struct fx *f, const char *id)
{
    json_object_set_new(f->done, "contact",
                        json_pack("{s:s}", "contact_id", id));
}

static const struct prov_step *step(const char *name)
{
    for (size_t i = 0; i < prov_hubspot.nsteps; i++)
        if (strcmp(prov_hubspot.steps[i].name, name) == 0)
            return &prov_hubspot.steps[i];
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
/* The specs: operation look-up and a small schema check              */
/* ------------------------------------------------------------------ */

static json_t *spec_cache[8];
static const char *spec_names[] = {"contacts", "notes", "meetings", "deals"};

static json_t *spec_load(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(spec_names); i++) {
        if (strcmp(spec_names[i], name) != 0)
            continue;
        if (spec_cache[i])
            return spec_cache[i];
        char path[1024];
        const char *dir = getenv("CALLSYNC_HUBSPOT_SPECS");
        if (dir)
            snprintf(path, sizeof(path), "%s/%s.json", dir, name);
        else
            snprintf(path, sizeof(path), "%s/tests/specs/hubspot/%s.json",
                     CS_SOURCE_DIR, name);
        spec_cache[i] = json_load_file(path, 0, NULL);
        return spec_cache[i];
    }
    return NULL;
}

static const json_t *deref(const json_t *spec, const json_t *s)
{
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (!ref)
        return s;
    const char *pfx = "#/components/schemas/";
    cr_assert(strncmp(ref, pfx, strlen(pfx)) == 0, "unsupported $ref %s",
              ref);
    const json_t *t = json_object_get(
        json_object_get(json_object_get(spec, "components"), "schemas"),
        ref + strlen(pfx));
    cr_assert_not_null(t, "dangling $ref %s", ref);
    return t;
}

/*
 * Check v against schema: type, required, properties (no unknown keys
 * unless additionalProperties allows them), additionalProperties, items,
 * enum. Fails the test naming the JSON path.
 */
static void schema_check(const json_t *spec, const json_t *schema,
                         const json_t *v, const char *path)
{
    schema = deref(spec, schema);
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type) {
        bool ok = (strcmp(type, "object") == 0 && json_is_object(v)) ||
                  (strcmp(type, "array") == 0 && json_is_array(v)) ||
                  (strcmp(type, "string") == 0 && json_is_string(v)) ||
                  (strcmp(type, "integer") == 0 && json_is_integer(v)) ||
                  (strcmp(type, "number") == 0 && json_is_number(v)) ||
                  (strcmp(type, "boolean") == 0 && json_is_boolean(v));
        cr_assert(ok, "%s: expected %s", path, type);
    }
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en)) {
        bool found = false;
        size_t i;
        const json_t *e;
        json_array_foreach(en, i, e) found |= json_equal(e, v);
        cr_assert(found, "%s: value not in enum", path);
    }
    if (json_is_object(v)) {
        const json_t *req = json_object_get(schema, "required");
        size_t i;
        const json_t *r;
        json_array_foreach(req, i, r)
            cr_assert_not_null(json_object_get(v, json_string_value(r)),
                               "%s: required key '%s' missing", path,
                               json_string_value(r));
        const json_t *props = json_object_get(schema, "properties");
        const json_t *addl = json_object_get(schema, "additionalProperties");
        const char *k;
        const json_t *sub;
        json_object_foreach((json_t *)v, k, sub) {
            char p[512];
            snprintf(p, sizeof(p), "%s.%s", path, k);
            const json_t *ps = json_object_get(props, k);
            if (ps)
                schema_check(spec, ps, sub, p);
            else if (json_is_object(addl))
                schema_check(spec, addl, sub, p);
            else
                cr_assert(json_is_true(addl), "%s: unknown key", p);
        }
    }
    if (json_is_array(v)) {
        const json_t *items = json_object_get(schema, "items");
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it) {
            char p[512];
            snprintf(p, sizeof(p), "%s[%zu]", path, i);
            if (items)
                schema_check(spec, items, it, p);
        }
    }
}

/* Does the URL path match the spec's template ("/x/{id}")? */
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

/*
 * Validate a built request against its operation in the spec: the path
 * template and method exist, the body matches the operation's request
 * schema. Returns false (after checking nothing) if the specs are absent.
 */
static bool validate(const struct prov_request *rq)
{
    cr_assert(strncmp(rq->url, BASE, strlen(BASE)) == 0, "url %s", rq->url);
    const char *path = rq->url + strlen(BASE);
    const char *name = strncmp(path, "/crm/v3/objects/contacts", 24) == 0
                           ? "contacts"
                       : strncmp(path, "/crm/v3/objects/notes", 21) == 0
                           ? "notes"
                       : strncmp(path, "/crm/v3/objects/meetings", 24) == 0
                           ? "meetings"
                       : strncmp(path, "/crm/v3/objects/0-3", 19) == 0
                           ? "deals"
                           : NULL;
    cr_assert_not_null(name, "no spec covers %s", path);
    json_t *spec = spec_load(name);
    if (!spec)
        return false;
    char m[8];
    size_t i = 0;
    for (; rq->method[i] && i < sizeof(m) - 1; i++)
        m[i] = (char)(rq->method[i] | 0x20);
    m[i] = '\0';
    /* A literal path first ("/contacts/search"), then the templates. */
    const json_t *paths = json_object_get(spec, "paths");
    const json_t *op = json_object_get(json_object_get(paths, path), m);
    const char *tpl;
    json_t *item;
    json_object_foreach((json_t *)paths, tpl, item) {
        if (!op && strchr(tpl, '{') && path_match(tpl, path))
            op = json_object_get(item, m);
    }
    cr_assert_not_null(op, "%s %s is not in %s.json", rq->method, path,
                       name);
    const json_t *schema = json_object_get(
        json_object_get(
            json_object_get(json_object_get(op, "requestBody"), "content"),
            "application/json"),
        "schema");
    if (!schema) {
        cr_assert_null(rq->body, "%s %s takes no body", rq->method, path);
        return true;
    }
    cr_assert_not_null(rq->body, "%s %s needs a body", rq->method, path);
    json_t *body = jparse(rq->body);
    schema_check(spec, schema, body, "$");
    json_decref(body);
    return true;
}

/* ------------------------------------------------------------------ */
/* Building and answering                                             */
/* ------------------------------------------------------------------ */

/* Build the next request of the step and check the common parts. */
static void build(struct fx *f, const char *name, struct prov_request *rq,
                  const char *method, const char *path)
{
    struct cs_err err = {0};
    memset(rq, 0, sizeof(*rq));
    int rc = step(name)->build(&f->ctx, rq, &err);
    cr_assert_eq(rc, 0, "build %s: %s (%s)", name, err.msg, err.field);
    cr_assert_str_eq(rq->method, method);
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", BASE, path);
    cr_assert_str_eq(rq->url, url);
    cr_assert_str_eq(hdr(rq, "Authorization"), "Bearer pat-na1-secret");
    cr_assert_str_eq(hdr(rq, "Accept"), "application/json");
    if (rq->body) {
        cr_assert_str_eq(hdr(rq, "Content-Type"), "application/json");
        cr_assert_eq(rq->body_len, strlen(rq->body));
    } else {
        cr_assert_null(hdr(rq, "Content-Type"));
    }
    if (strncmp(path, "/crm/", 5) == 0)
        validate(rq);
}

static void expect_body(const struct prov_request *rq, const char *want)
{
    prov_expect_json(rq->body, want);
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

/* A SimplePublicObject answer with this id (the spec's example). */
static char *object_answer(const char *id)
{
    char *s = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&s, &n);
    fprintf(m,
            "{\"archived\":false,\"createdAt\":\"2019-10-30T03:30:17.883Z\","
            "\"id\":\"%s\",\"properties\":{\"property_string\":\"value\"},"
            "\"updatedAt\":\"2019-12-07T16:50:06.678Z\"}",
            id);
    fclose(m);
    return s;
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

#define EMPTY_SEARCH "{\"total\":0,\"results\":[]}"

/* ------------------------------------------------------------------ */
/* The table                                                          */
/* ------------------------------------------------------------------ */

Test(hubspot, ops_table)
{
    cr_assert_str_eq(prov_hubspot.name, "hubspot");
    cr_assert_eq(prov_hubspot.rate.requests, 100);
    cr_assert_eq(prov_hubspot.rate.per_ms, 10000);
    cr_assert_str_eq(prov_hubspot.rate_scope, "connection");
    const char *names[] = {"contact", "note", "meeting", "deal", "workflow"};
    cr_assert_eq(prov_hubspot.nsteps, 5);
    for (size_t i = 0; i < 5; i++)
        cr_assert_str_eq(prov_hubspot.steps[i].name, names[i]);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(prov_hubspot.steps[i].reconcile, PROV_RECONCILE_LOOKUP);
    cr_assert_eq(prov_hubspot.steps[4].reconcile, PROV_RECONCILE_NONE);
    cr_assert_null(prov_hubspot.steps[0].applies);
    cr_assert_null(prov_hubspot.steps[1].applies);
}

/* ------------------------------------------------------------------ */
/* contact                                                            */
/* ------------------------------------------------------------------ */

static const char *search_want =
    "{\"filterGroups\":["
    "{\"filters\":[{\"propertyName\":\"phone\",\"operator\":\"EQ\","
    "\"value\":\"+14079780655\"}]},"
    "{\"filters\":[{\"propertyName\":\"email\",\"operator\":\"EQ\","
    "\"value\":\"jane@example.com\"}]}],"
    "\"properties\":[\"email\",\"phone\",\"firstname\",\"lastname\"],"
    "\"limit\":10,\"after\":\"0\",\"sorts\":[]}";

static const char *all_props =
    "{\"firstname\":\"Jane\",\"lastname\":\"Smith\","
    "\"email\":\"jane@example.com\",\"phone\":\"+14079780655\","
    "\"city\":\"Orlando\",\"state\":\"FL\"}";

Test(hubspot, contact_search_then_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_step(&f, false);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    expect_body(&rq, search_want);
    prov_request_release(&rq);

    answer(&f, "contact", 200, EMPTY_SEARCH, &res, NULL);
    cr_assert_eq(res.outcome, PROV_NEXT);

    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts");
    char want[1024];
    snprintf(want, sizeof(want), "{\"properties\":%s,\"associations\":[]}",
             all_props);
    expect_body(&rq, want);
    prov_request_release(&rq);

    char *ok = object_answer("512");
    answer(&f, "contact", 201, ok, &res, NULL);
    free(ok);
    expect_done(&res, "contact_id", "512");
    fx_release(&f);
}

Test(hubspot, contact_found_is_patched_with_what_differs)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_step(&f, false);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    prov_request_release(&rq);
    /* Two hits: the one with the call's email wins. */
    answer(&f, "contact", 200,
           "{\"total\":2,\"results\":["
           "{\"id\":\"77\",\"archived\":false,\"createdAt\":"
           "\"2024-01-01T00:00:00Z\",\"updatedAt\":\"2024-01-01T00:00:00Z\","
           "\"properties\":{\"phone\":\"+14079780655\",\"email\":null}},"
           "{\"id\":\"88\",\"archived\":false,\"createdAt\":"
           "\"2024-01-01T00:00:00Z\",\"updatedAt\":\"2024-01-01T00:00:00Z\","
           "\"properties\":{\"email\":\"Jane@Example.com\","
           "\"phone\":\"+14079780655\",\"firstname\":\"Jane\","
           "\"lastname\":\"Smyth\"}}]}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_NEXT);
    build(&f, "contact", &rq, "PATCH", "/crm/v3/objects/contacts/88");
    expect_body(&rq, "{\"properties\":{\"lastname\":\"Smith\","
                     "\"city\":\"Orlando\",\"state\":\"FL\"}}");
    prov_request_release(&rq);
    char *ok = object_answer("88");
    answer(&f, "contact", 200, ok, &res, NULL);
    free(ok);
    expect_done(&res, "contact_id", "88");
    fx_release(&f);
}

Test(hubspot, contact_found_with_nothing_to_set_skips_the_patch)
{
    struct fx f;
    json_t *call = base_call();
    json_t *cu = json_object_get(call, "customer");
    json_object_set_new(cu, "city", json_null());
    json_object_set_new(cu, "state", json_null());
    fx_init(&f, call, NULL);
    fx_step(&f, false);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    prov_request_release(&rq);
    answer(&f, "contact", 200,
           "{\"total\":1,\"results\":[{\"id\":\"88\",\"archived\":false,"
           "\"createdAt\":\"2024-01-01T00:00:00Z\",\"updatedAt\":"
           "\"2024-01-01T00:00:00Z\",\"properties\":{\"email\":"
           "\"jane@example.com\",\"phone\":\"+14079780655\",\"firstname\":"
           "\"Jane\",\"lastname\":\"Smith\"}}]}",
           &res, NULL);
    expect_done(&res, "contact_id", "88");
    fx_release(&f);
}

Test(hubspot, contact_search_by_phone_only_and_email_only)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "customer"), "email",
                        json_null());
    fx_init(&f, call, NULL);
    struct prov_request rq;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    json_t *b = jparse(rq.body);
    cr_assert_eq(json_array_size(json_object_get(b, "filterGroups")), 1);
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);

    call = base_call();
    json_object_set_new(json_object_get(call, "customer"), "phone",
                        json_null());
    fx_init(&f, call, NULL);
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    expect_body(&rq, "{\"filterGroups\":[{\"filters\":[{\"propertyName\":"
                     "\"email\",\"operator\":\"EQ\",\"value\":"
                     "\"jane@example.com\"}]}],\"properties\":[\"email\","
                     "\"phone\",\"firstname\",\"lastname\"],\"limit\":10,"
                     "\"after\":\"0\",\"sorts\":[]}");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(hubspot, contact_conflict_uses_the_existing_id)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    prov_request_release(&rq);
    answer(&f, "contact", 200, EMPTY_SEARCH, &res, NULL);
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts");
    prov_request_release(&rq);
    answer(&f, "contact", 409,
           "{\"status\":\"error\",\"message\":\"Contact already exists. "
           "Existing ID: 37765128953\",\"correlationId\":"
           "\"2dea5219-07f2-40ce-82ec-9c2e302317a4\",\"category\":"
           "\"CONFLICT\"}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_NEXT);
    build(&f, "contact", &rq, "PATCH",
          "/crm/v3/objects/contacts/37765128953");
    char want[1024];
    snprintf(want, sizeof(want), "{\"properties\":%s}", all_props);
    expect_body(&rq, want);
    prov_request_release(&rq);
    char *ok = object_answer("37765128953");
    answer(&f, "contact", 200, ok, &res, NULL);
    free(ok);
    expect_done(&res, "contact_id", "37765128953");
    fx_release(&f);
}

Test(hubspot, contact_conflict_without_an_id_is_permanent)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_result res;
    answer(&f, "contact", 409,
           "{\"status\":\"error\",\"message\":\"Conflict\","
           "\"correlationId\":\"x\",\"category\":\"CONFLICT\"}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_PERMANENT);
    cr_assert_str_eq(res.code, "CONFLICT");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hubspot, contact_vanished_before_the_patch)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_request rq;
    struct prov_result res;
    const char *gone = "{\"status\":\"error\",\"message\":\"resource not "
                       "found\",\"correlationId\":\"c\",\"category\":"
                       "\"OBJECT_NOT_FOUND\"}";
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts/search");
    prov_request_release(&rq);
    answer(&f, "contact", 200,
           "{\"total\":1,\"results\":[{\"id\":\"88\",\"archived\":false,"
           "\"createdAt\":\"2024-01-01T00:00:00Z\",\"updatedAt\":"
           "\"2024-01-01T00:00:00Z\",\"properties\":{}}]}",
           &res, NULL);
    build(&f, "contact", &rq, "PATCH", "/crm/v3/objects/contacts/88");
    prov_request_release(&rq);
    /* First 404: create it afresh. */
    answer(&f, "contact", 404, gone, &res, NULL);
    cr_assert_eq(res.outcome, PROV_NEXT);
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts");
    prov_request_release(&rq);
    answer(&f, "contact", 409,
           "{\"status\":\"error\",\"message\":\"Contact already exists. "
           "Existing ID: 99\",\"correlationId\":\"c\",\"category\":"
           "\"CONFLICT\"}",
           &res, NULL);
    build(&f, "contact", &rq, "PATCH", "/crm/v3/objects/contacts/99");
    prov_request_release(&rq);
    /* Second 404 in the same attempt: permanent. */
    answer(&f, "contact", 404, gone, &res, NULL);
    cr_assert_eq(res.outcome, PROV_PERMANENT);
    cr_assert_str_eq(res.code, "contact_vanished");
    cr_assert_eq(res.http_status, 404);
    prov_result_release(&res);
    fx_release(&f);
}

Test(hubspot, contact_without_phone_or_email_is_permanent)
{
    struct fx f;
    json_t *call = base_call();
    json_t *cu = json_object_get(call, "customer");
    json_object_set_new(cu, "phone", json_null());
    json_object_set_new(cu, "email", json_string(""));
    fx_init(&f, call, NULL);
    struct cs_err err;
    cr_assert_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_assert(strncmp(err.msg, "no_contact_key:", 15) == 0, "%s", err.msg);
    fx_release(&f);
}

Test(hubspot, credentials)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    f.creds.access_token = NULL;
    struct cs_err err;
    cr_assert_eq(build_err(&f, "contact", &err), CS_EINVAL);
    cr_assert(strncmp(err.msg, "no_credentials:", 15) == 0, "%s", err.msg);
    f.ctx.creds = NULL;
    cr_assert_eq(build_err(&f, "contact", &err), CS_EINVAL);

    /* The api key when there is no token. */
    f.ctx.creds = &f.creds;
    f.creds.api_key = "key-123";
    struct prov_request rq = {0};
    cr_assert_eq(step("contact")->build(&f.ctx, &rq, &err), 0);
    cr_assert_str_eq(hdr(&rq, "Authorization"), "Bearer key-123");
    prov_request_release(&rq);

    /* The real API when no base URL is given. */
    f.ctx.base_url = NULL;
    json_object_clear(f.scratch);
    cr_assert_eq(step("contact")->build(&f.ctx, &rq, &err), 0);
    cr_assert_str_eq(rq.url,
                     "https://api.hubapi.com/crm/v3/objects/contacts/search");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(hubspot, name_only_is_split)
{
    struct fx f;
    json_t *call = base_call();
    json_t *cu = json_object_get(call, "customer");
    json_object_set_new(cu, "first_name", json_null());
    json_object_set_new(cu, "last_name", json_null());
    json_object_set_new(cu, "name", json_string("Mary Ann Lee"));
    fx_init(&f, call, NULL);
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts");
    json_t *b = jparse(rq.body);
    json_t *p = json_object_get(b, "properties");
    cr_assert_str_eq(json_string_value(json_object_get(p, "firstname")),
                     "Mary");
    cr_assert_str_eq(json_string_value(json_object_get(p, "lastname")),
                     "Ann Lee");
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* field mappings                                                     */
/* ------------------------------------------------------------------ */

Test(hubspot, field_mappings_and_custom_properties)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"field_mappings\":["
            "{\"target\":\"hs_lead_source\",\"source\":\"source\"},"
            "{\"target\":\"lead_source_detail\",\"source\":\"call.call_id\"},"
            "{\"target\":\"promo_code\",\"source\":\"custom.promo\"},"
            "{\"target\":\"missing\",\"source\":\"custom.nope\"}],"
            "\"custom_properties\":["
            "{\"name\":\"call_recording_url\",\"value\":\"recording_url\","
            "\"type\":\"string\"},"
            "{\"name\":\"ai_project_type\",\"value\":"
            "\"analysis.project_type\",\"type\":\"enumeration\"},"
            "{\"name\":\"ai_lead_score\",\"value\":\"analysis.lead_score\","
            "\"type\":\"number\"},"
            "{\"name\":\"call_duration\",\"value\":\"duration_s\","
            "\"type\":\"number\"},"
            "{\"name\":\"city\",\"value\":\"customer.state\","
            "\"type\":\"string\"}]}");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts");
    expect_body(&rq,
                "{\"associations\":[],\"properties\":{"
                "\"firstname\":\"Jane\",\"lastname\":\"Smith\","
                "\"email\":\"jane@example.com\",\"phone\":\"+14079780655\","
                "\"city\":\"FL\",\"state\":\"FL\","
                "\"hs_lead_source\":\"retell\","
                "\"lead_source_detail\":\"call_abc123\","
                "\"promo_code\":\"SPRING\","
                "\"call_recording_url\":\"https://rec.example.com/r/1.wav\","
                "\"ai_project_type\":\"kitchen\",\"ai_lead_score\":\"87\","
                "\"call_duration\":\"300\"}}");
    prov_request_release(&rq);
    fx_release(&f);
}

Test(hubspot, field_mappings_object_form)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"field_mappings\":{\"call_outcome\":\"outcome\"}}");
    json_object_set_new(f.scratch, "phase", json_string("create"));
    struct prov_request rq;
    build(&f, "contact", &rq, "POST", "/crm/v3/objects/contacts");
    json_t *b = jparse(rq.body);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "properties"), "call_outcome")),
                     "appointment_booked");
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

static void expect_mapping_error(const char *config, const char *prop)
{
    struct fx f;
    fx_init(&f, base_call(), config);
    struct cs_err err;
    cr_assert_eq(build_err(&f, "contact", &err), CS_EINVAL, "%s", config);
    cr_assert(strncmp(err.msg, "mapping_error:", 14) == 0, "%s", err.msg);
    cr_assert(strstr(err.msg, prop) != NULL, "%s", err.msg);
    cr_assert_str_eq(err.field, prop);
    fx_release(&f);
}

Test(hubspot, mapping_errors)
{
    /* A number property fed a word. */
    expect_mapping_error("{\"custom_properties\":[{\"name\":\"ai_timeline\","
                         "\"value\":\"analysis.timeline\",\"type\":"
                         "\"number\"}]}",
                         "ai_timeline");
    /* An object where a scalar belongs. */
    expect_mapping_error("{\"field_mappings\":[{\"target\":\"ai_all\","
                         "\"source\":\"analysis\"}]}",
                         "ai_all");
    /* An enumeration fed a number. */
    expect_mapping_error("{\"custom_properties\":[{\"name\":\"ai_score_band\","
                         "\"value\":\"analysis.lead_score\",\"type\":"
                         "\"enumeration\"}]}",
                         "ai_score_band");
    /* A boolean property fed a word. */
    expect_mapping_error("{\"custom_properties\":[{\"name\":\"is_hot\","
                         "\"value\":\"analysis.urgency\",\"type\":"
                         "\"bool\"}]}",
                         "is_hot");
    /* An unknown type. */
    expect_mapping_error("{\"custom_properties\":[{\"name\":\"odd\","
                         "\"value\":\"outcome\",\"type\":\"blob\"}]}",
                         "odd");
}

/* ------------------------------------------------------------------ */
/* note                                                               */
/* ------------------------------------------------------------------ */

Test(hubspot, note_create)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(call, "summary",
                        json_string("Wants <b>\"quick\"</b> fix & quote"));
    fx_init(&f, call, NULL);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "note", &rq, "POST", "/crm/v3/objects/notes");
    expect_body(
        &rq,
        "{\"properties\":{\"hs_timestamp\":\"2026-02-15T14:35:00.000Z\","
        "\"hs_note_body\":\""
        "<p><strong>Call outcome:</strong> appointment_booked</p>"
        "<p><strong>Direction:</strong> inbound</p>"
        "<p><strong>Summary:</strong> Wants &lt;b&gt;&quot;quick&quot;"
        "&lt;/b&gt; fix &amp; quote</p>"
        "<p><strong>Sentiment:</strong> positive</p>"
        "<p><strong>Duration:</strong> 5m 0s</p>"
        "<p><strong>Recording:</strong> <a href=\\\"https://rec.example.com"
        "/r/1.wav\\\">https://rec.example.com/r/1.wav</a></p>"
        "<p><strong>Transcript:</strong> Agent: Hi<br>User: Hello</p>"
        "<p>Sync reference: callsync:" JOB_ID " - job " JOB_ID " </p>\"},"
        "\"associations\":[{\"to\":{\"id\":\"512\"},\"types\":[{"
        "\"associationCategory\":\"HUBSPOT_DEFINED\","
        "\"associationTypeId\":202}]}]}");
    prov_request_release(&rq);
    char *ok = object_answer("9001");
    answer(&f, "note", 201, ok, &res, NULL);
    free(ok);
    expect_done(&res, "note_id", "9001");
    fx_release(&f);
}

Test(hubspot, note_timestamp_falls_back)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(call, "ended_at", json_null());
    fx_init(&f, call, NULL);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    build(&f, "note", &rq, "POST", "/crm/v3/objects/notes");
    json_t *b = jparse(rq.body);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "properties"), "hs_timestamp")),
                     "2026-02-15T14:30:00.000Z");
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);

    call = base_call();
    json_object_set_new(call, "ended_at", json_null());
    json_object_set_new(call, "started_at", json_null());
    fx_init(&f, call, NULL);
    fx_contact_done(&f, "512");
    build(&f, "note", &rq, "POST", "/crm/v3/objects/notes");
    b = jparse(rq.body);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "properties"), "hs_timestamp")),
                     "2026-02-15T14:35:00.000Z"); /* now */
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(hubspot, note_transcript_is_truncated)
{
    struct fx f;
    json_t *call = base_call();
    size_t n = 200000;
    char *t = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        t[i] = i % 50 == 49 ? '\n' : (i % 7 == 0 ? '<' : 'a');
    t[n] = '\0';
    json_object_set_new(call, "transcript", json_string(t));
    free(t);
    fx_init(&f, call, NULL);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    build(&f, "note", &rq, "POST", "/crm/v3/objects/notes");
    json_t *b = jparse(rq.body);
    const char *html = json_string_value(
        json_object_get(json_object_get(b, "properties"), "hs_note_body"));
    cr_assert_lt(strlen(html), 65536);
    cr_assert_not_null(strstr(html, "[&hellip;]"));
    cr_assert_not_null(strstr(html, "callsync:" JOB_ID));
    /* No entity is cut in half. */
    const char *cut = strstr(html, " [&hellip;]");
    cr_assert(cut[-1] == ';' || cut[-1] == 'a' || cut[-1] == '>');
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

static void reconcile_found(const char *name, const char *search_path,
                            const char *prop, const char *key,
                            const char *config)
{
    struct fx f;
    fx_init(&f, base_call(), config);
    fx_contact_done(&f, "512");
    fx_step(&f, true);
    struct prov_request rq;
    struct prov_result res;
    build(&f, name, &rq, "POST", search_path);
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"filterGroups\":[{\"filters\":[{\"propertyName\":\"%s\","
             "\"operator\":\"CONTAINS_TOKEN\",\"value\":\"" JOB_ID "\"}]}],"
             "\"properties\":[\"%s\"],\"limit\":1,\"after\":\"0\","
             "\"sorts\":[]}",
             prop, prop);
    expect_body(&rq, want);
    prov_request_release(&rq);
    answer(&f, name, 200,
           "{\"total\":1,\"results\":[{\"id\":\"4242\",\"archived\":false,"
           "\"createdAt\":\"2026-02-15T14:35:01Z\",\"updatedAt\":"
           "\"2026-02-15T14:35:01Z\",\"properties\":{}}]}",
           &res, NULL);
    expect_done(&res, key, "4242");
    fx_release(&f);
}

static void reconcile_missing(const char *name, const char *search_path,
                              const char *create_path, const char *key,
                              const char *config)
{
    struct fx f;
    fx_init(&f, base_call(), config);
    fx_contact_done(&f, "512");
    fx_step(&f, true);
    struct prov_request rq;
    struct prov_result res;
    build(&f, name, &rq, "POST", search_path);
    prov_request_release(&rq);
    answer(&f, name, 200, EMPTY_SEARCH, &res, NULL);
    cr_assert_eq(res.outcome, PROV_NEXT);
    build(&f, name, &rq, "POST", create_path);
    json_t *b = jparse(rq.body);
    json_t *to = json_object_get(
        json_array_get(json_object_get(b, "associations"), 0), "to");
    cr_assert_str_eq(json_string_value(json_object_get(to, "id")), "512");
    json_decref(b);
    prov_request_release(&rq);
    char *ok = object_answer("5151");
    answer(&f, name, 201, ok, &res, NULL);
    free(ok);
    expect_done(&res, key, "5151");
    fx_release(&f);
}

Test(hubspot, note_reconcile)
{
    reconcile_found("note", "/crm/v3/objects/notes/search", "hs_note_body",
                    "note_id", NULL);
    reconcile_missing("note", "/crm/v3/objects/notes/search",
                      "/crm/v3/objects/notes", "note_id", NULL);
}

Test(hubspot, note_without_contact_is_an_error)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct cs_err err;
    cr_assert_eq(build_err(&f, "note", &err), CS_EINVAL);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* meeting                                                            */
/* ------------------------------------------------------------------ */

Test(hubspot, meeting_applies)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    cr_assert(step("meeting")->applies(&f.ctx));
    json_t *ap = json_object_get((json_t *)f.ctx.call, "appointment");
    json_object_set_new(ap, "time", json_null());
    cr_assert_not(step("meeting")->applies(&f.ctx));
    json_object_set_new((json_t *)f.ctx.call, "appointment", json_null());
    cr_assert_not(step("meeting")->applies(&f.ctx));
    fx_release(&f);
}

Test(hubspot, meeting_create)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "meeting", &rq, "POST", "/crm/v3/objects/meetings");
    expect_body(
        &rq,
        "{\"properties\":{\"hs_timestamp\":\"2026-02-20T19:00:00.000Z\","
        "\"hs_meeting_title\":\"Roof Repair\","
        "\"hs_meeting_body\":\"<p><strong>Service:</strong> roofing</p>"
        "<p><strong>Time zone:</strong> America/New_York</p>"
        "<p><strong>Call summary:</strong> Customer scheduled roof repair</p>"
        "<p>Sync reference: callsync:" JOB_ID " - job " JOB_ID " </p>\","
        "\"hs_meeting_start_time\":\"2026-02-20T19:00:00.000Z\","
        "\"hs_meeting_end_time\":\"2026-02-20T21:00:00.000Z\","
        "\"hs_meeting_outcome\":\"SCHEDULED\"},"
        "\"associations\":[{\"to\":{\"id\":\"512\"},\"types\":[{"
        "\"associationCategory\":\"HUBSPOT_DEFINED\","
        "\"associationTypeId\":200}]}]}");
    prov_request_release(&rq);
    char *ok = object_answer("777");
    answer(&f, "meeting", 201, ok, &res, NULL);
    free(ok);
    expect_done(&res, "meeting_id", "777");
    fx_release(&f);
}

/* Start and end of the meeting for an appointment. */
static void meeting_times(const char *date, const char *time_s,
                          const char *tz, json_t *duration,
                          const char *start, const char *end)
{
    struct fx f;
    json_t *call = base_call();
    json_t *ap = json_object_get(call, "appointment");
    json_object_set_new(ap, "date", json_string(date));
    json_object_set_new(ap, "time", json_string(time_s));
    json_object_set_new(ap, "timezone", tz ? json_string(tz) : json_null());
    json_object_set_new(ap, "duration_min", duration);
    fx_init(&f, call, NULL);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    build(&f, "meeting", &rq, "POST", "/crm/v3/objects/meetings");
    json_t *b = jparse(rq.body);
    json_t *p = json_object_get(b, "properties");
    cr_expect_str_eq(
        json_string_value(json_object_get(p, "hs_meeting_start_time")),
        start, "%s %s %s", date, time_s, tz ? tz : "(none)");
    cr_expect_str_eq(
        json_string_value(json_object_get(p, "hs_meeting_end_time")), end,
        "%s %s %s", date, time_s, tz ? tz : "(none)");
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(hubspot, meeting_time_zones)
{
    setenv("TZ", "Europe/Paris", 1);
    /* New York in winter (EST, -05:00) and summer (EDT, -04:00). */
    meeting_times("2026-01-15", "09:30", "America/New_York",
                  json_integer(30), "2026-01-15T14:30:00.000Z",
                  "2026-01-15T15:00:00.000Z");
    meeting_times("2026-07-15", "09:30", "America/New_York", json_null(),
                  "2026-07-15T13:30:00.000Z", "2026-07-15T14:30:00.000Z");
    /* Kolkata (+05:30, no DST). */
    meeting_times("2026-02-20", "14:00", "Asia/Kolkata", json_integer(45),
                  "2026-02-20T08:30:00.000Z", "2026-02-20T09:15:00.000Z");
    /* No zone: UTC. Duration as a string. */
    meeting_times("2026-02-20", "14:00", NULL, json_string("90"),
                  "2026-02-20T14:00:00.000Z", "2026-02-20T15:30:00.000Z");
    /* The process's own zone is left as it was. */
    cr_assert_str_eq(getenv("TZ"), "Europe/Paris");
}

Test(hubspot, meeting_bad_zone_or_date_is_a_mapping_error)
{
    const char *bad[][3] = {
        {"2026-02-20", "14:00", "Mars/Olympus_Mons"},
        {"2026-02-20", "14:00", "../../etc/passwd"},
        {"20-02-2026", "14:00", "UTC"},
        {"2026-02-20", "2pm", "UTC"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct fx f;
        json_t *call = base_call();
        json_t *ap = json_object_get(call, "appointment");
        json_object_set_new(ap, "date", json_string(bad[i][0]));
        json_object_set_new(ap, "time", json_string(bad[i][1]));
        json_object_set_new(ap, "timezone", json_string(bad[i][2]));
        fx_init(&f, call, NULL);
        fx_contact_done(&f, "512");
        struct cs_err err;
        cr_assert_eq(build_err(&f, "meeting", &err), CS_EINVAL);
        cr_assert(strncmp(err.msg, "mapping_error:", 14) == 0, "%s",
                  err.msg);
        fx_release(&f);
    }
}

Test(hubspot, meeting_reconcile)
{
    reconcile_found("meeting", "/crm/v3/objects/meetings/search",
                    "hs_meeting_body", "meeting_id", NULL);
    reconcile_missing("meeting", "/crm/v3/objects/meetings/search",
                      "/crm/v3/objects/meetings", "meeting_id", NULL);
}

/* ------------------------------------------------------------------ */
/* deal                                                               */
/* ------------------------------------------------------------------ */

#define DEAL_CONFIG                                                          \
    "{\"pipeline_id\":\"default\",\"default_stage_id\":"                     \
    "\"appointmentscheduled\"}"

Test(hubspot, deal_applies)
{
    struct fx f;
    fx_init(&f, base_call(), DEAL_CONFIG);
    cr_assert(step("deal")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, base_call(), "{\"pipeline_id\":\"\"}");
    cr_assert_not(step("deal")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, base_call(), "{\"pipeline_id\":12345}");
    cr_assert(step("deal")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, base_call(), NULL);
    cr_assert_not(step("deal")->applies(&f.ctx));
    fx_release(&f);
}

Test(hubspot, deal_create)
{
    struct fx f;
    fx_init(&f, base_call(), DEAL_CONFIG);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "deal", &rq, "POST", "/crm/v3/objects/0-3");
    expect_body(&rq,
                "{\"properties\":{\"dealname\":\"Jane Smith \xe2\x80\x93 "
                "appointment_booked\",\"pipeline\":\"default\","
                "\"dealstage\":\"appointmentscheduled\",\"description\":"
                "\"Customer scheduled roof repair\\n\\nSync reference: "
                "callsync:" JOB_ID " - job " JOB_ID " \"},"
                "\"associations\":[{\"to\":{\"id\":\"512\"},\"types\":[{"
                "\"associationCategory\":\"HUBSPOT_DEFINED\","
                "\"associationTypeId\":3}]}]}");
    prov_request_release(&rq);
    char *ok = object_answer("31337");
    answer(&f, "deal", 201, ok, &res, NULL);
    free(ok);
    expect_done(&res, "deal_id", "31337");
    fx_release(&f);
}

Test(hubspot, deal_name_template)
{
    struct fx f;
    fx_init(&f, base_call(),
            "{\"pipeline_id\":\"p1\",\"default_stage_id\":\"s1\","
            "\"deal_name_template\":\"{{customer.name}} - "
            "{{ analysis.project_type }} ({{analysis.lead_score}}) "
            "{{nope}}\"}");
    fx_contact_done(&f, "512");
    struct prov_request rq;
    build(&f, "deal", &rq, "POST", "/crm/v3/objects/0-3");
    json_t *b = jparse(rq.body);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "properties"), "dealname")),
                     "Jane Smith - kitchen (87) ");
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}

Test(hubspot, deal_without_stage_is_a_config_error)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"pipeline_id\":\"p1\"}");
    fx_contact_done(&f, "512");
    struct cs_err err;
    cr_assert_eq(build_err(&f, "deal", &err), CS_EINVAL);
    cr_assert(strncmp(err.msg, "config_error:", 13) == 0, "%s", err.msg);
    fx_release(&f);
}

Test(hubspot, deal_reconcile)
{
    reconcile_found("deal", "/crm/v3/objects/0-3/search", "description",
                    "deal_id", DEAL_CONFIG);
    reconcile_missing("deal", "/crm/v3/objects/0-3/search",
                      "/crm/v3/objects/0-3", "deal_id", DEAL_CONFIG);
}

/* ------------------------------------------------------------------ */
/* workflow                                                           */
/* ------------------------------------------------------------------ */

Test(hubspot, workflow_applies)
{
    struct fx f;
    fx_init(&f, base_call(), "{\"workflow_id\":\"12345\"}");
    cr_assert(step("workflow")->applies(&f.ctx));
    json_object_set_new(json_object_get((json_t *)f.ctx.call, "customer"),
                        "email", json_null());
    cr_assert_not(step("workflow")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, base_call(), NULL);
    cr_assert_not(step("workflow")->applies(&f.ctx));
    fx_release(&f);
    fx_init(&f, base_call(), "{\"workflow_id\":98765}");
    cr_assert(step("workflow")->applies(&f.ctx));
    fx_release(&f);
}

Test(hubspot, workflow_enroll)
{
    struct fx f;
    json_t *call = base_call();
    json_object_set_new(json_object_get(call, "customer"), "email",
                        json_string("jane+roof@example.com"));
    fx_init(&f, call, "{\"workflow_id\":98765}");
    fx_contact_done(&f, "512");
    struct prov_request rq;
    struct prov_result res;
    build(&f, "workflow", &rq, "POST",
          "/automation/v2/workflows/98765/enrollments/contacts/"
          "jane%2Broof%40example.com");
    cr_assert_null(rq.body);
    prov_request_release(&rq);
    answer(&f, "workflow", 204, NULL, &res, NULL);
    expect_done(&res, "workflow_id", "98765");
    answer(&f, "workflow", 404,
           "{\"status\":\"error\",\"message\":\"workflow not found\","
           "\"correlationId\":\"c\",\"category\":\"OBJECT_NOT_FOUND\"}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_PERMANENT);
    cr_assert_str_eq(res.code, "OBJECT_NOT_FOUND");
    prov_result_release(&res);
    fx_release(&f);
}

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

static void classify(int status, const char *body, const char *h,
                     const char *hv, enum prov_outcome want,
                     const char *code, int64_t retry_after)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f, "512");
    struct prov_result res;
    if (h)
        answer(&f, "note", status, body, &res, h, hv, NULL);
    else
        answer(&f, "note", status, body, &res, NULL);
    cr_expect_eq(res.outcome, want, "status %d: outcome %d", status,
                 res.outcome);
    cr_expect_str_eq(res.code, code, "status %d", status);
    cr_expect_eq(res.retry_after_ms, retry_after, "status %d: %lld", status,
                 (long long)res.retry_after_ms);
    cr_expect_eq(res.http_status, status);
    prov_result_release(&res);
    fx_release(&f);
}

Test(hubspot, error_classification)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    struct prov_result res;
    answer(&f, "note", 400,
           "{\"status\":\"error\",\"message\":\"Property values were not "
           "valid: hs_timestamp\",\"correlationId\":"
           "\"aeb5f871-7f07-4993-9211-075dc63e7cbf\",\"category\":"
           "\"VALIDATION_ERROR\",\"links\":{\"knowledge-base\":"
           "\"https://www.hubspot.com/products/service/knowledge-base\"}}",
           &res, NULL);
    cr_assert_eq(res.outcome, PROV_PERMANENT);
    cr_assert_str_eq(res.code, "VALIDATION_ERROR");
    cr_assert_str_eq(res.message,
                     "Property values were not valid: hs_timestamp");
    prov_result_release(&res);
    fx_release(&f);

    classify(401,
             "{\"status\":\"error\",\"message\":\"Authentication credentials "
             "not found.\",\"correlationId\":\"c\",\"category\":"
             "\"INVALID_AUTHENTICATION\"}",
             NULL, NULL, PROV_AUTH, "INVALID_AUTHENTICATION", -1);
    classify(429,
             "{\"status\":\"error\",\"message\":\"You have reached your "
             "ten_secondly_rolling limit.\",\"errorType\":\"RATE_LIMIT\","
             "\"correlationId\":\"c\",\"policyName\":\"TEN_SECONDLY_ROLLING\","
             "\"groupName\":\"publicapi:private-app:12345\"}",
             NULL, NULL, PROV_RATE_LIMITED, "rate_limited", 10000);
    classify(429,
             "{\"status\":\"error\",\"message\":\"You have reached your "
             "secondly limit.\",\"errorType\":\"RATE_LIMIT\","
             "\"correlationId\":\"c\",\"policyName\":\"SECONDLY\"}",
             NULL, NULL, PROV_RATE_LIMITED, "rate_limited", 1000);
    /* DAILY: until the next midnight UTC (now is 14:35:00Z). */
    classify(429,
             "{\"status\":\"error\",\"message\":\"You have reached your "
             "daily limit.\",\"errorType\":\"RATE_LIMIT\","
             "\"correlationId\":\"c\",\"policyName\":\"DAILY\"}",
             NULL, NULL, PROV_RATE_LIMITED, "rate_limited",
             (int64_t)(9 * 3600 + 25 * 60) * 1000);
    /* Retry-After wins over the policy. */
    classify(429,
             "{\"status\":\"error\",\"policyName\":\"TEN_SECONDLY_ROLLING\"}",
             "Retry-After", "3", PROV_RATE_LIMITED, "rate_limited", 3000);
    classify(429, NULL, NULL, NULL, PROV_RATE_LIMITED, "rate_limited", -1);
    classify(503, "<html>Service Unavailable</html>", NULL, NULL, PROV_RETRY,
             "server_error", -1);
    classify(0, NULL, NULL, NULL, PROV_RETRY, "network_error", -1);
    classify(403,
             "{\"status\":\"error\",\"message\":\"This app hasn't been granted "
             "all required scopes\",\"correlationId\":\"c\",\"category\":"
             "\"MISSING_SCOPES\"}",
             NULL, NULL, PROV_PERMANENT, "MISSING_SCOPES", -1);
}

Test(hubspot, exhausted_rate_limit_header_on_success_is_fine)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f, "512");
    struct prov_result res;
    char *ok = object_answer("9001");
    answer(&f, "note", 201, ok, &res, "x-hubspot-ratelimit-remaining", "0",
           "x-hubspot-ratelimit-max", "100", NULL);
    free(ok);
    expect_done(&res, "note_id", "9001");
    fx_release(&f);
}

Test(hubspot, unreadable_success_is_retried)
{
    struct fx f;
    fx_init(&f, base_call(), NULL);
    fx_contact_done(&f, "512");
    struct prov_result res;
    answer(&f, "note", 201, "not json", &res, NULL);
    cr_assert_eq(res.outcome, PROV_RETRY);
    cr_assert_str_eq(res.code, "bad_response");
    prov_result_release(&res);
    fx_release(&f);
}

Test(hubspot, specs_are_present)
{
    if (!spec_load("contacts"))
        cr_skip_test("HubSpot specs not found: schema checks skipped");
    for (size_t i = 0; i < CS_ARRAY_LEN(spec_names); i++)
        cr_assert_not_null(spec_load(spec_names[i]), "%s", spec_names[i]);
}

Test(hubspot, long_multibyte_text_is_cut_on_a_character)
{
    struct fx f;
    json_t *call = base_call();
    size_t n = 5001; /* odd: the 4,000-byte cap falls inside a character */
    char *s = malloc(n * 2 + 2);
    s[0] = 'x';
    for (size_t i = 0; i < n; i++)
        memcpy(s + 1 + i * 2, "\xc3\xa9", 2);
    s[1 + n * 2] = '\0';
    json_object_set_new(call, "summary", json_string(s));
    free(s);
    fx_init(&f, call, DEAL_CONFIG);
    fx_contact_done(&f, "512");
    struct prov_request rq;
    build(&f, "deal", &rq, "POST", "/crm/v3/objects/0-3");
    json_t *b = jparse(rq.body); /* jansson rejects broken UTF-8 */
    const char *d = json_string_value(
        json_object_get(json_object_get(b, "properties"), "description"));
    cr_assert_lt(strlen(d), 4100);
    json_decref(b);
    prov_request_release(&rq);
    build(&f, "note", &rq, "POST", "/crm/v3/objects/notes");
    b = jparse(rq.body);
    json_decref(b);
    prov_request_release(&rq);
    fx_release(&f);
}
