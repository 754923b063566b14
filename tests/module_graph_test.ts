// The import graph of src/, read from the sources: files are nodes, imports (type-only ones
// included) are edges. It checks what each entry loads, that there is no import
// circle, and that no file imports a file of an optional part it is not in (an "upward arrow":
// the core importing an optional part (src/client, src/redis, ...), or one part importing another).
//
// The reader works on text, not on a compiler: it drops comments first (so a JSDoc example's
// `import … from "@flume/sse"` is no edge), then takes every `import`/`export … from`, bare
// `import "…"` and dynamic `import("…")`. The first suite tests the reader and the checks on
// made-up sources, so that a check that finds nothing in src/ is known to be able to find
// something.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";

/** A file's path relative to the repository root, e.g. `src/client/connect.ts`. */
type Path = string;
/** Each file with the files it imports. */
type Graph = Map<Path, Path[]>;

const root = new URL("../", import.meta.url);

/** The entries, as in the export map. */
const ENTRIES = {
  core: "mod.ts",
  client: "src/client/mod.ts",
  redis: "src/redis/mod.ts",
  webpush: "src/webpush/mod.ts",
  node: "src/node/mod.ts",
  cloudflare: "src/cloudflare/mod.ts",
  resumable: "src/resumable/mod.ts",
} as const;

/** The optional parts: each its own subpath, never loaded by the core or by one another. */
const PARTS = ["client", "redis", "webpush", "node", "cloudflare", "resumable"] as const;

/**
 * The one arrow between parts that is allowed: resumable streams kept in Redis take the same
 * client adapters (node-redis, ioredis, Bun's) as the Redis bridge, from its two dependency-free
 * files, rather than a second copy of them.
 */
const ALLOWED_ARROWS: readonly string[] = [
  "src/resumable/_redis_store.ts -> src/redis/redis_bridge_adapter.ts",
  "src/resumable/_scripts.ts -> src/redis/_adapters.ts",
  "src/resumable/mod.ts -> src/redis/redis_bridge_adapter.ts",
  "src/resumable/resumable_streams.ts -> src/redis/_adapters.ts",
  "src/resumable/resumable_streams.ts -> src/redis/redis_bridge_adapter.ts",
];

/**
 * Source text without its comments. Strings and templates are kept as they are (a `//` in a URL
 * is no comment), template substitutions are read as code, and line breaks are kept.
 */
function stripComments(source: string): string {
  let out = "";
  // Reads code from `start` until a `}` that closes nothing opened here (the end of a template
  // substitution when `inSubstitution`); returns the index after it.
  const code = (start: number, inSubstitution: boolean): number => {
    let i = start;
    let depth = 0;
    while (i < source.length) {
      const char = source[i]!;
      const next = source[i + 1];
      if (char === "/" && next === "*") {
        const end = source.indexOf("*/", i + 2);
        const stop = end === -1 ? source.length : end + 2;
        out += source.slice(i, stop).replace(/[^\n]/g, "");
        i = stop;
      } else if (char === "/" && next === "/") {
        while (i < source.length && source[i] !== "\n") i++;
      } else if (char === '"' || char === "'") {
        let j = i + 1;
        while (j < source.length && source[j] !== char) j += source[j] === "\\" ? 2 : 1;
        out += source.slice(i, j + 1);
        i = j + 1;
      } else if (char === "`") {
        out += char;
        i = template(i + 1);
      } else {
        if (char === "{") depth++;
        if (char === "}" && depth-- === 0 && inSubstitution) {
          out += char;
          return i + 1;
        }
        out += char;
        i++;
      }
    }
    return i;
  };
  // Reads a template's text from `start` (after its opening backtick) to after its closing one.
  const template = (start: number): number => {
    let i = start;
    while (i < source.length) {
      const char = source[i]!;
      if (char === "\\") {
        out += source.slice(i, i + 2);
        i += 2;
      } else if (char === "`") {
        out += char;
        return i + 1;
      } else if (char === "$" && source[i + 1] === "{") {
        out += "${";
        i = code(i + 2, true);
      } else {
        out += char;
        i++;
      }
    }
    return i;
  };
  code(0, false);
  return out;
}

/** The module specifiers a source imports or re-exports, type-only ones included. */
function specifiersOf(source: string): string[] {
  const code = stripComments(source);
  const found: string[] = [];
  const patterns = [
    // import x from "…", import { a, type B } from "…", import type { C } from "…",
    // export { d } from "…", export * from "…", export type { E } from "…"
    /(?:^|[;}\n])\s*(?:import|export)\s[^;"'`]*?\bfrom\s*(["'])([^"']+)\1/g,
    // import "…" (for its side effects)
    /(?:^|[;}\n])\s*import\s*(["'])([^"']+)\1/g,
    // import("…")
    /\bimport\s*\(\s*(["'])([^"']+)\1\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of code.matchAll(pattern)) found.push(match[2]!);
  }
  return [...new Set(found)].sort();
}

/** Resolves a relative specifier of `from` to a repository path; undefined for a bare one. */
function resolve(from: Path, specifier: string): Path | undefined {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return undefined;
  const url = new URL(specifier, new URL(from, "file:///repo/"));
  return url.pathname.slice("/repo/".length);
}

/** The optional part a path belongs to, or `"core"` for the rest of src/ and mod.ts. */
function partOf(path: Path): string {
  const part = PARTS.find((name) => path.startsWith(`src/${name}/`));
  return part ?? "core";
}

/** Every file reachable from `entry` in `graph`, the entry included, sorted. */
function closure(graph: Graph, entry: Path): Path[] {
  const seen = new Set<Path>();
  const queue = [entry];
  while (queue.length > 0) {
    const path = queue.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    queue.push(...(graph.get(path) ?? []));
  }
  return [...seen].sort();
}

/** Every import circle in `graph`, each as the path of files that closes it. */
function circles(graph: Graph): Path[][] {
  const found: Path[][] = [];
  const state = new Map<Path, "open" | "done">();
  const stack: Path[] = [];
  const visit = (path: Path): void => {
    state.set(path, "open");
    stack.push(path);
    for (const next of graph.get(path) ?? []) {
      if (state.get(next) === "open") {
        found.push([...stack.slice(stack.indexOf(next)), next]);
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(path, "done");
  };
  for (const path of [...graph.keys()].sort()) if (!state.has(path)) visit(path);
  return found;
}

/**
 * Every import from a file into an optional part it is not in, as `from -> to`: the core
 * importing src/client, src/redis or src/webpush, or one part importing another.
 */
function upwardArrows(graph: Graph): string[] {
  const found: string[] = [];
  for (const [from, imports] of graph) {
    for (const to of imports) {
      const target = partOf(to);
      if (target !== "core" && target !== partOf(from)) found.push(`${from} -> ${to}`);
    }
  }
  return found.sort();
}

/** Every .ts file under `dir` (a repository path), recursively. */
async function tsFiles(dir: Path): Promise<Path[]> {
  const out: Path[] = [];
  for (const entry of await readdir(new URL(`${dir}/`, root), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...await tsFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** The graph of mod.ts and every file of src/, with every problem met while reading it. */
async function readGraph(): Promise<{ graph: Graph; problems: string[] }> {
  const graph: Graph = new Map();
  const problems: string[] = [];
  const files = ["mod.ts", ...await tsFiles("src")];
  for (const file of files) {
    const imports: Path[] = [];
    for (const specifier of specifiersOf(await readFile(new URL(file, root), "utf8"))) {
      const target = resolve(file, specifier);
      // The Node adapter is the one part made for one runtime: Node's own modules are its API.
      if (specifier.startsWith("node:") && file.startsWith("src/node/")) continue;
      if (target === undefined) {
        problems.push(`${file} imports \`${specifier}\`: src/ has no dependencies`);
      } else if (!target.endsWith(".ts")) {
        problems.push(`${file} imports \`${specifier}\` without its .ts extension`);
      } else if (!target.startsWith("src/")) {
        problems.push(`${file} imports \`${specifier}\`, outside src/`);
      } else if (!files.includes(target)) {
        problems.push(`${file} imports \`${specifier}\`, which does not exist`);
      } else imports.push(target);
    }
    graph.set(file, imports);
  }
  return { graph, problems };
}

const src = (...names: string[]): Path[] => names.map((name) => `src/${name}`);

describe("the module graph reader", () => {
  it("takes static, type-only, re-exported, bare and dynamic imports, over several lines", () => {
    const source = [
      'import { a } from "./a.ts";',
      'import type { B } from "../b.ts";',
      "import {",
      "  c,",
      "  type D,",
      '} from "./c.ts";',
      'export { e } from "./e.ts";',
      'export type { F } from "./f.ts";',
      'export * from "./g.ts";',
      'import "./h.ts";',
      'const i = await import("./i.ts");',
      "import j, { k } from './j.ts';",
    ].join("\n");
    assert.deepEqual(specifiersOf(source), [
      "../b.ts",
      "./a.ts",
      "./c.ts",
      "./e.ts",
      "./f.ts",
      "./g.ts",
      "./h.ts",
      "./i.ts",
      "./j.ts",
    ]);
  });

  it("ignores imports in comments and JSDoc examples, and text that only looks like one", () => {
    const source = [
      "/**",
      " * @example",
      " * ```ts",
      ' * import { Broker } from "./broker.ts";',
      " * ```",
      " */",
      '// import { x } from "./commented.ts";',
      'const url = "https://example.com/*not a comment*/"; // import "./also_comment.ts"',
      'const text = "import { y } from \\"./in_a_string.ts\\"";',
      'const nested = `a ${b ? `c ${`d`} // not a comment` : ""} e`; // import "./after.ts"',
      'const tail = `import { z } from "./in_a_template.ts"`;',
      "export function from(a: string): string { return a; }",
      'import { real } from "./real.ts";',
    ].join("\n");
    assert.deepEqual(specifiersOf(source), ["./real.ts"]);
  });

  const graph: Graph = new Map([
    ["mod.ts", ["src/a.ts"]],
    ["src/a.ts", ["src/b.ts"]],
    ["src/b.ts", ["src/c.ts", "src/client/x.ts"]],
    ["src/c.ts", ["src/a.ts"]],
    ["src/client/x.ts", ["src/c.ts", "src/redis/y.ts"]],
    ["src/redis/y.ts", []],
  ]);

  it("finds a circle", () => {
    assert.deepEqual(circles(graph), [["src/a.ts", "src/b.ts", "src/c.ts", "src/a.ts"]]);
    assert.deepEqual(circles(new Map([["src/a.ts", ["src/a.ts"]]])), [["src/a.ts", "src/a.ts"]]);
  });

  it("finds an upward arrow from the core and from another part", () => {
    assert.deepEqual(upwardArrows(graph), [
      "src/b.ts -> src/client/x.ts",
      "src/client/x.ts -> src/redis/y.ts",
    ]);
  });

  it("follows an entry through the whole graph", () => {
    assert.deepEqual(closure(graph, "src/client/x.ts"), [
      "src/a.ts",
      "src/b.ts",
      "src/c.ts",
      "src/client/x.ts",
      "src/redis/y.ts",
    ]);
  });
});

describe("the module graph of src/", () => {
  const reading = readGraph();

  it("every import in src/ is a relative .ts file of src/ that exists", async () => {
    const { graph, problems } = await reading;
    assert.ok(graph.size > 30, `only ${graph.size} files read`);
    assert.deepEqual(problems, []);
  });

  it("has no import circle", async () => {
    const { graph } = await reading;
    assert.deepEqual(circles(graph).map((circle) => circle.join(" -> ")), []);
  });

  it("has no upward arrow: no file imports a file of an optional part it is not in", async () => {
    const { graph } = await reading;
    assert.deepEqual(
      upwardArrows(graph).filter((arrow) => !ALLOWED_ARROWS.includes(arrow)),
      [],
    );
  });

  it("the resumable entry loads its own files, the core and the Redis client adapters only", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.resumable);
    assert.ok(files.includes("src/resumable/resumable_streams.ts"));
    const redis = files.filter((file) => partOf(file) === "redis");
    assert.deepEqual(redis, ["src/redis/_adapters.ts", "src/redis/redis_bridge_adapter.ts"]);
    assert.deepEqual(
      files.filter((file) => !["core", "resumable", "redis"].includes(partOf(file))),
      [],
    );
  });

  it("the core entry loads no file of src/client, src/redis or src/webpush", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.core);
    for (const must of src("broker.ts", "event_stream.ts", "sse_response.ts", "_wire.ts")) {
      assert.ok(files.includes(must), `the core must load ${must}`);
    }
    assert.deepEqual(files.filter((file) => partOf(file) !== "core"), []);
  });

  it("the client entry loads its own files, the parser and the private clock only", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.client);
    assert.ok(files.includes("src/client/connect.ts"));
    assert.ok(files.includes("src/_parser.ts"), "the client reads with the shared parser");
    const allowed = src("_parser.ts", "event_parser_stream.ts", "_clock.ts");
    assert.deepEqual(
      files.filter((file) => !file.startsWith("src/client/") && !allowed.includes(file)),
      [],
    );
  });

  it("the redis entry loads its own files, the bridge types, the wire owner and the clock only", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.redis);
    assert.ok(files.includes("src/redis/redis_bridge.ts"));
    for (const must of src("bridge.ts", "_wire.ts")) {
      assert.ok(files.includes(must), `the bridge must use ${must}`);
    }
    // server_sent_event.ts is the type the wire owner encodes (a type-only import of _wire.ts).
    // _bridge_stats.ts is the symbol through which a bridge reports its counters to the broker.
    // _options.ts holds the option checks every part shares (it imports nothing).
    const allowed = src(
      "bridge.ts",
      "_wire.ts",
      "server_sent_event.ts",
      "_clock.ts",
      "_bridge_stats.ts",
      "_options.ts",
    );
    assert.deepEqual(
      files.filter((file) => !file.startsWith("src/redis/") && !allowed.includes(file)),
      [],
    );
  });

  it("the webpush entry loads only its own files", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.webpush);
    assert.ok(files.includes("src/webpush/web_push_dispatcher.ts"));
    assert.ok(files.length > 5, `only ${files.length} files`);
    assert.deepEqual(files.filter((file) => !file.startsWith("src/webpush/")), []);
  });

  it("the node entry loads its own files and the private clock only", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.node);
    assert.ok(files.includes("src/node/write_response.ts"));
    assert.deepEqual(
      files.filter((file) => !file.startsWith("src/node/") && file !== "src/_clock.ts"),
      [],
    );
  });

  it("the cloudflare entry hosts the core broker: it loads the core, never another part", async () => {
    const { graph } = await reading;
    const files = closure(graph, ENTRIES.cloudflare);
    assert.ok(files.includes("src/broker.ts"), "a Durable Object hosts the core's Broker");
    assert.deepEqual(
      files.filter((file) => !file.startsWith("src/cloudflare/") && partOf(file) !== "core"),
      [],
    );
  });
});
