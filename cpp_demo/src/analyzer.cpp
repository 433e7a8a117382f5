#include "analyzer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "align.h"
#include "pose.h"

namespace facesdk {
namespace {

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Runs crops through the model split at max_batch; returns {task: N x classes logits} row-major.
std::vector<std::vector<float>> infer(Backend& backend, const Manifest& m, const std::vector<cv::Mat>& crops) {
  std::vector<std::vector<float>> logits(m.tasks.size());
  for (size_t start = 0; start < crops.size(); start += m.max_batch) {
    const size_t end = std::min(crops.size(), start + static_cast<size_t>(m.max_batch));
    const std::vector<cv::Mat> part(crops.begin() + start, crops.begin() + end);
    const TensorMap out = backend.run(m.input_name, to_input_tensor(part, m.preprocess));
    for (size_t t = 0; t < m.tasks.size(); ++t) {
      auto it = out.find(m.tasks[t].name);
      const size_t want = (end - start) * m.tasks[t].labels.size();
      if (it == out.end() || it->second.data.size() != want)
        throw Error("the model returned no " + std::to_string(end - start) + " x " +
                    std::to_string(m.tasks[t].labels.size()) + " logits for task '" + m.tasks[t].name + "'");
      logits[t].insert(logits[t].end(), it->second.data.begin(), it->second.data.end());
    }
  }
  return logits;
}

// softmax(logits / T) with the task's temperature T (1.0 unless export.json carries one).
Prediction softmax_prediction(const Task& task, const float* logits) {
  const size_t n = task.labels.size();
  std::vector<double> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<double>(logits[i]) / task.temperature;
  const double top = *std::max_element(x.begin(), x.end());
  std::vector<double> e(n);
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += e[i] = std::exp(x[i] - top);
  Prediction p;
  size_t best = 0;
  for (size_t i = 0; i < n; ++i) {
    p.probs.emplace_back(task.labels[i], e[i] / sum);
    if (p.probs[i].second > p.probs[best].second) best = i;
  }
  p.label = task.labels[best];
  p.confidence = p.probs[best].second;
  return p;
}

// Years each age group stands for: its midpoint, the open 70+ capped at 75 (facesdk.results.AGE_BIN_YEARS).
const std::vector<std::pair<std::string, double>> kAgeBinYears = {
    {"0-2", 1.0},    {"3-9", 6.0},    {"10-19", 14.5}, {"20-29", 24.5}, {"30-39", 34.5},
    {"40-49", 44.5}, {"50-59", 54.5}, {"60-69", 64.5}, {"70+", 75.0}};

// Expected age in years from the "age" task's probabilities (facesdk.results.expected_age); null
// when there is no age task or its labels are not the age groups above.
nlohmann::ordered_json expected_age(const FaceResult& face) {
  for (const auto& [task, pred] : face.attributes) {
    if (task != "age" || pred.probs.empty()) continue;
    double total = 0.0, years = 0.0;
    for (const auto& [label, p] : pred.probs) {
      auto bin = std::find_if(kAgeBinYears.begin(), kAgeBinYears.end(), [&](const auto& b) { return b.first == label; });
      if (bin == kAgeBinYears.end()) return nullptr;
      total += p;
      years += p * bin->second;
    }
    return total > 0.0 ? nlohmann::ordered_json(years / total) : nlohmann::ordered_json();
  }
  return nullptr;
}

}  // namespace

nlohmann::ordered_json FrameResult::to_json() const {
  using nlohmann::ordered_json;
  ordered_json frame;
  frame["index"] = index;
  frame["timestamp"] = timestamp;
  frame["source"] = source.empty() ? ordered_json() : ordered_json(source);
  frame["timings"] = ordered_json::object();
  for (const auto& [stage, ms] : timings) frame["timings"][stage] = ms;
  frame["faces"] = ordered_json::array();
  for (const auto& face : faces) {
    ordered_json f;
    const auto& d = face.detection;
    f["box"] = {d.box[0], d.box[1], d.box[2], d.box[3]};
    f["score"] = d.score;
    f["landmarks"] = ordered_json::array();
    for (const auto& p : d.landmarks) f["landmarks"].push_back({p[0], p[1]});
    f["track_id"] = nullptr;
    f["age_years"] = expected_age(face);
    f["inferred"] = true;        // every face of every frame goes through the model here
    f["estimate_age_s"] = 0.0;   // (no per-track schedule in the C++ demo)
    const auto pose = head_pose(d.landmarks);  // degrees, signs of facesdk.faces.pose
    f["pose"] = pose ? ordered_json{{"yaw", pose->yaw}, {"pitch", pose->pitch}, {"roll", pose->roll}} : ordered_json();
    f["attributes"] = ordered_json::object();
    for (const auto& [task, pred] : face.attributes) {
      ordered_json probs = ordered_json::object();
      for (const auto& [label, p] : pred.probs) probs[label] = p;
      f["attributes"][task] = {{"label", pred.label}, {"confidence", pred.confidence}, {"probs", probs}};
    }
    frame["faces"].push_back(f);
  }
  return frame;
}

Analyzer::Analyzer(Manifest manifest, std::unique_ptr<Backend> model, std::unique_ptr<FaceDetector> detector)
    : manifest_(std::move(manifest)), model_(std::move(model)), detector_(std::move(detector)) {}

FrameResult Analyzer::analyze(const cv::Mat& frame_bgr, long long index, double decode_ms) {
  FrameResult result;
  result.index = index;
  result.timestamp = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto start = std::chrono::steady_clock::now();
  const std::vector<Detection> detections = detector_->detect(frame_bgr);
  const double detect_ms = ms_since(start);
  start = std::chrono::steady_clock::now();
  std::vector<cv::Mat> crops;
  for (const auto& d : detections) crops.push_back(crop_face(frame_bgr, d, manifest_.preprocess));
  const double align_ms = ms_since(start);
  start = std::chrono::steady_clock::now();
  std::vector<std::vector<float>> logits;
  if (!crops.empty()) logits = infer(*model_, manifest_, crops);
  const double infer_ms = ms_since(start);
  start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < detections.size(); ++i) {
    FaceResult face{detections[i], {}};
    for (size_t t = 0; t < manifest_.tasks.size(); ++t) {
      const Task& task = manifest_.tasks[t];
      face.attributes.emplace_back(task.name, softmax_prediction(task, logits[t].data() + i * task.labels.size()));
    }
    result.faces.push_back(std::move(face));
  }
  result.timings = {{"decode", decode_ms}, {"detect", detect_ms}, {"align", align_ms}, {"infer", infer_ms},
                    {"post", ms_since(start)}};
  return result;
}

}  // namespace facesdk
