#include "pose.h"

#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>

namespace facesdk {

const double kFaceModel3D[5][3] = {
    {-31.5, 0.0, 0.0},    // right eye (the person's right: image left when facing the camera)
    {31.5, 0.0, 0.0},     // left eye
    {0.0, 32.0, -24.0},   // nose tip, in front of the eyes (towards the camera)
    {-26.0, 60.0, -4.0},  // right mouth corner
    {26.0, 60.0, -4.0},   // left mouth corner
};

namespace {

constexpr double kPi = 3.14159265358979323846;

double degrees(double radians) { return radians * 180.0 / kPi; }

// The model's points minus their centroid, and that 5 x 3 matrix's pseudo-inverse (3 x 5).
struct CentredModel {
  cv::Matx<double, 5, 3> points;
  cv::Matx<double, 3, 5> pinv;
  CentredModel() {
    for (int k = 0; k < 3; ++k) {
      double mean = 0.0;
      for (int i = 0; i < 5; ++i) mean += kFaceModel3D[i][k] / 5.0;
      for (int i = 0; i < 5; ++i) points(i, k) = kFaceModel3D[i][k] - mean;
    }
    pinv = points.inv(cv::DECOMP_SVD);
  }
};

const CentredModel& centred_model() {
  static const CentredModel model;
  return model;
}

cv::Matx33d skew(const cv::Vec3d& v) { return {0.0, -v[2], v[1], v[2], 0.0, -v[0], -v[1], v[0], 0.0}; }

// exp of the rotation vector w (Rodrigues' formula).
cv::Matx33d exp_so3(const cv::Vec3d& w) {
  const double theta = cv::norm(w);
  if (theta < 1e-12) return cv::Matx33d::eye() + skew(w);
  const cv::Matx33d k = skew(w * (1.0 / theta));
  return cv::Matx33d::eye() + std::sin(theta) * k + (1.0 - std::cos(theta)) * (k * k);
}

// rotation = Rz(a) Ry(b) Rx(c) with a = -roll, b = -yaw, c = -pitch.
HeadPose angles(const cv::Matx33d& r) {
  const double b = -std::asin(std::max(-1.0, std::min(1.0, r(2, 0))));
  const double c = std::atan2(r(2, 1), r(2, 2));
  const double a = std::atan2(r(1, 0), r(0, 0));
  return {-degrees(b), -degrees(c), -degrees(a)};
}

}  // namespace

std::optional<HeadPose> head_pose(const Landmarks& landmarks, int iterations) {
  const CentredModel& model = centred_model();
  cv::Matx<double, 5, 2> centred;
  for (int k = 0; k < 2; ++k) {
    double mean = 0.0;
    for (int i = 0; i < 5; ++i) mean += landmarks[i][k] / 5.0;
    for (int i = 0; i < 5; ++i) centred(i, k) = landmarks[i][k] - mean;
  }
  // closed form: the affine projection M (2 x 3) in least squares, then the nearest scaled rotation
  const cv::Mat affine((model.pinv * centred).t());
  cv::Mat sv, u, vt;
  cv::SVD::compute(affine, sv, u, vt);
  const cv::Mat rows = u * vt;
  const double scale = (sv.at<double>(0) + sv.at<double>(1)) / 2.0;
  if (scale <= 1e-12) return std::nullopt;
  const cv::Vec3d r1(rows.ptr<double>(0)), r2(rows.ptr<double>(1)), r3 = r1.cross(r2);
  cv::Matx33d rotation(r1[0], r1[1], r1[2], r2[0], r2[1], r2[2], r3[0], r3[1], r3[2]);
  double s = scale;
  cv::Vec2d shift(0.0, 0.0);
  for (int it = 0; it < iterations; ++it) {
    // residuals (x, y per point) and their Jacobian in (w, scale, shift) for R <- exp(w) R
    cv::Matx<double, 10, 6> jac;
    cv::Matx<double, 10, 1> residual;
    for (int i = 0; i < 5; ++i) {
      const cv::Vec3d x(model.points(i, 0), model.points(i, 1), model.points(i, 2));
      const cv::Vec3d p = rotation * x;
      residual(2 * i) = s * p[0] + shift[0] - centred(i, 0);
      residual(2 * i + 1) = s * p[1] + shift[1] - centred(i, 1);
      // d(R X)/dw is -[R X]x; its x and y rows
      jac(2 * i, 1) = s * p[2];
      jac(2 * i, 2) = -s * p[1];
      jac(2 * i + 1, 0) = -s * p[2];
      jac(2 * i + 1, 2) = s * p[0];
      jac(2 * i, 3) = p[0];
      jac(2 * i + 1, 3) = p[1];
      jac(2 * i, 4) = jac(2 * i + 1, 5) = 1.0;
    }
    const cv::Mat normal(jac.t() * jac), gradient(-(jac.t() * residual));
    cv::Mat solved;
    if (!cv::solve(normal, gradient, solved, cv::DECOMP_LU)) break;  // singular: keep what we have
    const double* step = solved.ptr<double>();
    rotation = exp_so3(cv::Vec3d(step[0], step[1], step[2])) * rotation;
    s += step[3];
    shift += cv::Vec2d(step[4], step[5]);
    if (std::max({std::abs(step[0]), std::abs(step[1]), std::abs(step[2])}) < 1e-6) break;
  }
  return angles(rotation);
}

}  // namespace facesdk
