//! Malformed input never takes the server down: truncated frames,
//! oversized lengths, invalid BSON, unknown opcodes, bad checksums and
//! 10,000 random byte strings each close their connection with a logged
//! reason, and the server keeps answering well-formed commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bson::{Document, doc};
use cipherdoc_wire::client::Client;
use cipherdoc_wire::frame::{self, FLAG_CHECKSUM_PRESENT, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send `bytes`, half-close, and read until the server closes; returns
/// what it sent back.
async fn send(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything; that is fine.
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server neither answered nor closed")
        .ok();
    out
}

async fn command(addr: &str, body: &Document) -> Document {
    let mut c = Client::connect(addr).await.unwrap();
    c.command_with_flags(body, FLAG_CHECKSUM_PRESENT)
        .await
        .unwrap()
}

async fn alive(addr: &str) {
    let r = command(addr, &doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(r.get_f64("ok").unwrap().to_bits(), 1f64.to_bits(), "{r}");
}

fn header(len: i32, op: i32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&7i32.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&op.to_le_bytes());
    v
}

/// A deterministic generator for the random byte strings, so that a
/// failure reproduces (xorshift64*, written out because the test needs
/// nothing more).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_close_their_connection_and_the_server_keeps_serving() {
    let logs = common::logs(tracing::Level::WARN);
    let server = common::start().await;
    let addr = server.addr.clone();
    alive(&addr).await;
    let good = frame::encode_msg(1, 0, 0, &doc! {"ping": 1, "$db": "admin"}).unwrap();

    // Each case: bytes, and the reason the log must give.
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated frame",
            good[..good.len() - 3].to_vec(),
            "connection closed mid-message",
        ),
        ("header only", good[..10].to_vec(), ""),
        (
            "oversized length",
            header(49_000_000, 2013),
            "outside 16..=48000000",
        ),
        ("negative length", header(-1, 2013), "outside 16..=48000000"),
    ];
    let mut unknown = header(21, 9999);
    unknown.extend_from_slice(&[0; 5]);
    cases.push(("unknown opcode", unknown, "unsupported opcode 9999"));
    let mut compressed = header(21, 2012);
    compressed.extend_from_slice(&[0; 5]);
    cases.push(("OP_COMPRESSED", compressed, "OP_COMPRESSED"));
    // Invalid BSON: a body whose document claims more bytes than it has,
    // and one with an unknown element type.
    let mut bad_len = good.clone();
    bad_len[21] = 0x7f;
    cases.push(("document length past the end", bad_len, "truncated message"));
    let mut bad_type = good.clone();
    bad_type[25] = 0x77;
    cases.push(("unknown BSON element type", bad_type, "invalid BSON"));
    let mut bad_crc = frame::encode_msg_with_sequences(
        1,
        FLAG_CHECKSUM_PRESENT,
        &doc! {"ping": 1, "$db": "admin"},
        &[],
    )
    .unwrap();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xff;
    cases.push(("checksum mismatch", bad_crc, "checksum mismatch"));
    let mut bad_flags = good.clone();
    bad_flags[16] = 0x04;
    cases.push(("unknown required flag", bad_flags, "required bits"));

    for (what, bytes, reason) in &cases {
        let before = logs.count("malformed message");
        let reply = send(&addr, bytes).await;
        assert!(
            reply.is_empty(),
            "{what}: the server answered a malformed message"
        );
        if !reason.is_empty() {
            // The warning is written just before the close we observed.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                logs.count("malformed message") > before,
                "{what}: nothing logged"
            );
            assert!(
                logs.text().contains(reason),
                "{what}: no {reason:?} in\n{}",
                logs.text()
            );
        }
        alive(&addr).await;
    }

    // 10,000 random byte strings, each on its own connection. Half start
    // with a plausible header so that the parsers behind it see them too.
    let mut rng = Rng(0x00C1_9E4D_0C00_FFEE);
    for i in 0..10_000u32 {
        let len = usize::try_from(rng.next() % 300).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[0]).collect();
        if i % 2 == 0 && bytes.len() >= HEADER_LEN {
            let total = i32::try_from(bytes.len()).unwrap();
            bytes[0..4].copy_from_slice(&total.to_le_bytes());
            let op: i32 = if rng.next() % 2 == 0 { 2013 } else { 2004 };
            bytes[12..16].copy_from_slice(&op.to_le_bytes());
            if op == 2013 && bytes.len() >= 20 {
                bytes[16..20].copy_from_slice(&[0, 0, 0, 0]);
            }
        }
        let _ = send(&addr, &bytes).await;
        if i % 1000 == 0 {
            alive(&addr).await;
        }
    }
    alive(&addr).await;
    assert!(
        logs.count("malformed message") > 5_000,
        "random inputs were not refused with a logged reason: {} warnings",
        logs.count("malformed message")
    );
    let _ = server.stop.send(());
}

#[tokio::test]
async fn a_well_formed_command_after_garbage_on_another_connection_works() {
    let _logs = common::logs(tracing::Level::WARN);
    let server = common::start().await;
    let addr = server.addr.clone();
    let r = command(
        &addr,
        &doc! {"insert": "c", "documents": [{"_id": 1, "a": "x"}], "$db": "d"},
    )
    .await;
    assert_eq!(r.get_i32("n").unwrap(), 1, "{r}");
    let _ = send(&addr, &header(100, 2013)).await;
    let r = command(&addr, &doc! {"find": "c", "filter": {}, "$db": "d"}).await;
    let batch = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 1);
    // A legacy OP_QUERY handshake is answered with OP_REPLY; any other
    // OP_QUERY command with mongod's UnsupportedOpQueryCommand.
    let mut c = Client::connect(&addr).await.unwrap();
    for (q, want_ok) in [(doc! {"isMaster": 1}, true), (doc! {"find": "c"}, false)] {
        c.send_raw(&frame::encode_query(5, "admin.$cmd", &q).unwrap())
            .await
            .unwrap();
        let (h, reply) = c.read_message().await.unwrap();
        assert_eq!(h.op_code, frame::OP_REPLY);
        assert_eq!(h.response_to, 5);
        if want_ok {
            assert!(reply.get_bool("ismaster").unwrap(), "{reply}");
            assert_eq!(reply.get_i32("maxWireVersion").unwrap(), 25);
        } else {
            assert_eq!(reply.get_i32("code").unwrap(), 352, "{reply}");
        }
    }
    let _ = server.stop.send(());
}
