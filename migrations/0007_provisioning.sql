-- Provisioning: SCIM 2.0 clients (Entra ID, Okta, the CRM) and the admin command's CSV import.
--
-- The client's own id of each user and group (externalId), modification times for SCIM's meta, and an audit
-- trail of every provisioning change: who made it (scim, import), on what, and what changed. Access that a change
-- ends is also recorded in login_events as 'revoked', one row per session ended, as the admin command does.

ALTER TABLE users ADD COLUMN external_id TEXT;
-- Unix seconds of the last provisioning change; NULL until the first (read as date_joined).
ALTER TABLE users ADD COLUMN updated_at INTEGER;
ALTER TABLE groups ADD COLUMN external_id TEXT;
ALTER TABLE groups ADD COLUMN created_at INTEGER;
ALTER TABLE groups ADD COLUMN updated_at INTEGER;

CREATE INDEX users_by_external_id ON users (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX groups_by_external_id ON groups (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE provisioning_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    -- scim    a SCIM client, authenticated with SCIM_TOKEN (ip: its address)
    -- import  npm run admin -- import
    source      TEXT NOT NULL CHECK (source IN ('scim', 'import')),
    action      TEXT NOT NULL CHECK (action IN ('create', 'replace', 'update', 'delete')),
    resource    TEXT NOT NULL CHECK (resource IN ('User', 'Group')),
    -- users.id or groups.id; kept when the resource is deleted.
    resource_id INTEGER,
    -- The userName (email) or displayName at the time of the change.
    name        TEXT,
    ip          TEXT,
    -- What changed, as JSON: the new value of each changed field, and the members added and removed.
    detail      TEXT
);

CREATE INDEX provisioning_events_by_time ON provisioning_events (occurred_at);
CREATE INDEX provisioning_events_by_resource ON provisioning_events (resource, resource_id);

-- The admin command's import: one INSERT per CSV row makes the user look exactly like the row (names, phone,
-- branch, designation, and membership of exactly the listed groups, as a JSON array of names), creating the user
-- if needed. Every check runs first; a refused row changes nothing. Losing the last employee group records
-- 'revoked' in the same statement (the command then ends the sessions).
CREATE VIEW admin_imports AS
SELECT NULL AS email, NULL AS first_name, NULL AS last_name, NULL AS phone_number, NULL AS branch,
       NULL AS designation, NULL AS groups
WHERE 0;

CREATE TRIGGER admin_imports_insert INSTEAD OF INSERT ON admin_imports
BEGIN
    SELECT RAISE(ABORT, 'admin: groups must be a JSON array of group names')
    WHERE NEW.groups IS NULL OR json_valid(NEW.groups) = 0 OR json_type(NEW.groups) <> 'array';
    SELECT RAISE(ABORT, 'admin: no group has this name')
    WHERE EXISTS (SELECT 1 FROM json_each(NEW.groups) j WHERE NOT EXISTS (SELECT 1 FROM groups WHERE name = j.value));
    SELECT RAISE(ABORT, 'admin: another user already has this phone number')
    WHERE NEW.phone_number <> '' AND EXISTS (
        SELECT 1 FROM profiles p JOIN users u ON u.id = p.user_id
        WHERE p.phone_number = NEW.phone_number AND u.email <> NEW.email);

    INSERT INTO login_events (occurred_at, event, user_id, detail)
    SELECT unixepoch(), 'revoked', d.id, 'admin: import removed the last employee group' FROM user_directory d
    WHERE d.email = NEW.email AND d.may_log_in AND NOT EXISTS (
        SELECT 1 FROM json_each(NEW.groups) j JOIN groups g ON g.name = j.value WHERE g.is_employee_group = 1);

    INSERT INTO provisioning_events (occurred_at, source, action, resource, resource_id, name, detail)
    SELECT unixepoch(), 'import', CASE WHEN u.id IS NULL THEN 'create' ELSE 'replace' END, 'User', u.id, NEW.email,
           json_object('first_name', NEW.first_name, 'last_name', NEW.last_name, 'phone_number', NEW.phone_number,
                       'branch', NEW.branch, 'designation', NEW.designation, 'groups', json(NEW.groups))
    FROM (SELECT 1) LEFT JOIN users u ON u.email = NEW.email;

    INSERT INTO users (email, first_name, last_name, updated_at)
    VALUES (NEW.email, COALESCE(NEW.first_name, ''), COALESCE(NEW.last_name, ''), unixepoch())
    ON CONFLICT (email) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
        updated_at = excluded.updated_at;
    UPDATE provisioning_events SET resource_id = (SELECT id FROM users WHERE email = NEW.email)
    WHERE id = (SELECT max(id) FROM provisioning_events) AND resource_id IS NULL;

    INSERT INTO profiles (user_id, phone_number, branch, designation)
    SELECT id, NULLIF(NEW.phone_number, ''), COALESCE(NEW.branch, ''), COALESCE(NEW.designation, '')
    FROM users WHERE email = NEW.email
    ON CONFLICT (user_id) DO UPDATE SET phone_number = excluded.phone_number, branch = excluded.branch,
        designation = excluded.designation;

    DELETE FROM user_groups
    WHERE user_id = (SELECT id FROM users WHERE email = NEW.email)
      AND group_id NOT IN (SELECT g.id FROM json_each(NEW.groups) j JOIN groups g ON g.name = j.value);
    INSERT OR IGNORE INTO user_groups (user_id, group_id)
    SELECT u.id, g.id FROM users u, json_each(NEW.groups) j JOIN groups g ON g.name = j.value
    WHERE u.email = NEW.email;
END;

-- Deletes a user and everything that hangs on them (profile, memberships, sessions, refresh tokens); their audit
-- rows stay, without the user. The admin command deactivates the user and ends their sessions first.
CREATE VIEW admin_user_deletions AS
SELECT NULL AS email WHERE 0;

CREATE TRIGGER admin_user_deletions_insert INSTEAD OF INSERT ON admin_user_deletions
BEGIN
    SELECT RAISE(ABORT, 'admin: no user has this email') WHERE NOT EXISTS (SELECT 1 FROM users WHERE email = NEW.email);
    INSERT INTO login_events (occurred_at, event, user_id, detail)
    SELECT unixepoch(), 'revoked', id, 'admin: deleted' FROM user_directory WHERE email = NEW.email AND may_log_in;
    DELETE FROM refresh_tokens
    WHERE session_id IN (SELECT id FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = NEW.email));
    DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = NEW.email);
    DELETE FROM user_groups WHERE user_id = (SELECT id FROM users WHERE email = NEW.email);
    DELETE FROM profiles WHERE user_id = (SELECT id FROM users WHERE email = NEW.email);
    DELETE FROM users WHERE email = NEW.email;
END;
