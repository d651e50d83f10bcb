//! The application: everything a manifest defines, loaded as one unit so
//! that a reload ([`crate::reload`]) can build a new one beside the one
//! serving and swap it in at once.
//!
//! Per application: the routes, the components compiled and
//! pre-instantiated, their variables and allowed hosts, what the
//! capabilities were checked to give each, the services they depend on
//! (for readiness), and the instances kept for reuse. A request reads the
//! serving application once and holds it to its end (an `Arc`), so a reload
//! never changes the application under a running request.
//!
//! Per process, never reloaded: the [`Runtime`] (engine and pooling
//! allocator, linker, the capabilities' pools and stores from the runtime
//! configuration, metrics) and the server's listeners, admission and route
//! limits, all set by flags.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::capability::Dependency;
use crate::instances::{Instances, ReuseSettings};
use crate::manifest::Manifest;
use crate::metrics::LiveApplication;
use crate::routing::Router;
use crate::runtime::{LoadedComponent, LoadedComponents, Runtime};
use crate::variables::resolve::Resolved;

pub struct Application {
    /// 1 for the application loaded at start, one more per reload.
    pub generation: u64,
    /// The manifest's `[application] name`.
    pub name: String,
    pub router: Router,
    pub components: HashMap<String, LoadedComponent>,
    /// The services the components depend on, checked before the
    /// application serves and by readiness.
    pub dependencies: Vec<Dependency>,
    pub instances: Arc<Instances>,
    _live: LiveApplication,
}

impl Application {
    /// Reads the manifest at `path` and loads it ([`Application::from_manifest`]).
    pub fn load(
        runtime: &Runtime,
        path: &Path,
        generation: u64,
        reuse: &ReuseSettings,
    ) -> Result<Self> {
        let manifest = Manifest::load(path)?;
        Self::from_manifest(runtime, &manifest, generation, reuse)
    }

    /// Everything `serve` does for a manifest before it serves: variables
    /// resolved (from `SPIN_VARIABLE_*` as at start), routes built, every
    /// routed component compiled and pre-instantiated, the capabilities
    /// configured for each. Fails, naming the cause, on the first mistake.
    pub fn from_manifest(
        runtime: &Runtime,
        manifest: &Manifest,
        generation: u64,
        reuse: &ReuseSettings,
    ) -> Result<Self> {
        let variables = Resolved::resolve(manifest, |k| std::env::var(k).ok())?;
        let router = Router::build(&manifest.http_triggers)?;
        let LoadedComponents {
            components,
            dependencies,
        } = runtime.load_components(manifest, &variables)?;
        let metrics = runtime.shared.metrics.clone();
        Ok(Application {
            generation,
            name: manifest.name.clone(),
            router,
            components,
            dependencies,
            instances: Instances::new(
                reuse.clone(),
                runtime.settings.max_concurrency,
                metrics.clone(),
            ),
            _live: metrics.application_loaded(),
        })
    }
}
