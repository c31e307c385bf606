//! Arbitrary bytes as a flow file never panic the loader: a deterministic property test
//! over random bytes and random mutations of real flows.

use illumo_engine::{Flow, Source};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ALPHABET: &[u8] = b"abc:{}[]-,>|&()$.\"'\n #*&!?%@`~{{}}0123456789 \t\\";

fn examples() -> Vec<String> {
    let dir = crate::support::root().join("examples/basics");
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    texts.sort();
    texts
}

#[test]
fn arbitrary_bytes_never_panic_the_loader() {
    let registry = illumo_nodes::builtin_registry();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let seeds = examples();
    let mut loaded = 0;
    for round in 0..3000 {
        let bytes: Vec<u8> = if round % 3 == 0 {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = seeds[rng.below(seeds.len())].clone().into_bytes();
            for _ in 0..=rng.below(6) {
                let at = rng.below(b.len().max(1));
                match rng.below(3) {
                    0 if !b.is_empty() => {
                        b.remove(at.min(b.len() - 1));
                    }
                    1 if rng.below(4) == 0 => {
                        // Multi-byte text: paths, keys and templates must not slice it apart.
                        let wide = ["é", "€", "日本", "🙂"][rng.below(4)].as_bytes();
                        let at = at.min(b.len());
                        b.splice(at..at, wide.iter().copied());
                    }
                    1 => b.insert(at.min(b.len()), ALPHABET[rng.below(ALPHABET.len())]),
                    _ if !b.is_empty() => {
                        let i = at.min(b.len() - 1);
                        b[i] = ALPHABET[rng.below(ALPHABET.len())];
                    }
                    _ => {}
                }
            }
            b
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let source = Source::new("fuzz.yaml", text);
        match Flow::load(source, &registry) {
            Ok(_) => loaded += 1,
            Err(e) => {
                // Every place reported is in the text: a line that exists, a column on it
                // (or just past its end, for "the value ends too early").
                let lines = e.source.text.lines().count().max(1);
                for d in &e.diagnostics {
                    assert!(!d.message.is_empty(), "round {round}: an empty message");
                    if let Some((line, column)) = e.source.position(d) {
                        let width = e.source.line(line).chars().count();
                        assert!(
                            line >= 1 && line <= lines + 1 && column >= 1 && column <= width + 2,
                            "round {round}: `{}` at {line}:{column}, outside the text ({lines} lines, line {line} has {width} characters)\n{}",
                            d.message,
                            e.source.text
                        );
                    }
                }
                // Rendering must not panic either, and shows each diagnostic once.
                let rendered = e.source.render_all(&e.diagnostics, false);
                let shown = rendered.matches("\nerror: ").count()
                    + usize::from(rendered.starts_with("error: "));
                let errors = e.diagnostics.iter().filter(|d| d.is_error()).count();
                assert_eq!(
                    shown,
                    errors + 1,
                    "round {round}: each error and the count line\n{rendered}"
                );
            }
        }
    }
    assert!(loaded > 0, "some mutations should still be valid flows");
}

#[test]
fn every_example_loads_unchanged() {
    let registry = illumo_nodes::builtin_registry();
    for text in examples() {
        let flow = Flow::load(Source::new("example.yaml", text), &registry);
        assert!(
            flow.as_ref().map(|f| f.warnings.len()).ok() == Some(0),
            "{:?}",
            flow.err().map(|e| e.to_string())
        );
    }
}
