//! What core's integration tests share: a runtime on manual time whose
//! timers never fire (each test polls by hand after moving the clock).

use upbit_limiter_core::{Clock, Instant, ManualClock, Runtime};

#[derive(Clone)]
pub struct Manual(pub ManualClock);

impl Runtime for Manual {
    type Sleep = std::future::Pending<()>;
    type Instant = Instant;
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
}
