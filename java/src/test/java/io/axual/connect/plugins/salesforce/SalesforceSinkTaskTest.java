package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.axual.connect.plugins.salesforce.jni.NativeSinkException;
import io.axual.connect.plugins.salesforce.jni.NativeWriter;
import io.axual.connect.plugins.salesforce.jni.Progress;
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
import org.apache.kafka.connect.sink.ErrantRecordReporter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTaskContext;
import org.junit.jupiter.api.Test;

class SalesforceSinkTaskTest {

    /** Plays the native pipeline: remembers what was submitted, reports scripted outcomes. */
    static final class FakeWriter implements NativeWriter {
        final List<List<Long>> batches = new ArrayList<>();
        final List<Long> firstSeqs = new ArrayList<>();
        final List<long[]> abandoned = new ArrayList<>();
        final List<Long> abandonWaits = new ArrayList<>();
        final List<Long> flushTimeouts = new ArrayList<>();
        final List<Boolean> flushSendsJobs = new ArrayList<>();
        final Deque<Object> failures = new ArrayDeque<>();
        private final List<long[]> ready = new ArrayList<>(); // {seq, status}
        private final Map<Long, String> messages = new java.util.HashMap<>();
        long submitted;
        long finished;
        byte[] config;
        int closes;
        /** The health and metrics the next progress buffers carry. */
        int health;
        Map<String, Long> metrics = new java.util.LinkedHashMap<>();

        @Override
        public byte[] put(long firstSeq, byte[] batch) {
            throwScripted();
            List<Long> offsets = ReferenceDecoder.decodeBatch(batch).stream().map(r -> r.offset).collect(Collectors.toList());
            batches.add(offsets);
            firstSeqs.add(firstSeq);
            submitted += offsets.size();
            return progress();
        }

        @Override
        public byte[] flush(long timeoutMs, boolean sendPartFilledJobs) {
            throwScripted();
            flushTimeouts.add(timeoutMs);
            flushSendsJobs.add(sendPartFilledJobs);
            return progress();
        }

        @Override
        public void abandon(long[] seqs, long waitMs) {
            abandoned.add(seqs);
            abandonWaits.add(waitMs);
            submitted -= seqs.length;
        }

        @Override
        public byte[] drainLogs() {
            return new byte[] {0, 0, 0, 1, 2, 0, 0, 0, 2, 'h', 'i'}; // one INFO event "hi"
        }

        @Override
        public void close() {
            closes++;
        }

        /** The record {@code seq} finishes with {@code status} (Progress.WRITTEN/SKIPPED/FAILED) at the next call. */
        void finish(long seq, int status) {
            ready.add(new long[] {seq, status});
            messages.put(seq, "message " + seq);
        }

        private void throwScripted() {
            if (!failures.isEmpty()) {
                throw (RuntimeException) failures.removeFirst();
            }
        }

        private byte[] progress() {
            long[] seqs = ready.stream().mapToLong(r -> r[0]).toArray();
            int[] statuses = ready.stream().mapToInt(r -> (int) r[1]).toArray();
            String[] texts = ready.stream().map(r -> messages.get(r[0])).toArray(String[]::new);
            finished += ready.size();
            ready.clear();
            return ReferenceDecoder.progress(seqs, statuses, texts, (int) (submitted - finished), 0, metrics, health,
                    1_000L, health == 0 ? "" : "held", new int[] {3}, new String[] {"w"});
        }
    }

    static final class FakeContext implements SinkTaskContext {
        final ErrantRecordReporter reporter;
        final List<Long> timeouts = new ArrayList<>();
        final Set<TopicPartition> assigned = new java.util.HashSet<>(Set.of(new TopicPartition("t", 0)));
        final Set<TopicPartition> paused = new java.util.HashSet<>();

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
            return assigned;
        }

        @Override
        public void pause(TopicPartition... partitions) {
            paused.addAll(List.of(partitions));
        }

        @Override
        public void resume(TopicPartition... partitions) {
            paused.removeAll(List.of(partitions));
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
        return start(reporter, extra, chunkBytes, true);
    }

    /** {@code originalCoordinates=false} plays a worker before Kafka 3.6 (no SinkRecord.originalTopic()). */
    private SalesforceSinkTask start(ErrantRecordReporter reporter, Map<String, String> extra, int chunkBytes,
                                     boolean originalCoordinates) {
        SalesforceSinkTask task = new SalesforceSinkTask(config -> {
            writer.config = config.clone();
            return writer;
        }, chunkBytes, new OffsetTracker(originalCoordinates));
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

    /** What preCommit returns when Connect asks about every partition these tests use. */
    private static Map<TopicPartition, Long> committed(SalesforceSinkTask task) {
        return committed(task, T0, new TopicPartition("t", 1), new TopicPartition("a-orders", 0),
                new TopicPartition("b-orders", 0));
    }

    /** What preCommit returns when Connect asks about {@code asked} (all consumed up to offset 1000). */
    private static Map<TopicPartition, Long> committed(SalesforceSinkTask task, TopicPartition... asked) {
        Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> current = new java.util.HashMap<>();
        for (TopicPartition tp : asked) {
            current.put(tp, new org.apache.kafka.clients.consumer.OffsetAndMetadata(1000));
        }
        Map<TopicPartition, Long> out = new java.util.HashMap<>();
        task.preCommit(current).forEach((tp, o) -> out.put(tp, o.offset()));
        return out;
    }

    /** A reporter whose DLQ producer cannot take the record (e.g. larger than max.request.size). */
    private static ErrantRecordReporter failingDlq(List<SinkRecord> tried) {
        return (record, error) -> {
            tried.add(record);
            CompletableFuture<Void> f = new CompletableFuture<>();
            f.completeExceptionally(new org.apache.kafka.common.errors.RecordTooLargeException(
                    "The message is 2000 bytes when serialized which is larger than 1000"));
            return f;
        };
    }

    private static final TopicPartition T0 = new TopicPartition("t", 0);

    @Test
    void putReturnsAtOnceAndOffsetsCommitOnlyBelowTheFirstUnfinishedRecord() {
        Reported reported = new Reported();
        SalesforceSinkTask task = start(reported.reporter(), Map.of());
        task.put(records(10, 11, 12));
        assertEquals(List.of(0L), writer.firstSeqs);
        assertEquals(Map.of(), committed(task), "nothing finished yet");

        writer.finish(1, Progress.WRITTEN);
        assertEquals(Map.of(), committed(task), "offset 10 is still unfinished");
        writer.finish(0, Progress.FAILED);
        assertEquals(Map.of(T0, 12L), committed(task), "10 reported, 11 written: commit up to 12");
        assertEquals(1, reported.records.size());
        assertEquals(10L, reported.records.get(0).kafkaOffset());
        assertEquals("message 0", reported.errors.get(0).getMessage());
        assertEquals(Map.of(), committed(task), "no progress, nothing to commit again");

        task.put(records(13));
        assertEquals(List.of(0L, 3L), writer.firstSeqs, "sequence numbers continue across puts");
        writer.finish(2, Progress.SKIPPED);
        writer.finish(3, Progress.WRITTEN);
        task.put(List.of()); // an empty put collects outcomes too
        assertEquals(Map.of(T0, 14L), committed(task));
        assertEquals(0, task.offsetTracker().unfinished());
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
        task.put(batch);
        writer.finish(0, Progress.WRITTEN);
        assertEquals(Map.of(new TopicPartition("a-orders", 0), 6L), committed(task),
                "b-orders@5 is unfinished and must not be committed through a-orders@5");
        writer.finish(1, Progress.WRITTEN);
        assertEquals(Map.of(new TopicPartition("b-orders", 0), 6L), committed(task));
    }

    @Test
    void closeGivesUpTheUnfinishedRecordsOfRevokedPartitionsOnly() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        SinkRecord kept = new SinkRecord("t", 1, null, "k", null, Map.of("LastName", "L"), 7);
        task.put(List.of(records(1).get(0), kept, records(2).get(0)));
        writer.finish(0, Progress.WRITTEN);
        assertEquals(Map.of(T0, 2L), committed(task), "Connect commits before it closes revoked partitions");
        task.close(List.of(T0));
        assertEquals(1, writer.abandoned.size());
        assertEquals(List.of(2L), java.util.Arrays.stream(writer.abandoned.get(0)).boxed().collect(Collectors.toList()),
                "only t-0's unfinished record (offset 2) is given up");
        assertEquals(Map.of(), committed(task), "nothing of the revoked partition is committed after close");
        writer.finish(1, Progress.WRITTEN);
        assertEquals(Map.of(new TopicPartition("t", 1), 8L), committed(task), "t-1 goes on");
    }

    @Test
    void aFullBufferPausesThePartitionsUntilHalfOfItDrained() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of("salesforce.max.buffered.records", "4"));
        FakeContext context = contextOf(task);
        task.put(records(1, 2, 3));
        assertTrue(context.paused.isEmpty());
        task.put(records(4));
        assertEquals(Set.of(T0), context.paused, "4 unfinished records: paused");
        writer.finish(0, Progress.WRITTEN);
        task.put(List.of());
        assertEquals(Set.of(T0), context.paused, "3 unfinished: still above half");
        writer.finish(1, Progress.WRITTEN);
        task.put(List.of());
        assertTrue(context.paused.isEmpty(), "2 unfinished: resumed");
    }

    @Test
    void aRecordFailureSeenInPreCommitFailsTheTaskAtTheNextPut() {
        ErrantRecordReporter strict = (record, error) -> {
            throw new ConnectException("Tolerance exceeded in error handler", error);
        };
        SalesforceSinkTask task = start(strict, Map.of());
        task.put(records(1, 2));
        writer.finish(1, Progress.WRITTEN);
        writer.finish(0, Progress.FAILED);
        task.preCommit(Map.of()); // Connect would only log an exception from here
        ConnectException e = assertThrows(ConnectException.class, () -> task.put(records(3)));
        assertEquals("Tolerance exceeded in error handler", e.getMessage());
        assertEquals("message 0", e.getCause().getMessage());
    }

    @Test
    void aRecordWhoseDlqReportFailedIsNeverCommittedWhenPreCommitLearnsOfIt() {
        List<SinkRecord> tried = new ArrayList<>();
        SalesforceSinkTask task = start(failingDlq(tried), Map.of("errors.tolerance", "all"));
        task.put(records(1, 2, 3));
        writer.finish(0, Progress.WRITTEN);
        writer.finish(1, Progress.FAILED);
        writer.finish(2, Progress.WRITTEN);
        assertEquals(Map.of(T0, 2L), committed(task), "offset 1 written; offset 2's report failed: commit stops below it");
        assertEquals(1, tried.size());
        ConnectException e = assertThrows(ConnectException.class, () -> task.put(records(4)),
                "a failed DLQ report fails the task at the next put");
        assertTrue(e.getMessage().contains("larger than 1000"), e.getMessage());
        assertEquals(Map.of(), committed(task), "and its offset is never committed later");
        assertEquals(1, task.offsetTracker().unfinished(), "the record stays unfinished");
    }

    @Test
    void aRecordWhoseDlqReportFailedIsNeverCommittedWhenPutLearnsOfIt() {
        SalesforceSinkTask task = start(failingDlq(new ArrayList<>()), Map.of("errors.tolerance", "all"));
        task.put(records(1, 2));
        writer.finish(0, Progress.FAILED);
        writer.finish(1, Progress.WRITTEN);
        assertThrows(ConnectException.class, () -> task.put(List.of()));
        // Connect still makes its closing commit after a put failed.
        assertEquals(Map.of(), committed(task));
    }

    @Test
    void aRejectedRecordWhoseDlqReportFailedIsNeverCommitted() {
        SalesforceSinkTask task = start(failingDlq(new ArrayList<>()), Map.of("errors.tolerance", "all"));
        SinkRecord bad = new SinkRecord("t", 0, null, "k", null, Map.of("Id", UUID.randomUUID()), 7);
        assertThrows(ConnectException.class, () -> task.put(List.of(bad, records(8).get(0))));
        writer.finish(0, Progress.WRITTEN); // offset 8
        assertEquals(Map.of(), committed(task), "offset 8 is written, but offset 7 never reached the DLQ");
    }

    @Test
    void preCommitAnswersForThePartitionsConnectAskedAboutAndKeepsTheRest() {
        TopicPartition t1 = new TopicPartition("t", 1);
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        task.put(List.of(records(1).get(0), new SinkRecord("t", 1, null, "k", null, Map.of("LastName", "L"), 7)));
        writer.finish(0, Progress.WRITTEN);
        writer.finish(1, Progress.WRITTEN);
        // The commit before a cooperative revocation of t-0 names t-0 only.
        assertEquals(Map.of(T0, 2L), committed(task, T0));
        assertEquals(Map.of(t1, 8L), committed(task, t1, T0), "t-1's progress was kept for a later commit");
        assertEquals(Map.of(), committed(task, t1, T0));
    }

    @Test
    void beforeKafka36AFailingPreCommitReturnsNothing() {
        ErrantRecordReporter strict = (record, error) -> {
            throw new ConnectException("Tolerance exceeded in error handler", error);
        };
        SalesforceSinkTask task = start(strict, Map.of(), Integer.MAX_VALUE, false);
        task.put(records(1, 2));
        writer.finish(0, Progress.WRITTEN);
        writer.finish(1, Progress.FAILED);
        assertEquals(Map.of(), committed(task, T0),
                "without original coordinates the tracker's partitions may be renamed ones: nothing is returned");
    }

    /** RegexRouter renames a-orders and b-orders to orders; a worker before 3.6 shows only "orders". */
    private static SinkRecord renamed(String from, long offset) {
        return new SinkRecord("orders", 0, null, "k" + from + offset, null, Map.of("LastName", "L"), offset);
    }

    @Test
    void beforeKafka36CloseGivesUpRenamedRecordsToo() {
        TopicPartition a = new TopicPartition("a-orders", 0);
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of(), Integer.MAX_VALUE, false);
        FakeContext context = contextOf(task);
        context.assigned.clear();
        context.assigned.add(a);
        task.put(List.of(renamed("a", 5), renamed("a", 6)));
        task.close(List.of(a)); // eager revocation or stop: every assigned partition
        assertEquals(1, writer.abandoned.size(), "the renamed records were given up");
        assertEquals(List.of(0L, 1L), java.util.Arrays.stream(writer.abandoned.get(0)).boxed().collect(Collectors.toList()));
        assertEquals(0, task.offsetTracker().unfinished());
    }

    @Test
    void beforeKafka36APartialRevocationWithRenamedRecordsHoldsCommits() {
        TopicPartition a = new TopicPartition("a-orders", 0);
        TopicPartition b = new TopicPartition("b-orders", 0);
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of(), Integer.MAX_VALUE, false);
        FakeContext context = contextOf(task);
        context.assigned.clear();
        context.assigned.addAll(List.of(a, b));
        task.put(List.of(renamed("a", 5), renamed("b", 9)));
        task.close(List.of(a));
        assertEquals(List.of(0L, 1L), java.util.Arrays.stream(writer.abandoned.get(0)).boxed().collect(Collectors.toList()),
                "which of them came from a-orders cannot be told: both are given up");
        context.assigned.remove(a);
        assertEquals(Map.of(), committed(task, b),
                "b-orders@9 was given up, so b-orders' consumed offsets must not be committed");
    }

    @Test
    void aStopWaitsBrieflyARevocationUpToTheRequestTimeout() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of("salesforce.request.timeout.ms", "20000"));
        task.put(records(1, 2));
        task.preCommit(Map.of(T0, new org.apache.kafka.clients.consumer.OffsetAndMetadata(3)),
                SalesforceSinkTask.Closing.REVOKING);
        task.close(List.of(T0), SalesforceSinkTask.Closing.REVOKING);
        assertEquals(List.of(21_000L), writer.abandonWaits, "revoked: the request timeout and a second");

        task.put(records(3, 4));
        long started = System.nanoTime();
        task.preCommit(Map.of(T0, new org.apache.kafka.clients.consumer.OffsetAndMetadata(5)),
                SalesforceSinkTask.Closing.STOPPING);
        task.close(List.of(T0), SalesforceSinkTask.Closing.STOPPING);
        assertEquals(List.of(15_000L, 2_000L), writer.flushTimeouts, "revoking: 15 s; stopping: 2 s at most");
        long close = writer.abandonWaits.get(1);
        assertTrue(close <= SalesforceSinkTask.STOPPING_ABANDON_WAIT_MS, "stopping close() waits " + close);
        // The fake flush returns at once; a real one that took its 2 s leaves close() 1 s of the 3 s.
        assertTrue(SalesforceSinkTask.STOPPING_COMMIT_WAIT_MS + SalesforceSinkTask.STOPPING_ABANDON_WAIT_MS
                <= SalesforceSinkTask.STOP_BUDGET_MS);
        assertTrue((System.nanoTime() - started) / 1_000_000 < 1_000);
    }

    @Test
    void beforeKafka36TheStoppingCommitWaitsNoLongerThanOnNewerWorkers() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of(), Integer.MAX_VALUE, false);
        task.put(records(1));
        task.preCommit(Map.of(T0, new org.apache.kafka.clients.consumer.OffsetAndMetadata(2)),
                SalesforceSinkTask.Closing.STOPPING);
        assertEquals(List.of(2_000L), writer.flushTimeouts, "not the whole flush budget (75 s)");
    }

    @Test
    void theCommitBeforeARevocationOrAStopKeepsPartFilledBulkJobsBack() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        task.put(records(1));
        Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> offsets =
                Map.of(T0, new org.apache.kafka.clients.consumer.OffsetAndMetadata(2));
        task.preCommit(offsets, SalesforceSinkTask.Closing.NO);
        task.preCommit(offsets, SalesforceSinkTask.Closing.REVOKING);
        task.preCommit(offsets, SalesforceSinkTask.Closing.STOPPING);
        task.flush(offsets);
        assertEquals(List.of(true, false, false, true), writer.flushSendsJobs,
                "periodic commit and flush send them; revocation and stop keep them back");
    }

    @Test
    void aBufferThatWouldOutlastARevocationPausesThePartitions() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        FakeContext context = contextOf(task);
        writer.metrics.put("buffer.drain.estimate.ms", 12_000L); // a hot key's chain at the observed round trip
        task.put(records(1, 2, 3));
        assertEquals(Set.of(T0), context.paused, "3 records, but 12 s to finish them: paused");
        writer.metrics.put("buffer.drain.estimate.ms", 6_000L);
        task.put(List.of());
        assertEquals(Set.of(T0), context.paused, "above half of the limit: still paused");
        writer.metrics.put("buffer.drain.estimate.ms", 4_000L);
        task.put(List.of());
        assertTrue(context.paused.isEmpty(), "resumed");
    }

    @Test
    void flushWaitsWithTheTimeBudget() {
        SalesforceSinkTask task = start(null, Map.of("consumer.override.max.poll.interval.ms", "40000"));
        task.put(records(1));
        task.flush(Map.of());
        assertEquals(List.of(10_000L), writer.flushTimeouts);
    }

    @Test
    void hugeBatchesAreCutIntoSeveralNativeCallsInOrder() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of(), 1); // one record a call
        task.put(records(1, 2, 3));
        assertEquals(List.of(List.of(1L), List.of(2L), List.of(3L)), writer.batches);
        assertEquals(List.of(0L, 1L, 2L), writer.firstSeqs);
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
        strict.put(records(1, 2));
        writer.finish(1, Progress.FAILED);
        ConnectException e = assertThrows(ConnectException.class, () -> strict.put(List.of()));
        assertTrue(e.getMessage().contains("message 1"), e.getMessage());
        assertTrue(e.getMessage().contains("offset 2"), e.getMessage());

        SalesforceSinkTask tolerant = start(null, Map.of("errors.tolerance", "ALL"));
        tolerant.put(records(1, 2));
        writer.finish(3, Progress.FAILED);
        tolerant.put(List.of()); // logged and skipped
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

        task.put(List.of(bad, records(8).get(0)));
        assertEquals(List.of(List.of(8L)), writer.batches);
        assertEquals(2, reported.records.size());
    }

    @Test
    void nativeExceptionFailsTheTask() {
        SalesforceSinkTask task = start(null, Map.of());
        writer.failures.add(new NativeSinkException("native panic: boom"));
        ConnectException e = assertThrows(ConnectException.class, () -> task.put(records(1)));
        assertTrue(e.getMessage().contains("native panic: boom"));
        assertNotNull(e.getCause());
    }

    @Test
    void aBatchTheNativeSideCouldNotTakeYetComesBackThroughConnect() {
        SalesforceSinkTask task = start(new Reported().reporter(), Map.of());
        writer.failures.add(new io.axual.connect.plugins.salesforce.jni.NativeRetriableException("describe: HTTP 503"));
        assertThrows(org.apache.kafka.connect.errors.RetriableException.class, () -> task.put(records(1, 2)));
        assertEquals(List.of(1_000L), contextOf(task).timeouts);
        assertEquals(0, task.offsetTracker().unfinished(), "nothing was taken, nothing is tracked");
        task.put(records(1, 2));
        assertEquals(List.of(0L), writer.firstSeqs, "the same sequence numbers are used again");
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
