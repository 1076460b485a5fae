// sealrun console: progressive enhancement only. Every page works without
// this script; it shows times in the viewer's time zone and follows a live
// run's redacted output (server-sent events) without reloading.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const d = new Date(el.dateTime);
    if (isNaN(d)) continue;
    el.title = el.dateTime;
    el.textContent = d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
  }
}

function decodeBase64(b64) {
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function followLog(log) {
  const url = log.dataset.events;
  if (!url || !window.EventSource) return;
  // One decoder per stream: a character split between chunks stays whole.
  const decoders = {};
  const live = document.getElementById("live");
  const source = new EventSource(url);
  source.addEventListener("chunk", (ev) => {
    const c = JSON.parse(ev.data);
    const decoder = decoders[c.stream] || (decoders[c.stream] = new TextDecoder("utf-8"));
    const text = decoder.decode(decodeBase64(c.b64), { stream: true });
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const span = document.createElement("span");
    span.className = c.stream;
    span.textContent = text; // text, never markup
    log.appendChild(span);
    if (atBottom) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("end", (ev) => {
    source.close();
    const end = JSON.parse(ev.data);
    const status = document.querySelector("#run-status .badge");
    if (status) {
      status.textContent = end.status;
      status.dataset.status = end.status;
      status.className = "badge " + (end.status === "succeeded" ? "ok" : "bad");
    }
    const exit = document.getElementById("exit-code");
    if (exit) exit.textContent = end.exit_code === null ? "–" : String(end.exit_code);
    if (live) live.textContent = "finished (" + end.status + ")";
    log.dataset.ended = end.status;
  });
  source.onerror = () => {
    // The server ended the stream without an end (signed out, restarted):
    // the browser reconnects by itself; a refusal closes it for good.
    if (source.readyState === EventSource.CLOSED && live) live.textContent = "not following (reload to retry)";
  };
}

function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return decodeBase64(b64 + "===".slice((b64.length + 3) % 4));
}

function toB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// Passkeys (WebAuthn): the form is posted once the authenticator answered;
// the server (and, for approvals, the agent) checks what it signed.
function withPasskey(form, status, ask) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!window.PublicKeyCredential) {
      status.textContent = "This browser has no passkey support.";
      return;
    }
    try {
      status.textContent = "Waiting for your authenticator…";
      await ask();
      form.submit();
    } catch (e) {
      status.textContent = "The authenticator did not sign: " + e.message;
    }
  });
}

function passkeyForms() {
  const register = document.getElementById("register-passkey");
  if (register) {
    const status = document.getElementById("passkey-status");
    withPasskey(register, status, async () => {
      const o = JSON.parse(register.dataset.options);
      const credential = await navigator.credentials.create({ publicKey: {
        challenge: fromB64url(o.challenge),
        rp: o.rp,
        user: { id: fromB64url(o.user.id), name: o.user.name, displayName: o.user.displayName },
        pubKeyCredParams: [{ type: "public-key", alg: o.alg }],
        authenticatorSelection: { userVerification: "required", residentKey: "preferred" },
        excludeCredentials: o.exclude.map((id) => ({ type: "public-key", id: fromB64url(id) })),
        attestation: "none",
      } });
      register.elements.credential_id.value = toB64url(credential.rawId);
      register.elements.public_key.value = toB64url(credential.response.getPublicKey());
    });
  }
  const approve = document.getElementById("approve-passkey");
  if (approve) {
    const status = document.getElementById("approve-status");
    withPasskey(approve, status, async () => {
      const o = JSON.parse(approve.dataset.request);
      const assertion = await navigator.credentials.get({ publicKey: {
        challenge: fromB64url(o.challenge),
        rpId: o.rpId,
        allowCredentials: o.allow.map((id) => ({ type: "public-key", id: fromB64url(id) })),
        userVerification: "required",
      } });
      const f = approve.elements;
      f.credential_id.value = toB64url(assertion.rawId);
      f.authenticator_data.value = toB64url(assertion.response.authenticatorData);
      f.client_data_json.value = toB64url(assertion.response.clientDataJSON);
      f.signature.value = toB64url(assertion.response.signature);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const log = document.getElementById("log");
  if (log) followLog(log);
  passkeyForms();
});
