//! The driver: one task (`spawn_local`) that owns the [`ClientCore`] and feeds it, one input at
//! a time, what arrives — commands from the bindings, frames the server pushes, the outbox's
//! retry timer — as the native client's background task does (`client-lib/src/runner.rs`),
//! with the browser's event loop in place of tokio.
//!
//! - It connects, and reconnects after a failure with jittered, doubling back-off
//!   ([`MIN_BACKOFF`] to [`MAX_BACKOFF`]), serving commands while it waits.
//! - While connected it waits for whichever comes first: a command, a frame, or the time the
//!   outbox is due to be posted again ([`ClientCore::retry_due_at`]); after each it runs the
//!   core's follow-up work ([`ClientCore::after_input`]).
//! - It reports the connection as it changes ([`ConnectionState`]) beside the core's events.
//!
//! [`Driver::stop`] does not queue behind the work under way: it has its own channel, watched
//! at every await of the loop, and ends the step in progress (a connection attempt, a sync
//! that a slow server trickles, a command waiting for replies) so that the core and its keys
//! are dropped at once when the person locks. Nothing is lost: each step is committed whole
//! before it sends anything (PROTOCOL.md §11.12), and a step ended half-way is not committed.
//!
//! A command is a closure over `&mut ClientCore` ([`Driver::call`]) whose result goes back on a
//! oneshot channel. The core is owned by the task, never shared: there is no `RefCell`, so no
//! borrow can be held across an `await`.
//!
//! The driver is generic over the store and the network, so the browser tests run it over the
//! in-memory relay of `confide-test-relay`; a network's link must also be able to wait for the
//! next pushed frame without a bound ([`PushLink`]).

use std::future::Future;
use std::time::Duration;

use confide_client_core::{ClientCore, ClientError, ClientStore, Link, Network, TransportError};
use confide_protocol::frames::ServerFrame;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_channel::oneshot;
use futures_util::StreamExt as _;
use futures_util::future::{Either, LocalBoxFuture, select};
use gloo_timers::future::TimeoutFuture;

use crate::dto::ConnectionState;
use crate::host::{self, Output};

/// First reconnect delay; doubles up to [`MAX_BACKOFF`] (as natively).
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest reconnect delay (as natively).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A [`Link`] the driver can wait on between steps: the next frame the server pushes, however
/// long it takes. Must be cancel-safe: the driver gives the wait up when a command comes first,
/// and no frame may be lost then.
pub trait PushLink: Link {
    /// The next frame; an `Err` means the connection is gone.
    fn next_frame(&mut self) -> impl Future<Output = Result<ServerFrame, TransportError>>;
}

/// One command for the core: it runs as one input of the loop.
type Job<S, N> = Box<dyn for<'a> FnOnce(&'a mut ClientCore<S, N>) -> LocalBoxFuture<'a, ()>>;

/// What the handle sends to the task.
enum Msg<S: ClientStore, N: Network> {
    /// Run a command.
    Job(Job<S, N>),
}

/// The handle on a running driver. Cheap to clone; when every clone is dropped, the task
/// closes the core and ends.
pub struct Driver<S: ClientStore, N: Network> {
    tx: UnboundedSender<Msg<S, N>>,
    /// Stop requests, ahead of everything else: each is answered once the core is gone.
    stop_tx: UnboundedSender<oneshot::Sender<()>>,
}

impl<S: ClientStore, N: Network> Clone for Driver<S, N> {
    fn clone(&self) -> Self {
        Driver {
            tx: self.tx.clone(),
            stop_tx: self.stop_tx.clone(),
        }
    }
}

impl<S: ClientStore, N: Network> std::fmt::Debug for Driver<S, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("running", &!self.tx.is_closed())
            .finish()
    }
}

/// Makes the closure's higher-ranked type explicit (the compiler then infers it for a closure
/// written in place).
fn job<S, N, F>(f: F) -> Job<S, N>
where
    S: ClientStore + 'static,
    N: Network + 'static,
    F: for<'a> FnOnce(&'a mut ClientCore<S, N>) -> LocalBoxFuture<'a, ()> + 'static,
{
    Box::new(f)
}

impl<S, N> Driver<S, N>
where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    /// Starts the task that owns `core`, reporting connection changes to `out` (where the
    /// core's host sends its events too).
    pub fn spawn(core: ClientCore<S, N>, out: UnboundedSender<Output>) -> Driver<S, N> {
        let (tx, rx) = unbounded();
        let (stop_tx, stop_rx) = unbounded();
        wasm_bindgen_futures::spawn_local(run(core, rx, stop_rx, out));
        Driver { tx, stop_tx }
    }

    /// Runs `f` on the core as one command (then the core's follow-up work) and returns what
    /// it returned.
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] once the driver has stopped.
    pub async fn call<T, F>(&self, f: F) -> Result<T, ClientError>
    where
        T: 'static,
        F: for<'a> FnOnce(&'a mut ClientCore<S, N>) -> LocalBoxFuture<'a, T> + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = job(
            move |core: &mut ClientCore<S, N>| -> LocalBoxFuture<'_, ()> {
                Box::pin(async move {
                    let value = f(core).await;
                    // The caller may have stopped waiting (its promise was dropped).
                    let _ = reply.send(value);
                })
            },
        );
        self.tx
            .unbounded_send(Msg::Job(job))
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// Closes the core and ends the task; returns once the core (with its keys) and its store
    /// are dropped. It does not wait for the work under way: a step in progress (connecting,
    /// syncing, a command waiting for the server) is ended and its command fails with
    /// [`ClientError::Closed`]; commands still queued fail the same way. When the driver was
    /// idle, what is pending is stored and the connection closed politely first.
    pub async fn stop(&self) {
        let (done, finished) = oneshot::channel();
        if self.stop_tx.unbounded_send(done).is_ok() {
            let _ = finished.await;
        }
    }
}

/// What woke the task while connected.
enum Next<S: ClientStore, N: Network> {
    Msg(Option<Msg<S, N>>),
    /// Boxed: a frame is large beside the other two, and this is one per turn.
    Frame(Box<Result<ServerFrame, TransportError>>),
    RetryOutbox,
}

/// The connection as last reported, so that only changes are.
struct Reporter {
    out: UnboundedSender<Output>,
    last: Option<ConnectionState>,
}

impl Reporter {
    fn report(&mut self, state: ConnectionState) {
        if self.last != Some(state) {
            self.last = Some(state);
            let _ = self.out.unbounded_send(Output::Connection(state));
        }
    }

    /// After a step: online if the core is connected; offline if it was online and is not.
    fn after_step(&mut self, connected: bool) {
        if connected {
            self.report(ConnectionState::Online);
        } else if self.last == Some(ConnectionState::Online) {
            self.report(ConnectionState::Offline);
        }
    }
}

/// `d` in whole milliseconds for `setTimeout`, at most `u32::MAX` (49 days).
fn timeout_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// `backoff` spread over 50–150 %, so that many clients a server comes back to do not all
/// reconnect at once.
fn jittered(backoff: Duration) -> Duration {
    let jitter = host::random_u32() % 1000;
    backoff.mul_f64(0.5 + f64::from(jitter) / 1000.0)
}

/// The task: [`work`] until it ends or a stop request comes (see the module documentation).
async fn run<S, N>(
    mut core: ClientCore<S, N>,
    rx: UnboundedReceiver<Msg<S, N>>,
    mut stop_rx: UnboundedReceiver<oneshot::Sender<()>>,
    out: UnboundedSender<Output>,
) where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    let mut reporter = Reporter { out, last: None };
    // Whether `work` is inside a step (anything but waiting for the next input).
    let in_step = std::cell::Cell::new(false);
    let stop = {
        let work = std::pin::pin!(work(&mut core, rx, &mut reporter, &in_step));
        match select(stop_rx.next(), work).await {
            Either::Left((done, _)) => done,
            // Every handle is gone.
            Either::Right(((), _)) => None,
        }
        // The work (and the step in progress) is dropped here.
    };
    if in_step.get() {
        // A step was ended half-way: its changes must not be committed, so the core is dropped
        // as it is (dropping the link closes the connection, dropping the store closes it).
        drop(core);
        reporter.report(ConnectionState::Offline);
        if let Some(done) = stop {
            let _ = done.send(());
        }
    } else {
        shut_down(core, reporter, stop).await;
    }
    // Anyone else who asked to stop meanwhile: the core is gone.
    stop_rx.close();
    while let Ok(done) = stop_rx.try_recv() {
        let _ = done.send(());
    }
}

/// Marks the driver inside a step while it lives (see [`run`]).
struct Step<'a>(&'a std::cell::Cell<bool>);

impl<'a> Step<'a> {
    fn begin(flag: &'a std::cell::Cell<bool>) -> Step<'a> {
        flag.set(true);
        Step(flag)
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The loop: connect, then serve commands, frames and the outbox timer, until every handle is
/// dropped. Everything except the waits for the next input runs as a [`Step`].
async fn work<S, N>(
    core: &mut ClientCore<S, N>,
    mut rx: UnboundedReceiver<Msg<S, N>>,
    reporter: &mut Reporter,
    in_step: &std::cell::Cell<bool>,
) where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    let mut backoff = MIN_BACKOFF;
    loop {
        if !core.is_connected() {
            reporter.report(ConnectionState::Connecting);
            let step = Step::begin(in_step);
            match core.connect().await {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    reporter.report(ConnectionState::Online);
                    // What waited for the connection goes now, not at the next input.
                    core.after_connect().await;
                    drop(step);
                }
                Err(e) => {
                    core.connect_failed(e.to_string()).await;
                    drop(step);
                    reporter.report(ConnectionState::Offline);
                    // Wait out the back-off, serving commands meanwhile (they fail fast, or
                    // connect by themselves: then the wait ends).
                    let mut sleep = TimeoutFuture::new(timeout_ms(jittered(backoff)));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    loop {
                        match select(rx.next(), &mut sleep).await {
                            Either::Left((None, _)) => return,
                            Either::Left((Some(Msg::Job(job)), _)) => {
                                let _step = Step::begin(in_step);
                                job(core).await;
                                if core.is_connected() {
                                    backoff = MIN_BACKOFF;
                                    reporter.report(ConnectionState::Online);
                                    core.after_connect().await;
                                    break;
                                }
                            }
                            Either::Right(((), _)) => break,
                        }
                    }
                    continue;
                }
            }
        }
        let next = {
            // The wait until the outbox's retry is due, by the same clock the core uses.
            let retry_in = core
                .retry_due_at()
                .map(|at| Duration::from_millis(at.0.saturating_sub(host::now().0)));
            let Some(link) = core.link_mut() else {
                continue;
            };
            let frame = std::pin::pin!(link.next_frame());
            let retry = std::pin::pin!(async move {
                match retry_in {
                    Some(wait) => TimeoutFuture::new(timeout_ms(wait)).await,
                    None => std::future::pending::<()>().await,
                }
            });
            // Commands first, then frames, then the timer: a command waiting is served
            // before more is taken in.
            match select(rx.next(), select(frame, retry)).await {
                Either::Left((msg, _)) => Next::Msg(msg),
                Either::Right((Either::Left((frame, _)), _)) => Next::Frame(Box::new(frame)),
                Either::Right((Either::Right(((), _)), _)) => Next::RetryOutbox,
            }
        };
        let _step = Step::begin(in_step);
        match next {
            Next::Msg(None) => return,
            Next::Msg(Some(Msg::Job(job))) => job(core).await,
            Next::Frame(frame) => match *frame {
                Ok(frame) => core.receive(frame).await,
                Err(e) => core.connection_lost(e.to_string()).await,
            },
            Next::RetryOutbox => core.retry_now().await,
        }
        core.after_input().await;
        reporter.after_step(core.is_connected());
    }
}

/// Closes the core and its store, reports the connection offline, then tells the caller (if
/// one waits): the store is closed before the caller hears of it.
async fn shut_down<S: ClientStore, N: Network>(
    mut core: ClientCore<S, N>,
    mut reporter: Reporter,
    done: Option<oneshot::Sender<()>>,
) {
    core.shutdown().await;
    drop(core);
    reporter.report(ConnectionState::Offline);
    if let Some(done) = done {
        let _ = done.send(());
    }
}
