// SPDX-License-Identifier: MIT
/// @brief One model on every rank: rank 0's parameters broadcast, and a hash of the parameters compared across ranks.
#pragma once

#include <cstdint>
#include <span>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/dist/exchange.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::dist {

namespace detail {
inline std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
}  // namespace detail

/// FNV-1a (64 bit) over every parameter's name and value bytes, in visiting order (device values via the host).
template <class Model>
std::uint64_t parameter_hash(Model& model) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  model.visit_parameters(
      [&](std::string_view name, auto& p) {
        h = detail::fnv1a(h, name.data(), name.size());
        using V = std::remove_cvref_t<decltype(p.value)>;
        using E = typename V::value_type;
        if constexpr (V::device_type::host_accessible) {
          h = detail::fnv1a(h, p.value.data(), static_cast<std::size_t>(p.value.numel()) * sizeof(E));
        } else {
          const auto c = transfer<cpu>(p.value);
          h = detail::fnv1a(h, c.data(), static_cast<std::size_t>(c.numel()) * sizeof(E));
        }
      },
      {});
  return h;
}

/// Every parameter of `model` set to rank 0's values (DistributedDataParallel's construction; device values via the
/// host).
template <Communicator C, class Model>
void broadcast_parameters(C& comm, Model& model) {
  if (comm.size() == 1) return;
  model.visit_parameters(
      [&](std::string_view, auto& p) {
        using V = std::remove_cvref_t<decltype(p.value)>;
        using E = typename V::value_type;
        // A broadcast copies bits: 16-bit values travel as their bytes.
        auto send = [&](E* data, std::int64_t n) {
          if constexpr (Element<E>) {
            comm.broadcast(std::span<E>(data, static_cast<std::size_t>(n)), 0);
          } else {
            comm.broadcast(
                std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(data), static_cast<std::size_t>(n) * sizeof(E)),
                0);
          }
        };
        if constexpr (V::device_type::host_accessible) {
          send(p.value.data(), p.value.numel());
        } else {
          auto h = transfer<cpu>(p.value);
          send(h.data(), h.numel());
          p.value = transfer<typename V::device_type>(h);
        }
      },
      {});
}

/*!
  ENSURES
    - compares parameter_hash(model) (mixed with `extra`, e.g. the optimizer step) across the ranks of comm
    - throws spo::error on every rank, naming `when` and each rank's hash, when they are not all equal (a run whose
      replicas drifted apart must not write a checkpoint that only rank 0's model is in)
!*/
template <Communicator C, class Model>
void verify_replicas(C& comm, Model& model, std::string_view when, std::uint64_t extra = 0) {
  if (comm.size() == 1) return;
  std::uint64_t h = parameter_hash(model);
  h = detail::fnv1a(h, &extra, sizeof extra);
  const auto all = all_gather_values(comm, std::span<const std::uint64_t>(&h, 1));
  bool same = true;
  for (const auto v : all) same = same && v == all.front();
  if (same) return;
  std::ostringstream os;
  for (std::size_t r = 0; r < all.size(); ++r) os << (r ? ", " : "") << "rank " << r << " " << std::hex << all[r];
  SPO_CHECK(same, "the ranks' parameters differ " << when << " (parameter hashes: " << os.str()
                                                  << "); the run stops before writing the checkpoint");
}

}  // namespace spo::dist
