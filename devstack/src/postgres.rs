//! PostgreSQL for the stack and for tests.
//!
//! [`PostgresCluster`] is a private cluster run from the locally installed
//! server binaries (`installed`), on its own data directory and port, as a
//! child process. [`ScratchDatabase`] is a uniquely named database with its
//! own roles on an existing server, for tests that need a fresh schema; it is
//! dropped on Drop. [`test_database_url`] decides which server the tests use:
//! `TEST_DATABASE_URL`, a container started with `testcontainers`, or the
//! local server. All of them speak SQL through [`psql`].
//!
//! The parts know each other only through their siblings' paths, never
//! through this module: it only gathers what callers use.

mod cluster;
mod installed;
mod psql;
mod scratch;
mod test_server;

pub use cluster::PostgresCluster;
pub use installed::{server_bin_dir, server_user};
pub use psql::{database_url, psql, psql_file};
pub use scratch::ScratchDatabase;
pub use test_server::{LOCAL_TEST_DATABASE_URL, POSTGRES_IMAGE, test_database_url};
