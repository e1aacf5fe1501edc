//! Benchmark of `identify`'s reading: a 1 GB `docker save` tarball (legacy layout: 10 layers of
//! 100 MiB, then the config and `manifest.json` at the end, as Docker writes them) read from a
//! file (seeking over the layers) and from a pipe (reading through them), each in a child
//! process reaped with `wait4`, which gives its peak memory and CPU time.
//!
//! `cargo run --release --example identify_bench [-- --mib N]` prints each figure beside its
//! target (well under a second from a file, under 50 MB of memory either way). The tarball is
//! written to a temporary folder and removed afterwards.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use digestmap::identify::input;
use sha2::{Digest as _, Sha256};

const LAYERS: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child: read the tarball at a path, or on stdin, and print what was found.
    if args.get(1).map(String::as_str) == Some("--child") {
        let images = match args.get(2).map(String::as_str) {
            Some("-") => input::read_stream(std::io::stdin().lock()),
            Some(path) => input::read_path(std::path::Path::new(path)),
            None => panic!("--child needs a path or -"),
        }
        .expect("read the tarball");
        println!(
            "{} image(s), {} layers",
            images.len(),
            images[0].diff_ids.as_ref().map_or(0, Vec::len)
        );
        return;
    }
    let mib: usize = args
        .iter()
        .position(|a| a == "--mib")
        .and_then(|i| args.get(i + 1))
        .map_or(1024, |v| v.parse().expect("--mib N"));

    let dir = std::env::temp_dir().join(format!("digestmap-identify-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("image.tar");
    let started = Instant::now();
    let size = write_tarball(&path, mib);
    println!(
        "wrote {} ({:.0} MiB) in {:.1} s",
        path.display(),
        size as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64()
    );

    let (wall, cpu, rss, out) = measured(&path.display().to_string(), None);
    println!(
        "from a file: {wall:.3} s wall, {cpu:.3} s CPU, peak memory {:.1} MB ({out}); target: well under 1 s, < 50 MB",
        rss as f64 / 1e6
    );
    let (wall, cpu, rss, out) = measured("-", Some(&path));
    println!(
        "from a pipe: {wall:.3} s wall, {cpu:.3} s CPU, peak memory {:.1} MB ({out}); target: < 50 MB",
        rss as f64 / 1e6
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs this executable as `--child <arg>` (with `stdin_file` piped in, when given); returns
/// wall seconds, CPU seconds, peak RSS in bytes and what it printed.
fn measured(arg: &str, stdin_file: Option<&std::path::Path>) -> (f64, f64, u64, String) {
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped below by wait4, which Child::wait cannot replace: it gives peak memory"
    )]
    let mut child = Command::new(exe)
        .args(["--child", arg])
        .stdin(if stdin_file.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let feeder = stdin_file.map(|path| {
        let mut stdin = child.stdin.take().unwrap();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let mut file = File::open(path).unwrap();
            // The reader stops at the end of the archive; the rest is padding.
            let _ = std::io::copy(&mut file, &mut stdin);
        })
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not reaped yet; status and usage are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    let wall = started.elapsed().as_secs_f64();
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    let exit = std::process::ExitStatus::from_raw(status);
    assert!(exit.success(), "the child failed: {exit}");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    // ru_maxrss is in KiB on Linux.
    (
        wall,
        cpu,
        u64::try_from(usage.ru_maxrss).unwrap() * 1024,
        out.trim().to_owned(),
    )
}

fn header(out: &mut impl Write, name: &str, size: u64, typeflag: u8) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.write_all(&h).unwrap();
}

fn pad(out: &mut impl Write, size: u64) {
    let padding = size.next_multiple_of(512) - size;
    out.write_all(&vec![0u8; usize::try_from(padding).unwrap()])
        .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the tarball; returns its size. Layer bytes are a repeated pseudo-random block: the
/// reader never looks at them, so only their amount matters.
fn write_tarball(path: &std::path::Path, mib: usize) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for byte in &mut block {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let per_layer = (mib / LAYERS).max(1);
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for i in 0..LAYERS {
        let size = (per_layer << 20) as u64;
        // A diff_id per layer; the reader trusts the config's list and never hashes layers.
        let id = hex(&Sha256::digest(format!("layer {i}").as_bytes()));
        header(&mut out, &format!("{id}/"), 0, b'5');
        header(&mut out, &format!("{id}/layer.tar"), size, b'0');
        for _ in 0..per_layer {
            out.write_all(&block).unwrap();
        }
        pad(&mut out, size);
        diff_ids.push(format!("sha256:{id}"));
        layers.push(format!("{id}/layer.tar"));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", hex(&Sha256::digest(&config)));
    header(&mut out, &config_name, config.len() as u64, b'0');
    out.write_all(&config).unwrap();
    pad(&mut out, config.len() as u64);
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": ["bench:1"], "Layers": layers}
    ]))
    .unwrap();
    header(&mut out, "manifest.json", manifest.len() as u64, b'0');
    out.write_all(&manifest).unwrap();
    pad(&mut out, manifest.len() as u64);
    out.write_all(&[0u8; 1024]).unwrap();
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}
