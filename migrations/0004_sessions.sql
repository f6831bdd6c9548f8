-- Sessions: one row per signed-in device (a refresh-token family). Access tokens live in KV under the SHA-256 of
-- the token, carrying a snapshot of the user; this table is the strongly consistent record that decides refresh
-- rotation, reuse detection and revocation. Tokens never appear here, only their SHA-256 digests.

CREATE TABLE sessions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at        INTEGER NOT NULL,
    -- The last login or refresh on this device.
    last_used_at      INTEGER NOT NULL,
    -- The current refresh token's end; every rotation moves it to now + TOKEN_TTL_DAYS.
    expires_at        INTEGER NOT NULL,
    -- SHA-256 (hex) of the current access token: its KV key is 'session:' || access_digest.
    access_digest     TEXT NOT NULL UNIQUE,
    access_expires_at INTEGER NOT NULL,
    -- Set once, when the session ends (logout, logout-all, refresh-token reuse, the admin command).
    revoked_at        INTEGER,
    revoked_reason    TEXT,
    -- The device as last seen: user agent, IP, and Cloudflare's geolocation (request.cf country and city).
    user_agent        TEXT,
    ip                TEXT,
    country           TEXT,
    city              TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id, revoked_at);

-- Every refresh token a session was ever given. A token with replaced_by set was rotated out: presenting it
-- again is reuse, and revokes its session.
CREATE TABLE refresh_tokens (
    -- SHA-256 (hex) of the refresh token.
    digest      TEXT PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at   INTEGER NOT NULL,
    -- SHA-256 of the token that replaced this one, set by the one refresh that rotated it.
    replaced_by TEXT
) WITHOUT ROWID;

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
