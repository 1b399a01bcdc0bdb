/*
 * pipedrive_fields.c - the Pipedrive provider's field mappings (person and
 * deal properties, custom fields keyed by 40-character hashes, seed 003's
 * custom_fields), the matching of emails and phones, and the HTML text of
 * notes. See pipedrive_internal.h and pipedrive.c.
 */
#include "pipedrive_internal.h"
#include "mapping.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Field mappings                                                     */
/* ------------------------------------------------------------------ */

static const char *const marketing_statuses[] = {
    "no_consent", "unsubscribed", "subscribed", "archived", NULL};
static const char *const deal_statuses[] = {"open", "won", "lost", NULL};

/* AddPersonRequest properties a mapping may set (email and phone add to
 * the person's emails and phones). */
const struct pd__field pd__person_fields[] = {
    {"name", F_STRING, NULL},
    {"email", F_STRING, NULL},
    {"phone", F_STRING, NULL},
    {"owner_id", F_INT, NULL},
    {"org_id", F_INT, NULL},
    {"visible_to", F_INT, NULL},
    {"label_ids", F_INTS, NULL},
    {"marketing_status", F_ENUM, marketing_statuses},
    {NULL, F_STRING, NULL},
};

/* AddDealRequest properties a mapping may set. */
const struct pd__field pd__deal_fields[] = {
    {"title", F_STRING, NULL},
    {"value", F_NUMBER, NULL},
    {"currency", F_STRING, NULL},
    {"owner_id", F_INT, NULL},
    {"org_id", F_INT, NULL},
    {"stage_id", F_INT, NULL},
    {"status", F_ENUM, deal_statuses},
    {"probability", F_INT, NULL},
    {"visible_to", F_INT, NULL},
    {"label_ids", F_INTS, NULL},
    {"expected_close_date", F_DATE, NULL},
    {NULL, F_STRING, NULL},
};

static const struct pd__field *field_find(const struct pd__field *t,
                                          const char *name)
{
    for (; t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Custom fields are keyed by a 40-character hash (lower-case hex). */
static bool custom_key_ok(const char *k, size_t n)
{
    if (n != 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)k[i]) &&
            !(k[i] >= 'a' && k[i] <= 'f'))
            return false;
    return true;
}

static bool numeric_text(const char *s, double *out)
{
    char *end;
    if (!*s)
        return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

static const char *kind_name(const json_t *v)
{
    return json_is_object(v)   ? "an object"
           : json_is_array(v)  ? "a list"
           : json_is_string(v) ? "text"
           : json_is_number(v) ? "a number"
                               : "a boolean";
}

static bool date_ok(const char *s)
{
    /* YYYY-MM-DD */
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* v converted for field f (a new value), or NULL with err filled. */
static json_t *convert(const char *what, const struct pd__field *f,
                       const json_t *v, struct cs_err *err)
{
    static const char *const want[] = {"text", "an integer id",
                                       "a list of integer ids", "a number",
                                       "a date (YYYY-MM-DD)", "one of"};
    long long id;
    double d;
    switch (f->kind) {
    case F_STRING:
        if (json_is_string(v))
            return json_incref((json_t *)v);
        if (json_is_integer(v))
            return json_sprintf("%lld", (long long)json_integer_value(v));
        if (json_is_real(v))
            return json_sprintf("%.15g", json_real_value(v));
        if (json_is_boolean(v))
            return json_string(json_is_true(v) ? "true" : "false");
        break;
    case F_INT:
        if (pd__json_id(v, &id))
            return json_integer(id);
        if (json_is_real(v) && json_real_value(v) > 0 &&
            json_real_value(v) == (double)(long long)json_real_value(v))
            return json_integer((long long)json_real_value(v));
        break;
    case F_INTS:
        if (pd__json_id(v, &id))
            return json_pack("[I]", (json_int_t)id);
        if (json_is_array(v)) {
            json_t *out = json_array();
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e) {
                if (!pd__json_id(e, &id))
                    break;
                json_array_append_new(out, json_integer(id));
            }
            if (i == json_array_size(v))
                return out;
            json_decref(out);
        }
        break;
    case F_NUMBER:
        if (json_is_number(v))
            return json_incref((json_t *)v);
        if (json_is_string(v) && numeric_text(json_string_value(v), &d))
            return json_real(d);
        break;
    case F_DATE:
        if (json_is_string(v) && date_ok(json_string_value(v)))
            return json_incref((json_t *)v);
        break;
    case F_ENUM:
        if (json_is_string(v)) {
            for (const char *const *o = f->options; *o; o++)
                if (strcmp(*o, json_string_value(v)) == 0)
                    return json_incref((json_t *)v);
            cs_err_set(err, CS_EINVAL, f->name,
                       "mapping_error: %s '%s' cannot be '%.40s'", what,
                       f->name, json_string_value(v));
            return NULL;
        }
        break;
    }
    cs_err_set(err, CS_EINVAL, f->name,
               "mapping_error: %s '%s' takes %s, the mapping gives %s", what,
               f->name, want[f->kind], kind_name(v));
    return NULL;
}

/* Whether target names a field of table or a custom field. */
static int check_target(const char *target, const char *what,
                        const struct pd__field *table, struct cs_err *err)
{
    if (!target || !*target)
        return 0; /* map_apply names what is missing */
    if (strncmp(target, "custom_fields.", 14) == 0) {
        const char *k = target + 14;
        if (!custom_key_ok(k, strlen(k)))
            return cs_err_set(err, CS_EINVAL, "custom_fields",
                              "mapping_error: '%.60s' needs a custom field's "
                              "40-character key: custom_fields.<key>",
                              target);
        return 0;
    }
    if (custom_key_ok(target, strlen(target)) || field_find(table, target))
        return 0;
    return cs_err_set(err, CS_EINVAL, "field_mappings",
                      "mapping_error: '%.40s' is not a Pipedrive %s field "
                      "(use custom_fields.<40-character key> for a custom "
                      "one)", target, what);
}

/* Check every target of the mappings (list or object form, mapping.h)
 * before any is applied, so a bad one fails even when its source is
 * missing from this call. */
static int check_targets(const json_t *maps, const char *what,
                         const struct pd__field *table, struct cs_err *err)
{
    size_t i;
    const json_t *m;
    if (json_is_array(maps)) {
        json_array_foreach(maps, i, m) {
            const char *t = json_string_value(json_object_get(m, "target"));
            if (!t)
                t = json_string_value(json_object_get(m, "name"));
            if (check_target(t, what, table, err) < 0)
                return CS_EINVAL;
        }
    } else if (json_is_object(maps)) {
        const char *k;
        json_object_foreach((json_t *)maps, k, m) {
            const char *t = json_is_string(m) ? json_string_value(m) : k;
            if (check_target(t, what, table, err) < 0)
                return CS_EINVAL;
        }
    } else if (maps && !json_is_null(maps)) {
        return cs_err_set(err, CS_EINVAL, "field_mappings",
                          "mapping_error: field mappings must be a list or "
                          "an object");
    }
    return 0;
}

/* Seed 003's {"<key>": "source.path"} as mapping.h's list form. */
static int seed_custom_fields(const json_t *cf, json_t **list,
                              struct cs_err *err)
{
    *list = NULL;
    if (!cf || json_is_null(cf))
        return 0;
    if (!json_is_object(cf))
        return cs_err_set(err, CS_EINVAL, "custom_fields",
                          "mapping_error: custom_fields must be an object "
                          "{\"<40-character key>\": \"source.path\"}");
    json_t *out = json_array();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)cf, k, v) {
        if (!custom_key_ok(k, strlen(k))) {
            json_decref(out);
            return cs_err_set(err, CS_EINVAL, "custom_fields",
                              "mapping_error: '%.40s' is not a Pipedrive "
                              "custom field key (the 40-character hash of "
                              "Company settings > Data fields)", k);
        }
        char *target = xasprintf("custom_fields.%s", k);
        json_t *m;
        if (json_is_string(v)) {
            m = json_pack("{s:s,s:O}", "target", target, "source", v);
        } else if (json_is_object(v)) {
            m = json_deep_copy(v);
            json_object_set_new(m, "target", json_string(target));
        } else {
            free(target);
            json_decref(out);
            return cs_err_set(err, CS_EINVAL, "custom_fields",
                              "mapping_error: custom_fields.%.40s takes a "
                              "source path or a mapping object", k);
        }
        free(target);
        json_array_append_new(out, m);
    }
    *list = out;
    return 0;
}

/* Two values the same for Pipedrive: JSON-equal, or equal numbers. */
bool pd__same_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

/* Move the raw targets of map_apply into fields: known ones converted,
 * custom ones (custom_fields.<key> or a bare key) into custom_fields. */
static int collect(const json_t *raw, const char *what,
                   const struct pd__field *table, json_t *fields,
                   struct cs_err *err)
{
    json_t *custom = json_object_get(fields, "custom_fields");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)raw, k, v) {
        if (strcmp(k, "custom_fields") == 0) {
            if (!json_is_object(v))
                return cs_err_set(err, CS_EINVAL, "custom_fields",
                                  "mapping_error: target 'custom_fields' "
                                  "needs a key: custom_fields.<key>");
            const char *ck;
            json_t *cv;
            json_object_foreach(v, ck, cv) {
                if (!json_is_null(cv))
                    json_object_set(custom, ck, cv);
            }
            continue;
        }
        if (custom_key_ok(k, strlen(k))) {
            if (!json_is_null(v))
                json_object_set(custom, k, v);
            continue;
        }
        const struct pd__field *f = field_find(table, k);
        if (!f)
            return cs_err_set(err, CS_EINVAL, "field_mappings",
                              "mapping_error: '%.40s' is not a Pipedrive %s "
                              "field", k, what);
        if (json_is_null(v))
            continue;
        json_t *c = convert(what, f, v, err);
        if (!c)
            return CS_EINVAL;
        json_object_set_new(fields, k, c);
    }
    return 0;
}

/*
 * Apply the mappings at config[key] (and, for the person, seed 003's
 * config.custom_fields) over prov_data_root into *out: converted fields
 * of table plus "custom_fields" {key: value} (possibly empty). A target
 * that is not a field, a key that is not a 40-character hash, or a value
 * of the wrong type is a mapping_error naming it.
 */
int pd__apply_mappings(const struct prov_ctx *ctx, const char *key,
                       bool seed_custom, const char *what,
                       const struct pd__field *table, json_t **out,
                       struct cs_err *err)
{
    *out = NULL;
    const json_t *maps = json_object_get(ctx->config, key);
    json_t *seed = NULL;
    if (check_targets(maps, what, table, err) < 0 ||
        (seed_custom &&
         seed_custom_fields(json_object_get(ctx->config, "custom_fields"),
                            &seed, err) < 0))
        return CS_EINVAL;
    json_t *fields = json_pack("{s:{}}", "custom_fields");
    if ((!maps || json_is_null(maps)) && !seed) {
        *out = fields;
        return 0;
    }
    json_t *root = prov_data_root(ctx);
    json_t *raw = json_object();
    int rc = 0;
    if (seed)
        rc = map_apply(seed, root, raw, err);
    if (rc == 0 && maps && !json_is_null(maps))
        rc = map_apply(maps, root, raw, err);
    if (rc == 0)
        rc = collect(raw, what, table, fields, err);
    json_decref(root);
    json_decref(raw);
    json_decref(seed);
    if (rc < 0) {
        json_decref(fields);
        return rc;
    }
    *out = fields;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Matching emails and phones                                         */
/* ------------------------------------------------------------------ */

static size_t digits_of(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 1 < n; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
    return k;
}

/* The same phone: equal digits, or one number written without its
 * country code (at least 7 digits that end the other). */
static bool phone_same(const char *a, const char *b)
{
    char da[40], db[40];
    size_t na = digits_of(a, da, sizeof(da));
    size_t nb = digits_of(b, db, sizeof(db));
    if (na < 7 || nb < 7)
        return na == nb && na > 0 && strcmp(da, db) == 0;
    if (na < nb)
        return strcmp(db + nb - na, da) == 0;
    return strcmp(da + na - nb, db) == 0;
}

/* The text of an email or phone entry: a string (search results) or
 * {"value"} (persons). */
const char *pd__entry_value(const json_t *e)
{
    return json_is_string(e) ? json_string_value(e)
                             : json_string_value(json_object_get(e, "value"));
}

bool pd__list_has(const json_t *list, const char *want, bool phone)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) {
        const char *v = pd__entry_value(e);
        if (v && (phone ? phone_same(v, want) : strcasecmp(v, want) == 0))
            return true;
    }
    return false;
}

/* Whether a person (or search item) has the call's email or phone. */
bool pd__person_matches(const json_t *p, const char *email,
                        const char *phone)
{
    return (email &&
            pd__list_has(json_object_get(p, "emails"), email, false)) ||
           (phone && pd__list_has(json_object_get(p, "phones"), phone, true));
}

/* ------------------------------------------------------------------ */
/* Text                                                               */
/* ------------------------------------------------------------------ */

void pd__puts(struct buf *b, const char *s)
{
    /* Every section is capped below the buffer's cap; a failure here
     * would only drop text. */
    if (buf_adds(b, s) < 0)
        return;
}

/* The length of s cut to at most max bytes on a UTF-8 boundary. */
size_t pd__utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* n bytes of s as HTML text (newlines as <br> when br). */
void pd__put_html(struct buf *b, const char *s, size_t n, bool br)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\n': rep = br ? "<br>" : NULL; break;
        default: break;
        }
        if (!rep)
            continue;
        if (buf_add(b, s + from, i - from) < 0 || buf_adds(b, rep) < 0)
            return;
        from = i + 1;
    }
    if (buf_add(b, s + from, n - from) < 0)
        return;
}

/* "<b>Label:</b> value<br>", value cut to max bytes (then " [...]"). */
void pd__put_line(struct buf *b, const char *label, const char *value,
                  size_t max)
{
    if (!value)
        return;
    pd__puts(b, "<b>");
    pd__puts(b, label);
    pd__puts(b, ":</b> ");
    size_t n = pd__utf8_cut(value, max);
    pd__put_html(b, value, n, false);
    if (value[n])
        pd__puts(b, " [\xe2\x80\xa6]");
    pd__puts(b, "<br>\n");
}

/* The job marker on a line of its own, so a lookup finds the object
 * however Pipedrive sanitises the HTML around it. */
void pd__put_marker(struct buf *b, const struct prov_ctx *ctx)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    pd__puts(b, "<p>Sync reference: ");
    pd__puts(b, marker);
    pd__puts(b, "</p>");
}

bool pd__has_marker(const struct prov_ctx *ctx, const char *text)
{
    char marker[48];
    prov_job_marker(ctx->job, marker);
    return text && strstr(text, marker) != NULL;
}

char *pd__note_text(const struct prov_ctx *ctx)
{
    const json_t *c = ctx->call;
    struct buf b;
    buf_init(&b, PD_NOTE_MAX);
    pd__puts(&b, "<p>");
    pd__put_line(&b, "Call outcome", pd__str_at(c, "outcome"), PD_SHORT_MAX);
    pd__put_line(&b, "Direction", pd__str_at(c, "direction"), PD_SHORT_MAX);
    pd__put_line(&b, "Summary", pd__str_at(c, "summary"), PD_SUMMARY_MAX);
    pd__put_line(&b, "Sentiment", pd__str_at(c, "sentiment"), PD_SHORT_MAX);
    const json_t *d = map_path(c, "duration_s");
    if (json_is_number(d)) {
        long long s = (long long)json_number_value(d);
        char dur[64];
        if (s >= 60)
            snprintf(dur, sizeof(dur), "%lldm %llds", s / 60, s % 60);
        else
            snprintf(dur, sizeof(dur), "%llds", s);
        pd__put_line(&b, "Duration", dur, PD_SHORT_MAX);
    }
    const char *rec = pd__str_at(c, "recording_url");
    if (rec && strlen(rec) < PD_URL_MAX) {
        pd__puts(&b, "<b>Recording:</b> <a href=\"");
        pd__put_html(&b, rec, strlen(rec), false);
        pd__puts(&b, "\">");
        pd__put_html(&b, rec, strlen(rec), false);
        pd__puts(&b, "</a><br>\n");
    }
    pd__puts(&b, "</p>");
    const char *tr = pd__str_at(c, "transcript");
    if (tr) {
        size_t n = pd__utf8_cut(tr, PD_TRANSCRIPT_MAX);
        pd__puts(&b, "<p><b>Transcript (excerpt):</b><br>\n");
        pd__put_html(&b, tr, n, true);
        if (tr[n])
            pd__puts(&b, " [\xe2\x80\xa6]");
        pd__puts(&b, "</p>");
    }
    pd__put_marker(&b, ctx);
    return buf_take(&b, NULL);
}
