//! The JetStream object store buckets that carry files between machines: `refrain-inputs`
//! (what a job needs: uploads and earlier results, put by the orchestrator before the job is
//! published) and `refrain-results` (the WAVs of each attempt, one per variant, put by the
//! node before it reports success). Both live on the server's disk and expire after `nats.max_age_hours`; the
//! orchestrator deletes a job's objects once the job is finished. Reads verify the SHA-256
//! digest the writer stored.

use async_nats::jetstream::object_store::{self, GetErrorKind, ObjectMetadata, ObjectStore};
use async_nats::jetstream::{stream, Context};
use tokio::io::AsyncReadExt;

use crate::{wire, NatsError, Settings};

/// Which bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Inputs,
    Results,
}

impl Bucket {
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Inputs => wire::INPUTS_BUCKET,
            Bucket::Results => wire::RESULTS_BUCKET,
        }
    }
}

/// Both buckets.
#[derive(Clone)]
pub struct Objects {
    inputs: ObjectStore,
    results: ObjectStore,
    chunk: usize,
}

impl Objects {
    /// Opens both buckets, creating those that are missing.
    pub async fn setup(js: &Context, settings: &Settings) -> Result<Objects, NatsError> {
        let open = |bucket: Bucket| async move {
            match js.get_object_store(bucket.name()).await {
                Ok(store) => Ok(store),
                Err(_) => js
                    .create_object_store(object_store::Config {
                        bucket: bucket.name().into(),
                        description: Some(match bucket {
                            Bucket::Inputs => {
                                "Refrain job inputs (uploads, earlier results)".into()
                            }
                            Bucket::Results => "Refrain results, one WAV per attempt".into(),
                        }),
                        max_age: settings.max_age(),
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| NatsError::js(format!("object store {}", bucket.name()), e)),
            }
        };
        Ok(Objects {
            inputs: open(Bucket::Inputs).await?,
            results: open(Bucket::Results).await?,
            chunk: settings.nats.object_chunk_bytes,
        })
    }

    fn store(&self, bucket: Bucket) -> &ObjectStore {
        match bucket {
            Bucket::Inputs => &self.inputs,
            Bucket::Results => &self.results,
        }
    }

    /// Stores `bytes` under `name` (replacing an object of that name).
    pub async fn put(&self, bucket: Bucket, name: &str, bytes: &[u8]) -> Result<(), NatsError> {
        let meta = ObjectMetadata {
            name: name.to_string(),
            chunk_size: Some(self.chunk),
            ..Default::default()
        };
        let mut reader = bytes;
        self.store(bucket)
            .put(meta, &mut reader)
            .await
            .map_err(|e| NatsError::Object {
                bucket: bucket.name().into(),
                name: name.into(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// Reads a whole object (its digest is checked).
    pub async fn get(&self, bucket: Bucket, name: &str) -> Result<Vec<u8>, NatsError> {
        let mut object = match self.store(bucket).get(name).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => {
                return Err(NatsError::ObjectNotFound {
                    bucket: bucket.name().into(),
                    name: name.into(),
                })
            }
            Err(e) => {
                return Err(NatsError::Object {
                    bucket: bucket.name().into(),
                    name: name.into(),
                    message: e.to_string(),
                })
            }
        };
        let mut bytes = Vec::with_capacity(object.info().size);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| NatsError::Object {
                bucket: bucket.name().into(),
                name: name.into(),
                message: e.to_string(),
            })?;
        Ok(bytes)
    }

    /// Deletes an object; one that does not exist is fine.
    pub async fn delete(&self, bucket: Bucket, name: &str) -> Result<(), NatsError> {
        match self.store(bucket).delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(NatsError::Object {
                bucket: bucket.name().into(),
                name: name.into(),
                message: e.to_string(),
            }),
        }
    }
}
