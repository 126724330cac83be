// `make demo`: the API and the built dashboard together, on the embedded default.
//
//   1. starts `hms serve` (HMS_* from the environment, else the embedded PostgreSQL with its demo
//      data) allowing the dashboard's origin (HMS_CORS_ORIGINS) and running this client in the
//      trusted mode (HMS_DOCUMENT_MODES=react-dashboard=trusted);
//   2. pushes the dashboard's persisted-query manifest (`hms documents push`);
//   3. mints a front-desk token for the first hospital (`hms token`), or --hospital SLUG;
//   4. serves dist/ with `vite preview` and prints a link that carries the token;
//   5. on Ctrl-C stops both (the server drains and stops its embedded PostgreSQL).
//
// Needs a build (`npm run build`). HMS_BIN names the hms command (default: the repo's .venv);
// HMS_PORT the API's port (8000), DASHBOARD_PORT the app's (4173).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { preview } from "vite";

const HERE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROOT = resolve(HERE, "../..");
const MANIFEST = join(HERE, "src/__generated__/persisted-query-manifest.json");
const CLIENT = "react-dashboard";

const { values: options } = parseArgs({ options: { hospital: { type: "string" } } });
const venvHms = join(ROOT, ".venv/bin/hms");
const hms = process.env.HMS_BIN ?? (existsSync(venvHms) ? venvHms : "hms");
const apiPort = Number(process.env.HMS_PORT ?? 8000);
const appPort = Number(process.env.DASHBOARD_PORT ?? 4173);
const api = `http://127.0.0.1:${apiPort}/graphql`;

/** @param {string} line */
function say(line) {
  process.stderr.write(`[demo] ${line}\n`);
}

/**
 * @param {string | undefined} existing
 * @param {string[]} extra
 */
function joined(existing, extra) {
  return [existing, ...extra].filter(Boolean).join(",");
}

if (!existsSync(join(HERE, "dist/index.html")) || !existsSync(MANIFEST)) {
  say("no build: run `npm run build` in examples/react-dashboard first (make demo does)");
  process.exit(2);
}

const env = {
  ...process.env,
  HMS_PORT: String(apiPort),
  // The dashboard's origins, beside whatever the environment already allows (Vite's dev server).
  HMS_CORS_ORIGINS: joined(process.env.HMS_CORS_ORIGINS, [
    `http://127.0.0.1:${appPort}`,
    `http://localhost:${appPort}`,
    "http://localhost:5173",
    "http://127.0.0.1:5173",
  ]),
  HMS_DOCUMENT_MODES: joined(process.env.HMS_DOCUMENT_MODES, [`${CLIENT}=trusted`]),
};

/**
 * `hms ARGS`: its stdout, or null when it failed (said why).
 * @param {string[]} args
 * @param {{ quiet?: boolean }} [options]
 */
function run(args, { quiet = true } = {}) {
  const done = spawnSync(hms, args, { cwd: ROOT, env, encoding: "utf8" });
  if (done.status !== 0) {
    const why = done.error?.message ?? `exit ${done.status}`;
    say(`hms ${args.join(" ")} failed (${why}):\n${done.stderr}`);
    return null;
  }
  if (!quiet && done.stderr.trim()) say(done.stderr.trim());
  return done.stdout;
}

/** @param {number} deadline */
async function healthy(deadline) {
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).ok) return true;
    } catch {
      // not listening yet
    }
    if (server.exitCode !== null) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

// Its own process group: a Ctrl-C reaches this script only, which then stops the server once
// (a second signal would cut its graceful shutdown short).
say(`starting ${hms} serve on port ${apiPort}`);
const server = spawn(hms, ["serve"], { cwd: ROOT, env, stdio: "inherit", detached: true });
/** @type {import("vite").PreviewServer | null} */
let web = null;
let stopping = false;

/** @param {number} code */
async function stop(code) {
  if (stopping) return;
  stopping = true;
  await web?.close();
  if (server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
  }
  process.exit(code);
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => stop(0));
server.on("exit", (code) => {
  if (!stopping) {
    say(`hms serve exited (${code})`);
    stop(1);
  }
});

/** Once the server is up: register the documents, mint a token, serve the app. */
async function start() {
  // A first start initialises PostgreSQL and loads the demo data: allow for it.
  if (!(await healthy(Date.now() + 180_000))) {
    say("hms serve did not become healthy");
    return stop(1);
  }
  const version = JSON.parse(readFileSync(join(HERE, "package.json"), "utf8")).version;
  const push = ["documents", "push", MANIFEST, "--client", CLIENT, "--app-version", version];
  if (run(push, { quiet: false }) === null) return stop(1);
  const slug = options.hospital ?? run(["hospitals", "list"])?.split("\n")[0]?.split("\t")[0];
  if (!slug) return stop(1);
  const minted = run(["token", "--hospital", slug, "--role", "front_desk", "--client", CLIENT]);
  const token = minted?.trim();
  if (!token) return stop(1);
  web = await preview({
    root: HERE,
    preview: { host: "127.0.0.1", port: appPort, strictPort: true },
  });
  const link = new URLSearchParams({ token, api });
  say(`dashboard for ${slug} (front_desk, trusted documents only):`);
  say(`  http://127.0.0.1:${appPort}/#${link}`);
  say("Ctrl-C stops both");
}

await start();
