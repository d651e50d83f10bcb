//! Host bindings generated from Spin's published WIT (vendored under `/wit`).

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:redis;

        world imports {
            import fermyon:spin/redis@2.0.0;
        }
    "#,
    path: ["wit/spin@2.0.0"],
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/redis.connection": crate::redis::client::Connection,
    },
});

pub use fermyon::spin::redis::*;
