// facesdk_demo: faces, and every task of the export's manifest per face, from a camera, video or image.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>
#include <string>

#include "analyzer.h"

namespace fs = std::filesystem;
using namespace facesdk;

namespace {

constexpr const char* kDetectorFile = "face_detection_yunet_2026may.onnx";
constexpr const char* kUsage =
    "usage: facesdk_demo --model EXPORT_DIR --source 0|VIDEO|IMAGE [--backend openvino|tensorrt]\n"
    "                    [--device CPU|GPU|NPU|AUTO (openvino), GPU|GPU.N (tensorrt)]\n"
    "                    [--precision fp32|fp16|int8]\n"
    "                    [--precision-hint f32|default] [--detector YUNET.onnx] [--json] [--save OUT]\n"
    "                    [--max-frames N]\n";

struct Options {
  std::string model, source, detector, save, precision;
  BackendOptions backend;
  bool json = false;
  long long max_frames = -1;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "facesdk_demo: " << message << "\n" << kUsage;
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  o.backend.kind = built_backends().empty() ? "openvino" : built_backends().front();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") o.model = value();
    else if (arg == "--source") o.source = value();
    else if (arg == "--backend") o.backend.kind = value();
    else if (arg == "--device") o.backend.device = value();
    else if (arg == "--precision") o.precision = value();
    else if (arg == "--precision-hint") o.backend.precision_hint = value();
    else if (arg == "--detector") o.detector = value();
    else if (arg == "--save") o.save = value();
    else if (arg == "--max-frames") o.max_frames = std::atoll(value().c_str());
    else if (arg == "--json") o.json = true;
    else if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else usage_error("unknown argument " + arg);
  }
  if (o.model.empty() || o.source.empty()) usage_error("--model and --source are required");
  return o;
}

// --detector, else $FACESDK_HOME/models, else the user cache (the lookup of sdk/faces/model_store.py).
std::string find_detector(const std::string& given) {
  if (!given.empty()) {
    if (!fs::is_regular_file(given)) throw Error("detector model " + given + " does not exist");
    return given;
  }
  std::vector<fs::path> candidates;
  if (const char* home = std::getenv("FACESDK_HOME")) candidates.push_back(fs::path(home) / "models" / kDetectorFile);
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* user = std::getenv("HOME");
  if (xdg) candidates.push_back(fs::path(xdg) / "facesdk" / "models" / kDetectorFile);
  else if (user) candidates.push_back(fs::path(user) / ".cache" / "facesdk" / "models" / kDetectorFile);
  for (const auto& c : candidates)
    if (fs::is_regular_file(c)) return c.string();
  throw Error(std::string("no face detector found; pass --detector PATH, set FACESDK_HOME to a folder whose models/ "
                          "holds ") + kDetectorFile + ", or run 'facesdk models fetch'");
}

// The export's model file for the chosen backend and precision.
std::string choose_model(const Manifest& m, const Options& o) {
  if (o.backend.kind == "tensorrt") {
    if (!o.precision.empty()) return m.model("engine-" + o.precision).path;
    for (const char* key : {"engine-fp16", "engine-int8", "engine-fp32"})
      if (m.models.count(key)) return m.models.at(key).path;
    return m.model("engine-fp16").path;  // throws, listing what the export has
  }
  return m.model("onnx-" + (o.precision.empty() ? std::string("fp32") : o.precision)).path;
}

void draw(cv::Mat& image, const FrameResult& result) {
  for (const auto& face : result.faces) {
    const auto& b = face.detection.box;
    const cv::Rect rect(cvRound(b[0]), cvRound(b[1]), cvRound(b[2]), cvRound(b[3]));
    cv::rectangle(image, rect, cv::Scalar(0, 200, 0), 2);
    int y = rect.y - 6 - 16 * static_cast<int>(face.attributes.size() - 1);
    for (const auto& [task, p] : face.attributes) {
      std::ostringstream text;
      text.precision(2);
      text << task << ": " << p.label << " " << std::fixed << p.confidence;
      const cv::Point org(rect.x, std::max(12, y));
      cv::putText(image, text.str(), org, cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
      cv::putText(image, text.str(), org, cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
      y += 16;
    }
  }
}

void print_text(const FrameResult& r) {
  std::cout << "frame " << r.index << ": " << r.faces.size() << " face(s);";
  for (const auto& [stage, ms] : r.timings) std::cout << " " << stage << " " << ms << " ms";
  std::cout << "\n";
  for (const auto& face : r.faces) {
    const auto& b = face.detection.box;
    std::cout << "  box (" << b[0] << ", " << b[1] << ", " << b[2] << ", " << b[3] << ") score " << face.detection.score;
    for (const auto& [task, p] : face.attributes) std::cout << "; " << task << " " << p.label << " " << p.confidence;
    std::cout << "\n";
  }
}

bool is_image(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(c));
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".webp" || ext == ".tif" ||
         ext == ".tiff";
}

int run(const Options& o) {
  const auto built = built_backends();
  if (std::find(built.begin(), built.end(), o.backend.kind) == built.end())
    make_backend(o.backend, "");  // throws, naming the backends this binary has
  const Manifest manifest = load_manifest(o.model);
  const std::string model_file = choose_model(manifest, o);
  BackendOptions detector_backend = o.backend;
  if (detector_backend.kind == "tensorrt") detector_backend.precision_hint = "f32";
  auto detector = std::make_unique<FaceDetector>(make_backend(detector_backend, find_detector(o.detector)));
  Analyzer analyzer(manifest, make_backend(o.backend, model_file), std::move(detector));
  std::cerr << "model: " << model_file << " on " << analyzer.model_backend().describe() << "; detector on "
            << analyzer.detector().backend().describe() << "\n";

  const bool camera = !o.source.empty() && o.source.find_first_not_of("0123456789") == std::string::npos;
  const bool image = !camera && is_image(o.source);
  cv::VideoCapture capture;
  cv::Mat still;
  if (image) {
    still = cv::imread(o.source, cv::IMREAD_COLOR);
    if (still.empty()) throw Error("cannot read the image " + o.source);
  } else if (camera ? !capture.open(std::stoi(o.source)) : !capture.open(o.source)) {
    throw Error("cannot open the source " + o.source + " (a camera index, video file or image)");
  }
  cv::VideoWriter writer;
  for (long long index = 0; o.max_frames < 0 || index < o.max_frames; ++index) {
    const auto start = std::chrono::steady_clock::now();
    cv::Mat frame;
    if (image) {
      if (index > 0) break;
      frame = still;
    } else if (!capture.read(frame) || frame.empty()) {
      if (index == 0) throw Error("the source " + o.source + " gave no frames");
      break;
    }
    const double decode_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    FrameResult result = analyzer.analyze(frame, index, decode_ms);
    result.source = o.source;
    if (o.json) std::cout << result.to_json().dump() << std::endl;
    else print_text(result);
    if (!o.save.empty()) {
      cv::Mat canvas = frame.clone();
      draw(canvas, result);
      if (image) {
        if (!cv::imwrite(o.save, canvas)) throw Error("cannot write " + o.save);
      } else {
        if (!writer.isOpened()) {
          const double fps = capture.get(cv::CAP_PROP_FPS);
          if (!writer.open(o.save, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps > 0 ? fps : 25.0, canvas.size()))
            throw Error("cannot write the video " + o.save);
        }
        writer.write(canvas);
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  try {
    return run(options);
  } catch (const Error& e) {
    std::cerr << "facesdk_demo: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "facesdk_demo: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
