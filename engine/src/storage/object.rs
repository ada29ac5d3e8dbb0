//! A directory under an object-store prefix (`s3://bucket/path/`): the
//! store built from the URL, the options and the environment, and the few
//! operations the engine needs, each retried as `retry.rs` says.
//!
//! How a store is found: `AmazonS3Builder::from_env` reads what AWS tools
//! read from the environment, then the profile of the AWS shared files
//! (`profile.rs`) fills what the environment leaves unset (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, and the container and web-identity
//! credentials), then the options given override it. An option is any key
//! `object_store` knows (`endpoint`, `allow_http`, `region`,
//! `access_key_id`, `secret_access_key`, `timeout`, …), with or without an
//! `s3.` prefix, plus `retry_timeout`, the budget of one request's retries.
//! `gs://` and `az://` work the same when the engine is built with the
//! `gcp` or `azure` feature.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use crate::error::{Error, Result};
use crate::storage::retry::{DEFAULT_RETRY_TIMEOUT, retrying, storage_error};
use crate::storage::{Entry, profile};

/// A directory in an object store: a store and a prefix.
#[derive(Clone)]
pub struct ObjectDir {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket`, for messages.
    root: String,
    prefix: Path,
    budget: Duration,
}

impl std::fmt::Debug for ObjectDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectDir({})", self.display())
    }
}

/// The version of an object that a conditional write replaces.
pub(crate) type Version = UpdateVersion;

/// Why a conditional write did not happen.
#[derive(Debug)]
pub(crate) enum Conflict {
    /// Another writer changed (or created) the object first.
    Lost,
}

/// What a conditional write expects to find.
pub(crate) enum Expect {
    /// No object under the name.
    Absent,
    /// The object at this version.
    Version(Version),
}

impl ObjectDir {
    /// The directory `url` names (`s3://bucket/some/path`), with `options`
    /// over what the environment says.
    pub(crate) fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::Config(format!("'{url}' is not a URL")))?;
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(format!("'{url}' names no bucket")));
        }
        let mut budget = DEFAULT_RETRY_TIMEOUT;
        let mut settings = Vec::new();
        for (key, value) in options {
            let key = key
                .strip_prefix("s3.")
                .or_else(|| key.strip_prefix("storage."))
                .unwrap_or(key);
            if key == "retry_timeout" || key == "retry.timeout" {
                budget = crate::time::parse_duration(value)?;
            } else {
                settings.push((key.to_string(), value.clone()));
            }
        }
        // Retries are ours (reported and counted), not the client's.
        let retry = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let unknown = |key: &str, e: object_store::Error| {
            Error::Config(format!(
                "'{key}' is not an option of {scheme}:// locations: {e}"
            ))
        };
        let built = |e: object_store::Error| Error::Config(format!("cannot use {url}: {e}"));
        // Each store's builder, from the environment, with the options over it.
        macro_rules! configured {
            ($builder:expr, $settings:expr) => {{
                let mut builder = $builder.with_retry(retry);
                for (key, value) in $settings {
                    let parsed = key.parse().map_err(|e| unknown(&key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build().map_err(built)?)
            }};
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => {
                // The shared files' profile under the options.
                let settings: Vec<_> = profile::settings().into_iter().chain(settings).collect();
                configured!(
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket),
                    settings
                )
            }
            #[cfg(feature = "gcp")]
            "gs" => configured!(
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket),
                settings
            ),
            #[cfg(feature = "azure")]
            "az" | "abfs" | "abfss" => configured!(
                object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(bucket),
                settings
            ),
            other => {
                return Err(Error::Config(format!(
                    "'{url}': unknown storage scheme '{other}://'; Brooklet reads and writes \
                     local paths and s3:// (gs:// and az:// when built with the gcp or azure feature)"
                )));
            }
        };
        Ok(ObjectDir {
            store,
            root: format!("{scheme}://{bucket}"),
            prefix: Path::from(path.trim_matches('/')),
            budget,
        })
    }

    /// The store and the URL of its root (`s3://bucket`), for DataFusion.
    pub(crate) fn store(&self) -> (String, Arc<dyn ObjectStore>) {
        (self.root.clone(), Arc::clone(&self.store))
    }

    /// The subdirectory `name`.
    pub(crate) fn join(&self, name: &str) -> Self {
        let mut joined = self.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            joined.prefix = joined.prefix.clone().join(part);
        }
        joined
    }

    /// The URL of the directory.
    pub(crate) fn display(&self) -> String {
        if self.prefix.as_ref().is_empty() {
            format!("{}/", self.root)
        } else {
            format!("{}/{}/", self.root, self.prefix)
        }
    }

    fn key(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }

    fn url_of(&self, name: &str) -> String {
        format!("{}{name}", self.display())
    }

    /// The object `name` and its version, if there is one.
    pub(crate) fn read(&self, name: &str) -> Result<Option<(Bytes, Version)>> {
        let store = Arc::clone(&self.store);
        let key = self.key(name);
        let url = self.url_of(name);
        let answer = retrying("reading", &url, self.budget, || {
            let store = Arc::clone(&store);
            let key = key.clone();
            async move {
                let got = store.get(&key).await?;
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                Ok((got.bytes().await?, version))
            }
        })?;
        match answer {
            Ok(found) => Ok(Some(found)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("read", &url, e)),
        }
    }

    /// Writes `bytes` as the object `name`, replacing any: one PUT, which
    /// object stores make atomic (a reader sees the old object or the new).
    pub(crate) fn write(&self, name: &str, bytes: Bytes) -> Result<()> {
        let url = self.url_of(name);
        self.put(name, bytes, PutMode::Overwrite)?
            .map(|_| ())
            .map_err(|e| storage_error("write", &url, e))
    }

    /// Writes `bytes` as the object `name` only if it is as `expect` says;
    /// the new version, or [`Conflict::Lost`] when another writer came
    /// first.
    pub(crate) fn write_if(
        &self,
        name: &str,
        bytes: Bytes,
        expect: Expect,
    ) -> Result<std::result::Result<Version, Conflict>> {
        let url = self.url_of(name);
        let mode = match expect {
            Expect::Absent => PutMode::Create,
            Expect::Version(version) => PutMode::Update(version),
        };
        match self.put(name, bytes, mode)? {
            Ok(version) => Ok(Ok(version)),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Err(Conflict::Lost)),
            Err(e) => Err(storage_error("write", &url, e)),
        }
    }

    fn put(
        &self,
        name: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<object_store::Result<Version>> {
        let store = Arc::clone(&self.store);
        let key = self.key(name);
        retrying("writing", &self.url_of(name), self.budget, || {
            let store = Arc::clone(&store);
            let key = key.clone();
            let options = PutOptions {
                mode: mode.clone(),
                ..PutOptions::default()
            };
            let payload = PutPayload::from_bytes(bytes.clone());
            async move {
                let put = store.put_opts(&key, payload, options).await?;
                Ok(UpdateVersion {
                    e_tag: put.e_tag,
                    version: put.version,
                })
            }
        })
    }

    /// Removes the object `name` (nothing if it is not there).
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        let store = Arc::clone(&self.store);
        let key = self.key(name);
        let url = self.url_of(name);
        match retrying("removing", &url, self.budget, || {
            let store = Arc::clone(&store);
            let key = key.clone();
            async move { store.delete(&key).await }
        })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error("remove", &url, e)),
        }
    }

    /// Calls `visit` with each object directly in the directory (not in
    /// its subdirectories), in key order. The listing is read a page of
    /// [`PAGE`] keys at a time (S3's own page size), each page one request
    /// after the last key of the one before (`StartAfter`), retried on its
    /// own: memory holds one page, whatever the size of the directory.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(Entry)) -> Result<()> {
        let depth = self.prefix.parts().count() + 1;
        let url = self.display();
        let prefix = (!self.prefix.as_ref().is_empty()).then(|| self.prefix.clone());
        let mut after: Option<Path> = None;
        loop {
            let store = Arc::clone(&self.store);
            let page = retrying("listing", &url, self.budget, || {
                use futures::{StreamExt, TryStreamExt};
                let store = Arc::clone(&store);
                let prefix = prefix.clone();
                let after = after.clone();
                async move {
                    let stream = match &after {
                        Some(after) => store.list_with_offset(prefix.as_ref(), after),
                        None => store.list(prefix.as_ref()),
                    };
                    stream.take(PAGE).try_collect::<Vec<_>>().await
                }
            })?
            .map_err(|e| storage_error("list", &url, e))?;
            let full = page.len() == PAGE;
            for meta in page {
                if meta.location.parts().count() == depth {
                    visit(Entry {
                        name: meta.location.filename().unwrap_or_default().to_string(),
                        modified_ms: meta.last_modified.timestamp_millis(),
                        size: meta.size,
                    });
                }
                after = Some(meta.location);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Keys listed per request.
const PAGE: usize = 1000;
