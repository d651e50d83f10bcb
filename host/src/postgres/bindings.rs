//! Host bindings generated from Spin's published WIT (vendored under
//! `/wit`), so the signatures can never drift from what `spin-sdk` compiles
//! against.

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:postgres;

        world imports {
            import spin:postgres/postgres@4.0.0;
        }
    "#,
    path: ["../wit/deps/spin-postgres@4.0.0"],
    imports: { default: async | trappable },
    with: {
        "spin:postgres/postgres.connection": crate::postgres::client::Connection,
    },
});

pub use spin::postgres::postgres::*;
