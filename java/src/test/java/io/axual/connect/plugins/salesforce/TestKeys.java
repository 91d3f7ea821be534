package io.axual.connect.plugins.salesforce;

import java.security.KeyPairGenerator;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;

/** A real 2048-bit RSA key in PEM PKCS#8 form, generated once per test JVM. */
final class TestKeys {
    static final String PEM = generate();

    private TestKeys() {
    }

    private static String generate() {
        try {
            KeyPairGenerator generator = KeyPairGenerator.getInstance("RSA");
            generator.initialize(2048);
            byte[] pkcs8 = generator.generateKeyPair().getPrivate().getEncoded();
            String body = Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(pkcs8);
            return "-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\n";
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
    }

    /** The PEM as in the seed's JSON examples: line breaks as the two characters backslash-n. */
    static String escaped() {
        return PEM.replace("\n", "\\n");
    }
}
