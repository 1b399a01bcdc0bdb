/*
 * soql.c - the part of SOQL the Salesforce emulation answers: a tokenizer,
 * a recursive-descent parser that checks the query against the sandbox's
 * objects (salesforce.h) and an evaluator over the stored records.
 *
 * Supported: SELECT field, ... FROM object [WHERE condition] [ORDER BY
 * field [ASC|DESC] [NULLS FIRST|LAST]] [LIMIT n]. Conditions compare a
 * field with a literal (= != <> < <= > >=), test membership ([NOT] IN
 * (...)), negate (NOT) and group ((...)); AND and OR may not be mixed
 * without parentheses, as in SOQL. Literals: 'strings' with SOQL's escape
 * sequences, numbers, true, false, null, dates (2026-02-20) and datetimes
 * (2026-02-20T20:00:00Z, with a fraction or an offset). Keywords and field
 * names are case-insensitive; text comparisons too, ids are not.
 *
 * Errors are Salesforce's: MALFORMED_QUERY with the query, a caret and
 * "unexpected token: '...'" for anything outside this grammar (LIKE,
 * functions, relationship paths, sub-queries included), INVALID_TYPE for
 * an unknown object, INVALID_FIELD for an unknown field, a field that
 * cannot be filtered (long text areas) or a literal of the wrong type.
 */
#include "salesforce.h"
#include "buf.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum tok {
    K_EOF,
    K_IDENT,
    K_STRING,
    K_NUMBER,
    K_DATE,
    K_DATETIME,
    K_LPAREN,
    K_RPAREN,
    K_COMMA,
    K_OP,
    K_BAD,
};

enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

enum lit_kind { L_STR, L_NUM, L_BOOL, L_NULL, L_DATE, L_DATETIME };

struct lit {
    enum lit_kind kind;
    char *s;       /* L_STR, L_DATE (YYYY-MM-DD) */
    double num;
    bool b;
    int64_t ms;    /* L_DATETIME */
};

enum node_kind { N_AND, N_OR, N_NOT, N_CMP, N_IN };

struct node {
    enum node_kind kind;
    struct node **kids;
    size_t nkids;
    const struct sf_field *field;
    char *fname;
    enum op op;
    bool negate;   /* NOT IN */
    struct lit *lits;
    size_t nlits;
};

struct soql {
    const struct sf_object *obj;
    char **select;          /* names as answered */
    const struct sf_field **sfields;
    size_t nselect;
    struct node *where;
    const struct sf_field *order;
    char *order_name;
    bool desc;
    bool nulls_last;
    long long limit;        /* -1: none */
};

struct parser {
    const char *text;
    size_t pos;
    /* the current token */
    enum tok tok;
    size_t start, len;
    char *sval;             /* decoded string, or the token's text */
    enum op op;
    /* the first error */
    bool failed;
    char *code;             /* char[40] */
    char **msg;
    struct soql *q;
};

/* ---- Errors --------------------------------------------------------- */

static void fail_with(struct parser *p, const char *code, char *msg)
{
    if (p->failed) {
        free(msg);
        return;
    }
    p->failed = true;
    snprintf(p->code, 40, "%s", code);
    *p->msg = msg;
}

/* MALFORMED_QUERY at the current token, in Salesforce's layout. */
static void unexpected(struct parser *p)
{
    int col = (int)p->start + 1;
    fail_with(p, "MALFORMED_QUERY",
              p->tok == K_EOF
                  ? xasprintf("\n%s\n%*s^\nERROR at Row:1:Column:%d\n"
                              "unexpected token: <EOF>",
                              p->text, col - 1, "", col)
                  : xasprintf("\n%s\n%*s^\nERROR at Row:1:Column:%d\n"
                              "unexpected token: '%.*s'",
                              p->text, col - 1, "", col, (int)p->len,
                              p->text + p->start));
}

/* ---- Tokens --------------------------------------------------------- */

static bool is_ident_start(int c)
{
    return isalpha(c) || c == '_';
}

static bool is_ident_char(int c)
{
    return isalnum(c) || c == '_' || c == '.';
}

/* A quoted string at p->pos (the quote): decode SOQL's escapes. */
static void lex_string(struct parser *p)
{
    const char *t = p->text;
    size_t i = p->pos + 1;
    struct buf b;
    buf_init(&b, 1 << 20);
    while (t[i] && t[i] != '\'') {
        char c = t[i];
        if (c == '\\') {
            char e = t[i + 1];
            int rc = 0;
            switch (e) {
            case 'n': case 'N': rc = buf_adds(&b, "\n"); break;
            case 'r': case 'R': rc = buf_adds(&b, "\r"); break;
            case 't': case 'T': rc = buf_adds(&b, "\t"); break;
            case 'b': case 'B': rc = buf_adds(&b, "\b"); break;
            case 'f': case 'F': rc = buf_adds(&b, "\f"); break;
            case '"': rc = buf_adds(&b, "\""); break;
            case '\'': rc = buf_adds(&b, "'"); break;
            case '\\': rc = buf_adds(&b, "\\"); break;
            case 'u': case 'U': {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    int h = t[i + 2 + k];
                    if (!isxdigit(h)) {
                        rc = -1;
                        break;
                    }
                    v = v * 16 + (unsigned)(isdigit(h) ? h - '0'
                                                       : tolower(h) - 'a' + 10);
                }
                if (rc == 0) {
                    /* UTF-8 for a code point below 0x10000 */
                    char u[4];
                    size_t n;
                    if (v < 0x80) {
                        u[0] = (char)v;
                        n = 1;
                    } else if (v < 0x800) {
                        u[0] = (char)(0xc0 | (v >> 6));
                        u[1] = (char)(0x80 | (v & 0x3f));
                        n = 2;
                    } else {
                        u[0] = (char)(0xe0 | (v >> 12));
                        u[1] = (char)(0x80 | ((v >> 6) & 0x3f));
                        u[2] = (char)(0x80 | (v & 0x3f));
                        n = 3;
                    }
                    rc = buf_add(&b, u, n);
                    i += 4;
                }
                break;
            }
            default:
                rc = -1; /* a backslash in any other context */
            }
            if (rc) {
                buf_release(&b);
                p->tok = K_BAD;
                p->start = i;
                p->len = 2;
                return;
            }
            i += 2;
            continue;
        }
        if (buf_add(&b, &c, 1)) {
            buf_release(&b);
            p->tok = K_BAD;
            return;
        }
        i++;
    }
    if (!t[i]) {
        buf_release(&b);
        p->tok = K_BAD;
        p->len = i - p->start;
        return;
    }
    p->tok = K_STRING;
    p->len = i + 1 - p->start;
    p->sval = buf_take(&b, NULL);
    if (!p->sval)
        p->sval = xstrdup("");
    p->pos = i + 1;
}

static bool digits_at(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* A number, a date or a datetime at p->pos. */
static void lex_literal(struct parser *p)
{
    const char *t = p->text;
    size_t i = p->pos;
    while (t[i] && (isalnum((unsigned char)t[i]) || t[i] == '-' ||
                    t[i] == ':' || t[i] == '.' || t[i] == '+'))
        i++;
    p->len = i - p->start;
    p->sval = xstrndup(t + p->start, p->len);
    p->pos = i;
    const char *s = p->sval;
    if (p->len == 10 && digits_at(s, 4) && s[4] == '-' && digits_at(s + 5, 2) &&
        s[7] == '-' && digits_at(s + 8, 2)) {
        p->tok = K_DATE;
        return;
    }
    int64_t ms;
    if (p->len > 10 && s[10] == 'T' && sf_parse_datetime(s, &ms)) {
        p->tok = K_DATETIME;
        return;
    }
    char *end;
    strtod(s, &end);
    p->tok = end != s && *end == '\0' ? K_NUMBER : K_BAD;
}

static void next(struct parser *p)
{
    free(p->sval);
    p->sval = NULL;
    const char *t = p->text;
    while (t[p->pos] && isspace((unsigned char)t[p->pos]))
        p->pos++;
    p->start = p->pos;
    p->len = 1;
    char c = t[p->pos];
    if (!c) {
        p->tok = K_EOF;
        p->len = 0;
        return;
    }
    if (is_ident_start((unsigned char)c)) {
        size_t i = p->pos;
        while (is_ident_char((unsigned char)t[i]))
            i++;
        p->tok = K_IDENT;
        p->len = i - p->start;
        p->sval = xstrndup(t + p->start, p->len);
        p->pos = i;
        return;
    }
    if (c == '\'') {
        lex_string(p);
        return;
    }
    if (isdigit((unsigned char)c) ||
        (c == '-' && isdigit((unsigned char)t[p->pos + 1]))) {
        lex_literal(p);
        return;
    }
    p->pos++;
    switch (c) {
    case '(': p->tok = K_LPAREN; return;
    case ')': p->tok = K_RPAREN; return;
    case ',': p->tok = K_COMMA; return;
    case '=': p->tok = K_OP; p->op = OP_EQ; return;
    case '!':
    case '<':
    case '>': {
        char d = t[p->pos];
        p->tok = K_OP;
        if (c == '!' && d == '=') {
            p->op = OP_NE;
        } else if (c == '<' && d == '>') {
            p->op = OP_NE;
        } else if (c == '<' && d == '=') {
            p->op = OP_LE;
        } else if (c == '>' && d == '=') {
            p->op = OP_GE;
        } else if (c == '<') {
            p->op = OP_LT;
            return;
        } else if (c == '>') {
            p->op = OP_GT;
            return;
        } else {
            p->tok = K_BAD;
            return;
        }
        p->pos++;
        p->len = 2;
        return;
    }
    default:
        p->tok = K_BAD;
    }
}

static bool is_kw(const struct parser *p, const char *kw)
{
    return p->tok == K_IDENT && strcasecmp(p->sval, kw) == 0;
}

static bool accept_kw(struct parser *p, const char *kw)
{
    if (!is_kw(p, kw))
        return false;
    next(p);
    return true;
}

static bool expect_kw(struct parser *p, const char *kw)
{
    if (accept_kw(p, kw))
        return true;
    unexpected(p);
    return false;
}

/* Words SOQL reserves: never a field name here. */
static bool reserved(const char *w)
{
    static const char *const kws[] = {
        "select", "from", "where", "and", "or", "not", "in", "order",
        "by", "asc", "desc", "nulls", "first", "last", "limit", "like",
        "includes", "excludes", "group", "having", "offset", "true",
        "false", "null", "with", "using", "typeof", "for"};
    for (size_t i = 0; i < CS_ARRAY_LEN(kws); i++)
        if (strcasecmp(w, kws[i]) == 0)
            return true;
    return false;
}

/* ---- Fields --------------------------------------------------------- */

static const struct sf_field *field_or_fail(struct parser *p)
{
    size_t after = p->pos;
    while (isspace((unsigned char)p->text[after]))
        after++;
    /* A function (COUNT(), MAX(...)) is not a field. */
    if (p->tok != K_IDENT || reserved(p->sval) || strchr(p->sval, '.') ||
        p->text[after] == '(') {
        unexpected(p);
        return NULL;
    }
    const struct sf_field *f = sf_field_find(p->q->obj, p->sval);
    if (!f) {
        int col = (int)p->start + 1;
        fail_with(p, "INVALID_FIELD",
                  xasprintf("\n%s\n%*s^\nERROR at Row:1:Column:%d\n"
                            "No such column '%s' on entity '%s'. If you are "
                            "attempting to use a custom field, be sure to "
                            "append the '__c' after the custom field name. "
                            "Please reference your WSDL or the describe call "
                            "for the appropriate names.",
                            p->text, col - 1, "", col, p->sval,
                            p->q->obj->name));
        return NULL;
    }
    return f;
}

/* ---- Literals ------------------------------------------------------- */

static void lit_release(struct lit *l)
{
    free(l->s);
}

static bool parse_lit(struct parser *p, struct lit *out)
{
    memset(out, 0, sizeof(*out));
    switch (p->tok) {
    case K_STRING:
        out->kind = L_STR;
        out->s = xstrdup(p->sval);
        break;
    case K_NUMBER:
        out->kind = L_NUM;
        out->num = strtod(p->sval, NULL);
        break;
    case K_DATE:
        out->kind = L_DATE;
        out->s = xstrdup(p->sval);
        break;
    case K_DATETIME:
        out->kind = L_DATETIME;
        sf_parse_datetime(p->sval, &out->ms);
        break;
    case K_IDENT:
        if (strcasecmp(p->sval, "true") == 0 ||
            strcasecmp(p->sval, "false") == 0) {
            out->kind = L_BOOL;
            out->b = strcasecmp(p->sval, "true") == 0;
            break;
        }
        if (strcasecmp(p->sval, "null") == 0) {
            out->kind = L_NULL;
            break;
        }
        unexpected(p);
        return false;
    default:
        unexpected(p);
        return false;
    }
    next(p);
    return true;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n != 15 && n != 18)
        return false;
    for (const char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c))
            return false;
    return true;
}

/* Whether literal l may be compared with field f; fails p if not. */
static bool lit_fits(struct parser *p, const struct sf_field *f,
                     const char *fname, const struct lit *l)
{
    if (l->kind == L_NULL || f->type == SF_T_CUSTOM)
        return true;
    const char *want = NULL;
    bool quoted = false;
    switch (f->type) {
    case SF_T_ID:
    case SF_T_REF:
        if (l->kind == L_STR && !id_ok(l->s)) {
            fail_with(p, "INVALID_QUERY_FILTER_OPERATOR",
                      xasprintf("\n%s\n^\nERROR at Row:1:Column:1\n"
                                "invalid ID field: %s", p->text, l->s));
            return false;
        }
        want = l->kind == L_STR ? NULL : "id";
        quoted = true;
        break;
    case SF_T_STRING:
    case SF_T_TEXTAREA:
    case SF_T_EMAIL:
    case SF_T_PHONE:
    case SF_T_PICK:
        want = l->kind == L_STR ? NULL : "string";
        quoted = true;
        break;
    case SF_T_BOOL:
        want = l->kind == L_BOOL ? NULL : "boolean";
        break;
    case SF_T_INT:
    case SF_T_NUM:
        want = l->kind == L_NUM ? NULL : "number";
        break;
    case SF_T_DATE:
        want = l->kind == L_DATE ? NULL : "date";
        break;
    case SF_T_DATETIME:
        want = l->kind == L_DATETIME ? NULL : "dateTime";
        break;
    case SF_T_CUSTOM:
        break;
    }
    if (!want)
        return true;
    fail_with(p, "INVALID_FIELD",
              xasprintf("\n%s\n^\nERROR at Row:1:Column:1\nvalue of filter "
                        "criterion for field '%s' must be of type %s and "
                        "should %sbe enclosed in quotes",
                        p->text, fname, want, quoted ? "" : "not "));
    return false;
}

/* ---- Conditions ----------------------------------------------------- */

static void node_free(struct node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    for (size_t i = 0; i < n->nlits; i++)
        lit_release(&n->lits[i]);
    free(n->lits);
    free(n->fname);
    free(n);
}

static void add_kid(struct node *n, struct node *k)
{
    n->kids = xrealloc(n->kids, (n->nkids + 1) * sizeof(*n->kids));
    n->kids[n->nkids++] = k;
}

static void add_lit(struct node *n, const struct lit *l)
{
    n->lits = xrealloc(n->lits, (n->nlits + 1) * sizeof(*n->lits));
    n->lits[n->nlits++] = *l;
}

static struct node *parse_cond(struct parser *p);

static struct node *parse_comparison(struct parser *p)
{
    const struct sf_field *f = field_or_fail(p);
    if (!f)
        return NULL;
    if (!(f->flags & SF_FILTER)) {
        fail_with(p, "INVALID_FIELD",
                  xasprintf("\n%s\n%*s^\nERROR at Row:1:Column:%d\nfield "
                            "'%s' can not be filtered in a query call",
                            p->text, (int)p->start, "", (int)p->start + 1,
                            f->name));
        return NULL;
    }
    struct node *n = xcalloc(1, sizeof(*n));
    n->field = f;
    n->fname = xstrdup(p->sval);
    next(p);
    bool not_in = false;
    if (is_kw(p, "not")) {
        next(p);
        not_in = true;
        if (!is_kw(p, "in")) {
            unexpected(p);
            node_free(n);
            return NULL;
        }
    }
    if (accept_kw(p, "in")) {
        n->kind = N_IN;
        n->negate = not_in;
        if (p->tok != K_LPAREN) {
            unexpected(p);
            node_free(n);
            return NULL;
        }
        next(p);
        for (;;) {
            struct lit l;
            if (!parse_lit(p, &l)) {
                node_free(n);
                return NULL;
            }
            add_lit(n, &l);
            if (!lit_fits(p, f, n->fname, &l)) {
                node_free(n);
                return NULL;
            }
            if (p->tok == K_COMMA) {
                next(p);
                continue;
            }
            if (p->tok == K_RPAREN) {
                next(p);
                break;
            }
            unexpected(p);
            node_free(n);
            return NULL;
        }
        return n;
    }
    if (p->tok != K_OP) {
        unexpected(p);
        node_free(n);
        return NULL;
    }
    n->kind = N_CMP;
    n->op = p->op;
    next(p);
    struct lit l;
    if (!parse_lit(p, &l)) {
        node_free(n);
        return NULL;
    }
    add_lit(n, &l);
    if (!lit_fits(p, f, n->fname, &l)) {
        node_free(n);
        return NULL;
    }
    return n;
}

static struct node *parse_unary(struct parser *p)
{
    if (is_kw(p, "not")) {
        next(p);
        struct node *k = parse_unary(p);
        if (!k)
            return NULL;
        struct node *n = xcalloc(1, sizeof(*n));
        n->kind = N_NOT;
        add_kid(n, k);
        return n;
    }
    if (p->tok == K_LPAREN) {
        next(p);
        struct node *n = parse_cond(p);
        if (!n)
            return NULL;
        if (p->tok != K_RPAREN) {
            unexpected(p);
            node_free(n);
            return NULL;
        }
        next(p);
        return n;
    }
    return parse_comparison(p);
}

static struct node *parse_cond(struct parser *p)
{
    struct node *first = parse_unary(p);
    if (!first)
        return NULL;
    if (!is_kw(p, "and") && !is_kw(p, "or"))
        return first;
    bool and = is_kw(p, "and");
    struct node *n = xcalloc(1, sizeof(*n));
    n->kind = and ? N_AND : N_OR;
    add_kid(n, first);
    while (is_kw(p, and ? "and" : "or")) {
        next(p);
        struct node *k = parse_unary(p);
        if (!k) {
            node_free(n);
            return NULL;
        }
        add_kid(n, k);
    }
    if (is_kw(p, and ? "or" : "and")) {
        /* SOQL wants parentheses to mix AND and OR. */
        unexpected(p);
        node_free(n);
        return NULL;
    }
    return n;
}

/* ---- The query ------------------------------------------------------ */

void soql_free(struct soql *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->nselect; i++)
        free(q->select[i]);
    free(q->select);
    free(q->sfields);
    node_free(q->where);
    free(q->order_name);
    free(q);
}

static bool parse_select(struct parser *p)
{
    /* The object comes after the fields: find it first. */
    size_t save_pos = p->pos, save_start = p->start, save_len = p->len;
    char *save_val = p->sval ? xstrdup(p->sval) : NULL;
    enum tok save_tok = p->tok;
    while (p->tok != K_EOF && p->tok != K_BAD && !is_kw(p, "from"))
        next(p);
    if (!accept_kw(p, "from")) {
        free(save_val);
        unexpected(p);
        return false;
    }
    if (p->tok != K_IDENT || reserved(p->sval)) {
        free(save_val);
        unexpected(p);
        return false;
    }
    p->q->obj = sf_object_find(p->sval);
    if (!p->q->obj) {
        int col = (int)p->start + 1;
        fail_with(p, "INVALID_TYPE",
                  xasprintf("\n%s\n%*s^\nERROR at Row:1:Column:%d\nsObject "
                            "type '%s' is not supported. If you are "
                            "attempting to use a custom object, be sure to "
                            "append the '__c' after the entity name. Please "
                            "reference your WSDL or the describe call for "
                            "the appropriate names.",
                            p->text, col - 1, "", col, p->sval));
        free(save_val);
        return false;
    }
    /* Back to the fields. */
    free(p->sval);
    p->sval = save_val;
    p->pos = save_pos;
    p->start = save_start;
    p->len = save_len;
    p->tok = save_tok;
    for (;;) {
        const struct sf_field *f = field_or_fail(p);
        if (!f)
            return false;
        const char *name = f->type == SF_T_CUSTOM ? p->sval : f->name;
        for (size_t i = 0; i < p->q->nselect; i++)
            if (strcasecmp(p->q->select[i], name) == 0) {
                fail_with(p, "MALFORMED_QUERY",
                          xasprintf("duplicate field selected: %s", name));
                return false;
            }
        size_t n = p->q->nselect + 1;
        p->q->select = xrealloc(p->q->select, n * sizeof(*p->q->select));
        p->q->sfields = xrealloc(p->q->sfields, n * sizeof(*p->q->sfields));
        p->q->select[n - 1] = xstrdup(name);
        p->q->sfields[n - 1] = f;
        p->q->nselect = n;
        next(p);
        if (p->tok != K_COMMA)
            break;
        next(p);
    }
    if (!expect_kw(p, "from"))
        return false;
    next(p); /* the object, found above */
    return true;
}

struct soql *soql_parse(const char *text, char code[40], char **msg)
{
    struct parser p = {0};
    p.text = text;
    p.code = code;
    p.msg = msg;
    p.q = xcalloc(1, sizeof(*p.q));
    p.q->limit = -1;
    *msg = NULL;
    code[0] = '\0';
    next(&p);
    if (!expect_kw(&p, "select") || !parse_select(&p))
        goto out_fail;
    if (accept_kw(&p, "where")) {
        p.q->where = parse_cond(&p);
        if (!p.q->where)
            goto out_fail;
    }
    if (accept_kw(&p, "order")) {
        if (!expect_kw(&p, "by"))
            goto out_fail;
        const struct sf_field *f = field_or_fail(&p);
        if (!f)
            goto out_fail;
        p.q->order = f;
        p.q->order_name = xstrdup(p.sval);
        next(&p);
        if (accept_kw(&p, "desc"))
            p.q->desc = true;
        else
            accept_kw(&p, "asc");
        /* ASC puts nulls first, DESC last, unless told. */
        p.q->nulls_last = p.q->desc;
        if (accept_kw(&p, "nulls")) {
            if (accept_kw(&p, "last")) {
                p.q->nulls_last = true;
            } else if (accept_kw(&p, "first")) {
                p.q->nulls_last = false;
            } else {
                unexpected(&p);
                goto out_fail;
            }
        }
    }
    if (accept_kw(&p, "limit")) {
        char *end = NULL;
        long long n = p.tok == K_NUMBER ? strtoll(p.sval, &end, 10) : -1;
        if (!end || *end || n < 0 || n > 50000) {
            unexpected(&p);
            goto out_fail;
        }
        p.q->limit = n;
        next(&p);
    }
    if (p.tok != K_EOF) {
        unexpected(&p);
        goto out_fail;
    }
    free(p.sval);
    return p.q;
out_fail:
    if (!p.failed)
        unexpected(&p);
    free(p.sval);
    soql_free(p.q);
    return NULL;
}

/* ---- Evaluation ----------------------------------------------------- */

/* Compare a record's value with a literal: <0, 0, >0, or false when they
 * cannot be compared (a null, or different types). */
static bool compare(const struct sf_field *f, const json_t *v,
                    const struct lit *l, int *cmp)
{
    switch (l->kind) {
    case L_STR: {
        const char *s = json_string_value(v);
        if (!s)
            return false;
        bool exact = f->type == SF_T_ID || f->type == SF_T_REF;
        *cmp = exact ? strcmp(s, l->s) : strcasecmp(s, l->s);
        return true;
    }
    case L_NUM: {
        double d;
        if (json_is_number(v))
            d = json_number_value(v);
        else if (json_is_string(v))
            d = strtod(json_string_value(v), NULL);
        else
            return false;
        *cmp = d < l->num ? -1 : d > l->num ? 1 : 0;
        return true;
    }
    case L_BOOL:
        if (!json_is_boolean(v))
            return false;
        *cmp = json_is_true(v) == l->b ? 0 : json_is_true(v) ? 1 : -1;
        return true;
    case L_DATE: {
        const char *s = json_string_value(v);
        if (!s)
            return false;
        *cmp = strncmp(s, l->s, 10);
        return true;
    }
    case L_DATETIME: {
        int64_t ms;
        if (!sf_parse_datetime(json_string_value(v), &ms))
            return false;
        *cmp = ms < l->ms ? -1 : ms > l->ms ? 1 : 0;
        return true;
    }
    case L_NULL:
        return false;
    }
    return false;
}

static bool is_null(const json_t *v)
{
    return !v || json_is_null(v);
}

static bool cmp_holds(const struct sf_field *f, const json_t *v,
                      const struct lit *l, enum op op)
{
    if (l->kind == L_NULL) {
        if (op == OP_EQ)
            return is_null(v);
        if (op == OP_NE)
            return !is_null(v);
        return false;
    }
    int c;
    if (!compare(f, v, l, &c))
        return op == OP_NE; /* SOQL: a null is "not equal" to a value */
    switch (op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    case OP_GE: return c >= 0;
    }
    return false;
}

static bool holds(const struct node *n, const json_t *rec)
{
    switch (n->kind) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++)
            if (!holds(n->kids[i], rec))
                return false;
        return true;
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++)
            if (holds(n->kids[i], rec))
                return true;
        return false;
    case N_NOT:
        return !holds(n->kids[0], rec);
    case N_CMP:
        return cmp_holds(n->field, sf_record_get(rec, n->fname), &n->lits[0],
                         n->op);
    case N_IN: {
        const json_t *v = sf_record_get(rec, n->fname);
        bool in = false;
        for (size_t i = 0; i < n->nlits && !in; i++)
            in = cmp_holds(n->field, v, &n->lits[i], OP_EQ);
        return n->negate ? !in : in;
    }
    }
    return false;
}

/* Order two records by the query's ORDER BY field. */
static int order_cmp(const struct soql *q, const json_t *a, const json_t *b)
{
    const json_t *va = sf_record_get(a, q->order_name);
    const json_t *vb = sf_record_get(b, q->order_name);
    if (is_null(va) || is_null(vb)) {
        if (is_null(va) && is_null(vb))
            return 0;
        int nulls_first = is_null(va) ? -1 : 1;
        return q->nulls_last ? -nulls_first : nulls_first;
    }
    int c = 0;
    int64_t ma, mb;
    if (q->order->type == SF_T_DATETIME && sf_parse_datetime(
            json_string_value(va), &ma) && sf_parse_datetime(
            json_string_value(vb), &mb))
        c = ma < mb ? -1 : ma > mb;
    else if (json_is_number(va) && json_is_number(vb))
        c = json_number_value(va) < json_number_value(vb)
                ? -1
                : json_number_value(va) > json_number_value(vb);
    else if (json_is_string(va) && json_is_string(vb))
        c = strcasecmp(json_string_value(va), json_string_value(vb));
    else if (json_is_boolean(va) && json_is_boolean(vb))
        c = json_is_true(va) - json_is_true(vb);
    return q->desc ? -c : c;
}

struct hit {
    const json_t *rec;
    size_t seq; /* creation order */
};

/* Equal keys: the later created first when descending, else the
 * earlier. */
static int hit_cmp(const struct soql *q, const struct hit *a,
                   const struct hit *b)
{
    int c = order_cmp(q, a->rec, b->rec);
    if (c)
        return c;
    c = a->seq < b->seq ? -1 : a->seq > b->seq;
    return q->desc ? -c : c;
}

json_t *soql_run(const struct soql *q, const json_t *all,
                 const char *version)
{
    size_t n = 0, cap = 16;
    struct hit *hits = xmalloc(cap * sizeof(*hits));
    size_t i;
    const json_t *r;
    json_array_foreach(all, i, r) {
        const char *t = json_string_value(
            json_object_get(json_object_get(r, "attributes"), "type"));
        if (!t || strcmp(t, q->obj->name) != 0 ||
            (q->where && !holds(q->where, r)))
            continue;
        if (n == cap) {
            cap *= 2;
            hits = xrealloc(hits, cap * sizeof(*hits));
        }
        hits[n].rec = r;
        hits[n].seq = i;
        n++;
    }
    if (q->order) {
        for (size_t a = 1; a < n; a++) {
            struct hit x = hits[a];
            size_t b = a;
            while (b > 0 && hit_cmp(q, &hits[b - 1], &x) > 0) {
                hits[b] = hits[b - 1];
                b--;
            }
            hits[b] = x;
        }
    }
    if (q->limit >= 0 && (size_t)q->limit < n)
        n = (size_t)q->limit;
    json_t *recs = json_array();
    for (size_t k = 0; k < n; k++) {
        const json_t *rec = hits[k].rec;
        const char *id = json_string_value(json_object_get(rec, "Id"));
        json_t *o = json_pack("{s:{s:s,s:o}}", "attributes", "type",
                              q->obj->name, "url",
                              json_sprintf("/services/data/v%s/sobjects/%s/%s",
                                           version, q->obj->name,
                                           id ? id : ""));
        for (size_t s = 0; s < q->nselect; s++) {
            json_t *v = sf_record_get(rec, q->select[s]);
            json_object_set(o, sf_record_key(rec, q->select[s]),
                            v ? v : json_null());
        }
        json_array_append_new(recs, o);
    }
    free(hits);
    return json_pack("{s:I,s:b,s:o}", "totalSize", (json_int_t)n, "done", 1,
                     "records", recs);
}
