package io.axual.connect.plugins.salesforce.jni;

/**
 * A native call took nothing and may succeed later (for example, Salesforce could not answer the
 * describe that tells how to check keys): the task offers the same records again.
 */
public class NativeRetriableException extends NativeSinkException {
    private static final long serialVersionUID = 1L;

    public NativeRetriableException(String message) {
        super(message);
    }
}
