//! Where call recordings are kept: behind [`Recordings`], so that an object
//! store can replace the data directory when several nodes serve one
//! tenant. [`DirRecordings`] keeps them as files under a directory, one
//! folder per tenant, readable by the service's user only, and sealed
//! (`crate::sealed`) when given a [`Sealer`].

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use std::sync::Arc;

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
}

/// Recordings as files: `<root>/<tenant>/<call>.rec` sealed, or
/// `<call>.wav` in clear (no sealer, or written before sealing);
/// directories 0700 and files 0600.
pub struct DirRecordings {
    root: PathBuf,
    sealer: Option<Arc<dyn Sealer>>,
}

impl DirRecordings {
    pub fn new(root: impl Into<PathBuf>) -> Result<DirRecordings> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        Ok(DirRecordings { root, sealer: None })
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
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        match &self.sealer {
            Some(sealer) => Ok(Box::new(SealedWriter::new(
                file,
                sealer.clone(),
                Self::name(key),
            )?)),
            None => Ok(Box::new(RecordingWriter::new(BufWriter::new(file))?)),
        }
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
        let mut deleted = false;
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
                    .is_some_and(|e| e == "wav" || e == "rec");
                if old && recording {
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
    fn sealed_recordings_are_written_sealed_and_read_as_wav() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirRecordings::new(dir.path().join("recordings"))
            .unwrap()
            .sealed(Arc::new(crate::sealed::tests::TestSealer));
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
