"use strict";

// The demo public client: PKCE (RFC 7636, S256), state and nonce made in the
// browser and kept in sessionStorage for the callback page.
function randomString(bytes) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...data)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function challengeFor(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return btoa(String.fromCharCode(...new Uint8Array(digest))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function start() {
  const clientId = Latchkey.param("client_id") || sessionStorage.getItem("demo_client_id");
  if (!clientId) {
    Latchkey.showError("Open this page with ?client_id=… (scripts/run prints the link).");
    return;
  }
  const verifier = randomString(32);
  const state = randomString(16);
  const nonce = randomString(16);
  const redirectUri = window.location.origin + "/demo/callback";
  sessionStorage.setItem("demo_client_id", clientId);
  sessionStorage.setItem("demo_verifier", verifier);
  sessionStorage.setItem("demo_state", state);
  sessionStorage.setItem("demo_nonce", nonce);
  const params = new URLSearchParams({
    response_type: "code", client_id: clientId, redirect_uri: redirectUri, scope: "openid profile email offline_access",
    state, nonce, code_challenge: await challengeFor(verifier), code_challenge_method: "S256",
  });
  window.location.assign("/oauth2/authorize?" + params.toString());
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("start").addEventListener("click", start);
  if (Latchkey.param("client_id") && Latchkey.param("auto") !== "0") start();
});
