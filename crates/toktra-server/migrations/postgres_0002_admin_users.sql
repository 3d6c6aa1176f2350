-- Dashboard administrators: sign in with e-mail and password (argon2id PHC string).
CREATE TABLE admin_users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
