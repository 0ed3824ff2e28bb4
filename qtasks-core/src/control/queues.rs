//! Named queues: which queues a worker serves ([`QueueSelection`]), and the order a claim
//! looks at them in ([`QueueTurns`]).

use std::fmt;

/// The queue of a task that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// The queues a worker claims from, each with a weight, or in strict order.
///
/// `"mail=3,default=1"`: both, `mail` three turns in four when both have work;
/// `"mail,default"`: strict order, `default` only when `mail` has nothing ready. A worker
/// that names none serves `default` and every queue its app's tasks declare, with equal
/// weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSelection {
    /// The queues with their weights (all 1 in strict order).
    pub queues: Vec<(String, u32)>,
    /// Strict order: a queue is looked at only when the ones before it have nothing ready.
    pub strict: bool,
}

impl QueueSelection {
    /// Parses `"mail=3,default=1"` (weights) or `"mail,default"` (strict order). The error
    /// says what is expected.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut queues = Vec::new();
        let mut weighted = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight = weight.trim().parse::<u32>().ok().filter(|w| *w > 0);
                    let weight = weight.ok_or_else(|| {
                        format!("queues {spec:?}: the weight of {name:?} must be a whole number of at least 1")
                    })?;
                    (name.trim(), Some(weight))
                }
                None => (part, None),
            };
            check_queue_name(name).map_err(|e| format!("queues {spec:?}: {e}"))?;
            if weighted.is_some_and(|w| w != weight.is_some()) {
                return Err(format!(
                    "queues {spec:?}: give every queue a weight (\"mail=3,default=1\") or none (\"mail,default\", strict order)"
                ));
            }
            weighted = Some(weight.is_some());
            if queues.iter().any(|(q, _)| q == name) {
                return Err(format!("queues {spec:?}: {name:?} is listed twice"));
            }
            queues.push((name.to_string(), weight.unwrap_or(1)));
        }
        if queues.is_empty() {
            return Err(format!(
                "queues {spec:?}: name at least one queue (\"mail=3,default=1\" or \"mail,default\")"
            ));
        }
        Ok(QueueSelection {
            queues,
            strict: weighted == Some(false) && spec.contains(','),
        })
    }

    /// Equal weights over these queues.
    pub fn equal<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut queues: Vec<(String, u32)> = Vec::new();
        for name in names {
            if !queues.iter().any(|(q, _)| q == name) {
                queues.push((name.to_string(), 1));
            }
        }
        QueueSelection {
            queues,
            strict: false,
        }
    }

    /// Whether this is the default queue alone.
    pub fn is_default_only(&self) -> bool {
        matches!(self.queues.as_slice(), [(q, _)] if q == DEFAULT_QUEUE)
    }
}

impl fmt::Display for QueueSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, weight)) in self.queues.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if self.strict {
                write!(f, "{name}")?;
            } else {
                write!(f, "{name}={weight}")?;
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a queue: 1 to 64 ASCII letters, digits, `_`, `-` or `.`.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a queue name: use 1 to 64 ASCII letters, digits, `_`, `-` or `.`"
        ))
    }
}

/// The order the claims of one worker look at its queues in: strict order, or smooth
/// weighted round robin (over a run of claims, each queue comes first in proportion to its
/// weight, evenly spread). Each claim takes from the first queue that has work, then the
/// next, until its batch is full.
#[derive(Debug, Clone)]
pub struct QueueTurns {
    selection: QueueSelection,
    current: Vec<i64>,
}

impl QueueTurns {
    /// Turns over `selection`.
    pub fn new(selection: QueueSelection) -> Self {
        let current = vec![0; selection.queues.len()];
        QueueTurns { selection, current }
    }

    /// The queues served.
    pub fn selection(&self) -> &QueueSelection {
        &self.selection
    }

    /// The order for the next claim (indexes into the selection's queues).
    pub fn next_order(&mut self) -> Vec<usize> {
        let n = self.selection.queues.len();
        if self.selection.strict || n < 2 {
            return (0..n).collect();
        }
        let total: i64 = self
            .selection
            .queues
            .iter()
            .map(|(_, w)| i64::from(*w))
            .sum();
        for (c, (_, w)) in self.current.iter_mut().zip(&self.selection.queues) {
            *c += i64::from(*w);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.current[i]), i));
        self.current[order[0]] -= total;
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse() {
        let s = QueueSelection::parse("mail=3, default=1").expect("parses");
        assert_eq!(s.queues, [("mail".into(), 3), ("default".into(), 1)]);
        assert!(!s.strict);
        assert_eq!(s.to_string(), "mail=3,default=1");
        let s = QueueSelection::parse("mail,default").expect("parses");
        assert!(s.strict);
        assert!(QueueSelection::parse("default")
            .expect("parses")
            .is_default_only());
        for bad in [
            "",
            "mail=0",
            "mail=3,default",
            "mail,mail",
            "ma il",
            "mail=x",
        ] {
            assert!(QueueSelection::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weighted_turns_follow_the_weights() {
        let mut turns = QueueTurns::new(QueueSelection::parse("mail=3,default=1").unwrap());
        let firsts: Vec<usize> = (0..8).map(|_| turns.next_order()[0]).collect();
        assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 6);
        assert_eq!(firsts.iter().filter(|&&i| i == 1).count(), 2);
        let mut strict = QueueTurns::new(QueueSelection::parse("mail,default").unwrap());
        assert_eq!(strict.next_order(), [0, 1]);
        assert_eq!(strict.next_order(), [0, 1]);
    }
}
