// SPDX-License-Identifier: MIT
// Instantiates the launchers of spm/cuda/spm_kernels.hpp for float and double, and embedding_forward for half and
// bfloat16.
#include "spo/spm/cuda/spm_kernels.cuh"

namespace spo::spm::cuda_kernels {
#define SPO_INSTANTIATE(T)                                                                                             \
  template void adaln_modulate_forward<T>(const ModulationShape&, const T*, const T*, std::int64_t, std::int64_t, T*); \
  template void adaln_modulate_backward<T>(const ModulationShape&, const T*, const T*, const T*, std::int64_t,         \
                                           std::int64_t, T*, T*);                                                      \
  template void adaln_gate_forward<T>(const ModulationShape&, T*, const T*, const T*, std::int64_t);                   \
  template void adaln_gate_backward<T>(const ModulationShape&, const T*, const T*, const T*, std::int64_t, T*, T*);    \
  template void patch_tokens_forward<T>(const T*, const T*, const T*, T*, std::int64_t, std::int64_t, std::int64_t);   \
  template void patch_tokens_backward<T>(const T*, T*, T*, T*, std::int64_t, std::int64_t, std::int64_t);              \
  template void embedding_forward<T>(const T*, const T*, const std::int32_t*, T*, std::int64_t, std::int64_t,          \
                                     std::int64_t);                                                                    \
  template void embedding_token_backward<T>(const T*, const std::int32_t*, const std::int32_t*, const std::int32_t*,   \
                                            T*, std::int64_t, std::int64_t);                                           \
  template void embedding_position_backward<T>(const T*, T*, std::int64_t, std::int64_t, std::int64_t);                \
  template void weighted_token_sum_forward<T>(const T*, const T*, T*, std::int64_t, std::int64_t, std::int64_t);       \
  template void weighted_token_sum_backward<T>(const T*, const T*, T*, std::int64_t, std::int64_t, std::int64_t);      \
  template void clip_scores_forward<T>(const T*, const T*, const T*, T*, T*, T*, T*, std::int64_t, std::int64_t);      \
  template void clip_scores_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*,        \
                                        std::int64_t, std::int64_t);
SPO_INSTANTIATE(float)
SPO_INSTANTIATE(double)
#undef SPO_INSTANTIATE
// The token embeddings of a 16-bit CLIP text encoder (StableDiffusion<float, cuda, half>).
template void embedding_forward<half>(const half*, const half*, const std::int32_t*, half*, std::int64_t, std::int64_t,
                                      std::int64_t);
template void embedding_forward<bfloat16>(const bfloat16*, const bfloat16*, const std::int32_t*, bfloat16*,
                                          std::int64_t, std::int64_t, std::int64_t);
}  // namespace spo::spm::cuda_kernels
