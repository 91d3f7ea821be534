package io.axual.connect.plugins.salesforce.metrics;

import io.axual.connect.plugins.salesforce.jni.Progress;
import java.lang.management.ManagementFactory;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;
import javax.management.Attribute;
import javax.management.AttributeList;
import javax.management.AttributeNotFoundException;
import javax.management.DynamicMBean;
import javax.management.InstanceNotFoundException;
import javax.management.JMException;
import javax.management.MBeanAttributeInfo;
import javax.management.MBeanInfo;
import javax.management.MBeanServer;
import javax.management.ObjectName;

/**
 * One task's metrics (SPEC §10) as a JMX MBean
 * {@code io.axual.connect.salesforce:type=sink-task-metrics,connector=NAME,task=ID}.
 *
 * <p>The native side counts; every put/flush crossing brings a snapshot (name → total) in the
 * progress buffer, and {@link #update} stores it here. Attributes are the snapshot's names in
 * CamelCase ({@code requests.collections} → {@code RequestsCollections}), so a metric added on
 * the native side (a new request kind) appears without a change here, plus derived ones: rates
 * over the last minute, records per request, Id cache hit ratio, latency in milliseconds, health.
 */
public final class SinkTaskMetrics implements DynamicMBean {
    public static final String DOMAIN = "io.axual.connect.salesforce";
    /** Names the native side sends (rust/core/src/metrics.rs); listed so every attribute exists from start. */
    static final List<String> KNOWN = Arrays.asList("records.written", "records.failed", "records.retried",
            "records.skipped", "requests.collections", "requests.single", "requests.query", "requests.bulk",
            "requests.token", "requests.limits", "requests.other", "request.latency.p50.us",
            "request.latency.p99.us", "write.requests", "write.records", "records.buffered", "requests.in.flight",
            "bulk.jobs.open", "api.requests.used", "api.requests.max", "quota.guard.active", "token.refreshes",
            "id.cache.hits", "id.cache.misses");
    private static final List<String> RATED = Arrays.asList("records.written", "records.failed",
            "records.retried", "records.skipped");
    private static final long RATE_WINDOW_NANOS = 60_000_000_000L;
    private static final Pattern PLAIN = Pattern.compile("[A-Za-z0-9._-]+");
    /** The instance each registered name belongs to: a task instance stopping late must not remove its successor's MBean. */
    private static final Map<ObjectName, SinkTaskMetrics> OWNERS = new ConcurrentHashMap<>();

    private final ObjectName name;
    private final Map<String, Long> values = new ConcurrentHashMap<>();
    /** (nanoTime, totals of RATED) samples of the last minute, oldest first. */
    private final Deque<long[]> samples = new ArrayDeque<>();
    private volatile String health = "OK";
    private volatile String healthMessage = "";
    private volatile int healthState;
    private volatile long healthSince = System.currentTimeMillis();
    private volatile MBeanInfo info;

    private SinkTaskMetrics(ObjectName name) {
        this.name = name;
        for (String metric : KNOWN) {
            values.put(metric, 0L);
        }
        info = buildInfo();
    }

    public static ObjectName objectName(String connector, String taskId) {
        try {
            return new ObjectName(DOMAIN + ":type=sink-task-metrics,connector=" + quoteIfNeeded(connector) + ",task="
                    + quoteIfNeeded(taskId));
        } catch (JMException e) {
            throw new IllegalArgumentException("no valid MBean name for connector " + connector + " task " + taskId, e);
        }
    }

    private static String quoteIfNeeded(String value) {
        return PLAIN.matcher(value).matches() ? value : ObjectName.quote(value);
    }

    /**
     * Registers the MBean of this task, replacing one a previous instance of the same task left
     * behind (a task whose stop() never ran), so that restarts never fail on a name clash.
     */
    public static SinkTaskMetrics register(String connector, String taskId) throws JMException {
        MBeanServer server = ManagementFactory.getPlatformMBeanServer();
        SinkTaskMetrics metrics = new SinkTaskMetrics(objectName(connector, taskId));
        synchronized (OWNERS) {
            try {
                server.unregisterMBean(metrics.name);
            } catch (InstanceNotFoundException e) {
                // the usual case
            }
            server.registerMBean(metrics, metrics.name);
            OWNERS.put(metrics.name, metrics);
        }
        return metrics;
    }

    /**
     * Removes the MBean unless a newer instance of the same task registered the name since; safe
     * to call twice. Returns whether this instance still owned the name.
     */
    public boolean unregister() {
        synchronized (OWNERS) {
            if (!OWNERS.remove(name, this)) {
                return false;
            }
            try {
                ManagementFactory.getPlatformMBeanServer().unregisterMBean(name);
            } catch (InstanceNotFoundException e) {
                // already gone
            } catch (JMException e) {
                throw new IllegalStateException("cannot unregister " + name, e);
            }
            return true;
        }
    }

    public ObjectName name() {
        return name;
    }

    /** Takes the snapshot of one native crossing. */
    public void update(Progress progress) {
        boolean added = false;
        for (Map.Entry<String, Long> metric : progress.metrics().entrySet()) {
            added |= values.put(metric.getKey(), metric.getValue()) == null;
        }
        values.put("records.buffered", (long) progress.unfinished());
        values.put("requests.in.flight", (long) progress.requestsInFlight());
        healthState = progress.healthState();
        String state = Progress.healthName(progress.healthState());
        if (!state.equals(health)) {
            health = state;
            healthSince = progress.healthSinceEpochMs();
        }
        healthMessage = progress.healthMessage();
        sample(System.nanoTime());
        if (added) {
            info = buildInfo();
        }
    }

    private void sample(long now) {
        long[] totals = new long[RATED.size() + 1];
        totals[0] = now;
        for (int i = 0; i < RATED.size(); i++) {
            totals[i + 1] = values.getOrDefault(RATED.get(i), 0L);
        }
        synchronized (samples) {
            long[] last = samples.peekLast();
            if (last != null && now - last[0] < 1_000_000_000L && samples.size() > 1) {
                samples.pollLast(); // at most one sample a second: keep the newest
            }
            samples.addLast(totals);
            while (samples.size() > 2 && now - samples.peekFirst()[0] > RATE_WINDOW_NANOS) {
                samples.pollFirst();
            }
        }
    }

    /** Per second over the last minute (what was seen of it). */
    double rate(String metric) {
        int index = RATED.indexOf(metric) + 1;
        synchronized (samples) {
            if (samples.size() < 2) {
                return 0.0;
            }
            long[] first = samples.peekFirst();
            long[] last = samples.peekLast();
            double seconds = Math.max(1e-3, (System.nanoTime() - first[0]) / 1e9);
            return (last[index] - first[index]) / seconds;
        }
    }

    public long value(String metric) {
        return values.getOrDefault(metric, 0L);
    }

    /** Attribute values by attribute name, for plugin metrics. */
    public Map<String, Object> attributes() {
        Map<String, Object> out = new LinkedHashMap<>();
        for (MBeanAttributeInfo attribute : info.getAttributes()) {
            try {
                out.put(attribute.getName(), getAttribute(attribute.getName()));
            } catch (AttributeNotFoundException e) {
                // listed, so found
            }
        }
        return out;
    }

    /** The attribute's value, or null when there is no such attribute. */
    public Object attributeOrNull(String attribute) {
        try {
            return getAttribute(attribute);
        } catch (AttributeNotFoundException e) {
            return null;
        }
    }

    static String attributeName(String metric) {
        StringBuilder out = new StringBuilder();
        for (String part : metric.split("\\.")) {
            if (!part.isEmpty()) {
                out.append(Character.toUpperCase(part.charAt(0))).append(part.substring(1));
            }
        }
        return out.toString();
    }

    private MBeanInfo buildInfo() {
        List<MBeanAttributeInfo> attributes = new ArrayList<>();
        List<String> names = new ArrayList<>(KNOWN);
        for (String metric : values.keySet()) {
            if (!names.contains(metric)) {
                names.add(metric);
            }
        }
        for (String metric : names) {
            attributes.add(new MBeanAttributeInfo(attributeName(metric), "long", describe(metric), true, false, false));
        }
        for (String metric : RATED) {
            attributes.add(new MBeanAttributeInfo(attributeName(metric) + "Rate", "double",
                    metric + " per second over the last minute", true, false, false));
        }
        attributes.add(new MBeanAttributeInfo("RecordsPerRequest", "double",
                "records per write request (write.records / write.requests)", true, false, false));
        attributes.add(new MBeanAttributeInfo("IdCacheHitRatio", "double",
                "share of External ID lookups answered by the Id cache", true, false, false));
        attributes.add(new MBeanAttributeInfo("RequestLatencyP50Ms", "double", "median request latency, last 1-2 minutes",
                true, false, false));
        attributes.add(new MBeanAttributeInfo("RequestLatencyP99Ms", "double", "99th percentile request latency",
                true, false, false));
        attributes.add(new MBeanAttributeInfo("HealthState", "int",
                "0 OK, 1 QUOTA_RESERVE, 2 SALESFORCE_UNAVAILABLE, 3 STALLED", true, false, false));
        attributes.add(new MBeanAttributeInfo("Health", "java.lang.String", "what holds the task back", true, false,
                false));
        attributes.add(new MBeanAttributeInfo("HealthMessage", "java.lang.String", "what to do", true, false, false));
        attributes.add(new MBeanAttributeInfo("HealthSinceEpochMs", "long", "when the health state began", true,
                false, false));
        return new MBeanInfo(SinkTaskMetrics.class.getName(), "Salesforce SObject sink task metrics (SPEC §10)",
                attributes.toArray(new MBeanAttributeInfo[0]), null, null, null);
    }

    private static String describe(String metric) {
        return metric.replace('.', ' ') + " (total since the task started, or current value)";
    }

    @Override
    public Object getAttribute(String attribute) throws AttributeNotFoundException {
        switch (attribute) {
            case "RecordsPerRequest": {
                long requests = value("write.requests");
                return requests == 0 ? 0.0 : (double) value("write.records") / requests;
            }
            case "IdCacheHitRatio": {
                long lookups = value("id.cache.hits") + value("id.cache.misses");
                return lookups == 0 ? 0.0 : (double) value("id.cache.hits") / lookups;
            }
            case "RequestLatencyP50Ms":
                return value("request.latency.p50.us") / 1000.0;
            case "RequestLatencyP99Ms":
                return value("request.latency.p99.us") / 1000.0;
            case "HealthState":
                return healthState;
            case "Health":
                return health;
            case "HealthMessage":
                return healthMessage;
            case "HealthSinceEpochMs":
                return healthSince;
            default:
                break;
        }
        for (String metric : RATED) {
            if (attribute.equals(attributeName(metric) + "Rate")) {
                return rate(metric);
            }
        }
        for (String metric : values.keySet()) {
            if (attributeName(metric).equals(attribute)) {
                return values.get(metric);
            }
        }
        throw new AttributeNotFoundException(attribute + " is no attribute of " + name);
    }

    @Override
    public AttributeList getAttributes(String[] attributes) {
        AttributeList out = new AttributeList();
        for (String attribute : attributes) {
            try {
                out.add(new Attribute(attribute, getAttribute(attribute)));
            } catch (AttributeNotFoundException e) {
                // left out, as JMX expects
            }
        }
        return out;
    }

    @Override
    public void setAttribute(Attribute attribute) {
        throw new UnsupportedOperationException("read-only");
    }

    @Override
    public AttributeList setAttributes(AttributeList attributes) {
        return new AttributeList();
    }

    @Override
    public Object invoke(String actionName, Object[] params, String[] signature) {
        throw new UnsupportedOperationException("no operations");
    }

    @Override
    public MBeanInfo getMBeanInfo() {
        return info;
    }

    @Override
    public String toString() {
        return name + " " + health.toLowerCase(Locale.ROOT);
    }
}
