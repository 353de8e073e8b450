//! interacto-bulk: send WhatsApp contact cards in bulk through the Interacto
//! API, paced so that the sending number is not blocked.
//!
//! Layout, in the order data flows; `run` drives the pipeline:
//! `cli` (flags) → `config` (file + env + flags, assembled from each stage's
//! settings) → `campaign` (CSV rows → checked `Job`s, on blocking threads) →
//! `admission` (whether a row's card goes, from what `ledger`, shared by
//! every run, knows: the campaign's memory, opt-outs, repeats) →
//! `pacing` (delay/typing floors, per-instance clock) → `schedule` (send
//! window, daily cap) → `dispatch` (lanes, the door each card leaves and
//! comes back by, worker pool, halts; `retry` says when to try again) →
//! `api` (HTTP client, wire types, embedded mock) →
//! `results` (one thread writes the results CSV; lock, journal, a file
//! carried on, and the rewrite to this run's lines, one a row, at the end) →
//! `report` (progress, logs, dry-run report, summary) → `exit` (the exit code).
//! `types` holds the records that cross stages and `setting` how settings are
//! written; both import no stage. `clock` is where every stage reads the
//! time (passed in, so tests can pause it); `threads` runs the reader and the
//! writer on threads of their own. `commands` are the commands beside a run
//! (numbers, suppress, ledger); only `cli` (and `main.rs`) know the flags.

pub mod admission;
pub mod api;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod exit;
pub mod ledger;
pub mod pacing;
pub mod report;
pub mod results;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod setting;
mod threads;
pub mod types;

pub use run::{run, RunRequest};
