// OpenVINO backend: reads the ONNX file directly, compiles it for one device, runs dynamic shapes.
#include <openvino/openvino.hpp>

#include "backend.h"
#include "manifest.h"

namespace facesdk {
namespace {

bool device_present(const std::vector<std::string>& available, const std::string& device) {
  if (device == "AUTO" || device.rfind("AUTO:", 0) == 0) return true;
  for (const auto& d : available)
    if (d == device || d.rfind(device + ".", 0) == 0) return true;
  return false;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

class OpenVinoBackend : public Backend {
 public:
  OpenVinoBackend(const BackendOptions& options, const std::string& model_path)
      : device_(options.device.empty() ? "CPU" : options.device), hint_(options.precision_hint) {
    const auto available = core_.get_available_devices();
    if (!device_present(available, device_))
      throw Error("OpenVINO device '" + device_ + "' is not present on this machine; available: " +
                  join(available) + " (or AUTO)");
    if (hint_ != "f32" && hint_ != "default")
      throw Error("precision hint must be 'f32' or 'default', got '" + hint_ + "'");
    ov::AnyMap config;
    if (hint_ == "f32") config.emplace(ov::hint::inference_precision(ov::element::f32));
    try {
      compiled_ = core_.compile_model(core_.read_model(model_path), device_, config);
    } catch (const std::exception& e) {
      throw Error("OpenVINO could not compile " + model_path + " for " + device_ + " (precision hint " + hint_ +
                  "): " + e.what());
    }
    request_ = compiled_.create_infer_request();
    // ONNX graph outputs may carry several tensor names (e.g. "291" and "cls_8"): answer to each.
    for (const auto& output : compiled_.outputs())
      outputs_.emplace_back(output.get_names().begin(), output.get_names().end());
    if (hint_ == "default" && device_ == "CPU") {
      chosen_ = compiled_.get_property(ov::hint::inference_precision).get_type_name();
    } else {
      chosen_ = hint_;
    }
  }

  std::string describe() const override {
    return "openvino " + device_ + " (precision hint " + hint_ + (hint_ == "default" ? ": " + chosen_ : "") + ")";
  }

  TensorMap run(const std::string& input_name, const Tensor& input) override {
    ov::Shape shape(input.shape.begin(), input.shape.end());
    ov::Tensor tensor(ov::element::f32, shape, const_cast<float*>(input.data.data()));
    request_.set_tensor(input_name, tensor);
    request_.infer();
    TensorMap out;
    for (size_t port = 0; port < outputs_.size(); ++port) {
      const ov::Tensor result = request_.get_output_tensor(port);
      const std::string& name = outputs_[port].front();
      if (result.get_element_type() != ov::element::f32)
        throw Error("OpenVINO output '" + name + "' is not float32");
      Tensor t;
      for (auto d : result.get_shape()) t.shape.push_back(static_cast<int64_t>(d));
      const float* data = result.data<const float>();
      t.data.assign(data, data + result.get_size());
      for (size_t k = 1; k < outputs_[port].size(); ++k) out.emplace(outputs_[port][k], t);
      out.emplace(name, std::move(t));
    }
    return out;
  }

 private:
  ov::Core core_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
  std::vector<std::vector<std::string>> outputs_;  // tensor names per output port
  std::string device_, hint_, chosen_;
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const BackendOptions& options, const std::string& model_path) {
  return std::make_unique<OpenVinoBackend>(options, model_path);
}

}  // namespace facesdk
