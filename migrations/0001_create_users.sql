-- Accounts. Registration relies on these unique constraints, not on a
-- "does it exist?" pre-check: two concurrent registrations of the same name
-- race to the index and exactly one wins; the loser's SQLSTATE 23505 names
-- the constraint, which the API turns into a 422 on the matching field.
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Usernames are compared exactly as sent (profiles are addressed by them).
    username      text        NOT NULL,
    -- Stored exactly as sent; uniqueness and login ignore letter case.
    email         text        NOT NULL,
    -- Argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash text        NOT NULL,
    -- The spec types bio and image as strings, so "unset" is the empty string.
    bio           text        NOT NULL DEFAULT '',
    image         text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_username_not_blank CHECK (btrim(username) <> ''),
    CONSTRAINT users_email_not_blank CHECK (btrim(email) <> '')
);

-- One account per address regardless of case; also serves the login lookup
-- `WHERE lower(email) = lower($1)`.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
