package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import org.apache.kafka.connect.errors.ConnectException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

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

    @Test
    void staleCopiesOfDeadWorkersAreRemovedOwnCopiesKept(@TempDir Path dir) throws IOException {
        // pid 0 is never a worker: its copy and unheld lock are what a killed worker leaves.
        Path stale = Files.createFile(dir.resolve("salesforce-sink-0-123.so"));
        Path staleLock = Files.createFile(dir.resolve("salesforce-sink-0-123.so.lock"));
        long pid = ProcessHandle.current().pid();
        Path own = Files.createFile(dir.resolve("salesforce-sink-" + pid + "-456.so"));
        Path ownLock = Files.createFile(dir.resolve("salesforce-sink-" + pid + "-456.so.lock"));
        Path unrelated = Files.createFile(dir.resolve("something-else.so"));

        assertEquals(1, NativeLibrary.removeStaleCopies(dir));
        assertFalse(Files.exists(stale));
        assertFalse(Files.exists(staleLock));
        assertTrue(Files.exists(own) && Files.exists(ownLock) && Files.exists(unrelated));
    }

    @Test
    void extractionDirFollowsTheSystemProperty(@TempDir Path dir) {
        Path wanted = dir.resolve("exec-ok/native");
        System.setProperty(NativeLibrary.DIR_PROPERTY, wanted.toString());
        try {
            assertEquals(wanted.toAbsolutePath(), NativeLibrary.extractionDir());
            assertTrue(Files.isDirectory(wanted));
        } finally {
            System.clearProperty(NativeLibrary.DIR_PROPERTY);
        }
        assertTrue(Files.isDirectory(NativeLibrary.extractionDir()));
    }

    @Test
    void loadFailuresSayWhatWasNeededAndWhatWasFound() {
        String glibc = NativeLibrary.explain("/tmp/x.so: /lib64/libc.so.6: version `GLIBC_2.34' not found",
                "native/linux-x86_64/libsalesforce_sink_jni.so", Paths.get("/tmp/x.so"));
        assertTrue(glibc.contains("needs glibc 2.17 or newer; found: "), glibc);
        String noexec = NativeLibrary.explain("/tmp/x.so: failed to map segment from shared object",
                "native/linux-x86_64/libsalesforce_sink_jni.so", Paths.get("/tmp/x.so"));
        assertTrue(noexec.contains("noexec") && noexec.contains(NativeLibrary.DIR_PROPERTY)
                && noexec.contains(NativeLibrary.DIR_ENV), noexec);
    }

    @Test
    void theBuildPacksThisPlatform() {
        // The jar names its platforms from what it carries; a normal build carries the one it ran on.
        String resource = NativeLibrary.resourcePath(System.getProperty("os.name"), System.getProperty("os.arch"),
                System.mapLibraryName(NativeLibrary.LIBRARY_NAME));
        String platform = resource.split("/")[1];
        if (NativeLibraryTest.class.getClassLoader().getResource(resource) != null) {
            assertTrue(NativeLibrary.packedPlatforms(NativeLibraryTest.class.getClassLoader()).contains(platform));
        }
    }
}
