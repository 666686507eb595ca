// The Plaid Link page (templates/plaid_link.html): open Plaid Link with the page's link
// token and hand the public token it gives to finbot, which exchanges it and adds the
// account. No inline script: the page's Content-Security-Policy allows this file and
// Plaid's own script only.
(function () {
  "use strict";
  var root = document.getElementById("plaid-link");
  if (!root) return;
  var statusEl = document.getElementById("plaid-status");
  var button = document.getElementById("plaid-open");

  function say(text, kind) {
    statusEl.textContent = text;
    statusEl.className = kind || "";
  }

  if (typeof window.Plaid === "undefined") {
    say("Plaid Link could not be loaded (is Plaid reachable from this browser?): reload the page to try again.", "error");
    button.disabled = true;
    return;
  }

  function exchange(publicToken) {
    say("Linked. finbot is testing the account with one fetch…");
    button.disabled = true;
    fetch(root.dataset.exchangeUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify({ pending_id: root.dataset.pendingId, public_token: publicToken }),
    })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          return { ok: r.ok && body.ok, status: r.status, body: body };
        });
      })
      .then(function (res) {
        if (res.ok) {
          say(res.body.message + ".", "ok");
          root.dataset.accountId = res.body.account_id;
        } else {
          say((res.body.message || res.body.detail || "finbot refused the answer") +
              " (HTTP " + res.status + ")", "error");
        }
      })
      .catch(function () {
        say("finbot could not be reached: the account was not added; start again.", "error");
      });
  }

  var handler = window.Plaid.create({
    token: root.dataset.linkToken,
    onSuccess: function (publicToken) { exchange(publicToken); },
    onExit: function (err) {
      if (err) {
        say("Plaid Link failed: " + (err.display_message || err.error_message || err.error_code) +
            ". Press “Open Plaid Link” to try again.", "error");
      } else {
        say("Plaid Link was closed: press “Open Plaid Link” to try again.");
      }
    },
  });
  button.addEventListener("click", function () { handler.open(); });
  handler.open();
})();
