#!/usr/bin/env bash
# The germline flow, stage by stage, against its peers in one run, on a set
# from ../shared/bench/genomics/make-germline.sh (default: `germ`, an exact
# diploid truth over chrX:20-30 Mb at 30x 2x150).
#
#   bench/genomics/germline.sh                    # germ, 2 threads
#   NAME=small REGION=chrX:40000001-42000000 SEED=5 DEPTH=20 bench/genomics/germline.sh
#
# Stages, each timed (wall, CPU = user+sys, peak RSS):
#   align        accelhub genomics align -> unsorted BAM
#                bwa mem | samtools view -> unsorted BAM (the peer)
#                accelhub genomics align --markdup -> sorted, marked, indexed
#                BAM in one process (no file between the stages)
#   sort+dup     accelhub genomics sort, then accelhub genomics markdup
#                accelhub genomics sort --markdup (both in one pass)
#                samtools fixmate -m, sort, markdup, index (the peer; on the
#                same unsorted BAM, ours, so both mark the same reads)
#   call         on each tool's BAM: accelhub genomics call; bcftools
#                mpileup -a AD,DP | bcftools call -mv; freebayes (when
#                installed); each scored by ../shared's vareval.py and by
#                varbins.py (indels by length, errors = FP + FN)
#   germline     accelhub genomics germline: FASTQ to BAM and VCF in one
#                process, scored the same way
# and checks that our duplicate set equals samtools' (same reads flagged).
# At the end: the whole flow, ours (germline) against bwa mem | samtools
# (fixmate, sort, markdup, index) | bcftools, in wall and CPU seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${SHARED:-$root/../shared}
THREADS=${THREADS:-2}
NAME=${NAME:-germ}
DATA=${ACCELHUB_BENCH_DATA:-$HOME/.cache/accelhub-bench}/genomics
WORK=${WORK:-$DATA/work}
OUT=${OUT:-$WORK/germline-$NAME-$(date +%Y%m%d-%H%M%S)}
STAGES=${STAGES:-"align sortdup call germline"}

need=()
for t in bwa:bwa samtools:samtools bcftools:bcftools tabix:tabix; do
  command -v "${t%%:*}" >/dev/null || need+=("${t##*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[[ -s $DATA/reads/${NAME}_2.fq ]] || NAME=$NAME bash "$shared/bench/genomics/make-germline.sh" "$DATA"
(cd "$root" && cargo build --release -q -p accelhub)
ah=$root/target/release/accelhub
ref=$DATA/ref/chrX70.fa
r1=$DATA/reads/${NAME}_1.fq r2=$DATA/reads/${NAME}_2.fq
truth=$DATA/reads/$NAME.truth.norm.vcf.gz bed=$DATA/reads/$NAME.bed
mkdir -p "$WORK" "$OUT"
[[ -s $WORK/chrX70.ahx ]] || "$ah" genomics index "$ref" -o "$WORK/chrX70" >&2
[[ -s $WORK/chrX70.bwt ]] || bwa index -p "$WORK/chrX70" "$ref" 2>/dev/null
rg='@RG\tID:'$NAME'\tSM:'$NAME'\tLB:lib1'

rows=$OUT/stages.tsv
: > "$rows"
# timed LABEL cmd...: runs it, appends "LABEL wall cpu rss_mb" to the table.
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/t" "$@" 2> "$OUT/$label.log" || {
    echo "$label failed, see $OUT/$label.log" >&2; tail -5 "$OUT/$label.log" >&2; exit 1; }
  read -r w u s m < "$OUT/t"
  printf '%s\t%s\t%s\t%s\n' "$label" "$w" "$(echo "$u + $s" | bc -l)" "$((m / 1024))" >> "$rows"
  echo "  $label: $w s wall, $(echo "$u + $s" | bc -l) CPU-s, $((m / 1024)) MB" >&2
}

echo "germline bench on $NAME, $THREADS threads, load $(cut -d' ' -f1 /proc/loadavg); results in $OUT" >&2
ours=$OUT/ours.unsorted.bam theirs=$OUT/bwa.unsorted.bam
if [[ " $STAGES " == *" align "* ]]; then
  timed align:accelhub "$ah" genomics align "$WORK/chrX70" "$r1" "$r2" -t "$THREADS" -R "$rg" -o "$ours"
  timed align:bwa sh -c "bwa mem -t $THREADS -R '$rg' '$WORK/chrX70' '$r1' '$r2' | samtools view -b -o '$theirs' -"
  timed align+sort+markdup:accelhub "$ah" genomics align "$WORK/chrX70" "$r1" "$r2" -t "$THREADS" -R "$rg" --markdup -o "$OUT/ours.direct.bam"
fi

if [[ " $STAGES " == *" sortdup "* ]]; then
  timed sort:accelhub "$ah" genomics sort "$ours" -o "$OUT/ours.sorted.bam" -t "$THREADS"
  timed markdup:accelhub "$ah" genomics markdup "$OUT/ours.sorted.bam" -o "$OUT/ours.md.bam" -t "$THREADS" -s
  timed sort+markdup:accelhub "$ah" genomics sort "$ours" -o "$OUT/ours.fused.bam" -t "$THREADS" --markdup -s
  t=$((THREADS - 1))
  timed fixmate:samtools samtools fixmate -@ "$t" -m "$ours" "$OUT/st.fix.bam"
  timed sort:samtools samtools sort -@ "$t" -o "$OUT/st.sorted.bam" "$OUT/st.fix.bam"
  timed markdup:samtools samtools markdup -@ "$t" -s "$OUT/st.sorted.bam" "$OUT/st.md.bam"
  timed index:samtools samtools index -@ "$t" "$OUT/st.md.bam"
  dupset() { samtools view -f 0x400 "$1" | cut -f1,2 | sort; }
  if cmp -s <(dupset "$OUT/ours.md.bam") <(dupset "$OUT/st.md.bam") &&
     cmp -s <(dupset "$OUT/ours.fused.bam") <(dupset "$OUT/st.md.bam") &&
     { [[ ! -s $OUT/ours.direct.bam ]] || cmp -s <(dupset "$OUT/ours.direct.bam") <(dupset "$OUT/st.md.bam"); }; then
    echo "  duplicates: the same $(samtools view -c -f 0x400 "$OUT/st.md.bam") records flagged as samtools" >&2
  else
    echo "  duplicates DIFFER from samtools': ours $(samtools view -c -f 0x400 "$OUT/ours.md.bam"), samtools $(samtools view -c -f 0x400 "$OUT/st.md.bam")" >&2
  fi
  samtools quickcheck "$OUT/ours.md.bam" "$OUT/ours.fused.bam" || echo "  samtools quickcheck failed on our BAM" >&2
  # The peer's BAM for calling: bwa's, through the same samtools steps.
  if [[ -s $theirs ]]; then
    samtools fixmate -@ "$t" -m "$theirs" - | samtools sort -@ "$t" - |
      samtools markdup -@ "$t" - "$OUT/bwa.md.bam" 2>/dev/null && samtools index "$OUT/bwa.md.bam"
  fi
fi

region=$(cut -f1-3 "$bed" | awk '{print $1":"$2+1"-"$3}')
# score LABEL VCF: vareval.py and varbins.py into $OUT/LABEL.eval
score() {
  { python3 "$shared/bench/genomics/vareval.py" "$ref" "$truth" "$2" "$1"
    VAREVAL=$shared/bench/genomics/vareval.py python3 "$here/varbins.py" "$ref" "$truth" "$2" "$1"; } \
    > "$OUT/$1.eval" 2>&1 || true
}
if [[ " $STAGES " == *" call "* ]]; then
  for who in ours bwa; do
    bam=$OUT/$who.md.bam
    [[ -s $bam ]] || continue
    timed "call:accelhub($who)" "$ah" genomics call "$ref" "$bam" -r "$region" -t "$THREADS" -o "$OUT/$who.accelhub.vcf.gz"
    score "accelhub-on-$who" "$OUT/$who.accelhub.vcf.gz"
    timed "call:bcftools($who)" sh -c "bcftools mpileup --threads $THREADS -a AD,DP -f '$ref' -r $region '$bam' 2>/dev/null | bcftools call --threads $THREADS -mv -Oz -o '$OUT/$who.bcftools.vcf.gz'"
    score "bcftools-on-$who" "$OUT/$who.bcftools.vcf.gz"
    if command -v freebayes >/dev/null; then
      timed "call:freebayes($who)" sh -c "freebayes -f '$ref' -r $region '$bam' > '$OUT/$who.freebayes.vcf'"
      score "freebayes-on-$who" "$OUT/$who.freebayes.vcf"
    else
      echo "  freebayes not installed: skipped" >&2
    fi
  done
fi
if [[ " $STAGES " == *" germline "* ]]; then
  timed germline:accelhub "$ah" genomics germline "$WORK/chrX70" "$r1" "$r2" -t "$THREADS" -R "$rg" -r "$region" -o "$OUT/germline"
  score accelhub-germline "$OUT/germline/sample.vcf.gz"
  samtools quickcheck "$OUT/germline/sample.bam" || echo "  samtools quickcheck failed on the germline BAM" >&2
  bcftools index -n "$OUT/germline/sample.vcf.gz" > /dev/null || echo "  bcftools cannot read the germline VCF's index" >&2
fi

echo
echo "| stage | wall s | CPU s | peak RSS MB |"
echo "|---|---:|---:|---:|"
awk -F'\t' '{printf "| %s | %.1f | %.1f | %d |\n", $1, $2, $3, $4}' "$rows"
sum() { awk -F'\t' -v p="$1" '$1 ~ p {w += $2; c += $3} END {printf "%.1f %.1f", w, c}' "$rows"; }
if [[ " $STAGES " == *" align "* && " $STAGES " == *" sortdup "* && " $STAGES " == *" call "* && " $STAGES " == *" germline "* ]]; then
  read -r bw bc <<< "$(sum '^(align:bwa|(fixmate|sort|markdup|index):samtools|call:bcftools[(]bwa[)])$')"
  read -r gw gc <<< "$(sum '^germline:accelhub$')"
  echo
  echo "FASTQ to VCF: bwa + samtools + bcftools $bw s wall / $bc CPU-s; accelhub germline $gw / $gc" \
    "($(echo "$bw / $gw" | bc -l | cut -c1-4)x wall, $(echo "$bc / $gc" | bc -l | cut -c1-4)x CPU)"
fi
if ls "$OUT"/*.eval >/dev/null 2>&1; then
  echo
  echo "| caller on BAM | SNV P / R / F1 | indel P / R / F1 | GT conc SNV / indel | indel F1 1-5 / 6-15 / 16-40 | indel R 16-40 | errors |"
  echo "|---|---|---|---|---|---|---:|"
  for f in "$OUT"/*.eval; do
    awk -F'\t' -v l="$(basename "$f" .eval)" '
      $2 == "Q>=0" && $3 == "SNP"   { split($7,a,"="); split($8,b,"="); split($9,c,"="); snv=a[2]" / "b[2]" / "c[2]; split($10,g,"="); gs=g[2] }
      $2 == "Q>=0" && $3 == "INDEL" { split($7,a,"="); split($8,b,"="); split($9,c,"="); ind=a[2]" / "b[2]" / "c[2]; split($10,g,"="); gi=g[2] }
      $2 ~ /^indel / { split($8,c,"="); split($7,r,"="); f[$2]=c[2]; rr[$2]=r[2] }
      $2 == "errors" { e=$3 }
      END { printf "| %s | %s | %s | %s / %s | %s / %s / %s | %s | %s |\n", l, snv, ind, gs, gi, f["indel 1-5"], f["indel 6-15"], f["indel 16-40"], rr["indel 16-40"], e }' "$f"
  done
fi
if [[ " $STAGES " == *" align "* && " $STAGES " == *" sortdup "* ]]; then
  read -r bw bc <<< "$(sum '^(align:bwa|(fixmate|sort|markdup|index):samtools)$')"
  read -r dw dc <<< "$(sum '^align[+]sort[+]markdup:accelhub$')"
  echo
  echo "FASTQ to marked, indexed BAM: bwa + samtools $bw s wall / $bc CPU-s; accelhub align --markdup $dw / $dc" \
    "($(echo "$bw / $dw" | bc -l | cut -c1-4)x wall, $(echo "$bc / $dc" | bc -l | cut -c1-4)x CPU)"
fi
if [[ " $STAGES " == *" sortdup "* ]]; then
  read -r sw sc <<< "$(sum '^(fixmate|sort|markdup|index):samtools$')"
  read -r ow oc <<< "$(sum '^(sort|markdup):accelhub$')"
  read -r fw fc <<< "$(sum '^sort[+]markdup:accelhub$')"
  echo
  echo "sort + markdup: samtools $sw s wall / $sc CPU-s; ours in two commands $ow / $oc" \
    "($(echo "$sw / $ow" | bc -l | cut -c1-4)x wall, $(echo "$sc / $oc" | bc -l | cut -c1-4)x CPU);" \
    "in one pass $fw / $fc ($(echo "$sw / $fw" | bc -l | cut -c1-4)x wall, $(echo "$sc / $fc" | bc -l | cut -c1-4)x CPU)"
fi
for f in "$OUT"/*.eval; do
  [[ -s $f ]] && { echo; cat "$f"; }
done
