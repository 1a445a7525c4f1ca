#include "common.h"

#include <atomic>
#include <cstring>

namespace crossmax {

namespace {

// Tags distinguish our handles from look-alike JS objects in O(1), without instanceof chains.
constexpr napi_type_tag kTensorTag = {0x63726f73736d6178ULL, 0x54656e736f723031ULL};

Napi::FunctionReference* gConstructor = nullptr;
// Handed from Wrap() to the constructor: N-API constructors take only JS arguments.
at::Tensor* gPendingTensor = nullptr;
std::atomic<int64_t> gLiveHandles{0};

int64_t HostBytes(const at::Tensor& t) {
  // Only host memory is reported to V8 (it drives GC pressure); views share storage and so over-count,
  // which only makes the collector more eager.
  if (!t.defined() || !t.has_storage() || !t.device().is_cpu()) return 0;
  return static_cast<int64_t>(t.storage().nbytes());
}

}  // namespace

void TensorHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(
      env, "TensorHandle",
      {
          InstanceMethod("dispose", &TensorHandle::Dispose),
          InstanceAccessor("disposed", &TensorHandle::IsDisposed, nullptr),
          InstanceAccessor("shape", &TensorHandle::Shape, nullptr),
          InstanceAccessor("strides", &TensorHandle::Strides, nullptr),
          InstanceAccessor("dtype", &TensorHandle::DType, nullptr),
          InstanceAccessor("device", &TensorHandle::Device, nullptr),
          InstanceAccessor("numel", &TensorHandle::Numel, nullptr),
          InstanceAccessor("dim", &TensorHandle::Dim, nullptr),
          InstanceAccessor("nbytes", &TensorHandle::Nbytes, nullptr),
          InstanceAccessor("version", &TensorHandle::Version, nullptr),
          InstanceMethod("isContiguous", &TensorHandle::IsContiguous),
          InstanceAccessor("requiresGrad", &TensorHandle::RequiresGrad, nullptr),
          InstanceMethod("setRequiresGrad", &TensorHandle::SetRequiresGrad),
          InstanceAccessor("isLeaf", &TensorHandle::IsLeaf, nullptr),
          InstanceMethod("grad", &TensorHandle::Grad),
          InstanceMethod("setGrad", &TensorHandle::SetGrad),
          InstanceMethod("retainGrad", &TensorHandle::RetainGrad),
          InstanceMethod("item", &TensorHandle::Item),
          InstanceMethod("copyToArrayBuffer", &TensorHandle::CopyToArrayBuffer),
          InstanceMethod("viewAsArrayBuffer", &TensorHandle::ViewAsArrayBuffer),
          InstanceMethod("sameStorage", &TensorHandle::SameStorage),
      });
  gConstructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  exports.Set("TensorHandle", ctor);
  exports.Set("liveHandleCount", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::Number::New(info.Env(), static_cast<double>(gLiveHandles.load()));
              }));
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  if (gPendingTensor == nullptr) {
    throw Napi::TypeError::New(info.Env(), "TensorHandle cannot be constructed from JavaScript; use the tensor API");
  }
  tensor_ = std::move(*gPendingTensor);
  gPendingTensor = nullptr;
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
  reportedBytes_ = HostBytes(tensor_);
  if (reportedBytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reportedBytes_);
  ++gLiveHandles;
}

TensorHandle::~TensorHandle() {
  // Finalizer path (the JS object was garbage-collected without dispose()). V8's external-memory
  // counter cannot be adjusted from a finalizer safely in all Node versions, so it is left as is;
  // deterministic disposal (dispose/using/scopes) is the supported path.
  if (!released_) --gLiveHandles;
}

void TensorHandle::Release(Napi::Env env) {
  if (released_) return;
  released_ = true;
  tensor_ = at::Tensor();
  if (reportedBytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -reportedBytes_);
  reportedBytes_ = 0;
  --gLiveHandles;
}

Napi::Value TensorHandle::Wrap(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return env.Null();
  gPendingTensor = &tensor;
  Napi::Object obj = gConstructor->New({});
  return obj;
}

bool TensorHandle::IsTensor(const Napi::Value& value) {
  return value.IsObject() && value.As<Napi::Object>().CheckTypeTag(&kTensorTag);
}

const at::Tensor& TensorHandle::Get(const Napi::Value& value, const char* what) {
  if (!IsTensor(value)) {
    throw Napi::TypeError::New(value.Env(), std::string("expected a tensor for ") + what);
  }
  TensorHandle* handle = Napi::ObjectWrap<TensorHandle>::Unwrap(value.As<Napi::Object>());
  if (handle->released_) {
    throw Napi::Error::New(value.Env(), std::string("tensor passed as ") + what + " was already disposed");
  }
  return handle->tensor_;
}

int64_t TensorHandle::LiveCount() { return gLiveHandles.load(); }

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());
  return info.Env().Undefined();
}

Napi::Value TensorHandle::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), released_);
}

#define CHECK_LIVE(info)                                                                 \
  if (released_) throw Napi::Error::New((info).Env(), "tensor was already disposed");

static Napi::Array ToJsArray(Napi::Env env, c10::IntArrayRef values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(values[i]));
  return out;
}

Napi::Value TensorHandle::Shape(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return ToJsArray(info.Env(), tensor_.sizes());
}

Napi::Value TensorHandle::Strides(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return ToJsArray(info.Env(), tensor_.strides());
}

Napi::Value TensorHandle::DType(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Number::New(info.Env(), static_cast<int>(tensor_.scalar_type()));
}

Napi::Value TensorHandle::Device(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::String::New(info.Env(), tensor_.device().str());
}

Napi::Value TensorHandle::Numel(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Number::New(info.Env(), static_cast<double>(tensor_.numel()));
}

Napi::Value TensorHandle::Dim(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Number::New(info.Env(), static_cast<double>(tensor_.dim()));
}

Napi::Value TensorHandle::Nbytes(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Number::New(info.Env(), static_cast<double>(tensor_.numel() * tensor_.element_size()));
}

Napi::Value TensorHandle::Version(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Number::New(info.Env(), static_cast<double>(tensor_._version()));
}

Napi::Value TensorHandle::IsContiguous(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Boolean::New(info.Env(), tensor_.is_contiguous());
}

Napi::Value TensorHandle::RequiresGrad(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Boolean::New(info.Env(), tensor_.requires_grad());
}

Napi::Value TensorHandle::SetRequiresGrad(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return guarded(info.Env(), [&]() -> Napi::Value {
    tensor_.set_requires_grad(info[0].ToBoolean().Value());
    return info.This();
  });
}

Napi::Value TensorHandle::IsLeaf(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Napi::Boolean::New(info.Env(), tensor_.is_leaf());
}

Napi::Value TensorHandle::Grad(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return Wrap(info.Env(), tensor_.grad());
}

Napi::Value TensorHandle::SetGrad(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info[0].IsNull() || info[0].IsUndefined()) {
      tensor_.mutable_grad() = at::Tensor();
    } else {
      tensor_.mutable_grad() = Get(info[0], "grad");
    }
    return info.Env().Undefined();
  });
}

Napi::Value TensorHandle::RetainGrad(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return guarded(info.Env(), [&]() -> Napi::Value {
    tensor_.retain_grad();
    return info.Env().Undefined();
  });
}

Napi::Value TensorHandle::Item(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return guarded(info.Env(), [&]() -> Napi::Value {
    at::Scalar s = tensor_.item();
    if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(info.Env(), static_cast<double>(s.toLong()));
    return Napi::Number::New(info.Env(), s.toDouble());
  });
}

Napi::Value TensorHandle::CopyToArrayBuffer(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return guarded(info.Env(), [&]() -> Napi::Value {
    at::Tensor host = tensor_.detach().to(at::kCPU).contiguous();
    size_t nbytes = static_cast<size_t>(host.numel()) * host.element_size();
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(info.Env(), nbytes);
    if (nbytes > 0) std::memcpy(buffer.Data(), host.data_ptr(), nbytes);
    return buffer;
  });
}

Napi::Value TensorHandle::ViewAsArrayBuffer(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!tensor_.device().is_cpu() || !tensor_.is_contiguous()) {
      throw Napi::Error::New(info.Env(), "viewAsArrayBuffer needs a contiguous CPU tensor (copy it first)");
    }
    size_t nbytes = static_cast<size_t>(tensor_.numel()) * tensor_.element_size();
    if (nbytes == 0) return Napi::ArrayBuffer::New(info.Env(), 0);
    // The buffer keeps its own reference to the tensor, so disposing the handle cannot free memory under it.
    auto* keepAlive = new at::Tensor(tensor_.detach());
    return Napi::ArrayBuffer::New(info.Env(), keepAlive->data_ptr(), nbytes,
                                  [](Napi::Env, void*, at::Tensor* owner) { delete owner; }, keepAlive);
  });
}

Napi::Value TensorHandle::SameStorage(const Napi::CallbackInfo& info) {
  CHECK_LIVE(info);
  const at::Tensor& other = Get(info[0], "other");
  return Napi::Boolean::New(info.Env(), tensor_.has_storage() && other.has_storage() &&
                                            tensor_.storage().is_alias_of(other.storage()));
}

}  // namespace crossmax
