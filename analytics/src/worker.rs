//! The consumer loop around one testable step: receive deliveries, hand those already
//! here to a task that handles them (the projection applies them in one transaction, the
//! billing account consumer writes their Accounts in one statement) and settles each with the broker after the
//! commit. Reconnects with a back-off whenever the broker goes away, and stops cleanly on
//! request: no new deliveries, the delivered ones handled and settled, then the connection
//! closed.

use std::time::Duration;

use events::DurableQueue;
use events::lapin::message::Delivery;
use events::lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use events::lapin::types::FieldTable;
use events::lapin::{Connection, Consumer};
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::accounts::AccountWriter;
use crate::config::Config;
use crate::step::{Disposition, MAX_BACKOFF, MIN_BACKOFF, Message, pause, step};

/// How long a stop waits for delivered events to be applied; what is left then goes
/// back to the queue with the connection.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long closing the connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a consumer does with the deliveries it takes.
#[derive(Debug, Clone)]
pub enum Handler {
    /// Applies change events to the fact tables ([`step`]), on the queue
    /// [`Config::durable_queue`].
    Facts(PgPool),
    /// Creates the billing Account of each new Patient ([`crate::accounts::step`]), on the
    /// queue [`Config::account_durable_queue`].
    Accounts(AccountWriter),
}

impl Handler {
    /// What the handler is called in logs.
    fn name(&self) -> &'static str {
        match self {
            Handler::Facts(_) => "analytics",
            Handler::Accounts(_) => "billing accounts",
        }
    }

    /// The queue the handler consumes.
    fn queue(&self, config: &Config) -> DurableQueue {
        match self {
            Handler::Facts(_) => config.durable_queue(),
            Handler::Accounts(_) => config.account_durable_queue(),
        }
    }

    /// Handles deliveries received together: a disposition for each, in order.
    async fn step(
        &self,
        messages: &[Message<'_>],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Vec<Disposition> {
        match self {
            Handler::Facts(pool) => step(pool, messages, shutdown).await,
            Handler::Accounts(writer) => crate::accounts::step(writer, messages, shutdown).await,
        }
    }
}

/// Consumes the projection's queue until `shutdown` turns true (or its sender is dropped),
/// reconnecting with a back-off (0.5 s doubling to 30 s) whenever the broker is
/// unreachable or goes away.
pub async fn consume(pool: PgPool, config: &Config, shutdown: watch::Receiver<bool>) {
    consume_with(Handler::Facts(pool), config, shutdown).await;
}

/// Consumes the queue of `handler` until `shutdown` turns true, as [`consume`] does.
pub async fn consume_with(handler: Handler, config: &Config, mut shutdown: watch::Receiver<bool>) {
    let consumer = handler.name();
    let mut backoff = MIN_BACKOFF;
    while !*shutdown.borrow() {
        match session(&handler, config, &shutdown).await {
            Ok(Ended::Shutdown) => break,
            Ok(Ended::Lost(reason)) => {
                tracing::warn!(consumer, reason, "lost the message broker; reconnecting");
                backoff = MIN_BACKOFF;
            }
            Err(error) => {
                tracing::warn!(consumer, %error, retry_in_ms = backoff.as_millis() as u64,
                    "cannot consume change events");
            }
        }
        if !pause(backoff, &mut shutdown).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    tracing::info!(consumer, "consumer stopped");
}

/// The broker's name for the projection's connection (in its management UI).
pub fn connection_name(config: &Config) -> String {
    queue_connection_name(&config.queue)
}

/// The broker's name for the connection consuming `queue`.
pub fn queue_connection_name(queue: &str) -> String {
    format!("analytics-worker {queue}")
}

/// Why a session ended.
#[derive(Debug)]
enum Ended {
    /// Asked to stop.
    Shutdown,
    /// The broker or the connection went away.
    Lost(String),
}

/// One connection's life: connect, declare, consume until stopped or lost, close.
async fn session(
    handler: &Handler,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Result<Ended, events::PublishError> {
    let queue = handler.queue(config);
    let name = queue_connection_name(&queue.name);
    let mut stopping = shutdown.clone();
    let connection = tokio::select! {
        connected = events::connect_as(&config.rabbitmq_url, &name) => connected?,
        _ = stopping.wait_for(|stop| *stop) => return Ok(Ended::Shutdown),
    };
    let ended = consume_on(&connection, handler, &queue, config, shutdown).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "closing".into())).await;
    Ok(ended?)
}

/// Declares the queue, consumes until stopped or lost, then lets the running tasks
/// finish (for at most [`STOP_TIMEOUT`]) before closing the channel.
async fn consume_on(
    connection: &Connection,
    handler: &Handler,
    queue: &DurableQueue,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Result<Ended, events::lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    queue.declare(&channel).await?;
    let mut consumer = channel
        .basic_consume(
            queue.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(
        consumer = handler.name(),
        queue = queue.name,
        exchange = queue.exchange,
        "consuming change events"
    );

    let mut running = JoinSet::new();
    let ended = receive(&mut consumer, &mut running, handler, config, shutdown).await;
    if matches!(ended, Ended::Shutdown) {
        // No new deliveries; apply the ones already here, so none goes back to the queue.
        if channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
            .is_ok()
        {
            drain(&mut consumer, &mut running, handler, config, shutdown).await;
        }
    }
    if tokio::time::timeout(STOP_TIMEOUT, join_all(&mut running))
        .await
        .is_err()
    {
        running.abort_all();
    }
    let _ = channel.close(200, "closing".into()).await;
    Ok(ended)
}

/// Hands deliveries to at most `concurrency` tasks, each taking the ones already here (up
/// to the batch size), until stopped or the stream ends.
async fn receive(
    consumer: &mut Consumer,
    running: &mut JoinSet<()>,
    handler: &Handler,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Ended {
    let mut stopping = shutdown.clone();
    loop {
        while running.len() >= config.concurrency {
            running.join_next().await;
        }
        tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => return Ended::Shutdown,
            Some(_) = running.join_next(), if !running.is_empty() => {}
            next = consumer.next() => {
                let (batch, ended) = match next {
                    Some(Ok(delivery)) => take_ready(consumer, delivery, config.batch_size()),
                    Some(Err(error)) => return Ended::Lost(error.to_string()),
                    None => return Ended::Lost(CANCELLED.into()),
                };
                running.spawn(handle(handler.clone(), batch, shutdown.clone()));
                if let Some(ended) = ended {
                    return ended;
                }
            }
        }
    }
}

const CANCELLED: &str = "the broker cancelled the consumer";

/// `first` and the deliveries received after it that are already here, up to `limit`;
/// and how the stream ended, if it did meanwhile.
fn take_ready(
    consumer: &mut Consumer,
    first: Delivery,
    limit: usize,
) -> (Vec<Delivery>, Option<Ended>) {
    let mut batch = vec![first];
    while batch.len() < limit {
        match consumer.next().now_or_never() {
            Some(Some(Ok(delivery))) => batch.push(delivery),
            Some(Some(Err(error))) => return (batch, Some(Ended::Lost(error.to_string()))),
            Some(None) => return (batch, Some(Ended::Lost(CANCELLED.into()))),
            None => break,
        }
    }
    (batch, None)
}

/// Applies the deliveries received before the consumer was cancelled.
async fn drain(
    consumer: &mut Consumer,
    running: &mut JoinSet<()>,
    handler: &Handler,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) {
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(STOP_TIMEOUT, consumer.next()).await {
        while running.len() >= config.concurrency {
            running.join_next().await;
        }
        let (batch, ended) = take_ready(consumer, delivery, config.batch_size());
        running.spawn(handle(handler.clone(), batch, shutdown.clone()));
        if ended.is_some() {
            return;
        }
    }
}

async fn join_all(running: &mut JoinSet<()>) {
    while running.join_next().await.is_some() {}
}

/// Handles deliveries and settles each with the broker.
async fn handle(handler: Handler, deliveries: Vec<Delivery>, mut shutdown: watch::Receiver<bool>) {
    let ids: Vec<String> = deliveries.iter().map(message_id).collect();
    let messages: Vec<Message<'_>> = deliveries
        .iter()
        .zip(&ids)
        .map(|(delivery, id)| Message {
            body: &delivery.data,
            message_id: id,
        })
        .collect();
    let dispositions = handler.step(&messages, &mut shutdown).await;
    for ((delivery, id), disposition) in deliveries.iter().zip(&ids).zip(dispositions) {
        settle(delivery, id, disposition).await;
    }
}

fn message_id(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

async fn settle(delivery: &Delivery, message_id: &str, disposition: Disposition) {
    let acker = &delivery.acker;
    let settled = match disposition {
        Disposition::Ack => acker.ack(BasicAckOptions::default()).await,
        Disposition::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
        Disposition::Retry => {
            let requeue = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            acker.nack(requeue).await
        }
        Disposition::Abandon => return,
    };
    // The channel is gone: the broker delivers the message again, and the processed
    // marker makes that delivery a no-op.
    match settled {
        Ok(true) => {}
        Ok(false) => tracing::debug!(message_id, "delivery not settled: channel closed"),
        Err(error) => tracing::warn!(%error, message_id, "delivery not settled"),
    }
}
