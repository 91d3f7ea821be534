package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.kafka.connect.errors.ConnectException;
import org.junit.jupiter.api.Test;

class NativeLibraryTest {
    @Test
    void resourcePathNormalizesOsAndArch() {
        assertEquals("native/linux-x86_64/libsalesforce_sink_jni.so",
                NativeLibrary.resourcePath("Linux", "amd64", "libsalesforce_sink_jni.so"));
        assertEquals("native/linux-aarch64/libsalesforce_sink_jni.so",
                NativeLibrary.resourcePath("Linux", "aarch64", "libsalesforce_sink_jni.so"));
        assertEquals("native/darwin-aarch64/libsalesforce_sink_jni.dylib",
                NativeLibrary.resourcePath("Mac OS X", "arm64", "libsalesforce_sink_jni.dylib"));
        assertEquals("native/windows-x86_64/salesforce_sink_jni.dll",
                NativeLibrary.resourcePath("Windows 11", "amd64", "salesforce_sink_jni.dll"));
    }

    @Test
    void unsupportedPlatformNamesOsArchAndResource() {
        ConnectException e = assertThrows(ConnectException.class,
                () -> NativeLibrary.resourcePath("SunOS", "sparcv9", "libsalesforce_sink_jni.so"));
        assertTrue(e.getMessage().contains("SunOS"), e.getMessage());
        assertTrue(e.getMessage().contains("sparcv9"), e.getMessage());
        assertTrue(e.getMessage().contains("native/<os>-<arch>/libsalesforce_sink_jni.so"), e.getMessage());
    }
}
