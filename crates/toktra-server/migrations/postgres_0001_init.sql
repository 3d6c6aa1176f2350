CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cert_subject TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE devices (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    id TEXT NOT NULL,
    hostname TEXT,
    platform TEXT,
    agent_version TEXT,
    status TEXT NOT NULL,
    cert_serial TEXT,
    prev_cert_serial TEXT,
    cert_expires_at BIGINT,
    enrolled_at BIGINT NOT NULL,
    last_seen BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE TABLE batches (
    org_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    dropped BIGINT,
    PRIMARY KEY (org_id, batch_id)
);
CREATE TABLE events (
    org_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    source TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    transport TEXT NOT NULL,
    sni TEXT,
    alpn TEXT NOT NULL,
    ja4 TEXT,
    ech BIGINT NOT NULL,
    provider TEXT,
    product TEXT,
    category TEXT,
    agent_provider TEXT,
    agent_product TEXT,
    bytes_out BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    records_in BIGINT,
    est_input_tokens BIGINT NOT NULL,
    est_output_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    user_name TEXT,
    process_pid BIGINT,
    process_name TEXT,
    process_path TEXT,
    dst_ip TEXT,
    dst_port BIGINT,
    endpoint TEXT,
    source_domain TEXT,
    streaming BIGINT,
    PRIMARY KEY (org_id, event_id)
);
CREATE TABLE usage_hourly (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    product TEXT NOT NULL,
    hour BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, hour, user_id, provider, product)
);
CREATE TABLE device_users (
    org_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (org_id, device_id, user_id)
);
CREATE TABLE departments (
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (org_id, name)
);
CREATE TABLE users (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT,
    department TEXT,
    PRIMARY KEY (org_id, user_id)
);
CREATE TABLE budgets (
    org_id TEXT NOT NULL,
    department TEXT NOT NULL, -- '' is the organization-wide budget
    monthly_tokens BIGINT NOT NULL,
    hard_cap BIGINT NOT NULL,
    rollover BIGINT NOT NULL,
    PRIMARY KEY (org_id, department)
);
