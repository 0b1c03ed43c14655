//! Durations on the command line: seconds, or a number with a unit (`90s`, `10m`, `2h`).

/// `600`, `90s`, `10m`, `2h`, `7d` → seconds; a clap value parser, so a bad value is named
/// with its flag.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 600, 90s, 10m, 2h or 7d"))?;
    let unit = match unit.trim() {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("{text:?}: unknown unit {other:?} (s, m, h or d)")),
    };
    Ok(n.saturating_mul(unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_seconds("600"), Ok(600));
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("10m"), Ok(600));
        assert_eq!(parse_seconds("2h"), Ok(7200));
        assert_eq!(parse_seconds("1d"), Ok(86400));
        assert!(parse_seconds("10 parsecs").is_err());
        assert!(parse_seconds("m").is_err());
        assert!(parse_seconds("").is_err());
    }
}
