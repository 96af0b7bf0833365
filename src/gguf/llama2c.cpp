#include "gguf/llama2c.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "gguf/gguf_writer.h"

namespace kvsqueeze {
namespace {

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}'", path));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Sequential reader of float arrays with an end-of-file check.
class FloatReader {
 public:
  FloatReader(const std::vector<uint8_t>& buf, size_t pos, std::string path) : buf_(buf), pos_(pos), path_(std::move(path)) {}
  std::vector<float> take(int64_t n, const char* what) {
    const size_t bytes = static_cast<size_t>(n) * 4;
    if (bytes > buf_.size() - pos_)
      throw std::runtime_error(fmt::format("'{}' is truncated: {} needs {} bytes at offset {}", path_, what, bytes, pos_));
    std::vector<float> v(static_cast<size_t>(n));
    std::memcpy(v.data(), buf_.data() + pos_, bytes);
    pos_ += bytes;
    return v;
  }
  void skip(int64_t n, const char* what) { (void)take(n, what); }
  size_t remaining() const { return buf_.size() - pos_; }

 private:
  const std::vector<uint8_t>& buf_;
  size_t pos_;
  std::string path_;
};

struct Header {
  int32_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
};

}  // namespace

void convert_llama2c(const std::string& model_path, const std::string& tokenizer_path, const std::string& out_path) {
  const std::vector<uint8_t> model = slurp(model_path);
  if (model.size() < sizeof(Header)) throw std::runtime_error(fmt::format("'{}' is too small for a llama2.c header", model_path));
  Header h;
  std::memcpy(&h, model.data(), sizeof h);
  const bool shared_classifier = h.vocab > 0;
  const int32_t vocab = shared_classifier ? h.vocab : -h.vocab;
  auto bad = [&](const char* what, int64_t v) {
    return std::runtime_error(fmt::format("'{}' is not a llama2.c checkpoint: {} = {}", model_path, what, v));
  };
  if (h.dim <= 0 || h.dim > (1 << 16)) throw bad("dim", h.dim);
  if (h.hidden <= 0 || h.hidden > (1 << 18)) throw bad("hidden_dim", h.hidden);
  if (h.n_layers <= 0 || h.n_layers > 1024) throw bad("n_layers", h.n_layers);
  if (h.n_heads <= 0 || h.dim % h.n_heads != 0) throw bad("n_heads", h.n_heads);
  if (h.n_kv_heads <= 0 || h.n_heads % h.n_kv_heads != 0) throw bad("n_kv_heads", h.n_kv_heads);
  if (vocab <= 0 || vocab > (1 << 22)) throw bad("vocab_size", vocab);
  if (h.seq_len <= 0 || h.seq_len > (1 << 24)) throw bad("seq_len", h.seq_len);
  const int64_t dim = h.dim, hid = h.hidden, L = h.n_layers, hs = dim / h.n_heads, kv_dim = hs * h.n_kv_heads;

  FloatReader r(model, sizeof(Header), model_path);
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("general.name", GgufValue::str("llama2.c import"));
  w.set("llama.context_length", GgufValue::u32(static_cast<uint32_t>(h.seq_len)));
  w.set("llama.embedding_length", GgufValue::u32(static_cast<uint32_t>(dim)));
  w.set("llama.block_count", GgufValue::u32(static_cast<uint32_t>(L)));
  w.set("llama.feed_forward_length", GgufValue::u32(static_cast<uint32_t>(hid)));
  w.set("llama.attention.head_count", GgufValue::u32(static_cast<uint32_t>(h.n_heads)));
  w.set("llama.attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(h.n_kv_heads)));
  w.set("llama.rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(hs)));
  w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(1e-5f));
  w.set("llama.rope.freq_base", GgufValue::f32(10000.0f));

  const auto emb = r.take(vocab * dim, "token_embedding");
  const auto rms_att = r.take(L * dim, "rms_att");
  const auto wq = r.take(L * dim * dim, "wq");
  const auto wk = r.take(L * kv_dim * dim, "wk");
  const auto wv = r.take(L * kv_dim * dim, "wv");
  const auto wo = r.take(L * dim * dim, "wo");
  const auto rms_ffn = r.take(L * dim, "rms_ffn");
  const auto w1 = r.take(L * hid * dim, "w1");
  const auto w2 = r.take(L * dim * hid, "w2");
  const auto w3 = r.take(L * hid * dim, "w3");
  const auto rms_final = r.take(dim, "rms_final");
  r.skip(int64_t{h.seq_len} * hs / 2, "freq_cis_real");
  r.skip(int64_t{h.seq_len} * hs / 2, "freq_cis_imag");
  std::vector<float> wcls;
  if (!shared_classifier) wcls = r.take(vocab * dim, "wcls");
  if (r.remaining() != 0)
    throw std::runtime_error(fmt::format("'{}' has {} unexpected trailing bytes: not a llama2.c checkpoint of the shape its header says",
                                         model_path, r.remaining()));

  auto slice = [](const std::vector<float>& all, int64_t layer, int64_t per) {
    return std::vector<float>(all.begin() + layer * per, all.begin() + (layer + 1) * per);
  };
  w.add_tensor_f32("token_embd.weight", {dim, vocab}, DType::F32, emb);
  w.add_tensor_f32("output_norm.weight", {dim}, DType::F32, rms_final);
  if (!shared_classifier) w.add_tensor_f32("output.weight", {dim, vocab}, DType::F32, wcls);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    w.add_tensor_f32(p + "attn_norm.weight", {dim}, DType::F32, slice(rms_att, l, dim));
    w.add_tensor_f32(p + "attn_q.weight", {dim, dim}, DType::F32, slice(wq, l, dim * dim));
    w.add_tensor_f32(p + "attn_k.weight", {dim, kv_dim}, DType::F32, slice(wk, l, kv_dim * dim));
    w.add_tensor_f32(p + "attn_v.weight", {dim, kv_dim}, DType::F32, slice(wv, l, kv_dim * dim));
    w.add_tensor_f32(p + "attn_output.weight", {dim, dim}, DType::F32, slice(wo, l, dim * dim));
    w.add_tensor_f32(p + "ffn_norm.weight", {dim}, DType::F32, slice(rms_ffn, l, dim));
    w.add_tensor_f32(p + "ffn_gate.weight", {dim, hid}, DType::F32, slice(w1, l, hid * dim));
    w.add_tensor_f32(p + "ffn_down.weight", {hid, dim}, DType::F32, slice(w2, l, dim * hid));
    w.add_tensor_f32(p + "ffn_up.weight", {dim, hid}, DType::F32, slice(w3, l, hid * dim));
  }

  // Tokenizer: int32 max_token_length, then per token float score, int32 length, bytes.
  const std::vector<uint8_t> tok = slurp(tokenizer_path);
  size_t pos = 4;
  if (tok.size() < 4) throw std::runtime_error(fmt::format("'{}' is too small for a llama2.c tokenizer", tokenizer_path));
  std::vector<std::string> texts;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int32_t i = 0; i < vocab; ++i) {
    if (tok.size() - pos < 8) throw std::runtime_error(fmt::format("'{}' is truncated at token {} of {}", tokenizer_path, i, vocab));
    float score;
    int32_t len;
    std::memcpy(&score, tok.data() + pos, 4);
    std::memcpy(&len, tok.data() + pos + 4, 4);
    pos += 8;
    if (len < 0 || static_cast<size_t>(len) > tok.size() - pos)
      throw std::runtime_error(fmt::format("'{}': token {} has a bad length {}", tokenizer_path, i, len));
    std::string text(reinterpret_cast<const char*>(tok.data() + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    // llama2.c stores SentencePiece pieces with plain spaces; GGUF keeps U+2581.
    // Its special tokens carry newlines ("\n<s>\n"); GGUF files use the bare names.
    int32_t type = 1;
    if (i == 0) type = 2, text = "<unk>";
    else if (i == 1) type = 3, text = "<s>";
    else if (i == 2) type = 3, text = "</s>";
    else if (text.size() == 6 && text.rfind("<0x", 0) == 0 && text[5] == '>') type = 6;
    std::string escaped;
    for (char c : text) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    texts.push_back(std::move(escaped));
    scores.push_back(score);
    types.push_back(type);
  }
  w.set_spm_tokenizer(texts, scores, types);
  w.write(out_path);
}

}  // namespace kvsqueeze
