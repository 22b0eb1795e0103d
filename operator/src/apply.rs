//! Server-side apply with the operator's field manager, and the "nothing changed" test
//! that saves a status write when only timestamps would differ.

use kube::api::{Api, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "synco-operator";

/// Fields that record when something happened rather than what: two statuses that differ
/// only in these are the same.
const TIMESTAMP_FIELDS: [&str; 4] = ["lastTransitionTime", "decidedAt", "appliedAt", "effectiveFrom"];

/// Server-side apply parameters: the operator's field manager, forcing ownership of the
/// fields it sets (it is the only writer of what it applies).
#[must_use]
pub fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Removes timestamp fields everywhere in `v`.
fn without_timestamps(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for key in TIMESTAMP_FIELDS {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Whether `current` and `desired` differ in more than timestamps.
pub fn differs<S: Serialize>(current: Option<&S>, desired: &S) -> Result<bool> {
    let Some(current) = current else {
        return Ok(true);
    };
    Ok(without_timestamps(serde_json::to_value(current)?)
        != without_timestamps(serde_json::to_value(desired)?))
}

/// Applies `status` to `obj`'s status subresource, unless it differs from the current one
/// only in timestamps. Returns whether it wrote.
pub async fn status<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, desired: &S) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    if !differs(current, desired)? {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    api.patch_status(&obj.name_any(), &params(), &Patch::Apply(&patch))
        .await?;
    Ok(true)
}

/// Applies a whole object (its `apiVersion`, `kind` and `metadata.name` are set from `K`
/// and `name`).
pub async fn object<K>(api: &Api<K>, name: &str, mut obj: Value) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let map = obj
        .as_object_mut()
        .ok_or_else(|| Error::InvalidSpec("an applied object must be a JSON object".to_owned()))?;
    map.insert("apiVersion".to_owned(), json!(K::api_version(&())));
    map.insert("kind".to_owned(), json!(K::kind(&())));
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("name".to_owned(), json!(name));
    }
    Ok(api.patch(name, &params(), &Patch::Apply(&obj)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_alone_are_no_change() {
        let a = json!({"phase": "Open", "conditions": [{"type": "Ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}], "decidedAt": "x"});
        let b = json!({"phase": "Open", "conditions": [{"type": "Ready", "lastTransitionTime": "2026-02-01T00:00:00Z"}]});
        assert!(!differs(Some(&a), &b).unwrap());
        let c = json!({"phase": "Passed", "conditions": [{"type": "Ready"}]});
        assert!(differs(Some(&a), &c).unwrap());
        assert!(differs(None, &c).unwrap());
    }
}
