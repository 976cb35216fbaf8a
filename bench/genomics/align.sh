#!/usr/bin/env bash
# Aligner benchmark over a matrix of read sets: accelhub's aligner against
# bwa mem (the reference for accuracy), bwa-mem2, minimap2 -ax sr and
# strobealign (C++ and its Rust port), same reads, same thread count, in
# one run. For every set and tool: CPU seconds (user+sys, best of RUNS),
# the ratio to bwa mem, peak RSS, mapped fraction and errors at MAPQ >= 1
# and >= 20, and the forward-strand share of read1s placed with MAPQ 0.
#
#   bench/genomics/align.sh                        # the quick matrix (6 sets)
#   MATRIX=full bench/genomics/align.sh            # all 48 sets
#   SETS="chrX:125:0.5:0.1 ecoli:250:1:0.5" PAIRS=50000 bench/genomics/align.sh
#   TOOLS="accelhub bwa" bench/genomics/align.sh   # a subset of the tools
#
# A set is REF:LEN:ERR:MUT: reference (chrX = 70 Mb of human chrX, ecoli),
# read length, base error rate in percent, mutation rate in percent. Reads
# are simulated by wgsim (insert 2*LEN+100 +- 50, 15% of mutations indels),
# with a seed derived from the set's name and SEED, into the data cache.
# The aligner was tuned on the sets in TUNED (marked * in the tables; its
# tuning used other seeds of them, SEED=7): every other set confirms on
# data it was not tuned on.
#
# Peers Debian lacks are built from source by bench/genomics/peers.sh into
# a cache outside the repository, or skipped with a message.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${SHARED:-$root/../shared}
THREADS=${THREADS:-2}
PAIRS=${PAIRS:-100000}
RUNS=${RUNS:-1}
SEED=${SEED:-1}
TUNED=${TUNED:-"chrX:150:0.5:0.1 chrX:125:1:0.1 chrX:100:1:0.5"}
DATA=${ACCELHUB_BENCH_DATA:-$HOME/.cache/accelhub-bench}/genomics
WORK=${WORK:-$DATA/work}
OUT=${OUT:-$WORK/matrix-$(date +%Y%m%d-%H%M%S)}

case ${MATRIX:-quick} in
  full)
    all=()
    for ref in chrX ecoli; do for len in 100 125 150 250; do for err in 0.1 0.5 1; do for mut in 0.1 0.5; do
      all+=("$ref:$len:$err:$mut")
    done; done; done; done
    SETS=${SETS:-${all[*]}} ;;
  quick) SETS=${SETS:-"chrX:100:1:0.5 chrX:125:0.5:0.1 chrX:150:0.1:0.1 chrX:250:0.5:0.5 ecoli:150:1:0.1 ecoli:125:0.1:0.5"} ;;
  *) echo "MATRIX must be quick or full" >&2; exit 2 ;;
esac

need=()
for t in bwa:bwa minimap2:minimap2 samtools:samtools wgsim:samtools; do
  command -v "${t%%:*}" >/dev/null || need+=("${t##*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[[ -s $DATA/ref/chrX70.fa && -s $DATA/ref/ecoli.fa ]] || bash "$shared/bench/genomics/make-dataset.sh" "$DATA"
(cd "$root" && cargo build --release -q -p accelhub)
ah=$root/target/release/accelhub

declare -A peer=()
while read -r name path; do peer[$name]=$path; done < <(bash "$here/peers.sh")
TOOLS=${TOOLS:-accelhub bwa bwa-mem2 minimap2 strobealign strobealign-rs}
tools=()
for t in $TOOLS; do
  case $t in
    accelhub | bwa | minimap2) tools+=("$t") ;;
    *) if [[ -n ${peer[$t]:-} ]]; then tools+=("$t"); else echo "skipping $t: not built (see above)" >&2; fi ;;
  esac
done
mkdir -p "$WORK" "$OUT"

timed() {  # file cmd...: wall, user, sys, max RSS (KiB) into file
  local f=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$f" "$@"
}

# index TOOL REF LEN: builds TOOL's index of REF once (strobealign's
# depends on the read length), prints the prefix to align against.
fasta() { case $1 in chrX) echo "$DATA/ref/chrX70.fa" ;; ecoli) echo "$DATA/ref/ecoli.fa" ;; *) return 1 ;; esac; }

index() {
  local t=$1 ref=$2 len=$3 fa p
  fa=$(fasta "$2") p=$WORK/$(basename "$fa" .fa)
  case $t in
    accelhub) [[ -s $p.ahx ]] || "$ah" genomics index "$fa" -o "$p" >&2; echo "$p" ;;
    bwa) [[ -s $p.bwt ]] || bwa index -p "$p" "$fa" 2>/dev/null; echo "$p" ;;
    bwa-mem2) [[ -s $p.bwt.2bit.64 ]] || "${peer[bwa-mem2]}" index -p "$p" "$fa" >/dev/null 2>&1; echo "$p" ;;
    minimap2) [[ -s $p.mmi ]] || minimap2 -x sr -d "$p.mmi" "$fa" 2>/dev/null; echo "$p.mmi" ;;
    strobealign | strobealign-rs)
      local d=$WORK/$t && mkdir -p "$d" && ln -sf "$fa" "$d/$ref.fa"
      ls "$d/$ref.fa".r"$len".sti >/dev/null 2>&1 ||
        "${peer[$t]}" -t "$THREADS" -r "$len" --create-index "$d/$ref.fa" >/dev/null 2>&1 || true
      echo "$d/$ref.fa" ;;
  esac
}

command_for() {  # TOOL INDEX R1 R2 LEN OUT.sam: the command, into CMD
  local t=$1 i=$2 r1=$3 r2=$4 len=$5 o=$6
  case $t in
    accelhub) CMD=("$ah" genomics align "$i" "$r1" "$r2" -t "$THREADS" -R '@RG\tID:bench\tSM:s' -o "$o") ;;
    bwa) CMD=(bwa mem -t "$THREADS" "$i" "$r1" "$r2" -o "$o") ;;
    bwa-mem2) CMD=("${peer[bwa-mem2]}" mem -t "$THREADS" "$i" "$r1" "$r2" -o "$o") ;;
    minimap2) CMD=(minimap2 -ax sr -t "$THREADS" "$i" "$r1" "$r2" -o "$o") ;;
    strobealign | strobealign-rs)
      local use=()
      ls "$i".r"$len".sti >/dev/null 2>&1 && use=(--use-index)
      CMD=("${peer[$t]}" -t "$THREADS" -r "$len" "${use[@]}" -o "$o" "$i" "$r1" "$r2") ;;
  esac
}

results=$OUT/results.tsv
: > "$results"
echo "results in $OUT; ${#tools[@]} tools (${tools[*]}), $THREADS threads, $PAIRS pairs per set, best of $RUNS" >&2
for set in $SETS; do
  IFS=: read -r ref len err mut <<< "$set"
  fasta "$ref" >/dev/null || { echo "set $set: the reference must be chrX or ecoli" >&2; exit 2; }
  name=$ref-$len-e$err-m$mut
  r1=$DATA/matrix/${name}_s${SEED}_$PAIRS.1.fq r2=${r1%.1.fq}.2.fq
  if [[ ! -s $r2 ]]; then
    mkdir -p "$DATA/matrix"
    s=$(( $(printf '%s' "$name:$SEED" | cksum | cut -d' ' -f1) % 1000000 + 1 ))
    wgsim -e "$(echo "$err / 100" | bc -l)" -r "$(echo "$mut / 100" | bc -l)" -R 0.15 -X 0.3 \
      -d $((2 * len + 100)) -s 50 -1 "$len" -2 "$len" -S "$s" -N "$PAIRS" \
      "$(fasta "$ref")" "$r1.tmp" "$r2.tmp" > /dev/null 2>&1
    mv "$r1.tmp" "$r1" && mv "$r2.tmp" "$r2"
  fi
  echo "set $set (load $(cut -d' ' -f1 /proc/loadavg)):" >&2
  for t in "${tools[@]}"; do
    i=$(index "$t" "$ref" "$len")
    best=""
    for ((run = 0; run < RUNS; run++)); do
      command_for "$t" "$i" "$r1" "$r2" "$len" "$OUT/$name.$t.sam"
      timed "$OUT/t" "${CMD[@]}" 2> "$OUT/$t.log" || { echo "  $t failed, see $OUT/$t.log" >&2; continue 2; }
      read -r w u s m < "$OUT/t"
      cpu=$(echo "$u + $s" | bc -l)
      if [[ -z $best ]] || (($(echo "$cpu < ${best%% *}" | bc -l))); then best="$cpu $w $m"; fi
    done
    ev=$(samtools view -F 0x900 "$OUT/$name.$t.sam" | python3 "$here/aleval.py" "$t")
    printf '%s\t%s\t%s\t%s\n' "$set" "$best" "$ev" "$([[ " $TUNED " == *" $set "* ]] && echo tuned || echo confirm)" |
      tr ' ' '\t' >> "$results"
    echo "  $t: ${best%% *} CPU-s" >&2
    if [[ $t == accelhub ]] && ! samtools quickcheck "$OUT/$name.$t.sam" 2>/dev/null; then
      echo "  samtools quickcheck failed on accelhub's SAM" >&2
    fi
    rm -f "$OUT/$name.$t.sam"
  done
done
python3 "$here/matrix-report.py" "$results" | tee "$OUT/report.md"
