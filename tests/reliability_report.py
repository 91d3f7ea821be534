"""Figures of the reliability suites: ``record()`` merges one scenario's figures into
``tests/.work/reliability.json``; ``python -m tests.reliability_report`` renders ``tests/RELIABILITY.md``
from that file.

    python -m tests.reliability_report            # writes tests/RELIABILITY.md
    python -m tests.reliability_report --stdout   # prints it instead
    python -m tests.reliability_report --keep-missing  # keeps the rows of scenarios not re-run

``--keep-missing`` is for a run of some of the suites: scenarios found in the existing
``RELIABILITY.md`` but not in the figures file keep their row and details section verbatim.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
FIGURES = Path(os.environ.get("RELIABILITY_FIGURES", TESTS_DIR / ".work" / "reliability.json"))
OUTPUT = TESTS_DIR / "RELIABILITY.md"

# column -> (title, default)
COLUMNS = [
    ("sent", "sent"),
    ("written", "written"),
    ("dlq", "in DLQ"),
    ("duplicates", "duplicates"),
    ("lost", "lost"),
    ("faults_injected", "faults injected"),
    ("restarts", "restarts survived"),
    ("seconds", "seconds"),
]


def load(path: Path = FIGURES) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record(scenario: str, figures: dict, path: Path = FIGURES) -> None:
    """Merge ``figures`` for ``scenario`` (with a timestamp) into the figures file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load(path)
    data[scenario] = {**figures, "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    # Messages may quote hostile input (NUL, newlines, pipes): keep the table one line a row.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(v))
    return text.replace("|", "\\|")


def existing_sections(text: str) -> dict:
    """{scenario: (table row, details section or None)} of a rendered RELIABILITY.md."""
    rows, sections = {}, {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| scenario |") and not line.startswith("| case |"):
            name = line[2:].split(" | ", 1)[0]
            if name and name not in rows and "## Details" not in text.split(line, 1)[0]:
                rows[name] = line
    if "\n## Details\n" in text:
        for chunk in text.split("\n## Details\n", 1)[1].split("\n### ")[1:]:
            name = chunk.split("\n", 1)[0].strip()
            sections[name] = "### " + chunk.strip("\n")
    return {name: (row, sections.get(name)) for name, row in rows.items()}


def render(data: dict, kept: dict | None = None) -> str:
    """Markdown of ``data``; ``kept`` ({scenario: (row, section)}) adds scenarios absent from it verbatim."""
    kept = {n: v for n, v in (kept or {}).items() if n not in data}
    out = [
        "# Reliability",
        "",
        "Figures from the last run of the reliability suites (`tests/e2e/test_reliability.py`,",
        "`tests/e2e/test_bad_input.py`, `tests/e2e/test_integrity.py`, `tests/e2e/test_generative.py`)",
        "against a real KRaft broker, real Connect worker(s) and the Salesforce emulator (`bin/test` with",
        "`RELIABILITY=1` runs them with the rest). Regenerate with:",
        "",
        "```",
        "RELIABILITY=1 tests/.venv/bin/python -m pytest tests/e2e/test_reliability.py tests/e2e/test_bad_input.py \\",
        "    tests/e2e/test_integrity.py tests/e2e/test_generative.py",
        "tests/.venv/bin/python -m tests.reliability_report",
        "```",
        "",
        "(after running only some of them: `--keep-missing` keeps the other scenarios' rows as they were)",
        "",
        "*written* = records whose effect the emulator's final state shows (their key ends where the",
        "one-by-one model says: present with the model's fields, or gone), counted from that state, not",
        "as sent minus DLQ (bad input: the good records found in the emulator);",
        "*lost* = records whose effect is missing from the emulator's final state compared with the",
        "one-by-one model of the stream (must be 0); *duplicates* = extra Salesforce records for one",
        "logical record.",
        "",
        "| scenario | " + " | ".join(t for _, t in COLUMNS) + " | recorded |",
        "|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for name in sorted(set(data) | set(kept)):
        if name in kept:
            out.append(kept[name][0])
            continue
        row = data[name]
        out.append(f"| {name} | " + " | ".join(_cell(row.get(k)) for k, _ in COLUMNS)
                   + f" | {row.get('recorded_at', '')} |")
    details = [(n, data.get(n)) for n in sorted(set(data) | set(kept))
               if (n in kept and kept[n][1]) or (n in data and (data[n].get("details") or data[n].get("notes")))]
    if details:
        out += ["", "## Details", ""]
        for name, row in details:
            if row is None:
                out += [kept[name][1], ""]
                continue
            out.append(f"### {name}")
            out.append("")
            if row.get("notes"):
                out.append(row["notes"])
                out.append("")
            d = row.get("details")
            if isinstance(d, dict):
                for k, v in d.items():
                    out.append(f"- **{k}**: {_cell(v)}")
                out.append("")
            elif isinstance(d, list):
                out.append("| case | expected | outcome |")
                out.append("|---|---|---|")
                for item in d:
                    out.append(f"| {_cell(item.get('case'))} | {_cell(item.get('expected'))} | {_cell(item.get('outcome'))} |")
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", default=str(FIGURES))
    ap.add_argument("--output", default=str(OUTPUT))
    ap.add_argument("--stdout", action="store_true")
    ap.add_argument("--keep-missing", action="store_true",
                    help="keep scenarios of the existing output that the figures file does not hold")
    args = ap.parse_args(argv)
    data = load(Path(args.figures))
    if not data:
        print(f"no figures in {args.figures}: run the reliability suites first", file=sys.stderr)
        return 1
    kept = {}
    if args.keep_missing and Path(args.output).exists():
        kept = existing_sections(Path(args.output).read_text())
    text = render(data, kept)
    if args.stdout:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        kept_only = len(set(kept) - set(data))
        print(f"wrote {args.output} ({len(data)} scenarios" + (f", {kept_only} kept as they were)" if kept_only else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
