// Memory read bandwidth of this machine, for the benchmarks' floor_fraction: every core
// streams its share of a buffer far larger than the caches, as a decode step streams weights.
#include <chrono>
#include <cstdint>
#include <vector>

#include "lora_kernels.h"

extern "C" double ColdReadBandwidthGBps(int64_t bytes, int reps) {
  using namespace cold;
  const int64_t n = bytes / sizeof(float);
  std::vector<float> data(n, 1.0f);  // touched once, so pages are resident before timing
  const int64_t chunk = 1 << 20, items = (n + chunk - 1) / chunk;
  std::vector<float> sums(items);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    ForEach(items, true, [&](int64_t i) {
      Vec acc[4] = {};
      const int64_t end = (i + 1) * chunk < n ? (i + 1) * chunk : n;
      int64_t k = i * chunk;
      for (; k + 4 * kLanes <= end; k += 4 * kLanes)
        for (int j = 0; j < 4; ++j) acc[j] += Load(data.data() + k + j * kLanes);
      sums[i] = Sum(acc[0] + acc[1] + acc[2] + acc[3]);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (bytes / s / 1e9 > best) best = bytes / s / 1e9;
  }
  return sums[0] > -1 ? best : 0;  // the sums are read so the loads cannot be optimised away
}
