//! HTTP/1.1 on the relay's port, before the websocket: the web app's files are served on the
//! same port and origin as the websocket (PROTOCOL.md §9.1.1), so the app needs no other
//! server and its Content-Security-Policy can say `connect-src 'self'`.
//!
//! Every connection starts here. [`serve`] reads a request head — at most [`MAX_HEAD_BYTES`] and
//! [`MAX_HEADERS`] header lines, before the connection's authentication deadline and within
//! its pre-authentication byte budget ([`crate::preauth`]), like everything a connection sends
//! before it authenticates. A websocket upgrade hands the connection, with the bytes read so far
//! replayed by [`Prefixed`], to the websocket handshake, which therefore sees exactly what the
//! client sent: existing clients notice nothing. Any other request is answered from memory by
//! [`crate::web::respond`], and the connection stays open for the next request (keep-alive) up
//! to [`MAX_REQUESTS_PER_CONNECTION`] and until the authentication deadline; a later request may
//! still be the upgrade. The whole HTTP phase, writes included, ends one write timeout after
//! the authentication deadline at the latest, and a connection is sent at most
//! `max_preauth_send_bytes` of responses ([`crate::config::DEFAULT_MAX_PREAUTH_SEND_BYTES`]). Nothing a peer sends can make this code panic or touch the filesystem.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::time::Instant;

use crate::server::Shared;
use crate::web::{self, Accepted, Method, Response, Status};

/// The largest request head read (request line and header fields). A browser's requests for
/// the app's files and its websocket upgrade take well under 2 KiB; a larger head gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most header lines a request may have (a browser sends about 15); more gets 431.
pub const MAX_HEADERS: usize = 32;
/// Requests answered on one connection before it is closed. A first load asks for about a
/// dozen files (the page, scripts, a stylesheet, the worker, the wasm, the manifests, icons)
/// over a few connections; the pre-authentication byte budget bounds it too.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 64;
/// A response body is written in pieces of this size, each within the write timeout: a peer
/// that keeps reading may take its time over a large file, one that stops is dropped.
const WRITE_CHUNK: usize = 64 * 1024;

/// What became of a connection after its HTTP requests.
pub enum Next<S> {
    /// It asked for the websocket upgrade: the stream, with the bytes already read in front.
    WebSocket(Prefixed<S>),
    /// It is finished (closed by either side, refused, or past its deadline).
    Closed,
}

/// What the head of a request says, owned so that the buffer can be changed afterwards.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// The head's length in bytes (where the next request would start).
    len: usize,
    /// The method.
    method: Method,
    /// The request-target as sent.
    target: String,
    /// Whether it asks for the websocket upgrade (`Upgrade: websocket`).
    upgrade: bool,
    /// The compressed forms the client accepts.
    accepted: Accepted,
    /// Whether the connection must close after the answer: the client said so, or it speaks
    /// HTTP/1.0, or the request has a body, which the server does not read.
    close: bool,
}

/// The result of parsing the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole head.
    Complete(Head),
    /// Not yet a whole head.
    Partial,
    /// More header lines than [`MAX_HEADERS`].
    TooManyHeaders,
    /// Not an HTTP/1.x request.
    Bad,
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses a request head from the start of `buf`.
fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooManyHeaders,
        Err(_) => return Parsed::Bad,
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Bad;
    };
    let mut upgrade = false;
    let mut close = version == 0;
    let mut encodings = Vec::new();
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= lists(value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            close |= lists(value, b"close");
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            encodings.push(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.trim_ascii() != b"0")
        {
            close = true;
        }
    }
    Parsed::Complete(Head {
        len,
        method: Method::parse(method),
        target: target.to_string(),
        upgrade,
        accepted: Accepted::parse(encodings),
        close,
    })
}

/// Serves HTTP requests on a new connection until it asks for the websocket upgrade or is
/// finished (see the module documentation). `deadline` is the connection's authentication
/// deadline: no request is read or answered after it, and the whole HTTP phase, writes and
/// close included, ends at the latest one write timeout after it (a response under way is cut
/// off there). At most `max_preauth_send_bytes` of responses are sent: a connection whose next
/// response would pass that is closed instead.
pub async fn serve<S>(shared: &Shared, stream: S, deadline: Instant) -> Next<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hard_deadline = deadline + shared.limits.write_timeout;
    tokio::time::timeout_at(hard_deadline, serve_until(shared, stream, deadline))
        .await
        .unwrap_or(Next::Closed)
}

/// [`serve`] without its overall bound.
async fn serve_until<S>(shared: &Shared, mut stream: S, deadline: Instant) -> Next<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // What has been read and not yet answered: the next request's head, and whatever the
    // client sent after it.
    let mut buf = Vec::new();
    let mut served = 0;
    // Response bytes sent so far, against `max_preauth_send_bytes`.
    let mut sent: u64 = 0;
    loop {
        let refusal = match parse(&buf) {
            Parsed::Complete(head) if head.upgrade => {
                return Next::WebSocket(Prefixed::new(buf, stream));
            }
            // A request pipelined behind others is not answered after the deadline.
            Parsed::Complete(_) if Instant::now() >= deadline => return Next::Closed,
            Parsed::Complete(head) => {
                served += 1;
                shared
                    .metrics
                    .web_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let response = web::respond(
                    &shared.limits.web,
                    head.method,
                    &head.target,
                    head.accepted,
                    SystemTime::now(),
                );
                tracing::debug!(status = response.status.code(), "web request");
                sent = sent.saturating_add(wire_len(&response));
                if sent > shared.limits.max_preauth_send_bytes {
                    tracing::debug!("pre-authentication send budget spent; closing");
                    return Next::Closed;
                }
                let close = head.close
                    || response.status.closes()
                    || served >= MAX_REQUESTS_PER_CONNECTION
                    || Instant::now() >= deadline;
                let written = write(&mut stream, &response, close, shared.limits.write_timeout);
                if written.await.is_err() {
                    return Next::Closed;
                }
                if close {
                    linger(stream, shared.limits.close_linger).await;
                    return Next::Closed;
                }
                // httparse's length is within what it parsed; `min` keeps that a non-panicking fact.
                let answered = head.len.min(buf.len());
                buf.drain(..answered);
                continue;
            }
            Parsed::Partial if buf.len() < MAX_HEAD_BYTES => None,
            Parsed::Partial | Parsed::TooManyHeaders => Some(Status::HeadersTooLarge),
            Parsed::Bad => Some(Status::BadRequest),
        };
        if let Some(status) = refusal {
            let body = if status == Status::BadRequest {
                "bad request\n"
            } else {
                "request header fields too large\n"
            };
            let response = web::plain(&shared.limits.web, status, body, SystemTime::now());
            if write(&mut stream, &response, true, shared.limits.write_timeout)
                .await
                .is_ok()
            {
                linger(stream, shared.limits.close_linger).await;
            }
            return Next::Closed;
        }
        // Read more, never past the head limit (so a head never takes more than it).
        let start = buf.len();
        buf.resize(MAX_HEAD_BYTES, 0);
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf[start..])).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.truncate(start + n),
            // The peer closed, the read failed (the pre-authentication budget is spent, or the
            // connection broke) or the deadline passed: nobody to answer.
            _ => return Next::Closed,
        }
    }
}

/// About how many bytes `response` takes on the wire (its head and the body it sends), for the
/// pre-authentication send budget.
fn wire_len(response: &Response<'_>) -> u64 {
    let body = if response.send_body {
        response.body.len()
    } else {
        0
    };
    u64::try_from(response.head(true).len().saturating_add(body)).unwrap_or(u64::MAX)
}

/// Writes `response`, each piece within `timeout`.
async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response<'_>,
    close: bool,
    timeout: Duration,
) -> io::Result<()> {
    let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
    let body = if response.send_body {
        response.body
    } else {
        &[]
    };
    // The head goes out with the first piece of the body, in one TLS record where it fits.
    let (first, rest) = body.split_at(body.len().min(WRITE_CHUNK));
    let mut head = response.head(close).into_bytes();
    head.extend_from_slice(first);
    tokio::time::timeout(timeout, stream.write_all(&head))
        .await
        .map_err(|_| timed_out())??;
    for piece in rest.chunks(WRITE_CHUNK) {
        tokio::time::timeout(timeout, stream.write_all(piece))
            .await
            .map_err(|_| timed_out())??;
    }
    tokio::time::timeout(timeout, stream.flush())
        .await
        .map_err(|_| timed_out())?
}

/// Closes a connection after its last response: shuts down the sending side (TLS close_notify
/// and FIN), then reads and discards what the peer still sends, for at most `linger`. Dropping
/// a socket with unread data resets the connection, and the peer could lose the response
/// before it has read it (a 431 after a head too large to have been read whole, say).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, linger: Duration) {
    let _ = tokio::time::timeout(linger, async {
        let _ = stream.shutdown().await;
        let mut discard = [0u8; 1024];
        // Ends at the peer's close, at an error, or when the pre-authentication budget is spent.
        while let Ok(1..) = stream.read(&mut discard).await {}
    })
    .await;
}

/// A stream that first yields `prefix` — the bytes read while looking at the request head —
/// and then reads from the stream itself; writes go straight to the stream. It lets the
/// websocket handshake read the upgrade request that [`serve`] already read.
#[derive(Debug)]
pub struct Prefixed<S> {
    /// Bytes still to be replayed; emptied (and freed) once replayed.
    prefix: Vec<u8>,
    /// How much of `prefix` has been replayed.
    replayed: usize,
    /// The stream.
    inner: S,
}

impl<S> Prefixed<S> {
    /// Reads yield `prefix`, then what `inner` reads.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            replayed: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = this.prefix.get(this.replayed..).unwrap_or_default();
        if left.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        this.replayed += n;
        if this.replayed >= this.prefix.len() {
            // Replayed: free the buffer, which an idle connection would otherwise keep.
            this.prefix = Vec::new();
            this.replayed = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(buf: &[u8]) -> Head {
        match parse(buf) {
            Parsed::Complete(head) => head,
            other => panic!("expected a whole head, got {other:?}"),
        }
    }

    #[test]
    fn a_websocket_upgrade_is_recognised_and_other_requests_are_not() {
        let upgrade = head(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
              Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert!(upgrade.upgrade);
        let plain = head(b"GET /index.html HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n");
        assert!(!plain.upgrade);
        assert!(!plain.close);
        assert_eq!(plain.target, "/index.html");
        assert_eq!(plain.method, Method::Get);
    }

    #[test]
    fn closing_requests_are_recognised() {
        for request in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(head(request).close, "{}", String::from_utf8_lossy(request));
        }
        assert!(!head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").close);
    }

    #[test]
    fn partial_oversized_and_malformed_heads_are_told_apart() {
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse(many.as_bytes()), Parsed::TooManyHeaders);
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET /\0 HTTP/1.1\r\n\r\n",
            b"G\xffT / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Parsed::Bad, "{bad:?}");
        }
        let pipelined = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(head(pipelined).len, pipelined.len() / 2);
    }

    /// Whatever a peer sends, parsing and answering it returns; no input panics.
    #[test]
    fn arbitrary_bytes_never_panic_the_parser_or_the_router() {
        use rand_core::TryRng as _;
        let settings = crate::web::WebSettings::default();
        let seeds: [&[u8]; 4] = [
            b"GET /index.html?x HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br;q=0.5, gzip\r\n\r\n",
            b"GET https://h\xc3\xa9/\xc3\xa9://x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"HEAD * HTTP/1.0\r\nConnection: close\r\nContent-Length: 9\r\n\r\n",
            b"",
        ];
        let mut random = [0u8; 256];
        for round in 0..5_000usize {
            let _ = getrandom::SysRng.try_fill_bytes(&mut random);
            let seed = seeds[round % seeds.len()];
            // Half the inputs are a valid request with random bytes written over part of it,
            // half are random bytes alone.
            let input: Vec<u8> = if round % 2 == 0 && !seed.is_empty() {
                let mut input = seed.to_vec();
                let at = usize::from(random[0]) % input.len();
                let len = usize::from(random[1] % 8);
                for (i, b) in random[2..2 + len].iter().enumerate() {
                    if let Some(slot) = input.get_mut(at + i) {
                        *slot = *b;
                    }
                }
                input
            } else {
                random[..usize::from(random[0])].to_vec()
            };
            if let Parsed::Complete(head) = parse(&input) {
                assert!(head.len <= input.len());
                let response = crate::web::respond(
                    &settings,
                    head.method,
                    &head.target,
                    head.accepted,
                    SystemTime::now(),
                );
                let _ = response.head(head.close);
            }
        }
    }

    #[tokio::test]
    async fn the_prefix_is_replayed_before_the_stream_and_writes_pass_through() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut prefixed = Prefixed::new(b"hello ".to_vec(), ours);
        peer.write_all(b"world").await.unwrap();
        drop(peer.shutdown().await);
        let mut small = [0u8; 4];
        prefixed.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hell");
        let mut rest = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            let n = prefixed.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
            if rest.ends_with(b"world") {
                break;
            }
        }
        assert_eq!(rest, b"o world");
        assert!(
            prefixed.prefix.capacity() == 0,
            "the replayed prefix is freed"
        );
        prefixed.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
