//! Shell completions (bash, zsh, fish) generated from a clap parser: the
//! options, their possible values and the subcommands the `clap::Command`
//! itself lists, so they cannot drift from the command line.
//!
//! Both binaries use this file: `sendfiled` as `mod completions`, `sfd`
//! through `#[path]` (the two crates share no crate that depends on clap,
//! and the `clap_complete` crate is not among the locked dependencies).
//! It depends on clap and std only. `PROGRAM --completions SHELL` prints
//! the script; ci/install.sh installs them.

use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command, ValueHint};

/// The shells there are completions for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// If the command line is `PROGRAM --completions SHELL`, prints the script
/// for SHELL and exits (2 for an unknown shell); otherwise returns.
pub fn handle_flag(command: impl FnOnce() -> Command) {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new("--completions")) {
        return;
    }
    let shell = args.next().and_then(|s| s.into_string().ok());
    match shell.as_deref().and_then(|s| generate(s, command())) {
        Some(script) if args.next().is_none() => {
            print!("{script}");
            std::process::exit(0);
        }
        _ => {
            eprintln!("usage: --completions {}", SHELLS.join("|"));
            std::process::exit(2);
        }
    }
}

/// The completion script of `cmd` for `shell`, `None` for an unknown shell.
pub fn generate(shell: &str, mut cmd: Command) -> Option<String> {
    // Propagates global options into the subcommands.
    cmd.build();
    match shell {
        "bash" => Some(bash(&cmd)),
        "zsh" => Some(zsh(&cmd)),
        "fish" => Some(fish(&cmd)),
        _ => None,
    }
}

/// The options of `cmd` (not positionals, not hidden ones).
fn options(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
}

fn subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn takes_value(a: &Arg) -> bool {
    !matches!(
        a.get_action(),
        ArgAction::SetTrue
            | ArgAction::SetFalse
            | ArgAction::Count
            | ArgAction::Help
            | ArgAction::HelpShort
            | ArgAction::HelpLong
            | ArgAction::Version
    )
}

fn values(a: &Arg) -> Vec<String> {
    a.get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect()
}

/// Whether the value of `a` is a file name.
fn is_path(a: &Arg) -> bool {
    matches!(
        a.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
    ) || a.get_value_names().is_some_and(|n| {
        n.iter()
            .any(|n| matches!(n.as_str(), "PATH" | "ROOT" | "DIR" | "SOCKDIR"))
    })
}

fn help(a: &Arg) -> String {
    a.get_help()
        .map(|h| h.to_string())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn flags_of(a: &Arg) -> Vec<String> {
    let mut v: Vec<String> = a
        .get_short_and_visible_aliases()
        .unwrap_or_default()
        .into_iter()
        .map(|c| format!("-{c}"))
        .collect();
    v.extend(
        a.get_long_and_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|l| format!("--{l}")),
    );
    v
}

fn bash(cmd: &Command) -> String {
    let name = cmd.get_name();
    let func = format!("_{}", name.replace('-', "_"));
    let mut s = format!(
        "# bash completion for {name}, generated from its parser ({name} --completions bash)\n\
         {func}() {{\n    local cur prev sub i opts\n    cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n    \
         prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n    sub=\"\"\n"
    );
    let subs: Vec<&str> = subcommands(cmd).map(|c| c.get_name()).collect();
    if !subs.is_empty() {
        let _ = write!(
            s,
            "    for ((i = 1; i < COMP_CWORD; i++)); do\n        case \"${{COMP_WORDS[i]}}\" in\n            \
             {}) sub=\"${{COMP_WORDS[i]}}\"; break ;;\n        esac\n    done\n",
            subs.join("|")
        );
    }
    // The value of the option before the cursor.
    s.push_str("    case \"$prev\" in\n");
    let mut all: Vec<&Arg> = options(cmd).collect();
    for sc in subcommands(cmd) {
        all.extend(options(sc));
    }
    let mut seen = Vec::new();
    for a in all.into_iter().filter(|a| takes_value(a)) {
        let flags = flags_of(a).join("|");
        if flags.is_empty() || seen.contains(&flags) {
            continue;
        }
        let vals = values(a);
        let reply = if !vals.is_empty() {
            format!(
                "COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))",
                vals.join(" ")
            )
        } else if is_path(a) {
            "COMPREPLY=($(compgen -f -- \"$cur\"))".to_owned()
        } else {
            "COMPREPLY=()".to_owned()
        };
        let _ = writeln!(s, "        {flags}) {reply}; return ;;");
        seen.push(flags);
    }
    s.push_str("    esac\n    case \"$sub\" in\n");
    let words = |c: &Command, with_subs: bool| {
        let mut w: Vec<String> = options(c).flat_map(flags_of).collect();
        if with_subs {
            w.extend(subcommands(c).map(|c| c.get_name().to_owned()));
        }
        w.join(" ")
    };
    for sc in subcommands(cmd) {
        let _ = writeln!(
            s,
            "        {}) opts=\"{}\" ;;",
            sc.get_name(),
            words(sc, false)
        );
    }
    let _ = writeln!(s, "        *) opts=\"{}\" ;;", words(cmd, true));
    s.push_str("    esac\n");
    s.push_str(
        "    if [[ \"$cur\" == -* || -z \"$sub\" ]] && [[ -n \"$opts\" ]]; then\n        \
         COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n    fi\n    \
         if [[ ${#COMPREPLY[@]} -eq 0 && \"$cur\" != -* ]]; then\n        \
         COMPREPLY=($(compgen -f -- \"$cur\"))\n    fi\n}\n",
    );
    let _ = writeln!(s, "complete -o filenames -F {func} {name}");
    s
}

/// `text` safe inside a zsh `_arguments` description in single quotes.
fn zsh_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '[' => '(',
            ']' => ')',
            ':' => ' ',
            c => c,
        })
        .collect::<String>()
        .replace('\'', "'\\''")
}

fn zsh_specs(cmd: &Command) -> Vec<String> {
    let mut specs = Vec::new();
    for a in options(cmd) {
        let h = zsh_text(&help(a));
        let many = matches!(a.get_action(), ArgAction::Append | ArgAction::Count);
        let star = if many { "*" } else { "" };
        let value = if takes_value(a) {
            let vname = a
                .get_value_names()
                .and_then(|n| n.first())
                .map(|n| n.to_string())
                .unwrap_or_else(|| "VALUE".into());
            let vals = values(a);
            let action = if !vals.is_empty() {
                format!("({})", vals.join(" "))
            } else if is_path(a) {
                "_files".to_owned()
            } else {
                String::new()
            };
            format!(":{}:{action}", zsh_text(&vname))
        } else {
            String::new()
        };
        for f in flags_of(a) {
            let sep = match (takes_value(a), f.starts_with("--")) {
                (false, _) => "",
                (true, true) => "=",
                (true, false) => "+",
            };
            specs.push(format!("'{star}{f}{sep}[{h}]{value}'"));
        }
    }
    for p in cmd.get_positionals() {
        let n = p.get_id().as_str();
        specs.push(format!("':{}:_files'", zsh_text(n)));
    }
    specs
}

fn zsh(cmd: &Command) -> String {
    let name = cmd.get_name();
    let func = format!("_{}", name.replace('-', "_"));
    let mut s = format!(
        "#compdef {name}\n# zsh completion for {name}, generated from its parser \
         ({name} --completions zsh)\n\n{func}() {{\n    local curcontext=\"$curcontext\" state line\n    \
         typeset -A opt_args\n"
    );
    let subs: Vec<&Command> = subcommands(cmd).collect();
    let mut specs = zsh_specs(cmd);
    if !subs.is_empty() {
        specs.push("'1: :->command'".into());
        specs.push("'*:: :->args'".into());
    }
    let _ = writeln!(
        s,
        "    _arguments -C -s \\\n        {}",
        specs.join(" \\\n        ")
    );
    if !subs.is_empty() {
        s.push_str(
            "    case $state in\n    command)\n        local -a commands\n        commands=(\n",
        );
        for sc in &subs {
            let about = sc.get_about().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(
                s,
                "            '{}:{}'",
                sc.get_name(),
                zsh_text(about.lines().next().unwrap_or(""))
            );
        }
        s.push_str(
            "        )\n        _describe -t commands 'command' commands\n        ;;\n    args)\n        \
             case $line[1] in\n",
        );
        for sc in &subs {
            let _ = writeln!(
                s,
                "        {})\n            _arguments -s \\\n                {}\n            ;;",
                sc.get_name(),
                zsh_specs(sc).join(" \\\n                ")
            );
        }
        s.push_str("        esac\n        ;;\n    esac\n");
    }
    let _ = write!(s, "}}\n\n{func} \"$@\"\n");
    s
}

fn fish_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

fn fish_line(prog: &str, cond: &str, a: &Arg) -> String {
    let mut l = format!("complete -c {prog}{cond}");
    if let Some(c) = a.get_short() {
        let _ = write!(l, " -s {c}");
    }
    if let Some(long) = a.get_long() {
        let _ = write!(l, " -l {long}");
    }
    if takes_value(a) {
        let vals = values(a);
        if !vals.is_empty() {
            let _ = write!(l, " -x -a '{}'", vals.join(" "));
        } else if is_path(a) {
            l.push_str(" -r -F");
        } else {
            l.push_str(" -x");
        }
    }
    let _ = write!(l, " -d '{}'", fish_text(&help(a)));
    l
}

fn fish(cmd: &Command) -> String {
    let name = cmd.get_name();
    let mut s = format!(
        "# fish completion for {name}, generated from its parser ({name} --completions fish)\n"
    );
    let subs: Vec<&Command> = subcommands(cmd).collect();
    for a in options(cmd) {
        // Global options are accepted before and after the subcommand.
        let _ = writeln!(s, "{}", fish_line(name, "", a));
    }
    if !subs.is_empty() {
        let names: Vec<&str> = subs.iter().map(|c| c.get_name()).collect();
        let _ = writeln!(s, "complete -c {name} -f");
        for sc in &subs {
            let about = sc.get_about().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(
                s,
                "complete -c {name} -n 'not __fish_seen_subcommand_from {}' -a {} -d '{}'",
                names.join(" "),
                sc.get_name(),
                fish_text(about.lines().next().unwrap_or(""))
            );
        }
        for sc in &subs {
            let cond = format!(" -n '__fish_seen_subcommand_from {}'", sc.get_name());
            for a in options(sc).filter(|a| !a.is_global_set()) {
                let _ = writeln!(s, "{}", fish_line(name, &cond, a));
            }
            if sc.get_positionals().next().is_some() {
                let _ = writeln!(s, "complete -c {name}{cond} -F");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Command {
        Command::new("demo")
            .arg(
                Arg::new("socket")
                    .long("socket")
                    .value_name("PATH")
                    .global(true),
            )
            .arg(
                Arg::new("level")
                    .long("level")
                    .value_parser(["low", "high"])
                    .help("How much [really]"),
            )
            .arg(Arg::new("quiet").short('q').action(ArgAction::SetTrue))
            .subcommand(Command::new("cat").about("Read it").arg(Arg::new("path")))
            .subcommand(Command::new("ping"))
    }

    #[test]
    fn every_shell_names_options_values_and_subcommands() {
        for sh in SHELLS {
            let s = generate(sh, demo()).unwrap();
            for want in ["socket", "level", "low high", "cat", "ping"] {
                assert!(s.contains(want), "{sh}: no {want:?} in\n{s}");
            }
        }
        assert!(generate("csh", demo()).is_none());
        let zsh = generate("zsh", demo()).unwrap();
        assert!(zsh.starts_with("#compdef demo\n"));
        assert!(zsh.contains("How much (really)"), "{zsh}");
        let bash = generate("bash", demo()).unwrap();
        assert!(bash.contains("complete -o filenames -F _demo demo"));
        assert!(bash.contains("--socket) COMPREPLY=($(compgen -f"), "{bash}");
        let fish = generate("fish", demo()).unwrap();
        assert!(fish.contains("complete -c demo -n '__fish_seen_subcommand_from cat' -F"));
    }
}
