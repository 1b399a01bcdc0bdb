/*
 * graphql.c - the sandbox's reader of GraphQL documents (graphql.h): the
 * operation (query or mutation, optionally named), its variable
 * definitions with their types, the root fields with their arguments
 * resolved against the request's variables, and the nested selections
 * with theirs (fields, aliases, arguments, inline fragments). Errors
 * read like graphql-ruby's: "Parse error on <what> at [line, col]".
 */
#include "graphql.h"
#include "buf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gql {
    const char *s;
    size_t pos;
    const json_t *vars;    /* the request's variables (an object) */
    json_t *declared;      /* name -> type text */
    json_t *used;          /* names used */
    char err[200];
};

static bool gql_fail(struct gql *g, const char *what)
{
    if (g->err[0])
        return false;
    int line = 1, col = 1;
    for (size_t i = 0; i < g->pos && g->s[i]; i++) {
        if (g->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(g->err, sizeof(g->err), "Parse error on %s at [%d, %d]", what,
             line, col);
    return false;
}

static void skip(struct gql *g)
{
    for (;;) {
        char c = g->s[g->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',') {
            g->pos++;
        } else if (c == '#') {
            while (g->s[g->pos] && g->s[g->pos] != '\n')
                g->pos++;
        } else {
            return;
        }
    }
}

static bool peek(struct gql *g, char c)
{
    skip(g);
    return g->s[g->pos] == c;
}

static bool expect(struct gql *g, char c)
{
    if (!peek(g, c)) {
        char what[16];
        snprintf(what, sizeof(what), "\"%c\"", g->s[g->pos] ? g->s[g->pos]
                                                            : '?');
        return gql_fail(g, g->s[g->pos] ? what : "end of input");
    }
    g->pos++;
    return true;
}

/* A name into out[64]; false (and a parse error) when there is none. */
static bool name(struct gql *g, char out[64])
{
    skip(g);
    const char *p = g->s + g->pos;
    if (!(isalpha((unsigned char)*p) || *p == '_'))
        return gql_fail(g, *p ? "an unexpected character" : "end of input");
    size_t n = 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_')
        n++;
    if (n >= 64)
        return gql_fail(g, "a name too long");
    memcpy(out, p, n);
    out[n] = '\0';
    g->pos += n;
    return true;
}

static bool at_word(struct gql *g, const char *w)
{
    skip(g);
    size_t n = strlen(w);
    const char *p = g->s + g->pos;
    return strncmp(p, w, n) == 0 && !isalnum((unsigned char)p[n]) &&
           p[n] != '_';
}

static json_t *value(struct gql *g);

static json_t *string_value(struct gql *g)
{
    g->pos++; /* the opening quote */
    struct buf b;
    buf_init(&b, 1 << 20);
    for (;;) {
        char c = g->s[g->pos];
        if (!c || c == '\n') {
            buf_release(&b);
            gql_fail(g, "an unterminated string");
            return NULL;
        }
        g->pos++;
        if (c == '"')
            break;
        if (c == '\\') {
            char e = g->s[g->pos++];
            const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
            const char *hit = e ? strchr(map, e) : NULL;
            if (hit && (hit - map) % 2 == 0) {
                c = hit[1];
            } else {
                buf_release(&b);
                gql_fail(g, "a bad escape");
                return NULL;
            }
        }
        if (buf_add(&b, &c, 1) < 0) {
            buf_release(&b);
            gql_fail(g, "a string too long");
            return NULL;
        }
    }
    size_t n;
    char *t = buf_take(&b, &n);
    json_t *v = json_stringn(t ? t : "", n);
    free(t);
    if (!v)
        gql_fail(g, "a string that is not UTF-8");
    return v;
}

static json_t *value(struct gql *g)
{
    skip(g);
    char c = g->s[g->pos];
    char n[64];
    if (c == '$') {
        g->pos++;
        if (!name(g, n))
            return NULL;
        if (!json_object_get(g->declared, n)) {
            char m[120];
            snprintf(m, sizeof(m), "\"$%s\" (a variable that is not "
                                   "declared)", n);
            gql_fail(g, m);
            return NULL;
        }
        json_object_set_new(g->used, n, json_true());
        const json_t *v = json_object_get(g->vars, n);
        return v ? json_incref((json_t *)v) : json_null();
    }
    if (c == '"')
        return string_value(g);
    if (c == '[') {
        g->pos++;
        json_t *a = json_array();
        while (!peek(g, ']')) {
            if (!g->s[g->pos]) {
                json_decref(a);
                gql_fail(g, "end of input");
                return NULL;
            }
            json_t *v = value(g);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        g->pos++;
        return a;
    }
    if (c == '{') {
        g->pos++;
        json_t *o = json_object();
        while (!peek(g, '}')) {
            json_t *v = NULL;
            if (!name(g, n) || !expect(g, ':') || !(v = value(g))) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, n, v);
        }
        g->pos++;
        return o;
    }
    if (c == '-' || isdigit((unsigned char)c)) {
        char *end;
        const char *p = g->s + g->pos;
        long long i = strtoll(p, &end, 10);
        if (*end == '.' || *end == 'e' || *end == 'E') {
            double d = strtod(p, &end);
            g->pos += (size_t)(end - p);
            return json_real(d);
        }
        g->pos += (size_t)(end - p);
        return json_integer(i);
    }
    if (!name(g, n))
        return NULL;
    if (strcmp(n, "true") == 0 || strcmp(n, "false") == 0)
        return json_boolean(n[0] == 't');
    if (strcmp(n, "null") == 0)
        return json_null();
    return json_string(n); /* an enum value */
}

/* (name: value ...) into a new object. */
static json_t *arguments(struct gql *g)
{
    json_t *args = json_object();
    if (!peek(g, '('))
        return args;
    g->pos++;
    char n[64];
    while (!peek(g, ')')) {
        json_t *v = NULL;
        if (!name(g, n) || !expect(g, ':') || !(v = value(g))) {
            json_decref(args);
            return NULL;
        }
        json_object_set_new(args, n, v);
    }
    g->pos++;
    return args;
}

/* A selection set into out: its fields ({"name", "alias", "args",
 * "fields"}, "fields" being the field's own selection, [] for a leaf);
 * inline fragments' fields join their parent's. */
static bool selection(struct gql *g, json_t *out, int depth)
{
    if (depth > 20)
        return gql_fail(g, "a selection nested too deep");
    if (!expect(g, '{'))
        return false;
    if (peek(g, '}'))
        return gql_fail(g, "\"}\" (an empty selection)");
    while (!peek(g, '}')) {
        char n[64], real[64];
        if (strncmp(g->s + g->pos, "...", 3) == 0) {
            g->pos += 3;
            if (at_word(g, "on") && (!name(g, n) || !name(g, n)))
                return false;
            if (!selection(g, out, depth + 1))
                return false;
            continue;
        }
        if (!name(g, n))
            return false;
        snprintf(real, sizeof(real), "%s", n);
        if (peek(g, ':')) {
            g->pos++;
            if (!name(g, real))
                return false;
        }
        json_t *args = arguments(g);
        if (!args)
            return false;
        json_t *sub = json_array();
        if (peek(g, '{') && !selection(g, sub, depth + 1)) {
            json_decref(args);
            json_decref(sub);
            return false;
        }
        json_array_append_new(out, json_pack("{s:s,s:s,s:o,s:o}", "name",
                                             real, "alias", n, "args", args,
                                             "fields", sub));
    }
    g->pos++;
    return true;
}

/* A type reference ("ID!", "[ItemsPageByColumnValuesQuery!]") into t. */
static bool type_ref(struct gql *g, struct buf *t)
{
    skip(g);
    if (g->s[g->pos] == '[') {
        g->pos++;
        if (buf_adds(t, "[") < 0 || !type_ref(g, t) || !expect(g, ']') ||
            buf_adds(t, "]") < 0)
            return gql_fail(g, "a bad type");
    } else {
        char n[64];
        if (!name(g, n) || buf_adds(t, n) < 0)
            return false;
    }
    if (peek(g, '!')) {
        g->pos++;
        if (buf_adds(t, "!") < 0)
            return false;
    }
    return true;
}

/* ($name: Type [= default] ...) into g->declared. */
static bool var_defs(struct gql *g)
{
    if (!peek(g, '('))
        return true;
    g->pos++;
    while (!peek(g, ')')) {
        char n[64];
        struct buf t;
        buf_init(&t, 256);
        if (!expect(g, '$') || !name(g, n) || !expect(g, ':') ||
            !type_ref(g, &t)) {
            buf_release(&t);
            return false;
        }
        char *ts = buf_take(&t, NULL);
        json_object_set_new(g->declared, n, json_string(ts ? ts : ""));
        free(ts);
        if (peek(g, '=')) {
            g->pos++;
            json_t *d = value(g);
            if (!d)
                return false;
            json_decref(d);
        }
    }
    g->pos++;
    return true;
}

int gql_read(const char *query, const json_t *vars, struct gql_doc *doc,
             char err[200])
{
    struct gql g = {.s = query,
                    .vars = vars,
                    .declared = json_object(),
                    .used = json_object()};
    doc->fields = json_array();
    doc->mutation = false;
    bool ok = true;
    if (at_word(&g, "mutation") || at_word(&g, "query")) {
        char op[64], opname[64];
        ok = name(&g, op);
        doc->mutation = ok && strcmp(op, "mutation") == 0;
        if (ok && !peek(&g, '(') && !peek(&g, '{'))
            ok = name(&g, opname);
        ok = ok && var_defs(&g);
    }
    ok = ok && selection(&g, doc->fields, 0);
    if (ok) {
        skip(&g);
        if (g.s[g.pos])
            ok = gql_fail(&g, "text after the operation");
    }
    json_decref(g.used);
    doc->declared = g.declared;
    if (!ok) {
        snprintf(err, 200, "%s", g.err);
        return -1;
    }
    return 0;
}

void gql_doc_release(struct gql_doc *doc)
{
    json_decref(doc->fields);
    json_decref(doc->declared);
    doc->fields = doc->declared = NULL;
}
