// Element-wise and row-wise operations of the decoder (norms, RoPE, activations).
#pragma once

#include <cstdint>

namespace kvsqueeze {

// The index of the first maximal element of x[0..n) (std::max_element's), 0 when n is 0.
int64_t argmax_f32(const float* x, int64_t n);

// y = x / rms(x) * w over n elements (y may alias x).
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// Rotary position embedding in three steps: the n_rot/2 frequencies (once per model and
// base), the angles of one position from them (n_rot/2 cos and sin values, shared by
// every head and layer), then their application to one head vector in place.
// neox=false rotates adjacent pairs (2i, 2i+1) (GGUF `llama`); neox=true rotates
// (i, i + n_rot/2) (qwen2/qwen3). freq_factors (n_rot/2 values, may be
// null) divide the frequencies, as Llama 3.1 scaling stores them in `rope_freqs.weight`.
// pos may be fractional: linear RoPE scaling divides positions by its factor.
void rope_frequencies(int64_t n_rot, float base, const float* freq_factors, double* freqs_out);
void rope_angles_from(int64_t n_rot, double pos, const double* freqs, float* cos_out, float* sin_out);
void rope_apply(float* v, int64_t n_rot, bool neox, const float* cos_v, const float* sin_v);

// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);
// gate[i] = gelu(gate[i]) * up[i], GELU in its tanh approximation (GeGLU, gemma3)
void gelu_mul(float* gate, const float* up, int64_t n);

}  // namespace kvsqueeze
