//! Helpers shared by unit tests.

use std::fs::File;

/// A readable and writable file without a name (created in the temp dir, unlinked at
/// once), for tests that need a real descriptor. `tag` keeps concurrent tests apart.
pub fn unnamed_file(tag: &str) -> File {
    let path = std::env::temp_dir().join(format!("ownfs-{tag}-{}", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}
