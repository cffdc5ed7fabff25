//! Reads of current resources by type and id, gathered into one statement when they queue.
//!
//! A read takes one of a few lanes and, when one is free, runs alone: one statement, one
//! round trip, as if there were no gathering. When every lane is taken it waits, and the
//! next lane to come free goes to the oldest read waiting, which answers every read then
//! waiting, itself included, with one statement on the `(res_type, id)` key. Most of a
//! primary-key read's cost is not the row but the round trip around it (waking the
//! backend, a message in and out, the executor's start and end), so under load PostgreSQL
//! answers several reads for the cost of about one; with few requests nothing waits and
//! nothing changes.
//!
//! A read that waited runs alone after all when the statement meant to answer it fails (or
//! the read that was to send it is cancelled), so an error reaches the read it concerns.

use std::sync::{Arc, Mutex, MutexGuard};

use fhir_core::{Id, ResourceType};
use sqlx::Row;
use tokio::sync::oneshot;

use crate::resources::{Current, current_from_row};
use crate::{Store, StoreError};

/// Reads one statement answers at most.
const MAX_GATHERED: usize = 100;

/// The gathered read: every row of the types and ids asked for. Types and ids are matched
/// pairwise afterwards (a row of another pair is left unused).
const READ_MANY: &str =
    "select res_type, id, version, last_updated, deleted, content::text as content
                         from resources where res_type = any($1) and id = any($2)";

/// The lanes of one pool's reads and the reads waiting for one.
#[derive(Debug)]
pub(crate) struct Gather {
    lanes: usize,
    state: Mutex<Lanes>,
}

#[derive(Debug, Default)]
struct Lanes {
    taken: usize,
    waiting: Vec<Waiting>,
}

/// A read waiting for a lane. Its sender dropped without an answer tells it to run alone.
#[derive(Debug)]
struct Waiting {
    rtype: ResourceType,
    id: Id,
    answer: oneshot::Sender<Answer>,
}

/// What a waiting read is told.
#[derive(Debug)]
enum Answer {
    /// Its row (none: the resource never existed).
    Row(Option<Current>),
    /// The lane is its own: answer the others with its own.
    Lead(Lead),
}

/// A lane handed to a waiting read, with the reads it is to answer. Dropped unused (the read
/// was cancelled after it was sent), its lane is handed on.
#[derive(Debug)]
struct Lead {
    lane: Lane,
    others: Vec<Waiting>,
}

/// What a read got on arrival.
enum Entry {
    /// A lane of its own.
    Lane,
    /// A place in the queue: wait for the answer.
    Queued(oneshot::Receiver<Answer>),
}

impl Gather {
    /// Reads run `lanes` statements at a time at most (at least one).
    pub(crate) fn new(lanes: usize) -> Self {
        Gather {
            lanes: lanes.max(1),
            state: Mutex::default(),
        }
    }

    /// How many statements run at once at most.
    pub(crate) fn lanes(&self) -> usize {
        self.lanes
    }

    fn state(&self) -> MutexGuard<'_, Lanes> {
        // The lock is held only to move entries in and out; nothing in it can panic
        // half-way, so a poisoned lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enter(&self, rtype: ResourceType, id: &Id) -> Entry {
        let mut state = self.state();
        if state.taken < self.lanes {
            state.taken += 1;
            return Entry::Lane;
        }
        let (answer, receiver) = oneshot::channel();
        state.waiting.push(Waiting {
            rtype,
            id: id.clone(),
            answer,
        });
        Entry::Queued(receiver)
    }

    /// Gives a lane back; or, when reads are waiting, keeps it for the oldest of them
    /// (at most [`MAX_GATHERED`]), which the caller then hands it to.
    fn leave(&self) -> Option<Vec<Waiting>> {
        let mut state = self.state();
        if state.waiting.is_empty() {
            state.taken -= 1;
            return None;
        }
        let rest = if state.waiting.len() > MAX_GATHERED {
            state.waiting.split_off(MAX_GATHERED)
        } else {
            Vec::new()
        };
        Some(std::mem::replace(&mut state.waiting, rest))
    }

    /// Gives a lane back, or hands it to the oldest waiting read still there, with the
    /// others waiting beside it to answer.
    fn hand_on(self: &Arc<Self>) {
        while let Some(mut waiting) = self.leave() {
            while !waiting.is_empty() {
                let first = waiting.remove(0);
                let lead = Lead {
                    lane: Lane(Some(Arc::clone(self))),
                    others: waiting,
                };
                match first.answer.send(Answer::Lead(lead)) {
                    Ok(()) => return,
                    // Cancelled meanwhile: the next one leads.
                    Err(Answer::Lead(Lead { mut lane, others })) => {
                        lane.0 = None;
                        waiting = others;
                    }
                    Err(Answer::Row(_)) => unreachable!("a lead was sent"),
                }
            }
        }
    }
}

/// A lane held; handed on when dropped, however its holder ended (`None`: already handed).
#[derive(Debug)]
struct Lane(Option<Arc<Gather>>);

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(gather) = self.0.take() {
            gather.hand_on();
        }
    }
}

impl Store {
    /// The current row of `type/id`, if it ever existed.
    pub async fn read(&self, rtype: ResourceType, id: &Id) -> Result<Option<Current>, StoreError> {
        let Lead {
            lane: _lane,
            others,
        } = match self.reads.enter(rtype, id) {
            Entry::Lane => Lead {
                lane: Lane(Some(Arc::clone(&self.reads))),
                others: Vec::new(),
            },
            Entry::Queued(answer) => match answer.await {
                Ok(Answer::Row(current)) => return Ok(current),
                Ok(Answer::Lead(lead)) => lead,
                Err(_) => return self.read_alone(rtype, id).await,
            },
        };
        if others.is_empty() {
            self.read_alone(rtype, id).await
        } else {
            self.read_with(rtype, id, others).await
        }
    }

    /// Reads `type/id` and answers `others` with the same statement. When it fails, they
    /// are dropped unanswered (each then runs alone).
    async fn read_with(
        &self,
        rtype: ResourceType,
        id: &Id,
        others: Vec<Waiting>,
    ) -> Result<Option<Current>, StoreError> {
        let mut types = vec![rtype.as_str()];
        let mut ids = Vec::with_capacity(others.len() + 1);
        ids.push(id.as_str());
        for read in &others {
            if !types.contains(&read.rtype.as_str()) {
                types.push(read.rtype.as_str());
            }
            ids.push(read.id.as_str());
        }
        let mut conn = self.conn().await?;
        let rows = sqlx::query(READ_MANY)
            .bind(&types)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
        conn.done();

        let row_of = |rtype: ResourceType, id: &Id| {
            rows.iter()
                .find(|row| {
                    row.try_get::<&str, _>("id").ok() == Some(id.as_str())
                        && row.try_get::<&str, _>("res_type").ok() == Some(rtype.as_str())
                })
                .map(current_from_row)
        };
        for read in others {
            // The read may have been cancelled meanwhile: nobody to answer.
            let _ = read.answer.send(Answer::Row(row_of(read.rtype, &read.id)));
        }
        Ok(row_of(rtype, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    fn id(text: &str) -> Id {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// `gather` gives the read of `Patient/{text}` a lane of its own.
    fn takes_lane(gather: &Gather, text: &str) {
        assert!(matches!(
            gather.enter(ResourceType::Patient, &id(text)),
            Entry::Lane
        ));
    }

    fn queued(entry: Entry) -> oneshot::Receiver<Answer> {
        match entry {
            Entry::Queued(receiver) => receiver,
            Entry::Lane => panic!("expected to wait"),
        }
    }

    #[test]
    fn reads_run_alone_while_lanes_are_free_and_queue_when_not() {
        let gather = Gather::new(2);
        takes_lane(&gather, "a");
        takes_lane(&gather, "b");
        let _c = queued(gather.enter(ResourceType::Patient, &id("c")));
        let _d = queued(gather.enter(ResourceType::Account, &id("d")));

        // The first lane to come free takes every waiting read, oldest first.
        let taken = gather.leave().expect("reads were waiting");
        let taken: Vec<_> = taken.iter().map(|read| read.id.as_str()).collect();
        assert_eq!(taken, ["c", "d"]);
        // ...and keeps its lane for them: a new read still waits.
        let _e = queued(gather.enter(ResourceType::Patient, &id("e")));
        assert_eq!(gather.leave().map(|taken| taken.len()), Some(1));

        // With nobody waiting, lanes are given back and the next reads run alone.
        assert!(gather.leave().is_none());
        assert!(gather.leave().is_none());
        takes_lane(&gather, "f");
    }

    #[test]
    fn a_lane_answers_at_most_a_bounded_number_of_reads_at_once() {
        let gather = Gather::new(1);
        takes_lane(&gather, "a");
        let _waiting: Vec<_> = (0..MAX_GATHERED + 5)
            .map(|n| queued(gather.enter(ResourceType::Patient, &id(&format!("w{n}")))))
            .collect();
        let first = gather.leave().expect("reads were waiting");
        assert_eq!(first.len(), MAX_GATHERED);
        assert_eq!(first[0].id.as_str(), "w0");
        let second = gather.leave().expect("reads were still waiting");
        assert_eq!(second.len(), 5);
        assert_eq!(second[0].id.as_str(), format!("w{MAX_GATHERED}"));
        assert!(gather.leave().is_none());
    }

    /// The lane of a read that has one, as `Store::read` holds it.
    fn lane(gather: &Arc<Gather>) -> Lane {
        Lane(Some(Arc::clone(gather)))
    }

    #[test]
    fn a_lane_goes_to_the_oldest_read_still_waiting_with_the_others_to_answer() {
        let gather = Arc::new(Gather::new(1));
        takes_lane(&gather, "a");
        let cancelled = queued(gather.enter(ResourceType::Patient, &id("b")));
        let mut next = queued(gather.enter(ResourceType::Patient, &id("c")));
        let _last = queued(gather.enter(ResourceType::Patient, &id("d")));
        drop(cancelled);

        drop(lane(&gather));
        let lead = match next.try_recv() {
            Ok(Answer::Lead(lead)) => lead,
            other => panic!("expected the lane, got {other:?}"),
        };
        let others: Vec<_> = lead.others.iter().map(|read| read.id.as_str()).collect();
        assert_eq!(others, ["d"]);
        // The lane stays taken until its new holder hands it on; with nobody waiting then,
        // it is free.
        assert_eq!(gather.state().taken, 1);
        drop(lead);
        assert_eq!(gather.state().taken, 0);
    }

    #[test]
    fn a_lane_sent_to_a_read_cancelled_before_it_took_it_up_goes_on() {
        let gather = Arc::new(Gather::new(1));
        takes_lane(&gather, "a");
        let leader = queued(gather.enter(ResourceType::Patient, &id("b")));
        let mut other = queued(gather.enter(ResourceType::Patient, &id("c")));
        drop(lane(&gather));
        // The lane went to `b`, which is cancelled with it still in its channel.
        drop(leader);

        // `c` was to be answered by `b`: it is told to read on its own...
        assert!(matches!(
            other.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        // ...and the lane is not lost: the next read takes it at once.
        assert_eq!(gather.state().taken, 0);
        takes_lane(&gather, "d");
    }

    #[tokio::test]
    async fn a_store_on_connections_of_its_own_keeps_its_lanes() {
        let pool = PgPoolOptions::new().connect_lazy_with(PgConnectOptions::new());
        let store = Store::from_pool(pool).with_read_lanes(5);
        assert_eq!(store.with_own_connections(1).reads.lanes(), 5);
    }

    /// Reads that queue behind a taken lane are answered by one statement, each with its
    /// own row: current, deleted, unknown, of another type with the same id, or asked for
    /// twice; and the lane is given back afterwards.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn queued_reads_are_answered_together_each_with_its_own_row(
        options: PgPoolOptions,
        connect: PgConnectOptions,
    ) {
        let store = Store::from_pool(options.max_connections(2).connect_lazy_with(connect))
            .with_read_lanes(1);
        let writes = [
            (
                "p1",
                serde_json::json!({"resourceType": "Patient", "id": "p1", "gender": "female"}),
            ),
            (
                "p2",
                serde_json::json!({"resourceType": "Patient", "id": "p2"}),
            ),
            (
                "p2",
                serde_json::json!({"resourceType": "Patient", "id": "p2", "active": true}),
            ),
            (
                "gone",
                serde_json::json!({"resourceType": "Patient", "id": "gone"}),
            ),
        ];
        for (name, body) in writes {
            let name = id(name);
            if let Err(e) = store
                .update(ResourceType::Patient, &name, body, None, &[])
                .await
            {
                panic!("{e}");
            }
        }
        let deleted = store.delete(ResourceType::Patient, &id("gone")).await;
        assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
        let body = serde_json::json!({"resourceType": "Organization", "id": "p1", "name": "Acme"});
        let p1 = id("p1");
        if let Err(e) = store
            .update(ResourceType::Organization, &p1, body, None, &[])
            .await
        {
            panic!("{e}");
        }

        // The lane is taken: every read below waits for it.
        let Entry::Lane = store.reads.enter(ResourceType::Patient, &id("holder")) else {
            panic!("the only lane was free");
        };
        let asked = [
            (ResourceType::Patient, "p1"),
            (ResourceType::Patient, "p2"),
            (ResourceType::Patient, "gone"),
            (ResourceType::Patient, "unknown"),
            (ResourceType::Organization, "p1"),
            (ResourceType::Organization, "p2"),
            (ResourceType::Patient, "p1"),
        ];
        let reads: Vec<_> = asked
            .iter()
            .map(|&(rtype, text)| {
                let store = store.clone();
                tokio::spawn(async move { store.read(rtype, &self::id(text)).await })
            })
            .collect();
        while store.reads.state().waiting.len() < asked.len() {
            tokio::task::yield_now().await;
        }
        drop(lane(&store.reads));

        let mut answers = Vec::new();
        for read in reads {
            let answer = read.await.unwrap_or_else(|e| panic!("{e}"));
            answers.push(answer.unwrap_or_else(|e| panic!("{e}")));
        }
        let summary: Vec<_> = answers
            .iter()
            .map(|current| {
                current.as_ref().map(|current| {
                    let content: Option<serde_json::Value> = current
                        .content
                        .as_deref()
                        .map(|text| serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}")));
                    let pick = |name: &str| content.as_ref().and_then(|c| c.get(name)).cloned();
                    (
                        current.version.get(),
                        current.deleted,
                        pick("resourceType"),
                        pick("id"),
                    )
                })
            })
            .collect();
        let json = |text: &str| Some(serde_json::Value::from(text));
        assert_eq!(
            summary,
            [
                Some((1, false, json("Patient"), json("p1"))),
                Some((2, false, json("Patient"), json("p2"))),
                Some((2, true, None, None)),
                None,
                Some((1, false, json("Organization"), json("p1"))),
                None,
                Some((1, false, json("Patient"), json("p1"))),
            ]
        );
        // The row of the latest version.
        let p2 = answers[1].as_ref().and_then(|c| c.content.as_deref());
        let p2: serde_json::Value = serde_json::from_str(p2.unwrap_or("null")).unwrap_or_default();
        assert_eq!(p2["active"], true);

        // Nobody waits any more: the lane was given back, and the next read runs alone.
        let state = store.reads.state();
        assert!(state.waiting.is_empty());
        assert_eq!(state.taken, 0);
    }

    /// A waiting read whose answer will not come (the statement meant to answer it failed,
    /// or the read that was to send it was cancelled) reads on its own.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_read_left_unanswered_reads_on_its_own(
        options: PgPoolOptions,
        connect: PgConnectOptions,
    ) {
        let store = Store::from_pool(options.max_connections(2).connect_lazy_with(connect))
            .with_read_lanes(1);
        let body = serde_json::json!({"resourceType": "Patient", "id": "p1"});
        let p1 = id("p1");
        let written = store.update(ResourceType::Patient, &p1, body, None, &[]);
        assert!(written.await.is_ok());

        let Entry::Lane = store.reads.enter(ResourceType::Patient, &id("holder")) else {
            panic!("the only lane was free");
        };
        let read = tokio::spawn({
            let store = store.clone();
            async move { store.read(ResourceType::Patient, &id("p1")).await }
        });
        while store.reads.state().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        // Dropped unanswered, as a failed gathered statement leaves them.
        store.reads.state().waiting.clear();

        let current = read.await.unwrap_or_else(|e| panic!("{e}"));
        let current = current.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(current.map(|c| c.version.get()), Some(1));
        // The lane was never the read's: still the holder's.
        assert_eq!(store.reads.state().taken, 1);
    }
}
