#include "tokenizer/unicode.h"

#include <array>
#include <unordered_map>

namespace kvsqueeze {

int utf8_len(unsigned char c) {
  // By the high four bits only, as llama.cpp does: stray continuation bytes are one
  // character, and 0xF8..0xFF start four-byte ones, so invalid text splits the same way.
  static constexpr int kLenByHighBits[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLenByHighBits[c >> 4];
}

std::string utf8_repaired(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  const auto cont = [&](size_t i) { return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80; };
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    int len = 0;
    uint32_t cp = 0;
    if (c < 0x80) len = 1, cp = c;
    else if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1Fu;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0Fu;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07u;
    bool whole = len > 0;
    for (int k = 1; whole && k < len; ++k) {
      whole = cont(i + static_cast<size_t>(k));
      if (whole) cp = (cp << 6) | (static_cast<unsigned char>(text[i + static_cast<size_t>(k)]) & 0x3Fu);
    }
    if (!whole) {
      out += "\xEF\xBF\xBD";  // U+FFFD for this byte; the next byte starts afresh
      ++i;
      continue;
    }
    out += codepoint_to_utf8(cp);
    i += static_cast<size_t>(len);
  }
  return out;
}

std::string codepoint_to_utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

namespace {
struct ByteTable {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<std::string, int> to_byte;
  ByteTable() {
    // Printable Latin-1 bytes keep their code point; the others are moved to 256+.
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
      to_unicode[static_cast<size_t>(b)] = codepoint_to_utf8(cp);
      to_byte[to_unicode[static_cast<size_t>(b)]] = b;
    }
  }
};
const ByteTable& table() {
  static const ByteTable t;
  return t;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return table().to_unicode[b]; }

int unicode_to_byte(std::string_view utf8_char) {
  auto it = table().to_byte.find(std::string(utf8_char));
  return it == table().to_byte.end() ? -1 : it->second;
}

}  // namespace kvsqueeze
