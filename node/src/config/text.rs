//! Serde for the typed values written as strings in the file (`model = "cnn"`, multiaddrs,
//! peer ids, `<ip>:<port>`): each parses with the same `FromStr` as on the command line, so the
//! error says what is allowed. Used as `#[serde(with = "text")]`, `text::list` and
//! `text::optional_path` on the sections' fields.
//!
//! Owns only the conversion to and from text; the ranges are checked after parsing, by the
//! sections' `validate`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// A value written as a string in the config file.
pub(super) trait ConfigText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;
    fn to_text(&self) -> String;
}

macro_rules! via_from_str {
    ($($ty:ty),*) => {$(
        impl ConfigText for $ty {
            fn from_text(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("{e}"))
            }
            fn to_text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

via_from_str!(
    crate::data::DatasetName,
    crate::model::ModelKind,
    crate::data::Partition,
    crate::data::ShardSpec,
    crate::train::optim::OptimizerKind,
    crate::train::optim::MomentumMode,
    super::Weighting,
    super::Staleness,
    super::Aggregation,
    murmur_protocol::Encoding,
    crate::network::relay::RelayServer
);

impl ConfigText for libp2p::Multiaddr {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|e| {
            format!(
                "not a multiaddr ({e}): expected e.g. /ip4/0.0.0.0/tcp/0, \
                 /ip4/192.0.2.7/udp/4001/quic-v1 or /ip4/192.0.2.7/tcp/4001/p2p/<peer id>"
            )
        })
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
}

/// `""` = no emulated link.
impl ConfigText for Option<crate::network::link::LinkSpec> {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| format!("{e}"))
    }
    fn to_text(&self) -> String {
        self.map(|s| s.to_string()).unwrap_or_default()
    }
}

impl ConfigText for libp2p::PeerId {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|e| {
            format!("not a peer id ({e}): expected e.g. 12D3KooW... (`murmur id` prints one)")
        })
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
}

impl ConfigText for std::net::SocketAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| {
            format!(
                "not an address {text:?}: expected <ip>:<port>, e.g. 127.0.0.1:8080, \
                 0.0.0.0:8080 or [::1]:8080 (no host names)"
            )
        })
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
}

pub(super) fn serialize<T: ConfigText, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_text())
}

pub(super) fn deserialize<'de, T: ConfigText, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    T::from_text(&text).map_err(D::Error::custom)
}

/// A list of strings.
pub(super) mod list {
    use super::ConfigText;
    use crate::config::error::LIST_ITEM;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::config) fn serialize<T: ConfigText, S: Serializer>(
        values: &[T],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(ConfigText::to_text))
    }

    /// An item that does not parse fails the whole list (toml gives the error the list's
    /// span), so the message starts with [`LIST_ITEM`] and the index, for
    /// [`describe`](crate::config::error::describe) to name the item.
    pub(in crate::config) fn deserialize<'de, T: ConfigText, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        let items: Vec<String> = Vec::deserialize(deserializer)?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                T::from_text(item).map_err(|e| D::Error::custom(format!("{LIST_ITEM}{i}] {e}")))
            })
            .collect()
    }
}

/// A path where `""` means none.
pub(super) mod optional_path {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::path::PathBuf;

    pub(in crate::config) fn serialize<S: Serializer>(
        path: &Option<PathBuf>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match path {
            None => serializer.serialize_str(""),
            Some(path) => serializer.collect_str(&path.display()),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        let path = PathBuf::deserialize(deserializer)?;
        Ok((!path.as_os_str().is_empty()).then_some(path))
    }
}
