//! End-to-end tests of Docker Hub sign-in: the real `digestmap` binary against the project's
//! Docker Hub double (tests/support/fake_hub), with credentials from each source it reads, and
//! checks that the secret and the token never show up where they must not.
//!
//! Every run gets a scratch `HOME` and no `DOCKERHUB_*` or `DOCKER_CONFIG` of its own, so the
//! credentials of the person running the tests are never read, let alone sent.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::fake_hub::{FakeHub, FakeHubConfig, RequestRecord};
use support::sandbox::{Sandbox, assert_code, stderr};

const USER: &str = "crawler";
const SECRET: &str = "dckr_pat_9f3Kq7ZxVb2LmN8p";
const WRONG: &str = "dckr_pat_wrongwrongwrong";

impl Sandbox {
    /// `crawl` of `hub` with fast pacing and `extra` flags.
    fn crawl_command(&self, hub: &FakeHub, extra: &[&str]) -> Command {
        self.fast_crawl(&hub.url(), extra)
    }

    fn finalize(&self, name: &str) -> (PathBuf, Output) {
        let out = self.path(name);
        let output = self
            .command(&["finalize", "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert_code(&output, 0, "finalize");
        (out, output)
    }

    /// Writes `config.json` into `dir` (created), returning `dir`.
    fn docker_config(&self, dir: &Path, json: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
        dir.to_owned()
    }
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run digestmap")
}

fn hub_with_credentials(extra: impl FnOnce(&mut FakeHubConfig)) -> FakeHub {
    let mut config = FakeHubConfig {
        repos: 5,
        max_tags: 120,
        big_repo_tags: 350,
        credentials: Some((USER.to_owned(), SECRET.to_owned())),
        ..FakeHubConfig::default()
    };
    extra(&mut config);
    FakeHub::bind(config).unwrap()
}

fn is_sign_in(r: &RequestRecord) -> bool {
    r.path_and_query.starts_with("/v2/auth/token")
        || r.path_and_query.starts_with("/v2/users/login")
}

/// Every request that is not a sign-in carried a bearer token; returns the tokens seen.
fn assert_listings_signed_in(hub: &FakeHub) -> Vec<String> {
    let records = hub.requests();
    let listings: Vec<&RequestRecord> = records.iter().filter(|r| !is_sign_in(r)).collect();
    assert!(!listings.is_empty(), "no listing reached the double");
    let mut tokens = Vec::new();
    for r in listings {
        let header = r.authorization.as_deref().unwrap_or_else(|| {
            panic!("{} {} was sent without a token", r.method, r.path_and_query)
        });
        let token = header.strip_prefix("Bearer ").expect("a Bearer token");
        assert!(!token.is_empty());
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
    }
    tokens
}

/// The dataset keyed by digest, without the time fields.
fn dataset(path: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            let obj = value.as_object_mut().unwrap();
            // Times and the `current` tags are not part of the double's truth.
            for key in ["first_seen", "last_seen", "current"] {
                obj.remove(key);
            }
            (obj["digest"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn assert_equals_truth(sb: &Sandbox, hub: &FakeHub) -> PathBuf {
    let (out, _) = sb.finalize("digests.ndjson");
    let got = dataset(&out);
    let want = hub.truth();
    assert!(
        got == want,
        "dataset differs from the double's truth (got {} digests, want {})",
        got.len(),
        want.len()
    );
    out
}

/// None of `needles` occurs in `haystack` (bytes of a log, a store or a dataset).
fn assert_absent(haystack: &[u8], needles: &[&str], what: &str) {
    for needle in needles {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "{what} contains a secret or token"
        );
    }
}

#[test]
fn env_credentials_sign_in_and_never_leak() {
    let hub = hub_with_credentials(|c| c.anonymous_cap = true);
    let sb = Sandbox::new("env");
    // A wrong config.json entry too: the environment comes first.
    let auth = "Y3Jhd2xlcjpkY2tyX3BhdF93cm9uZ3dyb25nd3Jvbmc="; // crawler:dckr_pat_wrongwrongwrong
    sb.docker_config(
        &sb.home().join(".docker"),
        &format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#),
    );
    let mut cmd = sb.crawl_command(&hub, &["-vv", "--workers", "4"]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", SECRET);
    let output = run(cmd);
    assert_code(&output, 0, "crawl");
    let err = stderr(&output);
    assert!(
        err.contains("signing in to Docker Hub as crawler with credentials from DOCKERHUB_USERNAME and DOCKERHUB_TOKEN"),
        "{err}"
    );

    let records = hub.requests();
    let sign_ins: Vec<_> = records.iter().filter(|r| is_sign_in(r)).collect();
    assert_eq!(sign_ins.len(), 1, "one sign-in");
    assert_eq!(
        (
            sign_ins[0].method.as_str(),
            sign_ins[0].path_and_query.as_str(),
            sign_ins[0].status
        ),
        ("POST", "/v2/auth/token", 200)
    );
    assert_eq!(sign_ins[0].authorization, None, "sign-in carries no token");
    assert_eq!(records[0].seq, sign_ins[0].seq, "signed in before listing");
    let tokens = assert_listings_signed_in(&hub);
    assert_eq!(tokens.len(), 1);

    let out = assert_equals_truth(&sb, &hub);
    let status = run(sb.command(&["-vv", "status"]));
    assert_code(&status, 0, "status");
    let secrets = [SECRET, tokens[0].as_str()];
    assert_absent(&output.stderr, &secrets, "crawl -vv stderr");
    assert_absent(&output.stdout, &secrets, "crawl stdout");
    assert_absent(&std::fs::read(sb.db()).unwrap(), &secrets, "the store");
    assert_absent(&std::fs::read(&out).unwrap(), &secrets, "the dataset");
    assert_absent(&status.stdout, &secrets, "status");
}

#[test]
fn wrong_credentials_exit_2_before_crawling_and_leave_the_store_as_it_was() {
    let hub = hub_with_credentials(|_| {});
    let sb = Sandbox::new("wrong");
    let mut cmd = sb.crawl_command(&hub, &["-vv"]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", WRONG);
    let output = run(cmd);
    assert_code(&output, 2, "crawl with a wrong token");
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "sign-in to {} as crawler failed: incorrect username or password",
            hub.url()
        )),
        "{err}"
    );
    assert_absent(&output.stderr, &[WRONG], "stderr");
    let records = hub.requests();
    assert!(!records.is_empty());
    assert!(
        records.iter().all(is_sign_in),
        "only sign-in requests reached the double: {:?}",
        records
            .iter()
            .map(|r| &r.path_and_query)
            .collect::<Vec<_>>()
    );

    // Nothing was started: the store holds no run, and a crawl with the right token is a first
    // crawl, signed in again (credentials are never stored).
    let status = run(sb.command(&["status"]));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("crawl: none yet"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    hub.clear_requests();
    let mut cmd = sb.crawl_command(&hub, &[]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", SECRET);
    let output = run(cmd);
    assert_code(&output, 0, "crawl with the right token");
    assert_eq!(hub.requests().iter().filter(|r| is_sign_in(r)).count(), 1);
    assert_listings_signed_in(&hub);
    assert_equals_truth(&sb, &hub);
}

#[test]
fn falls_back_to_users_login_when_auth_token_is_missing() {
    let hub = hub_with_credentials(|c| c.no_auth_token_endpoint = true);
    let sb = Sandbox::new("fallback");
    let mut cmd = sb.crawl_command(&hub, &[]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", SECRET);
    let output = run(cmd);
    assert_code(&output, 0, "crawl");
    let sign_ins: Vec<(String, u16)> = hub
        .requests()
        .iter()
        .filter(|r| is_sign_in(r))
        .map(|r| (r.path_and_query.clone(), r.status))
        .collect();
    assert_eq!(
        sign_ins,
        [
            ("/v2/auth/token".to_owned(), 404),
            ("/v2/users/login".to_owned(), 200)
        ]
    );
    assert_listings_signed_in(&hub);
    assert_equals_truth(&sb, &hub);
}

#[test]
fn docker_config_json_base64_auth() {
    let hub = hub_with_credentials(|_| {});
    let right = "Y3Jhd2xlcjpkY2tyX3BhdF85ZjNLcTdaeFZiMkxtTjhw"; // crawler:dckr_pat_9f3Kq7ZxVb2LmN8p
    let wrong = "Y3Jhd2xlcjpkY2tyX3BhdF93cm9uZ3dyb25nd3Jvbmc="; // crawler:dckr_pat_wrongwrongwrong
    let entry = |auth: &str| {
        format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"ghcr.io":{{"auth":"eDp5"}}}}}}"#
        )
    };

    // ~/.docker/config.json.
    let sb = Sandbox::new("config-home");
    let config = sb.docker_config(&sb.home().join(".docker"), &entry(right));
    let output = run(sb.crawl_command(&hub, &[]));
    assert_code(&output, 0, "crawl with ~/.docker/config.json");
    let err = stderr(&output);
    let source = config.join("config.json").display().to_string();
    assert!(
        err.contains(&format!("with credentials from {source}")),
        "{err}"
    );
    assert_listings_signed_in(&hub);
    assert_equals_truth(&sb, &hub);
    assert_absent(&output.stderr, &[SECRET, right], "stderr");

    // DOCKER_CONFIG wins over ~/.docker.
    hub.clear_requests();
    let sb = Sandbox::new("config-env");
    sb.docker_config(&sb.home().join(".docker"), &entry(wrong));
    let elsewhere = sb.docker_config(&sb.path("elsewhere"), &entry(right));
    let mut cmd = sb.crawl_command(&hub, &[]);
    cmd.env("DOCKER_CONFIG", &elsewhere);
    let output = run(cmd);
    assert_code(&output, 0, "crawl with DOCKER_CONFIG");
    assert_listings_signed_in(&hub);
}

/// Writes `docker-credential-test` into `bin`: it answers `get` for any server (logging the
/// server it was asked about to `asked`), with the right credentials.
#[cfg(unix)]
fn credential_helper(bin: &Path, asked: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        r#"#!/bin/sh
[ "$1" = get ] || exit 1
server=$(cat)
printf '%s\n' "$server" >> '{asked}'
printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{SECRET}"}}\n' "$server"
"#,
        asked = asked.display()
    );
    let path = bin.join("docker-credential-test");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
#[test]
fn docker_credential_helpers() {
    let hub = hub_with_credentials(|_| {});
    let path = format!(
        "{}:{}",
        "BIN",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
    );
    for (name, config, server) in [
        (
            "store",
            r#"{"auths":{"https://index.docker.io/v1/":{}},"credsStore":"test"}"#,
            "https://index.docker.io/v1/",
        ),
        (
            "helpers",
            r#"{"auths":{},"credHelpers":{"docker.io":"test","ghcr.io":"other"}}"#,
            "docker.io",
        ),
    ] {
        hub.clear_requests();
        let sb = Sandbox::new(name);
        let bin = sb.path("bin");
        let asked = sb.path("asked.txt");
        credential_helper(&bin, &asked);
        let docker = sb.docker_config(&sb.home().join(".docker"), config);
        let mut cmd = sb.crawl_command(&hub, &[]);
        cmd.env("PATH", path.replace("BIN", bin.to_str().unwrap()));
        let output = run(cmd);
        assert_code(&output, 0, &format!("crawl with {name}"));
        let err = stderr(&output);
        let source = format!(
            "docker-credential-test (configured in {})",
            docker.join("config.json").display()
        );
        assert!(err.contains(&source), "{err}");
        assert_eq!(
            std::fs::read_to_string(&asked).unwrap(),
            format!("{server}\n")
        );
        assert_listings_signed_in(&hub);
        assert_absent(&output.stderr, &[SECRET], "stderr");
    }
}

#[test]
fn token_stdin_comes_first() {
    let hub = hub_with_credentials(|_| {});
    let sb = Sandbox::new("stdin");
    // The environment holds a wrong token: --token-stdin must win over it.
    let mut cmd = sb.crawl_command(&hub, &["--token-stdin", "--username", USER]);
    cmd.env("DOCKERHUB_USERNAME", "someone-else")
        .env("DOCKERHUB_TOKEN", WRONG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SECRET}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_code(&output, 0, "crawl --token-stdin");
    assert!(stderr(&output).contains("credentials from --token-stdin"));
    assert_listings_signed_in(&hub);
    assert_equals_truth(&sb, &hub);
    assert_absent(&output.stderr, &[SECRET], "stderr");

    // Without a user name, or with an empty standard input: usage errors, nothing sent.
    hub.clear_requests();
    let sb = Sandbox::new("stdin-usage");
    let output = run(sb.crawl_command(&hub, &["--token-stdin"]));
    assert_code(&output, 2, "--token-stdin with empty stdin");
    assert!(stderr(&output).contains("standard input holds no token"));
    let mut cmd = sb.crawl_command(&hub, &["--token-stdin"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SECRET.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_code(&output, 2, "--token-stdin without a user name");
    assert!(
        stderr(&output).contains("--username"),
        "{}",
        stderr(&output)
    );
    let output = run(sb.crawl_command(&hub, &["--username", USER]));
    assert_code(&output, 2, "--username without --token-stdin");
    assert!(hub.requests().is_empty());
}

#[test]
fn expiring_token_is_renewed_mid_crawl() {
    // The client assumes a 10-minute token (the double's are no JWTs), so each expiry shows
    // as a 401. About 10 requests at 4 a second outlast two of the one-second lifetimes, and a
    // renewed token reaches the double well within its second even on a loaded machine.
    let hub = hub_with_credentials(|c| c.token_ttl = Some(Duration::from_secs(1)));
    let sb = Sandbox::new("expiry");
    let url = hub.url();
    let mut cmd = sb.command(&[
        "crawl",
        "--hub-url",
        &url,
        "--rps",
        "4",
        "--workers",
        "2",
        "--retry-base-ms",
        "20",
    ]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", SECRET);
    let output = run(cmd);
    assert_code(&output, 0, "crawl");
    let err = stderr(&output);
    assert!(err.contains("job attempts repeated 0"), "{err}");
    assert!(err.contains("failed jobs: 0"), "{err}");

    let records = hub.requests();
    let expired = records
        .iter()
        .filter(|r| r.fault.as_deref() == Some("token_expired"))
        .count();
    let sign_ins = records.iter().filter(|r| is_sign_in(r)).count();
    assert!(expired >= 1, "the token never expired mid-crawl");
    assert!(sign_ins >= 2, "{sign_ins} sign-ins for {expired} expiries");
    let tokens = assert_listings_signed_in(&hub);
    assert!(tokens.len() >= 2, "the token was renewed");
    assert_equals_truth(&sb, &hub);
    assert_absent(&output.stderr, &[SECRET], "stderr");
    for token in &tokens {
        assert_absent(&output.stderr, &[token.as_str()], "stderr");
    }
}

#[test]
fn plain_http_hub_off_loopback_is_refused_before_signing_in() {
    let sb = Sandbox::new("plain-http");
    let mut cmd = sb.command(&["crawl", "--hub-url", "http://hub.docker.com"]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", SECRET);
    let output = run(cmd);
    assert_code(&output, 2, "crawl --hub-url http://hub.docker.com");
    let err = stderr(&output);
    assert!(err.contains("must use https"), "{err}");
    assert!(!err.contains("signing in"), "{err}");
    assert!(!sb.db().exists(), "no store was created");
}
