//! Panics as messages (SPEC §11): a panic on any native thread must end as a task error that says
//! what happened and where, never as a thread that silently stops. The JNI entry points catch
//! panics on the calling Java thread; the pipeline's background tasks (dispatcher, requests, quota
//! checks) run under [`CatchUnwind`] and turn a panic into the sink's fatal error.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// The last panic on this thread as the hook saw it: its payload text and its location.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Replaces the default hook (which prints to the worker's stderr) with one that keeps the panic's
/// location for [`message`]. Idempotent; the JNI adapter installs it (each class loader's copy of
/// the library once).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some((payload_text(info.payload()), location)));
        }));
    });
}

/// The text of a caught panic, with its location when the hook recorded this very panic on this
/// thread (a stale record of another panic is not used).
pub fn message(payload: &(dyn Any + Send)) -> String {
    let text = payload_text(payload);
    match LAST_PANIC.with(|p| p.borrow_mut().take()) {
        Some((hooked, location)) if hooked == text => format!("{text}{location}"),
        _ => text,
    }
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// A future whose panic becomes `Err(message)` (polled on the panicking thread, so [`message`]
/// finds the hook's location).
pub struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> CatchUnwind<F> {
    pub fn new(future: F) -> Self {
        CatchUnwind(Box::pin(future))
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(message(&*payload))),
        }
    }
}
