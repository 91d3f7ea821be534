package io.axual.connect.plugins.salesforce.health;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.axual.connect.plugins.salesforce.Version;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.container.ContainerResponseContext;
import jakarta.ws.rs.container.ContainerResponseFilter;
import jakarta.ws.rs.core.PathSegment;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.rest.ConnectRestExtension;
import org.apache.kafka.connect.rest.ConnectRestExtensionContext;

/**
 * Optional: adds each Salesforce sink task's health to {@code GET /connectors/{name}/status}.
 * Enable it on the worker with
 * {@code rest.extension.classes=io.axual.connect.plugins.salesforce.health.SalesforceHealthRestExtension}
 * (the class is found on {@code plugin.path}). Each task of the answer that runs in this worker
 * gets a {@code "salesforce"} object: {@code state} (OK, QUOTA_RESERVE, SALESFORCE_UNAVAILABLE),
 * {@code message} (what holds it back and what to do) and {@code since} (ISO-8601). Connect's status
 * API has no message for RUNNING tasks; this is how held-back tasks say why without failing.
 *
 * <p>Built against Jakarta JAX-RS (Kafka 4.0+ workers). The connector itself never needs it.
 */
public class SalesforceHealthRestExtension implements ConnectRestExtension {

    @Override
    public void configure(Map<String, ?> configs) {
    }

    @Override
    public void register(ConnectRestExtensionContext context) {
        context.configurable().register(new StatusFilter());
    }

    @Override
    public void close() {
    }

    @Override
    public String version() {
        return Version.get();
    }

    /** Enriches the answers of {@code GET /connectors/{name}/status}. */
    public static final class StatusFilter implements ContainerResponseFilter {
        private static final ObjectMapper MAPPER = new ObjectMapper();

        @Override
        public void filter(ContainerRequestContext request, ContainerResponseContext response) {
            if (!"GET".equals(request.getMethod()) || response.getStatus() != 200 || !response.hasEntity()) {
                return;
            }
            List<PathSegment> path = request.getUriInfo().getPathSegments();
            if (path.size() != 3 || !"connectors".equals(path.get(0).getPath())
                    || !"status".equals(path.get(2).getPath())) {
                return;
            }
            Map<Integer, TaskHealthRegistry.Health> health = TaskHealthRegistry.of(path.get(1).getPath());
            if (health.isEmpty()) {
                return;
            }
            try {
                JsonNode status = MAPPER.valueToTree(response.getEntity());
                if (enrich(status, health)) {
                    response.setEntity(status);
                }
            } catch (RuntimeException e) {
                // Never break the status API: without the extra object the answer is Connect's own.
            }
        }

        /** Adds {@code "salesforce"} to the tasks of {@code status} that {@code health} knows. */
        static boolean enrich(JsonNode status, Map<Integer, TaskHealthRegistry.Health> health) {
            JsonNode tasks = status.get("tasks");
            if (tasks == null || !tasks.isArray()) {
                return false;
            }
            boolean changed = false;
            for (JsonNode task : tasks) {
                TaskHealthRegistry.Health h = task.has("id") ? health.get(task.get("id").asInt()) : null;
                if (h != null && task instanceof ObjectNode) {
                    ObjectNode salesforce = ((ObjectNode) task).putObject("salesforce");
                    salesforce.put("state", h.state);
                    salesforce.put("message", h.message);
                    salesforce.put("since", Instant.ofEpochMilli(h.sinceEpochMs).toString());
                    changed = true;
                }
            }
            return changed;
        }
    }
}
