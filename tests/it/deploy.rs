//! The deployment files in `deploy/` parse and agree with the binary and with each other:
//! every YAML document parses, the systemd unit has its sections and keys, every command
//! they run uses a real subcommand with real flags, the settings they set load, the
//! Dockerfile builds in stages and runs unprivileged, and every shutdown timeout leaves
//! `worker.shutdown_grace` plus a margin.
//!
//! Needs the dev-dependency `serde_norway = "0.9"` (the maintained fork of `serde_yaml`).

use crate::helpers::redis_url;
use restyle::config::Settings;
use restyle::queue::Keys;
use serde::Deserialize;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A parsed systemd unit: section → (key, value) in file order.
pub(super) type Unit = BTreeMap<String, Vec<(String, String)>>;

/// Time the fleet gets past `worker.shutdown_grace` before a SIGKILL, at least.
const MIN_STOP_MARGIN: Duration = Duration::from_secs(10);

pub(super) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file under `dir`, recursively, as paths relative to the repository root.
pub(super) fn files_under(rel_dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(rel_dir), &mut out);
    let mut rel: Vec<String> = out
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rel.sort();
    rel
}

pub(super) fn is_yaml(rel: &str) -> bool {
    rel.ends_with(".yaml") || rel.ends_with(".yml")
}

/// Every non-empty YAML document of a file.
pub(super) fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub(super) fn yaml_doc(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

/// A YAML scalar as text (strings, numbers and booleans alike).
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v:?}"))
        .iter()
        .map(|x| scalar(x).unwrap_or_else(|| panic!("{what}: not a scalar: {x:?}")))
        .collect()
}

pub(super) fn str_at<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

/// A duration as systemd, compose and humans write it: "45", "45s", "1min 30s".
fn duration(text: &str, what: &str) -> Duration {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    humantime::parse_duration(t).unwrap_or_else(|e| panic!("{what}: {t:?}: {e}"))
}

pub(super) fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The value following `flag` in an argument list.
pub(super) fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------
// The files, parsed
// ---------------------------------------------------------------------------------------

/// `production.toml` as the ConfigMap carries it.
pub(super) fn production_toml() -> String {
    let cm = yaml_doc("deploy/k8s/configmap.yaml");
    str_at(
        &cm["data"]["production.toml"],
        "configmap data production.toml",
    )
    .to_string()
}

/// `worker.shutdown_grace` in production: the ConfigMap's, else the built-in default.
fn production_grace() -> Duration {
    let t: toml::Value = toml::from_str(&production_toml()).expect("production.toml is TOML");
    match t.get("worker").and_then(|w| w.get("shutdown_grace")) {
        Some(v) => duration(
            v.as_str().expect("shutdown_grace is a string"),
            "shutdown_grace",
        ),
        None => Settings::builtin().worker.shutdown_grace,
    }
}

fn production_namespace() -> String {
    let t: toml::Value = toml::from_str(&production_toml()).expect("production.toml is TOML");
    t.get("redis")
        .and_then(|r| r.get("namespace"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| Settings::builtin().redis.namespace)
}

/// Every Deployment under deploy/k8s, with the file it is in.
pub(super) fn deployments() -> Vec<(String, Value)> {
    files_under("deploy/k8s")
        .into_iter()
        .filter(|f| is_yaml(f))
        .flat_map(|f| {
            yaml_docs(&f)
                .into_iter()
                .filter(|d| d["kind"].as_str() == Some("Deployment"))
                .map(move |d| (f.clone(), d))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every systemd unit under deploy/systemd, parsed, with its file name.
pub(super) fn units() -> Vec<(String, Unit)> {
    let units: Vec<(String, Unit)> = files_under("deploy/systemd")
        .into_iter()
        .filter(|f| f.ends_with(".service"))
        .map(|f| {
            let u = parse_unit(&read(&f), &f);
            (f, u)
        })
        .collect();
    assert!(
        units.len() >= 3,
        "worker, console and receiver units: {units:?}"
    );
    units
}

pub(super) fn worker_container(dep: &Value) -> &Value {
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container per worker pod");
    &containers[0]
}

/// The Deployment's literal env values (those from Secrets are left out).
pub(super) fn deployment_env(dep: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(env) = worker_container(dep)["env"].as_sequence() {
        for e in env {
            if let Some(v) = scalar(&e["value"]) {
                out.insert(str_at(&e["name"], "env name").to_string(), v);
            }
        }
    }
    out
}

pub(super) fn compose() -> Value {
    yaml_doc("deploy/compose.yaml")
}

pub(super) fn compose_services(c: &Value) -> Vec<(String, &Value)> {
    c["services"]
        .as_mapping()
        .expect("compose services")
        .iter()
        .map(|(k, v)| (str_at(k, "service name").to_string(), v))
        .collect()
}

/// A compose service's command as a list (the image's ENTRYPOINT is `restyle`).
pub(super) fn compose_command(svc: &Value, name: &str) -> Vec<String> {
    match &svc["command"] {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Null => Vec::new(),
        v => strings(v, &format!("compose {name} command")),
    }
}

fn runs_restyle(svc: &Value) -> bool {
    !svc["build"].is_null()
        || svc["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("restyle") || i.contains("/restyle"))
}

pub(super) fn compose_env(svc: &Value, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match &svc["environment"] {
        Value::Mapping(m) => {
            for (k, v) in m {
                let v = scalar(v).unwrap_or_default();
                out.insert(str_at(k, "env key").to_string(), v);
            }
        }
        Value::Sequence(s) => {
            for item in s {
                let line = str_at(item, "env entry");
                let (k, v) = line.split_once('=').unwrap_or((line, ""));
                out.insert(k.to_string(), v.to_string());
            }
        }
        Value::Null => {}
        v => panic!("compose {name} environment: unexpected {v:?}"),
    }
    out
}

/// A systemd unit: section → (key, value) in file order. Comments (`#`, `;`), blank lines
/// and backslash continuations are handled; anything else malformed is a panic.
pub(super) fn parse_unit(text: &str, what: &str) -> Unit {
    let mut out: Unit = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut pending = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if let Some(name) = full.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            continue;
        }
        let Some((k, v)) = full.split_once('=') else {
            panic!("{what}:{}: not `key=value`: {full:?}", n + 1);
        };
        let Some(s) = &section else {
            panic!("{what}:{}: key outside a section", n + 1);
        };
        let key = k.trim();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "{what}:{}: bad key {key:?}",
            n + 1
        );
        out.get_mut(s)
            .expect("section")
            .push((key.to_string(), v.trim().to_string()));
    }
    assert!(pending.is_empty(), "{what}: ends inside a continuation");
    out
}

fn unit() -> Unit {
    parse_unit(
        &read("deploy/systemd/restyle-worker.service"),
        "restyle-worker.service",
    )
}

/// The last value of a key in a unit section (systemd: later assignments win).
pub(super) fn unit_value<'a>(u: &'a Unit, section: &str, key: &str) -> Option<&'a str> {
    u.get(section)?
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// An EnvironmentFile: `KEY=VALUE` lines, comments and blank lines.
fn parse_env_file(text: &str, what: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            panic!("{what}:{}: not KEY=VALUE: {line:?}", n + 1);
        };
        assert!(
            !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{what}:{}: bad variable name {k:?}",
            n + 1
        );
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// Dockerfile instructions: (INSTRUCTION, arguments), continuations joined, comments out.
pub(super) fn dockerfile() -> Vec<(String, String)> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let (ins, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push((ins.to_ascii_uppercase(), args.trim().to_string()));
    }
    assert!(pending.is_empty(), "Dockerfile ends inside a continuation");
    out
}

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// Runs `restyle <args> --help`: the arguments must parse (subcommand, flags, values) and
/// every `--flag` must appear in that subcommand's help.
fn assert_real_command(args: &[String], origin: &str) {
    let sub = args
        .first()
        .unwrap_or_else(|| panic!("{origin}: no subcommand"));
    assert!(
        !sub.starts_with('-'),
        "{origin}: put the subcommand first: {args:?}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_restyle"))
        .args([sub.as_str(), "--help"])
        .output()
        .expect("run restyle");
    let help_text = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(
        help.status.success(),
        "{origin}: `restyle {sub} --help` failed (no such subcommand?): {}",
        String::from_utf8_lossy(&help.stderr)
    );
    let words: BTreeSet<&str> = help_text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .collect();
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        assert!(
            words.contains(flag),
            "{origin}: `restyle {sub}` has no flag {flag}:\n{help_text}"
        );
    }
    // The whole argument list parses, values included (clap checks them before --help).
    let parsed = Command::new(env!("CARGO_BIN_EXE_restyle"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run restyle");
    assert!(
        parsed.status.success(),
        "{origin}: `restyle {}` does not parse: {}",
        args.join(" "),
        String::from_utf8_lossy(&parsed.stderr)
    );
}

/// Loads settings the way a deployed process would, with `env` only (plus `REDIS_URL`
/// pointed at the test's Redis) and `production.toml` from the ConfigMap: `restyle status`
/// of a batch that does not exist must get as far as Redis and answer "not found" (4),
/// not "invalid settings" (2).
fn assert_settings_load(env: &BTreeMap<String, String>, origin: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("production.toml"), production_toml()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_restyle"))
        .env_clear()
        .envs(env.iter().filter(|(k, _)| *k != "REDIS_URL"))
        .env("REDIS_URL", redis_url())
        .current_dir(dir.path())
        .arg("--config-dir")
        .arg(dir.path())
        .args(["status", "deploy-check-no-such-batch"])
        .output()
        .expect("run restyle");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{origin}: settings did not load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn every_yaml_file_in_deploy_parses() {
    let files: Vec<String> = files_under("deploy")
        .into_iter()
        .filter(|f| is_yaml(f))
        .collect();
    assert!(
        files.iter().any(|f| f == "deploy/compose.yaml"),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with("deploy/k8s/"))
            .count()
            >= 6,
        "{files:?}"
    );
    for f in &files {
        let docs = yaml_docs(f);
        assert!(!docs.is_empty(), "{f}: no YAML document");
        for d in &docs {
            assert!(d.is_mapping(), "{f}: a document is not a mapping");
        }
    }
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let k8s: Vec<String> = files_under("deploy/k8s")
        .into_iter()
        .filter(|f| is_yaml(f))
        .collect();
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in k8s.iter().filter(|f| !f.ends_with("kustomization.yaml")) {
        for d in yaml_docs(f) {
            let kind = str_at(&d["kind"], &format!("{f}: kind")).to_string();
            str_at(&d["apiVersion"], &format!("{f}: apiVersion"));
            str_at(&d["metadata"]["name"], &format!("{f}: metadata.name"));
            assert!(
                d["metadata"]["namespace"].is_null(),
                "{f}: names a namespace; the manifests are namespace-agnostic"
            );
            by_kind.entry(kind).or_default().push(d);
        }
    }
    let one = |kind: &str| -> &Value {
        let v = by_kind.get(kind).unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(v.len(), 1, "one {kind}");
        &v[0]
    };
    let name = |v: &Value| str_at(&v["metadata"]["name"], "name").to_string();
    // Several Deployments and budgets (worker, console, receiver): the worker's by name.
    let named = |kind: &str, n: &str| -> &Value {
        by_kind
            .get(kind)
            .and_then(|v| v.iter().find(|d| d["metadata"]["name"].as_str() == Some(n)))
            .unwrap_or_else(|| panic!("no {kind} {n}"))
    };

    // Kustomization: lists every manifest but the Secret template.
    let kus = yaml_doc("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<String> = strings(&kus["resources"], "kustomization resources")
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = k8s
        .iter()
        .map(|f| f.trim_start_matches("deploy/k8s/").to_string())
        .filter(|f| f != "kustomization.yaml" && f != "secret.example.yaml")
        .collect();
    assert_eq!(listed, expected, "kustomization.yaml resources");

    // The Secret template holds placeholders only.
    let secret = one("Secret");
    let secret_name = name(secret);
    let data = secret["stringData"].as_mapping().expect("stringData");
    for (k, v) in data {
        let k = str_at(k, "secret key");
        let v = scalar(v).unwrap_or_default();
        if k == "REDIS_ADDRESS" {
            continue; // host:port, not a secret
        }
        assert!(
            v.contains("CHANGE_ME"),
            "secret.example.yaml {k}: must be a CHANGE_ME placeholder"
        );
    }
    let secret_keys: BTreeSet<String> = data.keys().map(|k| str_at(k, "key").to_string()).collect();

    // The Deployment: image args, probes, security, volumes, secrets, grace.
    let dep = named("Deployment", "restyle-worker");
    let dep_name = name(dep);
    let pod = &dep["spec"]["template"];
    let labels = pod["metadata"]["labels"].clone();
    assert_eq!(dep["spec"]["selector"]["matchLabels"], labels, "selector");
    let c = worker_container(dep);
    let args = strings(&c["args"], "deployment args");
    assert_eq!(args.first().map(String::as_str), Some("worker"));
    let listen = flag_value(&args, "--metrics-listen").expect("--metrics-listen");
    let metrics_port = port_of(listen);
    let ports = c["ports"].as_sequence().expect("ports");
    let port_named = |n: &str| -> u64 {
        ports
            .iter()
            .find(|p| p["name"].as_str() == Some(n))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {n}"))
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        let port = match &get["port"] {
            Value::String(n) => port_named(n),
            v => v.as_u64().expect("probe port"),
        };
        assert_eq!(port, u64::from(metrics_port), "{probe} port");
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(metrics_port.to_string().as_str())
    );
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
    let pod_spec = &pod["spec"];
    assert_eq!(
        pod_spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    assert_ne!(pod_spec["securityContext"]["runAsUser"].as_u64(), Some(0));
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    for limit in ["requests", "limits"] {
        assert!(c["resources"][limit].is_mapping(), "resources.{limit}");
    }

    let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
    let volumes = pod_spec["volumes"].as_sequence().expect("volumes");
    let volume = |n: &str| -> &Value {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(n))
            .unwrap_or_else(|| panic!("no volume {n}"))
    };
    let mount_at = |path: &str| -> &Value {
        mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let cfg_mount = mount_at("/app/config/production.toml");
    assert_eq!(cfg_mount["subPath"].as_str(), Some("production.toml"));
    let cfg_vol = volume(str_at(&cfg_mount["name"], "mount name"));
    assert_eq!(
        cfg_vol["configMap"]["name"].as_str(),
        Some(name(one("ConfigMap")).as_str())
    );
    assert_eq!(
        deployment_env(dep).get("RESTYLE_ENV").map(String::as_str),
        Some("production")
    );
    let data_vol = volume(str_at(&mount_at("/data")["name"], "mount name"));
    let claim = data_vol["persistentVolumeClaim"]["claimName"].as_str();
    assert!(
        claim == Some(name(one("PersistentVolumeClaim")).as_str())
            || data_vol["emptyDir"].is_mapping(),
        "/data is neither the listed claim nor an emptyDir"
    );
    // Every Secret reference names the Secret; required keys exist in the template.
    for e in c["env"].as_sequence().expect("env") {
        let r = &e["valueFrom"]["secretKeyRef"];
        if r.is_null() {
            continue;
        }
        assert_eq!(r["name"].as_str(), Some(secret_name.as_str()));
        let key = str_at(&r["key"], "secret key");
        if r["optional"].as_bool() != Some(true) {
            assert!(secret_keys.contains(key), "secret template lacks {key}");
        }
    }
    let grace = production_grace();
    let term = Duration::from_secs(
        pod_spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
    );
    assert!(
        term >= grace + MIN_STOP_MARGIN,
        "terminationGracePeriodSeconds {term:?} < shutdown_grace {grace:?} + margin"
    );

    // The PodDisruptionBudget and the ScaledObject point at the Deployment.
    let pdb = named("PodDisruptionBudget", "restyle-worker");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"], labels,
        "PDB selector"
    );
    assert!(
        !pdb["spec"]["maxUnavailable"].is_null() || !pdb["spec"]["minAvailable"].is_null(),
        "PDB without a budget"
    );
    let so = one("ScaledObject");
    assert_eq!(
        so["spec"]["scaleTargetRef"]["name"].as_str(),
        Some(dep_name.as_str())
    );
    assert!(
        so["spec"]["minReplicaCount"].as_u64().unwrap_or(0) >= 1,
        "parked jobs need a live worker: minReplicaCount >= 1"
    );
    let triggers = so["spec"]["triggers"].as_sequence().expect("triggers");
    let redis = triggers
        .iter()
        .find(|t| t["type"].as_str() == Some("redis"))
        .expect("a redis trigger");
    assert_eq!(
        redis["metadata"]["listName"].as_str(),
        Some(Keys::new(&production_namespace()).ready().as_str()),
        "the KEDA trigger must watch the ready list of redis.namespace"
    );
    let auth = one("TriggerAuthentication");
    assert_eq!(
        redis["authenticationRef"]["name"].as_str(),
        Some(name(auth).as_str())
    );
    for r in auth["spec"]["secretTargetRef"].as_sequence().expect("refs") {
        assert_eq!(r["name"].as_str(), Some(secret_name.as_str()));
        let key = str_at(&r["key"], "key");
        assert!(secret_keys.contains(key), "secret template lacks {key}");
    }
}

#[test]
fn systemd_unit_has_its_sections_and_keys() {
    let u = unit();
    let sections: Vec<&str> = u.keys().map(String::as_str).collect();
    assert_eq!(sections, ["Install", "Service", "Unit"]);

    let get =
        |s: &str, k: &str| unit_value(&u, s, k).unwrap_or_else(|| panic!("[{s}] {k} missing"));
    for (k, v) in [
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ] {
        assert_eq!(get("Service", k), v, "[Service] {k}");
    }
    let user = get("Service", "User");
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "User={user}"
    );
    assert!(get("Service", "WorkingDirectory").starts_with('/'));
    assert!(get("Service", "EnvironmentFile")
        .trim_start_matches('-')
        .starts_with('/'));
    let umask = get("Service", "UMask");
    assert!(
        umask.len() == 4 && umask.chars().all(|c| ('0'..='7').contains(&c)),
        "UMask={umask}"
    );
    assert!(!get("Install", "WantedBy").is_empty());

    let exe = "/usr/local/bin/restyle";
    let start = get("Service", "ExecStart");
    let pre = get("Service", "ExecStartPre");
    assert!(
        start.starts_with(&format!("{exe} worker ")),
        "ExecStart={start}"
    );
    assert!(
        pre.starts_with(&format!("{exe} check-config")),
        "ExecStartPre={pre}"
    );
    let start_args: Vec<String> = start
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(flag_value(&start_args, "--log-format"), Some("json"));
    let listen = flag_value(&start_args, "--metrics-listen").expect("--metrics-listen");
    assert!(
        listen.starts_with("127.0.0.1:"),
        "metrics on loopback only: {listen}"
    );

    let stop = duration(get("Service", "TimeoutStopSec"), "TimeoutStopSec");
    let grace = production_grace();
    assert!(
        stop >= grace + MIN_STOP_MARGIN,
        "TimeoutStopSec {stop:?} < shutdown_grace {grace:?} + margin"
    );

    // The output directory the env file sets is writable under ProtectSystem=strict.
    let env = parse_env_file(
        &read("deploy/systemd/restyle.env.example"),
        "restyle.env.example",
    );
    let out_dir = env
        .get("RESTYLE__OUTPUT__DIR")
        .expect("RESTYLE__OUTPUT__DIR");
    let writable = get("Service", "ReadWritePaths");
    assert!(
        writable
            .split_whitespace()
            .any(|p| Path::new(out_dir).starts_with(p.trim_start_matches('-'))),
        "{out_dir} is not under ReadWritePaths={writable}"
    );
}

#[test]
fn systemd_env_example_holds_placeholders_only() {
    let env = parse_env_file(
        &read("deploy/systemd/restyle.env.example"),
        "restyle.env.example",
    );
    for key in [
        "AIMLAPI_API_KEY",
        "OXEN_API_KEY",
        "FAL_KEY",
        "KLING_ACCESS_KEY",
        "KLING_SECRET_KEY",
    ] {
        if let Some(v) = env.get(key) {
            assert!(
                v.is_empty() || v == "CHANGE_ME",
                "{key} must be empty or CHANGE_ME in the example"
            );
        }
    }
    let redis = env.get("REDIS_URL").expect("REDIS_URL");
    let u = url::Url::parse(redis).expect("REDIS_URL parses");
    if let Some(p) = u.password() {
        assert_eq!(p, "CHANGE_ME", "REDIS_URL password must be a placeholder");
    }
}

#[test]
fn compose_wires_redis_simulator_workers_and_producer() {
    let c = compose();
    let services = compose_services(&c);
    let svc = |n: &str| -> &Value {
        services
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no compose service {n}"))
    };

    // Redis: AOF and noeviction, a volume, a health check.
    let redis = svc("redis");
    let rcmd = compose_command(redis, "redis").join(" ");
    assert!(rcmd.contains("--appendonly yes"), "{rcmd}");
    assert!(
        rcmd.contains("--appendfsync everysec") || rcmd.contains("--appendfsync always"),
        "{rcmd}"
    );
    assert!(rcmd.contains("--maxmemory-policy noeviction"), "{rcmd}");
    assert!(!redis["volumes"].is_null(), "redis without a volume");
    let hc = strings(&redis["healthcheck"]["test"], "redis healthcheck").join(" ");
    assert!(hc.contains("redis-cli") && hc.contains("ping"), "{hc}");

    // The simulator.
    let sim_cmd = compose_command(svc("sim"), "sim");
    assert_eq!(sim_cmd.first().map(String::as_str), Some("sim"));
    let sim_port = port_of(flag_value(&sim_cmd, "--listen").expect("sim --listen"));

    // The image's EXPOSE is the workers' metrics port.
    let exposed: Vec<u16> = dockerfile()
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, a)| {
            a.split_whitespace()
                .map(|p| {
                    p.trim_end_matches("/tcp")
                        .parse::<u16>()
                        .expect("EXPOSE port")
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let grace = production_grace();
    let named_volumes: BTreeSet<String> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| str_at(k, "volume").to_string()).collect())
        .unwrap_or_default();
    let mut out_volumes = BTreeSet::new();
    let mut workers = 0;
    for (name, s) in &services {
        let cmd = compose_command(s, name);
        if cmd.first().map(String::as_str) != Some("worker") {
            continue;
        }
        workers += 1;
        assert_eq!(
            s["depends_on"]["redis"]["condition"].as_str(),
            Some("service_healthy"),
            "{name}: must wait for a healthy Redis"
        );
        let env = compose_env(s, name);
        let redis_url = url::Url::parse(&env["REDIS_URL"]).expect("REDIS_URL");
        assert_eq!(redis_url.host_str(), Some("redis"), "{name}: REDIS_URL");
        let base = url::Url::parse(&env["RESTYLE__PROVIDERS__AIMLAPI__BASE_URL"])
            .expect("aimlapi base url");
        assert_eq!(base.host_str(), Some("sim"), "{name}: base url host");
        assert_eq!(base.port(), Some(sim_port), "{name}: base url port");
        assert!(!env.get("AIMLAPI_API_KEY").is_none_or(String::is_empty));
        assert_eq!(
            env.get("RESTYLE__OUTPUT__ALLOW_HTTP").map(String::as_str),
            Some("true"),
            "{name}: the simulator serves http"
        );
        let listen = flag_value(&cmd, "--metrics-listen").expect("--metrics-listen");
        assert!(
            exposed.contains(&port_of(listen)),
            "{name}: metrics port not EXPOSEd"
        );
        let stop = duration(
            s["stop_grace_period"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: stop_grace_period")),
            "stop_grace_period",
        );
        assert!(
            stop >= grace + MIN_STOP_MARGIN,
            "{name}: stop_grace_period {stop:?} < shutdown_grace {grace:?} + margin"
        );
        let vols = strings(&s["volumes"], &format!("{name} volumes"));
        let data = vols
            .iter()
            .find(|v| v.split(':').nth(1) == Some("/data"))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at /data"));
        let vol = data.split(':').next().expect("volume name").to_string();
        assert!(
            named_volumes.contains(&vol),
            "{name}: volume {vol} not declared"
        );
        out_volumes.insert(vol);
    }
    assert!(workers >= 3, "three workers, found {workers}");
    assert_eq!(out_volumes.len(), 1, "workers must share one output volume");

    // The producer runs once and enqueues a batch file that exists.
    let producer = svc("producer");
    let pcmd = compose_command(producer, "producer");
    assert_eq!(pcmd.first().map(String::as_str), Some("enqueue"));
    let batch = pcmd.get(1).expect("batch file");
    assert!(root().join(batch).is_file(), "{batch} missing");
    assert_eq!(producer["restart"].as_str(), Some("no"));

    // Builds point at this Dockerfile with the repository root as context.
    for (name, s) in &services {
        if s["build"].is_null() {
            continue;
        }
        let ctx = root()
            .join("deploy")
            .join(s["build"]["context"].as_str().unwrap_or("."));
        let df = s["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
        assert!(ctx.join(df).is_file(), "{name}: no Dockerfile at {df}");
        assert!(
            ctx.join("Cargo.toml").is_file(),
            "{name}: context is not the root"
        );
    }
}

#[test]
fn commands_in_deploy_files_are_real_subcommands_and_flags() {
    let mut seen = 0;
    let c = compose();
    for (name, s) in compose_services(&c) {
        if !runs_restyle(s) {
            continue;
        }
        let mut args = compose_command(s, &name);
        if args.first().map(String::as_str) == Some("restyle") {
            args.remove(0);
        }
        assert_real_command(&args, &format!("compose service {name}"));
        seen += 1;
    }

    for (file, dep) in deployments() {
        let args = strings(&worker_container(&dep)["args"], "deployment args");
        assert_real_command(&args, &format!("k8s deployment in {file}"));
        seen += 1;
    }

    for (file, u) in units() {
        for key in ["ExecStartPre", "ExecStart"] {
            for (_, line) in u["Service"].iter().filter(|(k, _)| k == key) {
                let mut words = line.split_whitespace().map(str::to_string);
                let exe = words.next().expect("executable");
                let exe = exe.trim_start_matches(['-', '@', ':', '+', '!']);
                assert!(exe.ends_with("/restyle"), "{file}: {key}={line}");
                assert_real_command(&words.collect::<Vec<_>>(), &format!("{file} {key}"));
                seen += 1;
            }
        }
    }

    let df = dockerfile();
    let cmd = df
        .iter()
        .rev()
        .find(|(i, _)| i == "CMD")
        .expect("CMD")
        .1
        .clone();
    let cmd: Vec<String> = serde_json::from_str(&cmd).expect("CMD in JSON (exec) form");
    assert_real_command(&cmd, "Dockerfile CMD");
    seen += 1;
    assert!(seen >= 15, "only {seen} commands checked");
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let df = dockerfile();
    let froms: Vec<usize> = df
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(
        froms.len() >= 2,
        "a multi-stage build: {} FROM",
        froms.len()
    );
    let last = &df[*froms.last().expect("FROM")..];
    let find = |ins: &str| -> Vec<&str> {
        last.iter()
            .filter(|(i, _)| i == ins)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let user = *find("USER").last().expect("a USER in the final stage");
    let uid = user.split(':').next().unwrap_or(user);
    assert!(
        uid != "root" && uid != "0" && !uid.is_empty(),
        "USER {user}"
    );
    let entry: Vec<String> = serde_json::from_str(find("ENTRYPOINT").last().expect("ENTRYPOINT"))
        .expect("ENTRYPOINT in JSON (exec) form");
    assert_eq!(entry, ["restyle"]);
    let cmd: Vec<String> =
        serde_json::from_str(find("CMD").last().expect("CMD")).expect("CMD in JSON form");
    assert_eq!(cmd, ["worker"]);
    assert!(
        find("ENV")
            .iter()
            .any(|e| e.contains("RESTYLE__OUTPUT__DIR=/data/out")),
        "ENV RESTYLE__OUTPUT__DIR=/data/out"
    );
    assert!(
        find("VOLUME").iter().any(|v| v.contains("/data")),
        "VOLUME /data"
    );
    assert_eq!(find("WORKDIR").last().copied(), Some("/app"));

    // Every COPY from the build context names something that exists and is not ignored.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for needed in ["target", "out", ".git"] {
        assert!(
            ignored.iter().any(|i| i == needed),
            ".dockerignore lacks {needed}/"
        );
    }
    for (_, args) in df.iter().filter(|(i, _)| i == "COPY") {
        let words: Vec<&str> = args.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let srcs = &words[..words.len() - 1];
        for src in srcs.iter().filter(|w| !w.starts_with("--")) {
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            assert!(
                !ignored.iter().any(|i| src.trim_end_matches('/') == i),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
}

#[test]
fn settings_in_deploy_files_load() {
    // Kubernetes: the ConfigMap layer, selected by the Deployment's RESTYLE_ENV.
    for (file, dep) in deployments() {
        assert_settings_load(&deployment_env(&dep), &format!("k8s deployment in {file}"));
    }

    // Compose: each restyle service's environment over the built-in settings.
    let c = compose();
    for (name, s) in compose_services(&c) {
        if runs_restyle(s) {
            assert_settings_load(&compose_env(s, &name), &format!("compose service {name}"));
        }
    }

    // systemd: each unit's Environment= lines and the example EnvironmentFile.
    for (file, u) in units() {
        let mut env = parse_env_file(
            &read("deploy/systemd/restyle.env.example"),
            "restyle.env.example",
        );
        for (_, v) in u["Service"].iter().filter(|(k, _)| k == "Environment") {
            for assignment in v.split_whitespace() {
                let (name, value) = assignment
                    .trim_matches('"')
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{file}: Environment={v}"));
                env.insert(name.to_string(), value.to_string());
            }
        }
        assert_settings_load(&env, &file);
    }

    // The image's own ENV.
    let mut image_env = BTreeMap::new();
    for (_, a) in dockerfile().iter().filter(|(i, _)| i == "ENV") {
        let (k, v) = a.split_once('=').expect("ENV key=value");
        image_env.insert(k.trim().to_string(), v.trim().to_string());
    }
    assert_settings_load(&image_env, "Dockerfile ENV");
}
