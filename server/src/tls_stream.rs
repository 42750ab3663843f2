//! Server-side TLS that holds no buffer while a connection is idle.
//!
//! Why: issue 20 asks for at most 12 KiB of server memory per idle authenticated connection.
//! With rustls's buffered API (`ServerConnection`, behind `tokio_rustls::TlsAcceptor`) every
//! connection keeps a 4 KiB record buffer for its whole life (`DeframerVecBuffer` always keeps
//! room for the next read, and rustls offers no setting for it) — a third of the budget. This
//! module drives rustls's unbuffered API ([`UnbufferedServerConnection`]) instead, and owns the
//! buffers itself, so it can let them go.
//!
//! What [`TlsStream`] guarantees:
//! - **Memory.** Its three buffers — ciphertext read but not yet processed, ciphertext not yet
//!   sent, plaintext not yet read by the caller — hold no allocation when they hold no bytes, and
//!   each is given up at the end of the call that empties it. An idle connection therefore holds
//!   none ([`TlsStream::buffer_capacity`] says what it holds). Only a partial record a peer has
//!   begun and not finished is kept, shrunk to its size while the connection waits. Reads land
//!   first, and writes are encrypted, in a scratch buffer each thread has once: only bytes that
//!   must wait (a record not yet whole, ciphertext the socket does not take at once) are copied
//!   into the connection's own buffers, and a read that finds nothing allocates nothing.
//! - **Bounds.** Ciphertext read is at most [`MAX_INCOMING_HANDSHAKE`] during the handshake and
//!   [`MAX_INCOMING_TRAFFIC`] (one record of the largest size) after it; a peer that announces
//!   more gets an error, never a larger buffer. Plaintext waiting for the caller comes only from
//!   that ciphertext, so it is bounded by it. Writes accept new plaintext only while less than
//!   [`OUTGOING_HIGH_WATER`] bytes of ciphertext wait to be sent, and otherwise wait for the
//!   socket (back-pressure, as with tokio-rustls), so a peer that never reads cannot make the
//!   server buffer without bound.
//! - **Protocol.** rustls does all of TLS; this module only moves bytes and never reorders them:
//!   everything rustls encodes (handshake flights, session tickets, key updates, alerts) goes
//!   out in the order it was produced, before any application data encrypted after it. A
//!   `close_notify` from the peer is end of file for the reader; the socket closing without one
//!   is an [`io::ErrorKind::UnexpectedEof`] error, as with tokio-rustls. Bad input is an
//!   [`io::ErrorKind::InvalidData`] error (after a last attempt to send rustls's alert); later
//!   reads and writes fail with it too (a read that has already put plaintext authenticated
//!   before the error into the caller's buffer returns it, and the next read the error), while
//!   flush and shutdown still try to send the alert and close the socket. An
//!   error of the socket when writing is kept in the same way, and then flush and shutdown
//!   fail too: records rustls numbered may have been lost, so nothing more is sent. (A read
//!   error is not kept: it may be the pre-authentication budget's refusal, and the server
//!   still sends its notice after it.) Nothing here panics on any input.
//!
//! One [`TlsStream`] serves a reader and a writer (the websocket's two halves, or those of
//! `tokio::io::split`) through one lock. The socket remembers one waker for readability and one
//! for writability, so neither half may touch the other's side of the socket, or the other's
//! wakeup would be lost. A read therefore writes to the socket only after a fatal error (one
//! attempt to send rustls's alert, as with tokio-rustls), and then wakes a writer waiting on
//! the socket, which finds the error; a failure a write meets likewise wakes a reader waiting
//! on the socket. Nothing else a read makes needs sending at once: rustls
//! 0.23.46 holds its answer to a peer's key update until our next write, and encodes it before
//! that write's records; what a read may leave queued waits for the next write, flush or
//! shutdown. A write never reads the socket, and so never leaves plaintext for a reader
//! sleeping on the socket: a read waits on the socket only after rustls has processed every
//! complete record it holds.

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest TLS record on the wire: a 5-byte header and up to 2^14 + 2048 bytes of
/// protected payload. That is the bound rustls enforces on every record it receives (its
/// `MAX_WIRE_SIZE`: TLS 1.2's limit, which covers TLS 1.3's 2^14 + 256); a longer header is
/// refused by rustls before the record arrives.
pub const MAX_RECORD_WIRE: usize = 5 + 16_384 + 2_048;

/// The largest handshake message rustls accepts (its `MAX_HANDSHAKE_SIZE`); it refuses a
/// message that announces more.
const MAX_HANDSHAKE_MESSAGE: usize = 0xffff;

/// The most ciphertext held while the handshake runs: rustls reassembles a handshake message
/// split over several records in place, so the records of the largest message it accepts stay
/// in the buffer until the message is whole, and the next record may have begun behind them.
/// (Before the handshake is done the pre-authentication budget, [`crate::preauth`], limits a
/// connection to fewer bytes than this anyway.)
pub const MAX_INCOMING_HANDSHAKE: usize = MAX_HANDSHAKE_MESSAGE + 2 * MAX_RECORD_WIRE;

/// The most ciphertext held after the handshake: one record of the largest size. Every complete
/// record is processed before the socket is read again, so what remains is at most the start of
/// one record (or the fragments of a post-handshake message, a few bytes in TLS 1.3).
pub const MAX_INCOMING_TRAFFIC: usize = MAX_RECORD_WIRE;

thread_local! {
    /// Where a write is encrypted before it goes to the socket, and where a read from the socket
    /// lands first, shared by the connections one thread serves (it only ever holds
    /// ciphertext): when the socket takes a write whole (the usual case) it needs no buffer of
    /// the connection's own, and a read that finds nothing allocates nothing. It grows to the
    /// largest one write needs ([`MAX_RECORDS_PER_WRITE`] records plus what rustls queued
    /// before them: about 66 KiB) and is never shrunk, so it is zeroed only as it grows: about
    /// 66 KiB per worker thread, not per connection.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer ([`SCRATCH`]), or with a fresh one if that is
/// in use or gone (never in practice: `f` never reaches here again, and a thread's buffer
/// outlives its tasks). `f` runs exactly once either way: only when the buffer is lent is it
/// called with it.
fn with_scratch<R>(mut f: impl FnMut(&mut Vec<u8>) -> R) -> R {
    let lent = SCRATCH.try_with(|scratch| scratch.try_borrow_mut().ok().map(|mut buf| f(&mut buf)));
    match lent {
        Ok(Some(result)) => result,
        _ => f(&mut Vec::new()),
    }
}

/// How much one read from the socket asks for at most: one record of the largest size, so that
/// a whole record (or many small ones) arrives in one system call.
const READ_CHUNK: usize = MAX_RECORD_WIRE;

/// The most records one write makes: four, so that what the websocket layer hands over at once
/// (its 16 KiB write buffer plus the frame that overflowed it) is encrypted and sent with one
/// system call, as tokio-rustls did. (At one record per write, fan-out of 4112-byte messages
/// took a system call per record and 13.2–15.3 µs of server CPU per delivery, against
/// 10.9–11.1 µs at four.)
pub const MAX_RECORDS_PER_WRITE: usize = 4;

/// The most plaintext one write encrypts: [`MAX_RECORDS_PER_WRITE`] full records' payload
/// (2^14 bytes each, the TLS limit).
const MAX_PLAINTEXT_PER_WRITE: usize = MAX_RECORDS_PER_WRITE * 16_384;

/// A write accepts new plaintext only while less ciphertext than this waits to be sent; past
/// it, the write waits until the socket has taken all of it. What waits is therefore below
/// this plus one write's records ([`MAX_RECORDS_PER_WRITE`] of at most [`MAX_RECORD_WIRE`]
/// bytes) and whatever rustls queued before them, such as a key update: under 100 KiB.
pub const OUTGOING_HIGH_WATER: usize = MAX_RECORD_WIRE;

/// A server-side TLS stream over `S` (the TCP stream), made by [`accept`].
pub struct TlsStream<S> {
    /// The socket.
    io: S,
    /// rustls's connection state: keys, handshake state, what it queued to send.
    conn: UnbufferedServerConnection,
    /// Ciphertext read from the socket and not yet processed by rustls. Empty (no allocation)
    /// whenever it holds nothing.
    incoming: Vec<u8>,
    /// Ciphertext to send; `outgoing[sent..]` has not been written to the socket yet. Empty
    /// (no allocation) once all of it has been.
    outgoing: Vec<u8>,
    /// How much of `outgoing` the socket has taken.
    sent: usize,
    /// Decrypted application data the caller has not read yet; `plaintext[taken..]` is left.
    /// Empty (no allocation) once read.
    plaintext: Vec<u8>,
    /// How much of `plaintext` the caller has read.
    taken: usize,
    /// The peer sent `close_notify`: after the plaintext left, reads are at end of file.
    peer_closed: bool,
    /// We queued our `close_notify` (`poll_shutdown`): no more writes.
    write_closed: bool,
    /// The TLS error that ended the connection; later reads and writes return it again.
    failed: Option<rustls::Error>,
    /// The kind of the socket's write error that ended the connection: every later call fails
    /// with it, and nothing more is sent, since records rustls numbered may not have gone out.
    io_failed: Option<io::ErrorKind>,
    /// The waker of the last write, flush or shutdown that had to wait: woken when a read has
    /// touched the socket's write side, which made the socket forget it.
    write_waker: Option<Waker>,
    /// The waker of the last read that had to wait for the socket: woken when a write, flush
    /// or shutdown has met a failure, so that the reader learns of it without waiting for the
    /// peer.
    read_waker: Option<Waker>,
}

/// What a call into rustls is for, when it finds the connection able to send application data.
enum Intent<'a> {
    /// Only process what arrived and collect what rustls wants sent.
    Nothing,
    /// Encrypt this plaintext (at most [`MAX_PLAINTEXT_PER_WRITE`] bytes) into the start of
    /// this buffer (grown if too small; never shrunk, so zeroed only once).
    Encrypt(&'a [u8], &'a mut Vec<u8>),
    /// Queue our `close_notify`.
    CloseNotify,
}

/// What one call into rustls came to.
enum Step {
    /// Something was done (a record processed, bytes encoded); ask again.
    Progress,
    /// Plaintext was added to `plaintext`.
    Plaintext,
    /// Nothing more can be done without more input; application data may be sent.
    Idle,
    /// Nothing more can be done without more input; the handshake is not done.
    Blocked,
    /// `close_notify` was queued.
    Wrote,
    /// This much plaintext was encrypted into the first this-many bytes of the buffer given.
    Encrypted(usize, usize),
    /// Both sides have sent `close_notify`: nothing more will happen.
    Closed,
}

/// Performs the server side of a TLS handshake on `io` with `config`, and returns the stream
/// once the handshake is complete and everything rustls wrote for it has been sent.
///
/// The caller bounds how long this may take (the authentication deadline) and how much it may
/// read (the pre-authentication budget wrapped around `io`).
pub async fn accept<S>(config: Arc<ServerConfig>, io: S) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(invalid_data)?;
    let mut stream = TlsStream::new(io, conn);
    poll_fn(|cx| {
        let result = stream.poll_handshake(cx);
        stream.finish(cx, result)
    })
    .await?;
    Ok(stream)
}

fn invalid_data(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// An error of this module's own (not rustls's verdict on the input), as the error the stream
/// fails with.
fn local(why: impl std::fmt::Display) -> (rustls::Error, bool) {
    (rustls::Error::General(why.to_string()), false)
}

/// The room an encryption needs, read from the error rustls gives for a buffer that is too
/// small.
fn encrypt_required_size(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// Lets `write` put its output at the end of `out`: asks it once with no room to learn how much
/// it needs (rustls writes nothing then), makes that room, and asks again.
fn append<E>(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let needed = match write(&mut []) {
        Ok(_) => return Ok(()),
        Err(e) => needs(&e).ok_or(e)?,
    };
    let start = out.len();
    out.resize(start.saturating_add(needed), 0);
    let result = match out.get_mut(start..) {
        Some(room) => write(room),
        None => Ok(0),
    };
    let written = result.as_ref().map_or(0, |n| *n);
    out.truncate(start.saturating_add(written));
    result.map(drop)
}

/// Lets `write` put its output at the start of `buf`, as [`append`] does at its end, and says
/// how long it is. `buf` only grows, so a buffer used again is not zeroed again.
fn fill<E>(
    buf: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> Result<usize, E> {
    let needed = match write(&mut []) {
        Ok(n) => return Ok(n),
        Err(e) => needs(&e).ok_or(e)?,
    };
    if buf.len() < needed {
        buf.resize(needed, 0);
    }
    match buf.get_mut(..needed) {
        Some(room) => write(room),
        None => Ok(0),
    }
}

/// The room an encode needs, read from the error rustls gives for a buffer that is too small.
fn encode_required_size(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        EncodeError::AlreadyEncoded => None,
    }
}

impl<S> TlsStream<S> {
    /// A stream over `io` driven by `conn`, before its handshake: every buffer empty, nothing
    /// failed or closed, no waker waiting.
    fn new(io: S, conn: UnbufferedServerConnection) -> Self {
        TlsStream {
            io,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            plaintext: Vec::new(),
            taken: 0,
            peer_closed: false,
            write_closed: false,
            failed: None,
            io_failed: None,
            write_waker: None,
            read_waker: None,
        }
    }

    /// The bytes of buffer this stream holds outside rustls (capacity of its incoming,
    /// outgoing and plaintext buffers): zero while the connection is idle.
    pub fn buffer_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plaintext.capacity()
    }

    /// The most unprocessed ciphertext held now.
    fn incoming_limit(&self) -> usize {
        if self.conn.is_handshaking() {
            MAX_INCOMING_HANDSHAKE
        } else {
            MAX_INCOMING_TRAFFIC
        }
    }

    /// The error this stream failed with, if it did.
    fn check_failed(&self) -> io::Result<()> {
        self.check_io_failed()?;
        match &self.failed {
            Some(e) => Err(invalid_data(e.clone())),
            None => Ok(()),
        }
    }

    /// The socket error this stream failed with, if it did.
    fn check_io_failed(&self) -> io::Result<()> {
        match self.io_failed {
            Some(kind) => Err(io::Error::new(
                kind,
                "the TLS stream's socket failed earlier",
            )),
            None => Ok(()),
        }
    }

    /// Records a socket error as the end of the connection, and returns it.
    fn io_fail(&mut self, e: io::Error) -> io::Error {
        self.io_failed.get_or_insert(e.kind());
        e
    }

    /// Asks rustls for its next state once, with the ciphertext held, and acts on it.
    fn step(&mut self, intent: Intent<'_>) -> io::Result<Step> {
        self.check_failed()?;
        let UnbufferedStatus { mut discard, state } =
            self.conn.process_tls_records(&mut self.incoming);
        // The error, and whether rustls raised it on the input (and so may have queued an alert).
        let outcome: Result<Step, (rustls::Error, bool)> = match state {
            Err(e) => Err((e, true)),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut outcome = Ok(Step::Plaintext);
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard = discard.saturating_add(record.discard);
                            self.plaintext.extend_from_slice(record.payload);
                        }
                        Err(e) => {
                            outcome = Err((e, false));
                            break;
                        }
                    }
                }
                outcome
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => append(
                &mut self.outgoing,
                |buf| encode.encode(buf),
                encode_required_size,
            )
            .map(|()| Step::Progress)
            .map_err(local),
            // What rustls encoded is in `outgoing` already, in order, and is sent before
            // anything queued later: rustls needs to know no more. (rustls's contract says to
            // call `done` once the bytes are sent; in 0.23.46 it only clears the flag that
            // made rustls return this state, so calling it early changes nothing. Recheck on
            // a rustls upgrade.)
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                Ok(Step::Progress)
            }
            Ok(ConnectionState::BlockedHandshake) => Ok(Step::Blocked),
            Ok(ConnectionState::PeerClosed) => {
                self.peer_closed = true;
                // rustls reads nothing after close_notify: what came behind it is let go.
                discard = self.incoming.len();
                Ok(Step::Progress)
            }
            Ok(ConnectionState::Closed) => {
                self.peer_closed = true;
                Ok(Step::Closed)
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match intent {
                Intent::Nothing => Ok(Step::Idle),
                Intent::Encrypt(data, records) => fill(
                    records,
                    |buf| traffic.encrypt(data, buf),
                    encrypt_required_size,
                )
                .map(|len| Step::Encrypted(data.len(), len))
                .map_err(local),
                Intent::CloseNotify => append(
                    &mut self.outgoing,
                    |buf| traffic.queue_close_notify(buf),
                    encrypt_required_size,
                )
                .map(|()| Step::Wrote)
                .map_err(local),
            },
            // Early data is off in our configuration (`max_early_data_size` 0), so rustls never
            // offers it; if it ever did, it would be replayable, and is refused.
            Ok(ConnectionState::ReadEarlyData(_)) => Err(local("early data is not accepted")),
            Ok(other) => Err(local(format!("unexpected TLS state {other:?}"))),
        };
        self.discard(discard);
        outcome.map_err(|(e, from_rustls)| self.fail(e, from_rustls))
    }

    /// Drops the first `n` bytes of the unprocessed ciphertext, as rustls asked.
    fn discard(&mut self, n: usize) {
        let n = n.min(self.incoming.len());
        self.incoming.drain(..n);
    }

    /// Records the error that ends the connection. If rustls reported it, the alert rustls
    /// queued to tell the peer is collected to be sent; rustls hands it out as the very next
    /// state, before it would look at the input again.
    ///
    /// It is asked only once. Asked again once its queue is empty, it would deframe the
    /// offending input again and raise a second fatal alert (which rustls 0.23.46
    /// debug-asserts against), and its public API cannot say whether anything is still
    /// queued. The one thing that can be queued before the alert is the answer to a peer's key
    /// update not yet sent (rustls emits it in front of the next record it encodes): that
    /// answer is then sent and the alert is not, and the peer sees the connection end without
    /// `close_notify`, which is an error for it all the same.
    fn fail(&mut self, e: rustls::Error, from_rustls: bool) -> io::Error {
        self.failed = Some(e.clone());
        if from_rustls {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
                // Best effort: the error is what matters, the alert is a courtesy.
                let _ = append(
                    &mut self.outgoing,
                    |buf| encode.encode(buf),
                    encode_required_size,
                );
            }
            self.discard(discard);
        }
        invalid_data(e)
    }

    /// Gives up buffers that hold nothing, and shrinks a partial record's buffer to its size:
    /// called whenever a call returns, so that nothing is held for an idle connection.
    fn settle(&mut self, waiting: bool) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        } else if waiting {
            self.incoming.shrink_to_fit();
        }
        if self.sent >= self.outgoing.len() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        if self.taken >= self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// Writes queued ciphertext to the socket until none is left (`Ready(Ok)`) or the socket is
    /// full (`Pending`, woken when it has room).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.outgoing.get(self.sent..).filter(|p| !p.is_empty()) {
            match ready!(Pin::new(&mut self.io).poll_write(cx, pending)) {
                Ok(0) => return Poll::Ready(Err(self.io_fail(io::ErrorKind::WriteZero.into()))),
                Ok(n) => self.sent = self.sent.saturating_add(n),
                Err(e) => return Poll::Ready(Err(self.io_fail(e))),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads more ciphertext from the socket, within the limit: `Ready(Ok(0))` is the socket's
    /// end of file.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let room = self.incoming_limit().saturating_sub(self.incoming.len());
        if room == 0 {
            // rustls refuses longer records and handshake messages itself; reaching the limit
            // means a peer splitting one message into many tiny records.
            let e = rustls::Error::General("TLS input exceeds the buffer limit".to_string());
            return Poll::Ready(Err(self.fail(e, false)));
        }
        // (During the handshake, the pre-authentication budget wrapped around the socket
        // shortens this read to what is left of it.)
        let want = room.min(READ_CHUNK);
        // Read into the thread's scratch buffer, so that a read that finds nothing (most of
        // them, on an idle connection) allocates nothing.
        with_scratch(|chunk| self.receive_via(cx, want, chunk))
    }

    /// Reads up to `want` bytes into `chunk` (grown if too small), and appends them to
    /// `incoming`.
    fn receive_via(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
        chunk: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        if chunk.len() < want {
            chunk.resize(want, 0);
        }
        let mut buf = ReadBuf::new(chunk.get_mut(..want).unwrap_or_default());
        // A read error is not kept, unlike a write error: it loses nothing rustls numbered, and
        // it may be the pre-authentication budget's refusal, after which the server still
        // sends its notice.
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// Ends every poll: once the stream has failed, a call that returns (with the error, or
    /// with plaintext authenticated before it) makes one last attempt to send rustls's alert
    /// (its outcome does not matter: the error is what the caller gets), and wakes a writer and
    /// a reader waiting on the socket, since this attempt may have made the socket forget the
    /// writer's waker, and both will find the error; then buffers are settled.
    fn finish<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if (self.failed.is_some() || self.io_failed.is_some()) && result.is_ready() {
            if self.io_failed.is_none() {
                let _ = self.poll_send(cx);
            }
            if let Some(writer) = self.write_waker.take() {
                writer.wake();
            }
            if let Some(reader) = self.read_waker.take() {
                reader.wake();
            }
        }
        self.settle(result.is_pending());
        result
    }

    /// Ends every write-side poll: remembers the waker of one that waits, for [`Self::finish`].
    fn finish_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let result = self.finish(cx, result);
        if result.is_pending() {
            match &mut self.write_waker {
                Some(waker) => waker.clone_from(cx.waker()),
                None => self.write_waker = Some(cx.waker().clone()),
            }
        } else {
            self.write_waker = None;
        }
        result
    }

    /// Drives the handshake until it is complete and its last flight has been sent.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.step(Intent::Nothing)? {
                Step::Progress | Step::Plaintext | Step::Wrote | Step::Encrypted(..) => {}
                Step::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS connection closed during the handshake",
                    )));
                }
                Step::Idle if !self.conn.is_handshaking() => {
                    ready!(self.poll_send(cx))?;
                    return Poll::Ready(Ok(()));
                }
                Step::Idle | Step::Blocked => {
                    if self.peer_closed {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "TLS connection closed during the handshake",
                        )));
                    }
                    // Our flight must be on its way before we wait for the answer to it.
                    if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
            }
        }
    }

    /// [`AsyncRead::poll_read`], before buffers are settled.
    fn read_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut delivered = false;
        loop {
            if let Some(left) = self.plaintext.get(self.taken..).filter(|l| !l.is_empty()) {
                let n = left.len().min(buf.remaining());
                buf.put_slice(left.get(..n).unwrap_or_default());
                self.taken = self.taken.saturating_add(n);
                delivered |= n > 0;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if self.peer_closed {
                // End of file: everything the peer sent before close_notify has been read.
                return Poll::Ready(Ok(()));
            }
            // An error behind plaintext already handed over: that plaintext was authenticated,
            // so it is returned now, and the error by the next read (every error of `step` is
            // kept, so that read meets it again).
            let step = match self.step(Intent::Nothing) {
                Err(_) if delivered => return Poll::Ready(Ok(())),
                step => step?,
            };
            match step {
                Step::Progress | Step::Plaintext | Step::Wrote | Step::Encrypted(..) => {}
                Step::Closed => return Poll::Ready(Ok(())),
                Step::Idle | Step::Blocked => {
                    // Every complete record is processed. Whatever rustls queued is left to the
                    // next write, flush or shutdown: a read does not touch the socket's write
                    // side (see the module doc).
                    if delivered {
                        return Poll::Ready(Ok(()));
                    }
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        )));
                    }
                }
            }
        }
    }

    /// [`AsyncWrite::poll_write`], before buffers are settled.
    fn write_plaintext(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.check_failed()?;
        if self.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS stream shut down for writing",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.outgoing.len().saturating_sub(self.sent) >= OUTGOING_HIGH_WATER {
            ready!(self.poll_send(cx))?;
        }
        let data = data.get(..MAX_PLAINTEXT_PER_WRITE).unwrap_or(data);
        with_scratch(|records| self.encrypt_and_send(cx, data, records))
    }

    /// Encrypts `data` into `records`, and sends the records: straight from there if nothing
    /// is queued before them, the rest of them (what the socket does not take now) queued in
    /// `outgoing`, which the next write or flush sends first.
    fn encrypt_and_send(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        records: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        let (written, len) = loop {
            match self.step(Intent::Encrypt(data, &mut *records))? {
                Step::Encrypted(written, len) => break (written, len),
                Step::Progress | Step::Plaintext | Step::Wrote => {}
                Step::Idle | Step::Blocked => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "TLS handshake not complete",
                    )));
                }
                Step::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "TLS connection closed",
                    )));
                }
            }
        };
        let mut records = records.get(..len).unwrap_or_default();
        // What rustls queued before (a key update's answer) and earlier writes go first.
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        if self.sent >= self.outgoing.len() {
            while !records.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, records) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(self.io_fail(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => records = records.get(n..).unwrap_or_default(),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_fail(e))),
                    Poll::Pending => break,
                }
            }
        }
        // The rest waits for the next write or flush, and counts against the high-water mark.
        self.outgoing.extend_from_slice(records);
        Poll::Ready(Ok(written))
    }

    /// [`AsyncWrite::poll_shutdown`], before buffers are settled.
    fn close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_io_failed()?;
        if !self.write_closed && self.failed.is_none() {
            // Until our close_notify is queued (`Wrote`). A handshake not done has none to send
            // (`Blocked`); `Closed` means ours went out already.
            while let Step::Progress | Step::Plaintext = self.step(Intent::CloseNotify)? {}
            self.write_closed = true;
        }
        ready!(self.poll_send(cx))?;
        match ready!(Pin::new(&mut self.io).poll_shutdown(cx)) {
            // Not being connected any more is what shutting down asks for.
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(self.io_fail(e))),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = this.read_plaintext(cx, buf);
        let result = this.finish(cx, result);
        // A read waits only on the socket: remembered, so that a failure a write meets wakes it.
        if result.is_pending() {
            match &mut this.read_waker {
                Some(waker) => waker.clone_from(cx.waker()),
                None => this.read_waker = Some(cx.waker().clone()),
            }
        } else {
            this.read_waker = None;
        }
        result
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = this.write_plaintext(cx, data);
        this.finish_write(cx, result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match this.check_io_failed() {
            Err(e) => Poll::Ready(Err(e)),
            Ok(()) => match this.poll_send(cx) {
                Poll::Ready(Ok(())) => match Pin::new(&mut this.io).poll_flush(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(this.io_fail(e))),
                    other => other,
                },
                other => other,
            },
        };
        this.finish_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = this.close(cx);
        this.finish_write(cx, result)
    }
}

impl<S> std::fmt::Debug for TlsStream<S> {
    /// Sizes and flags only: never key material or data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len().saturating_sub(self.sent))
            .field(
                "plaintext",
                &self.plaintext.len().saturating_sub(self.taken),
            )
            .field("peer_closed", &self.peer_closed)
            .field("write_closed", &self.write_closed)
            .field("failed", &self.failed.is_some())
            .field("io_failed", &self.io_failed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    type Client = tokio_rustls::client::TlsStream<TcpStream>;

    /// A server and a client configuration that trusts it, both TLS 1.3 only, as in production.
    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        configs_with_client_versions(&[&rustls::version::TLS13])
    }

    /// As [`configs`], with a client that offers these protocol versions.
    fn configs_with_client_versions(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = generated.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let server = crate::tls::TlsIdentity {
            certs: vec![cert.clone()],
            key,
        }
        .server_config()
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// A TCP connection over loopback: (the server's end, the client's end).
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = bounded(async { tokio::join!(client, listener.accept()) }).await;
        (accepted.unwrap().0, client.unwrap())
    }

    /// A completed handshake between [`accept`] and a tokio-rustls client over real sockets.
    async fn connected() -> (TlsStream<TcpStream>, Client) {
        let (server_config, client_config) = configs();
        let (server_tcp, client_tcp) = tcp_pair().await;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        // Bounded: a handshake that hangs fails the test instead of stalling the run.
        let (server, client) = bounded(async {
            tokio::join!(
                accept(server_config, server_tcp),
                tokio_rustls::TlsConnector::from(client_config).connect(name, client_tcp)
            )
        })
        .await;
        (server.unwrap(), client.unwrap())
    }

    /// Polls `f` once.
    async fn poll_once<T>(f: impl Future<Output = T>) -> Poll<T> {
        let mut f = std::pin::pin!(f);
        poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
    }

    /// Bytes that show where they were cut: no two 251-byte windows alike.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_client_gets_back_what_it_sent() {
        let (mut server, mut client) = connected().await;
        client.write_all(b"hello over TLS").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 14];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello over TLS");
        server.write_all(&buf).await.unwrap();
        server.flush().await.unwrap();
        let mut back = [0u8; 14];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello over TLS");
    }

    #[tokio::test]
    async fn a_message_of_many_records_arrives_whole_both_ways() {
        let (mut server, mut client) = connected().await;
        // 300 KiB: 19 full records each way, cut across reads wherever the socket cuts them.
        let message = pattern(300 * 1024);
        client.write_all(&message).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; message.len()];
        server.read_exact(&mut got).await.unwrap();
        assert!(got == message, "the server read what the client sent");
        server.write_all(&got).await.unwrap();
        server.flush().await.unwrap();
        let mut back = vec![0u8; message.len()];
        client.read_exact(&mut back).await.unwrap();
        assert!(back == message, "the client read what the server sent");
    }

    #[tokio::test]
    async fn many_small_records_in_one_read_all_arrive_in_order() {
        let (mut server, mut client) = connected().await;
        // 200 records of 7 bytes, all sent before the server reads: one read takes many.
        for i in 0..200u32 {
            client.write_all(&[i as u8; 7]).await.unwrap();
        }
        client.flush().await.unwrap();
        let mut got = vec![0u8; 200 * 7];
        server.read_exact(&mut got).await.unwrap();
        for (i, record) in got.chunks(7).enumerate() {
            assert_eq!(record, &[i as u8; 7], "record {i}");
        }
    }

    #[tokio::test]
    async fn the_client_closing_with_close_notify_is_end_of_file_for_the_server() {
        let (mut server, mut client) = connected().await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
        // The server can still answer, then close in turn.
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"bye");
    }

    #[tokio::test]
    async fn the_server_shutting_down_sends_close_notify() {
        let (mut server, mut client) = connected().await;
        server.write_all(b"goodbye").await.unwrap();
        server.shutdown().await.unwrap();
        // tokio-rustls reports a close without close_notify as an error, not as end of file.
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"goodbye");
        assert!(
            server.write_all(b"more").await.is_err(),
            "no writes after shutdown"
        );
    }

    #[tokio::test]
    async fn a_peer_vanishing_without_close_notify_is_an_error_not_end_of_file() {
        let (mut server, client) = connected().await;
        let (mut tcp, _) = client.into_inner();
        tcp.shutdown().await.unwrap();
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[tokio::test]
    async fn garbage_instead_of_a_client_hello_fails_the_handshake() {
        let (server_config, _) = configs();
        for garbage in [
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            // A handshake record announcing more than any record may hold.
            vec![0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
            pattern(5000),
        ] {
            let (server_tcp, mut client_tcp) = tcp_pair().await;
            client_tcp.write_all(&garbage).await.unwrap();
            let err = accept(server_config.clone(), server_tcp).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }

    #[tokio::test]
    async fn a_client_hello_larger_than_the_preauthentication_budget_is_cut_off_by_it() {
        let (server_config, _) = configs();
        let (server_tcp, mut client_tcp) = tcp_pair().await;
        // A ClientHello announcing 65,520 bytes (under rustls's own 64 KiB cap), sent as four
        // full plaintext records: rustls would wait for all of it.
        let mut hello = vec![0x01, 0x00, 0xff, 0xf0];
        hello.resize(4 * 16_384, 0);
        let mut wire = Vec::new();
        for record in hello.chunks(16_384) {
            wire.extend([0x16, 0x03, 0x01, 0x40, 0x00]);
            wire.extend(record);
        }
        let sender = tokio::spawn(async move {
            let _ = client_tcp.write_all(&wire).await;
            client_tcp
        });
        let budgeted = crate::preauth::Budgeted::new(
            server_tcp,
            crate::preauth::MIN_BUDGET,
            crate::preauth::Gate::default(),
        );
        let err = accept(server_config, budgeted).await.unwrap_err();
        assert!(crate::preauth::is_exhausted(&err), "{err}");
        drop(sender);
    }

    #[tokio::test]
    async fn garbage_after_the_handshake_is_an_error_and_stays_one() {
        let (mut server, mut client) = connected().await;
        // An application-data record that does not decrypt.
        let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        record.extend(pattern(0x40));
        client.get_mut().0.write_all(&record).await.unwrap();
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(
            server.read(&mut buf).await.is_err(),
            "reads fail from now on"
        );
        assert!(server.write_all(b"x").await.is_err(), "and so do writes");
    }

    #[tokio::test]
    async fn a_record_announcing_too_much_after_the_handshake_is_an_error() {
        let (mut server, mut client) = connected().await;
        client
            .get_mut()
            .0
            .write_all(&[0x17, 0x03, 0x03, 0xff, 0xff, 0, 0, 0])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn after_a_client_key_update_messages_still_go_both_ways() {
        let (mut server, mut client) = connected().await;
        for round in 0..3u8 {
            // The client's key update asks the server to update its keys too: the server's
            // answer must go out before its next record, or the client cannot read it.
            client.get_mut().1.refresh_traffic_keys().unwrap();
            client.write_all(&[round; 100]).await.unwrap();
            client.flush().await.unwrap();
            let mut got = [0u8; 100];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [round; 100]);
            server.write_all(&[round + 10; 100]).await.unwrap();
            server.flush().await.unwrap();
            let mut back = [0u8; 100];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round + 10; 100], "round {round}");
        }
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer() {
        let (mut server, mut client) = connected().await;
        assert_eq!(server.buffer_capacity(), 0, "after the handshake");
        client.write_all(&pattern(40_000)).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; 40_000];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(&got).await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(poll_once(server.read(&mut buf)).await.is_pending());
        assert_eq!(
            server.buffer_capacity(),
            0,
            "after traffic, waiting for more"
        );

        // The start of a record is kept, at its size, until the rest comes.
        client
            .get_mut()
            .0
            .write_all(&[0x17, 0x03, 0x03])
            .await
            .unwrap();
        server.io.readable().await.unwrap();
        assert!(poll_once(server.read(&mut buf)).await.is_pending());
        assert_eq!(server.buffer_capacity(), 3, "only the partial record");
    }

    /// How long a test waits for something that should happen at once before failing: a
    /// bound on a hang, not a timing assertion.
    const HANG: std::time::Duration = std::time::Duration::from_secs(10);

    /// `f`'s outcome, or a test failure if it does not come within [`HANG`].
    async fn bounded<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(HANG, f)
            .await
            .expect("this should not wait for ever")
    }

    #[tokio::test]
    async fn a_writer_waiting_for_a_full_socket_is_woken_after_a_read_on_the_other_half() {
        let (server, mut client) = connected().await;
        let (mut reader, mut writer) = tokio::io::split(server);
        let chunk = pattern(MAX_PLAINTEXT_PER_WRITE);
        let (blocked_tx, blocked_rx) = tokio::sync::oneshot::channel();
        // The writer writes until the socket is full (the client reads nothing yet), then
        // finishes the write that had to wait, and says how much it wrote in all.
        let writer_task = tokio::spawn(async move {
            let mut blocked = Some(blocked_tx);
            let mut chunks = 0usize;
            while blocked.is_some() {
                chunks += 1;
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    let n = poll_fn(|cx| {
                        let poll = Pin::new(&mut writer).poll_write(cx, rest);
                        if poll.is_pending()
                            && let Some(tx) = blocked.take()
                        {
                            let _ = tx.send(chunks * chunk.len());
                        }
                        poll
                    })
                    .await
                    .unwrap();
                    rest = &rest[n..];
                }
            }
            writer.flush().await.unwrap();
        });
        let total = bounded(blocked_rx).await.unwrap();
        // While the writer waits, the other half reads a message.
        client.write_all(b"hello").await.unwrap();
        client.flush().await.unwrap();
        let mut hello = [0u8; 5];
        bounded(reader.read_exact(&mut hello)).await.unwrap();
        assert_eq!(&hello, b"hello");
        // Now the client reads everything: the socket has room again, and the writer must be
        // woken to finish.
        let mut got = vec![0u8; total];
        let read = tokio::time::timeout(HANG, client.read_exact(&mut got)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "the client got everything: the writer was woken"
        );
        let expected = pattern(MAX_PLAINTEXT_PER_WRITE);
        assert!(got.chunks(MAX_PLAINTEXT_PER_WRITE).all(|c| c == expected));
        tokio::time::timeout(HANG, writer_task)
            .await
            .expect("the writer finished")
            .unwrap();
    }

    /// The rustls error inside an I/O error, if that is what it is.
    fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
        e.get_ref()?.downcast_ref::<rustls::Error>()
    }

    /// `err` says the peer sent the fatal alert `alert`.
    fn assert_alert_received(err: &io::Error, alert: rustls::AlertDescription) {
        assert_eq!(
            rustls_error(err),
            Some(&rustls::Error::AlertReceived(alert)),
            "{err}"
        );
    }

    /// An application-data record that does not decrypt.
    fn bad_record() -> Vec<u8> {
        let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        record.extend(pattern(0x40));
        record
    }

    #[tokio::test]
    async fn a_peer_sending_a_bad_record_is_told_so_with_an_alert() {
        let (mut server, mut client) = connected().await;
        client.get_mut().0.write_all(&bad_record()).await.unwrap();
        let mut buf = [0u8; 16];
        bounded(server.read(&mut buf)).await.unwrap_err();
        let err = bounded(client.read(&mut buf)).await.unwrap_err();
        assert_alert_received(&err, rustls::AlertDescription::BadRecordMac);
    }

    #[tokio::test]
    async fn a_fatal_alert_from_the_peer_is_an_error_not_end_of_file() {
        let (mut server, mut client) = connected().await;
        // The client cannot decrypt this, and answers with a fatal bad_record_mac alert.
        server.io.write_all(&bad_record()).await.unwrap();
        let mut buf = [0u8; 16];
        bounded(client.read(&mut buf)).await.unwrap_err();
        let err = bounded(server.read(&mut buf)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_alert_received(&err, rustls::AlertDescription::BadRecordMac);
    }

    #[tokio::test]
    async fn a_connection_cut_in_the_middle_of_a_record_is_an_unexpected_end_of_file() {
        let (mut server, client) = connected().await;
        let (mut tcp, _) = client.into_inner();
        // A record header announcing 64 bytes, and 3 of them.
        tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3])
            .await
            .unwrap();
        tcp.shutdown().await.unwrap();
        let mut buf = [0u8; 16];
        let err = bounded(server.read(&mut buf)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[tokio::test]
    async fn a_read_into_an_empty_buffer_returns_at_once() {
        let (mut server, _client) = connected().await;
        let mut empty = [0u8; 0];
        // Nothing has arrived: a read that waited for the socket would be pending.
        assert!(matches!(
            poll_once(server.read(&mut empty)).await,
            Poll::Ready(Ok(0))
        ));
    }

    #[tokio::test]
    async fn data_after_the_peers_close_notify_is_not_delivered() {
        let (mut server, mut client) = connected().await;
        // "last", close_notify and a record that would fail to decrypt, in one segment.
        let conn = &mut client.get_mut().1;
        io::Write::write_all(&mut conn.writer(), b"last").unwrap();
        conn.send_close_notify();
        let mut wire = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
        wire.extend(bad_record());
        client.get_mut().0.write_all(&wire).await.unwrap();
        let mut got = Vec::new();
        bounded(server.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last");
        let mut buf = [0u8; 16];
        assert_eq!(
            bounded(server.read(&mut buf)).await.unwrap(),
            0,
            "still end of file"
        );
        assert_eq!(server.buffer_capacity(), 0, "what followed was let go");
    }

    #[tokio::test]
    async fn records_the_reader_left_are_processed_by_a_write_and_still_read_in_order() {
        let (mut server, mut client) = connected().await;
        let mut wire = Vec::new();
        let conn = &mut client.get_mut().1;
        for part in [b"0123456789", b"abcdefghij"] {
            io::Write::write_all(&mut conn.writer(), part).unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut wire).unwrap();
            }
        }
        client.get_mut().0.write_all(&wire).await.unwrap();
        // The first read decrypts the first record only if it stops at it; either way the
        // rest is left in the stream's buffers when the write runs.
        let mut one = [0u8; 1];
        bounded(server.read_exact(&mut one)).await.unwrap();
        bounded(server.write_all(b"x")).await.unwrap();
        // The write processed what the reader left: the rest of the plaintext waits for the
        // reader, and no ciphertext is left unprocessed.
        assert_eq!(server.plaintext.len() - server.taken, 19);
        assert!(
            server.incoming.is_empty(),
            "nothing unprocessed after the write"
        );
        let mut rest = [0u8; 19];
        bounded(server.read_exact(&mut rest)).await.unwrap();
        assert_eq!(&one, b"0");
        assert_eq!(&rest, b"123456789abcdefghij");
    }

    #[tokio::test]
    async fn plaintext_read_before_a_bad_record_is_delivered_and_the_error_comes_next() {
        let (mut server, mut client) = connected().await;
        // A good record and a bad one, in one segment.
        let mut wire = Vec::new();
        let conn = &mut client.get_mut().1;
        io::Write::write_all(&mut conn.writer(), b"good").unwrap();
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
        wire.extend(bad_record());
        bounded(client.get_mut().0.write_all(&wire)).await.unwrap();
        let mut buf = [0u8; 64];
        let n = bounded(server.read(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"good");
        let err = bounded(server.read(&mut buf)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // The peer is told with an alert all the same.
        let err = bounded(client.read(&mut buf)).await.unwrap_err();
        assert_alert_received(&err, rustls::AlertDescription::BadRecordMac);
    }

    #[tokio::test]
    async fn a_flood_of_tiny_records_is_read_whole_within_the_buffer_bounds() {
        let (mut server, mut client) = connected().await;
        const RECORDS: usize = 5_000;
        let sender = tokio::spawn(async move {
            for i in 0..RECORDS {
                // One record per write: 1 byte of data in 22 on the wire.
                client.write_all(&[i as u8]).await.unwrap();
            }
            client.flush().await.unwrap();
            client
        });
        for i in 0..RECORDS {
            let mut byte = [0u8; 1];
            bounded(server.read_exact(&mut byte)).await.unwrap();
            assert_eq!(byte[0], i as u8, "record {i}");
            assert!(server.incoming.len() <= MAX_INCOMING_TRAFFIC);
            // Plaintext comes from at most one socket read's ciphertext.
            assert!(server.plaintext.len() <= READ_CHUNK);
        }
        let _client = bounded(sender).await.unwrap();
        // All read: the next read waits for the socket instead of spinning, holding nothing.
        let mut byte = [0u8; 1];
        assert!(poll_once(server.read(&mut byte)).await.is_pending());
        assert_eq!(server.buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn a_flood_of_empty_records_before_the_client_hello_fails_the_handshake() {
        let (server_config, _) = configs();
        let (server_tcp, mut client_tcp) = tcp_pair().await;
        // Empty handshake records: TLS forbids them.
        let wire = [0x16, 0x03, 0x01, 0x00, 0x00].repeat(20_000);
        let sender = tokio::spawn(async move {
            let _ = client_tcp.write_all(&wire).await;
            client_tcp
        });
        let err = bounded(accept(server_config, server_tcp))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        drop(sender);
    }

    #[tokio::test]
    async fn a_client_offering_only_tls_1_2_is_refused() {
        let (server_config, client_config) =
            configs_with_client_versions(&[&rustls::version::TLS12]);
        let (server_tcp, client_tcp) = tcp_pair().await;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (server, client) = bounded(async {
            tokio::join!(
                accept(server_config, server_tcp),
                tokio_rustls::TlsConnector::from(client_config).connect(name, client_tcp)
            )
        })
        .await;
        let err = server.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let err = client.unwrap_err();
        assert_alert_received(&err, rustls::AlertDescription::ProtocolVersion);
    }

    /// A socket whose writes fail while `broken` is set, as a reset connection's do.
    struct Breakable {
        tcp: TcpStream,
        broken: Arc<std::sync::atomic::AtomicBool>,
    }

    impl AsyncRead for Breakable {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Breakable {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            Pin::new(&mut self.tcp).poll_write(cx, data)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn after_a_socket_error_nothing_more_is_sent() {
        let (server_config, client_config) = configs();
        let (server_tcp, client_tcp) = tcp_pair().await;
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server_io = Breakable {
            tcp: server_tcp,
            broken: broken.clone(),
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            accept(server_config, server_io),
            tokio_rustls::TlsConnector::from(client_config).connect(name, client_tcp)
        );
        let (mut server, mut client) = (server.unwrap(), client.unwrap());
        broken.store(true, std::sync::atomic::Ordering::SeqCst);
        // This record was numbered by rustls and lost: anything sent after it would not
        // decrypt, so nothing is, even once the socket takes writes again.
        let err = bounded(server.write_all(b"lost")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        broken.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(
            bounded(server.write_all(b"after")).await.is_err(),
            "writes fail"
        );
        assert!(bounded(server.flush()).await.is_err(), "flushes fail");
        assert!(
            bounded(server.shutdown()).await.is_err(),
            "no close_notify either"
        );
        // On the wire: the client gets nothing more before the connection ends, neither data
        // nor close_notify (either would be a record it cannot decrypt, an error of another
        // kind), only the socket closing.
        drop(server);
        let mut got = Vec::new();
        let err = bounded(client.read_to_end(&mut got)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(got.is_empty(), "nothing arrived");
    }

    #[tokio::test]
    async fn a_reader_waiting_on_the_socket_learns_of_a_socket_error_the_writer_met() {
        let (server_config, client_config) = configs();
        let (server_tcp, client_tcp) = tcp_pair().await;
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server_io = Breakable {
            tcp: server_tcp,
            broken: broken.clone(),
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (server, client) = bounded(async {
            tokio::join!(
                accept(server_config, server_io),
                tokio_rustls::TlsConnector::from(client_config).connect(name, client_tcp)
            )
        })
        .await;
        // The client stays connected and silent: nothing from it would wake the reader.
        let (server, _client) = (server.unwrap(), client.unwrap());
        let (mut reader, mut writer) = tokio::io::split(server);
        let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
        let reader_task = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut waiting = Some(waiting_tx);
            poll_fn(|cx| {
                let mut read = ReadBuf::new(&mut buf);
                let poll = Pin::new(&mut reader).poll_read(cx, &mut read);
                if poll.is_pending()
                    && let Some(tx) = waiting.take()
                {
                    let _ = tx.send(());
                }
                poll.map_ok(|()| read.filled().len())
            })
            .await
        });
        bounded(waiting_rx).await.unwrap();
        broken.store(true, std::sync::atomic::Ordering::SeqCst);
        let err = bounded(writer.write_all(b"lost")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        // The connection is over: the reader must be woken to find out.
        let err = bounded(reader_task).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[tokio::test]
    async fn a_peer_splitting_its_data_into_too_many_fragments_fails_and_stays_failed() {
        let (server_config, _) = configs();
        let (server_tcp, mut client_tcp) = tcp_pair().await;
        // A ClientHello announcing 65,520 bytes, sent one byte per record: 6 bytes on the wire
        // per byte, so the buffer limit is reached long before the message is whole.
        let mut wire = Vec::new();
        for byte in [0x01, 0x00, 0xff, 0xf0]
            .into_iter()
            .chain(std::iter::repeat_n(0, 30_000))
        {
            wire.extend([0x16, 0x03, 0x01, 0x00, 0x01, byte]);
        }
        let sender = tokio::spawn(async move {
            let _ = client_tcp.write_all(&wire).await;
            client_tcp
        });
        let mut stream = TlsStream::new(
            server_tcp,
            UnbufferedServerConnection::new(server_config).unwrap(),
        );
        let err = bounded(poll_fn(|cx| {
            let result = stream.poll_handshake(cx);
            stream.finish(cx, result)
        }))
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("buffer limit"), "{err}");
        assert!(stream.incoming.len() <= MAX_INCOMING_HANDSHAKE);
        assert!(stream.failed.is_some(), "the stream is failed for good");
        let mut buf = [0u8; 1];
        let again = bounded(stream.read(&mut buf)).await.unwrap_err();
        assert!(again.to_string().contains("buffer limit"), "{again}");
        drop(sender);
    }

    #[tokio::test]
    async fn a_writer_waiting_for_a_full_socket_learns_of_an_error_the_reader_met() {
        let (server, mut client) = connected().await;
        let (mut reader, mut writer) = tokio::io::split(server);
        let (blocked_tx, blocked_rx) = tokio::sync::oneshot::channel();
        // The writer writes until a write has to wait (the client reads nothing), and then
        // until the stream fails.
        let writer_task = tokio::spawn(async move {
            let chunk = pattern(MAX_PLAINTEXT_PER_WRITE);
            let mut blocked = Some(blocked_tx);
            loop {
                let written = poll_fn(|cx| {
                    let poll = Pin::new(&mut writer).poll_write(cx, &chunk);
                    if poll.is_pending()
                        && let Some(tx) = blocked.take()
                    {
                        let _ = tx.send(());
                    }
                    poll
                })
                .await;
                if let Err(e) = written {
                    return e;
                }
            }
        });
        bounded(blocked_rx).await.unwrap();
        bounded(client.get_mut().0.write_all(&bad_record()))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let err = bounded(reader.read(&mut buf)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // The reader's attempt to send the alert met the full socket; the writer must still be
        // woken, to find the error.
        let err = bounded(writer_task).await.unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn writes_to_a_peer_that_does_not_read_wait_instead_of_buffering() {
        let (mut server, mut client) = connected().await;
        let chunk = pattern(MAX_PLAINTEXT_PER_WRITE);
        let mut accepted = 0usize;
        // Until the kernel's buffers are full and a write must wait (far below this cap).
        while accepted < 256 * 1024 * 1024 {
            match poll_once(server.write(&chunk)).await {
                Poll::Ready(Ok(n)) => accepted += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break,
            }
            let queued = server.outgoing.len() - server.sent;
            assert!(
                queued < OUTGOING_HIGH_WATER + MAX_RECORDS_PER_WRITE * MAX_RECORD_WIRE,
                "{queued} bytes queued"
            );
        }
        assert!(accepted < 256 * 1024 * 1024, "a write had to wait");
        // Once the peer reads, the waiting write goes through and nothing was lost.
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; accepted + chunk.len()];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        bounded(server.write_all(&pattern(MAX_PLAINTEXT_PER_WRITE)))
            .await
            .unwrap();
        bounded(server.flush()).await.unwrap();
        let got = bounded(reader).await.unwrap();
        let expected = pattern(MAX_PLAINTEXT_PER_WRITE);
        assert!(got.chunks(MAX_PLAINTEXT_PER_WRITE).all(|c| c == expected));
    }

    /// A text message of about `len` bytes that says who sent it and which it is, and whose
    /// letters shift with `i`: what a peer got can be compared whole with what was sent, and a
    /// message cut, merged or out of place does not compare equal.
    fn numbered(who: &str, i: usize, len: usize) -> String {
        let mut text = format!("{who} {i:06} ");
        text.extend((0..len).map(|k| char::from(b'a' + ((i + k) % 26) as u8)));
        text
    }

    /// `f`'s outcome; if `f` has to wait, says so (once) on `waiting`.
    async fn noting_a_wait<F: Future>(
        f: F,
        waiting: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> F::Output {
        let mut f = std::pin::pin!(f);
        poll_fn(|cx| {
            let poll = f.as_mut().poll(cx);
            if poll.is_pending()
                && let Some(tx) = waiting.take()
            {
                let _ = tx.send(());
            }
            poll
        })
        .await
    }

    // The server's own use of this stream (`connection.rs`): a websocket over it, split into a
    // reader task and a writer task. The writer waits for a full socket while the client
    // updates its keys and sends, so the reader must take in the key update (whose answer
    // rustls holds for the writer's next write) and the client's messages while the writer
    // waits, and then the writer must be woken, send that answer before its next records, and
    // lose nothing. (tokio-tungstenite hands the stream wakers that wake both halves, so this
    // does not catch a read that takes the writer's place on the socket: the `tokio::io::split`
    // test above does.)
    #[tokio::test]
    async fn websocket_halves_lose_nothing_when_the_client_updates_keys_under_back_pressure() {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

        // From under one record to more than one write's worth of records: a message is cut
        // wherever a write or the socket cuts it, and a write may find what the socket did not
        // take of an earlier one still queued (past `OUTGOING_HIGH_WATER`, so it waits).
        fn server_message_len(i: usize) -> usize {
            1_000 + (i % 7) * 20_000
        }
        // Two records each.
        const CLIENT_MESSAGE: usize = 20_000;
        const CLIENT_MESSAGES: usize = 3;
        // As the server's writer does, several messages are fed and then flushed together.
        const MESSAGES_PER_FLUSH: usize = 4;
        // Messages the writer sends after its first wait, so that some are encrypted after the
        // key update.
        const MORE_AFTER_WAITING: usize = 8;

        let (server, client) = connected().await;
        // The server's websocket as the server configures it by default.
        let config = WebSocketConfig::default()
            .read_buffer_size(crate::config::DEFAULT_WS_READ_BUFFER)
            .write_buffer_size(crate::config::DEFAULT_WS_WRITE_BUFFER);
        let (server_ws, client_ws) = bounded(async {
            tokio::join!(
                tokio_tungstenite::accept_async_with_config(server, Some(config)),
                tokio_tungstenite::client_async("ws://localhost/", client)
            )
        })
        .await;
        let (mut sink, mut stream) = server_ws.unwrap().split();
        let (mut client, _response) = client_ws.unwrap();

        // The reader task hands over every message it reads.
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        let _reader_task = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                if got_tx.send(message).is_err() {
                    break;
                }
            }
        });
        // The writer task sends until a send has to wait for the socket (the client reads
        // nothing yet) and a few more after that, says how many it sent, and then sends what
        // it is given.
        let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
        let (more_tx, mut more_rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        // Unconstrained: tokio's per-task budget would otherwise make a send wait now and then
        // with the socket not full, and the test would stop testing back-pressure unnoticed.
        let writer_task = tokio::spawn(tokio::task::unconstrained(async move {
            let mut waiting = Some(waiting_tx);
            let mut sent = 0usize;
            let mut after_waiting = 0usize;
            while after_waiting < MORE_AFTER_WAITING {
                let message = Message::text(numbered("server", sent, server_message_len(sent)));
                noting_a_wait(sink.feed(message), &mut waiting)
                    .await
                    .unwrap();
                sent += 1;
                if sent.is_multiple_of(MESSAGES_PER_FLUSH) {
                    noting_a_wait(sink.flush(), &mut waiting).await.unwrap();
                }
                if waiting.is_none() {
                    after_waiting += 1;
                }
            }
            sink.send(Message::text(format!("sent {sent}")))
                .await
                .unwrap();
            while let Some(message) = more_rx.recv().await {
                sink.send(message).await.unwrap();
            }
            sent
        }));
        bounded(waiting_rx).await.unwrap();

        // While the writer waits, the client updates its keys (which asks the server to update
        // its own) and sends under the new ones; the reader must get every message.
        client.get_mut().get_mut().1.refresh_traffic_keys().unwrap();
        for i in 0..CLIENT_MESSAGES {
            bounded(client.send(Message::text(numbered("client", i, CLIENT_MESSAGE))))
                .await
                .unwrap();
        }
        for i in 0..CLIENT_MESSAGES {
            let got = bounded(got_rx.recv())
                .await
                .expect("the reader reads on")
                .unwrap();
            assert!(
                got == Message::text(numbered("client", i, CLIENT_MESSAGE)),
                "client message {i} arrived whole and in order"
            );
        }

        // Now the client reads: every message the server sent, those encrypted before its own
        // key update and those after, whole and in order.
        let mut received = 0usize;
        let sent = loop {
            let message = bounded(client.next())
                .await
                .expect("the connection stays open")
                .unwrap();
            if let Message::Text(text) = &message
                && let Some(count) = text.as_str().strip_prefix("sent ")
            {
                break count.parse::<usize>().unwrap();
            }
            assert!(
                message
                    == Message::text(numbered("server", received, server_message_len(received))),
                "server message {received} arrived whole and in order"
            );
            received += 1;
        };
        assert_eq!(received, sent, "every message the server sent arrived");

        // Both ways still work after the key update.
        bounded(client.send(Message::text("client, after")))
            .await
            .unwrap();
        let got = bounded(got_rx.recv())
            .await
            .expect("the reader reads on")
            .unwrap();
        assert_eq!(got, Message::text("client, after"));
        more_tx.send(Message::text("server, after")).unwrap();
        let got = bounded(client.next())
            .await
            .expect("the connection stays open")
            .unwrap();
        assert_eq!(got, Message::text("server, after"));
        drop(more_tx);
        assert_eq!(bounded(writer_task).await.unwrap(), sent);
    }
}
