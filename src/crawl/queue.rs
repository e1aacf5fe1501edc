//! The in-memory queue of ready jobs, fed from the `jobs` table.
//!
//! It holds only jobs that are not in flight, ordered by not-before time and id. A job taken by a
//! worker counts as in flight until the store writer has committed its outcome; only then are the
//! jobs it spawned pushed and the in-flight count lowered, in one step, so that "queue empty and
//! nothing in flight" means the crawl is really done.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock;
use crate::store::{Job, JobId};

/// Ready jobs and the in-flight count.
#[derive(Debug, Default)]
pub struct JobQueue {
    inner: Mutex<Inner>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    ready: BTreeMap<(u64, JobId), Job>,
    in_flight: usize,
    closed: bool,
}

impl JobQueue {
    /// A queue holding `jobs`.
    pub fn new(jobs: impl IntoIterator<Item = (JobId, Job)>) -> Self {
        let queue = Self::default();
        {
            let mut inner = queue.lock();
            for (id, job) in jobs {
                inner.ready.insert((job.not_before_ms, id), job);
            }
        }
        queue
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next job whose time has come, waiting as needed. `None` when the crawl is done
    /// (nothing queued, nothing in flight) or the queue was closed.
    pub async fn take(&self) -> Option<(JobId, Job)> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register interest before looking, so a push between the look and the wait wakes us.
            notified.as_mut().enable();
            let wait = {
                let mut inner = self.lock();
                if inner.closed {
                    return None;
                }
                let now = clock::now_unix_millis();
                match inner.ready.first_key_value().map(|(k, _)| *k) {
                    Some(key) if key.0 <= now => {
                        let job = inner.ready.remove(&key).expect("key just seen");
                        inner.in_flight += 1;
                        return Some((key.1, job));
                    }
                    Some((not_before, _)) => Some(Duration::from_millis(not_before - now)),
                    None if inner.in_flight == 0 => {
                        inner.closed = true;
                        drop(inner);
                        self.changed.notify_waiters();
                        return None;
                    }
                    None => None,
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Records that an in-flight job's outcome is committed: its spawned or retried jobs become
    /// ready, and it stops counting as in flight.
    pub fn complete(&self, jobs: impl IntoIterator<Item = (JobId, Job)>) {
        {
            let mut inner = self.lock();
            for (id, job) in jobs {
                inner.ready.insert((job.not_before_ms, id), job);
            }
            inner.in_flight = inner.in_flight.saturating_sub(1);
        }
        self.changed.notify_waiters();
    }

    /// Stops handing out jobs (on Ctrl-C or a fatal store error).
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobKind;

    fn job(url: &str, not_before_ms: u64) -> Job {
        Job {
            not_before_ms,
            ..Job::new(JobKind::Repos {
                namespace: "library".into(),
                url: url.into(),
                descending: false,
            })
        }
    }

    #[tokio::test]
    async fn done_only_when_nothing_in_flight() {
        let queue = std::sync::Arc::new(JobQueue::new([(1, job("a", 0))]));
        let (id, _) = queue.take().await.unwrap();
        assert_eq!(id, 1);
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.take().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "must wait while a job is in flight");
        queue.complete([(2, job("b", 0))]);
        assert_eq!(waiter.await.unwrap().unwrap().0, 2);
        queue.complete([]);
        assert!(queue.take().await.is_none());
    }

    #[tokio::test]
    async fn not_before_is_respected_in_order() {
        let later = clock::now_unix_millis() + 150;
        let queue = JobQueue::new([(1, job("late", later)), (2, job("now", 0))]);
        assert_eq!(queue.take().await.unwrap().0, 2);
        let (id, _) = queue.take().await.unwrap();
        assert_eq!(id, 1);
        assert!(clock::now_unix_millis() >= later);
    }
}
