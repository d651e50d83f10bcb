//! The tag list (`/tags`): every tag used by at least one article, once,
//! most used first.

use spin_sdk::http::{Request, Response};

use crate::db;
use crate::error::{Error, ErrorBody};
use crate::models::TagsResponse;
use crate::router::PathParams;
use crate::web::json;

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
    // Tags whose articles were all deleted are left out by the join.
    let rows = db::query(
        &db,
        "SELECT json_build_object('tags', COALESCE(json_agg(name ORDER BY uses DESC, name), '[]'::json))::text \
         FROM (SELECT t.name, count(*) AS uses FROM tags t \
               JOIN article_tags at ON at.tag_id = t.id GROUP BY t.name) used",
        &[],
    )?;
    let row = db::first_row(&rows).ok_or_else(|| Error::Internal("tags returned no row".into()))?;
    let tags: TagsResponse = db::json_column(row, 0)?;
    json(200, &tags)
}
