/*
 * norm.c - validate each source's webhook body and turn it into the call
 * document of DESIGN.md ("Data model"), plus the small pieces of the job
 * model that depend only on it: phone numbers, job ids, shards and sync
 * conditions.
 *
 * Every normaliser works the same way. The body is parsed strictly
 * (duplicate keys are an error), then each object we read is opened as a
 * `struct obj`: a shallow copy of it from which every field we map is
 * removed. Whatever is left over ends up in the call's `custom` object, so
 * an unknown field is carried along rather than dropped.
 *
 * Fields that are structural (ids, timestamps, numbers, the caller's phone)
 * are strict: a wrong type is CS_EINVAL naming the field. Values that a
 * language model extracted during the call (Retell's custom analysis data
 * and dynamic variables) are read leniently: scalars are turned into text,
 * and a value that cannot be used stays in `custom` instead of failing the
 * whole webhook. lead_score is the exception: it must be 0-100.
 */
#include "norm.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define PATH_MAX_LEN 64

/* ------------------------------------------------------------------------
 * Reading objects: a source object plus the copy its unmapped keys stay in.
 */

struct obj {
    json_t *o;    /* borrowed source object, or NULL when absent */
    json_t *rest; /* owned shallow copy; mapped keys are deleted from it */
    char path[PATH_MAX_LEN];
};

static void obj_open(struct obj *s, json_t *o, const char *path)
{
    s->o = json_is_object(o) ? o : NULL;
    s->rest = s->o ? json_copy(s->o) : json_object();
    CS_ASSERT(s->rest != NULL);
    snprintf(s->path, sizeof(s->path), "%s", path);
}

static void obj_close(struct obj *s)
{
    json_decref(s->rest);
    s->rest = NULL;
    s->o = NULL;
}

static void field_path(const struct obj *s, const char *key,
                       char out[PATH_MAX_LEN])
{
    /* A long path is cut short; the start names the field well enough. */
    size_t n = 0;
    if (s->path[0]) {
        n = strnlen(s->path, PATH_MAX_LEN - 1);
        memcpy(out, s->path, n);
        if (n < PATH_MAX_LEN - 1)
            out[n++] = '.';
    }
    size_t k = strnlen(key, PATH_MAX_LEN - 1 - n);
    memcpy(out + n, key, k);
    out[n + k] = '\0';
}

/* The value of key, NULL if absent or JSON null. Not marked as mapped. */
static json_t *obj_peek(const struct obj *s, const char *key)
{
    json_t *v = s->o ? json_object_get(s->o, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

/* Like obj_peek, and marks the key as mapped. */
static json_t *obj_take(struct obj *s, const char *key)
{
    json_t *v = obj_peek(s, key);
    json_object_del(s->rest, key);
    return v;
}

static int bad(struct cs_err *err, const struct obj *s, const char *key,
               const char *msg)
{
    char p[PATH_MAX_LEN];
    field_path(s, key, p);
    return cs_err_set(err, CS_EINVAL, p, "%s", msg);
}

/* A string field. req: absent or empty is an error. */
static int take_str(struct obj *s, const char *key, bool req, const char **out,
                    struct cs_err *err)
{
    json_t *v = obj_take(s, key);
    *out = NULL;
    if (!v)
        return req ? bad(err, s, key, "is required") : 0;
    if (!json_is_string(v))
        return bad(err, s, key, "must be a string");
    if (req && json_string_length(v) == 0)
        return bad(err, s, key, "must not be empty");
    *out = json_string_value(v);
    return 0;
}

/* An integer field; *present tells whether it was there. */
static int take_int(struct obj *s, const char *key, bool req, int64_t *out,
                    bool *present, struct cs_err *err)
{
    json_t *v = obj_take(s, key);
    *present = false;
    *out = 0;
    if (!v)
        return req ? bad(err, s, key, "is required") : 0;
    if (!json_is_integer(v))
        return bad(err, s, key, "must be an integer");
    *out = json_integer_value(v);
    *present = true;
    return 0;
}

static int take_bool(struct obj *s, const char *key, int *out,
                     struct cs_err *err)
{
    json_t *v = obj_take(s, key);
    *out = -1;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return bad(err, s, key, "must be a boolean");
    *out = json_is_true(v);
    return 0;
}

static int take_obj(struct obj *s, const char *key, bool req, json_t **out,
                    struct cs_err *err)
{
    json_t *v = obj_take(s, key);
    *out = NULL;
    if (!v)
        return req ? bad(err, s, key, "is required") : 0;
    if (!json_is_object(v))
        return bad(err, s, key, "must be an object");
    *out = v;
    return 0;
}

/* Put what is left of a nested object into custom under key, if anything. */
static void keep_rest(json_t *custom, const char *key, const struct obj *s)
{
    if (s->o && json_object_size(s->rest) > 0)
        json_object_set(custom, key, s->rest);
}

/* Merge the keys left in s into custom, without overwriting. */
static void merge_rest(json_t *custom, const struct obj *s)
{
    const char *k;
    json_t *v;
    json_object_foreach(s->rest, k, v)
    {
        if (!json_object_get(custom, k))
            json_object_set(custom, k, v);
    }
}

/* ------------------------------------------------------------------------
 * Body parsing and the empty call document.
 */

static int parse_body(const char *body, size_t n, json_t **root,
                      struct cs_err *err)
{
    json_error_t je;
    *root = NULL;
    if (!body)
        return cs_err_set(err, CS_EINVAL, "", "body is missing");
    json_t *r = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
    if (!r)
        return cs_err_set(err, CS_EINVAL, "",
                          "invalid json: %s at line %d column %d", je.text,
                          je.line, je.column);
    if (!json_is_object(r)) {
        json_decref(r);
        return cs_err_set(err, CS_EINVAL, "", "body must be a json object");
    }
    *root = r;
    return 0;
}

static json_t *call_new(const char *source)
{
    json_t *c = json_object();
    json_t *cust = json_object();
    static const char *const ckeys[] = {"name",  "first_name", "last_name",
                                        "phone", "email",      "address",
                                        "city",  "state"};
    for (size_t i = 0; i < CS_ARRAY_LEN(ckeys); i++)
        json_object_set_new(cust, ckeys[i], json_null());
    json_object_set_new(c, "call_id", json_null());
    json_object_set_new(c, "source", json_string(source));
    json_object_set_new(c, "agent_id", json_null());
    json_object_set_new(c, "org_id", json_null());
    json_object_set_new(c, "customer", cust);
    json_object_set_new(c, "direction", json_null());
    json_object_set_new(c, "outcome", json_string("completed"));
    json_object_set_new(c, "summary", json_null());
    json_object_set_new(c, "sentiment", json_null());
    json_object_set_new(c, "transcript", json_null());
    json_object_set_new(c, "recording_url", json_null());
    json_object_set_new(c, "started_at", json_null());
    json_object_set_new(c, "ended_at", json_null());
    json_object_set_new(c, "duration_s", json_integer(0));
    json_object_set_new(c, "appointment", json_null());
    json_object_set_new(c, "analysis", json_null());
    json_object_set_new(c, "custom", json_object());
    return c;
}

/* Set a string member (NULL or "" gives JSON null). */
static void set_str(json_t *o, const char *key, const char *v)
{
    json_object_set_new(o, key, v && v[0] ? json_string(v) : json_null());
}

static void set_cust(json_t *call, const char *key, const char *v)
{
    set_str(json_object_get(call, "customer"), key, v);
}

static const char *cust_get(json_t *call, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(call, "customer"), key));
}

static void set_ts(json_t *call, const char *key, int64_t ms)
{
    char buf[32];
    cs_rfc3339_s(ms, buf);
    json_object_set_new(call, key, json_string(buf));
}

/* Rounded to the nearest second. */
static int64_t ms_to_s(int64_t ms)
{
    return ms <= 0 ? 0 : (ms + 500) / 1000;
}

/* Fill first_name/last_name from name or the other way round. */
static void complete_name(json_t *call)
{
    const char *name = cust_get(call, "name");
    const char *first = cust_get(call, "first_name");
    const char *last = cust_get(call, "last_name");
    if (name && !first && !last) {
        while (*name == ' ')
            name++;
        const char *sp = strchr(name, ' ');
        if (!sp) {
            set_cust(call, "first_name", name);
            return;
        }
        char *f = xstrndup(name, (size_t)(sp - name));
        while (*sp == ' ')
            sp++;
        set_cust(call, "first_name", f);
        set_cust(call, "last_name", sp);
        free(f);
    } else if (!name && (first || last)) {
        char *n = xasprintf("%s%s%s", first ? first : "",
                            first && last ? " " : "", last ? last : "");
        set_cust(call, "name", n);
        free(n);
    }
}

static void lower_in_place(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* positive/neutral/negative/unknown; anything else becomes "unknown". */
static void set_sentiment(json_t *call, const char *v)
{
    if (!v || !v[0]) {
        json_object_set_new(call, "sentiment", json_null());
        return;
    }
    char *s = xstrdup(v);
    lower_in_place(s);
    bool known = strcmp(s, "positive") == 0 || strcmp(s, "neutral") == 0 ||
                 strcmp(s, "negative") == 0;
    json_object_set_new(call, "sentiment", json_string(known ? s : "unknown"));
    free(s);
}

static bool is_date(const char *s)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

static bool is_hhmm(const char *s)
{
    if (!s || strlen(s) != 5 || s[2] != ':' || !isdigit((unsigned char)s[0]) ||
        !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[3]) ||
        !isdigit((unsigned char)s[4]))
        return false;
    return (s[0] - '0') * 10 + (s[1] - '0') < 24 &&
           (s[3] - '0') * 10 + (s[4] - '0') < 60;
}

/* lead_score: integer 0-100, or a string of digits in that range. */
static int lead_score_of(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d))
            return -1;
        *out = (int64_t)d;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        if (n == 0 || n > 3 || strspn(s, "0123456789") != n)
            return -1;
        *out = strtol(s, NULL, 10);
    } else {
        return -1;
    }
    return *out >= 0 && *out <= 100 ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Lenient lookups across the model-extracted bags (Retell).
 */

struct bag {
    struct obj *s[3];
    int n;
};

/* Where a bag value was found, so it can be taken only when it is used. */
struct hit {
    json_t *v;
    struct obj *s;
    const char *key;
};

/* The first of keys present in any bag, searched bag by bag. */
static bool bag_find(struct bag *b, const char *const *keys, struct hit *h)
{
    for (int i = 0; i < b->n; i++)
        for (const char *const *k = keys; *k; k++) {
            json_t *v = obj_peek(b->s[i], *k);
            if (!v || (json_is_string(v) && json_string_length(v) == 0))
                continue;
            h->v = v;
            h->s = b->s[i];
            h->key = *k;
            return true;
        }
    return false;
}

static void hit_take(const struct hit *h)
{
    json_object_del(h->s->rest, h->key);
}

/* A scalar as text (numbers and booleans printed); NULL for others. */
static char *scalar_text(json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v) && isfinite(json_real_value(v)))
        return xasprintf("%g", json_real_value(v));
    if (json_is_boolean(v))
        return xstrdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

/*
 * The first of keys found in any bag, as text, taken from its bag. Returns
 * a malloc'd string or NULL; objects and arrays are left where they are.
 */
static char *bag_text(struct bag *b, const char *const *keys)
{
    struct hit h;
    if (!bag_find(b, keys, &h))
        return NULL;
    char *out = scalar_text(h.v);
    if (out)
        hit_take(&h);
    return out;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void bag_to(struct bag *b, json_t *dst, const char *dkey,
                   const char *const *keys)
{
    char *v = bag_text(b, keys);
    if (v) {
        set_str(dst, dkey, v);
        free(v);
    }
}

/* Split a date, or a timestamp written in local time, into d and t. */
static bool split_date(const char *date, const char *time, char d[11],
                       char t[6])
{
    d[0] = t[0] = '\0';
    if (!date)
        return false;
    size_t n = strlen(date);
    if (n >= 16 && (date[10] == 'T' || date[10] == ' ')) {
        memcpy(d, date, 10);
        d[10] = '\0';
        memcpy(t, date + 11, 5);
        t[5] = '\0';
    } else if (n == 10) {
        memcpy(d, date, 11);
        if (time && strlen(time) >= 5) {
            memcpy(t, time, 5);
            t[5] = '\0';
        }
    }
    if (t[0] && !is_hhmm(t))
        t[0] = '\0';
    return is_date(d);
}

/*
 * Appointment from an "appointment" object or flat appointment_* keys.
 * Built only when it has a usable date ("YYYY-MM-DD", or a timestamp whose
 * local date and time are used as written); otherwise the raw values stay
 * in custom.
 */
static json_t *bag_appointment(struct bag *b)
{
    struct hit ah;
    struct obj ao;
    struct bag ab = {.n = 0};
    struct bag *src = b;
    bool obj = bag_find(b, KEYS("appointment", "appointment_booked"), &ah) &&
               json_is_object(ah.v);
    if (obj) {
        obj_open(&ao, ah.v, "appointment");
        ab.s[ab.n++] = &ao;
        src = &ab;
    }
    struct hit dh, th;
    bool hd = bag_find(src, obj ? KEYS("date", "appointment_date")
                                : KEYS("appointment_date"), &dh);
    bool ht = bag_find(src, obj ? KEYS("time", "appointment_time")
                                : KEYS("appointment_time"), &th);
    char d[11], t[6];
    json_t *out = NULL;
    if (!hd || !split_date(json_string_value(dh.v),
                           ht ? json_string_value(th.v) : NULL, d, t))
        goto out;
    hit_take(&dh);
    if (ht && t[0])
        hit_take(&th);
    out = json_object();
    json_object_set_new(out, "title", json_null());
    json_object_set_new(out, "date", json_string(d));
    json_object_set_new(out, "time", t[0] ? json_string(t) : json_null());
    json_object_set_new(out, "timezone", json_null());
    json_object_set_new(out, "duration_min", json_null());
    json_object_set_new(out, "service_type", json_null());
    if (obj) {
        bag_to(src, out, "title", KEYS("title"));
        bag_to(src, out, "timezone", KEYS("timezone", "timeZone"));
        bag_to(src, out, "service_type", KEYS("service_type", "service"));
    }
    bag_to(b, out, "title", KEYS("appointment_title"));
    bag_to(b, out, "timezone", KEYS("appointment_timezone", "timezone"));
    bag_to(b, out, "service_type", KEYS("service_type", "service_requested"));
    struct hit mh;
    if (bag_find(src, obj ? KEYS("duration_min", "durationMinutes",
                                 "duration_minutes")
                          : KEYS("appointment_duration_min",
                                 "appointment_duration"),
                 &mh) &&
        json_is_integer(mh.v) && json_integer_value(mh.v) >= 0) {
        json_object_set(out, "duration_min", mh.v);
        hit_take(&mh);
    }
out:
    if (obj) {
        /* The object's unmapped members go back where it came from. */
        if (!out)
            json_object_set(ah.s->rest, ah.key, ah.v);
        else if (json_object_size(ao.rest) > 0)
            json_object_set(ah.s->rest, ah.key, ao.rest);
        else
            hit_take(&ah);
        obj_close(&ao);
    }
    return out;
}

static int bag_analysis(struct bag *b, json_t **out, struct cs_err *err)
{
    json_t *a = json_object();
    bool any = false;
    const struct {
        const char *dst;
        const char *const *keys;
    } map[] = {
        {"intent", KEYS("intent", "customer_intent")},
        {"project_type", KEYS("project_type")},
        {"timeline", KEYS("timeline", "project_timeline")},
        {"budget", KEYS("budget", "budget_indicator")},
        {"urgency", KEYS("urgency")},
    };
    *out = NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(map); i++) {
        char *v = bag_text(b, map[i].keys);
        set_str(a, map[i].dst, v);
        any |= v != NULL;
        free(v);
    }
    json_object_set_new(a, "lead_score", json_null());
    for (int i = 0; i < b->n; i++) {
        json_t *v = obj_peek(b->s[i], "lead_score");
        if (!v)
            continue;
        int64_t score;
        if (lead_score_of(v, &score) < 0) {
            json_decref(a);
            return bad(err, b->s[i], "lead_score",
                       "must be an integer from 0 to 100");
        }
        json_object_del(b->s[i]->rest, "lead_score");
        json_object_set_new(a, "lead_score", json_integer(score));
        any = true;
        break;
    }
    if (!any) {
        json_decref(a);
        return 0;
    }
    *out = a;
    return 0;
}

/* ------------------------------------------------------------------------
 * Events.
 */

void cs_event_release(struct cs_event *ev)
{
    if (!ev)
        return;
    free(ev->event_type);
    free(ev->event_id);
    free(ev->agent_ref);
    json_decref(ev->call);
    memset(ev, 0, sizeof(*ev));
}

static void ev_begin(struct cs_event *ev, const char *source)
{
    memset(ev, 0, sizeof(*ev));
    ev->source = source;
}

static void ev_ignore(struct cs_event *ev, const char *reason)
{
    ev->syncable = false;
    ev->ignore_reason = reason;
    json_decref(ev->call);
    ev->call = NULL;
}

static const char *opt_cc(const struct cs_norm_opts *o)
{
    return o && o->default_country_code ? o->default_country_code : "1";
}

/* Normalise a phone field; absent is fine, unusable is CS_EINVAL. */
static int take_phone(struct obj *s, const char *key, const char *cc,
                      char out[17], bool *present, struct cs_err *err)
{
    const char *v;
    int rc = take_str(s, key, false, &v, err);
    *present = false;
    if (rc < 0 || !v || !v[0])
        return rc;
    if (!cs_phone_e164(v, cc, out))
        return bad(err, s, key, "is not a valid phone number");
    *present = true;
    return 0;
}

/* ------------------------------------------------------------------------
 * Retell.
 */

static bool retell_syncable(const char *event)
{
    return strcmp(event, "call_ended") == 0 ||
           strcmp(event, "call_analyzed") == 0;
}

static const char *retell_derive_outcome(const char *reason, int voicemail,
                                         bool appointment)
{
    if (voicemail == 1 || (reason && strcmp(reason, "voicemail_reached") == 0))
        return "voicemail";
    if (reason) {
        if (strcmp(reason, "dial_no_answer") == 0)
            return "no_answer";
        if (strcmp(reason, "dial_busy") == 0)
            return "busy";
        if (strcmp(reason, "dial_failed") == 0 ||
            strcmp(reason, "invalid_destination") == 0 ||
            strncmp(reason, "error_", 6) == 0)
            return "failed";
    }
    return appointment ? "appointment_booked" : "completed";
}

/* Customer, appointment, analysis and outcome from the extracted bags. */
static int retell_bags(json_t *call, struct bag *b, const char **outcome_out,
                       char **outcome_buf, struct cs_err *err)
{
    json_t *cust = json_object_get(call, "customer");
    bag_to(b, cust, "name", KEYS("customer_name", "name", "caller_name"));
    bag_to(b, cust, "first_name", KEYS("first_name", "customer_first_name"));
    bag_to(b, cust, "last_name", KEYS("last_name", "customer_last_name"));
    bag_to(b, cust, "email", KEYS("customer_email", "email"));
    bag_to(b, cust, "address", KEYS("customer_address", "address"));
    bag_to(b, cust, "city", KEYS("customer_city", "city"));
    bag_to(b, cust, "state", KEYS("customer_state", "state"));
    complete_name(call);

    json_t *appt = bag_appointment(b);
    if (appt)
        json_object_set_new(call, "appointment", appt);
    json_t *an;
    int rc = bag_analysis(b, &an, err);
    if (rc < 0)
        return rc;
    if (an)
        json_object_set_new(call, "analysis", an);
    *outcome_buf = bag_text(b, KEYS("call_outcome", "outcome"));
    *outcome_out = *outcome_buf;
    return 0;
}

static int retell_call(struct obj *c, const struct cs_norm_opts *o,
                       struct cs_event *ev, struct cs_err *err)
{
    json_t *call = ev->call;
    json_t *custom = json_object_get(call, "custom");
    const char *call_id, *agent_id, *dir, *s;
    int rc;

    if ((rc = take_str(c, "call_id", true, &call_id, err)) < 0 ||
        (rc = take_str(c, "agent_id", true, &agent_id, err)) < 0)
        return rc;
    set_str(call, "call_id", call_id);
    ev->agent_ref = xstrdup(agent_id);

    if ((rc = take_str(c, "direction", false, &dir, err)) < 0)
        return rc;
    if (dir && strcmp(dir, "inbound") != 0 && strcmp(dir, "outbound") != 0)
        return bad(err, c, "direction", "must be 'inbound' or 'outbound'");
    set_str(call, "direction", dir);

    /* The customer is the far end: the caller inbound, the callee outbound. */
    char phone[17];
    bool have_phone;
    const char *pkey = dir && strcmp(dir, "outbound") == 0 ? "to_number"
                                                           : "from_number";
    if ((rc = take_phone(c, pkey, opt_cc(o), phone, &have_phone, err)) < 0)
        return rc;
    if (have_phone)
        set_cust(call, "phone", phone);

    int64_t start, end, dur;
    bool hs, he, hd;
    if ((rc = take_int(c, "start_timestamp", false, &start, &hs, err)) < 0 ||
        (rc = take_int(c, "end_timestamp", false, &end, &he, err)) < 0 ||
        (rc = take_int(c, "duration_ms", false, &dur, &hd, err)) < 0)
        return rc;
    if (hs && start < 0)
        return bad(err, c, "start_timestamp", "must not be negative");
    if (he && end < 0)
        return bad(err, c, "end_timestamp", "must not be negative");
    if (hs && he && end < start)
        return bad(err, c, "end_timestamp", "is before start_timestamp");
    if (hd && dur < 0)
        return bad(err, c, "duration_ms", "must not be negative");
    if (hs)
        set_ts(call, "started_at", start);
    if (he)
        set_ts(call, "ended_at", end);
    if (hd)
        json_object_set_new(call, "duration_s", json_integer(ms_to_s(dur)));
    else if (hs && he)
        json_object_set_new(call, "duration_s",
                            json_integer(ms_to_s(end - start)));

    if ((rc = take_str(c, "transcript", false, &s, err)) < 0)
        return rc;
    set_str(call, "transcript", s);
    if ((rc = take_str(c, "recording_url", false, &s, err)) < 0)
        return rc;
    set_str(call, "recording_url", s);

    /* disconnection_reason drives the outcome but stays in custom too. */
    json_t *dr = obj_peek(c, "disconnection_reason");
    if (dr && !json_is_string(dr))
        return bad(err, c, "disconnection_reason", "must be a string");
    const char *reason = json_string_value(dr);

    json_t *an_j, *cad_j, *dyn_j, *col_j;
    if ((rc = take_obj(c, "call_analysis", false, &an_j, err)) < 0 ||
        (rc = take_obj(c, "retell_llm_dynamic_variables", false, &dyn_j,
                       err)) < 0 ||
        (rc = take_obj(c, "collected_dynamic_variables", false, &col_j,
                       err)) < 0)
        return rc;
    struct obj an, cad, dyn, col;
    obj_open(&an, an_j, "call.call_analysis");
    obj_open(&dyn, dyn_j, "call.retell_llm_dynamic_variables");
    obj_open(&col, col_j, "call.collected_dynamic_variables");
    obj_open(&cad, NULL, "call.call_analysis.custom_analysis_data");
    char *outcome_buf = NULL;
    const char *outcome = NULL;
    int voicemail = -1;

    if ((rc = take_str(&an, "call_summary", false, &s, err)) < 0)
        goto out;
    set_str(call, "summary", s);
    if ((rc = take_str(&an, "user_sentiment", false, &s, err)) < 0)
        goto out;
    set_sentiment(call, s);
    json_t *vm = obj_peek(&an, "in_voicemail");
    if (vm && !json_is_boolean(vm)) {
        rc = bad(err, &an, "in_voicemail", "must be a boolean");
        goto out;
    }
    voicemail = vm ? json_is_true(vm) : -1;
    if ((rc = take_obj(&an, "custom_analysis_data", false, &cad_j, err)) < 0)
        goto out;
    obj_close(&cad);
    obj_open(&cad, cad_j, "call.call_analysis.custom_analysis_data");

    struct bag b = {.s = {&cad, &dyn, &col}, .n = 3};
    if ((rc = retell_bags(call, &b, &outcome, &outcome_buf, err)) < 0)
        goto out;
    if (!outcome)
        outcome = retell_derive_outcome(
            reason, voicemail, !json_is_null(json_object_get(call, "appointment")));
    json_object_set_new(call, "outcome", json_string(outcome));

    keep_rest(an.rest, "custom_analysis_data", &cad);
    keep_rest(custom, "call_analysis", &an);
    keep_rest(custom, "retell_llm_dynamic_variables", &dyn);
    keep_rest(custom, "collected_dynamic_variables", &col);
    merge_rest(custom, c);
out:
    free(outcome_buf);
    obj_close(&cad);
    obj_close(&col);
    obj_close(&dyn);
    obj_close(&an);
    return rc;
}

int cs_norm_retell(const char *body, size_t n, const struct cs_norm_opts *o,
                   struct cs_event *ev, struct cs_err *err)
{
    json_t *root;
    ev_begin(ev, "retell");
    int rc = parse_body(body, n, &root, err);
    if (rc < 0)
        return rc;

    struct obj top, c;
    obj_open(&top, root, "");
    obj_open(&c, NULL, "call");
    const char *e1, *e2;
    if ((rc = take_str(&top, "event", false, &e1, err)) < 0 ||
        (rc = take_str(&top, "event_type", false, &e2, err)) < 0)
        goto out;
    if (e1 && e2 && strcmp(e1, e2) != 0) {
        rc = cs_err_set(err, CS_EINVAL, "event",
                        "disagrees with 'event_type'");
        goto out;
    }
    const char *event = e1 ? e1 : e2;
    if (!event || !event[0]) {
        rc = cs_err_set(err, CS_EINVAL, "event", "is required");
        goto out;
    }
    ev->event_type = xstrdup(event);

    if (!retell_syncable(event)) {
        /* Ids are recorded when they look right; nothing else is checked. */
        json_t *cj = json_object_get(root, "call");
        const char *id = json_string_value(json_object_get(cj, "call_id"));
        const char *ag = json_string_value(json_object_get(cj, "agent_id"));
        if (id && id[0])
            ev->event_id = xasprintf("%s:%s", id, event);
        if (ag && ag[0])
            ev->agent_ref = xstrdup(ag);
        ev_ignore(ev, "event_not_synced");
        rc = 0;
        goto out;
    }

    json_t *cj;
    if ((rc = take_obj(&top, "call", true, &cj, err)) < 0)
        goto out;
    obj_close(&c);
    obj_open(&c, cj, "call");
    ev->syncable = true;
    ev->call = call_new("retell");
    if ((rc = retell_call(&c, o, ev, err)) < 0)
        goto out;
    ev->event_id = xasprintf(
        "%s:%s", json_string_value(json_object_get(ev->call, "call_id")),
        event);
    merge_rest(json_object_get(ev->call, "custom"), &top);
out:
    obj_close(&c);
    obj_close(&top);
    json_decref(root);
    if (rc < 0)
        cs_event_release(ev);
    return rc;
}

/* ------------------------------------------------------------------------
 * CallRail post-call.
 */

/* duration: integer or a string of digits. */
static int take_seconds(struct obj *s, const char *key, int64_t *out,
                        bool *present, struct cs_err *err)
{
    json_t *v = obj_take(s, key);
    *present = false;
    *out = 0;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *p = json_string_value(v);
        size_t len = strlen(p);
        if (len == 0 || len > 9 || strspn(p, "0123456789") != len)
            return bad(err, s, key, "must be a whole number of seconds");
        *out = strtol(p, NULL, 10);
    } else {
        return bad(err, s, key, "must be an integer or a numeric string");
    }
    if (*out < 0)
        return bad(err, s, key, "must not be negative");
    *present = true;
    return 0;
}

static int take_time(struct obj *s, const char *key, int64_t *ms,
                     bool *present, struct cs_err *err)
{
    const char *v;
    int rc = take_str(s, key, false, &v, err);
    *present = false;
    if (rc < 0 || !v)
        return rc;
    if (!cs_parse_rfc3339(v, ms))
        return bad(err, s, key, "must be an rfc 3339 timestamp");
    *present = true;
    return 0;
}

int cs_norm_callrail(const char *body, size_t n, const struct cs_norm_opts *o,
                     struct cs_event *ev, struct cs_err *err)
{
    json_t *root;
    ev_begin(ev, "callrail");
    int rc = parse_body(body, n, &root, err);
    if (rc < 0)
        return rc;
    struct obj t;
    obj_open(&t, root, "");
    json_t *call = ev->call = call_new("callrail");
    ev->syncable = true;
    ev->event_type = xstrdup("post_call");

    const char *id, *co, *s;
    if ((rc = take_str(&t, "resource_id", true, &id, err)) < 0)
        goto out;
    set_str(call, "call_id", id);
    ev->event_id = xasprintf("%s:post_call", id);

    if ((rc = take_str(&t, "company_resource_id", false, &co, err)) < 0)
        goto out;
    if (co && co[0]) {
        ev->agent_ref = xstrdup(co);
    } else {
        json_t *cid = obj_peek(&t, "company_id");
        if (json_is_string(cid) && json_string_length(cid) > 0)
            ev->agent_ref = xstrdup(json_string_value(cid));
        else if (json_is_integer(cid))
            ev->agent_ref =
                xasprintf("%lld", (long long)json_integer_value(cid));
        if (!ev->agent_ref) {
            rc = cs_err_set(err, CS_EINVAL, "company_resource_id",
                            "is required");
            goto out;
        }
    }

    char phone[17];
    bool hp;
    if ((rc = take_phone(&t, "customer_number", opt_cc(o), phone, &hp, err)) <
        0)
        goto out;
    if (hp)
        set_cust(call, "phone", phone);
    static const char *const cmap[][2] = {{"customer_name", "name"},
                                          {"customer_city", "city"},
                                          {"customer_state", "state"},
                                          {"customer_email", "email"}};
    for (size_t i = 0; i < CS_ARRAY_LEN(cmap); i++) {
        if ((rc = take_str(&t, cmap[i][0], false, &s, err)) < 0)
            goto out;
        set_cust(call, cmap[i][1], s);
    }
    complete_name(call);

    if ((rc = take_str(&t, "direction", false, &s, err)) < 0)
        goto out;
    if (s && strcmp(s, "inbound") != 0 && strcmp(s, "outbound") != 0) {
        rc = bad(err, &t, "direction", "must be 'inbound' or 'outbound'");
        goto out;
    }
    set_str(call, "direction", s);

    int64_t dur, start;
    bool hd, hs;
    if ((rc = take_seconds(&t, "duration", &dur, &hd, err)) < 0 ||
        (rc = take_time(&t, "start_time", &start, &hs, err)) < 0)
        goto out;
    json_object_set_new(call, "duration_s", json_integer(dur));
    if (hs) {
        set_ts(call, "started_at", start);
        if (hd)
            set_ts(call, "ended_at", start + dur * 1000);
    }

    if ((rc = take_str(&t, "recording", false, &s, err)) < 0)
        goto out;
    if (!s && (rc = take_str(&t, "recording_redirect", false, &s, err)) < 0)
        goto out;
    set_str(call, "recording_url", s);
    if ((rc = take_str(&t, "transcription", false, &s, err)) < 0)
        goto out;
    set_str(call, "transcript", s);
    if ((rc = take_str(&t, "call_summary", false, &s, err)) < 0)
        goto out;
    set_str(call, "summary", s);
    if ((rc = take_str(&t, "sentiment", false, &s, err)) < 0)
        goto out;
    set_sentiment(call, s);

    /* answered and voicemail drive the outcome and stay in custom too. */
    int answered, voicemail;
    struct obj peek;
    obj_open(&peek, root, "");
    rc = take_bool(&peek, "answered", &answered, err);
    if (rc == 0)
        rc = take_bool(&peek, "voicemail", &voicemail, err);
    obj_close(&peek);
    if (rc < 0)
        goto out;
    json_object_set_new(call, "outcome",
                        json_string(voicemail == 1  ? "voicemail"
                                    : answered == 0 ? "missed"
                                                    : "completed"));
    merge_rest(json_object_get(call, "custom"), &t);
out:
    obj_close(&t);
    json_decref(root);
    if (rc < 0)
        cs_event_release(ev);
    return rc;
}

/* ------------------------------------------------------------------------
 * Cal.com.
 */

/* responses.<key>.value as a string, or NULL. */
static const char *calcom_response(json_t *payload, const char *key)
{
    json_t *r = json_object_get(json_object_get(payload, "responses"), key);
    json_t *v = json_is_object(r) ? json_object_get(r, "value") : r;
    return json_is_string(v) && json_string_length(v) ? json_string_value(v)
                                                      : NULL;
}

static int calcom_attendee(json_t *call, json_t *payload, struct obj *p,
                           const struct cs_norm_opts *o, struct cs_err *err)
{
    json_t *custom = json_object_get(call, "custom");
    json_t *atts = obj_peek(p, "attendees");
    const char *name = NULL, *email = NULL, *first = NULL, *last = NULL,
               *ph = NULL;
    int rc = 0;
    if (atts && !json_is_array(atts))
        return bad(err, p, "attendees", "must be an array");
    json_t *a0 = json_array_get(atts, 0);
    if (a0 && !json_is_object(a0))
        return cs_err_set(err, CS_EINVAL, "payload.attendees[0]",
                          "must be an object");
    struct obj a;
    obj_open(&a, a0, "payload.attendees[0]");
    if (a0) {
        if ((rc = take_str(&a, "name", false, &name, err)) < 0 ||
            (rc = take_str(&a, "email", false, &email, err)) < 0 ||
            (rc = take_str(&a, "firstName", false, &first, err)) < 0 ||
            (rc = take_str(&a, "lastName", false, &last, err)) < 0)
            goto out;
        char phone[17];
        bool hp;
        if ((rc = take_phone(&a, "phoneNumber", opt_cc(o), phone, &hp, err)) <
            0)
            goto out;
        if (hp)
            set_cust(call, "phone", phone);
        /* One attendee is mapped whole; several are kept as they came. */
        if (json_array_size(atts) == 1) {
            json_object_del(p->rest, "attendees");
            keep_rest(custom, "attendee", &a);
        }
    }
    if (!name)
        name = calcom_response(payload, "name");
    if (!email)
        email = calcom_response(payload, "email");
    if (!json_is_string(json_object_get(json_object_get(call, "customer"),
                                        "phone"))) {
        ph = calcom_response(payload, "attendeePhoneNumber");
        if (!ph)
            ph = calcom_response(payload, "phone");
        char phone[17];
        if (ph && cs_phone_e164(ph, opt_cc(o), phone))
            set_cust(call, "phone", phone);
    }
    set_cust(call, "name", name);
    set_cust(call, "email", email);
    set_cust(call, "first_name", first && first[0] ? first : NULL);
    set_cust(call, "last_name", last && last[0] ? last : NULL);
    complete_name(call);
out:
    obj_close(&a);
    return rc;
}

static const char *calcom_outcome(const char *trigger)
{
    if (strcmp(trigger, "BOOKING_CREATED") == 0)
        return "appointment_booked";
    if (strcmp(trigger, "BOOKING_RESCHEDULED") == 0)
        return "appointment_rescheduled";
    if (strcmp(trigger, "BOOKING_CANCELLED") == 0)
        return "appointment_cancelled";
    return NULL;
}

static int calcom_payload(json_t *call, json_t *pj, const char *trigger,
                          const struct cs_norm_opts *o, struct cs_event *ev,
                          struct cs_err *err)
{
    struct obj p;
    obj_open(&p, pj, "payload");
    json_t *custom = json_object_get(call, "custom");
    const char *uid, *s, *title;
    int rc;
    if ((rc = take_str(&p, "uid", true, &uid, err)) < 0)
        goto out;
    bool cancelled = strcmp(trigger, "BOOKING_CANCELLED") == 0;
    char *cid = xasprintf("calcom_%s%s", uid, cancelled ? "_cancelled" : "");
    set_str(call, "call_id", cid);
    free(cid);
    ev->event_id = xasprintf("%s:%s", trigger, uid);
    json_object_set_new(call, "outcome",
                        json_string(calcom_outcome(trigger)));

    if ((rc = calcom_attendee(call, pj, &p, o, err)) < 0)
        goto out;

    int64_t st, et;
    bool hst, het;
    if ((rc = take_time(&p, "startTime", &st, &hst, err)) < 0 ||
        (rc = take_time(&p, "endTime", &et, &het, err)) < 0)
        goto out;
    if (!hst) {
        rc = bad(err, &p, "startTime", "is required");
        goto out;
    }
    if (het && et < st) {
        rc = bad(err, &p, "endTime", "is before startTime");
        goto out;
    }
    if ((rc = take_str(&p, "title", false, &title, err)) < 0)
        goto out;
    char ts[32];
    cs_rfc3339_s(st, ts);
    json_t *ap = json_object();
    set_str(ap, "title", title);
    ts[10] = '\0';
    json_object_set_new(ap, "date", json_string(ts));
    ts[16] = '\0';
    json_object_set_new(ap, "time", json_string(ts + 11));
    json_object_set_new(ap, "timezone", json_string("UTC"));
    if (het)
        json_object_set_new(ap, "duration_min",
                            json_integer((et - st) / 60000));
    else
        json_object_set_new(ap, "duration_min", json_null());
    json_object_set_new(call, "appointment", ap);
    if ((rc = take_str(&p, "type", false, &s, err)) < 0)
        goto out;
    set_str(ap, "service_type", s);

    /* The booker's notes are the closest thing to a summary. */
    json_t *notes = obj_peek(&p, "additionalNotes");
    const char *sum = json_is_string(notes) && json_string_length(notes)
                          ? json_string_value(notes)
                          : NULL;
    if (sum)
        json_object_del(p.rest, "additionalNotes");
    set_str(call, "summary", sum);
    merge_rest(custom, &p);
out:
    obj_close(&p);
    return rc;
}

int cs_norm_calcom(const char *body, size_t n, const struct cs_norm_opts *o,
                   struct cs_event *ev, struct cs_err *err)
{
    json_t *root;
    ev_begin(ev, "calcom");
    int rc = parse_body(body, n, &root, err);
    if (rc < 0)
        return rc;
    struct obj t;
    obj_open(&t, root, "");
    const char *trigger;
    json_t *pj;
    if ((rc = take_str(&t, "triggerEvent", true, &trigger, err)) < 0)
        goto out;
    ev->event_type = xstrdup(trigger);
    if (!calcom_outcome(trigger)) {
        const char *uid = json_string_value(
            json_object_get(json_object_get(root, "payload"), "uid"));
        if (uid && uid[0])
            ev->event_id = xasprintf("%s:%s", trigger, uid);
        ev_ignore(ev, "event_not_synced");
        goto out;
    }
    if ((rc = take_obj(&t, "payload", true, &pj, err)) < 0)
        goto out;
    ev->syncable = true;
    ev->call = call_new("calcom");
    if ((rc = calcom_payload(ev->call, pj, trigger, o, ev, err)) < 0)
        goto out;
    merge_rest(json_object_get(ev->call, "custom"), &t);
out:
    obj_close(&t);
    json_decref(root);
    if (rc < 0)
        cs_event_release(ev);
    return rc;
}

/* ------------------------------------------------------------------------
 * Stripe.
 */

static const char *stripe_outcome(const char *type)
{
    static const char *const ok[] = {"checkout.session.completed",
                                     "payment_intent.succeeded",
                                     "invoice.paid"};
    for (size_t i = 0; i < CS_ARRAY_LEN(ok); i++)
        if (strcmp(type, ok[i]) == 0)
            return "payment_received";
    if (strcmp(type, "invoice.payment_failed") == 0)
        return "payment_failed";
    return NULL;
}

/* The first of keys holding a non-empty string in a Stripe object. */
static int stripe_str(struct obj *s, const char *const *keys,
                      const char **out, struct cs_err *err)
{
    *out = NULL;
    for (const char *const *k = keys; *k; k++) {
        json_t *v = obj_peek(s, *k);
        if (!v)
            continue;
        if (!json_is_string(v))
            return bad(err, s, *k, "must be a string");
        if (json_string_length(v) == 0)
            continue;
        json_object_del(s->rest, *k);
        *out = json_string_value(v);
        return 0;
    }
    return 0;
}

static int stripe_customer(json_t *call, struct obj *d,
                           const struct cs_norm_opts *o, struct cs_err *err)
{
    json_t *custom = json_object_get(call, "custom");
    json_t *cdj, *addrj = NULL;
    int rc;
    if ((rc = take_obj(d, "customer_details", false, &cdj, err)) < 0)
        return rc;
    struct obj cd, addr;
    obj_open(&cd, cdj, "data.object.customer_details");
    obj_open(&addr, NULL, "");
    const char *name, *email, *phone_s = NULL;
    char phone[17];
    bool hp = false;
    if ((rc = take_str(&cd, "name", false, &name, err)) < 0 ||
        (rc = take_str(&cd, "email", false, &email, err)) < 0 ||
        (rc = take_phone(&cd, "phone", opt_cc(o), phone, &hp, err)) < 0 ||
        (rc = take_obj(&cd, "address", false, &addrj, err)) < 0)
        goto out;
    if (!name && (rc = stripe_str(d, KEYS("customer_name"), &name, err)) < 0)
        goto out;
    if (!email && (rc = stripe_str(d, KEYS("customer_email", "receipt_email"),
                                   &email, err)) < 0)
        goto out;
    if (!hp) {
        if ((rc = stripe_str(d, KEYS("customer_phone"), &phone_s, err)) < 0)
            goto out;
        if (phone_s && !cs_phone_e164(phone_s, opt_cc(o), phone)) {
            rc = cs_err_set(err, CS_EINVAL, "data.object.customer_phone",
                            "is not a valid phone number");
            goto out;
        }
        hp = phone_s != NULL;
    }
    bool addr_in_cd = addrj != NULL;
    if (!addrj && (rc = take_obj(d, "customer_address", false, &addrj,
                                 err)) < 0)
        goto out;
    obj_close(&addr);
    obj_open(&addr, addrj, addr_in_cd ? "data.object.customer_details.address"
                                      : "data.object.customer_address");
    const char *line1, *city, *state;
    if ((rc = take_str(&addr, "line1", false, &line1, err)) < 0 ||
        (rc = take_str(&addr, "city", false, &city, err)) < 0 ||
        (rc = take_str(&addr, "state", false, &state, err)) < 0)
        goto out;
    set_cust(call, "name", name);
    set_cust(call, "email", email);
    if (hp)
        set_cust(call, "phone", phone);
    set_cust(call, "address", line1);
    set_cust(call, "city", city);
    set_cust(call, "state", state);
    complete_name(call);
    if (addr_in_cd)
        keep_rest(cd.rest, "address", &addr);
    else
        keep_rest(custom, "customer_address", &addr);
    keep_rest(custom, "customer_details", &cd);
out:
    obj_close(&addr);
    obj_close(&cd);
    return rc;
}

static int stripe_object(json_t *call, json_t *dj, const char *type,
                         const struct cs_norm_opts *o, struct cs_err *err)
{
    json_t *custom = json_object_get(call, "custom");
    struct obj d;
    obj_open(&d, dj, "data.object");
    const char *s;
    int rc;
    /* id and object stay in custom; they are checked, not mapped. */
    json_t *idv = obj_peek(&d, "id");
    if (!json_is_string(idv) || json_string_length(idv) == 0) {
        rc = bad(err, &d, "id", idv ? "must be a string" : "is required");
        goto out;
    }
    if ((rc = stripe_customer(call, &d, o, err)) < 0)
        goto out;
    if ((rc = stripe_str(&d, KEYS("description"), &s, err)) < 0)
        goto out;
    set_str(call, "summary", s);

    /* The amount that moved, in the currency's minor unit. */
    static const char *const amounts[] = {"amount_total", "amount_received",
                                          "amount_paid", "amount_due",
                                          "amount"};
    for (size_t i = 0; i < CS_ARRAY_LEN(amounts); i++) {
        json_t *v = obj_peek(&d, amounts[i]);
        if (!v)
            continue;
        if (!json_is_integer(v)) {
            rc = bad(err, &d, amounts[i], "must be an integer");
            goto out;
        }
        if (strcmp(type, "invoice.paid") == 0 &&
            strcmp(amounts[i], "amount_due") == 0)
            continue;
        json_object_set(custom, "amount", v);
        break;
    }
    json_t *cur = obj_peek(&d, "currency");
    if (cur && !json_is_string(cur)) {
        rc = bad(err, &d, "currency", "must be a string");
        goto out;
    }
    merge_rest(custom, &d);
out:
    obj_close(&d);
    return rc;
}

int cs_norm_stripe(const char *body, size_t n, const struct cs_norm_opts *o,
                   struct cs_event *ev, struct cs_err *err)
{
    json_t *root;
    ev_begin(ev, "stripe");
    int rc = parse_body(body, n, &root, err);
    if (rc < 0)
        return rc;
    struct obj t, data;
    obj_open(&t, root, "");
    obj_open(&data, NULL, "data");
    const char *id, *type;
    if ((rc = take_str(&t, "id", true, &id, err)) < 0 ||
        (rc = take_str(&t, "type", true, &type, err)) < 0)
        goto out;
    ev->event_type = xstrdup(type);
    ev->event_id = xstrdup(id);
    const char *outcome = stripe_outcome(type);
    if (!outcome) {
        ev_ignore(ev, "event_type_not_synced");
        goto out;
    }
    json_t *dj, *oj;
    if ((rc = take_obj(&t, "data", true, &dj, err)) < 0)
        goto out;
    obj_close(&data);
    obj_open(&data, dj, "data");
    if ((rc = take_obj(&data, "object", true, &oj, err)) < 0)
        goto out;
    ev->syncable = true;
    json_t *call = ev->call = call_new("stripe");
    json_t *custom = json_object_get(call, "custom");
    char *cid = xasprintf("stripe_%s", id);
    set_str(call, "call_id", cid);
    free(cid);
    json_object_set_new(call, "outcome", json_string(outcome));
    /* The event's creation time stands in for the call's start. */
    json_t *cr = obj_peek(&t, "created");
    if (cr && !json_is_integer(cr)) {
        rc = bad(err, &t, "created", "must be an integer");
        goto out;
    }
    if (cr && json_integer_value(cr) >= 0)
        set_ts(call, "started_at", json_integer_value(cr) * 1000);
    if ((rc = stripe_object(call, oj, type, o, err)) < 0)
        goto out;
    keep_rest(custom, "previous_attributes", &data);
    if (json_object_size(t.rest) > 0)
        json_object_set(custom, "event", t.rest);
out:
    obj_close(&data);
    obj_close(&t);
    json_decref(root);
    if (rc < 0)
        cs_event_release(ev);
    return rc;
}

/* ------------------------------------------------------------------------
 * Standard Webhooks: data is already a call document; check every field.
 */

static bool standard_syncable(const char *type)
{
    return strcmp(type, "call.ended") == 0 ||
           strcmp(type, "call.analyzed") == 0 ||
           strcmp(type, "call.completed") == 0;
}

static int std_strings(struct obj *s, json_t *dst, const char *const *keys,
                       struct cs_err *err)
{
    for (const char *const *k = keys; *k; k++) {
        const char *v;
        int rc = take_str(s, *k, false, &v, err);
        if (rc < 0)
            return rc;
        set_str(dst, *k, v);
    }
    return 0;
}

static int std_customer(json_t *call, struct obj *d,
                        const struct cs_norm_opts *o, struct cs_err *err)
{
    json_t *cj;
    int rc = take_obj(d, "customer", false, &cj, err);
    if (rc < 0 || !cj)
        return rc;
    struct obj c;
    obj_open(&c, cj, "data.customer");
    json_t *cust = json_object_get(call, "customer");
    char phone[17];
    bool hp;
    if ((rc = std_strings(&c, cust,
                          KEYS("name", "first_name", "last_name", "email",
                               "address", "city", "state"),
                          err)) < 0 ||
        (rc = take_phone(&c, "phone", opt_cc(o), phone, &hp, err)) < 0)
        goto out;
    if (hp)
        set_cust(call, "phone", phone);
    complete_name(call);
    keep_rest(json_object_get(call, "custom"), "customer", &c);
out:
    obj_close(&c);
    return rc;
}

static int std_appointment(json_t *call, struct obj *d, struct cs_err *err)
{
    json_t *aj;
    int rc = take_obj(d, "appointment", false, &aj, err);
    if (rc < 0 || !aj)
        return rc;
    struct obj a;
    obj_open(&a, aj, "data.appointment");
    json_t *ap = json_object();
    const char *date, *time;
    int64_t dm;
    bool hdm;
    if ((rc = std_strings(&a, ap, KEYS("title", "timezone", "service_type"),
                          err)) < 0 ||
        (rc = take_str(&a, "date", true, &date, err)) < 0 ||
        (rc = take_str(&a, "time", false, &time, err)) < 0 ||
        (rc = take_int(&a, "duration_min", false, &dm, &hdm, err)) < 0)
        goto out;
    if (!is_date(date)) {
        rc = bad(err, &a, "date", "must be a date 'yyyy-mm-dd'");
        goto out;
    }
    if (time && !is_hhmm(time)) {
        rc = bad(err, &a, "time", "must be a time 'hh:mm'");
        goto out;
    }
    if (hdm && dm < 0) {
        rc = bad(err, &a, "duration_min", "must not be negative");
        goto out;
    }
    set_str(ap, "date", date);
    set_str(ap, "time", time);
    json_object_set_new(ap, "duration_min",
                        hdm ? json_integer(dm) : json_null());
    json_object_set(call, "appointment", ap);
    keep_rest(json_object_get(call, "custom"), "appointment", &a);
out:
    json_decref(ap);
    obj_close(&a);
    return rc;
}

static int std_analysis(json_t *call, struct obj *d, struct cs_err *err)
{
    json_t *aj;
    int rc = take_obj(d, "analysis", false, &aj, err);
    if (rc < 0 || !aj)
        return rc;
    struct obj a;
    obj_open(&a, aj, "data.analysis");
    json_t *an = json_object();
    if ((rc = std_strings(&a, an,
                          KEYS("intent", "project_type", "timeline", "budget",
                               "urgency"),
                          err)) < 0)
        goto out;
    json_t *ls = obj_take(&a, "lead_score");
    int64_t score = 0;
    if (ls && (!json_is_integer(ls) || lead_score_of(ls, &score) < 0)) {
        rc = bad(err, &a, "lead_score", "must be an integer from 0 to 100");
        goto out;
    }
    json_object_set_new(an, "lead_score", ls ? json_integer(score)
                                             : json_null());
    json_object_set(call, "analysis", an);
    keep_rest(json_object_get(call, "custom"), "analysis", &a);
out:
    json_decref(an);
    obj_close(&a);
    return rc;
}

static int std_times(json_t *call, struct obj *d, struct cs_err *err)
{
    int64_t st, et, dur;
    bool hst, het, hd;
    int rc;
    if ((rc = take_time(d, "started_at", &st, &hst, err)) < 0 ||
        (rc = take_time(d, "ended_at", &et, &het, err)) < 0 ||
        (rc = take_int(d, "duration_s", false, &dur, &hd, err)) < 0)
        return rc;
    if (hd && dur < 0)
        return bad(err, d, "duration_s", "must not be negative");
    if (hst && het && et < st)
        return bad(err, d, "ended_at", "is before started_at");
    if (hst)
        set_ts(call, "started_at", st);
    if (het)
        set_ts(call, "ended_at", et);
    if (!hd && hst && het)
        dur = ms_to_s(et - st);
    json_object_set_new(call, "duration_s", json_integer(hd || (hst && het)
                                                             ? dur
                                                             : 0));
    return 0;
}

static int std_data(json_t *call, json_t *dj, const struct cs_norm_opts *o,
                    struct cs_event *ev, struct cs_err *err)
{
    struct obj d;
    obj_open(&d, dj, "data");
    json_t *custom = json_object_get(call, "custom");
    const char *id, *agent, *dir, *outcome, *sent, *src, *org;
    json_t *cj;
    int rc;
    if ((rc = take_str(&d, "call_id", true, &id, err)) < 0 ||
        (rc = take_str(&d, "agent_id", true, &agent, err)) < 0 ||
        (rc = take_str(&d, "source", false, &src, err)) < 0 ||
        (rc = take_str(&d, "org_id", false, &org, err)) < 0 ||
        (rc = take_str(&d, "direction", false, &dir, err)) < 0 ||
        (rc = take_str(&d, "outcome", false, &outcome, err)) < 0 ||
        (rc = take_str(&d, "sentiment", false, &sent, err)) < 0 ||
        (rc = std_strings(&d, call, KEYS("summary", "transcript",
                                         "recording_url"),
                          err)) < 0 ||
        (rc = std_customer(call, &d, o, err)) < 0 ||
        (rc = std_times(call, &d, err)) < 0 ||
        (rc = std_appointment(call, &d, err)) < 0 ||
        (rc = std_analysis(call, &d, err)) < 0 ||
        (rc = take_obj(&d, "custom", false, &cj, err)) < 0)
        goto out;
    set_str(call, "call_id", id);
    ev->agent_ref = xstrdup(agent);
    if (dir && strcmp(dir, "inbound") != 0 && strcmp(dir, "outbound") != 0) {
        rc = bad(err, &d, "direction", "must be 'inbound' or 'outbound'");
        goto out;
    }
    set_str(call, "direction", dir);
    if (sent) {
        char *l = xstrdup(sent);
        lower_in_place(l);
        bool ok = strcmp(l, "positive") == 0 || strcmp(l, "neutral") == 0 ||
                  strcmp(l, "negative") == 0 || strcmp(l, "unknown") == 0;
        free(l);
        if (!ok) {
            rc = bad(err, &d, "sentiment",
                     "must be positive, neutral, negative or unknown");
            goto out;
        }
    }
    set_sentiment(call, sent);
    if (!outcome || !outcome[0])
        outcome = json_is_null(json_object_get(call, "appointment"))
                      ? "completed"
                      : "appointment_booked";
    json_object_set_new(call, "outcome", json_string(outcome));
    /* The sender's own source and org are kept, not trusted. */
    if (src)
        json_object_set_new(custom, "source", json_string(src));
    if (org)
        json_object_set_new(custom, "org_id", json_string(org));
    if (cj)
        json_object_update_missing(custom, cj);
    merge_rest(custom, &d);
out:
    obj_close(&d);
    return rc;
}

int cs_norm_standard(const char *webhook_id, const char *body, size_t n,
                     const struct cs_norm_opts *o, struct cs_event *ev,
                     struct cs_err *err)
{
    json_t *root;
    ev_begin(ev, "standard");
    if (!webhook_id || !webhook_id[0])
        return cs_err_set(err, CS_EINVAL, "webhook-id", "is required");
    int rc = parse_body(body, n, &root, err);
    if (rc < 0)
        return rc;
    struct obj t;
    obj_open(&t, root, "");
    const char *type;
    json_t *dj;
    if ((rc = take_str(&t, "type", true, &type, err)) < 0)
        goto out;
    ev->event_type = xstrdup(type);
    ev->event_id = xstrdup(webhook_id);
    if (!standard_syncable(type)) {
        ev_ignore(ev, "event_type_not_synced");
        goto out;
    }
    if ((rc = take_obj(&t, "data", true, &dj, err)) < 0)
        goto out;
    ev->syncable = true;
    ev->call = call_new("standard");
    if ((rc = std_data(ev->call, dj, o, ev, err)) < 0)
        goto out;
    merge_rest(json_object_get(ev->call, "custom"), &t);
out:
    obj_close(&t);
    json_decref(root);
    if (rc < 0)
        cs_event_release(ev);
    return rc;
}

/* ------------------------------------------------------------------------
 * Outbound-call requests.
 */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

json_t *cs_norm_outbound(const char *body, size_t n,
                         const struct cs_norm_opts *o, struct cs_err *err)
{
    CS_UNUSED(o);
    json_t *root, *out = NULL;
    if (parse_body(body, n, &root, err) < 0)
        return NULL;
    struct obj t;
    obj_open(&t, root, "");
    const char *phone, *name;
    json_t *cd, *md;
    if (take_str(&t, "phone", true, &phone, err) < 0 ||
        take_str(&t, "contact_name", false, &name, err) < 0 ||
        take_obj(&t, "contact_data", false, &cd, err) < 0 ||
        take_obj(&t, "metadata", false, &md, err) < 0)
        goto out;
    if (!cs_phone_is_e164(phone)) {
        cs_err_set(err, CS_EINVAL, "phone",
                   "must be an e.164 number such as +14155550100");
        goto out;
    }
    if (name && utf8_chars(name) > 200) {
        cs_err_set(err, CS_EINVAL, "contact_name",
                   "is longer than 200 characters");
        goto out;
    }
    out = json_object();
    json_object_set_new(out, "phone", json_string(phone));
    set_str(out, "contact_name", name);
    json_object_set(out, "contact_data", cd ? cd : json_null());
    json_object_set(out, "metadata", md ? md : json_null());
    json_object_set(out, "extra", t.rest);
out:
    obj_close(&t);
    json_decref(root);
    return out;
}

/* ------------------------------------------------------------------------
 * Phone numbers, ids, shards, sync conditions.
 */

bool cs_phone_is_e164(const char *s)
{
    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    size_t n = strlen(s + 1);
    return n >= 8 && n <= 15 && strspn(s + 1, "0123456789") == n;
}

bool cs_phone_e164(const char *in, const char *country_code, char out[17])
{
    char d[40];
    size_t nd = 0;
    bool plus = false;
    out[0] = '\0';
    if (!in)
        return false;
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isdigit(c)) {
            if (nd + 1 >= sizeof(d))
                return false;
            d[nd++] = (char)c;
        } else if (c == '+' && nd == 0 && !plus) {
            plus = true;
        } else if (c != ' ' && c != '.' && c != '-' && c != '(' &&
                   c != ')' && c != '\t') {
            return false;
        }
    }
    d[nd] = '\0';
    const char *digits = d;
    char buf[40];
    if (plus) {
        /* already international */
    } else if (nd > 2 && d[0] == '0' && d[1] == '0') {
        digits = d + 2;
    } else {
        size_t ncc = country_code ? strlen(country_code) : 0;
        if (ncc == 0 || ncc > 3 ||
            strspn(country_code, "0123456789") != ncc || country_code[0] == '0')
            return false;
        if (strcmp(country_code, "1") == 0) {
            /* NANP: ten digits, or eleven with the leading 1. */
            if (nd == 11 && d[0] == '1')
                digits = d + 1;
            else if (nd != 10)
                return false;
            if (digits[0] < '2')
                return false;
        } else if (d[0] == '0') {
            digits = d + 1; /* trunk prefix */
        }
        size_t nrest = strlen(digits);
        if (ncc + nrest >= sizeof(buf))
            return false;
        memcpy(buf, country_code, ncc);
        memcpy(buf + ncc, digits, nrest + 1);
        digits = buf;
    }
    size_t nd_out = strlen(digits);
    if (nd_out > 15)
        return false;
    char tmp[17];
    tmp[0] = '+';
    memcpy(tmp + 1, digits, nd_out + 1);
    if (!cs_phone_is_e164(tmp))
        return false;
    memcpy(out, tmp, strlen(tmp) + 1);
    return true;
}

void cs_job_id(const char *call_id, const char *connection_id, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CS_ASSERT(ctx != NULL);
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, call_id, strlen(call_id)) &&
             EVP_DigestUpdate(ctx, "\n", 1) &&
             EVP_DigestUpdate(ctx, connection_id, strlen(connection_id)) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    CS_ASSERT(ok && mdlen >= 16);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = '\0';
}

unsigned cs_shard_of(const char *agent_id, unsigned nshards)
{
    if (nshards == 0 || !agent_id)
        return 0;
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)agent_id; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h % nshards;
}

static void set_why(const char **why, const char *v)
{
    if (why)
        *why = v;
}

bool cs_sync_conditions_match(const json_t *conditions, const json_t *call,
                              const char **why)
{
    set_why(why, NULL);
    if (!conditions)
        return true;
    if (!json_is_object(conditions)) {
        set_why(why, "invalid_conditions");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)conditions, k, v)
    {
        if (json_is_null(v))
            continue;
        if (strcmp(k, "call_outcome") == 0) {
            const char *oc =
                json_string_value(json_object_get(call, "outcome"));
            bool found = false;
            size_t i;
            json_t *e;
            if (json_is_string(v)) {
                found = oc && strcmp(oc, json_string_value(v)) == 0;
            } else if (json_is_array(v)) {
                json_array_foreach(v, i, e)
                {
                    if (!json_is_string(e)) {
                        set_why(why, "invalid_condition");
                        return false;
                    }
                    if (oc && strcmp(oc, json_string_value(e)) == 0)
                        found = true;
                }
            } else {
                set_why(why, "invalid_condition");
                return false;
            }
            if (!found) {
                set_why(why, "call_outcome");
                return false;
            }
        } else if (strcmp(k, "min_duration_seconds") == 0) {
            if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                set_why(why, "invalid_condition");
                return false;
            }
            json_t *d = json_object_get(call, "duration_s");
            double dur = json_is_number(d) ? json_number_value(d) : 0;
            if (dur < json_number_value(v)) {
                set_why(why, "min_duration_seconds");
                return false;
            }
        } else {
            set_why(why, "unknown_condition");
            return false;
        }
    }
    return true;
}
