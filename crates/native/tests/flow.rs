//! The flow after alignment on the `cpu` device: `genomics/sort`,
//! `genomics/markdup`, `genomics/call` and `genomics/germline`, through the
//! `Backend` trait as the platform drives them, on the germline sample
//! (planted variants, known duplicates): their committed test vectors,
//! named outputs, progress by stage, and bad input.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

mod common;
use common::object;

use accelhub_device::{Backend, CallError, CallInput, CallOutput, ImageId, ObjectArg, OutputSink};
use accelhub_domain::{Limits, Params};
use accelhub_native::builtin::{self, germline_data, test_index};
use accelhub_native::{NativeBackend, NativeConfig};
use bytes::Bytes;
use std::io::Read;
use std::path::{Path, PathBuf};

async fn backend() -> NativeBackend {
    let b = NativeBackend::new(NativeConfig {
        slots: 1,
        threads: 2,
        resident: 2,
    });
    for k in ["align", "sort", "markdup", "call", "germline"] {
        b.load(
            &ImageId(k.into()),
            Bytes::from(format!("kernel = \"genomics/{k}\"\nabi = 1\n")),
        )
        .await
        .unwrap();
    }
    b
}

/// A call as verification makes it: input in memory, named `input`.
fn call(input: &[u8], params: serde_json::Value, objects: Vec<(&str, ObjectArg)>) -> CallInput {
    let params: Params = params.as_object().cloned().unwrap_or_default();
    let mut c = CallInput::in_memory(Bytes::copy_from_slice(input), params, Limits::DEFAULT);
    c.objects = objects
        .into_iter()
        .map(|(k, o)| (k.to_string(), o))
        .collect();
    c
}

/// `c` offering the named outputs `names`, each to a file in `dir`.
fn named(mut c: CallInput, dir: &Path, names: &[&str]) -> CallInput {
    c.named_outputs = names
        .iter()
        .map(|n| (n.to_string(), OutputSink::File(dir.join(n))))
        .collect();
    c
}

async fn run(b: &NativeBackend, kernel: &str, c: CallInput) -> Result<CallOutput, CallError> {
    b.call(&ImageId(kernel.into()), c).await
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn gunzip_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut input = accelhub_genomics::io::from_reader(
        Path::new("x.gz"),
        Box::new(std::io::Cursor::new(bytes.to_vec())),
    )
    .unwrap();
    let mut out = Vec::new();
    input.reader.read_to_end(&mut out).unwrap();
    out
}

fn gunzip(bytes: &[u8]) -> String {
    String::from_utf8(gunzip_bytes(bytes)).unwrap()
}

/// The genotype called at 1-based `pos` on chrG, if any.
fn genotype_at(vcf: &str, pos: usize) -> Option<String> {
    vcf.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f[1] == pos.to_string())
        .map(|f| f[9].split(':').next().unwrap().to_string())
}

/// Each stage's committed output is what it produces from the one before
/// (verification checks the same at start-up); `ACCELHUB_BLESS=1`
/// rewrites them after a deliberate change (bump builtin::VERSION then).
#[tokio::test]
async fn flow_vectors_match_the_committed_outputs() {
    let b = backend().await;
    let data = germline_data();
    let index = test_index(&data.reference);
    // Objects keyed as verification keys them (the key names the
    // reference in the VCF header).
    let bless = std::env::var_os("ACCELHUB_BLESS").is_some();
    let check = |file: &str, got: Bytes, committed: &[u8]| {
        if bless {
            std::fs::write(vectors().join(file), &got).unwrap();
        } else {
            assert!(
                got == committed,
                "{file}: the output changed; if deliberate, run with ACCELHUB_BLESS=1 \
                 and bump builtin::VERSION"
            );
        }
        got
    };
    let c = call(
        &data.r1,
        serde_json::json!({"format": "sam"}),
        vec![
            ("index", object("index", &index)),
            ("reads2", object("reads2", &data.r2)),
        ],
    );
    let out = run(&b, "align", c).await.unwrap().output.bytes();
    let aligned = check("germ-aligned.sam", out, builtin::GERM_ALIGNED_SAM);
    let c = call(&aligned, serde_json::json!({}), vec![]);
    let out = run(&b, "sort", c).await.unwrap().output.bytes();
    let sorted = check("germ-sorted.bam", out, builtin::GERM_SORTED_BAM);
    let c = call(&sorted, serde_json::json!({}), vec![]);
    let out = run(&b, "markdup", c).await.unwrap().output.bytes();
    let marked = check("germ-marked.bam", out, builtin::GERM_MARKED_BAM);
    let c = call(
        &marked,
        serde_json::json!({}),
        vec![("index", object("index", &index))],
    );
    let out = run(&b, "call", c).await.unwrap().output.bytes();
    check("germ-calls.vcf.gz", out, builtin::GERM_CALLS_VCF);
    let c = call(
        &data.r1,
        serde_json::json!({}),
        vec![
            ("index", object("index", &index)),
            ("reads2", object("reads2", &data.r2)),
        ],
    );
    let out = run(&b, "germline", c).await.unwrap().output.bytes();
    check("germ-flow.vcf.gz", out, builtin::GERM_FLOW_VCF);
}

#[tokio::test]
async fn the_whole_flow_finds_the_planted_variants_and_writes_every_output() {
    let b = backend().await;
    let data = germline_data();
    let index = test_index(&data.reference);
    let dir = tempfile::tempdir().unwrap();
    let c = named(
        call(
            &data.r1,
            serde_json::json!({"read_group": "@RG\\tID:g1\\tSM:patient7\\tLB:lib1"}),
            vec![
                ("index", object("germ.ahx", &index)),
                ("reads2", object("r2.fq", &data.r2)),
            ],
        ),
        dir.path(),
        &["tbi", "bam", "bai", "qc"],
    );
    let control = c.control.clone();
    let out = run(&b, "germline", c).await.unwrap();
    assert_eq!(
        out.named.keys().map(String::as_str).collect::<Vec<_>>(),
        ["bai", "bam", "qc", "tbi"]
    );
    let vcf = gunzip(&out.output.bytes());
    assert!(vcf.contains("\tFORMAT\tpatient7\n"), "{vcf}");
    assert_eq!(
        genotype_at(&vcf, builtin::GERM_HET_SNV + 1).as_deref(),
        Some("0/1")
    );
    assert_eq!(
        genotype_at(&vcf, builtin::GERM_HOM_SNV + 1).as_deref(),
        Some("1/1")
    );
    assert_eq!(
        genotype_at(&vcf, builtin::GERM_HET_DEL + 1).as_deref(),
        Some("0/1")
    );
    let line = vcf
        .lines()
        .find(|l| l.starts_with(&format!("chrG\t{}\t", builtin::GERM_HET_DEL + 1)))
        .unwrap();
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!(f[3].len(), 4, "a 3-base deletion: {line}");
    assert_eq!(f[4].len(), 1, "{line}");

    let qc = std::fs::read_to_string(dir.path().join("qc")).unwrap();
    let value = |k: &str| {
        qc.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}\t")))
            .unwrap_or_else(|| panic!("{k} in {qc}"))
            .to_string()
    };
    let reads = 2 * (builtin::GERM_PAIRS + builtin::GERM_DUPLICATES);
    assert_eq!(value("reads"), reads.to_string());
    let dup_pct: f64 = value("duplicates_pct").parse().unwrap();
    let expected = 100.0 * (2 * builtin::GERM_DUPLICATES) as f64 / reads as f64;
    assert!((dup_pct - expected).abs() < 0.01, "{dup_pct} vs {expected}");
    assert!(value("snvs") == "2" && value("indels") == "1", "{qc}");
    // The BAM: sorted, with its read group; the index is a BAI.
    let bam = std::fs::read(dir.path().join("bam")).unwrap();
    assert_eq!(&bam[..4], b"\x1f\x8b\x08\x04");
    assert_eq!(
        &std::fs::read(dir.path().join("bai")).unwrap()[..4],
        b"BAI\x01"
    );
    assert_eq!(
        &gunzip_bytes(&std::fs::read(dir.path().join("tbi")).unwrap())[..4],
        b"TBI\x01"
    );
    // Progress went stage by stage; the last was calling.
    assert_eq!(control.unit.get().as_deref(), Some("bp called on chrG"));
}

#[tokio::test]
async fn sort_and_markdup_give_their_index_and_statistics() {
    let b = backend().await;
    let dir = tempfile::tempdir().unwrap();
    let c = named(
        call(
            builtin::GERM_ALIGNED_SAM,
            serde_json::json!({"markdup": true}),
            vec![],
        ),
        dir.path(),
        &["bai"],
    );
    let control = c.control.clone();
    let sorted = run(&b, "sort", c).await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("bai")).unwrap()[..4],
        *b"BAI\x01"
    );
    assert_eq!(control.unit.get().as_deref(), Some("records written"));
    // Sorting with markdup on the way flags what markdup on the sorted
    // file flags: the same records, only the @PG lines differ.
    let records = |bam: &[u8]| {
        let p = dir.path().join("x.bam");
        std::fs::write(&p, bam).unwrap();
        let mut r = accelhub_genomics::bam::reader::Reader::open(&p, 1).unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while r.next_into(&mut buf).unwrap() {
            out.push(buf.clone());
        }
        out
    };
    assert_eq!(
        records(&sorted.output.bytes()),
        records(builtin::GERM_MARKED_BAM)
    );

    let dir = tempfile::tempdir().unwrap();
    let c = named(
        call(builtin::GERM_SORTED_BAM, serde_json::json!({}), vec![]),
        dir.path(),
        &["bai", "stats"],
    );
    run(&b, "markdup", c).await.unwrap();
    let stats = std::fs::read_to_string(dir.path().join("stats")).unwrap();
    assert!(
        stats.contains(&format!("DUPLICATE PAIR: {}", 2 * builtin::GERM_DUPLICATES)),
        "{stats}"
    );
}

#[tokio::test]
async fn bad_input_fails_the_call_saying_what_is_wrong() {
    let b = backend().await;
    let data = germline_data();
    let index = test_index(&data.reference);
    let other = test_index(&builtin::test_data().reference);
    let germ = || vec![("index", object("germ.ahx", &index))];
    let input_error = |r: Result<CallOutput, CallError>| match r {
        Err(CallError::Input(m)) => m,
        other => panic!("expected an input error, got {other:?}"),
    };

    // An unsorted file to the caller.
    let m = input_error(
        run(
            &b,
            "call",
            call(builtin::GERM_ALIGNED_SAM, serde_json::json!({}), germ()),
        )
        .await,
    );
    assert!(m.contains("sort"), "{m}");
    // The BAM of another reference.
    let m = input_error(
        run(
            &b,
            "call",
            call(
                builtin::GERM_MARKED_BAM,
                serde_json::json!({}),
                vec![("index", object("other.ahx", &other))],
            ),
        )
        .await,
    );
    assert!(m.contains("chrG") && m.contains("other.ahx"), "{m}");
    // A region outside the reference.
    let m = input_error(
        run(
            &b,
            "call",
            call(
                builtin::GERM_MARKED_BAM,
                serde_json::json!({"region": "chrZ:1-10"}),
                germ(),
            ),
        )
        .await,
    );
    assert!(m.contains("chrZ"), "{m}");
    // No index.
    let m = input_error(
        run(
            &b,
            "call",
            call(builtin::GERM_MARKED_BAM, serde_json::json!({}), vec![]),
        )
        .await,
    );
    assert!(m.contains("'index'"), "{m}");
    // A truncated BAM.
    let cut = &builtin::GERM_SORTED_BAM[..builtin::GERM_SORTED_BAM.len() / 2];
    let m = input_error(run(&b, "markdup", call(cut, serde_json::json!({}), vec![])).await);
    // Named as the caller named it ("input", as verification calls it),
    // not by the node's work directory.
    assert!(m.starts_with("input"), "{m}");
    assert!(!m.contains("work-") && !m.contains("/tmp"), "{m}");
    // Garbage to sort; a bad parameter.
    let m = input_error(
        run(
            &b,
            "sort",
            call(b"not a SAM file\n", serde_json::json!({}), vec![]),
        )
        .await,
    );
    assert!(m.contains("record") || m.contains("line"), "{m}");
    let m = input_error(
        run(
            &b,
            "sort",
            call(
                builtin::GERM_ALIGNED_SAM,
                serde_json::json!({"markdup": "yes"}),
                vec![],
            ),
        )
        .await,
    );
    assert!(m.contains("'markdup'"), "{m}");
}
