//! Running a vendor tool: the [`Runner`] seam that tests replace with recorded outputs, the
//! real [`SystemRunner`] (a timeout, bounded output, stdin closed), and [`ToolError`], which
//! says which command failed and how.
//!
//! Determined's agent runs the tools with `exec.Command(…).Output()`: no timeout, stderr
//! dropped. Here a hung tool is stopped after the timeout and a failing tool's stderr is
//! kept for the message.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::text::escape;

/// Largest stdout or stderr kept from one tool run. `nvidia-smi -L` on a full node is a few
/// kilobytes; anything near this limit is not the output we asked for.
pub const OUTPUT_LIMIT: usize = 4 << 20;

/// Runs a program and returns what it printed. Implemented by [`SystemRunner`]; tests
/// implement it with recorded outputs.
pub trait Runner {
    /// Runs `program` (looked up on `PATH`) with `args` and waits for it to finish.
    fn run(&self, program: &str, args: &[String]) -> Result<ToolOutput, RunError>;
}

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl Exit {
    /// Whether it exited with status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit status {code}"),
            Exit::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// What a finished program printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    /// How it ended.
    pub exit: Exit,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl ToolOutput {
    /// A run that exited 0 and printed `stdout`.
    pub fn success(stdout: impl Into<Vec<u8>>) -> Self {
        ToolOutput { exit: Exit::Code(0), stdout: stdout.into(), stderr: Vec::new() }
    }

    /// A run that exited with `code` and printed `stdout` and `stderr`.
    pub fn failure(code: i32, stdout: impl Into<Vec<u8>>, stderr: impl Into<Vec<u8>>) -> Self {
        ToolOutput { exit: Exit::Code(code), stdout: stdout.into(), stderr: stderr.into() }
    }
}

/// Why a program could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such program on `PATH`.
    #[error("not found on PATH")]
    NotFound,
    /// It exists but could not be started (not executable, say).
    #[error("cannot be started: {0}")]
    Spawn(io::Error),
    /// It did not finish within the timeout and was killed.
    #[error("did not finish within {} s and was stopped", .0.as_secs_f64())]
    TimedOut(Duration),
    /// It printed more than [`OUTPUT_LIMIT`] bytes on one stream.
    #[error("printed more than {} MiB", OUTPUT_LIMIT >> 20)]
    TooMuchOutput,
    /// Waiting for it or reading its output failed.
    #[error("{0}")]
    Io(io::Error),
}

/// A vendor tool that could not tell us its devices: the command line and what went wrong.
/// Text the tool printed is shown escaped.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; `command` is the command line as run.
pub enum ToolError {
    /// The program is not installed (not on `PATH`).
    #[error("`{command}`: {} is not installed (not found on PATH)", program(command))]
    NotFound { command: String },
    /// The program could not be started, or waiting for it failed.
    #[error("`{command}` could not be run: {error}")]
    Run { command: String, error: RunError },
    /// The program ran and failed.
    #[error("`{command}` failed with {exit}{}", said(stdout, stderr))]
    Failed { command: String, exit: Exit, stdout: String, stderr: String },
    /// The program succeeded but its output is not what the command prints.
    #[error("`{command}` printed {} that cannot be read: {reason}", what(*line_number, line))]
    Unparsable { command: String, line_number: Option<usize>, line: String, reason: String },
}

impl ToolError {
    /// The command line that failed.
    pub fn command(&self) -> &str {
        match self {
            ToolError::NotFound { command }
            | ToolError::Run { command, .. }
            | ToolError::Failed { command, .. }
            | ToolError::Unparsable { command, .. } => command,
        }
    }

    /// Whether the tool printed `text` (on either stream) before failing.
    pub(crate) fn printed(&self, text: &str) -> bool {
        matches!(self, ToolError::Failed { stdout, stderr, .. } if stdout.contains(text) || stderr.contains(text))
    }
}

/// `line N "…"`, or `output` when the fault is not on one line.
fn what(line_number: Option<usize>, line: &str) -> String {
    match line_number {
        Some(n) => format!("line {n} \"{}\"", escape(line)),
        None => "output".to_owned(),
    }
}

fn program(command: &str) -> &str {
    command.split(' ').next().unwrap_or(command)
}

/// `: <what it said>`, stderr first (where tools should write errors), else stdout (where
/// nvidia-smi writes them), trimmed to a few hundred characters and escaped.
fn said(stdout: &str, stderr: &str) -> String {
    const SHOWN: usize = 400;
    let text = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
    if text.is_empty() {
        return " and printed nothing".to_owned();
    }
    let cut = text.char_indices().nth(SHOWN).map_or(text, |(at, _)| &text[..at]);
    let more = if cut.len() < text.len() { " …" } else { "" };
    format!(": \"{}\"{more}", escape(cut))
}

/// The command line as shown in messages: the program and its arguments, space-separated.
pub(crate) fn command_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Runs tools as child processes: stdin closed, stdout and stderr captured up to
/// [`OUTPUT_LIMIT`], killed after the timeout.
#[derive(Clone, Debug)]
pub struct SystemRunner {
    timeout: Duration,
    path: Option<OsString>,
}

impl SystemRunner {
    /// A runner that allows each run `timeout`.
    pub fn new(timeout: Duration) -> Self {
        SystemRunner { timeout, path: None }
    }

    /// Looks programs up on `path` (and gives the child that `PATH`) instead of the
    /// process's own `PATH`.
    pub fn with_path(mut self, path: impl Into<OsString>) -> Self {
        self.path = Some(path.into());
        self
    }
}

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[String]) -> Result<ToolOutput, RunError> {
        let deadline = Instant::now() + self.timeout;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        let mut child = spawn(&mut command)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let Some(status) = wait_until(&mut child, deadline)? else {
            // A tool stuck inside the driver (uninterruptible sleep, a classic of hung GPUs)
            // dies only when the driver lets go, so it is reaped on a thread of its own
            // instead of waited for here. Its pipes' readers end when it does.
            let _ = child.kill();
            thread::spawn(move || child.wait());
            return Err(RunError::TimedOut(self.timeout));
        };
        let exit = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        };
        // The program has exited; a grandchild that inherited its stdout could still keep
        // the pipe open, so the readers get what is left of the timeout too.
        let stdout = collect(&stdout, deadline, self.timeout)?;
        let stderr = collect(&stderr, deadline, self.timeout)?;
        Ok(ToolOutput { exit, stdout, stderr })
    }
}

/// Starts the child. `ETXTBSY` ("text file busy") is retried a few times: it happens when
/// the program file was just written and another thread forked meanwhile (tests writing
/// fake tools), and clears within milliseconds.
fn spawn(command: &mut Command) -> Result<Child, RunError> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match command.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RunError::NotFound),
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(RunError::Spawn(e)),
        }
    }
}

type Drained = mpsc::Receiver<io::Result<Vec<u8>>>;

/// Reads a pipe to its end on a thread, keeping up to [`OUTPUT_LIMIT`] bytes and discarding
/// the rest so the child never blocks on a full pipe. `Err(InvalidData)` marks overflow.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Drained {
    let (tx, rx) = mpsc::channel();
    match pipe {
        None => {
            let _ = tx.send(Ok(Vec::new()));
        }
        Some(mut pipe) => {
            thread::spawn(move || {
                let mut kept = Vec::new();
                let result = (&mut pipe).take(OUTPUT_LIMIT as u64 + 1).read_to_end(&mut kept).and_then(|_| {
                    if kept.len() > OUTPUT_LIMIT {
                        io::copy(&mut pipe, &mut io::sink())?;
                        Err(io::Error::from(io::ErrorKind::InvalidData))
                    } else {
                        Ok(kept)
                    }
                });
                let _ = tx.send(result);
            });
        }
    }
    rx
}

fn collect(drained: &Drained, deadline: Instant, timeout: Duration) -> Result<Vec<u8>, RunError> {
    match drained.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(RunError::TooMuchOutput),
        Ok(Err(e)) => Err(RunError::Io(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(RunError::TimedOut(timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(RunError::Io(io::Error::other("output reader ended"))),
    }
}

/// Waits for the child until `deadline`; `None` if it is still running then. Hand-written
/// polling rather than the `wait-timeout` crate, which installs a process-wide SIGCHLD
/// handler: not something a library inside a tokio daemon should do. The poll interval
/// grows to 20 ms, against tool runs of 100 ms and more.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<std::process::ExitStatus>, RunError> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Io)? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs `program` through `runner` and turns every way it can fail into a [`ToolError`]
/// naming the command line; `Ok` only for exit status 0, with stdout as text.
pub(crate) fn run_tool(runner: &dyn Runner, program: &str, args: &[String]) -> Result<String, ToolError> {
    let command = command_line(program, args);
    match runner.run(program, args) {
        Err(RunError::NotFound) => Err(ToolError::NotFound { command }),
        Err(error) => Err(ToolError::Run { command, error }),
        Ok(out) if out.exit.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(ToolError::Failed {
            command,
            exit: out.exit,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_what_it_said() {
        let failed = ToolError::Failed {
            command: "nvidia-smi -L".into(),
            exit: Exit::Code(9),
            stdout: "NVIDIA-SMI has failed\n".into(),
            stderr: String::new(),
        };
        assert_eq!(failed.to_string(), "`nvidia-smi -L` failed with exit status 9: \"NVIDIA-SMI has failed\"");
        let quiet = ToolError::Failed {
            command: "rocm-smi".into(),
            exit: Exit::Signal(11),
            stdout: String::new(),
            stderr: " \n".into(),
        };
        assert_eq!(quiet.to_string(), "`rocm-smi` failed with signal 11 and printed nothing");
        let missing = ToolError::NotFound { command: "nvidia-smi -L".into() };
        assert_eq!(missing.to_string(), "`nvidia-smi -L`: nvidia-smi is not installed (not found on PATH)");
        let garbage = ToolError::Unparsable {
            command: "nvidia-smi -L".into(),
            line_number: Some(2),
            line: "x\x1by".into(),
            reason: "expected 3 fields".into(),
        };
        assert_eq!(
            garbage.to_string(),
            "`nvidia-smi -L` printed line 2 \"x\\x1by\" that cannot be read: expected 3 fields"
        );
    }

    #[test]
    fn long_output_is_cut_in_messages() {
        let failed = ToolError::Failed {
            command: "t".into(),
            exit: Exit::Code(1),
            stdout: String::new(),
            stderr: "é".repeat(1000),
        };
        let text = failed.to_string();
        assert!(text.ends_with("\" …"), "{text}");
        assert_eq!(text.matches('é').count(), 400);
    }
}
