//! Running a parsed command: dispatch on [`Command`], the shared settings and batch
//! lookups, `enqueue` and the worker loop. What each command prints goes to stdout
//! (results, ids, paths) or stderr (summaries); failures are [`CliError`]s.
#![allow(clippy::print_stdout)]

use super::{Cli, CliError, Command, EnqueueArgs};
use crate::batch::{self, BatchFlags};
use crate::config::{LoadOptions, Settings};
use crate::job::JobState;
use crate::queue::{Purged, Queue, QueueError, RetryMode};
use crate::{ops, producer, sim, status, upstream, worker};
use std::net::SocketAddr;
use std::sync::Arc;

fn load_settings(cli: &Cli) -> Result<Settings, CliError> {
    Ok(Settings::load(&LoadOptions {
        dir: Some(cli.config_dir.clone()),
        env: cli.env.clone(),
        file: None,
    })?)
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Enqueue(args) => enqueue(&cli, args).await,
        Command::Worker {
            concurrency,
            metrics_listen,
        } => {
            let mut settings = load_settings(&cli)?;
            if let Some(c) = concurrency {
                // At least 1: `values::at_least_one` parsed it.
                settings.worker.concurrency = *c;
            }
            run_worker(settings, *metrics_listen).await
        }
        Command::Receive {
            listen,
            metrics_listen,
        } => {
            let settings = load_settings(&cli)?;
            run_receiver(settings, *listen, *metrics_listen).await
        }
        Command::Serve { listen, hash_token } => {
            if *hash_token {
                return print_token_hash();
            }
            let settings = load_settings(&cli)?;
            super::serve::run(settings, *listen).await
        }
        Command::Status { batch_id, json } => {
            let settings = load_settings(&cli)?;
            let queue =
                Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
            let Some(info) = queue.batch(batch_id).await? else {
                return super::store::gone(&queue, batch_id).await;
            };
            let s = status::gather(&queue, &settings, info).await?;
            if *json {
                status::print_json(&s);
            } else {
                status::print_table(&s);
            }
            Ok(())
        }
        Command::Watch {
            batch_id,
            allow_failures,
            every,
        } => {
            let (settings, queue, _) = open_batch(&cli, batch_id).await?;
            let opts = status::WatchOptions {
                plain_every: std::time::Duration::from_secs((*every).max(1)),
                tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match status::watch(&queue, &settings, batch_id, &opts).await? {
                status::WatchEnd::FinishedWithFailures if !allow_failures => Err(
                    CliError::Failures(format!("batch {batch_id} finished with failures")),
                ),
                _ => Ok(()),
            }
        }
        Command::Report { batch_id } => {
            let settings = load_settings(&cli)?;
            if let Some(store) = super::store::open(&settings)? {
                let queue =
                    Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
                let url = super::store::report(&queue, &settings, &store, batch_id).await?;
                println!("{url}");
                return Ok(());
            }
            let (settings, queue, _) = open_batch(&cli, batch_id).await?;
            let path = crate::report::write(&queue, &settings, batch_id).await?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Results {
            batch_id,
            format,
            states,
        } => {
            if let Some(store) = super::store::open(&load_settings(&cli)?)? {
                let n = super::store::results(&store, batch_id, *format, states).await?;
                eprintln!("{n} jobs exported from {}", store.url());
                return Ok(());
            }
            let (_, queue, _) = open_batch(&cli, batch_id).await?;
            let mut out = std::io::stdout();
            let n = crate::export::write(&queue, batch_id, *format, states, &mut out).await?;
            eprintln!("{n} jobs exported");
            Ok(())
        }
        Command::Cancel { batch_id } => {
            let (settings, queue, info) = open_batch(&cli, batch_id).await?;
            let ups = upstream::build_all(&settings).map_err(|e| CliError::Other(e.into()))?;
            let r = ops::cancel(&queue, &ups, &info).await?;
            super::store::schedule_retention(&queue, &settings, batch_id).await;
            eprintln!(
                "cancelled {} jobs ({} cancelled upstream, {} left running upstream: the provider has no cancel)",
                r.cancelled, r.cancelled_upstream, r.left_running_upstream
            );
            if r.submit_pending > 0 {
                eprintln!(
                    "{} jobs were being submitted: their workers record any generation created and \
                     cancel it upstream where the provider can; their budget stays reserved until then",
                    r.submit_pending
                );
            }
            Ok(())
        }
        Command::Retry { batch_id, states } => {
            let (_, queue, info) = open_batch(&cli, batch_id).await?;
            let states: Vec<JobState> = if states.is_empty() {
                JobState::RETRY_DEFAULT.to_vec()
            } else {
                states.clone()
            };
            let n = ops::retry(&queue, &info, &states).await?;
            let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            eprintln!("requeued {n} jobs ({})", names.join(", "));
            Ok(())
        }
        Command::Reconcile {
            batch_id,
            resubmit,
            fail,
        } => {
            let (settings, queue, info) = open_batch(&cli, batch_id).await?;
            let how = match (resubmit, fail) {
                (true, _) => ops::Reconcile::Resubmit,
                (_, true) => ops::Reconcile::Fail,
                _ => ops::Reconcile::List,
            };
            let ids = ops::reconcile(&queue, &info, how).await?;
            super::store::schedule_retention(&queue, &settings, batch_id).await;
            for id in &ids {
                println!("{id}");
            }
            let verb = match how {
                ops::Reconcile::List => "submit outcome unknown (use --resubmit or --fail)",
                ops::Reconcile::Resubmit => "requeued for a new submit",
                ops::Reconcile::Fail => "marked failed",
            };
            eprintln!("{} jobs {verb}", ids.len());
            Ok(())
        }
        Command::Budget { batch_id, max_cost } => {
            let (_, queue, info) = open_batch(&cli, batch_id).await?;
            let n = queue.set_budget(batch_id, *max_cost).await?;
            eprintln!(
                "batch {batch_id}: budget {max_cost} (committed so far {}); {n} waiting jobs back in the queue",
                info.cost_committed
            );
            Ok(())
        }
        Command::Resume { provider } => {
            let p = crate::model::ProviderName::parse(provider)
                .ok_or_else(|| CliError::Usage(format!("unknown provider {provider:?}")))?;
            let settings = load_settings(&cli)?;
            let queue =
                Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
            let n = queue.resume_provider(p.as_str()).await?;
            eprintln!("provider {p} resumed; {n} waiting jobs back in the queue");
            Ok(())
        }
        Command::Purge { batch_id } => {
            let (_, queue, _) = open_batch(&cli, batch_id).await?;
            match queue.purge_batch(batch_id).await? {
                Purged::Removed(n) => {
                    eprintln!("batch {batch_id}: {n} job records removed from Redis");
                    Ok(())
                }
                Purged::Running => Err(CliError::Usage(format!(
                    "batch {batch_id} is not finished; cancel it first or wait"
                ))),
                Purged::Announcing => Err(CliError::Usage(format!(
                    "batch {batch_id} is finished but its completion announcement is still \
                     being delivered (on_done); purge it once that is done or given up \
                     (restyle dead lists announcements that gave up)"
                ))),
            }
        }
        Command::Dead { limit, json } => {
            let settings = load_settings(&cli)?;
            let queue =
                Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
            let dead = ops::dead(&queue, *limit).await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&dead).expect("serializes")
                );
            } else {
                for d in &dead {
                    println!("{}\t{}", d.job_id, d.reason);
                }
                eprintln!("{} dead jobs shown", dead.len());
            }
            Ok(())
        }
        Command::CheckConfig => {
            let settings = load_settings(&cli)?;
            // The store's client builds (its CA file reads) or the check fails.
            super::store::open(&settings)?;
            for (k, v) in settings.effective() {
                println!("{k} = {v}");
            }
            for (name, a) in upstream::availability(&settings) {
                eprintln!("{}", upstream::describe_availability(name, &a));
            }
            check_durability(&settings).await?;
            eprintln!("settings are valid");
            Ok(())
        }
        Command::Sim {
            listen,
            time_scale,
            knobs,
            rate_limit,
            max_in_flight,
        } => {
            let mut k = match knobs {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
                    serde_json::from_str(&text)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
                }
                None => sim::Knobs::default(),
            };
            k.time_scale = *time_scale;
            if rate_limit.is_some() {
                k.rate_limit = *rate_limit;
            }
            if max_in_flight.is_some() {
                k.max_in_flight = *max_in_flight;
            }
            k.check().map_err(CliError::Usage)?;
            sim::serve(*listen, k)
                .await
                .map_err(|e| CliError::Other(anyhow::anyhow!("simulator on {listen}: {e}")))
        }
        Command::Demo {
            batch,
            time_scale,
            console,
        } => {
            let settings = load_settings(&cli)?;
            crate::demo::run(settings, batch, *time_scale, *console).await
        }
    }
}

async fn open_batch(
    cli: &Cli,
    batch_id: &str,
) -> Result<(Settings, Queue, crate::queue::BatchInfo), CliError> {
    let settings = load_settings(cli)?;
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
    let Some(info) = queue.batch(batch_id).await? else {
        // Its records may have expired (output.retention): the tombstone says where to.
        super::store::gone(&queue, batch_id).await?;
        return Err(CliError::NotFound(format!("no batch {batch_id}")));
    };
    Ok((settings, queue, info))
}

async fn enqueue(cli: &Cli, args: &EnqueueArgs) -> Result<(), CliError> {
    let settings = load_settings(cli)?;
    let mut batch = match &args.file {
        Some(path) => {
            if args.video.is_some() || !args.prompts.is_empty() || args.prompts_file.is_some() {
                return Err(CliError::Usage(
                    "give either a batch file or --video/--prompt flags, not both".into(),
                ));
            }
            if args.tier.is_some() {
                return Err(CliError::Usage(
                    "--tier is for batches given by flags; set tier in the batch file".into(),
                ));
            }
            batch::load_file(path, &settings.limits)?
        }
        None => batch::from_flags(
            &BatchFlags {
                batch_id: args.batch_id.clone(),
                video: args.video.clone(),
                prompts: args.prompts.clone(),
                prompts_file: args.prompts_file.clone(),
                provider: args.provider.clone(),
                model: args.model.clone(),
                images: args.images.clone(),
                keep_audio: args.keep_audio,
                aspect_ratio: args.aspect_ratio.clone(),
                duration: args.duration,
                max_cost: args.max_cost,
                clip_seconds: args.clip_seconds,
                on_done: args.on_done.clone(),
                tier: args.tier.clone(),
            },
            &settings.limits,
        )?,
    };
    let source_name = args
        .file
        .as_ref()
        .map_or_else(|| "command line".to_owned(), |p| p.display().to_string());
    let notes =
        batch::probe::preflight(&mut batch, &settings, &source_name, args.skip_probe).await?;
    for note in notes {
        eprintln!("note: {note}");
    }
    if let Some(p) = &batch.shared.source {
        eprintln!("source clip: {}", p.summary());
    }
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
    let store = super::store::open(&settings)?;
    let done = producer::enqueue_with(&queue, &batch, store.as_deref()).await?;
    if done.added == 0 {
        eprintln!(
            "batch {} was already enqueued ({} jobs); nothing added",
            done.batch_id, done.total
        );
    } else {
        eprintln!("enqueued {} jobs in batch {}", done.added, done.batch_id);
    }
    println!("{}", done.batch_id);
    Ok(())
}

async fn run_worker(settings: Settings, metrics: Option<SocketAddr>) -> Result<(), CliError> {
    let cell: crate::metrics::QueueCell = Default::default();
    let health = Arc::new(crate::metrics::Health::default());
    if let Some(addr) = metrics {
        // Listening first: /healthz answers (and /readyz says why not) while Redis is down.
        crate::metrics::serve(addr, cell.clone(), health.clone())
            .await
            .map_err(|e| CliError::Other(anyhow::anyhow!("metrics listener on {addr}: {e}")))?;
    }
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent).await?;
    let durability = queue.durability().await?;
    if durability.holds() {
        tracing::info!(durability = durability.name(), guarantee = %durability.describe(),
            "Redis durability guarantee detected.");
    } else {
        tracing::warn!(durability = durability.name(), guarantee = %durability.describe(),
            "Redis gives no durability guarantee: a host crash or failover can make a job be paid twice.");
    }
    require_durable(&settings, &durability)?;
    let _ = cell.set(queue.clone());
    let ups = upstream::build_all(&settings).map_err(|e| CliError::Other(e.into()))?;
    if let Some(store) = super::store::open(&settings)? {
        tracing::info!(store = %store.url(), "Results go to the object store.");
    }
    let mut runtime = worker::Runtime::new(queue, settings, ups);
    runtime.health = health;
    let rt = Arc::new(runtime);
    let stop = tokio_util::sync::CancellationToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        tracing::info!("Signal received; stopping.");
        s2.cancel();
    });
    worker::run(rt, stop).await?;
    Ok(())
}

/// `serve --hash-token`: the SHA-256 of the token on stdin (one line; its newline is not
/// part of the token).
fn print_token_hash() -> Result<(), CliError> {
    let mut token = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), 4096), &mut token)
        .map_err(|e| CliError::Usage(format!("reading the token on stdin: {e}")))?;
    let token = token.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(CliError::Usage("give the token on stdin".into()));
    }
    println!("{}", crate::serve::auth::hash_token(token));
    Ok(())
}

/// `restyle receive`: the push receiver until SIGTERM/SIGINT.
async fn run_receiver(
    settings: Settings,
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
) -> Result<(), CliError> {
    let cell: crate::metrics::QueueCell = Default::default();
    let health = Arc::new(crate::metrics::Health::default());
    if let Some(addr) = metrics {
        crate::metrics::serve(addr, cell.clone(), health.clone())
            .await
            .map_err(|e| CliError::Other(anyhow::anyhow!("metrics listener on {addr}: {e}")))?;
    }
    if !settings.push.enabled() {
        tracing::warn!(
            "push.public_url is unset: workers do not ask providers to push; this receiver \
             only acts on pushes of jobs submitted elsewhere."
        );
    }
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent).await?;
    let _ = cell.set(queue.clone());
    let receiver = Arc::new(crate::push::Receiver::new(queue, &settings));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Other(anyhow::anyhow!("push listener on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(e.into()))?;
    tracing::info!(%addr, "Push receiver listening.");
    health.set_running(true);
    let stop = tokio_util::sync::CancellationToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        tracing::info!("Signal received; stopping.");
        s2.cancel();
    });
    let p = &settings.push;
    crate::push::serve(
        listener,
        receiver.router(),
        p.max_concurrency,
        p.request_timeout,
        stop,
    )
    .await;
    health.set_running(false);
    tracing::info!("Push receiver stopped.");
    Ok(())
}

/// `redis.require_durable`: no worker (and no passing `check-config`) without a guarantee.
fn require_durable(settings: &Settings, d: &crate::queue::Durability) -> Result<(), CliError> {
    if settings.redis.require_durable && !d.holds() {
        return Err(CliError::Config(crate::config::ConfigError::Invalid {
            key: "redis.require_durable".into(),
            reason: format!("is true, but Redis gives no guarantee: {}", d.describe()),
        }));
    }
    Ok(())
}

/// `check-config`: the configured Redis's version and which durability guarantee it
/// gives. Unreachable Redis is said, not failed (the settings can be checked before Redis
/// exists); a Redis too old for the queue fails the check.
async fn check_durability(settings: &Settings) -> Result<(), CliError> {
    let found = match Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await {
        Ok(q) => {
            match q.server_version().await {
                Ok(Some(v)) => eprintln!(
                    "redis version: {v} (restyle needs {} or newer)",
                    crate::queue::REQUIRED_REDIS
                ),
                Ok(None) => eprintln!("redis version: unknown (INFO server says none)"),
                Err(e) => eprintln!("redis version: unknown ({e})"),
            }
            q.durability().await
        }
        Err(e @ QueueError::RedisTooOld { .. }) => {
            eprintln!("redis version: {e}");
            return Err(e.into());
        }
        Err(e) => Err(e),
    };
    match found {
        Ok(d) => {
            eprintln!("redis durability: {d}");
            require_durable(settings, &d)
        }
        Err(e) => {
            eprintln!("redis durability: unknown, not checked ({e})");
            Ok(())
        }
    }
}
