import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runtime } from "./_helpers.ts";
import { type FixtureRun, runFixture } from "./fixtures/_spawn.ts";

/** How long after its last line a process may take to exit by itself. */
const EXIT_GRACE = 2_000;

function exitDelay(run: FixtureRun): number {
  const done = run.lines.find((line) => line.text === "done");
  assert.ok(done, `the fixture did not finish:\n${run.stdout}\n${run.stderr}`);
  return run.exitedAt - done.at;
}

describe(`Streams leave nothing behind on ${runtime}`, () => {
  it("a process that ended 10,000 streams with heartbeat and writeTimeout exits by itself", {
    timeout: 30_000,
  }, async () => {
    const run = await runFixture("many_streams.ts", [], 20_000);
    assert.equal(run.killed, false, "the process had to be killed");
    assert.equal(run.code, 0, run.stderr);
    const waited = exitDelay(run);
    assert.ok(waited < EXIT_GRACE, `the process exited ${waited.toFixed(0)} ms after its work`);
  });

  it("a process with one stream left open does not exit (the check above can fail)", {
    timeout: 30_000,
  }, async () => {
    const run = await runFixture("many_streams.ts", ["--leave-one-open"], 4_000);
    const done = run.lines.find((line) => line.text === "done");
    assert.ok(done, run.stderr);
    // Killed, or still alive well past the grace period when the kill came.
    assert.ok(run.killed || run.exitedAt - done.at >= EXIT_GRACE, "the open stream kept it alive");
  });

  it("a process whose served clients disconnected exits by itself once the server closes", {
    timeout: 30_000,
  }, async () => {
    const run = await runFixture("served_streams.ts", [], 20_000);
    assert.equal(run.killed, false, "the process had to be killed");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "", "nothing was reported: a client that left is not an error");
    const waited = exitDelay(run);
    assert.ok(waited < EXIT_GRACE, `the process exited ${waited.toFixed(0)} ms after its work`);
  });
});
