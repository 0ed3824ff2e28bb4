//! [`ServerProcess`]: a server a test owns (the private `redis-server` of `qtasks-redis`, the
//! private PostgreSQL of `qtasks-postgres`), run by a shell that stops it when this handle's
//! pipe to the shell closes, so that it never outlives the program that started it, however
//! that program ends.
//!
//! The command is a shell script that duplicates its stdin (the guard pipe) to a descriptor,
//! starts the server in the background, reads the guard in a background subshell that stops
//! the server once the read returns, and waits for the server, e.g.
//! `exec 3<&0; server "$@" & pid=$!; (read _ <&3; kill -9 $pid) & wait $pid`.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process and the guard pipe to the shell that runs it; dropping it stops the
/// server and waits until the shell has exited.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    guard: ChildStdin,
}

impl ServerProcess {
    /// Spawns `command` (a guarding shell, see the module docs) with its output appended to
    /// the file `log`.
    pub fn spawn(mut command: Command, log: &Path) -> io::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let guard = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin pipe to the server's shell"))?;
        Ok(ServerProcess { child, guard })
    }

    /// Waits until `answers` says the server answers (`Err` says why it does not yet), at most
    /// `deadline`; fails at once when the server exits first, naming `what` and its `log`.
    pub fn wait_ready(
        &mut self,
        what: &str,
        log: &Path,
        deadline: Duration,
        mut answers: impl FnMut() -> Result<(), String>,
    ) -> io::Result<()> {
        let until = Instant::now() + deadline;
        loop {
            let why = match answers() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{what} exited at start ({status}); see {}",
                    log.display()
                )));
            }
            if Instant::now() > until {
                return Err(io::Error::other(format!(
                    "{what} did not answer within {deadline:?}: {why}"
                )));
            }
            // Waiting for another process to come up: there is nothing to be notified by.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server has exited (after the caller told it to stop), then closes the
    /// guard pipe.
    pub fn wait_exit(mut self) -> io::Result<()> {
        self.child.wait().map(drop)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.guard.write_all(b"stop\n");
        let _ = self.child.wait();
    }
}
