//! The range checks the sections' `validate` share: a value as TOML, at least a minimum, a
//! positive rate, a fraction in `[0, 1)`. Each returns the error naming the full key.
//!
//! Owns only these helpers; which key takes which range is each section's.

use super::ConfigError;
use std::fmt;

/// `value` as a TOML string.
pub(super) fn quoted(value: impl fmt::Display) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// `Err(invalid)` unless `min <= value`.
pub(super) fn at_least<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(
            key,
            &value,
            format!("must be at least {min}"),
        ));
    }
    Ok(())
}

/// A finite number greater than 0 (a rate).
pub(super) fn positive(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be a finite number greater than 0",
        ));
    }
    Ok(())
}

/// A number in `[0, 1)` (a momentum).
pub(super) fn unit_fraction(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && (0.0..1.0).contains(&value)) {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be at least 0 and below 1",
        ));
    }
    Ok(())
}
