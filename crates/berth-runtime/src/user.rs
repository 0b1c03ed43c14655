//! Resolving an image's USER (`name`, `uid`, `name:group`, `uid:gid`) against its own
//! /etc/passwd and /etc/group.

use std::path::Path;

use crate::RuntimeError;

/// Returns (uid, gid, additional gids) for `user` in the root filesystem at `rootfs`.
pub fn resolve_user(
    rootfs: &Path,
    user: Option<&str>,
) -> Result<(u32, u32, Vec<u32>), RuntimeError> {
    let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok((0, 0, Vec::new()));
    };
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let passwd = read_image_file(rootfs, "etc/passwd");
    let entry = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        (f[0] == name || f[2] == name)
            .then(|| (f[0].to_string(), f[2].parse().ok(), f[3].parse().ok()))
    });
    let (uid, primary_gid, user_name) = match (name.parse::<u32>(), entry) {
        (Ok(uid), Some((n, _, gid))) => (uid, gid.unwrap_or(0), Some(n)),
        (Ok(uid), None) => (uid, 0, None),
        (Err(_), Some((n, Some(uid), gid))) => (uid, gid.unwrap_or(0), Some(n)),
        (Err(_), _) => {
            return Err(RuntimeError::UnknownUser {
                user: user.to_string(),
            })
        }
    };
    let groups = read_image_file(rootfs, "etc/group");
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .lines()
                .find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
                .ok_or_else(|| RuntimeError::UnknownUser {
                    user: user.to_string(),
                })?,
        },
    };
    let additional = match &user_name {
        Some(n) => groups
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let members = f.get(3)?;
                members
                    .split(',')
                    .any(|m| m == n)
                    .then(|| f.get(2)?.parse().ok())
                    .flatten()
            })
            .filter(|g| *g != gid)
            .collect(),
        None => Vec::new(),
    };
    Ok((uid, gid, additional))
}

/// Reads a small text file of the image, refusing symlinks (a hostile image could point
/// them at host files).
fn read_image_file(rootfs: &Path, rel: &str) -> String {
    let mut path = rootfs.to_path_buf();
    for part in rel.split('/') {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_symlink() => {}
            _ => return String::new(),
        }
    }
    std::fs::read_to_string(&path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/bash\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nusers:x:100:\nsudo:x:27:jovyan\n",
        )
        .expect("write");
        dir
    }

    #[test]
    fn names_and_numbers() {
        let r = rootfs();
        assert_eq!(resolve_user(r.path(), None).expect("ok"), (0, 0, vec![]));
        assert_eq!(
            resolve_user(r.path(), Some("jovyan")).expect("ok"),
            (1000, 100, vec![27])
        );
        assert_eq!(
            resolve_user(r.path(), Some("1000")).expect("ok"),
            (1000, 100, vec![27])
        );
        assert_eq!(
            resolve_user(r.path(), Some("4242:7")).expect("ok"),
            (4242, 7, vec![])
        );
        assert_eq!(
            resolve_user(r.path(), Some("jovyan:root")).expect("ok"),
            (1000, 0, vec![27])
        );
        assert!(resolve_user(r.path(), Some("nobody-here")).is_err());
    }

    #[test]
    fn symlinked_passwd_is_not_followed() {
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", r.path().join("etc/passwd")).expect("symlink");
        assert!(resolve_user(r.path(), Some("root")).is_err());
    }
}
