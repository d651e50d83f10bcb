//! Child processes that can never outlive the stack.
//!
//! Every process is started in its own process group, so that a signal to the
//! group also reaches what it forked (nginx workers, PostgreSQL backends). The
//! group is killed when its [`ManagedChild`] is dropped (a test that fails or
//! panics unwinds through the drop) and, once [`kill_children_on_signal`] is
//! installed, when the parent gets SIGINT or SIGTERM (Ctrl-C on `cargo test`).
//! Output is read line by line, kept in a bounded tail for error reports and
//! assertions, and optionally echoed with the process's name as a prefix.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Lines of output kept per process.
const LOG_TAIL_LINES: usize = 20_000;

/// Process groups alive right now, for the signal handler. A fixed array of
/// atomics because a signal handler may not lock or allocate.
static LIVE_GROUPS: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];

fn register_group(pgid: i32) {
    for slot in &LIVE_GROUPS {
        if slot
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

fn unregister_group(pgid: i32) {
    for slot in &LIVE_GROUPS {
        if slot
            .compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

extern "C" fn kill_groups_and_reraise(signal: libc::c_int) {
    for slot in &LIVE_GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) is async-signal-safe.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    // SAFETY: signal(2) and raise(3) are async-signal-safe; re-raising with the
    // default action ends the process with the status the sender expects.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Kills every managed process group when this process gets SIGINT or SIGTERM,
/// then dies of that signal. For test binaries: their stacks have no graceful
/// path, and without this a Ctrl-C would leave replicas and databases behind.
/// `devstack up` does not use it: it stops its stack gracefully instead.
pub fn kill_children_on_signal() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only calls async-signal-safe functions.
            unsafe {
                libc::signal(
                    signal,
                    kill_groups_and_reraise as *const () as libc::sighandler_t,
                )
            };
        }
    });
}

/// The last lines a process wrote to stdout and stderr.
#[derive(Clone, Default)]
pub struct LogTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl LogTail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == LOG_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// All kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }

    /// The last `count` lines joined, for error messages.
    pub fn last(&self, count: usize) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(count);
        lines[start..].join("\n")
    }
}

/// How a process's output is shown besides being kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Printed to stdout as `name | line` (the `devstack up` log stream).
    Stdout,
    /// Only kept (tests print the tails when they fail).
    Quiet,
}

/// A running child process in its own process group.
pub struct ManagedChild {
    name: String,
    child: Child,
    pgid: i32,
}

impl ManagedChild {
    /// Starts `command` in a new process group, its output read into `tail`.
    pub fn spawn(name: &str, mut command: Command, tail: &LogTail, echo: Echo) -> Result<Self> {
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited before it got a pid"))?;
        let pgid = i32::try_from(pid).context("pid out of range")?;
        register_group(pgid);
        if let Some(stdout) = child.stdout.take() {
            forward_lines(name, stdout, tail.clone(), echo);
        }
        if let Some(stderr) = child.stderr.take() {
            forward_lines(name, stderr, tail.clone(), echo);
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            pgid,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `signal` to the main process only (nginx's master, PostgreSQL's
    /// postmaster, the replica), which then stops its own children.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pgid), signal)
            .with_context(|| format!("sending {signal} to {}", self.name))
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("{} did not exit within {timeout:?}", self.name),
        }
    }

    /// Sends `signal`, waits up to `timeout` for the process to exit, then kills
    /// whatever is left of its group.
    pub async fn stop(mut self, signal: Signal, timeout: Duration) -> Result<ExitStatus> {
        // The process may already be gone; the wait below tells.
        let _ = self.signal(signal);
        let result = self.wait_timeout(timeout).await;
        self.kill_group();
        match result {
            Ok(status) => Ok(status),
            Err(error) => {
                let status = self.child.wait().await?;
                Err(error.context(format!("{} killed ({status})", self.name)))
            }
        }
    }

    /// SIGKILL to the whole group, then reaps the main process.
    pub async fn kill(mut self) -> Result<ExitStatus> {
        self.kill_group();
        Ok(self.child.wait().await?)
    }

    fn kill_group(&mut self) {
        // ESRCH (nothing left in the group) is the expected case after a stop.
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.kill_group();
        // Reap now if possible; tokio reaps orphaned children otherwise.
        let _ = self.child.try_wait();
        unregister_group(self.pgid);
    }
}

fn forward_lines(
    name: &str,
    stream: impl AsyncRead + Unpin + Send + 'static,
    tail: LogTail,
    echo: Echo,
) {
    let prefix = format!("{name:>10} | ");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo == Echo::Stdout {
                println!("{prefix}{line}");
            }
            tail.push(line);
        }
    });
}

/// Runs a short-lived command to completion; its output is returned on
/// success and part of the error otherwise.
pub async fn run(what: &str, mut command: Command) -> Result<String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .with_context(|| format!("{what}: cannot run {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// A tool's binary: `configured` (the operator's, from
/// [`Environment`](crate::config::Environment)) when given, else Debian's
/// `debian` path when it exists, else `name` looked up on PATH.
pub fn program(configured: Option<&Path>, debian: &str, name: &str) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    let debian = PathBuf::from(debian);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

/// A system user a command runs as instead of the current one (PostgreSQL's
/// server binaries refuse to run as root).
#[derive(Clone, Debug)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// A command for `program`, run as `user` when that is set.
pub fn command_as(program: &Path, user: Option<&SystemUser>) -> Command {
    match user {
        None => Command::new(program),
        Some(user) => {
            // setpriv execs the program directly, so the pid we hold is the
            // program's own and signals reach it (runuser would sit in between).
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            command
        }
    }
}
