//! A bad-input corpus for `restyle enqueue` (issue 12, "Hostile world"): batch files,
//! prompt files and flags come from producers and are untrusted. Each case runs the real
//! binary against this test's Redis namespace, under a deadline (a FIFO must not hang it)
//! and a memory cap (`/dev/zero` must not be read until memory runs out), and asserts
//! exit code 2, a message naming the field or flag and the limit or the allowed values,
//! no batch id on stdout, and no key in the namespace.

use crate::helpers::*;
use base64::Engine;
use redis::AsyncCommands;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long one `enqueue` of bad input may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(30);
/// Address space one `enqueue` may use (KiB, for `ulimit -v`): far above what validating
/// any capped input needs, far below what reading `/dev/zero` to the end would take.
const MEMORY_CAP_KIB: u64 = 2 * 1024 * 1024;

/// The first bytes of an MP4 file: an `ftyp` box (size, `ftyp`, brand `isom`).
const MP4_HEAD: &[u8] = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2";
const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";

/// Runs `restyle enqueue <args>` with this test's settings, under [`DEADLINE`] and
/// [`MEMORY_CAP_KIB`]; `Err` if it did not end in time (it is killed then).
fn enqueue(app: &TestApp, args: &[String]) -> Result<Output, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {MEMORY_CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_restyle"))
        .arg("enqueue")
        .args(args)
        .current_dir(app.out.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    app.test.apply(&mut cmd);
    let child = cmd.spawn().expect("spawn restyle enqueue");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => Ok(out.expect("wait for restyle enqueue")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            // The waiting thread returns once the child is gone.
            let _ = rx.recv();
            Err(format!("hung: still running after {DEADLINE:?}"))
        }
    }
}

async fn keys_in_namespace(app: &TestApp) -> Vec<String> {
    let mut c = app.queue.connection();
    let pattern = format!(
        "{}*",
        app.queue
            .keys()
            .prefix()
            .replace('{', "\\{")
            .replace('}', "\\}")
    );
    c.keys(pattern).await.expect("redis KEYS")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write(path: &Path, content: impl AsRef<[u8]>) {
    std::fs::write(path, content).expect("write test file");
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(ok.success(), "mkfifo {}", path.display());
}

/// A batch file body with this video and these extra lines, and one good prompt.
fn batch_toml(video: &str, extra: &str) -> String {
    format!("video = {video:?}\n{extra}\n[[variants]]\nprompt = \"a good prompt\"\n")
}

/// One bad input: the `enqueue` arguments and what the error must say.
struct Case {
    name: &'static str,
    args: Vec<String>,
    says: Vec<String>,
}

fn case(name: &'static str, args: &[&str], says: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        says: says.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Lays out the corpus's files under `out` (the command's directory): `batch/` holds the
/// batch files and what they name; `outside.mp4`, `notes.mp4` and `p.csv` lie beside it.
fn lay_out_files(out: &Path) {
    let dir = out.join("batch");
    std::fs::create_dir(&dir).unwrap();
    write(&out.join("outside.mp4"), MP4_HEAD);
    write(&out.join("notes.mp4"), "These are my notes, not a video.\n");
    write(&out.join("p.csv"), "name,prompt\na,fine\n");
    write(&dir.join("clip.mp4"), MP4_HEAD);
    write(&dir.join("logo.png"), SVG);
    mkfifo(&dir.join("fifo.mp4"));
    mkfifo(&dir.join("fifo.csv"));
    mkfifo(&dir.join("fifo.toml"));
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.mp4")).unwrap();
    std::os::unix::fs::symlink("../outside.mp4", dir.join("link-out.mp4")).unwrap();

    let files: Vec<(&str, String)> = vec![
        ("fifo-video.toml", batch_toml("fifo.mp4", "")),
        (
            "fifo-prompts.toml",
            batch_toml("clip.mp4", "prompts_file = \"fifo.csv\""),
        ),
        (
            "dev-zero-prompts.toml",
            batch_toml("clip.mp4", "prompts_file = \"/dev/zero\""),
        ),
        ("passwd.toml", batch_toml("passwd.mp4", "")),
        ("dotdot.toml", batch_toml("../outside.mp4", "")),
        (
            "absolute.toml",
            batch_toml(&out.join("outside.mp4").display().to_string(), ""),
        ),
        ("link-out.toml", batch_toml("link-out.mp4", "")),
        (
            "kling-data.toml",
            batch_toml(
                &format!("data:video/mp4;base64,{}", b64(MP4_HEAD)),
                "provider = \"kling\"",
            ),
        ),
        (
            "prompts-outside.toml",
            batch_toml("clip.mp4", "prompts_file = \"../p.csv\""),
        ),
        (
            "svg-image.toml",
            batch_toml("clip.mp4", "images = [\"logo.png\"]"),
        ),
        (
            "quote.toml",
            batch_toml("clip.mp4", "prompts_file = \"quote.csv\""),
        ),
        (
            "stray.toml",
            batch_toml("clip.mp4", "prompts_file = \"stray.csv\""),
        ),
        (
            "nul.toml",
            "video = \"clip.mp4\"\n[[variants]]\nprompt = \"fine\"\n\
             [[variants]]\nprompt = \"bad \\u0000 nul\"\n"
                .to_owned(),
        ),
        (
            "esc.toml",
            batch_toml("clip.mp4", "prompts_file = \"esc.csv\""),
        ),
        (
            "crlf-url.toml",
            batch_toml("https://v.example/a.mp4\r\nX-Injected: 1", ""),
        ),
        (
            "element-lf.toml",
            batch_toml(
                "https://v.example/a.mp4",
                "[[elements]]\nfrontal_image = \"https://i.example/f.png\\nx\"\n\
                 reference_images = [\"https://i.example/r.png\"]",
            ),
        ),
    ];
    for (name, body) in files {
        write(&dir.join(name), body);
    }
    // Valid TOML, one comment line past 1 MiB (the default limits.max_batch_file_bytes).
    let mut big = batch_toml("clip.mp4", "");
    big.push('#');
    big.push_str(&"x".repeat(1024 * 1024));
    big.push('\n');
    write(&dir.join("big.toml"), big);
    // A valid CSV past 4 MiB (the default limits.max_prompt_file_bytes).
    let mut csv = String::from("name,prompt\n");
    while csv.len() <= 4 * 1024 * 1024 {
        csv.push_str("v,Same shot as a watercolour with a soft paper texture and muted greens\n");
    }
    write(&dir.join("big.csv"), csv);
    // The quote opened on line 2 never closes: rows 2-4 would become one prompt.
    write(
        &dir.join("quote.csv"),
        "name,prompt\na,\"first\nb,second\nc,third\n",
    );
    // The quote opened on line 2 is closed on line 4, and text follows the closing quote.
    write(
        &dir.join("stray.csv"),
        "name,prompt\na,\"first\nb,second\nc,\"third\"\n",
    );
    write(
        &dir.join("esc.csv"),
        "name,prompt\na,fine\nb,\x1b[31mred alert\x1b[0m\n",
    );
}

fn corpus() -> Vec<Case> {
    let svg_uri = format!("data:image/svg+xml;base64,{}", b64(SVG.as_bytes()));
    let png_svg_uri = format!("data:image/png;base64,{}", b64(SVG.as_bytes()));
    let text_video_uri = format!("data:video/mp4;base64,{}", b64(b"hello, not a video"));
    let video = "./batch/clip.mp4";
    let mut cases = vec![
        // Local files: regular files only, never blocking, never read unbounded.
        case(
            "FIFO as the video",
            &["batch/fifo-video.toml"],
            &["video", "not a regular file", "FIFO"],
        ),
        case(
            "FIFO as the prompts file",
            &["batch/fifo-prompts.toml"],
            &["prompts_file", "not a regular file", "FIFO"],
        ),
        case(
            "FIFO as the batch file",
            &["batch/fifo.toml"],
            &["fifo.toml", "not a regular file", "FIFO"],
        ),
        case(
            "/dev/zero as the prompts file on the command line",
            &["--video", video, "--prompts-file", "/dev/zero"],
            &["prompts_file", "not a regular file", "character device"],
        ),
        case(
            "/dev/zero as the prompts file of a batch file",
            &["batch/dev-zero-prompts.toml"],
            &["prompts_file", "not a regular file"],
        ),
        case(
            "/dev/zero as the video",
            &["--video", "/dev/zero", "--prompt", "p"],
            &["video", "not a regular file"],
        ),
        // Inside the batch file's directory, symlinks resolved and held to the same rule.
        case(
            "symlink to /etc/passwd as a batch's video",
            &["batch/passwd.toml"],
            &["video", "/etc/passwd", "outside the batch file's directory"],
        ),
        case(
            "symlink to /etc/passwd as --video",
            &["--video", "batch/passwd.mp4", "--prompt", "p"],
            &["video", "MP4/QuickTime", "WebM/Matroska", "text"],
        ),
        case(
            "video named with ../",
            &["batch/dotdot.toml"],
            &["video", "outside the batch file's directory"],
        ),
        case(
            "video named by an absolute path elsewhere",
            &["batch/absolute.toml"],
            &["video", "outside the batch file's directory"],
        ),
        case(
            "symlink inside the batch dir pointing outside",
            &["batch/link-out.toml"],
            &["video", "outside the batch file's directory"],
        ),
        case(
            "prompts file outside the batch dir",
            &["batch/prompts-outside.toml"],
            &["prompts_file", "outside the batch file's directory"],
        ),
        // Content sniffed, for files and data URIs alike.
        case(
            "text named .mp4",
            &["--video", "./notes.mp4", "--prompt", "p"],
            &["video", "MP4/QuickTime", "text"],
        ),
        case(
            "SVG with script as an image data URI",
            &["--video", video, "--prompt", "p", "--image", &svg_uri],
            &[
                "images",
                "image 1",
                "image/svg+xml",
                "image/png, image/jpeg",
            ],
        ),
        case(
            "SVG bytes in an image/png data URI",
            &["--video", video, "--prompt", "p", "--image", &png_svg_uri],
            &["images", "image 1", "PNG, JPEG, WebP or GIF", "markup"],
        ),
        case(
            "SVG saved as .png in a batch",
            &["batch/svg-image.toml"],
            &["images", "image 1", "PNG, JPEG, WebP or GIF", "markup"],
        ),
        case(
            "text in a video/mp4 data URI",
            &["--video", &text_video_uri, "--prompt", "p"],
            &["video", "MP4/QuickTime", "text"],
        ),
        // Size caps on the batch file and the prompts file.
        case(
            "batch file over limits.max_batch_file_bytes",
            &["batch/big.toml"],
            &[
                "big.toml",
                "over the limit of 1048576 bytes",
                "limits.max_batch_file_bytes",
            ],
        ),
        case(
            "prompts CSV over limits.max_prompt_file_bytes",
            &["--video", video, "--prompts-file", "batch/big.csv"],
            &[
                "prompts_file",
                "over the limit of 4194304 bytes",
                "limits.max_prompt_file_bytes",
            ],
        ),
        // Malformed CSV is an error with its line.
        case(
            "CSV quote that never closes",
            &["batch/quote.toml"],
            &["prompts_file", "quote.csv line 2", "quote"],
        ),
        case(
            "CSV quote closed rows later, text after it",
            &["batch/stray.toml"],
            &["prompts_file", "stray.csv line 4", "line 2", "quote"],
        ),
        // Control characters in prompts, naming the variant.
        case(
            "NUL in an inline prompt",
            &["batch/nul.toml"],
            &["variant 2", "prompt", "U+0000", "NUL"],
        ),
        case(
            "ANSI escape in a CSV prompt",
            &["batch/esc.toml"],
            &["variant 3", "prompt", "U+001B", "ESC", "esc.csv line 3"],
        ),
        case(
            "terminal title escape in --prompt",
            &[
                "--video",
                video,
                "--prompt",
                "ok",
                "--prompt",
                "\x1b]0;owned\x07",
            ],
            &["variant 2", "prompt", "ESC"],
        ),
        case(
            "bidi override in --prompt",
            &["--video", video, "--prompt", "invoice \u{202e}fdp.exe"],
            &["variant 1", "prompt", "U+202E", "RIGHT-TO-LEFT OVERRIDE"],
        ),
        case(
            "C1 control in --prompt",
            &["--video", video, "--prompt", "a\u{9b}31m"],
            &["variant 1", "prompt", "U+009B"],
        ),
        // URLs with whitespace or controls.
        case(
            "space in the video URL",
            &["--video", "https://v.example/a b.mp4", "--prompt", "p"],
            &["video", "space", "%20"],
        ),
        case(
            "CR/LF in the video URL",
            &["batch/crlf-url.toml"],
            &["video", "U+000D", "CR"],
        ),
        case(
            "tab in an image URL",
            &[
                "--video",
                video,
                "--prompt",
                "p",
                "--image",
                "https://i.example/a\t.png",
            ],
            &["images", "image 1", "U+0009"],
        ),
        case(
            "line feed in an element's frontal image URL",
            &["batch/element-lf.toml"],
            &["elements", "element 1", "frontal_image", "U+000A"],
        ),
        // Kling takes the video by URL only (issue 13): refused, with what to give instead.
        case(
            "a local file as Kling's video",
            &[
                "--provider",
                "kling",
                "--video",
                "batch/clip.mp4",
                "--prompt",
                "p",
            ],
            &[
                "video",
                "kling takes the video by https URL only",
                "aimlapi, oxen, fal",
            ],
        ),
        case(
            "a data URI as Kling's video, in a batch file",
            &["batch/kling-data.toml"],
            &[
                "kling-data.toml: video: kling takes the video by https URL only",
                "upload",
            ],
        ),
    ];
    // Flags: clap names the flag and the allowed values or range.
    for (flag, value, says) in [
        ("--duration", "-1", &["--duration", "3", "10"][..]),
        ("--duration", "abc", &["--duration", "3", "10"]),
        ("--duration", "7.5", &["--duration", "3", "10"]),
        (
            "--aspect-ratio",
            "4:3",
            &["--aspect-ratio", "16:9", "9:16", "1:1"],
        ),
        ("--max-cost", "-5", &["--max-cost", "≥ 0"]),
        ("--max-cost", "NaN", &["--max-cost", "≥ 0"]),
        ("--clip-seconds", "abc", &["--clip-seconds", "≥ 0"]),
        (
            "--provider",
            "replicate",
            &["--provider", "aimlapi", "kling"],
        ),
        ("--model", "sora", &["--model", "edit", "reference"]),
        ("--keep-audio", "maybe", &["--keep-audio", "true", "false"]),
    ] {
        cases.push(Case {
            name: "bad flag value",
            args: ["--video", video, "--prompt", "p", flag, value]
                .map(String::from)
                .to_vec(),
            says: says.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    cases
}

#[tokio::test]
async fn every_bad_input_is_refused_naming_field_and_limit_and_nothing_is_enqueued() {
    let app = TestApp::new(fast_knobs()).await;
    lay_out_files(app.out.path());
    let mut failures = Vec::new();
    for case in corpus() {
        let out = match enqueue(&app, &case.args) {
            Ok(out) => out,
            Err(hung) => {
                failures.push(format!("{} {:?}: {hung}", case.name, case.args));
                continue;
            }
        };
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let mut wrong = Vec::new();
        if out.status.code() != Some(2) {
            wrong.push(format!("exit {:?}, not 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            wrong.push(format!(
                "stdout {:?}",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
        for s in &case.says {
            if !err.contains(s.as_str()) {
                wrong.push(format!("no {s:?} in the error"));
            }
        }
        let keys = keys_in_namespace(&app).await;
        if !keys.is_empty() {
            wrong.push(format!("enqueued: {keys:?}"));
        }
        if std::env::var_os("BAD_INPUT_SHOW").is_some() {
            eprintln!("{}: {}", case.name, err.trim());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{} {:?}: {}\n    stderr: {}",
                case.name,
                case.args
                    .iter()
                    .map(|a| a.chars().take(60).collect::<String>())
                    .collect::<Vec<_>>(),
                wrong.join("; "),
                err.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases not refused as they should be:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The rules refuse only what they should: files inside the batch file's directory (a
/// subdirectory, a symlink that stays inside), sniffed as what they claim, are enqueued.
#[tokio::test]
async fn files_inside_the_batch_directory_are_accepted() {
    let app = TestApp::new(fast_knobs()).await;
    let dir = app.out.path().join("campaign");
    std::fs::create_dir_all(dir.join("media")).unwrap();
    let mov = crate::clips::Clip {
        mov: true,
        ..crate::clips::Clip::OK
    };
    write(&dir.join("media/clip.mov"), mov.bytes());
    std::os::unix::fs::symlink("media/clip.mov", dir.join("latest.mov")).unwrap();
    write(
        &dir.join("media/logo.png"),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    );
    write(
        &dir.join("prompts.csv"),
        "name,prompt\na,\"first, with comma\"\nb,\"a \"\"quoted\"\" word\"\nc,tab\tinside\n",
    );
    write(
        &dir.join("b.toml"),
        batch_toml(
            "latest.mov",
            "images = [\"media/logo.png\"]\nprompts_file = \"prompts.csv\"",
        ),
    );
    let out = enqueue(&app, &["campaign/b.toml".to_owned()]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let info = app.info(&id).await;
    assert_eq!(info.total, 4);
    // Stored beside the spec (issue 13), which names them with their types.
    assert!(
        info.spec_json.contains(r#""video":"media:"#),
        "{}",
        info.spec_json
    );
    assert!(info.spec_json.contains(r#""mime":"video/quicktime""#));
    assert!(info.spec_json.contains(r#""mime":"image/png""#));
}
