// SPDX-License-Identifier: MIT
/// @brief Variable-size exchanges between ranks: rows of tensors, numbers and strings gathered in rank order.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spo/dist/concepts.hpp"
#include "spo/tensor/tensor.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::dist {

/// The bytes of a trivially copyable value range.
template <class T>
requires std::is_trivially_copyable_v<T> std::span<const std::uint8_t> as_bytes(std::span<const T> v) {
  return {reinterpret_cast<const std::uint8_t*>(v.data()), v.size_bytes()};
}

/// Every rank's values, concatenated in rank order (torch's all_gather of different sizes).
template <Communicator C, class T>
requires std::is_trivially_copyable_v<T> std::vector<T> all_gather_values(C& comm, std::span<const T> mine) {
  std::vector<T> out;
  for (const auto& block : comm.all_gather(as_bytes(mine))) {
    SPO_CHECK(block.size() % sizeof(T) == 0, "all_gather_values: a block of " << block.size() << " bytes");
    const std::size_t at = out.size();
    out.resize(at + block.size() / sizeof(T));
    if (!block.empty()) std::memcpy(out.data() + at, block.data(), block.size());
  }
  return out;
}

/// Every rank's strings, concatenated in rank order.
template <Communicator C>
std::vector<std::string> all_gather_strings(C& comm, const std::vector<std::string>& mine) {
  std::vector<std::uint8_t> bytes;
  for (const auto& s : mine) {
    const auto n = static_cast<std::uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::uint8_t*>(&n);
    bytes.insert(bytes.end(), p, p + sizeof n);
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  std::vector<std::string> out;
  for (const auto& block : comm.all_gather(bytes)) {
    for (std::size_t at = 0; at < block.size();) {
      std::uint64_t n = 0;
      SPO_CHECK(at + sizeof n <= block.size(), "all_gather_strings: a truncated block");
      std::memcpy(&n, block.data() + at, sizeof n);
      at += sizeof n;
      SPO_CHECK(at + n <= block.size(), "all_gather_strings: a truncated block");
      out.emplace_back(reinterpret_cast<const char*>(block.data() + at), n);
      at += n;
    }
  }
  return out;
}

/*!
  ENSURES
    - the rows (dim 0) of every rank's x, concatenated in rank order, on x's device: [sum_r n_r, ...]; the other
      dimensions must agree (a rank with no rows may pass an empty tensor)
    - staged through the host (the rows of a round's pairs: small next to the step that made them)
!*/
template <Communicator C, Scalar T, Device D>
requires Element<T> Tensor<T, D> all_gather_rows(C& comm, const Tensor<T, D>& x, Shape row_shape) {
  const Tensor<T, cpu> h = transfer<cpu>(x);
  const std::vector<T> all = all_gather_values(comm, std::span<const T>(h.data(), static_cast<std::size_t>(h.numel())));
  const std::int64_t per = row_shape.numel();
  SPO_CHECK(per > 0 && static_cast<std::int64_t>(all.size()) % per == 0,
            "all_gather_rows: " << all.size() << " elements are not whole rows of " << row_shape);
  Shape s{static_cast<std::int64_t>(all.size()) / per};
  for (const std::int64_t d : row_shape) s.push_back(d);
  auto out = Tensor<T, cpu>::uninitialized(s);  // [sum_r n_r, ...]
  std::copy(all.begin(), all.end(), out.data());
  return transfer<D>(out);
}

}  // namespace spo::dist
