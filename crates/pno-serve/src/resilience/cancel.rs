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
    #[cfg_attr(not(any(test, feature = "fault-injection")), allow(dead_code))]
    pub(crate) fn why(&self) -> Option<Why> {
        match self.0.why.load(Ordering::SeqCst) {
            1 => Some(Why::Deadline),
            2 => Some(Why::Disconnect),
            _ => None,
        }
    }
}

/// Cancels its token when dropped before [`CancelOnDrop::disarm`] — the request's future was
/// dropped: at or past `deadline` that is the deadline (an outer timeout fired), before it the
/// client left — and reports the reason to `on_cancel`.
pub(crate) struct CancelOnDrop {
    token: Token,
    deadline: std::time::Instant,
    on_cancel: Option<Box<dyn FnOnce(Why) + Send>>,
}

impl std::fmt::Debug for CancelOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelOnDrop")
            .field("token", &self.token)
            .field("armed", &self.on_cancel.is_some())
            .finish()
    }
}

impl CancelOnDrop {
    /// Guard `token` of a request due by `deadline`.
    pub(crate) fn new(
        token: Token,
        deadline: std::time::Instant,
        on_cancel: impl FnOnce(Why) + Send + 'static,
    ) -> Self {
        Self {
            token,
            deadline,
            on_cancel: Some(Box::new(on_cancel)),
        }
    }
    /// The request was answered (or cancelled and counted already): dropping does nothing.
    pub(crate) fn disarm(&mut self) {
        self.on_cancel = None;
    }
    /// Cancel now for `why` and report it (once).
    pub(crate) fn cancel(&mut self, why: Why) {
        if let Some(f) = self.on_cancel.take()
            && self.token.cancel(why)
        {
            f(why);
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let why = if std::time::Instant::now() >= self.deadline {
            Why::Deadline
        } else {
            Why::Disconnect
        };
        self.cancel(why);
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

        let seen = std::sync::Arc::new(AtomicU8::new(0));
        let count = |seen: &std::sync::Arc<AtomicU8>| {
            let s = seen.clone();
            move |_why: Why| {
                s.fetch_add(1, Ordering::SeqCst);
            }
        };
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let t = Token::default();
        drop(CancelOnDrop::new(t.clone(), later, count(&seen)));
        assert_eq!(t.why(), Some(Why::Disconnect));
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let past = std::time::Instant::now();
        let t = Token::default();
        drop(CancelOnDrop::new(t.clone(), past, count(&seen)));
        assert_eq!(t.why(), Some(Why::Deadline), "dropped at the deadline");

        let t = Token::default();
        let mut g = CancelOnDrop::new(t.clone(), later, count(&seen));
        g.disarm();
        drop(g);
        assert_eq!(t.why(), None);
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        // Cancelled explicitly once, counted once.
        let t = Token::default();
        let mut g = CancelOnDrop::new(t.clone(), later, count(&seen));
        g.cancel(Why::Deadline);
        drop(g);
        assert_eq!(t.why(), Some(Why::Deadline));
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }
}
