// A local push service that behaves as a real one (RFC 8030 with RFC 8291/8292): it checks the
// VAPID token, the headers and the encryption of every message, and can be told to refuse.

import type { PushSubscriptionJSON } from "../../src/webpush/mod.ts";
import {
  concatBytes,
  decodeAes128gcm,
  fromBase64Url,
  toBase64Url,
  webPushIkm,
} from "./_rfc8188.ts";
import { serve, type TestServer } from "../_helpers.ts";

export interface VapidClaims {
  aud: string;
  exp: number;
  sub: string;
}

/** A message the service accepted. */
export interface Received {
  endpoint: string;
  headers: Headers;
  /** null: a message without payload */
  plaintext: Uint8Array | null;
  claims: VapidClaims;
  k: string;
  body: Uint8Array;
}

/** A browser's side of a subscription: what only the user agent knows. */
interface Subscriber {
  privateKey: CryptoKey;
  publicKey: Uint8Array<ArrayBuffer>;
  auth: Uint8Array<ArrayBuffer>;
}

interface Refusal {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/**
 * Verifies an `Authorization: vapid t=…, k=…` header; returns the claims or a reason.
 * `checkTime: false` verifies only the signature (for the RFC 8292 example, whose exp is past).
 */
export async function verifyVapid(
  authorization: string | null,
  options: { audience?: string; now?: number; checkTime?: boolean } = {},
): Promise<{ claims: VapidClaims; k: string } | { reason: string }> {
  const match = /^vapid t=([A-Za-z0-9_.-]+), ?k=([A-Za-z0-9_-]+)$/.exec(authorization ?? "");
  if (match === null) return { reason: `malformed Authorization: ${authorization}` };
  const [, token, k] = match as unknown as [string, string, string];
  const segments = token.split(".");
  if (segments.length !== 3) return { reason: "JWT does not have three segments" };
  const [header, claims, signature] = segments as [string, string, string];
  const decoder = new TextDecoder();
  const head = JSON.parse(decoder.decode(fromBase64Url(header)));
  if (head.alg !== "ES256" || head.typ !== "JWT") return { reason: `JWT header ${header}` };
  const sig = fromBase64Url(signature);
  if (sig.length !== 64) return { reason: `signature is ${sig.length} bytes, not raw r||s` };
  const publicKey = fromBase64Url(k);
  if (publicKey.length !== 65 || publicKey[0] !== 4) return { reason: "k is not a P-256 point" };
  const key = await crypto.subtle.importKey(
    "raw",
    publicKey,
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["verify"],
  );
  const valid = await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    sig,
    new TextEncoder().encode(`${header}.${claims}`),
  );
  if (!valid) return { reason: "JWT signature does not verify with k" };
  const body = JSON.parse(decoder.decode(fromBase64Url(claims))) as VapidClaims;
  if (options.audience !== undefined && body.aud !== options.audience) {
    return { reason: `aud is ${body.aud}, not ${options.audience}` };
  }
  if (options.checkTime !== false) {
    const now = Math.floor((options.now ?? Date.now()) / 1000);
    if (!(body.exp > now)) return { reason: "JWT has expired" };
    if (body.exp > now + 24 * 60 * 60) return { reason: "exp is more than 24 hours ahead" };
  }
  if (!/^(mailto:|https:)/.test(body.sub)) return { reason: `sub is ${body.sub}` };
  return { claims: body, k };
}

export class LocalPushService {
  #server: TestServer;
  #subscribers = new Map<string, Subscriber>();
  #refusals = new Map<string, Refusal>();
  #inFlight = 0;
  /** Delay before answering, so concurrency can be observed. */
  delay = 0;
  /** Messages accepted, in arrival order. */
  received: Received[] = [];
  /** Requests refused because they were wrong (not forced refusals), with why. */
  rejected: { endpoint: string; status: number; reason: string }[] = [];
  /** Requests of any kind that arrived. */
  requests = 0;
  /** The most requests in flight at once. */
  maxInFlight = 0;

  private constructor(server: TestServer) {
    this.#server = server;
  }

  /** Starts the service on a free port of 127.0.0.1. */
  static async start(): Promise<LocalPushService> {
    // No request can arrive before `serve()` has told anyone the port, so `service` is set.
    const server = await serve((request) => service.#handle(request));
    const service = new LocalPushService(server);
    return service;
  }

  get origin(): string {
    return this.#server.origin;
  }

  close(): Promise<void> {
    return this.#server.close();
  }

  /** Subscribes as a browser does: a fresh ECDH key pair and a random 16-byte auth secret. */
  async subscribe(): Promise<PushSubscriptionJSON> {
    const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, [
      "deriveBits",
    ]);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    const auth = crypto.getRandomValues(new Uint8Array(16));
    const endpoint = `${this.origin}/push/${crypto.randomUUID()}`;
    this.#subscribers.set(endpoint, { privateKey: pair.privateKey, publicKey, auth });
    return {
      endpoint,
      expirationTime: null,
      keys: { p256dh: toBase64Url(publicKey), auth: toBase64Url(auth) },
    };
  }

  /** Makes the service answer `status` for `endpoint` from now on. */
  refuse(endpoint: string, status: number, init: Partial<Omit<Refusal, "status">> = {}): void {
    this.#refusals.set(endpoint, { status, body: init.body ?? "", headers: init.headers ?? {} });
  }

  async #handle(request: Request): Promise<Response> {
    this.requests++;
    this.#inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight);
    try {
      const body = new Uint8Array(await request.arrayBuffer());
      if (this.delay > 0) await new Promise((resolve) => setTimeout(resolve, this.delay));
      return await this.#answer(request, body);
    } finally {
      this.#inFlight--;
    }
  }

  async #answer(request: Request, body: Uint8Array): Promise<Response> {
    const endpoint = `${this.origin}${new URL(request.url).pathname}`;
    const refusal = this.#refusals.get(endpoint);
    if (refusal !== undefined) {
      return new Response(refusal.body, { status: refusal.status, headers: refusal.headers });
    }
    const reject = (status: number, reason: string): Response => {
      this.rejected.push({ endpoint, status, reason });
      return new Response(reason, { status });
    };
    if (request.method !== "POST") return reject(405, `method ${request.method}`);
    const subscriber = this.#subscribers.get(endpoint);
    if (subscriber === undefined) return reject(404, "no such subscription");

    // [RFC 8292 §4.1] 401 for a missing or invalid token
    const vapid = await verifyVapid(request.headers.get("Authorization"), {
      audience: this.origin,
    });
    if ("reason" in vapid) return reject(401, vapid.reason);

    const ttl = request.headers.get("TTL");
    if (ttl === null || !/^\d+$/.test(ttl)) return reject(400, `TTL is ${ttl}`);
    const urgency = request.headers.get("Urgency");
    if (urgency !== null && !["very-low", "low", "normal", "high"].includes(urgency)) {
      return reject(400, `Urgency is ${urgency}`);
    }

    let plaintext: Uint8Array | null = null;
    if (body.length > 0) {
      if (body.length > 4096) return reject(413, `body is ${body.length} bytes`);
      const coding = request.headers.get("Content-Encoding");
      if (coding !== "aes128gcm") return reject(400, `Content-Encoding is ${coding}`);
      try {
        const decoded = await decodeAes128gcm(body, (keyId) => {
          // [RFC 8291 §4] one record and the sender's key as the key id
          if (keyId.length !== 65) throw new Error(`key id is ${keyId.length} bytes`);
          return webPushIkm(keyId, subscriber, subscriber.auth);
        });
        if (decoded.records !== 1) throw new Error(`${decoded.records} records`);
        plaintext = decoded.plaintext;
      } catch (error) {
        return reject(400, `cannot decrypt: ${error}`);
      }
    }
    this.received.push({
      endpoint,
      headers: request.headers,
      plaintext,
      claims: vapid.claims,
      k: vapid.k,
      body: concatBytes(body),
    });
    return new Response(null, {
      status: 201,
      headers: { Location: `${this.origin}/message/${crypto.randomUUID()}` },
    });
  }
}
