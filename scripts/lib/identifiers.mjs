// The service's own identifier rules, in Node: scripts/lib/admin-check.wasm is src/admin_check.rs and the
// domain's `Email::parse`, `PhoneNumber::parse_allowed` and `Locale::parse`, compiled from the same files the
// Worker is built from (tools/admin-check/, rebuilt by scripts/build-admin-check.sh). No Rust toolchain is needed
// to run it.
//
//   import { checkField } from "./lib/identifiers.mjs";
//   checkField("phone_number", "+44 7700 900123", "1,44")  // { ok: true, value: "+447700900123" }
//                                                          // or { ok: false, field, code, message }

import { readFileSync } from "node:fs";
import path from "node:path";

import { ROOT } from "./wrangler.mjs";

export const MODULE_PATH = path.join(ROOT, "scripts", "lib", "admin-check.wasm");

/** The files the module is compiled from, in the order tools/admin-check/build.rs digests them. */
const SOURCES = [
  "src/admin_check.rs",
  "src/domain/email.rs",
  "src/domain/phone.rs",
  "src/domain/locale.rs",
  "tools/admin-check/lib.rs",
  "tools/admin-check/Cargo.toml",
];

let instance = null;

function exports() {
  if (!instance) {
    const module = new WebAssembly.Module(readFileSync(MODULE_PATH));
    instance = new WebAssembly.Instance(module, {}).exports;
  }
  return instance;
}

/** Normalises `value` as the service reads `field` (email, new_email, phone_number, locale), or says why not. */
export function checkField(field, value, allowedCountryCodes = "") {
  const wasm = exports();
  const request = Buffer.from(`${field}\0${value}\0${allowedCountryCodes}`, "utf8");
  // input() may grow the memory, which detaches earlier views of it: take the view after the call.
  const at = wasm.input(request.length);
  new Uint8Array(wasm.memory.buffer, at, request.length).set(request);
  const length = wasm.check(request.length);
  const answer = Buffer.from(new Uint8Array(wasm.memory.buffer, wasm.output(), length)).toString("utf8");
  const [status, ...rest] = answer.split("\t");
  if (status === "ok") return { ok: true, value: rest.join("\t") };
  const [refusedField, code, ...message] = rest;
  return { ok: false, field: refusedField, code, message: message.join("\t") };
}

/** The digest of the sources the module was built from, as tools/admin-check/build.rs stamped it. */
export function moduleSourcesDigest() {
  const wasm = exports();
  return Buffer.from(new Uint8Array(wasm.memory.buffer, wasm.sources_digest(), 16)).toString("latin1");
}

/** The same digest over the sources as they are now (FNV-1a 64, as build.rs computes it). */
export function currentSourcesDigest() {
  let hash = 0xcbf29ce484222325n;
  const mask = (1n << 64n) - 1n;
  const feed = (bytes) => {
    for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & mask;
  };
  for (const source of SOURCES) {
    feed(Buffer.from(readFileSync(path.join(ROOT, source), "utf8").replaceAll("\r\n", "\n"), "utf8"));
    feed(Buffer.from(source, "utf8"));
  }
  return hash.toString(16).padStart(16, "0");
}
