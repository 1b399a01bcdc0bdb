/*
 * mapping.c - dotted paths, "{{path}}" templates and field mappings over
 * JSON documents. The formats are described in mapping.h.
 */
#include "mapping.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

#define MAP_MAX_TEXT (1024 * 1024) /* cap on one rendered string */

/* ------------------------------------------------------------------------
 * Paths.
 */

static const json_t *path_step(const json_t *node, const char *seg,
                               size_t len)
{
    char key[256];
    if (len == 0 || len >= sizeof(key))
        return NULL;
    memcpy(key, seg, len);
    key[len] = '\0';
    if (json_is_object(node))
        return json_object_get(node, key);
    if (json_is_array(node)) {
        for (size_t i = 0; i < len; i++)
            if (!isdigit((unsigned char)key[i]))
                return NULL;
        char *end;
        unsigned long long idx = strtoull(key, &end, 10);
        if (idx >= json_array_size(node))
            return NULL;
        return json_array_get(node, (size_t)idx);
    }
    return NULL;
}

const json_t *map_path(const json_t *root, const char *dotted)
{
    if (!root || !dotted || !*dotted)
        return NULL;
    const json_t *node = root;
    const char *p = dotted;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        node = path_step(node, p, len);
        if (!node)
            return NULL;
        if (!dot)
            return node;
        p = dot + 1;
    }
}

/* ------------------------------------------------------------------------
 * Templates.
 */

char *map_text(const json_t *v)
{
    if (!v || json_is_null(v))
        return xstrdup("");
    if (json_is_string(v))
        return xstrndup(json_string_value(v), json_string_length(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    CS_ASSERT(s != NULL);
    char *out = xstrdup(s);
    free(s);
    return out;
}

/* Trim spaces around a placeholder's path; into out (cap bytes). Returns
 * the trimmed length, or -1 when it does not fit. */
static int placeholder_path(const char *s, size_t len, char *out, size_t cap)
{
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= cap)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    return (int)len;
}

/* "{{path}}" and nothing else: the first "}}" closes at the very end and
 * no second "{{" opens before it. */
static bool is_whole_placeholder(const char *s, size_t n)
{
    if (n < 4 || strncmp(s, "{{", 2) != 0)
        return false;
    const char *close = strstr(s + 2, "}}");
    if (close != s + n - 2)
        return false;
    for (const char *p = s + 2; p + 1 < close; p++)
        if (p[0] == '{' && p[1] == '{')
            return false;
    return true;
}

static json_t *render_string(const char *s, const json_t *root,
                             const char *pos, struct cs_err *err)
{
    char path[256];
    size_t n = strlen(s);
    const char *open = strstr(s, "{{");
    if (!open)
        return json_string(s);
    /* The whole string is one placeholder: keep the value's type. */
    if (is_whole_placeholder(s, n)) {
        int len = placeholder_path(s + 2, n - 4, path, sizeof(path));
        if (len <= 0) {
            cs_err_set(err, CS_EINVAL, pos, "empty or too long placeholder "
                       "path in template '%.60s'", s);
            return NULL;
        }
        const json_t *v = map_path(root, path);
        return v ? json_deep_copy(v) : json_null();
    }
    struct buf b;
    buf_init(&b, MAP_MAX_TEXT);
    const char *p = s;
    while ((open = strstr(p, "{{")) != NULL) {
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            cs_err_set(err, CS_EINVAL, pos,
                       "unterminated '{{' in template '%.60s'", s);
            goto out_fail;
        }
        int len = placeholder_path(open + 2, (size_t)(close - open - 2),
                                   path, sizeof(path));
        if (len <= 0) {
            cs_err_set(err, CS_EINVAL, pos, "empty or too long placeholder "
                       "path in template '%.60s'", s);
            goto out_fail;
        }
        char *text = map_text(map_path(root, path));
        int rc = buf_add(&b, p, (size_t)(open - p));
        if (rc == 0)
            rc = buf_adds(&b, text);
        free(text);
        if (rc < 0) {
            cs_err_set(err, CS_E2BIG, pos, "rendered template is too long");
            goto out_fail;
        }
        p = close + 2;
    }
    if (buf_adds(&b, p) < 0) {
        cs_err_set(err, CS_E2BIG, pos, "rendered template is too long");
        goto out_fail;
    }
    json_t *out = json_stringn(b.data ? b.data : "", b.len);
    buf_release(&b);
    return out;
out_fail:
    buf_release(&b);
    return NULL;
}

static json_t *render_at(const json_t *t, const json_t *root, char *pos,
                         size_t poslen, size_t cap, struct cs_err *err)
{
    if (json_is_string(t))
        return render_string(json_string_value(t), root, pos, err);
    if (json_is_object(t)) {
        json_t *out = json_object();
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)t, key, v) {
            snprintf(pos + poslen, cap - poslen, "%s%s", poslen ? "." : "",
                     key);
            json_t *r = render_at(v, root, pos, strlen(pos), cap, err);
            pos[poslen] = '\0';
            if (!r) {
                json_decref(out);
                return NULL;
            }
            json_object_set_new(out, key, r);
        }
        return out;
    }
    if (json_is_array(t)) {
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) {
            snprintf(pos + poslen, cap - poslen, "[%zu]", i);
            json_t *r = render_at(v, root, pos, strlen(pos), cap, err);
            pos[poslen] = '\0';
            if (!r) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, r);
        }
        return out;
    }
    return json_deep_copy(t);
}

json_t *map_render(const json_t *tmpl, const json_t *root,
                   struct cs_err *err)
{
    char pos[64] = "";
    if (!tmpl)
        return json_null();
    return render_at(tmpl, root, pos, 0, sizeof(pos), err);
}

/* ------------------------------------------------------------------------
 * Setting a dotted target.
 */

/* Set out[target] = v (stolen), creating intermediate objects. */
static int set_target(json_t *out, const char *target, json_t *v,
                      struct cs_err *err)
{
    json_t *node = out;
    const char *p = target;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0) {
            json_decref(v);
            return cs_err_set(err, CS_EINVAL, target,
                              "target has an empty path segment");
        }
        char *key = xstrndup(p, len);
        if (!dot) {
            json_object_set_new(node, key, v);
            free(key);
            return 0;
        }
        json_t *next = json_object_get(node, key);
        if (!next) {
            next = json_object();
            json_object_set_new(node, key, next);
        } else if (!json_is_object(next)) {
            free(key);
            json_decref(v);
            return cs_err_set(err, CS_EINVAL, target,
                              "target crosses a value that is not an object");
        }
        free(key);
        node = next;
        p = dot + 1;
    }
}

/* ------------------------------------------------------------------------
 * Typed values.
 */

/* Convert v to the declared type; NULL with err filled when it cannot. */
static json_t *convert(const json_t *v, const char *type,
                       const json_t *options, const char *target,
                       struct cs_err *err)
{
    if (!type || strcmp(type, "string") == 0 ||
        strcmp(type, "enumeration") == 0) {
        if (!type)
            return json_deep_copy(v);
        if (json_is_object(v) || json_is_array(v)) {
            cs_err_set(err, CS_EINVAL, target, "an %s cannot be a %s",
                       json_is_object(v) ? "object" : "array", type);
            return NULL;
        }
        char *text = map_text(v);
        if (strcmp(type, "enumeration") == 0 && json_is_array(options)) {
            bool found = false;
            size_t i;
            json_t *o;
            json_array_foreach(options, i, o)
                if (json_is_string(o) && strcmp(json_string_value(o),
                                                text) == 0)
                    found = true;
            if (!found) {
                cs_err_set(err, CS_EINVAL, target,
                           "'%.60s' is not one of the options", text);
                free(text);
                return NULL;
            }
        }
        json_t *out = json_string(text);
        free(text);
        return out;
    }
    if (strcmp(type, "number") == 0) {
        if (json_is_number(v))
            return json_deep_copy(v);
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            char *end;
            long long ll = strtoll(s, &end, 10);
            if (end != s && *end == '\0' && !isspace((unsigned char)*s))
                return json_integer(ll);
            double d = strtod(s, &end);
            if (end != s && *end == '\0' && !isspace((unsigned char)*s) &&
                isfinite(d))
                return json_real(d);
            cs_err_set(err, CS_EINVAL, target, "'%.60s' is not a number", s);
            return NULL;
        }
        cs_err_set(err, CS_EINVAL, target, "a %s is not a number",
                   json_is_boolean(v) ? "boolean" :
                   json_is_object(v) ? "object" : "array");
        return NULL;
    }
    if (strcmp(type, "boolean") == 0) {
        if (json_is_boolean(v))
            return json_deep_copy(v);
        if (json_is_integer(v) &&
            (json_integer_value(v) == 0 || json_integer_value(v) == 1))
            return json_boolean(json_integer_value(v) == 1);
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
                !strcmp(s, "1"))
                return json_true();
            if (!strcasecmp(s, "false") || !strcasecmp(s, "no") ||
                !strcmp(s, "0"))
                return json_false();
            cs_err_set(err, CS_EINVAL, target, "'%.60s' is not a boolean",
                       s);
            return NULL;
        }
        char *text = map_text(v);
        cs_err_set(err, CS_EINVAL, target, "'%.60s' is not a boolean", text);
        free(text);
        return NULL;
    }
    cs_err_set(err, CS_EINVAL, target,
               "unknown type '%.40s' (string, number, boolean, enumeration, "
               "conditional)", type);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Conditions: "path OP literal".
 */

enum cmp_op { OP_GT, OP_GE, OP_LT, OP_LE, OP_EQ, OP_NE };

struct cond {
    char path[128];
    enum cmp_op op;
    json_t *literal;           /* owned */
};

static int parse_cond(const char *s, struct cond *c, const char *target,
                      struct cs_err *err)
{
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    const char *start = p;
    while (*p && !isspace((unsigned char)*p) && !strchr("<>=!", *p))
        p++;
    size_t len = (size_t)(p - start);
    if (len == 0 || len >= sizeof(c->path))
        goto bad;
    memcpy(c->path, start, len);
    c->path[len] = '\0';
    while (isspace((unsigned char)*p))
        p++;
    if (p[0] == '>' && p[1] == '=') {
        c->op = OP_GE;
        p += 2;
    } else if (p[0] == '<' && p[1] == '=') {
        c->op = OP_LE;
        p += 2;
    } else if (p[0] == '=' && p[1] == '=') {
        c->op = OP_EQ;
        p += 2;
    } else if (p[0] == '!' && p[1] == '=') {
        c->op = OP_NE;
        p += 2;
    } else if (p[0] == '>') {
        c->op = OP_GT;
        p++;
    } else if (p[0] == '<') {
        c->op = OP_LT;
        p++;
    } else {
        goto bad;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\'' || *p == '"') {
        const char *close = strchr(p + 1, *p);
        if (!close)
            goto bad;
        c->literal = json_stringn(p + 1, (size_t)(close - p - 1));
        p = close + 1;
    } else if (strncmp(p, "true", 4) == 0) {
        c->literal = json_true();
        p += 4;
    } else if (strncmp(p, "false", 5) == 0) {
        c->literal = json_false();
        p += 5;
    } else if (strncmp(p, "null", 4) == 0) {
        c->literal = json_null();
        p += 4;
    } else {
        char *end;
        double d = strtod(p, &end);
        if (end == p || !isfinite(d))
            goto bad;
        c->literal = json_real(d);
        p = end;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p) {
        json_decref(c->literal);
        c->literal = NULL;
        goto bad;
    }
    return 0;
bad:
    return cs_err_set(err, CS_EINVAL, target,
                      "bad condition '%.60s' (want: path OP literal, OP one "
                      "of > >= < <= == !=)", s);
}

static bool as_number(const json_t *v, double *d)
{
    if (json_is_number(v)) {
        *d = json_number_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        *d = strtod(s, &end);
        return end != s && *end == '\0' && !isspace((unsigned char)*s) &&
               isfinite(*d);
    }
    return false;
}

static bool cmp_result(int c, enum cmp_op op)
{
    switch (op) {
    case OP_GT: return c > 0;
    case OP_GE: return c >= 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    }
    return false;
}

static bool cond_true(const struct cond *c, const json_t *root)
{
    const json_t *v = map_path(root, c->path);
    const json_t *lit = c->literal;
    if (json_is_number(lit)) {
        double a, b = json_number_value(lit);
        if (!v || !as_number(v, &a))
            return false;
        return cmp_result(a < b ? -1 : a > b ? 1 : 0, c->op);
    }
    if (json_is_string(lit)) {
        if (!json_is_string(v))
            return false;
        int r = strcmp(json_string_value(v), json_string_value(lit));
        return cmp_result(r < 0 ? -1 : r > 0 ? 1 : 0, c->op);
    }
    /* true, false, null: equality only. A missing value equals null. */
    if (c->op != OP_EQ && c->op != OP_NE)
        return false;
    bool eq = json_is_null(lit) ? (!v || json_is_null(v))
                                : (v && json_equal(v, lit));
    return c->op == OP_EQ ? eq : !eq;
}

static int apply_conditional(const json_t *m, const char *target,
                             const json_t *root, json_t *out,
                             struct cs_err *err)
{
    const json_t *conds = json_object_get(m, "conditions");
    if (!json_is_array(conds))
        return cs_err_set(err, CS_EINVAL, target,
                          "a conditional mapping needs a 'conditions' list");
    const json_t *chosen = NULL, *dflt = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(conds, i, c) {
        if (!json_is_object(c))
            return cs_err_set(err, CS_EINVAL, target,
                              "condition %zu is not an object", i);
        const json_t *ifs = json_object_get(c, "if");
        const json_t *then = json_object_get(c, "then");
        if (!ifs) {
            if (!json_object_get(c, "default"))
                return cs_err_set(err, CS_EINVAL, target, "condition %zu "
                                  "has neither 'if' nor 'default'", i);
            dflt = json_object_get(c, "default");
            continue;
        }
        if (!json_is_string(ifs))
            return cs_err_set(err, CS_EINVAL, target,
                              "condition %zu: 'if' is not a string", i);
        if (!then)
            return cs_err_set(err, CS_EINVAL, target,
                              "condition %zu has 'if' but no 'then'", i);
        struct cond cd = {0};
        if (parse_cond(json_string_value(ifs), &cd, target, err) < 0)
            return CS_EINVAL;
        if (!chosen && cond_true(&cd, root))
            chosen = then;
        json_decref(cd.literal);
    }
    if (!chosen)
        chosen = dflt;
    if (!chosen)
        return 0;
    return set_target(out, target, json_deep_copy(chosen), err);
}

/* ------------------------------------------------------------------------
 * One mapping.
 */

static const char *str_member(const json_t *o, const char *a, const char *b)
{
    const char *s = json_string_value(json_object_get(o, a));
    if (!s && b)
        s = json_string_value(json_object_get(o, b));
    return s;
}

static int apply_one(const json_t *m, const char *target, const json_t *root,
                     json_t *out, struct cs_err *err)
{
    if (!*target)
        return cs_err_set(err, CS_EINVAL, target, "target is empty");
    const json_t *jtype = json_object_get(m, "type");
    if (jtype && !json_is_string(jtype))
        return cs_err_set(err, CS_EINVAL, target, "type is not a string");
    const char *type = json_string_value(jtype);
    if ((type && strcmp(type, "conditional") == 0) ||
        (!type && json_object_get(m, "conditions")))
        return apply_conditional(m, target, root, out, err);
    if (type && strcmp(type, "computed") == 0)
        return cs_err_set(err, CS_EINVAL, target, "computed formulas are "
                          "not supported: use a lookup or conditional "
                          "mapping");
    const json_t *tmpl = json_object_get(m, "template");
    if (tmpl) {
        if (!json_is_string(tmpl))
            return cs_err_set(err, CS_EINVAL, target,
                              "template is not a string");
        json_t *v = map_render(tmpl, root, err);
        if (!v) {
            if (err)
                snprintf(err->field, sizeof(err->field), "%s", target);
            return CS_EINVAL;
        }
        if (json_is_null(v)) {
            json_decref(v);
            return 0;
        }
        if (type) {
            json_t *c = convert(v, type, json_object_get(m, "options"),
                                target, err);
            json_decref(v);
            if (!c)
                return CS_EINVAL;
            v = c;
        }
        return set_target(out, target, v, err);
    }
    const char *source = str_member(m, "source", "value");
    if (!source)
        return cs_err_set(err, CS_EINVAL, target, "mapping has no 'source', "
                          "'template' or 'conditions'");
    const json_t *map = json_object_get(m, "map");
    if (map && !json_is_object(map))
        return cs_err_set(err, CS_EINVAL, target, "'map' is not an object");
    /* Validate the type even when the source is missing, so a bad mapping
     * is found on the first call rather than the first call with data. */
    if (type && strcmp(type, "string") && strcmp(type, "number") &&
        strcmp(type, "boolean") && strcmp(type, "enumeration"))
        return cs_err_set(err, CS_EINVAL, target,
                          "unknown type '%.40s' (string, number, boolean, "
                          "enumeration, conditional)", type);
    const json_t *v = map_path(root, source);
    json_t *val;
    if (map) {
        const json_t *hit = NULL;
        if (v && !json_is_null(v)) {
            char *key = map_text(v);
            hit = json_object_get(map, key);
            free(key);
        }
        if (!hit)
            hit = json_object_get(m, "default");
        if (!hit)
            return 0;
        val = json_deep_copy(hit);
    } else {
        if (!v || json_is_null(v))
            return 0;
        val = json_deep_copy(v);
    }
    if (type) {
        json_t *c = convert(val, type, json_object_get(m, "options"), target,
                            err);
        json_decref(val);
        if (!c)
            return CS_EINVAL;
        val = c;
    }
    return set_target(out, target, val, err);
}

int map_apply(const json_t *mappings, const json_t *root, json_t *out,
              struct cs_err *err)
{
    CS_ASSERT(json_is_object(out));
    if (!mappings || json_is_null(mappings))
        return 0;
    if (json_is_object(mappings)) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)mappings, key, v) {
            int rc;
            if (json_is_string(v)) {
                json_t *m = json_pack("{s:s, s:s}", "source", key, "target",
                                      json_string_value(v));
                rc = apply_one(m, json_string_value(v), root, out, err);
                json_decref(m);
            } else if (json_is_object(v)) {
                rc = apply_one(v, key, root, out, err);
            } else {
                rc = cs_err_set(err, CS_EINVAL, key, "mapping is neither a "
                                "target name nor an object");
            }
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (!json_is_array(mappings))
        return cs_err_set(err, CS_EINVAL, "mappings",
                          "field mappings are neither a list nor an object");
    size_t i;
    json_t *m;
    json_array_foreach(mappings, i, m) {
        char where[32];
        snprintf(where, sizeof(where), "mappings[%zu]", i);
        if (!json_is_object(m))
            return cs_err_set(err, CS_EINVAL, where,
                              "mapping is not an object");
        const char *target = str_member(m, "target", "name");
        if (!target)
            return cs_err_set(err, CS_EINVAL, where,
                              "mapping has no 'target' (or 'name')");
        int rc = apply_one(m, target, root, out, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}
