//! [`ConfigError`], and turning what toml and serde report into errors that name the file, the
//! full key (`averaging.fanout`, `network.bootstrap[1]`) and the value as written, or the line
//! and column of a syntax error.
//!
//! Owns the wording of those errors. It knows no key, default or range: the sections' checks
//! (`network.rs`, `training.rs`, ...) build their errors with [`ConfigError::invalid`], and
//! `text.rs` words the reasons a value does not parse.

use std::fmt;
use std::path::PathBuf;

/// Where the documentation of every key lives, quoted in error messages.
pub const DOCS: &str = "docs/config.md";

/// A configuration that cannot be read, parsed or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: line {line}, column {column}: invalid TOML: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// `section` is `[network]` (etc.) or `the top level`.
    #[error("{origin}: unknown key `{key}` in {section}; see {DOCS} (allowed here: {allowed})")]
    UnknownKey {
        origin: String,
        key: String,
        section: String,
        allowed: String,
    },
    /// A value of the wrong type, that does not parse, or out of range. `key` is the full key
    /// (`averaging.fanout`, `network.bootstrap[1]`), `value` the value as written in TOML.
    #[error("{}{key} = {value}: {reason}", origin_prefix(.origin))]
    Invalid {
        origin: Option<String>,
        key: String,
        value: String,
        reason: String,
    },
}

fn origin_prefix(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!("{o}: "))
        .unwrap_or_default()
}

impl ConfigError {
    /// An out-of-range or malformed value, with no file named yet.
    pub(super) fn invalid(
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin: None,
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Names the file (or other origin) in an error that does not name one yet.
    pub(super) fn in_origin(mut self, name: &str) -> Self {
        if let ConfigError::Invalid { origin, .. } = &mut self
            && origin.is_none()
        {
            *origin = Some(name.to_string());
        }
        self
    }
}
/// A key or value of the parsed document, with where it is in the text.
#[derive(Debug)]
pub(super) struct Place {
    /// Full key: `training.model`, `network.listen[1]`.
    path: String,
    span: std::ops::Range<usize>,
}

/// Every key and value of `table` (under `prefix`), depth first, parents before children.
pub(super) fn locate(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<Place>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push(Place {
            path: path.clone(),
            span: key.span(),
        });
        locate_value(value, path, out);
    }
}

fn locate_value(value: &toml::Spanned<toml::de::DeValue<'_>>, path: String, out: &mut Vec<Place>) {
    out.push(Place {
        path: path.clone(),
        span: value.span(),
    });
    match value.get_ref() {
        toml::de::DeValue::Table(table) => locate(table, &path, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                locate_value(item, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Turns a serde error from `toml::from_str` into a [`ConfigError`] naming the full key.
pub(super) fn describe(
    err: &toml::de::Error,
    text: &str,
    places: &[Place],
    origin: &str,
) -> ConfigError {
    let message = err.message();
    let span = err.span().unwrap_or(0..0);
    // The innermost key or value around the error (parents come first, so ties keep them).
    let place = places
        .iter()
        .filter(|p| p.span.start <= span.start && span.end <= p.span.end)
        .min_by_key(|p| p.span.len());
    let Some(place) = place else {
        let (line, column) = line_column(text, span.start);
        return ConfigError::Syntax {
            origin: origin.to_string(),
            line,
            column,
            message: message.to_string(),
        };
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, allowed) = rest.split_once('`').unwrap_or((rest, ""));
        let section = match place.path.rsplit_once('.') {
            Some((parent, _)) => format!("[{parent}]"),
            None => "the top level".to_string(),
        };
        let allowed = allowed
            .trim_start_matches(", expected ")
            .trim_start_matches("one of ")
            .replace('`', "");
        return ConfigError::UnknownKey {
            origin: origin.to_string(),
            key: key.to_string(),
            section,
            allowed,
        };
    }
    // A list item that did not parse (see `text::list`): name the item, not the list.
    let (place, span, message) = match item_error(message) {
        Some((index, reason)) => {
            let item_path = format!("{}[{index}]", place.path);
            match places.iter().find(|p| p.path == item_path) {
                Some(item) => (item, item.span.clone(), reason),
                None => (place, span, reason),
            }
        }
        None => (place, span, message),
    };
    let written = text.get(span).unwrap_or_default();
    let mut value: String = written.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.chars().count() > 80 {
        value = value.chars().take(77).collect::<String>() + "...";
    }
    ConfigError::Invalid {
        origin: Some(origin.to_string()),
        key: place.path.clone(),
        value,
        reason: plain_types(message),
    }
}

/// How `text::list` starts the message of an item that does not parse: `item [<index>] `.
pub(super) const LIST_ITEM: &str = "item [";

/// The index and reason of a list item's error, if `message` is one.
fn item_error(message: &str) -> Option<(usize, &str)> {
    let (index, reason) = message.strip_prefix(LIST_ITEM)?.split_once("] ")?;
    Some((index.parse().ok()?, reason))
}

/// Serde's Rust type names in `message`, in words.
fn plain_types(message: &str) -> String {
    let mut message = message
        .replace("expected usize", "expected a whole number, at least 0")
        .replace("expected u64", "expected a whole number, at least 0")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected f64", "expected a number");
    if let Some(at) = message.find("expected struct ") {
        message.truncate(at);
        message.push_str("expected a table");
    }
    message
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::error;

    #[test]
    fn config_unknown_top_level_key_names_it() {
        assert_eq!(
            error("netwrk_id = \"x\"\n"),
            "peer.toml: unknown key `netwrk_id` in the top level; see docs/config.md \
             (allowed here: network_id, data_dir, network, training, averaging, store, dashboard)"
        );
        let message = error("[trainig]\nlr = 0.1\n");
        assert!(
            message.starts_with("peer.toml: unknown key `trainig` in the top level; see docs"),
            "{message}"
        );
    }

    #[test]
    fn config_unknown_key_in_a_section_names_it() {
        let message = error("[averaging]\nfanout = 2\nfanuot = 3\n");
        assert!(
            message.starts_with(
                "peer.toml: unknown key `fanuot` in [averaging]; see docs/config.md (allowed \
                 here: round_steps, round_secs, fanout,"
            ),
            "{message}"
        );
        let message = error("[network.extra]\nx = 1\n");
        assert!(
            message.starts_with("peer.toml: unknown key `extra` in [network]; see"),
            "{message}"
        );
        let message = error("training.colour = \"red\"\n");
        assert!(
            message.starts_with("peer.toml: unknown key `colour` in [training]; see"),
            "{message}"
        );
    }

    #[test]
    fn config_wrong_types_name_the_key() {
        assert_eq!(
            error("[averaging]\nfanout = \"two\"\n"),
            "peer.toml: averaging.fanout = \"two\": invalid type: string \"two\", expected a \
             whole number, at least 0"
        );
        let message = error("[averaging]\nchunk_size = -1\n");
        assert!(
            message.starts_with("peer.toml: averaging.chunk_size = -1: invalid value"),
            "{message}"
        );
        let message = error("[network]\nmdns = 1\n");
        assert!(
            message.starts_with("peer.toml: network.mdns = 1:"),
            "{message}"
        );
        let message = error("network = 5\n");
        assert!(message.ends_with("expected a table"), "{message}");
        let message = error("[network]\nlisten = \"/ip4/0.0.0.0/tcp/0\"\n");
        assert!(
            message.starts_with("peer.toml: network.listen = "),
            "{message}"
        );
    }

    #[test]
    fn config_bad_multiaddr_names_the_item() {
        let message = error("[network]\nlisten = [\"/ip4/0.0.0.0/tcp/0\", \"/ip4/nope/tcp/1\"]\n");
        assert!(
            message.starts_with(
                "peer.toml: network.listen[1] = \"/ip4/nope/tcp/1\": not a multiaddr ("
            ),
            "{message}"
        );
        let message = error("[network]\nbootstrap = [\"tcp://1.2.3.4:5\"]\n");
        assert!(
            message.starts_with("peer.toml: network.bootstrap[0] = \"tcp://1.2.3.4:5\": not a"),
            "{message}"
        );
    }

    #[test]
    fn config_syntax_errors_give_line_and_column() {
        let message = error("[averaging]\nfanout = \n");
        assert!(
            message.starts_with("peer.toml: line 2, column 10: invalid TOML: "),
            "{message}"
        );
    }
}
