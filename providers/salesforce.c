/*
 * salesforce.c - the Salesforce provider (REST API, /services/data/vXX.X
 * on the org's instance URL): find the caller as a Lead (or a Contact) and
 * create or update it, log the call as a completed Task, put a booked
 * appointment on the calendar as an Event, and open an Opportunity when
 * the connection names a stage. See prov.h for the step protocol and
 * DESIGN.md ("A job's life") for checkpoints and reconciliation.
 *
 * Docs followed (developer.salesforce.com): REST API Developer Guide
 * ("Status Codes and Error Responses", "Limit Info Header", "Execute a
 * SOQL Query", "Create a Record", "Update a Record", "Insert or Update
 * (Upsert) a Record Using an External ID"), SOQL and SOSL Reference
 * ("Quoted String Escape Sequences", date formats), Object Reference
 * (Lead, Contact, Task, Event, Opportunity; DuplicateResult, MatchResult,
 * MatchRecord) and shared/providers.md section 3.
 *
 * Every request carries "Authorization: Bearer <OAuth access token>" and
 * goes to the connection's instance URL (creds->instance_url, from the
 * token answer; ctx->base_url replaces it in tests). Errors come as a JSON
 * array of {message, errorCode, fields}; every answer carries
 * "Sforce-Limit-Info: api-usage=<used>/<limit>" (the org's rolling 24-hour
 * allocation), which pauses the key when the allocation is spent.
 *
 * Steps and what each does after an unknown outcome:
 *   contact      SOQL by Phone/MobilePhone (the number in the formats
 *                people type it) and Email, then POST or PATCH. A retry
 *                searches again: SOQL reads committed rows at once (SOSL
 *                and parameterized search lag behind their index), so the
 *                lead the lost answer created is found. With
 *                config.external_id_field the create is an upsert by that
 *                key instead (PATCH .../<Object>/<field>/<value>), so two
 *                jobs for one caller cannot create two records. A create
 *                refused with DUPLICATES_DETECTED (the org's duplicate
 *                rules) adopts the record the answer names.
 *   task         POST /sobjects/Task; reconciled by SOQL over the
 *                caller's tasks created since the job was enqueued, looking
 *                for the job marker in Description (long text areas cannot
 *                be filtered in SOQL, so the marker is matched here).
 *   event        SOQL for an event of the caller at the same start before
 *                every create (agents book in Salesforce during calls
 *                too), then POST /sobjects/Event.
 *   opportunity  POST /sobjects/Opportunity; reconciled by SOQL on its Name
 *                since the job was enqueued and the marker in Description.
 *
 * Connection config:
 *   object              "Lead" (default) or "Contact"
 *   api_version         "66.0" by default ("v66.0" and 66.0 also read)
 *   org_id              the org's id (00D...): the rate-limit scope
 *   external_id_field   an External ID field of the object (Key__c);
 *   external_id_source  its value: a path over the call data (mapping.h
 *                       names), "customer_phone" by default
 *   lead_company        Company of new leads ("[not provided]" otherwise,
 *                       Salesforce's own placeholder for web leads)
 *   lead_source, lead_status, owner_id, account_id (new contacts and
 *                       opportunities)
 *   field_mappings      onto the Lead/Contact (mapping.h); targets are API
 *                       names, custom ones included (Score__c); a list of
 *                       strings becomes a multi-select value "a;b"
 *   task_status ("Completed"), task_priority, task_subject_template,
 *   task_field_mappings
 *   create_events (true), event_field_mappings
 *   opportunity_stage   StageName; enables the opportunity step
 *   opportunity_close_days (30), opportunity_amount,
 *   opportunity_name_template, opportunity_field_mappings
 *   timezone            for dates when the call names none
 *   api_usage_limit_pct stop at this share of the daily allocation (100)
 */
#define _GNU_SOURCE
#include "salesforce_internal.h"
#include "mapping.h"
#include "when.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Config                                                             */
/* ------------------------------------------------------------------ */

/* "Lead" or "Contact". */
static const char *object_of(const struct prov_ctx *ctx)
{
    const char *o = sf__cfg_str(ctx, "object");
    return o && strcasecmp(o, "contact") == 0 ? "Contact" : "Lead";
}

static bool is_lead(const struct prov_ctx *ctx)
{
    return strcmp(object_of(ctx), "Lead") == 0;
}

static int check_object(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *o = json_object_get(ctx->config, "object");
    if (!o || json_is_null(o))
        return 0;
    const char *s = json_string_value(o);
    if (!s || (strcasecmp(s, "lead") != 0 && strcasecmp(s, "contact") != 0))
        return cs_err_set(err, CS_EINVAL, "config.object",
                          "config_error: object must be \"Lead\" or "
                          "\"Contact\"");
    return 0;
}

static int tz_of(const struct prov_ctx *ctx, const char **tz,
                 struct cs_err *err)
{
    *tz = sf__cfg_str(ctx, "timezone");
    if (!*tz) {
        *tz = "UTC";
    } else if (!when_tz_known(*tz)) {
        return cs_err_set(err, CS_EINVAL, "config.timezone",
                          "config_error: unknown time zone '%.64s'", *tz);
    }
    return 0;
}

/* The local date (YYYY-MM-DD) of ms in tz (known). */
static void local_date(const char *tz, int64_t ms, char out[11])
{
    char t[40];
    if (!when_local_rfc3339(tz, ms, t))
        cs_rfc3339_s(ms, t);
    snprintf(out, 11, "%.10s", t);
}

/* When the call happened: started_at, else ended_at, else now. */
static int64_t call_ms(const struct prov_ctx *ctx)
{
    int64_t ms;
    if (cs_parse_rfc3339(sf__str_at(ctx->call, "started_at"), &ms) ||
        cs_parse_rfc3339(sf__str_at(ctx->call, "ended_at"), &ms))
        return ms;
    return ctx->now_ms;
}

/* A SOQL datetime literal for the earliest time what this job wrote can
 * have been created, into out[32]; false when the job does not say. */
static bool since_literal(const struct prov_ctx *ctx, char out[32])
{
    int64_t ms;
    const char *first =
        json_string_value(json_object_get(ctx->job, "first_enqueued_at"));
    if (!cs_parse_rfc3339(first, &ms) &&
        !cs_parse_rfc3339(sf__str_at(ctx->call, "started_at"), &ms))
        return false;
    cs_rfc3339_s(ms - SF_SINCE_SLACK_MS, out);
    return true;
}

/* ------------------------------------------------------------------ */
/* Scratch phases                                                     */
/* ------------------------------------------------------------------ */

static bool phase_is(const struct prov_ctx *ctx, const char *phase)
{
    const char *p = json_string_value(json_object_get(ctx->scratch, "phase"));
    return strcmp(p ? p : "", phase) == 0;
}

static void set_phase(struct prov_ctx *ctx, const char *phase)
{
    json_object_set_new(ctx->scratch, "phase", json_string(phase));
}

static void next_phase(struct prov_ctx *ctx, struct prov_result *res,
                       const char *phase)
{
    set_phase(ctx, phase);
    res->outcome = PROV_NEXT;
}

/* Once per step attempt (a scratch flag); false the second time. */
static bool first_time(struct prov_ctx *ctx, const char *flag)
{
    if (json_is_true(json_object_get(ctx->scratch, flag)))
        return false;
    json_object_set_new(ctx->scratch, flag, json_true());
    return true;
}

static const char *scratch_str(const struct prov_ctx *ctx, const char *key)
{
    return json_string_value(json_object_get(ctx->scratch, key));
}

/* ------------------------------------------------------------------ */
/* Step 1: contact (Lead or Contact)                                  */
/* ------------------------------------------------------------------ */

struct names {
    char *first, *last;
};

/* First and last name from the call: first_name/last_name, else the
 * name's first word and the rest (a single word is the last name, which
 * Salesforce requires). */
static void call_names(const struct prov_ctx *ctx, struct names *n)
{
    const char *first = sf__str_at(ctx->call, "customer.first_name");
    const char *last = sf__str_at(ctx->call, "customer.last_name");
    const char *name = sf__str_at(ctx->call, "customer.name");
    n->first = n->last = NULL;
    if (first || last) {
        n->first = first ? sf__cut_dup(first, 40) : NULL;
        n->last = last ? sf__cut_dup(last, 80) : NULL;
        return;
    }
    if (!name)
        return;
    const char *sp = strchr(name, ' ');
    const char *rest = sp;
    while (rest && *rest == ' ')
        rest++;
    if (sp && *rest) {
        char *f = xstrndup(name, (size_t)(sp - name));
        n->first = sf__cut_dup(f, 40);
        free(f);
        n->last = sf__cut_dup(rest, 80);
    } else {
        n->last = sf__cut_dup(name, 80);
    }
}

static void names_release(struct names *n)
{
    free(n->first);
    free(n->last);
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v && *v)
        json_object_set_new(o, k, json_string(v));
}

/*
 * The fields the call itself gives (identity fields) under the object's
 * names. With placeholders (a create), LastName and (for a lead) Company
 * are always there, as Salesforce requires them.
 */
static json_t *identity_fields(const struct prov_ctx *ctx, bool placeholders)
{
    bool lead = is_lead(ctx);
    json_t *o = json_object();
    struct names n;
    call_names(ctx, &n);
    set_str(o, "FirstName", n.first);
    set_str(o, "LastName", n.last);
    if (placeholders && !n.last)
        set_str(o, "LastName", SF_PLACEHOLDER);
    names_release(&n);
    set_str(o, "Email", sf__str_at(ctx->call, "customer.email"));
    set_str(o, "Phone", sf__str_at(ctx->call, "customer.phone"));
    set_str(o, lead ? "Street" : "MailingStreet",
            sf__str_at(ctx->call, "customer.address"));
    set_str(o, lead ? "City" : "MailingCity",
            sf__str_at(ctx->call, "customer.city"));
    set_str(o, lead ? "State" : "MailingState",
            sf__str_at(ctx->call, "customer.state"));
    return o;
}

/* The create body: identity fields with placeholders, the configured
 * defaults, then the mappings over them. */
static json_t *create_body(const struct prov_ctx *ctx, const json_t *mapped)
{
    json_t *b = identity_fields(ctx, true);
    if (is_lead(ctx)) {
        const char *company = sf__cfg_str(ctx, "lead_company");
        set_str(b, "Company", company ? company : SF_PLACEHOLDER);
        set_str(b, "Status", sf__cfg_str(ctx, "lead_status"));
    } else {
        set_str(b, "AccountId", sf__cfg_str(ctx, "account_id"));
    }
    set_str(b, "LeadSource", sf__cfg_str(ctx, "lead_source"));
    set_str(b, "OwnerId", sf__cfg_str(ctx, "owner_id"));
    json_object_update(b, (json_t *)mapped);
    return b;
}

static bool is_empty_value(const json_t *v)
{
    if (!v || json_is_null(v))
        return true;
    const char *s = json_string_value(v);
    return s && (!*s || strcmp(s, SF_PLACEHOLDER) == 0);
}

static void digits_of(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
}

/* The last ten digits of two numbers agree (or all, when shorter). */
static bool same_number(const char *a, const char *b)
{
    char da[32], db[32];
    digits_of(a, da, sizeof(da));
    digits_of(b, db, sizeof(db));
    size_t la = strlen(da), lb = strlen(db);
    if (la < 7 || lb < 7)
        return false;
    size_t n = la < lb ? la : lb;
    if (n > 10)
        n = 10;
    return strcmp(da + la - n, db + lb - n) == 0;
}

static bool same_value(const json_t *have, const json_t *want)
{
    if (!have)
        return false;
    if (json_is_number(have) && json_is_number(want))
        return json_number_value(have) == json_number_value(want);
    if (json_is_string(have) && json_is_string(want))
        return strcmp(json_string_value(have), json_string_value(want)) == 0;
    return json_equal((json_t *)have, (json_t *)want);
}

/*
 * What to PATCH on a record found as `have`: the call's identity fields
 * only where the record has none (or Salesforce's placeholder), the phone
 * only when neither Phone nor MobilePhone holds the number, and every
 * mapped field that differs.
 */
static json_t *update_body(const struct prov_ctx *ctx, const json_t *mapped,
                           const json_t *have)
{
    json_t *patch = json_object();
    json_t *mine = identity_fields(ctx, false);
    const char *k;
    json_t *v;
    json_object_foreach(mine, k, v) {
        if (strcmp(k, "Phone") == 0) {
            const char *p = json_string_value(json_object_get(have, "Phone"));
            const char *m =
                json_string_value(json_object_get(have, "MobilePhone"));
            if (same_number(p, json_string_value(v)) ||
                same_number(m, json_string_value(v)) || (p && *p))
                continue;
        }
        if (is_empty_value(json_object_get(have, k)))
            json_object_set(patch, k, v);
    }
    json_decref(mine);
    json_object_foreach((json_t *)mapped, k, v) {
        /* The found record's fields come back under their own case. */
        const json_t *cur = NULL;
        const char *hk;
        json_t *hv;
        json_object_foreach((json_t *)have, hk, hv) {
            if (strcasecmp(hk, k) == 0)
                cur = hv;
        }
        if (!same_value(cur, v))
            json_object_set(patch, k, v);
    }
    return patch;
}

/* Phone numbers as people type them: for a North American number
 * (+1 and ten digits, or ten digits) the E.164 form, the digits with and
 * without the 1, and the usual punctuations; otherwise the number as
 * given, with a plus and as bare digits. */
static json_t *phone_variants(const char *phone)
{
    json_t *out = json_array();
    char d[32];
    digits_of(phone, d, sizeof(d));
    size_t n = strlen(d);
    const char *nat = NULL;
    if (n == 11 && d[0] == '1')
        nat = d + 1;
    else if (n == 10 && phone[0] != '+')
        nat = d;
    if (nat) {
        char a[3][4];
        snprintf(a[0], 4, "%.3s", nat);
        snprintf(a[1], 4, "%.3s", nat + 3);
        snprintf(a[2], 4, "%.3s", nat + 6);
        const char *l = nat + 6; /* the last four digits */
        json_array_append_new(out, json_sprintf("+1%s", nat));
        json_array_append_new(out, json_sprintf("1%s", nat));
        json_array_append_new(out, json_string(nat));
        json_array_append_new(out, json_sprintf("(%s) %s-%s", a[0], a[1], l));
        json_array_append_new(out, json_sprintf("%s-%s-%s", a[0], a[1], l));
        json_array_append_new(out, json_sprintf("%s.%s.%s", a[0], a[1], l));
        json_array_append_new(out,
                              json_sprintf("+1 (%s) %s-%s", a[0], a[1], l));
        json_array_append_new(out, json_sprintf("+1 %s-%s-%s", a[0], a[1], l));
    } else {
        json_array_append_new(out, json_string(phone));
        if (n >= 7) {
            json_t *plus = json_sprintf("+%s", d);
            if (strcmp(phone, json_string_value(plus)) != 0)
                json_array_append_new(out, plus);
            else
                json_decref(plus);
            if (strcmp(phone, d) != 0)
                json_array_append_new(out, json_string(d));
        }
    }
    return out;
}

/* The external id value of this call, or NULL. */
static const char *ext_value(const struct prov_ctx *ctx, json_t *root)
{
    const char *src = sf__cfg_str(ctx, "external_id_source");
    const json_t *v = map_path(root, src ? src : "customer_phone");
    const char *s = json_string_value(v);
    return s && *s ? s : NULL;
}

struct select_arg {
    struct buf *b;
    json_t *seen; /* lower-case names already selected */
};

static int select_add(const char *field, void *arg)
{
    struct select_arg *a = arg;
    char low[96];
    size_t i = 0;
    for (; field[i] && i + 1 < sizeof(low); i++)
        low[i] = (char)tolower((unsigned char)field[i]);
    low[i] = '\0';
    if (json_object_get(a->seen, low))
        return 0;
    json_object_set_new(a->seen, low, json_true());
    sf__puts(a->b, a->seen && json_object_size(a->seen) > 1 ? ", " : "");
    sf__puts(a->b, field);
    return 0;
}

/* "Id, FirstName, ..." the contact step reads: identity fields, the
 * external id field and every mapped target, each once. */
static void select_fields(const struct prov_ctx *ctx, struct buf *b)
{
    static const char *const lead[] = {
        "Id",    "FirstName",   "LastName", "Company", "Email",
        "Phone", "MobilePhone", "Street",   "City",    "State"};
    static const char *const contact[] = {
        "Id",           "FirstName",   "LastName",      "Email",
        "Phone",        "MobilePhone", "MailingStreet", "MailingCity",
        "MailingState", "AccountId"};
    struct select_arg a = {b, json_object()};
    bool l = is_lead(ctx);
    for (size_t i = 0; i < (l ? CS_ARRAY_LEN(lead) : CS_ARRAY_LEN(contact));
         i++)
        select_add(l ? lead[i] : contact[i], &a);
    const char *ext = sf__cfg_str(ctx, "external_id_field");
    if (ext)
        select_add(ext, &a);
    sf__each_target(ctx, "field_mappings", select_add, &a);
    json_decref(a.seen);
}

/* SELECT ... FROM <Object> WHERE (<ext> = v OR Phone IN (...) OR
 * MobilePhone IN (...) OR Email = e) [AND IsConverted = false]
 * ORDER BY CreatedDate ASC LIMIT 10 */
static void search_soql(const struct prov_ctx *ctx, struct buf *b)
{
    json_t *root = prov_data_root(ctx);
    const char *phone = sf__str_at(ctx->call, "customer.phone");
    const char *email = sf__str_at(ctx->call, "customer.email");
    const char *ext = sf__cfg_str(ctx, "external_id_field");
    const char *xv = ext ? ext_value(ctx, root) : NULL;
    sf__puts(b, "SELECT ");
    select_fields(ctx, b);
    sf__puts(b, " FROM ");
    sf__puts(b, object_of(ctx));
    sf__puts(b, " WHERE (");
    const char *sep = "";
    if (xv) {
        sf__puts(b, ext);
        sf__puts(b, " = ");
        sf__soql_quote(b, xv);
        sep = " OR ";
    }
    if (phone) {
        json_t *vs = phone_variants(phone);
        static const char *const fields[] = {"Phone", "MobilePhone"};
        for (size_t f = 0; f < 2; f++) {
            sf__puts(b, sep);
            sf__puts(b, fields[f]);
            sf__puts(b, " IN (");
            size_t i;
            json_t *v;
            json_array_foreach(vs, i, v) {
                if (i)
                    sf__puts(b, ", ");
                sf__soql_quote(b, json_string_value(v));
            }
            sf__puts(b, ")");
            sep = " OR ";
        }
        json_decref(vs);
    }
    if (email) {
        sf__puts(b, sep);
        sf__puts(b, "Email = ");
        sf__soql_quote(b, email);
    }
    sf__puts(b, ")");
    if (is_lead(ctx))
        sf__puts(b, " AND IsConverted = false");
    sf__puts(b, " ORDER BY CreatedDate ASC LIMIT 10");
    json_decref(root);
}

static int contact_mapped(const struct prov_ctx *ctx, json_t **out,
                          struct cs_err *err)
{
    return sf__apply_mappings(ctx, "field_mappings", out, err);
}

static int contact_build(struct prov_ctx *ctx, struct prov_request *rq,
                         struct cs_err *err)
{
    const char *phone = sf__str_at(ctx->call, "customer.phone");
    const char *email = sf__str_at(ctx->call, "customer.email");
    if (!phone && !email)
        return cs_err_set(err, CS_EINVAL, "call.customer",
                          "no_contact_key: the call has neither a phone "
                          "number nor an email address");
    if (check_object(ctx, err) < 0)
        return CS_EINVAL;
    const char *ext = sf__cfg_str(ctx, "external_id_field");
    if (ext && !sf__api_name_ok(ext))
        return cs_err_set(err, CS_EINVAL, "config.external_id_field",
                          "config_error: '%.60s' is not a field API name", ext);
    json_t *mapped = NULL;
    if (contact_mapped(ctx, &mapped, err) < 0)
        return CS_EINVAL;
    const char *obj = object_of(ctx);
    int rc;
    json_t *body = NULL;
    if (phase_is(ctx, "create")) {
        json_t *root = prov_data_root(ctx);
        const char *xv = ext ? ext_value(ctx, root) : NULL;
        body = create_body(ctx, mapped);
        char *path;
        if (xv) {
            /* Upsert by the external id: the key is in the URL, not the
             * body. */
            char *ef = prov_url_escape(ext);
            char *ev = prov_url_escape(xv);
            path = xasprintf("/sobjects/%s/%s/%s", obj, ef, ev);
            free(ef);
            free(ev);
            json_object_del(body, ext);
            rc = sf__begin(ctx, rq, "PATCH", path, err);
        } else {
            path = xasprintf("/sobjects/%s", obj);
            rc = sf__begin(ctx, rq, "POST", path, err);
        }
        free(path);
        json_decref(root);
    } else if (phase_is(ctx, "update") || phase_is(ctx, "fetch")) {
        const char *id = scratch_str(ctx, "contact_id");
        const char *type = scratch_str(ctx, "object");
        CS_ASSERT(id != NULL && type != NULL);
        char *eid = prov_url_escape(id);
        char *path;
        if (phase_is(ctx, "fetch")) {
            struct buf f;
            buf_init(&f, 8192);
            select_fields(ctx, &f);
            char *fields = buf_take(&f, NULL);
            /* "Id, FirstName" -> "Id,FirstName" */
            size_t k = 0;
            for (size_t i = 0; fields && fields[i]; i++)
                if (fields[i] != ' ')
                    fields[k++] = fields[i];
            if (fields)
                fields[k] = '\0';
            char *ef = prov_url_escape(fields ? fields : "Id");
            path = xasprintf("/sobjects/%s/%s?fields=%s", type, eid, ef);
            free(ef);
            free(fields);
            rc = sf__begin(ctx, rq, "GET", path, err);
        } else {
            path = xasprintf("/sobjects/%s/%s", type, eid);
            rc = sf__begin(ctx, rq, "PATCH", path, err);
            body = json_incref(json_object_get(ctx->scratch, "patch"));
        }
        free(path);
        free(eid);
    } else {
        set_phase(ctx, "search");
        struct buf q;
        buf_init(&q, 16384);
        search_soql(ctx, &q);
        rc = sf__begin_query(ctx, rq, &q, err);
    }
    if (rc == 0 && body)
        prov_request_json(rq, body);
    json_decref(body);
    json_decref(mapped);
    return rc;
}

static json_t *contact_value(const struct prov_ctx *ctx, const char *id,
                             const char *type, const json_t *have)
{
    json_t *v = json_pack("{s:s,s:s}", "contact_id", id, "object", type);
    const char *acct = sf__id_of(have, "AccountId");
    if (!acct && strcmp(type, "Contact") == 0)
        acct = scratch_str(ctx, "account_id");
    if (acct)
        json_object_set_new(v, "account_id", json_string(acct));
    return v;
}

/* Found (id and its fields): update what differs, or done. */
static void contact_found(struct prov_ctx *ctx, const char *id,
                          const json_t *have, struct prov_result *res)
{
    const char *type = object_of(ctx);
    json_t *mapped = NULL;
    struct cs_err err;
    /* build succeeded with the same input, so this cannot fail. */
    if (contact_mapped(ctx, &mapped, &err) < 0)
        mapped = json_object();
    json_t *patch = update_body(ctx, mapped, have);
    json_decref(mapped);
    if (sf__id_of(have, "AccountId"))
        json_object_set_new(ctx->scratch, "account_id",
                            json_string(sf__id_of(have, "AccountId")));
    if (json_object_size(patch) == 0) {
        json_decref(patch);
        sf__set_done(res, contact_value(ctx, id, type, have));
        return;
    }
    json_object_set_new(ctx->scratch, "contact_id", json_string(id));
    json_object_set_new(ctx->scratch, "object", json_string(type));
    json_object_set_new(ctx->scratch, "patch", patch);
    next_phase(ctx, res, "update");
}

/* The record a DUPLICATES_DETECTED answer names: a Lead or a Contact
 * (a lead rule may match contacts; either can be a task's WhoId). */
static bool duplicate_of(const json_t *b, const char **id, const char **type)
{
    const json_t *e = sf__error_with(b, "DUPLICATES_DETECTED");
    const json_t *matches =
        json_object_get(json_object_get(e, "duplicateResult"), "matchResults");
    size_t i, j;
    const json_t *m, *r;
    json_array_foreach(matches, i, m) {
        json_array_foreach(json_object_get(m, "matchRecords"), j, r) {
            const json_t *rec = json_object_get(r, "record");
            const char *t = json_string_value(
                json_object_get(json_object_get(rec, "attributes"), "type"));
            if (!t)
                t = json_string_value(json_object_get(m, "entityType"));
            if (sf__id_of(rec, "Id") && t &&
                (strcmp(t, "Lead") == 0 || strcmp(t, "Contact") == 0)) {
                *id = sf__id_of(rec, "Id");
                *type = t;
                return true;
            }
        }
    }
    return false;
}

/* The best of the records a search found: one that matches both the
 * email and the number, else the oldest. */
static const json_t *best_match(const struct prov_ctx *ctx, const json_t *recs)
{
    const char *phone = sf__str_at(ctx->call, "customer.phone");
    const char *email = sf__str_at(ctx->call, "customer.email");
    size_t i;
    const json_t *r;
    json_array_foreach(recs, i, r) {
        const char *e = json_string_value(json_object_get(r, "Email"));
        if (phone && email && e && strcasecmp(e, email) == 0 &&
            (same_number(json_string_value(json_object_get(r, "Phone")),
                         phone) ||
             same_number(json_string_value(json_object_get(r, "MobilePhone")),
                         phone)))
            return r;
    }
    return json_array_get(recs, 0);
}

static void contact_parse_search(struct prov_ctx *ctx, const json_t *b,
                                 const struct prov_response *rsp,
                                 struct prov_result *res)
{
    const json_t *recs = sf__records_of(b);
    if (!recs) {
        sf__bad_body(rsp, res);
        return;
    }
    const json_t *hit = best_match(ctx, recs);
    if (hit && !sf__id_of(hit, "Id")) {
        sf__bad_body(rsp, res);
    } else if (hit) {
        contact_found(ctx, sf__id_of(hit, "Id"), hit, res);
    } else if (first_time(ctx, "created")) {
        next_phase(ctx, res, "create");
    } else {
        /* A create answered 204 without an id, and the search that
         * followed found nothing: do not create twice in one attempt. */
        prov_fail(res, PROV_RETRY, "not_found_after_create",
                  "the %s just written was not found", object_of(ctx));
    }
}

static void contact_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                          struct prov_result *res)
{
    sf__parse_begin(ctx, rsp, res);
    json_t *b = sf__body_json(rsp);
    const char *dup_id = NULL, *dup_type = NULL;
    if (phase_is(ctx, "search") && rsp->status == 200) {
        contact_parse_search(ctx, b, rsp, res);
    } else if (phase_is(ctx, "create") && sf__is_2xx(rsp->status)) {
        if (sf__id_of(b, "id")) {
            sf__set_done(res, contact_value(ctx, sf__id_of(b, "id"),
                                            object_of(ctx), NULL));
        } else if (rsp->status == 204) {
            /* An upsert that updated, before API 46.0: find its id. */
            json_object_set_new(ctx->scratch, "created", json_true());
            next_phase(ctx, res, "search");
        } else {
            sf__bad_body(rsp, res);
        }
    } else if (phase_is(ctx, "create") && rsp->status == 400 &&
               duplicate_of(b, &dup_id, &dup_type) &&
               first_time(ctx, "duplicate")) {
        /* The org's duplicate rules name the record to use. */
        if (strcmp(dup_type, object_of(ctx)) == 0) {
            json_object_set_new(ctx->scratch, "contact_id",
                                json_string(dup_id));
            json_object_set_new(ctx->scratch, "object", json_string(dup_type));
            next_phase(ctx, res, "fetch");
        } else {
            sf__set_done(res, json_pack("{s:s,s:s}", "contact_id", dup_id,
                                        "object", dup_type));
        }
    } else if (phase_is(ctx, "fetch") && rsp->status == 200 &&
               sf__id_of(b, "Id")) {
        contact_found(ctx, sf__id_of(b, "Id"), b, res);
    } else if (phase_is(ctx, "update") && sf__is_2xx(rsp->status)) {
        sf__set_done(res, contact_value(ctx, scratch_str(ctx, "contact_id"),
                                        scratch_str(ctx, "object"), NULL));
    } else if (phase_is(ctx, "update") && rsp->status == 400 &&
               duplicate_of(b, &dup_id, &dup_type)) {
        /* The update would make it a duplicate (say, the call's email
         * belongs to another record): the caller is known; leave the
         * record as the org's rules want it. */
        sf__set_done(res, contact_value(ctx, scratch_str(ctx, "contact_id"),
                                        scratch_str(ctx, "object"), NULL));
        json_object_set_new(res->value, "update_skipped",
                            json_string("DUPLICATES_DETECTED"));
    } else if (phase_is(ctx, "update") &&
               (rsp->status == 404 || sf__error_with(b, "ENTITY_IS_DELETED") ||
                sf__error_with(b, "CANNOT_UPDATE_CONVERTED_LEAD")) &&
               first_time(ctx, "vanished")) {
        /* Deleted, merged or converted since the search: look again
         * (a converted lead is no longer found). */
        json_object_del(ctx->scratch, "patch");
        json_object_del(ctx->scratch, "contact_id");
        next_phase(ctx, res, "search");
    } else {
        sf__fail(rsp, res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Descriptions                                                       */
/* ------------------------------------------------------------------ */

static void put_duration(struct buf *b, const struct prov_ctx *ctx)
{
    const json_t *d = map_path(ctx->call, "duration_s");
    if (!json_is_number(d))
        return;
    long long s = (long long)json_number_value(d);
    char dur[64];
    if (s >= 60)
        snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
    else
        snprintf(dur, sizeof(dur), "%llds", s);
    sf__put_line(b, "Duration", dur, SF_SHORT_MAX);
}

static char *task_description(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, SF_DESC_MAX + 1024);
    sf__put_line(&b, "Call outcome", sf__str_at(c, "outcome"), SF_SHORT_MAX);
    sf__put_line(&b, "Direction", sf__str_at(c, "direction"), SF_SHORT_MAX);
    sf__put_line(&b, "Summary", sf__str_at(c, "summary"), SF_SUMMARY_MAX);
    sf__put_line(&b, "Sentiment", sf__str_at(c, "sentiment"), SF_SHORT_MAX);
    put_duration(&b, ctx);
    const char *rec = sf__str_at(c, "recording_url");
    if (rec && strlen(rec) < SF_URL_MAX)
        sf__put_line(&b, "Recording", rec, SF_URL_MAX);
    const char *tr = sf__str_at(c, "transcript");
    if (tr) {
        size_t n = sf__utf8_cut(tr, SF_TRANSCRIPT_MAX);
        sf__puts(&b, "Transcript (excerpt):\n");
        sf__put(&b, tr, n);
        if (tr[n])
            sf__puts(&b, " [\xe2\x80\xa6]");
        sf__puts(&b, "\n");
    }
    sf__put_marker(&b, ctx);
    return buf_take(&b, NULL);
}

static const char *contact_id_done(const struct prov_ctx *ctx)
{
    return sf__str_at(ctx->done, "contact.contact_id");
}

static int need_contact(const struct prov_ctx *ctx, struct cs_err *err)
{
    if (!contact_id_done(ctx))
        return cs_err_set(err, CS_EINVAL, "contact",
                          "no_contact: the contact step has no contact_id");
    return 0;
}

/* Look for what this step wrote: SELECT Id, Description FROM <obj> WHERE
 * <field> = <value> [AND CreatedDate >= <since>] ORDER BY CreatedDate
 * DESC LIMIT 200; the marker is matched in parse. */
static int marker_search(struct prov_ctx *ctx, struct prov_request *rq,
                         const char *obj, const char *field, const char *value,
                         const char *also_field, const char *also_value,
                         struct cs_err *err)
{
    set_phase(ctx, "search");
    struct buf q;
    buf_init(&q, 8192);
    sf__puts(&q, "SELECT Id, Description FROM ");
    sf__puts(&q, obj);
    sf__puts(&q, " WHERE ");
    sf__puts(&q, field);
    sf__puts(&q, " = ");
    sf__soql_quote(&q, value);
    if (also_field) {
        sf__puts(&q, " AND ");
        sf__puts(&q, also_field);
        sf__puts(&q, " = ");
        sf__soql_quote(&q, also_value);
    }
    char since[32];
    if (since_literal(ctx, since)) {
        sf__puts(&q, " AND CreatedDate >= ");
        sf__puts(&q, since);
    }
    sf__puts(&q, " ORDER BY CreatedDate DESC LIMIT 200");
    return sf__begin_query(ctx, rq, &q, err);
}

/* The answer to marker_search: done with our record, or on to create. */
static void marker_found(struct prov_ctx *ctx, const json_t *b,
                         const struct prov_response *rsp, const char *key,
                         struct prov_result *res)
{
    const json_t *recs = sf__records_of(b);
    if (!recs) {
        sf__bad_body(rsp, res);
        return;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(recs, i, r) {
        if (sf__id_of(r, "Id") &&
            sf__has_marker(
                ctx, json_string_value(json_object_get(r, "Description")))) {
            sf__set_done(res, json_pack("{s:s}", key, sf__id_of(r, "Id")));
            return;
        }
    }
    next_phase(ctx, res, "create");
}

/* The answer to a create: {"id", "success", "errors"}. */
static void created(const json_t *b, const struct prov_response *rsp,
                    const char *key, struct prov_result *res)
{
    if (sf__id_of(b, "id"))
        sf__set_done(res, json_pack("{s:s}", key, sf__id_of(b, "id")));
    else
        sf__bad_body(rsp, res);
}

/* ------------------------------------------------------------------ */
/* Step 2: task (the call log)                                        */
/* ------------------------------------------------------------------ */

static char *task_subject(const struct prov_ctx *ctx, struct cs_err *err,
                          bool *failed)
{
    char *s = sf__render_template(ctx, "task_subject_template", err, failed);
    if (*failed)
        return NULL;
    if (!s) {
        const char *dir = sf__str_at(ctx->call, "direction");
        const char *what = sf__str_at(ctx->call, "outcome");
        bool in = dir && strcasecmp(dir, "inbound") == 0;
        bool out = dir && strcasecmp(dir, "outbound") == 0;
        s = xasprintf("%s%s%s",
                      in    ? "Inbound call"
                      : out ? "Outbound call"
                            : "Call",
                      what ? ": " : "", what ? what : "");
    }
    char *c = sf__cut_dup(s, SF_SHORT_MAX);
    free(s);
    return c;
}

static json_t *task_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    const char *tz;
    if (tz_of(ctx, &tz, err) < 0)
        return NULL;
    json_t *mapped = NULL;
    if (sf__apply_mappings(ctx, "task_field_mappings", &mapped, err) < 0)
        return NULL;
    bool failed;
    char *subject = task_subject(ctx, err, &failed);
    if (failed) {
        json_decref(mapped);
        return NULL;
    }
    char *desc = task_description(ctx);
    char date[11];
    local_date(tz, call_ms(ctx), date);
    const char *status = sf__cfg_str(ctx, "task_status");
    json_t *b =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "Subject", subject,
                  "Description", desc ? desc : "", "WhoId",
                  contact_id_done(ctx), "Status", status ? status : "Completed",
                  "ActivityDate", date, "TaskSubtype", "Call");
    free(subject);
    free(desc);
    const char *dir = sf__str_at(ctx->call, "direction");
    if (dir && strcasecmp(dir, "inbound") == 0)
        json_object_set_new(b, "CallType", json_string("Inbound"));
    else if (dir && strcasecmp(dir, "outbound") == 0)
        json_object_set_new(b, "CallType", json_string("Outbound"));
    const json_t *d = map_path(ctx->call, "duration_s");
    if (json_is_number(d) && json_number_value(d) >= 0)
        json_object_set_new(
            b, "CallDurationInSeconds",
            json_integer((json_int_t)(json_number_value(d) + 0.5)));
    const char *outcome = sf__str_at(ctx->call, "outcome");
    if (outcome) {
        char *o = sf__cut_dup(outcome, SF_SHORT_MAX);
        json_object_set_new(b, "CallDisposition", json_string(o));
        free(o);
    }
    set_str(b, "Priority", sf__cfg_str(ctx, "task_priority"));
    set_str(b, "OwnerId", sf__cfg_str(ctx, "owner_id"));
    json_object_update(b, mapped);
    json_decref(mapped);
    return b;
}

static int task_build(struct prov_ctx *ctx, struct prov_request *rq,
                      struct cs_err *err)
{
    if (need_contact(ctx, err) < 0)
        return CS_EINVAL;
    /* Check the body before anything is sent: a mapping that cannot
     * apply fails the step at once, not after the search. */
    json_t *body = task_body(ctx, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (ctx->reconcile && !phase_is(ctx, "create")) {
        rc = marker_search(ctx, rq, "Task", "WhoId", contact_id_done(ctx), NULL,
                           NULL, err);
    } else {
        set_phase(ctx, "create");
        rc = sf__begin(ctx, rq, "POST", "/sobjects/Task", err);
        if (rc == 0)
            prov_request_json(rq, body);
    }
    json_decref(body);
    return rc;
}

static void task_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                       struct prov_result *res)
{
    sf__parse_begin(ctx, rsp, res);
    if (!sf__is_2xx(rsp->status)) {
        sf__fail(rsp, res);
        return;
    }
    json_t *b = sf__body_json(rsp);
    if (phase_is(ctx, "search"))
        marker_found(ctx, b, rsp, "task_id", res);
    else
        created(b, rsp, "task_id", res);
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 3: event (a booked appointment)                               */
/* ------------------------------------------------------------------ */

static bool event_applies(const struct prov_ctx *ctx)
{
    return when_has_appointment(ctx->call) &&
           sf__cfg_bool(ctx, "create_events", true);
}

static char *event_subject(const struct prov_ctx *ctx)
{
    const char *title = sf__str_at(ctx->call, "appointment.title");
    char *s;
    if (title) {
        s = xstrdup(title);
    } else {
        const char *service = sf__str_at(ctx->call, "appointment.service_type");
        const char *name = sf__str_at(ctx->call, "customer.name");
        s = xasprintf("%s%s%s", service ? service : "Appointment",
                      name ? " - " : "", name ? name : "");
    }
    char *c = sf__cut_dup(s, SF_SHORT_MAX);
    free(s);
    return c;
}

/* The customer's address on one line, or NULL. */
static char *event_location(const struct prov_ctx *ctx)
{
    static const char *const parts[] = {"customer.address", "customer.city",
                                        "customer.state"};
    struct buf b;
    buf_init(&b, 4096);
    for (size_t i = 0; i < CS_ARRAY_LEN(parts); i++) {
        const char *p = sf__str_at(ctx->call, parts[i]);
        if (!p)
            continue;
        if (b.len)
            sf__puts(&b, ", ");
        sf__puts(&b, p);
    }
    char *s = buf_take(&b, NULL);
    if (!s)
        return NULL;
    char *c = sf__cut_dup(s, SF_SHORT_MAX);
    free(s);
    return c;
}

static json_t *event_body(const struct prov_ctx *ctx, const struct when_appt *a,
                          struct cs_err *err)
{
    char s[32], e[32], local[40];
    cs_rfc3339_s(a->start_ms, s);
    cs_rfc3339_s(a->end_ms, e);
    if (!when_local_rfc3339(a->tz, a->start_ms, local)) {
        cs_err_set(err, CS_EINVAL, "call.appointment.timezone",
                   "mapping_error: unknown time zone '%.64s'", a->tz);
        return NULL;
    }
    json_t *mapped = NULL;
    if (sf__apply_mappings(ctx, "event_field_mappings", &mapped, err) < 0)
        return NULL;
    struct buf b;
    buf_init(&b, SF_DESC_MAX + 1024);
    sf__put_line(&b, "Service",
                 sf__str_at(ctx->call, "appointment.service_type"),
                 SF_SHORT_MAX);
    sf__put_line(&b, "Local time", local, SF_SHORT_MAX);
    sf__put_line(&b, "Time zone", a->tz, SF_SHORT_MAX);
    sf__put_line(&b, "Call summary", sf__str_at(ctx->call, "summary"),
                 SF_SUMMARY_MAX);
    sf__put_marker(&b, ctx);
    char *desc = buf_take(&b, NULL);
    char *subject = event_subject(ctx);
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "Subject", subject, "StartDateTime",
                  s, "EndDateTime", e, "WhoId", contact_id_done(ctx),
                  "Description", desc ? desc : "");
    free(subject);
    free(desc);
    char *loc = event_location(ctx);
    set_str(body, "Location", loc);
    free(loc);
    set_str(body, "OwnerId", sf__cfg_str(ctx, "owner_id"));
    json_object_update(body, mapped);
    json_decref(mapped);
    return body;
}

static int event_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    struct when_appt a;
    if (need_contact(ctx, err) < 0 ||
        when_appointment(ctx->call, ctx->config, &a, err) < 0)
        return CS_EINVAL;
    if (a.end_ms - a.start_ms > 14LL * 24 * 3600 * 1000)
        return cs_err_set(err, CS_EINVAL, "call.appointment.duration_min",
                          "mapping_error: an event cannot last longer than "
                          "14 days");
    json_t *body = event_body(ctx, &a, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (phase_is(ctx, "create")) {
        rc = sf__begin(ctx, rq, "POST", "/sobjects/Event", err);
        if (rc == 0)
            prov_request_json(rq, body);
    } else {
        /* Before every create, not only after a crash: the agent may have
         * booked the slot in Salesforce during the call. */
        set_phase(ctx, "search");
        char s[32];
        cs_rfc3339_s(a.start_ms, s);
        struct buf q;
        buf_init(&q, 4096);
        sf__puts(&q, "SELECT Id, Subject, Description, StartDateTime FROM "
                     "Event WHERE WhoId = ");
        sf__soql_quote(&q, contact_id_done(ctx));
        sf__puts(&q, " AND StartDateTime = ");
        sf__puts(&q, s);
        sf__puts(&q, " ORDER BY CreatedDate ASC LIMIT 10");
        rc = sf__begin_query(ctx, rq, &q, err);
    }
    json_decref(body);
    return rc;
}

static void event_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    sf__parse_begin(ctx, rsp, res);
    if (!sf__is_2xx(rsp->status)) {
        sf__fail(rsp, res);
        return;
    }
    json_t *b = sf__body_json(rsp);
    if (phase_is(ctx, "search")) {
        const json_t *recs = sf__records_of(b);
        const json_t *hit = NULL;
        struct when_appt a;
        struct cs_err err;
        size_t i;
        const json_t *r;
        if (when_appointment(ctx->call, ctx->config, &a, &err) == 0)
            json_array_foreach(recs, i, r) {
                int64_t at;
                const char *st =
                    json_string_value(json_object_get(r, "StartDateTime"));
                if (!hit && sf__id_of(r, "Id") &&
                    (sf__has_marker(ctx, json_string_value(json_object_get(
                                             r, "Description"))) ||
                     (sf__parse_time(st, &at) && at == a.start_ms)))
                    hit = r;
            }
        if (!recs)
            sf__bad_body(rsp, res);
        else if (hit)
            sf__set_done(res,
                         json_pack("{s:s}", "event_id", sf__id_of(hit, "Id")));
        else
            next_phase(ctx, res, "create");
    } else {
        created(b, rsp, "event_id", res);
    }
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Step 4: opportunity                                                */
/* ------------------------------------------------------------------ */

static bool opportunity_applies(const struct prov_ctx *ctx)
{
    return sf__cfg_str(ctx, "opportunity_stage") != NULL;
}

static char *opportunity_name(const struct prov_ctx *ctx, struct cs_err *err)
{
    bool failed;
    char *s =
        sf__render_template(ctx, "opportunity_name_template", err, &failed);
    if (failed)
        return NULL;
    if (!s) {
        const char *who = sf__str_at(ctx->call, "customer.name");
        if (!who)
            who = sf__str_at(ctx->call, "customer.phone");
        if (!who)
            who = sf__str_at(ctx->call, "customer.email");
        const char *what = sf__str_at(ctx->call, "outcome");
        s = xasprintf("%s \xe2\x80\x93 %s", who ? who : "Unknown caller",
                      what ? what : "call");
    }
    char *c = sf__cut_dup(s, 120);
    free(s);
    return c;
}

static int close_days(const struct prov_ctx *ctx, struct cs_err *err)
{
    const json_t *v = json_object_get(ctx->config, "opportunity_close_days");
    if (!v || json_is_null(v))
        return 30;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 3650)
        return cs_err_set(err, CS_EINVAL, "config.opportunity_close_days",
                          "config_error: opportunity_close_days must be a "
                          "whole number of days from 0 to 3650");
    return (int)json_integer_value(v);
}

static json_t *opportunity_body(const struct prov_ctx *ctx, struct cs_err *err)
{
    const char *tz;
    int days = close_days(ctx, err);
    if (days < 0 || tz_of(ctx, &tz, err) < 0)
        return NULL;
    char ver[8];
    int major;
    if (sf__api_version(ctx, ver, &major, err) < 0)
        return NULL;
    const json_t *amount = json_object_get(ctx->config, "opportunity_amount");
    if (amount && !json_is_null(amount) && !json_is_number(amount)) {
        cs_err_set(err, CS_EINVAL, "config.opportunity_amount",
                   "config_error: opportunity_amount must be a number");
        return NULL;
    }
    json_t *mapped = NULL;
    if (sf__apply_mappings(ctx, "opportunity_field_mappings", &mapped, err) < 0)
        return NULL;
    char *name = opportunity_name(ctx, err);
    if (!name) {
        json_decref(mapped);
        return NULL;
    }
    char date[11];
    local_date(tz, call_ms(ctx) + (int64_t)days * 86400000, date);
    struct buf b;
    buf_init(&b, SF_DESC_MAX + 1024);
    sf__put_line(&b, "Caller", sf__str_at(ctx->call, "customer.name"),
                 SF_SHORT_MAX);
    sf__put_line(&b, "Phone", sf__str_at(ctx->call, "customer.phone"),
                 SF_SHORT_MAX);
    sf__put_line(&b, "Email", sf__str_at(ctx->call, "customer.email"),
                 SF_SHORT_MAX);
    sf__put_line(&b,
                 sf__str_at(ctx->done, "contact.object")
                     ? sf__str_at(ctx->done, "contact.object")
                     : "Record",
                 contact_id_done(ctx), SF_SHORT_MAX);
    sf__put_line(&b, "Call outcome", sf__str_at(ctx->call, "outcome"),
                 SF_SHORT_MAX);
    sf__put_line(&b, "Summary", sf__str_at(ctx->call, "summary"),
                 SF_SUMMARY_MAX);
    sf__put_marker(&b, ctx);
    char *desc = buf_take(&b, NULL);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "Name", name, "StageName",
                             sf__cfg_str(ctx, "opportunity_stage"), "CloseDate",
                             date, "Description", desc ? desc : "");
    free(name);
    free(desc);
    if (json_is_number(amount))
        json_object_set(body, "Amount", (json_t *)amount);
    const char *obj = sf__str_at(ctx->done, "contact.object");
    const char *acct = sf__str_at(ctx->done, "contact.account_id");
    if (!acct)
        acct = sf__cfg_str(ctx, "account_id");
    set_str(body, "AccountId", acct);
    /* ContactId makes the contact the opportunity's primary contact role
     * (create only, API 46.0 and later). A lead has no such link: its id
     * is in the description. */
    if (obj && strcmp(obj, "Contact") == 0 && major >= 46)
        set_str(body, "ContactId", contact_id_done(ctx));
    set_str(body, "LeadSource", sf__cfg_str(ctx, "lead_source"));
    set_str(body, "OwnerId", sf__cfg_str(ctx, "owner_id"));
    json_object_update(body, mapped);
    json_decref(mapped);
    return body;
}

static int opportunity_build(struct prov_ctx *ctx, struct prov_request *rq,
                             struct cs_err *err)
{
    if (need_contact(ctx, err) < 0)
        return CS_EINVAL;
    json_t *body = opportunity_body(ctx, err);
    if (!body)
        return CS_EINVAL;
    int rc;
    if (ctx->reconcile && !phase_is(ctx, "create")) {
        const char *cid = json_string_value(json_object_get(body, "ContactId"));
        rc = marker_search(ctx, rq, "Opportunity", "Name",
                           json_string_value(json_object_get(body, "Name")),
                           cid ? "ContactId" : NULL, cid, err);
    } else {
        set_phase(ctx, "create");
        rc = sf__begin(ctx, rq, "POST", "/sobjects/Opportunity", err);
        if (rc == 0)
            prov_request_json(rq, body);
    }
    json_decref(body);
    return rc;
}

static void opportunity_parse(struct prov_ctx *ctx,
                              const struct prov_response *rsp,
                              struct prov_result *res)
{
    sf__parse_begin(ctx, rsp, res);
    if (!sf__is_2xx(rsp->status)) {
        sf__fail(rsp, res);
        return;
    }
    json_t *b = sf__body_json(rsp);
    if (phase_is(ctx, "search"))
        marker_found(ctx, b, rsp, "opportunity_id", res);
    else
        created(b, rsp, "opportunity_id", res);
    json_decref(b);
}

/* ------------------------------------------------------------------ */
/* Probe: callsyncctl connections test                                */
/* ------------------------------------------------------------------ */

/*
 * One read: the SOQL query the contact step starts with, reduced to
 * "SELECT Id FROM <Lead|Contact> LIMIT 1" (REST API query resource) at
 * the connection's instance URL and API version. It proves the token,
 * the instance and version, and the user's read access to the object
 * (an object the profile cannot see answers 400 INVALID_TYPE). The
 * answer's Sforce-Limit-Info header tells the org's API usage, reported
 * as found. Nothing is written.
 */
static int probe_build(struct prov_ctx *ctx, struct prov_request *rq,
                       struct cs_err *err)
{
    if (check_object(ctx, err))
        return CS_EINVAL;
    struct buf b;
    buf_init(&b, 256);
    sf__puts(&b, "SELECT Id FROM ");
    sf__puts(&b, object_of(ctx));
    sf__puts(&b, " LIMIT 1");
    return sf__begin_query(ctx, rq, &b, err);
}

static void probe_parse(struct prov_ctx *ctx, const struct prov_response *rsp,
                        struct prov_result *res)
{
    sf__parse_begin(ctx, rsp, res);
    if (!sf__is_2xx(rsp->status)) {
        sf__fail(rsp, res);
        return;
    }
    json_t *b = sf__body_json(rsp);
    if (!sf__records_of(b)) {
        prov_fail(res, PROV_PERMANENT, "unexpected_answer",
                  "the query answer has no records");
        json_decref(b);
        return;
    }
    char ver[8] = "";
    int major = 0;
    struct cs_err err = {0};
    (void)sf__api_version(ctx, ver, &major, &err);
    json_t *v = json_pack("{s:s,s:b,s:s}", "object", object_of(ctx),
                          "readable", 1, "api_version", ver);
    const char *inst = ctx->creds ? ctx->creds->instance_url : NULL;
    if (inst && *inst)
        json_object_set_new(v, "instance_url", json_string(inst));
    const char *lim = prov_response_header(rsp, "sforce-limit-info");
    if (lim)
        json_object_set_new(v, "limit_info", json_string(lim));
    sf__set_done(res, v);
    json_decref(b);
}

static const struct prov_step sf_probe = {
    "probe", PROV_RECONCILE_NONE, NULL, probe_build, probe_parse};

/* ------------------------------------------------------------------ */

static const struct prov_step sf_steps[] = {
    {"contact", PROV_RECONCILE_LOOKUP, NULL, contact_build, contact_parse},
    {"task", PROV_RECONCILE_LOOKUP, NULL, task_build, task_parse},
    {"event", PROV_RECONCILE_LOOKUP, event_applies, event_build, event_parse},
    {"opportunity", PROV_RECONCILE_LOOKUP, opportunity_applies,
     opportunity_build, opportunity_parse},
};

/*
 * Salesforce limits an org per rolling 24 hours (Enterprise Edition
 * 100,000 requests plus 1,000 per licence) and its long-running requests
 * to 25 at once; it has no per-second limit. The limiter's default is 5
 * requests per second per org (about two calls a second): it keeps the
 * org's concurrency far from its limit and, at most 432,000 a day, leaves
 * the daily allocation to Sforce-Limit-Info, which pauses the key when it
 * is spent. The key is the org (config.org_id), so every connection to
 * one org shares one budget, as the org does.
 */
const struct prov_ops prov_salesforce = {
    .name = "salesforce",
    .steps = sf_steps,
    .nsteps = CS_ARRAY_LEN(sf_steps),
    .rate = {5, 1000},
    .rate_scope = "org_id",
    .probe = &sf_probe,
};
