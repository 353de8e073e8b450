//! Log lines on stderr, stepping around the progress bar.

use std::io::{self, Write};

use indicatif::MultiProgress;

/// Log output that steps around the progress bar.
#[derive(Clone)]
pub struct LogWriter {
    progress: MultiProgress,
}

impl LogWriter {
    pub fn new(progress: MultiProgress) -> Self {
        LogWriter { progress }
    }
}

/// One log event, buffered and written in one piece when dropped.
pub struct LogLine {
    progress: MultiProgress,
    buffer: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.progress.suspend(|| {
            let _ = io::stderr().write_all(&buffer);
        });
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            progress: self.progress.clone(),
            buffer: Vec::with_capacity(256),
        }
    }
}
