//! Checking rows on helper threads while the reader reads on.
//!
//! libphonenumber's rules are most of what a row costs, and a row's checks
//! need nothing from other rows. So the reader parses records into batches,
//! hands them round the checkers in turn and takes them back in the same
//! turn: rows come back in file order, and duplicates (which do depend on
//! the rows before) are found after, on the reader's side.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use csv::ByteRecord;

use super::fields::PhoneBook;
use super::records::Place;
use super::rules::RowRules;
use crate::types::Row;

/// Rows a batch holds: enough that handing one over costs little per row,
/// few enough that the first rows are not kept waiting.
pub const BATCH_ROWS: usize = 256;

/// Batches a checker holds at once: one being checked, one queued, so that it
/// never waits for the reader between batches.
const BATCHES_PER_CHECKER: usize = 2;

/// Records read from the file, waiting to be checked, and then the rows
/// they came to. Records and rows are kept from batch to batch so that their
/// buffers are allocated once: glibc's allocator tidies all its small free
/// blocks before each large allocation, and a new batch of rows was one.
pub struct Batch {
    records: Vec<(Place, ByteRecord)>,
    filled: usize,
    /// The checked rows, the last first, to be popped in file order.
    rows: Vec<Row>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            records: Vec::with_capacity(BATCH_ROWS),
            filled: 0,
            rows: Vec::with_capacity(BATCH_ROWS),
        }
    }

    /// The next record to read into; `None` when the batch is full.
    pub fn next_slot(&mut self) -> Option<&mut (Place, ByteRecord)> {
        if self.filled == BATCH_ROWS {
            return None;
        }
        if self.filled == self.records.len() {
            self.records
                .push((Place { row: 0, line: 0 }, ByteRecord::new()));
        }
        Some(&mut self.records[self.filled])
    }

    /// Keeps the record last handed out by [`Batch::next_slot`].
    pub fn commit_slot(&mut self) {
        self.filled += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }
}

/// The checker threads, and the batches they hold in file order.
pub struct Checkers {
    lanes: Vec<Lane>,
    /// The lane of each batch handed out and not yet taken back, oldest first.
    in_flight: VecDeque<usize>,
    next_lane: usize,
    spare: Vec<Batch>,
}

struct Lane {
    work: SyncSender<Batch>,
    done: Receiver<Batch>,
    thread: Option<JoinHandle<()>>,
}

impl Checkers {
    /// One checker per core the process may use.
    pub fn start(rules: RowRules) -> io::Result<Self> {
        let count = thread::available_parallelism().map_or(1, usize::from);
        let rules = Arc::new(rules);
        let lanes = (0..count)
            .map(|index| Lane::start(index, Arc::clone(&rules)))
            .collect::<io::Result<_>>()?;
        Ok(Checkers {
            lanes,
            in_flight: VecDeque::new(),
            next_lane: 0,
            spare: Vec::new(),
        })
    }

    /// Whether another batch can be handed out without waiting.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.lanes.len() * BATCHES_PER_CHECKER
    }

    /// An empty batch to read into.
    pub fn empty_batch(&mut self) -> Batch {
        let mut batch = self.spare.pop().unwrap_or_else(Batch::new);
        batch.filled = 0;
        batch
    }

    pub fn hand_out(&mut self, batch: Batch) {
        let lane = self.next_lane;
        self.next_lane = (lane + 1) % self.lanes.len();
        // Sending fails only if the checker panicked; `take_back` passes
        // the panic on when this batch's turn comes.
        let _ = self.lanes[lane].work.send(batch);
        self.in_flight.push_back(lane);
    }

    /// Puts the oldest batch's checked rows, the last first, in `rows`
    /// (which is empty, and whose buffer the batch keeps); false when no
    /// batch is out.
    pub fn take_back(&mut self, rows: &mut Vec<Row>) -> bool {
        let Some(lane) = self.in_flight.pop_front() else {
            return false;
        };
        let lane = &mut self.lanes[lane];
        match lane.done.recv() {
            Ok(mut batch) => {
                std::mem::swap(rows, &mut batch.rows);
                self.spare.push(batch);
                true
            }
            Err(_) => {
                // The checker is gone, which only a panic does: pass it on.
                let thread = lane.thread.take().expect("a checker fails once");
                match thread.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(()) => unreachable!("a checker returns only when the reader is gone"),
                }
            }
        }
    }
}

impl Lane {
    fn start(index: usize, rules: Arc<RowRules>) -> io::Result<Self> {
        let (work, work_rx) = mpsc::sync_channel::<Batch>(BATCHES_PER_CHECKER);
        let (done_tx, done) = mpsc::sync_channel(BATCHES_PER_CHECKER);
        let thread = thread::Builder::new()
            .name(format!("checker-{index}"))
            .spawn(move || {
                let mut phones = PhoneBook::new(rules.fields.region);
                // Ends when the reader drops its side of either channel.
                for mut batch in work_rx {
                    let Batch {
                        records,
                        filled,
                        rows,
                    } = &mut batch;
                    rows.clear();
                    rows.extend(
                        records[..*filled]
                            .iter()
                            .rev()
                            .map(|(place, record)| rules.check(*place, record, &mut phones)),
                    );
                    if done_tx.send(batch).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Lane {
            work,
            done,
            thread: Some(thread),
        })
    }
}
