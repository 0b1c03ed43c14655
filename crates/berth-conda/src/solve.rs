//! Solving match specs against channels into the exact package files to install.

use std::path::PathBuf;
use std::time::Duration;

use rattler::package_cache::PackageCache;
use rattler_conda_types::{
    Channel, ChannelConfig, GenericVirtualPackage, MatchSpec, PackageName, RepoDataRecord, Subdir,
    Version,
};
use rattler_repodata_gateway::Gateway;
use rattler_solve::{resolvo, SolveError, SolverImpl, SolverTask};

use crate::{check_channel, check_spec, one_line, Conda, CondaError, DEFAULT_CHANNEL};

/// How long a solve may take before it is given up.
const SOLVE_LIMIT: Duration = Duration::from_secs(300);

/// The image the packages go into, as the solver sees it (its virtual packages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct System {
    /// The image's glibc, like "2.36"; `None` for an image without one (busybox, Alpine),
    /// where packages built against glibc cannot run.
    pub glibc: Option<String>,
}

/// The packages a solve chose, each as its repodata record in JSON, sorted by name: the
/// same solution is the same text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub packages: Vec<String>,
}

impl Lock {
    pub(crate) fn records(&self) -> Result<Vec<RepoDataRecord>, CondaError> {
        self.packages
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|e| CondaError::BadLock(e.to_string())))
            .collect()
    }

    /// `name version` of each package, for the build log.
    pub fn describe(&self) -> Vec<String> {
        match self.records() {
            Ok(records) => records
                .iter()
                .map(|r| {
                    format!(
                        "{} {}",
                        r.package_record.name.as_source(),
                        r.package_record.version
                    )
                })
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }
}

impl Conda {
    fn gateway(&self) -> Gateway {
        Gateway::builder()
            .with_client(self.http.clone())
            .with_cache_dir(self.cache.join("repodata"))
            .with_package_cache(self.package_cache())
            .finish()
    }

    pub(crate) fn package_cache(&self) -> PackageCache {
        PackageCache::new(self.cache.join("pkgs"))
    }

    /// Solves `specs` against `channels` (conda-forge when empty) for linux-64 and noarch.
    pub async fn solve(
        &self,
        specs: &[String],
        channels: &[String],
        system: &System,
    ) -> Result<Lock, CondaError> {
        let specs: Vec<MatchSpec> = specs
            .iter()
            .map(|s| check_spec(s))
            .collect::<Result<_, _>>()?;
        let names: Vec<String> = if channels.is_empty() {
            vec![DEFAULT_CHANNEL.to_string()]
        } else {
            channels.to_vec()
        };
        let config = ChannelConfig::default_with_root_dir(PathBuf::from("/"));
        let mut sources = Vec::with_capacity(names.len());
        for name in &names {
            check_channel(name)?;
            let channel = Channel::from_str(name, &config).map_err(|e| CondaError::BadChannel {
                channel: name.clone(),
                problem: e.to_string(),
            })?;
            sources.push(channel);
        }
        let listed = names.join(", ");
        // Every version of the named packages: the solver, not the query, decides which fit,
        // so a spec no version meets is reported as such rather than as an unknown name.
        let wanted: Vec<PackageName> = specs
            .iter()
            .filter_map(|s| s.name.as_exact().cloned())
            .collect();
        let repodata = self
            .gateway()
            .query(sources, [Subdir::Linux64, Subdir::NoArch], wanted)
            .recursive(true)
            .await
            .map_err(|e| CondaError::Channels {
                channels: listed.clone(),
                detail: one_line(&e.to_string()),
            })?;
        // A name no channel has: say so, rather than a solver report about it.
        for spec in &specs {
            let Some(name) = spec.name.as_exact() else {
                continue;
            };
            let known = repodata
                .iter()
                .flat_map(|r| r.iter())
                .any(|r| &r.package_record.name == name);
            if !known {
                return Err(CondaError::NotFound {
                    name: name.as_source().to_string(),
                    channels: listed,
                });
            }
        }
        let task = SolverTask {
            specs: specs.clone(),
            virtual_packages: virtual_packages(system),
            timeout: Some(SOLVE_LIMIT),
            ..SolverTask::from_iter(&repodata)
        };
        let solved = resolvo::Solver.solve(task).map_err(|e| {
            let specs = specs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let detail = match e {
                SolveError::Unsolvable(reports) => one_line(&reports.join(" ")),
                other => one_line(&other.to_string()),
            };
            CondaError::Unsolvable { specs, detail }
        })?;
        let mut records = solved.records;
        records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
        let packages = records
            .iter()
            .map(|r| serde_json::to_string(r).map_err(|e| CondaError::BadLock(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Lock { packages })
    }
}

/// What the solver may assume of the image: Linux on x86_64, and its glibc if it has one.
fn virtual_packages(system: &System) -> Vec<GenericVirtualPackage> {
    let mut packages = vec![
        virtual_package("__unix", "0", "0"),
        virtual_package("__linux", "5.10", "0"),
        virtual_package("__archspec", "1", "x86_64"),
    ];
    if let Some(glibc) = &system.glibc {
        packages.push(virtual_package("__glibc", glibc, "0"));
    }
    packages.into_iter().flatten().collect()
}

fn virtual_package(name: &str, version: &str, build: &str) -> Option<GenericVirtualPackage> {
    Some(GenericVirtualPackage {
        name: PackageName::new_unchecked(name),
        version: version.parse::<Version>().ok()?,
        build_string: build.parse().ok()?,
    })
}
