package io.axual.connect.plugins.salesforce;

import io.axual.connect.plugins.salesforce.jni.ConfigEncoder;
import io.axual.connect.plugins.salesforce.jni.NativeSinkHandle;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;
import org.apache.kafka.common.config.Config;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.config.ConfigValue;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes Kafka records into Salesforce SObjects.
 *
 * <p>Deliberately light: the worker's plugin scan instantiates this class, and validation must
 * work even where the native library cannot load, so only {@link #validate} touches native code,
 * and only to ask the native parser (no connection), skipping it where the library cannot load.
 */
public class SalesforceSinkConnector extends SinkConnector {
    private static final Logger log = LoggerFactory.getLogger(SalesforceSinkConnector.class);
    private Map<String, String> props;

    @Override
    public String version() {
        return Version.get();
    }

    @Override
    public void start(Map<String, String> props) {
        // Fails fast (ConfigException) on a configuration that validate() would have refused.
        new SalesforceSinkConfig(props);
        this.props = new HashMap<>(props);
    }

    @Override
    public Class<? extends Task> taskClass() {
        return SalesforceSinkTask.class;
    }

    /** n copies of the connector config, each with its task number (used in log prefixes and by native code). */
    @Override
    public List<Map<String, String>> taskConfigs(int maxTasks) {
        List<Map<String, String>> configs = new ArrayList<>(maxTasks);
        for (int i = 0; i < maxTasks; i++) {
            Map<String, String> copy = new HashMap<>(props);
            copy.put(ConfigEncoder.TASK_ID, Integer.toString(i));
            configs.add(copy);
        }
        return configs;
    }

    @Override
    public void stop() {
        // Nothing to release: tasks own all resources.
    }

    @Override
    public ConfigDef config() {
        return SalesforceSinkConfig.configDef();
    }

    /**
     * Per-key results from the ConfigDef, the cross-key rules, unknown {@code salesforce.*} keys,
     * the trust store, and — when the native library loads on this worker — the native parser's
     * verdict, each reported on its key: what validate accepts, a task accepts too.
     */
    @Override
    public Config validate(Map<String, String> connectorConfigs) {
        Config config = super.validate(connectorConfigs);
        Map<String, ConfigValue> byName = new HashMap<>();
        Map<String, Object> parsed = new HashMap<>();
        for (ConfigValue value : config.configValues()) {
            byName.put(value.name(), value);
            parsed.put(value.name(), value.value());
        }
        SalesforceSinkConfig.crossKeyErrors(parsed).forEach((key, messages) -> {
            ConfigValue value = byName.get(key);
            // A key that already has an error (e.g. unparsable) keeps just that one.
            if (value != null && value.errorMessages().isEmpty()) {
                messages.forEach(value::addErrorMessage);
            }
        });
        for (String key : new TreeSet<>(connectorConfigs.keySet())) {
            if (key.startsWith(ConfigEncoder.PREFIX) && !byName.containsKey(key)) {
                // The value is not echoed: a mistyped secret key would show the secret.
                ConfigValue unknown = new ConfigValue(key, null, new ArrayList<>(), new ArrayList<>());
                unknown.addErrorMessage("Unknown key " + key + ": this connector would ignore it"
                        + nearestKey(key, byName.keySet()).map(k -> "; did you mean " + k + "?").orElse(""));
                config.configValues().add(unknown);
            }
        }
        boolean clean = config.configValues().stream().allMatch(v -> v.errorMessages().isEmpty());
        if (clean) {
            checkAsTaskWould(connectorConfigs, byName);
        }
        return config;
    }

    /**
     * Builds the task's settings (the trust store is read here, as a task does) and, where the
     * native library loads, asks the native parser; a problem goes on the key it names.
     */
    private static void checkAsTaskWould(Map<String, String> connectorConfigs, Map<String, ConfigValue> byName) {
        byte[] buffer;
        try {
            SalesforceSinkConfig parsed = new SalesforceSinkConfig(connectorConfigs);
            buffer = ConfigEncoder.encode(parsed.nativeSettings(), connectorConfigs.getOrDefault("name", "validate"), "0");
        } catch (ConfigException e) {
            String key = e.getMessage() != null && e.getMessage().contains(SalesforceSinkConfig.SSL_TRUSTSTORE_PATH)
                    ? SalesforceSinkConfig.SSL_TRUSTSTORE_PATH : null;
            addError(byName, key, e.getMessage());
            return;
        }
        try {
            Map.Entry<String, String> refused = NativeSinkHandle.checkConfig(buffer);
            if (refused != null) {
                addError(byName, refused.getKey(), refused.getValue());
            }
        } catch (LinkageError | RuntimeException e) {
            // No native library for this worker's platform (or it cannot load): the task reports it
            // at start; validation stays what the ConfigDef can tell.
            log.debug("Native configuration check skipped: {}", e.toString());
        } finally {
            Arrays.fill(buffer, (byte) 0); // it held the secrets in clear
        }
    }

    private static void addError(Map<String, ConfigValue> byName, String key, String message) {
        ConfigValue value = key == null ? null : byName.get(key);
        if (value == null) {
            value = byName.get(SalesforceSinkConfig.SOBJECT_TYPE); // a place every UI shows
            message = (key == null ? "" : key + ": ") + message;
        }
        value.addErrorMessage(message);
    }

    /** The known key closest to a mistyped one (edit distance at most a third of its length). */
    static Optional<String> nearestKey(String key, Collection<String> known) {
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (String candidate : known) {
            int d = editDistance(key, candidate);
            if (d < bestDistance) {
                best = candidate;
                bestDistance = d;
            }
        }
        return bestDistance <= Math.max(2, key.length() / 3) ? Optional.ofNullable(best) : Optional.empty();
    }

    private static int editDistance(String a, String b) {
        int[] previous = new int[b.length() + 1];
        int[] current = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            previous[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            current[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int substitution = previous[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
                current[j] = Math.min(substitution, Math.min(previous[j], current[j - 1]) + 1);
            }
            int[] swap = previous;
            previous = current;
            current = swap;
        }
        return previous[b.length()];
    }
}
