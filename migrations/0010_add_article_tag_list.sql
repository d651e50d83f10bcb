-- An article's tag names as the API lists them (sorted by name), kept on the
-- article row, so that rendering an article reads its tags with the row
-- instead of joining article_tags and tags once per article: a list page or
-- a feed page of 20 articles ran that join 20 times.
--
-- article_tags stays what the tag filter (?tag=) and the tag counts
-- (migrations/0009) read, and what keeps the tags' foreign keys. The two
-- agree because an article's tags are written once, by the statement that
-- creates it, and never changed afterwards (the API has no way to change
-- them; tags are never deleted).
--
-- NULL means "not known here": an article created by a version of the API
-- from before this column, during a rolling release. Readers then fall back
-- to article_tags (components/conduit, `STORED`), so such an article shows
-- the same tags either way and no version has to stop writing first.
ALTER TABLE articles ADD COLUMN tag_list text[];

-- The articles already there. tag_list is in no index, so where a page has
-- room these updates are HOT and add no index entries.
UPDATE articles a
SET tag_list = ARRAY(SELECT t.name
                     FROM article_tags at JOIN tags t ON t.id = at.tag_id
                     WHERE at.article_id = a.id
                     ORDER BY t.name)
WHERE a.tag_list IS NULL;
