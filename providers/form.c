/*
 * form.c - application/x-www-form-urlencoded bodies. See form.h.
 */
#include "form.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hex[] = "0123456789ABCDEF";

static bool plain(unsigned char c, bool brackets)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '*' || c == '-' || c == '.' ||
           c == '_' || (brackets && (c == '[' || c == ']'));
}

/* Encode s into out (which holds at least 3 * strlen(s) + 1 bytes). */
static void encode(const char *s, bool brackets, char *out)
{
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (plain(*p, brackets)) {
            *o++ = (char)*p;
        } else if (*p == ' ') {
            *o++ = '+';
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
}

char *form_escape(const char *s)
{
    char *out = xmalloc(strlen(s) * 3 + 1);
    encode(s, false, out);
    return out;
}

void form_init(struct form *f)
{
    buf_init(&f->b, FORM_MAX);
}

void form_release(struct form *f)
{
    buf_release(&f->b);
}

void form_add(struct form *f, const char *name, const char *value)
{
    char *n = xmalloc(strlen(name) * 3 + 1);
    char *v = xmalloc(strlen(value) * 3 + 1);
    encode(name, true, n);
    encode(value, false, v);
    /* Bodies are built from a job and a connection's config, both
     * bounded far below FORM_MAX: running over is a programming error. */
    int rc = buf_addf(&f->b, "%s%s=%s", f->b.len ? "&" : "", n, v);
    CS_ASSERT(rc == 0);
    free(n);
    free(v);
}

void form_add_json(struct form *f, const char *name, const json_t *v)
{
    char num[64];
    bool top = !name || !*name;
    if (json_is_object(v)) {
        const char *k;
        const json_t *m;
        json_object_foreach((json_t *)v, k, m) {
            char *sub = top ? xstrdup(k) : xasprintf("%s[%s]", name, k);
            form_add_json(f, sub, m);
            free(sub);
        }
    } else if (top) {
        return; /* a scalar needs a name */
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            char *sub = xasprintf("%s[%zu]", name, i);
            form_add_json(f, sub, e);
            free(sub);
        }
    } else if (json_is_string(v)) {
        form_add(f, name, json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        form_add(f, name, num);
    } else if (json_is_real(v)) {
        snprintf(num, sizeof(num), "%.15g", json_real_value(v));
        form_add(f, name, num);
    } else if (json_is_boolean(v)) {
        form_add(f, name, json_is_true(v) ? "true" : "false");
    }
}

const char *form_text(const struct form *f)
{
    return f->b.data ? f->b.data : "";
}

void prov_request_form(struct prov_request *rq, struct form *f)
{
    free(rq->body);
    size_t n = 0;
    rq->body = buf_take(&f->b, &n);
    if (!rq->body)
        rq->body = xstrdup("");
    rq->body_len = n;
    prov_request_header(rq, "Content-Type",
                        "application/x-www-form-urlencoded");
}
