// The chat page's script: a separate file so the page's Content-Security-Policy can forbid
// inline scripts.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var socket = null, room = null, lastSeq = null, typingOn = false, typingTimer = null;
  var typers = {};

  function line(html, cls) {
    var div = document.createElement('div');
    div.className = cls || '';
    div.innerHTML = html;
    $('log').appendChild(div);
    $('log').scrollTop = $('log').scrollHeight;
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function showMessage(m) {
    if (m.room !== room) return;
    if (lastSeq !== null && m.seq <= lastSeq) return; // already shown
    lastSeq = m.seq;
    line('<span class="from">' + esc(m.from) + '</span>' + esc(m.text) +
         ' <span class="seq">#' + m.seq + ' ' + new Date(m.ts).toLocaleTimeString() + '</span>', 'msg');
  }
  function showTyping() {
    var names = Object.keys(typers);
    $('typing').textContent = names.length ? names.join(', ') + ' typing…' : '';
  }
  function join() {
    var req = { room: room };
    if (lastSeq !== null) req.since = lastSeq; // resume: nothing missed, nothing twice
    socket.emit('join', req, function (ack) {
      if (!ack || !ack.ok) { line('join failed: ' + esc(ack && ack.error && ack.error.message), 'err'); return; }
      if (lastSeq === null) {
        lastSeq = ack.head;
        socket.emit('history', { room: room, limit: 50 }, function (h) {
          if (h && h.ok) h.messages.forEach(function (m) {
            line('<span class="from">' + esc(m.from) + '</span>' + esc(m.text) +
                 ' <span class="seq">#' + m.seq + '</span>', 'msg');
          });
        });
      }
      $('status').textContent = 'in ' + room + ' (head ' + ack.head + ')';
      $('text').disabled = $('send').disabled = false;
    });
  }

  function fetchToken(name) {
    return fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                 body: JSON.stringify({ name: name }) })
      .then(function (r) { if (!r.ok) throw new Error('no dev tokens on this server'); return r.json(); });
  }

  $('go').onclick = function () {
    var name = $('name').value.trim();
    room = $('room').value.trim();
    if (!name || !room) return;
    if (socket) socket.disconnect();
    lastSeq = null;
    $('log').innerHTML = '';
    fetchToken(name)
      .then(function (t) {
        socket = io({ auth: { token: t.token }, transports: ['websocket'] });
        socket.on('connect', function () { $('status').textContent = 'connected'; join(); });
        socket.on('disconnect', function (r) {
          $('status').textContent = 'disconnected (' + r + '), reconnecting…';
          $('text').disabled = $('send').disabled = true;
        });
        socket.on('connect_error', function (e) {
          $('status').textContent = 'error: ' + e.message;
          // An expired token (or a server with a new key): get a fresh one and try again.
          if (e.message === 'unauthorized') {
            setTimeout(function () {
              fetchToken(name).then(function (fresh) { socket.auth.token = fresh.token; socket.connect(); })
                .catch(function () {});
            }, 1000);
          }
        });
        socket.on('message', showMessage);
        socket.on('typing', function (t) {
          if (t.room !== room) return;
          if (t.on) typers[t.user] = true; else delete typers[t.user];
          showTyping();
        });
      })
      .catch(function (e) { line(esc(e.message), 'err'); });
  };

  function send() {
    var text = $('text').value;
    if (!text || !socket) return;
    var id = (self.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    $('text').value = '';
    var attempt = function () {
      socket.timeout(10000).emit('send', { room: room, id: id, text: text }, function (err, ack) {
        if (err) { setTimeout(attempt, 1000); return; } // same id: retries never duplicate
        if (!ack.ok) {
          if (ack.error.code === 'unavailable' || ack.error.code === 'rate_limited') {
            setTimeout(attempt, ack.error.retry_after_ms || 1000); return;
          }
          line('not sent (' + esc(ack.error.code) + '): ' + esc(ack.error.message), 'err');
        }
      });
    };
    attempt();
    setTyping(false);
  }
  function setTyping(on) {
    if (on === typingOn || !socket) return;
    typingOn = on;
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
