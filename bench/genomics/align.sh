#!/usr/bin/env bash
# Aligner benchmark: accelhub's aligner vs `bwa mem` and `minimap2 -ax sr`,
# same reads, same thread count, one run. Prints wall time, CPU seconds,
# peak RSS, reads per CPU-second (and the ratio to bwa mem), and accuracy
# at MAPQ >= 0/1/10/20/30/60 from ../shared/bench/genomics/mapeval.py.
#
#   bench/genomics/align.sh                 # chrX set, 2 threads, all reads
#   SET=ecoli THREADS=2 PAIRS=100000 bench/genomics/align.sh
#
# Data: ../shared/bench/genomics/make-dataset.sh (real references from
# Debian packages, reads simulated by wgsim with known origins). Indexes are
# built once into $WORK and reused; index time is reported apart.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${SHARED:-$root/../shared}
SET=${SET:-chrX}
THREADS=${THREADS:-2}
PAIRS=${PAIRS:-0}   # 0: every pair of the set
DATA=${ACCELHUB_BENCH_DATA:-$HOME/.cache/accelhub-bench}/genomics
WORK=${WORK:-$DATA/work}
case $SET in
  ecoli) REF=$DATA/ref/ecoli.fa ;;
  chrX | xreg) REF=$DATA/ref/chrX70.fa ;;
  *) echo "SET must be ecoli, chrX or xreg" >&2; exit 2 ;;
esac

need=()
for t in bwa:bwa minimap2:minimap2 samtools:samtools bc:bc; do
  command -v "${t%%:*}" >/dev/null || need+=("${t##*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[[ -s $DATA/reads/${SET}_2.fq ]] || bash "$shared/bench/genomics/make-dataset.sh" "$DATA"
(cd "$root" && cargo build --release -q -p accelhub)
ah=$root/target/release/accelhub
mkdir -p "$WORK"
base=$(basename "$REF" .fa)

r1=$DATA/reads/${SET}_1.fq r2=$DATA/reads/${SET}_2.fq
if ((PAIRS > 0)); then
  head -n $((PAIRS * 4)) "$r1" > "$WORK/${SET}_$PAIRS.1.fq"
  head -n $((PAIRS * 4)) "$r2" > "$WORK/${SET}_$PAIRS.2.fq"
  r1=$WORK/${SET}_$PAIRS.1.fq r2=$WORK/${SET}_$PAIRS.2.fq
fi
reads=$(($(wc -l < "$r1") / 2))

timed() {  # label cmd...: runs, records wall/cpu/rss into $WORK/label.time
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/$label.time" "$@"
}

echo "indexes ($base):" >&2
[[ -s $WORK/$base.ahx ]] || timed index-accelhub "$ah" genomics index "$REF" -o "$WORK/$base"
[[ -s $WORK/$base.bwt ]] || timed index-bwa bwa index -p "$WORK/$base" "$REF" 2>/dev/null
[[ -s $WORK/$base.mmi ]] || timed index-minimap2 minimap2 -x sr -d "$WORK/$base.mmi" "$REF" 2>/dev/null
for l in accelhub bwa minimap2; do
  [[ -s $WORK/index-$l.time ]] && read -r w u s m < "$WORK/index-$l.time" &&
    printf '  %-9s %7.1f s wall %7.1f CPU-s %6d MB\n' "$l" "$w" "$(echo "$u + $s" | bc)" $((m / 1024)) >&2
done

echo "aligning $reads reads of $SET with $THREADS threads (load before: $(cut -d' ' -f1 /proc/loadavg))" >&2
timed accelhub "$ah" genomics align "$WORK/$base" "$r1" "$r2" -t "$THREADS" \
  -R "@RG\tID:bench\tSM:$SET\tPL:ILLUMINA" -o "$WORK/accelhub.sam"
timed bwa bwa mem -t "$THREADS" "$WORK/$base" "$r1" "$r2" -o "$WORK/bwa.sam" 2>/dev/null
timed minimap2 minimap2 -ax sr -t "$THREADS" "$WORK/$base.mmi" "$r1" "$r2" -o "$WORK/minimap2.sam" 2>/dev/null

read -r _ bu bs _ < "$WORK/bwa.time"
bwa_rate=$(echo "$reads / ($bu + $bs)" | bc -l)
echo
echo "| aligner | wall s | CPU s | peak RSS MB | reads/CPU-s | vs bwa mem |"
echo "|---|---:|---:|---:|---:|---:|"
for l in accelhub bwa minimap2; do
  read -r w u s m < "$WORK/$l.time"
  cpu=$(echo "$u + $s" | bc -l)
  rate=$(echo "$reads / $cpu" | bc -l)
  printf '| %s | %.1f | %.1f | %d | %.0f | %.2fx |\n' "$l" "$w" "$cpu" $((m / 1024)) "$rate" "$(echo "$rate / $bwa_rate" | bc -l)"
done
echo
echo "accuracy (fraction of all reads mapped at MAPQ >= Q / error rate among them):"
for l in accelhub bwa minimap2; do
  samtools view -F 0x900 "$WORK/$l.sam" | python3 "$shared/bench/genomics/mapeval.py" "$l"
done
samtools quickcheck "$WORK/accelhub.sam" && echo "samtools quickcheck: accelhub.sam ok"
# Picard's validator, when installed (Debian: picard-tools), with the
# reference so that NM and MD are checked too.
if command -v PicardCommandLine >/dev/null; then
  [[ -s ${REF%.fa}.dict ]] || samtools dict "$REF" > "${REF%.fa}.dict"
  [[ -s $REF.fai ]] || samtools faidx "$REF"
  PicardCommandLine ValidateSamFile I="$WORK/accelhub.sam" R="$REF" MODE=SUMMARY 2>/dev/null |
    grep -E "No errors found|ERROR|WARNING" | sed 's/^/picard ValidateSamFile: /' || true
fi
