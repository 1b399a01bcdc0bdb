/*
 * redact.c - secrets out of text and JSON; see redact.h.
 */
#include "redact.h"
#include "buf.h"

#include <ctype.h>
#include <string.h>

#define REDACT_MAX (16 * 1024 * 1024)
#define KNOWN_MIN 6 /* shorter "secrets" would redact ordinary words */

static const char *const secret_parts[] = {
    "authorization", "token",     "secret",     "password",
    "passwd",        "api_key",   "apikey",     "hapikey",
    "signature",     "cookie",    "credential", "private_key",
};

static const char *const secret_exact[] = {"key", "auth", "sig"};

static const char *const shapes[] = {"pat-",     "sk_live_", "sk_test_",
                                     "rk_live_", "rk_test_", "whsec_"};

static const char *const schemes[] = {"bearer ", "basic ", "token "};

bool redact_is_secret_name(const char *name, size_t len)
{
    char low[64];
    if (len == 0 || len >= sizeof(low))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        low[i] = c == '-' ? '_' : (char)tolower(c);
    }
    low[len] = '\0';
    for (size_t i = 0; i < CS_ARRAY_LEN(secret_exact); i++)
        if (strcmp(low, secret_exact[i]) == 0)
            return true;
    for (size_t i = 0; i < CS_ARRAY_LEN(secret_parts); i++)
        if (strstr(low, secret_parts[i]))
            return true;
    return false;
}

static bool is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* Characters a credential is made of (base64, base64url, hex, JWT). */
static bool is_tok(char c)
{
    return isalnum((unsigned char)c) || strchr("-._~+/=", c) != NULL;
}

static size_t tok_len(const char *s)
{
    size_t n = 0;
    while (s[n] && is_tok(s[n]))
        n++;
    return n;
}

static bool prefix_ci(const char *s, const char *p)
{
    for (; *p; s++, p++)
        if (tolower((unsigned char)*s) != *p)
            return false;
    return true;
}

static void add(struct buf *b, const char *s, size_t n)
{
    /* The cap only guards against absurd input; past it, output stops. */
    (void)!buf_add(b, s, n);
}

/* A known secret at s: its length, else 0. */
static size_t known_at(const struct redact_ctx *ctx, const char *s)
{
    if (!ctx || !ctx->known)
        return 0;
    for (const char *const *k = ctx->known; *k; k++) {
        size_t n = strlen(*k);
        if (n >= KNOWN_MIN && strncmp(s, *k, n) == 0)
            return n;
    }
    return 0;
}

/*
 * "name" + optional closing quote + spaces + '=' or ':' + spaces +
 * optional opening quote at s (name already known to be secret). Returns
 * how many bytes precede the value and sets *quote to the quote that
 * opened it ('\0' if none), or 0 if s is not such a pair.
 */
static size_t pair_head(const char *s, size_t name_len, char *quote,
                        bool *escaped)
{
    size_t i = name_len;
    if (s[i] == '\\' && s[i + 1] == '"')
        i++; /* JSON quoted inside a JSON string: \"name\": \"value\" */
    if (s[i] == '"' || s[i] == '\'')
        i++;
    while (s[i] == ' ')
        i++;
    if (s[i] != '=' && s[i] != ':')
        return 0;
    i++;
    while (s[i] == ' ')
        i++;
    *quote = '\0';
    *escaped = false;
    if (s[i] == '\\' && s[i + 1] == '"') {
        *escaped = true;
        i++;
    }
    if (s[i] == '"' || s[i] == '\'')
        *quote = s[i++];
    return i;
}

/* Length of the value at s: up to the closing quote (escapes skipped;
 * an escaped quote closes an escaped value), or for a bare value up to a
 * delimiter, an auth scheme word included. */
static size_t pair_value(const char *s, char quote, bool escaped)
{
    size_t i = 0;
    if (quote) {
        while (s[i] && s[i] != quote) {
            if (s[i] == '\\' && s[i + 1]) {
                if (escaped && s[i + 1] == quote)
                    break;
                i++;
            }
            i++;
        }
        return i;
    }
    for (size_t k = 0; k < CS_ARRAY_LEN(schemes); k++)
        if (prefix_ci(s, schemes[k])) {
            i = strlen(schemes[k]);
            break;
        }
    while (s[i] && !isspace((unsigned char)s[i]) &&
           !strchr("&,;\"'})]", s[i]))
        i++;
    return i;
}

char *redact_text(const struct redact_ctx *ctx, const char *s)
{
    struct buf b;
    buf_init(&b, REDACT_MAX);
    size_t i = 0;
    while (s[i]) {
        bool boundary = i == 0 || !is_ident(s[i - 1]);
        size_t n = known_at(ctx, s + i);
        if (n) {
            add(&b, REDACT_MARK, strlen(REDACT_MARK));
            i += n;
            continue;
        }
        if (!boundary) {
            add(&b, s + i, 1);
            i++;
            continue;
        }
        bool done = false;
        for (size_t k = 0; k < CS_ARRAY_LEN(schemes) && !done; k++) {
            size_t pl = strlen(schemes[k]);
            if (k == 2 || !prefix_ci(s + i, schemes[k]))
                continue; /* "token x" is only redacted after a name */
            size_t t = tok_len(s + i + pl);
            if (t == 0)
                continue;
            add(&b, s + i, pl);
            add(&b, REDACT_MARK, strlen(REDACT_MARK));
            i += pl + t;
            done = true;
        }
        for (size_t k = 0; k < CS_ARRAY_LEN(shapes) && !done; k++) {
            size_t pl = strlen(shapes[k]);
            if (strncmp(s + i, shapes[k], pl) != 0)
                continue;
            size_t t = tok_len(s + i + pl);
            if (t < 6)
                continue;
            add(&b, s + i, pl);
            add(&b, REDACT_MARK, strlen(REDACT_MARK));
            i += pl + t;
            done = true;
        }
        if (done)
            continue;
        size_t id = 0;
        while (is_ident(s[i + id]))
            id++;
        if (id == 0) {
            add(&b, s + i, 1);
            i++;
            continue;
        }
        char quote = '\0';
        bool escaped = false;
        size_t head = redact_is_secret_name(s + i, id)
                          ? pair_head(s + i, id, &quote, &escaped)
                          : 0;
        size_t v = head ? pair_value(s + i + head, quote, escaped) : 0;
        if (v > 0 && strncmp(s + i + head, REDACT_MARK, v) != 0) {
            add(&b, s + i, head);
            add(&b, REDACT_MARK, strlen(REDACT_MARK));
            i += head + v;
            continue;
        }
        add(&b, s + i, id);
        i += id;
    }
    return buf_take(&b, NULL);
}

void redact_json(const struct redact_ctx *ctx, json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m) {
            if (redact_is_secret_name(k, strlen(k)) && !json_is_null(m) &&
                !json_is_boolean(m)) {
                json_object_iter_set_new(v, json_object_key_to_iter(k),
                                         json_string(REDACT_MARK));
                continue;
            }
            redact_json(ctx, m);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            redact_json(ctx, json_array_get(v, i));
    } else if (json_is_string(v)) {
        char *r = redact_text(ctx, json_string_value(v));
        if (strcmp(r, json_string_value(v)) != 0)
            json_string_set(v, r);
        free(r);
    }
}
