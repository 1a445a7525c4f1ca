// Prints compiler/linker flags for the libtorch the addon is built against (used by native/binding.gyp).
// Default: Debian's libtorch-dev (/usr). With LIBTORCH=/path/to/libtorch (a directory holding include/ and lib/,
// e.g. `python3 -c "import torch,os;print(os.path.dirname(torch.__file__))"`), that libtorch is used instead,
// linked with an rpath so no LD_LIBRARY_PATH is needed; its CUDA libraries are linked when present.
// Also a module: ownLibtorch(torchDir) tells whether a PyTorch installation carries a libtorch of its own to build
// against (scripts/install.mjs and scripts/gpu-check.mjs ask it of the python3's torch they find).
'use strict';
const fs = require('fs');
const path = require('path');

const root = process.env.LIBTORCH || '';
const what = process.argv[2];

function debianPaths() {
  return {
    // /usr/include is a system directory already; naming it again with -I breaks libstdc++'s #include_next.
    include: ['/usr/include/torch/csrc/api/include'],
    libDir: null,
    cuda: false,
    abi: null,
  };
}

function customPaths() {
  const libDir = path.join(root, 'lib');
  if (!fs.existsSync(path.join(root, 'include', 'torch'))) {
    throw new Error(`LIBTORCH=${root} has no include/torch directory: point it at a libtorch (or torch package) root`);
  }
  const cuda = fs.existsSync(path.join(libDir, 'libtorch_cuda.so'));
  // PyTorch wheels state their C++ ABI; a mismatch gives undefined std::string symbols at load time.
  let abi = process.env.LIBTORCH_CXX11_ABI ?? null;
  if (abi === null) {
    const probe = ['libtorch_cpu.so'].map((f) => path.join(libDir, f)).find((f) => fs.existsSync(f));
    if (probe) {
      const bytes = fs.readFileSync(probe);
      // Symbols of the new ABI mangle std::string as ...__cxx11...; old-ABI builds have none.
      abi = bytes.includes(Buffer.from('__cxx11')) ? '1' : '0';
    }
  }
  return {
    include: [path.join(root, 'include'), path.join(root, 'include', 'torch', 'csrc', 'api', 'include')],
    libDir,
    cuda,
    abi,
  };
}

/**
 * libtorch's major version, read from its headers: 2.x headers use C++20 features (PyTorch builds itself as
 * C++20 since 2.x and its headers warn under C++17), 1.x needs C++17.
 */
function torchMajorVersion(includeDirs) {
  const candidates = [];
  for (const dir of includeDirs.concat(['/usr/include'])) {
    candidates.push(path.join(dir, 'torch', 'headeronly', 'version.h'), path.join(dir, 'torch', 'version.h'));
  }
  for (const file of candidates) {
    if (!fs.existsSync(file)) continue;
    const match = /#define\s+TORCH_VERSION_MAJOR\s+(\d+)/.exec(fs.readFileSync(file, 'utf8'));
    if (match) return Number(match[1]);
  }
  throw new Error(`no torch/version.h under ${includeDirs.join(', ')}: is libtorch installed (see scripts/setup.sh)?`);
}

/**
 * Whether the PyTorch package at `torchDir` (os.path.dirname(torch.__file__)) carries its own libtorch to build
 * against: headers and libtorch_cpu.so, not links into the system's (Debian's python3-torch links /usr/lib's, which
 * the default build uses anyway).
 */
function ownLibtorch(torchDir) {
  const lib = path.join(torchDir, 'lib', 'libtorch_cpu.so');
  return fs.existsSync(path.join(torchDir, 'include', 'torch')) && fs.existsSync(lib) && !fs.realpathSync(lib).startsWith('/usr/lib/');
}

/**
 * c10d's optional backends for this libtorch (native/src/distributed.cc compiles each only when found):
 * Gloo needs gloo's headers (ProcessGroupGloo.hpp includes them): Debian's libgloo-dev puts them in /usr/include
 * (and libgloo.so beside them), PyTorch wheels ship none, so a wheel's libtorch gets Gloo only when
 * CROSSMAX_GLOO_INCLUDE names a gloo include directory of the same gloo revision. NCCL needs a CUDA libtorch whose
 * include/ has ProcessGroupNCCL.hpp, plus nccl.h and CUDA's runtime headers, which a wheel installs as the nvidia-*
 * packages next to torch/ (site-packages/nvidia/<name>/include) and a CUDA toolkit in /usr/local/cuda/include.
 */
function distributedPaths(p) {
  const out = { gloo: false, glooInclude: [], glooLibs: [], nccl: false, ncclInclude: [] };
  const glooDir = process.env.CROSSMAX_GLOO_INCLUDE || (root ? path.join(root, 'include') : '/usr/include');
  if (fs.existsSync(path.join(glooDir, 'gloo', 'config.h'))) {
    out.gloo = true;
    if (glooDir !== '/usr/include' && !p.include.includes(glooDir)) out.glooInclude.push(glooDir);
    // Debian's libtorch links gloo dynamically; a wheel's libtorch_cpu carries its own copy.
    if (!root && fs.existsSync('/usr/lib/x86_64-linux-gnu/libgloo.so')) out.glooLibs.push('-lgloo');
    else if (!root) {
      const lib = ['/usr/lib/aarch64-linux-gnu/libgloo.so', '/usr/lib/libgloo.so'].find((f) => fs.existsSync(f));
      if (lib) out.glooLibs.push('-lgloo');
    }
  }
  if (p.cuda && fs.existsSync(path.join(root, 'include', 'torch', 'csrc', 'distributed', 'c10d', 'ProcessGroupNCCL.hpp'))) {
    const nvidia = path.join(root, '..', 'nvidia');
    const candidates = [path.join(root, 'include'), '/usr/local/cuda/include', '/usr/include'];
    if (fs.existsSync(nvidia)) {
      for (const name of fs.readdirSync(nvidia)) candidates.push(path.join(nvidia, name, 'include'));
    }
    const has = (file) => candidates.some((dir) => fs.existsSync(path.join(dir, file)));
    if (has('nccl.h') && has('cuda_runtime_api.h')) {
      out.nccl = true;
      out.ncclInclude = candidates.filter((dir) => dir !== '/usr/include' && dir !== path.join(root, 'include') && fs.existsSync(dir));
    }
  }
  return out;
}

module.exports = { ownLibtorch };

if (require.main === module) {
  const p = root ? customPaths() : debianPaths();
  const dist = distributedPaths(p);
  const libs = ['-ltorch', '-ltorch_cpu', '-lc10'];
  if (p.cuda) libs.push('-ltorch_cuda', '-lc10_cuda');
  libs.push(...dist.glooLibs);

  switch (what) {
    case 'include':
      console.log(p.include.concat(dist.glooInclude, dist.ncclInclude).join(' '));
      break;
    case 'libs':
      console.log((p.libDir ? [`-L${p.libDir}`] : []).concat(libs).join(' '));
      break;
    case 'ldflags':
      // --no-as-needed keeps libtorch_cuda loaded although no symbol of it is referenced: it registers the CUDA kernels.
      console.log(['-Wl,--no-as-needed'].concat(p.libDir ? [`-Wl,-rpath,${p.libDir}`] : []).join(' '));
      break;
    case 'defines':
      console.log([p.abi !== null ? `_GLIBCXX_USE_CXX11_ABI=${p.abi}` : '', p.cuda ? 'CROSSMAX_WITH_CUDA=1' : '',
        dist.gloo ? 'USE_C10D_GLOO CROSSMAX_WITH_GLOO=1' : '', dist.nccl ? 'USE_C10D_NCCL USE_CUDA CROSSMAX_WITH_NCCL=1' : '']
        .filter(Boolean).join(' '));
      break;
    case 'cxxflags':
      console.log(torchMajorVersion(p.include) >= 2 ? '-std=c++20' : '-std=c++17');
      break;
    case 'major':
      console.log(torchMajorVersion(p.include));
      break;
    case 'backends':
      console.log(['gloo', 'nccl'].filter((b) => dist[b]).join(' ') || 'none');
      break;
    default:
      throw new Error(`usage: libtorch-paths.cjs include|libs|ldflags|defines|cxxflags|major|backends`);
  }
}
