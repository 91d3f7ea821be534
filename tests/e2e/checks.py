"""Checks shared by the integrity and generative suites (issue 8) that the single-topic helpers of
``test_operations`` do not cover: DLQ entries keyed by their full source coordinates, committed
offsets of several topics, RegexRouter configs, eviction messages in the worker log.
"""
from __future__ import annotations


from .test_operations import wait_consumed

MSG = "__connect.errors.exception.message"
TOPIC = "__connect.errors.topic"
PARTITION = "__connect.errors.partition"
OFFSET = "__connect.errors.offset"


def wait_all_consumed(e2e, name: str, topics, timeout: float = 90) -> None:
    """Until the connector's group committed the end of every topic (every record was written,
    skipped or reported). Offsets are committed by the original (pre-SMT) topic."""
    for t in topics:
        wait_consumed(e2e, name, t, timeout=timeout)


def dlq_entries(e2e, dlq: str, timeout: float = 20, rebalanced: bool = False) -> dict:
    """{(source topic, partition, offset): message} of the DLQ (the DLQ context headers carry the
    record's original coordinates, before any SMT). Fails on a record reported twice, unless the
    partitions moved between tasks (``rebalanced``): a record reported, but whose offset could not
    be committed yet because an earlier one was still being written, is reported again by the next
    owner (at-least-once); the same record must then carry the same cause."""
    out = {}
    for m in e2e.consume_all(dlq, timeout=timeout):
        h = m.headers_dict()
        where = (h[TOPIC], int(h[PARTITION]), int(h[OFFSET]))
        if where in out and rebalanced:
            assert _cause(out[where]) == _cause(h.get(MSG) or ""), f"{where} reported twice with different causes"
            continue
        assert where not in out, f"{where} reported twice: {out[where]!r} / {h.get(MSG)!r}"
        out[where] = h.get(MSG) or ""
    return out


def regex_router(regex: str, replacement: str, name: str = "rename") -> dict:
    return {
        "transforms": name,
        f"transforms.{name}.type": "org.apache.kafka.connect.transforms.RegexRouter",
        f"transforms.{name}.regex": regex,
        f"transforms.{name}.replacement": replacement,
    }


def eviction_lines(e2e, name: str) -> list:
    """Worker-log lines in which the consumer of connector ``name`` was evicted from its group
    (or gave up its membership) because poll() came later than max.poll.interval.ms."""
    group = f"connect-{name}"
    lines = e2e.worker_log_grep("consumer poll timeout") + e2e.worker_log_grep("max.poll.interval.ms")
    # The consumer's config dump also prints "max.poll.interval.ms = N", on a line of its own
    # without the group: only lines naming this connector's group or client count.
    return sorted({ln for ln in lines if group in ln or f"connector-consumer-{name}-" in ln})


def _cause(message: str) -> str:
    """A DLQ message without its location suffix (`[key …, topic … partition … offset …]`)."""
    return message.rsplit(" [", 1)[0]
