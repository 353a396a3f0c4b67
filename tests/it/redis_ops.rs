//! Redis as operators run it: an ACL user with a password, TLS with a private CA, and a
//! 3-node Redis Cluster — each with a batch run to completion.

use crate::helpers::*;
use restyle::job::JobState;
use restyle::localredis::{free_port, LocalRedis};
use restyle::queue::{Queue, RetryMode};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Runs a 6-job batch in this process against whatever Redis the app points at.
async fn run_small_batch(app: &TestApp, batch: &str) {
    let rt = app.runtime();
    app.enqueue(batch, &prompts(6)).await;
    let info = app.drive(&rt, batch, Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
}

async fn app_on(url: &str, tweak: impl FnOnce(&mut restyle::config::Settings)) -> TestApp {
    let mut app = TestApp::with_redis(fast_knobs(), &redis_url()).await;
    app.settings.redis.url = secrecy::SecretString::from(url.to_string());
    tweak(&mut app.settings);
    app.queue = Queue::connect(
        &app.settings.redis,
        &app.settings.queue,
        RetryMode::Persistent,
    )
    .await
    .expect("connects");
    app
}

#[tokio::test]
async fn acl_user_with_password_runs_a_batch_and_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let extra = s(&[
        "--user",
        "default",
        "off",
        "--user",
        "restyle",
        "on",
        ">Acl-Pa55-7731",
        "~*",
        "&*",
        "+@all",
    ]);
    let redis = LocalRedis::start_with(dir.path(), false, &extra).unwrap();
    let url = format!("redis://restyle:Acl-Pa55-7731@127.0.0.1:{}", redis.port());
    let app = app_on(&url, |_| {}).await;
    run_small_batch(&app, "acl").await;
    let out = app
        .cmd()
        .env("REDIS_URL", &url)
        .args(["status", "acl"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let wrong = format!("redis://restyle:Wrong-Pa55@127.0.0.1:{}", redis.port());
    let out = app
        .cmd()
        .env("REDIS_URL", &wrong)
        .args(["status", "acl"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("Wrong-Pa55") && !err.contains("Acl-Pa55-7731"),
        "{err}"
    );
    assert!(err.contains("***:***@127.0.0.1"), "{err}");
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private CA and a server certificate for 127.0.0.1, made with the openssl CLI.
pub(crate) fn make_certs(dir: &Path) -> bool {
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=restyle-test-ca",
        ],
    ) && openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ) && openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    )
}

#[tokio::test]
async fn tls_with_a_private_ca_runs_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    if !make_certs(&certs) {
        assert!(std::env::var("CI").is_err(), "openssl is needed in CI");
        eprintln!("SKIP: openssl not available to make test certificates");
        return;
    }
    let tls_port = free_port().unwrap();
    let p = |f: &str| certs.join(f).display().to_string();
    let extra = vec![
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        p("server.pem"),
        "--tls-key-file".into(),
        p("server.key"),
        "--tls-ca-cert-file".into(),
        p("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    let data = dir.path().join("data");
    let Ok(_redis) = LocalRedis::start_with(&data, false, &extra) else {
        assert!(
            std::env::var("CI").is_err(),
            "this redis-server has no TLS support"
        );
        eprintln!("SKIP: this redis-server was built without TLS");
        return;
    };
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = certs.join("ca.pem");
    let app = app_on(&url, |s| s.redis.tls_ca_file = Some(ca.clone())).await;
    run_small_batch(&app, "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_completes_on_a_three_node_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let extra = s(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ]);
        nodes.push(
            LocalRedis::start_with(&dir.path().join(format!("n{i}")), false, &extra).unwrap(),
        );
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let info = Command::new("redis-cli")
            .args(["-p", &nodes[0].port().to_string(), "cluster", "info"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
            break;
        }
        assert!(Instant::now() < end, "cluster never became ok");
        poll_interval().await;
    }
    let url = format!("redis://{}", addrs[1]);
    let app = app_on(&url, |s| s.redis.cluster = true).await;
    run_small_batch(&app, "clustered").await;
    // A worker process of the binary too, through the same cluster.
    app.enqueue("clustered2", &prompts(4)).await;
    let f = std::fs::File::create(app.out.path().join("cw.log")).unwrap();
    let w = WorkerProc {
        child: app
            .cmd()
            .env("REDIS_URL", &url)
            .env("RESTYLE__REDIS__CLUSTER", "true")
            .args(["worker", "--concurrency", "4"])
            .stderr(f)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    let info = app
        .wait_finished("clustered2", Duration::from_secs(60))
        .await;
    assert_eq!(info.count(JobState::Succeeded), 4);
    assert!(w.terminate().success());
}
