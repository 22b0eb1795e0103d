//! Several replicas of one external engine, and which one a request goes to.
//!
//! **Prefix routing** (after KubeAI's PrefixHash, consistent hashing with bounded
//! loads): the first [`PREFIX_BYTES`] of the prompt (the messages as sent, so a shared
//! system prompt is a shared prefix) are hashed onto a ring of the replicas' virtual
//! nodes, and the request goes to the first replica clockwise whose requests in flight
//! stay within [`LOAD_BOUND`] times the average. Requests with the same prefix thus meet
//! the replica whose prompt cache already holds it, unless it is overloaded. The hash
//! is the same in every gateway process of a build, so replicas of the gateway agree.
//!
//! **Least load**: the replica with the fewest requests in flight (ties: the first).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;

use super::external::ExternalEngine;
use super::{Engine, PromptRef, Reply};
use crate::error::ApiError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest,
    EmbeddingsResponse, TextCompletion,
};

/// How much of the prompt routes a request.
pub const PREFIX_BYTES: usize = 256;

/// A replica may hold this many times the average requests in flight (plus one),
/// plus [`SLACK`], before a request that hashes to it moves on.
pub const LOAD_BOUND: f64 = 1.25;

/// Requests in flight a replica may hold beyond the bound's factor: an engine batches
/// a few more requests at almost no cost, while moving a request off its prefix's
/// replica costs a whole prompt's prefill (and evicts a prompt from another cache).
/// Without it, a handful of requests in flight (an average of two, say) leave no room
/// at all: measured in `external_engine`'s prefix test, 1.25 alone kept a 70% hit rate
/// where 95% was possible.
pub const SLACK: usize = 4;

/// Virtual nodes per replica on the ring.
const VIRTUAL_NODES: usize = 64;

/// How requests are spread over replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Routing {
    /// Consistent hashing with bounded loads on the prompt's prefix.
    #[default]
    Prefix,
    /// The replica with the fewest requests in flight.
    LeastLoad,
}

fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    // SipHash with fixed keys: the same in every process of a build.
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The replicas of one model.
#[derive(Debug)]
pub struct Replicas {
    engines: Vec<Arc<ExternalEngine>>,
    in_flight: Vec<AtomicUsize>,
    /// (point, replica), sorted by point.
    ring: Vec<(u64, usize)>,
    routing: Routing,
    model: String,
}

/// A request in flight on a replica; counted down when dropped.
struct Held {
    replicas: Arc<Replicas>,
    index: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.replicas.in_flight[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The routing key of a prompt: its first [`PREFIX_BYTES`] as sent.
fn prefix(prompt: PromptRef<'_>) -> Vec<u8> {
    let mut bytes = match prompt {
        PromptRef::Chat(req) => serde_json::to_vec(&req.messages),
        PromptRef::Completion(req) => serde_json::to_vec(&req.prompt),
        PromptRef::Embeddings(req) => serde_json::to_vec(&req.input),
    }
    .unwrap_or_default();
    bytes.truncate(PREFIX_BYTES);
    bytes
}

impl Replicas {
    /// `engines`: one per replica, with their base URLs as names (for the ring).
    pub fn new(model: &str, engines: Vec<(String, Arc<ExternalEngine>)>, routing: Routing) -> Arc<Self> {
        let mut ring: Vec<(u64, usize)> = engines
            .iter()
            .enumerate()
            .flat_map(|(i, (url, _))| (0..VIRTUAL_NODES).map(move |v| (hash(&(url.as_str(), v)), i)))
            .collect();
        ring.sort_unstable();
        Arc::new(Self {
            in_flight: engines.iter().map(|_| AtomicUsize::new(0)).collect(),
            engines: engines.into_iter().map(|(_, e)| e).collect(),
            ring,
            routing,
            model: model.to_owned(),
        })
    }

    fn load(&self, i: usize) -> usize {
        self.in_flight[i].load(Ordering::Relaxed)
    }

    fn least_loaded(&self) -> usize {
        (0..self.engines.len()).min_by_key(|&i| self.load(i)).unwrap_or(0)
    }

    /// The replica for a request whose routing key is `key`.
    pub fn pick(&self, key: &[u8]) -> usize {
        let n = self.engines.len();
        if n <= 1 {
            return 0;
        }
        if self.routing == Routing::LeastLoad || key.is_empty() {
            return self.least_loaded();
        }
        let total: usize = (0..n).map(|i| self.load(i)).sum();
        let bound = (LOAD_BOUND * (total + 1) as f64 / n as f64).ceil() as usize + SLACK;
        let h = hash(key);
        let start = self.ring.partition_point(|(point, _)| *point < h);
        (0..self.ring.len())
            .map(|k| self.ring[(start + k) % self.ring.len()].1)
            .find(|&i| self.load(i) < bound)
            .unwrap_or_else(|| self.least_loaded())
    }

    /// Chooses a replica for `prompt` and counts the request on it.
    fn hold(self: &Arc<Self>, prompt: PromptRef<'_>) -> (Arc<ExternalEngine>, Held) {
        let index = self.pick(&prefix(prompt));
        self.in_flight[index].fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "synco_gateway_replica_requests_total",
            "model" => self.model.clone(),
            "replica" => index.to_string()
        )
        .increment(1);
        (
            self.engines[index].clone(),
            Held {
                replicas: self.clone(),
                index,
            },
        )
    }
}

/// Keeps `held` until the reply is over: at once for a whole answer, at the end of the
/// stream for a stream.
fn holding<F, C: Send + 'static>(reply: Reply<F, C>, held: Held) -> Reply<F, C> {
    match reply {
        Reply::Full(full) => Reply::Full(full),
        Reply::Stream(chunks) => Reply::Stream(
            chunks
                .map(move |item| {
                    let _ = &held;
                    item
                })
                .boxed(),
        ),
    }
}

/// The engine over the replicas (it needs the shared `Arc` to count requests).
#[derive(Debug, Clone)]
pub struct ReplicatedEngine(pub Arc<Replicas>);

#[async_trait]
impl Engine for ReplicatedEngine {
    fn kind(&self) -> &'static str {
        "external"
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<Reply<ChatCompletion, ChatCompletionChunk>, ApiError> {
        let (engine, held) = self.0.hold(PromptRef::Chat(&req));
        Ok(holding(engine.chat(req).await?, held))
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<Reply<TextCompletion, TextCompletion>, ApiError> {
        let (engine, held) = self.0.hold(PromptRef::Completion(&req));
        Ok(holding(engine.completion(req).await?, held))
    }

    async fn embeddings(&self, req: EmbeddingsRequest) -> Result<EmbeddingsResponse, ApiError> {
        let (engine, _held) = self.0.hold(PromptRef::Embeddings(&req));
        engine.embeddings(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::external::ExternalOptions;

    fn replicas(n: usize, routing: Routing) -> Arc<Replicas> {
        let engines = (0..n)
            .map(|i| {
                let url = format!("http://127.0.0.1:{}/v1", 9000 + i);
                (
                    url.clone(),
                    Arc::new(ExternalEngine::new(ExternalOptions::new(url)).unwrap()),
                )
            })
            .collect();
        Replicas::new("m", engines, routing)
    }

    /// The same prefix goes to the same replica; prefixes spread over all replicas;
    /// a replica past the load bound passes its requests on.
    #[test]
    fn a_prefix_sticks_to_a_replica_within_the_load_bound() {
        let r = replicas(4, Routing::Prefix);
        let keys: Vec<Vec<u8>> = (0..64)
            .map(|i| format!("system prompt {i}").into_bytes())
            .collect();
        let first: Vec<usize> = keys.iter().map(|k| r.pick(k)).collect();
        assert_eq!(first, keys.iter().map(|k| r.pick(k)).collect::<Vec<_>>());
        for i in 0..4 {
            assert!(first.contains(&i), "replica {i} gets some prefixes: {first:?}");
        }
        // Load the replica of key 0 past the bound: key 0 moves, to a less loaded one.
        let home = first[0];
        r.in_flight[home].store(10 + SLACK, Ordering::Relaxed);
        let moved = r.pick(&keys[0]);
        assert_ne!(moved, home);
        r.in_flight[home].store(0, Ordering::Relaxed);
        assert_eq!(r.pick(&keys[0]), home, "back once the load falls");
        // The same ring in another process of this build: the same choice.
        assert_eq!(replicas(4, Routing::Prefix).pick(&keys[0]), home);
    }

    #[test]
    fn least_load_takes_the_idlest_replica() {
        let r = replicas(3, Routing::LeastLoad);
        r.in_flight[0].store(2, Ordering::Relaxed);
        r.in_flight[1].store(1, Ordering::Relaxed);
        r.in_flight[2].store(3, Ordering::Relaxed);
        assert_eq!(r.pick(b"anything"), 1);
        let one = replicas(1, Routing::Prefix);
        assert_eq!(one.pick(b"x"), 0);
    }
}
