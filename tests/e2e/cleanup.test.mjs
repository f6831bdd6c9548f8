// The daily Cron Trigger: expired counters and challenges are deleted, live ones and recent audit rows are kept,
// and audit rows past EVENT_RETENTION_DAYS are deleted. Triggered through wrangler dev's --test-scheduled route.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { PATHS, client } from "./support/api.mjs";
import { startMockProviders } from "./support/mock-providers.mjs";
import { SEED, startWorker } from "./support/worker.mjs";

const DAY = 86_400;
let mock;
let worker;
let api;

describe("scheduled cleanup", { timeout: 180_000 }, () => {
  before(async () => {
    mock = await startMockProviders();
    worker = await startWorker({ vars: { ...mock.workerVars(), EVENT_RETENTION_DAYS: "30" } });
    api = client(worker.url);
  });

  after(async () => {
    await worker?.stop();
    await mock?.close();
  });

  test("expired state and old audit rows are deleted; live state and recent rows are kept", async () => {
    const now = Math.floor(Date.now() / 1000);
    // A live challenge, a live per-IP counter and recent audit rows, made by a real request.
    const since = Date.now();
    const live = await api.post(PATHS.generate, { email: SEED.testUser.email }, { ip: "198.51.100.7" });
    assert.equal(live.status, 200);
    const sent = await mock.waitForMessage(SEED.testUser.email, 10_000, { since });

    await worker.d1(`
      INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES ('ip:203.0.113.1:send', ${now - 3 * DAY}, 5);
      INSERT INTO rate_limits (bucket, window_started_at, hits) VALUES ('sms:${Math.floor(now / DAY) - 3}', ${now - 3 * DAY}, 9);
      INSERT INTO otp_challenges (identifier, challenge_id, issued_at, expires_at, window_started_at, sends_in_window)
        VALUES ('email:old@example.com', 'c-old', ${now - 2 * DAY}, ${now - 2 * DAY + 600}, ${now - 2 * DAY}, 1);
      INSERT INTO otp_challenges (identifier, challenge_id, issued_at, expires_at, failed_attempts,
                                  window_started_at, sends_in_window)
        VALUES ('email:locked@example.com', 'c-locked', ${now - 7200}, ${now - 6600}, 3, ${now - 7200}, 1);
      INSERT INTO guess_counters (subject, failures, locked_until, held, last_failed_at)
        VALUES ('email:locked@example.com', 3, ${now + 840}, 0, ${now - 60}),
               ('email:long-ago@example.com', 2, 0, 0, ${now - 300 * DAY});
      INSERT INTO login_events (occurred_at, event, identifier) VALUES (${now - 31 * DAY}, 'login', 'ol*@example.com');
      INSERT INTO login_events (occurred_at, event, identifier) VALUES (${now - 29 * DAY}, 'login', 're*@example.com');
    `);

    const from = worker.logs().length;
    const trigger = await fetch(`${worker.url}/__scheduled?cron=${encodeURIComponent("17 3 * * *")}`);
    assert.equal(trigger.status, 200);
    await worker.waitForLog(/cleanup: removed 2 counters, 2 challenges, 1 audit rows/, 15_000, { from });

    const buckets = (await worker.d1("SELECT bucket FROM rate_limits ORDER BY bucket")).map((r) => r.bucket);
    assert.deepEqual(buckets, ["ip:198.51.100.7:send"]);
    const challenges = (await worker.d1("SELECT identifier FROM otp_challenges ORDER BY identifier")).map((r) => r.identifier);
    assert.deepEqual(challenges, [`email:${SEED.testUser.email}`]);
    const counters = (await worker.d1("SELECT subject FROM guess_counters ORDER BY subject")).map((r) => r.subject);
    assert.deepEqual(counters, ["email:locked@example.com", "email:long-ago@example.com"],
      "failure counts are never forgotten: only a login or an unlock resets them");
    const events = (await worker.d1("SELECT identifier FROM login_events WHERE event = 'login'")).map((r) => r.identifier);
    assert.deepEqual(events, ["re*@example.com"]);

    // The live code still works after the cleanup.
    const verify = await api.post(PATHS.verify, { email: SEED.testUser.email, otp_code: sent.code }, { ip: "198.51.100.7" });
    assert.equal(verify.status, 200);
  });
});
