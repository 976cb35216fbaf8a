#!/usr/bin/env python3
"""Placement accuracy and placement bias of one aligner's SAM, against the
origins wgsim writes into read names (chr_left_right_...).

    samtools view -F 0x900 x.sam | aleval.py LABEL [TOL=20]

Prints one tab-separated line:
    LABEL reads q1_mapped q1_wrong q20_mapped q20_wrong q0_read1 q0_forward
          wrong_left wrong_right
where qN_mapped counts primary records placed with MAPQ >= N, qN_wrong those
more than TOL bases from their origin (clip-aware, as samtools'
wgsim_eval.pl), q0_read1 the first mates placed with MAPQ 0 and q0_forward
how many of them are on the forward strand (an unbiased aligner breaks ties
at random: half), and wrong_left / wrong_right the misplaced reads (any
MAPQ) left or right of their origin on its own contig."""
import re
import sys

label = sys.argv[1]
tol = int(sys.argv[2]) if len(sys.argv) > 2 else 20
name_re = re.compile(r'^(\S+)_(\d+)_(\d+)_')
cig_re = re.compile(r'(\d+)([MIDNSHP=X])')
reads = q1 = q1w = q20 = q20w = q0 = q0f = wl = wr = 0
for line in sys.stdin:
    if line[0] == '@':
        continue
    f = line.split('\t', 7)
    flag = int(f[1])
    if flag & 0x900:
        continue
    reads += 1
    if flag & 4 or f[2] == '*':
        continue
    m = name_re.match(f[0])
    if not m:
        sys.exit(f"{label}: read name {f[0]!r} does not carry a wgsim origin")
    tchr, tl, tr = m.group(1), int(m.group(2)), int(m.group(3))
    pos = int(f[3])
    ops = cig_re.findall(f[5])
    rl = sum(int(a) for a, o in ops if o in 'MDN=X')
    left, right = pos, pos + rl - 1
    left0, right0 = left, right
    if ops and ops[0][1] in 'SH':
        left -= int(ops[0][0])
        right0 += int(ops[0][0])
    if ops and ops[-1][1] in 'SH':
        right += int(ops[-1][0])
        left0 -= int(ops[-1][0])
    if f[2] != tchr:
        ok = False
    elif flag & 16:
        ok = abs(tr - right) <= tol or abs(tr - right0) <= tol
    else:
        ok = abs(tl - left) <= tol or abs(tl - left0) <= tol
    q = int(f[4])
    if not ok and f[2] == tchr:
        if pos < tl:
            wl += 1
        else:
            wr += 1
    if q >= 1:
        q1 += 1
        q1w += not ok
    if q >= 20:
        q20 += 1
        q20w += not ok
    if q == 0 and not flag & 0x80:
        q0 += 1
        q0f += not flag & 16
print('\t'.join(map(str, [label, reads, q1, q1w, q20, q20w, q0, q0f, wl, wr])))
