//! A pseudo-terminal for the tests of the live progress lines, which are drawn only when stderr
//! is a terminal.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};

/// A pseudo-terminal, 200 columns wide: (the side the test reads, the side a child writes to).
pub fn pty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 50,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors it opened into the two integers, which are then
    // owned here and nowhere else.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Runs `command` to its end with stderr on a pseudo-terminal (stdin empty, stdout piped):
/// its output (stderr empty) and everything the terminal was sent.
pub fn run_on_terminal(mut command: Command) -> (Output, String) {
    let (mut terminal, child_side) = pty();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(child_side));
    let child = command.spawn().expect("start the command on a terminal");
    // The child holds the terminal now: once it exits, reading the other side ends (EIO).
    drop(command);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match terminal.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let out = child.wait_with_output().expect("wait for the command");
    (out, reader.join().expect("the terminal reader"))
}
