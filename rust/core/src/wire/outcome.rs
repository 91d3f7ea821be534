//! Encoder of what every call hands back to Java: the records finished since the last call (by
//! sequence number), how full the pipeline is, and log events.

use super::Writer;
use crate::logs::LogEvent;
use crate::metrics::Health;
use crate::pipeline::Progress;

/// What became of one record of the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Salesforce accepted the write (or, for an idempotent delete, there was nothing to delete).
    Written,
    /// Deliberately not written (a tombstone while `salesforce.tombstone.delete=false`).
    Skipped,
    /// Non-recoverable: goes to the DLQ, or fails the task under `errors.tolerance=none`.
    Failed(String),
    /// Not finished within a synchronous call (`SalesforceSink::write_records`): the caller must
    /// submit it again. The pipeline itself never gives this outcome; it retries.
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

/// `i32 n, n × {i64 seq, u8 status, [status 2: str message]}, i32 unfinished,
/// i32 requestsInFlight`, the metrics (`i32 n, n × {str name, i64 value}`), the health
/// (`u8 state, i64 sinceEpochMs, str message`), then the logs.
pub fn encode_progress(progress: &Progress, metrics: &[(&str, i64)], health: &Health, logs: &[LogEvent]) -> Vec<u8> {
    let mut w = Writer::default();
    w.i32(progress.finished.len() as i32);
    for (seq, outcome) in &progress.finished {
        w.i64(*seq);
        w.u8(outcome.status());
        if let Outcome::Failed(message) | Outcome::Retry(message) = outcome {
            w.str(&bounded(message));
        }
    }
    w.i32(progress.unfinished.min(i32::MAX as usize) as i32);
    w.i32(progress.requests_in_flight.min(i32::MAX as usize) as i32);
    w.i32(metrics.len() as i32);
    for (name, value) in metrics {
        w.str(name);
        w.i64(*value);
    }
    w.u8(health.state as u8);
    w.i64(health.since_epoch_ms);
    w.str(&health.message);
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
        let progress = Progress {
            finished: vec![(7, Outcome::Written), (9, Outcome::Failed("bad".into())), (8, Outcome::Skipped)],
            unfinished: 5,
            requests_in_flight: 2,
            ..Progress::default()
        };
        let health = Health { state: crate::metrics::HealthState::QuotaReserve, since_epoch_ms: 258, message: "q".into() };
        let buf = encode_progress(&progress, &[("m", 1)], &health, &logs);
        let mut expected = vec![0, 0, 0, 3];
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.push(0);
        expected.extend_from_slice(&9i64.to_be_bytes());
        expected.extend_from_slice(&[2, 0, 0, 0, 3, b'b', b'a', b'd']);
        expected.extend_from_slice(&8i64.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 2]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, b'q']);
        expected.extend_from_slice(&[0, 0, 0, 1, 3, 0, 0, 0, 1, b'w']);
        assert_eq!(buf, expected);
    }
}
