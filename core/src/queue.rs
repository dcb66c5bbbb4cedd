//! The waiters of one group: an intrusive FIFO through the waiters' own
//! futures, with O(1) work per poll.
//!
//! This module knows nothing of the limiter or of futures: it is the data
//! structure under the group's lock. The async front (`wait`) links its
//! futures' nodes here; the limiter (`limiter`) owns one queue per group.
//!
//! # Invariants
//!
//! - A node is reachable from the queue only while its future is alive and
//!   pinned; every field of a linked node is read and written only with the
//!   group's lock held (hence every `unsafe` here is sound under that lock).
//! - Tickets increase from head to tail, so `ticket(node) - ticket(head)` is
//!   an upper bound on the number of waiters ahead of `node` (exact unless a
//!   waiter between them left early); [`WaitQueue::position`] walks for the
//!   exact count and is only used when the bound is not good enough.
//! - `generation` counts events that move every waiter's turn (a 429, a ban,
//!   a configuration change). The event wakes the head; each waiter, when
//!   polled, passes the wake to the one behind it if it had not seen the
//!   generation yet; a waiter that leaves before it passed the wake on wakes
//!   its successor as it goes. So every waiter re-checks its deadline after
//!   such an event, with one lock acquisition each and no allocation.

use core::ptr::NonNull;
use core::task::Waker;

use crate::time::Instant;

/// Up to four wakers collected under the lock, woken after it is released
/// (waking under the lock could deadlock a waker that re-enters the limiter).
///
/// One locked step collects at most: the wake it passes on when checking in,
/// one eviction (two: the evicted head's and the new head's), and one final
/// unlink or suspicion. A step evicts at most once: the new head is stamped
/// as due no earlier than now, so it is never stale in the same step.
#[derive(Debug, Default)]
pub(crate) struct Wakes {
    slots: [Option<Waker>; 4],
}

impl Wakes {
    /// Keeps `waker` to wake later.
    pub(crate) fn push(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(waker),
            // Unreachable by the budget above (tests run with debug assertions).
            None => debug_assert!(false, "more wakers than one locked step collects"),
        }
    }
    /// Wakes every collected waker. Call with no lock held.
    pub(crate) fn wake(self) {
        for w in self.slots.into_iter().flatten() {
            w.wake();
        }
    }
}

/// A queue node, embedded in its `Acquire` future.
#[derive(Debug)]
pub(crate) struct Waiter {
    prev: Option<NonNull<Waiter>>,
    next: Option<NonNull<Waiter>>,
    linked: bool,
    ticket: u64,
    /// The queue's generation this waiter last saw.
    seen: u64,
    /// When this waiter, as head, expects to claim.
    due: Instant,
    /// Since when the waiters behind suspect this head of being leaked.
    suspected: Option<Instant>,
    waker: Option<Waker>,
}

impl Waiter {
    pub(crate) const fn new() -> Self {
        Self {
            prev: None,
            next: None,
            linked: false,
            ticket: 0,
            seen: 0,
            due: Instant::MAX,
            suspected: None,
            waker: None,
        }
    }
}

/// First ticket handed out at the back; tickets handed out at the front count
/// down from just below it, so a waiter put back at the front always sorts
/// before everyone.
const FIRST_BACK_TICKET: u64 = 1 << 62;

/// The waiters of one group, in arrival order.
#[derive(Debug)]
pub(crate) struct WaitQueue {
    head: Option<NonNull<Waiter>>,
    tail: Option<NonNull<Waiter>>,
    len: usize,
    back_ticket: u64,
    front_ticket: u64,
    generation: u64,
}

// SAFETY: the pointers are only followed with the owning group's lock held.
unsafe impl Send for WaitQueue {}

impl WaitQueue {
    pub(crate) const fn new() -> Self {
        Self {
            head: None,
            tail: None,
            len: 0,
            back_ticket: FIRST_BACK_TICKET,
            front_ticket: FIRST_BACK_TICKET - 1,
            generation: 0,
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(crate) fn head(&self) -> Option<NonNull<Waiter>> {
        self.head
    }

    /// Records an event that moves every waiter's turn, and returns the
    /// head's waker (the wake then travels down the queue, see the module).
    pub(crate) fn bump_generation(&mut self) -> Option<Waker> {
        self.generation = self.generation.wrapping_add(1);
        self.head_waker()
    }

    /// # Safety
    /// `node` is a live node owned by the caller.
    pub(crate) unsafe fn contains(&self, node: NonNull<Waiter>) -> bool {
        // SAFETY: per the contract.
        unsafe { (*node.as_ptr()).linked }
    }

    /// # Safety
    /// `node` is alive, pinned, not linked, and stays alive until unlinked.
    pub(crate) unsafe fn push_back(&mut self, node: NonNull<Waiter>) {
        let ticket = self.back_ticket;
        self.back_ticket += 1;
        // SAFETY: per the contract; `tail` is linked hence alive.
        unsafe {
            self.init(node, ticket);
            (*node.as_ptr()).prev = self.tail;
            match self.tail {
                Some(t) => (*t.as_ptr()).next = Some(node),
                None => self.head = Some(node),
            }
        }
        self.tail = Some(node);
        self.len += 1;
    }

    /// # Safety
    /// As [`WaitQueue::push_back`].
    pub(crate) unsafe fn push_front(&mut self, node: NonNull<Waiter>) {
        let ticket = self.front_ticket;
        self.front_ticket -= 1;
        // SAFETY: per the contract; `head` is linked hence alive.
        unsafe {
            self.init(node, ticket);
            (*node.as_ptr()).next = self.head;
            match self.head {
                Some(h) => (*h.as_ptr()).prev = Some(node),
                None => self.tail = Some(node),
            }
        }
        self.head = Some(node);
        self.len += 1;
    }

    /// # Safety
    /// `node` is alive and not linked.
    unsafe fn init(&self, node: NonNull<Waiter>, ticket: u64) {
        // SAFETY: per the contract.
        let n = unsafe { &mut *node.as_ptr() };
        n.prev = None;
        n.next = None;
        n.linked = true;
        n.ticket = ticket;
        n.seen = self.generation;
        n.due = Instant::MAX;
        n.suspected = None;
    }

    /// A polled waiter checks in: stores its waker, clears any suspicion, and
    /// returns the waker of the waiter behind it if a generation passed since
    /// it last looked (the wake travels on).
    ///
    /// # Safety
    /// `node` is linked in this queue.
    pub(crate) unsafe fn check_in(&mut self, node: NonNull<Waiter>, waker: &Waker) -> Option<Waker> {
        // SAFETY: per the contract; `next` is linked hence alive.
        unsafe {
            let n = &mut *node.as_ptr();
            match &n.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => n.waker = Some(waker.clone()),
            }
            n.suspected = None;
            if n.seen == self.generation {
                return None;
            }
            n.seen = self.generation;
            n.next.and_then(|x| (*x.as_ptr()).waker.clone())
        }
    }

    /// Records when the head expects to claim.
    ///
    /// # Safety
    /// `node` is linked in this queue.
    pub(crate) unsafe fn set_due(&mut self, node: NonNull<Waiter>, due: Instant) {
        // SAFETY: per the contract.
        unsafe { (*node.as_ptr()).due = due };
    }

    /// Records when a head that has not said when it will claim is due: the
    /// moment it became head, or when the group allows the next admission.
    /// A head that is alive overwrites it on its next poll; one that never
    /// comes back is then recognised as stale by the waiters behind it.
    pub(crate) fn stamp_head(&mut self, earliest: Instant) {
        if let Some(h) = self.head {
            // SAFETY: the head is linked, hence alive; we hold the lock (`&mut self`).
            let h = unsafe { &mut *h.as_ptr() };
            if h.due == Instant::MAX {
                h.due = earliest;
            }
        }
    }

    /// Unlinks `node`. Returns the waker of the waiter behind it when that
    /// one must look now: it became the head, or `node` had not yet passed
    /// on a generation's wake.
    ///
    /// # Safety
    /// `node` is linked in this queue.
    pub(crate) unsafe fn unlink(&mut self, node: NonNull<Waiter>) -> Option<Waker> {
        let was_head = self.head == Some(node);
        // SAFETY: per the contract; neighbours are linked hence alive.
        unsafe {
            let n = &mut *node.as_ptr();
            match n.prev {
                Some(p) => (*p.as_ptr()).next = n.next,
                None => self.head = n.next,
            }
            match n.next {
                Some(x) => (*x.as_ptr()).prev = n.prev,
                None => self.tail = n.prev,
            }
            let next = n.next;
            n.prev = None;
            n.next = None;
            n.linked = false;
            self.len -= 1;
            if was_head || n.seen != self.generation {
                next.and_then(|x| (*x.as_ptr()).waker.clone())
            } else {
                None
            }
        }
    }

    /// The head's expected claim instant and whether (since when) it is
    /// suspected of being leaked.
    pub(crate) fn head_state(&self) -> Option<(Instant, Option<Instant>)> {
        // SAFETY: linked nodes are alive, and `&self` comes from the group's lock.
        self.head
            .map(|h| unsafe { ((*h.as_ptr()).due, (*h.as_ptr()).suspected) })
    }

    /// Marks the head as suspected since `now` and returns its waker, so that
    /// a head that is only late gets polled and clears the mark.
    pub(crate) fn suspect_head(&mut self, now: Instant) -> Option<Waker> {
        let h = self.head?;
        // SAFETY: the head is linked, hence alive; we hold the lock.
        unsafe {
            (*h.as_ptr()).suspected = Some(now);
            (*h.as_ptr()).waker.clone()
        }
    }

    /// The head's waker, to let it see a change (a ban, an open breaker) at once.
    pub(crate) fn head_waker(&self) -> Option<Waker> {
        // SAFETY: linked nodes are alive, and `&self` comes from the group's lock.
        self.head.and_then(|h| unsafe { (*h.as_ptr()).waker.clone() })
    }

    /// Unlinks a stale head. Collects its waker (in case it is only slow:
    /// when it is polled again it re-enters at the front) and the new head's.
    pub(crate) fn evict_head(&mut self, wakes: &mut Wakes) {
        if let Some(h) = self.head {
            // SAFETY: the head is linked, hence alive; we hold the lock.
            unsafe {
                wakes.push(self.unlink(h));
                wakes.push((*h.as_ptr()).waker.take());
            }
        }
    }

    /// An upper bound on the waiters ahead of `node` (0 for the head), in O(1).
    ///
    /// # Safety
    /// `node` is linked in this queue.
    pub(crate) unsafe fn ahead_at_most(&self, node: NonNull<Waiter>) -> u64 {
        match self.head {
            // SAFETY: per the contract; the head is linked hence alive.
            Some(h) => unsafe { (*node.as_ptr()).ticket.saturating_sub((*h.as_ptr()).ticket) },
            None => 0,
        }
    }

    /// The exact number of waiters ahead of `node`, by walking (O(n)).
    ///
    /// # Safety
    /// `node` is linked in this queue.
    pub(crate) unsafe fn position(&self, node: NonNull<Waiter>) -> u64 {
        let mut ahead = 0;
        let mut cur = self.head;
        // SAFETY: per the contract; every linked node is alive.
        unsafe {
            while let Some(c) = cur {
                if c == node {
                    break;
                }
                ahead += 1;
                cur = (*c.as_ptr()).next;
            }
        }
        ahead
    }
}
