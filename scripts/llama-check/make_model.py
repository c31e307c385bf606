"""Write a tiny llama-architecture GGUF model with random weights.

    python make_model.py VOCAB.gguf OUT.gguf

The tokenizer (every `tokenizer.*` key) is copied from VOCAB.gguf, one of the
vocab-only files that llama.cpp ships under models/ (ggml-vocab-llama-spm.gguf).
The weights are drawn from a fixed seed, so OUT.gguf is the same file every time.
The model knows nothing: it writes gibberish. It is only big enough for llama.cpp
to load it and generate, which is all the check needs.

One thing is not random: the tokens that hold `"` or `}`, and the token `0`, get a
constant logit bonus (through one embedding dimension that is the same for every
token). A random model under a JSON grammar otherwise tends to write a string until
max_tokens (a cut-off reply) or a number such as `-9` where the RouterAgent's schema
wants 0..1 (the grammar does not enforce number ranges). With the bonus, strings and
the object close after a token or two and numbers come out as `0`, so the
RouterAgent's `{"choice", "confidence", "reason"}` reply is short and valid. Which
choice it picks is still up to the random weights.
"""

import sys

import numpy as np
import gguf

SEED = 1234
N_LAYER = 2
N_EMBD = 64
N_HEAD = 4
N_FF = 128
N_CTX = 256
STD = 0.02
BIAS = 2.0  # logit bonus for tokens holding `"` or `}`, and for `0`


def main() -> None:
    vocab_path, out_path = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(vocab_path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    n_vocab = len(tokens)

    writer = gguf.GGUFWriter(out_path, "llama")
    writer.add_name("illumo-llama-check-random")
    writer.add_block_count(N_LAYER)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type)

    rng = np.random.default_rng(SEED)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * STD).astype(np.float32)

    # numpy shapes are (rows, cols) = ggml's ne reversed.
    embd = rand(n_vocab, N_EMBD)
    embd[:, 0] = 1.0  # a constant direction that survives to the last norm
    writer.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_output.weight", rand(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    output = rand(n_vocab, N_EMBD)
    output[:, 0] = 0.0
    # After the final RMS norm the constant dimension is about sqrt(N_EMBD).
    for t, text in enumerate(tokens):
        if '"' in text or "}" in text or text == "0":
            output[t, 0] = BIAS / np.sqrt(N_EMBD)
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {out_path}: llama, {N_LAYER} layers, embedding {N_EMBD}, "
          f"{N_HEAD} heads, context {N_CTX}, vocab {n_vocab} from {vocab_path}")


if __name__ == "__main__":
    main()
