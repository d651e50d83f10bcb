//! Least privilege: the database roles made by the real
//! `migrations/init/init.sql` (the API's role cannot change the schema; the
//! migrations run as the owner), and no secret with a working default in any
//! configuration file.

use std::path::Path;

use anyhow::{Result, ensure};
use devstack::postgres::{psql, psql_file, test_database_url};
use devstack::{project_root, random_hex};

use crate::support::{self, migrate, read_project_file};

/// Replaces whole-word occurrences of `word` (letters, digits and `_` are
/// word characters) in `text`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_word) || after.is_some_and(is_word) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Drops the roles and database of one run, whatever happened.
struct InitRun {
    admin_url: String,
    database: String,
}

impl Drop for InitRun {
    fn drop(&mut self) {
        let name = &self.database;
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-d", &self.admin_url])
            .arg("-c")
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .arg("-c")
            .arg(format!("DROP ROLE IF EXISTS {name}_owner"))
            .arg("-c")
            .arg(format!("DROP ROLE IF EXISTS {name}_app"))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_role_from_init_sql_cannot_change_the_schema_and_migrations_run_as_the_owner()
-> Result<()> {
    let _serial = support::serial().await;
    let admin_url = test_database_url().await?;
    // Unique names, so the run neither touches nor needs a real `conduit`.
    let name = format!("conduit_sec_{}", random_hex(4)?);
    let run = InitRun {
        admin_url: admin_url.clone(),
        database: name.clone(),
    };
    let owner = format!("{name}_owner");
    let app = format!("{name}_app");
    let init = read_project_file("migrations/init/init.sql")?
        .replace("conduit_owner", &owner)
        .replace("conduit_app", &app);
    let init = replace_word(&init, "conduit", &name);
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("init.sql");
    std::fs::write(&script, init)?;
    let owner_password = random_hex(16)?;
    let app_password = random_hex(16)?;
    psql_file(
        &admin_url,
        &script,
        &[
            ("owner_password", &owner_password),
            ("app_password", &app_password),
        ],
    )
    .await?;

    let admin = url::Url::parse(&admin_url)?;
    let url_for = |user: &str, password: &str| -> Result<String> {
        let mut url = admin.clone();
        url.set_path(&format!("/{name}"));
        url.set_username(user)
            .map_err(|_| anyhow::anyhow!("username"))?;
        url.set_password(Some(password))
            .map_err(|_| anyhow::anyhow!("password"))?;
        Ok(url.to_string())
    };
    let owner_url = url_for(&owner, &owner_password)?;
    let app_url = url_for(&app, &app_password)?;
    migrate(&owner_url).await?;

    // Neither role is privileged beyond its job.
    let flags = psql(
        &admin_url,
        &format!(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles \
             WHERE rolname IN ('{owner}', '{app}') ORDER BY rolname"
        ),
    )
    .await?;
    ensure!(
        flags.lines().count() == 2 && flags.lines().all(|line| line.ends_with("|f|f|f|f")),
        "role attributes: {flags}"
    );
    // The migrations' tables belong to the owner.
    let owners = psql(
        &app_url,
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
    )
    .await?;
    ensure!(
        owners.trim() == owner,
        "tables owned by {owners:?}, expected {owner}"
    );

    // The app role does its job (so the refusals below are about privilege,
    // not about a broken connection) ...
    psql(
        &app_url,
        "INSERT INTO tags (name) VALUES ('privilege-check') RETURNING id; \
         SELECT count(*) FROM users; DELETE FROM tags WHERE name = 'privilege-check';",
    )
    .await?;
    // ... and nothing more.
    let mut allowed = Vec::new();
    for statement in [
        "CREATE TABLE intruder (id int)",
        "CREATE TEMP TABLE intruder (id int)",
        "DROP TABLE comments",
        "ALTER TABLE users ADD COLUMN is_admin boolean",
        "ALTER TABLE users DROP CONSTRAINT users_username_key",
        "TRUNCATE users CASCADE",
        "CREATE INDEX intruder_idx ON users (bio)",
        "CREATE VIEW intruder AS SELECT * FROM users",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE SCHEMA intruder",
        "ALTER TABLE users OWNER TO CURRENT_USER",
        "CREATE ROLE intruder",
        "COPY users TO PROGRAM 'true'",
    ] {
        if psql(&app_url, statement).await.is_ok() {
            allowed.push(statement);
        }
    }
    // Granting what it does not own gives nobody anything.
    psql(&app_url, "GRANT SELECT ON users TO PUBLIC").await.ok();
    let public_reads = psql(
        &owner_url,
        "SELECT has_table_privilege('public', 'users', 'SELECT')",
    )
    .await?;
    if public_reads.trim() != "f" {
        allowed.push("GRANT SELECT ON users TO PUBLIC");
    }
    // The migrations' bookkeeping belongs to the owner alone (migration
    // 0007 takes back what the default privileges gave).
    let bookkeeping = psql(
        &owner_url,
        &format!("SELECT has_table_privilege('{app}', 'schema_migrations', 'DELETE')"),
    )
    .await?;
    if bookkeeping.trim() != "f" {
        allowed.push("DELETE FROM schema_migrations");
    }
    // The tables are all still there.
    let tables = psql(
        &owner_url,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
    .await?;
    eprintln!(
        "{} of 13 DDL and privileged statements refused for the API's role; {} tables intact",
        13 - allowed.len(),
        tables.trim()
    );
    drop(run);
    ensure!(
        allowed.is_empty(),
        "the API's role was allowed: {allowed:?}"
    );
    Ok(())
}

/// Whether `value` is one of the placeholders the project uses for "fill
/// this in": empty, `change-me...`, or a reference to something else.
fn is_placeholder(value: &str) -> bool {
    let value = value.trim().trim_matches('"').trim_matches('\'');
    value.is_empty()
        || value.starts_with("change-me")
        || value.starts_with("${")
        || value.starts_with("{{")
        || value.starts_with("$(")
        || value.starts_with('<')
}

fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "DB_URL",
        "DATABASE_URL",
        "PRIVATE_KEY",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// Every file under `dir` with one of `extensions`, recursively.
fn files_under(dir: &Path, extensions: &[&str], out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "node_modules" && name != "target" {
                files_under(&path, extensions, out);
            }
        } else if extensions.iter().any(|ext| name.ends_with(ext)) {
            out.push(path);
        }
    }
}

/// Placeholders in docker/.env.example that nothing refuses yet, so copying
/// the example file gives a working credential. Listed here so the test
/// fails both when a new one appears and when one gets refused (then delete
/// it from this list).
const UNREFUSED_PLACEHOLDERS: &[&str] = &[];

#[test]
fn no_secret_has_a_working_default_in_any_configuration() -> Result<()> {
    let root = project_root();
    let mut problems = Vec::new();

    // spin.toml: every secret variable is required and has no default.
    let spin = read_project_file("spin.toml")?;
    for line in spin.lines().filter(|line| line.contains("secret = true")) {
        if line.contains("default") || !line.contains("required = true") {
            problems.push(format!("spin.toml: {line}"));
        }
    }
    ensure!(
        spin.contains("jwt_secret = { required = true, secret = true }"),
        "spin.toml: jwt_secret"
    );
    ensure!(
        spin.contains("db_url = { required = true, secret = true }"),
        "spin.toml: db_url"
    );

    // docker/.env.example: secrets are placeholders, and each placeholder is
    // refused where it would be used.
    let example = read_project_file("docker/.env.example")?;
    let init_wrapper = read_project_file("docker/postgres/10-conduit-init.sh")?;
    let component_auth = read_project_file("components/conduit/src/auth.rs")?;
    let compose = read_project_file("docker/compose.yaml")?;
    let mut unrefused = Vec::new();
    for line in example
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if !is_secret_name(name) {
            continue;
        }
        if !is_placeholder(value) {
            problems.push(format!(
                "docker/.env.example: {name} has a real-looking value"
            ));
            continue;
        }
        let refused_by_init = init_wrapper.contains(&format!("require_password {name}"));
        // The component refuses the placeholder signing key (proved at run
        // time by the sandbox test); compose must pass JWT_SECRET to it.
        let refused_by_component = name == "JWT_SECRET"
            && compose.contains("SPIN_VARIABLE_JWT_SECRET: ${JWT_SECRET:?")
            && component_auth.contains("starts_with(\"change-me\")");
        if !refused_by_init && !refused_by_component {
            unrefused.push(name.to_owned());
        }
    }
    if unrefused != UNREFUSED_PLACEHOLDERS {
        problems.push(format!(
            "placeholders nothing refuses: {unrefused:?} (known: {UNREFUSED_PLACEHOLDERS:?})"
        ));
    }

    // compose: secrets only from the environment, required (`:?`), never a
    // fallback (`:-`).
    for line in compose.lines() {
        if is_secret_name(line) && line.contains(":-") {
            problems.push(format!(
                "docker/compose.yaml: fallback for a secret: {}",
                line.trim()
            ));
        }
    }

    // Kubernetes, Helm and Terraform: no Secret with literal data, no
    // secret env var with a literal value, no password inside a URL, no
    // sensitive Terraform variable with a default.
    let mut files = Vec::new();
    files_under(
        &root.join("k8s"),
        &[".yaml", ".yml", ".json", ".tpl"],
        &mut files,
    );
    files_under(
        &root.join("terraform"),
        &[".tf", ".tfvars", ".hcl"],
        &mut files,
    );
    files_under(
        &root.join("docker"),
        &[".yaml", ".yml", "Dockerfile"],
        &mut files,
    );
    files.push(root.join("spin.toml"));
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        if text.contains("kind: Secret")
            && (text.contains("stringData:") || text.contains("\ndata:"))
        {
            problems.push(format!("{shown}: a Secret with literal data"));
        }
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || trimmed.starts_with("//") {
                continue;
            }
            // `- name: SPIN_VARIABLE_JWT_SECRET` followed by `value: ...`.
            if let Some(name) = trimmed
                .strip_prefix("- name:")
                .or_else(|| trimmed.strip_prefix("name:"))
                && is_secret_name(name)
                && let Some(next) = lines.get(index + 1)
                && let Some(value) = next.trim().strip_prefix("value:")
                && !is_placeholder(value)
            {
                problems.push(format!(
                    "{shown}:{}: {} has a literal value",
                    index + 2,
                    name.trim()
                ));
            }
            if let Some(at) = trimmed
                .find("postgres://")
                .or_else(|| trimmed.find("postgresql://"))
            {
                let rest = &trimmed[at..];
                let authority = rest.split('/').nth(2).unwrap_or("");
                if let Some((credentials, _)) = authority.rsplit_once('@')
                    && let Some((_, password)) = credentials.split_once(':')
                    && !is_placeholder(password)
                    && !password.contains("${")
                    && !password.contains("$(")
                    && !password.contains("{{")
                    && password != "PASSWORD"
                    && password != "..."
                {
                    problems.push(format!("{shown}:{}: a password inside a URL", index + 1));
                }
            }
        }
        if shown.ends_with(".tf") {
            // A `variable` block marked sensitive must not have a default.
            for block in text.split("variable \"").skip(1) {
                let body = block.split("\n}").next().unwrap_or("");
                if body.contains("sensitive = true") || body.contains("sensitive   = true") {
                    let name = block.split('"').next().unwrap_or("?");
                    // `default = null` (or "") only makes it optional.
                    let working_default = body.lines().any(|line| {
                        let line = line.trim_start();
                        line.starts_with("default")
                            && !line.ends_with("null")
                            && !line.ends_with("\"\"")
                    });
                    if working_default {
                        problems.push(format!("{shown}: sensitive variable {name} has a default"));
                    }
                }
            }
        }
    }
    eprintln!(
        "{} configuration files searched for secret defaults",
        files.len() + 2
    );
    ensure!(
        problems.is_empty(),
        "secrets with working defaults:\n{}",
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn whole_word_replacement_leaves_longer_names_alone() {
    assert_eq!(
        replace_word(
            "\\connect conduit\nconduit_app conduit;'conduit'",
            "conduit",
            "x"
        ),
        "\\connect x\nconduit_app x;'x'"
    );
}
