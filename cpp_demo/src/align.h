// Face crops and the model input tensor, pixel for pixel as sdk/faces/align.py and sdk/preprocess.py make them.
#pragma once

#include <opencv2/core.hpp>
#include <vector>

#include "backend.h"
#include "manifest.h"
#include "yunet.h"

namespace facesdk {

// The OpenCV interpolation flag of a spec name (bilinear, bicubic, nearest, area).
int cv_interpolation(const std::string& name);

// The 2 x 3 CV_64F matrix mapping frame pixels to crop pixels (crop policies align5 and box).
cv::Mat crop_transform(const Detection& detection, const Preprocess& spec);

// One face as the model sees it: H x W x 3 uint8 BGR, constant black border outside the frame.
cv::Mat crop_face(const cv::Mat& frame_bgr, const Detection& detection, const Preprocess& spec);

// N x 3 x H x W float32 RGB, (pixel / 255 - mean) / std, computed in float32 like to_input_tensor.
Tensor to_input_tensor(const std::vector<cv::Mat>& crops_bgr, const Preprocess& spec);

}  // namespace facesdk
