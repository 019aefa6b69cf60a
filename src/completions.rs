//! Shell completions generated from a clap parser by `clap_complete`, so
//! they cannot drift from the command line. Both binaries use this file:
//! `sendfiled` as `mod completions`, `sfd` through `#[path]` (the two crates
//! share no crate that depends on clap). `PROGRAM --completions SHELL`
//! prints the script; ci/install.sh installs them.

use clap::Command;
use clap_complete::Shell;

/// The shells there are completions for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// If the command line is `PROGRAM --completions SHELL`, prints the script
/// for SHELL and exits (2 for an unknown shell); otherwise returns.
pub fn handle_flag(command: impl FnOnce() -> Command) {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new("--completions")) {
        return;
    }
    let shell = args
        .next()
        .and_then(|s| s.into_string().ok())
        .filter(|s| SHELLS.contains(&s.as_str()))
        .and_then(|s| s.parse::<Shell>().ok());
    match shell {
        Some(shell) if args.next().is_none() => {
            let mut cmd = command();
            let name = cmd.get_name().to_owned();
            clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
            std::process::exit(0);
        }
        _ => {
            eprintln!("usage: --completions {}", SHELLS.join("|"));
            std::process::exit(2);
        }
    }
}
