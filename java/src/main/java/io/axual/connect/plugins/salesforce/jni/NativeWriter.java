package io.axual.connect.plugins.salesforce.jni;

/**
 * What the task needs from an open native sink. {@link NativeSinkHandle} is the real one; tests
 * supply doubles so the task's bookkeeping can be exercised without the native library.
 */
public interface NativeWriter extends AutoCloseable {
    /** Sends one batch buffer; returns the outcome buffer. */
    byte[] put(byte[] batch);

    /** Log events recorded since the last drain (may be empty, never null). */
    byte[] drainLogs();

    /** Frees native resources; calling it more than once is harmless. */
    @Override
    void close();
}
