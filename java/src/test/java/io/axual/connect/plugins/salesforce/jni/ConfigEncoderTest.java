package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.kafka.common.config.types.Password;
import org.junit.jupiter.api.Test;

class ConfigEncoderTest {
    @Test
    void encodesSalesforceKeysInClearPlusNameAndTaskId() {
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("salesforce.client.secret", new Password("s3cr3t-ü"));
        settings.put("salesforce.compression.enabled", Boolean.TRUE);
        settings.put("salesforce.tombstone.delete", Boolean.FALSE);
        settings.put("salesforce.batch.size", 200);
        settings.put("salesforce.external.id.field", null);
        settings.put("errors.tolerance", "all");

        Map<String, String> decoded = ReferenceDecoder.decodeConfig(ConfigEncoder.encode(settings, "my-sink", "2"));

        Map<String, String> expected = new LinkedHashMap<>();
        expected.put("salesforce.client.secret", "s3cr3t-ü");
        expected.put("salesforce.compression.enabled", "true");
        expected.put("salesforce.tombstone.delete", "false");
        expected.put("salesforce.batch.size", "200");
        expected.put("connector.name", "my-sink");
        expected.put("task.id", "2");
        assertEquals(expected, decoded);
        assertFalse(decoded.containsKey("errors.tolerance"));
    }
}
