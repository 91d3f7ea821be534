package io.axual.connect.plugins.salesforce;

import java.net.InetAddress;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.UnknownHostException;
import java.security.KeyFactory;
import java.security.NoSuchAlgorithmException;
import java.security.spec.InvalidKeySpecException;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.Importance;
import org.apache.kafka.common.config.ConfigDef.Type;
import org.apache.kafka.common.config.ConfigDef.Width;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.config.types.Password;

/**
 * The connector's configuration (SPEC §1). Per-key rules live in the {@link ConfigDef} validators;
 * rules that involve several keys are in {@link #crossKeyErrors(Map)}, which both
 * {@link SalesforceSinkConnector#validate(Map)} (to report each problem on its key) and the
 * constructor (to refuse to start) use.
 */
public final class SalesforceSinkConfig extends AbstractConfig {

    // Authentication
    public static final String INSTANCE_URL = "salesforce.instance.url";
    public static final String CLIENT_ID = "salesforce.client.id";
    public static final String AUTH_TYPE = "salesforce.auth.type";
    public static final String CLIENT_SECRET = "salesforce.client.secret";
    public static final String JWT_PRIVATE_KEY = "salesforce.jwt.private.key";
    public static final String JWT_USERNAME = "salesforce.jwt.username";
    public static final String JWT_AUDIENCE = "salesforce.jwt.audience";
    // Connection
    public static final String API_VERSION = "salesforce.api.version";
    public static final String REQUEST_TIMEOUT_MS = "salesforce.request.timeout.ms";
    public static final String PROXY_URL = "salesforce.proxy.url";
    public static final String PROXY_USERNAME = "salesforce.proxy.username";
    public static final String PROXY_PASSWORD = "salesforce.proxy.password";
    public static final String SSL_CA_PEM = "salesforce.ssl.ca.pem";
    public static final String SSL_TRUSTSTORE_PATH = "salesforce.ssl.truststore.path";
    public static final String SSL_TRUSTSTORE_PASSWORD = "salesforce.ssl.truststore.password";
    // SObject Mapping
    public static final String SOBJECT_TYPE = "salesforce.sobject.type";
    public static final String SOBJECT_ALLOWED = "salesforce.sobject.allowed";
    public static final String OPERATION = "salesforce.operation";
    public static final String EXTERNAL_ID_FIELD = "salesforce.external.id.field";
    public static final String EXTERNAL_ID_FIELD_MAP = "salesforce.external.id.field.map";
    public static final String IDEMPOTENCY_FIELD = "salesforce.idempotency.field";
    public static final String OPERATION_HEADER_ENABLED = "salesforce.operation.header.enabled";
    public static final String OPERATION_HEADER_NAME = "salesforce.operation.header.name";
    public static final String OPERATION_HEADER_MAPPING = "salesforce.operation.header.mapping";
    public static final String TOMBSTONE_DELETE = "salesforce.tombstone.delete";
    public static final String NULL_FIELDS = "salesforce.null.fields";
    // Error Handling and Retries
    public static final String RETRY_MAX_ATTEMPTS = "salesforce.retry.max.attempts";
    public static final String RETRY_INITIAL_BACKOFF_MS = "salesforce.retry.initial.backoff.ms";
    public static final String RETRY_MAX_BACKOFF_MS = "salesforce.retry.max.backoff.ms";
    public static final String DELETE_MISSING = "salesforce.delete.missing";
    public static final String RETRY_MAX_DURATION_MS = "salesforce.retry.max.duration.ms";
    // Advanced
    public static final String STARTUP_VALIDATION_ENABLED = "salesforce.startup.validation.enabled";
    public static final String COMPRESSION_ENABLED = "salesforce.compression.enabled";
    public static final String WRITE_MODE = "salesforce.write.mode";
    public static final String BATCH_SIZE = "salesforce.batch.size";
    public static final String MAX_IN_FLIGHT_REQUESTS = "salesforce.max.in.flight.requests";
    public static final String LINGER_MS = "salesforce.linger.ms";
    public static final String MAX_BUFFERED_RECORDS = "salesforce.max.buffered.records";
    public static final String COALESCE_UPDATES = "salesforce.coalesce.updates";
    public static final String API_QUOTA_CHECK_INTERVAL_MS = "salesforce.api.quota.check.interval.ms";
    public static final String API_QUOTA_RESERVE_PERCENT = "salesforce.api.quota.reserve.percent";
    public static final String HEALTH_STALL_THRESHOLD_MS = "salesforce.health.stall.threshold.ms";
    // Bulk API 2.0 (write modes BULK and AUTO)
    public static final String BULK_THRESHOLD = "salesforce.bulk.threshold";
    public static final String BULK_MAX_RECORDS_PER_JOB = "salesforce.bulk.max.records.per.job";
    public static final String BULK_LINGER_MS = "salesforce.bulk.linger.ms";
    public static final String BULK_POLL_INTERVAL_MS = "salesforce.bulk.poll.interval.ms";
    public static final String BULK_HARD_DELETE = "salesforce.bulk.hard.delete";
    public static final String BULK_JOB_TIMEOUT_MS = "salesforce.bulk.job.timeout.ms";

    static final String CLIENT_CREDENTIALS = "CLIENT_CREDENTIALS";
    static final String JWT_BEARER = "JWT_BEARER";
    static final String UPSERT = "UPSERT";
    /** {@code salesforce.sobject.type=${topic}}: each record's SObject is its topic after SMTs (SPEC §9). */
    public static final String SOBJECT_BY_TOPIC = "${topic}";

    static final String GROUP_AUTHENTICATION = "Authentication";
    static final String GROUP_CONNECTION = "Connection";
    static final String GROUP_MAPPING = "SObject Mapping";
    static final String GROUP_ERRORS = "Error Handling and Retries";
    static final String GROUP_ADVANCED = "Advanced";
    static final String GROUP_BULK = "Bulk API 2.0";

    static final List<String> AUTH_TYPES = List.of(CLIENT_CREDENTIALS, JWT_BEARER);
    static final List<String> OPERATIONS = List.of("INSERT", "UPDATE", "DELETE", UPSERT);
    static final List<String> WRITE_MODES = List.of("SINGLE", "COLLECTIONS", "BULK", "AUTO");
    static final List<String> NULL_FIELDS_MODES = List.of("SEND", "SKIP");
    static final List<String> DELETE_MISSING_MODES = List.of("FAIL", "IGNORE");

    /** Keys whose values are enums: normalized to upper case before they reach native code. */
    private static final List<String> ENUM_KEYS = List.of(AUTH_TYPE, OPERATION, WRITE_MODE, NULL_FIELDS,
            DELETE_MISSING);

    private static final Pattern API_VERSION_PATTERN = Pattern.compile("\\d{2,3}\\.0");
    private static final Pattern API_NAME_PATTERN = Pattern.compile("[A-Za-z][A-Za-z0-9_]*");
    private static final Pattern IPV4_LITERAL = Pattern.compile("\\d{1,3}(\\.\\d{1,3}){3}");

    private static final ConfigDef CONFIG_DEF = buildConfigDef();

    public SalesforceSinkConfig(Map<String, String> props) {
        super(CONFIG_DEF, props, false);
        Map<String, List<String>> errors = crossKeyErrors(values());
        if (!errors.isEmpty()) {
            List<String> messages = new ArrayList<>();
            errors.values().forEach(messages::addAll);
            throw new ConfigException("Invalid Salesforce sink configuration: " + String.join("; ", messages));
        }
    }

    public static ConfigDef configDef() {
        return CONFIG_DEF;
    }

    // ---------------------------------------------------------------- definition

    private static ConfigDef buildConfigDef() {
        ConfigDef def = new ConfigDef();
        int order = 0;
        def.define(INSTANCE_URL, Type.STRING, ConfigDef.NO_DEFAULT_VALUE, new InstanceUrlValidator(),
                Importance.HIGH,
                "Base URL of the Salesforce instance (My Domain), e.g. https://myorg.my.salesforce.com. The OAuth "
                        + "token endpoint is {url}/services/oauth2/token. Must be https://; plain http:// is "
                        + "accepted only for loopback hosts (127.0.0.0/8, localhost, [::1]), e.g. a local emulator.",
                GROUP_AUTHENTICATION, ++order, Width.LONG, "Instance URL");
        def.define(CLIENT_ID, Type.STRING, ConfigDef.NO_DEFAULT_VALUE, new ConfigDef.NonEmptyString(),
                Importance.HIGH,
                "Connected App Consumer Key (OAuth client ID). Required for both authentication flows.",
                GROUP_AUTHENTICATION, ++order, Width.LONG, "Client ID");
        def.define(AUTH_TYPE, Type.STRING, ConfigDef.NO_DEFAULT_VALUE, enumValidator(AUTH_TYPES),
                Importance.HIGH,
                "OAuth 2.0 flow: CLIENT_CREDENTIALS (client ID + secret) or JWT_BEARER (RFC 7523, RSA-signed "
                        + "assertion; recommended for production). Case-insensitive.",
                GROUP_AUTHENTICATION, ++order, Width.MEDIUM, "Authentication type", new EnumRecommender(AUTH_TYPES));
        def.define(CLIENT_SECRET, Type.PASSWORD, null, null, Importance.HIGH,
                "Connected App Consumer Secret. Required when salesforce.auth.type is CLIENT_CREDENTIALS.",
                GROUP_AUTHENTICATION, ++order, Width.LONG, "Client secret", new VisibleForAuth(CLIENT_CREDENTIALS));
        def.define(JWT_PRIVATE_KEY, Type.PASSWORD, null, new PrivateKeyValidator(), Importance.HIGH,
                "PEM-encoded, unencrypted RSA private key in PKCS#8 form (-----BEGIN PRIVATE KEY-----). Line "
                        + "breaks may be real newlines or the two characters \\n. Required when "
                        + "salesforce.auth.type is JWT_BEARER.",
                GROUP_AUTHENTICATION, ++order, Width.LONG, "JWT private key", new VisibleForAuth(JWT_BEARER));
        def.define(JWT_USERNAME, Type.STRING, null, null, Importance.HIGH,
                "Salesforce username of the integration user, used as the JWT 'sub' claim. Required when "
                        + "salesforce.auth.type is JWT_BEARER.",
                GROUP_AUTHENTICATION, ++order, Width.MEDIUM, "JWT username", new VisibleForAuth(JWT_BEARER));
        def.define(JWT_AUDIENCE, Type.STRING, "https://login.salesforce.com", new ConfigDef.NonEmptyString(),
                Importance.LOW,
                "JWT 'aud' claim: https://login.salesforce.com for production, https://test.salesforce.com for "
                        + "sandboxes, or an Experience Cloud site URL.",
                GROUP_AUTHENTICATION, ++order, Width.MEDIUM, "JWT audience", new VisibleForAuth(JWT_BEARER));

        order = 0;
        def.define(API_VERSION, Type.STRING, "62.0", new ApiVersionValidator(), Importance.MEDIUM,
                "Salesforce REST API version, in the form NN.0 (e.g. 62.0).",
                GROUP_CONNECTION, ++order, Width.SHORT, "API version");
        def.define(REQUEST_TIMEOUT_MS, Type.INT, 30000, ConfigDef.Range.atLeast(1), Importance.LOW,
                "Per-request HTTP timeout in milliseconds. The TCP connect timeout is fixed at 30 seconds.",
                GROUP_CONNECTION, ++order, Width.SHORT, "Request timeout (ms)");
        def.define(PROXY_URL, Type.STRING, null, new ProxyUrlValidator(), Importance.LOW,
                "Optional HTTP(S) proxy for every Salesforce request, e.g. http://proxy.internal:3128, without "
                        + "credentials (use salesforce.proxy.username/password). The worker's proxy environment "
                        + "variables are not used, and a loopback instance URL is reached directly.",
                GROUP_CONNECTION, ++order, Width.LONG, "Proxy URL");
        def.define(PROXY_USERNAME, Type.STRING, null, null, Importance.LOW,
                "User name for proxy basic authentication.",
                GROUP_CONNECTION, ++order, Width.MEDIUM, "Proxy username");
        def.define(PROXY_PASSWORD, Type.PASSWORD, null, null, Importance.LOW,
                "Password for proxy basic authentication.",
                GROUP_CONNECTION, ++order, Width.MEDIUM, "Proxy password");
        def.define(SSL_CA_PEM, Type.STRING, null, new CaPemValidator(), Importance.LOW,
                "Additional trusted CA certificates, PEM (one or more -----BEGIN CERTIFICATE----- blocks), for "
                        + "private CAs such as a TLS-inspecting proxy. The public roots stay trusted.",
                GROUP_CONNECTION, ++order, Width.LONG, "Extra CA certificates (PEM)");
        def.define(SSL_TRUSTSTORE_PATH, Type.STRING, null, null, Importance.LOW,
                "A trust store file (PKCS12 or JKS) whose certificates are trusted in addition to the public "
                        + "roots, as an alternative to salesforce.ssl.ca.pem.",
                GROUP_CONNECTION, ++order, Width.LONG, "Trust store path");
        def.define(SSL_TRUSTSTORE_PASSWORD, Type.PASSWORD, null, null, Importance.LOW,
                "Password of salesforce.ssl.truststore.path, if it has one.",
                GROUP_CONNECTION, ++order, Width.MEDIUM, "Trust store password");

        order = 0;
        def.define(SOBJECT_TYPE, Type.STRING, ConfigDef.NO_DEFAULT_VALUE, new SObjectTypeValidator(), Importance.HIGH,
                "API name of the target SObject, e.g. Contact, Account or MyObject__c, or ${topic}: each "
                        + "record's topic (after SMTs, e.g. a RegexRouter from crm.Contact to Contact) is its "
                        + "SObject. With ${topic} the SObject and the external ID field cannot be checked here; "
                        + "each SObject is checked (describe) when its first record arrives, and records of a "
                        + "topic that is no SObject API name or names an unknown SObject go to the DLQ.",
                GROUP_MAPPING, ++order, Width.MEDIUM, "SObject type");
        def.define(SOBJECT_ALLOWED, Type.LIST, null, new SObjectListValidator(), Importance.MEDIUM,
                "With " + SOBJECT_TYPE + "=${topic}: the SObjects this connector may write, e.g. Contact,Account "
                        + "(API names, case-insensitive). A record whose topic names any other SObject is a "
                        + "non-recoverable record error (DLQ) and never reaches Salesforce, so whoever can create "
                        + "topics cannot pick any SObject the integration user may write. Unset: any SObject.",
                GROUP_MAPPING, ++order, Width.LONG, "Allowed SObjects");
        def.define(OPERATION, Type.STRING, "INSERT", enumValidator(OPERATIONS), Importance.HIGH,
                "Write operation for every record (unless header routing overrides it): INSERT, UPDATE, DELETE or "
                        + "UPSERT, case-insensitive. UPSERT needs salesforce.external.id.field; without it the "
                        + "error is reported on this key. In External ID mode INSERT is performed as UPSERT.",
                GROUP_MAPPING, ++order, Width.SHORT, "Operation", new EnumRecommender(OPERATIONS));
        def.define(EXTERNAL_ID_FIELD, Type.STRING, null, new OptionalApiNameValidator(), Importance.MEDIUM,
                "API name of a Salesforce External ID field, e.g. ExternalId__c. When set, the record key is the "
                        + "external ID value (External ID mode); otherwise the key is the Salesforce record Id.",
                GROUP_MAPPING, ++order, Width.MEDIUM, "External ID field");
        def.define(EXTERNAL_ID_FIELD_MAP, Type.LIST, null, new ExternalIdFieldMapValidator(), Importance.MEDIUM,
                "Per-SObject External ID fields as SObject:Field pairs, e.g. "
                        + "Contact:ExternalId__c,Account:AccountNumber__c (mostly with salesforce.sobject.type=${topic}). "
                        + "Overrides salesforce.external.id.field for the SObjects it lists and, like it, turns on "
                        + "External ID mode; with this map alone, records of an SObject it does not list go to the "
                        + "DLQ. Each field is checked (describe) when its SObject's first record arrives.",
                GROUP_MAPPING, ++order, Width.LONG, "External ID field per SObject");
        def.define(IDEMPOTENCY_FIELD, Type.STRING, null, new OptionalApiNameValidator(), Importance.MEDIUM,
                "Native ID mode: API name of a Text field (length 255, at least 40), marked Unique and External "
                        + "ID, e.g. Kafka_Coordinates__c. Every INSERT then carries the record's original "
                        + "topic:partition:offset in it and is sent as an UPSERT on it, so a record written again "
                        + "after a crash, a rebalance or a lost answer creates no second Salesforce record. The "
                        + "field is checked (describe) when the task starts, or with ${topic} when each SObject's "
                        + "first record arrives; a record whose value carries the field goes to the DLQ. Not with "
                        + "salesforce.external.id.field, where INSERT is already an UPSERT on the key.",
                GROUP_MAPPING, ++order, Width.MEDIUM, "Idempotency field");
        def.define(OPERATION_HEADER_ENABLED, Type.BOOLEAN, false, null, Importance.MEDIUM,
                "When true, the header named by salesforce.operation.header.name (INSERT, UPDATE, DELETE or UPSERT, "
                        + "string or bytes) overrides the operation per record; records without it use "
                        + "salesforce.operation.",
                GROUP_MAPPING, ++order, Width.SHORT, "Header operation routing");
        def.define(OPERATION_HEADER_NAME, Type.STRING, "operation", new ConfigDef.NonEmptyString(), Importance.LOW,
                "Name of the header that carries the per-record operation (the last one counts).",
                GROUP_MAPPING, ++order, Width.MEDIUM, "Operation header name", new VisibleWhenTrue(OPERATION_HEADER_ENABLED));
        def.define(OPERATION_HEADER_MAPPING, Type.STRING, "", new HeaderMappingValidator(), Importance.LOW,
                "Maps operation header values to operations, as comma-separated value:OPERATION pairs, e.g. "
                        + "c:UPSERT,r:UPSERT,u:UPSERT,d:DELETE for Debezium's __op header (ExtractNewRecordState "
                        + "with add.headers=op). Values and operations are case-insensitive; values not listed "
                        + "keep their usual meaning (INSERT, UPDATE, DELETE, UPSERT); any other value is a record "
                        + "error.",
                GROUP_MAPPING, ++order, Width.LONG, "Operation header mapping", new VisibleWhenTrue(OPERATION_HEADER_ENABLED));
        def.define(TOMBSTONE_DELETE, Type.BOOLEAN, false, null, Importance.MEDIUM,
                "When true, a record with a null value deletes the Salesforce record named by its key. When false, "
                        + "tombstones are skipped.",
                GROUP_MAPPING, ++order, Width.SHORT, "Tombstone delete");
        def.define(NULL_FIELDS, Type.STRING, "SEND", enumValidator(NULL_FIELDS_MODES), Importance.LOW,
                "SEND: a null field value clears the Salesforce field. SKIP: null fields are left out of the request.",
                GROUP_MAPPING, ++order, Width.SHORT, "Null fields", new EnumRecommender(NULL_FIELDS_MODES));

        order = 0;
        def.define(RETRY_MAX_ATTEMPTS, Type.INT, 3, ConfigDef.Range.between(0, 100), Importance.MEDIUM,
                "Retries of the startup calls (OAuth token, describe of the SObject) before the task fails. "
                        + "Writes are not bounded by attempts: a record's own transient error (row lock, "
                        + "UNKNOWN_EXCEPTION) is retried for at most salesforce.retry.max.duration.ms, and outages "
                        + "of the whole org (HTTP 5xx/429, timeouts, connection failures, quota) keep waiting.",
                GROUP_ERRORS, ++order, Width.SHORT, "Retry attempts");
        def.define(RETRY_INITIAL_BACKOFF_MS, Type.INT, 1000, ConfigDef.Range.atLeast(0), Importance.LOW,
                "Backoff before the first retry in milliseconds; later retries back off exponentially, with jitter.",
                GROUP_ERRORS, ++order, Width.SHORT, "Initial retry backoff (ms)");
        def.define(RETRY_MAX_BACKOFF_MS, Type.INT, 30000, ConfigDef.Range.atLeast(0), Importance.LOW,
                "Upper bound of the retry backoff in milliseconds.",
                GROUP_ERRORS, ++order, Width.SHORT, "Maximum retry backoff (ms)");
        def.define(DELETE_MISSING, Type.STRING, "FAIL", enumValidator(DELETE_MISSING_MODES), Importance.LOW,
                "FAIL: deleting a record that does not exist is a non-recoverable record error. IGNORE: such "
                        + "deletes count as done (idempotent deletes).",
                GROUP_ERRORS, ++order, Width.SHORT, "Delete of missing records", new EnumRecommender(DELETE_MISSING_MODES));
        def.define(RETRY_MAX_DURATION_MS, Type.LONG, 900_000L, ConfigDef.Range.atLeast(0), Importance.MEDIUM,
                "How long one record is retried for a transient error of its own (UNABLE_TO_LOCK_ROW, "
                        + "UNKNOWN_EXCEPTION in its result, a Bulk row lock), counted from its first such failure; "
                        + "then it is a non-recoverable error with its last cause (DLQ, or task failure under "
                        + "errors.tolerance=none). Outages of the whole request (HTTP 5xx/429, timeouts, connection "
                        + "failures, quota) keep waiting. 0 = no limit.",
                GROUP_ERRORS, ++order, Width.SHORT, "Max retry duration (ms)");

        order = 0;
        def.define(STARTUP_VALIDATION_ENABLED, Type.BOOLEAN, true, null, Importance.LOW,
                "At task start, fetch a token and, in External ID mode, check that the external ID field exists "
                        + "and is an External ID or idLookup field.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Startup validation");
        def.define(COMPRESSION_ENABLED, Type.BOOLEAN, false, null, Importance.LOW,
                "Gzip request bodies and accept gzip responses.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Compression");
        def.define(WRITE_MODE, Type.STRING, "COLLECTIONS", enumValidator(WRITE_MODES), Importance.MEDIUM,
                "SINGLE: one REST request per record (as the original connector). COLLECTIONS: sObject "
                        + "Collections, up to salesforce.batch.size records per request. BULK: Bulk API 2.0 ingest "
                        + "jobs (a few API requests per job of up to salesforce.bulk.max.records.per.job records). "
                        + "AUTO: Collections while few records wait, a Bulk job once salesforce.bulk.threshold "
                        + "records of one operation wait.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Write mode", new EnumRecommender(WRITE_MODES));
        def.define(BATCH_SIZE, Type.INT, 200, ConfigDef.Range.between(1, 200), Importance.LOW,
                "Records per sObject Collections request (1..200).",
                GROUP_ADVANCED, ++order, Width.SHORT, "Batch size");
        def.define(MAX_IN_FLIGHT_REQUESTS, Type.INT, 4, ConfigDef.Range.between(1, 64), Importance.LOW,
                "Concurrent Salesforce requests per task (1..64); records with the same key are always written in "
                        + "order.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Max in-flight requests");
        def.define(LINGER_MS, Type.INT, 200, ConfigDef.Range.between(0, 600_000), Importance.LOW,
                "How long a part-filled request waits for more records (across put() calls) before it is sent. "
                        + "Higher: fuller requests, fewer API calls; lower: less latency.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Linger (ms)");
        def.define(MAX_BUFFERED_RECORDS, Type.INT, 20_000, ConfigDef.Range.between(1, 10_000_000), Importance.LOW,
                "Records a task holds unfinished (waiting or in flight). At this many the task pauses its "
                        + "partitions until half of them are written; this bounds the task's memory.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Max buffered records");
        def.define(COALESCE_UPDATES, Type.BOOLEAN, false, null, Importance.LOW,
                "Merge consecutive UPSERT/UPDATE writes of one key that wait in the buffer into one write (later "
                        + "fields win; never across a DELETE or INSERT). Fewer API calls for hot keys, but triggers, "
                        + "flows and field history then see one change instead of several.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Coalesce updates");
        def.define(API_QUOTA_CHECK_INTERVAL_MS, Type.INT, 60_000, ConfigDef.Range.between(1_000, 86_400_000),
                Importance.LOW, "While the quota guard holds (salesforce.api.quota.reserve.percent) or the org's daily "
                        + "API quota is spent (REQUEST_LIMIT_EXCEEDED TotalRequests), how often /limits is read or "
                        + "waiting records are tried again. They never go to the DLQ for it.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Quota check interval (ms)");
        def.define(API_QUOTA_RESERVE_PERCENT, Type.INT, 10, ConfigDef.Range.between(0, 100), Importance.MEDIUM,
                "Share of the org's daily API allowance this connector leaves untouched. When the remaining share "
                        + "(Sforce-Limit-Info api-usage) falls below it, the task stops sending, pauses its partitions "
                        + "and reads /limits every salesforce.api.quota.check.interval.ms until the remaining share is "
                        + "back above it. Records wait; nothing goes to the DLQ. 0 turns the guard off.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Quota reserve (%)");
        def.define(HEALTH_STALL_THRESHOLD_MS, Type.LONG, 300_000L, ConfigDef.Range.atLeast(1), Importance.LOW,
                "The task's health is STALLED (metrics, REST status, one WARN) while its oldest unfinished "
                        + "record is older than this.",
                GROUP_ADVANCED, ++order, Width.SHORT, "Stall threshold (ms)");
        defineBulk(def);
        return def;
    }

    private static void defineBulk(ConfigDef def) {
        int order = 0;
        def.define(BULK_THRESHOLD, Type.INT, 2_000, ConfigDef.Range.between(1, 10_000_000), Importance.LOW,
                "AUTO: records of one operation waiting before they go as a Bulk API 2.0 job instead of "
                        + "Collections requests.",
                GROUP_BULK, ++order, Width.SHORT, "Bulk threshold");
        def.define(BULK_MAX_RECORDS_PER_JOB, Type.INT, 100_000, ConfigDef.Range.between(1, 150_000_000),
                Importance.LOW, "Records per Bulk API 2.0 job at most; a job's CSV also stays below Salesforce's "
                        + "100 MB upload limit.",
                GROUP_BULK, ++order, Width.SHORT, "Bulk max records per job");
        def.define(BULK_LINGER_MS, Type.INT, 5_000, ConfigDef.Range.between(0, 3_600_000), Importance.LOW,
                "A Bulk job is closed when full, this long after its last record arrived (once no other job "
                        + "runs), or when its oldest record has waited 12 times this long.",
                GROUP_BULK, ++order, Width.SHORT, "Bulk linger (ms)");
        def.define(BULK_POLL_INTERVAL_MS, Type.INT, 2_000, ConfigDef.Range.between(1, 3_600_000), Importance.LOW,
                "First poll of a Bulk job's status; later polls come when the job should be done at the rate "
                        + "it has shown (doubling while it shows none), at most 30 s apart.",
                GROUP_BULK, ++order, Width.SHORT, "Bulk poll interval (ms)");
        def.define(BULK_HARD_DELETE, Type.BOOLEAN, false, null, Importance.LOW,
                "DELETE through Bulk jobs as hardDelete: records skip the recycle bin (the integration user "
                        + "needs the Bulk API Hard Delete permission).",
                GROUP_BULK, ++order, Width.SHORT, "Bulk hard delete");
        def.define(BULK_JOB_TIMEOUT_MS, Type.LONG, 3_600_000L, ConfigDef.Range.between(1_000L, 604_800_000L),
                Importance.LOW, "A Bulk job not finished this long after its upload is complete is aborted; its "
                        + "records' outcome is then unknown: UPSERT, UPDATE and DELETE are sent again, an INSERT "
                        + "fails with a message saying the record may or may not exist in Salesforce.",
                GROUP_BULK, ++order, Width.SHORT, "Bulk job timeout (ms)");
    }

    /**
     * Unfinished records at which the task pauses its partitions. Bulk modes hold at least two jobs'
     * worth, so one job can fill while the previous one runs.
     */
    int effectiveMaxBufferedRecords() {
        int configured = getInt(MAX_BUFFERED_RECORDS);
        String mode = upper(getString(WRITE_MODE));
        if ("BULK".equals(mode) || "AUTO".equals(mode)) {
            long twoJobs = 2L * getInt(BULK_MAX_RECORDS_PER_JOB);
            return (int) Math.min(Integer.MAX_VALUE, Math.max(configured, twoJobs));
        }
        return configured;
    }

    private static ConfigDef.Validator enumValidator(List<String> values) {
        return new NullTolerant(ConfigDef.CaseInsensitiveValidString.in(values.toArray(new String[0])));
    }

    // ---------------------------------------------------------------- cross-key rules

    /**
     * Problems that involve more than one key, each attached to the key the operator should change.
     * UPSERT without an external ID field is reported on {@code salesforce.operation}.
     *
     * @param values parsed values by key (as from ConfigDef parsing; missing optional keys null)
     */
    static Map<String, List<String>> crossKeyErrors(Map<String, ?> values) {
        Map<String, List<String>> errors = new LinkedHashMap<>();
        String authType = upper(values.get(AUTH_TYPE));
        if (CLIENT_CREDENTIALS.equals(authType) && isBlank(values.get(CLIENT_SECRET))) {
            add(errors, CLIENT_SECRET, CLIENT_SECRET + " is required when " + AUTH_TYPE + " is CLIENT_CREDENTIALS");
        }
        if (JWT_BEARER.equals(authType)) {
            if (isBlank(values.get(JWT_PRIVATE_KEY))) {
                add(errors, JWT_PRIVATE_KEY, JWT_PRIVATE_KEY + " is required when " + AUTH_TYPE + " is JWT_BEARER");
            }
            if (isBlank(values.get(JWT_USERNAME))) {
                add(errors, JWT_USERNAME, JWT_USERNAME + " is required when " + AUTH_TYPE + " is JWT_BEARER");
            }
        }
        boolean externalIdMode = !isBlank(values.get(EXTERNAL_ID_FIELD)) || !isEmptyList(values.get(EXTERNAL_ID_FIELD_MAP));
        if (!isBlank(values.get(IDEMPOTENCY_FIELD)) && externalIdMode) {
            add(errors, IDEMPOTENCY_FIELD, IDEMPOTENCY_FIELD + " is for Native ID mode only: with " + EXTERNAL_ID_FIELD
                    + " (or " + EXTERNAL_ID_FIELD_MAP + ") every INSERT is already an UPSERT on the record key's "
                    + "external ID, which creates at most one Salesforce record per key; remove one of the two settings");
        }
        if (UPSERT.equals(upper(values.get(OPERATION))) && !externalIdMode) {
            add(errors, OPERATION, "UPSERT needs " + EXTERNAL_ID_FIELD + " (UPSERT is not supported in Native ID "
                    + "mode): set the External ID field, or use INSERT/UPDATE");
        }
        Object sobject = values.get(SOBJECT_TYPE);
        Object allowed = values.get(SOBJECT_ALLOWED);
        if (sobject != null && !SOBJECT_BY_TOPIC.equals(sobject.toString().trim()) && allowed instanceof List
                && !((List<?>) allowed).isEmpty()
                && ((List<?>) allowed).stream().noneMatch(a -> a.toString().trim().equalsIgnoreCase(sobject.toString().trim()))) {
            add(errors, SOBJECT_ALLOWED, SOBJECT_ALLOWED + " does not list " + SOBJECT_TYPE + " '" + sobject + "'");
        }
        Object initial = values.get(RETRY_INITIAL_BACKOFF_MS);
        Object max = values.get(RETRY_MAX_BACKOFF_MS);
        if (initial instanceof Integer && max instanceof Integer && (Integer) initial > (Integer) max) {
            add(errors, RETRY_INITIAL_BACKOFF_MS, RETRY_INITIAL_BACKOFF_MS + " (" + initial + ") must not exceed "
                    + RETRY_MAX_BACKOFF_MS + " (" + max + ")");
        }
        return errors;
    }

    private static void add(Map<String, List<String>> errors, String key, String message) {
        errors.computeIfAbsent(key, k -> new ArrayList<>()).add(message);
    }

    private static String upper(Object value) {
        return value == null ? null : value.toString().trim().toUpperCase(Locale.ROOT);
    }

    private static boolean isEmptyList(Object value) {
        return value == null || (value instanceof List && ((List<?>) value).isEmpty());
    }

    private static boolean isBlank(Object value) {
        if (value instanceof Password) {
            value = ((Password) value).value();
        }
        return value == null || value.toString().isBlank();
    }

    // ---------------------------------------------------------------- accessors

    /** The operation header name, or null when header routing is disabled. */
    public String operationHeaderNameIfEnabled() {
        return getBoolean(OPERATION_HEADER_ENABLED) ? getString(OPERATION_HEADER_NAME) : null;
    }

    /**
     * Every setting in the form the native side gets: enums in upper case, the PEM with real line
     * breaks, and unset optional values (null or blank) left out.
     */
    public Map<String, Object> nativeSettings() {
        Map<String, Object> settings = new LinkedHashMap<>();
        for (String key : CONFIG_DEF.names()) {
            Object value = get(key);
            if (value == null || (CONFIG_DEF.configKeys().get(key).defaultValue == null && isBlank(value))) {
                continue;
            }
            if (ENUM_KEYS.contains(key)) {
                value = upper(value);
            } else if (JWT_PRIVATE_KEY.equals(key)) {
                value = new Password(normalizePem(((Password) value).value()));
            } else if (SSL_CA_PEM.equals(key)) {
                value = normalizePem(value.toString());
            }
            settings.put(key, value);
        }
        String truststore = getString(SSL_TRUSTSTORE_PATH);
        if (truststore != null && !truststore.isBlank()) {
            // Rust reads PEM only: the trust store's certificates travel as PEM next to salesforce.ssl.ca.pem.
            Password password = getPassword(SSL_TRUSTSTORE_PASSWORD);
            String pem = TrustStorePem.read(truststore.trim(), password == null ? null : password.value());
            Object extra = settings.get(SSL_CA_PEM);
            settings.put(SSL_CA_PEM, extra == null ? pem : extra + "\n" + pem);
            settings.remove(SSL_TRUSTSTORE_PATH);
            settings.remove(SSL_TRUSTSTORE_PASSWORD);
        }
        return settings;
    }

    /** Lists every setting; passwords show as [hidden] (Password's own toString). */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("SalesforceSinkConfig{");
        String separator = "";
        for (String key : CONFIG_DEF.names()) {
            Object value = get(key);
            sb.append(separator).append(key).append('=')
                    .append(value instanceof Password ? Password.HIDDEN : value);
            separator = ", ";
        }
        return sb.append('}').toString();
    }

    // ---------------------------------------------------------------- validators

    /** Lets a missing value through: required keys already get ConfigDef's "missing" error. */
    private static final class NullTolerant implements ConfigDef.Validator {
        private final ConfigDef.Validator delegate;

        NullTolerant(ConfigDef.Validator delegate) {
            this.delegate = delegate;
        }

        @Override
        public void ensureValid(String name, Object value) {
            if (value != null) {
                delegate.ensureValid(name, value);
            }
        }

        @Override
        public String toString() {
            return delegate.toString();
        }
    }

    static final class InstanceUrlValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null) {
                return;
            }
            String problem = problem(value.toString().trim());
            if (problem != null) {
                throw new ConfigException(name, value, problem);
            }
        }

        static String problem(String url) {
            URI uri;
            try {
                uri = new URI(url);
            } catch (URISyntaxException e) {
                return "not a valid URL (" + e.getReason() + "); expected e.g. https://myorg.my.salesforce.com";
            }
            String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
            if (!uri.isAbsolute() || uri.getHost() == null || uri.getHost().isEmpty()) {
                return "must be an absolute URL with a host, e.g. https://myorg.my.salesforce.com";
            }
            if (uri.getRawQuery() != null || uri.getRawFragment() != null) {
                return "must not have a query or fragment; give the base URL of the instance only";
            }
            if ("https".equals(scheme)) {
                return null;
            }
            if ("http".equals(scheme)) {
                return isLoopback(uri.getHost()) ? null
                        : "plain http:// would send credentials and access tokens unencrypted, so it is only "
                                + "accepted for loopback hosts (127.0.0.0/8, localhost, [::1]); use https://";
            }
            return "scheme '" + scheme + "' is not supported; use https://";
        }

        /** Decides from the literal only: no DNS lookup during validation. */
        static boolean isLoopback(String host) {
            String h = host.toLowerCase(Locale.ROOT);
            if (h.equals("localhost")) {
                return true;
            }
            boolean ipv6 = h.startsWith("[") && h.endsWith("]");
            if (!ipv6 && !IPV4_LITERAL.matcher(h).matches()) {
                return false;
            }
            try {
                // For IP literals InetAddress parses without resolving.
                return InetAddress.getByName(ipv6 ? h.substring(1, h.length() - 1) : h).isLoopbackAddress();
            } catch (UnknownHostException e) {
                return false;
            }
        }

        @Override
        public String toString() {
            return "https:// URL (http:// only for loopback hosts)";
        }
    }

    static final class ProxyUrlValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null || value.toString().isBlank()) {
                return;
            }
            try {
                URI uri = new URI(value.toString().trim());
                String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
                if (uri.getRawUserInfo() != null) {
                    // Echoed by the validate endpoint and the worker's config log: credentials go in
                    // the proxy username and (Password) password keys.
                    throw new ConfigException(name, Password.HIDDEN, "must not hold a user name or password; "
                            + "put them in " + PROXY_USERNAME + " and " + PROXY_PASSWORD
                            + " (a Password key, never shown)");
                }
                if ((scheme.equals("http") || scheme.equals("https")) && uri.getHost() != null) {
                    return;
                }
            } catch (URISyntaxException e) {
                // reported below
            }
            // The URL may carry credentials: do not echo it.
            throw new ConfigException(name, Password.HIDDEN, "must be an http:// or https:// proxy URL with a host, "
                    + "e.g. http://proxy.internal:3128");
        }

        @Override
        public String toString() {
            return "http(s)://host:port";
        }
    }

    /** {@code salesforce.ssl.ca.pem}: every block must be an X.509 certificate, as the native client requires. */
    static final class CaPemValidator implements ConfigDef.Validator {
        private static final java.util.regex.Pattern BLOCK = java.util.regex.Pattern.compile(
                "-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", java.util.regex.Pattern.DOTALL);

        @Override
        public void ensureValid(String name, Object value) {
            if (value == null || value.toString().isBlank()) {
                return;
            }
            String pem = normalizePem(value.toString());
            java.util.regex.Matcher block = BLOCK.matcher(pem);
            int count = 0;
            while (block.find()) {
                count++;
                try {
                    byte[] der = java.util.Base64.getMimeDecoder().decode(block.group(1));
                    java.security.cert.CertificateFactory.getInstance("X.509")
                            .generateCertificate(new java.io.ByteArrayInputStream(der));
                } catch (IllegalArgumentException | java.security.cert.CertificateException e) {
                    throw new ConfigException(name, "[PEM]", "certificate block " + count
                            + " is not a valid X.509 certificate (truncated or altered?): " + e.getMessage());
                }
            }
            if (count == 0) {
                throw new ConfigException(name, "[PEM]",
                        "holds no -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- block");
            }
        }

        @Override
        public String toString() {
            return "PEM X.509 certificates";
        }
    }

    static final class ApiVersionValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null || !API_VERSION_PATTERN.matcher(value.toString().trim()).matches()) {
                throw new ConfigException(name, value, "the API version must look like NN.0, e.g. 62.0");
            }
        }

        @Override
        public String toString() {
            return "NN.0, e.g. 62.0";
        }
    }

    static class ApiNameValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null) {
                return;
            }
            if (!API_NAME_PATTERN.matcher(value.toString().trim()).matches()) {
                throw new ConfigException(name, value, "must be a Salesforce API name: a letter followed by "
                        + "letters, digits and underscores, e.g. Contact or MyObject__c");
            }
        }

        @Override
        public String toString() {
            return "Salesforce API name, e.g. Contact or MyObject__c";
        }
    }

    /** An API name, or {@code ${topic}}. */
    static final class SObjectTypeValidator extends ApiNameValidator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value != null && SOBJECT_BY_TOPIC.equals(value.toString().trim())) {
                return;
            }
            super.ensureValid(name, value);
        }

        @Override
        public String toString() {
            return "Salesforce API name, e.g. Contact or MyObject__c, or ${topic}";
        }
    }

    /** A list of SObject API names (or nothing). */
    static final class SObjectListValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (!(value instanceof List)) {
                return;
            }
            for (Object item : (List<?>) value) {
                if (!API_NAME_PATTERN.matcher(item.toString().trim()).matches()) {
                    throw new ConfigException(name, value, "'" + item + "' is not a Salesforce API name: a letter "
                            + "followed by letters, digits and underscores, e.g. Contact or MyObject__c");
                }
            }
        }

        @Override
        public String toString() {
            return "comma-separated SObject API names, e.g. Contact,Account";
        }
    }

    /** {@code value:OPERATION,...}; a value may be mapped once (values match case-insensitively). */
    static final class HeaderMappingValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null) {
                return;
            }
            List<String> seen = new ArrayList<>();
            for (String pair : value.toString().split(",")) {
                String trimmed = pair.trim();
                if (trimmed.isEmpty()) {
                    continue;
                }
                int colon = trimmed.lastIndexOf(':');
                if (colon < 0) {
                    throw new ConfigException(name, value, "'" + trimmed + "' is not of the form value:OPERATION "
                            + "(e.g. c:UPSERT,u:UPSERT,d:DELETE)");
                }
                String headerValue = trimmed.substring(0, colon).trim().toLowerCase(Locale.ROOT);
                String operation = trimmed.substring(colon + 1).trim().toUpperCase(Locale.ROOT);
                if (headerValue.isEmpty()) {
                    throw new ConfigException(name, value, "'" + trimmed + "' has an empty header value");
                }
                if (!OPERATIONS.contains(operation)) {
                    throw new ConfigException(name, value, "'" + trimmed + "': " + operation
                            + " is not INSERT, UPDATE, DELETE or UPSERT");
                }
                if (seen.contains(headerValue)) {
                    throw new ConfigException(name, value, "header value '" + headerValue + "' is mapped more than "
                            + "once (values match case-insensitively)");
                }
                seen.add(headerValue);
            }
        }

        @Override
        public String toString() {
            return "comma-separated value:OPERATION pairs, e.g. c:UPSERT,r:UPSERT,u:UPSERT,d:DELETE";
        }
    }

    /** {@code SObject:Field,...} of API names; an SObject may be listed once (case-insensitively). */
    static final class ExternalIdFieldMapValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (!(value instanceof List)) {
                return;
            }
            List<String> seen = new ArrayList<>();
            for (Object entry : (List<?>) value) {
                String pair = String.valueOf(entry).trim();
                if (pair.isEmpty()) {
                    continue;
                }
                int colon = pair.indexOf(':');
                String sobject = colon < 0 ? "" : pair.substring(0, colon).trim();
                String field = colon < 0 ? "" : pair.substring(colon + 1).trim();
                if (!API_NAME_PATTERN.matcher(sobject).matches() || !API_NAME_PATTERN.matcher(field).matches()) {
                    throw new ConfigException(name, value, "'" + pair + "' is not of the form SObject:Field with two "
                            + "Salesforce API names (e.g. Contact:ExternalId__c,Account:AccountNumber__c)");
                }
                if (seen.contains(sobject.toLowerCase(Locale.ROOT))) {
                    throw new ConfigException(name, value, "SObject '" + sobject + "' is mapped more than once "
                            + "(API names match case-insensitively)");
                }
                seen.add(sobject.toLowerCase(Locale.ROOT));
            }
        }

        @Override
        public String toString() {
            return "comma-separated SObject:Field pairs, e.g. Contact:ExternalId__c,Account:AccountNumber__c";
        }
    }

    /** Like ApiNameValidator, but empty means "not set". */
    static final class OptionalApiNameValidator extends ApiNameValidator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value != null && !value.toString().isBlank()) {
                super.ensureValid(name, value);
            }
        }
    }

    static final class PrivateKeyValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null) {
                return;
            }
            String pem = value instanceof Password ? ((Password) value).value() : value.toString();
            if (pem == null || pem.isBlank()) {
                return; // "required for JWT_BEARER" is a cross-key rule
            }
            String problem = problem(pem);
            if (problem != null) {
                // Never echo the key: the value part of the message is Password's "[hidden]".
                throw new ConfigException(name, Password.HIDDEN, problem);
            }
        }

        /** What is wrong with the PEM, or null if it is a usable PKCS#8 RSA private key. */
        static String problem(String raw) {
            String pem = normalizePem(raw);
            if (pem.contains("-----BEGIN RSA PRIVATE KEY-----")) {
                return "the key is in PKCS#1 form (BEGIN RSA PRIVATE KEY); convert it to PKCS#8 with "
                        + "'openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem'";
            }
            if (pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
                return "the key is encrypted; an unencrypted PKCS#8 key (BEGIN PRIVATE KEY) is required";
            }
            String begin = "-----BEGIN PRIVATE KEY-----";
            String end = "-----END PRIVATE KEY-----";
            int from = pem.indexOf(begin);
            int to = pem.indexOf(end);
            if (from < 0 || to < from) {
                return "not a PEM PKCS#8 private key: expected '" + begin + "', base64 lines, '" + end + "'";
            }
            String body = pem.substring(from + begin.length(), to).replaceAll("\\s+", "");
            byte[] der;
            try {
                der = Base64.getDecoder().decode(body);
            } catch (IllegalArgumentException e) {
                return "the PEM body is not valid base64 (truncated or altered key?)";
            }
            try {
                KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(der));
                return null;
            } catch (InvalidKeySpecException e) {
                return "the PEM body is not a PKCS#8 RSA private key (truncated key, or not an RSA key?)";
            } catch (NoSuchAlgorithmException e) {
                return "this JVM has no RSA KeyFactory";
            } finally {
                Arrays.fill(der, (byte) 0);
            }
        }

        @Override
        public String toString() {
            return "PEM PKCS#8 RSA private key";
        }
    }

    /**
     * Turns the two-character escape backslash-n (as in JSON examples that were escaped twice) into
     * real line breaks and drops carriage returns.
     */
    static String normalizePem(String raw) {
        return raw.replace("\\r", "").replace("\\n", "\n").replace("\r", "").trim();
    }

    // ---------------------------------------------------------------- recommenders

    private static final class EnumRecommender implements ConfigDef.Recommender {
        private final List<Object> values;

        EnumRecommender(List<String> values) {
            this.values = Collections.unmodifiableList(new ArrayList<>(values));
        }

        @Override
        public List<Object> validValues(String name, Map<String, Object> parsedConfig) {
            return values;
        }

        @Override
        public boolean visible(String name, Map<String, Object> parsedConfig) {
            return true;
        }
    }

    /** Shows an authentication key only for the flow that uses it (or while no flow is chosen). */
    private static final class VisibleForAuth implements ConfigDef.Recommender {
        private final String authType;

        VisibleForAuth(String authType) {
            this.authType = authType;
        }

        @Override
        public List<Object> validValues(String name, Map<String, Object> parsedConfig) {
            return Collections.emptyList();
        }

        @Override
        public boolean visible(String name, Map<String, Object> parsedConfig) {
            String chosen = upper(parsedConfig.get(AUTH_TYPE));
            return chosen == null || !AUTH_TYPES.contains(chosen) || authType.equals(chosen);
        }
    }

    private static final class VisibleWhenTrue implements ConfigDef.Recommender {
        private final String booleanKey;

        VisibleWhenTrue(String booleanKey) {
            this.booleanKey = booleanKey;
        }

        @Override
        public List<Object> validValues(String name, Map<String, Object> parsedConfig) {
            return Collections.emptyList();
        }

        @Override
        public boolean visible(String name, Map<String, Object> parsedConfig) {
            return Boolean.TRUE.equals(parsedConfig.get(booleanKey));
        }
    }
}
