//! `restyle demo`: the whole pipeline on one machine with nothing but `redis-server`
//! installed — a private Redis (unless `REDIS_URL` is set), the simulator in-process and
//! time-scaled, the demo batch, two workers, live progress (`status::watch`), downloaded
//! results.
#![allow(clippy::print_stdout)]

use crate::cli::CliError;
use crate::config::{PollSettings, Settings};
use crate::localredis::LocalRedis;
use crate::model::ProviderName;
use crate::queue::{Queue, RetryMode};
use crate::{batch, producer, sim, status, upstream, worker};
use secrecy::SecretString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DEMO_KEY: &str = "demo-key-not-secret";

/// Runs the demo; returns once the batch is finished and its results are on disk (with
/// `console`, once the console then served there is stopped).
pub async fn run(
    mut settings: Settings,
    batch_file: &Path,
    time_scale: f64,
    console: Option<std::net::SocketAddr>,
) -> Result<(), CliError> {
    // Bound first, so a taken address fails before the batch runs.
    let listener = match console {
        Some(addr) => Some(crate::cli::serve::bind(addr).await?),
        None => None,
    };
    let out_dir = settings.output.dir.clone();
    let _redis = if std::env::var("REDIS_URL").is_ok() {
        None
    } else {
        let r = LocalRedis::start(&out_dir.join(".redis"), false)
            .map_err(|e| CliError::Other(e.into()))?;
        eprintln!(
            "private redis-server on 127.0.0.1:{} (data in {}/.redis)",
            r.port(),
            out_dir.display()
        );
        settings.redis.url = SecretString::from(r.url());
        Some(r)
    };
    settings.redis.namespace = format!("demo-{}", crate::queue::now_ms());
    let knobs = sim::Knobs {
        time_scale,
        api_keys: vec![DEMO_KEY.to_string()],
        ..sim::Knobs::default()
    };
    let simh = sim::spawn("127.0.0.1:0".parse().expect("addr"), knobs)
        .await
        .map_err(|e| CliError::Other(anyhow::anyhow!("simulator: {e}")))?;
    eprintln!(
        "simulator (aimlapi protocol) on {}, time scale {time_scale}",
        simh.base_url()
    );
    settings.point_provider_at(ProviderName::Aimlapi, &simh.base_url(), DEMO_KEY);
    settings.set_poll(scaled_poll(time_scale));
    settings.output.allow_http = true;
    settings.queue.idle_poll = Duration::from_millis(50);

    let spec = batch::load_file(batch_file, &settings.limits)?;
    let batch_id = spec.shared.batch_id.clone();
    // The demo owns its batch's output folder: start clean so results are this run's.
    let _ = std::fs::remove_dir_all(out_dir.join(&batch_id));
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent).await?;
    let enq = producer::enqueue(&queue, &spec).await?;
    eprintln!("enqueued {} jobs in batch {batch_id}", enq.added);

    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut s = settings.clone();
        s.worker.concurrency = 8;
        let ups = upstream::build_all(&s).map_err(|e| CliError::Other(e.into()))?;
        let rt = Arc::new(worker::Runtime::new(queue.clone(), s, ups));
        workers.push(tokio::spawn(worker::run(rt, stop.clone())));
    }

    // Live progress (bars on a terminal, plain lines elsewhere) until every job is terminal.
    let opts = status::WatchOptions {
        plain_every: Duration::from_secs(5),
        tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    tokio::select! {
        watched = status::watch(&queue, &settings, &batch_id, &opts) => { watched?; }
        _ = crate::shutdown::signal() => { stop.cancel(); return Err(CliError::Usage("interrupted".into())); }
    }
    let info = queue
        .batch(&batch_id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("batch {batch_id} vanished")))?;
    let st = status::gather(&queue, &settings, info).await?;
    let sims = simh.stats();
    println!();
    status::print_table(&st);
    println!(
        "simulator: {} submissions, {} duplicate submissions, {} polls",
        sims.submissions_total, sims.duplicate_submissions, sims.polls_total
    );
    println!(
        "results: {}",
        out_dir.join(&batch_id).join("results.jsonl").display()
    );
    println!("videos:  {}/", out_dir.join(&batch_id).display());
    let sheet = crate::report::write(&queue, &settings, &batch_id).await?;
    println!("contact sheet: {} (open it in a browser)", sheet.display());
    if let Some(listener) = listener {
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::Other(e.into()))?;
        println!(
            "console: http://{addr}/console (sign in with the operator token printed on stderr; \
             new batches run on this demo's simulator and workers; Ctrl-C stops)"
        );
        crate::cli::serve::serve_on(settings.clone(), listener).await?;
    }
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    simh.shutdown();
    let ok = st
        .counts
        .get(&crate::job::JobState::Succeeded)
        .copied()
        .unwrap_or(0)
        == st.total;
    if ok {
        Ok(())
    } else {
        Err(CliError::Other(anyhow::anyhow!(
            "{} of {} jobs did not succeed",
            st.total - st.done,
            st.total
        )))
    }
}

/// The production poll schedule scaled like the simulator's clock.
pub fn scaled_poll(time_scale: f64) -> PollSettings {
    let scale = |secs: f64| Duration::from_secs_f64((secs * time_scale).max(0.02));
    PollSettings {
        first_delay: scale(15.0),
        max_interval: scale(60.0),
        deadline: scale(1000.0),
    }
}
