package io.axual.connect.plugins.salesforce;

import io.axual.connect.plugins.salesforce.jni.ConfigEncoder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.Config;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigValue;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;

/**
 * Writes Kafka records into Salesforce SObjects.
 *
 * <p>Deliberately light: the worker's plugin scan instantiates this class, and validation must
 * work even where the native library cannot load, so nothing here touches native code.
 */
public class SalesforceSinkConnector extends SinkConnector {
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

    /** Per-key results from the ConfigDef, plus the cross-key rules, each reported on its key. */
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
        return config;
    }
}
