//! The settings of the Redis backend that the app's [`Config`](qtasks_core::Config) does not
//! cover, and how they are read off the query string of a broker URL.

use std::time::Duration;

use qtasks_core::{Error, Result};

/// Settings of the Redis backend that the app's [`Config`](qtasks_core::Config) does not
/// cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// How long a claim lasts without renewal. Workers renew every third of it; a task whose
    /// worker died runs again after at most this long (plus the time until another worker
    /// looks, which idle workers do exactly at the deadline). URL: `lease_ms`. Default 30 s.
    pub lease: Duration,
    /// How many times a task whose lease expired is returned to the queue; the next expiry
    /// sends it to the dead-letter. URL: `max_deliveries`. Default 5.
    pub max_deliveries: u32,
    /// How many dead-lettered tasks are kept (oldest dropped first). URL: `dead_letter_max`.
    /// Default 10,000.
    pub dead_letter_max: u32,
    /// How long opening a connection may take (TCP and the Redis handshake): a producer fails
    /// after this when Redis is unreachable. URL: `connect_timeout_ms`. Default 2 s.
    pub connect_timeout: Duration,
    /// How long Redis may take to answer a command or script call (everything but the
    /// blocking wait of idle workers, which has its own allowance on top of how long it
    /// blocks): a producer fails after this when Redis is frozen or overloaded, and the
    /// command may or may not have been applied. URL: `command_timeout_ms`. Default 500 ms.
    pub command_timeout: Duration,
    /// Keep the per-status indexes (`ix:<status>`) that the dashboard lists from: every status
    /// change then writes them, which costs Redis time per task (`docs/benchmarks.md`). The
    /// first process of the app with this on turns them on for every process of the app (the
    /// `ixon` key); tasks are indexed from then on. URL: `status_index=true`. Default off.
    pub status_index: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            dead_letter_max: 10_000,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_millis(500),
            status_index: false,
        }
    }
}

impl RedisOptions {
    /// Splits our settings off a URL's query string; returns the URL for the Redis client.
    pub fn from_url(url: &str) -> Result<(RedisOptions, String)> {
        let mut options = RedisOptions::default();
        let Some((base, query)) = url.split_once('?') else {
            return Ok((options, url.to_string()));
        };
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |expected: &str| Error::Config {
                key: format!("broker_url ?{key}"),
                value: value.to_string(),
                expected: expected.to_string(),
            };
            match key {
                "lease_ms" => {
                    let ms: u64 = value
                        .parse()
                        .ok()
                        .filter(|ms| *ms >= 10)
                        .ok_or_else(|| bad("a lease in milliseconds, at least 10"))?;
                    options.lease = Duration::from_millis(ms);
                }
                "max_deliveries" => {
                    options.max_deliveries = value
                        .parse()
                        .map_err(|_| bad("a whole number of redeliveries"))?
                }
                "connect_timeout_ms" | "command_timeout_ms" => {
                    let ms: u64 = value
                        .parse()
                        .ok()
                        .filter(|ms| *ms >= 1)
                        .ok_or_else(|| bad("a timeout in milliseconds, at least 1"))?;
                    let timeout = Duration::from_millis(ms);
                    if key == "connect_timeout_ms" {
                        options.connect_timeout = timeout;
                    } else {
                        options.command_timeout = timeout;
                    }
                }
                "status_index" => {
                    options.status_index = match value {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("true or false")),
                    }
                }
                "dead_letter_max" => {
                    options.dead_letter_max = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("a whole number of at least 1"))?
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        Ok((options, url))
    }
}

/// The URL with its password (user info) replaced by `***`, for messages.
pub(crate) fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_are_split_off() {
        let (o, url) =
            RedisOptions::from_url("redis://h:1/0?lease_ms=500&protocol=resp3&max_deliveries=2")
                .unwrap();
        assert_eq!(o.lease, Duration::from_millis(500));
        assert_eq!(o.max_deliveries, 2);
        assert_eq!(url, "redis://h:1/0?protocol=resp3");
        let err = RedisOptions::from_url("redis://h/0?lease_ms=abc").unwrap_err();
        assert!(err.to_string().contains("lease_ms"), "{err}");
    }

    #[test]
    fn timeouts_come_from_the_url() {
        let (o, url) = RedisOptions::from_url("redis://h/0").unwrap();
        assert_eq!(o.command_timeout, Duration::from_millis(500));
        assert_eq!(o.connect_timeout, Duration::from_secs(2));
        assert_eq!(url, "redis://h/0");
        let (o, url) =
            RedisOptions::from_url("redis://h/0?command_timeout_ms=250&connect_timeout_ms=900")
                .unwrap();
        assert_eq!(o.command_timeout, Duration::from_millis(250));
        assert_eq!(o.connect_timeout, Duration::from_millis(900));
        assert_eq!(url, "redis://h/0");
        for bad in ["command_timeout_ms=0", "connect_timeout_ms=soon"] {
            let err = RedisOptions::from_url(&format!("redis://h/0?{bad}")).unwrap_err();
            assert!(err.to_string().contains("timeout"), "{err}");
        }
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(hide_password("redis://host/0"), "redis://host/0");
    }
}
