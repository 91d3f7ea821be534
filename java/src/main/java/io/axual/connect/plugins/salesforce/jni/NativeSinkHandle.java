package io.axual.connect.plugins.salesforce.jni;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.AbstractMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Owns one native handle. The methods are synchronized so that a {@code close} arriving from
 * another thread waits for a running {@code put} instead of freeing memory under it; the
 * AtomicBoolean makes a second close a no-op (a double free in native code would crash the JVM).
 */
public final class NativeSinkHandle implements NativeWriter {
    private static final byte[] NO_LOGS = {0, 0, 0, 0};

    private final long handle;
    private final AtomicBoolean closed = new AtomicBoolean(false);

    private NativeSinkHandle(long handle) {
        this.handle = handle;
    }

    /**
     * Loads the native library if needed and opens a native sink.
     *
     * @param config the config buffer from {@link ConfigEncoder}
     * @throws NativeSinkException when the native side rejects the configuration or cannot start
     */
    public static NativeSinkHandle open(byte[] config) {
        NativeLibrary.load();
        return new NativeSinkHandle(NativeSink.open(config));
    }

    /**
     * What a task would refuse of this config buffer ({@link ConfigEncoder}), checked by the native
     * parser without opening a sink: {@code null} when it would accept it, else the key and why.
     *
     * @throws NativeSinkException when the buffer cannot be read at all
     * @throws LinkageError when the native library cannot be loaded on this worker
     */
    public static Map.Entry<String, String> checkConfig(byte[] config) {
        NativeLibrary.load();
        ByteBuffer answer = ByteBuffer.wrap(NativeSink.checkConfig(config));
        if (!answer.hasRemaining()) {
            return null;
        }
        return new AbstractMap.SimpleImmutableEntry<>(readString(answer), readString(answer));
    }

    private static String readString(ByteBuffer buffer) {
        byte[] bytes = new byte[buffer.getInt()];
        buffer.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    @Override
    public synchronized byte[] put(long firstSeq, byte[] batch) {
        ensureOpen();
        return NativeSink.put(handle, firstSeq, batch);
    }

    @Override
    public synchronized byte[] flush(long timeoutMs, boolean sendPartFilledJobs) {
        ensureOpen();
        return NativeSink.flush(handle, timeoutMs, sendPartFilledJobs);
    }

    @Override
    public synchronized void abandon(long[] seqs, long waitMs) {
        ensureOpen();
        java.nio.ByteBuffer buffer = java.nio.ByteBuffer.allocate(seqs.length * Long.BYTES);
        for (long seq : seqs) {
            buffer.putLong(seq);
        }
        NativeSink.abandon(handle, buffer.array(), waitMs);
    }

    /** The request bodies {@code batch} becomes, without sending them (benchmarks, diagnostics). */
    public synchronized byte[] render(byte[] batch) {
        ensureOpen();
        return NativeSink.render(handle, batch);
    }

    @Override
    public synchronized byte[] drainLogs() {
        if (closed.get()) {
            return NO_LOGS;
        }
        byte[] logs = NativeSink.drainLogs(handle);
        return logs == null ? NO_LOGS : logs;
    }

    @Override
    public synchronized void close() {
        if (closed.compareAndSet(false, true)) {
            NativeSink.close(handle);
        }
    }

    private void ensureOpen() {
        if (closed.get()) {
            throw new IllegalStateException("the native Salesforce sink has been closed");
        }
    }

    @Override
    public String toString() {
        return "NativeSinkHandle{closed=" + closed.get() + "}";
    }
}
