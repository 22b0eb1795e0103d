//! The committed CRD YAML must be exactly what the types generate.
//! Fix a failure with `cargo run -p synco-crds --bin crdgen`.

use std::path::PathBuf;

use synco_crds::generate::{OUTPUT_DIRS, rendered};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_types() {
    let files = rendered().unwrap();
    assert_eq!(files.len(), 9, "one CRD per resource kind");
    for dir in OUTPUT_DIRS {
        let dir = root().join(dir);
        for (name, text) in &files {
            let path = dir.join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run `cargo run -p synco-crds --bin crdgen`",
                    path.display()
                )
            });
            assert!(
                committed == *text,
                "{} differs from what the types generate; run `cargo run -p synco-crds --bin crdgen`",
                path.display()
            );
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        on_disk.sort();
        let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        expected.sort();
        assert_eq!(
            on_disk,
            expected,
            "stale or missing CRD files in {}",
            dir.display()
        );
    }
}

#[test]
fn crds_carry_names_columns_and_rules() {
    for crd in synco_crds::generate::all_crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "synco.coop");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            names.categories.as_deref(),
            Some(&["synco".to_owned()][..]),
            "{} category",
            names.kind
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{} shortname",
            names.kind
        );
        let version = &crd.spec.versions[0];
        // A Delegation records a member's choice; nothing is observed about it.
        assert!(
            names.kind == "Delegation"
                || version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
            "{} status",
            names.kind
        );
        assert!(
            version
                .additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 3),
            "{} columns",
            names.kind
        );
    }
    let proposal = serde_json::to_string(&synco_crds::generate::all_crds()[5]).unwrap();
    for column in [
        "\"Phase\"",
        "\"Yes\"",
        "\"No\"",
        "\"Method\"",
        "\"Winner\"",
        "\"Turnout\"",
        "\"Closes\"",
    ] {
        assert!(proposal.contains(column), "proposal column {column}");
    }
    let vote = serde_json::to_string(&synco_crds::generate::all_crds()[6]).unwrap();
    assert!(vote.contains("a vote cannot be changed once cast"));
    assert!(vote.contains(r#""rule":"self == oldSelf""#));
    assert!(proposal.contains("a proposal cannot change once created"));
}

#[test]
fn generated_yaml_is_read_the_same_by_yaml_1_1_readers() {
    // kubectl and Helm read YAML 1.1, where a bare Yes or No is a boolean: the
    // Vote position enum would silently become [true, false].
    for (name, text) in rendered().unwrap() {
        for line in text.lines() {
            let value = line
                .trim()
                .trim_start_matches("- ")
                .rsplit(": ")
                .next()
                .unwrap_or_default();
            assert!(
                !matches!(
                    value,
                    "Yes" | "No" | "yes" | "no" | "on" | "off" | "On" | "Off" | "y" | "n" | "Y" | "N"
                ),
                "{name}: unquoted YAML 1.1 boolean in {line:?}"
            );
        }
    }
}
