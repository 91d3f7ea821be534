package io.axual.connect.plugins.salesforce.jni;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import org.apache.kafka.connect.errors.ConnectException;

/**
 * Loads the {@code salesforce_sink_jni} library once per class loader.
 *
 * <p>A native library file can be bound to one class loader only, and Connect gives every plugin
 * (and sometimes every connector) its own loader, so the library shipped in the jar is extracted
 * to a fresh temp file for each loader. For development, the system property or environment
 * variable {@value #OVERRIDE} may name a library file to load instead.
 */
public final class NativeLibrary {
    static final String OVERRIDE = "SALESFORCE_SINK_NATIVE_LIB";
    static final String LIBRARY_NAME = "salesforce_sink_jni";

    private static volatile boolean loaded;

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
        String override = System.getProperty(OVERRIDE);
        if (override == null || override.isBlank()) {
            override = System.getenv(OVERRIDE);
        }
        if (override != null && !override.isBlank()) {
            Path path = Paths.get(override.trim()).toAbsolutePath();
            if (!Files.isRegularFile(path)) {
                throw new ConnectException(OVERRIDE + " names " + path + ", which is not a file");
            }
            systemLoad(path, "from " + OVERRIDE);
            return;
        }
        String resource = resourcePath(
                System.getProperty("os.name", ""), System.getProperty("os.arch", ""),
                System.mapLibraryName(LIBRARY_NAME));
        Path extracted = extract(resource);
        systemLoad(extracted, "extracted from resource " + resource);
    }

    /**
     * The class path resource of the library for this platform: {@code native/<os>-<arch>/<file>}.
     */
    static String resourcePath(String osName, String osArch, String fileName) {
        String os = normalizeOs(osName);
        String arch = normalizeArch(osArch);
        if (os == null || arch == null) {
            throw new ConnectException("The Salesforce sink connector has no native library for os.name='"
                    + osName + "', os.arch='" + osArch + "'; supported: linux, darwin and windows on "
                    + "x86_64 or aarch64 (resource native/<os>-<arch>/" + fileName + ")");
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

    private static Path extract(String resource) {
        // The class's own loader: that is the plugin loader whose copy of the library we need.
        ClassLoader loader = NativeLibrary.class.getClassLoader();
        try (InputStream in = loader == null
                ? ClassLoader.getSystemResourceAsStream(resource)
                : loader.getResourceAsStream(resource)) {
            if (in == null) {
                throw new ConnectException("The Salesforce sink connector's native library is missing: no class path "
                        + "resource " + resource + " for os.name='" + System.getProperty("os.name") + "', os.arch='"
                        + System.getProperty("os.arch") + "' (was the jar built on this platform?)");
            }
            String fileName = resource.substring(resource.lastIndexOf('/') + 1);
            int dot = fileName.lastIndexOf('.');
            String suffix = dot >= 0 ? fileName.substring(dot) : ".lib";
            Path temp = Files.createTempFile("salesforce-sink-", suffix);
            temp.toFile().deleteOnExit();
            Files.copy(in, temp, StandardCopyOption.REPLACE_EXISTING);
            return temp;
        } catch (IOException e) {
            throw new ConnectException("Could not extract the native library " + resource + " to a temp file: "
                    + e.getMessage(), e);
        }
    }

    private static void systemLoad(Path path, String origin) {
        try {
            System.load(path.toString());
        } catch (UnsatisfiedLinkError | SecurityException e) {
            throw new ConnectException("Could not load the Salesforce sink native library " + path + " ("
                    + origin + "): " + e.getMessage(), e);
        }
    }
}
