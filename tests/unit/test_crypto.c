/*
 * test_crypto.c - known-answer tests for hashing, HMAC and the encodings
 * (FIPS 180-2, RFC 4231, RFC 2202, RFC 4648), and round trips, rotation
 * and tampering for the AES-256-GCM keyring.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "crypto.h"

static void expect_sha256_hex(const unsigned char *got, const char *hex)
{
    char buf[2 * CS_SHA256_LEN + 1];
    cs_hex_encode(got, CS_SHA256_LEN, buf);
    cr_expect_str_eq(buf, hex);
}

static void expect_sha1_hex(const unsigned char *got, const char *hex)
{
    char buf[2 * CS_SHA1_LEN + 1];
    cs_hex_encode(got, CS_SHA1_LEN, buf);
    cr_expect_str_eq(buf, hex);
}

/* ---- SHA-256 ------------------------------------------------------------ */

Test(crypto, sha256_abc)
{
    unsigned char d[CS_SHA256_LEN];
    cs_sha256("abc", 3, NULL, 0, d);
    expect_sha256_hex(
        d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(crypto, sha256_two_parts_equal_one)
{
    unsigned char d[CS_SHA256_LEN];
    cs_sha256("a", 1, "bc", 2, d);
    expect_sha256_hex(
        d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cs_sha256(NULL, 0, "abc", 3, d);
    expect_sha256_hex(
        d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(crypto, sha256_empty)
{
    unsigned char d[CS_SHA256_LEN];
    cs_sha256(NULL, 0, NULL, 0, d);
    expect_sha256_hex(
        d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* ---- HMAC-SHA256, RFC 4231 ---------------------------------------------- */

struct mac_case {
    unsigned char key[131];
    size_t keylen;
    const char *data; /* used when datalen is 0 */
    unsigned char fill;
    size_t datalen;
    const char *hex;
};

static size_t case_data(const struct mac_case *c, unsigned char *buf)
{
    if (c->datalen) {
        memset(buf, c->fill, c->datalen);
        return c->datalen;
    }
    memcpy(buf, c->data, strlen(c->data));
    return strlen(c->data);
}

static void fill(unsigned char *k, unsigned char v, size_t n)
{
    memset(k, v, n);
}

Test(crypto, hmac_sha256_rfc4231)
{
    struct mac_case c[6];
    memset(c, 0, sizeof(c));
    fill(c[0].key, 0x0b, 20);
    c[0].keylen = 20;
    c[0].data = "Hi There";
    c[0].hex =
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
    memcpy(c[1].key, "Jefe", 4);
    c[1].keylen = 4;
    c[1].data = "what do ya want for nothing?";
    c[1].hex =
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    fill(c[2].key, 0xaa, 20);
    c[2].keylen = 20;
    c[2].fill = 0xdd;
    c[2].datalen = 50;
    c[2].hex =
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
    for (int i = 0; i < 25; i++)
        c[3].key[i] = (unsigned char)(i + 1);
    c[3].keylen = 25;
    c[3].fill = 0xcd;
    c[3].datalen = 50;
    c[3].hex =
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";
    /* Case 5 tests truncation to 128 bits, which we never use. */
    fill(c[4].key, 0xaa, 131);
    c[4].keylen = 131;
    c[4].data = "Test Using Larger Than Block-Size Key - Hash Key First";
    c[4].hex =
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
    fill(c[5].key, 0xaa, 131);
    c[5].keylen = 131;
    c[5].data = "This is a test using a larger than block-size key and a "
                "larger than block-size data. The key needs to be hashed "
                "before being used by the HMAC algorithm.";
    c[5].hex =
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";

    for (size_t i = 0; i < CS_ARRAY_LEN(c); i++) {
        unsigned char data[256];
        unsigned char d[CS_SHA256_LEN];
        size_t n = case_data(&c[i], data);
        cs_hmac_sha256(c[i].key, c[i].keylen, data, n, NULL, 0, NULL, 0, d);
        expect_sha256_hex(d, c[i].hex);

        /* The same message split into three parts gives the same MAC. */
        size_t a = n / 3, b = n / 2;
        cs_hmac_sha256(c[i].key, c[i].keylen, data, a, data + a, b - a,
                       data + b, n - b, d);
        expect_sha256_hex(d, c[i].hex);
    }
}

Test(crypto, hmac_sha256_parts_in_any_slot)
{
    unsigned char d[CS_SHA256_LEN];
    const char *want =
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    cs_hmac_sha256("Jefe", 4, NULL, 0, NULL, 0, "what do ya want for nothing?",
                   28, d);
    expect_sha256_hex(d, want);
    cs_hmac_sha256("Jefe", 4, "what do ya ", 11, NULL, 0, "want for nothing?",
                   17, d);
    expect_sha256_hex(d, want);
}

Test(crypto, hmac_sha256_empty_key_and_message)
{
    unsigned char d[CS_SHA256_LEN];
    cs_hmac_sha256("", 0, NULL, 0, NULL, 0, NULL, 0, d);
    expect_sha256_hex(
        d, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* ---- HMAC-SHA1, RFC 2202 ------------------------------------------------ */

Test(crypto, hmac_sha1_rfc2202)
{
    struct mac_case c[7];
    memset(c, 0, sizeof(c));
    fill(c[0].key, 0x0b, 20);
    c[0].keylen = 20;
    c[0].data = "Hi There";
    c[0].hex = "b617318655057264e28bc0b6fb378c8ef146be00";
    memcpy(c[1].key, "Jefe", 4);
    c[1].keylen = 4;
    c[1].data = "what do ya want for nothing?";
    c[1].hex = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
    fill(c[2].key, 0xaa, 20);
    c[2].keylen = 20;
    c[2].fill = 0xdd;
    c[2].datalen = 50;
    c[2].hex = "125d7342b9ac11cd91a39af48aa17b4f63f175d3";
    for (int i = 0; i < 25; i++)
        c[3].key[i] = (unsigned char)(i + 1);
    c[3].keylen = 25;
    c[3].fill = 0xcd;
    c[3].datalen = 50;
    c[3].hex = "4c9007f4026250c6bc8414f9bf50c86c2d7235da";
    fill(c[4].key, 0x0c, 20);
    c[4].keylen = 20;
    c[4].data = "Test With Truncation";
    c[4].hex = "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04";
    fill(c[5].key, 0xaa, 80);
    c[5].keylen = 80;
    c[5].data = "Test Using Larger Than Block-Size Key - Hash Key First";
    c[5].hex = "aa4ae5e15272d00e95705637ce8a3b55ed402112";
    fill(c[6].key, 0xaa, 80);
    c[6].keylen = 80;
    c[6].data = "Test Using Larger Than Block-Size Key and Larger Than One "
                "Block-Size Data";
    c[6].hex = "e8e99d0f45237d786d6bbaa7965c7808bbff1a91";

    for (size_t i = 0; i < CS_ARRAY_LEN(c); i++) {
        unsigned char data[256];
        unsigned char d[CS_SHA1_LEN];
        size_t n = case_data(&c[i], data);
        cs_hmac_sha1(c[i].key, c[i].keylen, data, n, d);
        expect_sha1_hex(d, c[i].hex);
    }
}

/* ---- Hex ---------------------------------------------------------------- */

Test(crypto, hex_encode_lower_case)
{
    const unsigned char in[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
    char out[11];
    cs_hex_encode(in, sizeof(in), out);
    cr_expect_str_eq(out, "0001abff7f");
    cs_hex_encode(in, 0, out);
    cr_expect_str_eq(out, "");
}

Test(crypto, hex_decode_either_case)
{
    unsigned char out[4];
    cr_assert_eq(cs_hex_decode("DeadBEEF", 8, out, sizeof(out)), 4);
    cr_expect_eq(out[0], 0xde);
    cr_expect_eq(out[1], 0xad);
    cr_expect_eq(out[2], 0xbe);
    cr_expect_eq(out[3], 0xef);
    cr_expect_eq(cs_hex_decode("", 0, out, sizeof(out)), 0);
}

Test(crypto, hex_decode_rejects_malformed)
{
    unsigned char out[4];
    cr_expect_eq(cs_hex_decode("abc", 3, out, sizeof(out)), -1);
    cr_expect_eq(cs_hex_decode("zz", 2, out, sizeof(out)), -1);
    cr_expect_eq(cs_hex_decode("0g", 2, out, sizeof(out)), -1);
    cr_expect_eq(cs_hex_decode(" 01", 3, out, sizeof(out)), -1);
    cr_expect_eq(cs_hex_decode("0x01", 4, out, sizeof(out)), -1);
    /* Longer than cap. */
    cr_expect_eq(cs_hex_decode("0102030405", 10, out, sizeof(out)), -1);
    /* Only n characters are read, even when more follow. */
    cr_expect_eq(cs_hex_decode("01zz", 2, out, sizeof(out)), 1);
    cr_expect_eq(out[0], 0x01);
}

/* ---- Base64, RFC 4648 section 10 ---------------------------------------- */

static const char *const b64_plain[] = {"",     "f",     "fo",    "foo",
                                        "foob", "fooba", "foobar"};
static const char *const b64_coded[] = {
    "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

Test(crypto, base64_encode_rfc4648)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(b64_plain); i++) {
        char *s = cs_base64_encode((const unsigned char *)b64_plain[i],
                                   strlen(b64_plain[i]));
        cr_expect_str_eq(s, b64_coded[i]);
        free(s);
    }
}

Test(crypto, base64_decode_rfc4648_padded_and_unpadded)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(b64_plain); i++) {
        unsigned char out[8];
        const char *in = b64_coded[i];
        size_t n = strlen(in);
        size_t want = strlen(b64_plain[i]);
        cr_assert_eq(cs_base64_decode(in, n, out, sizeof(out)), (int)want,
                     "decoding '%s'", in);
        cr_expect_eq(memcmp(out, b64_plain[i], want), 0);

        while (n && in[n - 1] == '=')
            n--;
        memset(out, 0, sizeof(out));
        cr_assert_eq(cs_base64_decode(in, n, out, sizeof(out)), (int)want,
                     "decoding '%.*s'", (int)n, in);
        cr_expect_eq(memcmp(out, b64_plain[i], want), 0);
    }
}

Test(crypto, base64_round_trip_all_byte_values)
{
    unsigned char in[256];
    unsigned char out[256];
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof(in); n += 37) {
        char *s = cs_base64_encode(in, n);
        cr_expect_eq(strlen(s), (n + 2) / 3 * 4);
        cr_assert_eq(cs_base64_decode(s, strlen(s), out, sizeof(out)), (int)n);
        cr_expect_eq(memcmp(in, out, n), 0);
        free(s);
    }
}

Test(crypto, base64_decode_rejects_malformed)
{
    static const char *const bad[] = {
        "Z",        /* a lone character cannot encode a byte */
        "Zm9vY",    /* same after a full group */
        "Zg=",      /* padding that does not complete the group */
        "Zg===",    /* too much padding */
        "Zm9v====", /* padding after a full group */
        "=Zm9",     /* padding first */
        "Zm=v",     /* padding in the middle */
        "Zh==",     /* non-zero unused bits */
        "Zm9=",     /* non-zero unused bits, one pad */
        "Zm9v\n",   /* whitespace */
        "Zm 9v",    /* inner space */
        "Zm9v-_",   /* URL-safe alphabet */
        "Zm9v!A==", /* stray character */
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        unsigned char out[16];
        cr_expect_eq(cs_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)),
                     -1, "'%s' accepted", bad[i]);
    }
}

Test(crypto, base64_decode_respects_cap)
{
    unsigned char out[6];
    cr_expect_eq(cs_base64_decode("Zm9vYmFy", 8, out, 5), -1);
    cr_expect_eq(cs_base64_decode("Zm9vYmFy", 8, out, 6), 6);
    cr_expect_eq(memcmp(out, "foobar", 6), 0);
    cr_expect_eq(cs_base64_decode("Zm9vYmE=", 8, out, 5), 5);
    cr_expect_eq(cs_base64_decode("Zm9vYmE=", 8, out, 4), -1);
}

/* ---- Constant-time comparison, randomness, UUIDs ------------------------ */

Test(crypto, ct_equal)
{
    cr_expect(cs_ct_equal("abcdef", "abcdef", 6));
    cr_expect_not(cs_ct_equal("abcdef", "abcdeg", 6));
    cr_expect_not(cs_ct_equal("xbcdef", "abcdef", 6));
    cr_expect(cs_ct_equal("abc", "abd", 2));
    cr_expect(cs_ct_equal("a", "b", 0));
}

Test(crypto, random_fills_and_differs)
{
    unsigned char a[32];
    unsigned char b[32];
    unsigned char zero[32] = {0};
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    cr_assert_eq(cs_random(a, sizeof(a)), 0);
    cr_assert_eq(cs_random(b, sizeof(b)), 0);
    cr_expect_neq(memcmp(a, b, sizeof(a)), 0);
    cr_expect_neq(memcmp(a, zero, sizeof(a)), 0);
    cr_expect_eq(cs_random(a, 0), 0);
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

Test(crypto, uuid4_format)
{
    char a[37];
    char b[37];
    cs_uuid4(a);
    cs_uuid4(b);
    cr_assert_eq(strlen(a), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_expect_eq(a[i], '-', "position %d of %s", i, a);
        else
            cr_expect(is_lower_hex(a[i]), "position %d of %s", i, a);
    }
    cr_expect_eq(a[14], '4', "version nibble of %s", a);
    cr_expect(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b',
              "variant nibble of %s", a);
    cr_expect_str_neq(a, b);
}

/* ---- Keyring ------------------------------------------------------------ */

/* base64 of bytes 0x00..0x1f, 0x20..0x3f and 32 x 0x11. */
#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define K2 "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
#define K3 "ERERERERERERERERERERERERERERERERERERERERERE="

static struct cs_keyring *keyring(const char *spec)
{
    struct cs_err err;
    cs_err_clear(&err);
    struct cs_keyring *kr = cs_keyring_new(spec, &err);
    cr_assert_not_null(kr, "spec '%s': %s", spec, err.msg);
    return kr;
}

Test(keyring, seal_open_round_trip)
{
    struct cs_keyring *kr = keyring("k1:" K1);
    const char *secret = "pk_live_0123456789 with spaces and \xc3\xa9";
    char *sealed = cs_seal(kr, secret, strlen(secret));
    cr_assert_not_null(sealed);
    cr_expect_eq(strncmp(sealed, "v1:k1:", 6), 0, "sealed as '%s'", sealed);
    /* nonce 12 + plaintext + tag 16, base64 with padding. */
    size_t raw = 12 + strlen(secret) + 16;
    cr_expect_eq(strlen(sealed), 6 + (raw + 2) / 3 * 4);
    cr_expect_null(strstr(sealed, "pk_live"));

    size_t n = 0;
    struct cs_err err;
    cs_err_clear(&err);
    char *plain = cs_open(kr, sealed, &n, &err);
    cr_assert_not_null(plain, "%s", err.msg);
    cr_expect_eq(n, strlen(secret));
    cr_expect_str_eq(plain, secret);
    free(plain);
    free(sealed);
    cs_keyring_free(kr);
}

Test(keyring, seal_is_randomised)
{
    struct cs_keyring *kr = keyring("k1:" K1);
    char *a = cs_seal(kr, "same", 4);
    char *b = cs_seal(kr, "same", 4);
    cr_expect_str_neq(a, b);
    free(a);
    free(b);
    cs_keyring_free(kr);
}

Test(keyring, empty_and_binary_plaintext)
{
    struct cs_keyring *kr = keyring("k1:" K1);
    char *sealed = cs_seal(kr, "", 0);
    size_t n = 99;
    char *plain = cs_open(kr, sealed, &n, NULL);
    cr_assert_not_null(plain);
    cr_expect_eq(n, 0);
    cr_expect_eq(plain[0], '\0');
    free(plain);
    free(sealed);

    const unsigned char bin[] = {0x00, 0xff, 0x00, 0x10};
    sealed = cs_seal(kr, bin, sizeof(bin));
    plain = cs_open(kr, sealed, &n, NULL);
    cr_assert_not_null(plain);
    cr_expect_eq(n, sizeof(bin));
    cr_expect_eq(memcmp(plain, bin, sizeof(bin)), 0);
    cr_expect_eq(plain[n], '\0');
    free(plain);
    free(sealed);
    cs_keyring_free(kr);
}

Test(keyring, rotation_opens_with_older_key)
{
    struct cs_keyring *old = keyring("k1:" K1);
    char *sealed = cs_seal(old, "rotate me", 9);
    cs_keyring_free(old);

    struct cs_keyring *kr = keyring("k2:" K2 ",k1:" K1);
    size_t n = 0;
    char *plain = cs_open(kr, sealed, &n, NULL);
    cr_assert_not_null(plain);
    cr_expect_str_eq(plain, "rotate me");
    free(plain);
    free(sealed);

    /* New secrets are sealed with the first key. */
    sealed = cs_seal(kr, "new", 3);
    cr_expect_eq(strncmp(sealed, "v1:k2:", 6), 0, "sealed as '%s'", sealed);
    free(sealed);
    cs_keyring_free(kr);
}

Test(keyring, open_fails_for_unknown_key_id)
{
    struct cs_keyring *a = keyring("k1:" K1);
    struct cs_keyring *b = keyring("k2:" K2);
    char *sealed = cs_seal(a, "x", 1);
    struct cs_err err;
    cs_err_clear(&err);
    cr_expect_null(cs_open(b, sealed, NULL, &err));
    cr_expect_eq(err.code, CS_ENOENT);
    cr_expect_neq(err.msg[0], '\0');
    free(sealed);
    cs_keyring_free(a);
    cs_keyring_free(b);
}

Test(keyring, open_fails_for_same_id_other_key)
{
    struct cs_keyring *a = keyring("k1:" K1);
    struct cs_keyring *b = keyring("k1:" K3);
    char *sealed = cs_seal(a, "x", 1);
    struct cs_err err;
    cs_err_clear(&err);
    cr_expect_null(cs_open(b, sealed, NULL, &err));
    cr_expect_eq(err.code, CS_EAUTH);
    free(sealed);
    cs_keyring_free(a);
    cs_keyring_free(b);
}

/*
 * Flip one bit of the raw nonce | ciphertext | tag at offset `at` (from
 * the end when negative), re-encode, and expect authentication to fail.
 */
static void expect_tamper_fails(long at)
{
    struct cs_keyring *kr = keyring("k1:" K1);
    const char *secret = "a secret worth protecting";
    char *sealed = cs_seal(kr, secret, strlen(secret));
    const char *b64 = sealed + 6;
    unsigned char raw[128];
    int n = cs_base64_decode(b64, strlen(b64), raw, sizeof(raw));
    cr_assert_eq(n, 12 + (int)strlen(secret) + 16);
    size_t off = at >= 0 ? (size_t)at : (size_t)(n + at);
    raw[off] ^= 0x01;
    char *b64t = cs_base64_encode(raw, (size_t)n);
    char *tampered = xasprintf("v1:k1:%s", b64t);

    struct cs_err err;
    cs_err_clear(&err);
    cr_expect_null(cs_open(kr, tampered, NULL, &err), "offset %zu", off);
    cr_expect_eq(err.code, CS_EAUTH, "offset %zu", off);

    free(tampered);
    free(b64t);
    free(sealed);
    cs_keyring_free(kr);
}

Test(keyring, tamper_nonce_fails)
{
    expect_tamper_fails(0);
    expect_tamper_fails(11);
}

Test(keyring, tamper_ciphertext_fails)
{
    expect_tamper_fails(12);
    expect_tamper_fails(20);
}

Test(keyring, tamper_tag_fails)
{
    expect_tamper_fails(-16);
    expect_tamper_fails(-1);
}

Test(keyring, tamper_key_id_fails)
{
    /* Both ids carry the same key: only the bound id tells them apart. */
    struct cs_keyring *kr = keyring("k1:" K1 ",k9:" K1);
    char *sealed = cs_seal(kr, "bound", 5);
    cr_assert_eq(strncmp(sealed, "v1:k1:", 6), 0);
    sealed[4] = '9';
    struct cs_err err;
    cs_err_clear(&err);
    cr_expect_null(cs_open(kr, sealed, NULL, &err));
    cr_expect_eq(err.code, CS_EAUTH);
    free(sealed);
    cs_keyring_free(kr);
}

Test(keyring, truncated_or_extended_fails)
{
    struct cs_keyring *kr = keyring("k1:" K1);
    char *sealed = cs_seal(kr, "abcdef", 6);
    size_t len = strlen(sealed);
    struct cs_err err;

    /* Dropping a whole base64 group leaves valid base64 but a bad tag. */
    char *shorter = xstrndup(sealed, len - 4);
    cs_err_clear(&err);
    cr_expect_null(cs_open(kr, shorter, NULL, &err));
    cr_expect_eq(err.code, CS_EAUTH);
    free(shorter);

    char *longer = xasprintf("%sAAAA", sealed);
    cs_err_clear(&err);
    cr_expect_null(cs_open(kr, longer, NULL, &err));
    cr_expect_neq(err.code, 0);
    free(longer);
    free(sealed);
    cs_keyring_free(kr);
}

Test(keyring, open_rejects_malformed)
{
    struct cs_keyring *kr = keyring("k1:" K1);
    static const char *const bad[] = {
        "",
        "v1",
        "v1:",
        "v2:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "V1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1::AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:k1",
        "v1:k 1:AAAA",
        "v1:k1:not base64!",
        "v1:k1:AAAA AAAA",
        /* 27 bytes: one short of nonce + tag. */
        "v1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:k1:",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct cs_err err;
        size_t n = 77;
        cs_err_clear(&err);
        cr_expect_null(cs_open(kr, bad[i], &n, &err), "'%s' opened", bad[i]);
        cr_expect_eq(err.code, CS_EINVAL, "'%s' gave %d", bad[i], err.code);
        cr_expect_neq(err.msg[0], '\0');
    }
    cs_keyring_free(kr);
}

Test(keyring, open_rejects_all_zero_of_minimum_length)
{
    /* 28 zero bytes: well-formed, but the tag cannot verify. */
    struct cs_keyring *kr = keyring("k1:" K1);
    struct cs_err err;
    cs_err_clear(&err);
    cr_expect_null(cs_open(
        kr, "v1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", NULL, &err));
    cr_expect_eq(err.code, CS_EAUTH);
    cs_keyring_free(kr);
}

Test(keyring, spec_rejects_malformed)
{
    static const char *const bad[] = {
        "",
        ",",
        "k1",
        "k1:",
        ":" K1,
        "k 1:" K1,
        "k.1:" K1,
        "k1:" K1 ",",
        ",k1:" K1,
        "k1:" K1 ", k2:" K2,
        "k1:" K1 ",k1:" K2,                                /* duplicate id */
        "abcdefghijklmnopq:" K1,                           /* 17-character id */
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", /* 31 bytes */
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", /* 33 bytes */
        "k1:" K1 "\n",
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=x",
        "k1:not-base64-at-all",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        struct cs_err err;
        cs_err_clear(&err);
        cr_expect_null(cs_keyring_new(bad[i], &err), "'%s' accepted", bad[i]);
        cr_expect_eq(err.code, CS_EINVAL, "'%s'", bad[i]);
        cr_expect_neq(err.msg[0], '\0', "'%s'", bad[i]);
    }
    cr_expect_null(cs_keyring_new(NULL, NULL));
}

Test(keyring, spec_accepts_valid_ids)
{
    struct cs_keyring *kr =
        keyring("abcdefghijklmnop:" K1 ",A-_9:" K2 ",x:" K3);
    char *sealed = cs_seal(kr, "ok", 2);
    cr_expect_eq(strncmp(sealed, "v1:abcdefghijklmnop:", 20), 0);
    free(sealed);
    cs_keyring_free(kr);
    cs_keyring_free(NULL);
}
