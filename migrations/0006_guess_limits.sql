-- Guessing capped for good: wrong guesses are counted per account, across its email and phone and all its codes,
-- and only a successful login or an administrator's unlock resets the count; the passing of time never does.
-- Every OTP_MAX_ATTEMPTS consecutive failures lock the account, each lockout twice as long as the one before (at
-- most a day); at OTP_MAX_CONSECUTIVE_FAILURES it is held until an administrator unlocks it. An identifier that
-- belongs to no account has a counter of its own, with the same rules, so the two cannot be told apart.

CREATE TABLE guess_counters (
    -- 'user:<id>' for an identifier that belongs to an account (shared by all its identifiers), otherwise the
    -- identifier itself as the service keys it: 'email:<address>' or 'sms:<E.164 number>'.
    subject        TEXT PRIMARY KEY,
    -- Consecutive wrong guesses since the last successful login or unlock. A guess counts as failed from the moment
    -- it is evaluated; a correct one is then redeemed and resets the row.
    failures       INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    -- End of the lockout in force (Unix seconds); in the past, or 0, when none is.
    locked_until   INTEGER NOT NULL DEFAULT 0,
    -- 1 once failures reached OTP_MAX_CONSECUTIVE_FAILURES: locked until an administrator unlocks it.
    held           INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1)),
    last_failed_at INTEGER
) WITHOUT ROWID;

-- The failures counted per identifier so far become their subject's count, and a lockout still running stays.
INSERT INTO guess_counters (subject, failures, locked_until, held, last_failed_at)
SELECT subject, sum(failed_attempts), max(locked_until), 0, max(last_failed_at) FROM (
    SELECT COALESCE(
               (SELECT 'user:' || u.id FROM users u WHERE c.identifier = 'email:' || u.email),
               (SELECT 'user:' || p.user_id FROM profiles p WHERE c.identifier = 'sms:' || p.phone_number),
               c.identifier) AS subject,
           c.failed_attempts,
           CASE WHEN c.failed_attempts >= 3 THEN c.last_failed_at + 900 ELSE 0 END AS locked_until,
           c.last_failed_at
    FROM otp_challenges c WHERE c.failed_attempts > 0)
GROUP BY subject;

-- otp_challenges now holds one code's state: failed_attempts counts the guesses against the current code (a new
-- code starts at 0), and reserved_by marks the request that reserved the latest guess, so that the statements of
-- that request's batch can tell their own reservation apart.
DROP VIEW locked_identifiers;
ALTER TABLE otp_challenges DROP COLUMN last_failed_at;
ALTER TABLE otp_challenges ADD COLUMN reserved_by TEXT;

-- The audit trail gains 'refused' and 'unlocked'. SQLite cannot change a CHECK constraint in place; the rows are
-- moved out and back (no rename, so the views and triggers that name login_events are untouched).
CREATE TABLE login_events_moving AS SELECT * FROM login_events;
DROP TABLE login_events;
CREATE TABLE login_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    -- code_requested   a code was asked for (detail says why nothing was sent, if nothing was)
    -- code_sent        a provider accepted the message (detail: the provider)
    -- delivery_failed  one provider attempt failed, or no attempt was made (detail: provider and reason, with the
    --                  recipient masked)
    -- code_failed      a wrong, expired or unusable code was submitted
    -- locked_out       the wrong guess that locked the account (detail: consecutive failures and for how long)
    -- refused          a request turned away before anything was checked or sent: a lockout in force, a cooldown,
    --                  the hourly cap, a client over its rate limit (detail: which, and for what)
    -- login            a code was redeemed and a session started
    -- refresh          a refresh token was rotated
    -- refresh_reused   a rotated-out refresh token was presented again (its whole session family is revoked)
    -- logout           a session ended at its owner's request (detail 'all' for logout-all)
    -- revoked          a session ended by anyone else: the admin command, reuse detection, a lost permission
    -- unlocked         an administrator cleared an account's (or identifier's) failures
    event       TEXT NOT NULL CHECK (event IN (
        'code_requested', 'code_sent', 'delivery_failed', 'code_failed', 'locked_out', 'refused', 'login',
        'refresh', 'refresh_reused', 'logout', 'revoked', 'unlocked')),
    user_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    channel     TEXT CHECK (channel IS NULL OR channel IN ('email', 'sms')),
    -- Masked, e.g. 'mo*********@example.com' or '+12*******90'. No column ever holds a full identifier.
    identifier  TEXT,
    ip          TEXT,
    -- ISO 3166-1 alpha-2 country of the client, as Cloudflare geolocates it (request.cf.country).
    country     TEXT,
    user_agent  TEXT,
    detail      TEXT
);
INSERT INTO login_events (id, occurred_at, event, user_id, channel, identifier, ip, country, user_agent, detail)
SELECT id, occurred_at, event, user_id, channel, identifier, ip, country, user_agent, detail
FROM login_events_moving;
DROP TABLE login_events_moving;
CREATE INDEX login_events_by_user ON login_events (user_id, occurred_at);
CREATE INDEX login_events_by_event ON login_events (event, occurred_at);

-- Wrong codes, lockouts and refusals in the last 24 hours, per user (or per masked identifier when nobody owns
-- it, or per client address for refusals that name no identifier).
DROP VIEW failed_attempts_24h;
CREATE VIEW failed_attempts_24h AS
SELECT u.email,
       e.user_id,
       e.identifier,
       sum(e.event = 'code_failed') AS wrong_codes,
       sum(e.event = 'locked_out') AS lockouts,
       sum(e.event = 'refused') AS refusals,
       datetime(max(e.occurred_at), 'unixepoch') AS last_failure,
       group_concat(DISTINCT e.ip) AS ips,
       group_concat(DISTINCT e.country) AS countries
FROM login_events e LEFT JOIN users u ON u.id = e.user_id
WHERE e.event IN ('code_failed', 'locked_out', 'refused') AND e.occurred_at > unixepoch() - 86400
GROUP BY e.user_id, e.identifier;

-- Accounts (and identifiers that belong to none) that are locked now or held for an administrator, with their
-- consecutive failures. Unlock with the admin command (`unlock`) or `INSERT INTO admin_unlocks`.
CREATE VIEW locked_accounts AS
SELECT u.id AS user_id,
       u.email,
       CASE WHEN u.id IS NULL THEN g.subject END AS identifier,
       g.failures,
       g.held AS held_for_admin,
       CASE WHEN g.locked_until > unixepoch() THEN datetime(g.locked_until, 'unixepoch') END AS locked_until,
       datetime(g.last_failed_at, 'unixepoch') AS last_failure
FROM guess_counters g LEFT JOIN users u ON g.subject = 'user:' || u.id
WHERE g.held = 1 OR g.locked_until > unixepoch();

-- Every user with profile, groups, whether they may log in now, and their lock state.
DROP VIEW user_directory;
CREATE VIEW user_directory AS
SELECT u.id,
       u.email,
       u.first_name,
       u.last_name,
       p.phone_number,
       COALESCE(p.branch, '') AS branch,
       COALESCE(p.designation, '') AS designation,
       p.locale,
       u.is_active,
       EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id
               WHERE ug.user_id = u.id AND g.is_employee_group = 1) AS in_employee_group,
       u.is_active = 1 AND EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id
               WHERE ug.user_id = u.id AND g.is_employee_group = 1) AS may_log_in,
       COALESCE((SELECT group_concat(name, ', ') FROM (SELECT g.name FROM user_groups ug JOIN groups g
                 ON g.id = ug.group_id WHERE ug.user_id = u.id ORDER BY g.name)), '') AS groups,
       datetime(u.date_joined, 'unixepoch') AS date_joined,
       datetime(u.last_login, 'unixepoch') AS last_login,
       COALESCE(gc.failures, 0) AS consecutive_failures,
       CASE WHEN gc.held = 1 THEN 'held for an administrator'
            WHEN gc.locked_until > unixepoch() THEN 'locked until ' || datetime(gc.locked_until, 'unixepoch')
            ELSE '' END AS lock_state
FROM users u LEFT JOIN profiles p ON p.user_id = u.id LEFT JOIN guess_counters gc ON gc.subject = 'user:' || u.id;

-- Unlocks one account, found by its email or its E.164 phone number, or an identifier that belongs to no account:
-- its failures, lockout and hold are cleared, and an 'unlocked' row records it (with the masked identifier when no
-- account owns it). Unlocking something with no failures is refused, so a typo does not pass silently.
CREATE VIEW admin_unlocks AS
SELECT NULL AS identifier WHERE 0;

CREATE TRIGGER admin_unlocks_insert INSTEAD OF INSERT ON admin_unlocks
BEGIN
    SELECT RAISE(ABORT, 'admin: nothing to unlock: no failures are counted for this email or phone number')
    WHERE NOT EXISTS (SELECT 1 FROM guess_counters WHERE failures > 0 AND subject = COALESCE(
        (SELECT 'user:' || id FROM users WHERE email = NEW.identifier),
        (SELECT 'user:' || user_id FROM profiles WHERE phone_number = NEW.identifier),
        CASE WHEN NEW.identifier LIKE '%@%' THEN 'email:' ELSE 'sms:' END || NEW.identifier));

    INSERT INTO login_events (occurred_at, event, user_id, channel, identifier, detail)
    SELECT unixepoch(), 'unlocked', u.id,
           CASE WHEN NEW.identifier LIKE '%@%' THEN 'email' ELSE 'sms' END,
           CASE WHEN NEW.identifier LIKE '%@%' THEN
               substr(NEW.identifier, 1, CASE WHEN instr(NEW.identifier, '@') > 5 THEN 2 ELSE 1 END)
               || replace(hex(zeroblob(instr(NEW.identifier, '@') - 1
                                       - CASE WHEN instr(NEW.identifier, '@') > 5 THEN 2 ELSE 1 END)), '00', '*')
               || substr(NEW.identifier, instr(NEW.identifier, '@'))
           ELSE substr(NEW.identifier, 1, 3) || replace(hex(zeroblob(length(NEW.identifier) - 5)), '00', '*')
                || substr(NEW.identifier, -2) END,
           'admin: unlocked after ' || g.failures || ' consecutive failures'
    FROM guess_counters g LEFT JOIN users u ON g.subject = 'user:' || u.id
    WHERE g.subject = COALESCE(
        (SELECT 'user:' || id FROM users WHERE email = NEW.identifier),
        (SELECT 'user:' || user_id FROM profiles WHERE phone_number = NEW.identifier),
        CASE WHEN NEW.identifier LIKE '%@%' THEN 'email:' ELSE 'sms:' END || NEW.identifier);

    UPDATE guess_counters SET failures = 0, locked_until = 0, held = 0
    WHERE subject = COALESCE(
        (SELECT 'user:' || id FROM users WHERE email = NEW.identifier),
        (SELECT 'user:' || user_id FROM profiles WHERE phone_number = NEW.identifier),
        CASE WHEN NEW.identifier LIKE '%@%' THEN 'email:' ELSE 'sms:' END || NEW.identifier);
END;
