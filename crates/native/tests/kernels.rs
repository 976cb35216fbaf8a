//! The `cpu` device on its built-in kernels, through the `Backend` trait as
//! the platform drives it: real index builds and alignments.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

mod common;
use common::object;

use accelhub_device::{
    Backend, CallControl, CallData, CallError, CallInput, ImageId, ObjectArg, Output, OutputSink,
};
use accelhub_domain::{Limits, Params};
use accelhub_native::builtin::{self, test_data, test_index};
use accelhub_native::{NativeBackend, NativeConfig};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

async fn backend() -> (NativeBackend, ImageId, ImageId) {
    let b = NativeBackend::new(NativeConfig {
        slots: 1,
        threads: 2,
        resident: 2,
    });
    let align = ImageId("cpu:align".into());
    let index = ImageId("cpu:index".into());
    b.load(
        &align,
        Bytes::from_static(b"kernel = \"genomics/align\"\nabi = 1\n"),
    )
    .await
    .unwrap();
    b.load(
        &index,
        Bytes::from_static(b"kernel = \"genomics/index\"\nabi = 1\n"),
    )
    .await
    .unwrap();
    (b, align, index)
}

fn call(input: &[u8], params: &[(&str, &str)], objects: Vec<(&str, ObjectArg)>) -> CallInput {
    let mut p = Params::new();
    for (k, v) in params {
        p.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let mut c = CallInput::in_memory(Bytes::copy_from_slice(input), p, Limits::DEFAULT);
    c.input_name = "reads.fq".into();
    c.objects = objects
        .into_iter()
        .map(|(k, o)| (k.to_string(), o))
        .collect::<BTreeMap<_, _>>();
    c
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// The committed expectations of the built-in test vectors are what the
/// aligner produces; `ACCELHUB_BLESS=1` rewrites them after a deliberate
/// change (and the IPs' version must then be bumped).
#[tokio::test]
async fn built_in_test_vectors_match_the_committed_alignments() {
    let (b, align, _) = backend().await;
    let data = test_data();
    let index = test_index(&data.reference);
    assert!(!index.is_empty(), "the test reference indexes");
    let bless = std::env::var_os("ACCELHUB_BLESS").is_some();
    for (file, committed, mate) in [
        ("align-pairs.sam", builtin::ALIGN_PAIRS_SAM, true),
        ("align-single.sam", builtin::ALIGN_SINGLE_SAM, false),
    ] {
        let mut objects = vec![("index", object("ref.ahx", &index))];
        if mate {
            objects.push(("reads2", object("r2.fq", &data.r2)));
        }
        let out = b
            .call(&align, call(&data.r1, &[("format", "sam")], objects))
            .await
            .unwrap();
        let sam = out.output.bytes();
        if bless {
            std::fs::write(vectors().join(file), &sam).unwrap();
            continue;
        }
        assert!(
            sam == committed,
            "{file}: the aligner's output changed; if deliberate, run with ACCELHUB_BLESS=1 \
             and bump builtin::VERSION"
        );
    }
}

#[tokio::test]
async fn aligned_reads_land_where_they_were_simulated() {
    let (b, align, _) = backend().await;
    let data = test_data();
    let index = test_index(&data.reference);
    let c = call(
        &data.r1,
        &[("format", "sam"), ("read_group", "@RG\\tID:t1\\tSM:s")],
        vec![
            ("index", object("ref.ahx", &index)),
            ("reads2", object("r2.fq", &data.r2)),
        ],
    );
    let control = c.control.clone();
    let out = b.call(&align, c).await.unwrap();
    let sam = String::from_utf8(out.output.bytes().to_vec()).unwrap();
    let records: Vec<Vec<&str>> = sam
        .lines()
        .filter(|l| !l.starts_with('@'))
        .map(|l| l.split('\t').collect())
        .collect();
    // 48 simulated pairs and one that matches nowhere.
    assert_eq!(records.len(), 98);
    assert!(sam.contains("@RG\tID:t1\tSM:s"));
    for r in &records {
        let flag: u16 = r[1].parse().unwrap();
        if r[0] == "unplaced" {
            assert!(flag & 4 != 0, "noise is unmapped: {r:?}");
        } else {
            assert!(flag & 4 == 0 && flag & 2 != 0, "a proper pair: {r:?}");
            assert!(r.contains(&"RG:Z:t1"));
        }
    }
    // Progress counted every read; the unit says so.
    assert_eq!(control.items.load(Ordering::Relaxed), 98);
    assert_eq!(control.unit.get().as_deref(), Some("reads"));
    let log = String::from_utf8_lossy(&out.log);
    assert!(log.contains("aligned 98 reads"), "{log}");
}

#[tokio::test]
async fn the_index_stays_resident_between_calls() {
    let (b, align, _) = backend().await;
    let data = test_data();
    let index = test_index(&data.reference);
    let mut logs = Vec::new();
    for _ in 0..3 {
        let out = b
            .call(
                &align,
                call(&data.r1, &[], vec![("index", object("ref.ahx", &index))]),
            )
            .await
            .unwrap();
        // BAM by default: BGZF blocks, ending with the empty EOF block.
        let bam = out.output.bytes();
        assert_eq!(&bam[..4], &[0x1f, 0x8b, 8, 4]);
        assert_eq!(&bam[bam.len() - 28..bam.len() - 24], &[0x1f, 0x8b, 8, 4]);
        logs.push(String::from_utf8_lossy(&out.log).into_owned());
    }
    assert!(logs[0].contains("loaded in"), "{}", logs[0]);
    assert!(logs[1].contains("resident") && logs[2].contains("resident"));
    assert_eq!((b.resident().loads(), b.resident().hits()), (1, 2));
}

#[tokio::test]
async fn the_index_kernel_writes_the_index_and_counts_bases() {
    let (b, _, index) = backend().await;
    let data = test_data();
    let c = call(&data.reference, &[], vec![]);
    let control = c.control.clone();
    let out = b.call(&index, c).await.unwrap();
    assert!(out.output.bytes() == test_index(&data.reference));
    assert_eq!(control.items.load(Ordering::Relaxed), 24_000);
    assert_eq!(control.unit.get().as_deref(), Some("bases"));
    // The index is deterministic: its digest is pinned, so a format change
    // cannot slip by without a new version of the built-in IPs.
    let digest = hex::encode(Sha256::digest(out.output.bytes()));
    if std::env::var_os("ACCELHUB_BLESS").is_some() {
        std::fs::write(vectors().join("ref.ahx.sha256"), format!("{digest}\n")).unwrap();
        return;
    }
    assert_eq!(digest, include_str!("../vectors/ref.ahx.sha256").trim());
}

#[tokio::test]
async fn bad_inputs_fail_with_the_file_and_record() {
    let (b, align, index_kernel) = backend().await;
    let data = test_data();
    let index = test_index(&data.reference);

    // A malformed FASTQ record: the input's name and the record number.
    let mut bad = data.r1.clone();
    let third = bad
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == b'\n')
        .nth(9)
        .map(|(i, _)| i)
        .unwrap();
    bad[third + 1] = b'X'; // the third record's '@' header
    let e = b
        .call(
            &align,
            call(&bad, &[], vec![("index", object("ref.ahx", &index))]),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Input(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("reads.fq") && msg.contains("record 3"),
        "{msg}"
    );

    // Pair files of different lengths: names the shorter one.
    let short: Vec<u8> = data.r2[..data.r2.len() / 2].to_vec();
    let cut = short.len() - short.iter().rev().position(|&c| c == b'@').unwrap() - 1;
    let e = b
        .call(
            &align,
            call(
                &data.r1,
                &[],
                vec![
                    ("index", object("ref.ahx", &index)),
                    ("reads2", object("r2.fq", &short[..cut])),
                ],
            ),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("differ in length"), "{e}");

    // Something that is not an index.
    let e = b
        .call(
            &align,
            call(
                &data.r1,
                &[],
                vec![("index", object("ref.fa", &data.reference))],
            ),
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("parameter 'index'") && msg.contains("ref.fa"),
        "{msg}"
    );

    // An object whose bytes are not the ones its digest names.
    let mut lying = object("ref.ahx", &index);
    lying.sha256 = "00".repeat(32);
    let e = b
        .call(&align, call(&data.r1, &[], vec![("index", lying)]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("changed while it was read"), "{e}");
    assert!(!b.resident().resident().contains(&"00".repeat(32)));

    // No index, a bad format, a bad read group.
    let e = b
        .call(&align, call(&data.r1, &[], vec![]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("'index' is missing"), "{e}");
    for (k, v, want) in [
        ("format", "cram", "must be \"bam\" or \"sam\""),
        ("read_group", "ID:x", "read_group"),
    ] {
        let e = b
            .call(
                &align,
                call(
                    &data.r1,
                    &[(k, v)],
                    vec![("index", object("ref.ahx", &index))],
                ),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }

    // A FASTA without a header, and a zero-length contig.
    let e = b
        .call(&index_kernel, call(b"ACGT\n", &[], vec![]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("header"), "{e}");
    let e = b
        .call(&index_kernel, call(b">a\n>b\nACGT\n", &[], vec![]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("'a' has no sequence"), "{e}");
}

#[tokio::test]
async fn limits_cancellation_and_file_output() {
    let (b, align, _) = backend().await;
    let data = test_data();
    let index = test_index(&data.reference);

    // Output past its limit.
    let mut c = call(
        &data.r1,
        &[("format", "sam")],
        vec![("index", object("ref.ahx", &index))],
    );
    c.limits.output_bytes = 1000;
    let e = b.call(&align, c).await.unwrap_err();
    assert!(
        matches!(
            e,
            CallError::OutputTooLarge {
                limit_bytes: 1000,
                ..
            }
        ),
        "{e:?}"
    );

    // Cancelled before it starts reading.
    let c = call(&data.r1, &[], vec![("index", object("ref.ahx", &index))]);
    c.control.cancel.store(true, Ordering::Relaxed);
    let e = b.call(&align, c).await.unwrap_err();
    assert!(matches!(e, CallError::Cancelled { .. }), "{e:?}");

    // A streamed input to a file, as jobs run.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.sam");
    let chunks: Vec<std::io::Result<Bytes>> = data
        .r1
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut objects = BTreeMap::new();
    objects.insert("index".to_string(), object("ref.ahx", &index));
    let mut params = Params::new();
    params.insert("format".into(), "sam".into());
    let c = CallInput {
        input: CallData::Stream(Box::pin(futures::stream::iter(chunks))),
        input_name: "r1.fq".into(),
        output: OutputSink::File(path.clone()),
        named_outputs: Default::default(),
        params,
        objects,
        limits: Limits::DEFAULT,
        control: Arc::new(CallControl::default()),
    };
    let control = c.control.clone();
    let out = b.call(&align, c).await.unwrap();
    let written = std::fs::read(&path).unwrap();
    assert_eq!(
        out.output,
        Output::File {
            path,
            size: written.len() as u64
        }
    );
    assert!(
        written == builtin::ALIGN_SINGLE_SAM,
        "the streamed job's output differs"
    );
    assert_eq!(
        control.consumed.load(Ordering::Relaxed),
        data.r1.len() as u64
    );
}
