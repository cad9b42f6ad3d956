//! Progress of long work: a bar on a terminal, plain lines otherwise (so logs
//! and CI output show it too), always on standard error (standard output
//! stays for the answer, e.g. `--json`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

/// Progress towards `total` steps.
pub struct Progress {
    label: String,
    unit: String,
    bar: Option<indicatif::ProgressBar>,
    done: AtomicU64,
    total: AtomicU64,
    /// The last position a plain line was printed for.
    printed: AtomicU64,
    quiet: bool,
}

impl Progress {
    /// `label: 3/10 jobs` as plain lines, or a bar on a terminal. `quiet`
    /// shows nothing at all.
    pub fn new(label: &str, total: u64, unit: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{msg:>14}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}})"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(label.to_owned());
            b
        });
        Self {
            label: label.to_owned(),
            unit: unit.to_owned(),
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
            printed: AtomicU64::new(u64::MAX),
            quiet,
        }
    }

    /// A new stage of the work, named.
    pub fn set_message(&self, msg: String) {
        match &self.bar {
            Some(b) => b.set_message(msg),
            None if !self.quiet => eprintln!("{}: {msg}", self.label),
            None => {}
        }
    }

    /// One more step done (plain lines every tenth of the total).
    pub fn inc(&self) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        match &self.bar {
            Some(b) => b.inc(1),
            None => {
                if n.is_multiple_of((total / 10).max(1)) {
                    self.line(n, total);
                }
            }
        }
    }

    /// Where the work stands (polled work: a plain line at each change).
    pub fn set(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
            }
            None => {
                if self.printed.swap(done, Ordering::Relaxed) != done {
                    self.line(done, total);
                }
            }
        }
    }

    fn line(&self, done: u64, total: u64) {
        if !self.quiet {
            eprintln!("{}: {done}/{total} {}", self.label, self.unit);
        }
    }

    /// The work is done: the bar goes.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// The work stopped short: the bar stays where it was.
    pub fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }
}
