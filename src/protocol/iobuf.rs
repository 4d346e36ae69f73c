//! The FileSystem trait moves file data through `ZeroCopyWriter` / `ZeroCopyReader`;
//! these back them with plain byte buffers (a reply buffer, a request's payload),
//! without unsafe code: `vm_memory` turns a `&mut [u8]` into a volatile slice safely.

use std::io;

use fuse_backend_rs::api::filesystem::{ZeroCopyReader, ZeroCopyWriter};
use fuse_backend_rs::file_buf::FileVolatileSlice;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;
use vm_memory::VolatileSlice;

/// Collects up to `limit` bytes a read produces.
pub struct VecWriter {
    pub buf: Vec<u8>,
    limit: usize,
}

impl VecWriter {
    pub fn new(limit: usize) -> VecWriter {
        VecWriter {
            buf: Vec::new(),
            limit,
        }
    }

    /// Appends to `buf` until it holds `limit` bytes in all.
    pub fn append_to(buf: Vec<u8>, limit: usize) -> VecWriter {
        VecWriter { buf, limit }
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }
}

impl io::Write for VecWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for VecWriter {
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let count = count.min(self.room());
        let start = self.buf.len();
        self.buf.resize(start + count, 0);
        let res = {
            let slice = VolatileSlice::from(&mut self.buf[start..]);
            f.read_at_volatile(FileVolatileSlice::from_volatile_slice(&slice), off)
        };
        match res {
            Ok(n) => {
                self.buf.truncate(start + n.min(count));
                Ok(n.min(count))
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    fn available_bytes(&self) -> usize {
        self.room()
    }
}

/// Fills a caller-owned buffer (a worker's reply buffer past the out-header).
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> SliceWriter<'a> {
        SliceWriter { buf, len: 0 }
    }

    /// Bytes written so far, from the start of the buffer.
    pub fn written(&self) -> usize {
        self.len
    }
}

impl io::Write for SliceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = &mut self.buf[self.len..];
        let n = data.len().min(room.len());
        room[..n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for SliceWriter<'_> {
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let end = self.len + count.min(self.buf.len() - self.len);
        let slice = VolatileSlice::from(&mut self.buf[self.len..end]);
        let n = f.read_at_volatile(FileVolatileSlice::from_volatile_slice(&slice), off)?;
        self.len += n.min(end - self.len);
        Ok(n)
    }

    fn available_bytes(&self) -> usize {
        self.buf.len() - self.len
    }
}

/// Hands a write's payload to the filesystem.
pub struct SliceReader<'a> {
    data: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceReader<'a> {
    pub fn new(data: &'a mut [u8]) -> SliceReader<'a> {
        SliceReader { data, pos: 0 }
    }
}

impl io::Read for SliceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.pos..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl ZeroCopyReader for SliceReader<'_> {
    fn read_to(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let end = self.pos + count.min(self.data.len() - self.pos);
        let slice = VolatileSlice::from(&mut self.data[self.pos..end]);
        let n = f.write_at_volatile(FileVolatileSlice::from_volatile_slice(&slice), off)?;
        self.pos += n.min(end - self.pos);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn vec_writer_and_slice_reader_move_file_data() {
        let mut file = crate::test_support::unnamed_file("iobuf");
        let mut data = b"hello, pipe".to_vec();
        let mut r = SliceReader::new(&mut data);
        assert_eq!(r.read_to(&mut file, 5, 10).unwrap(), 5);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b", pipe");

        let mut w = VecWriter::new(8);
        assert_eq!(w.write_from(&mut file, 100, 8).unwrap(), 7);
        assert_eq!(w.buf, b"\0\0hello");
        assert_eq!(w.write(b"xyz").unwrap(), 1);
        assert_eq!(w.available_bytes(), 0);
        assert_eq!(w.write_from(&mut file, 100, 0).unwrap(), 0);

        let mut buf = [0u8; 9];
        let mut s = SliceWriter::new(&mut buf);
        assert_eq!(s.write(b"<").unwrap(), 1);
        assert_eq!(s.write_from(&mut file, 100, 10).unwrap(), 5);
        assert_eq!(s.write_from(&mut file, 100, 0).unwrap(), 3);
        assert_eq!((s.written(), s.available_bytes()), (9, 0));
        assert_eq!(&buf, b"<hello\0\0\0");
    }
}
