//! A node's identity key on disk: load it, or create it on first start.
//!
//! The file holds exactly the libp2p `PrivateKey` protobuf ([`Keypair::to_protobuf_encoding`],
//! 68 bytes for Ed25519), the format rust-libp2p tools read and write, so a key can move
//! between pheromone and other libp2p programs. Files are written atomically (a temporary
//! file in the same directory, synced, then renamed or linked into place) with mode `0600`,
//! in directories created with mode `0700`.
//!
//! Like ssh with its private keys, we refuse to load a key file that other users can read or
//! write (any of the `0o077` mode bits set, on Unix): a key others could read is no longer
//! this node's alone, and silently using it would hide that. The error says how to fix it.
//! The owner of the file is not checked. Nothing here keeps keys in memory beyond returning
//! them, and nothing here is async: this runs once at start-up, before the runtime matters.

use pheromone_core::identity::{IdentityError, Keypair};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Largest key file we read, in bytes. An Ed25519 key file is 68 bytes; anything much
/// larger is not a key file, and we do not read a stray large file into memory.
pub const MAX_FILE_LEN: u64 = 4096;

/// Why an identity file could not be loaded or saved. Every variant names the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// A filesystem operation failed (permissions of the directory, disk full, …).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What we were doing, e.g. `read`, `create directory`.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The key file is accessible to other users. Fix it with `chmod 600 <path>` (and
    /// consider the key leaked if others may have read it).
    #[error(
        "{} is accessible by other users (mode {mode:03o}); a private key must not be: \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path exists but is not a regular file (a directory, a device, …).
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_FILE_LEN`], so it is not a key file.
    #[error("{} is {len} bytes, too large to be a key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The file does not hold a libp2p Ed25519 `PrivateKey` protobuf.
    #[error("{} does not hold a libp2p Ed25519 private key: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the key decoder reported.
        #[source]
        source: IdentityError,
    },
}

/// Loads the keypair stored at `path`, or generates one and stores it there if the file
/// does not exist (creating missing parent directories).
///
/// Safe against a concurrent first start: if two processes race to create the file, both
/// end up with the key that landed on disk.
pub fn load_or_generate(path: &Path) -> Result<Keypair, IdentityFileError> {
    if let Some(keypair) = read_key(path)? {
        return Ok(keypair);
    }
    let keypair = Keypair::generate(&mut rand::rngs::OsRng);
    let temp = write_temp(path, &keypair)?;
    // A hard link, unlike a rename, fails if the file appeared meanwhile; then the other
    // process's key wins and ours is discarded.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_parent(path);
            Ok(keypair)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load(path),
        Err(_) => {
            // Filesystems without hard links: fall back to an atomic rename.
            tracing::debug!(path = %path.display(), "hard link failed; saving with rename");
            save(path, &keypair)?;
            Ok(keypair)
        }
    }
}

/// Loads the keypair stored at `path`.
pub fn load(path: &Path) -> Result<Keypair, IdentityFileError> {
    read_key(path)?.ok_or_else(|| IdentityFileError::Io {
        path: path.to_owned(),
        action: "read",
        source: io::ErrorKind::NotFound.into(),
    })
}

/// Stores `keypair` at `path`, atomically replacing any file there, with mode `0600`
/// (creating missing parent directories with mode `0700`).
pub fn save(path: &Path, keypair: &Keypair) -> Result<(), IdentityFileError> {
    let temp = write_temp(path, keypair)?;
    if let Err(source) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(IdentityFileError::Io {
            path: path.to_owned(),
            action: "replace",
            source,
        });
    }
    sync_parent(path);
    Ok(())
}

/// Reads and checks the key file; `Ok(None)` if it does not exist.
fn read_key(path: &Path) -> Result<Option<Keypair>, IdentityFileError> {
    let io_err = |action, source| IdentityFileError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", e)),
    };
    // Check the file we opened, not the path, so a swap in between cannot fool us.
    let meta = file.metadata().map_err(|e| io_err("inspect", e))?;
    if !meta.is_file() {
        return Err(IdentityFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    check_permissions(path, &meta)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(IdentityFileError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err("read", e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(IdentityFileError::TooLarge {
            path: path.to_owned(),
            len: bytes.len() as u64,
        });
    }
    Keypair::from_protobuf_encoding(&bytes)
        .map(Some)
        .map_err(|source| IdentityFileError::Malformed {
            path: path.to_owned(),
            source,
        })
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), IdentityFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), IdentityFileError> {
    // Windows ACLs have no mode bits to check; the profile directory is private by default.
    Ok(())
}

/// Writes the key to a fresh temporary file beside `path` and syncs it; returns its path.
fn write_temp(path: &Path, keypair: &Keypair) -> Result<PathBuf, IdentityFileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |path: &Path, action, source| IdentityFileError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| IdentityFileError::NotAFile {
            path: path.to_owned(),
        })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_dir_private(dir).map_err(|e| io_err(dir, "create directory", e))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temp)
        .map_err(|e| io_err(&temp, "create", e))?;
    let written = file
        .write_all(&keypair.to_protobuf_encoding())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_err(&temp, "write", e));
    }
    Ok(temp)
}

fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes the new directory entry durable. Best effort: some platforms cannot sync a
/// directory, and the key is already safely written by then.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/deeper/identity.key");
        let first = load_or_generate(&path).expect("generate");
        let second = load_or_generate(&path).expect("load");
        assert_eq!(first.public(), second.public());
        assert_eq!(load(&path).expect("load").public(), first.public());
        assert_eq!(fs::read(&path).expect("read"), first.to_protobuf_encoding());
        assert_eq!(entries(path.parent().expect("parent")), ["identity.key"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new-dir/identity.key");
        load_or_generate(&path).expect("generate");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("parent")), 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_keys_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        save(&path, &Keypair::from_seed([1; 32])).expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_generate(&path).unwrap_err();
        assert!(matches!(
            err,
            IdentityFileError::Permissions { mode: 0o644, .. }
        ));
        let text = err.to_string();
        assert!(text.contains("mode 644"), "{text}");
        assert!(
            text.contains(&format!("chmod 600 {}", path.display())),
            "{text}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(load(&path).is_ok());
    }

    #[test]
    fn save_replaces_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let a = Keypair::from_seed([1; 32]);
        let b = Keypair::from_seed([2; 32]);
        save(&path, &a).expect("save a");
        save(&path, &b).expect("save b");
        assert_eq!(load(&path).expect("load").public(), b.public());
        assert_eq!(entries(dir.path()), ["identity.key"]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.key");
        let err = load(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.key"), "{err}");

        let garbage = dir.path().join("garbage.key");
        save(&garbage, &Keypair::from_seed([1; 32])).expect("save");
        fs::write(&garbage, b"not a key").expect("write");
        let err = load(&garbage).unwrap_err();
        assert!(matches!(err, IdentityFileError::Malformed { .. }));
        assert!(err.to_string().contains("garbage.key"), "{err}");

        let big = dir.path().join("big.key");
        save(&big, &Keypair::from_seed([1; 32])).expect("save");
        fs::write(&big, vec![0u8; MAX_FILE_LEN as usize + 1]).expect("write");
        assert!(matches!(
            load(&big).unwrap_err(),
            IdentityFileError::TooLarge { .. }
        ));

        let err = load_or_generate(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityFileError::NotAFile { .. }), "{err}");
    }

    #[test]
    fn racing_first_starts_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let keys: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| load_or_generate(&path).expect("load or generate")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").public())
                .collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(load(&path).expect("load").public(), keys[0]);
        assert_eq!(entries(dir.path()), ["identity.key"]);
    }
}
