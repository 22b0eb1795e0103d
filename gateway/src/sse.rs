//! Turning an engine's chunk stream into OpenAI's server-sent events.
//!
//! - every chunk carries the gateway's response id and the served model name;
//! - usage is taken off the chunks for metering, and sent to the caller as one last
//!   chunk with no choices only when it asked (`stream_options.include_usage`);
//! - an engine error mid-stream becomes `data: {"error": {...}}`;
//! - the stream always ends with `data: [DONE]`;
//! - comments keep idle connections open through proxies.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;

use crate::engine::ChunkStream;
use crate::openai::{ChatCompletionChunk, TextCompletion, Usage};
use crate::usage::{Outcome, UsageGuard};

/// A streamed chunk type.
pub trait Chunk: Serialize + Send + 'static {
    /// Takes the usage off the chunk.
    fn take_usage(&mut self) -> Option<Usage>;
    /// Number of choices with generated content in this chunk.
    fn pieces(&self) -> u64;
    fn has_choices(&self) -> bool;
    fn stamp(&mut self, id: &str, model: &str);
    /// A chunk with no choices carrying only `usage`, shaped after `self`.
    fn usage_only(&self, usage: Usage) -> Self;
}

impl Chunk for ChatCompletionChunk {
    fn take_usage(&mut self) -> Option<Usage> {
        self.usage.take()
    }
    fn pieces(&self) -> u64 {
        self.choices
            .iter()
            .filter(|c| {
                c.delta
                    .get("content")
                    .and_then(|v| v.as_str())
                    .is_some_and(|s| !s.is_empty())
            })
            .count() as u64
    }
    fn has_choices(&self) -> bool {
        !self.choices.is_empty()
    }
    fn stamp(&mut self, id: &str, model: &str) {
        id.clone_into(&mut self.id);
        model.clone_into(&mut self.model);
    }
    fn usage_only(&self, usage: Usage) -> Self {
        Self {
            id: self.id.clone(),
            object: self.object.clone(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
            extra: serde_json::Map::new(),
        }
    }
}

impl Chunk for TextCompletion {
    fn take_usage(&mut self) -> Option<Usage> {
        self.usage.take()
    }
    fn pieces(&self) -> u64 {
        self.choices.iter().filter(|c| !c.text.is_empty()).count() as u64
    }
    fn has_choices(&self) -> bool {
        !self.choices.is_empty()
    }
    fn stamp(&mut self, id: &str, model: &str) {
        id.clone_into(&mut self.id);
        model.clone_into(&mut self.model);
    }
    fn usage_only(&self, usage: Usage) -> Self {
        Self {
            id: self.id.clone(),
            object: self.object.clone(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
            extra: serde_json::Map::new(),
        }
    }
}

struct State<C> {
    chunks: ChunkStream<C>,
    guard: UsageGuard,
    id: String,
    model: String,
    include_usage: bool,
    last: Option<C>,
    phase: Phase,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Streaming,
    Usage,
    Done,
    Over,
}

fn data<T: Serialize>(value: &T) -> Event {
    match serde_json::to_string(value) {
        Ok(json) => Event::default().data(json),
        Err(e) => Event::default()
            .data(crate::error::ApiError::Engine(format!("cannot encode chunk: {e}")).to_json()),
    }
}

/// The SSE response for a stream of chunks.
pub fn respond<C: Chunk>(
    chunks: ChunkStream<C>,
    guard: UsageGuard,
    id: String,
    model: String,
    include_usage: bool,
    keep_alive: Duration,
) -> Response {
    let state = State {
        chunks,
        guard,
        id,
        model,
        include_usage,
        last: None,
        phase: Phase::Streaming,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
            match st.phase {
                Phase::Streaming => match st.chunks.next().await {
                    Some(Ok(mut chunk)) => {
                        if let Some(usage) = chunk.take_usage() {
                            st.guard.add_reported(usage);
                        }
                        st.guard.count_generated(chunk.pieces());
                        if !chunk.has_choices() {
                            // A usage-only chunk: sent (rebuilt) at the end if asked for.
                            continue;
                        }
                        chunk.stamp(&st.id, &st.model);
                        let event = data(&chunk);
                        st.last = Some(chunk);
                        return Some((Ok::<Event, Infallible>(event), st));
                    }
                    Some(Err(error)) => {
                        st.guard.finish(Outcome::Failed(error.metric_label()));
                        st.phase = Phase::Done;
                        return Some((Ok(Event::default().data(error.to_json())), st));
                    }
                    None => {
                        st.guard.finish(Outcome::Completed);
                        st.phase = Phase::Usage;
                    }
                },
                Phase::Usage => {
                    st.phase = Phase::Done;
                    if st.include_usage
                        && let Some(last) = &st.last
                    {
                        let chunk = last.usage_only(st.guard.usage());
                        return Some((Ok(data(&chunk)), st));
                    }
                }
                Phase::Done => {
                    st.phase = Phase::Over;
                    return Some((Ok(Event::default().data("[DONE]")), st));
                }
                Phase::Over => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}
