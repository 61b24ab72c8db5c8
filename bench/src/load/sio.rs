//! A minimal Socket.IO v5 / Engine.IO v4 client over WebSocket, lean enough for tens of
//! thousands of connections in one process: one task per connection owns one [`Client`]; a
//! 4 KiB read buffer, no write buffering, websocket transport only, namespace `/` only, no
//! binary packets, no reconnection.
//!
//! Wire format (what this module speaks):
//! - Engine.IO: `0{open json}` (server), `2` ping (server) → `3` pong (client), `1` close.
//! - Socket.IO, prefixed by the Engine.IO message type `4`: `40{auth}` connect (client) →
//!   `40{"sid":..}` or `44{"message":..}` (connect error); `42<ack>["event",data]` events;
//!   `43<ack>[data]` acks; `41` disconnect.

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// One decoded text frame. Payloads borrow the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO open, with its JSON (`sid`, `pingInterval`, `pingTimeout`, `maxPayload`).
    Open(&'a str),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping: answer with a pong.
    Ping,
    /// Engine.IO pong.
    Pong,
    /// Engine.IO noop.
    Noop,
    /// Socket.IO CONNECT to `/`, with its JSON (`{"sid":..}`).
    Connect(&'a str),
    /// Socket.IO DISCONNECT.
    Disconnect,
    /// Socket.IO CONNECT_ERROR, with its JSON (`{"message":..}`).
    ConnectError(&'a str),
    /// Socket.IO EVENT: `args` is the JSON array `["name", data…]`.
    Event { ack: Option<u64>, args: &'a str },
    /// Socket.IO ACK: `args` is the JSON array of the ack's arguments.
    Ack { id: u64, args: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one Engine.IO text frame (and the Socket.IO packet inside a message frame).
pub fn decode(frame: &str) -> Result<Packet<'_>, DecodeError> {
    let rest = frame.get(1..).unwrap_or("");
    match frame.as_bytes().first() {
        Some(b'0') => Ok(Packet::Open(rest)),
        Some(b'1') => Ok(Packet::Close),
        Some(b'2') => Ok(Packet::Ping),
        Some(b'3') => Ok(Packet::Pong),
        Some(b'4') => decode_socketio(rest),
        Some(b'6') => Ok(Packet::Noop),
        Some(_) => Err(DecodeError("unknown Engine.IO packet type")),
        None => Err(DecodeError("empty frame")),
    }
}

fn decode_socketio(packet: &str) -> Result<Packet<'_>, DecodeError> {
    let kind = *packet
        .as_bytes()
        .first()
        .ok_or(DecodeError("empty Socket.IO packet"))?;
    let mut rest = packet.get(1..).unwrap_or("");
    // `/nsp,` precedes the rest for any namespace but `/`.
    if rest.starts_with('/') {
        let (namespace, after) = rest.split_once(',').unwrap_or((rest, ""));
        if namespace != "/" {
            return Err(DecodeError("packet for another namespace"));
        }
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = match digits {
        0 => None,
        _ => Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|_| DecodeError("ack id out of range"))?,
        ),
    };
    let data = &rest[digits..];
    match kind {
        b'0' => Ok(Packet::Connect(data)),
        b'1' => Ok(Packet::Disconnect),
        b'2' => Ok(Packet::Event { ack, args: data }),
        b'3' => Ok(Packet::Ack {
            id: ack.ok_or(DecodeError("ack without an id"))?,
            args: data,
        }),
        b'4' => Ok(Packet::ConnectError(data)),
        b'5' | b'6' => Err(DecodeError("binary packets are not supported")),
        _ => Err(DecodeError("unknown Socket.IO packet type")),
    }
}

/// `40{auth}`: connect to namespace `/` with an auth payload.
pub fn encode_connect(auth: &impl Serialize) -> serde_json::Result<String> {
    let mut out = String::from("40");
    out.push_str(&serde_json::to_string(auth)?);
    Ok(out)
}

/// `42<ack>["event",data]`. `event` must need no JSON escaping (it is one of our names).
pub fn encode_event(
    ack: Option<u64>,
    event: &str,
    data: &impl Serialize,
) -> serde_json::Result<String> {
    let data = serde_json::to_string(data)?;
    let mut out = String::with_capacity(data.len() + event.len() + 16);
    out.push_str("42");
    if let Some(id) = ack {
        out.push_str(&id.to_string());
    }
    out.push_str("[\"");
    out.push_str(event);
    out.push_str("\",");
    out.push_str(&data);
    out.push(']');
    Ok(out)
}

/// Why a connection did not come up.
#[derive(Debug)]
pub enum ConnectError {
    Tcp(std::io::Error),
    WebSocket(tungstenite::Error),
    /// The server answered something this client does not expect.
    Protocol(String),
    /// A Socket.IO connect error, with the server's message (`unauthorized`).
    Refused(String),
    /// The server closed the connection during the handshake.
    Closed,
}

impl ConnectError {
    /// A short, stable label for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            ConnectError::Tcp(e) => format!("tcp:{:?}", e.kind()),
            ConnectError::WebSocket(_) => "websocket".into(),
            ConnectError::Protocol(_) => "protocol".into(),
            ConnectError::Refused(message) => format!("refused:{message}"),
            ConnectError::Closed => "closed".into(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "tcp: {e}"),
            ConnectError::WebSocket(e) => write!(f, "websocket: {e}"),
            ConnectError::Protocol(what) => write!(f, "protocol: {what}"),
            ConnectError::Refused(message) => write!(f, "connect error: {message}"),
            ConnectError::Closed => f.write_str("closed during the handshake"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Small buffers: the generator holds tens of thousands of these.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

#[derive(serde::Deserialize)]
struct Open {
    #[allow(dead_code)]
    sid: String,
}

/// One authenticated Socket.IO connection on namespace `/`.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    next_ack: u64,
    pong_due: bool,
}

impl Client {
    /// Connects from `source` (port chosen by the kernel) to `server`, opens the Engine.IO
    /// session and connects to `/` with `{token}` as auth.
    pub async fn connect(
        server: SocketAddr,
        source: Ipv4Addr,
        token: &str,
    ) -> Result<Client, ConnectError> {
        let socket = TcpSocket::new_v4().map_err(ConnectError::Tcp)?;
        socket
            .bind(SocketAddr::from((source, 0)))
            .map_err(ConnectError::Tcp)?;
        let stream = socket.connect(server).await.map_err(ConnectError::Tcp)?;
        stream.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
            .await
            .map_err(ConnectError::WebSocket)?;
        let mut client = Client {
            ws,
            next_ack: 0,
            pong_due: false,
        };

        let open = client
            .next_text()
            .await
            .map_err(ConnectError::WebSocket)?
            .ok_or(ConnectError::Closed)?;
        match decode(&open) {
            Ok(Packet::Open(json)) => {
                serde_json::from_str::<Open>(json)
                    .map_err(|e| ConnectError::Protocol(format!("open packet: {e}")))?;
            }
            _ => return Err(ConnectError::Protocol(format!("expected open, got {open}"))),
        }
        let connect = encode_connect(&serde_json::json!({ "token": token }))
            .map_err(|e| ConnectError::Protocol(e.to_string()))?;
        client
            .send_text(connect)
            .await
            .map_err(ConnectError::WebSocket)?;
        loop {
            let text = client
                .next_text()
                .await
                .map_err(ConnectError::WebSocket)?
                .ok_or(ConnectError::Closed)?;
            match decode(&text) {
                Ok(Packet::Connect(_)) => return Ok(client),
                Ok(Packet::ConnectError(json)) => {
                    let message = serde_json::from_str::<serde_json::Value>(json)
                        .ok()
                        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                        .unwrap_or_else(|| json.to_owned());
                    return Err(ConnectError::Refused(message));
                }
                Ok(Packet::Noop | Packet::Pong) => {}
                _ => {
                    return Err(ConnectError::Protocol(format!(
                        "expected a connect, got {text}"
                    )))
                }
            }
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::Text(text.into())).await
    }

    /// Emits `event` with an ack request; returns the ack id to match the server's ack.
    pub async fn emit(
        &mut self,
        event: &str,
        data: &impl Serialize,
    ) -> Result<u64, tungstenite::Error> {
        let id = self.next_ack;
        self.next_ack += 1;
        let text = encode_event(Some(id), event, data)
            .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?;
        self.send_text(text).await?;
        Ok(id)
    }

    /// The next text frame that is not an Engine.IO ping (pings are answered here); `None`
    /// once the server closed the session. Cancel-safe: a pong interrupted by cancellation is
    /// sent on the next call.
    pub async fn next_text(&mut self) -> Result<Option<Utf8Bytes>, tungstenite::Error> {
        loop {
            if self.pong_due {
                self.send_text("3".into()).await?;
                self.pong_due = false;
            }
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(Message::Text(text))) => match text.as_str() {
                    "2" => self.pong_due = true,
                    "1" => return Ok(None),
                    _ => return Ok(Some(text)),
                },
                Some(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_engine_io_packets() {
        assert_eq!(
            decode(r#"0{"sid":"a","pingInterval":25000}"#),
            Ok(Packet::Open(r#"{"sid":"a","pingInterval":25000}"#))
        );
        assert_eq!(decode("2"), Ok(Packet::Ping));
        assert_eq!(decode("3"), Ok(Packet::Pong));
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("6"), Ok(Packet::Noop));
        assert!(decode("").is_err());
        assert!(decode("9").is_err());
    }

    #[test]
    fn decodes_socket_io_packets() {
        assert_eq!(
            decode(r#"40{"sid":"x"}"#),
            Ok(Packet::Connect(r#"{"sid":"x"}"#))
        );
        assert_eq!(
            decode(r#"44{"message":"unauthorized"}"#),
            Ok(Packet::ConnectError(r#"{"message":"unauthorized"}"#))
        );
        assert_eq!(decode("41"), Ok(Packet::Disconnect));
        assert_eq!(
            decode(r#"42["message",{"seq":1}]"#),
            Ok(Packet::Event {
                ack: None,
                args: r#"["message",{"seq":1}]"#
            })
        );
        assert_eq!(
            decode(r#"4217["ev",1]"#),
            Ok(Packet::Event {
                ack: Some(17),
                args: r#"["ev",1]"#
            })
        );
        assert_eq!(
            decode(r#"43123[{"ok":true,"seq":5}]"#),
            Ok(Packet::Ack {
                id: 123,
                args: r#"[{"ok":true,"seq":5}]"#
            })
        );
        assert_eq!(
            decode(r#"43/,4[{}]"#),
            Ok(Packet::Ack {
                id: 4,
                args: "[{}]"
            })
        );
        assert!(decode("43[{}]").is_err(), "an ack needs an id");
        assert!(decode(r#"42/admin,["x"]"#).is_err());
        assert!(decode("451-[\"x\"]").is_err(), "binary is not supported");
        assert!(decode("4").is_err());
        assert!(decode("4399999999999999999999[1]").is_err());
    }

    #[test]
    fn encodes_packets() {
        assert_eq!(
            encode_connect(&serde_json::json!({"token": "t.k.n"})).ok(),
            Some(r#"40{"token":"t.k.n"}"#.to_owned())
        );
        assert_eq!(
            encode_event(Some(3), "join", &serde_json::json!({"room": "r"})).ok(),
            Some(r#"423["join",{"room":"r"}]"#.to_owned())
        );
        assert_eq!(
            encode_event(None, "typing", &serde_json::json!({"on": true})).ok(),
            Some(r#"42["typing",{"on":true}]"#.to_owned())
        );
    }

    #[test]
    fn round_trips_an_event_through_decode() {
        let text = encode_event(Some(42), "send", &serde_json::json!({"id": "a"}));
        let text = text.unwrap_or_default();
        assert_eq!(
            decode(&text),
            Ok(Packet::Event {
                ack: Some(42),
                args: r#"["send",{"id":"a"}]"#
            })
        );
    }
}
