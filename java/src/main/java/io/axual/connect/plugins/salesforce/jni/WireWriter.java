package io.axual.connect.plugins.salesforce.jni;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * A growable big-endian byte buffer with the primitives of the wire format. Kept and reused by one
 * encoder so that a steady stream of batches allocates only the final exact-size array per batch.
 */
final class WireWriter {
    // Arrays slightly below Integer.MAX_VALUE are the largest the JVM reliably allocates.
    private static final int MAX_CAPACITY = Integer.MAX_VALUE - 16;

    private byte[] buf;
    private int pos;
    /** Zero every array this writer lets go of: it holds secrets (the config buffer). */
    private boolean secret;

    WireWriter(int initialCapacity) {
        buf = new byte[Math.max(64, initialCapacity)];
    }

    /** A writer for bytes that hold secrets: arrays dropped while growing are zeroed; call {@link #wipe}. */
    static WireWriter forSecrets(int initialCapacity) {
        WireWriter writer = new WireWriter(initialCapacity);
        writer.secret = true;
        return writer;
    }

    /** Zeroes the whole internal array (not only what was written) and forgets it. */
    void wipe() {
        Arrays.fill(buf, (byte) 0);
        pos = 0;
    }

    /** The internal array, for tests that check it was wiped. */
    byte[] buffer() {
        return buf;
    }

    int position() {
        return pos;
    }

    /** Forgets everything written from {@code mark} on (used to drop a record that failed half-way). */
    void truncate(int mark) {
        pos = mark;
    }

    void reset() {
        pos = 0;
    }

    byte[] toByteArray() {
        return Arrays.copyOf(buf, pos);
    }

    /** Gives the buffer back to the GC when an unusually large batch made it grow a lot. */
    void shrinkTo(int capacity) {
        if (buf.length > capacity && pos == 0) {
            buf = new byte[capacity];
        }
    }

    private void ensure(int extra) {
        long needed = (long) pos + extra;
        if (needed <= buf.length) {
            return;
        }
        if (needed > MAX_CAPACITY) {
            throw new IllegalStateException("batch buffer would exceed 2 GiB");
        }
        long grown = Math.max(needed, Math.min((long) buf.length * 2, MAX_CAPACITY));
        byte[] dropped = buf;
        buf = Arrays.copyOf(buf, (int) grown);
        if (secret) {
            Arrays.fill(dropped, (byte) 0);
        }
    }

    void writeU8(int v) {
        ensure(1);
        buf[pos++] = (byte) v;
    }

    void writeI32(int v) {
        ensure(4);
        putI32(pos, v);
        pos += 4;
    }

    /** Overwrites a previously reserved i32 (for counts and lengths known only afterwards). */
    void putI32(int at, int v) {
        buf[at] = (byte) (v >>> 24);
        buf[at + 1] = (byte) (v >>> 16);
        buf[at + 2] = (byte) (v >>> 8);
        buf[at + 3] = (byte) v;
    }

    void writeI64(long v) {
        ensure(8);
        int p = pos;
        buf[p] = (byte) (v >>> 56);
        buf[p + 1] = (byte) (v >>> 48);
        buf[p + 2] = (byte) (v >>> 40);
        buf[p + 3] = (byte) (v >>> 32);
        buf[p + 4] = (byte) (v >>> 24);
        buf[p + 5] = (byte) (v >>> 16);
        buf[p + 6] = (byte) (v >>> 8);
        buf[p + 7] = (byte) v;
        pos += 8;
    }

    void writeF32(float v) {
        writeI32(Float.floatToIntBits(v));
    }

    void writeF64(double v) {
        writeI64(Double.doubleToLongBits(v));
    }

    /** {@code bytes}: i32 length + raw bytes. */
    void writeBytes(byte[] b) {
        writeBytes(b, 0, b.length);
    }

    void writeBytes(byte[] b, int off, int len) {
        ensure(4 + len);
        putI32(pos, len);
        System.arraycopy(b, off, buf, pos + 4, len);
        pos += 4 + len;
    }

    /** {@code bytes} from the remaining content of a ByteBuffer, leaving its position untouched. */
    void writeBytes(ByteBuffer b) {
        int len = b.remaining();
        ensure(4 + len);
        putI32(pos, len);
        b.duplicate().get(buf, pos + 4, len);
        pos += 4 + len;
    }

    /**
     * {@code str}: i32 UTF-8 length + UTF-8 bytes, encoded straight into the buffer (no
     * intermediate byte[]). Unpaired surrogates become '?', as String.getBytes(UTF_8) does.
     */
    void writeStr(String s) {
        int n = s.length();
        ensure(4 + n); // enough for pure ASCII; the slow path grows as needed
        int lenAt = pos;
        int p = pos + 4;
        int i = 0;
        byte[] b = buf;
        for (; i < n; i++) {
            char c = s.charAt(i);
            if (c >= 0x80) {
                break;
            }
            b[p++] = (byte) c;
        }
        if (i < n) {
            pos = p;
            writeUtf8Tail(s, i);
            p = pos;
        }
        putI32(lenAt, p - lenAt - 4);
        pos = p;
    }

    private void writeUtf8Tail(String s, int from) {
        int n = s.length();
        for (int i = from; i < n; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                ensure(1);
                buf[pos++] = (byte) c;
            } else if (c < 0x800) {
                ensure(2);
                buf[pos++] = (byte) (0xC0 | (c >> 6));
                buf[pos++] = (byte) (0x80 | (c & 0x3F));
            } else if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                int cp = Character.toCodePoint(c, s.charAt(++i));
                ensure(4);
                buf[pos++] = (byte) (0xF0 | (cp >> 18));
                buf[pos++] = (byte) (0x80 | ((cp >> 12) & 0x3F));
                buf[pos++] = (byte) (0x80 | ((cp >> 6) & 0x3F));
                buf[pos++] = (byte) (0x80 | (cp & 0x3F));
            } else if (Character.isSurrogate(c)) {
                ensure(1);
                buf[pos++] = (byte) '?';
            } else {
                ensure(3);
                buf[pos++] = (byte) (0xE0 | (c >> 12));
                buf[pos++] = (byte) (0x80 | ((c >> 6) & 0x3F));
                buf[pos++] = (byte) (0x80 | (c & 0x3F));
            }
        }
    }
}
