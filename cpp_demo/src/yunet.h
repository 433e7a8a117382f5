// YuNet face detection decoded here (strides 8/16/32, scores, boxes, five landmarks, NMS), the model run
// through any Backend. Matches cv::FaceDetectorYN (OpenCV >= 4.8) and sdk/faces/detector.py.
#pragma once

#include <array>
#include <memory>
#include <opencv2/core.hpp>
#include <vector>

#include "backend.h"

namespace facesdk {

struct Detection {
  std::array<double, 4> box{};  // x, y, w, h in frame pixels
  double score = 0.0;
  std::array<std::array<double, 2>, 5> landmarks{};  // right eye, left eye, nose, right/left mouth corner
};

struct DetectorConfig {  // defaults of sdk/faces/detector.py DetectorConfig
  float score_threshold = 0.7f;
  float nms_threshold = 0.3f;
  int top_k = 5000;
  double min_face_size = 16.0;
  int max_side = 1280;
};

// One raw YuNet row before NMS: x, y, w, h, 5 x (lx, ly), score, in detector-input pixels.
using YuNetRow = std::array<float, 15>;

// Decodes the twelve YuNet outputs (cls/obj/bbox/kps per stride) of a padded input of pad_w x pad_h.
std::vector<YuNetRow> decode_yunet(const TensorMap& outputs, int pad_w, int pad_h);

// cv::dnn::NMSBoxes on integer-truncated boxes: score > threshold, stable descending sort, top_k, greedy IoU.
std::vector<YuNetRow> nms(const std::vector<YuNetRow>& rows, float score_threshold, float nms_threshold, int top_k);

class FaceDetector {
 public:
  FaceDetector(std::unique_ptr<Backend> backend, DetectorConfig config = {});
  // Faces of a BGR uint8 frame, sorted by score, in frame pixels.
  std::vector<Detection> detect(const cv::Mat& frame_bgr);
  const Backend& backend() const { return *backend_; }

 private:
  std::unique_ptr<Backend> backend_;
  DetectorConfig config_;
};

}  // namespace facesdk
