package io.axual.connect.plugins.salesforce.jni;

/**
 * The JNI surface implemented by the Rust cdylib {@code salesforce_sink_jni}
 * (symbols {@code Java_io_axual_connect_plugins_salesforce_jni_NativeSink_<method>}).
 *
 * <p>Exactly one crossing per {@code put} (and one per {@code preCommit}/{@code flush} to collect
 * outcomes): everything goes in and out as byte buffers whose
 * layouts are fixed in ARCHITECTURE.md. Every method may throw {@link NativeSinkException}.
 * Use {@link NativeSinkHandle} rather than calling these directly: it guards against using or
 * freeing a handle after close.
 */
final class NativeSink {
    private NativeSink() {
    }

    /**
     * Parses the config buffer as {@link #open} does, without building anything or calling
     * Salesforce: an empty array when a task would accept it, else {@code str key, str reason}.
     */
    static native byte[] checkConfig(byte[] config);

    /** Parses the config buffer and builds the task; returns an opaque handle. */
    static native long open(byte[] config);

    /**
     * Decodes a batch buffer, numbers its records from {@code firstSeq} and hands them to the
     * native pipeline without waiting for Salesforce; returns the progress buffer.
     */
    static native byte[] put(long handle, long firstSeq, byte[] batch);

    /**
     * Collects finished records, waiting up to {@code timeoutMs} for the buffer to drain (0: no
     * wait); part-filled Bulk jobs are sent only with {@code sendPartFilledJobs}.
     */
    static native byte[] flush(long handle, long timeoutMs, boolean sendPartFilledJobs);

    /**
     * Gives up the unfinished records among these sequence numbers (big-endian longs), after
     * their requests in flight answered or {@code waitMs} passed.
     */
    static native void abandon(long handle, byte[] seqs, long waitMs);

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
