// Detect -> crop -> one batched inference -> softmax: the C++ twin of sdk/faces/analysis.py and FrameResult.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"
#include "manifest.h"
#include "yunet.h"

namespace facesdk {

struct Prediction {
  std::string label;
  double confidence = 0.0;
  std::vector<std::pair<std::string, double>> probs;  // in label order
};

struct FaceResult {
  Detection detection;
  std::vector<std::pair<std::string, Prediction>> attributes;  // in task order
};

struct FrameResult {
  long long index = 0;
  double timestamp = 0.0;
  std::string source;
  std::vector<std::pair<std::string, double>> timings;  // decode, detect, align, infer, post (ms)
  std::vector<FaceResult> faces;

  // The same shape as the Python FrameResult.to_json().
  nlohmann::ordered_json to_json() const;
};

class Analyzer {
 public:
  Analyzer(Manifest manifest, std::unique_ptr<Backend> model, std::unique_ptr<FaceDetector> detector);
  FrameResult analyze(const cv::Mat& frame_bgr, long long index, double decode_ms);
  const Backend& model_backend() const { return *model_; }
  const FaceDetector& detector() const { return *detector_; }

 private:
  Manifest manifest_;
  std::unique_ptr<Backend> model_;
  std::unique_ptr<FaceDetector> detector_;
};

}  // namespace facesdk
