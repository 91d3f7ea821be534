# Shared by bin/test and bin/demo (sourced; expects ROOT set and `set -euo pipefail`).
# Installs what the end-to-end stack needs, idempotently: the Python venv (tests/.venv) and the
# Kafka 4.1.1 jars from Maven Central (tests/.kafka/libs-4.1.1).

VENV="$ROOT/tests/.venv"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*" >&2; }

pick_python() {
  local py
  for py in python3.11 python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "no Python >= 3.9 found (python3.11 / python3)" >&2
  return 1
}

ensure_venv() {
  local req="$ROOT/tests/requirements.txt" stamp="$VENV/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  step "python venv tests/.venv + tests/requirements.txt"
  if [[ ! -x "$VENV/bin/python" ]]; then
    local py; py="$(pick_python)"
    "$py" -m venv "$VENV" || { rm -rf "$VENV"; "$py" -m pip install -q --user virtualenv && "$py" -m virtualenv -q "$VENV"; }
  fi
  "$VENV/bin/python" -m pip install -q -r "$req" </dev/null
  echo "$want" > "$stamp"
}

ensure_kafka_libs() {
  if [[ ! -f "$ROOT/tests/.kafka/libs-4.1.1/.complete" ]]; then
    step "Kafka 4.1.1 jars (Maven Central) -> tests/.kafka/libs-4.1.1"
  fi
  "$VENV/bin/python" -c "from tests.stack.kafka_libs import ensure_kafka_libs; ensure_kafka_libs()" </dev/null
}
