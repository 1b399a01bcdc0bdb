/*
 * test_oauth.c - the token requests each provider gets (URL, headers,
 * form parameters, with the values of the providers' documented
 * examples), how their documented answers and errors are read (tokens,
 * expiry, rotation, instance URL; permanent or transient, and the message
 * for the user), the Salesforce JWT bearer assertion (checked with the
 * public key), and the small helpers.
 */
#include "crypto.h"
#include "oauth.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 2026-02-15T14:35:01Z */
#define NOW_MS 1771166101000LL

/* ---- Helpers ------------------------------------------------------------- */

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The decoded value of name in a form body (xmalloc'd), or NULL. */
static char *form(const char *body, const char *name)
{
    size_t nl = strlen(name);
    const char *p = body;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            char *out = xmalloc(len);
            size_t k = 0;
            for (size_t i = nl + 1; i < len; i++) {
                if (p[i] == '%' && i + 2 < len) {
                    out[k++] = (char)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
                    i += 2;
                } else {
                    out[k++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[k] = '\0';
            return out;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void expect_form(const struct oauth_request *rq, const char *name,
                        const char *want)
{
    char *got = form(rq->body, name);
    if (!want)
        cr_expect_null(got, "%s should be absent, got '%s'", name, got);
    else
        cr_expect(got && strcmp(got, want) == 0, "%s: got '%s', want '%s'",
                  name, got ? got : "(absent)", want);
    free(got);
}

static size_t form_count(const char *body)
{
    size_t n = body && *body ? 1 : 0;
    for (const char *p = body; p && *p; p++)
        n += *p == '&';
    return n;
}

static const char *header(const struct oauth_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static struct oauth_params params(enum oauth_provider p)
{
    struct oauth_params o = {0};
    o.provider = p;
    o.grant = OAUTH_GRANT_REFRESH;
    o.client_id = "client-id";
    o.client_secret = "client-secret";
    o.refresh_token = "refresh-token-1";
    o.now_ms = NOW_MS;
    return o;
}

static void build(const struct oauth_params *p, struct oauth_request *rq)
{
    struct cs_err err = {0};
    int rc = oauth_build_request(p, rq, &err);
    cr_assert_eq(rc, 0, "build failed: %s (%s)", err.msg, err.field);
    cr_expect_str_eq(rq->method, "POST");
    cr_expect_str_eq(header(rq, "Content-Type"),
                     "application/x-www-form-urlencoded");
    cr_expect_str_eq(header(rq, "Accept"), "application/json");
    cr_expect_eq(rq->body_len, strlen(rq->body));
}

static void build_fails(const struct oauth_params *p, const char *field)
{
    struct oauth_request rq;
    struct cs_err err = {0};
    cr_expect_eq(oauth_build_request(p, &rq, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, field, "field %s, want %s (%s)", err.field,
                     field, err.msg);
    cr_expect_null(rq.url);
    cr_expect_null(rq.body);
}

static void parse(const struct oauth_params *p, int status, const char *body,
                  struct oauth_result *res)
{
    struct oauth_response rsp = {status, body, body ? strlen(body) : 0, NULL,
                                 NULL};
    oauth_parse_response(p, &rsp, res);
}

/* The message a user sees never carries the secrets that were sent. */
static void expect_no_secrets(const struct oauth_result *res,
                              const struct oauth_params *p)
{
    cr_expect(!p->client_secret || !strstr(res->message, p->client_secret),
              "message leaks the client secret: %s", res->message);
    cr_expect(!p->refresh_token || !strstr(res->message, p->refresh_token),
              "message leaks the refresh token: %s", res->message);
}

/* ---- Providers and helpers ----------------------------------------------- */

Test(oauth, provider_names_and_integration_types)
{
    cr_expect_str_eq(oauth_provider_name(OAUTH_GOOGLE), "google");
    cr_expect_str_eq(oauth_provider_name(OAUTH_MICROSOFT), "microsoft");
    cr_expect_str_eq(oauth_provider_title(OAUTH_GOHIGHLEVEL), "GoHighLevel");
    cr_expect_eq(oauth_provider_parse("zoho"), OAUTH_ZOHO);
    cr_expect_eq(oauth_provider_parse("zapier"), -1);
    cr_expect_eq(oauth_provider_for_type("google_calendar"), OAUTH_GOOGLE);
    cr_expect_eq(oauth_provider_for_type("outlook"), OAUTH_MICROSOFT);
    cr_expect_eq(oauth_provider_for_type("hubspot"), OAUTH_HUBSPOT);
    cr_expect_eq(oauth_provider_for_type("salesforce"), OAUTH_SALESFORCE);
    cr_expect_eq(oauth_provider_for_type("calendly"), OAUTH_CALENDLY);
    cr_expect_eq(oauth_provider_for_type("gohighlevel"), OAUTH_GOHIGHLEVEL);
    cr_expect_eq(oauth_provider_for_type("zoho"), OAUTH_ZOHO);
    cr_expect_eq(oauth_provider_for_type("zapier"), -1);
    cr_expect_eq(oauth_provider_for_type("stripe"), -1);
    /* The integration types, not the token providers' names. */
    cr_expect_eq(oauth_provider_for_type("google"), -1);
    cr_expect_eq(oauth_provider_for_type("microsoft"), -1);
    cr_expect_eq(oauth_provider_for_type(NULL), -1);
}

Test(oauth, spec_lookup)
{
    const char *spec = "google=a.apps.googleusercontent.com:GOCSPX-x, "
                       "hubspot = 1234:s3cr:et ,zoho=1000.X:y";
    char *v = oauth_spec_get(spec, "google");
    cr_expect_str_eq(v, "a.apps.googleusercontent.com:GOCSPX-x");
    free(v);
    v = oauth_spec_get(spec, "zoho");
    cr_expect_str_eq(v, "1000.X:y");
    free(v);
    v = oauth_spec_get(spec, "hubspot");
    cr_expect_null(v, "spaces around '=' are not part of a key");
    free(v);
    v = oauth_spec_get("hubspot=1234:s3cr:et", "hubspot");
    cr_expect_str_eq(v, "1234:s3cr:et");
    free(v);
    cr_expect_null(oauth_spec_get(spec, "goog"));
    cr_expect_null(oauth_spec_get("", "google"));
    cr_expect_null(oauth_spec_get(NULL, "google"));
}

Test(oauth, base64url_has_no_padding_or_plus)
{
    const unsigned char in[] = {0xfb, 0xff, 0xfe, 0x01};
    char *s = oauth_b64url(in, sizeof(in));
    cr_expect_str_eq(s, "-__-AQ");
    free(s);
    s = oauth_b64url((const unsigned char *)"{\"alg\":\"RS256\"}", 15);
    cr_expect_str_eq(s, "eyJhbGciOiJSUzI1NiJ9");
    free(s);
}

Test(oauth, form_values_are_percent_encoded)
{
    struct oauth_params p = params(OAUTH_GOOGLE);
    p.refresh_token = "1//0g a+b/c=d&e~f";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect(strstr(rq.body, "refresh_token=1%2F%2F0g%20a%2Bb%2Fc%3Dd%26e~f"),
              "%s", rq.body);
    expect_form(&rq, "refresh_token", "1//0g a+b/c=d&e~f");
    oauth_request_release(&rq);
}

Test(oauth, missing_credentials_are_named)
{
    struct oauth_params p = params(OAUTH_HUBSPOT);
    p.client_id = NULL;
    build_fails(&p, "client_id");
    p = params(OAUTH_HUBSPOT);
    p.client_id = "";
    build_fails(&p, "client_id");
    p = params(OAUTH_CALENDLY);
    p.client_secret = NULL;
    build_fails(&p, "client_secret");
    p = params(OAUTH_ZOHO);
    p.refresh_token = NULL;
    build_fails(&p, "refresh_token");
    p = params(OAUTH_GOOGLE);
    p.grant = OAUTH_GRANT_JWT_BEARER;
    build_fails(&p, "grant");
    p = params(OAUTH_GOHIGHLEVEL);
    p.user_type = "Agency";
    build_fails(&p, "user_type");
}

Test(oauth, base_url_replaces_each_origin)
{
    static const struct {
        enum oauth_provider p;
        const char *want;
    } cases[] = {
        {OAUTH_GOOGLE, "http://127.0.0.1:9/oauth/google/token"},
        {OAUTH_HUBSPOT, "http://127.0.0.1:9/oauth/hubspot/oauth/v3/token"},
        {OAUTH_SALESFORCE,
         "http://127.0.0.1:9/oauth/salesforce/services/oauth2/token"},
        {OAUTH_CALENDLY, "http://127.0.0.1:9/oauth/calendly/oauth/token"},
        {OAUTH_GOHIGHLEVEL,
         "http://127.0.0.1:9/oauth/gohighlevel/oauth/token"},
        {OAUTH_ZOHO, "http://127.0.0.1:9/oauth/zoho/oauth/v2/token"},
        {OAUTH_MICROSOFT,
         "http://127.0.0.1:9/oauth/microsoft/common/oauth2/v2.0/token"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oauth_params p = params(cases[i].p);
        char base[96];
        snprintf(base, sizeof(base), "http://127.0.0.1:9/oauth/%s/",
                 oauth_provider_name(cases[i].p));
        p.base_url = base;
        /* The base wins over the provider's own host choices. */
        p.zoho_dc = "eu";
        p.login_url = "https://test.salesforce.com";
        struct oauth_request rq;
        build(&p, &rq);
        cr_expect_str_eq(rq.url, cases[i].want);
        oauth_request_release(&rq);
    }
}

/* ---- Google -------------------------------------------------------------- */

Test(oauth, google_request_as_documented)
{
    /* developers.google.com/identity/protocols/oauth2/web-server,
     * "Refreshing an access token". */
    struct oauth_params p = params(OAUTH_GOOGLE);
    p.client_id = "your_client_id";
    p.client_secret = "your_client_secret";
    p.refresh_token = "refresh_token";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url, "https://oauth2.googleapis.com/token");
    cr_expect_str_eq(rq.body, "grant_type=refresh_token&client_id=your_"
                              "client_id&client_secret=your_client_secret&"
                              "refresh_token=refresh_token");
    oauth_request_release(&rq);
    cr_expect_null(rq.body);
}

Test(oauth, google_answer_as_documented)
{
    struct oauth_params p = params(OAUTH_GOOGLE);
    struct oauth_result res;
    parse(&p, 200,
          "{\"access_token\": \"1/fFAGRNJru1FTz70BzhT3Zg\", \"expires_in\": "
          "3920, \"scope\": \"https://www.googleapis.com/auth/drive.metadata."
          "readonly https://www.googleapis.com/auth/calendar.readonly\", "
          "\"token_type\": \"Bearer\"}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK, "%s", res.message);
    cr_expect_str_eq(res.access_token, "1/fFAGRNJru1FTz70BzhT3Zg");
    cr_expect_null(res.refresh_token, "Google keeps the refresh token");
    cr_expect_not(res.rotated);
    cr_expect_eq(res.expires_in_s, 3920);
    cr_expect_eq(res.expires_at_ms, NOW_MS + 3920 * 1000LL);
    cr_expect_str_eq(res.scope,
                     "https://www.googleapis.com/auth/drive.metadata.readonly "
                     "https://www.googleapis.com/auth/calendar.readonly");
    cr_expect_null(res.instance_url);
    oauth_result_release(&res);
}

Test(oauth, google_revoked_token_is_permanent)
{
    struct oauth_params p = params(OAUTH_GOOGLE);
    struct oauth_result res;
    parse(&p, 400,
          "{\"error\": \"invalid_grant\", \"error_description\": \"Token has "
          "been expired or revoked.\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_not(res.client_error);
    cr_expect_str_eq(res.error, "invalid_grant");
    cr_expect_str_eq(res.message,
                     "reconnect Google: the refresh token was revoked or has "
                     "expired (invalid_grant: Token has been expired or "
                     "revoked.)");
    cr_expect_eq(res.http_status, 400);
    expect_no_secrets(&res, &p);
    oauth_result_release(&res);

    parse(&p, 401,
          "{\"error\": \"invalid_client\", \"error_description\": \"The "
          "OAuth client was not found.\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    cr_expect(strstr(res.message, "check the Google app's client id and "
                                  "secret"),
              "%s", res.message);
    expect_no_secrets(&res, &p);
    oauth_result_release(&res);
}

/* ---- HubSpot ------------------------------------------------------------- */

Test(oauth, hubspot_request_as_documented)
{
    struct oauth_params p = params(OAUTH_HUBSPOT);
    p.client_id = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";
    p.client_secret = "12345678-abcd-efgh-ijkl-9876543210ab";
    p.refresh_token = "6f18f26a-3e95-4d95-a6e5-3d5c6e5c9e5a";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url, "https://api.hubapi.com/oauth/v3/token");
    expect_form(&rq, "grant_type", "refresh_token");
    expect_form(&rq, "client_id", "a1b2c3d4-e5f6-7890-abcd-ef1234567890");
    expect_form(&rq, "client_secret", "12345678-abcd-efgh-ijkl-9876543210ab");
    expect_form(&rq, "refresh_token", "6f18f26a-3e95-4d95-a6e5-3d5c6e5c9e5a");
    cr_expect_eq(form_count(rq.body), 4);
    oauth_request_release(&rq);
}

Test(oauth, hubspot_answer_keeps_the_refresh_token)
{
    struct oauth_params p = params(OAUTH_HUBSPOT);
    p.refresh_token = "6f18f26a-3e95-4d95-a6e5-3d5c6e5c9e5a";
    struct oauth_result res;
    parse(&p, 200,
          "{\"token_type\":\"bearer\",\"refresh_token\":\"6f18f26a-3e95-"
          "4d95-a6e5-3d5c6e5c9e5a\",\"access_token\":\"CJSP5qf1KhICAQEYs-"
          "gDIIGOBii1\",\"expires_in\":1800,\"token_use\":\"access_token\","
          "\"hub_id\":62515,\"scopes\":[\"oauth\",\"crm.objects.contacts."
          "write\"]}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK, "%s", res.message);
    cr_expect_str_eq(res.access_token, "CJSP5qf1KhICAQEYs-gDIIGOBii1");
    cr_expect_str_eq(res.refresh_token, "6f18f26a-3e95-4d95-a6e5-3d5c6e5c9e5a");
    cr_expect_not(res.rotated, "the same refresh token is not a rotation");
    cr_expect_eq(res.expires_at_ms, NOW_MS + 1800 * 1000LL);
    cr_expect_str_eq(res.scope, "oauth crm.objects.contacts.write");
    oauth_result_release(&res);
}

Test(oauth, hubspot_bad_refresh_token_is_permanent)
{
    struct oauth_params p = params(OAUTH_HUBSPOT);
    struct oauth_result res;
    parse(&p, 400,
          "{\"status\":\"BAD_REFRESH_TOKEN\",\"message\":\"missing or "
          "unknown refresh token\",\"correlationId\":\"aeb5f871-7f07-4993-"
          "9211-075dc63e7cbf\",\"requestId\":\"cc696c9d\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_str_eq(res.error, "BAD_REFRESH_TOKEN");
    cr_expect_str_eq(res.message,
                     "reconnect HubSpot: the refresh token was revoked or "
                     "has expired (BAD_REFRESH_TOKEN: missing or unknown "
                     "refresh token)");
    oauth_result_release(&res);

    /* The error schema of the v3 API: the code in "category". */
    parse(&p, 400,
          "{\"status\":\"error\",\"category\":\"BAD_CLIENT_ID\",\"message\":"
          "\"missing or unknown client id\",\"correlationId\":\"x\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    cr_expect_str_eq(res.error, "BAD_CLIENT_ID");
    oauth_result_release(&res);
}

/* ---- Salesforce ---------------------------------------------------------- */

Test(oauth, salesforce_request_and_login_hosts)
{
    struct oauth_params p = params(OAUTH_SALESFORCE);
    p.client_id = "3MVG9lKcPoNINVBIPJjdw1J9LLM82HnFVVX19KY1uA5mu0QqEWhqKpoW3"
                  "svG3X";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url,
                     "https://login.salesforce.com/services/oauth2/token");
    expect_form(&rq, "grant_type", "refresh_token");
    expect_form(&rq, "refresh_token", "refresh-token-1");
    expect_form(&rq, "client_id", p.client_id);
    expect_form(&rq, "client_secret", "client-secret");
    oauth_request_release(&rq);

    /* The secret is optional when the connected app does not need it. */
    p.client_secret = NULL;
    p.login_url = "https://test.salesforce.com/";
    build(&p, &rq);
    cr_expect_str_eq(rq.url,
                     "https://test.salesforce.com/services/oauth2/token");
    expect_form(&rq, "client_secret", NULL);
    oauth_request_release(&rq);

    p.login_url = "https://acme.my.salesforce.com";
    build(&p, &rq);
    cr_expect_str_eq(rq.url,
                     "https://acme.my.salesforce.com/services/oauth2/token");
    oauth_request_release(&rq);

    /* Secrets never go to a host that is not Salesforce's. */
    const char *bad[] = {"http://login.salesforce.com",
                         "https://login.salesforce.com.evil.io",
                         "https://evil.io/login.salesforce.com",
                         "https://user@login.salesforce.com",
                         "https://LOGIN.salesforce.com:8443"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p.login_url = bad[i];
        build_fails(&p, "login_url");
    }
}

Test(oauth, salesforce_answer_as_documented)
{
    struct oauth_params p = params(OAUTH_SALESFORCE);
    struct oauth_result res;
    /* The refresh token flow's documented answer: no expires_in, and an
     * issued_at long ago (the example's). */
    parse(&p, 200,
          "{ \"id\":\"https://login.salesforce.com/id/00Dx0000000BV7z/005x"
          "00000012Q9P\", \"issued_at\":\"1278448384422\", \"instance_url\":"
          "\"https://yourInstance.salesforce.com/\", \"signature\":\"SSSbLO/"
          "gBhmmyNUvN18ODBDFYHzakxOMgqYtu+hDPsc=\", \"access_token\":"
          "\"00Dx0000000BV7z!AR8AQP0jITN80ESEsj5EbaZTFG0RNBaT1cyWk7Trqo\", "
          "\"token_type\":\"Bearer\", \"scope\":\"id api refresh_token\"}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK, "%s", res.message);
    cr_expect_str_eq(res.access_token,
                     "00Dx0000000BV7z!AR8AQP0jITN80ESEsj5EbaZTFG0RNBaT1cyWk7Trqo");
    cr_expect_str_eq(res.instance_url, "https://yourInstance.salesforce.com/");
    cr_expect_null(res.refresh_token);
    cr_expect_eq(res.expires_in_s, 7200, "the default session timeout");
    cr_expect_eq(res.expires_at_ms, NOW_MS + 7200 * 1000LL);
    oauth_result_release(&res);

    /* A recent issued_at and the app's own session timeout; rotation on. */
    p.session_lifetime_s = 900;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"access_token\":\"00D!new\",\"instance_url\":\"https://acme."
             "my.salesforce.com\",\"issued_at\":\"%lld\",\"refresh_token\":"
             "\"5Aep861new\",\"token_type\":\"Bearer\"}",
             NOW_MS - 2000);
    parse(&p, 200, body, &res);
    cr_assert_eq(res.outcome, OAUTH_OK);
    cr_expect_eq(res.expires_at_ms, NOW_MS - 2000 + 900 * 1000LL);
    cr_expect_str_eq(res.refresh_token, "5Aep861new");
    cr_expect(res.rotated);
    oauth_result_release(&res);
}

Test(oauth, salesforce_errors)
{
    struct oauth_params p = params(OAUTH_SALESFORCE);
    struct oauth_result res;
    parse(&p, 400,
          "{\"error\":\"invalid_grant\",\"error_description\":\"expired "
          "access/refresh token\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_str_eq(res.message,
                     "reconnect Salesforce: the refresh token was revoked or "
                     "has expired (invalid_grant: expired access/refresh "
                     "token)");
    oauth_result_release(&res);
    parse(&p, 400,
          "{\"error\":\"invalid_client_id\",\"error_description\":\"client "
          "identifier invalid\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    oauth_result_release(&res);
    parse(&p, 400,
          "{\"error\":\"inactive_user\",\"error_description\":\"user is "
          "inactive\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(starts(res.message, "reconnect Salesforce: "), "%s",
              res.message);
    oauth_result_release(&res);
}

/* ---- Salesforce JWT bearer ----------------------------------------------- */

static char *rsa_pem(EVP_PKEY **key)
{
    *key = EVP_RSA_gen(2048);
    cr_assert_not_null(*key);
    BIO *b = BIO_new(BIO_s_mem());
    cr_assert(PEM_write_bio_PrivateKey(b, *key, NULL, NULL, 0, NULL, NULL));
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *pem = xstrndup(data, (size_t)n);
    BIO_free(b);
    return pem;
}

static unsigned char *unb64url(const char *s, size_t n, size_t *len)
{
    char *std = xmalloc(n + 4);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        std[m++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (m % 4)
        std[m++] = '=';
    unsigned char *out = xmalloc(m + 1);
    int r = cs_base64_decode(std, m, out, m);
    free(std);
    cr_assert_geq(r, 0, "not base64url: %.*s", (int)n, s);
    out[r] = '\0';
    *len = (size_t)r;
    return out;
}

Test(oauth, salesforce_jwt_bearer_assertion_verifies)
{
    EVP_PKEY *key;
    char *pem = rsa_pem(&key);
    struct oauth_params p = params(OAUTH_SALESFORCE);
    p.grant = OAUTH_GRANT_JWT_BEARER;
    p.client_id = "3MVG99OxTyEMCQ3gNp2PjkqeZKxnmAiG1xV4oHh9AKL_rSK.BoSVPGZHQ"
                  "ukXnVjzRgSuQqGn75NL7yfkQcyy7";
    p.client_secret = NULL;
    p.refresh_token = NULL;
    p.private_key_pem = pem;
    p.username = "integration@acme.example";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url,
                     "https://login.salesforce.com/services/oauth2/token");
    expect_form(&rq, "grant_type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer");
    cr_expect_eq(form_count(rq.body), 2);
    char *jwt = form(rq.body, "assertion");
    cr_assert_not_null(jwt);
    char *d1 = strchr(jwt, '.');
    char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    cr_assert(d1 && d2 && !strchr(d2 + 1, '.'), "three parts: %s", jwt);
    size_t hl, cl, sl;
    unsigned char *h = unb64url(jwt, (size_t)(d1 - jwt), &hl);
    unsigned char *c = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    unsigned char *sig = unb64url(d2 + 1, strlen(d2 + 1), &sl);
    cr_expect_str_eq((char *)h, "{\"alg\":\"RS256\"}");
    json_t *claims = json_loads((char *)c, 0, NULL);
    cr_assert_not_null(claims, "claims: %s", c);
    cr_expect_str_eq(json_string_value(json_object_get(claims, "iss")),
                     p.client_id);
    cr_expect_str_eq(json_string_value(json_object_get(claims, "sub")),
                     "integration@acme.example");
    cr_expect_str_eq(json_string_value(json_object_get(claims, "aud")),
                     "https://login.salesforce.com");
    cr_expect_eq(json_integer_value(json_object_get(claims, "exp")),
                 NOW_MS / 1000 + 180, "exp within three minutes");
    json_decref(claims);
    /* The signature checks out with the public key. */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    cr_assert_eq(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    cr_expect_eq(EVP_DigestVerify(md, sig, sl, (unsigned char *)jwt,
                                  (size_t)(d2 - jwt)),
                 1, "RS256 signature does not verify");
    EVP_MD_CTX_free(md);
    free(h);
    free(c);
    free(sig);
    free(jwt);
    oauth_request_release(&rq);

    /* A sandbox org's audience is test.salesforce.com. */
    p.login_url = "https://test.salesforce.com";
    build(&p, &rq);
    cr_expect_str_eq(rq.url,
                     "https://test.salesforce.com/services/oauth2/token");
    jwt = form(rq.body, "assertion");
    d1 = strchr(jwt, '.');
    d2 = strchr(d1 + 1, '.');
    c = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    cr_expect(strstr((char *)c, "\"aud\":\"https://test.salesforce.com\""),
              "%s", c);
    free(c);
    free(jwt);
    oauth_request_release(&rq);

    p.username = NULL;
    build_fails(&p, "username");
    EVP_PKEY_free(key);
    free(pem);
}

Test(oauth, salesforce_jwt_bad_keys_are_refused)
{
    struct oauth_params p = params(OAUTH_SALESFORCE);
    p.grant = OAUTH_GRANT_JWT_BEARER;
    p.username = "u@example.com";
    p.private_key_pem = NULL;
    build_fails(&p, "private_key");
    p.private_key_pem = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n"
                        "-----END PRIVATE KEY-----\n";
    build_fails(&p, "private_key");

    /* An EC key cannot sign RS256. */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    cr_assert_not_null(ec);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, ec, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *pem = xstrndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(ec);
    p.private_key_pem = pem;
    build_fails(&p, "private_key");
    free(pem);

    /* An encrypted key is refused, never prompted for. */
    EVP_PKEY *rsa;
    free(rsa_pem(&rsa));
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, rsa, EVP_aes_256_cbc(),
                             (unsigned char *)"pass", 4, NULL, NULL);
    n = BIO_get_mem_data(b, &data);
    pem = xstrndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(rsa);
    p.private_key_pem = pem;
    build_fails(&p, "private_key");
    free(pem);
}

Test(oauth, salesforce_jwt_refusal_names_the_setup)
{
    struct oauth_params p = params(OAUTH_SALESFORCE);
    p.grant = OAUTH_GRANT_JWT_BEARER;
    struct oauth_result res;
    parse(&p, 400,
          "{\"error\":\"invalid_grant\",\"error_description\":\"user hasn't "
          "approved this consumer\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    cr_expect(strstr(res.message, "fix the Salesforce JWT bearer set-up"),
              "%s", res.message);
    cr_expect(strstr(res.message, "user hasn't approved this consumer"), "%s",
              res.message);
    oauth_result_release(&res);

    parse(&p, 200,
          "{\"access_token\":\"00D!jwt\",\"scope\":\"api\",\"instance_url\":"
          "\"https://acme.my.salesforce.com\",\"id\":\"https://login."
          "salesforce.com/id/00D/005\",\"token_type\":\"Bearer\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_OK);
    cr_expect_null(res.refresh_token, "no refresh token in this flow");
    cr_expect_not(res.rotated);
    oauth_result_release(&res);
}

/* ---- Calendly ------------------------------------------------------------ */

Test(oauth, calendly_request_and_rotation)
{
    struct oauth_params p = params(OAUTH_CALENDLY);
    p.refresh_token = "b77a76ffce83d3bc20531ddfa76704e584f0ee963f6041b8bcc70d"
                      "9d2d7c3c9e";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url, "https://auth.calendly.com/oauth/token");
    expect_form(&rq, "grant_type", "refresh_token");
    expect_form(&rq, "refresh_token", p.refresh_token);
    expect_form(&rq, "client_id", "client-id");
    expect_form(&rq, "client_secret", "client-secret");
    oauth_request_release(&rq);

    struct oauth_result res;
    parse(&p, 200,
          "{\"token_type\":\"Bearer\",\"access_token\":\"eyJraWQiOiIxY2Ux\","
          "\"refresh_token\":\"c31a0b7ed4ba6cc0cf4c5bd92bbd0b80d73bb21fe8f57"
          "ffca5c2b51e3fd24fb7\",\"scope\":\"default\",\"created_at\":"
          "1548689183,\"expires_in\":7200,\"owner\":\"https://api.calendly."
          "com/users/EBHAAFHDCAEQTSEZ\",\"organization\":\"https://api."
          "calendly.com/organizations/EBHAAFHDCAEQTSEZ\"}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK);
    cr_expect(res.rotated, "Calendly refresh tokens are single-use");
    cr_expect_str_eq(res.refresh_token, "c31a0b7ed4ba6cc0cf4c5bd92bbd0b80d73b"
                                        "b21fe8f57ffca5c2b51e3fd24fb7");
    cr_expect_eq(res.expires_at_ms, NOW_MS + 7200 * 1000LL);
    oauth_result_release(&res);

    parse(&p, 400,
          "{\"error\":\"invalid_grant\",\"error_description\":\"The provided "
          "authorization grant is invalid, expired, revoked, does not match "
          "the redirection URI used in the authorization request, or was "
          "issued to another client.\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(starts(res.message, "reconnect Calendly: the refresh token "
                                  "was revoked"),
              "%s", res.message);
    oauth_result_release(&res);
}

/* ---- GoHighLevel --------------------------------------------------------- */

Test(oauth, gohighlevel_request_answer_and_errors)
{
    struct oauth_params p = params(OAUTH_GOHIGHLEVEL);
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url,
                     "https://services.leadconnectorhq.com/oauth/token");
    expect_form(&rq, "client_id", "client-id");
    expect_form(&rq, "client_secret", "client-secret");
    expect_form(&rq, "grant_type", "refresh_token");
    expect_form(&rq, "refresh_token", "refresh-token-1");
    expect_form(&rq, "user_type", "Location");
    cr_expect_eq(form_count(rq.body), 5);
    oauth_request_release(&rq);
    p.user_type = "Company";
    build(&p, &rq);
    expect_form(&rq, "user_type", "Company");
    oauth_request_release(&rq);

    /* The documented answer (apps/oauth.json). */
    struct oauth_result res;
    parse(&p, 200,
          "{\"access_token\":\"ab12dc0ae1234a7898f9ff06d4f69gh\",\"token_"
          "type\":\"Bearer\",\"expires_in\":86399,\"refresh_token\":\"xy34dc"
          "0ae1234a4858f9ff06d4f66ba\",\"scope\":\"conversations/message."
          "readonly conversations/message.write\",\"userType\":\"Location\","
          "\"locationId\":\"l1C08ntBrFjLS0elLIYU\",\"companyId\":\"l1C08ntBrF"
          "jLS0elLIYU\",\"approvedLocations\":[\"l1C08ntBrFjLS0elLIYU\"],"
          "\"userId\":\"l1C08ntBrFjLS0elLIYU\",\"planId\":\"l1C08ntBrFjLS0el"
          "LIYU\"}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK);
    cr_expect(res.rotated);
    cr_expect_eq(res.expires_at_ms, NOW_MS + 86399 * 1000LL);
    cr_expect_str_eq(res.scope, "conversations/message.readonly "
                                "conversations/message.write");
    oauth_result_release(&res);

    /* Errors in the documented DTO shapes: the "error" field is the HTTP
     * reason phrase, the reason is in "message". */
    parse(&p, 400,
          "{\"statusCode\":400,\"message\":\"Invalid grant: refresh token is "
          "invalid\",\"error\":\"Bad Request\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_not(res.client_error);
    cr_expect_str_eq(res.message,
                     "reconnect GoHighLevel: the refresh token was revoked "
                     "or has expired (Invalid grant: refresh token is "
                     "invalid)");
    oauth_result_release(&res);
    parse(&p, 400, "{\"statusCode\":400,\"message\":\"Location is not "
                   "active\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(strstr(res.message, "Location is not active"), "%s",
              res.message);
    oauth_result_release(&res);
    parse(&p, 401,
          "{\"statusCode\":401,\"message\":\"Invalid client: client is "
          "invalid\",\"error\":\"Unauthorized\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    oauth_result_release(&res);
    parse(&p, 422,
          "{\"statusCode\":422,\"message\":[\"refresh_token should not be "
          "empty\"],\"error\":\"Unprocessable Entity\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(strstr(res.message, "refresh_token should not be empty"), "%s",
              res.message);
    oauth_result_release(&res);
}

/* ---- Zoho ---------------------------------------------------------------- */

Test(oauth, zoho_request_as_documented)
{
    /* zoho.com/accounts/protocol/oauth/web-apps/access-token-expiry.html */
    struct oauth_params p = params(OAUTH_ZOHO);
    p.client_id = "1000.GMB0YULZHJK411248S8I5GZ4CHUEX0";
    p.client_secret = "122c324d3496d5d777ceeebc129470715fbb856b7";
    p.refresh_token = "1000.86a03ca5dbfccb7445b1889b8215efb0.cad9e1ae4989a119"
                      "6fe05aa729fcb4e1";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(rq.url, "https://accounts.zoho.com/oauth/v2/token");
    expect_form(&rq, "client_id", "1000.GMB0YULZHJK411248S8I5GZ4CHUEX0");
    expect_form(&rq, "client_secret",
                "122c324d3496d5d777ceeebc129470715fbb856b7");
    expect_form(&rq, "grant_type", "refresh_token");
    expect_form(&rq, "refresh_token", p.refresh_token);
    cr_expect_eq(form_count(rq.body), 4);
    oauth_request_release(&rq);
}

Test(oauth, zoho_data_centres)
{
    static const struct {
        const char *dc, *url;
    } cases[] = {
        {NULL, "https://accounts.zoho.com/oauth/v2/token"},
        {"com", "https://accounts.zoho.com/oauth/v2/token"},
        {"eu", "https://accounts.zoho.eu/oauth/v2/token"},
        {"EU", "https://accounts.zoho.eu/oauth/v2/token"},
        {"in", "https://accounts.zoho.in/oauth/v2/token"},
        {"com.au", "https://accounts.zoho.com.au/oauth/v2/token"},
        {"jp", "https://accounts.zoho.jp/oauth/v2/token"},
        {"com.cn", "https://accounts.zoho.com.cn/oauth/v2/token"},
        {"ca", "https://accounts.zohocloud.ca/oauth/v2/token"},
        {"sa", "https://accounts.zoho.sa/oauth/v2/token"},
        {"uk", "https://accounts.zoho.uk/oauth/v2/token"},
        /* the accounts-server value of the authorization redirect */
        {"https://accounts.zoho.in", "https://accounts.zoho.in/oauth/v2/token"},
        {"https://accounts.zoho.eu/", "https://accounts.zoho.eu/oauth/v2/token"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oauth_params p = params(OAUTH_ZOHO);
        p.zoho_dc = cases[i].dc;
        struct oauth_request rq;
        build(&p, &rq);
        cr_expect_str_eq(rq.url, cases[i].url, "dc %s", cases[i].dc);
        oauth_request_release(&rq);
    }
    const char *bad[] = {"de", "https://accounts.zoho.com.evil.io",
                         "http://accounts.zoho.com", "https://evil.io"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct oauth_params p = params(OAUTH_ZOHO);
        p.zoho_dc = bad[i];
        build_fails(&p, "zoho_dc");
    }
}

Test(oauth, zoho_answers_and_errors)
{
    struct oauth_params p = params(OAUTH_ZOHO);
    struct oauth_result res;
    parse(&p, 200,
          "{\"access_token\": \"1000.2deaf8d0c268e3c85daa2a013a843b10.703adef"
          "2bb337b8ca36cfc5d7b83cf24\", \"expires_in\": 3600, \"api_domain\":"
          " \"https://www.zohoapis.eu\", \"token_type\": \"Bearer\"}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK);
    cr_expect_str_eq(res.instance_url, "https://www.zohoapis.eu",
                     "api_domain is the API base");
    cr_expect_null(res.refresh_token);
    cr_expect_eq(res.expires_at_ms, NOW_MS + 3600 * 1000LL);
    oauth_result_release(&res);

    /* A refused refresh token comes back with HTTP 200. */
    parse(&p, 200, "{\"error\":\"invalid_code\"}", &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_str_eq(res.error, "invalid_code");
    cr_expect_str_eq(res.message, "reconnect Zoho: the refresh token was "
                                  "revoked or has expired (invalid_code)");
    oauth_result_release(&res);
    parse(&p, 200, "{\"error\":\"invalid_client\"}", &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    oauth_result_release(&res);

    /* Too many refreshes: Zoho blocks for a while; that is not a refusal. */
    parse(&p, 400,
          "{\"error_description\":\"You have made too many requests "
          "continuously. Please try again after some time.\",\"error\":"
          "\"Access Denied\",\"status\":\"failure\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    cr_expect_eq(res.retry_after_ms, 60000);
    oauth_result_release(&res);
}

/* ---- Microsoft ----------------------------------------------------------- */

Test(oauth, microsoft_request_as_documented)
{
    /* learn.microsoft.com .../v2-oauth2-auth-code-flow, "Refresh the
     * access token". */
    struct oauth_params p = params(OAUTH_MICROSOFT);
    p.client_id = "00001111-aaaa-2222-bbbb-3333cccc4444";
    p.client_secret = "sampleCredentia1s";
    p.refresh_token = "OAAABAAAAiL9Kn2Z27UubvWFPbm0gLWQJVzCTE9UkP3pSx1aXxUjq";
    p.scope = "https://graph.microsoft.com/mail.read";
    struct oauth_request rq;
    build(&p, &rq);
    cr_expect_str_eq(
        rq.url, "https://login.microsoftonline.com/common/oauth2/v2.0/token");
    cr_expect_str_eq(rq.body,
                     "grant_type=refresh_token&client_id=00001111-aaaa-2222-"
                     "bbbb-3333cccc4444&client_secret=sampleCredentia1s&"
                     "refresh_token=OAAABAAAAiL9Kn2Z27UubvWFPbm0gLWQJVzCTE9U"
                     "kP3pSx1aXxUjq&scope=https%3A%2F%2Fgraph.microsoft.com"
                     "%2Fmail.read");
    oauth_request_release(&rq);

    p.tenant = "contoso.onmicrosoft.com";
    p.scope = NULL;
    build(&p, &rq);
    cr_expect_str_eq(rq.url, "https://login.microsoftonline.com/contoso."
                             "onmicrosoft.com/oauth2/v2.0/token");
    expect_form(&rq, "scope", NULL);
    oauth_request_release(&rq);
    p.tenant = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
    build(&p, &rq);
    cr_expect(strstr(rq.url, "/aaaabbbb-0000-cccc-1111-dddd2222eeee/oauth2/"),
              "%s", rq.url);
    oauth_request_release(&rq);

    const char *bad[] = {"../evil", "a/b", ".hidden", "x?y", "t enant"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p.tenant = bad[i];
        build_fails(&p, "tenant");
    }
}

Test(oauth, microsoft_answers_and_errors)
{
    struct oauth_params p = params(OAUTH_MICROSOFT);
    p.refresh_token = "OAAABAAAAiL9Kn2Z27UubvWFPbm0gLWQJVzCTE9UkP3pSx1aXxUjq";
    struct oauth_result res;
    parse(&p, 200,
          "{\"access_token\": \"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6I"
          "k5HVEZ2ZEstZnl0aEV1Q\", \"token_type\": \"Bearer\", \"expires_in\""
          ": 3599, \"scope\": \"https%3A%2F%2Fgraph.microsoft.com%2Fmail.read"
          "\", \"refresh_token\": \"AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4"
          "B4\", \"id_token\": \"eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0\"}",
          &res);
    cr_assert_eq(res.outcome, OAUTH_OK);
    cr_expect(res.rotated, "the answer's refresh token replaces the old one");
    cr_expect_str_eq(res.refresh_token,
                     "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4");
    cr_expect_eq(res.expires_at_ms, NOW_MS + 3599 * 1000LL);
    oauth_result_release(&res);

    /* Older answers carry expires_in as a string. */
    parse(&p, 200, "{\"access_token\":\"x\",\"expires_in\":\"3599\"}", &res);
    cr_expect_eq(res.expires_in_s, 3599);
    oauth_result_release(&res);

    parse(&p, 400,
          "{\"error\": \"invalid_grant\", \"error_description\": \"AADSTS70000"
          ": Authentication failed. Refresh Token is not valid.\\r\\nTrace ID"
          ": bb27293d-74e4\\r\\nCorrelation ID: b73106d5\\r\\nTimestamp: "
          "2014-11-06 18:39:47Z\", \"error_codes\": [70000], \"timestamp\": "
          "\"2014-11-06 18:39:47Z\", \"trace_id\": \"bb27293d-74e4\", "
          "\"correlation_id\": \"b73106d5\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_str_eq(res.message,
                     "reconnect Microsoft: the refresh token was revoked or "
                     "has expired (invalid_grant: AADSTS70000: "
                     "Authentication failed. Refresh Token is not valid.)");
    oauth_result_release(&res);

    parse(&p, 400,
          "{\"error\":\"interaction_required\",\"error_description\":\""
          "AADSTS50076: Due to a configuration change made by your "
          "administrator, you must use multi-factor authentication.\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(starts(res.message,
                     "reconnect Microsoft: the user must sign in again"),
              "%s", res.message);
    oauth_result_release(&res);

    parse(&p, 401,
          "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215"
          ": Invalid client secret provided.\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    expect_no_secrets(&res, &p);
    oauth_result_release(&res);

    parse(&p, 400,
          "{\"error\":\"temporarily_unavailable\",\"error_description\":\""
          "AADSTS50196: The server is temporarily too busy.\"}",
          &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    cr_expect_str_eq(res.error, "temporarily_unavailable");
    oauth_result_release(&res);
}

/* ---- Transient answers --------------------------------------------------- */

Test(oauth, transient_answers)
{
    struct oauth_params p = params(OAUTH_HUBSPOT);
    struct oauth_result res;
    struct oauth_response rsp = {0, NULL, 0, NULL, "Operation timed out"};
    oauth_parse_response(&p, &rsp, &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    cr_expect_str_eq(res.error, "network");
    cr_expect_str_eq(res.message, "cannot reach the HubSpot token endpoint: "
                                  "Operation timed out");
    cr_expect_eq(res.retry_after_ms, -1);
    oauth_result_release(&res);

    rsp = (struct oauth_response){429, "{\"status\":\"error\",\"message\":"
                                       "\"too many\"}",
                                  36, "7", NULL};
    oauth_parse_response(&p, &rsp, &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    cr_expect_str_eq(res.error, "rate_limited");
    cr_expect_eq(res.retry_after_ms, 7000);
    oauth_result_release(&res);

    /* Retry-After as an HTTP date: 30 s after NOW_MS. */
    rsp = (struct oauth_response){503, "<html>busy</html>", 17,
                                  "Sun, 15 Feb 2026 14:35:31 GMT", NULL};
    oauth_parse_response(&p, &rsp, &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    cr_expect_str_eq(res.error, "http_503");
    cr_expect_eq(res.retry_after_ms, 30000);
    oauth_result_release(&res);

    int transient[] = {408, 425, 500, 502, 504};
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        parse(&p, transient[i], "{\"error\":\"invalid_grant\"}", &res);
        cr_expect_eq(res.outcome, OAUTH_TRANSIENT, "HTTP %d", transient[i]);
        oauth_result_release(&res);
    }
    /* A 200 without tokens is garbled, not a refusal. */
    parse(&p, 200, "{\"token_type\":\"bearer\"}", &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    cr_expect_str_eq(res.error, "malformed");
    oauth_result_release(&res);
    parse(&p, 200, "<html>", &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    oauth_result_release(&res);
    parse(&p, 200, "{\"access_token\":\"\"}", &res);
    cr_expect_eq(res.outcome, OAUTH_TRANSIENT);
    oauth_result_release(&res);
}

Test(oauth, unknown_refusals_are_permanent_and_named)
{
    struct oauth_params p = params(OAUTH_GOOGLE);
    struct oauth_result res;
    parse(&p, 403, "", &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect_str_eq(res.error, "http_error");
    cr_expect(strstr(res.message, "HTTP 403"), "%s", res.message);
    oauth_result_release(&res);
    parse(&p, 400, "{\"error\":\"unsupported_grant_type\"}", &res);
    cr_expect_eq(res.outcome, OAUTH_PERMANENT);
    cr_expect(res.client_error);
    oauth_result_release(&res);
}

Test(oauth, answers_are_checked)
{
    struct oauth_params p = params(OAUTH_SALESFORCE);
    struct oauth_result res;
    /* instance_url must be an http(s) URL without spaces. */
    const char *bad[] = {"javascript:alert(1)", "https://a b.com", "https://",
                         "ftp://x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = json_pack("{s:s,s:s}", "access_token", "t",
                              "instance_url", bad[i]);
        char *body = json_dumps(j, 0);
        parse(&p, 200, body, &res);
        cr_expect_eq(res.outcome, OAUTH_OK);
        cr_expect_null(res.instance_url, "kept '%s'", bad[i]);
        oauth_result_release(&res);
        free(body);
        json_decref(j);
    }
    /* Provider text is cut at a line break and kept printable. */
    p = params(OAUTH_GOOGLE);
    parse(&p, 400,
          "{\"error\":\"invalid_grant\",\"error_description\":\"bad\\u0007"
          "token\\nsecond line\"}",
          &res);
    cr_expect(strstr(res.message, "(invalid_grant: bad?token)"), "%s",
              res.message);
    oauth_result_release(&res);
    /* Without expires_in the token is given an hour. */
    parse(&p, 200, "{\"access_token\":\"t\"}", &res);
    cr_expect_eq(res.expires_in_s, 3600);
    oauth_result_release(&res);
}

/* ---- Connecting ---------------------------------------------------------- */

Test(oauth, authorize_urls_carry_each_providers_parameters)
{
    struct cs_err err = {0};
    struct oauth_authorize a = {
        .provider = OAUTH_GOOGLE,
        .client_id = "g id",
        .redirect_uri = "https://c.example/oauth/google/callback",
        .state = "s1.abc",
        .code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    };
    char *u = oauth_authorize_url(&a, &err);
    cr_assert(u, "%s", err.msg);
    cr_expect(strncmp(u, "https://accounts.google.com/o/oauth2/v2/auth?", 45)
              == 0, "%s", u);
    cr_expect(strstr(u, "client_id=g%20id"));
    cr_expect(strstr(u, "redirect_uri=https%3A%2F%2Fc.example%2Foauth%2F"));
    cr_expect(strstr(u, "&access_type=offline&prompt=consent"));
    cr_expect(strstr(u, "&code_challenge_method=S256"));
    free(u);

    a.code_challenge = NULL;
    cr_expect_null(oauth_authorize_url(&a, &err));
    cr_expect_str_eq(err.field, "code_challenge");

    a.provider = OAUTH_MICROSOFT;
    a.tenant = "contoso.onmicrosoft.com";
    a.code_challenge = "x";
    u = oauth_authorize_url(&a, &err);
    cr_assert(u);
    cr_expect(strstr(u, "https://login.microsoftonline.com/"
                        "contoso.onmicrosoft.com/oauth2/v2.0/authorize?"));
    cr_expect(strstr(u, "scope=offline_access%20Calendars.ReadWrite"));
    cr_expect(strstr(u, "response_mode=query"));
    free(u);

    a.provider = OAUTH_GOHIGHLEVEL;
    a.code_challenge = NULL;
    a.scope = "contacts.readonly";
    u = oauth_authorize_url(&a, &err);
    cr_assert(u);
    cr_expect(strstr(u, "https://marketplace.gohighlevel.com/oauth/"
                        "chooselocation?response_type=code"));
    cr_expect(strstr(u, "scope=contacts.readonly&"));
    cr_expect(!strstr(u, "code_challenge"));
    free(u);

    a.provider = OAUTH_ZOHO;
    a.zoho_dc = "eu";
    a.scope = NULL;
    u = oauth_authorize_url(&a, &err);
    cr_assert(u);
    cr_expect(strstr(u, "https://accounts.zoho.eu/oauth/v2/auth?"));
    cr_expect(strstr(u, "access_type=offline"));
    free(u);
    cr_expect_str_eq(oauth_zoho_accounts("in"), "https://accounts.zoho.in");
    cr_expect_null(oauth_zoho_accounts("https://evil.example"));
}

Test(oauth, pkce_challenge_is_rfc7636_s256)
{
    /* RFC 7636 appendix B. */
    char *c =
        oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    cr_expect_str_eq(c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    free(c);
    char v[44];
    cr_assert_eq(oauth_pkce_verifier(v), 0);
    cr_expect_eq(strlen(v), 43);
}

Test(oauth, code_grant_body_and_ghl_location)
{
    struct oauth_params p = {
        .provider = OAUTH_GOHIGHLEVEL,
        .grant = OAUTH_GRANT_CODE,
        .client_id = "cid",
        .client_secret = "sec",
        .code = "c0de",
        .redirect_uri = "https://c.example/cb",
        .code_verifier = NULL,
        .now_ms = 1000,
    };
    struct oauth_request rq;
    struct cs_err err = {0};
    cr_assert_eq(oauth_build_request(&p, &rq, &err), 0, "%s", err.msg);
    cr_expect_str_eq(rq.url,
                     "https://services.leadconnectorhq.com/oauth/token");
    char *v = form(rq.body, "grant_type");
    cr_expect_str_eq(v, "authorization_code");
    free(v);
    v = form(rq.body, "redirect_uri");
    cr_expect_str_eq(v, "https://c.example/cb");
    free(v);
    v = form(rq.body, "user_type");
    cr_expect_str_eq(v, "Location");
    free(v);
    cr_expect_null(form(rq.body, "refresh_token"));
    oauth_request_release(&rq);

    static const char body[] =
        "{\"access_token\":\"at\",\"token_type\":\"Bearer\",\"expires_in\":"
        "86399,\"refresh_token\":\"rt\",\"userType\":\"Location\","
        "\"locationId\":\"loc123\",\"companyId\":\"co9\"}";
    struct oauth_response rsp = {.status = 200, .body = body,
                                 .body_len = sizeof(body) - 1};
    struct oauth_result res;
    oauth_parse_response(&p, &rsp, &res);
    cr_expect_eq(res.outcome, OAUTH_OK);
    cr_expect_str_eq(res.account_id, "loc123");
    cr_expect_str_eq(res.refresh_token, "rt");
    oauth_result_release(&res);

    p.code = NULL;
    cr_expect_neq(oauth_build_request(&p, &rq, &err), 0);
    cr_expect_str_eq(err.field, "code");
}
