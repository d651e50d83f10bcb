//! Spin variables: application `[variables]` resolved like Spin's
//! environment provider (`SPIN_VARIABLE_<NAME>`, then the default), and
//! component variables rendered from them. Both variables interfaces Spin
//! offers are served: `fermyon:spin/variables@2.0.0` (what `spin-sdk`'s
//! `variables::get` imports) and `wasi:config/store`.
//!
//! Everything is resolved once at start ([`resolve`]), so a missing required
//! variable stops the process with its name instead of failing requests
//! later.

pub mod bindings;
pub mod resolve;

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};

use crate::capability::{Accessor, Capability};
use crate::component::ComponentContext;
use bindings::{spin_variables, wasi_config};
use resolve::ComponentVariables;

/// The variables capability: every component's variables are resolved at
/// start, so it keeps no state of its own.
pub struct Variables;

/// One instance's view: its component's variables.
pub struct VariablesInstance {
    variables: Arc<ComponentVariables>,
}

impl Capability for Variables {
    type Instance = VariablesInstance;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, VariablesInstance>,
    ) -> Result<()> {
        spin_variables::add_to_linker::<T, HasSelf<VariablesInstance>>(linker, get)?;
        wasi_config::add_to_linker::<T, HasSelf<VariablesInstance>>(linker, get)?;
        Ok(())
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> VariablesInstance {
        VariablesInstance {
            variables: component.variables.clone(),
        }
    }
}

impl spin_variables::Host for VariablesInstance {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<String, spin_variables::Error>> {
        Ok(self.variables.get(&name).cloned())
    }
}

impl wasi_config::Host for VariablesInstance {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(match self.variables.get(&key) {
            Ok(value) => Ok(Some(value.clone())),
            Err(spin_variables::Error::Undefined(_)) => Ok(None),
            Err(e) => Err(wasi_config::Error::Upstream(format!("{e:?}"))),
        })
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(Ok(self
            .variables
            .values()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
