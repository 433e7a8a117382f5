// TensorRT backend (TensorRT >= 8.5, incl. JetPack 5/6): a serialized plan (.engine/.plan) is deserialized;
// an .onnx file (the YuNet detector) is parsed and built into an engine for the first input shape it meets
// (rebuilt when the frame size changes). I/O is by tensor name, inference is enqueueV3 on a CUDA stream,
// and the batch is dynamic through the input shape (within the engine's optimization profile).
#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <type_traits>

#include "backend.h"
#include "manifest.h"

namespace facesdk {
namespace {

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "tensorrt: " << message << "\n";
  }
};

Logger& logger() {
  static Logger instance;
  return instance;
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

int cuda_device(const std::string& device) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  int index = 0;
  if (device.rfind("GPU.", 0) == 0) index = std::stoi(device.substr(4));
  else if (!device.empty() && device.find_first_not_of("0123456789") == std::string::npos) index = std::stoi(device);
  else if (!device.empty() && device != "GPU")
    throw Error("TensorRT runs on an NVIDIA GPU: --device must be GPU, GPU.N or a CUDA device index, got '" + device +
                "'");
  if (index >= count)
    throw Error("CUDA device " + std::to_string(index) + " is not present; this machine has " + std::to_string(count));
  return index;
}

size_t volume(const nvinfer1::Dims& dims) {
  size_t n = 1;
  for (int i = 0; i < dims.nbDims; ++i) n *= static_cast<size_t>(std::max<int64_t>(dims.d[i], 0));
  return n;
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void reserve(size_t need) {
    if (need <= bytes) return;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    check(cudaMalloc(&ptr, need), "cudaMalloc");
    bytes = need;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

class TensorRTBackend : public Backend {
 public:
  TensorRTBackend(const BackendOptions& options, const std::string& path) : path_(path) {
    check(cudaSetDevice(cuda_device(options.device)), "cudaSetDevice");
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    runtime_.reset(nvinfer1::createInferRuntime(logger()));
    const std::string ext = std::filesystem::path(path).extension().string();
    from_onnx_ = ext == ".onnx";
    if (!from_onnx_) load(read_file(path));
  }

  ~TensorRTBackend() override {
    context_.reset();
    engine_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string describe() const override {
    return std::string("tensorrt ") + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) +
           (from_onnx_ ? " (engine built from ONNX at run time)" : " (serialized engine)");
  }

  TensorMap run(const std::string& input_name, const Tensor& input) override {
    nvinfer1::Dims dims{};
    dims.nbDims = static_cast<int>(input.shape.size());
    for (int i = 0; i < dims.nbDims; ++i) dims.d[i] = static_cast<std::remove_reference_t<decltype(dims.d[0])>>(input.shape[i]);
    if (from_onnx_ && (!engine_ || input.shape != built_shape_)) build_from_onnx(input_name, dims, input.shape);
    if (!context_->setInputShape(input_name.c_str(), dims))
      throw Error(path_ + ": input '" + input_name + "' cannot take this shape (outside the engine's profile?)");
    buffers_[input_name].reserve(input.data.size() * sizeof(float));
    check(cudaMemcpyAsync(buffers_[input_name].ptr, input.data.data(), input.data.size() * sizeof(float),
                          cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (input)");
    context_->setTensorAddress(input_name.c_str(), buffers_[input_name].ptr);
    TensorMap out;
    for (const auto& name : outputs_) {
      const nvinfer1::Dims shape = context_->getTensorShape(name.c_str());
      Tensor& t = out[name];
      for (int i = 0; i < shape.nbDims; ++i) t.shape.push_back(shape.d[i]);
      t.data.resize(volume(shape));
      buffers_[name].reserve(std::max<size_t>(t.data.size(), 1) * sizeof(float));
      context_->setTensorAddress(name.c_str(), buffers_[name].ptr);
    }
    if (!context_->enqueueV3(stream_)) throw Error(path_ + ": TensorRT enqueueV3 failed");
    for (auto& [name, t] : out)
      check(cudaMemcpyAsync(t.data.data(), buffers_[name].ptr, t.data.size() * sizeof(float), cudaMemcpyDeviceToHost,
                            stream_), "cudaMemcpyAsync (output)");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return out;
  }

 private:
  static std::vector<char> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot read " + path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  void load(const std::vector<char>& plan) {
    context_.reset();
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_)
      throw Error(path_ + " is not a TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                  std::to_string(NV_TENSORRT_MINOR) +
                  " engine for this GPU: plans run only on the TensorRT release and GPU that built them; rebuild it");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(path_ + ": could not create a TensorRT execution context");
    outputs_.clear();
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      if (engine_->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
        throw Error(path_ + ": tensor '" + name + "' is not float32; export engines with float32 I/O");
      if (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT) outputs_.emplace_back(name);
    }
  }

  void build_from_onnx(const std::string& input_name, const nvinfer1::Dims& dims, const std::vector<int64_t>& shape) {
    std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
#if NV_TENSORRT_MAJOR >= 10
    std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(0));
#else
    const auto flags = 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
    std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(flags));
#endif
    std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
    if (!parser->parseFromFile(path_.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING)))
      throw Error("TensorRT could not parse " + path_);
    std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
    nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
    for (auto selector : {nvinfer1::OptProfileSelector::kMIN, nvinfer1::OptProfileSelector::kOPT,
                          nvinfer1::OptProfileSelector::kMAX})
      profile->setDimensions(input_name.c_str(), selector, dims);
    config->addOptimizationProfile(profile);
    std::cerr << "tensorrt: building an engine for " << path_ << " (first frame of this size; takes a while)\n";
    std::unique_ptr<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
    if (!plan) throw Error("TensorRT could not build an engine from " + path_);
    const char* bytes = static_cast<const char*>(plan->data());
    load(std::vector<char>(bytes, bytes + plan->size()));
    built_shape_ = shape;
  }

  std::string path_;
  bool from_onnx_ = false;
  std::vector<int64_t> built_shape_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::vector<std::string> outputs_;
  std::map<std::string, DeviceBuffer> buffers_;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const BackendOptions& options, const std::string& model_path) {
  return std::make_unique<TensorRTBackend>(options, model_path);
}

}  // namespace facesdk
