//! Log events of one task, handed to Java in the next returned buffer.
//!
//! Native threads never call into the JVM: a tokio worker thread attached to the JVM would see the
//! system class loader, not the plugin's. So events queue here and the Java task logs them through
//! SLF4J on its own thread.

use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub level: Level,
    pub message: String,
}

/// Bounded so that a task whose Java side stops draining cannot grow without limit.
const MAX_QUEUED: usize = 10_000;

#[derive(Clone, Default)]
pub struct Logs {
    inner: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    events: Vec<LogEvent>,
    dropped: usize,
}

impl Logs {
    pub fn log(&self, level: Level, message: impl Into<String>) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.events.len() < MAX_QUEUED {
            q.events.push(LogEvent { level, message: message.into() });
        } else {
            q.dropped += 1;
        }
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.log(Level::Debug, message)
    }
    pub fn info(&self, message: impl Into<String>) {
        self.log(Level::Info, message)
    }
    pub fn warn(&self, message: impl Into<String>) {
        self.log(Level::Warn, message)
    }

    pub fn drain(&self) -> Vec<LogEvent> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = std::mem::take(&mut q.events);
        if q.dropped > 0 {
            events.push(LogEvent {
                level: Level::Warn,
                message: format!("{} native log events were dropped: the queue was full", q.dropped),
            });
            q.dropped = 0;
        }
        events
    }
}
