//! [`StreamRedactor`]: masking output as it is produced, chunk by chunk.

use std::fmt;
use std::sync::Arc;

use crate::Redactor;
use crate::scanner::Scanner;

/// Masks one output stream (a job's stdout, its stderr, the agent's own messages) chunk by
/// chunk.
///
/// Chunks are arbitrary bytes (not necessarily UTF-8) of any size. A secret split across any
/// number of chunks, at any byte, is still masked: the redactor holds back exactly the bytes
/// that could still begin a masked run (a piece of a form that reaches the end of the data
/// seen so far, or a suffix of a few bytes that could begin one), never a fixed window, and
/// never more than [`Redactor::max_hold_back`] bytes. The concatenated output of all [`push`](Self::push)es
/// and the [`finish`](Self::finish) equals [`Redactor::redact`] of the concatenated input.
///
/// The held-back bytes are wiped when they are written out by `finish` or when the stream is
/// dropped; `Debug` shows only how many there are.
pub struct StreamRedactor {
    redactor: Arc<Redactor>,
    scanner: Scanner,
}

impl StreamRedactor {
    /// A new stream masking `redactor`'s patterns.
    pub fn new(redactor: Arc<Redactor>) -> StreamRedactor {
        let scanner = Scanner::new(&redactor);
        StreamRedactor { redactor, scanner }
    }

    /// Scans `chunk` and appends to `out` every masked byte that is final.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.scanner.push(&self.redactor, chunk, out);
    }

    /// Appends the held-back tail to `out` (masked where it holds complete patterns). The
    /// stream is then empty and can be reused for a new stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.scanner.finish(&self.redactor, out);
    }

    /// How many masks (`***`) this stream has written since it was created: each is one run
    /// of output that held a secret, or a covered encoding of one. [`finish`](Self::finish)
    /// does not reset it.
    pub fn masks_written(&self) -> u64 {
        self.scanner.masks()
    }

    /// Number of bytes currently held back.
    pub fn pending_len(&self) -> usize {
        self.scanner.pending_len()
    }

    /// The redactor this stream masks with.
    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }
}

impl fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRedactor")
            .field("patterns", &self.redactor.pattern_count())
            .field("pending_len", &self.pending_len())
            .finish()
    }
}
