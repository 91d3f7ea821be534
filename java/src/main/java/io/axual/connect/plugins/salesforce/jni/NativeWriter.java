package io.axual.connect.plugins.salesforce.jni;

/**
 * What the task needs from an open native sink. {@link NativeSinkHandle} is the real one; tests
 * supply doubles so the task's bookkeeping can be exercised without the native library.
 */
public interface NativeWriter extends AutoCloseable {
    /** Hands one batch buffer (records numbered from {@code firstSeq}) to the pipeline; returns the progress buffer. */
    byte[] put(long firstSeq, byte[] batch);

    /**
     * Collects finished records, waiting up to {@code timeoutMs} for the buffer to drain; returns
     * the progress buffer. Part-filled Bulk jobs go only with {@code sendPartFilledJobs}: the
     * commit before a revocation or a stop keeps them back, rather than start a job that is
     * aborted or orphaned moments later.
     */
    byte[] flush(long timeoutMs, boolean sendPartFilledJobs);

    /**
     * Gives up the unfinished records among {@code seqs} (their partitions were revoked or the
     * task stops), after their requests in flight answered or {@code waitMs} passed.
     */
    void abandon(long[] seqs, long waitMs);

    /** Log events recorded since the last drain (may be empty, never null). */
    byte[] drainLogs();

    /** Frees native resources; calling it more than once is harmless. */
    @Override
    void close();
}
