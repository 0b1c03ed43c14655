//! What a build may ask for: match specs and channels, checked before anything runs.

use rattler_conda_types::{MatchSpec, ParseStrictness};

use crate::CondaError;

const MAX_SPEC_BYTES: usize = 1000;

/// A conda match spec with an exact package name, like `numpy`, `gdal >=3.8` or
/// `python 3.12.*`.
pub fn check_spec(spec: &str) -> Result<MatchSpec, CondaError> {
    let bad = |problem: String| CondaError::BadSpec {
        spec: spec.to_string(),
        problem,
    };
    if spec.trim().is_empty() || spec.len() > MAX_SPEC_BYTES || spec.contains('\0') {
        return Err(bad(
            "not a package spec like \"numpy\" or \"gdal >=3.8\"".into()
        ));
    }
    let parsed = MatchSpec::from_str(spec.trim(), ParseStrictness::Lenient)
        .map_err(|e| bad(e.to_string()))?;
    if parsed.name.as_exact().is_none() {
        return Err(bad("needs the exact name of a package".into()));
    }
    Ok(parsed)
}

/// A channel: a name on anaconda.org (`conda-forge`, `bioconda`), an `https://` URL, or a
/// `file://` URL of a directory on the server.
pub fn check_channel(channel: &str) -> Result<(), CondaError> {
    let bad = |problem: &str| CondaError::BadChannel {
        channel: channel.to_string(),
        problem: problem.to_string(),
    };
    if let Some(path) = channel.strip_prefix("file://") {
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") || path.contains('\0') {
            return Err(bad("a file:// channel is an absolute path without .."));
        }
        return Ok(());
    }
    if let Some(rest) = channel.strip_prefix("https://") {
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(bad("not a URL"));
        }
        return Ok(());
    }
    if channel.contains("://") {
        return Err(bad("only https:// and file:// channels are supported"));
    }
    let name_ok = !channel.is_empty()
        && channel.len() <= 100
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !channel.starts_with('.');
    if !name_ok {
        return Err(bad(
            "not a channel name (like conda-forge), an https:// URL or a file:// URL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_need_an_exact_name() {
        assert!(check_spec("numpy").is_ok());
        assert!(check_spec("gdal >=3.8").is_ok());
        assert!(check_spec("python 3.12.*").is_ok());
        for bad in ["", "  ", "nump*", ">=1.0"] {
            assert!(check_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn channels_are_names_https_or_file_urls() {
        for good in [
            "conda-forge",
            "bioconda",
            "https://conda.anaconda.org/conda-forge",
            "file:///srv/channel",
        ] {
            assert!(check_channel(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "http://example.com/channel",
            "ftp://x",
            "file://relative",
            "file:///srv/../etc",
            "two words",
            "../up",
        ] {
            assert!(check_channel(bad).is_err(), "{bad:?}");
        }
    }
}
