//! Installing a solved set of packages into a prefix directory that will be an image's
//! `/opt/conda`.

use std::path::{Component, Path};

use rattler::install::{ExternalSymlinkPolicy, Installer, LinkOptions};
use rattler_conda_types::package::PathsJson;
use rattler_conda_types::{MatchSpec, RepoDataRecord, Subdir};

use crate::{check_spec, one_line, Conda, CondaError, Lock, PREFIX};

impl Conda {
    /// Installs the packages of `lock` into `dir`, as if it were [`PREFIX`] (text files and
    /// scripts name `/opt/conda`). Package scripts are not run; links out of the prefix are
    /// refused; files are copied, never linked to the cache. Returns how many packages.
    pub async fn install(
        &self,
        lock: &Lock,
        specs: &[String],
        dir: &Path,
    ) -> Result<usize, CondaError> {
        let records = lock.records()?;
        let count = records.len();
        // Fetched (into the cache the installer then uses) and checked before anything is
        // linked: a package is hostile input, and its file list says where files go.
        for record in &records {
            self.fetch_and_check(record).await?;
        }
        let specs: Vec<MatchSpec> = specs
            .iter()
            .map(|s| check_spec(s))
            .collect::<Result<_, _>>()?;
        Installer::new()
            .with_download_client(self.http.clone())
            .with_package_cache(self.package_cache())
            .with_target_platform(Subdir::Linux64)
            .with_alternative_target_prefix(PREFIX)
            .with_execute_link_scripts(false)
            .with_external_symlink_policy(ExternalSymlinkPolicy::Deny)
            .with_link_options(LinkOptions {
                allow_symbolic_links: Some(false),
                allow_hard_links: Some(false),
                allow_ref_links: Some(true),
            })
            .with_requested_specs(specs)
            .install(dir, records)
            .await
            .map_err(|e| CondaError::Install(one_line(&e.to_string())))?;
        // Marks the prefix as a cache for backup tools; it is an environment here.
        let _ = std::fs::remove_file(dir.join("CACHEDIR.TAG"));
        Ok(count)
    }

    /// Puts the package into the cache (unpacked, its archive paths sanitised) and refuses
    /// it if its file list (`info/paths.json`) names a path outside the prefix, which the
    /// installer would otherwise write to.
    async fn fetch_and_check(&self, record: &RepoDataRecord) -> Result<(), CondaError> {
        let name = record.identifier.to_string();
        let failed =
            |e: &dyn std::fmt::Display| CondaError::Install(one_line(&format!("{name}: {e}")));
        let cache = self.package_cache();
        let cached = if record.url.scheme() == "file" {
            let path = record
                .url
                .to_file_path()
                .map_err(|()| failed(&format!("{} is not a file path", record.url)))?;
            cache
                .get_or_fetch_from_path(&path, Some(&record.package_record), None)
                .await
        } else {
            cache
                .get_or_fetch_from_url(
                    &record.package_record,
                    record.url.clone(),
                    self.http.clone().into(),
                    None,
                    None,
                )
                .await
        }
        .map_err(|e| failed(&e))?;
        let paths = PathsJson::from_package_directory_with_deprecated_fallback(cached.path())
            .map_err(|e| failed(&e))?;
        for entry in &paths.paths {
            if !inside(&entry.relative_path) {
                return Err(failed(&format!(
                    "its file {} would land outside {PREFIX}",
                    entry.relative_path.display()
                )));
            }
        }
        Ok(())
    }
}

/// A relative path that stays below where it is joined: no root, no `..`.
fn inside(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_below_the_prefix_are_inside() {
        for good in ["bin/hello", "lib/python3.12/site-packages/x.py", "./etc/a"] {
            assert!(inside(Path::new(good)), "{good}");
        }
        for bad in ["../etc/passwd", "bin/../../x", "/etc/passwd", ""] {
            assert!(!inside(Path::new(bad)), "{bad}");
        }
    }
}
