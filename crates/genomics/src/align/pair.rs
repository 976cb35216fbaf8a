//! Pairs: the insert-size model estimated from the data, mate rescue near
//! a mapped mate, pairing scores, MAPQ, and the records of a pair.

use super::*;

impl Aligner<'_> {
    /// Look for a mate near its partner: the window where a proper pair
    /// puts it, on the opposite strand, the whole window searched.
    pub(super) fn rescue(
        &self,
        mate_seq: &[u8],
        partner: &Hit,
        ins: &InsertModel,
        floor: i32,
        s: &mut Scratch,
    ) -> Option<Hit> {
        let r = &self.idx.reference;
        let c = &r.contigs[partner.contig];
        let l = mate_seq.len() as i64;
        if l == 0 {
            return None;
        }
        let (lo, hi) = (ins.lo as i64, ins.hi as i64);
        // Partner forward: mate reverse, its end in [pos + lo, pos + hi].
        // Partner reverse: mate forward, its start in [end - hi, end - lo].
        let (ws, we, reverse) = if !partner.reverse {
            let p = partner.pos as i64;
            (p + lo - l, p + hi, true)
        } else {
            let e = partner.end() as i64;
            (e - hi, e - lo + l, false)
        };
        let ws = ws.max(0).min(c.len as i64);
        let we = we.max(0).min(c.len as i64);
        if we - ws < l {
            return None;
        }
        let q: Vec<u8> = if reverse {
            revcomp_into(mate_seq, &mut s.rc);
            s.rc.clone()
        } else {
            mate_seq.to_vec()
        };
        // Every diagonal of the window, by its count of matching bases: a
        // mate with too many differences for any seed of its own is still
        // found, as a full alignment would (an indel leaves the longer
        // part on one diagonal). Equal counts go to the one nearest the
        // insert size's mean.
        let (gs, ge) = (c.offset as i64 + ws, c.offset as i64 + we);
        let expected = if reverse {
            c.offset as i64 + partner.pos as i64 + ins.mean as i64 - l
        } else {
            c.offset as i64 + partner.end() as i64 - ins.mean as i64
        };
        // An insert model spread wide (odd libraries) would make the scan
        // long: it covers at most MAX_SCAN diagonals around the expected one.
        let half = MAX_SCAN as i64 / 2;
        let gs = gs.max(expected - half);
        let ge = ge.min(expected + half + l).max(gs);
        if ge - gs < l {
            return None;
        }
        let window = &r.seq[gs as usize..ge as usize];
        let mut counts = Vec::new();
        matches_along(&q, window, &mut counts);
        let mut best: Option<(usize, i64)> = None; // matches, diagonal
        for (off, &matches) in counts.iter().enumerate() {
            let matches = matches as usize;
            let d = gs + off as i64;
            let better = match best {
                None => true,
                Some((m, bd)) => {
                    matches > m || (matches == m && (d - expected).abs() < (bd - expected).abs())
                }
            };
            if better {
                best = Some((matches, d));
            }
        }
        // Half the read matching is more than chance (a quarter).
        let (matches, best_d) = best?;
        if matches * 2 <= q.len() {
            return None;
        }
        self.extend(&q, best_d, reverse, Gapped::Always(floor))
    }

    /// Extend the clusters that pair: both mates' seed clusters (extended
    /// or not) are matched up by the insert-size model, and the strongest
    /// pairs by their seeds together get extended where a mate's own
    /// search left them. In a repeat, the copy where both mates' seeds
    /// agree is found even when neither mate's own top candidates held it.
    /// Hits it adds are ranked with the others (`seed`: the pair's tie
    /// seed).
    #[allow(clippy::too_many_arguments)]
    fn pair_clusters(
        &self,
        r1: &Read,
        r2: &Read,
        m1: &Mapped,
        m2: &Mapped,
        h1: &mut Vec<Hit>,
        h2: &mut Vec<Hit>,
        ins: &InsertModel,
        seed: u64,
        s: &mut Scratch,
    ) {
        if m1.rest.is_empty() && m2.rest.is_empty() {
            return;
        }
        let (l1, l2) = (r1.seq.len() as i64, r2.seq.len() as i64);
        let spots = |hs: &[Hit], rest: &[Cluster]| -> Vec<Spot> {
            let contigs = &self.idx.reference.contigs;
            let mut v: Vec<Spot> = hs
                .iter()
                .filter(|h| h.seeds > 0)
                .map(|h| {
                    let lead = soft_clips(&h.cigar).0 as i64;
                    Spot {
                        count: h.seeds,
                        reverse: h.reverse,
                        diag: (contigs[h.contig].offset + h.pos) as i64 - lead,
                        done: true,
                    }
                })
                .collect();
            v.extend(rest.iter().map(|c| Spot {
                count: c.count,
                reverse: c.reverse,
                diag: c.diag,
                done: false,
            }));
            v
        };
        let (a, mut b) = (spots(h1, &m1.rest), spots(h2, &m2.rest));
        let (lo, hi) = (ins.lo as i64, ins.hi as i64);
        // Mate 2's spots by place: each of mate 1's finds its partners in
        // the insert window by binary search.
        b.sort_unstable_by_key(|y| y.diag);
        // (seeds together, tie, index in a, index in b)
        let mut pairs: Vec<(u32, u64, usize, usize)> = Vec::new();
        for (i, x) in a.iter().enumerate() {
            // Mate 1 forward: mate 2's end in [start + lo, start + hi];
            // reverse: mate 2's start in [end - hi, end - lo].
            let (from, to) = if x.reverse {
                (x.diag + l1 - hi, x.diag + l1 - lo)
            } else {
                (x.diag + lo - l2, x.diag + hi - l2)
            };
            let first = b.partition_point(|y| y.diag < from);
            for (j, y) in b.iter().enumerate().skip(first) {
                if y.diag > to {
                    break;
                }
                if x.reverse != y.reverse {
                    pairs.push((
                        x.count + y.count,
                        cluster_tie(seed, x.diag, x.reverse),
                        i,
                        j,
                    ));
                }
            }
        }
        if pairs.iter().all(|p| a[p.2].done && b[p.3].done) {
            return;
        }
        pairs.sort_unstable_by_key(|p| (std::cmp::Reverse(p.0), p.1));
        let top = pairs[0].0;
        let mut done1: Vec<usize> = Vec::new();
        let mut done2: Vec<usize> = Vec::new();
        let mut added = false;
        for (rank, &(n, _, i, j)) in pairs.iter().take(MAX_PAIRED).enumerate() {
            if n * 2 < top {
                break;
            }
            // The strongest get the gapped search where an end is
            // shifted; the rest, an ungapped score to tell the copies of a
            // repeat apart.
            for (spot, k, done, read, hs) in [
                (&a[i], i, &mut done1, r1, &mut *h1),
                (&b[j], j, &mut done2, r2, &mut *h2),
            ] {
                if spot.done || done.contains(&k) {
                    continue;
                }
                done.push(k);
                let q: &[u8] = if spot.reverse {
                    revcomp_into(&read.seq, &mut s.rc);
                    &s.rc
                } else {
                    &read.seq
                };
                let gapped = if rank < MAX_CANDIDATES {
                    Gapped::IfClipped(floor_of(hs))
                } else {
                    Gapped::Never
                };
                if let Some(mut h) = self.extend(q, spot.diag, spot.reverse, gapped) {
                    h.seeds = spot.count;
                    hs.push(h);
                    added = true;
                }
            }
        }
        if added {
            rank(h1, seed);
            rank(h2, seed);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_pair(
        &self,
        buf: &mut Vec<u8>,
        r1: &Read,
        r2: &Read,
        m1: &Mapped,
        m2: &Mapped,
        ins: &InsertModel,
        s: &mut Scratch,
        rg: Option<&str>,
    ) -> (u64, u64) {
        let sc = &self.opts.scoring;
        let mut h1: Vec<Hit> = m1.hits.clone();
        let mut h2: Vec<Hit> = m2.hits.clone();
        let near = |a: &Hit, b: &Hit| {
            a.contig == b.contig
                && a.reverse != b.reverse
                && insert_of(a, b).is_some_and(|t| t >= ins.lo && t <= ins.hi)
        };
        // Rescue a mate missing near one of its partner's good placements:
        // it finds mates whose own seeds missed their locus, and the
        // second-best pair that keeps a repeat's MAPQ honest.
        // The best score among hits ranked best first (0 for none).
        let top = |hs: &[Hit]| hs.first().map_or(0, |h| h.score);
        let good = |hs: &[Hit]| -> Vec<Hit> {
            let top = top(hs);
            hs.iter()
                .take(MAX_CANDIDATES)
                .filter(|h| h.score + 20 >= top)
                .cloned()
                .collect()
        };
        let seed = name_seed(&r1.name);
        self.pair_clusters(r1, r2, m1, m2, &mut h1, &mut h2, ins, seed, s);
        let (g1, g2) = (good(&h1), good(&h2));
        // A partner already there counts only if it is a good one: a weak
        // hit nearby (another copy's, a repeat's) may hide the real mate.
        let has_good_partner = |x: &Hit, hs: &[Hit]| {
            let top = top(hs);
            hs.iter().any(|y| near(x, y) && y.score + 20 >= top)
        };
        // A proper pair's score: both mates' less the insert's unlikeliness.
        const UNPAIRED: i32 = 17;
        let pair_score = |a: &Hit, b: &Hit| {
            near(a, b).then(|| {
                let t = insert_of(a, b).unwrap_or(0) as f64;
                let z = (t - ins.mean) / ins.sd.max(1.0);
                let pen = (z * z * 0.5 * 0.72).min(UNPAIRED as f64) as i32;
                a.score + b.score - pen
            })
        };
        // A rescue near a partner whose pair, with the mate matching
        // throughout, would still trail the best pair already found by
        // 10 points (MAPQ 60 either way) can change nothing.
        let paired = h1
            .iter()
            .flat_map(|a| h2.iter().filter_map(|b| pair_score(a, b)))
            .max();
        let worth = |partner: &Hit, mate: &Read| {
            paired.is_none_or(|p| partner.score + sc.matched * mate.seq.len() as i32 > p - 10)
        };
        let (f1, f2) = (floor_of(&h1), floor_of(&h2));
        for a in &g1 {
            if !has_good_partner(a, &h2) && worth(a, r2) {
                if let Some(b) = self.rescue(&r2.seq, a, ins, f2, s) {
                    h2.push(b);
                }
            }
        }
        for b in &g2 {
            if !has_good_partner(b, &h1) && worth(b, r1) {
                if let Some(a) = self.rescue(&r1.seq, b, ins, f1, s) {
                    h1.push(a);
                }
            }
        }
        dedupe(&mut h1);
        dedupe(&mut h2);
        rank(&mut h1, seed);
        rank(&mut h2, seed);
        // Best proper combination against the best unpaired one; equally
        // good pairs in the read's random order.
        let mut best_pair: Option<(i32, u64, usize, usize)> = None;
        let mut scores: Vec<i32> = Vec::new();
        for (i, a) in h1.iter().enumerate() {
            for (j, b) in h2.iter().enumerate() {
                let Some(score) = pair_score(a, b) else {
                    continue;
                };
                scores.push(score);
                let order = tie(seed, a.place() ^ b.place().rotate_left(32));
                let better = match best_pair {
                    None => true,
                    Some((bs, bo, _, _)) => score > bs || (score == bs && order < bo),
                };
                if better {
                    best_pair = Some((score, order, i, j));
                }
            }
        }
        // The runner-up: the best of the other pairs (an equal one counts).
        scores.sort_unstable_by(|x, y| y.cmp(x));
        let second_pair = scores.get(1).copied().unwrap_or(0);
        let best_pair = best_pair.map(|(score, _, i, j)| (score, i, j));
        // Other pairs about as good as the runner-up (within one
        // mismatch): each is one more place the fragment may come from.
        let one_mismatch = sc.matched + sc.mismatch;
        let n_sub = if scores.len() > 1 {
            scores
                .iter()
                .filter(|&&x| x >= second_pair - one_mismatch)
                .count()
                - 1
        } else {
            0
        };
        let unpaired = h1.first().map(|h| h.score).unwrap_or(0)
            + h2.first().map(|h| h.score).unwrap_or(0)
            - UNPAIRED;
        let q1 = mapq_of(m1, r1.seq.len(), sc);
        let q2 = mapq_of(m2, r2.seq.len(), sc);
        let (a, b, proper, q1, q2) = match best_pair {
            Some((score, i, j)) if score >= unpaired => {
                let pair_sub = second_pair.max(unpaired);
                // The pair's own evidence: the score gap to the next best
                // explanation of both reads, without the single-read
                // length scaling.
                let mut raw = PAIR_Q * (score - pair_sub).max(0) as f64 / sc.matched as f64 + 0.499;
                if n_sub > 0 {
                    raw -= 4.343 * ((n_sub + 1) as f64).ln() + 0.499;
                }
                let raw = raw.clamp(0.0, 60.0) as u8;
                let pq = scale_repeat(raw, m1.repeat.max(m2.repeat));
                // Pairing lifts a mate's MAPQ, unless another placement
                // of that mate as good as the chosen one would pair with
                // the same partner just as well (a tandem repeat).
                let ambiguous = |hs: &[Hit], k: usize, partner: &Hit| {
                    hs.iter()
                        .enumerate()
                        .any(|(x, h)| x != k && h.score >= hs[k].score && near(h, partner))
                };
                let boost = |own: u8, hs: &[Hit], k: usize, partner: &Hit| -> u8 {
                    if ambiguous(hs, k, partner) {
                        0
                    } else if k == 0 {
                        own.max(pq.min(own.saturating_add(40)))
                    } else {
                        pq.min(own.saturating_add(40)).min(60)
                    }
                };
                let (qa, qb) = (boost(q1, &h1, i, &h2[j]), boost(q2, &h2, j, &h1[i]));
                (Some(&h1[i]), Some(&h2[j]), true, qa, qb)
            }
            _ => (h1.first(), h2.first(), false, q1, q2),
        };
        let flag_base = 0x1 | if proper { 0x2 } else { 0 };
        for (read, hit, q, first, mate, m, hits) in [
            (r1, a, q1, true, b, m1, &h1),
            (r2, b, q2, false, a, m2, &h2),
        ] {
            let rec = Rec {
                read,
                hit,
                mapq: q,
                flag: flag_base | if first { 0x40 } else { 0x80 },
                mate,
                tlen: tlen_of(hit, mate),
                sub: m.sub,
                rg,
                sa: None,
                xa: None,
            };
            self.write_with_split(buf, rec, hits, m.repeat);
        }
        (
            a.is_some() as u64 + b.is_some() as u64,
            if proper { 2 } else { 0 },
        )
    }
}

/// The least score that matters for another hit of a read that has
/// `hits` ([`floor_under`] their best; any score if none).
fn floor_of(hits: &[Hit]) -> i32 {
    hits.iter().map(|h| h.score).max().map_or(ANY, floor_under)
}

/// Most diagonals a mate rescue compares the mate at.
const MAX_SCAN: usize = 4096;

/// Most cluster pairs [`Aligner::pair_clusters`] looks at.
const MAX_PAIRED: usize = 64;

/// Where a mate may lie, for pairing: an extended hit or a cluster of
/// seeds not yet extended.
struct Spot {
    count: u32,
    reverse: bool,
    diag: i64,
    done: bool,
}

/// Fragment length of two placements in forward-reverse orientation.
pub(super) fn insert_of(a: &Hit, b: &Hit) -> Option<u64> {
    let (f, r) = if !a.reverse && b.reverse {
        (a, b)
    } else if a.reverse && !b.reverse {
        (b, a)
    } else {
        return None;
    };
    (r.end() > f.pos).then(|| r.end() - f.pos)
}

pub(super) fn estimate_insert(
    mapped: &[Mapped],
    sc: &Scoring,
    reads: &[Read],
) -> Option<InsertModel> {
    let mut ts: Vec<u64> = Vec::new();
    for (i, pair) in mapped.chunks_exact(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let (Some(x), Some(y)) = (a.hits.first(), b.hits.first()) else {
            continue;
        };
        if mapq_of(a, reads[2 * i].seq.len(), sc) < 30
            || mapq_of(b, reads[2 * i + 1].seq.len(), sc) < 30
        {
            continue;
        }
        if x.contig != y.contig {
            continue;
        }
        if let Some(t) = insert_of(x, y) {
            ts.push(t);
        }
    }
    if ts.len() < 50 {
        return None;
    }
    ts.sort_unstable();
    let med = ts[ts.len() / 2] as f64;
    let mut dev: Vec<f64> = ts.iter().map(|&t| (t as f64 - med).abs()).collect();
    dev.sort_by(|a, b| a.total_cmp(b));
    let sd = (dev[dev.len() / 2] * 1.4826).max(1.0);
    Some(InsertModel {
        mean: med,
        sd,
        lo: (med - 4.0 * sd).max(1.0) as u64,
        hi: (med + 4.0 * sd) as u64,
    })
}

/// Mapping quality on BWA-MEM's 0-60 scale, from the best score, the best
/// score elsewhere, and how many places tie.
pub(super) fn mapq(best: i32, sub: i32, len: usize, n_equal: u32, sc: &Scoring) -> u8 {
    if best <= 0 || sub >= best {
        return 0;
    }
    let len = len.max(1) as f64;
    let a = sc.matched as f64;
    let identity = (1.0 - (len * a - best as f64) / (a + sc.mismatch as f64) / len).clamp(0.0, 1.0);
    let scale = if len < 50.0 {
        1.0
    } else {
        50f64.ln() / len.ln()
    };
    let tmp = scale * identity * identity;
    let mut q = 6.02 * (best - sub) as f64 / a * tmp * tmp + 0.499;
    if n_equal > 0 {
        q -= 4.343 * ((n_equal + 1) as f64).ln() + 0.499;
    }
    q.clamp(0.0, 60.0) as u8
}

pub(super) fn mapq_of(m: &Mapped, len: usize, sc: &Scoring) -> u8 {
    match m.hits.first() {
        Some(b) => scale_repeat(mapq(b.score, m.sub, len, m.n_equal, sc), m.repeat),
        None => 0,
    }
}

/// Lower a MAPQ by the share of the read that is too repetitive to have
/// been searched: its unexamined copies could be where it belongs.
pub(super) fn scale_repeat(q: u8, repeat: f32) -> u8 {
    // Up to half the read repetitive, its unique half decides; beyond,
    // confidence falls to nothing for a read that is all repeat.
    (q as f32 * (2.0 * (1.0 - repeat)).clamp(0.0, 1.0)).round() as u8
}

/// TLEN of a record: the signed span from the leftmost to the rightmost
/// end of the two mates, positive for the leftmost one.
pub(super) fn tlen_of(x: Option<&Hit>, y: Option<&Hit>) -> i64 {
    match (x, y) {
        (Some(x), Some(y)) if x.contig == y.contig => {
            let left = x.pos.min(y.pos) as i64;
            let right = x.end().max(y.end()) as i64;
            let t = right - left;
            if x.pos < y.pos || (x.pos == y.pos && !x.reverse) {
                t
            } else {
                -t
            }
        }
        _ => 0,
    }
}
