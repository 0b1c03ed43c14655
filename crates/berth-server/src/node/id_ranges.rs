//! Host id ranges for pods in user namespaces: 65536 ids each, one range per live pod, so
//! no two pods share a host uid (an escaped process of one is a stranger to every other).
//!
//! A range is a slot file `<state>/userns/<slot>` holding the container id, made with
//! `O_EXCL`, so the claim survives a restart of the server and two creates never race to
//! the same slot.

use std::io::Write;
use std::path::PathBuf;

use berth_runtime::IdRange;

use super::NodeError;

/// Where the ranges start: far above the ids of real users and the usual subuid ranges.
const BASE: u32 = 1 << 30;
/// Ids per pod: every id a Linux image uses (nobody is 65534).
const SIZE: u32 = 65536;
/// Ranges, so the last ends below 2^31 (tools that read ids as signed stay correct).
const SLOTS: u32 = (1 << 30) / SIZE;

pub struct IdRanges {
    dir: PathBuf,
}

impl IdRanges {
    pub fn new(dir: PathBuf) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&dir).map_err(NodeError::io(&dir))?;
        Ok(IdRanges { dir })
    }

    /// A range of its own for container `id`.
    pub fn allocate(&self, id: &str) -> Result<IdRange, NodeError> {
        // Start the search where the id hashes to, so creates rarely probe taken slots.
        let start = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        for probe in 0..SLOTS {
            let slot = (start.wrapping_add(probe)) % SLOTS;
            let path = self.dir.join(slot.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(id.as_bytes())
                        .map_err(NodeError::io(&path))?;
                    return Ok(IdRange {
                        host_start: BASE + slot * SIZE,
                        size: SIZE,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(NodeError::io(&path)(e)),
            }
        }
        Err(NodeError::io(&self.dir)(std::io::Error::other(format!(
            "all {SLOTS} user id ranges are taken"
        ))))
    }

    /// Hands the range `from` holds (found from its start) to `to`: a network made ahead
    /// becomes a container's. The slot file is replaced whole, so it always names one.
    pub fn transfer(&self, from: &str, to: &str, range_start: u32) -> Result<(), NodeError> {
        let Some(path) = self.slot_path(range_start) else {
            return Ok(());
        };
        if !std::fs::read_to_string(&path).is_ok_and(|holder| holder == from) {
            return Ok(());
        }
        let staged = path.with_extension("new");
        std::fs::write(&staged, to).map_err(NodeError::io(&staged))?;
        std::fs::rename(&staged, &path).map_err(NodeError::io(&path))
    }

    fn slot_path(&self, range_start: u32) -> Option<PathBuf> {
        range_start
            .checked_sub(BASE)
            .map(|offset| offset / SIZE)
            .filter(|slot| *slot < SLOTS)
            .map(|slot| self.dir.join(slot.to_string()))
    }

    /// Gives back the range container `id` held (found from its start); not held is fine.
    pub fn release(&self, id: &str, range_start: u32) {
        let Some(path) = self.slot_path(range_start) else {
            return;
        };
        if std::fs::read_to_string(&path).is_ok_and(|holder| holder == id) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_apart_and_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ranges = IdRanges::new(dir.path().join("userns")).expect("new");
        let a = ranges.allocate("pod-a").expect("a");
        let b = ranges.allocate("pod-a").expect("b, the same name");
        assert_ne!(a.host_start, b.host_start);
        for r in [a, b] {
            assert!(r.host_start >= BASE && r.host_start + r.size <= 1 << 31);
            assert_eq!((r.host_start - BASE) % SIZE, 0);
        }
        ranges.release("pod-other", a.host_start);
        assert_eq!(
            std::fs::read_dir(dir.path().join("userns"))
                .expect("dir")
                .count(),
            2,
            "only the holder releases"
        );
        ranges.release("pod-a", a.host_start);
        ranges
            .transfer("pod-a", "pod-b", b.host_start)
            .expect("transfer");
        ranges.release("pod-a", b.host_start);
        assert_eq!(
            std::fs::read_dir(dir.path().join("userns"))
                .expect("dir")
                .count(),
            1,
            "a transferred range belongs to its new holder"
        );
        ranges.release("pod-b", b.host_start);
        assert_eq!(
            std::fs::read_dir(dir.path().join("userns"))
                .expect("dir")
                .count(),
            0
        );
    }
}
