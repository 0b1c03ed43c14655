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
    let reference: Reference = text.parse().map_err(|e| invalid(format!("{e}")))?;
    Ok(reference)
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
        for bad in ["", "UPPER CASE::bad", "a//b", "x:y:z:"] {
            assert!(parse_reference(bad).is_err(), "{bad:?} should be refused");
        }
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
