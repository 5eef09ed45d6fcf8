//! Man pages and shell completions from the command-line definition
//! (issue 12): the packages run the hidden `tupper-supervisor generate`
//! at build time, so every subcommand, whoever adds it, gets its page and
//! its completions.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use clap_complete::Shell;

use crate::error::{Error, Result};

/// One page per command and subcommand (`tupper-supervisor-run.1`, ...),
/// hidden commands left out, into `dir`.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| Error::io(format!("writing man pages to {}", dir.display()), e))
}

/// Completions for bash, zsh and fish, each in the file name its shell looks
/// for: `DIR/bash/tupper-supervisor`, `DIR/zsh/_tupper-supervisor`,
/// `DIR/fish/tupper-supervisor.fish`.
pub fn completions(cmd: clap::Command, dir: &Path) -> Result<()> {
    let bin = cmd.get_name().to_string();
    let mut cmd = without_hidden(&cmd);
    for (shell, sub, file) in [
        (Shell::Bash, "bash", bin.clone()),
        (Shell::Zsh, "zsh", format!("_{bin}")),
        (Shell::Fish, "fish", format!("{bin}.fish")),
    ] {
        let d = dir.join(sub);
        create_dir(&d)?;
        let path = d.join(file);
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, bin.clone(), &mut buf);
        File::create(&path)
            .and_then(|mut f| f.write_all(&buf))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// The command with its hidden subcommands left out (the bash generator
/// would otherwise offer them).
fn without_hidden(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("tupper-supervisor")
            .version("1")
            .subcommand(clap::Command::new("run").about("Run a container"))
            .subcommand(clap::Command::new("generate").hide(true))
            .subcommand(
                clap::Command::new("image").subcommand(clap::Command::new("ls").about("List")),
            )
    }

    #[test]
    fn every_visible_command_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(sample(), dir.path()).unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        assert_eq!(
            pages,
            [
                "tupper-supervisor-image-ls.1",
                "tupper-supervisor-image.1",
                "tupper-supervisor-run.1",
                "tupper-supervisor.1"
            ]
        );
    }

    #[test]
    fn completions_for_three_shells() {
        let dir = tempfile::tempdir().unwrap();
        completions(sample(), dir.path()).unwrap();
        for f in [
            "bash/tupper-supervisor",
            "zsh/_tupper-supervisor",
            "fish/tupper-supervisor.fish",
        ] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.contains("run"), "{f} completes run");
            assert!(
                !text.contains("generate"),
                "{f} leaves the hidden command out"
            );
        }
    }
}
