//! The commands beside a campaign's run: `numbers` (each number's day,
//! pause and resume), `suppress` (the opt-out list) and `ledger` (what the
//! ledger holds, pruning it, forgetting a person). Each takes the settings
//! and its task as plain types: only `main.rs` and `cli.rs` know the flags.

mod ledger;
mod numbers;
mod suppress;

pub use ledger::{keep_ledger, LedgerTask};
pub use numbers::{numbers, pause_number, resume_number};
pub use suppress::{suppress, SuppressTask};
