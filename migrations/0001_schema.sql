-- 0001_schema.sql - organisations, agents, their integration connections,
-- sync logs and call data (seeds 001 and 002), with row-level security.
--
-- Conventions:
--  * Every tenant table carries organization_id. Where a row belongs to an
--    agent or a connection, a composite foreign key (parent id,
--    organization_id) makes it impossible for the two to disagree, so the
--    row-level security policies can trust organization_id. A BEFORE INSERT
--    trigger fills organization_id from the parent when the writer leaves it
--    out (the worker's batched sync-log writes, for example).
--  * Secret columns hold sealed strings "v1:<key id>:<base64>" (AES-256-GCM,
--    shared/crypto.h); a CHECK keeps plaintext out.
--  * Timestamps are timestamptz; updated_at is kept by a trigger.
--  * The service connects as the table owner and bypasses RLS; dashboards
--    and tenants use role callsync_tenant with callsync.org_id set.

CREATE FUNCTION cs_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- organizations -----------------------------------------------------------

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(btrim(name)) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- agents ------------------------------------------------------------------

CREATE TABLE agents (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id       uuid NOT NULL
                          REFERENCES organizations (id) ON DELETE CASCADE,
    name                  text NOT NULL CHECK (length(btrim(name)) > 0),
    retell_agent_id       text UNIQUE,
    callrail_company_id   text UNIQUE,
    sync_on               text NOT NULL DEFAULT 'call_analyzed'
                          CHECK (sync_on IN ('call_analyzed', 'call_ended')),
    outbound_from_number  text
                          CHECK (outbound_from_number ~ '^\+[1-9][0-9]{1,14}$'),
    timezone              text NOT NULL DEFAULT 'America/New_York',
    is_active             boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, organization_id)
);
CREATE INDEX agents_organization_idx ON agents (organization_id);

CREATE TRIGGER agents_updated_at BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION cs_set_updated_at();

-- Fill organization_id from the row's agent when the writer left it out.
CREATE FUNCTION cs_org_from_agent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.organization_id IS NULL AND NEW.agent_id IS NOT NULL THEN
        SELECT a.organization_id INTO NEW.organization_id
          FROM agents a WHERE a.id = NEW.agent_id;
    END IF;
    RETURN NEW;
END
$$;

-- integration_connections (seed 001) --------------------------------------

CREATE TABLE integration_connections (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id           uuid NOT NULL,
    organization_id    uuid NOT NULL,
    integration_type   text NOT NULL CHECK (integration_type IN (
                           'google_calendar', 'calendly', 'cal_com',
                           'hubspot', 'salesforce', 'gohighlevel',
                           'housecall_pro', 'zapier', 'stripe', 'pipedrive',
                           'zoho', 'monday', 'custom_rest', 'outlook',
                           'twilio', 'sendgrid', 'segment')),
    is_active          boolean NOT NULL DEFAULT true,
    connection_status  text NOT NULL DEFAULT 'connected'
                       CHECK (connection_status IN
                           ('connected', 'disconnected', 'error', 'expired')),
    auth_type          text NOT NULL DEFAULT 'none'
                       CHECK (auth_type IN
                           ('oauth', 'api_key', 'webhook', 'jwt', 'basic',
                            'none')),
    access_token       text CHECK (access_token IS NULL
                                   OR access_token LIKE 'v1:%'),
    refresh_token      text CHECK (refresh_token IS NULL
                                   OR refresh_token LIKE 'v1:%'),
    token_expires_at   timestamptz,
    api_key            text CHECK (api_key IS NULL OR api_key LIKE 'v1:%'),
    api_secret         text CHECK (api_secret IS NULL
                                   OR api_secret LIKE 'v1:%'),
    instance_url       text CHECK (instance_url ~ '^https?://[^[:space:]]+$'),
    webhook_url        text CHECK (webhook_url ~ '^https?://[^[:space:]]+$'),
    webhook_secret     text CHECK (webhook_secret IS NULL
                                   OR webhook_secret LIKE 'v1:%'),
    config             jsonb NOT NULL DEFAULT '{}'
                       CHECK (jsonb_typeof(config) = 'object'),
    sync_enabled       boolean NOT NULL DEFAULT true,
    last_sync_at       timestamptz,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, organization_id),
    FOREIGN KEY (agent_id, organization_id)
        REFERENCES agents (id, organization_id) ON DELETE CASCADE
);
-- Ingest's look-up of an agent's live connections.
CREATE INDEX integration_connections_agent_active_idx
    ON integration_connections (agent_id) WHERE is_active;
CREATE INDEX integration_connections_agent_idx
    ON integration_connections (agent_id);
CREATE INDEX integration_connections_type_idx
    ON integration_connections (integration_type);
CREATE INDEX integration_connections_org_idx
    ON integration_connections (organization_id);
-- The scheduler's scan for tokens to refresh.
CREATE INDEX integration_connections_expiry_idx
    ON integration_connections (token_expires_at)
    WHERE is_active AND refresh_token IS NOT NULL;

CREATE TRIGGER integration_connections_org BEFORE INSERT
    ON integration_connections
    FOR EACH ROW EXECUTE FUNCTION cs_org_from_agent();
CREATE TRIGGER integration_connections_updated_at BEFORE UPDATE
    ON integration_connections
    FOR EACH ROW EXECUTE FUNCTION cs_set_updated_at();

-- Fill organization_id from the row's connection when left out.
CREATE FUNCTION cs_org_from_connection() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.organization_id IS NULL
       AND NEW.integration_connection_id IS NOT NULL THEN
        SELECT ic.organization_id INTO NEW.organization_id
          FROM integration_connections ic
         WHERE ic.id = NEW.integration_connection_id;
    END IF;
    RETURN NEW;
END
$$;

-- integration_field_mappings (seed 002) -----------------------------------

CREATE TABLE integration_field_mappings (
    id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    integration_connection_id  uuid NOT NULL,
    organization_id            uuid NOT NULL,
    source_field               text NOT NULL,
    target_field               text NOT NULL,
    mapping_type               text NOT NULL DEFAULT 'plain'
                               CHECK (mapping_type IN ('plain',
                                   'custom_property', 'template',
                                   'conditional')),
    config                     jsonb NOT NULL DEFAULT '{}'
                               CHECK (jsonb_typeof(config) = 'object'),
    is_active                  boolean NOT NULL DEFAULT true,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (integration_connection_id, organization_id)
        REFERENCES integration_connections (id, organization_id)
        ON DELETE CASCADE
);
CREATE INDEX integration_field_mappings_conn_idx
    ON integration_field_mappings (integration_connection_id)
    WHERE is_active;

CREATE TRIGGER integration_field_mappings_org BEFORE INSERT
    ON integration_field_mappings
    FOR EACH ROW EXECUTE FUNCTION cs_org_from_connection();
CREATE TRIGGER integration_field_mappings_updated_at BEFORE UPDATE
    ON integration_field_mappings
    FOR EACH ROW EXECUTE FUNCTION cs_set_updated_at();

-- integration_sync_logs (seed 001): one row per step attempt ---------------
-- Deleting a connection for good (callsyncctl connections remove --hard)
-- deletes its history too; the default soft removal keeps it.

CREATE TABLE integration_sync_logs (
    id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    integration_connection_id  uuid NOT NULL,
    organization_id            uuid,
    call_id                    text,
    job_id                     text,
    operation_type             text NOT NULL,
    direction                  text NOT NULL DEFAULT 'outbound'
                               CHECK (direction IN ('inbound', 'outbound')),
    status                     text NOT NULL DEFAULT 'pending'
                               CHECK (status IN
                                   ('success', 'failed', 'pending')),
    attempt                    integer NOT NULL DEFAULT 1
                               CHECK (attempt >= 0),
    http_status                integer
                               CHECK (http_status BETWEEN 100 AND 599),
    duration_ms                integer CHECK (duration_ms >= 0),
    error_message              text,
    payload                    jsonb,
    response                   jsonb,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    completed_at               timestamptz,
    FOREIGN KEY (integration_connection_id)
        REFERENCES integration_connections (id) ON DELETE CASCADE,
    FOREIGN KEY (integration_connection_id, organization_id)
        REFERENCES integration_connections (id, organization_id)
        ON DELETE CASCADE
);
CREATE INDEX integration_sync_logs_conn_created_idx
    ON integration_sync_logs (integration_connection_id, created_at DESC);
CREATE INDEX integration_sync_logs_status_created_idx
    ON integration_sync_logs (status, created_at DESC);
CREATE INDEX integration_sync_logs_created_idx
    ON integration_sync_logs (created_at);
CREATE INDEX integration_sync_logs_call_idx
    ON integration_sync_logs (call_id);

CREATE TRIGGER integration_sync_logs_org BEFORE INSERT
    ON integration_sync_logs
    FOR EACH ROW EXECUTE FUNCTION cs_org_from_connection();

-- integration_webhooks (seed 002): inbound triggers for outbound calls -----

CREATE TABLE integration_webhooks (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id           uuid NOT NULL,
    organization_id    uuid NOT NULL,
    webhook_type       text NOT NULL DEFAULT 'outbound_call'
                       CHECK (webhook_type IN ('outbound_call')),
    webhook_secret     text NOT NULL CHECK (webhook_secret LIKE 'v1:%'),
    callback_url       text CHECK (callback_url ~ '^https?://[^[:space:]]+$'),
    is_active          boolean NOT NULL DEFAULT true,
    last_triggered_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, webhook_type),
    FOREIGN KEY (agent_id, organization_id)
        REFERENCES agents (id, organization_id) ON DELETE CASCADE
);

CREATE TRIGGER integration_webhooks_org BEFORE INSERT
    ON integration_webhooks
    FOR EACH ROW EXECUTE FUNCTION cs_org_from_agent();
CREATE TRIGGER integration_webhooks_updated_at BEFORE UPDATE
    ON integration_webhooks
    FOR EACH ROW EXECUTE FUNCTION cs_set_updated_at();

-- calls: what the monitoring queries of seeds 000 and 002 join to ----------
-- id is the platform's call id (TEXT, like integration_sync_logs.call_id).

CREATE TABLE calls (
    id                text PRIMARY KEY,
    agent_id          uuid NOT NULL,
    organization_id   uuid NOT NULL,
    customer_phone    text,
    customer_name     text,
    call_outcome      text,
    source            text,
    started_at        timestamptz,
    ended_at          timestamptz,
    duration_seconds  integer CHECK (duration_seconds >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (agent_id, organization_id)
        REFERENCES agents (id, organization_id) ON DELETE CASCADE
);
CREATE INDEX calls_agent_started_idx ON calls (agent_id, started_at DESC);
CREATE INDEX calls_customer_phone_idx ON calls (customer_phone);

CREATE TRIGGER calls_org BEFORE INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION cs_org_from_agent();

-- call_integration_data (seed 002): the normalised call, ready to sync -----

CREATE TABLE call_integration_data (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    call_id           text NOT NULL UNIQUE,
    agent_id          uuid NOT NULL,
    organization_id   uuid NOT NULL,
    customer_name     text,
    customer_phone    text,
    customer_email    text,
    call_outcome      text,
    call_summary      text,
    call_sentiment    text,
    transcript        text,
    recording_url     text,
    started_at        timestamptz,
    ended_at          timestamptz,
    duration_seconds  integer CHECK (duration_seconds >= 0),
    appointment_data  jsonb,
    sync_status       text NOT NULL DEFAULT 'pending'
                      CHECK (sync_status IN
                          ('pending', 'in_progress', 'synced', 'partial',
                           'failed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (agent_id, organization_id)
        REFERENCES agents (id, organization_id) ON DELETE CASCADE
);
CREATE INDEX call_integration_data_agent_idx
    ON call_integration_data (agent_id, created_at DESC);

CREATE TRIGGER call_integration_data_org BEFORE INSERT
    ON call_integration_data
    FOR EACH ROW EXECUTE FUNCTION cs_org_from_agent();

-- Row-level security --------------------------------------------------------
-- A session that has not set callsync.org_id sees nothing.

DO $$
BEGIN
    CREATE ROLE callsync_tenant NOLOGIN;
EXCEPTION
    -- Roles are cluster-wide: another database (or a concurrent runner on
    -- another database) may have created it already.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (id = nullif(current_setting('callsync.org_id', true), '')::uuid)
    WITH CHECK (id = nullif(current_setting('callsync.org_id', true),
                            '')::uuid);

DO $$
DECLARE
    t text;
    org constant text :=
        'nullif(current_setting(''callsync.org_id'', true), '''')::uuid';
BEGIN
    FOREACH t IN ARRAY ARRAY['agents', 'integration_connections',
                             'integration_field_mappings',
                             'integration_sync_logs', 'integration_webhooks',
                             'calls', 'call_integration_data']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (organization_id = %s) '
                       'WITH CHECK (organization_id = %s)', t, org, org);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON organizations, agents,
    integration_connections, integration_field_mappings,
    integration_sync_logs, integration_webhooks, calls, call_integration_data
    TO callsync_tenant;
