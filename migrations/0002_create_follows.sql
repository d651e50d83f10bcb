-- Who follows whom. The composite primary key makes following idempotent
-- (INSERT ... ON CONFLICT DO NOTHING) and serves "does the viewer follow X?"
-- lookups, which lead with follower_id.
CREATE TABLE follows (
    follower_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    -- Following yourself is meaningless; the API answers it with a 422.
    CONSTRAINT follows_not_self CHECK (follower_id <> followee_id)
);

-- Cascading deletes of a user look rows up by followee as well.
CREATE INDEX follows_followee_idx ON follows (followee_id);
