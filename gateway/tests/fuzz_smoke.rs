//! The fuzz targets' smoke run, in the ordinary suite (seconds): every input of the
//! committed corpora (`gateway/fuzz/corpus/<target>/`, seeds and what libFuzzer kept)
//! goes through the target's function, and so do a few thousand mutations of them
//! (bytes flipped, cut, repeated, spliced), drawn from a fixed seed so that a failure
//! replays. The long runs are libFuzzer's (`cargo +nightly fuzz run`, see the README).

#![expect(clippy::panic, reason = "tests: a missing corpus fails loudly")]

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("openai_body", synco_gateway::fuzzing::openai_body),
    ("sse_stream", synco_gateway::fuzzing::sse_stream),
    ("jwt", synco_gateway::fuzzing::jwt),
    ("manifests", synco_gateway::fuzzing::manifests),
    ("governance", synco_gateway::fuzzing::governance),
];

/// Mutations per target.
const MUTATIONS: usize = 20_000;

/// xorshift64*: a fixed sequence, so that a failing input is found again.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// Bytes that parsers care about.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\n",
    b"\r\n",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"null",
    b"true",
    b"data: ",
    b"[DONE]",
    b"---\n",
    b"&a ",
    b"*a",
];

fn mutate(d: &mut Draw, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut input = corpus[d.below(corpus.len())].clone();
    for _ in 0..=d.below(4) {
        let at = d.below(input.len() + 1);
        match d.below(6) {
            0 if !input.is_empty() => {
                let i = d.below(input.len());
                input[i] ^= 1 << d.below(8);
            }
            1 => input.truncate(at),
            2 => {
                let piece = INTERESTING[d.below(INTERESTING.len())];
                input.splice(at..at, piece.iter().copied());
            }
            3 if !input.is_empty() => {
                let from = d.below(input.len());
                let to = (from + d.below(64)).min(input.len());
                let piece: Vec<u8> = input[from..to].to_vec();
                input.splice(at..at, piece);
            }
            4 => {
                let other = &corpus[d.below(corpus.len())];
                let from = d.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ => input.insert(at.min(input.len()), u8::try_from(d.below(256)).unwrap_or(0)),
        }
    }
    input
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    for (name, target) in TARGETS {
        let inputs = corpus(name);
        assert!(
            inputs.len() >= 3,
            "{name}: the corpus has {} inputs",
            inputs.len()
        );
        for input in &inputs {
            target(input);
        }
        let mut draw = Draw(0x5EED_0000 + name.len() as u64);
        for _ in 0..MUTATIONS {
            let input = mutate(&mut draw, &inputs);
            let caught = std::panic::catch_unwind(|| target(&input));
            assert!(
                caught.is_ok(),
                "{name} panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
