package io.axual.connect.plugins.salesforce;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import org.apache.kafka.connect.sink.SinkRecord;

/**
 * Remembers which records of a batch were finished (written, skipped or reported as failed) in a
 * {@code put} that then threw {@code RetriableException}, so that when Connect redelivers the same
 * batch those records are not written (or reported) a second time.
 *
 * <p>Lifetime rules (ARCHITECTURE.md): filled only by a put that throws RetriableException,
 * cleared by a put that returns normally and whenever partitions are opened or closed.
 */
final class RedeliveryTracker {
    private final Set<Position> done = new HashSet<>();

    boolean isEmpty() {
        return done.isEmpty();
    }

    /** The records that still need work; the input itself when nothing is remembered. */
    List<SinkRecord> pending(Collection<SinkRecord> records) {
        List<SinkRecord> pending = new ArrayList<>(records.size());
        if (done.isEmpty()) {
            pending.addAll(records);
            return pending;
        }
        for (SinkRecord record : records) {
            if (!done.contains(Position.of(record))) {
                pending.add(record);
            }
        }
        return pending;
    }

    void markDone(SinkRecord record) {
        done.add(Position.of(record));
    }

    void clear() {
        done.clear();
    }

    int size() {
        return done.size();
    }

    /** (topic, partition, offset): what identifies a record across redeliveries. */
    private static final class Position {
        private final String topic;
        private final int partition;
        private final long offset;

        private Position(String topic, int partition, long offset) {
            this.topic = topic;
            this.partition = partition;
            this.offset = offset;
        }

        static Position of(SinkRecord record) {
            Integer partition = record.kafkaPartition();
            return new Position(record.topic(), partition == null ? -1 : partition, record.kafkaOffset());
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof Position)) {
                return false;
            }
            Position other = (Position) o;
            return partition == other.partition && offset == other.offset && topic.equals(other.topic);
        }

        @Override
        public int hashCode() {
            return Objects.hash(topic, partition, offset);
        }
    }
}
