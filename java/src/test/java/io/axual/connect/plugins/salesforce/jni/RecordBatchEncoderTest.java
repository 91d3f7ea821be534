package io.axual.connect.plugins.salesforce.jni;

import static io.axual.connect.plugins.salesforce.jni.ReferenceDecoder.hex;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.axual.connect.plugins.salesforce.jni.ReferenceDecoder.Rec;
import io.axual.connect.plugins.salesforce.jni.ReferenceDecoder.V;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.kafka.connect.data.Date;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Time;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.Test;

class RecordBatchEncoderTest {

    private static V v(int tag, Object value) {
        return new V(tag, value);
    }

    private static Map<String, V> fields(Object... kv) {
        Map<String, V> map = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            map.put((String) kv[i], (V) kv[i + 1]);
        }
        return map;
    }

    private static SinkRecord record(Schema keySchema, Object key, Schema valueSchema, Object value, long offset) {
        return new SinkRecord("contacts", 3, keySchema, key, valueSchema, value, offset);
    }

    @Test
    void structWithEveryTypeRoundTrips() {
        Schema address = SchemaBuilder.struct().name("Address").field("City", Schema.STRING_SCHEMA).build();
        Schema decimal = Decimal.schema(2);
        Schema schema = SchemaBuilder.struct().name("Contact")
                .field("Active", Schema.BOOLEAN_SCHEMA)
                .field("I8", Schema.INT8_SCHEMA)
                .field("I16", Schema.INT16_SCHEMA)
                .field("I32", Schema.INT32_SCHEMA)
                .field("I64", Schema.INT64_SCHEMA)
                .field("F32", Schema.FLOAT32_SCHEMA)
                .field("F64", Schema.FLOAT64_SCHEMA)
                .field("Name", Schema.STRING_SCHEMA)
                .field("Blob", Schema.BYTES_SCHEMA)
                .field("Birthdate", Date.SCHEMA)
                .field("Alarm", Time.SCHEMA)
                .field("Seen", Timestamp.SCHEMA)
                .field("Amount", decimal)
                .field("Tags", SchemaBuilder.array(Schema.STRING_SCHEMA).build())
                .field("Counts", SchemaBuilder.map(Schema.STRING_SCHEMA, Schema.INT32_SCHEMA).build())
                .field("Address", address)
                .field("Missing", Schema.OPTIONAL_STRING_SCHEMA)
                .field("WithDefault", SchemaBuilder.string().optional().defaultValue("dflt").build())
                .build();
        Map<String, Integer> counts = new LinkedHashMap<>();
        counts.put("a", 1);
        counts.put("b", 2);
        Struct value = new Struct(schema)
                .put("Active", true)
                .put("I8", (byte) -8)
                .put("I16", (short) 1600)
                .put("I32", -32)
                .put("I64", Long.MAX_VALUE)
                .put("F32", 1.5f)
                .put("F64", -2.25d)
                .put("Name", "Zoë 😀")
                .put("Blob", new byte[] {0, 1, (byte) 0xFF})
                .put("Birthdate", new java.util.Date(-86_400_000L * 3)) // 1969-12-29
                .put("Alarm", new java.util.Date(3_600_000L + 1234))
                .put("Seen", new java.util.Date(1_700_000_000_123L))
                .put("Amount", new BigDecimal("-12345678901234567890.05"))
                .put("Tags", Arrays.asList("x", "y"))
                .put("Counts", counts)
                .put("Address", new Struct(address).put("City", "Utrecht"));

        RecordBatchEncoder encoder = new RecordBatchEncoder(null);
        EncodedBatch batch = encoder.encode(List.of(record(Schema.STRING_SCHEMA, "K-1", schema, value, 42)));

        assertTrue(batch.rejected().isEmpty());
        List<Rec> recs = ReferenceDecoder.decodeBatch(batch.buffer());
        assertEquals(1, recs.size());
        Rec r = recs.get(0);
        assertEquals("contacts", r.topic);
        assertEquals(3, r.partition);
        assertEquals(42L, r.offset);
        assertEquals(v(5, "K-1"), r.key);
        assertEquals(0, r.headerKind);

        Map<String, V> expected = fields(
                "Active", v(1, true),
                "I8", v(2, -8L),
                "I16", v(2, 1600L),
                "I32", v(2, -32L),
                "I64", v(2, Long.MAX_VALUE),
                "F32", v(3, 1.5f),
                "F64", v(4, -2.25d),
                "Name", v(5, "Zoë 😀"),
                "Blob", v(6, "0001ff"),
                "Birthdate", v(10, -3),
                "Alarm", v(11, 3_601_234),
                "Seen", v(12, 1_700_000_000_123L),
                "Amount", v(13, new BigDecimal("-12345678901234567890.05")),
                "Tags", v(7, List.of(v(5, "x"), v(5, "y"))),
                "Counts", v(8, fields("a", v(2, 1L), "b", v(2, 2L))),
                "Address", v(9, fields("City", v(5, "Utrecht"))),
                "Missing", v(0, null),
                "WithDefault", v(5, "dflt"));
        assertEquals(v(9, expected), r.value);
        // Struct fields keep schema order.
        assertEquals(new ArrayList<>(expected.keySet()),
                new ArrayList<>(((Map<?, ?>) r.value.value).keySet()));
    }

    @Test
    void schemalessValuesAreEncodedByJavaType() {
        Map<Object, Object> nested = new LinkedHashMap<>();
        nested.put("AccountNumber__c", "A-1");
        Map<Object, Object> value = new LinkedHashMap<>();
        value.put("s", "text");
        value.put("b", false);
        value.put("i", 7);
        value.put("l", 8L);
        value.put("sh", (short) 9);
        value.put("by", (byte) 10);
        value.put("f", 0.5f);
        value.put("d", 0.25d);
        value.put("dec", new BigDecimal("1.230"));
        value.put("bigint", new BigInteger("123456789012345678901234567890"));
        value.put("smallbigint", BigInteger.valueOf(-5));
        value.put("bytes", new byte[] {1, 2});
        ByteBuffer buffer = ByteBuffer.wrap(new byte[] {9, 8, 7, 6});
        buffer.position(1);
        value.put("bb", buffer);
        value.put("list", Arrays.asList(1, "two", null));
        value.put("Account", nested);
        value.put("when", new java.util.Date(1234L));
        value.put("c", 'Z');
        value.put("nul", null);
        value.put(17, "integer key");

        EncodedBatch batch = new RecordBatchEncoder(null).encode(List.of(record(null, 12345L, null, value, 1)));
        Rec r = ReferenceDecoder.decodeBatch(batch.buffer()).get(0);
        assertEquals(v(2, 12345L), r.key);
        assertEquals(v(8, fields(
                "s", v(5, "text"),
                "b", v(1, false),
                "i", v(2, 7L),
                "l", v(2, 8L),
                "sh", v(2, 9L),
                "by", v(2, 10L),
                "f", v(3, 0.5f),
                "d", v(4, 0.25d),
                "dec", v(13, new BigDecimal("1.230")),
                "bigint", v(13, new BigDecimal("123456789012345678901234567890")),
                "smallbigint", v(2, -5L),
                "bytes", v(6, "0102"),
                "bb", v(6, "080706"),
                "list", v(7, Arrays.asList(v(2, 1L), v(5, "two"), v(0, null))),
                "Account", v(8, fields("AccountNumber__c", v(5, "A-1"))),
                "when", v(12, 1234L),
                "c", v(5, "Z"),
                "nul", v(0, null),
                "17", v(5, "integer key"))), r.value);
        assertEquals(1, buffer.position(), "the encoder must not move a ByteBuffer's position");
    }

    @Test
    void decimalScaleAndSignSurviveExactly() {
        Schema schema = Decimal.schema(3);
        for (String s : new String[] {"0.000", "-0.001", "127.000", "-128.000", "99999999999999999999.999"}) {
            Rec r = ReferenceDecoder.decodeBatch(new RecordBatchEncoder(null)
                    .encode(List.of(record(null, null, schema, new BigDecimal(s), 0))).buffer()).get(0);
            assertEquals(v(13, new BigDecimal(s)), r.value, s);
            assertEquals(3, ((BigDecimal) r.value.value).scale());
        }
    }

    @Test
    void originalCoordinatesTravelOnlyWhereAnSmtChangedThem() {
        SinkRecord read = record(null, null, null, Map.of("LastName", "L"), 42);
        // A RegexRouter's newRecord keeps the original coordinates and renames the topic.
        SinkRecord routed = read.newRecord("Contact", 3, null, null, null, Map.of("LastName", "L"), null);
        List<Rec> recs = ReferenceDecoder.decodeBatch(new RecordBatchEncoder(null).encode(List.of(read, routed)).buffer());
        assertEquals("contacts", recs.get(0).topic);
        assertEquals(null, recs.get(0).originalTopic, "unchanged coordinates are not repeated");
        assertEquals("Contact", recs.get(1).topic, "${topic} routes by the transformed topic");
        assertEquals("contacts", recs.get(1).originalTopic);
        assertEquals(3, recs.get(1).originalPartition);
        assertEquals(42L, recs.get(1).originalOffset);
    }

    @Test
    void nullKeyAndTombstone() {
        Rec r = ReferenceDecoder.decodeBatch(new RecordBatchEncoder(null)
                .encode(List.of(record(null, null, null, null, 5))).buffer()).get(0);
        assertEquals(v(0, null), r.key);
        assertEquals(v(0, null), r.value);
    }

    @Test
    void operationHeaderLastOneWinsAndKinds() {
        RecordBatchEncoder encoder = new RecordBatchEncoder("operation");
        SinkRecord string = record(null, "k", null, Map.of(), 1);
        string.headers().addString("operation", "INSERT").addString("operation", "delete");
        SinkRecord bytes = record(null, "k", null, Map.of(), 2);
        bytes.headers().addBytes("operation", "UPSERT".getBytes(StandardCharsets.UTF_8));
        SinkRecord other = record(null, "k", null, Map.of(), 3);
        other.headers().addInt("operation", 5);
        SinkRecord absent = record(null, "k", null, Map.of(), 4);
        absent.headers().addString("something-else", "UPDATE");
        SinkRecord nullValued = record(null, "k", null, Map.of(), 5);
        nullValued.headers().add("operation", null, Schema.OPTIONAL_STRING_SCHEMA);

        List<Rec> recs = ReferenceDecoder.decodeBatch(
                encoder.encode(List.of(string, bytes, other, absent, nullValued)).buffer());
        assertEquals(1, recs.get(0).headerKind);
        assertEquals(hex("delete".getBytes(StandardCharsets.UTF_8)), recs.get(0).header);
        assertEquals(2, recs.get(1).headerKind);
        assertEquals(hex("UPSERT".getBytes(StandardCharsets.UTF_8)), recs.get(1).header);
        assertEquals(3, recs.get(2).headerKind);
        assertEquals("java.lang.Integer", recs.get(2).header);
        assertEquals(0, recs.get(3).headerKind);
        assertEquals(0, recs.get(4).headerKind);

        // Routing disabled: the header is not sent at all.
        Rec disabled = ReferenceDecoder.decodeBatch(new RecordBatchEncoder(null).encode(List.of(string)).buffer()).get(0);
        assertEquals(0, disabled.headerKind);
        assertNull(disabled.header);
    }

    @Test
    void unsupportedTypeRejectsOnlyThatRecord() {
        Map<String, Object> bad = new LinkedHashMap<>();
        bad.put("id", UUID.randomUUID());
        SinkRecord first = record(null, "a", null, Map.of("x", 1), 10);
        SinkRecord broken = record(null, "b", null, bad, 11);
        SinkRecord last = record(null, "c", null, Map.of("x", 3), 12);

        EncodedBatch batch = new RecordBatchEncoder(null).encode(List.of(first, broken, last));

        assertEquals(List.of(first, last), batch.sent());
        assertEquals(1, batch.rejected().size());
        assertSame(broken, batch.rejected().get(0).record());
        String message = batch.rejected().get(0).error().getMessage();
        assertTrue(message.contains("topic contacts, partition 3, offset 11"), message);
        assertTrue(message.contains("java.util.UUID"), message);
        List<Rec> recs = ReferenceDecoder.decodeBatch(batch.buffer());
        assertEquals(2, recs.size());
        assertEquals(10L, recs.get(0).offset);
        assertEquals(12L, recs.get(1).offset);
    }

    @Test
    void tooDeeplyNestedValueRejectsOnlyThatRecord() {
        Object deep = "leaf";
        for (int i = 0; i < RecordBatchEncoder.MAX_NESTING + 1; i++) {
            deep = Map.of("n", deep);
        }
        Object deepest = "leaf";
        for (int i = 0; i < RecordBatchEncoder.MAX_NESTING; i++) {
            deepest = Map.of("n", deepest);
        }
        SinkRecord tooDeep = record(null, "a", null, deep, 20);
        SinkRecord ok = record(null, "b", null, deepest, 21);

        EncodedBatch batch = new RecordBatchEncoder(null).encode(List.of(tooDeep, ok));

        assertEquals(List.of(ok), batch.sent());
        assertSame(tooDeep, batch.rejected().get(0).record());
        String message = batch.rejected().get(0).error().getMessage();
        assertTrue(message.contains("nested deeper than 64"), message);
        assertEquals(21L, ReferenceDecoder.decodeBatch(batch.buffer()).get(0).offset);
    }

    @Test
    void utf8MatchesTheJdkIncludingLoneSurrogates() {
        String s = "a\u00e9\u4e2d\ud83d\ude00\ud800x\udc00";
        Rec r = ReferenceDecoder.decodeBatch(new RecordBatchEncoder(null)
                .encode(List.of(record(null, s, null, null, 0))).buffer()).get(0);
        assertEquals(new String(s.getBytes(StandardCharsets.UTF_8), StandardCharsets.UTF_8), r.key.value);
    }

    @Test
    void bigBatchesGrowTheBufferAndReuseWorks() {
        RecordBatchEncoder encoder = new RecordBatchEncoder(null);
        String longText = "x".repeat(10_000);
        List<SinkRecord> records = new ArrayList<>();
        for (int i = 0; i < 2_000; i++) {
            records.add(record(null, "k" + i, null, Map.of("Description", longText), i));
        }
        for (int round = 0; round < 2; round++) {
            List<Rec> recs = ReferenceDecoder.decodeBatch(encoder.encode(records).buffer());
            assertEquals(2_000, recs.size());
            assertEquals(1_999L, recs.get(1_999).offset);
            assertEquals(v(5, "k1999"), recs.get(1_999).key);
        }
    }
}
