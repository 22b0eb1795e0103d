//! What the fuzz targets (`gateway/fuzz`, cargo-fuzz) feed arbitrary bytes to: the
//! parsers that read what callers, upstream engines and operators send. Each runs the
//! same code the gateway runs and must end without a panic whatever the bytes; a
//! refusal is an answer, not a failure. `tests/fuzz_smoke.rs` replays the committed
//! corpora through them in the ordinary test suite.
//!
//! - [`openai_body`]: a chat, completion or embeddings body (the first byte picks
//!   which), parsed and checked as the handlers do, then written back as it is
//!   forwarded to an external engine;
//! - [`sse_stream`]: an external engine's event stream, cut into network reads where
//!   the input says, read as chat chunks up to `[DONE]`;
//! - [`jwt`]: a JWKS document and a token (split at the first newline), verified with
//!   the JWKS and with an HS256 secret;
//! - [`manifests`]: a standalone manifests file (multi-document YAML);
//! - [`governance`]: a proposal or a ballot as the API receives it (the first byte
//!   picks), checked and opened or accepted against a small co-op.

use std::sync::OnceLock;

use synco_crds::{Cooperative, Member, Proposal, ProposalSpec};
use synco_policies::crd::proposal as crd_lifecycle;
use synco_policies::lifecycle;

use crate::auth::jwt::JwtVerifier;
use crate::error::parse_json;
use crate::governance::ProposalRequest;
use crate::governance::views::BallotRequest;
use crate::openai::{ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest};

/// An OpenAI request body.
pub fn openai_body(data: &[u8]) {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(r) = parse_json::<ChatCompletionRequest>(body)
                && r.validate().is_ok()
            {
                let _ = serde_json::to_vec(&r);
                let _ = r.max_tokens();
            }
        }
        1 => {
            if let Ok(r) = parse_json::<CompletionRequest>(body)
                && r.validate().is_ok()
            {
                let _ = serde_json::to_vec(&r);
            }
        }
        _ => {
            if let Ok(r) = parse_json::<EmbeddingsRequest>(body) {
                let _ = serde_json::to_vec(&r);
            }
        }
    }
}

/// An external engine's server-sent events. Every byte 0xFF ends a network read (and
/// is not part of the stream), so that events, lines and UTF-8 sequences are split
/// across reads as a network splits them.
pub fn sse_stream(data: &[u8]) {
    let reads: Vec<Result<Vec<u8>, std::io::Error>> =
        data.split(|b| *b == 0xFF).map(|r| Ok(r.to_vec())).collect();
    let chunks =
        crate::engine::external::sse_chunks::<ChatCompletionChunk, _, _, _>(futures::stream::iter(reads));
    futures::executor::block_on(async {
        use futures::StreamExt as _;
        futures::pin_mut!(chunks);
        while let Some(chunk) = chunks.next().await {
            if let Ok(c) = chunk {
                let _ = serde_json::to_vec(&c);
            }
        }
    });
}

/// A JWKS document, a newline, and a bearer token.
pub fn jwt(data: &[u8]) {
    static HS256: OnceLock<JwtVerifier> = OnceLock::new();
    let text = String::from_utf8_lossy(data);
    let (jwks, token) = text.split_once('\n').unwrap_or(("", &text));
    let hs =
        HS256.get_or_init(|| JwtVerifier::hs256(b"fuzzing-secret", Some("iss".into()), Some("aud".into())));
    let _ = hs.verify(token);
    if let Ok(set) = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(jwks) {
        let _ = JwtVerifier::jwks(set, None, None).verify(token);
    }
}

/// A manifests file.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(all) = synco_crds::manifests::parse(text, "fuzz.yaml") {
        let objects = crate::coop::CoopObjects::from_manifests(&all);
        let _ = crate::coop::Coop::from_objects(&objects, &crate::coop::CoopOptions::default());
    }
}

/// The small co-op proposals and ballots are tried against: three members, majority
/// for allocations and free text, approval for model adoptions.
fn coop() -> &'static (Cooperative, Vec<Member>) {
    static COOP: OnceLock<(Cooperative, Vec<Member>)> = OnceLock::new();
    COOP.get_or_init(|| {
        let yaml = "apiVersion: synco.coop/v1alpha1\nkind: Cooperative\nmetadata: {name: c, namespace: c}\n\
            spec:\n  displayName: C\n  votingDefaults:\n\
            \x20   - {kind: ModelAdoption, method: Approval, votingPeriod: 1h}\n\
            \x20   - {kind: FreeText, method: RankedChoice, votingPeriod: 1h}\n\
            \x20 memberClasses: [{name: a, tier: 0}]\n";
        let mut all = synco_crds::manifests::parse(yaml, "coop.yaml").unwrap_or_default();
        for m in ["ana", "ben", "cleo"] {
            all.extend(
                synco_crds::manifests::parse(
                    &format!(
                        "apiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: {m}, namespace: c}}\n\
                         spec: {{displayName: {m}, class: a, identity: {m}}}\n"
                    ),
                    "member.yaml",
                )
                .unwrap_or_default(),
            );
        }
        let objects = crate::coop::CoopObjects::from_manifests(&all);
        let coop = objects.cooperatives.into_iter().next().unwrap_or_else(|| {
            Cooperative::new(
                "c",
                synco_crds::CooperativeSpec {
                    display_name: "C".into(),
                    voting_defaults: Vec::new(),
                    member_classes: Vec::new(),
                    surplus: None,
                    patronage: None,
                    peers: Vec::new(),
                    assistant: None,
                },
            )
        });
        (coop, objects.members)
    })
}

/// A proposal (first byte even) or a ballot on a question with three options.
pub fn governance(data: &[u8]) {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    let (coop, members) = coop();
    if which % 2 == 0 {
        let Ok(r) = parse_json::<ProposalRequest>(body) else {
            return;
        };
        let spec = ProposalSpec {
            kind: r.kind,
            title: r.title,
            body: r.body,
            proposer: "ana".into(),
            options: r.options,
            effect: r.effect,
            split: r.split,
        };
        if spec.check().is_ok()
            && let Ok(status) = crd_lifecycle::open(coop, members, &spec, 1_000_000, 7)
        {
            let mut p = Proposal::new("p", spec);
            p.status = Some(status);
            let _ = serde_json::to_vec(&p);
        }
        return;
    }
    static QUESTION: OnceLock<Option<(lifecycle::Opened, Vec<String>)>> = OnceLock::new();
    let Some((opened, options)) = QUESTION.get_or_init(|| {
        let spec: ProposalSpec = serde_json::from_value(serde_json::json!({
            "kind": "FreeText", "title": "Day", "proposer": "ana",
            "options": [{"name": "mon"}, {"name": "wed"}, {"name": "fri"}],
        }))
        .ok()?;
        let status = crd_lifecycle::open(coop, members, &spec, 1_000_000, 7).ok()?;
        Some((
            crd_lifecycle::opened(&status)?,
            crd_lifecycle::option_names(&spec),
        ))
    }) else {
        return;
    };
    if let Ok(b) = parse_json::<BallotRequest>(body) {
        let _ = lifecycle::accept_ballot(opened, options, "ben", &b.form(), false, 1_000_100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures open: a ballot that fits is accepted, so the target reaches the
    /// checks beyond parsing.
    #[test]
    fn the_fixtures_reach_past_parsing() {
        let (coop, members) = coop();
        assert_eq!(members.len(), 3);
        assert_eq!(coop.spec.voting_defaults.len(), 2);
        let spec: ProposalSpec = serde_json::from_value(serde_json::json!({
            "kind": "FreeText", "title": "Day", "proposer": "ana",
            "options": [{"name": "mon"}, {"name": "wed"}, {"name": "fri"}],
        }))
        .unwrap();
        let status = crd_lifecycle::open(coop, members, &spec, 1_000_000, 7).unwrap();
        let opened = crd_lifecycle::opened(&status).unwrap();
        let ballot: BallotRequest = serde_json::from_str(r#"{"ranking": ["wed", "mon"]}"#).unwrap();
        lifecycle::accept_ballot(
            &opened,
            &crd_lifecycle::option_names(&spec),
            "ben",
            &ballot.form(),
            false,
            1_000_100,
        )
        .unwrap();
    }
}
