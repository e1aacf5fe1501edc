//! End-to-end tests of where the dataset and other output go: `finalize --out` onto the store, a
//! FIFO, a symbolic link, a directory, a character device; temporary files left by a killed
//! finalize; a failed write; a closed standard output; and `generate.sh` with a `DB` of the user's.
//! The real binary against the project's Docker Hub double (tests/support/fake_hub), never the
//! internet.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use support::fake_hub::{FakeHub, FakeHubConfig, Served};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr, stdout};

/// A sandbox holding a store with a finished crawl of a small double.
fn crawled(name: &str) -> Sandbox {
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 3,
        max_tags: 40,
        big_repo_tags: 60,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new(name);
    let output = sb.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_success(&output, "crawl");
    sb
}

fn run(sb: &Sandbox, args: &[&str]) -> Output {
    sb.command(args).output().expect("run digestmap")
}

/// `finalize --out PATH`, run to its end.
fn finalize(sb: &Sandbox, out: &Path) -> Output {
    run(sb, &["finalize", "--out", out.to_str().unwrap()])
}

/// The dataset written to a fresh regular file, to compare other outputs with.
fn reference(sb: &Sandbox) -> Vec<u8> {
    let path = sb.path("reference.ndjson");
    assert_success(&finalize(sb, &path), "finalize to a file");
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert!(bytes.len() > 1000, "a dataset worth comparing");
    bytes
}

/// The entries of `dir` whose names mark them as finalize's temporary files.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect()
}

fn assert_no_error_noise(output: &Output, what: &str) {
    let err = stderr(output);
    for noise in ["panicked", "Broken pipe", "error"] {
        assert!(!err.contains(noise), "{what}: {noise:?} on stderr:\n{err}");
    }
}

#[test]
fn finalize_refuses_the_store_under_every_spelling() {
    let sb = crawled("onto-store");
    let db = sb.db();
    let before = fs::read(&db).unwrap();
    symlink("store.redb", sb.path("link.redb")).unwrap();
    fs::hard_link(&db, sb.path("hard.redb")).unwrap();
    fs::create_dir(sb.path("sub")).unwrap();
    for spelling in [
        db.to_str().unwrap().to_owned(),
        "store.redb".to_owned(),
        "./sub/../store.redb".to_owned(),
        sb.path("link.redb").to_str().unwrap().to_owned(),
        "hard.redb".to_owned(),
    ] {
        let output = run(&sb, &["finalize", "--out", &spelling]);
        assert_code(&output, 2, &format!("finalize --out {spelling}"));
        let err = stderr(&output);
        assert!(
            err.contains(&format!(
                "refusing to write the dataset to {spelling}: it is the store being read"
            )),
            "{err}"
        );
        assert!(fs::read(&db).unwrap() == before, "the store is untouched");
        assert!(temp_files(&sb.dir).is_empty());
    }
    assert!(
        fs::symlink_metadata(sb.path("link.redb"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The store still answers.
    assert_success(&run(&sb, &["status"]), "status after the refusals");
}

#[test]
fn finalize_writes_into_a_fifo() {
    let sb = crawled("fifo");
    let want = reference(&sb);
    let fifo = sb.path("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success(), "mkfifo");
    let (tx, rx) = mpsc::channel();
    let reader_path = fifo.clone();
    // The reader blocks in open until finalize opens the FIFO for writing.
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let result = fs::File::open(&reader_path).and_then(|mut f| f.read_to_end(&mut bytes));
        let _ = tx.send(result.map(|_| bytes));
    });
    let output = finalize(&sb, &fifo);
    assert_success(&output, "finalize into a FIFO");
    assert!(
        fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO is still a FIFO"
    );
    let got = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the reader got the dataset")
        .unwrap();
    assert!(got == want, "the reader got the whole dataset");
    assert!(temp_files(&sb.dir).is_empty());
}

#[test]
fn finalize_follows_a_symlink_and_replaces_its_target() {
    let sb = crawled("symlink");
    let want = reference(&sb);
    let data = sb.path("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("real.ndjson"), "old\n").unwrap();
    // A relative link to a file in another folder, and a chain of two links.
    symlink("data/real.ndjson", sb.path("out.ndjson")).unwrap();
    symlink("out.ndjson", sb.path("chain.ndjson")).unwrap();
    for link in ["out.ndjson", "chain.ndjson"] {
        fs::write(data.join("real.ndjson"), "old\n").unwrap();
        let output = finalize(&sb, &sb.path(link));
        assert_success(&output, &format!("finalize --out {link}"));
        assert!(
            fs::symlink_metadata(sb.path(link))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{link} is still a link"
        );
        assert!(
            fs::read(data.join("real.ndjson")).unwrap() == want,
            "{link}"
        );
        assert!(temp_files(&sb.dir).is_empty());
        assert!(temp_files(&data).is_empty());
    }
    // A dangling link: its target is created.
    symlink("data/new.ndjson", sb.path("dangling.ndjson")).unwrap();
    assert_success(
        &finalize(&sb, &sb.path("dangling.ndjson")),
        "finalize through a dangling link",
    );
    assert!(fs::read(data.join("new.ndjson")).unwrap() == want);
    assert!(
        fs::symlink_metadata(sb.path("dangling.ndjson"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn finalize_refuses_a_directory() {
    let sb = crawled("directory");
    let dir = sb.path("out.d");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("keep"), "kept").unwrap();
    let output = finalize(&sb, &dir);
    assert_code(&output, 2, "finalize onto a directory");
    let err = stderr(&output);
    assert!(err.contains("it is a directory"), "{err}");
    assert!(err.contains(dir.to_str().unwrap()), "names the path: {err}");
    assert_eq!(fs::read_to_string(dir.join("keep")).unwrap(), "kept");
    assert!(temp_files(&sb.dir).is_empty());
}

#[test]
fn finalize_writes_into_a_character_device() {
    let sb = crawled("chardev");
    let null = sb.path("null");
    // The same device as /dev/null, made in the sandbox: /dev/null itself is never touched.
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made || fs::OpenOptions::new().write(true).open(&null).is_err() {
        eprintln!(
            "SKIPPED: making a usable character device needs root, which this run does not have"
        );
        return;
    }
    let output = finalize(&sb, &null);
    assert_success(&output, "finalize into a character device");
    assert!(
        fs::symlink_metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device(),
        "the device is still a device"
    );
    assert!(temp_files(&sb.dir).is_empty());
}

/// A pid that no process has: a child that has been waited for.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn finalize_removes_only_its_own_stale_temp_files() {
    let sb = crawled("stale");
    let want = reference(&sb);
    let dead = dead_pid();
    let alive = std::process::id();
    let hour_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let write = |name: &str| {
        fs::write(sb.path(name), "half a dataset").unwrap();
        sb.path(name)
    };
    let removed = [
        write(&format!(".data.ndjson.digestmap-tmp-{dead}")),
        write(".data.ndjson.digestmap-tmp-1"),
    ];
    // A live process's temp file is kept, unless it has not been written for long (a reused pid).
    fs::File::options()
        .write(true)
        .open(&removed[1])
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let kept = [
        write(&format!(".data.ndjson.digestmap-tmp-{alive}")),
        write(&format!(".other.ndjson.digestmap-tmp-{dead}")),
        write(&format!(".data.ndjson.tmp-{dead}")),
        write(&format!("data.ndjson.digestmap-tmp-{dead}")),
    ];
    let output = finalize(&sb, &sb.path("data.ndjson"));
    assert_success(&output, "finalize");
    let err = stderr(&output);
    assert!(err.contains("removed 2 temporary files"), "{err}");
    for path in &removed {
        assert!(!path.exists(), "{} is removed", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} is kept", path.display());
    }
    assert!(fs::read(sb.path("data.ndjson")).unwrap() == want);
}

/// A small tmpfs at `dir` (needs root), unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_failed_write_leaves_no_temp_file_and_the_old_dataset() {
    let sb = crawled("failed-write");
    let folder = sb.path("small");
    // As root, a folder's mode does not stop a write: a disk too small for the dataset does.
    let disk = SmallDisk::mount(&folder, "8k");
    if disk.is_none() {
        let mut perms = fs::metadata(&folder).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
        fs::set_permissions(&folder, perms).unwrap();
    } else {
        fs::write(folder.join("data.ndjson"), "old\n").unwrap();
    }
    let out = folder.join("data.ndjson");
    let output = finalize(&sb, &out);
    assert_code(&output, 1, "finalize into a folder it cannot write");
    let err = stderr(&output);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(
        errors[0].contains(&format!("cannot write the dataset to {}", out.display())),
        "{err}"
    );
    let names: Vec<String> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if disk.is_some() {
        assert!(errors[0].contains("No space left on device"), "{err}");
        assert_eq!(names, ["data.ndjson"], "no temporary file is left");
        assert_eq!(fs::read_to_string(&out).unwrap(), "old\n");
    } else {
        assert!(names.is_empty(), "nothing is left: {names:?}");
    }
}

/// Runs digestmap with a standard output whose reader is already gone.
fn run_into_closed_pipe(sb: &Sandbox, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    sb.command(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let sb = crawled("closed-stdout");
    let digest = {
        let data = reference(&sb);
        let first = String::from_utf8(data).unwrap();
        let line: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        line["digest"].as_str().unwrap().to_owned()
    };
    for args in [
        vec!["status"],
        vec!["lookup", digest.as_str()],
        vec!["lookup", "--json", digest.as_str()],
        vec!["finalize", "--out", "-"],
    ] {
        let what = args.join(" ");
        let output = run_into_closed_pipe(&sb, &args);
        assert_code(&output, 141, &format!("{what} into a closed pipe"));
        assert_no_error_noise(&output, &what);
    }
    // The same through a shell pipeline under pipefail, as scripts write it.
    let script = format!(
        "set -o pipefail; '{}' --db '{}' finalize --out - | head -c 10 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_digestmap"),
        sb.db().display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(code == "141" || code == "0", "exit code {code}");
    assert_no_error_noise(&output, "finalize --out - | head");
}

/// `generate.sh --offline` with `DB` set, using the binary under test instead of building one.
fn generate_offline(sb: &Sandbox, db: &Path) -> Output {
    generate_offline_command(sb, db).output().unwrap()
}

fn generate_offline_command(sb: &Sandbox, db: &Path) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataset-generation/generate.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("--offline")
        .current_dir(&sb.dir)
        .env("DB", db)
        .env("OUT", sb.path("out.ndjson"))
        .env("DIGESTMAP_BIN", env!("CARGO_BIN_EXE_digestmap"))
        .env("HOME", sb.home())
        .stdin(Stdio::null());
    command
}

#[test]
fn generate_offline_crawls_enriches_and_finalizes_against_the_double() {
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 3,
        max_tags: 40,
        big_repo_tags: 60,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new("generate-enrich");
    let db = sb.path("offline.redb");
    let output = generate_offline_command(&sb, &db)
        .env("FAKE_HUB_URL", hub.url())
        .output()
        .unwrap();
    assert_success(&output, "generate.sh --offline");
    let text = fs::read_to_string(sb.path("out.ndjson")).unwrap();
    let (mut configs, mut manifests) = (0, 0);
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let digest = line["digest"].as_str().unwrap();
        match (line["kind"].as_str().unwrap(), hub.served(digest)) {
            ("config", Some(Served::Config { diff_ids })) => {
                assert_eq!(line["diff_ids"], serde_json::json!(diff_ids), "{line}");
                configs += 1;
            }
            ("manifest", Some(Served::Manifest { image_id })) => {
                assert_eq!(line["image_id"].as_str(), image_id.as_deref(), "{line}");
                manifests += 1;
            }
            ("index", Some(Served::Index)) => {}
            (_, served) => panic!("{line}: served as {served:?}"),
        }
    }
    assert!(
        configs > 20 && manifests > 20,
        "{configs} config lines, {manifests} manifests\n{}",
        stderr(&output)
    );
    // Every request reached the double: the crawl's, then enrich's manifests and blobs.
    let paths: Vec<String> = hub
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(
        paths.iter().any(|p| p.contains("/manifests/sha256:")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("/blobs/sha256:")),
        "{paths:?}"
    );
}

#[test]
fn generate_offline_writes_the_dataset_when_enrich_meets_the_pull_limit() {
    // Every manifest GET is refused with a 429, as Docker Hub does once the pull budget is spent:
    // with its `ratelimit-*` headers, which declare a pull budget (a 429 without them is a
    // request limit, paused on and tried again, not a budget's window).
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 3,
        max_tags: 40,
        big_repo_tags: 60,
        override_paths: vec![("/manifests/".to_owned(), 429, b"{}".to_vec())],
        header_overrides: vec![
            ("ratelimit-limit", "100;w=21600".to_owned()),
            ("ratelimit-remaining", "0;w=21600".to_owned()),
        ],
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new("generate-budget");
    let output = generate_offline_command(&sb, &sb.path("offline.redb"))
        .env("FAKE_HUB_URL", hub.url())
        .output()
        .unwrap();
    assert_code(&output, 6, "generate.sh --offline at the pull limit");
    let err = stderr(&output);
    assert!(
        err.contains("pull budget") && err.contains("run this script again later"),
        "{err}"
    );
    let text = fs::read_to_string(sb.path("out.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        hub.truth().len(),
        "the crawl's dataset is written whole"
    );
    assert!(
        lines.iter().all(|l| l.get("image_id").is_none()),
        "no manifest was read"
    );
    let manifest_gets = hub
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 1, "one 429 stops the manifest GETs");
}

#[test]
fn generate_offline_leaves_a_store_of_the_user_as_it_is() {
    // A file that is no store: the script used to `rm -f` it and crawl into its place.
    let sb = Sandbox::new("generate");
    let precious = sb.path("precious.redb");
    fs::write(&precious, "the user's data").unwrap();
    let output = generate_offline(&sb, &precious);
    assert_code(
        &output,
        2,
        "generate.sh --offline onto a file that is no store",
    );
    let err = stderr(&output);
    assert!(err.contains(precious.to_str().unwrap()), "names DB: {err}");
    assert!(err.contains("not a digestmap store"), "{err}");
    assert_eq!(
        fs::read_to_string(&precious).unwrap(),
        "the user's data",
        "DB is untouched"
    );

    // An unfinished crawl of a double that is gone cannot be resumed offline: refused, untouched.
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 3,
        max_tags: 40,
        big_repo_tags: 60,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let broken = format!("/repositories/{}/tags?page=1", hub.repo_names()[0]);
    hub.update(|c| c.broken_paths = vec![broken]);
    let output = sb.fast_crawl(&hub.url(), &[]).output().unwrap();
    assert_code(&output, 3, "a crawl with a failed job");
    drop(hub);
    // What the store holds, not its bytes: `status`, which the script asks, commits today.
    let before = reference(&sb);
    let output = generate_offline(&sb, &sb.db());
    assert_code(&output, 2, "generate.sh --offline onto an unfinished store");
    let err = stderr(&output);
    assert!(err.contains("unfinished crawl"), "{err}");
    assert!(reference(&sb) == before, "the store holds the same crawl");
    let status = run(&sb, &["status"]);
    assert!(
        stdout(&status).contains("unfinished"),
        "{}",
        stdout(&status)
    );
}
