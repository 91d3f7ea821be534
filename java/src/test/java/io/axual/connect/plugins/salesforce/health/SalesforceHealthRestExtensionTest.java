package io.axual.connect.plugins.salesforce.health;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.axual.connect.plugins.salesforce.health.SalesforceHealthRestExtension.StatusFilter;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SalesforceHealthRestExtensionTest {
    @Test
    void onlyPlainHostPortWorkerIdsAreAsked() {
        for (String ok : new String[] {"127.0.0.1:8083", "connect-1.internal:8083", "[::1]:8083", "w_2:1"}) {
            assertTrue(SalesforceHealthRestExtension.isPlainWorkerId(ok), ok);
        }
        for (String bad : new String[] {"evil.example/steal?x=", "user:pw@host:8083", "host:8083/path", "host",
                "host:0", "host:99999", "host:80#frag", "", "-host:1", "http://host:8083", "host:8083\n"}) {
            assertFalse(SalesforceHealthRestExtension.isPlainWorkerId(bad), bad);
        }
    }

    @Test
    void theRestSchemeIsTheWorkersOwn() {
        assertEquals("http", SalesforceHealthRestExtension.restScheme(Map.of()));
        assertEquals("https", SalesforceHealthRestExtension.restScheme(Map.of("listeners", "https://0.0.0.0:8443")));
        assertEquals("http", SalesforceHealthRestExtension.restScheme(
                Map.of("listeners", "https://0.0.0.0:8443,http://0.0.0.0:8083")));
        assertEquals("https", SalesforceHealthRestExtension.restScheme(
                Map.of("listeners", List.of("http://0.0.0.0:8083", "https://0.0.0.0:8443"),
                        "rest.advertised.listener", "HTTPS")));
    }

    @Test
    void onlyThisPluginsConnectorsAreEnriched() {
        assertTrue(StatusFilter.isOurs("io.axual.connect.plugins.salesforce.SalesforceSinkConnector"));
        assertTrue(StatusFilter.isOurs("SalesforceSinkConnector"));
        assertTrue(StatusFilter.isOurs("SalesforceSink"));
        assertFalse(StatusFilter.isOurs("org.apache.kafka.connect.file.FileStreamSinkConnector"));
        assertFalse(StatusFilter.isOurs(null));
    }
}
