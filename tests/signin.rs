//! End-to-end tests of Docker Hub sign-in: the real `digestmap` binary against the project's
//! Docker Hub double (tests/support/fake_hub), and checks that the secret and the token never show
//! up where they must not.
//!
//! The double is not Docker Hub's origin, so only `--token-stdin` signs in to it: credentials
//! found in the environment or docker's `config.json` are for https://hub.docker.com alone, and
//! the tests prove they never reach the double. How those sources are read (precedence, every
//! `config.json` form) is tested on the library in `src/net/auth.rs`.
//!
//! Every run gets a scratch `HOME` and no `DOCKERHUB_*` or `DOCKER_CONFIG` of its own, so the
//! credentials of the person running the tests are never read, let alone sent.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::fake_hub::{FakeHub, FakeHubConfig, RequestRecord};
use support::sandbox::{Sandbox, assert_code, output_with_input, stderr, stdout};

const USER: &str = "crawler";
const SECRET: &str = "dckr_pat_9f3Kq7ZxVb2LmN8p";
const WRONG: &str = "dckr_pat_wrongwrongwrong";

impl Sandbox {
    /// `crawl` of `hub` with fast pacing and `extra` flags.
    fn crawl_command(&self, hub: &FakeHub, extra: &[&str]) -> Command {
        self.fast_crawl(&hub.url(), extra)
    }

    /// `crawl` of `hub` signed in as [`USER`] with `token` piped to `--token-stdin`, then `extra`
    /// flags; run to its end.
    fn signed_crawl(&self, hub: &FakeHub, token: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--token-stdin", "--username", USER];
        args.extend_from_slice(extra);
        with_token(self.crawl_command(hub, &args), token)
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

/// Runs `cmd` with `token` and a line end on its standard input.
fn with_token(mut cmd: Command, token: &str) -> Output {
    output_with_input(&mut cmd, format!("{token}\n"))
}

fn sign_ins(hub: &FakeHub) -> usize {
    hub.requests().iter().filter(|r| is_sign_in(r)).count()
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
fn token_stdin_signs_in_and_never_leaks() {
    let hub = hub_with_credentials(|c| c.anonymous_cap = true);
    let sb = Sandbox::new("stdin");
    // Wrong credentials in the environment and in config.json: the explicit token wins (and
    // those are not for this host anyway).
    let auth = "Y3Jhd2xlcjpkY2tyX3BhdF93cm9uZ3dyb25nd3Jvbmc="; // crawler:dckr_pat_wrongwrongwrong
    sb.docker_config(
        &sb.home().join(".docker"),
        &format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#),
    );
    let mut cmd = sb.crawl_command(&hub, &["-vv", "--workers", "4", "--token-stdin"]);
    cmd.env("DOCKERHUB_USERNAME", USER)
        .env("DOCKERHUB_TOKEN", WRONG);
    let output = with_token(cmd, SECRET);
    assert_code(&output, 0, "crawl");
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "signing in to {} as crawler with credentials from --token-stdin",
            hub.url()
        )),
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
    let secrets = [SECRET, WRONG, tokens[0].as_str()];
    assert_absent(&output.stderr, &secrets, "crawl -vv stderr");
    assert_absent(&output.stdout, &secrets, "crawl stdout");
    assert_absent(&std::fs::read(sb.db()).unwrap(), &secrets, "the store");
    assert_absent(&std::fs::read(&out).unwrap(), &secrets, "the dataset");
    assert_absent(&status.stdout, &secrets, "status");
}

/// Writes `docker-credential-test` into `bin`: it answers `get` for any server (logging the
/// server it was asked about to `asked`), with the double's credentials.
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
fn found_credentials_stay_with_docker_hub() {
    // The double accepts exactly the credentials the environment, config.json and the helper
    // hold: were any of them sent, it would sign in.
    let hub = hub_with_credentials(|_| {});
    let right = "Y3Jhd2xlcjpkY2tyX3BhdF85ZjNLcTdaeFZiMkxtTjhw"; // crawler:dckr_pat_9f3Kq7ZxVb2LmN8p
    let path = format!(
        "{}:{}",
        "BIN",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
    );
    for (name, env, config) in [
        (
            "env-and-auth",
            true,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{right}"}}}}}}"#),
        ),
        (
            "helpers",
            false,
            r#"{"auths":{"https://index.docker.io/v1/":{}},"credsStore":"test","credHelpers":{"docker.io":"test"}}"#
                .to_owned(),
        ),
    ] {
        hub.clear_requests();
        let sb = Sandbox::new(name);
        let bin = sb.path("bin");
        let asked = sb.path("asked.txt");
        credential_helper(&bin, &asked);
        let docker = sb.docker_config(&sb.path("docker"), &config);
        let mut cmd = sb.crawl_command(&hub, &["-vv"]);
        cmd.env("DOCKER_CONFIG", &docker)
            .env("PATH", path.replace("BIN", bin.to_str().unwrap()));
        if env {
            cmd.env("DOCKERHUB_USERNAME", USER)
                .env("DOCKERHUB_TOKEN", SECRET);
        }
        let output = run(cmd);
        assert_code(&output, 0, &format!("crawl with {name}"));
        let err = stderr(&output);
        let sources = if env {
            format!(
                "DOCKERHUB_USERNAME/DOCKERHUB_TOKEN and {}",
                docker.join("config.json").display()
            )
        } else {
            docker.join("config.json").display().to_string()
        };
        assert!(
            err.contains(&format!(
                "not signing in to {} with the credentials in {sources}: they are for Docker Hub (https://hub.docker.com) only",
                hub.url()
            )),
            "{name}: {err}"
        );
        let records = hub.requests();
        assert!(!records.is_empty());
        assert!(
            records
                .iter()
                .all(|r| !is_sign_in(r) && r.authorization.is_none()),
            "{name}: credentials reached the double"
        );
        assert!(!asked.exists(), "{name}: the credential helper was run");
        assert_equals_truth(&sb, &hub);
        assert_absent(&output.stderr, &[SECRET, right], "stderr");
    }
}

#[test]
fn a_refused_token_is_sent_once_and_exits_2_before_crawling() {
    let hub = hub_with_credentials(|_| {});
    let sb = Sandbox::new("wrong");
    let output = sb.signed_crawl(&hub, WRONG, &["-vv"]);
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
    // Hub's 401 to a sign-in is final: sending the token again could lock the account.
    let records = hub.requests();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.path_and_query.as_str(), r.status))
            .collect::<Vec<_>>(),
        [("/v2/auth/token", 401)],
        "one sign-in request and nothing else"
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
    let output = sb.signed_crawl(&hub, SECRET, &[]);
    assert_code(&output, 0, "crawl with the right token");
    assert_eq!(sign_ins(&hub), 1);
    assert_listings_signed_in(&hub);
    assert_equals_truth(&sb, &hub);
}

#[test]
fn falls_back_to_users_login_when_auth_token_is_missing() {
    let hub = hub_with_credentials(|c| c.no_auth_token_endpoint = true);
    let sb = Sandbox::new("fallback");
    let output = sb.signed_crawl(&hub, SECRET, &[]);
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
fn token_stdin_usage_errors() {
    let hub = hub_with_credentials(|_| {});
    // Without a user name, or with an empty standard input: usage errors, nothing sent.
    let sb = Sandbox::new("stdin-usage");
    let output = run(sb.crawl_command(&hub, &["--token-stdin"]));
    assert_code(&output, 2, "--token-stdin with empty stdin");
    assert!(stderr(&output).contains("standard input holds no token"));
    let output = with_token(sb.crawl_command(&hub, &["--token-stdin"]), SECRET);
    assert_code(&output, 2, "--token-stdin without a user name");
    assert!(
        stderr(&output).contains("--username"),
        "{}",
        stderr(&output)
    );
    let output = run(sb.crawl_command(&hub, &["--username", USER]));
    assert_code(&output, 2, "--username without --token-stdin");
    assert!(hub.requests().is_empty());
    assert!(!sb.db().exists(), "a usage error creates no store");
}

#[test]
fn expiring_token_is_renewed_mid_crawl() {
    // The client assumes a 10-minute token (the double's are no JWTs), so each expiry shows
    // as a 401. About 12 requests at 4 a second outlast a two-second lifetime, and a renewed
    // token reaches the double well within its two seconds even on a loaded machine.
    let hub = hub_with_credentials(|c| c.token_ttl = Some(Duration::from_secs(2)));
    let sb = Sandbox::new("expiry");
    let url = hub.url();
    let cmd = sb.command(&[
        "crawl",
        "--hub-url",
        &url,
        "--rps",
        "4",
        "--workers",
        "2",
        "--retry-base-ms",
        "20",
        "--token-stdin",
        "--username",
        USER,
    ]);
    let output = with_token(cmd, SECRET);
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

/// Crawls until Hub turns against the credentials at request `from`, as `change` says; the
/// crawl must stop with exit 2 and `message` after exactly one more sign-in, and resume to the
/// truth once the double is healed.
fn stops_after_one_renewal(name: &str, change: fn(&mut FakeHubConfig, u64), message: &str) {
    // Request 0 is the sign-in, 1 the repository list: the third request on meets the change.
    let hub = hub_with_credentials(|c| change(c, 3));
    let sb = Sandbox::new(name);
    let output = sb.signed_crawl(&hub, SECRET, &["--workers", "2"]);
    assert_code(&output, 2, name);
    let err = stderr(&output);
    assert!(err.contains(message), "{name}: {err}");
    assert!(err.contains("crawl --resume"), "{name}: {err}");
    assert_eq!(
        sign_ins(&hub),
        2,
        "{name}: the first sign-in and one renewal"
    );
    let refused = hub
        .requests()
        .iter()
        .filter(|r| r.status == 401 && !is_sign_in(r))
        .count();
    assert!(
        (1..=4).contains(&refused),
        "{name}: {refused} listings refused: each worker stops at its first refusal or the renewed token's"
    );
    assert_absent(&output.stderr, &[SECRET], "stderr");

    // The run is unfinished, and resumes once Hub takes the credentials again.
    let status = run(sb.command(&["status"]));
    assert!(
        stdout(&status).contains("unfinished"),
        "{name}: {}",
        stdout(&status)
    );
    hub.update(|c| {
        c.revoke_from = None;
        c.refuse_tokens_from = None;
    });
    hub.clear_requests();
    let output = sb.signed_crawl(&hub, SECRET, &["--resume"]);
    assert_code(&output, 0, &format!("{name}: crawl --resume"));
    assert_eq!(sign_ins(&hub), 1);
    assert_equals_truth(&sb, &hub);
}

#[test]
fn credentials_revoked_mid_crawl_end_it_after_one_sign_in() {
    stops_after_one_renewal(
        "revoked",
        |c, at| c.revoke_from = Some(at),
        "failed: incorrect username or password",
    );
}

#[test]
fn a_401_to_a_renewed_token_ends_the_crawl() {
    stops_after_one_renewal(
        "refused-token",
        |c, at| c.refuse_tokens_from = Some(at),
        "answered 401 to a token it had just issued to crawler",
    );
}

#[test]
fn hub_url_userinfo_is_refused_without_repeating_it() {
    let sb = Sandbox::new("userinfo");
    for url in [
        format!("http://{USER}:{SECRET}@127.0.0.1:9"),
        format!("https://{SECRET}@hub.docker.com"),
        // Not even a valid URL (the port): the parse error must not repeat it either.
        format!("http://{USER}:{SECRET}@127.0.0.1:99999"),
    ] {
        let output = run(sb.command(&["-vv", "crawl", "--hub-url", &url]));
        assert_code(&output, 2, "crawl --hub-url with userinfo");
        let err = stderr(&output);
        assert!(err.contains("***@"), "{err}");
        assert!(!err.contains(&format!("{USER}:")), "{err}");
        assert_absent(&output.stderr, &[SECRET], "stderr");
        assert!(!sb.db().exists(), "no store was created");
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
