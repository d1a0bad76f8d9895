//! Throwaway local `mariadbd` servers for `schemagate demo` and the integration tests.
//!
//! `mariadb-install-db` runs once per process into a template data directory; each server gets
//! a plain copy of it, a free loopback port and a short temporary directory.
//!
//! Servers never outlive the process that started them:
//! - Each is spawned with `PR_SET_PDEATHSIG = SIGKILL`. The kernel sends that signal when the
//!   *thread* that forked the child exits, not the process, so every spawn (first starts and
//!   [`Server::restart`], from any [`Sandbox`]) goes through one spawner thread that lives as
//!   long as the process. Spawned from a test's own thread, a server would die with that test.
//! - [`Sandbox`] kills its servers and removes their directories on drop; an `atexit` hook does
//!   the same for [`shared`], which lives in a static and so is never dropped.
//! - A process keeps all its directories under one root guarded by an `flock`; later processes
//!   remove roots whose owner died without running `atexit` (SIGKILL, Ctrl-C).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Overrides the search for `mariadbd`; `mariadb-install-db` is then looked for next to it first.
const MARIADBD_ENV: &str = "SCHEMAGATE_MARIADBD";
/// Where installs put the binaries beyond PATH (a non-root user's PATH lacks `/usr/sbin`).
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"];
const SHARED_SERVERS: usize = 3;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Fresh ports tried when another process binds ours between the probe and mariadbd's bind.
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 20;
/// `sun_path` holds 108 bytes on Linux; mariadbd refuses longer socket paths.
const MAX_SOCKET_PATH: usize = 100;
const ROOT_PREFIX: &str = "schemagate-sandbox-";

/// Shared by the template bootstrap and the servers so that the copied redo log already has the
/// size the server wants (otherwise every first start would resize it).
const INNODB_FLAGS: [&str; 4] = [
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=64M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
];
/// The binary log is off by default; `--skip-log-bin` says so explicitly. Never `--log-bin=OFF`:
/// that *enables* it, with files named `OFF.000001`.
const SERVER_FLAGS: [&str; 7] = [
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--event-scheduler=ON",
    "--max-connections=500",
];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "{program} not found on PATH or in /usr/sbin, /usr/local/sbin, /usr/local/mysql/bin: \
         install the mariadb-server package, or set SCHEMAGATE_MARIADBD to a mariadbd binary"
    )]
    NotFound { program: &'static str },
    #[error("SCHEMAGATE_MARIADBD={} is not an executable file: point it at a mariadbd binary", .path.display())]
    BadOverride { path: PathBuf },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "mariadb-install-db failed ({status}) creating the template data directory:\n{output}"
    )]
    InstallDb { status: ExitStatus, output: String },
    #[error("socket path {} is longer than {MAX_SOCKET_PATH} bytes: set TMPDIR to a shorter directory", .path.display())]
    SocketPathTooLong { path: PathBuf },
    #[error(
        "mariadbd could not listen on 127.0.0.1:{port}: another process took the port after it \
         was chosen or while the server was down; last lines of {}:\n{log_tail}",
        .log.display()
    )]
    PortInUse {
        port: u16,
        log: PathBuf,
        log_tail: String,
    },
    #[error("mariadbd on port {port} {problem}; last lines of {}:\n{log_tail}", .log.display())]
    Startup {
        port: u16,
        problem: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("the sandbox spawner thread is gone (it panicked); start a new process")]
    SpawnerGone,
}

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let action = action.into();
    move |source| SandboxError::Io { action, source }
}

/// A set of local servers, killed and deleted on drop.
#[derive(Debug)]
pub struct Sandbox {
    // Fields drop in declaration order: the servers die before their directories are removed.
    servers: Vec<Server>,
    _dir: TempDir,
}

impl Sandbox {
    /// Starts `n` mariadbd servers on free loopback ports with temporary data directories.
    /// Blocking; the servers start in parallel. They die on drop and with the process.
    pub fn start(n: usize) -> Result<Sandbox, SandboxError> {
        Sandbox::start_with(n, |_| Vec::new())
    }

    /// Like [`Sandbox::start`], with extra mariadbd flags per server (by index), e.g. a binary
    /// log and a server id for replication tests.
    pub fn start_with(
        n: usize,
        flags: impl Fn(usize) -> Vec<String> + Sync,
    ) -> Result<Sandbox, SandboxError> {
        let env = env()?;
        let dir = tempfile::Builder::new()
            .prefix("sb-")
            .tempdir_in(&env.root)
            .map_err(io_err(format!(
                "creating a sandbox directory in {}",
                env.root.display()
            )))?;
        let servers = std::thread::scope(|scope| {
            let launches: Vec<_> = (0..n)
                .map(|i| {
                    let server_dir = dir.path().join(i.to_string());
                    let extra = flags(i);
                    scope.spawn(move || Server::create(env, server_dir, extra))
                })
                .collect();
            // On an error, the servers already started drop here and are killed.
            launches
                .into_iter()
                .map(|launch| {
                    launch
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(Sandbox { servers, _dir: dir })
    }

    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    pub fn servers_mut(&mut self) -> &mut [Server] {
        &mut self.servers
    }
}

/// One mariadbd of a [`Sandbox`]: root with an empty password on `127.0.0.1:port`.
#[derive(Debug)]
pub struct Server {
    port: u16,
    /// Holds `data/`, the socket, the pid file and `error.log`.
    dir: PathBuf,
    version: String,
    /// `None` after [`Server::kill`].
    child: Option<Child>,
    /// Flags beyond the sandbox's own, kept for restarts.
    extra: Vec<String>,
}

impl Server {
    fn create(env: &Env, dir: PathBuf, extra: Vec<String>) -> Result<Server, SandboxError> {
        let socket = dir.join("mysqld.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(SandboxError::SocketPathTooLong { path: socket });
        }
        let data = dir.join("data");
        copy_dir(&env.template, &data).map_err(io_err(format!(
            "copying the template data directory to {}",
            data.display()
        )))?;
        let mut attempts = 1;
        loop {
            let port = free_port().map_err(io_err("finding a free loopback port"))?;
            match boot(env, &dir, port, &extra) {
                Ok((child, version)) => {
                    return Ok(Server {
                        port,
                        dir,
                        version,
                        child: Some(child),
                        extra,
                    })
                }
                Err(SandboxError::PortInUse { .. }) if attempts < PORT_ATTEMPTS => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT` (root, empty password).
    pub fn dsn(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// As `SELECT VERSION()` reports it, e.g. `10.11.19-MariaDB-0+deb12u1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// SIGKILLs mariadbd, as a crash would (for fault-injection tests); the data dir stays.
    /// Does nothing if the server is not running.
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .map_err(io_err("sending SIGKILL to mariadbd"))?;
            child
                .wait()
                .map_err(io_err("waiting for the killed mariadbd"))?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data dir (killing it first if it runs) and
    /// waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), SandboxError> {
        self.kill()?;
        let (child, version) = boot(env()?, &self.dir, self.port, &self.extra)?;
        self.child = Some(child);
        self.version = version;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The data is thrown away, so no clean shutdown is needed; a failure here leaves the
        // server to PDEATHSIG.
        let _ = self.kill();
    }
}

/// Process-wide sandbox of 3 servers shared by all tests of one test binary: started on first
/// use, kept for the life of the process. Tests must not kill its servers (they get `&` only);
/// each test creates its own databases, named with [`unique_name`].
pub fn shared() -> Result<&'static Sandbox, SandboxError> {
    static INIT: Mutex<()> = Mutex::new(());
    init_once(&SHARED, &INIT, || Sandbox::start(SHARED_SERVERS))
}

static SHARED: OnceLock<Sandbox> = OnceLock::new();

/// A database name unique on this machine: `t_<pid>_<counter>_<prefix>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t_{}_{n}_{prefix}", std::process::id())
}

/// What every sandbox of this process shares, set up once.
struct Env {
    mariadbd: PathBuf,
    /// This process's directory under the temp dir: the template and every sandbox.
    root: PathBuf,
    template: PathBuf,
    /// Never read: holding its `flock` marks `root` as in use to other processes.
    _lock: File,
}

static ENV: OnceLock<Env> = OnceLock::new();

fn env() -> Result<&'static Env, SandboxError> {
    static INIT: Mutex<()> = Mutex::new(());
    static HOOK: Once = Once::new();
    let env = init_once(&ENV, &INIT, Env::create)?;
    // SAFETY: `cleanup_at_exit` takes no arguments and never unwinds.
    HOOK.call_once(|| unsafe {
        libc::atexit(cleanup_at_exit);
    });
    Ok(env)
}

impl Env {
    fn create() -> Result<Env, SandboxError> {
        let mariadbd = match std::env::var_os(MARIADBD_ENV).filter(|p| !p.is_empty()) {
            Some(path) if is_executable(Path::new(&path)) => PathBuf::from(path),
            Some(path) => return Err(SandboxError::BadOverride { path: path.into() }),
            None => find_program("mariadbd", None)?,
        };
        let install_db = find_program("mariadb-install-db", mariadbd.parent())?;
        let tmp = std::env::temp_dir();
        sweep_stale_roots(&tmp);
        let (root, lock) = create_root(&tmp)?;
        let template = root.join("template");
        let mut cmd = Command::new(install_db);
        cmd.arg("--no-defaults")
            .arg(path_arg("--datadir=", &template))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                // Grants for 127.0.0.1 instead of the host name, which the servers would ignore.
                "--skip-name-resolve",
            ])
            .args(user_flag())
            .args(INNODB_FLAGS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let installed = spawn(cmd).and_then(|child| {
            let output = child
                .wait_with_output()
                .map_err(io_err("running mariadb-install-db"))?;
            if output.status.success() {
                return Ok(());
            }
            Err(SandboxError::InstallDb {
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            })
        });
        if let Err(e) = installed {
            // Best effort: a leftover root is swept by a later process anyway.
            let _ = fs::remove_dir_all(&root);
            return Err(e);
        }
        Ok(Env {
            mariadbd,
            root,
            template,
            _lock: lock,
        })
    }
}

/// `OnceLock::get_or_try_init` (unstable in std): initialises once; a failure is retried by
/// the next caller. `init` must not use the same `lock`.
fn init_once<T>(
    cell: &'static OnceLock<T>,
    lock: &Mutex<()>,
    init: impl FnOnce() -> Result<T, SandboxError>,
) -> Result<&'static T, SandboxError> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = init()?;
    Ok(cell.get_or_init(|| value))
}

/// Kills the shared servers and removes this process's root: statics are never dropped.
extern "C" fn cleanup_at_exit() {
    for server in SHARED.get().map_or(&[][..], Sandbox::servers) {
        if let Some(child) = &server.child {
            let pid = child.id() as libc::pid_t;
            // SAFETY: the child is never reaped elsewhere, so `pid` is still ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
    if let Some(env) = ENV.get() {
        let _ = fs::remove_dir_all(&env.root);
    }
}

/// Creates and locks this process's root. It is built under a dot-name and renamed into place,
/// so a sweeping process never sees a root whose lock is not held yet.
fn create_root(tmp: &Path) -> Result<(PathBuf, File), SandboxError> {
    let mut staging = tempfile::Builder::new()
        .prefix(&format!(".{ROOT_PREFIX}"))
        .tempdir_in(tmp)
        .map_err(io_err(format!("creating a directory in {}", tmp.display())))?;
    let lock_path = staging.path().join("lock");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    try_lock(&lock).map_err(io_err(format!("locking {}", lock_path.display())))?;
    let name = staging
        .path()
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    let root = tmp.join(name.trim_start_matches('.'));
    fs::rename(staging.path(), &root)
        .map_err(io_err(format!("renaming {}", staging.path().display())))?;
    // The directory lives on as `root`, which is removed at exit.
    staging.disable_cleanup(true);
    Ok((root, lock))
}

/// Removes roots of processes that died without running `atexit` (their servers died with them
/// through PDEATHSIG): a root whose lock can be taken has no live owner. Best effort: whatever
/// stays (e.g. still being written by an orphaned `mariadb-install-db`) goes next time.
fn sweep_stale_roots(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(ROOT_PREFIX) {
            continue;
        }
        let stale = match File::open(entry.path().join("lock")) {
            Ok(lock) => try_lock(&lock).is_ok(),
            // Roots get their name only once locked: this is an interrupted removal.
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        if stale {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn try_lock(file: &File) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts mariadbd on `dir` (holding `data/`) and waits until it accepts connections.
/// Returns the process and the server version.
fn boot(
    env: &Env,
    dir: &Path,
    port: u16,
    extra: &[String],
) -> Result<(Child, String), SandboxError> {
    let log = dir.join("error.log");
    // A restart appends to the log: report only what this start wrote.
    let log_start = fs::metadata(&log).map_or(0, |m| m.len());
    let mut cmd = Command::new(&env.mariadbd);
    cmd.arg("--no-defaults")
        .arg(path_arg("--datadir=", &dir.join("data")))
        .arg(format!("--port={port}"))
        .arg(path_arg("--socket=", &dir.join("mysqld.sock")))
        .arg(path_arg("--pid-file=", &dir.join("mysqld.pid")))
        .arg(path_arg("--log-error=", &log))
        .args(user_flag())
        .args(INNODB_FLAGS)
        .args(SERVER_FLAGS)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawn(cmd)?;
    match wait_ready(&mut child, dir, port, &log, log_start) {
        Ok(version) => Ok((child, version)),
        Err(e) => {
            // Best effort (it may have exited already): the startup error is what matters.
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Polls until `child` accepts connections, exits, or the startup timeout passes.
fn wait_ready(
    child: &mut Child,
    dir: &Path,
    port: u16,
    log: &Path,
    log_start: u64,
) -> Result<String, SandboxError> {
    let socket = dir.join("mysqld.sock");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(io_err("checking on mariadbd"))? {
            let log_tail = log_tail(log, log_start);
            let log = log.to_path_buf();
            // Only the log tells a taken port from other failures (the exit status is 1 for all).
            if log_tail.contains("Bind on TCP/IP port") {
                return Err(SandboxError::PortInUse {
                    port,
                    log,
                    log_tail,
                });
            }
            return Err(SandboxError::Startup {
                port,
                problem: format!("exited during startup ({status})"),
                log,
                log_tail,
            });
        }
        // Only our server creates this socket, and it does so after binding the TCP port: a
        // handshake there proves the port is ours, not some other server's that took it.
        let probe_error = match probe_unix(&socket).and_then(|_| probe_tcp(port)) {
            Ok(version) => return Ok(version),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(SandboxError::Startup {
                port,
                problem: format!(
                    "did not accept connections within {}s (last attempt: {probe_error})",
                    STARTUP_TIMEOUT.as_secs()
                ),
                log: log.to_path_buf(),
                log_tail: log_tail(log, log_start),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn probe_unix(socket: &Path) -> io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    read_handshake(stream)
}

fn probe_tcp(port: u16) -> io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    read_handshake(stream)
}

/// Reads the server's first packet (the protocol handshake) and returns its version string.
fn read_handshake(mut stream: impl Read) -> io::Result<String> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    match payload.split_first() {
        Some((10, rest)) => {
            let version = rest.split(|&b| b == 0).next().unwrap_or_default();
            let version = String::from_utf8_lossy(version);
            // MariaDB announces itself as `5.5.5-<version>` to keep old MySQL clients working.
            Ok(version
                .strip_prefix("5.5.5-")
                .unwrap_or(&version)
                .to_owned())
        }
        // An error packet: 0xff, a 2-byte code, then the message (e.g. too many connections).
        Some((0xff, rest)) => Err(io::Error::other(
            String::from_utf8_lossy(rest.get(2..).unwrap_or_default()).into_owned(),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the first packet is not a MySQL protocol handshake",
        )),
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the spawner thread with PDEATHSIG set (see the module docs for why).
fn spawn(cmd: Command) -> Result<Child, SandboxError> {
    static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);
    let spawner = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        match &*spawner {
            Some(requests) => requests.clone(),
            None => {
                let (requests, incoming) = mpsc::channel();
                std::thread::Builder::new()
                    .name("sandbox-spawner".into())
                    .spawn(move || serve_spawns(incoming))
                    .map_err(io_err("starting the sandbox spawner thread"))?;
                spawner.insert(requests).clone()
            }
        }
    };
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (reply, response) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .map_err(|_| SandboxError::SpawnerGone)?;
    response
        .recv()
        .map_err(|_| SandboxError::SpawnerGone)?
        .map_err(io_err(format!("starting {program}")))
}

/// The spawner thread's body. It never returns: the static sender in [`spawn`] is never dropped.
fn serve_spawns(requests: mpsc::Receiver<SpawnRequest>) {
    let parent = std::process::id();
    for (mut cmd, reply) in requests {
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
        // (no allocation: errors are built from raw OS codes).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Had the process died before prctl, the signal would never come.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        // The requester is gone only if its thread panicked: don't leave its child running.
        if let Err(mpsc::SendError(Ok(mut child))) = reply.send(cmd.spawn()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Looks in `first` (so an overridden mariadbd brings its own tools), then PATH, then
/// [`EXTRA_DIRS`].
fn find_program(program: &'static str, first: Option<&Path>) -> Result<PathBuf, SandboxError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    first
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path))
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or(SandboxError::NotFound { program })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// mariadbd refuses to run as root without `--user`, and only root may pass it.
fn user_flag() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    (unsafe { libc::geteuid() } == 0).then_some("--user=root")
}

fn path_arg(flag: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(path);
    arg
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Plain recursive copy: a fresh data directory holds only directories and regular files.
fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The last lines `log` got from offset `from` on, for error messages.
fn log_tail(log: &Path, from: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(log).and_then(|mut file| {
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut bytes)
    });
    if let Err(e) = read {
        return format!("(cannot read {}: {e})", log.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}
