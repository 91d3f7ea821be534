//! Encoder of what `put()` hands back to Java: one status per record, a retry delay and log events.

use super::Writer;
use crate::logs::LogEvent;
use std::time::Duration;

/// What became of one record of the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Salesforce accepted the write (or, for an idempotent delete, there was nothing to delete).
    Written,
    /// Deliberately not written (a tombstone while `salesforce.tombstone.delete=false`).
    Skipped,
    /// Non-recoverable: goes to the DLQ, or fails the task under `errors.tolerance=none`.
    Failed(String),
    /// Recoverable and not written yet: Connect must redeliver it.
    Retry(String),
}

impl Outcome {
    fn status(&self) -> u8 {
        match self {
            Outcome::Written => 0,
            Outcome::Skipped => 1,
            Outcome::Failed(_) => 2,
            Outcome::Retry(_) => 3,
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Retry(_))
    }
}

/// Messages end up in DLQ headers and task traces: Salesforce's STRING_TOO_LONG repeats the whole
/// value, and a multi-MiB header would make the DLQ write itself fail.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

fn bounded(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    let mut cut = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} more bytes cut]", &message[..cut], message.len() - cut).into()
}

pub fn encode_outcomes(outcomes: &[Outcome], retry_backoff: Duration, logs: &[LogEvent]) -> Vec<u8> {
    let mut w = Writer::default();
    w.i32(outcomes.len() as i32);
    for outcome in outcomes {
        w.u8(outcome.status());
        if let Outcome::Failed(message) | Outcome::Retry(message) = outcome {
            w.str(&bounded(message));
        }
    }
    w.i64(retry_backoff.as_millis().min(i64::MAX as u128) as i64);
    encode_logs_into(&mut w, logs);
    w.buf
}

pub fn encode_logs(logs: &[LogEvent]) -> Vec<u8> {
    let mut w = Writer::default();
    encode_logs_into(&mut w, logs);
    w.buf
}

fn encode_logs_into(w: &mut Writer, logs: &[LogEvent]) {
    w.i32(logs.len() as i32);
    for event in logs {
        w.u8(event.level as u8);
        w.str(&event.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Level;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64 && cut.ends_with("bytes cut]"), "{}", cut.len());
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn layout_matches_the_spec() {
        let logs = [LogEvent { level: Level::Warn, message: "w".into() }];
        let buf = encode_outcomes(
            &[Outcome::Written, Outcome::Failed("bad".into()), Outcome::Retry("later".into()), Outcome::Skipped],
            Duration::from_millis(1500),
            &logs,
        );
        let mut expected = vec![0, 0, 0, 4, 0, 2, 0, 0, 0, 3, b'b', b'a', b'd', 3, 0, 0, 0, 5];
        expected.extend_from_slice(b"later");
        expected.push(1);
        expected.extend_from_slice(&1500i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, 3, 0, 0, 0, 1, b'w']);
        assert_eq!(buf, expected);
    }
}
