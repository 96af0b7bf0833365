#include "gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace kvsqueeze {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;
constexpr int64_t kMaxElements = int64_t{1} << 42;  // far beyond any real tensor
constexpr int kMaxArrayDepth = 4;

// Bounds-checked little-endian reader over the file image.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      throw std::runtime_error(fmt::format("{}: string of {} bytes runs past the end of the file", what, len));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  void need(size_t k, const char* what) const {
    if (k > remaining()) throw std::runtime_error(fmt::format("truncated file while reading {}", what));
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

GgufValue read_value(Cursor& c, GgufType type, int depth);

GgufValue read_array(Cursor& c, int depth) {
  if (depth >= kMaxArrayDepth) throw std::runtime_error("arrays nested too deeply");
  const uint32_t raw = c.read<uint32_t>("array element type");
  if (raw > static_cast<uint32_t>(GgufType::F64))
    throw std::runtime_error(fmt::format("unknown array element type {}", raw));
  const auto elem = static_cast<GgufType>(raw);
  const uint64_t n = c.read<uint64_t>("array length");
  // Every element takes at least one byte: a larger count is a corrupt file, and
  // checking here avoids allocating for it.
  if (n > c.remaining())
    throw std::runtime_error(fmt::format("array of {} elements runs past the end of the file", n));
  std::vector<GgufValue> items;
  items.reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(c, elem, depth + 1));
  return GgufValue::array(elem, std::move(items));
}

GgufValue read_value(Cursor& c, GgufType type, int depth) {
  switch (type) {
    case GgufType::U8: return {type, uint64_t{c.read<uint8_t>("uint8 value")}};
    case GgufType::I8: return {type, int64_t{c.read<int8_t>("int8 value")}};
    case GgufType::U16: return {type, uint64_t{c.read<uint16_t>("uint16 value")}};
    case GgufType::I16: return {type, int64_t{c.read<int16_t>("int16 value")}};
    case GgufType::U32: return {type, uint64_t{c.read<uint32_t>("uint32 value")}};
    case GgufType::I32: return {type, int64_t{c.read<int32_t>("int32 value")}};
    case GgufType::U64: return {type, c.read<uint64_t>("uint64 value")};
    case GgufType::I64: return {type, c.read<int64_t>("int64 value")};
    case GgufType::F32: return {type, double{c.read<float>("float32 value")}};
    case GgufType::F64: return {type, c.read<double>("float64 value")};
    case GgufType::BOOL: {
      const uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) throw std::runtime_error(fmt::format("invalid bool value {}", b));
      return {type, b == 1};
    }
    case GgufType::STRING: return {type, c.read_string("string value")};
    case GgufType::ARRAY: return read_array(c, depth);
  }
  throw std::runtime_error(fmt::format("unknown metadata value type {}", static_cast<uint32_t>(type)));
}

}  // namespace

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::string GgufTensor::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

GgufFile::GgufFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(fmt::format("'{}' is not a regular file", path));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    throw std::runtime_error(fmt::format("'{}' is empty, not a GGUF file", path));
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (m == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("cannot map '{}': {}", path, std::strerror(err)));
  }
  base_ = static_cast<const uint8_t*>(m);
  mapped_ = true;
  fd_ = fd;  // kept for read_bytes
  try {
    parse();
  } catch (const std::exception& e) {
    ::munmap(const_cast<uint8_t*>(base_), size_);
    ::close(fd_);
    mapped_ = false;
    throw std::runtime_error(fmt::format("invalid GGUF file '{}': {}", path, e.what()));
  }
}

GgufFile::~GgufFile() {
  if (mapped_) {
    ::munmap(const_cast<uint8_t*>(base_), size_);
    ::close(fd_);
  }
}

void GgufFile::read_bytes(const uint8_t* p, size_t n, uint8_t* dst) const {
  const auto at = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(base_);
  if (at < base || n > size_ || at - base > size_ - n)
    throw std::out_of_range(fmt::format("'{}': read outside the file", path_));
  if (!mapped_) {
    std::memcpy(dst, p, n);
    return;
  }
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd_, dst + done, n - done, static_cast<off_t>(at - base + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw std::runtime_error(fmt::format("cannot read '{}': {}", path_, r < 0 ? std::strerror(errno) : "file shrank"));
    done += static_cast<size_t>(r);
  }
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const uint8_t* data, size_t size) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = "<memory>";
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

void GgufFile::parse() {
  Cursor c(base_, size_);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) throw std::runtime_error("wrong magic (not a GGUF file)");
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    throw std::runtime_error(fmt::format("unsupported GGUF version {} (supported: 2, 3)", version_));
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each entry needs more than 8 bytes; bigger counts cannot fit in the file.
  if (n_tensors > c.remaining() / 8 || n_kv > c.remaining() / 8)
    throw std::runtime_error(fmt::format("header claims {} tensors and {} metadata entries, more than the file can hold",
                                         n_tensors, n_kv));

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    const uint32_t raw = c.read<uint32_t>("metadata value type");
    if (raw > static_cast<uint32_t>(GgufType::F64))
      throw std::runtime_error(fmt::format("metadata '{}' has unknown value type {}", key, raw));
    GgufValue v = read_value(c, static_cast<GgufType>(raw), 0);
    if (kv_index_.count(key)) throw std::runtime_error(fmt::format("duplicate metadata key '{}'", key));
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_integer()) throw std::runtime_error("general.alignment is not an integer");
    const int64_t al = a->as_int();
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      throw std::runtime_error(fmt::format("general.alignment {} is not a power of two", al));
    alignment_ = static_cast<uint64_t>(al);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.read_string("tensor name");
    const uint32_t nd = c.read<uint32_t>("tensor dimension count");
    if (nd == 0 || nd > kMaxDims)
      throw std::runtime_error(fmt::format("tensor '{}' has {} dimensions (1 to {} allowed)", t.name, nd, kMaxDims));
    int64_t n = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = c.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > static_cast<uint64_t>(kMaxElements) || n > kMaxElements / static_cast<int64_t>(dim))
        throw std::runtime_error(fmt::format("tensor '{}' has an absurd dimension {}", t.name, dim));
      n *= static_cast<int64_t>(dim);
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint32_t raw_type = c.read<uint32_t>("tensor type");
    const auto tr = dtype_traits(raw_type);
    if (!tr) throw std::runtime_error(fmt::format("tensor '{}' has unknown weight type id {}", t.name, raw_type));
    t.type = static_cast<DType>(raw_type);
    if (t.dims[0] % tr->block_elems != 0)
      throw std::runtime_error(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}",
                                           t.name, t.dims[0], tr->name, tr->block_elems));
    t.n_bytes = n / tr->block_elems * tr->block_bytes;
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.offset % alignment_ != 0)
      throw std::runtime_error(fmt::format("tensor '{}' offset {} is not aligned to {}", t.name, t.offset, alignment_));
    if (tensor_index_.count(t.name)) throw std::runtime_error(fmt::format("duplicate tensor '{}'", t.name));
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_) throw std::runtime_error("truncated file: no tensor data section");
  for (auto& t : tensors_) {
    const uint64_t avail = size_ - std::min<uint64_t>(size_, data_start);
    if (t.offset > avail || static_cast<uint64_t>(t.n_bytes) > avail - t.offset)
      throw std::runtime_error(fmt::format("tensor '{}' data ({} bytes at offset {}) lies past the end of the file",
                                           t.name, t.n_bytes, t.offset));
    t.data = base_ + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {
template <typename F>
auto typed(const std::string& key, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format("metadata '{}': {}", key, e.what()));
  }
}
}  // namespace

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw std::runtime_error(fmt::format("missing metadata '{}'", key));
  return typed(key, [&] {
    if (!v->is_integer()) throw std::runtime_error(std::string("expected an integer, found ") + gguf_type_name(v->type));
    return v->as_int();
  });
}

int64_t GgufFile::get_int_or(const std::string& key, int64_t def) const { return has(key) ? get_int(key) : def; }

double GgufFile::get_float_or(const std::string& key, double def) const {
  const GgufValue* v = find(key);
  return v ? typed(key, [&] { return v->as_float(); }) : def;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw std::runtime_error(fmt::format("missing metadata '{}'", key));
  return typed(key, [&] { return v->as_string(); });
}

std::string GgufFile::get_string_or(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

bool GgufFile::get_bool_or(const std::string& key, bool def) const {
  const GgufValue* v = find(key);
  return v ? typed(key, [&] { return v->as_bool(); }) : def;
}

const GgufArray* GgufFile::get_array(const std::string& key) const {
  const GgufValue* v = find(key);
  return v ? &typed(key, [&]() -> const GgufArray& { return v->as_array(); }) : nullptr;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kvsqueeze
