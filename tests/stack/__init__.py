"""End-to-end test stack: Salesforce emulator + KRaft Kafka broker + Kafka Connect worker(s),
all local processes on 127.0.0.1 (no Docker). See tests/stack/stack.py."""
from .connect import CONNECTOR_CLASS, Connect, ConnectError
from .emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, EmulatorProcess
from .stack import Stack, find_plugin_zip, unpack_plugin
from .util import REPO_ROOT, WaitTimeout, grep, tail, wait_until

__all__ = [
    "CONNECTOR_CLASS", "Connect", "ConnectError", "DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET",
    "Emulator", "EmulatorProcess", "Stack", "find_plugin_zip", "unpack_plugin", "REPO_ROOT",
    "WaitTimeout", "grep", "tail", "wait_until",
]
