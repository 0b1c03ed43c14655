//! A blob arriving in chunks, read as one stream while each chunk is also kept in a file:
//! it lets a layer unpack while it downloads, and the blob stay in the store for pushes.

use std::fs::File;
use std::io::{self, Read, Write};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc::Receiver;

/// Reads the chunks sent on a channel, writing each to `file` as it is taken. The stream
/// ends when the sender is dropped.
pub(crate) struct ChunkReader {
    chunks: Receiver<Bytes>,
    current: Bytes,
    file: PageWriter,
}

impl ChunkReader {
    pub(crate) fn new(chunks: Receiver<Bytes>, file: File) -> Self {
        ChunkReader {
            chunks,
            current: Bytes::new(),
            file: PageWriter::new(file),
        }
    }

    /// Takes the chunks the reader did not need (an archive's trailing padding) into the
    /// file and closes it. Blocks until the sender is dropped.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        while let Some(chunk) = self.chunks.blocking_recv() {
            self.file.write(&chunk)?;
        }
        self.file.finish()
    }
}

/// Writes in blocks of exactly `BLOCK` bytes (the last one aside): chunks off the network
/// come in odd sizes, and a write that ends mid-page makes the kernel zero the page's rest
/// before the next write fills it.
struct PageWriter {
    file: File,
    pending: Vec<u8>,
}

const BLOCK: usize = 1 << 20;

impl PageWriter {
    fn new(file: File) -> Self {
        PageWriter {
            file,
            pending: Vec::with_capacity(BLOCK),
        }
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let take = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK {
                self.file.write_all(&self.pending)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.file.write_all(&self.pending)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.file.write(&chunk)?;
                    self.current = chunk;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_a_mebibyte_keep_every_byte() {
        let tmp = tempfile::NamedTempFile::new().expect("temp file");
        let mut writer = PageWriter::new(tmp.reopen().expect("reopen"));
        let data: Vec<u8> = (0..BLOCK * 2 + 4097).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(16_411) {
            writer.write(piece).expect("write");
        }
        writer.finish().expect("finish");
        assert_eq!(std::fs::read(tmp.path()).expect("read"), data);
    }

    #[test]
    fn reads_every_chunk_and_keeps_them_all_in_the_file() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let tmp = tempfile::NamedTempFile::new().expect("temp file");
        let file = tmp.reopen().expect("reopen");
        let sender = std::thread::spawn(move || {
            for chunk in [&b"hello "[..], b"", b"world", b"-tail"] {
                tx.blocking_send(Bytes::copy_from_slice(chunk))
                    .expect("send");
            }
        });
        let mut reader = ChunkReader::new(rx, file);
        let mut head = [0u8; 11];
        reader.read_exact(&mut head).expect("read");
        assert_eq!(&head, b"hello world");
        reader.finish().expect("finish");
        sender.join().expect("sender");
        assert_eq!(
            std::fs::read(tmp.path()).expect("read file"),
            b"hello world-tail"
        );
    }
}
