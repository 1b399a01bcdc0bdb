/*
 * test_sig.c - webhook signature schemes against fixed vectors.
 *
 * The expected signatures below were computed outside this code base
 * (Python's hmac module) from the fixed keys, timestamps and bodies shown
 * next to them. The Standard Webhooks vector is the published one from
 * the standard-webhooks reference library's test suite.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "sig.h"

#define TOL_S 300
#define TOL_MS 300000

/* ---- Reasons ------------------------------------------------------------ */

Test(sig, reason_strings)
{
    cr_expect_str_eq(cs_sig_reason(CS_ENOENT), "missing_signature");
    cr_expect_str_eq(cs_sig_reason(CS_EINVAL), "malformed_signature");
    cr_expect_str_eq(cs_sig_reason(CS_ESTALE), "stale_timestamp");
    cr_expect_str_eq(cs_sig_reason(CS_EAUTH), "bad_signature");
    cr_expect_str_eq(cs_sig_reason(CS_EIO), "bad_signature");
    cr_expect_str_eq(cs_sig_reason(12345), "bad_signature");
}

/* ---- Retell ------------------------------------------------------------- */

/* HMAC-SHA256(key, body || "1700000000000"), hex. */
#define RT_BODY "{\"event\":\"call_ended\",\"call\":{\"call_id\":\"c1\"}}"
#define RT_TS 1700000000000LL
#define RT_K1 "key_retell_one"
#define RT_K2 "key_retell_two"
#define RT_SIG1                                                                \
    "f98604bb111f59fd68779e5c6ee43f1973db0b7ae8cef46a87ba9d204f74cdce"
#define RT_SIG2                                                                \
    "6cdc83f55828006bb46b5adf57c1f6c5b914e5eabb5832eb8b9ba23b276402f4"
#define RT_SIG_EMPTY                                                           \
    "09193f93848feecfd7faf5ee3eff776795386c30d282f43e278e9b23b6281390"

static int retell(const char *header, const char *body, const char *key,
                  int64_t now_ms)
{
    const char *keys[] = {key};
    return cs_sig_retell(header, body, strlen(body), keys, 1, now_ms, TOL_MS);
}

Test(retell, valid)
{
    cr_expect_eq(retell("v=1700000000000,d=" RT_SIG1, RT_BODY, RT_K1, RT_TS),
                 0);
}

Test(retell, valid_upper_case_hex_and_space_after_comma)
{
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "v=1700000000000, d=%s", RT_SIG1);
    cr_expect_eq(retell(hdr, RT_BODY, RT_K1, RT_TS), 0);
    for (char *p = hdr; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    hdr[0] = 'v'; /* keep the keys lower case */
    hdr[17] = 'd';
    cr_expect_eq(retell(hdr, RT_BODY, RT_K1, RT_TS), 0, "%s", hdr);
}

Test(retell, empty_body)
{
    cr_expect_eq(retell("v=1700000000000,d=" RT_SIG_EMPTY, "", RT_K1, RT_TS),
                 0);
    cr_expect_eq(retell("v=1700000000000,d=" RT_SIG1, "", RT_K1, RT_TS),
                 CS_EAUTH);
}

Test(retell, second_key_matches)
{
    const char *keys[] = {RT_K1, RT_K2};
    const char *hdr = "v=1700000000000,d=" RT_SIG2;
    cr_expect_eq(
        cs_sig_retell(hdr, RT_BODY, strlen(RT_BODY), keys, 2, RT_TS, TOL_MS),
        0);
    cr_expect_eq(
        cs_sig_retell(hdr, RT_BODY, strlen(RT_BODY), keys, 1, RT_TS, TOL_MS),
        CS_EAUTH);
    cr_expect_eq(
        cs_sig_retell(hdr, RT_BODY, strlen(RT_BODY), keys, 0, RT_TS, TOL_MS),
        CS_EAUTH);
}

Test(retell, missing)
{
    cr_expect_eq(retell(NULL, RT_BODY, RT_K1, RT_TS), CS_ENOENT);
    cr_expect_eq(retell("", RT_BODY, RT_K1, RT_TS), CS_ENOENT);
}

Test(retell, malformed)
{
    static const char *const bad[] = {
        RT_SIG1,                           /* bare digest */
        "v=1700000000000",                 /* no d */
        "d=" RT_SIG1,                      /* no v */
        "v=abc,d=" RT_SIG1,                /* timestamp not a number */
        "v=-1700000000000,d=" RT_SIG1,     /* signed */
        "v=01700000000000,d=" RT_SIG1,     /* leading zero */
        "v=1700000000000,d=" RT_SIG1 "00", /* too long */
        "v=1700000000000,d=f98604bb",      /* too short */
        "v=1700000000000,d=z98604bb111f59fd68779e5c6ee43f1973db0b7ae8cef46a8"
        "7ba9d204f74cdce",                          /* not hex */
        "v=1700000000000,d=" RT_SIG1 ",",           /* trailing comma */
        "v=1700000000000,d=" RT_SIG1 " ",           /* trailing space */
        " v=1700000000000,d=" RT_SIG1,              /* leading space */
        "v=1700000000000 ,d=" RT_SIG1,              /* space before comma */
        "v=1700000000000,,d=" RT_SIG1,              /* empty item */
        "v=1700000000000,d=" RT_SIG1 ",d=" RT_SIG1, /* d twice */
        "v=1,v=1700000000000,d=" RT_SIG1,           /* v twice */
        "v=1700000000000,d=" RT_SIG1 ",x=1",        /* unknown key */
        "v=,d=" RT_SIG1,                            /* empty value */
        "v=1700000000000,d=",
        "v=1700000000000;d=" RT_SIG1,
        "v=9999999999999999999,d=" RT_SIG1, /* 19 digits */
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++)
        cr_expect_eq(retell(bad[i], RT_BODY, RT_K1, RT_TS), CS_EINVAL, "'%s'",
                     bad[i]);
}

Test(retell, tolerance_is_absolute)
{
    const char *hdr = "v=1700000000000,d=" RT_SIG1;
    cr_expect_eq(retell(hdr, RT_BODY, RT_K1, RT_TS + TOL_MS), 0);
    cr_expect_eq(retell(hdr, RT_BODY, RT_K1, RT_TS - TOL_MS), 0);
    cr_expect_eq(retell(hdr, RT_BODY, RT_K1, RT_TS + TOL_MS + 1), CS_ESTALE);
    cr_expect_eq(retell(hdr, RT_BODY, RT_K1, RT_TS - TOL_MS - 1), CS_ESTALE);
}

Test(retell, tampered_body_and_wrong_key)
{
    const char *hdr = "v=1700000000000,d=" RT_SIG1;
    cr_expect_eq(retell(hdr, RT_BODY " ", RT_K1, RT_TS), CS_EAUTH);
    cr_expect_eq(retell(hdr,
                        "{\"event\":\"call_ended\",\"call\":{\"call_id\""
                        ":\"c2\"}}",
                        RT_K1, RT_TS),
                 CS_EAUTH);
    cr_expect_eq(retell(hdr, RT_BODY, RT_K2, RT_TS), CS_EAUTH);
    /* Another timestamp changes the signed content. */
    cr_expect_eq(retell("v=1700000000001,d=" RT_SIG1, RT_BODY, RT_K1, RT_TS),
                 CS_EAUTH);
}

/* ---- Stripe ------------------------------------------------------------- */

/* HMAC-SHA256(secret as-is, "1700000000." || body), hex. */
#define ST_BODY "{\"id\":\"evt_1\",\"object\":\"event\"}"
#define ST_TS 1700000000LL
#define ST_SECRET "whsec_test_secret"
#define ST_SIG                                                                 \
    "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd"
#define ST_SIG_OLD                                                             \
    "921476aa6febf6d11353fcee45246000c9edf7b3938ae2d09a2d6ea5cb98d9db"
#define ST_SIG_EMPTY                                                           \
    "316b9ab98c15bfa039d243f3196acee619cf29749a91a634e6a8154e2f7b6727"

static int stripe(const char *header, const char *body, int64_t now)
{
    return cs_sig_stripe(header, body, strlen(body), ST_SECRET, now, TOL_S);
}

Test(stripe, valid)
{
    cr_expect_eq(stripe("t=1700000000,v1=" ST_SIG, ST_BODY, ST_TS), 0);
}

Test(stripe, valid_with_v0_and_spaces)
{
    cr_expect_eq(
        stripe("t=1700000000, v1=" ST_SIG ", v0=deadbeef", ST_BODY, ST_TS), 0);
    cr_expect_eq(stripe("v1=" ST_SIG ",t=1700000000", ST_BODY, ST_TS), 0);
    cr_expect_eq(stripe("t=1700000000,  v1=" ST_SIG, ST_BODY, ST_TS), 0);
}

Test(stripe, rotation_several_v1)
{
    cr_expect_eq(
        stripe("t=1700000000,v1=" ST_SIG_OLD ",v1=" ST_SIG, ST_BODY, ST_TS), 0);
    cr_expect_eq(
        stripe("t=1700000000,v1=" ST_SIG ",v1=" ST_SIG_OLD, ST_BODY, ST_TS), 0);
    cr_expect_eq(
        stripe("t=1700000000,v1=" ST_SIG_OLD ",v1=" ST_SIG_OLD, ST_BODY, ST_TS),
        CS_EAUTH);
}

Test(stripe, secret_is_not_decoded)
{
    /* The same HMAC under the secret without its prefix does not match. */
    cr_expect_eq(cs_sig_stripe("t=1700000000,v1=" ST_SIG, ST_BODY,
                               strlen(ST_BODY), "test_secret", ST_TS, TOL_S),
                 CS_EAUTH);
}

Test(stripe, empty_body)
{
    cr_expect_eq(stripe("t=1700000000,v1=" ST_SIG_EMPTY, "", ST_TS), 0);
    cr_expect_eq(stripe("t=1700000000,v1=" ST_SIG, "", ST_TS), CS_EAUTH);
}

Test(stripe, missing)
{
    cr_expect_eq(stripe(NULL, ST_BODY, ST_TS), CS_ENOENT);
    cr_expect_eq(stripe("", ST_BODY, ST_TS), CS_ENOENT);
}

Test(stripe, malformed)
{
    static const char *const bad[] = {
        "v1=" ST_SIG,              /* no t */
        "t=1700000000",            /* no v1 */
        "t=1700000000,v0=" ST_SIG, /* only v0 */
        "t=abc,v1=" ST_SIG,        /* timestamp not a number */
        "t=17e8,v1=" ST_SIG,
        "t=1700000000,t=1700000000,v1=" ST_SIG, /* t twice */
        "t=1700000000,v1=" ST_SIG "a",          /* odd length */
        "t=1700000000,v1=xyz",
        "t=1700000000,v1=",
        "t=1700000000,v1=" ST_SIG ",",
        "t=1700000000,v1",
        "t=1700000000 v1=" ST_SIG,
        "t=1700000000,v1=" ST_SIG " ",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++)
        cr_expect_eq(stripe(bad[i], ST_BODY, ST_TS), CS_EINVAL, "'%s'", bad[i]);
}

Test(stripe, age_is_one_sided)
{
    const char *hdr = "t=1700000000,v1=" ST_SIG;
    cr_expect_eq(stripe(hdr, ST_BODY, ST_TS + TOL_S), 0);
    cr_expect_eq(stripe(hdr, ST_BODY, ST_TS + TOL_S + 1), CS_ESTALE);
    /* A timestamp in the future passes, as in stripe-node. */
    cr_expect_eq(stripe(hdr, ST_BODY, ST_TS - TOL_S - 1), 0);
    cr_expect_eq(stripe(hdr, ST_BODY, ST_TS - 3600), 0);
}

Test(stripe, tampered_body_and_wrong_secret)
{
    const char *hdr = "t=1700000000,v1=" ST_SIG;
    cr_expect_eq(stripe(hdr, "{\"id\":\"evt_2\",\"object\":\"event\"}", ST_TS),
                 CS_EAUTH);
    cr_expect_eq(cs_sig_stripe(hdr, ST_BODY, strlen(ST_BODY), "whsec_other",
                               ST_TS, TOL_S),
                 CS_EAUTH);
    cr_expect_eq(cs_sig_stripe(hdr, ST_BODY, strlen(ST_BODY), "", ST_TS, TOL_S),
                 CS_EAUTH);
    /* A different t changes the signed content. */
    cr_expect_eq(stripe("t=1700000001,v1=" ST_SIG, ST_BODY, ST_TS), CS_EAUTH);
}

Test(stripe, signature_checked_before_age)
{
    /* As in stripe-node: a forged old request is a bad signature. */
    cr_expect_eq(stripe("t=1700000000,v1=" ST_SIG_OLD, ST_BODY, ST_TS + 9999),
                 CS_EAUTH);
}

/* ---- Standard Webhooks -------------------------------------------------- */

/* Published vector: standard-webhooks libraries/javascript webhook.test.ts
 * ("sign function works"). */
#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS 1614265330LL
#define SW_TS_S "1614265330"
#define SW_BODY "{\"test\": 2432232314}"
#define SW_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* Same secret, id and timestamp, empty body. */
#define SW_SIG_EMPTY "v1,v48jdbgvh29KJz2Qc+ghw8G6vG3nAKnujWBg8oM/62A="
/* Secret = base64(bytes 0..31), id msg_2, timestamp 1700000000, {"a":1}. */
#define SW_SECRET2 "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SW_SIG2 "v1,vKgOppvabnpwn1OKIOXqY3Wib5DBDhUuVXCJUoOmrJU="
#define SW_OTHER "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

static int standard(const char *id, const char *ts, const char *sigs,
                    const char *body, const char *secret, int64_t now)
{
    const char *secrets[] = {secret};
    return cs_sig_standard(id, ts, sigs, body, strlen(body), secrets, 1, now,
                           TOL_S);
}

Test(standard, published_vector)
{
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS),
                 0);
}

Test(standard, secret_without_prefix)
{
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY,
                          "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SW_TS),
                 0);
}

Test(standard, independent_vector)
{
    cr_expect_eq(standard("msg_2", "1700000000", SW_SIG2, "{\"a\":1}",
                          SW_SECRET2, 1700000000),
                 0);
    cr_expect_eq(standard("msg_2", "1700000000", SW_SIG2, "{\"a\":2}",
                          SW_SECRET2, 1700000000),
                 CS_EAUTH);
}

Test(standard, empty_body)
{
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_SIG_EMPTY, "", SW_SECRET, SW_TS),
                 0);
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_SIG, "", SW_SECRET, SW_TS),
                 CS_EAUTH);
}

Test(standard, several_signatures_and_versions)
{
    /* As in the reference suite's "multi sig payload is valid". */
    const char *sigs = SW_OTHER
        " v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " SW_SIG " " SW_OTHER;
    cr_expect_eq(standard(SW_ID, SW_TS_S, sigs, SW_BODY, SW_SECRET, SW_TS), 0);
    /* v1a (Ed25519) entries are skipped, extra spaces tolerated. */
    const char *with_v1a = "  v1a,bm90IGNoZWNrZWQ=   " SW_SIG "  ";
    cr_expect_eq(standard(SW_ID, SW_TS_S, with_v1a, SW_BODY, SW_SECRET, SW_TS),
                 0);
    cr_expect_eq(standard(SW_ID, SW_TS_S, "v1a,bm90IGNoZWNrZWQ=", SW_BODY,
                          SW_SECRET, SW_TS),
                 CS_EAUTH);
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_OTHER " " SW_OTHER, SW_BODY,
                          SW_SECRET, SW_TS),
                 CS_EAUTH);
}

Test(standard, second_secret_matches)
{
    const char *secrets[] = {SW_SECRET2, SW_SECRET};
    const char *body = SW_BODY;
    cr_expect_eq(cs_sig_standard(SW_ID, SW_TS_S, SW_SIG, body, strlen(body),
                                 secrets, 2, SW_TS, TOL_S),
                 0);
    cr_expect_eq(cs_sig_standard(SW_ID, SW_TS_S, SW_SIG, body, strlen(body),
                                 secrets, 1, SW_TS, TOL_S),
                 CS_EAUTH);
    /* A secret that is not base64 matches nothing but breaks nothing. */
    const char *with_bad[] = {"whsec_!!!", SW_SECRET};
    cr_expect_eq(cs_sig_standard(SW_ID, SW_TS_S, SW_SIG, body, strlen(body),
                                 with_bad, 2, SW_TS, TOL_S),
                 0);
}

Test(standard, missing)
{
    cr_expect_eq(standard(SW_ID, SW_TS_S, NULL, SW_BODY, SW_SECRET, SW_TS),
                 CS_ENOENT);
    cr_expect_eq(standard(SW_ID, SW_TS_S, "", SW_BODY, SW_SECRET, SW_TS),
                 CS_ENOENT);
    cr_expect_eq(standard(NULL, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS),
                 CS_ENOENT);
    cr_expect_eq(standard(SW_ID, NULL, SW_SIG, SW_BODY, SW_SECRET, SW_TS),
                 CS_ENOENT);
    cr_expect_eq(standard(SW_ID, "", SW_SIG, SW_BODY, SW_SECRET, SW_TS),
                 CS_ENOENT);
}

Test(standard, malformed)
{
    static const char *const bad_sigs[] = {
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", /* no version */
        "v1,",                                          /* empty signature */
        "v1,g0hM9SsE",                                  /* partial */
        "v1,dawfeoifkpqwoekfpqoekf",                    /* 18 bytes */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=,x",
        "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=", /* URL-safe */
        ",g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        SW_SIG " v1",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad_sigs); i++)
        cr_expect_eq(
            standard(SW_ID, SW_TS_S, bad_sigs[i], SW_BODY, SW_SECRET, SW_TS),
            CS_EINVAL, "'%s'", bad_sigs[i]);

    static const char *const bad_ts[] = {"hello",       "1614265330.0",
                                         "-1614265330", "01614265330",
                                         " 1614265330", "1614265330 "};
    for (size_t i = 0; i < CS_ARRAY_LEN(bad_ts); i++)
        cr_expect_eq(
            standard(SW_ID, bad_ts[i], SW_SIG, SW_BODY, SW_SECRET, SW_TS),
            CS_EINVAL, "'%s'", bad_ts[i]);
}

Test(standard, too_old_and_too_new_rejected)
{
    cr_expect_eq(
        standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS + TOL_S), 0);
    cr_expect_eq(
        standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS - TOL_S), 0);
    cr_expect_eq(
        standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS + TOL_S + 1),
        CS_ESTALE);
    /* Timestamp in the future beyond tolerance: rejected (unlike Stripe). */
    cr_expect_eq(
        standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS - TOL_S - 1),
        CS_ESTALE);
}

Test(standard, tampered_id_timestamp_body)
{
    cr_expect_eq(
        standard("msg_other", SW_TS_S, SW_SIG, SW_BODY, SW_SECRET, SW_TS),
        CS_EAUTH);
    cr_expect_eq(
        standard(SW_ID, "1614265331", SW_SIG, SW_BODY, SW_SECRET, SW_TS),
        CS_EAUTH);
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_SIG, "{\"test\": 2432232315}",
                          SW_SECRET, SW_TS),
                 CS_EAUTH);
    cr_expect_eq(standard(SW_ID, SW_TS_S, SW_SIG, SW_BODY, SW_SECRET2, SW_TS),
                 CS_EAUTH);
}

/* ---- Cal.com ------------------------------------------------------------ */

/* HMAC-SHA256("cal_secret", body), hex. */
#define CAL_BODY "{\"triggerEvent\":\"BOOKING_CREATED\"}"
#define CAL_SIG                                                                \
    "e29d6d36429a74c72c513cc6fabc611ce5dacc41e4a1e63b6e5624abc62865b3"
#define CAL_SIG_UPPER                                                          \
    "E29D6D36429A74C72C513CC6FABC611CE5DACC41E4A1E63B6E5624ABC62865B3"
#define CAL_SIG_EMPTY                                                          \
    "4cd1cacb89160dc105e6cb1a3f30df157bef8c67c969c676ae9ed9649336e32f"

static int calcom(const char *header, const char *body, const char *secret)
{
    return cs_sig_calcom(header, body, strlen(body), secret);
}

Test(calcom, valid_either_case)
{
    cr_expect_eq(calcom(CAL_SIG, CAL_BODY, "cal_secret"), 0);
    cr_expect_eq(calcom(CAL_SIG_UPPER, CAL_BODY, "cal_secret"), 0);
}

Test(calcom, empty_body)
{
    cr_expect_eq(calcom(CAL_SIG_EMPTY, "", "cal_secret"), 0);
    cr_expect_eq(calcom(CAL_SIG, "", "cal_secret"), CS_EAUTH);
}

Test(calcom, missing_malformed_bad)
{
    cr_expect_eq(calcom(NULL, CAL_BODY, "cal_secret"), CS_ENOENT);
    cr_expect_eq(calcom("", CAL_BODY, "cal_secret"), CS_ENOENT);
    cr_expect_eq(calcom("no-secret-provided", CAL_BODY, "cal_secret"),
                 CS_EINVAL);
    cr_expect_eq(calcom("sha256=" CAL_SIG, CAL_BODY, "cal_secret"), CS_EINVAL);
    cr_expect_eq(calcom(CAL_SIG " ", CAL_BODY, "cal_secret"), CS_EINVAL);
    cr_expect_eq(calcom("e29d6d36", CAL_BODY, "cal_secret"), CS_EINVAL);
    cr_expect_eq(calcom(CAL_SIG, CAL_BODY " ", "cal_secret"), CS_EAUTH);
    cr_expect_eq(calcom(CAL_SIG, CAL_BODY, "other_secret"), CS_EAUTH);
    cr_expect_eq(calcom(CAL_SIG, CAL_BODY, ""), CS_EAUTH);
    cr_expect_eq(calcom(CAL_SIG, CAL_BODY, NULL), CS_EAUTH);
}

/* ---- CallRail ----------------------------------------------------------- */

/* base64(HMAC-SHA1(token, body)). */
#define CR_BODY "{\"call_id\":\"CAL123\",\"answered\":true}"
#define CR_SIG1 "u+5lI0bJ1FPUoUro7iWCs+TGiNE="
#define CR_SIG2 "npwMb//aPiPA9ZWUmu2hjL+2FaE="

static int callrail(const char *header, const char *body)
{
    const char *tokens[] = {"token_one", "token_two"};
    return cs_sig_callrail(header, body, strlen(body), tokens, 2);
}

Test(callrail, valid_first_and_second_token)
{
    cr_expect_eq(callrail(CR_SIG1, CR_BODY), 0);
    cr_expect_eq(callrail(CR_SIG2, CR_BODY), 0);
    const char *only_one[] = {"token_one"};
    cr_expect_eq(
        cs_sig_callrail(CR_SIG2, CR_BODY, strlen(CR_BODY), only_one, 1),
        CS_EAUTH);
}

Test(callrail, missing_malformed_bad)
{
    cr_expect_eq(callrail(NULL, CR_BODY), CS_ENOENT);
    cr_expect_eq(callrail("", CR_BODY), CS_ENOENT);
    cr_expect_eq(callrail("u+5lI0bJ1FPUoUro7iWCs+TGiNE", CR_BODY), 0);
    cr_expect_eq(callrail("u+5lI0bJ1FPUoUro7iWCs+TGiN", CR_BODY), CS_EINVAL);
    cr_expect_eq(callrail("u-5lI0bJ1FPUoUro7iWCs-TGiNE=", CR_BODY), CS_EINVAL);
    cr_expect_eq(callrail(CR_SIG1 " ", CR_BODY), CS_EINVAL);
    cr_expect_eq(callrail("u+5lI0bJ1FPUoUro7iWCs+TGiNEAAAA=", CR_BODY),
                 CS_EINVAL);
    cr_expect_eq(callrail(CR_SIG1, CR_BODY "\n"), CS_EAUTH);
    cr_expect_eq(callrail(CR_SIG1, ""), CS_EAUTH);
    cr_expect_eq(cs_sig_callrail(CR_SIG1, CR_BODY, strlen(CR_BODY), NULL, 0),
                 CS_EAUTH);
}

/* ---- Outbound trigger --------------------------------------------------- */

/* HMAC-SHA256("out_secret", "1700000000." || body), hex. */
#define OB_BODY "{\"to\":\"+15551234567\"}"
#define OB_SIG                                                                 \
    "466696855cad070a489a3890c3e85f3375d2b088ae106a69037b4f76eb004549"
#define OB_TS 1700000000LL

static int outbound(const char *sec_hdr, const char *sig_hdr, const char *body,
                    int64_t now)
{
    return cs_sig_outbound(sec_hdr, sig_hdr, body, strlen(body), "out_secret",
                           now, TOL_S);
}

Test(outbound, shared_secret_header)
{
    cr_expect_eq(outbound("out_secret", NULL, OB_BODY, OB_TS), 0);
    cr_expect_eq(outbound("out_secreT", NULL, OB_BODY, OB_TS), CS_EAUTH);
    cr_expect_eq(outbound("out_secre", NULL, OB_BODY, OB_TS), CS_EAUTH);
    cr_expect_eq(outbound("out_secret2", NULL, OB_BODY, OB_TS), CS_EAUTH);
    cr_expect_eq(outbound("out_secret ", NULL, OB_BODY, OB_TS), CS_EAUTH);
    /* An empty configured secret never matches. */
    cr_expect_eq(cs_sig_outbound("x", NULL, "", 0, "", OB_TS, TOL_S), CS_EAUTH);
}

Test(outbound, missing)
{
    cr_expect_eq(outbound(NULL, NULL, OB_BODY, OB_TS), CS_ENOENT);
    cr_expect_eq(outbound("", "", OB_BODY, OB_TS), CS_ENOENT);
}

Test(outbound, signature_header)
{
    cr_expect_eq(outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY, OB_TS), 0);
    cr_expect_eq(outbound(NULL, "t=1700000000, v1=" OB_SIG, OB_BODY, OB_TS), 0);
    cr_expect_eq(
        outbound(NULL, "t=1700000000,v1=" ST_SIG ",v1=" OB_SIG, OB_BODY, OB_TS),
        0);
    cr_expect_eq(outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY " ", OB_TS),
                 CS_EAUTH);
    cr_expect_eq(cs_sig_outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY,
                                 strlen(OB_BODY), "other", OB_TS, TOL_S),
                 CS_EAUTH);
}

Test(outbound, signature_wins_over_secret)
{
    /* A right secret does not rescue a wrong signature. */
    cr_expect_eq(
        outbound("out_secret", "t=1700000000,v1=" ST_SIG, OB_BODY, OB_TS),
        CS_EAUTH);
    cr_expect_eq(outbound("wrong", "t=1700000000,v1=" OB_SIG, OB_BODY, OB_TS),
                 0);
}

Test(outbound, signature_malformed_and_stale)
{
    cr_expect_eq(outbound(NULL, "t=1700000000", OB_BODY, OB_TS), CS_EINVAL);
    cr_expect_eq(outbound(NULL, "t=now,v1=" OB_SIG, OB_BODY, OB_TS), CS_EINVAL);
    cr_expect_eq(
        outbound(NULL, "t=1700000000,v1=" OB_SIG ",v0=00", OB_BODY, OB_TS),
        CS_EINVAL);
    cr_expect_eq(
        outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY, OB_TS + TOL_S), 0);
    cr_expect_eq(
        outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY, OB_TS - TOL_S), 0);
    cr_expect_eq(
        outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY, OB_TS + TOL_S + 1),
        CS_ESTALE);
    cr_expect_eq(
        outbound(NULL, "t=1700000000,v1=" OB_SIG, OB_BODY, OB_TS - TOL_S - 1),
        CS_ESTALE);
}
