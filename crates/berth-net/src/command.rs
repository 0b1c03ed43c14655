//! The one way berth-net runs a helper program (`ip`, `iptables`, CNI plugins): a clean
//! environment with berth's default PATH, optional input, and a failure that keeps what the
//! program said.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// A helper program that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args} failed ({status}): {}", stderr.trim())]
    Failed {
        program: String,
        args: String,
        status: std::process::ExitStatus,
        /// CNI plugins report their errors as JSON here.
        stdout: String,
        stderr: String,
    },
}

/// Runs `program` with `args` and `env` (nothing else from the server's environment),
/// writing `input` to its stdin, and returns its stdout.
pub fn run(
    program: impl AsRef<OsStr>,
    args: &[&str],
    env: &[(&str, &OsStr)],
    input: Option<&[u8]>,
) -> Result<String, CommandError> {
    let program = program.as_ref();
    let name = || program.to_string_lossy().into_owned();
    let spawn_err = |source| CommandError::Spawn {
        program: name(),
        source,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", berth_api::DEFAULT_PATH)
        .envs(env.iter().copied())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure only makes async-signal-safe calls
    // (prctl, getppid, kill) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A plugin that exits without reading its input reports why on its stdout.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(CommandError::Failed {
            program: name(),
            args: args.join(" "),
            status: out.status,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Has the kernel kill the helper when the server dies. A CNI plugin left running by a
/// `kill -9` of the server would otherwise finish its ADD after the next server had
/// already swept that network away, leaving its iptables rules behind for good.
fn die_with_parent(parent: u32) -> std::io::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::{getppid, Pid};
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The server may have died between fork and prctl.
    if getppid().as_raw() as u32 != parent {
        kill(Pid::this(), Signal::SIGKILL)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_input_and_a_clean_environment() {
        let out = run(
            "/bin/sh",
            &["-c", "cat; echo \" $PATH $HOME\""],
            &[],
            Some(b"in"),
        )
        .expect("runs");
        assert_eq!(out, format!("in {} \n", berth_api::DEFAULT_PATH));
    }

    #[test]
    fn failures_keep_both_streams() {
        let err = run(
            "/bin/sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            &[],
            None,
        )
        .expect_err("fails");
        match err {
            CommandError::Failed { stdout, stderr, .. } => {
                assert_eq!(stdout, "out\n");
                assert_eq!(stderr, "err\n");
            }
            other => panic!("unexpected {other}"),
        }
        assert!(matches!(
            run("/nonexistent/prog", &[], &[], None),
            Err(CommandError::Spawn { .. })
        ));
    }
}
