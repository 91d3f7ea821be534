package io.axual.connect.plugins.salesforce.health;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.axual.connect.plugins.salesforce.SalesforceSinkConnector;
import io.axual.connect.plugins.salesforce.Version;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.container.ContainerResponseContext;
import jakarta.ws.rs.container.ContainerResponseFilter;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.PathSegment;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import org.apache.kafka.connect.health.ConnectClusterState;
import org.apache.kafka.connect.rest.ConnectRestExtension;
import org.apache.kafka.connect.rest.ConnectRestExtensionContext;

/**
 * Optional: adds each Salesforce sink task's health to {@code GET /connectors/{name}/status}.
 * Enable it on the worker with
 * {@code rest.extension.classes=io.axual.connect.plugins.salesforce.health.SalesforceHealthRestExtension}
 * (the class is found on {@code plugin.path}). Each task of the answer gets a {@code "salesforce"}
 * object: {@code state} (OK, QUOTA_RESERVE, SALESFORCE_UNAVAILABLE, STALLED, or UNKNOWN when its
 * worker could not tell), {@code message} (what holds it back and what to do) and {@code since}
 * (ISO-8601). Connect's status API has no message for RUNNING tasks; this is how held-back tasks
 * say why without failing.
 *
 * <p>What it exposes, and to whom: the task health of connectors of this plugin's class only
 * (other connectors' answers are left alone), to whoever may call the worker's status API; the
 * worker's own REST security (e.g. {@code BasicAuthSecurityRestExtension}) guards both the status
 * API and {@code GET /salesforce-health/{connector}}. Health messages hold no secrets.
 *
 * <p>A task running in another worker of the cluster is asked for at that worker
 * ({@code GET /salesforce-health/{connector}} at the task's {@code worker_id}), as Connect itself
 * forwards requests: over the worker's own REST scheme ({@code rest.advertised.listener}, else
 * the {@code listeners}; https trusts the worker's {@code listeners.https.ssl.truststore.*} or
 * {@code ssl.truststore.*}), with the incoming request's {@code Authorization} header (what Connect's
 * {@code RestClient} does for requests it forwards to the leader), never following a redirect, and
 * only to a {@code worker_id} that is a plain {@code host:port}. All workers are asked in parallel
 * within one deadline of {@value #PEER_DEADLINE_MS} ms, answers of at most {@value #MAX_ANSWER_BYTES}
 * bytes are kept for {@value #CACHE_MS} ms; a worker that does not answer in time leaves its
 * tasks {@code UNKNOWN} with the reason.
 *
 * <p>Built against Jakarta JAX-RS (Kafka 4.0+ workers). The connector itself never needs it.
 */
public class SalesforceHealthRestExtension implements ConnectRestExtension {
    static final long PEER_DEADLINE_MS = 1500;
    static final int MAX_ANSWER_BYTES = 64 * 1024;
    static final long CACHE_MS = 3000;
    static final String UNKNOWN = "UNKNOWN";
    private static final ObjectMapper MAPPER = new ObjectMapper();
    /** {@code host:port} or {@code [v6]:port}: nothing that could add a path, user info or query. */
    private static final Pattern WORKER_ID =
            Pattern.compile("(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\\[[0-9A-Fa-f:.]{2,45}\\]):([0-9]{1,5})");

    private volatile Peers peers = new Peers("http", null, HttpClient.newBuilder());

    @Override
    public void configure(Map<String, ?> workerConfig) {
        String scheme = restScheme(workerConfig);
        HttpClient.Builder client = HttpClient.newBuilder();
        if ("https".equals(scheme)) {
            SSLContext ssl = sslContext(workerConfig);
            if (ssl != null) {
                client.sslContext(ssl);
            }
        }
        peers = new Peers(scheme, advertisedWorkerId(workerConfig), client);
    }

    @Override
    public void register(ConnectRestExtensionContext context) {
        ConnectClusterState cluster = context.clusterState();
        context.configurable().register(new StatusFilter(cluster, peers));
        context.configurable().register(new HealthResource());
    }

    @Override
    public void close() {
    }

    @Override
    public String version() {
        return Version.get();
    }

    /** The scheme other workers' REST APIs speak, as Connect's RestServer advertises its own. */
    static String restScheme(Map<String, ?> workerConfig) {
        Object advertised = workerConfig.get("rest.advertised.listener");
        if (advertised != null && !advertised.toString().isBlank()) {
            return advertised.toString().trim().toLowerCase(Locale.ROOT);
        }
        Object listeners = workerConfig.get("listeners");
        List<String> entries = new ArrayList<>();
        if (listeners instanceof List) {
            ((List<?>) listeners).forEach(l -> entries.add(l.toString().trim().toLowerCase(Locale.ROOT)));
        } else if (listeners != null) {
            Arrays.stream(listeners.toString().split(",")).forEach(l -> entries.add(l.trim().toLowerCase(Locale.ROOT)));
        }
        // Connect advertises http when it listens on http at all, https when it listens on https only.
        if (entries.isEmpty() || entries.stream().anyMatch(l -> l.startsWith("http://"))) {
            return "http";
        }
        return entries.stream().anyMatch(l -> l.startsWith("https://")) ? "https" : "http";
    }

    /** {@code rest.advertised.host.name:rest.advertised.port}, when the worker config names both. */
    private static String advertisedWorkerId(Map<String, ?> workerConfig) {
        Object host = workerConfig.get("rest.advertised.host.name");
        Object port = workerConfig.get("rest.advertised.port");
        return host == null || port == null ? null : host + ":" + port;
    }

    /** The trust store the worker's REST client would use, or null for the JVM's default. */
    private static SSLContext sslContext(Map<String, ?> workerConfig) {
        String prefix = workerConfig.keySet().stream().anyMatch(k -> k.startsWith("listeners.https."))
                ? "listeners.https." : "";
        Object location = workerConfig.get(prefix + "ssl.truststore.location");
        if (location == null || location.toString().isBlank()) {
            return null;
        }
        Object type = workerConfig.get(prefix + "ssl.truststore.type");
        Object password = workerConfig.get(prefix + "ssl.truststore.password");
        String secret = password instanceof org.apache.kafka.common.config.types.Password
                ? ((org.apache.kafka.common.config.types.Password) password).value()
                : password == null ? null : password.toString();
        try (InputStream in = Files.newInputStream(Paths.get(location.toString()))) {
            KeyStore store = KeyStore.getInstance(type == null ? KeyStore.getDefaultType() : type.toString());
            store.load(in, secret == null ? null : secret.toCharArray());
            TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trust.init(store);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(null, trust.getTrustManagers(), null);
            return context;
        } catch (Exception e) {
            return null; // the JVM's default trust: peers with a private CA then stay UNKNOWN
        }
    }

    /** Whether {@code workerId} from the status topic is a plain {@code host:port}. */
    static boolean isPlainWorkerId(String workerId) {
        var m = WORKER_ID.matcher(workerId);
        if (!m.matches()) {
            return false;
        }
        int port = Integer.parseInt(m.group(1));
        return port > 0 && port <= 65535;
    }

    /** {@code GET /salesforce-health/{connector}}: the health of the connector's tasks in this worker. */
    @Path("/salesforce-health")
    public static final class HealthResource {
        @GET
        @Path("/{connector}")
        @Produces(MediaType.APPLICATION_JSON)
        public Map<String, Map<String, Object>> health(@PathParam("connector") String connector) {
            // Only tasks of this plugin register health: other connectors get an empty answer.
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

    /** Asks other workers for their tasks' health: in parallel, bounded, cached briefly. */
    static final class Peers {
        private final String scheme;
        private final String ownWorkerId;
        private final HttpClient http;
        private final Map<String, Cached> cache = new ConcurrentHashMap<>();

        Peers(String scheme, String ownWorkerId, HttpClient.Builder client) {
            this.scheme = scheme;
            this.ownWorkerId = ownWorkerId;
            this.http = client.followRedirects(HttpClient.Redirect.NEVER)
                    .connectTimeout(Duration.ofMillis(PEER_DEADLINE_MS)).build();
        }

        private static final class Cached {
            final long at;
            final CompletableFuture<JsonNode> answer;

            Cached(long at, CompletableFuture<JsonNode> answer) {
                this.at = at;
                this.answer = answer;
            }
        }

        /** Each worker's answer, or the reason there is none, within one deadline. */
        Map<String, Object> ask(List<String> workers, String connector, String authorization) {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PEER_DEADLINE_MS);
            Map<String, CompletableFuture<JsonNode>> pending = new LinkedHashMap<>();
            for (String worker : workers) {
                pending.put(worker, answer(worker, connector, authorization));
            }
            Map<String, Object> answers = new HashMap<>();
            for (Map.Entry<String, CompletableFuture<JsonNode>> e : pending.entrySet()) {
                long left = Math.max(0, deadline - System.nanoTime());
                try {
                    answers.put(e.getKey(), e.getValue().get(left, TimeUnit.NANOSECONDS));
                } catch (java.util.concurrent.TimeoutException t) {
                    answers.put(e.getKey(), "worker " + e.getKey() + " did not answer within " + PEER_DEADLINE_MS + " ms");
                } catch (Exception failed) {
                    Throwable cause = failed.getCause() == null ? failed : failed.getCause();
                    answers.put(e.getKey(), "worker " + e.getKey() + " could not tell: " + cause.getMessage());
                }
            }
            return answers;
        }

        private CompletableFuture<JsonNode> answer(String worker, String connector, String authorization) {
            long now = System.currentTimeMillis();
            // The caller's credentials (as a digest: none are kept) are part of the key, so one
            // caller's answer is never served to another.
            String key = worker + '\0' + connector + '\0' + digest(authorization);
            Cached cached = cache.get(key);
            if (cached != null && now - cached.at < CACHE_MS) {
                return cached.answer;
            }
            cache.values().removeIf(c -> now - c.at >= CACHE_MS);
            CompletableFuture<JsonNode> answer = fetch(worker, connector, authorization);
            cache.put(key, new Cached(now, answer));
            return answer;
        }

        private static String digest(String authorization) {
            if (authorization == null) {
                return "";
            }
            try {
                byte[] hash = java.security.MessageDigest.getInstance("SHA-256")
                        .digest(authorization.getBytes(StandardCharsets.UTF_8));
                return java.util.Base64.getEncoder().encodeToString(hash);
            } catch (java.security.NoSuchAlgorithmException e) {
                throw new IllegalStateException(e); // every JVM has SHA-256
            }
        }

        private CompletableFuture<JsonNode> fetch(String worker, String connector, String authorization) {
            URI uri = URI.create(scheme + "://" + worker + "/salesforce-health/"
                    + URLEncoder.encode(connector, StandardCharsets.UTF_8).replace("+", "%20"));
            HttpRequest.Builder request = HttpRequest.newBuilder(uri).GET()
                    .timeout(Duration.ofMillis(PEER_DEADLINE_MS)).header("Accept", "application/json");
            if (authorization != null) {
                request.header(HttpHeaders.AUTHORIZATION, authorization);
            }
            return http.sendAsync(request.build(), info -> info.statusCode() == 200
                            ? new CappedBody() : HttpResponse.BodySubscribers.replacing(null))
                    .thenApply(response -> {
                        if (response.statusCode() != 200) {
                            throw new IllegalStateException("HTTP " + response.statusCode()
                                    + (response.statusCode() / 100 == 3 ? " (redirects are not followed)"
                                    : response.statusCode() == 404 ? " (no health extension there)" : ""));
                        }
                        try {
                            return MAPPER.readTree(response.body());
                        } catch (IOException e) {
                            throw new IllegalStateException("not JSON");
                        }
                    });
        }
    }

    /** Collects a body of at most {@link #MAX_ANSWER_BYTES}; a larger one fails the answer. */
    static final class CappedBody implements HttpResponse.BodySubscriber<byte[]> {
        private final CompletableFuture<byte[]> result = new CompletableFuture<>();
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();
        private Flow.Subscription subscription;

        @Override
        public CompletionStage<byte[]> getBody() {
            return result;
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            s.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(List<ByteBuffer> items) {
            for (ByteBuffer b : items) {
                if (out.size() + b.remaining() > MAX_ANSWER_BYTES) {
                    subscription.cancel();
                    result.completeExceptionally(new IOException("an answer larger than " + MAX_ANSWER_BYTES + " bytes"));
                    return;
                }
                byte[] chunk = new byte[b.remaining()];
                b.get(chunk);
                out.write(chunk, 0, chunk.length);
            }
        }

        @Override
        public void onError(Throwable t) {
            result.completeExceptionally(t);
        }

        @Override
        public void onComplete() {
            result.complete(out.toByteArray());
        }
    }

    /** Enriches the answers of {@code GET /connectors/{name}/status} of this plugin's connectors. */
    public static final class StatusFilter implements ContainerResponseFilter {
        private final ConnectClusterState cluster;
        private final Peers peers;

        StatusFilter(ConnectClusterState cluster, Peers peers) {
            this.cluster = cluster;
            this.peers = peers;
        }

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
                if (!isOurs(cluster.connectorConfig(connector).get("connector.class"))) {
                    return;
                }
                JsonNode status = MAPPER.valueToTree(response.getEntity());
                URI self = request.getUriInfo().getBaseUri();
                Map<Integer, TaskHealthRegistry.Health> health = new HashMap<>(TaskHealthRegistry.of(connector));
                askOtherWorkers(status, connector, health, request.getHeaderString(HttpHeaders.AUTHORIZATION),
                        self.getHost() + ":" + self.getPort());
                if (enrich(status, health)) {
                    response.setEntity(status);
                }
            } catch (RuntimeException e) {
                // Never break the status API: without the extra object the answer is Connect's own.
            }
        }

        /** {@code connector.class} as Connect accepts it: the class name, or its simple-name aliases. */
        static boolean isOurs(String connectorClass) {
            if (connectorClass == null) {
                return false;
            }
            String name = connectorClass.trim();
            String simple = SalesforceSinkConnector.class.getSimpleName();
            return name.equals(SalesforceSinkConnector.class.getName()) || name.equals(simple)
                    || name.equals(simple.substring(0, simple.length() - "Connector".length()));
        }

        /** Fills in the health of running tasks that this worker does not run, from their workers. */
        private void askOtherWorkers(JsonNode status, String connector, Map<Integer, TaskHealthRegistry.Health> health,
                String authorization, String self) {
            JsonNode tasks = status.get("tasks");
            if (tasks == null || !tasks.isArray()) {
                return;
            }
            Map<Integer, String> remote = new LinkedHashMap<>();
            for (JsonNode task : tasks) {
                int id = task.path("id").asInt(-1);
                String worker = task.path("worker_id").asText("");
                if (id < 0 || health.containsKey(id) || !"RUNNING".equals(task.path("state").asText())) {
                    continue;
                }
                if (!isPlainWorkerId(worker)) {
                    health.put(id, unknown("its worker_id is not a plain host:port; not asked"));
                } else if (!worker.equals(self) && !worker.equals(peers.ownWorkerId)) {
                    remote.put(id, worker);
                }
            }
            if (remote.isEmpty()) {
                return;
            }
            Map<String, Object> answers = peers.ask(new ArrayList<>(new java.util.LinkedHashSet<>(remote.values())),
                    connector, authorization);
            remote.forEach((id, worker) -> {
                Object answer = answers.get(worker);
                JsonNode h = answer instanceof JsonNode ? ((JsonNode) answer).get(Integer.toString(id)) : null;
                if (h != null && h.has("state")) {
                    long since;
                    try {
                        since = Instant.parse(h.path("since").asText()).toEpochMilli();
                    } catch (RuntimeException e) {
                        since = 0;
                    }
                    health.put(id, new TaskHealthRegistry.Health(h.path("state").asText(), h.path("message").asText(),
                            since));
                } else {
                    health.put(id, unknown(answer instanceof String ? (String) answer
                            : "worker " + worker + " does not know the task (yet)"));
                }
            });
        }

        private static TaskHealthRegistry.Health unknown(String why) {
            return new TaskHealthRegistry.Health(UNKNOWN, why, System.currentTimeMillis());
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
