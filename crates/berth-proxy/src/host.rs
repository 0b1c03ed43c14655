//! Pod host names: `<stub-id>-<port>.<domain>`, optionally with `:<listen port>`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHost {
    pub stub_id: String,
    pub port: u16,
}

/// Reads a pod host name under `domain`, which the server keeps in lower case; the host is
/// matched case-insensitively, as DNS is.
pub fn parse_pod_host(host: &str, domain: &str) -> Option<PodHost> {
    let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    let (stub_id, port) = label.rsplit_once('-')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    if stub_id.is_empty()
        || !stub_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    Some(PodHost {
        stub_id: stub_id.to_string(),
        port,
    })
}

/// Whether `host` (with or without a port) is the ingress's domain itself.
pub(crate) fn is_domain(host: &str, domain: &str) -> bool {
    strip_port(host)
        .trim_end_matches('.')
        .eq_ignore_ascii_case(domain)
}

pub(crate) fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(']') => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stub_and_port() {
        let h = parse_pod_host(
            "2929b184-b445-4f23-abc6-7c4b151001da-8888.app.example:8080",
            "app.example",
        )
        .expect("parses");
        assert_eq!(h.stub_id, "2929b184-b445-4f23-abc6-7c4b151001da");
        assert_eq!(h.port, 8888);
        assert!(parse_pod_host("ABC-80.App.Example", "app.example").is_some());
    }

    #[test]
    fn refuses_other_hosts() {
        for bad in [
            "app.example",
            "x.y-80.app.example",
            "abc-0.app.example",
            "abc-99999.app.example",
            "abc-80.other.example",
            "-80.app.example",
            "abc-80.evilapp.example",
        ] {
            assert_eq!(parse_pod_host(bad, "app.example"), None, "{bad}");
        }
    }
}
