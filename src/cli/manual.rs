//! The manual pages: clap's page of the tool and of each command, with the
//! sections a manual page carries that `--help` keeps short (exit status,
//! environment, files, the statuses of the results file), and every page
//! another refers to written with `--out-dir`.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, ENVIRONMENT, EXIT_CODES};
use crate::types::Status;

/// The tool's commands as the manual pages show them: no `help` command
/// (its page would be `--help` again), names filled in.
fn tool() -> clap::Command {
    fn without_help(command: clap::Command) -> clap::Command {
        command
            .disable_help_subcommand(true)
            .mut_subcommands(without_help)
    }
    let mut tool = without_help(Cli::command());
    tool.build();
    tool
}

/// The page of the tool (`path` empty) or of one of its commands
/// (`["suppress", "add"]`), in roff; `None` when there is no such command.
pub fn page(path: &[String]) -> Option<Vec<u8>> {
    let tool = tool();
    let mut command = &tool;
    for name in path {
        command = command.find_subcommand(name)?;
    }
    Some(render(command, path.is_empty()))
}

/// Writes the page of the tool and of every command into `folder`, as
/// `interacto-bulk.1`, `interacto-bulk-send.1`, …; returns their paths.
pub fn write_all(folder: &Path) -> io::Result<Vec<PathBuf>> {
    fn write(
        command: &clap::Command,
        top: bool,
        folder: &Path,
        written: &mut Vec<PathBuf>,
    ) -> io::Result<()> {
        let name = command.get_display_name().unwrap_or(command.get_name());
        let path = folder.join(format!("{name}.1"));
        std::fs::write(&path, render(command, top))?;
        written.push(path);
        for sub in command.get_subcommands() {
            write(sub, false, folder, written)?;
        }
        Ok(())
    }
    let mut written = Vec::new();
    write(&tool(), true, folder, &mut written)?;
    Ok(written)
}

/// One page: clap's sections, then the tool's own (the whole list on the
/// tool's page; the exit status and where to read on on a command's).
fn render(command: &clap::Command, top: bool) -> Vec<u8> {
    let source = format!("interacto-bulk {}", env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(command.clone()).source(source);
    let mut page = Vec::new();
    let rendered = man
        .render_title(&mut page)
        .and_then(|()| man.render_name_section(&mut page))
        .and_then(|()| man.render_synopsis_section(&mut page))
        .and_then(|()| man.render_description_section(&mut page))
        .and_then(|()| man.render_options_section(&mut page))
        .and_then(|()| match command.has_subcommands() {
            true => man.render_subcommands_section(&mut page),
            false => Ok(()),
        });
    rendered.expect("rendering to memory cannot fail");
    let mut own = String::new();
    own.push_str(&preformatted("EXIT STATUS", EXIT_CODES));
    if top {
        own.push_str(&preformatted("ENVIRONMENT", ENVIRONMENT));
        own.push_str(&preformatted("FILES", FILES));
        let statuses: Vec<String> = Status::ALL
            .iter()
            .map(|status| format!("  {:<11}{}", status.as_str(), status.meaning()))
            .collect();
        own.push_str(&preformatted("STATUSES", &statuses.join("\n")));
    }
    own.push_str(&see_also(command, top));
    page.extend_from_slice(own.as_bytes());
    page
}

/// The files the tool reads and writes.
const FILES: &str = "  $XDG_CONFIG_HOME/interacto-bulk/config.toml
        the config file, when neither --config nor INTERACTO_CONFIG names one
        (`interacto-bulk config example` prints a commented one)
  $XDG_STATE_HOME/interacto-bulk/ledger.db
        the ledger (SQLite) when ledger.url names none: each number's clock and
        counts, the campaigns' memory, the suppression list
  <campaign>.results.csv
        a send's results, one line per row (--out names another)
  <campaign>.check.csv, <campaign>.mock.csv
        a dry run's check, a --mock rehearsal's results
  <results>.lock, <results>.journal
        beside the results file while a run writes it";

/// A section of text kept as written (columns and all).
fn preformatted(title: &str, text: &str) -> String {
    format!(".SH \"{title}\"\n.nf\n{}\n.fi\n", escaped(text))
}

/// The pages this one leads to: the tool's and its commands'.
fn see_also(command: &clap::Command, top: bool) -> String {
    let mut pages: Vec<String> = command
        .get_subcommands()
        .map(|sub| format!("{}(1)", sub.get_display_name().unwrap_or(sub.get_name())))
        .collect();
    if !top {
        pages.insert(0, "interacto-bulk(1)".to_string());
    }
    format!(".SH \"SEE ALSO\"\n{}\n", escaped(&pages.join(", ")))
}

/// `text` as roff reads it literally.
fn escaped(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .lines()
        .map(|line| match line.starts_with(['.', '\'']) {
            true => format!("\\&{line}"),
            false => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
