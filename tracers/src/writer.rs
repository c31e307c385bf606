//! The background writer that the SQLite and OTLP tracers share. Tracer hooks hand
//! records to a bounded queue and return at once; when the queue is full the record is
//! dropped and counted, never waited for. One thread waits for the first record (a
//! blocking receive, no polling), sleeps through a short gathering window while more
//! arrive (so senders never wake it one record at a time), writes them as one batch
//! through a [`Sink`], and answers each flush once everything queued before it has been
//! written; a flush ends the window at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a writer's batches go.
pub trait Sink: Send + 'static {
    type Record: Send + 'static;
    /// Adds a record to the batch being gathered.
    fn add(&mut self, record: Self::Record);
    /// How many records the batch holds.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes the batch and empties it.
    fn write(&mut self) -> Result<(), String>;
    /// What a flush reports besides the last write's result (records a sink gave up on).
    fn report(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// The queue is closed and the last batch written: release what the sink holds.
    fn finish(&mut self) {}
}

/// How a writer gathers and how much it queues.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub thread_name: &'static str,
    /// Records waiting for the thread; past this they are dropped.
    pub capacity: usize,
    /// Records in one batch at most.
    pub batch: usize,
    /// How long the first record of a batch waits for others to join it.
    pub gather: Duration,
}

enum Message<R> {
    Record(R),
    Flush(SyncSender<Result<(), String>>),
}

/// What a flush found.
#[derive(Debug, Clone, PartialEq)]
pub enum Flushed {
    /// Everything queued before the flush was handled; the sink's result, and how many
    /// records the full queue dropped since the last flush.
    Done {
        result: Result<(), String>,
        queue_full: u64,
    },
    /// The thread did not answer in time (a slow collector).
    TimedOut { queue_full: u64 },
    /// The thread is gone; the first failure it met.
    Stopped { failure: String },
}

pub struct Writer<R> {
    queue: Option<SyncSender<Message<R>>>,
    thread: Option<JoinHandle<()>>,
    /// Says when the thread has written its last batch (only `close` reads it).
    done: Mutex<Receiver<()>>,
    queue_full: AtomicU64,
    failure: Arc<Mutex<Option<String>>>,
}

impl<R: Send + 'static> Writer<R> {
    pub fn start<S: Sink<Record = R>>(sink: S, settings: Settings) -> std::io::Result<Writer<R>> {
        let (queue, receiver) = sync_channel(settings.capacity);
        let (finished, done) = sync_channel(1);
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let kept = failure.clone();
        let thread = std::thread::Builder::new()
            .name(settings.thread_name.into())
            .spawn(move || {
                run(sink, receiver, settings, &kept);
                let _ = finished.send(());
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            done: Mutex::new(done),
            queue_full: AtomicU64::new(0),
            failure,
        })
    }

    /// Queues a record; a full queue drops it (counted). An error only when the thread
    /// is gone.
    pub fn send(&self, record: R) -> Result<(), String> {
        let Some(queue) = &self.queue else {
            return Err("the writer is closed".into());
        };
        match queue.try_send(Message::Record(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.queue_full.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(self.failure_text()),
        }
    }

    /// Waits until everything queued so far is written (at most `within`, if given).
    /// Queues a record that must not be dropped: waits while the queue is full.
    pub fn send_wait(&self, record: R) -> Result<(), String> {
        let Some(queue) = &self.queue else {
            return Err("the writer is closed".into());
        };
        queue
            .send(Message::Record(record))
            .map_err(|_| self.failure_text())
    }

    pub fn flush(&self, within: Option<Duration>) -> Flushed {
        let queue_full = self.queue_full.swap(0, Ordering::Relaxed);
        let Some(queue) = &self.queue else {
            return Flushed::Done {
                result: Ok(()),
                queue_full,
            };
        };
        let (ack, answer) = sync_channel(1);
        if queue.send(Message::Flush(ack)).is_err() {
            return Flushed::Stopped {
                failure: self.failure_text(),
            };
        }
        self.wake();
        let result = match within {
            Some(limit) => answer.recv_timeout(limit).map_err(|e| match e {
                RecvTimeoutError::Timeout => true,
                RecvTimeoutError::Disconnected => false,
            }),
            None => answer.recv().map_err(|_| false),
        };
        match result {
            Ok(result) => Flushed::Done { result, queue_full },
            Err(true) => Flushed::TimedOut { queue_full },
            Err(false) => Flushed::Stopped {
                failure: self.failure_text(),
            },
        }
    }

    /// Closes the queue and waits for the thread to write what is left (at most `within`,
    /// if given; a thread that does not finish in time is left to end with the process).
    pub fn close(&mut self, within: Option<Duration>) {
        self.queue = None;
        self.wake();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let finished = match within {
            None => done.recv().is_ok(),
            Some(limit) => done.recv_timeout(limit).is_ok(),
        };
        drop(done);
        if finished {
            let _ = thread.join();
        }
    }

    /// Ends the thread's gathering window early (for a flush or the close).
    fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    fn failure_text(&self) -> String {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "the writer stopped".into())
    }
}

impl<R> Drop for Writer<R> {
    fn drop(&mut self) {
        self.queue = None;
    }
}

/// The thread: a batch starts with a blocking receive, then takes what arrives within
/// the gathering window (or until the batch is full, or a flush asks).
fn run<S: Sink>(
    mut sink: S,
    queue: Receiver<Message<S::Record>>,
    settings: Settings,
    failure: &Mutex<Option<String>>,
) {
    let mut open = true;
    // The first failed write since the last flush: the next flush reports it.
    let mut failed_since_flush: Option<String> = None;
    while open {
        let mut flushes = Vec::new();
        match queue.recv() {
            Ok(Message::Record(r)) => sink.add(r),
            Ok(Message::Flush(ack)) => flushes.push(ack),
            Err(_) => break,
        }
        // Gather a trickle: when the queue runs dry with only a few records in hand,
        // sleep through the window rather than wait on the queue, so that records arrive
        // without waking this thread one by one (a wake-up per record costs more than
        // writing it); a flush or close wakes it at once. A batch of some size is written
        // at once: under load the thread never waits, and senders never wake it.
        let deadline = Instant::now() + settings.gather;
        let enough = (settings.batch / 16).max(1);
        loop {
            loop {
                if sink.len() >= settings.batch {
                    break;
                }
                match queue.try_recv() {
                    Ok(Message::Record(r)) => sink.add(r),
                    Ok(Message::Flush(ack)) => {
                        flushes.push(ack);
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if !flushes.is_empty() || !open || sink.len() >= enough || now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        let written = if sink.is_empty() {
            Ok(())
        } else {
            sink.write()
        };
        if let Err(e) = written {
            failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.clone());
            failed_since_flush.get_or_insert(e);
        }
        if !flushes.is_empty() {
            let result = match failed_since_flush.take() {
                Some(e) => Err(e),
                None => sink.report(),
            };
            for ack in flushes {
                let _ = ack.send(result.clone());
            }
        }
    }
    if !sink.is_empty() {
        let _ = sink.write();
    }
    sink.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches a sink wrote, in order.
    type Batches = Arc<Mutex<Vec<Vec<i64>>>>;

    /// Keeps batch sizes; fails a batch holding a negative number.
    struct Recorder {
        batch: Vec<i64>,
        written: Batches,
    }

    impl Sink for Recorder {
        type Record = i64;
        fn add(&mut self, record: i64) {
            self.batch.push(record);
        }
        fn len(&self) -> usize {
            self.batch.len()
        }
        fn write(&mut self) -> Result<(), String> {
            let batch = std::mem::take(&mut self.batch);
            let bad = batch.iter().any(|n| *n < 0);
            self.written.lock().unwrap().push(batch);
            if bad {
                Err("a negative number".into())
            } else {
                Ok(())
            }
        }
    }

    fn writer(batch: usize, capacity: usize) -> (Writer<i64>, Batches) {
        let written: Batches = Arc::default();
        let sink = Recorder {
            batch: Vec::new(),
            written: written.clone(),
        };
        let settings = Settings {
            thread_name: "test-writer",
            capacity,
            batch,
            gather: Duration::from_secs(3600),
        };
        (Writer::start(sink, settings).unwrap(), written)
    }

    #[test]
    fn a_flush_writes_everything_queued_before_it() {
        let (w, written) = writer(1000, 100);
        for n in 0..10 {
            w.send(n).unwrap();
        }
        // The gathering window is an hour: only the flush ends it.
        assert_eq!(
            w.flush(None),
            Flushed::Done {
                result: Ok(()),
                queue_full: 0
            }
        );
        let all: Vec<i64> = written.lock().unwrap().concat();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn full_batches_are_written_without_waiting_and_failures_reach_the_flush() {
        let (w, written) = writer(3, 100);
        for n in [1, 2, 3, 4, -5, 6, 7] {
            w.send(n).unwrap();
        }
        let flushed = w.flush(None);
        assert_eq!(
            flushed,
            Flushed::Done {
                result: Err("a negative number".into()),
                queue_full: 0
            }
        );
        let sizes: Vec<usize> = written.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        struct Stuck(std::sync::mpsc::Receiver<()>, usize);
        impl Sink for Stuck {
            type Record = i64;
            fn add(&mut self, _: i64) {
                self.1 += 1;
            }
            fn len(&self) -> usize {
                self.1
            }
            fn write(&mut self) -> Result<(), String> {
                // Blocks until the test lets it go.
                let _ = self.0.recv();
                self.1 = 0;
                Ok(())
            }
        }
        let (release, hold) = std::sync::mpsc::channel();
        let settings = Settings {
            thread_name: "test-stuck",
            capacity: 4,
            batch: 1,
            gather: Duration::ZERO,
        };
        let w = Writer::start(Stuck(hold, 0), settings).unwrap();
        for n in 0..100 {
            w.send(n).unwrap();
        }
        for _ in 0..100 {
            let _ = release.send(());
        }
        match w.flush(None) {
            Flushed::Done {
                result: Ok(()),
                queue_full,
            } => assert!((90..100).contains(&queue_full), "{queue_full} dropped"),
            other => panic!("{other:?}"),
        }
    }
}
