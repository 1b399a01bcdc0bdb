/*
 * cfg.h - the one configuration table of callsync.
 *
 * Every setting is a row in cfg.c: its key in the JSON file, its
 * environment variable, type, default, bounds and whether it is a secret.
 * Precedence: default < file (CALLSYNC_CONFIG_FILE, a flat JSON object)
 * < environment. A secret may also come from a file named by the variable
 * with "_FILE" appended. The struct is filled once at startup and is
 * read-only afterwards; nothing outside cfg.c calls getenv().
 */
#ifndef CS_CFG_H
#define CS_CFG_H

#include "cs.h"

#include <stdio.h>

struct cfg {
    char *log_level;
    char *redis_url;
    char *database_url;
    int shards;
    char *encryption_keys;       /* secret: "id:base64key[,id:key...]" */
    char *migrations_dir;

    char *ingest_host;
    int ingest_port;
    int ingest_threads;          /* 0: one per core */
    int ingest_max_body;
    int ingest_max_header;
    int ingest_max_conns;
    int ingest_header_timeout_ms;
    int ingest_body_timeout_ms;
    int ingest_idle_timeout_ms;
    int ingest_redis_timeout_ms;
    int ingest_pg_timeout_ms;
    int ingest_cache_ttl_ms;
    int dedup_ttl_s;
    int outbound_dedup_ttl_s;
    int sig_tolerance_s;
    char *default_country_code;
    char *retell_api_keys;       /* secret: comma-separated */
    char *callrail_secrets;      /* secret: comma-separated */
    char *standard_secrets;      /* secret: "source=whsec_..[,source=..]" */
    int live_deadline_ms;        /* live-call tools: the caller's wait */
    int live_slots;              /* slots offered per availability answer */

    char *worker_consumer;       /* "": <hostname>-<pid> */
    int worker_inflight;
    int worker_batch;
    char *worker_providers;      /* "": every provider callsync implements */
    int worker_visibility_ms;
    int worker_max_deliveries;
    int worker_connect_timeout_ms;
    int worker_request_timeout_ms;
    int worker_host_conns;
    int worker_grace_ms;
    int worker_defer_max_ms;
    int worker_live_inflight;    /* live-call requests at once */
    char *retry_policy;          /* "base=2s,cap=1h,attempts=15,max_age=48h" */
    char *provider_base_urls;    /* "hubspot=http://..,retell=http://.." */
    int job_retention_s;
    char *worker_metrics_addr;   /* "": no listener */

    char *scheduler_metrics_addr; /* "": no listener */
    int scheduler_lease_ms;
    int scheduler_tick_ms;
    int scheduler_batch;
    int scheduler_replay_batch;
    int scheduler_replay_interval_ms;
    int scheduler_forget_consumers_ms;
    int scheduler_retention_interval_ms;
    int scheduler_retention_batch;
    int scheduler_refresh_interval_ms;
    char *dead_retention;        /* duration ("30d"); "0": no age limit */
    int dead_max;                /* per shard; 0: no count limit */
    char *sync_log_retention;    /* duration ("90d"); "0": keep forever */

    char *oauth_clients;         /* secret: "provider=id:secret[,...]" */
    char *oauth_base_urls;       /* "provider=url[,...]" (the sandbox) */
    char *salesforce_jwt_key;    /* secret: PEM RSA key (JWT bearer) */
    int oauth_timeout_ms;
    int oauth_refresh_margin_s;

    char *sentry_dsn;            /* secret: "" = no error reports */
    char *sentry_environment;
    char *sentry_release;
    char *connect_addr;          /* callsync-connect's listener */
    char *connect_public_url;    /* its origin as browsers reach it */
    char *connect_state_key;     /* secret: HMAC key of links and states */
    char *connect_return_url;    /* where users land afterwards; "": a
                                    page of callsync-connect's own */
    int connect_link_ttl_s;      /* authorize links made by callsyncctl */
};

/*
 * Load defaults, then the file, then the environment into *c. On error,
 * fills *err naming the key, its source and the reason, and returns
 * -CS_EINVAL; *c must still be released.
 */
CS_MUST_CHECK int cfg_load(struct cfg *c, struct cs_err *err);
void cfg_release(struct cfg *c);
/* Log the effective configuration once, secrets redacted. */
void cfg_log(const struct cfg *c);
/* Print every setting (env var, default, meaning) as a Markdown table. */
void cfg_print_reference(FILE *out);
/*
 * A per-provider override of a setting, from the environment only:
 * cfg_per_provider("CALLSYNC_RETRY_POLICY", "hubspot") reads
 * CALLSYNC_RETRY_POLICY_HUBSPOT. NULL when unset or empty.
 */
const char *cfg_per_provider(const char *env, const char *provider);

#endif
