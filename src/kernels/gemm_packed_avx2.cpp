#include "kernels/gemm_packed_avx2.h"

#include <immintrin.h>
#ifdef KVS_EMULATE_AVX512
#include "avx512_emulation.h"  // a test build: vpdpbusd runs through SIMDe
#endif

#include <algorithm>
#include <cstring>

#include "kernels/avx2_helpers.h"
#include "kernels/block_unpack.h"
#include "kernels/quant_dot.h"
#include "tensor/cpu_features.h"

namespace kvsqueeze::gemm_avx2 {
namespace {

#define KVS_AVX2 KVS_TARGET_AVX2

using block_unpack::q_min;

constexpr int kTileRows = 8;  // one 32-bit lane of a register per row
// Activation rows per tile pass: as many as leave the 16 registers enough for the sums
// (maddubs keeps a 16-bit and a 32-bit sum per row, vpdpbusd only the 32-bit one).
template <bool kVnni>
constexpr int kTokens = kVnni ? 6 : 4;

// A packed activation block: the 32 signed bytes of quantize_activations, their scale,
// and the scaled sums of all 32 and of each half (what the weights' offsets multiply).
struct PackedAct {
  int8_t qs[32];
  float d;
  float sum;
  float half_sum[2];
};
static_assert(sizeof(PackedAct) == 48);

// Per format: how many scale halves a block has (Q6_K scales every 16 values), whether
// its packed bytes are signed (Q8_0 through maddubs, which takes them by the sign trick;
// with VNNI they are stored +128, unsigned, and −128·d becomes the block's offset) and how
// many 4-column groups may sum in 16 bits before maddubs' pair sums could overflow them
// (|activation| <= 127; pair sums reach 2·127·max|q|; vpdpbusd sums in 32 bits).
template <DType t>
constexpr int kHalves = t == DType::Q6_K ? 2 : 1;
template <DType t, bool kVnni>
constexpr bool kSigned = t == DType::Q8_0 && !kVnni;
template <DType t>
constexpr int kChain = t == DType::Q8_0 ? 1
                       : t == DType::Q6_K ? 2
                       : (t == DType::Q5_0 || t == DType::Q5_1 || t == DType::Q5_K) ? 4
                                                                                    : 8;

// A packed weight block of a tile: 8 groups of 32 bytes (group g = columns 4g..4g+3 of
// the 8 rows, row r in bytes 4r..4r+3), then per half the 8 rows' scales and offsets.
template <DType t>
constexpr int64_t kBlockBytes = 256 + 64 * kHalves<t>;

// Block b of a row as its 32 stored integers in value order: unsigned (q - q_min), or
// Q8_0's signed bytes. The same values unpack_block gives, decoded in registers.
template <DType type>
KVS_AVX2 inline __m256i stored_block(const uint8_t* row, int64_t b) {
  using block_unpack::block_at;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const int j = static_cast<int>(b % 8);  // sub-block of a K-format super-block
  switch (type) {
    case DType::Q8_0: return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block_at<BlockQ8_0>(row, b).qs));
    case DType::Q4_0: return avx2::unpack_nibbles(block_at<BlockQ4_0>(row, b).qs);
    case DType::Q4_1: return avx2::unpack_nibbles(block_at<BlockQ4_1>(row, b).qs);
    case DType::Q5_0: {
      const auto& blk = block_at<BlockQ5_0>(row, b);
      return _mm256_or_si256(avx2::unpack_nibbles(blk.qs), avx2::bits_to_0x10(blk.qh));
    }
    case DType::Q5_1: {
      const auto& blk = block_at<BlockQ5_1>(row, b);
      return _mm256_or_si256(avx2::unpack_nibbles(blk.qs), avx2::bits_to_0x10(blk.qh));
    }
    case DType::Q4_K: case DType::Q5_K: {
      const uint8_t* qs =
          (type == DType::Q5_K ? block_at<BlockQ5_K>(row, b / 8).qs : block_at<BlockQ4_K>(row, b / 8).qs) + 32 * (j / 2);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
      __m256i v = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
      if (type == DType::Q5_K) {
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block_at<BlockQ5_K>(row, b / 8).qh));
        const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
        v = _mm256_or_si256(v, _mm256_slli_epi16(bit, 4));
      }
      return v;
    }
    case DType::Q6_K: {
      const auto& blk = block_at<BlockQ6_K>(row, b / 8);
      const int n = j / 4, k = j % 4;
      const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * n + (k % 2 ? 32 : 0)));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * n));
      const __m256i lo = _mm256_and_si256(k < 2 ? l : _mm256_srli_epi16(l, 4), m4);
      const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
      return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    default: return _mm256_setzero_si256();
  }
}

// v[i] holds 8 four-byte groups of row i; afterwards v[g] holds group g of rows 0..7.
KVS_AVX2 inline void transpose8x8_epi32(__m256i v[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);      // groups 0, 1 | 4, 5 of rows i, i+1
    t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);  // groups 2, 3 | 6, 7
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);          // group 0 | 4 of rows i..i+3
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);      // 1 | 5
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);  // 2 | 6
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);  // 3 | 7
  }
  for (int g = 0; g < 4; ++g) {
    v[g] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x20);
    v[g + 4] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x31);
  }
}

// Lays out 8 rows (the last ones zero when fewer are valid) of nb blocks each.
template <DType type, bool kVnni>
KVS_AVX2 void pack_tile(const uint8_t* w, int64_t w_stride, int rows, int64_t nb, uint8_t* out) {
  constexpr int H = kHalves<type>;
  constexpr bool kBiased = type == DType::Q8_0 && kVnni;  // signed bytes stored +128
  constexpr float kQMin = kBiased ? -128.0f : static_cast<float>(q_min(type));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* dst = out + b * kBlockBytes<type>;
    auto* scale = reinterpret_cast<float*>(dst + 256);
    float* offset = scale + 8 * H;
    __m256i v[8];
    for (int r = 0; r < kTileRows; ++r) {
      if (r >= rows) {
        v[r] = _mm256_setzero_si256();
        for (int h = 0; h < H; ++h) scale[8 * h + r] = offset[8 * h + r] = 0.0f;
        continue;
      }
      const uint8_t* row = w + r * w_stride;
      v[r] = stored_block<type>(row, b);
      if constexpr (kBiased) v[r] = _mm256_xor_si256(v[r], _mm256_set1_epi8(static_cast<char>(0x80)));
      const block_unpack::BlockScales bs = block_unpack::block_scales<type>(row, b);
      for (int h = 0; h < H; ++h) {
        scale[8 * h + r] = bs.s[h];
        offset[8 * h + r] = bs.o + kQMin * bs.s[h];  // value = s·(stored + q_min) + o
      }
    }
    transpose8x8_epi32(v);
    for (int g = 0; g < 8; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 32 * g), v[g]);
  }
}

KVS_AVX2 inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// acc's lanes += the sums of four u8·s8 products (vpdpbusd, 256-bit, EVEX-encoded). Written
// in assembly so that this file's functions can stay compiled for plain AVX2: the
// intrinsic would need the caller's target to include AVX-512 VNNI + VL, and that would
// let the compiler use EVEX instructions in the maddubs path too. Runs only at Avx2Vnni.
KVS_AVX2 inline __m256i dpbusd(__m256i acc, __m256i u8, __m256i s8) {
#ifdef KVS_EMULATE_AVX512
  return _mm256_dpbusd_epi32(acc, u8, s8);
#else
  asm("vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u8), "x"(s8));
  return acc;
#endif
}

// 8 rows of one packed tile times T activation rows, over nb blocks.
template <DType type, int T, bool kVnni>
KVS_AVX2 void tile(const uint8_t* wt, const uint8_t* ap, int64_t arb, int64_t nb, float* out, int64_t out_stride,
                   int rows) {
  constexpr int H = kHalves<type>, G = 8 / H, C = kChain<type>;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* wb = wt + b * kBlockBytes<type>;
    const PackedAct* a[T];
    for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const PackedAct*>(ap + t * arb) + b;
    for (int h = 0; h < H; ++h) {
      __m256i isum[T], p16[T];
#pragma GCC unroll 8
      for (int k = 0; k < G; ++k) {
        const int g = h * G + k;
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 32 * g));
        if constexpr (kVnni) {
          for (int t = 0; t < T; ++t)
            isum[t] = dpbusd(k == 0 ? _mm256_setzero_si256() : isum[t], wv, broadcast4(a[t]->qs + 4 * g));
        } else {
          __m256i wabs = wv;
          if constexpr (kSigned<type, kVnni>) wabs = _mm256_sign_epi8(wv, wv);
          for (int t = 0; t < T; ++t) {
            const __m256i x = broadcast4(a[t]->qs + 4 * g);
            const __m256i p =
                kSigned<type, kVnni> ? _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x, wv)) : _mm256_maddubs_epi16(wv, x);
            p16[t] = k % C == 0 ? p : _mm256_add_epi16(p16[t], p);
            if (k % C == C - 1) {
              const __m256i s32 = _mm256_madd_epi16(p16[t], ones);
              isum[t] = k == C - 1 ? s32 : _mm256_add_epi32(isum[t], s32);
            }
          }
        }
      }
      const __m256 scale = _mm256_loadu_ps(reinterpret_cast<const float*>(wb + 256) + 8 * h);
      const __m256 offset = _mm256_loadu_ps(reinterpret_cast<const float*>(wb + 256) + 8 * H + 8 * h);
      for (int t = 0; t < T; ++t) {
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(scale, _mm256_set1_ps(a[t]->d)), acc[t]);
        if constexpr (!kSigned<type, kVnni>)
          acc[t] = _mm256_fmadd_ps(offset, _mm256_set1_ps(H == 1 ? a[t]->sum : a[t]->half_sum[h]), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    if (rows == kTileRows) {
      _mm256_storeu_ps(out + t * out_stride, acc[t]);
    } else {
      alignas(32) float lanes[kTileRows];
      _mm256_store_ps(lanes, acc[t]);
      std::copy(lanes, lanes + rows, out + t * out_stride);
    }
  }
}

// tile for nt <= T activation rows.
template <DType type, bool kVnni, int T = kTokens<kVnni>>
KVS_AVX2 void tile_upto(int nt, const uint8_t* wt, const uint8_t* ap, int64_t arb, int64_t nb, float* out,
                        int64_t out_stride, int rows) {
  if constexpr (T > 1)
    if (nt < T) return tile_upto<type, kVnni, T - 1>(nt, wt, ap, arb, nb, out, out_stride, rows);
  tile<type, T, kVnni>(wt, ap, arb, nb, out, out_stride, rows);
}

template <DType type, bool kVnni>
KVS_AVX2 void gemm_rows_of(const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts, int64_t n_tokens,
                           int64_t n, float* y, int64_t y_stride, std::vector<uint8_t>& scratch) {
  const int64_t nb = n / 32, tile_bytes = nb * kBlockBytes<type>, arb = act_bytes(n);
  const int n_tiles = (n_rows + kTileRows - 1) / kTileRows;
  scratch.resize(static_cast<size_t>(n_tiles * tile_bytes));
  for (int k = 0; k < n_tiles; ++k)
    pack_tile<type, kVnni>(w + k * kTileRows * w_stride, w_stride, std::min(kTileRows, n_rows - k * kTileRows), nb,
                           scratch.data() + k * tile_bytes);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokens<kVnni>) {
    const uint8_t* ap = acts + t0 * arb;
    for (int k = 0; k < n_tiles; ++k) {
      const uint8_t* wt = scratch.data() + k * tile_bytes;
      float* out = y + t0 * y_stride + k * kTileRows;
      const int rows = std::min(kTileRows, n_rows - k * kTileRows);
      tile_upto<type, kVnni>(static_cast<int>(std::min<int64_t>(kTokens<kVnni>, n_tokens - t0)), wt, ap, arb, nb, out,
                             y_stride, rows);
    }
  }
}

}  // namespace

int64_t act_bytes(int64_t n) { return n / 32 * static_cast<int64_t>(sizeof(PackedAct)); }

void pack_activations(const float* x, uint8_t* out, int64_t n) {
  thread_local std::vector<ActBlock32> blocks;
  blocks.resize(static_cast<size_t>(n / 32));
  quantize_activations(DType::Q8_0, x, blocks.data(), n);
  auto* packed = reinterpret_cast<PackedAct*>(out);
  for (int64_t b = 0; b < n / 32; ++b) {
    const ActBlock32& blk = blocks[static_cast<size_t>(b)];
    PackedAct& p = packed[b];
    std::memcpy(p.qs, blk.qs, 32);
    int lo = 0, hi = 0;
    for (int j = 0; j < 16; ++j) lo += blk.qs[j], hi += blk.qs[j + 16];
    p.d = blk.d;
    p.sum = blk.sum;
    p.half_sum[0] = blk.d * static_cast<float>(lo);
    p.half_sum[1] = blk.d * static_cast<float>(hi);
  }
}

void gemm_rows(DType type, const uint8_t* w, int64_t w_stride, int n_rows, const uint8_t* acts, int64_t n_tokens,
               int64_t n, float* y, int64_t y_stride, std::vector<uint8_t>& scratch) {
  const bool vnni = active_isa() == Isa::Avx2Vnni;
  block_unpack::with_format(type, [&](auto t) {
    constexpr DType kType = decltype(t)::value;
    if (vnni)
      gemm_rows_of<kType, true>(w, w_stride, n_rows, acts, n_tokens, n, y, y_stride, scratch);
    else
      gemm_rows_of<kType, false>(w, w_stride, n_rows, acts, n_tokens, n, y, y_stride, scratch);
  });
}

}  // namespace kvsqueeze::gemm_avx2
