#include "backend.h"

#include "manifest.h"

namespace facesdk {

std::vector<std::string> built_backends() {
  std::vector<std::string> out;
#ifdef FACESDK_WITH_TENSORRT
  out.push_back("tensorrt");
#endif
#ifdef FACESDK_WITH_OPENVINO
  out.push_back("openvino");
#endif
  return out;
}

std::unique_ptr<Backend> make_backend(const BackendOptions& options, const std::string& model_path) {
#ifdef FACESDK_WITH_OPENVINO
  if (options.kind == "openvino") return make_openvino_backend(options, model_path);
#endif
#ifdef FACESDK_WITH_TENSORRT
  if (options.kind == "tensorrt") return make_tensorrt_backend(options, model_path);
#endif
  std::string built;
  for (const auto& b : built_backends()) built += (built.empty() ? "" : ", ") + b;
  throw Error("backend '" + options.kind + "' is not built into this facesdk_demo; built: " +
              (built.empty() ? "none" : built) + ". Rebuild with its SDK found by CMake (see cpp_demo/README.md)");
}

}  // namespace facesdk
