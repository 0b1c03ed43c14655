//! Resource quantities as users write them: `cpu` in cores or millicores, `memory` in MiB or
//! with a unit suffix.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("{0:?} is not a number of cores (like 1, 0.5) or millicores (like \"1500m\")")]
    CpuSyntax(String),
    #[error("{0} millicores is outside the allowed range 100m-64000m (0.1-64 cores)")]
    CpuRange(u64),
    #[error("{0:?} is not a memory size (MiB as an integer, or a string like \"512Mi\", \"1Gi\", \"1G\")")]
    MemorySyntax(String),
    #[error("{0} MiB is outside the allowed range 16 MiB-1048576 MiB")]
    MemoryRange(u64),
    #[error("{0:?} is not a disk size (MiB as an integer, or a string like \"512Mi\", \"10Gi\", \"10G\")")]
    DiskSyntax(String),
    #[error("{0} MiB is outside the allowed range 64 MiB-16777216 MiB (16 TiB)")]
    DiskRange(u64),
}

pub const MIN_CPU_MILLIS: u64 = 100;
pub const MAX_CPU_MILLIS: u64 = 64_000;
pub const MIN_MEMORY_MIB: u64 = 16;
pub const MAX_MEMORY_MIB: u64 = 1024 * 1024;
pub const MIN_DISK_MIB: u64 = 64;
pub const MAX_DISK_MIB: u64 = 16 * 1024 * 1024;

/// Parses a cpu amount (a JSON number of cores, or a string: "1.5", "1500m") into millicores.
pub fn parse_cpu_millis(value: &Value) -> Result<u64, QuantityError> {
    let bad = || QuantityError::CpuSyntax(value_text(value));
    let millis = match value {
        Value::Number(n) => cores_to_millis(n.as_f64().ok_or_else(bad)?).ok_or_else(bad)?,
        Value::String(s) => {
            let s = s.trim();
            if let Some(m) = s.strip_suffix('m') {
                m.parse::<u64>().map_err(|_| bad())?
            } else {
                cores_to_millis(s.parse::<f64>().map_err(|_| bad())?).ok_or_else(bad)?
            }
        }
        _ => return Err(bad()),
    };
    if !(MIN_CPU_MILLIS..=MAX_CPU_MILLIS).contains(&millis) {
        return Err(QuantityError::CpuRange(millis));
    }
    Ok(millis)
}

fn cores_to_millis(cores: f64) -> Option<u64> {
    if !cores.is_finite() || !(0.0..=1e6).contains(&cores) {
        return None;
    }
    Some((cores * 1000.0).round() as u64)
}

/// Parses a memory amount (a JSON integer of MiB, or a string: "512", "512Mi", "1Gi", "1G",
/// "1000M") into MiB. Decimal units count 1G = 1000 MiB and 1M = 1 MiB, as users expect.
pub fn parse_memory_mib(value: &Value) -> Result<u64, QuantityError> {
    let mib = parse_mib(value).ok_or_else(|| QuantityError::MemorySyntax(value_text(value)))?;
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(QuantityError::MemoryRange(mib));
    }
    Ok(mib)
}

/// Parses a disk size, written as memory is, into MiB.
pub fn parse_disk_mib(value: &Value) -> Result<u64, QuantityError> {
    let mib = parse_mib(value).ok_or_else(|| QuantityError::DiskSyntax(value_text(value)))?;
    if !(MIN_DISK_MIB..=MAX_DISK_MIB).contains(&mib) {
        return Err(QuantityError::DiskRange(mib));
    }
    Ok(mib)
}

/// MiB from a JSON integer or a string with an optional binary or decimal unit.
fn parse_mib(value: &Value) -> Option<u64> {
    let mib = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: f64 = num.trim().parse().ok()?;
            if !num.is_finite() || !(0.0..=1e12).contains(&num) {
                return None;
            }
            let factor = match unit {
                "" | "Mi" | "M" | "MiB" | "MB" => 1.0,
                "Gi" | "GiB" => 1024.0,
                "G" | "GB" => 1000.0,
                "Ti" | "TiB" => 1024.0 * 1024.0,
                "Ki" | "KiB" => 1.0 / 1024.0,
                _ => return None,
            };
            (num * factor).round() as u64
        }
        _ => return None,
    };
    Some(mib)
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_cpu_millis(&json!(1)), Ok(1000));
        assert_eq!(parse_cpu_millis(&json!(0.5)), Ok(500));
        assert_eq!(parse_cpu_millis(&json!("1500m")), Ok(1500));
        assert_eq!(parse_cpu_millis(&json!("2")), Ok(2000));
        assert_eq!(
            parse_cpu_millis(&json!(0.01)),
            Err(QuantityError::CpuRange(10))
        );
        assert_eq!(
            parse_cpu_millis(&json!(65)),
            Err(QuantityError::CpuRange(65000))
        );
        assert!(matches!(
            parse_cpu_millis(&json!("lots")),
            Err(QuantityError::CpuSyntax(_))
        ));
        assert!(matches!(
            parse_cpu_millis(&json!(true)),
            Err(QuantityError::CpuSyntax(_))
        ));
    }

    #[test]
    fn disk_forms() {
        assert_eq!(parse_disk_mib(&json!("10Gi")), Ok(10240));
        assert_eq!(parse_disk_mib(&json!(64)), Ok(64));
        assert_eq!(parse_disk_mib(&json!("2Ti")), Ok(2 * 1024 * 1024));
        assert_eq!(
            parse_disk_mib(&json!("32Mi")),
            Err(QuantityError::DiskRange(32))
        );
        assert!(matches!(
            parse_disk_mib(&json!("big")),
            Err(QuantityError::DiskSyntax(_))
        ));
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_memory_mib(&json!(1024)), Ok(1024));
        assert_eq!(parse_memory_mib(&json!("512Mi")), Ok(512));
        assert_eq!(parse_memory_mib(&json!("1Gi")), Ok(1024));
        assert_eq!(parse_memory_mib(&json!("1G")), Ok(1000));
        assert_eq!(parse_memory_mib(&json!("64")), Ok(64));
        assert_eq!(
            parse_memory_mib(&json!(1)),
            Err(QuantityError::MemoryRange(1))
        );
        assert!(matches!(
            parse_memory_mib(&json!("1Qi")),
            Err(QuantityError::MemorySyntax(_))
        ));
        assert!(matches!(
            parse_memory_mib(&json!(-5)),
            Err(QuantityError::MemorySyntax(_))
        ));
        assert!(matches!(
            parse_memory_mib(&json!(1.5)),
            Err(QuantityError::MemorySyntax(_))
        ));
    }
}
