//! For tests and benchmarks that need a `cipherdoc serve` in their own
//! process: [`serve_in_background`] starts one on a loopback port.

use crate::{Server, ServerConfig};

/// Starts a server with `config` on a free loopback port, on a thread and
/// a two-worker runtime of its own (so that it outlives the caller's
/// runtime, e.g. one `#[tokio::test]` of several sharing it), and returns
/// its address, `host:port` (a client's URL is `mongodb://{address}/`).
/// The server runs until the process ends.
///
/// # Errors
///
/// The runtime could not be built or the port not bound.
pub fn serve_in_background(config: ServerConfig) -> std::io::Result<String> {
    serve_in_background_on(config, 2)
}

/// [`serve_in_background`] on a runtime of `worker_threads` workers (the
/// benchmarks fix theirs).
///
/// # Errors
///
/// The runtime could not be built or the port not bound.
pub fn serve_in_background_on(
    config: ServerConfig,
    worker_threads: usize,
) -> std::io::Result<String> {
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<String>>();
    std::thread::Builder::new()
        .name("cipherdoc-serve".to_owned())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(worker_threads)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let bound = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .and_then(|l| Ok((l.local_addr()?.to_string(), l)));
                match bound {
                    Ok((addr, listener)) => {
                        let _ = tx.send(Ok(addr));
                        Server::new(config)
                            .serve(listener, std::future::pending())
                            .await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the server thread ended before binding"))?
}
