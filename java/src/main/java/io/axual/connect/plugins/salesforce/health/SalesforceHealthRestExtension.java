package io.axual.connect.plugins.salesforce.health;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.axual.connect.plugins.salesforce.Version;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.container.ContainerResponseContext;
import jakarta.ws.rs.container.ContainerResponseFilter;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.PathSegment;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.rest.ConnectRestExtension;
import org.apache.kafka.connect.rest.ConnectRestExtensionContext;

/**
 * Optional: adds each Salesforce sink task's health to {@code GET /connectors/{name}/status}.
 * Enable it on the worker with
 * {@code rest.extension.classes=io.axual.connect.plugins.salesforce.health.SalesforceHealthRestExtension}
 * (the class is found on {@code plugin.path}). Each task of the answer that runs in this worker
 * gets a {@code "salesforce"} object: {@code state} (OK, QUOTA_RESERVE, SALESFORCE_UNAVAILABLE, STALLED),
 * {@code message} (what holds it back and what to do) and {@code since} (ISO-8601). Connect's status
 * API has no message for RUNNING tasks; this is how held-back tasks say why without failing.
 *
 * <p>A task running in another worker of the cluster is asked for at that worker
 * ({@code GET /salesforce-health/{connector}}, the resource this extension also registers, at the
 * task's {@code worker_id}, 2 s at most); a worker without the extension, or one that cannot be
 * reached, simply leaves the task without the object.
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
        context.configurable().register(new HealthResource());
    }

    @Override
    public void close() {
    }

    @Override
    public String version() {
        return Version.get();
    }

    /** {@code GET /salesforce-health/{connector}}: the health of the connector's tasks in this worker. */
    @Path("/salesforce-health")
    public static final class HealthResource {
        @GET
        @Path("/{connector}")
        @Produces(MediaType.APPLICATION_JSON)
        public Map<String, Map<String, Object>> health(@PathParam("connector") String connector) {
            Map<String, Map<String, Object>> out = new LinkedHashMap<>();
            TaskHealthRegistry.of(connector).forEach((task, h) -> out.put(Integer.toString(task), asJson(h)));
            return out;
        }
    }

    static Map<String, Object> asJson(TaskHealthRegistry.Health h) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("state", h.state);
        out.put("message", h.message);
        out.put("since", Instant.ofEpochMilli(h.sinceEpochMs).toString());
        return out;
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
            String connector = path.get(1).getPath();
            try {
                JsonNode status = MAPPER.valueToTree(response.getEntity());
                Map<Integer, TaskHealthRegistry.Health> health = new HashMap<>(TaskHealthRegistry.of(connector));
                askOtherWorkers(status, connector, health, request.getUriInfo().getBaseUri().getScheme());
                if (enrich(status, health)) {
                    response.setEntity(status);
                }
            } catch (RuntimeException e) {
                // Never break the status API: without the extra object the answer is Connect's own.
            }
        }

        /** Fills in the health of running tasks that this worker does not run, from their workers. */
        private static void askOtherWorkers(JsonNode status, String connector,
                Map<Integer, TaskHealthRegistry.Health> health, String scheme) {
            JsonNode tasks = status.get("tasks");
            if (tasks == null || !tasks.isArray()) {
                return;
            }
            Map<String, JsonNode> answers = new HashMap<>();
            for (JsonNode task : tasks) {
                int id = task.path("id").asInt(-1);
                String worker = task.path("worker_id").asText("");
                if (id < 0 || health.containsKey(id) || worker.isEmpty() || !"RUNNING".equals(task.path("state").asText())) {
                    continue;
                }
                JsonNode answer = answers.computeIfAbsent(worker, w -> fetch(scheme, w, connector));
                JsonNode h = answer == null ? null : answer.get(Integer.toString(id));
                if (h != null && h.has("state")) {
                    long since;
                    try {
                        since = Instant.parse(h.path("since").asText()).toEpochMilli();
                    } catch (RuntimeException e) {
                        since = 0;
                    }
                    health.put(id, new TaskHealthRegistry.Health(h.path("state").asText(), h.path("message").asText(),
                            since));
                }
            }
        }

        private static JsonNode fetch(String scheme, String worker, String connector) {
            try {
                URI uri = URI.create(scheme + "://" + worker + "/salesforce-health/"
                        + URLEncoder.encode(connector, StandardCharsets.UTF_8.name()).replace("+", "%20"));
                HttpURLConnection http = (HttpURLConnection) uri.toURL().openConnection();
                http.setConnectTimeout(2_000);
                http.setReadTimeout(2_000);
                http.setRequestProperty("Accept", "application/json");
                try (InputStream in = http.getInputStream()) {
                    return http.getResponseCode() == 200 ? MAPPER.readTree(in) : null;
                } finally {
                    http.disconnect();
                }
            } catch (Exception e) {
                return null; // no extension there, not reachable, or secured: Connect's answer as is
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
                    ((ObjectNode) task).set("salesforce", MAPPER.valueToTree(asJson(h)));
                    changed = true;
                }
            }
            return changed;
        }
    }
}
