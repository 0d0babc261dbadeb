//! Files that hold secrets (master keys, credentials, the JSON key vault):
//! written owner-only and never through a symlink, read only when nobody
//! else can read them.
//!
//! `ssh` refuses a private key that group or others may read; so do we: a
//! master key readable by another account of the machine is a master key
//! that account has. Writing opens with `O_NOFOLLOW`, so that a symlink
//! planted at the path (e.g. at the key vault's temporary file) cannot
//! redirect the write, and sets mode 0600 on the open file every time, not
//! only on creation.

use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

/// Why a secret file was refused or could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateFileError {
    /// The file could not be opened or read.
    #[error("cannot read secret file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others have permissions on the file.
    #[error(
        "secret file {path} is accessible to group or others (mode {mode:04o}); refusing to use it. Run `chmod 600 {path}` (for a mounted Kubernetes secret, set defaultMode: 0400)"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads a secret file after checking that only its owner may access it.
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, PrivateFileError> {
    let io = |source| PrivateFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    // The mode of the opened file (fstat), so that a swap of the path
    // between the check and the read changes nothing.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::Exposed {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    let mut out = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut file, &mut out).map_err(io)?;
    Ok(out)
}

/// The permission bits of `path` when group or others have any of them
/// (`None` when only its owner may access it, and always `None` off Unix):
/// the same rule [`read_private`] enforces, for reports such as
/// `check --deploy` that list every exposed file instead of failing on the
/// first.
pub fn exposed_mode(path: &Path) -> std::io::Result<Option<u32>> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Ok(Some(mode));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(None)
}

/// How [`write_private_with`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Replace its content.
    Truncate,
    /// Refuse (`AlreadyExists`): the check and the creation are one call.
    Refuse,
}

/// Writes a file readable only by its owner (0600 on Unix), never through a
/// symlink, replacing its content.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_private_with(path, bytes, Existing::Truncate)
}

/// [`write_private`], choosing what happens to an existing file.
pub(crate) fn write_private_with(
    path: &Path,
    bytes: &[u8],
    existing: Existing,
) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    match existing {
        Existing::Truncate => options.create(true).truncate(true),
        Existing::Refuse => options.create_new(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode on open: set it on the open file.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_are_private_and_refuse_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600, "an existing file is made private too");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");

        let target = dir.path().join("target");
        std::fs::write(&target, b"victim").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_private(&link, b"x").is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"victim");

        assert_eq!(
            write_private_with(&p, b"y", Existing::Refuse)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn reads_refuse_files_others_can_access() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_private(&p, b"secret").unwrap();
        assert_eq!(&read_private(&p).unwrap()[..], b"secret");
        for m in [0o640, 0o604, 0o620, 0o601] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            let e = read_private(&p).unwrap_err().to_string();
            assert!(
                e.contains("chmod 600") && !e.contains("secret file k "),
                "{e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(&read_private(&p).unwrap()[..], b"secret");
    }
}
