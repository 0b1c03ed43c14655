//! Image references parsed the way Docker does: `busybox` is `docker.io/library/busybox:latest`.

use oci_client::Reference;

use crate::ImageError;

/// `--registry-mirror docker.io=HOST[:PORT]`: pulls for `from` go to `to` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    pub from: String,
    pub to: String,
}

impl std::str::FromStr for RegistryMirror {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not of the form REGISTRY=HOST[:PORT]"))?;
        if from.is_empty() || to.is_empty() || to.contains('/') {
            return Err(format!("{s:?} is not of the form REGISTRY=HOST[:PORT]"));
        }
        Ok(RegistryMirror {
            from: canonical_registry(from).to_string(),
            to: to.to_string(),
        })
    }
}

fn canonical_registry(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// Parses `text` into a fully qualified reference (registry, repository, tag or digest).
///
/// Hand-written over Docker's grammar (distribution/reference) rather than through
/// `Reference::from_str`: that compiles a Unicode regex of about 30 MB on first use and
/// keeps it for the life of the server.
pub fn parse_reference(text: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: text.to_string(),
        reason,
    };
    if text.trim().is_empty() {
        return Err(invalid("the reference is empty".into()));
    }
    if text.len() > 1024 {
        return Err(invalid(
            "the reference is longer than 1024 characters".into(),
        ));
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest).map_err(invalid)?)),
        None => (text, None),
    };
    // A tag is after the last colon that follows the last slash (a colon before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let (name, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
            (name, Some(check_tag(tag).map_err(invalid)?))
        }
        None => (rest, None),
    };
    let (registry, path) = split_registry(name).map_err(invalid)?;
    for component in path.split('/') {
        check_path_component(component).map_err(invalid)?;
    }
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if repository.len() > 255 {
        return Err(invalid(
            "the repository name is longer than 255 characters".into(),
        ));
    }
    let registry = registry.to_string();
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or("latest").to_string())
        }
    })
}

const DOCKER_HUB: &str = "docker.io";

/// Splits `name` into its registry and repository path the way Docker does: the first
/// component names a registry when it has a dot or a port, or is `localhost`.
fn split_registry(name: &str) -> Result<(&str, &str), String> {
    match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            check_registry(first)?;
            Ok((canonical_registry(first), path))
        }
        _ => Ok((DOCKER_HUB, name)),
    }
}

/// `host[:port]`, the host being dot-separated labels of letters, digits and inner dashes.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("{registry:?} is not a valid registry host"));
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{registry:?} has an invalid port"));
        }
    }
    Ok(())
}

/// Lowercase letters and digits, joined by one `.`, one or two `_`, or any number of `-`.
fn check_path_component(component: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "{component:?} is not a valid repository name component \
             (lowercase letters and digits, separated by '.', '_', '__' or dashes)"
        ))
    };
    let mut separator = String::new();
    let mut after_alnum = false;
    for c in component.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !matches!(separator.as_str(), "" | "." | "_" | "__")
                && !separator.bytes().all(|b| b == b'-')
            {
                return bad();
            }
            separator.clear();
            after_alnum = true;
        } else if matches!(c, '.' | '_' | '-') && after_alnum {
            separator.push(c);
        } else {
            return bad();
        }
    }
    if !after_alnum || !separator.is_empty() {
        return bad();
    }
    Ok(())
}

/// A word character, then up to 127 word characters, dots and dashes.
fn check_tag(tag: &str) -> Result<&str, String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = matches!(bytes.first(), Some(&b) if word(b))
        && bytes.len() <= 128
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(tag)
    } else {
        Err(format!(
            "{tag:?} is not a valid tag (up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-')"
        ))
    }
}

/// `sha256:`, `sha384:` or `sha512:` and the hex digest of that length.
fn check_digest(digest: &str) -> Result<&str, String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("{digest:?} is not a digest (ALGORITHM:HEX)"))?;
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => return Err(format!("digest algorithm {other:?} is not supported")),
    };
    if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "a {algorithm} digest is {want} hex digits, not {hex:?}"
        ));
    }
    Ok(digest)
}

/// The reference to actually pull from, after applying mirrors.
pub(crate) fn apply_mirrors(reference: &Reference, mirrors: &[RegistryMirror]) -> Reference {
    let registry = canonical_registry(reference.registry());
    let Some(mirror) = mirrors.iter().find(|m| m.from == registry) else {
        return reference.clone();
    };
    match (reference.tag(), reference.digest()) {
        (_, Some(digest)) => Reference::with_digest(
            mirror.to.clone(),
            reference.repository().to_string(),
            digest.to_string(),
        ),
        (tag, None) => Reference::with_tag(
            mirror.to.clone(),
            reference.repository().to_string(),
            tag.unwrap_or("latest").to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_short_names() {
        let r = parse_reference("jupyter/base-notebook:latest").expect("parses");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "jupyter/base-notebook");
        assert_eq!(r.tag(), Some("latest"));
        let r = parse_reference("busybox").expect("parses");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn other_registries_and_digests() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let r = parse_reference(&format!("127.0.0.1:5000/app@{d}")).expect("parses");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.digest(), Some(d.as_str()));
    }

    #[test]
    fn bad_syntax_is_refused() {
        for bad in [
            "",
            "UPPER CASE::bad",
            "a//b",
            "x:y:z:",
            "Busybox",
            "Library/busybox",
            "busybox:",
            "busybox:.tag",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "-bad.io/app",
            "host.io:port/app",
            "a..b",
            "a_",
            "a___b",
            "app/",
            "/app",
            "café",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn tags_ports_and_separators() {
        let r = parse_reference("localhost:5000/team/app_name__x.y-z:v1.2-rc_3").expect("parses");
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app_name__x.y-z");
        assert_eq!(r.tag(), Some("v1.2-rc_3"));
        let r = parse_reference("localhost/app").expect("parses");
        assert_eq!((r.registry(), r.repository()), ("localhost", "app"));
        // A colon in the first component without a slash after it is a tag, not a port.
        let r = parse_reference("test.com:5000").expect("parses");
        assert_eq!(r.repository(), "library/test.com");
        assert_eq!(r.tag(), Some("5000"));
        let r = parse_reference("index.docker.io/library/busybox").expect("parses");
        assert_eq!(r.registry(), "docker.io");
        let d = "sha256:".to_string() + &"b".repeat(64);
        let r = parse_reference(&format!("busybox:1.36@{d}")).expect("parses");
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.digest(), Some(d.as_str()));
        assert!(parse_reference(&format!("a/{}", "b".repeat(260))).is_err());
        assert!(parse_reference(&format!("busybox:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn mirror_rewrites_docker_hub_only() {
        let m: RegistryMirror = "docker.io=127.0.0.1:5001".parse().expect("parses");
        let hub = parse_reference("busybox:1.36").expect("parses");
        let mirrored = apply_mirrors(&hub, std::slice::from_ref(&m));
        assert_eq!(mirrored.registry(), "127.0.0.1:5001");
        assert_eq!(mirrored.repository(), "library/busybox");
        assert_eq!(mirrored.tag(), Some("1.36"));
        let other = parse_reference("quay.io/a/b:1").expect("parses");
        assert_eq!(apply_mirrors(&other, &[m]).registry(), "quay.io");
        assert!("docker.io".parse::<RegistryMirror>().is_err());
    }
}
