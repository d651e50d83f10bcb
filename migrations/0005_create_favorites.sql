-- Which user favorited which article. The primary key makes favoriting
-- idempotent and answers "did the viewer favorite X?".
CREATE TABLE favorites (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    article_id bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, article_id)
);

-- favoritesCount per article, and cascading deletes of articles.
CREATE INDEX favorites_article_idx ON favorites (article_id);
