package io.axual.connect.plugins.salesforce.jni;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.connect.errors.ConnectException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loads the {@code salesforce_sink_jni} library once per class loader.
 *
 * <p>A native library file can be bound to one class loader only, and Connect gives every plugin
 * (and sometimes every connector) its own loader, so the library shipped in the jar is extracted
 * to a fresh file for each loader, in the directory named by the system property
 * {@value #DIR_PROPERTY} or the environment variable {@value #DIR_ENV} (default: a per-user
 * directory under {@code java.io.tmpdir}). A {@code noexec} temp directory cannot load libraries,
 * hence the setting.
 *
 * <p>Each copy has a lock file that this JVM holds while the copy is loaded. A worker that was
 * killed leaves its copies behind with unheld locks; the next load in any worker deletes them.
 *
 * <p>For development, the system property or environment variable {@value #OVERRIDE} may name a
 * library file to load instead.
 *
 * <p>Java 24+ restricts {@code System.load} (JEP 472): without {@value #NATIVE_ACCESS_FLAG} the JVM
 * prints a warning to stderr (this class also logs one), and under
 * {@code --illegal-native-access=deny} (a future Java's default) it refuses, which fails the task
 * with a message naming the flag.
 */
public final class NativeLibrary {
    static final String OVERRIDE = "SALESFORCE_SINK_NATIVE_LIB";
    static final String DIR_PROPERTY = "salesforce.sink.native.dir";
    static final String DIR_ENV = "SALESFORCE_SINK_NATIVE_DIR";
    static final String LIBRARY_NAME = "salesforce_sink_jni";
    /** The oldest glibc the packed Linux libraries run on (they are linked against it; CI checks). */
    static final String MIN_GLIBC = "2.17";
    /** Every platform directory the loader knows; the ones present in the jar are the supported ones. */
    /** The JVM option that grants class path code (Connect plugins included) native access. */
    static final String NATIVE_ACCESS_FLAG = "--enable-native-access=ALL-UNNAMED";
    static final String[] KNOWN_PLATFORMS = {
        "linux-x86_64", "linux-aarch64", "darwin-x86_64", "darwin-aarch64", "windows-x86_64", "windows-aarch64"};

    private static final Logger log = LoggerFactory.getLogger(NativeLibrary.class);
    private static final String COPY_PREFIX = "salesforce-sink-";
    private static final String LOCK_SUFFIX = ".lock";

    private static volatile boolean loaded;
    /** Held (never closed) while this class loader's copy is loaded, so no other worker deletes it. */
    @SuppressWarnings("unused")
    private static FileChannel lockChannel;

    private NativeLibrary() {
    }

    /** Loads the library unless this class loader already did; throws ConnectException if it can't. */
    public static void load() {
        if (loaded) {
            return;
        }
        synchronized (NativeLibrary.class) {
            if (!loaded) {
                loadNow();
                loaded = true;
            }
        }
    }

    private static void loadNow() {
        String override = setting(OVERRIDE, OVERRIDE);
        if (override != null) {
            Path path = Paths.get(override).toAbsolutePath();
            if (!Files.isRegularFile(path)) {
                throw new ConnectException(OVERRIDE + " names " + path + ", which is not a file");
            }
            log.warn(overrideWarning(path));
            systemLoad(path, "from " + OVERRIDE, null);
            return;
        }
        String osName = System.getProperty("os.name", "");
        String osArch = System.getProperty("os.arch", "");
        String fileName = System.mapLibraryName(LIBRARY_NAME);
        String resource = resourcePath(osName, osArch, fileName);
        ClassLoader loader = NativeLibrary.class.getClassLoader();
        if (resource(loader, resource) == null) {
            throw new ConnectException("The Salesforce sink connector has no native library for this platform: "
                    + "needed " + resource + " for os.name='" + osName + "', os.arch='" + osArch
                    + "'; this jar carries: " + String.join(", ", packedPlatforms(loader)));
        }
        Path dir = extractionDir();
        removeStaleCopies(dir);
        Path extracted = extract(loader, resource, dir);
        checkBeforeLoad(extracted);
        systemLoad(extracted, "extracted from resource " + resource + " to " + dir, resource);
    }

    /** The class path resource of the library for this platform: {@code native/<os>-<arch>/<file>}. */
    static String resourcePath(String osName, String osArch, String fileName) {
        String os = normalizeOs(osName);
        String arch = normalizeArch(osArch);
        if (os == null || arch == null) {
            throw new ConnectException("The Salesforce sink connector has no native library for os.name='"
                    + osName + "', os.arch='" + osArch + "'; it needs one of the platforms packed in the jar ("
                    + String.join(", ", packedPlatforms(NativeLibrary.class.getClassLoader()))
                    + "; resource native/<os>-<arch>/" + fileName + ")");
        }
        return "native/" + os + "-" + arch + "/" + fileName;
    }

    static String normalizeOs(String osName) {
        String os = osName.toLowerCase(Locale.ROOT);
        if (os.startsWith("linux")) {
            return "linux";
        }
        if (os.startsWith("mac") || os.startsWith("darwin")) {
            return "darwin";
        }
        if (os.startsWith("windows")) {
            return "windows";
        }
        return null;
    }

    static String normalizeArch(String osArch) {
        switch (osArch.toLowerCase(Locale.ROOT)) {
            case "amd64":
            case "x86_64":
            case "x86-64":
            case "x64":
                return "x86_64";
            case "aarch64":
            case "arm64":
                return "aarch64";
            default:
                return null;
        }
    }

    /** The platforms whose library this jar carries, e.g. [linux-x86_64]. */
    static List<String> packedPlatforms(ClassLoader loader) {
        List<String> found = new ArrayList<>();
        for (String platform : KNOWN_PLATFORMS) {
            String os = platform.substring(0, platform.indexOf('-'));
            String file = os.equals("windows") ? LIBRARY_NAME + ".dll"
                    : os.equals("darwin") ? "lib" + LIBRARY_NAME + ".dylib" : "lib" + LIBRARY_NAME + ".so";
            if (resource(loader, "native/" + platform + "/" + file) != null) {
                found.add(platform);
            }
        }
        if (found.isEmpty()) {
            found.add("none (built with -Dnative.skip=true?)");
        }
        return found;
    }

    private static java.net.URL resource(ClassLoader loader, String name) {
        return loader == null ? ClassLoader.getSystemResource(name) : loader.getResource(name);
    }

    private static String setting(String property, String env) {
        String value = System.getProperty(property);
        if (value == null || value.isBlank()) {
            value = System.getenv(env);
        }
        return value == null || value.isBlank() ? null : value.trim();
    }

    /**
     * {@value #DIR_PROPERTY} / {@value #DIR_ENV} when set (created if missing), otherwise
     * {@code <java.io.tmpdir>/salesforce-sink-native-<user>}, private to the user.
     */
    static Path extractionDir() {
        String configured = setting(DIR_PROPERTY, DIR_ENV);
        try {
            if (configured != null) {
                // Whatever can write here can replace the code the worker loads: same rules as ours.
                Path dir = Paths.get(configured).toAbsolutePath();
                if (dir.getParent() != null) {
                    Files.createDirectories(dir.getParent());
                }
                createPrivateDirectory(dir);
                String problem = unsafeBecause(dir, true);
                if (problem != null) {
                    throw new ConnectException("Refusing the native library directory " + dir + " ("
                            + DIR_PROPERTY + "/" + DIR_ENV + "): " + problem + ". Use a directory owned by the "
                            + "worker's user and writable by it only (e.g. mode 0700)");
                }
                return dir;
            }
            String user = System.getProperty("user.name", "user").replaceAll("[^A-Za-z0-9._-]", "_");
            Path dir = Paths.get(System.getProperty("java.io.tmpdir"), "salesforce-sink-native-" + user);
            createPrivateDirectory(dir);
            // A shared temp directory: use ours only if it really is ours, never a planted one.
            if (unsafeBecause(dir, true) != null) {
                return Files.createTempDirectory("salesforce-sink-native-");
            }
            return dir;
        } catch (IOException | UnsupportedOperationException e) {
            throw new ConnectException("Could not prepare the directory for the native library ("
                    + (configured != null ? DIR_PROPERTY + "/" + DIR_ENV + "=" + configured : "java.io.tmpdir")
                    + "): " + e, e);
        }
    }

    /** Creates {@code dir} with mode 0700 unless something of that name exists (checked by the caller). */
    private static void createPrivateDirectory(Path dir) throws IOException {
        if (Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try {
            Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        } catch (UnsupportedOperationException e) {
            Files.createDirectory(dir);
        } catch (java.nio.file.FileAlreadyExistsException e) {
            // another loader made it meanwhile; checked by the caller
        }
    }

    /**
     * Why nobody but this user may be trusted with {@code path} (a directory or the library file),
     * or null: it must be what it claims (no symbolic link), owned by this user and writable by
     * nobody else. On file systems without POSIX permissions only the first two are checked.
     */
    static String unsafeBecause(Path path, boolean directory) throws IOException {
        if (Files.isSymbolicLink(path)) {
            return "it is a symbolic link";
        }
        if (directory ? !Files.isDirectory(path, LinkOption.NOFOLLOW_LINKS)
                : !Files.isRegularFile(path, LinkOption.NOFOLLOW_LINKS)) {
            return directory ? "it is not a directory" : "it is not a regular file";
        }
        String owner = Files.getOwner(path, LinkOption.NOFOLLOW_LINKS).getName();
        if (!owner.equals(System.getProperty("user.name"))) {
            return "it is owned by " + owner + ", not by " + System.getProperty("user.name");
        }
        try {
            Set<PosixFilePermission> perms = Files.getPosixFilePermissions(path, LinkOption.NOFOLLOW_LINKS);
            if (perms.contains(PosixFilePermission.GROUP_WRITE) || perms.contains(PosixFilePermission.OTHERS_WRITE)) {
                return "it is group- or world-writable (" + PosixFilePermissions.toString(perms) + ")";
            }
        } catch (UnsupportedOperationException e) {
            // not a POSIX file system (Windows): ownership was checked
        }
        return null;
    }

    /**
     * Deletes copies left by workers that died without cleaning up: a copy whose lock file no
     * process holds. Copies of this JVM (its pid in the name) are never touched, since closing a
     * second channel on a lock file would drop the lock this JVM holds on it.
     */
    static int removeStaleCopies(Path dir) {
        String ownPrefix = COPY_PREFIX + ProcessHandle.current().pid() + "-";
        int removed = 0;
        try (DirectoryStream<Path> locks = Files.newDirectoryStream(dir, COPY_PREFIX + "*" + LOCK_SUFFIX)) {
            for (Path lock : locks) {
                String name = lock.getFileName().toString();
                if (name.startsWith(ownPrefix)) {
                    continue;
                }
                Path copy = dir.resolve(name.substring(0, name.length() - LOCK_SUFFIX.length()));
                if (deleteIfUnlocked(lock, copy)) {
                    removed++;
                }
            }
        } catch (IOException | RuntimeException e) {
            // Cleaning up is a courtesy: a failure here must not stop the task.
        }
        return removed;
    }

    private static boolean deleteIfUnlocked(Path lock, Path copy) {
        try (FileChannel channel = FileChannel.open(lock, StandardOpenOption.WRITE)) {
            FileLock held = channel.tryLock();
            if (held == null) {
                return false; // a live worker has it loaded
            }
            try {
                Files.deleteIfExists(copy);
                Files.deleteIfExists(lock);
            } finally {
                held.release();
            }
            return true;
        } catch (IOException | OverlappingFileLockException e) {
            return false;
        }
    }

    static Path extract(ClassLoader loader, String resource, Path dir) {
        // The class's own loader: that is the plugin loader whose copy of the library we need.
        try (InputStream in = loader == null
                ? ClassLoader.getSystemResourceAsStream(resource)
                : loader.getResourceAsStream(resource)) {
            if (in == null) {
                throw new ConnectException("The Salesforce sink connector's native library is missing: no class path "
                        + "resource " + resource);
            }
            String fileName = resource.substring(resource.lastIndexOf('/') + 1);
            int dot = fileName.lastIndexOf('.');
            String suffix = dot >= 0 ? fileName.substring(dot) : ".lib";
            Path copy = Files.createTempFile(dir, COPY_PREFIX + ProcessHandle.current().pid() + "-", suffix);
            Path lock = copy.resolveSibling(copy.getFileName() + LOCK_SUFFIX);
            FileChannel channel = FileChannel.open(lock, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
            if (channel.tryLock() == null) {
                channel.close();
                throw new IOException("could not lock " + lock);
            }
            lockChannel = channel;
            copy.toFile().deleteOnExit();
            lock.toFile().deleteOnExit();
            // Into the 0600 file createTempFile made, through its own channel: replacing it
            // (Files.copy REPLACE_EXISTING) would make a new file with the umask's permissions.
            try (FileChannel out = FileChannel.open(copy, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING,
                    LinkOption.NOFOLLOW_LINKS)) {
                ByteBuffer chunk = ByteBuffer.allocate(64 * 1024);
                int n;
                while ((n = in.read(chunk.array())) >= 0) {
                    chunk.limit(n).position(0);
                    while (chunk.hasRemaining()) {
                        out.write(chunk);
                    }
                    chunk.clear();
                }
                out.force(true);
            }
            return copy;
        } catch (IOException e) {
            throw new ConnectException("Could not extract the native library " + resource + " to " + dir + ": "
                    + e + " (set the system property " + DIR_PROPERTY + " or the environment variable " + DIR_ENV
                    + " to a writable directory)", e);
        }
    }

    /** The copy about to be loaded, and its directory, are still this user's alone. */
    static void checkBeforeLoad(Path path) {
        try {
            String problem = unsafeBecause(path, false);
            String dirProblem = path.getParent() == null ? null : unsafeBecause(path.getParent(), true);
            if (problem != null || dirProblem != null) {
                throw new ConnectException("Refusing to load the native library " + path + ": "
                        + (problem != null ? problem : "its directory " + path.getParent() + ": " + dirProblem));
            }
        } catch (IOException e) {
            throw new ConnectException("Could not check the native library " + path + " before loading it: " + e, e);
        }
    }

    static String overrideWarning(Path path) {
        return OVERRIDE + " is set: loading " + path + " instead of the library packed in the plugin; "
                + "this is for development only and whoever can write that file runs code in this worker";
    }

    private static void systemLoad(Path path, String origin, String resource) {
        if (nativeAccessRestricted()) {
            log.warn("Java {} restricts native access (JEP 472): it warns on stderr when the Salesforce sink loads "
                    + "its native library, and a later Java refuses unless the Connect worker is started with {} "
                    + "(e.g. in KAFKA_OPTS)", Runtime.version().feature(), NATIVE_ACCESS_FLAG);
        }
        try {
            System.load(path.toString());
        } catch (IllegalCallerException e) {
            throw new ConnectException("The JVM refused to load the Salesforce sink native library " + path + " ("
                    + origin + "): " + e.getMessage() + ". Start the Connect worker with " + NATIVE_ACCESS_FLAG
                    + " (e.g. in KAFKA_OPTS)", e);
        } catch (UnsatisfiedLinkError | SecurityException e) {
            throw new ConnectException("Could not load the Salesforce sink native library " + path + " ("
                    + origin + "): " + e.getMessage() + explain(e.getMessage(), resource, path), e);
        }
    }

    /** What the operator can do about a failed load: the usual causes, each with needed vs found. */
    /**
     * Whether this Java restricts {@code System.load} for this class: Java 24+ without native access
     * granted to its module ({@code Module.isNativeAccessEnabled()}, Java 22+, called reflectively:
     * the jar is Java 11 bytecode).
     */
    static boolean nativeAccessRestricted() {
        if (Runtime.version().feature() < 24) {
            return false;
        }
        try {
            Object enabled = Module.class.getMethod("isNativeAccessEnabled").invoke(NativeLibrary.class.getModule());
            return !Boolean.TRUE.equals(enabled);
        } catch (ReflectiveOperationException | RuntimeException e) {
            return false;
        }
    }

    static String explain(String error, String resource, Path path) {
        String message = error == null ? "" : error;
        StringBuilder hint = new StringBuilder();
        if (resource != null && resource.startsWith("native/linux-")) {
            if (message.contains("GLIBC_") || message.contains("libc.so") || message.contains("ld-linux")
                    || Files.exists(Paths.get("/lib/ld-musl-x86_64.so.1"))
                    || Files.exists(Paths.get("/lib/ld-musl-aarch64.so.1"))) {
                hint.append(". It needs glibc ").append(MIN_GLIBC).append(" or newer; found: ")
                        .append(libcVersion());
            }
            if (message.contains("failed to map segment") || message.contains("Operation not permitted")
                    || message.contains("Permission denied")) {
                hint.append(". The directory ").append(path.getParent())
                        .append(" may be mounted noexec: point the system property ").append(DIR_PROPERTY)
                        .append(" or the environment variable ").append(DIR_ENV)
                        .append(" at a directory that allows executables");
            }
        }
        return hint.toString();
    }

    /** The C library of this machine, e.g. "glibc 2.28" or "musl"; only used to explain a failure. */
    static String libcVersion() {
        try {
            Process p = new ProcessBuilder("getconf", "GNU_LIBC_VERSION").redirectErrorStream(true).start();
            byte[] out = p.getInputStream().readAllBytes();
            if (p.waitFor(5, TimeUnit.SECONDS) && p.exitValue() == 0) {
                String text = new String(out, StandardCharsets.UTF_8).trim(); // "glibc 2.28"
                if (!text.isEmpty()) {
                    return text;
                }
            }
        } catch (IOException e) {
            // no getconf: fall through
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (Files.exists(Paths.get("/lib/ld-musl-x86_64.so.1")) || Files.exists(Paths.get("/lib/ld-musl-aarch64.so.1"))) {
            return "musl libc (e.g. Alpine), not glibc";
        }
        return "unknown (getconf GNU_LIBC_VERSION gave nothing)";
    }
}
