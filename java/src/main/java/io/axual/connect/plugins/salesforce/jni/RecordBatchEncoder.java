package io.axual.connect.plugins.salesforce.jni;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Date;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Time;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.sink.SinkRecord;

/**
 * Encodes Connect {@link SinkRecord}s into the batch buffer of ARCHITECTURE.md ("Wire format").
 *
 * <p>Values are encoded by their schema when they have one (so logical types are recognised by
 * schema name) and by their Java type otherwise. A value that fits neither is not guessed at: the
 * record is dropped from the buffer and reported as rejected, so the task can route it to the DLQ
 * like any other non-recoverable record error. Not thread-safe: one encoder per task.
 */
public final class RecordBatchEncoder {
    /** 2: records end with their original coordinates where an SMT changed them. */
    static final int VERSION = 2;
    /** Deepest nesting the native decoder accepts ({@code wire::batch::MAX_DEPTH}). */
    static final int MAX_NESTING = 64;

    static final int TAG_NULL = 0;
    static final int TAG_BOOLEAN = 1;
    static final int TAG_INT = 2;
    static final int TAG_FLOAT32 = 3;
    static final int TAG_FLOAT64 = 4;
    static final int TAG_STRING = 5;
    static final int TAG_BYTES = 6;
    static final int TAG_ARRAY = 7;
    static final int TAG_MAP = 8;
    static final int TAG_STRUCT = 9;
    static final int TAG_DATE = 10;
    static final int TAG_TIME = 11;
    static final int TAG_TIMESTAMP = 12;
    static final int TAG_DECIMAL = 13;

    static final int HEADER_ABSENT = 0;
    static final int HEADER_STRING = 1;
    static final int HEADER_BYTES = 2;
    static final int HEADER_OTHER = 3;

    /** {@code SinkRecord.originalTopic()} and friends exist (Kafka 3.6+, KIP-793). */
    private static final boolean ORIGINAL_COORDINATES = hasOriginalCoordinates();

    private static final long MILLIS_PER_DAY = 24L * 60 * 60 * 1000;
    private static final int INITIAL_CAPACITY = 64 * 1024;
    // A buffer that grew beyond this for one huge batch is dropped afterwards.
    private static final int RETAINED_CAPACITY = 16 * 1024 * 1024;

    /**
     * Encoded bytes after which a batch is cut into another native call: well below the 2 GiB a
     * Java array can hold, so a huge {@code put} is several calls instead of a task that fails on
     * every restart.
     */
    public static final int DEFAULT_CHUNK_BYTES = 512 * 1024 * 1024;

    private final String operationHeaderName; // null when header routing is disabled
    private final int chunkBytes;
    private final WireWriter out = new WireWriter(INITIAL_CAPACITY);
    private int nesting;

    /**
     * @param operationHeaderName the header carrying the per-record operation, or null when
     *                            {@code salesforce.operation.header.enabled} is false
     */
    public RecordBatchEncoder(String operationHeaderName) {
        this(operationHeaderName, DEFAULT_CHUNK_BYTES);
    }

    /** @param chunkBytes see {@link #DEFAULT_CHUNK_BYTES}; smaller in tests */
    public RecordBatchEncoder(String operationHeaderName, int chunkBytes) {
        this.operationHeaderName = operationHeaderName;
        this.chunkBytes = chunkBytes;
    }

    /** The whole batch as one buffer (benchmarks, diagnostics); see {@link #encodeChunks}. */
    public EncodedBatch encode(Collection<SinkRecord> records) {
        List<EncodedBatch> chunks = encodeChunks(records, Integer.MAX_VALUE);
        return chunks.get(0);
    }

    /** The batch as buffers of at most about {@code chunkBytes} each, records in order. */
    public List<EncodedBatch> encodeChunks(Collection<SinkRecord> records) {
        return encodeChunks(records, chunkBytes);
    }

    private List<EncodedBatch> encodeChunks(Collection<SinkRecord> records, int limit) {
        List<EncodedBatch> chunks = new ArrayList<>(1);
        out.reset();
        out.shrinkTo(RETAINED_CAPACITY);
        List<SinkRecord> sent = new ArrayList<>(records.size());
        List<EncodedBatch.Rejected> rejected = new ArrayList<>();
        int countAt = startChunk();
        for (SinkRecord record : records) {
            int mark = out.position();
            try {
                writeRecord(record);
                sent.add(record);
            } catch (DataException e) {
                out.truncate(mark);
                rejected.add(new EncodedBatch.Rejected(record, e));
            } catch (IllegalStateException e) { // the buffer cannot grow any further
                out.truncate(mark);
                if (!sent.isEmpty() || !rejected.isEmpty()) {
                    chunks.add(finishChunk(countAt, sent, rejected));
                    sent = new ArrayList<>();
                    rejected = new ArrayList<>();
                    countAt = startChunk();
                }
                rejected.add(new EncodedBatch.Rejected(record, new DataException("Cannot pass the record of "
                        + position(record) + " to Salesforce: it encodes to more than 2 GiB", e)));
            }
            if (out.position() >= limit) {
                chunks.add(finishChunk(countAt, sent, rejected));
                sent = new ArrayList<>();
                rejected = new ArrayList<>();
                countAt = startChunk();
            }
        }
        if (chunks.isEmpty() || !sent.isEmpty() || !rejected.isEmpty()) {
            chunks.add(finishChunk(countAt, sent, rejected));
        }
        out.reset();
        return chunks;
    }

    private int startChunk() {
        out.reset();
        out.writeU8(VERSION);
        int countAt = out.position();
        out.writeI32(0);
        return countAt;
    }

    private EncodedBatch finishChunk(int countAt, List<SinkRecord> sent, List<EncodedBatch.Rejected> rejected) {
        out.putI32(countAt, sent.size());
        return new EncodedBatch(out.toByteArray(), sent,
                rejected.isEmpty() ? Collections.emptyList() : rejected);
    }

    private void writeRecord(SinkRecord record) {
        out.writeStr(record.topic());
        Integer partition = record.kafkaPartition();
        out.writeI32(partition == null ? -1 : partition);
        out.writeI64(record.kafkaOffset());
        writeField(record, "key", record.keySchema(), record.key());
        writeField(record, "value", record.valueSchema(), record.value());
        writeOperationHeader(record);
        writeOriginalCoordinates(record);
    }

    /**
     * Where the record was read from, when an SMT changed topic, partition or offset: the value of
     * {@code salesforce.idempotency.field} must name the Kafka record itself (SPEC §12), while
     * {@code ${topic}} routes by the transformed topic. Absent on workers before Kafka 3.6.
     */
    private void writeOriginalCoordinates(SinkRecord record) {
        if (!ORIGINAL_COORDINATES) {
            out.writeU8(0);
            return;
        }
        String topic = record.originalTopic();
        Integer partition = record.originalKafkaPartition();
        long offset = record.originalKafkaOffset();
        if (topic.equals(record.topic()) && java.util.Objects.equals(partition, record.kafkaPartition())
                && offset == record.kafkaOffset()) {
            out.writeU8(0);
            return;
        }
        out.writeU8(1);
        out.writeStr(topic);
        out.writeI32(partition == null ? -1 : partition);
        out.writeI64(offset);
    }

    /** Whether this worker's records know their original coordinates (Kafka 3.6+). */
    public static boolean originalCoordinatesKnown() {
        return ORIGINAL_COORDINATES;
    }

    private static boolean hasOriginalCoordinates() {
        try {
            SinkRecord.class.getMethod("originalKafkaOffset");
            return true;
        } catch (NoSuchMethodException e) {
            return false;
        }
    }

    private void writeField(SinkRecord record, String what, Schema schema, Object value) {
        try {
            writeValue(schema, value);
        } catch (DataException | ClassCastException | ArithmeticException | NumberFormatException e) {
            throw new DataException("Cannot pass the record " + what + " of " + position(record)
                    + " to Salesforce: " + e.getMessage(), e);
        }
    }

    static String position(SinkRecord record) {
        return "topic " + record.topic() + ", partition " + record.kafkaPartition() + ", offset "
                + record.kafkaOffset();
    }

    private void writeOperationHeader(SinkRecord record) {
        Header header = operationHeaderName == null ? null : record.headers().lastWithName(operationHeaderName);
        Object value = header == null ? null : header.value();
        if (value == null) {
            // A header without a value routes like a missing one: the configured operation.
            out.writeU8(HEADER_ABSENT);
        } else if (value instanceof String) {
            out.writeU8(HEADER_STRING);
            out.writeBytes(((String) value).getBytes(StandardCharsets.UTF_8));
        } else if (value instanceof byte[]) {
            out.writeU8(HEADER_BYTES);
            out.writeBytes((byte[]) value);
        } else if (value instanceof ByteBuffer) {
            out.writeU8(HEADER_BYTES);
            out.writeBytes((ByteBuffer) value);
        } else {
            out.writeU8(HEADER_OTHER);
            out.writeStr(value.getClass().getName());
        }
    }

    private void writeValue(Schema schema, Object value) {
        // The native decoder refuses a whole batch with deeper values: refuse the one record here.
        if (nesting > MAX_NESTING) {
            throw new DataException("the value is nested deeper than " + MAX_NESTING
                    + " levels of Map/Struct/array; Salesforce cannot take it");
        }
        nesting++;
        try {
            if (value == null) {
                out.writeU8(TAG_NULL);
            } else if (schema == null || !writeBySchema(schema, value)) {
                writeByJavaType(value);
            }
        } finally {
            nesting--;
        }
    }

    /**
     * Encodes by the Connect schema; returns false when the Java value does not have the shape the
     * schema promises, so the caller falls back to the Java type.
     */
    private boolean writeBySchema(Schema schema, Object value) {
        String name = schema.name();
        if (name != null) {
            switch (name) {
                case Decimal.LOGICAL_NAME:
                    if (value instanceof BigDecimal) {
                        writeDecimal((BigDecimal) value);
                        return true;
                    }
                    if (value instanceof byte[] && schema.parameters() != null
                            && schema.parameters().get(Decimal.SCALE_FIELD) != null) {
                        // Raw form: unscaled bytes, scale from the schema parameters.
                        writeDecimal(Decimal.toLogical(schema, (byte[]) value));
                        return true;
                    }
                    return false;
                case Date.LOGICAL_NAME:
                    if (value instanceof java.util.Date) {
                        out.writeU8(TAG_DATE);
                        out.writeI32(Math.toIntExact(Math.floorDiv(((java.util.Date) value).getTime(), MILLIS_PER_DAY)));
                        return true;
                    }
                    if (value instanceof Integer) {
                        out.writeU8(TAG_DATE);
                        out.writeI32((Integer) value);
                        return true;
                    }
                    return false;
                case Time.LOGICAL_NAME:
                    if (value instanceof java.util.Date) {
                        out.writeU8(TAG_TIME);
                        out.writeI32((int) Math.floorMod(((java.util.Date) value).getTime(), MILLIS_PER_DAY));
                        return true;
                    }
                    if (value instanceof Integer) {
                        out.writeU8(TAG_TIME);
                        out.writeI32((Integer) value);
                        return true;
                    }
                    return false;
                case Timestamp.LOGICAL_NAME:
                    if (value instanceof java.util.Date) {
                        out.writeU8(TAG_TIMESTAMP);
                        out.writeI64(((java.util.Date) value).getTime());
                        return true;
                    }
                    if (value instanceof Long) {
                        out.writeU8(TAG_TIMESTAMP);
                        out.writeI64((Long) value);
                        return true;
                    }
                    return false;
                default:
                    break; // other named schemas are encoded by their type
            }
        }
        switch (schema.type()) {
            case INT8:
            case INT16:
            case INT32:
            case INT64:
                if (value instanceof Byte || value instanceof Short || value instanceof Integer
                        || value instanceof Long) {
                    out.writeU8(TAG_INT);
                    out.writeI64(((Number) value).longValue());
                    return true;
                }
                return false;
            case FLOAT32:
                if (value instanceof Float) {
                    out.writeU8(TAG_FLOAT32);
                    out.writeF32((Float) value);
                    return true;
                }
                return false;
            case FLOAT64:
                if (value instanceof Double) {
                    out.writeU8(TAG_FLOAT64);
                    out.writeF64((Double) value);
                    return true;
                }
                return false;
            case BOOLEAN:
            case STRING:
            case BYTES:
                return false; // the Java type says it all
            case ARRAY:
                if (value instanceof Collection) {
                    writeArray(schema.valueSchema(), (Collection<?>) value);
                    return true;
                }
                return false;
            case MAP:
                if (value instanceof Map) {
                    writeMap(schema.valueSchema(), (Map<?, ?>) value);
                    return true;
                }
                return false;
            case STRUCT:
                if (value instanceof Struct) {
                    writeStruct((Struct) value);
                    return true;
                }
                return false;
            default:
                return false;
        }
    }

    private void writeByJavaType(Object value) {
        if (value instanceof String) {
            out.writeU8(TAG_STRING);
            out.writeStr((String) value);
        } else if (value instanceof Boolean) {
            out.writeU8(TAG_BOOLEAN);
            out.writeU8((Boolean) value ? 1 : 0);
        } else if (value instanceof Integer || value instanceof Long || value instanceof Short
                || value instanceof Byte) {
            out.writeU8(TAG_INT);
            out.writeI64(((Number) value).longValue());
        } else if (value instanceof Double) {
            out.writeU8(TAG_FLOAT64);
            out.writeF64((Double) value);
        } else if (value instanceof Float) {
            out.writeU8(TAG_FLOAT32);
            out.writeF32((Float) value);
        } else if (value instanceof Struct) {
            writeStruct((Struct) value);
        } else if (value instanceof Map) {
            writeMap(null, (Map<?, ?>) value);
        } else if (value instanceof Collection) {
            writeArray(null, (Collection<?>) value);
        } else if (value instanceof byte[]) {
            out.writeU8(TAG_BYTES);
            out.writeBytes((byte[]) value);
        } else if (value instanceof ByteBuffer) {
            out.writeU8(TAG_BYTES);
            out.writeBytes((ByteBuffer) value);
        } else if (value instanceof BigDecimal) {
            writeDecimal((BigDecimal) value);
        } else if (value instanceof BigInteger) {
            BigInteger big = (BigInteger) value;
            if (big.bitLength() < 64) {
                out.writeU8(TAG_INT);
                out.writeI64(big.longValue());
            } else {
                writeDecimal(new BigDecimal(big));
            }
        } else if (value instanceof java.util.Date) {
            // Without a schema there is no telling Date from Time: a point in time is the safe reading.
            out.writeU8(TAG_TIMESTAMP);
            out.writeI64(((java.util.Date) value).getTime());
        } else if (value instanceof Character) {
            out.writeU8(TAG_STRING);
            out.writeStr(value.toString());
        } else {
            throw new DataException("unsupported Java type " + value.getClass().getName());
        }
    }

    private void writeDecimal(BigDecimal decimal) {
        out.writeU8(TAG_DECIMAL);
        out.writeI32(decimal.scale());
        out.writeBytes(decimal.unscaledValue().toByteArray());
    }

    private void writeArray(Schema elementSchema, Collection<?> values) {
        out.writeU8(TAG_ARRAY);
        out.writeI32(values.size());
        for (Object element : values) {
            writeValue(elementSchema, element);
        }
    }

    private void writeMap(Schema valueSchema, Map<?, ?> map) {
        out.writeU8(TAG_MAP);
        out.writeI32(map.size());
        for (Map.Entry<?, ?> entry : map.entrySet()) {
            out.writeStr(String.valueOf(entry.getKey()));
            writeValue(valueSchema, entry.getValue());
        }
    }

    private void writeStruct(Struct struct) {
        List<Field> fields = struct.schema().fields();
        out.writeU8(TAG_STRUCT);
        out.writeI32(fields.size());
        for (Field field : fields) {
            out.writeStr(field.name());
            // get(Field) applies the field's default for a missing value, like the converters do.
            writeValue(field.schema(), struct.get(field));
        }
    }
}
