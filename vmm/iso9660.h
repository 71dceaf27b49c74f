// A small ISO 9660 (ECMA-119) image built in memory: one volume, a root
// directory of plain files, nothing else. Enough for a cloud-init NoCloud
// seed (vmm/cloud_init.h); not a general mastering tool.
//
// Names: ISO 9660 level 1 only allows 8.3 upper-case names ("USER_DAT.;1"),
// so every file also carries Rock Ridge entries (SUSP 1.10 / RRIP 1.10: SP
// and a CE-referenced ER in the root's ".", PX and NM on files), which is
// how Linux, xorriso and libblkid see the real, lower-case name. A Joliet
// tree over the same files (UCS-2 names, at most 64 characters) serves
// readers without Rock Ridge (Windows, Linux with norock), as genisoimage
// -joliet -rock seeds have both. The output depends only on the arguments
// (dates come from `mtime`), so the same inputs give the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace vmm::iso9660 {

inline constexpr size_t kSectorSize = 2048;
// Limits of this builder (a Rock Ridge name lives in one directory record,
// which is at most 255 bytes; a file's size is a 32-bit field).
inline constexpr size_t kMaxFiles = 64;
inline constexpr size_t kMaxNameLength = 128;
inline constexpr uint64_t kMaxFileSize = 0xffffffffull;  // bytes, < 4 GiB
inline constexpr size_t kMaxLabelLength = 32;

struct File {
    std::string name;  // Rock Ridge name: 1..kMaxNameLength bytes, no '/' or NUL, not "." or ".."
    std::vector<uint8_t> data;
};

// The image: a volume labelled `label` (1..32 printable ASCII characters,
// written as given, so "cidata" stays lower case as genisoimage -V writes
// it) with `files` in its root directory, every date `mtime` (UTC), files
// readable by everyone (0444). Throws vmm::Error naming the bad label or
// file; names must be distinct.
std::vector<uint8_t> build(const std::string& label, const std::vector<File>& files, std::time_t mtime);

// The 8.3 level-1 identifier a Rock Ridge name gets ("user-data" ->
// "USER_DAT.;1"), before de-duplication. For tests and messages.
std::string level1_name(const std::string& name);

}  // namespace vmm::iso9660
