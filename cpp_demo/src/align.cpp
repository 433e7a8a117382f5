#include "align.h"

#include <opencv2/imgproc.hpp>

namespace facesdk {
namespace {

// The standard ArcFace five-point template for 112 x 112 crops.
constexpr double kArcFace112[5][2] = {
    {38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041}};

// Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst. In 2-D the
// Umeyama (1991) solution has this closed form: with centred points, scale * R = [[a, -b], [b, a]],
// a = sum(s . d) / sum |s|^2, b = sum(s x d) / sum |s|^2.
cv::Mat similarity(const double src[5][2], const double dst[5][2]) {
  double sm[2] = {0, 0}, dm[2] = {0, 0};
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k < 2; ++k) {
      sm[k] += src[i][k] / 5.0;
      dm[k] += dst[i][k] / 5.0;
    }
  double dot = 0, cross = 0, var = 0;
  for (int i = 0; i < 5; ++i) {
    const double sx = src[i][0] - sm[0], sy = src[i][1] - sm[1];
    const double dx = dst[i][0] - dm[0], dy = dst[i][1] - dm[1];
    dot += sx * dx + sy * dy;
    cross += sx * dy - sy * dx;
    var += sx * sx + sy * sy;
  }
  const double a = var > 0 ? dot / var : 1.0, b = var > 0 ? cross / var : 0.0;
  cv::Mat m(2, 3, CV_64F);
  m.at<double>(0, 0) = a;
  m.at<double>(0, 1) = -b;
  m.at<double>(1, 0) = b;
  m.at<double>(1, 1) = a;
  m.at<double>(0, 2) = dm[0] - (a * sm[0] - b * sm[1]);
  m.at<double>(1, 2) = dm[1] - (b * sm[0] + a * sm[1]);
  return m;
}

}  // namespace

int cv_interpolation(const std::string& name) {
  if (name == "bilinear") return cv::INTER_LINEAR;
  if (name == "bicubic") return cv::INTER_CUBIC;
  if (name == "nearest") return cv::INTER_NEAREST;
  if (name == "area") return cv::INTER_AREA;
  throw Error("interpolation must be bilinear, bicubic, nearest or area; the manifest says '" + name + "'");
}

cv::Mat crop_transform(const Detection& detection, const Preprocess& spec) {
  if (spec.crop == "align5") {
    double src[5][2], dst[5][2];
    for (int i = 0; i < 5; ++i) {
      src[i][0] = detection.landmarks[i][0];
      src[i][1] = detection.landmarks[i][1];
      dst[i][0] = (0.5 + (kArcFace112[i][0] / 112.0 - 0.5) / (1.0 + spec.margin)) * spec.width;
      dst[i][1] = (0.5 + (kArcFace112[i][1] / 112.0 - 0.5) / (1.0 + spec.margin)) * spec.height;
    }
    return similarity(src, dst);
  }
  if (spec.crop == "box") {
    const auto& b = detection.box;
    const double side = std::max(b[2], b[3]) * (1.0 + spec.margin);
    if (side <= 0) throw Error("a detection box has no area");
    const double x0 = b[0] + b[2] / 2 - side / 2, y0 = b[1] + b[3] / 2 - side / 2;
    const double sx = spec.width / side, sy = spec.height / side;
    return (cv::Mat_<double>(2, 3) << sx, 0.0, -x0 * sx, 0.0, sy, -y0 * sy);
  }
  throw Error("crop policy '" + spec.crop + "' has no per-face transform");
}

cv::Mat crop_face(const cv::Mat& frame_bgr, const Detection& detection, const Preprocess& spec) {
  const cv::Size size(spec.width, spec.height);
  cv::Mat crop;
  if (spec.crop == "full") {
    cv::resize(frame_bgr, crop, size, 0, 0, cv_interpolation(spec.interpolation));
  } else {
    cv::warpAffine(frame_bgr, crop, crop_transform(detection, spec), size, cv_interpolation(spec.interpolation),
                   cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
  }
  return crop;
}

Tensor to_input_tensor(const std::vector<cv::Mat>& crops_bgr, const Preprocess& spec) {
  const int h = spec.height, w = spec.width;
  Tensor out;
  out.shape = {static_cast<int64_t>(crops_bgr.size()), 3, h, w};
  out.data.resize(crops_bgr.size() * 3 * static_cast<size_t>(h) * w);
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * spec.std[c]);
    shift[c] = spec.mean[c] / spec.std[c];
  }
  for (size_t n = 0; n < crops_bgr.size(); ++n) {
    cv::Mat crop = crops_bgr[n];
    if (crop.type() != CV_8UC3) throw Error("crops must be H x W x 3 uint8 BGR");
    if (crop.rows != h || crop.cols != w) cv::resize(crop, crop, cv::Size(w, h), 0, 0, cv_interpolation(spec.interpolation));
    float* dst = out.data.data() + n * 3 * static_cast<size_t>(h) * w;
    for (int y = 0; y < h; ++y) {
      const uint8_t* px = crop.ptr<uint8_t>(y);
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)  // output channel c (RGB) reads BGR channel 2 - c
          dst[(static_cast<size_t>(c) * h + y) * w + x] = static_cast<float>(px[3 * x + 2 - c]) * scale[c] - shift[c];
    }
  }
  return out;
}

}  // namespace facesdk
