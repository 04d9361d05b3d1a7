// SPDX-License-Identifier: MIT
// AdamW<T, cuda>, grad_norm / clip_grad_norm and checkpoints of cuda models and optimizers against the CPU.
// Bounds (per tensor, max |gpu - cpu| <= tol * max |cpu|, cuda_test::scaled_error):
//   AdamW parameters and moments after 5 steps: double 1e-12; float 2e-6 (about 16 float ulps of the largest
//   element: the update is elementwise and only the contraction of products into FMAs may differ per operation).
//   grad_norm: |gpu - cpu| <= 1e-11 |cpu| (squares and sums in double on both; only the summation order differs).
//   Scaling by clip_grad_norm and everything through a checkpoint: bitwise.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "spo/core/rng.hpp"
#include "spo/io/checkpoint.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/nn/cuda/linear.hpp"
#include "spo/nn/cuda/transfer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/optim/adamw.hpp"
#include "spo/optim/clip_grad.hpp"
#include "spo/optim/cuda/optim_kernels.hpp"
#include "spo/optim/loss_scaler.hpp"
#include "spo/tensor/cuda/memory.hpp"
#include "spo/tensor/ops.hpp"

#include "reference.hpp"
#include <unistd.h>

using namespace spo;
namespace fs = std::filesystem;

namespace {

template <class T>
double adamw_tolerance() {
  return std::is_same_v<T, double> ? 1e-12 : 2e-6;
}

/// Trainable parameters of several sizes (one of 70001 elements: 69 partial sums in the norm reduction; one of a
/// single element: one block) and a frozen one, which must never change.
template <Scalar T, Device D>
struct Params {
  using scalar_type = T;
  using device_type = D;
  nn::Parameter<T, D> a{Shape{7, 13}}, b{Shape{13}}, big{Shape{70001}}, one{Shape{1}}, frozen{Shape{5, 3}};
  Params() { frozen.set_trainable(false); }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "a"), a);
    f(nn::join_name(prefix, "b"), b);
    f(nn::join_name(prefix, "big"), big);
    f(nn::join_name(prefix, "one"), one);
    f(nn::join_name(prefix, "frozen"), frozen);
  }
};

/// Random values for every parameter of a host model.
template <class M>
void randomize_values(M& m, Generator& gen) {
  m.visit_parameters([&](std::string_view, auto& p) { fill_normal(p.value.view(), gen); }, {});
}

/// Random gradients (stddev `scale`) for every trainable parameter of a host model.
template <class M>
void randomize_grads(M& m, Generator& gen, double scale) {
  using T = typename M::scalar_type;
  m.visit_parameters(
      [&](std::string_view, auto& p) {
        if (p.trainable) fill_normal(p.grad.view(), gen, T(0), static_cast<T>(scale));
      },
      {});
}

template <class T>
bool same_bits(const Tensor<T, cpu>& a, const Tensor<T, cpu>& b) {
  return a.shape() == b.shape() && (a.numel() == 0 || std::memcmp(a.data(), b.data(), a.bytes()) == 0);
}

/// Host copies of every parameter value (or gradient) of a model of any device, by name.
template <class M>
std::map<std::string, Tensor<typename M::scalar_type, cpu>> host_tensors(M& m, bool gradients = false) {
  using T = typename M::scalar_type;
  std::map<std::string, Tensor<T, cpu>> out;
  m.visit_parameters(
      [&](std::string_view name, auto& p) {
        const auto& t = gradients ? p.grad : p.value;
        if constexpr (std::same_as<typename M::device_type, cpu>)
          out.emplace(std::string(name), t);
        else
          out.emplace(std::string(name), to_host(t));
      },
      {});
  return out;
}

/// Host copies of an optimizer's state tensors, by key.
template <class Opt>
std::map<std::string, Tensor<typename Opt::scalar_type, cpu>> host_state(const Opt& opt) {
  using T = typename Opt::scalar_type;
  std::map<std::string, Tensor<T, cpu>> out;
  const auto state = opt.export_state();
  for (const auto& [key, t] : state.tensors) {
    if constexpr (std::same_as<typename Opt::device_type, cpu>)
      out.emplace(key, t);
    else
      out.emplace(key, to_host(t));
  }
  return out;
}

template <class T>
void check_all_close(const std::map<std::string, Tensor<T, cpu>>& gpu, const std::map<std::string, Tensor<T, cpu>>& ref,
                     double tol, const std::string& what) {
  REQUIRE(gpu.size() == ref.size());
  for (const auto& [name, r] : ref) {
    const auto it = gpu.find(name);
    REQUIRE_MESSAGE(it != gpu.end(), what << ": no " << name);
    const double e = cuda_test::scaled_error(it->second, r, tol);
    INFO(what << " " << name << ": max |gpu - cpu| / (tol max |cpu|) = " << e);
    CHECK(e <= 1.0);
  }
}

template <class T>
void check_all_same_bits(const std::map<std::string, Tensor<T, cpu>>& a, const std::map<std::string, Tensor<T, cpu>>& b,
                         const std::string& what) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : b) {
    const auto it = a.find(name);
    REQUIRE_MESSAGE(it != a.end(), what << ": no " << name);
    CHECK_MESSAGE(same_bits(it->second, t), what << ": " << name << " differs");
  }
}

/// sum_i x_i^2 in long double, in index order (the reference of the device reduction).
template <class T>
long double naive_sum_of_squares(const Tensor<T, cpu>& x) {
  long double s = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) s += static_cast<long double>(x[i]) * static_cast<long double>(x[i]);
  return s;
}

}  // namespace

TEST_CASE_TEMPLATE("AdamW<T, cuda> matches AdamW<T, cpu> over 5 steps; frozen parameters never change", T, float,
                   double) {
  Generator gen{20240611, 0};
  Params<T, cpu> host;
  randomize_values(host, gen);
  Params<T, cuda> dev;
  nn::copy_parameters(host, dev);
  const Tensor<T, cpu> frozen_before = host.frozen.value;

  const optim::AdamWOptions options{1e-2, 0.9, 0.999, 1e-8, 0.1};
  optim::AdamW<T> cpu_opt(options);
  optim::AdamW<T, cuda> gpu_opt(options);
  for (int step = 0; step < 5; ++step) {
    if (step == 3) {  // a schedule change between steps
      cpu_opt.set_lr(4e-3);
      gpu_opt.set_lr(4e-3);
    }
    randomize_grads(host, gen, 1.0 + step);
    nn::copy_gradients(host, dev);
    cpu_opt.step(host);
    gpu_opt.step(dev);
  }
  CHECK(gpu_opt.step_count() == 5);
  check_all_close(host_tensors(dev), host_tensors(host), adamw_tolerance<T>(), "parameter");
  CHECK(same_bits(to_host(dev.frozen.value), frozen_before));
  CHECK(same_bits(host.frozen.value, frozen_before));

  const auto gpu_state = host_state(gpu_opt), cpu_state = host_state(cpu_opt);
  CHECK(gpu_state.size() == 8);  // exp_avg and exp_avg_sq of a, b, big, one: none for the frozen parameter
  CHECK(gpu_state.count("exp_avg.frozen") == 0);
  check_all_close(gpu_state, cpu_state, adamw_tolerance<T>(), "state");
  // the update moved every trainable parameter (the comparison above is not between two untouched copies)
  const auto before = host_tensors(dev);
  randomize_grads(host, gen, 1.0);
  nn::copy_gradients(host, dev);
  gpu_opt.step(dev);
  const auto after = host_tensors(dev);
  for (const auto& [name, t] : after)
    CHECK_MESSAGE(same_bits(t, before.at(name)) == (name == "frozen"), name << " changed iff trainable");
}

TEST_CASE_TEMPLATE("AdamW<T, cuda> and the device update reject mismatched shapes", T, float, double) {
  Params<T, cuda> dev;
  optim::AdamW<T, cuda> opt;
  dev.a.grad = Tensor<T, cuda>(Shape{13, 7});
  CHECK_THROWS_WITH_AS(opt.step(dev), doctest::Contains("gradient shape [13, 7] but value shape [7, 13]"), error);
  Tensor<T, cuda> p(Shape{4}), g(Shape{5}), m(Shape{4}), v(Shape{4});
  const auto c = optim::AdamWCoefficients::at_step({}, 1);
  CHECK_THROWS_WITH_AS(adamw_update(p.view(), std::as_const(g).view(), m.view(), v.view(), c),
                       doctest::Contains("shape [5] does not match [4]"), error);
}

TEST_CASE_TEMPLATE("grad_norm and clip_grad_norm on cuda: both branches, the non-finite case", T, float, double) {
  Generator gen{77, 3};
  Params<T, cpu> host;
  randomize_values(host, gen);
  randomize_grads(host, gen, 0.5);
  Params<T, cuda> dev;
  nn::copy_parameters(host, dev);
  nn::copy_gradients(host, dev);
  const auto grads0 = host_tensors(host, true);

  const double cpu_norm = optim::grad_norm(host);
  const double gpu_norm = optim::grad_norm(dev);
  INFO("cpu " << cpu_norm << ", gpu " << gpu_norm);
  CHECK(std::abs(gpu_norm - cpu_norm) <= 1e-11 * cpu_norm);
  CHECK(optim::grad_norm(dev) == gpu_norm);  // deterministic

  SUBCASE("not clipped: max_norm above the norm leaves every gradient bitwise") {
    CHECK(optim::clip_grad_norm(dev, 2 * cpu_norm) == gpu_norm);
    check_all_same_bits(host_tensors(dev, true), grads0, "gradient");
  }
  SUBCASE("clipped: every trainable gradient times T(max_norm / (total + 1e-6)), as on the CPU") {
    const double max_norm = cpu_norm / 3;
    CHECK(optim::clip_grad_norm(dev, max_norm) == gpu_norm);
    const T c = static_cast<T>(max_norm / (gpu_norm + 1e-6));
    auto expected = grads0;
    for (auto& [name, t] : expected)
      for (std::int64_t i = 0; i < t.numel(); ++i) t[i] *= c;
    check_all_same_bits(host_tensors(dev, true), expected, "clipped gradient");
    CHECK(optim::clip_grad_norm(host, max_norm) == cpu_norm);
    check_all_close(host_tensors(dev, true), host_tensors(host, true), adamw_tolerance<T>(), "clipped vs cpu");
    CHECK(optim::grad_norm(dev) == doctest::Approx(max_norm).epsilon(1e-5));
  }
  SUBCASE("NaN or inf gradient: returned, gradients untouched; thrown with error_if_nonfinite") {
    auto big = grads0.at("big");
    big[12345] = std::numeric_limits<T>::quiet_NaN();
    copy_to_device(std::as_const(big).view(), dev.big.grad.view());
    auto with_nan = grads0;
    with_nan.at("big") = big;
    CHECK(std::isnan(optim::grad_norm(dev)));
    CHECK(std::isnan(optim::clip_grad_norm(dev, 1e-3)));
    check_all_same_bits(host_tensors(dev, true), with_nan, "gradient after a NaN norm");
    CHECK_THROWS_WITH_AS(optim::clip_grad_norm(dev, 1e-3, true), doctest::Contains("nan"), error);
    check_all_same_bits(host_tensors(dev, true), with_nan, "gradient after a thrown NaN norm");
    big[12345] = std::numeric_limits<T>::infinity();
    copy_to_device(std::as_const(big).view(), dev.big.grad.view());
    CHECK(std::isinf(optim::clip_grad_norm(dev, 1e-3)));
    CHECK(same_bits(to_host(dev.one.grad), grads0.at("one")));
  }
}

TEST_CASE_TEMPLATE("scale and the loss scaler on cuda: unscaling bitwise as on the CPU, an infinity skips the step", T,
                   float, double) {
  Generator gen{78, 3};
  Params<T, cpu> host;
  randomize_values(host, gen);
  randomize_grads(host, gen, 0.5);
  Params<T, cuda> dev;
  nn::copy_parameters(host, dev);
  nn::copy_gradients(host, dev);
  const optim::DynamicLossScaler scaler({1024.0, 2.0, 0.5, 10});
  CHECK(scaler.unscale(host));
  CHECK(scaler.unscale(dev));
  check_all_same_bits(host_tensors(dev, true), host_tensors(host, true), "unscaled gradient");  // y * 2^-10: exact
  auto big = host_tensors(dev, true).at("big");
  big[777] = std::numeric_limits<T>::infinity();
  copy_to_device(std::as_const(big).view(), dev.big.grad.view());
  const auto values0 = host_tensors(dev, false);
  optim::DynamicLossScaler s({1024.0, 2.0, 0.5, 10});
  optim::AdamW<T, cuda> opt(optim::AdamWOptions{1e-3, 0.9, 0.999, 1e-8, 0.0});
  const auto r = s.step(dev, opt, 1.0);
  CHECK(r.skipped);
  CHECK(s.loss_scale() == 512.0);
  CHECK(opt.step_count() == 0);
  check_all_same_bits(host_tensors(dev, false), values0, "parameter after a skipped step");
}

TEST_CASE_TEMPLATE("sum_of_squares on cuda: long tensors (capped partials), empty lists, several views", T, float,
                   double) {
  Generator gen{5, 0};
  // 300001 elements: 256 partial sums (the cap), each thread then strides over about 4.6 elements
  const auto x = randn<T>(Shape{300001}, gen), y = randn<T>(Shape{3, 1000}, gen), z = randn<T>(Shape{1025}, gen);
  const auto dx = to_device(x), dy = to_device(y), dz = to_device(z);
  const std::vector<TensorView<const T, cuda>> views{dx.view(), dy.view(), dz.view()};
  const double got = sum_of_squares(std::span<const TensorView<const T, cuda>>(views));
  const long double want = naive_sum_of_squares(x) + naive_sum_of_squares(y) + naive_sum_of_squares(z);
  INFO("device " << got << ", reference " << static_cast<double>(want));
  CHECK(std::abs(static_cast<long double>(got) - want) <= 1e-12L * want);
  CHECK(sum_of_squares(std::span<const TensorView<const T, cuda>>(views)) == got);
  CHECK(sum_of_squares(std::span<const TensorView<const T, cuda>>()) == 0.0);
  auto s = to_device(z);
  scale_inplace(s.view(), T(-0.5));
  const auto hs = to_host(s);
  for (std::int64_t i = 0; i < z.numel(); ++i) REQUIRE(hs[i] == z[i] * T(-0.5));
}

namespace {

/// Two linear layers, the first one's weight frozen (a checkpoint holds it; the optimizer has no state for it).
template <Scalar T, Device D>
struct TwoLayers {
  using scalar_type = T;
  using device_type = D;
  nn::Linear<T, D> first{5, 7}, second{7, 3};
  TwoLayers() { first.weight().set_trainable(false); }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    first.visit_parameters(f, nn::join_name(prefix, "first"));
    second.visit_parameters(f, nn::join_name(prefix, "second"));
  }
};

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("spo_test_cuda_optim_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<char> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// One optimizer step of a cuda model from the gradients of a host model.
template <class T, class Opt>
void device_step(TwoLayers<T, cpu>& grads, TwoLayers<T, cuda>& model, Opt& opt) {
  nn::copy_gradients(grads, model);
  opt.step(model);
}

}  // namespace

TEST_CASE_TEMPLATE("checkpoint of a cuda model and AdamW<T, cuda>: CPU twin bitwise, resumed run bitwise", T, float,
                   double) {
  TempDir dir;
  Generator gen{31, 0};
  TwoLayers<T, cpu> host;  // initial values, then the per-step gradients
  host.first.reset_parameters(gen);
  host.second.reset_parameters(gen);
  TwoLayers<T, cuda> dev;
  nn::copy_parameters(host, dev);
  const optim::AdamWOptions options{3e-3, 0.9, 0.999, 1e-8, 1e-2};
  optim::AdamW<T, cuda> opt(options);
  for (int step = 0; step < 2; ++step) {
    randomize_grads(host, gen, 1.0);
    device_step(host, dev, opt);
  }

  io::CheckpointInfo info;
  info.step = 2;
  info.config = {{"run", "cuda-optim"}};
  info.rng = Generator{99, 1234};
  const fs::path path = dir.path / "step_2.safetensors";
  io::save_checkpoint(path, dev, opt, info);

  // loaded into a CPU twin: every parameter and moment equals the device value bitwise
  TwoLayers<T, cpu> twin;
  optim::AdamW<T> twin_opt(options);
  const auto got = io::load_checkpoint(path, twin, twin_opt);
  CHECK(got.step == 2);
  CHECK(got.rng.seed == 99);
  CHECK(got.rng.offset == 1234);
  CHECK(twin_opt.step_count() == 2);
  check_all_same_bits(host_tensors(twin), host_tensors(dev), "CPU twin parameter");
  const auto dev_state = host_state(opt);
  CHECK(dev_state.size() == 6);  // first.bias, second.weight, second.bias: two moments each
  check_all_same_bits(host_state(twin_opt), dev_state, "CPU twin moment");
  // the same values saved from the CPU give the same file, byte for byte (format and keys unchanged)
  const fs::path cpu_path = dir.path / "cpu_step_2.safetensors";
  io::save_checkpoint(cpu_path, twin, twin_opt, info);
  CHECK(file_bytes(cpu_path) == file_bytes(path));
  CHECK(io::serialize_safetensors(io::state_dict(dev)) == io::serialize_safetensors(io::state_dict(twin)));

  // loaded into a fresh cuda model and optimizer, then one more step on both runs: identical to the uninterrupted run
  TwoLayers<T, cuda> resumed;
  optim::AdamW<T, cuda> resumed_opt(options);
  io::load_checkpoint(path, resumed, resumed_opt);
  CHECK(resumed_opt.step_count() == 2);
  CHECK_FALSE(resumed.first.weight().trainable);
  randomize_grads(host, gen, 1.0);
  device_step(host, dev, opt);
  device_step(host, resumed, resumed_opt);
  check_all_same_bits(host_tensors(resumed), host_tensors(dev), "resumed parameter");
  check_all_same_bits(host_state(resumed_opt), host_state(opt), "resumed moment");
  // and the CPU twin, resumed on the CPU, agrees within the AdamW bound
  nn::copy_gradients(host, twin);
  twin_opt.step(twin);
  check_all_close(host_tensors(dev), host_tensors(twin), adamw_tolerance<T>(), "CPU-resumed parameter");

  // a state dict of the cuda model loads back onto the device (load_state_dict through host copies)
  TwoLayers<T, cuda> reloaded;
  io::load_state_dict(reloaded, io::state_dict(dev));
  check_all_same_bits(host_tensors(reloaded), host_tensors(dev), "state-dict parameter");
  // a checkpoint that does not fit leaves the cuda model untouched and names the problem
  TwoLayers<T, cuda> fresh;
  const auto fresh_before = host_tensors(fresh);
  optim::AdamW<T, cuda> fresh_opt(options);
  fresh.second.weight().set_trainable(false);  // the file holds moments for it: state of a frozen parameter
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, fresh, fresh_opt),
                       doctest::Contains("\"second.weight\" is frozen but has state"), error);
  check_all_same_bits(host_tensors(fresh), fresh_before, "untouched parameter");
  CHECK(fresh_opt.step_count() == 0);
}
