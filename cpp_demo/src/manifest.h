// The export directory contract (export.json, schema version 1), read the way sdk/contract/export_manifest.py reads it.
#pragma once

#include <array>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace facesdk {

// Every error the demo raises on purpose; the message says what was expected, found and what to do.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr int kExportSchemaVersion = 1;

struct Task {
  std::string name;
  std::vector<std::string> labels;
  // Softmax temperature from export.json's optional "temperatures" {task: T} (1.0 when absent):
  // probabilities are softmax(logits / T), as in sdk/faces/analysis.py::postprocess.
  double temperature = 1.0;
};

struct Preprocess {
  int height = 384;
  int width = 384;
  std::array<float, 3> mean{0.5f, 0.5f, 0.5f};  // R, G, B
  std::array<float, 3> std{0.5f, 0.5f, 0.5f};
  std::string interpolation = "bicubic";  // bilinear | bicubic | nearest | area
  std::string crop = "align5";            // align5 | box | full
  double margin = 0.4;
};

struct ModelFile {
  std::string path;  // absolute
  std::string format;     // onnx | engine
  std::string precision;  // fp32 | fp16 | int8
  long long size = 0;
};

struct Manifest {
  std::string directory;
  std::vector<Task> tasks;
  Preprocess preprocess;
  std::string input_name = "input";
  std::vector<std::string> output_names;
  int max_batch = 1;
  std::map<std::string, ModelFile> models;  // "onnx-fp32", "engine-fp16", ...

  // The file for a key such as "onnx-fp32"; throws listing the keys the export has.
  const ModelFile& model(const std::string& key) const;
};

// Reads DIR/export.json; checks kind, schema version, tasks == outputs, temperatures and model file sizes.
Manifest load_manifest(const std::string& directory);

}  // namespace facesdk
