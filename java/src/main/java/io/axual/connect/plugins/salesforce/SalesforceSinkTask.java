package io.axual.connect.plugins.salesforce;

import io.axual.connect.plugins.salesforce.health.TaskHealthRegistry;
import io.axual.connect.plugins.salesforce.jni.ConfigEncoder;
import io.axual.connect.plugins.salesforce.jni.EncodedBatch;
import io.axual.connect.plugins.salesforce.jni.LogEvent;
import io.axual.connect.plugins.salesforce.jni.NativeRetriableException;
import io.axual.connect.plugins.salesforce.jni.NativeSinkException;
import io.axual.connect.plugins.salesforce.jni.NativeSinkHandle;
import io.axual.connect.plugins.salesforce.jni.NativeWriter;
import io.axual.connect.plugins.salesforce.jni.Progress;
import io.axual.connect.plugins.salesforce.jni.RecordBatchEncoder;
import io.axual.connect.plugins.salesforce.metrics.PluginMetricsBridge;
import io.axual.connect.plugins.salesforce.metrics.SinkTaskMetrics;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.function.Function;
import java.util.function.Supplier;
import javax.management.JMException;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.ErrantRecordReporter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Hands each {@code put} to the native pipeline in one JNI call and returns without waiting for
 * Salesforce (SPEC §6). Records finish later; their outcomes come back with the next
 * {@code put}/{@code preCommit}/{@code flush}, on the task thread: FAILED records go to the
 * {@link ErrantRecordReporter} (or fail the task / are logged, per {@code errors.tolerance}, on
 * workers without one). {@code preCommit} commits only offsets below the first unfinished record
 * of each partition; a full buffer pauses the partitions until it drains.
 */
public class SalesforceSinkTask extends SinkTask {
    private static final Logger log = LoggerFactory.getLogger(SalesforceSinkTask.class);
    /** Events recorded by the Rust core, logged on the task thread. */
    private static final Logger nativeLog = LoggerFactory.getLogger("io.axual.connect.plugins.salesforce.native");

    static final String CONNECTOR_NAME_PROP = "name";
    static final String ERRORS_TOLERANCE_PROP = "errors.tolerance";
    static final String MAX_POLL_INTERVAL_PROP = "consumer.override.max.poll.interval.ms";
    /** Before Connect offers a batch again that the native side could not take yet. */
    static final long RETRIABLE_BACKOFF_MS = 1_000L;
    /** The consumer's default {@code max.poll.interval.ms}. */
    static final long DEFAULT_MAX_POLL_INTERVAL_MS = 300_000L;
    /**
     * How long the commit before {@code close(partitions)} waits for buffered records when the
     * partitions are revoked: the rebalance waits for it (bounded by the consumer's
     * max.poll.interval.ms); what does not finish is written again by the next owner.
     */
    static final long REVOKING_COMMIT_WAIT_MS = 15_000L;
    /**
     * The same when the task stops. Connect gives a stopping task 5 s in all
     * (task.shutdown.graceful.timeout.ms) for this commit, close(), its own commit, stop() and
     * closing the consumer; past that it cancels the task and skips its last commit.
     */
    static final long STOPPING_COMMIT_WAIT_MS = 2_000L;
    /** How long a stopping task's close() waits for requests in flight (SPEC §11). */
    static final long STOPPING_ABANDON_WAIT_MS = 1_000L;
    /** The stopping commit and close() together end within this, however slow Salesforce is. */
    static final long STOP_BUDGET_MS = 3_000L;
    /**
     * Back-pressure beyond {@code max.buffered.records}: the partitions pause while the buffer
     * would take longer than this to finish at the observed round trip (the native
     * {@code buffer.drain.estimate.ms}), so a revocation's last commit (REVOKING_COMMIT_WAIT_MS)
     * can finish what the task holds and the next owner replays little. Resumed at half of it.
     */
    static final long MAX_DRAIN_ESTIMATE_MS = REVOKING_COMMIT_WAIT_MS * 2 / 3;
    static final String DRAIN_ESTIMATE_METRIC = "buffer.drain.estimate.ms";

    private final Function<byte[], NativeWriter> opener;
    private final int chunkBytes;
    private final OffsetTracker offsets;

    private volatile NativeWriter writer;
    private RecordBatchEncoder encoder;
    private ErrantRecordReporter reporter;
    private boolean tolerateAll;
    private String logPrefix = "";
    private long nextSeq;
    /**
     * Records the encoder refused never cross JNI: they are tracked under negative sequence
     * numbers, so that no offset passes one before its DLQ report completed.
     */
    private long nextRejectedSeq = -1;
    /** The sequence numbers {@link #track} gave the last chunk's refused records, in order. */
    private final List<Long> rejectedSeqs = new ArrayList<>();
    private int maxBuffered;
    private long flushTimeoutMs;
    private long requestTimeoutMs;
    /** When the stopping commit began (System.nanoTime()), so close() keeps within STOP_BUDGET_MS. */
    private long stopStartedNanos;
    private boolean stopping;
    private boolean paused;
    /** Why the partitions are paused: the buffer is full, and/or the quota guard holds (SPEC §8). */
    private boolean bufferFull;
    private boolean quotaHeld;
    private String connectorName;
    private int taskNumber;
    private SinkTaskMetrics metrics;
    private PluginMetricsBridge pluginMetrics;
    private int lastHealthState = -1;
    /** A record failure seen where throwing would not fail the task (preCommit): thrown at the next put. */
    private ConnectException deferredFailure;
    /** Before Kafka 3.6: records of partitions still assigned may have been given up (see close). */
    private boolean commitsHeld;

    public SalesforceSinkTask() {
        this(NativeSinkHandle::open);
    }

    /** For tests: a different way to get the native writer. */
    SalesforceSinkTask(Function<byte[], NativeWriter> opener) {
        this(opener, RecordBatchEncoder.DEFAULT_CHUNK_BYTES);
    }

    /** For tests: batches cut into native calls of about {@code chunkBytes}. */
    SalesforceSinkTask(Function<byte[], NativeWriter> opener, int chunkBytes) {
        this(opener, chunkBytes, new OffsetTracker());
    }

    /** For tests: a tracker that plays a worker with or without original record coordinates. */
    SalesforceSinkTask(Function<byte[], NativeWriter> opener, int chunkBytes, OffsetTracker offsets) {
        this.opener = opener;
        this.chunkBytes = chunkBytes;
        this.offsets = offsets;
    }

    @Override
    public String version() {
        return Version.get();
    }

    @Override
    public void start(Map<String, String> props) {
        String connectorName = props.getOrDefault(CONNECTOR_NAME_PROP, "salesforce-sobject-sink");
        String taskId = props.getOrDefault(ConfigEncoder.TASK_ID, "0");
        logPrefix = "[" + connectorName + "|task-" + taskId + "] ";
        this.connectorName = connectorName;
        this.taskNumber = parseTaskNumber(taskId);
        registerMetrics(connectorName, taskId);
        try {
            startTask(props, connectorName, taskId);
        } catch (RuntimeException | Error e) {
            unregisterMetrics(); // a failed start leaves no MBean behind: stop() may never come
            throw e;
        }
    }

    private void startTask(Map<String, String> props, String connectorName, String taskId) {
        SalesforceSinkConfig config;
        try {
            config = new SalesforceSinkConfig(props);
        } catch (ConfigException e) {
            throw new ConnectException(logPrefix + e.getMessage(), e);
        }
        tolerateAll = "all".equals(props.getOrDefault(ERRORS_TOLERANCE_PROP, "none").trim().toLowerCase(Locale.ROOT));
        reporter = errantRecordReporter();
        encoder = new RecordBatchEncoder(config.operationHeaderNameIfEnabled(), chunkBytes);
        maxBuffered = config.effectiveMaxBufferedRecords();
        flushTimeoutMs = putTimeBudgetMs(props);
        requestTimeoutMs = config.getInt(SalesforceSinkConfig.REQUEST_TIMEOUT_MS);
        stopping = false;
        offsets.clear();
        paused = false;
        bufferFull = false;
        quotaHeld = false;
        lastHealthState = -1;
        deferredFailure = null;
        commitsHeld = false;

        byte[] configBuffer = ConfigEncoder.encode(config.nativeSettings(), connectorName, taskId, flushTimeoutMs);
        try {
            writer = opener.apply(configBuffer);
        } catch (NativeSinkException e) {
            throw new ConnectException("Salesforce sink task could not start: " + e.getMessage(), e);
        } finally {
            Arrays.fill(configBuffer, (byte) 0); // it held the secrets in clear
        }
        try {
            drainNativeLogs();
        } catch (RuntimeException e) {
            closeWriter();
            throw e;
        }
        log.info("{}Salesforce sink task started: SObject {}, operation {}, write mode {}, DLQ reporter {}, "
                        + "errors.tolerance {}, preCommit {}", logPrefix, config.getString(SalesforceSinkConfig.SOBJECT_TYPE),
                config.getString(SalesforceSinkConfig.OPERATION), config.getString(SalesforceSinkConfig.WRITE_MODE),
                reporter == null ? "absent" : "present", tolerateAll ? "all" : "none",
                offsets.originalCoordinatesKnown() ? "asynchronous (original record coordinates)"
                        : "synchronous (worker before Kafka 3.6: no SinkRecord.originalTopic())");
        if (config.getString(SalesforceSinkConfig.IDEMPOTENCY_FIELD) != null
                && !RecordBatchEncoder.originalCoordinatesKnown()) {
            log.warn("{}{} gets each record's topic:partition:offset as the task sees it: this worker (before "
                    + "Kafka 3.6) hides the original coordinates, so an SMT that renames topics or partitions can "
                    + "give two records one value and one Salesforce record", logPrefix,
                    SalesforceSinkConfig.IDEMPOTENCY_FIELD);
        }
    }

    private static int parseTaskNumber(String taskId) {
        try {
            return Integer.parseInt(taskId.trim());
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    /**
     * The task's MBean (SPEC §10), and on Kafka 4.1+ workers the same figures as plugin metrics
     * (KIP-877). Older workers have no {@code pluginMetrics()}: the bridge class, the only one that
     * links against it, fails to link there and is skipped.
     */
    private void registerMetrics(String connectorName, String taskId) {
        unregisterMetrics();
        try {
            metrics = SinkTaskMetrics.register(connectorName, taskId);
        } catch (JMException | RuntimeException e) {
            log.warn("{}Could not register the task's metrics MBean: {}", logPrefix, e.toString());
            metrics = null;
            return;
        }
        if (context != null) {
            try {
                pluginMetrics = PluginMetricsBridge.publish(context, metrics);
            } catch (LinkageError e) {
                log.debug("{}This worker has no plugin metrics (Kafka before 4.1): JMX MBean only", logPrefix);
            } catch (RuntimeException e) {
                log.warn("{}Could not publish plugin metrics: {}", logPrefix, e.toString());
            }
        }
    }

    private void unregisterMetrics() {
        PluginMetricsBridge bridge = pluginMetrics;
        pluginMetrics = null;
        if (bridge != null) {
            bridge.close();
        }
        SinkTaskMetrics m = metrics;
        metrics = null;
        boolean owner = true;
        if (m != null) {
            try {
                owner = m.unregister();
            } catch (RuntimeException e) {
                log.warn("{}Could not unregister the task's metrics MBean: {}", logPrefix, e.toString());
            }
        }
        if (connectorName != null && owner) { // a newer instance of this task keeps its health entry
            TaskHealthRegistry.remove(connectorName, taskNumber);
        }
    }

    /**
     * How long a blocking {@code flush} may wait for the buffer to drain: a quarter of the
     * consumer's {@code max.poll.interval.ms}, so the consumer is never evicted from its group
     * (and a second task never writes the same keys) while this task waits for Salesforce.
     */
    static long putTimeBudgetMs(Map<String, String> props) {
        long pollInterval = DEFAULT_MAX_POLL_INTERVAL_MS;
        String override = props.get(MAX_POLL_INTERVAL_PROP);
        if (override != null) {
            try {
                pollInterval = Long.parseLong(override.trim());
            } catch (NumberFormatException e) {
                // The worker refuses such a consumer override itself; keep the default here.
            }
        }
        return Math.max(1_000L, pollInterval / 4);
    }

    private ErrantRecordReporter errantRecordReporter() {
        if (context == null) {
            return null;
        }
        try {
            return context.errantRecordReporter();
        } catch (NoSuchMethodError | NoClassDefFoundError e) {
            log.warn("{}This Kafka Connect worker is older than 2.6 and has no ErrantRecordReporter: failed records "
                    + "are logged (errors.tolerance=all) or fail the task", logPrefix);
            return null;
        }
    }

    @Override
    public void put(Collection<SinkRecord> records) {
        NativeWriter w = runningWriter();
        throwDeferredFailure();
        List<Report> reports = new ArrayList<>();
        if (records.isEmpty()) {
            // Paused partitions still bring empty puts: the moment to collect outcomes and resume.
            apply(call(() -> w.flush(0, true)), reports);
        }
        // One native call per chunk: a batch is cut only when its encoding would pass the size a
        // single call can carry; chunks go in order, so per-key order holds across them.
        java.util.Iterator<SinkRecord> inOrder = records.iterator();
        for (EncodedBatch batch : encoder.encodeChunks(records)) {
            List<SinkRecord> sent = batch.sent();
            if (sent.isEmpty()) {
                track(batch, inOrder, nextSeq);
                reportRejected(batch, reports);
                continue;
            }
            long firstSeq = nextSeq;
            byte[] progress;
            try {
                progress = w.put(firstSeq, batch.buffer());
            } catch (NativeRetriableException e) {
                // Nothing of this batch was taken: Connect offers it again after the backoff.
                awaitReports(reports);
                context.timeout(RETRIABLE_BACKOFF_MS);
                throw new RetriableException(logPrefix + e.getMessage(), e);
            } catch (NativeSinkException e) {
                throw nativeFailure(e);
            }
            track(batch, inOrder, firstSeq);
            nextSeq = firstSeq + sent.size();
            // After the good records of the chunk were handed over, so that a failing task still
            // writes them first (errors.tolerance=none).
            reportRejected(batch, reports);
            apply(decode(progress), reports);
        }
        awaitReports(reports);
    }

    /**
     * Tracks one chunk's records in their offset order: those handed over under {@code firstSeq…}
     * (the native side numbers them so), the refused ones under their own negative numbers.
     */
    private void track(EncodedBatch batch, java.util.Iterator<SinkRecord> inOrder, long firstSeq) {
        int sentIndex = 0;
        int rejectedIndex = 0;
        List<SinkRecord> sent = batch.sent();
        List<EncodedBatch.Rejected> rejected = batch.rejected();
        rejectedSeqs.clear();
        for (int i = sent.size() + rejected.size(); i > 0; i--) {
            SinkRecord record = inOrder.next();
            if (sentIndex < sent.size() && sent.get(sentIndex) == record) {
                offsets.add(record, firstSeq + sentIndex++);
            } else {
                long seq = nextRejectedSeq--;
                offsets.add(rejected.get(rejectedIndex++).record(), seq);
                rejectedSeqs.add(seq);
            }
        }
    }

    /** Records the encoder refused (they never cross JNI): DLQ, or the task fails. */
    private void reportRejected(EncodedBatch batch, List<Report> reports) {
        List<EncodedBatch.Rejected> rejected = batch.rejected();
        for (int i = 0; i < rejected.size(); i++) {
            try {
                handleFailure(rejectedSeqs.get(i), rejected.get(i).record(), rejected.get(i).error(), reports);
            } catch (ConnectException e) {
                throw beforeFailing(e);
            }
        }
    }

    /**
     * Offsets below the first unfinished record of each partition. On workers without original
     * coordinates (before Kafka 3.6) a topic-renaming SMT would hide which partition a record came
     * from: there every buffered record is waited for and Connect's own offsets are returned.
     */
    @Override
    public Map<TopicPartition, OffsetAndMetadata> preCommit(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
        return preCommit(currentOffsets, closingCommit());
    }

    /** {@link #preCommit(Map)} for the commit {@code closing} says it is (tests name it). */
    Map<TopicPartition, OffsetAndMetadata> preCommit(Map<TopicPartition, OffsetAndMetadata> currentOffsets,
                                                     Closing closing) {
        NativeWriter w = writer;
        if (w == null) {
            return Collections.emptyMap();
        }
        List<Report> reports = new ArrayList<>();
        try {
            boolean synchronous = !offsets.originalCoordinatesKnown();
            if (closing == Closing.STOPPING && !stopping) {
                stopping = true;
                stopStartedNanos = System.nanoTime();
            }
            // Before Kafka 3.6 every commit waits for the whole buffer, but a stopping one too
            // must leave Connect its graceful shutdown time.
            long wait = synchronous && closing != Closing.STOPPING ? flushTimeoutMs
                    : Math.min(flushTimeoutMs, closing.waitMs);
            int before = offsets.unfinished();
            long started = System.nanoTime();
            // A Bulk job started now would be aborted (revocation) or orphaned (stop) moments later.
            apply(call(() -> w.flush(wait, closing == Closing.NO)), reports);
            if (closing != Closing.NO && before > 0) {
                int left = offsets.unfinished();
                log.info("{}Last commit before {} partitions {}: {} of {} buffered records finished in {} ms{}",
                        logPrefix, closing == Closing.REVOKING ? "revoking" : "closing", currentOffsets.keySet(),
                        before - left, before, (System.nanoTime() - started) / 1_000_000,
                        left == 0 ? "" : "; the partitions' next owner writes the " + left + " others again");
            }
            awaitReports(reports);
            if (synchronous) {
                return offsets.unfinished() == 0 && !commitsHeld ? currentOffsets : Collections.emptyMap();
            }
            return offsets.takeCommittable(currentOffsets);
        } catch (ConnectException e) {
            // Connect only logs an exception from preCommit and rewinds; a record failure under
            // errors.tolerance=none or a failed DLQ report must fail the task, which a throw from
            // put() does; a stopping task has no next put, so it is logged here too.
            log.error("{}{} (the task fails at its next put)", logPrefix, e.getMessage());
            deferredFailure = e;
            // Without original coordinates the tracker's partitions may be renamed ones.
            return offsets.originalCoordinatesKnown() ? offsets.takeCommittable(currentOffsets) : Collections.emptyMap();
        }
    }

    /**
     * Whether Connect calls preCommit for the commit it makes right before {@code close(partitions)}
     * (partitions revoked, or the task stopping). Connect passes no flag for it, so the call stack
     * tells: {@code WorkerSinkTask.closePartitions}/{@code onPartitionsRevoked} (Kafka 2.x to 4.x).
     * That commit is the last this task makes for those partitions; records written after an
     * unfinished one would otherwise be written again by the next owner, and a replayed UPDATE or
     * DELETE whose key a later, already applied DELETE removed would reach the DLQ as NOT_FOUND.
     */
    static Closing closingCommit() {
        Set<String> frames = StackWalker.getInstance().walk(stack -> stack.limit(64)
                .filter(f -> f.getClassName().startsWith("org.apache.kafka.connect.runtime.WorkerSinkTask"))
                .map(StackWalker.StackFrame::getMethodName)
                .collect(java.util.stream.Collectors.toSet()));
        if (frames.contains("onPartitionsRevoked")) {
            return Closing.REVOKING;
        }
        return frames.contains("closePartitions") || frames.contains("closeAllPartitions") ? Closing.STOPPING : Closing.NO;
    }

    /** Which commit a preCommit call is, and how long it may wait for buffered records. */
    enum Closing {
        NO(0), REVOKING(REVOKING_COMMIT_WAIT_MS), STOPPING(STOPPING_COMMIT_WAIT_MS);

        final long waitMs;

        Closing(long waitMs) {
            this.waitMs = waitMs;
        }
    }

    /** Waits for everything buffered (bounded); outcomes are applied as in {@link #put}. */
    @Override
    public void flush(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
        NativeWriter w = writer;
        if (w == null) {
            return;
        }
        List<Report> reports = new ArrayList<>();
        apply(call(() -> w.flush(flushTimeoutMs, true)), reports);
        awaitReports(reports);
    }

    private NativeWriter runningWriter() {
        NativeWriter w = writer;
        if (w == null) {
            throw new ConnectException(logPrefix + "put() called on a Salesforce sink task that is not running");
        }
        return w;
    }

    private void throwDeferredFailure() {
        ConnectException failure = deferredFailure;
        if (failure != null) {
            deferredFailure = null;
            throw failure;
        }
    }

    /** Applies what the native side finished: DLQ reports, offsets, back-pressure. */
    private void apply(Progress progress, List<Report> reports) {
        logNative(progress.logs());
        observe(progress);
        for (int i = 0; i < progress.size(); i++) {
            long seq = progress.seq(i);
            SinkRecord record = offsets.record(seq);
            if (record == null) {
                continue; // its partition was revoked meanwhile
            }
            if (progress.status(i) == Progress.FAILED) {
                try {
                    handleFailure(seq, record, new ConnectException(progress.message(i)), reports);
                } catch (ConnectException e) {
                    throw beforeFailing(e);
                }
            } else {
                offsets.finish(seq);
            }
        }
        applyBackPressure(progress.unfinished(), progress.metrics().getOrDefault(DRAIN_ESTIMATE_METRIC, 0L),
                progress.healthState() == Progress.HEALTH_QUOTA_RESERVE);
    }

    /** The metrics snapshot and the health of a native crossing, for JMX and the status API. */
    private void observe(Progress progress) {
        SinkTaskMetrics m = metrics;
        if (m != null) {
            m.update(progress);
        }
        if (progress.healthState() != lastHealthState && connectorName != null) {
            lastHealthState = progress.healthState();
            TaskHealthRegistry.update(connectorName, taskNumber, new TaskHealthRegistry.Health(
                    Progress.healthName(progress.healthState()), progress.healthMessage(),
                    progress.healthSinceEpochMs()));
        }
    }

    /**
     * The task is about to fail for a record error (errors.tolerance=none): what is buffered is
     * still sent first, within the flush bound, as a synchronous sink would have written the rest
     * of its batch. Nothing of it is committed; a restarted task writes it again.
     */
    private ConnectException beforeFailing(ConnectException failure) {
        NativeWriter w = writer;
        if (w != null) {
            try {
                logNative(Progress.decode(w.flush(flushTimeoutMs, true)).logs());
            } catch (RuntimeException e) {
                failure.addSuppressed(e);
            }
        }
        return failure;
    }

    /**
     * Pauses every assigned partition while {@code max.buffered.records} are unfinished or the
     * buffer would take longer than {@link #MAX_DRAIN_ESTIMATE_MS} to finish, and resumes them once
     * half of each drained: the consumer keeps polling, so it is never evicted.
     */
    private void applyBackPressure(int unfinished, long drainEstimateMs, boolean quotaGuardHolds) {
        if (context == null) {
            return;
        }
        if (!bufferFull && unfinished >= maxBuffered) {
            bufferFull = true;
            log.info("{}{} records are waiting for Salesforce (salesforce.max.buffered.records={}): partitions paused",
                    logPrefix, unfinished, maxBuffered);
        } else if (!bufferFull && drainEstimateMs > MAX_DRAIN_ESTIMATE_MS) {
            bufferFull = true;
            log.info("{}{} records are waiting for Salesforce and would take about {} ms to finish at the observed "
                    + "round trip (more than a revocation can wait for): partitions paused", logPrefix, unfinished,
                    drainEstimateMs);
        } else if (bufferFull && unfinished <= maxBuffered / 2 && drainEstimateMs <= MAX_DRAIN_ESTIMATE_MS / 2) {
            bufferFull = false;
            log.info("{}{} records are waiting for Salesforce: partitions resumed", logPrefix, unfinished);
        }
        if (quotaGuardHolds != quotaHeld) {
            quotaHeld = quotaGuardHolds;
            log.info("{}API quota guard {}: partitions {}", logPrefix, quotaHeld ? "holds" : "released",
                    quotaHeld ? "paused" : "resumed");
        }
        boolean hold = bufferFull || quotaHeld;
        if (hold != paused) {
            Set<TopicPartition> assigned = context.assignment();
            if (hold) {
                context.pause(assigned.toArray(new TopicPartition[0]));
            } else {
                context.resume(assigned.toArray(new TopicPartition[0]));
            }
            paused = hold;
        }
    }

    private Progress call(Supplier<byte[]> nativeCall) {
        try {
            return Progress.decode(nativeCall.get());
        } catch (NativeSinkException e) {
            throw nativeFailure(e);
        }
    }

    private Progress decode(byte[] progress) {
        try {
            return Progress.decode(progress);
        } catch (NativeSinkException e) {
            throw nativeFailure(e);
        }
    }

    private ConnectException nativeFailure(NativeSinkException e) {
        try {
            drainNativeLogs(); // what the native side logged before it gave up explains the failure
        } catch (RuntimeException suppressed) {
            e.addSuppressed(suppressed);
        }
        return new ConnectException("Salesforce sink failed: " + e.getMessage(), e);
    }

    /**
     * A non-recoverable record error: to the reporter when there is one (its report() throws when
     * errors.tolerance=none, failing the task as it should); otherwise log and go on with
     * errors.tolerance=all, or fail the task.
     */
    private void handleFailure(long seq, SinkRecord record, RuntimeException error, List<Report> reports) {
        if (reporter != null) {
            reports.add(new Report(seq, reporter.report(record, error)));
            return;
        }
        String where = "topic " + record.topic() + ", partition " + record.kafkaPartition() + ", offset "
                + record.kafkaOffset();
        if (tolerateAll) {
            log.warn("{}Skipping the record at {} (errors.tolerance=all and no dead letter queue: none configured, "
                    + "or a worker before Kafka 2.6): {}", logPrefix, where, error.getMessage());
            offsets.finish(seq);
            return;
        }
        throw new ConnectException(error.getMessage() + " (record at " + where + ")", error);
    }

    /** A FAILED record handed to the reporter: finished once the report's future completed. */
    private static final class Report {
        final long seq;
        final Future<Void> future;

        Report(long seq, Future<Void> future) {
            this.seq = seq;
            this.future = future;
        }
    }

    /**
     * Finishes every reported record whose report completed. A record whose report failed stays
     * unfinished, so no offset ever passes it (it is redelivered after the task restarts), and
     * the task fails with the DLQ producer's error.
     */
    private void awaitReports(List<Report> reports) {
        ConnectException failure = null;
        for (Report report : reports) {
            try {
                report.future.get();
                offsets.finish(report.seq);
            } catch (ExecutionException e) {
                Throwable cause = e.getCause() == null ? e : e.getCause();
                SinkRecord record = offsets.record(report.seq);
                if (failure == null) {
                    failure = new ConnectException(logPrefix + "Could not report the failed record at "
                            + (record == null ? "?" : "topic " + record.topic() + ", partition " + record.kafkaPartition()
                            + ", offset " + record.kafkaOffset())
                            + " to the errant record reporter (dead letter queue); its offset is not committed "
                            + "and it is written again after the task restarts: " + cause, cause);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ConnectException("Interrupted while reporting failed records", e);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public void open(Collection<TopicPartition> partitions) {
        if (paused && context != null) {
            context.pause(partitions.toArray(new TopicPartition[0])); // the buffer is still full
        }
    }

    /**
     * The partitions move to another task: their unfinished records are given up without
     * committing their offsets, so the next owner writes them again from the last commit.
     */
    @Override
    public void close(Collection<TopicPartition> partitions) {
        close(partitions, closingCommit());
    }

    /**
     * On revocation the requests in flight of the revoked partitions are waited for (bounded by
     * the request timeout; max.poll.interval.ms leaves room), so that none lands after the next
     * owner's newer write of the same key. A stopping task waits only what is left of its stop
     * budget, within Connect's graceful shutdown.
     */
    void close(Collection<TopicPartition> partitions, Closing closing) {
        long waitMs = closing == Closing.REVOKING ? Math.min(requestTimeoutMs + 1_000L, flushTimeoutMs) : stoppingWaitMs();
        long[] unfinished = offsets.remove(partitions);
        if (!offsets.originalCoordinatesKnown() && context != null) {
            unfinished = abandonUnattributed(partitions, unfinished);
        }
        NativeWriter w = writer;
        if (w != null && unfinished.length > 0) {
            try {
                w.abandon(unfinished, waitMs);
            } catch (NativeSinkException e) {
                log.warn("{}Could not give up the unfinished records of revoked partitions: {}", logPrefix, e.getMessage());
            }
            log.debug("{}{} unfinished records of revoked partitions {} given up", logPrefix, unfinished.length, partitions);
        }
    }

    /**
     * Before Kafka 3.6 records are tracked by their coordinates after SMTs, and a renamed record's
     * partition cannot be told: those are given up with the closed partitions. Where partitions
     * stay assigned (a cooperative revocation), some given-up records may be theirs, so this task
     * commits nothing more (its partitions' next owner, or this task after a restart, replays
     * from the last commit).
     */
    private long[] abandonUnattributed(Collection<TopicPartition> partitions, long[] attributed) {
        Set<TopicPartition> assigned = context.assignment();
        List<TopicPartition> unknown = new ArrayList<>();
        for (TopicPartition tracked : offsets.partitions()) {
            if (!assigned.contains(tracked) && !partitions.contains(tracked)) {
                unknown.add(tracked);
            }
        }
        long[] renamed = offsets.remove(unknown);
        if (renamed.length == 0) {
            return attributed;
        }
        if (!partitions.containsAll(assigned)) {
            commitsHeld = true;
            log.warn("{}{} unfinished records renamed by an SMT were given up with revoked partitions {}; on this "
                    + "worker (before Kafka 3.6) their source partition cannot be told, so this task commits no "
                    + "more offsets until it restarts", logPrefix, renamed.length, partitions);
        }
        long[] all = Arrays.copyOf(attributed, attributed.length + renamed.length);
        System.arraycopy(renamed, 0, all, attributed.length, renamed.length);
        return all;
    }

    /** What a stopping task's close() may still wait for requests in flight. */
    private long stoppingWaitMs() {
        if (!stopping) {
            return STOPPING_ABANDON_WAIT_MS;
        }
        long spent = (System.nanoTime() - stopStartedNanos) / 1_000_000;
        return Math.max(0L, Math.min(STOPPING_ABANDON_WAIT_MS, STOP_BUDGET_MS - spent));
    }

    @Override
    public void stop() {
        unregisterMetrics();
        if (writer == null) {
            return;
        }
        try {
            drainNativeLogs();
        } catch (RuntimeException e) {
            log.warn("{}Could not drain native logs on stop: {}", logPrefix, e.getMessage());
        }
        closeWriter(); // unfinished records are given up with the native pipeline, never committed
        offsets.clear();
        log.info("{}Salesforce sink task stopped", logPrefix);
    }

    private void closeWriter() {
        NativeWriter w = writer;
        writer = null;
        if (w != null) {
            try {
                w.close();
            } catch (NativeSinkException e) {
                log.warn("{}Closing the native Salesforce sink failed: {}", logPrefix, e.getMessage());
            }
        }
    }

    private void drainNativeLogs() {
        NativeWriter w = writer;
        if (w != null) {
            logNative(Progress.decodeLogs(w.drainLogs()));
        }
    }

    private void logNative(List<LogEvent> events) {
        for (LogEvent event : events) {
            switch (event.level()) {
                case LogEvent.TRACE:
                    nativeLog.trace("{}{}", logPrefix, event.message());
                    break;
                case LogEvent.DEBUG:
                    nativeLog.debug("{}{}", logPrefix, event.message());
                    break;
                case LogEvent.INFO:
                    nativeLog.info("{}{}", logPrefix, event.message());
                    break;
                case LogEvent.WARN:
                    nativeLog.warn("{}{}", logPrefix, event.message());
                    break;
                default:
                    nativeLog.error("{}{}", logPrefix, event.message());
                    break;
            }
        }
    }

    /** For tests. */
    OffsetTracker offsetTracker() {
        return offsets;
    }
}
