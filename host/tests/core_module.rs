//! Applications whose `source` is a core module, as Spin runs them: the
//! test component built for wasm32-wasip1 (wit-bindgen's component type
//! embedded, WASI preview 1 imports) is made a component when it is loaded,
//! through wasmtime's preview 1 adapter, and answers exactly as the
//! component built for wasm32-wasip2 does; a module that exports no HTTP
//! handler is refused at start with the reason.

mod support;

use std::path::{Path, PathBuf};

use support::{
    HostConfig, ScratchDb, fixture_manifest, fixture_wasm, start, start_expecting_failure, text,
    workspace_root,
};

/// The test component built as a core module, by `cargo build --release
/// --target wasm32-wasip1 -p test-app` (the README's test command does).
fn core_module() -> PathBuf {
    let path = workspace_root().join("target/wasm32-wasip1/release/test_app.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --target wasm32-wasip1 -p test-app` first",
        path.display()
    );
    path
}

fn config(db: &ScratchDb, wasm: &Path) -> HostConfig {
    let (host, port) = db.host_port();
    let manifest = fixture_manifest(&[(
        &fixture_wasm().display().to_string(),
        &wasm.display().to_string(),
    )]);
    HostConfig::new(manifest)
        .env("SPIN_VARIABLE_DB_URL", &db.url("disable"))
        .env("SPIN_VARIABLE_DB_HOST", &host)
        .env("SPIN_VARIABLE_DB_PORT", &port.to_string())
}

#[tokio::test]
async fn a_core_module_is_made_a_component_and_answers_as_the_component_does() {
    let module = core_module();
    let bytes = std::fs::read(&module).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\0asm\x01\0\0\0",
        "a core module, not a component"
    );

    let db = ScratchDb::create().await.unwrap();
    let from_module = start(config(&db, &module))
        .await
        .expect("the module's host starts");
    let from_component = start(config(&db, &fixture_wasm()))
        .await
        .expect("the component's host starts");

    // Each exercises other imports: WASI (clocks, random, files), Spin
    // variables, PostgreSQL, the key-value store and SQLite.
    let session = r#"{"connections": 1, "steps": [[0, "SELECT 40 + 2, 'sqlite'"]]}"#;
    let requests = [
        ("GET", "/hello", ""),
        ("POST", "/echo", "a body that comes back"),
        ("GET", "/vars/greeting", ""),
        ("GET", "/read?path=/static/readable.txt", ""),
        ("GET", "/pg/one", ""),
        ("POST", "/sqlite-session/default", session),
        ("GET", "/kv/default/absent", ""),
        ("GET", "/kv/forbidden/key", ""),
        ("GET", "/no/such/route", ""),
    ];
    for (method, path, body) in requests {
        let module_answer = text(method, format!("{}{path}", from_module.base), body).await;
        let component_answer = text(method, format!("{}{path}", from_component.base), body).await;
        assert_eq!(module_answer, component_answer, "{method} {path}");
        assert!(module_answer.0 < 500, "{method} {path}: {module_answer:?}");
    }
}

#[tokio::test]
async fn a_core_module_without_an_http_handler_is_refused_with_the_reason() {
    let db = ScratchDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.wasm");
    // An empty core module: valid WebAssembly, made a component that
    // exports nothing.
    std::fs::write(&bare, b"\0asm\x01\0\0\0").unwrap();
    let log = start_expecting_failure(config(&db, &bare)).unwrap();
    assert!(
        log.contains("component `app` does not export wasi:http/incoming-handler"),
        "{log}"
    );
}
