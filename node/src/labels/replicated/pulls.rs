//! A labels session's pulls, both ways: which shard range and page this node asks for next
//! (where its chains end), and the answer to a peer's pull (the records after the peer's tips,
//! a page at most).

use swarmlabel_crdt::{DatasetId, ShardId, Tip};

use super::super::wire::{MAX_TIPS, PAGE_RECORDS, Range, Request, Response};
use super::{Session, Stores};
use crate::replicate::Reply;

impl Stores {
    /// The next pull of `session`: the current shard from `from` on, or the next shard.
    pub(super) fn next_pull(
        &mut self,
        session: &mut Session,
        from: Option<swarmlabel_crdt::AnnotatorKey>,
    ) -> Option<Request> {
        let shard = match (from, session.current) {
            (Some(_), Some((shard, _, _))) => shard,
            _ => session.shards.pop_front()?,
        };
        let from = from.unwrap_or(Range::ALL.from);
        let store = self.stores.get_mut(&session.dataset)?;
        let mut tips: Vec<Tip> = store
            .replica_mut()
            .tips(shard)
            .into_iter()
            .filter(|t| t.annotator >= from)
            .collect();
        let to = if tips.len() > MAX_TIPS {
            let to = tips[MAX_TIPS].annotator;
            tips.truncate(MAX_TIPS);
            Some(to)
        } else {
            None
        };
        let range = Range { from, to };
        session.current = Some((shard, range, 0));
        Some(Request::Pull {
            dataset: session.dataset,
            shard: shard.0,
            range,
            tips,
        })
    }

    /// The same pull again, with where our chains end now (after the page just taken).
    fn pull_again(&mut self, session: &Session) -> Option<Request> {
        let (shard, range, _) = session.current?;
        let store = self.stores.get_mut(&session.dataset)?;
        let tips: Vec<Tip> = store
            .replica_mut()
            .tips(shard)
            .into_iter()
            .filter(|t| range.contains(&t.annotator))
            .take(MAX_TIPS)
            .collect();
        Some(Request::Pull {
            dataset: session.dataset,
            shard: shard.0,
            range,
            tips,
        })
    }

    /// After a page: the next request of the session, or `None` when it is done.
    pub(super) fn after_page(&mut self, session: &mut Session, more: bool) -> Option<Request> {
        let (shard, range, pages) = session.current?;
        if more && pages + 1 < self.max_pages_per_shard {
            session.current = Some((shard, range, pages + 1));
            return self.pull_again(session);
        }
        match range.to {
            // The next range of this shard.
            Some(to) => self.next_pull(session, Some(to)),
            None => {
                session.current = None;
                self.next_pull(session, None)
            }
        }
    }

    /// Answers a pull: the records after the asker's tips in the range, a page at most.
    pub(super) fn answer_pull(
        &mut self,
        dataset: DatasetId,
        shard: u16,
        range: Range,
        tips: &[Tip],
    ) -> Reply<Response> {
        let Some(store) = self.stores.get_mut(&dataset) else {
            return Reply::Unknown;
        };
        let shard = ShardId(shard);
        if !store.replica_mut().dataset().layout.contains(shard) {
            return Reply::Refused;
        }
        let missing =
            store
                .replica_mut()
                .missing_in(shard, tips, |key| range.contains(key), PAGE_RECORDS);
        Reply::Ok(Response::Records {
            records: missing.records,
            more: missing.more,
        })
    }
}
