//! The anti-ban rules: delay/typing floors on every request body, the
//! per-instance clock that decides when the next request may leave, and how
//! long a campaign takes at that pace.

mod clock;
mod estimate;
mod settings;

pub use clock::InstancePacer;
pub use estimate::Estimate;
pub use settings::{PacingSettings, Rate, CONCURRENCY_MAX, MESSAGE_SECONDS_MAX};
