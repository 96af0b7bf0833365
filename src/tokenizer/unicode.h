// UTF-8 helpers and the GPT-2 byte <-> printable code point mapping.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kvsqueeze {

// Length of the UTF-8 sequence starting with byte c (1 for continuation bytes).
int utf8_len(unsigned char c);
std::string codepoint_to_utf8(uint32_t cp);
// The text as llama.cpp's byte-level BPE sees it: each sequence decoded by its lead byte
// alone (overlong forms and surrogates decode as they stand, "\xC0\xAF" is "/") and
// encoded again; a byte that starts no complete sequence becomes U+FFFD.
std::string utf8_repaired(const std::string& text);

// Byte-level BPE stores bytes as printable code points (GPT-2's table).
const std::string& byte_to_unicode(uint8_t b);       // UTF-8 of the code point for byte b
// Inverse: returns -1 when the UTF-8 character is not one of the 256 byte code points.
int unicode_to_byte(std::string_view utf8_char);

}  // namespace kvsqueeze
