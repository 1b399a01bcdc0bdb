/*
 * cfg.c - the configuration table; see cfg.h. A new setting is a new row.
 */
#include "cfg.h"
#include "dur.h"
#include "log.h"

#include <jansson.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum cfg_type { CFG_STR, CFG_INT };

struct cfg_row {
    const char *key;  /* key in the JSON file */
    const char *env;  /* environment variable */
    enum cfg_type type;
    size_t off;
    const char *def;
    long min, max;
    bool secret;
    const char *doc;
};

#define S(k, e, f, d, sec, doc)                                              \
    {k, e, CFG_STR, offsetof(struct cfg, f), d, 0, 0, sec, doc}
#define I(k, e, f, d, lo, hi, doc)                                           \
    {k, e, CFG_INT, offsetof(struct cfg, f), d, lo, hi, false, doc}

static const struct cfg_row rows[] = {
    S("log_level", "CALLSYNC_LOG_LEVEL", log_level, "info", false,
      "debug, info, warn or error"),
    S("redis_url", "CALLSYNC_REDIS_URL", redis_url, "redis://127.0.0.1:6379/0",
      false, "Redis to enqueue into (redis://[:password@]host:port[/db])"),
    S("database_url", "CALLSYNC_DATABASE_URL", database_url,
      "postgresql://callsync@127.0.0.1:5432/callsync", false,
      "PostgreSQL connection string (libpq URI or key=value)"),
    I("shards", "CALLSYNC_SHARDS", shards, "1", 1, 1024,
      "number of queue shards; an agent's jobs go to shard hash(agent) mod N"),
    S("encryption_keys", "CALLSYNC_ENCRYPTION_KEYS", encryption_keys, "", true,
      "AES-256-GCM keys for secrets at rest: id:base64(32 bytes), first one "
      "encrypts, all decrypt"),
    S("migrations_dir", "CALLSYNC_MIGRATIONS_DIR", migrations_dir,
      CS_DEFAULT_MIGRATIONS_DIR, false, "folder of numbered SQL migrations"),
    S("ingest_host", "CALLSYNC_INGEST_HOST", ingest_host, "127.0.0.1", false,
      "address ingest listens on"),
    I("ingest_port", "CALLSYNC_INGEST_PORT", ingest_port, "8080", 1, 65535,
      "port ingest listens on"),
    I("ingest_threads", "CALLSYNC_INGEST_THREADS", ingest_threads, "0", 0, 256,
      "event loops (SO_REUSEPORT listeners); 0 = one per core"),
    I("ingest_max_body", "CALLSYNC_INGEST_MAX_BODY", ingest_max_body, "1048576",
      1024, 64 * 1024 * 1024, "largest request body in bytes (413 above)"),
    I("ingest_max_header", "CALLSYNC_INGEST_MAX_HEADER", ingest_max_header,
      "16384", 1024, 1024 * 1024,
      "largest request line plus headers in bytes (431 above)"),
    I("ingest_max_conns", "CALLSYNC_INGEST_MAX_CONNS", ingest_max_conns,
      "10000", 1, 1000000, "open client connections per loop"),
    I("ingest_header_timeout_ms", "CALLSYNC_INGEST_HEADER_TIMEOUT_MS",
      ingest_header_timeout_ms, "10000", 100, 600000,
      "time a client has to send a request's line and headers (408 after)"),
    I("ingest_body_timeout_ms", "CALLSYNC_INGEST_BODY_TIMEOUT_MS",
      ingest_body_timeout_ms, "30000", 100, 600000,
      "time a client has to send a request's body (408 after)"),
    I("ingest_idle_timeout_ms", "CALLSYNC_INGEST_IDLE_TIMEOUT_MS",
      ingest_idle_timeout_ms, "60000", 100, 3600000,
      "keep-alive connections idle this long are closed"),
    I("ingest_redis_timeout_ms", "CALLSYNC_INGEST_REDIS_TIMEOUT_MS",
      ingest_redis_timeout_ms, "2000", 10, 60000,
      "longest wait for Redis to take a webhook's jobs (503 after)"),
    I("ingest_pg_timeout_ms", "CALLSYNC_INGEST_PG_TIMEOUT_MS",
      ingest_pg_timeout_ms, "2000", 10, 60000,
      "longest wait for a connection look-up in PostgreSQL (503 after)"),
    I("ingest_cache_ttl_ms", "CALLSYNC_INGEST_CACHE_TTL_MS",
      ingest_cache_ttl_ms, "30000", 0, 3600000,
      "how long an agent's connections stay cached (changes also invalidate)"),
    I("dedup_ttl_s", "CALLSYNC_DEDUP_TTL_S", dedup_ttl_s, "345600", 60,
      31536000, "how long a webhook event id is remembered as seen"),
    I("outbound_dedup_ttl_s", "CALLSYNC_OUTBOUND_DEDUP_TTL_S",
      outbound_dedup_ttl_s, "600", 0, 86400,
      "identical outbound-call requests without Idempotency-Key within this "
      "window are one request"),
    I("sig_tolerance_s", "CALLSYNC_SIGNATURE_TOLERANCE_S", sig_tolerance_s,
      "300", 1, 86400, "accepted age of signed webhook timestamps"),
    S("default_country_code", "CALLSYNC_DEFAULT_COUNTRY_CODE",
      default_country_code, "1", false,
      "country calling code for national phone numbers without one"),
    S("retell_api_keys", "CALLSYNC_RETELL_API_KEYS", retell_api_keys, "", true,
      "Retell API keys that sign webhooks (comma-separated); the worker "
      "places outbound calls with the first"),
    S("callrail_secrets", "CALLSYNC_CALLRAIL_SECRETS", callrail_secrets, "",
      true, "CallRail webhook signing tokens (comma-separated)"),
    S("standard_secrets", "CALLSYNC_STANDARD_WEBHOOK_SECRETS", standard_secrets,
      "", true,
      "Standard Webhooks secrets per source: source=whsec_...[,source=...]"),
    I("live_deadline_ms", "CALLSYNC_LIVE_DEADLINE_MS", live_deadline_ms,
      "5000", 200, 60000,
      "live-call tools (/tools/retell): longest wait for the calendar "
      "before the caller hears the fallback"),
    I("live_slots", "CALLSYNC_LIVE_SLOTS", live_slots, "6", 1, 20,
      "free slots offered per check_availability answer"),
    S("worker_consumer", "CALLSYNC_WORKER_CONSUMER", worker_consumer, "", false,
      "consumer name in the streams' group; empty: <hostname>-<pid>"),
    I("worker_inflight", "CALLSYNC_WORKER_INFLIGHT", worker_inflight, "512", 1,
      100000, "jobs a worker runs at once"),
    I("worker_batch", "CALLSYNC_WORKER_BATCH", worker_batch, "64", 1, 10000,
      "jobs read from a stream per XREADGROUP"),
    S("worker_providers", "CALLSYNC_WORKER_PROVIDERS", worker_providers, "",
      false, "providers whose streams this worker consumes (comma-separated); "
             "empty: all it implements"),
    I("worker_visibility_ms", "CALLSYNC_WORKER_VISIBILITY_MS",
      worker_visibility_ms, "60000", 1000, 86400000,
      "a job read but not finished for this long is reclaimed by any worker"),
    I("worker_max_deliveries", "CALLSYNC_WORKER_MAX_DELIVERIES",
      worker_max_deliveries, "10", 2, 1000,
      "a job delivered this many times without finishing is dead-lettered "
      "as poison"),
    I("worker_connect_timeout_ms", "CALLSYNC_WORKER_CONNECT_TIMEOUT_MS",
      worker_connect_timeout_ms, "5000", 100, 120000,
      "connect timeout of provider requests"),
    I("worker_request_timeout_ms", "CALLSYNC_WORKER_REQUEST_TIMEOUT_MS",
      worker_request_timeout_ms, "30000", 100, 600000,
      "total timeout of a provider request"),
    I("worker_host_conns", "CALLSYNC_WORKER_HOST_CONNS", worker_host_conns,
      "64", 1, 10000, "open connections per provider host"),
    I("worker_grace_ms", "CALLSYNC_WORKER_GRACE_MS", worker_grace_ms, "20000",
      0, 600000, "on SIGTERM, time to finish jobs in flight before handing "
                 "the rest back"),
    I("worker_defer_max_ms", "CALLSYNC_WORKER_DEFER_MAX_MS",
      worker_defer_max_ms, "5000", 0, 600000,
      "a rate-limited job waits in memory up to this long, else in the "
      "delayed set"),
    I("worker_live_inflight", "CALLSYNC_WORKER_LIVE_INFLIGHT",
      worker_live_inflight, "64", 1, 10000,
      "live-call requests a worker runs at once, besides "
      "CALLSYNC_WORKER_INFLIGHT jobs"),
    S("retry_policy", "CALLSYNC_RETRY_POLICY", retry_policy,
      "base=2s,cap=1h,attempts=15,max_age=48h", false,
      "retry backoff (full jitter); per provider: "
      "CALLSYNC_RETRY_POLICY_<PROVIDER>"),
    S("provider_base_urls", "CALLSYNC_PROVIDER_BASE_URLS", provider_base_urls,
      "", false, "API base URL overrides: provider=url[,provider=url] (the "
                 "sandbox)"),
    I("job_retention_s", "CALLSYNC_JOB_RETENTION_S", job_retention_s,
      "604800", 60, 31536000, "how long a finished job's checkpoints stay"),
    S("worker_metrics_addr", "CALLSYNC_WORKER_METRICS_ADDR",
      worker_metrics_addr, "", false,
      "address of the worker's /metrics, /healthz and /readyz "
      "(host:port, e.g. 127.0.0.1:9102); empty: none"),
    S("scheduler_metrics_addr", "CALLSYNC_SCHEDULER_METRICS_ADDR",
      scheduler_metrics_addr, "", false,
      "address of the scheduler's /metrics, /healthz and /readyz "
      "(host:port, e.g. 127.0.0.1:9103); empty: none"),
    I("scheduler_lease_ms", "CALLSYNC_SCHEDULER_LEASE_MS", scheduler_lease_ms,
      "15000", 1000, 600000,
      "leader lease in Redis (cs:lease:scheduler): renewed every third of "
      "it; a stand-by takes over at most this long after the leader dies"),
    I("scheduler_tick_ms", "CALLSYNC_SCHEDULER_TICK_MS", scheduler_tick_ms,
      "500", 50, 60000,
      "how often the leader promotes due retries (and checks what else is "
      "due); also how often a stand-by tries to take the lease"),
    I("scheduler_batch", "CALLSYNC_SCHEDULER_BATCH", scheduler_batch, "500",
      1, 100000,
      "due retries promoted, or stream entries of dead consumers re-queued, "
      "per script call"),
    I("scheduler_replay_batch", "CALLSYNC_SCHEDULER_REPLAY_BATCH",
      scheduler_replay_batch, "100", 1, 100000,
      "parked jobs of one connection replayed per tick once it is "
      "connected again"),
    I("scheduler_replay_interval_ms", "CALLSYNC_SCHEDULER_REPLAY_INTERVAL_MS",
      scheduler_replay_interval_ms, "10000", 100, 3600000,
      "how often connections with parked jobs are checked in PostgreSQL"),
    I("scheduler_forget_consumers_ms",
      "CALLSYNC_SCHEDULER_FORGET_CONSUMERS_MS", scheduler_forget_consumers_ms,
      "3600000", 0, 604800000,
      "stream consumers idle this long with nothing pending are removed "
      "from the group; 0: never"),
    I("scheduler_retention_interval_ms",
      "CALLSYNC_SCHEDULER_RETENTION_INTERVAL_MS",
      scheduler_retention_interval_ms, "60000", 100, 86400000,
      "how often dead letters and sync logs are trimmed (sooner while a "
      "backlog remains)"),
    I("scheduler_retention_batch", "CALLSYNC_SCHEDULER_RETENTION_BATCH",
      scheduler_retention_batch, "1000", 1, 100000,
      "dead letters or sync-log rows removed per statement"),
    I("scheduler_refresh_interval_ms",
      "CALLSYNC_SCHEDULER_REFRESH_INTERVAL_MS", scheduler_refresh_interval_ms,
      "30000", 100, 3600000,
      "how often the leader looks for OAuth tokens expiring within "
      "CALLSYNC_OAUTH_REFRESH_MARGIN_S and refreshes them"),
    S("dead_retention", "CALLSYNC_DEAD_RETENTION", dead_retention, "30d",
      false, "dead letters older than this are trimmed and counted (250ms, "
             "2s, 20m, 1h, 7d); 0: no age limit"),
    I("dead_max", "CALLSYNC_DEAD_MAX", dead_max, "1000000", 0, 1000000000,
      "most dead letters kept per shard; the oldest beyond it are trimmed "
      "and counted; 0: no limit"),
    S("sync_log_retention", "CALLSYNC_SYNC_LOG_RETENTION", sync_log_retention,
      "90d", false, "integration_sync_logs rows older than this are deleted "
                    "and counted; 0: keep them"),
    S("oauth_clients", "CALLSYNC_OAUTH_CLIENTS", oauth_clients, "", true,
      "OAuth apps per provider: provider=client_id:client_secret[,...] "
      "(google, hubspot, salesforce, calendly, gohighlevel, zoho, "
      "microsoft)"),
    S("oauth_base_urls", "CALLSYNC_OAUTH_BASE_URLS", oauth_base_urls, "",
      false, "token endpoint origin overrides: provider=url[,provider=url] "
             "(the sandbox)"),
    S("salesforce_jwt_key", "CALLSYNC_SALESFORCE_JWT_KEY", salesforce_jwt_key,
      "", true, "PEM RSA private key for Salesforce's JWT bearer flow "
                "(usually through _FILE)"),
    I("oauth_timeout_ms", "CALLSYNC_OAUTH_TIMEOUT_MS", oauth_timeout_ms,
      "15000", 100, 120000, "timeout of a token request; the refresh lock "
                            "lives 10 s longer"),
    I("oauth_refresh_margin_s", "CALLSYNC_OAUTH_REFRESH_MARGIN_S",
      oauth_refresh_margin_s, "300", 0, 86400,
      "tokens expiring within this margin are refreshed ahead"),
    S("sentry_dsn", "CALLSYNC_SENTRY_DSN", sentry_dsn, "", true,
      "Sentry DSN: errors of every process are reported there, secrets "
      "scrubbed; empty: no reports"),
    S("sentry_environment", "CALLSYNC_SENTRY_ENVIRONMENT", sentry_environment,
      "", false, "Sentry environment of the reports (production, staging)"),
    S("sentry_release", "CALLSYNC_SENTRY_RELEASE", sentry_release, "", false,
      "Sentry release of the reports (e.g. callsync@2026.11.30)"),
    S("connect_addr", "CALLSYNC_CONNECT_ADDR", connect_addr,
      "127.0.0.1:8090", false,
      "address of callsync-connect (OAuth authorize and callback pages, "
      "/metrics, /healthz, /readyz)"),
    S("connect_public_url", "CALLSYNC_CONNECT_PUBLIC_URL", connect_public_url,
      "", false,
      "callsync-connect's origin as users' browsers reach it (https://...); "
      "redirect_uri is <this>/oauth/<provider>/callback"),
    S("connect_state_key", "CALLSYNC_CONNECT_STATE_KEY", connect_state_key,
      "", true,
      "HMAC key (at least 32 characters) signing authorize links and OAuth "
      "states; shared by callsync-connect and callsyncctl"),
    S("connect_return_url", "CALLSYNC_CONNECT_RETURN_URL", connect_return_url,
      "", false,
      "where users land after connecting (?connected=<id> or ?error=<code>); "
      "empty: a page of callsync-connect"),
    I("connect_link_ttl_s", "CALLSYNC_CONNECT_LINK_TTL_S", connect_link_ttl_s,
      "86400", 60, 2592000,
      "how long an authorize link made by callsyncctl stays valid"),
};

static char **str_at(struct cfg *c, const struct cfg_row *r)
{
    return (char **)((char *)c + r->off);
}

static int *int_at(struct cfg *c, const struct cfg_row *r)
{
    return (int *)((char *)c + r->off);
}

static int set_value(struct cfg *c, const struct cfg_row *r, const char *v,
                     const char *source, struct cs_err *err)
{
    if (r->type == CFG_STR) {
        free(*str_at(c, r));
        *str_at(c, r) = xstrdup(v);
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < r->min || n > r->max)
        return cs_err_set(err, CS_EINVAL, r->key,
                          "%s from %s must be a whole number from %ld to %ld",
                          r->env, source, r->min, r->max);
    *int_at(c, r) = (int)n;
    return 0;
}

static char *read_secret_file(const char *path, struct cs_err *err,
                              const char *env)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cs_err_set(err, CS_EINVAL, env, "cannot open '%s' named by %s_FILE",
                   path, env);
        return NULL;
    }
    char *data = xmalloc(65537);
    size_t n = fread(data, 1, 65536, f);
    fclose(f);
    data[n] = '\0';
    while (n && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        data[--n] = '\0';
    return data;
}

static int load_file(struct cfg *c, const char *path, struct cs_err *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return cs_err_set(err, CS_EINVAL, "CALLSYNC_CONFIG_FILE",
                          "cannot read '%s': %s at line %d column %d", path,
                          je.text, je.line, je.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return cs_err_set(err, CS_EINVAL, "CALLSYNC_CONFIG_FILE",
                          "'%s' must hold a JSON object", path);
    }
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val)
    {
        const struct cfg_row *r = NULL;
        for (size_t i = 0; i < CS_ARRAY_LEN(rows); i++)
            if (strcmp(rows[i].key, key) == 0)
                r = &rows[i];
        if (!r) {
            rc = cs_err_set(err, CS_EINVAL, key, "unknown key '%s' in '%s'",
                            key, path);
            break;
        }
        char tmp[32];
        const char *v;
        if (json_is_string(val)) {
            v = json_string_value(val);
        } else if (json_is_integer(val)) {
            snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(val));
            v = tmp;
        } else {
            rc = cs_err_set(err, CS_EINVAL, key,
                            "key '%s' in '%s' must be a string or number", key,
                            path);
            break;
        }
        rc = set_value(c, r, v, path, err);
        if (rc)
            break;
    }
    json_decref(root);
    return rc;
}

int cfg_load(struct cfg *c, struct cs_err *err)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < CS_ARRAY_LEN(rows); i++) {
        int rc = set_value(c, &rows[i], rows[i].def, "default", err);
        CS_ASSERT(rc == 0);
    }
    const char *file = getenv("CALLSYNC_CONFIG_FILE");
    if (file && *file) {
        int rc = load_file(c, file, err);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < CS_ARRAY_LEN(rows); i++) {
        const struct cfg_row *r = &rows[i];
        const char *v = getenv(r->env);
        if (v) {
            int rc = set_value(c, r, v, "environment", err);
            if (rc)
                return rc;
        }
        if (r->secret) {
            char name[96];
            snprintf(name, sizeof(name), "%s_FILE", r->env);
            const char *path = getenv(name);
            if (path && *path) {
                char *data = read_secret_file(path, err, r->env);
                if (!data)
                    return CS_EINVAL;
                free(*str_at(c, r));
                *str_at(c, r) = data;
            }
        }
    }
    if (log_level_parse(c->log_level) < 0)
        return cs_err_set(err, CS_EINVAL, "log_level",
                          "CALLSYNC_LOG_LEVEL must be debug, info, warn or "
                          "error, not '%s'",
                          c->log_level);
    const struct {
        const char *key, *env, *v;
    } durs[] = {
        {"dead_retention", "CALLSYNC_DEAD_RETENTION", c->dead_retention},
        {"sync_log_retention", "CALLSYNC_SYNC_LOG_RETENTION",
         c->sync_log_retention},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(durs); i++) {
        int64_t ms;
        if (dur_parse_ms(durs[i].v, strlen(durs[i].v), &ms))
            return cs_err_set(err, CS_EINVAL, durs[i].key,
                              "%s must be a duration such as 90d, 12h or "
                              "30m (or 0), not '%s'",
                              durs[i].env, durs[i].v);
    }
    return 0;
}

void cfg_release(struct cfg *c)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(rows); i++)
        if (rows[i].type == CFG_STR)
            free(*str_at(c, &rows[i]));
    memset(c, 0, sizeof(*c));
}

void cfg_log(const struct cfg *c)
{
    json_t *o = json_object();
    for (size_t i = 0; i < CS_ARRAY_LEN(rows); i++) {
        const struct cfg_row *r = &rows[i];
        if (r->type == CFG_INT) {
            json_object_set_new(o, r->key,
                                json_integer(*int_at((struct cfg *)c, r)));
        } else {
            const char *v = *str_at((struct cfg *)c, r);
            if (r->secret)
                json_object_set_new(o, r->key,
                                    json_string(v && *v ? "(set)" : "(unset)"));
            else
                json_object_set_new(o, r->key, json_string(v ? v : ""));
        }
    }
    /* A password inside a URL is a secret too. */
    const char *urls[] = {"redis_url", "database_url"};
    for (size_t i = 0; i < 2; i++) {
        const char *u = json_string_value(json_object_get(o, urls[i]));
        const char *at = u ? strchr(u, '@') : NULL;
        const char *scheme = u ? strstr(u, "://") : NULL;
        if (at && scheme && at > scheme) {
            const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
            if (colon) {
                char *red = xasprintf("%.*s:***%s", (int)(colon - u), u, at);
                json_object_set_new(o, urls[i], json_string(red));
                free(red);
            }
        }
    }
    char *s = json_dumps(o, JSON_COMPACT);
    log_info("config", LOG_S("effective", s));
    free(s);
    json_decref(o);
}

void cfg_print_reference(FILE *out)
{
    fprintf(out, "| variable | file key | default | meaning |\n"
                 "|---|---|---|---|\n");
    for (size_t i = 0; i < CS_ARRAY_LEN(rows); i++) {
        /* The built-in migrations folder is the checkout's own: shown as
         * such, so the table reads the same from every checkout. */
        const char *def = strcmp(rows[i].def, CS_DEFAULT_MIGRATIONS_DIR) == 0
                              ? "<checkout>/migrations"
                              : rows[i].def;
        fprintf(out, "| `%s`%s | `%s` | `%s` | %s |\n", rows[i].env,
                rows[i].secret ? " (also `_FILE`)" : "", rows[i].key, def,
                rows[i].doc);
    }
}

const char *cfg_per_provider(const char *env, const char *provider)
{
    char name[96];
    int n = snprintf(name, sizeof(name), "%s_%s", env, provider);
    if (n < 0 || (size_t)n >= sizeof(name))
        return NULL;
    for (char *p = name + strlen(env); *p; p++)
        *p = (char)toupper((unsigned char)*p);
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}
