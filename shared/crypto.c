/*
 * crypto.c - the part of crypto.h that the operators' tool needs: random
 * bytes, UUIDs, base64 and the AES-256-GCM keyring for secrets at rest.
 * Sealed format: "v1:<key id>:<base64(nonce12 | ciphertext | tag16)>", with
 * "v1:<key id>" bound into the tag as additional authenticated data.
 */
#include "crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define KID_MAX 16

struct cs_key {
    char id[KID_MAX + 1];
    unsigned char key[KEY_LEN];
};

struct cs_keyring {
    struct cs_key *keys;
    size_t n;
};

int cs_random(void *buf, size_t n)
{
    if (n > (size_t)INT32_MAX || RAND_bytes(buf, (int)n) != 1)
        return CS_EIO;
    return 0;
}

void cs_uuid4(char out[37])
{
    unsigned char b[16];
    if (cs_random(b, sizeof(b)) != 0)
        CS_ASSERT(!"no random bytes for a uuid");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
             b[10], b[11], b[12], b[13], b[14], b[15]);
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cs_base64_encode(const unsigned char *in, size_t n)
{
    char *out = xmalloc((n + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int cs_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    /* Padding is optional, but only at the end and at most two. */
    size_t pad = 0;
    while (n > 0 && in[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (pad && (n + pad) % 4 != 0)
        return -1;
    if (n % 4 == 1)
        return -1;
    size_t len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (len > cap || len > (size_t)INT32_MAX)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero, so that each byte string has one form. */
    if (acc != 0)
        return -1;
    return (int)o;
}

static bool valid_kid(const char *s, size_t n)
{
    if (n < 1 || n > KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

struct cs_keyring *cs_keyring_new(const char *spec, struct cs_err *err)
{
    if (!spec || !*spec) {
        cs_err_set(err, CS_EINVAL, "encryption_keys",
                   "no encryption keys configured");
        return NULL;
    }
    struct cs_keyring *kr = xcalloc(1, sizeof(*kr));
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t idlen = colon ? (size_t)(colon - p) : 0;
        unsigned char key[KEY_LEN + 3];
        if (!colon || !valid_kid(p, idlen)) {
            cs_err_set(err, CS_EINVAL, "encryption_keys",
                       "malformed key entry %zu: expected id:base64", kr->n + 1);
            goto out_free;
        }
        int klen = cs_base64_decode(colon + 1, len - idlen - 1, key,
                                    sizeof(key));
        if (klen != KEY_LEN) {
            cs_err_set(err, CS_EINVAL, "encryption_keys",
                       "key '%.*s' must be 32 bytes of base64", (int)idlen, p);
            goto out_free;
        }
        for (size_t i = 0; i < kr->n; i++)
            if (strlen(kr->keys[i].id) == idlen &&
                memcmp(kr->keys[i].id, p, idlen) == 0) {
                cs_err_set(err, CS_EINVAL, "encryption_keys",
                           "key id '%.*s' appears twice", (int)idlen, p);
                goto out_free;
            }
        kr->keys = xrealloc(kr->keys, (kr->n + 1) * sizeof(*kr->keys));
        struct cs_key *k = &kr->keys[kr->n++];
        memcpy(k->id, p, idlen);
        k->id[idlen] = '\0';
        memcpy(k->key, key, KEY_LEN);
        OPENSSL_cleanse(key, sizeof(key));
        p += len;
        if (*p == ',')
            p++;
    }
    if (kr->n == 0) {
        cs_err_set(err, CS_EINVAL, "encryption_keys",
                   "no encryption keys configured");
        goto out_free;
    }
    return kr;
out_free:
    cs_keyring_free(kr);
    return NULL;
}

void cs_keyring_free(struct cs_keyring *kr)
{
    if (!kr)
        return;
    if (kr->keys)
        OPENSSL_cleanse(kr->keys, kr->n * sizeof(*kr->keys));
    free(kr->keys);
    free(kr);
}

char *cs_seal(const struct cs_keyring *kr, const void *plain, size_t n)
{
    CS_ASSERT(kr && kr->n > 0 && n <= (size_t)INT32_MAX - 64);
    const struct cs_key *k = &kr->keys[0];
    char aad[KID_MAX + 8];
    int aadlen = snprintf(aad, sizeof(aad), "v1:%s", k->id);
    unsigned char *raw = xmalloc(NONCE_LEN + n + TAG_LEN);
    if (cs_random(raw, NONCE_LEN) != 0)
        CS_ASSERT(!"no random bytes for a nonce");
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    CS_ASSERT(ctx);
    int len = 0, ok = 1;
    ok &= EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL);
    ok &= EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
    ok &= EVP_EncryptInit_ex(ctx, NULL, NULL, k->key, raw);
    ok &= EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad,
                            aadlen);
    ok &= EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &len, plain, (int)n);
    ok &= EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + len, &len);
    ok &= EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                              raw + NONCE_LEN + n);
    EVP_CIPHER_CTX_free(ctx);
    CS_ASSERT(ok == 1);
    char *b64 = cs_base64_encode(raw, NONCE_LEN + n + TAG_LEN);
    char *out = xasprintf("%s:%s", aad, b64);
    free(b64);
    free(raw);
    return out;
}

char *cs_open(const struct cs_keyring *kr, const char *sealed, size_t *n,
              struct cs_err *err)
{
    if (!sealed || strncmp(sealed, "v1:", 3) != 0) {
        cs_err_set(err, CS_EINVAL, "", "sealed value has no 'v1:' prefix");
        return NULL;
    }
    const char *kid = sealed + 3;
    const char *colon = strchr(kid, ':');
    if (!colon || !valid_kid(kid, (size_t)(colon - kid))) {
        cs_err_set(err, CS_EINVAL, "", "sealed value has a malformed key id");
        return NULL;
    }
    size_t idlen = (size_t)(colon - kid);
    const struct cs_key *k = NULL;
    for (size_t i = 0; i < kr->n && !k; i++)
        if (strlen(kr->keys[i].id) == idlen &&
            memcmp(kr->keys[i].id, kid, idlen) == 0)
            k = &kr->keys[i];
    if (!k) {
        cs_err_set(err, CS_ENOENT, "", "unknown key id '%.*s'", (int)idlen,
                   kid);
        return NULL;
    }
    const char *b64 = colon + 1;
    size_t blen = strlen(b64);
    size_t cap = blen / 4 * 3 + 3;
    unsigned char *raw = xmalloc(cap);
    int rlen = cs_base64_decode(b64, blen, raw, cap);
    if (rlen < NONCE_LEN + TAG_LEN) {
        free(raw);
        cs_err_set(err, CS_EINVAL, "", "sealed value is malformed");
        return NULL;
    }
    size_t clen = (size_t)rlen - NONCE_LEN - TAG_LEN;
    char *plain = xmalloc(clen + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    CS_ASSERT(ctx);
    int len = 0, ok = 1;
    ok &= EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL);
    ok &= EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
    ok &= EVP_DecryptInit_ex(ctx, NULL, NULL, k->key, raw);
    ok &= EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)sealed,
                            (int)(3 + idlen));
    ok &= EVP_DecryptUpdate(ctx, (unsigned char *)plain, &len,
                            raw + NONCE_LEN, (int)clen);
    ok &= EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                              raw + NONCE_LEN + clen);
    if (ok == 1)
        ok = EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + len, &len) ==
             1;
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    if (ok != 1) {
        OPENSSL_cleanse(plain, clen + 1);
        free(plain);
        cs_err_set(err, CS_EAUTH, "", "sealed value did not authenticate");
        return NULL;
    }
    plain[clen] = '\0';
    if (n)
        *n = clen;
    return plain;
}
