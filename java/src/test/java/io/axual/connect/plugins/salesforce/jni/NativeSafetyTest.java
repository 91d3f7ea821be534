package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.axual.connect.plugins.salesforce.SalesforceSinkTask;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Against the REAL native library (skipped when the build has none, e.g. -Dnative.skip=true
 * without a library): a panic in any entry point is a Java exception naming it, the JVM goes on,
 * and native handles are freed on close, on stop and after a failed task.
 *
 * <p>The panics are switched on outside the connector configuration: surefire sets the environment
 * variable SALESFORCE_SINK_TEST_NATIVE_PANIC (see java/pom.xml) so that a connector named
 * {@code native-panic-<entry point>} panics in that entry point.
 */
class NativeSafetyTest {

    @BeforeAll
    static void nativeLibraryPresent() {
        String resource = NativeLibrary.resourcePath(System.getProperty("os.name", ""),
                System.getProperty("os.arch", ""), System.mapLibraryName(NativeLibrary.LIBRARY_NAME));
        String override = System.getenv(NativeLibrary.OVERRIDE);
        assumeTrue(NativeLibraryTest.class.getClassLoader().getResource(resource) != null
                        || (override != null && !override.isBlank()),
                "no native library in this build (" + resource + ")");
        NativeLibrary.load();
    }

    /** Startup validation off, loopback instance: opening talks to nobody. */
    static Map<String, Object> settings() {
        Map<String, Object> s = new HashMap<>();
        s.put("salesforce.instance.url", "http://127.0.0.1:9");
        s.put("salesforce.client.id", "cid");
        s.put("salesforce.auth.type", "CLIENT_CREDENTIALS");
        s.put("salesforce.client.secret", "secret");
        s.put("salesforce.sobject.type", "Contact");
        s.put("salesforce.startup.validation.enabled", "false");
        return s;
    }

    /** The connector name that the test environment makes panic in {@code panicIn} (null: none). */
    static String connectorName(String panicIn) {
        return panicIn == null ? "safety" : "native-panic-" + panicIn;
    }

    static byte[] config(String panicIn) {
        return ConfigEncoder.encode(settings(), connectorName(panicIn), "0");
    }

    static byte[] oneTombstone() {
        // version 2, one record: topic "t", partition 0, offset 0, NULL key, NULL value, no header,
        // no original coordinates
        return new byte[] {2, 0, 0, 0, 1, 0, 0, 0, 1, 't', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    }

    @ParameterizedTest
    @ValueSource(strings = {"open", "put", "render", "drainLogs", "close"})
    void aPanicInEveryEntryPointIsAJavaException(String entryPoint) {
        long before = NativeSink.liveHandles();
        NativeSinkException e;
        if (entryPoint.equals("open")) {
            e = assertThrows(NativeSinkException.class, () -> NativeSink.open(config(entryPoint)));
        } else {
            long handle = NativeSink.open(config(entryPoint));
            try {
                e = assertThrows(NativeSinkException.class, () -> {
                    switch (entryPoint) {
                        case "put":
                            NativeSink.put(handle, 0, oneTombstone());
                            break;
                        case "render":
                            NativeSink.render(handle, oneTombstone());
                            break;
                        case "drainLogs":
                            NativeSink.drainLogs(handle);
                            break;
                        default:
                            NativeSink.close(handle);
                    }
                });
            } finally {
                if (!entryPoint.equals("close")) {
                    NativeSink.close(handle);
                }
            }
        }
        assertTrue(e.getMessage().startsWith("native panic in " + entryPoint + ": "), e.getMessage());
        assertTrue(e.getMessage().contains("forced panic in native " + entryPoint), e.getMessage());
        // The JVM (and the library) go on: a fresh sink works, and nothing leaked, even on a panicking close.
        long handle = NativeSink.open(config(null));
        byte[] progress = NativeSink.put(handle, 0, oneTombstone());
        assertEquals(1, Progress.decode(progress).size(), "a skipped tombstone finishes at once");
        NativeSink.close(handle);
        assertEquals(before, NativeSink.liveHandles());
    }

    @Test
    void thousandOpenCloseCyclesLeakNoHandlesAndLittleMemory() throws IOException {
        byte[] config = config(null);
        for (int i = 0; i < 50; i++) { // warm-up: runtime, TLS roots, allocator arenas
            NativeSinkHandle.open(config).close();
        }
        long handlesBefore = NativeSink.liveHandles();
        long rssBefore = rssKb();
        for (int i = 0; i < 1_000; i++) {
            NativeSinkHandle h = NativeSinkHandle.open(config);
            h.drainLogs();
            h.close();
            h.close(); // a second close is a no-op, not a double free
        }
        long rssAfter = rssKb();
        System.out.printf("native leak check: 1000 open/close cycles, live handles %d -> %d, VmRSS %d kB -> %d kB"
                + " (%+d kB)%n", handlesBefore, NativeSink.liveHandles(), rssBefore, rssAfter, rssAfter - rssBefore);
        assertEquals(handlesBefore, NativeSink.liveHandles());
        if (rssBefore > 0) {
            // A leaked sink (HTTP client, caches, logs) costs tens of kB: 1,000 of them would be tens of MB.
            assertTrue(rssAfter - rssBefore < 32 * 1024, "RSS grew by " + (rssAfter - rssBefore) + " kB");
        }
    }

    @Test
    void aTaskWhosePutFailsFreesItsHandleOnStop() {
        long before = NativeSink.liveHandles();
        SalesforceSinkTask task = new SalesforceSinkTask();
        Map<String, String> props = new HashMap<>();
        settings().forEach((k, v) -> props.put(k, v.toString()));
        props.put("name", connectorName("put"));
        props.put("task.id", "0");
        task.start(props);
        assertEquals(before + 1, NativeSink.liveHandles());
        SinkRecord record = new SinkRecord("t", 0, null, "k", null, Map.of("LastName", "L"), 0);
        ConnectException e = assertThrows(ConnectException.class, () -> task.put(List.of(record)));
        assertTrue(e.getMessage().contains("native panic in put"), e.getMessage());
        task.stop(); // what Connect does after a task failed
        assertEquals(before, NativeSink.liveHandles());
    }

    /**
     * SPEC §11: a panic on a native background thread (here in a request task, which has no Java
     * caller to throw to) fails the task within seconds with the panic's message, instead of a
     * RUNNING task whose records stay in flight forever.
     */
    @Test
    void aPanicInANativeRequestFailsTheTaskWithItsMessage() throws InterruptedException {
        long before = NativeSink.liveHandles();
        SalesforceSinkTask task = new SalesforceSinkTask();
        Map<String, String> props = new HashMap<>();
        settings().forEach((k, v) -> props.put(k, v.toString()));
        props.put("salesforce.linger.ms", "0");
        props.put("name", connectorName("request"));
        props.put("task.id", "0");
        task.start(props);
        List<SinkRecord> batch = List.of(new SinkRecord("t", 0, null, "k", null, Map.of("LastName", "L"), 0));
        long deadline = System.nanoTime() + 10_000_000_000L;
        ConnectException failure = null;
        while (failure == null && System.nanoTime() < deadline) {
            try {
                task.put(batch); // the request may panic before this first put() returns
                batch = List.of(); // Connect keeps calling put() while the task runs
                Thread.sleep(50);
            } catch (ConnectException e) {
                failure = e;
            }
        }
        assertTrue(failure != null, "the task was still running 10 s after a native request panicked");
        assertTrue(failure.getMessage().contains("native panic in the request task: forced panic in native request"),
                failure.getMessage());
        task.preCommit(Map.of()); // Connect only logs a preCommit exception: the task defers it to put()
        ConnectException again = assertThrows(ConnectException.class, () -> task.put(List.of()));
        assertTrue(again.getMessage().contains("native panic in the request task"), again.getMessage());
        task.stop();
        assertEquals(before, NativeSink.liveHandles());
    }

    @Test
    void aTaskWhoseStartFailsAfterOpenFreesItsHandle() {
        long before = NativeSink.liveHandles();
        SalesforceSinkTask task = new SalesforceSinkTask();
        Map<String, String> props = new HashMap<>();
        settings().forEach((k, v) -> props.put(k, v.toString()));
        props.put("name", connectorName("drainLogs"));
        RuntimeException e = assertThrows(RuntimeException.class, () -> task.start(props));
        assertTrue(e.getMessage().contains("native panic in drainLogs"), e.getMessage());
        task.stop();
        assertEquals(before, NativeSink.liveHandles());
    }

    private static long rssKb() throws IOException {
        if (!Files.isReadable(Paths.get("/proc/self/status"))) {
            return -1;
        }
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }
}
