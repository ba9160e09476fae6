//! Where call recordings are kept: behind [`Recordings`], so that an object
//! store can replace the data directory when several nodes serve one
//! tenant. [`DirRecordings`] keeps them as files under a directory, one
//! folder per tenant, readable by the service's user only, and sealed
//! (`crate::sealed`) when given a [`Sealer`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::relay::RecordingSink;
use crate::sealed::{self, SealedWriter, Sealer};
use crate::wav::RecordingWriter;
use crate::{Error, Result, SAMPLE_RATE};

/// Bytes of a recording's header; the rest is 4 bytes per sample frame.
const HEADER_BYTES: u64 = 44;

/// A recording's name: its tenant and its call, both made of `[0-9a-z-]`
/// (ids as the API spells them), so a key can never name another path.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RecordingKey {
    tenant: String,
    call: String,
}

impl RecordingKey {
    pub fn new(tenant: &str, call: &str) -> Option<RecordingKey> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
        };
        (ok(tenant) && ok(call)).then(|| RecordingKey {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
        })
    }
}

/// A stored recording, ready to read.
pub struct StoredRecording {
    pub reader: Box<dyn Read + Send>,
    /// Bytes, header included.
    pub len: u64,
}

impl StoredRecording {
    /// Audio in milliseconds, from the length.
    pub fn duration_ms(&self) -> u64 {
        duration_ms(self.len)
    }
}

fn duration_ms(len: u64) -> u64 {
    len.saturating_sub(HEADER_BYTES) / 4 * 1000 / u64::from(SAMPLE_RATE)
}

/// Storage for call recordings.
pub trait Recordings: Send + Sync {
    /// A new recording, written while the call runs.
    fn create(&self, key: &RecordingKey) -> Result<Box<dyn RecordingSink>>;
    /// The recording's length in bytes, if there is one.
    fn len(&self, key: &RecordingKey) -> Result<Option<u64>>;
    fn open(&self, key: &RecordingKey) -> Result<Option<StoredRecording>>;
    /// Whether there was one to delete.
    fn delete(&self, key: &RecordingKey) -> Result<bool>;
    /// Retention: deletes every recording last written before `before`;
    /// how many went.
    fn purge_before(&self, before: std::time::SystemTime) -> Result<usize>;
    /// After a key rotation: seals every finished recording held under an
    /// older key again under the current one; how many were. Cheap when the
    /// sealing key has not changed since the last whole pass.
    fn reseal(&self) -> Result<usize>;
}

/// Recordings as files: `<root>/<tenant>/<call>.rec` sealed, or
/// `<call>.wav` in clear (no sealer, or written before sealing);
/// directories 0700 and files 0600.
pub struct DirRecordings {
    root: PathBuf,
    sealer: Option<Arc<dyn Sealer>>,
    /// Recordings being written, with the key sealing when each began:
    /// never resealed (their writer appends to the file it opened).
    active: Arc<Mutex<HashMap<PathBuf, u32>>>,
    /// The sealing key of the last whole reseal pass (`u32::MAX`: none yet).
    resealed_under: AtomicU32,
    /// One reseal pass at a time: two would write the same file aside.
    resealing: Mutex<()>,
    /// Held to replace a recording by its resealed copy and to delete one,
    /// so that a recording deleted meanwhile is never put back.
    replacing: Mutex<()>,
}

/// A recording being written, known as such until its writer is dropped.
struct Tracked {
    sink: Box<dyn RecordingSink>,
    active: Arc<Mutex<HashMap<PathBuf, u32>>>,
    path: PathBuf,
}

impl RecordingSink for Tracked {
    fn write_frame(&mut self, caller: &[i16], callee: &[i16]) -> Result<()> {
        self.sink.write_frame(caller, callee)
    }

    fn flush(&mut self) -> Result<()> {
        self.sink.flush()
    }

    fn finish(mut self: Box<Self>) -> Result<u32> {
        let sink = std::mem::replace(&mut self.sink, Box::new(Finished));
        sink.finish()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(mut active) = self.active.lock() {
            active.remove(&self.path);
        }
    }
}

/// What a finished [`Tracked`] holds.
struct Finished;

impl RecordingSink for Finished {
    fn write_frame(&mut self, _: &[i16], _: &[i16]) -> Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u32> {
        Ok(0)
    }
}

impl DirRecordings {
    pub fn new(root: impl Into<PathBuf>) -> Result<DirRecordings> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        Ok(DirRecordings {
            root,
            sealer: None,
            active: Arc::default(),
            resealed_under: AtomicU32::new(u32::MAX),
            resealing: Mutex::new(()),
            replacing: Mutex::new(()),
        })
    }

    /// New recordings are sealed by `sealer`.
    pub fn sealed(mut self, sealer: Arc<dyn Sealer>) -> DirRecordings {
        self.sealer = Some(sealer);
        self
    }

    fn path(&self, key: &RecordingKey) -> PathBuf {
        self.root
            .join(&key.tenant)
            .join(format!("{}.wav", key.call))
    }

    fn sealed_path(&self, key: &RecordingKey) -> PathBuf {
        self.root
            .join(&key.tenant)
            .join(format!("{}.rec", key.call))
    }

    /// What the records of `key` are sealed under.
    fn name(key: &RecordingKey) -> String {
        format!("{}/{}", key.tenant, key.call)
    }

    fn sealer(&self) -> Result<&Arc<dyn Sealer>> {
        self.sealer.as_ref().ok_or_else(|| {
            Error::Io(std::io::Error::new(
                ErrorKind::InvalidData,
                "a sealed recording, and no keys to open it",
            ))
        })
    }
}

fn poisoned() -> Error {
    Error::Io(std::io::Error::other("a recordings lock was poisoned"))
}

fn absent<T>(e: std::io::Error) -> Result<Option<T>> {
    if e.kind() == ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(Error::Io(e))
    }
}

impl Recordings for DirRecordings {
    fn create(&self, key: &RecordingKey) -> Result<Box<dyn RecordingSink>> {
        let path = match self.sealer {
            Some(_) => self.sealed_path(key),
            None => self.path(key),
        };
        if self.path(key).exists() || self.sealed_path(key).exists() {
            return Err(Error::Io(std::io::Error::new(
                ErrorKind::AlreadyExists,
                "the call has a recording",
            )));
        }
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        // Known as being written before the file exists: a reseal pass never
        // sees it otherwise. `tracked` takes it out again on any error.
        if let Ok(mut active) = self.active.lock() {
            let key = self.sealer.as_ref().map_or(0, |s| s.sealing_key());
            active.insert(path.clone(), key);
        }
        let mut tracked = Tracked {
            sink: Box::new(Finished),
            active: self.active.clone(),
            path: path.clone(),
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let sink: Box<dyn RecordingSink> = match &self.sealer {
            Some(sealer) => Box::new(SealedWriter::new(file, sealer.clone(), Self::name(key))?),
            None => Box::new(RecordingWriter::new(BufWriter::new(file))?),
        };
        tracked.sink = sink;
        Ok(Box::new(tracked))
    }

    fn len(&self, key: &RecordingKey) -> Result<Option<u64>> {
        match File::open(self.sealed_path(key)) {
            Ok(mut file) => return sealed::wav_len(&mut file, &**self.sealer()?).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        match fs::metadata(self.path(key)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) => absent(e),
        }
    }

    fn open(&self, key: &RecordingKey) -> Result<Option<StoredRecording>> {
        match File::open(self.sealed_path(key)) {
            Ok(file) => {
                let (reader, len) =
                    sealed::wav_reader(file, self.sealer()?.clone(), Self::name(key))?;
                return Ok(Some(StoredRecording { reader, len }));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        match File::open(self.path(key)) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some(StoredRecording {
                    reader: Box::new(file),
                    len,
                }))
            }
            Err(e) => absent(e),
        }
    }

    fn delete(&self, key: &RecordingKey) -> Result<bool> {
        let _replacing = self.replacing.lock().map_err(|_| poisoned())?;
        let mut deleted = false;
        // A resealed copy a crash left aside goes too, not counted.
        let _ = fs::remove_file(self.sealed_path(key).with_extension("reseal"));
        for path in [self.sealed_path(key), self.path(key)] {
            match fs::remove_file(path) {
                Ok(()) => deleted = true,
                Err(e) => {
                    absent::<()>(e)?;
                }
            }
        }
        Ok(deleted)
    }

    fn purge_before(&self, before: std::time::SystemTime) -> Result<usize> {
        let mut purged = 0;
        for tenant in fs::read_dir(&self.root)? {
            let tenant = tenant?;
            if !tenant.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(tenant.path())? {
                let file = file?;
                let old = file.metadata()?.modified()? < before;
                let recording = file
                    .path()
                    .extension()
                    .is_some_and(|e| e == "wav" || e == "rec" || e == "reseal");
                if old && recording {
                    let _replacing = self.replacing.lock().map_err(|_| poisoned())?;
                    match fs::remove_file(file.path()) {
                        Ok(()) => purged += 1,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::Io(e)),
                    }
                }
            }
        }
        Ok(purged)
    }

    fn reseal(&self) -> Result<usize> {
        let Some(sealer) = &self.sealer else {
            return Ok(0);
        };
        let under = sealer.sealing_key();
        if self.resealed_under.load(Ordering::Relaxed) == under {
            return Ok(0);
        }
        let Ok(_pass) = self.resealing.try_lock() else {
            return Ok(0);
        };
        let (mut resealed, mut skipped) = (0, false);
        for tenant in fs::read_dir(&self.root)? {
            let tenant = tenant?;
            if !tenant.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(tenant.path())? {
                let path = file?.path();
                if path.extension().is_none_or(|e| e != "rec") {
                    continue;
                }
                // Being written: left alone, and to a later pass only if it
                // began under an older key (its records may be under it).
                match self.active.lock().map(|a| a.get(&path).copied()) {
                    Ok(None) => {}
                    Ok(Some(began_under)) => {
                        skipped |= began_under != under;
                        continue;
                    }
                    Err(_) => return Err(poisoned()),
                }
                let (Some(tenant), Some(call)) = (
                    tenant.file_name().to_str().map(str::to_owned),
                    path.file_stem().and_then(|c| c.to_str()).map(str::to_owned),
                ) else {
                    continue;
                };
                let aside = match sealed::reseal_aside(
                    &path,
                    &**sealer,
                    &format!("{tenant}/{call}"),
                ) {
                    Ok(Some(aside)) => aside,
                    Ok(None) => continue,
                    // Deleted meanwhile (by its API or retention).
                    Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => continue,
                    // One that cannot be read (cut short before its
                    // first record, a record that does not open) stays
                    // as it is and stops no other.
                    Err(e) => {
                        let _ = fs::remove_file(path.with_extension("reseal"));
                        tracing::warn!(file = %path.display(), error = %e, "cannot seal a recording again");
                        continue;
                    }
                };
                let _replacing = self.replacing.lock().map_err(|_| poisoned())?;
                if path.exists() {
                    fs::rename(&aside, &path)?;
                    if let Some(dir) = path.parent() {
                        File::open(dir)?.sync_all()?;
                    }
                    resealed += 1;
                } else {
                    match fs::remove_file(&aside) {
                        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                        _ => {}
                    }
                }
            }
        }
        // Recordings still being written wait for the next pass.
        if !skipped {
            self.resealed_under.store(under, Ordering::Relaxed);
        }
        Ok(resealed)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    #[test]
    fn retention_purges_recordings_written_before_the_cutoff_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirRecordings::new(dir.path().join("recordings")).unwrap();
        let old = RecordingKey::new("t1", "old").unwrap();
        let new = RecordingKey::new("t2", "new").unwrap();
        store.create(&old).unwrap().finish().unwrap();
        let cutoff = std::time::SystemTime::now() + std::time::Duration::from_millis(50);
        std::thread::sleep(std::time::Duration::from_millis(100));
        store.create(&new).unwrap().finish().unwrap();
        assert_eq!(store.purge_before(cutoff).unwrap(), 1);
        assert!(store.len(&old).unwrap().is_none());
        assert!(store.len(&new).unwrap().is_some());
    }

    #[test]
    fn keys_name_no_other_path() {
        assert!(RecordingKey::new("01900000-0000-7000", "abc-123").is_some());
        for bad in ["", "../x", "a/b", "A", "a.b", "a b"] {
            assert!(RecordingKey::new(bad, "c").is_none(), "{bad:?}");
            assert!(RecordingKey::new("t", bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_recording_is_written_read_measured_and_deleted_privately() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirRecordings::new(dir.path().join("recordings")).unwrap();
        let key = RecordingKey::new("t1", "c1").unwrap();
        assert!(store.open(&key).unwrap().is_none());
        let mut sink = store.create(&key).unwrap();
        for _ in 0..50 {
            sink.write_frame(&[100; 160], &[-100; 160]).unwrap();
        }
        assert_eq!(sink.finish().unwrap(), 8000);
        assert!(store.create(&key).is_err(), "never overwritten");
        let stored = store.open(&key).unwrap().unwrap();
        assert_eq!(stored.duration_ms(), 1000);
        let samples = crate::wav::read_recording(stored.reader, 1 << 20).unwrap();
        assert_eq!(samples.len(), 8000);
        assert_eq!(samples[0], [100, -100]);
        let path = store.path(&key);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(store.delete(&key).unwrap());
        assert!(!store.delete(&key).unwrap());
        assert_eq!(store.len(&key).unwrap(), None);
    }

    #[test]
    fn a_rotation_reseals_finished_recordings_and_leaves_one_being_written() {
        use crate::sealed::tests::TestSealer;

        let dir = tempfile::tempdir().unwrap();
        let sealer = Arc::new(TestSealer::default());
        let store = DirRecordings::new(dir.path().join("recordings"))
            .unwrap()
            .sealed(sealer.clone());
        let done = RecordingKey::new("t1", "done").unwrap();
        let mut sink = store.create(&done).unwrap();
        for _ in 0..200 {
            sink.write_frame(&[100; 160], &[-100; 160]).unwrap();
        }
        sink.finish().unwrap();
        let running = RecordingKey::new("t2", "running").unwrap();
        let mut live = store.create(&running).unwrap();
        live.write_frame(&[5; 160], &[-5; 160]).unwrap();
        live.flush().unwrap();
        assert_eq!(store.reseal().unwrap(), 0, "nothing under another key");

        let before = fs::read(store.sealed_path(&done)).unwrap();
        // A day old, for retention; and a file that is no recording.
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        File::options()
            .write(true)
            .open(store.sealed_path(&done))
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        fs::write(dir.path().join("recordings/t1/aaa-bad.rec"), b"MLREC0").unwrap();
        sealer.key.store(7, Ordering::Relaxed);
        assert_eq!(store.reseal().unwrap(), 1, "only the finished one");
        let after = fs::read(store.sealed_path(&done)).unwrap();
        assert_ne!(before, after);
        assert_eq!(before.len(), after.len());
        assert_eq!(
            fs::metadata(store.sealed_path(&done))
                .unwrap()
                .modified()
                .unwrap(),
            day_ago,
            "as old as it was"
        );
        let mode = fs::metadata(store.sealed_path(&done))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let samples =
            crate::wav::read_recording(store.open(&done).unwrap().unwrap().reader, 1 << 22)
                .unwrap();
        assert_eq!(samples, vec![[100, -100]; 200 * 160]);
        // The one being written is left to a later pass, which reseals it
        // once its call has ended.
        live.write_frame(&[5; 160], &[-5; 160]).unwrap();
        assert_eq!(live.finish().unwrap(), 320);
        assert_eq!(store.reseal().unwrap(), 1);
        assert_eq!(store.reseal().unwrap(), 0, "done until the next rotation");
        let samples =
            crate::wav::read_recording(store.open(&running).unwrap().unwrap().reader, 1 << 20)
                .unwrap();
        assert_eq!(samples, vec![[5, -5]; 320]);
        assert!(!dir.path().join("recordings/t1/done.reseal").exists());
    }

    #[test]
    fn sealed_recordings_are_written_sealed_and_read_as_wav() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirRecordings::new(dir.path().join("recordings"))
            .unwrap()
            .sealed(Arc::new(crate::sealed::tests::TestSealer::default()));
        let key = RecordingKey::new("t1", "c1").unwrap();
        let mut sink = store.create(&key).unwrap();
        sink.write_frame(&[100; 160], &[-100; 160]).unwrap();
        // Readable while the call still runs: what was flushed.
        sink.flush().unwrap();
        assert_eq!(store.len(&key).unwrap(), Some(44 + 160 * 4));
        sink.write_frame(&[100; 160], &[-100; 160]).unwrap();
        assert_eq!(sink.finish().unwrap(), 320);
        assert!(store.create(&key).is_err(), "never overwritten");
        let raw = fs::read(store.sealed_path(&key)).unwrap();
        assert!(raw.starts_with(crate::sealed::MAGIC));
        let stored = store.open(&key).unwrap().unwrap();
        assert_eq!(stored.len, 44 + 320 * 4);
        let samples = crate::wav::read_recording(stored.reader, 1 << 20).unwrap();
        assert_eq!(samples, vec![[100, -100]; 320]);
        // A recording from before sealing is still read.
        let clear = RecordingKey::new("t1", "old").unwrap();
        DirRecordings::new(dir.path().join("recordings"))
            .unwrap()
            .create(&clear)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(store.len(&clear).unwrap(), Some(44));
        assert!(store.delete(&key).unwrap() && store.delete(&clear).unwrap());
        assert_eq!(store.len(&key).unwrap(), None);
    }
}
