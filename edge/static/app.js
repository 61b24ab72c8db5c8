// The chat page's script: a separate file so the page's Content-Security-Policy can forbid
// inline scripts.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var socket = null, me = null, myName = null, generation = 0;
  var current = null;   // the room on screen
  var rooms = {};       // room -> {el, joined, lastSeq, users, count, large, typers}
  var names = {};       // user id -> display name, from presence answers
  var sendError = null; // the last failed send, shown until something newer happens
  var typingRoom = null, typingTimer = null;

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

  // The status line always says what is true now: recomputed on every change.
  function updateStatus() {
    var st = rooms[current], text, err = false;
    if (!socket) text = current ? 'Connecting…' : 'Pick a name and a room, then Join.';
    else if (!connected()) text = socket.everConnected ? 'Reconnecting…' : 'Connecting…';
    else if (sendError) { text = 'Could not send: ' + sendError; err = true; }
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

  function renderRooms() {
    var ul = $('rooms');
    ul.replaceChildren();
    Object.keys(rooms).forEach(function (r) {
      var b = el('button', 'room', label(r));
      b.type = 'button';
      if (r === current) b.setAttribute('aria-current', 'true');
      b.onclick = function () { show(r); };
      ul.appendChild(el('li')).appendChild(b);
    });
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
    sendError = null;
    $('log').replaceChildren();
    if (room) { $('log').appendChild(rooms[room].el); $('log').scrollTop = $('log').scrollHeight; }
    renderRooms(); renderOnline(); renderTyping(); updateStatus();
  }

  function messageLine(m) {
    var div = el('div', 'msg'), at = new Date(m.ts);
    var time = div.appendChild(el('time', null, at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
    time.dateTime = at.toISOString();
    time.title = at.toLocaleString();
    div.appendChild(el('span', 'from', nameOf(m.from)));
    div.appendChild(el('span', 'text', m.text));
    div.appendChild(el('span', 'seq', '#' + m.seq));
    return div;
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
    append(m.room, messageLine(m));
  }

  // Joins (or, after a reconnect, rejoins) a room, then asks who is online in it.
  function join(room) {
    var st = rooms[room], s = socket, req = { room: room };
    if (st.lastSeq !== null) req.since = st.lastSeq; // resume: nothing missed, nothing twice
    s.emit('join', req, function (ack) {
      if (s !== socket || rooms[room] !== st) return;
      if (!ack || !ack.ok) {
        var why = ack && ack.error ? ack.error.message : 'no answer';
        if (st.lastSeq === null) { // never got in: forget it
          delete rooms[room];
          if (current === room) show(Object.keys(rooms)[0] || null); else renderRooms();
        }
        fail('Could not join ' + label(room) + ': ' + why);
        return;
      }
      st.joined = true;
      if (st.lastSeq === null) {
        var head = st.lastSeq = ack.head;
        s.emit('history', { room: room, limit: 50 }, function (h) {
          if (!h || !h.ok || rooms[room] !== st) return;
          // Above anything that arrived live meanwhile; later seqs come (or came) live.
          var older = document.createDocumentFragment();
          h.messages.forEach(function (m) { if (m.seq <= head) older.appendChild(messageLine(m)); });
          st.el.insertBefore(older, st.el.firstChild);
          if (room === current) $('log').scrollTop = $('log').scrollHeight;
        });
      }
      seedPresence(room);
      if (room === current) updateStatus();
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

  function openRoom(room) {
    if (!rooms[room]) {
      rooms[room] = { el: el('div'), joined: false, lastSeq: null, users: {}, count: null, large: false, typers: {} };
      if (connected()) join(room);
    }
    show(room);
  }

  function fetchToken(name) {
    return fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                 body: JSON.stringify({ name: name }) })
      .then(function (r) {
        if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) {
          throw new Error(b.error || 'this server does not hand out names');
        });
        return r.json();
      });
  }

  // A new name is a new identity: drop everything and connect afresh.
  function signIn(name) {
    var gen = ++generation;
    if (socket) socket.disconnect();
    socket = null; me = null; myName = name; rooms = {}; current = null; typingRoom = null;
    show(null);
    return fetchToken(name).then(function (t) {
      if (gen !== generation) return;
      me = subOf(t.token);
      names[me] = name;
      var s = socket = io({ auth: { token: t.token }, transports: ['websocket'] });
      s.on('connect', function () {
        s.everConnected = true;
        sendError = null;
        Object.keys(rooms).forEach(join);
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
      updateStatus();
    }).catch(function (e) {
      if (gen === generation) fail('Could not sign in: ' + e.message);
    });
  }

  $('join').onsubmit = function (e) {
    e.preventDefault();
    var name = $('name').value.trim(), room = $('room').value.trim();
    if (!name || !room) { fail(name ? 'Pick a room to join.' : 'Pick a name first.'); return; }
    if (name !== myName) signIn(name);
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
          if (sendError) { sendError = null; updateStatus(); }
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
})();
