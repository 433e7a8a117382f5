// The inference backend interface: named float32 tensors in, named float32 tensors out.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace facesdk {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

using TensorMap = std::map<std::string, Tensor>;

class Backend {
 public:
  virtual ~Backend() = default;
  // e.g. "openvino CPU (precision hint f32)".
  virtual std::string describe() const = 0;
  // Runs the model on one input tensor (any shape its dynamic dims allow); returns every output.
  virtual TensorMap run(const std::string& input_name, const Tensor& input) = 0;
};

struct BackendOptions {
  std::string kind = "openvino";  // openvino | tensorrt
  std::string device;  // OpenVINO: CPU (default) | GPU | NPU | AUTO; TensorRT: GPU (default) | GPU.N | N
  std::string precision_hint = "f32";  // OpenVINO inference precision hint: f32 | default
};

// Backends compiled into this binary, in preference order.
std::vector<std::string> built_backends();

// Loads the model file (.onnx, or a TensorRT .engine/.plan) on the chosen backend; throws facesdk::Error.
std::unique_ptr<Backend> make_backend(const BackendOptions& options, const std::string& model_path);

#ifdef FACESDK_WITH_OPENVINO
std::unique_ptr<Backend> make_openvino_backend(const BackendOptions& options, const std::string& model_path);
#endif
#ifdef FACESDK_WITH_TENSORRT
std::unique_ptr<Backend> make_tensorrt_backend(const BackendOptions& options, const std::string& model_path);
#endif

}  // namespace facesdk
