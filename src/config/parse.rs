//! Value parsers shared by flags, environment variables and the file. Each returns what
//! was expected, in words, for [`ConfigError::Invalid`](crate::error::ConfigError::Invalid)'s
//! "is not valid: …".

use std::path::PathBuf;

/// Longest reconnect backoff accepted, so a typo cannot park an agent for a year.
pub(super) const MAX_BACKOFF_SECS: f64 = 3600.0;

/// A TCP port, 1 to 65535.
pub(super) fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a TCP port from 1 to 65535".to_owned()),
        Ok(port) => Ok(port),
    }
}

/// A boolean: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, in any case, and what
/// Determined's agent also reads as one: Go's `strconv.ParseBool` (`t`, `f`, `T`, `F`) and
/// YAML 1.1 (`y`, `n`).
pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A path, as given.
pub(super) fn path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// Agent IDs and pool names travel in the websocket URL and in logs: no control
/// characters, no surrounding whitespace, not empty.
pub(super) fn label(s: &str) -> Result<String, String> {
    if s.is_empty() || s.trim() != s || s.chars().any(char::is_control) {
        Err("expected a non-empty name without control characters or surrounding spaces".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// A whole number of reconnect attempts.
pub(super) fn attempts(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| "expected a whole number of attempts (0 = keep trying)".to_owned())
}

/// A number of seconds (its range is checked once its origin is known).
pub(super) fn seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>().map_err(|_| "expected a number of seconds".to_owned())
}

/// 4 KiB to 1 GiB: below, the master's own messages do not fit; above, one hostile
/// message could take a node's memory.
/// 1 s to an hour: below, a busy master is abandoned; above, a dead one is waited for too long.
pub(super) fn timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (1.0..=3600.0).contains(&secs) => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err("expected a number of seconds from 1 to 3600".to_owned()),
    }
}

pub(super) fn buffer_messages(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number of messages from 1 to 1000000".to_owned()),
    }
}

pub(super) fn buffer_bytes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (64 << 10..=1 << 30).contains(&n) => Ok(n),
        _ => Err("expected a number of bytes from 65536 to 1073741824".to_owned()),
    }
}

pub(super) fn days(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n <= 365 => Ok(n),
        _ => Err("expected a whole number of days from 0 to 365".to_owned()),
    }
}

pub(super) fn message_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (4 << 10..=1 << 30).contains(&n) => Ok(n),
        _ => Err("expected a number of bytes from 4096 to 1073741824 (the master sends up to 134217728)".to_owned()),
    }
}

/// An IP address.
pub(super) fn ip(s: &str) -> Result<std::net::IpAddr, String> {
    s.parse().map_err(|_| "expected an IP address such as 127.0.0.1 or 0.0.0.0".to_owned())
}

/// Seconds between Fluent Bit's flushes.
pub(super) fn flush(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(n),
        _ => Err("expected a whole number of seconds from 1 to 3600".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_flags_accept_common_spellings() {
        for (text, want) in [("true", true), ("YES", true), ("1", true), ("off", false), ("False", false)] {
            assert_eq!(boolean(text), Ok(want));
        }
        assert!(boolean("maybe").is_err());
        assert!(boolean("").is_err());
    }

    #[test]
    fn bools_accept_everything_gos_parse_bool_accepts() {
        // strconv.ParseBool's complete list.
        for text in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(boolean(text), Ok(true), "{text}");
        }
        for text in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(boolean(text), Ok(false), "{text}");
        }
    }
}
