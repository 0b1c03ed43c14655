//! Stop signals as users and images name them: `SIGINT`, `INT`, `int` or `2`.

use nix::sys::signal::Signal;

/// The signal a stop sends first when neither the pod nor its image names one.
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::SIGTERM;

/// The longest grace a pod may ask for between its stop signal and SIGKILL.
pub const MAX_STOP_GRACE_SECONDS: u64 = 3600;

/// Reads a signal the way Docker reads `STOPSIGNAL`: a name with or without `SIG` in any
/// case, or its number. Signals that cannot end a process (SIGSTOP, SIGCONT, ...) are
/// refused, since a stop that sends them would only ever end in SIGKILL.
pub fn parse_stop_signal(text: &str) -> Result<Signal, String> {
    let text = text.trim();
    let signal = match text.parse::<i32>() {
        Ok(number) => Signal::try_from(number)
            .map_err(|_| format!("{number} is not a signal number (1-31)"))?,
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>()
                .map_err(|_| format!("{text:?} is not a signal name (like SIGTERM or INT)"))?
        }
    };
    match signal {
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => Err(format!(
            "{} only suspends a process: a stop needs a signal that ends it",
            signal.as_str()
        )),
        Signal::SIGCONT | Signal::SIGCHLD | Signal::SIGWINCH | Signal::SIGURG => Err(format!(
            "{} is ignored by default: a stop needs a signal that ends the process",
            signal.as_str()
        )),
        _ => Ok(signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_case_are_read_like_docker() {
        for text in ["SIGINT", "INT", "sigint", "int", "2", " SIGINT "] {
            assert_eq!(parse_stop_signal(text), Ok(Signal::SIGINT), "{text}");
        }
        assert_eq!(parse_stop_signal("SIGQUIT"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_stop_signal("9"), Ok(Signal::SIGKILL));
    }

    #[test]
    fn unknown_and_harmless_signals_are_refused_with_why() {
        let refusal = |text: &str| parse_stop_signal(text).err().unwrap_or_default();
        assert!(refusal("SIGNOPE").contains("not a signal name"));
        assert!(refusal("99").contains("not a signal number"));
        assert!(parse_stop_signal("").is_err());
        assert!(refusal("STOP").contains("suspends"));
        assert!(refusal("SIGCHLD").contains("ignored"));
    }
}
