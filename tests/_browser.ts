/**
 * Headless Chromium for the suites that need a real browser (`EventSource` conformance, demos),
 * driven by `playwright-core` under Deno and Bun alike.
 *
 * Chromium is required, not optional: when it is missing, {@linkcode launchBrowser} throws an
 * error that says so, so a suite fails loudly instead of skipping in silence. CI installs it.
 *
 * @example Run a page against a test server
 * ```ts ignore
 * import { withPage } from "./_browser.ts";
 *
 * await withPage(async (page) => {
 *   await page.goto("http://127.0.0.1:8000/");
 *   console.log(await page.title());
 * });
 * ```
 * @module
 */
import { existsSync } from "node:fs";
import process from "node:process";
import { type Browser, chromium, type Page } from "playwright-core";

export type { Browser, Page } from "playwright-core";

/** Where Chromium is looked for: `FLUME_CHROMIUM` if set, else `/usr/bin/chromium`. */
export const chromiumPath: string = process.env.FLUME_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Flags for a quiet, deterministic headless run: no sandbox (containers), no background traffic,
 * and no QUIC, so that every request goes to the test server over plain HTTP/1.1.
 */
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/**
 * Launches headless Chromium.
 * @returns The browser; close it when done.
 * @throws {Error} Chromium is not installed at {@linkcode chromiumPath}.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Cannot launch Chromium: no executable at \`${chromiumPath}\`; install Chromium (CI does) or set \`FLUME_CHROMIUM\` to its path`,
    );
  }
  return await chromium.launch({ executablePath: chromiumPath, args: ARGS, timeout: 30_000 });
}

/**
 * Runs `fn` with a fresh browser, which is closed afterwards whatever happens.
 * @param fn What to do with the browser.
 * @returns What `fn` returns.
 */
export async function withBrowser<T>(fn: (browser: Browser) => Promise<T>): Promise<T> {
  const browser = await launchBrowser();
  try {
    return await fn(browser);
  } finally {
    await browser.close();
  }
}

/**
 * Runs `fn` with a new page of a fresh browser; page errors and console errors are collected in
 * `errors` for the caller to assert on.
 * @param fn What to do with the page.
 * @returns What `fn` returns.
 */
export function withPage<T>(fn: (page: Page, errors: string[]) => Promise<T>): Promise<T> {
  return withBrowser(async (browser) => {
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    return await fn(page, errors);
  });
}
