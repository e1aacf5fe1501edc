//! Debian's real `docker-registry` (the CNCF distribution registry), started for one test.
//!
//! Generated config: filesystem storage in a temporary directory, `127.0.0.1` on a free port,
//! deletes enabled, foreign-layer URLs allowed (Windows-style layers), logs to a file that a
//! failed start prints. The catalog (`/v2/_catalog`) is always on in this version. No auth: the
//! Hub-like front (`front.rs`) adds it, and the open registry doubles as an MCR-like one.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use url::Url;

/// How long the registry may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `docker-registry`; killed (and its storage removed) on drop.
pub struct RegistryProcess {
    child: Child,
    dir: PathBuf,
    url: Url,
}

impl RegistryProcess {
    /// Starts the registry and waits until `GET /v2/` answers 200.
    pub async fn start() -> RegistryProcess {
        // The free port is found before the registry binds it: another test may take it in
        // between, so a start that loses that race is tried again on another port.
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(process) => return process,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("docker-registry could not bind a free port three times");
    }

    async fn try_start() -> Result<RegistryProcess, String> {
        let binary = which_registry();
        let dir = std::env::temp_dir().join(format!(
            "digestmap-registry-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("create the registry's directory");
        let port = free_port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: digestmap-tests\n\
             validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n",
            data = dir.join("data").display()
        );
        std::fs::File::create(dir.join("config.yml"))
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write the registry's config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("create the log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let url: Url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let mut process = RegistryProcess { child, dir, url };
        process.wait_ready().await?;
        Ok(process)
    }

    /// The registry's origin (open: no auth).
    pub fn url(&self) -> &Url {
        &self.url
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        let ping = self.url.join("/v2/").unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "docker-registry exited ({status}) before answering:\n{}",
                    self.log()
                ));
            }
            if let Ok(response) = client.get(ping.clone()).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "docker-registry did not answer within {START_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The `docker-registry` binary; the tests need it (`.ci/run` installs it).
fn which_registry() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("docker-registry"))
            .find(|candidate| candidate.is_file())
    });
    found.expect(
        "docker-registry is not installed: `apt-get install -y docker-registry` (see .ci/run)",
    )
}

/// A port nobody listens on right now (the OS picks it; the registry binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
