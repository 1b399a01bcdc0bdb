/*
 * util.c - option parsing, output, database and Redis access, secrets and
 * validation shared by the commands of callsyncctl; see ctl.h.
 */
#include "crypto.h"
#include "ctl.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MAX (64 * 1024)

/* PostgreSQL type oids that the JSON output maps to JSON types. */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_JSON 114
#define OID_JSONB 3802

int ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

void ctl_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const struct ctl_opt *find_opt(const struct ctl_opt *opts,
                                      size_t nopts, const char *name,
                                      size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len &&
            strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

int ctl_parse(struct ctl *ctl, int argc, char **argv,
              const struct ctl_opt *opts, size_t nopts, const char **pos,
              int maxpos, int *npos, const char *usage)
{
    bool help = false, rest_positional = false;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (rest_positional || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (!rest_positional && strcmp(a, "--") == 0) {
                rest_positional = true;
                continue;
            }
            if (*npos >= maxpos) {
                ctl_fail(CTL_USAGE, "unexpected argument '%s'", a);
                goto out_usage;
            }
            pos[(*npos)++] = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 4 && strncmp(name, "help", 4) == 0 && !eq) {
            help = true;
            continue;
        }
        if (len == 4 && strncmp(name, "json", 4) == 0 && !eq) {
            ctl->json = true;
            continue;
        }
        const struct ctl_opt *o = find_opt(opts, nopts, name, len);
        if (!o) {
            ctl_fail(CTL_USAGE, "unknown option '--%.*s'", (int)len, name);
            goto out_usage;
        }
        if (!o->value) {
            if (eq) {
                ctl_fail(CTL_USAGE, "option '--%s' takes no value", o->name);
                goto out_usage;
            }
            *o->flag = true;
            continue;
        }
        if (eq) {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            ctl_fail(CTL_USAGE, "option '--%s' needs a value", o->name);
            goto out_usage;
        }
    }
    if (help) {
        fputs(usage, stdout);
        return -1;
    }
    return CTL_OK;
out_usage:
    fputs(usage, stderr);
    return CTL_USAGE;
}

int ctl_db(struct ctl *ctl)
{
    if (ctl->pg)
        return CTL_OK;
    struct cs_err err;
    ctl->pg = pgc_connect(ctl->cfg.database_url, &err);
    if (!ctl->pg)
        return ctl_fail(CTL_FAIL, "%s", err.msg);
    return CTL_OK;
}

PGresult *ctl_query(struct ctl *ctl, const char *what, const char *sql,
                    int nparams, const char *const *params)
{
    struct cs_err err;
    PGresult *r = pgc_query(ctl->pg, sql, nparams, params, &err);
    if (!r)
        ctl_fail(CTL_FAIL, "cannot %s: %s", what, err.msg);
    return r;
}

static char *read_stream(FILE *f, const char *what, const char *name)
{
    char *data = xmalloc(SECRET_MAX + 1);
    size_t n = fread(data, 1, SECRET_MAX + 1, f);
    if (ferror(f) || n > SECRET_MAX) {
        ctl_fail(CTL_USAGE, "cannot read %s from '%s': %s", what, name,
                 n > SECRET_MAX ? "larger than 64 KiB" : "read error");
        ctl_secret_free(data);
        return NULL;
    }
    data[n] = '\0';
    return data;
}

char *ctl_read_secret(const char *what, const char *file, const char *env)
{
    char *s;
    if (file) {
        bool is_stdin = strcmp(file, "-") == 0;
        FILE *f = is_stdin ? stdin : fopen(file, "rb");
        if (!f) {
            ctl_fail(CTL_USAGE, "cannot open %s file '%s'", what, file);
            return NULL;
        }
        s = read_stream(f, what, is_stdin ? "stdin" : file);
        if (!is_stdin)
            fclose(f);
        if (!s)
            return NULL;
    } else {
        /* The variable's name is an argument, not a setting, so this is
         * the one getenv() outside cfg.c: secrets never go on argv. */
        const char *v = getenv(env);
        if (!v) {
            ctl_fail(CTL_USAGE, "cannot read %s: variable '%s' is not set",
                     what, env);
            return NULL;
        }
        if (strlen(v) > SECRET_MAX) {
            ctl_fail(CTL_USAGE, "cannot read %s: variable '%s' is larger "
                     "than 64 KiB", what, env);
            return NULL;
        }
        s = xstrdup(v);
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (n == 0) {
        ctl_fail(CTL_USAGE, "%s from '%s' is empty", what, file ? file : env);
        ctl_secret_free(s);
        return NULL;
    }
    return s;
}

void ctl_secret_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

bool ctl_is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-'
                 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

bool ctl_is_url(const char *s)
{
    const char *host;
    if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return false;
    if (*host == '\0' || *host == '/' || *host == ':' || *host == '?')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return strlen(s) <= 2048;
}

bool ctl_is_e164(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    for (size_t i = 1; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool ctl_in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static json_t *cell_json(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return json_null();
    const char *v = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case OID_BOOL:
        return json_boolean(v[0] == 't');
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return json_integer(strtoll(v, NULL, 10));
    case OID_JSON:
    case OID_JSONB: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    }
    default:
        return json_string(v);
    }
}

json_t *ctl_result_json(const PGresult *r)
{
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int j = 0; j < PQnfields(r); j++)
            json_object_set_new(o, PQfname(r, j), cell_json(r, i, j));
        json_array_append_new(arr, o);
    }
    return arr;
}

void ctl_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                JSON_ENCODE_ANY);
    puts(s);
    free(s);
}

static void print_json(const PGresult *r)
{
    json_t *arr = ctl_result_json(r);
    ctl_print_json(arr);
    json_decref(arr);
}

static const char *cell_text(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return "-";
    if (PQftype(r, col) == OID_BOOL)
        return PQgetvalue(r, row, col)[0] == 't' ? "yes" : "no";
    return PQgetvalue(r, row, col);
}

void ctl_print_result(const struct ctl *ctl, const PGresult *r)
{
    if (ctl->json) {
        print_json(r);
        return;
    }
    int nf = PQnfields(r), nt = PQntuples(r);
    int *w = xcalloc((size_t)nf, sizeof(*w));
    for (int j = 0; j < nf; j++) {
        w[j] = (int)strlen(PQfname(r, j));
        for (int i = 0; i < nt; i++) {
            int len = (int)strlen(cell_text(r, i, j));
            if (len > w[j])
                w[j] = len;
        }
    }
    for (int i = -1; i < nt; i++) {
        for (int j = 0; j < nf; j++) {
            const char *v = i < 0 ? PQfname(r, j) : cell_text(r, i, j);
            if (j == nf - 1)
                printf("%s\n", v);
            else
                printf("%-*s  ", w[j], v);
        }
    }
    free(w);
}

char **ctl_conn_secrets(struct ctl *ctl, const char *conn_id)
{
    if (!conn_id || !ctl_is_uuid(conn_id) || !ctl->cfg.encryption_keys[0])
        return NULL;
    if (!ctl->pg) {
        struct cs_err err;
        ctl->pg = pgc_connect(ctl->cfg.database_url, &err);
        if (!ctl->pg)
            return NULL;
    }
    struct cs_err err = {0};
    struct cs_keyring *kr = cs_keyring_new(ctl->cfg.encryption_keys, &err);
    if (!kr)
        return NULL;
    const char *params[] = {conn_id};
    PGresult *r = pgc_query(ctl->pg,
                            "SELECT access_token, refresh_token, api_key, "
                            " api_secret, webhook_secret "
                            "FROM integration_connections WHERE id = $1",
                            1, params, &err);
    char **out = NULL;
    if (r && PQntuples(r) == 1) {
        out = xcalloc((size_t)PQnfields(r) + 1, sizeof(char *));
        size_t n = 0;
        for (int j = 0; j < PQnfields(r); j++) {
            if (PQgetisnull(r, 0, j))
                continue;
            size_t len;
            char *plain = cs_open(kr, PQgetvalue(r, 0, j), &len, &err);
            if (plain)
                out[n++] = plain;
        }
    }
    if (r)
        PQclear(r);
    cs_keyring_free(kr);
    return out;
}

void ctl_secrets_free(char **s)
{
    if (!s)
        return;
    for (char **p = s; *p; p++)
        ctl_secret_free(*p);
    free(s);
}
