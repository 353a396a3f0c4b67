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
        // The simulator speaks the providers' own words; it moves to its own crate.
        if f.ends_with("job/state.rs") || f.components().any(|c| c.as_os_str() == "sim") {
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
