#!/usr/bin/env python3
"""Markdown report of bench/genomics/align.sh's results.tsv: one row per set
and tool, then accelhub's targets per set (issue 15) and the medians.

Columns of results.tsv: set cpu wall rss_kib tool reads q1 q1_wrong q20
q20_wrong q0_read1 q0_forward wrong_left wrong_right tuned|confirm"""
import statistics
import sys
from collections import defaultdict

rows = defaultdict(dict)
order = []
tuned = {}
for line in open(sys.argv[1]):
    f = line.rstrip('\n').split('\t')
    if len(f) < 15:
        continue
    s, tool = f[0], f[4]
    cpu, wall, rss = float(f[1]), float(f[2]), int(f[3])
    reads, q1, q1w, q20, q20w, q0, q0f, wl, wr = map(int, f[5:14])
    rows[s][tool] = dict(cpu=cpu, wall=wall, rss=rss, reads=reads, q1=q1, q1w=q1w,
                         q20=q20, q20w=q20w, q0=q0, q0f=q0f, wl=wl, wr=wr)
    tuned[s] = f[14] == 'tuned'
    if s not in order:
        order.append(s)


def pct(n, d):
    return 100.0 * n / d if d else 0.0


print('| set | tool | CPU s | vs bwa mem | peak RSS MB | Q≥1 mapped % | Q≥1 errors | '
      'Q≥20 mapped % | Q≥20 errors | MAPQ-0 read1 forward % | misplaced left/right |')
print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
for s in order:
    bwa = rows[s].get('bwa')
    for tool, r in rows[s].items():
        ratio = f"{bwa['cpu'] / r['cpu']:.2f}x" if bwa and r['cpu'] > 0 else '-'
        print(f"| {s}{'*' if tuned[s] else ''} | {tool} | {r['cpu']:.1f} | {ratio} | {r['rss'] // 1024} | "
              f"{pct(r['q1'], r['reads']):.2f} | {r['q1w']} | {pct(r['q20'], r['reads']):.2f} | "
              f"{r['q20w']} | {pct(r['q0f'], r['q0']):.1f} | {r['wl']}/{r['wr']} |")

print()
print('accelhub against the targets (* = a set it was tuned on):')
print()
print('| set | CPU vs bwa (≥ 8x) | vs fastest strobealign (> 1x) | Q≥1 Δ pt / errors vs bwa | '
      'Q≥20 Δ pt / errors vs bwa | MAPQ-0 forward (50 ± 2%) | RSS vs bwa (≤ 1.5x) |')
print('|---|---:|---:|---:|---:|---:|---:|')
met = defaultdict(int)
ratios = defaultdict(list)
for s in order:
    a, b = rows[s].get('accelhub'), rows[s].get('bwa')
    if not a or not b:
        continue
    cpu = b['cpu'] / a['cpu']
    strobe = [rows[s][t]['cpu'] for t in ('strobealign', 'strobealign-rs') if t in rows[s]]
    vs_strobe = min(strobe) / a['cpu'] if strobe else None
    d1 = pct(a['q1'], a['reads']) - pct(b['q1'], b['reads'])
    d20 = pct(a['q20'], a['reads']) - pct(b['q20'], b['reads'])
    fwd = pct(a['q0f'], a['q0'])
    rss = a['rss'] / b['rss']
    for t, r in rows[s].items():
        if t != 'bwa':
            ratios[t].append(b['cpu'] / r['cpu'])
    checks = {
        'cpu': cpu >= 8,
        # Not measured (no strobealign built) is not met.
        'strobealign': vs_strobe is not None and vs_strobe > 1,
        'q1': d1 >= -0.1 and a['q1w'] <= b['q1w'],
        'q20': d20 >= -0.1 and a['q20w'] <= b['q20w'],
        'strand': a['q0'] == 0 or abs(fwd - 50) <= 2,
        'rss': rss <= 1.5,
    }
    for k, v in checks.items():
        met[k] += v
    mark = {k: '' if v else ' ✗' for k, v in checks.items()}
    vs = f"{vs_strobe:.2f}x" if vs_strobe else '-'
    print(f"| {s}{'*' if tuned[s] else ''} | {cpu:.2f}x{mark['cpu']} | {vs}{mark['strobealign']} | "
          f"{d1:+.2f} / {a['q1w']} vs {b['q1w']}{mark['q1']} | {d20:+.2f} / {a['q20w']} vs {b['q20w']}{mark['q20']} | "
          f"{fwd:.1f}% of {a['q0']}{mark['strand']} | {rss:.2f}x{mark['rss']} |")
n = sum(1 for s in order if 'accelhub' in rows[s] and 'bwa' in rows[s])
print()
print('targets met, of', n, 'sets: ' + ', '.join(f'{k} {v}' for k, v in met.items()))
print('median CPU ratio vs bwa mem over the sets: ' +
      ', '.join(f'{t} {statistics.median(v):.2f}x' for t, v in ratios.items()))
