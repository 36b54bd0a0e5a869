//! Usage errors as peermesh prints them: one line that says what is wrong (in the words the
//! README documents, e.g. `error: run does not take "--frob"`), clap's "did you mean" tip if
//! it has one, the command's one-line usage and a pointer to its `--help`. Never the whole
//! help: that pushed the error off the screen.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use std::ffi::OsStr;
use std::fmt::Write;

/// A usage error with the usage of the command it is about: the subcommand's, if the
/// command line names one, else peermesh's. The command line has no top-level flag that
/// takes a value, so the subcommand, if any, is the first argument.
pub(crate) fn explain(
    definition: &mut clap::Command,
    args: &[impl AsRef<OsStr>],
    err: &clap::Error,
) -> String {
    definition.build();
    let sub = args
        .get(1)
        .and_then(|a| a.as_ref().to_str())
        .and_then(|a| definition.find_subcommand(a))
        .map(|sub| sub.get_name().to_owned());
    let (name, usage) = match sub.and_then(|sub| definition.find_subcommand_mut(&sub)) {
        // `help` takes command names only: its help is peermesh's.
        Some(sub) if sub.get_name() == "help" => ("peermesh".to_owned(), sub.render_usage()),
        Some(sub) => (format!("peermesh {}", sub.get_name()), sub.render_usage()),
        None => ("peermesh".to_owned(), definition.render_usage()),
    };
    render(err, &name, &usage.to_string())
}

/// Renders a usage error of the command `command` (`"peermesh"` or `"peermesh run"`) whose
/// usage clap renders as `usage` (`Usage: peermesh run [OPTIONS]`): the text for stderr,
/// ending in a newline.
fn render(err: &clap::Error, command: &str, usage: &str) -> String {
    let mut out = format!("error: {}\n", message(err, command));
    let tips = tips(err);
    if !tips.is_empty() {
        out.push('\n');
        for tip in tips {
            let _ = writeln!(out, "  tip: {tip}");
        }
    }
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    let _ = writeln!(out, "\nusage: {usage}");
    let _ = writeln!(out, "For more information, try '{command} --help'.");
    out
}

/// The one line that says what is wrong.
fn message(err: &clap::Error, command: &str) -> String {
    // The last word of "peermesh run": what the messages call the command.
    let name = command.rsplit(' ').next().unwrap_or(command);
    let string = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let strings = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => vec![flag(s)],
        Some(ContextValue::Strings(v)) => v.iter().map(|s| flag(s)).collect(),
        _ => Vec::new(),
    };
    // The subject of a sentence about an argument: the flag, or the command for a positional.
    let subject = |arg: &str| {
        if arg.starts_with('-') {
            flag(arg).to_owned()
        } else {
            name.to_owned()
        }
    };
    let arg = string(ContextKind::InvalidArg);
    let value = string(ContextKind::InvalidValue);
    match (err.kind(), arg, value) {
        (
            ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
            ..,
        ) => "no command given".to_owned(),
        (ErrorKind::InvalidSubcommand, ..) => match string(ContextKind::InvalidSubcommand) {
            Some(sub) => format!("unknown command {sub:?}"),
            None => "unknown command".to_owned(),
        },
        (ErrorKind::UnknownArgument, Some(arg), _) => format!("{name} does not take {arg:?}"),
        (ErrorKind::InvalidValue, Some(arg), Some("")) => format!("{} needs a value", flag(arg)),
        (ErrorKind::InvalidValue, Some(arg), Some(value)) => {
            let valid = strings(ContextKind::ValidValue).join(", ");
            format!("{} wants one of {valid}, not {value:?}", subject(arg))
        }
        (ErrorKind::ValueValidation, Some(arg), Some(value)) => {
            match std::error::Error::source(err) {
                // Our value parsers word their errors to follow the flag.
                Some(why) => format!("{} {why}", subject(arg)),
                None => format!("{} does not take {value:?}", subject(arg)),
            }
        }
        (ErrorKind::TooManyValues, Some(arg), Some(value)) => {
            format!("{} takes no value, not {value:?}", flag(arg))
        }
        (ErrorKind::ArgumentConflict, Some(arg), _) => {
            let others = strings(ContextKind::PriorArg);
            if others.is_empty() || others == [flag(arg)] {
                format!("{} is given twice", flag(arg))
            } else {
                format!("give {} or {}, not both", flag(arg), others.join(" or "))
            }
        }
        (ErrorKind::MissingRequiredArgument, ..) => {
            format!(
                "{name} needs {}",
                strings(ContextKind::InvalidArg).join(" and ")
            )
        }
        (kind, ..) => kind.as_str().unwrap_or("bad usage").to_owned(),
    }
}

/// `--bind <ADDR:PORT>` as clap names an argument in errors → `--bind`; a positional
/// (`<SHELL>`) stays as it is.
fn flag(arg: &str) -> &str {
    arg.split([' ', '=']).next().unwrap_or(arg)
}

/// clap's suggestions: "did you mean" for a command, a flag or a value, and its other tips.
fn tips(err: &clap::Error) -> Vec<String> {
    let mut tips = Vec::new();
    for (kind, what) in [
        (ContextKind::SuggestedSubcommand, "command"),
        (ContextKind::SuggestedArg, "flag"),
        (ContextKind::SuggestedValue, "value"),
    ] {
        let similar: Vec<String> = match err.get(kind) {
            Some(ContextValue::String(s)) => vec![format!("'{s}'")],
            Some(ContextValue::Strings(v)) => v.iter().map(|s| format!("'{s}'")).collect(),
            _ => continue,
        };
        tips.push(match similar.len() {
            1 => format!("a similar {what} exists: {}", similar[0]),
            _ => format!("some similar {what}s exist: {}", similar.join(", ")),
        });
    }
    if let Some(ContextValue::StyledStrs(more)) = err.get(ContextKind::Suggested) {
        tips.extend(more.iter().map(|s| s.to_string()));
    }
    tips
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::command;

    fn error_of(args: &[&str]) -> String {
        let mut definition = command();
        let err = definition
            .try_get_matches_from_mut(args)
            .expect_err("a usage error");
        explain(&mut definition, args, &err)
    }

    #[test]
    fn a_typo_gets_one_line_a_tip_the_usage_and_a_pointer_to_help() {
        assert_eq!(
            error_of(&["peermesh", "stauts"]),
            "error: unknown command \"stauts\"\n\n  tip: a similar command exists: 'status'\n\n\
             usage: peermesh <command>\nFor more information, try 'peermesh --help'.\n"
        );
        assert_eq!(
            error_of(&["peermesh", "status", "--jsn"]),
            "error: status does not take \"--jsn\"\n\n  tip: a similar flag exists: '--json'\n\n\
             usage: peermesh status [OPTIONS]\nFor more information, try 'peermesh status --help'.\n"
        );
    }

    #[test]
    fn each_kind_of_mistake_says_what_is_wrong_in_one_line() {
        let cases: [(&[&str], &str); 9] = [
            (&["peermesh"], "error: no command given"),
            (
                &["peermesh", "status", "--json=yes"],
                "error: --json takes no value, not \"yes\"",
            ),
            (
                &["peermesh", "status", "--config"],
                "error: --config needs a value",
            ),
            (
                &["peermesh", "run", "--bind", "x"],
                "error: --bind wants ADDR:PORT (e.g. 0.0.0.0:1313), not \"x\"",
            ),
            (
                &["peermesh", "top", "--count", "x"],
                "error: --count wants a number, not \"x\"",
            ),
            (
                &["peermesh", "matrix", "--json", "--svg", "m.svg"],
                "error: give --json or --svg, not both",
            ),
            (
                &["peermesh", "completions", "tcsh"],
                "error: completions wants one of bash, zsh, fish, not \"tcsh\"",
            ),
            (
                &["peermesh", "completions"],
                "error: completions needs <SHELL>",
            ),
            (
                &["peermesh", "status", "extra"],
                "error: status does not take \"extra\"",
            ),
        ];
        for (args, first) in cases {
            let text = error_of(args);
            assert_eq!(text.lines().next(), Some(first), "{args:?}: {text}");
            assert!(text.lines().count() <= 7, "{args:?}: {text}");
            assert!(text.ends_with("--help'.\n"), "{args:?}: {text}");
        }
    }
}
