//! Registration, login, the current user and updating it (`/users`,
//! `/users/login`, `/user`).
//!
//! A taken username or email is decided by the database's unique indexes at
//! INSERT/UPDATE time, never by a separate "does it exist?" query beforehand,
//! so two concurrent registrations of the same name cannot both succeed. The
//! conflict comes back as data, not as an error: runtimes report database
//! errors differently (Spin 3.6 only as text), rows are the same everywhere.

use spin_sdk::http::{Request, Response};
use spin_sdk::pg4::DbValue;

use crate::auth::TokenConfig;
use crate::auth::caller::AuthUser;
use crate::auth::password::{DECOY_HASH, hash_password, verify_password};
use crate::db;
use crate::error::{Error, ErrorBody};
use crate::models::{LoginUserRequest, NewUserRequest, UpdateUserRequest, User, UserResponse};
use crate::validate::{MAX_BIO_CHARS, MAX_IMAGE_CHARS, MAX_PASSWORD_CHARS, Validator};
use crate::web::{PathParams, json, json_body};

/// Columns every user query returns, in the order `user_from_row` reads them.
const USER_COLUMNS: &str = "id, username, email, bio, image";

fn user_from_row(row: &[DbValue], tokens: &TokenConfig) -> Result<User, Error> {
    let id: i64 = db::column(row, 0)?;
    Ok(User {
        username: db::column(row, 1)?,
        email: db::column(row, 2)?,
        bio: db::column(row, 3)?,
        image: db::column(row, 4)?,
        token: tokens.issue(id),
    })
}

fn user_response(status: u16, user: User) -> Result<Response, Error> {
    json(status, &UserResponse { user })
}

fn missing(field: &str) -> Error {
    Error::Internal(format!("{field} passed validation but is missing"))
}

#[utoipa::path(
    post, path = "/users", operation_id = "CreateUser", tag = "User and Authentication",
    description = "Register a new user",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "The new user, with a token", body = UserResponse),
        (status = 422, description = "Invalid input, or username or email already taken", body = ErrorBody),
        (status = 413, description = "Request body larger than 1 MiB", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (the deployment's proxy limits them); retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub fn register(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let NewUserRequest { user } = json_body(req)?;
    let mut validator = Validator::new();
    let username = validator.required("username", user.username.as_deref());
    let email = validator.required("email", user.email.as_deref());
    let password = validator.required("password", user.password.as_deref());
    if let Some(username) = username {
        validator.username(username);
    }
    if let Some(email) = email {
        validator.email(email);
    }
    validator.max_chars("password", password, MAX_PASSWORD_CHARS);
    validator.finish()?;
    let username = username.ok_or_else(|| missing("username"))?;
    let email = email.ok_or_else(|| missing("email"))?;
    let password = password.ok_or_else(|| missing("password"))?;

    let tokens = TokenConfig::load()?;
    let password_hash = hash_password(password)?;
    let db = db::connect()?;
    // DO NOTHING covers both unique indexes (username, lower(email)). When a
    // concurrent registration holds the name, the insert waits for it to
    // commit and then inserts nothing.
    let rows = db::query(
        &db,
        &format!(
            "INSERT INTO users (username, email, password_hash) \
             VALUES ($1::text, $2::text, $3::text) \
             ON CONFLICT DO NOTHING RETURNING {USER_COLUMNS}"
        ),
        &[
            username.to_owned().into(),
            email.to_owned().into(),
            password_hash.into(),
        ],
    )?;
    if let Some(row) = db::first_row(&rows) {
        return user_response(201, user_from_row(row, &tokens)?);
    }
    // Nothing inserted: say which is taken. This statement's snapshot sees
    // the row that won, even one committed a moment ago.
    let rows = db::query(
        &db,
        "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1::text), \
                EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($2::text))",
        &[username.to_owned().into(), email.to_owned().into()],
    )?;
    let row = db::first_row(&rows).ok_or_else(|| missing("conflict check"))?;
    Err(taken(db::column(row, 0)?, db::column(row, 1)?))
}

/// The 422 for a username and/or email that another user holds.
fn taken(username_taken: bool, email_taken: bool) -> Error {
    let mut validator = Validator::new();
    if username_taken {
        validator.add("username", "has already been taken");
    }
    if email_taken {
        validator.add("email", "has already been taken");
    }
    // Neither any more: the user holding them was deleted in between.
    if !username_taken && !email_taken {
        validator.add("user", "conflicted with a concurrent change; retry");
    }
    validator
        .finish()
        .err()
        .unwrap_or_else(|| missing("conflict"))
}

#[utoipa::path(
    post, path = "/users/login", operation_id = "Login", tag = "User and Authentication",
    summary = "Existing user login",
    request_body = LoginUserRequest,
    responses(
        (status = 200, description = "The user, with a fresh token", body = UserResponse),
        (status = 401, description = "Unknown email or wrong password", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
        (status = 413, description = "Request body larger than 1 MiB", body = ErrorBody),
        (status = 429, description = "Too many login attempts from this address (the deployment's proxy limits them); retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub fn login(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let LoginUserRequest { user } = json_body(req)?;
    let mut validator = Validator::new();
    let email = validator.required("email", user.email.as_deref());
    let password = validator.required("password", user.password.as_deref());
    validator.finish()?;
    let email = email.ok_or_else(|| missing("email"))?;
    let password = password.ok_or_else(|| missing("password"))?;

    let tokens = TokenConfig::load()?;
    let db = db::connect()?;
    let rows = db::query(
        &db,
        &format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users \
             WHERE lower(email) = lower($1::text)"
        ),
        &[email.to_owned().into()],
    )?;
    // Back to the pool before the deliberate, CPU-bound hash: a connection
    // held through it would cap concurrent logins at the pool's size.
    drop(db);
    let invalid = Error::Unauthorized {
        field: "email or password",
        message: "is invalid",
    };
    let Some(row) = db::first_row(&rows) else {
        // Same work as a wrong password, so timing does not reveal accounts.
        verify_password(password, DECOY_HASH);
        return Err(invalid);
    };
    let stored_hash: String = db::column(row, 5)?;
    if !verify_password(password, &stored_hash) {
        return Err(invalid);
    }
    user_response(200, user_from_row(row, &tokens)?)
}

#[utoipa::path(
    get, path = "/user", operation_id = "GetCurrentUser", tag = "User and Authentication",
    summary = "Get current user",
    responses(
        (status = 200, description = "The logged-in user, with a fresh token", body = UserResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn current(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let tokens = TokenConfig::load()?;
    let db = db::connect()?;
    let rows = db::query(
        &db,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1::bigint"),
        &[caller.id.into()],
    )?;
    let row = db::first_row(&rows).ok_or_else(Error::gone_user)?;
    user_response(200, user_from_row(row, &tokens)?)
}

#[utoipa::path(
    put, path = "/user", operation_id = "UpdateCurrentUser", tag = "User and Authentication",
    summary = "Update current user",
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The updated user", body = UserResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Invalid input, or username or email already taken", body = ErrorBody),
        (status = 413, description = "Request body larger than 1 MiB", body = ErrorBody),
    ),
    security(("Token" = []))
)]
pub fn update(req: &Request, _params: &PathParams) -> Result<Response, Error> {
    let caller = AuthUser::required(req)?;
    let UpdateUserRequest { user } = json_body(req)?;
    let mut validator = Validator::new();
    validator.not_blank_if_present("username", user.username.as_deref());
    validator.not_blank_if_present("email", user.email.as_deref());
    validator.not_blank_if_present("password", user.password.as_deref());
    if let Some(username) = user.username.as_deref() {
        validator.username(username);
    }
    if let Some(email) = user.email.as_deref() {
        validator.email(email);
    }
    validator.max_chars("password", user.password.as_deref(), MAX_PASSWORD_CHARS);
    validator.max_chars("bio", user.bio.as_deref(), MAX_BIO_CHARS);
    validator.max_chars("image", user.image.as_deref(), MAX_IMAGE_CHARS);
    let nothing_to_change = user.username.is_none()
        && user.email.is_none()
        && user.password.is_none()
        && user.bio.is_none()
        && user.image.is_none();
    if nothing_to_change {
        validator.add("user", "at least one field is required");
    }
    validator.finish()?;

    let tokens = TokenConfig::load()?;
    let password_hash = user.password.as_deref().map(hash_password).transpose()?;
    // Each field is a (change it?, new value) pair, so no NULL parameters are needed.
    let pair = |value: Option<String>| (value.is_some(), value.unwrap_or_default());
    let (set_email, email) = pair(user.email);
    let (set_username, username) = pair(user.username);
    let (set_password, password_hash) = pair(password_hash);
    let (set_bio, bio) = pair(user.bio);
    let (set_image, image) = pair(user.image);

    let db = db::connect()?;
    // `taken` finds another user holding the new username or email, and the
    // update runs only when there is none, so the usual conflict is data. A
    // user committed after this statement's snapshot can still hit the
    // unique index; that error maps to the same 422 (error.rs).
    let rows = db::query(
        &db,
        &format!(
            "WITH taken AS ( \
               SELECT COALESCE(bool_or($4::boolean AND username = $5::text), false) AS username_taken, \
                      COALESCE(bool_or($2::boolean AND lower(email) = lower($3::text)), false) AS email_taken \
               FROM users \
               WHERE id <> $1::bigint \
                 AND (($4::boolean AND username = $5::text) \
                      OR ($2::boolean AND lower(email) = lower($3::text)))), \
             updated AS ( \
               UPDATE users SET \
                 email = CASE WHEN $2::boolean THEN $3::text ELSE email END, \
                 username = CASE WHEN $4::boolean THEN $5::text ELSE username END, \
                 password_hash = CASE WHEN $6::boolean THEN $7::text ELSE password_hash END, \
                 bio = CASE WHEN $8::boolean THEN $9::text ELSE bio END, \
                 image = CASE WHEN $10::boolean THEN $11::text ELSE image END, \
                 updated_at = now() \
               FROM taken WHERE id = $1::bigint AND NOT taken.username_taken AND NOT taken.email_taken \
               RETURNING {USER_COLUMNS}) \
             SELECT taken.username_taken, taken.email_taken, updated.* FROM taken LEFT JOIN updated ON true"
        ),
        &[
            caller.id.into(),
            set_email.into(),
            email.into(),
            set_username.into(),
            username.into(),
            set_password.into(),
            password_hash.into(),
            set_bio.into(),
            bio.into(),
            set_image.into(),
            image.into(),
        ],
    )?;
    let row = db::first_row(&rows).ok_or_else(|| missing("update result"))?;
    let (username_taken, email_taken): (bool, bool) = (db::column(row, 0)?, db::column(row, 1)?);
    if username_taken || email_taken {
        return Err(taken(username_taken, email_taken));
    }
    // No updated row and no conflict: the caller's row is gone.
    let updated = &row[2..];
    if db::column::<Option<i64>>(updated, 0)?.is_none() {
        return Err(Error::gone_user());
    }
    user_response(200, user_from_row(updated, &tokens)?)
}
