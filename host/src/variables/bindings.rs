//! Host bindings generated from Spin's published WIT (vendored under `/wit`).

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:variables;

        world imports {
            import fermyon:spin/variables@2.0.0;
            import wasi:config/store@0.2.0-draft-2024-09-27;
        }
    "#,
    path: ["wit/spin@2.0.0", "../wit/deps/wasi-runtime-config-2024-09-27"],
    imports: { default: async | trappable },
});

pub use fermyon::spin::variables as spin_variables;
pub use wasi::config::store as wasi_config;
