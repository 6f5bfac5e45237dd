//! The node's ed25519 identity: loaded from `<data_dir>/identity.key` (libp2p's protobuf key
//! encoding), or created there on first run with file mode 0600. Owns that one file.

use anyhow::Context;
use libp2p::identity::Keypair;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Largest identity file accepted: an ed25519 protobuf key is 68 bytes.
const MAX_KEY_FILE: u64 = 4096;

/// Where the key lives in a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity.key")
}

/// Loads the key in `data_dir`, or creates and saves a new one.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = key_path(data_dir);
    if path.exists() {
        return load(&path);
    }
    let key = Keypair::generate_ed25519();
    save(&path, &key)?;
    tracing::info!(path = %path.display(), peer_id = %key.public().to_peer_id(), "created a new identity");
    Ok(key)
}

/// Loads a key file.
pub fn load(path: &Path) -> anyhow::Result<Keypair> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_KEY_FILE,
        "{} is over {MAX_KEY_FILE} bytes; an identity key is 68",
        path.display()
    );
    Keypair::from_protobuf_encoding(&bytes).with_context(|| {
        format!(
            "{} is not a libp2p identity key (delete it to create a new identity)",
            path.display()
        )
    })
}

/// Writes a key file with mode 0600 (created that way, never world-readable in between).
pub fn save(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = key
        .to_protobuf_encoding()
        .context("encoding the identity key")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(key_path(dir.path()), b"not a key").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("identity.key"), "{err}");
    }
}
