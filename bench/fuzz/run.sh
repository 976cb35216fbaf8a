#!/usr/bin/env bash
# Fuzz every parser of outside input with cargo-fuzz (libFuzzer + ASan).
#
#   bench/fuzz/run.sh SECONDS [TARGET...]
#
# Builds the targets of fuzz/ (its own workspace, into fuzz/target), seeds
# each working corpus fuzz/corpus/TARGET from the committed
# fuzz/seeds/TARGET, and runs each target for SECONDS. Environment:
# FUZZ_JOBS targets at a time (default 1), FUZZ_NICE niceness (default 0),
# FUZZ_TARGET_DIR another cargo target directory. Logs go to
# fuzz/logs/TARGET.log, crashing inputs to fuzz/artifacts/TARGET/. Exits 1
# if any target found a crash, leak, timeout or out-of-memory.
#
# Only stable Rust is installed here: cargo-fuzz's nightly flags
# (-Zsanitizer=address) are let through with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:?usage: bench/fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(manifest package_tar fasta fastq bam_writer alignments kernel_expr agent_messages)
fi
jobs=${FUZZ_JOBS:-1}
nice=${FUZZ_NICE:-0}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
target_dir=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
(cd fuzz && RUSTC_BOOTSTRAP=1 nice -n "$nice" cargo fuzz build --target-dir "$target_dir" "${targets[@]:0:$((${#targets[@]} == 1))}")
bin=$target_dir/x86_64-unknown-linux-gnu/release

run_one() {
  local t=$1
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" fuzz/logs
  cp -n "fuzz/seeds/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  local start=$SECONDS rc=0
  nice -n "$nice" "$bin/$t" "fuzz/corpus/$t" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" > "fuzz/logs/$t.log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/logs/$t.log")
  printf '%-15s rc=%s wall=%ss execs=%s corpus=%s files crashes=%s\n' "$t" "$rc" \
    "$((SECONDS - start))" "${execs:-?}" "$(ls "fuzz/corpus/$t" | wc -l)" \
    "$(ls "fuzz/artifacts/$t" | wc -l)"
  return "$rc"
}

failed=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [[ ${#pids[@]} -ge $jobs ]]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
if [[ $failed -ne 0 ]]; then
  echo "fuzzing found a crash: see fuzz/logs and fuzz/artifacts" >&2
  exit 1
fi
