//! Whole frames off a byte stream: the buffering around `wire::decode_frame`.

use std::io::{self, Read};

use wire::{Frame, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the peer closed the connection")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The stream is unusable: close it (after telling the peer why).
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl From<ReadError> for io::Error {
    fn from(error: ReadError) -> io::Error {
        match error {
            ReadError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection"),
            ReadError::Io(error) => error,
            ReadError::Wire(error) => io::Error::new(io::ErrorKind::InvalidData, error.to_string()),
        }
    }
}

/// Buffers what a stream delivers and hands out one decoded frame at a time.
pub struct FrameReader {
    buffer: Vec<u8>,
    start: usize,
    chunk: Box<[u8]>,
    frame_bytes_max: u32,
}

impl FrameReader {
    pub fn new(frame_bytes_max: u32) -> FrameReader {
        FrameReader { buffer: Vec::with_capacity(64 * 1024), start: 0, chunk: vec![0; 64 * 1024].into_boxed_slice(), frame_bytes_max }
    }

    /// The next frame, reading from `stream` as needed.
    pub fn next(&mut self, stream: &mut impl Read) -> Result<Frame, ReadError> {
        loop {
            if let Some((frame, size)) = wire::decode_frame(&self.buffer[self.start..], self.frame_bytes_max)? {
                self.start += size;
                return Ok(frame);
            }
            self.buffer.drain(..self.start);
            self.start = 0;
            let n = stream.read(&mut self.chunk)?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.buffer.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// Whether a whole frame is already buffered, so [`Self::next`] will not block.
    pub fn has_frame(&self) -> bool {
        matches!(wire::decode_frame(&self.buffer[self.start..], self.frame_bytes_max), Ok(Some(_)) | Err(_))
    }
}
