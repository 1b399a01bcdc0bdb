/*
 * forms.c - application/x-www-form-urlencoded bodies and query strings
 * for the sandbox's form-speaking providers (Stripe, Twilio).
 *
 * sb_form_parse reads "a=1&b%5Bc%5D=2" into JSON strings. With nested
 * set, names use Stripe's bracket notation: "meta[k]=v" is {"meta":
 * {"k": "v"}}, "items[0][price]=p" is {"items": [{"price": "p"}]} (an
 * index must be the next element or an existing one), and "tags[]=x"
 * appends. Without it, names are taken as they are and a repeated name
 * collects its values in a list (Twilio's repeatable MediaUrl).
 */
#include "sandbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Split name into its segments: "a[b][0]" -> a, b, 0. Returns the count
 * or -1 when the brackets are malformed. */
static int name_segments(const char *name, char seg[8][128])
{
    int n = 0;
    size_t l = strcspn(name, "[");
    if (l == 0 || l >= 128)
        return -1;
    memcpy(seg[n], name, l);
    seg[n++][l] = '\0';
    const char *p = name + l;
    while (*p) {
        if (*p != '[' || n == 8)
            return -1;
        const char *close = strchr(p, ']');
        if (!close || (size_t)(close - p - 1) >= 128)
            return -1;
        memcpy(seg[n], p + 1, (size_t)(close - p - 1));
        seg[n++][close - p - 1] = '\0';
        p = close + 1;
    }
    return n;
}

static bool is_index(const char *s, size_t *out)
{
    if (!*s || strlen(s) > 6)
        return false;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    *out = (size_t)strtoul(s, NULL, 10);
    return true;
}

/* Put value at the path of segments under root; false on a conflict. */
static bool put(json_t *root, char seg[8][128], int n, const char *value)
{
    json_t *cur = root;
    for (int i = 0; i < n; i++) {
        bool last = i == n - 1;
        size_t idx = 0, next_idx;
        bool next_is_array = !last && (is_index(seg[i + 1], &next_idx) ||
                                       seg[i + 1][0] == '\0');
        json_t *child = last ? json_string(value)
                             : next_is_array ? json_array() : json_object();
        json_t *slot = NULL;
        if (json_is_object(cur)) {
            if (!seg[i][0]) {
                json_decref(child);
                return false;
            }
            slot = json_object_get(cur, seg[i]);
            if (!slot) {
                json_object_set_new(cur, seg[i], child);
                cur = json_object_get(cur, seg[i]);
                continue;
            }
        } else if (json_is_array(cur)) {
            if (!seg[i][0]) {
                json_array_append_new(cur, child);
                cur = json_array_get(cur, json_array_size(cur) - 1);
                continue;
            }
            if (!is_index(seg[i], &idx) || idx > json_array_size(cur)) {
                json_decref(child);
                return false;
            }
            if (idx == json_array_size(cur)) {
                json_array_append_new(cur, child);
                cur = json_array_get(cur, idx);
                continue;
            }
            slot = json_array_get(cur, idx);
        } else {
            json_decref(child);
            return false;
        }
        /* The slot exists: it must be a container of the same kind (a
         * scalar given twice keeps the last value, as Stripe does). */
        if (last) {
            if (json_is_object(cur))
                json_object_set_new(cur, seg[i], child);
            else
                json_array_set_new(cur, idx, child);
            return true;
        }
        bool same = json_is_array(slot) == json_is_array(child) &&
                    json_is_object(slot) == json_is_object(child);
        json_decref(child);
        if (!same)
            return false;
        cur = slot;
    }
    return true;
}

bool sb_form_parse(const char *s, size_t n, bool nested, json_t **out,
                   char *err, size_t errlen)
{
    json_t *root = json_object();
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && s[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(s + i, '=', end - i);
            size_t kl = eq ? (size_t)(eq - (s + i)) : end - i;
            char *name = sb_url_decode(s + i, kl, true);
            char *value = eq ? sb_url_decode(eq + 1,
                                             end - (size_t)(eq + 1 - s),
                                             true)
                             : xstrdup("");
            bool ok = true;
            if (nested) {
                char seg[8][128];
                int ns = name_segments(name, seg);
                ok = ns > 0 && put(root, seg, ns, value);
            } else if (!*name) {
                ok = false;
            } else {
                json_t *have = json_object_get(root, name);
                if (json_is_array(have)) {
                    json_array_append_new(have, json_string(value));
                } else if (have) {
                    json_object_set_new(root, name,
                                        json_pack("[O,s]", have, value));
                } else {
                    json_object_set_new(root, name, json_string(value));
                }
            }
            if (!ok) {
                snprintf(err, errlen, "Invalid parameter name: %.100s", name);
                free(name);
                free(value);
                json_decref(root);
                *out = NULL;
                return false;
            }
            free(name);
            free(value);
        }
        i = end + 1;
    }
    *out = root;
    return true;
}

bool sb_is_form(const struct sb_req *rq)
{
    const char *ct = sb_header(rq, "content-type");
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}
