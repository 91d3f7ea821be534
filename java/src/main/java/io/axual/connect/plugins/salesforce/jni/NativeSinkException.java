package io.axual.connect.plugins.salesforce.jni;

/**
 * Thrown by the native entry points of {@link NativeSink} (and never anything else: every Rust
 * entry point catches panics and turns them into this exception with a "native panic: " prefix).
 * The native code looks this class up by name, so its name and its (String) constructor are part
 * of the JNI contract.
 */
public class NativeSinkException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public NativeSinkException(String message) {
        super(message);
    }
}
