// The OpenAPI document on its own, without a worker: every example validates against the schema it illustrates
// (JSON Schema 2020-12, Ajv), every operation documents exactly the statuses the service can answer for it, and
// every operation declares its security: `[]` for the public ones, the token schemes for the others.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";

import Ajv2020 from "ajv/dist/2020.js";

import { ROOT } from "./support/worker.mjs";

const doc = JSON.parse(readFileSync(path.join(ROOT, "public", "auth", "api", "mobile", "openapi.json"), "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(doc, "openapi");

const escape = (key) => String(key).replace(/~/g, "~0").replace(/\//g, "~1");

/** The document's node at a JSON pointer, following `$ref`s. */
function resolve(node) {
  let value = node;
  while (value && value.$ref) {
    value = value.$ref.slice(2).split("/").map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~")).reduce((o, k) => o[k], doc);
  }
  return value;
}

/**
 * Every example in the document, as [where, schema pointer, value]: `example` and `examples` of media types,
 * parameters and headers (against their `schema`), and the `examples` array of a schema (against that schema).
 */
function examples() {
  const found = [];
  const walk = (node, pointer) => {
    if (!node || typeof node !== "object") return;
    if (node.schema && typeof node.schema === "object") {
      const target = node.schema.$ref ? node.schema.$ref.slice(1) : `${pointer}/schema`;
      if ("example" in node) found.push([`${pointer}/example`, target, node.example]);
      for (const [name, entry] of Object.entries(node.examples ?? {})) {
        found.push([`${pointer}/examples/${escape(name)}`, target, resolve(entry).value]);
      }
    }
    const isSchema = pointer.includes("/schema") || pointer.startsWith("/components/schemas/");
    if (isSchema && Array.isArray(node.examples)) {
      node.examples.forEach((value, i) => found.push([`${pointer}/examples/${i}`, pointer, value]));
    }
    for (const [key, child] of Object.entries(node)) {
      if (key === "examples" || key === "example") continue;
      walk(child, `${pointer}/${escape(key)}`);
    }
  };
  walk(doc, "");
  return found;
}

describe("the OpenAPI document's examples and security", () => {
  test("every example validates against its own schema", () => {
    const all = examples();
    assert.ok(all.length >= 20, `found the examples: ${all.length}`);
    const failures = [];
    for (const [where, schemaPointer, value] of all) {
      const check = ajv.getSchema(`openapi#${schemaPointer}`);
      assert.ok(check, `a schema at ${schemaPointer} for ${where}`);
      if (!check(value)) failures.push(`${where}: ${JSON.stringify(value)} against ${schemaPointer}: ${ajv.errorsText(check.errors)}`);
    }
    assert.deepEqual(failures, []);
  });

  // The statuses src/http answers, by what an operation does: every route can be unknown (404), called with another
  // method (405) or meet a fault (500); a body is read as JSON (400 malformed_json, 413, 415); a token is checked
  // (401); a route that takes a code or a refresh token without a session is counted per client network (429).
  test("every operation documents each status the service can answer for it", () => {
    const takesASecret = ["generateOtp", "resendOtp", "verifyOtp", "refresh", "logout"];
    const takesAToken = ["refresh", "logout", "logoutAll", "me", "listSessions", "endSession"];
    const missing = [];
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        if (op.operationId === "openapi") continue; // a static asset: 200 only
        const expected = ["200", "404", "405", "500"];
        if (op.requestBody) expected.push("400", "413", "415");
        if (takesAToken.includes(op.operationId)) expected.push("401");
        if (takesASecret.includes(op.operationId)) expected.push("429");
        for (const status of expected) if (!op.responses[status]) missing.push(`${op.operationId} ${status}`);
        for (const status of Object.keys(op.responses)) {
          if (!expected.includes(status)) missing.push(`${op.operationId} documents ${status}, which it cannot answer`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  test("public operations declare security [] and the others their token schemes", () => {
    const PUBLIC = ["generateOtp", "resendOtp", "verifyOtp", "refresh", "openapi"];
    const schemes = Object.keys(doc.components.securitySchemes);
    const seen = [];
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        seen.push(op.operationId);
        assert.ok(Array.isArray(op.security), `${op.operationId} declares security`);
        if (PUBLIC.includes(op.operationId)) {
          assert.deepEqual(op.security, [], `${op.operationId} is public`);
          continue;
        }
        const named = op.security.filter((s) => Object.keys(s).length > 0);
        assert.deepEqual(named.map((s) => Object.keys(s)).flat().sort(), [...schemes].sort(), `${op.operationId} takes a token`);
        // Only logout also works without a token (with the refresh token in the body).
        assert.equal(op.security.length - named.length, op.operationId === "logout" ? 1 : 0, `${op.operationId}`);
      }
    }
    for (const id of PUBLIC) assert.ok(seen.includes(id), `${id} is in the document`);
  });
});
