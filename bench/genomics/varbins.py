#!/usr/bin/env python3
"""Indel precision, recall and F1 by length (1-5, 6-15, 16-40 bp) and the
errors (FP + FN) of all variants, scored as ../shared's vareval.py scores
(its normalisation: split, atomise, left-align), at QUAL >= 0.
Usage: varbins.py ref.fa truth.norm.vcf.gz calls.vcf[.gz] LABEL"""
import os, sys

here = os.path.dirname(os.path.abspath(__file__))
vareval = os.environ.get('VAREVAL', os.path.join(here, '..', '..', '..', 'shared', 'bench', 'genomics', 'vareval.py'))
src = open(vareval).read()
# vareval.py is a script: take its functions (everything before it loads).
exec(compile(src[:src.index('T = load(truth, False)')], vareval, 'exec'))
T = load(truth, False)
C = load(calls, True)
lo = min(k[1] for k in T) - 500; hi = max(k[1] for k in T) + 500
C = {k: v for k, v in C.items() if lo <= k[1] <= hi}
def size(k): return abs(len(k[2]) - len(k[3]))
bins = [(1, 5), (6, 15), (16, 40)]
out = []
for a, b in bins:
    tk = {k for k in T if a <= size(k) <= b}; ck = {k for k in C if a <= size(k) <= b}
    tp = len(tk & ck); fp = len(ck - tk); fn = len(tk - ck)
    p = tp / max(tp + fp, 1); r = tp / max(tp + fn, 1); f1 = 2 * p * r / max(p + r, 1e-12)
    out.append(f"{label}\tindel {a}-{b}\tTP={tp}\tFP={fp}\tFN={fn}\tP={p:.4f}\tR={r:.4f}\tF1={f1:.4f}")
errors = len(set(C) - set(T)) + len(set(T) - set(C))
out.append(f"{label}\terrors\t{errors}")
print("\n".join(out))
