//! Compatibility profiles: where Spin and wasmhost differ in something a
//! component can observe, a profile makes wasmhost behave as that runtime
//! does. Running a test suite under a profile proves that a component's
//! answers do not depend on which runtime serves it.
//!
//! Two differences matter to components today:
//! - how a failed statement is reported: wasmhost gives
//!   `query-error::db-error` with the SQLSTATE and the server's fields; Spin
//!   3.6's outbound PostgreSQL reports errors raised while rows are read
//!   (constraint violations among them) as `query-error::text`, the driver
//!   error's debug rendering and nothing else;
//! - the request body: wasmhost caps it (`--max-body-bytes`, 413); Spin has
//!   no cap of its own and hands the component whatever arrives.

use crate::postgres::client::DbErrorReporting;

/// Which runtime's observable behaviour the host reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compat {
    /// wasmhost's own behaviour.
    #[default]
    #[value(name = "wasmhost")]
    Wasmhost,
    /// Spin 3.6, the runtime inside SpinKube's containerd shim v0.24: every
    /// database error as `query-error::text` worded as Spin words it, and no
    /// request body cap.
    #[value(name = "spin-3.6")]
    Spin36,
}

impl Compat {
    pub fn db_errors(self) -> DbErrorReporting {
        match self {
            Compat::Wasmhost => DbErrorReporting::Structured,
            Compat::Spin36 => DbErrorReporting::SpinText,
        }
    }

    /// The request body cap in force: the configured one, or none at all
    /// under a runtime that has none.
    pub fn max_body_bytes(self, configured: usize) -> usize {
        match self {
            Compat::Wasmhost => configured,
            Compat::Spin36 => usize::MAX,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compat::Wasmhost => "wasmhost",
            Compat::Spin36 => "spin-3.6",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spin_profile_lifts_the_body_cap_and_flattens_errors() {
        assert_eq!(Compat::Wasmhost.max_body_bytes(1024), 1024);
        assert_eq!(Compat::Spin36.max_body_bytes(1024), usize::MAX);
        assert_eq!(Compat::Wasmhost.db_errors(), DbErrorReporting::Structured);
        assert_eq!(Compat::Spin36.db_errors(), DbErrorReporting::SpinText);
        assert_eq!(Compat::default(), Compat::Wasmhost);
    }
}
