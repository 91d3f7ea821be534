# Shared by bin/build-native, bin/check-package and bin/release (sourced; expects ROOT set).

# The platforms a release carries. manifest.json, README and the jar must all name exactly these;
# bin/check-package fails the build otherwise.
SHIPPED_PLATFORMS="linux-x86_64 linux-aarch64"
# The oldest glibc the Linux libraries load on; NativeLibrary.MIN_GLIBC says the same to operators.
GLIBC_MIN="2.17"
STAGE_DIR="$ROOT/target/native"
ZIG_VERSION="0.13.0"
CARGO_ZIGBUILD_VERSION="0.24.1"
TOOLS_DIR="$ROOT/.work/tools"

# The checkout's and cargo's paths end up in panic locations; mapping them to fixed names makes the
# library the same bytes from any checkout (and keeps build paths out of the shipped file). Builds
# that should share compiled dependencies with the library's (the emulator's) use the same flags.
export_native_rustflags() {
  case "${RUSTFLAGS:-}" in
    *--remap-path-prefix=*) ;;
    *) export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$ROOT=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" ;;
  esac
}

# The host's platform name (linux-x86_64, linux-aarch64, ...).
host_platform() {
  echo "$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m | sed 's/arm64/aarch64/')"
}

rust_triple() {
  case "$1" in
    linux-x86_64) echo x86_64-unknown-linux-gnu ;;
    linux-aarch64) echo aarch64-unknown-linux-gnu ;;
    *) echo "no Rust target known for platform $1" >&2; return 1 ;;
  esac
}

# zig and cargo-zigbuild from PyPI in a private venv, on PATH through .work/tools/bin (cargo-zigbuild
# runs `zig`); the target's Rust standard library from rustup.
ensure_zig_toolchain() {
  local triple="$1" venv="$TOOLS_DIR/zig-venv"
  # Both from PyPI as prebuilt wheels: compiling cargo-zigbuild from crates.io took minutes of a
  # newcomer's first run.
  if [[ ! -x "$TOOLS_DIR/bin/zig" || "$("$TOOLS_DIR/bin/zig" version 2>/dev/null)" != "$ZIG_VERSION" \
        || "$("$TOOLS_DIR/bin/cargo-zigbuild" --version 2>/dev/null | awk '{print $2}')" != "$CARGO_ZIGBUILD_VERSION" ]]; then
    printf '\n==> zig %s and cargo-zigbuild %s from PyPI -> %s\n' "$ZIG_VERSION" "$CARGO_ZIGBUILD_VERSION" "$venv" >&2
    local py
    py="$(command -v python3.11 || command -v python3)"
    [[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q "ziglang==$ZIG_VERSION" \
      "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" </dev/null
    mkdir -p "$TOOLS_DIR/bin"
    printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$venv/bin/python" >"$TOOLS_DIR/bin/zig"
    chmod +x "$TOOLS_DIR/bin/zig"
    ln -sf "$venv/bin/cargo-zigbuild" "$TOOLS_DIR/bin/cargo-zigbuild"
  fi
  export PATH="$TOOLS_DIR/bin:$PATH"
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    printf '\n==> rustup target add %s\n' "$triple" >&2
    rustup target add "$triple" </dev/null
  fi
}

# Fails when any dynamic symbol of the library needs a glibc newer than GLIBC_MIN.
check_glibc() {
  local lib="$1" newest
  command -v objdump >/dev/null || { echo "check_glibc: objdump not found: install binutils" >&2; return 1; }
  newest="$(objdump -T "$lib" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
  if [[ -z "$newest" ]]; then
    echo "check_glibc: no GLIBC symbol versions in $lib (objdump -T); is it a glibc build?" >&2
    return 1
  fi
  if [[ "$(printf '%s\n%s\n' "$GLIBC_MIN" "$newest" | sort -V | tail -n 1)" != "$GLIBC_MIN" ]]; then
    echo "check_glibc: $lib needs GLIBC_$newest, newer than the supported minimum GLIBC_$GLIBC_MIN:" >&2
    objdump -T "$lib" | grep "GLIBC_$newest" >&2
    return 1
  fi
  printf 'glibc check: %s needs at most GLIBC_%s (limit GLIBC_%s)\n' "${lib#"$ROOT"/}" "$newest" "$GLIBC_MIN" >&2
}
