package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.kafka.common.config.ConfigValue;
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

    private static Map<String, List<String>> errorsByKey(Map<String, String> props) {
        return new SalesforceSinkConnector().validate(props).configValues().stream()
                .filter(v -> !v.errorMessages().isEmpty())
                .collect(Collectors.toMap(ConfigValue::name, ConfigValue::errorMessages));
    }

    @Test
    void unknownKeysAreReportedWithTheNearestKnownKeyAndWithoutTheirValue() {
        Map<String, String> props = new HashMap<>(SalesforceSinkConfigTest.clientCredentials());
        props.put("salesforce.client.secert", "s3cr3t-value");
        props.put("salesforce.something.else.entirely", "x");
        props.put("errors.tolerance", "all"); // not ours: not reported
        Map<String, List<String>> errors = errorsByKey(props);
        assertEquals(2, errors.size(), errors.toString());
        assertTrue(errors.get("salesforce.client.secert").get(0).contains("did you mean salesforce.client.secret?"),
                errors.toString());
        assertTrue(!errors.get("salesforce.something.else.entirely").get(0).contains("did you mean"), errors.toString());
        ConfigValue unknown = new SalesforceSinkConnector().validate(props).configValues().stream()
                .filter(v -> v.name().equals("salesforce.client.secert")).findFirst().orElseThrow();
        assertNull(unknown.value());
        assertTrue(!errors.toString().contains("s3cr3t-value"));
    }

    @Test
    void unreadableCaPemAndTrustStoreAreReportedOnTheirKeys() {
        Map<String, String> props = new HashMap<>(SalesforceSinkConfigTest.clientCredentials());
        props.put("salesforce.ssl.ca.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----");
        assertTrue(errorsByKey(props).get("salesforce.ssl.ca.pem").get(0).contains("not a valid X.509 certificate"));
        props.put("salesforce.ssl.ca.pem", "just text");
        assertTrue(errorsByKey(props).get("salesforce.ssl.ca.pem").get(0).contains("no -----BEGIN CERTIFICATE-----"));
        props.remove("salesforce.ssl.ca.pem");
        props.put("salesforce.ssl.truststore.path", "/nonexistent/truststore.p12");
        assertTrue(errorsByKey(props).get("salesforce.ssl.truststore.path").get(0).contains("cannot be read"),
                errorsByKey(props).toString());
    }

    @Test
    void retryMaxAttemptsHasTheNativeRange() {
        Map<String, String> props = new HashMap<>(SalesforceSinkConfigTest.clientCredentials());
        props.put("salesforce.retry.max.attempts", "101");
        assertTrue(errorsByKey(props).containsKey("salesforce.retry.max.attempts"));
        props.put("salesforce.retry.max.attempts", "100");
        assertEquals(Map.of(), errorsByKey(props));
    }
}
