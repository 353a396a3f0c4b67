// The console in a real browser: Debian's chromium driven by playwright-core signs in,
// starts a batch through the new-batch form with an uploaded clip, follows it to the end
// on the live batch page with no reload, marks two variants kept (and one rejected),
// downloads kept.zip and checks that it holds exactly the kept variants' outputs, then
// looks at the operator page and the batch list. Screenshots of each page go to
// RESTYLE_SCREENSHOTS.
//
// Run by tests/it/browser.rs (which starts Redis, the simulator, a worker and
// `restyle serve`); it selects only by the page contract (the ids and names that the
// console promises). Prints one JSON line per step on stdout:
//   {"step": "...", "pass": true|false, "detail": "..."}
// and `"missing": true` when what failed is a contract element that the page does not
// have (then the step says which, and a documented fallback keeps the run going so the
// later steps are still checked). The last line is {"step":"end", ...}.
//
// Environment: RESTYLE_URL (base URL), RESTYLE_TOKEN (an operator token), RESTYLE_CLIP
// (a small clip to upload), RESTYLE_SCREENSHOTS (a directory), RESTYLE_DOWNLOADS (where
// the downloaded zip is kept), RESTYLE_BROWSER_DEPS (the directory `setup.sh` installed
// node_modules into), CHROMIUM (the browser binary, default /usr/bin/chromium),
// RESTYLE_FINISH_MS (how long the batch may take, default 60000).

import { createRequire } from "node:module";
import { createHash } from "node:crypto";
import { readFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    report("setup", false, `${name} is not set`);
    process.exit(2);
  }
  return v;
};

function report(step, pass, detail, extra = {}) {
  process.stdout.write(JSON.stringify({ step, pass, ...extra, detail }) + "\n");
}
const missing = (step, detail, extra = {}) => report(step, false, detail, { missing: true, ...extra });

const base = env("RESTYLE_URL").replace(/\/$/, "");
const token = env("RESTYLE_TOKEN");
const clip = env("RESTYLE_CLIP");
const shots = env("RESTYLE_SCREENSHOTS");
const downloads = env("RESTYLE_DOWNLOADS");
const deps = env("RESTYLE_BROWSER_DEPS");
const executablePath = env("CHROMIUM", "/usr/bin/chromium");
const finishMs = Number(env("RESTYLE_FINISH_MS", "60000"));
// Every other wait (a page to load, an element to appear) is bounded by this.
const STEP_MS = 30000;

const require = createRequire(resolve(deps, "node_modules") + "/");
const { chromium } = require("playwright-core");
const yauzl = require("yauzl");

const PROMPTS = [
  "the same shot as a watercolour at dawn",
  "the same shot in neon at night",
  "the same shot as a pencil sketch",
];

mkdirSync(shots, { recursive: true });
mkdirSync(downloads, { recursive: true });

const shot = async (page, name) => {
  await page.screenshot({ path: join(shots, `${name}.png`) });
};
const has = async (page, selector) => (await page.locator(selector).count()) > 0;
/// Clicks a form's submit button and waits for the page it leads to (a redirect or the
/// form again with its errors).
async function submitted(page, button) {
  await Promise.all([
    page.waitForEvent("framenavigated", { predicate: (fr) => fr === page.mainFrame() }),
    button.click(),
  ]);
  await page.waitForLoadState("load");
}
/// The `.err` texts a page shows.
const errors = async (page) => (await page.locator(".err").allInnerTexts()).join(" | ") || "no .err shown";
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

/// The zip's file entries: name and bytes.
function zipEntries(path) {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      const out = [];
      zip.on("error", reject);
      zip.on("end", () => resolve(out));
      zip.on("entry", (entry) => {
        if (entry.fileName.endsWith("/")) return zip.readEntry();
        zip.openReadStream(entry, (e, stream) => {
          if (e) return reject(e);
          const parts = [];
          stream.on("data", (c) => parts.push(c));
          stream.on("error", reject);
          stream.on("end", () => {
            out.push({ name: entry.fileName, bytes: Buffer.concat(parts) });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

/// The output URL a variant's figure shows: its video (or source), image or link.
async function outputUrl(figure) {
  return figure.evaluate((f) => {
    for (const [sel, attr] of [
      ["video[src]", "src"],
      ["video source[src]", "src"],
      ["img[src]", "src"],
      ["a[href]", "href"],
    ]) {
      const el = f.querySelector(sel);
      if (el) return new URL(el.getAttribute(attr), location.href).href;
    }
    return null;
  });
}

async function run() {
  const browser = await chromium.launch({ executablePath, headless: true, timeout: 2 * STEP_MS });
  report("launch", true, `chromium ${browser.version()}`);
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
  });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(`uncaught: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text())) {
      pageErrors.push(`blocked: ${m.text()}`);
    }
  });

  try {
    await steps(page);
  } finally {
    report(
      "page_errors",
      pageErrors.length === 0,
      pageErrors.length ? pageErrors.join(" | ") : "no uncaught script error or CSP refusal",
    );
    await browser.close();
  }
}

async function steps(page) {
  // --- sign in ---------------------------------------------------------------------
  await page.goto(`${base}/console/batches`);
  const sentToSignin = page.url() === `${base}/console/signin`;
  let signin = "form#signin";
  if (!sentToSignin) {
    report("signin_page", false, `signed out, /console/batches should lead to /console/signin; at ${page.url()}`);
    await page.goto(`${base}/console/signin`);
  }
  if (!(await has(page, signin))) {
    signin = 'form[action="/console/signin"]';
    missing("signin_page", `form#signin absent (went on with ${signin})`);
  } else if (sentToSignin) {
    report("signin_page", true, "signed out: sent to /console/signin, form#signin shown");
  }
  await shot(page, "signin");
  await page.locator(`${signin} input[name=token]`).fill(token);
  await submitted(page, page.locator(`${signin} button[type=submit]`));
  if (page.url() !== `${base}/console/batches`) {
    report("signin", false, `stayed at ${page.url()}: ${await errors(page)}`);
    return;
  }
  report("signin", true, "signed in with the operator token, landed on /console/batches");

  // --- new batch -------------------------------------------------------------------
  await page.goto(`${base}/console/new`);
  let form = "form#new-batch";
  const contractForm = await has(page, form);
  if (!contractForm) form = 'form[action="/console/new"]';
  const f = page.locator(form);
  const absent = [];
  for (const sel of [
    "input[name=video_file][type=file]",
    "input[name=video]",
    "textarea[name=prompts]",
    "input[name=prompts_csv][type=file]",
    "input[name=images][type=file][multiple]",
    "select[name=provider]",
    "[name=model]",
    "input[name=duration]",
    "select[name=aspect_ratio]",
    "input[name=max_cost]",
    "input[type=hidden][name=csrf]",
    "button#start[type=submit]",
  ]) {
    if ((await f.locator(sel).count()) === 0) absent.push(sel);
  }
  if (contractForm) {
    const method = (await f.getAttribute("method")) ?? "";
    const enctype = (await f.getAttribute("enctype")) ?? "";
    if (method.toLowerCase() !== "post") absent.push(`method=post (is "${method}")`);
    if (enctype !== "multipart/form-data") absent.push(`enctype=multipart/form-data (is "${enctype}")`);
  } else {
    absent.unshift("form#new-batch");
  }
  if (absent.length === 0) {
    report("new_batch_form", true, "form#new-batch has every field of the contract");
  } else {
    missing("new_batch_form", `absent: ${absent.join(", ")}`);
  }

  const fileField = f.locator("input[name=video_file][type=file]");
  if ((await fileField.count()) > 0) {
    await fileField.setInputFiles(clip);
    report("upload_clip", true, `set ${clip} on input[name=video_file]`);
  } else {
    // Fallback while the form has no file field: the same clip through the upload API,
    // its reference typed into the video field.
    const res = await page.request.post(`${base}/api/v1/uploads`, {
      headers: { authorization: `Bearer ${token}`, "content-type": "video/mp4" },
      data: readFileSync(clip),
    });
    const body = await res.json();
    if (res.status() !== 201 || typeof body.upload !== "string") {
      report("upload_clip", false, `upload API answered ${res.status()}: ${JSON.stringify(body)}`);
      return;
    }
    await f.locator("input[name=video]").fill(body.upload);
    missing("upload_clip", `no input[name=video_file]; uploaded by /api/v1/uploads as ${body.upload}`);
  }
  await f.locator("textarea[name=prompts]").fill(PROMPTS.join("\n"));
  await f.locator("select[name=provider]").selectOption("aimlapi");
  const model = f.locator("[name=model]");
  if ((await model.evaluate((e) => e.tagName)) === "SELECT") await model.selectOption("edit");
  else await model.fill("edit");
  await shot(page, "new-batch");

  let start = `${form} button#start[type=submit]`;
  if (!(await has(page, start))) start = `${form} button[type=submit]`;
  await submitted(page, page.locator(start));
  if (!/^\/console\/batches\/[^/]+$/.test(new URL(page.url()).pathname)) {
    report("submit", false, `stayed at ${page.url()}: ${await errors(page)}`);
    return;
  }
  const batchId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
  report("submit", true, `form submitted, landed on /console/batches/${batchId}`, { batch_id: batchId });

  // --- a filtered page fills in live ------------------------------------------------
  // Opened while the batch runs: `?state=succeeded` shows none (or few) at load, and each
  // variant that succeeds is added in place, as the server renders it, without a reload.
  const filtered = await page.context().newPage();
  await filtered.goto(`${base}/console/batches/${encodeURIComponent(batchId)}?state=succeeded`);
  const filteredAtLoad = await filtered.locator("figure.variant").count();
  let filteredNavs = 0;
  filtered.on("framenavigated", (fr) => {
    if (fr === filtered.mainFrame()) filteredNavs += 1;
  });
  const filledIn = filtered
    .waitForFunction((n) => document.querySelectorAll("figure.variant video").length >= n, PROMPTS.length, {
      timeout: finishMs,
    })
    .then(
      () => true,
      () => false,
    );

  // --- the live page ---------------------------------------------------------------
  const marker = `m${Math.random().toString(36).slice(2)}`;
  await page.evaluate((m) => {
    window.__restyleMarker = m;
  }, marker);
  let navigations = 0;
  page.on("framenavigated", (fr) => {
    if (fr === page.mainFrame()) navigations += 1;
  });
  const progress = await has(page, "#progress");
  const stateEl = await has(page, "#batch-state");
  const finishedAtLoad = stateEl
    ? (await page.locator("#batch-state").getAttribute("data-finished")) === "true"
    : false;
  await shot(page, "batch-live");
  if (progress && stateEl) {
    report(
      "live_page",
      true,
      `#progress and #batch-state shown; ${finishedAtLoad ? "already finished at load" : "running at load"}`,
      { finished_at_load: finishedAtLoad },
    );
  } else {
    missing("live_page", `absent: ${[progress ? null : "#progress", stateEl ? null : "#batch-state"].filter(Boolean).join(", ")}`);
  }

  const t0 = Date.now();
  try {
    if (stateEl) {
      await page.locator('#batch-state[data-finished="true"]').waitFor({ state: "attached", timeout: finishMs });
      report("finished", true, `#batch-state[data-finished="true"] after ${Date.now() - t0} ms`);
    } else {
      // Fallback for today's page: its script writes " · finished" into #finished.
      await page.waitForFunction(
        () => (document.getElementById("finished")?.textContent ?? "").includes("finished"),
        null,
        { timeout: finishMs },
      );
      missing("finished", `no #batch-state; #finished said finished after ${Date.now() - t0} ms`);
    }
  } catch (e) {
    report("finished", false, `not finished within ${finishMs} ms: ${e.message.split("\n")[0]}`);
    return;
  }
  const filled = await filledIn;
  const filledCount = await filtered.locator("figure.variant").count();
  const filledStates = await filtered
    .locator("figure.variant")
    .evaluateAll((fs) => fs.map((f) => f.getAttribute("data-state")));
  report(
    "filtered_fill",
    filled &&
      filteredAtLoad < PROMPTS.length &&
      filledCount === PROMPTS.length &&
      filledStates.every((st) => st === "succeeded") &&
      filteredNavs === 0,
    `?state=succeeded: ${filteredAtLoad} at load, ${filledCount} (${filledStates.join(", ")}) after, ${filteredNavs} navigation(s)`,
    { at_load: filteredAtLoad },
  );
  await filtered.close();
  const kept = await page.evaluate(() => window.__restyleMarker);
  report(
    "no_reload",
    kept === marker && navigations === 0,
    `window marker ${kept === marker ? "survived" : "lost"}, ${navigations} navigation(s) since landing`,
  );

  // --- the contact sheet -----------------------------------------------------------
  const figures = page.locator("figure.variant");
  const nFig = await figures.count();
  if (nFig === 0) {
    await shot(page, "contact-sheet");
    missing("variants_shown", "no figure.variant on the finished page");
    missing("mark_kept", "no variants to mark");
    missing("download_kept", "no variants to download");
    missing("kept_zip", "no zip to check");
  } else {
    const seen = [];
    for (let i = 0; i < nFig; i++) {
      const fig = figures.nth(i);
      seen.push({
        job: await fig.getAttribute("data-job"),
        state: await fig.getAttribute("data-state"),
        text: await fig.innerText(),
        output: await outputUrl(fig),
        source: (await has(page, "#source video")) || (await has(page, "#source a")),
      });
    }
    const problems = [];
    if (nFig !== PROMPTS.length) problems.push(`${nFig} figures for ${PROMPTS.length} prompts`);
    for (const p of PROMPTS) {
      if (!seen.some((s) => s.text.includes(p))) problems.push(`no figure shows "${p}"`);
    }
    for (const s of seen) {
      if (!s.job) problems.push("a figure without data-job");
      if (s.state !== "succeeded") problems.push(`${s.job}: data-state=${s.state}`);
      if (!s.output) problems.push(`${s.job}: no video, image or link of its output`);
    }
    if (!seen[0].source) problems.push("#source has no video or link of the source clip");
    // The filter bar's counts follow the live events too (the page loaded mid-run).
    const succeededFilter = await page.locator('a.filter[data-state="succeeded"]').innerText();
    if (!succeededFilter.includes(`(${PROMPTS.length})`)) {
      problems.push(`the succeeded filter says "${succeededFilter}" for ${PROMPTS.length} succeeded`);
    }
    await shot(page, "contact-sheet");
    report(
      "variants_shown",
      problems.length === 0,
      problems.length ? problems.join("; ") : `${nFig} succeeded variants with outputs, source clip beside them`,
    );
    await markAndDownload(page, batchId, seen);
  }

  // --- operator page and batch list ------------------------------------------------
  await page.goto(`${base}/console/operator`);
  const opAbsent = [];
  for (const sel of ["#providers", "#queue", "#dead"]) {
    if (!(await has(page, sel))) opAbsent.push(sel);
  }
  await shot(page, "operator");
  const aimlapi = (await page.locator("body").innerText()).includes("aimlapi");
  if (opAbsent.length === 0) {
    const inTable = (await page.locator("#providers").innerText()).includes("aimlapi");
    report("operator_page", inTable, `#providers, #queue, #dead shown; aimlapi ${inTable ? "listed" : "NOT listed"} in #providers`);
  } else {
    missing("operator_page", `absent: ${opAbsent.join(", ")}; aimlapi ${aimlapi ? "listed" : "NOT listed"} on the page`);
  }

  await page.goto(`${base}/console/batches`);
  const link = page.locator(`a[href="/console/batches/${batchId}"]`);
  const listed = (await link.count()) > 0;
  await shot(page, "batches");
  report("batch_list", listed, `the list ${listed ? "links" : "does NOT link"} /console/batches/${batchId}`);
}

/// Keep the first two variants, reject the third; download kept.zip; check its entries.
async function markAndDownload(page, batchId, seen) {
  const keep = seen.slice(0, 2);
  const reject = seen.slice(2);
  const fig = (job) => page.locator(`figure.variant[data-job="${job}"]`);
  try {
    for (const [s, mark] of [...keep.map((s) => [s, "keep"]), ...reject.map((s) => [s, "reject"])]) {
      const button = fig(s.job).locator(`button[name=mark][value=${mark}]`);
      if ((await button.count()) === 0) {
        missing("mark_kept", `figure ${s.job} has no button[name=mark][value=${mark}]`);
        missing("download_kept", "nothing marked");
        missing("kept_zip", "no zip to check");
        return;
      }
      await button.click();
      // Without script the form posts and the page comes back server-rendered; with
      // script it updates in place. Either way the figure says its mark.
      await page.locator(`figure.variant[data-job="${s.job}"][data-mark="${mark}"]`).waitFor({ state: "attached" });
    }
    report("mark_kept", true, `kept ${keep.map((s) => s.job).join(", ")}; rejected ${reject.map((s) => s.job).join(", ") || "none"}`);
  } catch (e) {
    report("mark_kept", false, e.message.split("\n")[0]);
    return;
  }
  await shot(page, "contact-sheet");

  if (!(await has(page, "a#download-kept"))) {
    missing("download_kept", "no a#download-kept");
    missing("kept_zip", "no zip to check");
    return;
  }
  let file;
  try {
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("a#download-kept").click()]);
    const name = download.suggestedFilename();
    file = join(downloads, name);
    await download.saveAs(file);
    const want = `${batchId}-kept.zip`;
    report("download_kept", name === want, `downloaded ${name}${name === want ? "" : ` (want ${want})`}`, { file });
  } catch (e) {
    report("download_kept", false, e.message.split("\n")[0]);
    return;
  }
  try {
    const all = await zipEntries(file);
    const problems = [];
    // Beside the outputs, one manifest.json listing each kept job (and nothing else).
    const manifest = all.filter((e) => e.name === "manifest.json");
    const entries = all.filter((e) => e.name !== "manifest.json");
    if (manifest.length !== 1) {
      problems.push(`${manifest.length} manifest.json entries`);
    } else {
      const listed = JSON.stringify(JSON.parse(manifest[0].bytes.toString("utf8")));
      for (const s of keep) if (!listed.includes(s.job)) problems.push(`manifest.json lacks ${s.job}`);
      for (const s of seen.slice(keep.length)) if (listed.includes(s.job)) problems.push(`manifest.json lists rejected ${s.job}`);
    }
    if (entries.length !== keep.length) problems.push(`${entries.length} outputs for ${keep.length} kept`);
    // The zip holds the kept variants' outputs, as the page serves them, byte for byte:
    // the multiset of the entries' digests is the kept outputs' one.
    const left = entries.map((e) => sha256(e.bytes));
    const digestOf = async (s) => {
      const res = await page.request.get(s.output);
      if (!res.ok()) throw new Error(`${s.job}: its output ${s.output} answered ${res.status()}`);
      return sha256(await res.body());
    };
    const keptDigests = [];
    for (const s of keep) {
      const h = await digestOf(s);
      keptDigests.push(h);
      const at = left.indexOf(h);
      if (at < 0) problems.push(`${s.job}: its output is not in the zip`);
      else left.splice(at, 1);
    }
    if (left.length) problems.push(`${left.length} entries that are no kept output`);
    // A rejected variant's output (when it differs from the kept ones) is not in it.
    for (const s of seen.slice(keep.length)) {
      const h = await digestOf(s);
      if (!keptDigests.includes(h) && entries.some((e) => sha256(e.bytes) === h)) {
        problems.push(`${s.job} was rejected but is in the zip`);
      }
    }
    const names = all.map((e) => e.name);
    if (new Set(names).size !== names.length) problems.push(`duplicate names ${names}`);
    report(
      "kept_zip",
      problems.length === 0,
      problems.length ? problems.join("; ") : `exactly the kept outputs: ${names.join(", ")}`,
      { entries: names },
    );
  } catch (e) {
    report("kept_zip", false, `checking the zip: ${e.message}`);
  }
}

run()
  .then(() => report("end", true, "all steps ran"))
  .catch((e) => {
    report("end", false, `stopped: ${(e && e.stack) || e}`);
    process.exitCode = 1;
  });
