//! A `digestmap` run measured as tests/hostile.rs measures crawls: a watchdog kills it if it
//! outlives a deadline (a hang fails the test instead of stalling it), `wait4` gives its peak
//! memory, and an address-space limit makes a run that grows without bound fail at once (an
//! allocation failure) instead of taking the machine's memory while the test waits.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Address space a measured run may reserve: far above what a bounded run touches, far below
/// what an unbounded one reaches.
const ADDRESS_SPACE: libc::rlim_t = 2 << 30;

/// How a measured run ended.
pub struct Measured {
    /// The exit code; `None` when a signal (the watchdog, or an abort) ended it.
    pub code: Option<i32>,
    /// Standard output, raw.
    pub stdout: Vec<u8>,
    /// Standard error, raw.
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub elapsed: Duration,
    /// Peak resident memory in bytes.
    pub max_rss: u64,
}

impl Measured {
    /// Standard error as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Standard output as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `command` to its end (killed after `deadline`) under the address-space limit, capturing
/// its output and peak memory.
pub fn run_measured(mut command: Command, deadline: Duration) -> Measured {
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run_watched(command, deadline)
}

/// Runs `command` to its end (killed after `deadline`), capturing its output and peak memory,
/// without an address-space limit: for crawls, whose threads and allocator arenas reserve far
/// more address space than they touch (peak memory is checked instead).
pub fn run_watched(mut command: Command, deadline: Duration) -> Measured {
    let started = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped below by wait4, which Child::wait cannot replace: it gives peak memory"
    )]
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start digestmap");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(deadline) == Err(mpsc::RecvTimeoutError::Timeout) {
            // Still unreaped, so the pid is still our child's.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut status = 0;
    // SAFETY: rusage is plain data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; pid is our unreaped child.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 failed");
    let _ = done.send(());
    watchdog.join().unwrap();
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: started.elapsed(),
        // Linux gives ru_maxrss in KiB.
        max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
}
