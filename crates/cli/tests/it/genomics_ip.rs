//! The built-in IPs `genomics/index` and `genomics/align` on a running
//! platform: published and verified at start-up on the `cpu` device, run as
//! jobs on a user's objects, the index resident between jobs, progress in
//! reads, and every denial on object inputs.

use crate::common::{package, random_bases, revcomp_reference, wait_verified, Server};
use accelhub_domain::{JobState, Params, Role, VersionStatus};
use accelhub_native::builtin::VERSION;
use std::io::Write;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A two-contig reference and `n` read pairs; the truth is in each name:
/// `contig_pos1_pos2` (1-based leftmost positions of R1 and R2).
fn genome_and_reads(n: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let contigs = [
        ("alpha", random_bases(50_000, 11)),
        ("beta", random_bases(30_000, 13)),
    ];
    let mut fa = Vec::new();
    for (name, seq) in &contigs {
        writeln!(fa, ">{name}").unwrap();
        for line in seq.chunks(70) {
            fa.extend_from_slice(line);
            fa.push(b'\n');
        }
    }
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    let mut x = 99u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (name, seq) = &contigs[i % 2];
        let frag = 300 + (x % 80) as usize;
        let start = (x >> 8) as usize % (seq.len() - frag);
        let a = &seq[start..start + 100];
        let b = revcomp_reference(&seq[start + frag - 100..start + frag]);
        let id = format!("{name}_{}_{}", start + 1, start + frag - 100 + 1);
        for (out, s) in [(&mut r1, a.to_vec()), (&mut r2, b)] {
            writeln!(out, "@{id}").unwrap();
            out.extend_from_slice(&s);
            writeln!(out, "\n+\n{}", "F".repeat(100)).unwrap();
        }
    }
    (fa, r1, r2)
}

async fn object_bytes(c: &accelhub_client::Client, key: &str) -> Vec<u8> {
    c.get_object(key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn index_then_align_as_jobs_with_the_index_resident() {
    let server = Server::start();
    let admin = server.admin();
    for ip in ["genomics/index", "genomics/align"] {
        let v = wait_verified(&admin, ip, VERSION).await;
        assert_eq!(v.status, VersionStatus::Verified, "{ip}: {:?}", v.report);
        assert_eq!(v.devices, vec!["cpu".to_string()]);
        let report = v.report.unwrap();
        assert!(report.implementations[0].tests.iter().all(|t| t.passed));
    }
    let user = server.account("lab", Role::User).await;
    user.deploy("genomics/index", None).await.unwrap();
    let d = user.deploy("genomics/align", None).await.unwrap();
    assert_eq!(d.devices, vec!["cpu".to_string()]);
    let align = user.ip("genomics/align").await.unwrap().versions.remove(0);
    let names: Vec<_> = align.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["index", "reads2"]);

    // Reference (gzip) → index object.
    let (fa, r1, r2) = genome_and_reads(300);
    user.put_object(Some("ref.fa.gz"), gzip(&fa), None)
        .await
        .unwrap();
    let job = user
        .submit_job("genomics/index", "ref.fa.gz", Params::new())
        .await
        .unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(
        (job.items, job.unit.as_deref()),
        (Some(80_000), Some("bases"))
    );
    let index_key = job.output_key.clone().unwrap();

    // Reads (R1 gzip, R2 plain) + index → SAM, every pair where it came from.
    user.put_object(Some("r1.fq.gz"), gzip(&r1), None)
        .await
        .unwrap();
    user.put_object(Some("r2.fq"), r2.clone(), None)
        .await
        .unwrap();
    let mut params = Params::new();
    params.insert("index".into(), index_key.clone().into());
    params.insert("reads2".into(), "r2.fq".into());
    params.insert("format".into(), "sam".into());
    params.insert("read_group".into(), "@RG\\tID:lane1\\tSM:s1".into());
    let job = user
        .submit_job("genomics/align", "r1.fq.gz", params.clone())
        .await
        .unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{:?} {:?}",
        job.error,
        job.log
    );
    assert_eq!((job.items, job.unit.as_deref()), (Some(600), Some("reads")));
    let log = job.log.clone().unwrap_or_default();
    assert!(log.contains("loaded in"), "{log}");
    let sam =
        String::from_utf8(object_bytes(&user, job.output_key.as_ref().unwrap()).await).unwrap();
    assert!(sam.contains("@RG\tID:lane1\tSM:s1"));
    let mut placed = 0;
    for line in sam.lines().filter(|l| !l.starts_with('@')) {
        let f: Vec<&str> = line.split('\t').collect();
        let flag: u16 = f[1].parse().unwrap();
        let mut truth = f[0].split('_');
        let contig = truth.next().unwrap();
        let pos = if flag & 0x40 != 0 {
            truth.next()
        } else {
            truth.nth(1)
        }
        .unwrap();
        assert_eq!((f[2], f[3]), (contig, pos), "{line}");
        assert!(flag & 0x2 != 0, "proper pair: {line}");
        placed += 1;
    }
    assert_eq!(placed, 600);

    // The same index again, BAM this time: resident, not loaded.
    params.remove("format");
    let job = user
        .submit_job("genomics/align", "r1.fq.gz", params.clone())
        .await
        .unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let log = job.log.clone().unwrap_or_default();
    assert!(
        log.contains("resident") && !log.contains("loaded in"),
        "{log}"
    );
    let bam = object_bytes(&user, job.output_key.as_ref().unwrap()).await;
    assert_eq!(&bam[..4], &[0x1f, 0x8b, 8, 4], "BGZF");

    // The operator's fleet view: the cpu device holds both kernels and
    // the index, by content; users may not look.
    let fleet = admin.fleet().await.unwrap();
    assert_eq!(fleet.nodes.len(), 1);
    let node = &fleet.nodes[0];
    let classes: Vec<_> = node.devices.iter().map(|d| d.class.as_str()).collect();
    assert!(
        classes.contains(&"cpu") && classes.contains(&"wasm"),
        "{classes:?}"
    );
    let cpu = node.devices.iter().find(|d| d.class == "cpu").unwrap();
    assert!(
        cpu.loaded.contains(&format!("genomics/align@{VERSION}")),
        "{cpu:?}"
    );
    assert!(
        cpu.loaded.contains(&format!("genomics/index@{VERSION}")),
        "{cpu:?}"
    );
    let index_sha = user
        .objects()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.key == index_key)
        .unwrap()
        .sha256;
    assert!(cpu.resident.contains(&index_sha), "{cpu:?}");
    assert_eq!(cpu.busy, 0);
    let e = user.fleet().await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
    let out = server.cli(&server.admin_token, &["fleet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("loaded   genomics/align@{VERSION}")),
        "{text}"
    );

    // Each job billed once, at the IP's price.
    let usage = user.usage(None).await.unwrap();
    let billed: Vec<_> = usage.records.iter().filter(|r| r.billed).collect();
    assert_eq!(billed.len(), 3);

    // A second user cannot name the first one's objects: same answer as a
    // missing object, and nothing queued.
    let other = server.account("other", Role::User).await;
    other.deploy("genomics/align", None).await.unwrap();
    other
        .put_object(Some("mine.fq"), r1.clone(), None)
        .await
        .unwrap();
    let e = other
        .submit_job("genomics/align", "mine.fq", params.clone())
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    assert!(e.to_string().contains("parameter 'index'"), "{e}");
    assert!(other.jobs(None).await.unwrap().is_empty());

    // The index parameter is required and must be a key.
    let e = user
        .submit_job("genomics/align", "r1.fq.gz", Params::new())
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");
    assert!(e.to_string().contains("needs the parameter 'index'"), "{e}");
    let mut bad = Params::new();
    bad.insert("index".into(), 7.into());
    let e = user
        .submit_job("genomics/align", "r1.fq.gz", bad)
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");

    // A malformed record fails the job with the object and record named,
    // and leaves no output object.
    let mut broken = r1.clone();
    let at = broken.windows(2).position(|w| w == b"\n+").unwrap();
    broken[at + 1] = b'?';
    user.put_object(Some("broken.fq"), broken, None)
        .await
        .unwrap();
    let before = user.objects().await.unwrap().len();
    let job = user
        .submit_job("genomics/align", "broken.fq", params.clone())
        .await
        .unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let err = job.error.unwrap();
    assert!(
        err.contains("broken.fq") && err.contains("record 1"),
        "{err}"
    );
    assert!(job.output_key.is_none());
    assert_eq!(user.objects().await.unwrap().len(), before);

    // A restart publishes nothing twice.
    drop(user);
    let data = server.data.clone();
    let mut server = server;
    server.stop();
    let again = Server::start_in(&data, &[]);
    let versions = again.admin().ip("genomics/align").await.unwrap().versions;
    assert_eq!(versions.len(), 1);
    drop(again);
    drop(server);
}

#[tokio::test]
async fn vendors_cannot_publish_native_code() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;
    let dir = package("revcomp", |m| {
        m.replace("device = \"wasm\"", "device = \"cpu\"")
    });
    let e = vendor.publish_dir(dir.path()).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
    assert!(e.to_string().contains("only the operator"), "{e}");
}

fn gunzip(data: &[u8]) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(data), &mut text).unwrap();
    text
}

/// The variant records of a VCF (its header dropped): CHROM to GT.
fn records(vcf: &str) -> Vec<String> {
    vcf.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_germline_flow_runs_as_one_job_with_named_outputs_and_stage_by_stage() {
    use accelhub_native::builtin::{self, germline_data};
    let server = Server::start();
    let admin = server.admin();
    for ip in [
        "genomics/sort",
        "genomics/markdup",
        "genomics/call",
        "genomics/germline",
    ] {
        let v = wait_verified(&admin, ip, VERSION).await;
        assert_eq!(v.status, VersionStatus::Verified, "{ip}: {:?}", v.report);
        assert!(v.outputs.len() >= 2, "{ip}: {:?}", v.outputs);
    }
    let user = server.account("clinic", Role::User).await;
    for ip in ["genomics/index", "genomics/germline", "genomics/call"] {
        user.deploy(ip, None).await.unwrap();
    }
    // The reference, uploaded and indexed once.
    let data = germline_data();
    user.put_object(Some("chrG.fa"), data.reference.clone(), None)
        .await
        .unwrap();
    let job = user
        .submit_job("genomics/index", "chrG.fa", Params::new())
        .await
        .unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    let index_key = job.output_key.clone().unwrap();
    user.put_object(Some("s1_R1.fq.gz"), gzip(&data.r1), None)
        .await
        .unwrap();
    user.put_object(Some("s1_R2.fq"), data.r2.clone(), None)
        .await
        .unwrap();

    // Two samples (the same reads twice) against it: the second finds the
    // index resident.
    let mut params = Params::new();
    params.insert("index".into(), index_key.clone().into());
    params.insert("reads2".into(), "s1_R2.fq".into());
    params.insert("read_group".into(), "@RG\\tID:s1\\tSM:s1\\tLB:lib1".into());
    let mut vcfs = Vec::new();
    for round in 0..2 {
        let job = user
            .submit_job("genomics/germline", "s1_R1.fq.gz", params.clone())
            .await
            .unwrap();
        let job = user.wait_job(&job.id, |_| {}).await.unwrap();
        assert_eq!(
            job.state,
            JobState::Succeeded,
            "{:?} {:?}",
            job.error,
            job.log
        );
        // The stage it ended in, and its count.
        assert_eq!(job.unit.as_deref(), Some("bp called on chrG"), "{job:?}");
        let names: Vec<&str> = job.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["vcf", "tbi", "bam", "bai", "qc"]);
        let log = job.log.clone().unwrap_or_default();
        if round == 1 {
            assert!(log.contains("resident"), "{log}");
        }
        let vcf = gunzip(
            &user
                .job_output(&job.id, Some("vcf"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        );
        assert!(vcf.contains("\tFORMAT\ts1\n"), "{vcf}");
        let gt = |pos: usize| {
            records(&vcf)
                .into_iter()
                .find(|l| l.split('\t').nth(1) == Some(&pos.to_string()))
                .and_then(|l| l.split('\t').nth(9).map(|s| s[..3].to_string()))
        };
        assert_eq!(gt(builtin::GERM_HET_SNV + 1).as_deref(), Some("0/1"));
        assert_eq!(gt(builtin::GERM_HOM_SNV + 1).as_deref(), Some("1/1"));
        assert_eq!(gt(builtin::GERM_HET_DEL + 1).as_deref(), Some("0/1"));
        let qc = user
            .job_output(&job.id, Some("qc"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(qc.contains("duplicates_pct\t"), "{qc}");
        vcfs.push((job.id.clone(), vcf));
    }
    assert_eq!(records(&vcfs[0].1), records(&vcfs[1].1));

    // The flow's BAM, called again on its own: the same calls.
    let bam_key = user.job(&vcfs[0].0).await.unwrap().outputs[2].key.clone();
    let mut p = Params::new();
    p.insert("index".into(), index_key.into());
    let job = user.submit_job("genomics/call", &bam_key, p).await.unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let vcf = gunzip(
        &user
            .job_output(&job.id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(records(&vcf), records(&vcfs[0].1));
}
