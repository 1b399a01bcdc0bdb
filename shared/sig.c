/*
 * sig.c - inbound webhook signature verification; see sig.h and table 0.1
 * of providers.md for each scheme's source.
 *
 * The parsers are strict: a header is read only up to its NUL, timestamps
 * are plain decimal digits without a sign or leading zeros, and every
 * signature value must decode to exactly the digest length. The only
 * leniency is optional spaces after the commas of "k=v,k=v" headers and
 * runs of spaces between Standard Webhooks entries. Signed content is
 * never concatenated in memory; it is fed to the HMAC in parts.
 *
 * The order of the checks follows each sender's SDK: Retell and Standard
 * Webhooks check the timestamp before the signature, Stripe checks the
 * signature first, so a stale request with a valid signature is reported
 * as stale and a forged one as a bad signature.
 */
#include "sig.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"

/* Timestamps are at most 18 digits, so they always fit in an int64_t. */
#define TS_DIGITS_MAX 18
/* Standard Webhooks secrets are 24-64 bytes; leave room for longer ones. */
#define STD_SECRET_MAX 128
#define STD_PREFIX "whsec_"

/* ---- Small parsing helpers ---------------------------------------------- */

/* Parse n decimal digits (no sign, no leading zero) into *out. */
static int parse_ts(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > TS_DIGITS_MAX || (n > 1 && s[0] == '0'))
        return CS_EINVAL;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CS_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* now - t for t >= 0, saturating instead of overflowing. */
static int64_t age_of(int64_t now, int64_t t)
{
    if (now < INT64_MIN + t)
        return INT64_MIN;
    return now - t;
}

static bool within(int64_t now, int64_t t, int64_t tolerance)
{
    int64_t age = age_of(now, t);
    if (tolerance < 0)
        tolerance = 0;
    return age <= tolerance && age >= -tolerance;
}

/* A hex signature of exactly CS_SHA256_LEN bytes. */
static int decode_hex256(const char *s, size_t n,
                         unsigned char out[CS_SHA256_LEN])
{
    if (n != 2 * CS_SHA256_LEN ||
        cs_hex_decode(s, n, out, CS_SHA256_LEN) != CS_SHA256_LEN)
        return CS_EINVAL;
    return 0;
}

/* One "key=value" item of a comma-separated header. */
struct kv {
    const char *key;
    size_t klen;
    const char *val;
    size_t vlen;
};

struct kv_iter {
    const char *p;
    bool started;
};

static bool key_is(const struct kv *kv, const char *key)
{
    return kv->klen == strlen(key) && memcmp(kv->key, key, kv->klen) == 0;
}

/*
 * Next item of "k=v[, k=v]...": returns 1 with *kv filled, 0 at the end,
 * or CS_EINVAL. Keys and values are non-empty and hold no spaces or
 * commas; spaces are allowed only right after a comma.
 */
static int kv_next(struct kv_iter *it, struct kv *kv)
{
    const char *p = it->p;
    if (it->started) {
        if (*p == '\0')
            return 0;
        p++; /* the comma that ended the previous value */
        while (*p == ' ')
            p++;
    }
    it->started = true;

    const char *k = p;
    while (*p && *p != '=' && *p != ',' && *p != ' ')
        p++;
    if (*p != '=' || p == k)
        return CS_EINVAL;
    kv->key = k;
    kv->klen = (size_t)(p - k);
    p++;
    const char *v = p;
    while (*p && *p != ',' && *p != ' ')
        p++;
    if (p == v || *p == ' ')
        return CS_EINVAL;
    kv->val = v;
    kv->vlen = (size_t)(p - v);
    it->p = p;
    return 1;
}

/* ---- Retell ------------------------------------------------------------- */

int cs_sig_retell(const char *header, const void *body, size_t n,
                  const char *const *keys, size_t nkeys, int64_t now_ms,
                  int64_t tolerance_ms)
{
    if (!header || !*header)
        return CS_ENOENT;

    struct kv_iter it = {header, false};
    struct kv kv;
    const char *ts = NULL;
    size_t tslen = 0;
    int64_t v = 0;
    unsigned char got[CS_SHA256_LEN];
    bool have_d = false;
    int rc;
    while ((rc = kv_next(&it, &kv)) == 1) {
        if (key_is(&kv, "v") && !ts) {
            if (parse_ts(kv.val, kv.vlen, &v) != 0)
                return CS_EINVAL;
            ts = kv.val;
            tslen = kv.vlen;
        } else if (key_is(&kv, "d") && !have_d) {
            if (decode_hex256(kv.val, kv.vlen, got) != 0)
                return CS_EINVAL;
            have_d = true;
        } else {
            return CS_EINVAL;
        }
    }
    if (rc < 0 || !ts || !have_d)
        return CS_EINVAL;

    if (!within(now_ms, v, tolerance_ms))
        return CS_ESTALE;

    bool match = false;
    for (size_t i = 0; i < nkeys; i++) {
        unsigned char want[CS_SHA256_LEN];
        if (!keys[i] || !*keys[i])
            continue;
        cs_hmac_sha256(keys[i], strlen(keys[i]), body, n, ts, tslen, NULL, 0,
                       want);
        match |= cs_ct_equal(want, got, sizeof(want));
    }
    return match ? 0 : CS_EAUTH;
}

/* ---- "t=<s>,v1=<hex>" headers: Stripe and our outbound trigger ---------- */

struct tv1 {
    const char *t;
    size_t tlen;
    int64_t ts;
};

/*
 * Validate a "t=...,v1=..." header: exactly one t, at least one v1, every
 * v1 64 hex digits. Other keys are ignored when `other_keys_ok` (Stripe
 * adds v0 and may add schemes), else malformed.
 */
static int tv1_parse(const char *header, bool other_keys_ok, struct tv1 *out)
{
    struct kv_iter it = {header, false};
    struct kv kv;
    size_t nv1 = 0;
    int rc;
    out->t = NULL;
    while ((rc = kv_next(&it, &kv)) == 1) {
        if (key_is(&kv, "t")) {
            if (out->t || parse_ts(kv.val, kv.vlen, &out->ts) != 0)
                return CS_EINVAL;
            out->t = kv.val;
            out->tlen = kv.vlen;
        } else if (key_is(&kv, "v1")) {
            unsigned char sig[CS_SHA256_LEN];
            if (decode_hex256(kv.val, kv.vlen, sig) != 0)
                return CS_EINVAL;
            nv1++;
        } else if (!other_keys_ok) {
            return CS_EINVAL;
        }
    }
    if (rc < 0 || !out->t || nv1 == 0)
        return CS_EINVAL;
    return 0;
}

/* Does any v1 of an already validated header equal HMAC(secret, t.body)? */
static bool tv1_match(const char *header, const struct tv1 *tv,
                      const void *body, size_t n, const char *secret)
{
    struct kv_iter it = {header, false};
    struct kv kv;
    unsigned char want[CS_SHA256_LEN];
    bool match = false;

    cs_hmac_sha256(secret, strlen(secret), tv->t, tv->tlen, ".", 1, body, n,
                   want);
    while (kv_next(&it, &kv) == 1) {
        unsigned char sig[CS_SHA256_LEN];
        if (!key_is(&kv, "v1") || decode_hex256(kv.val, kv.vlen, sig) != 0)
            continue;
        match |= cs_ct_equal(want, sig, sizeof(sig));
    }
    return match;
}

int cs_sig_stripe(const char *header, const void *body, size_t n,
                  const char *secret, int64_t now_s, int64_t tolerance_s)
{
    if (!header || !*header)
        return CS_ENOENT;
    struct tv1 tv;
    if (tv1_parse(header, true, &tv) != 0)
        return CS_EINVAL;
    if (!secret || !*secret || !tv1_match(header, &tv, body, n, secret))
        return CS_EAUTH;
    /* One-sided like stripe-node: only age counts, the future is fine. */
    if (age_of(now_s, tv.ts) > tolerance_s)
        return CS_ESTALE;
    return 0;
}

/* ---- Standard Webhooks -------------------------------------------------- */

/* One space-separated "version,signature" entry of webhook-signature. */
struct std_entry {
    bool v1;
    unsigned char sig[CS_SHA256_LEN];
};

/*
 * Next entry: returns 1 with *e filled, 0 at the end, or CS_EINVAL. Only
 * "v1" signatures are decoded (and must be base64 of 32 bytes); other
 * versions such as "v1a" are skipped but must still look like
 * "<version>,<value>".
 */
static int std_next(const char **pp, struct std_entry *e)
{
    const char *p = *pp;
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return 0;
    const char *ver = p;
    while (*p && *p != ',' && *p != ' ')
        p++;
    if (*p != ',' || p == ver)
        return CS_EINVAL;
    size_t verlen = (size_t)(p - ver);
    p++;
    const char *val = p;
    while (*p && *p != ' ')
        p++;
    size_t vallen = (size_t)(p - val);
    if (vallen == 0 || memchr(val, ',', vallen))
        return CS_EINVAL;
    e->v1 = verlen == 2 && memcmp(ver, "v1", 2) == 0;
    if (e->v1 &&
        cs_base64_decode(val, vallen, e->sig, sizeof(e->sig)) != CS_SHA256_LEN)
        return CS_EINVAL;
    *pp = p;
    return 1;
}

int cs_sig_standard(const char *id, const char *timestamp,
                    const char *signatures, const void *body, size_t n,
                    const char *const *secrets, size_t nsecrets, int64_t now_s,
                    int64_t tolerance_s)
{
    if (!id || !*id || !timestamp || !*timestamp || !signatures || !*signatures)
        return CS_ENOENT;

    int64_t ts;
    size_t tslen = strlen(timestamp);
    if (parse_ts(timestamp, tslen, &ts) != 0)
        return CS_EINVAL;
    const char *p = signatures;
    struct std_entry e;
    int rc;
    while ((rc = std_next(&p, &e)) == 1)
        ;
    if (rc < 0)
        return CS_EINVAL;

    if (!within(now_s, ts, tolerance_s))
        return CS_ESTALE;

    /* The signed content is "<id>" then ".<timestamp>." then the body. */
    char mid[TS_DIGITS_MAX + 3];
    int midlen = snprintf(mid, sizeof(mid), ".%s.", timestamp);
    CS_ASSERT(midlen > 0 && (size_t)midlen < sizeof(mid));

    bool match = false;
    for (size_t i = 0; i < nsecrets; i++) {
        const char *s = secrets[i];
        unsigned char key[STD_SECRET_MAX];
        unsigned char want[CS_SHA256_LEN];
        if (!s)
            continue;
        if (strncmp(s, STD_PREFIX, strlen(STD_PREFIX)) == 0)
            s += strlen(STD_PREFIX);
        /* A secret that is not base64 was misconfigured; it matches none. */
        int keylen = cs_base64_decode(s, strlen(s), key, sizeof(key));
        if (keylen <= 0)
            continue;
        cs_hmac_sha256(key, (size_t)keylen, id, strlen(id), mid, (size_t)midlen,
                       body, n, want);
        OPENSSL_cleanse(key, sizeof(key));
        p = signatures;
        while (std_next(&p, &e) == 1)
            if (e.v1)
                match |= cs_ct_equal(want, e.sig, sizeof(want));
    }
    return match ? 0 : CS_EAUTH;
}

/* ---- Cal.com ------------------------------------------------------------ */

int cs_sig_calcom(const char *header, const void *body, size_t n,
                  const char *secret)
{
    unsigned char got[CS_SHA256_LEN];
    unsigned char want[CS_SHA256_LEN];
    if (!header || !*header)
        return CS_ENOENT;
    if (decode_hex256(header, strlen(header), got) != 0)
        return CS_EINVAL;
    if (!secret || !*secret)
        return CS_EAUTH;
    cs_hmac_sha256(secret, strlen(secret), body, n, NULL, 0, NULL, 0, want);
    return cs_ct_equal(want, got, sizeof(want)) ? 0 : CS_EAUTH;
}

/* ---- CallRail ----------------------------------------------------------- */

int cs_sig_callrail(const char *header, const void *body, size_t n,
                    const char *const *secrets, size_t nsecrets)
{
    unsigned char got[CS_SHA1_LEN];
    if (!header || !*header)
        return CS_ENOENT;
    if (cs_base64_decode(header, strlen(header), got, sizeof(got)) !=
        CS_SHA1_LEN)
        return CS_EINVAL;

    bool match = false;
    for (size_t i = 0; i < nsecrets; i++) {
        unsigned char want[CS_SHA1_LEN];
        if (!secrets[i] || !*secrets[i])
            continue;
        cs_hmac_sha1(secrets[i], strlen(secrets[i]), body, n, want);
        match |= cs_ct_equal(want, got, sizeof(want));
    }
    return match ? 0 : CS_EAUTH;
}

/* ---- Outbound trigger --------------------------------------------------- */

/*
 * Compare a presented secret with the configured one without revealing
 * its length or where they differ: both are hashed to fixed-size digests
 * first, and only the digests are compared.
 */
static bool secret_equal(const char *got, const char *want)
{
    unsigned char a[CS_SHA256_LEN];
    unsigned char b[CS_SHA256_LEN];
    cs_sha256(got, strlen(got), NULL, 0, a);
    cs_sha256(want, strlen(want), NULL, 0, b);
    return cs_ct_equal(a, b, sizeof(a));
}

int cs_sig_outbound(const char *secret_header, const char *signature_header,
                    const void *body, size_t n, const char *secret,
                    int64_t now_s, int64_t tolerance_s)
{
    bool have_secret = secret && *secret;
    if (signature_header && *signature_header) {
        struct tv1 tv;
        if (tv1_parse(signature_header, false, &tv) != 0)
            return CS_EINVAL;
        if (!within(now_s, tv.ts, tolerance_s))
            return CS_ESTALE;
        if (!have_secret || !tv1_match(signature_header, &tv, body, n, secret))
            return CS_EAUTH;
        return 0;
    }
    if (secret_header && *secret_header) {
        if (!have_secret || !secret_equal(secret_header, secret))
            return CS_EAUTH;
        return 0;
    }
    return CS_ENOENT;
}

const char *cs_sig_reason(int rc)
{
    switch (rc) {
    case CS_ENOENT:
        return "missing_signature";
    case CS_EINVAL:
        return "malformed_signature";
    case CS_ESTALE:
        return "stale_timestamp";
    default:
        return "bad_signature";
    }
}
