//! The database connection and small helpers for reading result rows.
//!
//! Every statement is parameterized (`$n` placeholders with explicit casts such
//! as `$1::text`, so the server never has to guess a parameter's type), and
//! rows that carry structured data come back as one JSON text column built by
//! PostgreSQL in the shape of the API's models, which the response carries
//! as it came (parsing and serializing it again in the component was a large
//! share of a one-article read's work). That keeps every endpoint to one or
//! two round trips and relies only on the text, bigint and boolean value
//! types every Spin PostgreSQL host supports.

use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, RowSet};

use crate::error::Error;

/// Opens a connection to the `db_url` Spin variable's database. The host
/// pools the underlying connections, so this is cheap per request.
pub fn connect() -> Result<Connection, Error> {
    let url = spin_sdk::variables::get("db_url")
        .map_err(|error| Error::Internal(format!("variable db_url: {error}")))?;
    Ok(Connection::open(&url)?)
}

pub fn query(db: &Connection, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
    Ok(db.query(sql, params)?)
}

/// The value in column `index` of `row`, decoded.
pub fn column<T: Decode>(row: &[DbValue], index: usize) -> Result<T, Error> {
    let value = row
        .get(index)
        .ok_or_else(|| Error::Internal(format!("result row has no column {index}")))?;
    Ok(T::decode(value)?)
}

/// The first row of a result, if any.
pub fn first_row(rows: &RowSet) -> Option<&[DbValue]> {
    rows.rows.first().map(Vec::as_slice)
}

/// SQL rendering a timestamptz as ISO-8601 UTC with milliseconds and `Z`,
/// e.g. `2016-02-18T03:22:56.637Z`, as the spec's clients expect.
pub fn iso8601(column: &str) -> String {
    format!(r#"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#)
}

/// SQL for a profile JSON object of user alias `user_alias` as seen by the
/// viewer whose id is parameter `viewer_param` (0 for anonymous).
pub fn profile_json(user_alias: &str, viewer_param: &str) -> String {
    profile_json_following(
        user_alias,
        &format!(
            "EXISTS (SELECT 1 FROM follows f \
                WHERE f.follower_id = {viewer_param} AND f.followee_id = {user_alias}.id)"
        ),
    )
}

/// SQL for a profile JSON object of user alias `user_alias` whose
/// `following` is the SQL boolean `following`, for a statement that knows
/// it without looking it up.
pub fn profile_json_following(user_alias: &str, following: &str) -> String {
    format!(
        "json_build_object(\
            'username', {u}.username, 'bio', {u}.bio, 'image', {u}.image, \
            'following', {following})",
        u = user_alias,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_with_milliseconds_and_z() {
        let sql = iso8601("a.created_at");
        assert!(sql.contains("AT TIME ZONE 'UTC'"));
        assert!(sql.contains(r#"SS.MS"Z""#));
    }

    #[test]
    fn profile_json_checks_follows_of_the_viewer() {
        let sql = profile_json("u", "$1::bigint");
        assert!(sql.contains("f.follower_id = $1::bigint AND f.followee_id = u.id"));
    }
}
