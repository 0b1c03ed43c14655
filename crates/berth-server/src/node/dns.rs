//! The resolvers a container gets in its /etc/resolv.conf: the operator's `--dns`, else the
//! host's minus loopback ones (unreachable from a pod's namespace), else public resolvers as
//! Docker does, said once in the log so an operator knows where pods' lookups go.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Used when neither the operator nor the host names a resolver a pod can reach.
const FALLBACK: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

pub struct Resolvers {
    configured: Vec<IpAddr>,
    warned: AtomicBool,
}

impl Resolvers {
    /// `configured` is the operator's `--dns` list; empty to follow the host.
    pub fn new(configured: Vec<IpAddr>) -> Self {
        Resolvers {
            configured,
            warned: AtomicBool::new(false),
        }
    }

    pub fn resolv_conf(&self) -> String {
        if !self.configured.is_empty() {
            return self
                .configured
                .iter()
                .map(|ip| format!("nameserver {ip}\n"))
                .collect();
        }
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (text, usable) = from_host(&host);
        if usable == 0 && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the host names no resolver a pod can reach (only loopback ones, or none); pods use {} — choose others with --dns",
                FALLBACK.join(" and ")
            );
        }
        text
    }
}

/// The host's resolv.conf for a pod, and how many of its resolvers a pod can reach.
fn from_host(host: &str) -> (String, usize) {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let trimmed = line.trim();
        if let Some(addr) = trimmed.strip_prefix("nameserver") {
            match addr.trim().parse::<IpAddr>() {
                Ok(ip) if !ip.is_loopback() => servers += 1,
                _ => continue,
            }
        } else if !(trimmed.starts_with("search") || trimmed.starts_with("options")) {
            continue;
        }
        out.push_str(trimmed);
        out.push('\n');
    }
    if servers == 0 {
        for ip in FALLBACK {
            out.push_str(&format!("nameserver {ip}\n"));
        }
    }
    (out, servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_dropped_for_the_fallback() {
        assert_eq!(
            from_host("nameserver 127.0.0.53\noptions edns0\n"),
            (
                "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n".to_string(),
                0
            )
        );
        assert_eq!(
            from_host("# c\nnameserver 10.0.0.2\nsearch x\n"),
            ("nameserver 10.0.0.2\nsearch x\n".to_string(), 1)
        );
    }

    #[test]
    fn configured_resolvers_win() {
        let r = Resolvers::new(vec!["192.0.2.53".parse().expect("ip")]);
        assert_eq!(r.resolv_conf(), "nameserver 192.0.2.53\n");
    }
}
