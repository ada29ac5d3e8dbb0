//! What the Kafka source and the Kafka sink share: the client settings
//! every Kafka connector is declared with ([`KafkaClient`]: the brokers,
//! the topic, the timeout of a request, and librdkafka properties passed
//! through) and how a client's error becomes ours.
//!
//! The client is librdkafka through the `rdkafka` crate (bundled and built
//! from source, so no system package is needed): it is the one Rust client
//! with Kafka transactions, which the exactly-once sink needs
//! (`docs/decisions.md`, "Kafka").
//!
//! Options: `bootstrap.servers` (also `brokers`), `topic`, `timeout` (how
//! long one request to the brokers may take before the connector reports
//! the brokers unreachable; default 5 s), and `properties.<name> = value`
//! for any librdkafka property (`properties.security.protocol`, …), as
//! Flink's Kafka connector takes `properties.*`.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::connector::Options;
use crate::error::{Error, Result};

/// The default time one request to the brokers may take.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a Kafka connector reaches its topic.
#[derive(Debug, Clone)]
pub(crate) struct KafkaClient {
    /// `host:port,host:port`.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// How long one request may take.
    pub timeout: Duration,
    /// librdkafka properties given as `properties.<name>`.
    pub properties: Vec<(String, String)>,
}

impl KafkaClient {
    /// Takes the client options of a Kafka source or sink.
    pub fn from_options(options: &mut Options) -> Result<Self> {
        let bootstrap = options.require(&["bootstrap.servers", "brokers"])?;
        let topic = options.require(&["topic"])?;
        let timeout = match options.take(&["timeout"]) {
            None => DEFAULT_TIMEOUT,
            Some(text) => crate::time::parse_duration(&text)
                .map_err(|e| Error::Config(format!("option 'timeout' is '{text}': {e}")))?,
        };
        let properties = options.take_prefixed("properties.");
        Ok(KafkaClient {
            bootstrap,
            topic,
            timeout,
            properties,
        })
    }

    /// librdkafka settings with the brokers, the properties given, and
    /// then `settings` (which the connector needs and the user may not
    /// override).
    pub fn config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config.set(
            "socket.timeout.ms",
            self.timeout.as_millis().max(10).to_string(),
        );
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        for (key, value) in settings {
            config.set(*key, *value);
        }
        config
    }
}

/// A client error of connector `what` (`source 'clicks'`) as ours.
pub(crate) fn client_error(what: &str, doing: &str, e: rdkafka::error::KafkaError) -> Error {
    Error::Config(format!("{what}: {doing}: {e}"))
}
