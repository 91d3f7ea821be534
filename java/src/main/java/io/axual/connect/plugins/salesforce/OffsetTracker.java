package io.axual.connect.plugins.salesforce;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.sink.SinkRecord;

/**
 * Which offsets may be committed: per original topic-partition, the records handed to the native
 * pipeline in offset order, and the offset below which every one of them is finished (written,
 * skipped, or reported to the ErrantRecordReporter). {@code preCommit} returns only those.
 *
 * <p>Records are known by their <em>original</em> coordinates ({@code originalTopic()} and friends,
 * Kafka 3.6+): an SMT that renames topics can give two records of one batch the same transformed
 * coordinates, and Connect commits by the original ones. Not thread-safe: task thread only.
 */
final class OffsetTracker {
    private static final boolean WORKER_HAS_ORIGINAL_COORDINATES = hasOriginalCoordinates();

    private final boolean originalCoordinates;

    /** One record on its way. */
    static final class Pending {
        final SinkRecord record;
        final TopicPartition partition;
        final long offset;
        final long seq;
        boolean finished;

        Pending(SinkRecord record, TopicPartition partition, long offset, long seq) {
            this.record = record;
            this.partition = partition;
            this.offset = offset;
            this.seq = seq;
        }
    }

    private final Map<TopicPartition, ArrayDeque<Pending>> byPartition = new HashMap<>();
    private final Map<Long, Pending> bySeq = new HashMap<>();
    /** The next offset to commit per partition, once something there finished. */
    private final Map<TopicPartition, Long> committable = new HashMap<>();

    OffsetTracker() {
        this(WORKER_HAS_ORIGINAL_COORDINATES);
    }

    /** For tests: {@code false} plays a worker before Kafka 3.6. */
    OffsetTracker(boolean originalCoordinates) {
        this.originalCoordinates = originalCoordinates;
    }

    /** Whether this worker gives original coordinates (else a renaming SMT hides them; see preCommit). */
    boolean originalCoordinatesKnown() {
        return originalCoordinates;
    }

    void add(SinkRecord record, long seq) {
        TopicPartition tp = partitionOf(record);
        long offset = originalCoordinates ? record.originalKafkaOffset() : record.kafkaOffset();
        Pending pending = new Pending(record, tp, offset, seq);
        byPartition.computeIfAbsent(tp, k -> new ArrayDeque<>()).addLast(pending);
        bySeq.put(seq, pending);
    }

    /** The record of an unfinished sequence number, or null (abandoned or unknown). */
    SinkRecord record(long seq) {
        Pending pending = bySeq.get(seq);
        return pending == null ? null : pending.record;
    }

    /** Marks a record finished and moves its partition's commit point past every finished prefix. */
    void finish(long seq) {
        Pending pending = bySeq.remove(seq);
        if (pending == null) {
            return;
        }
        pending.finished = true;
        ArrayDeque<Pending> queue = byPartition.get(pending.partition);
        while (!queue.isEmpty() && queue.peekFirst().finished) {
            committable.put(pending.partition, queue.pollFirst().offset + 1);
        }
    }

    /**
     * Offsets to commit for the partitions Connect asked about ({@code currentOffsets}): only those
     * whose commit point moved since they were last taken. Connect ignores offsets of partitions it
     * did not ask about (the commit before a cooperative revocation names only the revoked ones)
     * and offsets past what it consumed, so those are kept for a later commit.
     */
    Map<TopicPartition, OffsetAndMetadata> takeCommittable(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> asked : currentOffsets.entrySet()) {
            Long next = committable.get(asked.getKey());
            if (next != null && (asked.getValue() == null || next <= asked.getValue().offset())) {
                out.put(asked.getKey(), new OffsetAndMetadata(next));
                committable.remove(asked.getKey());
            }
        }
        return out;
    }

    /** Forgets these partitions; returns the sequence numbers of their unfinished records. */
    long[] remove(Collection<TopicPartition> partitions) {
        List<Long> seqs = new ArrayList<>();
        for (TopicPartition tp : partitions) {
            ArrayDeque<Pending> queue = byPartition.remove(tp);
            committable.remove(tp);
            if (queue == null) {
                continue;
            }
            for (Pending pending : queue) {
                if (!pending.finished) {
                    seqs.add(pending.seq);
                    bySeq.remove(pending.seq);
                }
            }
        }
        return seqs.stream().mapToLong(Long::longValue).toArray();
    }

    /** Forgets everything; returns the unfinished sequence numbers. */
    long[] clear() {
        long[] seqs = remove(new ArrayList<>(byPartition.keySet()));
        committable.clear();
        return seqs;
    }

    /** The partitions records are tracked under (after SMTs, before Kafka 3.6). */
    List<TopicPartition> partitions() {
        return new ArrayList<>(byPartition.keySet());
    }

    int unfinished() {
        return bySeq.size();
    }

    private TopicPartition partitionOf(SinkRecord record) {
        Integer partition = originalCoordinates ? record.originalKafkaPartition() : record.kafkaPartition();
        String topic = originalCoordinates ? record.originalTopic() : record.topic();
        return new TopicPartition(topic, partition == null ? -1 : partition);
    }

    /** {@code SinkRecord.originalTopic()} and friends exist from Kafka 3.6 (KIP-793). */
    private static boolean hasOriginalCoordinates() {
        try {
            SinkRecord.class.getMethod("originalTopic");
            SinkRecord.class.getMethod("originalKafkaPartition");
            SinkRecord.class.getMethod("originalKafkaOffset");
            return true;
        } catch (NoSuchMethodException e) {
            return false;
        }
    }

}
