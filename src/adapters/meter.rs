//! Storage work counted per request, for the benchmark and the storage budget test.
//!
//! The D1 and KV adapters own their bindings privately and report every call here, so no storage call can escape
//! the count. A meter is off unless `STORAGE_METRICS` is set (refused in production); off, each method is a no-op.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

/// Storage calls made so far: KV operations, D1 round trips (a batch is one), the statements they carried, and the
/// rows D1 reported reading and writing (`meta.rows_read`, `meta.rows_written`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageOps {
    pub kv_reads: u32,
    pub kv_writes: u32,
    pub kv_deletes: u32,
    pub d1_round_trips: u32,
    pub d1_statements: u32,
    pub d1_rows_read: u64,
    pub d1_rows_written: u64,
}

impl fmt::Display for StorageOps {
    /// `kv_reads=1 kv_writes=0 kv_deletes=0 d1_round_trips=1 d1_statements=3 d1_rows_read=4 d1_rows_written=2`: the
    /// form of the `X-Storage-Ops` header and of the `storage-ops` log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kv_reads={} kv_writes={} kv_deletes={} d1_round_trips={} d1_statements={} d1_rows_read={} \
             d1_rows_written={}",
            self.kv_reads,
            self.kv_writes,
            self.kv_deletes,
            self.d1_round_trips,
            self.d1_statements,
            self.d1_rows_read,
            self.d1_rows_written
        )
    }
}

/// One request's counter, shared by its adapters. Cloning shares the count.
#[derive(Clone, Default)]
pub struct Meter(Option<Rc<Cell<StorageOps>>>);

impl Meter {
    /// A meter that counts (`true`) or ignores everything (`false`).
    pub fn new(enabled: bool) -> Meter {
        Meter(enabled.then(Rc::default))
    }

    fn add(&self, change: impl FnOnce(&mut StorageOps)) {
        if let Some(cell) = &self.0 {
            let mut ops = cell.get();
            change(&mut ops);
            cell.set(ops);
        }
    }

    pub(crate) fn kv_read(&self) {
        self.add(|o| o.kv_reads += 1);
    }

    pub(crate) fn kv_write(&self) {
        self.add(|o| o.kv_writes += 1);
    }

    pub(crate) fn kv_delete(&self) {
        self.add(|o| o.kv_deletes += 1);
    }

    /// Whether rows are worth reading from D1's result metadata (it costs a conversion per result).
    pub(crate) fn counts_rows(&self) -> bool {
        self.0.is_some()
    }

    /// One D1 round trip carrying `statements` statements that read and wrote the given rows.
    pub(crate) fn d1_round_trip(&self, statements: usize, rows_read: usize, rows_written: usize) {
        self.add(|o| {
            o.d1_round_trips += 1;
            o.d1_statements += u32::try_from(statements).unwrap_or(u32::MAX);
            o.d1_rows_read += rows_read as u64;
            o.d1_rows_written += rows_written as u64;
        });
    }

    /// The work counted since the meter was made or last taken, and a fresh start; `None` when the meter is off.
    pub fn take(&self) -> Option<StorageOps> {
        self.0.as_ref().map(|cell| cell.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_that_is_off_counts_nothing() {
        let meter = Meter::new(false);
        meter.kv_read();
        meter.d1_round_trip(3, 5, 1);
        assert_eq!(meter.take(), None);
        assert!(!meter.counts_rows());
    }

    #[test]
    fn clones_share_one_count_and_take_starts_it_again() {
        let meter = Meter::new(true);
        let kv_side = meter.clone();
        kv_side.kv_read();
        kv_side.kv_write();
        meter.d1_round_trip(3, 5, 1);
        meter.d1_round_trip(1, 2, 0);
        let ops = meter.take().expect("an enabled meter reports");
        assert_eq!(
            ops,
            StorageOps {
                kv_reads: 1,
                kv_writes: 1,
                kv_deletes: 0,
                d1_round_trips: 2,
                d1_statements: 4,
                d1_rows_read: 7,
                d1_rows_written: 1
            }
        );
        kv_side.kv_delete();
        assert_eq!(meter.take(), Some(StorageOps { kv_deletes: 1, ..StorageOps::default() }));
    }

    #[test]
    fn the_report_names_every_figure() {
        let ops = StorageOps { kv_reads: 1, d1_round_trips: 2, d1_rows_read: 9, ..StorageOps::default() };
        assert_eq!(
            ops.to_string(),
            "kv_reads=1 kv_writes=0 kv_deletes=0 d1_round_trips=2 d1_statements=0 d1_rows_read=9 d1_rows_written=0"
        );
    }
}
