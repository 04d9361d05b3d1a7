// SPDX-License-Identifier: MIT
/// @brief Activation checkpointing as a policy of a model: a checkpointed block keeps only its inputs in the forward
/// and recomputes its activations at the start of its backward.
#pragma once

#include <functional>
#include <tuple>
#include <utility>

#include "spo/core/error.hpp"
#include "spo/nn/grad_mode.hpp"

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    Block with activation checkpointing (torch.utils.checkpoint per block): in grad mode forward(args...) runs the
    block without keeping activations and stores copies of its inputs; backward(dy) first reruns the block's forward
    on them in grad mode, then returns the block's backward. The recomputation sees the same inputs and weights and
    draws no random numbers, so gradients equal the uncheckpointed block's bitwise; the cost is one extra forward
    of the block, the saving its activations minus its inputs. Outside grad mode it is the block.
  REQUIRES
    - Block: forward(args...) -> output, keeping what backward needs only when nn::grad_enabled(); backward(dy)
!*/
template <class Block>
class Checkpointed : public Block {
 public:
  using Block::Block;
  Checkpointed() = default;
  explicit Checkpointed(Block b) : Block(std::move(b)) {}

  template <class... Args>
  auto forward(const Args&... args) {
    if (!grad_enabled()) {
      recompute_ = nullptr;
      return Block::forward(args...);
    }
    recompute_ = [inputs = std::make_tuple(args...)](Block& b) {
      std::apply([&b](const auto&... a) { b.forward(a...); }, inputs);
    };
    const no_grad_guard keep_nothing;
    return Block::forward(args...);
  }

  template <class Dy>
  auto backward(const Dy& dy) {
    SPO_CHECK(recompute_ != nullptr, "Checkpointed block: backward without a forward in grad mode");
    {
      const enable_grad_guard keep;
      recompute_(static_cast<Block&>(*this));
    }
    recompute_ = nullptr;
    return Block::backward(dy);
  }

 private:
  std::function<void(Block&)> recompute_;  ///< the forward on copies of the inputs (no pointer to this block)
};

/// The model policy that checkpoints nothing.
struct NoCheckpointing {
  template <class Block>
  using apply = Block;
  static constexpr bool enabled = false;
};

/// The model policy that checkpoints every block it is applied to (a UNet: every resnet and transformer block).
struct BlockCheckpointing {
  template <class Block>
  using apply = Checkpointed<Block>;
  static constexpr bool enabled = true;
};

}  // namespace spo::nn
