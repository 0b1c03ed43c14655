//! Which glibc an image has: what conda's solver may assume of it (`__glibc`).

use std::path::Path;

use crate::{ContentStore, ResolvedImage};

/// Where distributions keep the C library, as paths inside a layer.
const LIBC_PATHS: [&str; 4] = [
    "usr/lib/x86_64-linux-gnu/libc.so.6",
    "lib/x86_64-linux-gnu/libc.so.6",
    "usr/lib64/libc.so.6",
    "lib64/libc.so.6",
];

/// The glibc version of `image` ("2.36"), from the topmost layer that has the library;
/// `None` for an image without glibc (busybox, Alpine's musl).
pub fn image_glibc(store: &ContentStore, image: &ResolvedImage) -> Option<String> {
    store
        .layer_dirs(image)
        .iter()
        .rev()
        .flat_map(|layer| LIBC_PATHS.iter().map(move |p| layer.join(p)))
        .find_map(|path| glibc_version(&path))
}

/// The version of the glibc at `path`: from an old-style `libc-2.31.so` link target, or
/// from the "release version 2.36" banner the library carries.
fn glibc_version(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        let name = target.file_name()?.to_str()?;
        if let Some(version) = name
            .strip_prefix("libc-")
            .and_then(|v| v.strip_suffix(".so"))
        {
            return Some(version.to_string());
        }
        // A link elsewhere in the image: the file it names, in the same directory.
        return glibc_version(&path.parent()?.join(name));
    }
    if !meta.is_file() || meta.len() > 64 * 1024 * 1024 {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    banner_version(&bytes)
}

fn banner_version(bytes: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"release version ";
    let at = bytes.windows(BANNER.len()).position(|w| w == BANNER)? + BANNER.len();
    let version: String = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| char::from(*b))
        .collect();
    let version = version.trim_end_matches('.');
    (version.contains('.')).then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_the_version() {
        let lib = b"\x7fELF...GNU C Library (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36.\n...";
        assert_eq!(banner_version(lib).as_deref(), Some("2.36"));
        assert_eq!(banner_version(b"no banner here"), None);
    }

    #[test]
    fn an_old_style_link_names_the_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("libc.so.6");
        std::os::unix::fs::symlink("libc-2.31.so", &lib).expect("link");
        assert_eq!(glibc_version(&lib).as_deref(), Some("2.31"));
    }

    #[test]
    fn the_hosts_own_glibc_is_read() {
        // This machine is glibc-based; its libc must read as a version.
        let host = LIBC_PATHS
            .iter()
            .map(|p| Path::new("/").join(p))
            .find_map(|p| glibc_version(&p));
        assert!(host.is_some_and(|v| v.starts_with("2.")));
    }
}
