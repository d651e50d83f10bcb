//! The Spin application manifest (`spin.toml`, manifest version 2).
//!
//! Only what a Spin HTTP application needs is modelled: the application's
//! variables, its HTTP triggers and its components. Keys this host does not
//! act on (build settings, other trigger types' options) are accepted and
//! ignored, so the same file works under `spin up`, SpinKube and this host;
//! features whose absence would change behaviour (AI models, remote sources)
//! are rejected at start with a message naming the component.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A parsed and validated manifest, with paths resolved against the
/// manifest's directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub base_dir: PathBuf,
    pub variables: BTreeMap<String, VariableDecl>,
    pub http_triggers: Vec<HttpTrigger>,
    pub components: BTreeMap<String, Component>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The route as written, e.g. `/api/...` or `/users/:id`.
    pub route: String,
    pub component: String,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub source: PathBuf,
    pub files: Vec<FileMount>,
    /// Templates as written; expanded once variables are resolved.
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variable name -> template over application variables.
    pub variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    /// The key-value store labels the component may open.
    pub key_value_stores: Vec<String>,
    /// The SQLite database labels the component may open.
    pub sqlite_databases: Vec<String>,
}

/// A host directory made visible, read-only, to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub source: PathBuf,
    pub destination: String,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawApplication {
    name: String,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: RawRoute,
    component: toml::Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Deserialize)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFile {
    Pattern(String),
    Mapping { source: String, destination: String },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        Self::parse(&text, &base_dir)
            .with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        match raw.spin_manifest_version {
            toml::Value::Integer(2) => {}
            toml::Value::String(ref s) if s == "2" => {}
            other => bail!(
                "spin_manifest_version must be 2 (found {other}); convert the manifest with `spin doctor`"
            ),
        }
        if let Some(kind) = raw.trigger.other.keys().next() {
            bail!("trigger type `{kind}` is not supported: this host serves HTTP triggers only");
        }
        for name in raw.variables.keys() {
            validate_variable_name(name)
                .with_context(|| format!("application variable `{name}`"))?;
        }
        for (name, decl) in &raw.variables {
            if decl.required && decl.default.is_some() {
                bail!("variable `{name}` cannot be both required and have a default");
            }
        }

        let mut components = BTreeMap::new();
        for (id, rc) in raw.component {
            let component = Component::from_raw(&id, rc, base_dir)?;
            components.insert(id, component);
        }

        let mut http_triggers = Vec::new();
        for trigger in raw.trigger.http {
            let component = match trigger.component {
                toml::Value::String(id) => id,
                _ => bail!(
                    "inline component tables in [[trigger.http]] are not supported; declare the component under [component.<id>]"
                ),
            };
            if !components.contains_key(&component) {
                bail!("[[trigger.http]] refers to component `{component}`, which is not defined");
            }
            match trigger.route {
                RawRoute::Path(route) => {
                    if !route.starts_with('/') {
                        bail!("route `{route}` of component `{component}` must start with `/`");
                    }
                    http_triggers.push(HttpTrigger { route, component });
                }
                // A private component is reachable only by service chaining,
                // which this host does not offer: it is simply not routed.
                RawRoute::Private { private: true } => {}
                RawRoute::Private { private: false } => {
                    bail!("route of component `{component}` must be a path or {{ private = true }}")
                }
            }
        }

        Ok(Manifest {
            name: raw.application.name,
            base_dir: base_dir.to_path_buf(),
            variables: raw.variables,
            http_triggers,
            components,
        })
    }
}

impl Component {
    fn from_raw(id: &str, rc: RawComponent, base_dir: &Path) -> Result<Self> {
        let source = match rc.source {
            toml::Value::String(path) => base_dir.join(path),
            _ => bail!(
                "component `{id}`: only local file sources are supported (`source = \"path/to/file.wasm\"`)"
            ),
        };
        if !rc.ai_models.is_empty() {
            bail!("component `{id}`: `ai_models` is not supported by this host");
        }
        for name in rc.variables.keys() {
            validate_variable_name(name)
                .with_context(|| format!("component `{id}` variable `{name}`"))?;
        }
        let files = rc
            .files
            .into_iter()
            .map(|file| FileMount::from_raw(id, file, base_dir))
            .collect::<Result<Vec<_>>>()?;
        Ok(Component {
            id: id.to_string(),
            source,
            files,
            allowed_outbound_hosts: rc.allowed_outbound_hosts,
            variables: rc.variables,
            environment: rc.environment,
            key_value_stores: rc.key_value_stores,
            sqlite_databases: rc.sqlite_databases,
        })
    }
}

impl FileMount {
    fn from_raw(id: &str, file: RawFile, base_dir: &Path) -> Result<Self> {
        match file {
            RawFile::Mapping {
                source,
                destination,
            } => {
                if !destination.starts_with('/') {
                    bail!("component `{id}`: file destination `{destination}` must be absolute");
                }
                Ok(FileMount {
                    source: base_dir.join(source),
                    destination,
                })
            }
            RawFile::Pattern(pattern) => {
                if pattern.contains(['*', '?', '[']) {
                    bail!(
                        "component `{id}`: glob file patterns (`{pattern}`) are not supported; mount a directory with {{ source = \"dir\", destination = \"/dir\" }}"
                    );
                }
                let trimmed = pattern.trim_end_matches('/');
                Ok(FileMount {
                    source: base_dir.join(trimmed),
                    destination: format!("/{}", trimmed.trim_start_matches("./")),
                })
            }
        }
    }
}

/// Spin's rule for variable names: lowercase ASCII letters, digits and
/// underscores, starting with a letter.
pub fn validate_variable_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() => {}
        _ => bail!("variable names must start with a lowercase letter"),
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        bail!("variable names may contain only lowercase letters, digits and underscores");
    }
    Ok(())
}

/// A string with `{{ name }}` references to application variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Variable(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(TemplatePart::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unterminated `{{{{` in `{text}`"))?;
            let name = after[..end].trim();
            validate_variable_name(name)
                .with_context(|| format!("invalid variable reference `{name}` in `{text}`"))?;
            parts.push(TemplatePart::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The application variables this template refers to.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            TemplatePart::Variable(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    pub fn render(&self, lookup: impl Fn(&str) -> Result<String>) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Variable(name) => out.push_str(&lookup(name)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
db_url = { required = true, secret = true }
greeting = { default = "hello" }
[[trigger.http]]
route = "/api/..."
component = "api"
[[trigger.http]]
route = { private = true }
component = "internal"
[component.api]
source = "target/api.wasm"
allowed_outbound_hosts = ["postgres://{{ db_host }}:5432"]
files = [{ source = "static", destination = "/static" }, "assets/"]
[component.api.variables]
url = "{{ db_url }}"
[component.api.build]
command = "cargo build"
[component.internal]
source = "internal.wasm"
"#;

    #[test]
    fn parses_triggers_components_and_variables() {
        let m = Manifest::parse(MANIFEST, Path::new("/app")).unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(
            m.http_triggers,
            vec![HttpTrigger {
                route: "/api/...".into(),
                component: "api".into()
            }]
        );
        let api = &m.components["api"];
        assert_eq!(api.source, Path::new("/app/target/api.wasm"));
        assert_eq!(api.variables["url"], "{{ db_url }}");
        assert_eq!(
            api.files,
            vec![
                FileMount {
                    source: "/app/static".into(),
                    destination: "/static".into()
                },
                FileMount {
                    source: "/app/assets".into(),
                    destination: "/assets".into()
                }
            ]
        );
        assert!(m.variables["db_url"].required && m.variables["db_url"].secret);
        assert_eq!(m.variables["greeting"].default.as_deref(), Some("hello"));
    }

    #[test]
    fn rejects_wrong_version_and_unknown_component() {
        let v1 = MANIFEST.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(Manifest::parse(&v1, Path::new(".")).is_err());
        let bad = MANIFEST.replace("component = \"api\"", "component = \"nope\"");
        let err = Manifest::parse(&bad, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    #[test]
    fn rejects_bad_variable_names() {
        let bad = MANIFEST.replace("greeting =", "Greeting =");
        assert!(Manifest::parse(&bad, Path::new(".")).is_err());
    }

    #[test]
    fn templates_expand_references() {
        let t = Template::parse("postgres://{{db_host}}:{{ db_port }}/x").unwrap();
        assert_eq!(t.references().collect::<Vec<_>>(), ["db_host", "db_port"]);
        let out = t
            .render(|name| Ok(if name == "db_host" { "h" } else { "1" }.to_string()))
            .unwrap();
        assert_eq!(out, "postgres://h:1/x");
        assert!(Template::parse("{{ unterminated").is_err());
        assert!(Template::parse("{{ Bad }}").is_err());
        assert_eq!(
            Template::parse("plain")
                .unwrap()
                .render(|_| unreachable!())
                .unwrap(),
            "plain"
        );
    }
}
