//! Cancellation of an inference: a token the compute checks between chunks of draws and rows.
//! The request sets it when its deadline passes; dropping the request (the client went away, so
//! hyper dropped its future) sets it too, through [`CancelOnDrop`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Why a computation was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// The request's deadline passed.
    Deadline,
    /// The client disconnected.
    Disconnect,
}

impl Why {
    /// `deadline` or `disconnect`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Why::Deadline => "deadline",
            Why::Disconnect => "disconnect",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    stop: AtomicBool,
    why: AtomicU8,
}

/// A shared cancellation flag with its reason (the first one set wins).
#[derive(Debug, Clone, Default)]
pub(crate) struct Token(Arc<Inner>);

impl Token {
    /// Cancel for `why`; false when it was already cancelled.
    pub(crate) fn cancel(&self, why: Why) -> bool {
        let code = match why {
            Why::Deadline => 1,
            Why::Disconnect => 2,
        };
        let first = self
            .0
            .why
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        self.0.stop.store(true, Ordering::SeqCst);
        first
    }

    /// The flag the compute polls.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.0.stop
    }

    /// Why it was cancelled, if it was.
    pub(crate) fn why(&self) -> Option<Why> {
        match self.0.why.load(Ordering::SeqCst) {
            1 => Some(Why::Deadline),
            2 => Some(Why::Disconnect),
            _ => None,
        }
    }
}

/// Cancels its token as a disconnect when dropped before [`CancelOnDrop::disarm`].
#[derive(Debug)]
pub(crate) struct CancelOnDrop {
    token: Token,
    armed: bool,
}

impl CancelOnDrop {
    /// Guard `token`.
    pub(crate) fn new(token: Token) -> Self {
        Self { token, armed: true }
    }
    /// The request finished: dropping no longer cancels.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.token.cancel(Why::Disconnect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_dropping_cancels_unless_disarmed() {
        let t = Token::default();
        assert_eq!(t.why(), None);
        assert!(t.cancel(Why::Deadline));
        assert!(!t.cancel(Why::Disconnect));
        assert_eq!(t.why(), Some(Why::Deadline));
        assert!(t.flag().load(Ordering::SeqCst));

        let t = Token::default();
        drop(CancelOnDrop::new(t.clone()));
        assert_eq!(t.why(), Some(Why::Disconnect));

        let t = Token::default();
        let mut g = CancelOnDrop::new(t.clone());
        g.disarm();
        drop(g);
        assert_eq!(t.why(), None);
    }
}
