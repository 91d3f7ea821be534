//! JNI entry points of `io.axual.connect.plugins.salesforce.jni.NativeSink`: bytes in, bytes out.
//!
//! The only file that knows about the JVM. Every entry point catches panics and turns them, like
//! every other error, into a `NativeSinkException` on the calling Java thread: a native failure
//! fails the task, never the worker. Rust keeps no JVM references between calls.

use jni::objects::{JByteArray, JClass};
use jni::sys::{jboolean, jbyteArray, jlong};
use jni::JNIEnv;
use salesforce_sink_core::{FlushScope, SalesforceSink, SinkError};
use std::panic::{catch_unwind, AssertUnwindSafe};

const EXCEPTION_CLASS: &str = "io/axual/connect/plugins/salesforce/jni/NativeSinkException";
/// For a call that took nothing and may succeed later (`SinkError::NotReady`).
const RETRIABLE_CLASS: &str = "io/axual/connect/plugins/salesforce/jni/NativeRetriableException";

/// Why an entry point failed: the message, and the Java exception class that carries it.
struct Failure {
    class: &'static str,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { class: EXCEPTION_CLASS, message }
    }
}

impl From<SinkError> for Failure {
    fn from(e: SinkError) -> Self {
        let class = if matches!(e, SinkError::NotReady { .. }) { RETRIABLE_CLASS } else { EXCEPTION_CLASS };
        Failure { class, message: e.to_string() }
    }
}

/// Runs `body`, turning an error or a panic into a pending Java exception and `default` as the
/// return value (ignored by the JVM once an exception is pending).
fn guarded<T>(env: &mut JNIEnv, entry_point: &str, default: T, body: impl FnOnce(&mut JNIEnv) -> Result<T, Failure>) -> T {
    salesforce_sink_core::panics::install_hook();
    let result = catch_unwind(AssertUnwindSafe(|| body(env)));
    let Failure { class, message } = match result {
        Ok(Ok(value)) => return value,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            Failure::from(format!("native panic in {entry_point}: {}", salesforce_sink_core::panics::message(&*payload)))
        }
    };
    if env.exception_check().unwrap_or(false) {
        return default; // a JNI call already threw; keep that exception
    }
    if env.throw_new(class, &message).is_err() && env.throw_new(EXCEPTION_CLASS, &message).is_err() {
        let _ = env.throw_new("java/lang/RuntimeException", &message);
    }
    default
}

fn sink<'a>(handle: jlong) -> Result<&'a SalesforceSink, String> {
    if handle == 0 {
        return Err("the native sink is closed".into());
    }
    // SAFETY: handles come from `open` (Box::into_raw) and Java stops using one before `close`.
    Ok(unsafe { &*(handle as *const SalesforceSink) })
}

fn bytes_in(env: &mut JNIEnv, array: &JByteArray) -> Result<Vec<u8>, String> {
    env.convert_byte_array(array).map_err(|e| format!("cannot read the byte array from Java: {e}"))
}

fn bytes_out(env: &mut JNIEnv, bytes: &[u8]) -> Result<jbyteArray, String> {
    env.byte_array_from_slice(bytes)
        .map(|a| a.into_raw())
        .map_err(|e| format!("cannot hand {} bytes to Java: {e}", bytes.len()))
}

#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_open<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    config: JByteArray<'l>,
) -> jlong {
    guarded(&mut env, "open", 0, |env| {
        let config = bytes_in(env, &config)?;
        let sink = SalesforceSink::open(&config)?;
        Ok(Box::into_raw(Box::new(sink)) as jlong)
    })
}

/// What a task would refuse of this config buffer, without opening anything: empty when the
/// config is good, else `str key, str reason` (wire `str`s) of the first problem.
#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_checkConfig<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    config: JByteArray<'l>,
) -> jbyteArray {
    guarded(&mut env, "checkConfig", std::ptr::null_mut(), |env| {
        let config = bytes_in(env, &config)?;
        let answer = SalesforceSink::check_config_answer(&config)?;
        Ok(bytes_out(env, &answer)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_put<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    first_seq: jlong,
    batch: JByteArray<'l>,
) -> jbyteArray {
    guarded(&mut env, "put", std::ptr::null_mut(), |env| {
        let sink = sink(handle)?;
        let batch = bytes_in(env, &batch)?;
        let progress = sink.put(&batch, first_seq)?;
        Ok(bytes_out(env, &progress)?)
    })
}

/// Collects finished records, waiting up to `timeout_ms` for the buffer to drain (0: no wait);
/// part-filled Bulk jobs are sent only with `send_part_filled_jobs` (not before a revocation).
#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_flush<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    timeout_ms: jlong,
    send_part_filled_jobs: jboolean,
) -> jbyteArray {
    guarded(&mut env, "flush", std::ptr::null_mut(), |env| {
        let timeout = std::time::Duration::from_millis(timeout_ms.max(0) as u64);
        let scope = if send_part_filled_jobs != 0 { FlushScope::Everything } else { FlushScope::KeepPartFilledJobs };
        let progress = sink(handle)?.flush(timeout, scope)?;
        Ok(bytes_out(env, &progress)?)
    })
}

/// Gives up the unfinished records among the given sequence numbers (big-endian i64s), after
/// their requests in flight answered or `wait_ms` passed.
#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_abandon<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    seqs: JByteArray<'l>,
    wait_ms: jlong,
) {
    guarded(&mut env, "abandon", (), |env| {
        let seqs = bytes_in(env, &seqs)?;
        let wait = std::time::Duration::from_millis(wait_ms.max(0) as u64);
        Ok(sink(handle)?.abandon_within(&seqs, wait)?)
    })
}

/// The request bodies a batch becomes, without sending them (conversion benchmark, diagnostics).
#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_render<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    batch: JByteArray<'l>,
) -> jbyteArray {
    guarded(&mut env, "render", std::ptr::null_mut(), |env| {
        let sink = sink(handle)?;
        let batch = bytes_in(env, &batch)?;
        let bodies = sink.render(&batch)?;
        Ok(bytes_out(env, &bodies)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_drainLogs<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> jbyteArray {
    guarded(&mut env, "drainLogs", std::ptr::null_mut(), |env| {
        let logs = sink(handle)?.drain_logs();
        Ok(bytes_out(env, &logs)?)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_close<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
) {
    guarded(&mut env, "close", (), |_| {
        if handle != 0 {
            // SAFETY: see `sink`; Java's AtomicBoolean guard makes this the only close of `handle`.
            let sink = unsafe { Box::from_raw(handle as *mut SalesforceSink) };
            sink.close();
        }
        Ok(())
    })
}

/// Native sinks opened and not yet freed in this copy of the library (leak checks in tests).
#[no_mangle]
pub extern "system" fn Java_io_axual_connect_plugins_salesforce_jni_NativeSink_liveHandles<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
) -> jlong {
    guarded(&mut env, "liveHandles", 0, |_| Ok(salesforce_sink_core::live_sinks()))
}
