-- The ids of the named tags, creating the missing ones, for an article
-- creation that links its tags in the same statement.
--
-- Existing tags are neither written nor locked, so creations that share a
-- tag do not queue on its row (an upsert that rewrites the row would). The
-- function is VOLATILE, so its SELECT takes a snapshot of its own after the
-- INSERT: a tag that a concurrent creation committed a moment ago, which the
-- INSERT skipped after waiting for that creation, is still found. Names are
-- inserted in sorted order, so two creations never wait on each other's new
-- tags in a cycle.
CREATE FUNCTION tag_ids(names text[])
RETURNS TABLE (id bigint, name text)
LANGUAGE sql
VOLATILE
AS $$
    INSERT INTO tags (name)
    SELECT DISTINCT tag FROM unnest(names) AS tag ORDER BY tag
    ON CONFLICT (name) DO NOTHING;

    SELECT t.id, t.name FROM tags t WHERE t.name = ANY (names);
$$;
