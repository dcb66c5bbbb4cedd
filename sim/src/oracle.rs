//! The clairvoyant admission policy (`oracle`): the physical limit.
//!
//! No real client knows how long its request will take to reach the server,
//! nor what the server's windows hold. The oracle knows both: it reads the
//! one-way delay the network drew for the request and the simulated server's
//! window state, and sends each request at the earliest instant at which the
//! server accepts it on arrival. Nothing can send sooner without a 429, so its
//! waits are the least any limiter could reach on the same traffic.
//!
//! # Algorithm
//!
//! Each request books an arrival instant when it is wanted, in the order
//! requests are wanted (FIFO per group, as ours serves its queue): with `u`
//! its upward delay and `t` now, it books the earliest `a >= t + u` such that
//! the group's windows, replayed from their present state over every arrival
//! already booked plus `a`, in time order, accept every one of them (so a
//! later request never takes the place of an earlier one), then it is sent at
//! `a - u`. The search steps from a rejected `a` straight to the next instant
//! at which it could succeed: when the windows have no room at `a`, to the
//! instant they next have room ([`Window::next_room`]); when `a` would push an
//! already booked arrival `b` out, to just after `b`. A booked instant is never
//! booked twice in one group, so the order in which equal arrivals are decided
//! never matters. A lost request is sent at once (it never arrives).
//!
//! The replay is exact for every window model (`sliding`, `fixed`,
//! `anchored`, `token-bucket`) because it runs the server's own
//! [`Window`] code on copies. It does not foresee traffic it did not send:
//! with another process on the same IP or pocket, the oracle is only as good
//! as the arrivals already at the server.

use std::cell::RefCell;
use std::collections::BTreeSet;

use upbit_limiter_core::{Duration, Group, Instant};

use crate::server::{Server, Window};

/// The oracle's bookings: per group, the arrival instants of its requests
/// that have not reached the server yet.
#[derive(Debug)]
pub struct Oracle {
    booked: RefCell<Vec<BTreeSet<Instant>>>,
}

impl Default for Oracle {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an arrival instant cannot be booked.
enum Refusal {
    /// The windows have no room before this instant.
    NoRoomUntil(Instant),
    /// Booking it would get this already booked arrival rejected.
    Displaces(Instant),
}

/// The most candidate instants tried for one request (never reached in
/// practice: each step passes a booked arrival or a window event).
const MAX_STEPS: usize = 1 << 20;

fn refresh_all(windows: &mut [Window], at: Instant) -> bool {
    for w in windows.iter_mut() {
        w.refresh(at);
    }
    windows.iter().all(Window::has_room)
}

fn take_all(windows: &mut [Window], at: Instant) {
    for w in windows.iter_mut() {
        w.take(at);
    }
}

/// Whether `a` can be booked beside `booked`, starting from `windows`.
fn check(windows: &[Window], booked: &BTreeSet<Instant>, a: Instant) -> Result<(), Refusal> {
    let mut ws = windows.to_vec();
    for &b in booked.range(..a) {
        if refresh_all(&mut ws, b) {
            take_all(&mut ws, b);
        }
    }
    if !refresh_all(&mut ws, a) {
        let until = ws
            .iter()
            .filter_map(Window::next_room)
            .max()
            .unwrap_or(a)
            .max(a.saturating_add(Duration::from_nanos(1)));
        return Err(Refusal::NoRoomUntil(until));
    }
    take_all(&mut ws, a);
    for &b in booked.range(a..) {
        if !refresh_all(&mut ws, b) {
            return Err(Refusal::Displaces(b));
        }
        take_all(&mut ws, b);
    }
    Ok(())
}

/// The earliest instant from `from` on at which an arrival of `group` can be
/// booked beside `booked` with the server as it stands.
pub fn earliest_arrival(server: &Server, group: Group, booked: &BTreeSet<Instant>, from: Instant) -> Instant {
    let windows = server.windows(group);
    let mut a = from.max(server.blocked_until(group));
    for _ in 0..MAX_STEPS {
        if booked.contains(&a) {
            a = a.saturating_add(Duration::from_nanos(1));
            continue;
        }
        match check(windows, booked, a) {
            Ok(()) => return a,
            Err(Refusal::NoRoomUntil(t)) => a = t,
            Err(Refusal::Displaces(b)) => a = b.saturating_add(Duration::from_nanos(1)),
        }
    }
    a
}

impl Oracle {
    /// No bookings.
    pub fn new() -> Self {
        Self {
            booked: RefCell::new((0..Group::COUNT).map(|_| BTreeSet::new()).collect()),
        }
    }

    /// Books the earliest arrival of `group` at or after `from` that the
    /// server will accept, and returns it.
    pub fn book(&self, server: &Server, group: Group, from: Instant) -> Instant {
        let mut booked = self.booked.borrow_mut();
        let set = &mut booked[group.index()];
        let a = earliest_arrival(server, group, set, from);
        set.insert(a);
        a
    }

    /// The booked arrival of `group` at `at` has reached the server (call it
    /// right after the server decided it).
    pub fn arrived(&self, group: Group, at: Instant) {
        self.booked.borrow_mut()[group.index()].remove(&at);
    }

    /// Arrivals booked and not yet at the server, in `group`.
    pub fn in_flight(&self, group: Group) -> usize {
        self.booked.borrow()[group.index()].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Draws;
    use crate::server::{Escalation, ServerModel, Source};
    use upbit_limiter_core::ServerLimit;

    fn server(model: ServerModel) -> Server {
        Server::with_limits(
            model,
            Duration::from_millis(370),
            Escalation::default(),
            |g| match g {
                Group::Ticker => vec![ServerLimit::per_second(10)],
                // Two windows at once, as some of Upbit's groups have.
                _ => vec![
                    ServerLimit::per_second(5),
                    ServerLimit::new(12, Duration::from_secs(4)),
                ],
            },
        )
    }

    /// Books `n` requests of `group` wanted at `wanted[i]` with upward delay
    /// `delay[i]`, then plays the arrivals to the server in time order (each
    /// when its time comes, as the simulation does). Returns the arrivals and
    /// the statuses.
    fn play(model: ServerModel, group: Group, wanted: &[u64], delay: &[u64]) -> (Vec<Instant>, Vec<u16>) {
        play_with(model, group, wanted, delay, false)
    }

    /// `forget`: a broken oracle that forgets its bookings (it only sees the
    /// arrivals already at the server).
    fn play_with(
        model: ServerModel,
        group: Group,
        wanted: &[u64],
        delay: &[u64],
        forget: bool,
    ) -> (Vec<Instant>, Vec<u16>) {
        let mut s = server(model);
        let o = Oracle::new();
        let mut pending: Vec<Instant> = Vec::new();
        let mut arrivals = Vec::new();
        let mut statuses = Vec::new();
        for (&w, &d) in wanted.iter().zip(delay) {
            let now = Instant::from_nanos(w);
            // Everything that arrived by now has been decided.
            pending.sort();
            while pending.first().is_some_and(|&a| a <= now) {
                let a = pending.remove(0);
                statuses.push(s.handle(a, group, Source::Ours).status);
                o.arrived(group, a);
            }
            let a = if forget {
                earliest_arrival(&s, group, &BTreeSet::new(), now + Duration::from_nanos(d))
            } else {
                o.book(&s, group, now + Duration::from_nanos(d))
            };
            assert!(a >= now + Duration::from_nanos(d));
            pending.push(a);
            arrivals.push(a);
        }
        pending.sort();
        for a in pending {
            statuses.push(s.handle(a, group, Source::Ours).status);
            o.arrived(group, a);
        }
        if !forget {
            assert_eq!(o.in_flight(group), 0);
        }
        (arrivals, statuses)
    }

    #[test]
    fn a_burst_is_accepted_whole_on_every_model() {
        let ms = 1_000_000u64;
        let mut d = Draws::new(5, 1);
        for model in ServerModel::ALL {
            for group in [Group::Ticker, Group::Default] {
                let wanted: Vec<u64> = (0..60)
                    .map(|i| if i < 40 { 0 } else { 1_500 * ms + i * 7 * ms })
                    .collect();
                let delay: Vec<u64> = (0..60)
                    .map(|_| d.below(3_000 * ms) / if d.below(10) == 0 { 1 } else { 50 })
                    .collect();
                let (arrivals, statuses) = play(model, group, &wanted, &delay);
                assert!(
                    statuses.iter().all(|&s| s == 200),
                    "{model} {group}: {statuses:?}"
                );
                assert_eq!(statuses.len(), 60);
                // The first arrivals go through at once: no wait while there is room.
                assert_eq!(arrivals[0], Instant::from_nanos(delay[0]), "{model}");
            }
        }
    }

    #[test]
    fn the_oracle_fills_every_slot_of_a_sliding_window() {
        // 30 at once on 10/s, 5 ms up: 10 at 5 ms, 10 at 1.005 s, 10 at 2.005 s.
        let ms = 1_000_000u64;
        let (arrivals, statuses) = play(ServerModel::Sliding, Group::Ticker, &[0; 30], &[5 * ms; 30]);
        assert!(statuses.iter().all(|&s| s == 200));
        let mut a: Vec<u64> = arrivals.iter().map(|t| t.as_nanos()).collect();
        a.sort();
        // Distinct instants, 1 ns apart within a burst, one window later each time.
        assert_eq!(a[0], 5 * ms);
        assert_eq!(a[9], 5 * ms + 9);
        assert_eq!(a[10], 1_005 * ms);
        assert_eq!(a[20], 2_005 * ms);
        assert_eq!(a[29], 2_005 * ms + 9);
    }

    #[test]
    fn a_booking_never_pushes_an_earlier_one_out() {
        // A request booked far ahead (a slow trip) keeps its slot: a later
        // one with a short trip takes a free slot before it, not its slot.
        let ms = 1_000_000u64;
        let mut wanted = vec![0u64; 9];
        let mut delay = vec![ms; 9];
        wanted.push(0);
        delay.push(900 * ms);
        wanted.push(10 * ms);
        delay.push(ms);
        let (arrivals, statuses) = play(ServerModel::Sliding, Group::Ticker, &wanted, &delay);
        assert!(statuses.iter().all(|&s| s == 200));
        assert_eq!(arrivals[9], Instant::from_nanos(900 * ms));
        // The eleventh waits for the first to leave the window, at 1.001 s.
        assert_eq!(arrivals[10], Instant::from_nanos(1_001 * ms));
    }

    #[test]
    fn an_oracle_that_forgets_its_bookings_draws_429s() {
        // The same burst, without counting the requests still in flight:
        // every model rejects some of them.
        let ms = 1_000_000u64;
        for model in ServerModel::ALL {
            let delay: Vec<u64> = (0..30).map(|i| (5 + i % 7) * ms).collect();
            let (_, statuses) = play_with(model, Group::Ticker, &[0; 30], &delay, true);
            assert!(statuses.contains(&429), "{model}: {statuses:?}");
            let (_, statuses) = play_with(model, Group::Ticker, &[0; 30], &delay, false);
            assert!(statuses.iter().all(|&s| s == 200), "{model}: {statuses:?}");
        }
    }
}
