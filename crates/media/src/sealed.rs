//! Recordings sealed at rest. A sealed recording is not a WAV file but a
//! run of records, each the audio since the previous flush sealed by a
//! [`Sealer`] (`u32` big-endian length, then the sealed bytes), after an
//! 8-byte magic. Each record's associated data names the recording and the
//! record's place in it, so records cannot be moved between recordings or
//! reordered. Read back, the records become the WAV file the call would
//! have left: the header is made from the audio's length, counted when the
//! reading starts (so a recording still being written reads as it was then,
//! and a record cut short by a crash is not read).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::relay::RecordingSink;
use crate::wav::{self, interleave};
use crate::{Error, Result};

/// Starts every sealed recording.
pub const MAGIC: &[u8; 8] = b"MLREC01\n";
/// Audio sealed into one record at most, so that a call's memory stays
/// bounded between flushes.
const MAX_RECORD: usize = 64 * 1024;
const FRAME: u32 = 4;

/// Seals and opens records; the store's keyring, for the service.
pub trait Sealer: Send + Sync {
    fn seal(&self, aad: &[u8], clear: &[u8]) -> Vec<u8>;
    /// `None`: not sealed by this sealer's keys, or changed since.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
    /// How many bytes longer a sealed record is than its audio.
    fn overhead(&self) -> usize;
    /// The key new records are sealed under (it changes when keys rotate).
    fn sealing_key(&self) -> u32;
    /// Whether a record is sealed under [`Sealer::sealing_key`], from its
    /// first [`RECORD_HEAD`] bytes (or all of it, when shorter).
    fn is_current(&self, head: &[u8]) -> bool;
}

/// How much of a record [`Sealer::is_current`] is given.
pub const RECORD_HEAD: usize = 16;

fn aad(name: &str, index: u64) -> Vec<u8> {
    format!("recording/{name}/{index}").into_bytes()
}

/// Writes a sealed recording as the call goes.
pub struct SealedWriter {
    out: BufWriter<File>,
    sealer: Arc<dyn Sealer>,
    name: String,
    index: u64,
    pending: Vec<u8>,
    data_len: u32,
}

impl SealedWriter {
    /// Writes the magic to `file` (new and empty); `name` tells this
    /// recording's records from any other's.
    pub fn new(file: File, sealer: Arc<dyn Sealer>, name: String) -> Result<SealedWriter> {
        let mut out = BufWriter::new(file);
        out.write_all(MAGIC)?;
        Ok(SealedWriter {
            out,
            sealer,
            name,
            index: 0,
            pending: Vec::new(),
            data_len: 0,
        })
    }

    /// Seals what is pending as the next record.
    fn seal_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let sealed = self
            .sealer
            .seal(&aad(&self.name, self.index), &self.pending);
        let len = u32::try_from(sealed.len()).map_err(|_| Error::RecordingTooLong)?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.index += 1;
        self.pending.clear();
        Ok(())
    }
}

impl RecordingSink for SealedWriter {
    fn write_frame(&mut self, caller: &[i16], callee: &[i16]) -> Result<()> {
        let added = u32::try_from(caller.len().max(callee.len()))
            .ok()
            .and_then(|n| n.checked_mul(FRAME))
            .ok_or(Error::RecordingTooLong)?;
        self.data_len = self
            .data_len
            .checked_add(added)
            .filter(|&n| n as u64 + 36 <= u32::MAX as u64)
            .ok_or(Error::RecordingTooLong)?;
        interleave(caller, callee, &mut self.pending);
        if self.pending.len() >= MAX_RECORD {
            self.seal_pending()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.seal_pending()?;
        self.out.flush()?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u32> {
        self.flush()?;
        Ok(self.data_len / FRAME)
    }
}

/// The whole records of a sealed recording: (offset of the sealed bytes,
/// their length), and the audio they hold in bytes.
fn scan(file: &mut File, overhead: usize) -> Result<(Vec<(u64, u32)>, u64)> {
    let size = file.metadata()?.len();
    let mut reader = BufReader::new(&mut *file);
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a sealed recording",
        )));
    }
    let (mut records, mut audio, mut at) = (Vec::new(), 0u64, MAGIC.len() as u64);
    while at + 4 <= size {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if at + 4 + u64::from(len) > size || (len as usize) < overhead {
            break;
        }
        records.push((at + 4, len));
        audio += u64::from(len) - overhead as u64;
        at += 4 + u64::from(len);
        reader.seek_relative(i64::from(len))?;
    }
    Ok((records, audio))
}

/// Seals the recording at `path` (named `name`) again under the sealer's
/// current key, if any of its records is under another: written aside, to
/// `<path>.reseal` (owner-only) and synced, whose path is returned for the
/// caller to rename over `path` (so a crash leaves one whole recording or
/// the other). `None` when it had nothing to do. The recording must not be
/// being written.
pub fn reseal_aside(
    path: &std::path::Path,
    sealer: &dyn Sealer,
    name: &str,
) -> Result<Option<std::path::PathBuf>> {
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = File::open(path)?;
    let modified = file.metadata()?.modified()?;
    let (records, _) = scan(&mut file, sealer.overhead())?;
    // Each record's head names its key: read no more to find none stale.
    let mut current = true;
    for &(offset, len) in &records {
        let mut head = vec![0u8; (len as usize).min(RECORD_HEAD)];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut head)?;
        current &= sealer.is_current(&head);
    }
    if current {
        return Ok(None);
    }
    let aside = path.with_extension("reseal");
    match std::fs::remove_file(&aside) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)?;
    let mut out = BufWriter::new(out);
    out.write_all(MAGIC)?;
    // One record in memory at a time.
    for (index, &(offset, len)) in records.iter().enumerate() {
        let mut record = vec![0u8; len as usize];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut record)?;
        let aad = aad(name, index as u64);
        let clear = sealer.open(&aad, &record).ok_or_else(|| {
            Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "a record of the recording does not open",
            ))
        })?;
        let again = sealer.seal(&aad, &clear);
        let len = u32::try_from(again.len()).map_err(|_| Error::RecordingTooLong)?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(&again)?;
    }
    let out = out.into_inner().map_err(|e| Error::Io(e.into_error()))?;
    // Retention goes by a recording's age: the copy keeps the original's.
    out.set_modified(modified)?;
    out.sync_all()?;
    Ok(Some(aside))
}

/// The WAV length (header included) of the sealed recording in `file`.
pub fn wav_len(file: &mut File, sealer: &dyn Sealer) -> Result<u64> {
    Ok(44 + scan(file, sealer.overhead())?.1)
}

/// The sealed recording in `file` as the WAV file it holds, and its length.
pub fn wav_reader(
    mut file: File,
    sealer: Arc<dyn Sealer>,
    name: String,
) -> Result<(Box<dyn Read + Send>, u64)> {
    let (records, audio) = scan(&mut file, sealer.overhead())?;
    let data_len = u32::try_from(audio).map_err(|_| Error::RecordingTooLong)?;
    let reader = SealedReader {
        file,
        sealer,
        name,
        records: records.into_iter(),
        index: 0,
        buf: wav::header(data_len).to_vec(),
        at: 0,
    };
    Ok((Box::new(reader), 44 + audio))
}

struct SealedReader {
    file: File,
    sealer: Arc<dyn Sealer>,
    name: String,
    records: std::vec::IntoIter<(u64, u32)>,
    index: u64,
    /// What is being handed out, from `at`.
    buf: Vec<u8>,
    at: usize,
}

impl Read for SealedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            let Some((offset, len)) = self.records.next() else {
                return Ok(0);
            };
            let mut sealed = vec![0u8; len as usize];
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(&mut sealed)?;
            self.buf = self
                .sealer
                .open(&aad(&self.name, self.index), &sealed)
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "a record does not open")
                })?;
            self.index += 1;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in sealer for the media crate's own tests: XOR with the key
    /// byte, then the key and a checksum of the associated data (the
    /// service's is the store's AEAD keyring, tested there). Every key it
    /// ever had opens; `key` seals.
    #[derive(Default)]
    pub(crate) struct TestSealer {
        pub(crate) key: std::sync::atomic::AtomicU8,
    }

    impl Sealer for TestSealer {
        fn seal(&self, aad: &[u8], clear: &[u8]) -> Vec<u8> {
            let key = self.key.load(std::sync::atomic::Ordering::Relaxed);
            let mut out = vec![key, aad.iter().fold(0u8, |a, b| a.wrapping_add(*b))];
            out.extend(clear.iter().map(|b| b ^ 0x5A ^ key));
            out
        }

        fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
            let (head, body) = sealed.split_at_checked(2)?;
            (head[1] == aad.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
                .then(|| body.iter().map(|b| b ^ 0x5A ^ head[0]).collect())
        }

        fn overhead(&self) -> usize {
            2
        }

        fn sealing_key(&self) -> u32 {
            u32::from(self.key.load(std::sync::atomic::Ordering::Relaxed))
        }

        fn is_current(&self, head: &[u8]) -> bool {
            head.first()
                .is_some_and(|&k| u32::from(k) == self.sealing_key())
        }
    }

    #[test]
    fn a_sealed_recording_reads_back_as_its_wav_up_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let sealer: Arc<dyn Sealer> = Arc::new(TestSealer::default());
        let mut w = Box::new(
            SealedWriter::new(File::create(&path).unwrap(), sealer.clone(), "t/c".into()).unwrap(),
        );
        // More than a record's worth, then a flush, then a partial record.
        for _ in 0..120 {
            w.write_frame(&[7; 160], &[-7; 160]).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(w.finish().unwrap(), 120 * 160);
        let raw = std::fs::read(&path).unwrap();
        assert!(raw.starts_with(MAGIC));
        let len = wav_len(&mut File::open(&path).unwrap(), &*sealer).unwrap();
        assert_eq!(len, 44 + 120 * 160 * 4);
        let (reader, n) =
            wav_reader(File::open(&path).unwrap(), sealer.clone(), "t/c".into()).unwrap();
        assert_eq!(n, len);
        let samples = wav::read_recording(reader, 1 << 20).unwrap();
        assert_eq!(samples.len(), 120 * 160);
        assert_eq!(samples[0], [7, -7]);
        // A record cut short (a crash mid-write) is not counted.
        let mut cut = raw.clone();
        cut.truncate(raw.len() - 3);
        std::fs::write(&path, &cut).unwrap();
        let shorter = wav_len(&mut File::open(&path).unwrap(), &*sealer).unwrap();
        assert!(shorter < len && (shorter - 44).is_multiple_of(4));
        // Under another recording's name, nothing opens.
        let (mut reader, _) =
            wav_reader(File::open(&path).unwrap(), sealer, "t/other".into()).unwrap();
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
    }
}
