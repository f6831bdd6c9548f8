// Answers at once with a small JSON body and the headers the service's answers carry: what any Worker costs in this
// runtime before it does any work of its own. Three calibration paths first make exactly one storage call each.
const CALIBRATION = {
  // Reads a key that exists (a miss costs less); only the very first request writes it.
  "/kv-read": async (env) => (await env.KV.get("calibration")) ?? env.KV.put("calibration", "x".repeat(200)),
  "/kv-write": (env) => env.KV.put(`calibration:${crypto.randomUUID()}`, "x", { expirationTtl: 600 }),
  "/d1-query": (env) => env.DB.prepare("SELECT 1 AS one").all(),
};

export default {
  async fetch(request, env) {
    const call = CALIBRATION[new URL(request.url).pathname];
    if (call) await call(env);
    return new Response('{"ok":true}', {
      headers: { "Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff" },
    });
  },
};
