//! Every example manifest loads into the Rust types and writes back out with
//! nothing lost on the way.

use std::path::PathBuf;

use serde_json::Value;
use synco_crds::manifests::{Manifest, documents, load_dir, yaml_files};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Paths present in `original` that are missing or different in `copy`.
fn lost(original: &Value, copy: &Value, path: &str, out: &mut Vec<String>) {
    match (original, copy) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k} dropped")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

#[test]
fn every_example_round_trips() {
    let files = yaml_files(&examples_dir()).unwrap();
    assert!(files.len() >= 8, "examples are missing: {files:?}");
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for original in documents(&text, &path.display().to_string()).unwrap() {
            let typed = Manifest::from_value(original.clone())
                .unwrap_or_else(|(kind, e)| panic!("{}: {kind}: {e}", path.display()));
            *kinds.entry(typed.kind().to_owned()).or_default() += 1;
            let written = typed.to_value().unwrap();
            let mut problems = Vec::new();
            lost(&original, &written, "", &mut problems);
            assert!(
                problems.is_empty(),
                "{}: {}: lost {problems:?}",
                path.display(),
                typed.kind()
            );
            // Reading what was written gives the same object again.
            let again = Manifest::from_value(written).map_err(|(_, e)| e).unwrap();
            assert_eq!(again, typed);
        }
    }
    let want = [
        ("Cooperative", 1),
        ("Member", 5),
        ("Customer", 1),
        ("ComputePool", 1),
        ("InferenceModel", 2),
        ("Proposal", 1),
        ("Delegation", 1),
        ("Allocation", 1),
    ];
    for (kind, n) in want {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) >= n,
            "want at least {n} {kind}: {kinds:?}"
        );
    }
}

#[test]
fn the_examples_describe_the_small_coop() {
    let all = load_dir(&examples_dir()).unwrap();
    let members: Vec<_> = all
        .iter()
        .filter_map(|m| match m {
            Manifest::Member(m) => Some(m),
            _ => None,
        })
        .collect();
    use synco_crds::OrganisationKind::{LocalBusiness, School};
    assert!(members.iter().any(|m| m.spec.organisation == School));
    assert!(members.iter().any(|m| m.spec.organisation == LocalBusiness));
    let classes: std::collections::BTreeSet<_> = members.iter().map(|m| m.spec.class.as_str()).collect();
    assert!(classes.len() >= 2, "one member is in another class");
    for delegation in all.iter().filter_map(|m| match m {
        Manifest::Delegation(d) => Some(d),
        _ => None,
    }) {
        let name = delegation.metadata.name.clone().unwrap();
        assert_eq!(
            name, delegation.spec.member,
            "a delegation is named after its member"
        );
        assert!(
            members
                .iter()
                .any(|m| m.metadata.name.as_deref() == Some(&delegation.spec.delegate))
        );
    }
}

#[test]
fn a_field_the_types_do_not_know_is_reported_lost() {
    // Guards the round-trip check itself: an unknown field must be caught.
    let original: Value = serde_json::json!({
        "apiVersion": "synco.coop/v1alpha1", "kind": "Customer",
        "metadata": {"name": "x"},
        "spec": {"displayName": "X", "identity": "x", "billing": "Invoiced", "discountPercent": 5}
    });
    let written = Manifest::from_value(original.clone())
        .map_err(|(_, e)| e)
        .unwrap()
        .to_value()
        .unwrap();
    let mut problems = Vec::new();
    lost(&original, &written, "", &mut problems);
    assert_eq!(problems, vec![".spec.discountPercent dropped".to_owned()]);
}

#[test]
fn bad_manifests_get_clear_errors() {
    let err = synco_crds::manifests::parse("apiVersion: v1\nkind: ConfigMap\n", "t").unwrap_err();
    assert!(err.to_string().contains("is not synco.coop/v1alpha1"), "{err}");
    let err =
        synco_crds::manifests::parse("apiVersion: synco.coop/v1alpha1\nkind: Party\n", "t").unwrap_err();
    assert!(err.to_string().contains("unknown kind \"Party\""), "{err}");
    let err = synco_crds::manifests::parse(
        "apiVersion: synco.coop/v1alpha1\nkind: Vote\nmetadata: {name: p-m}\nspec: {proposal: p, member: m, position: Maybe}\n",
        "t",
    )
    .unwrap_err();
    assert!(err.to_string().contains("Vote p-m"), "{err}");
    let err = synco_crds::manifests::parse("a: [", "t").unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
}
