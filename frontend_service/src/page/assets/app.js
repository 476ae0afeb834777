// The web inbox. Talks to its own origin only: the JSON API under /api/ and the live feed
// at /live (EventSource). Every notification is kept once, by its notification_id, so a
// replay after a reconnect (EventSource resumes with Last-Event-ID by itself) or a page
// loaded beside the live feed never shows one twice. Text only ever goes in via
// textContent: nothing a sender controls becomes markup.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE_SIZE = 20;

  const state = {
    protected: false,
    email: null,
    items: new Map(), // notification_id -> { n, li }
    lastCursor: 0, // the newest cursor seen, what a fresh EventSource resumes after
    unread: 0,
    source: null,
    retry: 1000,
    subscribed: null,
  };

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      // A reply without a JSON body; the status says enough.
    }
    if (!response.ok) {
      const err = new Error(data.message || `request failed (${response.status})`);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  function showError(message) {
    const el = $('error');
    el.textContent = message || '';
    el.hidden = !message;
  }

  function setBadge(count) {
    state.unread = Math.max(0, count);
    const badge = $('badge');
    badge.textContent = String(state.unread);
    badge.setAttribute('aria-label', `${state.unread} unread`);
    badge.classList.toggle('zero', state.unread === 0);
    document.title = state.unread ? `(${state.unread}) Inbox` : 'Inbox';
  }

  function keyOf(n) {
    return n.notification_id || `cursor-${n.cursor}`;
  }

  function renderItem(entry) {
    const { n, li } = entry;
    li.className = n.read ? 'item' : 'item unread';
    li.replaceChildren();
    const what = document.createElement('div');
    what.className = 'what';
    const from = document.createElement('strong');
    from.textContent = `Message from ${n.sender_email || 'someone'}`;
    const when = document.createElement('time');
    when.dateTime = n.timestamp || '';
    const at = new Date(n.timestamp);
    when.textContent = Number.isNaN(at.getTime()) ? '' : at.toLocaleString();
    const status = document.createElement('span');
    status.className = 'state';
    status.textContent = n.read ? 'read' : 'unread';
    what.append(from, ' ', when, ' · ', status);
    const actions = document.createElement('div');
    actions.className = 'item-actions';
    if (!n.read) {
      const read = document.createElement('button');
      read.type = 'button';
      read.className = 'secondary read';
      read.textContent = 'Mark read';
      read.setAttribute('aria-label', `Mark the message from ${n.sender_email} read`);
      read.addEventListener('click', () => markRead([n.notification_id]));
      actions.append(read);
    }
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'danger delete';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete the message from ${n.sender_email}`);
    del.addEventListener('click', () => remove([n.notification_id]));
    actions.append(del);
    li.append(what, actions);
  }

  // Adds a notification, or updates its read state; true when it was new.
  function upsert(n) {
    const key = keyOf(n);
    if (typeof n.cursor === 'number' && n.cursor > state.lastCursor) state.lastCursor = n.cursor;
    const known = state.items.get(key);
    if (known) {
      if (known.n.read !== n.read) {
        known.n.read = n.read;
        renderItem(known);
      }
      return false;
    }
    const li = document.createElement('li');
    li.dataset.id = key;
    li.dataset.cursor = String(n.cursor);
    const entry = { n, li };
    renderItem(entry);
    state.items.set(key, entry);
    // Newest (largest cursor) first.
    const list = $('list');
    const after = [...list.children].find((other) => Number(other.dataset.cursor) < n.cursor);
    list.insertBefore(li, after || null);
    $('empty').hidden = true;
    return true;
  }

  function setRead(ids, all) {
    for (const [key, entry] of state.items) {
      if ((all || ids.includes(key)) && !entry.n.read) {
        entry.n.read = true;
        renderItem(entry);
      }
    }
  }

  function drop(ids, all) {
    for (const [key, entry] of [...state.items]) {
      if (all || ids.includes(key)) {
        entry.li.remove();
        state.items.delete(key);
      }
    }
    $('empty').hidden = state.items.size > 0;
  }

  function announce(text) {
    $('announce').textContent = text;
  }

  let nextCursor = null;

  async function loadPage(before) {
    const params = new URLSearchParams({ email: state.email, limit: String(PAGE_SIZE) });
    if (before !== undefined && before !== null) params.set('before', String(before));
    const page = await api('GET', `/api/notifications?${params}`);
    for (const n of page.notifications) upsert(n);
    nextCursor = page.next_cursor;
    $('older').hidden = nextCursor === null || nextCursor === undefined;
    $('empty').hidden = state.items.size > 0;
    setBadge(page.unread_count);
  }

  function connectLive() {
    if (state.source) state.source.close();
    const params = new URLSearchParams({ email: state.email });
    if (state.lastCursor > 0) params.set('after', String(state.lastCursor));
    const source = new EventSource(`/live?${params}`);
    state.source = source;
    source.addEventListener('open', () => {
      state.retry = 1000;
      $('conn').textContent = 'Live';
    });
    source.addEventListener('notification', (event) => {
      const n = JSON.parse(event.data);
      if (upsert(n) && !n.read) {
        setBadge(state.unread + 1);
        announce(`New message from ${n.sender_email}`);
      }
    });
    source.addEventListener('unread', (event) => setBadge(JSON.parse(event.data).unread_count));
    source.addEventListener('read', (event) => {
      const change = JSON.parse(event.data);
      setRead(change.notification_ids || [], change.all);
      setBadge(change.unread_count);
    });
    source.addEventListener('deleted', (event) => {
      const change = JSON.parse(event.data);
      drop(change.notification_ids || [], change.all);
      setBadge(change.unread_count);
    });
    source.addEventListener('reset', () => {
      // Older notifications than asked for were trimmed: start again from the store.
      announce('Some older notifications were removed by retention');
      drop([], true);
      state.lastCursor = 0;
      loadPage().catch((err) => showError(err.message));
    });
    source.addEventListener('error', () => {
      $('conn').textContent = 'Reconnecting…';
      if (source.readyState === EventSource.CLOSED && state.source === source) {
        // The browser gave up (a refusal, not a dropped connection): try again, resuming
        // after the newest notification this page holds.
        const wait = state.retry;
        state.retry = Math.min(state.retry * 2, 30000);
        setTimeout(() => {
          if (state.source === source) connectLive();
        }, wait);
      }
    });
  }

  async function markRead(ids) {
    try {
      const reply = await api('POST', '/api/notifications/read', {
        email: state.email,
        notification_ids: ids,
      });
      setRead(ids, ids.length === 0);
      setBadge(reply.unread_count);
      showError('');
    } catch (err) {
      showError(err.message);
    }
  }

  async function remove(ids) {
    try {
      await api('DELETE', '/api/notifications', { email: state.email, notification_ids: ids });
      const unread = ids.filter((id) => state.items.get(id) && !state.items.get(id).n.read);
      drop(ids, false);
      setBadge(state.unread - unread.length);
      showError('');
    } catch (err) {
      showError(err.message);
    }
  }

  async function loadSubscription() {
    const toggle = $('sub-toggle');
    try {
      const reply = await api('GET', `/api/subscription?${new URLSearchParams({ email: state.email })}`);
      state.subscribed = reply.subscribed;
      $('sub-state').textContent = reply.subscribed
        ? 'You get a notification for every message.'
        : 'You are unsubscribed: messages to you leave no notification.';
      toggle.textContent = reply.subscribed ? 'Unsubscribe' : 'Subscribe';
      toggle.hidden = false;
    } catch (err) {
      $('sub-state').textContent = err.message;
      toggle.hidden = true;
    }
  }

  async function toggleSubscription() {
    try {
      await api(state.subscribed ? 'DELETE' : 'PUT', '/api/subscription', { email: state.email });
      await loadSubscription();
    } catch (err) {
      showError(err.message);
    }
  }

  async function openInbox(email) {
    state.email = email;
    state.items.clear();
    state.lastCursor = 0;
    $('list').replaceChildren();
    $('welcome').hidden = true;
    for (const id of ['inbox', 'compose', 'subscription', 'whoami']) $(id).hidden = false;
    $('me').textContent = state.protected ? `Signed in as ${email}` : email;
    $('sign-out').textContent = state.protected ? 'Sign out' : 'Switch address';
    showError('');
    try {
      await loadPage();
    } catch (err) {
      showError(err.message);
    }
    connectLive();
    loadSubscription();
    $('inbox-title').focus();
  }

  function showWelcome() {
    if (state.source) state.source.close();
    state.source = null;
    state.email = null;
    $('conn').textContent = '';
    for (const id of ['inbox', 'compose', 'subscription', 'whoami']) $(id).hidden = true;
    $('welcome').hidden = false;
    $('pick-form').hidden = state.protected;
    $('signin-form').hidden = !state.protected;
    setBadge(0);
  }

  function rememberAddress(email) {
    if (!state.protected) {
      const url = new URL(window.location.href);
      url.searchParams.set('email', email);
      window.history.replaceState(null, '', url);
    }
  }

  function onSubmit(id, handler) {
    $(id).addEventListener('submit', async (event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        await handler(new FormData(form), form);
        showError('');
      } catch (err) {
        showError(err.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  async function signIn(email, password) {
    const session = await api('POST', '/api/session', { email, password });
    await openInbox(session.email);
  }

  onSubmit('pick-form', async (data) => {
    const email = String(data.get('email')).trim();
    rememberAddress(email);
    await openInbox(email);
  });
  onSubmit('signin-form', async (data, form) => {
    await signIn(String(data.get('email')).trim(), String(data.get('password')));
    form.reset();
  });
  onSubmit('signup-form', async (data, form) => {
    const email = String(data.get('email')).trim();
    const password = String(data.get('password'));
    const created = await api('POST', '/api/signup', {
      email,
      name: String(data.get('name')).trim(),
      password,
    });
    form.reset();
    if (state.protected) {
      await signIn(created.user.email, password);
    } else {
      rememberAddress(created.user.email);
      await openInbox(created.user.email);
    }
  });
  // One idempotency key per message the user sends: sending the same message again after a
  // failure reuses it, so a send that was stored after all is not stored twice.
  let pendingSend = null;
  function sendKeyFor(to, content) {
    const same = pendingSend && pendingSend.from === state.email && pendingSend.to === to
      && pendingSend.content === content;
    if (!same) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      const key = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      pendingSend = { from: state.email, to, content, key };
    }
    return pendingSend.key;
  }
  onSubmit('send-form', async (data, form) => {
    const to = String(data.get('to')).trim();
    const content = String(data.get('content'));
    $('send-status').textContent = '';
    await api('POST', '/api/messages', {
      sender_email: state.email,
      receiver_email: to,
      content,
      idempotency_key: sendKeyFor(to, content),
    });
    pendingSend = null;
    form.elements.content.value = '';
    $('send-status').textContent = `Sent to ${to}.`;
  });

  $('mark-all').addEventListener('click', () => markRead([]));
  $('older').addEventListener('click', () => loadPage(nextCursor).catch((err) => showError(err.message)));
  $('sub-toggle').addEventListener('click', toggleSubscription);
  $('sign-out').addEventListener('click', async () => {
    if (state.protected) {
      await api('DELETE', '/api/session').catch(() => {});
    } else {
      const url = new URL(window.location.href);
      url.searchParams.delete('email');
      window.history.replaceState(null, '', url);
    }
    showWelcome();
    $('welcome-title').focus();
  });

  async function start() {
    try {
      const config = await api('GET', '/api/config');
      state.protected = config.protected;
      const asked = new URLSearchParams(window.location.search).get('email');
      const email = config.protected ? config.email : asked;
      if (email) {
        await openInbox(email);
      } else {
        showWelcome();
      }
    } catch (err) {
      showWelcome();
      showError(err.message);
    }
  }

  start();
})();
