//! The data dir on disk: the checks made before trusting it, and the two ways the daemon
//! writes files in it that must survive a crash.
//!
//! Checks follow OpenSSH's `StrictModes`: the data dir, the identity key and the config
//! file must belong to the user running the daemon and must not be writable by group or
//! others (anyone who can write them can replace this node's identity or settings); the
//! error names the file, its mode and its owner. Files the daemon creates or rewrites in
//! the dir are opened with `O_NOFOLLOW`, so a symlink planted there cannot make it write
//! (or truncate) a file elsewhere.
//!
//! [`write_atomic`] replaces a whole file (a temporary file synced, renamed over the old
//! one, the dir synced): a crash leaves the old version or the new one, never a mix.
//! [`sync_dir`] makes a new name in the dir durable. Nothing here is async: these run at
//! start-up or on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why the data dir, or a file in it, is not trusted or cannot be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The path belongs to another user than the one running the daemon.
    #[error(
        "{} belongs to uid {owner}, not to the user running the daemon (uid {us}); \
         refusing to trust it (`chown` it, or use a data dir of your own)",
        path.display()
    )]
    Owner {
        /// The file or dir.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        us: u32,
    },
    /// Group or others may write the path (mode bits `0o022`).
    #[error(
        "{} is writable by group or others (mode {mode:03o}); refusing to trust it: \
         run `chmod go-w {}`",
        path.display(),
        path.display()
    )]
    Writable {
        /// The file or dir.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file the daemon writes is a symlink (or another non-regular file).
    #[error("{} is a symlink or not a regular file; refusing to open it", path.display())]
    NotARegularFile {
        /// The path.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What we were doing.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The effective uid of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that `path` (following a symlink to it: the dir itself may be a link) belongs to
/// us and is not writable by group or others. A path that does not exist passes.
pub fn check_strict(path: &Path) -> Result<(), DataDirError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path, "inspect")(e)),
    };
    let us = euid();
    // root may run a daemon on a dir it made for another user, as sshd does.
    if meta.uid() != us && us != 0 {
        return Err(DataDirError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            us,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DataDirError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Opens (creating with mode 0600) a file in the data dir for reading and appending or
/// rewriting, refusing symlinks and never truncating.
pub fn open_private(path: &Path) -> Result<File, DataDirError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                DataDirError::NotARegularFile {
                    path: path.to_owned(),
                }
            } else {
                io(path, "open")(e)
            }
        })?;
    let meta = file.metadata().map_err(io(path, "inspect"))?;
    if !meta.file_type().is_file() {
        return Err(DataDirError::NotARegularFile {
            path: path.to_owned(),
        });
    }
    Ok(file)
}

/// Opens a file of the data dir for reading only, refusing symlinks; `None` when absent.
pub fn open_read(path: &Path) -> Result<Option<File>, DataDirError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(DataDirError::NotARegularFile {
            path: path.to_owned(),
        }),
        Err(e) => Err(io(path, "open")(e)),
    }
}

/// Makes the names in `dir` durable (a created or renamed file survives a crash).
pub fn sync_dir(dir: &Path) -> Result<(), DataDirError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "sync"))
}

/// Replaces `path` with `bytes` atomically: a crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A tmp left by a crash is ours to replace; a symlink planted there is removed, not
    // followed.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp, "remove")(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io(&tmp, "create"))?;
    file.write_all(bytes).map_err(io(&tmp, "write"))?;
    file.sync_all().map_err(io(&tmp, "sync"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path, "rename into place"))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn writable_by_others_is_refused_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "x").expect("write");
        chmod(&file, 0o644);
        check_strict(&file).expect("0644 is fine");
        chmod(&file, 0o664);
        let err = check_strict(&file).expect_err("group-writable");
        let text = err.to_string();
        assert!(
            matches!(err, DataDirError::Writable { mode: 0o664, .. }),
            "{text}"
        );
        assert!(
            text.contains("config.toml") && text.contains("664"),
            "{text}"
        );
        chmod(dir.path(), 0o777);
        assert!(matches!(
            check_strict(dir.path()),
            Err(DataDirError::Writable { mode: 0o777, .. })
        ));
        chmod(dir.path(), 0o700);
        check_strict(&dir.path().join("absent")).expect("absent passes");
    }

    #[test]
    fn symlinks_are_not_followed_or_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        let link = dir.path().join("daemon.lock");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let err = open_private(&link).expect_err("symlink refused");
        assert!(matches!(err, DataDirError::NotARegularFile { .. }), "{err}");
        assert!(open_read(&link).is_err());
        // An atomic write replaces the link itself, never the file it points to.
        let tmp_link = dir.path().join("peers.json.tmp");
        std::os::unix::fs::symlink(&victim, &tmp_link).expect("symlink");
        write_atomic(&dir.path().join("peers.json"), b"new").expect("write");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(
            std::fs::read(dir.path().join("peers.json")).expect("read"),
            b"new"
        );
    }
}
