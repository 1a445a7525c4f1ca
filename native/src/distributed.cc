// c10d, PyTorch's own distributed engine, exposed to JS: a store (TCPStore or FileStore) and a process group
// (Gloo on CPU; NCCL when built against a CUDA libtorch), with all-reduce (sum, average), broadcast, all-gather and
// barrier. Every collective and the rendezvous run on libuv's thread pool (Napi::AsyncWorker) and return a
// promise, so Node's event loop keeps running while a rank waits for its peers. Every c10d/gloo failure (a peer
// that closed its socket, a timeout) rejects that promise with libtorch's message: nothing here aborts the process.
//
// What gets compiled depends on the libtorch (scripts/libtorch-paths.cjs detects it):
//   CROSSMAX_WITH_GLOO  gloo's headers were found (Debian: libgloo-dev; PyTorch wheels ship none) -> USE_C10D_GLOO
//   CROSSMAX_WITH_NCCL  a CUDA libtorch with ProcessGroupNCCL.hpp                                   -> USE_C10D_NCCL
// Without either, distributedBackends() is empty and newProcessGroup() rejects naming what is missing.
#include "common.h"

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if defined(CROSSMAX_WITH_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(CROSSMAX_WITH_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace crossmax {

namespace {

// 1.x process groups derive from c10d::ProcessGroup, 2.x backends (ProcessGroupGloo, ProcessGroupNCCL) from
// c10d::Backend; both declare the collectives used here with the same signatures.
#if TORCH_VERSION_MAJOR >= 2
using BackendBase = c10d::Backend;
#else
using BackendBase = c10d::ProcessGroup;
#endif

// What the JS handle owns; shared with the workers in flight so that a handle destroyed (or collected) while a
// collective waits does not free the group under it.
struct GroupState {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<BackendBase> backend;
  std::string backendName;
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{300000};
  std::atomic<int> inFlight{0};
};

std::string Describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown C++ exception";
  }
}

// Runs `body` on libuv's thread pool, then settles a promise: resolved with `result(env)`, or rejected with the
// message of whatever `body` threw (c10::Error, gloo's exceptions, std::exception, anything).
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::shared_ptr<GroupState> state, std::function<void()> body,
                std::function<Napi::Value(Napi::Env)> result)
      : Napi::AsyncWorker(env, "crossmax.distributed"),
        deferred_(Napi::Promise::Deferred::New(env)),
        state_(std::move(state)),
        body_(std::move(body)),
        result_(std::move(result)) {
    if (state_) state_->inFlight++;
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      body_();
    } catch (...) {
      SetError(Describe(std::current_exception()));
    }
  }

  void OnOK() override {
    Finish();
    Napi::Env env = Env();
    try {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(Napi::Error::New(env, Describe(std::current_exception())).Value());
    }
  }

  void OnError(const Napi::Error& error) override {
    Finish();
    deferred_.Reject(error.Value());
  }

 private:
  void Finish() {
    if (state_) state_->inFlight--;
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<GroupState> state_;
  std::function<void()> body_;
  std::function<Napi::Value(Napi::Env)> result_;
};

// Waits for a collective, bounded by the group's timeout: Work::wait throws on timeout and rethrows the error a
// worker thread stored (a peer's closed connection, gloo's own timeout).
void WaitFor(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  work->wait(timeout);
}

std::string StringOption(const Napi::Object& options, const char* key, const std::string& fallback = "") {
  Napi::Value v = options.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}

int64_t IntOption(const Napi::Object& options, const char* key, int64_t fallback) {
  Napi::Value v = options.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

class ProcessGroupHandle : public Napi::ObjectWrap<ProcessGroupHandle> {
 public:
  static Napi::FunctionReference* constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(
        env, "ProcessGroupHandle",
        {
            InstanceAccessor("rank", &ProcessGroupHandle::Rank, nullptr),
            InstanceAccessor("size", &ProcessGroupHandle::Size, nullptr),
            InstanceAccessor("backend", &ProcessGroupHandle::Backend, nullptr),
            InstanceAccessor("inFlight", &ProcessGroupHandle::InFlight, nullptr),
            InstanceMethod("allReduce", &ProcessGroupHandle::AllReduce),
            InstanceMethod("broadcast", &ProcessGroupHandle::Broadcast),
            InstanceMethod("allGather", &ProcessGroupHandle::AllGather),
            InstanceMethod("barrier", &ProcessGroupHandle::Barrier),
            InstanceMethod("storeSet", &ProcessGroupHandle::StoreSet),
            InstanceMethod("storeCheck", &ProcessGroupHandle::StoreCheck),
            InstanceMethod("storeGet", &ProcessGroupHandle::StoreGet),
            InstanceMethod("destroy", &ProcessGroupHandle::Destroy),
        });
    constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
    exports.Set("ProcessGroupHandle", ctor);
  }

  // Only newProcessGroup() makes these; it hands the state over through `pending`.
  static std::shared_ptr<GroupState>* pending;

  // The live group behind a JS handle (newGradientReducer's argument); throws a JS TypeError otherwise.
  static std::shared_ptr<GroupState> StateOf(const Napi::Env& env, const Napi::Value& value) {
    if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor->Value())) {
      throw Napi::TypeError::New(env, "expected a process group (from newProcessGroup)");
    }
    auto state = Unwrap(value.As<Napi::Object>())->state_;
    if (!state || !state->backend) throw Napi::Error::New(env, "process group used after destroy()");
    return state;
  }

  explicit ProcessGroupHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupHandle>(info) {
    if (pending == nullptr) {
      throw Napi::TypeError::New(info.Env(), "ProcessGroupHandle is made by newProcessGroup(), not constructed");
    }
    state_ = *pending;
  }

  ~ProcessGroupHandle() override {
    // A group collected with a collective still waiting is left alive (leaked) rather than destroyed here: its
    // destructor joins gloo's worker threads, which would block the JS thread until that collective times out.
    if (state_ && state_->inFlight.load() > 0) new std::shared_ptr<GroupState>(std::move(state_));
  }

 private:
  GroupState& Live(const Napi::Env& env) {
    if (!state_ || !state_->backend) throw Napi::Error::New(env, "process group used after destroy()");
    return *state_;
  }

  static at::Tensor CollectiveTensor(const Napi::Value& value, const char* what) {
    const at::Tensor& t = TensorHandle::Get(value, what);
    return t;
  }

  static void CheckDense(const Napi::Env& env, const at::Tensor& t, const char* what) {
    if (!t.is_contiguous() || t.is_sparse()) {
      throw Napi::TypeError::New(env, std::string(what) + " must be a dense contiguous tensor (call .contiguous())");
    }
  }

  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_ ? state_->rank : -1); }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_ ? state_->size : 0); }
  Napi::Value Backend(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), state_ ? state_->backendName : "destroyed");
  }
  Napi::Value InFlight(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), state_ ? state_->inFlight.load() : 0);
  }

  Napi::Value Queue(Napi::Env env, std::function<void()> body, std::function<Napi::Value(Napi::Env)> result = {}) {
    auto* worker = new PromiseWorker(env, state_, std::move(body), std::move(result));
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  // allReduce(tensor, op: 'sum' | 'avg') -> Promise<void>, in place. Gloo has no AVG, so the average is the sum
  // divided by the world size (as DistributedDataParallel does).
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      at::Tensor tensor = CollectiveTensor(info[0], "allReduce's tensor");
      CheckDense(env, tensor, "allReduce's tensor");
      std::string op = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
      if (op != "sum" && op != "avg") throw Napi::RangeError::New(env, "allReduce op must be 'sum' or 'avg', got '" + op + "'");
      auto backend = s.backend;
      auto timeout = s.timeout;
      int size = s.size;
      // Issued here, on the JS thread, in program order: c10d matches collectives across ranks by their order, so
      // two collectives issued from thread-pool threads could pair up differently on each rank. Only the wait
      // happens off the JS thread.
      std::vector<at::Tensor> tensors{tensor};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
      opts.timeout = timeout;
      auto work = backend->allreduce(tensors, opts);
      return Queue(env, [work, tensor, op, timeout, size]() mutable {
        WaitFor(work, timeout);
        if (op == "avg") tensor.div_(size);
      });
    });
  }

  // broadcast(tensor, root) -> Promise<void>, in place.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      at::Tensor tensor = CollectiveTensor(info[0], "broadcast's tensor");
      CheckDense(env, tensor, "broadcast's tensor");
      int64_t root = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
      if (root < 0 || root >= s.size) {
        throw Napi::RangeError::New(env, "broadcast root " + std::to_string(root) + " is not a rank of this group of " +
                                             std::to_string(s.size));
      }
      auto backend = s.backend;
      auto timeout = s.timeout;
      std::vector<at::Tensor> tensors{tensor};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      opts.timeout = timeout;
      auto work = backend->broadcast(tensors, opts);  // issued in program order (see allReduce)
      return Queue(env, [work, timeout]() { WaitFor(work, timeout); });
    });
  }

  // allGather(tensor) -> Promise<TensorHandle[]>: one tensor per rank, in rank order.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      at::Tensor tensor = CollectiveTensor(info[0], "allGather's tensor");
      CheckDense(env, tensor, "allGather's tensor");
      auto backend = s.backend;
      auto timeout = s.timeout;
      auto outputs = std::make_shared<std::vector<std::vector<at::Tensor>>>(1);
      for (int r = 0; r < s.size; r++) (*outputs)[0].push_back(at::empty_like(tensor));
      std::vector<at::Tensor> inputs{tensor};
      c10d::AllgatherOptions opts;
      opts.timeout = timeout;
      auto work = backend->allgather(*outputs, inputs, opts);  // issued in program order (see allReduce)
      return Queue(
          env,
          [work, outputs, timeout]() { WaitFor(work, timeout); },
          [outputs](Napi::Env env) -> Napi::Value {
            Napi::Array out = Napi::Array::New(env, (*outputs)[0].size());
            for (size_t i = 0; i < (*outputs)[0].size(); i++) out.Set(i, TensorHandle::Wrap(env, (*outputs)[0][i]));
            return out;
          });
    });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      auto backend = s.backend;
      auto timeout = s.timeout;
      c10d::BarrierOptions opts;
      opts.timeout = timeout;
      auto work = backend->barrier(opts);  // issued in program order (see allReduce)
      return Queue(env, [work, timeout]() { WaitFor(work, timeout); });
    });
  }

  // storeSet(key, value: string): one round trip to the store (rank 0's TCPStore server, or the file).
  Napi::Value StoreSet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      std::string key = info[0].As<Napi::String>().Utf8Value();
      std::string value = info[1].As<Napi::String>().Utf8Value();
      s.store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
      return env.Undefined();
    });
  }

  // storeCheck(keys: string[]) -> boolean: whether all keys are set, without waiting.
  Napi::Value StoreCheck(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      Napi::Array arr = info[0].As<Napi::Array>();
      std::vector<std::string> keys;
      for (uint32_t i = 0; i < arr.Length(); i++) keys.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
      return Napi::Boolean::New(env, s.store->check(keys));
    });
  }

  // storeGet(key, timeoutMs) -> Promise<string>: waits (off the JS thread) until the key is set.
  Napi::Value StoreGet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      GroupState& s = Live(env);
      std::string key = info[0].As<Napi::String>().Utf8Value();
      std::chrono::milliseconds timeout =
          info[1].IsNumber() ? std::chrono::milliseconds(info[1].As<Napi::Number>().Int64Value()) : s.timeout;
      auto store = s.store;
      auto value = std::make_shared<std::vector<uint8_t>>();
      return Queue(
          env,
          [store, key, timeout, value]() {
            store->wait({key}, timeout);
            *value = store->get(key);
          },
          [value](Napi::Env env) -> Napi::Value {
            return Napi::String::New(env, std::string(value->begin(), value->end()));
          });
    });
  }

  // destroy(): releases the group and the store. With collectives still waiting it only detaches from them (they
  // finish or time out on their own and release the group then), so destroy() never blocks on a dead peer.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (state_ && state_->inFlight.load() > 0) {
      new std::shared_ptr<GroupState>(std::move(state_));  // deliberately leaked, see ~ProcessGroupHandle
    }
    state_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<GroupState> state_;
};

Napi::FunctionReference* ProcessGroupHandle::constructor = nullptr;
std::shared_ptr<GroupState>* ProcessGroupHandle::pending = nullptr;


// ---- The gradient reducer: DistributedDataParallel's all-reduce overlapped with the backward pass ---------------
//
// PyTorch's DDP (c10d's reducer.cpp) puts a hook on each parameter's gradient accumulator; once every parameter of
// a bucket has its gradient, the bucket is flattened and its all-reduce starts on gloo's (or NCCL's) thread while
// autograd goes on computing the earlier layers' gradients. The same here, smaller:
//  - buckets are filled in reverse parameter order, the order in which the backward pass produces gradients;
//  - buckets are launched strictly in bucket order (a ready bucket waits for the ones before it), because c10d
//    pairs collectives across ranks by the order they are issued;
//  - a bucket with a parameter that got no gradient (an unused member, the other heads of a 'heads' phase) is
//    launched by finish(), after the backward, in the same order, with zeros for the missing gradients: every rank
//    issues the same collectives whatever its graph;
//  - the hooks act only between arm() and finish(), so other backward passes (an attack's input gradients,
//    synchronised BatchNorm's corrections, evaluation) leave them idle.
// The hooks run on the thread that runs the backward: the JS thread on CPU (the addon's backward is synchronous),
// with the JS thread blocked inside it on CUDA, so no other collective can be issued in between.
using AccumulatorPtr = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::autograd::Variable&>()));

struct ReducerState {
  std::shared_ptr<GroupState> group;
  std::vector<at::Tensor> params;
  // Kept alive here: a variable holds its accumulator weakly, so without this the hook would vanish with the graph.
  // (A std::shared_ptr in libtorch 1.x, an intrusive_ptr in recent 2.x: whatever grad_accumulator returns.)
  std::vector<AccumulatorPtr> accumulators;
  std::vector<uintptr_t> hookKeys;
  std::vector<std::vector<size_t>> buckets;  // parameter indices, per bucket
  std::vector<size_t> bucketOf;              // bucket index, per parameter
  std::mutex mutex;
  // This iteration (reset by arm()):
  bool armed = false;
  double share = 1.0;
  std::vector<char> ready;         // per parameter: its gradient has arrived
  std::vector<size_t> missing;     // per bucket: parameters still without their gradient
  size_t next = 0;                 // the next bucket to launch
  std::vector<at::Tensor> flats;   // per bucket, once launched
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::string error;               // a launch that failed inside the backward (reported by finish())
  int launchedInBackward = 0;
};

// Flattens bucket `b`'s gradients (zeros where a parameter has none), weights them by this rank's share and starts
// their all-reduce. Called with s.mutex held.
void LaunchBucket(ReducerState& s, size_t b) {
  at::NoGradGuard noGrad;
  std::vector<at::Tensor> pieces;
  pieces.reserve(s.buckets[b].size());
  for (size_t i : s.buckets[b]) {
    const at::Tensor& p = s.params[i];
    const at::Tensor& g = p.grad();
    pieces.push_back(g.defined() ? g.reshape({-1}) : at::zeros({p.numel()}, p.options()));
  }
  at::Tensor flat = at::cat(pieces).mul_(s.share);
  s.flats[b] = flat;
  std::vector<at::Tensor> tensors{flat};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
  opts.timeout = s.group->timeout;
  s.works[b] = s.group->backend->allreduce(tensors, opts);
}

// Launches every bucket from s.next on that is complete (or all of them, `all`), in order. Called with s.mutex held.
void LaunchReadyBuckets(ReducerState& s, bool all) {
  while (s.next < s.buckets.size() && (all || s.missing[s.next] == 0)) {
    LaunchBucket(s, s.next);
    s.next++;
  }
}

class GradientReducerHandle : public Napi::ObjectWrap<GradientReducerHandle> {
 public:
  static Napi::FunctionReference* constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(
        env, "GradientReducerHandle",
        {
            InstanceAccessor("launchedDuringBackward", &GradientReducerHandle::LaunchedDuringBackward, nullptr),
            InstanceMethod("arm", &GradientReducerHandle::Arm),
            InstanceMethod("finish", &GradientReducerHandle::Finish),
            InstanceMethod("destroy", &GradientReducerHandle::Destroy),
        });
    constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
    exports.Set("GradientReducerHandle", ctor);
  }

  // newGradientReducer(group, params: TensorHandle[], bucketBytes) -> GradientReducerHandle
  static Napi::Value New(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      auto state = std::make_shared<ReducerState>();
      state->group = ProcessGroupHandle::StateOf(env, info[0]);
      if (!info[1].IsArray()) throw Napi::TypeError::New(env, "newGradientReducer expects an array of parameters");
      Napi::Array arr = info[1].As<Napi::Array>();
      double bucketBytes = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 25.0 * 1024 * 1024;
      if (!(bucketBytes > 0)) throw Napi::RangeError::New(env, "bucketBytes must be positive");
      for (uint32_t i = 0; i < arr.Length(); i++) {
        const at::Tensor& p = TensorHandle::Get(arr.Get(i), "a parameter");
        if (!p.requires_grad() || !p.is_leaf()) {
          throw Napi::TypeError::New(env, "parameter " + std::to_string(i) + " is not a leaf that requires grad");
        }
        state->params.push_back(p);
      }
      // Buckets in reverse parameter order, each up to bucketBytes (one parameter may exceed it alone).
      size_t n = state->params.size();
      state->bucketOf.assign(n, 0);
      double bytes = 0;
      for (size_t k = 0; k < n; k++) {
        size_t i = n - 1 - k;
        double size = static_cast<double>(state->params[i].numel() * state->params[i].element_size());
        if (state->buckets.empty() || (!state->buckets.back().empty() && bytes + size > bucketBytes)) {
          state->buckets.emplace_back();
          bytes = 0;
        }
        state->buckets.back().push_back(i);
        state->bucketOf[i] = state->buckets.size() - 1;
        bytes += size;
      }
      state->flats.resize(state->buckets.size());
      state->works.resize(state->buckets.size());
      std::weak_ptr<ReducerState> weak = state;
      for (size_t i = 0; i < n; i++) {
        auto accumulator = torch::autograd::impl::grad_accumulator(state->params[i]);
        if (!accumulator) throw Napi::Error::New(env, "parameter " + std::to_string(i) + " has no gradient accumulator");
        auto hook = [weak, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          auto s = weak.lock();
          if (!s) return outputs;
          std::lock_guard<std::mutex> lock(s->mutex);
          if (!s->armed || s->ready[i] || !s->error.empty()) return outputs;
          s->ready[i] = 1;
          size_t before = s->next;
          if (--s->missing[s->bucketOf[i]] == 0) {
            try {
              LaunchReadyBuckets(*s, false);
            } catch (...) {
              // Not thrown into autograd: finish() reports it (and fails on every rank, whose collective times out).
              s->error = Describe(std::current_exception());
            }
          }
          s->launchedInBackward += static_cast<int>(s->next - before);
          return outputs;
        };
        state->hookKeys.push_back(
            accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(hook)));
        state->accumulators.push_back(std::move(accumulator));
      }
      pending = &state;
      Napi::Object handle;
      try {
        handle = constructor->New({});
      } catch (...) {
        pending = nullptr;
        RemoveHooks(*state);
        throw;
      }
      pending = nullptr;
      return handle;
    });
  }

  explicit GradientReducerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GradientReducerHandle>(info) {
    if (pending == nullptr) throw Napi::TypeError::New(info.Env(), "made by newGradientReducer(), not constructed");
    state_ = *pending;
  }

  ~GradientReducerHandle() override {
    if (state_) RemoveHooks(*state_);
  }

 private:
  static std::shared_ptr<ReducerState>* pending;

  static void RemoveHooks(ReducerState& s) {
    for (size_t i = 0; i < s.accumulators.size() && i < s.hookKeys.size(); i++) s.accumulators[i]->del_post_hook(s.hookKeys[i]);
    s.accumulators.clear();
    s.hookKeys.clear();
  }

  ReducerState& Live(const Napi::Env& env) {
    if (!state_) throw Napi::Error::New(env, "gradient reducer used after destroy()");
    return *state_;
  }

  Napi::Value LaunchedDuringBackward(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), state_ ? state_->launchedInBackward : 0);
  }

  // arm(share): the next backward pass's gradients are this rank's, weighted by `share` in the sum over ranks.
  Napi::Value Arm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      ReducerState& s = Live(env);
      double share = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 1.0;
      if (!(share >= 0 && share <= 1)) throw Napi::RangeError::New(env, "share must be in [0, 1]");
      std::lock_guard<std::mutex> lock(s.mutex);
      if (s.armed) throw Napi::Error::New(env, "arm() twice without finish(): the previous step's gradients were not reduced");
      if (!s.group->backend) throw Napi::Error::New(env, "process group used after destroy()");
      s.armed = true;
      s.share = share;
      s.ready.assign(s.params.size(), 0);
      s.missing.resize(s.buckets.size());
      for (size_t b = 0; b < s.buckets.size(); b++) s.missing[b] = s.buckets[b].size();
      s.next = 0;
      for (auto& f : s.flats) f = at::Tensor();
      for (auto& w : s.works) w.reset();
      s.error.clear();
      s.launchedInBackward = 0;
      return env.Undefined();
    });
  }

  // finish() -> Promise<void>: launches the buckets still waiting (in order), waits for every all-reduce off the JS
  // thread, and writes the sums into the parameters' gradients.
  Napi::Value Finish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      auto state = state_;
      ReducerState& s = Live(env);
      std::vector<at::Tensor> flats;
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      {
        std::lock_guard<std::mutex> lock(s.mutex);
        if (!s.armed) throw Napi::Error::New(env, "finish() without arm()");
        s.armed = false;
        if (!s.error.empty()) throw Napi::Error::New(env, "a gradient all-reduce failed to start: " + s.error);
        LaunchReadyBuckets(s, true);
        // Moved out: the flattened buckets live only until the worker has written them into the gradients.
        flats = std::move(s.flats);
        works = std::move(s.works);
        s.flats.assign(s.buckets.size(), at::Tensor());
        s.works.assign(s.buckets.size(), c10::intrusive_ptr<c10d::Work>());
      }
      auto timeout = s.group->timeout;
      auto* worker = new PromiseWorker(
          env, s.group,
          [state, flats, works, timeout]() {
            at::NoGradGuard noGrad;
            for (size_t b = 0; b < works.size(); b++) {
              WaitFor(works[b], timeout);
              int64_t offset = 0;
              for (size_t i : state->buckets[b]) {
                at::Tensor& p = state->params[i];
                at::Tensor piece = flats[b].narrow(0, offset, p.numel()).view(p.sizes());
                offset += p.numel();
                if (p.grad().defined()) {
                  p.mutable_grad().copy_(piece);
                } else {
                  p.mutable_grad() = piece.clone();
                }
              }
            }
          },
          {});
      Napi::Promise promise = worker->Promise();
      worker->Queue();
      return promise;
    });
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (state_) RemoveHooks(*state_);
    state_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<ReducerState> state_;
};

Napi::FunctionReference* GradientReducerHandle::constructor = nullptr;
std::shared_ptr<ReducerState>* GradientReducerHandle::pending = nullptr;

// newProcessGroup({ backend: 'gloo' | 'nccl', rank, worldSize, timeoutMs,
//                   store: 'tcp' | 'file', masterAddr, masterPort (tcp) | path (file),
//                   glooHostname?, glooInterface? (gloo: the address peers reach this rank at) })
//   -> Promise<ProcessGroupHandle>
// Rendezvous (the TCPStore connection, gloo's full mesh) blocks until every rank has arrived or the timeout passes,
// so it runs on the thread pool too.
Napi::Value NewProcessGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "newProcessGroup expects an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto state = std::make_shared<GroupState>();
    state->backendName = StringOption(o, "backend", "gloo");
    state->rank = static_cast<int>(IntOption(o, "rank", -1));
    state->size = static_cast<int>(IntOption(o, "worldSize", -1));
    state->timeout = std::chrono::milliseconds(IntOption(o, "timeoutMs", 300000));
    if (state->size < 1 || state->rank < 0 || state->rank >= state->size) {
      throw Napi::RangeError::New(env, "rank " + std::to_string(state->rank) + " is not in [0, worldSize=" +
                                           std::to_string(state->size) + ")");
    }
    if (state->timeout.count() <= 0) throw Napi::RangeError::New(env, "timeoutMs must be positive");
    std::string storeKind = StringOption(o, "store", "tcp");
    std::string masterAddr = StringOption(o, "masterAddr", "127.0.0.1");
    int64_t masterPort = IntOption(o, "masterPort", 29500);
    std::string filePath = StringOption(o, "path");
    std::string glooHostname = StringOption(o, "glooHostname");
    std::string glooInterface = StringOption(o, "glooInterface");
    if (storeKind == "tcp" && (masterPort < 1 || masterPort > 65535)) {
      throw Napi::RangeError::New(env, "master port " + std::to_string(masterPort) + " is not in 1..65535");
    }
    if (storeKind == "file" && filePath.empty()) throw Napi::TypeError::New(env, "a file store needs a path");
    if (storeKind != "tcp" && storeKind != "file") {
      throw Napi::RangeError::New(env, "store must be 'tcp' or 'file', got '" + storeKind + "'");
    }
    const std::string& backendName = state->backendName;
#if !defined(CROSSMAX_WITH_GLOO)
    if (backendName == "gloo") {
      throw Napi::Error::New(env, "this addon was built without Gloo (no gloo headers next to libtorch " TORCH_VERSION
                                  "; on Debian install libgloo-dev and rebuild: bash scripts/setup.sh)");
    }
#endif
#if !defined(CROSSMAX_WITH_NCCL)
    if (backendName == "nccl") {
      throw Napi::Error::New(env, "this addon was built without NCCL: build it against a CUDA libtorch "
                                  "(LIBTORCH=<torch package dir> bash scripts/setup.sh)");
    }
#endif
    if (backendName != "gloo" && backendName != "nccl") {
      throw Napi::RangeError::New(env, "backend must be 'gloo' or 'nccl', got '" + backendName + "'");
    }

    auto* worker = new PromiseWorker(
        env, nullptr,
        [state, storeKind, masterAddr, masterPort, filePath, glooHostname, glooInterface]() {
          if (storeKind == "tcp") {
            c10d::TCPStoreOptions opts;
            opts.port = static_cast<std::uint16_t>(masterPort);
            opts.isServer = state->rank == 0;
            opts.numWorkers = static_cast<std::size_t>(state->size);
            opts.waitWorkers = true;
            opts.timeout = state->timeout;
            state->store = c10::make_intrusive<c10d::TCPStore>(masterAddr, opts);
          } else {
            state->store = c10::make_intrusive<c10d::FileStore>(filePath, state->size);
            state->store->setTimeout(state->timeout);
          }
#if defined(CROSSMAX_WITH_GLOO)
          if (state->backendName == "gloo") {
            auto opts = c10d::ProcessGroupGloo::Options::create(state->timeout);
            if (!glooInterface.empty()) {
              opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(glooInterface));
            } else if (!glooHostname.empty()) {
              opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(glooHostname));
            } else {
              opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
            }
            // One worker thread: collectives are issued in order from one JS thread anyway.
            opts->threads = 1;
            state->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(state->store, state->rank, state->size, opts);
          }
#endif
#if defined(CROSSMAX_WITH_NCCL)
          if (state->backendName == "nccl") {
            // Without blocking wait, a dead peer leaves NCCL spinning and the watchdog tears the process down; with
            // it, Work::wait throws after the timeout and the error reaches JS. A user's own setting wins.
            setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
            setenv("NCCL_BLOCKING_WAIT", "1", 0);
            auto opts = c10d::ProcessGroupNCCL::Options::create();
            opts->timeout = state->timeout;
            state->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(state->store, state->rank, state->size, opts);
          }
#endif
          if (!state->backend) throw std::runtime_error("backend '" + state->backendName + "' is not built in");
        },
        [state](Napi::Env env) -> Napi::Value {
          ProcessGroupHandle::pending = new std::shared_ptr<GroupState>(state);
          Napi::Object handle;
          try {
            handle = ProcessGroupHandle::constructor->New({});
          } catch (...) {
            delete ProcessGroupHandle::pending;
            ProcessGroupHandle::pending = nullptr;
            throw;
          }
          delete ProcessGroupHandle::pending;
          ProcessGroupHandle::pending = nullptr;
          return handle;
        });
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  });
}

Napi::Value DistributedBackends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
#if defined(CROSSMAX_WITH_GLOO)
  out.Set(i++, "gloo");
#endif
#if defined(CROSSMAX_WITH_NCCL)
  out.Set(i++, "nccl");
#endif
  (void)i;
  return out;
}

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object exports) {
  ProcessGroupHandle::Init(env, exports);
  GradientReducerHandle::Init(env, exports);
  exports.Set("newProcessGroup", Napi::Function::New(env, NewProcessGroup));
  exports.Set("newGradientReducer", Napi::Function::New(env, GradientReducerHandle::New));
  exports.Set("distributedBackends", Napi::Function::New(env, DistributedBackends));
}

}  // namespace crossmax
