//! Connector options: the `key = value` pairs a source or a sink is
//! declared with ([`Engine::create_source`](crate::Engine::create_source),
//! [`Engine::create_sink`](crate::Engine::create_sink)). Each connector
//! takes the options it knows; whatever is left is an error that names the
//! option and lists the valid ones. The format options of a source become
//! its [`Decoding`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::format::{DEFAULT_MAX_RECORD_BYTES, DeadLetter, ErrorPolicy, Format, RecordDecoder};
use crate::metrics::SourceMetrics;
use crate::storage::StorageOptions;

/// The options of one source or sink, consumed as the connector reads them.
#[derive(Debug)]
pub struct Options {
    what: &'static str,
    name: String,
    connector: String,
    values: BTreeMap<String, String>,
    known: Vec<&'static str>,
    storage_defaults: StorageOptions,
}

impl Options {
    /// Options for the source or sink `name`; `connector` must be present.
    pub fn new(what: &'static str, name: &str, values: BTreeMap<String, String>) -> Result<Self> {
        let mut values: BTreeMap<String, String> = values
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let connector = values.remove("connector").ok_or_else(|| {
            Error::Config(format!(
                "{what} '{name}' needs a connector: give it the option 'connector'"
            ))
        })?;
        Ok(Options {
            what,
            name: name.to_string(),
            connector: connector.to_ascii_lowercase(),
            values,
            known: vec!["connector"],
            storage_defaults: StorageOptions::new(),
        })
    }

    /// The connector's name.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// Takes an option (any of its spellings).
    pub fn take(&mut self, keys: &[&'static str]) -> Option<String> {
        self.known.extend_from_slice(keys);
        keys.iter().find_map(|k| self.values.remove(*k))
    }

    /// Takes every option whose key starts with `prefix` (which is
    /// removed), in key order: pass-through settings (`properties.*`).
    pub fn take_prefixed(&mut self, prefix: &'static str) -> Vec<(String, String)> {
        self.known.push(prefix);
        let keys: Vec<String> = self
            .values
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let value = self.values.remove(&k)?;
                Some((k[prefix.len()..].to_string(), value))
            })
            .collect()
    }

    /// An option's value, left for a later `take`.
    pub fn peek(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Takes the object-store options of a `path` (see
    /// [`crate::storage`]): `endpoint`, `allow_http`, `region`,
    /// `access_key_id`, `secret_access_key`, `session_token`, and any
    /// `s3.*` option (its key without the prefix), over the engine's
    /// (`SET s3.…`).
    pub fn take_storage(&mut self) -> StorageOptions {
        let mut storage = self.storage_defaults.clone();
        for key in [
            "endpoint",
            "allow_http",
            "region",
            "access_key_id",
            "secret_access_key",
            "session_token",
        ] {
            if let Some(value) = self.take(&[key]) {
                storage.insert(key.to_string(), value);
            }
        }
        for (key, value) in self.take_prefixed("s3.") {
            storage.insert(key, value);
        }
        storage
    }

    /// Object-store options that apply unless the connector's own say
    /// otherwise (the engine's `SET s3.…`).
    pub fn with_storage_defaults(mut self, defaults: &StorageOptions) -> Self {
        self.storage_defaults = defaults
            .iter()
            .map(|(k, v)| (k.strip_prefix("s3.").unwrap_or(k).to_string(), v.clone()))
            .collect();
        self
    }

    /// Takes an option that must be present.
    pub fn require(&mut self, keys: &[&'static str]) -> Result<String> {
        self.take(keys).ok_or_else(|| {
            Error::Config(format!(
                "{} '{}' (connector '{}') needs option '{}'",
                self.what, self.name, self.connector, keys[0]
            ))
        })
    }

    /// Takes an option and parses it.
    pub fn take_parsed<T: std::str::FromStr>(
        &mut self,
        keys: &[&'static str],
        expected: &str,
    ) -> Result<Option<T>> {
        match self.take(keys) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                Error::Config(format!(
                    "option '{}' of {} '{}' is '{v}', expected {expected}",
                    keys[0], self.what, self.name
                ))
            }),
        }
    }

    /// Takes a boolean option.
    pub fn take_bool(&mut self, keys: &[&'static str]) -> Result<Option<bool>> {
        match self.take(keys) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Some(true)),
                "false" | "no" | "off" | "0" => Ok(Some(false)),
                _ => Err(Error::Config(format!(
                    "option '{}' of {} '{}' is '{v}', expected true or false",
                    keys[0], self.what, self.name
                ))),
            },
        }
    }

    /// Takes the format options (`format`, `csv.header`, `csv.delimiter`,
    /// `on-error`, `max.record.bytes`) and builds the decoder settings.
    pub fn take_decoding(&mut self, schema: &SchemaRef, default_format: &str) -> Result<Decoding> {
        let format = self
            .take(&["format"])
            .unwrap_or_else(|| default_format.to_string());
        let header = self.take_bool(&["csv.header"])?.unwrap_or(false);
        let delimiter = match self.take(&["csv.delimiter"]) {
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(Error::Config(format!(
                    "option 'csv.delimiter' of {} '{}' is '{d}', expected one character",
                    self.what, self.name
                )));
            }
        };
        let format = Format::parse(&format, header, delimiter)?;
        format.check_schema(schema)?;
        let policy = match self.take(&["on-error", "on_error"]) {
            None => ErrorPolicy::Fail,
            Some(p) => ErrorPolicy::parse(&p)?,
        };
        let max_record_bytes = self
            .take_parsed(&["max.record.bytes"], "a number of bytes")?
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        let max_records_per_batch = self
            .take_parsed::<usize>(&["max.records.per.batch"], "a number of records")?
            .filter(|&n| n > 0);
        let dead_letter = match (policy, self.take(&["dead-letter.path", "dead_letter.path"])) {
            (ErrorPolicy::DeadLetter, Some(path)) => Some(DeadLetter::open(path)?),
            (ErrorPolicy::DeadLetter, None) => {
                return Err(Error::Config(format!(
                    "on-error = 'dead-letter' of {} '{}' needs 'dead-letter.path', the file malformed records are appended to",
                    self.what, self.name
                )));
            }
            (_, Some(_)) => {
                return Err(Error::Config(format!(
                    "option 'dead-letter.path' of {} '{}' is for on-error = 'dead-letter'",
                    self.what, self.name
                )));
            }
            (_, None) => None,
        };
        Ok(Decoding {
            schema: schema.clone(),
            format,
            policy,
            max_record_bytes,
            dead_letter,
            max_records_per_batch,
        })
    }

    /// Fails if an option was given that the connector does not know.
    pub fn finish(self) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(unknown) => {
                let mut valid = self.known.clone();
                valid.sort_unstable();
                valid.dedup();
                Err(Error::Config(format!(
                    "unknown option '{unknown}' for connector '{}' of {} '{}'; valid options: {}",
                    self.connector,
                    self.what,
                    self.name,
                    valid.join(", ")
                )))
            }
        }
    }
}

/// How a source decodes its records.
#[derive(Debug, Clone)]
pub struct Decoding {
    /// The schema records decode into.
    pub schema: SchemaRef,
    /// The format.
    pub format: Format,
    /// What happens to a malformed record.
    pub policy: ErrorPolicy,
    /// The longest record accepted.
    pub max_record_bytes: usize,
    /// Where malformed records go under `on-error = 'dead-letter'`.
    pub dead_letter: Option<DeadLetter>,
    /// The most records one batch takes (`max.records.per.batch`); the rest
    /// wait, bounded, for the next batches.
    pub max_records_per_batch: Option<usize>,
}

impl Decoding {
    /// A decoder for one activation of the source.
    pub fn decoder(&self, source: &str, metrics: Arc<SourceMetrics>) -> RecordDecoder {
        RecordDecoder::new(
            source,
            self.schema.clone(),
            self.format.clone(),
            self.policy,
            metrics,
        )
        .with_max_record_bytes(self.max_record_bytes)
        .with_dead_letter(self.dead_letter.clone())
    }

    /// A decoder for input decoded before (a replayed batch): the same rows,
    /// but malformed records are neither counted nor dead-lettered again.
    pub fn quiet_decoder(&self, source: &str) -> RecordDecoder {
        let policy = match self.policy {
            ErrorPolicy::DeadLetter => ErrorPolicy::Skip,
            other => other,
        };
        RecordDecoder::new(
            source,
            self.schema.clone(),
            self.format.clone(),
            policy,
            Arc::default(),
        )
        .with_max_record_bytes(self.max_record_bytes)
    }

    /// Decoding of text lines into one `line` column, failing on bad input.
    pub fn lines(schema: SchemaRef) -> Self {
        Decoding {
            schema,
            format: Format::Lines,
            policy: ErrorPolicy::Fail,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            dead_letter: None,
            max_records_per_batch: None,
        }
    }
}

/// The names of a connector registry (`source::CONNECTORS`,
/// `sink::CONNECTORS`), for an error that lists the valid ones.
pub(crate) fn connector_names(registry: &[(&str, &str)]) -> String {
    let names: Vec<&str> = registry.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}
