//! End-to-end tests of `digestmap lookup` and of the dataset's `current` key: the real binary
//! against the project's Docker Hub double (tests/support/fake_hub), never the internet.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::fake_hub::{FakeHub, FakeHubConfig};
use support::measured::{Measured, run_measured};
use support::sandbox::{Sandbox, assert_code, assert_success, stderr, stdout};

impl Sandbox {
    /// `digestmap --db <store> ARGS...`, run to its end.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run digestmap")
    }

    /// Crawls `hub` with fast pacing to the end.
    fn crawl(&self, hub: &FakeHub) {
        let output = self.fast_crawl(&hub.url(), &[]).output().unwrap();
        assert_success(&output, "crawl");
    }

    fn finalize(&self, name: &str, extra: &[&str]) -> PathBuf {
        let out = self.path(name);
        let mut args = vec!["finalize", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        assert_success(&self.run(&args), "finalize");
        out
    }

    /// `lookup ARGS...`, from the store, or from `dataset` when given.
    fn lookup(&self, dataset: Option<&Path>, args: &[&str]) -> Output {
        let mut all = vec!["lookup"];
        if let Some(path) = dataset {
            all.extend(["--dataset", path.to_str().unwrap()]);
        }
        all.extend_from_slice(args);
        self.run(&all)
    }
}

fn small() -> FakeHubConfig {
    FakeHubConfig {
        repos: 5,
        max_tags: 120,
        big_repo_tags: 350,
        ..FakeHubConfig::default()
    }
}

/// The dataset file keyed by digest, checking on the way that each line's `current` is sorted
/// and a subset of its `tags`.
fn dataset(path: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let tags = strings(&value["tags"]);
        let current = strings(&value["current"]);
        assert!(current.windows(2).all(|w| w[0] < w[1]), "{line}");
        assert!(current.iter().all(|c| tags.contains(c)), "{line}");
        // `current` sits between `tags` and `indexes`.
        let (t, c) = (
            line.find("\"tags\"").unwrap(),
            line.find("\"current\"").unwrap(),
        );
        assert!(
            t < c && line.find("\"indexes\"").is_none_or(|i| c < i),
            "{line}"
        );
        out.insert(value["digest"].as_str().unwrap().to_owned(), value);
    }
    out
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// (label, repo:tag) of every tag line in a human answer.
fn tag_lines(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter(|l| l.starts_with("    ") && !l.trim_start().starts_with("sha256:"))
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap().to_owned(),
                words.next().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A digest of the truth whose 12-character prefix no other digest shares.
fn pick(truth: &BTreeMap<String, Value>, want: impl Fn(&Value) -> bool) -> String {
    truth
        .iter()
        .filter(|(_, v)| want(v))
        .map(|(d, _)| d.clone())
        .find(|d| {
            let prefix = &d[..7 + 12];
            truth.keys().filter(|k| k.starts_with(prefix)).count() == 1
        })
        .expect("a digest to look up")
}

#[test]
fn lookup_answers_from_the_store_and_the_dataset() {
    let hub = FakeHub::bind(small()).unwrap();
    let sb = Sandbox::new("answers");
    sb.crawl(&hub);
    let file = sb.finalize("d.ndjson", &[]);
    let lines: BTreeMap<String, String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| (l[11..11 + 71].to_owned(), l.to_owned()))
        .collect();
    let truth = hub.truth();
    let index = pick(&truth, |v| {
        v["kind"] == "index" && !strings(&v["tags"]).is_empty()
    });
    let manifest = pick(&truth, |v| {
        v["kind"] == "manifest" && !strings(&v["indexes"]).is_empty()
    });

    for source in [None, Some(file.as_path())] {
        let from = if source.is_some() { "dataset" } else { "store" };
        for digest in [&index, &manifest] {
            let want = &truth[digest.as_str()];
            let tags = strings(&want["tags"]);
            let platform = want["platform"].as_str().unwrap_or("none");

            // Human answer by the whole digest: every tag is current after a single crawl.
            let output = sb.lookup(source, &[digest]);
            assert_success(&output, &format!("lookup {digest} from the {from}"));
            let text = stdout(&output);
            assert!(text.starts_with(&format!("{digest}\n")), "{text}");
            assert!(
                text.contains(&format!(
                    "\n  kind        {}\n",
                    want["kind"].as_str().unwrap()
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!("\n  platform    {platform}\n")),
                "{text}"
            );
            let want_lines: BTreeSet<(String, String)> = tags
                .iter()
                .map(|t| ("current".to_owned(), t.clone()))
                .chain(
                    want.get("indexes")
                        .map(strings)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|i| (i, String::new())),
                )
                .collect();
            let got_lines: BTreeSet<(String, String)> = tag_lines(&text)
                .into_iter()
                .chain(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("    sha256:"))
                        .map(|i| (format!("sha256:{i}"), String::new())),
                )
                .collect();
            assert_eq!(got_lines, want_lines, "{from}: {text}");
            if source.is_none() {
                assert!(text.contains("first seen 20"), "per-tag times: {text}");
            }

            // JSON answer, by the whole digest, the hex alone and a 12-character prefix.
            let bare = &digest[7..];
            let prefix = &digest[7..7 + 12];
            let mut answers = Vec::new();
            for query in [digest.as_str(), bare, prefix] {
                let output = sb.lookup(source, &["--json", query]);
                assert_success(&output, &format!("lookup --json {query} from the {from}"));
                answers.push(stdout(&output));
            }
            assert_eq!(answers[0], answers[1], "{from}: sha256: or not");
            assert_eq!(answers[0], answers[2], "{from}: prefix");
            assert_eq!(answers[0].lines().count(), 1, "{}", answers[0]);
            let json: Value = serde_json::from_str(&answers[0]).unwrap();
            for key in ["digest", "kind", "platform", "tags", "indexes"] {
                assert_eq!(json.get(key), want.get(key), "{from}: {key} of {digest}");
            }
            assert_eq!(json["current"], want["tags"], "{from}: current");
            match source {
                // From a dataset, the answer is its line, byte for byte.
                Some(_) => assert_eq!(answers[0].trim_end(), lines[digest.as_str()]),
                None => {
                    let seen = json["tag_seen"].as_object().unwrap();
                    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), tags);
                    // The store's answer is the dataset line plus `tag_seen`.
                    let line = &lines[digest.as_str()];
                    assert!(
                        answers[0].starts_with(&line[..line.len() - 1]),
                        "{}\n{line}",
                        answers[0]
                    );
                }
            }
        }

        // Several queries: one answer each, in order.
        let output = sb.lookup(source, &["--json", &manifest, &index[7..7 + 14]]);
        assert_success(&output, "lookup of two digests");
        let digests: Vec<String> = stdout(&output)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["digest"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(digests, [manifest.clone(), index.clone()]);
    }
}

#[test]
fn lookup_refuses_bad_queries_and_reports_unknown_digests() {
    let hub = FakeHub::bind(FakeHubConfig {
        repos: 2,
        max_tags: 20,
        big_repo_tags: 30,
        ..FakeHubConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new("errors");
    sb.crawl(&hub);
    let file = sb.finalize("d.ndjson", &[]);
    let truth = hub.truth();
    let known = pick(&truth, |_| true);
    let unknown = (0u32..)
        .map(|i| format!("sha256:{i:064x}"))
        .find(|d| !truth.contains_key(d))
        .unwrap();

    for source in [None, Some(file.as_path())] {
        for bad in [
            &known[..7 + 11],
            &known[7..7 + 11],
            "sha256:0123456789abcdefg",
            "latest",
            "md5:0123456789abcdef0123",
        ] {
            let output = sb.lookup(source, &[&known, bad]);
            assert_code(&output, 2, &format!("lookup {bad}"));
            assert!(
                stdout(&output).is_empty(),
                "nothing answered: {}",
                stdout(&output)
            );
            assert!(
                stderr(&output).contains(&format!("{bad:?}")),
                "{}",
                stderr(&output)
            );
        }
        let short = sb.lookup(source, &[&known[..7 + 11]]);
        assert!(stderr(&short).contains("at least 12"), "{}", stderr(&short));

        // An unknown digest: "not found", exit 1, and the other query is still answered.
        let output = sb.lookup(source, &[&unknown, &known, &unknown[..7 + 12]]);
        assert_code(&output, 1, "lookup of an unknown digest");
        let err = stderr(&output);
        assert_eq!(err.matches("not found").count(), 2, "{err}");
        assert!(err.contains(&unknown), "{err}");
        assert!(
            stdout(&output).starts_with(&format!("{known}\n")),
            "{}",
            stdout(&output)
        );
        let json = sb.lookup(source, &["--json", &unknown, &known]);
        assert_code(&json, 1, "lookup --json of an unknown digest");
        assert_eq!(stdout(&json).lines().count(), 1, "{}", stdout(&json));
    }

    // Ambiguity, in a dataset: a copy of a line whose digest differs in its last character.
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().find(|l| l.contains(&known)).unwrap();
    let last = known.chars().last().unwrap();
    let twin = format!(
        "{}{}",
        &known[..known.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let mut twins = [line.to_owned(), line.replace(&known, &twin)];
    twins.sort();
    let crafted = sb.path("twins.ndjson");
    std::fs::write(&crafted, twins.join("\n") + "\n").unwrap();
    let output = sb.lookup(Some(&crafted), &[&known[..7 + 20]]);
    assert_code(&output, 2, "ambiguous prefix in a dataset");
    let (a, b) = if known < twin {
        (&known, &twin)
    } else {
        (&twin, &known)
    };
    assert!(
        stderr(&output).contains(&format!("ambiguous: matches {a} and {b}")),
        "{}",
        stderr(&output)
    );
    // The whole digest is not ambiguous.
    assert_success(&sb.lookup(Some(&crafted), &[&known]), "whole digest");

    // Ambiguity, in a store: two digests sharing their first 62 hex characters.
    let twins_sb = Sandbox::new("twins");
    twin_store(&twins_sb.db());
    let output = twins_sb.lookup(None, &["abababababababababab", "--json"]);
    assert_code(&output, 2, "ambiguous prefix in a store");
    let err = stderr(&output);
    let (low, high) = ("ab".repeat(32), format!("{}ac", "ab".repeat(31)));
    assert!(
        err.contains(&format!(
            "ambiguous: matches sha256:{low} and sha256:{high}"
        )),
        "{err}"
    );
    assert!(stdout(&output).is_empty());

    // No store, no dataset file: exit 2, as finalize.
    let empty = Sandbox::new("nothing");
    let output = empty.lookup(None, &[&known]);
    assert_code(&output, 2, "lookup without a store");
    assert!(stderr(&output).contains("no store"), "{}", stderr(&output));
    let output = empty.lookup(Some(&empty.path("none.ndjson")), &[&known]);
    assert_code(&output, 2, "lookup without a dataset file");
    assert!(
        stderr(&output).contains("none.ndjson"),
        "{}",
        stderr(&output)
    );
    let output = empty.run(&["lookup"]);
    assert_code(&output, 2, "lookup without a digest");
}

/// A store holding `sha256:abab…ab` and `sha256:abab…ac`, both indexes of `twins:1`.
fn twin_store(db: &Path) {
    use digestmap::hub::{DigestFact, TagObservation};
    use digestmap::model::{Digest, ObjectKind, RepoName};
    use digestmap::store::Store;

    let store = Store::open(db).unwrap();
    let repo = RepoName::new("library", "twins").unwrap();
    for last in [0xab, 0xac] {
        let mut bytes = [0xab; 32];
        bytes[31] = last;
        let digest = Digest::from_bytes(bytes);
        let obs = TagObservation {
            tag: format!("t{last}"),
            digest: Some(digest),
            pushed: None,
            updated: None,
            facts: vec![DigestFact {
                digest,
                kind: ObjectKind::Index,
                platform: None,
                os_version: None,
                index: None,
            }],
        };
        store.write(|w| w.record_tag(&repo, &obs, 100, 1)).unwrap();
    }
}

/// Waits until the wall clock's whole second has changed: the store keeps whole seconds, and a
/// pair is current when it was seen in the same second as its tag, so two crawls of the same
/// store must not share a second.
fn next_second() {
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    while now() == start {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn current_follows_tags_that_moved() {
    let hub = FakeHub::bind(small()).unwrap();
    let sb = Sandbox::new("moved");
    sb.crawl(&hub);
    let before = hub.truth();
    next_second();
    // Every repository's newest build is pushed again: its floating tags move to new digests.
    hub.update(|c| c.rebuilds = 1);
    let after = hub.truth();
    sb.crawl(&hub);

    let all = dataset(&sb.finalize("all.ndjson", &[]));
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    assert_eq!(all.keys().collect::<BTreeSet<_>>(), keys);
    let mut moved = 0;
    let mut new = 0;
    for (digest, line) in &all {
        let union: BTreeSet<String> = [before.get(digest), after.get(digest)]
            .into_iter()
            .flatten()
            .flat_map(|v| strings(&v["tags"]))
            .collect();
        assert_eq!(
            strings(&line["tags"]),
            union.into_iter().collect::<Vec<_>>(),
            "{digest}"
        );
        // Current: exactly the tags that point at the digest after the rebuild.
        let now = after
            .get(digest)
            .map(|v| strings(&v["tags"]))
            .unwrap_or_default();
        assert_eq!(strings(&line["current"]), now, "{digest}");
        if let Some(old) = before.get(digest) {
            moved += strings(&old["tags"])
                .iter()
                .filter(|t| !now.contains(t))
                .count();
        } else {
            new += 1;
        }
    }
    assert!(
        moved > 0 && new > 0,
        "the rebuild moved nothing: {moved} moved, {new} new"
    );

    // --current-only: the digests some tag points at now, the same lines otherwise.
    let current = dataset(&sb.finalize("current.ndjson", &["--current-only"]));
    assert_eq!(
        current.keys().collect::<BTreeSet<_>>(),
        after.keys().collect::<BTreeSet<_>>()
    );
    assert!(current.iter().all(|(d, v)| all[d] == *v));
    assert!(current.len() < all.len());
    let again = sb.finalize("again.ndjson", &["--current-only"]);
    assert_eq!(
        std::fs::read(sb.path("current.ndjson")).unwrap(),
        std::fs::read(again).unwrap(),
        "same store, same bytes"
    );

    // lookup says the same: an old digest's moved tag is past, the new digest has it current.
    let (old, tag) = all
        .iter()
        .find_map(|(d, v)| {
            let now = strings(&v["current"]);
            strings(&v["tags"])
                .into_iter()
                .find(|t| !now.contains(t))
                .map(|t| (d.clone(), t))
        })
        .unwrap();
    let new = after
        .iter()
        .find(|(d, v)| !before.contains_key(*d) && strings(&v["tags"]).contains(&tag))
        .map(|(d, _)| d.clone())
        .unwrap();
    for source in [None, Some(sb.path("all.ndjson"))] {
        let output = sb.lookup(source.as_deref(), &[&old, &new]);
        assert_success(&output, "lookup of a moved tag's digests");
        let text = stdout(&output);
        let (first, second) = text.split_once("\n\n").unwrap();
        assert!(
            tag_lines(first).contains(&("past".to_owned(), tag.clone())),
            "{first}"
        );
        assert!(
            tag_lines(second).contains(&("current".to_owned(), tag.clone())),
            "{second}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile and damaged dataset files

/// Most memory `lookup --dataset` may hold at its peak, whatever the file: one line of at most
/// 1 MiB plus the read buffer, far below this.
const LOOKUP_MAX_RSS: u64 = 48 << 20;

/// A hand-written dataset line for `digest` (64 hex characters), keys in `finalize`'s order.
fn crafted_line(hex: &str, platform: &str, tags: &[&str]) -> String {
    let (platform, tags) = (Value::from(platform), Value::from(tags));
    format!(
        "{{\"digest\":\"sha256:{hex}\",\"kind\":\"manifest\",\"platform\":{platform},\"tags\":{tags},\
         \"current\":{tags},\"indexes\":[],\"first_seen\":\"2026-01-01T00:00:00Z\",\
         \"last_seen\":\"2026-01-02T00:00:00Z\"}}"
    )
}

/// `lookup --dataset PATH QUERIES...` measured: exit code, output, peak memory.
fn measured_lookup(sb: &Sandbox, dataset: &Path, queries: &[&str]) -> Measured {
    let mut args = vec!["lookup", "--dataset", dataset.to_str().unwrap()];
    args.extend_from_slice(queries);
    let run = run_measured(sb.command(&args), Duration::from_secs(90));
    assert!(
        run.code.is_some(),
        "lookup was killed after {:?} (a hang or an allocation failure)\nstderr:\n{}",
        run.elapsed,
        run.stderr_text()
    );
    assert!(
        run.max_rss < LOOKUP_MAX_RSS,
        "lookup peaked at {} MiB\nstderr:\n{}",
        run.max_rss >> 20,
        run.stderr_text()
    );
    run
}

#[test]
fn a_dataset_line_without_end_is_refused_with_bounded_memory() {
    let sb = Sandbox::new("long-line");
    let query = "ab".repeat(32);

    // /dev/zero: an endless line of NUL bytes.
    let run = measured_lookup(&sb, Path::new("/dev/zero"), &[&query]);
    let err = run.stderr_text();
    assert_eq!(run.code, Some(1), "{err}");
    assert!(
        err.contains("the dataset /dev/zero: line 1 is longer than 1 MiB"),
        "{err}"
    );
    assert!(run.stdout.is_empty());

    // A file whose third line is 64 MiB long: a valid beginning, then no newline for ever.
    let file = sb.path("huge.ndjson");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        writeln!(
            out,
            "{}",
            crafted_line(&"11".repeat(32), "linux/amd64", &["a:1"])
        )
        .unwrap();
        writeln!(
            out,
            "{}",
            crafted_line(&"22".repeat(32), "linux/amd64", &["a:2"])
        )
        .unwrap();
        write!(out, "{{\"digest\":\"sha256:{query}\",\"tags\":[\"").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            out.write_all(&chunk).unwrap();
        }
    }
    let run = measured_lookup(&sb, &file, &[&query]);
    let err = run.stderr_text();
    assert_eq!(run.code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the dataset {}: line 3 is longer than 1 MiB",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn a_cut_off_or_damaged_dataset_is_an_error_naming_the_line() {
    let sb = Sandbox::new("cut-off");
    let (a, b, c) = ("11".repeat(32), "22".repeat(32), "33".repeat(32));
    let whole = [
        crafted_line(&a, "linux/amd64", &["a:1"]),
        crafted_line(&b, "linux/arm64/v8", &["a:2"]),
        crafted_line(&c, "linux/386", &["a:3"]),
    ]
    .map(|l| l + "\n")
    .concat();
    let file = sb.path("d.ndjson");
    std::fs::write(&file, &whole).unwrap();
    assert_success(
        &sb.lookup(Some(&file), &[&a, &c]),
        "lookup in the whole file",
    );

    // Cut in the middle of the last line, or just before its newline: the digest asked for
    // is in the first line, and still the answer is that the file is cut off.
    for cut in [whole.len() - 40, whole.len() - 1] {
        std::fs::write(&file, &whole[..cut]).unwrap();
        let output = sb.lookup(Some(&file), &[&a]);
        assert_code(&output, 1, "lookup in a cut-off dataset");
        let err = stderr(&output);
        assert!(
            err.contains(&format!("the dataset {}: line 3", file.display()))
                && err.contains("cut off"),
            "{err}"
        );
    }

    // A damaged line in the middle, not the one asked for.
    let damaged = whole.replacen("\"a:2\"]", "\"a:2\"", 1);
    std::fs::write(&file, damaged).unwrap();
    let output = sb.lookup(Some(&file), &[&a]);
    assert_code(&output, 1, "lookup in a damaged dataset");
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "the dataset {}: line 2 is not a dataset line",
            file.display()
        )),
        "{err}"
    );

    // From standard input, the same.
    let mut cmd = sb.command(&["lookup", "--dataset", "-", &a]);
    let child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.as_ref().unwrap();
        stdin
            .write_all(&whole.as_bytes()[..whole.len() - 1])
            .unwrap();
    }
    let output = {
        let mut child = child;
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    assert_code(&output, 1, "lookup in a cut-off standard input");
    assert!(
        stderr(&output).contains("the dataset on standard input: line 3"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn dataset_strings_never_reach_the_terminal_raw() {
    let sb = Sandbox::new("raw-text");
    let hex = "44".repeat(32);
    let file = sb.path("d.ndjson");
    let line = crafted_line(
        &hex,
        "linux\u{1b}[2J/amd64\u{7}",
        &["evil\u{1b}]0;owned\u{7}:1", "x:\u{9b}31m"],
    );
    std::fs::write(&file, line + "\n").unwrap();
    let output = sb.lookup(Some(&file), &[&hex]);
    assert_success(&output, "lookup of a line with control characters");
    let (out, err) = (stdout(&output), stderr(&output));
    for text in [&out, &err] {
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\u{9b}']),
            "raw control characters:\n{text:?}"
        );
    }
    assert!(out.contains("linux\\u{1b}[2J/amd64\\u{7}"), "{out}");
    assert!(out.contains("evil\\u{1b}]0;owned\\u{7}:1"), "{out}");
    // JSON output escapes them by its own rules.
    let output = sb.lookup(Some(&file), &["--json", &hex]);
    assert_success(&output, "lookup --json");
    assert!(
        stdout(&output).contains("\\u001b[2J"),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains('\u{1b}'));
}
