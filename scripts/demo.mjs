#!/usr/bin/env node
// `npm start`: the live demo on a fresh clone with only Node and npm. Installs the dev tools
// when they are missing (Deno comes from npm), then runs examples/demo/server.ts under Deno.
//
//   npm start                 # http://localhost:8000/
//   PORT=3000 npm start

import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const deno = fileURLToPath(new URL("../node_modules/.bin/deno", import.meta.url));
const windows = process.platform === "win32";

if (!existsSync(windows ? `${deno}.cmd` : deno)) {
  console.log("Installing the dev tools (npm install)…");
  const npm = spawnSync(windows ? "npm.cmd" : "npm", ["install", "--no-audit", "--no-fund"], {
    cwd: root,
    stdio: "inherit",
    shell: windows,
  });
  if (npm.status !== 0) {
    console.error("npm install failed; see above.");
    process.exit(npm.status ?? 1);
  }
}

const child = spawn(deno, ["run", "-A", "examples/demo/server.ts"], {
  cwd: root,
  stdio: "inherit",
  shell: windows,
  env: { ...process.env, NO_UPDATE_NOTIFIER: "1", DENO_NO_UPDATE_CHECK: "1" },
});
// The terminal sends Ctrl+C to the whole process group; a `kill` of this launcher reaches only
// us, so pass it on and let the demo say goodbye to its pages.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
