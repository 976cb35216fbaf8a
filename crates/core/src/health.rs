//! The server's own health: what `/healthz` reports besides being up.

use crate::Platform;

/// Below this much free space the disk is reported `low`.
const LOW_BYTES: u64 = 1 << 30;
/// Below this much it is `full`: writes are about to fail with 507.
const FULL_BYTES: u64 = 16 << 20;

/// The disk under the server's data (database, journal, scratch, local
/// objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskState {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl DiskState {
    /// `ok`, `low` or `full`.
    pub fn state(&self) -> &'static str {
        let low = LOW_BYTES.min(self.total_bytes / 10);
        let full = FULL_BYTES.min(self.total_bytes / 50);
        if self.free_bytes <= full {
            "full"
        } else if self.free_bytes <= low {
            "low"
        } else {
            "ok"
        }
    }
}

impl Platform {
    /// The state of the disk that holds the server's scratch space (the
    /// data directory, on a default setup).
    pub fn disk(&self) -> std::io::Result<DiskState> {
        // The scratch folder may not exist yet: its nearest ancestor that
        // does is on the same disk.
        let mut dir = self.config.scratch_dir.as_path();
        while !dir.exists() {
            dir = match dir.parent() {
                Some(p) => p,
                None => break,
            };
        }
        let s = rustix::fs::statvfs(dir)?;
        Ok(DiskState {
            free_bytes: s.f_bavail.saturating_mul(s.f_frsize),
            total_bytes: s.f_blocks.saturating_mul(s.f_frsize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_disks_are_judged_by_their_share() {
        let d = |free: u64, total: u64| {
            DiskState {
                free_bytes: free,
                total_bytes: total,
            }
            .state()
        };
        assert_eq!(d(100 << 30, 200 << 30), "ok");
        assert_eq!(d(512 << 20, 200 << 30), "low");
        assert_eq!(d(8 << 20, 200 << 30), "full");
        // A 24 MiB disk: full under 0.48 MiB, low under 2.4 MiB.
        assert_eq!(d(10 << 20, 24 << 20), "ok");
        assert_eq!(d(2 << 20, 24 << 20), "low");
        assert_eq!(d(100 << 10, 24 << 20), "full");
    }
}
