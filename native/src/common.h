// Shared declarations of the crossmax native addon: a thin layer that exposes libtorch tensors and
// every ATen operator (through the dispatcher's boxed calling convention) to JavaScript.
// Nothing model-specific lives here: the typed, idiomatic API is written in TypeScript (src/tensor).
#pragma once

#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <string>

namespace crossmax {

// Runs `body`, turning every C++ exception (c10::Error from libtorch, std::exception) into a JS exception
// that carries libtorch's message, so no libtorch failure can abort the Node.js process.
template <typename Body>
auto guarded(const Napi::Env& env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// A JS object owning one at::Tensor (shared TensorImpl semantics, like a Python torch.Tensor).
class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Value Wrap(Napi::Env env, at::Tensor tensor);
  static bool IsTensor(const Napi::Value& value);
  // The tensor behind a JS handle; throws a JS TypeError naming `what` if it is not a live tensor handle.
  static const at::Tensor& Get(const Napi::Value& value, const char* what);
  static int64_t LiveCount();

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  void Release(Napi::Env env);

  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Strides(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Numel(const Napi::CallbackInfo& info);
  Napi::Value Dim(const Napi::CallbackInfo& info);
  Napi::Value IsContiguous(const Napi::CallbackInfo& info);
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value IsLeaf(const Napi::CallbackInfo& info);
  Napi::Value Grad(const Napi::CallbackInfo& info);
  Napi::Value SetGrad(const Napi::CallbackInfo& info);
  Napi::Value RetainGrad(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value CopyToArrayBuffer(const Napi::CallbackInfo& info);
  Napi::Value ViewAsArrayBuffer(const Napi::CallbackInfo& info);
  Napi::Value Nbytes(const Napi::CallbackInfo& info);
  Napi::Value SameStorage(const Napi::CallbackInfo& info);
  Napi::Value Version(const Napi::CallbackInfo& info);

  at::Tensor tensor_;
  bool released_ = false;
  int64_t reportedBytes_ = 0;
};

// Opaque generator objects (seedable random streams), passed where an ATen schema takes a Generator.
at::Generator UnwrapGenerator(const Napi::Value& value);
bool IsGenerator(const Napi::Value& value);

void InitDispatch(Napi::Env env, Napi::Object exports);
void InitAutograd(Napi::Env env, Napi::Object exports);
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitCpuAllocator(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);

// Converts a libtorch result (tensor, list, tuple, number, none) to a JS value.
Napi::Value FromIValue(Napi::Env env, const c10::IValue& value);

std::vector<int64_t> ToInt64Vector(const Napi::Value& value, const char* what);

}  // namespace crossmax
