// Prints a fresh VAPID key pair, ready for an env file:
//
//   deno run examples/webpush/generate_keys.ts >> .env
//   bun examples/webpush/generate_keys.ts >> .env
//
// Generate it once per application and keep it: browsers subscribe with the public key, and
// every subscription stops working if it changes.

import { generateVapidKeys } from "../../src/webpush/mod.ts";

const { publicKey, privateKey } = await generateVapidKeys();
console.log(`VAPID_PUBLIC_KEY=${publicKey}`);
console.log(`VAPID_PRIVATE_KEY=${privateKey}`);
