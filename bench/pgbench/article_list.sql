-- The article list's statement as components/conduit/src/articles.rs
-- (`article_list_query` with no filter, `article_json(false, &STORED)`,
-- `db::profile_json`, `db::iso8601`) sends it for GET /api/articles:
-- $1 = viewer (0 = anonymous), $2 = limit (20), $3 = offset (0). pgbench
-- runs it with -M prepared, as the host's statement cache does. A unit test
-- of the component (`bench_statements_are_the_ones_the_api_sends`) keeps
-- this file in step with the code. One difference in text only: the
-- to_char pattern's colons are written chr(58), because pgbench would take
-- `:MI` and `:SS` for variables; the planner folds the constant.
\set viewer 0
\set page_limit 20
\set page_offset 0
WITH page AS (SELECT a.id, a.slug, a.title, a.description, a.created_at, a.updated_at, a.author_id, a.tag_list FROM articles a ORDER BY a.created_at DESC, a.id DESC LIMIT :page_limit::bigint OFFSET :page_offset::bigint) SELECT CASE WHEN :viewer::bigint = 0 OR EXISTS (SELECT 1 FROM users WHERE id = :viewer::bigint) THEN json_build_object('articles', COALESCE((SELECT json_agg(json_build_object('slug', a.slug, 'title', a.title, 'description', a.description, 'tagList', COALESCE(to_json(a.tag_list), (SELECT json_agg(t.name ORDER BY t.name) FROM article_tags at JOIN tags t ON t.id = at.tag_id WHERE at.article_id = a.id), '[]'::json), 'createdAt', to_char(a.created_at AT TIME ZONE 'UTC', ('YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"')), 'updatedAt', to_char(a.updated_at AT TIME ZONE 'UTC', ('YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"')), 'favorited', EXISTS (SELECT 1 FROM favorites fv WHERE fv.article_id = a.id AND fv.user_id = :viewer::bigint), 'favoritesCount', (SELECT count(*) FROM favorites fv WHERE fv.article_id = a.id), 'author', json_build_object('username', u.username, 'bio', u.bio, 'image', u.image, 'following', EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = :viewer::bigint AND f.followee_id = u.id))) ORDER BY a.created_at DESC, a.id DESC) FROM page a JOIN users u ON u.id = a.author_id), '[]'::json), 'articlesCount', (SELECT COALESCE(sum(c.articles), 0)::bigint FROM article_counts c WHERE c.filter_kind = 'all' AND c.filter_id = 0))::text END;
