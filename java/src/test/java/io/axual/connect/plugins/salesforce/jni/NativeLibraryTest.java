package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
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

    private static ConnectException configuredDirRefused(Path dir) {
        System.setProperty(NativeLibrary.DIR_PROPERTY, dir.toString());
        try {
            return assertThrows(ConnectException.class, NativeLibrary::extractionDir);
        } finally {
            System.clearProperty(NativeLibrary.DIR_PROPERTY);
        }
    }

    @Test
    void aConfiguredDirectoryIsCreatedPrivate(@TempDir Path dir) throws IOException {
        Path wanted = dir.resolve("fresh");
        System.setProperty(NativeLibrary.DIR_PROPERTY, wanted.toString());
        try {
            assertEquals(wanted.toAbsolutePath(), NativeLibrary.extractionDir());
        } finally {
            System.clearProperty(NativeLibrary.DIR_PROPERTY);
        }
        assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(wanted)));
    }

    @Test
    void aConfiguredDirectoryOthersCanWriteIsRefused(@TempDir Path dir) throws IOException {
        for (String perms : new String[] {"rwxrwx---", "rwx---rwx", "rwxrwxrwx"}) {
            Path shared = Files.createDirectories(dir.resolve("shared-" + perms));
            Files.setPosixFilePermissions(shared, PosixFilePermissions.fromString(perms));
            ConnectException e = configuredDirRefused(shared);
            assertTrue(e.getMessage().contains(shared.toString()) && e.getMessage().contains("writable")
                    && e.getMessage().contains(NativeLibrary.DIR_PROPERTY), e.getMessage());
        }
        // Owned by this user and writable by it only: fine, whatever else may read it.
        Path readable = Files.createDirectories(dir.resolve("readable"));
        Files.setPosixFilePermissions(readable, PosixFilePermissions.fromString("rwxr-xr-x"));
        System.setProperty(NativeLibrary.DIR_PROPERTY, readable.toString());
        try {
            assertEquals(readable, NativeLibrary.extractionDir());
        } finally {
            System.clearProperty(NativeLibrary.DIR_PROPERTY);
        }
    }

    @Test
    void aConfiguredDirectoryThatIsASymlinkIsRefused(@TempDir Path dir) throws IOException {
        Path target = Files.createDirectories(dir.resolve("target"));
        Files.setPosixFilePermissions(target, PosixFilePermissions.fromString("rwx------"));
        Path link = Files.createSymbolicLink(dir.resolve("link"), target);
        ConnectException e = configuredDirRefused(link);
        assertTrue(e.getMessage().contains("symbolic link"), e.getMessage());
    }

    @Test
    void theExtractedCopyIsPrivateAndChecked(@TempDir Path dir) throws IOException {
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
        String resource = "io/axual/connect/plugins/salesforce/jni/NativeLibraryTest.class";
        Path copy = NativeLibrary.extract(NativeLibraryTest.class.getClassLoader(), resource, dir);
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(copy)));
        try (var in = NativeLibraryTest.class.getClassLoader().getResourceAsStream(resource)) {
            assertTrue(java.util.Arrays.equals(in.readAllBytes(), Files.readAllBytes(copy)));
        }
        NativeLibrary.checkBeforeLoad(copy);

        Files.setPosixFilePermissions(copy, PosixFilePermissions.fromString("rw-rw-rw-"));
        ConnectException e = assertThrows(ConnectException.class, () -> NativeLibrary.checkBeforeLoad(copy));
        assertTrue(e.getMessage().contains(copy.toString()) && e.getMessage().contains("writable"), e.getMessage());
        Path link = Files.createSymbolicLink(dir.resolve("link.so"), copy);
        e = assertThrows(ConnectException.class, () -> NativeLibrary.checkBeforeLoad(link));
        assertTrue(e.getMessage().contains("symbolic link"), e.getMessage());
    }

    @Test
    void theOverrideIsAnnouncedWithAWarning() {
        String warning = NativeLibrary.overrideWarning(Paths.get("/opt/dev/libsalesforce_sink_jni.so"));
        assertTrue(warning.contains(NativeLibrary.OVERRIDE) && warning.contains("/opt/dev/libsalesforce_sink_jni.so")
                && warning.contains("instead of the library packed"), warning);
    }
}
