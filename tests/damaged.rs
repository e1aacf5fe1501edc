//! Damaged and unusual stores through the real binary: seeded byte flips never panic, hang or
//! give silently wrong answers; `status` and `check` only read; a truncated store is named as
//! such; `crawl --resume` without a store creates nothing; a panic in the store writer or a
//! worker ends the crawl (exit 1) instead of hanging it, and `--resume` continues the store.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fake_hub::{FakeHub, FakeHubConfig};
use support::sandbox::Sandbox;

/// Longest any run here may take; a run still going then is a hang.
const DEADLINE: Duration = Duration::from_secs(120);
/// Seeds of the byte-flip runs.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=6;
/// Bytes flipped per seed.
const FLIPS: usize = 16;

/// How a run ended: `code` is `None` when the watchdog killed it.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion, killing it if it outlives [`DEADLINE`].
fn bounded(mut cmd: Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start digestmap");
    let pipe = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = p.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A small double: a few repositories, a store of about a megabyte.
fn small_hub() -> FakeHub {
    FakeHub::bind(FakeHubConfig {
        repos: 4,
        max_tags: 40,
        big_repo_tags: 150,
        ..FakeHubConfig::default()
    })
    .unwrap()
}

/// A sandbox whose store holds a finished crawl of `hub`.
fn crawled(name: &str, hub: &FakeHub) -> Sandbox {
    let sb = Sandbox::new(name);
    let run = bounded(sb.fast_crawl(&hub.url(), &[]));
    assert_eq!(run.code, Some(0), "crawl failed:\n{}", run.stderr);
    sb
}

/// Flips `FLIPS` bytes of `bytes` at positions drawn from `seed` (xorshift64*).
fn flip(bytes: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..FLIPS {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let at = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bytes.len() as u64) as usize;
        bytes[at] ^= 0xff;
    }
}

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Asserts a run on a damaged store ended, did not panic, and either failed naming the store or
/// printed exactly `expected`.
fn error_or_same(run: &Run, store: &Path, expected: &str, what: &str, seed: u64) {
    let code = run
        .code
        .unwrap_or_else(|| panic!("seed {seed}: {what} hung (killed after {DEADLINE:?})"));
    assert_ne!(code, 101, "seed {seed}: {what} panicked:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked"),
        "seed {seed}: {what} printed a panic:\n{}",
        run.stderr
    );
    if code == 0 {
        assert_eq!(
            run.stdout, expected,
            "seed {seed}: {what} exited 0 with output that differs from the undamaged store's"
        );
    } else {
        assert!(
            run.stderr.contains(&store.display().to_string()),
            "seed {seed}: {what} failed without naming the store:\n{}",
            run.stderr
        );
    }
}

#[test]
fn damaged_stores_error_naming_the_store_or_answer_as_undamaged() {
    let hub = small_hub();
    let sb = crawled("flips", &hub);
    let db = sb.db();
    let sound = std::fs::read(&db).unwrap();
    let first_line = hub.truth().into_keys().next().unwrap();
    let reads: [(&str, Vec<&str>); 3] = [
        ("finalize", vec!["finalize", "--out", "-"]),
        ("lookup", vec!["lookup", first_line.as_str()]),
        ("status", vec!["status"]),
    ];
    let expected: Vec<String> = reads
        .iter()
        .map(|(what, args)| {
            let run = bounded(sb.command(args));
            assert_eq!(
                run.code,
                Some(0),
                "{what} on the sound store:\n{}",
                run.stderr
            );
            run.stdout
        })
        .collect();

    let mut failures = 0;
    for seed in SEEDS {
        eprintln!("byte-flip seed {seed}");
        let mut damaged = sound.clone();
        flip(&mut damaged, seed);
        std::fs::write(&db, &damaged).unwrap();
        for ((what, args), expected) in reads.iter().zip(&expected) {
            let run = bounded(sb.command(args));
            error_or_same(&run, &db, expected, what, seed);
            failures += usize::from(run.code != Some(0));
        }
        // A refresh crawl either refuses the damaged store, leaving it as it was, or (damage in
        // unused pages only) refreshes a store that is sound afterwards.
        let run = bounded(sb.fast_crawl(&hub.url(), &[]));
        let code = run
            .code
            .unwrap_or_else(|| panic!("seed {seed}: the refresh crawl hung"));
        assert_ne!(code, 101, "seed {seed}: crawl panicked:\n{}", run.stderr);
        if code == 0 {
            let check = bounded(sb.command(&["check"]));
            assert_eq!(check.code, Some(0), "seed {seed}: {}", check.stdout);
        } else {
            assert!(
                run.stderr.contains(&db.display().to_string()),
                "seed {seed}: the crawl failed without naming the store:\n{}",
                run.stderr
            );
            assert!(
                std::fs::read(&db).unwrap() == damaged,
                "seed {seed}: the crawl wrote into the damaged store"
            );
        }
    }
    assert!(failures > 0, "no seed damaged anything the reads use");
}

#[test]
fn check_reports_sound_and_damaged_stores_and_changes_neither() {
    let hub = small_hub();
    let sb = crawled("check", &hub);
    let db = sb.db();
    let before = sha(&db);
    let run = bounded(sb.command(&["check"]));
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("passed"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("tags {}", hub.total_tags())),
        "records per table: {}",
        run.stdout
    );
    assert!(run.stdout.contains("problems: 0"), "{}", run.stdout);
    assert!(sha(&db) == before, "check changed a sound store's bytes");

    let mut damaged = before.clone();
    flip(&mut damaged, 7);
    std::fs::write(&db, &damaged).unwrap();
    let run = bounded(sb.command(&["check"]));
    assert_eq!(run.code, Some(5), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAILED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the store is damaged"),
        "{}",
        run.stdout
    );
    assert!(sha(&db) == damaged, "check changed a damaged store's bytes");
}

#[test]
fn a_truncated_store_is_named_truncated() {
    let hub = small_hub();
    let sb = crawled("truncated", &hub);
    let db = sb.db();
    let sound = std::fs::read(&db).unwrap();
    let digest = hub.truth().into_keys().next().unwrap();
    // Near the end (the last page) and deep into the data.
    for cut in [100, sound.len() / 3] {
        std::fs::write(&db, &sound[..sound.len() - cut]).unwrap();
        for args in [
            vec!["finalize", "--out", "-"],
            vec!["lookup", digest.as_str()],
        ] {
            let run = bounded(sb.command(&args));
            assert_eq!(run.code, Some(1), "{args:?} cut {cut}: {}", run.stderr);
            assert!(
                run.stderr.contains("truncated") && run.stderr.contains(&db.display().to_string()),
                "{args:?} cut {cut}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn status_only_reads() {
    let hub = small_hub();
    let sb = crawled("status", &hub);
    let db = sb.db();
    let before = sha(&db);
    let run = bounded(sb.command(&["status"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("finished"), "{}", run.stdout);
    assert!(sha(&db) == before, "status changed the store's bytes");

    // An empty file stays empty.
    let empty = sb.path("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    let run = bounded(sb.command_on(&empty, &["status"]));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("empty.redb"), "{}", run.stderr);
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    // A store nobody may write to. Root ignores file modes, so as root the store's folder is
    // bind-mounted read-only in a private mount namespace, and the script proves it bites.
    let ro = sb.path("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::copy(&db, ro.join("store.redb")).unwrap();
    let ro_db = ro.join("store.redb");
    // SAFETY: geteuid has no preconditions.
    let run = if unsafe { libc::geteuid() } == 0 {
        let script = format!(
            "set -e; mount --bind {d} {d}; mount -o remount,ro,bind {d} {d}; \
             if touch {d}/probe 2>/dev/null; then echo 'the mount is writable' >&2; exit 99; fi; \
             exec \"$0\" --db {d}/store.redb status",
            d = ro.display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "sh", "-c", &script])
            .arg(env!("CARGO_BIN_EXE_digestmap"))
            .current_dir(&sb.dir)
            .env("HOME", sb.home());
        bounded(cmd)
    } else {
        let mut perms = std::fs::metadata(&ro_db).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
        std::fs::set_permissions(&ro_db, perms).unwrap();
        bounded(sb.command_on(&ro_db, &["status"]))
    };
    assert_eq!(
        run.code,
        Some(0),
        "status on a read-only store: {}",
        run.stderr
    );
    assert!(run.stdout.contains("finished"), "{}", run.stdout);
}

#[test]
fn status_beside_a_starting_crawl_never_makes_it_fail() {
    let hub = small_hub();
    let sb = crawled("status-race", &hub);
    for round in 0..8 {
        let crawl = sb.fast_crawl(&hub.url(), &["--full"]);
        let status = sb.command(&["status"]);
        let crawl = std::thread::spawn(move || bounded(crawl));
        let status = bounded(status);
        let crawl = crawl.join().unwrap();
        assert_eq!(
            crawl.code,
            Some(0),
            "round {round}: a crawl started with status failed:\n{}",
            crawl.stderr
        );
        assert_eq!(status.code, Some(0), "round {round}: {}", status.stderr);
    }
}

#[test]
fn resume_without_a_store_creates_nothing() {
    let hub = small_hub();
    let sb = Sandbox::new("resume-none");
    let run = bounded(sb.fast_crawl(&hub.url(), &["--resume"]));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no store"), "{}", run.stderr);
    assert!(!sb.db().exists(), "crawl --resume created a store");
}

#[test]
fn a_panic_in_the_writer_or_a_worker_ends_the_crawl_and_resume_continues() {
    let hub = small_hub();
    for site in ["writer", "worker"] {
        let sb = Sandbox::new(&format!("panic-{site}"));
        let mut cmd = sb.fast_crawl(&hub.url(), &["--workers", "4"]);
        cmd.env("DIGESTMAP_TEST_PANIC", site);
        let run = bounded(cmd);
        assert_eq!(
            run.code,
            Some(1),
            "{site} panic: the crawl did not end with exit 1:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("internal error") && run.stderr.contains("--resume"),
            "{site}: {}",
            run.stderr
        );
        let resumed = bounded(sb.fast_crawl(&hub.url(), &["--resume"]));
        assert_eq!(resumed.code, Some(0), "{site}: {}", resumed.stderr);
        let dataset = bounded(sb.command(&["finalize", "--out", "-"]));
        assert_eq!(dataset.code, Some(0), "{site}: {}", dataset.stderr);
        assert_eq!(
            dataset.stdout.lines().count(),
            hub.truth().len(),
            "{site}: the resumed crawl is incomplete"
        );
    }
}
