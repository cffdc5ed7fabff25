//! Serving on worker threads, each with a runtime and database connections of its own.
//!
//! One listener accepts connections and hands them out in turn to `FHIR_WORKERS` threads
//! (one per core by default). Each thread runs a single-threaded tokio runtime and serves
//! the connections it was given from their first request to their last, on its own
//! PostgreSQL connections: a request is never moved between threads, and the wake-ups that
//! pass a request's I/O from one thread to another in a shared runtime do not happen. On 2
//! cores this answered about 1.15 times the reads by id a second of one multi-threaded
//! runtime at 8 clients (docs/ARCHITECTURE.md, "Serving").
//!
//! A connection stays on its thread: a long computation (a large transaction Bundle) holds
//! back the other requests of that thread, not the other threads', and when the system
//! leaves a worker waiting for a core, its connections wait with it (the p99 of creates
//! rose under a full load, bench/README.md).

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::state::AppState;

/// A connection accepted, on its way to a worker.
type Accepted = (std::net::TcpStream, SocketAddr);

/// How long accepting pauses after an error that is not about one connection (out of file
/// descriptors, for example), as axum's own listener does.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `state`'s routes to the connections of `listener` on `workers` threads (at least
/// one) until `shutdown` completes, then lets each thread finish the requests it has.
///
/// Each thread serves on a store of its own (`requests / workers` connections, at least
/// one, and `read_lanes / workers` lanes, at least one), so the totals stay those
/// configured.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let workers = workers.max(1);
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let mut queues = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let (queue, handed) = mpsc::unbounded_channel();
        let worker = Worker {
            state: state.clone(),
            share: workers,
            handed: Handed {
                queue: handed,
                local_addr,
            },
            stopped: stopped.clone(),
        };
        threads.push(worker.start(index)?);
        queues.push(queue);
    }
    accept(&listener, &queues, shutdown).await;
    drop(queues);
    let _ = stop.send(true);
    for thread in threads {
        // Joining blocks: off the runtime's threads.
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("a worker thread ended abnormally");
        }
    }
    Ok(())
}

/// Accepts until `shutdown`, handing each connection to the next worker in turn.
async fn accept(
    listener: &TcpListener,
    queues: &[mpsc::UnboundedSender<Accepted>],
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            // Out of the runtime that accepted it, into the worker's.
            Ok((stream, peer)) => match stream.into_std() {
                Ok(stream) => {
                    if queues[next].send((stream, peer)).is_err() {
                        tracing::error!(worker = next, "a worker is gone; connection closed");
                    }
                    next = (next + 1) % queues.len();
                }
                Err(error) => tracing::debug!(%error, "an accepted connection failed"),
            },
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                tracing::error!(%error, "accepting connections failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Errors that concern one connection only: the next accept may succeed at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What one worker thread needs to start serving.
struct Worker {
    state: AppState,
    /// How many workers share the configured connections and read lanes.
    share: usize,
    handed: Handed,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    fn start(self, index: usize) -> io::Result<JoinHandle<()>> {
        crate::spawn_with_runtime(format!("worker-{index}"), move || self.serve())
    }

    async fn serve(self) {
        let config = &self.state.config;
        let connections = (config.database_max_connections as usize / self.share).max(1);
        let lanes = (config.database_read_lanes / self.share).max(1);
        let store = self
            .state
            .store
            .with_own_connections(connections)
            .with_read_lanes(lanes);
        let app = crate::router(self.state.with_store(store));
        let mut stopped = self.stopped;
        let served = axum::serve(self.handed, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "a worker stopped serving");
        }
    }
}

/// The connections handed to one worker, as a listener of its runtime.
struct Handed {
    queue: mpsc::UnboundedReceiver<Accepted>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for Handed {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.queue.recv().await else {
                // No more connections: serving ends with the shutdown signal.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(error) => tracing::debug!(%error, "a handed connection failed"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}
