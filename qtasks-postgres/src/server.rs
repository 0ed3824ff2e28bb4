//! A private PostgreSQL server for tests (feature `testing`): a fresh cluster (`initdb`) in a
//! temporary directory, on a free loopback port, that a test may stop abruptly and start again
//! (to test recovery) without touching the shared server other tests and people use. It is
//! shut down when the handle is dropped or the process that started it dies.
//!
//! The binaries come from `PATH`, else from the newest `/usr/lib/postgresql/<version>/bin`
//! (Debian's layout). PostgreSQL refuses to run as root: when this process is root, the
//! cluster belongs to the `postgres` system user and its commands run through `runuser`.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qtasks_core::testing::server::ServerProcess;

/// How long the server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A PostgreSQL cluster and server process owned by this program.
///
/// ```no_run
/// let mut server = qtasks_postgres::server::PostgresServer::start()?;
/// println!("PostgreSQL at {}", server.url());
/// server.crash()?; // as if the machine lost power: no shutdown checkpoint
/// server.launch()?; // recovers from its WAL
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// `Some("postgres")` when the commands run as that user (this process is root).
    run_as: Option<&'static str>,
    process: Option<ServerProcess>,
}

impl PostgresServer {
    /// Creates a cluster (`initdb`, trust authentication, user `postgres`, database
    /// `postgres`) and starts it on a free port of 127.0.0.1. Fails when the binaries are
    /// missing or the server does not come up.
    pub fn start() -> io::Result<Self> {
        let bin = bin_dir().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no PostgreSQL binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin",
            )
        })?;
        let run_as = is_root().then_some("postgres");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("qtasks-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if let Some(user) = run_as {
            let (uid, gid) = (user_id(user, "-u")?, user_id(user, "-g")?);
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let mut server = PostgresServer {
            port,
            dir,
            bin,
            run_as,
            process: None,
        };
        let data = server.data();
        let out = server
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        server.launch()?;
        Ok(server)
    }

    /// Its URL (user `postgres`, database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash would (SIGQUIT: no shutdown checkpoint, the WAL
    /// not yet written is lost, connections are cut), and waits until it has exited.
    pub fn crash(&mut self) -> io::Result<()> {
        self.signal("QUIT")
    }

    /// Stops the server the way an operator restarting it would (SIGINT, a fast shutdown:
    /// connections are cut, then a checkpoint), and waits until it has exited.
    pub fn stop(&mut self) -> io::Result<()> {
        self.signal("INT")
    }

    /// Starts the server (again) on the same port with the same data, and waits until it
    /// accepts connections (after crash recovery, if it crashed).
    pub fn launch(&mut self) -> io::Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        // The shell keeps a pipe from this process: when it closes (the handle is dropped, or
        // this process dies however it dies), the server is stopped at once. The shell exits
        // when the server does.
        let script = r#"exec 3<&0; "$0" "$@" & pid=$!; (read _ <&3; kill -QUIT $pid 2>/dev/null) & wait $pid"#;
        let mut command = self.command_sh(script);
        command
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        let log = self.dir.join("server.log");
        let mut process = ServerProcess::spawn(command, &log)?;
        let mut isready = self.command("pg_isready");
        isready
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"]);
        let what = format!("PostgreSQL on port {}", self.port);
        process.wait_ready(&what, &log, START_DEADLINE, || match isready.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("pg_isready: {status}")),
            Err(e) => Err(format!("pg_isready: {e}")),
        })?;
        self.process = Some(process);
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command of the PostgreSQL binaries, as the cluster's user.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// `sh -c script`, as the cluster's user.
    fn command_sh(&self, script: &str) -> Command {
        let mut c = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "sh"]);
                c
            }
            None => Command::new("sh"),
        };
        c.arg("-c").arg(script);
        c
    }

    /// Sends `signal` to the postmaster and waits until the server has exited.
    fn signal(&mut self, signal: &str) -> io::Result<()> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .ok_or_else(|| io::Error::other("postmaster.pid has no pid"))?;
        let killed = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !killed.success() {
            return Err(io::Error::other(format!("kill -{signal} {pid} failed")));
        }
        process.wait_exit()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // The server first (the process guard stops it), then its directory.
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root (then PostgreSQL must run as another user).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The user or group id (`flag` `-u` or `-g`) of a system user.
fn user_id(user: &str, flag: &str) -> io::Result<u32> {
    let out = Command::new("id").arg(flag).arg(user).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("no system user {user} to run PostgreSQL as")))
}

/// The directory of `initdb` and `postgres`.
fn bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        // `initdb` on PATH may be a link into the real directory (Debian's /usr/local/bin).
        let found = std::env::split_paths(&path)
            .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .find(|d| has(d));
        if found.is_some() {
            return found;
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}
