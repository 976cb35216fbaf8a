#!/usr/bin/env bash
# The genomics IPs on the platform vs the same aligner run locally: what a
# job adds (upload excluded: objects are uploaded once), and what keeping
# the index resident saves on the second job against the same reference.
#
#   bench/genomics/platform.sh                      # chrX set, 2 threads
#   SET=ecoli PAIRS=100000 bench/genomics/platform.sh
#   SET=germ bench/genomics/platform.sh             # the whole germline flow as one job
#
# Starts `accelhub serve` on a scratch data directory, uploads the reference
# and the reads, runs genomics/index, then genomics/align twice (the first
# loads the index, the second finds it resident), and `accelhub genomics
# align` locally on the same files; checks that the job's BAM holds the
# same records as the local run. Data as for align.sh. With SET=germ (from
# ../shared's make-germline.sh): genomics/germline as a job (FASTQ → VCF,
# BAM, QC as named outputs) against `accelhub genomics germline` locally,
# checking that both call the same variants.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${SHARED:-$root/../shared}
SET=${SET:-chrX}
THREADS=${THREADS:-2}
PAIRS=${PAIRS:-0}
DATA=${ACCELHUB_BENCH_DATA:-$HOME/.cache/accelhub-bench}/genomics
WORK=${WORK:-$DATA/work}
case $SET in
  ecoli) REF=$DATA/ref/ecoli.fa ;;
  chrX | xreg | germ) REF=$DATA/ref/chrX70.fa ;;
  *) echo "SET must be ecoli, chrX, xreg or germ" >&2; exit 2 ;;
esac
command -v samtools >/dev/null && command -v bc >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends samtools bc
}
[[ -s $DATA/reads/${SET}_2.fq || $SET == germ ]] || bash "$shared/bench/genomics/make-dataset.sh" "$DATA"
[[ -s $DATA/reads/${SET}_2.fq ]] || bash "$shared/bench/genomics/make-germline.sh" "$DATA"
(cd "$root" && cargo build --release -q -p accelhub)
ah=$root/target/release/accelhub
mkdir -p "$WORK"
r1=$DATA/reads/${SET}_1.fq r2=$DATA/reads/${SET}_2.fq
if ((PAIRS > 0)); then
  head -n $((PAIRS * 4)) "$r1" > "$WORK/${SET}_$PAIRS.1.fq"
  head -n $((PAIRS * 4)) "$r2" > "$WORK/${SET}_$PAIRS.2.fq"
  r1=$WORK/${SET}_$PAIRS.1.fq r2=$WORK/${SET}_$PAIRS.2.fq
fi
reads=$(($(wc -l < "$r1") / 2))

srv=$(mktemp -d "$WORK/platform.XXXX")
log=$srv/serve.log
"$ah" serve --data "$srv" --listen 127.0.0.1:0 --cpu-threads "$THREADS" 2> "$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$srv"' EXIT
for _ in $(seq 600); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
export ACCELHUB_URL=$(sed -n 's/^accelhub listening on //p' "$log" | head -1)
export ACCELHUB_TOKEN=$(cat "$srv/admin.token")
export ACCELHUB_TOKEN=$("$ah" account create bench --role user 2>/dev/null)
"$ah" deploy genomics/index >/dev/null
"$ah" deploy genomics/align >/dev/null
"$ah" deploy genomics/germline >/dev/null

now() { date +%s.%N; }
job_secs() {  # the job's own run time, from its record
  "$ah" job status "$1" --json | python3 -c '
import json, sys, datetime
j = json.load(sys.stdin)
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
assert j["state"] == "succeeded", j
print("%.2f" % (p(j["finished_at"]) - p(j["started_at"])).total_seconds())'
}
run_job() {  # ip input params... -> job id, after waiting
  local ip=$1 input=$2; shift 2
  local id
  id=$("$ah" job submit "$ip" --input "$input" "$@")
  "$ah" job wait "$id" >/dev/null 2>&1 || { "$ah" job status "$id" >&2; exit 1; }
  echo "$id"
}

t=$(now)
"$ah" object put "$REF" --key ref.fa >/dev/null 2>&1
"$ah" object put "$r1" --key r1.fq >/dev/null 2>&1
"$ah" object put "$r2" --key r2.fq >/dev/null 2>&1
up=$(printf '%.1f' "$(echo "$(now) - $t" | bc)")

ix=$(run_job genomics/index ref.fa)
ix_s=$(job_secs "$ix")
rg='@RG\tID:bench\tSM:'$SET'\tLB:lib1'
"$ah" object get "$ix.out" --output "$srv/ref.ahx" 2>/dev/null

if [[ $SET == germ ]]; then
  g=$(run_job genomics/germline r1.fq -p index="$ix.out" -p reads2=r2.fq -p "read_group=$rg")
  g_s=$(job_secs "$g")
  peak_items=$("$ah" job status "$g" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["items"], j["unit"])')
  "$ah" job output "$g" --name vcf --output "$srv/job.vcf.gz" 2>/dev/null
  "$ah" job output "$g" --name qc --output "$srv/job.qc.tsv" 2>/dev/null
  t=$(now)
  "$ah" genomics germline "$srv/ref" "$r1" "$r2" -t "$THREADS" -R "$rg" -o "$srv/local" 2>/dev/null
  local_s=$(echo "$(now) - $t" | bc)
  same=no
  cmp -s <(zcat "$srv/job.vcf.gz" | grep -v '^#') <(zcat "$srv/local/sample.vcf.gz" | grep -v '^#') && same=yes
  echo
  echo "genomics/germline on the platform, $reads reads, $THREADS threads (upload: $up s)"
  echo
  echo "| run | seconds | vs local |"
  echo "|---|---:|---:|"
  printf '| genomics/index job | %.2f | |\n' "$ix_s"
  printf '| genomics/germline job (index loaded; ended at: %s) | %.2f | %.2fx |\n' "$peak_items" "$g_s" "$(echo "$g_s / $local_s" | bc -l)"
  printf '| accelhub genomics germline (local) | %.2f | 1x |\n' "$local_s"
  echo
  echo "job's variant records identical to the local run: $same"
  echo "job outputs: $("$ah" job status "$g" --json | python3 -c 'import json,sys; print(", ".join("%s %d B" % (o["name"], o["size"]) for o in json.load(sys.stdin)["outputs"]))')"
  exit 0
fi
a1=$(run_job genomics/align r1.fq -p index="$ix.out" -p reads2=r2.fq -p "read_group=$rg")
a1_s=$(job_secs "$a1")
a2=$(run_job genomics/align r1.fq -p index="$ix.out" -p reads2=r2.fq -p "read_group=$rg")
a2_s=$(job_secs "$a2")
load=$("$ah" job status "$a1" --json | python3 -c 'import json,sys,re; print(re.search(r"loaded in (\d+) ms", json.load(sys.stdin)["log"]).group(1))')
"$ah" job output "$a2" --output "$srv/job.bam" 2>/dev/null
t=$(now)
"$ah" genomics align "$srv/ref" "$r1" "$r2" -t "$THREADS" -R "$rg" -o "$srv/local.bam" 2>/dev/null
local_s=$(echo "$(now) - $t" | bc)
same=no
cmp -s <(samtools view "$srv/job.bam" | md5sum) <(samtools view "$srv/local.bam" | md5sum) && same=yes

echo
echo "genomics IPs on the platform, $SET, $reads reads, $THREADS threads (upload of reference and reads: $up s)"
echo
echo "| run | seconds | vs local align |"
echo "|---|---:|---:|"
printf '| genomics/index job | %.2f | |\n' "$ix_s"
printf '| genomics/align job, index loaded (%s ms) | %.2f | %.2fx |\n' "$load" "$a1_s" "$(echo "$a1_s / $local_s" | bc -l)"
printf '| genomics/align job, index resident | %.2f | %.2fx |\n' "$a2_s" "$(echo "$a2_s / $local_s" | bc -l)"
printf '| accelhub genomics align (local, loads the index file) | %.2f | 1x |\n' "$local_s"
echo
echo "job BAM records identical to the local run: $same"
