#!/usr/bin/env python3
"""Write fuzz/seeds/<target>/ from the repository's test data: the example
IPs' ip.toml files (and packages tarred from them), the built-in IPs'
manifests, the FASTA/FASTQ cases of crates/genomics/tests, kernel
expressions found in ip.toml files, and one body of each agent message.
Run from the repository root; the output is small and committed."""

import gzip
import io
import json
import pathlib
import re
import struct
import tarfile
import tomllib

root = pathlib.Path(".")
out = root / "fuzz" / "seeds"


def put(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


manifests = {p.parent.name: p.read_text() for p in sorted(root.glob("ips/*/ip.toml"))}
builtin = (root / "crates/native/src/builtin.rs").read_text()
for i, m in enumerate(re.findall(r'r#"(name = "genomics/.*?)"#', builtin, re.S)):
    m = m.replace("{VERSION}", "1.0.0").replace("{limits}", "")
    manifests[f"builtin{i}"] = m.replace("{{", "{").replace("}}", "}")

# ip.toml
for name, text in manifests.items():
    put("manifest", name + ".toml", text)


# Packages: each ip.toml with the files it names (their first bytes, or a
# placeholder), without tar's trailing padding beyond the end marker.
def named(m):
    files = []
    if "description" in m:
        files.append(m["description"])
    for imp in m.get("implementation", []):
        files.append(imp["artifact"])
    for t in m.get("test", []):
        files += [t["input"], t["expect"]] + list(t.get("objects", {}).values())
    return files


for name, text in manifests.items():
    if name not in ("echo", "hostile", "revcomp"):  # the smallest three
        continue
    m = tomllib.loads(text)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in ["ip.toml"] + sorted(set(named(m))):
            src = root / "ips" / name / path
            data = text.encode() if path == "ip.toml" else (
                src.read_bytes()[:64] if src.is_file() else b"x")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        end = tar.offset
    put("package_tar", name + ".tar", buf.getvalue()[: end + 1024])

# FASTA and FASTQ: the cases of crates/genomics/tests/formats.rs, plain
# (first byte 0), gzip-compressed by the target (first byte 1), and as
# gzip bytes given to the reader (first byte 0 again).
formats = (root / "crates/genomics/tests/formats.rs").read_text()
cases = [
    bytes(s, "ascii").decode("unicode_escape").encode("latin-1")
    for s in re.findall(r'b"((?:[^"\\]|\\.)*)"', formats)
]
fasta = [c for c in cases if c.startswith(b">")]
fasta.append((root / "ips/revcomp/tests/fasta.in").read_bytes())
fastq = [c for c in cases if c.startswith(b"@")]
fastq.append(b"".join(b"@r%d\nACGTACGTAC\n+\nIIIIIIIIII\n" % i for i in range(3)))
for target, texts in (("fasta", fasta), ("fastq", fastq)):
    for i, t in enumerate(texts):
        put(target, f"plain{i}", b"\0" + t)
        put(target, f"gz{i}", b"\1" + t)
    put(target, "gzip-bytes", b"\0" + gzip.compress(texts[0], mtime=0))
    put(target, "bgzip-members", b"\0" + gzip.compress(texts[0][:3], mtime=0)
        + gzip.compress(texts[0][3:], mtime=0))

# Kernel expressions, requirements and arguments: from every ip.toml's
# kernel declarations. Prefix: input size 4096, kinds 0b01010101 (small
# values), four values.
prefix = struct.pack("<QB4Q", 4096, 0x55, 64, 48, 2, 7)
exprs = set()
for text in manifests.values():
    for imp in tomllib.loads(text).get("implementation", []):
        for key in ("input_size", "output"):
            if key in imp:
                exprs.add(str(imp[key]))
        exprs.update(imp.get("require", []))
        exprs.update(str(v) for v in imp.get("buffers", {}).values())
        for k in imp.get("kernel", []):
            exprs.update(str(g) for g in k.get("global", []))
            exprs.update(k.get("args", []))
exprs.update(["(input + 3) / 4 % 7 - 1", "u32 (input / 4)", "f32 sigma = 0.5",
              "local 4 * 64", "width * height <= 67108864", "i64 offset = -3"])
for i, e in enumerate(sorted(exprs)):
    put("kernel_expr", f"e{i}", prefix + e.encode())

# Agent messages: one body of each.
work_object = {"name": "index", "key": "o/1", "sha256": "ab" * 32, "size": 10}
messages = {
    "node_report": {"devices": [{"class": "cpu", "slots": 2, "busy": 1, "utilisation": 0.5,
                                 "loaded": ["a/b@1.0.0"], "resident": ["ab"]}]},
    "claim": {"devices": ["cpu", "wasm"], "wait_ms": 1000, "images": ["a/b@1.0.0"],
              "resident": ["x"]},
    "renewal": {"progress": 0.5, "items": 10, "unit": "reads"},
    "succeeded": {"outcome": "succeeded", "output_size": 3, "log": None, "items": 1,
                  "unit": None, "device_time_ms": 4},
    "failed": {"outcome": "failed", "error": "boom", "log": "l"},
    "hello": {"heartbeat_ms": 5000, "lease_ms": 30000},
    "work_object": work_object,
    "lease": {"running": True},
    "token": {"name": "node-1"},
}
for name, body in messages.items():
    put("agent_messages", name + ".json", json.dumps(body))

# BAM writer: its input is `arbitrary` data; a few byte patterns.
for i, n in enumerate((64, 256, 1024)):
    put("bam_writer", f"b{i}", bytes((j * 37 + i) % 256 for j in range(n)))

# Alignments (SAM and BAM readers): a SAM with a header, a pair, a single
# read and an unmapped one (first byte even: plain text); the same as the
# uncompressed BAM stream (first byte odd: the target compresses it).
sam_text = (
    "@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:c\tLN:1000\n@RG\tID:a\tSM:s\tLB:x\n"
    "r1\t99\tc\t10\t60\t2S8M\t=\t100\t100\tACGTACGTAC\tIIIIIIIIII\tMC:Z:10M\tRG:Z:a\n"
    "r2\t0\tc\t50\t60\t4M1I5M\t*\t0\t0\tACGTACGTAC\t*\tNM:i:1\tXA:Z:c,+60,10M,1;\n"
    "r1\t147\tc\t100\t60\t10M\t=\t10\t-100\tACGTACGTAC\tIIIIIIIIII\tMC:Z:2S8M\tRG:Z:a\n"
    "r3\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\t!!!!\n"
)
put("alignments", "sam", b"\x00" + sam_text.encode())


def bam_stream(text):
    header = "".join(l + "\n" for l in text.splitlines() if l.startswith("@"))
    refs = [(f["SN"], int(f["LN"])) for f in
            (dict(x.split(":", 1) for x in l.split("\t")[1:]) for l in text.splitlines()
             if l.startswith("@SQ"))]
    out = b"BAM\x01" + struct.pack("<i", len(header)) + header.encode() + struct.pack("<i", len(refs))
    for n, ln in refs:
        out += struct.pack("<i", len(n) + 1) + n.encode() + b"\x00" + struct.pack("<i", ln)
    ops = "MIDNSHP=X"
    for l in text.splitlines():
        if l.startswith("@"):
            continue
        f = l.split("\t")
        rid = -1 if f[2] == "*" else 0
        cig = [(int(n), ops.index(o)) for n, o in re.findall(r"(\d+)(\D)", f[5])] if f[5] != "*" else []
        seq = f[9]
        codes = [("=ACMGRSVTWYHKDBN".find(c) % 16) for c in seq]
        packed = bytes((codes[i] << 4) | (codes[i + 1] if i + 1 < len(codes) else 0)
                       for i in range(0, len(codes), 2))
        qual = bytes(255 for _ in seq) if f[10] == "*" else bytes(ord(c) - 33 for c in f[10])
        mrid = rid if f[6] == "=" else -1
        rec = struct.pack("<iiBBHHHIiii", rid, int(f[3]) - 1, len(f[0]) + 1, int(f[4]), 4680,
                          len(cig), int(f[1]), len(seq), mrid, int(f[7]) - 1, int(f[8]))
        rec += f[0].encode() + b"\x00" + b"".join(struct.pack("<I", n << 4 | o) for n, o in cig)
        rec += packed + qual
        for t in f[11:]:
            tag, ty, v = t.split(":", 2)
            if ty == "i":
                rec += tag.encode() + b"i" + struct.pack("<i", int(v))
            else:
                rec += tag.encode() + b"Z" + v.encode() + b"\x00"
        out += struct.pack("<i", len(rec)) + rec
    return out


put("alignments", "bam", b"\x01" + bam_stream(sam_text))
