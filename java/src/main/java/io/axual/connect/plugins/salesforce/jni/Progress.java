package io.axual.connect.plugins.salesforce.jni;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

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

    /** Health states (rust/core/src/metrics.rs HealthState). */
    public static final int HEALTH_OK = 0;
    public static final int HEALTH_QUOTA_RESERVE = 1;
    public static final int HEALTH_SALESFORCE_UNAVAILABLE = 2;
    /** The oldest unfinished record is older than salesforce.health.stall.threshold.ms (SPEC §11). */
    public static final int HEALTH_STALLED = 3;
    private static final String[] HEALTH_NAMES = {"OK", "QUOTA_RESERVE", "SALESFORCE_UNAVAILABLE", "STALLED"};

    private final long[] seqs;
    private final byte[] statuses;
    private final String[] messages;
    private final int unfinished;
    private final int requestsInFlight;
    private final Map<String, Long> metrics;
    private final int healthState;
    private final long healthSinceEpochMs;
    private final String healthMessage;
    private final List<LogEvent> logs;

    private Progress(long[] seqs, byte[] statuses, String[] messages, int unfinished, int requestsInFlight,
            Map<String, Long> metrics, int healthState, long healthSinceEpochMs, String healthMessage,
            List<LogEvent> logs) {
        this.metrics = metrics;
        this.healthState = healthState;
        this.healthSinceEpochMs = healthSinceEpochMs;
        this.healthMessage = healthMessage;
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
            int metricCount = in.getInt();
            if (metricCount < 0 || metricCount > in.remaining() / 12) {
                throw new NativeSinkException("malformed progress buffer: " + metricCount + " metrics");
            }
            Map<String, Long> metrics = new LinkedHashMap<>();
            for (int i = 0; i < metricCount; i++) {
                String name = readStr(in);
                metrics.put(name, in.getLong());
            }
            int healthState = in.get() & 0xFF;
            long healthSince = in.getLong();
            String healthMessage = readStr(in);
            List<LogEvent> logs = readLogs(in);
            ensureConsumed(in);
            return new Progress(seqs, statuses, messages, unfinished, requestsInFlight,
                    Collections.unmodifiableMap(metrics), healthState, healthSince, healthMessage, logs);
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

    /** The task's metrics by name (SPEC §10; names in rust/core/src/metrics.rs), totals since open. */
    public Map<String, Long> metrics() {
        return metrics;
    }

    /**
     * {@link #HEALTH_OK}, {@link #HEALTH_QUOTA_RESERVE}, {@link #HEALTH_SALESFORCE_UNAVAILABLE},
     * {@link #HEALTH_STALLED}, or a newer state.
     */
    public int healthState() {
        return healthState;
    }

    public long healthSinceEpochMs() {
        return healthSinceEpochMs;
    }

    /** What holds the task back and what to do; empty when OK. */
    public String healthMessage() {
        return healthMessage;
    }

    public static String healthName(int state) {
        return state >= 0 && state < HEALTH_NAMES.length ? HEALTH_NAMES[state] : "UNKNOWN_" + state;
    }

    public List<LogEvent> logs() {
        return logs;
    }
}
