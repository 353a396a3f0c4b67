//! A private `redis-server` on a free loopback port, for the demo, tests and benchmarks
//! when `REDIS_URL` is not set. The process is killed when the handle drops.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a private Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    #[error(
        "redis-server not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install \
         redis-server`; macOS: `brew install redis`) or set REDIS_URL to a running Redis."
    )]
    NotInstalled,
    #[error("redis-server: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis-server did not answer on port {0} within 10s (see its log in {1})")]
    NoAnswer(u16, String),
    /// It exited before answering (typically: the port, or cluster-bus port + 10000,
    /// was taken between picking and binding it).
    #[error("redis-server exited before answering on port {0} (see its log in {1})")]
    Exited(u16, String),
}

/// `sh -c` script: $1 = pid to watch, $2 = pid file, the rest = the server command.
const WATCHDOG: &str = r#"parent=$1; pidfile=$2; shift 2
"$@" & server=$!
echo $server > "$pidfile"
while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -9 "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;

/// A running private Redis.
#[derive(Debug)]
pub struct LocalRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    appendonly: bool,
    extra: Vec<String>,
}

/// Picks a free loopback port.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalRedis {
    /// Starts `redis-server` with its data and log under `dir`. With `appendonly`, writes
    /// are kept in an AOF (fsync every second) so a restart keeps them.
    pub fn start(dir: &Path, appendonly: bool) -> Result<LocalRedis, LocalRedisError> {
        Self::start_with(dir, appendonly, &[])
    }

    /// [`LocalRedis::start`] with extra `redis-server` arguments (cluster mode, ACL
    /// users, a TLS port); the plain port stays on for the readiness check.
    pub fn start_with(
        dir: &Path,
        appendonly: bool,
        extra: &[String],
    ) -> Result<LocalRedis, LocalRedisError> {
        std::fs::create_dir_all(dir)?;
        // redis-server changes into --dir before opening the log: paths must be absolute.
        let dir = &std::fs::canonicalize(dir)?;
        // A free port can be taken by another process before the server binds it (tests
        // start many servers at once): a server that exits at once gets another port.
        let mut tries = 0;
        loop {
            let mut r = LocalRedis {
                child: None,
                port: free_port()?,
                dir: dir.to_path_buf(),
                appendonly,
                extra: extra.to_vec(),
            };
            match r.spawn() {
                Err(LocalRedisError::Exited(..)) if tries < 5 => tries += 1,
                other => return other.map(|()| r),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), LocalRedisError> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(LocalRedisError::NotInstalled);
        }
        let log = self.dir.join("redis.log");
        let pidfile = self.dir.join("redis.pid");
        let _ = std::fs::remove_file(&pidfile);
        // A watchdog shell runs the server and kills it when this process dies, even by
        // SIGKILL, so no test or demo leaves a redis-server behind.
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("restyle-redis")
            .arg(std::process::id().to_string())
            .arg(&pidfile)
            .arg("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "everysec"])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                self.child = None;
                return Err(LocalRedisError::Exited(
                    self.port,
                    log.display().to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LocalRedisError::NoAnswer(
            self.port,
            log.display().to_string(),
        ))
    }

    fn server_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("redis.pid"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server abruptly (SIGKILL); AOF data fsynced so far survives.
    pub fn kill(&mut self) {
        self.signal("-KILL");
    }

    /// Stops the server cleanly (SIGTERM: Redis flushes its AOF and exits).
    pub fn stop(&mut self) {
        self.signal("-TERM");
    }

    fn signal(&mut self, sig: &str) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill").args([sig, &pid]).status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait(); // the watchdog exits once the server is gone
        }
    }

    /// Starts it again on the same port and directory (after [`Self::stop`] or
    /// [`Self::kill`]; a running server is stopped first).
    pub fn restart(&mut self) -> Result<(), LocalRedisError> {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when something on the port answers PING like Redis.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    // A server that wants a password (ACL tests) still answers: it is up.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}
