//! SAM output: records, CIGAR, NM/MD tags, and the supplementary records
//! (SA tags) of chimeric reads.

use super::*;

impl Aligner<'_> {
    /// The supplementary alignment of a chimeric read: the best hit of a
    /// part of the read (at least [`MIN_SPLIT`] bases) that the primary
    /// leaves clipped, and its MAPQ against the other hits of that part.
    pub(super) fn split_of<'h>(
        &self,
        hits: &'h [Hit],
        primary: &Hit,
        len: usize,
        repeat: f32,
    ) -> Option<Split<'h>> {
        let p = primary.read_span(len);
        if p.0 < MIN_SPLIT && len - p.1 < MIN_SPLIT {
            return None;
        }
        let part = |h: &Hit| {
            let s = h.read_span(len);
            (s.1 - s.0 >= MIN_SPLIT && disjoint(p, s)).then_some(s)
        };
        let (best, span) = hits
            .iter()
            .filter(|h| !h.same_place(primary) && h.score >= MIN_SPLIT as i32)
            .filter_map(|h| part(h).map(|s| (h, s)))
            .max_by_key(|(h, _)| h.score)?;
        let rivals = hits
            .iter()
            .filter(|h| !h.same_place(best) && !h.same_place(primary))
            .filter(|h| !disjoint(span, h.read_span(len)));
        let sub = rivals.clone().map(|h| h.score).max().unwrap_or(0);
        let n_equal = rivals.filter(|h| h.score >= best.score).count() as u32;
        let q = mapq(
            best.score,
            sub,
            span.1 - span.0,
            n_equal,
            &self.opts.scoring,
        );
        Some(Split {
            hit: best,
            mapq: scale_repeat(q, repeat),
        })
    }

    /// Write a read's primary record and, for a chimeric read, its
    /// supplementary one, each naming the other in `SA`.
    pub(super) fn write_with_split(
        &self,
        buf: &mut Vec<u8>,
        primary: Rec,
        hits: &[Hit],
        repeat: f32,
    ) {
        let len = primary.read.seq.len();
        let xa = primary.hit.and_then(|p| self.xa_tag(hits, p, len));
        let primary = Rec {
            xa: xa.as_deref(),
            ..primary
        };
        let split = primary
            .hit
            .and_then(|p| self.split_of(hits, p, len, repeat).map(|s| (p, s)));
        let Some((p, split)) = split else {
            write_record(buf, self, &primary);
            return;
        };
        let to_split = self.sa_tag(split.hit, split.mapq);
        let to_primary = self.sa_tag(p, primary.mapq);
        write_record(
            buf,
            self,
            &Rec {
                sa: Some(&to_split),
                ..primary
            },
        );
        write_record(
            buf,
            self,
            &Rec {
                hit: Some(split.hit),
                mapq: split.mapq,
                flag: primary.flag | 0x800,
                tlen: tlen_of(Some(split.hit), primary.mate),
                sub: 0,
                sa: Some(&to_primary),
                xa: None,
                ..primary
            },
        );
    }

    /// `XA` tag text: the other placements of the part of the read the
    /// primary aligns that score at least 80% of it, as `bwa mem -h 5`
    /// lists them, when there are at most [`MAX_XA`] (more say only that
    /// the read is a repeat, as MAPQ does).
    pub(super) fn xa_tag(&self, hits: &[Hit], primary: &Hit, len: usize) -> Option<String> {
        let span = primary.read_span(len);
        let alts = || {
            hits.iter().filter(|h| {
                !h.same_place(primary)
                    && h.score * 5 >= primary.score * 4
                    && !disjoint(span, h.read_span(len))
            })
        };
        let n = alts().count();
        if n == 0 || n > MAX_XA {
            return None;
        }
        let mut t = String::new();
        for h in alts() {
            let _ = std::fmt::Write::write_fmt(
                &mut t,
                format_args!(
                    "{},{}{},",
                    self.idx.reference.contigs[h.contig].name,
                    if h.reverse { '-' } else { '+' },
                    h.pos + 1
                ),
            );
            push_cigar(&mut t, &h.cigar);
            let _ = std::fmt::Write::write_fmt(&mut t, format_args!(",{};", h.nm));
        }
        Some(t)
    }

    /// `SA` tag text of one alignment (`rname,pos,strand,CIGAR,mapQ,NM;`).
    pub(super) fn sa_tag(&self, h: &Hit, mapq: u8) -> String {
        let mut t = format!(
            "{},{},{},",
            self.idx.reference.contigs[h.contig].name,
            h.pos + 1,
            if h.reverse { '-' } else { '+' }
        );
        push_cigar(&mut t, &h.cigar);
        let _ = std::fmt::Write::write_fmt(&mut t, format_args!(",{mapq},{};", h.nm));
        t
    }
}

pub(super) fn write_out(out: &mut dyn Write, buf: &[u8]) -> Result<()> {
    out.write_all(buf).map_err(|e| GenomicsError::Io {
        path: "output".into(),
        source: e,
    })
}

/// The MD tag of an alignment (arguments as [`nm_score`]'s): it waits
/// for output, where NM and the score are every candidate's.
pub(super) fn md(q: &[u8], r: &[u8], cigar: &[(Op, u32)]) -> String {
    let (mut qi, mut ri, mut run) = (0usize, 0usize, 0u32);
    let mut md = String::new();
    for &(op, n) in cigar {
        let n = n as usize;
        match op {
            Op::SoftClip | Op::Ins => qi += n,
            Op::Del => {
                push_num(&mut md, run as u64);
                run = 0;
                md.push('^');
                for &c in &r[ri..ri + n] {
                    md.push(LETTER[c as usize] as char);
                }
                ri += n;
            }
            Op::Match => {
                // Eight bases a word: only those that do not match (or are
                // an N) are visited; the pads past the end match.
                let (qs, rs) = (&q[qi..qi + n], &r[ri..ri + n]);
                for at in (0..n).step_by(8) {
                    let mut differ = odd_bytes(word_at(qs, at, 0), word_at(rs, at, 0));
                    let mut done = 0;
                    while differ != 0 {
                        let j = differ.trailing_zeros() as usize / 8;
                        differ &= differ - 1;
                        push_num(&mut md, (run as usize + j - done) as u64);
                        run = 0;
                        md.push(LETTER[rs[at + j] as usize] as char);
                        done = j + 1;
                    }
                    run += ((n - at).min(8) - done) as u32;
                }
                qi += n;
                ri += n;
            }
        }
    }
    push_num(&mut md, run as u64);
    md
}

/// Text being built: SAM lines as bytes, tags as strings (ASCII only).
pub(super) trait Text {
    fn put(&mut self, ascii: &[u8]);
}

impl Text for Vec<u8> {
    fn put(&mut self, ascii: &[u8]) {
        self.extend_from_slice(ascii);
    }
}

impl Text for String {
    fn put(&mut self, ascii: &[u8]) {
        self.extend(ascii.iter().map(|&b| b as char));
    }
}

/// Append a number's digits, without the formatting machinery: a SAM
/// record has a dozen numbers.
pub(super) fn push_num(out: &mut impl Text, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&digits[i..]);
}

/// A signed number's digits.
pub(super) fn push_int(out: &mut impl Text, n: i64) {
    if n < 0 {
        out.put(b"-");
    }
    push_num(out, n.unsigned_abs());
}

/// One SAM/BAM record to write.
pub(super) struct Rec<'a> {
    pub(super) read: &'a Read,
    pub(super) hit: Option<&'a Hit>,
    pub(super) mapq: u8,
    pub(super) flag: u16,
    pub(super) mate: Option<&'a Hit>,
    pub(super) tlen: i64,
    pub(super) sub: i32,
    pub(super) rg: Option<&'a str>,
    /// The `SA` tag's value: the read's other parts (or its primary).
    pub(super) sa: Option<&'a str>,
    /// The `XA` tag's value: the read's alternative placements.
    pub(super) xa: Option<&'a str>,
}

/// Most alternative placements listed in `XA`.
pub(super) const MAX_XA: usize = 5;

pub(super) fn write_record(buf: &mut Vec<u8>, al: &Aligner, rec: &Rec) {
    let Rec {
        read: r,
        hit,
        mapq: q,
        mut flag,
        mate,
        tlen,
        sub,
        rg,
        sa,
        xa,
    } = *rec;
    let contigs = &al.idx.reference.contigs;
    let paired = flag & 0x1 != 0;
    if hit.is_none() {
        flag |= 0x4;
    }
    if paired && mate.is_none() {
        flag |= 0x8;
    }
    if hit.is_some_and(|h| h.reverse) {
        flag |= 0x10;
    }
    if paired && mate.is_some_and(|m| m.reverse) {
        flag |= 0x20;
    }
    if hit.is_none() || mate.is_none() {
        flag &= !0x2;
    }
    // An unmapped read with a mapped mate sits at its mate's place.
    let place = hit.or(mate);
    let reverse = hit.is_some_and(|h| h.reverse);
    if al.opts.format == Format::Bam {
        let (next_ref, next_pos) = match (paired, mate) {
            (true, Some(m)) => (Some(m.contig), Some(m.pos)),
            (true, None) if hit.is_some() => (place.map(|p| p.contig), place.map(|p| p.pos)),
            _ => (None, None),
        };
        let md = hit.map(|h| al.md_of(h, &r.seq));
        let tags = hit
            .zip(md.as_deref())
            .map(|(h, md)| (h.nm, md, h.score, sub));
        let mc = mate.map(|m| {
            let mut c = String::new();
            push_cigar(&mut c, &m.cigar);
            c
        });
        crate::bam::record(
            buf,
            &crate::bam::Fields {
                name: &r.name,
                flag,
                ref_id: place.map(|p| p.contig),
                pos: place.map(|p| p.pos),
                end: place.map(|p| if hit.is_some() { p.end() } else { p.pos + 1 }),
                mapq: if hit.is_some() { q } else { 0 },
                cigar: hit.map(|h| h.cigar.as_slice()).unwrap_or(&[]),
                next_ref,
                next_pos,
                tlen: if hit.is_some() { tlen } else { 0 },
                seq: &r.seq,
                qual: &r.qual,
                reverse,
                tags,
                rg,
                sa,
                mc: mc.as_deref(),
                xa,
            },
        );
        return;
    }
    buf.extend_from_slice(&r.name);
    let (rname, pos) = match place {
        Some(h) => (contigs[h.contig].name.as_str(), h.pos + 1),
        None => ("*", 0),
    };
    buf.push(b'\t');
    push_num(buf, flag as u64);
    buf.push(b'\t');
    buf.extend_from_slice(rname.as_bytes());
    buf.push(b'\t');
    push_num(buf, pos);
    buf.push(b'\t');
    push_num(buf, if hit.is_some() { q as u64 } else { 0 });
    buf.push(b'\t');
    match hit {
        Some(h) => push_cigar(buf, &h.cigar),
        None => buf.push(b'*'),
    }
    match (paired, mate) {
        (true, Some(m)) => {
            let same = place.is_some_and(|p| p.contig == m.contig);
            buf.push(b'\t');
            if same {
                buf.push(b'=');
            } else {
                buf.extend_from_slice(contigs[m.contig].name.as_bytes());
            }
            buf.push(b'\t');
            push_num(buf, m.pos + 1);
            buf.push(b'\t');
            push_int(buf, if hit.is_some() { tlen } else { 0 });
            buf.push(b'\t');
        }
        (true, None) if hit.is_some() => {
            buf.extend_from_slice(b"\t=\t");
            push_num(buf, pos);
            buf.extend_from_slice(b"\t0\t");
        }
        _ => buf.extend_from_slice(b"\t*\t0\t0\t"),
    }
    if r.seq.is_empty() {
        // SAM's "not stored" for a read with no bases.
        buf.extend_from_slice(b"*\t*");
    } else if reverse {
        buf.extend(
            r.seq
                .iter()
                .rev()
                .map(|&c| LETTER[crate::seq::complement(c) as usize]),
        );
        buf.push(b'\t');
        buf.extend(r.qual.iter().rev());
    } else {
        buf.extend(r.seq.iter().map(|&c| LETTER[c as usize]));
        buf.push(b'\t');
        buf.extend_from_slice(&r.qual);
    }
    if let Some(h) = hit {
        buf.extend_from_slice(b"\tNM:i:");
        push_num(buf, h.nm as u64);
        buf.extend_from_slice(b"\tMD:Z:");
        buf.extend_from_slice(al.md_of(h, &r.seq).as_bytes());
        buf.extend_from_slice(b"\tAS:i:");
        push_int(buf, h.score as i64);
        buf.extend_from_slice(b"\tXS:i:");
        push_int(buf, sub as i64);
    }
    if let Some(m) = mate {
        buf.extend_from_slice(b"\tMC:Z:");
        push_cigar(buf, &m.cigar);
    }
    if let Some(id) = rg {
        buf.extend_from_slice(b"\tRG:Z:");
        buf.extend_from_slice(id.as_bytes());
    }
    if let Some(sa) = sa {
        buf.extend_from_slice(b"\tSA:Z:");
        buf.extend_from_slice(sa.as_bytes());
    }
    if let Some(xa) = xa {
        buf.extend_from_slice(b"\tXA:Z:");
        buf.extend_from_slice(xa.as_bytes());
    }
    buf.push(b'\n');
}

pub(super) fn push_cigar(out: &mut impl Text, cigar: &[(Op, u32)]) {
    for &(op, n) in cigar {
        push_num(out, n as u64);
        out.put(match op {
            Op::Match => b"M",
            Op::Ins => b"I",
            Op::Del => b"D",
            Op::SoftClip => b"S",
        });
    }
}
