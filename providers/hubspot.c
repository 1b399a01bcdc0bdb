/*
 * hubspot.c - the HubSpot provider: find or create the contact, write the
 * call note, book the meeting, open the deal and enroll the contact in a
 * workflow, as requests against the CRM v3 objects API (specs in
 * shared/specs/hubspot) and the legacy v2 workflows API. See prov.h for the
 * step protocol and DESIGN.md ("A job's life") for checkpoints and
 * reconciliation.
 *
 * HubSpot has no idempotency key, so every writing step except the
 * workflow enrollment reconciles by lookup: the contact by phone or email
 * (always, not only after a crash: that is how we find it anyway), and the
 * note, meeting and deal by the job marker written into their text.
 */
#include "prov.h"
#include "buf.h"
#include "when.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HS_BASE_URL "https://api.hubapi.com"
#define HS_DEALS_PATH "/crm/v3/objects/0-3" /* the spec's name for deals */

/* HubSpot-defined association types (v4 associations). */
#define HS_ASSOC_NOTE_CONTACT 202
#define HS_ASSOC_MEETING_CONTACT 200
#define HS_ASSOC_DEAL_CONTACT 3

/* Caps on the text we write, escaped bytes. HubSpot's rich-text properties
 * hold 65,536 characters; the sum of these stays well under that. */
#define HS_BODY_MAX 65536
#define HS_SUMMARY_MAX 4000
#define HS_TRANSCRIPT_MAX 40000
#define HS_SHORT_MAX 300
#define HS_URL_MAX 2000

/* ------------------------------------------------------------------ */
/* Reading the call and the config                                    */
/* ------------------------------------------------------------------ */

/* The value at a dotted path ("customer.email") under root, or NULL. */
static const json_t *at_path(const json_t *root, const char *path)
{
    const json_t *v = root;
    const char *p = path;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char key[128];
        if (n == 0 || n >= sizeof(key) || !json_is_object(v))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        p = dot ? dot + 1 : p + n;
    }
    return v;
}

/* A non-empty string at path, else NULL. */
static const char *str_at(const json_t *root, const char *path)
{
    const char *s = json_string_value(at_path(root, path));
    return s && *s ? s : NULL;
}

/* A config value that may be a string or an integer id, into out. */
static bool config_id(const json_t *config, const char *key, char *out,
                      size_t n)
{
    const json_t *v = json_object_get(config, key);
    if (json_is_string(v) && json_string_length(v) > 0)
        snprintf(out, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    else
        return false;
    return true;
}

static const char *contact_id_done(const struct prov_ctx *ctx)
{
    return str_at(ctx->done, "contact.contact_id");
}

/* ------------------------------------------------------------------ */
/* Requests and responses                                             */
/* ------------------------------------------------------------------ */

static const char *token_of(const struct prov_ctx *ctx)
{
    if (!ctx->creds)
        return NULL;
    const char *t = ctx->creds->access_token;
    if (!t || !*t)
        t = ctx->creds->api_key;
    return t && *t ? t : NULL;
}

/* Start a request to base + path with the bearer token, or fail with
 * no_credentials. */
static int begin(const struct prov_ctx *ctx, struct prov_request *rq,
                 const char *method, const char *path, struct cs_err *err)
{
    const char *token = token_of(ctx);
    if (!token)
        return cs_err_set(err, CS_EINVAL, "credentials",
                          "no_credentials: the connection has no access "
                          "token or api key");
    prov_request_begin(rq, ctx, method, HS_BASE_URL, path, token);
    return 0;
}

/* Milliseconds from now to the next midnight UTC. */
static int64_t until_midnight_utc(int64_t now_ms)
{
    const int64_t day = 86400000;
    int64_t next = (now_ms / day + 1) * day;
    return next - now_ms;
}

/*
 * Classify a failed answer: the shared rules (prov_classify), refined by
 * HubSpot's error body {"status":"error","message","correlationId",
 * "category",...}: category becomes the code and message the message. A
 * 429 carries policyName; without Retry-After we wait out its window.
 */
static void hs_fail(const struct prov_ctx *ctx,
                    const struct prov_response *rsp, struct prov_result *res)
{
    res->code[0] = '\0';
    res->message[0] = '\0';
    json_t *b = prov_response_json(rsp);
    const char *policy = NULL;
    if (json_is_object(b)) {
        const char *cat = json_string_value(json_object_get(b, "category"));
        const char *msg = json_string_value(json_object_get(b, "message"));
        policy = json_string_value(json_object_get(b, "policyName"));
        if (cat && *cat)
            snprintf(res->code, sizeof(res->code), "%s", cat);
        if (msg && *msg)
            snprintf(res->message, sizeof(res->message), "%s", msg);
    }
    prov_classify(rsp, res);
    if (rsp->status == 429 && res->retry_after_ms < 0) {
        if (policy && strcmp(policy, "DAILY") == 0)
            res->retry_after_ms = until_midnight_utc(ctx->now_ms);
        else if (policy && strcmp(policy, "SECONDLY") == 0)
            res->retry_after_ms = 1000;
        else if (policy && strcmp(policy, "TEN_SECONDLY_ROLLING") == 0)
            res->retry_after_ms = 10000;
    }
    json_decref(b);
}

static bool is_2xx(int status)
{
    return status >= 200 && status < 300;
}

/* The id of a created or updated object (SimplePublicObject). */
static const char *object_id(const json_t *b)
{
    const char *id = json_string_value(json_object_get(b, "id"));
    return id && *id ? id : NULL;
}

/* A search answer (CollectionResponseWithTotalSimplePublicObject). */
static const json_t *search_results(const json_t *b)
{
    const json_t *r = json_object_get(b, "results");
    return json_is_array(r) ? r : NULL;
}

/* A 2xx whose body we cannot read: the write may have happened, so the
 * step is retried, and the retry reconciles. */
static void bad_body(const struct prov_response *rsp, struct prov_result *res)
{
    res->http_status = rsp->status;
    prov_fail(res, PROV_RETRY, "bad_response",
              "HTTP %d with an unreadable body", rsp->status);
}

/* ------------------------------------------------------------------ */
/* Request bodies                                                     */
/* ------------------------------------------------------------------ */

static json_t *filter(const char *prop, const char *op, const char *value)
{
    return json_pack("{s:s,s:s,s:s}", "propertyName", prop, "operator", op,
                     "value", value);
}

/* PublicObjectSearchRequest: the groups are ORed. */
static json_t *search_body(json_t *groups, json_t *props, int limit)
{
    return json_pack("{s:o,s:o,s:i,s:s,s:[]}", "filterGroups", groups,
                     "properties", props, "limit", limit, "after", "0",
                     "sorts");
}

static json_t *marker_search(const struct prov_ctx *ctx, const char *prop)
{
    const char *job_id = str_at(ctx->job, "job_id");
    json_t *groups = json_pack("[{s:[o]}]", "filters",
                               filter(prop, "CONTAINS_TOKEN",
                                      job_id ? job_id : "unknown"));
    return search_body(groups, json_pack("[s]", prop), 1);
}

/* associations: [{"to":{"id"},"types":[{HUBSPOT_DEFINED, type}]}] */
static json_t *assoc_to(const char *id, int type)
{
    return json_pack("[{s:{s:s},s:[{s:s,s:i}]}]", "to", "id", id, "types",
                     "associationCategory", "HUBSPOT_DEFINED",
                     "associationTypeId", type);
}

/* SimplePublicObjectInputForCreate */
static json_t *create_body(json_t *props, json_t *assoc)
{
    return json_pack("{s:o,s:o}", "properties", props, "associations",
                     assoc ? assoc : json_array());
}

/* ------------------------------------------------------------------ */
/* Text                                                               */
/* ------------------------------------------------------------------ */

static void put(struct buf *b, const char *s, size_t n)
{
    /* Every section is capped below the buffer's cap; a failure here
     * would only drop text. */
    if (buf_add(b, s, n) < 0)
        return;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Length of the UTF-8 sequence starting with c (1 for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xf0 && c < 0xf8)
        return 4;
    if (c >= 0xe0)
        return c < 0xf0 ? 3 : 1;
    if (c >= 0xc0)
        return 2;
    return 1;
}

/* The entity for c, "" to drop it, or NULL to copy it as is. */
static const char *html_entity(char c, bool br)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&#39;";
    case '\r':
        return "";
    case '\n':
        return br ? "<br>" : " ";
    default:
        return NULL;
    }
}

/*
 * Append s HTML-escaped, at most max bytes of output, never cutting an
 * entity or a UTF-8 sequence; newlines become <br> when br is set.
 * Returns whether s was cut.
 */
static bool put_html(struct buf *b, const char *s, size_t max, bool br)
{
    size_t used = 0;
    for (size_t i = 0; s[i];) {
        const char *rep = html_entity(s[i], br);
        size_t n = 1;
        if (!rep) {
            n = utf8_len((unsigned char)s[i]);
            for (size_t k = 1; k < n; k++)
                if (!s[i + k]) {
                    n = k;
                    break;
                }
        }
        size_t out = rep ? strlen(rep) : n;
        if (used + out > max)
            return true;
        put(b, rep ? rep : s + i, out);
        used += out;
        i += n;
    }
    return false;
}

/* The length of s cut to at most max bytes on a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* "<p><strong>label:</strong> value</p>" when value is set. */
static void put_field(struct buf *b, const char *label, const char *value,
                      size_t max)
{
    if (!value)
        return;
    puts_(b, "<p><strong>");
    puts_(b, label);
    puts_(b, ":</strong> ");
    if (put_html(b, value, max, true))
        puts_(b, " [&hellip;]");
    puts_(b, "</p>");
}

/* The job marker as its own token, and the job id once more on its own,
 * so a CONTAINS_TOKEN search for the job id finds it however the text is
 * tokenised. */
static void put_marker(struct buf *b, const struct prov_ctx *ctx, bool html)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    const char *id = str_at(ctx->job, "job_id");
    char line[128];
    snprintf(line, sizeof(line), "Sync reference: %s - job %s ", marker,
             id ? id : "unknown");
    if (html) {
        puts_(b, "<p>");
        put_html(b, line, sizeof(line), false);
        puts_(b, "</p>");
    } else {
        puts_(b, "\n\n");
        puts_(b, line);
    }
}

static char *note_body(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, HS_BODY_MAX);
    put_field(&b, "Call outcome", str_at(c, "outcome"), HS_SHORT_MAX);
    put_field(&b, "Direction", str_at(c, "direction"), HS_SHORT_MAX);
    put_field(&b, "Summary", str_at(c, "summary"), HS_SUMMARY_MAX);
    put_field(&b, "Sentiment", str_at(c, "sentiment"), HS_SHORT_MAX);
    const json_t *d = at_path(c, "duration_s");
    if (json_is_number(d)) {
        long long s = (long long)json_number_value(d);
        char dur[64];
        if (s >= 60)
            snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
        else
            snprintf(dur, sizeof(dur), "%llds", s);
        put_field(&b, "Duration", dur, HS_SHORT_MAX);
    }
    const char *rec = str_at(c, "recording_url");
    if (rec && strlen(rec) < HS_URL_MAX) {
        puts_(&b, "<p><strong>Recording:</strong> <a href=\"");
        put_html(&b, rec, HS_URL_MAX * 6, false);
        puts_(&b, "\">");
        put_html(&b, rec, HS_URL_MAX * 6, false);
        puts_(&b, "</a></p>");
    }
    put_field(&b, "Transcript", str_at(c, "transcript"), HS_TRANSCRIPT_MAX);
    put_marker(&b, ctx, true);
    return buf_take(&b, NULL);
}

/* ------------------------------------------------------------------ */
/* Contact properties and field mappings                              */
/* ------------------------------------------------------------------ */

/* A scalar as the string HubSpot wants, or NULL for null. */
static char *scalar_str(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return xasprintf("%.15g", json_real_value(v));
    if (json_is_boolean(v))
        return xstrdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

/* A string that is a whole decimal number, as HubSpot number properties
 * take it. */
static bool numeric_str(const char *s)
{
    char *end;
    if (!*s)
        return false;
    strtod(s, &end);
    return *end == '\0';
}

/*
 * Convert v for a property of the given type ("string", "enumeration",
 * "number", "bool", ...; NULL: any scalar). Returns 0 with *out (owned,
 * NULL when v is null or missing: the property is left alone), or
 * CS_EINVAL naming the property.
 */
static int convert(const char *prop, const char *type, const json_t *v,
                   char **out, struct cs_err *err)
{
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_object(v) || json_is_array(v))
        return cs_err_set(err, CS_EINVAL, prop,
                          "mapping_error: property '%s' needs a scalar, the "
                          "call has an %s", prop,
                          json_is_object(v) ? "object" : "array");
    if (type && strcmp(type, "number") == 0) {
        if (json_is_number(v) ||
            (json_is_string(v) && numeric_str(json_string_value(v)))) {
            *out = scalar_str(v);
            return 0;
        }
        return cs_err_set(err, CS_EINVAL, prop,
                          "mapping_error: property '%s' is a number, the "
                          "call has %s", prop,
                          json_is_string(v) ? "a string" : "a boolean");
    }
    if (type && (strcmp(type, "bool") == 0 || strcmp(type, "boolean") == 0 ||
                 strcmp(type, "booleancheckbox") == 0)) {
        const char *s = json_string_value(v);
        if (json_is_boolean(v) ||
            (s && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0))) {
            *out = scalar_str(v);
            return 0;
        }
        return cs_err_set(err, CS_EINVAL, prop,
                          "mapping_error: property '%s' is a boolean, the "
                          "call has %s", prop,
                          json_is_string(v) ? "a string" : "a number");
    }
    if (type && strcmp(type, "string") != 0 &&
        strcmp(type, "enumeration") != 0 && strcmp(type, "date") != 0 &&
        strcmp(type, "datetime") != 0 && strcmp(type, "phone_number") != 0)
        return cs_err_set(err, CS_EINVAL, prop,
                          "mapping_error: property '%s' has unknown type "
                          "'%s'", prop, type);
    if (type && strcmp(type, "enumeration") == 0 && !json_is_string(v))
        return cs_err_set(err, CS_EINVAL, prop,
                          "mapping_error: property '%s' is an enumeration, "
                          "the call has a %s", prop,
                          json_is_boolean(v) ? "boolean" : "number");
    *out = scalar_str(v);
    return 0;
}

static int map_one(json_t *props, const json_t *call, const char *target,
                   const char *source, const char *type, struct cs_err *err)
{
    if (!target || !*target || !source || !*source)
        return cs_err_set(err, CS_EINVAL, target ? target : "",
                          "mapping_error: a mapping needs a property name "
                          "and a source path");
    if (strncmp(source, "call.", 5) == 0)
        source += 5;
    char *s;
    int rc = convert(target, type, at_path(call, source), &s, err);
    if (rc < 0)
        return rc;
    if (s)
        json_object_set_new(props, target, json_string(s));
    free(s);
    return 0;
}

/*
 * config.field_mappings: [{"target","source"[,"type"]}], or the object
 * form {"hs_property": "dotted.source"}; config.custom_properties:
 * [{"name","value","type"}] (seed 003). Both are applied on top of the
 * standard properties.
 */
static int apply_mappings(json_t *props, const struct prov_ctx *ctx,
                          struct cs_err *err)
{
    const json_t *fm = json_object_get(ctx->config, "field_mappings");
    size_t i;
    const json_t *m;
    int rc;
    if (json_is_array(fm)) {
        json_array_foreach(fm, i, m) {
            rc = map_one(props, ctx->call,
                         json_string_value(json_object_get(m, "target")),
                         json_string_value(json_object_get(m, "source")),
                         json_string_value(json_object_get(m, "type")), err);
            if (rc < 0)
                return rc;
        }
    } else if (json_is_object(fm)) {
        const char *k;
        json_object_foreach((json_t *)fm, k, m) {
            rc = map_one(props, ctx->call, k, json_string_value(m), NULL,
                         err);
            if (rc < 0)
                return rc;
        }
    } else if (fm && !json_is_null(fm)) {
        return cs_err_set(err, CS_EINVAL, "field_mappings",
                          "mapping_error: field_mappings must be a list");
    }
    const json_t *cp = json_object_get(ctx->config, "custom_properties");
    if (json_is_array(cp)) {
        json_array_foreach(cp, i, m) {
            rc = map_one(props, ctx->call,
                         json_string_value(json_object_get(m, "name")),
                         json_string_value(json_object_get(m, "value")),
                         json_string_value(json_object_get(m, "type")), err);
            if (rc < 0)
                return rc;
        }
    } else if (cp && !json_is_null(cp)) {
        return cs_err_set(err, CS_EINVAL, "custom_properties",
                          "mapping_error: custom_properties must be a list");
    }
    return 0;
}

static void set_prop(json_t *props, const char *name, const char *v)
{
    if (v)
        json_object_set_new(props, name, json_string(v));
}

/* The contact's properties: standard ones from call.customer, then the
 * mappings. Returns NULL with *err filled on a mapping error. */
static json_t *contact_props(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *c = ctx->call;
    json_t *p = json_object();
    const char *first = str_at(c, "customer.first_name");
    const char *last = str_at(c, "customer.last_name");
    const char *name = str_at(c, "customer.name");
    if (!first && !last && name) {
        /* Only a full name: the first word is the first name. */
        const char *sp = strchr(name, ' ');
        char *f = sp ? xstrndup(name, (size_t)(sp - name)) : xstrdup(name);
        set_prop(p, "firstname", f);
        free(f);
        while (sp && *sp == ' ')
            sp++;
        if (sp && *sp)
            set_prop(p, "lastname", sp);
    } else {
        set_prop(p, "firstname", first);
        set_prop(p, "lastname", last);
    }
    set_prop(p, "email", str_at(c, "customer.email"));
    set_prop(p, "phone", str_at(c, "customer.phone"));
    set_prop(p, "address", str_at(c, "customer.address"));
    set_prop(p, "city", str_at(c, "customer.city"));
    set_prop(p, "state", str_at(c, "customer.state"));
    if (apply_mappings(p, ctx, err) < 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Step 1: contact                                                    */
/* ------------------------------------------------------------------ */

/*
 * scratch: {"phase": "search"|"create"|"patch", "contact_id",
 *           "patch": {properties still to set}, "vanished": true}
 */
static const char *phase_of(const struct prov_ctx *ctx)
{
    const char *p = json_string_value(json_object_get(ctx->scratch, "phase"));
    return p ? p : "";
}

static void set_phase(struct prov_ctx *ctx, const char *phase)
{
    json_object_set_new(ctx->scratch, "phase", json_string(phase));
}

static int contact_build(struct prov_ctx *ctx, struct prov_request *rq,
                         struct cs_err *err)
{
    const char *phone = str_at(ctx->call, "customer.phone");
    const char *email = str_at(ctx->call, "customer.email");
    if (!phone && !email)
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    json_t *props = contact_props(ctx, err);
    if (!props)
        return CS_EINVAL;
    const char *phase = phase_of(ctx);
    json_t *body = NULL;
    int rc;
    if (strcmp(phase, "create") == 0) {
        rc = begin(ctx, rq, "POST", "/crm/v3/objects/contacts", err);
        body = create_body(json_incref(props), NULL);
    } else if (strcmp(phase, "patch") == 0) {
        const char *id = json_string_value(
            json_object_get(ctx->scratch, "contact_id"));
        json_t *patch = json_object_get(ctx->scratch, "patch");
        CS_ASSERT(id != NULL);
        char *path = xasprintf("/crm/v3/objects/contacts/%s", id);
        rc = begin(ctx, rq, "PATCH", path, err);
        free(path);
        body = json_pack("{s:O}", "properties", patch ? patch : props);
    } else {
        set_phase(ctx, "search");
        rc = begin(ctx, rq, "POST", "/crm/v3/objects/contacts/search", err);
        json_t *groups = json_array();
        if (phone)
            json_array_append_new(groups,
                                  json_pack("{s:[o]}", "filters",
                                            filter("phone", "EQ", phone)));
        if (email)
            json_array_append_new(groups,
                                  json_pack("{s:[o]}", "filters",
                                            filter("email", "EQ", email)));
        body = search_body(groups,
                           json_pack("[s,s,s,s]", "email", "phone",
                                     "firstname", "lastname"),
                           10);
    }
    if (rc == 0)
        prov_request_json(rq, body);
    json_decref(body);
    json_decref(props);
    return rc;
}

/* The best search hit: the one with the call's email (emails are unique
 * in HubSpot), else the first. */
static const json_t *best_hit(const json_t *results, const char *email)
{
    size_t i;
    const json_t *r;
    if (email)
        json_array_foreach(results, i, r) {
            const char *e = str_at(r, "properties.email");
            if (e && strcasecmp(e, email) == 0 && object_id(r))
                return r;
        }
    json_array_foreach(results, i, r)
        if (object_id(r))
            return r;
    return NULL;
}

/* Properties the contact does not already hold (search returns email,
 * phone, firstname and lastname; anything else is always sent). */
static json_t *props_to_patch(json_t *props, const json_t *hit)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        const char *cur = json_string_value(
            json_object_get(json_object_get(hit, "properties"), k));
        const char *want = json_string_value(v);
        bool same = cur && want &&
                    (strcmp(k, "email") == 0 ? strcasecmp(cur, want) == 0
                                             : strcmp(cur, want) == 0);
        if (!same)
            json_object_set(out, k, v);
    }
    return out;
}

/* "Contact already exists. Existing ID: 123" → "123". */
static bool existing_id(const char *msg, char out[32])
{
    const char *p = msg ? strstr(msg, "Existing ID:") : NULL;
    if (!p)
        return false;
    p += strlen("Existing ID:");
    while (*p == ' ')
        p++;
    size_t n = 0;
    while (p[n] >= '0' && p[n] <= '9' && n < 31)
        n++;
    if (n == 0)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

static void contact_found(struct prov_ctx *ctx, const char *id,
                          json_t *patch, struct prov_result *res)
{
    if (json_object_size(patch) == 0) {
        prov_done_id(res, "contact_id", id);
        json_decref(patch);
        return;
    }
    json_object_set_new(ctx->scratch, "contact_id", json_string(id));
    json_object_set_new(ctx->scratch, "patch", patch);
    set_phase(ctx, "patch");
    res->outcome = PROV_NEXT;
}

static void contact_parse(struct prov_ctx *ctx,
                          const struct prov_response *rsp,
                          struct prov_result *res)
{
    const char *phase = phase_of(ctx);
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    bool readable = is_2xx(rsp->status) || rsp->status == 409;
    json_t *b = readable ? prov_response_json(rsp) : NULL;
    if (strcmp(phase, "search") == 0 && rsp->status == 200) {
        const json_t *results = search_results(b);
        if (!results) {
            bad_body(rsp, res);
        } else {
            const json_t *hit =
                best_hit(results, str_at(ctx->call, "customer.email"));
            if (!hit) {
                set_phase(ctx, "create");
                res->outcome = PROV_NEXT;
            } else {
                struct cs_err err;
                json_t *props = contact_props(ctx, &err);
                /* build succeeded with the same input, so this cannot
                 * fail; be safe anyway. */
                json_t *patch = props ? props_to_patch(props, hit)
                                      : json_object();
                json_decref(props);
                contact_found(ctx, object_id(hit), patch, res);
            }
        }
    } else if (strcmp(phase, "create") == 0 && is_2xx(rsp->status)) {
        if (object_id(b))
            prov_done_id(res, "contact_id", object_id(b));
        else
            bad_body(rsp, res);
    } else if (strcmp(phase, "create") == 0 && rsp->status == 409) {
        /* Created meanwhile (or missed by the search index): HubSpot
         * names the existing contact, which gets all the properties. */
        char id[32];
        struct cs_err err;
        json_t *props = NULL;
        if (existing_id(json_string_value(json_object_get(b, "message")),
                        id))
            props = contact_props(ctx, &err);
        if (props)
            contact_found(ctx, id, props, res);
        else
            hs_fail(ctx, rsp, res);
    } else if (strcmp(phase, "patch") == 0 && is_2xx(rsp->status)) {
        const char *id = json_string_value(
            json_object_get(ctx->scratch, "contact_id"));
        prov_done_id(res, "contact_id", object_id(b) ? object_id(b) : id);
    } else if (strcmp(phase, "patch") == 0 && rsp->status == 404) {
        /* Deleted (or merged away) between the search and the update.
         * Once per attempt, create it afresh (the search index may still
         * list the deleted contact); a second time is permanent. */
        if (json_is_true(json_object_get(ctx->scratch, "vanished"))) {
            hs_fail(ctx, rsp, res);
            prov_fail(res, PROV_PERMANENT, "contact_vanished",
                      "contact %s vanished twice during the update",
                      json_string_value(
                         json_object_get(ctx->scratch, "contact_id")));
        } else {
            json_object_set_new(ctx->scratch, "vanished", json_true());
            json_object_del(ctx->scratch, "patch");
            json_object_del(ctx->scratch, "contact_id");
            set_phase(ctx, "create");
            res->outcome = PROV_NEXT;
        }
    } else {
        hs_fail(ctx, rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Lookup-then-create steps: note, meeting, deal                      */
/* ------------------------------------------------------------------ */

/*
 * What a step writes: the object path, the property that carries the
 * marker, the checkpoint key, and a function building the create body.
 */
struct hs_object {
    const char *path;          /* "/crm/v3/objects/notes" */
    const char *marker_prop;   /* searched with CONTAINS_TOKEN job_id */
    const char *result_key;    /* "note_id" */
    json_t *(*create)(const struct prov_ctx *ctx, struct cs_err *err);
};

static int object_build(const struct hs_object *o, struct prov_ctx *ctx,
                        struct prov_request *rq, struct cs_err *err)
{
    if (!contact_id_done(ctx))
        return cs_err_set(err, CS_EINVAL, "contact",
                          "no_contact: the contact step has no contact_id");
    const char *phase = phase_of(ctx);
    if (ctx->reconcile && strcmp(phase, "create") != 0) {
        set_phase(ctx, "search");
        char *path = xasprintf("%s/search", o->path);
        int rc = begin(ctx, rq, "POST", path, err);
        free(path);
        if (rc < 0)
            return rc;
        json_t *body = marker_search(ctx, o->marker_prop);
        prov_request_json(rq, body);
        json_decref(body);
        return 0;
    }
    json_t *body = o->create(ctx, err);
    if (!body)
        return CS_EINVAL;
    set_phase(ctx, "create");
    int rc = begin(ctx, rq, "POST", o->path, err);
    if (rc == 0)
        prov_request_json(rq, body);
    json_decref(body);
    return rc;
}

static void object_parse(const struct hs_object *o, struct prov_ctx *ctx,
                         const struct prov_response *rsp,
                         struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (!is_2xx(rsp->status)) {
        hs_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    if (strcmp(phase_of(ctx), "search") == 0) {
        const json_t *results = search_results(b);
        const json_t *hit = results ? best_hit(results, NULL) : NULL;
        if (!results) {
            bad_body(rsp, res);
        } else if (hit) {
            prov_done_id(res, o->result_key, object_id(hit));
        } else {
            set_phase(ctx, "create");
            res->outcome = PROV_NEXT;
        }
    } else if (object_id(b)) {
        prov_done_id(res, o->result_key, object_id(b));
    } else {
        bad_body(rsp, res);
    }
    json_decref(b);
}

/* ---- note ---- */

static int64_t call_time_ms(const struct prov_ctx *ctx)
{
    int64_t ms;
    if (cs_parse_rfc3339(str_at(ctx->call, "ended_at"), &ms) ||
        cs_parse_rfc3339(str_at(ctx->call, "started_at"), &ms))
        return ms;
    return ctx->now_ms;
}

static json_t *note_create(const struct prov_ctx *ctx, struct cs_err *err)
{
    (void)err;
    char ts[32];
    cs_rfc3339_ms(call_time_ms(ctx), ts);
    char *html = note_body(ctx);
    json_t *props = json_pack("{s:s,s:s}", "hs_timestamp", ts, "hs_note_body",
                              html);
    free(html);
    return create_body(props,
                       assoc_to(contact_id_done(ctx), HS_ASSOC_NOTE_CONTACT));
}

static const struct hs_object note_obj = {
    "/crm/v3/objects/notes", "hs_note_body", "note_id", note_create,
};

static int note_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    return object_build(&note_obj, ctx, rq, err);
}

static void note_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    object_parse(&note_obj, ctx, rsp, res);
}

/* ---- meeting ---- */

static bool meeting_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call);
}

static int meeting_times(const struct prov_ctx *ctx, int64_t *start,
                         int64_t *end, struct cs_err *err)
{
    struct when_appt a;
    if (when_appointment(ctx->call, ctx->config, &a, err) < 0)
        return CS_EINVAL;
    *start = a.start_ms;
    *end = a.end_ms;
    return 0;
}

static json_t *meeting_create(const struct prov_ctx *ctx, struct cs_err *err)
{
    int64_t start = 0, end = 0;
    if (meeting_times(ctx, &start, &end, err) < 0)
        return NULL;
    char s[32], e[32];
    cs_rfc3339_ms(start, s);
    cs_rfc3339_ms(end, e);
    const char *title = str_at(ctx->call, "appointment.title");
    const char *service = str_at(ctx->call, "appointment.service_type");
    const char *name = str_at(ctx->call, "customer.name");
    char *dflt = xasprintf("%s%s%s", service ? service : "Appointment",
                           name ? " - " : "", name ? name : "");
    struct buf b;
    buf_init(&b, HS_BODY_MAX);
    put_field(&b, "Service", service, HS_SHORT_MAX);
    put_field(&b, "Time zone", str_at(ctx->call, "appointment.timezone"),
              HS_SHORT_MAX);
    put_field(&b, "Call summary", str_at(ctx->call, "summary"),
              HS_SUMMARY_MAX);
    put_marker(&b, ctx, true);
    char *html = buf_take(&b, NULL);
    json_t *props = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s}", "hs_timestamp", s, "hs_meeting_title",
        title ? title : dflt, "hs_meeting_body", html,
        "hs_meeting_start_time", s, "hs_meeting_end_time", e,
        "hs_meeting_outcome", "SCHEDULED");
    free(html);
    free(dflt);
    return create_body(props, assoc_to(contact_id_done(ctx),
                                       HS_ASSOC_MEETING_CONTACT));
}

static const struct hs_object meeting_obj = {
    "/crm/v3/objects/meetings", "hs_meeting_body", "meeting_id",
    meeting_create,
};

static int meeting_build(struct prov_ctx *ctx, struct prov_request *rq,
                         struct cs_err *err)
{
    return object_build(&meeting_obj, ctx, rq, err);
}

static void meeting_parse(struct prov_ctx *ctx,
                          const struct prov_response *rsp,
                          struct prov_result *res)
{
    object_parse(&meeting_obj, ctx, rsp, res);
}

/* ---- deal ---- */

static bool deal_applies(const struct prov_ctx *ctx)
{
    char id[128];
    return config_id(ctx->config, "pipeline_id", id, sizeof(id));
}

/* "{{customer.name}} - {{outcome}}": placeholders are dotted paths into
 * the call; a missing value renders empty. */
static char *render(const char *tpl, const json_t *call)
{
    struct buf b;
    buf_init(&b, 4096);
    const char *p = tpl;
    while (*p) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!open || !close) {
            puts_(&b, p);
            break;
        }
        put(&b, p, (size_t)(open - p));
        const char *k = open + 2;
        while (*k == ' ')
            k++;
        size_t n = (size_t)(close - k);
        while (n > 0 && k[n - 1] == ' ')
            n--;
        char *path = xstrndup(k, n);
        char *v = scalar_str(at_path(call, path));
        if (v)
            puts_(&b, v);
        free(v);
        free(path);
        p = close + 2;
    }
    char *out = buf_take(&b, NULL);
    return out ? out : xstrdup("");
}

static char *deal_name(const struct prov_ctx *ctx)
{
    const char *tpl = str_at(ctx->config, "deal_name_template");
    if (tpl) {
        char *s = render(tpl, ctx->call);
        if (*s)
            return s;
        free(s);
    }
    const char *who = str_at(ctx->call, "customer.name");
    if (!who)
        who = str_at(ctx->call, "customer.phone");
    if (!who)
        who = str_at(ctx->call, "customer.email");
    const char *what = str_at(ctx->call, "outcome");
    return xasprintf("%s \xe2\x80\x93 %s", who ? who : "Unknown caller",
                     what ? what : "call");
}

static json_t *deal_create(const struct prov_ctx *ctx, struct cs_err *err)
{
    char pipeline[128], stage[128];
    if (!config_id(ctx->config, "pipeline_id", pipeline, sizeof(pipeline))) {
        cs_err_set(err, CS_EINVAL, "config.pipeline_id",
                   "config_error: pipeline_id is not set");
        return NULL;
    }
    if (!config_id(ctx->config, "default_stage_id", stage, sizeof(stage)) &&
        !config_id(ctx->config, "deal_stage", stage, sizeof(stage))) {
        cs_err_set(err, CS_EINVAL, "config.default_stage_id",
                   "config_error: default_stage_id is not set");
        return NULL;
    }
    struct buf b;
    buf_init(&b, HS_BODY_MAX);
    const char *summary = str_at(ctx->call, "summary");
    if (summary)
        put(&b, summary, utf8_cut(summary, HS_SUMMARY_MAX));
    put_marker(&b, ctx, false);
    char *desc = buf_take(&b, NULL);
    char *name = deal_name(ctx);
    json_t *props = json_pack("{s:s,s:s,s:s,s:s}", "dealname", name,
                              "pipeline", pipeline, "dealstage", stage,
                              "description", desc);
    free(name);
    free(desc);
    return create_body(props,
                       assoc_to(contact_id_done(ctx), HS_ASSOC_DEAL_CONTACT));
}

static const struct hs_object deal_obj = {
    HS_DEALS_PATH, "description", "deal_id", deal_create,
};

static int deal_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    return object_build(&deal_obj, ctx, rq, err);
}

static void deal_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    object_parse(&deal_obj, ctx, rsp, res);
}

/* ------------------------------------------------------------------ */
/* Step 5: workflow enrollment (legacy v2, contact-based workflows)    */
/* ------------------------------------------------------------------ */

static bool workflow_applies(const struct prov_ctx *ctx)
{
    char id[128];
    return config_id(ctx->config, "workflow_id", id, sizeof(id)) &&
           str_at(ctx->call, "customer.email");
}

static int workflow_build(struct prov_ctx *ctx, struct prov_request *rq,
                          struct cs_err *err)
{
    char id[128];
    const char *email = str_at(ctx->call, "customer.email");
    if (!config_id(ctx->config, "workflow_id", id, sizeof(id)) || !email)
        return cs_err_set(err, CS_EINVAL, "config.workflow_id",
                          "config_error: workflow_id or email missing");
    char *eid = prov_url_escape(id);
    char *eemail = prov_url_escape(email);
    char *path = xasprintf("/automation/v2/workflows/%s/enrollments/"
                           "contacts/%s", eid, eemail);
    int rc = begin(ctx, rq, "POST", path, err);
    free(path);
    free(eemail);
    free(eid);
    return rc;
}

static void workflow_parse(struct prov_ctx *ctx,
                           const struct prov_response *rsp,
                           struct prov_result *res)
{
    res->http_status = rsp->status;
    res->retry_after_ms = -1;
    if (rsp->status == 204 || rsp->status == 200) {
        char id[128];
        if (!config_id(ctx->config, "workflow_id", id, sizeof(id)))
            id[0] = '\0';
        prov_done_id(res, "workflow_id", id);
    } else {
        hs_fail(ctx, rsp, res);
    }
}

/* ------------------------------------------------------------------ */
/* Probe: callsyncctl connections test                                */
/* ------------------------------------------------------------------ */

/*
 * Two reads: the account's details (the token is valid; which portal it
 * opens), then one contact (the token may read CRM contacts, which every
 * step needs). Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    bool second = json_object_get(ctx->scratch, "portal_id") != NULL;
    return begin(ctx, rq, "GET",
                 second ? "/crm/v3/objects/contacts?limit=1&archived=false"
                        : "/account-info/v3/details",
                 err);
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    if (!is_2xx(rsp->status)) {
        hs_fail(ctx, rsp, res);
        return;
    }
    json_t *b = prov_response_json(rsp);
    json_t *portal = json_object_get(ctx->scratch, "portal_id");
    if (!portal) {
        json_t *id = json_object_get(b, "portalId");
        if (!json_is_integer(id)) {
            prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                      "account details without a portalId");
            json_decref(b);
            return;
        }
        json_object_set_new(ctx->scratch, "portal_id", json_copy(id));
        const char *tz = json_string_value(json_object_get(b, "timeZone"));
        if (tz)
            json_object_set_new(ctx->scratch, "time_zone", json_string(tz));
        res->outcome = PROV_NEXT;
        json_decref(b);
        return;
    }
    res->outcome = PROV_DONE;
    json_decref(res->value);
    res->value = json_deep_copy(ctx->scratch);
    json_object_set_new(res->value, "contacts_readable", json_true());
    json_decref(b);
}

static const struct prov_step hubspot_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

static const struct prov_step hubspot_steps[] = {
    {"contact", PROV_RECONCILE_LOOKUP, NULL, contact_build, contact_parse},
    {"note", PROV_RECONCILE_LOOKUP, NULL, note_build, note_parse},
    {"meeting", PROV_RECONCILE_LOOKUP, meeting_applies, meeting_build,
     meeting_parse},
    {"deal", PROV_RECONCILE_LOOKUP, deal_applies, deal_build, deal_parse},
    {"workflow", PROV_RECONCILE_NONE, workflow_applies, workflow_build,
     workflow_parse},
};

const struct prov_ops prov_hubspot = {
    .name = "hubspot",
    .steps = hubspot_steps,
    .nsteps = CS_ARRAY_LEN(hubspot_steps),
    .rate = {100, 10000},
    .rate_scope = "connection",
    .probe = &hubspot_probe,
};
