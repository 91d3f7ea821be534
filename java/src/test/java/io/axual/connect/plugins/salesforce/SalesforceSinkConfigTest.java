package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.config.ConfigValue;
import org.junit.jupiter.api.Test;

class SalesforceSinkConfigTest {

    static Map<String, String> clientCredentials() {
        Map<String, String> props = new HashMap<>();
        props.put("connector.class", SalesforceSinkConnector.class.getName());
        props.put("tasks.max", "1");
        props.put("name", "sf");
        props.put("salesforce.instance.url", "https://myorg.my.salesforce.com");
        props.put("salesforce.client.id", "3MVG94DAZekw5HctTg8hdQ3FK6...");
        props.put("salesforce.auth.type", "CLIENT_CREDENTIALS");
        props.put("salesforce.client.secret", "AF97355FC3615CF9FA4EB7BF");
        props.put("salesforce.sobject.type", "Contact");
        props.put("salesforce.operation", "INSERT");
        props.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        return props;
    }

    static Map<String, String> jwt() {
        Map<String, String> props = clientCredentials();
        props.remove("salesforce.client.secret");
        props.put("salesforce.auth.type", "JWT_BEARER");
        props.put("salesforce.jwt.private.key", TestKeys.escaped());
        props.put("salesforce.jwt.username", "integration-user@myorg.com");
        return props;
    }

    /** Errors by key, as PUT /connector-plugins/{class}/config/validate would report them. */
    static Map<String, List<String>> errors(Map<String, String> props) {
        return new SalesforceSinkConnector().validate(props).configValues().stream()
                .filter(v -> !v.errorMessages().isEmpty())
                .collect(Collectors.toMap(ConfigValue::name, ConfigValue::errorMessages));
    }

    private static void assertOnlyErrorOn(String key, Map<String, String> props) {
        Map<String, List<String>> errors = errors(props);
        assertEquals(Set.of(key), errors.keySet(), errors.toString());
    }

    @Test
    void validClientCredentialsAndJwtConfigsHaveNoErrors() {
        assertEquals(Map.of(), errors(clientCredentials()));
        assertEquals(Map.of(), errors(jwt()));
    }

    @Test
    void proxyUrlWithCredentialsIsRefusedWithoutEchoingThem() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.proxy.url", "http://proxy-user:hunter2@proxy.internal:3128");
        assertOnlyErrorOn("salesforce.proxy.url", props);
        String message = errors(props).get("salesforce.proxy.url").toString();
        assertTrue(message.contains("salesforce.proxy.password"), message);
        assertFalse(message.contains("hunter2"), message);
        props.put("salesforce.proxy.url", "http://proxy.internal:3128");
        assertEquals(Map.of(), errors(props));
    }

    @Test
    void allowedSObjectsAreApiNamesAndListTheFixedSObject() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.sobject.type", "${topic}");
        props.put("salesforce.sobject.allowed", "Contact, Account");
        assertEquals(Map.of(), errors(props));
        props.put("salesforce.sobject.allowed", "Contact,crm.Lead");
        assertOnlyErrorOn("salesforce.sobject.allowed", props);
        props.put("salesforce.sobject.type", "Lead");
        props.put("salesforce.sobject.allowed", "Contact,Account");
        assertOnlyErrorOn("salesforce.sobject.allowed", props);
        props.put("salesforce.sobject.allowed", "contact,lead");
        assertEquals(Map.of(), errors(props));
        assertEquals(List.of("contact", "lead"), new SalesforceSinkConfig(props).nativeSettings()
                .get("salesforce.sobject.allowed"));
    }

    @Test
    void pemWithRealNewlinesIsAcceptedToo() {
        Map<String, String> props = jwt();
        props.put("salesforce.jwt.private.key", TestKeys.PEM);
        assertEquals(Map.of(), errors(props));
    }

    @Test
    void seedExamplesValidateVerbatimWithRealCredentials() {
        Map<String, String> example3 = jwt();
        example3.put("salesforce.sobject.type", "MyObject__c");
        example3.put("salesforce.operation", "UPSERT");
        example3.put("salesforce.external.id.field", "ExternalId__c");
        example3.put("salesforce.retry.max.attempts", "5");
        example3.put("salesforce.retry.initial.backoff.ms", "1000");
        example3.put("salesforce.retry.max.backoff.ms", "30000");
        example3.put("errors.tolerance", "all");
        example3.put("errors.deadletterqueue.topic.name", "salesforce-sobject-sink-dlq");
        assertEquals(Map.of(), errors(example3));

        Map<String, String> example4 = new HashMap<>(example3);
        example4.put("salesforce.sobject.type", "Contact");
        example4.put("salesforce.operation.header.enabled", "true");
        example4.put("salesforce.tombstone.delete", "true");
        assertEquals(Map.of(), errors(example4));
    }

    @Test
    void missingSecretForClientCredentialsIsReportedOnTheSecret() {
        Map<String, String> props = clientCredentials();
        props.remove("salesforce.client.secret");
        assertOnlyErrorOn("salesforce.client.secret", props);
        assertThrows(ConfigException.class, () -> new SalesforceSinkConfig(props));
    }

    @Test
    void jwtWithoutKeyAndUsernameIsReportedOnBoth() {
        Map<String, String> props = jwt();
        props.remove("salesforce.jwt.private.key");
        props.remove("salesforce.jwt.username");
        assertEquals(Set.of("salesforce.jwt.private.key", "salesforce.jwt.username"), errors(props).keySet());
    }

    @Test
    void unparsablePemIsReportedWithoutEchoingTheKey() {
        Map<String, String> props = jwt();
        String bad = "-----BEGIN PRIVATE KEY-----\\nMIIEvgIBADANBgkqhkiG9SECRETBITS\\n-----END PRIVATE KEY-----";
        props.put("salesforce.jwt.private.key", bad);
        Map<String, List<String>> errors = errors(props);
        assertEquals(Set.of("salesforce.jwt.private.key"), errors.keySet());
        String message = String.join(" ", errors.get("salesforce.jwt.private.key"));
        assertFalse(message.contains("SECRETBITS"), message);
        assertFalse(message.contains("MIIE"), message);

        props.put("salesforce.jwt.private.key", "not a pem at all");
        assertTrue(String.join(" ", errors(props).get("salesforce.jwt.private.key")).contains("BEGIN PRIVATE KEY"));

        props.put("salesforce.jwt.private.key", TestKeys.PEM.replace("PRIVATE KEY", "RSA PRIVATE KEY"));
        assertTrue(String.join(" ", errors(props).get("salesforce.jwt.private.key")).contains("PKCS#1"));
    }

    @Test
    void upsertWithoutExternalIdIsReportedOnOperation() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.operation", "upsert"); // case-insensitive
        assertOnlyErrorOn("salesforce.operation", props);
        props.put("salesforce.external.id.field", "ExternalId__c");
        assertEquals(Map.of(), errors(props));
    }

    @Test
    void badApiVersionIsRefused() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.api.version", "62");
        assertOnlyErrorOn("salesforce.api.version", props);
        props.put("salesforce.api.version", "v62.0");
        assertOnlyErrorOn("salesforce.api.version", props);
        props.put("salesforce.api.version", "100.0");
        assertEquals(Map.of(), errors(props));
    }

    @Test
    void plainHttpOnlyForLoopbackHosts() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.instance.url", "http://example.com");
        Map<String, List<String>> errors = errors(props);
        assertEquals(Set.of("salesforce.instance.url"), errors.keySet());
        assertTrue(errors.get("salesforce.instance.url").get(0).contains("loopback"));

        for (String ok : new String[] {"http://127.0.0.1:8080", "http://127.1.2.3", "http://localhost:9999/",
                "http://[::1]:8080", "https://myorg.my.salesforce.com/"}) {
            props.put("salesforce.instance.url", ok);
            assertEquals(Map.of(), errors(props), ok);
        }
        for (String bad : new String[] {"myorg.my.salesforce.com", "ftp://myorg", "http://10.0.0.1",
                "http://localhost.example.com", "https://"}) {
            props.put("salesforce.instance.url", bad);
            assertOnlyErrorOn("salesforce.instance.url", props);
        }
    }

    @Test
    void numericRanges() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.batch.size", "0");
        assertOnlyErrorOn("salesforce.batch.size", props);
        props.put("salesforce.batch.size", "201");
        assertOnlyErrorOn("salesforce.batch.size", props);
        props.put("salesforce.batch.size", "1");
        props.put("salesforce.write.mode", "single");
        assertEquals(Map.of(), errors(props));

        props.put("salesforce.max.in.flight.requests", "65");
        assertOnlyErrorOn("salesforce.max.in.flight.requests", props);
        props.remove("salesforce.max.in.flight.requests");
        props.put("salesforce.request.timeout.ms", "0");
        assertOnlyErrorOn("salesforce.request.timeout.ms", props);
        props.remove("salesforce.request.timeout.ms");
        props.put("salesforce.retry.max.attempts", "-1");
        assertOnlyErrorOn("salesforce.retry.max.attempts", props);
        props.put("salesforce.retry.max.attempts", "0");
        assertEquals(Map.of(), errors(props));
        // Same ranges as rust/core/src/config.rs: 0 = no limit; a stall threshold of 0 would always hold.
        props.put("salesforce.retry.max.duration.ms", "-1");
        assertOnlyErrorOn("salesforce.retry.max.duration.ms", props);
        props.put("salesforce.retry.max.duration.ms", "0");
        props.put("salesforce.health.stall.threshold.ms", "0");
        assertOnlyErrorOn("salesforce.health.stall.threshold.ms", props);
        props.put("salesforce.health.stall.threshold.ms", "1");
        assertEquals(Map.of(), errors(props));
    }

    @Test
    void enumsAreCaseInsensitiveAndUnknownValuesRefused() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.auth.type", "client_credentials");
        props.put("salesforce.null.fields", "skip");
        props.put("salesforce.delete.missing", "Ignore");
        assertEquals(Map.of(), errors(props));
        props.put("salesforce.write.mode", "STREAMING");
        assertOnlyErrorOn("salesforce.write.mode", props);
    }

    @Test
    void sobjectTypeAcceptsTopicPlaceholderAndOtherKeysAreStillChecked() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.sobject.type", "${topic}");
        props.put("salesforce.operation", "UPSERT");
        props.put("salesforce.external.id.field", "ExternalId__c");
        assertEquals(Map.of(), errors(props));
        assertEquals("${topic}", new SalesforceSinkConfig(props).getString("salesforce.sobject.type"));
        props.put("salesforce.batch.size", "500");
        assertOnlyErrorOn("salesforce.batch.size", props);
        props.remove("salesforce.batch.size");
        for (String bad : new String[] {"${topic", "crm.Contact", "${other}"}) {
            props.put("salesforce.sobject.type", bad);
            assertOnlyErrorOn("salesforce.sobject.type", props);
        }
    }

    @Test
    void idempotencyFieldIsNativeIdModeOnlyAndCheckedOnItsKey() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.idempotency.field", "Kafka_Coordinates__c");
        assertEquals(Map.of(), errors(props));
        assertEquals("Kafka_Coordinates__c", new SalesforceSinkConfig(props).nativeSettings().get("salesforce.idempotency.field"));
        props.put("salesforce.idempotency.field", "not a name");
        assertOnlyErrorOn("salesforce.idempotency.field", props);
        props.put("salesforce.idempotency.field", "Kafka_Coordinates__c");
        props.put("salesforce.external.id.field", "ExternalId__c");
        assertOnlyErrorOn("salesforce.idempotency.field", props);
        assertThrows(ConfigException.class, () -> new SalesforceSinkConfig(props));
        props.remove("salesforce.external.id.field");
        props.put("salesforce.external.id.field.map", "Contact:ExternalId__c");
        assertOnlyErrorOn("salesforce.idempotency.field", props);
        props.remove("salesforce.idempotency.field");
        assertFalse(new SalesforceSinkConfig(props).nativeSettings().containsKey("salesforce.idempotency.field"));
    }

    @Test
    void externalIdFieldMapIsCheckedOnItsKeyAndEnablesUpsert() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.sobject.type", "${topic}");
        props.put("salesforce.operation", "UPSERT");
        assertOnlyErrorOn("salesforce.operation", props);
        props.put("salesforce.external.id.field.map", "Contact:ExternalId__c, Account:AccountNumber__c");
        assertEquals(Map.of(), errors(props));
        assertEquals("Contact:ExternalId__c,Account:AccountNumber__c",
                new SalesforceSinkConfig(props).nativeSettings().get("salesforce.external.id.field.map").toString()
                        .replace("[", "").replace("]", "").replace(" ", ""));
        for (String bad : new String[] {"Contact", "Contact:", ":ExternalId__c", "crm.Contact:Ext__c",
                "Contact:A__c,contact:B__c"}) {
            props.put("salesforce.external.id.field.map", bad);
            assertOnlyErrorOn("salesforce.external.id.field.map", props);
        }
    }

    @Test
    void operationHeaderMappingIsCheckedOnItsKey() {
        Map<String, String> props = clientCredentials();
        props.put("salesforce.operation.header.enabled", "true");
        props.put("salesforce.operation.header.mapping", " c:UPSERT, r:upsert,U:Update ,d:DELETE");
        assertEquals(Map.of(), errors(props));
        for (String bad : new String[] {"c", "c:MERGE", ":UPSERT", "c:UPSERT,C:DELETE"}) {
            props.put("salesforce.operation.header.mapping", bad);
            assertOnlyErrorOn("salesforce.operation.header.mapping", props);
        }
    }

    @Test
    void missingRequiredKeysAreReportedOnceEach() {
        Map<String, List<String>> errors = errors(Map.of("name", "sf"));
        assertEquals(Set.of("salesforce.instance.url", "salesforce.client.id", "salesforce.auth.type",
                "salesforce.sobject.type"), errors.keySet());
        errors.values().forEach(messages -> assertEquals(1, messages.size(), messages.toString()));
    }

    @Test
    void passwordsNeverAppearInToString() {
        Map<String, String> props = jwt();
        props.put("salesforce.client.secret", "AF97355FC3615CF9FA4EB7BF");
        SalesforceSinkConfig config = new SalesforceSinkConfig(props);
        String text = config.toString();
        assertFalse(text.contains("AF97355FC3615CF9FA4EB7BF"), text);
        assertFalse(text.contains("BEGIN PRIVATE KEY"), text);
        assertFalse(text.contains(TestKeys.PEM.substring(40, 80)), text);
        assertTrue(text.contains("salesforce.client.secret=[hidden]"), text);
    }

    @Test
    void everyKeyIsDeclaredWithGroupDocAndDisplayName() {
        ConfigDef def = SalesforceSinkConfig.configDef();
        Set<String> expected = Set.of("salesforce.instance.url", "salesforce.client.id", "salesforce.auth.type",
                "salesforce.client.secret", "salesforce.jwt.private.key", "salesforce.jwt.username",
                "salesforce.jwt.audience", "salesforce.api.version", "salesforce.request.timeout.ms",
                "salesforce.sobject.type", "salesforce.operation", "salesforce.external.id.field",
                "salesforce.external.id.field.map", "salesforce.idempotency.field",
                "salesforce.operation.header.enabled", "salesforce.operation.header.name",
                "salesforce.operation.header.mapping", "salesforce.tombstone.delete", "salesforce.retry.max.attempts",
                "salesforce.retry.initial.backoff.ms", "salesforce.retry.max.backoff.ms",
                "salesforce.startup.validation.enabled", "salesforce.compression.enabled", "salesforce.write.mode",
                "salesforce.batch.size", "salesforce.max.in.flight.requests", "salesforce.null.fields",
                "salesforce.linger.ms", "salesforce.max.buffered.records", "salesforce.coalesce.updates",
                "salesforce.api.quota.check.interval.ms", "salesforce.api.quota.reserve.percent",
                "salesforce.bulk.threshold", "salesforce.bulk.max.records.per.job", "salesforce.bulk.linger.ms",
                "salesforce.bulk.poll.interval.ms", "salesforce.bulk.hard.delete", "salesforce.bulk.job.timeout.ms",
                "salesforce.delete.missing", "salesforce.proxy.url",
                "salesforce.proxy.username", "salesforce.proxy.password", "salesforce.ssl.ca.pem",
                "salesforce.ssl.truststore.path", "salesforce.ssl.truststore.password",
                "salesforce.sobject.allowed",
                "salesforce.retry.max.duration.ms", "salesforce.health.stall.threshold.ms");
        assertEquals(expected, def.names());
        Set<String> groups = Set.of("Authentication", "Connection", "SObject Mapping", "Error Handling and Retries",
                "Advanced", "Bulk API 2.0");
        for (ConfigDef.ConfigKey key : def.configKeys().values()) {
            assertTrue(groups.contains(key.group), key.name);
            assertNotNull(key.documentation, key.name);
            assertNotNull(key.displayName, key.name);
            assertTrue(key.orderInGroup > 0, key.name);
        }
        assertEquals(ConfigDef.Type.PASSWORD, def.configKeys().get("salesforce.client.secret").type);
        assertEquals(ConfigDef.Type.PASSWORD, def.configKeys().get("salesforce.jwt.private.key").type);
    }

    @Test
    void nativeSettingsNormalizeEnumsAndPemAndLeaveOutUnsetKeys() {
        Map<String, String> props = jwt();
        props.put("salesforce.operation", "update");
        Map<String, Object> settings = new SalesforceSinkConfig(props).nativeSettings();
        assertEquals("UPDATE", settings.get("salesforce.operation"));
        assertEquals("JWT_BEARER", settings.get("salesforce.auth.type"));
        assertFalse(settings.containsKey("salesforce.client.secret"));
        assertFalse(settings.containsKey("salesforce.external.id.field"));
        String pem = ((org.apache.kafka.common.config.types.Password) settings.get("salesforce.jwt.private.key"))
                .value();
        assertFalse(pem.contains("\\n"));
        assertTrue(pem.startsWith("-----BEGIN PRIVATE KEY-----\n"));
        assertTrue(settings.keySet().stream().noneMatch(k -> k.contains(".test.")), settings.keySet().toString());
    }
}
