#include "yunet.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <opencv2/imgproc.hpp>
#include <string>

#include "manifest.h"

namespace facesdk {
namespace {

constexpr int kStrides[3] = {8, 16, 32};
constexpr int kDivisor = 32;

const Tensor& output(const TensorMap& outputs, const std::string& name, size_t anchors, size_t width) {
  auto it = outputs.find(name);
  if (it == outputs.end()) throw Error("the YuNet model has no output '" + name + "': expected the 2023+ layout");
  if (it->second.data.size() != anchors * width)
    throw Error("YuNet output '" + name + "' has " + std::to_string(it->second.data.size()) + " values, expected " +
                std::to_string(anchors * width));
  return it->second;
}

float clamp01(float v) { return std::min(std::max(v, 0.0f), 1.0f); }

}  // namespace

std::vector<YuNetRow> decode_yunet(const TensorMap& outputs, int pad_w, int pad_h) {
  std::vector<YuNetRow> rows;
  for (int stride : kStrides) {
    const int cols = pad_w / stride, nrows = pad_h / stride;
    const size_t anchors = static_cast<size_t>(cols) * nrows;
    const std::string s = std::to_string(stride);
    const auto& cls = output(outputs, "cls_" + s, anchors, 1).data;
    const auto& obj = output(outputs, "obj_" + s, anchors, 1).data;
    const auto& bbox = output(outputs, "bbox_" + s, anchors, 4).data;
    const auto& kps = output(outputs, "kps_" + s, anchors, 10).data;
    const float st = static_cast<float>(stride);
    for (int r = 0; r < nrows; ++r) {
      for (int c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r) * cols + c;
        YuNetRow row;
        const float cx = (static_cast<float>(c) + bbox[i * 4 + 0]) * st;
        const float cy = (static_cast<float>(r) + bbox[i * 4 + 1]) * st;
        const float w = std::exp(bbox[i * 4 + 2]) * st;
        const float h = std::exp(bbox[i * 4 + 3]) * st;
        row[0] = cx - w / 2.0f;
        row[1] = cy - h / 2.0f;
        row[2] = w;
        row[3] = h;
        for (int n = 0; n < 5; ++n) {
          row[4 + 2 * n] = (kps[i * 10 + 2 * n] + static_cast<float>(c)) * st;
          row[5 + 2 * n] = (kps[i * 10 + 2 * n + 1] + static_cast<float>(r)) * st;
        }
        row[14] = std::sqrt(clamp01(cls[i]) * clamp01(obj[i]));
        rows.push_back(row);
      }
    }
  }
  return rows;
}

std::vector<YuNetRow> nms(const std::vector<YuNetRow>& rows, float score_threshold, float nms_threshold, int top_k) {
  std::vector<size_t> order;
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i][14] > score_threshold) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a][14] > rows[b][14]; });
  if (top_k > 0 && order.size() > static_cast<size_t>(top_k)) order.resize(top_k);
  auto rect = [&](size_t i) {
    return cv::Rect(static_cast<int>(rows[i][0]), static_cast<int>(rows[i][1]), static_cast<int>(rows[i][2]),
                    static_cast<int>(rows[i][3]));
  };
  std::vector<size_t> kept;
  for (size_t i : order) {
    const cv::Rect a = rect(i);
    bool keep = true;
    for (size_t k : kept) {
      const cv::Rect b = rect(k);
      const double inter = (a & b).area();
      const double uni = static_cast<double>(a.area()) + b.area() - inter;
      const double overlap = uni > 0 ? inter / uni : 0.0;
      if (overlap > nms_threshold) {
        keep = false;
        break;
      }
    }
    if (keep) kept.push_back(i);
  }
  std::vector<YuNetRow> out;
  for (size_t i : kept) out.push_back(rows[i]);
  return out;
}

FaceDetector::FaceDetector(std::unique_ptr<Backend> backend, DetectorConfig config)
    : backend_(std::move(backend)), config_(config) {}

std::vector<Detection> FaceDetector::detect(const cv::Mat& frame_bgr) {
  cv::Mat image = frame_bgr;
  double scale = 1.0;
  const int h = frame_bgr.rows, w = frame_bgr.cols;
  if (std::max(h, w) > config_.max_side) {
    const double factor = static_cast<double>(config_.max_side) / std::max(h, w);
    const cv::Size size(std::max(1, static_cast<int>(std::nearbyint(w * factor))),
                        std::max(1, static_cast<int>(std::nearbyint(h * factor))));
    cv::resize(frame_bgr, image, size, 0, 0, cv::INTER_AREA);
    scale = static_cast<double>(w) / size.width;
  }
  const int pad_w = (image.cols - 1) / kDivisor * kDivisor + kDivisor;
  const int pad_h = (image.rows - 1) / kDivisor * kDivisor + kDivisor;
  Tensor blob;
  blob.shape = {1, 3, pad_h, pad_w};
  blob.data.assign(static_cast<size_t>(3) * pad_h * pad_w, 0.0f);  // zero padding right and bottom
  for (int y = 0; y < image.rows; ++y) {
    const uint8_t* px = image.ptr<uint8_t>(y);
    for (int x = 0; x < image.cols; ++x)
      for (int c = 0; c < 3; ++c)  // BGR, 0..255, no normalisation
        blob.data[(static_cast<size_t>(c) * pad_h + y) * pad_w + x] = px[3 * x + c];
  }
  const auto rows = nms(decode_yunet(backend_->run("input", blob), pad_w, pad_h), config_.score_threshold,
                        config_.nms_threshold, config_.top_k);
  std::vector<Detection> out;
  for (const auto& row : rows) {
    Detection d;
    for (int k = 0; k < 4; ++k) d.box[k] = static_cast<double>(row[k]) * scale;
    if (std::min(d.box[2], d.box[3]) < config_.min_face_size) continue;
    for (int n = 0; n < 5; ++n)
      d.landmarks[n] = {static_cast<double>(row[4 + 2 * n]) * scale, static_cast<double>(row[5 + 2 * n]) * scale};
    d.score = row[14];
    out.push_back(d);
  }
  std::stable_sort(out.begin(), out.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
  return out;
}

}  // namespace facesdk
