//! Everything the binary shows a person: logs through tracing, the progress display, messages.
//! Human output goes to stderr; only data (`finalize --out -`, `status`) goes to stdout.
//!
//! Messages and log fields carry text from Docker Hub (its error messages, names it sent) and
//! from dataset files, so every message and every log field goes through
//! [`digestmap::text::printable_lines`]: no control character reaches the terminal raw. (The
//! colours of the log's levels are written by the log formatter itself, outside the fields.)
//!
//! Each record a crawl skips is logged with the target `digestmap::skipped::<kind>` (see
//! `digestmap::hub::tag`). A first run meets dozens of them before anything useful, so by
//! default only the first [`SKIP_EXAMPLES`] of each kind are shown and the rest are counted, for
//! one line at the end of the crawl ([`Ui::unshown_skips`]); `-v` (or `RUST_LOG`) shows each.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::Metadata;
use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{self, FieldFn, Writer};

use digestmap::crawl::Progress;
use digestmap::enrich::{EnrichProgress, ProgressCounts};
use digestmap::text::printable_lines;

/// The binary's output channel.
pub struct Ui {
    quiet: bool,
    bar: Arc<Mutex<Option<ProgressBar>>>,
    skips: SkipLines,
}

/// Log lines shown of each kind of skipped record, by default, before the rest are only counted.
pub const SKIP_EXAMPLES: u64 = 3;

/// The log target prefix of skipped records; the rest of the target names the kind.
const SKIP_TARGET: &str = "digestmap::skipped::";

/// How many log lines of each kind of skipped record were written or held back.
#[derive(Clone)]
struct SkipLines {
    /// Most lines shown of a kind; `None` shows them all.
    limit: Option<u64>,
    /// Lines logged so far, by kind (the target's last part).
    seen: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl SkipLines {
    /// Counts one more line of `kind`, and says whether it is shown.
    fn admit(&self, kind: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(kind.to_owned()).or_default();
        *n += 1;
        self.limit.is_none_or(|limit| *n <= limit)
    }

    /// The kinds with lines held back, and how many, in the summary's words.
    fn held_back(&self) -> Vec<(String, u64)> {
        let Some(limit) = self.limit else {
            return Vec::new();
        };
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|(_, n)| **n > limit)
            .map(|(kind, n)| (kind.replace('_', " "), n - limit))
            .collect()
    }
}

/// Writes log lines above the progress bar instead of through it, and holds back the log lines
/// of skipped records past [`SKIP_EXAMPLES`] of a kind.
#[derive(Clone)]
struct LogWriter {
    bar: Arc<Mutex<Option<ProgressBar>>>,
    skips: SkipLines,
    /// This line is held back: it is counted, not written.
    held: bool,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.held {
            return Ok(buf.len());
        }
        let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }

    /// Called once for each event written, so it is where skipped records are counted.
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let mut writer = self.clone();
        if let Some(kind) = meta.target().strip_prefix(SKIP_TARGET) {
            writer.held = !self.skips.admit(kind);
        }
        writer
    }
}

impl Ui {
    /// Sets up logging: `RUST_LOG` wins; else `-q`, `-v`, `-vv` choose.
    pub fn new(verbose: u8, quiet: bool) -> Self {
        let bar = Arc::new(Mutex::new(None));
        let default = match (quiet, verbose) {
            (true, _) => "error",
            // The retry middleware logs every retry as a warning; our own summary counts them.
            (false, 0) => "warn,digestmap=info,reqwest_retry=error",
            (false, 1) => "info,digestmap=debug",
            _ => "debug,digestmap=trace",
        };
        let (filter, chosen) = match EnvFilter::try_from_default_env() {
            Ok(filter) => (filter, true),
            Err(_) => (EnvFilter::new(default), false),
        };
        let skips = SkipLines {
            limit: (verbose == 0 && !chosen).then_some(SKIP_EXAMPLES),
            seen: Arc::default(),
        };
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .fmt_fields(fields().delimited(" "))
            .with_writer(LogWriter {
                bar: bar.clone(),
                skips: skips.clone(),
                held: false,
            })
            .with_target(verbose > 0)
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .init();
        Self { quiet, bar, skips }
    }

    /// The skipped records logged but not shown, by kind (`invalid digests`) and count.
    pub fn unshown_skips(&self) -> Vec<(String, u64)> {
        self.skips.held_back()
    }

    /// A plain message on stderr, unless `-q`.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            self.line(message);
        }
    }

    /// A warning on stderr, unless `-q`.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            self.line(&format!("warning: {message}"));
        }
    }

    /// An error on stderr, always.
    pub fn error(&self, message: &str) {
        self.line(&format!("error: {message}"));
    }

    fn line(&self, message: &str) {
        let mut writer = LogWriter {
            bar: self.bar.clone(),
            skips: self.skips.clone(),
            held: false,
        };
        let _ = writeln!(writer, "{}", printable_lines(message));
    }

    /// Starts the live crawl display, when stderr is a terminal and not `-q`. Returns a guard that
    /// removes it.
    pub fn start_progress(&self, progress: Arc<Progress>) -> Option<ProgressGuard> {
        if self.quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} repositories  {msg}  ETA {eta}",
            )
            .expect("the template is valid"),
        );
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        let ticker = {
            let bar = bar.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                while !bar.is_finished() {
                    use std::sync::atomic::Ordering::Relaxed;
                    bar.set_length(progress.repos_total.load(Relaxed));
                    bar.set_position(progress.repos_done.load(Relaxed));
                    let requests = progress.requests.load(Relaxed);
                    let rate = requests as f64 / started.elapsed().as_secs_f64().max(0.001);
                    let failed = progress.failed.load(Relaxed);
                    bar.set_message(format!(
                        "pages {}  tags {}  {rate:.1} req/s{}",
                        progress.pages.load(Relaxed),
                        progress.tags.load(Relaxed),
                        if failed > 0 {
                            format!("  failed {failed}")
                        } else {
                            String::new()
                        }
                    ));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Some(ProgressGuard {
            bar,
            slot: self.bar.clone(),
            ticker: Some(ticker),
        })
    }
}

impl Ui {
    /// Starts the live `enrich` display, when stderr is a terminal and not `-q`: jobs done of
    /// planned as a bar, and [`enrich_line`]. Returns a guard that removes it.
    pub fn start_enrich_progress(&self, progress: Arc<EnrichProgress>) -> Option<ProgressGuard> {
        if self.quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                .expect("the template is valid"),
        );
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        let ticker = {
            let bar = bar.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                while !bar.is_finished() {
                    let counts = progress.snapshot();
                    bar.set_length(counts.manifests_planned + counts.configs_planned);
                    bar.set_position(counts.manifests_done + counts.configs_done);
                    bar.set_message(enrich_line(&counts, started.elapsed()));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Some(ProgressGuard {
            bar,
            slot: self.bar.clone(),
            ticker: Some(ticker),
        })
    }
}

/// `enrich`'s progress line after `elapsed`: manifests and configs done of planned, pulls spent
/// and the budget left, jobs per second, and the time left at that rate (or, when the pull budget
/// cannot cover the manifests left, that the run will stop at it: `enrich` then ends with exit 6).
pub fn enrich_line(c: &ProgressCounts, elapsed: Duration) -> String {
    let done = c.manifests_done + c.configs_done;
    let planned = c.manifests_planned + c.configs_planned;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let budget = match c.budget_left {
        Some(left) => format!("{left} left"),
        None => "budget not known yet".to_owned(),
    };
    let manifests_left = c.manifests_planned.saturating_sub(c.manifests_done);
    let eta = match c.budget_left {
        Some(left) if left < manifests_left => {
            format!("stops at the pull budget: {left} of the {manifests_left} manifests left fit")
        }
        // Nothing planned yet: the run is still reading the store.
        _ if planned == 0 || (rate <= 0.0 && done < planned) => "ETA ?".to_owned(),
        _ if done >= planned => "ETA 0s".to_owned(),
        _ => format!("ETA {}", duration_text((planned - done) as f64 / rate)),
    };
    format!(
        "manifests {}/{}  configs {}/{}  pulls {} ({budget})  {rate:.1} jobs/s  {eta}",
        c.manifests_done, c.manifests_planned, c.configs_done, c.configs_planned, c.pulls
    )
}

/// `42s`, `3m05s`, `2h07m`: whole seconds, rounded up.
fn duration_text(secs: f64) -> String {
    let secs = secs.ceil().min(u64::MAX as f64) as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// How a log event's fields are written: the message as it is, the others as `name=value`, each
/// with its control characters escaped. (tracing-subscriber's own formatter escapes ESC, BEL and
/// a few others, but not CR, ENQ or the bidirectional controls.)
fn fields() -> FieldFn<impl Fn(&mut Writer<'_>, &Field, &dyn fmt::Debug) -> fmt::Result + Clone> {
    format::debug_fn(
        |writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let text = format!("{value:?}");
            if field.name() == "message" {
                write!(writer, "{}", printable_lines(&text))
            } else {
                write!(writer, "{}={}", field.name(), printable_lines(&text))
            }
        },
    )
}

/// Removes the progress display when dropped.
pub struct ProgressGuard {
    bar: ProgressBar,
    slot: Arc<Mutex<Option<ProgressBar>>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enrich_line_counts_rates_and_estimates() {
        let counts = |md, mp, cd, cp, pulls, budget_left| ProgressCounts {
            manifests_done: md,
            manifests_planned: mp,
            configs_done: cd,
            configs_planned: cp,
            pulls,
            budget_left,
        };
        let secs = Duration::from_secs;
        let table = [
            // Before planning: nothing to estimate.
            (
                counts(0, 0, 0, 0, 0, None),
                secs(1),
                "manifests 0/0  configs 0/0  pulls 0 (budget not known yet)  0.0 jobs/s  ETA ?",
            ),
            // Nothing done yet: no rate, no estimate; the budget not told yet.
            (
                counts(0, 10, 0, 0, 0, None),
                secs(0),
                "manifests 0/10  configs 0/0  pulls 0 (budget not known yet)  0.0 jobs/s  ETA ?",
            ),
            // 4 of 20 jobs in 8 s: 0.5 jobs/s, 16 left: 32 s.
            (
                counts(3, 10, 1, 10, 3, Some(97)),
                secs(8),
                "manifests 3/10  configs 1/10  pulls 3 (97 left)  0.5 jobs/s  ETA 32s",
            ),
            // Minutes and hours.
            (
                counts(10, 400, 10, 400, 10, Some(5000)),
                secs(20),
                "manifests 10/400  configs 10/400  pulls 10 (5000 left)  1.0 jobs/s  ETA 13m00s",
            ),
            (
                counts(1, 4000, 1, 4000, 1, None),
                secs(2),
                "manifests 1/4000  configs 1/4000  pulls 1 (budget not known yet)  1.0 jobs/s  ETA 2h13m",
            ),
            // The budget cannot cover the manifests left: the run stops there.
            (
                counts(90, 180, 90, 180, 100, Some(0)),
                secs(60),
                "manifests 90/180  configs 90/180  pulls 100 (0 left)  3.0 jobs/s  stops at the pull budget: 0 of the 90 manifests left fit",
            ),
            // All done.
            (
                counts(5, 5, 5, 5, 5, Some(95)),
                secs(2),
                "manifests 5/5  configs 5/5  pulls 5 (95 left)  5.0 jobs/s  ETA 0s",
            ),
        ];
        for (c, elapsed, want) in table {
            assert_eq!(enrich_line(&c, elapsed), want, "{c:?}");
        }
        assert_eq!(duration_text(59.2), "1m00s");
        assert_eq!(duration_text(3599.0), "59m59s");
        assert_eq!(duration_text(3600.0), "1h00m");
    }
}
