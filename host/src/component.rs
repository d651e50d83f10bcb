//! What a component's instances are given, resolved from the manifest once
//! at start: what every capability sees of the component it serves.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::manifest::FileMount;
use crate::outbound::AllowedHosts;
use crate::variables::resolve::ComponentVariables;

pub struct ComponentContext {
    pub id: String,
    pub variables: Arc<ComponentVariables>,
    /// Parsed once, shared by every instance's outbound checks.
    pub allowed_hosts: Arc<AllowedHosts>,
    pub files: Vec<FileMount>,
    pub environment: Vec<(String, String)>,
    /// The interfaces the component imports (`spin:postgres/postgres@4.0.0`).
    pub imports: BTreeSet<String>,
    /// The key-value store labels it may open.
    pub key_value_stores: BTreeSet<String>,
    /// The SQLite database labels it may open.
    pub sqlite_databases: BTreeSet<String>,
}

impl ComponentContext {
    /// Whether the component imports `interface`.
    pub fn imports(&self, interface: &str) -> bool {
        self.imports.contains(interface)
    }
}
