package io.axual.connect.plugins.salesforce.jni;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The decoded outcome buffer of one native {@code put} (layout in ARCHITECTURE.md): a status per
 * record in batch order, a message for FAILED and RETRY, the backoff before a redelivery, and the
 * log events recorded during the call. Decoding is strict: a buffer that does not match the
 * layout exactly means Java and Rust disagree, and fails loudly rather than misattributing records.
 */
public final class BatchOutcome {
    public static final int WRITTEN = 0;
    public static final int SKIPPED = 1;
    public static final int FAILED = 2;
    public static final int RETRY = 3;

    private final byte[] statuses;
    private final String[] messages;
    private final long retryBackoffMs;
    private final List<LogEvent> logs;

    private BatchOutcome(byte[] statuses, String[] messages, long retryBackoffMs, List<LogEvent> logs) {
        this.statuses = statuses;
        this.messages = messages;
        this.retryBackoffMs = retryBackoffMs;
        this.logs = logs;
    }

    /**
     * @param expectedRecords how many records the batch buffer held
     * @throws NativeSinkException when the buffer does not follow the outcome layout
     */
    public static BatchOutcome decode(byte[] buffer, int expectedRecords) {
        if (buffer == null) {
            throw new NativeSinkException("malformed outcome buffer: null");
        }
        ByteBuffer in = ByteBuffer.wrap(buffer);
        try {
            int count = in.getInt();
            if (count != expectedRecords) {
                throw new NativeSinkException("malformed outcome buffer: " + count + " outcomes for a batch of "
                        + expectedRecords + " records");
            }
            byte[] statuses = new byte[count];
            String[] messages = new String[count];
            for (int i = 0; i < count; i++) {
                int status = in.get() & 0xFF;
                if (status > RETRY) {
                    throw new NativeSinkException("malformed outcome buffer: unknown status " + status
                            + " for record " + i);
                }
                statuses[i] = (byte) status;
                if (status == FAILED || status == RETRY) {
                    messages[i] = readStr(in);
                }
            }
            long retryBackoffMs = in.getLong();
            List<LogEvent> logs = readLogs(in);
            ensureConsumed(in);
            return new BatchOutcome(statuses, messages, retryBackoffMs, logs);
        } catch (BufferUnderflowException | IllegalArgumentException e) {
            throw new NativeSinkException("malformed outcome buffer: truncated or bad length (" + buffer.length
                    + " bytes)");
        }
    }

    /** Decodes the buffer of {@code drainLogs}: {@code i32 n, n × {u8 level, str message}}. */
    public static List<LogEvent> decodeLogs(byte[] buffer) {
        if (buffer == null || buffer.length == 0) {
            return Collections.emptyList();
        }
        ByteBuffer in = ByteBuffer.wrap(buffer);
        try {
            List<LogEvent> logs = readLogs(in);
            ensureConsumed(in);
            return logs;
        } catch (BufferUnderflowException | IllegalArgumentException e) {
            throw new NativeSinkException("malformed log buffer: truncated or bad length (" + buffer.length
                    + " bytes)");
        }
    }

    private static List<LogEvent> readLogs(ByteBuffer in) {
        int n = in.getInt();
        if (n < 0 || n > in.remaining()) {
            throw new NativeSinkException("malformed log section: " + n + " events");
        }
        if (n == 0) {
            return Collections.emptyList();
        }
        List<LogEvent> logs = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int level = in.get() & 0xFF;
            logs.add(new LogEvent(Math.min(level, LogEvent.ERROR), readStr(in)));
        }
        return logs;
    }

    private static String readStr(ByteBuffer in) {
        int len = in.getInt();
        if (len < 0 || len > in.remaining()) {
            throw new NativeSinkException("malformed buffer: string of " + len + " bytes with " + in.remaining()
                    + " left");
        }
        String s = new String(in.array(), in.arrayOffset() + in.position(), len, StandardCharsets.UTF_8);
        in.position(in.position() + len);
        return s;
    }

    private static void ensureConsumed(ByteBuffer in) {
        if (in.hasRemaining()) {
            throw new NativeSinkException("malformed buffer: " + in.remaining() + " trailing bytes");
        }
    }

    public int size() {
        return statuses.length;
    }

    /** WRITTEN, SKIPPED, FAILED or RETRY. */
    public int status(int index) {
        return statuses[index];
    }

    /** The native message for FAILED and RETRY records; null otherwise. */
    public String message(int index) {
        return messages[index];
    }

    public long retryBackoffMs() {
        return retryBackoffMs;
    }

    public List<LogEvent> logs() {
        return logs;
    }
}
