//! One sync round's Redis traffic: every kind of work queues its pipelines into
//! one batch, sent together, and keeps the handle of where they sit; the replies
//! come back in the same order, and each kind reads its own through its handle.

use redis::{ErrorKind, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};
use std::ops::Range;

/// The round's pipelines, in the order they were queued.
#[derive(Default)]
pub(super) struct Batch {
    pipelines: Vec<Pipeline>,
}

/// Where one kind's pipelines sit in the batch, and so where its replies sit.
pub(super) struct Queued(Range<usize>);

impl Batch {
    pub(super) fn queue(&mut self, pipelines: impl IntoIterator<Item = Pipeline>) -> Queued {
        let start = self.pipelines.len();
        self.pipelines.extend(pipelines);
        Queued(start..self.pipelines.len())
    }

    pub(super) fn into_pipelines(self) -> Vec<Pipeline> {
        self.pipelines
    }
}

/// Each pipeline's replies, `Err(())` for one that failed.
pub(super) struct Replies {
    each: Vec<Option<Result<Vec<Value>, ()>>>,
    /// The first failure, which fails the round once every kind has read its part.
    pub(super) first_error: Option<RedisError>,
    /// A script call failed for want of the script: it must be loaded again.
    pub(super) script_lost: bool,
}

impl Replies {
    pub(super) fn new(results: Vec<RedisResult<Vec<Value>>>) -> Self {
        let mut first_error = None;
        let mut script_lost = false;
        let each = results
            .into_iter()
            .map(|r| {
                Some(r.map_err(|e| {
                    script_lost |= e.kind() == ErrorKind::Server(ServerErrorKind::NoScript);
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }))
            })
            .collect();
        Replies {
            each,
            first_error,
            script_lost,
        }
    }

    /// One kind's replies, in the order it queued its pipelines; one missing is a failure.
    pub(super) fn take(&mut self, queued: Queued) -> impl Iterator<Item = Result<Vec<Value>, ()>> + '_ {
        queued
            .0
            .map(|i| self.each.get_mut(i).and_then(Option::take).unwrap_or(Err(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_the_replies_of_its_own_pipelines() {
        let mut batch = Batch::default();
        let first = batch.queue([redis::pipe(), redis::pipe()]);
        let none = batch.queue([]);
        let last = batch.queue([redis::pipe()]);
        assert_eq!(batch.into_pipelines().len(), 3);
        let failed = RedisError::from((ErrorKind::Io, "down"));
        let mut replies = Replies::new(vec![
            Ok(vec![Value::Int(1)]),
            Err(failed),
            Ok(vec![Value::Int(3)]),
        ]);
        assert_eq!(
            replies.take(last).collect::<Vec<_>>(),
            vec![Ok(vec![Value::Int(3)])]
        );
        assert_eq!(replies.take(none).count(), 0);
        assert_eq!(
            replies.take(first).collect::<Vec<_>>(),
            vec![Ok(vec![Value::Int(1)]), Err(())]
        );
        assert!(replies.first_error.is_some());
        assert!(!replies.script_lost);
    }
}
