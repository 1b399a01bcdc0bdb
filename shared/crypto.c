/*
 * crypto.c - hashing, HMAC, hex and base64, constant-time comparison,
 * randomness and the AES-256-GCM keyring for secrets at rest; see crypto.h.
 *
 * Everything cryptographic goes through OpenSSL 3's libcrypto. The
 * encodings are our own so that decoding is strict: no whitespace, no
 * stray characters, canonical base64 only. A failure inside libcrypto for
 * a hash or MAC means the library itself is broken (or out of memory),
 * which no caller could handle, so those paths abort through CS_ASSERT.
 */
#include "crypto.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define KEY_ID_MAX 16
#define SEAL_PREFIX "v1:"

/* ---- Hashes and MACs ---------------------------------------------------- */

void cs_sha256(const void *a, size_t alen, const void *b, size_t blen,
               unsigned char out[CS_SHA256_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    CS_ASSERT(ctx != NULL);
    CS_ASSERT(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    if (alen)
        CS_ASSERT(EVP_DigestUpdate(ctx, a, alen) == 1);
    if (blen)
        CS_ASSERT(EVP_DigestUpdate(ctx, b, blen) == 1);
    CS_ASSERT(EVP_DigestFinal_ex(ctx, out, &len) == 1);
    CS_ASSERT(len == CS_SHA256_LEN);
    EVP_MD_CTX_free(ctx);
}

/* The HMAC implementation is fetched once per process and never freed. */
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_impl;

static void hmac_fetch(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/*
 * HMAC with digest `md` ("SHA256", "SHA1") over the parts in order. OpenSSL
 * treats a NULL key as "no key set", so an empty key is passed as "".
 */
static void hmac_parts(const char *md, const void *key, size_t keylen,
                       const void *const *parts, const size_t *lens,
                       size_t nparts, unsigned char *out, size_t outlen)
{
    static const unsigned char empty_key[1];
    OSSL_PARAM params[2];
    size_t got = 0;

    CS_ASSERT(pthread_once(&hmac_once, hmac_fetch) == 0);
    CS_ASSERT(hmac_impl != NULL);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);
    CS_ASSERT(ctx != NULL);
    params[0] =
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0);
    params[1] = OSSL_PARAM_construct_end();
    CS_ASSERT(EVP_MAC_init(ctx, keylen ? key : empty_key, keylen, params) == 1);
    for (size_t i = 0; i < nparts; i++)
        if (lens[i])
            CS_ASSERT(EVP_MAC_update(ctx, parts[i], lens[i]) == 1);
    CS_ASSERT(EVP_MAC_final(ctx, out, &got, outlen) == 1);
    CS_ASSERT(got == outlen);
    EVP_MAC_CTX_free(ctx);
}

void cs_hmac_sha256(const void *key, size_t keylen, const void *p1, size_t l1,
                    const void *p2, size_t l2, const void *p3, size_t l3,
                    unsigned char out[CS_SHA256_LEN])
{
    const void *parts[3] = {p1, p2, p3};
    size_t lens[3] = {l1, l2, l3};
    hmac_parts("SHA256", key, keylen, parts, lens, 3, out, CS_SHA256_LEN);
}

void cs_hmac_sha1(const void *key, size_t keylen, const void *p1, size_t l1,
                  unsigned char out[CS_SHA1_LEN])
{
    const void *parts[1] = {p1};
    size_t lens[1] = {l1};
    hmac_parts("SHA1", key, keylen, parts, lens, 1, out, CS_SHA1_LEN);
}

/* ---- Encodings ---------------------------------------------------------- */

void cs_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cs_hex_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 2 != 0 || n / 2 > cap || n / 2 > INT_MAX)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_value(in[i]);
        int lo = hex_value(in[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return (int)(n / 2);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cs_base64_encode(const unsigned char *in, size_t n)
{
    CS_ASSERT(n <= (SIZE_MAX - 1) / 4 * 3 - 2);
    char *out = xmalloc((n + 2) / 3 * 4 + 1);
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(char c)
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

/*
 * Strict decoding: padding is optional, but when present it must make the
 * length a multiple of four; a lone trailing character (length 1 mod 4) is
 * impossible; and the unused low bits of the last character must be zero,
 * so that every byte string has exactly one accepted encoding.
 */
int cs_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t pad = 0;
    if (n >= 1 && in[n - 1] == '=')
        pad = (n >= 2 && in[n - 2] == '=') ? 2 : 1;
    if (pad && n % 4 != 0)
        return -1;
    size_t len = n - pad;
    if (len % 4 == 1)
        return -1;
    size_t outlen = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (outlen > cap || outlen > INT_MAX)
        return -1;

    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    CS_ASSERT(o == outlen);
    return (int)outlen;
}

bool cs_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* ---- Randomness --------------------------------------------------------- */

int cs_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return CS_EIO;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

/* A process that cannot get random bytes cannot run safely: abort. */
void cs_uuid4(char out[37])
{
    unsigned char b[16];
    char hex[33];
    CS_ASSERT(cs_random(b, sizeof(b)) == 0);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    cs_hex_encode(b, sizeof(b), hex);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
}

/* ---- Keyring ------------------------------------------------------------ */

struct keyring_key {
    char id[KEY_ID_MAX + 1];
    size_t idlen;
    unsigned char key[KEY_LEN];
};

struct cs_keyring {
    size_t n;
    struct keyring_key keys[];
};

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static bool valid_id(const char *id, size_t n)
{
    if (n == 0 || n > KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(id[i]))
            return false;
    return true;
}

static const struct keyring_key *find_key(const struct cs_keyring *kr,
                                          const char *id, size_t n)
{
    for (size_t i = 0; i < kr->n; i++)
        if (kr->keys[i].idlen == n && memcmp(kr->keys[i].id, id, n) == 0)
            return &kr->keys[i];
    return NULL;
}

/* Parse one "id:base64" entry of length n into the next slot of kr. */
static int parse_key(struct cs_keyring *kr, const char *s, size_t n,
                     struct cs_err *err)
{
    size_t idx = kr->n + 1;
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return cs_err_set(err, CS_EINVAL, "keyring",
                          "key %zu has no ':' between id and key", idx);
    size_t idlen = (size_t)(colon - s);
    if (!valid_id(s, idlen))
        return cs_err_set(err, CS_EINVAL, "keyring",
                          "key %zu has an id that is not 1-16 characters "
                          "of [A-Za-z0-9_-]",
                          idx);
    if (find_key(kr, s, idlen))
        return cs_err_set(err, CS_EINVAL, "keyring",
                          "key id '%.*s' appears twice", (int)idlen, s);

    struct keyring_key *k = &kr->keys[kr->n];
    unsigned char raw[KEY_LEN + 3];
    const char *b64 = colon + 1;
    int got = cs_base64_decode(b64, n - idlen - 1, raw, sizeof(raw));
    if (got != KEY_LEN) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return cs_err_set(err, CS_EINVAL, "keyring",
                          "key '%.*s' is not base64 of exactly 32 bytes",
                          (int)idlen, s);
    }
    memcpy(k->id, s, idlen);
    k->id[idlen] = '\0';
    k->idlen = idlen;
    memcpy(k->key, raw, KEY_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
    kr->n++;
    return 0;
}

struct cs_keyring *cs_keyring_new(const char *spec, struct cs_err *err)
{
    if (!spec || !*spec) {
        cs_err_set(err, CS_EINVAL, "keyring", "keyring is empty");
        return NULL;
    }
    size_t count = 1;
    for (const char *p = spec; *p; p++)
        if (*p == ',')
            count++;

    struct cs_keyring *kr =
        xcalloc(1, sizeof(*kr) + count * sizeof(struct keyring_key));
    const char *s = spec;
    for (;;) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (parse_key(kr, s, n, err) != 0)
            goto out_free_keyring;
        if (!end)
            break;
        s = end + 1;
    }
    return kr;

out_free_keyring:
    cs_keyring_free(kr);
    return NULL;
}

void cs_keyring_free(struct cs_keyring *kr)
{
    if (!kr)
        return;
    OPENSSL_cleanse(kr->keys, kr->n * sizeof(kr->keys[0]));
    free(kr);
}

/*
 * Run AES-256-GCM in one direction over in[0..n) into out. On decryption
 * `tag` is the expected tag; on encryption it receives the tag. Returns 0,
 * or CS_EAUTH if decryption's tag check fails.
 */
static int gcm(bool encrypt, const struct keyring_key *k,
               const unsigned char nonce[NONCE_LEN], const unsigned char *in,
               size_t n, unsigned char *out, unsigned char tag[TAG_LEN])
{
    int rc = CS_EAUTH;
    int len = 0;
    CS_ASSERT(n <= INT_MAX);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    CS_ASSERT(ctx != NULL);
    CS_ASSERT(EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL,
                                encrypt) == 1);
    CS_ASSERT(
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1);
    CS_ASSERT(EVP_CipherInit_ex(ctx, NULL, NULL, k->key, nonce, encrypt) == 1);
    /* The key id is additional data: moving a secret to another id fails. */
    CS_ASSERT(EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *)k->id,
                               (int)k->idlen) == 1);
    if (n)
        CS_ASSERT(EVP_CipherUpdate(ctx, out, &len, in, (int)n) == 1);
    if (!encrypt)
        CS_ASSERT(
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1);
    if (EVP_CipherFinal_ex(ctx, out + (n ? (size_t)len : 0), &len) != 1)
        goto out_free_ctx;
    if (encrypt)
        CS_ASSERT(
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1);
    rc = 0;

out_free_ctx:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

char *cs_seal(const struct cs_keyring *kr, const void *plain, size_t n)
{
    CS_ASSERT(kr != NULL && kr->n > 0);
    CS_ASSERT(n <= INT_MAX - NONCE_LEN - TAG_LEN);
    const struct keyring_key *k = &kr->keys[0];
    size_t rawlen = NONCE_LEN + n + TAG_LEN;
    unsigned char *raw = xmalloc(rawlen);

    /* A process that cannot get random bytes cannot seal safely: abort. */
    CS_ASSERT(cs_random(raw, NONCE_LEN) == 0);
    CS_ASSERT(
        gcm(true, k, raw, plain, n, raw + NONCE_LEN, raw + NONCE_LEN + n) == 0);
    char *b64 = cs_base64_encode(raw, rawlen);
    char *sealed = xasprintf(SEAL_PREFIX "%s:%s", k->id, b64);
    free(b64);
    free(raw);
    return sealed;
}

char *cs_open(const struct cs_keyring *kr, const char *sealed, size_t *n,
              struct cs_err *err)
{
    char *plain = NULL;
    size_t plen = 0;

    CS_ASSERT(kr != NULL);
    if (!sealed || strncmp(sealed, SEAL_PREFIX, strlen(SEAL_PREFIX)) != 0) {
        cs_err_set(err, CS_EINVAL, "", "sealed value has no 'v1:' prefix");
        return NULL;
    }
    const char *id = sealed + strlen(SEAL_PREFIX);
    const char *colon = strchr(id, ':');
    if (!colon || !valid_id(id, (size_t)(colon - id))) {
        cs_err_set(err, CS_EINVAL, "", "sealed value has no valid key id");
        return NULL;
    }
    size_t idlen = (size_t)(colon - id);
    const struct keyring_key *k = find_key(kr, id, idlen);
    if (!k) {
        cs_err_set(err, CS_ENOENT, "", "unknown key id '%.*s'", (int)idlen, id);
        return NULL;
    }

    const char *b64 = colon + 1;
    size_t b64len = strlen(b64);
    size_t cap = b64len / 4 * 3 + 3;
    unsigned char *raw = xmalloc(cap);
    int got = cs_base64_decode(b64, b64len, raw, cap);
    if (got < 0) {
        cs_err_set(err, CS_EINVAL, "", "sealed value is not valid base64");
        goto out_free_raw;
    }
    if ((size_t)got < NONCE_LEN + TAG_LEN) {
        cs_err_set(err, CS_EINVAL, "", "sealed value is too short");
        goto out_free_raw;
    }
    plen = (size_t)got - NONCE_LEN - TAG_LEN;
    plain = xmalloc(plen + 1);
    if (gcm(false, k, raw, raw + NONCE_LEN, plen, (unsigned char *)plain,
            raw + NONCE_LEN + plen) != 0) {
        OPENSSL_cleanse(plain, plen + 1);
        free(plain);
        plain = NULL;
        cs_err_set(err, CS_EAUTH, "",
                   "sealed value failed authentication with key '%s'", k->id);
        goto out_free_raw;
    }
    plain[plen] = '\0';
    if (n)
        *n = plen;

out_free_raw:
    free(raw);
    return plain;
}
