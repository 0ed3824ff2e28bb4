//! [`Config`]: the app's settings, with `QTASKS_*` environment overrides.

use std::time::Duration;

use crate::control::QueueSelection;
use crate::error::{Error, Result};

/// The app's settings (Python's `QueueConfig`). Set them on the builder; `QTASKS_*`
/// environment variables override them at `build()` (see [`Config::apply_env`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Tasks one worker runs at the same time. `QTASKS_MAX_TASKS_PROCESS`. Default 10.
    pub max_tasks_process: usize,
    /// Tasks a worker claims ahead of free slots (bounded prefetch). `QTASKS_PREFETCH`.
    /// Default: equal to `max_tasks_process`.
    pub prefetch: Option<usize>,
    /// Priority of tasks that set none. `QTASKS_TASK_DEFAULT_PRIORITY`. Default 0.
    pub task_default_priority: i32,
    /// How long finished records and results are kept. `QTASKS_RESULT_TTL` (seconds). Default one day.
    pub result_ttl: Duration,
    /// How long running tasks may finish after a shutdown signal. `QTASKS_GRACE_PERIOD` (seconds). Default 30 s.
    pub grace_period: Duration,
    /// The backend to use (`memory://`, `redis://host:port/db`). `QTASKS_BROKER_URL`. Default: in-memory.
    pub broker_url: Option<String>,
    /// The queues this app's workers claim from (`"mail=3,default=1"`, or `"mail,default"` for
    /// strict order). `QTASKS_QUEUES`. Default: `default` and every queue the app's tasks
    /// declare, with equal weights.
    pub queues: Option<QueueSelection>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_tasks_process: 10,
            prefetch: None,
            task_default_priority: 0,
            result_ttl: Duration::from_secs(24 * 3600),
            grace_period: Duration::from_secs(30),
            broker_url: None,
            queues: None,
        }
    }
}

/// The prefix of environment variables that override settings.
pub(crate) const ENV_PREFIX: &str = "QTASKS_";

impl Config {
    /// The effective prefetch (defaults to `max_tasks_process`).
    pub fn prefetch(&self) -> usize {
        self.prefetch.unwrap_or(self.max_tasks_process)
    }

    /// Applies `QTASKS_*` variables from the process environment.
    pub fn apply_env(&mut self) -> Result<()> {
        self.apply_vars(std::env::vars())
    }

    /// Applies `QTASKS_*` pairs from `vars` (the process environment, or a test's list).
    /// Unknown `QTASKS_*` names are ignored; a value that does not parse is an error naming it.
    pub fn apply_vars(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        for (key, value) in vars {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            match name {
                "MAX_TASKS_PROCESS" => self.max_tasks_process = parse_count(&key, &value)?,
                "PREFETCH" => self.prefetch = Some(parse_count(&key, &value)?),
                "TASK_DEFAULT_PRIORITY" => {
                    self.task_default_priority =
                        value.trim().parse().map_err(|_| Error::Config {
                            key: key.clone(),
                            value: value.clone(),
                            expected: "an integer priority (lower runs first)".into(),
                        })?
                }
                "RESULT_TTL" => self.result_ttl = parse_seconds(&key, &value)?,
                "GRACE_PERIOD" => self.grace_period = parse_seconds(&key, &value)?,
                "BROKER_URL" => self.broker_url = Some(value),
                "QUEUES" => {
                    self.queues =
                        Some(QueueSelection::parse(&value).map_err(|e| Error::Config {
                            key: key.clone(),
                            value: value.clone(),
                            expected: e,
                        })?)
                }
                _ => {}
            }
        }
        self.validate()
    }

    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        if self.max_tasks_process == 0 {
            return Err(Error::Config {
                key: "max_tasks_process".into(),
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        Ok(())
    }
}

fn parse_count(key: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::Config {
            key: key.into(),
            value: value.into(),
            expected: "a whole number of at least 1".into(),
        }),
    }
}

fn parse_seconds(key: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| Error::Config {
            key: key.into(),
            value: value.into(),
            expected: "a number of seconds, such as 30 or 0.5".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_settings() {
        let mut c = Config::default();
        c.apply_vars(vars(&[
            ("QTASKS_MAX_TASKS_PROCESS", "4"),
            ("QTASKS_TASK_DEFAULT_PRIORITY", "-2"),
            ("QTASKS_RESULT_TTL", "1.5"),
            ("QTASKS_GRACE_PERIOD", "2"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert_eq!(c.max_tasks_process, 4);
        assert_eq!(c.task_default_priority, -2);
        assert_eq!(c.result_ttl, Duration::from_millis(1500));
        assert_eq!(c.grace_period, Duration::from_secs(2));
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let mut c = Config::default();
        let err = c
            .apply_vars(vars(&[("QTASKS_MAX_TASKS_PROCESS", "many")]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("QTASKS_MAX_TASKS_PROCESS"), "{msg}");
        assert!(msg.contains("whole number"), "{msg}");
    }
}
