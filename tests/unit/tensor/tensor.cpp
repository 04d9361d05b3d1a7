// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "spo/tensor/cpu/gemm.hpp"
#include "spo/tensor/ops.hpp"

using namespace spo;

TEST_CASE("Shape basics and errors name the shapes") {
  Shape s{2, 3, 4};
  CHECK(s.rank() == 3);
  CHECK(s.numel() == 24);
  CHECK(s[-1] == 4);
  CHECK(s.numel_from(1) == 12);
  CHECK(s.str() == "[2, 3, 4]");
  CHECK_THROWS_WITH_AS(check_same_shape(s, Shape{2, 4}, "add"), doctest::Contains("[2, 3, 4] does not match [2, 4]"),
                       spo::error);
}

TEST_CASE("Tensor is a value: copies are deep, moves are O(1), views alias") {
  Tensor<float> a(Shape{2, 2}, {1, 2, 3, 4});
  Tensor<float> b = a;
  b[0] = 10;
  CHECK(a[0] == 1);
  const float* p = a.data();
  Tensor<float> c = std::move(a);
  CHECK(c.data() == p);
  CHECK(reinterpret_cast<std::uintptr_t>(c.data()) % 64 == 0);
  auto v = c.view().slice(1, 1);
  CHECK(v.shape() == Shape{1, 2});
  v[0] = 30;
  CHECK(c[2] == 30);
  CHECK_THROWS_AS(c.view().slice(1, 2), spo::error);
  CHECK_THROWS_AS(c.reshape(Shape{3}), spo::error);
  c.reshape(Shape{4});
  CHECK(c.shape() == Shape{4});
}

TEST_CASE("caching allocator reuses freed blocks of the same size class") {
  auto& pool = caching_allocator<cpu>::instance();
  void* first;
  {
    Tensor<float> t(Shape{1 << 20});
    first = t.data();
  }
  const auto cached = pool.cached_bytes();
  CHECK(cached >= (std::size_t{4} << 20));
  Tensor<float> u(Shape{(1 << 20) - 100});  // same 4 MiB class
  CHECK(static_cast<void*>(u.data()) == first);
  CHECK(caching_allocator<cpu>::size_class(1) == 256);
  CHECK(caching_allocator<cpu>::size_class(3000) == 4096);
  CHECK(caching_allocator<cpu>::size_class((1 << 20) + 1) == (std::size_t{2} << 20));
}

TEST_CASE("caching allocator: the peak of bytes in use holds until reset_peak") {
  auto& pool = caching_allocator<cpu>::instance();
  pool.reset_peak();
  const std::size_t base = pool.in_use_bytes();
  CHECK(pool.peak_in_use_bytes() == base);
  {
    Tensor<float> a(Shape{3 << 20});  // 12 MiB
    Tensor<float> b(Shape{1 << 20});  // 4 MiB
    CHECK(pool.peak_in_use_bytes() == base + (std::size_t{16} << 20));
  }
  CHECK(pool.in_use_bytes() == base);
  CHECK(pool.peak_in_use_bytes() == base + (std::size_t{16} << 20));  // freed blocks keep the peak
  { Tensor<float> c(Shape{1 << 20}); }                                // a cached block: below the peak
  CHECK(pool.peak_in_use_bytes() == base + (std::size_t{16} << 20));
  pool.reset_peak();
  CHECK(pool.peak_in_use_bytes() == base);
}

TEST_CASE(
    "caching allocator: an empty class above 1 MiB takes a free block up to twice its size, which goes back "
    "to its own class") {
  auto& pool = caching_allocator<cpu>::instance();
  pool.release_all();
  void* big;
  {
    Tensor<float> t(Shape{2 << 20});  // 8 MiB
    big = t.data();
  }
  {
    Tensor<float> u(Shape{(5 << 18) + 1});  // just over 5 MiB, class 6 MiB: empty, and 8 MiB is within twice it
    CHECK(static_cast<void*>(u.data()) == big);
    CHECK(pool.cached_bytes() == 0);
  }
  CHECK(pool.cached_bytes() == (std::size_t{8} << 20));  // back as an 8 MiB block
  {
    Tensor<float> again(Shape{2 << 20});
    CHECK(static_cast<void*>(again.data()) == big);
  }
  pool.release_all();
  { Tensor<float> half_mib(Shape{1 << 17}); }  // a free 512 KiB block
  Tensor<float> quarter(Shape{1 << 16});       // 256 KiB: classes up to 1 MiB take only their own blocks
  CHECK(pool.cached_bytes() == (std::size_t{512} << 10));
}

TEST_CASE("caching allocator: release_below hands back the smaller free blocks and keeps the others") {
  auto& pool = caching_allocator<cpu>::instance();
  pool.release_all();
  { Tensor<float> small(Shape{1 << 20}), large(Shape{2 << 20}); }  // 4 MiB and 8 MiB blocks, now free
  CHECK(pool.cached_bytes() == (std::size_t{12} << 20));
  pool.release_below((std::size_t{8} << 20) - 1);  // the class of a tensor just under 8 MiB is 8 MiB
  CHECK(pool.cached_bytes() == (std::size_t{8} << 20));
  Tensor<float> again(Shape{2 << 20});
  CHECK(pool.cached_bytes() == 0);  // the 8 MiB block was kept and is reused
  pool.release_below(std::size_t{1} << 30);
  CHECK(pool.cached_bytes() == 0);
}

TEST_CASE_TEMPLATE("gemm matches a naive triple loop for all transpositions", T, float, double) {
  Generator g{11, 0};
  const std::int64_t m = 37, n = 29, k = 53;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto a = randn<T>(ta ? Shape{k, m} : Shape{m, k}, g);
      auto b = randn<T>(tb ? Shape{n, k} : Shape{k, n}, g);
      auto c = randn<T>(Shape{m, n}, g);
      Tensor<T> ref = c;
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (std::int64_t p = 0; p < k; ++p)
            acc += double(ta ? a[p * m + i] : a[i * k + p]) * double(tb ? b[j * k + p] : b[p * n + j]);
          ref[i * n + j] = T(0.5 * acc + 0.25 * double(ref[i * n + j]));
        }
      cpu_kernels::gemm<T>(ta, tb, m, n, k, T(0.5), a.data(), ta ? m : k, b.data(), tb ? k : n, T(0.25), c.data(), n);
      CHECK(max_abs_diff<T>(c.view(), ref.view()) < (std::is_same_v<T, float> ? 1e-4 : 1e-12));
    }
}
