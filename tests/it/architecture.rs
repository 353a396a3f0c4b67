//! The house rules `docs/architecture.md` states, checked on the source tree: one
//! definition of the job's states, files of a few hundred lines, and a simulator that
//! shares no code with the product.

use restyle::job::JobState;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn product_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "found the product's sources");
    files
}

/// The state module (and the Lua tables generated there) is the only place that spells
/// a state's wire name.
#[test]
fn no_state_name_literal_outside_the_state_module() {
    let mut offenders = Vec::new();
    for f in product_sources() {
        if f.ends_with("job/state.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            for s in JobState::ALL {
                let lit = format!("\"{}\"", s.as_str());
                let mut from = 0;
                while let Some(i) = line[from..].find(&lit) {
                    let at = from + i;
                    // `\"failed\"` inside a longer literal is not a literal of its own.
                    if !line[..at].ends_with('\\') {
                        offenders.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                    }
                    from = at + lit.len();
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "state names spelled outside src/job/state.rs:\n{}",
        offenders.join("\n")
    );
}

/// The simulator is a peer: its package depends on nothing of the product's.
#[test]
fn the_simulator_package_does_not_depend_on_the_product() {
    // Resolved for this host only: packages for other platforms may not be downloaded.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let info = String::from_utf8_lossy(&rustc.stdout).into_owned();
    let host = info
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let id_of = |name: &str| {
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("package {name} in the workspace"))
    };
    let (product, sim) = (id_of("restyle"), id_of("restyle-sim"));
    // Walk the resolved graph from the simulator: the product must not be reachable.
    let nodes = meta["resolve"]["nodes"].as_array().expect("resolved graph");
    let deps_of = |id: &str| -> Vec<String> {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| {
                n["deps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["pkg"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![sim.clone()];
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(deps_of(&id));
        }
    }
    assert!(seen.len() > 10, "walked the simulator's dependencies");
    assert!(
        !seen.contains(&product),
        "restyle-sim reaches the restyle package"
    );
    assert!(
        deps_of(&product).contains(&sim),
        "the product uses the simulator"
    );
}

/// The state table in `docs/architecture.md` says what `JobState` says.
#[test]
fn the_documented_state_machine_matches_job_state() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md");
    let yes = |cell: &str| match cell.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("a yes/no cell, not {other:?}"),
    };
    let mut documented = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `state` | terminal | failure | holds a slot | meaning |
        if cells.len() == 7 && cells[1].starts_with('`') {
            let name = cells[1].trim_matches('`');
            let state = JobState::parse(name)
                .unwrap_or_else(|| panic!("documented state {name:?} is a JobState"));
            assert_eq!(yes(cells[2]), state.is_terminal(), "{name}: terminal");
            assert_eq!(yes(cells[3]), state.is_failure(), "{name}: failure");
            assert_eq!(yes(cells[4]), state.holds_slot(), "{name}: holds a slot");
            documented.push(state);
        }
    }
    assert_eq!(documented, JobState::ALL.to_vec(), "every state, in order");
}

/// Files of a few hundred lines: none of the product's sources is over 500.
#[test]
fn no_product_source_file_is_over_500_lines() {
    let long: Vec<String> = product_sources()
        .into_iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(&f)
                .expect("readable")
                .lines()
                .count();
            (n > 500).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}
