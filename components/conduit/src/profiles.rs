//! Profiles and follows (`/profiles/{username}` and `.../follow`).
//!
//! Each operation is one statement: the follow/unfollow is a data-modifying
//! CTE next to the profile lookup, so an unknown username is a 404 without a
//! separate existence check.

use spin_sdk::http::{Request, Response};

use crate::auth::caller::{AuthUser, existing_viewer};
use crate::db;
use crate::error::{Error, ErrorBody};
use crate::models::ProfileResponse;
use crate::web::{PathParams, json_text_under};

fn profile_response(rows: &spin_sdk::pg4::RowSet) -> Result<Response, Error> {
    let row = db::first_row(rows).ok_or(Error::NotFound("profile"))?;
    let profile: String = db::column(row, 0)?;
    json_text_under(200, "profile", &profile)
}

#[utoipa::path(
    get, path = "/profiles/{username}", operation_id = "GetProfileByUsername", tag = "Profile",
    summary = "Get a profile", description = "Get a profile of a user of the system. Auth is optional",
    params(("username" = String, Path, description = "Username of the profile to get")),
    responses(
        (status = 200, description = "The profile", body = ProfileResponse),
        (status = 401, description = "Invalid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security((), ("Token" = []))
)]
pub fn get(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let user = AuthUser::optional(req)?;
    let username = params.get("username")?;
    let db = db::connect()?;
    let viewer = existing_viewer(user, &db)?;
    let rows = db::query(
        &db,
        &format!(
            "SELECT {}::text FROM users u WHERE u.username = $2::text",
            db::profile_json("u", "$1::bigint")
        ),
        &[viewer.into(), username.to_owned().into()],
    )?;
    profile_response(&rows)
}

#[utoipa::path(
    post, path = "/profiles/{username}/follow", operation_id = "FollowUserByUsername", tag = "Profile",
    summary = "Follow a user",
    params(("username" = String, Path, description = "Username of the profile you want to follow")),
    responses(
        (status = 200, description = "The profile, now followed", body = ProfileResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Following yourself", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn follow(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let username = params.get("username")?;
    let db = db::connect()?;
    // Following twice is not an error: ON CONFLICT keeps the existing row.
    // Following yourself and a caller who no longer exists come back as
    // data (nothing is inserted), not as constraint errors.
    let rows = db::query(
        &db,
        "WITH target AS (SELECT id, username, bio, image FROM users WHERE username = $2::text), \
         caller AS (SELECT id FROM users WHERE id = $1::bigint), \
         followed AS (INSERT INTO follows (follower_id, followee_id) \
                      SELECT caller.id, target.id FROM caller, target \
                      WHERE target.id <> caller.id ON CONFLICT DO NOTHING) \
         SELECT json_build_object('username', username, 'bio', bio, 'image', image, \
                                  'following', true)::text, \
                id = $1::bigint, EXISTS (SELECT 1 FROM caller) \
         FROM target",
        &[caller.id.into(), username.to_owned().into()],
    )?;
    if let Some(row) = db::first_row(&rows) {
        let (is_self, caller_exists): (bool, bool) = (db::column(row, 1)?, db::column(row, 2)?);
        if !caller_exists {
            return Err(Error::gone_user());
        }
        if is_self {
            return Err(Error::invalid("username", "you cannot follow yourself"));
        }
    }
    profile_response(&rows)
}

#[utoipa::path(
    delete, path = "/profiles/{username}/follow", operation_id = "UnfollowUserByUsername", tag = "Profile",
    summary = "Unfollow a user",
    params(("username" = String, Path, description = "Username of the profile you want to unfollow")),
    responses(
        (status = 200, description = "The profile, no longer followed", body = ProfileResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn unfollow(req: &Request, params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let username = params.get("username")?;
    let db = db::connect()?;
    // Removing a follow cannot fail for a caller who no longer exists, so
    // that is checked first.
    let caller = caller.ensure_exists(&db)?;
    let rows = db::query(
        &db,
        "WITH target AS (SELECT id, username, bio, image FROM users WHERE username = $2::text), \
         unfollowed AS (DELETE FROM follows f USING target \
                        WHERE f.follower_id = $1::bigint AND f.followee_id = target.id) \
         SELECT json_build_object('username', username, 'bio', bio, 'image', image, \
                                  'following', false)::text FROM target",
        &[caller.id.into(), username.to_owned().into()],
    )?;
    profile_response(&rows)
}
