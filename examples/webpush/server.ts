// Notifications that reach a user whether or not a page is open.
//
//   npm run webpush:demo     (the same as: npx deno run -A examples/webpush/server.ts)
//   npx bun examples/webpush/server.ts
//
// It listens on 127.0.0.1 (`HOST` to change it) and port 8000 (`PORT`). Open http://127.0.0.1:8000
// (browsers allow push on localhost without HTTPS), pick a name and press "Enable notifications". With the
// page open, a notification arrives over SSE and shows in the page; close the page and the same
// notification arrives as a Web Push message that the service worker shows:
//
//   curl -X POST 'http://127.0.0.1:8000/notify?user=ana' -d '{"title":"Hi","body":"from curl"}'
//
// Keys come from VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY / VAPID_SUBJECT (see generate_keys.ts);
// without them a throwaway pair is made at start, and subscriptions die with the process.
// Subscriptions are kept in memory: a real application stores them with the user.

import { Broker } from "../../mod.ts";
import {
  generateVapidKeys,
  parsePushSubscription,
  PushFallback,
  type PushSubscriptionJSON,
  WebPushDispatcher,
} from "../../src/webpush/mod.ts";

function env(name: string): string | undefined {
  const { Deno, process } = globalThis as {
    Deno?: { env: { get(name: string): string | undefined } };
    process?: { env: Record<string, string | undefined> };
  };
  return Deno?.env.get(name) ?? process?.env[name];
}

const keys = env("VAPID_PRIVATE_KEY") === undefined ? await generateVapidKeys() : {
  publicKey: env("VAPID_PUBLIC_KEY") ?? "",
  privateKey: env("VAPID_PRIVATE_KEY") ?? "",
};
const dispatcher = await WebPushDispatcher.create({
  ...keys,
  subject: env("VAPID_SUBJECT") ?? "mailto:admin@example.com",
});
const broker = new Broker({ history: 50 });
const notify = new PushFallback(broker, dispatcher);
/** user → endpoint → subscription */
const subscriptions = new Map<string, Map<string, PushSubscriptionJSON>>();

const STATIC: Record<string, [file: string, type: string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/sw.js": ["sw.js", "text/javascript; charset=utf-8"],
};

async function serveStatic(file: string, type: string): Promise<Response> {
  // fetch() reads file: URLs on Deno and Bun alike
  const response = await fetch(new URL(`./public/${file}`, import.meta.url));
  return new Response(response.body, { headers: { "Content-Type": type } });
}

function userOf(url: URL): string | undefined {
  const user = url.searchParams.get("user");
  return user !== null && /^[\w-]{1,32}$/.test(user) ? user : undefined;
}

async function handle(request: Request): Promise<Response> {
  const url = new URL(request.url);
  const file = STATIC[url.pathname];
  if (request.method === "GET" && file !== undefined) return await serveStatic(...file);
  if (request.method === "GET" && url.pathname === "/vapid-public-key") {
    return new Response(keys.publicKey);
  }

  const user = userOf(url);
  if (user === undefined) return new Response("Missing or bad ?user=", { status: 400 });
  const channel = `user:${user}`;

  if (request.method === "GET" && url.pathname === "/events") {
    return broker.response(channel, request);
  }
  if (request.method === "POST" && url.pathname === "/subscribe") {
    let subscription: PushSubscriptionJSON;
    try {
      subscription = parsePushSubscription(await request.json());
    } catch (error) {
      return new Response(String(error), { status: 400 });
    }
    const own = subscriptions.get(user) ?? new Map();
    own.set(subscription.endpoint, subscription);
    subscriptions.set(user, own);
    return new Response(null, { status: 201 });
  }
  if (request.method === "POST" && url.pathname === "/notify") {
    const notification = await request.json().catch(() => null);
    if (typeof notification?.title !== "string") {
      return new Response('Expected {"title": string, "body"?: string}', { status: 400 });
    }
    const own = subscriptions.get(user) ?? new Map<string, PushSubscriptionJSON>();
    const result = await notify.deliver(channel, notification, {
      event: "notification",
      subscriptions: [...own.values()],
      ttl: 3600,
      onError: (error, subscription) => console.warn(`push to ${subscription.endpoint}:`, error),
    });
    // Only 404/410 mean the browser unsubscribed: forget those, keep everything else.
    if (result.via === "push") { for (const endpoint of result.gone) own.delete(endpoint); }
    return Response.json(result);
  }
  return new Response("Not found", { status: 404 });
}

const port = Number(env("PORT") ?? 8000);
// Local only by default; HOST=0.0.0.0 to listen on every interface.
const hostname = env("HOST") ?? "127.0.0.1";

// Bun serves the default export of the file it runs (with this `port` and `hostname`); Deno
// serves it here, under `deno run` (`deno serve` would ignore `hostname` and listen everywhere).
export default { port, hostname, fetch: handle };

if ((import.meta as { main?: boolean }).main && "Deno" in globalThis) {
  const { Deno } = globalThis as unknown as {
    Deno: { serve(options: { port: number; hostname: string }, handler: typeof handle): unknown };
  };
  Deno.serve({ port, hostname }, handle);
}
