// A caching allocator for libtorch's CPU tensors.
//
// Why: JS disposes a tensor's memory at once, but the small native wrapper objects of disposed handles live on
// until the garbage collector and a later event-loop turn finalise them. In a synchronous loop (a training epoch,
// an attack) those small objects land between the large blocks glibc hands out for tensors, malloc splits the
// freed large blocks to serve them, and the heap grows without bound: a ResNet-18 training loop grew by ~35 MB a
// step. Making every large tensor an mmap instead stops the growth but costs page faults on each allocation (a
// several-fold slowdown). Keeping freed tensor blocks in size classes and handing them back for the next tensor of
// that class (as PyTorch does for CUDA memory) keeps the heap at the working set and avoids both costs.
#include "common.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace crossmax {

namespace {

constexpr size_t kAlignment = 64;  // c10's gAlignment: what vectorised kernels expect

// Size classes: multiples of 64 bytes up to 512, then eight classes per power of two (at most 12.5% slack).
size_t SizeClass(size_t n) {
  if (n <= 512) return (n + 63) & ~size_t(63);
  size_t power = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = power / 8;
  return (n + step - 1) / step * step;
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(size_t limitBytes) : limit_(limitBytes) {}

  // libtorch < 2.3 declares allocate const, later versions non-const: both are defined so either overrides.
  c10::DataPtr allocate(size_t n) const { return const_cast<CachingCpuAllocator*>(this)->Take(n); }
  c10::DataPtr allocate(size_t n) { return Take(n); }
  // Pure virtual in libtorch >= 2.3; an ordinary member before.
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::Give; }

  struct Stats {
    size_t inUseBytes, cachedBytes, limitBytes, hits, misses;
  };
  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {inUse_, cached_, limit_, hits_, misses_};
  }
  void setLimit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = bytes;
    TrimLocked(limit_);
  }
  void emptyCache() {
    std::lock_guard<std::mutex> lock(mutex_);
    TrimLocked(0);
  }

  static CachingCpuAllocator* instance;

 private:
  c10::DataPtr Take(size_t n) {
    if (n == 0) return {nullptr, nullptr, &CachingCpuAllocator::Give, c10::Device(c10::DeviceType::CPU)};
    const size_t size = SizeClass(n);
    void* ptr = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        ++hits_;
      } else {
        ++misses_;
      }
      if (ptr != nullptr) {
        sizes_[ptr] = size;
        inUse_ += size;
      }
    }
    if (ptr == nullptr) {
      if (posix_memalign(&ptr, kAlignment, size) != 0 || ptr == nullptr) {
        // Give cached memory back and try once more before reporting out-of-memory.
        emptyCache();
        if (posix_memalign(&ptr, kAlignment, size) != 0 || ptr == nullptr) {
          TORCH_CHECK(false, "crossmax: out of CPU memory allocating ", n, " bytes");
        }
      }
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[ptr] = size;
      inUse_ += size;
    }
    return {ptr, ptr, &CachingCpuAllocator::Give, c10::Device(c10::DeviceType::CPU)};
  }

  static void Give(void* ptr) {
    if (ptr != nullptr) instance->Return(ptr);
  }

  void Return(void* ptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sizes_.find(ptr);
    if (it == sizes_.end()) {
      std::free(ptr);  // not ours (cannot happen through this deleter); free it rather than leak
      return;
    }
    const size_t size = it->second;
    sizes_.erase(it);
    inUse_ -= size;
    if (cached_ + size > limit_) TrimLocked(limit_ > size ? limit_ - size : 0);
    if (cached_ + size > limit_) {
      std::free(ptr);
      return;
    }
    free_[size].push_back(ptr);
    cached_ += size;
  }

  void TrimLocked(size_t target) {
    for (auto it = free_.begin(); it != free_.end() && cached_ > target;) {
      auto& blocks = it->second;
      while (!blocks.empty() && cached_ > target) {
        std::free(blocks.back());
        blocks.pop_back();
        cached_ -= it->first;
      }
      it = blocks.empty() ? free_.erase(it) : std::next(it);
    }
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> sizes_;
  size_t limit_;
  size_t inUse_ = 0, cached_ = 0, hits_ = 0, misses_ = 0;
};

CachingCpuAllocator* CachingCpuAllocator::instance = nullptr;

size_t DefaultLimitBytes() {
  if (const char* env = std::getenv("CROSSMAX_CPU_CACHE_MB")) return static_cast<size_t>(std::atoll(env)) << 20;
  return size_t(2048) << 20;
}

Napi::Value CpuAllocatorStats(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  if (CachingCpuAllocator::instance == nullptr) {
    out.Set("enabled", false);
    return out;
  }
  auto s = CachingCpuAllocator::instance->stats();
  out.Set("enabled", true);
  out.Set("inUseBytes", static_cast<double>(s.inUseBytes));
  out.Set("cachedBytes", static_cast<double>(s.cachedBytes));
  out.Set("limitBytes", static_cast<double>(s.limitBytes));
  out.Set("hits", static_cast<double>(s.hits));
  out.Set("misses", static_cast<double>(s.misses));
  return out;
}

Napi::Value EmptyCpuCache(const Napi::CallbackInfo& info) {
  if (CachingCpuAllocator::instance != nullptr) CachingCpuAllocator::instance->emptyCache();
  return info.Env().Undefined();
}

Napi::Value SetCpuCacheLimit(const Napi::CallbackInfo& info) {
  double mb = info[0].As<Napi::Number>().DoubleValue();
  if (!(mb >= 0)) throw Napi::RangeError::New(info.Env(), "cache limit must be a non-negative number of MB");
  if (CachingCpuAllocator::instance != nullptr) CachingCpuAllocator::instance->setLimit(static_cast<size_t>(mb * 1048576.0));
  return info.Env().Undefined();
}

}  // namespace

void InitCpuAllocator(Napi::Env env, Napi::Object exports) {
  const char* disabled = std::getenv("CROSSMAX_CPU_CACHE");
  if (CachingCpuAllocator::instance == nullptr && !(disabled && std::string(disabled) == "0")) {
    // Never deleted: tensors freed during process exit still return their blocks to it.
    CachingCpuAllocator::instance = new CachingCpuAllocator(DefaultLimitBytes());
    // Priority above the default CPU allocator's registration, so later registrations at priority 0 cannot undo it.
    c10::SetAllocator(c10::DeviceType::CPU, CachingCpuAllocator::instance, 1);
  }
  exports.Set("cpuAllocatorStats", Napi::Function::New(env, CpuAllocatorStats));
  exports.Set("emptyCpuCache", Napi::Function::New(env, EmptyCpuCache));
  exports.Set("setCpuCacheLimit", Napi::Function::New(env, SetCpuCacheLimit));
}

}  // namespace crossmax
