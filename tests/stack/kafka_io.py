"""Produce / consume / admin helpers over confluent-kafka (librdkafka)."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Bytesish = Union[bytes, str, dict, list, None]


def _to_bytes(v: Any) -> Optional[bytes]:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return json.dumps(v).encode("utf-8")  # dict / list / number / bool → JSON


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list = field(default_factory=list)  # [(name, bytes|None)]

    def header(self, name: str) -> Optional[bytes]:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def headers_dict(self) -> dict:
        """{name: str} (last wins), values decoded as UTF-8."""
        return {k: (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v)
                for k, v in self.headers}

    def json(self) -> Any:
        return None if self.value is None else json.loads(self.value)


class Kafka:
    def __init__(self, bootstrap_servers: str):
        self.bootstrap_servers = bootstrap_servers
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 2})

    # -- admin -------------------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int = 1, config: Optional[dict] = None,
                     timeout: float = 30) -> None:
        fs = self.admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                                      request_timeout=timeout)
        try:
            fs[topic].result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise

    def delete_topic(self, topic: str, timeout: float = 30) -> None:
        fs = self.admin.delete_topics([topic], request_timeout=timeout)
        try:
            fs[topic].result(timeout)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc):
                raise

    def topics(self, timeout: float = 10) -> list:
        return sorted(self.admin.list_topics(timeout=timeout).topics)

    def end_offsets(self, topic: str, timeout: float = 10) -> dict:
        c = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": f"e2e-peek-{uuid.uuid4().hex}",
                      "enable.auto.commit": False})
        try:
            md = c.list_topics(topic, timeout=timeout)
            parts = md.topics[topic].partitions if topic in md.topics else {}
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in parts}
        finally:
            c.close()

    def committed(self, group: str, topic: str, timeout: float = 10) -> dict:
        """Committed offsets of a consumer group (a sink connector's group is ``connect-<name>``)."""
        c = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": group,
                      "enable.auto.commit": False})
        try:
            md = c.list_topics(topic, timeout=timeout)
            parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
            return {tp.partition: tp.offset for tp in c.committed(parts, timeout=timeout)}
        finally:
            c.close()

    def group_assignment(self, group: str, timeout: float = 10) -> tuple[str, dict]:
        """A consumer group's state (``STABLE``, ``PREPARING_REBALANCE``, ...) and each member's
        assigned partitions as ``{client_id: [(topic, partition), ...]}``."""
        described = self.admin.describe_consumer_groups([group], request_timeout=timeout)[group].result()
        members = {m.client_id: sorted((tp.topic, tp.partition) for tp in (m.assignment.topic_partitions or []))
                   for m in described.members}
        return described.state.name, members

    # -- produce -----------------------------------------------------------------------------
    def producer(self, **conf) -> Producer:
        return Producer({"bootstrap.servers": self.bootstrap_servers, "linger.ms": 5,
                         "enable.idempotence": True, "log_level": 3, **conf})

    def produce(self, topic: str, records: Iterable, timeout: float = 30, partition: Optional[int] = None) -> int:
        """Produce and flush. Each record: a value, or a ``(key, value)`` / ``(key, value, headers)``
        tuple, or a dict ``{"key","value","headers","partition"}``. Keys/values: bytes, str, or
        anything JSON-serialisable (dict → JSON bytes); ``None`` value = tombstone. Headers: dict or
        list of ``(name, value)``. Raises on any delivery error; returns the count."""
        p = self.producer()
        errors = []

        def on_delivery(err, _msg):
            if err is not None:
                errors.append(err)

        n = 0
        for rec in records:
            if isinstance(rec, dict) and "value" in rec:
                key, value, headers, part = rec.get("key"), rec["value"], rec.get("headers"), rec.get("partition", partition)
            elif isinstance(rec, tuple):
                key, value, headers = (rec + (None,))[:3] if len(rec) == 2 else rec
                part = partition
            else:
                key, value, headers, part = None, rec, None, partition
            if isinstance(headers, dict):
                headers = list(headers.items())
            hdrs = [(k, _to_bytes(v)) for k, v in (headers or [])]
            kw = {"key": _to_bytes(key), "value": _to_bytes(value), "headers": hdrs or None,
                  "on_delivery": on_delivery}
            if part is not None:
                kw["partition"] = part
            while True:
                try:
                    p.produce(topic, **kw)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            n += 1
        remaining = p.flush(timeout)
        if remaining:
            raise AssertionError(f"{remaining} message(s) to {topic} not delivered within {timeout}s")
        if errors:
            raise AssertionError(f"produce to {topic} failed: {errors[:5]}")
        return n

    # -- consume -----------------------------------------------------------------------------
    def consume_all(self, topic: str, expected: Optional[int] = None, timeout: float = 30,
                    idle: float = 2.0) -> list:
        """Read ``topic`` from the beginning with a throw-away group. Stops when ``expected``
        messages were read (fails if fewer arrive within ``timeout``), or — without
        ``expected`` — once the end offsets seen at start are reached and nothing new came for
        ``idle`` seconds."""
        c = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": f"e2e-{uuid.uuid4().hex}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "topic.metadata.refresh.interval.ms": 1000})
        out: list = []
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + timeout
            last_msg = time.monotonic()
            while time.monotonic() < deadline:
                if expected is not None and len(out) >= expected:
                    break
                m = c.poll(0.2)
                if m is None:
                    if expected is None and time.monotonic() - last_msg >= idle:
                        if c.assignment():
                            if self._at_end(c):
                                break
                        elif topic not in c.list_topics(timeout=5).topics:
                            break  # no such topic (e.g. a DLQ nobody wrote to): nothing to read
                    continue
                if m.error():
                    if m.error().code() in (-191,):  # _PARTITION_EOF
                        continue
                    if "UNKNOWN_TOPIC" in str(m.error()):
                        continue
                    raise AssertionError(f"consume {topic}: {m.error()}")
                last_msg = time.monotonic()
                out.append(Message(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                   list(m.headers() or [])))
        finally:
            c.close()
        if expected is not None and len(out) < expected:
            raise AssertionError(f"expected {expected} message(s) on {topic} within {timeout}s, got {len(out)}: "
                                 f"{[(x.key, (x.value or b'')[:200]) for x in out]}")
        return out

    @staticmethod
    def _at_end(c: Consumer) -> bool:
        for tp in c.assignment():
            lo, hi = c.get_watermark_offsets(tp, timeout=5, cached=False)
            pos = c.position([tp])[0].offset
            if hi > 0 and (pos < 0 or pos < hi):
                if pos < 0 and hi == lo:
                    continue
                return False
        return True
