// End-to-end: the built dashboard (dist/) in headless Chromium against a real `hms serve`.
//
//   node e2e/run.mjs --api URL --token TOKEN --port N --day YYYY-MM-DD --search PREFIX \
//     --book-day YYYY-MM-DD
//
// Serves dist/ with `vite preview` on 127.0.0.1:N (the server must allow that origin), drives the
// app as the front desk does and prints what it saw as one JSON object on stdout; the caller
// (tests/interop/test_react_dashboard.py) compares it with the database. Every request the
// page sent to the API is in `requests`: method, operation, whether the document text went,
// the Idempotency-Key, the status. Exit 1 (and a JSON `error`) when a step does not happen.
//
// Chromium: $CHROMIUM, else Debian's /usr/lib/chromium/chromium or /usr/bin/chromium
// (playwright-core downloads no browser). The browser runs in America/New_York on purpose: days
// and times must be the hospital's (its timezone), not the computer's.
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { preview } from "vite";

const HERE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const STEP_MS = 15_000;
const BROWSER_ZONE = "America/New_York";

const { values } = parseArgs({
  options: Object.fromEntries(
    ["api", "token", "port", "day", "search", "book-day"].map((name) => [name, { type: "string" }]),
  ),
});

/** @param {string} name */
function required(name) {
  const value = values[name];
  if (typeof value !== "string" || !value) {
    process.stderr.write(`missing --${name}\n`);
    process.exit(2);
  }
  return value;
}

const args = {
  api: required("api"),
  token: required("token"),
  port: Number(required("port")),
  day: required("day"),
  search: required("search"),
  bookDay: required("book-day"),
};

/**
 * One request the page sent to the API.
 * @typedef {object} Sent
 * @property {string} tab
 * @property {string} method
 * @property {string | null} operationName
 * @property {boolean} withDocument  false: the hash alone went
 * @property {string | null} hash
 * @property {string | null} idempotencyKey
 * @property {string | null} clientName
 * @property {number | string | null} status  the HTTP status, "failed: …", or null (no answer)
 * @property {boolean} replayed  Idempotent-Replayed: true
 */

function chromiumPath() {
  const candidates = [process.env.CHROMIUM, "/usr/lib/chromium/chromium", "/usr/bin/chromium"];
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) throw new Error("no Chromium: apt-get install -y chromium, or set CHROMIUM");
  return found;
}

/**
 * Note in `log` every request `page` sends to the API, and its answer once it arrives.
 * @param {import("playwright-core").Page} page
 * @param {Sent[]} log
 * @param {string} tab
 */
function watch(page, log, tab) {
  /** @type {Map<import("playwright-core").Request, Sent>} */
  const entries = new Map();
  page.on("request", (request) => {
    if (!request.url().startsWith(args.api) || request.method() === "OPTIONS") return;
    const url = new URL(request.url());
    const body = request.method() === "POST" ? JSON.parse(request.postData() ?? "{}") : null;
    const extensions = body
      ? body.extensions
      : JSON.parse(url.searchParams.get("extensions") ?? "null");
    /** @type {Sent} */
    const entry = {
      tab,
      method: request.method(),
      operationName: body ? body.operationName : url.searchParams.get("operationName"),
      withDocument: body ? "query" in body : url.searchParams.has("query"),
      hash: extensions?.persistedQuery?.sha256Hash ?? null,
      idempotencyKey: request.headers()["idempotency-key"] ?? null,
      clientName: request.headers()["apollographql-client-name"] ?? null,
      status: null,
      replayed: false,
    };
    log.push(entry);
    entries.set(request, entry);
  });
  page.on("response", (response) => {
    const entry = entries.get(response.request());
    if (!entry) return;
    entry.status = response.status();
    entry.replayed = response.headers()["idempotent-replayed"] === "true";
  });
  page.on("requestfailed", (request) => {
    const entry = entries.get(request);
    if (entry) entry.status = `failed: ${request.failure()?.errorText}`;
  });
}

/**
 * @param {import("playwright-core").Page} page
 * @param {string} selector
 */
async function count(page, selector) {
  return page.locator(selector).count();
}

/**
 * Wait until `selector` matches more than `before` elements; return how many.
 * @param {import("playwright-core").Page} page
 * @param {string} selector
 * @param {number} before
 */
async function moreThan(page, selector, before) {
  await page.waitForFunction(
    ([s, n]) => document.querySelectorAll(s).length > n,
    /** @type {[string, number]} */ ([selector, before]),
    { timeout: STEP_MS },
  );
  return count(page, selector);
}

/** @param {import("playwright-core").Locator} locator */
async function text(locator) {
  return (await locator.textContent())?.trim() ?? null;
}

async function main() {
  /** @type {Sent[]} */
  const requests = [];
  /** @type {Record<string, any>} */
  const out = { requests };
  const app = `http://127.0.0.1:${args.port}/`;
  const web = await preview({
    root: HERE,
    logLevel: "warn",
    preview: { host: "127.0.0.1", port: args.port, strictPort: true, open: false },
  });
  const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true });
  let step = "start";
  try {
    const desk = await browser.newContext({ timezoneId: BROWSER_ZONE, locale: "en-US" });
    desk.setDefaultTimeout(STEP_MS);
    const page = await desk.newPage();
    watch(page, requests, "desk");
    /** @type {string[]} */
    const consoleErrors = [];
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));

    step = "paste a token";
    await page.goto(app);
    await page.getByLabel("API").fill(args.api);
    await page.locator('input[name="token"]').fill(args.token);
    await page.getByRole("button", { name: "Use" }).click();
    // Today's schedule shows once the token works. Leaving a page earlier is fine for the app,
    // but the queries in flight would be aborted: not what this test is about.
    await page.getByTestId("appointment-count").filter({ hasNotText: "Loading" }).waitFor();

    step = "schedule of a day";
    await page.goto(`${app}#/schedule/${args.day}`);
    await page.locator('[data-testid="practitioner-column"] li').first().waitFor();
    const firstPage = await count(page, '[data-testid="practitioner-column"] li');
    const moreAppointments = page.getByRole("button", { name: "Load more appointments" });
    let pagesOfDay = 1;
    while ((await moreAppointments.count()) > 0) {
      const before = await count(page, '[data-testid="practitioner-column"] li');
      await moreAppointments.click();
      await moreThan(page, '[data-testid="practitioner-column"] li', before);
      if (++pagesOfDay > 20) throw new Error("load more never ends");
    }
    out.schedule = {
      firstPage,
      pages: pagesOfDay,
      columns: await count(page, '[data-testid="practitioner-column"]'),
      appointments: await count(page, '[data-testid="practitioner-column"] li'),
      countText: await text(page.getByTestId("appointment-count")),
      title: await text(page.locator("#schedule-title")),
    };

    step = "search patients";
    await page.getByRole("link", { name: "Patients" }).click();
    await page.getByRole("searchbox").fill(args.search);
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForURL(/#\/patients\?q=/);
    const pages = [await moreThan(page, '[data-testid="patient-row"]', 0)];
    out.cost = await page.getByTestId("last-cost").textContent();

    step = "load more";
    const loadMore = page.getByRole("button", { name: "Load more" });
    while ((await loadMore.count()) > 0) {
      await loadMore.click();
      pages.push(await moreThan(page, '[data-testid="patient-row"]', pages.at(-1) ?? 0));
      await page.getByTestId("patient-count").filter({ hasNotText: "Loading" }).waitFor();
      if (pages.length > 20) throw new Error("load more never ends");
    }
    out.search = {
      rowsAfterEachPage: pages,
      names: await page.locator('[data-testid="patient-row"] td:first-child').allTextContents(),
      mrns: await page.locator('[data-testid="patient-row"] td:nth-child(2)').allTextContents(),
      countText: await text(page.getByTestId("patient-count")),
    };

    step = "open a patient";
    await page.locator('[data-testid="patient-row"] a').first().click();
    await page.locator("#patient-title").waitFor();
    await page.waitForFunction(
      () =>
        document.querySelectorAll('[data-testid="encounter-row"]').length > 0 ||
        document.body.textContent?.includes("No encounters."),
    );
    const patientUrl = page.url();
    const appointmentsBefore = await count(page, '[data-testid="appointment-row"]');
    out.patient = {
      id: decodeURIComponent(patientUrl.split("#/patients/")[1] ?? ""),
      title: await text(page.locator("#patient-title")),
      appointments: appointmentsBefore,
      encounters: await count(page, '[data-testid="encounter-row"]'),
    };

    step = "book (the first answer is lost on the way back; the retry carries the same key)";
    let lost = false;
    await page.route(
      (url) => url.href.startsWith(args.api),
      async (route) => {
        const request = route.request();
        const operation = JSON.parse(request.postData() ?? "{}").operationName;
        if (!lost && request.method() === "POST" && operation === "BookAppointment") {
          lost = true;
          await route.fetch(); // the server books ...
          await route.abort("connectionreset"); // ... and the browser never hears of it
          return;
        }
        await route.continue();
      },
    );
    const form = page.getByRole("form", { name: "Book an appointment" });
    await form.getByLabel("Day", { exact: true }).fill(args.bookDay);
    await form.getByLabel("At", { exact: true }).fill("10:00");
    await form.getByRole("button", { name: "Book" }).click();
    const booked = form.getByRole("status");
    await booked.waitFor();
    await page.unrouteAll({ behavior: "wait" });
    out.booking = {
      message: await text(booked),
      // The form reports success once the patient's page has been fetched again.
      appointments: await count(page, '[data-testid="appointment-row"]'),
      userErrors: await form.locator(".user-errors li").count(),
    };
    const newRow = page.locator('[data-testid="appointment-row"]', {
      hasText: `${args.bookDay} 10:00`,
    });
    out.booking.status = await text(newRow.getByTestId("appointment-status"));
    const appointmentId = await newRow.getAttribute("data-id");

    step = "book the same slot again";
    await form.getByRole("button", { name: "Book" }).click();
    const taken = form.locator(".user-errors li").first();
    await taken.waitFor();
    out.doubleBooking = {
      code: await taken.getAttribute("data-code"),
      message: await text(taken),
      appointments: await count(page, '[data-testid="appointment-row"]'),
    };

    step = "another desk cancels it";
    const other = await browser.newContext({ timezoneId: BROWSER_ZONE, locale: "en-US" });
    other.setDefaultTimeout(STEP_MS);
    const second = await other.newPage();
    watch(second, requests, "other");
    // The link form of the connection, as `npm run demo` prints it.
    const link = new URLSearchParams({ token: args.token, api: args.api });
    await second.goto(`${app}#${link}`);
    await second.waitForURL((url) => url.hash === "#/");
    await second.getByTestId("appointment-count").filter({ hasNotText: "Loading" }).waitFor();
    await second.goto(patientUrl);
    const theirs = second.locator(`[data-testid="appointment-row"][data-id="${appointmentId}"]`);
    await theirs.getByRole("button", { name: "Cancel…" }).click();
    await theirs.getByLabel("Reason").fill("Patient called");
    await theirs.getByRole("button", { name: "Confirm cancel" }).click();
    await theirs.getByTestId("appointment-status").filter({ hasText: "CANCELLED" }).waitFor();
    out.otherDesk = { status: "CANCELLED", addressBar: new URL(second.url()).hash };

    step = "cancel a stale copy";
    const mine = page.locator(`[data-testid="appointment-row"][data-id="${appointmentId}"]`);
    out.staleCancel = { statusBefore: await text(mine.getByTestId("appointment-status")) };
    await mine.getByRole("button", { name: "Cancel…" }).click();
    await mine.getByLabel("Reason").fill("Patient called too");
    await mine.getByRole("button", { name: "Confirm cancel" }).click();
    const conflict = mine.locator(".user-errors li").first();
    await conflict.waitFor();
    out.staleCancel.code = await conflict.getAttribute("data-code");
    out.staleCancel.message = await text(conflict);
    await mine.getByRole("button", { name: "Reload" }).click();
    await mine.getByTestId("appointment-status").filter({ hasText: "CANCELLED" }).waitFor();
    out.staleCancel.statusAfterReload = "CANCELLED";

    step = "answers still on their way";
    for (let waited = 0; requests.some((r) => r.status === null); waited += 50) {
      if (waited > STEP_MS) throw new Error("a request never got an answer");
      await new Promise((r) => setTimeout(r, 50));
    }
    out.consoleErrors = consoleErrors;
    step = "done";
  } catch (error) {
    out.error = `${step}: ${String(error instanceof Error ? error.message : error).split("\n")[0]}`;
  } finally {
    await browser.close();
    await web.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(out.error ? 1 : 0);
}

await main();
