//! `digestmap identify` through the binary: saved images in every layout (built by
//! tests/support/archives from real layers and configs), answered from a dataset file holding the
//! official images' config lines; every answer checked exactly; hostile archives refused with an
//! error naming the file, in bounded time and memory, writing nothing.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use digestmap::model::Digest;
use digestmap::registry::chain_ids;
use serde_json::{Value, json};
use support::answers::{short, summary};
use support::archives::{self, Saved, TarWriter};
use support::measured::run_measured;
use support::registry::image::{self, BuiltImage, Format, ImageSpec, Layer};
use support::sandbox::{Sandbox, assert_code, output_with_input, stderr, stdout};

fn layer(name: &str) -> Layer {
    Layer::new(&[(name, name.as_bytes())])
}

fn build(layers: &[&Layer], format: Format) -> BuiltImage {
    image::build(ImageSpec::linux(
        "amd64",
        None,
        layers.iter().map(|l| (*l).clone()).collect(),
        format,
    ))
}

/// The official images (as the dataset knows them) and the users' images built on them.
struct World {
    debian: BuiltImage,
    python: BuiltImage,
    python_old: BuiltImage,
    python_new: BuiltImage,
    alpine: image::BuiltIndex,
    app: BuiltImage,
    app2: BuiltImage,
    on_old: BuiltImage,
    custom: BuiltImage,
    scratch: BuiltImage,
}

impl World {
    fn new() -> World {
        let deb = layer("etc/debian_version");
        let py1 = layer("usr/local/bin/python3.12");
        let py2 = layer("usr/local/lib/python3.12/os.py");
        let old = layer("usr/local/bin/python3.11.7");
        let new = layer("usr/local/bin/python3.11.8");
        let python = build(&[&deb, &py1, &py2], Format::Oci);
        let python_old = build(&[&deb, &old], Format::Docker);
        let alpine_amd64 = build(&[&layer("etc/alpine-release")], Format::Oci);
        let alpine_arm64 = image::build(ImageSpec::linux(
            "arm64",
            Some("v8"),
            vec![layer("etc/alpine-release-arm64")],
            Format::Oci,
        ));
        World {
            debian: build(&[&deb], Format::Oci),
            python_new: build(&[&deb, &new], Format::Docker),
            alpine: image::index(vec![alpine_amd64, alpine_arm64], Format::Oci, true),
            app: build(
                &[
                    &deb,
                    &py1,
                    &py2,
                    &layer("app/main.py"),
                    &layer("app/requirements.txt"),
                ],
                Format::Docker,
            ),
            app2: build(
                &[
                    &deb,
                    &py1,
                    &py2,
                    &layer("app/main.py"),
                    &layer("app/requirements.txt"),
                    &layer("app/plugin.py"),
                ],
                Format::Docker,
            ),
            on_old: build(&[&deb, &old, &layer("srv/old-app")], Format::Docker),
            custom: build(
                &[&layer("opt/custom-os"), &layer("opt/custom-app")],
                Format::Docker,
            ),
            scratch: build(&[], Format::Docker),
            python,
            python_old,
        }
    }

    /// The dataset lines of the official images: manifest and config lines as `enrich` writes.
    fn dataset(&self) -> String {
        let alpine = &self.alpine.images;
        let entries: Vec<(&BuiltImage, &[&str], &[&str])> = vec![
            (
                &self.debian,
                &["debian:12", "debian:12.5", "debian:bookworm"],
                &["debian:12", "debian:12.5", "debian:bookworm"],
            ),
            (
                &self.python,
                &[
                    "python:3.12",
                    "python:3.12-bookworm",
                    "python:3.12.1",
                    "python:3.12.1-bookworm",
                ],
                &[
                    "python:3.12",
                    "python:3.12-bookworm",
                    "python:3.12.1",
                    "python:3.12.1-bookworm",
                ],
            ),
            (&self.python_old, &["python:3.11", "python:3.11.7"], &[]),
            (
                &self.python_new,
                &["python:3.11", "python:3.11.8"],
                &["python:3.11", "python:3.11.8"],
            ),
            (
                &alpine[0],
                &["alpine:3.20", "alpine:latest"],
                &["alpine:3.20", "alpine:latest"],
            ),
            (
                &alpine[1],
                &["alpine:3.20", "alpine:latest"],
                &["alpine:3.20", "alpine:latest"],
            ),
        ];
        let mut lines: Vec<(String, Value)> = Vec::new();
        for (image, tags, current) in entries {
            let diff_ids: Vec<Digest> = image
                .diff_ids()
                .iter()
                .map(|d| Digest::parse(d).unwrap())
                .collect();
            let chain = chain_ids(&diff_ids).pop().map(|d| d.to_string());
            let platform = match &image.spec.variant {
                Some(v) => format!("{}/{}/{v}", image.spec.os, image.spec.architecture),
                None => format!("{}/{}", image.spec.os, image.spec.architecture),
            };
            lines.push((
                image.config_digest.clone(),
                json!({"digest": image.config_digest, "kind": "config", "platform": platform,
                       "tags": tags, "current": current, "manifests": [image.digest],
                       "diff_ids": image.diff_ids(), "chain_id": chain,
                       "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-03-04T00:00:00Z"}),
            ));
            lines.push((
                image.digest.clone(),
                json!({"digest": image.digest, "kind": "manifest", "platform": platform,
                       "tags": tags, "current": current, "indexes": [],
                       "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-03-04T00:00:00Z",
                       "image_id": image.config_digest, "layers": diff_ids.len()}),
            ));
        }
        // Two image IDs sharing their first 12 hex characters, for the ambiguous prefix.
        for tail in ['1', '2'] {
            let digest = format!("sha256:abcabcabcabc{}", tail.to_string().repeat(52));
            lines.push((
                digest.clone(),
                json!({"digest": digest, "kind": "config", "platform": "linux/amd64",
                       "tags": ["busybox:1"], "current": [], "manifests": [], "diff_ids": [],
                       "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-03-04T00:00:00Z"}),
            ));
        }
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        lines.iter().map(|(_, v)| format!("{v}\n")).collect()
    }
}

fn saved<'a>(image: &'a BuiltImage, tag: &str) -> Saved<'a> {
    Saved {
        image,
        repo_tags: vec![tag.to_owned()],
    }
}

/// A sandbox with the world's dataset written to `dataset.ndjson`.
fn setup(name: &str) -> (Sandbox, World) {
    let sandbox = Sandbox::new(name);
    let world = World::new();
    std::fs::write(sandbox.path("dataset.ndjson"), world.dataset()).unwrap();
    (sandbox, world)
}

fn identify(sandbox: &Sandbox, inputs: &[&str], json: bool) -> Command {
    let mut args = vec!["identify", "--dataset", "dataset.ndjson"];
    if json {
        args.push("--json");
    }
    args.extend_from_slice(inputs);
    sandbox.command(&args)
}

/// One line per image (see [`summary`]).
fn summarize(output: &str) -> Vec<String> {
    output
        .lines()
        .map(|line| summary(&serde_json::from_str(line).unwrap()))
        .collect()
}

const PY: &str =
    "linux/amd64 [python:3.12.1-bookworm python:3.12.1 python:3.12-bookworm python:3.12]";
const DEB: &str = "linux/amd64 [debian:12.5 debian:12 debian:bookworm]";

fn run_ok(command: &mut Command, code: i32, what: &str) -> String {
    let output = command.output().unwrap();
    assert_code(&output, code, what);
    stdout(&output)
}

#[test]
fn a_user_image_names_its_official_base_in_every_layout() {
    let (sandbox, world) = setup("identify-layouts");
    let app = [saved(&world.app, "myapp:1")];
    let legacy = archives::legacy(&app);
    std::fs::write(sandbox.path("legacy.tar"), &legacy).unwrap();
    std::fs::write(sandbox.path("docker25.tar"), archives::docker25(&app)).unwrap();
    std::fs::write(sandbox.path("legacy.tar.gz"), archives::gzip(&legacy)).unwrap();
    std::fs::write(
        sandbox.path("app.oci.tar"),
        archives::oci_archive(&world.app),
    )
    .unwrap();
    archives::oci_layout(&sandbox.path("app-oci"), &world.app);
    std::fs::write(sandbox.path("inspect.json"), archives::inspect(&app)).unwrap();
    let want = format!("base base 3/5+2 {PY} < 1 {DEB}");
    for input in [
        "legacy.tar",
        "docker25.tar",
        "legacy.tar.gz",
        "app.oci.tar",
        "app-oci",
        "inspect.json",
    ] {
        let out = run_ok(&mut identify(&sandbox, &[input], true), 0, input);
        assert_eq!(summarize(&out), vec![want.clone()], "{input}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["image_id"], json!(world.app.config_digest), "{input}");
        assert_eq!(v["layers"], json!(5));
        assert_eq!(v["input"], json!(input));
    }
    // Two levels deep: FROM an image that is FROM python.
    std::fs::write(
        sandbox.path("app2.tar"),
        archives::legacy(&[saved(&world.app2, "myapp:2")]),
    )
    .unwrap();
    let out = run_ok(&mut identify(&sandbox, &["app2.tar"], true), 0, "app2");
    assert_eq!(
        summarize(&out),
        vec![format!("base base 3/6+3 {PY} < 1 {DEB}")]
    );

    // The block for people.
    let out = run_ok(&mut identify(&sandbox, &["legacy.tar"], false), 0, "text");
    let want = format!(
        "legacy.tar: image 1 of manifest.json (myapp:1)
  image ID   {app}
  platform   linux/amd64
  layers     5
  base       3 of 5 layers, 2 on top
    python:3.12.1-bookworm (linux/amd64)
      image ID  {python}
      current   python:3.12.1-bookworm, python:3.12.1, python:3.12-bookworm, python:3.12
      seen      2026-01-02T00:00:00Z to 2026-03-04T00:00:00Z
  ancestry   debian:12.5 (1 of 5 layers)
",
        app = world.app.config_digest,
        python = world.python.config_digest
    );
    assert_eq!(out, want);
}

#[test]
fn an_official_image_saved_as_is_is_exact() {
    let (sandbox, world) = setup("identify-exact");
    std::fs::write(
        sandbox.path("python.tar"),
        archives::legacy(&[saved(&world.python, "python:3.12")]),
    )
    .unwrap();
    let out = run_ok(&mut identify(&sandbox, &["python.tar"], true), 0, "python");
    assert_eq!(summarize(&out), vec![format!("exact = {PY} < 1 {DEB}")]);

    // A containerd-store save of the official alpine index, only amd64 pulled, gzip layers,
    // attestations in it: exact, by image ID and by manifest digest.
    let tar = archives::containerd(&world.alpine, &[0], "alpine:3.20");
    std::fs::write(sandbox.path("alpine.tar"), &tar).unwrap();
    let out = run_ok(&mut identify(&sandbox, &["alpine.tar"], true), 0, "alpine");
    assert_eq!(
        summarize(&out),
        vec!["exact = linux/amd64 [alpine:3.20 alpine:latest]"]
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["digests"], json!([world.alpine.images[0].digest]));
    assert_eq!(
        v["exact"][0]["manifests"],
        json!([world.alpine.images[0].digest])
    );

    // Bare: the image ID, a 12-character prefix of it, the manifest digest.
    let id = &world.python.config_digest;
    for bare in [id.as_str(), &id[7..19], world.python.digest.as_str()] {
        let out = run_ok(&mut identify(&sandbox, &[bare], true), 0, bare);
        assert_eq!(summarize(&out), vec![format!("exact = {PY}")], "{bare}");
    }
    // A prefix two image IDs share: ambiguous, exit 2.
    let output = identify(&sandbox, &["abcabcabcabc"], true)
        .output()
        .unwrap();
    assert_code(&output, 2, "ambiguous");
    assert!(
        stderr(&output).contains("ambiguous: matches sha256:abcabcabcabc1111"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_base_whose_tag_moved_says_where_it_points_now() {
    let (sandbox, world) = setup("identify-moved");
    std::fs::write(
        sandbox.path("old.tar"),
        archives::legacy(&[saved(&world.on_old, "legacy-app:1")]),
    )
    .unwrap();
    let out = run_ok(&mut identify(&sandbox, &["old.tar"], true), 0, "old");
    let new = short(&world.python_new.config_digest);
    assert_eq!(
        summarize(&out),
        vec![format!(
            "base base 2/3+1 linux/amd64 [python:3.11.7>? python:3.11>{new}] < 1 {DEB}"
        )]
    );
    let text = run_ok(&mut identify(&sandbox, &["old.tar"], false), 0, "old text");
    assert!(
        text.contains("      current   none: every tag has moved on\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "      moved     python:3.11.7, python:3.11 (now {})\n",
            world.python_new.config_digest
        )),
        "{text}"
    );
}

#[test]
fn no_official_base_exits_7() {
    let (sandbox, world) = setup("identify-none");
    std::fs::write(
        sandbox.path("custom.tar"),
        archives::legacy(&[saved(&world.custom, "custom:1")]),
    )
    .unwrap();
    std::fs::write(
        sandbox.path("scratch.tar"),
        archives::legacy(&[saved(&world.scratch, "scratch:1")]),
    )
    .unwrap();
    for input in ["custom.tar", "scratch.tar"] {
        let out = run_ok(&mut identify(&sandbox, &[input], true), 7, input);
        assert_eq!(summarize(&out), vec!["none"], "{input}");
        let text = run_ok(&mut identify(&sandbox, &[input], false), 7, input);
        assert!(
            text.contains("  base       no official base image found\n"),
            "{text}"
        );
    }
    // A dataset with platform manifests not enriched yet says so.
    let mut dataset = world.dataset();
    dataset.push_str(&format!(
        "{}\n",
        json!({"digest": format!("sha256:{}", "f".repeat(64)), "kind": "manifest", "platform": "linux/amd64",
               "tags": ["golang:1"], "current": ["golang:1"], "indexes": [],
               "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-03-04T00:00:00Z"})
    ));
    std::fs::write(sandbox.path("dataset.ndjson"), dataset).unwrap();
    let out = run_ok(&mut identify(&sandbox, &["custom.tar"], true), 7, "partial");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["notes"],
        json!([
            "1 official platform images have no image ID or layers in the index yet (partly enriched): a longer base may be among them; run `digestmap enrich`, then `digestmap finalize`"
        ])
    );
    // An unknown bare digest: none.
    let unknown = format!("sha256:{}", "e".repeat(64));
    let out = run_ok(
        &mut identify(&sandbox, &[&unknown], true),
        7,
        "unknown digest",
    );
    assert_eq!(summarize(&out), vec!["none"]);
}

#[test]
fn a_multi_image_tarball_answers_every_image() {
    let (sandbox, world) = setup("identify-multi");
    // app and app2 share five layers: Docker writes the second's as links to the first's.
    let tar = archives::legacy(&[
        saved(&world.app, "myapp:1"),
        saved(&world.app2, "myapp:2"),
        saved(&world.custom, "custom:1"),
    ]);
    std::fs::write(sandbox.path("multi.tar"), &tar).unwrap();
    let out = run_ok(&mut identify(&sandbox, &["multi.tar"], true), 7, "multi");
    assert_eq!(
        summarize(&out),
        vec![
            format!("base base 3/5+2 {PY} < 1 {DEB}"),
            format!("base base 3/6+3 {PY} < 1 {DEB}"),
            "none".to_owned()
        ]
    );
    // Several inputs at once, one of them unreadable: the others are answered, exit 1.
    std::fs::write(
        sandbox.path("python.tar"),
        archives::legacy(&[saved(&world.python, "python:3.12")]),
    )
    .unwrap();
    let output = identify(&sandbox, &["python.tar", "missing.tar"], true)
        .output()
        .unwrap();
    assert_code(&output, 1, "missing input");
    assert_eq!(
        summarize(&stdout(&output)),
        vec![format!("exact = {PY} < 1 {DEB}")]
    );
    assert!(
        stderr(&output).contains("missing.tar: No such file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn standard_input_is_read_in_one_pass() {
    let (sandbox, world) = setup("identify-stdin");
    let tar = archives::docker25(&[saved(&world.app, "myapp:1")]);
    let inspect = archives::inspect(&[saved(&world.app, "myapp:1")]);
    std::fs::write(sandbox.path("app.tar"), &tar).unwrap();
    let dataset = world.dataset().into_bytes();
    let dataset_on_stdin = sandbox.command(&["identify", "--json", "--dataset", "-", "app.tar"]);
    for (what, bytes, command) in [
        ("plain", tar.clone(), identify(&sandbox, &["-"], true)),
        (
            "gzip",
            archives::gzip(&tar),
            identify(&sandbox, &["-"], true),
        ),
        ("inspect", inspect, identify(&sandbox, &["-"], true)),
        ("dataset", dataset, dataset_on_stdin),
    ] {
        let mut command = command;
        let output = output_with_input(&mut command, bytes);
        assert_code(&output, 0, what);
        assert_eq!(
            summarize(&stdout(&output)),
            vec![format!("base base 3/5+2 {PY} < 1 {DEB}")],
            "{what}"
        );
    }
    for twice in [
        identify(&sandbox, &["-", "-"], true),
        sandbox.command(&["identify", "--dataset", "-", "-"]),
    ] {
        let mut twice = twice;
        let output = twice.output().unwrap();
        assert_code(&output, 2, "stdin twice");
        assert!(stderr(&output).contains("standard input (`-`) can be read only once"));
    }
}

/// A tarball with `members` (name, data, typeflag) and nothing else.
fn raw(members: &[(&str, &[u8], u8)]) -> Vec<u8> {
    let mut tar = TarWriter::default();
    for (name, data, flag) in members {
        tar.header(
            name,
            data.len() as u64,
            *flag,
            if *flag == b'2' { "/etc/passwd" } else { "" },
        );
        if *flag != b'2' {
            tar.data(data);
        }
    }
    tar.finish()
}

#[test]
fn hostile_archives_get_an_error_naming_the_file() {
    let (sandbox, world) = setup("identify-hostile");
    let good = archives::legacy(&[saved(&world.app, "myapp:1")]);
    let config_name = format!("{}.json", &world.app.config_digest[7..]);
    let manifest = |config: &str| format!(r#"[{{"Config":"{config}","RepoTags":[],"Layers":[]}}]"#);
    let mut bad_diff_ids = serde_json::from_slice::<Value>(&world.scratch.config).unwrap();
    bad_diff_ids["rootfs"]["diff_ids"] = json!(["md5:0123"]);
    let bad_diff_ids = serde_json::to_vec(&bad_diff_ids).unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Typed parsing refuses the nesting at its first level, and passes over unknown keys without
    // recursion; `docker image inspect` JSON is parsed as a value, which stops at depth 128.
    let nested = format!(r#"[{{"Config":"c.json","Layers":[],"X":{deep}}}]"#);
    let nested_config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":{deep}}}}}"#);
    let nested_inspect = format!(r#"[{{"Id":{deep}}}]"#);
    let big = {
        let mut v = b"[".to_vec();
        v.resize(17 << 20, b' ');
        v.push(b']');
        v
    };
    let mut absurd = TarWriter::default();
    absurd.header("layer.tar", 1 << 39, b'0', "");
    absurd.data(&[0u8; 1024]);
    let mut beyond = TarWriter::default();
    beyond.header("layer.tar", 1 << 42, b'0', "");
    let mut bomb_tar = TarWriter::default();
    bomb_tar.header("layer.tar", 1 << 30, b'0', "");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&bomb_tar.bytes).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();

    // Long distinct names (GNU long-name members), 16 MiB of them in all.
    let mut names = TarWriter::default();
    for i in 0..4200 {
        names.file(&format!("{i:04}{}", "n".repeat(3996)), b"");
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "names.tar",
            names.finish(),
            "its member names add up to more than 16 MiB",
        ),
        (
            "text.tar",
            b"hello, this is not a tarball at all\n".repeat(20),
            "not a tar archive",
        ),
        ("empty.tar", Vec::new(), "not a tar archive"),
        (
            "truncated.tar",
            good[..good.len() / 2].to_vec(),
            "the tar archive is cut off",
        ),
        (
            "traversal.tar",
            raw(&[("../../etc/cron.d/x", b"x", b'0')]),
            "climbs out of the archive",
        ),
        (
            "absolute.tar",
            raw(&[("/etc/passwd", b"x", b'0')]),
            "an absolute path",
        ),
        (
            "link.tar",
            raw(&[("manifest.json", b"", b'2')]),
            "manifest.json is a link; links are never followed",
        ),
        (
            "duplicate.tar",
            raw(&[
                ("manifest.json", b"[]", b'0'),
                ("manifest.json", b"[]", b'0'),
            ]),
            "member \"manifest.json\" appears twice",
        ),
        (
            "absurd.tar",
            absurd.finish(),
            "cut off inside a member's data",
        ),
        ("beyond.tar", beyond.finish(), "more than any image holds"),
        (
            "huge-manifest.tar",
            raw(&[("manifest.json", &big, b'0')]),
            "manifest.json is 17825793 bytes, more than the 16 MiB",
        ),
        (
            "huge-config.tar",
            raw(&[
                ("c.json", &big, b'0'),
                ("manifest.json", manifest("c.json").as_bytes(), b'0'),
            ]),
            "c.json is 17825793 bytes, more than the 16 MiB",
        ),
        (
            "nested.tar",
            raw(&[("manifest.json", nested.as_bytes(), b'0')]),
            "manifest.json entry 1 names the config \"c.json\", which the archive does not hold",
        ),
        (
            "nested.json",
            nested_inspect.into_bytes(),
            "not JSON: recursion limit exceeded",
        ),
        (
            "nested-config.tar",
            raw(&[
                ("c.json", nested_config.as_bytes(), b'0'),
                ("manifest.json", manifest("c.json").as_bytes(), b'0'),
            ]),
            "c.json: not an image config: invalid type: sequence, expected a string",
        ),
        ("bomb.tar.gz", bomb, "a gzip bomb"),
        (
            "diff-ids.tar",
            raw(&[
                ("c.json", &bad_diff_ids, b'0'),
                ("manifest.json", manifest("c.json").as_bytes(), b'0'),
            ]),
            "c.json: rootfs.diff_ids[0]: digest \"md5:0123\" does not start with \"sha256:\"",
        ),
        (
            "damaged-config.tar",
            raw(&[
                (&config_name, b"{}", b'0'),
                ("manifest.json", manifest(&config_name).as_bytes(), b'0'),
            ]),
            "is damaged: its content has digest",
        ),
        (
            "no-manifest.tar",
            raw(&[("hello.txt", b"hi", b'0')]),
            "neither manifest.json",
        ),
        (
            "inspect.json",
            br#"[{"Id":"sha256:00","RootFS":{}}]"#.to_vec(),
            "entry 1: Id: digest \"sha256:00\"",
        ),
    ];
    for (name, bytes, _) in &cases {
        std::fs::write(sandbox.path(name), bytes).unwrap();
    }
    let before: Vec<_> = std::fs::read_dir(&sandbox.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for (name, _, want) in &cases {
        let run = run_measured(identify(&sandbox, &[name], false), Duration::from_secs(60));
        let err = run.stderr_text();
        assert_eq!(run.code, Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}: ")) && err.contains(want),
            "{name}: want {want:?}, got {err}"
        );
        assert!(
            !err.contains("panicked") && run.stdout.is_empty(),
            "{name}: {err}"
        );
        assert!(
            run.max_rss < 96 << 20,
            "{name}: peak memory {} bytes",
            run.max_rss
        );
    }
    let after: Vec<_> = std::fs::read_dir(&sandbox.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "identify wrote into the folder");

    // A symbolic link inside an OCI layout folder is never followed.
    archives::oci_layout(&sandbox.path("layout"), &world.app);
    let index = sandbox.path("layout/index.json");
    std::fs::rename(&index, sandbox.path("index-moved.json")).unwrap();
    std::os::unix::fs::symlink(sandbox.path("index-moved.json"), &index).unwrap();
    let output = identify(&sandbox, &["layout"], false).output().unwrap();
    assert_code(&output, 1, "layout link");
    assert!(
        stderr(&output).contains("layout: index.json is a symbolic link; links are never followed"),
        "{}",
        stderr(&output)
    );

    // No dataset: exit 2, naming it.
    let output = sandbox
        .command(&["identify", "--dataset", "nope.ndjson", "layout"])
        .output()
        .unwrap();
    assert_code(&output, 2, "no dataset");
    assert!(stderr(&output).contains("cannot read the dataset nope.ndjson"));
}

/// `skopeo copy … docker://<the real registry>/… <dest>` into the sandbox (`--insecure-policy`:
/// the tester's signature policy is not the test's business; plain http on loopback).
fn skopeo(sandbox: &Sandbox, source: &str, dest: &str, all: bool) {
    let mut command = Command::new("skopeo");
    command
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .args(if all { &["--all"][..] } else { &[][..] })
        .args([source, dest])
        .current_dir(&sandbox.dir)
        .env("HOME", sandbox.home())
        .env("TMPDIR", &sandbox.dir)
        .stdin(Stdio::null());
    let output = command.output().unwrap_or_else(|e| {
        panic!("skopeo could not run ({e}): install Debian's skopeo (.ci/run does)")
    });
    assert!(
        output.status.success(),
        "skopeo copy {source} {dest}: {}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_archives_from_the_real_registry() {
    let (sandbox, world) = setup("identify-skopeo");
    let registry = support::registry::process::RegistryProcess::start().await;
    let pusher = image::Pusher::new(registry.url());
    pusher.image("library/python", "3.12", &world.python).await;
    pusher.image("library/myapp", "1", &world.app).await;
    pusher.index("library/alpine", "3.20", &world.alpine).await;
    let host = registry.url().host_str().unwrap().to_owned()
        + ":"
        + &registry.url().port().unwrap().to_string();

    skopeo(
        &sandbox,
        &format!("docker://{host}/library/myapp:1"),
        "docker-archive:app.tar:myapp:1",
        false,
    );
    skopeo(
        &sandbox,
        &format!("docker://{host}/library/myapp:1"),
        "oci-archive:app.oci.tar",
        false,
    );
    skopeo(
        &sandbox,
        &format!("docker://{host}/library/python:3.12"),
        "docker-archive:python.tar",
        false,
    );
    skopeo(
        &sandbox,
        &format!("docker://{host}/library/alpine:3.20"),
        "oci-archive:alpine.oci.tar",
        true,
    );
    skopeo(
        &sandbox,
        &format!("docker://{host}/library/alpine:3.20"),
        "oci:alpine-layout",
        true,
    );

    let base = format!("base base 3/5+2 {PY} < 1 {DEB}");
    for input in ["app.tar", "app.oci.tar"] {
        let out = run_ok(&mut identify(&sandbox, &[input], true), 0, input);
        assert_eq!(summarize(&out), vec![base.clone()], "{input}");
    }
    let out = run_ok(&mut identify(&sandbox, &["python.tar"], true), 0, "python");
    assert_eq!(summarize(&out), vec![format!("exact = {PY} < 1 {DEB}")]);
    // Both platforms of the index, attestations left out, exact by image ID and manifest digest.
    for input in ["alpine.oci.tar", "alpine-layout"] {
        let out = run_ok(&mut identify(&sandbox, &[input], true), 0, input);
        assert_eq!(
            summarize(&out),
            vec![
                "exact = linux/amd64 [alpine:3.20 alpine:latest]",
                "exact = linux/arm64/v8 [alpine:3.20 alpine:latest]"
            ],
            "{input}"
        );
    }
}

/// An index digest from a dataset: the manifest lines listing it in `indexes` are its platform
/// images. Lines are sorted by digest, so one image's config line (`1…`) comes before the manifest
/// line naming it (`2…`): a file is read a second time for it; standard input, read once, cannot
/// be, and the error says to give the dataset as a file.
#[test]
fn an_index_digest_from_a_dataset_file_and_from_standard_input() {
    let sandbox = Sandbox::new("identify-index-dataset");
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let config = |id: char, layer: char, manifest: char, platform: &str| {
        let diff_ids = vec![Digest::parse(&d(layer)).unwrap()];
        json!({"digest": d(id), "kind": "config", "platform": platform,
               "tags": ["busybox:1"], "current": ["busybox:1"], "manifests": [d(manifest)],
               "diff_ids": [d(layer)], "chain_id": chain_ids(&diff_ids).pop().unwrap().to_string(),
               "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-03-04T00:00:00Z"})
    };
    let manifest = |digest: char, id: char, platform: &str| {
        json!({"digest": d(digest), "kind": "manifest", "platform": platform,
               "tags": ["busybox:1"], "current": ["busybox:1"], "indexes": [d('f')],
               "first_seen": "2026-01-02T00:00:00Z", "last_seen": "2026-03-04T00:00:00Z",
               "image_id": d(id), "layers": 1})
    };
    let lines = [
        config('1', 'a', '2', "linux/amd64"),
        manifest('2', '1', "linux/amd64"),
        manifest('3', '4', "linux/arm64/v8"),
        config('4', 'b', '3', "linux/arm64/v8"),
        json!({"digest": d('f'), "kind": "index", "platform": null, "tags": ["busybox:1"],
               "current": ["busybox:1"], "first_seen": "2026-01-02T00:00:00Z",
               "last_seen": "2026-03-04T00:00:00Z"}),
    ];
    let dataset: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(sandbox.path("index.ndjson"), &dataset).unwrap();
    let index = d('f');

    let output = sandbox
        .command(&["identify", "--json", "--dataset", "index.ndjson", &index])
        .output()
        .unwrap();
    assert_code(&output, 0, "an index digest from a dataset file");
    let answer: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(
        summary(&answer),
        "exact = linux/amd64 [busybox:1] = linux/arm64/v8 [busybox:1]"
    );
    assert_eq!(answer["indexes"], json!([index]));
    assert_eq!(answer["exact"][0]["image_id"], json!(d('1')));

    let output = output_with_input(
        &mut sandbox.command(&["identify", "--json", "--dataset", "-", &index]),
        dataset,
    );
    assert_code(
        &output,
        1,
        "an index digest from a dataset on standard input",
    );
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains(&format!("(the first: image ID {})", d('1')))
            && stderr(&output).contains("give the dataset as a file (--dataset FILE)"),
        "{}",
        stderr(&output)
    );
}
