// SPDX-License-Identifier: MIT
#include "spo/optim/adamw.hpp"

#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/checkpoint.hpp"
#include "spo/nn/layer.hpp"
#include "spo/nn/linear.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;
using namespace spo::optim;

namespace {

/// One parameter with a settable gradient: a minimal visitable object.
template <Scalar T>
struct Vec {
  nn::Parameter<T> p;
  explicit Vec(std::vector<T> v) : p(Shape{static_cast<std::int64_t>(v.size())}) { p.value = Tensor<T>(p.shape(), v); }
  void set_grad(const std::vector<double>& g) {
    for (std::size_t i = 0; i < g.size(); ++i) p.grad[static_cast<std::int64_t>(i)] = static_cast<T>(g[i]);
  }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    f(nn::join_name(prefix, "p"), p);
  }
};

const std::vector<std::vector<double>> grads = {{0.1, -0.2, 0.3, 0.0}, {-0.05, 0.4, 1e-3, 0.0}, {1.0, -1.0, 0.0, 5.0}};

template <Scalar T>
void check_trajectory(const AdamWOptions& o, const std::vector<std::vector<double>>& expected,
                      const std::vector<double>& exp_avg, const std::vector<double>& exp_avg_sq, double rel) {
  Vec<T> m({0.5, -1.0, 2.0, 0.0});
  AdamW<T> opt(o);
  for (std::size_t s = 0; s < grads.size(); ++s) {
    m.set_grad(grads[s]);
    opt.step(m);
    for (int i = 0; i < 4; ++i) {
      INFO("step " << s + 1 << " element " << i);
      CHECK(m.p.value[i] == doctest::Approx(expected[s][i]).epsilon(rel).scale(1e-3));
    }
  }
  const auto st = opt.export_state();
  CHECK(st.step == 3);
  for (int i = 0; i < 4; ++i) {
    CHECK(st.tensors.at("exp_avg.p")[i] == doctest::Approx(exp_avg[i]).epsilon(rel));
    CHECK(st.tensors.at("exp_avg_sq.p")[i] == doctest::Approx(exp_avg_sq[i]).epsilon(rel));
  }
}

struct Model {
  nn::Linear<float> a{5, 4};
  nn::Linear<float> b{4, 3};
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    a.visit_parameters(f, nn::join_name(prefix, "a"));
    b.visit_parameters(f, nn::join_name(prefix, "b"));
  }
};

/// Deterministic pseudo-gradients for step s: a pure function of (s, parameter), so runs can be split anywhere.
void fill_grads(Model& m, std::uint64_t s) {
  std::uint64_t k = 0;
  m.visit_parameters(
      [&](std::string_view, auto& p) {
        if (!p.trainable) return;
        Generator g{1000 + s, 100 * k++};
        fill_normal<float>(p.grad.view(), g);
      },
      {});
}

Model make_model() {
  Model m;
  Generator g{42, 0};
  m.a.reset_parameters(g);
  m.b.reset_parameters(g);
  return m;
}

std::vector<float> flat(Model& m) {
  std::vector<float> v;
  m.visit_parameters(
      [&](std::string_view, auto& p) { v.insert(v.end(), p.value.data(), p.value.data() + p.value.numel()); }, {});
  return v;
}

}  // namespace

TEST_CASE("three hand-computed steps of a scalar parameter") {
  // p0 = 1, lr = 0.1, betas = (0.5, 0.75), eps = 0, weight_decay = 0.1, gradients 2, -1, 4:
  //  t=1: p = 1 * (1 - 0.01) = 0.99;  m = 0.5*2 = 1;  v = 0.25*4 = 1;  step_size = 0.1/(1-0.5) = 0.2;
  //       denom = sqrt(1)/sqrt(1-0.75) = 2;  p = 0.99 - 0.2 * 1/2 = 0.89
  //  t=2: p = 0.89 * 0.99 = 0.8811;  m = 0.5*1 + 0.5*(-1) = 0;  v = 0.75*1 + 0.25*1 = 1;  m = 0 so p = 0.8811
  //  t=3: p = 0.8811 * 0.99 = 0.872289;  m = 0.5*4 = 2;  v = 0.75 + 0.25*16 = 4.75;
  //       step_size = 0.1/(1-0.125);  denom = sqrt(4.75)/sqrt(1-0.421875);  p = 0.872289 - step_size * 2/denom
  Vec<double> m({1.0});
  AdamW<double> opt({.lr = 0.1, .beta1 = 0.5, .beta2 = 0.75, .eps = 0.0, .weight_decay = 0.1});
  const double expected[] = {0.89, 0.8811, 0.872289 - (0.1 / 0.875) * 2.0 / (std::sqrt(4.75) / std::sqrt(0.578125))};
  const double g[] = {2, -1, 4};
  for (int s = 0; s < 3; ++s) {
    m.set_grad({g[s]});
    opt.step(m);
    CHECK(m.p.value[0] == doctest::Approx(expected[s]).epsilon(1e-15));
  }
  CHECK(opt.step_count() == 3);
  CHECK(opt.export_state().tensors.at("exp_avg.p")[0] == 2.0);
  CHECK(opt.export_state().tensors.at("exp_avg_sq.p")[0] == 4.75);
}

// Literals generated once by tools/reference/adamw_reference.py (torch 1.13 torch.optim.AdamW, foreach=False).
TEST_CASE_TEMPLATE("matches torch.optim.AdamW trajectories", T, double, float) {
  const double rel = std::is_same_v<T, double> ? 1e-13 : 2e-6;
  check_trajectory<T>({.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.05},
                      {{0.39750000999999902, -0.89500000499999977, 1.8900000033333333, 0},
                       {0.36884257042081836, -0.92708577515407398, 1.8131436366468048, 0},
                       {0.30151566589480017, -0.87584518797041278, 1.7518540385970456, -0.06359401478670311}},
                      {0.10359999999999998, -0.08019999999999998, 0.024389999999999995, 0.49999999999999989},
                      {0.010122760000000008, 0.011976040000000011, 0.00088209990000000075, 0.25000000000000022}, rel);
  check_trajectory<T>(AdamWOptions{},  // torch defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2
                      {{0.49899500010000003, -0.99899000005000005, 1.9989800000333333, 0},
                       {0.49872367314403299, -0.99934611366546, 1.9982874740537124, 0},
                       {0.49806096566448799, -0.99886838364354635, 1.9977476187684222, -0.00063881359718670656}},
                      {0.10359999999999998, -0.08019999999999998, 0.024389999999999995, 0.49999999999999989},
                      {0.0010124775100000009, 0.0011997600400000012, 8.9821089000000084e-05, 0.025000000000000022},
                      rel);
}

TEST_CASE("frozen parameters are not updated and get no state") {
  Model m = make_model();
  nn::set_trainable(m.a, false);
  nn::set_trainable(m.b, true);
  const auto a_before = m.a.weight().value;
  AdamW<float> opt;
  fill_grads(m, 0);
  opt.step(m);
  CHECK(max_abs_diff<float>(m.a.weight().value.view(), a_before.view()) == 0.0);
  std::vector<std::string> keys;
  for (const auto& [k, v] : opt.export_state().tensors) keys.push_back(k);
  CHECK(keys ==
        std::vector<std::string>{"exp_avg.b.bias", "exp_avg.b.weight", "exp_avg_sq.b.bias", "exp_avg_sq.b.weight"});
}

TEST_CASE("state saved to safetensors and loaded into a fresh optimizer continues bitwise identically") {
  const int k = 3, total = 7;
  Model straight = make_model();
  AdamW<float> opt_straight({.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
  for (int s = 0; s < total; ++s) {
    fill_grads(straight, static_cast<std::uint64_t>(s));
    opt_straight.step(straight);
  }

  Model first = make_model();
  AdamW<float> opt_first(opt_straight.options());
  for (int s = 0; s < k; ++s) {
    fill_grads(first, static_cast<std::uint64_t>(s));
    opt_first.step(first);
  }
  io::NamedTensors file = io::state_dict(first);
  io::append_optimizer_state(file, opt_first.export_state(), "optimizer.");
  const auto bytes = io::serialize_safetensors(file);

  const auto loaded = io::parse_safetensors(bytes, "resume.safetensors");
  Model resumed = make_model();
  Generator g{7, 0};
  resumed.a.reset_parameters(g);  // different values, overwritten by the load
  io::StateDictLoadOptions lo;
  lo.strict = false;  // the file also holds optimizer.* keys
  const auto r = io::load_state_dict(resumed, loaded, lo);
  CHECK(r.missing.empty());
  CHECK(r.unexpected.size() == 8);
  AdamW<float> opt_resumed(opt_straight.options());
  opt_resumed.import_state(io::read_optimizer_state<float>(loaded, "optimizer."), resumed);
  CHECK(opt_resumed.step_count() == k);
  for (int s = k; s < total; ++s) {
    fill_grads(resumed, static_cast<std::uint64_t>(s));
    opt_resumed.step(resumed);
  }
  CHECK(flat(resumed) == flat(straight));
  CHECK(io::serialize_safetensors(io::state_dict(resumed)) == io::serialize_safetensors(io::state_dict(straight)));
}

TEST_CASE("importing state that does not fit the model is an error and changes nothing") {
  Model m = make_model();
  AdamW<float> opt;
  fill_grads(m, 0);
  opt.step(m);
  auto good = opt.export_state();
  {
    auto s = good;
    s.tensors.at("exp_avg.a.weight") = Tensor<float>(Shape{5, 4});
    CHECK_THROWS_WITH_AS(opt.import_state(s, m), doctest::Contains("state shapes [5, 4] and [4, 5], parameter [4, 5]"),
                         error);
  }
  {
    auto s = good;
    s.tensors.erase("exp_avg_sq.b.bias");
    CHECK_THROWS_WITH_AS(opt.import_state(s, m), doctest::Contains("\"exp_avg_sq.b.bias\" is missing"), error);
  }
  {
    auto s = good;
    s.tensors.emplace("exp_avg.c.weight", Tensor<float>(Shape{1}));
    CHECK_THROWS_WITH_AS(opt.import_state(s, m), doctest::Contains("unexpected \"exp_avg.c.weight\""), error);
  }
  {
    nn::set_trainable(m.b, false);
    CHECK_THROWS_WITH_AS(opt.import_state(good, m), doctest::Contains("\"b.weight\" is frozen but has state"), error);
    nn::set_trainable(m.b, true);
  }
  CHECK(opt.step_count() == 1);
  CHECK_THROWS_AS(AdamW<float>({.lr = 1e-3, .beta1 = 1.0, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0}), error);
}
