package io.axual.connect.plugins.salesforce;

import java.io.File;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.util.Base64;
import java.util.Collections;
import org.apache.kafka.common.config.ConfigException;

/** Reads the certificates of a PKCS12 or JKS trust store as PEM, the form the native HTTP client takes. */
final class TrustStorePem {
    private TrustStorePem() {
    }

    static String read(String path, String password) {
        try {
            // getInstance(File, char[]) detects PKCS12 and JKS by content.
            KeyStore store = KeyStore.getInstance(new File(path), password == null ? null : password.toCharArray());
            StringBuilder pem = new StringBuilder();
            Base64.Encoder base64 = Base64.getMimeEncoder(64, new byte[] {'\n'});
            for (String alias : Collections.list(store.aliases())) {
                Certificate cert = store.getCertificate(alias);
                if (cert != null) {
                    pem.append("-----BEGIN CERTIFICATE-----\n")
                            .append(base64.encodeToString(cert.getEncoded()))
                            .append("\n-----END CERTIFICATE-----\n");
                }
            }
            if (pem.length() == 0) {
                throw new ConfigException(SalesforceSinkConfig.SSL_TRUSTSTORE_PATH, path, "holds no certificates");
            }
            return pem.toString();
        } catch (ConfigException e) {
            throw e;
        } catch (Exception e) {
            throw new ConfigException(SalesforceSinkConfig.SSL_TRUSTSTORE_PATH, path,
                    "cannot be read as a PKCS12 or JKS trust store: " + e.getMessage());
        }
    }
}
