-- Tags are shared by name; article_tags links them to articles and keeps the
-- order in which the author listed them (position), which the API returns.
CREATE TABLE tags (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    -- Upserts by name (ON CONFLICT (name)) and ?tag= lookups use this.
    CONSTRAINT tags_name_key UNIQUE (name)
);

CREATE TABLE article_tags (
    article_id bigint  NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    tag_id     bigint  NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    -- A tag appears once per article; the key also serves "tags of article X".
    PRIMARY KEY (article_id, tag_id)
);

-- ?tag= goes from the tag to its articles.
CREATE INDEX article_tags_tag_idx ON article_tags (tag_id, article_id);
