//! Fault injection for `/services/` requests: canned error statuses, dropped connections (before
//! or after the write), slow answers, writes that start late (so concurrent requests commit in
//! either order) or land only after the client gave up on them, and per-record errors. A client
//! that sees a timeout or a broken connection cannot tell which of these happened — exactly as
//! against real Salesforce, whose transactions run to their end whatever the client does.
//! Randomness comes from a seeded RNG so test runs repeat.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::validate::SfError;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_contains: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub probability: Option<f64>,
    /// How many times the rule may fire; `None` = unlimited.
    #[serde(default)]
    pub count: Option<u64>,
    /// Matching requests to let through before the rule starts firing.
    #[serde(default)]
    pub skip: Option<u64>,
    #[serde(default)]
    pub fired: u64,
    #[serde(default)]
    pub seen: u64,
}

pub enum Action {
    /// Answer with this status and Salesforce's error body, touching nothing.
    Status { status: u16, code: String, message: String },
    /// Close the connection without answering; nothing is written.
    Reset,
    /// Process normally, then wait this long before answering.
    Slow(u64),
    /// Wait this long (drawn at random up to the rule's `delay_ms`), then process and answer.
    Delay(u64),
    /// Process normally, then close the connection without answering.
    CommitThenReset,
    /// Process only after this long, whether or not the client is still waiting.
    CommitLate(u64),
    /// Process normally; the response body starts with a UTF-8 byte order mark.
    Bom,
    /// Process normally; half the response body is sent, then the connection is closed.
    Truncate,
}

/// Every fault kind, as named in rules.
pub const KINDS: &[&str] =
    &["status", "reset", "slow", "delay", "commit_then_reset", "commit_late", "bom", "truncate", "record_error"];

pub struct FaultState {
    pub rules: Vec<FaultRule>,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState { rules: vec![], rng: StdRng::seed_from_u64(0x5EED) }
    }
}

impl FaultRule {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| path.contains(p))
    }
    fn exhausted(&self) -> bool {
        self.count.is_some_and(|c| self.fired >= c)
    }
    /// Counts a matching request; false while the rule is still skipping.
    fn past_skip(&mut self) -> bool {
        self.seen += 1;
        self.seen > self.skip.unwrap_or(0)
    }
}

impl FaultState {
    /// `{"rules":[...], "seed": N}`: appends rules (and reseeds when `seed` is given).
    pub fn add(&mut self, body: &Value) -> Result<usize, String> {
        if let Some(seed) = body.get("seed").and_then(Value::as_u64) {
            self.rng = StdRng::seed_from_u64(seed);
        }
        let rules = match body.get("rules") {
            Some(r) => r.clone(),
            None if body.get("kind").is_some() => Value::Array(vec![body.clone()]),
            None => Value::Array(vec![]),
        };
        let rules: Vec<FaultRule> = serde_json::from_value(rules).map_err(|e| format!("bad fault rules: {e}"))?;
        for r in &rules {
            if !KINDS.contains(&r.kind.as_str()) {
                return Err(format!("unknown fault kind '{}' ({})", r.kind, KINDS.join(", ")));
            }
        }
        let n = rules.len();
        self.rules.extend(rules.into_iter().map(|mut r| {
            r.fired = 0;
            r.seen = 0;
            r
        }));
        Ok(n)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn list(&self) -> Value {
        json!(self.rules)
    }

    fn roll(&mut self, p: Option<f64>) -> bool {
        let p = p.unwrap_or(1.0);
        p >= 1.0 || (p > 0.0 && self.rng.gen::<f64>() < p)
    }

    /// The request-level fault (any kind but record_error) to apply, if any: the first rule that
    /// matches, is past its skip, is not exhausted and wins its probability roll.
    pub fn request_action(&mut self, method: &str, path: &str) -> Option<(Action, String)> {
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            if r.kind == "record_error" || !r.matches(method, path) || r.exhausted() {
                continue;
            }
            if !self.rules[i].past_skip() {
                continue;
            }
            if !self.roll(self.rules[i].probability) {
                continue;
            }
            let r = &mut self.rules[i];
            r.fired += 1;
            let action = match r.kind.as_str() {
                "status" => Action::Status {
                    status: r.status.unwrap_or(503),
                    code: r.error_code.clone().unwrap_or_else(|| "SERVER_UNAVAILABLE".into()),
                    message: r.message.clone().unwrap_or_else(|| "Server temporarily unavailable".into()),
                },
                "reset" => Action::Reset,
                "slow" => Action::Slow(r.delay_ms.unwrap_or(40_000)),
                "commit_then_reset" => Action::CommitThenReset,
                "commit_late" => Action::CommitLate(r.delay_ms.unwrap_or(40_000)),
                "bom" => Action::Bom,
                "truncate" => Action::Truncate,
                _ => {
                    let max = r.delay_ms.unwrap_or(1_000);
                    let kind = r.kind.clone();
                    return Some((Action::Delay(self.rng.gen_range(0..=max)), kind));
                }
            };
            return Some((action, r.kind.clone()));
        }
        None
    }

    /// Indexes of record_error rules that apply to this request (skip counts requests).
    pub fn record_rules(&mut self, method: &str, path: &str) -> Vec<usize> {
        let mut out = vec![];
        for (i, r) in self.rules.iter_mut().enumerate() {
            if r.kind == "record_error" && r.matches(method, path) && !r.exhausted() && r.past_skip() {
                out.push(i);
            }
        }
        out
    }

    /// Rolls the record_error rules for one record; `count` is spent per failed record.
    pub fn record_error(&mut self, rules: &[usize]) -> Option<SfError> {
        for &i in rules {
            if self.rules.get(i).is_none_or(FaultRule::exhausted) {
                continue;
            }
            if !self.roll(self.rules[i].probability) {
                continue;
            }
            let r = &mut self.rules[i];
            r.fired += 1;
            return Some(
                SfError::new(
                    r.status.unwrap_or(400),
                    r.error_code.as_deref().unwrap_or("UNABLE_TO_LOCK_ROW"),
                    r.message.clone().unwrap_or_else(|| "unable to obtain exclusive access to this record".into()),
                )
                .with_fields(&[]),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_count_and_probability() {
        let mut f = FaultState::default();
        f.add(&json!({"rules":[{"kind":"status","status":503,"path_contains":"/composite","skip":1,"count":2}]}))
            .unwrap();
        assert!(f.request_action("POST", "/services/data/v62.0/sobjects/Contact").is_none());
        assert!(f.request_action("POST", "/services/data/v62.0/composite/sobjects").is_none()); // skipped
        assert!(f.request_action("POST", "/services/data/v62.0/composite/sobjects").is_some());
        assert!(f.request_action("POST", "/services/data/v62.0/composite/sobjects").is_some());
        assert!(f.request_action("POST", "/services/data/v62.0/composite/sobjects").is_none()); // exhausted

        let mut a = FaultState::default();
        let mut b = FaultState::default();
        for s in [&mut a, &mut b] {
            s.add(&json!({"seed": 7, "rules":[{"kind":"record_error","probability":0.5}]})).unwrap();
        }
        let ra = a.record_rules("POST", "/x");
        let rb = b.record_rules("POST", "/x");
        let xs: Vec<bool> = (0..50).map(|_| a.record_error(&ra).is_some()).collect();
        let ys: Vec<bool> = (0..50).map(|_| b.record_error(&rb).is_some()).collect();
        assert_eq!(xs, ys, "same seed, same faults");
        assert!(xs.iter().any(|x| *x) && xs.iter().any(|x| !*x));
    }
}
