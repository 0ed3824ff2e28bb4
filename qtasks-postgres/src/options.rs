//! The settings of the PostgreSQL backend that the app's [`Config`](qtasks_core::Config) does
//! not cover, and how they are read off the query string of a broker URL.

use std::time::Duration;

use qtasks_core::{Error, Result};

/// Settings of the PostgreSQL backend that the app's [`Config`](qtasks_core::Config) does not
/// cover. Read from the broker URL's query string (`?schema=jobs&lease_ms=10000`); the other
/// parameters of the URL go to `tokio-postgres` (`sslmode`, `application_name`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The schema that holds qtasks' tables and functions, created by the migrations. A plain
    /// lower-case identifier (letters, digits, `_`, at most 48 bytes). URL: `schema`. Default
    /// `qtasks`.
    pub schema: String,
    /// How long a claim lasts without renewal. Workers renew every third of it; a task whose
    /// worker died runs again after at most this long. URL: `lease_ms`. Default 30 s.
    pub lease: Duration,
    /// How many times a task whose worker vanished while running it runs again before it goes
    /// to the dead-letter (`crashed_worker`). URL: `max_deliveries`. Default 5.
    pub max_deliveries: u32,
    /// How many dead-lettered tasks are kept per app (oldest dropped first). URL:
    /// `dead_letter_max`. Default 10,000.
    pub dead_letter_max: u32,
    /// How long opening a connection may take: a producer fails after this when PostgreSQL is
    /// unreachable. URL: `connect_timeout_ms`. Default 2 s.
    pub connect_timeout: Duration,
    /// How many pooled connections this process opens at most (the listening connection of
    /// LISTEN/NOTIFY comes on top). URL: `pool_size`. Default 8.
    pub pool_size: usize,
    /// How often workers delete expired records (finished tasks past their result TTL, old
    /// claims and heartbeats), in batches of 1000. URL: `reap_ms`. Default 5 s.
    pub reap_interval: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "qtasks".to_string(),
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            dead_letter_max: 10_000,
            connect_timeout: Duration::from_secs(2),
            pool_size: 8,
            reap_interval: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    /// Splits our settings off a URL's query string; returns the URL for `tokio-postgres`.
    pub fn from_url(url: &str) -> Result<(PostgresOptions, String)> {
        let mut options = PostgresOptions::default();
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
            let millis = |at_least: u64, expected: &str| {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms >= at_least)
                    .map(Duration::from_millis)
                    .ok_or_else(|| bad(expected))
            };
            match key {
                "schema" => {
                    check_schema(value)?;
                    options.schema = value.to_string();
                }
                "lease_ms" => options.lease = millis(10, "a lease in milliseconds, at least 10")?,
                "max_deliveries" => {
                    options.max_deliveries = value
                        .parse()
                        .map_err(|_| bad("a whole number of redeliveries"))?
                }
                "dead_letter_max" => {
                    options.dead_letter_max = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0 && *n <= i32::MAX as u32)
                        .ok_or_else(|| bad("a whole number of at least 1"))?
                }
                "connect_timeout_ms" => {
                    options.connect_timeout = millis(1, "a timeout in milliseconds, at least 1")?
                }
                "pool_size" => {
                    options.pool_size = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("a number of connections, at least 1"))?
                }
                "reap_ms" => {
                    options.reap_interval = millis(10, "an interval in milliseconds, at least 10")?
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

/// Checks that `schema` is a plain identifier, safe to put in SQL text unquoted.
pub(crate) fn check_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 48;
    if plain {
        Ok(())
    } else {
        Err(Error::Config {
            key: "broker_url ?schema".into(),
            value: schema.to_string(),
            expected: "a plain lower-case identifier: a letter or `_`, then letters, digits or `_`, at most 48 bytes (such as `qtasks` or `jobs_v2`)".into(),
        })
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
        let (o, url) = PostgresOptions::from_url(
            "postgres://u@h/db?schema=jobs&lease_ms=500&sslmode=disable&max_deliveries=2",
        )
        .unwrap();
        assert_eq!(o.schema, "jobs");
        assert_eq!(o.lease, Duration::from_millis(500));
        assert_eq!(o.max_deliveries, 2);
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        let (o, url) = PostgresOptions::from_url("postgres://h/db").unwrap();
        assert_eq!(o, PostgresOptions::default());
        assert_eq!(url, "postgres://h/db");
    }

    #[test]
    fn bad_settings_name_the_parameter() {
        for (bad, names) in [
            ("schema=Drop%20table", "schema"),
            ("schema=1abc", "schema"),
            ("lease_ms=abc", "lease_ms"),
            ("pool_size=0", "pool_size"),
            ("dead_letter_max=0", "dead_letter_max"),
        ] {
            let err = PostgresOptions::from_url(&format!("postgres://h/db?{bad}")).unwrap_err();
            assert!(err.to_string().contains(names), "{err}");
        }
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("postgres://user:secret@host:5432/db"),
            "postgres://***@host:5432/db"
        );
        assert_eq!(hide_password("postgres://host/db"), "postgres://host/db");
    }
}
