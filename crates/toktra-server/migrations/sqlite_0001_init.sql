CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cert_subject TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    max_uses INTEGER,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
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
    cert_expires_at INTEGER,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER,
    PRIMARY KEY (org_id, id)
);
CREATE TABLE batches (
    org_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    dropped INTEGER,
    PRIMARY KEY (org_id, batch_id)
);
CREATE TABLE events (
    org_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    source TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    transport TEXT NOT NULL,
    sni TEXT,
    alpn TEXT NOT NULL,
    ja4 TEXT,
    ech INTEGER NOT NULL,
    provider TEXT,
    product TEXT,
    category TEXT,
    agent_provider TEXT,
    agent_product TEXT,
    bytes_out INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    records_in INTEGER,
    est_input_tokens INTEGER NOT NULL,
    est_output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    user_name TEXT,
    process_pid INTEGER,
    process_name TEXT,
    process_path TEXT,
    dst_ip TEXT,
    dst_port INTEGER,
    endpoint TEXT,
    source_domain TEXT,
    streaming INTEGER,
    PRIMARY KEY (org_id, event_id)
) WITHOUT ROWID;
CREATE TABLE usage_hourly (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    product TEXT NOT NULL,
    hour INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (org_id, hour, user_id, provider, product)
) WITHOUT ROWID;
CREATE TABLE device_users (
    org_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (org_id, device_id, user_id)
) WITHOUT ROWID;
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
    monthly_tokens INTEGER NOT NULL,
    hard_cap INTEGER NOT NULL,
    rollover INTEGER NOT NULL,
    PRIMARY KEY (org_id, department)
);
