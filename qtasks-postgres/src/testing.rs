//! Test helpers (feature `testing`): the URL of the test PostgreSQL server, whether it can be
//! reached, and a fresh schema per test binary. Not for production builds.
//!
//! The server is `QTASKS_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`. When it
//! cannot be reached, [`available`] says so on stderr and tests skip, except when
//! `QTASKS_REQUIRE_POSTGRES=1` (CI), where it panics so that the tests fail.

use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::NoTls;

/// The default test server.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL (without our query parameters).
pub fn url() -> String {
    std::env::var("QTASKS_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Whether the test server accepts TCP connections (checked once per process). Prints why
/// tests skip when it does not; panics then when `QTASKS_REQUIRE_POSTGRES=1`.
pub fn available() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    *UP.get_or_init(|| {
        let url = url();
        let up = url
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|c| {
                let host = match c.get_hosts().first()? {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(_) => return Some(true),
                };
                let port = c.get_ports().first().copied().unwrap_or(5432);
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .ok()?
                    .next()?;
                Some(
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(),
                )
            })
            .unwrap_or(false);
        if !up {
            let required = std::env::var("QTASKS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PostgreSQL is not reachable at {url} and QTASKS_REQUIRE_POSTGRES=1: start it (pg_ctlcluster 15 main start) or set QTASKS_POSTGRES_URL"
            );
            eprintln!(
                "skipping: PostgreSQL is not reachable at {url} (set QTASKS_POSTGRES_URL, or QTASKS_REQUIRE_POSTGRES=1 to fail instead)"
            );
        }
        up
    })
}

/// A schema name of its own for this test binary (`qtasks_t_<label>_<pid>`), with the
/// schemas that earlier runs of tests left behind dropped (those whose process is gone) and
/// this one dropped if it exists, so it starts empty. `label`: lower-case letters, digits, `_`.
pub async fn fresh_schema(label: &str) -> String {
    let pid = std::process::id();
    let schema = format!("qtasks_t_{label}_{pid}");
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("the test PostgreSQL server accepts connections");
    let driver = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'qtasks\\_t\\_%'",
            &[],
        )
        .await
        .expect("listing test schemas");
    for row in rows {
        let name: String = row.get(0);
        let owner = name.rsplit('_').next().and_then(|p| p.parse::<u32>().ok());
        let gone = owner
            .is_some_and(|p| p != pid && !std::path::Path::new(&format!("/proc/{p}")).exists());
        if name == schema || gone {
            // Another binary may drop it at the same moment: that is fine.
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
    drop(client);
    let _ = driver.await;
    schema
}

/// Migrates `backend`'s schema up to migration `version` only (not the newest), as an older
/// qtasks would have left it: for tests of upgrades from that version.
pub async fn migrate_up_to(
    backend: &crate::PostgresBackend,
    version: u32,
) -> qtasks_core::Result<qtasks_core::backend::Migrated> {
    backend
        .conns
        .migrate(i32::try_from(version).unwrap_or(i32::MAX))
        .await
}
