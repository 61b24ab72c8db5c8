// The chat page's script: a separate file so the page's Content-Security-Policy can forbid
// inline scripts.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var socket = null, me = null, myName = null, myRole = 'member', generation = 0;
  var refreshTimer = null;
  var MUTE_FOR_MS = 10 * 60 * 1000;
  var current = null;   // the room on screen
  // room -> {el, joined, loaded, lastSeq, shownSeq, from, newAfter, users, count, large,
  //          typers, receipts, seenEl}
  var rooms = {};
  var names = {};       // user id -> display name, from presence answers
  var sendError = null; // the last failed send, shown until something newer happens
  var notice = null;    // the outcome of the last delete or mute, shown the same way
  var typingRoom = null, typingTimer = null;
  var inbox = newInbox();
  var marked = {};      // room -> the highest read marker sent, acknowledged or heard of
  var readTimer = null;

  // Past this many unread messages a room opens on its latest page rather than replaying
  // everything since the marker: nobody scrolls back through more.
  var MAX_CATCH_UP = 500;
  var INBOX_EVERY_MS = 10000;
  // The inbox processor delivers `notify` before it stores the rows an `inbox` reads, so a
  // room notified of a message is asked about again until the answer includes it.
  var INBOX_RETRY_MS = 1000, INBOX_RETRIES = 5;
  var SEEN_NAMES = 3;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function nameOf(user) { return names[user] || user; }
  // The user id is the token's `sub`: read it from the token rather than assume it is the name.
  function subOf(token) {
    var b = atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'));
    var bytes = Uint8Array.from(b, function (c) { return c.charCodeAt(0); });
    return JSON.parse(new TextDecoder().decode(bytes)).sub;
  }
  // The server's rule: `dm:<a>:<b>` with a < b is private to a and b.
  function dmRoom(a, b) { return a < b ? 'dm:' + a + ':' + b : 'dm:' + b + ':' + a; }
  function dmPartner(room) {
    var p = room.split(':');
    return p[0] === 'dm' && p.length === 3 ? (p[1] === me ? p[2] : p[1]) : null;
  }
  function label(room) {
    var other = dmPartner(room);
    return other ? nameOf(other) : '#' + room;
  }
  function connected() { return !!(socket && socket.connected); }
  // The user sees a room when it is on screen, joined, in a tab that is not hidden.
  function viewing(room) {
    var st = rooms[room];
    return room === current && !!st && st.joined && document.visibilityState === 'visible';
  }

  // The status line always says what is true now: recomputed on every change.
  function updateStatus() {
    var st = rooms[current], text, err = false;
    if (!socket) text = current ? 'Connecting…' : 'Pick a name and a room, then Join.';
    else if (!connected()) text = socket.everConnected ? 'Reconnecting…' : 'Connecting…';
    else if (sendError) { text = 'Could not send: ' + sendError; err = true; }
    else if (notice) { text = notice.text; err = notice.err; }
    else if (!st) text = 'Connected as ' + myName + '. Join a room.';
    else if (!st.joined) text = 'Joining ' + label(current) + '…';
    else if (dmPartner(current)) text = 'Connected as ' + myName + ', talking with ' + label(current);
    else text = 'Connected as ' + myName + ' in ' + label(current);
    $('status').textContent = text;
    $('status').className = err ? 'err' : '';
    $('text').disabled = $('send').disabled = !(connected() && st && st.joined);
  }
  function fail(text) {
    $('status').textContent = text;
    $('status').className = 'err';
  }

  // The rooms open here keep their place, in the order opened, so a click never lands on a
  // room that moved under the pointer; the inbox's other rooms follow, newest first.
  function listedRooms() {
    var open = Object.keys(rooms);
    return open.concat(inbox.order.filter(function (r) { return !rooms[r]; }));
  }
  function unreadText(entry) {
    if (!entry || !entry.unread) return '';
    return entry.unread + (entry.mentions ? ' · @' + entry.mentions : '');
  }
  // The same counts in words, for screen readers (the badge itself is hidden from them).
  function unreadWords(entry) {
    var words = entry.unread + ' unread';
    if (entry.mentions) words += ', ' + entry.mentions + (entry.mentions === 1 ? ' mention' : ' mentions');
    return words;
  }
  function roomItem(r) {
    var li = el('li'), entry = inbox.byRoom[r], badge = unreadText(entry);
    var b = li.appendChild(el('button', 'room', label(r)));
    b.type = 'button';
    b.dataset.room = r;
    if (r === current) b.setAttribute('aria-current', 'true');
    if (entry && entry.last) b.title = nameOf(entry.last.from) + ': ' + entry.last.text;
    b.onclick = function () { openRoom(r); };
    if (badge) {
      b.setAttribute('aria-label', label(r) + ', ' + unreadWords(entry));
      li.appendChild(el('span', 'badge', badge)).setAttribute('aria-hidden', 'true');
    }
    return li;
  }
  // The list is redrawn whenever counts change (every inbox answer): a keyboard user keeps
  // the focus on the room it was on.
  function renderRooms() {
    var focused = $('rooms').contains(document.activeElement) ? document.activeElement.dataset.room : null;
    $('rooms').replaceChildren.apply($('rooms'), listedRooms().map(roomItem));
    if (focused == null) return;
    var again = Array.prototype.find.call($('rooms').querySelectorAll('button'),
                                          function (b) { return b.dataset.room === focused; });
    if (again) again.focus();
  }
  function renderOnline() {
    var st = rooms[current], ul = $('online');
    ul.replaceChildren();
    if (!st || !st.joined || st.count === null) { $('online-title').textContent = 'Online'; return; }
    $('online-title').textContent = st.count + ' online';
    // In a large room the server sends only counts, so a list could not be kept current.
    if (st.large) return;
    Object.keys(st.users).sort(function (a, b) { return nameOf(a).localeCompare(nameOf(b)); })
      .forEach(function (u) {
        var li = ul.appendChild(el('li'));
        if (u === me) { li.textContent = nameOf(u) + ' (you)'; return; }
        var b = li.appendChild(el('button', 'user', nameOf(u)));
        b.type = 'button';
        b.title = 'Talk privately with ' + nameOf(u);
        b.onclick = function () { openRoom(dmRoom(me, u)); };
      });
  }
  function renderTyping() {
    var st = rooms[current];
    var who = st ? Object.keys(st.typers).map(nameOf) : [];
    $('typing').textContent = who.length ? who.join(', ') + ' typing…' : '';
  }

  function show(room) {
    if (room !== current) setTyping(false);
    current = room;
    sendError = null; notice = null;
    $('log').replaceChildren();
    if (room) { $('log').appendChild(rooms[room].el); $('log').scrollTop = $('log').scrollHeight; }
    renderRooms(); renderOnline(); renderTyping(); updateStatus();
    markReadSoon();
  }

  function moderates() { return myRole === 'moderator' || myRole === 'admin'; }
  function messageLine(m) {
    var div = el('div', 'msg'), at = new Date(m.ts);
    div.dataset.seq = m.seq;
    var time = div.appendChild(el('time', null, at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
    time.dateTime = at.toISOString();
    time.title = at.toLocaleString();
    div.appendChild(el('span', 'from', nameOf(m.from)));
    div.appendChild(el('span', 'text', m.text));
    div.appendChild(el('span', 'seq', '#' + m.seq));
    if (m.deleted) { markDeleted(div); return div; }
    // Moderators may delete any message and mute its sender; members their own messages.
    if (moderates() || m.from === me) {
      var del = div.appendChild(el('button', 'act delete', 'delete'));
      del.title = 'Delete this message for everyone';
      del.onclick = function () { act('delete', { room: m.room, seq: m.seq }); };
    }
    if (moderates() && m.from !== me) {
      var mute = div.appendChild(el('button', 'act mute', 'mute'));
      mute.title = 'Mute ' + nameOf(m.from) + ' in this room for 10 minutes';
      mute.onclick = function () { act('mute', { room: m.room, user: m.from, until: Date.now() + MUTE_FOR_MS }); };
    }
    return div;
  }
  function markDeleted(div) {
    div.classList.add('deleted');
    div.querySelector('.text').textContent = 'message deleted';
    div.querySelectorAll('.act').forEach(function (b) { b.remove(); });
  }
  function onDeleted(d) {
    var st = rooms[d.room];
    var div = st && st.el.querySelector('.msg[data-seq="' + d.seq + '"]');
    if (div) markDeleted(div);
  }
  // A moderator action or a delete: the outcome shows in the status line.
  function act(event, payload) {
    if (!connected()) return;
    socket.timeout(10000).emit(event, payload, function (err, ack) {
      if (err) notice = { text: 'Could not ' + event + ': no answer', err: true };
      else if (!ack.ok) notice = { text: 'Could not ' + event + ': ' + ack.error.message, err: true };
      else if (event === 'mute') notice = { text: nameOf(payload.user) + ' is muted here for 10 minutes', err: false };
      else notice = null;
      sendError = null;
      updateStatus();
    });
  }
  function append(room, node) {
    var log = $('log'), atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    rooms[room].el.appendChild(node);
    if (room === current && atEnd) log.scrollTop = log.scrollHeight;
  }
  function showMessage(m) {
    var st = rooms[m.room];
    if (!st) return;
    if (st.lastSeq !== null && m.seq <= st.lastSeq) return; // already shown
    st.lastSeq = m.seq;
    // Opened from the inbox: a line marks where the unread messages begin.
    if (st.newAfter !== null && m.seq > st.newAfter) {
      append(m.room, el('div', 'new', 'New messages'));
      st.newAfter = null;
    }
    append(m.room, messageLine(m));
    st.shownSeq = Math.max(st.shownSeq, m.seq);
    if (Object.keys(st.receipts).length) renderSeen(m.room); // it may have been read already
    if (m.room === current && document.visibilityState === 'visible') markReadSoon();
    // Unseen, the badge grows: the inbox counts it (the user's own messages never count).
    else if (m.from !== me && (inbox.byRoom[m.room] || dmPartner(m.room))) expectInInbox(m.room, m.seq);
  }

  // Joins (or, after a reconnect, rejoins) a room, then asks who is online in it. The first
  // join of a room opened from the inbox starts at the read marker, so the unread messages
  // come first, then earlier ones above them.
  function join(room) {
    var st = rooms[room], s = socket, req = { room: room };
    if (st.lastSeq !== null) req.since = st.lastSeq; // resume: nothing missed, nothing twice
    else if (st.from !== null) req.since = st.from;
    s.emit('join', req, function (ack) {
      if (s !== socket || rooms[room] !== st) return;
      if (!ack || !ack.ok) {
        var why = ack && ack.error ? ack.error.message : 'no answer';
        if (!st.loaded) { // never got in: forget it
          delete rooms[room];
          if (current === room) show(Object.keys(rooms)[0] || null); else renderRooms();
        }
        fail('Could not join ' + label(room) + ': ' + why);
        return;
      }
      st.joined = true;
      if (!st.loaded) {
        st.loaded = true;
        loadEarlier(room, st.from !== null ? st.from : ack.head);
      }
      // A join's replay (if any) has ended: everything up to head is shown.
      if (st.lastSeq === null || st.lastSeq < ack.head) st.lastSeq = ack.head;
      st.newAfter = null;
      seedPresence(room);
      if (room === current) { updateStatus(); markReadSoon(); }
    });
  }
  // The page of history ending at `upTo`, above whatever arrived live meanwhile.
  function loadEarlier(room, upTo) {
    var st = rooms[room];
    if (upTo <= 0) return;
    socket.emit('history', { room: room, before: upTo + 1, limit: 50 }, function (h) {
      if (!h || !h.ok || rooms[room] !== st) return;
      var older = document.createDocumentFragment();
      h.messages.forEach(function (m) {
        if (m.seq > upTo) return;
        older.appendChild(messageLine(m));
        st.shownSeq = Math.max(st.shownSeq, m.seq);
      });
      st.el.insertBefore(older, st.el.firstChild);
      renderSeen(room);
      if (room === current) { $('log').scrollTop = $('log').scrollHeight; markReadSoon(); }
    });
  }
  function seedPresence(room) {
    var st = rooms[room], s = socket;
    s.emit('presence', { room: room }, function (a) {
      if (s !== socket || rooms[room] !== st || !a || !a.ok) return;
      st.users = {};
      a.users.forEach(function (u) { st.users[u.user] = true; if (u.name) names[u.user] = u.name; });
      st.count = a.count;
      st.large = false;
      if (room === current) { renderOnline(); renderRooms(); }
    });
  }

  // Where to start a room's first join: at the read marker when the inbox knows one and the
  // gap is small; null for the latest page.
  function catchUpFrom(room) {
    var entry = inbox.byRoom[room];
    return entry && entry.unread && entry.head - entry.read <= MAX_CATCH_UP ? entry.read : null;
  }
  function openRoom(room) {
    if (!rooms[room]) {
      var from = catchUpFrom(room);
      rooms[room] = { el: el('div'), joined: false, loaded: false, lastSeq: null, shownSeq: 0,
                      from: from, newAfter: from, users: {}, count: null, large: false,
                      typers: {}, receipts: {}, seenEl: el('div', 'seen') };
      if (connected()) join(room);
    }
    show(room);
  }

  // --- The inbox: unread counts per room, asked for and kept current. ---

  function newInbox() {
    // order: rooms newest first; byRoom: room -> entry; expect: room -> {seq, tries} for
    // messages heard of live that an answer must still show.
    return { order: [], byRoom: {}, expect: {}, asking: false, again: false, timer: null };
  }
  // Asks for the inbox after `ms`. One question at a time and at most one waiting keep the
  // load bounded however many messages and notices arrive.
  function refreshInbox(ms) {
    var box = inbox;
    if (box.timer) return;
    box.timer = setTimeout(function () { box.timer = null; askInbox(box); }, ms);
  }
  function askInbox(box) {
    var s = socket;
    if (box !== inbox || !connected()) return;
    if (box.asking) { box.again = true; return; }
    box.asking = true;
    s.timeout(10000).emit('inbox', {}, function (err, ack) {
      box.asking = false;
      if (box !== inbox || s !== socket) return;
      if (!err && ack && ack.ok) applyInbox(ack.rooms);
      if (box.again || Object.keys(box.expect).length) { box.again = false; refreshInbox(INBOX_RETRY_MS); }
    });
  }
  function applyInbox(list) {
    inbox.order = [];
    inbox.byRoom = {};
    list.forEach(function (entry) {
      noteMarker(entry, marked[entry.room] || 0);
      marked[entry.room] = entry.read;
      inbox.order.push(entry.room);
      inbox.byRoom[entry.room] = entry;
      var wait = inbox.expect[entry.room];
      if (wait && (entry.head >= wait.seq || ++wait.tries > INBOX_RETRIES)) delete inbox.expect[entry.room];
    });
    // A room the answer leaves out (past the inbox's size) is not waited for forever.
    Object.keys(inbox.expect).forEach(function (r) {
      if (!inbox.byRoom[r] && ++inbox.expect[r].tries > INBOX_RETRIES) delete inbox.expect[r];
    });
    renderRooms();
  }
  function expectInInbox(room, seq) {
    var wait = inbox.expect[room];
    if (!wait || wait.seq < seq) inbox.expect[room] = { seq: seq, tries: 0 };
    refreshInbox(300);
  }
  // A marker known here may be newer than an answer (markers reach the inbox a moment after
  // they are acknowledged or announced): counts drop to 0 once it covers the room's head.
  function noteMarker(entry, seq) {
    if (seq <= entry.read) return;
    entry.read = seq;
    if (seq >= entry.head) { entry.unread = 0; entry.mentions = 0; }
  }
  function markerMoved(room, seq) {
    marked[room] = Math.max(marked[room] || 0, seq);
    if (inbox.byRoom[room]) { noteMarker(inbox.byRoom[room], seq); renderRooms(); }
    refreshInbox(INBOX_RETRY_MS); // counts below the head come only from the server
  }

  // --- Read markers: what the user has seen, and what others have. ---

  // At most one `read` per half second, however fast messages come.
  function markReadSoon() {
    if (!readTimer) readTimer = setTimeout(function () { readTimer = null; markRead(); }, 500);
  }
  function markRead() {
    var room = current, st = rooms[room], s = socket;
    if (!viewing(room) || !connected()) return;
    var seq = st.shownSeq, before = marked[room] || 0;
    if (seq <= before) return; // a marker never moves back, and once is enough
    marked[room] = seq;
    s.emit('read', { room: room, seq: seq }, function (ack) {
      if (s !== socket) return;
      if (ack && ack.ok) { markerMoved(room, seq); return; }
      // Only a busy server is worth asking again; any other refusal would only repeat.
      var code = ack && ack.error && ack.error.code;
      if (code !== 'unavailable' && code !== 'rate_limited') return;
      if (marked[room] === seq) marked[room] = before;
      setTimeout(markReadSoon, ack.error.retry_after_ms || 2000);
    });
  }

  // Under the newest message others have read: who has read it.
  function renderSeen(room) {
    var st = rooms[room], top = 0;
    Object.keys(st.receipts).forEach(function (u) { if (u !== me) top = Math.max(top, st.receipts[u]); });
    var line = st.el.lastElementChild;
    while (line && !(line.dataset.seq && Number(line.dataset.seq) <= top)) line = line.previousElementSibling;
    if (!line) { st.seenEl.remove(); return; }
    var seq = Number(line.dataset.seq);
    var who = Object.keys(st.receipts)
      .filter(function (u) { return u !== me && st.receipts[u] >= seq; })
      .map(nameOf).sort(function (a, b) { return a.localeCompare(b); });
    var more = who.length - SEEN_NAMES;
    st.seenEl.textContent = 'Seen by ' + (more > 0
      ? who.slice(0, SEEN_NAMES).join(', ') + ' and ' + more + (more === 1 ? ' other' : ' others')
      : who.join(', '));
    line.after(st.seenEl);
  }
  function onReceipt(r) {
    var st = rooms[r.room];
    if (!st || r.user === me) return;
    if (r.seq <= (st.receipts[r.user] || 0)) return;
    st.receipts[r.user] = r.seq;
    renderSeen(r.room);
  }

  function claimsOf(token) {
    var b = atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'));
    var bytes = Uint8Array.from(b, function (c) { return c.charCodeAt(0); });
    return JSON.parse(new TextDecoder().decode(bytes));
  }
  function fetchToken(name) {
    var body = { name: name };
    if ($('moderator').checked) body.role = 'moderator';
    return fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                 body: JSON.stringify(body) })
      .then(function (r) {
        if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) {
          throw new Error(b.error || 'this server does not hand out names');
        });
        return r.json();
      });
  }

  // A token is swapped for a fresh one before it expires, on the same connection: at half
  // its life, and at least 30 s before `exp` (the server cuts a connection at `exp`).
  function scheduleRefresh(s, name, exp) {
    clearTimeout(refreshTimer);
    var left = exp * 1000 - Date.now();
    var wait = Math.max(1000, Math.min(left / 2, left - 30000));
    refreshTimer = setTimeout(function () {
      if (s !== socket) return;
      fetchToken(name).then(function (fresh) {
        s.auth.token = fresh.token;
        if (!s.connected) { scheduleRefresh(s, name, fresh.exp); return; }
        s.timeout(10000).emit('refresh', { token: fresh.token }, function (err, ack) {
          if (s !== socket) return;
          if (err || !ack.ok) { setTimeout(function () { scheduleRefresh(s, name, exp); }, 5000); return; }
          scheduleRefresh(s, name, fresh.exp);
        });
      }).catch(function () { setTimeout(function () { scheduleRefresh(s, name, exp); }, 5000); });
    }, wait);
  }

  // A new name is a new identity: drop everything and connect afresh.
  function signIn(name) {
    var gen = ++generation;
    if (socket) socket.disconnect();
    clearTimeout(inbox.timer);
    socket = null; me = null; myName = name; rooms = {}; current = null; typingRoom = null;
    myRole = $('moderator').checked ? 'moderator' : 'member';
    inbox = newInbox(); marked = {};
    show(null);
    return fetchToken(name).then(function (t) {
      if (gen !== generation) return;
      me = subOf(t.token);
      myRole = claimsOf(t.token).role || 'member';
      names[me] = name;
      var s = socket = io({ auth: { token: t.token }, transports: ['websocket'] });
      scheduleRefresh(s, name, t.exp);
      s.on('connect', function () {
        s.everConnected = true;
        sendError = null;
        Object.keys(rooms).forEach(join);
        refreshInbox(0);
        updateStatus();
      });
      s.on('disconnect', function (reason) {
        if (s !== socket) return;
        // What we knew about the rooms may change while away; rejoining asks again.
        Object.keys(rooms).forEach(function (r) {
          var st = rooms[r];
          st.joined = false; st.typers = {}; st.users = {}; st.count = null;
        });
        typingRoom = null;
        renderOnline(); renderTyping(); updateStatus();
        // Socket.IO retries by itself except when the server closed the connection.
        if (reason === 'io server disconnect') s.connect();
      });
      s.on('connect_error', function (e) {
        if (s !== socket) return;
        updateStatus();
        // An expired token (or a server with a new key): get a fresh one and try again.
        if (e.message === 'unauthorized') {
          setTimeout(function () {
            fetchToken(name).then(function (fresh) { s.auth.token = fresh.token; s.connect(); })
              .catch(function () {});
          }, 1000);
        }
      });
      s.on('message', showMessage);
      s.on('deleted', onDeleted);
      // The token ran out without a refresh: the server closes; a fresh one reconnects.
      s.on('expired', function () {
        fetchToken(name).then(function (fresh) {
          s.auth.token = fresh.token;
          scheduleRefresh(s, name, fresh.exp);
          if (!s.connected) s.connect();
        }).catch(function () {});
      });
      s.on('typing', function (t) {
        var st = rooms[t.room];
        if (!st) return;
        if (t.on) st.typers[t.user] = true; else delete st.typers[t.user];
        if (t.room === current) renderTyping();
      });
      s.on('presence', function (p) {
        var st = rooms[p.room];
        if (!st || !st.joined) return;
        // Per-user events again after a large spell: the list missed changes, ask afresh.
        if (st.large) { seedPresence(p.room); return; }
        if (p.online) st.users[p.user] = true; else delete st.users[p.user];
        st.count = Object.keys(st.users).length;
        if (p.room === current) renderOnline();
      });
      s.on('occupancy', function (o) {
        var st = rooms[o.room];
        if (!st || !st.joined) return;
        st.large = true;
        st.count = o.count;
        if (o.room === current) renderOnline();
      });
      // A direct message or a mention in a room not joined here.
      s.on('notify', function (n) { expectInInbox(n.room, n.seq); });
      // Another tab or device of this user read further.
      s.on('read', function (r) { markerMoved(r.room, r.seq); });
      s.on('receipt', onReceipt);
      updateStatus();
    }).catch(function (e) {
      if (gen === generation) fail('Could not sign in: ' + e.message);
    });
  }

  $('join').onsubmit = function (e) {
    e.preventDefault();
    var name = $('name').value.trim(), room = $('room').value.trim();
    if (!name || !room) { fail(name ? 'Pick a room to join.' : 'Pick a name first.'); return; }
    var role = $('moderator').checked ? 'moderator' : 'member';
    if (name !== myName || role !== myRole) signIn(name);
    openRoom(room);
  };

  function send() {
    var text = $('text').value, room = current;
    if (!text.trim() || !connected() || !room) return;
    var id = (self.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    var s = socket;
    $('text').value = '';
    var attempt = function () {
      s.timeout(10000).emit('send', { room: room, id: id, text: text }, function (err, ack) {
        if (s !== socket) return;
        if (err) { setTimeout(attempt, 1000); return; } // same id: retries never duplicate
        if (ack.ok) {
          if (sendError || notice) { sendError = null; notice = null; updateStatus(); }
          return;
        }
        if (ack.error.code === 'unavailable' || ack.error.code === 'rate_limited') {
          setTimeout(attempt, ack.error.retry_after_ms || 1000); return;
        }
        // Give the text back to fix and resend, unless the user moved on to something else.
        if (room === current && !$('text').value) $('text').value = text;
        sendError = ack.error.message;
        updateStatus();
      });
    };
    attempt();
    setTyping(false);
  }
  function setTyping(on) {
    var room = on ? current : typingRoom;
    if (!connected() || !room || (on ? typingRoom === room : !typingRoom)) return;
    if (on && typingRoom) setTyping(false); // a room switch: stop in the old one first
    typingRoom = on ? room : null;
    socket.emit('typing', { room: room, on: on }, function () {});
  }
  $('send').onclick = send;
  $('text').addEventListener('keydown', function (e) {
    if (e.key === 'Enter') { send(); return; }
    setTyping(true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { setTyping(false); }, 3000);
  });
  // Back to a hidden tab: what is on screen now counts as read.
  document.addEventListener('visibilitychange', markReadSoon);
  // Counts change with messages in rooms this page has not joined and no notice tells of
  // (a room marked read elsewhere, a busy room): ask now and then.
  setInterval(function () { refreshInbox(0); }, INBOX_EVERY_MS);
})();
