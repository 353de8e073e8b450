//! A real PostgreSQL for the tests: one cluster per test process, made with
//! `initdb` in a temporary directory and started on a free port of
//! 127.0.0.1 with password authentication; each test gets a database of its
//! own. The server stops when the test process ends, however it ends
//! (PR_SET_PDEATHSIG). Needs Debian's `postgresql` package (`.ci/run`
//! installs it where missing).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The role the tests connect as, and its password.
const ROLE: &str = "bulk";
const PASSWORD: &str = "pg-test-password-4c1d";

/// The password, for tests that check it is shown nowhere.
pub const PASSWORD_SHOWN_NOWHERE: &str = PASSWORD;

struct Cluster {
    port: u16,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database on the tests' cluster.
pub async fn database() -> String {
    let port = tokio::task::spawn_blocking(|| match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster.port,
        Err(why) => panic!("no PostgreSQL for the tests: {why}"),
    })
    .await
    .unwrap();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let (client, connection) =
        tokio_postgres::connect(&url(port, "postgres"), tokio_postgres::NoTls)
            .await
            .expect("the tests' PostgreSQL answers");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("a database for the test");
    url(port, &name)
}

fn url(port: u16, database: &str) -> String {
    format!("postgres://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{database}")
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    // Kept for the life of the process, like the server.
    let dir = Box::leak(Box::new(tempfile::tempdir().map_err(|e| e.to_string())?));
    let owner = server_user();
    let data = dir.path().join("data");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, PASSWORD).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        chown(dir.path(), uid, gid)?;
        chown(&password_file, uid, gid)?;
    }
    let initdb = server_command(&bin.join("initdb"), owner)
        .arg("-D")
        .arg(&data)
        .args(["-U", ROLE, "--auth=scram-sha-256", "--no-sync"])
        // As a ledger's database must be (Unicode normalisation needs it);
        // the C locale would make it SQL_ASCII.
        .arg("--encoding=UTF8")
        .arg(format!("--pwfile={}", password_file.display()))
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!(
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // Started from a thread that lives as long as the process: the server
    // is told to stop when the thread that started it ends.
    let (started, outcome) = std::sync::mpsc::channel();
    let postgres = bin.join("postgres");
    let socket_dir = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let child = server_command(&postgres, owner)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .arg("-k")
            .arg(&socket_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let _ = started.send(child.map(|_| ()).map_err(|e| format!("postgres: {e}")));
        loop {
            std::thread::park();
        }
    });
    outcome.recv().map_err(|e| e.to_string())??;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Listening is not ready: until its startup ends the server answers
    // "the database system is starting up". pg_isready waits for that.
    let ready = || {
        Command::new(bin.join("pg_isready"))
            .env_clear()
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success())
    };
    while !ready() {
        if Instant::now() > deadline {
            return Err("postgres was not ready within 30 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Cluster { port })
}

/// PostgreSQL's programs: `pg_config --bindir`, else Debian's place.
fn bin_dir() -> Result<PathBuf, String> {
    let from_pg_config = Command::new("pg_config")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    from_pg_config
        .or_else(|| Some(PathBuf::from("/usr/lib/postgresql/15/bin")))
        .filter(|dir| dir.join("initdb").exists())
        .ok_or_else(|| "initdb not found: apt-get install postgresql".to_string())
}

/// PostgreSQL refuses to run as root: then the server runs as `postgres`.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: getuid(2) and getpwnam(3) with a NUL-terminated name; the
    // record is read at once.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())
}

/// A PostgreSQL program in a cleared environment, as the server's user,
/// stopped (fast shutdown) when the thread that starts it ends.
fn server_command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/bin:/bin");
    // SAFETY: setgid(2), setuid(2) and prctl(2) are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = owner {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
    command
}

/// Ends every connection to the database of `url` and, while `refused`,
/// takes no new one: the ledger, as a run sees it, is lost for good (a run
/// connects again once after `cut_off`). `refused(url, false)` lets runs in
/// again.
pub async fn refused(url: &str, refused: bool) {
    let database = url.rsplit('/').next().expect("a database name");
    let maintenance = format!("{}/postgres", url.rsplit_once('/').expect("a URL").0);
    let (client, connection) = tokio_postgres::connect(&maintenance, tokio_postgres::NoTls)
        .await
        .expect("the tests' PostgreSQL answers");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS {}",
            !refused
        ))
        .await
        .expect("the database's connections are set");
    if refused {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&database],
            )
            .await
            .expect("the run's connection is ended");
    }
}

/// Ends every connection to the database of `url` but the caller's: the
/// ledger, as a run sees it, is lost (until it connects again).
pub async fn cut_off(url: &str) {
    let database = url.rsplit('/').next().expect("a database name");
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the tests' PostgreSQL answers");
    tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .expect("the run's connection is ended");
}
