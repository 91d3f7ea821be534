package io.axual.connect.plugins.salesforce;

import io.axual.connect.plugins.salesforce.jni.BatchOutcome;
import io.axual.connect.plugins.salesforce.jni.ConfigEncoder;
import io.axual.connect.plugins.salesforce.jni.EncodedBatch;
import io.axual.connect.plugins.salesforce.jni.LogEvent;
import io.axual.connect.plugins.salesforce.jni.NativeSinkException;
import io.axual.connect.plugins.salesforce.jni.NativeSinkHandle;
import io.axual.connect.plugins.salesforce.jni.NativeWriter;
import io.axual.connect.plugins.salesforce.jni.RecordBatchEncoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.function.Function;
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
 * Hands each {@code put} to the native core in one JNI call and applies the per-record outcome:
 * FAILED records go to the {@link ErrantRecordReporter} (or fail the task / are logged, per
 * {@code errors.tolerance}, on workers without one), RETRY records make the whole batch come back
 * through {@link RetriableException} while the finished records of it are remembered and skipped.
 */
public class SalesforceSinkTask extends SinkTask {
    private static final Logger log = LoggerFactory.getLogger(SalesforceSinkTask.class);
    /** Events recorded by the Rust core, logged on the task thread. */
    private static final Logger nativeLog = LoggerFactory.getLogger("io.axual.connect.plugins.salesforce.native");

    static final String CONNECTOR_NAME_PROP = "name";
    static final String ERRORS_TOLERANCE_PROP = "errors.tolerance";
    static final String MAX_POLL_INTERVAL_PROP = "consumer.override.max.poll.interval.ms";
    /** The consumer's default {@code max.poll.interval.ms}. */
    static final long DEFAULT_MAX_POLL_INTERVAL_MS = 300_000L;

    private final Function<byte[], NativeWriter> opener;
    private final int chunkBytes;
    private final RedeliveryTracker redelivery = new RedeliveryTracker();

    private volatile NativeWriter writer;
    private RecordBatchEncoder encoder;
    private ErrantRecordReporter reporter;
    private boolean tolerateAll;
    private String logPrefix = "";

    public SalesforceSinkTask() {
        this(NativeSinkHandle::open);
    }

    /** For tests: a different way to get the native writer. */
    SalesforceSinkTask(Function<byte[], NativeWriter> opener) {
        this(opener, RecordBatchEncoder.DEFAULT_CHUNK_BYTES);
    }

    /** For tests: batches cut into native calls of about {@code chunkBytes}. */
    SalesforceSinkTask(Function<byte[], NativeWriter> opener, int chunkBytes) {
        this.opener = opener;
        this.chunkBytes = chunkBytes;
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

        SalesforceSinkConfig config;
        try {
            config = new SalesforceSinkConfig(props);
        } catch (ConfigException e) {
            throw new ConnectException(logPrefix + e.getMessage(), e);
        }
        tolerateAll = "all".equals(props.getOrDefault(ERRORS_TOLERANCE_PROP, "none").trim().toLowerCase(Locale.ROOT));
        reporter = errantRecordReporter();
        encoder = new RecordBatchEncoder(config.operationHeaderNameIfEnabled(), chunkBytes);
        redelivery.clear();

        byte[] configBuffer = ConfigEncoder.encode(config.nativeSettings(), connectorName, taskId,
                putTimeBudgetMs(props));
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
                        + "errors.tolerance {}", logPrefix, config.getString(SalesforceSinkConfig.SOBJECT_TYPE),
                config.getString(SalesforceSinkConfig.OPERATION), config.getString(SalesforceSinkConfig.WRITE_MODE),
                reporter == null ? "absent" : "present", tolerateAll ? "all" : "none");
    }

    /**
     * How long one {@code put} may keep starting requests: a quarter of the consumer's
     * {@code max.poll.interval.ms}, so that with the requests still in flight it ends well before
     * the consumer would be evicted from its group (and a second task would write the same keys).
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
        if (records.isEmpty()) {
            return;
        }
        NativeWriter w = writer;
        if (w == null) {
            throw new ConnectException(logPrefix + "put() called on a Salesforce sink task that is not running");
        }
        List<SinkRecord> pending = redelivery.pending(records);
        if (pending.isEmpty()) {
            // The previous attempt finished every record that still needed a retry? Then nothing is left.
            redelivery.clear();
            return;
        }
        if (pending.size() < records.size()) {
            log.debug("{}Redelivered batch: skipping {} of {} records finished in the previous attempt", logPrefix,
                    records.size() - pending.size(), records.size());
        }

        List<Future<Void>> reports = new ArrayList<>();
        List<SinkRecord> finished = new ArrayList<>(pending.size());
        int retryCount = 0;
        String firstRetryMessage = null;
        long backoffMs = 0;
        // One native call per chunk: a batch is cut only when its encoding would pass the size a
        // single call can carry. After a chunk leaves records to retry, later chunks wait for the
        // redelivery, so no write overtakes an earlier one of the same key.
        for (EncodedBatch batch : encoder.encodeChunks(pending)) {
            List<SinkRecord> sent = batch.sent();
            for (EncodedBatch.Rejected rejected : batch.rejected()) {
                handleFailure(rejected.record(), rejected.error(), reports);
                finished.add(rejected.record());
            }
            if (sent.isEmpty()) {
                continue;
            }
            if (retryCount > 0) {
                retryCount += sent.size();
                continue;
            }
            BatchOutcome outcome = writeNative(w, batch);
            for (int i = 0; i < sent.size(); i++) {
                int status = outcome.status(i);
                if (status == BatchOutcome.RETRY) {
                    if (retryCount++ == 0) {
                        firstRetryMessage = outcome.message(i);
                    }
                    continue;
                }
                if (status == BatchOutcome.FAILED) {
                    handleFailure(sent.get(i), new ConnectException(outcome.message(i)), reports);
                }
                finished.add(sent.get(i));
            }
            backoffMs = Math.max(backoffMs, outcome.retryBackoffMs());
        }
        awaitReports(reports);

        if (retryCount == 0) {
            redelivery.clear();
            return;
        }
        // Everything but the RETRY records is finished: remember it for the redelivery.
        for (SinkRecord record : finished) {
            redelivery.markDone(record);
        }
        // Connect ignores a timeout of 0 and would wait for the next offset commit instead.
        backoffMs = Math.max(1L, backoffMs);
        context.timeout(backoffMs);
        throw new RetriableException(retryCount + " of " + pending.size() + " records could not be written to "
                + "Salesforce yet and will be retried in " + backoffMs + " ms: " + firstRetryMessage);
    }

    private BatchOutcome writeNative(NativeWriter w, EncodedBatch batch) {
        try {
            BatchOutcome outcome = BatchOutcome.decode(w.put(batch.buffer()), batch.sent().size());
            logNative(outcome.logs());
            return outcome;
        } catch (NativeSinkException e) {
            try {
                drainNativeLogs(); // what the native side logged before it gave up explains the failure
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw new ConnectException("Salesforce sink failed: " + e.getMessage(), e);
        }
    }

    /**
     * A non-recoverable record error: to the reporter when there is one (its report() throws when
     * errors.tolerance=none, failing the task as it should); otherwise log and go on with
     * errors.tolerance=all, or fail the task.
     */
    private void handleFailure(SinkRecord record, RuntimeException error, List<Future<Void>> reports) {
        if (reporter != null) {
            reports.add(reporter.report(record, error));
            return;
        }
        String where = "topic " + record.topic() + ", partition " + record.kafkaPartition() + ", offset "
                + record.kafkaOffset();
        if (tolerateAll) {
            log.warn("{}Skipping the record at {} (errors.tolerance=all, no dead letter queue configured): {}",
                    logPrefix, where, error.getMessage());
            return;
        }
        throw new ConnectException(error.getMessage() + " (record at " + where + ")", error);
    }

    private void awaitReports(List<Future<Void>> reports) {
        for (Future<Void> report : reports) {
            try {
                report.get();
            } catch (ExecutionException e) {
                Throwable cause = e.getCause() == null ? e : e.getCause();
                throw new ConnectException("Could not report a failed record to the errant record reporter: "
                        + cause.getMessage(), cause);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ConnectException("Interrupted while reporting failed records", e);
            }
        }
    }

    @Override
    public void open(Collection<TopicPartition> partitions) {
        redelivery.forget(partitions);
    }

    @Override
    public void close(Collection<TopicPartition> partitions) {
        redelivery.forget(partitions);
    }

    @Override
    public void stop() {
        if (writer == null) {
            return;
        }
        try {
            drainNativeLogs();
        } catch (RuntimeException e) {
            log.warn("{}Could not drain native logs on stop: {}", logPrefix, e.getMessage());
        }
        closeWriter();
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
            logNative(BatchOutcome.decodeLogs(w.drainLogs()));
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
    RedeliveryTracker redeliveryTracker() {
        return redelivery;
    }
}
