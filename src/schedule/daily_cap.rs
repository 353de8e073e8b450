//! The daily cap per instance, counted across runs in a small ledger of files.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Messages per instance per local day, counted in `<state_dir>/ledger`,
/// one small file per instance and day, each change made under a file
/// lock so that runs on different campaigns sharing a number add up.
#[derive(Debug, Clone)]
pub struct DailyCap {
    pub cap: u64,
    pub state_dir: PathBuf,
    pub timezone: TimeZone,
}

impl DailyCap {
    /// The platform's state directory for this tool (`$XDG_STATE_HOME` or
    /// `~/.local/state` on Linux), else the data directory.
    pub fn default_state_dir() -> Option<PathBuf> {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .map(|dir| dir.join("interacto-bulk"))
    }

    /// Counts one more message for `instance` today, unless the cap is
    /// reached; returns whether it may be sent.
    pub fn reserve(&self, instance: &str, now: Timestamp) -> io::Result<bool> {
        let day = now.to_zoned_datetime(self.timezone.clone()).date();
        let folder = self.state_dir.join("ledger").join(file_name(instance));
        fs::create_dir_all(&folder)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(folder.join(format!("{day}.count")))?;
        file.lock()?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let sent: u64 = text.trim().parse().unwrap_or(0);
        if sent >= self.cap {
            return Ok(false);
        }
        file.seek(SeekFrom::Start(0))?;
        file.set_len(0)?;
        write!(file, "{}", sent + 1)?;
        file.flush()?;
        Ok(true)
        // The lock goes with the file.
    }
}

/// An instance id as a file name: kept when plain, else hex.
fn file_name(instance: &str) -> String {
    if !instance.is_empty()
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        instance.to_string()
    } else {
        instance.bytes().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_daily_cap_counts_per_instance_and_day_across_ledgers() {
        let dir = tempfile::tempdir().unwrap();
        let cap = |n| DailyCap {
            cap: n,
            state_dir: dir.path().to_path_buf(),
            timezone: TimeZone::UTC,
        };
        let today = at("2026-11-24T12:00:00Z");
        assert!(cap(2).reserve("inst-a", today).unwrap());
        // Another run, another ledger value, the same files.
        assert!(cap(2).reserve("inst-a", today).unwrap());
        assert!(!cap(2).reserve("inst-a", today).unwrap());
        assert!(
            cap(2).reserve("inst-b", today).unwrap(),
            "each instance has its own count"
        );
        assert!(
            cap(2)
                .reserve("inst-a", at("2026-11-25T00:00:01Z"))
                .unwrap(),
            "a new day"
        );
        assert!(
            cap(3).reserve("inst-a", today).unwrap(),
            "a higher cap allows more"
        );
    }

    #[test]
    fn odd_instance_ids_become_safe_file_names() {
        assert_eq!(
            file_name("66a09db606fd14660c8fc1d0"),
            "66a09db606fd14660c8fc1d0"
        );
        assert_eq!(file_name("../x"), "2e2e2f78");
    }
}
