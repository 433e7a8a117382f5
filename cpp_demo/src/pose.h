// Head pose (yaw, pitch, roll) from the five landmarks: the C++ twin of sdk/faces/pose.py.
#pragma once

#include <array>
#include <optional>

namespace facesdk {

// Degrees; a person facing the camera is 0, 0, 0. yaw > 0: turned to their left (the nose moves to the
// image's right); pitch > 0: looking up; roll > 0: the face turned counter-clockwise in the image.
struct HeadPose {
  double yaw = 0.0;
  double pitch = 0.0;
  double roll = 0.0;
};

using Landmarks = std::array<std::array<double, 2>, 5>;  // right eye, left eye, nose, right/left mouth corner

// The generic 3D five-point face of facesdk.faces.pose.FACE_MODEL_3D (mm, camera axes: x right, y down,
// z away from the camera).
extern const double kFaceModel3D[5][3];

// Weak-perspective fit of kFaceModel3D to the landmarks: the closed-form affine solution projected onto
// the nearest scaled rotation, then `iterations` Gauss-Newton steps on the reprojection error, as
// facesdk.faces.pose.head_pose. Empty when the landmarks are degenerate (all at one point).
std::optional<HeadPose> head_pose(const Landmarks& landmarks, int iterations = 3);

}  // namespace facesdk
