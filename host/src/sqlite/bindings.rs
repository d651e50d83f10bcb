//! Host bindings generated from Spin's published WIT (vendored under `/wit`):
//! both SQLite interfaces `spin-sdk` offers, `sqlite` (2.0.0) and `sqlite3`.

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:sqlite;

        world imports {
            import fermyon:spin/sqlite@2.0.0;
            import spin:sqlite/sqlite@3.0.0;
        }
    "#,
    path: ["wit/spin@2.0.0", "../wit/deps/spin-sqlite@3.0.0"],
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/sqlite.connection": crate::sqlite::connection::Connection,
        "spin:sqlite/sqlite.connection": crate::sqlite::connection::Connection,
    },
});

pub use fermyon::spin::sqlite as v2;
pub use spin::sqlite::sqlite as v3;
