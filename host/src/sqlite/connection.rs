//! The connection a guest holds: the shared database, and what the last
//! statement run through it left (3.0.0's `last-insert-rowid`, `changes`).

use std::sync::{Arc, Mutex};

pub struct Connection {
    pub(super) database: Arc<Mutex<rusqlite::Connection>>,
    pub(super) last_insert_rowid: i64,
    pub(super) changes: u64,
}
