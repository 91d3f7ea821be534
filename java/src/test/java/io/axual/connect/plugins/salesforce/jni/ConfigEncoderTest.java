package io.axual.connect.plugins.salesforce.jni;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

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

    @Test
    void theWriterThatHeldTheSecretsIsZeroedAfterEncoding() {
        Map<String, Object> settings = new LinkedHashMap<>();
        // Long enough that the writer grows: the arrays it drops on the way are zeroed too.
        settings.put("salesforce.jwt.private.key", new Password("-----BEGIN PRIVATE KEY-----" + "k".repeat(5000)));
        WireWriter writer = WireWriter.forSecrets(64);
        byte[] first = writer.buffer();

        byte[] encoded = ConfigEncoder.encode(settings, "my-sink", "0", -1, writer);

        assertEquals(new String(new Password("-----BEGIN PRIVATE KEY-----" + "k".repeat(5000)).value()),
                ReferenceDecoder.decodeConfig(encoded).get("salesforce.jwt.private.key"));
        assertTrue(writer.buffer() != first && writer.buffer().length > 5000);
        assertZeroed(first);
        assertZeroed(writer.buffer());
    }

    private static void assertZeroed(byte[] array) {
        for (int i = 0; i < array.length; i++) {
            assertEquals(0, array[i], "byte " + i + " of " + array.length + " still holds config data");
        }
    }
}
