//! What the `release-fixture` build adds: a second version of this component
//! whose schema has one column more, `articles.revision`, so that a release
//! with a schema change can be rehearsed (devstack/tests/release.rs, with the
//! migrations in devstack/tests/release/). The product's build leaves the
//! column alone and answers exactly as before; everything here is empty or
//! a no-op there.
//!
//! The fixture build writes revision 1 when it creates an article and adds 1
//! when it updates one, reports the stored revision of the article it
//! answers with in the `x-conduit-article-revision` header (none while the
//! column is NULL, as for articles written by the previous version before
//! the backfill), and names itself in every response's `x-conduit-version`
//! header, so a client can tell which version answered.

#[cfg(feature = "release-fixture")]
pub use fixture::*;
#[cfg(not(feature = "release-fixture"))]
pub use product::*;

#[cfg(feature = "release-fixture")]
mod fixture {
    use spin_sdk::http::Response;
    use spin_sdk::pg4::DbValue;

    use crate::db;
    use crate::error::Error;

    /// The header naming the fixture build, and its value: the crate's
    /// version marked as the fixture build.
    const VERSION_HEADER: &str = "x-conduit-version";
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+release-fixture");
    /// The header with an article's stored revision.
    const ARTICLE_REVISION_HEADER: &str = "x-conduit-article-revision";

    /// Appended to an article INSERT's column list and to its RETURNING.
    pub const INSERT_COLUMN: &str = ", revision";
    /// Appended to the INSERT's values, in the column's place.
    pub const INSERT_VALUE: &str = ", 1";
    /// Put in front of an article UPDATE's other assignments (of `a`).
    /// Articles the previous version wrote count as revision 1, as the
    /// backfill sets them.
    pub const UPDATE_ASSIGNMENT: &str = "revision = COALESCE(a.revision, 1) + 1, ";
    /// Appended to the select list of a statement rendering article `a`:
    /// its revision as text, NULL when not known yet.
    pub const SELECT_COLUMN: &str = ", a.revision::text";

    /// `response` with the revision in column `index` of `row` (the column
    /// [`SELECT_COLUMN`] added), when it is not NULL.
    pub fn with_article_revision(
        mut response: Response,
        row: &[DbValue],
        index: usize,
    ) -> Result<Response, Error> {
        if let Some(revision) = db::column::<Option<String>>(row, index)? {
            response.set_header(ARTICLE_REVISION_HEADER, revision);
        }
        Ok(response)
    }

    /// `response` with the version header.
    pub fn with_version(mut response: Response) -> Response {
        response.set_header(VERSION_HEADER, VERSION);
        response
    }
}

/// The product's build: no column, no headers.
#[cfg(not(feature = "release-fixture"))]
mod product {
    use spin_sdk::http::Response;
    use spin_sdk::pg4::DbValue;

    use crate::error::Error;

    pub const INSERT_COLUMN: &str = "";
    pub const INSERT_VALUE: &str = "";
    pub const UPDATE_ASSIGNMENT: &str = "";
    pub const SELECT_COLUMN: &str = "";

    pub fn with_article_revision(
        response: Response,
        _row: &[DbValue],
        _index: usize,
    ) -> Result<Response, Error> {
        Ok(response)
    }

    pub fn with_version(response: Response) -> Response {
        response
    }
}
