//! A scratch folder per test and the `digestmap` command run inside it.
//!
//! Every command gets a scrubbed environment: no `RUST_LOG`, no Docker Hub credentials, and an
//! empty scratch `HOME` (with `DOCKER_CONFIG` unset), so a tester's own credentials are never read
//! or sent to the double; a test adds the ones it means.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch folder, removed when the test passes (kept for inspection when it fails).
pub struct Sandbox {
    /// The folder.
    pub dir: PathBuf,
}

impl Sandbox {
    /// A fresh, empty folder named after the test.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "digestmap-test-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Self { dir }
    }

    /// The default store of the sandbox.
    pub fn db(&self) -> PathBuf {
        self.dir.join("store.redb")
    }

    /// A file in the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The scratch home folder.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// `digestmap --db <store> ARGS...`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_on(&self.db(), args)
    }

    /// `crawl` of the double at `hub_url` as fast as tests want it (no pacing to speak of, short
    /// retry backoffs), then `extra` flags; not yet started.
    pub fn fast_crawl(&self, hub_url: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "crawl",
            "--hub-url",
            hub_url,
            "--rps",
            "500",
            "--retry-base-ms",
            "20",
        ];
        args.extend_from_slice(extra);
        self.command(&args)
    }

    /// The store's dataset (`finalize --out -`, which must succeed), its lines keyed by digest.
    pub fn finalized(&self) -> BTreeMap<String, serde_json::Value> {
        let out = self.command(&["finalize", "--out", "-"]).output().unwrap();
        assert_success(&out, "finalize");
        stdout(&out)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["digest"].as_str().unwrap().to_owned(), v)
            })
            .collect()
    }

    /// `digestmap --db <db> ARGS...`, not yet started.
    pub fn command_on(&self, db: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_digestmap"));
        cmd.arg("--db")
            .arg(db)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .env_remove("DOCKERHUB_USERNAME")
            .env_remove("DOCKERHUB_TOKEN")
            .env_remove("DOCKER_CONFIG")
            .env_remove("USERPROFILE")
            .env("HOME", self.home())
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `cmd` with `input` on its standard input (written from another thread, so a large input
/// cannot block on a full output pipe) and returns its output; the whole input must be taken.
pub fn output_with_input(cmd: &mut Command, input: impl Into<Vec<u8>>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run digestmap");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.into();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

/// A command's standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A command's standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the command exited 0, showing its stderr otherwise.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {:?}\nstderr:\n{}",
        output.status.code(),
        stderr(output)
    );
}

/// Asserts the command's exit code, showing its output otherwise.
pub fn assert_code(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: unexpected exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}
