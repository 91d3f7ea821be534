package io.axual.connect.plugins.salesforce.jni;

/**
 * The JNI surface implemented by the Rust cdylib {@code salesforce_sink_jni}
 * (symbols {@code Java_io_axual_connect_plugins_salesforce_jni_NativeSink_<method>}).
 *
 * <p>Exactly one crossing per {@code put}: everything goes in and out as byte buffers whose
 * layouts are fixed in ARCHITECTURE.md. Every method may throw {@link NativeSinkException}.
 * Use {@link NativeSinkHandle} rather than calling these directly: it guards against using or
 * freeing a handle after close.
 */
final class NativeSink {
    private NativeSink() {
    }

    /** Parses the config buffer and builds the task; returns an opaque handle. */
    static native long open(byte[] config);

    /** Decodes, converts and writes a batch buffer; returns the outcome buffer. */
    static native byte[] put(long handle, byte[] batch);

    /**
     * The Collections request bodies a batch buffer becomes, without sending anything: the
     * conversion path alone, for the conversion benchmark and diagnostics.
     */
    static native byte[] render(long handle, byte[] batch);

    /** Log events recorded since the last drain (layout of the outcome's log section). */
    static native byte[] drainLogs(long handle);

    /** Frees the handle. Must be called at most once per handle. */
    static native void close(long handle);

    /** Native sinks opened and not yet freed by this copy of the library (leak checks). */
    static native long liveHandles();
}
