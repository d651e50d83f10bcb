-- The feed's statement as components/conduit/src/articles.rs
-- (`article_list_query` with `followed_by`) sends it for GET
-- /api/articles/feed: $1 = viewer (the caller), $2 = limit (20), $3 =
-- offset (0), $4 = the follower (the caller again). A unit test of the
-- component (`bench_statements_are_the_ones_the_api_sends`) keeps this file
-- in step with the code. As in article_list.sql, the to_char pattern's
-- colons are written chr(58). The driver sets `viewer` to a seeded user with
-- follows for its EXPLAIN ANALYZE (bench/results/*-explain-feed.txt).
\set viewer 1
\set page_limit 20
\set page_offset 0
WITH page AS (SELECT a.id, a.slug, a.title, a.description, a.created_at, a.updated_at, a.author_id FROM (SELECT newest.id FROM follows f CROSS JOIN LATERAL (SELECT a.id, a.created_at FROM articles a WHERE a.author_id = f.followee_id ORDER BY a.created_at DESC, a.id DESC LIMIT :page_limit::bigint + :page_offset::bigint) newest WHERE f.follower_id = :viewer::bigint ORDER BY newest.created_at DESC, newest.id DESC LIMIT :page_limit::bigint OFFSET :page_offset::bigint) page_ids JOIN articles a ON a.id = page_ids.id) SELECT CASE WHEN :viewer::bigint = 0 OR EXISTS (SELECT 1 FROM users WHERE id = :viewer::bigint) THEN json_build_object('articles', COALESCE((SELECT json_agg(json_build_object('slug', a.slug, 'title', a.title, 'description', a.description, 'tagList', COALESCE((SELECT json_agg(t.name ORDER BY t.name) FROM article_tags at JOIN tags t ON t.id = at.tag_id WHERE at.article_id = a.id), '[]'::json), 'createdAt', to_char(a.created_at AT TIME ZONE 'UTC', ('YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"')), 'updatedAt', to_char(a.updated_at AT TIME ZONE 'UTC', ('YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"')), 'favorited', EXISTS (SELECT 1 FROM favorites fv WHERE fv.article_id = a.id AND fv.user_id = :viewer::bigint), 'favoritesCount', (SELECT count(*) FROM favorites fv WHERE fv.article_id = a.id), 'author', json_build_object('username', u.username, 'bio', u.bio, 'image', u.image, 'following', true)) ORDER BY a.created_at DESC, a.id DESC) FROM page a JOIN users u ON u.id = a.author_id), '[]'::json), 'articlesCount', (SELECT COALESCE(sum(c.articles), 0)::bigint FROM follows f JOIN article_counts c ON c.filter_kind = 'author' AND c.filter_id = f.followee_id WHERE f.follower_id = :viewer::bigint))::text END;
