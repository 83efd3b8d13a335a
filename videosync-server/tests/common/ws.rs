//! A protocol client for the room tests: tokio-tungstenite over TCP,
//! speaking JSON frames of protocol version 2.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a part.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use videosync_core::catalog::{Catalog, SourceMeta, StatusChange};
use videosync_core::VideoId;

/// Sets video `id` ready as a worker would (`duration_ms` long when given),
/// without transcoding: rooms need only its id, status and length.
pub async fn mark_ready(catalog: &dyn Catalog, id: VideoId, duration_ms: Option<u64>) {
    if duration_ms.is_some() {
        let meta = SourceMeta {
            duration_ms,
            ..SourceMeta::default()
        };
        catalog.set_source_meta(id, meta).await.unwrap();
    }
    let fence = "test-fence".to_owned();
    let processing = StatusChange::Processing {
        fence: fence.clone(),
    };
    catalog.update_status(id, None, processing).await.unwrap();
    let ready = StatusChange::Ready {
        fence,
        renditions: Vec::new(),
        output_prefix: format!("videos/{}/a1", id.as_uuid().simple()),
    };
    catalog.update_status(id, None, ready).await.unwrap();
}

/// A protocol client.
pub struct Ws {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub sent: f64,
}

pub const WAIT: Duration = Duration::from_secs(10);

impl Ws {
    pub async fn open(addr: SocketAddr, channel: &str) -> Ws {
        let url = format!("ws://{addr}/api/v1/channels/{channel}/live");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Ws { socket, sent: 0.0 }
    }

    /// Opens and says hello with `token`; answers the welcome.
    pub async fn join(addr: SocketAddr, channel: &str, token: &str) -> (Ws, Value) {
        let mut ws = Ws::open(addr, channel).await;
        ws.hello(token, None).await;
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }

    pub async fn hello(&mut self, token: &str, resume: Option<Value>) {
        let mut hello = json!({"type": "hello", "versions": [2], "token": token, "name": "tester"});
        if let Some(r) = resume {
            hello["resume"] = r;
        }
        self.send(hello).await;
    }

    /// Sends `msg` with a fresh `sent_ms`.
    pub async fn send(&mut self, mut msg: Value) {
        self.sent += 1.0;
        msg["sent_ms"] = json!(self.sent);
        self.send_raw(Message::text(msg.to_string())).await;
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.socket.send(msg).await.expect("send");
    }

    /// The next protocol message.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .expect("a frame");
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The next protocol message, or `None` once the connection has ended
    /// (closed, reset, or its server gone).
    pub async fn try_recv(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next message of type `ty`, skipping others (presence, typing).
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        self.recv_among(&[ty]).await
    }

    /// The next message of one of the types `types`, skipping others.
    pub async fn recv_among(&mut self, types: &[&str]) -> Value {
        loop {
            let m = self.recv().await;
            if types.iter().any(|t| m["type"] == *t) {
                return m;
            }
        }
    }

    /// Reads until the server closes; answers the close code and the
    /// protocol errors that came first.
    pub async fn closed(&mut self) -> (u16, Vec<Value>) {
        let mut errors = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("the close in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "error" {
                        errors.push(v);
                    }
                }
                Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), errors),
                Some(Ok(Message::Close(None))) | None => return (1005, errors),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error before the close: {e}"),
            }
        }
    }
}
