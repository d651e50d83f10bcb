//! Comments on articles (`/articles/{slug}/comments...`). Each operation is a
//! single statement that also tells an unknown slug (404) apart.

use spin_sdk::http::{Request, Response};

use crate::auth::caller::{AuthUser, existing_viewer};
use crate::db;
use crate::error::{Error, ErrorBody};
use crate::models::{MultipleCommentsResponse, NewCommentRequest, SingleCommentResponse};
use crate::validate::{MAX_COMMENT_BODY_CHARS, Validator};
use crate::web::{PathParams, json_body, json_text, json_text_under, no_content};

/// SQL rendering comment `c` (author `u`) for the viewer `$1`.
fn comment_json() -> String {
    format!(
        "json_build_object('id', c.id, 'createdAt', {created}, 'updatedAt', {updated}, \
                           'body', c.body, 'author', {author})",
        created = db::iso8601("c.created_at"),
        updated = db::iso8601("c.updated_at"),
        author = db::profile_json("u", "$1::bigint"),
    )
}

#[utoipa::path(
    get, path = "/articles/{slug}/comments", operation_id = "GetArticleComments", tag = "Comments",
    summary = "Get comments for an article", description = "Oldest first. Auth is optional",
    params(("slug" = String, Path, description = "Slug of the article that you want to get comments for")),
    responses(
        (status = 200, description = "The article's comments", body = MultipleCommentsResponse),
        (status = 401, description = "Invalid token", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security((), ("Token" = []))
)]
pub fn list(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let user = AuthUser::optional(req)?;
    let slug = params.get("slug")?;
    let db = db::connect()?;
    let viewer = existing_viewer(user, &db)?;
    let rows = db::query(
        &db,
        &format!(
            "SELECT json_build_object('comments', COALESCE(( \
                 SELECT json_agg({comment} ORDER BY c.created_at, c.id) \
                 FROM comments c JOIN users u ON u.id = c.author_id \
                 WHERE c.article_id = a.id), '[]'::json))::text \
             FROM articles a WHERE a.slug = $2::text",
            comment = comment_json()
        ),
        &[viewer.into(), slug.to_owned().into()],
    )?;
    let row = db::first_row(&rows).ok_or(Error::NotFound("article"))?;
    // The `MultipleCommentsResponse` document, built by PostgreSQL, as it came.
    json_text(200, db::column(row, 0)?)
}

#[utoipa::path(
    post, path = "/articles/{slug}/comments", operation_id = "CreateArticleComment", tag = "Comments",
    summary = "Create a comment for an article", description = "Create a comment for an article. Auth is required",
    params(("slug" = String, Path, description = "Slug of the article that you want to create a comment for")),
    request_body = NewCommentRequest,
    responses(
        (status = 200, description = "The new comment", body = SingleCommentResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such article", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
        (status = 413, description = "Request body larger than 1 MiB", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn create(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let slug = params.get("slug")?;
    let NewCommentRequest { comment } = json_body(req)?;
    let mut validator = Validator::new();
    let body = validator.required("body", comment.body.as_deref());
    validator.max_chars("body", body, MAX_COMMENT_BODY_CHARS);
    validator.finish()?;
    let body = body.ok_or_else(|| Error::Internal("comment body missing".into()))?;

    let db = db::connect()?;
    let rows = db::query(
        &db,
        &format!(
            "WITH c AS ( \
               INSERT INTO comments (article_id, author_id, body) \
               SELECT a.id, $1::bigint, $3::text FROM articles a WHERE a.slug = $2::text \
               RETURNING id, author_id, body, created_at, updated_at) \
             SELECT {comment}::text FROM c JOIN users u ON u.id = c.author_id",
            comment = comment_json()
        ),
        &[
            caller.id.into(),
            slug.to_owned().into(),
            body.to_owned().into(),
        ],
    )?;
    let row = db::first_row(&rows).ok_or(Error::NotFound("article"))?;
    let comment: String = db::column(row, 0)?;
    json_text_under(200, "comment", &comment)
}

#[utoipa::path(
    delete, path = "/articles/{slug}/comments/{id}", operation_id = "DeleteArticleComment", tag = "Comments",
    summary = "Delete a comment for an article", description = "Delete a comment for an article. Auth is required; only the comment's author may.",
    params(
        ("slug" = String, Path, description = "Slug of the article that you want to delete a comment for"),
        ("id" = i64, Path, description = "ID of the comment you want to delete"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not the comment's author", body = ErrorBody),
        (status = 404, description = "No such article or comment", body = ErrorBody),
        (status = 422, description = "The id is not an integer", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn delete(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let slug = params.get("slug")?;
    let id: i64 = params
        .get("id")?
        .parse()
        .map_err(|_| Error::invalid("id", "must be an integer"))?;
    let db = db::connect()?;
    let rows = db::query(
        &db,
        "WITH target AS (SELECT c.id, c.author_id FROM comments c \
                         JOIN articles a ON a.id = c.article_id \
                         WHERE a.slug = $2::text AND c.id = $3::bigint), \
         deleted AS (DELETE FROM comments c USING target \
                     WHERE c.id = target.id AND target.author_id = $1::bigint) \
         SELECT target.author_id = $1::bigint FROM target",
        &[caller.id.into(), slug.to_owned().into(), id.into()],
    )?;
    let row = db::first_row(&rows).ok_or(Error::NotFound("comment"))?;
    let is_author: bool = db::column(row, 0)?;
    if !is_author {
        caller.ensure_exists(&db)?;
        return Err(Error::Forbidden("comment"));
    }
    Ok(no_content())
}
