import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.axual.connect.plugins.salesforce.SalesforceSinkConfig;
import io.axual.connect.plugins.salesforce.jni.ConfigEncoder;
import io.axual.connect.plugins.salesforce.jni.EncodedBatch;
import io.axual.connect.plugins.salesforce.jni.NativeSinkHandle;
import io.axual.connect.plugins.salesforce.jni.RecordBatchEncoder;
import java.io.ByteArrayOutputStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Date;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Time;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.sink.SinkRecord;

/**
 * CPU per record of the connector's conversion path (RecordBatchEncoder → JNI → Rust render of
 * the Collections request bodies) next to a pure-Java baseline that builds the same bodies with
 * Jackson's ObjectNode tree, the way JsonConverter turns a Struct into JSON.
 *
 * <p>Usage: {@code java -cp ... ConversionBench [records] [iterations] [putSize]}. Prints one JSON
 * line: {"records":..,"ours_us":..,"baseline_us":..,"ratio":..,"identical":..,"equivalent":..,
 * "java_encode_us":.. (the Java half of our path alone)}.
 */
public final class ConversionBench {
    private static final int BATCH = 200; // records per Collections request, both paths
    private static final long DAY_MS = 86_400_000L;
    private static final DateTimeFormatter TS =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("HH:mm:ss.SSS'Z'");

    static final Schema VALUE_SCHEMA = SchemaBuilder.struct().name("bench.Contact")
            .field("FirstName", Schema.STRING_SCHEMA)
            .field("LastName", Schema.STRING_SCHEMA)
            .field("Email", Schema.STRING_SCHEMA)
            .field("Phone", Schema.OPTIONAL_STRING_SCHEMA)
            .field("Birthdate", Date.SCHEMA)
            .field("Description", Schema.STRING_SCHEMA)
            .field("Score__c", Decimal.schema(2))
            .field("Last_Contacted__c", Timestamp.SCHEMA)
            .field("Preferred_Time__c", Time.SCHEMA)
            .field("Active__c", Schema.BOOLEAN_SCHEMA)
            .field("Visits__c", Schema.INT64_SCHEMA)
            .field("Rating__c", Schema.FLOAT64_SCHEMA)
            .build();

    public static void main(String[] args) throws Exception {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 20_000;
        int iterations = args.length > 1 ? Integer.parseInt(args[1]) : 10;
        int putSize = args.length > 2 ? Integer.parseInt(args[2]) : 500;
        List<SinkRecord> records = build(n);
        List<List<SinkRecord>> puts = new ArrayList<>();
        for (int i = 0; i < n; i += putSize) {
            puts.add(records.subList(i, Math.min(n, i + putSize)));
        }

        Map<String, String> props = new HashMap<>();
        props.put("salesforce.instance.url", "http://127.0.0.1:9");
        props.put("salesforce.client.id", "bench");
        props.put("salesforce.auth.type", "CLIENT_CREDENTIALS");
        props.put("salesforce.client.secret", "bench");
        props.put("salesforce.sobject.type", "Contact");
        props.put("salesforce.operation", "INSERT");
        props.put("salesforce.startup.validation.enabled", "false");
        SalesforceSinkConfig config = new SalesforceSinkConfig(props);
        NativeSinkHandle handle = NativeSinkHandle.open(
                ConfigEncoder.encode(config.nativeSettings(), "conversion-bench", "0"));
        RecordBatchEncoder encoder = new RecordBatchEncoder(null);
        Baseline baseline = new Baseline("Contact");

        // Equivalence on the first put: same bodies, parsed and compared (and byte-for-byte).
        List<byte[]> oursBodies = split(ours(encoder, handle, puts.get(0)));
        List<byte[]> baseBodies = baseline.render(puts.get(0));
        ObjectMapper reader = new ObjectMapper();
        boolean identical = oursBodies.size() == baseBodies.size();
        boolean equivalent = identical;
        for (int i = 0; equivalent && i < oursBodies.size(); i++) {
            identical &= Arrays.equals(oursBodies.get(i), baseBodies.get(i));
            JsonNode a = reader.readTree(oursBodies.get(i));
            JsonNode b = reader.readTree(baseBodies.get(i));
            equivalent = a.equals(b);
            if (!equivalent) {
                System.err.println("NOT EQUIVALENT\nours:     " + new String(oursBodies.get(i), StandardCharsets.UTF_8).substring(0, 600)
                        + "\nbaseline: " + new String(baseBodies.get(i), StandardCharsets.UTF_8).substring(0, 600));
            }
        }

        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long sink = 0;
        // Warm-up: both paths, until the JIT has settled.
        for (int w = 0; w < 5; w++) {
            for (List<SinkRecord> put : puts) {
                sink += ours(encoder, handle, put).length;
                for (byte[] body : baseline.render(put)) {
                    sink += body.length;
                }
            }
        }
        double[] oursUs = new double[iterations];
        double[] baseUs = new double[iterations];
        double[] encodeUs = new double[iterations];
        for (int it = 0; it < iterations; it++) {
            long t0 = mx.getCurrentThreadCpuTime();
            for (List<SinkRecord> put : puts) {
                sink += ours(encoder, handle, put).length;
            }
            long t1 = mx.getCurrentThreadCpuTime();
            for (List<SinkRecord> put : puts) {
                for (byte[] body : baseline.render(put)) {
                    sink += body.length;
                }
            }
            long t2 = mx.getCurrentThreadCpuTime();
            for (List<SinkRecord> put : puts) {
                sink += encoder.encode(put).buffer().length;
            }
            long t3 = mx.getCurrentThreadCpuTime();
            oursUs[it] = (t1 - t0) / 1000.0 / n;
            baseUs[it] = (t2 - t1) / 1000.0 / n;
            encodeUs[it] = (t3 - t2) / 1000.0 / n;
        }
        handle.close();
        double ours = median(oursUs);
        double base = median(baseUs);
        System.out.printf(java.util.Locale.ROOT,
                "{\"records\":%d,\"iterations\":%d,\"put_size\":%d,\"fields\":%d,\"ours_us\":%.3f,"
                        + "\"baseline_us\":%.3f,\"ratio\":%.3f,\"identical\":%b,\"equivalent\":%b,"
                        + "\"ours_min_us\":%.3f,\"baseline_min_us\":%.3f,\"java_encode_us\":%.3f,\"checksum\":%d}%n",
                n, iterations, putSize, VALUE_SCHEMA.fields().size(), ours, base, ours / base, identical,
                equivalent, Arrays.stream(oursUs).min().orElse(0), Arrays.stream(baseUs).min().orElse(0), median(encodeUs), sink);
    }

    /** Our path: encode the put's records into the wire buffer, one JNI call, Rust renders bodies. */
    static byte[] ours(RecordBatchEncoder encoder, NativeSinkHandle handle, List<SinkRecord> put) {
        EncodedBatch batch = encoder.encode(put);
        return handle.render(batch.buffer());
    }

    static List<byte[]> split(byte[] rendered) {
        List<byte[]> out = new ArrayList<>();
        int start = 0;
        for (int i = 0; i < rendered.length; i++) {
            if (rendered[i] == '\n') {
                out.add(Arrays.copyOfRange(rendered, start, i));
                start = i + 1;
            }
        }
        return out;
    }

    static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    static List<SinkRecord> build(int n) {
        List<SinkRecord> out = new ArrayList<>(n);
        long base = 1_717_000_000_000L;
        for (int i = 0; i < n; i++) {
            Struct v = new Struct(VALUE_SCHEMA)
                    .put("FirstName", "First" + i)
                    .put("LastName", "Last-" + i + " \"quoted\" \u00e9")
                    .put("Email", "person" + i + "@example.com")
                    .put("Phone", i % 10 == 0 ? null : "+31 20 555 " + (1000 + i % 9000))
                    .put("Birthdate", new java.util.Date((3650L + i % 15000) * DAY_MS))
                    .put("Description", "Benchmark contact number " + i + " with a line\nbreak and a tab\t.")
                    .put("Score__c", BigDecimal.valueOf(123_456L + i, 2))
                    .put("Last_Contacted__c", new java.util.Date(base + i * 1_337L))
                    .put("Preferred_Time__c", new java.util.Date((i * 7_919L) % DAY_MS))
                    .put("Active__c", i % 2 == 0)
                    .put("Visits__c", (long) i * 31)
                    .put("Rating__c", 0.25 + (i % 1000) * 0.5);
            out.add(new SinkRecord("contacts", 0, Schema.STRING_SCHEMA, "key-" + i, VALUE_SCHEMA, v, i));
        }
        return out;
    }

    /**
     * The pure-Java baseline: walks the Connect schema like JsonConverter.convertToJson into a
     * Jackson tree (exact BigDecimals, as JsonConverter's node factory), with the logical types as
     * the strings of SPEC §3, wrapped in the same Collections envelope, serialized by ObjectMapper.
     */
    static final class Baseline {
        private final JsonNodeFactory nodes = JsonNodeFactory.withExactBigDecimals(true);
        private final ObjectMapper mapper = new ObjectMapper()
                .enable(JsonGenerator.Feature.WRITE_BIGDECIMAL_AS_PLAIN)
                .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);
        private final String sobject;

        Baseline(String sobject) {
            this.sobject = sobject;
        }

        List<byte[]> render(List<SinkRecord> put) throws Exception {
            List<byte[]> bodies = new ArrayList<>();
            for (int i = 0; i < put.size(); i += BATCH) {
                ObjectNode body = nodes.objectNode();
                body.put("allOrNone", false);
                ArrayNode list = body.putArray("records");
                for (SinkRecord r : put.subList(i, Math.min(put.size(), i + BATCH))) {
                    ObjectNode rec = list.addObject();
                    rec.putObject("attributes").put("type", sobject);
                    Struct s = (Struct) r.value();
                    for (Field f : s.schema().fields()) {
                        rec.set(f.name(), toJson(f.schema(), s.get(f)));
                    }
                }
                bodies.add(mapper.writeValueAsBytes(body));
            }
            return bodies;
        }

        JsonNode toJson(Schema schema, Object value) {
            if (value == null) {
                return nodes.nullNode();
            }
            String name = schema.name();
            if (name != null) {
                switch (name) {
                    case Decimal.LOGICAL_NAME:
                        return nodes.numberNode((BigDecimal) value);
                    case Date.LOGICAL_NAME:
                        return nodes.textNode(LocalDate.ofEpochDay(
                                Math.floorDiv(((java.util.Date) value).getTime(), DAY_MS)).toString());
                    case Time.LOGICAL_NAME:
                        return nodes.textNode(TIME.format(LocalTime.ofNanoOfDay(
                                Math.floorMod(((java.util.Date) value).getTime(), DAY_MS) * 1_000_000L)));
                    case Timestamp.LOGICAL_NAME:
                        return nodes.textNode(TS.format(Instant.ofEpochMilli(((java.util.Date) value).getTime())));
                    default:
                        break;
                }
            }
            switch (schema.type()) {
                case INT8:
                case INT16:
                case INT32:
                case INT64:
                    return nodes.numberNode(((Number) value).longValue());
                case FLOAT32:
                    return nodes.numberNode((Float) value);
                case FLOAT64:
                    return nodes.numberNode((Double) value);
                case BOOLEAN:
                    return nodes.booleanNode((Boolean) value);
                case STRING:
                    return nodes.textNode((String) value);
                case BYTES:
                    return nodes.textNode(Base64.getEncoder().encodeToString((byte[]) value));
                case STRUCT: {
                    ObjectNode o = nodes.objectNode();
                    Struct s = (Struct) value;
                    for (Field f : s.schema().fields()) {
                        o.set(f.name(), toJson(f.schema(), s.get(f)));
                    }
                    return o;
                }
                default:
                    throw new IllegalArgumentException("not in the benchmark: " + schema.type());
            }
        }
    }
}
