// SPDX-License-Identifier: MIT
// Attention<T, cuda, Proj> against the CPU Attention (same parameters, inputs and output gradient), with
// Proj = Linear and Proj = LoRA<Linear> (adapters attached, base frozen), and causal self-attention
// (AttentionOptions::causal, CLIP's text transformer): y, dx, dcontext and every parameter gradient. Bounds, per
// element, |gpu - cpu| <= abs max(1, max |cpu|) + rel |cpu| (abs relative to the tensor's scale):
//   double: abs 1e-11, rel 1e-9;
//   float: abs 1e-4, rel 5e-4. The reductions are short (at most ~30 terms; 77-term softmax sums and 231-row
//          weight gradients in the causal cases, 1024-term softmax sums and 2048-row weight gradients in the long
//          case), but the backward's dS = P (dP - rowsum(dO O)) cancels: its float error is relative to dP and
//          the row sum, not to dS, and it reaches dQ, dK and the LoRA gradients through two more products (on an
//          H200: 6e-5 on a to_k.lora_B gradient of scale 2.2 with one query token).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/nn/attention.hpp"
#include "spo/nn/cuda/attention.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/lora.hpp"
#include "spo/tensor/cuda/attention.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"

using namespace spo;

static_assert(nn::Layer<nn::Attention<float, cuda>>);
static_assert(nn::ContextLayer<nn::Attention<double, cuda>>);
static_assert(nn::ContextLayer<nn::Attention<float, cuda, nn::LoRA<nn::Linear<float, cuda>>>>);

namespace {

struct Tolerance {
  double abs = 0, rel = 0;
};

template <class T>
Tolerance tolerance() {
  if constexpr (std::is_same_v<T, double>)
    return {1e-11, 1e-9};
  else
    return {1e-4, 5e-4};
}

template <class T>
void check_close(const Tensor<T, cuda>& gpu, const Tensor<T, cpu>& cpu_ref, Tolerance tol, const std::string& what) {
  REQUIRE_MESSAGE(gpu.shape() == cpu_ref.shape(), what << ": " << gpu.shape() << " vs " << cpu_ref.shape());
  // abs is relative to the tensor's largest magnitude: an element that is a difference of large terms (cancellation)
  // carries the rounding of those terms, not of its own small value.
  double scale = 1;
  for (std::int64_t i = 0; i < cpu_ref.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(cpu_ref[i])));
  const double r = cuda_test::worst_ratio(to_host(gpu), cpu_ref, tol.abs * scale, tol.rel);
  INFO(what << ": worst |gpu - cpu| / (abs max(1, max |cpu|) + rel |cpu|) = " << r << ", max |cpu| = " << scale);
  CHECK(r <= 1.0);
}

/// Names, trainable flags and values of every parameter; with `gradients`, the gradients of the trainable ones
/// (frozen ones must hold none). Returns the number of trainable parameters compared.
template <class CpuLayer, class GpuLayer>
int check_parameters(CpuLayer& cpu_layer, GpuLayer& gpu_layer, Tolerance tol, bool gradients) {
  using T = typename CpuLayer::scalar_type;
  std::map<std::string, nn::Parameter<T, cpu>*> reference;
  cpu_layer.visit_parameters([&](std::string_view name, auto& p) { reference.emplace(std::string(name), &p); }, {});
  std::size_t seen = 0;
  int trainable = 0;
  gpu_layer.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cuda>& p) {
        const auto it = reference.find(std::string(name));
        REQUIRE_MESSAGE(it != reference.end(), "no CPU parameter " << name);
        ++seen;
        CHECK_MESSAGE(p.trainable == it->second->trainable, name);
        check_close(p.value, it->second->value, tol, std::string(name) + " value");
        if (!gradients) return;
        if (p.trainable) {
          ++trainable;
          check_close(p.grad, it->second->grad, tol, std::string(name) + " grad");
        } else {
          CHECK_MESSAGE(p.grad.empty(), name << " is frozen but holds a gradient");
        }
      },
      {});
  CHECK(seen == reference.size());
  return trainable;
}

/// Sets cuda_kernels::attention_score_buffer_bytes for one scope.
class ScoreBufferCap {
 public:
  explicit ScoreBufferCap(std::size_t bytes) : saved_(cuda_kernels::attention_score_buffer_bytes()) {
    if (bytes) cuda_kernels::attention_score_buffer_bytes() = bytes;
  }
  ~ScoreBufferCap() { cuda_kernels::attention_score_buffer_bytes() = saved_; }
  ScoreBufferCap(const ScoreBufferCap&) = delete;
  ScoreBufferCap& operator=(const ScoreBufferCap&) = delete;

 private:
  std::size_t saved_;
};

struct Case {
  const char* name;
  std::int64_t batch, n, m, query_dim, context_dim, heads, dim_head;
  bool cross;
  std::int64_t chunk = 0;  ///< problems per score-buffer chunk (0: the default cap)
  bool causal = false;     ///< AttentionOptions::causal on both sides (query i sees keys j <= i)
  std::int64_t tile = 0;   ///< query rows per tile, a score buffer below one problem (0: chunk decides)
};

template <class T, bool Lora>
void run_case(const Case& c) {
  using CpuProj = std::conditional_t<Lora, nn::LoRA<nn::Linear<T, cpu>>, nn::Linear<T, cpu>>;
  using GpuProj = std::conditional_t<Lora, nn::LoRA<nn::Linear<T, cuda>>, nn::Linear<T, cuda>>;
  const std::string label =
      std::string(c.name) + (Lora ? " (LoRA), " : ", ") + (std::is_same_v<T, float> ? "float" : "double");
  INFO(label);
  const Tolerance tol = tolerance<T>();
  const std::int64_t context_dim = c.cross ? c.context_dim : 0, m = c.cross ? c.m : c.n;
  const nn::AttentionOptions options{.causal = c.causal};
  nn::Attention<T, cpu, CpuProj> cpu_attn(c.query_dim, c.heads, c.dim_head, context_dim, options);
  nn::Attention<T, cuda, GpuProj> gpu_attn(c.query_dim, c.heads, c.dim_head, context_dim, options);
  REQUIRE(cpu_attn.options().causal == c.causal);
  REQUIRE(gpu_attn.options().causal == c.causal);
  Generator g_cpu{41, 0}, g_gpu{41, 0};
  cpu_attn.reset_parameters(g_cpu);
  gpu_attn.reset_parameters(g_gpu);
  if constexpr (Lora) {
    for (auto* a : {&cpu_attn.to_q(), &cpu_attn.to_k(), &cpu_attn.to_v(), &cpu_attn.to_out()}) a->attach(3, 4.5, g_cpu);
    for (auto* a : {&gpu_attn.to_q(), &gpu_attn.to_k(), &gpu_attn.to_v(), &gpu_attn.to_out()}) a->attach(3, 4.5, g_gpu);
  }
  check_parameters(cpu_attn, gpu_attn, tol, false);  // same init numbers, same frozen set
  CHECK(g_cpu == g_gpu);

  Generator g{99, 0};
  cpu_attn.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) {
        if (name.ends_with("lora_B.weight")) fill_normal(p.value.view(), g, T(0), T(0.5));  // adapters active
        if (p.trainable) fill_normal(p.grad.view(), g, T(0), T(1));                         // backward must accumulate
      },
      {});
  nn::copy_parameters(cpu_attn, gpu_attn);
  nn::copy_gradients(cpu_attn, gpu_attn);

  auto x = randn<T>(Shape{c.batch, c.n, c.query_dim}, g, T(2));                            // [B, N, query_dim]
  auto ctx = randn<T>(Shape{c.batch, m, c.cross ? c.context_dim : c.query_dim}, g, T(2));  // [B, M, context_dim]
  auto dy = randn<T>(Shape{c.batch, c.n, c.query_dim}, g);                                 // [B, N, query_dim]
  ScoreBufferCap cap(static_cast<std::size_t>((c.tile ? c.tile : c.chunk * c.n) * m) * sizeof(T));
  if (c.cross) {
    auto y_cpu = cpu_attn.forward(x, ctx);
    auto y_gpu = gpu_attn.forward(to_device(x), to_device(ctx));
    check_close(y_gpu, y_cpu, tol, "y");
    auto g_ref = cpu_attn.backward_context(dy);
    auto g_dev = gpu_attn.backward_context(to_device(dy));
    check_close(g_dev.dx, g_ref.dx, tol, "dx");
    check_close(g_dev.dcontext, g_ref.dcontext, tol, "dcontext");
  } else {
    auto y_cpu = cpu_attn.forward(x);
    auto y_gpu = gpu_attn.forward(to_device(x));
    check_close(y_gpu, y_cpu, tol, "y");
    check_close(gpu_attn.backward(to_device(dy)), cpu_attn.backward(dy), tol, "dx");
  }
  const int trainable = check_parameters(cpu_attn, gpu_attn, tol, true);
  CHECK(trainable == (Lora ? 8 : 5));
}

// Odd sizes throughout; heads 1 and 4; N != M for cross-attention; chunk caps that split the [B * H] problems
// inside a batch entry (chunk 3 of 2 x 4 problems: runs {b0 h0-2}, {b0 h3, b1 h0-1}, {b1 h2-3}).
const Case small_cases[] = {
    {"self, 1 head", 2, 13, 0, 24, 0, 1, 24, false},
    {"self, 4 heads", 2, 9, 0, 20, 0, 4, 7, false},
    {"self, 4 heads, chunks of 3", 2, 9, 0, 20, 0, 4, 7, false, 3},
    {"cross, 1 head", 3, 11, 7, 16, 12, 1, 9, true},
    {"cross, 4 heads", 2, 11, 7, 20, 12, 4, 5, true},
    {"cross, 4 heads, chunks of 3", 2, 5, 19, 20, 13, 4, 5, true, 3},
    {"cross, one query token", 2, 1, 6, 8, 10, 4, 3, true, 1},
};

// Causal self-attention (N = M): one token (a single visible key), 7 tokens (fewer than a warp's 32 lanes) and
// CLIP's 77 (rows spanning three warp passes); chunk caps that start chunks inside a batch entry (chunk 3 of 2 x 4
// problems; chunk 5 of 3 x 4: runs {b0 h0-3, b1 h0}, {b1 h1-3, b2 h0-1}, {b2 h2-3}), so that the row index within
// a problem is taken from chunks that do not start at problem 0.
const Case causal_cases[] = {
    {"causal self, 1 token, 1 head", 2, 1, 0, 8, 0, 1, 8, false, 0, true},
    {"causal self, 1 token, 4 heads, chunks of 1", 2, 1, 0, 12, 0, 4, 3, false, 1, true},
    {"causal self, 7 tokens, 1 head", 3, 7, 0, 16, 0, 1, 16, false, 0, true},
    {"causal self, 7 tokens, 4 heads", 2, 7, 0, 20, 0, 4, 5, false, 0, true},
    {"causal self, 7 tokens, 4 heads, chunks of 3", 2, 7, 0, 20, 0, 4, 5, false, 3, true},
    {"causal self, 77 tokens, 1 head", 2, 77, 0, 24, 0, 1, 24, false, 0, true},
    {"causal self, 77 tokens, 4 heads", 2, 77, 0, 32, 0, 4, 8, false, 0, true},
    {"causal self, 77 tokens, 4 heads, chunks of 5", 3, 77, 0, 32, 0, 4, 8, false, 5, true},
};

}  // namespace

TEST_CASE_TEMPLATE("Attention<T, cuda, Linear> matches the CPU (self and cross, 1 and 4 heads)", T, float, double) {
  for (const Case& c : small_cases) run_case<T, false>(c);
}

TEST_CASE_TEMPLATE("Attention<T, cuda, LoRA<Linear>> matches the CPU with adapters attached", T, float, double) {
  for (const Case& c : small_cases) run_case<T, true>(c);
}

TEST_CASE_TEMPLATE("Attention<T, cuda> with a causal mask matches the CPU (1, 7 and 77 tokens, 1 and 4 heads)", T,
                   float, double) {
  for (const Case& c : causal_cases) run_case<T, false>(c);
  run_case<T, true>(causal_cases[4]);  // the mask under LoRA projections, chunked
}

TEST_CASE_TEMPLATE("Attention<T, cuda> with 1024 tokens in chunks of 2 problems", T, float, double) {
  // 2 x 3 = 6 problems of [1024, 1024] scores, two per chunk: chunk 2 spans batch entries 0 and 1.
  run_case<T, false>({"self, N = M = 1024", 2, 1024, 0, 16, 0, 3, 8, false, 2});
  run_case<T, false>({"cross, N = 1024, M = 1024", 2, 1024, 1024, 16, 12, 3, 8, true, 2});
  run_case<T, false>({"causal self, N = M = 1024", 2, 1024, 0, 16, 0, 3, 8, false, 2, true});
}

// Score buffers below one problem: each problem's queries in tiles, dK and dV summed over the tiles (beta 1), the
// causal mask offset by the tile's first query.
const Case tiled_cases[] = {
    {"self, 4 heads, query tiles of 4 (9 = 4 + 4 + 1)", 2, 9, 0, 20, 0, 4, 7, false, 0, false, 4},
    {"cross, 4 heads, query tiles of 3", 2, 11, 7, 20, 12, 4, 5, true, 0, false, 3},
    {"cross, 1 head, query tiles of 1", 3, 5, 19, 16, 12, 1, 9, true, 0, false, 1},
    {"causal self, 77 tokens, 4 heads, query tiles of 10", 2, 77, 0, 32, 0, 4, 8, false, 0, true, 10},
};

TEST_CASE_TEMPLATE("Attention<T, cuda> in query tiles matches the CPU (self, cross, causal; with LoRA)", T, float,
                   double) {
  for (const Case& c : tiled_cases) run_case<T, false>(c);
  for (const Case& c : tiled_cases) run_case<T, true>(c);
  run_case<T, false>({"causal self, N = M = 1024, query tiles of 100", 2, 1024, 0, 16, 0, 3, 8, false, 0, true, 100});
}

TEST_CASE("Attention<float, cuda>: errors name the shapes and the call form") {
  nn::Attention<float, cuda> self_attn(8, 2, 4);
  Generator g{1, 0};
  self_attn.reset_parameters(g);
  CHECK_THROWS_WITH_AS(self_attn.forward(Tensor<float, cuda>(Shape{2, 3, 7})), doctest::Contains("[2, 3, 7]"),
                       spo::error);
  CHECK_THROWS_WITH_AS(self_attn.backward(Tensor<float, cuda>(Shape{2, 3, 8})), doctest::Contains("without a forward"),
                       spo::error);
  self_attn.forward(Tensor<float, cuda>(Shape{2, 3, 8}));
  CHECK_THROWS_WITH_AS(self_attn.backward(Tensor<float, cuda>(Shape{2, 4, 8})), doctest::Contains("[2, 4, 8]"),
                       spo::error);

  nn::Attention<float, cuda> cross_attn(8, 2, 4, 5);
  cross_attn.reset_parameters(g);
  CHECK_THROWS_WITH_AS(cross_attn.forward(Tensor<float, cuda>(Shape{2, 3, 8})), doctest::Contains("context_dim"),
                       spo::error);
  CHECK_THROWS_WITH_AS(cross_attn.forward(Tensor<float, cuda>(Shape{2, 3, 8}), Tensor<float, cuda>(Shape{2, 4, 6})),
                       doctest::Contains("[2, 4, 6]"), spo::error);
  CHECK_THROWS_WITH_AS(cross_attn.forward(Tensor<float, cuda>(Shape{2, 3, 8}), Tensor<float, cuda>(Shape{2, 0, 5})),
                       doctest::Contains("no tokens"), spo::error);
  cross_attn.forward(Tensor<float, cuda>(Shape{2, 3, 8}), Tensor<float, cuda>(Shape{2, 4, 5}));
  CHECK_THROWS_WITH_AS(cross_attn.backward(Tensor<float, cuda>(Shape{2, 3, 8})), doctest::Contains("backward_context"),
                       spo::error);
  auto grads = cross_attn.backward_context(Tensor<float, cuda>(Shape{2, 3, 8}));
  CHECK(grads.dx.shape() == Shape{2, 3, 8});
  CHECK(grads.dcontext.shape() == Shape{2, 4, 5});

  std::vector<std::string> names;
  cross_attn.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); }, "attn2");
  CHECK(names == std::vector<std::string>{"attn2.to_q.weight", "attn2.to_k.weight", "attn2.to_v.weight",
                                          "attn2.to_out.0.weight", "attn2.to_out.0.bias"});
}
