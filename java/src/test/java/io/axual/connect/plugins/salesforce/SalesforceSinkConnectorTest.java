package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SalesforceSinkConnectorTest {
    @Test
    void versionComesFromTheFilteredResource() {
        assertEquals(System.getProperty("project.version", "0.1.0-SNAPSHOT"), new SalesforceSinkConnector().version());
    }

    @Test
    void taskConfigsAreCopiesWithTaskNumbers() {
        SalesforceSinkConnector connector = new SalesforceSinkConnector();
        connector.start(SalesforceSinkConfigTest.clientCredentials());
        List<Map<String, String>> configs = connector.taskConfigs(3);
        assertEquals(3, configs.size());
        for (int i = 0; i < 3; i++) {
            assertEquals(Integer.toString(i), configs.get(i).get("task.id"));
            assertEquals("Contact", configs.get(i).get("salesforce.sobject.type"));
        }
        assertSame(SalesforceSinkTask.class, connector.taskClass());
        assertSame(SalesforceSinkConfig.configDef(), connector.config());
    }
}
