#!/usr/bin/env bash
# Build the example IPs in ips/ for wasm32-wasip1 and put each module next
# to its ip.toml (ips/NAME/NAME.wasm), ready for `accelhub ip publish ips/NAME`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  echo "installing the wasm32-wasip1 Rust target" >&2
  rustup target add wasm32-wasip1 >&2
fi
target_dir=${CARGO_TARGET_DIR:-$root/target}/ips
# From inside ips/, so that ips/.cargo/config.toml applies.
(cd "$root/ips" && cargo build --quiet --release --target wasm32-wasip1 --target-dir "$target_dir")
for dir in "$root"/ips/*/; do
  name=$(basename "$dir")
  [[ -f $dir/ip.toml ]] || continue
  cp "$target_dir/wasm32-wasip1/release/$name.wasm" "$dir/$name.wasm.tmp"
  mv "$dir/$name.wasm.tmp" "$dir/$name.wasm"
done
