/*
 * test_redact.c - secrets out of text and JSON (shared/redact.h): named
 * pairs in every notation, credentials of known shapes, a caller's known
 * secrets, and text that must stay as it is.
 */
#include "redact.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void expect_text(const char *in, const char *want)
{
    char *out = redact_text(NULL, in);
    cr_expect_str_eq(out, want, "redact_text(\"%s\")", in);
    free(out);
}

Test(redact, named_pairs_lose_their_values)
{
    expect_text("https://api.example.com/x?hapikey=abc123&limit=5",
                "https://api.example.com/x?hapikey=[redacted]&limit=5");
    expect_text("Authorization: Bearer eyJhbGciOi.x-y_z",
                "Authorization: [redacted]");
    expect_text("{\"access_token\":\"ya29.a0Af\",\"id\":7}",
                "{\"access_token\":\"[redacted]\",\"id\":7}");
    expect_text("refresh_token = 'r-1/abc' and more",
                "refresh_token = '[redacted]' and more");
    expect_text("X-Api-Key: k1k2k3, other", "X-Api-Key: [redacted], other");
    expect_text("password=hunter2;user=bob", "password=[redacted];user=bob");
    expect_text("{\"msg\":\"bad \\\"client_secret\\\": \\\"s3\\\"\"}",
                "{\"msg\":\"bad \\\"client_secret\\\": "
                "\\\"[redacted]\\\"\"}");
}

Test(redact, credentials_of_known_shapes)
{
    expect_text("sent Bearer abc.def-ghi to it", "sent Bearer [redacted] to it");
    expect_text("token pat-na1-11111111-2222-3333 rejected",
                "token pat-[redacted] rejected");
    expect_text("key sk_live_51Habc and sk_test_4eC39Hq",
                "key sk_live_[redacted] and sk_test_[redacted]");
    expect_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ok",
                "whsec_[redacted] ok");
}

Test(redact, ordinary_text_stays)
{
    const char *keep[] = {
        "Property values were not valid: email",
        "the webhook secret is wrong",
        "idempotency_key=job:note",
        "token expired at 12:00",
        "pat-na (too short to be a token)",
        "",
    };
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        expect_text(keep[i], keep[i]);
}

Test(redact, known_secrets_anywhere)
{
    const char *known[] = {"s3cr3t-value-42", "ab", NULL};
    struct redact_ctx ctx = {known};
    char *out = redact_text(&ctx, "echo:s3cr3t-value-42/ab/x");
    cr_expect_str_eq(out, "echo:[redacted]/ab/x",
                     "secrets shorter than 6 bytes are not searched");
    free(out);
}

Test(redact, json_members_and_strings)
{
    json_t *j = json_loads(
        "{\"headers\":{\"Authorization\":\"Bearer x1\",\"Accept\":\"a/b\"},"
        "\"api_key\":12345,\"credentials\":{\"a\":1},\"ok\":true,"
        "\"token_type\":null,\"list\":[\"Basic dXNlcjpwYXNz\",\"plain\"]}",
        0, NULL);
    cr_assert(j);
    redact_json(NULL, j);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    cr_expect_str_eq(
        s, "{\"api_key\":\"[redacted]\",\"credentials\":\"[redacted]\","
           "\"headers\":{\"Accept\":\"a/b\",\"Authorization\":\"[redacted]\"},"
           "\"list\":[\"Basic [redacted]\",\"plain\"],\"ok\":true,"
           "\"token_type\":null}");
    free(s);
    json_decref(j);
}

Test(redact, secret_names)
{
    cr_expect(redact_is_secret_name("X-HubSpot-Signature", 19));
    cr_expect(redact_is_secret_name("Set-Cookie", 10));
    cr_expect(redact_is_secret_name("key", 3));
    cr_expect(!redact_is_secret_name("idempotency_key", 15));
    cr_expect(!redact_is_secret_name("contact_id", 10));
}
