-- Views for the questions administrators ask in the D1 console, and the write views the admin command
-- (`npm run admin`) uses. Recipes: docs/ADMIN.md.
--
-- Why write views: D1 has no BEGIN/COMMIT, and whether `wrangler d1 execute --remote --command "a; b"` runs its
-- statements as one transaction is not documented. One SQL statement always is atomic, triggers included. So every
-- change the admin command makes is exactly one INSERT into one of the admin_* views below; its INSTEAD OF trigger
-- checks the preconditions (RAISE(ABORT, ...) undoes the whole statement) and then writes users, profiles,
-- memberships and the audit row together, or nothing at all. The same views work in the D1 console.
--
-- Email addresses and phone numbers must already be in the service's canonical form (lower-case; E.164); the
-- admin command normalises them with the service's own parsers, and the CHECK constraints of 0001 refuse anything
-- else typed by hand.

-- ---- Reports ---------------------------------------------------------------------------------------------------

-- Every user with profile, groups and whether they may log in now (active and in an employee group).
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
       datetime(u.last_login, 'unixepoch') AS last_login
FROM users u LEFT JOIN profiles p ON p.user_id = u.id;

-- The audit trail with readable times and the user's email; newest first when ordered by id DESC.
CREATE VIEW recent_login_events AS
SELECT e.id,
       datetime(e.occurred_at, 'unixepoch') AS at,
       e.event,
       u.email,
       e.channel,
       e.identifier,
       e.ip,
       e.country,
       e.user_agent,
       e.detail
FROM login_events e LEFT JOIN users u ON u.id = e.user_id;

-- Wrong codes and lockouts in the last 24 hours, per user (or per masked identifier when nobody owns it).
CREATE VIEW failed_attempts_24h AS
SELECT u.email,
       e.user_id,
       e.identifier,
       sum(e.event = 'code_failed') AS wrong_codes,
       sum(e.event = 'locked_out') AS lockouts,
       datetime(max(e.occurred_at), 'unixepoch') AS last_failure,
       group_concat(DISTINCT e.ip) AS ips,
       group_concat(DISTINCT e.country) AS countries
FROM login_events e LEFT JOIN users u ON u.id = e.user_id
WHERE e.event IN ('code_failed', 'locked_out') AND e.occurred_at > unixepoch() - 86400
GROUP BY e.user_id, e.identifier;

-- Logins per UTC day: how many, and by how many distinct users.
CREATE VIEW logins_per_day AS
SELECT date(occurred_at, 'unixepoch') AS day,
       count(*) AS logins,
       count(DISTINCT user_id) AS users
FROM login_events WHERE event = 'login'
GROUP BY day;

-- Identifiers locked right now. Assumes the defaults OTP_MAX_ATTEMPTS = 3 and OTP_LOCKOUT_MINUTES = 15 (a view
-- cannot read the worker's vars); with other values, read otp_challenges directly (docs/ADMIN.md).
CREATE VIEW locked_identifiers AS
SELECT c.identifier,
       u.id AS user_id,
       u.email,
       c.failed_attempts,
       datetime(c.last_failed_at, 'unixepoch') AS last_failure,
       datetime(c.last_failed_at + 900, 'unixepoch') AS locked_until
FROM otp_challenges c
LEFT JOIN profiles p ON c.identifier = 'sms:' || p.phone_number
LEFT JOIN users u ON u.id = COALESCE(p.user_id,
    (SELECT id FROM users WHERE substr(c.identifier, 1, 6) = 'email:' AND email = substr(c.identifier, 7)))
WHERE c.failed_attempts >= 3 AND c.last_failed_at > unixepoch() - 900;

-- ---- Admin changes: write-only views, one statement each ---------------------------------------------------------

-- Adds (mode 'add') or changes (mode 'update') one user and their profile. NULL leaves a field as it is (new users
-- get ''), an empty phone_number removes the number, new_email renames the account, and group_name (optional)
-- adds the user to that existing group in the same statement. locale (0003) is the language of their codes; ''
-- clears it.
CREATE VIEW admin_user_changes AS
SELECT NULL AS mode, NULL AS email, NULL AS new_email, NULL AS first_name, NULL AS last_name,
       NULL AS phone_number, NULL AS branch, NULL AS designation, NULL AS group_name, NULL AS locale
WHERE 0;

CREATE TRIGGER admin_user_changes_insert INSTEAD OF INSERT ON admin_user_changes
BEGIN
    SELECT RAISE(ABORT, 'admin: mode must be add or update') WHERE NEW.mode IS NOT 'add' AND NEW.mode IS NOT 'update';
    SELECT RAISE(ABORT, 'admin: a user with this email already exists')
    WHERE NEW.mode = 'add' AND EXISTS (SELECT 1 FROM users WHERE email = NEW.email);
    SELECT RAISE(ABORT, 'admin: no user has this email')
    WHERE NEW.mode = 'update' AND NOT EXISTS (SELECT 1 FROM users WHERE email = NEW.email);
    SELECT RAISE(ABORT, 'admin: another user already has the new email')
    WHERE NEW.new_email IS NOT NULL AND NEW.new_email <> NEW.email
      AND EXISTS (SELECT 1 FROM users WHERE email = NEW.new_email);
    SELECT RAISE(ABORT, 'admin: another user already has this phone number')
    WHERE NEW.phone_number <> '' AND EXISTS (
        SELECT 1 FROM profiles p JOIN users u ON u.id = p.user_id
        WHERE p.phone_number = NEW.phone_number AND u.email <> NEW.email);
    SELECT RAISE(ABORT, 'admin: no group has this name')
    WHERE NEW.group_name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM groups WHERE name = NEW.group_name);

    INSERT INTO users (email, first_name, last_name)
    SELECT NEW.email, COALESCE(NEW.first_name, ''), COALESCE(NEW.last_name, '') WHERE NEW.mode = 'add';
    UPDATE users SET first_name = COALESCE(NEW.first_name, first_name),
                     last_name = COALESCE(NEW.last_name, last_name),
                     email = COALESCE(NEW.new_email, email)
    WHERE NEW.mode = 'update' AND email = NEW.email;

    INSERT INTO profiles (user_id, phone_number, branch, designation, locale)
    SELECT id, NULLIF(NEW.phone_number, ''), COALESCE(NEW.branch, ''), COALESCE(NEW.designation, ''),
           NULLIF(NEW.locale, '')
    FROM users WHERE email = COALESCE(NEW.new_email, NEW.email)
    ON CONFLICT (user_id) DO UPDATE SET
        phone_number = CASE WHEN NEW.phone_number IS NULL THEN profiles.phone_number ELSE excluded.phone_number END,
        branch = COALESCE(NEW.branch, profiles.branch),
        designation = COALESCE(NEW.designation, profiles.designation),
        locale = CASE WHEN NEW.locale IS NULL THEN profiles.locale ELSE excluded.locale END;

    INSERT OR IGNORE INTO user_groups (user_id, group_id)
    SELECT u.id, g.id FROM users u, groups g
    WHERE u.email = COALESCE(NEW.new_email, NEW.email) AND g.name = NEW.group_name;
END;

-- Adds (member = 1) or removes (member = 0) a user to or from a group. A removal that ends the user's access
-- records a 'revoked' event in the same statement.
CREATE VIEW admin_memberships AS
SELECT NULL AS email, NULL AS group_name, NULL AS member WHERE 0;

CREATE TRIGGER admin_memberships_insert INSTEAD OF INSERT ON admin_memberships
BEGIN
    SELECT RAISE(ABORT, 'admin: member must be 0 or 1') WHERE NEW.member IS NOT 0 AND NEW.member IS NOT 1;
    SELECT RAISE(ABORT, 'admin: no user has this email') WHERE NOT EXISTS (SELECT 1 FROM users WHERE email = NEW.email);
    SELECT RAISE(ABORT, 'admin: no group has this name')
    WHERE NOT EXISTS (SELECT 1 FROM groups WHERE name = NEW.group_name);

    INSERT INTO login_events (occurred_at, event, user_id, detail)
    SELECT unixepoch(), 'revoked', d.id, 'admin: removed from group ' || NEW.group_name
    FROM user_directory d JOIN user_groups ug ON ug.user_id = d.id JOIN groups g ON g.id = ug.group_id
    WHERE NEW.member = 0 AND d.email = NEW.email AND d.may_log_in AND g.name = NEW.group_name
      AND NOT EXISTS (SELECT 1 FROM user_groups o JOIN groups og ON og.id = o.group_id
                      WHERE o.user_id = d.id AND og.is_employee_group = 1 AND og.name <> NEW.group_name);

    INSERT OR IGNORE INTO user_groups (user_id, group_id)
    SELECT u.id, g.id FROM users u, groups g WHERE NEW.member = 1 AND u.email = NEW.email AND g.name = NEW.group_name;
    DELETE FROM user_groups
    WHERE NEW.member = 0
      AND user_id = (SELECT id FROM users WHERE email = NEW.email)
      AND group_id = (SELECT id FROM groups WHERE name = NEW.group_name);
END;

-- Deactivates (is_active = 0) or reactivates (1) a user. Deactivating someone who could log in records 'revoked'.
CREATE VIEW admin_user_status AS
SELECT NULL AS email, NULL AS is_active WHERE 0;

CREATE TRIGGER admin_user_status_insert INSTEAD OF INSERT ON admin_user_status
BEGIN
    SELECT RAISE(ABORT, 'admin: is_active must be 0 or 1') WHERE NEW.is_active IS NOT 0 AND NEW.is_active IS NOT 1;
    SELECT RAISE(ABORT, 'admin: no user has this email') WHERE NOT EXISTS (SELECT 1 FROM users WHERE email = NEW.email);

    INSERT INTO login_events (occurred_at, event, user_id, detail)
    SELECT unixepoch(), 'revoked', id, 'admin: deactivated' FROM user_directory
    WHERE NEW.is_active = 0 AND email = NEW.email AND may_log_in;
    UPDATE users SET is_active = NEW.is_active WHERE email = NEW.email;
END;

-- Creates a group or sets whether it is an employee group. Unmarking one records 'revoked' for every member who
-- could log in only through it.
CREATE VIEW admin_groups AS
SELECT NULL AS name, NULL AS is_employee_group WHERE 0;

CREATE TRIGGER admin_groups_insert INSTEAD OF INSERT ON admin_groups
BEGIN
    SELECT RAISE(ABORT, 'admin: a group needs a name') WHERE NEW.name IS NULL OR trim(NEW.name) = '';
    SELECT RAISE(ABORT, 'admin: is_employee_group must be 0 or 1')
    WHERE NEW.is_employee_group IS NOT 0 AND NEW.is_employee_group IS NOT 1;

    INSERT INTO login_events (occurred_at, event, user_id, detail)
    SELECT unixepoch(), 'revoked', d.id, 'admin: group ' || NEW.name || ' is no longer an employee group'
    FROM user_directory d JOIN user_groups ug ON ug.user_id = d.id JOIN groups g ON g.id = ug.group_id
    WHERE NEW.is_employee_group = 0 AND g.name = NEW.name AND g.is_employee_group = 1 AND d.may_log_in
      AND NOT EXISTS (SELECT 1 FROM user_groups o JOIN groups og ON og.id = o.group_id
                      WHERE o.user_id = d.id AND og.is_employee_group = 1 AND og.name <> NEW.name);

    INSERT INTO groups (name, is_employee_group) VALUES (NEW.name, NEW.is_employee_group)
    ON CONFLICT (name) DO UPDATE SET is_employee_group = excluded.is_employee_group;
END;
