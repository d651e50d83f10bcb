//! The caller: the extractors handlers use to require or accept a user
//! (one line per handler), and the checks that the token's user still
//! exists.

use spin_sdk::http::Request;
use spin_sdk::pg4::Connection;

use super::TokenConfig;
use super::token::{TokenError, now_seconds, token_from_header, verify_token};
use crate::db;
use crate::error::Error;

/// The caller, authenticated by a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: i64,
}

impl AuthUser {
    /// Requires a valid token: 401 if it is missing or invalid.
    pub fn required(req: &Request) -> Result<AuthUser, Error> {
        AuthUser::optional(req)?.ok_or(Error::Unauthorized {
            field: "token",
            message: "is missing",
        })
    }

    /// Accepts a missing token (anonymous caller) but not an invalid one: a
    /// client that sends a broken token gets a 401, not silently anonymous data.
    pub fn optional(req: &Request) -> Result<Option<AuthUser>, Error> {
        let Some(header) = req.header("authorization") else {
            return Ok(None);
        };
        let token = header
            .as_str()
            .and_then(token_from_header)
            .ok_or(Error::Unauthorized {
                field: "token",
                message: "must be sent as 'Authorization: Token <jwt>'",
            })?;
        let config = TokenConfig::load()?;
        let claims = verify_token(&config.secret, token, now_seconds())?;
        let id = claims.sub.parse().map_err(|_| TokenError::Malformed)?;
        Ok(Some(AuthUser { id }))
    }

    /// Confirms that the token's user still exists. A token outlives its
    /// user (it is checked without the database), so operations that would
    /// otherwise not notice a deleted user call this: such a token gets 401
    /// everywhere, never a page as somebody who is gone.
    pub fn ensure_exists(self, db: &Connection) -> Result<AuthUser, Error> {
        let rows = db::query(
            db,
            "SELECT 1 FROM users WHERE id = $1::bigint",
            &[self.id.into()],
        )?;
        db::first_row(&rows)
            .map(|_| self)
            .ok_or_else(Error::gone_user)
    }
}

/// The viewer of an operation that also works anonymously: [`ANONYMOUS_ID`]
/// without a token, else the token's user, who must still exist.
pub fn existing_viewer(user: Option<AuthUser>, db: &Connection) -> Result<i64, Error> {
    match user {
        None => Ok(ANONYMOUS_ID),
        Some(user) => Ok(user.ensure_exists(db)?.id),
    }
}

/// The id the SQL uses for "nobody" when no one is logged in: identities start
/// at 1, so no follow or favorite row ever matches it.
pub const ANONYMOUS_ID: i64 = 0;
