// Autograd entry points: libtorch's engine does the differentiation; this file only moves tensors across.
#include "common.h"

#include <memory>
#include <vector>

namespace crossmax {

namespace {

std::vector<at::Tensor> TensorArray(const Napi::Value& value, const char* what, bool allowNull) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), std::string(what) + " must be an array of tensors");
  Napi::Array a = value.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (allowNull && (e.IsNull() || e.IsUndefined())) {
      out.emplace_back();
    } else {
      out.push_back(TensorHandle::Get(e, what));
    }
  }
  return out;
}

// backward(outputs[], gradOutputs[] (null = ones for scalars), retainGraph, createGraph, inputs[] (may be empty))
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto outputs = TensorArray(info[0], "outputs", false);
  auto grads = TensorArray(info[1], "gradOutputs", true);
  bool retain = info[2].ToBoolean().Value();
  bool create = info[3].ToBoolean().Value();
  auto inputs = info.Length() > 4 && info[4].IsArray() ? TensorArray(info[4], "inputs", false) : std::vector<at::Tensor>{};
  return guarded(env, [&]() -> Napi::Value {
    torch::autograd::backward(outputs, grads, retain, create, inputs);
    return env.Undefined();
  });
}

// grad(outputs[], inputs[], gradOutputs[], retainGraph, createGraph, allowUnused) -> (Tensor|null)[]
// Like torch.autograd.grad: returns gradients without accumulating them into the inputs' .grad.
Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto outputs = TensorArray(info[0], "outputs", false);
  auto inputs = TensorArray(info[1], "inputs", false);
  auto grads = TensorArray(info[2], "gradOutputs", true);
  bool retain = info[3].ToBoolean().Value();
  bool create = info[4].ToBoolean().Value();
  bool allowUnused = info[5].ToBoolean().Value();
  return guarded(env, [&]() -> Napi::Value {
    auto result = torch::autograd::grad(outputs, inputs, grads, retain, create, allowUnused);
    Napi::Array out = Napi::Array::New(env, result.size());
    for (size_t i = 0; i < result.size(); ++i) out.Set(static_cast<uint32_t>(i), TensorHandle::Wrap(env, result[i]));
    return out;
  });
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool previous = at::GradMode::is_enabled();
  at::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), previous);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}

// Inference mode is an RAII guard in C++; JS scopes enter and leave it in strict LIFO order.
std::vector<std::unique_ptr<c10::InferenceMode>>& InferenceGuards() {
  static std::vector<std::unique_ptr<c10::InferenceMode>> guards;
  return guards;
}

Napi::Value EnterInferenceMode(const Napi::CallbackInfo& info) {
  InferenceGuards().push_back(std::make_unique<c10::InferenceMode>(true));
  return Napi::Number::New(info.Env(), static_cast<double>(InferenceGuards().size()));
}

Napi::Value ExitInferenceMode(const Napi::CallbackInfo& info) {
  auto& guards = InferenceGuards();
  if (guards.empty()) throw Napi::Error::New(info.Env(), "exitInferenceMode without a matching enterInferenceMode");
  guards.pop_back();
  return Napi::Number::New(info.Env(), static_cast<double>(guards.size()));
}

}  // namespace

void InitAutograd(Napi::Env env, Napi::Object exports) {
  exports.Set("backward", Napi::Function::New(env, Backward));
  exports.Set("grad", Napi::Function::New(env, Grad));
  exports.Set("setGradEnabled", Napi::Function::New(env, SetGradEnabled));
  exports.Set("isGradEnabled", Napi::Function::New(env, IsGradEnabled));
  exports.Set("enterInferenceMode", Napi::Function::New(env, EnterInferenceMode));
  exports.Set("exitInferenceMode", Napi::Function::New(env, ExitInferenceMode));
}

}  // namespace crossmax
