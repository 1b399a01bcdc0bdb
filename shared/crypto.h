/*
 * crypto.h - hashing, HMAC, encodings, constant-time comparison and
 * AES-256-GCM sealing of secrets at rest, on OpenSSL's libcrypto.
 */
#ifndef CS_CRYPTO_H
#define CS_CRYPTO_H

#include "cs.h"

#define CS_SHA256_LEN 32
#define CS_SHA1_LEN 20

/* SHA-256 of a || b (either may be empty). */
void cs_sha256(const void *a, size_t alen, const void *b, size_t blen,
               unsigned char out[CS_SHA256_LEN]);
/*
 * HMAC of the concatenation of up to three parts (NULL/0 for unused ones),
 * so that callers never build "t.body" strings just to sign them.
 */
void cs_hmac_sha256(const void *key, size_t keylen, const void *p1, size_t l1,
                    const void *p2, size_t l2, const void *p3, size_t l3,
                    unsigned char out[CS_SHA256_LEN]);
void cs_hmac_sha1(const void *key, size_t keylen, const void *p1, size_t l1,
                  unsigned char out[CS_SHA1_LEN]);

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void cs_hex_encode(const unsigned char *in, size_t n, char *out);
/* Decode hex (either case); returns the byte count, or -1 if malformed or
 * longer than cap. */
int cs_hex_decode(const char *in, size_t n, unsigned char *out, size_t cap);
/* Standard base64 with padding; xmalloc'd, NUL-terminated. */
char *cs_base64_encode(const unsigned char *in, size_t n);
/* Decode standard base64 (padding optional, no whitespace); returns the
 * byte count, or -1 if malformed or longer than cap. */
int cs_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);
/* Constant-time equality of two equal-length buffers. */
bool cs_ct_equal(const void *a, const void *b, size_t n);

/* Fill buf with n cryptographically random bytes; 0 or -CS_EIO. */
CS_MUST_CHECK int cs_random(void *buf, size_t n);
/* A random RFC 4122 version-4 UUID string into out[37]. */
void cs_uuid4(char out[37]);

/*
 * A keyring of AES-256-GCM keys for secrets at rest, parsed from
 * "id:base64(32 bytes)[,id:base64...]". The first key seals; every key
 * opens, so keys can rotate. Ids are 1-16 characters [A-Za-z0-9_-].
 */
struct cs_keyring;

/* Returns NULL and fills *err if the spec is empty or malformed. */
struct cs_keyring *cs_keyring_new(const char *spec, struct cs_err *err);
void cs_keyring_free(struct cs_keyring *kr);
/*
 * Seal n bytes: returns "v1:<key id>:<base64(nonce12 | ciphertext | tag16)>",
 * xmalloc'd. The key id is bound into the tag as additional data.
 */
char *cs_seal(const struct cs_keyring *kr, const void *plain, size_t n);
/*
 * Open a sealed string; returns the xmalloc'd NUL-terminated plaintext and
 * its length in *n, or NULL with *err filled (unknown key id, malformed,
 * or authentication failed).
 */
char *cs_open(const struct cs_keyring *kr, const char *sealed, size_t *n,
              struct cs_err *err);

#endif
