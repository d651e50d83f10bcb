//! Embeds the Swagger UI assets into the component.
//!
//! The assets come from the `swagger-ui-dist` npm package pinned by
//! `package-lock.json` and installed into `node_modules/` by
//! `npm ci --prefix components/docs`; they are never committed. This script
//! copies the files the page needs into `OUT_DIR`, gzips the text ones once
//! (so no request pays for compression), computes an ETag per file and writes
//! `assets.rs`, a table that `src/assets.rs` includes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use flate2::Compression;
use flate2::write::GzEncoder;

/// Files taken from swagger-ui-dist, served under `assets/<version>/`.
/// The bundle's third-party licences and the package's LICENSE and NOTICE
/// travel with it because the component redistributes the code.
const DIST_FILES: &[&str] = &[
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "favicon-32x32.png",
    "favicon-16x16.png",
    "swagger-ui-bundle.js.LICENSE.txt",
    "LICENSE",
    "NOTICE",
];

/// Our own files (in `static/`), served at the top of `/docs/`. Their text may
/// refer to the versioned asset folder as `@SWAGGER_UI_VERSION@`.
const OWN_FILES: &[&str] = &["index.html", "swagger-initializer.js"];

const VERSION_PLACEHOLDER: &str = "@SWAGGER_UI_VERSION@";

fn main() {
    if let Err(message) = run() {
        // A panic would bury the message under a backtrace hint; print it as
        // a cargo error and fail the build.
        println!("cargo::error={message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let dist_dir = manifest_dir.join("node_modules/swagger-ui-dist");
    let lock_file = manifest_dir.join("package-lock.json");

    println!("cargo::rerun-if-changed={}", lock_file.display());
    println!(
        "cargo::rerun-if-changed={}",
        manifest_dir.join("static").display()
    );
    println!(
        "cargo::rerun-if-changed={}",
        dist_dir.join("package.json").display()
    );

    let pinned = pinned_version(&lock_file)?;
    let installed = installed_version(&dist_dir)?;
    if pinned != installed {
        return Err(format!(
            "components/docs/node_modules holds swagger-ui-dist {installed} but package-lock.json \
             pins {pinned}; run `npm ci --prefix components/docs` to install the pinned version"
        ));
    }

    let mut table = String::from("&[\n");
    for name in DIST_FILES {
        let source = dist_dir.join(name);
        println!("cargo::rerun-if-changed={}", source.display());
        let body = fs::read(&source).map_err(|error| missing_assets(&source, &error))?;
        let path = format!("assets/{pinned}/{name}");
        push_entry(&mut table, &out_dir, &path, &body, true)?;
    }
    for name in OWN_FILES {
        let source = manifest_dir.join("static").join(name);
        println!("cargo::rerun-if-changed={}", source.display());
        let text = fs::read_to_string(&source)
            .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
        let body = text.replace(VERSION_PLACEHOLDER, &pinned).into_bytes();
        push_entry(&mut table, &out_dir, name, &body, false)?;
    }
    table.push_str("]\n");

    write_file(&out_dir.join("assets.rs"), table.as_bytes())?;
    write_file(&out_dir.join("swagger_ui_version.txt"), pinned.as_bytes())
}

/// Writes the file (and its gzip form, when that is smaller) to `OUT_DIR`
/// and appends its table entry.
fn push_entry(
    table: &mut String,
    out_dir: &Path,
    path: &str,
    body: &[u8],
    immutable: bool,
) -> Result<(), String> {
    let file_name = path.replace('/', "__");
    let plain = out_dir.join(&file_name);
    write_file(&plain, body)?;

    let compressed = gzip(body)?;
    // Images are already compressed; gzip only pays for text.
    let gzip_path = if compressed.len() + 1024 < body.len() {
        let gzip_file = out_dir.join(format!("{file_name}.gz"));
        write_file(&gzip_file, &compressed)?;
        Some(gzip_file)
    } else {
        None
    };

    let gzip_expr = match gzip_path {
        Some(gzip_file) => format!(
            "Some(include_bytes!({:?}))",
            gzip_file.display().to_string()
        ),
        None => "None".to_owned(),
    };
    writeln!(
        table,
        "    Asset {{ path: {path:?}, body: include_bytes!({plain:?}), gzip: {gzip_expr}, \
         etag: \"\\\"{etag:016x}\\\"\", immutable: {immutable} }},",
        plain = plain.display().to_string(),
        etag = fnv1a(body),
    )
    .map_err(|error| error.to_string())
}

/// The version `package-lock.json` pins, so a stale `node_modules` is caught.
fn pinned_version(lock_file: &Path) -> Result<String, String> {
    let text = fs::read_to_string(lock_file)
        .map_err(|error| format!("cannot read {}: {error}", lock_file.display()))?;
    let lock: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", lock_file.display()))?;
    lock["packages"]["node_modules/swagger-ui-dist"]["version"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} does not pin swagger-ui-dist", lock_file.display()))
}

fn installed_version(dist_dir: &Path) -> Result<String, String> {
    let package_json = dist_dir.join("package.json");
    let text =
        fs::read_to_string(&package_json).map_err(|error| missing_assets(&package_json, &error))?;
    let package: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", package_json.display()))?;
    package["version"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} has no version", package_json.display()))
}

fn missing_assets(path: &Path, error: &std::io::Error) -> String {
    format!(
        "Swagger UI assets are missing ({}: {error}). They are not committed: \
         run `npm ci --prefix components/docs` (from the repository root) to install them, \
         then build again",
        path.display()
    )
}

fn gzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(body).map_err(|error| error.to_string())?;
    encoder.finish().map_err(|error| error.to_string())
}

/// 64-bit FNV-1a: enough to tell two versions of a file apart for an ETag,
/// without pulling a cryptographic hash into the build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), String> {
    fs::write(path, contents).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}
