-- Widens the audit trail for sessions (refresh, reuse, revocation), delivery attempts and test identifiers, and
-- records the client's country. SQLite cannot change a CHECK constraint in place, so the table is rebuilt; its
-- rows and ids are kept.

CREATE TABLE login_events_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    -- code_requested   a code was asked for (detail says why nothing was sent, if nothing was)
    -- code_sent        a provider accepted the message (detail: the provider)
    -- delivery_failed  one provider attempt failed, or no attempt was made (detail: provider and reason)
    -- code_failed      a wrong, expired or unusable code was submitted
    -- locked_out       the wrong guess that locked the identifier
    -- login            a code was redeemed and a session started
    -- refresh          a refresh token was rotated
    -- refresh_reused   a rotated-out refresh token was presented again (its whole session family is revoked)
    -- logout           a session ended at its owner's request (detail 'all' for logout-all)
    -- revoked          a session ended by anyone else: the admin command, reuse detection, a lost permission
    event       TEXT NOT NULL CHECK (event IN (
        'code_requested', 'code_sent', 'delivery_failed', 'code_failed', 'locked_out', 'login', 'refresh',
        'refresh_reused', 'logout', 'revoked')),
    user_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    channel     TEXT CHECK (channel IS NULL OR channel IN ('email', 'sms')),
    -- Masked, e.g. 'mo*********@example.com' or '+12*******90'.
    identifier  TEXT,
    ip          TEXT,
    -- ISO 3166-1 alpha-2 country of the client, as Cloudflare geolocates it (request.cf.country).
    country     TEXT,
    user_agent  TEXT,
    detail      TEXT
);

INSERT INTO login_events_v2 (id, occurred_at, event, user_id, channel, identifier, ip, user_agent, detail)
SELECT id, occurred_at, event, user_id, channel, identifier, ip, user_agent, detail FROM login_events;

DROP TABLE login_events;
ALTER TABLE login_events_v2 RENAME TO login_events;

CREATE INDEX login_events_by_user ON login_events (user_id, occurred_at);
CREATE INDEX login_events_by_event ON login_events (event, occurred_at);
