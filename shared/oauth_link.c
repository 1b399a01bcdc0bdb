/*
 * oauth_link.c - signed authorize links and OAuth states; see
 * oauth_link.h.
 */
#include "oauth_link.h"
#include "crypto.h"
#include "oauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int oauth_link_check_key(const char *key, struct cs_err *err)
{
    if (!key || strlen(key) < OAUTH_LINK_MIN_KEY)
        return cs_err_set(err, CS_EINVAL, "connect_state_key",
                          "CALLSYNC_CONNECT_STATE_KEY must be set to at "
                          "least %d characters",
                          OAUTH_LINK_MIN_KEY);
    return 0;
}

static void mac_hex(const char *key, const char *label, const char *a,
                    size_t alen, char out[2 * CS_SHA256_LEN + 1])
{
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(key, strlen(key), label, strlen(label), a, alen, NULL, 0,
                   mac);
    cs_hex_encode(mac, sizeof(mac), out);
}

static char *link_label(const char *provider)
{
    return xasprintf("authorize\n%s\n", provider);
}

char *oauth_link_make(const char *key, const char *public_url,
                      const char *provider, const char *agent,
                      const char *const *extra, int64_t exp_s)
{
    char *q = NULL;
    size_t len = 0;
    oauth_form_add(&q, &len, "agent", agent);
    for (size_t i = 0; extra && extra[i]; i += 2)
        if (extra[i + 1] && *extra[i + 1])
            oauth_form_add(&q, &len, extra[i], extra[i + 1]);
    char exp[24];
    snprintf(exp, sizeof(exp), "%lld", (long long)exp_s);
    oauth_form_add(&q, &len, "exp", exp);
    char *label = link_label(provider);
    char sig[2 * CS_SHA256_LEN + 1];
    mac_hex(key, label, q, len, sig);
    free(label);
    size_t n = strlen(public_url);
    while (n && public_url[n - 1] == '/')
        n--;
    char *u = xasprintf("%.*s/oauth/%s/authorize?%s&sig=%s", (int)n,
                        public_url, provider, q, sig);
    free(q);
    return u;
}

bool oauth_link_verify(const char *key, const char *provider,
                       const char *query)
{
    const char *at = NULL;
    for (const char *p = strstr(query, "&sig="); p; p = strstr(p + 1, "&sig="))
        at = p;
    if (!at)
        return false;
    const char *sig = at + 5;
    if (strlen(sig) != 2 * CS_SHA256_LEN)
        return false;
    char *label = link_label(provider);
    char want[2 * CS_SHA256_LEN + 1];
    mac_hex(key, label, query, (size_t)(at - query), want);
    free(label);
    return cs_ct_equal(want, sig, 2 * CS_SHA256_LEN);
}

int oauth_state_new(const char *key, char id[33], char state[100])
{
    unsigned char raw[16];
    if (cs_random(raw, sizeof(raw)))
        return -CS_EIO;
    cs_hex_encode(raw, sizeof(raw), id);
    char mac[2 * CS_SHA256_LEN + 1];
    mac_hex(key, "state\n", id, 32, mac);
    snprintf(state, 100, "%s.%s", id, mac);
    return 0;
}

bool oauth_state_verify(const char *key, const char *state, char id[33])
{
    if (!state || strlen(state) != 32 + 1 + 2 * CS_SHA256_LEN ||
        state[32] != '.')
        return false;
    for (int i = 0; i < 32; i++) {
        char c = state[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    char mac[2 * CS_SHA256_LEN + 1];
    mac_hex(key, "state\n", state, 32, mac);
    if (!cs_ct_equal(mac, state + 33, 2 * CS_SHA256_LEN))
        return false;
    memcpy(id, state, 32);
    id[32] = '\0';
    return true;
}
