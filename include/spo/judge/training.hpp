// SPDX-License-Identifier: MIT
/// @brief Supervised training and evaluation of a judge classifier on Fashion-MNIST.
#pragma once

#include <cmath>

#include <boost/hana/define_struct.hpp>

#include "spo/data/fashion_mnist.hpp"
#include "spo/io/progress.hpp"
#include "spo/judge/classifier.hpp"
#include "spo/loss/cross_entropy.hpp"
#include "spo/optim/adamw.hpp"

namespace spo::judge {

struct JudgeConfig {
  BOOST_HANA_DEFINE_STRUCT(JudgeConfig, (std::uint64_t, seed), (std::string, data_dir), (std::string, output_dir),
                           (std::int64_t, resolution), (std::int64_t, width), (std::string, data_half),
                           (std::int64_t, epochs), (std::int64_t, batch_size), (double, lr), (double, weight_decay));
};

inline void validate(const JudgeConfig& c) {
  SPO_CONFIG_CHECK(c.data_half == "all" || c.data_half == "first" || c.data_half == "second", "data_half",
                   "must be \"all\", \"first\" or \"second\", got \"" << c.data_half << "\"");
  SPO_CONFIG_CHECK(c.width >= 1, "width", "must be >= 1, got " << c.width);
  SPO_CONFIG_CHECK(c.epochs >= 1, "epochs", "must be >= 1, got " << c.epochs);
  SPO_CONFIG_CHECK(c.batch_size >= 1, "batch_size", "must be >= 1, got " << c.batch_size);
  SPO_CONFIG_CHECK(std::isfinite(c.lr) && c.lr > 0, "lr", "must be finite and > 0, got " << c.lr);
  SPO_CONFIG_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0, "weight_decay",
                   "must be finite and >= 0, got " << c.weight_decay);
  SPO_CONFIG_CHECK(c.resolution >= 28, "resolution", "must be >= 28 (Fashion-MNIST is 28x28), got " << c.resolution);
}

/// Class predictions argmax(logits) for images [N, 1, R, R], in batches, without gradients.
template <class Net, Scalar T>
std::vector<std::int64_t> predict(Net& net, const Tensor<T, cpu>& images, std::int64_t batch = 256) {
  nn::no_grad_guard guard;
  const std::int64_t n = images.size(0), per = images.shape().numel_from(1);
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < n; i += batch) {
    const std::int64_t m = std::min(batch, n - i);
    Shape s = images.shape();
    s[0] = m;
    Tensor<T, cpu> x = Tensor<T, cpu>::uninitialized(s);
    std::copy_n(images.data() + i * per, m * per, x.data());
    auto logits = net.forward(x);  // [m, K]
    for (std::int64_t r = 0; r < m; ++r) {
      std::int64_t arg = 0;
      for (std::int64_t k = 1; k < logits.size(1); ++k)
        if (logits[r * logits.size(1) + k] > logits[r * logits.size(1) + arg]) arg = k;
      out.push_back(arg);
    }
  }
  return out;
}

/// Top-1 accuracy of `net` on images [N, 1, R, R] with labels.
template <class Net, Scalar T>
double accuracy(Net& net, const Tensor<T, cpu>& images, std::span<const std::int64_t> labels,
                std::int64_t batch = 256) {
  SPO_CHECK(static_cast<std::int64_t>(labels.size()) == images.size(0),
            labels.size() << " labels for images of shape " << images.shape());
  const auto pred = predict(net, images, batch);
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == labels[i];
  return static_cast<double>(correct) / static_cast<double>(pred.size());
}

/// Trains a classifier; returns the test-set accuracy after the last epoch.
template <Scalar T>
double train_classifier(Classifier<T>& net, const JudgeConfig& c, const data::FashionMnist& train,
                        const data::FashionMnist& test) {
  validate(c);
  std::vector<std::int64_t> pool;
  const std::int64_t half = train.count / 2;
  for (std::int64_t i = 0; i < train.count; ++i)
    if (c.data_half == "all" || (c.data_half == "first" && i < half) || (c.data_half == "second" && i >= half))
      pool.push_back(i);
  optim::AdamW<T> opt(optim::AdamWOptions{c.lr, 0.9, 0.999, 1e-8, c.weight_decay});
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>(pool.size()) / c.batch_size;
  const std::int64_t total = steps_per_epoch * c.epochs;
  io::ProgressBar bar("judge", total);
  std::int64_t step = 0;
  for (std::int64_t epoch = 0; epoch < c.epochs; ++epoch) {
    const auto order =
        data::shuffled_indices(static_cast<std::int64_t>(pool.size()), c.seed, static_cast<std::uint64_t>(epoch));
    for (std::int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      std::vector<std::int64_t> idx, labels;
      for (std::int64_t i = 0; i < c.batch_size; ++i) {
        const std::int64_t k = pool[static_cast<std::size_t>(order[static_cast<std::size_t>(s * c.batch_size + i)])];
        idx.push_back(k);
        labels.push_back(train.labels[static_cast<std::size_t>(k)]);
      }
      auto x = data::to_tensor<T>(train, idx, c.resolution);
      nn::zero_grad(net);
      auto logits = net.forward(x);
      auto ce = loss::cross_entropy(logits, labels);
      net.backward(ce.grad);
      // cosine decay of the learning rate over the run
      opt.set_lr(c.lr * 0.5 *
                 (1.0 + std::cos(3.14159265358979 * static_cast<double>(step) / static_cast<double>(total))));
      opt.step(net);
      char fields[64];
      std::snprintf(fields, sizeof fields, "loss %.4f", ce.loss);
      bar.update(step + 1, fields);
    }
  }
  std::vector<std::int64_t> all(static_cast<std::size_t>(test.count));
  std::iota(all.begin(), all.end(), std::int64_t{0});
  std::vector<std::int64_t> labels(test.labels.begin(), test.labels.end());
  return accuracy(net, data::to_tensor<T>(test, all, c.resolution), labels);
}

}  // namespace spo::judge
