package io.axual.connect.plugins.salesforce.jni;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.types.Password;

/**
 * Builds the config buffer of {@code NativeSink.open}: {@code i32 n, n × (str key, str value)}.
 *
 * <p>Carries every {@code salesforce.*} setting after defaults, plus {@code connector.name} and
 * {@code task.id}. Keys without a value (optional settings left unset) are left out rather than
 * sent as "", so the native side can tell "unset" from "empty". Passwords are written in clear:
 * the buffer is the only place they leave the JVM, and the caller wipes it after use.
 */
public final class ConfigEncoder {
    public static final String CONNECTOR_NAME = "connector.name";
    public static final String TASK_ID = "task.id";
    /** Not a user setting: how long one put may start requests (the task derives it). */
    public static final String PUT_TIME_BUDGET_MS = "put.time.budget.ms";
    /** Every connector setting of ours starts with this. */
    public static final String PREFIX = "salesforce.";

    private ConfigEncoder() {
    }

    /**
     * @param settings parsed values by key (String, Integer, Boolean, Password, ...); keys not
     *                 starting with {@code salesforce.} are ignored
     */
    public static byte[] encode(Map<String, ?> settings, String connectorName, String taskId) {
        return encode(settings, connectorName, taskId, -1);
    }

    /** @param putTimeBudgetMs see {@link #PUT_TIME_BUDGET_MS}; negative leaves the native default */
    public static byte[] encode(Map<String, ?> settings, String connectorName, String taskId, long putTimeBudgetMs) {
        List<String> pairs = new ArrayList<>();
        if (putTimeBudgetMs > 0) {
            pairs.add(PUT_TIME_BUDGET_MS);
            pairs.add(Long.toString(putTimeBudgetMs));
        }
        for (Map.Entry<String, ?> entry : settings.entrySet()) {
            String text = asText(entry.getValue());
            if (entry.getKey().startsWith(PREFIX) && text != null) {
                pairs.add(entry.getKey());
                pairs.add(text);
            }
        }
        pairs.add(CONNECTOR_NAME);
        pairs.add(connectorName);
        pairs.add(TASK_ID);
        pairs.add(taskId);

        WireWriter out = new WireWriter(1024);
        out.writeI32(pairs.size() / 2);
        for (String s : pairs) {
            out.writeStr(s);
        }
        return out.toByteArray();
    }

    private static String asText(Object value) {
        if (value == null) {
            return null;
        }
        if (value instanceof Password) {
            return ((Password) value).value();
        }
        if (value instanceof List) {
            return String.join(",", ((List<?>) value).stream().map(String::valueOf).toArray(String[]::new));
        }
        return String.valueOf(value); // Boolean → "true"/"false", Integer → decimal
    }
}
