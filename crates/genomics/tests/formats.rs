//! Reference and read parsing over real files (plain and gzip), and the
//! errors bad input gets: they name the file and the record.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_genomics::fasta::read_reference;
use accelhub_genomics::fastq::{FastqReader, PairReader, Read};
use accelhub_genomics::seq::{A, C, G, N, T};
use accelhub_genomics::GenomicsError;
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn err_text(r: Result<impl Sized, GenomicsError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn fasta_many_contigs_iupac_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let text = b">chr1 first contig\nACGTN\nacgtr\n\n>chr2\nGGYC\n>chrM desc\nT\n";
    for (name, data) in [("r.fa", text.to_vec()), ("r.fa.gz", gzip(text))] {
        let p = write(dir.path(), name, &data);
        let mut seen = 0;
        let r = read_reference(&p, &mut |n| seen = n).unwrap();
        let names: Vec<_> = r.contigs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["chr1", "chr2", "chrM"]);
        assert_eq!(r.contigs[0].len, 10);
        assert_eq!(r.contigs[1].offset, 10);
        assert_eq!(
            &r.seq[..10],
            &[A, C, G, T, N, A, C, G, T, N],
            "lower case is read, R is N"
        );
        assert_eq!(&r.seq[10..14], &[G, G, N, C]);
        assert_eq!(seen, 15);
        assert_eq!(r.contig_at(9), Some(0));
        assert_eq!(r.contig_at(10), Some(1));
        assert_eq!(r.contig_at(14), Some(2));
        assert_eq!(r.contig_at(15), None);
    }
}

#[test]
fn fasta_errors_name_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &str); 6] = [
        (
            b">a\nACGT\n>b\n>c\nAC\n",
            "record 2: contig 'b' has no sequence",
        ),
        (b">a\nACGT\n>b\n", "record 2: contig 'b' has no sequence"),
        (
            b">a\nAC\n>b\nAC-T\n",
            "record 2: contig 'b', line 4, column 3: '-'",
        ),
        (b"ACGT\n>a\nAC\n", "record 1: line 1: expected a '>' header"),
        (b">a\nAC\n>a\nGG\n", "a second contig named 'a'"),
        (b"", "no sequences"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("bad{i}.fa"), text);
        let msg = err_text(read_reference(&p, &mut |_| {}));
        assert!(msg.contains(want), "case {i}: {msg}");
        assert!(
            msg.contains(&format!("bad{i}.fa")),
            "case {i} names the file: {msg}"
        );
    }
}

#[test]
fn truncated_gzip_is_an_error_not_a_short_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    for i in 0..2000 {
        writeln!(text, "@r{i}\nACGTACGTAC\n+\nIIIIIIIIII").unwrap();
    }
    let gz = gzip(&text);
    let p = write(dir.path(), "cut.fq.gz", &gz[..gz.len() / 2]);
    let mut r = FastqReader::open(&p).unwrap();
    let mut read = Read::default();
    let result = (|| {
        while r.next_into(&mut read)? {}
        Ok::<_, GenomicsError>(())
    })();
    let msg = err_text(result);
    assert!(msg.contains("cut.fq.gz"), "{msg}");

    let p = write(dir.path(), "cut.fa.gz", &gzip(b">a\nACGTACGTACGT\n")[..12]);
    let msg = err_text(read_reference(&p, &mut |_| {}));
    assert!(msg.contains("cut.fa.gz"), "{msg}");
}

#[test]
fn fastq_reads_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = b"@r1/1 extra\nACGTN\n+\nIIII#\n\n@r2\nGG\n+r2\n!~\n";
    let p = write(dir.path(), "ok.fq.gz", &gzip(good));
    let mut r = FastqReader::open(&p).unwrap();
    let mut read = Read::default();
    assert!(r.next_into(&mut read).unwrap());
    assert_eq!(read.name, b"r1");
    assert_eq!(read.seq, [A, C, G, T, N]);
    assert_eq!(read.qual, b"IIII#");
    assert!(r.next_into(&mut read).unwrap());
    assert_eq!(read.name, b"r2");
    assert!(!r.next_into(&mut read).unwrap());
    assert_eq!(r.records(), 2);

    let cases: [(&[u8], &str); 6] = [
        (
            b"@r1\nAC\n+\nII\nr2\nAC\n+\nII\n",
            "record 2: expected a header line starting with '@'",
        ),
        (b"@r1\nAC\n+\nI\n", "record 1: 1 quality values for 2 bases"),
        (
            b"@r1\nAXC\n+\nIII\n",
            "record 1: base 2 of the sequence is 'X'",
        ),
        (
            b"@r1\nAC\n-\nII\n",
            "record 1: expected the '+' separator line",
        ),
        (
            b"@r1\nAC\n+\nII\n@r2\nAC\n",
            "record 2: the file ends after the record's sequence",
        ),
        (b"@r1\nAC\n+\nI \n", "record 1: quality value 2 is ' '"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("bad{i}.fq"), text);
        let mut r = FastqReader::open(&p).unwrap();
        let result = (|| {
            while r.next_into(&mut read)? {}
            Ok::<_, GenomicsError>(())
        })();
        let msg = err_text(result);
        assert!(msg.contains(want), "case {i}: {msg}");
        assert!(msg.contains(&format!("bad{i}.fq")), "case {i}: {msg}");
    }
}

#[test]
fn pairs_must_match_in_count_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let r1 = write(
        dir.path(),
        "a_1.fq",
        b"@p1/1\nAC\n+\nII\n@p2/1\nGT\n+\nII\n",
    );
    let r2 = write(
        dir.path(),
        "a_2.fq",
        b"@p1/2\nAC\n+\nII\n@p2/2\nGT\n+\nII\n",
    );
    let short = write(dir.path(), "s_2.fq", b"@p1/2\nAC\n+\nII\n");
    let renamed = write(
        dir.path(),
        "n_2.fq",
        b"@p1/2\nAC\n+\nII\n@q2/2\nGT\n+\nII\n",
    );
    let (mut a, mut b) = (Read::default(), Read::default());

    let mut p = PairReader::open(&r1, &r2).unwrap();
    let mut n = 0;
    while p.next_into(&mut a, &mut b).unwrap() {
        n += 1;
    }
    assert_eq!(n, 2);

    let mut p = PairReader::open(&r1, &short).unwrap();
    assert!(p.next_into(&mut a, &mut b).unwrap());
    let msg = err_text(p.next_into(&mut a, &mut b));
    assert!(msg.contains("s_2.fq ends after 1 reads"), "{msg}");

    let mut p = PairReader::open(&r1, &renamed).unwrap();
    assert!(p.next_into(&mut a, &mut b).unwrap());
    let msg = err_text(p.next_into(&mut a, &mut b));
    assert!(
        msg.contains("n_2.fq: record 2: read name 'q2' does not match 'p2'"),
        "{msg}"
    );
}
