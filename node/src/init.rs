//! `murmur init`: writes a commented `peer.toml` holding every key at its default
//! ([`crate::config::template`]). Owns only where the text goes (a new file, an overwritten one
//! with `--force`, or stdout); the text and its keys belong to [`crate::config`].

use crate::config::{NodeConfig, template};
use anyhow::Context;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Arguments of `murmur init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Where to write the config; `-` writes it to stdout.
    #[arg(long, default_value = "peer.toml")]
    pub out: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `murmur init`: the config goes to the file (and its path to stdout) or to stdout.
pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    run_to(args, &mut std::io::stdout().lock())
}

/// [`run`], with `stdout` standing in for the standard output.
pub fn run_to(args: &InitArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let text = template::render(&NodeConfig::default());
    if args.out == Path::new("-") {
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("writing the config to stdout")?;
        return Ok(());
    }
    write_file(&args.out, &text, args.force)?;
    writeln!(
        stdout,
        "wrote {}; edit it, then start the peer with `murmur run --config {}`",
        args.out.display(),
        args.out.display()
    )
    .context("writing to stdout")?;
    Ok(())
}

/// Writes `text` to `path`, creating its directory; an existing file is an error unless
/// `force` (checked atomically by the open itself, not by a separate look).
fn write_file(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::AlreadyExists => anyhow::bail!(
            "{} already exists; not overwriting it (pass --force to replace it, or --out to \
             write elsewhere)",
            path.display()
        ),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot create {}", path.display()));
        }
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(out: PathBuf, force: bool) -> InitArgs {
        InitArgs { out, force }
    }

    #[test]
    fn config_init_writes_a_file_that_loads_as_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/peer.toml");
        let mut stdout = Vec::new();
        run_to(&args(path.clone(), false), &mut stdout).unwrap();
        let printed = String::from_utf8(stdout).unwrap();
        assert!(printed.contains(&path.display().to_string()), "{printed}");
        let cfg = NodeConfig::load(&path).unwrap();
        let mut expected = NodeConfig::default();
        expected.resolve_relative_paths(&dir.path().join("sub"));
        assert_eq!(cfg, expected);
        assert_eq!(cfg.data_dir, dir.path().join("sub/murmur-data"));
    }

    #[test]
    fn config_init_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.toml");
        std::fs::write(&path, "mine").unwrap();
        let err = run_to(&args(path.clone(), false), &mut Vec::new()).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("already exists"), "{message}");
        assert!(message.contains("--force"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");

        run_to(&args(path.clone(), true), &mut Vec::new()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, template::render(&NodeConfig::default()));
    }

    #[test]
    fn config_init_dash_writes_to_stdout() {
        let mut stdout = Vec::new();
        run_to(&args(PathBuf::from("-"), false), &mut stdout).unwrap();
        let text = String::from_utf8(stdout).unwrap();
        assert_eq!(
            NodeConfig::from_toml_str(&text, "stdout").unwrap(),
            NodeConfig::default()
        );
    }
}
