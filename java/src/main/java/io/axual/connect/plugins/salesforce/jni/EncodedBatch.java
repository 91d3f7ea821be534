package io.axual.connect.plugins.salesforce.jni;

import java.util.List;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.sink.SinkRecord;

/**
 * The result of encoding one {@code put}: the batch buffer for the native side, the records it
 * holds (in buffer order, which is the order of the outcome), and the records that could not be
 * encoded at all. Those never cross JNI; the task treats each as a FAILED outcome.
 */
public final class EncodedBatch {
    private final byte[] buffer;
    private final List<SinkRecord> sent;
    private final List<Rejected> rejected;

    EncodedBatch(byte[] buffer, List<SinkRecord> sent, List<Rejected> rejected) {
        this.buffer = buffer;
        this.sent = sent;
        this.rejected = rejected;
    }

    /** The batch buffer; meaningless (but valid) when {@link #sent()} is empty. */
    public byte[] buffer() {
        return buffer;
    }

    public List<SinkRecord> sent() {
        return sent;
    }

    public List<Rejected> rejected() {
        return rejected;
    }

    /** A record the encoder refused, with the reason. */
    public static final class Rejected {
        private final SinkRecord record;
        private final DataException error;

        Rejected(SinkRecord record, DataException error) {
            this.record = record;
            this.error = error;
        }

        public SinkRecord record() {
            return record;
        }

        public DataException error() {
            return error;
        }
    }
}
