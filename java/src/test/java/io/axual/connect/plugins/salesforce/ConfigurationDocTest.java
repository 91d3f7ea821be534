package io.axual.connect.plugins.salesforce;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.types.Password;
import org.junit.jupiter.api.Test;

/**
 * docs/configuration.md is generated from the ConfigDef, so the key reference can never drift
 * from the code. When a key changes, regenerate it:
 * {@code mvn -B -q test -Dtest=ConfigurationDocTest -Ddocs.regenerate=true} (from the repository root).
 */
class ConfigurationDocTest {
    private static final Path DOC = Paths.get(System.getProperty("user.dir")).resolveSibling("docs").resolve("configuration.md");

    @Test
    void configurationReferenceMatchesTheConfigDef() throws IOException {
        String expected = render(SalesforceSinkConfig.configDef());
        if (Boolean.getBoolean("docs.regenerate")) {
            Files.createDirectories(DOC.getParent());
            Files.write(DOC, expected.getBytes(StandardCharsets.UTF_8));
        }
        String actual = Files.exists(DOC) ? new String(Files.readAllBytes(DOC), StandardCharsets.UTF_8) : "(missing)";
        assertEquals(expected, actual, DOC + " differs from the ConfigDef; regenerate it with "
                + "`mvn -B -q test -Dtest=ConfigurationDocTest -Ddocs.regenerate=true`");
    }

    /** The keys of the original connector (SPEC §1's first table); every other key is new here. */
    static final List<String> ORIGINAL_KEYS = List.of("salesforce.instance.url", "salesforce.client.id",
            "salesforce.auth.type", "salesforce.client.secret", "salesforce.jwt.private.key", "salesforce.jwt.username",
            "salesforce.jwt.audience", "salesforce.api.version", "salesforce.request.timeout.ms", "salesforce.sobject.type",
            "salesforce.operation", "salesforce.external.id.field", "salesforce.operation.header.enabled",
            "salesforce.operation.header.name", "salesforce.tombstone.delete", "salesforce.retry.max.attempts",
            "salesforce.retry.initial.backoff.ms", "salesforce.retry.max.backoff.ms",
            "salesforce.startup.validation.enabled", "salesforce.compression.enabled");

    static String render(ConfigDef def) {
        Map<String, List<ConfigDef.ConfigKey>> groups = new LinkedHashMap<>();
        for (String group : def.groups()) {
            groups.put(group, new ArrayList<>());
        }
        for (ConfigDef.ConfigKey key : def.configKeys().values()) {
            groups.computeIfAbsent(key.group == null ? "Other" : key.group, g -> new ArrayList<>()).add(key);
        }
        StringBuilder out = new StringBuilder();
        out.append("# Configuration reference\n\n")
                .append("<!-- Generated from SalesforceSinkConfig's ConfigDef by ConfigurationDocTest; do not edit by hand.\n")
                .append("     Regenerate: mvn -B -q test -Dtest=ConfigurationDocTest -Ddocs.regenerate=true -->\n\n")
                .append("Every key of the connector, as the Connect REST API's validate endpoint knows it (groups, types, ")
                .append("defaults, valid values). Keys of type `password` are secrets: Connect hides their values in its ")
                .append("REST API and logs; give them through a config provider (e.g. `${file:...}` or `${vault:...}`).\n")
                .append("Any other `salesforce.*` key is reported as unknown by the validate endpoint.\n\n");
        for (Map.Entry<String, List<ConfigDef.ConfigKey>> group : groups.entrySet()) {
            if (group.getValue().isEmpty()) {
                continue;
            }
            out.append("- [").append(group.getKey()).append("](#").append(anchor(group.getKey())).append(")\n");
        }
        out.append("- [Keys added since the original connector](#keys-added-since-the-original-connector)\n");
        for (Map.Entry<String, List<ConfigDef.ConfigKey>> group : groups.entrySet()) {
            List<ConfigDef.ConfigKey> keys = group.getValue();
            if (keys.isEmpty()) {
                continue;
            }
            keys.sort((a, b) -> Integer.compare(a.orderInGroup, b.orderInGroup));
            out.append("\n## ").append(group.getKey()).append("\n\n")
                    .append("| key | type | default | valid values | importance |\n|---|---|---|---|---|\n");
            for (ConfigDef.ConfigKey key : keys) {
                out.append("| `").append(key.name).append("` | ").append(key.type.name().toLowerCase(java.util.Locale.ROOT))
                        .append(" | ").append(cell(defaultText(key))).append(" | ")
                        .append(cell(key.validator == null ? "" : key.validator.toString())).append(" | ")
                        .append(key.importance.name().toLowerCase(java.util.Locale.ROOT)).append(" |\n");
            }
            out.append('\n');
            for (ConfigDef.ConfigKey key : keys) {
                out.append("- **`").append(key.name).append("`** — ").append(key.documentation.trim()).append('\n');
            }
        }
        out.append("\n## Keys added since the original connector\n\n")
                .append("The original connector's keys keep their meaning; these are new, and each default keeps an ")
                .append("upgraded connector working without them:\n\n");
        for (ConfigDef.ConfigKey key : def.configKeys().values()) {
            if (!ORIGINAL_KEYS.contains(key.name)) {
                String text = defaultText(key);
                out.append("- `").append(key.name).append("` (").append(text.equals("—") ? "no default" : "default " + text)
                        .append(")\n");
            }
        }
        return out.toString();
    }

    private static String defaultText(ConfigDef.ConfigKey key) {
        if (!key.hasDefault()) {
            return "required";
        }
        Object value = key.defaultValue;
        if (value == null) {
            return "—";
        }
        if (value instanceof Password) {
            return "—";
        }
        if (value instanceof List) {
            List<?> list = (List<?>) value;
            return list.isEmpty() ? "—" : String.join(",", list.stream().map(String::valueOf).toArray(String[]::new));
        }
        String text = String.valueOf(value);
        return text.isEmpty() ? "\"\"" : "`" + text + "`";
    }

    private static String cell(String text) {
        return text.replace("|", "\\|").replace("\n", " ");
    }

    private static String anchor(String heading) {
        return heading.toLowerCase(java.util.Locale.ROOT).replaceAll("[^a-z0-9 -]", "").replace(' ', '-');
    }
}
