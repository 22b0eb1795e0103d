//! A tiny random-weight model folder, for offline trials and tests.
//!
//! It is a real Llama-architecture model in Hugging Face layout, so mistral.rs loads
//! it through exactly the path a downloaded model takes:
//!
//! - `config.json`: 2 layers, hidden size 64, grouped-query attention;
//! - `model.safetensors`: random weights (seeded, so the folder is reproducible);
//! - `tokenizer.json`: byte-level BPE with no merges, so any text tokenizes to one
//!   token per byte, plus a few special tokens;
//! - `tokenizer_config.json` with a small chat template, and `generation_config.json`.
//!
//! What it says is noise; that it answers, streams, stops and counts tokens is what
//! it is for.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

/// Shape of the generated model.
#[derive(Debug, Clone)]
pub struct TinyModelOptions {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate_size: usize,
    pub seed: u64,
}

impl Default for TinyModelOptions {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate_size: 128,
            seed: 42,
        }
    }
}

/// The special tokens, after the 256 byte tokens.
const SPECIAL: [&str; 6] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
];
const BOS: u32 = 256;
const EOS: u32 = 257;
const END: u32 = 261;

/// The chat template: `<|role|>content<|end|>` per message.
const CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

fn vocab_size() -> usize {
    256 + SPECIAL.len()
}

fn check(options: &TinyModelOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.hidden_size.is_multiple_of(options.heads) && options.heads.is_multiple_of(options.kv_heads),
        "hidden size must divide by heads, and heads by kv heads"
    );
    Ok(())
}

/// Writes the model folder at `dir` (created if missing; files are overwritten).
pub fn write(dir: &Path, options: &TinyModelOptions) -> anyhow::Result<()> {
    check(options)?;
    std::fs::create_dir_all(dir)?;
    write_json(&dir.join("config.json"), &config(options))?;
    write_json(&dir.join("tokenizer.json"), &tokenizer(false))?;
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config())?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"bos_token_id": BOS, "eos_token_id": [EOS, END]}),
    )?;
    write_weights(&dir.join("model.safetensors"), &text_tensors(options), options)?;
    Ok(())
}

/// Writes a tiny embedding model at `dir`: a Qwen3 architecture (as Qwen3-Embedding)
/// in sentence-transformers layout (`modules.json`: the transformer, last-token
/// pooling, normalisation), with the same byte-level tokenizer, which appends the
/// end-of-text token as Qwen3-Embedding's does. Its vectors are unit-length noise,
/// but the same text always gives the same vector.
pub fn write_embedding(dir: &Path, options: &TinyModelOptions) -> anyhow::Result<()> {
    check(options)?;
    std::fs::create_dir_all(dir.join("1_Pooling"))?;
    write_json(&dir.join("config.json"), &embedding_config(options))?;
    write_json(&dir.join("tokenizer.json"), &tokenizer(true))?;
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config())?;
    write_json(
        &dir.join("modules.json"),
        &json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        ]),
    )?;
    write_json(
        &dir.join("1_Pooling").join("config.json"),
        &json!({
            "word_embedding_dimension": options.hidden_size,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": false,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": true,
            "include_prompt": true
        }),
    )?;
    write_weights(
        &dir.join("model.safetensors"),
        &embedding_tensors(options),
        options,
    )?;
    Ok(())
}

/// Whether `dir` already holds a generated model.
pub fn exists(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// Whether `dir` already holds a generated embedding model.
pub fn embedding_exists(dir: &Path) -> bool {
    exists(dir) && dir.join("modules.json").is_file()
}

fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

fn config(o: &TinyModelOptions) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": o.hidden_size,
        "intermediate_size": o.intermediate_size,
        "vocab_size": vocab_size(),
        "num_hidden_layers": o.layers,
        "num_attention_heads": o.heads,
        "num_key_value_heads": o.kv_heads,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": false,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "torch_dtype": "float32",
    })
}

fn embedding_config(o: &TinyModelOptions) -> Value {
    json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_act": "silu",
        "hidden_size": o.hidden_size,
        "intermediate_size": o.intermediate_size,
        "vocab_size": vocab_size(),
        "num_hidden_layers": o.layers,
        "num_attention_heads": o.heads,
        "num_key_value_heads": o.kv_heads,
        "head_dim": o.hidden_size / o.heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 2048,
        "max_window_layers": o.layers,
        "use_sliding_window": false,
        "sliding_window": null,
        "tie_word_embeddings": true,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "torch_dtype": "float32",
    })
}

/// GPT-2's reversible map from bytes to printable characters, used by byte-level BPE.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(code).unwrap_or('?')
        })
        .collect()
}

/// The byte-level tokenizer; with `append_eos`, every encoded text ends with the
/// end-of-text token (what an embedding model's last-token pooling reads).
fn tokenizer(append_eos: bool) -> Value {
    let vocab: BTreeMap<String, u32> = byte_chars()
        .into_iter()
        .zip(0u32..)
        .map(|(c, id)| (c.to_string(), id))
        .collect();
    let added: Vec<Value> = SPECIAL
        .iter()
        .zip(BOS..)
        .map(|(content, id)| {
            json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": if append_eos { eos_appender() } else { Value::Null },
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": []
        }
    })
}

fn eos_appender() -> Value {
    let eos = SPECIAL[1];
    json!({
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [
            {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": eos, "type_id": 1}}
        ],
        "special_tokens": {eos: {"id": eos, "ids": [EOS], "tokens": [eos]}}
    })
}

fn tokenizer_config() -> Value {
    let decoder: serde_json::Map<String, Value> = SPECIAL
        .iter()
        .zip(BOS..)
        .map(|(content, id)| {
            (
                id.to_string(),
                json!({"content": content, "lstrip": false, "normalized": false,
                       "rstrip": false, "single_word": false, "special": true}),
            )
        })
        .collect();
    json!({
        "add_bos_token": false,
        "add_eos_token": false,
        "added_tokens_decoder": decoder,
        "bos_token": SPECIAL[0],
        "eos_token": SPECIAL[1],
        "pad_token": SPECIAL[1],
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 2048,
        "tokenizer_class": "PreTrainedTokenizerFast"
    })
}

/// The output layer only ever favours printable ASCII and the end tokens: their rows
/// are large, every other row is zero, so other tokens' logits (zero) are dwarfed.
/// The model's text is then valid UTF-8, so streamed chunks and finish reasons come
/// out as with a real model.
fn lm_head_weight(rng: &mut StdRng, token: usize) -> f32 {
    let printable = (0x20..0x7f).contains(&token);
    let ends = token == EOS as usize || token == END as usize;
    if printable || ends {
        rng.random_range(-2.0..2.0)
    } else {
        0.0
    }
}

/// A tensor's name, its shape and whether it is a norm's weight (all ones).
type Shape = (String, Vec<usize>, bool);

/// One decoder layer's tensors under `p` (Llama and Qwen3 share the names; Qwen3
/// adds the per-head query and key norms).
fn layer_tensors(p: &str, o: &TinyModelOptions, qk_norms: bool) -> Vec<Shape> {
    let h = o.hidden_size;
    let kv = o.kv_heads * (h / o.heads);
    let i = o.intermediate_size;
    let mut shapes = vec![
        (format!("{p}.input_layernorm.weight"), vec![h], true),
        (format!("{p}.post_attention_layernorm.weight"), vec![h], true),
        (format!("{p}.self_attn.q_proj.weight"), vec![h, h], false),
        (format!("{p}.self_attn.k_proj.weight"), vec![kv, h], false),
        (format!("{p}.self_attn.v_proj.weight"), vec![kv, h], false),
        (format!("{p}.self_attn.o_proj.weight"), vec![h, h], false),
        (format!("{p}.mlp.gate_proj.weight"), vec![i, h], false),
        (format!("{p}.mlp.up_proj.weight"), vec![i, h], false),
        (format!("{p}.mlp.down_proj.weight"), vec![h, i], false),
    ];
    if qk_norms {
        let head = h / o.heads;
        shapes.push((format!("{p}.self_attn.q_norm.weight"), vec![head], true));
        shapes.push((format!("{p}.self_attn.k_norm.weight"), vec![head], true));
    }
    shapes
}

fn text_tensors(o: &TinyModelOptions) -> Vec<Shape> {
    let (h, v) = (o.hidden_size, vocab_size());
    let mut shapes = vec![
        ("model.embed_tokens.weight".into(), vec![v, h], false),
        ("model.norm.weight".into(), vec![h], true),
        ("lm_head.weight".into(), vec![v, h], false),
    ];
    for l in 0..o.layers {
        shapes.extend(layer_tensors(&format!("model.layers.{l}"), o, false));
    }
    shapes
}

/// Qwen3-Embedding's names carry no `model.` prefix, and it has no output layer.
fn embedding_tensors(o: &TinyModelOptions) -> Vec<Shape> {
    let (h, v) = (o.hidden_size, vocab_size());
    let mut shapes = vec![
        ("embed_tokens.weight".into(), vec![v, h], false),
        ("norm.weight".into(), vec![h], true),
    ];
    for l in 0..o.layers {
        shapes.extend(layer_tensors(&format!("layers.{l}"), o, true));
    }
    shapes
}

fn write_weights(path: &Path, shapes: &[Shape], o: &TinyModelOptions) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let h = o.hidden_size;
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .iter()
        .map(|(name, shape, is_norm)| {
            let n: usize = shape.iter().product();
            let lm_head = name == "lm_head.weight";
            let bytes = (0..n)
                .flat_map(|i| {
                    let x: f32 = if *is_norm {
                        1.0
                    } else if lm_head {
                        lm_head_weight(&mut rng, i / h)
                    } else {
                        rng.random_range(-0.08..0.08)
                    };
                    x.to_le_bytes()
                })
                .collect();
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, None, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let chars = byte_chars();
        let unique: std::collections::BTreeSet<_> = chars.iter().collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(unique.len(), 256);
        assert_eq!(chars[usize::from(b'A')], 'A');
        assert_eq!(chars[usize::from(b' ')], 'Ġ');
    }

    #[test]
    fn writes_a_loadable_looking_folder() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &TinyModelOptions::default()).unwrap();
        assert!(exists(dir.path()));
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            tensors.tensor("lm_head.weight").unwrap().shape(),
            &[vocab_size(), 64]
        );
    }

    #[test]
    fn writes_an_embedding_model_in_sentence_transformers_layout() {
        let dir = tempfile::tempdir().unwrap();
        write_embedding(dir.path(), &TinyModelOptions::default()).unwrap();
        assert!(embedding_exists(dir.path()));
        assert!(!embedding_exists(&dir.path().join("1_Pooling")));
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            tensors.tensor("embed_tokens.weight").unwrap().shape(),
            &[vocab_size(), 64]
        );
        assert_eq!(
            tensors
                .tensor("layers.1.self_attn.k_norm.weight")
                .unwrap()
                .shape(),
            &[16]
        );
        assert!(tensors.tensor("lm_head.weight").is_err());
        let modules: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("modules.json")).unwrap()).unwrap();
        assert_eq!(modules[1]["path"], "1_Pooling");
        let tokenizer: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("tokenizer.json")).unwrap()).unwrap();
        assert_eq!(
            tokenizer["post_processor"]["special_tokens"][SPECIAL[1]]["ids"][0],
            EOS
        );
    }
}
