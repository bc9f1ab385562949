"use strict";

function decodeSegment(segment) {
  const base64 = segment.replace(/-/g, "+").replace(/_/g, "/");
  const text = atob(base64 + "===".slice((base64.length + 3) % 4));
  return JSON.parse(decodeURIComponent(Array.from(text, (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join("")));
}

document.addEventListener("DOMContentLoaded", async () => {
  const main = document.getElementById("main");
  const title = document.getElementById("title");
  const params = new URLSearchParams(window.location.search);
  const done = (heading, message) => {
    title.textContent = heading;
    if (message) Latchkey.showError(message);
    main.setAttribute("aria-busy", "false");
  };
  if (params.get("error")) return done("Sign-in did not complete", params.get("error") + ": " + (params.get("error_description") || ""));
  const code = params.get("code");
  const state = params.get("state");
  if (!code || state !== sessionStorage.getItem("demo_state")) return done("Sign-in did not complete", "The state does not match this browser's request.");
  if (params.get("iss") !== window.location.origin) return done("Sign-in did not complete", "The response came from an unexpected issuer.");
  const body = new URLSearchParams({
    grant_type: "authorization_code", code, client_id: sessionStorage.getItem("demo_client_id"),
    redirect_uri: window.location.origin + "/demo/callback", code_verifier: sessionStorage.getItem("demo_verifier"),
  });
  const response = await fetch("/oauth2/token", { method: "POST", body, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  const tokens = await response.json();
  sessionStorage.removeItem("demo_verifier");
  sessionStorage.removeItem("demo_state");
  if (!response.ok) return done("Sign-in did not complete", tokens.error + ": " + (tokens.error_description || ""));
  const claims = decodeSegment(tokens.id_token.split(".")[1]);
  if (claims.nonce !== sessionStorage.getItem("demo_nonce")) return done("Sign-in did not complete", "The ID token's nonce does not match.");
  done("Signed in as " + (claims.name || claims.preferred_username || claims.sub));
  document.getElementById("lead").textContent =
    "The demo app exchanged the code (with its PKCE verifier) for tokens. These are the ID token's claims; the access token expires in " +
    tokens.expires_in + " s" + (tokens.refresh_token ? " and a refresh token was issued." : ".");
  const table = document.getElementById("claims");
  const tbody = table.querySelector("tbody");
  for (const [name, value] of Object.entries(claims)) {
    const shown = (name === "exp" || name === "iat" || name === "auth_time") ? value + " (" + new Date(value * 1000).toLocaleString() + ")" : JSON.stringify(value);
    const row = Latchkey.el("tr");
    row.append(Latchkey.el("th", { scope: "row", text: name }), Latchkey.el("td", { text: shown }));
    tbody.append(row);
  }
  table.hidden = false;
});
