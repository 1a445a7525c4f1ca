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

#include <atomic>
#include <chrono>
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
  exports.Set("newProcessGroup", Napi::Function::New(env, NewProcessGroup));
  exports.Set("distributedBackends", Napi::Function::New(env, DistributedBackends));
}

}  // namespace crossmax
