//! A byte budget for what a connection may send before it authenticates.
//!
//! Why: the websocket layer grows its read buffer to the length a frame header announces and
//! keeps that capacity for the connection's lifetime (up to the frame limit plus a margin, about
//! 1 MiB). Without a budget, anyone could open connections and pin that much each without ever
//! authenticating. With it, an unauthenticated connection can make the server hold at most
//! [`crate::config::DEFAULT_MAX_PREAUTH_BYTES`] of its data (a read never asks for more than
//! the budget left). (A frame header alone
//! still makes the buffer reserve its announced length — address space, not resident memory —
//! until the authentication deadline closes the connection.)
//!
//! The budget counts every byte read from the socket — the TLS handshake, any HTTP requests for
//! the web app ([`crate::http`]), the websocket upgrade and the frames before `authenticated` —
//! and is lifted for good when the connection authenticates.
//!
//! The same [`Gate`] holds the connection's place among its address's unauthenticated
//! connections ([`PerAddress`]), and gives it up on authentication (an authenticated connection
//! counts towards its address's separate, higher limit instead).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error a read returns once the budget is spent; find it with [`is_exhausted`].
#[derive(Debug)]
struct BudgetExhausted;

impl std::fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too much data before authentication")
    }
}

impl std::error::Error for BudgetExhausted {}

/// Whether `e` (possibly passed up through TLS and websocket layers) is a spent budget.
pub fn is_exhausted(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<BudgetExhausted>())
}

pub use crate::address::{AddressSlot, PerAddress};

/// Lifts the budget of one connection once it has authenticated, and gives up its place among
/// its address's unauthenticated connections.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    lifted: Arc<AtomicBool>,
    slot: Arc<Mutex<Option<AddressSlot>>>,
}

impl Gate {
    /// A gate for a connection holding `slot` until it authenticates.
    pub fn holding(slot: AddressSlot) -> Self {
        Gate {
            lifted: Arc::default(),
            slot: Arc::new(Mutex::new(Some(slot))),
        }
    }

    /// The connection has authenticated: its reads are no longer counted, and it no longer
    /// counts towards its address's unauthenticated connections.
    pub fn lift(&self) {
        self.lifted.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = self.slot.lock() {
            slot.take();
        }
    }

    fn is_lifted(&self) -> bool {
        self.lifted.load(Ordering::Relaxed)
    }
}

/// The smallest budget, whatever the configuration says: a smaller budget would silently
/// refuse clients. What a connection sends before it authenticates is at most about 38 KB: a
/// `register` with a full device list is ~31 KB (a 20 KiB list as base64, ~27 KB, and the
/// device's keys with its 1,216-byte X-Wing key, ~2 KB), a link's frames before it
/// (PROTOCOL.md §3.7: the `hello` carries the new device's keys) ~4 KB, a TLS ClientHello with
/// a post-quantum key share ~2 KB and the websocket upgrade under 1 KB. (The 8 KiB of protocol
/// version 1, with its 200-byte keys, would now refuse a device linking to a person with one
/// other device.)
pub const MIN_BUDGET: usize = 48 * 1024;

/// A stream whose reads fail once `limit` bytes have been read while its [`Gate`] is down.
#[derive(Debug)]
pub struct Budgeted<S> {
    inner: S,
    used: usize,
    limit: usize,
    gate: Gate,
}

impl<S> Budgeted<S> {
    /// Wraps `inner`; reads count against `limit` (at least [`MIN_BUDGET`]) until `gate` is
    /// lifted.
    pub fn new(inner: S, limit: usize, gate: Gate) -> Self {
        Budgeted {
            inner,
            used: 0,
            limit: limit.max(MIN_BUDGET),
            gate,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.gate.is_lifted() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Checked before reading, so that no data read is ever thrown away.
        let left = this.limit.saturating_sub(this.used);
        if left == 0 {
            return Poll::Ready(Err(io::Error::other(BudgetExhausted)));
        }
        if buf.remaining() > left {
            // A read never asks for more than the budget left, so a connection never reads
            // past it (TLS asks for a whole record, 18 KiB, at a time).
            let mut window = ReadBuf::new(buf.initialize_unfilled_to(left));
            let result = Pin::new(&mut this.inner).poll_read(cx, &mut window);
            let n = window.filled().len();
            // `n` is at most `left` bytes, all of them initialized just above: `advance`'s
            // check that they are initialized holds.
            buf.advance(n);
            this.used = this.used.saturating_add(n);
            return result;
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.used = this
            .used
            .saturating_add(buf.filled().len().saturating_sub(before));
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
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
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn reads_stop_at_the_budget_until_the_gate_is_lifted() {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let gate = Gate::default();
        let mut budgeted = Budgeted::new(ours, MIN_BUDGET, gate.clone());
        let sent = MIN_BUDGET + 4_000;
        peer.write_all(&vec![7u8; sent]).await.unwrap();

        let mut buf = vec![0u8; 600];
        let mut read = 0;
        let err = loop {
            match budgeted.read(&mut buf).await {
                Ok(n) => read += n,
                Err(e) => break e,
            }
        };
        assert!(is_exhausted(&err), "{err}");
        assert_eq!(read, MIN_BUDGET, "the budget, not a byte more");

        gate.lift();
        let mut rest = vec![0u8; sent - read];
        budgeted.read_exact(&mut rest).await.unwrap();
        assert!(rest.iter().all(|&b| b == 7), "nothing was lost");
    }

    #[tokio::test]
    async fn a_budget_too_small_for_a_handshake_is_raised_to_the_minimum() {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut budgeted = Budgeted::new(ours, 0, Gate::default());
        peer.write_all(&[1u8; MIN_BUDGET]).await.unwrap();
        let mut buf = vec![0u8; MIN_BUDGET];
        budgeted.read_exact(&mut buf).await.unwrap();
    }

    #[test]
    fn an_address_place_is_given_up_on_authentication_or_when_the_connection_ends() {
        let per = PerAddress::default();
        let ip: std::net::IpAddr = [192, 0, 2, 1].into();
        let first = Gate::holding(per.take(ip, 2).unwrap());
        let second = Gate::holding(per.take(ip, 2).unwrap());
        assert!(per.take(ip, 2).is_none(), "two places, both taken");
        first.lift();
        assert_eq!(per.count(ip), 1);
        drop(second);
        assert_eq!(per.count(ip), 0);
        assert!(per.take(ip, 2).is_some());
    }

    #[test]
    fn other_errors_are_not_mistaken_for_a_spent_budget() {
        assert!(!is_exhausted(&io::Error::other("disk on fire")));
        assert!(!is_exhausted(&io::Error::from(io::ErrorKind::BrokenPipe)));
    }
}
