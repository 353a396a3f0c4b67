//! The deployment files of the processes beside the workers: the console and API
//! (`restyle serve`) and the push receiver (`restyle receive`), in Kubernetes, systemd and
//! Compose. Each Deployment's pods are locked down like the workers', its probes and
//! Services point at ports its container declares and its command listens on, every
//! systemd unit carries the same hardening and listens on loopback only, and the Compose
//! console shares the workers' output volume (uploads in, outputs out).
//!
//! The file parsing is `deploy.rs`'s; this file adds the checks across services.

use super::deploy::{
    compose, compose_command, compose_services, deployments, flag_value, port_of, str_at, strings,
    unit_value, units, worker_container, yaml_docs,
};
use serde_norway::Value;
use std::collections::BTreeMap;

/// The Secret the Deployments read, and the keys its template holds.
fn secret_keys() -> (String, Vec<String>) {
    let secret = yaml_docs("deploy/k8s/secret.example.yaml")
        .into_iter()
        .find(|d| d["kind"].as_str() == Some("Secret"))
        .expect("a Secret template");
    let keys = secret["stringData"]
        .as_mapping()
        .expect("stringData")
        .keys()
        .map(|k| str_at(k, "key").to_string())
        .collect();
    (
        str_at(&secret["metadata"]["name"], "name").to_string(),
        keys,
    )
}

/// Every document of `kind` under deploy/k8s.
fn of_kind(kind: &str) -> Vec<Value> {
    super::deploy::files_under("deploy/k8s")
        .into_iter()
        .filter(|f| f.ends_with(".yaml") && !f.ends_with("kustomization.yaml"))
        .flat_map(|f| yaml_docs(&f))
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

/// A container's ports by name.
fn ports(c: &Value) -> BTreeMap<String, u64> {
    c["ports"]
        .as_sequence()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        str_at(&p["name"], "port name").to_string(),
                        p["containerPort"].as_u64().expect("containerPort"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_deployment_is_locked_down_and_its_probes_and_services_hit_real_ports() {
    let (secret_name, keys) = secret_keys();
    let deps = deployments();
    let mut subcommands: Vec<String> = Vec::new();
    let mut labels_of: Vec<(String, Value, BTreeMap<String, u64>)> = Vec::new();
    for (file, dep) in &deps {
        let name = str_at(&dep["metadata"]["name"], "name").to_string();
        let at = format!("{file} ({name})");
        let pod = &dep["spec"]["template"];
        let labels = pod["metadata"]["labels"].clone();
        assert_eq!(
            dep["spec"]["selector"]["matchLabels"], labels,
            "{at}: selector"
        );
        let spec = &pod["spec"];
        assert_eq!(
            spec["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{at}"
        );
        assert_ne!(
            spec["securityContext"]["runAsUser"].as_u64(),
            Some(0),
            "{at}"
        );
        assert_eq!(
            spec["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{at}"
        );
        let c = worker_container(dep);
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{at}");
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{at}"
        );
        assert_eq!(
            strings(&sc["capabilities"]["drop"], "drop"),
            ["ALL"],
            "{at}"
        );
        for limit in ["requests", "limits"] {
            assert!(
                c["resources"][limit].is_mapping(),
                "{at}: resources.{limit}"
            );
        }
        let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"].as_str() == Some("/app/config/production.toml")),
            "{at}: the production settings are not mounted"
        );
        let envs = c["env"].as_sequence().expect("env");
        assert!(
            envs.iter()
                .any(|e| e["name"].as_str() == Some("RESTYLE_ENV")
                    && e["value"].as_str() == Some("production")),
            "{at}: RESTYLE_ENV=production"
        );
        for e in envs {
            let r = &e["valueFrom"]["secretKeyRef"];
            if r.is_null() {
                continue;
            }
            assert_eq!(r["name"].as_str(), Some(secret_name.as_str()), "{at}");
            let key = str_at(&r["key"], "secret key");
            if r["optional"].as_bool() != Some(true) {
                assert!(keys.iter().any(|k| k == key), "{at}: template lacks {key}");
            }
        }

        let ports = ports(c);
        for probe in ["livenessProbe", "readinessProbe"] {
            let port = &c[probe]["httpGet"]["port"];
            let n = str_at(port, &format!("{at}: {probe} port (a named port)"));
            assert!(ports.contains_key(n), "{at}: {probe} names no port {n}");
        }
        let args = strings(&c["args"], "args");
        let sub = args.first().expect("subcommand").clone();
        let listens = |flag: &str, port_name: &str, probe_paths: &[(&str, &str)]| {
            let addr = flag_value(&args, flag).unwrap_or_else(|| panic!("{at}: {flag}"));
            assert_eq!(
                u64::from(port_of(addr)),
                ports[port_name],
                "{at}: {flag} {addr} is not the container port {port_name}"
            );
            assert!(
                addr.starts_with("0.0.0.0:"),
                "{at}: {flag} {addr} unreachable in the pod"
            );
            for (probe, path) in probe_paths {
                let get = &c[*probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(*path), "{at}: {probe}");
                assert_eq!(get["port"].as_str(), Some(port_name), "{at}: {probe} port");
            }
        };
        match sub.as_str() {
            "worker" => {}
            "serve" => {
                listens(
                    "--listen",
                    "http",
                    &[
                        ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/healthz"),
                    ],
                );
                // Sessions are in Redis: more than one console, rolled without a gap.
                let replicas = dep["spec"]["replicas"].as_u64().expect("replicas");
                assert!(replicas >= 2, "{at}: replicas {replicas}");
                let strategy = &dep["spec"]["strategy"];
                assert_eq!(strategy["type"].as_str(), Some("RollingUpdate"), "{at}");
                assert_eq!(
                    strategy["rollingUpdate"]["maxUnavailable"].as_u64(),
                    Some(0),
                    "{at}"
                );
                assert!(
                    of_kind("PodDisruptionBudget").iter().any(|p| {
                        p["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
                    }),
                    "{at}: a disruption budget"
                );
            }
            "receive" => {
                listens("--listen", "push", &[]);
                listens(
                    "--metrics-listen",
                    "metrics",
                    &[("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")],
                );
            }
            other => panic!("{at}: unexpected subcommand {other}"),
        }
        subcommands.push(sub);
        labels_of.push((name, labels, ports));
    }
    subcommands.sort();
    assert_eq!(subcommands, ["receive", "serve", "worker"]);

    // Each Service selects exactly one Deployment's pods and targets its named ports;
    // none routes to workers (they take no traffic).
    let services = of_kind("Service");
    assert_eq!(services.len(), 2, "the console's and the receiver's");
    for svc in &services {
        let name = str_at(&svc["metadata"]["name"], "name");
        let sel = &svc["spec"]["selector"];
        let hits: Vec<&(String, Value, BTreeMap<String, u64>)> =
            labels_of.iter().filter(|(_, l, _)| l == sel).collect();
        assert_eq!(
            hits.len(),
            1,
            "Service {name} selects {} Deployments",
            hits.len()
        );
        assert_ne!(
            hits[0].0, "restyle-worker",
            "Service {name} routes to workers"
        );
        for p in svc["spec"]["ports"].as_sequence().expect("ports") {
            let target = str_at(&p["targetPort"], "targetPort (a named port)");
            assert!(
                hits[0].2.contains_key(target),
                "Service {name}: {} declares no port {target}",
                hits[0].0
            );
        }
    }
    // Each disruption budget covers one Deployment.
    for pdb in of_kind("PodDisruptionBudget") {
        let name = str_at(&pdb["metadata"]["name"], "name");
        let sel = &pdb["spec"]["selector"]["matchLabels"];
        assert_eq!(
            labels_of.iter().filter(|(_, l, _)| l == sel).count(),
            1,
            "PodDisruptionBudget {name}"
        );
    }
}

#[test]
fn every_systemd_unit_is_hardened_and_listens_on_loopback_only() {
    let mut subcommands = Vec::new();
    for (file, u) in units() {
        let get = |s: &str, k: &str| {
            unit_value(&u, s, k).unwrap_or_else(|| panic!("{file}: [{s}] {k} missing"))
        };
        for (k, v) in [
            ("KillSignal", "SIGTERM"),
            ("Restart", "on-failure"),
            ("RestartPreventExitStatus", "2"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("SystemCallFilter", "@system-service"),
            ("MemoryDenyWriteExecute", "yes"),
            ("RestrictNamespaces", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectControlGroups", "yes"),
            ("RestrictSUIDSGID", "yes"),
        ] {
            assert_eq!(get("Service", k), v, "{file}: [Service] {k}");
        }
        let user = get("Service", "User");
        assert!(
            !user.is_empty() && user != "root" && user != "0",
            "{file}: User={user}"
        );
        assert!(
            get("Service", "ExecStartPre").ends_with("restyle check-config"),
            "{file}"
        );
        let start: Vec<String> = get("Service", "ExecStart")
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect();
        assert_eq!(flag_value(&start, "--log-format"), Some("json"), "{file}");
        for flag in ["--listen", "--metrics-listen"] {
            if let Some(addr) = flag_value(&start, flag) {
                assert!(
                    addr.starts_with("127.0.0.1:"),
                    "{file}: {flag} {addr} not on loopback"
                );
            }
        }
        subcommands.push(start[0].clone());
    }
    subcommands.sort();
    assert_eq!(subcommands, ["receive", "serve", "worker"]);
}

#[test]
fn the_compose_console_is_published_on_loopback_and_shares_the_workers_volume() {
    let c = compose();
    let services = compose_services(&c);
    let svc = |n: &str| -> &Value {
        services
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no compose service {n}"))
    };
    let console = svc("console");
    let cmd = compose_command(console, "console");
    assert_eq!(cmd.first().map(String::as_str), Some("serve"));
    let port = port_of(flag_value(&cmd, "--listen").expect("serve --listen"));
    let published = strings(&console["ports"], "console ports");
    assert!(
        published.contains(&format!("127.0.0.1:{port}:{port}")),
        "the console on the host's loopback only: {published:?}"
    );
    assert_eq!(
        console["depends_on"]["redis"]["condition"].as_str(),
        Some("service_healthy")
    );
    let data = |s: &Value, n: &str| -> String {
        strings(&s["volumes"], &format!("{n} volumes"))
            .into_iter()
            .find(|v| v.split(':').nth(1) == Some("/data"))
            .unwrap_or_else(|| panic!("{n}: nothing at /data"))
    };
    assert_eq!(data(console, "console"), data(svc("worker-1"), "worker-1"));
    let hc = strings(&console["healthcheck"]["test"], "console healthcheck").join(" ");
    assert!(
        hc.contains(&format!("/dev/tcp/127.0.0.1/{port}")) && hc.contains("/healthz"),
        "{hc}"
    );
}
