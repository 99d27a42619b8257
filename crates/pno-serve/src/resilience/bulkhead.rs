//! Bulkheads: each model has its own concurrency gate and bounded queue, under a global
//! ceiling, so saturating one model leaves the others' slots alone. A request takes its model's
//! slot first (waiting in that model's queue), then a global one; a request whose client leaves
//! while it waits drops out of both queues (its future is dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A concurrency gate: `slots` inferences run at once, at most `queue` wait.
#[derive(Debug)]
pub struct Gate {
    slots: std::sync::Arc<Semaphore>,
    queue: usize,
    waiting: AtomicUsize,
    running: std::sync::Arc<AtomicUsize>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue is full.
    QueueFull,
    /// The gate was closed (draining).
    Closed,
}

/// A running slot that owns its permit (it can move into a blocking task); frees itself when
/// dropped.
#[derive(Debug)]
pub struct OwnedSlot {
    _permit: OwnedSemaphorePermit,
    running: std::sync::Arc<AtomicUsize>,
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// A gate with `slots` running and `queue` waiting.
    pub(crate) fn new(slots: usize, queue: usize) -> Self {
        Self {
            slots: std::sync::Arc::new(Semaphore::new(slots)),
            queue,
            waiting: AtomicUsize::new(0),
            running: std::sync::Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Requests holding a slot.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// True when the queue is full (new requests would be shed).
    pub(crate) fn saturated(&self) -> bool {
        self.slots.available_permits() == 0 && self.waiting() >= self.queue
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> OwnedSlot {
        self.running.fetch_add(1, Ordering::SeqCst);
        OwnedSlot {
            _permit: permit,
            running: self.running.clone(),
        }
    }

    /// Close the gate: queued requests are refused.
    pub fn close(&self) {
        self.slots.close();
    }

    /// Wait for a slot, or be shed at once when the queue is full.
    pub async fn acquire(&self) -> Result<OwnedSlot, Shed> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(self.slot(p));
        }
        // Reserve a queue place atomically.
        let mut cur = self.waiting.load(Ordering::SeqCst);
        loop {
            if cur >= self.queue {
                return Err(Shed::QueueFull);
            }
            match self
                .waiting
                .compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.waiting);
        match self.slots.clone().acquire_owned().await {
            Ok(p) => Ok(self.slot(p)),
            Err(_) => Err(Shed::Closed),
        }
    }
}

/// The slots a running inference holds: its model's and a global one.
#[derive(Debug)]
pub(crate) struct Slots {
    _model: OwnedSlot,
    _global: OwnedSlot,
}

/// A model's gate size: concurrency and queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size {
    /// Inferences of the model computed at once.
    pub(crate) concurrency: usize,
    /// Inferences of the model waiting.
    pub(crate) queue: usize,
}

/// The per-model gates and the global ceiling.
#[derive(Debug)]
pub(crate) struct Bulkheads {
    global: Arc<Gate>,
    default: Size,
    sizes: HashMap<String, Size>,
    models: Mutex<HashMap<String, Arc<Gate>>>,
}

impl Bulkheads {
    /// A global gate of `global` and a gate per model: `sizes` by name, else `default`.
    pub(crate) fn new(global: Size, default: Size, sizes: HashMap<String, Size>) -> Self {
        Self {
            global: Arc::new(Gate::new(global.concurrency, global.queue)),
            default,
            sizes,
            models: Mutex::new(HashMap::new()),
        }
    }

    /// The global gate.
    pub(crate) fn global(&self) -> Arc<Gate> {
        self.global.clone()
    }

    /// The gate of `model` (made on first use).
    pub(crate) fn model(&self, model: &str) -> Arc<Gate> {
        let mut m = self.models.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(model.to_string())
            .or_insert_with(|| {
                let s = self.sizes.get(model).copied().unwrap_or(self.default);
                Arc::new(Gate::new(s.concurrency, s.queue))
            })
            .clone()
    }

    /// The size of `model`'s gate.
    pub(crate) fn size(&self, model: &str) -> Size {
        self.sizes.get(model).copied().unwrap_or(self.default)
    }

    /// Take `model`'s slot, then a global one.
    pub(crate) async fn acquire(&self, model: &str) -> Result<Slots, Shed> {
        let gate = self.model(model);
        let m = gate.acquire().await?;
        let g = self.global.acquire().await?;
        Ok(Slots {
            _model: m,
            _global: g,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_full_model_queue_sheds_only_that_model() {
        let one = Size {
            concurrency: 1,
            queue: 1,
        };
        let b = Arc::new(Bulkheads::new(
            Size {
                concurrency: 4,
                queue: 8,
            },
            one,
            HashMap::new(),
        ));
        let _running = b.acquire("a").await.unwrap();
        let b2 = b.clone();
        let waiting = tokio::spawn(async move { b2.acquire("a").await.map(|_| ()) });
        tokio::task::yield_now().await;
        while b.model("a").waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.acquire("a").await.unwrap_err(), Shed::QueueFull);
        // Model b still gets a slot at once.
        let _other = b.acquire("b").await.unwrap();
        assert_eq!(b.global().running(), 2);
        // A waiter that gives up leaves the queue.
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(b.model("a").waiting(), 0);
    }
}
