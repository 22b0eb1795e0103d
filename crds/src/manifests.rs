//! Reading co-op manifests: the same YAML as the custom resources, from text or
//! a folder. Standalone mode loads its state this way, and the tests check that
//! every example survives a round trip through the types.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::{
    Allocation, ComputePool, Cooperative, Customer, Delegation, InferenceModel, Member, Proposal, Vote,
};

/// One Synco object of any kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifest {
    Cooperative(Box<Cooperative>),
    Member(Box<Member>),
    Customer(Box<Customer>),
    ComputePool(Box<ComputePool>),
    InferenceModel(Box<InferenceModel>),
    Proposal(Box<Proposal>),
    Vote(Box<Vote>),
    Delegation(Box<Delegation>),
    Allocation(Box<Allocation>),
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{origin}: document {index}: not valid YAML: {source}")]
    Yaml {
        origin: String,
        index: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("{origin}: document {index}: apiVersion {api_version:?} is not synco.coop/v1alpha1")]
    ApiVersion {
        origin: String,
        index: usize,
        api_version: String,
    },
    #[error("{origin}: document {index}: unknown kind {kind:?}")]
    UnknownKind {
        origin: String,
        index: usize,
        kind: String,
    },
    #[error("{origin}: document {index} ({kind} {name}): {source}")]
    Invalid {
        origin: String,
        index: usize,
        kind: String,
        name: String,
        source: serde_json::Error,
    },
}

impl Manifest {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cooperative(_) => "Cooperative",
            Self::Member(_) => "Member",
            Self::Customer(_) => "Customer",
            Self::ComputePool(_) => "ComputePool",
            Self::InferenceModel(_) => "InferenceModel",
            Self::Proposal(_) => "Proposal",
            Self::Vote(_) => "Vote",
            Self::Delegation(_) => "Delegation",
            Self::Allocation(_) => "Allocation",
        }
    }

    /// Converts a parsed document into a typed object.
    pub fn from_value(value: Value) -> Result<Self, (String, serde_json::Error)> {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        fn typed<T: for<'de> Deserialize<'de>>(v: Value) -> Result<Box<T>, serde_json::Error> {
            serde_json::from_value(v).map(Box::new)
        }
        let parsed = match kind.as_str() {
            "Cooperative" => typed(value).map(Self::Cooperative),
            "Member" => typed(value).map(Self::Member),
            "Customer" => typed(value).map(Self::Customer),
            "ComputePool" => typed(value).map(Self::ComputePool),
            "InferenceModel" => typed(value).map(Self::InferenceModel),
            "Proposal" => typed(value).map(Self::Proposal),
            "Vote" => typed(value).map(Self::Vote),
            "Delegation" => typed(value).map(Self::Delegation),
            "Allocation" => typed(value).map(Self::Allocation),
            _ => return Err((kind, serde::de::Error::custom("unknown kind"))),
        };
        parsed.map_err(|e| (kind, e))
    }

    /// Serialises the object back to JSON.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Self::Cooperative(o) => serde_json::to_value(o),
            Self::Member(o) => serde_json::to_value(o),
            Self::Customer(o) => serde_json::to_value(o),
            Self::ComputePool(o) => serde_json::to_value(o),
            Self::InferenceModel(o) => serde_json::to_value(o),
            Self::Proposal(o) => serde_json::to_value(o),
            Self::Vote(o) => serde_json::to_value(o),
            Self::Delegation(o) => serde_json::to_value(o),
            Self::Allocation(o) => serde_json::to_value(o),
        }
    }
}

/// Parses every YAML document in `text` as raw JSON values, skipping empty ones.
pub fn documents(text: &str, origin: &str) -> Result<Vec<Value>, ManifestError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|source| ManifestError::Yaml {
            origin: origin.to_owned(),
            index,
            source,
        })?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Parses every document in `text` into typed objects.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Manifest>, ManifestError> {
    documents(text, origin)?
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let api_version = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if api_version != "synco.coop/v1alpha1" {
                return Err(ManifestError::ApiVersion {
                    origin: origin.to_owned(),
                    index,
                    api_version: api_version.to_owned(),
                });
            }
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_owned();
            Manifest::from_value(value).map_err(|(kind, source)| {
                if source.to_string() == "unknown kind" {
                    ManifestError::UnknownKind {
                        origin: origin.to_owned(),
                        index,
                        kind,
                    }
                } else {
                    ManifestError::Invalid {
                        origin: origin.to_owned(),
                        index,
                        kind,
                        name,
                        source,
                    }
                }
            })
        })
        .collect()
}

/// The `.yaml` and `.yml` files of a folder, sorted by name.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |source| ManifestError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every manifest in a folder (not recursive), in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for path in yaml_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        out.extend(parse(&text, &path.display().to_string())?);
    }
    Ok(out)
}
