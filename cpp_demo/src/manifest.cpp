#include "manifest.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using nlohmann::json;

namespace facesdk {

const ModelFile& Manifest::model(const std::string& key) const {
  auto it = models.find(key);
  if (it != models.end()) return it->second;
  std::string have;
  for (const auto& [k, _] : models) have += (have.empty() ? "" : ", ") + k;
  throw Error("the export " + directory + " has no model '" + key + "'; it has: " +
              (have.empty() ? "none" : have) + ". Re-run 'facesdk export build' with that precision");
}

static Preprocess parse_preprocess(const json& p) {
  Preprocess out;
  auto size = p.at("input_size");
  out.height = size.at(0).get<int>();
  out.width = size.at(1).get<int>();
  for (int c = 0; c < 3; ++c) {
    out.mean[c] = p.at("mean").at(c).get<float>();
    out.std[c] = p.at("std").at(c).get<float>();
  }
  out.interpolation = p.value("interpolation", "bicubic");
  if (p.contains("crop")) {
    out.crop = p["crop"].value("kind", "align5");
    out.margin = p["crop"].value("margin", 0.4);
  }
  return out;
}

// The optional "temperatures" {task: T > 0}; a task not listed keeps 1.0 (sdk/contract/temperatures.py).
static void read_temperatures(const json& t, std::vector<Task>& tasks, const std::string& file) {
  if (t.is_null()) return;
  if (!t.is_object())
    throw Error(file + ": 'temperatures' must map task names to numbers; rewrite it or delete the field");
  for (const auto& [name, value] : t.items()) {
    auto task = std::find_if(tasks.begin(), tasks.end(), [&](const Task& k) { return k.name == name; });
    if (task == tasks.end())
      throw Error(file + ": 'temperatures' names task '" + name + "' that the manifest does not have");
    if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() <= 0.0)
      throw Error(file + ": temperature of task '" + name + "' must be a finite number > 0, found " +
                  value.dump() + "; refit it with 'facesdk eval --calibrate' or delete the entry");
    task->temperature = value.get<double>();
  }
}

Manifest load_manifest(const std::string& directory) {
  fs::path dir(directory);
  if (!fs::is_directory(dir)) throw Error("export directory " + directory + " does not exist");
  fs::path file = dir / "export.json";
  std::ifstream in(file);
  if (!in) throw Error(file.string() + " does not exist: expected a facesdk export manifest there");
  json data;
  try {
    in >> data;
  } catch (const json::exception& e) {
    throw Error(file.string() + " is not valid JSON (" + e.what() + "); the export directory is corrupt");
  }
  if (!data.is_object() || data.value("kind", "") != "export")
    throw Error(file.string() + " is not an export manifest (its 'kind' is not \"export\")");
  const json version = data.value("schema_version", json());
  if (!version.is_number_integer() || version.get<int>() != kExportSchemaVersion)
    throw Error(file.string() + " has export schema version " + version.dump() +
                "; this facesdk_demo reads version " + std::to_string(kExportSchemaVersion) +
                ". Rebuild the demo from a matching facesdk release or re-export the model.");
  Manifest m;
  m.directory = fs::absolute(dir).string();
  try {
    for (const auto& t : data.at("tasks"))
      m.tasks.push_back({t.at("name").get<std::string>(), t.at("labels").get<std::vector<std::string>>()});
    m.preprocess = parse_preprocess(data.at("preprocess"));
    m.input_name = data.at("input").at("name").get<std::string>();
    for (const auto& o : data.at("outputs")) m.output_names.push_back(o.at("name").get<std::string>());
    m.max_batch = data.at("batch").at("max").get<int>();
    const json models = data.value("models", json::object());
    for (const auto& [key, entry] : models.items()) {
      ModelFile f;
      f.path = (fs::absolute(dir) / entry.at("file").at("path").get<std::string>()).string();
      f.size = entry.at("file").at("size").get<long long>();
      f.format = entry.at("format").get<std::string>();
      f.precision = entry.at("precision").get<std::string>();
      m.models[key] = f;
    }
  } catch (const json::exception& e) {
    throw Error(file.string() + " lacks or garbles a field: " + e.what());
  }
  if (m.tasks.empty()) throw Error(file.string() + " lists no tasks");
  for (size_t i = 0; i < m.tasks.size(); ++i)
    if (i >= m.output_names.size() || m.output_names[i] != m.tasks[i].name)
      throw Error(file.string() + ": outputs must be the task names in order");
  if (m.max_batch < 1) throw Error(file.string() + ": batch.max must be >= 1");
  read_temperatures(data.value("temperatures", json()), m.tasks, file.string());
  for (const auto& [key, f] : m.models) {
    if (!fs::is_regular_file(f.path)) throw Error(f.path + " is missing; the manifest lists it as " + key);
    if (static_cast<long long>(fs::file_size(f.path)) != f.size)
      throw Error(f.path + " has " + std::to_string(fs::file_size(f.path)) + " bytes but the manifest records " +
                  std::to_string(f.size) + ": the file is corrupt or was replaced");
  }
  return m;
}

}  // namespace facesdk
