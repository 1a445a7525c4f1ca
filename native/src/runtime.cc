// Process-wide libtorch state: threads, random seeds and generators, host-buffer transfer, build facts.
#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>

#include <cstring>

namespace crossmax {

namespace {

constexpr napi_type_tag kGeneratorTag = {0x63726f73736d6178ULL, 0x47656e6572613031ULL};

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1) throw Napi::RangeError::New(info.Env(), "thread count must be at least 1");
  at::set_num_threads(n);
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value SetNumInteropThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    at::set_num_interop_threads(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  });
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  // Seeds the default CPU generator and, where libtorch has CUDA, every CUDA generator (torch.manual_seed).
  uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  return guarded(info.Env(), [&]() -> Napi::Value {
    torch::manual_seed(seed);
    return info.Env().Undefined();
  });
}

// newGenerator(seed, device) -> opaque generator object
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  std::string device = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "cpu";
  return guarded(env, [&]() -> Napi::Value {
    c10::Device dev(device);
    at::Generator gen;
    if (dev.is_cpu()) {
      gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    } else {
      // CUDA generators come from the registered CUDA hooks, so a CPU-only build still links.
      gen = at::globalContext().defaultGenerator(dev).clone();
      gen.set_current_seed(seed);
    }
    auto* owned = new at::Generator(std::move(gen));
    Napi::External<at::Generator> ext =
        Napi::External<at::Generator>::New(env, owned, [](Napi::Env, at::Generator* g) { delete g; });
    ext.TypeTag(&kGeneratorTag);
    return ext;
  });
}

Napi::Value GeneratorSeed(const Napi::CallbackInfo& info) {
  at::Generator gen = UnwrapGenerator(info[0]);
  if (info.Length() > 1 && info[1].IsNumber()) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()));
  }
  return Napi::Number::New(info.Env(), static_cast<double>(gen.current_seed()));
}

Napi::Value GeneratorState(const Napi::CallbackInfo& info) {
  at::Generator gen = UnwrapGenerator(info[0]);
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(gen.mutex());
    return TensorHandle::Wrap(info.Env(), gen.get_state());
  });
}

Napi::Value SetGeneratorState(const Napi::CallbackInfo& info) {
  at::Generator gen = UnwrapGenerator(info[0]);
  const at::Tensor& state = TensorHandle::Get(info[1], "state");
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return info.Env().Undefined();
  });
}

// Default CPU generator's state, for checkpoints that must resume bit-for-bit.
Napi::Value DefaultGeneratorState(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    if (info.Length() > 0 && TensorHandle::IsTensor(info[0])) {
      gen.set_state(TensorHandle::Get(info[0], "state"));
      return info.Env().Undefined();
    }
    return TensorHandle::Wrap(info.Env(), gen.get_state());
  });
}

// fromBuffer(typedArrayOrArrayBuffer, shape, dtypeCode, device) -> tensor (a copy: JS may reuse its buffer)
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data = nullptr;
  size_t byteLength = 0;
  if (info[0].IsTypedArray()) {
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    byteLength = ta.ByteLength();
  } else if (info[0].IsArrayBuffer()) {
    Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
    data = static_cast<const uint8_t*>(ab.Data());
    byteLength = ab.ByteLength();
  } else if (info[0].IsDataView()) {
    Napi::DataView dv = info[0].As<Napi::DataView>();
    data = static_cast<const uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    byteLength = dv.ByteLength();
  } else {
    throw Napi::TypeError::New(env, "fromBuffer expects a TypedArray, DataView or ArrayBuffer");
  }
  std::vector<int64_t> shape = ToInt64Vector(info[1], "shape");
  auto dtype = static_cast<at::ScalarType>(info[2].As<Napi::Number>().Int32Value());
  std::string device = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "cpu";
  return guarded(env, [&]() -> Napi::Value {
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    size_t expected = static_cast<size_t>(t.numel()) * t.element_size();
    if (expected != byteLength) {
      throw Napi::RangeError::New(env, "fromBuffer: shape [" + c10::Join(",", shape) + "] of " +
                                           std::string(c10::toString(dtype)) + " needs " + std::to_string(expected) +
                                           " bytes, the buffer has " + std::to_string(byteLength));
    }
    if (expected > 0) std::memcpy(t.data_ptr(), data, expected);
    c10::Device dev(device);
    if (!dev.is_cpu()) t = t.to(dev);
    return TensorHandle::Wrap(env, t);
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("torchVersionMajor", TORCH_VERSION_MAJOR);
  out.Set("config", at::show_config());
  out.Set("parallelInfo", at::get_parallel_info());
  out.Set("mkldnn", at::hasMKLDNN());
  out.Set("openmp", at::hasOpenMP());
  out.Set("mkl", at::hasMKL());
  bool cuda = torch::cuda::is_available();
  out.Set("cudaAvailable", cuda);
  out.Set("cudaDeviceCount", static_cast<double>(cuda ? torch::cuda::device_count() : 0));
  out.Set("cudnnAvailable", cuda && torch::cuda::cudnn_is_available());
  out.Set("cxx11Abi", static_cast<bool>(_GLIBCXX_USE_CXX11_ABI));
  return out;
}

Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (torch::cuda::is_available()) torch::cuda::synchronize();
    return info.Env().Undefined();
  });
}

}  // namespace

bool IsGenerator(const Napi::Value& value) {
  return value.IsExternal() && value.As<Napi::Object>().CheckTypeTag(&kGeneratorTag);
}

at::Generator UnwrapGenerator(const Napi::Value& value) {
  if (!IsGenerator(value)) throw Napi::TypeError::New(value.Env(), "expected a Generator");
  return *value.As<Napi::External<at::Generator>>().Data();
}

void InitRuntime(Napi::Env env, Napi::Object exports) {
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("setNumInteropThreads", Napi::Function::New(env, SetNumInteropThreads));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed));
  exports.Set("newGenerator", Napi::Function::New(env, NewGenerator));
  exports.Set("generatorSeed", Napi::Function::New(env, GeneratorSeed));
  exports.Set("generatorState", Napi::Function::New(env, GeneratorState));
  exports.Set("setGeneratorState", Napi::Function::New(env, SetGeneratorState));
  exports.Set("defaultGeneratorState", Napi::Function::New(env, DefaultGeneratorState));
  exports.Set("fromBuffer", Napi::Function::New(env, FromBuffer));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("cudaSynchronize", Napi::Function::New(env, CudaSynchronize));
}

}  // namespace crossmax
