//! Apply progress on stderr: a progress bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tend::provider::{Action, ResourceAddr};
use tend::report::{Outcome, Reporter};

/// Progress for `tend apply`.
pub struct CliReporter {
    bar: Option<ProgressBar>,
    /// Changes that run something (commands): reported as running / ran.
    runs: std::collections::HashSet<ResourceAddr>,
}

fn verb(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Create => ("creating", "created"),
        Action::Update => ("updating", "updated"),
        Action::Replace { .. } => ("replacing", "replaced"),
        Action::Delete => ("destroying", "destroyed"),
        Action::NoOp => ("checking", "unchanged"),
    }
}

impl CliReporter {
    /// A reporter for `total` changes, of which those in `runs` run something.
    pub fn new(total: usize, runs: std::collections::HashSet<ResourceAddr>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}").expect("the template is valid"));
            bar
        });
        Self { bar, runs }
    }

    fn verb(&self, addr: &ResourceAddr, action: Action) -> (&'static str, &'static str) {
        match action {
            Action::Create | Action::Update if self.runs.contains(addr) => ("running", "ran"),
            _ => verb(action),
        }
    }

    fn line(&self, s: &str) {
        if let Some(b) = &self.bar {
            b.println(s);
        } else {
            // One write per line: stderr is unbuffered, and `eprintln!` writes the line and its
            // newline apart (20,000 extra system calls for an apply of 10,000 files).
            use std::io::Write;
            let mut line = String::with_capacity(s.len() + 1);
            line.push_str(s);
            line.push('\n');
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Reporter for CliReporter {
    fn pre_apply(&self, addr: &ResourceAddr, action: Action) {
        match &self.bar {
            Some(b) => b.set_message(format!("{addr}: {}…", self.verb(addr, action).0)),
            None => self.line(&format!("{addr}: {}...", self.verb(addr, action).0)),
        }
    }

    fn post_apply(&self, addr: &ResourceAddr, action: Action, outcome: &Outcome, elapsed: Duration) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        let ms = elapsed.as_millis();
        match outcome {
            Outcome::Applied => self.line(&format!("{addr}: {} ({ms} ms)", self.verb(addr, action).1)),
            Outcome::Failed(f) => self.line(&format!("{addr}: failed: {f}")),
            Outcome::Skipped(cause) if cause == addr => self.line(&format!("{addr}: not started (interrupted)")),
            Outcome::Skipped(cause) => self.line(&format!("{addr}: skipped ({cause} failed)")),
        }
    }

    fn on_commit(&self, target: &ResourceAddr, what: &str, elapsed: Duration) {
        self.line(&format!("{target}: {what} ({} ms)", elapsed.as_millis()));
    }

    fn on_progress(&self, addr: &ResourceAddr, waiting_for: &str, elapsed: Duration) {
        let line = format!("{addr}: waiting to be ready: {waiting_for} [{}s elapsed]", elapsed.as_secs());
        match &self.bar {
            Some(b) => b.set_message(line),
            None => self.line(&line),
        }
    }
}
