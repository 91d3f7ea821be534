"""``python -m tests.stack.demo [--keep] [--count N]`` (run by bin/demo).

Starts emulator + KRaft broker + Connect worker, creates an INSERT connector into Contact, produces
sample contacts, waits until the emulator holds them and prints them as a table. Stops everything
at the end, or with ``--keep`` keeps running (URLs printed) until Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .stack import Stack

PEOPLE = [
    ("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing"), ("Edsger", "Dijkstra"),
    ("Barbara", "Liskov"), ("Donald", "Knuth"), ("Margaret", "Hamilton"), ("John", "McCarthy"),
    ("Frances", "Allen"), ("Ken", "Thompson"), ("Radia", "Perlman"), ("Dennis", "Ritchie"),
]


def table(rows: list, cols: list) -> str:
    widths = [max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) if rows else len(c) for c in cols]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |", line]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "") or "").ljust(w) for c, w in zip(cols, widths)) + " |")
    out.append(line)
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the stack running until Ctrl-C")
    ap.add_argument("--count", type=int, default=10, help="contacts to produce (default 10)")
    args = ap.parse_args(argv)

    stack = Stack(run_id="demo-" + time.strftime("%Y%m%d-%H%M%S"))
    try:
        print("Starting emulator, Kafka broker (KRaft) and Connect worker ...", flush=True)
        stack.start()
        print(f"Stack up in {stack.startup_seconds:.1f}s", flush=True)
        topic, name = "demo-contacts", "salesforce-demo"
        config = stack.sink_config(topic)
        stack.connect.create(name, config)
        stack.connect.wait_running(name, tasks=1, timeout=60)
        print(f"Connector {name} RUNNING", flush=True)

        people = [PEOPLE[i % len(PEOPLE)] for i in range(args.count)]
        values = [{"FirstName": f, "LastName": l,
                   "Email": f"{f.lower()}.{l.lower()}{i}@example.com"} for i, (f, l) in enumerate(people)]
        stack.kafka.produce(topic, [(f"contact-{i}", v) for i, v in enumerate(values)])
        print(f"Produced {len(values)} records to {topic}", flush=True)

        t0 = time.monotonic()
        records = stack.emu.wait_records("Contact", len(values), timeout=60,
                                         diagnostics=lambda: stack.connect.describe(name))
        print(f"\nThe emulator holds {len(records)} Contact(s) ({time.monotonic() - t0:.1f}s after producing):")
        print(table(records, ["Id", "FirstName", "LastName", "Email"]))
        started = os.environ.get("DEMO_STARTED_EPOCH")
        if started:
            elapsed = int(time.time() - float(started))
            print(f"\nContacts in Salesforce (emulator) {elapsed // 60} min {elapsed % 60} s after bin/demo started",
                  flush=True)

        if args.keep:
            print("\nRunning until Ctrl-C:")
            print(f"  Kafka bootstrap   {stack.bootstrap_servers}")
            print(f"  Connect REST      {stack.worker.url}   (GET /connectors/{name}/status)")
            print(f"  Emulator          {stack.emulator_url}   (GET /__emulator/records/Contact)")
            print(f"  Logs              {stack.dir}")
            sys.stdout.flush()
            while True:
                time.sleep(3600)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        print("Stopping ...", flush=True)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
