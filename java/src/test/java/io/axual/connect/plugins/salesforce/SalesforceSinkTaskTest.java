package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.axual.connect.plugins.salesforce.jni.NativeSinkException;
import io.axual.connect.plugins.salesforce.jni.NativeWriter;
import io.axual.connect.plugins.salesforce.jni.ReferenceDecoder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.metrics.PluginMetrics;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.ErrantRecordReporter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTaskContext;
import org.junit.jupiter.api.Test;

class SalesforceSinkTaskTest {

    /** Plays the native side: records what it got, answers with scripted outcome buffers. */
    static final class FakeWriter implements NativeWriter {
        final List<List<Long>> batches = new ArrayList<>();
        final Deque<Object> answers = new ArrayDeque<>();
        byte[] config;
        int closes;

        @Override
        public byte[] put(byte[] batch) {
            batches.add(ReferenceDecoder.decodeBatch(batch).stream().map(r -> r.offset).collect(Collectors.toList()));
            Object answer = answers.removeFirst();
            if (answer instanceof RuntimeException) {
                throw (RuntimeException) answer;
            }
            return (byte[]) answer;
        }

        @Override
        public byte[] drainLogs() {
            return new byte[] {0, 0, 0, 1, 2, 0, 0, 0, 2, 'h', 'i'}; // one INFO event "hi"
        }

        @Override
        public void close() {
            closes++;
        }

        void answer(long backoff, int... statuses) {
            String[] messages = new String[statuses.length];
            for (int i = 0; i < statuses.length; i++) {
                messages[i] = "message " + i;
            }
            answers.add(ReferenceDecoder.outcome(statuses, messages, backoff, new int[] {3}, new String[] {"w"}));
        }
    }

    static final class FakeContext implements SinkTaskContext {
        final ErrantRecordReporter reporter;
        final List<Long> timeouts = new ArrayList<>();

        FakeContext(ErrantRecordReporter reporter) {
            this.reporter = reporter;
        }

        @Override
        public Map<String, String> configs() {
            return Map.of();
        }

        @Override
        public void offset(Map<TopicPartition, Long> offsets) {
        }

        @Override
        public void offset(TopicPartition tp, long offset) {
        }

        @Override
        public void timeout(long timeoutMs) {
            timeouts.add(timeoutMs);
        }

        @Override
        public Set<TopicPartition> assignment() {
            return Set.of();
        }

        @Override
        public void pause(TopicPartition... partitions) {
        }

        @Override
        public void resume(TopicPartition... partitions) {
        }

        @Override
        public void requestCommit() {
        }

        @Override
        public ErrantRecordReporter errantRecordReporter() {
            return reporter;
        }

        @Override
        public PluginMetrics pluginMetrics() {
            return null;
        }
    }

    static final class Reported {
        final List<SinkRecord> records = new ArrayList<>();
        final List<Throwable> errors = new ArrayList<>();

        ErrantRecordReporter reporter() {
            return (record, error) -> {
                records.add(record);
                errors.add(error);
                Future<Void> done = CompletableFuture.completedFuture(null);
                return done;
            };
        }
    }

    private final FakeWriter writer = new FakeWriter();

    private SalesforceSinkTask start(ErrantRecordReporter reporter, Map<String, String> extra) {
        return start(reporter, extra, Integer.MAX_VALUE);
    }

    private SalesforceSinkTask start(ErrantRecordReporter reporter, Map<String, String> extra, int chunkBytes) {
        SalesforceSinkTask task = new SalesforceSinkTask(config -> {
            writer.config = config.clone();
            return writer;
        }, chunkBytes);
        FakeContext context = new FakeContext(reporter);
        task.initialize(context);
        Map<String, String> props = new java.util.HashMap<>(SalesforceSinkConfigTest.clientCredentials());
        props.put("task.id", "1");
        props.putAll(extra);
        task.start(props);
        return task;
    }

    private static FakeContext contextOf(SalesforceSinkTask task) {
        try {
            java.lang.reflect.Field f = org.apache.kafka.connect.sink.SinkTask.class.getDeclaredField("context");
            f.setAccessible(true);
            return (FakeContext) f.get(task);
        } catch (ReflectiveOperationException e) {
            throw new AssertionError(e);
        }
    }

    private static List<SinkRecord> records(long... offsets) {
        List<SinkRecord> list = new ArrayList<>();
        for (long offset : offsets) {
            list.add(new SinkRecord("t", 0, null, "k" + offset, null, Map.of("LastName", "L" + offset), offset));
        }
        return list;
    }

    @Test
    void startSendsTheConfigBufferAndStopClosesOnce() {
        SalesforceSinkTask task = start(null, Map.of());
        Map<String, String> config = ReferenceDecoder.decodeConfig(writer.config);
        assertEquals("sf", config.get("connector.name"));
        assertEquals("1", config.get("task.id"));
        assertEquals("AF97355FC3615CF9FA4EB7BF", config.get("salesforce.client.secret"));
        assertEquals("COLLECTIONS", config.get("salesforce.write.mode"));
        task.stop();
        task.stop();
        assertEquals(1, writer.closes);
    }

    @Test
    void retryRedeliversOnlyTheUnfinishedRecords() {
        Reported reported = new Reported();
        SalesforceSinkTask task = start(reported.reporter(), Map.of());
        List<SinkRecord> batch = records(10, 11, 12, 13);

        writer.answer(2500, 0, 3, 2, 1); // WRITTEN, RETRY, FAILED, SKIPPED
        RetriableException e = assertThrows(RetriableException.class, () -> task.put(batch));
        assertTrue(e.getMessage().contains("1 of 4"), e.getMessage());
        assertTrue(e.getMessage().contains("message 1"), e.getMessage());
        assertEquals(List.of(2500L), contextOf(task).timeouts);
        assertEquals(1, reported.records.size());
        assertEquals(12L, reported.records.get(0).kafkaOffset());
        assertEquals("message 2", reported.errors.get(0).getMessage());

        // Connect redelivers the same batch: only offset 11 goes to Salesforce again.
        writer.answer(0, 0);
        task.put(batch);
        assertEquals(List.of(List.of(10L, 11L, 12L, 13L), List.of(11L)), writer.batches);
        assertEquals(1, reported.records.size(), "a FAILED record must not be reported twice");
        assertTrue(task.redeliveryTracker().isEmpty());

        // After a normal return the whole batch is new again (e.g. after a rewind).
        writer.answer(0, 0, 0, 0, 0);
        task.put(batch);
        assertEquals(List.of(10L, 11L, 12L, 13L), writer.batches.get(2));
    }

    @Test
    void partitionChangesForgetFinishedRecordsOfThosePartitionsOnly() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        writer.answer(100, 0, 3);
        assertThrows(RetriableException.class, () -> task.put(records(1, 2)));
        assertEquals(1, task.redeliveryTracker().size());
        task.close(List.of(new TopicPartition("t", 0)));
        assertTrue(task.redeliveryTracker().isEmpty());

        writer.answer(100, 0, 3);
        assertThrows(RetriableException.class, () -> task.put(records(1, 2)));
        task.open(List.of(new TopicPartition("t", 0)));
        assertTrue(task.redeliveryTracker().isEmpty());

        // Cooperative rebalancing revokes one partition and keeps the other: the kept partition's
        // finished records must not be written again when its batch comes back.
        SinkRecord kept = new SinkRecord("t", 1, null, "k", null, Map.of("LastName", "L"), 7);
        List<SinkRecord> batch = List.of(records(1).get(0), kept, records(2).get(0));
        writer.answer(100, 0, 0, 3);
        assertThrows(RetriableException.class, () -> task.put(batch));
        task.close(List.of(new TopicPartition("t", 0)));
        writer.answer(0, 0);
        task.put(List.of(kept, records(2).get(0)));
        assertEquals(List.of(2L), writer.batches.get(writer.batches.size() - 1), "offset 7 of t-1 was written already");
    }

    @Test
    void topicRenamingSmtCannotMakeOneRecordStandForAnother() {
        // RegexRouter merges a-orders and b-orders into orders: both records are orders-0@5.
        SinkRecord a = new SinkRecord("a-orders", 0, null, "ka", null, Map.of("LastName", "A"), 5);
        SinkRecord b = new SinkRecord("b-orders", 0, null, "kb", null, Map.of("LastName", "B"), 5);
        List<SinkRecord> batch = List.of(
                a.newRecord("orders", 0, null, "ka", null, Map.of("LastName", "A"), null),
                b.newRecord("orders", 0, null, "kb", null, Map.of("LastName", "B"), null));
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        writer.answer(10, 0, 3); // a written, b to be retried
        assertThrows(RetriableException.class, () -> task.put(batch));
        writer.answer(0, 0);
        task.put(batch);
        assertEquals(2, writer.batches.size(), "the redelivery must send b again");
        assertEquals(1, writer.batches.get(1).size());
    }

    @Test
    void zeroBackoffStillAsksConnectForAPromptRedelivery() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        writer.answer(0, 3);
        assertThrows(RetriableException.class, () -> task.put(records(1)));
        assertEquals(List.of(1L), contextOf(task).timeouts, "Connect ignores timeout(0)");
    }

    @Test
    void hugeBatchesAreCutIntoSeveralNativeCallsAndKeepOrderAcrossThem() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of(), 1); // one record a call
        writer.answer(0, 0);
        writer.answer(0, 0);
        writer.answer(0, 0);
        task.put(records(1, 2, 3));
        assertEquals(List.of(List.of(1L), List.of(2L), List.of(3L)), writer.batches);

        // A record left to retry holds back every later call of the batch.
        writer.answer(5, 0);
        writer.answer(5, 3);
        assertThrows(RetriableException.class, () -> task.put(records(4, 5, 6)));
        assertEquals(List.of(List.of(4L), List.of(5L)), writer.batches.subList(3, 5));
        writer.answer(0, 0);
        writer.answer(0, 0);
        task.put(records(4, 5, 6));
        assertEquals(List.of(List.of(5L), List.of(6L)), writer.batches.subList(5, 7));
    }

    @Test
    void putTimeBudgetIsAQuarterOfThePollInterval() {
        assertEquals(75_000L, SalesforceSinkTask.putTimeBudgetMs(Map.of()));
        assertEquals(5_000L, SalesforceSinkTask.putTimeBudgetMs(Map.of("consumer.override.max.poll.interval.ms", "20000")));
        SalesforceSinkTask task = start(null, Map.of("consumer.override.max.poll.interval.ms", "60000"));
        assertEquals("15000", ReferenceDecoder.decodeConfig(writer.config).get("put.time.budget.ms"));
        task.stop();
    }

    @Test
    void failedRecordWithoutReporterFailsTheTaskUnlessToleranceAll() {
        SalesforceSinkTask strict = start(null, Map.of());
        writer.answer(0, 0, 2);
        ConnectException e = assertThrows(ConnectException.class, () -> strict.put(records(1, 2)));
        assertFalse(e instanceof RetriableException);
        assertTrue(e.getMessage().contains("message 1"), e.getMessage());
        assertTrue(e.getMessage().contains("offset 2"), e.getMessage());

        SalesforceSinkTask tolerant = start(null, Map.of("errors.tolerance", "ALL"));
        writer.answer(0, 0, 2);
        tolerant.put(records(1, 2)); // logged and skipped
    }

    @Test
    void reporterFailureFailsTheTask() {
        ErrantRecordReporter throwing = (record, error) -> {
            throw new ConnectException("Tolerance exceeded in error handler", error);
        };
        SalesforceSinkTask task = start(throwing, Map.of());
        writer.answer(0, 2);
        ConnectException e = assertThrows(ConnectException.class, () -> task.put(records(1)));
        assertEquals("Tolerance exceeded in error handler", e.getMessage());
        assertEquals("message 0", e.getCause().getMessage());
    }

    @Test
    void unencodableRecordIsReportedWithoutCrossingJni() {
        Reported reported = new Reported();
        SalesforceSinkTask task = start(reported.reporter(), Map.of());
        SinkRecord bad = new SinkRecord("t", 0, null, "k", null, Map.of("Id", UUID.randomUUID()), 7);
        task.put(List.of(bad));
        assertTrue(writer.batches.isEmpty());
        assertEquals(List.of(bad), reported.records);
        assertInstanceOf(DataException.class, reported.errors.get(0));

        writer.answer(0, 0);
        task.put(List.of(bad, records(8).get(0)));
        assertEquals(List.of(List.of(8L)), writer.batches);
        assertEquals(2, reported.records.size());
    }

    @Test
    void nativeExceptionFailsTheTaskAndEmptyPutsDoNothing() {
        SalesforceSinkTask task = start(null, Map.of());
        task.put(List.of());
        assertTrue(writer.batches.isEmpty());
        writer.answers.add(new NativeSinkException("native panic: boom"));
        ConnectException e = assertThrows(ConnectException.class, () -> task.put(records(1)));
        assertTrue(e.getMessage().contains("native panic: boom"));
        assertNotNull(e.getCause());
    }

    @Test
    void nativeOpenFailureBecomesConnectException() {
        SalesforceSinkTask task = new SalesforceSinkTask(config -> {
            throw new NativeSinkException("invalid_client: invalid client credentials");
        });
        task.initialize(new FakeContext(null));
        ConnectException e = assertThrows(ConnectException.class,
                () -> task.start(SalesforceSinkConfigTest.clientCredentials()));
        assertTrue(e.getMessage().contains("invalid client credentials"));
        task.stop(); // harmless without a handle
    }
}
