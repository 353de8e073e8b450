//! The integration tests, as one binary (as xsv does): the real binary and
//! the library against servers on 127.0.0.1, each test in temporary
//! directories and every spawned binary in a cleared environment.

#[macro_use]
mod common;
mod contract;
mod documentation;
mod every_memory;
mod finish;
mod health;
mod hostile;

mod bench_harness;
mod campaign_files;
mod campaign_state;
mod cli;
mod instances;
mod keeping;
mod ledger;
mod memory;
mod mock_api;
mod names;
mod optouts;
mod paced;
mod pg;
mod phones;
mod properties;
mod recipient_windows;
mod reliability;
mod report_files;
mod report_page;
mod schedule;
mod send;
mod told_the_truth;
mod which_ledger;
