//! Progress of an offline walk on stderr: a spinner with the entries (and bytes)
//! so far while stderr is a terminal, nothing otherwise, and one summary line at
//! the end either way.

use std::cell::Cell;
use std::fmt::Display;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bytes are shown anew every this many entries: formatting them per entry would
/// cost more than the counting.
const BYTES_EVERY: u64 = 64;

pub struct Progress {
    name: &'static str,
    bar: ProgressBar,
    /// Bytes written so far, for walks that write.
    bytes: Cell<u64>,
    start: Instant,
}

impl Progress {
    /// A spinner prefixed `name`; stderr that is no terminal gets none.
    pub fn stderr(name: &'static str) -> Progress {
        // ProgressDrawTarget::stderr() is hidden when stderr is not a terminal.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix}: {human_pos} entries{msg} {elapsed}",
                )
                .expect("a valid template"),
            )
            .with_prefix(name);
        if !bar.is_hidden() {
            // Redraws while one large file is being read.
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Progress::with_bar(name, bar)
    }

    /// Shows nothing (library callers, tests).
    pub fn hidden() -> Progress {
        Progress::with_bar("", ProgressBar::hidden())
    }

    fn with_bar(name: &'static str, bar: ProgressBar) -> Progress {
        Progress {
            name,
            bar,
            bytes: Cell::new(0),
            start: Instant::now(),
        }
    }

    /// One more entry walked.
    pub fn entry(&self) {
        self.bar.inc(1);
    }

    /// One more entry walked, and `bytes` written in all so far.
    pub fn entry_written(&self, bytes: u64) {
        self.entry();
        self.bytes.set(bytes);
        if self.bar.position().is_multiple_of(BYTES_EVERY) && !self.bar.is_hidden() {
            self.bar.set_message(format!(", {}", HumanBytes(bytes)));
        }
    }

    /// Entries walked so far.
    pub fn entries(&self) -> u64 {
        self.bar.position()
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> HumanBytes {
        HumanBytes(self.bytes.get())
    }

    /// Clears the spinner, for a caller that prints its own summary.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Clears the spinner and prints `NAME: SUMMARY in S s` on stderr.
    pub fn finish(&self, summary: impl Display) {
        self.clear();
        let secs = self.start.elapsed().as_secs_f64();
        eprintln!("{}: {summary} in {secs:.1} s", self.name);
    }
}
