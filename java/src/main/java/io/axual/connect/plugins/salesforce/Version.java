package io.axual.connect.plugins.salesforce;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** The connector version, filtered into a resource by the Maven build. */
public final class Version {
    private static final String RESOURCE = "/salesforce-sink-version.properties";
    private static volatile String version;

    private Version() {
    }

    public static String get() {
        String v = version;
        if (v == null) {
            v = read();
            version = v;
        }
        return v;
    }

    private static String read() {
        try (InputStream in = Version.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                return "unknown";
            }
            Properties props = new Properties();
            props.load(in);
            String v = props.getProperty("version", "unknown").trim();
            return v.isEmpty() || v.startsWith("${") ? "unknown" : v;
        } catch (IOException e) {
            return "unknown";
        }
    }
}
