//! Progress of pulls and builds: in a terminal a live bar (layers pulled, build steps done)
//! under the lines that stay; piped, one line per step and no line twice.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    last_status: String,
}

impl Progress {
    pub fn new() -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::hidden();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            last_status: String::new(),
        }
    }

    /// A line that stays, like `=> Step 2/3: RUN ...` or a step's output.
    pub fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => {
                if let Some((done, total)) = step_of(text) {
                    self.show(bar, done.saturating_sub(1), total, text);
                }
                bar.println(text);
            }
            None => println!("{text}"),
        }
    }

    /// A status that replaces the previous one, like `Pulling image x: 2/5 layers, 3.1 MiB`.
    pub fn status(&mut self, text: &str) {
        if self.last_status == text {
            return;
        }
        self.last_status = text.to_string();
        match &self.bar {
            Some(bar) => {
                let (done, total) = layers_of(text).unwrap_or((0, 0));
                self.show(bar, done, total, text);
            }
            None => println!("   {text}"),
        }
    }

    fn show(&self, bar: &ProgressBar, done: u64, total: u64, message: &str) {
        if bar.is_hidden() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stdout());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(message.to_string());
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `(done, total)` from `... 3/5 layers ...`.
fn layers_of(text: &str) -> Option<(u64, u64)> {
    let before = text.split(" layers").next()?;
    let fraction = before.rsplit(' ').next()?;
    let (done, total) = fraction.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// `(step, total)` from `=> Step 2/3: ...`.
fn step_of(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("=> Step ")?;
    let fraction = rest.split(':').next()?;
    let (done, total) = fraction.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_the_lines() {
        assert_eq!(
            layers_of("Pulling image busybox: 3/5 layers, 1.2 MiB"),
            Some((3, 5))
        );
        assert_eq!(step_of("=> Step 2/3: RUN echo hi"), Some((2, 3)));
        assert_eq!(layers_of("Creating container"), None);
        assert_eq!(step_of("   output"), None);
    }
}
