#!/usr/bin/env bash
# Where the instructions between Pingora 0.8 and 0.9 go: the same bare proxy
# (benches/bare-pingora/src) built on each step from the cheap stack (Pingora 0.8.0
# with Pingap 0.13.1's lock, benches/bare-pingora-08) to today's (benches/bare-pingora),
# one thing moving at a time, then instructions per request for every step.
#   benches/pingora_bisect.sh [--requests N]      (about 15 minutes on 2 cores)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=6000
[[ ${1:-} == --requests ]] && N=$2
WORK=$(mktemp -d /tmp/pingora-bisect.XXXXXX)
TARGET=${CARGO_TARGET_DIR:-$HERE/../target}/pingora-bisect
TARGETS=()

# A step: NAME, the project it starts from, the Pingora version every pingora crate
# is brought to, then `cargo update` arguments applied one after another.
step() {
  local name=$1 from=$2 pingora=$3 crate
  shift 3
  mkdir -p "$WORK/$name/src"
  cp "$HERE/$from/Cargo.toml" "$HERE/$from/Cargo.lock" "$WORK/$name/"
  cp "$HERE/bare-pingora/src/main.rs" "$WORK/$name/src/main.rs"
  sed -i -e 's|^path = .*|path = "src/main.rs"|' \
    -e "s|^pingora = { version = \"[^\"]*\"|pingora = { version = \"=$pingora\"|" "$WORK/$name/Cargo.toml"
  for update in "$@"; do
    # shellcheck disable=SC2086
    (cd "$WORK/$name" && cargo update -q $update)
  done
  # The pingora crates require each other's exact minor: a few passes settle them.
  for _ in 1 2 3; do
    for crate in $(awk '/^name = "pingora/{print $3}' "$WORK/$name/Cargo.lock" | tr -d '"' | sort -u); do
      (cd "$WORK/$name" && cargo update -q -p "$crate" --precise "$pingora" 2>/dev/null) || true
    done
  done
  local bin
  bin=$(sed -n 's/^name = "\(bare-pingora[^"]*\)"/\1/p' "$WORK/$name/Cargo.toml" | head -1)
  (cd "$WORK/$name" && cargo build -q --release --target-dir "$TARGET")
  cp "$TARGET/release/$bin" "$WORK/$name.bin"
  TARGETS+=("$name=http://127.0.0.1:18003/=env:BARE_LISTEN=127.0.0.1:18003 env:BARE_UPSTREAM=127.0.0.1:18000 $WORK/$name.bin")
}

TODAYS_DEPS=("-p h2 --precise 0.4.20" "-p bytes --precise 1.12.2" "-p mio --precise 1.2.5" "-p http --precise 1.5.0")
OLD_TOKIO=("-p tokio-util --precise 0.7.18" "-p tokio --precise 1.50.0")
step p080 bare-pingora-08 0.8.0
step p081 bare-pingora-08 0.8.1
step p081-todays-deps bare-pingora-08 0.8.1 "${TODAYS_DEPS[@]}"
step p090-tokio150 bare-pingora 0.9.0 "${OLD_TOKIO[@]}"
step p091-tokio150 bare-pingora 0.9.1 "${OLD_TOKIO[@]}"
step p091 bare-pingora 0.9.1
"$HERE/../../shared/bench/instructions.sh" --requests "$N" "${TARGETS[@]}"
