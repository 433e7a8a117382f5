// facesdk_pose: head pose of five landmarks per line of stdin, one JSON per line on stdout.
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "pose.h"

namespace {

constexpr const char* kUsage =
    "usage: facesdk_pose [--iterations N] < LANDMARKS\n"
    "  each input line: x0 y0 x1 y1 ... x4 y4 (right eye, left eye, nose, right and left mouth corner)\n"
    "  each output line: {\"yaw\": .., \"pitch\": .., \"roll\": ..} in degrees, or null (degenerate points)\n";

}  // namespace

int main(int argc, char** argv) {
  int iterations = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    std::istringstream value(i + 1 < argc ? argv[i + 1] : "");
    if (arg != "--iterations" || !(value >> iterations) || iterations < 0) {
      std::cerr << "facesdk_pose: error: bad argument " << arg << "\n" << kUsage;
      return 2;
    }
    ++i;
  }
  std::string line;
  for (long long number = 1; std::getline(std::cin, line); ++number) {
    std::istringstream in(line);
    facesdk::Landmarks points{};
    for (auto& p : points) in >> p[0] >> p[1];
    std::string rest;
    if (in.fail() || (in >> rest)) {
      std::cerr << "facesdk_pose: error: line " << number << " is not 10 numbers: " << line << "\n";
      return 2;
    }
    const auto pose = facesdk::head_pose(points, iterations);
    nlohmann::ordered_json out;
    if (pose) out = {{"yaw", pose->yaw}, {"pitch", pose->pitch}, {"roll", pose->roll}};
    std::cout << out.dump() << "\n";
  }
  return 0;
}
