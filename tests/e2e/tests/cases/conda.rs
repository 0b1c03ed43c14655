//! Conda packages in images: a local `file://` channel the test makes itself (two noarch
//! packages, one depending on the other, indexed by hand), solved and installed by the
//! server into `/opt/conda` without any conda binary, run in a pod through the CLI; the
//! cache follows the solution, and what cannot be solved is named.

use std::path::Path;

use serde_json::json;

use crate::common::client::created_id;
use crate::common::harness::Env;
use crate::common::{command_output, indent, Res};
use crate::ensure;

/// Writes a noarch conda package (a `.tar.bz2` with `info/index.json`, `info/paths.json`
/// and one script in `bin/`) into a channel directory and indexes the channel:
/// `channel.py DIR NAME VERSION DEPENDS SCRIPT [LISTED_PATH]`, where `LISTED_PATH` is what
/// `paths.json` claims the file is (a hostile package lies there). Python's standard
/// library only.
const MAKE_PACKAGE: &str = r#"
import hashlib, io, json, os, sys, tarfile
channel, name, version, depends, script = sys.argv[1:6]
listed = sys.argv[6] if len(sys.argv) > 6 else "bin/" + name
script = script.encode()
index = {"name": name, "version": version, "build": "0", "build_number": 0,
         "noarch": "generic", "subdir": "noarch", "license": "MIT",
         "depends": [d for d in depends.split(",") if d]}
paths = {"paths_version": 1, "paths": [{"_path": listed, "path_type": "hardlink",
         "sha256": hashlib.sha256(script).hexdigest(), "size_in_bytes": len(script)}]}
def add(tar, path, data, mode):
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), mode, 1700000000
    tar.addfile(info, io.BytesIO(data))
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
    add(tar, "info/index.json", json.dumps(index).encode(), 0o644)
    add(tar, "info/paths.json", json.dumps(paths).encode(), 0o644)
    add(tar, "bin/" + name, script, 0o755)
data = buf.getvalue()
filename = "%s-%s-0.tar.bz2" % (name, version)
for subdir in ("noarch", "linux-64"):
    os.makedirs(os.path.join(channel, subdir), exist_ok=True)
with open(os.path.join(channel, "noarch", filename), "wb") as f:
    f.write(data)
repodata_path = os.path.join(channel, "noarch", "repodata.json")
try:
    repodata = json.load(open(repodata_path))
except FileNotFoundError:
    repodata = {"info": {"subdir": "noarch"}, "repodata_version": 1, "packages": {},
                "packages.conda": {}}
repodata["packages"][filename] = dict(index, md5=hashlib.md5(data).hexdigest(),
                                      sha256=hashlib.sha256(data).hexdigest(), size=len(data))
json.dump(repodata, open(repodata_path, "w"))
empty = {"info": {"subdir": "linux-64"}, "repodata_version": 1, "packages": {},
         "packages.conda": {}}
json.dump(empty, open(os.path.join(channel, "linux-64", "repodata.json"), "w"))
"#;

fn add_package(channel: &Path, name: &str, version: &str, depends: &str, script: &str) -> Res<()> {
    let dir = channel.display().to_string();
    command_output(
        "python3",
        &["-c", MAKE_PACKAGE, &dir, name, version, depends, script],
    )
    .map(|_| ())
}

/// A package whose file list sends its one file to `listed` instead of `bin/`.
fn add_lying_package(channel: &Path, name: &str, listed: &str) -> Res<()> {
    let dir = channel.display().to_string();
    let script = "#!/bin/sh\necho escaped\n";
    command_output(
        "python3",
        &["-c", MAKE_PACKAGE, &dir, name, "1.0", "", script, listed],
    )
    .map(|_| ())
}

/// `greeter` needs `hello`: the solve must bring both, and the pod runs one through the other.
fn make_channel(channel: &Path, hello_version: &str) -> Res<()> {
    add_package(
        channel,
        "hello",
        hello_version,
        "",
        &format!("#!/bin/sh\necho hello {hello_version} from conda\n"),
    )
}

pub fn conda_packages_from_a_local_channel(env: &Env) -> Res<()> {
    let api = &env.api;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let channel = dir.path().join("channel");
    make_channel(&channel, "1.0")?;
    add_package(
        &channel,
        "greeter",
        "2.1",
        "hello >=1.0",
        "#!/bin/sh\necho greeter 2.1 at $0\nexec hello\n",
    )?;
    // A stand-in for conda's python: what `python` in the pod must run.
    add_package(
        &channel,
        "python",
        "3.12.0",
        "",
        "#!/bin/sh\necho conda python at $0\n",
    )?;
    let channel_url = format!("file://{}", channel.display());
    let run = |args: &[&str]| {
        let mut all = vec![
            "run",
            "--base-image",
            &env.images.busybox,
            "--conda-packages",
            "greeter,python",
            "--conda-channels",
            &channel_url,
            "--keep-warm-seconds",
            "-1",
        ];
        all.extend_from_slice(args);
        api.cli(&all)
    };

    // The package's command, found on PATH, runs its dependency's.
    let first = run(&["--entrypoint", "sh", "-c", "greeter; python; sleep 3600"])?;
    let id = created_id(&first.stdout);
    let _pod = id.as_deref().map(|id| api.adopt(id)).transpose()?;
    ensure!(
        first.status.success(),
        "berth run with conda packages failed:\n{}",
        first.show()
    );
    for expected in [
        "=> Solving conda packages greeter, python from file://",
        "=> Solved: greeter 2.1, hello 1.0, python 3.12.0",
        "CONDA INSTALL greeter",
    ] {
        ensure!(
            first.stdout.contains(expected),
            "the build log lacks {expected:?}:\n{}",
            first.show()
        );
    }
    let id = id.ok_or_else(|| format!("no container id in:\n{}", first.show()))?;
    let logs = api.wait_logged(&id, "conda python at /opt/conda/bin/python")?;
    ensure!(
        logs.contains("greeter 2.1 at /opt/conda/bin/greeter")
            && logs.contains("hello 1.0 from conda"),
        "greeter should run from /opt/conda/bin (first on PATH) and run hello:\n{}",
        indent(&logs)
    );

    // The same request with the same channel is a full cache hit.
    let spec = json!({
        "base_image": env.images.busybox,
        "conda_packages": ["greeter", "python"],
        "conda_channels": [channel_url],
    });
    let (log, result) = api.build(&spec)?;
    result.map_err(|e| format!("the second build failed: {e}\n{}", indent(&log.join("\n"))))?;
    ensure!(
        log.iter().any(|l| l == "=> Using cached image"),
        "the second identical build should be cached:\n{}",
        indent(&log.join("\n"))
    );

    // A newer hello in the channel is a new solution: the same request builds again.
    make_channel(&channel, "1.1")?;
    let (log, result) = api.build(&spec)?;
    result.map_err(|e| format!("the build after hello 1.1 failed: {e}"))?;
    ensure!(
        log.iter()
            .any(|l| l.contains("Solved: greeter 2.1, hello 1.1, python 3.12.0"))
            && !log.iter().any(|l| l == "=> Using cached image"),
        "after hello 1.1 was added the build should solve to it and not be cached:\n{}",
        indent(&log.join("\n"))
    );

    // What cannot be solved is a one-line error that names it.
    for (packages, channels, named) in [
        (json!(["greeter >=9"]), json!([channel_url]), "greeter >=9"),
        (json!(["nosuchpkg"]), json!([channel_url]), "nosuchpkg"),
        (
            json!(["greeter"]),
            json!(["file:///nonexistent/berth-channel"]),
            "/nonexistent/berth-channel",
        ),
    ] {
        let spec = json!({
            "base_image": env.images.busybox,
            "conda_packages": packages,
            "conda_channels": channels,
        });
        let (log, result) = api.build(&spec)?;
        match result {
            Ok(image) => {
                return Err(format!(
                    "conda_packages {packages} from {channels} should fail, but built {image}"
                ))
            }
            Err(e) => {
                println!("conda: {packages} from {channels}: {e}");
                ensure!(
                    e.contains(named) && !e.trim().contains('\n'),
                    "the error for conda_packages {packages} from {channels} should be one line \
                 naming {named:?}: {e:?}\n{}",
                    indent(&log.join("\n"))
                )
            }
        }
    }
    Ok(())
}

/// A package is hostile input: one whose file list points outside the prefix is refused
/// before anything of it is linked, and nothing lands where it pointed.
pub fn a_package_that_escapes_the_prefix_is_refused(env: &Env) -> Res<()> {
    let api = &env.api;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let channel = dir.path().join("channel");
    let target = std::path::PathBuf::from(format!(
        "/tmp/berth-conda-escape-{}",
        crate::common::random_hex(4)
    ));
    let listed = format!(
        "{}{}",
        "../".repeat(24),
        target.display().to_string().trim_start_matches('/')
    );
    add_lying_package(&channel, "escaper", &listed)?;
    let spec = json!({
        "base_image": env.images.busybox,
        "conda_packages": ["escaper"],
        "conda_channels": [format!("file://{}", channel.display())],
    });
    let (log, result) = api.build(&spec)?;
    let escaped = target.exists();
    let _ = std::fs::remove_file(&target);
    ensure!(
        !escaped,
        "installing a package whose paths.json names {listed} wrote {} on the host",
        target.display()
    );
    match result {
        Ok(image) => Err(format!(
            "a package whose file list leaves /opt/conda should be refused, but built {image}:\n{}",
            indent(&log.join("\n"))
        )),
        Err(e) => {
            println!("conda: a package listing {listed}: {e}");
            ensure!(
                e.contains("escaper") && e.contains("outside /opt/conda"),
                "the refusal should name the package and say why: {e:?}"
            );
            Ok(())
        }
    }
}
