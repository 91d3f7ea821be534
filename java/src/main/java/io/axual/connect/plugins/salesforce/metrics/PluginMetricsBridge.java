package io.axual.connect.plugins.salesforce.metrics;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.metrics.Gauge;
import org.apache.kafka.common.metrics.PluginMetrics;
import org.apache.kafka.connect.sink.SinkTaskContext;

/**
 * Publishes the task's metrics through {@code SinkTaskContext.pluginMetrics()} (KIP-877, Kafka
 * 4.1+), so they also appear in the worker's own metrics reporters. Only this class links against
 * 4.1 types: the task uses it inside a {@code LinkageError} guard, so it loads on older workers
 * (2.8 included), which simply have no plugin metrics.
 */
public final class PluginMetricsBridge implements AutoCloseable {
    private final PluginMetrics pluginMetrics;
    private final List<MetricName> added = new ArrayList<>();

    private PluginMetricsBridge(PluginMetrics pluginMetrics) {
        this.pluginMetrics = pluginMetrics;
    }

    /**
     * @throws LinkageError on workers before 4.1 (no {@code pluginMetrics()} or no {@code PluginMetrics})
     */
    public static PluginMetricsBridge publish(SinkTaskContext context, SinkTaskMetrics metrics) {
        PluginMetrics pluginMetrics = context.pluginMetrics();
        if (pluginMetrics == null) {
            return null;
        }
        PluginMetricsBridge bridge = new PluginMetricsBridge(pluginMetrics);
        for (Map.Entry<String, Object> sample : metrics.attributes().entrySet()) {
            String attribute = sample.getKey();
            if (!(sample.getValue() instanceof Number)) {
                continue;
            }
            MetricName name = pluginMetrics.metricName(kebab(attribute), "Salesforce sink: " + attribute,
                    new LinkedHashMap<>());
            Gauge<Double> gauge = (config, now) -> {
                Object value = metrics.attributeOrNull(attribute);
                return value instanceof Number ? ((Number) value).doubleValue() : 0.0;
            };
            pluginMetrics.addMetric(name, gauge);
            bridge.added.add(name);
        }
        return bridge;
    }

    /** RecordsWrittenRate → records-written-rate, as Kafka names its metrics. */
    static String kebab(String attribute) {
        return attribute.replaceAll("([a-z0-9])([A-Z])", "$1-$2").toLowerCase(java.util.Locale.ROOT);
    }

    @Override
    public void close() {
        for (MetricName name : added) {
            try {
                pluginMetrics.removeMetric(name);
            } catch (RuntimeException e) {
                // the worker may have closed the plugin's metrics already
            }
        }
        added.clear();
    }
}
