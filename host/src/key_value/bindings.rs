//! Host bindings generated from Spin's published WIT (vendored under `/wit`).

wasmtime::component::bindgen!({
    inline: r#"
        package wasmhost:key-value;

        world imports {
            import fermyon:spin/key-value@2.0.0;
        }
    "#,
    path: ["wit/spin@2.0.0"],
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::key_value::store::Store,
    },
});

pub use fermyon::spin::key_value::*;
