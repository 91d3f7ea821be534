package io.axual.connect.plugins.salesforce.jni;

/** One log event recorded by the native side, to be logged through SLF4J on the task thread. */
public final class LogEvent {
    public static final int TRACE = 0;
    public static final int DEBUG = 1;
    public static final int INFO = 2;
    public static final int WARN = 3;
    public static final int ERROR = 4;

    private final int level;
    private final String message;

    LogEvent(int level, String message) {
        this.level = level;
        this.message = message;
    }

    /** One of {@link #TRACE} .. {@link #ERROR}. */
    public int level() {
        return level;
    }

    public String message() {
        return message;
    }

    @Override
    public String toString() {
        return level + ":" + message;
    }
}
