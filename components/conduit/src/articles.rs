//! Articles, the global list and the feed, and favorites (`/articles...`).
//!
//! Every article the API sends is rendered by `article_json`, one SQL
//! expression that builds an article with its author's profile, its tags in
//! order, its favorite count and the viewer's `favorited`/`following` flags.
//! A list is therefore one statement however many articles it holds (no
//! N+1), and a write is at most the write plus that read (a creation renders
//! the rows it inserts in the same statement).
//!
//! Slugs are `<slugified title>-<id>`: unique even for identical titles,
//! stable while the title is unchanged, and produced inside the INSERT without
//! a racy "is this slug taken?" query.

use spin_sdk::http::{Request, Response};
use spin_sdk::pg4::{Connection, ParameterValue};

use crate::auth::caller::{ANONYMOUS_ID, AuthUser, existing_viewer};
use crate::db;
use crate::error::{Error, ErrorBody};
use crate::models::{
    MultipleArticlesResponse, NewArticleRequest, SingleArticleResponse, UpdateArticleRequest,
};
use crate::release;
use crate::validate::{
    MAX_ARTICLE_BODY_CHARS, MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, Validator, distinct_tags,
};
use crate::web::{
    Page, PathParams, json_body, json_text, json_text_under, no_content, query_pairs, query_value,
};

/// Longest slug prefix taken from a title, in bytes (the prefix is ASCII).
const MAX_SLUG_BASE_BYTES: usize = 80;

/// The title part of a slug: lowercase ASCII letters and digits, every other
/// run of characters collapsed to one `-`, no leading or trailing `-`.
/// Titles with no ASCII letters or digits get `article`.
pub fn slug_base(title: &str) -> String {
    let mut slug = String::with_capacity(title.len().min(MAX_SLUG_BASE_BYTES));
    for c in title.chars() {
        if slug.len() >= MAX_SLUG_BASE_BYTES {
            break;
        }
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let trimmed = slug.trim_end_matches('-');
    if trimmed.is_empty() {
        "article".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Where `article_json` reads an article's tags and favorites from.
#[derive(Debug, Clone, Copy)]
pub struct ArticleSources {
    /// SQL json: the article's tag names, sorted by name.
    pub tags: &'static str,
    /// SQL boolean: whether the viewer `$1` favorited the article.
    pub favorited: &'static str,
    /// SQL bigint: how many users favorited the article.
    pub favorites_count: &'static str,
    /// SQL boolean: whether the viewer `$1` follows the author `u`; `None`
    /// looks it up in `follows`.
    pub following: Option<&'static str>,
}

/// The stored tags and favorites of article `a`: what every read renders.
pub const STORED: ArticleSources = ArticleSources {
    // The names kept on the row (migrations/0010); an article written by a
    // version from before that column has none, and its links are read.
    tags: "COALESCE(to_json(a.tag_list), \
           (SELECT json_agg(t.name ORDER BY t.name) \
            FROM article_tags at JOIN tags t ON t.id = at.tag_id WHERE at.article_id = a.id), \
           '[]'::json)",
    favorited: "EXISTS (SELECT 1 FROM favorites fv \
                WHERE fv.article_id = a.id AND fv.user_id = $1::bigint)",
    favorites_count: "(SELECT count(*) FROM favorites fv WHERE fv.article_id = a.id)",
    following: None,
};

/// The stored articles of the feed: every author on its page is one the
/// viewer follows, in the statement's own snapshot.
const FEED: ArticleSources = ArticleSources {
    following: Some("true"),
    ..STORED
};

/// SQL rendering article `a` (author `u`) as JSON for the viewer whose id is
/// `$1`: the one place the API's article shape is written. Lists leave out
/// the body, as the spec says.
pub fn article_json(include_body: bool, sources: &ArticleSources) -> String {
    let body = if include_body { "'body', a.body, " } else { "" };
    format!(
        "json_build_object(\
            'slug', a.slug, 'title', a.title, 'description', a.description, {body}\
            'tagList', {tags}, \
            'createdAt', {created}, 'updatedAt', {updated}, \
            'favorited', {favorited}, 'favoritesCount', {favorites_count}, \
            'author', {author})",
        tags = sources.tags,
        favorited = sources.favorited,
        favorites_count = sources.favorites_count,
        created = db::iso8601("a.created_at"),
        updated = db::iso8601("a.updated_at"),
        author = match sources.following {
            Some(following) => db::profile_json_following("u", following),
            None => db::profile_json("u", "$1::bigint"),
        },
    )
}

/// Which articles a list shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub tag: Option<String>,
    pub author: Option<String>,
    pub favorited: Option<String>,
    /// Only articles by authors this user follows (the feed).
    pub followed_by: Option<i64>,
}

impl ListFilter {
    fn from_query(pairs: &[(String, String)]) -> ListFilter {
        // An empty value (`?tag=`) filters nothing, like an absent one.
        let value = |name| {
            query_value(pairs, name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        ListFilter {
            tag: value("tag"),
            author: value("author"),
            favorited: value("favorited"),
            followed_by: None,
        }
    }

    /// The filters by a name in use with their values, in the order their
    /// parameters follow `$3`.
    fn by_name(&self) -> impl Iterator<Item = (NameFilter, &str)> {
        [
            (NameFilter::Tag, &self.tag),
            (NameFilter::Author, &self.author),
            (NameFilter::Favorited, &self.favorited),
        ]
        .into_iter()
        .filter_map(|(filter, value)| Some((filter, value.as_deref()?)))
    }
}

/// A filter by a name (`?tag=`, `?author=`, `?favorited=`): its condition
/// and its kept count, written once for the list and the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameFilter {
    Tag,
    Author,
    Favorited,
}

impl NameFilter {
    /// The condition on article `a`, the name being parameter `$n`.
    fn condition(self, n: usize) -> String {
        match self {
            NameFilter::Tag => format!(
                "a.id IN (SELECT at.article_id FROM article_tags at JOIN tags t ON t.id = at.tag_id \
                          WHERE t.name = ${n}::text)"
            ),
            NameFilter::Author => {
                format!("a.author_id = (SELECT id FROM users WHERE username = ${n}::text)")
            }
            NameFilter::Favorited => format!(
                "a.id IN (SELECT fv.article_id FROM favorites fv JOIN users fu ON fu.id = fv.user_id \
                          WHERE fu.username = ${n}::text)"
            ),
        }
    }

    /// Its `filter_kind` in `article_counts` (migrations/0009).
    fn kind(self) -> &'static str {
        match self {
            NameFilter::Tag => "tag",
            NameFilter::Author => "author",
            NameFilter::Favorited => "favorited",
        }
    }

    /// `articlesCount` of a list with this filter alone, the name being
    /// parameter `$n`: the counts kept under the named tag's or user's id.
    fn kept_count(self, n: usize) -> String {
        let filter_id = match self {
            NameFilter::Tag => format!("(SELECT id FROM tags WHERE name = ${n}::text)"),
            NameFilter::Author | NameFilter::Favorited => {
                format!("(SELECT id FROM users WHERE username = ${n}::text)")
            }
        };
        kept_count_sql(self.kind(), &filter_id)
    }
}

/// `articlesCount` of a list with at most one filter: the sum of the
/// counts kept for it (migrations/0009), `filter_kind` and the SQL of its
/// `filter_id` (NULL for an unknown tag or user, which sums to 0).
fn kept_count_sql(filter_kind: &str, filter_id: &str) -> String {
    format!(
        "SELECT COALESCE(sum(c.articles), 0)::bigint FROM article_counts c \
         WHERE c.filter_kind = '{filter_kind}' AND c.filter_id = {filter_id}"
    )
}

/// The columns of a page of the list: what a list shows (no body), so the
/// page is not joined back to articles.
const PAGE_COLUMNS: &str =
    "a.id, a.slug, a.title, a.description, a.created_at, a.updated_at, a.author_id, a.tag_list";

/// The order of every list, newest first.
const NEWEST_FIRST: &str = "ORDER BY a.created_at DESC, a.id DESC";

/// The one statement behind the article list and the feed: the page of
/// articles (newest first) and the total count of matches, as one JSON text.
/// `$1` is the viewer, `$2` the limit, `$3` the offset; each filter appends
/// its own parameter, so only the conditions in use reach the planner.
///
/// The count of a list with no filter or one filter, and of the feed, is
/// read from the counts the writes keep (`article_counts`, a few rows per
/// count), so it costs the same at any table size; combined filters count
/// the matching rows.
pub fn article_list_query(
    viewer: i64,
    page: Page,
    filter: &ListFilter,
) -> (String, Vec<ParameterValue>) {
    // The viewer, the limit, the offset, up to three names and the follower.
    let mut params: Vec<ParameterValue> = Vec::with_capacity(7);
    params.extend([viewer.into(), page.limit.into(), page.offset.into()]);
    // The filters in use, each with its parameter's number.
    let mut applied: Vec<(NameFilter, usize)> = Vec::new();
    for (name_filter, value) in filter.by_name() {
        params.push(value.to_owned().into());
        applied.push((name_filter, params.len()));
    }
    // The page and the count repeat the filter instead of sharing a CTE: a
    // CTE used twice is materialized, and the page would then sort every
    // matching article instead of reading `limit + offset` entries of an
    // index in order.
    let (page_sql, count_sql) = match filter.followed_by {
        None => list_page_and_count(&applied),
        Some(follower) => {
            params.push(follower.into());
            feed_page_and_count(&applied, params.len())
        }
    };
    // A viewer named by a token must still exist (else 401): the statement
    // checks that too, and yields NULL instead of a page for a deleted user,
    // so a list or feed for a signed-in viewer stays one round trip.
    let sql = format!(
        "WITH page AS ({page_sql}) \
         SELECT CASE WHEN $1::bigint = {anonymous} \
                          OR EXISTS (SELECT 1 FROM users WHERE id = $1::bigint) THEN \
           json_build_object(\
             'articles', COALESCE((SELECT json_agg({article} {NEWEST_FIRST}) \
                                   FROM page a JOIN users u ON u.id = a.author_id), '[]'::json), \
             'articlesCount', ({count_sql}))::text END",
        anonymous = ANONYMOUS_ID,
        article = article_json(
            false,
            if filter.followed_by.is_some() {
                &FEED
            } else {
                &STORED
            }
        ),
    );
    (sql, params)
}

/// The conditions of the filters in use joined by AND, the first preceded
/// by `lead`; empty when no filter is in use.
fn conditions_sql(applied: &[(NameFilter, usize)], lead: &str) -> String {
    let mut sql = String::new();
    for (index, (name_filter, n)) in applied.iter().enumerate() {
        sql.push_str(if index == 0 { lead } else { " AND " });
        sql.push_str(&name_filter.condition(*n));
    }
    sql
}

/// The page and the count of the global list.
fn list_page_and_count(applied: &[(NameFilter, usize)]) -> (String, String) {
    let where_clause = conditions_sql(applied, "WHERE ");
    // No counts are kept for combinations of filters (one per combination
    // of values would be far too many rows to keep up to date): those lists
    // count their matching rows.
    let count_sql = match applied {
        [] => kept_count_sql("all", "0"),
        [(name_filter, n)] => name_filter.kept_count(*n),
        _ => format!("SELECT count(*) FROM articles a {where_clause}"),
    };
    let page_sql = format!(
        "SELECT {PAGE_COLUMNS} FROM articles a {where_clause} \
         {NEWEST_FIRST} LIMIT $2::bigint OFFSET $3::bigint"
    );
    (page_sql, count_sql)
}

/// The page and the count of the feed of the follower `$n`: per followed
/// author, the newest `limit + offset` of their articles
/// (articles_author_created_idx, in order, ids and times only), merged, and
/// the page's articles read by id; and the count as the sum
/// of the followed authors' kept counts (per-author index counts when other
/// filters narrow the feed). Both read only the followed authors' entries,
/// never the whole table.
fn feed_page_and_count(applied: &[(NameFilter, usize)], n: usize) -> (String, String) {
    let also = conditions_sql(applied, " AND ");
    let count_sql = if applied.is_empty() {
        format!(
            "SELECT COALESCE(sum(c.articles), 0)::bigint FROM follows f \
             JOIN article_counts c ON c.filter_kind = 'author' AND c.filter_id = f.followee_id \
             WHERE f.follower_id = ${n}::bigint"
        )
    } else {
        format!(
            "SELECT COALESCE(sum(per_author.n), 0)::bigint FROM follows f CROSS JOIN LATERAL \
               (SELECT count(*) AS n FROM articles a \
                WHERE a.author_id = f.followee_id{also}) per_author \
             WHERE f.follower_id = ${n}::bigint"
        )
    };
    // The candidates are only ids and times, read from the index alone;
    // the page's few rows are then read by id, instead of every candidate's
    // columns being fetched and sorted.
    let page_sql = format!(
        "SELECT {PAGE_COLUMNS} FROM \
           (SELECT newest.id FROM follows f CROSS JOIN LATERAL \
              (SELECT a.id, a.created_at FROM articles a \
               WHERE a.author_id = f.followee_id{also} \
               {NEWEST_FIRST} LIMIT $2::bigint + $3::bigint) newest \
            WHERE f.follower_id = ${n}::bigint \
            ORDER BY newest.created_at DESC, newest.id DESC \
            LIMIT $2::bigint OFFSET $3::bigint) page_ids \
         JOIN articles a ON a.id = page_ids.id"
    );
    (page_sql, count_sql)
}

fn list_response(
    db: &Connection,
    viewer: i64,
    page: Page,
    filter: &ListFilter,
) -> Result<Response, Error> {
    let (sql, params) = article_list_query(viewer, page, filter);
    let rows = db::query(db, &sql, &params)?;
    let row = db::first_row(&rows).ok_or_else(|| Error::Internal("list returned no row".into()))?;
    // PostgreSQL built the whole `MultipleArticlesResponse` document; it is
    // sent as it came instead of being parsed and serialized again.
    let document: Option<String> = db::column(row, 0)?;
    json_text(200, document.ok_or_else(Error::gone_user)?)
}

/// Reads one article by slug, as the viewer sees it (the second statement of
/// every article write).
fn article_response(
    db: &Connection,
    viewer: i64,
    slug: &str,
    status: u16,
) -> Result<Response, Error> {
    let rows = db::query(
        db,
        &format!(
            "SELECT {}::text{} FROM articles a JOIN users u ON u.id = a.author_id \
             WHERE a.slug = $2::text",
            article_json(true, &STORED),
            release::SELECT_COLUMN,
        ),
        &[viewer.into(), slug.to_owned().into()],
    )?;
    let row = db::first_row(&rows).ok_or(Error::NotFound("article"))?;
    let article: String = db::column(row, 0)?;
    release::with_article_revision(json_text_under(status, "article", &article)?, row, 1)
}

#[utoipa::path(
    get, path = "/articles", operation_id = "GetArticles", tag = "Articles",
    summary = "Get recent articles globally",
    description = "Most recent articles first, optionally filtered. Auth is optional. `limit` defaults to 20 and is clamped to 1..=100; negative or non-integer `limit`/`offset` are a 422.",
    params(
        ("tag" = Option<String>, Query, description = "Filter by tag"),
        ("author" = Option<String>, Query, description = "Filter by author (username)"),
        ("favorited" = Option<String>, Query, description = "Filter by favorites of a user (username)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "The number of items to skip before starting to collect the result set."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "The numbers of items to return (default 20)."),
    ),
    responses(
        (status = 200, description = "A page of articles, without bodies", body = MultipleArticlesResponse),
        (status = 401, description = "Invalid token", body = ErrorBody),
        (status = 422, description = "Invalid limit or offset", body = ErrorBody),
    ),
    security((), ("Token" = []))
)]
pub fn list(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let user = AuthUser::optional(req)?;
    let pairs = query_pairs(req.query());
    let page = Page::from_query(&pairs)?;
    let filter = ListFilter::from_query(&pairs);
    let db = db::connect()?;
    let viewer = user.map_or(ANONYMOUS_ID, |user| user.id);
    list_response(&db, viewer, page, &filter)
}

#[utoipa::path(
    get, path = "/articles/feed", operation_id = "GetArticlesFeed", tag = "Articles",
    summary = "Get recent articles from users you follow",
    description = "Most recent articles by the users the caller follows. Auth is required. Same `limit`/`offset` rules as the global list.",
    params(
        ("offset" = Option<i64>, Query, minimum = 0, description = "The number of items to skip before starting to collect the result set."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "The numbers of items to return (default 20)."),
    ),
    responses(
        (status = 200, description = "A page of articles, without bodies", body = MultipleArticlesResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Invalid limit or offset", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn feed(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let page = Page::from_query(&query_pairs(req.query()))?;
    let db = db::connect()?;
    let filter = ListFilter {
        followed_by: Some(caller.id),
        ..ListFilter::default()
    };
    list_response(&db, caller.id, page, &filter)
}

#[utoipa::path(
    get, path = "/articles/{slug}", operation_id = "GetArticle", tag = "Articles",
    summary = "Get an article", description = "Get an article. Auth not required",
    params(("slug" = String, Path, description = "Slug of the article to get")),
    responses(
        (status = 200, description = "The article", body = SingleArticleResponse),
        (status = 401, description = "Invalid token", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security((), ("Token" = []))
)]
pub fn get(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let user = AuthUser::optional(req)?;
    let slug = params.get("slug")?;
    let db = db::connect()?;
    let viewer = existing_viewer(user, &db)?;
    article_response(&db, viewer, slug, 200)
}

#[utoipa::path(
    post, path = "/articles", operation_id = "CreateArticle", tag = "Articles",
    summary = "Create an article", description = "Create an article. Auth is required",
    request_body = NewArticleRequest,
    responses(
        (status = 201, description = "The new article", body = SingleArticleResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
        (status = 413, description = "Request body larger than 1 MiB", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn create(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let NewArticleRequest { article } = json_body(req)?;
    let mut validator = Validator::new();
    let title = validator.required("title", article.title.as_deref());
    let description = validator.required("description", article.description.as_deref());
    let body = validator.required("body", article.body.as_deref());
    validator.max_chars("title", title, MAX_TITLE_CHARS);
    validator.max_chars("description", description, MAX_DESCRIPTION_CHARS);
    validator.max_chars("body", body, MAX_ARTICLE_BODY_CHARS);
    let tags = distinct_tags(article.tag_list.as_deref().unwrap_or_default());
    validator.tags(&tags);
    validator.finish()?;
    let (Some(title), Some(description), Some(body)) = (title, description, body) else {
        return Err(Error::Internal(
            "article fields passed validation but are missing".into(),
        ));
    };
    let tags_json = serde_json::to_string(&tags)?;

    let db = db::connect()?;
    // The article, its tags and their links, and the article as the API
    // shows it, in one statement. `tag_ids` (migrations/0008, 0011) creates the
    // tags that do not exist yet without writing or locking the existing
    // ones, and still finds a tag another creation committed a moment ago.
    // The article row keeps its tag names sorted as the API lists them
    // (migrations/0010), so the rendering reads them from what the INSERT
    // returned (a statement does not see its own inserts), with no favorites
    // yet and the author, whom the caller does not follow. The links are
    // written all the same: PostgreSQL runs every data-modifying WITH query
    // to completion whether the rest of the statement reads it or not. The
    // id comes from the identity column's sequence (migrations/0003), named
    // once when the statement is prepared instead of looked up in the
    // catalog on every creation.
    const INSERTED: ArticleSources = ArticleSources {
        tags: "to_json(a.tag_list)",
        favorited: "false",
        favorites_count: "0",
        // Nobody follows themselves (follows_not_self).
        following: Some("false"),
    };
    let rows = db::query(
        &db,
        &format!(
            "WITH input_tags AS ( \
               SELECT value AS name, ordinality::integer AS position \
               FROM json_array_elements_text($6::text::json) WITH ORDINALITY), \
             new_article AS ( \
               INSERT INTO articles (id, slug, author_id, title, description, body, tag_list{revision_column}) \
               SELECT next.id, $2::text || '-' || next.id, $1::bigint, $3::text, $4::text, $5::text, \
                      ARRAY(SELECT name FROM input_tags ORDER BY name){revision_value} \
               FROM (SELECT nextval('articles_id_seq'::regclass) AS id) next \
               RETURNING id, slug, author_id, title, description, body, tag_list, created_at, updated_at{revision_column}), \
             named_tags AS ( \
               SELECT id, name FROM tag_ids(ARRAY(SELECT name FROM input_tags))), \
             linked AS ( \
               INSERT INTO article_tags (article_id, tag_id, position) \
               SELECT na.id, t.id, it.position \
               FROM new_article na CROSS JOIN input_tags it JOIN named_tags t ON t.name = it.name) \
             SELECT {article}::text{revision_select} FROM new_article a JOIN users u ON u.id = a.author_id",
            article = article_json(true, &INSERTED),
            revision_column = release::INSERT_COLUMN,
            revision_value = release::INSERT_VALUE,
            revision_select = release::SELECT_COLUMN,
        ),
        &[
            caller.id.into(),
            slug_base(title).into(),
            title.to_owned().into(),
            description.to_owned().into(),
            body.to_owned().into(),
            tags_json.into(),
        ],
    )?;
    let row =
        db::first_row(&rows).ok_or_else(|| Error::Internal("insert returned no article".into()))?;
    let article: String = db::column(row, 0)?;
    release::with_article_revision(json_text_under(201, "article", &article)?, row, 1)
}

#[utoipa::path(
    put, path = "/articles/{slug}", operation_id = "UpdateArticle", tag = "Articles",
    summary = "Update an article", description = "Update an article. Auth is required; only the author may. A new title gives a new slug.",
    params(("slug" = String, Path, description = "Slug of the article to update")),
    request_body = UpdateArticleRequest,
    responses(
        (status = 200, description = "The updated article", body = SingleArticleResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not the author", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
        (status = 413, description = "Request body larger than 1 MiB", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn update(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let slug = params.get("slug")?;
    let UpdateArticleRequest { article } = json_body(req)?;
    let mut validator = Validator::new();
    validator.not_blank_if_present("title", article.title.as_deref());
    validator.not_blank_if_present("description", article.description.as_deref());
    validator.not_blank_if_present("body", article.body.as_deref());
    validator.max_chars("title", article.title.as_deref(), MAX_TITLE_CHARS);
    validator.max_chars(
        "description",
        article.description.as_deref(),
        MAX_DESCRIPTION_CHARS,
    );
    validator.max_chars("body", article.body.as_deref(), MAX_ARTICLE_BODY_CHARS);
    if article.title.is_none() && article.description.is_none() && article.body.is_none() {
        validator.add("article", "at least one field is required");
    }
    validator.finish()?;

    let new_slug_base = article.title.as_deref().map(slug_base).unwrap_or_default();
    let pair = |value: Option<String>| (value.is_some(), value.unwrap_or_default());
    let (set_title, title) = pair(article.title);
    let (set_description, description) = pair(article.description);
    let (set_body, body) = pair(article.body);

    let db = db::connect()?;
    // One statement tells 404 (no target row) from 403 (someone else's) from
    // success (the new slug), updating only in the last case.
    let rows = db::query(
        &db,
        &format!(
            "WITH target AS (SELECT id, author_id, slug FROM articles WHERE slug = $2::text), \
         updated AS ( \
           UPDATE articles a SET {revision} \
             title = CASE WHEN $3::boolean THEN $4::text ELSE a.title END, \
             slug = CASE WHEN $3::boolean THEN $5::text || '-' || a.id ELSE a.slug END, \
             description = CASE WHEN $6::boolean THEN $7::text ELSE a.description END, \
             body = CASE WHEN $8::boolean THEN $9::text ELSE a.body END, \
             updated_at = now() \
           FROM target WHERE a.id = target.id AND target.author_id = $1::bigint \
           RETURNING a.slug) \
         SELECT target.author_id = $1::bigint, COALESCE((SELECT slug FROM updated), target.slug) \
         FROM target",
            revision = release::UPDATE_ASSIGNMENT,
        ),
        &[
            caller.id.into(),
            slug.to_owned().into(),
            set_title.into(),
            title.into(),
            new_slug_base.into(),
            set_description.into(),
            description.into(),
            set_body.into(),
            body.into(),
        ],
    )?;
    let row = db::first_row(&rows).ok_or(Error::NotFound("article"))?;
    let is_author: bool = db::column(row, 0)?;
    if !is_author {
        // Somebody else's article, unless the caller no longer exists.
        caller.ensure_exists(&db)?;
        return Err(Error::Forbidden("article"));
    }
    let new_slug: String = db::column(row, 1)?;
    article_response(&db, caller.id, &new_slug, 200)
}

#[utoipa::path(
    delete, path = "/articles/{slug}", operation_id = "DeleteArticle", tag = "Articles",
    summary = "Delete an article", description = "Delete an article. Auth is required; only the author may.",
    params(("slug" = String, Path, description = "Slug of the article to delete")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not the author", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn delete(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let slug = params.get("slug")?;
    let db = db::connect()?;
    let rows = db::query(
        &db,
        "WITH target AS (SELECT id, author_id FROM articles WHERE slug = $2::text), \
         deleted AS (DELETE FROM articles a USING target \
                     WHERE a.id = target.id AND target.author_id = $1::bigint) \
         SELECT target.author_id = $1::bigint FROM target",
        &[caller.id.into(), slug.to_owned().into()],
    )?;
    let row = db::first_row(&rows).ok_or(Error::NotFound("article"))?;
    let is_author: bool = db::column(row, 0)?;
    if !is_author {
        caller.ensure_exists(&db)?;
        return Err(Error::Forbidden("article"));
    }
    Ok(no_content())
}

#[utoipa::path(
    post, path = "/articles/{slug}/favorite", operation_id = "CreateArticleFavorite", tag = "Favorites",
    summary = "Favorite an article", description = "Favorite an article. Auth is required",
    params(("slug" = String, Path, description = "Slug of the article that you want to favorite")),
    responses(
        (status = 200, description = "The article, favorited", body = SingleArticleResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn favorite(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let slug = params.get("slug")?;
    let db = db::connect()?;
    db::query(
        &db,
        "INSERT INTO favorites (user_id, article_id) \
         SELECT $1::bigint, id FROM articles WHERE slug = $2::text ON CONFLICT DO NOTHING",
        &[caller.id.into(), slug.to_owned().into()],
    )?;
    article_response(&db, caller.id, slug, 200)
}

#[utoipa::path(
    delete, path = "/articles/{slug}/favorite", operation_id = "DeleteArticleFavorite", tag = "Favorites",
    summary = "Unfavorite an article", description = "Unfavorite an article. Auth is required",
    params(("slug" = String, Path, description = "Slug of the article that you want to unfavorite")),
    responses(
        (status = 200, description = "The article, no longer favorited", body = SingleArticleResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn unfavorite(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let slug = params.get("slug")?;
    let db = db::connect()?;
    // The statement also tells whether the caller still exists: removing a
    // favorite that cannot exist must not look like success to a deleted user.
    let rows = db::query(
        &db,
        "WITH removed AS (DELETE FROM favorites fv USING articles a \
             WHERE fv.article_id = a.id AND a.slug = $2::text AND fv.user_id = $1::bigint) \
         SELECT EXISTS (SELECT 1 FROM users WHERE id = $1::bigint)",
        &[caller.id.into(), slug.to_owned().into()],
    )?;
    let caller_exists: bool = db::column(
        db::first_row(&rows).ok_or_else(|| Error::Internal("unfavorite returned no row".into()))?,
        0,
    )?;
    if !caller_exists {
        return Err(Error::gone_user());
    }
    article_response(&db, caller.id, slug, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_base_is_lowercase_ascii_words_joined_by_hyphens() {
        assert_eq!(
            slug_base("How to train your dragon"),
            "how-to-train-your-dragon"
        );
        assert_eq!(slug_base("  Hello, World!!  "), "hello-world");
        assert_eq!(
            slug_base("Rust 2024 -- what's new?"),
            "rust-2024-what-s-new"
        );
        assert_eq!(slug_base("Crème brûlée"), "cr-me-br-l-e");
    }

    #[test]
    fn slug_base_falls_back_for_titles_without_ascii_words() {
        assert_eq!(slug_base("日本語"), "article");
        assert_eq!(slug_base("!!!"), "article");
    }

    #[test]
    fn slug_base_is_bounded_and_never_ends_with_a_hyphen() {
        let long = "word ".repeat(100);
        let slug = slug_base(&long);
        assert!(slug.len() <= MAX_SLUG_BASE_BYTES);
        assert!(!slug.ends_with('-'));
    }

    #[test]
    fn unfiltered_list_has_no_where_clause_and_three_parameters() {
        let (sql, params) = article_list_query(
            0,
            Page {
                limit: 20,
                offset: 0,
            },
            &ListFilter::default(),
        );
        assert!(!sql.contains("WHERE a.") && !sql.contains("FROM articles a WHERE"));
        assert_eq!(params.len(), 3);
        assert!(!sql.contains("'body'"), "lists leave out the body");
    }

    #[test]
    fn each_filter_adds_its_condition_and_parameter_in_order() {
        let filter = ListFilter {
            tag: Some("dragons".into()),
            author: Some("jake".into()),
            favorited: Some("anna".into()),
            followed_by: Some(7),
        };
        let (sql, params) = article_list_query(
            7,
            Page {
                limit: 5,
                offset: 10,
            },
            &filter,
        );
        assert_eq!(params.len(), 7);
        assert!(sql.contains("t.name = $4::text"));
        assert!(sql.contains("username = $5::text"));
        assert!(sql.contains("fu.username = $6::text"));
        assert!(sql.contains("follower_id = $7::bigint"));
        assert!(matches!(params[3], ParameterValue::Str(ref tag) if tag == "dragons"));
        assert!(matches!(params[1], ParameterValue::Int64(5)));
        assert!(matches!(params[2], ParameterValue::Int64(10)));
    }

    #[test]
    fn lists_with_at_most_one_filter_read_the_kept_counts() {
        let page = Page {
            limit: 20,
            offset: 0,
        };
        let (sql, _) = article_list_query(0, page, &ListFilter::default());
        assert!(sql.contains(&kept_count_sql("all", "0")));
        assert!(
            !sql.contains("count(*) FROM articles"),
            "no count of rows: {sql}"
        );
        let single = [
            (
                ListFilter {
                    tag: Some("dragons".into()),
                    ..ListFilter::default()
                },
                kept_count_sql("tag", "(SELECT id FROM tags WHERE name = $4::text)"),
            ),
            (
                ListFilter {
                    author: Some("jake".into()),
                    ..ListFilter::default()
                },
                kept_count_sql("author", "(SELECT id FROM users WHERE username = $4::text)"),
            ),
            (
                ListFilter {
                    favorited: Some("anna".into()),
                    ..ListFilter::default()
                },
                kept_count_sql(
                    "favorited",
                    "(SELECT id FROM users WHERE username = $4::text)",
                ),
            ),
        ];
        for (filter, kept) in single {
            let (sql, params) = article_list_query(0, page, &filter);
            assert_eq!(params.len(), 4);
            assert!(sql.contains(&kept), "{filter:?} reads {kept}: {sql}");
            assert!(
                !sql.contains("count(*) FROM articles"),
                "{filter:?} counts rows: {sql}"
            );
        }
    }

    #[test]
    fn the_feed_sums_the_kept_counts_of_the_followed_authors() {
        let filter = ListFilter {
            followed_by: Some(7),
            ..ListFilter::default()
        };
        let page = Page {
            limit: 20,
            offset: 0,
        };
        let (sql, _) = article_list_query(7, page, &filter);
        assert!(sql.contains("JOIN article_counts c ON c.filter_kind = 'author'"));
        assert!(!sql.contains("count(*) AS n"), "no count of rows: {sql}");
    }

    #[test]
    fn combined_filters_count_their_rows() {
        let filter = ListFilter {
            tag: Some("dragons".into()),
            author: Some("jake".into()),
            ..ListFilter::default()
        };
        let page = Page {
            limit: 20,
            offset: 0,
        };
        let (sql, _) = article_list_query(0, page, &filter);
        assert!(sql.contains("SELECT count(*) FROM articles a WHERE"));
        assert!(!sql.contains("article_counts"));
    }

    #[test]
    fn empty_filter_values_are_ignored() {
        let filter = ListFilter::from_query(&query_pairs("tag=&author=jake"));
        assert_eq!(filter.tag, None);
        assert_eq!(filter.author.as_deref(), Some("jake"));
    }

    /// The statement in pgbench's form (bench/pgbench/*.sql): parameters as
    /// pgbench variables, and the colons of the timestamp pattern written
    /// `chr(58)`, since pgbench would read `:MI` as a variable.
    fn pgbench_form(sql: &str, variables: &[&str]) -> String {
        let mut sql = sql.replace(
            r#"'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'"#,
            r#"('YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"')"#,
        );
        for (index, name) in variables.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}::", index + 1), &format!(":{name}::"));
        }
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The statement of a bench/pgbench file, without its comments and
    /// `\set` lines.
    fn pgbench_statement(file: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../bench/pgbench")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("bench/pgbench file");
        let statement: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with("--") && !line.starts_with('\\'))
            .collect();
        statement
            .join(" ")
            .trim_end()
            .trim_end_matches(';')
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The benchmark's baselines and plans (bench/pgbench) run exactly the
    /// statements the list and the feed send.
    #[test]
    fn bench_statements_are_the_ones_the_api_sends() {
        let page = Page {
            limit: 20,
            offset: 0,
        };
        let (list, _) = article_list_query(0, page, &ListFilter::default());
        let expected = pgbench_form(&list, &["viewer", "page_limit", "page_offset"]);
        assert_eq!(
            pgbench_statement("article_list.sql"),
            expected,
            "bench/pgbench/article_list.sql is out of step; its statement is now:\n{expected}"
        );
        let feed_filter = ListFilter {
            followed_by: Some(1),
            ..ListFilter::default()
        };
        let (feed, _) = article_list_query(1, page, &feed_filter);
        let expected = pgbench_form(&feed, &["viewer", "page_limit", "page_offset", "viewer"]);
        assert_eq!(
            pgbench_statement("feed.sql"),
            expected,
            "bench/pgbench/feed.sql is out of step; its statement is now:\n{expected}"
        );
    }

    #[test]
    fn single_article_json_includes_the_body() {
        assert!(article_json(true, &STORED).contains("'body', a.body"));
    }
}
