// Targetplan logs in over XHR: JSON in, a redirect target or an error message out.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("loginForm");
  const wrapper = document.getElementById("error-container-wrapper");
  const button = document.getElementById("submitButtonAjaxId");
  const submit = async (ev) => {
    ev.preventDefault();
    wrapper.hidden = true;
    button.disabled = true;
    try {
      const response = await fetch(form.dataset.loginUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Requested-With": "XMLHttpRequest" },
        body: JSON.stringify({
          username: document.getElementById("username").value,
          password: document.getElementById("password").value,
        }),
      });
      const data = await response.json();
      if (response.ok && data.redirect) {
        window.location.assign(data.redirect);
        return;
      }
      wrapper.querySelector(".error-message").textContent = data.error || "Something went wrong.";
      wrapper.hidden = false;
    } finally {
      button.disabled = false;
    }
  };
  form.addEventListener("submit", submit);
});
