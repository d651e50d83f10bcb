//! The tag list (`/tags`): every tag used by at least one article, once,
//! most used first.

use spin_sdk::http::{Request, Response};

use crate::db;
use crate::error::{Error, ErrorBody};
use crate::models::TagsResponse;
use crate::web::{PathParams, json_text};

#[utoipa::path(
    get, path = "/tags", operation_id = "GetTags", tag = "Tags",
    summary = "Get tags", description = "Distinct tags in use, most used first. Auth not required",
    responses(
        (status = 200, description = "The tags", body = TagsResponse),
        (status = 422, description = "Invalid input", body = ErrorBody),
    )
)]
pub fn list(_req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let db = db::connect()?;
    // A tag's uses are the count its links keep (migrations/0009, summed
    // over its shards), so the list costs the same however many articles
    // there are. Tags whose articles were all deleted count 0 and are left
    // out.
    let rows = db::query(
        &db,
        "SELECT json_build_object('tags', COALESCE(json_agg(name ORDER BY uses DESC, name), '[]'::json))::text \
         FROM (SELECT t.name, sum(c.articles) AS uses FROM tags t \
               JOIN article_counts c ON c.filter_kind = 'tag' AND c.filter_id = t.id \
               GROUP BY t.name HAVING sum(c.articles) > 0) used",
        &[],
    )?;
    let row = db::first_row(&rows).ok_or_else(|| Error::Internal("tags returned no row".into()))?;
    // PostgreSQL built the whole `TagsResponse` document; it is sent as it
    // came.
    json_text(200, db::column(row, 0)?)
}
