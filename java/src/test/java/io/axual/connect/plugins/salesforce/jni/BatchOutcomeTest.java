package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class BatchOutcomeTest {

    private static byte[] sample() {
        return ReferenceDecoder.outcome(new int[] {0, 1, 2, 3},
                new String[] {null, null, "INSERT Contact key k3: REQUIRED_FIELD_MISSING ünïcode", "HTTP 503"},
                1500L, new int[] {2, 4}, new String[] {"wrote 1 record", "boom"});
    }

    @Test
    void decodesStatusesMessagesBackoffAndLogs() {
        BatchOutcome outcome = BatchOutcome.decode(sample(), 4);
        assertEquals(4, outcome.size());
        assertEquals(BatchOutcome.WRITTEN, outcome.status(0));
        assertEquals(BatchOutcome.SKIPPED, outcome.status(1));
        assertEquals(BatchOutcome.FAILED, outcome.status(2));
        assertEquals(BatchOutcome.RETRY, outcome.status(3));
        assertNull(outcome.message(0));
        assertEquals("INSERT Contact key k3: REQUIRED_FIELD_MISSING ünïcode", outcome.message(2));
        assertEquals("HTTP 503", outcome.message(3));
        assertEquals(1500L, outcome.retryBackoffMs());
        assertEquals(2, outcome.logs().size());
        assertEquals(LogEvent.INFO, outcome.logs().get(0).level());
        assertEquals("boom", outcome.logs().get(1).message());
        assertEquals(LogEvent.ERROR, outcome.logs().get(1).level());
    }

    @Test
    void rejectsMismatchedCountTruncationTrailingBytesAndUnknownStatus() {
        byte[] ok = sample();
        assertThrows(NativeSinkException.class, () -> BatchOutcome.decode(ok, 3));
        assertThrows(NativeSinkException.class, () -> BatchOutcome.decode(Arrays.copyOf(ok, ok.length - 1), 4));
        assertThrows(NativeSinkException.class, () -> BatchOutcome.decode(Arrays.copyOf(ok, ok.length + 1), 4));
        assertThrows(NativeSinkException.class, () -> BatchOutcome.decode(null, 0));
        byte[] unknown = ReferenceDecoder.outcome(new int[] {7}, new String[] {null}, 0, new int[0], new String[0]);
        NativeSinkException e = assertThrows(NativeSinkException.class, () -> BatchOutcome.decode(unknown, 1));
        assertTrue(e.getMessage().contains("unknown status 7"));
    }

    @Test
    void decodesDrainedLogs() {
        byte[] outcome = ReferenceDecoder.outcome(new int[0], new String[0], 0, new int[] {0, 1, 3},
                new String[] {"t", "d", "w"});
        // A drainLogs buffer is the outcome's log section: skip i32 count (0) and i64 backoff.
        byte[] logs = Arrays.copyOfRange(outcome, 12, outcome.length);
        List<LogEvent> events = BatchOutcome.decodeLogs(logs);
        assertEquals(3, events.size());
        assertEquals(LogEvent.WARN, events.get(2).level());
        assertEquals("w", events.get(2).message());
        assertTrue(BatchOutcome.decodeLogs(new byte[] {0, 0, 0, 0}).isEmpty());
        assertTrue(BatchOutcome.decodeLogs(null).isEmpty());
    }
}
