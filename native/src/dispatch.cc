// Every ATen operator, reached through libtorch's dispatcher with its boxed calling convention:
// arguments are converted from JS values by the operator's own schema (libtorch's declarations), so the
// binding needs no hand-written code per operator and autograd, CPU and CUDA kernels all apply as in PyTorch.
#include "common.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <sstream>
#include <vector>

namespace crossmax {

namespace {

struct OpEntry {
  c10::OperatorHandle handle;
  std::string name;
};

std::vector<OpEntry>& Registry() {
  static std::vector<OpEntry> registry;
  return registry;
}

[[noreturn]] void ArgError(const Napi::Env& env, const OpEntry& op, const c10::Argument& arg, const std::string& why) {
  std::ostringstream msg;
  msg << op.name << ": argument '" << arg.name() << "' " << why << " (schema: " << op.handle.schema() << ")";
  throw Napi::TypeError::New(env, msg.str());
}

int64_t ToInt64(const Napi::Env& env, const Napi::Value& v, const OpEntry& op, const c10::Argument& arg) {
  if (v.IsBigInt()) {
    bool lossless = true;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  if (!v.IsNumber()) ArgError(env, op, arg, "must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) ArgError(env, op, arg, "must be an integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

bool IsIntLike(c10::TypeKind kind) {
  return kind == c10::TypeKind::IntType || kind == c10::TypeKind::SymIntType ||
         kind == c10::TypeKind::ScalarTypeType || kind == c10::TypeKind::LayoutType ||
         kind == c10::TypeKind::MemoryFormatType;
}

c10::IValue ToIValue(const Napi::Env& env, const Napi::Value& v, const c10::TypePtr& type, const OpEntry& op,
                     const c10::Argument& arg) {
  const c10::TypeKind kind = type->kind();
  if (kind == c10::TypeKind::OptionalType) {
    if (v.IsNull() || v.IsUndefined()) return c10::IValue();
    return ToIValue(env, v, type->castRaw<c10::OptionalType>()->getElementType(), op, arg);
  }
  if (IsIntLike(kind)) return c10::IValue(ToInt64(env, v, op, arg));
  switch (kind) {
    case c10::TypeKind::TensorType:
      if (!TensorHandle::IsTensor(v)) ArgError(env, op, arg, "must be a tensor");
      return c10::IValue(TensorHandle::Get(v, arg.name().c_str()));
    case c10::TypeKind::FloatType:
      if (!v.IsNumber()) ArgError(env, op, arg, "must be a number");
      return c10::IValue(v.As<Napi::Number>().DoubleValue());
    case c10::TypeKind::NumberType: {
      // JS has one number type; integral values become integer Scalars (as Python ints do), so that
      // `x + 1` keeps an integer tensor integral and a float tensor float.
      if (v.IsBoolean()) return c10::IValue(v.As<Napi::Boolean>().Value());
      if (v.IsBigInt()) {
        bool lossless = true;
        return c10::IValue(v.As<Napi::BigInt>().Int64Value(&lossless));
      }
      if (!v.IsNumber()) ArgError(env, op, arg, "must be a number");
      double d = v.As<Napi::Number>().DoubleValue();
      if (std::isfinite(d) && d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9.007199254740992e15) {
        return c10::IValue(static_cast<int64_t>(d));
      }
      return c10::IValue(d);
    }
    case c10::TypeKind::BoolType:
      if (!v.IsBoolean()) ArgError(env, op, arg, "must be a boolean");
      return c10::IValue(v.As<Napi::Boolean>().Value());
    case c10::TypeKind::StringType:
      if (!v.IsString()) ArgError(env, op, arg, "must be a string");
      return c10::IValue(v.As<Napi::String>().Utf8Value());
    case c10::TypeKind::DeviceObjType:
      if (!v.IsString()) ArgError(env, op, arg, "must be a device string such as 'cpu' or 'cuda:0'");
      return c10::IValue(c10::Device(v.As<Napi::String>().Utf8Value()));
    case c10::TypeKind::GeneratorType:
      if (!IsGenerator(v)) ArgError(env, op, arg, "must be a Generator");
      return c10::IValue(UnwrapGenerator(v));
    case c10::TypeKind::ListType: {
      const c10::TypePtr elem = type->castRaw<c10::ListType>()->getElementType();
      const c10::TypeKind ek = elem->kind();
      if (IsIntLike(ek)) {
        if (v.IsNumber()) {
          // A fixed-size list such as `int[2] stride` accepts one integer for every position, as in PyTorch.
          int64_t x = ToInt64(env, v, op, arg);
          size_t n = arg.N() ? static_cast<size_t>(*arg.N()) : 1;
          return c10::IValue(c10::List<int64_t>(std::vector<int64_t>(n, x)));
        }
        if (!v.IsArray()) ArgError(env, op, arg, "must be an integer or an array of integers");
        Napi::Array a = v.As<Napi::Array>();
        c10::List<int64_t> out;
        out.reserve(a.Length());
        for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(ToInt64(env, a.Get(i), op, arg));
        return c10::IValue(out);
      }
      if (!v.IsArray()) {
        if (ek == c10::TypeKind::FloatType && v.IsNumber()) {
          size_t n = arg.N() ? static_cast<size_t>(*arg.N()) : 1;
          return c10::IValue(c10::List<double>(std::vector<double>(n, v.As<Napi::Number>().DoubleValue())));
        }
        ArgError(env, op, arg, "must be an array");
      }
      Napi::Array a = v.As<Napi::Array>();
      const uint32_t n = a.Length();
      switch (ek) {
        case c10::TypeKind::TensorType: {
          c10::List<at::Tensor> out;
          out.reserve(n);
          for (uint32_t i = 0; i < n; ++i) out.push_back(TensorHandle::Get(a.Get(i), arg.name().c_str()));
          return c10::IValue(out);
        }
        case c10::TypeKind::OptionalType: {
          c10::List<c10::optional<at::Tensor>> out;
          out.reserve(n);
          for (uint32_t i = 0; i < n; ++i) {
            Napi::Value e = a.Get(i);
            if (e.IsNull() || e.IsUndefined()) {
              out.push_back(c10::nullopt);
            } else {
              out.push_back(TensorHandle::Get(e, arg.name().c_str()));
            }
          }
          return c10::IValue(out);
        }
        case c10::TypeKind::FloatType: {
          c10::List<double> out;
          for (uint32_t i = 0; i < n; ++i) out.push_back(a.Get(i).ToNumber().DoubleValue());
          return c10::IValue(out);
        }
        case c10::TypeKind::BoolType: {
          c10::List<bool> out;
          for (uint32_t i = 0; i < n; ++i) out.push_back(a.Get(i).ToBoolean().Value());
          return c10::IValue(out);
        }
        default:
          ArgError(env, op, arg, "has a list type the binding does not convert: " + type->str());
      }
    }
    default:
      ArgError(env, op, arg, "has a type the binding does not convert: " + type->str());
  }
}

// resolveOp(name, overload) -> id. Names are ATen's ("conv2d", "add" with overload "Tensor").
Napi::Value ResolveOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  std::string qualified = name.find("::") == std::string::npos ? "aten::" + name : name;
  auto handle = c10::Dispatcher::singleton().findSchema({qualified, overload});
  if (!handle) {
    throw Napi::Error::New(env, "libtorch has no operator " + qualified + (overload.empty() ? "" : "." + overload) +
                                    " in this version (" + TORCH_VERSION + ")");
  }
  auto& registry = Registry();
  registry.push_back({*handle, qualified + (overload.empty() ? "" : "." + overload)});
  return Napi::Number::New(env, static_cast<double>(registry.size() - 1));
}

Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  auto& registry = Registry();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= registry.size()) throw Napi::RangeError::New(info.Env(), "unknown operator id");
  std::ostringstream s;
  s << registry[id].handle.schema();
  return Napi::String::New(info.Env(), s.str());
}

// callOp(id, args[, discardResult]) -> result. Trailing arguments left out (or undefined) take the
// schema's defaults; `discardResult` skips wrapping the result (in-place operators return their input).
Napi::Value CallOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& registry = Registry();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= registry.size()) throw Napi::RangeError::New(env, "unknown operator id");
  const OpEntry& op = registry[id];
  Napi::Array args = info[1].As<Napi::Array>();
  const bool discard = info.Length() > 2 && info[2].ToBoolean().Value();
  const c10::FunctionSchema& schema = op.handle.schema();
  const auto& formals = schema.arguments();
  const uint32_t given = args.Length();
  if (given > formals.size()) {
    std::ostringstream msg;
    msg << op.name << ": " << given << " arguments given, the schema takes " << formals.size() << " (" << schema << ")";
    throw Napi::TypeError::New(env, msg.str());
  }
  return guarded(env, [&]() -> Napi::Value {
    torch::jit::Stack stack;
    stack.reserve(formals.size());
    for (size_t i = 0; i < formals.size(); ++i) {
      const c10::Argument& arg = formals[i];
      Napi::Value v = i < given ? args.Get(static_cast<uint32_t>(i)) : env.Undefined();
      if (v.IsUndefined()) {
        if (arg.default_value()) {
          stack.push_back(*arg.default_value());
          continue;
        }
        if (arg.type()->kind() != c10::TypeKind::OptionalType) ArgError(env, op, arg, "is required");
      }
      stack.push_back(ToIValue(env, v, arg.real_type(), op, arg));
    }
    op.handle.callBoxed(&stack);
    if (discard || stack.empty()) return env.Undefined();
    if (stack.size() == 1) return FromIValue(env, stack[0]);
    Napi::Array out = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, stack[i]));
    return out;
  });
}

}  // namespace

Napi::Value FromIValue(Napi::Env env, const c10::IValue& value) {
  if (value.isTensor()) return TensorHandle::Wrap(env, value.toTensor());
  if (value.isNone()) return env.Null();
  if (value.isBool()) return Napi::Boolean::New(env, value.toBool());
  if (value.isInt()) return Napi::Number::New(env, static_cast<double>(value.toInt()));
  if (value.isDouble()) return Napi::Number::New(env, value.toDouble());
  if (value.isTensorList()) {
    auto list = value.toTensorList();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), TensorHandle::Wrap(env, list.get(i)));
    return out;
  }
  if (value.isTuple()) {
    const auto& elems = value.toTupleRef().elements();
    Napi::Array out = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, elems[i]));
    return out;
  }
  if (value.isIntList()) {
    auto list = value.toIntVector();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(list[i]));
    return out;
  }
  if (value.isList()) {
    auto list = value.toListRef();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, list[i]));
    return out;
  }
  if (value.isScalar()) {
    at::Scalar s = value.toScalar();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(env, static_cast<double>(s.toLong()));
    return Napi::Number::New(env, s.toDouble());
  }
  if (value.isString()) return Napi::String::New(env, value.toStringRef());
  throw Napi::Error::New(env, "libtorch returned a value the binding does not convert: " + value.tagKind());
}

std::vector<int64_t> ToInt64Vector(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), std::string(what) + " must be an array of integers");
  Napi::Array a = value.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw Napi::TypeError::New(value.Env(), std::string(what) + " must be an array of integers");
    double d = e.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0) {
      throw Napi::TypeError::New(value.Env(), std::string(what) + " must hold non-negative integers");
    }
    out[i] = static_cast<int64_t>(d);
  }
  return out;
}

void InitDispatch(Napi::Env env, Napi::Object exports) {
  exports.Set("resolveOp", Napi::Function::New(env, ResolveOp));
  exports.Set("opSchema", Napi::Function::New(env, OpSchema));
  exports.Set("callOp", Napi::Function::New(env, CallOp));
}

}  // namespace crossmax
