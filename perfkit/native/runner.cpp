// perfkit native runner: latency of a TorchScript (or AOTInductor .pt2) model from C++ LibTorch.
//
// This program is the profiler of the "native" runtime: Python cannot time a call that happens in
// another process, so the timing loop lives here and mirrors perfkit/profile/timing.py exactly
// (warm-up by count then by time, at least N iterations and T seconds, a device synchronisation
// after every measured call, linear-interpolation percentiles). It prints ONE JSON object on
// stdout holding the statistics and the raw per-iteration samples, so Python can recompute them.
//
// Usage:
//   perfkit-native-runner --model resnet18.ts --shape 3,224,224 --batch 8 --threads 2
//       [--format torchscript|aoti] [--device cpu|cuda] [--warmup 10] [--warmup-seconds 1]
//       [--iterations 50] [--min-seconds 2] [--no-freeze] [--seed 0]
//       [--input x.f32 --output logits.f32]   (raw little-endian float32, NCHW / (N, classes))
//   perfkit-native-runner --model resnet18.ts --shape 3,224,224 --serve
//       load once, then answer requests on stdin/stdout until EOF (perfkit's native Runner):
//       request  = int64 N, then N*C*H*W float32 (little-endian, NCHW)
//       response = int64 N, int64 K, then N*K float32 logits;
//                  or int64 -1, int64 L, then L bytes of error text (the runner stays up)

#include <torch/script.h>
#include <torch/cuda.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#ifdef PERFKIT_HAVE_AOTI
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model, format = "torchscript", device = "cpu", input, output;
  std::vector<int64_t> shape;  // C, H, W
  int64_t batch = 1;
  int threads = 0;  // 0: LibTorch's default
  int warmup = 10;
  double warmup_seconds = 1.0;
  int iterations = 50;
  double min_seconds = 2.0;
  bool freeze = true;  // torch::jit::optimize_for_inference (freezes, then folds and fuses)
  bool serve = false;
  uint64_t seed = 0;
};

[[noreturn]] void usage_error(const std::string& msg) {
  throw std::invalid_argument(msg + " (see the header of perfkit/native/runner.cpp for usage)");
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) out.push_back(std::stoll(part));
  if (out.size() != 3) usage_error("--shape must be C,H,W, got '" + text + "'");
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--format") o.format = next();
    else if (a == "--device") o.device = next();
    else if (a == "--shape") o.shape = parse_shape(next());
    else if (a == "--batch") o.batch = std::stoll(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--warmup") o.warmup = std::stoi(next());
    else if (a == "--warmup-seconds") o.warmup_seconds = std::stod(next());
    else if (a == "--iterations") o.iterations = std::stoi(next());
    else if (a == "--min-seconds") o.min_seconds = std::stod(next());
    else if (a == "--input") o.input = next();
    else if (a == "--output") o.output = next();
    else if (a == "--seed") o.seed = std::stoull(next());
    else if (a == "--no-freeze") o.freeze = false;
    else if (a == "--serve") o.serve = true;
    else usage_error("unknown argument " + a);
  }
  if (o.model.empty()) usage_error("--model is required");
  if (o.shape.empty()) usage_error("--shape is required");
  if (o.batch < 1 || o.iterations < 1 || o.warmup < 0) usage_error("--batch and --iterations must be >= 1");
  if (o.format != "torchscript" && o.format != "aoti") usage_error("--format must be torchscript or aoti");
  return o;
}

// Linear interpolation between closest ranks, as numpy's default and perfkit/profile/timing.py.
double percentile(const std::vector<double>& sorted, double q) {
  double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  auto lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

std::string json_string(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out + "\"";
}

at::Tensor read_input(const Options& o) {
  std::vector<int64_t> dims{o.batch, o.shape[0], o.shape[1], o.shape[2]};
  if (o.input.empty()) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    return at::randn(dims, gen, at::TensorOptions().dtype(at::kFloat));
  }
  at::Tensor x = at::empty(dims, at::kFloat);
  std::ifstream f(o.input, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open input file " + o.input);
  auto bytes = static_cast<std::streamsize>(x.numel() * sizeof(float));
  f.read(reinterpret_cast<char*>(x.data_ptr<float>()), bytes);
  if (f.gcount() != bytes) {
    throw std::runtime_error("input file " + o.input + " holds " + std::to_string(f.gcount()) +
                             " bytes, expected " + std::to_string(bytes) + " (float32 NCHW)");
  }
  return x;
}

void write_output(const std::string& path, const at::Tensor& logits) {
  at::Tensor y = logits.to(at::kCPU, at::kFloat).contiguous();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(y.data_ptr<float>()), static_cast<std::streamsize>(y.numel() * sizeof(float)));
  if (!f) throw std::runtime_error("cannot write output file " + path);
}

// A field of /proc/self/status in bytes (-1 when absent).
int64_t status_bytes(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), as perfkit/profile/memory.py does.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

// One callable per format: x -> logits.
// `frozen` says whether the module runs frozen (by the exporter or here).
std::function<at::Tensor(const at::Tensor&)> load(const Options& o, const c10::Device& device, bool& frozen) {
  frozen = o.format == "aoti";
  if (o.format == "torchscript") {
    auto module = std::make_shared<torch::jit::Module>(torch::jit::load(o.model, device));
    module->eval();
    // A deployment optimises for inference as torch.jit.optimize_for_inference does in Python
    // (freeze: weights folded in as constants, then conv/BN folding and fusions); an
    // already-frozen artifact has no `training` attribute left and is used as is.
    if (o.freeze && module->hasattr("training")) *module = torch::jit::optimize_for_inference(*module);
    frozen = !module->hasattr("training");
    return [module](const at::Tensor& x) {
      return module->forward({x}).toTensor();
    };
  }
#ifdef PERFKIT_HAVE_AOTI
  auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(o.model);
  return [loader](const at::Tensor& x) { return loader->run({x})[0]; };
#else
  throw std::runtime_error("this build has no AOTInductor loader (the installed torch lacks aoti_package headers)");
#endif
}

bool read_exact(char* out, size_t n) {
  std::cin.read(out, static_cast<std::streamsize>(n));
  return static_cast<size_t>(std::cin.gcount()) == n;
}

void write_int(int64_t v) { std::cout.write(reinterpret_cast<const char*>(&v), sizeof v); }

// The serve loop: one model load, then one forward per request, until stdin closes.
int serve(const Options& o, const std::function<at::Tensor(const at::Tensor&)>& forward, const c10::Device& device) {
  std::ios::sync_with_stdio(false);
  int64_t n = 0;
  while (read_exact(reinterpret_cast<char*>(&n), sizeof n)) {
    if (n < 1 || n > (1 << 20)) throw std::runtime_error("bad request: batch " + std::to_string(n));
    at::Tensor x = at::empty({n, o.shape[0], o.shape[1], o.shape[2]}, at::kFloat);
    if (!read_exact(reinterpret_cast<char*>(x.data_ptr<float>()), x.numel() * sizeof(float)))
      throw std::runtime_error("truncated request: expected " + std::to_string(x.numel()) + " floats");
    try {
      at::Tensor y = forward(x.to(device)).to(at::kCPU, at::kFloat).contiguous();
      write_int(y.size(0));
      write_int(y.numel() / y.size(0));
      std::cout.write(reinterpret_cast<const char*>(y.data_ptr<float>()),
                      static_cast<std::streamsize>(y.numel() * sizeof(float)));
    } catch (const std::exception& e) {
      std::string what = e.what();
      write_int(-1);
      write_int(static_cast<int64_t>(what.size()));
      std::cout.write(what.data(), static_cast<std::streamsize>(what.size()));
    }
    std::cout.flush();
  }
  return 0;
}

int run(const Options& o) {
  if (o.threads > 0) at::set_num_threads(o.threads);
  c10::Device device(o.device);
  bool cuda = device.is_cuda();
  auto sync = [&] { if (cuda) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index()); };

  c10::InferenceMode guard;  // what a deployment runs under: no autograd bookkeeping
  // Host memory of the model alone: peak RSS from here on (load + runs) minus the RSS now, when
  // LibTorch is loaded but no model is.
  bool hwm_reset = reset_peak_rss();
  int64_t rss_before_load = status_bytes("VmRSS");
  auto t_load = Clock::now();
  bool frozen = false;
  auto forward = load(o, device, frozen);
  double load_seconds = std::chrono::duration<double>(Clock::now() - t_load).count();
  if (o.serve) return serve(o, forward, device);

  at::Tensor x = read_input(o).to(device);
  at::Tensor logits = forward(x);  // first call: also the parity output
  sync();
  if (!o.output.empty()) write_output(o.output, logits);

  // Warm-up: at least `warmup` calls, then until `warmup_seconds` have passed.
  int warmup_done = 0;
  auto t_warm = Clock::now();
  while (warmup_done < o.warmup ||
         std::chrono::duration<double>(Clock::now() - t_warm).count() < o.warmup_seconds) {
    forward(x);
    sync();
    ++warmup_done;
  }

  // Measurement: at least `iterations` calls and at least `min_seconds`, synchronised each call.
  std::vector<double> samples_ms;
  auto t_start = Clock::now();
  while (static_cast<int>(samples_ms.size()) < o.iterations ||
         std::chrono::duration<double>(Clock::now() - t_start).count() < o.min_seconds) {
    auto t0 = Clock::now();
    forward(x);
    sync();
    samples_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }

  int64_t peak_rss = status_bytes("VmHWM");

  std::vector<double> sorted = samples_ms;
  std::sort(sorted.begin(), sorted.end());
  double n = static_cast<double>(sorted.size());
  double mean = 0;
  for (double s : sorted) mean += s;
  mean /= n;
  double var = 0;
  for (double s : sorted) var += (s - mean) * (s - mean);
  // Sample standard deviation (n - 1), as Python's statistics.stdev.
  double stdev = sorted.size() > 1 ? std::sqrt(var / (n - 1)) : 0.0;
  double median = percentile(sorted, 50);

  std::ostringstream js;
  js << "{\"runtime\": \"native\", \"format\": " << json_string(o.format)
     << ", \"model_path\": " << json_string(o.model) << ", \"device\": " << json_string(device.str())
     << ", \"batch\": " << o.batch << ", \"threads\": " << at::get_num_threads()
     << ", \"torch_version\": " << json_string(TORCH_VERSION) << ", \"frozen\": " << (frozen ? "true" : "false")
     << ", \"load_seconds\": " << json_number(load_seconds)
     << ", \"warmup_iterations\": " << warmup_done << ", \"iterations\": " << samples_ms.size()
     << ", \"latency_mean_ms\": " << json_number(mean) << ", \"latency_median_ms\": " << json_number(median)
     << ", \"latency_p90_ms\": " << json_number(percentile(sorted, 90))
     << ", \"latency_p95_ms\": " << json_number(percentile(sorted, 95))
     << ", \"latency_p99_ms\": " << json_number(percentile(sorted, 99))
     << ", \"latency_min_ms\": " << json_number(sorted.front())
     << ", \"latency_max_ms\": " << json_number(sorted.back()) << ", \"latency_std_ms\": " << json_number(stdev)
     << ", \"latency_cv\": " << json_number(mean > 0 ? stdev / mean : 0.0)
     << ", \"throughput_per_s\": " << json_number(static_cast<double>(o.batch) / (median / 1000.0))
     << ", \"rss_before_load_bytes\": " << rss_before_load << ", \"peak_rss_bytes\": " << peak_rss
     << ", \"peak_rss_reset\": " << (hwm_reset ? "true" : "false")
     << ", \"output_shape\": [";
  for (int64_t d = 0; d < logits.dim(); ++d) js << (d ? ", " : "") << logits.size(d);
  js << "], \"samples_ms\": [";
  for (size_t i = 0; i < samples_ms.size(); ++i) js << (i ? ", " : "") << json_number(samples_ms[i]);
  js << "]}";
  std::cout << js.str() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    // One line on stderr and a non-zero exit: the Python wrapper turns it into a PerfkitError.
    std::cerr << "perfkit-native-runner: " << e.what() << std::endl;
    return 2;
  }
}
