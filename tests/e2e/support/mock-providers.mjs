// A local stand-in for the delivery providers' HTTP APIs (Resend for email, Twilio for SMS) on 127.0.0.1.
//
// It accepts requests only in the providers' real formats and answers like the real APIs do. Every request is
// recorded; a request in the wrong format is answered with the provider's error and also recorded in
// `validationErrors`, which the tests assert to be empty, so a wrong format fails the suite visibly.
//
//   const mock = await startMockProviders();
//   mock.workerVars()              -> vars pointing the worker at the mock, with matching credentials
//   await mock.waitForMessage("mobile.test@example.com", 5000)  -> { provider, to, text, code, ... }
//   await mock.expectNoMessage("someone@example.com", 1500)
//   mock.fail("resend", { status: 500 })  /  mock.fail("twilio", null)
//   mock.reset(); await mock.close();

import { randomUUID, randomBytes } from "node:crypto";
import http from "node:http";

const BODY_LIMIT = 1024 * 1024;

export const DEFAULT_CREDENTIALS = Object.freeze({
  RESEND_API_KEY: "re_test_" + "k3yF0rM0ckTests0nly",
  EMAIL_FROM: "CRM <no-reply@example.com>",
  TWILIO_ACCOUNT_SID: "AC" + "0123456789abcdef0123456789abcdef",
  TWILIO_AUTH_TOKEN: "fedcba9876543210fedcba9876543210",
  TWILIO_FROM_NUMBER: "+15005550006",
});

// Error bodies shaped like the real APIs'.
function resendError(status, name, message) {
  return { status, body: { statusCode: status, name, message } };
}
function twilioError(status, code, message) {
  return {
    status,
    body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
  };
}

const DEFAULT_FAILURES = {
  resend: {
    500: () => resendError(500, "application_error", "An unexpected error occurred."),
    401: () => resendError(401, "missing_api_key", "Missing API key in the authorization header."),
    403: () => resendError(403, "invalid_api_key", "API key is invalid"),
    422: () => resendError(422, "validation_error", "Invalid `to` field."),
    429: () => resendError(429, "rate_limit_exceeded", "Too many requests."),
  },
  twilio: {
    500: () => twilioError(500, 20500, "Internal Server Error"),
    401: () => twilioError(401, 20003, "Authenticate"),
    400: () => twilioError(400, 21211, "Invalid 'To' Phone Number"),
    429: () => twilioError(429, 20429, "Too Many Requests"),
  },
};

const EMAIL_RE = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
// RFC 5322 style "Name <addr@host>" or a bare address, as Resend's `from` accepts.
const FROM_RE = /^(?:[^<>]*<[^\s@<>]+@[^\s@<>]+>|[^\s@<>]+@[^\s@<>]+)$/;
const E164_RE = /^\+[1-9]\d{6,14}$/;
const RESEND_FIELDS = new Set([
  "from", "to", "subject", "text", "html", "cc", "bcc", "reply_to", "replyTo", "headers", "tags",
  "attachments", "scheduled_at", "scheduledAt", "react", "template", "topic_id",
]);
const TWILIO_FIELDS = new Set([
  "To", "From", "Body", "MessagingServiceSid", "StatusCallback", "ValidityPeriod", "ApplicationSid", "MaxPrice",
  "ProvideFeedback", "Attempt", "ContentRetention", "AddressRetention", "SmartEncoded", "PersistentAction",
  "ShortenUrls", "ScheduleType", "SendAt", "SendAsMms", "ContentSid", "ContentVariables", "RiskCheck",
  "MediaUrl", "ForceDelivery", "Tags",
]);

function extractCode(text) {
  const m = /(?<!\d)(\d{6})(?!\d)/.exec(text ?? "");
  return m ? m[1] : null;
}

function stripHtml(html) {
  return String(html ?? "").replace(/<[^>]*>/g, " ");
}

// Who a recorded request (valid or not) was addressed to, as far as it can be read.
function requestRecipients(r) {
  try {
    if (r.provider === "twilio") {
      const to = new URLSearchParams(r.rawBody).get("To");
      return to ? [to] : [];
    }
    const body = JSON.parse(r.rawBody);
    const to = body?.to;
    return (Array.isArray(to) ? to : [to]).filter((x) => typeof x === "string");
  } catch {
    return [];
  }
}

function mediaType(header) {
  return String(header ?? "").split(";")[0].trim().toLowerCase();
}

export async function startMockProviders(options = {}) {
  const creds = { ...DEFAULT_CREDENTIALS, ...(options.credentials ?? {}) };
  // Resend refuses requests without a User-Agent (403, error 1010), and workerd's fetch sends none by default.
  const requireUserAgent = true;
  const requests = []; // every request: { provider, method, path, headers, rawBody, status, at }
  const messages = []; // accepted deliveries
  const validationErrors = []; // { provider, path, problems: [...] }
  const failures = { resend: null, twilio: null };
  const waiters = new Set();

  function notify() {
    for (const w of [...waiters]) w.check();
  }

  function recordProblems(provider, req, problems) {
    validationErrors.push({ provider, method: req.method, path: req.url, problems, at: Date.now() });
  }

  function handleResend(req, raw, url) {
    const problems = [];
    const auth = req.headers.authorization;
    if (req.method !== "POST") {
      problems.push(`method ${req.method}, expected POST`);
      recordProblems("resend", req, problems);
      return { status: 405, body: { statusCode: 405, name: "method_not_allowed", message: "Method not allowed" } };
    }
    if (!auth) {
      recordProblems("resend", req, ["missing Authorization header"]);
      return resendError(401, "missing_api_key", "Missing API key in the authorization header.");
    }
    if (auth !== `Bearer ${creds.RESEND_API_KEY}`) {
      recordProblems("resend", req, [`Authorization is ${JSON.stringify(auth)}, expected "Bearer <RESEND_API_KEY>"`]);
      return resendError(403, "invalid_api_key", "API key is invalid");
    }
    // Resend rejects requests without a User-Agent with 403 (Cloudflare error 1010), see its API introduction.
    if (requireUserAgent && !req.headers["user-agent"]) {
      recordProblems("resend", req, ["missing User-Agent header (the real Resend API answers 403, error 1010)"]);
      return { status: 403, body: { error: "error code: 1010" } };
    }
    if (mediaType(req.headers["content-type"]) !== "application/json") {
      recordProblems("resend", req, [`Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/json`]);
      return resendError(422, "validation_error", "Invalid content type.");
    }
    let body;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      recordProblems("resend", req, ["body is not valid JSON"]);
      return resendError(400, "invalid_json", "Invalid JSON body.");
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      recordProblems("resend", req, ["body is not a JSON object"]);
      return resendError(422, "validation_error", "Body must be an object.");
    }
    if (typeof body.from !== "string" || !FROM_RE.test(body.from)) problems.push(`from ${JSON.stringify(body.from)} is not an address`);
    else if (body.from !== creds.EMAIL_FROM) problems.push(`from ${JSON.stringify(body.from)}, expected EMAIL_FROM ${JSON.stringify(creds.EMAIL_FROM)}`);
    const to = typeof body.to === "string" ? [body.to] : body.to;
    if (!Array.isArray(to) || to.length === 0 || to.length > 50) problems.push(`to ${JSON.stringify(body.to)} must be an address or 1-50 addresses`);
    else if (!to.every((a) => typeof a === "string" && EMAIL_RE.test(a))) problems.push(`to ${JSON.stringify(body.to)} holds a non-address`);
    if (typeof body.subject !== "string" || body.subject.trim() === "") problems.push("subject missing or empty");
    const hasText = typeof body.text === "string" && body.text.length > 0;
    const hasHtml = typeof body.html === "string" && body.html.length > 0;
    if (!hasText && !hasHtml) problems.push("neither text nor html given");
    if (body.text !== undefined && typeof body.text !== "string") problems.push("text is not a string");
    if (body.html !== undefined && typeof body.html !== "string") problems.push("html is not a string");
    const unknown = Object.keys(body).filter((k) => !RESEND_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("resend", req, problems);
      return resendError(422, "validation_error", problems[0]);
    }
    if (failures.resend) return failures.resend();
    const id = randomUUID();
    const text = hasText ? body.text : stripHtml(body.html);
    for (const addr of to) {
      messages.push({
        provider: "resend",
        channel: "email",
        id,
        to: addr,
        from: body.from,
        subject: body.subject,
        text: body.text ?? null,
        html: body.html ?? null,
        body: text,
        code: extractCode(text) ?? extractCode(stripHtml(body.html)),
        htmlCode: hasHtml ? extractCode(stripHtml(body.html)) : null,
        userAgent: req.headers["user-agent"],
        at: Date.now(),
      });
    }
    return { status: 200, body: { id } };
  }

  function handleTwilio(req, raw, url, sid) {
    const problems = [];
    if (req.method !== "POST") {
      recordProblems("twilio", req, [`method ${req.method}, expected POST`]);
      return twilioError(405, 20004, "Method not allowed");
    }
    const expectedAuth = "Basic " + Buffer.from(`${creds.TWILIO_ACCOUNT_SID}:${creds.TWILIO_AUTH_TOKEN}`).toString("base64");
    const auth = req.headers.authorization;
    if (auth !== expectedAuth) {
      let shown = auth;
      if (auth?.startsWith("Basic ")) shown = `Basic base64(${Buffer.from(auth.slice(6), "base64").toString("utf8")})`;
      recordProblems("twilio", req, [`Authorization is ${JSON.stringify(shown ?? null)}, expected Basic base64(SID:AUTH_TOKEN)`]);
      return twilioError(401, 20003, "Authenticate");
    }
    if (sid !== creds.TWILIO_ACCOUNT_SID) {
      recordProblems("twilio", req, [`account SID in path ${JSON.stringify(sid)}, expected TWILIO_ACCOUNT_SID`]);
      return twilioError(404, 20404, "The requested resource was not found");
    }
    if (mediaType(req.headers["content-type"]) !== "application/x-www-form-urlencoded") {
      recordProblems("twilio", req, [`Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/x-www-form-urlencoded`]);
      return twilioError(400, 21601, "Content-Type must be application/x-www-form-urlencoded");
    }
    const form = new URLSearchParams(raw.toString("utf8"));
    const fields = {};
    for (const [k, v] of form) {
      if (k in fields) problems.push(`field ${k} given twice`);
      fields[k] = v;
    }
    if (!fields.To) problems.push("To missing");
    else if (!E164_RE.test(fields.To)) problems.push(`To ${JSON.stringify(fields.To)} is not E.164`);
    if (!fields.From && !fields.MessagingServiceSid) problems.push("From missing");
    else if (fields.From !== undefined && fields.From !== creds.TWILIO_FROM_NUMBER) {
      problems.push(`From ${JSON.stringify(fields.From)}, expected TWILIO_FROM_NUMBER ${JSON.stringify(creds.TWILIO_FROM_NUMBER)}`);
    }
    if (!fields.Body) problems.push("Body missing or empty");
    else if (fields.Body.length > 1600) problems.push("Body longer than 1600 characters");
    const unknown = Object.keys(fields).filter((k) => !TWILIO_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("twilio", req, problems);
      return twilioError(400, 21604, problems[0]);
    }
    if (failures.twilio) return failures.twilio();
    const msgSid = "SM" + randomBytes(16).toString("hex");
    const now = new Date().toUTCString().replace("GMT", "+0000");
    messages.push({
      provider: "twilio",
      channel: "sms",
      id: msgSid,
      to: fields.To,
      from: fields.From,
      body: fields.Body,
      text: fields.Body,
      code: extractCode(fields.Body),
      at: Date.now(),
    });
    return {
      status: 201,
      body: {
        account_sid: creds.TWILIO_ACCOUNT_SID,
        api_version: "2010-04-01",
        body: fields.Body,
        date_created: now,
        date_sent: null,
        date_updated: now,
        direction: "outbound-api",
        error_code: null,
        error_message: null,
        from: fields.From ?? null,
        messaging_service_sid: fields.MessagingServiceSid ?? null,
        num_media: "0",
        num_segments: "1",
        price: null,
        price_unit: "USD",
        sid: msgSid,
        status: "queued",
        subresource_uris: { media: `/2010-04-01/Accounts/${creds.TWILIO_ACCOUNT_SID}/Messages/${msgSid}/Media.json` },
        to: fields.To,
        uri: `/2010-04-01/Accounts/${creds.TWILIO_ACCOUNT_SID}/Messages/${msgSid}.json`,
      },
    };
  }

  function route(req, raw) {
    const url = new URL(req.url, "http://127.0.0.1");
    const p = url.pathname;
    if (p === "/emails" || p === "/emails/") return { provider: "resend", result: handleResend(req, raw, url) };
    const tw = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(p);
    if (tw) return { provider: "twilio", result: handleTwilio(req, raw, url, decodeURIComponent(tw[1])) };
    const provider = p.startsWith("/2010-04-01") ? "twilio" : "unknown";
    recordProblems(provider, req, [`no such endpoint ${req.method} ${p}`]);
    return { provider, result: { status: 404, body: { message: "Not Found" } } };
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    let aborted = false;
    req.on("data", (c) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        aborted = true;
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (aborted) return;
      const raw = Buffer.concat(chunks);
      let provider = "unknown";
      let result;
      const errorsBefore = validationErrors.length;
      try {
        ({ provider, result } = route(req, raw));
      } catch (err) {
        recordProblems(provider, req, [`mock crashed: ${err?.stack ?? err}`]);
        result = { status: 500, body: { message: "mock crashed" } };
      }
      requests.push({
        provider,
        method: req.method,
        path: req.url,
        headers: { ...req.headers },
        rawBody: raw.toString("utf8"),
        status: result.status,
        problems: validationErrors.slice(errorsBefore).flatMap((e) => e.problems),
        at: Date.now(),
      });
      const payload = JSON.stringify(result.body);
      res.writeHead(result.status, {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(payload),
      });
      res.end(payload);
      notify();
    });
  });
  server.keepAliveTimeout = 1000;

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;

  function waitFor(predicate, timeoutMs, describe) {
    return new Promise((resolve, reject) => {
      const w = {
        check() {
          let found;
          try {
            found = predicate();
          } catch (err) {
            waiters.delete(w);
            clearTimeout(w.timer);
            reject(err);
            return;
          }
          if (found) {
            waiters.delete(w);
            clearTimeout(w.timer);
            resolve(found);
          }
        },
      };
      w.timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`${describe()} (after ${timeoutMs} ms)`));
      }, timeoutMs);
      waiters.add(w);
      w.check();
    });
  }

  const sameRecipient = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();
  const summary = () =>
    `recorded messages: ${JSON.stringify(messages.map((m) => ({ provider: m.provider, to: m.to })))}; ` +
    `validation errors: ${JSON.stringify(validationErrors)}`;

  return {
    url,
    port,
    credentials: creds,
    requests,
    messages,
    validationErrors,

    /** Vars that point the worker's providers at this mock, with credentials the mock accepts. */
    workerVars() {
      return { ...creds, RESEND_API_BASE: url, TWILIO_API_BASE: url };
    },

    messagesTo(to) {
      return messages.filter((m) => sameRecipient(m.to, to));
    },

    /**
     * Resolves with the first message to `to` received after this call, or after `since` (ms epoch) if given.
     * Rejects after timeoutMs, listing what was recorded.
     */
    waitForMessage(to, timeoutMs = 5000, { since } = {}) {
      const after = since ?? Date.now();
      return waitFor(
        () => {
          const found = messages.find((m) => m.at >= after && sameRecipient(m.to, to));
          if (found) return found;
          // A request for this recipient in the wrong format fails at once instead of at the timeout.
          const bad = requests.find(
            (r) => r.at >= after && r.problems.length && requestRecipients(r).some((x) => sameRecipient(x, to)),
          );
          if (bad) throw new Error(`the request to ${bad.provider} for ${to} had the wrong format: ${bad.problems.join("; ")}`);
          return undefined;
        },
        timeoutMs,
        () => `no message to ${to} reached the mock provider; ${summary()}`,
      );
    },

    /** Resolves if nothing is sent to `to` for ms milliseconds (counting from `since`, default now). */
    async expectNoMessage(to, ms = 1500, { since } = {}) {
      const after = since ?? Date.now();
      const hit = () =>
        requests.find((r) => r.at >= after && requestRecipients(r).some((x) => sameRecipient(x, to))) ??
        messages.find((m) => m.at >= after && sameRecipient(m.to, to));
      try {
        const found = await waitFor(hit, ms, () => "none");
        throw Object.assign(new Error(`unexpected provider request for ${to}: ${JSON.stringify(found)}`), { unexpected: true });
      } catch (err) {
        if (err.unexpected) throw err;
      }
    },

    /**
     * Makes `provider` ("resend" | "twilio") answer valid requests with an error like the real API's.
     * spec: null (normal again), a status number, or { status, body }.
     */
    fail(provider, spec) {
      if (!(provider in failures)) throw new Error(`unknown provider ${provider}`);
      if (spec === null || spec === undefined || spec === false) {
        failures[provider] = null;
        return;
      }
      const status = typeof spec === "number" ? spec : spec.status;
      const custom = typeof spec === "object" && spec.body !== undefined;
      const make = custom ? () => ({ status, body: spec.body }) : DEFAULT_FAILURES[provider][status];
      failures[provider] = make ?? (() => ({ status, body: { message: `mock failure ${status}` } }));
    },

    reset() {
      requests.length = 0;
      messages.length = 0;
      validationErrors.length = 0;
      failures.resend = null;
      failures.twilio = null;
    },

    close() {
      for (const w of waiters) clearTimeout(w.timer);
      waiters.clear();
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
