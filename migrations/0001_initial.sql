-- Users, groups, membership and profiles: the public schema administrators edit in the D1 console
-- (recipes in docs/ADMIN.md). Times are Unix seconds (UTC); read them with datetime(col, 'unixepoch').

CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stored lower-cased and trimmed so that SQL look-ups match what the service normalises to.
    email       TEXT UNIQUE CHECK (email IS NULL OR (email = lower(trim(email)) AND email LIKE '_%@_%')),
    first_name  TEXT NOT NULL DEFAULT '',
    last_name   TEXT NOT NULL DEFAULT '',
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    date_joined INTEGER NOT NULL DEFAULT (unixepoch()),
    last_login  INTEGER
);

CREATE TABLE profiles (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- E.164: '+' then 7 to 15 digits, no spaces. The service normalises input to this form.
    phone_number TEXT UNIQUE CHECK (phone_number IS NULL OR (
        phone_number GLOB '+[1-9]*'
        AND substr(phone_number, 2) NOT GLOB '*[^0-9]*'
        AND length(phone_number) BETWEEN 8 AND 16)),
    branch       TEXT NOT NULL DEFAULT '',
    designation  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE groups (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL UNIQUE,
    -- Only active members of at least one group with this flag set may log in.
    is_employee_group INTEGER NOT NULL DEFAULT 0 CHECK (is_employee_group IN (0, 1))
);

CREATE TABLE user_groups (
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
) WITHOUT ROWID;

CREATE INDEX user_groups_by_group ON user_groups (group_id);

-- One row per login identifier ('email:<address>' or 'sms:<E.164>'), for every identifier that asked for a
-- code, known or not, so that unknown addresses behave exactly like real ones. It holds the counters that must be
-- exact under concurrency; the code itself (hashed) lives in KV under the same challenge_id.
CREATE TABLE otp_challenges (
    identifier        TEXT PRIMARY KEY,
    challenge_id      TEXT NOT NULL,
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    consumed_at       INTEGER,
    -- Wrong guesses since the last success; a new code does not reset it (NIST SP 800-63B-4 3.1.3.2).
    failed_attempts   INTEGER NOT NULL DEFAULT 0,
    last_failed_at    INTEGER,
    -- Sliding hour for the per-identifier send cap.
    window_started_at INTEGER NOT NULL,
    sends_in_window   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Fixed-window request counters, e.g. 'ip:203.0.113.9:send'.
CREATE TABLE rate_limits (
    bucket            TEXT PRIMARY KEY,
    window_started_at INTEGER NOT NULL,
    hits              INTEGER NOT NULL
) WITHOUT ROWID;

-- Every login event, for failed-attempt reports and usage statistics. Codes and tokens never appear here.
CREATE TABLE login_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    event       TEXT NOT NULL CHECK (event IN (
        'code_requested', 'code_sent', 'delivery_failed', 'code_failed', 'locked_out', 'login', 'logout')),
    user_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    channel     TEXT CHECK (channel IS NULL OR channel IN ('email', 'sms')),
    -- Masked, e.g. 'mo*********@example.com' or '+12*******90'.
    identifier  TEXT,
    ip          TEXT,
    user_agent  TEXT,
    detail      TEXT
);

CREATE INDEX login_events_by_user ON login_events (user_id, occurred_at);
CREATE INDEX login_events_by_event ON login_events (event, occurred_at);
