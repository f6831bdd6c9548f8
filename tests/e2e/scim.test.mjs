// SCIM 2.0 provisioning under /scim/v2/ as Microsoft Entra ID and Okta perform it, against the built worker under
// wrangler dev: create a user, add them to the employee group, log them in with a code, deactivate them (the live
// access token and refresh token die at once), reactivate, remove from the group, delete; then filters, paging,
// attributes, the SCIM error format, the bearer token and the per-client limit. Request bodies follow the clients'
// documented shapes, including their deviations from RFC 7644 (capitalised operation names, "False" as a string,
// path-less replace, member removal by filter path or by value list).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { PATHS, assertSignedOut, call, client, describeResponse, logInByEmail, requestCode } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { ROOT, startWorker } from "./support/worker.mjs";

const TOKEN = "scim-e2e-token-0123456789abcdef0123456789abcdef";
const MEDIA = "application/scim+json";
const ERROR = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
// Requests per client (IP) per window: each test below sends fewer from its own address.
const LIMIT = 60;
const T = { timeout: 180_000 };

let mock;
let worker;
let api;

/** A SCIM request from `ip` with the right token unless `token` says otherwise. */
function scim(method, pathAndQuery, { body, ip, token = TOKEN, contentType = MEDIA } = {}) {
  const headers = {};
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = contentType;
  const raw = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  return call(worker.url, method, `/scim/v2${pathAndQuery}`, { headers, body: raw, ip });
}

function expectStatus(res, status) {
  assert.equal(res.status, status, describeResponse(res));
  if (res.text) assert.match(res.headers.get("content-type") ?? "", /^application\/scim\+json/, describeResponse(res));
  return res.body;
}

/** A SCIM error answer: its status (a string in the body), scimType and detail. */
function expectScimError(res, status, scimType) {
  const body = expectStatus(res, status);
  assert.deepEqual(body.schemas, [ERROR], describeResponse(res));
  assert.equal(body.status, String(status), describeResponse(res));
  if (scimType) assert.equal(body.scimType, scimType, describeResponse(res));
  assert.ok(typeof body.detail === "string" && body.detail.length > 0, describeResponse(res));
  return body;
}

const q = (filter) => encodeURIComponent(filter);

async function assertNoCodeSent(email, ip) {
  const since = Date.now();
  await requestCode(api, email, ip);
  await mock.expectNoMessage(email, 2500, { since });
}

async function employeesGroup(ip) {
  const res = await scim("GET", `/Groups?filter=${q('displayName eq "Employees"')}&excludedAttributes=members`, { ip });
  const body = expectStatus(res, 200);
  assert.equal(body.totalResults, 1, describeResponse(res));
  assert.equal(body.Resources[0].members, undefined, "members excluded");
  return body.Resources[0].id;
}

describe("SCIM provisioning", { timeout: 900_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({
      variant: "scim",
      vars: {
        ...mock.workerVars(),
        OTP_RESEND_COOLDOWN_SECONDS: "1",
        SCIM_TOKEN: `${TOKEN},second-token-for-rotation-0123456789abcdef`,
        RATE_LIMIT_SCIM_REQUESTS: String(LIMIT),
      },
    });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("discovery: ServiceProviderConfig, ResourceTypes and Schemas, served as the schema document says", T, async () => {
    const ip = "198.51.100.1";
    const document = JSON.parse(readFileSync(path.join(ROOT, "src", "scim", "discovery.json"), "utf8"));
    const config = expectStatus(await scim("GET", "/ServiceProviderConfig", { ip }), 200);
    assert.deepEqual(config, document.ServiceProviderConfig);
    assert.equal(config.patch.supported, true);
    assert.equal(config.filter.supported, true);
    const types = expectStatus(await scim("GET", "/ResourceTypes/", { ip }), 200);
    assert.deepEqual(types.Resources, document.ResourceTypes);
    assert.equal(types.totalResults, 2);
    const schemas = expectStatus(await scim("GET", "/Schemas", { ip }), 200);
    assert.deepEqual(schemas.Resources, document.Schemas);
    const user = expectStatus(await scim("GET", `/Schemas/${USER}`, { ip }), 200);
    assert.ok(user.attributes.some((a) => a.name === "userName"));
    expectScimError(await scim("GET", "/Schemas/urn:nothing", { ip }), 404);
  });

  test("the bearer token: missing, wrong, another scheme or a prefix of it is 401; both rotated tokens work", T, async () => {
    const ip = "198.51.100.2";
    for (const token of [null, "wrong-token-0123456789abcdef0123456789abcdef", TOKEN.slice(0, -1), `${TOKEN}x`]) {
      const res = await scim("GET", "/Users", { ip, token });
      expectScimError(res, 401);
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
    }
    const basic = await call(worker.url, "GET", "/scim/v2/Users", {
      ip,
      headers: { Authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}` },
    });
    expectScimError(basic, 401);
    expectStatus(await scim("GET", "/Users?count=1", { ip }), 200);
    expectStatus(await scim("GET", "/Users?count=1", { ip, token: "second-token-for-rotation-0123456789abcdef" }), 200);
    assert.doesNotMatch(worker.logs(), new RegExp(TOKEN), "the token never reaches the log");
  });

  test("Entra ID: create, add to Employees, log in, active \"False\" kills the tokens at once, re-activate, delete", T, async () => {
    const ip = "198.51.100.3";
    const email = "entra.user@example.com";
    // Entra ID first looks the user up by its matching attribute.
    const found = expectStatus(await scim("GET", `/Users?filter=${q(`userName eq "Entra.User@example.com"`)}`, { ip }), 200);
    assert.equal(found.totalResults, 0);
    assert.deepEqual(found.Resources, []);

    const created = await scim("POST", "/Users", {
      ip,
      body: {
        schemas: [USER, ENTERPRISE],
        externalId: "8f1c5a22-aad7-4f44-9d1b-3c0c6e0c1a11",
        userName: "Entra.User@example.com",
        active: true,
        displayName: "Entra User",
        title: "Field Engineer",
        emails: [{ primary: true, type: "work", value: "Entra.User@example.com" }],
        name: { formatted: "Entra User", familyName: "User", givenName: "Entra" },
        phoneNumbers: [{ type: "mobile", value: "+1 415 555 0177" }],
        [ENTERPRISE]: { department: "North", manager: { value: "someone" } },
      },
    });
    const user = expectStatus(created, 201);
    assert.equal(created.headers.get("location"), `${worker.url}/scim/v2/Users/${user.id}`);
    assert.equal(user.userName, email);
    assert.equal(user.phoneNumbers[0].value, "+14155550177");
    assert.equal(user.title, "Field Engineer");
    assert.equal(user[ENTERPRISE].department, "North");
    assert.equal(user.externalId, "8f1c5a22-aad7-4f44-9d1b-3c0c6e0c1a11");
    assert.equal(user.meta.resourceType, "User");
    const [row] = await worker.d1(`SELECT * FROM user_directory WHERE email = '${email}'`);
    assert.equal(row.branch, "North");
    assert.equal(row.designation, "Field Engineer");
    assert.equal(row.may_log_in, 0, "not an employee until the group says so");

    const group = await employeesGroup(ip);
    const added = await scim("PATCH", `/Groups/${group}`, {
      ip,
      body: { schemas: [PATCH_OP], Operations: [{ op: "Add", path: "members", value: [{ value: user.id }] }] },
    });
    assert.equal(added.status, 204, describeResponse(added));
    const session = await logInByEmail(api, mock, email, ip);

    const patched = await scim("PATCH", `/Users/${user.id}`, {
      ip,
      body: { schemas: [PATCH_OP], Operations: [{ op: "Replace", path: "active", value: "False" }] },
    });
    assert.equal(expectStatus(patched, 200).active, false);
    await assertSignedOut(api, session, ip);
    await assertNoCodeSent(email, ip);

    const events = await worker.d1(
      `SELECT e.event, e.detail FROM login_events e JOIN users u ON u.id = e.user_id WHERE u.email = '${email}' AND e.event = 'revoked'`,
    );
    assert.ok(events.some((e) => /scim: deactivated/.test(e.detail)), JSON.stringify(events));
    const audit = await worker.d1(`SELECT source, action, resource, detail, ip FROM provisioning_events WHERE name = '${email}' ORDER BY id`);
    assert.deepEqual(audit.map((a) => a.action), ["create", "update"]);
    assert.deepEqual(JSON.parse(audit[1].detail), { is_active: false });
    assert.equal(audit[1].ip, ip);

    const reactivated = await scim("PATCH", `/Users/${user.id}`, {
      ip,
      body: { schemas: [PATCH_OP], Operations: [{ op: "Replace", path: "active", value: "True" }] },
    });
    assert.equal(expectStatus(reactivated, 200).active, true);
    const again = await logInByEmail(api, mock, email, ip);
    // Entra ID's attribute updates: paths with a filter, the extension by URN, several in one request.
    const updated = await scim("PATCH", `/Users/${user.id}`, {
      ip,
      body: {
        schemas: [PATCH_OP],
        Operations: [
          { op: "Replace", path: "name.givenName", value: "Entra2" },
          { op: "Replace", path: 'phoneNumbers[type eq "mobile"].value', value: "+1 415 555 0178" },
          { op: "Add", path: `${ENTERPRISE}:department`, value: "South" },
        ],
      },
    });
    const changed = expectStatus(updated, 200);
    assert.equal(changed.name.givenName, "Entra2");
    assert.equal(changed.phoneNumbers[0].value, "+14155550178");
    assert.equal(changed[ENTERPRISE].department, "South");
    const me = await api.get(PATHS.me, { token: again.token, ip });
    assert.equal(me.status, 200, `a change that keeps access keeps the session: ${describeResponse(me)}`);

    const deleted = await scim("DELETE", `/Users/${user.id}`, { ip });
    assert.equal(deleted.status, 204, describeResponse(deleted));
    await assertSignedOut(api, again, ip);
    expectScimError(await scim("GET", `/Users/${user.id}`, { ip }), 404);
    assert.deepEqual(await worker.d1(`SELECT id FROM users WHERE email = '${email}'`), []);
  });

  test("Okta: create, push a group, add to Employees, deactivate with a path-less replace, remove by filter path, replace, delete", T, async () => {
    const ip = "198.51.100.4";
    const email = "okta.user@example.com";
    const lookup = await scim("GET", `/Users?filter=${q(`userName eq "${email}"`)}&startIndex=1&count=100`, { ip });
    assert.equal(expectStatus(lookup, 200).totalResults, 0);
    const body = {
      schemas: [USER],
      userName: email,
      name: { givenName: "Okta", familyName: "User" },
      emails: [{ primary: true, value: email, type: "work" }],
      displayName: "Okta User",
      locale: "en-US",
      externalId: "00u1okta",
      groups: [],
      password: "ignored-by-this-service",
      active: true,
    };
    const user = expectStatus(await scim("POST", "/Users", { ip, body }), 201);
    assert.equal(user.password, undefined);

    // Okta's group push creates its own group; it is not an employee group.
    const pushed = expectStatus(
      await scim("POST", "/Groups", { ip, body: { schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"], displayName: "Okta Field", members: [{ value: user.id, display: email }] } }),
      201,
    );
    assert.deepEqual(pushed.members.map((m) => m.value), [user.id]);
    const [flag] = await worker.d1(`SELECT is_employee_group FROM groups WHERE name = 'Okta Field'`);
    assert.equal(flag.is_employee_group, 0);
    await assertNoCodeSent(email, ip);

    const group = await employeesGroup(ip);
    const add = { schemas: [PATCH_OP], Operations: [{ op: "add", path: "members", value: [{ value: user.id, display: email }] }] };
    assert.equal((await scim("PATCH", `/Groups/${group}`, { ip, body: add })).status, 204);
    const session = await logInByEmail(api, mock, email, ip);

    const deactivate = { schemas: [PATCH_OP], Operations: [{ op: "replace", value: { active: false } }] };
    assert.equal(expectStatus(await scim("PATCH", `/Users/${user.id}`, { ip, body: deactivate }), 200).active, false);
    await assertSignedOut(api, session, ip);

    const reactivate = { schemas: [PATCH_OP], Operations: [{ op: "replace", value: { active: true } }] };
    expectStatus(await scim("PATCH", `/Users/${user.id}`, { ip, body: reactivate }), 200);
    const again = await logInByEmail(api, mock, email, ip);
    const remove = { schemas: [PATCH_OP], Operations: [{ op: "remove", path: `members[value eq "${user.id}"]` }] };
    assert.equal((await scim("PATCH", `/Groups/${group}`, { ip, body: remove })).status, 204);
    await assertSignedOut(api, again, ip);
    const [row] = await worker.d1(`SELECT groups, may_log_in FROM user_directory WHERE email = '${email}'`);
    assert.deepEqual(row, { groups: "Okta Field", may_log_in: 0 });
    const revoked = await worker.d1(
      `SELECT detail FROM login_events e JOIN users u ON u.id = e.user_id WHERE u.email = '${email}' AND event = 'revoked'`,
    );
    assert.ok(revoked.some((e) => /scim: removed from group/.test(e.detail)), JSON.stringify(revoked));

    // Okta updates a profile with PUT, the whole user.
    const replaced = await scim("PUT", `/Users/${user.id}`, {
      ip,
      body: { ...body, name: { givenName: "Okta", familyName: "Renamed" }, title: "Lead", id: user.id },
    });
    const after = expectStatus(replaced, 200);
    assert.equal(after.name.familyName, "Renamed");
    assert.equal(after.title, "Lead");
    assert.deepEqual(after.groups.map((g) => g.display), ["Okta Field"], "groups are read-only on a user");

    const renamed = await scim("PATCH", `/Groups/${pushed.id}`, { ip, body: { schemas: [PATCH_OP], Operations: [{ op: "replace", value: { id: pushed.id, displayName: "Okta Field Team" } }] } });
    assert.equal(renamed.status, 204, describeResponse(renamed));
    assert.equal(expectStatus(await scim("GET", `/Groups/${pushed.id}`, { ip }), 200).displayName, "Okta Field Team");
    const groupReplaced = await scim("PUT", `/Groups/${pushed.id}`, { ip, body: { displayName: "Okta Field Team", members: [] } });
    assert.deepEqual(expectStatus(groupReplaced, 200).members, []);
    assert.equal((await scim("DELETE", `/Groups/${pushed.id}`, { ip })).status, 204);
    assert.equal((await scim("DELETE", `/Users/${user.id}`, { ip })).status, 204);
    const audit = await worker.d1(`SELECT resource, action FROM provisioning_events WHERE ip = '${ip}' ORDER BY id`);
    assert.deepEqual(
      audit.map((a) => `${a.resource} ${a.action}`),
      ["User create", "Group create", "Group update", "User update", "User update", "Group update", "User replace", "Group update", "Group replace", "Group delete", "User delete"],
    );
  });

  test("filters, paging and attributes", T, async () => {
    const ip = "198.51.100.5";
    const ids = [];
    for (let i = 1; i <= 5; i++) {
      const user = expectStatus(
        await scim("POST", "/Users", {
          ip,
          body: { schemas: [USER], userName: `page.${i}@example.com`, externalId: `ext-${i}`, name: { givenName: "Page", familyName: `N${i}` }, active: i !== 3 },
        }),
        201,
      );
      ids.push(user.id);
    }
    const page = expectStatus(await scim("GET", `/Users?filter=${q('userName sw "page."')}&startIndex=3&count=2`, { ip }), 200);
    assert.deepEqual(page.schemas, ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]);
    assert.equal(page.totalResults, 5);
    assert.equal(page.startIndex, 3);
    assert.equal(page.itemsPerPage, 2);
    assert.deepEqual(page.Resources.map((u) => u.id), ids.slice(2, 4));
    const counted = expectStatus(await scim("GET", `/Users?filter=${q('userName sw "page."')}&count=0`, { ip }), 200);
    assert.deepEqual([counted.totalResults, counted.Resources.length], [5, 0]);

    const both = await scim("GET", `/Users?filter=${q('externalId eq "ext-2" and userName eq "PAGE.2@example.com"')}`, { ip });
    assert.deepEqual(expectStatus(both, 200).Resources.map((u) => u.id), [ids[1]]);
    const inactive = await scim("GET", `/Users?filter=${q('userName sw "page." and active eq false')}`, { ip });
    assert.deepEqual(expectStatus(inactive, 200).Resources.map((u) => u.id), [ids[2]]);
    const either = await scim("GET", `/Users?filter=${q('(name.familyName eq "N1" or name.familyName eq "n5") and not (externalId eq "ext-5")')}`, { ip });
    assert.deepEqual(expectStatus(either, 200).Resources.map((u) => u.id), [ids[0]]);
    const byName = await scim("GET", `/Users?filter=${q('displayName eq "Page N4"')}&attributes=userName`, { ip });
    assert.deepEqual(expectStatus(byName, 200).Resources, [{ schemas: [USER, ENTERPRISE], id: ids[3], userName: "page.4@example.com" }]);
    const slim = expectStatus(await scim("GET", `/Users/${ids[0]}?excludedAttributes=groups,meta,name`, { ip }), 200);
    assert.equal(slim.meta, undefined);
    assert.equal(slim.name, undefined);
    assert.equal(slim.userName, "page.1@example.com");

    const groups = await scim("GET", `/Groups?filter=${q(`displayName eq "employees" and members eq "${ids[0]}"`)}`, { ip });
    assert.equal(expectStatus(groups, 200).totalResults, 0);
    for (const bad of ['userName eq "unclosed', "userName zz 1", 'password eq "x"', 'emails[type eq "work"] pr', "((((("]) {
      expectScimError(await scim("GET", `/Users?filter=${q(bad)}`, { ip }), 400, "invalidFilter");
    }
    expectScimError(await scim("GET", "/Users?startIndex=abc", { ip }), 400, "invalidValue");
  });

  test("errors in SCIM's format: uniqueness, invalid values, syntax, unknown resources, methods, media type, employee groups", T, async () => {
    const ip = "198.51.100.6";
    const taken = await scim("POST", "/Users", { ip, body: { schemas: [USER], userName: "Mobile.Test@example.com" } });
    expectScimError(taken, 409, "uniqueness");
    const phone = await scim("POST", "/Users", { ip, body: { userName: "new.phone@example.com", phoneNumbers: [{ type: "mobile", value: "+1234567890" }] } });
    expectScimError(phone, 409, "uniqueness");
    assert.deepEqual(await worker.d1("SELECT id FROM users WHERE email = 'new.phone@example.com'"), [], "nothing half-written");
    expectScimError(await scim("POST", "/Users", { ip, body: { userName: "not an email" } }), 400, "invalidValue");
    expectScimError(await scim("POST", "/Users", { ip, body: { userName: "a@example.com", phoneNumbers: [{ type: "mobile", value: "0612345678" }] } }), 400, "invalidValue");
    expectScimError(await scim("POST", "/Users", { ip, body: "{not json" }), 400, "invalidSyntax");
    expectScimError(await scim("POST", "/Users", { ip, body: '{"userName":"a@example.com","userName":"b@example.com"}' }), 400, "invalidSyntax");
    expectScimError(await scim("POST", "/Users", { ip, body: { userName: "a@example.com" }, contentType: "text/plain" }), 415);
    expectScimError(await scim("GET", "/Users/999999", { ip }), 404);
    expectScimError(await scim("GET", "/Users/not-an-id", { ip }), 404);
    expectScimError(await scim("GET", "/Bulk", { ip }), 404);
    const wrongMethod = await scim("DELETE", "/Users", { ip });
    expectScimError(wrongMethod, 405);
    assert.equal(wrongMethod.headers.get("allow"), "GET, POST");
    const [testUser] = await worker.d1("SELECT id FROM users WHERE email = 'mobile.test@example.com'");
    expectScimError(
      await scim("PATCH", `/Users/${testUser.id}`, { ip, body: { schemas: [PATCH_OP], Operations: [{ op: "move", path: "title" }] } }),
      400,
      "invalidSyntax",
    );
    expectScimError(
      await scim("PATCH", `/Users/${testUser.id}`, { ip, body: { schemas: [PATCH_OP], Operations: [{ op: "replace", path: "userName", value: "employee01@example.com" }] } }),
      409,
      "uniqueness",
    );
    const group = await employeesGroup(ip);
    expectScimError(await scim("DELETE", `/Groups/${group}`, { ip }), 400, "mutability");
    expectScimError(await scim("POST", "/Groups", { ip, body: { displayName: "Employees" } }), 409, "uniqueness");
    const [still] = await worker.d1("SELECT may_log_in FROM user_directory WHERE email = 'mobile.test@example.com'");
    assert.equal(still.may_log_in, 1);
  });

  test("the provisioning Worker without SCIM_TOKEN: every /scim/v2/ path is 404 not_found, with or without a token", T, async () => {
    const off = await startWorker({ variant: "scim", vars: { ...mock.workerVars() } });
    try {
      for (const p of ["/scim/v2/Users", "/scim/v2/ServiceProviderConfig", "/scim/v2/"]) {
        for (const headers of [{}, { Authorization: `Bearer ${TOKEN}` }]) {
          const res = await call(off.url, "GET", p, { headers, ip: "198.51.100.9" });
          assert.equal(res.status, 404, describeResponse(res));
          assert.equal(res.body?.error?.code, "not_found", describeResponse(res));
        }
      }
    } finally {
      await off.stop();
    }
  });

  test("each client has its own request window: over it, 429 with Retry-After; other clients go on", T, async () => {
    const ip = "198.51.100.7";
    const answers = [];
    for (let i = 0; i <= LIMIT; i++) answers.push(await scim("GET", "/ServiceProviderConfig", { ip, token: i % 2 ? TOKEN : "wrong" }));
    assert.ok(answers.slice(0, LIMIT).every((r) => r.status === 200 || r.status === 401));
    const refused = answers[LIMIT];
    expectScimError(refused, 429);
    assert.match(refused.headers.get("retry-after") ?? "", /^\d+$/);
    expectStatus(await scim("GET", "/ServiceProviderConfig", { ip: "198.51.100.8" }), 200);
  });
});
