//! `fermyon:spin/key-value@2.0.0` for one instance.

use wasmtime::component::Resource;

use super::KeyValueInstance;
use super::bindings::{self as kv, Error};
use super::store::Store;

/// Most stores one instance may hold open at once, as in Spin.
const MAX_OPEN_STORES: usize = 256;

impl KeyValueInstance {
    fn store(&self, handle: &Resource<Store>) -> wasmtime::Result<std::sync::Arc<super::Backend>> {
        Ok(self.table.get(handle)?.backend.clone())
    }
}

impl kv::Host for KeyValueInstance {}

impl kv::HostStore for KeyValueInstance {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<Store>, Error>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        if self.open_stores >= MAX_OPEN_STORES {
            return Ok(Err(Error::StoreTableFull));
        }
        let backend = match self.key_value.open(&label).await {
            None => return Ok(Err(Error::NoSuchStore)),
            Some(Err(e)) => {
                tracing::warn!(component = %self.component.id, store = %label, error = %format!("{e:#}"), "key-value store unavailable");
                return Ok(Err(Error::Other(format!(
                    "store `{label}` unavailable: {e:#}"
                ))));
            }
            Some(Ok(backend)) => backend,
        };
        let handle = self.table.push(Store { backend })?;
        self.open_stores += 1;
        Ok(Ok(handle))
    }

    async fn get(
        &mut self,
        handle: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.store(&handle)?.get(&key).await.map_err(Error::Other))
    }

    async fn set(
        &mut self,
        handle: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .store(&handle)?
            .set(&key, &value)
            .await
            .map_err(Error::Other))
    }

    async fn delete(
        &mut self,
        handle: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .store(&handle)?
            .delete(&key)
            .await
            .map_err(Error::Other))
    }

    async fn exists(
        &mut self,
        handle: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self
            .store(&handle)?
            .exists(&key)
            .await
            .map_err(Error::Other))
    }

    async fn get_keys(
        &mut self,
        handle: Resource<Store>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(self.store(&handle)?.get_keys().await.map_err(Error::Other))
    }

    async fn drop(&mut self, handle: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.open_stores -= 1;
        Ok(())
    }
}
