//! The operator binary's flags are the ones its README documents, no more and no fewer,
//! each with the environment variable the README gives it; and the binary lists them all.

#![expect(
    clippy::expect_used,
    reason = "test: a failure here should fail the test loudly"
)]

use std::collections::BTreeMap;
use std::process::Command;

/// `--flag` → environment variable, as the binary's argument parser declares them.
fn flags_from_the_binary() -> BTreeMap<String, String> {
    use clap::CommandFactory as _;
    synco_operator::cli::Args::command()
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some((format!("--{long}"), env))
        })
        .collect()
}

#[test]
fn the_binary_answers_help_with_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_synco-operator"))
        .arg("--help")
        .output()
        .expect("the operator binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    for flag in flags_from_the_binary().keys() {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag} not in --help:\n{help}"
        );
    }
}

/// `--flag` → environment variable, from the README's table.
fn flags_from_readme() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("operator/README.md");
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let env = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            flag.starts_with("--").then(|| (flag.to_owned(), env.to_owned()))
        })
        .collect()
}

#[test]
fn every_flag_is_documented_with_its_environment_variable() {
    let flags = flags_from_the_binary();
    assert!(flags.len() >= 10, "too few flags: {flags:?}");
    assert_eq!(flags, flags_from_readme());
}
