//! A simulated disk for redb: fast, in memory, and crashable.
//!
//! The deterministic simulation runs the real [`RedbStorage`](super::RedbStorage) on this disk
//! instead of a file. Writes land in a volatile image; `sync_data` makes them durable. A
//! [`SimDisk::crash`] throws away everything written since the last sync, exactly what a power
//! cut does to a real file, and fences off the database handle that was open at the time so its
//! late writes (for example on drop) cannot reach the new incarnation.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// One disk image shared by the simulation (which crashes it) and redb (which writes to it).
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<DiskImage>>,
}

#[derive(Debug, Default)]
struct DiskImage {
    /// What reads see: durable bytes plus every write since the last sync.
    volatile: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Bumped by every crash; a backend of an older generation is fenced off.
    generation: u64,
    /// Byte ranges written since the last sync, so a sync copies only what changed.
    dirty: Vec<(usize, usize)>,
    /// Number of `sync_data` calls, for tests that check durability really was requested.
    sync_count: u64,
}

impl SimDisk {
    /// A new, empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A redb backend writing to this disk. Open at most one database on it at a time.
    pub fn backend(&self) -> SimDiskBackend {
        let generation = self.lock().generation;
        SimDiskBackend {
            disk: self.clone(),
            generation,
        }
    }

    /// Simulates a power cut: unsynced writes are lost and the current backend is fenced off.
    pub fn crash(&self) {
        let mut image = self.lock();
        image.volatile = image.durable.clone();
        image.dirty.clear();
        image.generation += 1;
    }

    /// How many times redb asked for its writes to be made durable.
    pub fn sync_count(&self) -> u64 {
        self.lock().sync_count
    }

    fn lock(&self) -> MutexGuard<'_, DiskImage> {
        // A poisoned lock only means a test thread panicked; the bytes are still consistent
        // because every mutation below is a single non-panicking step.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The [`redb::StorageBackend`] view of a [`SimDisk`] for one database incarnation.
#[derive(Debug)]
pub struct SimDiskBackend {
    disk: SimDisk,
    generation: u64,
}

impl SimDiskBackend {
    fn image(&self) -> io::Result<MutexGuard<'_, DiskImage>> {
        let image = self.disk.lock();
        if image.generation != self.generation {
            return Err(io::Error::other(
                "simulated disk crashed under this database",
            ));
        }
        Ok(image)
    }
}

impl redb::StorageBackend for SimDiskBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.image()?.volatile.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let image = self.image()?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + out.len();
        let source = image
            .volatile
            .get(start..end)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let mut image = self.image()?;
        let old_len = image.volatile.len();
        image.volatile.resize(len, 0);
        if len > old_len {
            // The grown tail must read as zeros after a sync even if `durable` held older bytes.
            image.dirty.push((old_len, len));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut image = self.image()?;
        let image = &mut *image;
        image.durable.resize(image.volatile.len(), 0);
        for (start, end) in image.dirty.drain(..) {
            let end = end.min(image.volatile.len());
            if start < end {
                image.durable[start..end].copy_from_slice(&image.volatile[start..end]);
            }
        }
        image.sync_count += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut image = self.image()?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + data.len();
        if image.volatile.len() < end {
            image.volatile.resize(end, 0);
        }
        image.volatile[start..end].copy_from_slice(data);
        image.dirty.push((start, end));
        Ok(())
    }
}
