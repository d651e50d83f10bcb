//! The one error type every handler returns, rendered as the spec's error body
//! `{"errors": {"<field>": ["<message>", ...]}}` with the matching status.
//!
//! Handlers use `?` and never build error JSON themselves, so every failure -
//! bad input, auth, ownership, missing rows, database trouble - has the same
//! shape. Internal details are written to stderr (the host's log), never sent
//! to the client.

use std::collections::BTreeMap;

use serde::Serialize;
use spin_sdk::http::Response;
use spin_sdk::pg4;
use utoipa::ToSchema;

/// Field name -> messages, as in the spec's `GenericErrorModel`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the request is well-formed HTTP but its content is not acceptable.
    #[error("unprocessable entity: {0:?}")]
    Unprocessable(FieldErrors),
    /// 401: no token, a malformed, tampered or expired token, or bad credentials.
    #[error("unauthorized: {field}: {message}")]
    Unauthorized {
        field: &'static str,
        message: &'static str,
    },
    /// 403: acting on someone else's article or comment.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404: unknown slug, username, comment or route; the field names what.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    /// 413: the request body is larger than the component reads.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 503: the database cannot be reached right now; retrying may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// 500: a defect or an unexpected database answer.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"errors": {"email": ["is invalid"]}}))]
pub struct ErrorBody {
    /// Messages by the name of the field (or area) they concern.
    pub errors: FieldErrors,
}

impl Error {
    /// A 422 with one message on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Unprocessable(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }

    /// The 401 for a valid token whose user no longer exists.
    pub fn gone_user() -> Self {
        Error::Unauthorized {
            field: "token",
            message: "refers to a user that no longer exists",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Unprocessable(_) => 422,
            Error::Unauthorized { .. } => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::PayloadTooLarge { .. } => 413,
            Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let one = |field: &str, message: &str| {
            BTreeMap::from([(field.to_owned(), vec![message.to_owned()])])
        };
        let errors = match self {
            Error::Unprocessable(fields) => fields.clone(),
            Error::Unauthorized { field, message } => one(field, message),
            Error::Forbidden(field) => one(field, "is not yours to change"),
            Error::NotFound(field) => one(field, "not found"),
            Error::MethodNotAllowed { .. } => one("method", "is not allowed on this path"),
            Error::PayloadTooLarge { limit } => {
                one("body", &format!("request body exceeds {limit} bytes"))
            }
            Error::Unavailable(_) => one("body", "the database is unavailable, retry later"),
            Error::Internal(_) => one("body", "internal server error"),
        };
        ErrorBody { errors }
    }

    pub fn into_response(self) -> Response {
        if let Error::Internal(detail) | Error::Unavailable(detail) = &self {
            eprintln!("conduit: {}: {detail}", self.status());
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut builder = Response::builder();
        builder
            .status(self.status())
            .header("content-type", "application/json");
        if let Error::MethodNotAllowed { allow } = &self {
            builder.header("allow", allow.as_str());
        }
        if let Error::Unavailable(_) = &self {
            builder.header("retry-after", "1");
        }
        builder.body(body).build()
    }
}

/// SQLSTATE for unique_violation.
const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE for foreign_key_violation: a row we point at vanished meanwhile.
const FOREIGN_KEY_VIOLATION: &str = "23503";
/// SQLSTATE for check_violation.
const CHECK_VIOLATION: &str = "23514";

/// Foreign keys from a row the caller writes to the caller's own user row
/// (PostgreSQL's default names for the `REFERENCES users` columns in
/// `migrations/`).
const CALLER_FOREIGN_KEYS: &[&str] = &[
    "articles_author_id_fkey",
    "comments_author_id_fkey",
    "favorites_user_id_fkey",
    "follows_follower_id_fkey",
];

/// The parts of a PostgreSQL error the API branches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFailure {
    pub code: String,
    /// Everything the server said, joined, to find the constraint's name in.
    pub text: String,
}

impl DbFailure {
    fn mentions(&self, constraint: &str) -> bool {
        self.text.contains(constraint)
    }

    /// Recognises a constraint violation in an error that came only as text.
    ///
    /// Spin 3.6 reports errors raised while a statement's rows are read, which
    /// is where INSERT/UPDATE ... RETURNING fails on a constraint, as
    /// `query-error::text` holding the driver's rendering of the server's
    /// message (`db error: ERROR: duplicate key value violates unique
    /// constraint "users_username_key" ...`) and no SQLSTATE. The server's
    /// messages name the kind of constraint, which gives the SQLSTATE back.
    pub fn from_text(text: &str) -> Option<DbFailure> {
        const MESSAGES: &[(&str, &str)] = &[
            (
                "duplicate key value violates unique constraint",
                UNIQUE_VIOLATION,
            ),
            ("violates foreign key constraint", FOREIGN_KEY_VIOLATION),
            ("violates check constraint", CHECK_VIOLATION),
        ];
        MESSAGES
            .iter()
            .find(|(message, _)| text.contains(message))
            .map(|(_, code)| DbFailure {
                code: (*code).to_owned(),
                text: text.to_owned(),
            })
    }
}

/// Whether a text-only query error says the connection was lost (the
/// driver's `Closed` and `Io` kinds, in their display and debug renderings):
/// that is the database being unavailable, not a defect.
fn is_lost_connection(text: &str) -> bool {
    [
        "kind: Closed",
        "kind: Io",
        "connection closed",
        "error communicating with the server",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

/// Maps a constraint violation to the API error it means. The constraint
/// names are those of `migrations/`.
pub fn from_db_failure(failure: &DbFailure) -> Error {
    match failure.code.as_str() {
        UNIQUE_VIOLATION if failure.mentions("users_username_key") => {
            Error::invalid("username", "has already been taken")
        }
        UNIQUE_VIOLATION if failure.mentions("users_email_key") => {
            Error::invalid("email", "has already been taken")
        }
        CHECK_VIOLATION if failure.mentions("follows_not_self") => {
            Error::invalid("username", "you cannot follow yourself")
        }
        CHECK_VIOLATION if failure.mentions("not_blank") => {
            Error::invalid("body", "required fields cannot be blank")
        }
        // The caller's own row is gone (a user deleted while their token is
        // still unexpired): the token no longer identifies anyone.
        FOREIGN_KEY_VIOLATION if CALLER_FOREIGN_KEYS.iter().any(|key| failure.mentions(key)) => {
            Error::gone_user()
        }
        FOREIGN_KEY_VIOLATION => Error::NotFound("body"),
        _ => Error::Internal(format!("database error {}: {}", failure.code, failure.text)),
    }
}

impl From<pg4::Error> for Error {
    fn from(error: pg4::Error) -> Self {
        match error {
            pg4::Error::Decode(detail) => Error::Internal(format!("decoding a row: {detail}")),
            pg4::Error::PgError(inner) => inner.into(),
        }
    }
}

impl From<pg4::PgError> for Error {
    fn from(error: pg4::PgError) -> Self {
        match error {
            pg4::PgError::QueryFailed(pg4::QueryError::DbError(db)) => {
                let mut text = format!("{} {}", db.as_text, db.message);
                if let Some(detail) = &db.detail {
                    text.push(' ');
                    text.push_str(detail);
                }
                for (key, value) in &db.extras {
                    text.push_str(&format!(" {key}={value}"));
                }
                from_db_failure(&DbFailure {
                    code: db.code,
                    text,
                })
            }
            pg4::PgError::QueryFailed(pg4::QueryError::Text(text)) => {
                match DbFailure::from_text(&text) {
                    Some(failure) => from_db_failure(&failure),
                    None if is_lost_connection(&text) => Error::Unavailable(text),
                    None => Error::Internal(format!("database error: {text}")),
                }
            }
            pg4::PgError::ConnectionFailed(detail) => Error::Unavailable(detail),
            other => Error::Internal(format!("{other:?}")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Internal(format!("JSON from the database: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(error: Error) -> (u16, serde_json::Value) {
        let status = error.status();
        let body = serde_json::to_value(error.body()).unwrap();
        (status, body)
    }

    #[test]
    fn unprocessable_renders_field_messages_with_422() {
        let (status, body) = rendered(Error::invalid("email", "is invalid"));
        assert_eq!(status, 422);
        assert_eq!(
            body,
            serde_json::json!({"errors": {"email": ["is invalid"]}})
        );
    }

    #[test]
    fn each_kind_has_its_status_and_the_errors_shape() {
        let cases = [
            (
                Error::Unauthorized {
                    field: "token",
                    message: "is missing",
                },
                401,
                "token",
            ),
            (Error::Forbidden("article"), 403, "article"),
            (Error::NotFound("profile"), 404, "profile"),
            (
                Error::MethodNotAllowed {
                    allow: "GET".into(),
                },
                405,
                "method",
            ),
            (Error::Unavailable("down".into()), 503, "body"),
            (Error::Internal("secret detail".into()), 500, "body"),
        ];
        for (error, status, field) in cases {
            let (got_status, body) = rendered(error);
            assert_eq!(got_status, status);
            let messages = body["errors"][field].as_array().expect("field messages");
            assert_eq!(messages.len(), 1);
        }
    }

    #[test]
    fn internal_details_are_not_sent_to_the_client() {
        let (_, body) = rendered(Error::Internal("password=hunter2".into()));
        assert!(!body.to_string().contains("hunter2"));
    }

    #[test]
    fn unique_violations_name_the_taken_field() {
        let username = DbFailure {
            code: "23505".into(),
            text: "duplicate key value violates unique constraint \"users_username_key\"".into(),
        };
        let (status, body) = rendered(from_db_failure(&username));
        assert_eq!(status, 422);
        assert_eq!(
            body,
            serde_json::json!({"errors": {"username": ["has already been taken"]}})
        );

        let email = DbFailure {
            code: "23505".into(),
            text: "duplicate key value violates unique constraint \"users_email_key\"".into(),
        };
        let (_, body) = rendered(from_db_failure(&email));
        assert_eq!(
            body,
            serde_json::json!({"errors": {"email": ["has already been taken"]}})
        );
    }

    #[test]
    fn writes_by_a_deleted_user_are_unauthorized_and_vanished_targets_not_found() {
        let author_gone = DbFailure {
            code: "23503".into(),
            text: "insert or update on table \"articles\" violates foreign key constraint \"articles_author_id_fkey\"".into(),
        };
        assert_eq!(from_db_failure(&author_gone).status(), 401);
        let article_gone = DbFailure {
            code: "23503".into(),
            text: "insert or update on table \"favorites\" violates foreign key constraint \"favorites_article_id_fkey\"".into(),
        };
        assert_eq!(from_db_failure(&article_gone).status(), 404);
    }

    /// Spin 3.6's text for a unique violation: the driver error converted to
    /// `anyhow::Error` and rendered with `{:?}`.
    const SPIN_UNIQUE_USERNAME: &str = "db error: ERROR: duplicate key value violates unique constraint \"users_username_key\"\nDETAIL: Key (username)=(jake) already exists.\n\nCaused by:\n    ERROR: duplicate key value violates unique constraint \"users_username_key\"\n    DETAIL: Key (username)=(jake) already exists.";

    fn text_error(text: &str) -> Error {
        pg4::PgError::QueryFailed(pg4::QueryError::Text(text.into())).into()
    }

    #[test]
    fn text_only_errors_map_like_their_sqlstate() {
        let (status, body) = rendered(text_error(SPIN_UNIQUE_USERNAME));
        assert_eq!(status, 422);
        assert_eq!(
            body,
            serde_json::json!({"errors": {"username": ["has already been taken"]}})
        );
        let email = SPIN_UNIQUE_USERNAME.replace("users_username_key", "users_email_key");
        assert_eq!(
            rendered(text_error(&email)).1,
            serde_json::json!({"errors": {"email": ["has already been taken"]}})
        );
        let self_follow = "db error: ERROR: new row for relation \"follows\" violates check constraint \"follows_not_self\"";
        assert_eq!(text_error(self_follow).status(), 422);
        let author_gone = "db error: ERROR: insert or update on table \"comments\" violates foreign key constraint \"comments_author_id_fkey\"";
        assert_eq!(text_error(author_gone).status(), 401);
        let article_gone = "db error: ERROR: insert or update on table \"favorites\" violates foreign key constraint \"favorites_article_id_fkey\"";
        assert_eq!(text_error(article_gone).status(), 404);
    }

    #[test]
    fn text_only_errors_of_a_lost_connection_are_unavailable() {
        assert_eq!(
            text_error("Error { kind: Closed, cause: None }").status(),
            503
        );
        assert_eq!(text_error("connection closed").status(), 503);
        assert_eq!(
            text_error("db error: ERROR: syntax error at or near \"SELEC\"").status(),
            500
        );
    }

    #[test]
    fn oversized_bodies_are_413_with_the_errors_shape() {
        let (status, body) = rendered(Error::PayloadTooLarge { limit: 1024 });
        assert_eq!(status, 413);
        assert_eq!(
            body,
            serde_json::json!({"errors": {"body": ["request body exceeds 1024 bytes"]}})
        );
    }

    #[test]
    fn unknown_database_errors_are_internal() {
        let failure = DbFailure {
            code: "42P01".into(),
            text: "relation does not exist".into(),
        };
        assert_eq!(from_db_failure(&failure).status(), 500);
    }
}
