//! Host bindings generated from Spin's published WIT (vendored under `/wit`).

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:mqtt;

        world imports {
            import fermyon:spin/mqtt@2.0.0;
        }
    "#,
    path: ["wit/spin@2.0.0"],
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/mqtt.connection": crate::mqtt::client::Connection,
    },
});

pub use fermyon::spin::mqtt::*;
