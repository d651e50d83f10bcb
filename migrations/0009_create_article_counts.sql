-- How many articles each filter of the article list matches, kept by the
-- writes, so that `articlesCount` is a sum of a few rows instead of a count
-- over the matching articles (which grows with the table: at 50,000
-- articles the count was 6.2 of the list statement's 7 ms). One count per
-- filter a list can have alone:
--
--   filter_kind  filter_id         counts
--   all          0                 every article
--   tag          tags.id           articles with that tag (article_tags rows)
--   author       users.id          articles by that user
--   favorited    users.id          articles that user favorited (favorites rows)
--
-- Triggers on articles, article_tags and favorites change the counts in the
-- writing transaction itself, so any snapshot sees counts that agree exactly
-- with the rows it sees: the sum for a key equals count(*) of its filter.
-- Lists that combine filters still count their rows (components/conduit,
-- `article_list_query`).
--
-- A count is the sum of one or more rows ("shards") of its key. Every
-- article creation changes the 'all' count, its author's and its tags'; were
-- each a single row, concurrent creations would queue on those rows' locks
-- until each other's commit. Instead a writer takes whichever row of the key
-- no other transaction holds (FOR UPDATE SKIP LOCKED) and adds a row of its
-- own only when all of them are held. So a writer never waits for another
-- one here (no lock order to get wrong, no deadlock), and a key has at most
-- as many rows as the most transactions that ever changed it at once (the
-- connections bound that). A new row's shard number comes from an identity
-- sequence, so it never collides with another writer's new row either.
-- (This is for the API's READ COMMITTED writes; a REPEATABLE READ or
-- SERIALIZABLE transaction may get a serialization failure on a count that
-- changed since its snapshot, as on any row it updates.)
--
-- Nothing here writes to `tags`: creations that share a tag still never
-- touch its row (migrations/0008).
CREATE TYPE article_filter AS ENUM ('all', 'tag', 'author', 'favorited');

CREATE TABLE article_counts (
    filter_kind article_filter NOT NULL,
    filter_id   bigint NOT NULL,
    shard       bigint GENERATED ALWAYS AS IDENTITY,
    -- A shard may go negative (a deletion can take a row other than the one
    -- its creation added to); only the sum of a key means anything. Not
    -- indexed, so its updates are HOT and leave the index alone.
    articles    bigint NOT NULL,
    -- Also the index every read (the sum of a key) and every write (a free
    -- shard of a key) goes through.
    PRIMARY KEY (filter_kind, filter_id, shard)
);

-- Adds `delta` to the count of (kind, id): to a shard no other transaction
-- holds, else to a new shard. Never waits for another writer.
CREATE FUNCTION add_to_article_count(kind article_filter, id bigint, delta bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
AS $$
BEGIN
    UPDATE article_counts c SET articles = c.articles + delta
    WHERE c.filter_kind = kind AND c.filter_id = id
      AND c.shard = (SELECT unheld.shard FROM article_counts unheld
                     WHERE unheld.filter_kind = kind AND unheld.filter_id = id
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED);
    IF NOT FOUND THEN
        INSERT INTO article_counts (filter_kind, filter_id, articles)
        VALUES (kind, id, delta);
    END IF;
END
$$;

-- articles: the 'all' count and the author's.
CREATE FUNCTION count_articles() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM add_to_article_count('all', 0, 1);
        PERFORM add_to_article_count('author', NEW.author_id, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM add_to_article_count('all', 0, -1);
        PERFORM add_to_article_count('author', OLD.author_id, -1);
    ELSE
        PERFORM add_to_article_count('author', OLD.author_id, -1);
        PERFORM add_to_article_count('author', NEW.author_id, 1);
    END IF;
    RETURN NULL;
END
$$;

-- article_tags: the tag's count (a tag is linked once per article, so its
-- rows are its articles).
CREATE FUNCTION count_article_tags() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM add_to_article_count('tag', OLD.tag_id, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM add_to_article_count('tag', NEW.tag_id, 1);
    END IF;
    RETURN NULL;
END
$$;

-- favorites: the favoriting user's count (one row per user and article).
CREATE FUNCTION count_favorites() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM add_to_article_count('favorited', OLD.user_id, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM add_to_article_count('favorited', NEW.user_id, 1);
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE (never done by the API, whose role may not) empties the counts
-- of the emptied table.
CREATE FUNCTION forget_article_counts() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM article_counts WHERE filter_kind = ANY (TG_ARGV::article_filter[]);
    RETURN NULL;
END
$$;

-- No writes while the triggers are created and the counts computed: a write
-- committed before is in the counts, a later one goes through the triggers.
LOCK TABLE articles, article_tags, favorites IN SHARE ROW EXCLUSIVE MODE;

-- Deletions cascade from articles (and users) to article_tags and
-- favorites; those rows' own triggers fire, so every count stays exact.
-- Updates fire only when they move a row to another key (the API never
-- does, but the counts must not depend on that).
CREATE TRIGGER articles_count
    AFTER INSERT OR DELETE ON articles
    FOR EACH ROW EXECUTE FUNCTION count_articles();
CREATE TRIGGER articles_count_author_change
    AFTER UPDATE OF author_id ON articles
    FOR EACH ROW WHEN (OLD.author_id IS DISTINCT FROM NEW.author_id)
    EXECUTE FUNCTION count_articles();
CREATE TRIGGER articles_forget_counts
    AFTER TRUNCATE ON articles
    FOR EACH STATEMENT EXECUTE FUNCTION forget_article_counts('all', 'author');

CREATE TRIGGER article_tags_count
    AFTER INSERT OR DELETE ON article_tags
    FOR EACH ROW EXECUTE FUNCTION count_article_tags();
CREATE TRIGGER article_tags_count_tag_change
    AFTER UPDATE OF tag_id ON article_tags
    FOR EACH ROW WHEN (OLD.tag_id IS DISTINCT FROM NEW.tag_id)
    EXECUTE FUNCTION count_article_tags();
CREATE TRIGGER article_tags_forget_counts
    AFTER TRUNCATE ON article_tags
    FOR EACH STATEMENT EXECUTE FUNCTION forget_article_counts('tag');

CREATE TRIGGER favorites_count
    AFTER INSERT OR DELETE ON favorites
    FOR EACH ROW EXECUTE FUNCTION count_favorites();
CREATE TRIGGER favorites_count_user_change
    AFTER UPDATE OF user_id ON favorites
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION count_favorites();
CREATE TRIGGER favorites_forget_counts
    AFTER TRUNCATE ON favorites
    FOR EACH STATEMENT EXECUTE FUNCTION forget_article_counts('favorited');

-- The counts of the rows already there.
INSERT INTO article_counts (filter_kind, filter_id, articles)
SELECT 'all'::article_filter, 0, count(*) FROM articles
UNION ALL
SELECT 'author', author_id, count(*) FROM articles GROUP BY author_id
UNION ALL
SELECT 'tag', tag_id, count(*) FROM article_tags GROUP BY tag_id
UNION ALL
SELECT 'favorited', user_id, count(*) FROM favorites GROUP BY user_id;
