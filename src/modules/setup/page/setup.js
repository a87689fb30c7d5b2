// Reads the one-time token from the URL fragment (never sent to the server by the browser),
// removes it from the address bar and history, and posts it with the chosen password.
const token = new URLSearchParams(location.hash.slice(1)).get('token');
history.replaceState(null, '', location.pathname);

document.addEventListener('DOMContentLoaded', () => {
  const form = document.getElementById('setup-form');
  const status = document.getElementById('status');
  if (!token) {
    status.textContent = 'This page needs the link that `ringvakt setup` printed.';
    form.hidden = true;
    return;
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const password = form.password.value;
    if (password !== form.confirm.value) {
      status.textContent = 'The two passwords differ.';
      return;
    }
    const response = await fetch('/api/v1/setup/complete', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, password }),
    });
    if (response.status === 204) {
      form.hidden = true;
      status.textContent = 'Your password is set. You can close this page.';
    } else {
      const problem = await response.json().catch(() => ({}));
      status.textContent = problem.detail || problem.title || 'Setting the password failed.';
    }
  });
});
