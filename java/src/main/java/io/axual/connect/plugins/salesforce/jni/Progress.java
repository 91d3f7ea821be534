package io.axual.connect.plugins.salesforce.jni;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The decoded progress buffer that every native call returns (layout in ARCHITECTURE.md): the
 * records finished since the last call, by sequence number, with a message for FAILED ones; how
 * many records are still unfinished in the native pipeline; and the log events of the call.
 * Decoding is strict: a buffer that does not match the layout exactly means Java and Rust
 * disagree, and fails loudly rather than misattributing records.
 */
public final class Progress {
    public static final int WRITTEN = 0;
    public static final int SKIPPED = 1;
    public static final int FAILED = 2;

    private final long[] seqs;
    private final byte[] statuses;
    private final String[] messages;
    private final int unfinished;
    private final int requestsInFlight;
    private final List<LogEvent> logs;

    private Progress(long[] seqs, byte[] statuses, String[] messages, int unfinished, int requestsInFlight,
            List<LogEvent> logs) {
        this.seqs = seqs;
        this.statuses = statuses;
        this.messages = messages;
        this.unfinished = unfinished;
        this.requestsInFlight = requestsInFlight;
        this.logs = logs;
    }

    /** @throws NativeSinkException when the buffer does not follow the progress layout */
    public static Progress decode(byte[] buffer) {
        if (buffer == null) {
            throw new NativeSinkException("malformed progress buffer: null");
        }
        ByteBuffer in = ByteBuffer.wrap(buffer);
        try {
            int count = in.getInt();
            if (count < 0 || count > in.remaining() / 9) {
                throw new NativeSinkException("malformed progress buffer: " + count + " outcomes in " + buffer.length
                        + " bytes");
            }
            long[] seqs = new long[count];
            byte[] statuses = new byte[count];
            String[] messages = new String[count];
            for (int i = 0; i < count; i++) {
                seqs[i] = in.getLong();
                int status = in.get() & 0xFF;
                if (status > FAILED) {
                    throw new NativeSinkException("malformed progress buffer: unknown status " + status
                            + " for record " + seqs[i]);
                }
                statuses[i] = (byte) status;
                if (status == FAILED) {
                    messages[i] = readStr(in);
                }
            }
            int unfinished = in.getInt();
            int requestsInFlight = in.getInt();
            List<LogEvent> logs = readLogs(in);
            ensureConsumed(in);
            return new Progress(seqs, statuses, messages, unfinished, requestsInFlight, logs);
        } catch (BufferUnderflowException | IllegalArgumentException e) {
            throw new NativeSinkException("malformed progress buffer: truncated or bad length (" + buffer.length
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

    /** How many records finished since the last call. */
    public int size() {
        return seqs.length;
    }

    public long seq(int index) {
        return seqs[index];
    }

    /** WRITTEN, SKIPPED or FAILED. */
    public int status(int index) {
        return statuses[index];
    }

    /** The native message of a FAILED record; null otherwise. */
    public String message(int index) {
        return messages[index];
    }

    /** Records submitted and not yet finished (waiting or in flight). */
    public int unfinished() {
        return unfinished;
    }

    public int requestsInFlight() {
        return requestsInFlight;
    }

    public List<LogEvent> logs() {
        return logs;
    }
}
