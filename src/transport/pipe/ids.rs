//! Node ids and file handles of a server die with it, so the client tags every id it
//! hands its kernel with an epoch (bits 48..64) that changes whenever it reaches a new
//! server instance. Requests are rewritten in place from the kernel's ids to the
//! server's, replies the other way; a request naming an id of another epoch is stale.
//! The root (node 1), node 0 (a negative entry, or no node) and handle 0 are the same
//! in every epoch. Field positions come from the protocol core's ABI structs.

use crate::protocol::abi::{
    fattr, flags, opcode as op, BatchForgetIn, CopyFileRangeIn, Dirent, EntryOut, FallocateIn,
    FlushIn, ForgetOne, FsyncIn, GetattrIn, InHeader, IoctlIn, LinkIn, LkIn, LseekIn, OpenOut,
    OutHeader, PollIn, ReadIn, ReleaseIn, Rename2In, RenameIn, SetattrIn, SetupmappingIn, StatxIn,
    WriteIn, DIRENTPLUS_NAME_OFFSET, ROOT_ID,
};
use crate::protocol::wire::{align8, Reader, Wire, Writer};

const EPOCH_SHIFT: u32 = 48;
const LOCAL: u64 = (1 << EPOCH_SHIFT) - 1;
/// Epochs wrap around at 16 bits.
pub const EPOCH_MASK: u32 = 0xffff;

/// The request names a node or handle of an earlier server instance.
#[derive(Debug, PartialEq, Eq)]
pub struct Stale;

/// A server id that does not fit beside the epoch.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge(pub u64);

/// A request after [`request`]: its new length, and whether it names anything of
/// its epoch (else it means the same to any server instance).
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    pub len: usize,
    pub portable: bool,
}

/// Kernel ids to server ids of one epoch, noting whether any was tagged.
struct ToServer {
    epoch: u32,
    tagged: bool,
}

impl ToServer {
    fn untag(&mut self, id: &mut u64) -> Result<(), Stale> {
        if (*id >> EPOCH_SHIFT) as u32 != self.epoch & EPOCH_MASK {
            return Err(Stale);
        }
        *id &= LOCAL;
        self.tagged = true;
        Ok(())
    }

    fn node(&mut self, id: &mut u64) -> Result<(), Stale> {
        if *id > ROOT_ID {
            self.untag(id)?;
        }
        Ok(())
    }

    fn handle(&mut self, fh: &mut u64) -> Result<(), Stale> {
        self.handle_if(true, fh)
    }

    /// A handle that is there only when `present` (a flag of the request says so).
    fn handle_if(&mut self, present: bool, fh: &mut u64) -> Result<(), Stale> {
        if present && *fh != 0 {
            self.untag(fh)?;
        }
        Ok(())
    }
}

/// Tags a server id with `epoch`; ids up to `same` (none, or the root) mean the same
/// in every epoch.
fn tag(epoch: u32, same: u64, id: &mut u64) -> Result<(), TooLarge> {
    if *id > LOCAL {
        return Err(TooLarge(*id));
    }
    if *id > same {
        *id |= u64::from(epoch & EPOCH_MASK) << EPOCH_SHIFT;
    }
    Ok(())
}

/// Decodes a `T` at the start of `buf`, lets `f` change it and writes it back. A
/// buffer too short for `T` is left alone: the server refuses such a message anyway.
fn patch<T: Wire, E>(buf: &mut [u8], f: impl FnOnce(&mut T) -> Result<(), E>) -> Result<(), E> {
    let Ok(mut v) = T::decode(&mut Reader::new(buf)) else {
        return Ok(());
    };
    f(&mut v)?;
    let _ = v.encode(&mut Writer::new(buf));
    Ok(())
}

/// Rewrites the kernel's request `msg` in place for the server instance of `epoch`.
/// A BATCH_FORGET loses its stale records (and gets shorter); one with none left, or
/// any other request naming a stale id, is [`Stale`].
pub fn request(msg: &mut [u8], epoch: u32) -> Result<Rewritten, Stale> {
    let mut ids = ToServer {
        epoch,
        tagged: false,
    };
    let Ok(mut h) = InHeader::decode(&mut Reader::new(msg)) else {
        return Ok(Rewritten {
            len: msg.len(),
            portable: true,
        });
    };
    ids.node(&mut h.nodeid)?;
    let mut len = msg.len();
    let args = &mut msg[InHeader::SIZE.min(len)..];
    match h.opcode {
        op::GETATTR => patch(args, |a: &mut GetattrIn| {
            ids.handle_if(a.getattr_flags & flags::GETATTR_FH != 0, &mut a.fh)
        })?,
        op::STATX => patch(args, |a: &mut StatxIn| {
            ids.handle_if(a.getattr_flags & flags::GETATTR_FH != 0, &mut a.fh)
        })?,
        op::SETATTR => patch(args, |a: &mut SetattrIn| {
            ids.handle_if(a.valid & fattr::FH != 0, &mut a.fh)
        })?,
        op::READ | op::READDIR | op::READDIRPLUS => {
            patch(args, |a: &mut ReadIn| ids.handle(&mut a.fh))?
        }
        op::WRITE => patch(args, |a: &mut WriteIn| ids.handle(&mut a.fh))?,
        op::RELEASE | op::RELEASEDIR => patch(args, |a: &mut ReleaseIn| ids.handle(&mut a.fh))?,
        op::FLUSH => patch(args, |a: &mut FlushIn| ids.handle(&mut a.fh))?,
        op::FSYNC | op::FSYNCDIR => patch(args, |a: &mut FsyncIn| ids.handle(&mut a.fh))?,
        op::GETLK | op::SETLK | op::SETLKW => patch(args, |a: &mut LkIn| ids.handle(&mut a.fh))?,
        op::IOCTL => patch(args, |a: &mut IoctlIn| ids.handle(&mut a.fh))?,
        op::POLL => patch(args, |a: &mut PollIn| ids.handle(&mut a.fh))?,
        op::FALLOCATE => patch(args, |a: &mut FallocateIn| ids.handle(&mut a.fh))?,
        op::LSEEK => patch(args, |a: &mut LseekIn| ids.handle(&mut a.fh))?,
        op::SETUPMAPPING => patch(args, |a: &mut SetupmappingIn| ids.handle(&mut a.fh))?,
        op::COPY_FILE_RANGE | op::COPY_FILE_RANGE_64 => patch(args, |a: &mut CopyFileRangeIn| {
            ids.handle(&mut a.fh_in)?;
            ids.node(&mut a.nodeid_out)?;
            ids.handle(&mut a.fh_out)
        })?,
        op::RENAME => patch(args, |a: &mut RenameIn| ids.node(&mut a.newdir))?,
        op::RENAME2 => patch(args, |a: &mut Rename2In| ids.node(&mut a.newdir))?,
        op::LINK => patch(args, |a: &mut LinkIn| ids.node(&mut a.oldnodeid))?,
        op::BATCH_FORGET => {
            let kept = batch_forget(args, &mut ids);
            if kept == 0 {
                return Err(Stale);
            }
            len = InHeader::SIZE + BatchForgetIn::SIZE + kept * ForgetOne::SIZE;
            h.len = len as u32;
        }
        _ => {}
    }
    let _ = h.encode(&mut Writer::new(msg));
    Ok(Rewritten {
        len,
        portable: !ids.tagged,
    })
}

/// Keeps the records of `ids`'s epoch, untagged and moved to the front; returns how
/// many (the count field is updated).
fn batch_forget(args: &mut [u8], ids: &mut ToServer) -> usize {
    let Ok(mut arg) = BatchForgetIn::decode(&mut Reader::new(args)) else {
        return 0;
    };
    let records = &mut args[BatchForgetIn::SIZE..];
    let count = (arg.count as usize).min(records.len() / ForgetOne::SIZE);
    let mut kept = 0;
    for i in 0..count {
        let at = i * ForgetOne::SIZE;
        let Ok(mut one) = ForgetOne::decode(&mut Reader::new(&records[at..])) else {
            break;
        };
        if ids.node(&mut one.nodeid).is_ok() {
            let _ = one.encode(&mut Writer::new(&mut records[kept * ForgetOne::SIZE..]));
            kept += 1;
        }
    }
    arg.count = kept as u32;
    let _ = arg.encode(&mut Writer::new(args));
    kept
}

/// How replies show entries to the kernel.
#[derive(Clone, Copy, Debug)]
pub struct ReplyIds {
    pub epoch: u32,
    /// Entries may not be cached (no `default_permissions`: every walk must reach the
    /// server for the host to check it).
    pub uncached: bool,
}

impl ReplyIds {
    fn entry(&self, e: &mut EntryOut) -> Result<(), TooLarge> {
        if self.uncached {
            e.entry_valid = 0;
            e.entry_valid_nsec = 0;
        }
        tag(self.epoch, ROOT_ID, &mut e.nodeid)
    }

    /// Rewrites the server's successful `reply` to a request of `opcode` in place.
    pub fn reply(&self, opcode: u32, reply: &mut [u8]) -> Result<(), TooLarge> {
        let start = OutHeader::SIZE.min(reply.len());
        let body = &mut reply[start..];
        match opcode {
            op::LOOKUP | op::MKNOD | op::MKDIR | op::SYMLINK | op::LINK => {
                patch(body, |e: &mut EntryOut| self.entry(e))
            }
            op::CREATE | op::TMPFILE => {
                patch(body, |e: &mut EntryOut| self.entry(e))?;
                let start = EntryOut::SIZE.min(body.len());
                let open = &mut body[start..];
                patch(open, |o: &mut OpenOut| tag(self.epoch, 0, &mut o.fh))
            }
            op::OPEN | op::OPENDIR => patch(body, |o: &mut OpenOut| tag(self.epoch, 0, &mut o.fh)),
            op::READDIRPLUS => {
                let mut at = 0;
                while body.len() - at >= DIRENTPLUS_NAME_OFFSET {
                    patch(&mut body[at..], |e: &mut EntryOut| self.entry(e))?;
                    let mut r = Reader::new(&body[at + EntryOut::SIZE..]);
                    let namelen = Dirent::decode(&mut r).map_or(0, |d| d.namelen as usize);
                    at = align8(at + DIRENTPLUS_NAME_OFFSET + namelen).min(body.len());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::reply;

    /// A default `T` changed by `f` (struct literals of ABI structs run long).
    fn with<T: Default>(f: impl FnOnce(&mut T)) -> T {
        let mut v = T::default();
        f(&mut v);
        v
    }

    fn enc<T: Wire>(v: &T) -> Vec<u8> {
        let mut b = vec![0u8; T::SIZE];
        v.encode(&mut Writer::new(&mut b)).unwrap();
        b
    }

    fn dec<T: Wire>(b: &[u8]) -> T {
        T::decode(&mut Reader::new(b)).unwrap()
    }

    fn msg(opcode: u32, nodeid: u64, args: &[u8]) -> Vec<u8> {
        let len = (InHeader::SIZE + args.len()) as u32;
        let h = with(|h: &mut InHeader| (h.len, h.opcode, h.nodeid) = (len, opcode, nodeid));
        [enc(&h), args.to_vec()].concat()
    }

    const E3: u64 = 3 << 48;

    #[test]
    fn requests_lose_their_epoch_and_stale_ones_are_refused() {
        let read = enc(&with(|r: &mut ReadIn| r.fh = E3 | 9));
        let mut m = msg(op::READ, E3 | 5, &read);
        let (len, portable) = (m.len(), false);
        assert_eq!(request(&mut m, 3), Ok(Rewritten { len, portable }));
        assert_eq!(dec::<InHeader>(&m).nodeid, 5);
        assert_eq!(dec::<ReadIn>(&m[InHeader::SIZE..]).fh, 9);
        assert_eq!(request(&mut msg(op::READ, E3 | 5, &read), 4), Err(Stale));
        // The root and handle-less requests mean the same on any server.
        let getattr = enc(&with(|g: &mut GetattrIn| g.fh = 5));
        assert!(
            request(&mut msg(op::GETATTR, ROOT_ID, &getattr), 7)
                .unwrap()
                .portable
        );
        let c = with(|c: &mut CopyFileRangeIn| {
            (c.fh_in, c.nodeid_out, c.fh_out) = (E3 | 1, E3 | 2, (2 << 48) | 3)
        });
        let mut m = msg(op::COPY_FILE_RANGE, E3 | 4, &enc(&c));
        assert_eq!(request(&mut m, 3), Err(Stale));
        let mut m = msg(op::LINK, ROOT_ID, &enc(&LinkIn { oldnodeid: E3 | 8 }));
        request(&mut m, 3).unwrap();
        assert_eq!(dec::<LinkIn>(&m[InHeader::SIZE..]).oldnodeid, 8);
    }

    #[test]
    fn batch_forget_keeps_only_current_records() {
        let mut args = enc(&BatchForgetIn { count: 3, dummy: 0 });
        for nodeid in [E3 | 5, (1 << 48) | 6, E3 | 7] {
            args.extend(enc(&ForgetOne { nodeid, nlookup: 1 }));
        }
        let mut m = msg(op::BATCH_FORGET, 0, &args);
        let r = request(&mut m, 3).unwrap();
        assert_eq!(r.len, InHeader::SIZE + 8 + 32);
        assert_eq!(dec::<InHeader>(&m).len as usize, r.len);
        let body = &m[InHeader::SIZE..];
        assert_eq!(dec::<BatchForgetIn>(body).count, 2);
        assert_eq!(dec::<ForgetOne>(&body[8..]).nodeid, 5);
        assert_eq!(dec::<ForgetOne>(&body[24..]).nodeid, 7);
        assert_eq!(request(&mut msg(op::BATCH_FORGET, 0, &args), 9), Err(Stale));
    }

    #[test]
    fn replies_gain_the_epoch_but_negative_entries_and_the_root_do_not() {
        let (epoch, uncached) = (3, false);
        let ids = ReplyIds { epoch, uncached };
        let mut out = vec![0u8; 1024];
        let entry = |n: u64| with(|e: &mut EntryOut| (e.nodeid, e.entry_valid) = (n, 9));
        for (nodeid, want) in [(0, 0), (ROOT_ID, ROOT_ID), (42, E3 | 42)] {
            let n = reply::entry(&mut out, 2, 45, &entry(nodeid)).unwrap();
            ids.reply(op::LOOKUP, &mut out[..n]).unwrap();
            assert_eq!(dec::<EntryOut>(&out[16..]).nodeid, want);
        }
        let n = reply::entry(&mut out, 2, 45, &entry(1 << 50)).unwrap();
        assert_eq!(ids.reply(op::LOOKUP, &mut out[..n]), Err(TooLarge(1 << 50)));
        let open = with(|o: &mut OpenOut| o.fh = 6);
        let n = reply::create(&mut out, 2, 45, &entry(7), &open).unwrap();
        let uncached = ReplyIds {
            epoch,
            uncached: true,
        };
        uncached.reply(op::CREATE, &mut out[..n]).unwrap();
        let got = dec::<EntryOut>(&out[16..]);
        assert_eq!((got.nodeid, got.entry_valid), (E3 | 7, 0));
        assert_eq!(dec::<OpenOut>(&out[16 + EntryOut::SIZE..]).fh, E3 | 6);
        // Two direntplus records, the second for a name of 9 bytes.
        let (mut r, mut used) = (vec![0u8; 512], 16);
        for (nodeid, name) in [(11u64, &b"a"[..]), (0, b"ninebytes")] {
            used += reply::push_direntplus(&mut r[used..], &entry(nodeid), 1, 1, 8, name).unwrap();
        }
        ids.reply(op::READDIRPLUS, &mut r[..used]).unwrap();
        assert_eq!(dec::<EntryOut>(&r[16..]).nodeid, E3 | 11);
        let second = 16 + align8(DIRENTPLUS_NAME_OFFSET + 1);
        assert_eq!(dec::<EntryOut>(&r[second..]).nodeid, 0);
    }
}
