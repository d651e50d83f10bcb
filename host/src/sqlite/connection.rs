//! The connection a guest holds: a SQLite connection of its own, taken from
//! the database's idle connections or opened, and what the last statement
//! run through it left (3.0.0's `last-insert-rowid`, `changes`).
//!
//! A transaction a guest begins stays on its connection until it commits,
//! rolls back or drops the connection; other connections, of this instance
//! or of any other, do not see its writes before the commit. A connection
//! dropped inside a transaction is closed, which rolls the transaction
//! back; one outside a transaction goes back to the idle connections.

use std::sync::Arc;

use super::database::Database;

pub struct Connection {
    pub(super) database: Arc<Database>,
    /// `None` only while a statement runs on a blocking thread.
    pub(super) connection: Option<rusqlite::Connection>,
    pub(super) last_insert_rowid: i64,
    pub(super) changes: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.database.release(connection);
        }
    }
}
