-- The language a user's one-time-code messages are written in when the request names none: a BCP 47 tag such as
-- 'es' or 'pt-BR' (the service reads its language subtag and falls back to English for languages it has no
-- template for). NULL means English unless the app asks otherwise.
ALTER TABLE profiles ADD COLUMN locale TEXT
    CHECK (locale IS NULL OR (length(locale) BETWEEN 2 AND 35 AND locale NOT GLOB '*[^A-Za-z0-9_-]*'));
