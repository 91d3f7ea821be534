package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.axual.connect.plugins.salesforce.jni.ConfigEncoder;
import io.axual.connect.plugins.salesforce.jni.NativeSinkHandle;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Java's ConfigDef and the native parser agree on every key: each numeric key's bounds (a value
 * the validate endpoint accepts never fails the task at start, and one it refuses the native side
 * refuses too), and each choice of an enumerated key. Walks {@link SalesforceSinkConfig#configDef()},
 * so a new key is covered without a change here. Needs the native library (skipped without one).
 */
class ConfigParityTest {
    /** ConfigDef.Range prints "[min,...,max]", "[min,...]" or "[...,max]". */
    private static final Pattern RANGE = Pattern.compile("\\[(-?\\d+)?,\\.\\.\\.,?(-?\\d+)?]");
    private static final Pattern CHOICES = Pattern.compile("\\[([A-Za-z_, ]+)]");

    @BeforeAll
    static void nativeLibrary() {
        try {
            NativeSinkHandle.checkConfig(ConfigEncoder.encode(base(), "parity", "0"));
        } catch (LinkageError | RuntimeException e) {
            assumeTrue(false, "no native library in this build: " + e);
        }
    }

    /** The connector config the other config tests use (a valid CLIENT_CREDENTIALS INSERT). */
    private static Map<String, Object> base() {
        return new HashMap<>(SalesforceSinkConfigTest.clientCredentials());
    }

    /** The native verdict on the base settings plus {@code key=value}, bypassing the ConfigDef. */
    private static Map.Entry<String, String> nativeVerdict(String key, String value) {
        Map<String, Object> settings = base();
        settings.put(key, value);
        return NativeSinkHandle.checkConfig(ConfigEncoder.encode(settings, "parity", "0"));
    }

    private static String javaVerdict(String key, String value) {
        Map<String, String> props = new HashMap<>();
        base().forEach((k, v) -> props.put(k, v.toString()));
        props.put(key, value);
        try {
            new SalesforceSinkConfig(props);
            return null;
        } catch (ConfigException e) {
            return e.getMessage();
        }
    }

    @Test
    void numericBoundsAreTheSameInJavaAndNative() {
        List<String> disagreements = new ArrayList<>();
        int checked = 0;
        for (ConfigDef.ConfigKey key : SalesforceSinkConfig.configDef().configKeys().values()) {
            if (key.type != ConfigDef.Type.INT && key.type != ConfigDef.Type.LONG) {
                continue;
            }
            Matcher range = key.validator == null ? null : RANGE.matcher(key.validator.toString());
            assertTrue(range != null && range.find(), key.name + " has no range validator: " + key.validator);
            long typeMax = key.type == ConfigDef.Type.INT ? Integer.MAX_VALUE : Long.MAX_VALUE;
            long min = range.group(1) == null ? 0 : Long.parseLong(range.group(1));
            long max = range.group(2) == null ? typeMax : Long.parseLong(range.group(2));
            List<Long> accepted = new ArrayList<>(List.of(min, max));
            accepted.add(((Number) key.defaultValue).longValue());
            for (long value : accepted) {
                String v = Long.toString(value);
                if (javaVerdict(key.name, v) != null) {
                    continue; // in range, but a rule between keys refuses it (e.g. initial > max backoff)
                }
                Map.Entry<String, String> refused = nativeVerdict(key.name, v);
                if (refused != null) {
                    disagreements.add(key.name + "=" + v + ": Java accepts, native refuses (" + refused.getValue() + ")");
                }
            }
            List<Long> refusedByJava = new ArrayList<>();
            refusedByJava.add(min - 1);
            if (max < typeMax) {
                refusedByJava.add(max + 1);
            }
            for (long value : refusedByJava) {
                String v = Long.toString(value);
                assertNotNull(javaVerdict(key.name, v), key.name + "=" + v + " should be refused by the ConfigDef");
                Map.Entry<String, String> refused = nativeVerdict(key.name, v);
                if (refused == null) {
                    disagreements.add(key.name + "=" + v + ": Java refuses, native accepts");
                } else if (!refused.getKey().equals(key.name)) {
                    disagreements.add(key.name + "=" + v + ": native blames " + refused.getKey());
                }
            }
            checked++;
        }
        assertTrue(checked >= 10, "only " + checked + " numeric keys found");
        assertEquals(List.of(), disagreements);
    }

    @Test
    void everyChoiceJavaOffersTheNativeSideTakes() {
        List<String> disagreements = new ArrayList<>();
        for (ConfigDef.ConfigKey key : SalesforceSinkConfig.configDef().configKeys().values()) {
            if (key.type != ConfigDef.Type.STRING || key.validator == null) {
                continue;
            }
            Matcher choices = CHOICES.matcher(key.validator.toString());
            if (!choices.matches()) {
                continue;
            }
            for (String choice : choices.group(1).split(",\\s*")) {
                Map<String, Object> settings = base();
                settings.put(key.name, choice);
                if (key.name.equals(SalesforceSinkConfig.AUTH_TYPE) && choice.equalsIgnoreCase("JWT_BEARER")) {
                    continue; // needs a key pair; covered by the JWT tests
                }
                if (key.name.equals(SalesforceSinkConfig.OPERATION) && choice.equalsIgnoreCase("UPSERT")) {
                    settings.put(SalesforceSinkConfig.EXTERNAL_ID_FIELD, "ExternalId__c");
                }
                Map.Entry<String, String> refused = NativeSinkHandle.checkConfig(ConfigEncoder.encode(settings, "parity", "0"));
                if (refused != null) {
                    disagreements.add(key.name + "=" + choice + ": " + refused.getValue());
                }
            }
        }
        assertEquals(List.of(), disagreements);
    }
}
