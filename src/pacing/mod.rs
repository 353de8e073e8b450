//! The anti-ban rules: delay/typing floors on every request body, the rules
//! of a number's clock (kept in the ledger) that decide when its next
//! request may leave, and how long a campaign takes at that pace.

mod clock;
mod estimate;
mod settings;

pub use clock::{
    nanos, Booking, ClockState, Corrected, HeldBy, Pace, BATCH_TURNS, BOOKED_AHEAD,
    RUNS_QUEUED_MOST,
};
pub use estimate::Estimate;
pub use settings::{PacingSettings, Rate, CONCURRENCY_MAX, MESSAGE_SECONDS_MAX};
