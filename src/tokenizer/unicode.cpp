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
