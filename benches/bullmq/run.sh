#!/usr/bin/env bash
# Side by side with BullMQ (BENCHMARKS.md, "Side by side with BullMQ"), on ONE fresh
# private redis-server. Manual only: not run by .ci/run, not part of the tests.
#
# `run.sh` (or `run.sh drain`): the no-op drain of BENCH_JOBS (20,000) jobs by ONE worker
# at concurrency 256, BullMQ's (bench.mjs drain) and ours (`cargo bench --bench throughput
# -- queue_noop_c256`), BENCH_ROUNDS (3) rounds, the order alternating each round so that
# noise hits both. One JSON line per run (with `round`, `side`, and the redis-server CPU
# time the run used), then a summary line with the medians and the ratio.
#
# `run.sh idle`: idle Redis commands per worker and pickup latency, BullMQ's (bench.mjs
# idle, then pickup) and ours (`cargo bench --bench idle`), once each, IDLE_WINDOW_S (60:
# a multiple of BullMQ's 30 s stalled check and of our 3 s lease timer) for both.
#
#   benches/bullmq/run.sh                  # 3 rounds of 20,000 jobs
#   BENCH_ROUNDS=5 BENCH_JOBS=50000 benches/bullmq/run.sh
#   benches/bullmq/run.sh idle
#
# Needs node + npm (the pinned bullmq and ioredis are installed with `npm ci` into
# target/bullmq-bench, never into the repo), redis-server and redis-cli on PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scratch="$root/target/bullmq-bench"
mode="${1:-drain}"
case "$mode" in drain | idle) ;; *) echo "usage: $0 [drain|idle]" >&2; exit 2 ;; esac
jobs="${BENCH_JOBS:-20000}"
rounds="${BENCH_ROUNDS:-3}"

mkdir -p "$scratch"
cp "$here/package.json" "$here/package-lock.json" "$here/bench.mjs" "$scratch/"
if ! cmp -s "$here/package-lock.json" "$scratch/.installed-lock.json"; then
  echo "installing the pinned bullmq into $scratch" >&2
  # No install scripts: msgpackr-extract ships its linux-x64 build as a package.
  npm ci --prefix "$scratch" --ignore-scripts --no-audit --no-fund >&2
  cp "$here/package-lock.json" "$scratch/.installed-lock.json"
fi

# Built before anything is timed.
if [ "$mode" = drain ]; then
  (cd "$root" && cargo bench --no-run --bench throughput >&2)
else
  (cd "$root" && cargo bench --no-run --bench idle >&2)
fi

port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
rdir="$(mktemp -d "$scratch/redis.XXXXXX")"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$rdir" --logfile "$rdir/redis.log" &
rpid=$!
cleanup() {
  kill "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  rm -rf "$rdir"
}
trap cleanup EXIT
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$port" ping >/dev/null
export REDIS_URL="redis://127.0.0.1:$port"
echo "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port (pid $rpid), $jobs jobs, $rounds rounds" >&2

# CPU seconds redis-server has used so far (utime + stime).
redis_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$rpid/stat"
}

if [ "$mode" = idle ]; then
  export IDLE_WINDOW_S="${IDLE_WINDOW_S:-60}"
  (cd "$scratch" && node bench.mjs idle && node bench.mjs pickup)
  (cd "$root" && cargo bench --bench idle)
  exit 0
fi

lines="$(mktemp "$scratch/lines.XXXXXX")"
# $1 round, $2 side, $3 redis CPU seconds, stdin: the side's JSON line.
annotate() {
  node -e '
    const l = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const [round, side, cpu] = process.argv.slice(1);
    const out = { round: +round, side, ...l, redis_cpu_s: +cpu,
      redis_cpu_us_per_job: Math.round(+cpu / l.jobs * 1e7) / 10 };
    process.stdout.write(JSON.stringify(out) + "\n");
  ' "$1" "$2" "$3"
}

run_side() {
  local round=$1 side=$2 line c0 c1
  c0="$(redis_cpu)"
  if [ "$side" = bullmq ]; then
    line="$(cd "$scratch" && BENCH_JOBS="$jobs" BULLMQ_CONCURRENCY=256 node bench.mjs drain)"
  else
    line="$(cd "$root" && BENCH_JOBS="$jobs" cargo bench --bench throughput -- queue_noop_c256 \
      | grep '"case":"queue_noop_c256"')"
  fi
  c1="$(redis_cpu)"
  echo "$line" | annotate "$round" "$side" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')" \
    | tee -a "$lines"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    run_side "$round" bullmq
    run_side "$round" restyle
  else
    run_side "$round" restyle
    run_side "$round" bullmq
  fi
done

node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
  const side = (n) => rows.filter((r) => r.side === n);
  const [b, r] = [side("bullmq"), side("restyle")];
  const pick = (rs, k) => rs.map((x) => x[k]);
  const rounds = [...new Set(rows.map((x) => x.round))];
  const perRound = rounds.map((n) => {
    const rr = r.find((x) => x.round === n), bb = b.find((x) => x.round === n);
    return Math.round((rr.jobs_per_s / bb.jobs_per_s) * 100) / 100;
  });
  const r2 = (x) => Math.round(x * 1000) / 1000;
  console.log(JSON.stringify({
    case: "side_by_side_noop_c256", jobs: rows[0].jobs, rounds: rounds.length,
    bullmq: b[0].bullmq,
    restyle_jobs_per_s_median: med(pick(r, "jobs_per_s")),
    bullmq_jobs_per_s_median: med(pick(b, "jobs_per_s")),
    ratio_of_medians: r2(med(pick(r, "jobs_per_s")) / med(pick(b, "jobs_per_s"))),
    ratio_per_round: perRound,
    restyle_jobs_per_s: pick(r, "jobs_per_s"), bullmq_jobs_per_s: pick(b, "jobs_per_s"),
    restyle_redis_cmds_per_job: med(pick(r, "redis_cmds_per_job")),
    bullmq_redis_cmds_per_job: med(pick(b, "redis_cmds_per_job")),
    restyle_redis_cpu_us_per_job: med(pick(r, "redis_cpu_us_per_job")),
    bullmq_redis_cpu_us_per_job: med(pick(b, "redis_cpu_us_per_job")),
  }));
' "$lines"
rm -f "$lines"
