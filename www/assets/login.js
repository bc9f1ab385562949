"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const button = document.getElementById("submit");
  const request = Latchkey.param("request");
  // Where to go after signing in: the pending request, the device page (a fixed path, never a URL from the query), or the account.
  const device = Latchkey.param("then") === "device";
  const userCode = Latchkey.param("user_code");
  const next = request ? "/oauth2/authorize/continue?request=" + encodeURIComponent(request)
    : device ? "/device/" + (userCode ? "?user_code=" + encodeURIComponent(userCode) : "") : "/account/";
  if (request) document.getElementById("lead").textContent = "Sign in to continue to the application.";
  // OIDC Core 3.1.2.1: the application's login_hint (checked by the server) prefills the username; the user may change it.
  const hint = request ? Latchkey.param("login_hint") : null;
  if (hint) {
    document.getElementById("username").value = hint;
    document.getElementById("password").focus();
  }
  if (device) document.getElementById("lead").textContent = "Sign in to connect your device.";

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    Latchkey.showError("");
    const username = document.getElementById("username").value.trim();
    const password = document.getElementById("password").value;
    if (!username || !password) {
      Latchkey.showError("Enter your username and password.");
      return;
    }
    button.disabled = true;
    try {
      const { status } = await Latchkey.api("POST", "/api/v1/session", { username, password });
      if (status === 204) {
        window.location.assign(next);
        return;
      }
      if (status === 429) Latchkey.showError("Too many attempts. Wait a moment and try again.");
      else Latchkey.showError("The username or password is incorrect.");
      document.getElementById("password").focus();
    } catch (_) {
      Latchkey.showError("Latchkey could not be reached. Try again.");
    } finally {
      button.disabled = false;
    }
  });
});
