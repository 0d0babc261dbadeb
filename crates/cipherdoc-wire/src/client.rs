//! A minimal client of this crate's framing: one connection, one command
//! at a time. For tests and benchmarks that speak to the server without a
//! driver (a driver is the real client; see the Python suite).

use bson::Document;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frame::{self, FrameError, HEADER_LEN, Header};

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The reply did not decode.
    #[error("reply: {0}")]
    Frame(#[from] FrameError),
    /// The command did not encode.
    #[error("encoding: {0}")]
    Encode(#[from] bson::ser::Error),
}

/// One connection to a server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    next: i32,
}

impl Client {
    /// Connect (with `TCP_NODELAY`, as drivers do).
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, next: 0 })
    }

    /// Send `body` as an `OP_MSG` with `flags` and return the reply
    /// document.
    pub async fn command_with_flags(
        &mut self,
        body: &Document,
        flags: u32,
    ) -> Result<Document, ClientError> {
        self.next = self.next.wrapping_add(1);
        let msg = frame::encode_msg_with_sequences(self.next, flags, body, &[])?;
        self.send_raw(&msg).await?;
        self.read_reply().await
    }

    /// Send `body` as an `OP_MSG` and return the reply document.
    pub async fn command(&mut self, body: &Document) -> Result<Document, ClientError> {
        self.command_with_flags(body, 0).await
    }

    /// Send bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Read one reply (`OP_MSG` or `OP_REPLY`) and its header.
    pub async fn read_message(&mut self) -> Result<(Header, Document), ClientError> {
        let mut head = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut head).await?;
        let h = Header::parse(&head)?;
        let mut rest = vec![0u8; h.length - HEADER_LEN];
        self.stream.read_exact(&mut rest).await?;
        Ok((h, frame::decode_reply(&h, &rest)?))
    }

    async fn read_reply(&mut self) -> Result<Document, ClientError> {
        Ok(self.read_message().await?.1)
    }
}

/// What a [`RecordingProxy`] recorded: every byte its clients sent.
pub type Recorded = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// A loopback TCP proxy to a server that records every byte its clients
/// send (in arrival order, all connections together), for tests that check
/// what a driver or engine put on the wire.
#[derive(Debug, Clone)]
pub struct RecordingProxy {
    /// The proxy's address (`127.0.0.1:<port>`).
    pub addr: String,
    /// What the clients sent.
    pub sent: Recorded,
}

impl RecordingProxy {
    /// Listen on a loopback port and forward each connection to `server`.
    pub async fn start(server: String) -> Result<Self, ClientError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let sent = Recorded::default();
        let recorded = std::sync::Arc::clone(&sent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(&server).await else {
                    continue;
                };
                let sent = std::sync::Arc::clone(&recorded);
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                                break;
                            };
                            sent.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .extend_from_slice(chunk);
                            if uw.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                        let _ = uw.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut ur, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Ok(Self { addr, sent })
    }

    /// The `OP_MSG` commands recorded so far, in order (document sequences
    /// folded in; legacy `OP_QUERY` handshakes left out). Only sound while
    /// one connection at a time sends, as the streams are interleaved.
    pub fn commands(&self) -> Result<Vec<Document>, FrameError> {
        let bytes = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut out = Vec::new();
        let mut rest = bytes.as_slice();
        while let Some(head) = rest.first_chunk::<HEADER_LEN>() {
            let header = Header::parse(head)?;
            let Some(body) = rest.get(HEADER_LEN..header.length) else {
                break;
            };
            if let frame::Request::Msg(m) = frame::decode(&header, body)? {
                out.push(m.into_command().map_err(|reason| FrameError::InvalidBson {
                    place: "a recorded OP_MSG",
                    reason,
                })?);
            }
            rest = rest.get(header.length..).unwrap_or_default();
        }
        Ok(out)
    }
}
