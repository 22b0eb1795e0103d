//! The operator binary's flags are the ones its README documents, no more and no fewer,
//! each with the environment variable the README (and the chart) gives it.

#![expect(
    clippy::expect_used,
    reason = "test: a failure here should fail the test loudly"
)]

use std::collections::BTreeMap;
use std::process::Command;

/// `--flag` → environment variable, from `--help`.
fn flags_from_help() -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_synco-operator"))
        .arg("--help")
        .output()
        .expect("the operator binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("--") {
            let name = rest.split([' ', '<', '=']).next().unwrap_or_default();
            current = (!matches!(name, "help" | "version")).then(|| format!("--{name}"));
        }
        if let (Some(flag), Some(at)) = (&current, line.find("[env: ")) {
            let env = line[at + 6..].split(['=', ']']).next().unwrap_or_default();
            flags.insert(flag.clone(), env.to_owned());
            current = None;
        }
    }
    flags
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
    let help = flags_from_help();
    assert!(help.len() >= 10, "too few flags read from --help: {help:?}");
    assert_eq!(help, flags_from_readme());
}
