/*
 * test_ingest.c - callsync-ingest end to end against the real Redis and
 * PostgreSQL of the test stack: every source's happy path, de-duplication,
 * the bad-input suite (each case asserts the exact status and that Redis
 * holds nothing new), timeouts, outages and a graceful stop.
 */
#include "it_support.h"
#include "norm.h"

#include <jansson.h>

#define REDIS_DB 1
#define RETELL_KEY "key_5f1c2a9e0b7d4c3a8e6f"
#define CALLRAIL_TOKEN "b5c1e0a2f3d4c6e7a8b9"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define OUTBOUND_SECRET "ghl-workflow-secret-7d2f"
#define CALCOM_SECRET "calcom-signing-secret-91"
#define STRIPE_SECRET "whsec_stripe_test_4f8a2b"
#define RETELL_AGENT "agent_d8a1c0ffee"
#define CALLRAIL_COMPANY "COM8154748ae6bd4e278a7cddd38a662f4f"

static struct tpg db;
static struct cs_keyring *kr;
static redisContext *rc;
static pid_t ingest;
static int port;
static char keys[80];
static char *org, *agent, *c_hubspot, *c_zapier, *c_ghl, *c_calcom, *c_stripe;
static char log_path[128];

static char *add_conn(const char *type, const char *auth, const char *secret,
                      const char *config)
{
    char *sealed = secret ? cs_seal(kr, secret, strlen(secret)) : NULL;
    const char *p[] = {agent, org, type, auth, sealed, config};
    char *id = it_sql(&db,
                      "INSERT INTO integration_connections (agent_id, "
                      "organization_id, integration_type, auth_type, "
                      "webhook_secret, config) VALUES ($1, $2, $3, $4, $5, "
                      "$6::jsonb) RETURNING id::text",
                      6, p);
    free(sealed);
    return id;
}

static void start_ingest(const char *redis_url)
{
    port = it_free_port();
    char *env[16];
    int n = 0;
    env[n++] = xasprintf("CALLSYNC_DATABASE_URL=%s", db.url);
    env[n++] = xasprintf("CALLSYNC_REDIS_URL=%s", redis_url);
    env[n++] = xasprintf("CALLSYNC_INGEST_PORT=%d", port);
    env[n++] = xasprintf("CALLSYNC_ENCRYPTION_KEYS=%s", keys);
    env[n++] = xstrdup("CALLSYNC_INGEST_THREADS=2");
    env[n++] = xstrdup("CALLSYNC_RETELL_API_KEYS=key_old_rotated," RETELL_KEY);
    env[n++] = xstrdup("CALLSYNC_CALLRAIL_SECRETS=" CALLRAIL_TOKEN);
    env[n++] = xstrdup("CALLSYNC_STANDARD_WEBHOOK_SECRETS=acme=" STD_SECRET);
    env[n++] = xstrdup("CALLSYNC_INGEST_HEADER_TIMEOUT_MS=600");
    env[n++] = xstrdup("CALLSYNC_INGEST_BODY_TIMEOUT_MS=600");
    env[n++] = xstrdup("CALLSYNC_INGEST_REDIS_TIMEOUT_MS=500");
    env[n++] = xstrdup("CALLSYNC_INGEST_CACHE_TTL_MS=60000");
    env[n++] = xstrdup("CALLSYNC_LOG_LEVEL=warn");
    env[n] = NULL;
    char *argv[] = {(char *)CS_BIN_DIR "/callsync-ingest", NULL};
    snprintf(log_path, sizeof(log_path), "/tmp/cs_ingest_test_%d.log",
             (int)getpid());
    ingest = it_spawn(argv, env, log_path);
    for (int i = 0; i < n; i++)
        free(env[i]);
}

static void setup(void)
{
    tpg_setup(&db, "ingest", true);
    unsigned char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(i * 7 + 3);
    char *b64 = cs_base64_encode(raw, sizeof(raw));
    snprintf(keys, sizeof(keys), "t1:%s", b64);
    free(b64);
    struct cs_err err = {0};
    kr = cs_keyring_new(keys, &err);
    cr_assert(kr, "%s", err.msg);

    org = it_sql(&db, "INSERT INTO organizations (name) VALUES "
                      "('Summit Roofing') RETURNING id::text",
                 0, NULL);
    const char *ap[] = {org};
    agent = it_sql(&db,
                   "INSERT INTO agents (organization_id, name, "
                   "retell_agent_id, callrail_company_id, "
                   "outbound_from_number) VALUES ($1, 'Front desk', '"
                   RETELL_AGENT "', '" CALLRAIL_COMPANY
                   "', '+14155550100') RETURNING id::text",
                   1, ap);
    c_hubspot = add_conn("hubspot", "api_key", NULL, "{}");
    c_zapier = add_conn("zapier", "webhook", NULL, "{}");
    c_ghl = add_conn("gohighlevel", "api_key", NULL, "{}");
    c_calcom = add_conn("cal_com", "api_key", CALCOM_SECRET, "{}");
    c_stripe = add_conn("stripe", "api_key", STRIPE_SECRET, "{}");
    char *sealed = cs_seal(kr, OUTBOUND_SECRET, strlen(OUTBOUND_SECRET));
    const char *wp[] = {agent, org, sealed};
    free(it_sql(&db,
                "INSERT INTO integration_webhooks (agent_id, organization_id, "
                "webhook_type, webhook_secret) VALUES ($1, $2, "
                "'outbound_call', $3) RETURNING id::text",
                3, wp));
    free(sealed);

    rc = it_redis(REDIS_DB);
    freeReplyObject(redisCommand(rc, "FLUSHDB"));
    char *url = it_redis_url(REDIS_DB);
    start_ingest(url);
    free(url);
    it_wait_ready(port, 15000);
}

static void teardown(void)
{
    int st = it_stop(ingest, SIGTERM, 15000);
    cr_expect_eq(st, 0, "ingest must exit 0 on SIGTERM (log: %s)", log_path);
    it_expect_clean_log(log_path);
    if (rc)
        redisFree(rc);
    tpg_teardown(&db);
    cs_keyring_free(kr);
    free(org);
    free(agent);
    free(c_hubspot);
    free(c_zapier);
    free(c_ghl);
    free(c_calcom);
    free(c_stripe);
}

TestSuite(ingest, .init = setup, .fini = teardown, .timeout = 60);

/* ---- Helpers ----------------------------------------------------------- */

static char *fixture(const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/%s", CS_SOURCE_DIR, name);
    return it_read_file(path, n);
}

static char *retell_sig(const char *body, size_t n, int64_t ms,
                        const char *key)
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)ms);
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(key, strlen(key), body, n, ts, strlen(ts), NULL, 0, mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    return xasprintf("X-Retell-Signature: v=%s,d=%s\r\n", ts, hex);
}

static struct it_resp post_retell(const char *body, size_t n)
{
    char *h = retell_sig(body, n, cs_now_ms(), RETELL_KEY);
    struct it_resp r = it_post(port, "/webhooks/retell", h, body, n);
    free(h);
    return r;
}

static long long keycount(void)
{
    return it_redis_int(rc, "DBSIZE");
}

static json_t *body_json(const struct it_resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    cr_assert(j, "answer is not JSON: %.*s", (int)r->body_len, r->body);
    return j;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* The answer is {"error": code, ...} with the status, and Redis gained no
 * key. */
static void expect_refused(const struct it_resp *r, int status,
                           const char *code, long long keys_before)
{
    cr_expect_eq(r->status, status, "status %d, want %d: %.*s", r->status,
                 status, (int)r->body_len, r->body);
    if (code) {
        json_t *j = body_json(r);
        cr_expect_str_eq(jstr(j, "error"), code);
        cr_expect(jstr(j, "message") && *jstr(j, "message"));
        json_decref(j);
    }
    cr_expect_eq(keycount(), keys_before, "Redis gained keys");
}

static unsigned shard(void)
{
    return cs_shard_of(agent, 1);
}

static long long xlen(const char *provider)
{
    return it_redis_int(rc, "XLEN cs:{%u}:q:%s", shard(), provider);
}

/* ---- Retell ------------------------------------------------------------ */

Test(ingest, retell_call_analyzed_makes_one_job_per_connection)
{
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    struct it_resp r = post_retell(body, n);
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "status"), "accepted");
    json_t *ids = json_object_get(j, "job_ids");
    cr_assert_eq(json_array_size(ids), 5);
    cr_expect_eq(xlen("hubspot"), 1);
    cr_expect_eq(xlen("zapier"), 1);
    cr_expect_eq(xlen("gohighlevel"), 1);
    cr_expect_eq(xlen("cal_com"), 1);
    cr_expect_eq(xlen("stripe"), 1);

    /* The job ids are deterministic and each has its hash. */
    json_t *doc = json_loads(body, 0, NULL);
    const char *call_id = json_string_value(
        json_object_get(json_object_get(doc, "call"), "call_id"));
    char want[33];
    cs_job_id(call_id, c_hubspot, want);
    bool found = false;
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        found |= strcmp(id, want) == 0;
        cr_expect_eq(it_redis_int(rc, "EXISTS cs:{%u}:job:%s", shard(), id),
                     1);
    }
    cr_expect(found, "hubspot job id is hash(call_id, connection_id)");

    /* The stream entry carries the normalised call with agent and org. */
    redisReply *x = redisCommand(rc, "XRANGE cs:{%u}:q:hubspot - +",
                                 shard());
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
    redisReply *fields = x->element[0]->element[1];
    cr_assert_eq(fields->elements, 4);
    cr_expect_str_eq(fields->element[0]->str, "job_id");
    cr_expect_str_eq(fields->element[1]->str, want);
    json_t *job = json_loads(fields->element[3]->str, 0, NULL);
    cr_assert(job);
    cr_expect_str_eq(jstr(job, "provider"), "hubspot");
    cr_expect_str_eq(jstr(job, "connection_id"), c_hubspot);
    json_t *call = json_object_get(job, "call");
    cr_expect_str_eq(jstr(call, "call_id"), call_id);
    cr_expect_str_eq(jstr(call, "agent_id"), agent);
    cr_expect_str_eq(jstr(call, "org_id"), org);
    cr_expect_str_eq(jstr(call, "source"), "retell");
    json_decref(job);
    freeReplyObject(x);
    /* Its job hash starts as queued, for workers to checkpoint into. */
    redisReply *h = redisCommand(rc, "HGET cs:{%u}:job:%s state", shard(),
                                 want);
    cr_expect(h && h->type == REDIS_REPLY_STRING &&
              strcmp(h->str, "queued") == 0);
    freeReplyObject(h);
    json_decref(doc);
    json_decref(j);
    free(body);
}

Test(ingest, retell_duplicate_returns_original_job_ids)
{
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    struct it_resp a = post_retell(body, n);
    cr_assert_eq(a.status, 202);
    long long before = keycount();
    struct it_resp b = post_retell(body, n);
    cr_assert_eq(b.status, 200, "%.*s", (int)b.body_len, b.body);
    json_t *ja = body_json(&a), *jb = body_json(&b);
    cr_expect_str_eq(jstr(jb, "status"), "duplicate");
    cr_expect(json_equal(json_object_get(ja, "job_ids"),
                         json_object_get(jb, "job_ids")));
    cr_expect_eq(keycount(), before);
    cr_expect_eq(xlen("hubspot"), 1);
    json_decref(ja);
    json_decref(jb);
    free(body);
}

Test(ingest, retell_events_that_do_not_sync_make_no_jobs)
{
    const char *names[] = {"retell/call_started.json",
                           "retell/call_ended.json"};
    for (size_t i = 0; i < 2; i++) {
        size_t n;
        char *body = fixture(names[i], &n);
        long long before = keycount();
        struct it_resp r = post_retell(body, n);
        cr_expect_eq(r.status, 200, "%s: %.*s", names[i], (int)r.body_len,
                     r.body);
        json_t *j = body_json(&r);
        cr_expect_str_eq(jstr(j, "status"), "ignored");
        cr_expect_eq(keycount(), before, "%s made keys", names[i]);
        json_decref(j);
        free(body);
    }
}

Test(ingest, retell_call_ended_syncs_for_agents_configured_so)
{
    const char *p[] = {agent};
    free(it_sql(&db, "UPDATE agents SET sync_on = 'call_ended' WHERE id = $1 "
                     "RETURNING id",
                1, p));
    freeReplyObject(redisCommand(rc, "PUBLISH cs:cache:connections %s",
                                 agent));
    usleep(100000);
    size_t n;
    char *ended = fixture("retell/call_ended.json", &n);
    struct it_resp r = post_retell(ended, n);
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    free(ended);
    /* The analysed event of the same call is not synced again. */
    char *analyzed = fixture("retell/call_analyzed.json", &n);
    long long before = keycount();
    r = post_retell(analyzed, n);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(keycount(), before);
    cr_expect_eq(xlen("hubspot"), 1);
    free(analyzed);
}

Test(ingest, event_type_key_is_accepted)
{
    size_t n;
    char *body = fixture("retell/call_analyzed_event_type.json", &n);
    struct it_resp r = post_retell(body, n);
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    free(body);
}

Test(ingest, sync_conditions_skip_connections)
{
    const char *p[] = {c_zapier};
    free(it_sql(&db,
                "UPDATE integration_connections SET config = "
                "'{\"sync_conditions\":{\"min_duration_seconds\":100000}}' "
                "WHERE id = $1 RETURNING id",
                1, p));
    freeReplyObject(redisCommand(rc, "PUBLISH cs:cache:connections %s",
                                 agent));
    usleep(100000);
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    struct it_resp r = post_retell(body, n);
    cr_assert_eq(r.status, 202);
    json_t *j = body_json(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "job_ids")), 4);
    cr_expect_eq(xlen("zapier"), 0);
    cr_expect_eq(xlen("hubspot"), 1);
    json_decref(j);
    free(body);
}

Test(ingest, new_connection_is_seen_after_invalidation)
{
    /* Warm the cache, then connect Salesforce and tell ingest. */
    size_t n;
    char *body = fixture("retell/call_started.json", &n);
    post_retell(body, n);
    free(body);
    free(add_conn("salesforce", "oauth", NULL, "{}"));
    freeReplyObject(redisCommand(rc, "PUBLISH cs:cache:connections %s",
                                 agent));
    usleep(100000);
    body = fixture("retell/call_analyzed.json", &n);
    struct it_resp r = post_retell(body, n);
    cr_assert_eq(r.status, 202);
    cr_expect_eq(xlen("salesforce"), 1);
    free(body);
}

Test(ingest, unknown_retell_agent_is_404)
{
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    json_t *doc = json_loads(body, 0, NULL);
    json_object_set_new(json_object_get(doc, "call"), "agent_id",
                        json_string("agent_nobody"));
    char *s = json_dumps(doc, JSON_COMPACT);
    long long before = keycount();
    struct it_resp r = post_retell(s, strlen(s));
    expect_refused(&r, 404, "unknown_agent", before);
    free(s);
    json_decref(doc);
    free(body);
}

/* ---- Signatures -------------------------------------------------------- */

Test(ingest, forged_and_stale_signatures_are_refused)
{
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    long long before = keycount();
    struct it_resp r = it_post(port, "/webhooks/retell", NULL, body, n);
    expect_refused(&r, 401, "missing_signature", before);

    char *h = retell_sig(body, n, cs_now_ms(), "key_wrong");
    r = it_post(port, "/webhooks/retell", h, body, n);
    expect_refused(&r, 401, "bad_signature", before);
    free(h);

    h = retell_sig(body, n, cs_now_ms() - 301000, RETELL_KEY);
    r = it_post(port, "/webhooks/retell", h, body, n);
    expect_refused(&r, 401, "stale_timestamp", before);
    free(h);

    r = it_post(port, "/webhooks/retell",
                "X-Retell-Signature: nonsense\r\n", body, n);
    expect_refused(&r, 401, "malformed_signature", before);

    /* A valid signature over other bytes. */
    h = retell_sig(body, n, cs_now_ms(), RETELL_KEY);
    body[n - 2] = body[n - 2] == ' ' ? '\n' : ' ';
    r = it_post(port, "/webhooks/retell", h, body, n);
    expect_refused(&r, 401, "bad_signature", before);
    free(h);
    free(body);
}

Test(ingest, rotated_key_still_verifies)
{
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    char *h = retell_sig(body, n, cs_now_ms(), "key_old_rotated");
    struct it_resp r = it_post(port, "/webhooks/retell", h, body, n);
    cr_expect_eq(r.status, 202);
    free(h);
    free(body);
}

/* ---- Bad input --------------------------------------------------------- */

static void signed_bad_body(const char *body, int status, const char *code,
                            const char *field)
{
    long long before = keycount();
    struct it_resp r = post_retell(body, strlen(body));
    expect_refused(&r, status, code, before);
    if (field) {
        json_t *j = body_json(&r);
        cr_expect_str_eq(jstr(j, "field"), field, "body %s", body);
        json_decref(j);
    }
}

Test(ingest, invalid_payloads_name_the_problem)
{
    signed_bad_body("{\"event\":\"call_analyzed\",", 400, "invalid_json",
                    NULL);
    signed_bad_body("[1,2,3]", 400, "invalid_json", NULL);
    signed_bad_body("{\"event\":\"call_analyzed\",\"call\":{\"agent_id\":"
                    "\"agent_d8a1c0ffee\"}}",
                    400, "invalid_field", "call.call_id");
    signed_bad_body("{\"event\":\"call_analyzed\",\"call\":{\"call_id\":7,"
                    "\"agent_id\":\"agent_d8a1c0ffee\"}}",
                    400, "invalid_field", "call.call_id");
    signed_bad_body("{\"call\":{\"call_id\":\"c1\"}}", 400, "invalid_field",
                    "event");
    signed_bad_body("{\"event\":\"call_analyzed\",\"call\":{\"call_id\":"
                    "\"c1\",\"agent_id\":\"agent_d8a1c0ffee\","
                    "\"start_timestamp\":\"yesterday\"}}",
                    400, "invalid_field", "call.start_timestamp");
    /* Invalid UTF-8 inside a string. */
    signed_bad_body("{\"event\":\"call_analyzed\",\"call\":{\"call_id\":"
                    "\"c\xff\xfe\",\"agent_id\":\"agent_d8a1c0ffee\"}}",
                    400, "invalid_json", NULL);
    signed_bad_body("", 400, "invalid_json", NULL);
}

Test(ingest, http_level_refusals)
{
    long long before = keycount();
    struct it_resp r;
    /* Wrong content type. */
    static const char form[] =
        "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\nContent-Type: "
        "application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1";
    cr_assert(it_raw(port, form, sizeof(form) - 1, &r));
    expect_refused(&r, 415, "unsupported_media_type", before);
    /* No content type at all. */
    static const char none[] = "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\n"
                               "Content-Length: 2\r\n\r\n{}";
    cr_assert(it_raw(port, none, sizeof(none) - 1, &r));
    expect_refused(&r, 415, "unsupported_media_type", before);
    /* Declared body over the cap: refused before it is read. */
    static const char big[] =
        "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\nContent-Type: "
        "application/json\r\nContent-Length: 2000000\r\n\r\n{";
    cr_assert(it_raw(port, big, sizeof(big) - 1, &r));
    expect_refused(&r, 413, "body_too_large", before);
    cr_expect(r.closed);
    /* Chunked body over the cap. */
    struct buf b;
    buf_init(&b, 4 << 20);
    cr_assert(!buf_adds(&b, "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\n"
                            "Content-Type: application/json\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n"));
    char chunk[65536 + 16];
    memset(chunk, ' ', sizeof(chunk));
    int hl = snprintf(chunk, 16, "10000\r\n");
    chunk[hl - 1] = '\n';
    memcpy(chunk + hl + 65536, "\r\n", 2);
    for (int i = 0; i < 17; i++)
        cr_assert(!buf_add(&b, chunk, (size_t)hl + 65536 + 2));
    cr_assert(!buf_adds(&b, "0\r\n\r\n"));
    cr_assert(it_raw(port, b.data, b.len, &r));
    expect_refused(&r, 413, "body_too_large", before);
    buf_release(&b);
    /* Headers over the cap. */
    struct buf hb;
    buf_init(&hb, 1 << 20);
    cr_assert(!buf_adds(&hb, "GET /healthz HTTP/1.1\r\nHost: t\r\n"));
    for (int i = 0; i < 40; i++)
        cr_assert(!buf_addf(&hb, "X-Filler-%d: %0500d\r\n", i, 0));
    cr_assert(!buf_adds(&hb, "\r\n"));
    cr_assert(it_raw(port, hb.data, hb.len, &r));
    expect_refused(&r, 431, "header_too_large", before);
    buf_release(&hb);
    /* Garbage request line. */
    static const char junk[] = "HELLO THERE\r\n\r\n";
    cr_assert(it_raw(port, junk, sizeof(junk) - 1, &r));
    expect_refused(&r, 400, "malformed_http", before);
    static const char badver[] = "GET /healthz HTTP/9\r\n\r\n";
    cr_assert(it_raw(port, badver, sizeof(badver) - 1, &r));
    expect_refused(&r, 400, "malformed_http", before);
    /* Header without a colon. */
    static const char nocolon[] = "GET /healthz HTTP/1.1\r\nHost t\r\n\r\n";
    cr_assert(it_raw(port, nocolon, sizeof(nocolon) - 1, &r));
    expect_refused(&r, 400, "malformed_http", before);
    /* Unknown route and wrong method. */
    r = it_get(port, "/webhooks/nothing");
    expect_refused(&r, 404, "not_found", before);
    r = it_get(port, "/webhooks/retell");
    expect_refused(&r, 405, "method_not_allowed", before);
}

Test(ingest, slow_clients_get_408)
{
    long long before = keycount();
    /* Headers that never end. */
    int fd = it_connect(port);
    static const char part[] = "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\n";
    it_send(fd, part, sizeof(part) - 1);
    struct it_resp r;
    cr_assert(it_read_resp(fd, &r, 5000), "no 408 for slow headers");
    expect_refused(&r, 408, "request_timeout", before);
    close(fd);
    /* A body shorter than its Content-Length: truncated. */
    fd = it_connect(port);
    static const char trunc[] =
        "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\nContent-Type: "
        "application/json\r\nContent-Length: 100\r\n\r\n{\"event\":";
    it_send(fd, trunc, sizeof(trunc) - 1);
    cr_assert(it_read_resp(fd, &r, 5000), "no 408 for a truncated body");
    expect_refused(&r, 408, "request_timeout", before);
    close(fd);
}

Test(ingest, keep_alive_pipelining_and_chunked_bodies)
{
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    char *sig = retell_sig(body, n, cs_now_ms(), RETELL_KEY);
    struct buf b;
    buf_init(&b, 1 << 22);
    /* Request 1: chunked in two pieces; 2: healthz; 3: duplicate. */
    size_t half = n / 2;
    cr_assert(!buf_addf(&b,
                        "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\n"
                        "Content-Type: application/json\r\n%s"
                        "Transfer-Encoding: chunked\r\n\r\n%zx\r\n",
                        sig, half));
    cr_assert(!buf_add(&b, body, half));
    cr_assert(!buf_addf(&b, "\r\n%zx\r\n", n - half));
    cr_assert(!buf_add(&b, body + half, n - half));
    cr_assert(!buf_adds(&b, "\r\n0\r\n\r\n"));
    cr_assert(!buf_adds(&b, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
    cr_assert(!buf_addf(&b,
                        "POST /webhooks/retell HTTP/1.1\r\nHost: t\r\n"
                        "Content-Type: application/json\r\n%s"
                        "Content-Length: %zu\r\n\r\n",
                        sig, n));
    cr_assert(!buf_add(&b, body, n));
    int fd = it_connect(port);
    it_send(fd, b.data, b.len);
    struct it_resp r;
    cr_assert(it_read_resp(fd, &r, 5000));
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect(!r.closed);
    cr_assert(it_read_resp(fd, &r, 5000));
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"ok\""));
    cr_assert(it_read_resp(fd, &r, 5000));
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "duplicate"));
    close(fd);
    cr_expect_eq(xlen("hubspot"), 1);
    buf_release(&b);
    free(sig);
    free(body);
}

/* ---- Other sources ----------------------------------------------------- */

Test(ingest, callrail_post_call)
{
    size_t n;
    char *body = fixture("callrail/post_call.json", &n);
    unsigned char mac[CS_SHA1_LEN];
    cs_hmac_sha1(CALLRAIL_TOKEN, strlen(CALLRAIL_TOKEN), body, n, mac);
    char *b64 = cs_base64_encode(mac, sizeof(mac));
    char *h = xasprintf("Signature: %s\r\n", b64);
    struct it_resp r = it_post(port, "/webhooks/callrail", h, body, n);
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(xlen("hubspot"), 1);
    long long before = keycount();
    /* Well-formed (20 bytes) but not the HMAC; then not base64 at all. */
    r = it_post(port, "/webhooks/callrail",
                "Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n", body, n);
    expect_refused(&r, 401, "bad_signature", before);
    r = it_post(port, "/webhooks/callrail", "Signature: AAAA\r\n", body, n);
    expect_refused(&r, 401, "malformed_signature", before);
    free(h);
    free(b64);
    free(body);
}

static char *calcom_sig(const char *body, size_t n, const char *secret)
{
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(secret, strlen(secret), body, n, NULL, 0, NULL, 0, mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    return xasprintf("X-Cal-Signature-256: %s\r\n", hex);
}

Test(ingest, calcom_booking_goes_to_the_other_connections)
{
    size_t n;
    char *body = fixture("calcom/booking_created.json", &n);
    char *path = xasprintf("/webhooks/calcom/%s", c_calcom);
    char *h = calcom_sig(body, n, CALCOM_SECRET);
    struct it_resp r = it_post(port, path, h, body, n);
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    json_t *j = body_json(&r);
    cr_expect_eq(json_array_size(json_object_get(j, "job_ids")), 4);
    cr_expect_eq(xlen("cal_com"), 0, "never back to its own source");
    cr_expect_eq(xlen("hubspot"), 1);
    json_decref(j);
    free(h);

    long long before = keycount();
    h = calcom_sig(body, n, "wrong");
    r = it_post(port, path, h, body, n);
    expect_refused(&r, 401, "bad_signature", before);
    free(h);
    /* A connection of another type, or none at all. */
    char *other = xasprintf("/webhooks/calcom/%s", c_hubspot);
    h = calcom_sig(body, n, CALCOM_SECRET);
    r = it_post(port, other, h, body, n);
    expect_refused(&r, 404, "unknown_connection", before);
    r = it_post(port, "/webhooks/calcom/00000000-0000-4000-8000-000000000000",
                h, body, n);
    expect_refused(&r, 404, "unknown_connection", before);
    r = it_post(port, "/webhooks/calcom/not-a-uuid", h, body, n);
    expect_refused(&r, 404, "unknown_connection", before);
    free(h);
    free(other);
    free(path);
    free(body);
}

static char *stripe_sig(const char *body, size_t n, int64_t t,
                        const char *secret)
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)t);
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(secret, strlen(secret), ts, strlen(ts), ".", 1, body, n,
                   mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    return xasprintf("Stripe-Signature: t=%s,v1=%s\r\n", ts, hex);
}

Test(ingest, stripe_events)
{
    size_t n;
    char *body = fixture("stripe/checkout_session_completed.json", &n);
    char *path = xasprintf("/webhooks/stripe/%s", c_stripe);
    char *h = stripe_sig(body, n, cs_now_ms() / 1000, STRIPE_SECRET);
    struct it_resp r = it_post(port, path, h, body, n);
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(xlen("stripe"), 0);
    cr_expect_eq(xlen("hubspot"), 1);
    free(h);
    long long before = keycount();
    h = stripe_sig(body, n, cs_now_ms() / 1000 - 400, STRIPE_SECRET);
    r = it_post(port, path, h, body, n);
    expect_refused(&r, 401, "stale_timestamp", before);
    free(h);
    free(body);
    body = fixture("stripe/customer_created.json", &n);
    h = stripe_sig(body, n, cs_now_ms() / 1000, STRIPE_SECRET);
    r = it_post(port, path, h, body, n);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(keycount(), before);
    free(h);
    free(body);
    free(path);
}

Test(ingest, standard_webhooks_source)
{
    size_t n;
    char *tmpl = fixture("standard/call_completed.json", &n);
    json_t *doc = json_loads(tmpl, 0, NULL);
    cr_assert(doc);
    json_object_set_new(json_object_get(doc, "data"), "agent_id",
                        json_string(agent));
    char *body = json_dumps(doc, JSON_COMPACT);
    n = strlen(body);
    const char *id = "msg_2Lh9fJ0aBq7cX3";
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)(cs_now_ms() / 1000));
    unsigned char key[64];
    const char *b64key = STD_SECRET + 6;
    int kl = cs_base64_decode(b64key, strlen(b64key), key, sizeof(key));
    cr_assert(kl > 0);
    unsigned char mac[CS_SHA256_LEN];
    char *prefix = xasprintf("%s.%s.", id, ts);
    cs_hmac_sha256(key, (size_t)kl, prefix, strlen(prefix), body, n, NULL, 0,
                   mac);
    char *sig = cs_base64_encode(mac, sizeof(mac));
    char *h = xasprintf("webhook-id: %s\r\nwebhook-timestamp: %s\r\n"
                        "webhook-signature: v1,%s\r\n",
                        id, ts, sig);
    struct it_resp r = it_post(port, "/webhooks/standard/acme", h, body, n);
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(xlen("zapier"), 1);
    long long before = keycount();
    r = it_post(port, "/webhooks/standard/unknown", h, body, n);
    expect_refused(&r, 404, "unknown_source", before);
    free(h);
    free(sig);
    free(prefix);
    free(body);
    json_decref(doc);
    free(tmpl);
}

/* ---- Outbound calls ---------------------------------------------------- */

Test(ingest, outbound_call_request)
{
    char *path = xasprintf("/api/agents/%s/outbound/call", agent);
    static const char body[] =
        "{\"phone\":\"+14079780655\",\"contact_name\":\"John Doe\","
        "\"contact_data\":{\"email\":\"john@example.com\"}}";
    long long before = keycount();
    struct it_resp r = it_post(port, path, "X-Webhook-Secret: wrong\r\n",
                               body, sizeof(body) - 1);
    expect_refused(&r, 401, "bad_signature", before);
    r = it_post(port, path, NULL, body, sizeof(body) - 1);
    expect_refused(&r, 401, "missing_signature", before);
    r = it_post(port, path,
                "X-Webhook-Secret: " OUTBOUND_SECRET "\r\n",
                "{\"phone\":\"407-978-0655\"}", 24);
    expect_refused(&r, 400, "invalid_field", before);

    const char *hdr = "X-Webhook-Secret: " OUTBOUND_SECRET
                      "\r\nIdempotency-Key: ghl-run-881\r\n";
    r = it_post(port, path, hdr, body, sizeof(body) - 1);
    cr_assert_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(xlen("retell"), 1);
    redisReply *x = redisCommand(rc, "XRANGE cs:{%u}:q:retell - +", shard());
    json_t *job = json_loads(x->element[0]->element[1]->element[3]->str, 0,
                             NULL);
    cr_expect_str_eq(jstr(job, "kind"), "outbound_call");
    cr_expect_str_eq(jstr(job, "from_number"), "+14155550100");
    cr_expect_str_eq(jstr(job, "retell_agent_id"), RETELL_AGENT);
    cr_expect_str_eq(jstr(json_object_get(job, "request"), "phone"),
                     "+14079780655");
    json_decref(job);
    freeReplyObject(x);
    /* The same key again is the same request. */
    r = it_post(port, path, hdr, body, sizeof(body) - 1);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(xlen("retell"), 1);

    /* HMAC form. */
    static const char body2[] = "{\"phone\":\"+14079780656\"}";
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)(cs_now_ms() / 1000));
    unsigned char mac[CS_SHA256_LEN];
    cs_hmac_sha256(OUTBOUND_SECRET, strlen(OUTBOUND_SECRET), ts, strlen(ts),
                   ".", 1, body2, sizeof(body2) - 1, mac);
    char hex[65];
    cs_hex_encode(mac, sizeof(mac), hex);
    char *h2 = xasprintf("X-Callsync-Signature: t=%s,v1=%s\r\n", ts, hex);
    r = it_post(port, path, h2, body2, sizeof(body2) - 1);
    cr_expect_eq(r.status, 202, "%.*s", (int)r.body_len, r.body);
    cr_expect_eq(xlen("retell"), 2);
    free(h2);
    before = keycount();
    r = it_post(port,
                "/api/agents/00000000-0000-4000-8000-000000000000/outbound/"
                "call",
                hdr, body, sizeof(body) - 1);
    expect_refused(&r, 404, "unknown_agent", before);
    free(path);
}

/* ---- Operations -------------------------------------------------------- */

Test(ingest, health_readiness_and_metrics)
{
    struct it_resp r = it_get(port, "/healthz");
    cr_expect_eq(r.status, 200);
    r = it_get(port, "/readyz");
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"redis\":\"ok\""));
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    post_retell(body, n);
    it_post(port, "/webhooks/retell", NULL, body, n);
    free(body);
    r = it_get(port, "/metrics");
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.body, "callsync_ingest_requests_total{route=\"retell\","
                             "status=\"202\"} 1"));
    cr_expect(strstr(r.body, "callsync_ingest_rejections_total{reason="
                             "\"missing_signature\"} 1"));
    cr_expect(strstr(r.body, "callsync_ingest_jobs_enqueued_total{provider="
                             "\"hubspot\"} 1"));
    cr_expect(strstr(r.body,
                     "callsync_ingest_request_duration_seconds_count{route="
                     "\"retell\"} 2"));
}

Test(ingest, redis_outage_answers_503_and_nothing_is_acknowledged)
{
    /* A second ingest whose Redis does not exist. */
    cr_expect_eq(it_stop(ingest, SIGTERM, 15000), 0);
    int dead = it_free_port();
    char *url = xasprintf("redis://127.0.0.1:%d/0", dead);
    start_ingest(url);
    free(url);
    usleep(300000);
    struct it_resp r = it_get(port, "/readyz");
    cr_expect_eq(r.status, 503);
    cr_expect(strstr(r.headers, "Retry-After:"));
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    struct it_resp w = post_retell(body, n);
    cr_expect_eq(w.status, 503, "%.*s", (int)w.body_len, w.body);
    cr_expect(strstr(w.headers, "Retry-After:"));
    json_t *j = body_json(&w);
    cr_expect_str_eq(jstr(j, "error"), "queue_unavailable");
    json_decref(j);
    free(body);
}

Test(ingest, database_outage_answers_503)
{
    cr_expect_eq(it_stop(ingest, SIGTERM, 15000), 0);
    /* Point at a database that does not exist. */
    char *saved = db.url;
    db.url = tpg_url_with_db(db.base_url, "no_such_db");
    char *url = it_redis_url(REDIS_DB);
    start_ingest(url);
    free(url);
    free(db.url);
    db.url = saved;
    usleep(300000);
    size_t n;
    char *body = fixture("retell/call_analyzed.json", &n);
    long long before = keycount();
    struct it_resp w = post_retell(body, n);
    expect_refused(&w, 503, "database_unavailable", before);
    free(body);
}
