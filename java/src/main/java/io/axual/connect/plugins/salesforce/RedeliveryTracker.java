package io.axual.connect.plugins.salesforce;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.sink.SinkRecord;

/**
 * Remembers which records of a batch were finished (written, skipped or reported as failed) in a
 * {@code put} that then threw {@code RetriableException}, so that when Connect redelivers the same
 * batch those records are not written (or reported) a second time.
 *
 * <p>A record is known by its <em>original</em> coordinates ({@code originalTopic()},
 * {@code originalKafkaPartition()}, {@code originalKafkaOffset()}, Kafka 3.6+): an SMT that
 * renames topics (RegexRouter merging {@code a-orders} and {@code b-orders} into {@code orders})
 * gives two records of one batch the same transformed coordinates, and skipping one for the
 * other would lose it. Workers without original coordinates redeliver the very same
 * {@code SinkRecord} objects, so there a record is known by identity, which cannot collide either.
 *
 * <p>Lifetime rules (ARCHITECTURE.md): filled only by a put that throws RetriableException,
 * cleared by a put that returns normally; {@code open}/{@code close(partitions)} forget only those
 * partitions (cooperative rebalancing keeps the others assigned, with their redelivery pending).
 */
final class RedeliveryTracker {
    private static final boolean ORIGINAL_COORDINATES = hasOriginalCoordinates();

    private final Map<TopicPartition, Set<Long>> doneOffsets = new HashMap<>();
    private final Set<SinkRecord> doneRecords = Collections.newSetFromMap(new IdentityHashMap<>());

    boolean isEmpty() {
        return doneOffsets.isEmpty() && doneRecords.isEmpty();
    }

    /** The records that still need work; a copy of the input when nothing is remembered. */
    List<SinkRecord> pending(Collection<SinkRecord> records) {
        List<SinkRecord> pending = new ArrayList<>(records.size());
        if (isEmpty()) {
            pending.addAll(records);
            return pending;
        }
        for (SinkRecord record : records) {
            if (!isDone(record)) {
                pending.add(record);
            }
        }
        return pending;
    }

    void markDone(SinkRecord record) {
        if (ORIGINAL_COORDINATES) {
            doneOffsets.computeIfAbsent(originalPartition(record), tp -> new HashSet<>()).add(record.originalKafkaOffset());
        } else {
            doneRecords.add(record);
        }
    }

    private boolean isDone(SinkRecord record) {
        if (ORIGINAL_COORDINATES) {
            Set<Long> offsets = doneOffsets.get(originalPartition(record));
            return offsets != null && offsets.contains(record.originalKafkaOffset());
        }
        return doneRecords.contains(record);
    }

    void clear() {
        doneOffsets.clear();
        doneRecords.clear();
    }

    /** Forgets the records of these (original) partitions; the others keep their redelivery. */
    void forget(Collection<TopicPartition> partitions) {
        if (partitions == null) {
            return;
        }
        doneOffsets.keySet().removeAll(partitions);
        if (!partitions.isEmpty()) {
            doneRecords.clear(); // without original coordinates a record's partition is unknown
        }
    }

    int size() {
        return doneRecords.size() + doneOffsets.values().stream().mapToInt(Set::size).sum();
    }

    private static TopicPartition originalPartition(SinkRecord record) {
        Integer partition = record.originalKafkaPartition();
        return new TopicPartition(record.originalTopic(), partition == null ? -1 : partition);
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
