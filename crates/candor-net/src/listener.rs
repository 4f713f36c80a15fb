//! The HTTP accept loop. `axum::serve` gives hyper no timer, so hyper's header read
//! time-out never fires and a client that sends its headers a byte at a time, or
//! opens a connection and says nothing, holds a task and a socket forever. This loop
//! gives a new connection a short time to say anything, gives hyper a timer and a
//! header (= keep-alive idle) time-out, and drains gracefully. spec/api.md §6.1.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The connection time-outs.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A new connection must send its first bytes within this time.
    pub first_byte: Duration,
    /// hyper's header read time-out: a request's headers must be complete within
    /// this time of the server starting to wait for them, which on a keep-alive
    /// connection is also how long it may stay idle. Not shorter, because clients
    /// pool idle connections and race a close (reqwest's default pool idle is 90 s).
    pub idle: Duration,
}

/// How long a new connection may stay silent: `min(request time-out, 10 s)`.
pub fn first_byte_timeout(request_timeout: Duration) -> Duration {
    request_timeout.min(Duration::from_secs(10))
}

/// The HTTP/2 connection preface (RFC 9113 §3.4): hyper-util reads up to this much
/// before it picks a protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client sends enough to choose HTTP/1 or HTTP/2 within `limit`: a
/// first byte that is not the HTTP/2 preface's, or the whole preface. Peeks, so
/// hyper still reads everything.
async fn speaks_within(stream: &TcpStream, limit: Duration) -> bool {
    let decided = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            if n == buf.len() || buf[..n] != H2_PREFACE[..n] {
                return Ok(true);
            }
            // A prefix of the preface: peek returns at once while those bytes sit
            // unread, so wait a little for the rest.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    matches!(tokio::time::timeout(limit, decided).await, Ok(Ok(true)))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting,
/// lets every connection finish its in-flight request (graceful shutdown of HTTP/1
/// keep-alive and HTTP/2), and returns once all connections are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send,
) {
    // Dropping `stop_tx` tells every connection task to drain; each connection task
    // holds a `done_rx` clone until it ends, so `done_tx.closed()` resolves when the
    // last one has.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY");
        }
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|req: Request<Incoming>| req.map(axum::body::Body::new)),
        );
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            // Held until the connection ends: shutdown waits for every one.
            let _done = done;
            // hyper's header time-out starts only once hyper-util has read enough
            // to tell HTTP/1 from HTTP/2, which a silent client never lets it do.
            // A silent connection is also dropped at once on shutdown.
            let spoke = tokio::select! {
                spoke = speaks_within(&stream, timeouts.first_byte) => spoke,
                _ = stop.changed() => false,
            };
            if !spoke {
                return;
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.idle);
            builder.http2().timer(TokioTimer::new());
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(Lingering::new(stream)), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended while draining");
                    }
                }
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
}

/// How long a closed connection keeps reading what its client still sends.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// How long it waits for each further byte before it gives up.
const LINGER_IDLE: Duration = Duration::from_secs(1);
/// How much it reads at most before it gives up.
const LINGER_BYTES: usize = 64 << 20;

/// A connection that closes gracefully ("lingering close", RFC 9112 §9.6). hyper
/// answers a request whose body it will not read (over `--max-body-bytes`: 413) and
/// then closes the socket while the client is still sending. Closing a socket with
/// unread bytes makes the kernel reset the connection, and a reset makes the client
/// discard the answer it has not read yet: it reports a broken pipe instead of the
/// 413. So when hyper lets go of the connection, a task of its own half-closes it and
/// reads and drops what still arrives, until the client closes its side or a bound
/// is reached, and only then closes the socket.
struct Lingering {
    stream: Option<TcpStream>,
}

impl Lingering {
    fn new(stream: TcpStream) -> Lingering {
        Lingering {
            stream: Some(stream),
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match self.stream.as_mut() {
            Some(s) => Ok(Pin::new(s)),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        // Outside a runtime (never, in the server) the socket just closes.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(linger(stream));
        }
    }
}

/// Half-closes `stream` and drains it (see [`Lingering`]).
async fn linger(mut stream: TcpStream) {
    // Sends FIN after anything hyper wrote; a second shutdown is harmless.
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    let drain = async {
        loop {
            match tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 && n < left => left -= n,
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
