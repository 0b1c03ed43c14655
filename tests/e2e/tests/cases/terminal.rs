//! `berth shell` under a real terminal: tmux runs it in a pane, the test types with
//! `send-keys` and reads the screen with `capture-pane`, as a person at a terminal would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::sleeper_spec;
use crate::common::harness::Env;
use crate::common::{poll, timeouts, Res};
use crate::ensure;

/// A tmux server of its own (its own socket), killed with everything in it when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached session of `cols` x `rows`, with the server's client
    /// environment (gateway, token, PATH to this build's berth).
    fn start(env: &Env, dir: &Path, name: &str, command: &str, cols: u16, rows: u16) -> Res<Tmux> {
        let tmux = Tmux {
            socket: format!("berth-e2e-{}-{name}", std::process::id()),
        };
        let out = env.api.sh_in(
            dir,
            &format!(
                "tmux -L {} -f /dev/null new-session -d -s shell -x {cols} -y {rows} \"{command}\"",
                tmux.socket
            ),
        )?;
        ensure!(
            out.status.success(),
            "tmux did not start: {}",
            out.combined()
        );
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> Res<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| format!("tmux {args:?}: {e}"))?;
        ensure!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `keys` and presses Enter.
    fn type_line(&self, keys: &str) -> Res<()> {
        self.run(&["send-keys", "-t", "shell", "-l", keys])?;
        self.run(&["send-keys", "-t", "shell", "Enter"])?;
        Ok(())
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "shell"])
            .unwrap_or_default()
    }

    /// Waits until some line of the screen is `line` exactly.
    fn wait_for_line(&self, line: &str, what: &str) -> Res<()> {
        poll(timeouts::CLI, Duration::from_millis(100), || {
            self.screen()
                .lines()
                .any(|l| l.trim_end() == line)
                .then_some(())
        })
        .ok_or_else(|| format!("{what}: no line {line:?} on the screen:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `berth shell` on a real terminal under `runtime`: what is typed runs in the pod and its
/// output comes back, the terminal's size follows the window, Ctrl-C interrupts the
/// foreground command and not the shell, `exit N` ends the CLI with code N, and closing the
/// terminal ends what ran in it.
fn shell_on_a_terminal(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(sleeper_spec(env, runtime))?;
    api.wait_running(&pod.id)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tmux = Tmux::start(
        env,
        dir.path(),
        runtime,
        &format!("berth shell {}; echo berth-exited-\\$?; sleep 600", pod.id),
        100,
        30,
    )?;
    // The arithmetic is done by the pod's shell: the typed line shows the expression, and
    // only the output is the bare number; the file is the pod's own.
    tmux.type_line("echo $((6 * 7)); cat /www/index.html")?;
    let what = format!("a command typed into berth shell under {runtime}");
    tmux.wait_for_line("42", &what)?;
    tmux.wait_for_line(crate::common::images::busybox_index_text(), &what)?;
    tmux.type_line("stty size")?;
    tmux.wait_for_line("30 100", "the starting size")?;
    tmux.run(&["resize-window", "-t", "shell", "-x", "120", "-y", "40"])?;
    // The resize travels as SIGWINCH to the CLI, then over the websocket: give it a moment
    // by asking until it shows.
    let resized = poll(timeouts::CLI, Duration::from_millis(300), || {
        tmux.type_line("stty size").ok()?;
        std::thread::sleep(Duration::from_millis(200));
        tmux.screen()
            .lines()
            .any(|l| l.trim_end() == "40 120")
            .then_some(())
    });
    ensure!(
        resized.is_some(),
        "the pod's terminal should follow a resize to 120x40 under {runtime}:\n{}",
        tmux.screen()
    );
    tmux.type_line("sleep 300")?;
    std::thread::sleep(Duration::from_millis(500));
    tmux.run(&["send-keys", "-t", "shell", "C-c"])?;
    tmux.type_line("echo still-$((1 + 1))")?;
    tmux.wait_for_line(
        "still-2",
        &format!("Ctrl-C should stop the sleep and leave the shell under {runtime}"),
    )?;
    tmux.type_line("exit 5")?;
    tmux.wait_for_line(
        "berth-exited-5",
        &format!("berth shell should exit with the shell's code under {runtime}"),
    )?;
    drop(tmux);

    // Closing the terminal (the window goes, and the CLI with it) hangs up the shell and
    // what runs in its foreground: nothing is left in the pod.
    let tmux = Tmux::start(
        env,
        dir.path(),
        &format!("{runtime}-hangup"),
        &format!("berth shell {}", pod.id),
        100,
        30,
    )?;
    tmux.type_line("echo ready; exec sleep 1234")?;
    tmux.wait_for_line("ready", "a second shell")?;
    let running = || -> Res<bool> {
        // The image has no ps: the command lines of its processes, NUL-separated.
        let ps = api.cli(&[
            "container",
            "exec",
            &pod.id,
            "--",
            "sh",
            "-c",
            "cat /proc/[0-9]*/cmdline",
        ])?;
        ensure!(
            ps.status.success(),
            "listing the pod's processes: {}",
            ps.combined()
        );
        Ok(ps.stdout.contains("sleep\u{0}1234\u{0}"))
    };
    let started = poll(timeouts::CLI, Duration::from_millis(200), || {
        running().ok().filter(|r| *r)
    });
    ensure!(
        started.is_some(),
        "the shell's sleep should show in the pod under {runtime}: {:?}\n{}",
        running(),
        tmux.screen()
    );
    drop(tmux);
    let gone = poll(timeouts::CLI, Duration::from_millis(300), || {
        running().ok().filter(|r| !*r)
    });
    ensure!(
        gone.is_some(),
        "closing the terminal should end what ran in it under {runtime}"
    );
    api.stop(&pod.id)?;
    api.wait_terminal(&pod.id, timeouts::STOP)?;
    Ok(())
}

pub fn shell_under_runc(env: &Env) -> Res<()> {
    shell_on_a_terminal(env, "runc")
}

pub fn shell_under_gvisor(env: &Env) -> Res<()> {
    shell_on_a_terminal(env, "gvisor")
}
