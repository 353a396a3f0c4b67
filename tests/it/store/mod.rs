//! The object-storage results store against a real S3-compatible server: moto's server
//! mode (pinned in tests/clients/requirements.txt, in the private virtualenv that
//! tests/clients/setup-venv.sh makes), on loopback over TLS with a private CA made by the
//! openssl CLI, one server per test binary and one bucket per test. Everything the tests
//! check in the bucket they read back through the S3 API (listed and fetched with
//! object_store; incomplete multipart uploads listed with S3's `?uploads`).

mod kill;
mod results;

use crate::helpers::*;
use restyle::config::testing::TestSettings;
use restyle::localredis::free_port;
use restyle::sink::store::ObjectSink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The credentials every store test signs with (moto takes any); child processes inherit
/// them. The secrets test plants others in its children's environment.
pub const KEY_ID: &str = "AKIDSTORETEST0000001";
pub const SECRET: &str = "store-test-secret-0000000000000000000001";

/// moto's S3 server on a loopback port, TLS with a private CA.
#[derive(Debug)]
pub struct Moto {
    pub port: u16,
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
    _child: std::process::Child,
}

/// The watchdog that runs the server and kills it when the test process dies (as
/// `restyle::localredis` does for redis-server): $1 = pid to watch, the rest the command.
const WATCHDOG: &str = r#"parent=$1; shift
"$@" & server=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -9 "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;

impl Moto {
    /// The server every test of this binary shares (started on first use).
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            crate::redis_ops::make_certs(dir.path()),
            "openssl could not make the test CA"
        );
        let python = crate::official_clients::python();
        let moto = python.parent().expect("venv bin").join("moto_server");
        let port = free_port().expect("a free port");
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("restyle-moto")
            .arg(std::process::id().to_string())
            .arg(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .arg("-c")
            .arg(dir.path().join("server.pem"))
            .arg("-k")
            .arg(dir.path().join("server.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap())
            .spawn()
            .expect("start moto_server");
        // In-process runtimes take credentials from the environment, as workers do.
        std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_REGION", "us-east-1");
        let m = Moto {
            port,
            ca: dir.path().join("ca.pem"),
            _dir: dir,
            _child: child,
        };
        // Listening is enough: the server answers once it accepts (TLS is set up first).
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not answer on port {port}");
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// An https client trusting the test CA (for S3 calls object_store has no API for).
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).expect("ca.pem");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .no_proxy()
            .build()
            .unwrap()
    }

    /// A new, empty bucket (moto does not check signatures: a plain PUT makes it).
    pub async fn bucket(&self) -> String {
        let name = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let r = self
            .client()
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        name
    }

    /// Settings pointing `output.store` at `s3://<bucket>/<prefix>` on this server.
    pub fn settings(&self, bucket: &str, prefix: &str) -> TestSettings {
        TestSettings::new()
            .set("output.store", format!("s3://{bucket}/{prefix}").as_str())
            .set("output.store_endpoint", self.endpoint().as_str())
            .set("output.store_ca_file", self.ca.as_path())
    }

    /// Keys of the bucket's incomplete multipart uploads (S3's ListMultipartUploads).
    pub async fn uploads_in_progress(&self, bucket: &str) -> Vec<String> {
        let r = self
            .client()
            .get(format!("{}/{bucket}?uploads", self.endpoint()))
            .send()
            .await
            .expect("list uploads");
        let xml = r.text().await.unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }
}

/// A test world whose results go to a fresh bucket (prefix `runs`).
pub async fn store_app(knobs: restyle::sim::Knobs) -> (TestApp, String) {
    let moto = Moto::shared();
    let mut app = TestApp::new(knobs).await;
    let bucket = moto.bucket().await;
    app.test = app.test.clone().and(moto.settings(&bucket, "runs"));
    app.settings = app.test.settings();
    (app, bucket)
}

/// The store the app's settings name.
pub fn store_of(app: &TestApp) -> Arc<ObjectSink> {
    ObjectSink::from_settings(&app.settings.output)
        .expect("store builds")
        .expect("an object store is configured")
}

/// Every object under `dir` (names relative to the prefix).
pub async fn objects(app: &TestApp, dir: &str) -> Vec<(String, u64)> {
    let mut v = store_of(app).list(dir).await.expect("list the bucket");
    v.sort();
    v
}

/// Polls until `f` holds, with a deadline.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < end, "{what}: not within {deadline:?}");
        poll_interval().await;
    }
}

/// Files (not directories) under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
