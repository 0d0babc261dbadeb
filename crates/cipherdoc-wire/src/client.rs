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
