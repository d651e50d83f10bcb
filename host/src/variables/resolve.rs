//! Resolving variables: application `[variables]` from the environment and
//! their defaults, component variables rendered from them.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use super::bindings::spin_variables;
use crate::manifest::{Manifest, Template};

/// The environment variable that sets application variable `name`.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Application variables with their values.
#[derive(Debug, Clone)]
pub struct Resolved {
    values: BTreeMap<String, String>,
    secrets: BTreeSet<String>,
}

impl Resolved {
    pub fn resolve(manifest: &Manifest, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut secrets = BTreeSet::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            if decl.secret {
                secrets.insert(name.clone());
            }
            match env(&env_name(name)).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None if decl.required => missing.push(name.clone()),
                None => {}
            }
        }
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|n| format!("`{n}` (set {})", env_name(n)))
                .collect::<Vec<_>>()
                .join(", ");
            bail!(
                "required variable{} not set: {list}",
                if missing.len() > 1 { "s" } else { "" }
            );
        }
        Ok(Resolved { values, secrets })
    }

    pub fn get(&self, name: &str) -> Result<String> {
        match self.values.get(name) {
            Some(v) => Ok(v.clone()),
            None => bail!("variable `{name}` has no value (set {})", env_name(name)),
        }
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.contains(name)
    }

    /// Renders a template that may only use declared application variables.
    pub fn render(&self, manifest: &Manifest, template: &str) -> Result<String> {
        let template = Template::parse(template)?;
        for name in template.references() {
            if !manifest.variables.contains_key(name) {
                bail!("`{{{{ {name} }}}}` refers to an undeclared application variable");
            }
        }
        template.render(|name| self.get(name))
    }
}

/// One component's variables, rendered.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    values: BTreeMap<String, String>,
}

impl ComponentVariables {
    pub fn resolve(manifest: &Manifest, component: &str, app: &Resolved) -> Result<Self> {
        let Some(decl) = manifest.components.get(component) else {
            bail!("no component `{component}`");
        };
        let mut values = BTreeMap::new();
        for (name, template) in &decl.variables {
            let value = app
                .render(manifest, template)
                .map_err(|e| anyhow::anyhow!("component `{component}` variable `{name}`: {e:#}"))?;
            values.insert(name.clone(), value);
        }
        Ok(ComponentVariables { values })
    }

    pub fn values(&self) -> impl Iterator<Item = (&String, &String)> {
        self.values.iter()
    }

    pub fn get(&self, name: &str) -> Result<&String, spin_variables::Error> {
        if crate::manifest::validate_variable_name(name).is_err() {
            return Err(spin_variables::Error::InvalidName(name.to_string()));
        }
        self.values
            .get(name)
            .ok_or_else(|| spin_variables::Error::Undefined(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "v"
[variables]
db_url = { required = true, secret = true }
greeting = { default = "hello" }
optional = {}
[component.c]
source = "c.wasm"
[component.c.variables]
message = "{{ greeting }}, world"
url = "{{db_url}}"
"#;

    fn manifest() -> Manifest {
        Manifest::parse(MANIFEST, Path::new(".")).unwrap()
    }

    #[test]
    fn environment_overrides_default() {
        let m = manifest();
        let env = |k: &str| match k {
            "SPIN_VARIABLE_DB_URL" => Some("postgres://x".to_string()),
            "SPIN_VARIABLE_GREETING" => Some("hi".to_string()),
            _ => None,
        };
        let app = Resolved::resolve(&m, env).unwrap();
        let c = ComponentVariables::resolve(&m, "c", &app).unwrap();
        assert_eq!(c.get("message").unwrap(), "hi, world");
        assert_eq!(c.get("url").unwrap(), "postgres://x");
        assert!(matches!(
            c.get("nope"),
            Err(spin_variables::Error::Undefined(_))
        ));
        assert!(matches!(
            c.get("Bad-Name"),
            Err(spin_variables::Error::InvalidName(_))
        ));
        assert!(app.is_secret("db_url") && !app.is_secret("greeting"));
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = Resolved::resolve(&manifest(), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`db_url`") && err.contains("SPIN_VARIABLE_DB_URL"),
            "{err}"
        );
    }

    #[test]
    fn undeclared_or_valueless_references_fail() {
        let m = manifest();
        let app =
            Resolved::resolve(&m, |k| (k == "SPIN_VARIABLE_DB_URL").then(|| "u".into())).unwrap();
        assert!(app.render(&m, "{{ undeclared }}").is_err());
        assert!(app.render(&m, "{{ optional }}").is_err());
        assert_eq!(app.render(&m, "{{ greeting }}").unwrap(), "hello");
    }
}
