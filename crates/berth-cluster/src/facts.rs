//! What a machine offers pods, as a node registers it.

/// Every CPU the process may use, in thousandths of a core, and all memory, in MiB.
pub fn capacity() -> (u64, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_mib(&text))
        .unwrap_or(0);
    (cpus * 1000, memory_mib)
}

/// `MemTotal` of a `/proc/meminfo`, in MiB.
fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The machine's host name, or `localhost` if it has none.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_comes_from_meminfo() {
        let meminfo = "MemFree:  1000 kB\nMemTotal:       24576000 kB\n";
        assert_eq!(mem_total_mib(meminfo), Some(24_000));
        assert_eq!(mem_total_mib("MemFree: 1 kB\n"), None);
    }
}
