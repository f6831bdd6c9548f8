// Answers at once with a small JSON body and the headers the service's answers carry: what any Worker costs in this
// runtime before it does any work of its own. Three calibration paths first make exactly one storage call each.
//
// `/d1-timing` times D1 round trips of a given size, for the scaling model (bench/scaling.mjs).
//
// `/replay` makes the storage calls (and the provider call) an operation of the service makes, with no logic around
// them: the floor that any implementation with the same storage work stays under in this runtime. Its query names
// the work: `d1=3,2` (two D1 round trips, batches of 3 and 2 statements), `kvr`, `kvw`, `kvd` (KV reads, writes,
// deletes) on the response path; the same with an `a` in front (`ad1`, `akvr`, ..., `afetch`: provider calls) after
// the response, in `ctx.waitUntil`. `/replay-init` creates the table its statements use.
const CALIBRATION = {
  // Reads a key that exists (a miss costs less); only the very first request writes it.
  "/kv-read": async (env) => (await env.KV.get("calibration")) ?? env.KV.put("calibration", "x".repeat(200)),
  "/kv-write": (env) => env.KV.put(`calibration:${crypto.randomUUID()}`, "x", { expirationTtl: 600 }),
  "/d1-query": (env) => env.DB.prepare("SELECT 1 AS one").all(),
};

const count = (params, name) => Math.min(20, Number.parseInt(params.get(name) ?? "0", 10) || 0);
const batches = (params, name) =>
  (params.get(name) ?? "").split(",").filter(Boolean).slice(0, 20).map((n) => Math.max(1, Math.min(20, Number.parseInt(n, 10) || 1)));

/** One D1 round trip of `statements` statements: upserts of a row and reads of it, as a login's batches do. */
function d1Trip(env, statements) {
  const key = crypto.randomUUID().slice(0, 8);
  const upsert = "INSERT INTO replay (k, v, n) VALUES (?1, ?2, 1) ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = n + 1";
  const read = "SELECT k, v, n FROM replay WHERE k = ?1";
  const list = Array.from({ length: statements }, (_, i) =>
    i % 2 === 0 ? env.DB.prepare(upsert).bind(key, "x".repeat(64)) : env.DB.prepare(read).bind(key),
  );
  return env.DB.batch(list);
}

async function work(env, params, prefix) {
  for (const statements of batches(params, `${prefix}d1`)) await d1Trip(env, statements);
  for (let i = 0; i < count(params, `${prefix}kvr`); i++) await env.KV.get("replay");
  for (let i = 0; i < count(params, `${prefix}kvw`); i++) {
    await env.KV.put(`replay:${crypto.randomUUID()}`, "x".repeat(200), { expirationTtl: 600 });
  }
  for (let i = 0; i < count(params, `${prefix}kvd`); i++) await env.KV.delete(`replay:${crypto.randomUUID()}`);
  for (let i = 0; i < count(params, `${prefix}fetch`); i++) {
    // A delivery as the service makes it: one provider call with a message, to the mock provider.
    const res = await fetch(`${env.RESEND_API_BASE}/emails`, {
      method: "POST",
      headers: { authorization: `Bearer ${env.RESEND_API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ from: env.EMAIL_FROM, to: ["floor@example.com"], subject: "Your code", text: "Your code is 000000." }),
    });
    await res.arrayBuffer();
  }
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/replay-init") {
      await env.DB.exec("CREATE TABLE IF NOT EXISTS replay (k TEXT PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL)");
      await env.KV.put("replay", "x".repeat(200));
    } else if (url.pathname === "/d1-timing") {
      // `trips` D1 round trips one after another, each a batch of `statements` statements of /replay's mix: the time
      // they took as the Worker saw it, and D1's own figure for its SQL (meta.duration, summed). For bench/scaling.mjs.
      const trips = count(url.searchParams, "trips") || 1;
      const statements = Math.max(1, Math.min(100, Number.parseInt(url.searchParams.get("statements") ?? "1", 10) || 1));
      const started = Date.now();
      let sqlMs = 0;
      for (let i = 0; i < trips; i++) {
        for (const result of await d1Trip(env, statements)) sqlMs += Number(result.meta?.duration ?? 0);
      }
      return Response.json({ trips, statements, elapsedMs: Date.now() - started, sqlMs });
    } else if (url.pathname === "/replay") {
      await work(env, url.searchParams, "");
      ctx.waitUntil(work(env, url.searchParams, "a"));
    } else {
      const call = CALIBRATION[url.pathname];
      if (call) await call(env);
    }
    return new Response('{"ok":true}', {
      headers: { "Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff" },
    });
  },
};
