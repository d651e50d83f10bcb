//! Host bindings generated from Spin's published WIT (vendored under `/wit`),
//! so the signatures can never drift from what `spin-sdk` compiles against.

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:host;

        world spin-imports {
            import spin:postgres/postgres@4.0.0;
            import fermyon:spin/variables@2.0.0;
            import wasi:config/store@0.2.0-draft-2024-09-27;
        }
    "#,
    path: [
        "../wit/deps/spin-postgres@4.0.0",
        "wit/spin-variables",
        "../wit/deps/wasi-runtime-config-2024-09-27",
    ],
    imports: { default: async | trappable },
    with: {
        "spin:postgres/postgres.connection": crate::postgres::Connection,
    },
});

pub use fermyon::spin::variables as spin_variables;
pub use spin::postgres::postgres as pg4;
pub use wasi::config::store as wasi_config;
