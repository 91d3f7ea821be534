package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class ProgressTest {

    private static byte[] sample() {
        return ReferenceDecoder.progress(new long[] {17, 15, 16}, new int[] {0, 1, 2},
                new String[] {null, null, "INSERT Contact key k3: REQUIRED_FIELD_MISSING ünïcode"}, 42, 3,
                new int[] {2, 4}, new String[] {"wrote 1 record", "boom"});
    }

    @Test
    void decodesOutcomesFillAndLogs() {
        Progress progress = Progress.decode(sample());
        assertEquals(3, progress.size());
        assertEquals(17L, progress.seq(0));
        assertEquals(Progress.WRITTEN, progress.status(0));
        assertEquals(Progress.SKIPPED, progress.status(1));
        assertEquals(Progress.FAILED, progress.status(2));
        assertNull(progress.message(0));
        assertEquals("INSERT Contact key k3: REQUIRED_FIELD_MISSING ünïcode", progress.message(2));
        assertEquals(42, progress.unfinished());
        assertEquals(3, progress.requestsInFlight());
        assertEquals(2, progress.logs().size());
        assertEquals(LogEvent.INFO, progress.logs().get(0).level());
        assertEquals("boom", progress.logs().get(1).message());
        assertEquals(LogEvent.ERROR, progress.logs().get(1).level());
    }

    @Test
    void rejectsTruncationTrailingBytesAndUnknownStatus() {
        byte[] ok = sample();
        assertThrows(NativeSinkException.class, () -> Progress.decode(Arrays.copyOf(ok, ok.length - 1)));
        assertThrows(NativeSinkException.class, () -> Progress.decode(Arrays.copyOf(ok, ok.length + 1)));
        assertThrows(NativeSinkException.class, () -> Progress.decode(null));
        byte[] unknown = ReferenceDecoder.progress(new long[] {1}, new int[] {3}, new String[] {null}, 0, 0,
                new int[0], new String[0]);
        NativeSinkException e = assertThrows(NativeSinkException.class, () -> Progress.decode(unknown));
        assertTrue(e.getMessage().contains("unknown status 3"), e.getMessage());
    }

    @Test
    void decodesMetricsAndHealth() {
        java.util.Map<String, Long> metrics = new java.util.LinkedHashMap<>();
        metrics.put("records.written", 12L);
        metrics.put("requests.bulk", 0L);
        byte[] buffer = ReferenceDecoder.progress(new long[0], new int[0], new String[0], 0, 0, metrics, 1,
                1_700_000_000_000L, "quota reserve reached", new int[] {3}, new String[] {"w"});
        Progress progress = Progress.decode(buffer);
        assertEquals(metrics, progress.metrics());
        assertEquals(Progress.HEALTH_QUOTA_RESERVE, progress.healthState());
        assertEquals("QUOTA_RESERVE", Progress.healthName(progress.healthState()));
        assertEquals(1_700_000_000_000L, progress.healthSinceEpochMs());
        assertEquals("quota reserve reached", progress.healthMessage());
        assertEquals(1, progress.logs().size());
    }

    @Test
    void namesEveryHealthStateOfTheCore() {
        // rust/core/src/metrics.rs HealthState: 0 OK, 1 QUOTA_RESERVE, 2 SALESFORCE_UNAVAILABLE, 3 STALLED
        assertEquals("OK", Progress.healthName(Progress.HEALTH_OK));
        assertEquals("SALESFORCE_UNAVAILABLE", Progress.healthName(Progress.HEALTH_SALESFORCE_UNAVAILABLE));
        assertEquals("STALLED", Progress.healthName(Progress.HEALTH_STALLED));
        assertEquals(3, Progress.HEALTH_STALLED);
        assertEquals("UNKNOWN_4", Progress.healthName(4));
    }

    @Test
    void decodesDrainedLogs() {
        byte[] progress = ReferenceDecoder.progress(new long[0], new int[0], new String[0], 0, 0, new int[] {0, 1, 3},
                new String[] {"t", "d", "w"});
        // A drainLogs buffer is the progress buffer's log section: skip i32 count, i32 unfinished, i32 in flight,
        // i32 0 metrics, the health (u8 state, i64 since, str "").
        byte[] logs = Arrays.copyOfRange(progress, 12 + 4 + 13, progress.length);
        List<LogEvent> events = Progress.decodeLogs(logs);
        assertEquals(3, events.size());
        assertEquals(LogEvent.WARN, events.get(2).level());
        assertEquals("w", events.get(2).message());
        assertTrue(Progress.decodeLogs(new byte[] {0, 0, 0, 0}).isEmpty());
        assertTrue(Progress.decodeLogs(null).isEmpty());
    }
}
