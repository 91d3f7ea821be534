package io.axual.connect.plugins.salesforce.jni;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * An independent decoder of the batch and config buffers, written from ARCHITECTURE.md only (it
 * shares no code with the encoders), so round trips check the encoders against the spec.
 */
public final class ReferenceDecoder {
    private ReferenceDecoder() {
    }

    /** A decoded tagged value: the tag and a comparable Java form of the payload. */
    public static final class V {
        public final int tag;
        public final Object value;

        public V(int tag, Object value) {
            this.tag = tag;
            this.value = value;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof V && ((V) o).tag == tag && Objects.equals(((V) o).value, value);
        }

        @Override
        public int hashCode() {
            return Objects.hash(tag, value);
        }

        @Override
        public String toString() {
            return "V(" + tag + ", " + value + ")";
        }
    }

    public static final class Rec {
        public String topic;
        public int partition;
        public long offset;
        public V key;
        public V value;
        public int headerKind;
        /** kind 1, 2: hex of the raw bytes; kind 3: the Java type name. */
        public String header;
        /** The original coordinates, when the record carries them (they differ); else null. */
        public String originalTopic;
        public int originalPartition;
        public long originalOffset;
    }

    public static List<Rec> decodeBatch(byte[] buffer) {
        ByteBuffer in = ByteBuffer.wrap(buffer);
        int version = in.get() & 0xFF;
        if (version != 2) {
            throw new AssertionError("version " + version);
        }
        int n = in.getInt();
        List<Rec> records = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Rec r = new Rec();
            r.topic = str(in);
            r.partition = in.getInt();
            r.offset = in.getLong();
            r.key = value(in);
            r.value = value(in);
            r.headerKind = in.get() & 0xFF;
            if (r.headerKind == 1 || r.headerKind == 2) {
                r.header = hex(bytes(in));
            } else if (r.headerKind == 3) {
                r.header = str(in);
            } else if (r.headerKind != 0) {
                throw new AssertionError("header kind " + r.headerKind);
            }
            int hasOriginal = in.get() & 0xFF;
            if (hasOriginal == 1) {
                r.originalTopic = str(in);
                r.originalPartition = in.getInt();
                r.originalOffset = in.getLong();
            } else if (hasOriginal != 0) {
                throw new AssertionError("original coordinates flag " + hasOriginal);
            }
            records.add(r);
        }
        if (in.hasRemaining()) {
            throw new AssertionError(in.remaining() + " trailing bytes");
        }
        return records;
    }

    public static Map<String, String> decodeConfig(byte[] buffer) {
        ByteBuffer in = ByteBuffer.wrap(buffer);
        int n = in.getInt();
        Map<String, String> map = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
            String k = str(in);
            if (map.put(k, str(in)) != null) {
                throw new AssertionError("duplicate key " + k);
            }
        }
        if (in.hasRemaining()) {
            throw new AssertionError(in.remaining() + " trailing bytes");
        }
        return map;
    }

    static V value(ByteBuffer in) {
        int tag = in.get() & 0xFF;
        switch (tag) {
            case 0:
                return new V(0, null);
            case 1: {
                int b = in.get();
                if (b != 0 && b != 1) {
                    throw new AssertionError("boolean byte " + b);
                }
                return new V(1, b == 1);
            }
            case 2:
                return new V(2, in.getLong());
            case 3:
                return new V(3, in.getFloat());
            case 4:
                return new V(4, in.getDouble());
            case 5:
                return new V(5, str(in));
            case 6:
                return new V(6, hex(bytes(in)));
            case 7: {
                int n = in.getInt();
                List<V> list = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    list.add(value(in));
                }
                return new V(7, list);
            }
            case 8:
            case 9: {
                int n = in.getInt();
                Map<String, V> map = new LinkedHashMap<>();
                for (int i = 0; i < n; i++) {
                    String k = str(in);
                    map.put(k, value(in));
                }
                return new V(tag, map);
            }
            case 10:
            case 11:
                return new V(tag, in.getInt());
            case 12:
                return new V(12, in.getLong());
            case 13: {
                int scale = in.getInt();
                return new V(13, new BigDecimal(new BigInteger(bytes(in)), scale));
            }
            default:
                throw new AssertionError("tag " + tag);
        }
    }

    static String str(ByteBuffer in) {
        return new String(bytes(in), StandardCharsets.UTF_8);
    }

    static byte[] bytes(ByteBuffer in) {
        int len = in.getInt();
        byte[] b = new byte[len];
        in.get(b);
        return b;
    }

    public static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xFF));
        }
        return sb.toString();
    }

    /** Builds an outcome buffer as the native side would. statuses[i] 2 and 3 take messages[i]. */
    /** A progress buffer as the native side writes it (ARCHITECTURE.md). */
    public static byte[] progress(long[] seqs, int[] statuses, String[] messages, int unfinished, int inFlight,
            int[] logLevels, String[] logs) {
        return progress(seqs, statuses, messages, unfinished, inFlight, new java.util.LinkedHashMap<>(), 0, 0L, "",
                logLevels, logs);
    }

    /** With a metrics section (name → value) and a health (state, since, message). */
    public static byte[] progress(long[] seqs, int[] statuses, String[] messages, int unfinished, int inFlight,
            java.util.Map<String, Long> metrics, int healthState, long healthSince, String healthMessage,
            int[] logLevels, String[] logs) {
        ByteBuffer out = ByteBuffer.allocate(1 << 16);
        out.putInt(seqs.length);
        for (int i = 0; i < seqs.length; i++) {
            out.putLong(seqs[i]);
            out.put((byte) statuses[i]);
            if (statuses[i] == 2) {
                putStr(out, messages[i]);
            }
        }
        out.putInt(unfinished);
        out.putInt(inFlight);
        out.putInt(metrics.size());
        for (java.util.Map.Entry<String, Long> metric : metrics.entrySet()) {
            putStr(out, metric.getKey());
            out.putLong(metric.getValue());
        }
        out.put((byte) healthState);
        out.putLong(healthSince);
        putStr(out, healthMessage);
        out.putInt(logs.length);
        for (int i = 0; i < logs.length; i++) {
            out.put((byte) logLevels[i]);
            putStr(out, logs[i]);
        }
        byte[] result = new byte[out.position()];
        out.flip();
        out.get(result);
        return result;
    }

    static void putStr(ByteBuffer out, String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.putInt(b.length);
        out.put(b);
    }
}
