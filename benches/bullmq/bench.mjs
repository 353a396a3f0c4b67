// BullMQ's side of the side-by-side (benches/bullmq/run.sh; BENCHMARKS.md, "Side by side
// with BullMQ"). Not part of the test suite. One JSON line on stdout per run, progress on
// stderr. Modes (first argument):
//
//   drain   BENCH_JOBS (20000) no-op jobs added first (addBulk, 1,000 per call, not
//           timed), then ONE Worker at BULLMQ_CONCURRENCY (256) drains them with a no-op
//           processor; seconds from just before the Worker is created to its last
//           `completed` event; Redis commands per job = INFO commandstats delta over the
//           same span (INFO itself excluded, as in benches/throughput.rs) / jobs.
//   idle    IDLE_WORKERS (4) Workers (each with its own connections, in this process) on
//           an empty queue; after IDLE_SETTLE_S (2) s, every command Redis executed in
//           IDLE_WINDOW_S (30) s, per worker per second (a multiple of the 30 s
//           stalled check).
//   pickup  one idle Worker; PICKUP_JOBS (200) jobs added one at a time (Queue.add), each
//           after the previous one completed and a random pause of 10–110 ms; pickup =
//           processor entry − return of add(), on this process's monotonic clock.
//
// Everything is BullMQ's defaults except concurrency: removeOnComplete / removeOnFail
// unset (completed jobs are kept, as restyle keeps finished records), events stream
// maxLen 10,000, drainDelay 5 s, stalledInterval 30 s, lockDuration 30 s, no metrics.
// Redis: REDIS_URL (required). Each run uses a fresh queue name and deletes its keys.

import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const mode = process.argv[2] ?? 'drain';
const num = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!(n > 0)) throw new Error(`${name}=${v} is not a positive number`);
  return n;
};
if (!process.env.REDIS_URL) throw new Error('REDIS_URL is required');
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port || 6379) };
const log = (...a) => console.error(...a);
const round = (x, p) => Math.round(x * 10 ** p) / 10 ** p;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function commandstats(c) {
  const text = await c.info('commandstats');
  const calls = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):.*?calls=(\d+)/.exec(line);
    if (m) calls[m[1]] = Number(m[2]);
  }
  return calls;
}

function delta(before, after) {
  const d = {};
  for (const [k, v] of Object.entries(after)) {
    if (k === 'info') continue;
    const n = v - (before[k] ?? 0);
    if (n > 0) d[k] = n;
  }
  return d;
}

async function dropKeys(c, pattern) {
  let cursor = '0';
  do {
    const [next, keys] = await c.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
    if (keys.length) await c.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

// Redis' own CPU time so far (INFO cpu: used_cpu_user + used_cpu_sys), seconds.
async function redisCpu(c) {
  const text = await c.info('cpu');
  const field = (n) => Number(new RegExp(`^${n}:([0-9.]+)`, 'm').exec(text)?.[1]);
  return field('used_cpu_user') + field('used_cpu_sys');
}

const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
const scripts = (d) => (d.evalsha ?? 0) + (d.eval ?? 0);

async function drain(stats, name) {
  const jobs = num('BENCH_JOBS', 20000);
  const concurrency = num('BULLMQ_CONCURRENCY', 256);
  log(`bullmq drain: ${jobs} no-op jobs, one Worker, concurrency ${concurrency}`);
  const queue = new Queue(name, { connection });
  const t0 = performance.now();
  for (let i = 0; i < jobs; i += 1000) {
    const chunk = [];
    for (let j = i; j < Math.min(i + 1000, jobs); j++) {
      chunk.push({
        name: 'noop',
        data: { index: j, prompt: `Bench variant ${j}: restyle the clip as a linocut print, tone ${j % 97}` },
      });
    }
    await queue.addBulk(chunk);
  }
  log(`  ${jobs} jobs added in ${((performance.now() - t0) / 1000).toFixed(2)}s (not timed)`);
  let completed = 0;
  let failed = 0;
  let done;
  const finished = new Promise((r) => (done = r));
  const before = await commandstats(stats);
  const start = performance.now();
  const worker = new Worker(name, async () => {}, { connection, concurrency });
  worker.on('completed', () => {
    completed += 1;
    if (completed + failed === jobs) done(performance.now());
  });
  worker.on('failed', () => {
    failed += 1;
    if (completed + failed === jobs) done(performance.now());
  });
  const end = await finished;
  const after = await commandstats(stats);
  const seconds = (end - start) / 1000;
  await worker.close();
  const counts = await queue.getJobCounts('completed', 'failed', 'wait', 'active');
  await queue.close();
  if (counts.completed !== jobs || failed) {
    throw new Error(`not every job completed: ${JSON.stringify(counts)}, failed events ${failed}`);
  }
  const d = delta(before, after);
  const per = (n) => round(n / jobs, 3);
  log(`  ${seconds.toFixed(2)}s, ${Math.round(jobs / seconds)} jobs/s`);
  return {
    case: 'bullmq_noop_c' + concurrency,
    jobs,
    seconds: round(seconds, 3),
    jobs_per_s: round(jobs / seconds, 1),
    concurrency,
    redis_cmds_per_job: per(sum(d)),
    evalsha_per_job: per(scripts(d)),
    cmds_per_job: Object.fromEntries(Object.entries(d).map(([k, v]) => [k, per(v)])),
    completed_kept: counts.completed,
    rss_mb: round(process.memoryUsage().rss / 2 ** 20, 1),
  };
}

async function idle(stats, name) {
  const n = num('IDLE_WORKERS', 4);
  const settle = num('IDLE_SETTLE_S', 2);
  const window = num('IDLE_WINDOW_S', 30);
  log(`bullmq idle: ${n} Workers on an empty queue, ${window} s window`);
  const queue = new Queue(name, { connection });
  await queue.waitUntilReady();
  const workers = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(name, async () => {}, { connection });
    await w.waitUntilReady();
    workers.push(w);
  }
  await sleep(settle * 1000);
  const cpu0 = await redisCpu(stats);
  const before = await commandstats(stats);
  const t = performance.now();
  await sleep(window * 1000);
  const after = await commandstats(stats);
  const secs = (performance.now() - t) / 1000;
  const cpu = (await redisCpu(stats)) - cpu0;
  await Promise.all(workers.map((w) => w.close()));
  await queue.close();
  const d = delta(before, after);
  const per = (x) => round(x / n / secs, 2);
  log(`  ${per(sum(d))} commands/s per idle worker`);
  return {
    case: 'bullmq_idle_workers',
    workers: n,
    worker: 'BullMQ Worker objects in one node process, each with its own connections',
    window_s: round(secs, 3),
    redis_cmds_per_worker_s: per(sum(d)),
    evalsha_per_worker_s: per(scripts(d)),
    cmds_per_worker_s: Object.fromEntries(Object.entries(d).map(([k, v]) => [k, per(v)])),
    redis_cmds_total: sum(d),
    // The whole server's, its own housekeeping (serverCron) included.
    redis_cpu_ms_per_s: round((cpu * 1000) / secs, 3),
  };
}

async function pickup(name) {
  const jobs = num('PICKUP_JOBS', 200);
  log(`bullmq pickup: ${jobs} single-job adds, one idle Worker`);
  const queue = new Queue(name, { connection });
  let seen;
  const worker = new Worker(
    name,
    async () => {
      seen?.(performance.now());
    },
    { connection },
  );
  await worker.waitUntilReady();
  await queue.waitUntilReady();
  const lat = [];
  for (let i = 0; i < jobs; i++) {
    await sleep(10 + Math.random() * 100);
    const picked = new Promise((r) => (seen = r));
    const completed = new Promise((r) => worker.once('completed', r));
    await queue.add('noop', { index: i, prompt: 'Pickup: the clip as a watercolour' });
    const returned = performance.now();
    lat.push((await picked) - returned);
    await completed;
    if ((i + 1) % 50 === 0) log(`  ${i + 1} / ${jobs}`);
  }
  await worker.close();
  await queue.close();
  lat.sort((a, b) => a - b);
  const at = (q) => round(lat[Math.round((lat.length - 1) * q)], 3);
  log(`  median ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`);
  return {
    case: 'bullmq_pickup',
    jobs,
    pickup_ms_p50: at(0.5),
    pickup_ms_p90: at(0.9),
    pickup_ms_max: at(1),
    pickup_ms_min: at(0),
    pickup_ms_mean: round(lat.reduce((a, b) => a + b, 0) / lat.length, 3),
  };
}

const stats = new IORedis(connection);
const name = `bench-${mode}-${randomBytes(4).toString('hex')}`;
try {
  const run = { drain: () => drain(stats, name), idle: () => idle(stats, name), pickup: () => pickup(name) }[mode];
  if (!run) throw new Error(`unknown mode ${mode} (drain, idle, pickup)`);
  const line = await run();
  const pkg = (dep) =>
    JSON.parse(readFileSync(new URL(`./node_modules/${dep}/package.json`, import.meta.url))).version;
  line.bullmq = pkg('bullmq');
  line.ioredis = pkg('ioredis');
  process.stdout.write(JSON.stringify(line) + '\n');
} finally {
  await dropKeys(stats, `bull:${name}:*`);
  stats.disconnect();
}
