-- Correct on every Cloudflare location, where Workers KV serves cached values and cached misses for up to 60 s.
--
-- The code's keyed digest moves from KV into the challenge row. The batch that reserves a guess already reads this
-- row, so verification now reads the digest from the one strongly consistent copy, in the same round trip, the same
-- way for every identifier: a cached or missing KV value can no longer make a correct code count as wrong, and the
-- answer's timing no longer shows whether a code was written for the identifier. Set by the delivery after the
-- answer (only for an account that may log in), cleared by every new code.
ALTER TABLE otp_challenges ADD COLUMN code_digest TEXT;

-- When the token was rotated out. Presented again within REFRESH_REUSE_GRACE_SECONDS of this, it is a retry (a lost
-- answer, two parallel refreshes) and gets a working pair for the same session; later, it is reuse.
ALTER TABLE refresh_tokens ADD COLUMN replaced_at INTEGER;

-- The access token issued together with this refresh token: the one a rotation of it replaces. (A session can hold
-- two live pairs after a retry, so the session's latest access token is not necessarily this one.)
ALTER TABLE refresh_tokens ADD COLUMN access_digest TEXT;

-- Every access token a session was given, until it expires: revocation deletes from KV exactly the tokens listed
-- here. A token is written to KV before the statement that lists it commits, so a revocation either sees it (and
-- deletes it after the write) or the session was already revoked when the token would have been listed (and the
-- token is never answered). Only SHA-256 digests, never tokens.
CREATE TABLE access_tokens (
    digest     TEXT PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX access_tokens_by_session ON access_tokens (session_id, expires_at);

INSERT INTO access_tokens (digest, session_id, expires_at)
SELECT access_digest, id, access_expires_at FROM sessions WHERE revoked_at IS NULL;
