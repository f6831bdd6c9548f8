// A local stand-in for the delivery providers' HTTP APIs on 127.0.0.1: Resend, SendGrid, Mailgun, Postmark and
// Amazon SES v2 for email; Twilio, Vonage (Messages API), Plivo and Amazon SNS for SMS.
//
// It accepts requests only in the providers' real formats (method, path, authentication, content type, body
// fields, as each provider documents them; SES and SNS requests must carry a valid AWS Signature V4, recomputed
// here) and answers like the real APIs do. Every request is recorded; a request in the wrong format is answered
// with the provider's error and also recorded in `validationErrors`, which the tests assert to be empty, so a
// wrong format fails the suite visibly.
//
//   const mock = await startMockProviders();
//   mock.workerVars()              -> vars pointing every provider at the mock, with matching credentials
//   await mock.waitForMessage("mobile.test@example.com", 5000)  -> { provider, to, subject, text, code, ... }
//   await mock.expectNoMessage("someone@example.com", 1500)
//   mock.fail("resend", 500)  /  mock.fail("sns", { status: 400, body: "<ErrorResponse>…" })  /  mock.fail("twilio", null)
//   mock.failureReason("postmark", 500) -> the reason the worker should log for that failure
//   mock.reset(); await mock.close();

import { createHash, createHmac, randomUUID, randomBytes } from "node:crypto";
import http from "node:http";

const BODY_LIMIT = 1024 * 1024;

export const EMAIL_PROVIDERS = Object.freeze(["resend", "sendgrid", "mailgun", "postmark", "ses"]);
export const SMS_PROVIDERS = Object.freeze(["twilio", "vonage", "plivo", "sns"]);
const PROVIDERS = [...EMAIL_PROVIDERS, ...SMS_PROVIDERS];

export const DEFAULT_CREDENTIALS = Object.freeze({
  RESEND_API_KEY: "re_test_" + "k3yF0rM0ckTests0nly",
  EMAIL_FROM: "CRM <no-reply@example.com>",
  TWILIO_ACCOUNT_SID: "AC" + "0123456789abcdef0123456789abcdef",
  TWILIO_AUTH_TOKEN: "fedcba9876543210fedcba9876543210",
  TWILIO_FROM_NUMBER: "+15005550006",
  SENDGRID_API_KEY: "SG.mock-key-id." + "mockSecretForTestsOnly0123456789",
  MAILGUN_API_KEY: "mock-mailgun-key-" + "0123456789abcdef",
  MAILGUN_DOMAIN: "mg.example.com",
  POSTMARK_SERVER_TOKEN: "00000000-0000-4000-8000-" + "00000000mock",
  AWS_ACCESS_KEY_ID: "AKIA" + "MOCKTESTKEY00001",
  AWS_SECRET_ACCESS_KEY: "mock/Secret/Access/Key/" + "ForTestsOnly0000000000",
  AWS_REGION: "eu-west-1",
  VONAGE_API_KEY: "abcd1234",
  VONAGE_API_SECRET: "M0ckV0nageSecret",
  VONAGE_FROM: "+447700900001",
  PLIVO_AUTH_ID: "MA" + "MOCKAUTHID00000000",
  PLIVO_AUTH_TOKEN: "mockPlivoAuthToken" + "0123456789abcdef",
  PLIVO_FROM_NUMBER: "+14155550123",
});

// Error answers shaped like each real API's: { status, body } (JSON) or { status, text, contentType } (other).
function resendError(status, name, message) {
  return { status, body: { statusCode: status, name, message } };
}
function twilioError(status, code, message) {
  return {
    status,
    body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
  };
}
function sendgridError(status, message, field = null) {
  return { status, body: { errors: [{ message, field, help: null }] } };
}
function mailgunError(status, message) {
  return { status, body: { message } };
}
function postmarkError(status, errorCode, message) {
  return { status, body: { ErrorCode: errorCode, Message: message } };
}
function sesError(status, type, message) {
  return { status, body: { message }, headers: { "x-amzn-ErrorType": type } };
}
function vonageError(status, title, detail, slug = "unauthorized") {
  return {
    status,
    body: { type: `https://developer.vonage.com/api-errors#${slug}`, title, detail, instance: randomUUID() },
  };
}
function plivoError(status, error) {
  return { status, body: { api_id: randomUUID(), error } };
}
function snsError(status, type, code, message) {
  return {
    status,
    contentType: "text/xml",
    text:
      `<ErrorResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>${type}</Type>` +
      `<Code>${code}</Code><Message>${message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
  };
}

// What each provider answers when a test makes it fail, and the reason the worker is expected to record for it.
const DEFAULT_FAILURES = {
  resend: {
    500: [() => resendError(500, "application_error", "An unexpected error occurred."), "An unexpected error occurred."],
    401: [() => resendError(401, "missing_api_key", "Missing API key in the authorization header."), "Missing API key in the authorization header."],
    403: [() => resendError(403, "invalid_api_key", "API key is invalid"), "API key is invalid"],
    422: [() => resendError(422, "validation_error", "Invalid `to` field."), "Invalid `to` field."],
    429: [() => resendError(429, "rate_limit_exceeded", "Too many requests."), "Too many requests."],
  },
  twilio: {
    500: [() => twilioError(500, 20500, "Internal Server Error"), "20500: Internal Server Error"],
    401: [() => twilioError(401, 20003, "Authenticate"), "20003: Authenticate"],
    400: [() => twilioError(400, 21211, "Invalid 'To' Phone Number"), "21211: Invalid 'To' Phone Number"],
    429: [() => twilioError(429, 20429, "Too Many Requests"), "20429: Too Many Requests"],
  },
  sendgrid: {
    500: [() => sendgridError(500, "Internal server error"), "Internal server error"],
    401: [() => sendgridError(401, "The provided authorization grant is invalid, expired, or revoked"), "The provided authorization grant is invalid, expired, or revoked"],
    403: [() => sendgridError(403, "The from address does not match a verified Sender Identity.", "from"), "from: The from address does not match a verified Sender Identity."],
    429: [() => sendgridError(429, "too many requests"), "too many requests"],
  },
  mailgun: {
    500: [() => mailgunError(500, "Internal Server Error"), "Internal Server Error"],
    400: [() => mailgunError(400, "to parameter is not a valid address. please check documentation"), "to parameter is not a valid address. please check documentation"],
    401: [() => ({ status: 401, contentType: "text/plain", text: "Forbidden" }), "Forbidden"],
    429: [() => mailgunError(429, "Too many requests"), "Too many requests"],
  },
  postmark: {
    500: [() => postmarkError(500, 0, "Internal server error."), "ErrorCode 0: Internal server error."],
    401: [() => postmarkError(401, 10, "The Server Token you provided in the X-Postmark-Server-Token request header was invalid."), "ErrorCode 10: The Server Token you provided in the X-Postmark-Server-Token request header was invalid."],
    422: [() => postmarkError(422, 406, "You tried to send to a recipient that has been marked as inactive."), "ErrorCode 406: You tried to send to a recipient that has been marked as inactive."],
    429: [() => postmarkError(429, 0, "Rate limit exceeded."), "ErrorCode 0: Rate limit exceeded."],
  },
  ses: {
    500: [() => sesError(500, "InternalFailure", "Internal Failure"), "Internal Failure"],
    400: [() => sesError(400, "MessageRejected", "Email address is not verified."), "Email address is not verified."],
    403: [() => sesError(403, "AccessDeniedException", "User is not authorized to perform ses:SendEmail"), "User is not authorized to perform ses:SendEmail"],
    429: [() => sesError(429, "TooManyRequestsException", "Maximum sending rate exceeded."), "Maximum sending rate exceeded."],
  },
  vonage: {
    500: [() => vonageError(500, "Internal Error", "The request failed due to an internal error.", "internal-error"), "Internal Error: The request failed due to an internal error."],
    401: [() => vonageError(401, "Unauthorized", "You did not provide correct credentials."), "Unauthorized: You did not provide correct credentials."],
    422: [() => vonageError(422, "Invalid params", "The value of one or more parameters is invalid.", "invalid-params"), "Invalid params: The value of one or more parameters is invalid."],
    429: [() => vonageError(429, "Rate Limit Hit", "Please wait, then retry your request", "rate-limit"), "Rate Limit Hit: Please wait, then retry your request"],
  },
  plivo: {
    500: [() => plivoError(500, "server error"), "server error"],
    400: [() => plivoError(400, "invalid_parameter"), "invalid_parameter"],
    401: [() => plivoError(401, "authentication_failed"), "authentication_failed"],
    429: [() => plivoError(429, "rate_limit_exceeded"), "rate_limit_exceeded"],
  },
  sns: {
    500: [() => snsError(500, "Receiver", "InternalError", "Internal service error"), "InternalError: Internal service error"],
    400: [() => snsError(400, "Sender", "InvalidParameter", "Invalid parameter: PhoneNumber Reason: +1234567890 is not valid to publish"), "InvalidParameter: Invalid parameter: PhoneNumber Reason: +1234567890 is not valid to publish"],
    403: [() => snsError(403, "Sender", "AuthorizationError", "User is not authorized to perform: SNS:Publish"), "AuthorizationError: User is not authorized to perform: SNS:Publish"],
    429: [() => snsError(429, "Sender", "Throttling", "Rate exceeded"), "Throttling: Rate exceeded"],
  },
};

const EMAIL_RE = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
// RFC 5322 style "Name <addr@host>" or a bare address, as the providers' `from` fields accept.
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
// SendGrid v3 Mail Send top-level fields.
const SENDGRID_FIELDS = new Set([
  "personalizations", "from", "reply_to", "reply_to_list", "subject", "content", "attachments", "template_id",
  "headers", "categories", "custom_args", "send_at", "batch_id", "asm", "ip_pool_name", "mail_settings",
  "tracking_settings",
]);
// Mailgun Messages fields (plus the o:, h:, v: and t: option families).
const MAILGUN_FIELDS = new Set(["from", "to", "cc", "bcc", "subject", "text", "html", "amp-html", "template", "recipient-variables"]);
// Postmark Email fields.
const POSTMARK_FIELDS = new Set([
  "From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody", "TextBody", "ReplyTo", "Headers", "TrackOpens",
  "TrackLinks", "Metadata", "Attachments", "MessageStream",
]);
// SES v2 SendEmail fields.
const SES_FIELDS = new Set([
  "FromEmailAddress", "FromEmailAddressIdentityArn", "Destination", "ReplyToAddresses",
  "FeedbackForwardingEmailAddress", "FeedbackForwardingEmailAddressIdentityArn", "Content", "EmailTags",
  "ConfigurationSetName", "EndpointId", "TenantName", "ListManagementOptions",
]);
// Vonage Messages API SMS fields.
const VONAGE_FIELDS = new Set(["message_type", "text", "to", "from", "channel", "client_ref", "webhook_url", "webhook_version", "ttl", "sms"]);
// Plivo Message fields.
const PLIVO_FIELDS = new Set(["src", "dst", "text", "type", "url", "method", "log", "trackable", "powerpack_uuid", "media_urls", "media_ids", "message_expiry", "dlt_entity_id", "dlt_template_id", "dlt_template_category"]);
// SNS Publish parameters (MessageAttributes.entry.N.* aside).
const SNS_FIELDS = new Set(["Action", "Version", "PhoneNumber", "Message", "Subject", "MessageStructure", "TopicArn", "TargetArn", "MessageDeduplicationId", "MessageGroupId"]);

function extractCode(text) {
  const m = /(?<!\d)(\d{6})(?!\d)/.exec(text ?? "");
  return m ? m[1] : null;
}

function stripHtml(html) {
  return String(html ?? "").replace(/<[^>]*>/g, " ");
}

function plusE164(n) {
  const s = String(n ?? "");
  return s.startsWith("+") ? s : `+${s}`;
}

function asArray(x) {
  return Array.isArray(x) ? x : [x];
}

// Who a recorded request (valid or not) was addressed to, as far as it can be read.
function requestRecipients(r) {
  try {
    switch (r.provider) {
      case "twilio":
        return [new URLSearchParams(r.rawBody).get("To")].filter(Boolean);
      case "mailgun":
        return (new URLSearchParams(r.rawBody).get("to") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
      case "sns":
        return [new URLSearchParams(r.rawBody).get("PhoneNumber")].filter(Boolean);
    }
    const body = JSON.parse(r.rawBody);
    switch (r.provider) {
      case "resend":
        return asArray(body?.to).filter((x) => typeof x === "string");
      case "sendgrid":
        return (body?.personalizations ?? []).flatMap((p) => (p?.to ?? []).map((t) => t?.email)).filter((x) => typeof x === "string");
      case "postmark":
        return String(body?.To ?? "").split(",").map((s) => s.trim()).filter(Boolean);
      case "ses":
        return (body?.Destination?.ToAddresses ?? []).filter((x) => typeof x === "string");
      case "vonage":
        return typeof body?.to === "string" ? [plusE164(body.to)] : [];
      case "plivo":
        return typeof body?.dst === "string" ? body.dst.split("<").map(plusE164) : [];
      default:
        return [];
    }
  } catch {
    return [];
  }
}

function mediaType(header) {
  return String(header ?? "").split(";")[0].trim().toLowerCase();
}

function basicCredentials(header) {
  if (!String(header ?? "").startsWith("Basic ")) return null;
  const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
  const i = decoded.indexOf(":");
  return i < 0 ? null : { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

function parseJsonObject(raw) {
  try {
    const body = JSON.parse(raw.toString("utf8"));
    return body !== null && typeof body === "object" && !Array.isArray(body) ? body : null;
  } catch {
    return null;
  }
}

/** Form fields in order; a repeated field is a problem. */
function formFields(raw, problems) {
  const fields = {};
  for (const [k, v] of new URLSearchParams(raw.toString("utf8"))) {
    if (k in fields) problems.push(`field ${k} given twice`);
    fields[k] = v;
  }
  return fields;
}

const sha256hex = (data) => createHash("sha256").update(data).digest("hex");
const hmac = (key, data) => createHmac("sha256", key).update(data, "utf8").digest();

/**
 * Checks an AWS Signature Version 4 `Authorization` header the way AWS does: recomputes the signature from the
 * request as received (method, path, query, the signed headers, the body's SHA-256) with the secret key.
 * Returns the problems found (empty when the signature is valid).
 */
export function sigV4Problems(req, raw, { accessKeyId, secretAccessKey, region, service, now = Date.now() }) {
  const auth = req.headers.authorization ?? "";
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return [`Authorization ${JSON.stringify(auth)} is not an AWS4-HMAC-SHA256 signature`];
  const [, keyId, date, scopeRegion, scopeService, signedHeaders, signature] = m;
  const problems = [];
  if (keyId !== accessKeyId) problems.push(`access key ${keyId}, expected AWS_ACCESS_KEY_ID`);
  if (scopeRegion !== region) problems.push(`region ${scopeRegion} in the credential scope, expected ${region}`);
  if (scopeService !== service) problems.push(`service ${scopeService} in the credential scope, expected ${service}`);
  const amzDate = req.headers["x-amz-date"] ?? "";
  const dm = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!dm) return [...problems, `X-Amz-Date ${JSON.stringify(amzDate)} is not YYYYMMDDTHHMMSSZ`];
  if (amzDate.slice(0, 8) !== date) problems.push(`credential date ${date} differs from X-Amz-Date ${amzDate}`);
  const signedAt = Date.UTC(+dm[1], +dm[2] - 1, +dm[3], +dm[4], +dm[5], +dm[6]);
  // AWS refuses a signature more than 15 minutes away from its clock ("Signature expired").
  if (Math.abs(now - signedAt) > 15 * 60 * 1000) problems.push(`X-Amz-Date ${amzDate} is more than 15 minutes from now`);
  const names = signedHeaders.split(";");
  if ([...names].sort().join(";") !== signedHeaders) problems.push("SignedHeaders are not sorted");
  for (const required of ["host", "x-amz-date"]) if (!names.includes(required)) problems.push(`${required} is not signed`);
  const url = new URL(req.url, "http://mock");
  const query = [...url.searchParams]
    .map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const canonicalHeaders = names.map((h) => `${h}:${String(req.headers[h] ?? "").trim().replace(/\s+/g, " ")}\n`).join("");
  const canonicalRequest = [req.method, url.pathname, query, canonicalHeaders, signedHeaders, sha256hex(raw)].join("\n");
  const scope = `${date}/${scopeRegion}/${scopeService}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256hex(canonicalRequest)].join("\n");
  let key = hmac(`AWS4${secretAccessKey}`, date);
  for (const part of [scopeRegion, scopeService, "aws4_request"]) key = hmac(key, part);
  const expected = hmac(key, stringToSign).toString("hex");
  if (expected !== signature) problems.push("the signature does not match the request (AWS: SignatureDoesNotMatch)");
  return problems;
}

export async function startMockProviders(options = {}) {
  const creds = { ...DEFAULT_CREDENTIALS, ...(options.credentials ?? {}) };
  // Resend refuses requests without a User-Agent (403, error 1010), and workerd's fetch sends none by default.
  const requireUserAgent = true;
  const requests = []; // every request: { provider, method, path, headers, rawBody, status, at }
  const messages = []; // accepted deliveries
  const validationErrors = []; // { provider, path, problems: [...] }
  const failures = Object.fromEntries(PROVIDERS.map((p) => [p, null]));
  const waiters = new Set();

  function notify() {
    for (const w of [...waiters]) w.check();
  }

  function recordProblems(provider, req, problems) {
    validationErrors.push({ provider, method: req.method, path: req.url, problems, at: Date.now() });
  }

  /** Records an accepted message to each recipient. */
  function deliver(req, fields) {
    const text = fields.text || stripHtml(fields.html);
    for (const to of fields.to) {
      messages.push({
        channel: EMAIL_PROVIDERS.includes(fields.provider) ? "email" : "sms",
        subject: null,
        html: null,
        ...fields,
        to,
        body: text,
        text: fields.text ?? null,
        code: extractCode(text) ?? extractCode(stripHtml(fields.html)),
        htmlCode: fields.html ? extractCode(stripHtml(fields.html)) : null,
        userAgent: req.headers["user-agent"],
        at: Date.now(),
      });
    }
  }

  /** Shared checks of an email's sender, recipients and bodies. */
  function emailProblems(problems, { from, to, subject, text, html }) {
    if (typeof from !== "string" || !FROM_RE.test(from)) problems.push(`from ${JSON.stringify(from)} is not an address`);
    else if (from !== creds.EMAIL_FROM) problems.push(`from ${JSON.stringify(from)}, expected EMAIL_FROM ${JSON.stringify(creds.EMAIL_FROM)}`);
    if (!Array.isArray(to) || to.length === 0) problems.push(`no recipient in ${JSON.stringify(to)}`);
    else if (!to.every((a) => typeof a === "string" && EMAIL_RE.test(a))) problems.push(`recipients ${JSON.stringify(to)} hold a non-address`);
    if (typeof subject !== "string" || subject.trim() === "") problems.push("subject missing or empty");
    if (!(typeof text === "string" && text) && !(typeof html === "string" && html)) problems.push("neither a text nor an HTML body");
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


  function handleSendgrid(req, raw) {
    const reject = (status, message, field) => {
      recordProblems("sendgrid", req, [message]);
      return sendgridError(status, message, field);
    };
    if (req.method !== "POST") return reject(405, `method ${req.method}, expected POST`);
    if (req.headers.authorization !== `Bearer ${creds.SENDGRID_API_KEY}`) {
      return reject(401, `Authorization ${JSON.stringify(req.headers.authorization ?? null)}, expected "Bearer <SENDGRID_API_KEY>"`);
    }
    if (mediaType(req.headers["content-type"]) !== "application/json") {
      return reject(415, `Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/json`);
    }
    const body = parseJsonObject(raw);
    if (!body) return reject(400, "body is not a JSON object");
    const problems = [];
    const ps = body.personalizations;
    if (!Array.isArray(ps) || ps.length === 0 || ps.length > 1000) problems.push("personalizations must hold 1-1000 objects");
    const to = Array.isArray(ps) ? ps.flatMap((p) => (Array.isArray(p?.to) ? p.to : [])) : [];
    if (Array.isArray(ps) && !ps.every((p) => Array.isArray(p?.to) && p.to.length > 0 && p.to.every((t) => t && typeof t.email === "string"))) {
      problems.push("each personalization needs a non-empty to: [{ email }]");
    }
    const from = body.from;
    if (!from || typeof from !== "object" || typeof from.email !== "string") problems.push("from must be { email, name? }");
    const fromText = from && typeof from === "object" ? (from.name ? `${from.name} <${from.email}>` : from.email) : from;
    const content = body.content;
    if (!Array.isArray(content) || content.length === 0) problems.push("content must be a non-empty array");
    else {
      if (!content.every((c) => c && typeof c.type === "string" && typeof c.value === "string" && c.value.length > 0)) {
        problems.push("each content part needs a type and a non-empty value");
      }
      const plainAt = content.findIndex((c) => c?.type === "text/plain");
      if (plainAt > 0) problems.push("text/plain must be the first content part");
    }
    const part = (type) => (Array.isArray(content) ? content.find((c) => c?.type === type)?.value : undefined);
    emailProblems(problems, { from: fromText, to: to.map((t) => t?.email), subject: body.subject ?? ps?.[0]?.subject, text: part("text/plain"), html: part("text/html") });
    const unknown = Object.keys(body).filter((k) => !SENDGRID_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("sendgrid", req, problems);
      return sendgridError(400, problems[0]);
    }
    if (failures.sendgrid) return failures.sendgrid();
    deliver(req, { provider: "sendgrid", to: to.map((t) => t.email), from: fromText, subject: body.subject, text: part("text/plain"), html: part("text/html") });
    return { status: 202, text: "", contentType: "text/plain", headers: { "X-Message-Id": randomBytes(11).toString("base64url") } };
  }

  function handleMailgun(req, raw, domain) {
    const reject = (result, problem) => {
      recordProblems("mailgun", req, [problem]);
      return result;
    };
    if (req.method !== "POST") return reject(mailgunError(405, "Method not allowed"), `method ${req.method}, expected POST`);
    const basic = basicCredentials(req.headers.authorization);
    if (!basic || basic.user !== "api" || basic.password !== creds.MAILGUN_API_KEY) {
      return reject({ status: 401, contentType: "text/plain", text: "Forbidden" }, 'Authorization is not Basic base64("api:" + MAILGUN_API_KEY)');
    }
    if (domain !== creds.MAILGUN_DOMAIN) return reject(mailgunError(404, `Domain not found: ${domain}`), `domain ${domain} in the path, expected MAILGUN_DOMAIN`);
    if (mediaType(req.headers["content-type"]) !== "application/x-www-form-urlencoded") {
      return reject(mailgunError(400, "unsupported content type"), `Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/x-www-form-urlencoded (or multipart/form-data)`);
    }
    const problems = [];
    const f = formFields(raw, problems);
    const to = (f.to ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    emailProblems(problems, { from: f.from, to, subject: f.subject, text: f.text, html: f.html });
    const unknown = Object.keys(f).filter((k) => !MAILGUN_FIELDS.has(k) && !/^(o|h|v|t):/.test(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("mailgun", req, problems);
      return mailgunError(400, problems[0]);
    }
    if (failures.mailgun) return failures.mailgun();
    deliver(req, { provider: "mailgun", to, from: f.from, subject: f.subject, text: f.text, html: f.html });
    return { status: 200, body: { id: `<${randomUUID()}@${domain}>`, message: "Queued. Thank you." } };
  }

  function handlePostmark(req, raw) {
    const reject = (result, problem) => {
      recordProblems("postmark", req, [problem]);
      return result;
    };
    if (req.method !== "POST") return reject(postmarkError(405, 0, "Method not allowed"), `method ${req.method}, expected POST`);
    const token = req.headers["x-postmark-server-token"];
    if (!token) return reject(postmarkError(401, 10, "No Account or Server API tokens were supplied in the HTTP headers."), "missing X-Postmark-Server-Token header");
    if (token !== creds.POSTMARK_SERVER_TOKEN) return reject(postmarkError(401, 10, "The Server Token you provided in the X-Postmark-Server-Token request header was invalid."), "X-Postmark-Server-Token is not POSTMARK_SERVER_TOKEN");
    if (mediaType(req.headers.accept) !== "application/json") return reject(postmarkError(406, 0, "Accept header must be application/json"), `Accept ${JSON.stringify(req.headers.accept)}, expected application/json`);
    if (mediaType(req.headers["content-type"]) !== "application/json") return reject(postmarkError(415, 0, "Content-Type must be application/json"), `Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/json`);
    const body = parseJsonObject(raw);
    if (!body) return reject(postmarkError(422, 402, "Received invalid JSON input."), "body is not a JSON object");
    const problems = [];
    const to = typeof body.To === "string" ? body.To.split(",").map((s) => s.trim()).filter(Boolean) : body.To;
    emailProblems(problems, { from: body.From, to, subject: body.Subject, text: body.TextBody, html: body.HtmlBody });
    if (body.MessageStream !== undefined && typeof body.MessageStream !== "string") problems.push("MessageStream is not a string");
    const unknown = Object.keys(body).filter((k) => !POSTMARK_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("postmark", req, problems);
      return postmarkError(422, 300, `Invalid email request: ${problems[0]}`);
    }
    if (failures.postmark) return failures.postmark();
    deliver(req, { provider: "postmark", to, from: body.From, subject: body.Subject, text: body.TextBody, html: body.HtmlBody, stream: body.MessageStream ?? "outbound" });
    return { status: 200, body: { To: body.To, SubmittedAt: new Date().toISOString(), MessageID: randomUUID(), ErrorCode: 0, Message: "OK" } };
  }

  function awsProblems(req, raw, service) {
    return sigV4Problems(req, raw, {
      accessKeyId: creds.AWS_ACCESS_KEY_ID,
      secretAccessKey: creds.AWS_SECRET_ACCESS_KEY,
      region: creds.AWS_REGION,
      service,
    });
  }

  function handleSes(req, raw) {
    const reject = (result, problems) => {
      recordProblems("ses", req, problems);
      return result;
    };
    if (req.method !== "POST") return reject(sesError(405, "MethodNotAllowed", "Method not allowed"), [`method ${req.method}, expected POST`]);
    const signature = awsProblems(req, raw, "ses");
    if (signature.length) return reject(sesError(403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."), signature);
    if (mediaType(req.headers["content-type"]) !== "application/json") return reject(sesError(400, "BadRequestException", "Content-Type must be application/json"), [`Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/json`]);
    const body = parseJsonObject(raw);
    if (!body) return reject(sesError(400, "BadRequestException", "Invalid JSON"), ["body is not a JSON object"]);
    const problems = [];
    const simple = body.Content?.Simple;
    if (!simple || typeof simple !== "object") problems.push("Content.Simple missing (a raw or template message was not expected)");
    const data = (part) => (part && typeof part === "object" ? part.Data : undefined);
    for (const part of [simple?.Subject, simple?.Body?.Text, simple?.Body?.Html]) {
      if (part !== undefined && (typeof part?.Data !== "string" || (part.Charset !== undefined && part.Charset !== "UTF-8"))) {
        problems.push(`content part ${JSON.stringify(part)} needs Data (and Charset UTF-8 if given)`);
      }
    }
    const to = body.Destination?.ToAddresses;
    emailProblems(problems, { from: body.FromEmailAddress, to, subject: data(simple?.Subject), text: data(simple?.Body?.Text), html: data(simple?.Body?.Html) });
    const unknown = Object.keys(body).filter((k) => !SES_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) return reject(sesError(400, "BadRequestException", problems[0]), problems);
    if (failures.ses) return failures.ses();
    deliver(req, { provider: "ses", to, from: body.FromEmailAddress, subject: data(simple.Subject), text: data(simple.Body?.Text), html: data(simple.Body?.Html) });
    return { status: 200, body: { MessageId: `0102${randomBytes(16).toString("hex")}-000000` } };
  }

  function handleVonage(req, raw) {
    const reject = (result, problem) => {
      recordProblems("vonage", req, [problem]);
      return result;
    };
    if (req.method !== "POST") return reject(vonageError(405, "Method Not Allowed", "Use POST", "method-not-allowed"), `method ${req.method}, expected POST`);
    const basic = basicCredentials(req.headers.authorization);
    if (!basic || basic.user !== creds.VONAGE_API_KEY || basic.password !== creds.VONAGE_API_SECRET) {
      return reject(vonageError(401, "Unauthorized", "You did not provide correct credentials."), "Authorization is not Basic base64(VONAGE_API_KEY:VONAGE_API_SECRET)");
    }
    if (mediaType(req.headers["content-type"]) !== "application/json") return reject(vonageError(415, "Unsupported Media Type", "Content-Type must be application/json", "unsupported-media-type"), `Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/json`);
    const body = parseJsonObject(raw);
    if (!body) return reject(vonageError(400, "Bad Request", "Invalid JSON", "bad-request"), "body is not a JSON object");
    const problems = [];
    if (body.message_type !== "text") problems.push(`message_type ${JSON.stringify(body.message_type)}, expected "text"`);
    if (body.channel !== "sms") problems.push(`channel ${JSON.stringify(body.channel)}, expected "sms"`);
    if (typeof body.to !== "string" || !/^[1-9]\d{6,14}$/.test(body.to)) problems.push(`to ${JSON.stringify(body.to)} is not E.164 without "+" or "00"`);
    const expectedFrom = creds.VONAGE_FROM.replace(/^\+/, "");
    if (body.from !== expectedFrom) problems.push(`from ${JSON.stringify(body.from)}, expected VONAGE_FROM without "+" (${expectedFrom})`);
    if (typeof body.text !== "string" || body.text.length === 0 || body.text.length > 1000) problems.push("text must hold 1-1000 characters");
    const unknown = Object.keys(body).filter((k) => !VONAGE_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("vonage", req, problems);
      return vonageError(422, "Invalid params", problems[0], "invalid-params");
    }
    if (failures.vonage) return failures.vonage();
    deliver(req, { provider: "vonage", to: [plusE164(body.to)], from: body.from, text: body.text });
    return { status: 202, body: { message_uuid: randomUUID() } };
  }

  function handlePlivo(req, raw, authId) {
    const reject = (result, problem) => {
      recordProblems("plivo", req, [problem]);
      return result;
    };
    if (req.method !== "POST") return reject(plivoError(405, "method not allowed"), `method ${req.method}, expected POST`);
    const basic = basicCredentials(req.headers.authorization);
    if (!basic || basic.user !== creds.PLIVO_AUTH_ID || basic.password !== creds.PLIVO_AUTH_TOKEN) {
      return reject(plivoError(401, "authentication_failed"), "Authorization is not Basic base64(PLIVO_AUTH_ID:PLIVO_AUTH_TOKEN)");
    }
    if (authId !== creds.PLIVO_AUTH_ID) return reject(plivoError(404, "not found"), `auth ID ${authId} in the path, expected PLIVO_AUTH_ID`);
    if (mediaType(req.headers["content-type"]) !== "application/json") return reject(plivoError(400, "invalid_parameter"), `Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/json`);
    const body = parseJsonObject(raw);
    if (!body) return reject(plivoError(400, "invalid_parameter"), "body is not a JSON object");
    const problems = [];
    if (body.src !== creds.PLIVO_FROM_NUMBER) problems.push(`src ${JSON.stringify(body.src)}, expected PLIVO_FROM_NUMBER`);
    if (typeof body.dst !== "string" || !/^\+?[1-9]\d{6,14}$/.test(body.dst)) problems.push(`dst ${JSON.stringify(body.dst)} is not one E.164 number`);
    if (typeof body.text !== "string" || body.text.length === 0) problems.push("text missing or empty");
    const unknown = Object.keys(body).filter((k) => !PLIVO_FIELDS.has(k));
    if (unknown.length) problems.push(`unknown fields: ${unknown.join(", ")}`);
    if (problems.length) {
      recordProblems("plivo", req, problems);
      return plivoError(400, problems[0]);
    }
    if (failures.plivo) return failures.plivo();
    deliver(req, { provider: "plivo", to: [plusE164(body.dst)], from: body.src, text: body.text });
    return { status: 202, body: { api_id: randomUUID(), message: "message(s) queued", message_uuid: [randomUUID()] } };
  }

  function handleSns(req, raw) {
    const reject = (result, problems) => {
      recordProblems("sns", req, problems);
      return result;
    };
    if (req.method !== "POST") return reject(snsError(405, "Sender", "MethodNotAllowed", "Method not allowed"), [`method ${req.method}, expected POST`]);
    const signature = awsProblems(req, raw, "sns");
    if (signature.length) return reject(snsError(403, "Sender", "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."), signature);
    if (mediaType(req.headers["content-type"]) !== "application/x-www-form-urlencoded") return reject(snsError(400, "Sender", "MalformedQueryString", "Content-Type"), [`Content-Type ${JSON.stringify(req.headers["content-type"])}, expected application/x-www-form-urlencoded`]);
    const problems = [];
    const f = formFields(raw, problems);
    if (f.Action !== "Publish") problems.push(`Action ${JSON.stringify(f.Action)}, expected Publish`);
    if (f.Version !== "2010-03-31") problems.push(`Version ${JSON.stringify(f.Version)}, expected 2010-03-31`);
    if (!f.PhoneNumber || !E164_RE.test(f.PhoneNumber)) problems.push(`PhoneNumber ${JSON.stringify(f.PhoneNumber)} is not E.164`);
    if (f.TopicArn || f.TargetArn) problems.push("TopicArn/TargetArn given with PhoneNumber");
    if (!f.Message) problems.push("Message missing or empty");
    const attributes = Object.keys(f).filter((k) => k.startsWith("MessageAttributes.entry."));
    for (const k of attributes) if (!/^MessageAttributes\.entry\.\d+\.(Name|Value\.DataType|Value\.StringValue)$/.test(k)) problems.push(`malformed attribute ${k}`);
    const smsType = attributes.find((k) => k.endsWith(".Name") && f[k] === "AWS.SNS.SMS.SMSType");
    if (smsType && !["Transactional", "Promotional"].includes(f[smsType.replace(".Name", ".Value.StringValue")])) problems.push("AWS.SNS.SMS.SMSType must be Transactional or Promotional");
    const unknown = Object.keys(f).filter((k) => !SNS_FIELDS.has(k) && !k.startsWith("MessageAttributes.entry."));
    if (unknown.length) problems.push(`unknown parameters: ${unknown.join(", ")}`);
    if (problems.length) return reject(snsError(400, "Sender", "InvalidParameter", problems[0]), problems);
    if (failures.sns) return failures.sns();
    deliver(req, { provider: "sns", to: [f.PhoneNumber], text: f.Message, smsType: smsType ? f[smsType.replace(".Name", ".Value.StringValue")] : null });
    const id = randomUUID();
    return {
      status: 200,
      contentType: "text/xml",
      text:
        `<PublishResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>${id}</MessageId>` +
        `</PublishResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></PublishResponse>`,
    };
  }

  function route(req, raw) {
    const url = new URL(req.url, "http://127.0.0.1");
    const p = url.pathname;
    let m;
    if (p === "/emails" || p === "/emails/") return { provider: "resend", result: handleResend(req, raw, url) };
    if ((m = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(p))) {
      return { provider: "twilio", result: handleTwilio(req, raw, url, decodeURIComponent(m[1])) };
    }
    if (p === "/v3/mail/send") return { provider: "sendgrid", result: handleSendgrid(req, raw) };
    if ((m = /^\/v3\/([^/]+)\/messages$/.exec(p))) return { provider: "mailgun", result: handleMailgun(req, raw, decodeURIComponent(m[1])) };
    if (p === "/email") return { provider: "postmark", result: handlePostmark(req, raw) };
    if (p === "/v2/email/outbound-emails") return { provider: "ses", result: handleSes(req, raw) };
    if (p === "/v1/messages") return { provider: "vonage", result: handleVonage(req, raw) };
    if ((m = /^\/v1\/Account\/([^/]+)\/Message\/$/.exec(p))) return { provider: "plivo", result: handlePlivo(req, raw, decodeURIComponent(m[1])) };
    if (p === "/") return { provider: "sns", result: handleSns(req, raw) };
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
      const payload = result.text ?? JSON.stringify(result.body);
      res.writeHead(result.status, {
        "Content-Type": result.contentType ?? "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(payload),
        // No connection reuse: a kept-alive connection that the server closes for idleness just as workerd sends the
        // next request on it fails that request with a network error (a real failover, but not the one under test).
        Connection: "close",
        ...(result.headers ?? {}),
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

    /** Vars that point every provider at this mock (`<PROVIDER>_API_BASE`), with credentials the mock accepts. */
    workerVars() {
      const bases = Object.fromEntries(PROVIDERS.map((p) => [`${p.toUpperCase()}_API_BASE`, url]));
      return { ...creds, ...bases };
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

    /** The provider requests (valid or not) addressed to `to` since `since`. */
    requestsTo(to, since = 0) {
      return requests.filter((r) => r.at >= since && requestRecipients(r).some((x) => sameRecipient(x, to)));
    },

    /**
     * Makes `provider` answer valid requests with an error like the real API's.
     * spec: null (normal again), a status number (the provider's documented error for it), or { status, body }.
     */
    fail(provider, spec) {
      if (!(provider in failures)) throw new Error(`unknown provider ${provider}`);
      if (spec === null || spec === undefined || spec === false) {
        failures[provider] = null;
        return;
      }
      const status = typeof spec === "number" ? spec : spec.status;
      const custom = typeof spec === "object" && spec.body !== undefined;
      const make = custom ? () => ({ status, body: spec.body }) : DEFAULT_FAILURES[provider][status]?.[0];
      failures[provider] = make ?? (() => ({ status, body: { message: `mock failure ${status}` } }));
    },

    /** The reason the worker should record for `fail(provider, status)`. */
    failureReason(provider, status) {
      const known = DEFAULT_FAILURES[provider]?.[status];
      if (!known) throw new Error(`no documented ${status} failure for ${provider}`);
      return known[1];
    },

    reset() {
      requests.length = 0;
      messages.length = 0;
      validationErrors.length = 0;
      for (const p of PROVIDERS) failures[p] = null;
    },

    close() {
      for (const w of waiters) clearTimeout(w.timer);
      waiters.clear();
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
