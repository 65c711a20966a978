//! A real PostgreSQL server for the local cloud: the one RDS instance the template creates, played by the
//! distribution's `postgresql` package (initdb + pg_ctl) on a free loopback port, its data under a
//! directory the caller chooses, stopped when the [`Server`] is dropped (and by a watcher when the
//! process that started it dies without dropping it).
//!
//! initdb and postgres refuse to run as root, so when this process is root they run as the `postgres`
//! system user (`runuser -u postgres --`) on a data directory it owns; the clients (psql, pg_dump,
//! pg_restore) run as whoever we are and log in over TCP with a password, as an app reaches RDS.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the server binaries are: `$BEANSWAP_PG_BIN`, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian keeps initdb and pg_ctl there, off `PATH`), else `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BEANSWAP_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let major: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((major, bin))
                })
                .max_by_key(|(major, _)| *major)
                .map(|(_, bin)| bin)
        });
    if debian.is_some() {
        return debian;
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists())
}

/// A PostgreSQL program: from [`bin_dir`] when it is there, else by name on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    bin_dir()
        .map(|dir| dir.join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether this process runs as root (initdb and postgres then run as `postgres`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The system user the server runs as when we are root.
const SERVER_USER: &str = "postgres";

/// The superuser's name inside the cluster.
pub const SUPERUSER: &str = "postgres";

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    root: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    stopped: bool,
    /// Remove `root` once stopped (a scratch server's temporary directory).
    scratch: bool,
}

/// What a client needs to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
}

impl Server {
    /// Starts a server whose data lives in `root/data` (made by initdb when it is not there yet, kept
    /// otherwise: a second start on the same directory finds the same databases). Blocking: initdb takes
    /// about a second.
    pub fn start(root: &Path) -> Result<Server, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL's server programs (initdb, pg_ctl) were not found: install the `postgresql` package \
             (Debian/Ubuntu: apt-get install postgresql), or set BEANSWAP_PG_BIN to their directory",
        )?;
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let as_postgres = is_root();
        let data = root.join("data");
        let password_file = root.join("superuser-password");
        if as_postgres {
            // The server user must reach its directory: the root we were given is ours to open up.
            set_mode(&root, 0o755)?;
        }
        let password = if data.join("PG_VERSION").exists() {
            std::fs::read_to_string(&password_file)
                .map_err(|e| format!("{}: {e}", password_file.display()))?
                .trim()
                .to_string()
        } else {
            let _ = std::fs::remove_dir_all(&data);
            std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            set_mode(&data, 0o700)?;
            if as_postgres {
                chown(&data)?;
            }
            let password = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&password_file, &password)
                .map_err(|e| format!("{}: {e}", password_file.display()))?;
            if as_postgres {
                chown(&password_file)?;
            }
            let mut initdb = server_command(as_postgres, &bin.join("initdb"));
            initdb
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display()));
            run(initdb, "initdb")?;
            if as_postgres {
                // The password file stays readable by root only once initdb has read it.
                set_mode(&password_file, 0o600)?;
            }
            password
        };
        let port = free_port()?;
        let log = root.join("server.log");
        if as_postgres && !log.exists() {
            std::fs::write(&log, "").map_err(|e| format!("{}: {e}", log.display()))?;
            chown(&log)?;
        }
        // No Unix socket (TCP on loopback only, as an app reaches RDS); durability is not what a local
        // run measures, so fsync is off.
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        );
        let mut start = server_command(as_postgres, &bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        run(start, "pg_ctl start").map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\n{}", last_lines(&tail, 10))
        })?;
        let server = Server {
            root: root.clone(),
            data,
            port,
            password,
            as_postgres,
            stopped: false,
            scratch: false,
        };
        server.guard(&bin);
        server.wait_ready()?;
        Ok(server)
    }

    /// A server in a temporary directory of its own, removed once it stops (also when this process
    /// dies without stopping it): what tests share.
    pub fn start_scratch() -> Result<Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("beanswap-postgres-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        let mut server = Server::start(&dir)?;
        server.scratch = true;
        server.guard(&tool("pg_ctl").with_file_name(""));
        Ok(server)
    }

    /// A watcher that stops the server once this process is gone, so a test killed by a timeout (or a
    /// CLI killed with -9) leaves no server behind.
    fn guard(&self, bin: &Path) {
        let stop = format!(
            "{} -D '{}' -m immediate stop",
            bin.join("pg_ctl").display(),
            self.data.display()
        );
        let stop = if self.as_postgres {
            format!("runuser -u {SERVER_USER} -- {stop}")
        } else {
            stop
        };
        let script = format!(
            "while kill -0 {} 2>/dev/null && [ -f '{}/postmaster.pid' ]; do sleep 1; done; [ -f '{}/postmaster.pid' ] && {stop} >/dev/null 2>&1{}",
            std::process::id(),
            self.data.display(),
            self.data.display(),
            if self.scratch {
                format!("; rm -rf '{}'", self.root.display())
            } else {
                String::new()
            }
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }

    fn wait_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            match self.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    return Err(format!(
                        "PostgreSQL on port {} did not answer: {e}",
                        self.port
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server keeps its data and log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The superuser's login to `database`.
    pub fn superuser(&self, database: &str) -> Login {
        Login {
            host: self.host().into(),
            port: self.port,
            database: database.into(),
            user: SUPERUSER.into(),
            password: self.password.clone(),
        }
    }

    /// Runs SQL as the superuser in `database`; its output (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        psql(&self.superuser(database), sql)
    }

    /// Creates `user` (a login role with `password`) owning a new database `database`, as RDS makes its
    /// master user and DBName; nothing when both exist.
    pub fn create_database(
        &self,
        database: &str,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        let exists = self.psql(
            "postgres",
            &format!("SELECT 1 FROM pg_roles WHERE rolname = {}", literal(user)),
        )?;
        if exists.trim().is_empty() {
            self.psql(
                "postgres",
                &format!(
                    "CREATE ROLE {} LOGIN PASSWORD {}",
                    identifier(user),
                    literal(password)
                ),
            )?;
        }
        let exists = self.psql(
            "postgres",
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                literal(database)
            ),
        )?;
        if exists.trim().is_empty() {
            self.psql(
                "postgres",
                &format!(
                    "CREATE DATABASE {} OWNER {}",
                    identifier(database),
                    identifier(user)
                ),
            )?;
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions are ended, committed data kept).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let mut stop = server_command(self.as_postgres, &tool("pg_ctl"));
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        if let Err(e) = run(stop, "pg_ctl stop") {
            tracing::warn!(error = %e, "stopping PostgreSQL");
        }
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs SQL with `login`; the output (unaligned, tuples only), or psql's error.
pub fn psql(login: &Login, sql: &str) -> Result<String, String> {
    let mut command = Command::new(tool("psql"));
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", sql]);
    with_login(&mut command, login);
    let out = command
        .output()
        .map_err(|e| format!("psql: {e} (is the `postgresql` package installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sets host, port, user, database and password for a client program (libpq's environment variables,
/// so the password never shows in a process list).
pub fn with_login(command: &mut Command, login: &Login) {
    command
        .env("PGHOST", &login.host)
        .env("PGPORT", login.port.to_string())
        .env("PGUSER", &login.user)
        .env("PGDATABASE", &login.database)
        .env("PGPASSWORD", &login.password)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null());
}

/// `pg_dump -Fc` of `login`'s database into `file` (the custom format pg_restore reads).
pub fn dump(login: &Login, file: &Path) -> Result<(), String> {
    let mut command = Command::new(tool("pg_dump"));
    command
        .args(["-Fc", "--no-owner", "--no-privileges", "-f"])
        .arg(file);
    with_login(&mut command, login);
    run(command, "pg_dump")
}

/// pg_restore of a `-Fc` dump into `login`'s database, replacing what the dump holds (its objects are
/// dropped first), in one transaction: a restore that fails changes nothing. With `role`, the restore
/// runs as that role (`SET ROLE` after logging in), so what it creates is that role's, as before.
pub fn restore(login: &Login, file: &Path, role: Option<&str>) -> Result<(), String> {
    let mut command = Command::new(tool("pg_restore"));
    if let Some(role) = role {
        command.arg(format!("--role={role}"));
    }
    command
        .args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "-d",
            &login.database,
        ])
        .arg(file);
    with_login(&mut command, login);
    run(command, "pg_restore")
}

/// A string as an SQL literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A name as an SQL identifier.
pub fn identifier(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn server_command(as_postgres: bool, program: &Path) -> Command {
    let mut command = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", SERVER_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // The server programs must not inherit a client's settings.
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null()).current_dir("/");
    command
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("{what}: {e} (is the `postgresql` package installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn chown(path: &Path) -> Result<(), String> {
    let out = Command::new("chown")
        .arg(format!("{SERVER_USER}:"))
        .arg(path)
        .output()
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chown {} to {SERVER_USER}: {} (does the `postgres` user exist? the postgresql package makes it)",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
