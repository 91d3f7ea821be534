package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.axual.connect.plugins.salesforce.health.TaskHealthRegistry;
import io.axual.connect.plugins.salesforce.jni.NativeSinkException;
import io.axual.connect.plugins.salesforce.jni.Progress;
import io.axual.connect.plugins.salesforce.metrics.SinkTaskMetrics;
import java.lang.management.ManagementFactory;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.Test;

/** The task's MBean (SPEC §10), the quota guard's pause (SPEC §8) and the health registry. */
class TaskMetricsTest {
    private static final MBeanServer SERVER = ManagementFactory.getPlatformMBeanServer();

    private static Map<String, String> props(String connector) {
        Map<String, String> props = new HashMap<>(SalesforceSinkConfigTest.clientCredentials());
        props.put("name", connector);
        props.put("task.id", "0");
        return props;
    }

    private static Set<ObjectName> ourMBeans() throws Exception {
        return SERVER.queryNames(new ObjectName(SinkTaskMetrics.DOMAIN + ":type=sink-task-metrics,*"), null);
    }

    @Test
    void theMBeanShowsTheNativeSnapshotAndGoesAwayOnStop() throws Exception {
        SalesforceSinkTaskTest.FakeWriter writer = new SalesforceSinkTaskTest.FakeWriter();
        writer.metrics.put("records.written", 7L);
        writer.metrics.put("requests.collections", 2L);
        writer.metrics.put("write.requests", 2L);
        writer.metrics.put("write.records", 7L);
        writer.metrics.put("requests.brand.new", 5L); // a kind added natively appears as is
        SalesforceSinkTask task = new SalesforceSinkTask(config -> writer);
        task.initialize(new SalesforceSinkTaskTest.FakeContext(null));
        task.start(props("metrics test"));
        ObjectName name = SinkTaskMetrics.objectName("metrics test", "0");
        assertEquals("io.axual.connect.salesforce:type=sink-task-metrics,connector=\"metrics test\",task=0",
                name.toString());
        assertTrue(SERVER.isRegistered(name));
        task.put(List.of(new SinkRecord("t", 0, null, "k", null, Map.of("LastName", "L"), 0)));
        assertEquals(7L, SERVER.getAttribute(name, "RecordsWritten"));
        assertEquals(2L, SERVER.getAttribute(name, "RequestsCollections"));
        assertEquals(0L, SERVER.getAttribute(name, "RequestsBulk"));
        assertEquals(5L, SERVER.getAttribute(name, "RequestsBrandNew"));
        assertEquals(3.5, SERVER.getAttribute(name, "RecordsPerRequest"));
        assertEquals(1L, SERVER.getAttribute(name, "RecordsBuffered"));
        assertEquals("OK", SERVER.getAttribute(name, "Health"));
        task.stop();
        assertFalse(SERVER.isRegistered(name));
        assertTrue(TaskHealthRegistry.of("metrics test").isEmpty());
    }

    @Test
    void theQuotaGuardPausesThePartitionsAndTheHealthSaysWhy() throws Exception {
        SalesforceSinkTaskTest.FakeWriter writer = new SalesforceSinkTaskTest.FakeWriter();
        SalesforceSinkTask task = new SalesforceSinkTask(config -> writer);
        SalesforceSinkTaskTest.FakeContext context = new SalesforceSinkTaskTest.FakeContext(null);
        task.initialize(context);
        task.start(props("quota"));
        writer.health = Progress.HEALTH_QUOTA_RESERVE;
        task.put(List.of());
        assertEquals(Set.of(new TopicPartition("t", 0)), context.paused);
        assertEquals("QUOTA_RESERVE", TaskHealthRegistry.of("quota").get(0).state);
        assertEquals(1, SERVER.getAttribute(SinkTaskMetrics.objectName("quota", "0"), "HealthState"));
        writer.health = Progress.HEALTH_OK;
        task.put(List.of());
        assertTrue(context.paused.isEmpty());
        assertEquals("OK", TaskHealthRegistry.of("quota").get(0).state);
        task.stop();
    }

    @Test
    void aLateStopOfAnOldInstanceLeavesTheNewInstancesMBean() throws Exception {
        SalesforceSinkTask old = new SalesforceSinkTask(config -> new SalesforceSinkTaskTest.FakeWriter());
        old.initialize(new SalesforceSinkTaskTest.FakeContext(null));
        old.start(props("late-stop"));
        SalesforceSinkTask successor = new SalesforceSinkTask(config -> new SalesforceSinkTaskTest.FakeWriter());
        successor.initialize(new SalesforceSinkTaskTest.FakeContext(null));
        successor.start(props("late-stop"));
        old.stop();
        assertTrue(SERVER.isRegistered(SinkTaskMetrics.objectName("late-stop", "0")));
        successor.stop();
        assertFalse(SERVER.isRegistered(SinkTaskMetrics.objectName("late-stop", "0")));
    }

    @Test
    void manyStartStopCyclesAndFailedStartsLeaveNoMBean() throws Exception {
        Set<ObjectName> before = ourMBeans();
        for (int i = 0; i < 100; i++) {
            SalesforceSinkTaskTest.FakeWriter writer = new SalesforceSinkTaskTest.FakeWriter();
            SalesforceSinkTask task = new SalesforceSinkTask(config -> writer);
            task.initialize(new SalesforceSinkTaskTest.FakeContext(null));
            task.start(props("cycle-" + i));
            task.stop();
            SalesforceSinkTask failing = new SalesforceSinkTask(config -> {
                throw new NativeSinkException("invalid_client");
            });
            failing.initialize(new SalesforceSinkTaskTest.FakeContext(null));
            assertThrows(ConnectException.class, () -> failing.start(props("failing-" + List.of(1).size())));
            Map<String, String> bad = props("bad-config");
            bad.put("salesforce.batch.size", "-1");
            SalesforceSinkTask badTask = new SalesforceSinkTask(config -> writer);
            badTask.initialize(new SalesforceSinkTaskTest.FakeContext(null));
            assertThrows(ConnectException.class, () -> badTask.start(bad));
        }
        assertEquals(before, ourMBeans());
    }
}
