//! BGZF, the blocked gzip of BAM, VCF.gz and their indexes: writing with
//! compression spread over threads, and knowing where every byte went.
//!
//! Why our own writer: an index (BAI, CSI, tabix) needs each record's
//! *virtual offset*, the compressed offset of its block shifted left 16
//! bits plus its offset inside the uncompressed block. A writer that
//! compresses blocks on several threads only learns a block's compressed
//! offset once every block before it is done. So [`Writer`] numbers the
//! bytes written by (block, offset in block), and what [`Writer::finish`]
//! returns turns such a [`Spot`] into a virtual offset.
//!
//! [`Reader`] decompresses ahead on threads too. Both use libdeflate, as
//! htslib does where it is built with it. [`check_eof`] tells a truncated
//! file from a complete one before any work, as `samtools quickcheck`
//! does.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;

/// Most uncompressed bytes per block: what htslib uses, so that even
/// incompressible data fits the 64 KiB block limit.
pub const BLOCK_DATA: usize = 0xff00;

/// The empty block every BGZF file ends with.
pub const EOF_BLOCK: [u8; 28] = [
    0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, 0x42, 0x43, 0x02, 0, 0x1b, 0, 0x03, 0, 0,
    0, 0, 0, 0, 0, 0, 0,
];

/// Where a byte went: the block it is in and its offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Spot {
    pub block: u64,
    pub offset: u16,
}

/// Compress one block of at most [`BLOCK_DATA`] bytes into `out`.
pub fn compress_block(
    z: &mut libdeflater::Compressor,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    debug_assert!(data.len() <= BLOCK_DATA);
    const HEAD: usize = 18;
    out.clear();
    out.extend_from_slice(&[
        0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, 0x42, 0x43, 0x02, 0, 0, 0,
    ]);
    out.resize(HEAD + z.deflate_compress_bound(data.len()), 0);
    let n = z
        .deflate_compress(data, &mut out[HEAD..])
        .map_err(|e| io::Error::other(format!("compressing a block: {e:?}")))?;
    out.truncate(HEAD + n);
    out.extend_from_slice(&libdeflater::crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    if out.len() > 1 << 16 {
        return Err(io::Error::other("a BGZF block grew past 64 KiB"));
    }
    let bsize = (out.len() - 1) as u16;
    out[16..18].copy_from_slice(&bsize.to_le_bytes());
    Ok(())
}

/// Decompress one BGZF block (header included) into `out`, checking its
/// CRC and size.
pub fn decompress_block(
    z: &mut libdeflater::Decompressor,
    block: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let bad = |m: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a damaged BGZF block: {m}"),
        )
    };
    if block.len() < 26 {
        return Err(bad("too short"));
    }
    let xlen = u16::from_le_bytes([block[10], block[11]]) as usize;
    let data_at = 12 + xlen;
    let tail = block.len() - 8;
    if data_at > tail {
        return Err(bad("its header runs past it"));
    }
    let crc = u32::from_le_bytes([
        block[tail],
        block[tail + 1],
        block[tail + 2],
        block[tail + 3],
    ]);
    let size = u32::from_le_bytes([
        block[tail + 4],
        block[tail + 5],
        block[tail + 6],
        block[tail + 7],
    ]) as usize;
    if size > 1 << 16 {
        return Err(bad("it claims more than 64 KiB"));
    }
    out.clear();
    out.resize(size, 0);
    let n = z
        .deflate_decompress(&block[data_at..tail], out)
        .map_err(|e| bad(&format!("{e:?}")))?;
    if n != size || libdeflater::crc32(out) != crc {
        return Err(bad("its checksum does not match"));
    }
    Ok(())
}

type Job = (u64, Vec<u8>);

/// Blocks transformed on worker threads and handed back in the order they
/// went in: compression for [`Writer`], decompression for [`Reader`].
struct OrderedPool {
    send: Option<mpsc::SyncSender<Job>>,
    recv: mpsc::Receiver<io::Result<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    in_flight: usize,
    limit: usize,
    next_in: u64,
    next_out: u64,
    /// Results that came back ahead of their turn.
    early: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl OrderedPool {
    /// `threads` workers, each with its own state from `init`, applying
    /// `work` to each job.
    fn new<S, I, F>(threads: usize, init: I, work: F) -> Self
    where
        I: Fn() -> S + Send + Sync + 'static,
        F: Fn(&mut S, &[u8], &mut Vec<u8>) -> io::Result<()> + Send + Sync + 'static,
    {
        let (send, jobs) = mpsc::sync_channel::<Job>(threads * 2);
        let jobs = std::sync::Arc::new(std::sync::Mutex::new(jobs));
        let (done, recv) = mpsc::channel();
        let shared = std::sync::Arc::new((init, work));
        let workers = (0..threads)
            .map(|_| {
                let jobs = jobs.clone();
                let done = done.clone();
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut state = (shared.0)();
                    loop {
                        let job = match jobs.lock() {
                            Ok(j) => j.recv(),
                            Err(_) => return,
                        };
                        let Ok((n, data)) = job else { return };
                        let mut out = Vec::new();
                        let r = (shared.1)(&mut state, &data, &mut out).map(|_| (n, out));
                        if done.send(r).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        OrderedPool {
            send: Some(send),
            recv,
            workers,
            in_flight: 0,
            limit: threads * 4,
            next_in: 0,
            next_out: 0,
            early: Default::default(),
        }
    }

    fn full(&self) -> bool {
        self.in_flight >= self.limit
    }

    fn submit(&mut self, data: Vec<u8>) -> io::Result<()> {
        let send = self.send.as_ref().ok_or_else(closed)?;
        send.send((self.next_in, data)).map_err(|_| closed())?;
        self.next_in += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// The next result in order; None when nothing is in flight.
    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(b) = self.early.remove(&self.next_out) {
                self.next_out += 1;
                return Ok(Some(b));
            }
            if self.in_flight == 0 {
                return Ok(None);
            }
            let (n, b) = self.recv.recv().map_err(|_| closed())??;
            self.in_flight -= 1;
            self.early.insert(n, b);
        }
    }
}

impl Drop for OrderedPool {
    fn drop(&mut self) {
        self.send = None;
        // Workers blocked on a full result channel cannot be: it is
        // unbounded. They end when the job channel closes.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("a compression thread stopped")
}

fn compressor(level: u32) -> libdeflater::Compressor {
    let lvl = libdeflater::CompressionLvl::new(level.min(12) as i32).unwrap_or_default();
    libdeflater::Compressor::new(lvl)
}

/// A BGZF writer that compresses on `threads` threads and tracks where
/// blocks land. Call [`Writer::finish`] at the end; dropping it without
/// that leaves a file with no end-of-file marker, which readers reject.
pub struct Writer<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// Index of the block `buf` becomes.
    block: u64,
    /// Compressed offset of each written block, by number.
    starts: Vec<u64>,
    written: u64,
    pool: Option<OrderedPool>,
    /// For compressing here when there is no pool.
    z: libdeflater::Compressor,
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// `level` is the deflate level (0–12, libdeflate's scale; 6 is
    /// zlib's default); `threads` above 1 compresses in the background.
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        let pool = (threads > 1)
            .then(|| OrderedPool::new(threads, move || compressor(level), compress_block));
        Writer {
            inner,
            buf: Vec::with_capacity(BLOCK_DATA),
            block: 0,
            starts: Vec::new(),
            written: 0,
            pool,
            z: compressor(level),
            scratch: Vec::new(),
        }
    }

    /// Where the next byte written will go.
    pub fn spot(&self) -> Spot {
        Spot {
            block: self.block,
            offset: self.buf.len() as u16,
        }
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_DATA));
        self.block += 1;
        match &mut self.pool {
            None => {
                compress_block(&mut self.z, &data, &mut self.scratch)?;
                let block = std::mem::take(&mut self.scratch);
                self.place(&block)?;
                self.scratch = block;
            }
            Some(pool) => {
                pool.submit(data)?;
                while self.pool.as_ref().is_some_and(OrderedPool::full) {
                    self.place_next()?;
                }
            }
        }
        Ok(())
    }

    fn place_next(&mut self) -> io::Result<bool> {
        let Some(pool) = &mut self.pool else {
            return Ok(false);
        };
        match pool.next()? {
            Some(block) => {
                self.place(&block)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn place(&mut self, block: &[u8]) -> io::Result<()> {
        self.inner.write_all(block)?;
        self.starts.push(self.written);
        self.written += block.len() as u64;
        Ok(())
    }

    /// Write every block, the end-of-file marker, and flush. Returns the
    /// inner writer and where each block landed.
    pub fn finish(mut self) -> io::Result<(W, Finished)> {
        self.flush_block()?;
        while self.place_next()? {}
        self.pool = None;
        // A spot at the very end (offset 0 of the block never written)
        // points at the end-of-file block.
        self.starts.push(self.written);
        self.inner.write_all(&EOF_BLOCK)?;
        self.inner.flush()?;
        Ok((
            self.inner,
            Finished {
                starts: self.starts,
            },
        ))
    }
}

/// The block offsets of a finished file.
pub struct Finished {
    starts: Vec<u64>,
}

impl Finished {
    /// The virtual offset of `s`; a spot at offset 0 of the block after
    /// the last is the end-of-file block's.
    pub fn virtual_of(&self, s: Spot) -> Option<u64> {
        let start = *self.starts.get(s.block as usize)?;
        Some((start << 16) | s.offset as u64)
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let room = BLOCK_DATA - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK_DATA {
                self.flush_block()?;
            }
        }
        Ok(n)
    }

    /// Blocks are written as they fill; `finish` writes the rest.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A BGZF reader that decompresses ahead on `threads` threads.
pub struct Reader<R: Read> {
    inner: R,
    pool: Option<OrderedPool>,
    z: libdeflater::Decompressor,
    /// The current decompressed block and how much of it was read.
    block: Vec<u8>,
    at: usize,
    /// The compressed block being read here when there is no pool.
    raw: Vec<u8>,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R, threads: usize) -> Self {
        let pool = (threads > 1)
            .then(|| OrderedPool::new(threads, libdeflater::Decompressor::new, decompress_block));
        Reader {
            inner,
            pool,
            z: libdeflater::Decompressor::new(),
            block: Vec::new(),
            at: 0,
            raw: Vec::new(),
            done: false,
        }
    }

    /// Read one compressed block into `raw`; false at the end of input.
    fn read_raw(inner: &mut R, raw: &mut Vec<u8>) -> io::Result<bool> {
        let mut head = [0u8; 18];
        let got = read_full(inner, &mut head)?;
        if got == 0 {
            return Ok(false);
        }
        let truncated = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is truncated inside a BGZF block",
            )
        };
        if got < head.len() {
            return Err(truncated());
        }
        if head[..4] != [0x1f, 0x8b, 0x08, 0x04] || head[12..14] != *b"BC" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "this is not BGZF (no BC field)",
            ));
        }
        let size = u16::from_le_bytes([head[16], head[17]]) as usize + 1;
        if size < 26 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a damaged BGZF block header",
            ));
        }
        raw.clear();
        raw.extend_from_slice(&head);
        raw.resize(size, 0);
        if read_full(inner, &mut raw[18..])? < size - 18 {
            return Err(truncated());
        }
        Ok(true)
    }

    /// Make `block` the next decompressed block (skipping empty ones);
    /// false at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        loop {
            match &mut self.pool {
                None => {
                    if !Self::read_raw(&mut self.inner, &mut self.raw)? {
                        return Ok(false);
                    }
                    decompress_block(&mut self.z, &self.raw, &mut self.block)?;
                }
                Some(pool) => {
                    while !self.done && !pool.full() {
                        let mut raw = Vec::new();
                        if Self::read_raw(&mut self.inner, &mut raw)? {
                            pool.submit(raw)?;
                        } else {
                            self.done = true;
                        }
                    }
                    match pool.next()? {
                        Some(b) => self.block = b,
                        None => return Ok(false),
                    }
                }
            }
            self.at = 0;
            if !self.block.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl<R: Read + Seek> Reader<R> {
    /// Go to virtual offset `v` (block start << 16 | offset in block).
    /// Reading on from there decompresses here, one block at a time.
    pub fn seek_virtual(&mut self, v: u64) -> io::Result<()> {
        self.pool = None;
        self.done = false;
        self.inner.seek(SeekFrom::Start(v >> 16))?;
        self.block.clear();
        self.at = 0;
        let offset = (v & 0xffff) as usize;
        if offset > 0 {
            if !self.next_block()? || offset > self.block.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an index points past its block",
                ));
            }
            self.at = offset;
        }
        Ok(())
    }
}

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Reader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at >= self.block.len() && !self.next_block()? {
            return Ok(&[]);
        }
        Ok(&self.block[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.block.len());
    }
}

/// Read until `buf` is full or the input ends; how many bytes came.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Whether `path` ends with the BGZF end-of-file block: a file cut short
/// (a copy that failed, a full disk) does not.
pub fn check_eof(path: &Path) -> io::Result<bool> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len < EOF_BLOCK.len() as u64 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - EOF_BLOCK.len() as u64))?;
    let mut tail = [0u8; 28];
    f.read_exact(&mut tail)?;
    Ok(tail == EOF_BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(threads: usize, chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<(Spot, usize)>, Finished) {
        let mut w = Writer::new(Vec::new(), 6, threads);
        let mut spots = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            spots.push((w.spot(), i));
            w.write_all(c).unwrap();
        }
        let (bytes, fin) = w.finish().unwrap();
        (bytes, spots, fin)
    }

    #[test]
    fn blocks_read_back_and_virtual_offsets_point_at_each_chunk() {
        let mut draw = crate::draws(5);
        let chunks: Vec<Vec<u8>> = (0..3000)
            .map(|_| {
                let n = 1 + draw(400) as usize;
                (0..n).map(|_| b"ACGT"[draw(4) as usize]).collect()
            })
            .collect();
        let whole: Vec<u8> = chunks.concat();
        for threads in [1, 3] {
            let (bytes, spots, fin) = written(threads, &chunks);
            assert_eq!(&bytes[bytes.len() - 28..], &EOF_BLOCK);
            let mut back = Vec::new();
            noodles_bgzf::io::Reader::new(&bytes[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, whole);
            // Seek to a few chunks by their virtual offsets.
            for &(spot, i) in spots.iter().step_by(397) {
                let v = fin.virtual_of(spot).unwrap();
                let mut r = noodles_bgzf::io::Reader::new(io::Cursor::new(&bytes));
                r.seek(noodles_bgzf::VirtualPosition::from(v)).unwrap();
                let mut got = vec![0; chunks[i].len()];
                r.read_exact(&mut got).unwrap();
                assert_eq!(got, chunks[i], "chunk {i} with {threads} threads");
            }
        }
        // The same bytes whatever the thread count, and read back by our
        // reader with any.
        assert_eq!(written(1, &chunks).0, written(4, &chunks).0);
        let (bytes, _, _) = written(2, &chunks);
        for threads in [1, 2, 5] {
            let mut back = Vec::new();
            Reader::new(&bytes[..], threads)
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, whole, "{threads} threads");
        }
        // A damaged block is an error, not wrong data.
        let mut bad = bytes.clone();
        bad[100] ^= 0x55;
        let mut back = Vec::new();
        assert!(Reader::new(&bad[..], 2).read_to_end(&mut back).is_err());
        let cut = &bytes[..bytes.len() / 2];
        let e = Reader::new(cut, 1).read_to_end(&mut back).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn a_file_without_its_end_block_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _, _) = written(1, &[b"hello".to_vec()]);
        let full = dir.path().join("full.gz");
        std::fs::write(&full, &bytes).unwrap();
        assert!(check_eof(&full).unwrap());
        let cut = dir.path().join("cut.gz");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        assert!(!check_eof(&cut).unwrap());
    }
}
