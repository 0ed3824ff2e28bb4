//! A private `redis-server` for tests and examples: started on a free loopback port with an
//! append-only file in a fresh directory, stopped and restarted on demand (to test recovery),
//! and killed when the handle is dropped or the process that started it dies.
//!
//! Only with the feature `testing` (off by default, so production builds do not carry it).

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use deadpool_redis::redis;
use qtasks_core::testing::server::ServerProcess;

/// How long the server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// A `redis-server` process owned by this program.
///
/// ```no_run
/// let server = qtasks_redis::server::RedisServer::start()?;
/// println!("Redis at {}", server.url());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    process: Option<ServerProcess>,
    /// Whether the watchdog also deletes `dir` when this process dies (for a server kept for
    /// the whole life of the process, whose handle is never dropped).
    remove_dir_on_exit: bool,
}

impl RedisServer {
    /// Starts `redis-server` (from `PATH`) on a free port of 127.0.0.1 and waits until it
    /// answers. Fails when the binary is missing or the server does not come up.
    pub fn start() -> io::Result<Self> {
        Self::start_with(false)
    }

    fn start_with(remove_dir_on_exit: bool) -> io::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("qtasks-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            port,
            dir,
            process: None,
            remove_dir_on_exit,
        };
        server.launch()?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL (database 0).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server the way an operator restarting it would (`SHUTDOWN`, which writes the
    /// append-only file), and waits until it has exited.
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        if let Ok(client) = redis::Client::open(self.url()) {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) {
                // The server closes the connection as it exits: the reply is an error.
                let _ = redis::cmd("SHUTDOWN").query::<()>(&mut conn);
            }
        }
        process.wait_exit()
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.launch()
    }

    fn launch(&mut self) -> io::Result<()> {
        // The shell keeps a pipe from this process: when it closes (the handle is dropped, or
        // this process dies however it dies), the server is killed. The shell itself exits
        // when the server does.
        let script = r#"exec 3<&0; redis-server "$@" & pid=$!; (read _ <&3; kill -9 $pid 2>/dev/null; if [ -n "$QTASKS_REMOVE_DIR" ]; then sleep 0.2; rm -rf "$QTASKS_REMOVE_DIR"; fi) & wait $pid"#;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "everysec"])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(&self.dir)
            .env(
                "QTASKS_REMOVE_DIR",
                if self.remove_dir_on_exit {
                    self.dir.as_os_str()
                } else {
                    std::ffi::OsStr::new("")
                },
            );
        let log = self.dir.join("redis.log");
        let client = redis::Client::open(self.url()).map_err(io::Error::other)?;
        let what = format!("redis-server on port {} (is it installed?)", self.port);
        let process = self.process.insert(ServerProcess::spawn(command, &log)?);
        process.wait_ready(&what, &log, START_DEADLINE, || {
            client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The server first (the process guard stops it), then its directory.
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Redis URL tests use: `QTASKS_REDIS_URL` when set, else a private server started once
/// per process. `None` when no server can be started, so the caller skips; with
/// `QTASKS_REQUIRE_REDIS=1` (as in CI) that panics instead, naming the cause.
pub fn test_url() -> Option<String> {
    static URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("QTASKS_REDIS_URL") {
            return Some(url);
        }
        match RedisServer::start_with(true) {
            Ok(server) => {
                let url = server.url();
                // Kept for the life of the process; the server dies with it.
                std::mem::forget(server);
                Some(url)
            }
            Err(e) => {
                if std::env::var("QTASKS_REQUIRE_REDIS").as_deref() == Ok("1") {
                    panic!("QTASKS_REQUIRE_REDIS=1 but no Redis is available: {e}; install redis-server or set QTASKS_REDIS_URL");
                }
                eprintln!("skipping Redis tests: {e} (set QTASKS_REDIS_URL or install redis-server)");
                None
            }
        }
    })
    .clone()
}
