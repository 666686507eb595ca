// The classic Crédit Agricole login: identifiant, then a shuffled on-screen keypad.
// Clicking a key records its POSITION; the server maps positions back to digits with
// the layout it generated for this keypad load.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("loginForm");
  const account = document.getElementById("Login-account");
  const accountError = document.getElementById("Login-accountError");
  const submit = document.querySelector("button[login-submit-btn]");
  const block = document.getElementById("keypad-block");
  const pad = document.getElementById("clavier_num");
  const positions = document.getElementById("j_password");
  const keypadId = document.getElementById("keypadId");
  const dots = document.querySelector(".Login-dots");
  const CODE_LENGTH = 6;
  let clicked = [];

  const refresh = () => {
    positions.value = clicked.join(",");
    dots.textContent = "\u25CF".repeat(clicked.length) + "\u25CB".repeat(CODE_LENGTH - clicked.length);
  };

  submit.addEventListener("click", async (ev) => {
    ev.preventDefault();
    if (!account.value.trim()) {
      accountError.hidden = false;
      return;
    }
    accountError.hidden = true;
    const response = await fetch(form.dataset.keypadUrl, { credentials: "same-origin" });
    const data = await response.json();
    keypadId.value = data.keypadId;
    clicked = [];
    refresh();
    pad.innerHTML = "";
    data.keys.forEach((label, index) => {
      const key = document.createElement("a");
      key.href = "#";
      key.className = "Login-key" + (label === "" ? " Login-key--empty" : "");
      key.dataset.index = String(index);
      const span = document.createElement("span");
      span.className = "Login-keyLabel";
      key.appendChild(span);
      key.addEventListener("click", (e) => {
        e.preventDefault();
        if (label === "" || clicked.length >= CODE_LENGTH) return;
        clicked.push(index);
        refresh();
      });
      pad.appendChild(key);
      // the digits show up a little after the keys, like the portal's images
      setTimeout(() => { span.textContent = label; }, 100 + Math.floor(Math.random() * 200));
    });
    block.hidden = false;
  });

  document.getElementById("corriger").addEventListener("click", (e) => {
    e.preventDefault();
    clicked = [];
    refresh();
  });

  document.getElementById("validation").addEventListener("click", (e) => {
    e.preventDefault();
    form.submit();
  });
});
