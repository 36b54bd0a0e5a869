//! `peermesh completions` and `peermesh man`: shell completions and manual pages, generated
//! from the same definition as the parser and the help.

use super::args::{self, Shell, EXIT_STATUS};
use super::{emit, Failure};
use clap_mangen::Man;
use std::io;

/// Prints the completion script for `shell`.
pub(super) fn completions(shell: Shell) -> Result<(), Failure> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut args::command(), "peermesh", &mut script);
    emit(script)
}

/// Prints the manual page of peermesh, or with `command` that of `peermesh COMMAND`
/// (titled `peermesh-COMMAND`, as the main page's list of commands names it).
pub(super) fn man(command: Option<&str>) -> Result<(), Failure> {
    // `help` is no page of its own: every page is the help.
    let mut definition = args::command()
        .disable_help_subcommand(true)
        .subcommand_help_heading("COMMANDS");
    definition.build();
    // Every page names the program's version at its foot, not just the command's name.
    let source = format!("peermesh {}", definition.get_version().unwrap_or_default());
    let mut roff = Vec::new();
    let rendered = match command {
        None => main_page(Man::new(definition).source(source), &mut roff),
        // The parser accepts only the names of commands.
        Some(name) => match definition.find_subcommand(name) {
            Some(sub) => Man::new(sub.clone()).source(source).render(&mut roff),
            None => return Err(Failure::Runtime(format!("no command {name:?}"))),
        },
    };
    rendered.map_err(|e| Failure::Runtime(format!("cannot render the manual page: {e}")))?;
    emit(roff)
}

/// The page of peermesh itself: clap_mangen's sections, with the exit codes under the
/// usual EXIT STATUS heading rather than its catch-all EXTRA.
fn main_page(man: Man, out: &mut Vec<u8>) -> io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let mut exit = roff::Roff::new();
    exit.control("SH", ["EXIT STATUS"]);
    exit.text([roff::roman(EXIT_STATUS.replace('\n', " "))]);
    exit.to_writer(out)?;
    man.render_version_section(out)
}
