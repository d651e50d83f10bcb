-- Comments on articles. Only the comment's author may delete it.
CREATE TABLE comments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    author_id  bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- An article's comments in order of creation.
CREATE INDEX comments_article_created_idx ON comments (article_id, created_at, id);
-- Cascading deletes of a user.
CREATE INDEX comments_author_idx ON comments (author_id);
