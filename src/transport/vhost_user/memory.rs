//! Guest memory as the VMM shares it: regions of guest-physical space, each backed by
//! a descriptor (a memfd on Linux, POSIX shm elsewhere) mapped with vm-memory.
//!
//! Every change builds a new [`Memory`] behind a new `Arc`: requests in flight keep
//! the snapshot (and the mappings) they started with, so hot-plug never pulls memory
//! out from under them.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

pub type Memory = GuestMemoryMmap<()>;

/// One region as a vhost-user message describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionDesc {
    pub guest_addr: u64,
    pub size: u64,
    /// Where the VMM has it mapped: ring addresses arrive in this space.
    pub vmm_addr: u64,
    pub mmap_offset: u64,
}

/// The wire layout of a region is four u64s.
pub const REGION_DESC_SIZE: usize = 32;

impl RegionDesc {
    pub fn parse(b: &[u8]) -> Option<RegionDesc> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(RegionDesc {
            guest_addr: word(0)?,
            size: word(1)?,
            vmm_addr: word(2)?,
            mmap_offset: word(3)?,
        })
    }
}

/// The regions and the memory snapshot built from them.
pub struct MemoryMap {
    regions: Vec<(RegionDesc, Arc<GuestRegionMmap<()>>)>,
    current: Arc<Memory>,
}

impl Default for MemoryMap {
    fn default() -> Self {
        MemoryMap {
            regions: Vec::new(),
            current: Arc::new(Memory::new()),
        }
    }
}

impl MemoryMap {
    /// The memory requests started now work on.
    pub fn snapshot(&self) -> Arc<Memory> {
        self.current.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Replaces every region (SET_MEM_TABLE).
    pub fn set_table(&mut self, descs: &[RegionDesc], fds: Vec<OwnedFd>) -> io::Result<()> {
        if descs.len() != fds.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} memory regions with {} descriptors",
                    descs.len(),
                    fds.len()
                ),
            ));
        }
        let mut regions = Vec::with_capacity(descs.len());
        for (desc, fd) in descs.iter().zip(fds) {
            regions.push((*desc, map(desc, fd)?));
        }
        self.install(regions)
    }

    /// Adds one region (ADD_MEM_REG).
    pub fn add(&mut self, desc: RegionDesc, fd: OwnedFd) -> io::Result<()> {
        let mut regions = self.regions.clone();
        regions.push((desc, map(&desc, fd)?));
        self.install(regions)
    }

    /// Removes the region at `desc`'s guest address and size (REM_MEM_REG).
    pub fn remove(&mut self, desc: RegionDesc) -> io::Result<()> {
        let mut regions = self.regions.clone();
        let before = regions.len();
        regions.retain(|(d, _)| (d.guest_addr, d.size) != (desc.guest_addr, desc.size));
        if regions.len() == before {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no memory region at guest address {:#x}", desc.guest_addr),
            ));
        }
        self.install(regions)
    }

    /// Translates an address in the VMM's mapping to a guest-physical one.
    pub fn vmm_to_guest(&self, vmm_addr: u64) -> Option<u64> {
        self.regions.iter().find_map(|(d, _)| {
            let offset = vmm_addr.checked_sub(d.vmm_addr)?;
            // A VMM's region that wraps past the top of guest space translates nothing.
            (offset < d.size).then(|| d.guest_addr.checked_add(offset))?
        })
    }

    fn install(
        &mut self,
        mut regions: Vec<(RegionDesc, Arc<GuestRegionMmap<()>>)>,
    ) -> io::Result<()> {
        regions.sort_by_key(|(d, _)| d.guest_addr);
        let memory = if regions.is_empty() {
            Memory::new()
        } else {
            Memory::from_arc_regions(regions.iter().map(|(_, r)| r.clone()).collect()).map_err(
                |e| io::Error::new(io::ErrorKind::InvalidInput, format!("memory regions: {e}")),
            )?
        };
        self.regions = regions;
        self.current = Arc::new(memory);
        Ok(())
    }
}

fn map(desc: &RegionDesc, fd: OwnedFd) -> io::Result<Arc<GuestRegionMmap<()>>> {
    let size = usize::try_from(desc.size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "memory region of size 0"))?;
    let file = FileOffset::new(File::from(fd), desc.mmap_offset);
    let region = GuestRegionMmap::from_range(GuestAddress(desc.guest_addr), size, Some(file))
        .map_err(|e| {
            io::Error::other(format!(
                "mapping guest memory at {:#x} ({} bytes, offset {:#x}): {e}",
                desc.guest_addr, desc.size, desc.mmap_offset
            ))
        })?;
    Ok(Arc::new(region))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemory};

    fn backing(tag: &str, size: u64) -> OwnedFd {
        let file = crate::test_support::unnamed_file(&format!("mem-{tag}"));
        file.set_len(size).unwrap();
        OwnedFd::from(file)
    }

    fn desc(guest_addr: u64, size: u64, vmm_addr: u64) -> RegionDesc {
        RegionDesc {
            guest_addr,
            size,
            vmm_addr,
            mmap_offset: 0,
        }
    }

    #[test]
    fn translates_through_the_regions_and_keeps_old_snapshots() {
        let mut map = MemoryMap::default();
        let low = desc(0, 0x10000, 0x7000_0000);
        map.set_table(&[low], vec![backing("low", 0x10000)])
            .unwrap();
        assert_eq!(map.vmm_to_guest(0x7000_0010), Some(0x10));
        assert_eq!(map.vmm_to_guest(0x7001_0000), None, "one past the region");
        let before = map.snapshot();
        before.write_obj(7u32, GuestAddress(0x20)).unwrap();

        let high = desc(0x100000, 0x10000, 0x9000_0000);
        map.add(high, backing("high", 0x10000)).unwrap();
        assert_eq!(map.vmm_to_guest(0x9000_0008), Some(0x100008));
        assert_eq!(map.snapshot().num_regions(), 2);

        map.remove(low).unwrap();
        assert_eq!(map.vmm_to_guest(0x7000_0010), None);
        assert!(map.remove(low).is_err(), "already gone");
        // A request that started before still reads the memory it started with.
        assert_eq!(before.read_obj::<u32>(GuestAddress(0x20)).unwrap(), 7);
    }

    #[test]
    fn refuses_tables_that_do_not_add_up() {
        let mut map = MemoryMap::default();
        let d = desc(0, 0x1000, 0);
        assert!(map
            .set_table(&[d, d], vec![backing("one", 0x1000)])
            .is_err());
        assert!(map
            .set_table(&[desc(0, 0, 0)], vec![backing("zero", 0x1000)])
            .is_err());
        let overlap = [desc(0, 0x2000, 0), desc(0x1000, 0x2000, 0x10000)];
        let fds = vec![backing("a", 0x2000), backing("b", 0x2000)];
        assert!(map.set_table(&overlap, fds).is_err());
        assert!(map.is_empty());
    }
}
