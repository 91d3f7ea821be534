package io.axual.connect.plugins.salesforce.health;

import java.util.Collections;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The health of the tasks running in this worker, by connector and task id: written by the tasks
 * (on their own thread, from each native crossing), read by {@link SalesforceHealthRestExtension}'s
 * status filter. Both are loaded by the plugin's class loader, so they see the same map.
 */
public final class TaskHealthRegistry {
    /** One task's health as the status API shows it. */
    public static final class Health {
        public final String state;
        public final String message;
        public final long sinceEpochMs;

        public Health(String state, String message, long sinceEpochMs) {
            this.state = state;
            this.message = message;
            this.sinceEpochMs = sinceEpochMs;
        }
    }

    private static final Map<String, Map<Integer, Health>> TASKS = new ConcurrentHashMap<>();

    private TaskHealthRegistry() {
    }

    public static void update(String connector, int task, Health health) {
        TASKS.computeIfAbsent(connector, c -> new ConcurrentHashMap<>()).put(task, health);
    }

    public static void remove(String connector, int task) {
        TASKS.computeIfPresent(connector, (c, tasks) -> {
            tasks.remove(task);
            return tasks.isEmpty() ? null : tasks;
        });
    }

    /** The health of this connector's tasks that run in this worker, by task id. */
    public static Map<Integer, Health> of(String connector) {
        Map<Integer, Health> tasks = TASKS.get(connector);
        return tasks == null ? Collections.emptyMap() : new TreeMap<>(tasks);
    }
}
