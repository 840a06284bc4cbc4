#!/usr/bin/env bash
# nanotoll one-command set-up (run by `make setup`).
#
# Installs or checks everything the project needs, one line per step:
#   node      Node.js >= 20 and npm are present
#   apt       Debian packages (mosquitto, qemu-system-arm, arm-none-eabi gcc/newlib,
#             postgresql, build tools, chromium for the dashboard's browser test);
#             installs the missing ones when root
#   venv      .venv with `pip install -e '.[dev]'`       (keyed by pyproject.toml)
#   npm       node_modules via `npm ci`                  (keyed by package*.json)
#   mpy-src   MicroPython source from Debian's source package, kept in the
#             download cache ($NANOTOLL_CACHE, default .toolchain/cache)
#   mbedtls-src mbedTLS 3 source from Debian's source package (the unix port's TLS;
#             Debian 12's libmbedtls-dev is 2.28, which MicroPython 1.25 cannot use)
#   mpy-*     mpy-cross, unix port, qemu MPS2_AN385 port (keyed by version+flags)
#   mpy-unix  the unix port with TLS (mbedTLS in lib/mbedtls, boards/unix/manifest.py
#             frozen: asyncio and ssl), built in .toolchain/unix/build and renamed
#             into place as .toolchain/unix/micropython, so a running test never
#             sees half a binary. Outside CI, without the mbedTLS source it builds
#             without TLS and says so; under CI=true that is a failure.
#   mpy-board the emulated nanotoll board: the qemu port with BOARD_DIR=boards/qemu_mps2
#             (keyed by the board files' hash) -> .toolchain/qemu-nanotoll/firmware.elf
#   paths     stable links under .toolchain/bin and .toolchain/qemu
#
# `tools/setup.sh apt venv` runs only the named steps.
# Every finished step leaves a stamp holding the key of what it did, next to
# what it made; a second run with nothing changed redoes nothing.
# Logs of the last run: .toolchain/logs/<step>.log
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TC=$ROOT/.toolchain
CACHE=${NANOTOLL_CACHE:-$TC/cache}
LOGS=$TC/logs
JOBS=${NANOTOLL_JOBS:-$(nproc 2>/dev/null || echo 2)}

NODE_MIN=20
APT_PACKAGES=(
  mosquitto
  qemu-system-arm
  gcc-arm-none-eabi
  libnewlib-arm-none-eabi
  postgresql
  build-essential
  pkg-config
  xz-utils
  debian-archive-keyring
  strace
  chromium
)

MPY_VERSION=1.25.0
MPY_SUITE=trixie
MPY_ORIG=micropython_${MPY_VERSION}+ds.orig.tar.xz
MPY_DIR=$TC/micropython-$MPY_VERSION
MPY_DL=$CACHE/micropython-$MPY_VERSION
MPY_MANIFEST=$TC/manifest-asyncio.py
MPY_UNIX_FLAGS=(MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 MICROPY_SSL_AXTLS=0)
MPY_UNIX_TLS=(MICROPY_PY_SSL=1 MICROPY_SSL_MBEDTLS=1)
MPY_UNIX_NO_TLS=(MICROPY_PY_SSL=0 MICROPY_SSL_MBEDTLS=0)
UNIX_MANIFEST=$ROOT/boards/unix/manifest.py
UNIX_OUT=$TC/unix
# mbedTLS as Debian 13 ships it (MicroPython 1.25 wants mbedTLS 3).
MBEDTLS_VERSION=3.6.6
MBEDTLS_ORIG=mbedtls_${MBEDTLS_VERSION}.orig.tar.bz2
MBEDTLS_DL=$CACHE/mbedtls-$MBEDTLS_VERSION
MPY_QEMU_BOARD=MPS2_AN385
# Bump when the build recipe below changes, so finished builds are redone.
MPY_RECIPE=2
# The same for the unix port alone.
UNIX_RECIPE=3
# The emulated board's build inputs (boards/qemu_mps2 also holds Python for the board).
BOARD_DIR=$ROOT/boards/qemu_mps2
BOARD_OUT=$TC/qemu-nanotoll
MPY_SMOKE='import asyncio, hashlib, struct, json, binascii, os, time, socket, select; print(1)'
TLS_SMOKE='import ssl, tls; ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); print(1)'

mkdir -p "$TC" "$LOGS" "$CACHE"

# Builds below must not see the flags of a calling make (make setup VAR=...),
# nor take this repository's git hash for MicroPython's version string.
unset MAKEFLAGS MFLAGS MAKELEVEL
export GIT_CEILING_DIRECTORIES=$TC

# ---------------------------------------------------------------- helpers --

STATE=$(mktemp -d "${TMPDIR:-/tmp}/nanotoll-setup.XXXXXX")
trap 'rm -rf "$STATE"' EXIT
N_STEPS=0
N_CACHED=0
T_START=$EPOCHREALTIME

# Microseconds between two $EPOCHREALTIME readings, printed as seconds.
elapsed() {
  local us=$(( ${2/./} - ${1/./} ))
  local ds=$(( (us + 50000) / 100000 ))
  printf '%d.%ds' $((ds / 10)) $((ds % 10))
}

# Called inside a step: mark it as having had nothing to do.
cached() { echo cached >"$STATE/cached"; }
# Called inside a step: a short word or two for its "ok" line.
note() { printf '%s' "$*" >"$STATE/note"; }
# Called inside a step: stop it with a reason and a fix.
fail() {
  printf '%s\n' "$1" >"$STATE/why"
  printf '%s\n' "${2:-}" >"$STATE/fix"
  exit 1
}

sha() { sha256sum "$@" | awk '{print $1}' | sha256sum | cut -c1-16; }
sha_str() { printf '%s' "$*" | sha256sum | cut -c1-16; }
stamp_is() { [[ -f $1 && "$(cat "$1")" == "$2" ]]; }

# step LABEL FUNCTION: run FUNCTION (in a subshell with errexit, output in its
# log) and print one line about it.
step() {
  local label=$1 fn=$2 t0 rc extra=""
  local log=$LOGS/${fn#step_}.log
  rm -f "$STATE/cached" "$STATE/note" "$STATE/why" "$STATE/fix"
  t0=$EPOCHREALTIME
  N_STEPS=$((N_STEPS + 1))
  set +e
  ( set -e; "$fn" ) >"$log" 2>&1
  rc=$?
  set -e
  local dt
  dt=$(elapsed "$t0" "$EPOCHREALTIME")
  if ((rc == 0)); then
    [[ -f $STATE/cached ]] && { extra=", cached"; N_CACHED=$((N_CACHED + 1)); }
    [[ -s $STATE/note ]] && extra="$extra, $(cat "$STATE/note")"
    echo "setup: $label ... ok ($dt$extra)"
    return 0
  fi
  echo "setup: $label ... FAILED ($dt)"
  if [[ -s $STATE/why ]]; then
    sed 's/^/setup:   why: /' "$STATE/why"
  else
    echo "setup:   why: a command exited with status $rc (see the log lines below)"
  fi
  [[ -s $STATE/fix ]] && sed 's/^/setup:   fix: /' "$STATE/fix"
  if [[ -s $log ]]; then
    echo "setup:   log: ${log#"$ROOT"/} (last lines):"
    tail -n 15 "$log" | sed 's/^/setup:   | /'
  fi
  exit 1
}

as_root() { [[ ${NANOTOLL_FAKE_EUID:-$EUID} -eq 0 ]]; }
in_ci() { [[ ${CI:-} == true ]]; }

# ------------------------------------------------------------------ steps --

step_node() {
  command -v node >/dev/null ||
    fail "Node.js is not installed (no 'node' on PATH)." \
      "Install Node.js $NODE_MIN or newer with npm, then re-run 'make setup'."
  local v major
  v=$(node -p 'process.versions.node')
  major=${v%%.*}
  ((major >= NODE_MIN)) ||
    fail "Node.js $v is too old: anvil/forge packages and tools/solc need Node >= $NODE_MIN." \
      "Install Node.js $NODE_MIN or newer (Debian 12's nodejs is 18), then re-run 'make setup'."
  command -v npm >/dev/null ||
    fail "npm is not installed (Node.js $v has no 'npm' on PATH)." \
      "Install npm for Node.js $v, then re-run 'make setup'."
  note "node v$v, npm $(npm --version 2>/dev/null)"
  cached
}

apt_missing() {
  local p status
  for p in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $status == ii* ]] || echo "$p"
  done
}

step_apt() {
  command -v dpkg-query >/dev/null ||
    fail "dpkg-query not found: this set-up expects Debian (12 or newer)." \
      "Run on Debian, or install by hand: ${APT_PACKAGES[*]}"
  local missing
  missing=$(apt_missing | xargs)
  if [[ -z $missing ]]; then
    note "${#APT_PACKAGES[@]} present"
    cached
    return 0
  fi
  echo "missing: $missing"
  as_root ||
    fail "Debian packages missing and not running as root: $missing" \
      "sudo apt-get install -y $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q ||
    fail "'apt-get update' failed (is the Debian mirror reachable?)." \
      "Check /etc/apt/sources.list.d/ and the network, then re-run 'make setup'."
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing ||
    fail "'apt-get install' refused or failed for: $missing" \
      "Run 'apt-get install -y $missing' by hand to see why (held or unknown packages?)."
  missing=$(apt_missing | xargs)
  [[ -z $missing ]] ||
    fail "still not installed after apt-get install: $missing" \
      "Run 'apt-get install -y $missing' by hand to see why."
  note "installed"
}

step_venv() {
  local py=${NANOTOLL_PYTHON:-python3}
  command -v "$py" >/dev/null ||
    fail "$py not found." "Install Python >= 3.11 (Debian: python3 python3-venv)."
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    fail "$("$py" --version 2>&1) is too old: pyproject.toml requires Python >= 3.11." \
      "Install Python 3.11 or newer, or set NANOTOLL_PYTHON=/path/to/python3.11."
  local pyver key
  pyver=$("$py" -c 'import sys; print(sys.version.split()[0])')
  key="$pyver $(sha pyproject.toml)"
  if [[ -x .venv/bin/python ]] && stamp_is .venv/.nanotoll-stamp "$key"; then
    note "python $pyver"
    cached
    return 0
  fi
  if ! [[ -x .venv/bin/python ]] ||
    [[ "$(.venv/bin/python -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" != "$pyver" ]]; then
    rm -f .venv/.nanotoll-stamp
    "$py" -m venv --clear .venv ||
      fail "'$py -m venv' failed." "On Debian: apt-get install -y python3-venv"
  fi
  .venv/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]' ||
    fail "'pip install -e .[dev]' failed (a package refused, or PyPI unreachable)." \
      "See the log; fix pyproject.toml or the network, then re-run 'make setup'."
  echo "$key" >.venv/.nanotoll-stamp
  note "python $pyver"
}

# slither pins web3 < 8 while the project needs web3 8: it gets a venv of its own.
SLITHER_VERSION=0.11.6
step_slither() {
  local py=${NANOTOLL_PYTHON:-python3} dir=$TC/slither key
  key="slither-analyzer==$SLITHER_VERSION $("$py" -c 'import sys; print(sys.version.split()[0])')"
  if [[ -x $dir/bin/slither ]] && stamp_is "$dir/.nanotoll-stamp" "$key"; then
    note "$SLITHER_VERSION"
    cached
    return 0
  fi
  rm -rf "$dir"
  "$py" -m venv "$dir" || fail "'$py -m venv' failed for slither." "apt-get install -y python3-venv"
  "$dir/bin/python" -m pip install --disable-pip-version-check -q \
    "slither-analyzer==$SLITHER_VERSION" ||
    fail "'pip install slither-analyzer==$SLITHER_VERSION' failed." \
      "See the log; PyPI unreachable or the version withdrawn."
  echo "$key" >"$dir/.nanotoll-stamp"
  note "$SLITHER_VERSION"
}

# Each board's MicroPython stubs in a folder of its own: installed together, the esp32 and
# rp2 packages overwrite each other's modules. tests/firmware/test_agent_typecheck.py uses them.
STUBS_PINS="micropython-stdlib-stubs==1.29.0.post2"
step_stubs() {
  local kind key dir
  key="$STUBS_PINS micropython-esp32-stubs==1.29.0.post1 micropython-rp2-stubs==1.29.0.post1"
  if stamp_is "$TC/stubs/.nanotoll-stamp" "$key"; then
    cached
    return 0
  fi
  for kind in esp32 rp2; do
    dir=$TC/stubs/$kind
    rm -rf "$dir"
    .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --target "$dir" \
      "micropython-$kind-stubs==1.29.0.post1" "$STUBS_PINS" ||
      fail "pip could not install the $kind stubs." "See the log; PyPI unreachable?"
  done
  echo "$key" >"$TC/stubs/.nanotoll-stamp"
  note "esp32, rp2"
}

step_npm() {
  [[ -f package-lock.json ]] ||
    fail "package-lock.json is missing." "Restore it from git: git checkout -- package-lock.json"
  local key
  key="node$(node -p 'process.versions.node.split(".")[0]') $(sha package.json package-lock.json .npmrc)"
  if stamp_is node_modules/.nanotoll-stamp "$key"; then
    cached
    return 0
  fi
  npm ci --no-audit --no-fund ||
    fail "'npm ci' failed (registry unreachable, or package-lock.json out of step with package.json)." \
      "See the log; if package.json changed, run 'npm install --package-lock-only' and commit the lock."
  local tool
  for tool in anvil forge; do
    [[ -x node_modules/@foundry-rs/$tool-linux-amd64/bin/$tool ]] ||
      fail "npm ci finished but $tool is missing from node_modules." \
        "Check that @foundry-rs/$tool-linux-amd64 is in package.json (x86-64 Linux only)."
  done
  echo "$key" >node_modules/.nanotoll-stamp
}

# The Debian mirror this machine already uses, read at run time (never stored).
debian_uri() {
  if [[ -n ${NANOTOLL_DEBIAN_URI:-} ]]; then
    echo "$NANOTOLL_DEBIAN_URI"
    return
  fi
  local f=/etc/apt/sources.list.d/debian.sources uri=""
  if [[ -f $f ]]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
  fi
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++)
      if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "$uri"
}

# orig_ok DIR ORIG: DIR holds ORIG with the sha256 that DIR's .dsc lists for it.
orig_ok() {
  local want
  want=$(awk -v f="$2" '/^Checksums-Sha256:/ {on = 1; next} /^[^ ]/ {on = 0}
    on && $3 == f {print $1}' "$1"/*.dsc 2>/dev/null | head -n1)
  [[ -n $want && -f $1/$2 ]] &&
    [[ "$(sha256sum "$1/$2" | awk '{print $1}')" == "$want" ]]
}

mpy_src_ok() { orig_ok "$MPY_DL" "$MPY_ORIG"; }

# fetch_source PACKAGE DIR: `apt-get source --download-only PACKAGE` into DIR from a
# private deb-src list for $MPY_SUITE on this machine's own Debian mirror.
fetch_source() {
  local pkg=$1 dir=$2 uri apt_dir
  uri=$(debian_uri)
  [[ -n $uri ]] ||
    fail "no Debian mirror URI found in /etc/apt/sources.list.d/debian.sources or sources.list." \
      "Set NANOTOLL_DEBIAN_URI to a Debian mirror URI and re-run 'make setup'."
  [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] ||
    fail "/usr/share/keyrings/debian-archive-keyring.gpg is missing." \
      "apt-get install -y debian-archive-keyring"
  apt_dir=$CACHE/apt-$MPY_SUITE
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dir"
  printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
    "$uri" "$MPY_SUITE" >"$apt_dir/sources.list"
  local opts=(
    "-oDir::Etc::SourceList=$apt_dir/sources.list"
    "-oDir::Etc::SourceParts=/dev/null"
    "-oDir::State::Lists=$apt_dir/lists"
    "-oDir::Cache=$apt_dir/cache"
  )
  # As root apt would drop to the sandbox user _apt, who cannot write here.
  as_root && opts+=("-oAPT::Sandbox::User=root")
  apt-get "${opts[@]}" update ||
    fail "apt-get update of the private $MPY_SUITE deb-src list failed." \
      "Check that $uri serves '$MPY_SUITE' (see the log), then re-run 'make setup'."
  rm -f "$dir/${pkg}"_*
  (cd "$dir" && apt-get "${opts[@]}" source --download-only "$pkg") ||
    fail "'apt-get source --download-only $pkg' failed." \
      "See the log; Debian $MPY_SUITE must still carry $pkg."
}

step_mpy_src() {
  if mpy_src_ok; then
    note "${MPY_DL#"$ROOT"/}"
    cached
    return 0
  fi
  fetch_source micropython "$MPY_DL"
  [[ -f $MPY_DL/$MPY_ORIG ]] ||
    fail "Debian $MPY_SUITE no longer ships $MPY_ORIG (got: $(cd "$MPY_DL" && echo *))." \
      "Update MPY_VERSION in tools/setup.sh to the version Debian now has, and test it."
  mpy_src_ok ||
    fail "$MPY_ORIG does not match the sha256 in its .dsc." "Delete $MPY_DL and re-run 'make setup'."
  note "downloaded"
}

step_mpy_unpack() {
  local key
  key="$MPY_VERSION $(sha "$MPY_DL/$MPY_ORIG")"
  if stamp_is "$MPY_DIR/.nanotoll-unpacked" "$key"; then
    cached
    return 0
  fi
  local tmp=$TC/.unpack.$$
  rm -rf "$tmp" "$MPY_DIR"
  mkdir -p "$tmp"
  tar -xJf "$MPY_DL/$MPY_ORIG" -C "$tmp" --strip-components=1
  # The +ds tarball has empty submodule folders; the build only checks that
  # micropython-lib is "there" (we freeze asyncio from extmod, not from it).
  mkdir -p "$tmp/lib/micropython-lib"
  : >"$tmp/lib/micropython-lib/README.md"
  echo "$key" >"$tmp/.nanotoll-unpacked"
  mv "$tmp" "$MPY_DIR"
}

write_manifest() {
  # shellcheck disable=SC2016  # $(MPY_DIR) is for MicroPython's manifest reader
  local want='include("$(MPY_DIR)/extmod/asyncio")'
  [[ -f $MPY_MANIFEST && "$(cat "$MPY_MANIFEST")" == "$want" ]] ||
    printf '%s\n' "$want" >"$MPY_MANIFEST"
}

step_mpy_cross() {
  local key stamp=$MPY_DIR/.nanotoll-built-mpy-cross
  key="$(cat "$MPY_DIR/.nanotoll-unpacked") r$MPY_RECIPE mpy-cross"
  if [[ -x $MPY_DIR/mpy-cross/build/mpy-cross ]] && stamp_is "$stamp" "$key"; then
    cached
    return 0
  fi
  rm -f "$stamp"
  rm -rf "$MPY_DIR/mpy-cross/build"
  make -C "$MPY_DIR/mpy-cross" -j"$JOBS"
  echo "$key" >"$stamp"
}

mbedtls_src_ok() { orig_ok "$MBEDTLS_DL" "$MBEDTLS_ORIG"; }

step_mbedtls_src() {
  if mbedtls_src_ok; then
    note "${MBEDTLS_DL#"$ROOT"/}"
    cached
    return 0
  fi
  # A subshell, so that outside CI a failed fetch ends here and not the set-up.
  if ! (fetch_source mbedtls "$MBEDTLS_DL" && mbedtls_src_ok); then
    in_ci &&
      fail "no mbedTLS $MBEDTLS_VERSION source ($MBEDTLS_ORIG, checked against its .dsc) from Debian $MPY_SUITE." \
        "See the log; if Debian moved on, set MBEDTLS_VERSION in tools/setup.sh to its version and test it."
    note "not available: the unix port is built without TLS (see the log)"
    return 0
  fi
  note "downloaded"
}

# Puts Debian's mbedTLS source where MicroPython's build looks for it (lib/mbedtls,
# an empty folder in the +ds tarball); redone only when that source changes.
unpack_mbedtls() {
  local key dest=$MPY_DIR/lib/mbedtls tmp=$MPY_DIR/lib/.mbedtls.$$
  key="$(sha "$MBEDTLS_DL/$MBEDTLS_ORIG")"
  stamp_is "$dest/.nanotoll-unpacked" "$key" && return 0
  rm -rf "$tmp"
  mkdir -p "$tmp"
  tar -xjf "$MBEDTLS_DL/$MBEDTLS_ORIG" -C "$tmp" --strip-components=1
  echo "$key" >"$tmp/.nanotoll-unpacked"
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

step_mpy_unix() {
  local tls=with flags key build=$UNIX_OUT/build bin=$UNIX_OUT/micropython
  local stamp=$UNIX_OUT/.nanotoll-built
  if ! mbedtls_src_ok; then
    in_ci &&
      fail "the mbedTLS $MBEDTLS_VERSION source is missing ($MBEDTLS_DL): the unix port would have no TLS." \
        "Run 'tools/setup.sh mbedtls-src' and read .toolchain/logs/mbedtls_src.log."
    tls=without
  fi
  if [[ $tls == with ]]; then
    flags=("${MPY_UNIX_FLAGS[@]}" "${MPY_UNIX_TLS[@]}")
  else
    flags=("${MPY_UNIX_FLAGS[@]}" "${MPY_UNIX_NO_TLS[@]}")
  fi
  key="$(cat "$MPY_DIR/.nanotoll-unpacked") u$UNIX_RECIPE ${flags[*]}"
  key="$key $(sha "$UNIX_MANIFEST" "$ROOT/boards/unix/frozen/ssl.py")"
  [[ $tls == with ]] && key="$key $(sha "$MBEDTLS_DL/$MBEDTLS_ORIG")"
  if [[ -x $bin ]] && stamp_is "$stamp" "$key"; then
    note "$tls TLS"
    cached
    return 0
  fi
  [[ $tls == with ]] && unpack_mbedtls
  # Built beside the binary in use and renamed over it once it passed its checks:
  # tests running now keep the old one until then.
  rm -rf "$build"
  mkdir -p "$UNIX_OUT"
  make -C "$MPY_DIR/ports/unix" -j"$JOBS" BUILD="$build" FROZEN_MANIFEST="$UNIX_MANIFEST" \
    "${flags[@]}"
  local out
  out=$("$build/micropython" -c "$MPY_SMOKE" 2>&1) || true
  [[ $out == 1 ]] ||
    fail "the new unix micropython failed its import check: $out" \
      "See the log; the build flags are MPY_UNIX_FLAGS in tools/setup.sh."
  if [[ $tls == with ]]; then
    out=$("$build/micropython" -c "$TLS_SMOKE" 2>&1) || true
    [[ $out == 1 ]] ||
      fail "the new unix micropython has no working ssl: $out" \
        "See the log; ssl is boards/unix/frozen/ssl.py over the tls module (MPY_UNIX_TLS)."
  fi
  cp "$build/micropython" "$UNIX_OUT/.micropython.new"
  mv -f "$UNIX_OUT/.micropython.new" "$bin"
  echo "$key" >"$stamp"
  note "$tls TLS"
}

step_mpy_qemu() {
  write_manifest
  local key stamp=$MPY_DIR/.nanotoll-built-qemu build=$MPY_DIR/ports/qemu/build-$MPY_QEMU_BOARD
  key="$(cat "$MPY_DIR/.nanotoll-unpacked") r$MPY_RECIPE qemu $MPY_QEMU_BOARD $(sha "$MPY_MANIFEST")"
  if [[ -f $build/firmware.elf && -f $stamp && "$(head -n1 "$stamp")" == "$key" ]]; then
    note "$(sed -n 2p "$stamp")"
    cached
    return 0
  fi
  rm -f "$stamp"
  rm -rf "$build"
  local variant="with frozen asyncio"
  if ! make -C "$MPY_DIR/ports/qemu" -j"$JOBS" BOARD="$MPY_QEMU_BOARD" \
    FROZEN_MANIFEST="$MPY_MANIFEST"; then
    echo "=== build with the asyncio manifest failed; building without it ==="
    rm -rf "$build"
    make -C "$MPY_DIR/ports/qemu" -j"$JOBS" BOARD="$MPY_QEMU_BOARD"
    variant="without frozen asyncio"
  fi
  [[ -f $build/firmware.elf ]] || fail "no firmware.elf after the qemu build." "See the log."
  printf '%s\n%s\n' "$key" "$variant" >"$stamp"
  note "$variant"
}

board_inputs() {
  (cd "$BOARD_DIR" && ls mpconfigboard.mk mpconfigboard.h mps2.ld manifest.py ./*.c ./*.h \
    ./*.inc frozen/*.py 2>/dev/null | LC_ALL=C sort)
}

step_mpy_board() {
  [[ -f $BOARD_DIR/mpconfigboard.mk ]] ||
    fail "$BOARD_DIR/mpconfigboard.mk is missing." "Restore boards/qemu_mps2 from git."
  local key files stamp=$BOARD_OUT/.nanotoll-built build=$BOARD_OUT/build
  mapfile -t files < <(board_inputs)
  key="$(cat "$MPY_DIR/.nanotoll-unpacked") r$MPY_RECIPE board $(cd "$BOARD_DIR" && sha "${files[@]}")"
  if [[ -f $BOARD_OUT/firmware.elf ]] && stamp_is "$stamp" "$key"; then
    note "${BOARD_OUT#"$ROOT"/}/firmware.elf"
    cached
    return 0
  fi
  rm -f "$stamp" "$BOARD_OUT/firmware.elf"
  rm -rf "$build"
  mkdir -p "$BOARD_OUT"
  make -C "$MPY_DIR/ports/qemu" -j"$JOBS" BOARD=NANOTOLL_MPS2 BOARD_DIR="$BOARD_DIR" \
    BUILD="$build"
  [[ -f $build/firmware.elf ]] || fail "no firmware.elf after the board build." "See the log."
  cp "$build/firmware.elf" "$BOARD_OUT/firmware.elf"
  echo "$key" >"$stamp"
  note "${BOARD_OUT#"$ROOT"/}/firmware.elf"
}

# link NAME TARGET: make NAME a symlink to TARGET unless it already is one;
# prints "changed" when it made or replaced it.
link() {
  if [[ -L $1 && "$(readlink "$1")" == "$2" ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$1")"
  # A new link renamed over the old: whoever opens NAME meanwhile finds one or the other.
  ln -sfn "$2" "$1.new"
  mv -fT "$1.new" "$1"
  echo "changed $1 -> $2"
}

step_paths() {
  local m=../micropython-$MPY_VERSION changes
  changes=$(
    link "$TC/bin/micropython" "../unix/micropython"
    link "$TC/bin/mpy-cross" "$m/mpy-cross/build/mpy-cross"
    link "$TC/qemu/firmware.elf" "$m/ports/qemu/build-$MPY_QEMU_BOARD/firmware.elf"
    link "$TC/bin/anvil" "../../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    link "$TC/bin/forge" "../../node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
    link "$TC/bin/solc" "../../tools/solc"
    link "$TC/bin/slither" "../slither/bin/slither"
  )
  echo "$changes"
  local f
  for f in "$TC"/bin/* "$TC/qemu/firmware.elf"; do
    [[ -e $f ]] || fail "$f points nowhere ($(readlink "$f"))." "Re-run 'make setup'."
  done
  [[ -n $changes ]] || cached
}

# ------------------------------------------------------------------- main --

# Other people run `make test` in this same tree: one set-up at a time.
exec 9>"$TC/setup.lock"
if ! flock -n 9; then
  echo "setup: another set-up is running in this tree; waiting for it ..."
  flock 9
fi

STEPS=(
  "node:node"
  "apt:apt packages"
  "venv:python venv"
  "slither:slither (own venv)"
  "stubs:micropython stubs"
  "npm:npm packages"
  "mpy-src:micropython $MPY_VERSION source"
  "mbedtls-src:mbedtls $MBEDTLS_VERSION source"
  "mpy-unpack:micropython unpack"
  "mpy-cross:mpy-cross"
  "mpy-unix:micropython unix port"
  "mpy-qemu:micropython qemu $MPY_QEMU_BOARD"
  "mpy-board:emulated board qemu_mps2"
  "paths:paths"
)
# `tools/setup.sh NAME...` runs only those steps (names as in STEPS).
for want in "$@"; do
  printf '%s\n' "${STEPS[@]}" | grep -q "^$want:" || {
    echo "setup: unknown step '$want' (steps: $(printf '%s\n' "${STEPS[@]}" | cut -d: -f1 | xargs))"
    exit 2
  }
done
for entry in "${STEPS[@]}"; do
  name=${entry%%:*}
  if (($# > 0)) && ! printf '%s\n' "$@" | grep -qx -- "$name"; then
    continue
  fi
  step "${entry#*:}" "step_${name//-/_}"
done

echo "setup: done in $(elapsed "$T_START" "$EPOCHREALTIME") ($N_STEPS steps, $N_CACHED cached)"
