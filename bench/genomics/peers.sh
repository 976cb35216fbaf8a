#!/usr/bin/env bash
# Builds the aligners we compare against that Debian does not ship, from
# their sources, into a cache outside the repository (their code is never
# committed), and prints one `name path` line per peer that could be built.
# A peer that cannot be built is skipped with a message on stderr.
#
#   bench/genomics/peers.sh            # -> "bwa-mem2 /…/bwa-mem2" etc.
#
# Peers:
#   bwa-mem2        v2.3, `make arch=avx2` (or sse42); needs intel/safestringlib
#   strobealign     the C++ release v0.17.0 (cmake)
#   strobealign-rs  the Rust port, `cargo install strobealign` from crates.io
#
# Sources come from, in order: BWA_MEM2_SRC / SAFESTRINGLIB_SRC /
# STROBEALIGN_SRC (checked-out trees), then a shallow `git clone` from
# GitHub. Where neither is reachable, the peer is skipped.
set -euo pipefail
PEERS=${PEERS:-${ACCELHUB_BENCH_DATA:-$HOME/.cache/accelhub-bench}/peers}
mkdir -p "$PEERS/src" "$PEERS/bin"
log() { echo "peers: $*" >&2; }

# src NAME URL TAG VAR: a source tree for NAME, from $VAR or a clone.
src() {
  local name=$1 url=$2 tag=$3 given=${!4:-}
  if [[ -n $given ]]; then
    [[ -d $given ]] || { log "$4=$given is not a directory"; return 1; }
    echo "$given"
    return
  fi
  local d=$PEERS/src/$name
  if [[ ! -d $d ]]; then
    timeout 120 git clone -q --depth 1 --branch "$tag" "$url" "$d" 2>/dev/null || {
      rm -rf "$d"
      log "$name: no source ($url unreachable; set $4 to a checkout of $tag)"
      return 1
    }
  fi
  echo "$d"
}

bwa_mem2() {
  local out=$PEERS/bin/bwa-mem2
  if [[ ! -x $out ]]; then
    local s ssl b=$PEERS/build/bwa-mem2
    s=$(src bwa-mem2 https://github.com/bwa-mem2/bwa-mem2 v2.3 BWA_MEM2_SRC) || return 1
    rm -rf "$b" && mkdir -p "$PEERS/build" && cp -r "$s" "$b"
    if [[ ! -s $b/ext/safestringlib/makefile && ! -s $b/ext/safestringlib/Makefile ]]; then
      ssl=$(src safestringlib https://github.com/intel/safestringlib v1.2.0 SAFESTRINGLIB_SRC) || return 1
      rm -rf "$b/ext/safestringlib" && cp -r "$ssl" "$b/ext/safestringlib"
    fi
    local arch=sse42
    grep -qw avx2 /proc/cpuinfo && arch=avx2
    log "building bwa-mem2 (arch=$arch)…"
    make -C "$b" -j"$(nproc)" arch=$arch CXX=g++ > "$PEERS/build/bwa-mem2.log" 2>&1 || {
      log "bwa-mem2: build failed, see $PEERS/build/bwa-mem2.log"
      return 1
    }
    cp "$b/bwa-mem2" "$out"
  fi
  echo "bwa-mem2 $out"
}

strobealign_cpp() {
  local out=$PEERS/bin/strobealign
  if [[ ! -x $out ]]; then
    # Its build wants cmake, zlib and ISA-L (libisal-dev, from Debian).
    if ! command -v cmake >/dev/null || ! pkg-config --exists libisal 2>/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        cmake pkg-config zlib1g-dev libisal-dev >/dev/null 2>&1 || true
    fi
    local s b=$PEERS/build/strobealign
    s=$(src strobealign https://github.com/ksahlin/strobealign v0.17.0 STROBEALIGN_SRC) || return 1
    # The C++ sources sit at the top of v0.17.0 and under cpp/ later.
    [[ -s $s/CMakeLists.txt && -d $s/src && ! -d $s/cpp ]] || { [[ -d $s/cpp ]] && s=$s/cpp; }
    log "building strobealign (C++)…"
    cmake -S "$s" -B "$b" -DCMAKE_BUILD_TYPE=Release > "$PEERS/build/strobealign.log" 2>&1 &&
      cmake --build "$b" -j"$(nproc)" --target strobealign >> "$PEERS/build/strobealign.log" 2>&1 || {
      log "strobealign: build failed, see $PEERS/build/strobealign.log"
      return 1
    }
    cp "$b/strobealign" "$out"
  fi
  echo "strobealign $out"
}

strobealign_rs() {
  local out=$PEERS/rs/bin/strobealign
  if [[ ! -x $out ]]; then
    log "building strobealign (Rust port) with cargo install…"
    cargo install -q --locked strobealign --root "$PEERS/rs" > "$PEERS/build-rs.log" 2>&1 ||
      cargo install -q strobealign --root "$PEERS/rs" >> "$PEERS/build-rs.log" 2>&1 || {
      log "strobealign-rs: cargo install failed, see $PEERS/build-rs.log"
      return 1
    }
  fi
  echo "strobealign-rs $out"
}

for p in ${ONLY:-bwa_mem2 strobealign_cpp strobealign_rs}; do
  "$p" || true
done
