//! Joint genotyping of gVCFs: many samples' `genomics call --gvcf` outputs
//! into one multi-sample VCF.
//!
//! Every position where any sample has a variant becomes a site. Its
//! alleles are the union of the samples' alleles there (REFs of
//! different lengths are brought to the longest, as `bcftools merge`
//! does). Each sample's genotype comes from its own variant record at the
//! position (alleles renumbered, PLs carried over, and those of alleles
//! it did not see taken from its `<NON_REF>`), or else from the reference
//! block that covers the position: 0/0 with the block's depth and
//! confidence, which tells a sample that is reference there from one
//! with no reads (`./.`). QUAL is the confidence that not every sample
//! is homozygous reference.

use super::model::{ln_prior, log_sum, THETA_SNV};
use crate::bai::{Builder, Kind};
use crate::bam::writer::SortedWriter;
use crate::{GenomicsError, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// One sample's variant record.
#[derive(Debug, Clone)]
struct Variant {
    alleles: Vec<String>,
    /// Index of `<NON_REF>` among `alleles`' genotype order, if present
    /// (it is not in `alleles`).
    non_ref: bool,
    gt: Option<(usize, usize)>,
    gq: Option<u32>,
    dp: Option<u32>,
    ad: Vec<u32>,
    pl: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    pos: i64,
    end: i64,
    gq: u32,
    dp: u32,
    pl: [u32; 3],
}

/// One gVCF, read.
struct Sample {
    name: String,
    /// Per contig: variants by 0-based position.
    variants: Vec<BTreeMap<i64, Variant>>,
    /// Per contig: blocks, sorted.
    blocks: Vec<Vec<Block>>,
}

/// What a joint run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JointStats {
    pub samples: usize,
    pub sites: u64,
}

fn format_err(path: &Path, line: u64, message: impl Into<String>) -> GenomicsError {
    GenomicsError::Format {
        path: path.to_path_buf(),
        record: line,
        message: message.into(),
    }
}

fn contig_of(line: &str) -> Option<(String, u64)> {
    let inner = line.strip_prefix("##contig=<")?.strip_suffix('>')?;
    let mut id = None;
    let mut len = None;
    for kv in inner.split(',') {
        match kv.split_once('=') {
            Some(("ID", v)) => id = Some(v.to_string()),
            Some(("length", v)) => len = v.parse().ok(),
            _ => {}
        }
    }
    Some((id?, len?))
}

/// Read a gVCF (bgzipped or plain).
fn read_gvcf(path: &Path) -> Result<(Vec<(String, u64)>, Sample)> {
    let io = |source| GenomicsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let input = crate::io::open(path)?;
    let mut reader = BufReader::new(input.reader);
    let mut contigs: Vec<(String, u64)> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut name = None;
    let mut sample = Sample {
        name: String::new(),
        variants: Vec::new(),
        blocks: Vec::new(),
    };
    let mut line = String::new();
    let mut n = 0u64;
    let mut gvcf = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        n += 1;
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(c) = contig_of(l) {
            ids.insert(c.0.clone(), contigs.len());
            contigs.push(c);
            continue;
        }
        if l.starts_with("##ALT=<ID=NON_REF") {
            gvcf = true;
        }
        if l.starts_with("##") || l.is_empty() {
            continue;
        }
        if let Some(h) = l.strip_prefix("#CHROM") {
            let cols: Vec<&str> = h.split('\t').collect();
            if cols.len() != 10 {
                return Err(format_err(path, n, "a gVCF has exactly one sample column"));
            }
            if !gvcf {
                return Err(format_err(
                    path,
                    n,
                    "not a gVCF (no <NON_REF> allele declared): call it with `accelhub genomics call --gvcf`",
                ));
            }
            name = Some(cols[9].to_string());
            sample.variants = vec![BTreeMap::new(); contigs.len()];
            sample.blocks = vec![Vec::new(); contigs.len()];
            continue;
        }
        if name.is_none() {
            return Err(format_err(
                path,
                n,
                "a record before the #CHROM header line",
            ));
        }
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 10 {
            return Err(format_err(path, n, "a record needs 10 columns"));
        }
        let c = *ids.get(f[0]).ok_or_else(|| {
            format_err(path, n, format!("contig '{}' is not in the header", f[0]))
        })?;
        let pos: i64 = f[1]
            .parse::<i64>()
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| format_err(path, n, format!("'{}' is not a position", f[1])))?
            - 1;
        let keys: Vec<&str> = f[8].split(':').collect();
        let vals: Vec<&str> = f[9].split(':').collect();
        let field = |k: &str| {
            keys.iter()
                .position(|x| *x == k)
                .and_then(|i| vals.get(i).copied())
        };
        let num = |k: &str| field(k).and_then(|v| v.parse::<u32>().ok());
        let list = |k: &str| -> Vec<u32> {
            field(k)
                .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default()
        };
        let alts: Vec<&str> = f[4].split(',').collect();
        if alts == ["<NON_REF>"] {
            let end = f[7]
                .split(';')
                .find_map(|kv| kv.strip_prefix("END="))
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| format_err(path, n, "a reference block without END"))?;
            let pl = list("PL");
            sample.blocks[c].push(Block {
                pos,
                end,
                gq: num("GQ").unwrap_or(0),
                dp: num("MIN_DP").or_else(|| num("DP")).unwrap_or(0),
                pl: [
                    pl.first().copied().unwrap_or(0),
                    pl.get(1).copied().unwrap_or(0),
                    pl.get(2).copied().unwrap_or(0),
                ],
            });
            continue;
        }
        let non_ref = alts.last() == Some(&"<NON_REF>");
        let mut alleles = vec![f[3].to_string()];
        alleles.extend(
            alts.iter()
                .filter(|a| **a != "<NON_REF>")
                .map(|a| a.to_string()),
        );
        let gt = field("GT").and_then(|g| {
            let (a, b) = g.split_once(['/', '|'])?;
            Some((a.parse().ok()?, b.parse().ok()?))
        });
        sample.variants[c].insert(
            pos,
            Variant {
                alleles,
                non_ref,
                gt,
                gq: num("GQ"),
                dp: num("DP"),
                ad: list("AD"),
                pl: list("PL"),
            },
        );
    }
    sample.name = name.ok_or_else(|| format_err(path, n, "no #CHROM header line"))?;
    for b in &mut sample.blocks {
        b.sort_by_key(|b| b.pos);
    }
    Ok((contigs, sample))
}

/// A sample's genotype, GQ, DP, AD and PL at a joint site.
type SampleCall = (
    Option<(usize, usize)>,
    Option<u32>,
    Option<u32>,
    Option<Vec<u32>>,
    Vec<u32>,
);

/// Index of genotype (j, k), j <= k, in VCF order.
fn gt_index(j: usize, k: usize) -> usize {
    let (j, k) = (j.min(k), j.max(k));
    k * (k + 1) / 2 + j
}

/// Merge `inputs` (gVCFs of distinct samples over the same contigs) into
/// `out`, a bgzipped, indexed multi-sample VCF.
pub fn joint_files(inputs: &[PathBuf], out: &Path, command_line: &str) -> Result<JointStats> {
    if inputs.is_empty() {
        return Err(GenomicsError::Invalid("no gVCFs to merge".into()));
    }
    let mut samples = Vec::new();
    let mut contigs: Option<Vec<(String, u64)>> = None;
    for p in inputs {
        let (c, s) = read_gvcf(p)?;
        match &contigs {
            None => contigs = Some(c),
            Some(first) if *first != c => {
                return Err(GenomicsError::Invalid(format!(
                    "{}: its contigs differ from those of {}: the samples were called against different references",
                    p.display(),
                    inputs[0].display()
                )))
            }
            _ => {}
        }
        if let Some(i) = samples.iter().position(|o: &Sample| o.name == s.name) {
            return Err(GenomicsError::Invalid(format!(
                "{} and {} are both sample '{}'",
                inputs[i].display(),
                p.display(),
                s.name
            )));
        }
        samples.push(s);
    }
    let contigs = contigs.unwrap_or_default();
    let mut head = super::vcf_preamble("joint", command_line, &contigs);
    head.push_str(concat!(
        "##INFO=<ID=AC,Number=A,Type=Integer,Description=\"Alternate allele count in called genotypes\">\n",
        "##INFO=<ID=AN,Number=1,Type=Integer,Description=\"Alleles in called genotypes\">\n",
        "##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Depth summed over the samples\">\n",
        "##FORMAT=<ID=DP,Number=1,Type=Integer,Description=\"Reads at the site (the block's least, for reference)\">\n",
    ));
    head.push_str(super::GENOTYPE_FORMATS);
    head.push_str("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT");
    for s in &samples {
        head.push('\t');
        head.push_str(&s.name);
    }
    head.push('\n');
    let names: Vec<String> = contigs.iter().map(|c| c.0.clone()).collect();
    let kind = Kind::for_lengths(contigs.iter().map(|c| c.1));
    let mut writer =
        SortedWriter::create_with(out, head.as_bytes(), Builder::for_vcf(kind, &names), 6, 1)?;
    let mut stats = JointStats {
        samples: samples.len(),
        sites: 0,
    };
    let result = (|| -> Result<()> {
        let mut line = String::new();
        for (c, (cname, _)) in contigs.iter().enumerate() {
            let mut positions: Vec<i64> = samples
                .iter()
                .flat_map(|s| s.variants[c].keys().copied())
                .collect();
            positions.sort_unstable();
            positions.dedup();
            for pos in positions {
                line.clear();
                let end = site_line(cname, pos, &samples, c, &mut line);
                writer.write_indexed(c as i32, pos, end, &[line.as_bytes()])?;
                stats.sites += 1;
            }
        }
        Ok(())
    })();
    writer.complete(result)?;
    Ok(stats)
}

/// Write the joint record at `pos` of contig `c`; returns its end.
fn site_line(cname: &str, pos: i64, samples: &[Sample], c: usize, out: &mut String) -> i64 {
    use std::fmt::Write;
    // The longest REF, and every sample's alleles extended to it.
    let here: Vec<Option<&Variant>> = samples.iter().map(|s| s.variants[c].get(&pos)).collect();
    let refa = here
        .iter()
        .flatten()
        .map(|v| v.alleles[0].as_str())
        .max_by_key(|a| a.len())
        .unwrap_or("N")
        .to_string();
    let mut alleles: Vec<String> = vec![refa.clone()];
    // Per sample: its allele i -> merged index (None: its REF does not
    // prefix the merged REF; the sample is then not called).
    let mut maps: Vec<Option<Vec<usize>>> = Vec::with_capacity(samples.len());
    for v in &here {
        let Some(v) = v else {
            maps.push(None);
            continue;
        };
        let Some(tail) = refa.strip_prefix(v.alleles[0].as_str()) else {
            maps.push(None);
            continue;
        };
        let mut m = Vec::with_capacity(v.alleles.len());
        for a in &v.alleles {
            let ext = format!("{a}{tail}");
            let i = match alleles.iter().position(|x| *x == ext) {
                Some(i) => i,
                None => {
                    alleles.push(ext);
                    alleles.len() - 1
                }
            };
            m.push(i);
        }
        maps.push(Some(m));
    }
    let na = alleles.len();
    let ng = na * (na + 1) / 2;
    let mut ac = vec![0u32; na];
    let (mut an, mut dp_sum) = (0u32, 0u32);
    let mut ln_p_ref = 0f64;
    let mut cols = String::new();
    for (s, sample) in samples.iter().enumerate() {
        cols.push('\t');
        let (gt, gq, dp, ad, pl): SampleCall = match (here[s], &maps[s]) {
            (Some(v), Some(m)) => {
                // Genotype (j, k) of the merged alleles, in the
                // sample's own numbering (<NON_REF> after its alleles).
                let own = |j: usize| {
                    m.iter()
                        .position(|&x| x == j)
                        .or(v.non_ref.then_some(m.len()))
                };
                let mut pl = vec![u32::MAX; ng];
                for k in 0..na {
                    for j in 0..=k {
                        if let (Some(a), Some(b)) = (own(j), own(k)) {
                            if let Some(&x) = v.pl.get(gt_index(a, b)) {
                                pl[gt_index(j, k)] = x;
                            }
                        }
                    }
                }
                let gt = v.gt.and_then(|(a, b)| Some((*m.get(a)?, *m.get(b)?)));
                let mut ad = vec![0u32; na];
                for (i, &x) in v.ad.iter().enumerate().take(m.len()) {
                    ad[m[i]] += x;
                }
                (gt, v.gq, v.dp, Some(ad), pl)
            }
            _ => {
                let blocks = &sample.blocks[c];
                let i = blocks.partition_point(|b| b.end <= pos);
                // A block without reads is no call.
                match blocks
                    .get(i)
                    .filter(|b| b.pos <= pos && b.dp > 0 && here[s].is_none())
                {
                    Some(b) => {
                        let mut pl = vec![0u32; ng];
                        for k in 0..na {
                            for j in 0..=k {
                                pl[gt_index(j, k)] = match (j, k) {
                                    (0, 0) => b.pl[0],
                                    (0, _) => b.pl[1],
                                    _ => b.pl[2],
                                };
                            }
                        }
                        (Some((0, 0)), Some(b.gq), Some(b.dp), None, pl)
                    }
                    None => (None, None, None, None, Vec::new()),
                }
            }
        };
        match gt {
            Some((a, b)) => {
                let (a, b) = (a.min(b), a.max(b));
                an += 2;
                ac[a] += 1;
                ac[b] += 1;
                let _ = write!(cols, "{a}/{b}");
            }
            None => cols.push_str("./."),
        }
        let opt = |x: Option<u32>| x.map_or(".".to_string(), |v| v.to_string());
        let _ = write!(cols, ":{}:{}", opt(gq), opt(dp));
        dp_sum += dp.unwrap_or(0);
        match ad {
            Some(ad) => {
                let _ = write!(
                    cols,
                    ":{}",
                    ad.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                );
            }
            None => cols.push_str(":."),
        }
        if pl.is_empty() {
            cols.push_str(":.");
        } else {
            let known: Vec<u32> = pl.iter().copied().filter(|&x| x != u32::MAX).collect();
            let worst = known.iter().copied().max().unwrap_or(0);
            let text: Vec<String> = pl
                .iter()
                .map(|&x| if x == u32::MAX { worst } else { x }.to_string())
                .collect();
            let _ = write!(cols, ":{}", text.join(","));
            // P(0/0 | this sample), with the caller's priors.
            let ln = |j: usize, k: usize| {
                let x = pl[gt_index(j, k)];
                let x = if x == u32::MAX { worst } else { x };
                -(x as f64) / 10.0 * std::f64::consts::LN_10 + ln_prior(j, k, THETA_SNV)
            };
            let p00 = ln(0, 0);
            let total = log_sum(
                (0..na)
                    .flat_map(|k| (0..=k).map(move |j| (j, k)))
                    .map(|(j, k)| ln(j, k)),
            );
            ln_p_ref += p00 - total;
        }
    }
    let qual = (-10.0 * ln_p_ref / std::f64::consts::LN_10).clamp(0.0, 9999.0);
    let _ = writeln!(
        out,
        "{cname}\t{}\t.\t{}\t{}\t{:.2}\t{}\tAC={};AN={an};DP={dp_sum}\tGT:GQ:DP:AD:PL{cols}",
        pos + 1,
        alleles[0],
        alleles[1..].join(","),
        qual,
        if qual >= 20.0 { "PASS" } else { "LowQual" },
        ac[1..]
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    pos + refa.len() as i64
}
