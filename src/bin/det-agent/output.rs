//! What the commands print on standard output, and what happens when its reader goes
//! away (`det-agent task-env | head -1`): the process ends as `cat` would, killed by
//! SIGPIPE, instead of panicking (`println!` panics on a failed write, and with `panic =
//! "abort"` that dumps core).
//!
//! SIGPIPE itself stays ignored, as Rust starts every program, while a command works:
//! std's sockets write with write(2), not send(2) with MSG_NOSIGNAL, so with SIGPIPE at
//! its default a master that resets the connection would kill `check` or `trust`
//! mid-handshake. Only a broken standard output raises it.

use std::fmt;
use std::io::{self, Write};

/// `print!` for command output, with the broken-pipe rule above (in scope in the modules
/// declared after this one: `#[macro_use]` in main.rs).
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

/// `println!` for command output, with the broken-pipe rule above.
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Writes `args` to standard output and flushes it, so that a reader gone is noticed
/// here and not at exit.
pub(crate) fn write(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        failed(&err);
    }
}

/// Ends the process for a write to standard output that failed: by SIGPIPE when its
/// reader has gone, else with exit status 1 and the reason.
pub(crate) fn failed(err: &io::Error) -> ! {
    if err.kind() == io::ErrorKind::BrokenPipe {
        // SAFETY: SIG_DFL installs no handler, so no code of ours runs in signal context;
        // raise() then ends the process as the signal's default action does.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
    // Not reached after SIGPIPE; eprintln! would panic on a stderr as broken.
    let _ = writeln!(io::stderr(), "det-agent: cannot write to standard output: {err}");
    std::process::exit(1)
}
