"""Benchmark suite of the Salesforce sink connector: ``bin/bench`` (``python -m bench.run``).

One stack (KRaft broker + Connect worker + Salesforce emulator, from tests/stack), every
measurement in one run, one markdown table. See bench/RESULTS.md for the last committed run.
"""
