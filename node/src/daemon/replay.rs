//! Refusing a change sent twice. Every change (`POST`) carries an `X-Request-Id` chosen by the
//! client; the daemon remembers the last [`REMEMBERED`] ids of its run and refuses one it has
//! seen, so a captured request replayed, or a retry of a change that was in fact applied, stores
//! nothing new. The page retries a change with the same id, and takes the refusal as "done".

use std::collections::{HashSet, VecDeque};

use axum::http::StatusCode;

use super::ApiError;

/// Request ids remembered per run.
pub(crate) const REMEMBERED: usize = 16_384;

/// The request ids seen in this run, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Replays {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Replays {
    /// Accepts `id` once: a missing, malformed or repeated id is an error naming it.
    pub(crate) fn admit(&mut self, id: Option<&str>) -> Result<(), ApiError> {
        let Some(id) = id else {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "the change has no X-Request-Id header; send a new random id (8 to 64 letters, digits, '-' or '_') with each change".into(),
            ));
        };
        let well_formed = (8..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "the X-Request-Id header is not 8 to 64 letters, digits, '-' or '_'; send a new random id with each change".into(),
            ));
        }
        if self.seen.contains(id) {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "request {id} was already applied; nothing was changed again (send each new change with a new X-Request-Id)"
                ),
            ));
        }
        if self.order.len() == REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        Ok(())
    }

    /// Forgets `id`: the change it carried was refused, so sending it again is not a replay.
    pub(crate) fn forget(&mut self, id: Option<&str>) {
        if let Some(id) = id
            && self.seen.remove(id)
        {
            self.order.retain(|o| o != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_passes_once_and_bad_ids_are_named() {
        let mut r = Replays::default();
        assert!(r.admit(Some("abcdefgh-1")).is_ok());
        let e = r.admit(Some("abcdefgh-1")).unwrap_err();
        assert_eq!(e.0, StatusCode::CONFLICT);
        assert!(e.1.contains("already applied"));
        assert!(r.admit(None).unwrap_err().1.contains("no X-Request-Id"));
        assert!(r.admit(Some("short")).is_err());
        assert!(r.admit(Some("has space in it")).is_err());
        r.forget(Some("abcdefgh-1"));
        assert!(r.admit(Some("abcdefgh-1")).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Replays::default();
        for i in 0..REMEMBERED + 10 {
            r.admit(Some(&format!("request-{i:08}"))).unwrap();
        }
        assert_eq!(r.order.len(), REMEMBERED);
        assert_eq!(r.seen.len(), REMEMBERED);
        assert!(
            r.admit(Some("request-00000000")).is_ok(),
            "the oldest was forgotten"
        );
    }
}
