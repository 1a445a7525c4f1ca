#include "common.h"

static Napi::Object InitCrossmax(Napi::Env env, Napi::Object exports) {
  crossmax::TensorHandle::Init(env, exports);
  crossmax::InitDispatch(env, exports);
  crossmax::InitAutograd(env, exports);
  crossmax::InitRuntime(env, exports);
  crossmax::InitCpuAllocator(env, exports);
  crossmax::InitDistributed(env, exports);
  return exports;
}

NODE_API_MODULE(crossmax_native, InitCrossmax)
