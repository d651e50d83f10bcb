//! Releases without restarts: SIGHUP, or `POST /reload` on the admin
//! listener, reloads the manifest and its components.
//!
//! A reload builds the new [`Application`] beside the one serving (manifest
//! read, variables resolved, every component compiled or loaded precompiled,
//! pre-instantiated and configured, its databases checked), then swaps it in
//! at once: requests that start afterwards get the new one, requests already
//! running finish on the one they started on, and the replaced
//! application's instances kept for reuse are dropped ([`Instances::retire`])
//! so its memory is given back when its last request ends. A reload that
//! fails anywhere is refused (logged, counted in `wasmhost_reloads_total`
//! with `result="failure"`, its reason returned to the admin caller) and
//! changes nothing: the serving application serves on. Reloads run one
//! after another; one asked for during another waits for it. Readiness is
//! not affected while a reload runs.
//!
//! [`Instances::retire`]: crate::instances::Instances::retire

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::application::Application;
use crate::instances::ReuseSettings;
use crate::runtime::Runtime;

/// How long a reload waits for each database of the new application to
/// answer before refusing it.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The manifest or a component could not be loaded.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// A service the new application depends on did not answer.
    #[error("{0}")]
    Unreachable(String),
}

/// A successful reload.
#[derive(Debug)]
pub struct Reloaded {
    pub generation: u64,
    pub components: Vec<String>,
    pub elapsed: Duration,
}

/// Holds the serving application and replaces it on reload.
pub struct Reloader {
    runtime: Arc<Runtime>,
    manifest: PathBuf,
    reuse: ReuseSettings,
    serving: ArcSwap<Application>,
    /// Held for the whole of a reload, so that reloads run one at a time:
    /// the generation of the serving application.
    serial: tokio::sync::Mutex<u64>,
}

impl Reloader {
    /// Starts serving `application`, loaded from the manifest at `manifest`,
    /// which reloads read again.
    pub fn new(
        runtime: Arc<Runtime>,
        manifest: PathBuf,
        reuse: ReuseSettings,
        application: Application,
    ) -> Arc<Self> {
        let generation = application.generation;
        application.instances.start_reaper();
        runtime.shared.metrics.application_serving(generation);
        Arc::new(Reloader {
            runtime,
            manifest,
            reuse,
            serving: ArcSwap::from_pointee(application),
            serial: tokio::sync::Mutex::new(generation),
        })
    }

    /// The application that serves new requests.
    pub fn serving(&self) -> Arc<Application> {
        self.serving.load_full()
    }

    /// Loads the manifest and its components again and, if all of it loads,
    /// serves them from now on; `trigger` (`SIGHUP`, `admin`) is logged.
    pub async fn reload(&self, trigger: &'static str) -> Result<Reloaded, ReloadError> {
        let mut serving_generation = self.serial.lock().await;
        let generation = *serving_generation + 1;
        let started = Instant::now();
        tracing::info!(
            trigger,
            manifest = %self.manifest.display(),
            generation,
            "reloading the application"
        );
        let metrics = &self.runtime.shared.metrics;
        let application = match self.load(generation).await {
            Ok(application) => Arc::new(application),
            Err(error) => {
                metrics.reloaded(false);
                tracing::error!(
                    trigger,
                    manifest = %self.manifest.display(),
                    serving_generation = *serving_generation,
                    error = %error,
                    "reload refused; the serving application serves on"
                );
                return Err(error);
            }
        };
        let components = application.components.keys().cloned().collect();
        application.instances.start_reaper();
        let replaced = self.serving.swap(application);
        replaced.instances.retire();
        *serving_generation = generation;
        metrics.reloaded(true);
        metrics.application_serving(generation);
        let elapsed = started.elapsed();
        tracing::info!(
            trigger,
            generation,
            replaced_generation = replaced.generation,
            components = ?components,
            elapsed_ms = elapsed.as_millis() as u64,
            "reloaded: new requests go to the new application, running ones finish on the old"
        );
        Ok(Reloaded {
            generation,
            components,
            elapsed,
        })
    }

    /// The application of `generation`, loaded and with its databases
    /// answering.
    async fn load(&self, generation: u64) -> Result<Application, ReloadError> {
        let runtime = self.runtime.clone();
        let manifest = self.manifest.clone();
        let reuse = self.reuse.clone();
        // Compiling is CPU work of its own: off the threads serving requests.
        let application = tokio::task::spawn_blocking(move || {
            Application::load(&runtime, &manifest, generation, &reuse)
        })
        .await
        .map_err(|e| ReloadError::Invalid(anyhow::anyhow!("loading stopped: {e}")))?
        .map_err(ReloadError::Invalid)?;
        for dependency in &application.dependencies {
            let unreachable = |reason: String| {
                ReloadError::Unreachable(format!(
                    "{} (from {}) {reason}",
                    dependency.name(),
                    dependency.source
                ))
            };
            match tokio::time::timeout(DEPENDENCY_TIMEOUT, dependency.check()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(unreachable(format!("unreachable: {e:#}"))),
                Err(_) => {
                    return Err(unreachable(format!(
                        "did not answer within {}s",
                        DEPENDENCY_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        Ok(application)
    }
}

/// Reloads on every SIGHUP from now on (the handler replaces the default
/// action, which would end the process).
pub fn reload_on_sighup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The outcome is logged and counted by `reload`.
            let _ = reloader.reload("SIGHUP").await;
        }
    });
    Ok(())
}
